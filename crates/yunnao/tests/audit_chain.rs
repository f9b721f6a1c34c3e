//! The audit chain through the API and `yunnao audit verify`, then tampered with directly in the
//! database the way an insider with SQL access would: edit, delete, reorder, cut the tail.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::TestServer;
use yunnao_store::testing::TestBackend;
use yunnao_store::{Db, backend_tests, sqlx};

fn verify_cli(server: &TestServer) -> (bool, String) {
    audit_cli(server, &["verify"])
}

fn audit_cli(server: &TestServer, command: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_yunnao"))
        .arg("audit")
        .args(command)
        .arg("--db")
        .arg(server.config.db.as_deref().expect("db url"))
        .arg("--data-dir")
        .arg(&server.config.data_dir)
        .env("YUNNAO_LOG", "warn")
        .output()
        .expect("cli runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn exec(db: &Db, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db.pool())
        .await
        .expect("tamper statement");
}

async fn audit_records_every_write_and_verify_catches_tampering(backend: TestBackend) {
    let mut server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let water_admin = server
        .user(&admin, "water.admin", "water", "dept_admin")
        .await;
    // denied
    let denied = server
        .request(
            Method::POST,
            "/api/v1/users",
            Some(&water_admin),
            Some(json!({
            "username": "p.x", "display_name": "x", "password": "password-123",
            "department": "police", "roles": ["operator"]})),
        )
        .await;
    assert_eq!(denied.status(), 403);
    // rejected
    let rejected = server
        .client
        .post(server.url("/api/v1/users"))
        .bearer_auth(&water_admin)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .expect("sent");
    assert_eq!(rejected.status(), 400);
    // failed sign-in
    let failed = server
        .request(
            Method::POST,
            "/api/v1/auth/sign-in",
            None,
            Some(json!({"username": "admin", "password": "wrong-password"})),
        )
        .await;
    assert_eq!(failed.status(), 401);
    // reads are not audited
    server
        .request(Method::GET, "/api/v1/departments", Some(&admin), None)
        .await;

    let records: Vec<Value> = server
        .request(Method::GET, "/api/v1/audit?limit=100", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or("").to_owned(),
                r["action"].as_str().unwrap_or("").to_owned(),
                r["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected = [
        ("admin", "auth.sign_in", "success"),
        ("admin", "user.create", "success"),
        ("water.admin", "auth.sign_in", "success"),
        ("water.admin", "POST /api/v1/users", "denied"),
        ("water.admin", "POST /api/v1/users", "rejected"),
        ("admin", "auth.sign_in", "denied"),
    ];
    assert_eq!(
        summary,
        expected
            .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
            .to_vec()
    );
    assert!(
        records
            .iter()
            .all(|r| r["request_id"].as_str().is_some_and(|id| !id.is_empty()))
    );
    assert_eq!(records[1]["department"], "bigdata");

    // The department admin sees only the water bureau's records.
    let own: Vec<Value> = server
        .request(Method::GET, "/api/v1/audit", Some(&water_admin), None)
        .await
        .json()
        .await
        .expect("json");
    assert!(!own.is_empty() && own.iter().all(|r| r["department"] == "water"));

    let report: Value = server
        .request(Method::GET, "/api/v1/audit/verify", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(report["ok"], true, "{report}");

    server.stop().await; // signs a checkpoint at the head
    let db = Db::connect(server.config.db.as_deref().expect("url"))
        .await
        .expect("db");
    let (ok, text) = verify_cli(&server);
    assert!(ok, "{text}");
    assert!(text.contains("audit chain OK"), "{text}");
    let checkpoints: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints")
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert!(checkpoints >= 1);

    // 1. Edit one field of record 3.
    exec(&db, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3").await;
    let (ok, text) = verify_cli(&server);
    assert!(
        !ok && text.contains("BROKEN at record 3") && text.contains("altered"),
        "{text}"
    );
    exec(
        &db,
        "UPDATE audit_log SET actor = 'water.admin' WHERE seq = 3",
    )
    .await;
    assert!(verify_cli(&server).0, "restored");

    // 2. Delete record 4.
    exec(
        &db,
        "CREATE TABLE saved AS SELECT * FROM audit_log WHERE seq = 4",
    )
    .await;
    exec(&db, "DELETE FROM audit_log WHERE seq = 4").await;
    let (ok, text) = verify_cli(&server);
    assert!(
        !ok && text.contains("BROKEN at record 4") && text.contains("missing"),
        "{text}"
    );
    exec(&db, "INSERT INTO audit_log SELECT * FROM saved").await;
    assert!(verify_cli(&server).0, "restored");

    // 3. Reorder records 2 and 3.
    exec(&db, "UPDATE audit_log SET seq = -2 WHERE seq = 2").await;
    exec(&db, "UPDATE audit_log SET seq = 2 WHERE seq = 3").await;
    exec(&db, "UPDATE audit_log SET seq = 3 WHERE seq = -2").await;
    let (ok, text) = verify_cli(&server);
    assert!(!ok && text.contains("BROKEN at record 2"), "{text}");
    exec(&db, "UPDATE audit_log SET seq = -2 WHERE seq = 2").await;
    exec(&db, "UPDATE audit_log SET seq = 2 WHERE seq = 3").await;
    exec(&db, "UPDATE audit_log SET seq = 3 WHERE seq = -2").await;
    assert!(verify_cli(&server).0, "restored");

    // The operator keeps a signed head outside the database.
    let (ok, head) = audit_cli(&server, &["head"]);
    assert!(ok, "{head}");
    let head_file = server.config.data_dir.join("kept-head.json");
    std::fs::write(&head_file, head.trim()).expect("keep the head");
    let head_arg = head_file.to_string_lossy().into_owned();
    let (ok, text) = audit_cli(&server, &["verify", "--expect-head", &head_arg]);
    assert!(ok, "{text}");

    // 4. Cut the tail: the signed checkpoint still names the last record.
    exec(
        &db,
        "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)",
    )
    .await;
    let (ok, text) = verify_cli(&server);
    assert!(!ok && text.contains("cut"), "{text}");

    // 5. Delete the whole log and its checkpoints: nothing left to contradict itself, but the
    // kept head is gone.
    exec(&db, "DELETE FROM audit_log").await;
    exec(&db, "DELETE FROM audit_checkpoints").await;
    let (ok, text) = verify_cli(&server);
    assert!(ok && text.contains("0 records"), "{text}");
    let (ok, text) = audit_cli(&server, &["verify", "--expect-head", &head_arg]);
    assert!(
        !ok && text.contains("BROKEN at record 1") && text.contains("cut"),
        "{text}"
    );

    db.close().await;
    server.cleanup().await;
}

backend_tests!(audit_records_every_write_and_verify_catches_tampering);
