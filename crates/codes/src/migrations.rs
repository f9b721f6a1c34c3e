//! The code hub's tables.

use yunnao_store::migrate::{Migration, MigrationSet};

pub const MIGRATIONS: MigrationSet = MigrationSet {
    name: "codes",
    migrations: &[
        Migration::portable(
            1,
            "code signing keys, sealed",
            "CREATE TABLE code_keys (
    kid TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    private_sealed TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
)",
        ),
        Migration::portable(
            2,
            "holders' pseudonymous subjects and their bound cards",
            "CREATE TABLE code_subjects (
    holder_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL UNIQUE,
    revoked_at_ms BIGINT
);
CREATE TABLE code_cards (
    handle TEXT PRIMARY KEY,
    holder_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    card_id TEXT NOT NULL,
    UNIQUE (holder_id, kind, card_id)
)",
        ),
        Migration::portable(
            3,
            "the scan log; a code is accepted once per scenario",
            "CREATE TABLE code_scans (
    id TEXT PRIMARY KEY,
    scenario TEXT NOT NULL,
    subject TEXT NOT NULL,
    nonce TEXT NOT NULL,
    result TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX code_scans_once ON code_scans (scenario, subject, nonce) WHERE result = 'accepted';
CREATE INDEX code_scans_subject ON code_scans (subject, at_ms);
CREATE INDEX code_scans_scenario ON code_scans (scenario, at_ms)",
        ),
        Migration::portable(
            4,
            "key rotation and algorithms, revocations, the trust list of other issuers",
            "ALTER TABLE code_keys ADD COLUMN algorithm TEXT NOT NULL DEFAULT 'SM2-SM3';
ALTER TABLE code_keys ADD COLUMN retired_at_ms BIGINT;
ALTER TABLE code_cards ADD COLUMN revoked_at_ms BIGINT;
CREATE INDEX code_cards_revoked ON code_cards (revoked_at_ms);
CREATE TABLE code_revoked_subjects (
    subject TEXT PRIMARY KEY,
    holder_id TEXT NOT NULL,
    revoked_at_ms BIGINT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX code_revoked_subjects_at ON code_revoked_subjects (revoked_at_ms);
CREATE INDEX code_revoked_subjects_holder ON code_revoked_subjects (holder_id);
CREATE TABLE code_trust (
    kid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    certificate TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at_ms BIGINT NOT NULL
)",
        ),
    ],
};
