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

const PNG: [u8; 16] = [
    0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R',
];

async fn upload(
    server: &TestServer,
    token: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let response = server
        .client
        .post(server.url("/api/v1/services/uploads"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn ids_of(v: &Value, licence_type: &str) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["document"]["licence_type"] == licence_type)
        .filter_map(|l| l["document"]["id"].as_str().map(str::to_owned))
        .collect()
}

/// 新生儿出生“一件事” as the resident lives it, the departments' refusals, the window,
/// deadlines, a tampered licence refused as a material, and a policy run that pays.
async fn applications_through_the_api(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let resident = server
        .user(&admin, "zhang.san", "bigdata", "resident")
        .await;
    let person = "370202198801010019";
    let (status, _) = call(
        &server,
        Method::PUT,
        "/api/v1/services/holders/zhang.san",
        Some(&admin),
        Some(json!({"holder_id": person, "holder_name": "张三"})),
    )
    .await;
    assert_eq!(status, 200);
    let police = server
        .user(&admin, "police.clerk", "police", "operator")
        .await;
    let health = server
        .user(&admin, "health.clerk", "health", "operator")
        .await;
    let hrss = server.user(&admin, "hrss.clerk", "hrss", "operator").await;
    let insurance = server
        .user(&admin, "mi.clerk", "medical-insurance", "operator")
        .await;
    let bureau = server
        .user(&admin, "window.clerk", "approval", "operator")
        .await;
    for (token, licence_type) in [
        (&police, "resident_id"),
        (&police, "household_register"),
        (&health, "birth_certificate"),
    ] {
        let (status, issued) = call(
            &server,
            Method::POST,
            "/api/v1/services/licences",
            Some(token),
            Some(json!({"licence_type": licence_type, "holder_id": person, "holder_name": "张三"})),
        )
        .await;
        assert_eq!(status, 201, "{issued}");
    }
    let (_, library) = call(
        &server,
        Method::GET,
        "/api/v1/services/licences/mine",
        Some(&resident),
        None,
    )
    .await;
    let consent: Vec<String> = ["resident_id", "household_register", "birth_certificate"]
        .iter()
        .flat_map(|t| ids_of(&library, t))
        .collect();
    assert_eq!(consent.len(), 3, "{library}");

    // Uploads: known by their bytes, with their SM3.
    let (status, problem) = upload(
        &server,
        &resident,
        "image/png",
        b"%PDF-1.4 not a png".to_vec(),
    )
    .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (415, Some("file")),
        "{problem}"
    );
    let (status, problem) = upload(&server, &resident, "image/png", b"MZ\x90\x00".to_vec()).await;
    assert_eq!(status, 415, "{problem}");
    let (status, photo) = upload(&server, &resident, "image/png", PNG.to_vec()).await;
    assert_eq!(status, 201, "{photo}");
    assert_eq!(photo["sm3"], hex::encode(yunnao_gm::sm3(&PNG)));
    let photo_id = photo["id"].as_str().expect("id").to_owned();

    // The guide, then the bundle's one application; each refusal names its field.
    let bundle = "370200-YJS-0001";
    let form =
        json!({"phone": "13800000000", "child_name": "张小宝", "child_birth_date": "2026-11-30"});
    let good = json!({"service_code": bundle, "form": form, "consent": consent, "uploads": {"免冠照片": photo_id}});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    for (body, status, field) in [
        (with("consent", json!([])), 422, "consent"),
        (with("uploads", json!({})), 422, "uploads"),
        (
            with(
                "uploads",
                json!({"免冠照片": "0190aaaa-0000-7000-8000-000000000000"}),
            ),
            422,
            "uploads",
        ),
        (
            with(
                "form",
                json!({"phone": "13800000000", "child_birth_date": "2026-11-30"}),
            ),
            422,
            "form",
        ),
        (
            with(
                "form",
                json!({"phone": "123", "child_name": "张小宝", "child_birth_date": "2026-11-30"}),
            ),
            422,
            "form.phone",
        ),
        (
            with(
                "form",
                json!({"phone": "13800000000", "child_name": "张小宝", "child_birth_date": "2026-11-30", "extra": 1}),
            ),
            422,
            "form",
        ),
        (with("channel", json!("fax")), 422, "channel"),
        (with("on_behalf_of", json!(person)), 422, "on_behalf_of"),
    ] {
        let (got, problem) = call(
            &server,
            Method::POST,
            "/api/v1/services/applications",
            Some(&resident),
            Some(body),
        )
        .await;
        assert_eq!(
            (got, problem["field"].as_str()),
            (status, Some(field)),
            "{problem}"
        );
    }
    let (status, app) = call(
        &server,
        Method::POST,
        "/api/v1/services/applications",
        Some(&resident),
        Some(good.clone()),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let id = app["id"].as_str().expect("id").to_owned();
    let materials = app["materials"].as_array().expect("materials");
    assert_eq!(
        materials
            .iter()
            .filter(|m| m["source"] == "licence")
            .count(),
        3,
        "{app}"
    );
    assert_eq!(
        materials.iter().filter(|m| m["source"] == "upload").count(),
        1,
        "only the photo is uploaded"
    );
    assert_eq!(app["department"], "approval");
    assert!(app["due_at"].is_string());
    let (status, _) = call(
        &server,
        Method::POST,
        "/api/v1/services/applications",
        Some(&resident),
        Some(good.clone()),
    )
    .await;
    assert_eq!(status, 422, "an upload serves one application");

    // Receiving: only the approval bureau; returned once (the clock stops), completed, accepted.
    let receipt = |action: &str| json!({"action": action, "reason": "照片不清晰"});
    let path = format!("/api/v1/services/applications/{id}/receipt");
    let (status, _) = call(
        &server,
        Method::POST,
        &path,
        Some(&police),
        Some(receipt("accept")),
    )
    .await;
    assert_eq!(
        status, 403,
        "the police take part but do not receive the bundle"
    );
    let (status, returned) = call(
        &server,
        Method::POST,
        &path,
        Some(&bureau),
        Some(receipt("return")),
    )
    .await;
    assert_eq!(status, 200, "{returned}");
    assert_eq!(returned["state"], "returned");
    assert!(
        returned["due_at"].is_null(),
        "the clock stops while the applicant completes"
    );
    let (status, _) = call(
        &server,
        Method::POST,
        &path,
        Some(&bureau),
        Some(receipt("accept")),
    )
    .await;
    assert_eq!(status, 409, "a returned application is completed first");
    let (status, again) = call(&server, Method::PUT, &format!("/api/v1/services/applications/{id}"), Some(&resident),
        Some(json!({"form": {"phone": "13900000000", "child_name": "张小宝", "child_birth_date": "2026-11-30"}}))).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["state"], "submitted");
    assert!(again["due_at"].is_string());
    let (status, _) = call(
        &server,
        Method::POST,
        &path,
        Some(&bureau),
        Some(receipt("return")),
    )
    .await;
    assert_eq!(status, 409, "returned once only");
    let (status, accepted) = call(
        &server,
        Method::POST,
        &path,
        Some(&bureau),
        Some(json!({"action": "accept"})),
    )
    .await;
    assert_eq!(status, 200, "{accepted}");
    let steps = accepted["steps"].as_array().expect("steps");
    let open: Vec<&str> = steps
        .iter()
        .filter(|s| s["state"] == "open")
        .filter_map(|s| s["department"].as_str())
        .collect();
    assert_eq!(open.len(), 4, "{accepted}");
    for d in ["police", "medical-insurance", "hrss", "health"] {
        assert!(open.contains(&d), "{d} opens at once: {open:?}");
    }
    assert!(steps.iter().all(|s| s["due_at"].is_string()));

    // Each department decides its own step only; a decided step is 409.
    let step_of = |department: &str| {
        let s = steps
            .iter()
            .find(|s| s["department"] == department)
            .expect("step");
        format!(
            "/api/v1/services/applications/{id}/steps/{}/{}",
            s["stage"], s["step"]
        )
    };
    let approve = json!({"approve": true, "comment": "核验通过"});
    let (status, _) = call(
        &server,
        Method::POST,
        &step_of("police"),
        Some(&health),
        Some(approve.clone()),
    )
    .await;
    assert_eq!(status, 403, "health does not act on the police's step");
    let (status, _) = call(
        &server,
        Method::POST,
        &step_of("police"),
        Some(&police),
        Some(json!({"approve": true, "comment": " "})),
    )
    .await;
    assert_eq!(status, 422);
    for (token, department) in [(&police, "police"), (&health, "health"), (&hrss, "hrss")] {
        let (status, body) = call(
            &server,
            Method::POST,
            &step_of(department),
            Some(token),
            Some(approve.clone()),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "approving");
    }
    let (status, _) = call(
        &server,
        Method::POST,
        &step_of("police"),
        Some(&police),
        Some(approve.clone()),
    )
    .await;
    assert_eq!(status, 409);
    let (status, done) = call(
        &server,
        Method::POST,
        &step_of("medical-insurance"),
        Some(&insurance),
        Some(approve.clone()),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "approved");
    let results: Vec<String> = done["result_licences"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    assert_eq!(results.len(), 4, "{done}");

    // The results are in the library, sealed by their departments, verifying offline.
    let (_, library) = call(
        &server,
        Method::GET,
        "/api/v1/services/licences/mine",
        Some(&resident),
        None,
    )
    .await;
    for result in &results {
        let licence = library
            .as_array()
            .expect("mine")
            .iter()
            .find(|l| l["document"]["id"] == result.as_str())
            .expect("issued into the library");
        assert_eq!(licence["seal_verified"], true);
        let department = licence["seal"]["department"].as_str().expect("issuer");
        let (_, key) = call(
            &server,
            Method::GET,
            &format!("/api/v1/seals/{department}"),
            Some(&admin),
            None,
        )
        .await;
        let stored: String = sqlx::query_scalar("SELECT sealed FROM svc_licences WHERE id = $1")
            .bind(result)
            .fetch_one(server.identity.db.pool())
            .await
            .expect("row");
        let sealed: yunnao_identity::seals::SealedDocument =
            serde_json::from_str(&stored).expect("sealed");
        let public: yunnao_identity::seals::SealPublicKey =
            serde_json::from_value(key).expect("key");
        assert!(
            yunnao_identity::seals::verify_published(&sealed, &public).is_ok(),
            "{department}"
        );
        // Offline, as a holder would: the licence as the API gives it, the issuer's key.
        let file = server.data_dir.path().join(format!("{result}.json"));
        std::fs::write(&file, licence.to_string()).expect("write");
        let verify = |path: &std::path::Path| {
            std::process::Command::new(env!("CARGO_BIN_EXE_yunnao"))
                .args(["licence", "verify", "--public-key", &public.public_key])
                .arg(path)
                .output()
                .expect("runs")
        };
        let out = verify(&file);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::fs::write(&file, licence.to_string().replace("张三", "张四")).expect("write");
        let out = verify(&file);
        assert_eq!(
            out.status.code(),
            Some(1),
            "an altered licence fails offline"
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("INVALID"));
    }
    assert!(
        ids_of(&library, "social_security_card").len() == 1
            && ids_of(&library, "vaccination_certificate").len() == 1
    );

    // The holder sees every use of their birth certificate; the messages tell the story.
    let birth = ids_of(&library, "birth_certificate")[0].clone();
    let (status, uses) = call(
        &server,
        Method::GET,
        &format!("/api/v1/services/licences/{birth}/uses"),
        Some(&resident),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let uses = uses.as_array().expect("uses");
    assert!(
        uses.iter()
            .any(|u| u["action"] == "consented" && u["department"] == "approval"),
        "{uses:?}"
    );
    assert!(
        uses.iter()
            .any(|u| u["action"] == "read" && u["department"] == "health"),
        "{uses:?}"
    );
    let (_, messages) = call(
        &server,
        Method::GET,
        "/api/v1/services/messages",
        Some(&resident),
        None,
    )
    .await;
    let kinds: Vec<&str> = messages
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["kind"].as_str())
        .collect();
    for kind in [
        "submitted",
        "returned",
        "accepted",
        "approved",
        "licence_issued",
    ] {
        assert!(kinds.contains(&kind), "{kind}: {kinds:?}");
    }
    let (_, others) = call(
        &server,
        Method::GET,
        "/api/v1/services/applications/mine",
        Some(&police),
        None,
    )
    .await;
    assert_eq!(others, json!([]), "staff have no applications of their own");
    let stranger = server.user(&admin, "li.si", "bigdata", "resident").await;
    let (status, _) = call(
        &server,
        Method::GET,
        &format!("/api/v1/services/applications/{id}"),
        Some(&stranger),
        None,
    )
    .await;
    assert_eq!(status, 404, "applicants see their own only");

    // The window files for the resident; recorded as such and theirs to see.
    let (status, photo) = upload(
        &server,
        &bureau,
        "image/jpeg",
        vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10],
    )
    .await;
    assert_eq!(status, 201);
    let residence = ids_of(&library, "resident_id");
    let (status, window) = call(&server, Method::POST, "/api/v1/services/applications", Some(&bureau),
        Some(json!({"service_code": "370200-QR-0001", "channel": "window", "on_behalf_of": person, "consent": residence,
                    "form": {"phone": "13800000000"}, "uploads": {"居住登记证明": photo["id"]}}))).await;
    assert_eq!(status, 201, "{window}");
    assert_eq!(window["channel"], "window");
    assert!(window["filed_by"].is_string());
    let window_id = window["id"].as_str().expect("id").to_owned();
    let (_, mine) = call(
        &server,
        Method::GET,
        "/api/v1/services/applications/mine",
        Some(&resident),
        None,
    )
    .await;
    assert!(
        mine.as_array()
            .expect("mine")
            .iter()
            .any(|a| a["id"] == window_id.as_str())
    );

    // A licence altered in the database is no material: not at acceptance, not at submission.
    let card = &residence[0];
    let stored: String = sqlx::query_scalar("SELECT sealed FROM svc_licences WHERE id = $1")
        .bind(card)
        .fetch_one(server.identity.db.pool())
        .await
        .expect("row");
    let altered = stored.replace("张三", "张四");
    assert_ne!(altered, stored);
    sqlx::query("UPDATE svc_licences SET sealed = $1 WHERE id = $2")
        .bind(&altered)
        .bind(card)
        .execute(server.identity.db.pool())
        .await
        .expect("tamper");
    let (status, problem) = call(
        &server,
        Method::POST,
        &format!("/api/v1/services/applications/{window_id}/receipt"),
        Some(&police),
        Some(json!({"action": "accept"})),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["licence_id"], card.as_str());
    let (_, photo) = upload(
        &server,
        &resident,
        "application/pdf",
        b"%PDF-1.7\n".to_vec(),
    )
    .await;
    let (status, problem) = call(&server, Method::POST, "/api/v1/services/applications", Some(&resident),
        Some(json!({"service_code": "370200-QR-0001", "consent": residence, "form": {"phone": "13800000000"}, "uploads": {"居住登记证明": photo["id"]}}))).await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("materials")),
        "{problem}"
    );
    let (status, _) = call(
        &server,
        Method::POST,
        &format!("/api/v1/services/applications/{window_id}/receipt"),
        Some(&police),
        Some(json!({"action": "decline", "reason": "身份证照核验未通过"})),
    )
    .await;
    assert_eq!(status, 200);

    // Deadlines: a month on, the steps of a fresh application are warned and overdue.
    sqlx::query("UPDATE svc_licences SET sealed = $1 WHERE id = $2")
        .bind(&stored)
        .bind(card)
        .execute(server.identity.db.pool())
        .await
        .expect("restore");
    let (_, photo) = upload(
        &server,
        &resident,
        "application/pdf",
        b"%PDF-1.7\n%".to_vec(),
    )
    .await;
    let (status, late) = call(&server, Method::POST, "/api/v1/services/applications", Some(&resident),
        Some(json!({"service_code": "370200-QR-0001", "consent": residence, "form": {"phone": "13800000000"}, "uploads": {"居住登记证明": photo["id"]}}))).await;
    assert_eq!(status, 201, "{late}");
    let late_id = late["id"].as_str().expect("id").to_owned();
    let (status, _) = call(
        &server,
        Method::POST,
        &format!("/api/v1/services/applications/{late_id}/receipt"),
        Some(&bureau),
        Some(json!({"action": "accept"})),
    )
    .await;
    assert_eq!(status, 403, "a police service is received by the police");
    let (status, _) = call(
        &server,
        Method::POST,
        &format!("/api/v1/services/applications/{late_id}/receipt"),
        Some(&police),
        Some(json!({"action": "accept"})),
    )
    .await;
    assert_eq!(status, 200);
    let month = yunnao_core::time::now_ms() + 30 * 86_400_000;
    let report = server
        .services
        .applications
        .scan_deadlines(month)
        .await
        .expect("scan");
    assert!(report.warned >= 1 && report.overdue >= 1, "{report:?}");
    let again = server
        .services
        .applications
        .scan_deadlines(month)
        .await
        .expect("scan");
    assert_eq!((again.warned, again.overdue), (0, 0), "once each");
    let (_, late) = call(
        &server,
        Method::GET,
        &format!("/api/v1/services/applications/{late_id}"),
        Some(&police),
        None,
    )
    .await;
    assert_eq!(late["steps"][0]["overdue"], true, "{late}");
    let (_, messages) = call(
        &server,
        Method::GET,
        "/api/v1/services/messages",
        Some(&bureau),
        None,
    )
    .await;
    assert!(
        messages
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["kind"] == "overdue"),
        "escalated to the bureau"
    );

    // Catalogue management: the next version by the owning department's admin or the bureau's;
    // an application made before keeps the version it was made on.
    let (_, guide) = call(
        &server,
        Method::GET,
        "/api/v1/services/catalogue/370200-QR-0001",
        None,
        None,
    )
    .await;
    assert_eq!(guide["version"], 1);
    let mut next = guide.clone();
    next["version"] = json!(2);
    next["promised_days"] = json!(2);
    let path = "/api/v1/services/catalogue/370200-QR-0001";
    let (status, _) = call(
        &server,
        Method::PUT,
        path,
        Some(&bureau),
        Some(next.clone()),
    )
    .await;
    assert_eq!(status, 403, "an operator does not change the catalogue");
    let other = server
        .user(&admin, "water.head", "water", "dept_admin")
        .await;
    let (status, _) = call(&server, Method::PUT, path, Some(&other), Some(next.clone())).await;
    assert_eq!(status, 403, "another department's admin does not change it");
    let head = server
        .user(&admin, "approval.head", "approval", "dept_admin")
        .await;
    let mut stale = next.clone();
    stale["version"] = json!(5);
    let (status, problem) = call(&server, Method::PUT, path, Some(&head), Some(stale)).await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (409, Some("version")),
        "{problem}"
    );
    let mut broken = next.clone();
    broken["promised_days"] = json!(99);
    let (status, _) = call(&server, Method::PUT, path, Some(&head), Some(broken)).await;
    assert_eq!(status, 422, "a promise past the statutory limit is refused");
    let (status, published) =
        call(&server, Method::PUT, path, Some(&head), Some(next.clone())).await;
    assert_eq!(status, 200, "{published}");
    let (_, versions) = call(
        &server,
        Method::GET,
        &format!("{path}/versions"),
        None,
        None,
    )
    .await;
    assert_eq!(versions[0]["version"], 2);
    let (_, kept) = call(
        &server,
        Method::GET,
        &format!("/api/v1/services/applications/{late_id}"),
        Some(&police),
        None,
    )
    .await;
    assert_eq!(kept["service_version"], 1, "made on version 1, kept");

    // The bureau's figures.
    let (status, figures) = call(
        &server,
        Method::GET,
        "/api/v1/services/figures",
        Some(&bureau),
        None,
    )
    .await;
    assert_eq!(status, 200, "{figures}");
    assert!(figures["applications"].as_i64() >= Some(3), "{figures}");
    assert!(
        figures["materials_from_licences"].as_i64() >= Some(5),
        "{figures}"
    );
    assert_eq!(figures["licences_issued"], 4);
    assert_eq!(figures["by_channel"]["window"], 1);
    let (status, _) = call(
        &server,
        Method::GET,
        "/api/v1/services/figures",
        Some(&resident),
        None,
    )
    .await;
    assert_eq!(status, 403);
    server.cleanup().await;
}

backend_tests!(applications_through_the_api);

/// 免申即享: a run pays eligible enterprises within the budget, two runs at once pay nobody
/// twice, the enterprise sees what it got and why and appeals what it did not.
async fn policies_pay_without_application(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let grants = &server.services.grants;
    let policy = grants
        .policies()
        .iter()
        .find(|p| p.mode == "auto")
        .expect("an auto policy")
        .clone();
    let today = chrono::Utc::now().date_naive();
    let eligible = grants
        .enterprises()
        .iter()
        .find(|e| policy.decide(e, today).is_ok_and(|d| d.eligible))
        .expect("an eligible enterprise")
        .clone();
    let refused = grants
        .enterprises()
        .iter()
        .find(|e| policy.decide(e, today).is_ok_and(|d| !d.eligible))
        .expect("a refused enterprise")
        .clone();
    for (user, e) in [("lucky.co", &eligible), ("unlucky.co", &refused)] {
        server.user(&admin, user, "bigdata", "enterprise").await;
        let (status, _) = call(
            &server,
            Method::PUT,
            &format!("/api/v1/services/holders/{user}"),
            Some(&admin),
            Some(json!({"holder_id": e.credit_code, "holder_name": e.name})),
        )
        .await;
        assert_eq!(status, 200);
    }
    let lucky = server.sign_in("lucky.co", "password-123").await;
    let unlucky = server.sign_in("unlucky.co", "password-123").await;
    let department = policy.department.clone();
    let operator = server
        .user(&admin, "payer.op", &department, "operator")
        .await;
    let payer = server
        .user(&admin, "payer.admin", &department, "dept_admin")
        .await;
    let path = format!("/api/v1/services/policies/{}/runs", policy.code);
    let (status, _) = call(&server, Method::POST, &path, Some(&operator), None).await;
    assert_eq!(status, 403, "operators read the ledger, admins run it");
    let (status, _) = call(&server, Method::POST, &path, Some(&lucky), None).await;
    assert_eq!(status, 403);
    let (a, b) = tokio::join!(
        call(&server, Method::POST, &path, Some(&payer), None),
        call(&server, Method::POST, &path, Some(&payer), None)
    );
    assert_eq!((a.0, b.0), (200, 200), "{} {}", a.1, b.1);
    let granted = a.1["granted"].as_i64().unwrap_or(0) + b.1["granted"].as_i64().unwrap_or(0);
    assert!(granted > 0, "{} {}", a.1, b.1);
    assert!(
        a.1["granted"] == 0 || b.1["granted"] == 0,
        "the second run grants nothing again: {} {}",
        a.1,
        b.1
    );
    let (rows, spent): (i64, i64) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(amount_yuan), 0) AS BIGINT) FROM svc_grants WHERE policy_code = $1")
        .bind(&policy.code).fetch_one(server.identity.db.pool()).await.expect("ledger");
    assert_eq!(rows, granted);
    assert!(spent <= policy.budget_yuan);
    let (budget_spent,): (i64,) =
        sqlx::query_as("SELECT spent_yuan FROM svc_policy_budgets WHERE policy_code = $1")
            .bind(&policy.code)
            .fetch_one(server.identity.db.pool())
            .await
            .expect("budget");
    assert_eq!(budget_spent, spent);

    // What the enterprises see: a grant never applied for, with the reasons; a refusal, why.
    let (status, mine) = call(
        &server,
        Method::GET,
        "/api/v1/services/policies/mine",
        Some(&lucky),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let standing = mine
        .as_array()
        .expect("standings")
        .iter()
        .find(|s| s["policy_code"] == policy.code.as_str())
        .expect("standing")
        .clone();
    if standing["decision"]["eligible"] == true && standing["grant"].is_object() {
        assert_eq!(standing["grant"]["state"], "granted");
        assert!(
            standing["grant"]["because"]
                .as_array()
                .is_some_and(|b| !b.is_empty())
        );
        let sealed: yunnao_identity::seals::SealedDocument =
            serde_json::from_value(standing["grant"]["sealed"].clone()).expect("sealed grant");
        assert_eq!(sealed.seal.department, department);
        assert!(
            yunnao_identity::seals::verify(&server.identity, &sealed)
                .await
                .is_ok()
        );
    } else {
        // Past the budget in credit-code order: the reasons still say eligible.
        assert_eq!(standing["decision"]["eligible"], true, "{standing}");
    }
    let (_, mine) = call(
        &server,
        Method::GET,
        "/api/v1/services/policies/mine",
        Some(&unlucky),
        None,
    )
    .await;
    let standing = mine
        .as_array()
        .expect("standings")
        .iter()
        .find(|s| s["policy_code"] == policy.code.as_str())
        .expect("standing")
        .clone();
    assert_eq!(standing["decision"]["eligible"], false);
    assert!(
        standing["decision"]["because"]
            .as_array()
            .is_some_and(|b| b.iter().any(|c| c[1] == false)),
        "{standing}"
    );
    let appeal_path = format!("/api/v1/services/policies/{}/appeals", policy.code);
    let (status, problem) = call(
        &server,
        Method::POST,
        &appeal_path,
        Some(&unlucky),
        Some(json!({"reason": ""})),
    )
    .await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("reason")));
    let (status, appeal) = call(
        &server,
        Method::POST,
        &appeal_path,
        Some(&unlucky),
        Some(json!({"reason": "我单位去年已达标"})),
    )
    .await;
    assert_eq!(status, 201, "{appeal}");
    let (status, _) = call(
        &server,
        Method::POST,
        &appeal_path,
        Some(&unlucky),
        Some(json!({"reason": "再次申诉"})),
    )
    .await;
    assert_eq!(status, 409);
    let (_, open) = call(
        &server,
        Method::GET,
        "/api/v1/services/appeals",
        Some(&payer),
        None,
    )
    .await;
    assert!(
        open.as_array()
            .expect("appeals")
            .iter()
            .any(|a| a["id"] == appeal["id"])
    );
    let decide = format!(
        "/api/v1/services/appeals/{}/decision",
        appeal["id"].as_str().expect("id")
    );
    let other = server
        .user(&admin, "water.head", "water", "dept_admin")
        .await;
    let (status, _) = call(
        &server,
        Method::POST,
        &decide,
        Some(&other),
        Some(json!({"grant": false, "answer": "不符合"})),
    )
    .await;
    assert_eq!(
        status, 404,
        "another department's appeal does not exist for it"
    );
    let (status, answered) = call(
        &server,
        Method::POST,
        &decide,
        Some(&payer),
        Some(json!({"grant": false, "answer": "经复核，条件不符，维持原结果"})),
    )
    .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["state"], "upheld");
    let (_, messages) = call(
        &server,
        Method::GET,
        "/api/v1/services/messages",
        Some(&unlucky),
        None,
    )
    .await;
    assert!(
        messages
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["kind"] == "appeal")
    );
    server.cleanup().await;
}

backend_tests!(policies_pay_without_application);
