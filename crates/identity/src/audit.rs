//! The audit chain. Each record holds `hash = SM3(prev_hash || canonical bytes)`, where the
//! canonical bytes are the record's fields (sequence number included) as compact JSON in a fixed
//! field order; the first record links to 32 zero bytes.
//!
//! Checkpoints make the chain's length and head unforgeable without the platform key. A
//! checkpoint signs (SM2) its record's `(seq, hash)`, the time, the previous checkpoint's
//! `seq` and signature (so checkpoints form a chain of their own), the interval, and the
//! SM3 of the hashes of every record it covers (those hashes are kept with it). One is written
//! with the record at every `checkpoint_every`-th sequence number, and the checkpointer signs
//! the head within [`CHECKPOINT_PERIOD`] of any record left unsigned, so a kill -9 leaves at
//! most that window unsigned.
//!
//! What verification catches, naming the first altered record: an edited field (hash
//! mismatch), a deleted or inserted record (a gap in `seq`, or a broken link), reordering (the
//! `seq` is inside the hash), a chain rebuilt after an edit (a record's hash differs from the
//! one its checkpoint signed), a deleted checkpoint (the next one names it as its previous; or
//! more than `checkpoint_every` records, or records older than [`UNSIGNED_WINDOW_MS`], are
//! left unsigned), a forged checkpoint (signature), and deletion of the tail with its
//! checkpoints or of the whole log against a signed head kept outside the database
//! ([`SignedHead`], `yunnao audit head`, `verify --expect-head`).
//!
//! Appends are serialised: on PostgreSQL by a transaction-scoped advisory lock (so several
//! nodes share one chain), on SQLite by the store's single writer.

use crate::Identity;
use serde::{Deserialize, Serialize};
use yunnao_core::Problem;
use yunnao_gm::{Sm2PublicKey, Sm2Signature};
use yunnao_store::{Arg, Db, DbResultExt, Write, sqlx};

/// Arbitrary constant naming the audit chain's advisory lock.
const ADVISORY_LOCK_KEY: i64 = 0x7961_756e_6e61_6f01;
const GENESIS: [u8; 32] = [0; 32];
/// Audit records per insert statement (10 parameters each, within SQLite's limit).
const AUDIT_INSERT_ROWS: usize = 256;

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

/// A record's chain hash: SM3 of the previous hash and the record's canonical bytes (public
/// for tools that check or, in tests, forge a chain).
pub fn record_hash(prev_hash: &[u8], record: &AuditRecord) -> Result<[u8; 32], Problem> {
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

/// How often the checkpointer signs a head left unsigned.
pub const CHECKPOINT_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);
/// The longest span of records the chain may end with unsigned: a crash between two runs of
/// the checkpointer (with room for a slow commit).
pub const UNSIGNED_WINDOW_MS: i64 = 15_000;

/// What the first checkpoints (before chaining) signed.
fn legacy_checkpoint_message(seq: i64, hash: &str, signed_at_ms: i64) -> Vec<u8> {
    format!("yunnao-audit-checkpoint\n{seq}\n{hash}\n{signed_at_ms}").into_bytes()
}

/// A checkpoint as stored and as exported (`yunnao audit head`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow, PartialEq)]
pub struct SignedHead {
    pub seq: i64,
    pub hash: String,
    pub signed_at_ms: i64,
    pub signature: String,
    /// 1: unchained (before migration 2); 2: chained.
    pub version: i64,
    /// The previous checkpoint's sequence number (0 for the first).
    pub prev_seq: Option<i64>,
    /// The interval at which checkpoints are written with records.
    pub every: i64,
    /// The hex hashes of the records this checkpoint covers, concatenated: with them a kept
    /// head names the first altered record even where the database's checkpoints are gone.
    #[serde(default)]
    pub record_hashes: String,
    /// The previous checkpoint's signature, which this one signs over: carried in an exported
    /// head so that it verifies on its own, whatever is left in the database.
    #[serde(default)]
    #[sqlx(skip)]
    pub prev_signature: String,
}

impl SignedHead {
    /// The signed message; `prev_signature` is the previous checkpoint's.
    fn message(&self, prev_signature: &str) -> Vec<u8> {
        if self.version < 2 {
            return legacy_checkpoint_message(self.seq, &self.hash, self.signed_at_ms);
        }
        let covered = hex::encode(yunnao_gm::sm3_parts(&[self.record_hashes.as_bytes()]));
        format!(
            "yunnao-audit-checkpoint-v2\n{}\n{}\n{}\n{}\n{prev_signature}\n{}\n{covered}",
            self.seq,
            self.hash,
            self.signed_at_ms,
            self.prev_seq.unwrap_or(0),
            self.every,
        )
        .into_bytes()
    }

    /// Is this head signed by `key`? (Its chain to the previous checkpoint is not checked.)
    pub fn signed_by(&self, key: &Sm2PublicKey, prev_signature: &str) -> bool {
        Sm2Signature::from_hex(&self.signature)
            .and_then(|s| key.verify(&self.message(prev_signature), &s))
            .is_ok()
    }
}

const CHECKPOINT_COLUMNS: &str =
    "seq, hash, signed_at_ms, signature, version, prev_seq, every, record_hashes";

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

    /// Appends many records inside the caller's write transaction with one read of the chain's
    /// head and one multi-row insert: for callers that audit in groups (metered data reads),
    /// where a read and an insert per record would hold the chain's lock for each.
    pub async fn audit_many_in(
        &self,
        tx: &mut Write,
        entries: Vec<AuditEntry>,
    ) -> Result<Vec<AuditRecord>, Problem> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        self.lock_chain(tx).await?;
        self.append_all(tx, entries).await
    }

    async fn append(&self, tx: &mut Write, entry: AuditEntry) -> Result<AuditRecord, Problem> {
        let mut records = self.append_all(tx, vec![entry]).await?;
        records
            .pop()
            .ok_or_else(|| Problem::internal("audit append returned no record"))
    }

    /// Chains `entries` onto the head and inserts them, at most [`AUDIT_INSERT_ROWS`] a
    /// statement; checkpoints fall where the interval says, after their records are in.
    async fn append_all(
        &self,
        tx: &mut Write,
        entries: Vec<AuditEntry>,
    ) -> Result<Vec<AuditRecord>, Problem> {
        let last = seq_and_hash(
            tx,
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        )
        .await?;
        let (mut prev_seq, mut prev_hash) = match last {
            Some((seq, hash)) => (
                seq,
                hex::decode(&hash).map_err(|_| Problem::internal("audit chain head is corrupt"))?,
            ),
            None => (0, GENESIS.to_vec()),
        };
        let at_ms = yunnao_core::time::now_ms();
        let mut records = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut record = AuditRecord {
                seq: prev_seq + 1,
                at_ms,
                actor: entry.actor,
                department: entry.department,
                action: entry.action,
                target: entry.target,
                request_id: entry.request_id,
                outcome: entry.outcome,
                prev_hash: hex::encode(&prev_hash),
                hash: String::new(),
            };
            let hash = record_hash(&prev_hash, &record)?;
            record.hash = hex::encode(hash);
            prev_seq = record.seq;
            prev_hash = hash.to_vec();
            records.push(record);
        }
        for chunk in records.chunks(AUDIT_INSERT_ROWS) {
            let mut sql = String::from(
                "INSERT INTO audit_log (seq, at_ms, actor, department, action, target, request_id, outcome, prev_hash, hash) VALUES ",
            );
            let mut args = Vec::with_capacity(chunk.len() * 10);
            for (i, record) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let n = i * 10;
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5,
                    n + 6,
                    n + 7,
                    n + 8,
                    n + 9,
                    n + 10
                ));
                args.extend([
                    Arg::Int(record.seq),
                    Arg::Int(record.at_ms),
                    Arg::text(&record.actor),
                    Arg::text(&record.department),
                    Arg::text(&record.action),
                    Arg::text(&record.target),
                    Arg::text(&record.request_id),
                    Arg::text(&record.outcome),
                    Arg::text(&record.prev_hash),
                    Arg::text(&record.hash),
                ]);
            }
            tx.execute(&sql, &args).await?;
        }
        let every = self.config.checkpoint_every.max(1);
        for record in records.iter().filter(|r| r.seq % every == 0) {
            self.insert_checkpoint(tx, record.seq, &record.hash, record.at_ms)
                .await?;
        }
        Ok(records)
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
        if tx.dialect().concurrent_writers() {
            tx.execute(
                "SELECT pg_advisory_xact_lock($1)",
                &[Arg::Int(ADVISORY_LOCK_KEY)],
            )
            .await?;
        }
        Ok(())
    }

    /// Signs a checkpoint at the current head unless one is there already (by the
    /// checkpointer, at start and at shutdown).
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
        self.insert_checkpoint(&mut tx, seq, &hash, yunnao_core::time::now_ms())
            .await?;
        tx.commit().await?;
        Ok(Some(seq))
    }

    /// Signs the head whenever it is left unsigned, every [`CHECKPOINT_PERIOD`], until the
    /// process ends; the first at once (a head a crash left unsigned).
    pub fn spawn_checkpointer(&self) -> tokio::task::JoinHandle<()> {
        let identity = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(CHECKPOINT_PERIOD);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(problem) = identity.checkpoint_now().await {
                    tracing::error!(%problem, "audit checkpoint failed");
                }
            }
        })
    }

    /// The newest checkpoint after signing the head: what an operator keeps outside the
    /// database to detect truncation later (`verify --expect-head`).
    pub async fn signed_head(&self) -> Result<Option<SignedHead>, Problem> {
        self.checkpoint_now().await?;
        let mut newest: Vec<SignedHead> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq DESC LIMIT 2"
        )))
        .fetch_all(self.db.pool())
        .await
        .db()?;
        let previous = (newest.len() == 2).then(|| newest.remove(1));
        Ok(newest.pop().map(|mut head| {
            head.prev_signature = previous.map(|p| p.signature).unwrap_or_default();
            head
        }))
    }

    async fn insert_checkpoint(
        &self,
        tx: &mut Write,
        seq: i64,
        hash: &str,
        signed_at_ms: i64,
    ) -> Result<(), Problem> {
        let previous = seq_and_hash(
            tx,
            "SELECT seq, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
        )
        .await?;
        let (prev_seq, prev_signature) = previous.unwrap_or((0, String::new()));
        let record_hashes = hashes_between(tx, prev_seq, seq).await?.concat();
        let mut head = SignedHead {
            seq,
            hash: hash.to_owned(),
            signed_at_ms,
            signature: String::new(),
            version: 2,
            prev_seq: Some(prev_seq),
            every: self.config.checkpoint_every.max(1),
            record_hashes,
            prev_signature,
        };
        head.signature = self
            .keys
            .signer()
            .sign(&head.message(&head.prev_signature))
            .to_hex();
        tx.execute(
            "INSERT INTO audit_checkpoints (seq, hash, signed_at_ms, signature, version, prev_seq, every, record_hashes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                Arg::Int(head.seq),
                Arg::text(&head.hash),
                Arg::Int(head.signed_at_ms),
                Arg::text(&head.signature),
                Arg::Int(head.version),
                Arg::Int(prev_seq),
                Arg::Int(head.every),
                Arg::text(&head.record_hashes),
            ],
        )
        .await?;
        Ok(())
    }
}

/// The hashes of the records after `after` up to `upto`, in order, read inside the chain's
/// transaction.
async fn hashes_between(tx: &mut Write, after: i64, upto: i64) -> Result<Vec<String>, Problem> {
    let rows: Vec<(String,)> = tx
        .fetch_all(
            "SELECT hash FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq",
            &[Arg::Int(after), Arg::Int(upto)],
        )
        .await?;
    Ok(rows.into_iter().map(|(hash,)| hash).collect())
}

/// A chain record's `(seq, hash)` selected by `sql`, read inside the chain's transaction.
async fn seq_and_hash(tx: &mut Write, sql: &str) -> Result<Option<(i64, String)>, Problem> {
    tx.fetch_optional(sql, &[]).await
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

/// The earliest fault found, by the sequence number it concerns.
#[derive(Default)]
struct Faults {
    first: Option<(i64, String)>,
}

impl Faults {
    fn note(&mut self, seq: i64, reason: String) {
        if self.first.as_ref().is_none_or(|(first, _)| seq < *first) {
            self.first = Some((seq, reason));
        }
    }
}

/// Walks the whole chain and every checkpoint, and reports the first fault by sequence
/// number.
pub async fn verify(db: &Db, platform_key: &Sm2PublicKey) -> Result<VerifyReport, Problem> {
    verify_against(db, platform_key, None).await
}

/// [`verify`], also requiring the chain to hold `expected` (a head kept outside the database):
/// a log cut below it, or deleted whole, fails.
pub async fn verify_against(
    db: &Db,
    platform_key: &Sm2PublicKey,
    expected: Option<&SignedHead>,
) -> Result<VerifyReport, Problem> {
    const PAGE: i64 = 2000;
    let checkpoints: Vec<SignedHead> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq"
    )))
    .fetch_all(db.pool())
    .await
    .db()?;
    let count = checkpoints.len() as i64;
    // Faults found in the checkpoints, by the sequence number they concern; the record walk
    // below may find an earlier one.
    let mut faults = Faults::default();
    if let Some(head) = expected {
        // The kept head verifies on its own (it carries its predecessor's signature), so it
        // holds even where the database's checkpoints are gone.
        if !head.signed_by(platform_key, &head.prev_signature) {
            faults.note(
                head.seq,
                format!(
                    "the expected head (record {}) is not signed by this platform's key",
                    head.seq
                ),
            );
        }
    }
    let mut signed_hashes: std::collections::HashMap<i64, (String, i64)> =
        std::collections::HashMap::new();
    let mut previous: Option<&SignedHead> = None;
    for checkpoint in &checkpoints {
        let prev_seq = previous.map_or(0, |p| p.seq);
        let prev_signature = previous.map_or("", |p| p.signature.as_str());
        if checkpoint.version >= 2 {
            if checkpoint.prev_seq != Some(prev_seq) {
                let named = checkpoint.prev_seq.unwrap_or(0);
                faults.note(
                    prev_seq + 1,
                    format!(
                        "checkpoint {named} is missing: checkpoint {} follows it, but the one \
                         before is {prev_seq}",
                        checkpoint.seq
                    ),
                );
            }
            if checkpoint.seq - prev_seq > checkpoint.every {
                faults.note(
                    prev_seq + 1,
                    format!(
                        "checkpoint {} is missing (one is written every {} records)",
                        prev_seq + checkpoint.every,
                        checkpoint.every
                    ),
                );
            }
            let hashes = checkpoint.record_hashes.as_bytes().chunks(64);
            let covered = hashes.len() as i64;
            if covered != checkpoint.seq - checkpoint.prev_seq.unwrap_or(prev_seq) {
                faults.note(
                    checkpoint.seq,
                    format!(
                        "checkpoint {} does not cover the records it follows",
                        checkpoint.seq
                    ),
                );
            }
            let first = checkpoint.prev_seq.unwrap_or(prev_seq) + 1;
            for (i, hash) in hashes.enumerate() {
                signed_hashes.insert(
                    first + i as i64,
                    (String::from_utf8_lossy(hash).into_owned(), checkpoint.seq),
                );
            }
        }
        if !checkpoint.signed_by(platform_key, prev_signature) {
            faults.note(
                checkpoint.seq,
                format!(
                    "checkpoint {} is not signed by this platform's key (or its previous \
                     checkpoint was altered)",
                    checkpoint.seq
                ),
            );
        }
        previous = Some(checkpoint);
    }
    if let Some(head) = expected
        && head.version >= 2
        && head.signed_by(platform_key, &head.prev_signature)
    {
        let first = head.prev_seq.unwrap_or(0) + 1;
        for (i, hash) in head.record_hashes.as_bytes().chunks(64).enumerate() {
            signed_hashes
                .entry(first + i as i64)
                .or_insert_with(|| (String::from_utf8_lossy(hash).into_owned(), head.seq));
        }
    }
    let checkpoint_at: std::collections::HashMap<i64, &SignedHead> =
        checkpoints.iter().map(|c| (c.seq, c)).collect();

    let mut expected_seq = 1;
    let mut prev_hash = GENESIS.to_vec();
    let mut records = 0;
    let mut last_at_ms = 0;
    // The first record after the newest checkpoint, and when it was written.
    let last_checkpoint = checkpoints.last().map_or(0, |c| c.seq);
    let mut first_unsigned: Option<(i64, i64)> = None;
    'walk: loop {
        let page = list(db, None, expected_seq - 1, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for record in &page {
            if faults
                .first
                .as_ref()
                .is_some_and(|(seq, _)| *seq <= record.seq)
            {
                break 'walk;
            }
            if record.seq != expected_seq {
                faults.note(
                    record.seq.min(expected_seq),
                    format!(
                        "record {expected_seq} is missing (next present is {})",
                        record.seq
                    ),
                );
                break 'walk;
            }
            if record.prev_hash != hex::encode(&prev_hash) {
                faults.note(
                    record.seq.min(expected_seq),
                    format!(
                        "record {} does not link to record {}",
                        record.seq,
                        record.seq - 1
                    ),
                );
                break 'walk;
            }
            let hash = hex::encode(record_hash(&prev_hash, record)?);
            if hash != record.hash {
                faults.note(
                    record.seq.min(expected_seq),
                    format!(
                        "record {} was altered: its contents do not match its hash",
                        record.seq
                    ),
                );
                break 'walk;
            }
            if let Some((signed, by)) = signed_hashes.get(&record.seq)
                && *signed != hash
            {
                faults.note(
                    record.seq.min(expected_seq),
                    format!(
                        "record {} was altered: the chain was rebuilt after it, and its hash \
                     differs from the one checkpoint {by} signed",
                        record.seq
                    ),
                );
                break 'walk;
            }
            if let Some(checkpoint) = checkpoint_at.get(&record.seq)
                && checkpoint.hash != hash
            {
                faults.note(
                    record.seq.min(expected_seq),
                    format!(
                        "record {} was altered: it does not match checkpoint {}",
                        record.seq, record.seq
                    ),
                );
                break 'walk;
            }
            if record.seq > last_checkpoint && first_unsigned.is_none() {
                first_unsigned = Some((record.seq, record.at_ms));
            }
            last_at_ms = record.at_ms;
            prev_hash = hex::decode(&hash).unwrap_or_default();
            expected_seq += 1;
            records += 1;
        }
    }
    // These hold whether or not the walk stopped early: the earliest fault is reported.
    if let Some(checkpoint) = checkpoints.last()
        && checkpoint.seq > records
    {
        faults.note(
            records + 1,
            format!(
                "checkpoint {} names a record that is gone: the chain was cut after record \
                 {records}",
                checkpoint.seq
            ),
        );
    }
    let every = checkpoints.last().map_or(64, |c| c.every);
    if records - last_checkpoint >= every {
        faults.note(
            last_checkpoint + 1,
            format!(
                "checkpoint {} is missing (one is written every {every} records)",
                last_checkpoint + every
            ),
        );
    }
    if let Some((seq, at_ms)) = first_unsigned
        && last_at_ms - at_ms > UNSIGNED_WINDOW_MS
    {
        faults.note(
            seq,
            format!(
                "records {seq} to {records} are not covered by a checkpoint, though they span \
                 more than {} s (a checkpoint was deleted)",
                UNSIGNED_WINDOW_MS / 1000
            ),
        );
    }
    if let Some(head) = expected {
        if head.seq > records {
            faults.note(
                records + 1,
                format!(
                    "the log was cut: record {} of the expected head is gone (the log \
                     ends at record {records})",
                    head.seq
                ),
            );
        } else if signed_hashes
            .get(&head.seq)
            .is_some_and(|(hash, _)| *hash != head.hash)
            || checkpoint_at
                .get(&head.seq)
                .is_some_and(|c| c.hash != head.hash)
        {
            faults.note(
                head.seq,
                format!(
                    "record {} does not match the expected head: the chain was replaced",
                    head.seq
                ),
            );
        }
    }
    Ok(match faults.first {
        Some((seq, reason)) => VerifyReport::bad(records, count, seq, reason),
        None => VerifyReport {
            ok: true,
            records,
            checkpoints: count,
            first_bad_seq: None,
            reason: None,
        },
    })
}
