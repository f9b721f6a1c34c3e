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
        Migration::portable(
            5,
            "applications keep their plan, channel, clock and results",
            "ALTER TABLE svc_applications ADD COLUMN plan_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE svc_applications ADD COLUMN holder_name TEXT NOT NULL DEFAULT '';
ALTER TABLE svc_applications ADD COLUMN channel TEXT NOT NULL DEFAULT 'web';
ALTER TABLE svc_applications ADD COLUMN filed_by TEXT;
ALTER TABLE svc_applications ADD COLUMN returned_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE svc_applications ADD COLUMN clock_started_ms BIGINT;
ALTER TABLE svc_applications ADD COLUMN used_minutes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE svc_applications ADD COLUMN due_at_ms BIGINT;
ALTER TABLE svc_applications ADD COLUMN warn_at_ms BIGINT;
ALTER TABLE svc_applications ADD COLUMN warned_at_ms BIGINT;
ALTER TABLE svc_applications ADD COLUMN overdue_at_ms BIGINT;
ALTER TABLE svc_applications ADD COLUMN accepted_at_ms BIGINT;
ALTER TABLE svc_applications ADD COLUMN concluded_at_ms BIGINT;
ALTER TABLE svc_applications ADD COLUMN results_json TEXT NOT NULL DEFAULT '[]';
CREATE INDEX svc_applications_holder ON svc_applications (holder_id, created_at_ms);
CREATE INDEX svc_applications_due ON svc_applications (state, due_at_ms)",
        ),
        Migration::portable(
            6,
            "approval steps' time limits on the working calendar",
            "ALTER TABLE svc_application_steps ADD COLUMN opened_at_ms BIGINT;
ALTER TABLE svc_application_steps ADD COLUMN due_at_ms BIGINT;
ALTER TABLE svc_application_steps ADD COLUMN warn_at_ms BIGINT;
ALTER TABLE svc_application_steps ADD COLUMN warned_at_ms BIGINT;
ALTER TABLE svc_application_steps ADD COLUMN overdue_at_ms BIGINT;
ALTER TABLE svc_application_steps ADD COLUMN decided_at_ms BIGINT;
CREATE INDEX svc_application_steps_due ON svc_application_steps (state, due_at_ms)",
        ),
        Migration {
            version: 7,
            description: "uploaded materials with their SM3 digest",
            sqlite: "CREATE TABLE svc_uploads (
    id TEXT PRIMARY KEY,
    uploaded_by TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sm3 TEXT NOT NULL,
    bytes BLOB NOT NULL,
    application_id TEXT,
    created_at_ms BIGINT NOT NULL
)",
            postgres: "CREATE TABLE svc_uploads (
    id TEXT PRIMARY KEY,
    uploaded_by TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sm3 TEXT NOT NULL,
    bytes BYTEA NOT NULL,
    application_id TEXT,
    created_at_ms BIGINT NOT NULL
)",
        },
        Migration::portable(
            8,
            "the message centre",
            "CREATE TABLE svc_messages (
    id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    application_id TEXT,
    kind TEXT NOT NULL,
    text_zh TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    read_at_ms BIGINT
);
CREATE INDEX svc_messages_recipient ON svc_messages (recipient, created_at_ms)",
        ),
        Migration::portable(
            9,
            "every use of a licence: consented to, shared with a department",
            "CREATE TABLE svc_licence_uses (
    licence_id TEXT NOT NULL,
    application_id TEXT NOT NULL,
    department TEXT NOT NULL,
    action TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (licence_id, application_id, department, action)
)",
        ),
        Migration::portable(
            10,
            "policy budgets, the grants ledger and appeals",
            "CREATE TABLE svc_policy_budgets (
    policy_code TEXT PRIMARY KEY,
    budget_yuan BIGINT NOT NULL,
    spent_yuan BIGINT NOT NULL
);
CREATE TABLE svc_grants (
    policy_code TEXT NOT NULL,
    credit_code TEXT NOT NULL,
    amount_yuan BIGINT NOT NULL,
    state TEXT NOT NULL,
    because_json TEXT NOT NULL,
    sealed TEXT,
    run_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    decided_at_ms BIGINT,
    PRIMARY KEY (policy_code, credit_code)
);
CREATE INDEX svc_grants_enterprise ON svc_grants (credit_code);
CREATE TABLE svc_appeals (
    id TEXT PRIMARY KEY,
    policy_code TEXT NOT NULL,
    credit_code TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    answer TEXT NOT NULL,
    decided_by TEXT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX svc_appeals_policy ON svc_appeals (policy_code, state)",
        ),
        Migration::portable(
            11,
            "catalogue versions: each change to a service kept",
            "CREATE TABLE svc_service_versions (
    code TEXT NOT NULL,
    version BIGINT NOT NULL,
    body_json TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    changed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (code, version)
)",
        ),
    ],
};
