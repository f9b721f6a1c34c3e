//! The governance hub through the real HTTP API, on every backend: the grid and its coverage,
//! reports from Open311 (JSON and XML), the platform API, grid workers' patrols, the hotline
//! and sensor alarms; dispatch by rules; the workflow with its roles and refusals; deadlines
//! that warn and escalate across a restart; the figures.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use support::{ADMIN_PASSWORD, TestServer, expect_problem};
use yunnao_store::backend_tests;
use yunnao_store::testing::TestBackend;

/// A landmark in each district (also checked in the grid's unit tests).
const LANDMARKS: [(&str, f64, f64); 10] = [
    ("370202", 120.3845, 36.0620),
    ("370203", 120.3550, 36.0880),
    ("370211", 120.1970, 35.9600),
    ("370212", 120.4680, 36.1070),
    ("370213", 120.4330, 36.1450),
    ("370214", 120.3960, 36.3070),
    ("370215", 120.4470, 36.3890),
    ("370281", 120.0330, 36.2640),
    ("370283", 119.9600, 36.7870),
    ("370285", 120.5170, 36.8880),
];
/// 五四广场, 市南区.
const SQUARE: (f64, f64) = (120.3845, 36.0620);

struct City {
    server: TestServer,
    admin: String,
    /// Command centre operator (city-management, operator).
    centre: String,
    /// Water bureau operator.
    water: String,
    /// Grid worker covering 市南区.
    worker: String,
    resident: String,
}

async fn city(backend: TestBackend) -> City {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let centre = server
        .user(&admin, "centre.op", "city-management", "operator")
        .await;
    let water = server.user(&admin, "water.op", "water", "operator").await;
    let worker = server
        .user(&admin, "grid.w1", "city-management", "grid_worker")
        .await;
    let resident = server.user(&admin, "citizen1", "bigdata", "resident").await;
    City {
        server,
        admin,
        centre,
        water,
        worker,
        resident,
    }
}

impl City {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let response = self.server.request(method, path, Some(token), body).await;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn report(
        &self,
        token: &str,
        service: &str,
        (lon, lat): (f64, f64),
        text: &str,
    ) -> Value {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/governance/incidents",
                token,
                Some(json!({"service_code": service, "description": text,
                            "location": {"lon": lon, "lat": lat}, "address": "测试地址"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    async fn step(&self, token: &str, id: &str, action: &str, extra: Value) -> (u16, Value) {
        let mut body = json!({"action": action, "comment": format!("{action} 测试")});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.call(
            Method::POST,
            &format!("/api/v1/governance/incidents/{id}/transitions"),
            token,
            Some(body),
        )
        .await
    }
}

async fn grid_covers_every_district(backend: TestBackend) {
    let city = city(backend).await;
    let (status, coverage) = city
        .call(
            Method::GET,
            "/api/v1/governance/grid/coverage",
            &city.centre,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let districts = coverage["districts"].as_array().expect("districts");
    assert_eq!(districts.len(), 10);
    for d in districts {
        assert_eq!(d["coverage_pct"], 100.0, "{}", d["name"]);
        assert_eq!(d["streets_with_grids"], d["streets"]);
        assert_eq!(d["communities_with_grids"], d["communities"]);
        assert_eq!(d["staffed_pct"], 0.0);
    }
    let streets: i64 = districts
        .iter()
        .map(|d| d["streets"].as_i64().unwrap_or(0))
        .sum();
    let communities: i64 = districts
        .iter()
        .map(|d| d["communities"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!((streets, communities), (141, 2120));

    // A point in each district resolves to a grid of that district, with a hierarchical code.
    for (code, lon, lat) in LANDMARKS {
        let (status, grid) = city
            .call(
                Method::GET,
                &format!("/api/v1/governance/grid/lookup?lon={lon}&lat={lat}"),
                &city.centre,
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(grid["district_code"], code);
        let grid_code = grid["code"].as_str().expect("code");
        assert_eq!(grid_code.len(), 16);
        assert!(grid_code.starts_with(grid["community_code"].as_str().expect("community")));
        let cell = city
            .server
            .request(
                Method::GET,
                &format!("/api/v1/governance/grid/cells/{grid_code}"),
                Some(&city.centre),
                None,
            )
            .await;
        assert_eq!(cell.status(), 200);
        assert_eq!(cell.headers()["content-type"], "application/geo+json");
    }
    // Outside the city: a clear refusal.
    let outside = city
        .server
        .request(
            Method::GET,
            "/api/v1/governance/grid/lookup?lon=116.4&lat=39.9",
            Some(&city.centre),
            None,
        )
        .await;
    let problem = expect_problem(outside, 422, "out-of-area").await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("outside Qingdao"))
    );
    // Anonymous: no.
    let anonymous = city
        .server
        .request(Method::GET, "/api/v1/governance/grid/coverage", None, None)
        .await;
    expect_problem(anonymous, 401, "unauthorized").await;

    // Staffing coverage is live: assign a worker to 市南区, it reads 100% there.
    let (status, _) = city
        .call(
            Method::PUT,
            "/api/v1/governance/grid-workers/grid.w1",
            &city.admin,
            Some(json!({"grids": ["370202"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = city
        .call(
            Method::PUT,
            "/api/v1/governance/grid-workers/water.op",
            &city.admin,
            Some(json!({"grids": ["370202"]})),
        )
        .await;
    assert_eq!(status, 422, "only grid workers get grids: {body}");
    let (status, _) = city
        .call(
            Method::PUT,
            "/api/v1/governance/grid-workers/grid.w1",
            &city.centre,
            Some(json!({"grids": ["370203"]})),
        )
        .await;
    assert_eq!(status, 403, "an operator does not assign grids");
    let (_, coverage) = city
        .call(
            Method::GET,
            "/api/v1/governance/grid/coverage",
            &city.centre,
            None,
        )
        .await;
    let shinan = &coverage["districts"][0];
    assert_eq!(shinan["code"], "370202");
    assert_eq!(shinan["staffed_pct"], 100.0);
    assert_eq!(coverage["districts"][1]["staffed_pct"], 0.0);
    city.server.cleanup().await;
}

async fn open311_reports_reach_the_right_queue(backend: TestBackend) {
    let city = city(backend).await;
    let (status, created) = city
        .call(
            Method::POST,
            "/api/v1/api-clients",
            &city.admin,
            Some(json!({"name": "市民App", "department": "bigdata", "scopes": ["open311:write"]})),
        )
        .await;
    assert_eq!(status, 201);
    let key = created["api_key"].as_str().expect("key").to_owned();
    let client = &city.server.client;
    let url = |p: &str| city.server.url(p);

    // Discovery of services in JSON and XML.
    let services: Value = client
        .get(url("/open311/v2/services.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let exposed = services
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["service_code"] == "E0102")
        .expect("E0102");
    assert_eq!(exposed["service_name"], "暴露垃圾");
    let xml = client
        .get(url("/open311/v2/services.xml"))
        .send()
        .await
        .expect("sent");
    assert!(
        xml.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/xml")
    );
    let xml = xml.text().await.expect("text");
    assert!(
        xml.contains("<services><service>") && xml.contains("<service_code>E0102</service_code>"),
        "{xml}"
    );
    let definition: Value = client
        .get(url("/open311/v2/services/E0505.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(definition["attributes"][0]["code"], "plate_number");
    assert_eq!(definition["attributes"][0]["required"], true);
    let missing = client
        .get(url("/open311/v2/services/E9999.json"))
        .send()
        .await
        .expect("sent");
    assert_eq!(missing.status(), 404);
    let missing: Value = missing.json().await.expect("json");
    assert_eq!(missing[0]["code"], 404);

    let long_device_id = "x".repeat(100_000);
    // A citizen's request (JSON): dispatched to city-management by the subclass's default.
    let form = |extra: &[(&str, &str)]| {
        let mut pairs: Vec<(String, String)> = vec![
            ("api_key".into(), key.clone()),
            ("service_code".into(), "E0102".into()),
            ("lat".into(), SQUARE.1.to_string()),
            ("long".into(), SQUARE.0.to_string()),
            ("description".into(), "五四广场东侧垃圾堆放".into()),
            ("phone".into(), "13800000000".into()),
        ];
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            if !v.is_empty() {
                pairs.push(((*k).into(), (*v).into()));
            }
        }
        pairs
    };
    let posted = client
        .post(url("/open311/v2/requests.json"))
        .form(&form(&[]))
        .send()
        .await
        .expect("sent");
    assert_eq!(posted.status(), 201);
    let posted: Value = posted.json().await.expect("json");
    let id = posted[0]["service_request_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let token = posted[0]["token"].as_str().expect("token").to_owned();
    assert!(
        posted[0]["service_notice"]
            .as_str()
            .is_some_and(|n| n.contains("市城市管理局"))
    );

    // XML, in 黄岛区 where a rule sends rubbish to the ecology bureau.
    let (status, _) = city
        .call(
            Method::POST,
            "/api/v1/governance/dispatch-rules",
            &city.admin,
            Some(json!({"service_code": "E0102", "area_code": "370211", "department": "ecology"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = city
        .call(
            Method::POST,
            "/api/v1/governance/dispatch-rules",
            &city.admin,
            Some(json!({"service_code": "E0102", "area_code": "370211", "department": "ecology"})),
        )
        .await;
    assert_eq!(status, 409, "one rule per subclass and area");
    let huangdao = LANDMARKS[2];
    let posted = client
        .post(url("/open311/v2/requests.xml"))
        .form(&form(&[
            ("lat", &huangdao.2.to_string()),
            ("long", &huangdao.1.to_string()),
        ]))
        .send()
        .await
        .expect("sent");
    assert_eq!(posted.status(), 201);
    let xml = posted.text().await.expect("text");
    let start =
        xml.find("<service_request_id>").expect("id element") + "<service_request_id>".len();
    let end = xml[start..].find('<').expect("end") + start;
    let huangdao_id = xml[start..end].to_owned();

    // Reading: public, without personal data; JSON and XML; tokens.
    let one: Value = client
        .get(url(&format!("/open311/v2/requests/{id}.json")))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(one[0]["status"], "open");
    assert_eq!(one[0]["agency_responsible"], "市城市管理局");
    assert_eq!(one[0]["service_code"], "E0102");
    assert!(one[0]["expected_datetime"].as_str().is_some());
    assert!(
        !one.to_string().contains("13800000000"),
        "no phone numbers in public answers"
    );
    let other: Value = client
        .get(url(&format!("/open311/v2/requests/{huangdao_id}.json")))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(other[0]["agency_responsible"], "市生态环境局");
    let xml = client
        .get(url(&format!("/open311/v2/requests/{id}.xml")))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(xml.contains("<status>open</status>"), "{xml}");
    let by_token: Value = client
        .get(url(&format!("/open311/v2/tokens/{token}.json")))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(by_token[0]["service_request_id"], id.as_str());
    let listed: Value = client
        .get(url(
            "/open311/v2/requests.json?status=open&service_code=E0102",
        ))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let closed: Value = client
        .get(url("/open311/v2/requests.json?status=closed"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(closed.as_array().map(Vec::len), Some(0));
    let too_long = client
        .get(url("/open311/v2/requests.json?start_date=2026-01-01T00:00:00%2B08:00&end_date=2026-06-01T00:00:00%2B08:00"))
        .send()
        .await
        .expect("sent");
    assert_eq!(too_long.status(), 400);

    // Bad requests, in Open311's error format.
    for (extra, status, phrase) in [
        (vec![("api_key", "")], 403, "api_key"),
        (vec![("api_key", "ynk_nope.nope")], 403, "not valid"),
        (vec![("service_code", "E9999")], 404, "unknown service code"),
        (vec![("lat", "")], 400, "lat and long are required"),
        (
            vec![("lat", "39.9"), ("long", "116.4")],
            400,
            "outside Qingdao",
        ),
        (vec![("service_code", "E0505")], 400, "plate_number"),
        (vec![("description", "")], 400, "description"),
        (
            vec![("media_url", "javascript:alert(1)")],
            400,
            "not an http(s) URL",
        ),
        (
            vec![("media_url", "file:///etc/passwd")],
            400,
            "not an http(s) URL",
        ),
        (
            vec![("device_id", long_device_id.as_str())],
            400,
            "longer than 200",
        ),
    ] {
        let response = client
            .post(url("/open311/v2/requests.json"))
            .form(&form(&extra))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), status, "{extra:?}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body[0]["code"], status);
        assert!(
            body[0]["description"]
                .as_str()
                .is_some_and(|d| d.contains(phrase)),
            "{extra:?}: {body}"
        );
    }
    let xml_error = client
        .post(url("/open311/v2/requests.xml"))
        .form(&form(&[("service_code", "E9999")]))
        .send()
        .await
        .expect("sent");
    assert_eq!(xml_error.status(), 404);
    assert!(
        xml_error
            .text()
            .await
            .expect("text")
            .contains("<errors><error><code>404</code>")
    );
    // With the attribute it goes in.
    let ok = client
        .post(url("/open311/v2/requests.json"))
        .form(&form(&[
            ("service_code", "E0505"),
            ("attribute[plate_number]", "鲁B12345"),
        ]))
        .send()
        .await
        .expect("sent");
    assert_eq!(ok.status(), 201);

    // The queue of city-management has the first request; the water bureau does not see it.
    let (_, queue) = city
        .call(
            Method::GET,
            "/api/v1/governance/incidents?department=city-management&state=dispatched",
            &city.centre,
            None,
        )
        .await;
    assert!(
        queue["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["id"] == id.as_str())
    );
    let (status, _) = city
        .call(
            Method::GET,
            &format!("/api/v1/governance/incidents/{id}"),
            &city.water,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, water_queue) = city
        .call(
            Method::GET,
            "/api/v1/governance/incidents",
            &city.water,
            None,
        )
        .await;
    assert_eq!(water_queue["total"], 0);
    // The command centre sees the reporter's contact (sealed at rest, opened for it).
    let (_, detail) = city
        .call(
            Method::GET,
            &format!("/api/v1/governance/incidents/{id}"),
            &city.centre,
            None,
        )
        .await;
    assert_eq!(detail["contact"]["phone"], "13800000000");
    assert_eq!(detail["incident"]["source"], "open311");
    assert_eq!(detail["incident"]["grid"]["district_code"], "370202");
    let raw: Option<String> =
        yunnao_store::sqlx::query_scalar("SELECT contact_sealed FROM gov_incidents WHERE id = $1")
            .bind(&id)
            .fetch_one(city.server.identity.db.pool())
            .await
            .expect("row");
    assert!(raw.is_some_and(|r| !r.contains("13800000000")));

    // The public feed lists what was filed through Open311, with personal data in free text
    // masked, and nothing a resident filed through the signed-in API.
    let public = client
        .post(url("/open311/v2/requests.json"))
        .form(&form(&[(
            "description",
            "垃圾堆放，联系电话13912345678，邮箱li.si@example.cn",
        )]))
        .send()
        .await
        .expect("sent");
    assert_eq!(public.status(), 201);
    let private = city
        .report(
            &city.resident,
            "E0102",
            SQUARE,
            "我家门口垃圾没人清，电话13700001111",
        )
        .await;
    let private = private["incident"]["id"].as_str().expect("id").to_owned();
    let feed = client
        .get(url("/open311/v2/requests.json"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(feed.contains("联系电话139******78"), "{feed}");
    assert!(feed.contains("l***@example.cn"), "{feed}");
    assert!(
        !feed.contains("13912345678") && !feed.contains("li.si@"),
        "{feed}"
    );
    assert!(
        !feed.contains("13700001111") && !feed.contains(&private),
        "{feed}"
    );
    let one = client
        .get(url(&format!("/open311/v2/requests/{private}.json")))
        .send()
        .await
        .expect("sent");
    assert_eq!(one.status(), 404);
    city.server.cleanup().await;
}

async fn workflow_follows_roles_and_states(backend: TestBackend) {
    let city = city(backend).await;
    city.call(
        Method::PUT,
        "/api/v1/governance/grid-workers/grid.w1",
        &city.admin,
        Some(json!({"grids": ["370202"]})),
    )
    .await;
    // A burst water main at the square: the water bureau's case, checked by the grid worker.
    let created = city
        .report(&city.resident, "E0402", SQUARE, "自来水管破裂，路面冒水")
        .await;
    let id = created["incident"]["id"].as_str().expect("id").to_owned();
    assert_eq!(created["incident"]["state"], "dispatched");
    assert_eq!(created["incident"]["department"], "water");
    assert_eq!(created["incident"]["grid_worker"], "grid.w1");
    assert!(created["incident"]["due_at"].as_str().is_some());

    // Wrong role: 403; wrong state: 409; no comment: 422; unknown action: 422.
    let (status, _) = city.step(&city.worker, &id, "accept", json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = city.step(&city.resident, &id, "close", json!({})).await;
    assert_eq!(
        status, 403,
        "a reporter sees the case but does not act on it"
    );
    let (status, body) = city.step(&city.water, &id, "complete", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["type"], "/problems/illegal-transition");
    let (status, _) = city
        .call(
            Method::POST,
            &format!("/api/v1/governance/incidents/{id}/transitions"),
            &city.water,
            Some(json!({"action": "accept", "comment": "  "})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = city.step(&city.water, &id, "teleport", json!({})).await;
    assert_eq!(status, 422);
    // Forged role in the body: refused as an unknown field, nothing happens.
    let (status, _) = city
        .call(
            Method::POST,
            &format!("/api/v1/governance/incidents/{id}/transitions"),
            &city.resident,
            Some(json!({"action": "close", "comment": "x", "role": "platform_admin"})),
        )
        .await;
    assert_eq!(status, 400);

    // The flow: accept, complete, rework (check failed), complete, close by the grid worker.
    for (token, action, state) in [
        (&city.water, "accept", "handling"),
        (&city.water, "complete", "verification"),
        (&city.worker, "rework", "handling"),
        (&city.water, "complete", "verification"),
        (&city.worker, "close", "closed"),
    ] {
        let (status, body) = city.step(token, &id, action, json!({})).await;
        assert_eq!(status, 200, "{action}: {body}");
        assert_eq!(body["state"], state);
    }
    let (status, _) = city
        .step(
            &city.centre,
            &id,
            "reassign",
            json!({"department": "housing"}),
        )
        .await;
    assert_eq!(status, 409, "closed is final");
    // The reporter rates it; others may not.
    let (status, _) = city
        .call(
            Method::POST,
            &format!("/api/v1/governance/incidents/{id}/rating"),
            &city.water,
            Some(json!({"satisfaction": 5})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, rated) = city
        .call(
            Method::POST,
            &format!("/api/v1/governance/incidents/{id}/rating"),
            &city.resident,
            Some(json!({"satisfaction": 4, "comment": "修得挺快"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(rated["satisfaction"], 4);
    let (_, detail) = city
        .call(
            Method::GET,
            &format!("/api/v1/governance/incidents/{id}"),
            &city.resident,
            None,
        )
        .await;
    let actions: Vec<&str> = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "report", "register", "dispatch", "accept", "complete", "rework", "complete", "close",
            "rate"
        ]
    );
    assert_eq!(detail["incident"]["rework_count"], 1);
    assert!(
        detail.get("contact").is_none(),
        "only the centre sees contacts"
    );

    // Every step is audited, refused ones too.
    let (_, audit) = city
        .call(Method::GET, "/api/v1/audit?limit=1000", &city.admin, None)
        .await;
    let records = audit
        .as_array()
        .or_else(|| audit["records"].as_array())
        .expect("audit records");
    let target = format!("incident:{id}");
    let outcomes: Vec<(String, String)> = records
        .iter()
        .filter(|r| r["target"] == target.as_str())
        .map(|r| {
            (
                r["action"].as_str().unwrap_or("").to_owned(),
                r["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        outcomes.contains(&("incident.close".into(), "success".into())),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&("incident.accept".into(), "denied".into())),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&("incident.complete".into(), "rejected".into())),
        "{outcomes:?}"
    );

    // Send back and reassign; merge of a nearby duplicate.
    let second = city
        .report(
            &city.resident,
            "E0402",
            (SQUARE.0 + 0.0003, SQUARE.1),
            "又一处冒水",
        )
        .await;
    let second_id = second["incident"]["id"].as_str().expect("id").to_owned();
    assert!(
        second["similar"].as_array().expect("similar").is_empty(),
        "the first is closed"
    );
    let third = city
        .report(
            &city.resident,
            "E0402",
            (SQUARE.0 + 0.0005, SQUARE.1),
            "同一处冒水",
        )
        .await;
    let offered = third["similar"].as_array().expect("similar");
    assert_eq!(offered.len(), 1);
    assert_eq!(offered[0]["id"], second_id.as_str());
    assert!(
        offered[0]["distance_m"]
            .as_f64()
            .is_some_and(|d| d > 10.0 && d < 100.0)
    );
    let third_id = third["incident"]["id"].as_str().expect("id").to_owned();
    let (status, merged) = city
        .step(&city.centre, &third_id, "merge", json!({"into": second_id}))
        .await;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["state"], "closed");
    assert_eq!(merged["merged_into"], second_id.as_str());
    let (status, _) = city
        .step(&city.water, &second_id, "send_back", json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = city
        .step(
            &city.centre,
            &second_id,
            "dispatch",
            json!({"department": "nowhere"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = city
        .step(
            &city.centre,
            &second_id,
            "dispatch",
            json!({"department": "housing"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["department"], "housing");
    let (status, body) = city
        .step(
            &city.centre,
            &second_id,
            "reassign",
            json!({"department": "water"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["department"], "water");

    // Bad reports.
    for (body, status, slug) in [
        (
            json!({"service_code": "E0402", "description": "x", "location": {"lon": 116.4, "lat": 39.9}}),
            422,
            "out-of-area",
        ),
        (
            json!({"service_code": "E9999", "description": "x", "location": {"lon": SQUARE.0, "lat": SQUARE.1}}),
            404,
            "not-found",
        ),
        (
            json!({"service_code": "E0505", "description": "x", "location": {"lon": SQUARE.0, "lat": SQUARE.1}}),
            422,
            "validation",
        ),
        (
            json!({"service_code": "E0402", "description": "", "location": {"lon": SQUARE.0, "lat": SQUARE.1}}),
            422,
            "validation",
        ),
        (
            json!({"service_code": "E0402", "description": "x", "location": {"lon": 999.0, "lat": 0.0}}),
            422,
            "validation",
        ),
        (
            json!({"service_code": "E0402", "description": "x"}),
            400,
            "bad-request",
        ),
    ] {
        let response = city
            .server
            .request(
                Method::POST,
                "/api/v1/governance/incidents",
                Some(&city.resident),
                Some(body.clone()),
            )
            .await;
        expect_problem(response, status, slug).await;
    }
    let (_, all) = city
        .call(
            Method::GET,
            "/api/v1/governance/incidents?limit=100",
            &city.centre,
            None,
        )
        .await;
    assert_eq!(all["total"], 3, "refused reports wrote nothing");
    city.server.cleanup().await;
}

async fn alarms_become_incidents(backend: TestBackend) {
    let city = city(backend).await;
    let (status, device) = city
        .call(Method::POST, "/api/v1/devices", &city.admin,
              Some(json!({"id": "gas-001", "name": "中山路窨井", "profile": "manhole-gas", "department": "water",
                          "location": {"lon": SQUARE.0, "lat": SQUARE.1}})))
        .await;
    assert_eq!(status, 201, "{device}");
    let token = device["access_token"].as_str().expect("token").to_owned();
    let (status, rule) = city
        .call(Method::POST, "/api/v1/alarm-rules", &city.admin,
              Some(json!({"name": "甲烷超限", "profile": "manhole-gas", "department": "water", "key": "CH4",
                          "kind": "threshold", "operator": "above", "threshold": 50.0, "severity": "critical",
                          "auto_clear": false})))
        .await;
    assert_eq!(status, 201, "{rule}");
    let send = |value: f64, ts: i64| {
        city.server
            .client
            .post(city.server.url(&format!("/api/v1/{token}/telemetry")))
            .json(&json!({"ts": ts, "values": {"CH4": value}}))
            .send()
    };
    let now = yunnao_core::time::now_ms();
    assert_eq!(send(80.0, now - 2000).await.expect("sent").status(), 200);
    assert_eq!(send(90.0, now - 1000).await.expect("sent").status(), 200);
    let mut incidents = Value::Null;
    for _ in 0..100 {
        let (_, page) = city
            .call(
                Method::GET,
                "/api/v1/governance/incidents?source=alarm",
                &city.centre,
                None,
            )
            .await;
        if page["total"] == 1 {
            incidents = page;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let incident = &incidents["items"][0];
    assert_eq!(incident["service_code"], "E0403", "{incidents}");
    assert_eq!(
        incident["department"], "water",
        "the device's owner handles it without a rule"
    );
    assert_eq!(incident["grid"]["district_code"], "370202");
    assert_eq!(incident["state"], "dispatched");
    // The alarm clears: noted on the case, which stays open.
    let (_, alarms) = city
        .call(Method::GET, "/api/v1/alarms", &city.admin, None)
        .await;
    let alarm_id = alarms
        .as_array()
        .or_else(|| alarms["items"].as_array())
        .expect("alarms")[0]["id"]
        .as_str()
        .expect("alarm id")
        .to_owned();
    let (status, _) = city
        .call(
            Method::POST,
            &format!("/api/v1/alarms/{alarm_id}/clear"),
            &city.admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200);
    let id = incident["id"].as_str().expect("id").to_owned();
    let mut cleared = Value::Null;
    for _ in 0..100 {
        let (_, detail) = city
            .call(
                Method::GET,
                &format!("/api/v1/governance/incidents/{id}"),
                &city.centre,
                None,
            )
            .await;
        if detail["incident"]["alarm_cleared_at"].is_string() {
            cleared = detail;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cleared["incident"]["state"], "dispatched", "{cleared}");
    assert!(
        cleared["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["action"] == "alarm_cleared")
    );
    let (_, page) = city
        .call(
            Method::GET,
            "/api/v1/governance/incidents?source=alarm",
            &city.centre,
            None,
        )
        .await;
    assert_eq!(page["total"], 1, "one incident per alarm");
    city.server.cleanup().await;
}

async fn patrols_and_hotline_records(backend: TestBackend) {
    let city = city(backend).await;
    let png: Vec<u8> = [b"\x89PNG\r\n\x1a\n".as_slice(), &[0u8; 64]].concat();
    let report = json!({"service_code": "E0201", "description": "电线杆上贴满小广告",
                        "location": {"lon": SQUARE.0, "lat": SQUARE.1}});
    let patrol = |token: &str, photo: Vec<u8>| {
        let form = reqwest::multipart::Form::new()
            .text("report", report.to_string())
            .part(
                "photo",
                reqwest::multipart::Part::bytes(photo).file_name("p.png"),
            );
        city.server
            .client
            .post(city.server.url("/api/v1/governance/patrol-reports"))
            .bearer_auth(token)
            .multipart(form)
            .send()
    };
    let response = patrol(&city.worker, png.clone()).await.expect("sent");
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.expect("json");
    assert_eq!(created["incident"]["source"], "patrol");
    let photo = created["incident"]["photos"][0]
        .as_str()
        .expect("photo id")
        .to_owned();
    let image = city
        .server
        .request(
            Method::GET,
            &format!("/api/v1/governance/media/{photo}"),
            Some(&city.worker),
            None,
        )
        .await;
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert_eq!(image.bytes().await.expect("bytes").to_vec(), png);
    let other = city
        .server
        .request(
            Method::GET,
            &format!("/api/v1/governance/media/{photo}"),
            Some(&city.water),
            None,
        )
        .await;
    assert_eq!(other.status(), 404);
    let response = patrol(&city.worker, b"not an image".to_vec())
        .await
        .expect("sent");
    expect_problem(response, 422, "validation").await;
    let response = patrol(&city.resident, png.clone()).await.expect("sent");
    expect_problem(response, 403, "forbidden").await;

    // 12345 hotline records: located, unlocated, bad; imported once.
    let csv = format!(
        "工单编号,受理时间,诉求内容,类别,地址,经度,纬度,来电号码\n\
         QD2026-0001,2026-11-28 09:30,楼下暴露垃圾无人清理,暴露垃圾,市南区某路,{},{},13900000000\n\
         QD2026-0002,2026-11-28 10:00,小区门口施工噪音,施工扰民,崂山区某小区,,,13900000001\n\
         QD2026-0003,2026-11-28 10:30,不知道什么问题,外星人,某地,,,\n\
         QD2026-0004,昨天,时间不对,暴露垃圾,某地,,,\n",
        SQUARE.0, SQUARE.1
    );
    let import = |token: &str| {
        city.server
            .client
            .post(city.server.url("/api/v1/governance/incidents/import"))
            .bearer_auth(token)
            .header("content-type", "text/csv")
            .body(csv.clone())
            .send()
    };
    let refused = import(&city.water).await.expect("sent");
    assert_eq!(refused.status(), 403);
    let report: Value = import(&city.centre)
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(report["created"], 2, "{report}");
    assert_eq!(report["dispatched"], 1);
    let rows: Vec<i64> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["row"].as_i64())
        .collect();
    assert_eq!(rows, [3, 4]);
    let again: Value = import(&city.centre)
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(again["created"], 0);
    assert_eq!(again["duplicates"], 2);

    // The unlocated one waits in 受理 for the centre: register, then dispatch by hand; a
    // second one is rejected.
    let (_, waiting) = city
        .call(
            Method::GET,
            "/api/v1/governance/incidents?state=received",
            &city.centre,
            None,
        )
        .await;
    assert_eq!(waiting["total"], 1);
    let id = waiting["items"][0]["id"].as_str().expect("id").to_owned();
    let (status, _) = city.step(&city.water, &id, "register", json!({})).await;
    assert_eq!(status, 404, "not the water bureau's to see");
    let (status, _) = city.step(&city.centre, &id, "dispatch", json!({})).await;
    assert_eq!(status, 409, "register first");
    let (status, _) = city.step(&city.centre, &id, "register", json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = city
        .step(
            &city.centre,
            &id,
            "dispatch",
            json!({"department": "ecology"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["department"], "ecology");
    assert!(body["due_at"].is_string());
    city.server.cleanup().await;
}

async fn deadlines_warn_and_escalate_across_restarts(backend: TestBackend) {
    let mut city = city(backend).await;
    let heads = city
        .server
        .user(&city.admin, "water.head", "water", "dept_admin")
        .await;
    let created = city
        .report(&city.resident, "E0402", SQUARE, "自来水管破裂")
        .await;
    let id = created["incident"]["id"].as_str().expect("id").to_owned();
    // Burst water main: 240 natural minutes.
    let due =
        yunnao_core::time::parse_rfc3339_ms(created["incident"]["due_at"].as_str().expect("due"))
            .expect("time");
    let warn =
        yunnao_core::time::parse_rfc3339_ms(created["incident"]["warn_at"].as_str().expect("warn"))
            .expect("time");
    let now = yunnao_core::time::now_ms();
    assert!((due - now - 240 * 60_000).abs() < 60_000);
    assert!((warn - now - 192 * 60_000).abs() < 60_000);

    // The server stops; the deadline passes while it is down; a new server finds it.
    city.server.stop().await;
    let config = city.server.config.clone();
    let app = yunnao::build(&config).await.expect("restarts");
    let report = app
        .governance
        .scan_deadlines(warn + 1000)
        .await
        .expect("scan");
    assert_eq!((report.warned, report.escalated), (1, 0));
    let report = app
        .governance
        .scan_deadlines(due + 1000)
        .await
        .expect("scan");
    assert_eq!((report.warned, report.escalated), (0, 1));
    let report = app
        .governance
        .scan_deadlines(due + 2000)
        .await
        .expect("scan");
    assert_eq!(
        (report.warned, report.escalated),
        (0, 0),
        "each happens once"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(yunnao::serve(app, listener, None, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let sign_in = |username: &'static str, password: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let body: Value = client
                .post(format!("{base}/api/v1/auth/sign-in"))
                .json(&json!({"username": username, "password": password}))
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            body["access_token"].as_str().expect("token").to_owned()
        }
    };
    let _ = heads;
    let head = sign_in("water.head", "password-123").await;
    let escalations: Value = client
        .get(format!("{base}/api/v1/governance/escalations"))
        .bearer_auth(&head)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let kinds: Vec<&str> = escalations
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["escalated", "deadline_warning"]);
    assert_eq!(escalations[0]["incident_id"], id.as_str());
    assert_eq!(
        escalations[0]["detail"]["department_heads"],
        json!(["water.head"])
    );
    assert_eq!(escalations[0]["detail"]["district_name"], "市南区");
    let centre = sign_in("centre.op", "password-123").await;
    let by_district: Value = client
        .get(format!(
            "{base}/api/v1/governance/escalations?district=370203"
        ))
        .bearer_auth(&centre)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(by_district.as_array().map(Vec::len), Some(0));
    let detail: Value = client
        .get(format!("{base}/api/v1/governance/incidents/{id}"))
        .bearer_auth(&centre)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(detail["incident"]["escalated_at"].is_string());
    let resident = sign_in("citizen1", "password-123").await;
    let refused = client
        .get(format!("{base}/api/v1/governance/escalations"))
        .bearer_auth(&resident)
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), 403);
    let _ = ADMIN_PASSWORD;

    // Figures per district and department.
    let figures: Value = client
        .get(format!("{base}/api/v1/governance/figures?by=district"))
        .bearer_auth(&centre)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let figures = figures.as_array().expect("figures");
    assert_eq!(figures.len(), 10);
    assert_eq!(figures[0]["key"], "370202");
    assert_eq!(figures[0]["name"], "市南区");
    assert_eq!(figures[0]["open"], 1);
    assert_eq!(figures[0]["overdue"], 0, "not overdue by the real clock");
    let by_department: Value = client
        .get(format!("{base}/api/v1/governance/figures?by=department"))
        .bearer_auth(&centre)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(by_department[0]["key"], "water");
    assert_eq!(by_department[0]["name"], "市水务管理局");
    let bad = client
        .get(format!("{base}/api/v1/governance/figures?by=weather"))
        .bearer_auth(&centre)
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status(), 400);
    let _ = stop.send(());
    task.await.expect("joined").expect("served");
    city.server.cleanup().await;
}

async fn figures_count_closures_and_satisfaction(backend: TestBackend) {
    let city = city(backend).await;
    let created = city
        .report(&city.resident, "E0402", SQUARE, "水管破裂")
        .await;
    let id = created["incident"]["id"].as_str().expect("id").to_owned();
    city.report(
        &city.resident,
        "E0402",
        (LANDMARKS[1].1, LANDMARKS[1].2),
        "另一处",
    )
    .await;
    for action in ["accept", "complete"] {
        assert_eq!(city.step(&city.water, &id, action, json!({})).await.0, 200);
    }
    assert_eq!(
        city.step(&city.centre, &id, "close", json!({})).await.0,
        200
    );
    city.call(
        Method::POST,
        &format!("/api/v1/governance/incidents/{id}/rating"),
        &city.resident,
        Some(json!({"satisfaction": 5})),
    )
    .await;
    let (_, figures) = city
        .call(
            Method::GET,
            "/api/v1/governance/figures",
            &city.centre,
            None,
        )
        .await;
    let shinan = &figures[0];
    assert_eq!(shinan["closed_today"], 1);
    assert_eq!(shinan["closure_rate_pct"], 100.0);
    assert_eq!(shinan["on_time_pct"], 100.0);
    assert_eq!(shinan["satisfaction"], 5.0);
    assert!(shinan["avg_handling_hours"].as_f64().is_some());
    assert_eq!(figures[1]["open"], 1);
    assert_eq!(figures[1]["closure_rate_pct"], 0.0);
    let (status, _) = city
        .call(
            Method::GET,
            "/api/v1/governance/figures",
            &city.resident,
            None,
        )
        .await;
    assert_eq!(status, 403);
    city.server.cleanup().await;
}

backend_tests!(
    grid_covers_every_district,
    open311_reports_reach_the_right_queue,
    workflow_follows_roles_and_states,
    alarms_become_incidents,
    patrols_and_hotline_records,
    deadlines_warn_and_escalate_across_restarts,
    figures_count_closures_and_satisfaction,
);
