//! Policies granted without application (免申即享). A policy's eligibility is a JSON rule over
//! enterprise data, not code: `{"all": [...]}`, `{"any": [...]}`, `{"not": rule}` and
//! conditions `{"field": F, "op": OP, "value": V}` with OP one of `=`, `!=`, `<`, `<=`, `>`,
//! `>=`, `in`; `{"has_licence": TYPE}`; `{"founded_within_years": N}`. Fields: `industry`
//! (GB/T 4754 section letter and division, `C34`), `section` (its letter), `district`,
//! `employees`, `revenue_wan`, `tax_paid_wan`, `credit` (A–D). Rules nest at most 8 deep.
//! The amount is `{"fixed": Y}` or `{"per": FIELD, "rate": R, "cap": C}` in yuan. Every
//! decision says which condition held or failed. A run grants in credit-code order until the
//! budget is spent and never past it. Each policy carries its own test cases, run by the suite.

use crate::ids;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const SEED: &str = include_str!("../data/policies.json");
const MAX_DEPTH: usize = 8;

/// Qingdao's ten districts (行政区划代码).
pub const DISTRICTS: [(&str, &str); 10] = [
    ("370202", "市南区"),
    ("370203", "市北区"),
    ("370211", "黄岛区"),
    ("370212", "崂山区"),
    ("370213", "李沧区"),
    ("370214", "城阳区"),
    ("370215", "即墨区"),
    ("370281", "胶州市"),
    ("370283", "平度市"),
    ("370285", "莱西市"),
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Enterprise {
    pub credit_code: String,
    pub name: String,
    /// GB/T 4754 section letter and two-digit division, e.g. `C34`.
    pub industry: String,
    pub district: String,
    pub employees: i64,
    /// Revenue last year, 万元.
    pub revenue_wan: f64,
    pub tax_paid_wan: f64,
    /// Tax credit grade A–D.
    pub credit: String,
    /// `YYYY-MM-DD`.
    #[schema(value_type = String)]
    pub founded: NaiveDate,
    pub licences: Vec<String>,
}

impl Enterprise {
    fn number(&self, field: &str) -> Option<f64> {
        Some(match field {
            "employees" => self.employees as f64,
            "revenue_wan" => self.revenue_wan,
            "tax_paid_wan" => self.tax_paid_wan,
            _ => return None,
        })
    }

    fn text(&self, field: &str) -> Option<String> {
        Some(match field {
            "industry" => self.industry.clone(),
            "section" => self.industry.chars().take(1).collect(),
            "district" => self.district.clone(),
            "credit" => self.credit.clone(),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PolicyTest {
    pub name: String,
    /// Members that replace the base enterprise's.
    #[schema(value_type = Object)]
    pub enterprise: serde_json::Map<String, Value>,
    pub eligible: bool,
    #[serde(default)]
    pub amount: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Policy {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    pub department: String,
    /// `auto` (免申: granted outright) or `confirm` (即申即享: the enterprise confirms).
    pub mode: String,
    #[schema(value_type = Object)]
    pub rule: Value,
    #[schema(value_type = Object)]
    pub amount: Value,
    pub budget_yuan: i64,
    pub tests: Vec<PolicyTest>,
}

/// A decision and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Decision {
    pub eligible: bool,
    pub amount_yuan: i64,
    /// Each condition looked at, in words, and whether it held.
    pub because: Vec<(String, bool)>,
}

/// Whole years from `from` to `to`.
fn years_between(from: NaiveDate, to: NaiveDate) -> i32 {
    let mut years = to.year() - from.year();
    if (to.month(), to.day()) < (from.month(), from.day()) {
        years -= 1;
    }
    years
}

fn check(
    rule: &Value,
    e: &Enterprise,
    today: NaiveDate,
    depth: usize,
    because: &mut Vec<(String, bool)>,
) -> Result<bool, String> {
    if depth > MAX_DEPTH {
        return Err(format!("a rule nests at most {MAX_DEPTH} deep"));
    }
    let object = rule.as_object().ok_or("a rule is an object")?;
    if let Some(all) = object.get("all") {
        let mut held = true;
        for part in all.as_array().ok_or("all takes a list")? {
            held &= check(part, e, today, depth + 1, because)?;
        }
        return Ok(held);
    }
    if let Some(any) = object.get("any") {
        let mut held = false;
        for part in any.as_array().ok_or("any takes a list")? {
            held |= check(part, e, today, depth + 1, because)?;
        }
        return Ok(held);
    }
    if let Some(inner) = object.get("not") {
        let mut inside = Vec::new();
        let held = !check(inner, e, today, depth + 1, &mut inside)?;
        because.extend(
            inside
                .into_iter()
                .map(|(text, h)| (format!("并非 {text}"), !h)),
        );
        return Ok(held);
    }
    if let Some(kind) = object.get("has_licence") {
        let kind = kind.as_str().ok_or("has_licence names a licence type")?;
        let held = e.licences.iter().any(|l| l == kind);
        because.push((format!("持有 {kind}"), held));
        return Ok(held);
    }
    if let Some(years) = object.get("founded_within_years") {
        let years = years.as_i64().ok_or("founded_within_years is a number")?;
        let held = years_between(e.founded, today) < years as i32;
        because.push((format!("成立不满 {years} 年（{}）", e.founded), held));
        return Ok(held);
    }
    let field = object
        .get("field")
        .and_then(Value::as_str)
        .ok_or("a condition names a field")?;
    let op = object
        .get("op")
        .and_then(Value::as_str)
        .ok_or("a condition has an op")?;
    let value = object.get("value").ok_or("a condition has a value")?;
    let held = if let Some(have) = e.number(field) {
        let want = value
            .as_f64()
            .ok_or_else(|| format!("{field} compares with a number"))?;
        match op {
            "=" => have == want,
            "!=" => have != want,
            "<" => have < want,
            "<=" => have <= want,
            ">" => have > want,
            ">=" => have >= want,
            other => return Err(format!("op {other} does not apply to {field}")),
        }
    } else if let Some(have) = e.text(field) {
        match op {
            "=" => value.as_str() == Some(have.as_str()),
            "!=" => value.as_str() != Some(have.as_str()),
            "in" => value
                .as_array()
                .ok_or("in takes a list")?
                .iter()
                .any(|v| v.as_str() == Some(have.as_str())),
            other => return Err(format!("op {other} does not apply to {field}")),
        }
    } else {
        return Err(format!("no field {field}"));
    };
    let shown = match (e.number(field), e.text(field)) {
        (Some(n), _) => n.to_string(),
        (_, Some(t)) => t,
        _ => String::new(),
    };
    because.push((format!("{field} {op} {value}（实为 {shown}）"), held));
    Ok(held)
}

fn amount(spec: &Value, e: &Enterprise) -> Result<i64, String> {
    if let Some(fixed) = spec.get("fixed") {
        return fixed
            .as_i64()
            .ok_or_else(|| "fixed is whole yuan".to_owned());
    }
    let field = spec
        .get("per")
        .and_then(Value::as_str)
        .ok_or("an amount is fixed or per a field")?;
    let rate = spec
        .get("rate")
        .and_then(Value::as_f64)
        .ok_or("per takes a rate")?;
    let cap = spec.get("cap").and_then(Value::as_i64).unwrap_or(i64::MAX);
    let base = e
        .number(field)
        .ok_or_else(|| format!("no numeric field {field}"))?;
    Ok(((base * rate).round() as i64).clamp(0, cap))
}

impl Policy {
    pub fn decide(&self, e: &Enterprise, today: NaiveDate) -> Result<Decision, String> {
        let mut because = Vec::new();
        let eligible = check(&self.rule, e, today, 0, &mut because)?;
        Ok(Decision {
            eligible,
            amount_yuan: if eligible {
                amount(&self.amount, e)?
            } else {
                0
            },
            because,
        })
    }

    /// The policy's own cases, each over a base enterprise with its members replaced.
    pub fn run_tests(&self, base: &Enterprise, today: NaiveDate) -> Result<(), String> {
        for case in &self.tests {
            let mut value = serde_json::to_value(base).map_err(|e| e.to_string())?;
            for (k, v) in &case.enterprise {
                value[k] = v.clone();
            }
            let enterprise: Enterprise = serde_json::from_value(value)
                .map_err(|e| format!("{} / {}: {e}", self.code, case.name))?;
            let decision = self.decide(&enterprise, today)?;
            if decision.eligible != case.eligible
                || case.amount.is_some_and(|a| a != decision.amount_yuan)
            {
                return Err(format!(
                    "{} / {}: expected {} {:?}, decided {} {} because {:?}",
                    self.code,
                    case.name,
                    case.eligible,
                    case.amount,
                    decision.eligible,
                    decision.amount_yuan,
                    decision.because
                ));
            }
        }
        Ok(())
    }
}

pub fn seed() -> Result<Vec<Policy>, String> {
    serde_json::from_str(SEED).map_err(|e| format!("policies.json: {e}"))
}

/// The grants of one run: who gets what, in credit-code order until the budget is spent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    pub granted: Vec<(String, i64)>,
    pub eligible: usize,
    /// Eligible but past the budget.
    pub unfunded: usize,
    pub spent_yuan: i64,
}

pub fn run(policy: &Policy, enterprises: &[Enterprise], today: NaiveDate) -> Result<Run, String> {
    let mut out = Run::default();
    for e in enterprises {
        let decision = policy.decide(e, today)?;
        if !decision.eligible {
            continue;
        }
        out.eligible += 1;
        if out.spent_yuan + decision.amount_yuan > policy.budget_yuan {
            out.unfunded += 1;
            continue;
        }
        out.spent_yuan += decision.amount_yuan;
        out.granted
            .push((e.credit_code.clone(), decision.amount_yuan));
    }
    Ok(out)
}

/// A deterministic synthetic set of Qingdao enterprises, sorted by credit code.
pub fn synthetic_enterprises(count: usize, seed: u64) -> Vec<Enterprise> {
    const INDUSTRIES: [&str; 12] = [
        "C13", "C26", "C34", "C36", "C38", "C39", "F51", "F52", "H61", "I65", "M73", "E47",
    ];
    const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    // SplitMix64: small, well known, the same numbers on every machine.
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut out = Vec::with_capacity(count);
    for n in 0..count {
        let (district, _) = DISTRICTS[(next() % 10) as usize];
        let body: String = (0..9)
            .map(|_| ALPHABET[(next() % 31) as usize] as char)
            .collect();
        let stem = format!("91{district}{body}");
        let code = (0..31)
            .map(|c| format!("{stem}{}", ALPHABET[c] as char))
            .find(|candidate| ids::credit_code(candidate).is_ok())
            .unwrap_or_default();
        let employees = [3, 8, 15, 40, 120, 600][(next() % 6) as usize] + (next() % 10) as i64;
        let revenue = employees as f64 * (20.0 + (next() % 80) as f64);
        let mut licences = vec!["business_licence".to_owned()];
        if next() % 4 == 0 {
            licences.push("food_business".to_owned());
        }
        if next() % 7 == 0 {
            licences.push("high_tech_enterprise".to_owned());
        }
        out.push(Enterprise {
            credit_code: code,
            name: format!("青岛模拟企业{n:05}有限公司"),
            industry: INDUSTRIES[(next() % 12) as usize].to_owned(),
            district: district.to_owned(),
            employees,
            revenue_wan: revenue.round(),
            tax_paid_wan: (revenue * 0.03).round(),
            credit: ["A", "A", "B", "B", "B", "C", "D"][(next() % 7) as usize].to_owned(),
            founded: NaiveDate::from_ymd_opt(
                2000 + (next() % 26) as i32,
                1 + (next() % 12) as u32,
                1 + (next() % 28) as u32,
            )
            .unwrap_or_default(),
            licences,
        });
    }
    out.sort_by(|a, b| a.credit_code.cmp(&b.credit_code));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 7).unwrap_or_default()
    }

    fn base() -> Enterprise {
        Enterprise {
            credit_code: "91370200163562681G".into(),
            name: "测试企业".into(),
            industry: "C34".into(),
            district: "370211".into(),
            employees: 50,
            revenue_wan: 3000.0,
            tax_paid_wan: 90.0,
            credit: "A".into(),
            founded: NaiveDate::from_ymd_opt(2015, 6, 1).unwrap_or_default(),
            licences: vec!["business_licence".into()],
        }
    }

    #[test]
    fn every_policy_passes_its_own_cases() {
        let policies = seed().expect("policies");
        assert!(policies.len() >= 10, "{} policies", policies.len());
        for p in &policies {
            assert!(!p.tests.is_empty(), "{} has no test cases", p.code);
            p.run_tests(&base(), today())
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn decisions_say_why() {
        let p = &seed().expect("policies")[0];
        let decision = p.decide(&base(), today()).expect("decides");
        assert!(!decision.because.is_empty());
        assert!(decision.because.iter().all(|(text, _)| text.contains('（')
            || text.starts_with("持有")
            || text.starts_with("成立")));
    }

    #[test]
    fn rules_that_are_not_rules_are_refused() {
        let mut p = seed().expect("policies")[0].clone();
        let mut deep = serde_json::json!({"field": "employees", "op": ">", "value": 1});
        for _ in 0..10 {
            deep = serde_json::json!({"all": [deep]});
        }
        for (rule, reason) in [
            (deep, "nests"),
            (
                serde_json::json!({"field": "colour", "op": "=", "value": "red"}),
                "no field",
            ),
            (
                serde_json::json!({"field": "employees", "op": "in", "value": 1}),
                "does not apply",
            ),
            (serde_json::json!([1]), "an object"),
        ] {
            p.rule = rule;
            let refused = p.decide(&base(), today()).expect_err(reason);
            assert!(refused.contains(reason), "{reason}: {refused}");
        }
    }

    #[test]
    fn synthetic_enterprises_are_valid_and_the_same_each_time() {
        let a = synthetic_enterprises(2_000, 2022);
        assert_eq!(a, synthetic_enterprises(2_000, 2022));
        assert!(a.iter().all(|e| ids::credit_code(&e.credit_code).is_ok()));
        assert!(
            a.iter()
                .all(|e| DISTRICTS.iter().any(|(d, _)| *d == e.district))
        );
        assert!(a.iter().all(|e| e.credit_code[2..8] == e.district));
    }

    #[test]
    fn a_run_never_spends_past_the_budget() {
        let enterprises = synthetic_enterprises(50_000, 2022);
        for p in seed().expect("policies") {
            let run = run(&p, &enterprises, today()).expect("runs");
            assert!(run.spent_yuan <= p.budget_yuan, "{}", p.code);
            assert_eq!(run.granted.len() + run.unfunded, run.eligible, "{}", p.code);
            assert_eq!(
                run,
                super::run(&p, &enterprises, today()).expect("again"),
                "deterministic"
            );
        }
    }
}
