//! Test databases on every backend. SQLite always runs; PostgreSQL runs when
//! `YUNNAO_TEST_POSTGRES_URL` points at a server, in a database of its own created for the test
//! and dropped afterwards, so parallel runs never collide.
//!
//! Tests are written once and instantiated per backend with [`backend_tests!`].

use crate::{Db, Result, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};

pub const POSTGRES_ENV: &str = "YUNNAO_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// A database that lives as long as the test.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres_admin: Option<(String, String)>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "yunnao_test_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Replaces the database name (the last path segment) of a PostgreSQL URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

impl TestDb {
    pub async fn new(backend: TestBackend) -> Result<Self> {
        match backend {
            TestBackend::Sqlite => {
                let dir =
                    tempfile::tempdir().map_err(|e| StoreError::Other(format!("tempdir: {e}")))?;
                let url = format!("sqlite://{}/test.db", dir.path().display());
                let db = Db::connect(&url).await?;
                Ok(Self {
                    db,
                    url,
                    _dir: Some(dir),
                    postgres_admin: None,
                })
            }
            TestBackend::Postgres => {
                let admin_url = std::env::var(POSTGRES_ENV)
                    .map_err(|_| StoreError::Other(format!("{POSTGRES_ENV} is not set")))?;
                let name = unique_name();
                let admin = Db::connect(&admin_url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(admin.pool())
                    .await?;
                admin.close().await;
                let url = with_database(&admin_url, &name);
                let db = Db::connect(&url).await?;
                Ok(Self {
                    db,
                    url,
                    _dir: None,
                    postgres_admin: Some((admin_url, name)),
                })
            }
        }
    }

    /// Closes the pool and drops a PostgreSQL test database.
    pub async fn cleanup(self) {
        self.db.close().await;
        if let Some((admin_url, name)) = self.postgres_admin
            && let Ok(admin) = Db::connect(&admin_url).await
        {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(admin.pool())
            .await;
            admin.close().await;
        }
    }
}

/// True when PostgreSQL tests should run. When they should not, the test says so on stderr;
/// `scripts/test` skips them by name and lists them as not run.
pub fn postgres_enabled() -> bool {
    std::env::var(POSTGRES_ENV).is_ok()
}

/// Instantiates async test functions `fn(TestBackend)` once per backend:
/// `backend_tests!(my_test, other_test);` makes `my_test::sqlite` and `my_test::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::testing::TestBackend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if !$crate::testing::postgres_enabled() {
                        eprintln!(
                            "NOT RUN: {} needs {}",
                            module_path!(),
                            $crate::testing::POSTGRES_ENV
                        );
                        return;
                    }
                    super::$name($crate::testing::TestBackend::Postgres).await;
                }
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_database_in_postgres_urls() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/test", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://127.0.0.1?sslmode=disable", "x"),
            "postgres://127.0.0.1/x?sslmode=disable"
        );
    }
}
