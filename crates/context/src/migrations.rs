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
        Migration {
            version: 4,
            description: "hourly rollups of attribute history",
            sqlite: HOURLY_SQLITE,
            postgres: HOURLY_POSTGRES,
        },
        Migration {
            version: 5,
            description: "spatial index of entity locations",
            sqlite: SPATIAL_SQLITE,
            postgres: SPATIAL_POSTGRES,
        },
        Migration::portable(6, "@contexts hosted by the broker", HOSTED_CONTEXTS),
        Migration::portable(7, "context source registrations", REGISTRATIONS),
        Migration::portable(
            8,
            "subscriptions to registrations, and who a subscription may hear of",
            SUBSCRIPTION_SCOPE,
        ),
        Migration::portable(
            9,
            "when a periodic subscription was last notified",
            "ALTER TABLE ngsi_subscriptions ADD COLUMN periodic_at_ms BIGINT;",
        ),
        Migration::portable(10, "EntityMaps of queries", ENTITY_MAPS),
        Migration::portable(11, "deleted attribute instances", HISTORY_DELETIONS),
    ],
};

/// `about`: `entities` (clause 5.8) or `registrations` (clause 5.11). `sees_all`: made by a
/// platform admin (or with authentication off), so it hears of every department's entities;
/// others hear of their department's and open data only.
const SUBSCRIPTION_SCOPE: &str = "
ALTER TABLE ngsi_subscriptions ADD COLUMN about TEXT NOT NULL DEFAULT 'entities';
ALTER TABLE ngsi_subscriptions ADD COLUMN sees_all BIGINT NOT NULL DEFAULT 0;
";

/// Context source registrations (clause 5.9): their definitions with names expanded.
const REGISTRATIONS: &str = "
CREATE TABLE ngsi_registrations (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    owner_department TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
";

/// User @contexts uploaded to the broker (`/jsonldContexts`), served from it and used when a
/// request names them, without any fetch.
const HOSTED_CONTEXTS: &str = "
CREATE TABLE ngsi_contexts (
    id TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    owner_department TEXT NOT NULL,
    created_at TEXT NOT NULL
);
";

/// A spatial index of the locations' bounding boxes, so geo queries read the entities near the
/// query's box instead of every entity on one side of it. SQLite: an R*Tree keyed by the
/// entity's rowid (its boxes are rounded outward to 32-bit floats, so it only narrows; the
/// exact test stays on the columns), kept in the broker's write transactions; its column names
/// differ from the entity table's so the two can be joined without qualifying every name. PostgreSQL: a
/// GiST index on the built-in `box` type (no PostGIS needed), kept by the database.
const SPATIAL_SQLITE: &str = "
CREATE VIRTUAL TABLE ngsi_entities_rtree USING rtree(entity_rowid, west, east, south, north);
INSERT INTO ngsi_entities_rtree (entity_rowid, west, east, south, north)
SELECT rowid, min_lon, max_lon, min_lat, max_lat FROM ngsi_entities WHERE min_lon IS NOT NULL;
";

const SPATIAL_POSTGRES: &str = "
CREATE INDEX ngsi_entities_box ON ngsi_entities
USING gist (box(point(min_lon, min_lat), point(max_lon, max_lat)));
";

/// Per attribute and hour: instances, and sum, min and max of the numeric ones. Kept in the
/// same transaction as the history rows, so aggregations over whole hours read one row per hour
/// instead of every value. The backfill floors negative times too (`%` truncates).
macro_rules! hourly {
    ($suffix:literal) => {
        concat!(
            "CREATE TABLE ngsi_history_hourly (
    tenant TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    attr TEXT NOT NULL,
    hour_ms BIGINT NOT NULL,
    n BIGINT NOT NULL,
    total DOUBLE PRECISION,
    low DOUBLE PRECISION,
    high DOUBLE PRECISION,
    PRIMARY KEY (tenant, entity_id, attr, hour_ms)
)",
            $suffix,
            ";
INSERT INTO ngsi_history_hourly (tenant, entity_id, attr, hour_ms, n, total, low, high)
SELECT tenant, entity_id, attr, at_ms - ((at_ms % 3600000) + 3600000) % 3600000 AS hour_ms,
       COUNT(*), SUM(number), MIN(number), MAX(number)
FROM ngsi_history
GROUP BY tenant, entity_id, attr, at_ms - ((at_ms % 3600000) + 3600000) % 3600000;"
        )
    };
}

const HOURLY_SQLITE: &str = hourly!(" WITHOUT ROWID");
const HOURLY_POSTGRES: &str = hourly!("");

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

/// When attribute instances (and Scopes) were deleted, as instances with the NGSI-LD Null:
/// apart from the values, so aggregations and the default time property never see them.
const HISTORY_DELETIONS: &str = r#"
CREATE TABLE ngsi_history_deletions (
    tenant TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    attr TEXT NOT NULL,
    deleted_ms BIGINT NOT NULL,
    dataset_id TEXT NOT NULL,
    instance TEXT NOT NULL,
    PRIMARY KEY (tenant, entity_id, attr, deleted_ms, dataset_id)
);
"#;

/// `entities`: a JSON object, entity id → where it came from (clause 5.2.38).
const ENTITY_MAPS: &str = r#"
CREATE TABLE ngsi_entity_maps (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    owner_department TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    entities TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
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
