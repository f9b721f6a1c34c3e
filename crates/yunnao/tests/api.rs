//! The HTTP API end to end, on every backend: a real server on a free port.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{TestServer, expect_problem};
use yunnao_store::backend_tests;
use yunnao_store::testing::TestBackend;

async fn health_is_public_everything_else_needs_a_credential(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let health = server.request(Method::GET, "/health", None, None).await;
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    let ready: Value = server
        .request(Method::GET, "/ready", None, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready");

    for (method, path) in [
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/departments"),
        (Method::GET, "/api/v1/auth/me"),
        (Method::GET, "/api/v1/audit"),
        (Method::GET, "/metrics"),
    ] {
        let response = server.request(method, path, None, None).await;
        expect_problem(response, 401, "unauthorized").await;
    }
    let forged = server
        .request(
            Method::GET,
            "/api/v1/auth/me",
            Some("yn1.eyJqdGkiOiJ4In0.AAAA"),
            None,
        )
        .await;
    expect_problem(forged, 401, "unauthorized").await;
    server.cleanup().await;
}

async fn tokens_are_signed_and_revocable(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let token = server.admin().await;
    let me: Value = server
        .request(Method::GET, "/api/v1/auth/me", Some(&token), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["name"], "admin");
    assert_eq!(me["roles"], json!(["platform_admin"]));

    // Flip one character of the payload: the SM2 signature no longer matches.
    let mut tampered: Vec<char> = token.chars().collect();
    tampered[10] = if tampered[10] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    expect_problem(
        server
            .request(Method::GET, "/api/v1/auth/me", Some(&tampered), None)
            .await,
        401,
        "unauthorized",
    )
    .await;

    // The token verifies offline with the published platform key.
    let key: Value = server
        .request(Method::GET, "/api/v1/auth/public-key", None, None)
        .await
        .json()
        .await
        .expect("json");
    let public =
        yunnao_gm::Sm2PublicKey::from_hex(key["public_key"].as_str().expect("hex")).expect("key");
    let (signed, signature) = token.rsplit_once('.').expect("three parts");
    use base64::Engine;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .expect("b64");
    public
        .verify(
            signed.as_bytes(),
            &yunnao_gm::Sm2Signature::from_slice(&signature).expect("sig"),
        )
        .expect("token signature verifies offline");

    let wrong = server
        .request(
            Method::POST,
            "/api/v1/auth/sign-in",
            None,
            Some(json!({"username": "admin", "password": "nope-nope"})),
        )
        .await;
    expect_problem(wrong, 401, "unauthorized").await;

    assert_eq!(
        server
            .request(Method::POST, "/api/v1/auth/sign-out", Some(&token), None)
            .await
            .status(),
        204
    );
    let after = server
        .request(Method::GET, "/api/v1/auth/me", Some(&token), None)
        .await;
    let body = expect_problem(after, 401, "unauthorized").await;
    assert!(body["detail"].as_str().unwrap_or("").contains("signed out"));
    server.cleanup().await;
}

async fn department_admins_manage_only_their_department(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let water_admin = server
        .user(&admin, "water.admin", "water", "dept_admin")
        .await;
    let mut events = server
        .identity
        .bus
        .subscribe(
            "identity.user.created.*",
            yunnao_bus::SubscribeOptions::default(),
        )
        .expect("subscribe");

    let own = server
        .request(
            Method::POST,
            "/api/v1/users",
            Some(&water_admin),
            Some(json!({
            "username": "water.operator", "display_name": "水务值班员", "password": "password-123",
            "department": "water", "roles": ["operator"]})),
        )
        .await;
    assert_eq!(own.status(), 201);
    let created: Value = own.json().await.expect("json");
    assert_eq!(created["department"], "water");
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.next_event())
        .await
        .expect("event in time")
        .expect("event");
    assert_eq!(event.subject, "identity.user.created.water");
    let event: yunnao_identity::UserCreated = event.decode().expect("typed event");
    assert_eq!(event.username, "water.operator");

    let other = server
        .request(
            Method::POST,
            "/api/v1/users",
            Some(&water_admin),
            Some(json!({
            "username": "police.x", "display_name": "x", "password": "password-123",
            "department": "police", "roles": ["operator"]})),
        )
        .await;
    expect_problem(other, 403, "forbidden").await;

    let escalate = server
        .request(
            Method::POST,
            "/api/v1/users",
            Some(&water_admin),
            Some(json!({
            "username": "water.boss", "display_name": "x", "password": "password-123",
            "department": "water", "roles": ["platform_admin"]})),
        )
        .await;
    expect_problem(escalate, 403, "forbidden").await;

    let duplicate = server
        .request(
            Method::POST,
            "/api/v1/users",
            Some(&water_admin),
            Some(json!({
            "username": "water.operator", "display_name": "again", "password": "password-123",
            "department": "water", "roles": ["operator"]})),
        )
        .await;
    expect_problem(duplicate, 409, "conflict").await;

    let invalid = server
        .request(
            Method::POST,
            "/api/v1/users",
            Some(&water_admin),
            Some(json!({
            "username": "Bad Name", "display_name": "x", "password": "short",
            "department": "water", "roles": ["operator"]})),
        )
        .await;
    expect_problem(invalid, 422, "validation").await;

    let listed: Vec<Value> = server
        .request(Method::GET, "/api/v1/users", Some(&water_admin), None)
        .await
        .json()
        .await
        .expect("json");
    assert!(listed.iter().all(|u| u["department"] == "water"));
    assert_eq!(listed.len(), 2);
    expect_problem(
        server
            .request(
                Method::GET,
                "/api/v1/users?department=police",
                Some(&water_admin),
                None,
            )
            .await,
        403,
        "forbidden",
    )
    .await;

    // An operator manages nobody, and cannot see the admin's account.
    let operator = server.sign_in("water.operator", "password-123").await;
    expect_problem(
        server
            .request(Method::GET, "/api/v1/users", Some(&operator), None)
            .await,
        403,
        "forbidden",
    )
    .await;
    let admin_id = server
        .request(Method::GET, "/api/v1/auth/me", Some(&admin), None)
        .await
        .json::<Value>()
        .await
        .expect("json")["id"]
        .clone();
    expect_problem(
        server
            .request(
                Method::GET,
                &format!("/api/v1/users/{}", admin_id.as_str().expect("id")),
                Some(&operator),
                None,
            )
            .await,
        404,
        "not-found",
    )
    .await;

    // Disabling a user ends their sessions.
    let operator_id = created["id"].as_str().expect("id");
    let patched = server
        .request(
            Method::PATCH,
            &format!("/api/v1/users/{operator_id}"),
            Some(&water_admin),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(patched.status(), 200);
    expect_problem(
        server
            .request(Method::GET, "/api/v1/auth/me", Some(&operator), None)
            .await,
        401,
        "unauthorized",
    )
    .await;

    let departments: Vec<Value> = server
        .request(Method::GET, "/api/v1/departments", Some(&water_admin), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(departments.len(), 50);
    assert!(
        departments
            .iter()
            .any(|d| d["code"] == "water" && d["name_zh"] == "市水务管理局")
    );
    server.cleanup().await;
}

async fn malformed_requests_get_problems_and_the_server_keeps_serving(backend: TestBackend) {
    let server = TestServer::start_with(backend, |c| c.body_limit_bytes = 16 * 1024).await;
    let token = server.admin().await;
    let post_raw = |body: Vec<u8>, content_type: Option<&'static str>| {
        let mut request = server
            .client
            .post(server.url("/api/v1/users"))
            .bearer_auth(&token)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let json_type = Some("application/json");
    let cases: Vec<(Vec<u8>, Option<&'static str>, u16, &str)> = vec![
        (b"{\"username\": ".to_vec(), json_type, 400, "invalid-json"),
        (b"not json at all".to_vec(), json_type, 400, "invalid-json"),
        (vec![0xff, 0xfe, 0x00], json_type, 400, "invalid-json"),
        (br#"{"username": 5, "display_name": "x", "password": "password-1", "department": "water", "roles": ["operator"]}"#.to_vec(), json_type, 400, "bad-request"),
        (br#"{"username": "abc"}"#.to_vec(), json_type, 400, "bad-request"),
        (br#"{"username": "abc", "display_name": "x", "password": "password-1", "department": "water", "roles": ["mayor"]}"#.to_vec(), json_type, 400, "bad-request"),
        (br#"[1, 2, 3]"#.to_vec(), json_type, 400, "bad-request"),
        (br#"{"username": "abc"}"#.to_vec(), None, 415, "unsupported-media-type"),
        (br#"{"username": "abc"}"#.to_vec(), Some("text/plain"), 415, "unsupported-media-type"),
        (format!("{{\"username\": \"{}\"}}", "x".repeat(20_000)).into_bytes(), json_type, 413, "payload-too-large"),
    ];
    for (body, content_type, status, slug) in cases {
        let response = post_raw(body, content_type).await.expect("sent");
        expect_problem(response, status, slug).await;
    }
    expect_problem(
        server
            .request(Method::GET, "/no/such/route", Some(&token), None)
            .await,
        404,
        "no-route",
    )
    .await;
    expect_problem(
        server
            .request(Method::DELETE, "/api/v1/departments", Some(&token), None)
            .await,
        405,
        "method-not-allowed",
    )
    .await;
    expect_problem(
        server
            .request(Method::GET, "/api/v1/audit?limit=abc", Some(&token), None)
            .await,
        400,
        "bad-request",
    )
    .await;
    expect_problem(
        server
            .request(Method::GET, "/api/v1/departments/nope", Some(&token), None)
            .await,
        404,
        "not-found",
    )
    .await;

    // Nothing half-written, and still serving.
    let users: Vec<Value> = server
        .request(Method::GET, "/api/v1/users", Some(&token), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(users.len(), 1);
    assert_eq!(
        server
            .request(Method::GET, "/health", None, None)
            .await
            .status(),
        200
    );
    let problem_doc: Value = server
        .request(Method::GET, "/problems/payload-too-large", None, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(problem_doc["status"], 413);
    server.cleanup().await;
}

async fn api_clients_have_scoped_revocable_keys(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let created = server
        .request(
            Method::POST,
            "/api/v1/api-clients",
            Some(&admin),
            Some(json!({
            "name": "Prometheus", "department": "bigdata", "scopes": ["metrics:read"]})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    let key = created["api_key"].as_str().expect("key").to_owned();

    let metrics = server
        .client
        .get(server.url("/metrics"))
        .header("x-api-key", &key)
        .send()
        .await
        .expect("sent");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("yunnao_http_requests_total"), "{text}");

    // A key without the scope is refused; a wrong secret is not a key at all.
    let other: Value = server
        .request(
            Method::POST,
            "/api/v1/api-clients",
            Some(&admin),
            Some(json!({
            "name": "Parking app", "department": "transport", "scopes": ["parking:read"]})),
        )
        .await
        .json()
        .await
        .expect("json");
    let other_key = other["api_key"].as_str().expect("key");
    expect_problem(
        server
            .request(Method::GET, "/metrics", Some(other_key), None)
            .await,
        403,
        "forbidden",
    )
    .await;
    let last = if key.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &key[..key.len() - 1]);
    expect_problem(
        server
            .request(Method::GET, "/metrics", Some(&forged), None)
            .await,
        401,
        "unauthorized",
    )
    .await;
    expect_problem(
        server
            .request(
                Method::POST,
                "/api/v1/api-clients",
                Some(&admin),
                Some(json!({
            "name": "x", "department": "bigdata", "scopes": ["Not A Scope"]})),
            )
            .await,
        422,
        "validation",
    )
    .await;

    let id = created["client"]["id"].as_str().expect("id");
    assert_eq!(
        server
            .request(
                Method::DELETE,
                &format!("/api/v1/api-clients/{id}"),
                Some(&admin),
                None
            )
            .await
            .status(),
        204
    );
    expect_problem(
        server
            .request(Method::GET, "/metrics", Some(&key), None)
            .await,
        401,
        "unauthorized",
    )
    .await;
    server.cleanup().await;
}

async fn seals_verify_offline_and_detect_changes(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let water_admin = server
        .user(&admin, "water.admin", "water", "dept_admin")
        .await;
    let document = json!({"report": "水库水位月报", "month": "2026-11", "values": [4.2, 4.5], "z": {"b": 1, "a": 2}});
    let sealed = server
        .request(
            Method::POST,
            "/api/v1/seals/water/seal",
            Some(&water_admin),
            Some(json!({"document": document})),
        )
        .await;
    assert_eq!(sealed.status(), 201);
    let sealed: Value = sealed.json().await.expect("json");
    assert_eq!(sealed["seal"]["department"], "water");

    // Another department's admin cannot use the water bureau's seal; nor can the platform admin.
    let police_admin = server
        .user(&admin, "police.admin", "police", "dept_admin")
        .await;
    for token in [&police_admin, &admin] {
        expect_problem(
            server
                .request(
                    Method::POST,
                    "/api/v1/seals/water/seal",
                    Some(token),
                    Some(json!({"document": {}})),
                )
                .await,
            403,
            "forbidden",
        )
        .await;
    }

    let verdict: Value = server
        .request(
            Method::POST,
            "/api/v1/seals/verify",
            None,
            Some(sealed.clone()),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(verdict["valid"], true, "{verdict}");
    let mut changed = sealed.clone();
    changed["document"]["values"][1] = json!(9.9);
    let verdict: Value = server
        .request(
            Method::POST,
            "/api/v1/seals/verify",
            None,
            Some(changed.clone()),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(verdict["valid"], false);

    // Offline: the published key and the CLI, no server involved.
    let key: Value = server
        .request(Method::GET, "/api/v1/seals/water", None, None)
        .await
        .json()
        .await
        .expect("json");
    let public_key = key["public_key"].as_str().expect("hex");
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.json");
    let bad = dir.path().join("bad.json");
    std::fs::write(&good, sealed.to_string()).expect("write");
    std::fs::write(&bad, changed.to_string()).expect("write");
    let run = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_yunnao"))
            .args(["seal", "verify", "--public-key", public_key])
            .arg(file)
            .output()
            .expect("cli runs")
    };
    let ok = run(&good);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let failed = run(&bad);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("changed after sealing"));
    server.cleanup().await;
}

async fn every_documented_route_is_served_and_every_route_documented(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let doc: Value = server
        .request(Method::GET, "/openapi.json", None, None)
        .await
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{code}", "water")
            .replace("{department}", "water")
            .replace("{slug}", "internal")
            .replace("{id}", "none");
        for method in item.as_object().expect("path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let response = server.request(method.clone(), &concrete, None, None).await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert!(
                body["type"] != "/problems/no-route"
                    && body["type"] != "/problems/method-not-allowed",
                "{method} {path} is documented but not served"
            );
            assert!(status < 500, "{method} {path} answered {status}");
            operations += 1;
        }
    }
    assert!(operations >= 20, "only {operations} operations documented");
    server.cleanup().await;
}

/// A session is checked at most once a second per node, yet a change on this node applies to
/// the very next request: roles, then a new password (which ends the session).
async fn session_changes_apply_to_the_next_request(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let operator = server
        .user(&admin, "roads.op", "transport", "operator")
        .await;
    let me = |token: String| {
        let server = &server;
        async move {
            server
                .request(Method::GET, "/api/v1/auth/me", Some(&token), None)
                .await
        }
    };
    let before: Value = me(operator.clone()).await.json().await.expect("json");
    assert_eq!(before["roles"], json!(["operator"]), "{before}");
    let id = before["id"].as_str().expect("id").to_owned();
    let patched = server
        .request(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(&admin),
            Some(json!({"roles": ["grid_worker"]})),
        )
        .await;
    assert_eq!(patched.status(), 200);
    let after: Value = me(operator.clone()).await.json().await.expect("json");
    assert_eq!(after["roles"], json!(["grid_worker"]), "{after}");
    let patched = server
        .request(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(&admin),
            Some(json!({"password": "another-password-456"})),
        )
        .await;
    assert_eq!(patched.status(), 200);
    expect_problem(me(operator.clone()).await, 401, "unauthorized").await;

    // Changing one's own password ends one's other sessions, not the one changing it.
    let first = server.sign_in("roads.op", "another-password-456").await;
    let second = server.sign_in("roads.op", "another-password-456").await;
    let changed = server
        .request(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(&second),
            Some(json!({"password": "third-password-789"})),
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(me(second.clone()).await.status(), 200);
    expect_problem(me(first).await, 401, "unauthorized").await;

    // No admin takes away their own administration or disables themselves.
    let me_admin: Value = me(admin.clone()).await.json().await.expect("json");
    let admin_id = me_admin["id"].as_str().expect("id").to_owned();
    for patch in [json!({"roles": ["enterprise"]}), json!({"disabled": true})] {
        expect_problem(
            server
                .request(
                    Method::PATCH,
                    &format!("/api/v1/users/{admin_id}"),
                    Some(&admin),
                    Some(patch),
                )
                .await,
            409,
            "conflict",
        )
        .await;
    }
    let still: Value = me(admin.clone()).await.json().await.expect("json");
    assert_eq!(still["roles"], json!(["platform_admin"]), "{still}");
    server.cleanup().await;
}

backend_tests!(
    session_changes_apply_to_the_next_request,
    health_is_public_everything_else_needs_a_credential,
    tokens_are_signed_and_revocable,
    department_admins_manage_only_their_department,
    malformed_requests_get_problems_and_the_server_keeps_serving,
    api_clients_have_scoped_revocable_keys,
    seals_verify_offline_and_detect_changes,
    every_documented_route_is_served_and_every_route_documented,
);

/// Routes can only be added through utoipa-axum's `routes!`, which documents them by
/// construction; this fails when someone wires a handler past it.
#[test]
fn no_route_bypasses_the_openapi_router() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut offenders = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                for (number, line) in text.lines().enumerate() {
                    let code = line.trim_start();
                    if code.starts_with("//") {
                        continue;
                    }
                    if code.contains(".route(\"")
                        || code.contains(".route_service(")
                        || code.contains(".nest_service(")
                    {
                        offenders.push(format!("{}:{}", path.display(), number + 1));
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "routes outside OpenApiRouter::routes!: {offenders:?}"
    );
}
