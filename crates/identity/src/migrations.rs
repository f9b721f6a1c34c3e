use yunnao_store::{Migration, MigrationSet};

/// Identity's tables. Integers are BIGINT and hashes/keys hex TEXT so one text serves both
/// backends.
pub const MIGRATIONS: MigrationSet = MigrationSet {
    name: "identity",
    migrations: &[
        Migration::portable(
            1,
            "departments, users, roles, sessions, api clients, audit chain, seal keys",
            r#"
CREATE TABLE departments (
    code TEXT PRIMARY KEY,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL,
    alias_zh TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    department_code TEXT NOT NULL REFERENCES departments (code),
    password_hash TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX users_department ON users (department_code);
CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users (id),
    role TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);
CREATE TABLE sessions (
    jti TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    issued_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE TABLE api_clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    department_code TEXT NOT NULL REFERENCES departments (code),
    key_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    department TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    request_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_department ON audit_log (department, seq);
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    signed_at_ms BIGINT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TABLE seal_keys (
    department_code TEXT PRIMARY KEY REFERENCES departments (code),
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    private_key_sealed TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
"#,
        ),
        Migration::portable(
            2,
            "audit checkpoints chained to the previous one, with the hashes they cover",
            r#"
ALTER TABLE audit_checkpoints ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE audit_checkpoints ADD COLUMN prev_seq BIGINT;
ALTER TABLE audit_checkpoints ADD COLUMN record_hashes TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_checkpoints ADD COLUMN every BIGINT NOT NULL DEFAULT 64;
"#,
        ),
    ],
};
