//! The web UI through HTTP as a browser uses it: sign-in with a cookie, the overview page with
//! the real map, the live stream, the language switch.

mod support;

use reqwest::Method;
use std::time::Duration;
use support::{ADMIN_PASSWORD, TestServer, expect_problem, page, set_cookie, target_row};
use yunnao_store::backend_tests;
use yunnao_store::testing::TestBackend;

async fn the_overview_shows_the_city_live(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // Not signed in: to the sign-in page, which is Chinese by default.
    let home = browser.get(server.url("/")).send().await.expect("sent");
    assert_eq!(home.status(), 303);
    assert_eq!(home.headers()["location"], "/ui/sign-in");
    let sign_in = browser
        .get(server.url("/ui/sign-in"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("html");
    assert!(
        sign_in.contains("lang=\"zh-CN\"") && sign_in.contains("登录"),
        "{sign_in}"
    );
    let stream = browser
        .get(server.url("/ui/stream"))
        .send()
        .await
        .expect("sent");
    expect_problem(stream, 401, "unauthorized").await;

    let wrong = browser
        .post(server.url("/ui/sign-in"))
        .form(&[("username", "admin"), ("password", "nope")])
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong
            .text()
            .await
            .expect("html")
            .contains("用户名或密码错误")
    );
    let signed = browser
        .post(server.url("/ui/sign-in"))
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .expect("sent");
    assert_eq!(signed.status(), 303);
    let header = signed.headers()["set-cookie"].to_str().expect("cookie");
    assert!(header.contains("HttpOnly") && header.contains("SameSite=Strict"));
    let cookie = set_cookie(&signed);

    let started = std::time::Instant::now();
    let overview = browser
        .get(server.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    let served_in = started.elapsed();
    assert_eq!(overview.status(), 200);
    let html = overview.text().await.expect("html");
    assert_eq!(
        html.matches("class=\"district\"").count(),
        10,
        "the 10 districts"
    );
    assert!(html.contains("市南区") && html.contains("平度市"));
    assert_eq!(
        html.matches("class=\"metro\"").count(),
        8,
        "the 8 metro lines"
    );
    assert!(html.contains("一屏总览"));
    assert!(html.contains("泊位占用率") && html.contains("id=\"daily\""));
    assert!(served_in < Duration::from_secs(2));
    for asset in ["/ui/assets/app.css", "/ui/assets/app.js"] {
        assert_eq!(
            browser
                .get(server.url(asset))
                .send()
                .await
                .expect("sent")
                .status(),
            200
        );
    }

    // The live stream sends snapshots with the counters.
    let mut live = browser
        .get(server.url("/ui/stream"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(live.status(), 200);
    assert!(
        live.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let mut text = String::new();
    while !text.contains("\"grid_coverage_pct\":100") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), live.chunk())
            .await
            .expect("a snapshot within 10 s")
            .expect("stream")
            .expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: snapshot"));
    let snapshot: serde_json::Value = server
        .request(
            Method::GET,
            "/ui/snapshot",
            Some(&server.admin().await),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(snapshot["districts"].as_array().map(Vec::len), Some(10));

    // The workbench: the queue, a case with its timeline, a step by form.
    let token = server.admin().await;
    let created: serde_json::Value = server
        .request(
            Method::POST,
            "/api/v1/governance/incidents",
            Some(&token),
            Some(
                serde_json::json!({"service_code": "E0102", "description": "五四广场垃圾",
                                    "location": {"lon": 120.3845, "lat": 36.062}}),
            ),
        )
        .await
        .json()
        .await
        .expect("json");
    let id = created["incident"]["id"].as_str().expect("id").to_owned();
    let grid_code = created["incident"]["grid"]["grid_code"]
        .as_str()
        .expect("grid")
        .to_owned();

    // Opening 市南区 on the map: every unit grid of the district, the case's grid among
    // those with open cases, and the grid named by the drawing is the case's grid.
    let drawing: serde_json::Value = browser
        .get(server.url("/ui/map/districts/370202"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(drawing["name"], "市南区");
    let grids = drawing["grids"].as_u64().expect("grids");
    assert!(grids > 20, "{grids} grids at the test resolution");
    let centres = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(drawing["centres"].as_str().expect("centres"))
            .expect("base64")
    };
    assert_eq!(centres.len() as u64, grids * 4);
    assert_eq!(
        drawing["open"].as_array().map(Vec::len),
        Some(1),
        "{}",
        drawing["open"]
    );
    let index = drawing["open"][0][0].as_u64().expect("index");
    let community = drawing["communities"]
        .as_array()
        .expect("communities")
        .iter()
        .find(|c| {
            let first = c[2].as_u64().unwrap_or(0);
            index >= first && index < first + c[3].as_u64().unwrap_or(0)
        })
        .expect("the grid's community");
    assert_eq!(
        format!(
            "{}{:04}",
            community[0].as_str().unwrap_or_default(),
            index - community[2].as_u64().unwrap_or(0) + 1
        ),
        grid_code
    );
    let unknown = browser
        .get(server.url("/ui/map/districts/999999"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    expect_problem(unknown, 404, "not-found").await;
    let anonymous = browser
        .get(server.url("/ui/map/districts/370202"))
        .send()
        .await
        .expect("sent");
    expect_problem(anonymous, 401, "unauthorized").await;
    let queue = browser
        .get(server.url("/ui/incidents"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(queue.status(), 200);
    let queue = queue.text().await.expect("html");
    assert!(
        queue.contains(&format!("/ui/incidents/{id}")) && queue.contains("暴露垃圾"),
        "{queue}"
    );
    let step = browser
        .post(server.url(&format!("/ui/incidents/{id}/step")))
        .header("cookie", &cookie)
        .form(&[("action", "accept"), ("comment", "已安排")])
        .send()
        .await
        .expect("sent");
    assert_eq!(step.status(), 303);
    let illegal = browser
        .post(server.url(&format!("/ui/incidents/{id}/step")))
        .header("cookie", &cookie)
        .form(&[("action", "close"), ("comment", "太早了")])
        .send()
        .await
        .expect("sent");
    // A refusal is a Chinese page with the status kept and a way back, never raw JSON.
    assert_eq!(illegal.status(), 409);
    assert!(
        illegal
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html")),
        "{:?}",
        illegal.headers()
    );
    let refusal = illegal.text().await.expect("html");
    assert!(
        refusal.contains("案件状态已变化")
            && refusal.contains(&format!("href=\"/ui/incidents/{id}\"")),
        "{refusal}"
    );
    let anonymous = browser
        .post(server.url(&format!("/ui/incidents/{id}/step")))
        .form(&[("action", "complete"), ("comment", "x")])
        .send()
        .await
        .expect("sent");
    assert_eq!(
        anonymous.status(),
        303,
        "a signed-out step goes to the sign-in page"
    );
    let case = browser
        .get(server.url(&format!("/ui/incidents/{id}")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("html");
    assert!(case.contains("已安排") && case.contains("处置中"), "{case}");
    // Handling: the steps offered are those of the workflow table for this user in this state,
    // in Chinese (the admin is the centre: report done, send back and reassign).
    for offered in ["办结", "退回", "改派"] {
        assert!(case.contains(offered), "{offered} not offered: {case}");
    }
    assert!(
        !case.contains("核查通过") && !case.contains(">complete<"),
        "{case}"
    );

    // Sensing pages: the device list and a device with its chart.
    let device: serde_json::Value = server
        .request(
            Method::POST,
            "/api/v1/devices",
            Some(&token),
            Some(
                serde_json::json!({"id": "rain-ui-1", "name": "崂山雨量站", "profile": "rain-gauge",
                                    "location": {"lon": 120.468, "lat": 36.107}}),
            ),
        )
        .await
        .json()
        .await
        .expect("json");
    let device_token = device["access_token"].as_str().expect("token").to_owned();
    let rule = server
        .request(
            Method::POST,
            "/api/v1/alarm-rules",
            Some(&token),
            Some(serde_json::json!({"name": "暴雨预警", "profile": "rain-gauge", "key": "precipitation",
                                    "kind": "threshold", "operator": "above", "threshold": 30.0,
                                    "consecutive": 2, "severity": "major"})),
        )
        .await;
    assert_eq!(rule.status(), 201);
    for (ago, mm) in [(3_600_000, 2.5), (1_800_000, 7.0)] {
        let sent = server
            .client
            .post(server.url(&format!("/api/v1/{device_token}/telemetry")))
            .json(&serde_json::json!({"ts": yunnao_core::time::now_ms() - ago, "values": {"precipitation": mm}}))
            .send()
            .await
            .expect("sent");
        assert_eq!(sent.status(), 200);
    }
    let devices = page(
        &browser,
        &server.url("/ui/devices?profile=rain-gauge"),
        &cookie,
    )
    .await;
    assert!(
        devices.contains("/ui/devices/rain-ui-1") && devices.contains("崂山雨量站"),
        "{devices}"
    );
    let detail = page(&browser, &server.url("/ui/devices/rain-ui-1"), &cookie).await;
    assert!(
        detail.contains("雨量") && detail.contains("<polyline points=\""),
        "{detail}"
    );
    assert!(
        detail.contains("2.50 – 7.00"),
        "the chart's range: {detail}"
    );
    assert!(
        detail.contains("暴雨预警") && detail.contains("雨量 &gt; 30 mm，连续 2 次"),
        "the device's rules: {detail}"
    );
    // The chart: axes in the unit, a min–max band, the latest reading, a time-range switch.
    assert!(
        detail.contains("class=\"band\"")
            && detail.contains("class=\"latest\"")
            && detail.contains("?range=7d"),
        "the chart's parts: {detail}"
    );
    let week = page(
        &browser,
        &server.url("/ui/devices/rain-ui-1?range=7d"),
        &cookie,
    )
    .await;
    assert!(
        week.contains("<b aria-current=\"true\">7 天</b>") && week.contains("2.50 – 7.00"),
        "{week}"
    );
    let odd = browser
        .get(server.url("/ui/devices/rain-ui-1?range=forever"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(odd.status(), 400);
    let missing = browser
        .get(server.url("/ui/devices/nope"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(missing.status(), 404);
    let missing = missing.text().await.expect("html");
    assert!(
        missing.contains("未找到") && missing.contains("href=\"/ui/devices\""),
        "{missing}"
    );

    // The snapshot's charts: incidents per day for 7 days × 10 districts with today's case.
    let snapshot: serde_json::Value = server
        .request(Method::GET, "/ui/snapshot", Some(&token), None)
        .await
        .json()
        .await
        .expect("json");
    let daily = snapshot["incidents_daily"].as_array().expect("daily");
    assert!(daily.len() >= 70, "{daily:?}");
    // The snapshot refreshes these every 30 s; the API computes them now.
    let daily: serde_json::Value = server
        .request(
            Method::GET,
            "/api/v1/governance/figures/daily?days=7",
            Some(&token),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    let daily = daily.as_array().expect("daily");
    assert_eq!(daily.len(), 70);
    assert!(
        daily
            .iter()
            .any(|d| d["district"] == "370202" && d["reported"].as_i64() >= Some(1)),
        "{daily:?}"
    );
    assert!(snapshot["readings_history"].is_array());
    assert!(snapshot["parking_occupancy_pct"].is_number());

    // Plan supervision: the 47 targets, nine bound live; grid coverage is met.
    let plan = page(&browser, &server.url("/ui/plan"), &cookie).await;
    assert!(plan.contains("data-plan=\"targets\">47<"), "{plan}");
    assert!(plan.contains("data-plan=\"live\">9<"));
    assert!(plan.contains("平台实时: 单元网格面积覆盖率") && plan.contains("物联网终端总数"));
    let coverage_row = target_row(&plan, "11.1");
    assert!(
        coverage_row.contains("status met"),
        "grid coverage 100% is met: {coverage_row}"
    );

    // English by the switch.
    let switched = browser
        .get(server.url("/ui/lang/en"))
        .send()
        .await
        .expect("sent");
    assert_eq!(switched.status(), 303);
    let lang = set_cookie(&switched);
    let english = browser
        .get(server.url("/"))
        .header("cookie", format!("{cookie}; {lang}"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("html");
    assert!(english.contains("City overview") && english.contains("lang=\"en\""));
    let bad = browser
        .get(server.url("/ui/lang/fr"))
        .send()
        .await
        .expect("sent");
    expect_problem(bad, 400, "bad-request").await;

    // Signing out ends the session: the cookie no longer opens the page.
    let out = browser
        .post(server.url("/ui/sign-out"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(out.status(), 303);
    let after = browser
        .get(server.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(after.status(), 303);
    server.cleanup().await;
}

/// Signs in through the UI form; the session cookie.
async fn ui_sign_in(
    server: &TestServer,
    browser: &reqwest::Client,
    user: &str,
    password: &str,
) -> String {
    let signed = browser
        .post(server.url("/ui/sign-in"))
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .expect("sent");
    assert_eq!(signed.status(), 303, "UI sign-in of {user}");
    set_cookie(&signed)
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn get_as(browser: &reqwest::Client, url: &str, cookie: &str) -> reqwest::Response {
    browser
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .expect("sent")
}

async fn post_as(
    browser: &reqwest::Client,
    url: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    browser
        .post(url)
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .expect("sent")
}

/// A tiny PNG: the signature is what the server checks.
fn png() -> Vec<u8> {
    [b"\x89PNG\r\n\x1a\n".as_slice(), &[0u8; 64]].concat()
}

/// The operators' pages: an alarm in words, acknowledged and cleared with comments and followed
/// to its case; notices of it live; the workbench's filters, sort and exports; search; a
/// grid worker's patrol report and check with photos; a resident's page and 随手拍.
async fn operators_and_field_pages(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let token = server.admin().await;
    let admin = ui_sign_in(&server, &browser, "admin", ADMIN_PASSWORD).await;

    // A gauge, a critical rule, and the notices stream open before the alarm.
    let device: serde_json::Value = server
        .request(
            Method::POST,
            "/api/v1/devices",
            Some(&token),
            Some(serde_json::json!({"id": "rain-ops-1", "name": "中山公园雨量站", "profile": "rain-gauge",
                                    "location": {"lon": 120.3845, "lat": 36.062}})),
        )
        .await
        .json()
        .await
        .expect("json");
    let device_token = device["access_token"].as_str().expect("token").to_owned();
    let rule = server
        .request(
            Method::POST,
            "/api/v1/alarm-rules",
            Some(&token),
            Some(serde_json::json!({"name": "特大暴雨", "profile": "rain-gauge", "key": "precipitation",
                                    "kind": "threshold", "operator": "above", "threshold": 30.0,
                                    "severity": "critical", "auto_clear": false})),
        )
        .await;
    assert_eq!(rule.status(), 201);
    let mut live = get_as(&browser, &server.url("/ui/stream?only=notices"), &admin).await;
    assert_eq!(live.status(), 200);
    let sent = server
        .client
        .post(server.url(&format!("/api/v1/{device_token}/telemetry")))
        .json(&serde_json::json!({"ts": yunnao_core::time::now_ms(), "values": {"precipitation": 45.5}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(sent.status(), 200);
    let mut text = String::new();
    while !text.contains("event: notice") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), live.chunk())
            .await
            .expect("a notice within 10 s")
            .expect("stream")
            .expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("严重告警 中山公园雨量站"), "{text}");
    assert!(!text.contains("event: snapshot"), "only notices: {text}");
    drop(live);
    let notices: serde_json::Value = get_as(&browser, &server.url("/ui/notices"), &admin)
        .await
        .json()
        .await
        .expect("json");
    assert!(
        notices
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["kind"] == "alarm-critical")),
        "{notices}"
    );

    // The alarm page: the alarm in words, its device and (critical alarms become cases) its case.
    let mut case_id = String::new();
    for _ in 0..100 {
        let cases: serde_json::Value = server
            .request(
                Method::GET,
                "/api/v1/governance/incidents?source=alarm",
                Some(&token),
                None,
            )
            .await
            .json()
            .await
            .expect("json");
        if let Some(id) = cases["items"][0]["id"].as_str() {
            case_id = id.to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!case_id.is_empty(), "the critical alarm became a case");
    let alarms = page(
        &browser,
        &server.url("/ui/alarms?severity=critical"),
        &admin,
    )
    .await;
    assert!(
        alarms.contains("特大暴雨：雨量 45.5 mm（&gt; 30 mm）")
            && alarms.contains("href=\"/ui/devices/rain-ops-1\"")
            && alarms.contains(&format!("href=\"/ui/incidents/{case_id}\""))
            && alarms.contains("市南区")
            && alarms.contains("未确认"),
        "{alarms}"
    );
    let minor = page(&browser, &server.url("/ui/alarms?severity=minor"), &admin).await;
    assert!(!minor.contains("rain-ops-1"), "{minor}");
    let elsewhere = page(&browser, &server.url("/ui/alarms?district=370212"), &admin).await;
    assert!(
        !elsewhere.contains("rain-ops-1"),
        "崂山区 has none: {elsewhere}"
    );
    let listed: serde_json::Value = server
        .request(
            Method::GET,
            "/api/v1/alarms?severity=critical&status=active",
            Some(&token),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    let alarm_id = listed[0]["id"].as_str().expect("alarm").to_owned();
    let ack = post_as(
        &browser,
        &server.url(&format!("/ui/alarms/{alarm_id}/ack")),
        &admin,
        &[
            ("comment", "已通知排水所"),
            ("back", "/ui/alarms?status=all"),
        ],
    )
    .await;
    assert_eq!(ack.status(), 303);
    assert_eq!(location(&ack), "/ui/alarms?status=all");
    let again = post_as(
        &browser,
        &server.url(&format!("/ui/alarms/{alarm_id}/ack")),
        &admin,
        &[("comment", "再次确认")],
    )
    .await;
    assert_eq!(again.status(), 409);
    assert!(
        again
            .text()
            .await
            .expect("html")
            .contains("href=\"/ui/alarms\"")
    );
    let empty = post_as(
        &browser,
        &server.url(&format!("/ui/alarms/{alarm_id}/clear")),
        &admin,
        &[("comment", " ")],
    )
    .await;
    assert_eq!(empty.status(), 422, "a comment is needed");
    let other = server.user(&token, "water.ops", "water", "operator").await;
    let _ = other;
    let water = ui_sign_in(&server, &browser, "water.ops", "password-123").await;
    let foreign = post_as(
        &browser,
        &server.url(&format!("/ui/alarms/{alarm_id}/clear")),
        &water,
        &[("comment", "不是我们的")],
    )
    .await;
    assert_eq!(
        foreign.status(),
        404,
        "another department's alarm is not found"
    );
    let cleared = post_as(
        &browser,
        &server.url(&format!("/ui/alarms/{alarm_id}/clear")),
        &admin,
        &[("comment", "雨停，积水已排")],
    )
    .await;
    assert_eq!(cleared.status(), 303);
    let shown: serde_json::Value = server
        .request(
            Method::GET,
            "/api/v1/alarms?status=cleared",
            Some(&token),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shown[0]["acknowledge_comment"], "已通知排水所");
    assert_eq!(shown[0]["clear_comment"], "雨停，积水已排");
    let history = page(&browser, &server.url("/ui/alarms?status=cleared"), &admin).await;
    assert!(
        history.contains("已解除")
            && history.contains("雨停，积水已排")
            && history.contains("已通知排水所"),
        "{history}"
    );
    let csv = get_as(
        &browser,
        &server.url("/ui/alarms/export?status=all&format=csv"),
        &admin,
    )
    .await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/csv")
    );
    let csv = csv.text().await.expect("csv");
    assert!(
        csv.contains("告警内容") && csv.contains(&alarm_id) && csv.contains(&case_id),
        "{csv}"
    );
    let devices = get_as(
        &browser,
        &server.url("/ui/devices/export?profile=rain-gauge&format=csv"),
        &admin,
    )
    .await
    .text()
    .await
    .expect("csv");
    assert!(
        devices.contains("rain-ops-1,中山公园雨量站,雨量计"),
        "{devices}"
    );
    let bad = get_as(&browser, &server.url("/ui/alarms?severity=loud"), &admin).await;
    assert_eq!(bad.status(), 400);

    // The workbench: filter by district, sort by time limit, export.
    let shinan = page(
        &browser,
        &server.url("/ui/incidents?district=370202&sort=due"),
        &admin,
    )
    .await;
    assert!(
        shinan.contains(&format!("/ui/incidents/{case_id}")),
        "{shinan}"
    );
    let laoshan = page(
        &browser,
        &server.url("/ui/incidents?district=370212"),
        &admin,
    )
    .await;
    assert!(
        !laoshan.contains(&format!("/ui/incidents/{case_id}")),
        "{laoshan}"
    );
    let xlsx = get_as(
        &browser,
        &server.url("/ui/incidents/export?district=370202&format=xlsx"),
        &admin,
    )
    .await;
    assert_eq!(xlsx.status(), 200);
    assert!(
        xlsx.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .contains("spreadsheetml")
    );
    let csv = get_as(
        &browser,
        &server.url("/ui/incidents/export?format=csv"),
        &admin,
    )
    .await
    .text()
    .await
    .expect("csv");
    assert!(csv.contains("处置时限") && csv.contains(&case_id), "{csv}");
    let odd = get_as(&browser, &server.url("/ui/incidents?sort=sideways"), &admin).await;
    assert_eq!(odd.status(), 400);

    // Search: a device by name, a case by its words, the plan by its item.
    let found = page(&browser, &server.url("/ui/search?q=中山公园"), &admin).await;
    assert!(found.contains("href=\"/ui/devices/rain-ops-1\""), "{found}");
    let found = page(
        &browser,
        &server.url(&format!("/ui/search?q={case_id}")),
        &admin,
    )
    .await;
    assert!(
        found.contains(&format!("href=\"/ui/incidents/{case_id}\"")),
        "{found}"
    );
    let found = page(&browser, &server.url("/ui/search?q=网格"), &admin).await;
    assert!(found.contains("href=\"/ui/plan#item-"), "{found}");
    let water_search = page(&browser, &server.url("/ui/search?q=中山公园"), &water).await;
    assert!(
        !water_search.contains("rain-ops-1"),
        "another department's device: {water_search}"
    );
    let long = get_as(
        &browser,
        &server.url(&format!("/ui/search?q={}", "长".repeat(101))),
        &admin,
    )
    .await;
    assert_eq!(long.status(), 400);

    // A grid worker of 市南区: a patrol report with a photo from the phone's form, the
    // department handles it, the worker checks it with a photo and closes it.
    server
        .user(&token, "grid.ui", "city-management", "grid_worker")
        .await;
    let assigned = server
        .request(
            Method::PUT,
            "/api/v1/governance/grid-workers/grid.ui",
            Some(&token),
            Some(serde_json::json!({"grids": ["370202"]})),
        )
        .await;
    assert_eq!(assigned.status(), 200);
    let worker = ui_sign_in(&server, &browser, "grid.ui", "password-123").await;
    let form = page(&browser, &server.url("/ui/report"), &worker).await;
    assert!(
        form.contains("巡查上报")
            && form.contains("name=\"photo\"")
            && form.contains("id=\"locate\""),
        "{form}"
    );
    let report = |cookie: String, photo: Vec<u8>| {
        let form = reqwest::multipart::Form::new()
            .text("service_code", "E0201")
            .text("description", "电线杆上贴满小广告")
            .text("address", "中山路")
            .text("lon", "120.3845")
            .text("lat", "36.062")
            .part(
                "photo",
                reqwest::multipart::Part::bytes(photo).file_name("p.png"),
            );
        browser
            .post(server.url("/ui/report"))
            .header("cookie", cookie)
            .multipart(form)
            .send()
    };
    let filed = report(worker.clone(), png()).await.expect("sent");
    assert_eq!(filed.status(), 303);
    let patrol_id = location(&filed)
        .trim_start_matches("/ui/incidents/")
        .to_owned();
    let not_a_photo = report(worker.clone(), b"GIF89a".to_vec())
        .await
        .expect("sent");
    assert_eq!(not_a_photo.status(), 422);
    let case: serde_json::Value = server
        .request(
            Method::GET,
            &format!("/api/v1/governance/incidents/{patrol_id}"),
            Some(&token),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(case["incident"]["source"], "patrol");
    assert_eq!(case["incident"]["grid_worker"], "grid.ui");
    assert_eq!(case["incident"]["photos"].as_array().map(Vec::len), Some(1));
    let step = |cookie: &str, action: &str, comment: &str, photo: Option<Vec<u8>>| {
        let mut form = reqwest::multipart::Form::new()
            .text("action", action.to_owned())
            .text("comment", comment.to_owned());
        if let Some(photo) = photo {
            form = form.part(
                "photo",
                reqwest::multipart::Part::bytes(photo).file_name("after.png"),
            );
        }
        browser
            .post(server.url(&format!("/ui/incidents/{patrol_id}/step")))
            .header("cookie", cookie.to_owned())
            .multipart(form)
            .send()
    };
    assert_eq!(
        step(&admin, "accept", "已安排清理", None)
            .await
            .expect("sent")
            .status(),
        303
    );
    assert_eq!(
        step(&admin, "complete", "已清除", Some(png()))
            .await
            .expect("sent")
            .status(),
        303
    );
    let to_check = page(
        &browser,
        &server.url(&format!("/ui/incidents/{patrol_id}")),
        &worker,
    )
    .await;
    assert!(
        to_check.contains("核查通过")
            && to_check.contains("step-close")
            && to_check.contains("step-rework"),
        "the worker checks: {to_check}"
    );
    assert_eq!(
        step(&worker, "close", "现场核查已清除", Some(png()))
            .await
            .expect("sent")
            .status(),
        303
    );
    let closed: serde_json::Value = server
        .request(
            Method::GET,
            &format!("/api/v1/governance/incidents/{patrol_id}"),
            Some(&token),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(closed["incident"]["state"], "closed");
    let photos = closed["incident"]["photos"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(photos.len(), 3, "the report's, the work's and the check's");
    let shown = page(
        &browser,
        &server.url(&format!("/ui/incidents/{patrol_id}")),
        &worker,
    )
    .await;
    assert!(shown.contains("<img src=\"/ui/media/"), "{shown}");

    // A resident lands on their own page, reports by 随手拍 with a photo, and sees it there.
    server
        .user(&token, "resident.ui", "bigdata", "resident")
        .await;
    let resident = ui_sign_in(&server, &browser, "resident.ui", "password-123").await;
    let home = get_as(&browser, &server.url("/"), &resident).await;
    assert_eq!(home.status(), 303);
    assert_eq!(location(&home), "/ui/me");
    let me = page(&browser, &server.url("/ui/me"), &resident).await;
    assert!(
        me.contains("我的上报")
            && me.contains("随手拍")
            && !me.contains("一屏总览")
            && !me.contains("name=\"q\""),
        "{me}"
    );
    let filed = report(resident.clone(), png()).await.expect("sent");
    assert_eq!(filed.status(), 303);
    let back = location(&filed);
    assert!(back.starts_with("/ui/me?reported="), "{back}");
    let own_id = back.trim_start_matches("/ui/me?reported=").to_owned();
    let me = page(&browser, &server.url(&back), &resident).await;
    assert!(
        me.contains("已受理")
            && me.contains(&format!("/ui/incidents/{own_id}"))
            && me.contains("电线杆上贴满小广告"),
        "{me}"
    );
    let own: serde_json::Value = server
        .request(
            Method::GET,
            &format!("/api/v1/governance/incidents/{own_id}"),
            Some(&token),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(own["incident"]["source"], "citizen");
    let photo = own["incident"]["photos"][0]
        .as_str()
        .expect("photo")
        .to_owned();
    let image = get_as(
        &browser,
        &server.url(&format!("/ui/media/{photo}")),
        &resident,
    )
    .await;
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    server
        .user(&token, "resident.other", "bigdata", "resident")
        .await;
    let stranger = ui_sign_in(&server, &browser, "resident.other", "password-123").await;
    let hidden = get_as(
        &browser,
        &server.url(&format!("/ui/media/{photo}")),
        &stranger,
    )
    .await;
    assert_eq!(hidden.status(), 404, "another resident's photo");
    let devices = get_as(&browser, &server.url("/ui/devices"), &resident).await;
    assert_eq!(
        devices.status(),
        403,
        "a resident reads no department's devices"
    );
    server.cleanup().await;
}

backend_tests!(the_overview_shows_the_city_live);
backend_tests!(operators_and_field_pages);

/// The service hall's pages as a resident and a department use them: the hall with its
/// 可网办率, the guide's form with licences filled in, applying with only the photo uploaded,
/// the bureau's acceptance, a department's step approved and another's refused, my page, the
/// figures; the plan page shows 可网办率 live.
async fn service_hall_pages(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let sign_in = |username: &'static str| {
        let browser = browser.clone();
        let url = server.url("/ui/sign-in");
        async move {
            let signed = browser
                .post(url)
                .form(&[("username", username), ("password", "password-123")])
                .send()
                .await
                .expect("sent");
            assert_eq!(signed.status(), 303, "{username}");
            set_cookie(&signed)
        }
    };
    server
        .user(&admin, "hall.resident", "bigdata", "resident")
        .await;
    let police = server
        .user(&admin, "hall.police", "police", "operator")
        .await;
    server
        .user(&admin, "hall.clerk", "approval", "operator")
        .await;
    server
        .user(&admin, "hall.health", "health", "operator")
        .await;
    let person = "370202198801010019";
    let bound = server
        .request(
            reqwest::Method::PUT,
            "/api/v1/services/holders/hall.resident",
            Some(&admin),
            Some(serde_json::json!({"holder_id": person, "holder_name": "张三"})),
        )
        .await;
    assert_eq!(bound.status(), 200);
    for licence_type in ["resident_id", "household_register"] {
        let issued = server
            .request(reqwest::Method::POST, "/api/v1/services/licences", Some(&police),
                Some(serde_json::json!({"licence_type": licence_type, "holder_id": person, "holder_name": "张三"})))
            .await;
        assert_eq!(issued.status(), 201);
    }
    let resident = sign_in("hall.resident").await;
    let hall = page(&browser, &server.url("/ui/services"), &resident).await;
    assert!(
        hall.contains("网上办事大厅") && hall.contains("可网办率") && hall.contains("新生儿出生")
    );
    // 社保卡申领: the ID card from the library, only the photo uploaded.
    let guide = page(
        &browser,
        &server.url("/ui/services/apply/370200-GG-0001"),
        &resident,
    )
    .await;
    assert!(guide.contains("一次") || guide.contains("所需材料"));
    let consent: Vec<String> = guide
        .match_indices("name=\"consent\" value=\"")
        .map(|(at, m)| {
            guide[at + m.len()..]
                .split('"')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(consent.len(), 1, "the ID card is filled in");
    assert!(
        guide.contains("name=\"upload:1\""),
        "the photo, the service's second material"
    );
    let photo =
        reqwest::multipart::Part::bytes(vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0])
            .file_name("photo.png")
            .mime_str("image/png")
            .expect("part");
    let form = reqwest::multipart::Form::new()
        .text("f:phone", "13800000000")
        .text("f:child_name", "张小宝")
        .text("f:child_birth_date", "2026-11-30")
        .text("consent", consent[0].clone())
        .part("upload:1", photo);
    let applied = browser
        .post(server.url("/ui/services/apply/370200-GG-0001"))
        .header("cookie", &resident)
        .multipart(form)
        .send()
        .await
        .expect("sent");
    assert_eq!(applied.status(), 303);
    let location = applied.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(
        location.starts_with("/ui/services/applications/"),
        "{location}"
    );
    let mine = page(&browser, &server.url("/ui/services/mine"), &resident).await;
    assert!(mine.contains("社保卡申领") && mine.contains("待受理") && mine.contains("居民身份证"));
    // A bad phone number is refused with the field named, on a page in Chinese.
    let refused = browser
        .post(server.url("/ui/services/apply/370200-GG-0001"))
        .header("cookie", &resident)
        .multipart(
            reqwest::multipart::Form::new()
                .text("f:phone", "12")
                .text("f:child_name", "张小宝")
                .text("f:child_birth_date", "2026-11-30")
                .text("consent", consent[0].clone()),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), 422);
    let refused = refused.text().await.expect("html");
    assert!(refused.contains("form.phone"), "{refused}");

    // hrss receives 社保卡申领; the bureau's clerk has it on the workbench only to supervise.
    let hrss_user = server.user(&admin, "hall.hrss", "hrss", "operator").await;
    let _ = hrss_user;
    let hrss = sign_in("hall.hrss").await;
    let workbench = page(&browser, &server.url("/ui/services/workbench"), &hrss).await;
    assert!(workbench.contains("社保卡申领"), "to receive");
    let accept = browser
        .post(server.url(&format!("{location}/receipt")))
        .header("cookie", &hrss)
        .form(&[("action", "accept")])
        .send()
        .await
        .expect("sent");
    assert_eq!(accept.status(), 303);
    let app = page(&browser, &server.url(&location), &hrss).await;
    assert!(
        app.contains("签章核验通过"),
        "the ID card's seal is checked on the page"
    );
    let step = format!("{location}/steps/0/0");
    let health = sign_in("hall.health").await;
    let wrong = browser
        .post(server.url(&step))
        .header("cookie", &health)
        .form(&[("approve", "true"), ("comment", "同意")])
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status(), 404, "not health's application");
    let approved = browser
        .post(server.url(&step))
        .header("cookie", &hrss)
        .form(&[("approve", "true"), ("comment", "材料齐全")])
        .send()
        .await
        .expect("sent");
    assert_eq!(approved.status(), 303);
    let mine = page(&browser, &server.url("/ui/services/mine"), &resident).await;
    assert!(
        mine.contains("已办结（准予）") && mine.contains("社会保障卡"),
        "the card arrives in the library"
    );
    let clerk = sign_in("hall.clerk").await;
    let figures = page(&browser, &server.url("/ui/services/figures"), &clerk).await;
    assert!(figures.contains("按时办结率") && figures.contains("发放电子证照"));
    let plan = page(&browser, &server.url("/ui/plan"), &clerk).await;
    assert!(plan.contains("可网办率"), "item 6 is bound live");
    // The science bureau's admin runs its policy from the workbench.
    server
        .user(&admin, "hall.science", "science", "dept_admin")
        .await;
    let science = sign_in("hall.science").await;
    let desk = page(&browser, &server.url("/ui/services/workbench"), &science).await;
    assert!(
        desk.contains("本部门惠企政策") && desk.contains("/ui/services/policies/QD-2022-P01/run")
    );
    let ran = browser
        .post(server.url("/ui/services/policies/QD-2022-P01/run"))
        .header("cookie", &science)
        .send()
        .await
        .expect("sent");
    assert_eq!(ran.status(), 303);
    let desk = page(&browser, &server.url("/ui/services/workbench"), &science).await;
    assert!(
        desk.contains("50,000,000 / 50,000,000"),
        "the budget paid out, never past it"
    );
    let refused = browser
        .post(server.url("/ui/services/policies/QD-2022-P01/run"))
        .header("cookie", &hrss)
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), 403, "another department does not run it");
    server.cleanup().await;
}

backend_tests!(service_hall_pages);

/// 一码通城 pages: 我的码 with its live QR and refresh, a card bound and revoked from the page,
/// the scanner showing only the scenario's claims (and a refusal with its stage), the bureau's
/// scenarios with their scans and the key rotation.
async fn code_pages(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    server
        .user(&admin, "code.page.resident", "bigdata", "resident")
        .await;
    server
        .user(&admin, "code.page.metro", "transport", "operator")
        .await;
    let bound = server
        .request(
            reqwest::Method::PUT,
            "/api/v1/services/holders/code.page.resident",
            Some(&admin),
            Some(serde_json::json!({"holder_id": "370202198801010019", "holder_name": "王五"})),
        )
        .await;
    assert_eq!(bound.status(), 200);
    let resident = ui_sign_in(&server, &browser, "code.page.resident", "password-123").await;
    let bind = post_as(
        &browser,
        &server.url("/ui/codes/cards"),
        &resident,
        &[("kind", "transit_account"), ("id", "QDMETRO-4242")],
    )
    .await;
    assert_eq!(
        (bind.status().as_u16(), location(&bind)),
        (303, "/ui/codes/mine".into())
    );
    let mine = page(&browser, &server.url("/ui/codes/mine"), &resident).await;
    assert!(
        mine.contains("我的居民码") && mine.contains("<svg") && mine.contains("QDMETRO-4242"),
        "{mine}"
    );
    assert!(mine.contains("data-refresh=\"/ui/codes/mine/qr\""));
    let fresh: serde_json::Value = get_as(&browser, &server.url("/ui/codes/mine/qr"), &resident)
        .await
        .json()
        .await
        .expect("json");
    let code = fresh["code"].as_str().expect("code").to_owned();
    assert!(code.starts_with("QD1:") && fresh["svg"].as_str().is_some_and(|s| s.contains("<svg")));

    let metro = ui_sign_in(&server, &browser, "code.page.metro", "password-123").await;
    let scanner = page(&browser, &server.url("/ui/codes/scan"), &metro).await;
    assert!(
        scanner.contains("青岛地铁闸机") && !scanner.contains("酒店入住登记"),
        "only the operator's scenarios"
    );
    let verdict = post_as(
        &browser,
        &server.url("/ui/codes/scan"),
        &metro,
        &[("scenario", "metro"), ("code", &code)],
    )
    .await
    .text()
    .await
    .expect("html");
    assert!(
        verdict.contains("核验通过") && verdict.contains("QDMETRO-4242"),
        "{verdict}"
    );
    assert!(
        !verdict.contains("王五") && !verdict.contains("370202198801010019"),
        "the metro learns no name"
    );
    let again = post_as(
        &browser,
        &server.url("/ui/codes/scan"),
        &metro,
        &[("scenario", "metro"), ("code", &code)],
    )
    .await
    .text()
    .await
    .expect("html");
    assert!(again.contains("重复使用"), "{again}");
    let garbage = post_as(
        &browser,
        &server.url("/ui/codes/scan"),
        &metro,
        &[("scenario", "bus"), ("code", "QD1:!!")],
    )
    .await
    .text()
    .await
    .expect("html");
    assert!(
        garbage.contains("无效码") && garbage.contains("✗ Base45"),
        "{garbage}"
    );
    let refused = get_as(&browser, &server.url("/ui/codes/scan"), &resident).await;
    assert_eq!(refused.status(), 403, "a resident operates no scenario");

    // The holder sees where the code was scanned; revokes the card from the page.
    let mine = page(&browser, &server.url("/ui/codes/mine"), &resident).await;
    assert!(
        mine.contains("青岛地铁闸机") && mine.contains("核验通过") && mine.contains("重复使用")
    );
    let handle = mine
        .split("/ui/codes/cards/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("a revoke form")
        .to_owned();
    let revoked = post_as(
        &browser,
        &server.url(&format!("/ui/codes/cards/{handle}/revoke")),
        &resident,
        &[],
    )
    .await;
    assert_eq!(revoked.status(), 303);
    assert!(
        page(&browser, &server.url("/ui/codes/mine"), &resident)
            .await
            .contains("已注销")
    );

    // The bureau: every scenario with its scans, the keys, rotation from the page.
    let bureau_cookie = ui_sign_in(&server, &browser, "admin", support::ADMIN_PASSWORD).await;
    let bureau = page(&browser, &server.url("/ui/codes"), &bureau_cookie).await;
    assert!(
        bureau.contains("一码通城应用场景")
            && bureau.contains("大剧院检票")
            && bureau.contains("重复使用 1"),
        "{bureau}"
    );
    assert!(bureau.contains("<code>Q1</code>"));
    let rotated = post_as(
        &browser,
        &server.url("/ui/codes/keys/rotate"),
        &bureau_cookie,
        &[("algorithm", "SM2-SM3")],
    )
    .await;
    assert_eq!(rotated.status(), 303);
    assert!(
        page(&browser, &server.url("/ui/codes"), &bureau_cookie)
            .await
            .contains("<code>Q2</code>")
    );
    let metro_bureau = page(&browser, &server.url("/ui/codes"), &metro).await;
    assert!(
        metro_bureau.contains("青岛地铁闸机")
            && !metro_bureau.contains("大剧院检票")
            && !metro_bureau.contains("轮换密钥")
    );
    server.cleanup().await;
}

backend_tests!(code_pages);
