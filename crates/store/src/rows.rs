//! [`RowWriter`]: many rows of one statement shape written in one transaction, for a producer
//! that writes little else (the telemetry writer). On a SQLite file the rows go one prepared
//! statement each on a connection of the writer's own, on a blocking thread, under the store's
//! writer slot: sqlx's round trip per statement costs an order of magnitude in rows per second
//! there. Elsewhere they go as multi-row statements through the pool.

use crate::sql::{Arg, bind_args, sqlite_text};
use crate::{Db, StoreError};
use std::sync::{Arc, Mutex};

/// A statement written for one row (`head row tail`) or for many (`head row, row, … tail`).
/// `row` numbers its placeholders `$1…$width`; the writer renumbers them per row.
#[derive(Debug, Clone, Copy)]
pub struct RowStatement<'a> {
    pub head: &'a str,
    pub row: &'a str,
    pub tail: &'a str,
    /// Parameters per row.
    pub width: usize,
}

/// Rows per multi-row statement (well under every backend's parameter limit).
const ROWS_PER_STATEMENT: usize = 500;

/// See the module's documentation. Cheap to clone.
#[derive(Clone)]
pub struct RowWriter {
    db: Db,
    connection: Option<Arc<Mutex<rusqlite::Connection>>>,
}

impl Db {
    /// A [`RowWriter`]; on a SQLite file it opens the connection it writes on.
    pub fn row_writer(&self) -> RowWriter {
        let connection = self.readers.path.as_ref().and_then(|path| {
            let opened = rusqlite::Connection::open(path).and_then(|connection| {
                connection.execute_batch(crate::SQLITE_WRITER_PRAGMAS)?;
                Ok(connection)
            });
            match opened {
                Ok(connection) => Some(Arc::new(Mutex::new(connection))),
                Err(error) => {
                    tracing::error!(%error, "cannot open a SQLite row writer; using the pool");
                    None
                }
            }
        });
        RowWriter {
            db: self.clone(),
            connection,
        }
    }
}

impl RowWriter {
    /// Writes every row of `args` (`statement.width` parameters a row, in order) in one
    /// transaction: all of them or none.
    pub async fn write(
        &self,
        statement: RowStatement<'_>,
        args: Vec<Arg<'static>>,
    ) -> Result<(), StoreError> {
        if args.is_empty() || statement.width == 0 {
            return Ok(());
        }
        match &self.connection {
            Some(connection) => self.write_in_place(connection, statement, args).await,
            None => self.write_pooled(statement, &args).await,
        }
    }

    async fn write_in_place(
        &self,
        connection: &Arc<Mutex<rusqlite::Connection>>,
        statement: RowStatement<'_>,
        args: Vec<Arg<'static>>,
    ) -> Result<(), StoreError> {
        let _slot = self.db.sqlite_write_slot().await;
        let connection = connection.clone();
        let sql = sqlite_text(&format!(
            "{}{}{}",
            statement.head, statement.row, statement.tail
        ));
        let width = statement.width;
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|p| p.into_inner());
            let tx =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut prepared = tx.prepare_cached(&sql)?;
                for row in args.chunks(width) {
                    prepared.execute(rusqlite::params_from_iter(row))?;
                }
            }
            tx.commit()
        })
        .await
        .map_err(|e| StoreError::Other(format!("row writer task: {e}")))?
        .map_err(|e| StoreError::Other(format!("row writer: {e}")))
    }

    async fn write_pooled(
        &self,
        statement: RowStatement<'_>,
        args: &[Arg<'static>],
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        for chunk in args.chunks(statement.width * ROWS_PER_STATEMENT) {
            let rows = chunk.len() / statement.width;
            let mut sql = String::from(statement.head);
            for i in 0..rows {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&renumbered(statement.row, i * statement.width));
            }
            sql.push_str(statement.tail);
            let query = bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk);
            query.execute(&mut **tx).await?;
        }
        tx.commit().await
    }
}

/// `row` with each placeholder `$n` moved to `$(n + offset)`.
fn renumbered(row: &str, offset: usize) -> String {
    let mut out = String::with_capacity(row.len() + 8);
    let mut rest = row;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits: String = rest[at + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&format!("${}", n + offset)),
            Err(_) => out.push('$'),
        }
        rest = &rest[at + 1 + digits.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_renumbered_per_row() {
        assert_eq!(
            super::renumbered("($1, CAST($2 AS BIGINT))", 0),
            "($1, CAST($2 AS BIGINT))"
        );
        assert_eq!(super::renumbered("($1,$2,$3)", 3), "($4,$5,$6)");
        assert_eq!(super::renumbered("($1, '$')", 10), "($11, '$')");
    }
}
