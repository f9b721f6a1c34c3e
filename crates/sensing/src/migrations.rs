use yunnao_store::{Migration, MigrationSet};

const DEVICES: &str = r#"
CREATE TABLE device_profiles (
    code TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    profile_code TEXT NOT NULL REFERENCES device_profiles (code),
    department_code TEXT NOT NULL,
    lon DOUBLE PRECISION,
    lat DOUBLE PRECISION,
    tags TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    simulated BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    last_seen_ms BIGINT,
    accepted_count BIGINT NOT NULL DEFAULT 0,
    rejected_count BIGINT NOT NULL DEFAULT 0,
    last_rejection TEXT,
    last_rejection_ms BIGINT
);
CREATE INDEX devices_department_profile ON devices (department_code, profile_code);
"#;

/// The sensing hub's tables. Readings are clustered by (device, key, time): SQLite stores them
/// WITHOUT ROWID so the primary key is the table, PostgreSQL as a btree primary key.
pub const MIGRATIONS: MigrationSet = MigrationSet {
    name: "sensing",
    migrations: &[
        Migration::portable(1, "device profiles and devices", DEVICES),
        Migration {
            version: 2,
            description: "readings",
            sqlite: "CREATE TABLE readings (device_id TEXT NOT NULL, key TEXT NOT NULL, ts_ms BIGINT NOT NULL, value DOUBLE PRECISION NOT NULL, PRIMARY KEY (device_id, key, ts_ms)) WITHOUT ROWID",
            postgres: "CREATE TABLE readings (device_id TEXT NOT NULL, key TEXT NOT NULL, ts_ms BIGINT NOT NULL, value DOUBLE PRECISION NOT NULL, PRIMARY KEY (device_id, key, ts_ms))",
        },
    ],
};
