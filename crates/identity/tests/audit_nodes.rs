//! Two platform nodes (two pools, one database) append to one audit chain concurrently; the
//! chain stays whole.

use yunnao_bus::Bus;
use yunnao_identity::{AuditEntry, Identity, IdentityConfig, PlatformKeys, audit};
use yunnao_store::testing::{TestBackend, TestDb};
use yunnao_store::{Db, backend_tests, migrate};

/// A migrated database and two nodes on it (two pools, one platform key), checkpointing
/// every 16 records.
async fn two_nodes(backend: TestBackend) -> (TestDb, Vec<Identity>) {
    let test = TestDb::new(backend).await.expect("test db");
    migrate::run(&test.db, &[yunnao_identity::MIGRATIONS])
        .await
        .expect("migrate");
    let secret = yunnao_gm::Sm2KeyPair::generate()
        .expect("key")
        .secret_bytes();
    let config = IdentityConfig {
        checkpoint_every: 16,
        ..IdentityConfig::default()
    };
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let db = Db::connect(&test.url).await.expect("node pool");
        let keys = PlatformKeys::from_secret(&secret).expect("keys");
        nodes.push(Identity::new(db, Bus::in_process(), keys, config.clone()));
    }
    (test, nodes)
}

async fn concurrent_appends_from_two_nodes_keep_one_chain(backend: TestBackend) {
    let (test, nodes) = two_nodes(backend).await;
    let mut tasks = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for worker in 0..3 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20 {
                    node.audit(AuditEntry {
                        actor: format!("node{n}-worker{worker}"),
                        department: "bigdata".into(),
                        action: "test.append".into(),
                        target: format!("item:{i}"),
                        request_id: format!("{n}-{worker}-{i}"),
                        outcome: "success".into(),
                    })
                    .await
                    .expect("append");
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("task");
    }
    let report = audit::verify(&test.db, &nodes[0].keys.public_key())
        .await
        .expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records, 120);
    assert_eq!(report.checkpoints, 120 / 16);

    // A checkpoint signed by another key is caught.
    let stranger = PlatformKeys::generate().expect("key");
    let report = audit::verify(&test.db, &stranger.public_key())
        .await
        .expect("verify");
    assert!(!report.ok);
    assert_eq!(report.first_bad_seq, Some(16));
    for node in nodes {
        node.db.close().await;
    }
    test.cleanup().await;
}

/// Groups appended in one statement (as metered data reads are) interleave with single
/// appends from another node; checkpoints fall inside groups where the interval says.
async fn grouped_appends_chain_and_checkpoint_like_single_ones(backend: TestBackend) {
    let (test, nodes) = two_nodes(backend).await;
    let entry = |who: &str, i: usize| AuditEntry {
        actor: who.into(),
        department: "bigdata".into(),
        action: "test.append".into(),
        target: format!("item:{i}"),
        request_id: format!("{who}-{i}"),
        outcome: "success".into(),
    };
    let grouped = {
        let node = nodes[0].clone();
        tokio::spawn(async move {
            for round in 0..10 {
                let mut tx = node.db.begin_fast_write().await.expect("tx");
                let entries = (0..7).map(|i| entry("grouped", round * 7 + i)).collect();
                let records = node.audit_many_in(&mut tx, entries).await.expect("group");
                assert_eq!(records.len(), 7);
                assert!(
                    records
                        .windows(2)
                        .all(|w| w[1].seq == w[0].seq + 1 && w[1].prev_hash == w[0].hash)
                );
                tx.commit().await.expect("commit");
            }
        })
    };
    let single = {
        let node = nodes[1].clone();
        tokio::spawn(async move {
            for i in 0..30 {
                node.audit(entry("single", i)).await.expect("append");
            }
        })
    };
    grouped.await.expect("grouped");
    single.await.expect("single");
    let report = audit::verify(&test.db, &nodes[0].keys.public_key())
        .await
        .expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records, 100);
    assert_eq!(report.checkpoints, 100 / 16);
    for node in nodes {
        node.db.close().await;
    }
    test.cleanup().await;
}

backend_tests!(concurrent_appends_from_two_nodes_keep_one_chain);
backend_tests!(grouped_appends_chain_and_checkpoint_like_single_ones);
