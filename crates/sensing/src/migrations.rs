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

/// The sensing hub's tables. Telemetry is clustered by (device, time): SQLite stores it WITHOUT
/// ROWID so the primary key is the table, PostgreSQL as a btree primary key.
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
        Migration::portable(3, "alarm rules and alarms", ALARMS),
        Migration::portable(4, "cross-department device grants", GRANTS),
        Migration::portable(
            5,
            "rollups kept after raw retention",
            "CREATE TABLE readings_rollup (device_id TEXT NOT NULL, key TEXT NOT NULL, interval_s BIGINT NOT NULL, \
             bucket_ms BIGINT NOT NULL, avg_value DOUBLE PRECISION NOT NULL, min_value DOUBLE PRECISION NOT NULL, \
             max_value DOUBLE PRECISION NOT NULL, sum_value DOUBLE PRECISION NOT NULL, count_value BIGINT NOT NULL, \
             PRIMARY KEY (device_id, key, interval_s, bucket_ms))",
        ),
        Migration::portable(
            6,
            "when the reading behind an alarm was committed",
            "ALTER TABLE alarms ADD COLUMN trigger_committed_ms BIGINT",
        ),
        Migration {
            version: 7,
            description: "one row per device and time with the message's values; readings becomes a view",
            sqlite: TELEMETRY_SQLITE,
            postgres: TELEMETRY_POSTGRES,
        },
        Migration::portable(
            8,
            "the operator's comment when acknowledging an alarm",
            "ALTER TABLE alarms ADD COLUMN acknowledge_comment TEXT",
        ),
        Migration::portable(
            9,
            "the operator's comment when clearing an alarm",
            "ALTER TABLE alarms ADD COLUMN clear_comment TEXT",
        ),
    ],
};

/// A message's values are stored together (`{"CH4": 1.5, "CO": 3.0}`), clustered by (device,
/// time): one B-tree insert per message instead of one per value, which is what lifts ingestion
/// past a row-per-value table. `readings` stays as a view with one row per value, so queries,
/// rollups and exports read (device, key, time, value) as before.
const TELEMETRY_SQLITE: &str = r#"
CREATE TABLE telemetry (
    device_id TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    values_json TEXT NOT NULL,
    PRIMARY KEY (device_id, ts_ms)
) WITHOUT ROWID;
INSERT INTO telemetry (device_id, ts_ms, values_json)
    SELECT device_id, ts_ms, json_group_object(key, value) FROM readings GROUP BY device_id, ts_ms;
DROP TABLE readings;
CREATE VIEW readings AS
    SELECT t.device_id AS device_id, j.key AS key, t.ts_ms AS ts_ms, CAST(j.value AS REAL) AS value
    FROM telemetry t, json_each(t.values_json) j;
"#;

const TELEMETRY_POSTGRES: &str = r#"
CREATE TABLE telemetry (
    device_id TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    values_json TEXT NOT NULL,
    PRIMARY KEY (device_id, ts_ms)
);
INSERT INTO telemetry (device_id, ts_ms, values_json)
    SELECT device_id, ts_ms, jsonb_object_agg(key, value)::text FROM readings GROUP BY device_id, ts_ms;
DROP TABLE readings;
CREATE VIEW readings AS
    SELECT t.device_id AS device_id, j.key AS key, t.ts_ms AS ts_ms, CAST(j.value AS DOUBLE PRECISION) AS value
    FROM telemetry t, jsonb_each_text(t.values_json::jsonb) j;
"#;

const GRANTS: &str = r#"
CREATE TABLE device_grants (
    id TEXT PRIMARY KEY,
    owner_department TEXT NOT NULL,
    grantee_department TEXT NOT NULL,
    device_id TEXT,
    profile_code TEXT,
    min_lon DOUBLE PRECISION,
    min_lat DOUBLE PRECISION,
    max_lon DOUBLE PRECISION,
    max_lat DOUBLE PRECISION,
    purpose TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX device_grants_grantee ON device_grants (grantee_department, owner_department);
"#;

const ALARMS: &str = r#"
CREATE TABLE alarm_rules (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    department_code TEXT,
    profile_code TEXT,
    device_id TEXT,
    key TEXT,
    kind TEXT NOT NULL,
    operator TEXT,
    threshold DOUBLE PRECISION,
    threshold_high DOUBLE PRECISION,
    duration_s BIGINT NOT NULL DEFAULT 0,
    consecutive BIGINT NOT NULL DEFAULT 1,
    missed_intervals BIGINT NOT NULL DEFAULT 3,
    severity TEXT NOT NULL,
    auto_clear BIGINT NOT NULL DEFAULT 1,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE alarms (
    id TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    department_code TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    value DOUBLE PRECISION,
    raised_at_ms BIGINT NOT NULL,
    acknowledged_at_ms BIGINT,
    acknowledged_by TEXT,
    cleared_at_ms BIGINT,
    cleared_by TEXT
);
CREATE UNIQUE INDEX alarms_one_active ON alarms (rule_id, device_id) WHERE cleared_at_ms IS NULL;
CREATE INDEX alarms_device ON alarms (device_id, raised_at_ms);
CREATE INDEX alarms_department ON alarms (department_code, raised_at_ms);
"#;
