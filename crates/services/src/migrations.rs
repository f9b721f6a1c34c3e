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
        Migration::portable(
            3,
            "applications for services",
            "CREATE TABLE svc_applications (
    id TEXT PRIMARY KEY,
    service_code TEXT NOT NULL,
    service_version BIGINT NOT NULL,
    holder_id TEXT NOT NULL,
    applicant TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    form_json TEXT NOT NULL,
    materials_json TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX svc_applications_applicant ON svc_applications (applicant, created_at_ms)",
        ),
        Migration::portable(
            4,
            "the approval steps of an application",
            "CREATE TABLE svc_application_steps (
    application_id TEXT NOT NULL,
    stage BIGINT NOT NULL,
    step BIGINT NOT NULL,
    department TEXT NOT NULL,
    name_zh TEXT NOT NULL,
    state TEXT NOT NULL,
    decided_by TEXT,
    comment TEXT NOT NULL,
    PRIMARY KEY (application_id, stage, step)
);
CREATE INDEX svc_application_steps_open ON svc_application_steps (department, state)",
        ),
    ],
};
