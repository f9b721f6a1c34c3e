//! Roles decide reads too: every role, and API keys of single scopes, against every sensing
//! route and the department's NGSI-LD entities. What each caller gets is derived from the
//! access table (`yunnao_identity::access`), not written out by hand, so the table and the
//! handlers cannot drift apart.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::TestServer;
use yunnao_identity::{Action, Reach, Resource, Role, access};
use yunnao_store::backend_tests;
use yunnao_store::testing::TestBackend;

const OWNER: &str = "water";
const DEVICE: &str = "wd-1";
const ENTITY: &str = "urn:ngsi-ld:WaterObserved:wd-1";

/// Who calls: a user with roles, or an API key with one scope, of a department.
struct Caller {
    name: String,
    token: String,
    department: &'static str,
    roles: Vec<Role>,
    scope: Option<String>,
}

impl Caller {
    fn reach(&self, resource: Resource, action: Action) -> Reach {
        match &self.scope {
            Some(scope) if *scope == access::scope(resource, action) => Reach::Own,
            Some(_) => Reach::None,
            None => self
                .roles
                .iter()
                .map(|role| access::reach(*role, resource, action))
                .max()
                .unwrap_or(Reach::None),
        }
    }

    /// May this caller act on the owner department's data?
    fn may(&self, resource: Resource, action: Action) -> bool {
        match self.reach(resource, action) {
            Reach::All => true,
            Reach::Own => self.department == OWNER,
            Reach::None => false,
        }
    }
}

/// How a route answers a caller it refuses, and how it shows what it allows.
#[derive(Clone, Copy)]
enum Shape {
    /// One object of the department: 200 allowed, 404 refused (its existence is not told).
    Item,
    /// A listing: 403 for a caller who reaches none; else 200, holding the marker only where
    /// the owner's data is readable.
    Listing(&'static str),
    /// A change of an existing object: 2xx allowed; 403 where the caller can see it, else 404.
    Change,
    /// A creation in the owner department: 2xx allowed, 403 refused.
    Create,
    /// A creation in the caller's own department (NGSI-LD entities carry no department):
    /// allowed wherever the caller reaches their own.
    CreateOwn,
    /// The bulk upload answers 200 and counts what it accepted.
    Bulk,
}

struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    resource: Resource,
    action: Action,
    shape: Shape,
}

fn routes(caller: usize) -> Vec<Route> {
    let hour = 1_795_000_000_000_i64;
    let range = format!("key=height&from={hour}&to={}", hour + 3_600_000);
    let read = |path: String, resource, shape| Route {
        method: Method::GET,
        path,
        body: None,
        resource,
        action: Action::Read,
        shape,
    };
    vec![
        read(
            "/api/v1/devices".into(),
            Resource::Devices,
            Shape::Listing(DEVICE),
        ),
        read(
            format!("/api/v1/devices/{DEVICE}"),
            Resource::Devices,
            Shape::Item,
        ),
        read(
            format!("/api/v1/devices/{DEVICE}/telemetry/latest"),
            Resource::Telemetry,
            Shape::Item,
        ),
        read(
            format!("/api/v1/devices/{DEVICE}/telemetry?{range}"),
            Resource::Telemetry,
            Shape::Item,
        ),
        read(
            format!("/api/v1/devices/{DEVICE}/telemetry/aggregate?{range}&interval=3600"),
            Resource::Telemetry,
            Shape::Item,
        ),
        read(
            format!("/api/v1/devices/{DEVICE}/telemetry/export?{range}"),
            Resource::Telemetry,
            Shape::Item,
        ),
        read(
            format!("/api/v1/telemetry/latest?devices={DEVICE}"),
            Resource::Telemetry,
            Shape::Item,
        ),
        read(
            format!("/api/v1/telemetry/aggregate?devices={DEVICE}&{range}&interval=3600"),
            Resource::Telemetry,
            Shape::Item,
        ),
        read(
            "/api/v1/alarm-rules".into(),
            Resource::AlarmRules,
            Shape::Listing("水位过高"),
        ),
        read(
            "/api/v1/alarms?active=false".into(),
            Resource::Alarms,
            Shape::Listing(DEVICE),
        ),
        read(
            "/api/v1/device-grants".into(),
            Resource::Grants,
            Shape::Listing("防汛"),
        ),
        read(
            format!("/ngsi-ld/v1/entities/{ENTITY}"),
            Resource::Context,
            Shape::Item,
        ),
        Route {
            method: Method::PATCH,
            path: format!("/api/v1/devices/{DEVICE}"),
            body: Some(json!({"name": format!("水库水位计 {caller}")})),
            resource: Resource::Devices,
            action: Action::Write,
            shape: Shape::Change,
        },
        Route {
            method: Method::POST,
            path: "/api/v1/devices".into(),
            body: Some(json!({"id": format!("wd-new-{caller}"), "name": "新设备",
                "profile": "reservoir-level", "department": OWNER})),
            resource: Resource::Devices,
            action: Action::Write,
            shape: Shape::Create,
        },
        Route {
            method: Method::POST,
            path: "/api/v1/alarm-rules".into(),
            body: Some(
                json!({"name": format!("规则 {caller}"), "profile": "reservoir-level",
                "key": "height", "kind": "threshold", "operator": "above", "threshold": 90,
                "severity": "minor", "department": OWNER}),
            ),
            resource: Resource::AlarmRules,
            action: Action::Write,
            shape: Shape::Create,
        },
        Route {
            method: Method::POST,
            path: "/api/v1/telemetry/bulk".into(),
            body: Some(
                json!([{"device": DEVICE, "ts": hour + 1000 + caller as i64, "values": {"height": 10}}]),
            ),
            resource: Resource::Telemetry,
            action: Action::Write,
            shape: Shape::Bulk,
        },
        Route {
            method: Method::POST,
            path: "/ngsi-ld/v1/entities".into(),
            body: Some(
                json!({"id": format!("urn:ngsi-ld:WaterObserved:new-{caller}"),
                "type": "WaterObserved", "height": {"type": "Property", "value": 1}}),
            ),
            resource: Resource::Context,
            action: Action::Write,
            shape: Shape::CreateOwn,
        },
    ]
}

/// The platform admin, a user of each (department, role), an API key of each (department,
/// scope).
async fn callers(
    server: &TestServer,
    admin: &str,
    users: &[(&'static str, Role)],
    keys: &[(&'static str, &str)],
) -> Vec<Caller> {
    let mut callers = vec![Caller {
        name: "admin".into(),
        token: admin.to_owned(),
        department: "bigdata",
        roles: vec![Role::PlatformAdmin],
        scope: None,
    }];
    for &(department, role) in users {
        let name = format!("{department}.{}", role.as_str().replace('_', "-"));
        let token = server.user(admin, &name, department, role.as_str()).await;
        callers.push(Caller {
            name,
            token,
            department,
            roles: vec![role],
            scope: None,
        });
    }
    for &(department, scope) in keys {
        let client: Value = server
            .request(
                Method::POST,
                "/api/v1/api-clients",
                Some(admin),
                Some(
                    json!({"name": format!("{department} {scope}"), "department": department,
                    "scopes": [scope]}),
                ),
            )
            .await
            .json()
            .await
            .expect("json");
        callers.push(Caller {
            name: format!("key {department} {scope}"),
            token: client["api_key"].as_str().expect("key").to_owned(),
            department,
            roles: Vec::new(),
            scope: Some(scope.to_owned()),
        });
    }
    callers
}

async fn every_role_and_scope_gets_what_the_table_says(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let callers = callers(
        &server,
        &admin,
        &[
            (OWNER, Role::DeptAdmin),
            (OWNER, Role::Operator),
            (OWNER, Role::GridWorker),
            (OWNER, Role::Resident),
            (OWNER, Role::Enterprise),
            ("police", Role::DeptAdmin),
            ("police", Role::Operator),
        ],
        &[
            (OWNER, "telemetry:write"),
            (OWNER, "telemetry:read"),
            (OWNER, "devices:read"),
            (OWNER, "devices:write"),
            (OWNER, "alarms:read"),
            (OWNER, "context:read"),
            ("police", "devices:read"),
        ],
    )
    .await;

    // The owner's data: a device with readings, a rule that fired, a grant, an entity.
    let water_admin = &callers[1].token;
    let created = server
        .request(
            Method::POST,
            "/api/v1/devices",
            Some(water_admin),
            Some(
                json!({"id": DEVICE, "name": "水库水位计", "profile": "reservoir-level",
                "location": {"lon": 120.38, "lat": 36.07}}),
            ),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    let device_token = created["access_token"].as_str().expect("token");
    let rule = server
        .request(
            Method::POST,
            "/api/v1/alarm-rules",
            Some(water_admin),
            Some(
                json!({"name": "水位过高", "device": DEVICE, "key": "height",
                "kind": "threshold", "operator": "above", "threshold": 50, "severity": "major"}),
            ),
        )
        .await;
    assert_eq!(rule.status(), 201);
    let hour = 1_795_000_000_000_i64;
    for (i, height) in [20.0, 80.0].iter().enumerate() {
        let sent = server
            .request(
                Method::POST,
                &format!("/api/v1/{device_token}/telemetry"),
                None,
                Some(json!({"ts": hour + i as i64 * 60_000, "values": {"height": height}})),
            )
            .await;
        assert_eq!(sent.status(), 200);
    }
    let in_an_hour = yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms() + 3_600_000);
    let grant = server
        .request(
            Method::POST,
            "/api/v1/device-grants",
            Some(water_admin),
            Some(json!({"grantee": "emergency", "profile": "rain-gauge",
                "area": {"min_lon": 120.3, "min_lat": 36.0, "max_lon": 120.5, "max_lat": 36.2},
                "purpose": "防汛应急联动", "expires_at": in_an_hour})),
        )
        .await;
    assert_eq!(grant.status(), 201);
    let entity = server
        .request(
            Method::POST,
            "/ngsi-ld/v1/entities",
            Some(water_admin),
            Some(json!({"id": ENTITY, "type": "WaterObserved",
                "height": {"type": "Property", "value": 20}})),
        )
        .await;
    // The sensing mirror may have made the device's entity first (it is water's either way).
    assert!(
        [201, 409].contains(&entity.status().as_u16()),
        "{}",
        entity.status()
    );
    // The alarm is raised in the background; wait until the owner sees it.
    let mut alarmed = false;
    for _ in 0..100 {
        let alarms = server
            .request(
                Method::GET,
                "/api/v1/alarms?active=false",
                Some(water_admin),
                None,
            )
            .await
            .text()
            .await
            .unwrap_or_default();
        if alarms.contains(DEVICE) {
            alarmed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(alarmed, "the rule raised an alarm");

    let mut checked = 0;
    for (index, caller) in callers.iter().enumerate() {
        for route in routes(index) {
            let allowed = caller.may(route.resource, route.action);
            let answer = server
                .request(
                    route.method.clone(),
                    &route.path,
                    Some(&caller.token),
                    route.body.clone(),
                )
                .await;
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap_or_default();
            let case = format!(
                "{} {} {} (allowed: {allowed}) → {status} {}",
                caller.name,
                route.method,
                route.path,
                body.chars().take(200).collect::<String>()
            );
            match route.shape {
                Shape::Item => {
                    assert_eq!(status, if allowed { 200 } else { 404 }, "{case}");
                }
                Shape::Listing(marker) => {
                    if caller.reach(route.resource, route.action) == Reach::None {
                        assert_eq!(status, 403, "{case}");
                    } else {
                        assert_eq!(status, 200, "{case}");
                        assert_eq!(body.contains(marker), allowed, "{case}");
                    }
                }
                Shape::Change => {
                    let expected = if allowed {
                        200
                    } else if caller.may(Resource::Devices, Action::Read) {
                        403
                    } else {
                        404
                    };
                    assert_eq!(status, expected, "{case}");
                }
                Shape::Create => {
                    assert!(
                        if allowed {
                            (200..300).contains(&status)
                        } else {
                            status == 403
                        },
                        "{case}"
                    );
                }
                Shape::CreateOwn => {
                    let allowed = caller.reach(route.resource, route.action) != Reach::None;
                    assert_eq!(status, if allowed { 201 } else { 403 }, "{case}");
                }
                Shape::Bulk => {
                    let accepted = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|report| report["accepted_items"].as_u64());
                    if caller.scope.is_some() || !caller.roles.is_empty() {
                        assert_eq!(status, 200, "{case}");
                        assert_eq!(accepted, Some(u64::from(allowed)), "{case}");
                    }
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, callers.len() * routes(0).len());

    // A user demoted to resident stops reading at once.
    let demoted = &callers[2];
    let users: Value = server
        .request(
            Method::GET,
            "/api/v1/users?department=water",
            Some(&admin),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    let id = users
        .as_array()
        .and_then(|users| {
            users
                .iter()
                .find(|u| u["username"].as_str() == Some(demoted.name.as_str()))
        })
        .and_then(|u| u["id"].as_str())
        .expect("the operator's id")
        .to_owned();
    let changed = server
        .request(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(&admin),
            Some(json!({"roles": ["resident"]})),
        )
        .await;
    assert_eq!(changed.status(), 200, "{:?}", changed.text().await);
    let after = server
        .request(
            Method::GET,
            &format!("/api/v1/devices/{DEVICE}/telemetry/latest"),
            Some(&demoted.token),
            None,
        )
        .await;
    assert_eq!(after.status(), 404);
    server.cleanup().await;
}

backend_tests!(every_role_and_scope_gets_what_the_table_says);

/// The services hub's department routes against the same table: each role and single-scope
/// key of the paying department and of another gets what `access::reach` says.
async fn services_routes_follow_the_table(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let policy = yunnao_services::policies::seed()
        .expect("policies")
        .into_iter()
        .find(|p| p.code == "QD-2022-P04")
        .expect("QD-2022-P04");
    // The human resources bureau pays 初创企业创业补贴.
    let owner = "hrss";
    assert_eq!(policy.department, owner);
    let callers = callers(
        &server,
        &admin,
        &[
            (owner, Role::DeptAdmin),
            (owner, Role::Operator),
            (owner, Role::GridWorker),
            (owner, Role::Resident),
            (owner, Role::Enterprise),
            ("police", Role::DeptAdmin),
            ("police", Role::Operator),
        ],
        &[
            (owner, "policies:write"),
            (owner, "policies:read"),
            (owner, "applications:read"),
            (owner, "licences:write"),
            ("police", "policies:write"),
        ],
    )
    .await;
    let mut checked = 0;
    for caller in &callers {
        // Routes of the caller's own department: allowed where the table reaches it at all.
        for (method, path, body, resource, action, ok) in [
            (
                Method::GET,
                "/api/v1/services/steps".to_owned(),
                None,
                Resource::Applications,
                Action::Read,
                200,
            ),
            (
                Method::GET,
                "/api/v1/services/figures".to_owned(),
                None,
                Resource::Applications,
                Action::Read,
                200,
            ),
            (
                Method::GET,
                "/api/v1/services/appeals".to_owned(),
                None,
                Resource::Policies,
                Action::Read,
                200,
            ),
            (
                Method::POST,
                "/api/v1/services/licences".to_owned(),
                Some(
                    json!({"licence_type": "property_certificate", "holder_id": "370202198801010019", "holder_name": "张三"}),
                ),
                Resource::Licences,
                Action::Write,
                201,
            ),
        ] {
            let allowed = caller.reach(resource, action) != Reach::None;
            let status = server
                .request(method.clone(), &path, Some(&caller.token), body)
                .await
                .status()
                .as_u16();
            assert_eq!(
                status,
                if allowed { ok } else { 403 },
                "{} {method} {path}",
                caller.name
            );
            checked += 1;
        }
        // The paying department's policy run.
        let allowed = match caller.reach(Resource::Policies, Action::Write) {
            Reach::All => true,
            Reach::Own => caller.department == owner,
            Reach::None => false,
        };
        let path = format!("/api/v1/services/policies/{}/runs", policy.code);
        let status = server
            .request(Method::POST, &path, Some(&caller.token), None)
            .await
            .status()
            .as_u16();
        assert_eq!(
            status,
            if allowed { 200 } else { 403 },
            "{} POST {path}",
            caller.name
        );
        checked += 1;
    }
    assert_eq!(checked, callers.len() * 5);
    server.cleanup().await;
}

backend_tests!(services_routes_follow_the_table);

/// 一码通城: verifying and reading scans at a scenario follow `CodeScans` for the scenario's
/// operator; the scheme itself (keys, trust list, revocations) only platform admins reach.
async fn codes_routes_follow_the_table(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    // The metro is operated by the transport bureau.
    let owner = "transport";
    let callers = callers(
        &server,
        &admin,
        &[
            (owner, Role::DeptAdmin),
            (owner, Role::Operator),
            (owner, Role::GridWorker),
            (owner, Role::Resident),
            (owner, Role::Enterprise),
            ("police", Role::DeptAdmin),
            ("police", Role::Operator),
        ],
        &[
            (owner, "code-scans:write"),
            (owner, "code-scans:read"),
            (owner, "devices:write"),
            ("police", "code-scans:write"),
        ],
    )
    .await;
    let mut checked = 0;
    for caller in &callers {
        for (method, path, body, resource, action, ok) in [
            // Authorised, the garbage code is refused (422); unauthorised, 403.
            (
                Method::POST,
                "/api/v1/codes/verify",
                Some(json!({"scenario": "metro", "code": "QD1:not a code"})),
                Resource::CodeScans,
                Action::Write,
                422,
            ),
            (
                Method::GET,
                "/api/v1/codes/scenarios/metro/scans",
                None,
                Resource::CodeScans,
                Action::Read,
                200,
            ),
            (
                Method::POST,
                "/api/v1/codes/keys/rotation",
                Some(json!({"algorithm": "nonesuch"})),
                Resource::CodeScheme,
                Action::Write,
                422,
            ),
            (
                Method::PUT,
                "/api/v1/codes/revocations/000000000000000000000000",
                None,
                Resource::CodeScheme,
                Action::Write,
                404,
            ),
            (
                Method::POST,
                "/api/v1/codes/trust",
                Some(json!({"name": "x", "prefix": "HC1:", "certificate": "not a certificate"})),
                Resource::CodeScheme,
                Action::Write,
                422,
            ),
        ] {
            let allowed = match caller.reach(resource, action) {
                Reach::All => true,
                Reach::Own => caller.department == owner,
                Reach::None => false,
            };
            let status = server
                .request(method.clone(), path, Some(&caller.token), body)
                .await
                .status()
                .as_u16();
            assert_eq!(
                status,
                if allowed { ok } else { 403 },
                "{} {method} {path}",
                caller.name
            );
            checked += 1;
        }
    }
    assert_eq!(checked, callers.len() * 5);
    server.cleanup().await;
}

backend_tests!(codes_routes_follow_the_table);

/// The data hub: registering a dataset follows `Datasets` for the owning department; a core
/// dataset's metadata is listed only to its department's readers and the bureau.
async fn data_routes_follow_the_table(backend: TestBackend) {
    let server = TestServer::start(backend).await;
    let admin = server.admin().await;
    let owner = "police";
    let callers = callers(
        &server,
        &admin,
        &[
            (owner, Role::DeptAdmin),
            (owner, Role::Operator),
            (owner, Role::GridWorker),
            (owner, Role::Resident),
            ("water", Role::DeptAdmin),
        ],
        &[
            (owner, "datasets:write"),
            (owner, "datasets:read"),
            (owner, "devices:write"),
        ],
    )
    .await;
    for (i, caller) in callers.iter().enumerate() {
        let writes = match caller.reach(Resource::Datasets, Action::Write) {
            Reach::All => true,
            Reach::Own => caller.department == owner,
            Reach::None => false,
        };
        let body = json!({
            "id": format!("access-check-{i}"), "department": owner, "title_zh": "访问检查", "title_en": "",
            "description_zh": "", "description_en": "", "themes": ["公共安全"], "keywords": [], "frequency": "yearly",
            "spatial": "青岛市", "temporal_start": null, "temporal_end": null, "source_system": "", "contact": "",
            "licence": "政务数据共享协议", "level": "general", "sharing": "conditional",
            "fields": [{"name": "n", "type": "integer", "unit": null, "description_zh": "", "level": "general", "personal": "none"}]
        });
        let status = server
            .request(
                Method::POST,
                "/api/v1/data/datasets",
                Some(&caller.token),
                Some(body),
            )
            .await
            .status()
            .as_u16();
        assert_eq!(
            status,
            if writes { 201 } else { 403 },
            "{} POST dataset",
            caller.name
        );
        let reads_core = caller.roles.contains(&Role::PlatformAdmin)
            || (caller.department == owner
                && caller.reach(Resource::Datasets, Action::Read) != Reach::None);
        let status = server
            .request(
                Method::GET,
                "/api/v1/data/datasets/household-register",
                Some(&caller.token),
                None,
            )
            .await
            .status()
            .as_u16();
        assert_eq!(
            status,
            if reads_core { 200 } else { 404 },
            "{} GET core dataset",
            caller.name
        );
        // Importing a table of the owner's dataset follows datasets:write.
        let imported = server
            .client
            .post(server.url("/api/v1/data/datasets/traffic-accidents/versions?format=csv"))
            .bearer_auth(&caller.token)
            .body("district,month,accidents,injured\n市南区,2024-01,3,1\n")
            .send()
            .await
            .expect("import sent")
            .status()
            .as_u16();
        assert_eq!(
            imported,
            if writes { 201 } else { 403 },
            "{} import",
            caller.name
        );
        // Requests, subscriptions and capabilities follow data-sharing.
        let (reads_sharing, writes_sharing) = (
            caller.reach(Resource::DataSharing, Action::Read) != Reach::None,
            caller.reach(Resource::DataSharing, Action::Write) != Reach::None,
        );
        let until = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
        let status = server
            .request(
                Method::POST,
                "/api/v1/data/requests",
                Some(&caller.token),
                Some(json!({"dataset": "market-entities", "purpose": "访问检查", "legal_basis": "访问检查",
                            "fields": ["name"], "valid_until": until})),
            )
            .await
            .status()
            .as_u16();
        assert_eq!(
            status,
            if writes_sharing { 201 } else { 403 },
            "{} file a request",
            caller.name
        );
        for path in ["/api/v1/data/requests", "/api/v1/data/subscriptions"] {
            let status = server
                .request(Method::GET, path, Some(&caller.token), None)
                .await
                .status()
                .as_u16();
            assert_eq!(
                status,
                if reads_sharing { 200 } else { 403 },
                "{} GET {path}",
                caller.name
            );
        }
        let status = server
            .request(
                Method::POST,
                "/api/v1/data/capabilities",
                Some(&caller.token),
                Some(json!({"id": format!("access-api-{i}"), "title_zh": "检查", "title_en": "check",
                            "description_zh": "检查", "upstream": "http://127.0.0.1:9", "rate_per_minute": 10})),
            )
            .await
            .status()
            .as_u16();
        assert_eq!(
            status,
            if writes_sharing { 201 } else { 403 },
            "{} register a capability",
            caller.name
        );
        let status = server
            .request(
                Method::GET,
                "/api/v1/data/monitoring",
                Some(&caller.token),
                None,
            )
            .await
            .status()
            .as_u16();
        assert_eq!(status, 200, "{} monitoring", caller.name);
    }
    // Unsigned callers: the catalogue and open data yes, the rest no.
    for (method, path, status) in [
        (Method::GET, "/api/v1/data/datasets", 200),
        (Method::GET, "/api/v1/data/capabilities", 200),
        (Method::GET, "/api/v1/data/requests", 401),
        (Method::GET, "/api/v1/data/monitoring", 401),
        (
            Method::GET,
            "/api/v1/data/datasets/traffic-accidents/rows",
            401,
        ),
        (
            Method::POST,
            "/api/v1/data/datasets/traffic-accidents/versions",
            401,
        ),
    ] {
        let got = server
            .request(method.clone(), path, None, None)
            .await
            .status()
            .as_u16();
        assert_eq!(got, status, "anonymous {method} {path}");
    }
    server.cleanup().await;
}

backend_tests!(data_routes_follow_the_table);
