//! Plan supervision through the real server: the plan is public, targets are bound live or
//! reported by a responsible department under its e-seal, a tampered report is not believed,
//! refusals write nothing.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{TestServer, expect_problem, page, set_cookie, target_row};
use yunnao_store::backend_tests;
use yunnao_store::testing::TestBackend;

fn today_cst() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m-%d")
        .to_string()
}

fn target<'a>(targets: &'a Value, id: &str) -> &'a Value {
    targets
        .as_array()
        .and_then(|all| all.iter().find(|t| t["id"] == id))
        .unwrap_or_else(|| panic!("target {id} in {targets}"))
}

async fn targets(server: &TestServer, token: &str) -> Value {
    let response = server
        .request(Method::GET, "/api/v1/plan/targets", Some(token), None)
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

async fn report_count(server: &TestServer) -> i64 {
    yunnao_store::sqlx::query_scalar("SELECT COUNT(*) FROM plan_reports")
        .fetch_one(server.identity.db.pool())
        .await
        .expect("count")
}

async fn departments_report_progress_under_their_seal(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    // The plan itself is a published document: no token needed, Chinese in Simplified.
    let plan = server
        .request(Method::GET, "/api/v1/plan", None, None)
        .await;
    assert_eq!(plan.status(), 200);
    let plan: Value = plan.json().await.expect("json");
    assert_eq!(plan["title"], "数字青岛2022年行动方案");
    let items: usize = plan["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .flat_map(|p| p["sections"].as_array().cloned().unwrap_or_default())
        .map(|s| s["items"].as_array().map(Vec::len).unwrap_or(0))
        .sum();
    assert_eq!(items, 46);
    let anonymous = server
        .request(Method::GET, "/api/v1/plan/targets", None, None)
        .await;
    expect_problem(anonymous, 401, "unauthorized").await;

    let admin = server.admin().await;
    let all = targets(&server, &admin).await;
    assert_eq!(all.as_array().map(Vec::len), Some(47));
    let live: Vec<&str> = all
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| !t["measured_by"].is_null())
        .map(|t| t["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        live,
        [
            "3.1", "5.2", "6.1", "7.1", "11.1", "16.1", "36.1", "39.1", "40.1"
        ]
    );
    // 一码通城: no scan yet, so no scenario is live.
    assert_eq!(target(&all, "7.1")["current"], 0.0);
    // 可网办率 is the catalogue's: 40 of its 42 services are handled fully online.
    assert_eq!(target(&all, "6.1")["current"], 95.2);
    assert_eq!(target(&all, "11.1")["status"], "met");
    assert_eq!(target(&all, "11.1")["current"], 100.0);
    let schools = target(&all, "12.2");
    assert_eq!(schools["status"], "awaiting");
    assert_eq!(schools["responsible_departments"], json!(["education"]));
    assert_eq!(schools["metric_zh"], "48个人工智能教育示范校");

    // A responsible department reports; the server seals it with the department's key.
    let education = server
        .user(&admin, "edu.operator", "education", "operator")
        .await;
    let submitted = server
        .request(
            Method::POST,
            "/api/v1/plan/targets/12.2/reports",
            Some(&education),
            Some(json!({"value": 30, "as_of": today_cst(), "evidence": "市教育局 2022 年第 3 季度报告"})),
        )
        .await;
    assert_eq!(submitted.status(), 201);
    let report: Value = submitted.json().await.expect("json");
    assert_eq!(report["seal_verified"], true);
    assert_eq!(report["department"], "education");
    assert_eq!(report["sealed"]["seal"]["algorithm"], "SM2-with-SM3");
    assert_eq!(report["sealed"]["document"]["value"], 30.0);
    assert_eq!(report["sealed"]["document"]["target"], "12.2");
    // Anyone can check the seal with the department's published key.
    let check = server
        .request(
            Method::POST,
            "/api/v1/seals/verify",
            None,
            Some(report["sealed"].clone()),
        )
        .await;
    assert_eq!(check.status(), 200);
    assert_eq!(check.json::<Value>().await.expect("json")["valid"], true);

    let all = targets(&server, &admin).await;
    let schools = target(&all, "12.2");
    assert_eq!(schools["current"], 30.0);
    assert_eq!(schools["progress_pct"], 62.5);
    assert_eq!(schools["report"]["id"], report["id"]);
    assert!(
        ["on_track", "at_risk", "behind"].contains(&schools["status"].as_str().unwrap_or("")),
        "{schools}"
    );

    // Refusals write nothing.
    let water = server
        .user(&admin, "water.operator", "water", "operator")
        .await;
    let cases = [
        (
            &water,
            "12.2",
            json!({"value": 40, "as_of": today_cst(), "evidence": "x"}),
            403,
            "forbidden",
        ),
        (
            &education,
            "99.1",
            json!({"value": 40, "as_of": today_cst(), "evidence": "x"}),
            404,
            "not-found",
        ),
        (
            &education,
            "12.2",
            json!({"value": 40, "as_of": "2022-13-01", "evidence": "x"}),
            422,
            "validation",
        ),
        (
            &education,
            "12.2",
            json!({"value": 40, "as_of": "2999-01-01", "evidence": "x"}),
            422,
            "validation",
        ),
        (
            &education,
            "12.2",
            json!({"value": 40, "as_of": "2021-12-31", "evidence": "x"}),
            422,
            "validation",
        ),
        (
            &education,
            "12.2",
            json!({"value": 40, "as_of": today_cst(), "evidence": "  "}),
            422,
            "validation",
        ),
        (
            &education,
            "12.2",
            json!({"value": "forty", "as_of": today_cst(), "evidence": "x"}),
            400,
            "bad-request",
        ),
        (
            &education,
            "12.2",
            json!({"value": 40, "as_of": today_cst(), "evidence": "x", "seal": "mine"}),
            400,
            "bad-request",
        ),
    ];
    for (token, id, body, status, slug) in cases {
        let response = server
            .request(
                Method::POST,
                &format!("/api/v1/plan/targets/{id}/reports"),
                Some(token),
                Some(body.clone()),
            )
            .await;
        let problem = expect_problem(response, status, slug).await;
        assert!(problem["detail"].is_string(), "{body}: {problem}");
    }
    assert_eq!(report_count(&server).await, 1);

    // A row changed behind the platform's back no longer verifies and is not believed.
    yunnao_store::sqlx::query("UPDATE plan_reports SET value = 48")
        .execute(server.identity.db.pool())
        .await
        .expect("tamper");
    let history = server
        .request(
            Method::GET,
            "/api/v1/plan/targets/12.2/reports",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(history.status(), 200);
    let history: Value = history.json().await.expect("json");
    assert_eq!(history[0]["seal_verified"], false, "{history}");
    assert!(history[0]["seal_problem"].is_string());
    let all = targets(&server, &admin).await;
    assert_eq!(target(&all, "12.2")["status"], "awaiting");
    assert_eq!(target(&all, "12.2")["current"], Value::Null);

    // The plan page shows a verified report with its seal and offers the form to the
    // responsible department only.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let signed = browser
        .post(server.url("/ui/sign-in"))
        .form(&[("username", "edu.operator"), ("password", "password-123")])
        .send()
        .await
        .expect("sent");
    let edu_cookie = set_cookie(&signed);
    let html = page(&browser, &server.url("/ui/plan"), &edu_cookie).await;
    assert!(html.contains("action=\"/ui/plan/12.3/report\""), "{html}");
    assert!(!html.contains("action=\"/ui/plan/13.1/report\""));
    let posted = browser
        .post(server.url("/ui/plan/12.3/report"))
        .header("cookie", &edu_cookie)
        .form(&[
            ("value", "120"),
            ("as_of", &today_cst()),
            ("evidence", "实验室名单"),
        ])
        .send()
        .await
        .expect("sent");
    assert_eq!(posted.status(), 303);
    let refused = browser
        .post(server.url("/ui/plan/12.3/report"))
        .header("cookie", &edu_cookie)
        .form(&[
            ("value", "many"),
            ("as_of", &today_cst()),
            ("evidence", "x"),
        ])
        .send()
        .await
        .expect("sent");
    // A refusal on the page is a Chinese page with the status kept and a way back.
    assert_eq!(refused.status(), 422);
    let refusal = refused.text().await.expect("html");
    assert!(
        refusal.contains("填写的内容有误") && refusal.contains("href=\"/ui/plan\""),
        "{refusal}"
    );
    let html = page(&browser, &server.url("/ui/plan"), &edu_cookie).await;
    let row = target_row(&html, "12.3");
    assert!(
        row.contains("电子印章已验证") && row.contains("市教育局") && row.contains("120"),
        "{row}"
    );
    assert_eq!(report_count(&server).await, 2);
    server.cleanup().await;
}

backend_tests!(departments_report_progress_under_their_seal);
