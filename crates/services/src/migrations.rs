//! The services hub's tables. A licence's sealed document is stored as issued; the columns
//! beside it are copies for finding it, and its status is the one thing that changes.

use yunnao_store::migrate::{Migration, MigrationSet};

pub const MIGRATIONS: MigrationSet = MigrationSet {
    name: "services",
    migrations: &[
        Migration::portable(
            1,
            "who a user is as a holder: a resident identity number or a credit code",
            "CREATE TABLE svc_holders (
    user_id TEXT PRIMARY KEY,
    holder_id TEXT NOT NULL UNIQUE,
    holder_kind TEXT NOT NULL,
    holder_name TEXT NOT NULL,
    bound_by TEXT NOT NULL,
    bound_at_ms BIGINT NOT NULL
)",
        ),
        Migration::portable(
            2,
            "e-licences sealed by their issuing department",
            "CREATE TABLE svc_licences (
    id TEXT PRIMARY KEY,
    licence_type TEXT NOT NULL,
    holder_id TEXT NOT NULL,
    issuer TEXT NOT NULL,
    issued_at_ms BIGINT NOT NULL,
    valid_until_ms BIGINT,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL,
    sealed TEXT NOT NULL
);
CREATE INDEX svc_licences_holder ON svc_licences (holder_id, issued_at_ms)",
        ),
    ],
};
