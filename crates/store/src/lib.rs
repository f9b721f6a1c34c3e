//! The database handle. One URL picks the backend: `sqlite://PATH` (the embedded default) or
//! `postgres://…`. Domain crates write one SQL text for both (`$1` placeholders, `BIGINT`
//! integers, `TEXT` everywhere else) through sqlx's `Any` driver; where the dialects differ a
//! migration carries one text per backend.
//!
//! Invariants:
//! - times are `BIGINT` UTC milliseconds;
//! - every write transaction goes through [`Db::begin_write`], which on SQLite serialises
//!   writers in-process and opens with `BEGIN IMMEDIATE` (SQLite has one writer; letting two
//!   deferred transactions race only produces `SQLITE_BUSY`), and on PostgreSQL is a plain
//!   transaction;
//! - never call anything that writes (such as the audit log) while holding a [`WriteTx`]: on
//!   SQLite that waits on itself.

pub mod migrate;
mod read;
mod rows;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;
mod write;

pub use migrate::{Migration, MigrationSet};
pub use rows::{RowStatement, RowWriter};
pub use sql::{Arg, Column, Dialect, JsonSql, Record};
pub use sqlx;
pub use write::{AfterCommit, DirectWrite, Write};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Transaction};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration {set}/{version} failed: {source}")]
    Migration {
        set: String,
        version: i64,
        source: sqlx::Error,
    },
    #[error(
        "database has migration {set}/{version} that this binary does not know; refusing to run an older binary on a newer schema"
    )]
    SchemaTooNew { set: String, version: i64 },
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// True when the error is a unique or primary-key violation (a conflict for the client).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Sqlx(sqlx::Error::Database(e)) => e.is_unique_violation(),
            _ => false,
        }
    }
}

impl From<StoreError> for yunnao_core::Problem {
    fn from(error: StoreError) -> Self {
        database_problem(error.is_unique_violation(), &error)
    }
}

/// A database failure as the client sees it: a key conflict is 409, anything else a logged 500
/// with a safe message. Shared by sqlx's errors and rusqlite's.
fn database_problem(unique_violation: bool, error: &dyn std::fmt::Display) -> yunnao_core::Problem {
    if unique_violation {
        return yunnao_core::Problem::conflict("a record with the same key already exists");
    }
    tracing::error!(%error, "database error");
    yunnao_core::Problem::internal("the database could not complete the request")
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A shared handle to the platform database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    url: Arc<str>,
    sqlite_writer: Arc<Mutex<()>>,
    readers: Arc<DirectReaders>,
    group: Arc<write::Group>,
}

/// Read-only SQLite connections beside the pool, for reads on hot paths: sqlx runs each query
/// on a worker thread and hands rows over one at a time through a channel, which costs more
/// than the query itself for a point read (two thread switches) or for thousands of small rows.
/// A direct read runs in place; it is meant for indexed reads of microseconds. Idle
/// connections are kept for reuse.
struct DirectReaders {
    path: Option<String>,
    idle: std::sync::Mutex<Vec<rusqlite::Connection>>,
}

impl std::fmt::Debug for DirectReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectReaders")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A write transaction; on SQLite it also holds the process-wide writer slot until dropped.
pub struct WriteTx {
    pub tx: Transaction<'static, Any>,
    backend: Backend,
    _writer: Option<OwnedMutexGuard<()>>,
    /// Run after the commit ([`Write::after_commit`]).
    after_commit: Vec<write::AfterCommit>,
}

impl WriteTx {
    pub fn dialect(&self) -> Dialect {
        Dialect(self.backend)
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        for work in self.after_commit {
            work();
        }
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = Transaction<'static, Any>;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl Db {
    /// Opens the database named by `url`, creating a SQLite file (and its folder) if missing.
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
        let backend = Backend::from_url(url)?;
        let (connect_url, max_connections) = match backend {
            Backend::Sqlite => {
                let path = sqlite_path(url);
                if let Some(parent) = std::path::Path::new(path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::Other(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
                let separator = if url.contains('?') { '&' } else { '?' };
                let url = if url.contains("mode=") {
                    url.to_owned()
                } else {
                    format!("{url}{separator}mode=rwc")
                };
                (url, 8)
            }
            Backend::Postgres => (url.to_owned(), 16),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; NORMAL is durable across
                        // process crashes in WAL mode; busy_timeout covers other processes;
                        // checkpoints are the checkpointer's (see `SQLITE_WRITER_PRAGMAS`).
                        sqlx::raw_sql(SQLITE_WRITER_PRAGMAS).execute(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&connect_url)
            .await?;
        let readers = Arc::new(DirectReaders {
            path: (backend == Backend::Sqlite)
                .then(|| sqlite_path(url).to_owned())
                .filter(|p| !p.is_empty() && !p.contains(":memory:")),
            idle: std::sync::Mutex::new(Vec::new()),
        });
        if let Some(path) = &readers.path {
            start_checkpointer(path.clone(), Arc::downgrade(&readers));
        }
        Ok(Self {
            pool,
            backend,
            url: url.into(),
            sqlite_writer: Arc::new(Mutex::new(())),
            readers,
            group: Default::default(),
        })
    }

    /// Runs `read` in place on a read-only connection to the SQLite file (it sees what is
    /// committed, like any pool read); `None` on PostgreSQL or an in-memory database, where
    /// the caller uses the pool. SQL placeholders are `?N`.
    pub(crate) fn read_direct<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Option<std::result::Result<T, yunnao_core::Problem>> {
        let path = self.readers.path.as_ref()?;
        let reused = self
            .readers
            .idle
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop());
        let connection = match reused {
            Some(connection) => connection,
            None => match rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .and_then(|connection| {
                // Like the pool's connections: wait out another process's lock.
                connection.busy_timeout(Duration::from_secs(5))?;
                // Pages straight from the OS's file cache, shared by all readers, instead of
                // each connection's own 2 MiB page cache missing and copying.
                connection.execute_batch(SQLITE_READER_MMAP)?;
                Ok(connection)
            }) {
                Ok(connection) => connection,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open a direct SQLite reader");
                    return Some(Err(yunnao_core::Problem::internal(
                        "the database cannot be read",
                    )));
                }
            },
        };
        let result = read(&connection).map_err(|e| {
            tracing::error!(error = %e, "direct SQLite read failed");
            yunnao_core::Problem::internal("the database cannot be read")
        });
        if let Ok(mut idle) = self.readers.idle.lock()
            && idle.len() < 8
        {
            idle.push(connection);
        }
        Some(result)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// What differs in SQL on this database's backend.
    pub fn dialect(&self) -> Dialect {
        Dialect(self.backend)
    }

    /// Whether reads run in place on a SQLite file (see [`Db::fetch_all`]).
    pub(crate) fn reads_in_place(&self) -> bool {
        self.readers.path.is_some()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn begin_write(&self) -> Result<WriteTx> {
        let writer = match self.backend {
            Backend::Sqlite => Some(self.sqlite_writer.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        let tx = match self.backend {
            // IMMEDIATE takes the write lock up front and waits on busy_timeout, so a second
            // process on the same file queues instead of failing with SQLITE_BUSY mid-transaction.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx {
            tx,
            backend: self.backend,
            _writer: writer,
            after_commit: Vec::new(),
        })
    }

    /// Holds SQLite's one writer slot for a writer outside sqlx (the [`RowWriter`]'s own
    /// connection); `None` on PostgreSQL.
    pub(crate) async fn sqlite_write_slot(&self) -> Option<OwnedMutexGuard<()>> {
        match self.backend {
            Backend::Sqlite => Some(self.sqlite_writer.clone().lock_owned().await),
            Backend::Postgres => None,
        }
    }

    /// Cheap liveness probe for `/ready`.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Settings of every connection that writes a SQLite file. WAL lets readers run beside the
/// writer; NORMAL is durable across process crashes in WAL mode; busy_timeout covers other
/// processes. Automatic checkpoints are off: a commit that crosses the WAL's threshold would
/// copy it back and fsync while holding the one writer slot, stalling every writer behind it;
/// the checkpointer thread does it beside them instead. Temporary b-trees (sorts, `IN` lists)
/// stay in memory instead of temporary files.
pub(crate) const SQLITE_WRITER_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0; \
     PRAGMA temp_store = MEMORY;";

/// Reads through `mmap` (up to 256 MiB of the file): pages come from the OS's file cache,
/// shared by every connection. Only the direct readers map the file: every mapping counts
/// its pages in the process's resident memory again, so mapping it from the pool's
/// connections too added hundreds of MiB to the figure for little gain.
const SQLITE_READER_MMAP: &str = "PRAGMA mmap_size = 268435456;";

/// Copies the WAL back into the database file every 100 ms (a PASSIVE checkpoint: it never
/// waits for or blocks a writer or reader), for as long as the database handle lives.
fn start_checkpointer(path: String, alive: std::sync::Weak<DirectReaders>) {
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let mut connection: Option<rusqlite::Connection> = None;
            loop {
                std::thread::sleep(Duration::from_millis(100));
                if alive.upgrade().is_none() {
                    return;
                }
                if connection.is_none() {
                    connection = rusqlite::Connection::open(&path).ok();
                }
                if let Some(open) = &connection
                    && let Err(error) =
                        open.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::warn!(%error, "WAL checkpoint failed");
                    connection = None;
                }
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the WAL checkpointer");
    }
}

/// The file path inside a `sqlite://PATH[?query]` URL.
pub(crate) fn sqlite_path(url: &str) -> &str {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}

/// Converts a stored 0/1 integer to bool (both backends store flags as BIGINT).
pub fn flag(value: i64) -> bool {
    value != 0
}

/// `.db()?` turns a sqlx result into a problem result in request paths: unique violations
/// become 409, anything else a logged 500 with a safe message.
pub trait DbResultExt<T> {
    fn db(self) -> std::result::Result<T, yunnao_core::Problem>;
}

impl<T> DbResultExt<T> for std::result::Result<T, sqlx::Error> {
    fn db(self) -> std::result::Result<T, yunnao_core::Problem> {
        self.map_err(|e| StoreError::from(e).into())
    }
}

/// A nullable float for a `CAST($n AS DOUBLE PRECISION)` placeholder. sqlx 0.9's `Any` driver
/// declares a `None::<f64>` parameter to PostgreSQL as FLOAT4, and a statement prepared that
/// way then refuses a later `Some(f64)` ("incorrect binary data format"): sent as text, the
/// parameter's type never changes. The shortest exact decimal form keeps every bit.
pub fn nullable_real(value: Option<f64>) -> Option<String> {
    value.map(|v| format!("{v:?}"))
}
