//! Progress reports. The sealed document is stored as submitted; the columns beside it are
//! copies for listing, and a report is never changed (a correction is a newer report).

use yunnao_store::migrate::{Migration, MigrationSet};

pub const MIGRATIONS: MigrationSet = MigrationSet {
    name: "plan",
    migrations: &[Migration::portable(
        1,
        "progress reports",
        "CREATE TABLE plan_reports (
    id TEXT PRIMARY KEY,
    target_id TEXT NOT NULL,
    department_code TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    as_of TEXT NOT NULL,
    evidence TEXT NOT NULL,
    reported_by TEXT NOT NULL,
    reported_at_ms BIGINT NOT NULL,
    sealed TEXT NOT NULL
);
CREATE INDEX plan_reports_target ON plan_reports (target_id, reported_at_ms);",
    )],
};
