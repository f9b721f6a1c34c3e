//! The public services hub through its API: the catalogue told to anyone, holders bound to
//! checked numbers, e-licences sealed by their issuer, verified publicly and offline, refused
//! once altered, suspended or revoked, seen only by their holder and issuer; applications that
//! take their materials from the library and pass parallel steps in two departments.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{TestServer, expect_problem};
use yunnao_store::testing::TestBackend;
use yunnao_store::{backend_tests, sqlx};

async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let response = server.request(method, path, token, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn licences_and_applications_through_the_api(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;

    // The catalogue is public and tells everything at once.
    let catalogue = server
        .client
        .get(server.url("/api/v1/services/catalogue"))
        .send()
        .await
        .expect("sent");
    assert_eq!(catalogue.status(), 200);
    let rate: f64 = catalogue.headers()["x-online-rate-pct"]
        .to_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0.0);
    assert!(rate > 90.0, "可网办率 {rate}");
    let services: Value = catalogue.json().await.expect("json");
    assert!(services.as_array().map_or(0, Vec::len) >= 40);
    let (status, found) = call(
        &server,
        Method::GET,
        "/api/v1/services/catalogue?q=食品",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let code = found[0]["code"].as_str().expect("食品经营许可").to_owned();
    let (status, guide) = call(
        &server,
        Method::GET,
        &format!("/api/v1/services/catalogue/{code}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        guide["materials"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["source"] == "licence:business_licence")),
        "{guide}"
    );
    let (status, bundles) =
        call(&server, Method::GET, "/api/v1/services/bundles", None, None).await;
    assert_eq!(status, 200);
    assert!(bundles.as_array().is_some_and(|b| {
        b.iter()
            .any(|b| b["name_zh"].as_str().is_some_and(|n| n.contains("新生儿")))
    }));

    // Holders: a resident bound to a checked identity number; a wrong check digit names the field.
    let resident = server.user(&admin, "li.ming", "bigdata", "resident").await;
    let stranger = server
        .user(&admin, "wang.fang", "bigdata", "resident")
        .await;
    let wrong = server
        .request(
            Method::PUT,
            "/api/v1/services/holders/li.ming",
            Some(&admin),
            Some(json!({"holder_id": "370202198801010013", "holder_name": "李明"})),
        )
        .await;
    let problem = expect_problem(wrong, 422, "validation").await;
    assert_eq!(problem["field"], "holder_id", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("check character")),
        "{problem}"
    );
    let (status, holder) = call(
        &server,
        Method::PUT,
        "/api/v1/services/holders/li.ming",
        Some(&admin),
        Some(json!({"holder_id": "370202198801010019", "holder_name": "李明"})),
    )
    .await;
    assert_eq!(status, 200, "{holder}");
    assert_eq!(holder["holder_kind"], "person");
    let (status, _) = call(
        &server,
        Method::PUT,
        "/api/v1/services/holders/li.ming",
        Some(&resident),
        Some(json!({"holder_id": "370202198801010019", "holder_name": "李明"})),
    )
    .await;
    assert_eq!(status, 403, "a resident does not bind themselves");

    // The police issue the resident's ID card; the seal is the police's.
    let police = server.user(&admin, "police.op", "police", "operator").await;
    let water = server.user(&admin, "water.op2", "water", "operator").await;
    let (status, licence) = call(&server, Method::POST, "/api/v1/services/licences", Some(&police),
        Some(json!({"licence_type": "resident_id", "holder_id": "370202198801010019", "holder_name": "李明",
                    "valid_until": "2046-01-01T00:00:00Z", "data": {"address": "青岛市市南区香港中路"}}))).await;
    assert_eq!(status, 201, "{licence}");
    let id = licence["document"]["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 22, "{id}");
    assert!(id.starts_with("370200101"), "{id}");
    assert!(yunnao_services::ids::mod37_36_valid(&id), "{id}");
    assert_eq!(licence["seal"]["department"], "police");
    for (body, field) in [
        (
            json!({"licence_type": "passport", "holder_id": "370202198801010019", "holder_name": "李明"}),
            "licence_type",
        ),
        (
            json!({"licence_type": "business_licence", "holder_id": "370202198801010019", "holder_name": "李明"}),
            "holder_id",
        ),
        (
            json!({"licence_type": "resident_id", "holder_id": "370202198801010011", "holder_name": "李明"}),
            "holder_id",
        ),
        (
            json!({"licence_type": "resident_id", "holder_id": "370202198801010019", "holder_name": " "}),
            "holder_name",
        ),
        (
            json!({"licence_type": "resident_id", "holder_id": "370202198801010019", "holder_name": "李明", "valid_until": "2001-01-01T00:00:00Z"}),
            "valid_until",
        ),
    ] {
        let refused = server
            .request(
                Method::POST,
                "/api/v1/services/licences",
                Some(&police),
                Some(body),
            )
            .await;
        let problem = expect_problem(refused, 422, "validation").await;
        assert_eq!(problem["field"], field, "{problem}");
    }
    let refused = server.request(Method::POST, "/api/v1/services/licences", Some(&resident),
        Some(json!({"licence_type": "resident_id", "holder_id": "370202198801010019", "holder_name": "李明"}))).await;
    assert_eq!(refused.status(), 403, "residents issue no licences");

    // Public verification: genuine, the holder masked.
    let (status, verdict) = call(
        &server,
        Method::GET,
        &format!("/api/v1/services/licences/{id}/verification"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(verdict["genuine"], true, "{verdict}");
    assert_eq!(verdict["holder"], "3702**********0019");
    let (status, _) = call(
        &server,
        Method::GET,
        "/api/v1/services/licences/370200101202600000000A/verification",
        None,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // The holder sees it among their own, the issuer's staff see it, others do not.
    let (status, mine) = call(
        &server,
        Method::GET,
        "/api/v1/services/licences/mine",
        Some(&resident),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(mine[0]["document"]["id"], id.as_str());
    assert_eq!(mine[0]["seal_verified"], true);
    let (status, _) = call(
        &server,
        Method::GET,
        "/api/v1/services/licences/mine",
        Some(&stranger),
        None,
    )
    .await;
    assert_eq!(status, 403, "an unbound account has no licences");
    for (token, expected) in [
        (&resident, 200),
        (&police, 200),
        (&stranger, 404),
        (&water, 404),
    ] {
        let (status, _) = call(
            &server,
            Method::GET,
            &format!("/api/v1/services/licences/{id}"),
            Some(token),
            None,
        )
        .await;
        assert_eq!(status, expected);
    }

    // Offline: the sealed document verifies with the police's published key alone.
    let (status, key) = call(
        &server,
        Method::GET,
        "/api/v1/seals/police",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{key}");
    let stored: String = sqlx::query_scalar("SELECT sealed FROM svc_licences WHERE id = $1")
        .bind(&id)
        .fetch_one(server.identity.db.pool())
        .await
        .expect("row");
    let sealed: yunnao_identity::seals::SealedDocument =
        serde_json::from_str(&stored).expect("sealed");
    let public: yunnao_identity::seals::SealPublicKey = serde_json::from_value(key).expect("key");
    assert!(yunnao_identity::seals::verify_published(&sealed, &public).is_ok());

    // Altered in the database: refused.
    let altered = stored.replace("香港中路", "东海西路");
    sqlx::query("UPDATE svc_licences SET sealed = $1 WHERE id = $2")
        .bind(&altered)
        .bind(&id)
        .execute(server.identity.db.pool())
        .await
        .expect("tamper");
    let (_, verdict) = call(
        &server,
        Method::GET,
        &format!("/api/v1/services/licences/{id}/verification"),
        None,
        None,
    )
    .await;
    assert_eq!(verdict["genuine"], false, "{verdict}");
    assert_eq!(verdict["seal_verified"], false);
    sqlx::query("UPDATE svc_licences SET sealed = $1 WHERE id = $2")
        .bind(&stored)
        .bind(&id)
        .execute(server.identity.db.pool())
        .await
        .expect("restore");

    // Status: another department may not touch it; the issuer suspends, restores, revokes.
    let change = |status: &str| json!({"status": status, "reason": "核查"});
    let (status, _) = call(
        &server,
        Method::PUT,
        &format!("/api/v1/services/licences/{id}/status"),
        Some(&water),
        Some(change("revoked")),
    )
    .await;
    assert_eq!(status, 404);
    let (status, suspended) = call(
        &server,
        Method::PUT,
        &format!("/api/v1/services/licences/{id}/status"),
        Some(&police),
        Some(change("suspended")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(suspended["status"], "suspended");
    let (_, verdict) = call(
        &server,
        Method::GET,
        &format!("/api/v1/services/licences/{id}/verification"),
        None,
        None,
    )
    .await;
    assert_eq!(verdict["genuine"], false);
    assert!(
        verdict["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("suspended")),
        "{verdict}"
    );
    let (status, _) = call(
        &server,
        Method::PUT,
        &format!("/api/v1/services/licences/{id}/status"),
        Some(&police),
        Some(change("revoked")),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &server,
        Method::PUT,
        &format!("/api/v1/services/licences/{id}/status"),
        Some(&police),
        Some(change("valid")),
    )
    .await;
    assert_eq!(status, 409, "a revoked licence stays revoked");
    let (status, _) = call(
        &server,
        Method::PUT,
        &format!("/api/v1/services/licences/{id}/status"),
        Some(&police),
        Some(change("lost")),
    )
    .await;
    assert_eq!(status, 422);

    // An enterprise is bound by its credit code; the market bureau issues its business licence.
    server
        .user(&admin, "haier.co", "bigdata", "enterprise")
        .await;
    let (status, holder) = call(
        &server,
        Method::PUT,
        "/api/v1/services/holders/haier.co",
        Some(&admin),
        Some(json!({"holder_id": "91370200163562681G", "holder_name": "青岛某某有限公司"})),
    )
    .await;
    assert_eq!(status, 200, "{holder}");
    assert_eq!(holder["holder_kind"], "enterprise");
    let (status, taken) = call(
        &server,
        Method::PUT,
        "/api/v1/services/holders/wang.fang",
        Some(&admin),
        Some(json!({"holder_id": "91370200163562681G", "holder_name": "青岛某某有限公司"})),
    )
    .await;
    assert_eq!(status, 409, "{taken}");
    let market = server.user(&admin, "market.op", "market", "operator").await;
    let (status, licence) = call(&server, Method::POST, "/api/v1/services/licences", Some(&market),
        Some(json!({"licence_type": "business_licence", "holder_id": "91370200163562681G", "holder_name": "青岛某某有限公司"}))).await;
    assert_eq!(status, 201, "{licence}");
    assert!(
        licence["document"]["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("370200201"))
    );
    server.cleanup().await;
}

backend_tests!(licences_and_applications_through_the_api);
