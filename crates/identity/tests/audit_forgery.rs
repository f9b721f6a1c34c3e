//! Forgeries by an insider with SQL access but without the platform key: each is caught, and
//! the first altered record is named. Data-driven: every case starts from the same chain of
//! 315 records, tampers with it, and states what `verify` (with and without a head kept
//! outside the database) must say.

use yunnao_bus::Bus;
use yunnao_identity::audit::{self, AuditRecord, SignedHead};
use yunnao_identity::{AuditEntry, Identity, IdentityConfig, PlatformKeys};
use yunnao_store::testing::{TestBackend, TestDb};
use yunnao_store::{Db, backend_tests, migrate, sqlx};

const RECORDS: i64 = 315;

async fn exec(db: &Db, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Recomputes every record's links and hashes from `from` on, as a forger rebuilding the chain
/// after an edit would.
async fn rebuild_from(db: &Db, from: i64) {
    let records: Vec<AuditRecord> = audit::list(db, None, 0, 10_000).await.expect("records");
    let mut prev = vec![0u8; 32];
    for mut record in records {
        if record.seq >= from {
            record.prev_hash = hex::encode(&prev);
            record.hash = hex::encode(audit::record_hash(&prev, &record).expect("hash"));
            sqlx::query("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3")
                .bind(&record.prev_hash)
                .bind(&record.hash)
                .bind(record.seq)
                .execute(db.pool())
                .await
                .expect("rewrite");
        }
        prev = hex::decode(&record.hash).expect("hex");
    }
}

struct Case {
    name: &'static str,
    tamper: &'static [&'static str],
    /// Rebuild the chain from this record after tampering.
    rebuild_from: Option<i64>,
    /// First bad record without, and with, the kept head (None: passes).
    without_head: Option<i64>,
    with_head: Option<i64>,
}

const CASES: &[Case] = &[
    Case {
        name: "edit record 10, rebuild, delete every checkpoint",
        tamper: &[
            "UPDATE audit_log SET actor = 'mallory' WHERE seq = 10",
            "DELETE FROM audit_checkpoints",
        ],
        rebuild_from: Some(10),
        without_head: Some(1),
        with_head: Some(1),
    },
    Case {
        name: "delete the whole log",
        tamper: &["DELETE FROM audit_log", "DELETE FROM audit_checkpoints"],
        rebuild_from: None,
        without_head: None,
        with_head: Some(1),
    },
    Case {
        name: "cut the tail with its checkpoints",
        tamper: &[
            "DELETE FROM audit_log WHERE seq > 256",
            "DELETE FROM audit_checkpoints WHERE seq > 256",
        ],
        rebuild_from: None,
        without_head: None,
        with_head: Some(257),
    },
    Case {
        name: "edit after the last regular checkpoint, rebuild, drop the newest checkpoint",
        tamper: &[
            "UPDATE audit_log SET target = 'forged' WHERE seq = 300",
            "DELETE FROM audit_checkpoints WHERE seq > 256",
        ],
        rebuild_from: Some(300),
        without_head: None,
        with_head: Some(300),
    },
    Case {
        name: "edit record 158, rebuild, keep the checkpoints",
        tamper: &["UPDATE audit_log SET actor = 'mallory' WHERE seq = 158"],
        rebuild_from: Some(158),
        without_head: Some(158),
        with_head: Some(158),
    },
    Case {
        name: "delete a checkpoint in the middle",
        tamper: &["DELETE FROM audit_checkpoints WHERE seq = 128"],
        rebuild_from: None,
        without_head: Some(65),
        with_head: Some(65),
    },
    Case {
        name: "alter a checkpoint's signature",
        tamper: &["UPDATE audit_checkpoints SET signed_at_ms = signed_at_ms + 1 WHERE seq = 192"],
        rebuild_from: None,
        without_head: Some(192),
        with_head: Some(192),
    },
    Case {
        name: "a tail older than the unsigned window",
        tamper: &[
            "DELETE FROM audit_checkpoints WHERE seq > 256",
            "UPDATE audit_log SET at_ms = at_ms - 60000 WHERE seq <= 280",
        ],
        rebuild_from: Some(1),
        without_head: Some(1),
        with_head: Some(1),
    },
    Case {
        name: "edit a record in place",
        tamper: &["UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"],
        rebuild_from: None,
        without_head: Some(3),
        with_head: Some(3),
    },
];

async fn forgeries_are_caught_and_named(backend: TestBackend) {
    let test = TestDb::new(backend).await.expect("test db");
    migrate::run(&test.db, &[yunnao_identity::MIGRATIONS])
        .await
        .expect("migrate");
    let keys = PlatformKeys::generate().expect("key");
    let public = keys.public_key();
    let identity = Identity::new(
        test.db.clone(),
        Bus::in_process(),
        keys,
        IdentityConfig::default(),
    );
    for i in 0..RECORDS {
        identity
            .audit(AuditEntry {
                actor: format!("user{}", i % 7),
                department: "bigdata".into(),
                action: "test.write".into(),
                target: format!("item:{i}"),
                request_id: format!("r-{i}"),
                outcome: if i % 5 == 0 { "denied" } else { "success" }.into(),
            })
            .await
            .expect("append");
    }
    let head: SignedHead = identity.signed_head().await.expect("head").expect("a head");
    assert_eq!(head.seq, RECORDS);
    // The head survives being written out and read back, as an operator keeps it.
    let kept: SignedHead =
        serde_json::from_str(&serde_json::to_string(&head).expect("json")).expect("parse");
    let report = audit::verify_against(&test.db, &public, Some(&kept))
        .await
        .expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records, RECORDS);
    assert_eq!(
        report.checkpoints, 5,
        "four every 64 records, one at the head"
    );

    exec(
        &test.db,
        "CREATE TABLE saved_log AS SELECT * FROM audit_log",
    )
    .await;
    exec(
        &test.db,
        "CREATE TABLE saved_checkpoints AS SELECT * FROM audit_checkpoints",
    )
    .await;
    for case in CASES {
        for sql in case.tamper {
            exec(&test.db, sql).await;
        }
        if let Some(from) = case.rebuild_from {
            rebuild_from(&test.db, from).await;
        }
        for (expected, head) in [(case.without_head, None), (case.with_head, Some(&kept))] {
            let report = audit::verify_against(&test.db, &public, head)
                .await
                .expect("verify");
            assert_eq!(
                report.first_bad_seq,
                expected,
                "{} ({}): {report:?}",
                case.name,
                if head.is_some() {
                    "with the kept head"
                } else {
                    "without a head"
                }
            );
            assert_eq!(report.ok, expected.is_none(), "{}", case.name);
        }
        exec(&test.db, "DELETE FROM audit_log").await;
        exec(&test.db, "DELETE FROM audit_checkpoints").await;
        exec(&test.db, "INSERT INTO audit_log SELECT * FROM saved_log").await;
        exec(
            &test.db,
            "INSERT INTO audit_checkpoints SELECT * FROM saved_checkpoints",
        )
        .await;
        let report = audit::verify_against(&test.db, &public, Some(&kept))
            .await
            .expect("verify");
        assert!(report.ok, "restored after {}: {report:?}", case.name);
    }

    // A head signed by another key is no head of this chain.
    let stranger = PlatformKeys::generate().expect("key");
    let report = audit::verify_against(&test.db, &stranger.public_key(), None)
        .await
        .expect("verify");
    assert_eq!(report.first_bad_seq, Some(64));
    test.cleanup().await;
}

backend_tests!(forgeries_are_caught_and_named);
