//! The broker's tables. Entities are one row each (types and attributes as JSON, the location's
//! bounding box as columns for the geo pre-filter); a side table indexes every type of every
//! entity, so type queries (the most common) read only what they return.

use yunnao_store::migrate::{Migration, MigrationSet};

pub const MIGRATIONS: MigrationSet = MigrationSet {
    name: "context",
    migrations: &[
        Migration::portable(1, "NGSI-LD tenants and entities", ENTITIES),
        Migration::portable(2, "attribute history for temporal queries", HISTORY),
        Migration::portable(3, "subscriptions with delivery counters", SUBSCRIPTIONS),
    ],
};

const SUBSCRIPTIONS: &str = r#"
CREATE TABLE ngsi_subscriptions (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    owner_department TEXT NOT NULL,
    definition TEXT NOT NULL,
    times_sent BIGINT NOT NULL DEFAULT 0,
    times_failed BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    last_notification TEXT,
    last_success TEXT,
    last_failure TEXT,
    last_error TEXT,
    delivery_status TEXT NOT NULL DEFAULT 'ok',
    PRIMARY KEY (tenant, id)
);
"#;

/// One row per attribute instance and time; numbers also as a column, so aggregations run in
/// the database.
const HISTORY: &str = r#"
CREATE TABLE ngsi_history (
    tenant TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    attr TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    dataset_id TEXT NOT NULL,
    number DOUBLE PRECISION,
    instance TEXT NOT NULL,
    PRIMARY KEY (tenant, entity_id, attr, at_ms, dataset_id)
);
"#;

const ENTITIES: &str = r#"
CREATE TABLE ngsi_tenants (
    name TEXT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE ngsi_entities (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    types TEXT NOT NULL,
    attrs TEXT NOT NULL,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL,
    owner_department TEXT NOT NULL,
    public BIGINT NOT NULL DEFAULT 0,
    min_lon DOUBLE PRECISION,
    min_lat DOUBLE PRECISION,
    max_lon DOUBLE PRECISION,
    max_lat DOUBLE PRECISION,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX ngsi_entities_location ON ngsi_entities (tenant, min_lon, max_lon);
CREATE INDEX ngsi_entities_owner ON ngsi_entities (tenant, owner_department);
CREATE TABLE ngsi_entity_types (
    tenant TEXT NOT NULL,
    type_iri TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (tenant, type_iri, id)
);
"#;
