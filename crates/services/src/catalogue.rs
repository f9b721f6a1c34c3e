//! The service catalogue (事项库), shaped after GB/T 39046-2020: each service with its
//! implementation code (region, kind, serial), kind, legal basis, statutory and promised time
//! limits (法定/承诺办结时限, working days), fee, channels, the materials it needs (an upload or an
//! e-licence type the library can fill, 无证明), and its approval stages: stages run in order,
//! the steps of a stage at once in their departments (一同核查), decided by `all`, `any` or
//! `k:N`. Bundles (“一件事”) group services that one application covers.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

const SEED: &str = include_str!("../data/catalogue.json");

/// E-licence types the library issues and a material may name.
pub const LICENCE_TYPES: [&str; 6] = [
    "resident_id",
    "business_licence",
    "household_register",
    "property_certificate",
    "birth_certificate",
    "marriage_certificate",
];

pub const KINDS: [&str; 5] = [
    "administrative_licence",
    "administrative_confirmation",
    "administrative_payment",
    "public_service",
    "filing",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Material {
    pub name_zh: String,
    pub name_en: String,
    /// `upload`, or `licence:<type>` for one the e-licence library holds.
    pub source: String,
}

impl Material {
    /// The e-licence type that covers this material, if one does.
    pub fn licence(&self) -> Option<&str> {
        self.source.strip_prefix("licence:")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub department: String,
    pub name_zh: String,
    pub working_days: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// `all` (every step approves), `any` (one suffices) or `k:N` (N of the steps).
    pub mode: String,
    pub steps: Vec<Step>,
}

impl Stage {
    /// How many approvals conclude the stage, if the mode is one.
    pub fn needed(&self) -> Option<usize> {
        match self.mode.as_str() {
            "all" => Some(self.steps.len()),
            "any" => Some(1),
            other => other
                .strip_prefix("k:")
                .and_then(|k| k.parse().ok())
                .filter(|k| (1..=self.steps.len()).contains(k)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// `370200-XK-0001`: the region (青岛市), the kind's letters, a serial.
    pub code: String,
    /// An application keeps the version it was made on.
    pub version: i64,
    pub name_zh: String,
    pub name_en: String,
    pub department: String,
    pub kind: String,
    pub legal_basis: String,
    pub statutory_days: i64,
    pub promised_days: i64,
    pub fee_yuan: i64,
    pub channels: Vec<String>,
    pub fully_online: bool,
    pub materials: Vec<Material>,
    pub stages: Vec<Stage>,
}

impl Service {
    /// Departments that take part, in the order they first act.
    pub fn departments(&self) -> Vec<&str> {
        let mut seen = Vec::new();
        for step in self.stages.iter().flat_map(|s| &s.steps) {
            if !seen.contains(&step.department.as_str()) {
                seen.push(step.department.as_str());
            }
        }
        seen
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub services: Vec<Service>,
    pub bundles: Vec<Bundle>,
}

impl Catalogue {
    /// The seeded catalogue of Qingdao's high-frequency services.
    pub fn seed() -> Result<Catalogue, String> {
        Catalogue::parse(SEED)
    }

    pub fn parse(text: &str) -> Result<Catalogue, String> {
        let catalogue: Catalogue =
            serde_json::from_str(text).map_err(|e| format!("the catalogue: {e}"))?;
        catalogue.check()?;
        Ok(catalogue)
    }

    pub fn service(&self, code: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.code == code)
    }

    /// 可网办率: services handled fully online, percent of all.
    pub fn online_rate_pct(&self) -> f64 {
        let online = self.services.iter().filter(|s| s.fully_online).count();
        (1000.0 * online as f64 / self.services.len().max(1) as f64).round() / 10.0
    }

    /// What makes a catalogue one: unique codes, known kinds and licence types, time limits
    /// that hold, stages that can conclude, bundles of services that exist.
    pub fn check(&self) -> Result<(), String> {
        let mut codes = HashSet::new();
        for s in &self.services {
            let at = |what: &str| Err(format!("service {} ({}): {what}", s.code, s.name_zh));
            if !codes.insert(s.code.as_str()) {
                return at("the code is used twice");
            }
            if !KINDS.contains(&s.kind.as_str()) {
                return at(&format!("kind {:?} is not one of {KINDS:?}", s.kind));
            }
            if s.promised_days < 1 || s.promised_days > s.statutory_days {
                return at("the promised limit is 1 day to the statutory limit");
            }
            if s.stages.is_empty() {
                return at("a service has at least one approval stage");
            }
            for stage in &s.stages {
                if stage.steps.is_empty() || stage.needed().is_none() {
                    return at(&format!(
                        "stage mode {:?} over {} steps cannot conclude",
                        stage.mode,
                        stage.steps.len()
                    ));
                }
                if stage.steps.iter().any(|step| step.working_days < 1) {
                    return at("every step has a limit of at least one working day");
                }
            }
            for m in &s.materials {
                if m.source != "upload" && !m.licence().is_some_and(|t| LICENCE_TYPES.contains(&t))
                {
                    return at(&format!("material {} has source {:?}", m.name_zh, m.source));
                }
            }
        }
        for b in &self.bundles {
            if b.services.len() < 2 {
                return Err(format!(
                    "bundle {}: a 一件事 covers two services or more",
                    b.code
                ));
            }
            if let Some(missing) = b.services.iter().find(|c| !codes.contains(c.as_str())) {
                return Err(format!("bundle {}: no service {missing}", b.code));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_a_catalogue_of_qingdaos_frequent_services() {
        let c = Catalogue::seed().expect("the seed");
        assert!(c.services.len() >= 40, "{} services", c.services.len());
        let newborn = c
            .bundles
            .iter()
            .find(|b| b.name_zh.contains("新生儿出生"))
            .expect("新生儿出生一件事");
        let departments: HashSet<&str> = newborn
            .services
            .iter()
            .filter_map(|code| c.service(code))
            .flat_map(|s| s.departments())
            .collect();
        assert!(departments.len() >= 3, "{departments:?}");
        // 无证明: the newborn's services need nothing an e-licence does not cover.
        let uploads: Vec<&str> = newborn
            .services
            .iter()
            .filter_map(|code| c.service(code))
            .flat_map(|s| &s.materials)
            .filter(|m| m.licence().is_none())
            .map(|m| m.name_zh.as_str())
            .collect();
        assert_eq!(uploads, ["免冠照片"], "only the card's photo is uploaded");
        let rate = c.online_rate_pct();
        assert!((90.0..100.0).contains(&rate), "可网办率 {rate}");
        assert!(c.services.iter().any(|s| {
            s.stages
                .iter()
                .any(|st| st.steps.len() > 1 && st.mode == "all")
        }));
        assert!(
            c.services
                .iter()
                .any(|s| s.stages.iter().any(|st| st.mode == "any"))
        );
    }

    /// Every department a service names is one of the platform's.
    #[test]
    fn the_seed_names_the_platforms_departments() {
        let known: serde_json::Value =
            serde_json::from_str(include_str!("../../identity/data/departments.json"))
                .expect("departments");
        let known: HashSet<&str> = known["departments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["code"].as_str())
            .collect();
        for s in Catalogue::seed().expect("the seed").services {
            for d in std::iter::once(s.department.as_str()).chain(s.departments()) {
                assert!(known.contains(d), "{}: department {d}", s.code);
            }
        }
    }

    #[test]
    fn catalogues_that_cannot_work_are_refused() {
        let seed = Catalogue::seed().expect("the seed");
        type Break = fn(&mut Catalogue);
        let cases: [(Break, &str); 7] = [
            (
                |c| c.services[1].code = c.services[0].code.clone(),
                "used twice",
            ),
            (|c| c.services[0].kind = "favour".into(), "kind"),
            (
                |c| c.services[0].promised_days = c.services[0].statutory_days + 1,
                "promised",
            ),
            (
                |c| c.services[0].stages[0].mode = "k:9".into(),
                "cannot conclude",
            ),
            (
                |c| c.services[0].stages.clear(),
                "at least one approval stage",
            ),
            (
                |c| c.services[0].materials[0].source = "licence:passport".into(),
                "source",
            ),
            (
                |c| c.bundles[0].services[0] = "370200-XK-9999".into(),
                "no service",
            ),
        ];
        for (broken, reason) in cases {
            let mut c = seed.clone();
            broken(&mut c);
            let refused = c.check().expect_err(reason);
            assert!(refused.contains(reason), "{reason}: {refused}");
        }
        assert_eq!(
            Stage {
                mode: "k:2".into(),
                steps: seed.services[4].stages[0].steps.clone()
            }
            .needed(),
            Some(2)
        );
    }
}
