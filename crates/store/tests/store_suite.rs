//! The store contract, run on every backend.

use yunnao_store::testing::{TestBackend, TestDb};
use yunnao_store::{Arg, Migration, MigrationSet, Write, backend_tests, migrate, sqlx};

const SAMPLE: MigrationSet = MigrationSet {
    name: "sample",
    migrations: &[
        Migration::portable(
            1,
            "readings",
            "CREATE TABLE readings (id TEXT PRIMARY KEY, at_ms BIGINT NOT NULL, value DOUBLE PRECISION NOT NULL, note TEXT)",
        ),
        Migration {
            version: 2,
            description: "index, dialect-specific",
            sqlite: "CREATE INDEX readings_at ON readings (at_ms)",
            postgres: "CREATE INDEX readings_at ON readings USING btree (at_ms)",
        },
    ],
};

async fn migrations_apply_once_and_are_recorded(backend: TestBackend) {
    let test = TestDb::new(backend).await.expect("test database");
    assert_eq!(migrate::run(&test.db, &[SAMPLE]).await.expect("migrate"), 2);
    assert_eq!(migrate::run(&test.db, &[SAMPLE]).await.expect("again"), 0);
    let versions: Vec<i64> = sqlx::query_scalar(
        "SELECT version FROM yunnao_migrations WHERE set_name = $1 ORDER BY version",
    )
    .bind("sample")
    .fetch_all(test.db.pool())
    .await
    .expect("bookkeeping");
    assert_eq!(versions, vec![1, 2]);

    // A binary that knows fewer migrations than the database refuses to run.
    let older = MigrationSet {
        name: "sample",
        migrations: &SAMPLE.migrations[..1],
    };
    let error = migrate::run(&test.db, &[older]).await.expect_err("too new");
    assert!(error.to_string().contains("does not know"), "{error}");
    test.cleanup().await;
}

async fn timestamps_keep_milliseconds_and_placeholders_bind(backend: TestBackend) {
    let test = TestDb::new(backend).await.expect("test database");
    migrate::run(&test.db, &[SAMPLE]).await.expect("migrate");
    let at_ms = 1_764_392_997_123_i64;
    let mut tx = test.db.begin_write().await.expect("tx");
    sqlx::query("INSERT INTO readings (id, at_ms, value, note) VALUES ($1, $2, $3, $4)")
        .bind("a")
        .bind(at_ms)
        .bind(4.5_f64)
        .bind("雨量")
        .execute(&mut **tx)
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    let (stored, value, note): (i64, f64, String) =
        sqlx::query_as("SELECT at_ms, value, note FROM readings WHERE id = $1")
            .bind("a")
            .fetch_one(test.db.pool())
            .await
            .expect("select");
    assert_eq!((stored, value, note.as_str()), (at_ms, 4.5, "雨量"));
    test.cleanup().await;
}

async fn rolled_back_writes_leave_nothing_and_unique_violations_are_recognised(
    backend: TestBackend,
) {
    let test = TestDb::new(backend).await.expect("test database");
    migrate::run(&test.db, &[SAMPLE]).await.expect("migrate");
    {
        let mut tx = test.db.begin_write().await.expect("tx");
        sqlx::query("INSERT INTO readings (id, at_ms, value) VALUES ('x', 1, 1.0)")
            .execute(&mut **tx)
            .await
            .expect("insert");
        // dropped without commit
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
        .fetch_one(test.db.pool())
        .await
        .expect("count");
    assert_eq!(count, 0);

    sqlx::query("INSERT INTO readings (id, at_ms, value) VALUES ('y', 1, 1.0)")
        .execute(test.db.pool())
        .await
        .expect("insert");
    let error: yunnao_store::StoreError =
        sqlx::query("INSERT INTO readings (id, at_ms, value) VALUES ('y', 2, 2.0)")
            .execute(test.db.pool())
            .await
            .expect_err("duplicate")
            .into();
    assert!(error.is_unique_violation());
    assert_eq!(yunnao_core::Problem::from(error).status, 409);
    test.cleanup().await;
}

async fn concurrent_writers_all_commit(backend: TestBackend) {
    let test = TestDb::new(backend).await.expect("test database");
    migrate::run(&test.db, &[SAMPLE]).await.expect("migrate");
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let db = test.db.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let mut tx = db.begin_write().await.expect("tx");
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
                    .fetch_one(&mut **tx)
                    .await
                    .expect("read in tx");
                sqlx::query("INSERT INTO readings (id, at_ms, value) VALUES ($1, $2, $3)")
                    .bind(format!("{worker}-{i}"))
                    .bind(count)
                    .bind(0.0_f64)
                    .execute(&mut **tx)
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
            }
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
        .fetch_one(test.db.pool())
        .await
        .expect("count");
    assert_eq!(count, 200);
    test.cleanup().await;
}

/// A nullable float bound first as NULL and then as a value on the same (cached) statement:
/// sqlx 0.9 alone breaks on PostgreSQL here; `nullable_real` with a CAST does not.
async fn nullable_floats_bind_null_then_values(backend: TestBackend) {
    let test = TestDb::new(backend).await.expect("test database");
    migrate::run(&test.db, &[SAMPLE]).await.expect("migrate");
    let values = [None, Some(0.1 + 0.2), None, Some(-1e300), Some(36.062)];
    for (i, value) in values.iter().enumerate() {
        let mut tx = test.db.begin_write().await.expect("tx");
        sqlx::query(
            "INSERT INTO readings (id, at_ms, value) VALUES ($1, $2, COALESCE(CAST($3 AS DOUBLE PRECISION), 0))",
        )
        .bind(format!("n{i}"))
        .bind(i as i64)
        .bind(yunnao_store::nullable_real(*value))
        .execute(&mut **tx)
        .await
        .expect("insert");
        tx.commit().await.expect("commit");
    }
    let stored: Vec<f64> =
        sqlx::query_scalar("SELECT value FROM readings WHERE id LIKE 'n%' ORDER BY at_ms")
            .fetch_all(test.db.pool())
            .await
            .expect("read");
    let expected: Vec<f64> = values.iter().map(|v| v.unwrap_or(0.0)).collect();
    assert_eq!(
        stored.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "every bit kept"
    );
    test.cleanup().await;
}

/// Fast writes (`begin_fast_write`): concurrent writers share commits on SQLite; each write is
/// visible to any reader once its commit returns, a failed or abandoned write rolls back alone
/// while the rest of its group commits, and a key conflict is recognised.
async fn fast_writes_commit_together_and_roll_back_alone(backend: TestBackend) {
    let test = TestDb::new(backend).await.expect("test database");
    migrate::run(&test.db, &[SAMPLE]).await.expect("migrate");
    let insert = "INSERT INTO readings (id, at_ms, value, note) VALUES ($1, $2, CAST($3 AS DOUBLE PRECISION), $4)";
    let mut first = test.db.begin_fast_write().await.expect("fast write");
    first
        .execute(
            insert,
            &[
                Arg::text("taken"),
                Arg::Int(0),
                Arg::Real(Some(0.5)),
                Arg::text("x"),
            ],
        )
        .await
        .expect("insert");
    first.commit().await.expect("commit");
    let kind = test.db.begin_fast_write().await.expect("fast write");
    // On a SQLite file the fast path is the in-place connection.
    assert_eq!(
        matches!(kind, Write::Direct(_)),
        backend == TestBackend::Sqlite
    );
    drop(kind);

    // Work after the commit runs for committed writes only, before they are acknowledged.
    let after_commit = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for i in 0..96_i64 {
        let (db, after_commit) = (test.db.clone(), after_commit.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("r{i:03}");
            let mut tx = db.begin_fast_write().await.expect("fast write");
            let (ran, done) = (after_commit.clone(), id.clone());
            tx.after_commit(Box::new(move || ran.lock().expect("lock").push(done)));
            tx.execute(
                insert,
                &[
                    Arg::text(&id),
                    Arg::Int(i),
                    Arg::Real(Some(i as f64)),
                    Arg::text("雨量"),
                ],
            )
            .await
            .expect("insert");
            // Hold the transaction across a yield so that others queue behind it.
            tx.pause().await;
            match i % 4 {
                // A key conflict inside the group fails this write only.
                0 => {
                    let conflict = tx
                        .execute(
                            insert,
                            &[
                                Arg::text("taken"),
                                Arg::Int(i),
                                Arg::Real(Some(1.0)),
                                Arg::text(""),
                            ],
                        )
                        .await
                        .expect_err("the key is taken");
                    assert_eq!(conflict.status, 409, "{conflict:?}");
                    drop(tx);
                    None
                }
                // Abandoned (a cancelled request): rolled back.
                1 => {
                    drop(tx);
                    None
                }
                _ => {
                    tx.commit().await.expect("commit");
                    assert!(after_commit.lock().expect("lock").contains(&id));
                    // Acknowledged means committed: a pool reader sees it at once.
                    let seen: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM readings WHERE id = $1")
                            .bind(id.clone())
                            .fetch_one(db.pool())
                            .await
                            .expect("read");
                    assert_eq!(seen, 1, "{id} is visible once committed");
                    Some(id)
                }
            }
        }));
    }
    let mut committed = Vec::new();
    for task in tasks {
        if let Some(id) = task.await.expect("task") {
            committed.push(id);
        }
    }
    committed.sort();
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT id FROM readings WHERE id <> 'taken' ORDER BY id")
            .fetch_all(test.db.pool())
            .await
            .expect("rows");
    assert_eq!(stored.len(), 48);
    assert_eq!(stored, committed);
    let mut ran = after_commit.lock().expect("lock").clone();
    ran.sort();
    assert_eq!(ran, committed, "work after the commit");
    // The writer is free again for the pool's transactions.
    let mut tx = test.db.begin_write().await.expect("pool write");
    sqlx::query("DELETE FROM readings WHERE id = 'taken'")
        .execute(&mut **tx)
        .await
        .expect("delete");
    tx.commit().await.expect("commit");
    test.cleanup().await;
}

backend_tests!(
    fast_writes_commit_together_and_roll_back_alone,
    nullable_floats_bind_null_then_values,
    migrations_apply_once_and_are_recorded,
    timestamps_keep_milliseconds_and_placeholders_bind,
    rolled_back_writes_leave_nothing_and_unique_violations_are_recognised,
    concurrent_writers_all_commit,
);

#[tokio::test]
async fn rejects_unknown_url_schemes() {
    let error = yunnao_store::Db::connect("mysql://x")
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("sqlite://"));
}
