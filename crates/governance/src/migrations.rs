//! The governance hub's tables. Incidents carry their current state and deadline moments as
//! columns (the escalation scan and the figures read only those); every transition is an event
//! row. Photos are stored in the database, so every node serves them.

use yunnao_store::migrate::{Migration, MigrationSet};

pub const MIGRATIONS: MigrationSet = MigrationSet {
    name: "governance",
    migrations: &[
        Migration::portable(
            1,
            "categories, dispatch rules, calendar, grid workers",
            SETUP,
        ),
        Migration::portable(2, "incidents and their events", INCIDENTS),
        Migration {
            version: 3,
            description: "incident photos",
            sqlite: MEDIA_SQLITE,
            postgres: MEDIA_POSTGRES,
        },
    ],
};

const SETUP: &str = r#"
CREATE TABLE gov_categories (
    service_code TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    class_code TEXT NOT NULL,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    name_en TEXT NOT NULL,
    department TEXT NOT NULL,
    deadline_minutes BIGINT NOT NULL,
    clock TEXT NOT NULL,
    attributes TEXT NOT NULL,
    active BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE TABLE gov_dispatch_rules (
    id TEXT PRIMARY KEY,
    service_code TEXT NOT NULL,
    area_code TEXT NOT NULL,
    department TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (service_code, area_code)
);
CREATE TABLE gov_calendar (
    day TEXT PRIMARY KEY,
    working BIGINT NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE gov_grid_workers (
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    grid_prefix TEXT NOT NULL,
    assigned_at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, grid_prefix)
);
CREATE INDEX gov_grid_workers_prefix ON gov_grid_workers (grid_prefix);
"#;

const INCIDENTS: &str = r#"
CREATE TABLE gov_incidents (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    source_ref TEXT,
    service_code TEXT NOT NULL,
    description TEXT NOT NULL,
    address TEXT NOT NULL,
    lon DOUBLE PRECISION,
    lat DOUBLE PRECISION,
    grid_code TEXT,
    district_code TEXT,
    street_code TEXT,
    community_code TEXT,
    out_of_area BIGINT NOT NULL,
    state TEXT NOT NULL,
    department TEXT,
    grid_worker TEXT,
    reporter TEXT,
    reporter_department TEXT,
    contact_sealed TEXT,
    attributes TEXT NOT NULL,
    media_urls TEXT NOT NULL,
    token TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    dispatched_at_ms BIGINT,
    warn_at_ms BIGINT,
    due_at_ms BIGINT,
    warned_at_ms BIGINT,
    overdue_at_ms BIGINT,
    handled_at_ms BIGINT,
    closed_at_ms BIGINT,
    rework_count BIGINT NOT NULL,
    merged_into TEXT,
    status_notes TEXT NOT NULL,
    satisfaction BIGINT,
    alarm_cleared_at_ms BIGINT
);
CREATE UNIQUE INDEX gov_incidents_source ON gov_incidents (source, source_ref) WHERE source_ref IS NOT NULL;
CREATE UNIQUE INDEX gov_incidents_token ON gov_incidents (token);
CREATE INDEX gov_incidents_state ON gov_incidents (state, department);
CREATE INDEX gov_incidents_created ON gov_incidents (created_at_ms);
CREATE INDEX gov_incidents_service ON gov_incidents (service_code, state);
CREATE INDEX gov_incidents_warn ON gov_incidents (warn_at_ms) WHERE warned_at_ms IS NULL;
CREATE INDEX gov_incidents_due ON gov_incidents (due_at_ms) WHERE overdue_at_ms IS NULL;
CREATE TABLE gov_incident_events (
    incident_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    actor_department TEXT NOT NULL,
    action TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    comment TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (incident_id, seq)
);
CREATE INDEX gov_incident_events_action ON gov_incident_events (action, at_ms);
"#;

const MEDIA_SQLITE: &str = r#"
CREATE TABLE gov_media (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    bytes BLOB NOT NULL,
    size BIGINT NOT NULL,
    uploaded_by TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX gov_media_incident ON gov_media (incident_id);
"#;

const MEDIA_POSTGRES: &str = r#"
CREATE TABLE gov_media (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    bytes BYTEA NOT NULL,
    size BIGINT NOT NULL,
    uploaded_by TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX gov_media_incident ON gov_media (incident_id);
"#;
