//! Device profiles: what a kind of device reports (keys with units and physical ranges), how
//! often, and how long its raw data is kept. The built-in set covers the plan's terminals.

use serde::{Deserialize, Serialize};

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
}

impl Profile {
    pub fn key(&self, name: &str) -> Option<&KeySpec> {
        self.keys.iter().find(|k| k.name == name)
    }

    pub fn key_names(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.name.as_str()).collect()
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
