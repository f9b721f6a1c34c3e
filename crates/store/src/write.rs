//! [`Write`]: a write transaction on the backend's fastest path, for writes on hot paths (the
//! context broker's entity changes, the audit chain). On a SQLite file its statements run in
//! place on the store's own rusqlite write connection, under the same writer slot as every
//! other SQLite writer; sqlx would send each statement through its worker thread (two thread
//! switches), which costs more than the statement. On PostgreSQL (and in-memory SQLite) it is
//! a pool transaction. One SQL text serves both: `$n` placeholders, as everywhere.

use crate::sql::{Arg, Record, bind_args, sqlite_text};
use crate::{Backend, Db, DbResultExt, Dialect, WriteTx};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedMutexGuard, oneshot};
use yunnao_core::Problem;

/// Work to do once a write's changes are committed (and not at all if they are not): e.g.
/// dropping cached copies of what it changed. Whoever commits the transaction runs it, so it
/// runs even when the writer itself was cancelled after handing its changes to a group.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

/// A write transaction: [`Db::begin_fast_write`].
pub enum Write {
    Pool(WriteTx),
    Direct(DirectWrite),
}

/// Fast writers on SQLite share one transaction at a time (group commit): a writer runs
/// inside a savepoint of the open transaction; when it is done and other fast writers are
/// queued, it hands the transaction on and waits for the commit, otherwise it commits for the
/// whole group. One commit (WAL frames, checkpoints) then serves many writes; each write is
/// acknowledged only once its commit is done.
#[derive(Default)]
pub(crate) struct Group {
    gate: Arc<tokio::sync::Mutex<GroupState>>,
    /// Fast writers waiting for the gate.
    queued: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("queued", &self.queued)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct GroupState {
    /// The write connection beside the pool, opened on first use and kept.
    connection: Option<rusqlite::Connection>,
    /// The store's writer slot, held while a transaction is open.
    slot: Option<OwnedMutexGuard<()>>,
    /// Writers whose savepoints were released, waiting for the commit.
    waiters: Vec<oneshot::Sender<Result<(), Problem>>>,
    /// Their [`AfterCommit`] work.
    after_commit: Vec<AfterCommit>,
}

/// The most writes one commit serves; bounds the wait of the first of them.
const GROUP_LIMIT: usize = 64;
/// A writer waiting for its group's commit longer than this commits it itself (the writer it
/// was handed to may have been cancelled before it started).
const GROUP_PATIENCE: Duration = Duration::from_millis(20);

impl GroupState {
    fn connection(&self) -> Result<&rusqlite::Connection, Problem> {
        self.connection
            .as_ref()
            .ok_or_else(|| Problem::internal("the write connection is gone"))
    }

    /// Commits the open transaction for everyone in it and frees the writer slot.
    fn finish(&mut self) -> Result<(), Problem> {
        let result = match self.connection() {
            Ok(connection) if !connection.is_autocommit() => {
                connection.execute_batch("COMMIT").map_err(|error| {
                    // A failed COMMIT leaves the transaction open: end it.
                    let _ = connection.execute_batch("ROLLBACK");
                    sqlite_problem(error)
                })
            }
            // SQLite ended the transaction itself after an error: what was in it is lost.
            Ok(_) if !self.waiters.is_empty() => Err(Problem::internal(
                "the database could not complete the request",
            )),
            Ok(_) => Ok(()),
            Err(problem) => Err(problem),
        };
        self.slot = None;
        let after_commit = std::mem::take(&mut self.after_commit);
        if result.is_ok() {
            for work in after_commit {
                work();
            }
        }
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
        result
    }
}

/// Counts a writer as queued until it holds the gate (or gives up waiting).
struct Queued(Arc<AtomicUsize>);

impl Queued {
    fn new(queued: &Arc<AtomicUsize>) -> Self {
        queued.fetch_add(1, Ordering::SeqCst);
        Self(queued.clone())
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A write inside the group's transaction: [`Db::begin_fast_write`] on a SQLite file. Dropped
/// uncommitted, its own changes are rolled back.
pub struct DirectWrite {
    state: Option<tokio::sync::OwnedMutexGuard<GroupState>>,
    /// Calls to [`Write::pause`] so far.
    pauses: usize,
    gate: Arc<tokio::sync::Mutex<GroupState>>,
    queued: Arc<AtomicUsize>,
    /// Dropped unrun when this write rolls back.
    after_commit: Vec<AfterCommit>,
}

/// A rusqlite error as the client sees it: a key conflict is 409, anything else a logged 500.
pub(crate) fn sqlite_problem(error: rusqlite::Error) -> Problem {
    let unique_violation = matches!(
        &error,
        rusqlite::Error::SqliteFailure(failure, _) if matches!(
            failure.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        )
    );
    crate::database_problem(unique_violation, &error)
}

impl DirectWrite {
    fn connection(&self) -> Result<&rusqlite::Connection, Problem> {
        self.state
            .as_ref()
            .ok_or_else(|| Problem::internal("the write is over"))?
            .connection()
    }

    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Problem> {
        let connection = self.connection()?;
        let mut statement = connection
            .prepare_cached(&sqlite_text(sql))
            .map_err(sqlite_problem)?;
        let changed = statement
            .execute(rusqlite::params_from_iter(args))
            .map_err(sqlite_problem)?;
        Ok(changed as u64)
    }

    async fn commit(mut self) -> Result<(), Problem> {
        self.connection()?
            .execute_batch("RELEASE fast_write")
            .map_err(sqlite_problem)?;
        let Some(mut state) = self.state.take() else {
            return Err(Problem::internal("the write is over"));
        };
        state.after_commit.append(&mut self.after_commit);
        let hand_on = self.queued.load(Ordering::SeqCst) > 0 && state.waiters.len() < GROUP_LIMIT;
        if !hand_on {
            return state.finish();
        }
        let (sender, mut receiver) = oneshot::channel();
        state.waiters.push(sender);
        drop(state);
        loop {
            match tokio::time::timeout(GROUP_PATIENCE, &mut receiver).await {
                Ok(result) => {
                    return result
                        .unwrap_or_else(|_| Err(Problem::internal("the write's commit was lost")));
                }
                Err(_) => {
                    let mut state = self.gate.clone().lock_owned().await;
                    if let Ok(result) = receiver.try_recv() {
                        return result;
                    }
                    // Still open and nobody is in it: commit it for the group.
                    if self.queued.load(Ordering::SeqCst) == 0 {
                        state.finish()?;
                    }
                }
            }
        }
    }
}

impl Drop for DirectWrite {
    fn drop(&mut self) {
        let Some(mut state) = self.state.take() else {
            return;
        };
        if let Ok(connection) = state.connection()
            && !connection.is_autocommit()
        {
            let _ = connection.execute_batch("ROLLBACK TO fast_write; RELEASE fast_write");
        }
        // Nobody else will come for the group: commit what the others wrote.
        if self.queued.load(Ordering::SeqCst) == 0 && state.slot.is_some() {
            let _ = state.finish();
        }
    }
}

impl Write {
    pub fn dialect(&self) -> Dialect {
        match self {
            Write::Direct(_) => Dialect(Backend::Sqlite),
            Write::Pool(tx) => tx.dialect(),
        }
    }

    /// Runs one statement; the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Problem> {
        match self {
            Write::Direct(direct) => direct.execute(sql, args),
            Write::Pool(tx) => {
                let query = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())), args);
                Ok(query.execute(&mut ***tx).await.db()?.rows_affected())
            }
        }
    }

    /// The integer in the first column of the first row `sql` selects (`None` for no row or
    /// NULL), read inside this transaction.
    pub async fn query_i64(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<i64>, Problem> {
        let row: Option<(Option<i64>,)> = self.fetch_optional(sql, args).await?;
        Ok(row.and_then(|(value,)| value))
    }

    /// The first row `sql` selects, read inside this transaction.
    pub async fn fetch_optional<R: Record>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<R>, Problem> {
        match self {
            Write::Direct(direct) => {
                use rusqlite::OptionalExtension;
                direct
                    .connection()?
                    .prepare_cached(&sqlite_text(sql))
                    .and_then(|mut statement| {
                        statement
                            .query_row(rusqlite::params_from_iter(args), R::from_sqlite)
                            .optional()
                    })
                    .map_err(sqlite_problem)
            }
            Write::Pool(tx) => {
                let query = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())), args);
                match query.fetch_optional(&mut ***tx).await.db()? {
                    Some(row) => Ok(Some(R::from_any(&row).db()?)),
                    None => Ok(None),
                }
            }
        }
    }

    /// Every row `sql` selects, read inside this transaction.
    pub async fn fetch_all<R: Record>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<R>, Problem> {
        match self {
            Write::Direct(direct) => direct
                .connection()?
                .prepare_cached(&sqlite_text(sql))
                .and_then(|mut statement| {
                    statement
                        .query_map(rusqlite::params_from_iter(args), R::from_sqlite)?
                        .collect()
                })
                .map_err(sqlite_problem),
            Write::Pool(tx) => {
                let query = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())), args);
                let rows = query.fetch_all(&mut ***tx).await.db()?;
                rows.iter().map(|row| R::from_any(row).db()).collect()
            }
        }
    }

    pub async fn commit(self) -> Result<(), Problem> {
        match self {
            Write::Direct(direct) => direct.commit().await,
            Write::Pool(tx) => Ok(tx.commit().await?),
        }
    }

    /// Runs `work` once this write's changes are committed; never if they roll back.
    pub fn after_commit(&mut self, work: AfterCommit) {
        match self {
            Write::Direct(direct) => direct.after_commit.push(work),
            Write::Pool(tx) => tx.after_commit.push(work),
        }
    }

    /// Called between the items of a batch: every 64th call lets other tasks run. The writer
    /// slot stays held, so nothing else writes meanwhile; a direct write would otherwise keep
    /// its worker thread for the whole batch.
    pub async fn pause(&mut self) {
        if let Write::Direct(direct) = self {
            direct.pauses += 1;
            if direct.pauses.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
        }
    }
}

impl Db {
    /// A write transaction on the fastest path for this backend (see [`Write`]).
    pub async fn begin_fast_write(&self) -> Result<Write, Problem> {
        if self.backend != Backend::Sqlite || self.readers.path.is_none() {
            return Ok(Write::Pool(self.begin_write().await?));
        }
        let queued = Queued::new(&self.group.queued);
        let mut state = self.group.gate.clone().lock_owned().await;
        drop(queued);
        if state.connection.is_none() {
            state.connection = Some(self.open_write_connection()?);
        }
        if state.slot.is_some() && state.connection()?.is_autocommit() {
            // SQLite ended the group's transaction after an error: tell its writers.
            state.finish().ok();
        }
        if state.slot.is_none() {
            let slot = self.sqlite_writer.clone().lock_owned().await;
            // IMMEDIATE for the reason given at `begin_write`: another process queues.
            state
                .connection()?
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(sqlite_problem)?;
            state.slot = Some(slot);
        }
        if let Err(error) = state.connection()?.execute_batch("SAVEPOINT fast_write") {
            if self.group.queued.load(Ordering::SeqCst) == 0 {
                state.finish().ok();
            }
            return Err(sqlite_problem(error));
        }
        Ok(Write::Direct(DirectWrite {
            state: Some(state),
            pauses: 0,
            gate: self.group.gate.clone(),
            queued: self.group.queued.clone(),
            after_commit: Vec::new(),
        }))
    }

    fn open_write_connection(&self) -> Result<rusqlite::Connection, Problem> {
        let path = self
            .readers
            .path
            .as_deref()
            .ok_or_else(|| Problem::internal("no SQLite file"))?;
        let connection = rusqlite::Connection::open(path).map_err(sqlite_problem)?;
        connection
            .execute_batch(crate::SQLITE_WRITER_PRAGMAS)
            .map_err(sqlite_problem)?;
        connection.set_prepared_statement_cache_capacity(64);
        Ok(connection)
    }
}
