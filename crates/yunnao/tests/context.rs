//! The NGSI-LD broker through the real HTTP API on every backend, clause by clause of
//! ETSI GS CIM 009: contexts (Link and ld+json), entity and attribute operations, queries
//! (q, geo on real Qingdao district polygons, paging and counts), errors, tenants, access.

mod support;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use support::TestServer;
use yunnao_store::backend_tests;
use yunnao_store::testing::TestBackend;

const CORE: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld";
const ERRORS: &str = "https://uri.etsi.org/ngsi-ld/errors/";
const DISTRICTS: &str = include_str!("../../../data/qingdao/qingdao_districts.geojson");

/// A user context as a Smart Data Models client would send it inline.
fn parking_context() -> Value {
    json!({
        "ParkingSpot": "https://smartdatamodels.org/dataModel.Parking/ParkingSpot",
        "occupancy": "https://smartdatamodels.org/dataModel.Parking/occupancy",
        "category": "https://smartdatamodels.org/dataModel.Parking/category"
    })
}

struct Broker {
    server: TestServer,
    token: String,
}

impl Broker {
    async fn start(backend: TestBackend) -> Self {
        let server = TestServer::start(backend).await;
        let admin = server.admin().await;
        let token = server
            .user(&admin, "traffic.op", "transport", "operator")
            .await;
        Self { server, token }
    }

    fn call(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self
            .server
            .client
            .request(method, self.server.url(&format!("/ngsi-ld/v1{path}")));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// JSON with the core context implied.
    async fn send(&self, method: Method, path: &str, body: Value) -> Response {
        self.call(method, path, Some(&self.token))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("sent")
    }

    async fn get(&self, path: &str) -> Response {
        self.call(Method::GET, path, Some(&self.token))
            .send()
            .await
            .expect("sent")
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("json")
    }
}

/// An NGSI-LD error: status, problem+json, the spec's type.
async fn expect_ngsi_error(response: Response, status: u16, kind: &str) -> Value {
    assert_eq!(response.status(), status, "status for {kind}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "{content_type}"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["type"], format!("{ERRORS}{kind}"), "{body}");
    body
}

fn spot(id: u32, lon: f64, lat: f64, occupancy: &str, capacity: u32) -> Value {
    json!({
        "id": format!("urn:ngsi-ld:ParkingSpot:qd-{id:03}"),
        "type": "ParkingSpot",
        "name": {"type": "Property", "value": format!("停车位 {id}")},
        "occupancy": {"type": "Property", "value": occupancy, "observedAt": "2026-11-29T07:00:00Z"},
        "capacity": capacity,
        "address": {"value": {"district": if lon < 120.42 { "市南区" } else { "崂山区" }}},
        "refParkingSite": {"type": "Relationship", "object": "urn:ngsi-ld:ParkingSite:qd-1"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}
    })
}

/// The polygon of one district from the shipped boundaries.
fn district(name: &str) -> Value {
    let all: Value = serde_json::from_str(DISTRICTS).expect("districts");
    all["features"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["properties"]["name"] == name))
        .map(|f| f["geometry"].clone())
        .expect("district")
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b'-' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn departments_tenants_and_anonymous_readers_are_kept_apart(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let admin = broker.server.admin().await;
    let water = broker
        .server
        .user(&admin, "water.op", "water", "operator")
        .await;
    let resident = broker
        .server
        .user(&admin, "citizen", "transport", "resident")
        .await;
    let id = "urn:ngsi-ld:ParkingSpot:qd-001";
    broker
        .send(
            Method::POST,
            "/entities",
            spot(1, 120.384, 36.062, "free", 1),
        )
        .await;

    // Another department does not see it; nobody without a credential does either.
    let path = format!("/entities/{id}");
    let as_water = broker
        .call(Method::GET, &path, Some(&water))
        .send()
        .await
        .expect("sent");
    expect_ngsi_error(as_water, 404, "ResourceNotFound").await;
    let listed: Value = broker
        .call(Method::GET, "/entities?type=ParkingSpot", Some(&water))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(listed, json!([]));
    let anonymous = broker
        .call(Method::GET, &path, None)
        .send()
        .await
        .expect("sent");
    expect_ngsi_error(anonymous, 404, "ResourceNotFound").await;
    let anonymous_write = broker
        .call(Method::POST, "/entities", None)
        .header("content-type", "application/json")
        .body(spot(2, 120.38, 36.06, "free", 1).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous_write.status(), 401);
    let resident_write = broker
        .call(Method::POST, "/entities", Some(&resident))
        .header("content-type", "application/json")
        .body(spot(3, 120.38, 36.06, "free", 1).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(resident_write.status(), 403);
    // The platform admin sees everything.
    let as_admin = broker
        .call(Method::GET, &path, Some(&admin))
        .send()
        .await
        .expect("sent");
    assert_eq!(as_admin.status(), 200);

    // Tenants: separate worlds; an unknown one is an error, not an empty answer.
    let unknown = broker
        .call(
            Method::GET,
            "/entities?type=ParkingSpot",
            Some(&broker.token),
        )
        .header("ngsild-tenant", "district-huangdao")
        .send()
        .await
        .expect("sent");
    expect_ngsi_error(unknown, 404, "NonexistentTenant").await;
    let in_tenant = broker
        .call(Method::POST, "/entities", Some(&broker.token))
        .header("ngsild-tenant", "district-huangdao")
        .header("content-type", "application/json")
        .body(spot(1, 120.19, 35.96, "free", 1).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(in_tenant.status(), 201, "same id, other tenant");
    let there: Value = broker
        .call(Method::GET, &path, Some(&broker.token))
        .header("ngsild-tenant", "district-huangdao")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        there["location"]["value"]["coordinates"],
        json!([120.19, 35.96])
    );
    let here = broker.get_json(&path).await;
    assert_eq!(
        here["location"]["value"]["coordinates"],
        json!([120.384, 36.062])
    );
    broker.server.cleanup().await;
}

async fn authentication_can_be_turned_off_for_conformance_suites(backend: TestBackend) {
    let server = TestServer::start_with(backend, |c| {
        c.ngsi_ld_auth = false;
        c.ngsi_ld_city_objects = false;
    })
    .await;
    // Without the city objects the default tenant starts empty, as a conformance suite expects.
    let types: Value = server
        .client
        .get(server.url("/ngsi-ld/v1/types"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(types["typeList"], json!([]), "{types}");
    let response = server
        .client
        .post(server.url("/ngsi-ld/v1/entities"))
        .header("content-type", "application/json")
        .body(spot(1, 120.384, 36.062, "free", 1).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
    let read = server
        .client
        .get(server.url("/ngsi-ld/v1/entities/urn:ngsi-ld:ParkingSpot:qd-001"))
        .send()
        .await
        .expect("sent");
    assert_eq!(read.status(), 200);
    // A missing or invalid id in a path is bad request data (clause 5.6.3), not "not found",
    // even where no route matches (an empty segment).
    for (method, path) in [
        (Method::POST, "/ngsi-ld/v1/entities//attrs"),
        (
            Method::POST,
            "/ngsi-ld/v1/entities/thisisaninvaliduri/attrs",
        ),
        (Method::GET, "/ngsi-ld/v1/subscriptions/invalidId"),
        (Method::DELETE, "/ngsi-ld/v1/temporal/entities/not-a-uri"),
    ] {
        let response = server
            .client
            .request(method, server.url(path))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("sent");
        expect_ngsi_error(response, 400, "BadRequestData").await;
    }
    // The NGSI-LD Null deletes in each attribute type's own member, one instance where a
    // datasetId is named (clauses 5.5.8, 5.6.4, 5.6.17).
    let nil = "urn:ngsi-ld:null";
    let send = |method: Method, path: &str, body: Value| {
        server
            .client
            .request(method, server.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let id = "urn:ngsi-ld:Building:null-1";
    let created = send(
        Method::POST,
        "/ngsi-ld/v1/entities",
        json!({"id": id, "type": "Building",
               "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:qingdao"},
               "street": {"type": "LanguageProperty", "languageMap": {"zh": "香港中路", "en": "Hong Kong Middle Road"}},
               "name": [{"type": "Property", "value": "甲"},
                        {"type": "Property", "value": "乙", "datasetId": "urn:ngsi-ld:Dataset:b"}],
               "height": {"type": "Property", "value": 30}}),
    )
    .await
    .expect("sent");
    assert_eq!(created.status(), 201);
    let path = format!("/ngsi-ld/v1/entities/{id}");
    let changed = send(
        Method::PATCH,
        &format!("{path}/attrs"),
        json!({"locatedAt": {"type": "Relationship", "object": nil}}),
    )
    .await
    .expect("sent");
    assert_eq!(changed.status(), 204);
    let merged = send(
        Method::PATCH,
        &path,
        json!({"name": {"type": "Property", "value": nil, "datasetId": "urn:ngsi-ld:Dataset:b"}}),
    )
    .await
    .expect("sent");
    assert_eq!(merged.status(), 204);
    let partial = send(
        Method::PATCH,
        &format!("{path}/attrs/street"),
        json!({"type": "LanguageProperty", "languageMap": {"@none": nil}}),
    )
    .await
    .expect("sent");
    assert_eq!(partial.status(), 204);
    let entity: Value = server
        .client
        .get(server.url(&path))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(entity.get("locatedAt").is_none(), "{entity}");
    assert!(entity.get("street").is_none(), "{entity}");
    assert_eq!(
        entity["name"]["value"],
        json!("甲"),
        "only instance b went: {entity}"
    );
    assert_eq!(entity["height"]["value"], json!(30));
    // Only /ngsi-ld/v1: the rest of the platform still needs a credential.
    let devices = server
        .client
        .get(server.url("/api/v1/devices"))
        .send()
        .await
        .expect("sent");
    assert_eq!(devices.status(), 401);
    server.cleanup().await;
}

async fn the_city_is_there_from_the_start_as_open_data(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    // Anyone, without a credential: 172 metro stations and 10 districts.
    let anonymous = |path: &str| broker.call(Method::GET, path, None).send();
    let stations = anonymous("/entities?type=TransportStation&limit=0&count=true")
        .await
        .expect("sent");
    assert_eq!(stations.headers()["ngsild-results-count"], "172");
    let districts: Value = anonymous(
        "/entities?type=AdministrativeArea&options=keyValues&attrs=name,areaCode&limit=20",
    )
    .await
    .expect("sent")
    .json()
    .await
    .expect("json");
    let mut names: Vec<&str> = districts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names.len(), 10);
    assert!(
        names.contains(&"市南区") && names.contains(&"即墨区"),
        "{names:?}"
    );
    // Stations inside 市南区's (simplified) boundary: 15 (the 3 on the shore fall outside it).
    let shinan = district("市南区");
    let within: Value = anonymous(&format!(
        "/entities?type=TransportStation&georel=within&geometry=MultiPolygon&coordinates={}&limit=100&options=keyValues&attrs=name",
        urlencode(&shinan["coordinates"].to_string())
    ))
    .await
    .expect("sent")
    .json()
    .await
    .expect("json");
    let found: Vec<&str> = within
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(found.len(), 15, "{found:?}");
    assert!(found.contains(&"中山路"));
    // The nearest stations to May Fourth Square (五四广场), within 800 m.
    let near: Value = anonymous("/entities?type=TransportStation&georel=near;maxDistance==800&geometry=Point&coordinates=[120.3845,36.0620]&options=keyValues&attrs=name")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(!near.as_array().is_some_and(Vec::is_empty), "{near}");
    // Open data is read-only to other departments.
    let station = "urn:ngsi-ld:TransportStation:qingdao-metro-000";
    let write = broker
        .send(
            Method::PATCH,
            &format!("/entities/{station}/attrs"),
            json!({"name": "改名"}),
        )
        .await;
    assert_eq!(write.status(), 403);

    // Discovery: types and attributes in use, as the caller sees them.
    let types: Value = anonymous("/types")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(types["type"], "EntityTypeList");
    assert_eq!(
        types["typeList"],
        json!(["AdministrativeArea", "TransportStation"])
    );
    let info: Value = anonymous("/types/TransportStation")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(info["entityCount"], 172);
    let attributes: Value = anonymous("/attributes?details=true")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let location = attributes
        .as_array()
        .and_then(|a| a.iter().find(|a| a["attributeName"] == "location"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(location["attributeCount"], 182);
    assert_eq!(location["attributeTypes"], json!(["GeoProperty"]));
    expect_ngsi_error(
        anonymous("/types/Nothing").await.expect("sent"),
        404,
        "ResourceNotFound",
    )
    .await;

    // A department publishes its own entity; then anyone reads it, until it is withdrawn.
    broker
        .send(
            Method::POST,
            "/entities/",
            spot(7, 120.384, 36.062, "free", 1),
        )
        .await;
    let path = "/entities/urn:ngsi-ld:ParkingSpot:qd-007/";
    expect_ngsi_error(
        anonymous(path).await.expect("sent"),
        404,
        "ResourceNotFound",
    )
    .await;
    let admin = broker.server.admin().await;
    let transport_admin = broker
        .server
        .user(&admin, "transport.admin", "transport", "dept_admin")
        .await;
    let publish = |token: &str, open: bool| {
        broker
            .server
            .client
            .put(
                broker
                    .server
                    .url("/api/v1/context/entities/urn:ngsi-ld:ParkingSpot:qd-007/open-data"),
            )
            .bearer_auth(token.to_owned())
            .header("content-type", "application/json")
            .body(json!({"open": open}).to_string())
            .send()
    };
    assert_eq!(
        publish(&broker.token, true).await.expect("sent").status(),
        403,
        "operators do not publish"
    );
    assert_eq!(
        publish(&transport_admin, true)
            .await
            .expect("sent")
            .status(),
        204
    );
    assert_eq!(anonymous(path).await.expect("sent").status(), 200);
    assert_eq!(
        publish(&transport_admin, false)
            .await
            .expect("sent")
            .status(),
        204
    );
    assert_eq!(anonymous(path).await.expect("sent").status(), 404);
    broker.server.cleanup().await;
}

/// A notification receiver on a free port: records what it gets, answers `status`.
async fn receiver(
    status: u16,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(Value, String)>>>,
) {
    slow_receiver(status, std::time::Duration::ZERO).await
}

/// A receiver that takes `delay` to answer each notification.
async fn slow_receiver(
    status: u16,
    delay: std::time::Duration,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(Value, String)>>>,
) {
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(Value, String)>>> = Default::default();
    let store = seen.clone();
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let store = store.clone();
            async move {
                tokio::time::sleep(delay).await;
                let link = headers
                    .get("link")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                if let Ok(value) = serde_json::from_str::<Value>(&body) {
                    store
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((value, link));
                }
                axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/notify", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(value) = check() {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting");
}

/// What a scripted context source was asked: method, path and query, headers (names in
/// lower case), body.
type Asked = (String, String, Vec<(String, String)>, String);

/// A context source that answers each request with the first scripted answer for its method
/// whose path prefix its path and query starts with (404 when none), recording every request.
async fn scripted_source(
    script: Vec<(&'static str, &'static str, u16, String)>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Asked>>>) {
    let asked: std::sync::Arc<std::sync::Mutex<Vec<Asked>>> = Default::default();
    let store = asked.clone();
    let script = std::sync::Arc::new(script);
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| {
            let (store, script) = (store.clone(), script.clone());
            async move {
                let path = uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let headers = headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
                    .collect();
                store.lock().unwrap_or_else(|p| p.into_inner()).push((
                    method.to_string(),
                    path.clone(),
                    headers,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                let (status, body) = script
                    .iter()
                    .find(|(asked, prefix, _, _)| method == *asked && path.starts_with(prefix))
                    .map(|(_, _, status, body)| (*status, body.clone()))
                    .unwrap_or((404, String::new()));
                (
                    axum::http::StatusCode::from_u16(status).unwrap_or_default(),
                    [("content-type", "application/json")],
                    body,
                )
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, asked)
}

/// The header `name` of an asked request.
fn asked_header<'a>(asked: &'a Asked, name: &str) -> Option<&'a str> {
    asked
        .2
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A created resource's path under `/ngsi-ld/v1`, from its Location header.
fn ngsi_path(created: &Response) -> String {
    created.headers()["location"]
        .to_str()
        .expect("location")
        .trim_start_matches("/ngsi-ld/v1")
        .to_owned()
}

/// The subscription at `path` once its `notification.{counter}` is 1, asking every 100 ms at
/// most `tries` times (the last answer either way).
async fn counted_once(broker: &Broker, path: &str, counter: &str, tries: usize) -> Value {
    let mut shown = Value::Null;
    for _ in 0..tries {
        shown = broker.get_json(path).await;
        if shown["notification"][counter] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    shown
}

async fn a_slow_receiver_gets_every_notification_under_load(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    // 300 changes sent at once; the receiver takes 200 ms over each notification.
    let (url, seen) = slow_receiver(200, std::time::Duration::from_millis(200)).await;
    let created = broker
        .send(
            Method::POST,
            "/subscriptions",
            json!({"type": "Subscription", "entities": [{"type": "ParkingSpot"}],
                   "watchedAttributes": ["reading"],
                   "notification": {"attributes": ["reading"], "format": "keyValues", "endpoint": {"uri": url}}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let sub_path = ngsi_path(&created);
    let spots = 10;
    for i in 0..spots {
        let created = broker
            .send(Method::POST, "/entities", spot(i, 120.38, 36.06, "free", 1))
            .await;
        assert_eq!(created.status(), 201);
    }
    let changes = 300_u32;
    let mut sending = tokio::task::JoinSet::new();
    for reading in 0..changes {
        let request = broker
            .call(
                Method::POST,
                &format!(
                    "/entities/urn:ngsi-ld:ParkingSpot:qd-{:03}/attrs",
                    reading % spots
                ),
                Some(&broker.token),
            )
            .header("content-type", "application/json")
            .body(json!({"reading": reading}).to_string());
        sending.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    }
    while let Some(sent) = sending.join_next().await {
        assert_eq!(sent.expect("joined").expect("sent"), 204);
    }
    // Every change arrives exactly once, and the subscription counts each.
    let received = wait_for(|| {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        (seen.len() >= changes as usize).then(|| seen.clone())
    })
    .await;
    let mut readings: Vec<u64> = received
        .iter()
        .filter_map(|(notification, _)| notification["data"][0]["reading"].as_u64())
        .collect();
    readings.sort_unstable();
    assert_eq!(readings, (0..u64::from(changes)).collect::<Vec<_>>());
    let mut shown = Value::Null;
    for _ in 0..50 {
        shown = broker.get_json(&sub_path).await;
        if shown["notification"]["timesSent"] == changes {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(shown["notification"]["timesSent"], changes, "{shown}");
    assert!(
        shown["notification"]
            .get("timesFailed")
            .is_none_or(|n| n == 0),
        "{shown}"
    );
    assert_eq!(shown["notification"]["status"], "ok", "{shown}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        seen.lock().unwrap_or_else(|p| p.into_inner()).len(),
        changes as usize,
        "nothing twice"
    );
    broker.server.cleanup().await;
}

/// Table 5.2.12-1: `notificationTrigger` chooses which changes notify: a subscription to
/// creations hears of the new entity only, one to updates of its change only.
async fn notification_triggers_choose_what_is_notified(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let (url, seen) = receiver(200).await;
    // `q` is matched against the entity as it was when it is deleted (route 1路), so the second
    // entityDeleted subscription (route 2路) hears nothing.
    for (id, trigger, q) in [
        ("created", "entityCreated", "speed>0"),
        ("updated", "entityUpdated", "speed>0"),
        ("changes", "entityUpdated", "speed>0"),
        ("attribute-deleted", "attributeDeleted", "route==\"1路\""),
        ("entity-deleted", "entityDeleted", "route==\"1路\""),
        ("other-deleted", "entityDeleted", "route==\"2路\""),
    ] {
        let subscribed = broker
            .send(Method::POST, "/subscriptions", json!({"id": format!("urn:ngsi-ld:Subscription:{id}"),
                "type": "Subscription", "entities": [{"type": "Bus"}], "notificationTrigger": [trigger],
                "q": q, "notification": {"endpoint": {"uri": url}, "showChanges": id == "changes"}}))
            .await;
        assert_eq!(subscribed.status(), 201);
    }
    let bus = json!({"id": "urn:ngsi-ld:Bus:b1", "type": "Bus", "speed": 30, "route": "1路"});
    assert_eq!(
        broker.send(Method::POST, "/entities", bus).await.status(),
        201
    );
    let updated = broker
        .send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:Bus:b1/attrs",
            json!({"speed": 35}),
        )
        .await;
    assert_eq!(updated.status(), 204);
    let removed = broker
        .send(
            Method::DELETE,
            "/entities/urn:ngsi-ld:Bus:b1/attrs/speed",
            json!({}),
        )
        .await;
    assert_eq!(removed.status(), 204);
    let deleted = broker
        .send(Method::DELETE, "/entities/urn:ngsi-ld:Bus:b1", json!({}))
        .await;
    assert_eq!(deleted.status(), 204);
    let heard = wait_for(|| {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        (seen.len() >= 6).then(|| seen.clone())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        seen.lock().unwrap_or_else(|p| p.into_inner()).len(),
        6,
        "no other notification"
    );
    let by = |subscription: &str| {
        let mut data: Vec<Value> = heard
            .iter()
            .filter(|(n, _)| n["subscriptionId"] == subscription)
            .map(|(n, _)| n["data"][0].clone())
            .collect();
        // Deliveries may arrive out of order: the deletion of the entity last.
        data.sort_by_key(|d| d.get("deletedAt").is_some());
        data
    };
    let created = by("urn:ngsi-ld:Subscription:created");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["speed"]["value"], 30);
    let updated = by("urn:ngsi-ld:Subscription:updated");
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["speed"]["value"], 35);
    assert!(updated[0]["speed"].get("previousValue").is_none());
    // showChanges: what the changed attribute held before; the unchanged one as it is.
    let changes = by("urn:ngsi-ld:Subscription:changes");
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0]["speed"],
        json!({"type": "Property", "value": 35, "previousValue": 30})
    );
    assert_eq!(
        changes[0]["route"],
        json!({"type": "Property", "value": "1路"})
    );
    // entityDeleted (clause 5.8.6): the entity's id and type, and when it was deleted.
    let gone = by("urn:ngsi-ld:Subscription:entity-deleted");
    assert_eq!(gone.len(), 1);
    let members: Vec<&String> = gone[0]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(members.len(), 3, "{}", gone[0]);
    assert_eq!(gone[0]["id"], "urn:ngsi-ld:Bus:b1");
    assert_eq!(gone[0]["type"], "Bus");
    assert!(
        gone[0]["deletedAt"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    // attributeDeleted: the deleted attribute with the NGSI-LD Null as its value, beside the
    // others; then the entity's deletion, every attribute it had left as the Null.
    let attributes = by("urn:ngsi-ld:Subscription:attribute-deleted");
    assert_eq!(attributes.len(), 2, "{attributes:?}");
    assert_eq!(
        attributes[0]["speed"],
        json!({"type": "Property", "value": "urn:ngsi-ld:null"})
    );
    assert_eq!(attributes[0]["route"]["value"], "1路");
    assert!(attributes[0].get("deletedAt").is_none());
    assert_eq!(
        attributes[1]["route"],
        json!({"type": "Property", "value": "urn:ngsi-ld:null"})
    );
    assert!(attributes[1].get("speed").is_none());
    assert!(attributes[1]["deletedAt"].is_string());

    // One instance (datasetId) deleted while the others stay: a deletion of that instance,
    // not an update of the attribute.
    let (tram_url, tram_seen) = receiver(200).await;
    for (id, trigger) in [
        ("tram-deleted", "attributeDeleted"),
        ("tram-updated", "attributeUpdated"),
    ] {
        let subscribed = broker
            .send(Method::POST, "/subscriptions", json!({"id": format!("urn:ngsi-ld:Subscription:{id}"),
                "type": "Subscription", "entities": [{"type": "Tram"}], "notificationTrigger": [trigger],
                "notification": {"endpoint": {"uri": tram_url}}}))
            .await;
        assert_eq!(subscribed.status(), 201);
    }
    let tram = json!({"id": "urn:ngsi-ld:Tram:t1", "type": "Tram", "load": [
        {"type": "Property", "value": 40},
        {"type": "Property", "value": 12, "datasetId": "urn:ngsi-ld:Dataset:rear"}]});
    assert_eq!(
        broker.send(Method::POST, "/entities", tram).await.status(),
        201
    );
    let removed = broker
        .send(
            Method::DELETE,
            "/entities/urn:ngsi-ld:Tram:t1/attrs/load?datasetId=urn:ngsi-ld:Dataset:rear",
            json!({}),
        )
        .await;
    assert_eq!(removed.status(), 204);
    let heard = wait_for(|| {
        tram_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .cloned()
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        tram_seen.lock().unwrap_or_else(|p| p.into_inner()).len(),
        1,
        "no update notification"
    );
    assert_eq!(
        heard.0["subscriptionId"],
        "urn:ngsi-ld:Subscription:tram-deleted"
    );
    assert_eq!(
        heard.0["data"][0]["load"],
        json!({"type": "Property", "value": "urn:ngsi-ld:null", "datasetId": "urn:ngsi-ld:Dataset:rear"})
    );
    broker.server.cleanup().await;
}

async fn subscriptions_notify_and_count_every_delivery(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let (url, seen) = receiver(200).await;
    let subscribe = |body: Value| broker.send(Method::POST, "/subscriptions", body);
    // Refused definitions.
    for (body, reason) in [
        (
            json!({"type": "Subscription", "entities": [{"type": "ParkingSpot"}]}),
            "notification",
        ),
        (
            json!({"type": "Subscription", "notification": {"endpoint": {"uri": url}}}),
            "entities or watchedAttributes",
        ),
        (
            json!({"type": "Subscription", "entities": [{"type": "ParkingSpot"}], "notification": {"endpoint": {"uri": "ftp://x"}}}),
            "http",
        ),
        (
            json!({"type": "Subscription", "entities": [{"type": "ParkingSpot"}], "q": "a>>1", "notification": {"endpoint": {"uri": url}}}),
            "q",
        ),
    ] {
        let problem = expect_ngsi_error(subscribe(body).await, 400, "BadRequestData").await;
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(reason),
            "{problem}"
        );
    }
    let created = subscribe(json!({
        "type": "Subscription", "subscriptionName": "满位提醒",
        "entities": [{"type": "ParkingSpot"}], "watchedAttributes": ["occupancy"],
        "q": "occupancy==\"occupied\"",
        "notification": {"attributes": ["occupancy"], "format": "keyValues", "endpoint": {"uri": url, "accept": "application/json"}}
    }))
    .await;
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let sub_path = location.trim_start_matches("/ngsi-ld/v1").to_owned();

    broker
        .send(
            Method::POST,
            "/entities",
            spot(1, 120.384, 36.062, "free", 1),
        )
        .await;
    // A change of a watched attribute that matches q: one notification.
    broker
        .send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:ParkingSpot:qd-001/attrs",
            json!({"occupancy": "occupied"}),
        )
        .await;
    let (notification, link) = wait_for(|| {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .cloned()
    })
    .await;
    assert_eq!(notification["type"], "Notification");
    assert_eq!(
        notification["data"],
        json!([{"id": "urn:ngsi-ld:ParkingSpot:qd-001", "type": "ParkingSpot", "occupancy": "occupied"}])
    );
    assert!(link.contains(CORE), "{link}");
    // Not watched, or not matching q: nothing.
    broker
        .send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:ParkingSpot:qd-001/attrs",
            json!({"capacity": 9}),
        )
        .await;
    broker
        .send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:ParkingSpot:qd-001/attrs",
            json!({"occupancy": "free"}),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(seen.lock().unwrap_or_else(|p| p.into_inner()).len(), 1);
    let shown = broker.get_json(&sub_path).await;
    assert_eq!(shown["notification"]["timesSent"], 1);
    assert_eq!(shown["notification"]["status"], "ok");
    assert!(shown["notification"]["lastSuccess"].is_string());
    assert_eq!(shown["watchedAttributes"], json!(["occupancy"]));
    assert_eq!(shown["status"], "active");

    // A receiver that fails: retried, then counted as failed, visible on the subscription.
    let (failing, failed_seen) = receiver(500).await;
    let broken = subscribe(
        json!({"type": "Subscription", "entities": [{"type": "ParkingSpot"}],
        "notification": {"endpoint": {"uri": failing}}}),
    )
    .await;
    let broken_path = ngsi_path(&broken);
    broker
        .send(
            Method::POST,
            "/entities",
            spot(2, 120.384, 36.062, "free", 1),
        )
        .await;
    let failed = counted_once(&broker, &broken_path, "timesFailed", 100).await;
    assert_eq!(failed["notification"]["timesFailed"], 1, "{failed}");
    assert_eq!(failed["notification"]["status"], "failed");
    assert!(failed["notification"]["lastFailure"].is_string());
    assert_eq!(
        failed_seen.lock().unwrap_or_else(|p| p.into_inner()).len(),
        4,
        "tried 4 times"
    );

    // Paused: no notifications; deleted: gone.
    let paused = broker
        .send(Method::PATCH, &sub_path, json!({"isActive": false}))
        .await;
    assert_eq!(paused.status(), 204);
    assert_eq!(broker.get_json(&sub_path).await["status"], "paused");
    broker
        .send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:ParkingSpot:qd-001/attrs",
            json!({"occupancy": "occupied"}),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(seen.lock().unwrap_or_else(|p| p.into_inner()).len(), 1);
    let listed: Value = broker.get_json("/subscriptions").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let deleted = broker
        .call(Method::DELETE, &sub_path, Some(&broker.token))
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 204);
    expect_ngsi_error(broker.get(&sub_path).await, 404, "ResourceNotFound").await;
    // Another department does not see this department's subscriptions.
    let admin = broker.server.admin().await;
    let water = broker
        .server
        .user(&admin, "water.op", "water", "operator")
        .await;
    let theirs: Value = broker
        .call(Method::GET, "/subscriptions", Some(&water))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(theirs, json!([]));
    broker.server.cleanup().await;
}

async fn sensor_data_reaches_entities_and_fires_subscriptions(backend: TestBackend) {
    let server = TestServer::start_with(backend, |c| c.context_mirror_ms = 50).await;
    let admin = server.admin().await;
    let token = server
        .user(&admin, "traffic.op", "transport", "operator")
        .await;
    let broker = Broker { server, token };
    let (url, seen) = receiver(200).await;
    let subscribed = broker
        .send(Method::POST, "/subscriptions", json!({"type": "Subscription",
            "entities": [{"type": "ParkingSpot"}], "watchedAttributes": ["occupied"], "q": "occupied==true",
            "notification": {"endpoint": {"uri": url}, "attributes": ["occupied"]}}))
        .await;
    assert_eq!(subscribed.status(), 201);
    let created = broker
        .server
        .request(
            Method::POST,
            "/api/v1/devices",
            Some(&broker.token),
            Some(json!({
            "id": "bay-77", "name": "香港中路 77 号车位", "profile": "parking-space",
            "location": {"lon": 120.3845, "lat": 36.0620}})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let device_token = created.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let observed = yunnao_core::time::now_ms() - 1000;
    let sent = broker
        .server
        .client
        .post(
            broker
                .server
                .url(&format!("/api/v1/{device_token}/telemetry")),
        )
        .header("content-type", "application/json")
        .body(json!({"ts": observed, "values": {"occupied": 1}}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(sent.status(), 200);

    let (notification, _) = wait_for(|| {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .cloned()
    })
    .await;
    let data = &notification["data"][0];
    assert_eq!(data["id"], "urn:ngsi-ld:ParkingSpot:bay-77");
    assert_eq!(data["occupied"]["value"], true);
    assert_eq!(
        data["occupied"]["observedAt"],
        yunnao_core::time::rfc3339_ms(observed)
    );

    let entity = broker
        .get_json("/entities/urn:ngsi-ld:ParkingSpot:bay-77")
        .await;
    assert_eq!(entity["name"]["value"], "香港中路 77 号车位");
    assert_eq!(
        entity["location"]["value"]["coordinates"],
        json!([120.3845, 36.062])
    );
    assert_eq!(entity["refDevice"]["object"], "urn:ngsi-ld:Device:bay-77");
    // The device's department owns the mirror: others do not see it.
    let water = broker
        .server
        .user(&admin, "water.op", "water", "operator")
        .await;
    let hidden = broker
        .call(
            Method::GET,
            "/entities/urn:ngsi-ld:ParkingSpot:bay-77",
            Some(&water),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(hidden.status(), 404);
    broker.server.cleanup().await;
}

async fn remote_contexts_come_only_from_the_allow_list_and_are_cached(backend: TestBackend) {
    // A context server on a free port that counts how often it is asked.
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let app = axum::Router::new().route(
        "/contexts/parking.jsonld",
        axum::routing::get(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                axum::Json(json!({"@context": [parking_context(), CORE]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let allowed = format!("{origin}/contexts/");
    let server =
        TestServer::start_with(backend, |c| c.ngsi_ld_context_allow = allowed.clone()).await;
    let admin = server.admin().await;
    let token = server
        .user(&admin, "traffic.op", "transport", "operator")
        .await;
    let broker = Broker { server, token };
    let link = format!(
        "<{origin}/contexts/parking.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
    );
    for i in 1..=3 {
        let created = broker
            .call(Method::POST, "/entities", Some(&broker.token))
            .header("content-type", "application/json")
            .header("link", link.clone())
            .body(json!({"id": format!("urn:ngsi-ld:ParkingSpot:r-{i}"), "type": "ParkingSpot", "occupancy": "free"}).to_string())
            .send()
            .await
            .expect("sent");
        assert_eq!(created.status(), 201);
    }
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "fetched once, then cached"
    );
    // The terms of the remote context were used: without it, the full IRIs.
    let plain = broker
        .get_json("/entities/urn:ngsi-ld:ParkingSpot:r-1")
        .await;
    assert_eq!(
        plain["type"],
        "https://smartdatamodels.org/dataModel.Parking/ParkingSpot"
    );
    let compacted: Value = broker
        .call(
            Method::GET,
            "/entities/urn:ngsi-ld:ParkingSpot:r-1",
            Some(&broker.token),
        )
        .header("link", link.clone())
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(compacted["type"], "ParkingSpot");
    assert_eq!(compacted["occupancy"]["value"], "free");
    // Not on the allow-list: refused, never fetched.
    let elsewhere = broker
        .call(Method::POST, "/entities", Some(&broker.token))
        .header("content-type", "application/json")
        .header(
            "link",
            format!("<{origin}/other/ctx.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\""),
        )
        .body(json!({"id": "urn:ngsi-ld:ParkingSpot:r-9", "type": "ParkingSpot"}).to_string())
        .send()
        .await
        .expect("sent");
    expect_ngsi_error(elsewhere, 503, "LdContextNotAvailable").await;
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The kept context is listed, served by its URL, and dropped on request (reload): the
    // next request that names it fetches it again.
    let url = format!("{origin}/contexts/parking.jsonld");
    let cached = broker.get_json("/jsonldContexts?kind=Cached").await;
    assert_eq!(cached, json!([url]));
    let served = broker
        .get_json(&format!("/jsonldContexts/{}", urlencode(&url)))
        .await;
    assert_eq!(served["@context"][0], parking_context());
    let dropped = broker
        .call(
            Method::DELETE,
            &format!("/jsonldContexts/{}", urlencode(&url)),
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(dropped.status(), 204);
    assert_eq!(
        broker.get_json("/jsonldContexts?kind=Cached").await,
        json!([])
    );
    let again = broker
        .call(
            Method::GET,
            "/entities/urn:ngsi-ld:ParkingSpot:r-1",
            Some(&broker.token),
        )
        .header("link", link.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), 200);
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);
    broker.server.cleanup().await;
}

/// A change to an entity commits together with its audit record (one transaction); a refused
/// change writes nothing but is audited by the audit layer; the chain still verifies.
async fn entity_changes_commit_with_their_audit_records(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let admin = broker.server.admin().await;
    let id = "urn:ngsi-ld:ParkingSpot:qd-007";
    let created = broker
        .send(Method::POST, "/entities", spot(7, 120.38, 36.06, "free", 4))
        .await;
    assert_eq!(created.status(), 201);
    for occupancy in ["occupied", "free"] {
        let updated = broker
            .send(
                Method::PATCH,
                &format!("/entities/{id}/attrs"),
                json!({"occupancy": {"type": "Property", "value": occupancy}}),
            )
            .await;
        assert_eq!(updated.status(), 204);
    }
    let merged = broker
        .send(
            Method::PATCH,
            &format!("/entities/{id}"),
            json!({"capacity": {"type": "Property", "value": 5}}),
        )
        .await;
    assert_eq!(merged.status(), 204);
    let missing = broker
        .send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:ParkingSpot:nowhere/attrs",
            json!({"occupancy": {"type": "Property", "value": "free"}}),
        )
        .await;
    assert_eq!(missing.status(), 404);

    let records: Vec<Value> = broker
        .server
        .request(Method::GET, "/api/v1/audit?limit=1000", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    let entity_records: Vec<(String, String, String, String)> = records
        .iter()
        .filter(|r| {
            r["action"]
                .as_str()
                .is_some_and(|a| a.contains("ngsi") || a.contains("/ngsi-ld/"))
        })
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or("").to_owned(),
                r["action"].as_str().unwrap_or("").to_owned(),
                r["target"].as_str().unwrap_or("").to_owned(),
                r["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let target = format!("entity:city/{id}");
    let expected: Vec<(String, String, String, String)> = [
        ("ngsi.entity.create", target.as_str(), "success"),
        ("ngsi.attrs.update", target.as_str(), "success"),
        ("ngsi.attrs.update", target.as_str(), "success"),
        ("ngsi.entity.merge", target.as_str(), "success"),
        (
            "PATCH /ngsi-ld/v1/entities/{entityId}/attrs",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:ParkingSpot:nowhere/attrs",
            "rejected",
        ),
    ]
    .iter()
    .map(|(action, target, outcome)| {
        (
            "traffic.op".to_owned(),
            (*action).to_owned(),
            (*target).to_owned(),
            (*outcome).to_owned(),
        )
    })
    .collect();
    assert_eq!(entity_records, expected);
    // Each record carries its own request's id.
    let ids: std::collections::HashSet<&str> = records
        .iter()
        .filter(|r| r["target"] == target.as_str())
        .filter_map(|r| r["request_id"].as_str())
        .filter(|id| !id.is_empty())
        .collect();
    assert_eq!(ids.len(), 4, "{records:?}");

    let report: Value = broker
        .server
        .request(Method::GET, "/api/v1/audit/verify", Some(&admin), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(report["ok"], true, "{report}");
}

/// Every kind of write shows in the next retrieval by id, though retrievals are served from
/// the broker's cache of recently read entities; and readers racing writers never see a value
/// go back.
async fn retrievals_show_every_write_at_once(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let id = "urn:ngsi-ld:ParkingSpot:qd-011";
    let path = format!("/entities/{id}");
    let occupancy = |entity: &Value| entity["occupancy"]["value"].clone();
    let batch_spot = |value: &str| {
        json!([{"id": id, "type": "ParkingSpot",
            "occupancy": {"type": "Property", "value": value}}])
    };
    // (what the write is, method, path, body, expected status, occupancy read back after it)
    let steps: Vec<(&str, Method, String, Value, u16, Value)> = vec![
        (
            "create",
            Method::POST,
            "/entities".into(),
            spot(11, 120.38, 36.06, "free", 2),
            201,
            json!("free"),
        ),
        (
            "update attrs",
            Method::PATCH,
            format!("{path}/attrs"),
            json!({"occupancy": {"type": "Property", "value": "occupied"}}),
            204,
            json!("occupied"),
        ),
        (
            "append attrs",
            Method::POST,
            format!("{path}/attrs"),
            json!({"occupancy": {"type": "Property", "value": "closed"}}),
            204,
            json!("closed"),
        ),
        (
            "partial attribute update",
            Method::PATCH,
            format!("{path}/attrs/occupancy"),
            json!({"value": "free"}),
            204,
            json!("free"),
        ),
        (
            "replace attribute",
            Method::PUT,
            format!("{path}/attrs/occupancy"),
            json!({"type": "Property", "value": "reserved"}),
            204,
            json!("reserved"),
        ),
        (
            "delete attribute",
            Method::DELETE,
            format!("{path}/attrs/occupancy"),
            Value::Null,
            204,
            Value::Null,
        ),
        (
            "merge entity",
            Method::PATCH,
            path.clone(),
            json!({"occupancy": {"type": "Property", "value": "occupied"}}),
            204,
            json!("occupied"),
        ),
        (
            "replace entity",
            Method::PUT,
            path.clone(),
            json!({"type": "ParkingSpot", "occupancy": {"type": "Property", "value": "free"}}),
            204,
            json!("free"),
        ),
        (
            "batch update",
            Method::POST,
            "/entityOperations/update".into(),
            batch_spot("closed"),
            204,
            json!("closed"),
        ),
        (
            "batch upsert",
            Method::POST,
            "/entityOperations/upsert?options=update".into(),
            batch_spot("reserved"),
            204,
            json!("reserved"),
        ),
    ];
    for (what, method, target, body, status, expected) in steps {
        let response = if body.is_null() {
            broker
                .call(method, &target, Some(&broker.token))
                .send()
                .await
                .expect("sent")
        } else {
            broker.send(method, &target, body).await
        };
        assert_eq!(
            response.status(),
            status,
            "{what}: {}",
            response.text().await.unwrap_or_default()
        );
        let read = broker.get_json(&path).await;
        assert_eq!(occupancy(&read), expected, "after {what}: {read}");
        // Read twice: the second is served from the cache.
        assert_eq!(
            broker.get_json(&path).await,
            read,
            "after {what}, read again"
        );
    }
    let deleted = broker
        .call(Method::DELETE, &path, Some(&broker.token))
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 204);
    expect_ngsi_error(broker.get(&path).await, 404, "ResourceNotFound").await;
    let again = broker
        .send(
            Method::POST,
            "/entities",
            spot(11, 120.38, 36.06, "occupied", 2),
        )
        .await;
    assert_eq!(again.status(), 201);
    assert_eq!(occupancy(&broker.get_json(&path).await), json!("occupied"));
    let batch_deleted = broker
        .send(Method::POST, "/entityOperations/delete", json!([id]))
        .await;
    assert_eq!(batch_deleted.status(), 204);
    expect_ngsi_error(broker.get(&path).await, 404, "ResourceNotFound").await;

    // Writers count up one attribute each while readers keep reading: every reader sees each
    // count only go up, and once the writers are done everyone reads their last counts.
    broker
        .send(
            Method::POST,
            "/entities",
            spot(12, 120.38, 36.06, "free", 2),
        )
        .await;
    let path = "/entities/urn:ngsi-ld:ParkingSpot:qd-012".to_owned();
    let writers = 4;
    let counts = 40;
    for writer in 0..writers {
        let appended = broker
            .send(
                Method::POST,
                &format!("{path}/attrs"),
                json!({format!("count{writer}"): 0}),
            )
            .await;
        assert_eq!(appended.status(), 204);
    }
    let broker = std::sync::Arc::new(broker);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..6 {
        let (broker, done, path) = (broker.clone(), done.clone(), path.clone());
        readers.push(tokio::spawn(async move {
            let mut seen = vec![0i64; writers];
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || reads == 0 {
                let entity = broker.get_json(&format!("{path}?options=keyValues")).await;
                for (writer, last) in seen.iter_mut().enumerate() {
                    let count = entity[format!("count{writer}")].as_i64().expect("count");
                    assert!(
                        count >= *last,
                        "count{writer} went back from {last} to {count}"
                    );
                    *last = count;
                }
                reads += 1;
            }
        }));
    }
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (broker, path) = (broker.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            for count in 1..=counts {
                let response = broker
                    .send(
                        Method::PATCH,
                        &format!("{path}/attrs"),
                        json!({format!("count{writer}"): count}),
                    )
                    .await;
                assert_eq!(response.status(), 204);
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for reader in readers {
        reader.await.expect("reader");
    }
    let last = broker.get_json(&format!("{path}?options=keyValues")).await;
    for writer in 0..writers {
        assert_eq!(last[format!("count{writer}")], json!(counts), "{last}");
    }
}

/// Notifications to an MQTT broker (CIM 009's MQTT binding: `metadata` beside `body`), counted
/// like HTTP ones: delivered when the broker acknowledged them (QoS 1), failed and visible
/// when it cannot be reached. Needs YUNNAO_TEST_MQTT_URL (Mosquitto in CI).
async fn subscriptions_notify_over_mqtt(backend: TestBackend) {
    let Ok(mqtt_url) = std::env::var("YUNNAO_TEST_MQTT_URL") else {
        eprintln!("NOT RUN: needs YUNNAO_TEST_MQTT_URL");
        return;
    };
    let address = mqtt_url
        .trim_start_matches("mqtt://")
        .trim_end_matches('/')
        .to_owned();
    let (host, port) = address
        .split_once(':')
        .unwrap_or((address.as_str(), "1883"));
    let port: u16 = port.parse().expect("port");
    let broker = Broker::start(backend).await;
    let topic = format!("yunnao/test/notify/{}", uuid_like());

    // A department's listener on the broker.
    let mut options = rumqttc::MqttOptions::new(format!("listener-{}", uuid_like()), host, port);
    options.set_keep_alive(std::time::Duration::from_secs(30));
    let (client, mut events) = rumqttc::AsyncClient::new(options, 16);
    client
        .subscribe(topic.clone(), rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let listening = std::sync::Arc::new(tokio::sync::Notify::new());
    let ready = listening.clone();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => ready.notify_one(),
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                    if let Ok(value) = serde_json::from_slice(&publish.payload) {
                        let _ = sender.send(value);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(std::time::Duration::from_secs(10), listening.notified())
        .await
        .expect("subscribed on the MQTT broker");

    // Refused endpoints.
    for (uri, info, reason) in [
        (format!("mqtt://{address}"), json!([]), "topic"),
        (format!("mqtt://{address}/a/+/b"), json!([]), "wildcards"),
        (format!("mqtts://{address}/t"), json!([]), "TLS"),
        (
            format!("mqtt://{address}/t"),
            json!([{"key": "MQTT-QoS", "value": "3"}]),
            "MQTT-QoS",
        ),
        (
            format!("mqtt://{address}/t"),
            json!([{"key": "MQTT-Version", "value": "mqtt5.0"}]),
            "mqtt3.1.1",
        ),
    ] {
        let refused = broker
            .send(
                Method::POST,
                "/subscriptions",
                json!({"type": "Subscription",
                "entities": [{"type": "ParkingSpot"}],
                "notification": {"endpoint": {"uri": uri, "notifierInfo": info}}}),
            )
            .await;
        let problem = expect_ngsi_error(refused, 400, "BadRequestData").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(reason),
            "{uri}: {problem}"
        );
    }

    let created = broker
        .send(
            Method::POST,
            "/subscriptions",
            json!({"type": "Subscription",
            "entities": [{"type": "ParkingSpot"}], "watchedAttributes": ["occupancy"],
            "notification": {"endpoint": {"uri": format!("mqtt://{address}/{topic}"),
                "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}]}}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let sub_path = ngsi_path(&created);
    let shown = broker.get_json(&sub_path).await;
    assert_eq!(
        shown["notification"]["endpoint"]["notifierInfo"][0]["value"], "1",
        "{shown}"
    );
    broker
        .send(
            Method::POST,
            "/entities",
            spot(21, 120.384, 36.062, "free", 1),
        )
        .await;
    let message = tokio::time::timeout(std::time::Duration::from_secs(15), received.recv())
        .await
        .expect("a notification on the topic")
        .expect("message");
    assert_eq!(
        message["metadata"]["Content-Type"], "application/json",
        "{message}"
    );
    assert!(
        message["metadata"]["Link"]
            .as_str()
            .unwrap_or_default()
            .contains(CORE),
        "{message}"
    );
    assert_eq!(message["body"]["type"], "Notification");
    assert_eq!(message["body"]["subscriptionId"], shown["id"]);
    assert_eq!(
        message["body"]["data"][0]["id"],
        "urn:ngsi-ld:ParkingSpot:qd-021"
    );
    assert_eq!(message["body"]["data"][0]["occupancy"]["value"], "free");
    let counted = counted_once(&broker, &sub_path, "timesSent", 100).await;
    assert_eq!(counted["notification"]["timesSent"], 1, "{counted}");
    assert_eq!(counted["notification"]["status"], "ok");
    assert!(counted["notification"]["lastSuccess"].is_string());

    // A broker that is not there: retried, then failed and visible on the subscription.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let broken = broker
        .send(
            Method::POST,
            "/subscriptions",
            json!({"type": "Subscription",
            "entities": [{"type": "ParkingSpot"}],
            "notification": {"endpoint": {"uri": format!("mqtt://127.0.0.1:{closed}/lost")}}}),
        )
        .await;
    assert_eq!(broken.status(), 201);
    let broken_path = ngsi_path(&broken);
    broker
        .send(
            Method::POST,
            "/entities",
            spot(22, 120.384, 36.062, "free", 1),
        )
        .await;
    let failed = counted_once(&broker, &broken_path, "timesFailed", 150).await;
    assert_eq!(failed["notification"]["timesFailed"], 1, "{failed}");
    assert_eq!(failed["notification"]["status"], "failed");
    assert!(failed["notification"]["lastFailure"].is_string());
    broker.server.cleanup().await;
}

/// Sends `request` as written (what an HTTP client library would not send) and reads the
/// whole answer.
async fn raw_http(broker: &Broker, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = broker.server.url("").replace("http://", "");
    let address = address.trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connected");
    stream.write_all(request.as_bytes()).await.expect("written");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

async fn subscriptions_hear_only_what_their_department_may_read(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let admin = broker.server.admin().await;
    let water = broker
        .server
        .user(&admin, "water.op", "water", "operator")
        .await;
    let water_admin = broker
        .server
        .user(&admin, "water.admin", "water", "dept_admin")
        .await;
    let (transport_url, transport_seen) = receiver(200).await;
    let (admin_url, admin_seen) = receiver(200).await;
    let subscription = |url: &str| {
        json!({"type": "Subscription", "entities": [{"type": "WaterObserved"}],
               "notification": {"format": "keyValues", "endpoint": {"uri": url}}})
        .to_string()
    };
    let as_user = |token: &str, method: Method, path: &str, body: String| {
        broker
            .call(method, path, Some(token))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // The transport department and a platform admin both subscribe to water observations.
    for (token, url) in [(&broker.token, &transport_url), (&admin, &admin_url)] {
        let created = as_user(token, Method::POST, "/subscriptions", subscription(url))
            .await
            .expect("sent");
        assert_eq!(created.status(), 201);
    }
    // The water department's own reservoir: the admin hears of it, transport does not.
    let id = "urn:ngsi-ld:WaterObserved:laoshan-reservoir";
    let reservoir = json!({"id": id, "type": "WaterObserved",
                           "level": {"type": "Property", "value": 12.5}});
    let created = as_user(&water, Method::POST, "/entities", reservoir.to_string())
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);
    let heard = wait_for(|| {
        admin_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .cloned()
    })
    .await;
    assert_eq!(heard.0["data"][0]["id"], id);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        transport_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty(),
        "another department's entity is not notified"
    );
    // Published as open data, its next change reaches transport too.
    let published = broker
        .server
        .client
        .put(
            broker
                .server
                .url(&format!("/api/v1/context/entities/{id}/open-data")),
        )
        .bearer_auth(&water_admin)
        .header("content-type", "application/json")
        .body(json!({"open": true}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(published.status(), 204);
    let updated = as_user(
        &water,
        Method::PATCH,
        &format!("/entities/{id}/attrs"),
        json!({"level": 13.0}).to_string(),
    )
    .await
    .expect("sent");
    assert_eq!(updated.status(), 204);
    let heard = wait_for(|| {
        transport_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .cloned()
    })
    .await;
    assert_eq!(
        heard.0["data"],
        json!([{"id": id, "type": "WaterObserved", "level": 13.0}])
    );
    wait_for(|| (admin_seen.lock().unwrap_or_else(|p| p.into_inner()).len() == 2).then_some(()))
        .await;
    broker.server.cleanup().await;
}

async fn registration_subscriptions_hear_of_matching_registrations(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let (url, seen) = receiver(200).await;
    let registration = |name: &str, information: Value| {
        json!({"id": format!("urn:ngsi-ld:ContextSourceRegistration:{name}"),
               "type": "ContextSourceRegistration", "information": information,
               "endpoint": "http://sources.qingdao.example:1026"})
    };
    let registration_path =
        |name: &str| format!("/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:{name}");
    let building = json!({"entities": [{"type": "Building"}], "propertyNames": ["name", "floors"]});
    let bus = json!({"entities": [{"type": "Bus", "idPattern": "urn:ngsi-ld:Bus:qd-.*"}]});
    let register = |body: Value| broker.send(Method::POST, "/csourceRegistrations", body);
    assert_eq!(
        register(registration("city-archive", json!([building])))
            .await
            .status(),
        201
    );
    for (body, reason) in [
        (
            json!({"type": "Subscription", "entities": [{"type": "Building"}], "notificationTrigger": ["entityCreated"],
                   "notification": {"endpoint": {"uri": url}}}),
            "notificationTrigger",
        ),
        (
            json!({"type": "Subscription", "entities": [{"type": "Building"}], "temporalQ": {"timeAt": "2026-01-01T00:00:00Z"},
                   "notification": {"endpoint": {"uri": url}}}),
            "timerel",
        ),
    ] {
        let refused = broker
            .send(Method::POST, "/csourceSubscriptions", body)
            .await;
        let problem = expect_ngsi_error(refused, 400, "BadRequestData").await;
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(reason),
            "{problem}"
        );
    }
    // Subscribed: the registration matching now is notified at once.
    let created = broker
        .send(
            Method::POST,
            "/csourceSubscriptions",
            json!({"type": "Subscription", "entities": [{"type": "Building"}], "watchedAttributes": ["floors"],
                   "notification": {"endpoint": {"uri": url}}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let path = ngsi_path(&created);
    assert!(path.starts_with("/csourceSubscriptions/"), "{path}");
    let subscription_id = path.trim_start_matches("/csourceSubscriptions/").to_owned();
    let nth = |n: usize| {
        let seen = seen.clone();
        wait_for(move || {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(n)
                .map(|(v, _)| v.clone())
        })
    };
    let heard = nth(0).await;
    assert_eq!(heard["type"], "ContextSourceNotification");
    assert_eq!(heard["subscriptionId"], subscription_id);
    assert_eq!(heard["triggerReason"], "newlyMatching");
    assert!(heard["notifiedAt"].is_string());
    assert_eq!(
        heard["data"][0]["id"],
        "urn:ngsi-ld:ContextSourceRegistration:city-archive"
    );
    assert_eq!(heard["data"][0]["information"], json!([building]));
    // A new registration: only its matching information is shown.
    assert_eq!(
        register(registration("mixed", json!([bus, building])))
            .await
            .status(),
        201
    );
    let heard = nth(1).await;
    assert_eq!(heard["triggerReason"], "newlyMatching");
    assert_eq!(
        heard["data"][0]["id"],
        "urn:ngsi-ld:ContextSourceRegistration:mixed"
    );
    assert_eq!(heard["data"][0]["information"], json!([building]));
    // Not heard of: buses only, and buildings without the watched attribute.
    let names_only = json!({"entities": [{"type": "Building"}], "propertyNames": ["name"]});
    for (name, information) in [("buses", json!([bus])), ("names", json!([names_only]))] {
        assert_eq!(
            register(registration(name, information)).await.status(),
            201
        );
    }
    // Updated, then no longer matching (changed away, and deleted).
    let changed = broker
        .send(
            Method::PATCH,
            &registration_path("city-archive"),
            json!({"endpoint": "http://archive.qingdao.example:1026"}),
        )
        .await;
    assert_eq!(changed.status(), 204);
    let heard = nth(2).await;
    assert_eq!(heard["triggerReason"], "updated", "{heard}");
    assert_eq!(
        heard["data"][0]["endpoint"],
        "http://archive.qingdao.example:1026"
    );
    let changed = broker
        .send(
            Method::PATCH,
            &registration_path("mixed"),
            json!({"information": [bus]}),
        )
        .await;
    assert_eq!(changed.status(), 204);
    let heard = nth(3).await;
    assert_eq!(heard["triggerReason"], "noLongerMatching");
    assert_eq!(heard["data"][0]["information"], json!([bus]), "the latest");
    let deleted = broker
        .call(
            Method::DELETE,
            &registration_path("city-archive"),
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 204);
    let heard = nth(4).await;
    assert_eq!(heard["triggerReason"], "noLongerMatching");
    assert_eq!(
        heard["data"][0]["id"],
        "urn:ngsi-ld:ContextSourceRegistration:city-archive"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(seen.lock().unwrap_or_else(|p| p.into_inner()).len(), 5);
    // Counted like any subscription, and kept apart from subscriptions to entities.
    let shown = counted_once(&broker, &path, "timesSent", 1).await;
    assert_eq!(shown["notification"]["timesSent"], 5, "{shown}");
    assert_eq!(shown["notification"]["status"], "ok");
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["entities"], json!([{"type": "Building"}]));
    expect_ngsi_error(
        broker
            .get(&format!("/subscriptions/{subscription_id}"))
            .await,
        404,
        "ResourceNotFound",
    )
    .await;
    assert_eq!(broker.get_json("/subscriptions").await, json!([]));
    let listed = broker.get_json("/csourceSubscriptions").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    // Changed to buses: told at once of every bus registration.
    let changed = broker
        .send(Method::PATCH, &path, json!({"entities": [{"type": "Bus"}]}))
        .await;
    assert_eq!(changed.status(), 204);
    let heard = nth(5).await;
    assert_eq!(heard["triggerReason"], "newlyMatching");
    let mut ids: Vec<String> = heard["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "urn:ngsi-ld:ContextSourceRegistration:buses",
            "urn:ngsi-ld:ContextSourceRegistration:mixed"
        ]
    );
    // Paused: nothing.
    let paused = broker
        .send(Method::PATCH, &path, json!({"isActive": false}))
        .await;
    assert_eq!(paused.status(), 204);
    assert_eq!(
        register(registration("night-buses", json!([bus])))
            .await
            .status(),
        201
    );

    // temporalQ against the observation interval, geoQ against the location; another
    // department's registrations are not heard of.
    let (near_url, near_seen) = receiver(200).await;
    let created = broker
        .send(
            Method::POST,
            "/csourceSubscriptions",
            json!({"type": "Subscription", "entities": [{"type": "Reservoir"}],
                   "temporalQ": {"timerel": "after", "timeAt": "2026-01-01T00:00:00Z", "timeproperty": "observedAt"},
                   "geoQ": {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [120.38, 36.06]},
                   "notification": {"endpoint": {"uri": near_url}}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let recent = json!({"startAt": "2026-06-01T00:00:00Z"});
    let reservoir = |name: &str, at: [f64; 2], observed: &Value| {
        let mut body = registration(name, json!([{"entities": [{"type": "Reservoir"}]}]));
        body["location"] = json!({"type": "Point", "coordinates": at});
        body["observationInterval"] = observed.clone();
        body
    };
    let old = json!({"startAt": "2020-06-01T00:00:00Z", "endAt": "2021-06-01T00:00:00Z"});
    for body in [
        reservoir("far", [120.60, 36.30], &recent),
        reservoir("old", [120.385, 36.065], &old),
        reservoir("near-recent", [120.385, 36.065], &recent),
    ] {
        assert_eq!(register(body).await.status(), 201);
    }
    let admin = broker.server.admin().await;
    let water = broker
        .server
        .user(&admin, "water.op", "water", "operator")
        .await;
    let theirs = broker
        .call(Method::POST, "/csourceRegistrations", Some(&water))
        .header("content-type", "application/json")
        .body(reservoir("water-own", [120.385, 36.065], &recent).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(theirs.status(), 201);
    let heard = wait_for(|| {
        near_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .cloned()
    })
    .await;
    assert_eq!(
        heard.0["data"][0]["id"],
        "urn:ngsi-ld:ContextSourceRegistration:near-recent"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(near_seen.lock().unwrap_or_else(|p| p.into_inner()).len(), 1);
    assert_eq!(
        seen.lock().unwrap_or_else(|p| p.into_inner()).len(),
        6,
        "paused"
    );
    // Periodic: every registration it matches, at once and then every interval.
    let (every_url, every_seen) = receiver(200).await;
    let created = broker
        .send(
            Method::POST,
            "/csourceSubscriptions",
            json!({"type": "Subscription", "entities": [{"type": "Reservoir"}], "timeInterval": 1,
                   "notification": {"endpoint": {"uri": every_url}}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let heard = wait_for(|| {
        let seen = every_seen.lock().unwrap_or_else(|p| p.into_inner());
        (seen.len() >= 2).then(|| seen.clone())
    })
    .await;
    assert_eq!(heard[0].0["triggerReason"], "newlyMatching");
    assert_eq!(heard[1].0["triggerReason"], "updated");
    for (notification, _) in &heard[..2] {
        assert_eq!(
            notification["data"].as_array().map(Vec::len),
            Some(3),
            "near-recent, far and old; not the other department's: {notification}"
        );
    }
    broker.server.cleanup().await;
}

async fn periodic_subscriptions_tell_what_matches_every_interval(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let (url, seen) = receiver(200).await;
    for (body, reason) in [
        (
            json!({"type": "Subscription", "entities": [{"type": "ParkingSpot"}], "timeInterval": 5,
                   "watchedAttributes": ["occupancy"], "notification": {"endpoint": {"uri": url}}}),
            "watchedAttributes",
        ),
        (
            json!({"type": "Subscription", "entities": [{"type": "ParkingSpot"}], "timeInterval": 5,
                   "throttling": 2, "notification": {"endpoint": {"uri": url}}}),
            "throttling",
        ),
        (
            json!({"type": "Subscription", "entities": [{"type": "ParkingSpot"}], "timeInterval": 0,
                   "notification": {"endpoint": {"uri": url}}}),
            "timeInterval",
        ),
    ] {
        let refused = broker.send(Method::POST, "/subscriptions", body).await;
        let problem = expect_ngsi_error(refused, 400, "BadRequestData").await;
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(reason),
            "{problem}"
        );
    }
    for spot in [
        spot(1, 120.384, 36.062, "free", 1),
        spot(2, 120.385, 36.063, "occupied", 1),
    ] {
        assert_eq!(
            broker.send(Method::POST, "/entities", spot).await.status(),
            201
        );
    }
    // Another department's spot is not told of.
    let admin = broker.server.admin().await;
    let water = broker
        .server
        .user(&admin, "water.op", "water", "operator")
        .await;
    let theirs = broker
        .call(Method::POST, "/entities", Some(&water))
        .header("content-type", "application/json")
        .body(spot(3, 120.386, 36.064, "free", 1).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(theirs.status(), 201);
    let created = broker
        .send(
            Method::POST,
            "/subscriptions",
            json!({"type": "Subscription", "entities": [{"type": "ParkingSpot"}], "q": "occupancy==\"free\"",
                   "timeInterval": 1, "notification": {"format": "keyValues", "attributes": ["occupancy"],
                   "endpoint": {"uri": url}}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let path = ngsi_path(&created);
    assert_eq!(broker.get_json(&path).await["timeInterval"], 1);
    // Told at once, then every second, of what matches then, changed or not.
    let heard = wait_for(|| {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        (seen.len() >= 2).then(|| seen.clone())
    })
    .await;
    for (notification, _) in &heard[..2] {
        assert_eq!(
            notification["data"],
            json!([{"id": "urn:ngsi-ld:ParkingSpot:qd-001", "type": "ParkingSpot", "occupancy": "free"}])
        );
    }
    let updated = broker
        .send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:ParkingSpot:qd-002/attrs",
            json!({"occupancy": "free"}),
        )
        .await;
    assert_eq!(updated.status(), 204);
    let both = wait_for(|| {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(n, _)| n["data"].as_array().is_some_and(|d| d.len() == 2))
            .cloned()
    })
    .await;
    assert_eq!(both.0["data"][1]["id"], "urn:ngsi-ld:ParkingSpot:qd-002");
    // Paused: no more.
    let paused = broker
        .send(Method::PATCH, &path, json!({"isActive": false}))
        .await;
    assert_eq!(paused.status(), 204);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let count = seen.lock().unwrap_or_else(|p| p.into_inner()).len();
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(seen.lock().unwrap_or_else(|p| p.into_inner()).len(), count);
    let shown = broker.get_json(&path).await;
    assert!(
        shown["notification"]["timesSent"].as_i64().unwrap_or(0) >= 3,
        "{shown}"
    );
    broker.server.cleanup().await;
}

async fn context_sources_answer_what_they_are_registered_for(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    // The context source: another broker, open to the network (as a conformance suite runs it).
    let source = TestServer::start_with(backend, |c| {
        c.ngsi_ld_auth = false;
        c.ngsi_ld_city_objects = false;
    })
    .await;
    let vehicle = |id: &str, speed: u32, at: &str| {
        json!({"id": format!("urn:ngsi-ld:Vehicle:{id}"), "type": "Vehicle",
               "speed": {"type": "Property", "value": speed, "observedAt": at}})
    };
    let mut bus = vehicle("qd-bus-1", 50, "2026-11-30T08:00:00Z");
    bus["brandName"] = json!({"type": "Property", "value": "青岛客车"});
    for entity in [
        bus,
        vehicle("qd-bus-2", 30, "2026-11-30T08:00:00Z"),
        json!({"id": "urn:ngsi-ld:ParkingSpot:remote-9", "type": "ParkingSpot", "capacity": 3}),
    ] {
        let created = source
            .client
            .post(source.url("/ngsi-ld/v1/entities"))
            .header("content-type", "application/json")
            .body(entity.to_string())
            .send()
            .await
            .expect("sent");
        assert_eq!(created.status(), 201);
    }
    // The broker's own copy of bus 1: an older speed and a colour the source does not have.
    let mut own = vehicle("qd-bus-1", 40, "2026-11-30T07:00:00Z");
    own["color"] = json!({"type": "Property", "value": "red"});
    assert_eq!(
        broker.send(Method::POST, "/entities", own).await.status(),
        201
    );
    let register = |name: &str, endpoint: &str| {
        json!({"id": format!("urn:ngsi-ld:ContextSourceRegistration:{name}"), "type": "ContextSourceRegistration",
               "information": [{"entities": [{"type": "Vehicle"}]}], "endpoint": endpoint})
    };
    // A source that is down is left out; the other answers.
    for body in [
        register("bus-company", &source.url("")),
        register("gone", "http://127.0.0.1:9"),
    ] {
        assert_eq!(
            broker
                .send(Method::POST, "/csourceRegistrations", body)
                .await
                .status(),
            201
        );
    }
    // Retrieve: merged by id, the later observation winning.
    let merged = broker
        .get_json("/entities/urn:ngsi-ld:Vehicle:qd-bus-1?options=keyValues")
        .await;
    assert_eq!(
        merged,
        json!({"id": "urn:ngsi-ld:Vehicle:qd-bus-1", "type": "Vehicle", "speed": 50,
               "brandName": "青岛客车", "color": "red"})
    );
    // An entity only the source has; not with local=true.
    let remote_only = broker
        .get_json("/entities/urn:ngsi-ld:Vehicle:qd-bus-2")
        .await;
    assert_eq!(remote_only["speed"]["value"], 30);
    expect_ngsi_error(
        broker
            .get("/entities/urn:ngsi-ld:Vehicle:qd-bus-2?local=true")
            .await,
        404,
        "ResourceNotFound",
    )
    .await;
    // Query: the source's vehicles with the broker's, counted and paged together.
    let response = broker
        .get("/entities?type=Vehicle&count=true&options=keyValues")
        .await;
    assert_eq!(response.headers()["ngsild-results-count"], "2");
    let listed: Value = response.json().await.expect("json");
    assert_eq!(
        listed,
        json!([
            {"id": "urn:ngsi-ld:Vehicle:qd-bus-1", "type": "Vehicle", "speed": 50, "brandName": "青岛客车", "color": "red"},
            {"id": "urn:ngsi-ld:Vehicle:qd-bus-2", "type": "Vehicle", "speed": 30}
        ])
    );
    let second: Value = broker
        .get_json("/entities?type=Vehicle&limit=1&offset=1&options=keyValues")
        .await;
    assert_eq!(second[0]["id"], "urn:ngsi-ld:Vehicle:qd-bus-2");
    // Only what the registration covers is asked of the source.
    assert_eq!(
        broker.get_json("/entities?type=ParkingSpot").await,
        json!([])
    );
    // Another department does not use this department's registrations.
    let admin = broker.server.admin().await;
    let water = broker
        .server
        .user(&admin, "water.op", "water", "operator")
        .await;
    let theirs: Value = broker
        .call(Method::GET, "/entities?type=Vehicle", Some(&water))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(theirs, json!([]));
    // A request that already passed through this broker is not forwarded again: a loop
    // (clause 6.3.18, 508).
    let alias = broker.get_json("/info/sourceIdentity").await["contextSourceAlias"]
        .as_str()
        .expect("alias")
        .to_owned();
    let looped = broker
        .call(
            Method::GET,
            "/entities/urn:ngsi-ld:Vehicle:qd-bus-2",
            Some(&broker.token),
        )
        .header(
            "via",
            format!("1.1 urn:ngsi-ld:ContextSource:elsewhere, 1.1 {alias}"),
        )
        .send()
        .await
        .expect("sent");
    expect_ngsi_error(looped, 508, "LoopDetected").await;
    // What is forwarded: the selecting parameters in order, the client's context, this
    // broker in Via, no credential; and only to registrations covering the asked attributes.
    let (recorder, asked) =
        scripted_source(vec![("GET", "/ngsi-ld/v1/entities", 200, "[]".into())]).await;
    let fuel = json!({"id": "urn:ngsi-ld:ContextSourceRegistration:fuel-sensors", "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "Vehicle"}], "propertyNames": ["fuelLevel"]}], "endpoint": recorder});
    assert_eq!(
        broker
            .send(Method::POST, "/csourceRegistrations", fuel)
            .await
            .status(),
        201
    );
    let found = broker
        .get_json("/entities?type=Vehicle&attrs=fuelLevel&limit=5&options=keyValues")
        .await;
    assert_eq!(found, json!([]), "no vehicle has a fuel level");
    let speeds = broker.get_json("/entities?type=Vehicle&attrs=speed").await;
    assert_eq!(speeds.as_array().map(Vec::len), Some(2));
    let asked = asked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let (_, path, _, _) = &asked[0];
    let via = asked_header(&asked[0], "via").unwrap_or_default();
    assert_eq!(
        path,
        "/ngsi-ld/v1/entities?attrs=fuelLevel&type=Vehicle&limit=5"
    );
    assert!(via.ends_with(&alias), "{via}");
    assert_eq!(asked_header(&asked[0], "authorization"), None);
    // Deleted registrations are no longer asked.
    let deleted = broker
        .call(
            Method::DELETE,
            "/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:bus-company",
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 204);
    expect_ngsi_error(
        broker.get("/entities/urn:ngsi-ld:Vehicle:qd-bus-2").await,
        404,
        "ResourceNotFound",
    )
    .await;
    source.cleanup().await;
    broker.server.cleanup().await;
}

async fn queries_and_subscriptions_reach_linked_entities(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let (url, seen) = receiver(200).await;
    // Clause 4.9: `rel{attr}` tests the entities a Relationship names.
    let subscribed = broker
        .send(
            Method::POST,
            "/subscriptions",
            json!({"id": "urn:ngsi-ld:Subscription:low-battery", "type": "Subscription",
                   "entities": [{"type": "Vehicle"}], "q": "isConnectedTo{batteryLevel}<0.5",
                   "notification": {"endpoint": {"uri": url}}}),
        )
        .await;
    assert_eq!(subscribed.status(), 201);
    for entity in [
        json!({"id": "urn:ngsi-ld:Device:low", "type": "Device", "batteryLevel": 0.3,
               "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:li"}}),
        json!({"id": "urn:ngsi-ld:Device:full", "type": "Device", "batteryLevel": 0.95,
               "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:wang"}}),
        json!({"id": "urn:ngsi-ld:Person:li", "type": "Person", "familyName": "李"}),
        json!({"id": "urn:ngsi-ld:Person:wang", "type": "Person", "familyName": "王"}),
        json!({"id": "urn:ngsi-ld:Vehicle:ok", "type": "Vehicle",
               "isConnectedTo": {"type": "Relationship", "object": "urn:ngsi-ld:Device:full"}}),
        json!({"id": "urn:ngsi-ld:Vehicle:low", "type": "Vehicle",
               "isConnectedTo": {"type": "Relationship", "object": "urn:ngsi-ld:Device:low"}}),
        json!({"id": "urn:ngsi-ld:Vehicle:both", "type": "Vehicle",
               "isConnectedTo": {"type": "ListRelationship",
                                 "objectList": [{"object": "urn:ngsi-ld:Device:full"}, {"object": "urn:ngsi-ld:Device:low"}]}}),
    ] {
        let created = broker.send(Method::POST, "/entities", entity).await;
        assert_eq!(created.status(), 201);
    }
    let mut notified = Vec::new();
    for _ in 0..50 {
        notified = seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(body, _)| body["data"][0]["id"].as_str().map(str::to_owned))
            .collect::<Vec<_>>();
        if notified.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    notified.sort();
    assert_eq!(
        notified,
        ["urn:ngsi-ld:Vehicle:both", "urn:ngsi-ld:Vehicle:low"],
        "the vehicle on the full battery is not notified"
    );
    // Queries (clause 5.7.2.4): with Linked Entity Retrieval as deep as the q goes.
    let ids = |page: Value| {
        page.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(broker
            .get_json("/entities?type=Vehicle&q=isConnectedTo%7BbatteryLevel%7D%3E0.9&join=inline")
            .await),
        ["urn:ngsi-ld:Vehicle:both", "urn:ngsi-ld:Vehicle:ok"]
    );
    assert_eq!(
        ids(broker
            .get_json(
                "/entities?type=Vehicle&q=isConnectedTo%7Bowner%7BfamilyName%7D%7D==%22李%22&join=inline&joinLevel=2"
            )
            .await),
        ["urn:ngsi-ld:Vehicle:both", "urn:ngsi-ld:Vehicle:low"]
    );
    assert_eq!(
        ids(broker
            .get_json("/entities?type=Vehicle&q=!isConnectedTo%7Bowner%7D&join=inline&joinLevel=2")
            .await),
        Vec::<String>::new()
    );
    for too_deep in [
        "/entities?type=Vehicle&q=isConnectedTo%7BbatteryLevel%7D%3E0.9",
        "/entities?type=Vehicle&q=isConnectedTo%7Bowner%7BfamilyName%7D%7D==%22李%22&join=inline",
        "/entities?type=Vehicle&q=isConnectedTo%7BbatteryLevel%3E0.9",
        "/temporal/entities?type=Vehicle&q=isConnectedTo%7BbatteryLevel%7D%3E0.9&join=inline&timerel=after&timeAt=2020-01-01T00:00:00Z",
    ] {
        expect_ngsi_error(broker.get(too_deep).await, 400, "BadRequestData").await;
    }
    broker.server.cleanup().await;
}

async fn distributed_requests_follow_their_registrations(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let vehicle = json!({"id": "urn:ngsi-ld:Vehicle:v1", "type": "Vehicle",
        "speed": {"type": "Property", "value": 40},
        "@context": "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"});
    let oversized = json!([{"id": "urn:ngsi-ld:Truck:t1", "type": "Truck",
        "load": {"type": "Property", "value": "x".repeat(17 << 20)}}]);
    let (endpoint, asked) = scripted_source(vec![
        (
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:v1",
            200,
            vehicle.to_string(),
        ),
        (
            "GET",
            "/ngsi-ld/v1/entities?attrs=speed&type=Vehicle",
            200,
            json!([vehicle]).to_string(),
        ),
        (
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Car:c1",
            403,
            String::new(),
        ),
        (
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Car:c2",
            200,
            "not a json document".into(),
        ),
        (
            "GET",
            "/ngsi-ld/v1/entities?type=Truck",
            200,
            oversized.to_string(),
        ),
        ("GET", "/ngsi-ld/v1/entities?", 200, "[]".into()),
        ("GET", "/ngsi-ld/v1/types", 200, json!({"id": "urn:ngsi-ld:EntityTypeList:x", "type": "EntityTypeList", "typeList": ["Tram"]}).to_string()),
        ("GET", "/ngsi-ld/v1/attributes", 200, json!({"id": "urn:ngsi-ld:AttributeList:x", "type": "AttributeList", "attributeList": ["fuel"]}).to_string()),
        ("POST", "/ngsi-ld/v1/entities", 201, String::new()),
    ])
    .await;
    let registrations = [
        // Bus v1's speed, from a sensor gateway that is asked only about its own data, with
        // its own credential, the client's `user` header, and ld+json answers.
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:speed", "type": "ContextSourceRegistration",
               "endpoint": endpoint, "localOnly": true, "sourceType": "sensor",
               "operations": ["retrieveEntity", "queryEntity"],
               "information": [{"entities": [{"type": "Vehicle", "id": "urn:ngsi-ld:Vehicle:v1"}],
                                "propertyNames": ["speed"]}],
               "contextSourceInfo": [
                   {"key": "Authorization", "value": "Bearer source-token"},
                   {"key": "user", "value": "urn:ngsi-ld:request"},
                   {"key": "X-Caller-Token", "value": "urn:ngsi-ld:request"},
                   {"key": "NGSILD-Tenant", "value": "hacker"},
                   {"key": "Via", "value": "1.1 evil"},
                   {"key": "accept", "value": "application/ld+json"}]}),
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:cars", "type": "ContextSourceRegistration",
               "endpoint": endpoint, "information": [{"entities": [{"type": "Car"}, {"type": "Truck"}]}]}),
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:boats", "type": "ContextSourceRegistration",
               "endpoint": "http://127.0.0.1:9", "information": [{"entities": [{"type": "Boat"}]}]}),
        // Lamp l1 is the lighting system's alone, and it takes no creates.
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:lamps", "type": "ContextSourceRegistration",
               "endpoint": endpoint, "mode": "redirect", "operations": ["retrieveEntity"],
               "information": [{"entities": [{"type": "Lamp", "id": "urn:ngsi-ld:Lamp:l1"}]}]}),
        // Kiosks are written in the source's own context; stalls with the context inline.
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:kiosks", "type": "ContextSourceRegistration",
               "endpoint": endpoint, "mode": "redirect", "operations": ["createEntity"],
               "information": [{"entities": [{"type": "Kiosk"}]}],
               "contextSourceInfo": [{"key": "jsonldContext", "value": "https://example.org/kiosk-context.jsonld"}]}),
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:stalls", "type": "ContextSourceRegistration",
               "endpoint": endpoint, "mode": "redirect", "operations": ["createEntity"],
               "information": [{"entities": [{"type": "Stall"}]}],
               "contextSourceInfo": [{"key": "contentType", "value": "application/ld+json"}]}),
    ];
    for registration in registrations {
        let created = broker
            .send(Method::POST, "/csourceRegistrations", registration)
            .await;
        assert_eq!(created.status(), 201);
    }
    for bad in [
        json!([{"key": "a"}]),
        json!({"key": "a", "value": "b"}),
        json!([{"key": "a", "value": 1}]),
    ] {
        let refused = broker
            .send(
                Method::POST,
                "/csourceRegistrations",
                json!({"type": "ContextSourceRegistration", "endpoint": endpoint,
                       "information": [{"entities": [{"type": "Car"}]}], "contextSourceInfo": bad}),
            )
            .await;
        expect_ngsi_error(refused, 400, "BadRequestData").await;
    }
    let taken = || std::mem::take(&mut *asked.lock().unwrap_or_else(|p| p.into_inner()));
    // Retrieve: narrowed to the registered attribute, local=true, the registration's headers
    // (the client's `user` copied, its credentials not; tenant and Via never overridden).
    let retrieved = broker
        .call(
            Method::GET,
            "/entities/urn:ngsi-ld:Vehicle:v1?type=Vehicle",
            Some(&broker.token),
        )
        .header("user", "abcd")
        .header("x-caller-token", "secret")
        .send()
        .await
        .expect("sent");
    assert_eq!(retrieved.status(), 200);
    assert!(retrieved.headers().get("ngsild-warning").is_none());
    let shown: Value = retrieved.json().await.expect("json");
    assert_eq!(shown["speed"]["value"], 40, "{shown}");
    let sent = taken();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0].1,
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:v1?attrs=speed&local=true"
    );
    assert_eq!(
        asked_header(&sent[0], "authorization"),
        Some("Bearer source-token")
    );
    assert_eq!(asked_header(&sent[0], "user"), Some("abcd"));
    assert_eq!(asked_header(&sent[0], "x-caller-token"), Some("secret"));
    assert_eq!(
        asked_header(&sent[0], "accept"),
        Some("application/ld+json")
    );
    assert_eq!(asked_header(&sent[0], "ngsild-tenant"), None);
    assert!(asked_header(&sent[0], "via").is_some_and(|v| !v.contains("evil")));
    // Without the client's header nothing is copied.
    assert_eq!(
        broker
            .get("/entities/urn:ngsi-ld:Vehicle:v1")
            .await
            .status(),
        200
    );
    assert_eq!(asked_header(&taken()[0], "user"), None);
    // Abnormal answers are left out and said in NGSILD-Warning (clause 6.3.17): 299 for an
    // error, 111 for an invalid answer, 199 for a source not reached; a 404 is no warning.
    for (path, code) in [
        ("/entities/urn:ngsi-ld:Car:c1?type=Car", Some("299")),
        ("/entities/urn:ngsi-ld:Car:c2?type=Car", Some("111")),
        ("/entities/urn:ngsi-ld:Car:c3?type=Car", None),
        ("/entities/urn:ngsi-ld:Boat:b1?type=Boat", Some("199")),
    ] {
        let answer = broker.get(path).await;
        let warning = answer
            .headers()
            .get("ngsild-warning")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        expect_ngsi_error(answer, 404, "ResourceNotFound").await;
        match code {
            Some(code) => {
                assert!(
                    warning.as_deref().is_some_and(|w| w.starts_with(code)
                        && w.contains("urn:ngsi-ld:ContextSourceRegistration:")),
                    "{path}: {warning:?}"
                )
            }
            None => assert_eq!(warning, None, "{path}"),
        }
    }
    // A query: an answer over 16 MiB is refused like an invalid one; the query still answers.
    let trucks = broker.get("/entities?type=Truck").await;
    assert_eq!(trucks.status(), 200);
    assert!(
        trucks.headers()["ngsild-warning"]
            .to_str()
            .is_ok_and(|w| w.starts_with("111")),
    );
    assert_eq!(trucks.json::<Value>().await.expect("json"), json!([]));
    // Filters travel with the query, or with splitEntities=true stay with the broker.
    taken();
    assert_eq!(
        broker
            .get("/entities?type=Car&q=speed%3E20&scopeQ=/A")
            .await
            .status(),
        200
    );
    assert_eq!(
        taken()[0].1,
        "/ngsi-ld/v1/entities?q=speed%3E20&scopeQ=%2FA&type=Car"
    );
    assert_eq!(
        broker
            .get("/entities?type=Car&q=speed%3E20&scopeQ=/A&splitEntities=true")
            .await
            .status(),
        200
    );
    assert_eq!(taken()[0].1, "/ngsi-ld/v1/entities?type=Car");
    expect_ngsi_error(
        broker.get("/entities?type=Car&splitEntities=yes").await,
        400,
        "BadRequestData",
    )
    .await;
    // A context source filter chooses the registrations asked (and discovered).
    let sensed = broker
        .get_json("/entities?type=Vehicle&csf=sourceType==%22sensor%22")
        .await;
    assert_eq!(sensed[0]["id"], "urn:ngsi-ld:Vehicle:v1", "{sensed}");
    assert_eq!(
        taken()[0].1,
        "/ngsi-ld/v1/entities?attrs=speed&type=Vehicle&local=true"
    );
    let archived = broker
        .get_json("/entities?type=Vehicle&csf=sourceType==%22archive%22")
        .await;
    assert_eq!(archived, json!([]));
    assert!(taken().is_empty());
    let discovered = broker
        .get_json("/csourceRegistrations?csf=sourceType==%22sensor%22")
        .await;
    assert_eq!(
        discovered
            .as_array()
            .map(|d| d.iter().map(|r| r["id"].clone()).collect::<Vec<_>>()),
        Some(vec![json!("urn:ngsi-ld:ContextSourceRegistration:speed")])
    );
    // Discovery (clause 4.3.6): what the sources list is listed too (not with local=true).
    let types = broker.get("/types").await;
    assert_eq!(types.status(), 200);
    assert!(
        types.headers()["ngsild-warning"]
            .to_str()
            .is_ok_and(|w| w.starts_with("199")),
        "the boats' source is down"
    );
    let types: Value = types.json().await.expect("json");
    let lists = |list: &Value, name: &str| {
        list.as_array()
            .is_some_and(|names| names.iter().any(|n| n == name))
    };
    assert!(lists(&types["typeList"], "Tram"), "{types}");
    let here = broker.get_json("/types?local=true").await;
    assert!(!lists(&here["typeList"], "Tram"), "{here}");
    let attributes = broker.get_json("/attributes").await;
    assert!(lists(&attributes["attributeList"], "fuel"), "{attributes}");
    taken();
    // A redirect registration holding the whole entity without offering creates: Conflict,
    // nothing sent, nothing created.
    let lamp = broker
        .send(
            Method::POST,
            "/entities",
            json!({"id": "urn:ngsi-ld:Lamp:l1", "type": "Lamp", "lit": true}),
        )
        .await;
    expect_ngsi_error(lamp, 409, "Conflict").await;
    assert!(taken().is_empty());
    expect_ngsi_error(
        broker.get("/entities/urn:ngsi-ld:Lamp:l1?local=true").await,
        404,
        "ResourceNotFound",
    )
    .await;
    // jsonldContext: the names as IRIs, no @context, the source's context in Link.
    let kiosk = broker
        .send(
            Method::POST,
            "/entities",
            json!({"id": "urn:ngsi-ld:Kiosk:k1", "type": "Kiosk",
                   "colour": {"type": "Property", "value": "red", "observedAt": "2026-11-30T08:00:00Z"}}),
        )
        .await;
    assert_eq!(kiosk.status(), 201);
    let sent = taken();
    assert_eq!(sent[0].0, "POST");
    assert_eq!(
        asked_header(&sent[0], "content-type"),
        Some("application/json")
    );
    assert!(
        asked_header(&sent[0], "link")
            .is_some_and(|l| l.contains("https://example.org/kiosk-context.jsonld"))
    );
    let body: Value = serde_json::from_str(&sent[0].3).expect("json");
    assert_eq!(
        body,
        json!({"id": "urn:ngsi-ld:Kiosk:k1", "type": "https://uri.etsi.org/ngsi-ld/default-context/Kiosk",
               "https://uri.etsi.org/ngsi-ld/default-context/colour":
                   {"type": "Property", "value": "red", "observedAt": "2026-11-30T08:00:00Z"}})
    );
    // contentType application/ld+json: the client's context inside.
    let stall = broker
        .send(
            Method::POST,
            "/entities",
            json!({"id": "urn:ngsi-ld:Stall:s1", "type": "Stall", "colour": "blue"}),
        )
        .await;
    assert_eq!(stall.status(), 201);
    let sent = taken();
    assert_eq!(
        asked_header(&sent[0], "content-type"),
        Some("application/ld+json")
    );
    let body: Value = serde_json::from_str(&sent[0].3).expect("json");
    assert!(body.get("@context").is_some(), "{body}");
    // A write that comes back round a loop of registrations changes nothing: 508.
    let alias = broker.get_json("/info/sourceIdentity").await["contextSourceAlias"]
        .as_str()
        .expect("alias")
        .to_owned();
    let looped = broker
        .call(Method::DELETE, "/entities?type=Kiosk", Some(&broker.token))
        .header("via", format!("1.1 {alias}"))
        .send()
        .await
        .expect("sent");
    expect_ngsi_error(looped, 508, "LoopDetected").await;
    assert!(taken().is_empty());
    broker.server.cleanup().await;
}

async fn writes_go_to_the_context_sources_that_hold_them(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let source = TestServer::start_with(backend, |c| {
        c.ngsi_ld_auth = false;
        c.ngsi_ld_city_objects = false;
    })
    .await;
    let at_source = |path: &str| {
        source
            .client
            .get(source.url(&format!("/ngsi-ld/v1{path}")))
            .send()
    };
    let registrations = [
        // The bus company alone keeps bus 7's speed.
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:bus-speed", "type": "ContextSourceRegistration",
               "mode": "exclusive", "operations": ["redirectionOps"], "endpoint": source.url(""),
               "information": [{"entities": [{"type": "Vehicle", "id": "urn:ngsi-ld:Vehicle:qd-bus-7"}],
                                "propertyNames": ["speed"]}]}),
        // The parking operator keeps its spots entirely.
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:operator-spots", "type": "ContextSourceRegistration",
               "mode": "redirect", "operations": ["createEntity", "updateAttrs", "deleteEntity"], "endpoint": source.url(""),
               "information": [{"entities": [{"type": "ParkingSpot", "idPattern": "urn:ngsi-ld:ParkingSpot:op-.*"}]}]}),
        // Trams are kept in both places.
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:tram-archive", "type": "ContextSourceRegistration",
               "operations": ["createEntity"], "endpoint": source.url(""),
               "information": [{"entities": [{"type": "Tram"}]}]}),
        // The fleet keeps its trucks' loads, written in batches.
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:truck-loads", "type": "ContextSourceRegistration",
               "mode": "redirect", "operations": ["createBatch", "updateBatch", "deleteBatch", "purgeEntity"], "endpoint": source.url(""),
               "information": [{"entities": [{"type": "Truck"}], "propertyNames": ["load"]}]}),
        // A source that is down.
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:bike-speed", "type": "ContextSourceRegistration",
               "mode": "redirect", "operations": ["createEntity", "createBatch"], "endpoint": "http://127.0.0.1:9",
               "information": [{"entities": [{"type": "Bike"}], "propertyNames": ["speed"]}]}),
    ];
    for registration in registrations {
        assert_eq!(
            broker
                .send(Method::POST, "/csourceRegistrations", registration)
                .await
                .status(),
            201
        );
    }
    // Exclusive: the speed goes to the source only, the rest stays here; reads merge them.
    let bus = "urn:ngsi-ld:Vehicle:qd-bus-7";
    let created = broker
        .send(
            Method::POST,
            "/entities",
            json!({"id": bus, "type": "Vehicle", "speed": 30, "color": "red"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let theirs: Value = at_source(&format!("/entities/{bus}?options=keyValues"))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(theirs, json!({"id": bus, "type": "Vehicle", "speed": 30}));
    let ours = broker
        .get_json(&format!("/entities/{bus}?local=true&options=keyValues"))
        .await;
    assert_eq!(ours, json!({"id": bus, "type": "Vehicle", "color": "red"}));
    let updated = broker
        .send(
            Method::PATCH,
            &format!("/entities/{bus}/attrs"),
            json!({"speed": 45, "color": "blue"}),
        )
        .await;
    assert_eq!(updated.status(), 204);
    let merged = broker
        .get_json(&format!("/entities/{bus}?options=keyValues"))
        .await;
    assert_eq!(
        merged,
        json!({"id": bus, "type": "Vehicle", "speed": 45, "color": "blue"})
    );
    // One attribute at a time: the source's goes there, the broker's stays here.
    let speed = broker
        .send(
            Method::PATCH,
            &format!("/entities/{bus}/attrs/speed"),
            json!({"value": 50}),
        )
        .await;
    assert_eq!(speed.status(), 204);
    let colour = broker
        .send(
            Method::PUT,
            &format!("/entities/{bus}/attrs/color"),
            json!({"type": "Property", "value": "white"}),
        )
        .await;
    assert_eq!(colour.status(), 204);
    assert_eq!(
        broker
            .get_json(&format!("/entities/{bus}?options=keyValues"))
            .await,
        json!({"id": bus, "type": "Vehicle", "speed": 50, "color": "white"})
    );
    let dropped = broker
        .call(
            Method::DELETE,
            &format!("/entities/{bus}/attrs/speed"),
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(dropped.status(), 204);
    let theirs: Value = at_source(&format!("/entities/{bus}?options=keyValues"))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(theirs.get("speed").is_none(), "{theirs}");
    // Redirect: created, changed and deleted at the source; nothing kept here.
    let spot_id = "urn:ngsi-ld:ParkingSpot:op-1";
    let created = broker
        .send(
            Method::POST,
            "/entities",
            json!({"id": spot_id, "type": "ParkingSpot", "capacity": 4}),
        )
        .await;
    assert_eq!(created.status(), 201);
    expect_ngsi_error(
        broker.get(&format!("/entities/{spot_id}?local=true")).await,
        404,
        "ResourceNotFound",
    )
    .await;
    let changed = broker
        .send(
            Method::PATCH,
            &format!("/entities/{spot_id}/attrs"),
            json!({"capacity": 9}),
        )
        .await;
    assert_eq!(changed.status(), 204);
    let theirs: Value = at_source(&format!("/entities/{spot_id}?options=keyValues"))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(theirs["capacity"], 9);
    let deleted = broker
        .call(
            Method::DELETE,
            &format!("/entities/{spot_id}"),
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        at_source(&format!("/entities/{spot_id}"))
            .await
            .expect("sent")
            .status(),
        404
    );
    // Inclusive: kept in both places.
    let tram = "urn:ngsi-ld:Tram:t9";
    assert_eq!(
        broker
            .send(
                Method::POST,
                "/entities",
                json!({"id": tram, "type": "Tram", "line": "2号线"})
            )
            .await
            .status(),
        201
    );
    assert_eq!(
        at_source(&format!("/entities/{tram}"))
            .await
            .expect("sent")
            .status(),
        200
    );
    assert_eq!(
        broker
            .get_json(&format!("/entities/{tram}?local=true"))
            .await["line"]["value"],
        "2号线"
    );
    // Batches: each source gets its share in one batch.
    let (t1, t2) = ("urn:ngsi-ld:Truck:t1", "urn:ngsi-ld:Truck:t2");
    let created = broker
        .send(
            Method::POST,
            "/entityOperations/create",
            json!([{"id": t1, "type": "Truck", "load": 5, "color": "red"},
                   {"id": t2, "type": "Truck", "color": "blue"}]),
        )
        .await;
    assert_eq!(created.status(), 201);
    let theirs: Value = at_source(&format!("/entities/{t1}?options=keyValues"))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(theirs, json!({"id": t1, "type": "Truck", "load": 5}));
    assert_eq!(
        at_source(&format!("/entities/{t2}"))
            .await
            .expect("sent")
            .status(),
        404,
        "nothing of t2 is the fleet's"
    );
    let updated = broker
        .send(
            Method::POST,
            "/entityOperations/update",
            json!([{"id": t1, "type": "Truck", "load": 7}]),
        )
        .await;
    assert_eq!(updated.status(), 204);
    let theirs: Value = at_source(&format!("/entities/{t1}?options=keyValues"))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(theirs["load"], 7);
    // The registration names no reads, so reads here show only the broker's part.
    assert_eq!(
        broker
            .get_json(&format!("/entities/{t1}?options=keyValues"))
            .await,
        json!({"id": t1, "type": "Truck", "color": "red"})
    );
    let deleted = broker
        .send(Method::POST, "/entityOperations/delete", json!([t1]))
        .await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        at_source(&format!("/entities/{t1}"))
            .await
            .expect("sent")
            .status(),
        404
    );
    expect_ngsi_error(
        broker.get(&format!("/entities/{t1}?local=true")).await,
        404,
        "ResourceNotFound",
    )
    .await;
    let refused = broker
        .send(
            Method::POST,
            "/entityOperations/create",
            json!([{"id": "urn:ngsi-ld:Bike:b2", "type": "Bike", "speed": 9},
                   {"id": "urn:ngsi-ld:Truck:t3", "type": "Truck", "color": "grey"}]),
        )
        .await;
    assert_eq!(refused.status(), 207);
    let report: Value = refused.json().await.expect("json");
    assert_eq!(
        report["success"],
        json!(["urn:ngsi-ld:Truck:t3"]),
        "{report}"
    );
    assert_eq!(report["errors"][0]["entityId"], "urn:ngsi-ld:Bike:b2");
    // Purge: the same purge here and at the source.
    let t4 = "urn:ngsi-ld:Truck:t4";
    let created = broker
        .send(
            Method::POST,
            "/entityOperations/create",
            json!([{"id": t4, "type": "Truck", "load": 3, "color": "black"}]),
        )
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(
        at_source(&format!("/entities/{t4}"))
            .await
            .expect("sent")
            .status(),
        200
    );
    let purged = broker
        .call(Method::DELETE, "/entities?type=Truck", Some(&broker.token))
        .send()
        .await
        .expect("sent");
    assert_eq!(purged.status(), 204);
    assert_eq!(
        at_source(&format!("/entities/{t4}"))
            .await
            .expect("sent")
            .status(),
        404
    );
    assert_eq!(
        broker.get_json("/entities?type=Truck&local=true").await,
        json!([])
    );
    // A source that is down: 207, saying what it did not take.
    let refused = broker
        .send(
            Method::POST,
            "/entities",
            json!({"id": "urn:ngsi-ld:Bike:b1", "type": "Bike", "speed": 12, "color": "green"}),
        )
        .await;
    assert_eq!(refused.status(), 207);
    let report: Value = refused.json().await.expect("json");
    assert_eq!(
        report["notUpdated"][0]["attributeName"], "speed",
        "{report}"
    );
    assert!(
        report["notUpdated"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("bike-speed")),
        "{report}"
    );
    source.cleanup().await;
    broker.server.cleanup().await;
}

/// Clause 4.5.7 and 5.7.3 (`timeproperty`): a deleted attribute instance (and a deleted
/// Scope) stays in the temporal evolution as an instance with the NGSI-LD Null and its
/// `deletedAt`, shown for `timeproperty=deletedAt` and only then; `createdAt` and
/// `modifiedAt` select instances by those times.
async fn deletions_are_kept_and_times_chosen_by_timeproperty(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let id = "urn:ngsi-ld:Vehicle:deleted-attrs";
    let created = broker
        .send(
            Method::POST,
            "/temporal/entities",
            json!({"id": id, "type": "Vehicle",
                "scope": ["/Qingdao/Shinan", "/Transport/Fleet"],
                "fuelLevel": [
                    {"type": "Property", "value": 67, "observedAt": "2026-08-01T12:03:00Z"},
                    {"type": "Property", "value": 53, "observedAt": "2026-08-01T13:05:00Z"}],
                "isParkedIn": {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:1", "observedAt": "2026-08-01T12:00:00Z"},
                "name": {"type": "LanguageProperty", "languageMap": {"zh": "我的车", "en": "My car"}, "observedAt": "2026-08-01T12:00:00Z"},
                "speed": {"type": "Property", "value": 40, "observedAt": "2026-08-01T12:00:00Z"}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let deleted_view = format!("/temporal/entities/{id}?timeproperty=deletedAt");
    let none_yet = broker.get_json(&deleted_view).await;
    assert_eq!(none_yet["id"], id);
    assert!(none_yet.get("fuelLevel").is_none(), "{none_yet}");
    for attr in ["fuelLevel", "isParkedIn", "name", "scope"] {
        let deleted = broker
            .call(
                Method::DELETE,
                &format!("/entities/{id}/attrs/{attr}"),
                Some(&broker.token),
            )
            .send()
            .await
            .expect("sent");
        assert_eq!(deleted.status(), 204, "{attr}");
    }
    let normalized = broker.get_json(&deleted_view).await;
    // (attribute, type, value member, the NGSI-LD Null as that type holds it)
    let cases = [
        ("fuelLevel", "Property", "value", json!("urn:ngsi-ld:null")),
        (
            "isParkedIn",
            "Relationship",
            "object",
            json!("urn:ngsi-ld:null"),
        ),
        (
            "name",
            "LanguageProperty",
            "languageMap",
            json!({"@none": "urn:ngsi-ld:null"}),
        ),
        ("scope", "Property", "value", json!([])),
    ];
    for (name, kind, member, null) in &cases {
        let instances = normalized[name].as_array().expect("instances");
        assert_eq!(instances.len(), 1, "{name}: {normalized}");
        assert_eq!(instances[0]["type"], *kind, "{name}");
        assert_eq!(instances[0][member], *null, "{name}");
        assert!(
            instances[0]["deletedAt"].is_string(),
            "{name}: {normalized}"
        );
        let instance_id = instances[0]["instanceId"].as_str().unwrap_or_default();
        assert!(
            instance_id.starts_with("urn:ngsi-ld:Instance:deleted:")
                && instance_id.matches("urn:").count() == 1,
            "{instance_id}"
        );
    }
    assert!(
        normalized.get("speed").is_none(),
        "speed was not deleted: {normalized}"
    );
    let simplified = broker
        .get_json(&format!("{deleted_view}&options=temporalValues"))
        .await;
    assert_eq!(simplified["fuelLevel"]["values"][0][0], "urn:ngsi-ld:null");
    assert_eq!(
        simplified["fuelLevel"]["values"][0][1],
        normalized["fuelLevel"][0]["deletedAt"]
    );
    assert_eq!(
        simplified["isParkedIn"]["objects"][0][0],
        "urn:ngsi-ld:null"
    );
    assert_eq!(
        simplified["name"]["languageMaps"][0][0],
        json!({"languageMap": {"@none": "urn:ngsi-ld:null"}})
    );
    assert_eq!(simplified["scope"]["values"][0][0], json!([]));
    // By observation time (the default) the values are there and the deletions are not.
    let observed = broker.get_json(&format!("/temporal/entities/{id}")).await;
    let values: Vec<&Value> = observed["fuelLevel"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| &i["value"])
        .collect();
    assert_eq!(values, [&json!(67), &json!(53)], "{observed}");
    // A window by deletion time: before the deletions there were none.
    let before = broker
        .get_json(&format!(
            "{deleted_view}&timerel=before&timeAt=2026-08-02T00:00:00Z"
        ))
        .await;
    assert!(before.get("fuelLevel").is_none(), "{before}");
    // Deleting an attribute's temporal evolution takes its deletions too.
    let erased = broker
        .call(
            Method::DELETE,
            &format!("/temporal/entities/{id}/attrs/fuelLevel"),
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(erased.status(), 204);
    let after_erase = broker.get_json(&deleted_view).await;
    assert!(after_erase.get("fuelLevel").is_none(), "{after_erase}");
    assert!(after_erase.get("isParkedIn").is_some(), "{after_erase}");

    // modifiedAt: a normal entity changed twice; the window after the first change holds
    // only the second value.
    let car = "urn:ngsi-ld:Vehicle:modified-times";
    let made = broker
        .send(
            Method::POST,
            "/entities",
            json!({"id": car, "type": "Vehicle", "speed": {"type": "Property", "value": 1}}),
        )
        .await;
    assert_eq!(made.status(), 201);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let patched = broker
        .send(
            Method::PATCH,
            &format!("/entities/{car}/attrs"),
            json!({"speed": {"type": "Property", "value": 2}}),
        )
        .await;
    assert_eq!(patched.status(), 204);
    let all = broker
        .get_json(&format!("/temporal/entities/{car}?timeproperty=modifiedAt"))
        .await;
    assert_eq!(all["speed"].as_array().map(Vec::len), Some(2), "{all}");
    let later = broker
        .get_json(&format!(
            "/temporal/entities/{car}?timeproperty=modifiedAt&timerel=after&timeAt={between}&options=temporalValues"
        ))
        .await;
    let pairs = later["speed"]["values"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 1, "{later}");
    assert_eq!(pairs[0][0], 2);
    let last = broker
        .get_json(&format!(
            "/temporal/entities/{car}?timeproperty=createdAt&lastN=1"
        ))
        .await;
    assert_eq!(last["speed"].as_array().map(Vec::len), Some(1), "{last}");

    for bad in [
        "timeproperty=changedAt",
        "timeproperty=deletedAt&options=aggregatedValues&aggrMethods=totalCount",
    ] {
        let refused = broker.get(&format!("/temporal/entities/{car}?{bad}")).await;
        expect_ngsi_error(refused, 400, "BadRequestData").await;
    }
    broker.server.cleanup().await;
}

/// What the HTTP edge does for the broker: a body sent without `Content-Length` (chunked) is a
/// 411 problem and nothing is created (clause 6.3.4 asks for no body; the platform answers every
/// error as problem+json); and the broker says who it is at `/info/sourceIdentity` to anyone
/// (clause 5.15.1: one alias per tenant, stable; an ISO 8601 uptime; the time in UTC). The
/// request/response behaviour of the API is in the context crate's case files.
async fn a_chunked_body_is_refused_and_the_broker_says_who_it_is(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let body = json!({"id": "urn:x:chunked", "type": "T"}).to_string();
    let answer = raw_http(
        &broker,
        &format!(
            "POST /ngsi-ld/v1/entities HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             {:x}\r\n{body}\r\n0\r\n\r\n",
            broker.token,
            body.len()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    assert!(
        answer.contains("application/problem+json") && answer.contains("Content-Length"),
        "{answer}"
    );
    assert_eq!(broker.get("/entities/urn:x:chunked").await.status(), 404);
    let identity = |tenant: &'static str| {
        broker
            .call(Method::GET, "/info/sourceIdentity", None)
            .header("ngsild-tenant", tenant)
            .send()
    };
    let a: Value = identity("a")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let b: Value = identity("b")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let again: Value = identity("a")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(a["type"], "ContextSourceIdentity");
    assert!(a["id"].as_str().is_some_and(|id| id.starts_with("urn:")));
    assert_ne!(a["contextSourceAlias"], b["contextSourceAlias"]);
    assert_eq!(a["contextSourceAlias"], again["contextSourceAlias"]);
    let uptime = a["contextSourceUptime"].as_str().unwrap_or_default();
    assert!(
        uptime.starts_with("PT") && uptime.ends_with('S'),
        "{uptime}"
    );
    assert!(
        a["contextSourceTimeAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    broker.server.cleanup().await;
}

backend_tests!(
    deletions_are_kept_and_times_chosen_by_timeproperty,
    queries_and_subscriptions_reach_linked_entities,
    distributed_requests_follow_their_registrations,
    writes_go_to_the_context_sources_that_hold_them,
    context_sources_answer_what_they_are_registered_for,
    periodic_subscriptions_tell_what_matches_every_interval,
    subscriptions_hear_only_what_their_department_may_read,
    registration_subscriptions_hear_of_matching_registrations,
    notification_triggers_choose_what_is_notified,
    a_slow_receiver_gets_every_notification_under_load,
    subscriptions_notify_over_mqtt,
    retrievals_show_every_write_at_once,
    entity_changes_commit_with_their_audit_records,
    remote_contexts_come_only_from_the_allow_list_and_are_cached,
    sensor_data_reaches_entities_and_fires_subscriptions,
    subscriptions_notify_and_count_every_delivery,
    the_city_is_there_from_the_start_as_open_data,
    departments_tenants_and_anonymous_readers_are_kept_apart,
    authentication_can_be_turned_off_for_conformance_suites,
    a_chunked_body_is_refused_and_the_broker_says_who_it_is,
);
