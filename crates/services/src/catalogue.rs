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
    /// Conditions an applicant must meet, told before applying (一次告知).
    pub eligibility: Vec<String>,
    /// The application form as a JSON Schema (draft 2020-12), validated on the server.
    #[schema(value_type = Object)]
    pub form: serde_json::Value,
    /// The e-licence an approval issues into the applicant's library (一证准营), if any.
    pub result: Option<ResultLicence>,
}

/// The licence a service issues as its result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultLicence {
    pub licence_type: String,
    /// Its name on the licence, e.g. 食品经营许可证.
    pub name_zh: String,
}

/// What an application is made on: one service, or a bundle's services merged into one
/// (集成办): their materials once each, their forms as one, the steps of each member's stage
/// `n` together in stage `n` (all must approve), each member's result issued by its department.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ApplicationPlan {
    pub code: String,
    pub version: i64,
    pub name_zh: String,
    /// The department that receives (受理) the application.
    pub department: String,
    pub promised_days: i64,
    pub materials: Vec<Material>,
    #[schema(value_type = Object)]
    pub form: serde_json::Value,
    pub stages: Vec<Stage>,
    /// (issuing department, licence) for each result.
    pub results: Vec<(String, ResultLicence)>,
}

impl ApplicationPlan {
    fn of(service: &Service) -> ApplicationPlan {
        ApplicationPlan {
            code: service.code.clone(),
            version: service.version,
            name_zh: service.name_zh.clone(),
            department: service.department.clone(),
            promised_days: service.promised_days,
            materials: service.materials.clone(),
            form: service.form.clone(),
            stages: service.stages.clone(),
            results: service
                .result
                .iter()
                .map(|r| (service.department.clone(), r.clone()))
                .collect(),
        }
    }
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
    /// The department that receives the bundle's applications (the approval bureau).
    pub department: String,
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

    pub fn bundle(&self, code: &str) -> Option<&Bundle> {
        self.bundles.iter().find(|b| b.code == code)
    }

    /// What an application for a service or a bundle is made on.
    pub fn plan(&self, code: &str) -> Option<ApplicationPlan> {
        if let Some(service) = self.service(code) {
            return Some(ApplicationPlan::of(service));
        }
        let bundle = self.bundle(code)?;
        let members: Vec<&Service> = bundle
            .services
            .iter()
            .filter_map(|c| self.service(c))
            .collect();
        let mut materials: Vec<Material> = Vec::new();
        let mut properties = serde_json::Map::new();
        let mut required: Vec<serde_json::Value> = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for m in &members {
            for material in &m.materials {
                if !materials.iter().any(|x| {
                    x.source == material.source
                        && (x.licence().is_some() || x.name_zh == material.name_zh)
                }) {
                    materials.push(material.clone());
                }
            }
            if let Some(props) = m.form["properties"].as_object() {
                for (k, v) in props {
                    properties.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            for r in m.form["required"].as_array().into_iter().flatten() {
                if !required.contains(r) {
                    required.push(r.clone());
                }
            }
            for (n, stage) in m.stages.iter().enumerate() {
                if stages.len() <= n {
                    stages.push(Stage {
                        mode: "all".into(),
                        steps: Vec::new(),
                    });
                }
                // A member stage decided by any one (or k) of its steps takes part with its
                // first step: the bundle's stage needs every member's approval.
                let steps = if stage.mode == "all" {
                    &stage.steps[..]
                } else {
                    &stage.steps[..1]
                };
                stages[n].steps.extend(steps.iter().cloned());
            }
        }
        Some(ApplicationPlan {
            code: bundle.code.clone(),
            version: members.iter().map(|m| m.version).max().unwrap_or(1),
            name_zh: bundle.name_zh.clone(),
            department: bundle.department.clone(),
            promised_days: members.iter().map(|m| m.promised_days).max().unwrap_or(1),
            materials,
            form: serde_json::json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            }),
            stages,
            results: members
                .iter()
                .filter_map(|m| m.result.as_ref().map(|r| (m.department.clone(), r.clone())))
                .collect(),
        })
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
            if jsonschema::validator_for(&s.form).is_err() || s.form["type"] != "object" {
                return at("the form is a JSON Schema of an object");
            }
            if let Some(r) = &s.result
                && !crate::licences::TYPES.iter().any(|t| t.0 == r.licence_type)
            {
                return at(&format!("result licence type {:?}", r.licence_type));
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
