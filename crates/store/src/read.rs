//! Reads outside any write, on the backend's fastest path: in place on a read-only connection
//! to a SQLite file (a point read costs microseconds; a trip through the pool's worker thread
//! costs two thread switches and hands rows over one at a time), through the pool elsewhere.

use crate::sql::{Arg, Record, bind_args, sqlite_text};
use crate::{Db, DbResultExt};
use yunnao_core::Problem;

impl Db {
    /// The first row `sql` selects, if any.
    pub async fn fetch_optional<R: Record>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<R>, Problem> {
        let direct = self.read_direct(|connection| {
            use rusqlite::OptionalExtension;
            connection
                .prepare_cached(&sqlite_text(sql))?
                .query_row(rusqlite::params_from_iter(args), R::from_sqlite)
                .optional()
        });
        if let Some(read) = direct {
            return read;
        }
        let query = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())), args);
        match query.fetch_optional(self.pool()).await.db()? {
            Some(row) => Ok(Some(R::from_any(&row).db()?)),
            None => Ok(None),
        }
    }

    /// The row `sql` selects; a missing row is a 500 (for aggregates, which always have one).
    pub async fn fetch_one<R: Record>(&self, sql: &str, args: &[Arg<'_>]) -> Result<R, Problem> {
        self.fetch_optional(sql, args)
            .await?
            .ok_or_else(|| Problem::internal("the database returned no row"))
    }

    /// Every row `sql` selects.
    pub async fn fetch_all<R: Record>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<R>, Problem> {
        let direct = self.read_direct(|connection| {
            connection
                .prepare_cached(&sqlite_text(sql))?
                .query_map(rusqlite::params_from_iter(args), R::from_sqlite)?
                .collect()
        });
        if let Some(read) = direct {
            return read;
        }
        self.fetch_all_pooled(sql, args).await
    }

    /// Like [`Db::fetch_all`], for reads that may take milliseconds (scans, aggregations): on
    /// SQLite it runs on a blocking thread instead of holding up the async worker.
    pub async fn scan<R: Record + 'static>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<R>, Problem> {
        if !self.reads_in_place() {
            return self.fetch_all_pooled(sql, args).await;
        }
        let db = self.clone();
        let text = sqlite_text(sql);
        let owned: Vec<Arg<'static>> = args.iter().cloned().map(Arg::into_owned).collect();
        let direct = tokio::task::spawn_blocking(move || {
            db.read_direct(|connection| {
                connection
                    .prepare_cached(&text)?
                    .query_map(rusqlite::params_from_iter(&owned), R::from_sqlite)?
                    .collect()
            })
        })
        .await
        .map_err(|e| Problem::internal(format!("a database read failed: {e}")))?;
        match direct {
            Some(read) => read,
            None => self.fetch_all_pooled(sql, args).await,
        }
    }

    async fn fetch_all_pooled<R: Record>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<R>, Problem> {
        let query = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())), args);
        let rows = query.fetch_all(self.pool()).await.db()?;
        rows.iter().map(|row| R::from_any(row).db()).collect()
    }
}
