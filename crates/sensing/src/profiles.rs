//! Device profiles: what a kind of device reports (keys with units and physical ranges), how
//! often, and how long its raw data is kept. The built-in set covers the plan's terminals;
//! departments add their own over the API (a shared catalogue: any department may register
//! devices of any profile, only the owning department changes or deletes it).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use yunnao_core::Problem;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct KeySpec {
    pub name: String,
    pub unit: String,
    /// Smallest physically possible value; readings below are refused.
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Profile {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    /// The FIWARE Smart Data Models entity type a device of this profile maps to.
    pub entity_type: String,
    pub reporting_interval_s: i64,
    pub retention_days: i64,
    pub keys: Vec<KeySpec>,
    /// The department that defined this profile; absent for the built-in ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
}

impl Profile {
    pub fn is_builtin(&self) -> bool {
        self.department.is_none()
    }

    pub fn key(&self, name: &str) -> Option<&KeySpec> {
        self.keys.iter().find(|k| k.name == name)
    }

    pub fn key_names(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.name.as_str()).collect()
    }
}

/// A profile definition sent by a department (create, or replace with `PUT`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProfile {
    /// Lower-case letters, digits and '-', 2–64 characters, starting with a letter. Ignored
    /// on replace (the path names the profile).
    #[serde(default)]
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    /// FIWARE Smart Data Models type; `Device` when absent.
    #[serde(default)]
    pub entity_type: Option<String>,
    pub reporting_interval_s: i64,
    pub retention_days: i64,
    pub keys: Vec<KeySpec>,
    /// Owning department (platform admins only; others own what they create).
    #[serde(default)]
    pub department: Option<String>,
}

impl NewProfile {
    /// Checks every field and returns the profile owned by `department`.
    pub fn into_profile(self, department: String) -> Result<Profile, Problem> {
        let invalid = |message: String| Err(Problem::validation(message));
        let code_ok = (2..=64).contains(&self.code.len())
            && self.code.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !code_ok {
            return invalid(format!(
                "code {:?}: use 2 to 64 lower-case letters, digits and '-', starting with a letter",
                self.code
            ));
        }
        for (field, value) in [("name_zh", &self.name_zh), ("name_en", &self.name_en)] {
            if value.trim().is_empty() || value.chars().count() > 100 {
                return invalid(format!("{field} must be 1 to 100 characters"));
            }
        }
        let entity_type = self.entity_type.unwrap_or_else(|| "Device".into());
        if !identifier(&entity_type) {
            return invalid(format!(
                "entity_type {entity_type:?} must be a letter followed by up to 63 letters or digits"
            ));
        }
        if !(1..=7 * 86_400).contains(&self.reporting_interval_s) {
            return invalid("reporting_interval_s must be 1 s to 7 days".into());
        }
        if !(1..=36_500).contains(&self.retention_days) {
            return invalid("retention_days must be 1 to 36,500".into());
        }
        if self.keys.is_empty() || self.keys.len() > 64 {
            return invalid("a profile has 1 to 64 keys".into());
        }
        let mut seen = std::collections::HashSet::new();
        for key in &self.keys {
            if !key_name(&key.name) {
                return invalid(format!(
                    "key {:?}: a letter followed by up to 63 letters, digits or '_'",
                    key.name
                ));
            }
            if !seen.insert(key.name.as_str()) {
                return invalid(format!("key {:?} appears twice", key.name));
            }
            if key.unit.trim().is_empty() || key.unit.chars().count() > 32 {
                return invalid(format!("key {}: unit must be 1 to 32 characters", key.name));
            }
            if !(key.min.is_finite() && key.max.is_finite() && key.min < key.max) {
                return invalid(format!(
                    "key {}: min and max must be finite with min < max",
                    key.name
                ));
            }
        }
        Ok(Profile {
            code: self.code,
            name_zh: self.name_zh.trim().to_owned(),
            name_en: self.name_en.trim().to_owned(),
            entity_type,
            reporting_interval_s: self.reporting_interval_s,
            retention_days: self.retention_days,
            keys: self.keys,
            department: Some(department),
        })
    }
}

fn identifier(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Key names end up in JSON objects and query paths: keep them plain.
fn key_name(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The profiles every part of the hub reads (ingest validation, alarm rules, retention),
/// shared and replaced in place when a department changes one.
#[derive(Clone, Default)]
pub struct ProfileRegistry(Arc<RwLock<HashMap<String, Arc<Profile>>>>);

impl ProfileRegistry {
    pub fn get(&self, code: &str) -> Option<Arc<Profile>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(code)
            .cloned()
    }

    /// Every profile, by code.
    pub fn all(&self) -> Vec<Arc<Profile>> {
        let mut all: Vec<Arc<Profile>> = self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.code.cmp(&b.code));
        all
    }

    pub fn put(&self, profile: Profile) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(profile.code.clone(), Arc::new(profile));
    }

    pub fn remove(&self, code: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(code);
    }

    /// Replaces the whole set (a reload from the database).
    pub fn replace_all(&self, profiles: impl IntoIterator<Item = Profile>) {
        let map = profiles
            .into_iter()
            .map(|p| (p.code.clone(), Arc::new(p)))
            .collect();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = map;
    }
}

#[derive(Deserialize)]
struct ProfileFile {
    profiles: Vec<Profile>,
}

/// The built-in profiles (embedded at compile time; the file is checked by a test).
pub fn builtin() -> Vec<Profile> {
    serde_json::from_str::<ProfileFile>(include_str!("../data/profiles.json"))
        .map(|f| f.profiles)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn builtin_profiles_are_complete_and_sane() {
        let profiles = super::builtin();
        assert_eq!(profiles.len(), 10);
        for profile in &profiles {
            assert!(!profile.keys.is_empty(), "{}", profile.code);
            assert!(profile.reporting_interval_s > 0 && profile.retention_days > 0);
            for key in &profile.keys {
                assert!(key.min < key.max, "{}.{}", profile.code, key.name);
            }
        }
    }
}
