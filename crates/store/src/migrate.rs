//! Embedded migrations. Each domain crate owns its tables and ships a [`MigrationSet`]; the
//! binary runs all sets at start. Applied versions are recorded per set in
//! `yunnao_migrations`, and each migration runs in its own transaction.

use crate::{Backend, Db, Result, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

impl Migration {
    /// A migration whose SQL is the same on both backends.
    pub const fn portable(version: i64, description: &'static str, sql: &'static str) -> Self {
        Self {
            version,
            description,
            sqlite: sql,
            postgres: sql,
        }
    }

    fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct MigrationSet {
    pub name: &'static str,
    pub migrations: &'static [Migration],
}

const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS yunnao_migrations (
    set_name TEXT NOT NULL,
    version BIGINT NOT NULL,
    description TEXT NOT NULL,
    applied_at_ms BIGINT NOT NULL,
    PRIMARY KEY (set_name, version)
)";

/// Applies every pending migration of every set, in order. Returns how many ran.
pub async fn run(db: &Db, sets: &[MigrationSet]) -> Result<usize> {
    sqlx::raw_sql(BOOKKEEPING).execute(db.pool()).await?;
    let mut applied = 0;
    for set in sets {
        let current: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM yunnao_migrations WHERE set_name = $1")
                .bind(set.name)
                .fetch_one(db.pool())
                .await?;
        let current = current.unwrap_or(0);
        let newest_known = set.migrations.iter().map(|m| m.version).max().unwrap_or(0);
        if current > newest_known {
            return Err(StoreError::SchemaTooNew {
                set: set.name.to_owned(),
                version: current,
            });
        }
        for migration in set.migrations.iter().filter(|m| m.version > current) {
            let fail = |source| StoreError::Migration {
                set: set.name.to_owned(),
                version: migration.version,
                source,
            };
            let mut tx = db.begin_write().await?;
            sqlx::raw_sql(migration.sql(db.backend()))
                .execute(&mut **tx)
                .await
                .map_err(fail)?;
            sqlx::query(
                "INSERT INTO yunnao_migrations (set_name, version, description, applied_at_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(set.name)
            .bind(migration.version)
            .bind(migration.description)
            .bind(yunnao_core::time::now_ms())
            .execute(&mut **tx)
            .await
            .map_err(fail)?;
            tx.commit().await?;
            tracing::info!(
                set = set.name,
                version = migration.version,
                description = migration.description,
                "migration applied"
            );
            applied += 1;
        }
    }
    Ok(applied)
}
