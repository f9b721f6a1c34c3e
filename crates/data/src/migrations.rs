//! The data hub's tables. A dataset's rows live in tables of their own, one per imported
//! version (`dt_…`), made by the importer from the dataset's schema ([`crate::table`]).

use yunnao_store::migrate::{Migration, MigrationSet};

pub const MIGRATIONS: MigrationSet = MigrationSet {
    name: "data",
    migrations: &[
        Migration::portable(
            1,
            "the dataset catalogue",
            "CREATE TABLE data_datasets (
    id TEXT PRIMARY KEY,
    department TEXT NOT NULL,
    level TEXT NOT NULL,
    sharing TEXT NOT NULL,
    doc TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    modified_at_ms BIGINT NOT NULL
);
CREATE INDEX data_datasets_department ON data_datasets (department)",
        ),
        Migration::portable(
            2,
            "imported versions of a dataset's table, with their quality",
            "CREATE TABLE data_versions (
    dataset TEXT NOT NULL,
    version BIGINT NOT NULL,
    table_name TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    format TEXT NOT NULL,
    encoding TEXT NOT NULL,
    sm3 TEXT NOT NULL,
    imported_at_ms BIGINT NOT NULL,
    imported_by TEXT NOT NULL,
    completeness DOUBLE PRECISION NOT NULL,
    validity DOUBLE PRECISION NOT NULL,
    uniqueness DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (dataset, version)
)",
        ),
        Migration::portable(
            3,
            "sharing requests and the grants they become",
            "CREATE TABLE data_requests (
    id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    owner TEXT NOT NULL,
    consumer TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    purpose TEXT NOT NULL,
    legal_basis TEXT NOT NULL,
    fields TEXT NOT NULL,
    row_filter TEXT NOT NULL,
    valid_from_ms BIGINT NOT NULL,
    valid_until_ms BIGINT NOT NULL,
    expected_rows BIGINT NOT NULL,
    status TEXT NOT NULL,
    granted_fields TEXT,
    granted_filter TEXT,
    granted_until_ms BIGINT,
    masking TEXT,
    decided_by TEXT,
    decided_at_ms BIGINT,
    reason TEXT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX data_requests_consumer ON data_requests (consumer, dataset);
CREATE INDEX data_requests_owner ON data_requests (owner, status)",
        ),
        Migration::portable(
            4,
            "metered reads, staleness alerts",
            "CREATE TABLE data_reads (
    at_ms BIGINT NOT NULL,
    dataset TEXT NOT NULL,
    owner TEXT NOT NULL,
    consumer TEXT NOT NULL,
    actor TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    row_count BIGINT NOT NULL,
    field_count BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX data_reads_dataset ON data_reads (dataset, at_ms);
CREATE INDEX data_reads_consumer ON data_reads (consumer, at_ms);
CREATE TABLE data_alerts (
    dataset TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    raised_at_ms BIGINT NOT NULL,
    cleared_at_ms BIGINT
);
CREATE INDEX data_alerts_dataset ON data_alerts (dataset, kind)",
        ),
        Migration::portable(
            5,
            "the capability marketplace and its subscriptions",
            "CREATE TABLE data_capabilities (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    department TEXT NOT NULL,
    doc TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE data_subscriptions (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    department TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    calls BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    cancelled_at_ms BIGINT
);
CREATE INDEX data_subscriptions_client ON data_subscriptions (client_id, status)",
        ),
    ],
};
