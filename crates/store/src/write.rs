//! [`Write`]: a write transaction on the backend's fastest path, for writes on hot paths (the
//! context broker's entity changes, the audit chain). On a SQLite file its statements run in
//! place on the store's own rusqlite write connection, under the same writer slot as every
//! other SQLite writer; sqlx would send each statement through its worker thread (two thread
//! switches), which costs more than the statement. On PostgreSQL (and in-memory SQLite) it is
//! a pool transaction. One SQL text serves both: `$n` placeholders, as everywhere.

use crate::{Backend, Db, DbResultExt, WriteTx};
use std::sync::Arc;
use tokio::sync::OwnedMutexGuard;
use yunnao_core::Problem;

/// A statement parameter. `Real` goes with `CAST($n AS DOUBLE PRECISION)` in the SQL (see
/// [`crate::nullable_real`]).
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Text(&'a str),
    Int(i64),
    Real(Option<f64>),
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Text(text) => text.to_sql(),
            Arg::Int(value) => value.to_sql(),
            Arg::Real(value) => value.to_sql(),
        }
    }
}

/// The SQLite write connection beside the pool, opened on first use and kept.
pub(crate) type WriteConnection = Arc<std::sync::Mutex<Option<rusqlite::Connection>>>;

/// A write transaction: [`Db::begin_fast_write`].
pub enum Write {
    Pool(WriteTx),
    Direct(DirectWrite),
}

/// A transaction on the rusqlite write connection; it holds the writer slot and the
/// connection until committed or dropped (dropped uncommitted, it rolls back).
pub struct DirectWrite {
    connection: Option<rusqlite::Connection>,
    home: WriteConnection,
    committed: bool,
    _slot: OwnedMutexGuard<()>,
}

/// A rusqlite error as the client sees it: a key conflict is 409, anything else a logged 500.
pub fn sqlite_problem(error: rusqlite::Error) -> Problem {
    if let rusqlite::Error::SqliteFailure(failure, _) = &error
        && matches!(
            failure.extended_code,
            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        )
    {
        return Problem::conflict("a record with the same key already exists");
    }
    tracing::error!(%error, "database error");
    Problem::internal("the database could not complete the request")
}

impl DirectWrite {
    /// The connection, for reads inside the transaction (`?n` placeholders).
    pub fn connection(&self) -> Result<&rusqlite::Connection, Problem> {
        self.connection
            .as_ref()
            .ok_or_else(|| Problem::internal("the write connection is gone"))
    }

    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Problem> {
        let connection = self.connection()?;
        let mut statement = connection
            .prepare_cached(&sql.replace('$', "?"))
            .map_err(sqlite_problem)?;
        let changed = statement
            .execute(rusqlite::params_from_iter(args))
            .map_err(sqlite_problem)?;
        Ok(changed as u64)
    }

    fn commit(mut self) -> Result<(), Problem> {
        self.connection()?
            .execute_batch("COMMIT")
            .map_err(sqlite_problem)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for DirectWrite {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            // Rolling back a transaction that COMMIT failed to end is what leaves it usable.
            if !self.committed && !connection.is_autocommit() {
                let _ = connection.execute_batch("ROLLBACK");
            }
            if let Ok(mut home) = self.home.lock() {
                *home = Some(connection);
            }
        }
    }
}

impl Write {
    /// Runs one statement; the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Problem> {
        match self {
            Write::Direct(direct) => direct.execute(sql, args),
            Write::Pool(tx) => {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
                for arg in args {
                    query = match *arg {
                        Arg::Text(text) => query.bind(text.to_owned()),
                        Arg::Int(value) => query.bind(value),
                        Arg::Real(value) => query.bind(crate::nullable_real(value)),
                    };
                }
                Ok(query.execute(&mut ***tx).await.db()?.rows_affected())
            }
        }
    }

    pub async fn commit(self) -> Result<(), Problem> {
        match self {
            Write::Direct(direct) => direct.commit(),
            Write::Pool(tx) => Ok(tx.commit().await?),
        }
    }

    /// Lets other tasks run between the items of a long batch. The writer slot stays held,
    /// so nothing else writes meanwhile; a direct write would otherwise keep its worker
    /// thread for the whole batch.
    pub async fn pause(&mut self) {
        if matches!(self, Write::Direct(_)) {
            tokio::task::yield_now().await;
        }
    }
}

impl Db {
    /// A write transaction on the fastest path for this backend (see [`Write`]).
    pub async fn begin_fast_write(&self) -> Result<Write, Problem> {
        if self.backend != Backend::Sqlite || self.readers.path.is_none() {
            return Ok(Write::Pool(self.begin_write().await?));
        }
        let slot = self.sqlite_writer.clone().lock_owned().await;
        let taken = self
            .write_connection
            .lock()
            .map_err(|_| Problem::internal("the write connection is poisoned"))?
            .take();
        let connection = match taken {
            Some(connection) => connection,
            None => self.open_write_connection()?,
        };
        let direct = DirectWrite {
            connection: Some(connection),
            home: self.write_connection.clone(),
            committed: false,
            _slot: slot,
        };
        // IMMEDIATE for the reason given at `begin_write`: another process queues, not fails.
        direct
            .connection()?
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(sqlite_problem)?;
        Ok(Write::Direct(direct))
    }

    fn open_write_connection(&self) -> Result<rusqlite::Connection, Problem> {
        let path = self
            .readers
            .path
            .as_deref()
            .ok_or_else(|| Problem::internal("no SQLite file"))?;
        let connection = rusqlite::Connection::open(path).map_err(sqlite_problem)?;
        // The pool's settings (see `Db::connect`).
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
            )
            .map_err(sqlite_problem)?;
        connection.set_prepared_statement_cache_capacity(64);
        Ok(connection)
    }
}
