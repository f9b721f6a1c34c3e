//! The data hub's tables.

use yunnao_store::migrate::{Migration, MigrationSet};

pub const MIGRATIONS: MigrationSet = MigrationSet {
    name: "data",
    migrations: &[Migration::portable(
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
    )],
};
