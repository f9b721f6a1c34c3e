//! Configuration, layered: built-in defaults → `yunnao.toml` (or `--config FILE`) →
//! `YUNNAO_*` environment variables → command-line flags.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Address of the embedded MQTT endpoint for devices; empty turns it off. 1884 by default
    /// because 1883 is often held by an existing broker; use 0.0.0.0:1883 where it is free.
    pub mqtt_listen: String,
    /// `mqtt://host:port` of an external broker to consume device telemetry from, with a
    /// shared subscription (several nodes split the load); empty: none.
    pub mqtt: String,
    /// This node's client id at the external broker (stable, so its session survives restarts).
    pub mqtt_client_id: String,
    /// Devices publish to `{prefix}/devices/{device_id}/telemetry` at the external broker.
    pub mqtt_topic_prefix: String,
    /// Folder for the embedded database, the platform key and other local state.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`; default: SQLite in `data_dir`.
    pub db: Option<String>,
    /// `memory://` (in-process, default).
    pub bus: String,
    /// The platform key (hex SM2 secret); default `data_dir/platform.key`, created if missing.
    pub platform_key_file: Option<PathBuf>,
    /// Password for the seeded `admin` if it does not exist yet; generated and shown once if unset.
    pub admin_password: Option<String>,
    pub token_ttl_secs: i64,
    pub body_limit_bytes: usize,
    /// Open HTTP connections at most; one more is answered 503 and closed.
    pub max_connections: usize,
    /// HTTP requests handled at once; past this a request is answered 503 with `Retry-After`.
    pub max_in_flight: usize,
    /// Seconds a client has to send a request's head; an idle keep-alive connection is closed
    /// after the same time, and a request body must make progress as often.
    pub request_timeout_secs: u64,
    /// Open device MQTT connections at most; one more is refused (CONNACK "server unavailable").
    pub mqtt_max_connections: usize,
    /// How often offline (no-data) alarm rules are checked, in milliseconds.
    pub no_data_check_ms: u64,
    /// tracing filter, e.g. `info` or `yunnao=debug,info`.
    pub log: String,
    /// Authentication on `/ngsi-ld/v1`. Turn it off only behind a policy-enforcement proxy or
    /// to run a conformance suite: everyone then reads and writes every entity.
    #[serde(deserialize_with = "on_or_off")]
    pub ngsi_ld_auth: bool,
    /// Comma-separated URL prefixes the NGSI-LD broker may fetch remote user @contexts from
    /// (once each, then cached); empty: none, only the built-in core context and inline terms.
    pub ngsi_ld_context_allow: String,
    /// Memory for the broker's cache of recently read entities, in MiB (SQLite only; 0: off).
    pub ngsi_ld_cache_mib: u64,
    /// Load Qingdao's districts and metro stations into the default tenant at start. Off for
    /// a conformance suite, which expects an empty broker.
    #[serde(deserialize_with = "on_or_off")]
    pub ngsi_ld_city_objects: bool,
    /// How often devices' newest values are mirrored into the context broker, in milliseconds.
    pub context_mirror_ms: u64,
    /// Devices mirrored per round at most (the rest wait for the next round, newest value wins).
    pub context_mirror_per_round: usize,
    /// The governance command centre's department: its operators register, dispatch and close
    /// incidents.
    pub governance_centre: String,
    /// H3 resolution of the unit grids (10: about 15,000 m² each, ≈ 750,000 over the city).
    pub grid_resolution: u8,
    /// How often incident deadlines are checked for warnings and escalation, in milliseconds.
    pub governance_scan_ms: u64,
    /// Register and dispatch located reports at once by the dispatch rules.
    pub auto_dispatch: bool,
    /// The largest file a data-hub import takes, MiB (it is spooled to disk, not held).
    pub data_import_max_mib: u64,
    /// Import the seeded datasets' synthetic tables at the first start (in the background).
    pub data_seed_tables: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            mqtt_listen: "127.0.0.1:1884".into(),
            mqtt: String::new(),
            mqtt_client_id: "yunnao-node-1".into(),
            mqtt_topic_prefix: "yunnao".into(),
            data_dir: PathBuf::from("yunnao-data"),
            db: None,
            bus: "memory://".into(),
            platform_key_file: None,
            admin_password: None,
            token_ttl_secs: 8 * 3600,
            body_limit_bytes: 1024 * 1024,
            max_connections: 4096,
            max_in_flight: 512,
            request_timeout_secs: 15,
            mqtt_max_connections: 10_000,
            no_data_check_ms: 30_000,
            log: "info".into(),
            ngsi_ld_auth: true,
            ngsi_ld_context_allow: String::new(),
            ngsi_ld_cache_mib: 160,
            ngsi_ld_city_objects: true,
            context_mirror_ms: 1000,
            context_mirror_per_round: 2000,
            governance_centre: "city-management".into(),
            grid_resolution: 10,
            governance_scan_ms: 30_000,
            auto_dispatch: true,
            data_import_max_mib: 256,
            data_seed_tables: true,
        }
    }
}

/// Flag values; only those given override the lower layers.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ngsi_ld_auth: Option<bool>,
}

impl Config {
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, String> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        figment = match file {
            Some(path) if !path.exists() => {
                return Err(format!("config file {} does not exist", path.display()));
            }
            Some(path) => figment.merge(Toml::file_exact(path)),
            None => figment.merge(Toml::file("yunnao.toml")),
        };
        figment
            .merge(Env::prefixed("YUNNAO_").only(&[
                "listen",
                "mqtt_listen",
                "mqtt",
                "mqtt_client_id",
                "mqtt_topic_prefix",
                "data_dir",
                "db",
                "bus",
                "platform_key_file",
                "admin_password",
                "token_ttl_secs",
                "body_limit_bytes",
                "max_connections",
                "max_in_flight",
                "request_timeout_secs",
                "mqtt_max_connections",
                "no_data_check_ms",
                "log",
                "ngsi_ld_auth",
                "ngsi_ld_context_allow",
                "ngsi_ld_cache_mib",
                "ngsi_ld_city_objects",
                "context_mirror_ms",
                "context_mirror_per_round",
                "governance_centre",
                "grid_resolution",
                "governance_scan_ms",
                "auto_dispatch",
                "data_import_max_mib",
                "data_seed_tables",
            ]))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| format!("configuration error: {e}"))
    }

    pub fn db_url(&self) -> String {
        self.db
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("yunnao.db").display()))
    }

    pub fn platform_key_path(&self) -> PathBuf {
        self.platform_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("platform.key"))
    }
}

/// A switch written `true`/`false` or `on`/`off` (`YUNNAO_NGSI_LD_AUTH=off`).
fn on_or_off<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Switch {
        Bool(bool),
        Text(String),
    }
    match Switch::deserialize(deserializer)? {
        Switch::Bool(b) => Ok(b),
        Switch::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "1" | "yes" => Ok(true),
            "off" | "false" | "0" | "no" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "{other:?} is not on or off"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "yunnao.toml",
                "listen = \"127.0.0.1:9000\"\nbus = \"memory://\"\ntoken_ttl_secs = 60",
            )?;
            jail.set_env("YUNNAO_LISTEN", "127.0.0.1:9100");
            jail.set_env("YUNNAO_TOKEN_TTL_SECS", "120");
            let config = Config::load(None, &Overrides::default()).expect("loads");
            assert_eq!(config.listen, "127.0.0.1:9100", "env beats file");
            assert_eq!(config.token_ttl_secs, 120);
            let flags = Overrides {
                listen: Some("127.0.0.1:9200".into()),
                ..Overrides::default()
            };
            let config = Config::load(None, &flags).expect("loads");
            assert_eq!(config.listen, "127.0.0.1:9200", "flags beat env");
            assert_eq!(config.db_url(), "sqlite://yunnao-data/yunnao.db");
            Ok(())
        });
    }

    #[test]
    fn ngsi_ld_auth_reads_on_and_off() {
        for (value, expected) in [
            ("off", false),
            ("on", true),
            ("false", false),
            ("true", true),
        ] {
            figment::Jail::expect_with(|jail| {
                jail.set_env("YUNNAO_NGSI_LD_AUTH", value);
                let config = Config::load(None, &Overrides::default()).expect("loads");
                assert_eq!(config.ngsi_ld_auth, expected, "{value}");
                Ok(())
            });
        }
        figment::Jail::expect_with(|jail| {
            jail.set_env("YUNNAO_NGSI_LD_AUTH", "maybe");
            let error = Config::load(None, &Overrides::default()).expect_err("refused");
            assert!(error.contains("not on or off"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn defaults_without_any_configuration() {
        figment::Jail::expect_with(|_jail| {
            let config = Config::load(None, &Overrides::default()).expect("loads");
            assert_eq!(config, Config::default());
            assert_eq!(config.listen, "127.0.0.1:8080");
            Ok(())
        });
    }
}
