//! The audit chain. Each record holds `hash = SM3(prev_hash || canonical bytes)`, where the
//! canonical bytes are the record's fields (sequence number included) as compact JSON in a fixed
//! field order; the first record links to 32 zero bytes. Every `checkpoint_every` records the
//! platform signs `(seq, hash)` with its SM2 key.
//!
//! What verification catches: an edited field (hash mismatch), a deleted or inserted record (a
//! gap in `seq`, or a broken link), reordering (the `seq` is inside the hash), and deletion of
//! the tail up to the last checkpoint (the checkpoint names a record that is gone). A signed
//! checkpoint also stops an attacker with database access from rebuilding the whole chain,
//! since they do not hold the platform key.
//!
//! Appends are serialised: on PostgreSQL by a transaction-scoped advisory lock (so several
//! nodes share one chain), on SQLite by the store's single writer.

use crate::Identity;
use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_gm::{Sm2PublicKey, Sm2Signature};
use yunnao_store::{Arg, Backend, Db, DbResultExt, Write, sqlx};

/// Arbitrary constant naming the audit chain's advisory lock.
const ADVISORY_LOCK_KEY: i64 = 0x7961_756e_6e61_6f01;
const GENESIS: [u8; 32] = [0; 32];

/// What a handler tells the audit layer about the write it did.
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    /// Overrides `METHOD /route` (e.g. `user.create`).
    pub action: Option<String>,
    /// The object acted on (e.g. `user:<id>`).
    pub target: Option<String>,
    /// For unauthenticated writes such as sign-in: who claimed to act.
    pub actor: Option<String>,
    pub department: Option<String>,
    /// Data-plane writes (device telemetry) are metered per device, not audited one by one.
    pub skip: bool,
    /// The handler appended the record itself, in the transaction of the write it records
    /// ([`Identity::audit_in`]).
    pub recorded: bool,
}

impl AuditNote {
    pub fn skip() -> Self {
        Self {
            skip: true,
            ..Self::default()
        }
    }

    /// The record is in the chain already, committed with the write.
    pub fn recorded() -> Self {
        Self {
            recorded: true,
            ..Self::default()
        }
    }

    pub fn new(action: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            action: Some(action.into()),
            target: Some(target.into()),
            ..Self::default()
        }
    }

    /// The record this note describes: by the caller, else by whoever the note says claimed
    /// to act (a sign-in), else "anonymous"; `action` and `target` stand in for what the note
    /// leaves out.
    pub fn entry(
        self,
        principal: Option<&crate::Principal>,
        action: impl FnOnce() -> String,
        target: impl FnOnce() -> String,
        request_id: String,
        outcome: &str,
    ) -> AuditEntry {
        AuditEntry {
            actor: principal
                .map(|p| p.name.clone())
                .or(self.actor)
                .unwrap_or_else(|| "anonymous".to_owned()),
            department: principal
                .map(|p| p.department.clone())
                .or(self.department)
                .unwrap_or_default(),
            action: self.action.unwrap_or_else(action),
            target: self.target.unwrap_or_else(target),
            request_id,
            outcome: outcome.to_owned(),
        }
    }
}

/// A record to append.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub actor: String,
    pub department: String,
    pub action: String,
    pub target: String,
    pub request_id: String,
    /// `success`, `denied`, `rejected` or `error`.
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow, PartialEq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub department: String,
    pub action: String,
    pub target: String,
    pub request_id: String,
    pub outcome: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The fields that are hashed, in their fixed order.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    at_ms: i64,
    actor: &'a str,
    department: &'a str,
    action: &'a str,
    target: &'a str,
    request_id: &'a str,
    outcome: &'a str,
}

fn record_hash(prev_hash: &[u8], record: &AuditRecord) -> Result<[u8; 32], Problem> {
    let canonical = serde_json::to_vec(&Canonical {
        seq: record.seq,
        at_ms: record.at_ms,
        actor: &record.actor,
        department: &record.department,
        action: &record.action,
        target: &record.target,
        request_id: &record.request_id,
        outcome: &record.outcome,
    })
    .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(yunnao_gm::sm3_parts(&[prev_hash, &canonical]))
}

fn checkpoint_message(seq: i64, hash: &str, signed_at_ms: i64) -> Vec<u8> {
    format!("yunnao-audit-checkpoint\n{seq}\n{hash}\n{signed_at_ms}").into_bytes()
}

impl Identity {
    /// Appends one record to the chain and returns it.
    pub async fn audit(&self, entry: AuditEntry) -> Result<AuditRecord, Problem> {
        let mut tx = self.begin_chain_write().await?;
        let record = self.append(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Appends one record inside the caller's write transaction, so the record commits (or
    /// not) with the write it describes: one commit instead of two. The caller answers with
    /// [`AuditNote::recorded`] so the audit layer does not append it again.
    pub async fn audit_in(
        &self,
        tx: &mut Write,
        entry: AuditEntry,
    ) -> Result<AuditRecord, Problem> {
        self.lock_chain(tx).await?;
        self.append(tx, entry).await
    }

    async fn append(&self, tx: &mut Write, entry: AuditEntry) -> Result<AuditRecord, Problem> {
        let last = seq_and_hash(
            tx,
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        )
        .await?;
        let (prev_seq, prev_hash) = match last {
            Some((seq, hash)) => (
                seq,
                hex::decode(&hash).map_err(|_| Problem::internal("audit chain head is corrupt"))?,
            ),
            None => (0, GENESIS.to_vec()),
        };
        let mut record = AuditRecord {
            seq: prev_seq + 1,
            at_ms: yunnao_core::time::now_ms(),
            actor: entry.actor,
            department: entry.department,
            action: entry.action,
            target: entry.target,
            request_id: entry.request_id,
            outcome: entry.outcome,
            prev_hash: hex::encode(&prev_hash),
            hash: String::new(),
        };
        record.hash = hex::encode(record_hash(&prev_hash, &record)?);
        tx.execute(
            "INSERT INTO audit_log (seq, at_ms, actor, department, action, target, request_id, outcome, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                Arg::Int(record.seq),
                Arg::Int(record.at_ms),
                Arg::Text(&record.actor),
                Arg::Text(&record.department),
                Arg::Text(&record.action),
                Arg::Text(&record.target),
                Arg::Text(&record.request_id),
                Arg::Text(&record.outcome),
                Arg::Text(&record.prev_hash),
                Arg::Text(&record.hash),
            ],
        )
        .await?;
        if record.seq % self.config.checkpoint_every.max(1) == 0 {
            self.insert_checkpoint(tx, record.seq, &record.hash).await?;
        }
        Ok(record)
    }

    /// A write transaction that holds the chain: on PostgreSQL the advisory lock serialises
    /// appends across nodes; on SQLite the store's single writer already does.
    async fn begin_chain_write(&self) -> Result<Write, Problem> {
        let mut tx = self.db.begin_fast_write().await?;
        self.lock_chain(&mut tx).await?;
        Ok(tx)
    }

    /// On PostgreSQL the advisory lock serialises appends across nodes until `tx` ends; on
    /// SQLite the store's single writer already does.
    async fn lock_chain(&self, tx: &mut Write) -> Result<(), Problem> {
        if self.db.backend() == Backend::Postgres {
            tx.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[Arg::Int(ADVISORY_LOCK_KEY)],
            )
            .await?;
        }
        Ok(())
    }

    /// Signs a checkpoint at the current head unless one is there already (called at shutdown,
    /// so a cut tail is caught even between regular checkpoints).
    pub async fn checkpoint_now(&self) -> Result<Option<i64>, Problem> {
        let mut tx = self.begin_chain_write().await?;
        let head = seq_and_hash(
            &mut tx,
            "SELECT seq, hash FROM audit_log WHERE seq NOT IN (SELECT seq FROM audit_checkpoints) \
             AND seq = (SELECT MAX(seq) FROM audit_log)",
        )
        .await?;
        let Some((seq, hash)) = head else {
            return Ok(None);
        };
        self.insert_checkpoint(&mut tx, seq, &hash).await?;
        tx.commit().await?;
        Ok(Some(seq))
    }

    async fn insert_checkpoint(&self, tx: &mut Write, seq: i64, hash: &str) -> Result<(), Problem> {
        let signed_at_ms = yunnao_core::time::now_ms();
        let signature = self
            .keys
            .signer()
            .sign(&checkpoint_message(seq, hash, signed_at_ms));
        tx.execute(
            "INSERT INTO audit_checkpoints (seq, hash, signed_at_ms, signature) VALUES ($1, $2, $3, $4)",
            &[
                Arg::Int(seq),
                Arg::Text(hash),
                Arg::Int(signed_at_ms),
                Arg::Text(&signature.to_hex()),
            ],
        )
        .await?;
        Ok(())
    }
}

/// A chain record's `(seq, hash)` selected by `sql`, read inside the chain's transaction.
async fn seq_and_hash(tx: &mut Write, sql: &str) -> Result<Option<(i64, String)>, Problem> {
    match tx {
        Write::Direct(direct) => {
            use rusqlite::OptionalExtension;
            direct
                .connection()?
                .prepare_cached(sql)
                .and_then(|mut statement| {
                    statement
                        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()
                })
                .map_err(yunnao_store::sqlite_problem)
        }
        Write::Pool(tx) => sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_optional(&mut ***tx)
            .await
            .db(),
    }
}

/// Records after `after_seq`, optionally of one department, oldest first.
pub async fn list(
    db: &Db,
    department: Option<&str>,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<AuditRecord>, Problem> {
    const COLUMNS: &str =
        "seq, at_ms, actor, department, action, target, request_id, outcome, prev_hash, hash";
    let query = match department {
        Some(code) => sqlx::query_as::<_, AuditRecord>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_log WHERE department = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        )))
        .bind(code.to_owned()),
        None => sqlx::query_as::<_, AuditRecord>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))),
    };
    query
        .bind(after_seq)
        .bind(limit)
        .fetch_all(db.pool())
        .await
        .db()
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
pub struct VerifyReport {
    pub ok: bool,
    pub records: i64,
    pub checkpoints: i64,
    /// The first record (or checkpoint) that fails, by sequence number.
    pub first_bad_seq: Option<i64>,
    pub reason: Option<String>,
}

impl VerifyReport {
    fn bad(records: i64, checkpoints: i64, seq: i64, reason: String) -> Self {
        Self {
            ok: false,
            records,
            checkpoints,
            first_bad_seq: Some(seq),
            reason: Some(reason),
        }
    }
}

/// Walks the whole chain and every checkpoint.
pub async fn verify(db: &Db, platform_key: &Sm2PublicKey) -> Result<VerifyReport, Problem> {
    const PAGE: i64 = 2000;
    let mut expected_seq = 1;
    let mut prev_hash = GENESIS.to_vec();
    let mut hashes_at_checkpoints = std::collections::HashMap::new();
    let checkpoints: Vec<(i64, String, i64, String)> = sqlx::query_as(
        "SELECT seq, hash, signed_at_ms, signature FROM audit_checkpoints ORDER BY seq",
    )
    .fetch_all(db.pool())
    .await
    .db()?;
    let checkpoint_seqs: std::collections::HashSet<i64> = checkpoints.iter().map(|c| c.0).collect();
    let mut records = 0;
    loop {
        let page = list(db, None, expected_seq - 1, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for record in &page {
            if record.seq != expected_seq {
                return Ok(VerifyReport::bad(
                    records,
                    checkpoints.len() as i64,
                    expected_seq,
                    format!(
                        "record {expected_seq} is missing (next present is {})",
                        record.seq
                    ),
                ));
            }
            if record.prev_hash != hex::encode(&prev_hash) {
                return Ok(VerifyReport::bad(
                    records,
                    checkpoints.len() as i64,
                    record.seq,
                    format!(
                        "record {} does not link to record {}",
                        record.seq,
                        record.seq - 1
                    ),
                ));
            }
            let hash = record_hash(&prev_hash, record)?;
            if hex::encode(hash) != record.hash {
                return Ok(VerifyReport::bad(
                    records,
                    checkpoints.len() as i64,
                    record.seq,
                    format!(
                        "record {} was altered: its contents do not match its hash",
                        record.seq
                    ),
                ));
            }
            if checkpoint_seqs.contains(&record.seq) {
                hashes_at_checkpoints.insert(record.seq, record.hash.clone());
            }
            prev_hash = hash.to_vec();
            expected_seq += 1;
            records += 1;
        }
    }
    for (seq, hash, signed_at_ms, signature) in &checkpoints {
        let bad =
            |reason: String| VerifyReport::bad(records, checkpoints.len() as i64, *seq, reason);
        let Some(chained) = hashes_at_checkpoints.get(seq) else {
            return Ok(bad(format!(
                "checkpoint {seq} names a record that is gone: the chain was cut after record {records}"
            )));
        };
        if chained != hash {
            return Ok(bad(format!("checkpoint {seq} does not match record {seq}")));
        }
        let signature_ok = Sm2Signature::from_hex(signature)
            .and_then(|s| platform_key.verify(&checkpoint_message(*seq, hash, *signed_at_ms), &s))
            .is_ok();
        if !signature_ok {
            return Ok(bad(format!(
                "checkpoint {seq} is not signed by this platform's key"
            )));
        }
    }
    Ok(VerifyReport {
        ok: true,
        records,
        checkpoints: checkpoints.len() as i64,
        first_bad_seq: None,
        reason: None,
    })
}
