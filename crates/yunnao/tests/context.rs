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

async fn entities_are_created_retrieved_and_rendered(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let created = broker
        .send(
            Method::POST,
            "/entities",
            spot(1, 120.384, 36.062, "free", 1),
        )
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(
        created.headers()["location"],
        "/ngsi-ld/v1/entities/urn:ngsi-ld:ParkingSpot:qd-001"
    );
    expect_ngsi_error(
        broker
            .send(
                Method::POST,
                "/entities",
                spot(1, 120.384, 36.062, "free", 1),
            )
            .await,
        409,
        "AlreadyExists",
    )
    .await;

    let response = broker.get("/entities/urn:ngsi-ld:ParkingSpot:qd-001").await;
    assert_eq!(response.status(), 200);
    let link = response.headers()["link"]
        .to_str()
        .expect("link")
        .to_owned();
    assert!(
        link.contains(CORE) && link.contains("json-ld#context"),
        "{link}"
    );
    let entity: Value = response.json().await.expect("json");
    assert_eq!(entity["type"], "ParkingSpot");
    assert_eq!(entity["occupancy"]["value"], "free");
    assert_eq!(entity["occupancy"]["observedAt"], "2026-11-29T07:00:00Z");
    assert_eq!(entity["capacity"], json!({"type": "Property", "value": 1}));
    assert_eq!(
        entity["refParkingSite"]["object"],
        "urn:ngsi-ld:ParkingSite:qd-1"
    );
    assert!(
        entity.get("createdAt").is_none(),
        "system attributes only on request"
    );

    let key_values = broker
        .get_json(
            "/entities/urn:ngsi-ld:ParkingSpot:qd-001?options=keyValues&attrs=occupancy,capacity",
        )
        .await;
    assert_eq!(
        key_values,
        json!({"id": "urn:ngsi-ld:ParkingSpot:qd-001", "type": "ParkingSpot", "occupancy": "free", "capacity": 1})
    );
    let concise = broker
        .get_json(
            "/entities/urn:ngsi-ld:ParkingSpot:qd-001?format=concise&attrs=occupancy,capacity",
        )
        .await;
    assert_eq!(concise["capacity"], 1);
    assert_eq!(
        concise["occupancy"],
        json!({"value": "free", "observedAt": "2026-11-29T07:00:00Z"})
    );
    let with_system = broker
        .get_json("/entities/urn:ngsi-ld:ParkingSpot:qd-001?options=sysAttrs")
        .await;
    assert!(
        with_system["createdAt"].is_string() && with_system["occupancy"]["modifiedAt"].is_string()
    );

    // JSON-LD: the context in the body; names expand with it and compact back with it.
    let ld = broker
        .call(Method::POST, "/entities", Some(&broker.token))
        .header("content-type", "application/ld+json")
        .body(
            json!({"id": "urn:ngsi-ld:ParkingSpot:ld-1", "type": "ParkingSpot", "category": ["onStreet"],
                   "@context": [parking_context(), CORE]})
            .to_string(),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(ld.status(), 201);
    // Without that context the names come back as full IRIs.
    let plain = broker
        .get_json("/entities/urn:ngsi-ld:ParkingSpot:ld-1")
        .await;
    assert_eq!(
        plain["type"],
        "https://smartdatamodels.org/dataModel.Parking/ParkingSpot"
    );
    assert!(
        plain
            .get("https://smartdatamodels.org/dataModel.Parking/category")
            .is_some(),
        "{plain}"
    );
    // With it (Accept ld+json echoes it in the body), the short names.
    let compacted: Value = broker
        .call(Method::POST, "/entityOperations/query", Some(&broker.token))
        .header("content-type", "application/ld+json")
        .header("accept", "application/ld+json")
        .body(
            json!({"type": "Query", "entities": [{"type": "ParkingSpot"}],
                   "@context": [parking_context(), CORE]})
            .to_string(),
        )
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(compacted.as_array().map(Vec::len), Some(1), "{compacted}");
    assert_eq!(compacted[0]["type"], "ParkingSpot");
    assert_eq!(compacted[0]["category"]["value"], json!(["onStreet"]));
    assert!(compacted[0]["@context"].is_array());
    broker.server.cleanup().await;
}

async fn bad_requests_get_the_specified_errors(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    broker
        .send(
            Method::POST,
            "/entities",
            spot(1, 120.384, 36.062, "free", 1),
        )
        .await;
    // (method, path, content type, body, status, NGSI-LD error type)
    let cases: Vec<(Method, &str, &str, String, u16, &str)> = vec![
        (Method::POST, "/entities", "application/json", "{\"id\": ".into(), 400, "InvalidRequest"),
        (Method::POST, "/entities", "application/json", json!({"id": "qd 1", "type": "T"}).to_string(), 400, "BadRequestData"),
        (Method::POST, "/entities", "application/json", json!({"id": "urn:x:1"}).to_string(), 400, "BadRequestData"),
        (Method::POST, "/entities", "application/json", json!({"id": "urn:x:1", "type": "T", "a": null}).to_string(), 400, "BadRequestData"),
        (Method::POST, "/entities", "application/json",
            json!({"id": "urn:x:1", "type": "T", "location": {"type": "Point", "coordinates": [500, 1]}}).to_string(), 400, "BadRequestData"),
        (Method::POST, "/entities", "application/ld+json", json!({"id": "urn:x:1", "type": "T"}).to_string(), 400, "BadRequestData"),
        (Method::POST, "/entities", "application/json",
            json!({"id": "urn:x:1", "type": "T", "@context": CORE}).to_string(), 400, "BadRequestData"),
        (Method::POST, "/entities", "application/ld+json",
            json!({"id": "urn:x:1", "type": "T", "@context": "https://example.org/remote.jsonld"}).to_string(), 503, "LdContextNotAvailable"),
        (Method::PATCH, "/entities/urn:ngsi-ld:ParkingSpot:none/attrs", "application/json", json!({"a": 1}).to_string(), 404, "ResourceNotFound"),
        (Method::PATCH, "/entities/urn:ngsi-ld:ParkingSpot:qd-001/attrs/nothing", "application/json", json!({"value": 1}).to_string(), 404, "ResourceNotFound"),
        (Method::PUT, "/entities/urn:ngsi-ld:ParkingSpot:qd-001", "application/json",
            json!({"id": "urn:ngsi-ld:Other:1", "type": "T"}).to_string(), 400, "BadRequestData"),
        (Method::POST, "/entities?fancy=1", "application/json", json!({"id": "urn:x:1", "type": "T"}).to_string(), 400, "InvalidRequest"),
        (Method::POST, "/subscriptions?fancy=1", "application/json",
            json!({"type": "Subscription", "entities": [{"type": "T"}], "notification": {"endpoint": {"uri": "http://127.0.0.1:9/"}}}).to_string(),
            400, "InvalidRequest"),
        (Method::POST, "/subscriptions", "application/json",
            json!({"type": "Subscription", "entities": [{"type": "T"}], "expiresAt": "2000-01-01T00:00:00Z", "notification": {"endpoint": {"uri": "http://127.0.0.1:9/"}}}).to_string(),
            400, "BadRequestData"),
        (Method::POST, "/subscriptions", "application/json",
            json!({"type": "Subscription", "entities": [{"type": "T"}], "notificationTrigger": ["entityChanged"], "notification": {"endpoint": {"uri": "http://127.0.0.1:9/"}}}).to_string(),
            400, "BadRequestData"),
        (Method::POST, "/subscriptions", "application/json",
            json!({"type": "Subscription", "entities": [{"type": "T"}], "csf": "((", "notification": {"endpoint": {"uri": "http://127.0.0.1:9/"}}}).to_string(),
            400, "BadRequestData"),
    ];
    // Clauses 4.2.2, 4.5.1, 4.5.2.2, 4.5.3.2, 4.5.5.1: attribute members and names the meta
    // model forbids, each refused whole (400 BadRequestData, nothing created).
    let forbidden = [
        json!({"speed": {"type": "Property"}}),
        json!({"speed": {"type": "Relationship"}}),
        json!({"speed": {"type": "LanguageProperty"}}),
        json!({"datasetId": {"type": "Property", "value": 1}}),
        json!({"instanceId": {"type": "Property", "value": 1}}),
        json!({"observedAt": {"type": "Property", "value": "2026-01-01T00:00:00Z"}}),
        json!({"speed": {"type": "Property", "value": 1, "@context": {"speed": "urn:x"}}}),
        json!({"speed": {"type": "Property", "value": 1, "object": "urn:ngsi-ld:Other:1"}}),
        json!({"speed": {"type": "Property", "value": 1, "languageMap": {"en": "x"}}}),
        json!({"speed": {"type": "Property", "value": 1, "valueList": [1, 2]}}),
        json!({"speed": {"type": "Property", "value": 1, "previousValue": 0}}),
        json!({"speed": {"type": "Property", "value": 1, "entityIdSealed": "urn:x:1"}}),
        json!({"ngsildproof": {"type": "Property", "value": "not a proof"}}),
        json!({"ngsildproof": {"type": "Property", "value": {"type": "DataIntegrityProof"}, "entityTypeSealed": 42}}),
        json!({"p": {"type": "Relationship", "object": "urn:x:2", "unitCode": "MTR"}}),
        json!({"p": {"type": "Relationship", "object": "urn:x:2", "value": 42}}),
        json!({"p": {"type": "Relationship", "object": "urn:x:2", "previousObject": "urn:x:3"}}),
        json!({"speed": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "@none"}]}),
        json!({"speed": [{"type": "Property", "value": 1, "datasetId": "urn:d:a"}, {"type": "Property", "value": 2, "datasetId": "urn:d:a"}]}),
        json!({"speed": {"type": "Property", "value": 1, "observedAt": "2026-01-01T08:00:00+08:00"}}),
        json!({"speed": {"type": "Property", "value": 1, "observedAt": {"type": "Property", "value": "2026-01-01T00:00:00Z"}}}),
        json!({"route": {"type": "ListRelationship", "objectList": ["not a uri"]}}),
        json!({"levels": {"type": "ListProperty", "valueList": [1.2], "value": 3}}),
        json!({"tickets": {"type": "JsonProperty", "json": 5}}),
        json!({"tickets": {"type": "JsonProperty", "json": {"a": 1}, "unitCode": "MTR"}}),
        json!({"my attr": {"type": "Property", "value": 1}}),
        json!({"9lives": {"type": "Property", "value": 1}}),
        json!({"location": {"type": "GeoProperty", "value": {"type": "GeometryCollection", "geometries": []}}}),
        json!({"location": {"type": "GeoProperty", "value": "not a geometry"}}),
        json!({"location": {"type": "Property", "value": 7}}),
        json!({"probe": {"type": "Property", "value": "urn:ngsi-ld:null"}}),
        json!({"probe": {"type": "Relationship", "object": "urn:ngsi-ld:null"}}),
        json!({"probe": {"type": "Property", "value": 1, "sub": {"type": "Property", "value": "urn:ngsi-ld:null"}}}),
        json!({"probe": {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}}}),
        json!({"probe": {"type": "LanguageProperty", "languageMap": {"en": ["a", 5]}}}),
        json!({"probe": {"type": "LanguageProperty", "languageMap": {"": "x"}}}),
        json!({"probe": {"type": "LanguageProperty", "languageMap": {"en": "x"}, "valueType": "xsd:string"}}),
        json!({"address": {"type": "Property", "value": {"geo": {"country": "urn:ngsi-ld:null"}}}}),
        json!({"scope": "urn:ngsi-ld:null"}),
        json!({"scope": "9bad"}),
        json!({"scope": "/a//b"}),
        json!({"scope": ["/ok", "a-b"]}),
        json!({"@context": [{"T": {"@id": "urn:t", "@context": {"speed": "urn:hidden"}}}]}),
    ];
    // Clauses 4.5.1 and 4.6.2: ids that show as something else, types that are not names.
    for (id, kind) in [
        ("urn:ngsi-ld:T:A\u{202E}B", "T"),
        ("urn:ngsi-ld:T:A\u{200B}B", "T"),
        ("urn:ngsi-ld:T:A\u{FEFF}B", "T"),
        ("urn:ngsi-ld:T:A\u{00A0}B", "T"),
        ("urn:ngsi-ld:T:A\u{FE0F}B", "T"),
        ("urn:ngsi-ld:T:A\u{3164}B", "T"),
        ("urn:ngsi-ld:T:A\u{FFFE}B", "T"),
        ("urn:ngsi-ld:T:1", "9T"),
        ("urn:ngsi-ld:null", "T"),
        ("urn:ngsi-ld:T:1", "T-1"),
    ] {
        let response = broker
            .send(Method::POST, "/entities", json!({"id": id, "type": kind}))
            .await;
        expect_ngsi_error(response, 400, "BadRequestData").await;
    }
    for attributes in forbidden {
        let mut entity = json!({"id": "urn:ngsi-ld:T:forbidden", "type": "T"});
        if let (Some(entity), Some(attributes)) = (entity.as_object_mut(), attributes.as_object()) {
            entity.extend(attributes.clone());
        }
        let content_type = if entity.get("@context").is_some() {
            "application/ld+json"
        } else {
            "application/json"
        };
        let response = broker
            .call(Method::POST, "/entities", Some(&broker.token))
            .header("content-type", content_type)
            .body(entity.to_string())
            .send()
            .await
            .expect("sent");
        let problem = expect_ngsi_error(response, 400, "BadRequestData").await;
        assert!(problem["detail"].is_string(), "{attributes}: {problem}");
    }
    for (method, path, content_type, body, status, kind) in cases {
        let response = broker
            .call(method.clone(), path, Some(&broker.token))
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .expect("sent");
        let problem = expect_ngsi_error(response, status, kind).await;
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{method} {path} {body}: {problem}"
        );
    }
    for (path, status, kind) in [
        (
            "/entities/urn:ngsi-ld:ParkingSpot:none",
            404,
            "ResourceNotFound",
        ),
        ("/entities/not-a-uri", 400, "BadRequestData"),
        ("/entities", 400, "BadRequestData"),
        (
            "/entities?type=ParkingSpot&q=capacity>>1",
            400,
            "BadRequestData",
        ),
        ("/entities?type=ParkingSpot&limit=0", 400, "BadRequestData"),
        (
            "/entities?type=ParkingSpot&limit=1000000",
            403,
            "TooManyResults",
        ),
        (
            "/entities?type=ParkingSpot&georel=near&geometry=Point&coordinates=[120,36]",
            400,
            "BadRequestData",
        ),
        (
            "/entities?type=ParkingSpot&options=fancy",
            400,
            "BadRequestData",
        ),
    ] {
        let response = broker.get(path).await;
        assert_eq!(response.status(), status, "GET {path}");
        expect_ngsi_error(response, status, kind).await;
    }
    let unsupported = broker
        .call(Method::POST, "/entities", Some(&broker.token))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .expect("sent");
    assert_eq!(unsupported.status(), 415);
    // Nothing half-written, and the server still serves.
    let all = broker.get_json("/entities?type=T").await;
    assert_eq!(all, json!([]));
    // Table 5.2.12-1: the six notification triggers, kept; read-only members ignored.
    let triggers = json!([
        "entityCreated",
        "entityUpdated",
        "entityDeleted",
        "attributeCreated",
        "attributeUpdated",
        "attributeDeleted"
    ]);
    let subscribed = broker
        .send(
            Method::POST,
            "/subscriptions",
            json!({"id": "urn:ngsi-ld:Subscription:triggers", "type": "Subscription",
            "entities": [{"type": "T"}], "notificationTrigger": triggers, "status": "expired",
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/"}, "timesSent": 42}}),
        )
        .await;
    assert_eq!(subscribed.status(), 201);
    let subscription = broker
        .get_json("/subscriptions/urn:ngsi-ld:Subscription:triggers")
        .await;
    assert_eq!(subscription["notificationTrigger"], triggers);
    assert_eq!(subscription["status"], "active");
    assert_eq!(subscription["notification"]["timesSent"], 0);
    // What the meta model allows beside them: a Property's valueType, a Relationship's
    // objectType, "@none" as the default instance's datasetId (not shown), a proof's sealed
    // members as plain strings.
    let allowed = json!({
        "id": "urn:ngsi-ld:T:allowed", "type": "T",
        "speed": [{"type": "Property", "value": 55, "datasetId": "@none", "valueType": "xsd:double"},
                  {"type": "Property", "value": 11, "datasetId": "urn:d:gps"}],
        "p": {"type": "Relationship", "object": "urn:x:2", "objectType": "OffStreetParking"},
        "route": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Road:1", {"object": "urn:ngsi-ld:Road:2"}]},
        "tickets": {"json": {"speed": 3, "type": "raw"}},
        "výška_1": 7,
        "location": {"type": "GeoProperty", "value": "{\"type\": \"Point\", \"coordinates\": [17.1, 48.7]}"},
        "note": "<script>alert('x')</script> \"q\" = ; ( )",
        "brandName": {"type": "LanguageProperty", "valueType": "langString",
                      "languageMap": {"sk": "škola", "en": ["school", "academy"], "@none": "default"}},
        "paris": {"type": "Relationship", "object": "urn:ngsi-ld:Ciudad:París"},
        "ngsildproof": {"type": "Property", "entityIdSealed": "urn:ngsi-ld:T:allowed",
                        "entityTypeSealed": "T", "value": {"type": "DataIntegrityProof", "proofValue": "z1"}}
    });
    let created = broker.send(Method::POST, "/entities", allowed).await;
    assert_eq!(created.status(), 201);
    let stored = broker.get_json("/entities/urn:ngsi-ld:T:allowed").await;
    assert_eq!(
        stored["speed"],
        json!([{"type": "Property", "value": 55, "valueType": "xsd:double"},
               {"type": "Property", "value": 11, "datasetId": "urn:d:gps"}])
    );
    assert_eq!(stored["p"]["objectType"], "OffStreetParking");
    assert_eq!(
        stored["route"]["objectList"],
        json!([{"object": "urn:ngsi-ld:Road:1"}, {"object": "urn:ngsi-ld:Road:2"}])
    );
    assert_eq!(
        stored["tickets"],
        json!({"type": "JsonProperty", "json": {"speed": 3, "type": "raw"}})
    );
    assert_eq!(stored["výška_1"]["value"], 7);
    assert_eq!(
        stored["location"]["value"],
        json!({"type": "Point", "coordinates": [17.1, 48.7]})
    );
    assert_eq!(
        stored["note"]["value"],
        "<script>alert('x')</script> \"q\" = ; ( )"
    );
    assert_eq!(
        stored["brandName"]["languageMap"]["en"],
        json!(["school", "academy"])
    );
    assert_eq!(stored["paris"]["object"], "urn:ngsi-ld:Ciudad:París");
    assert_eq!(
        stored["ngsildproof"]["entityIdSealed"],
        "urn:ngsi-ld:T:allowed"
    );
    assert_eq!(stored["ngsildproof"]["entityTypeSealed"], "T");
    assert_eq!(stored["ngsildproof"]["value"]["proofValue"], "z1");
    broker.server.cleanup().await;
}

/// Clause 6.3: what every operation does with its headers. `Accept` is negotiated (the
/// RFC 9110 weights, else the order json, ld+json, geo+json; 406 when nothing on offer is
/// acceptable), GeoJSON only where offered (Retrieve and Query Entities), `NGSILD-Tenant`
/// echoed, a body without `Content-Length` a 411 problem, unknown parameters 400, and the
/// broker says who it is at `/info/sourceIdentity`.
async fn requests_are_negotiated_as_clause_6_3_says(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let created = broker
        .send(
            Method::POST,
            "/entities",
            spot(7, 120.384, 36.062, "free", 1),
        )
        .await;
    assert_eq!(created.status(), 201);
    let path = "/entities/urn:ngsi-ld:ParkingSpot:qd-007";
    let negotiated = [
        (
            path,
            "application/ld+json, application/json",
            Some("application/json"),
        ),
        (
            path,
            "application/json;q=0, */*",
            Some("application/ld+json"),
        ),
        (
            path,
            "*/*;q=0.9, application/ld+json;q=0.8",
            Some("application/json"),
        ),
        (path, "application/geo+json", Some("application/geo+json")),
        (path, "application/xml", None),
        (
            "/types",
            "application/geo+json, application/json",
            Some("application/json"),
        ),
        ("/types", "application/geo+json", None),
        (
            "/temporal/entities?type=ParkingSpot",
            "application/geo+json",
            None,
        ),
    ];
    for (path, accept, chosen) in negotiated {
        let response = broker
            .call(Method::GET, path, Some(&broker.token))
            .header("accept", accept)
            .send()
            .await
            .expect("sent");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        match chosen {
            Some(chosen) => {
                assert_eq!(response.status(), 200, "{path} {accept}");
                assert!(
                    content_type.starts_with(chosen),
                    "{path} {accept}: {content_type}"
                );
            }
            None => assert_eq!(response.status(), 406, "{path} {accept}"),
        }
    }
    // GeoJSON (clause 6.3.15): a Feature, a FeatureCollection, the context in the body unless
    // `Prefer: body=json`, the geometry of `geometryProperty`.
    let geo_get = |path: &str, prefer: bool| {
        let builder = broker
            .call(Method::GET, path, Some(&broker.token))
            .header("accept", "application/geo+json");
        if prefer {
            builder.header("prefer", "body=json")
        } else {
            builder
        }
    };
    let feature: Value = geo_get(&format!("{path}?options=keyValues"), false)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(feature["type"], "Feature");
    assert_eq!(feature["id"], "urn:ngsi-ld:ParkingSpot:qd-007");
    assert_eq!(
        feature["geometry"],
        json!({"type": "Point", "coordinates": [120.384, 36.062]})
    );
    assert_eq!(feature["properties"]["type"], "ParkingSpot");
    assert_eq!(feature["properties"]["capacity"], 1);
    assert_eq!(feature["@context"], CORE);
    let other_geometry: Value = geo_get(&format!("{path}?geometryProperty=capacity"), false)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(other_geometry["geometry"], Value::Null);
    let collection = geo_get("/entities?type=ParkingSpot", true)
        .send()
        .await
        .expect("sent");
    assert!(collection.headers().get("link").is_some());
    let collection: Value = collection.json().await.expect("json");
    assert_eq!(collection["type"], "FeatureCollection");
    assert_eq!(
        collection["features"][0]["id"],
        "urn:ngsi-ld:ParkingSpot:qd-007"
    );
    assert!(collection.get("@context").is_none(), "{collection}");
    // The tenant is echoed, on errors too (a query of a tenant nobody created yet is 404).
    let unknown = broker
        .call(Method::GET, "/entities?type=T", Some(&broker.token))
        .header("ngsild-tenant", "district-a")
        .send()
        .await
        .expect("sent");
    assert_eq!(unknown.headers()["ngsild-tenant"], "district-a");
    expect_ngsi_error(unknown, 404, "NonexistentTenant").await;
    let created = broker
        .call(Method::POST, "/entities", Some(&broker.token))
        .header("content-type", "application/json")
        .header("ngsild-tenant", "district-a")
        .body(json!({"id": "urn:x:t", "type": "T"}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["ngsild-tenant"], "district-a");
    // A body sent without Content-Length (chunked): 411, nothing created. Clause 6.3.4 asks
    // for no body; the platform answers every error as problem+json, so the 411 has one.
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
    // Unknown parameters: 400 InvalidRequest.
    for path in [
        "/entities?type=T&fancy=1",
        "/types?fancy=1",
        "/subscriptions?fancy=1",
        "/temporal/entities?type=T&fancy=1",
        "/entities/urn:x:t?fancy=1",
    ] {
        expect_ngsi_error(broker.get(path).await, 400, "InvalidRequest").await;
    }
    // Clause 5.15.1: one alias per tenant, stable; an ISO 8601 uptime; the time in UTC.
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

async fn attributes_are_appended_updated_merged_and_deleted(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let id = "urn:ngsi-ld:ParkingSpot:qd-001";
    broker
        .send(
            Method::POST,
            "/entities",
            spot(1, 120.384, 36.062, "free", 1),
        )
        .await;
    let path = format!("/entities/{id}");

    let appended = broker
        .send(
            Method::POST,
            &format!("{path}/attrs"),
            json!({"chargeType": "free", "capacity": 2}),
        )
        .await;
    assert_eq!(appended.status(), 204);
    let kept = broker
        .send(
            Method::POST,
            &format!("{path}/attrs?options=noOverwrite"),
            json!({"capacity": 3, "width": 2.5}),
        )
        .await;
    assert_eq!(kept.status(), 207);
    let report: Value = kept.json().await.expect("json");
    assert_eq!(report["updated"], json!(["width"]));
    assert_eq!(report["notUpdated"][0]["attributeName"], "capacity");

    let updated = broker
        .send(Method::PATCH, &format!("{path}/attrs"), json!({"occupancy": {"value": "occupied", "observedAt": "2026-11-29T08:00:00Z"}, "colour": "red"}))
        .await;
    assert_eq!(
        updated.status(),
        207,
        "colour does not exist: reported, not added"
    );

    let partial = broker
        .send(
            Method::PATCH,
            &format!("{path}/attrs/capacity"),
            json!({"value": 4}),
        )
        .await;
    assert_eq!(partial.status(), 204);
    let replaced = broker
        .send(
            Method::PUT,
            &format!("{path}/attrs/width"),
            json!({"value": 2.4, "unitCode": "MTR"}),
        )
        .await;
    assert_eq!(replaced.status(), 204);

    let merged = broker
        .send(
            Method::PATCH,
            &path,
            json!({"chargeType": "urn:ngsi-ld:null", "lighting": true}),
        )
        .await;
    assert_eq!(merged.status(), 204);
    let deleted = broker
        .call(
            Method::DELETE,
            &format!("{path}/attrs/name"),
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 204);

    let entity = broker.get_json(&format!("{path}?options=keyValues")).await;
    assert_eq!(entity["occupancy"], "occupied");
    assert_eq!(entity["capacity"], 4);
    assert_eq!(entity["width"], 2.4);
    assert_eq!(entity["lighting"], true);
    assert!(
        entity.get("chargeType").is_none()
            && entity.get("name").is_none()
            && entity.get("colour").is_none(),
        "{entity}"
    );
    let normalized = broker.get_json(&path).await;
    assert_eq!(normalized["width"]["unitCode"], "MTR");
    assert_eq!(
        normalized["occupancy"]["observedAt"],
        "2026-11-29T08:00:00Z"
    );

    // Replace: type and attributes as given, nothing else kept.
    let replaced = broker
        .send(
            Method::PUT,
            &path,
            json!({"type": "ParkingSpot", "occupancy": "free"}),
        )
        .await;
    assert_eq!(replaced.status(), 204);
    let entity = broker.get_json(&format!("{path}?options=keyValues")).await;
    assert_eq!(
        entity,
        json!({"id": id, "type": "ParkingSpot", "occupancy": "free"})
    );

    let gone = broker
        .call(Method::DELETE, &path, Some(&broker.token))
        .send()
        .await
        .expect("sent");
    assert_eq!(gone.status(), 204);
    expect_ngsi_error(broker.get(&path).await, 404, "ResourceNotFound").await;

    // Clause 5.5.12: a merge goes into a Property's object value (RFC 7396, the NGSI-LD Null
    // removing a member); a partial update may not carry the Null inside a value (5.5.4).
    let address = json!({"id": "urn:ngsi-ld:Building:b1", "type": "Building",
        "address": {"type": "Property", "value": {"street": "中山路", "city": "青岛", "country": "中国"}}});
    assert_eq!(
        broker
            .send(Method::POST, "/entities", address)
            .await
            .status(),
        201
    );
    let merged = broker
        .send(Method::PATCH, "/entities/urn:ngsi-ld:Building:b1",
            json!({"address": {"type": "Property", "value": {"street": "香港中路", "country": "urn:ngsi-ld:null"}}}))
        .await;
    assert_eq!(merged.status(), 204);
    let building = broker.get_json("/entities/urn:ngsi-ld:Building:b1").await;
    assert_eq!(
        building["address"]["value"],
        json!({"street": "香港中路", "city": "青岛"})
    );
    let refused = broker
        .send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:Building:b1/attrs/address",
            json!({"value": {"city": "urn:ngsi-ld:null"}}),
        )
        .await;
    expect_ngsi_error(refused, 400, "BadRequestData").await;
    // Clause 4.17: a `type` selector on one entity's operations; the wrong type is not found.
    let appended = broker
        .send(
            Method::POST,
            "/entities/urn:ngsi-ld:Building:b1/attrs?type=Vehicle",
            json!({"floors": 3}),
        )
        .await;
    expect_ngsi_error(appended, 404, "ResourceNotFound").await;
    expect_ngsi_error(
        broker
            .get("/entities/urn:ngsi-ld:Building:b1?type=Vehicle")
            .await,
        404,
        "ResourceNotFound",
    )
    .await;
    let wrong_delete = broker
        .call(
            Method::DELETE,
            "/entities/urn:ngsi-ld:Building:b1?type=Vehicle",
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    expect_ngsi_error(wrong_delete, 404, "ResourceNotFound").await;
    let building = broker
        .get_json("/entities/urn:ngsi-ld:Building:b1?type=Building")
        .await;
    assert_eq!(building["address"]["value"]["city"], "青岛");
    assert!(building.get("floors").is_none(), "{building}");
    let deleted = broker
        .call(
            Method::DELETE,
            "/entities/urn:ngsi-ld:Building:b1?type=Building",
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 204);

    // Clause 5.5.8: a partial attribute update keeps the members it does not name, an update
    // replaces the attribute (instance by datasetId, a new one added), the NGSI-LD Null in an
    // update deletes it; a datasetId cannot be nulled.
    let sensor = "/entities/urn:ngsi-ld:Vehicle:v1";
    let created = broker
        .send(Method::POST, "/entities", json!({"id": "urn:ngsi-ld:Vehicle:v1", "type": "Vehicle",
            "temperature": {"type": "Property", "value": 25, "unitCode": "CEL", "observedAt": "2026-03-14T01:59:26.535Z"}}))
        .await;
    assert_eq!(created.status(), 201);
    let patched = broker
        .send(
            Method::PATCH,
            &format!("{sensor}/attrs/temperature"),
            json!({"value": 100, "observedAt": "2026-03-14T13:00:00.000Z"}),
        )
        .await;
    assert_eq!(patched.status(), 204);
    let temperature = broker.get_json(sensor).await["temperature"].clone();
    assert_eq!(
        (
            temperature["value"].clone(),
            temperature["unitCode"].clone()
        ),
        (json!(100), json!("CEL"))
    );
    let nulled = broker
        .send(
            Method::PATCH,
            &format!("{sensor}/attrs/temperature"),
            json!({"datasetId": "urn:ngsi-ld:null"}),
        )
        .await;
    expect_ngsi_error(nulled, 400, "BadRequestData").await;
    let updated = broker
        .send(Method::PATCH, &format!("{sensor}/attrs"),
            json!({"temperature": {"type": "Property", "value": 30, "datasetId": "urn:ngsi-ld:Dataset:extra"}}))
        .await;
    assert_eq!(updated.status(), 204);
    let temperature = broker.get_json(sensor).await["temperature"].clone();
    assert_eq!(
        temperature.as_array().map(Vec::len),
        Some(2),
        "{temperature}"
    );
    assert_eq!(temperature[0]["unitCode"], "CEL");
    let removed = broker
        .call(
            Method::DELETE,
            &format!("{sensor}/attrs/temperature?datasetId=urn:ngsi-ld:Dataset:extra"),
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(removed.status(), 204);
    assert_eq!(broker.get_json(sensor).await["temperature"]["value"], 100);
    let replaced = broker
        .send(
            Method::PATCH,
            &format!("{sensor}/attrs"),
            json!({"temperature": {"type": "Property", "value": 7}}),
        )
        .await;
    assert_eq!(replaced.status(), 204);
    assert_eq!(
        broker.get_json(sensor).await["temperature"],
        json!({"type": "Property", "value": 7})
    );
    let deleted = broker
        .send(
            Method::PATCH,
            &format!("{sensor}/attrs"),
            json!({"temperature": {"type": "Property", "value": "urn:ngsi-ld:null"}}),
        )
        .await;
    assert_eq!(deleted.status(), 204);
    assert!(broker.get_json(sensor).await.get("temperature").is_none());
    broker.server.cleanup().await;
}

/// Clauses 4.5.4, 4.5.17, 4.15 and 4.21: the simplified form of each attribute type (instances
/// by dataset), GeoJSON with it, the language filter, and attribute projections.
async fn representations_follow_each_attribute_type(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let created = broker
        .send(Method::POST, "/entities", json!({"id": "urn:ngsi-ld:Vehicle:r1", "type": "Vehicle",
            "speed": [{"type": "Property", "value": 55}, {"type": "Property", "value": 11, "datasetId": "urn:ngsi-ld:Dataset:gps"}],
            "brandName": {"type": "LanguageProperty", "languageMap": {"zh": "青岛啤酒", "en": "Tsingtao", "nl-BE": "Tsingtao bier"}},
            "street": {"type": "JsonProperty", "json": {"a": 1}},
            "category": {"type": "VocabProperty", "vocab": "nonCommercial"},
            "depths": {"type": "ListProperty", "valueList": [1.2, 3.4]},
            "isParked": {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:1"},
            "route": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Road:1", "urn:ngsi-ld:Road:2"]},
            "location": [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.3, 36.0]}, "datasetId": "urn:ngsi-ld:Dataset:gps"},
                         {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.4, 36.1]}}]}))
        .await;
    assert_eq!(created.status(), 201);
    let path = "/entities/urn:ngsi-ld:Vehicle:r1";
    let simplified = broker.get_json(&format!("{path}?options=keyValues")).await;
    assert_eq!(
        simplified["speed"],
        json!({"dataset": {"@none": 55, "urn:ngsi-ld:Dataset:gps": 11}})
    );
    assert_eq!(simplified["brandName"]["languageMap"]["en"], "Tsingtao");
    assert_eq!(simplified["street"], json!({"json": {"a": 1}}));
    assert_eq!(simplified["category"], json!({"vocab": "nonCommercial"}));
    assert_eq!(simplified["depths"], json!([1.2, 3.4]));
    assert_eq!(simplified["isParked"], "urn:ngsi-ld:OffStreetParking:1");
    assert_eq!(
        simplified["route"],
        json!(["urn:ngsi-ld:Road:1", "urn:ngsi-ld:Road:2"])
    );
    let feature: Value = broker
        .call(
            Method::GET,
            &format!("{path}?options=keyValues"),
            Some(&broker.token),
        )
        .header("accept", "application/geo+json")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        feature["geometry"],
        json!({"type": "Point", "coordinates": [120.4, 36.1]})
    );
    assert_eq!(feature["properties"]["speed"]["dataset"]["@none"], 55);
    // (lang, the tag shown): weights before order, any case, truncation and prefix, any tag
    // when none matches.
    for (lang, tag) in [
        ("en;q=0.2,zh;q=0.9", "zh"),
        ("EN", "en"),
        ("zh-Hans-CN", "zh"),
        ("nl", "nl-BE"),
        ("pt", ""),
    ] {
        let entity = broker
            .get_json(&format!("{path}?lang={}", urlencode(lang)))
            .await;
        let name = &entity["brandName"];
        assert_eq!(name["type"], "Property", "{lang}: {name}");
        assert!(name.get("languageMap").is_none(), "{lang}: {name}");
        let shown = name["lang"].as_str().unwrap_or_default();
        if tag.is_empty() {
            assert!(["zh", "en", "nl-BE"].contains(&shown), "{lang}: {name}");
        } else {
            assert_eq!(shown, tag, "{lang}: {name}");
        }
    }
    let picked = broker
        .get_json(&format!("{path}?pick=id|speed,isParked"))
        .await;
    let mut members: Vec<&String> = picked
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    members.sort();
    assert_eq!(members, ["id", "isParked", "speed"]);
    let omitted = broker
        .get_json(&format!("{path}?omit=type,location,speed"))
        .await;
    assert!(
        omitted.get("type").is_none()
            && omitted.get("location").is_none()
            && omitted.get("speed").is_none()
    );
    assert!(omitted.get("brandName").is_some());
    // Clause 4.21: pick and omit stand instead of attrs and never name one member twice;
    // nothing left is not found, in the temporal representation too.
    for bad in [
        "pick=speed||route",
        "pick=id;speed",
        "pick=speed&omit=speed",
        "pick=speed&attrs=isParked",
        "omit=speed&attrs=isParked",
    ] {
        for base in [path.to_owned(), format!("/temporal{path}")] {
            expect_ngsi_error(
                broker.get(&format!("{base}?{bad}")).await,
                400,
                "BadRequestData",
            )
            .await;
        }
    }
    let everything = "omit=id,type,brandName,speed,street,category,depths,isParked,route,location";
    for nothing in ["pick=unknown", everything] {
        for base in [path.to_owned(), format!("/temporal{path}")] {
            expect_ngsi_error(
                broker.get(&format!("{base}?{nothing}")).await,
                404,
                "ResourceNotFound",
            )
            .await;
        }
    }
    let temporal = broker
        .get_json(&format!("/temporal{path}?omit=type,speed"))
        .await;
    assert!(temporal.get("type").is_none() && temporal.get("speed").is_none());
    assert!(temporal["id"].is_string() && temporal["brandName"].is_array());
    let temporal_picked = broker
        .get_json(&format!("/temporal{path}?pick=speed"))
        .await;
    let members: Vec<&String> = temporal_picked
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(members, ["speed"], "{temporal_picked}");
    broker.server.cleanup().await;
}

/// Clauses 5.9 and 5.10: context source registrations are kept, discovered by entity type, id
/// and attribute, updated and deleted; another department sees none of them.
async fn context_sources_are_registered_and_discovered(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let registration = json!({"id": "urn:ngsi-ld:ContextSourceRegistration:parking-bureau",
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "ParkingSpot", "idPattern": "urn:ngsi-ld:ParkingSpot:qd-.*"}],
                         "propertyNames": ["occupancy"], "relationshipNames": ["refParkingSite"]}],
        "endpoint": "http://parking.qingdao.example:1026", "mode": "inclusive",
        "expiresAt": "2099-01-01T00:00:00Z", "location": {"type": "Point", "coordinates": [120.38, 36.06]},
        "@context": [parking_context()]});
    let created = broker
        .call(Method::POST, "/csourceRegistrations", Some(&broker.token))
        .header("content-type", "application/ld+json")
        .body(registration.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);
    assert_eq!(
        created.headers()["location"],
        "/ngsi-ld/v1/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:parking-bureau"
    );
    let path = "/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:parking-bureau";
    let stored = broker.get_json(path).await;
    assert_eq!(stored["status"], "active");
    assert_eq!(stored["endpoint"], "http://parking.qingdao.example:1026");
    // Without the client's context the names come back as IRIs.
    assert_eq!(
        stored["information"][0]["entities"][0]["type"],
        "https://smartdatamodels.org/dataModel.Parking/ParkingSpot"
    );
    let expanded = "https://smartdatamodels.org/dataModel.Parking";
    for (query, found) in [
        (
            format!("type={}", urlencode(&format!("{expanded}/ParkingSpot"))),
            1,
        ),
        ("type=Vehicle".to_owned(), 0),
        (
            format!(
                "type={}&attrs={}",
                urlencode(&format!("{expanded}/ParkingSpot")),
                urlencode(&format!("{expanded}/occupancy"))
            ),
            1,
        ),
        (
            format!(
                "type={}&attrs=speed",
                urlencode(&format!("{expanded}/ParkingSpot"))
            ),
            0,
        ),
    ] {
        let list = broker
            .get_json(&format!("/csourceRegistrations?{query}"))
            .await;
        assert_eq!(list.as_array().map(Vec::len), Some(found), "{query}");
    }
    let updated = broker
        .send(
            Method::PATCH,
            path,
            json!({"endpoint": "http://parking2.qingdao.example:1026"}),
        )
        .await;
    assert_eq!(updated.status(), 204);
    assert_eq!(
        broker.get_json(path).await["endpoint"],
        "http://parking2.qingdao.example:1026"
    );
    for bad in [
        json!({"type": "ContextSourceRegistration", "information": [], "endpoint": "http://x.example"}),
        json!({"type": "ContextSourceRegistration", "information": [{"entities": [{"id": "urn:x:1"}]}], "endpoint": "http://x.example"}),
        json!({"type": "ContextSourceRegistration", "information": [{"propertyNames": ["a"]}]}),
        json!({"type": "ContextSourceRegistration", "information": [{"propertyNames": ["a"]}], "endpoint": "http://x.example", "mode": "sometimes"}),
        json!({"type": "ContextSourceRegistration", "information": [{"propertyNames": ["a"]}], "endpoint": "http://x.example", "expiresAt": "2000-01-01T00:00:00Z"}),
    ] {
        expect_ngsi_error(
            broker
                .send(Method::POST, "/csourceRegistrations", bad)
                .await,
            400,
            "BadRequestData",
        )
        .await;
    }
    let again = broker
        .call(Method::POST, "/csourceRegistrations", Some(&broker.token))
        .header("content-type", "application/ld+json")
        .body(registration.to_string())
        .send()
        .await
        .expect("sent");
    expect_ngsi_error(again, 409, "AlreadyExists").await;
    // Another department neither sees nor changes it.
    let admin = broker.server.admin().await;
    let other = broker
        .server
        .user(&admin, "water.op", "water", "operator")
        .await;
    let hidden = broker
        .call(Method::GET, path, Some(&other))
        .send()
        .await
        .expect("sent");
    expect_ngsi_error(hidden, 404, "ResourceNotFound").await;
    let none: Value = broker
        .call(Method::GET, "/csourceRegistrations", Some(&other))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(none, json!([]));
    let deleted = broker
        .call(Method::DELETE, path, Some(&broker.token))
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 204);
    expect_ngsi_error(broker.get(path).await, 404, "ResourceNotFound").await;
    broker.server.cleanup().await;
}

/// Clauses 4.18 and 4.19: an entity's scopes are kept, appended, merged and deleted like an
/// attribute (never partially updated), and `scopeQ` selects by them.
async fn scopes_place_entities_in_hierarchies(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    for (id, scope) in [
        ("urn:ngsi-ld:Building:b1", json!("/Qingdao/Shinan/Badaguan")),
        (
            "urn:ngsi-ld:Building:b2",
            json!(["/Qingdao/Laoshan", "/Parks/Seaside"]),
        ),
        ("urn:ngsi-ld:Building:b3", Value::Null),
    ] {
        let mut entity =
            json!({"id": id, "type": "Building", "name": {"type": "Property", "value": id}});
        if !scope.is_null() {
            entity["scope"] = scope;
        }
        assert_eq!(
            broker
                .send(Method::POST, "/entities", entity)
                .await
                .status(),
            201
        );
    }
    assert_eq!(
        broker.get_json("/entities/urn:ngsi-ld:Building:b1").await["scope"],
        "/Qingdao/Shinan/Badaguan"
    );
    // (scopeQ, the buildings it selects)
    let cases = [
        ("/Qingdao/Shinan/Badaguan", vec!["b1"]),
        ("/Qingdao/%23", vec!["b1", "b2"]),
        ("/%23", vec!["b1", "b2"]),
        ("/Qingdao", vec![]),
        ("/Qingdao/%2B", vec!["b2"]),
        ("/Qingdao/%2B/Badaguan", vec!["b1"]),
        ("/Parks/%23;/Qingdao/%23", vec!["b2"]),
        ("/Parks/%23,/Qingdao/Shinan/%23", vec!["b1", "b2"]),
    ];
    for (scope_q, expected) in cases {
        let found = broker
            .get_json(&format!("/entities?type=Building&scopeQ={scope_q}"))
            .await;
        let mut ids: Vec<String> = found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e["id"]
                    .as_str()
                    .map(|id| id.trim_start_matches("urn:ngsi-ld:Building:").to_owned())
            })
            .collect();
        ids.sort();
        assert_eq!(ids, expected, "scopeQ={scope_q}");
    }
    expect_ngsi_error(
        broker.get("/entities?type=Building&scopeQ=Qingdao").await,
        400,
        "BadRequestData",
    )
    .await;
    let path = "/entities/urn:ngsi-ld:Building:b3";
    let appended = broker
        .send(
            Method::POST,
            &format!("{path}/attrs"),
            json!({"scope": "/Qingdao/Huangdao"}),
        )
        .await;
    assert_eq!(appended.status(), 204);
    let appended = broker
        .send(
            Method::POST,
            &format!("{path}/attrs"),
            json!({"scope": ["/Qingdao/Jimo"]}),
        )
        .await;
    assert_eq!(appended.status(), 204);
    assert_eq!(
        broker.get_json(path).await["scope"],
        json!(["/Qingdao/Huangdao", "/Qingdao/Jimo"])
    );
    let partial = broker
        .send(
            Method::PATCH,
            &format!("{path}/attrs/scope"),
            json!({"value": "/X"}),
        )
        .await;
    expect_ngsi_error(partial, 400, "BadRequestData").await;
    let merged = broker
        .send(Method::PATCH, path, json!({"scope": "/Qingdao/Chengyang"}))
        .await;
    assert_eq!(merged.status(), 204);
    assert_eq!(broker.get_json(path).await["scope"], "/Qingdao/Chengyang");
    let removed = broker
        .call(
            Method::DELETE,
            &format!("{path}/attrs/scope"),
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(removed.status(), 204);
    let building = broker.get_json(path).await;
    assert!(building.get("scope").is_none(), "{building}");
    assert_eq!(building["name"]["value"], "urn:ngsi-ld:Building:b3");
    // Clause 4.5.6: the temporal evolution of Scope, a Property observed when it changed.
    let first = "urn:ngsi-ld:Building:b1";
    let moved = broker
        .send(
            Method::PATCH,
            &format!("/entities/{first}"),
            json!({"scope": "/Qingdao/Shinan/Taiping"}),
        )
        .await;
    assert_eq!(moved.status(), 204);
    let evolution = broker
        .get_json(&format!("/temporal/entities/{first}?options=sysAttrs"))
        .await;
    let scopes = evolution["scope"].as_array().expect("scope instances");
    let values: Vec<&Value> = scopes.iter().map(|s| &s["value"]).collect();
    assert_eq!(
        values,
        [
            &json!("/Qingdao/Shinan/Badaguan"),
            &json!("/Qingdao/Shinan/Taiping")
        ]
    );
    for scope in scopes {
        assert_eq!(scope["type"], "Property", "{scope}");
        assert_eq!(scope["observedAt"], scope["modifiedAt"], "{scope}");
    }
    broker.server.cleanup().await;
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

async fn queries_filter_page_and_count(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    // 30 spots along 36.062°N: 13 fall in 市南区, 2 in 崂山区, the rest at sea (computed with a
    // ray-casting check of the shipped boundaries).
    for i in 0..30u32 {
        let lon = 120.37 + f64::from(i) * 0.004;
        let occupancy = if i % 3 == 0 { "occupied" } else { "free" };
        let created = broker
            .send(
                Method::POST,
                "/entities",
                spot(i, lon, 36.062, occupancy, i),
            )
            .await;
        assert_eq!(created.status(), 201);
    }
    // Sites whose values test the database pre-filter of q: a number, a list, a number as text.
    for site in [
        json!({"id": "urn:ngsi-ld:ParkingSite:qd-1", "type": "ParkingSite", "capacity": 30, "covered": true}),
        json!({"id": "urn:ngsi-ld:ParkingSite:qd-2", "type": "ParkingSite", "capacity": [10, 40]}),
        json!({"id": "urn:ngsi-ld:ParkingSite:qd-3", "type": "ParkingSite", "capacity": "45", "covered": false}),
    ] {
        assert_eq!(
            broker.send(Method::POST, "/entities", site).await.status(),
            201
        );
    }

    let ids = |page: &Value| -> Vec<String> {
        page.as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|e| e["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    // (query, how many match)
    let cases: &[(&str, usize)] = &[
        ("type=ParkingSpot", 30),
        ("type=ParkingSpot,ParkingSite", 33),
        ("type=ParkingSite", 3),
        (
            "id=urn:ngsi-ld:ParkingSpot:qd-001,urn:ngsi-ld:ParkingSpot:qd-002",
            2,
        ),
        ("idPattern=urn:ngsi-ld:ParkingSpot:qd-00.*", 10),
        ("type=ParkingSpot&q=occupancy==\"occupied\"", 10),
        ("type=ParkingSpot&q=capacity>=25", 5),
        ("type=ParkingSpot&q=capacity==10..14", 5),
        ("type=ParkingSpot&q=capacity<3|capacity>27", 5),
        ("type=ParkingSpot&q=capacity<10;occupancy==\"occupied\"", 4),
        ("type=ParkingSpot&q=address[district]==\"崂山区\"", 17),
        (
            "type=ParkingSpot&q=occupancy.observedAt>2026-11-29T06:00:00Z",
            30,
        ),
        (
            "type=ParkingSpot&q=refParkingSite==urn:ngsi-ld:ParkingSite:qd-1",
            30,
        ),
        ("type=ParkingSpot&q=name~=停车位 2.", 10),
        ("attrs=capacity", 33),
        // Clause 4.9: a number as text does not compare with numbers ("45" is not >= 35).
        ("type=ParkingSpot,ParkingSite&q=capacity>=25", 7),
        ("type=ParkingSite&q=capacity>=35", 1),
        ("type=ParkingSite&q=capacity==35..50", 1),
        ("type=ParkingSite&q=capacity==\"45\"", 1),
        ("type=ParkingSite&q=capacity>\"400\"", 1),
        ("type=ParkingSite&q=capacity==30", 1),
        ("type=ParkingSite&q=covered==true", 1),
        ("type=ParkingSite&q=covered==false", 1),
        ("type=ParkingSpot&q=name==\"停车位 3\"", 1),
        ("type=ParkingSpot&q=occupancy==\"free\";capacity<3", 2),
        (
            "type=ParkingSpot&georel=near;maxDistance==1000&geometry=Point&coordinates=[120.37,36.062]",
            3,
        ),
        (
            "type=ParkingSpot&georel=near;minDistance==1000&geometry=Point&coordinates=[120.37,36.062]",
            27,
        ),
    ];
    for (query, expected) in cases {
        let page = broker
            .get_json(&format!("/entities?{query}&limit=1000"))
            .await;
        assert_eq!(ids(&page).len(), *expected, "{query}: {page}");
    }

    // Geo on the real district polygons.
    for (name, expected) in [("市南区", 13), ("崂山区", 2), ("黄岛区", 0)] {
        let geometry = district(name);
        let path = format!(
            "/entities?type=ParkingSpot&georel=within&geometry={}&coordinates={}&limit=100",
            geometry["type"].as_str().unwrap_or_default(),
            urlencode(&geometry["coordinates"].to_string())
        );
        let page = broker.get_json(&path).await;
        assert_eq!(ids(&page).len(), expected, "within {name}");
        let response = broker
            .call(Method::POST, "/entityOperations/query?limit=100", Some(&broker.token))
            .header("content-type", "application/json")
            .body(json!({"type": "Query", "entities": [{"type": "ParkingSpot"}],
                "geoQ": {"georel": "intersects", "geometry": geometry["type"], "coordinates": geometry["coordinates"]}}).to_string())
            .send()
            .await
            .expect("sent");
        let page: Value = response.json().await.expect("json");
        assert_eq!(ids(&page).len(), expected, "POST query intersects {name}");
    }

    // Paging: ordered by id, the count in a header, no overlap between pages.
    let mut seen = Vec::new();
    for offset in (0..30).step_by(7) {
        let response = broker
            .get(&format!(
                "/entities?type=ParkingSpot&limit=7&offset={offset}&count=true"
            ))
            .await;
        assert_eq!(response.headers()["ngsild-results-count"], "30");
        let page: Value = response.json().await.expect("json");
        seen.extend(ids(&page));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((seen.len(), sorted), (30, seen.clone()));
    let filtered = broker
        .get("/entities?type=ParkingSpot&q=occupancy==\"free\"&limit=5&offset=15&count=true")
        .await;
    assert_eq!(filtered.headers()["ngsild-results-count"], "20");
    let page: Value = filtered.json().await.expect("json");
    assert_eq!(ids(&page).len(), 5);
    // Pages and counts are the same whether the database decides q (plain values) or the
    // exact evaluation must look (a list and a number as text among the sites).
    for q in [
        "occupancy==\"free\";capacity>=4",
        "capacity>=25",
        "capacity>=35",
    ] {
        let all = ids(&broker
            .get_json(&format!(
                "/entities?type=ParkingSpot,ParkingSite&q={q}&limit=1000"
            ))
            .await);
        for offset in [0, 1, 3] {
            let response = broker
                .get(&format!(
                    "/entities?type=ParkingSpot,ParkingSite&q={q}&limit=2&offset={offset}&count=true"
                ))
                .await;
            assert_eq!(
                response.headers()["ngsild-results-count"],
                all.len().to_string().as_str(),
                "{q}"
            );
            let page: Value = response.json().await.expect("json");
            let expected: Vec<String> = all.iter().skip(offset).take(2).cloned().collect();
            assert_eq!(ids(&page), expected, "{q} from {offset}");
        }
    }
    let only_count = broker
        .get("/entities?type=ParkingSpot&limit=0&count=true")
        .await;
    assert_eq!(only_count.headers()["ngsild-results-count"], "30");
    assert!(
        only_count
            .headers()
            .get_all("link")
            .iter()
            .all(|l| !l.to_str().unwrap_or_default().contains("rel=\"next\"")),
        "no pages to link to with limit=0"
    );
    assert_eq!(only_count.json::<Value>().await.expect("json"), json!([]));
    // Clause 4.12: links to the previous and next pages, the request's parameters kept.
    let links = |response: &reqwest::Response| -> Vec<String> {
        response
            .headers()
            .get_all("link")
            .iter()
            .filter_map(|l| l.to_str().ok().map(str::to_owned))
            .filter(|l| l.contains("rel=\"prev\"") || l.contains("rel=\"next\""))
            .collect()
    };
    let total: usize = broker
        .get("/entities?type=ParkingSpot&q=capacity<3&limit=0&count=true")
        .await
        .headers()["ngsild-results-count"]
        .to_str()
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_default();
    assert!(total >= 3, "{total}");
    let mut pages = Vec::new();
    for offset in [0, 1, total - 1] {
        pages.push(
            broker
                .get(&format!(
                    "/entities?type=ParkingSpot&q=capacity<3&limit=1&offset={offset}"
                ))
                .await,
        );
    }
    let (first, middle, last) = (&pages[0], &pages[1], &pages[2]);
    let page = |offset: usize, rel: &str| {
        format!(
            "</ngsi-ld/v1/entities?limit=1&offset={offset}&q=capacity%3C3&type=ParkingSpot>; rel=\"{rel}\";type=\"application/json\""
        )
    };
    assert_eq!(links(first), [page(1, "next")]);
    assert_eq!(links(middle), [page(0, "prev"), page(2, "next")]);
    assert_eq!(links(last), [page(total - 2, "prev")]);
    // Table 5.2.23-1: the members of a Query body, checked.
    for body in [
        json!({"type": "Query", "entities": []}),
        json!({"type": "Query", "entities": [{"type": "ParkingSpot"}], "attrs": []}),
        json!({"type": "Query", "entities": [{"type": "ParkingSpot"}], "q": 42}),
        json!({"type": "Query", "entities": [{"type": "ParkingSpot"}], "join": "inline", "joinLevel": 0}),
        json!({"type": "Query", "entities": [{"type": "ParkingSpot"}], "temporalQ": {"timerel": "after", "timeAt": "2026-01-01T00:00:00Z"}}),
        json!({"type": "NotQuery", "entities": [{"type": "ParkingSpot"}]}),
    ] {
        let response = broker
            .send(Method::POST, "/entityOperations/query", body.clone())
            .await;
        assert_eq!(response.status(), 400, "{body}");
    }
    let picked: Value = broker
        .send(Method::POST, "/entityOperations/query?limit=2",
            json!({"type": "Query", "entities": [{"type": "ParkingSpot"}], "pick": ["id", "capacity"]}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(picked.as_array().map(Vec::len), Some(2));
    assert!(
        picked.as_array().into_iter().flatten().all(|e| e
            .as_object()
            .is_some_and(|o| o.len() == 2 && o.contains_key("capacity"))),
        "{picked}"
    );
    // Clause 4.23: orderBy an attribute (numbers, then text, absent last), a member of a
    // value, or the distance from orderFrom.
    let order = |query: String| {
        let broker = &broker;
        async move {
            let page = broker.get_json(&query).await;
            page.as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    e["id"].as_str().map(|id| {
                        id.trim_start_matches("urn:ngsi-ld:ParkingSpot:qd-")
                            .to_owned()
                    })
                })
                .collect::<Vec<_>>()
        }
    };
    let five = "/entities?type=ParkingSpot&id=urn:ngsi-ld:ParkingSpot:qd-000,urn:ngsi-ld:ParkingSpot:qd-004,urn:ngsi-ld:ParkingSpot:qd-009,urn:ngsi-ld:ParkingSpot:qd-020,urn:ngsi-ld:ParkingSpot:qd-029";
    assert_eq!(
        order(format!("{five}&orderBy=capacity;desc")).await,
        ["029", "020", "009", "004", "000"]
    );
    assert_eq!(
        order(format!("{five}&orderBy=occupancy,capacity;desc")).await,
        ["029", "020", "004", "009", "000"]
    );
    assert_eq!(
        order(format!(
            "{five}&orderBy=location;dist-asc&orderFrom=[120.45,36.062]"
        ))
        .await,
        ["020", "029", "009", "004", "000"]
    );
    assert_eq!(
        order(format!(
            "{five}&orderBy=location;dist-desc&orderFrom=[120.45,36.062]"
        ))
        .await,
        ["000", "004", "009", "029", "020"]
    );
    assert_eq!(
        // 崂山区 (U+5D02) before 市南区 (U+5E02): code point order.
        order(format!("{five}&orderBy=address[district],capacity")).await,
        ["020", "029", "000", "004", "009"]
    );
    for bad in [
        "orderBy=location;dist-asc",
        "orderBy=capacity;sideways",
        "orderBy=capacity&collation=!!nope",
    ] {
        expect_ngsi_error(
            broker.get(&format!("{five}&{bad}")).await,
            400,
            "BadRequestData",
        )
        .await;
    }
    // Clause 4.23.3: collation sorts strings as a locale does: `und` ranks "á" with "a",
    // `zh` sorts Chinese names by pinyin; without it, by code point.
    for (id, name) in [
        ("s1", "A"),
        ("s2", "b"),
        ("s3", "á"),
        ("s4", "上海路站"),
        ("s5", "北京路站"),
        ("s6", "青岛站"),
    ] {
        let created = broker
            .send(
                Method::POST,
                "/entities",
                json!({"id": format!("urn:ngsi-ld:Stop:{id}"), "type": "Stop", "name": name}),
            )
            .await;
        assert_eq!(created.status(), 201);
    }
    let names = |query: &'static str| {
        let broker = &broker;
        async move {
            let page = broker.get_json(query).await;
            page.as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"]["value"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        names("/entities?type=Stop&orderBy=name").await,
        ["A", "b", "á", "上海路站", "北京路站", "青岛站"]
    );
    assert_eq!(
        names("/entities?type=Stop&orderBy=name&collation=und").await,
        ["A", "á", "b", "上海路站", "北京路站", "青岛站"]
    );
    assert_eq!(
        names("/entities?type=Stop&idPattern=.*:s[456]&orderBy=name&collation=zh").await,
        ["北京路站", "青岛站", "上海路站"]
    );
    assert_eq!(
        names("/entities?type=Stop&idPattern=.*:s[456]&orderBy=name;desc&collation=zh").await,
        ["上海路站", "青岛站", "北京路站"]
    );
    // Clause 5.7.2.4: system attributes alone do not narrow a query; linked-entity q and a
    // malformed csf are refused. Table 5.2.33-1: selectors need a type and URIs as ids.
    for bad in [
        "/entities?attrs=createdAt",
        "/entities?q=modifiedAt>\"2020-01-01T00:00:00Z\"",
        "/entities?type=ParkingSpot&q=owner{name}==\"x\"",
        "/entities?type=ParkingSpot&csf=))bad((",
    ] {
        expect_ngsi_error(broker.get(bad).await, 400, "BadRequestData").await;
    }
    for selector in [
        json!({"id": "urn:ngsi-ld:ParkingSpot:qd-001"}),
        json!({"type": "ParkingSpot", "id": "not a uri"}),
        json!({"type": "ParkingSpot", "id": ["urn:ngsi-ld:ParkingSpot:qd-001", 5]}),
    ] {
        let response = broker
            .send(
                Method::POST,
                "/entityOperations/query",
                json!({"type": "Query", "entities": [selector]}),
            )
            .await;
        expect_ngsi_error(response, 400, "BadRequestData").await;
    }
    let by_ids: Value = broker
        .send(Method::POST, "/entityOperations/query", json!({"type": "Query", "entities": [{"type": "ParkingSpot",
            "id": ["urn:ngsi-ld:ParkingSpot:qd-001", "urn:ngsi-ld:ParkingSpot:qd-002"], "idPattern": ".*qd-02.*"}]}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        ids(&by_ids),
        [
            "urn:ngsi-ld:ParkingSpot:qd-001",
            "urn:ngsi-ld:ParkingSpot:qd-002"
        ]
    );
    // geometryProperty only with a GeoJSON answer (clause 5.7.2.4).
    expect_ngsi_error(
        broker
            .get("/entities?type=ParkingSpot&geometryProperty=location")
            .await,
        400,
        "BadRequestData",
    )
    .await;
    broker.server.cleanup().await;
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

/// A batch report's errors: each entity id with its error type.
fn batch_failures(report: &Value) -> Vec<(String, String)> {
    report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["entityId"].as_str().unwrap_or_default().to_owned(),
                e["error"]["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn batch_operations_report_each_entity(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let shared = &broker;
    let batch = |op: &str, query: &str, body: Value| {
        let path = format!("/entityOperations/{op}{query}");
        async move { shared.send(Method::POST, &path, body).await }
    };
    // create: all good → 201 with the ids; one bad and one existing → 207.
    let created = batch(
        "create",
        "",
        json!([
            spot(1, 120.38, 36.06, "free", 1),
            spot(2, 120.39, 36.06, "free", 2)
        ]),
    )
    .await;
    assert_eq!(created.status(), 201);
    assert_eq!(
        created.json::<Value>().await.expect("json"),
        json!([
            "urn:ngsi-ld:ParkingSpot:qd-001",
            "urn:ngsi-ld:ParkingSpot:qd-002"
        ])
    );
    let mixed = batch(
        "create",
        "",
        json!([spot(3, 120.38, 36.06, "free", 3), spot(1, 120.38, 36.06, "free", 1), {"id": "urn:ngsi-ld:ParkingSpot:qd-009"}]),
    )
    .await;
    assert_eq!(mixed.status(), 207);
    let report: Value = mixed.json().await.expect("json");
    assert_eq!(report["success"], json!(["urn:ngsi-ld:ParkingSpot:qd-003"]));
    assert_eq!(
        batch_failures(&report),
        vec![
            (
                "urn:ngsi-ld:ParkingSpot:qd-001".to_owned(),
                format!("{ERRORS}AlreadyExists")
            ),
            (
                "urn:ngsi-ld:ParkingSpot:qd-009".to_owned(),
                format!("{ERRORS}BadRequestData")
            ),
        ]
    );

    // upsert: existing replaced (default) or merged (options=update); new ones created.
    let upserted = batch(
        "upsert",
        "",
        json!([{"id": "urn:ngsi-ld:ParkingSpot:qd-001", "type": "ParkingSpot", "occupancy": "occupied"},
               spot(4, 120.38, 36.06, "free", 4)]),
    )
    .await;
    assert_eq!(upserted.status(), 201);
    assert_eq!(
        upserted.json::<Value>().await.expect("json"),
        json!(["urn:ngsi-ld:ParkingSpot:qd-004"])
    );
    let replaced = broker
        .get_json("/entities/urn:ngsi-ld:ParkingSpot:qd-001?options=keyValues")
        .await;
    assert_eq!(
        replaced,
        json!({"id": "urn:ngsi-ld:ParkingSpot:qd-001", "type": "ParkingSpot", "occupancy": "occupied"})
    );
    let merged = batch(
        "upsert",
        "?options=update",
        json!([{"id": "urn:ngsi-ld:ParkingSpot:qd-002", "type": "ParkingSpot", "occupancy": "occupied"}]),
    )
    .await;
    assert_eq!(merged.status(), 204);
    let kept = broker
        .get_json("/entities/urn:ngsi-ld:ParkingSpot:qd-002?options=keyValues")
        .await;
    assert_eq!(
        (kept["occupancy"].clone(), kept["capacity"].clone()),
        (json!("occupied"), json!(2))
    );

    // update: only existing entities; noOverwrite keeps what is there.
    let updated = batch(
        "update",
        "?options=noOverwrite",
        json!([{"id": "urn:ngsi-ld:ParkingSpot:qd-002", "type": "ParkingSpot", "occupancy": "free", "width": 2.5},
               {"id": "urn:ngsi-ld:ParkingSpot:qd-404", "type": "ParkingSpot", "width": 2.5}]),
    )
    .await;
    assert_eq!(updated.status(), 207);
    let report: Value = updated.json().await.expect("json");
    assert_eq!(
        report["errors"][0]["entityId"],
        "urn:ngsi-ld:ParkingSpot:qd-404"
    );
    assert_eq!(
        report["errors"][0]["error"]["type"],
        format!("{ERRORS}ResourceNotFound")
    );
    let kept = broker
        .get_json("/entities/urn:ngsi-ld:ParkingSpot:qd-002?options=keyValues")
        .await;
    assert_eq!(
        (kept["occupancy"].clone(), kept["width"].clone()),
        (json!("occupied"), json!(2.5))
    );

    // merge (5.6.20): each entity as Merge Entity does (types added, attributes replaced or
    // added, "urn:ngsi-ld:null" deletes); missing and invalid ones reported, the rest merged.
    let merged = batch(
        "merge",
        "",
        json!([{"id": "urn:ngsi-ld:ParkingSpot:qd-002", "type": "ParkingSpot", "occupancy": "free",
                "width": "urn:ngsi-ld:null", "length": 5.0},
               {"id": "urn:ngsi-ld:ParkingSpot:qd-404", "occupancy": "free"},
               {"type": "ParkingSpot", "occupancy": "free"},
               "urn:ngsi-ld:ParkingSpot:qd-003"]),
    )
    .await;
    assert_eq!(merged.status(), 207);
    let report: Value = merged.json().await.expect("json");
    assert_eq!(report["success"], json!(["urn:ngsi-ld:ParkingSpot:qd-002"]));
    assert_eq!(
        batch_failures(&report),
        vec![
            (
                "urn:ngsi-ld:ParkingSpot:qd-404".to_owned(),
                format!("{ERRORS}ResourceNotFound")
            ),
            (String::new(), format!("{ERRORS}BadRequestData")),
            (String::new(), format!("{ERRORS}BadRequestData")),
        ]
    );
    let kept = broker
        .get_json("/entities/urn:ngsi-ld:ParkingSpot:qd-002?options=keyValues")
        .await;
    assert_eq!(
        (
            kept["occupancy"].clone(),
            kept.get("width").cloned(),
            kept["length"].clone(),
            kept["capacity"].clone()
        ),
        (json!("free"), None, json!(5.0), json!(2))
    );
    let all_merged = batch(
        "merge",
        "",
        json!([{"id": "urn:ngsi-ld:ParkingSpot:qd-002", "occupancy": "occupied"},
               {"id": "urn:ngsi-ld:ParkingSpot:qd-003", "occupancy": "occupied"}]),
    )
    .await;
    assert_eq!(all_merged.status(), 204);
    let occupancy = |body: Value| body["occupancy"].clone();
    assert_eq!(
        occupancy(
            broker
                .get_json("/entities/urn:ngsi-ld:ParkingSpot:qd-003?options=keyValues")
                .await
        ),
        json!("occupied")
    );
    expect_ngsi_error(batch("merge", "", json!([])).await, 400, "BadRequestData").await;

    // delete: by id; missing ones reported.
    let deleted = batch(
        "delete",
        "",
        json!([
            "urn:ngsi-ld:ParkingSpot:qd-001",
            "urn:ngsi-ld:ParkingSpot:qd-002"
        ]),
    )
    .await;
    assert_eq!(deleted.status(), 204);
    let again = batch(
        "delete",
        "",
        json!([
            "urn:ngsi-ld:ParkingSpot:qd-001",
            "urn:ngsi-ld:ParkingSpot:qd-003"
        ]),
    )
    .await;
    assert_eq!(again.status(), 207);
    let report: Value = again.json().await.expect("json");
    assert_eq!(report["success"], json!(["urn:ngsi-ld:ParkingSpot:qd-003"]));
    // Clause 5.6.7.4: not an array, empty, or with a null item: the whole batch is refused.
    for body in [
        json!({}),
        json!([]),
        json!([{"id": "urn:ngsi-ld:ParkingSpot:qd-null", "type": "ParkingSpot"}, null]),
    ] {
        expect_ngsi_error(
            broker
                .send(Method::POST, "/entityOperations/create", body)
                .await,
            400,
            "BadRequestData",
        )
        .await;
    }
    expect_ngsi_error(
        broker
            .get("/entities/urn:ngsi-ld:ParkingSpot:qd-null")
            .await,
        404,
        "ResourceNotFound",
    )
    .await;
    // Clause 5.6.21: purging what a query selects: attributes dropped or kept, then entities.
    for i in 0..4u32 {
        let created = broker
            .send(
                Method::POST,
                "/entities",
                spot(100 + i, 120.38, 36.06, "free", i),
            )
            .await;
        assert_eq!(created.status(), 201);
    }
    let purge = |query: &str| {
        broker
            .call(
                Method::DELETE,
                &format!("/entities?{query}"),
                Some(&broker.token),
            )
            .send()
    };
    assert_eq!(
        purge("type=ParkingSpot&q=capacity<2&drop=name,address")
            .await
            .expect("sent")
            .status(),
        204
    );
    let spot_100 = broker
        .get_json("/entities/urn:ngsi-ld:ParkingSpot:qd-100")
        .await;
    assert!(
        spot_100.get("name").is_none()
            && spot_100.get("address").is_none()
            && spot_100.get("occupancy").is_some()
    );
    assert_eq!(
        purge("idPattern=.*qd-10[23]&keep=capacity")
            .await
            .expect("sent")
            .status(),
        204
    );
    let spot_103 = broker
        .get_json("/entities/urn:ngsi-ld:ParkingSpot:qd-103")
        .await;
    let members: Vec<&String> = spot_103
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(members, ["capacity", "id", "type"]);
    assert_eq!(
        purge("idPattern=.*qd-10[0-3]&q=capacity>=2")
            .await
            .expect("sent")
            .status(),
        204
    );
    for (id, status) in [(100, 200), (101, 200), (102, 404), (103, 404)] {
        assert_eq!(
            broker
                .get(&format!("/entities/urn:ngsi-ld:ParkingSpot:qd-{id}"))
                .await
                .status(),
            status,
            "{id}"
        );
    }
    for bad in [
        "keep=capacity",
        "type=ParkingSpot&keep=a&drop=b",
        "type=ParkingSpot&fancy=1",
    ] {
        let response = purge(bad).await.expect("sent");
        assert_eq!(response.status(), 400, "{bad}");
    }
    broker.server.cleanup().await;
}

async fn attribute_history_answers_temporal_queries(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let id = "urn:ngsi-ld:WaterObserved:laoshan-reservoir";
    let t0 = 1_795_000_000_000_i64 - 1_795_000_000_000_i64 % 3_600_000;
    let at = |i: i64| yunnao_core::time::rfc3339_ms(t0 + i * 300_000);
    let created = broker
        .send(
            Method::POST,
            "/entities",
            json!({"id": id, "type": "WaterObserved",
            "height": {"value": 4.0, "observedAt": at(0), "unitCode": "MTR"}, "name": "崂山水库"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    // Two hours of 5-minute readings: 4.0, 4.1, … 6.3 m.
    for i in 1..24 {
        let updated = broker
            .send(Method::PATCH, &format!("/entities/{id}/attrs"),
                json!({"height": {"value": 4.0 + 0.1 * i as f64, "observedAt": at(i), "unitCode": "MTR"}}))
            .await;
        assert_eq!(updated.status(), 204);
    }
    let heights = |body: &Value| -> Vec<f64> {
        body["height"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["value"].as_f64())
            .collect()
    };
    let all = broker
        .get_json(&format!("/temporal/entities/{id}?attrs=height"))
        .await;
    assert_eq!(heights(&all).len(), 24);
    assert_eq!(all["height"][0]["observedAt"], at(0));
    assert_eq!(all["height"][0]["unitCode"], "MTR");
    assert!(all.get("name").is_none(), "only the attributes asked for");

    let last = broker
        .get_json(&format!("/temporal/entities/{id}?attrs=height&lastN=3"))
        .await;
    let values = heights(&last);
    assert_eq!(values.len(), 3);
    assert!(
        (values[0] - 6.1).abs() < 1e-9 && (values[2] - 6.3).abs() < 1e-9,
        "{values:?}"
    );

    let between = broker
        .get_json(&format!(
            "/temporal/entities/{id}?attrs=height&timerel=between&timeAt={}&endTimeAt={}",
            at(12),
            at(24)
        ))
        .await;
    assert_eq!(heights(&between).len(), 12);
    let before = broker
        .get_json(&format!(
            "/temporal/entities/{id}?attrs=height&timerel=before&timeAt={}",
            at(2)
        ))
        .await;
    assert_eq!(heights(&before).len(), 2);

    let simplified = broker
        .get_json(&format!(
            "/temporal/entities/{id}?attrs=height&options=temporalValues&lastN=2"
        ))
        .await;
    assert_eq!(
        simplified["height"]["values"],
        json!([[4.0 + 0.1 * 22.0, at(22)], [4.0 + 0.1 * 23.0, at(23)]])
    );

    let aggregated = broker
        .get_json(&format!(
            "/temporal/entities/{id}?attrs=height&options=aggregatedValues&aggrMethods=totalCount,distinctCount,avg,min,max,sum&aggrPeriodDuration=PT1H&timerel=between&timeAt={}&endTimeAt={}",
            at(0), at(24)
        ))
        .await;
    let h = &aggregated["height"];
    assert_eq!(
        h["totalCount"],
        json!([[12, at(0), at(12)], [12, at(12), at(24)]])
    );
    assert_eq!(h["distinctCount"][1][0], 12);
    assert_eq!(h["min"][0][0], 4.0);
    assert_eq!(h["max"][1][0], 4.0 + 0.1 * 23.0);
    let avg = h["avg"][0][0].as_f64().unwrap_or(f64::NAN);
    assert!((avg - 4.55).abs() < 1e-9, "{avg}");

    // Whole hours read the hourly rollups; a period that does not start on the hour reads
    // every value. Both agree, also after a value is replaced at the same instant.
    let by_rollup = format!(
        "/temporal/entities/{id}?attrs=height&options=aggregatedValues&aggrMethods=totalCount,avg,min,max,sum&aggrPeriodDuration=PT1H&timerel=between&timeAt={}&endTimeAt={}",
        at(0),
        at(24)
    );
    let by_values = format!(
        "/temporal/entities/{id}?attrs=height&options=aggregatedValues&aggrMethods=totalCount,avg,min,max,sum&aggrPeriodDuration=PT1H&timerel=between&timeAt={}&endTimeAt={}",
        yunnao_core::time::rfc3339_ms(t0 - 1),
        at(24)
    );
    let values_of = |body: &Value| -> Vec<Vec<String>> {
        ["totalCount", "avg", "min", "max", "sum"]
            .iter()
            .map(|m| {
                body["height"][*m]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{:.6}", p[0].as_f64().unwrap_or(f64::NAN)))
                    .collect()
            })
            .collect()
    };
    let rolled = broker.get_json(&by_rollup).await;
    assert_eq!(rolled["height"]["totalCount"], h["totalCount"]);
    assert_eq!(rolled["height"]["max"], h["max"]);
    // A window starting 1 ms before the hour holds the same values in each period.
    assert_eq!(
        values_of(&rolled),
        values_of(&broker.get_json(&by_values).await)
    );
    let replaced = broker
        .send(
            Method::PATCH,
            &format!("/entities/{id}/attrs"),
            json!({"height": {"value": 1.5, "observedAt": at(23), "unitCode": "MTR"}}),
        )
        .await;
    assert_eq!(replaced.status(), 204);
    let rolled = broker.get_json(&by_rollup).await;
    assert_eq!(
        rolled["height"]["totalCount"][1][0], 12,
        "replaced, not added"
    );
    assert_eq!(rolled["height"]["min"][1][0], 1.5);
    assert_eq!(rolled["height"]["max"][1][0], 4.0 + 0.1 * 22.0);
    assert_eq!(
        values_of(&rolled),
        values_of(&broker.get_json(&by_values).await),
        "after the replacement, by rollup and by values"
    );
    // Periods of several hours group the hourly rows.
    let two_hours = |path: &str| path.replace("PT1H", "PT2H");
    let rolled = broker.get_json(&two_hours(&by_rollup)).await;
    assert_eq!(rolled["height"]["totalCount"][0][0], 24);
    assert_eq!(
        values_of(&rolled),
        values_of(&broker.get_json(&two_hours(&by_values)).await)
    );

    let listed = broker
        .get_json("/temporal/entities?type=WaterObserved&attrs=height&lastN=1")
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(
        heights(&listed[0]),
        vec![1.5],
        "the replaced value is the last"
    );
    // The same queries as a body (POST /temporal/entityOperations/query), temporalQ included.
    let posted = |query: &str, body: Value| {
        let path = format!("/temporal/entityOperations/query{query}");
        let broker = &broker;
        async move {
            let response = broker.send(Method::POST, &path, body).await;
            assert_eq!(response.status(), 200, "POST {path}");
            response.json::<Value>().await.expect("json")
        }
    };
    assert_eq!(
        posted(
            "?lastN=1",
            json!({"type": "Query", "entities": [{"type": "WaterObserved"}], "attrs": ["height"]})
        )
        .await,
        listed
    );
    let window = posted(
        "",
        json!({"type": "Query", "entities": [{"id": id, "type": "WaterObserved"}], "attrs": ["height"],
               "temporalQ": {"timerel": "between", "timeAt": at(12), "endTimeAt": at(24)}}),
    )
    .await;
    assert_eq!(window.as_array().map(Vec::len), Some(1));
    let by_get = broker
        .get_json(&format!(
            "/temporal/entities/{id}?attrs=height&timerel=between&timeAt={}&endTimeAt={}",
            at(12),
            at(24)
        ))
        .await;
    assert_eq!(heights(&window[0]).len(), 12);
    assert_eq!(heights(&window[0]), heights(&by_get));
    // Clause 5.2.44: aggrParams in the body asks for the aggregated representation.
    let aggregated_post = posted(
        "",
        json!({"type": "Query", "entities": [{"id": id, "type": "WaterObserved"}], "attrs": ["height"],
               "temporalQ": {"timerel": "between", "timeAt": at(12), "endTimeAt": at(24)},
               "aggrParams": {"aggrMethods": ["avg", "max"], "aggrPeriodDuration": "PT1H"}}),
    )
    .await;
    let aggregated_get = broker
        .get_json(&format!(
            "/temporal/entities/{id}?attrs=height&options=aggregatedValues&aggrMethods=avg,max&aggrPeriodDuration=PT1H&timerel=between&timeAt={}&endTimeAt={}",
            at(12),
            at(24)
        ))
        .await;
    assert!(aggregated_get["height"]["avg"].is_array());
    assert_eq!(aggregated_post[0]["height"], aggregated_get["height"]);
    // Table 5.2.21-1: the TemporalQuery may carry the aggregation, its methods as a list or
    // as one comma-separated string.
    for methods in [json!(["avg", "max"]), json!("avg,max")] {
        let in_temporal_q = posted(
            "",
            json!({"type": "Query", "entities": [{"id": id, "type": "WaterObserved"}], "attrs": ["height"],
                   "temporalQ": {"timerel": "between", "timeAt": at(12), "endTimeAt": at(24),
                                 "aggrMethods": methods, "aggrPeriodDuration": "PT1H"}}),
        )
        .await;
        assert_eq!(
            in_temporal_q[0]["height"], aggregated_get["height"],
            "{methods}"
        );
    }
    for body in [
        json!({"type": "Query", "entities": [{"type": "WaterObserved"}],
               "aggrParams": {"aggrMethods": ["bogus"], "aggrPeriodDuration": "PT0S"}}),
        json!({"type": "Query", "entities": [{"type": "WaterObserved"}],
               "aggrParams": {"aggrMethods": ["avg"], "aggrPeriodDuration": "bogus"}}),
        json!({"type": "Query", "entities": [{"type": "WaterObserved"}],
               "aggrParams": {"aggrMethods": "avg"}}),
        json!({"type": "Query", "entities": [{"type": "WaterObserved"}], "temporalQ": "before"}),
        json!({"type": "Query", "entities": [{"type": "WaterObserved"}],
               "temporalQ": {"timerel": "during", "timeAt": at(0)}}),
        json!({"type": "Query", "entities": [{"type": "WaterObserved"}],
               "temporalQ": {"timerel": "after", "timeAt": at(0), "timeproperty": "changedAt"}}),
        json!({"type": "Query", "entities": [{"type": "WaterObserved"}],
               "temporalQ": {"timerel": "after", "timeAt": at(0), "lastN": 2.5}}),
        json!({"type": "Query", "entities": [{"type": "WaterObserved"}],
               "temporalQ": {"aggrMethods": ["avg"], "aggrPeriodDuration": "P1X"}}),
        json!({"entities": [{"type": "WaterObserved"}]}),
    ] {
        expect_ngsi_error(
            broker
                .send(Method::POST, "/temporal/entityOperations/query", body)
                .await,
            400,
            "BadRequestData",
        )
        .await;
    }

    for query in [
        "timerel=between&timeAt=2026-01-01T00:00:00Z",
        "timerel=during&timeAt=2026-01-01T00:00:00Z",
        "lastN=0",
        "options=aggregatedValues&aggrMethods=median",
        "options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=1H",
    ] {
        let response = broker
            .get(&format!("/temporal/entities/{id}?{query}"))
            .await;
        assert_eq!(response.status(), 400, "{query}");
        expect_ngsi_error(response, 400, "BadRequestData").await;
    }

    // The newest hour is summed from the values until a later hour begins, older hours from
    // their rollups; both ways agree at each step: an instance back-filled into the first hour,
    // one that begins a third hour (the second is summed up), one replaced in the third.
    let three_hours = |path: &str| path.replace(&at(24), &at(36));
    let agree = |step: &'static str, count: &'static [i64]| {
        let broker = &broker;
        let (by_rollup, by_values) = (three_hours(&by_rollup), three_hours(&by_values));
        async move {
            let rolled = broker.get_json(&by_rollup).await;
            let counts: Vec<i64> = rolled["height"]["totalCount"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|period| period[0].as_i64())
                .collect();
            assert_eq!(counts, count.to_vec(), "{step}");
            assert_eq!(
                values_of(&rolled),
                values_of(&broker.get_json(&by_values).await),
                "{step}: by rollup and by values"
            );
        }
    };
    let add = |instances: Value| {
        let broker = &broker;
        async move {
            let added = broker
                .send(
                    Method::POST,
                    &format!("/temporal/entities/{id}/attrs"),
                    json!({"height": instances}),
                )
                .await;
            assert_eq!(added.status(), 204);
        }
    };
    let reading =
        |value: f64, at: String| json!({"type": "Property", "value": value, "observedAt": at});
    add(json!([reading(
        9.5,
        yunnao_core::time::rfc3339_ms(t0 + 60_000)
    )]))
    .await;
    agree("back-filled", &[13, 12]).await;
    add(json!([reading(0.5, at(24)), reading(0.7, at(25))])).await;
    agree("a third hour", &[13, 12, 2]).await;
    add(json!([reading(-2.0, at(25))])).await;
    agree("replaced in the newest hour", &[13, 12, 2]).await;
    add(json!([reading(-3.0, at(3))])).await;
    agree("replaced in a closed hour", &[13, 12, 2]).await;
    broker.server.cleanup().await;
}

async fn temporal_representations_are_provided_and_deleted(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let id = "urn:ngsi-ld:WaterObserved:jihongtan";
    let t0 = 1_795_000_000_000_i64 - 1_795_000_000_000_i64 % 3_600_000;
    let at = |minutes: i64| yunnao_core::time::rfc3339_ms(t0 + minutes * 60_000);
    let reading = |value: f64, minutes: i64| json!({"type": "Property", "value": value, "observedAt": at(minutes)});
    let history_path = format!("/temporal/entities/{id}?attrs=height");
    let history = |body: &Value| -> Vec<(f64, String)> {
        body["height"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                (
                    h["value"].as_f64().unwrap_or(f64::NAN),
                    h["instanceId"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let current = |body: Value| body["height"].clone();
    let summed = format!(
        "/temporal/entities/{id}?attrs=height&options=aggregatedValues&aggrMethods=sum,totalCount&aggrPeriodDuration=PT1H&timerel=between&timeAt={}&endTimeAt={}",
        at(-60),
        at(60)
    );
    let total = |body: &Value, method: &str| -> f64 {
        body["height"][method]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|period| period[0].as_f64())
            .sum()
    };

    // A new entity from its temporal representation: created with the newest instance.
    let created = broker
        .send(
            Method::POST,
            "/temporal/entities",
            json!({"id": id, "type": "WaterObserved",
                   "height": [reading(1.0, 0), reading(3.0, 10), reading(2.0, 5)]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(
        created.headers()["location"],
        format!("/ngsi-ld/v1/temporal/entities/{id}").as_str()
    );
    let keyed_path = format!("/entities/{id}?options=keyValues");
    assert_eq!(current(broker.get_json(&keyed_path).await), json!(3.0));
    let shown = history(&broker.get_json(&history_path).await);
    assert_eq!(
        shown.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        vec![1.0, 2.0, 3.0]
    );
    assert!(
        shown
            .iter()
            .all(|(_, instance)| instance.starts_with("urn:ngsi-ld:Instance:")),
        "{shown:?}"
    );

    // Older instances go into the history only; newer ones also become the current value.
    let again = broker
        .send(
            Method::POST,
            "/temporal/entities",
            json!({"id": id, "type": "WaterObserved", "height": [reading(0.5, -5)]}),
        )
        .await;
    assert_eq!(again.status(), 204);
    assert_eq!(current(broker.get_json(&keyed_path).await), json!(3.0));
    let appended = broker
        .send(
            Method::POST,
            &format!("/temporal/entities/{id}/attrs"),
            json!({"height": [reading(9.0, 15)]}),
        )
        .await;
    assert_eq!(appended.status(), 204);
    assert_eq!(current(broker.get_json(&keyed_path).await), json!(9.0));
    let shown = history(&broker.get_json(&history_path).await);
    assert_eq!(
        shown.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        vec![0.5, 1.0, 2.0, 3.0, 9.0]
    );
    let aggregated = broker.get_json(&summed).await;
    assert_eq!(total(&aggregated, "sum"), 15.5);
    assert_eq!(total(&aggregated, "totalCount"), 5.0);

    // One instance changed by its instanceId (its time stays); the hourly rollups follow.
    let three = format!(
        "/temporal/entities/{id}/attrs/height/{}",
        urlencode(&shown[3].1)
    );
    let modified = broker
        .send(
            Method::PATCH,
            &three,
            json!({"value": 4.0, "unitCode": "MTR"}),
        )
        .await;
    assert_eq!(modified.status(), 204);
    let shown_after = broker.get_json(&history_path).await;
    assert_eq!(shown_after["height"][3]["value"], 4.0);
    assert_eq!(shown_after["height"][3]["unitCode"], "MTR");
    assert_eq!(shown_after["height"][3]["observedAt"], at(10));
    assert_eq!(total(&broker.get_json(&summed).await, "sum"), 16.5);
    expect_ngsi_error(
        broker
            .send(
                Method::PATCH,
                &three,
                json!({"value": 5.0, "observedAt": at(11)}),
            )
            .await,
        400,
        "BadRequestData",
    )
    .await;

    // One instance deleted by its instanceId; the hourly rollups follow.
    let two = shown[2].1.clone();
    let instance_path = format!("/temporal/entities/{id}/attrs/height/{}", urlencode(&two));
    let deleted = broker.send(Method::DELETE, &instance_path, json!({})).await;
    assert_eq!(deleted.status(), 204);
    let aggregated = broker.get_json(&summed).await;
    assert_eq!(total(&aggregated, "sum"), 14.5);
    assert_eq!(total(&aggregated, "totalCount"), 4.0);
    expect_ngsi_error(
        broker.send(Method::DELETE, &instance_path, json!({})).await,
        404,
        "ResourceNotFound",
    )
    .await;
    expect_ngsi_error(
        broker
            .send(Method::PATCH, &instance_path, json!({"value": 1.0}))
            .await,
        404,
        "ResourceNotFound",
    )
    .await;
    expect_ngsi_error(
        broker
            .send(
                Method::DELETE,
                &format!("/temporal/entities/{id}/attrs/height/urn:ngsi-ld:Instance:x"),
                json!({}),
            )
            .await,
        400,
        "BadRequestData",
    )
    .await;

    // Another department does not even see it.
    let admin = broker.server.admin().await;
    let other = broker
        .server
        .user(&admin, "water.op", "water", "operator")
        .await;
    let foreign = broker
        .call(
            Method::POST,
            &format!("/temporal/entities/{id}/attrs"),
            Some(&other),
        )
        .header("content-type", "application/json")
        .body(json!({"height": [reading(7.0, 20)]}).to_string())
        .send()
        .await
        .expect("sent");
    expect_ngsi_error(foreign, 404, "ResourceNotFound").await;

    // The attribute's history, then the whole temporal representation, deleted.
    let attribute_path = format!("/temporal/entities/{id}/attrs/height");
    let deleted = broker
        .send(Method::DELETE, &attribute_path, json!({}))
        .await;
    assert_eq!(deleted.status(), 204);
    assert!(history(&broker.get_json(&history_path).await).is_empty());
    assert_eq!(total(&broker.get_json(&summed).await, "totalCount"), 0.0);
    expect_ngsi_error(
        broker
            .send(Method::DELETE, &attribute_path, json!({}))
            .await,
        404,
        "ResourceNotFound",
    )
    .await;
    let deleted = broker
        .send(
            Method::DELETE,
            &format!("/temporal/entities/{id}"),
            json!({}),
        )
        .await;
    assert_eq!(deleted.status(), 204);
    expect_ngsi_error(
        broker.get(&format!("/entities/{id}")).await,
        404,
        "ResourceNotFound",
    )
    .await;
    // Clause 5.7.4.4: q is matched by the instances in the time range, not the current value.
    let (inside, outside) = ("2026-03-01T12:00:00Z", "2026-01-05T00:00:00Z");
    for (id, speeds, heading) in [
        (
            "urn:ngsi-ld:Vehicle:fast",
            vec![(30, inside), (90, outside)],
            Some(45),
        ),
        (
            "urn:ngsi-ld:Vehicle:slow",
            vec![(10, inside), (80, outside)],
            Some(170),
        ),
        ("urn:ngsi-ld:Vehicle:idle", vec![(99, outside)], None),
    ] {
        let mut entity = json!({"id": id, "type": "Vehicle",
            "speed": speeds.iter().map(|(v, at)| json!({"type": "Property", "value": v, "observedAt": at})).collect::<Vec<_>>()});
        if let Some(heading) = heading {
            entity["heading"] =
                json!([{"type": "Property", "value": heading, "observedAt": inside}]);
        }
        assert_eq!(
            broker
                .send(Method::POST, "/temporal/entities", entity)
                .await
                .status(),
            201
        );
    }
    let window = "timerel=between&timeAt=2026-03-01T00:00:00Z&endTimeAt=2026-03-02T00:00:00Z";
    for (q, expected) in [
        ("speed>25", vec!["urn:ngsi-ld:Vehicle:fast"]),
        ("speed>85", vec![]),
        ("speed>=5;heading<90", vec!["urn:ngsi-ld:Vehicle:fast"]),
        (
            "speed>25|heading>100",
            vec!["urn:ngsi-ld:Vehicle:fast", "urn:ngsi-ld:Vehicle:slow"],
        ),
        ("speed!=10", vec!["urn:ngsi-ld:Vehicle:fast"]),
        ("!heading", vec!["urn:ngsi-ld:Vehicle:idle"]),
    ] {
        let found = broker
            .get_json(&format!(
                "/temporal/entities?type=Vehicle&q={}&{window}",
                urlencode(q)
            ))
            .await;
        let mut ids: Vec<&str> = found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["id"].as_str())
            .collect();
        ids.sort();
        assert_eq!(ids, expected, "q={q}");
        assert!(
            !found.to_string().contains(outside),
            "q={q}: only instances in the window"
        );
    }
    expect_ngsi_error(
        broker
            .get(&format!(
                "/temporal/entities?type=Vehicle&orderBy=speed&{window}"
            ))
            .await,
        400,
        "BadRequestData",
    )
    .await;
    // Clause 5.6.11.4: an upsert adds instances and type names; an instance whose value is the
    // NGSI-LD Null records the attribute's deletion, which its history keeps.
    let truck = json!({"id": "urn:ngsi-ld:Vehicle:truck", "type": ["Vehicle", "Truck"],
        "speed": [{"type": "Property", "value": "urn:ngsi-ld:null", "observedAt": "2026-03-01T13:00:00Z"}]});
    let created = broker
        .send(
            Method::POST,
            "/temporal/entities",
            json!({"id": "urn:ngsi-ld:Vehicle:truck", "type": "Vehicle",
        "speed": [{"type": "Property", "value": 20, "observedAt": inside}]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(
        broker
            .send(Method::POST, "/temporal/entities", truck)
            .await
            .status(),
        204
    );
    let current = broker.get_json("/entities/urn:ngsi-ld:Vehicle:truck").await;
    assert_eq!(
        current,
        json!({"id": "urn:ngsi-ld:Vehicle:truck", "type": ["Vehicle", "Truck"]})
    );
    let history = broker
        .get_json(&format!(
            "/temporal/entities/urn:ngsi-ld:Vehicle:truck?{window}"
        ))
        .await;
    assert_eq!(
        history["speed"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    let refused = broker.send(Method::POST, "/temporal/entities", json!({"id": "urn:ngsi-ld:Vehicle:x", "type": "Vehicle",
        "expiresAt": "urn:ngsi-ld:null", "speed": [{"type": "Property", "value": 1, "observedAt": inside}]})).await;
    expect_ngsi_error(refused, 400, "BadRequestData").await;
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

async fn hosted_contexts_are_served_and_used_without_any_fetch(backend: TestBackend) {
    // No allow-list: a context the broker hosts is read from its own database.
    let broker = Broker::start(backend).await;
    let added = broker
        .send(
            Method::POST,
            "/jsonldContexts",
            json!({"@context": [parking_context(), CORE]}),
        )
        .await;
    assert_eq!(added.status(), 201);
    let url = added
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/ngsi-ld/v1/jsonldContexts/"),
        "{url}"
    );
    let local_id = url.rsplit('/').next().expect("id").to_owned();
    let link = format!(
        "<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
    );
    let created = broker
        .call(Method::POST, "/entities", Some(&broker.token))
        .header("content-type", "application/json")
        .header("link", link.clone())
        .body(json!({"id": "urn:ngsi-ld:ParkingSpot:h-1", "type": "ParkingSpot", "occupancy": "free"}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);
    let plain = broker
        .get_json("/entities/urn:ngsi-ld:ParkingSpot:h-1")
        .await;
    assert_eq!(
        plain["type"],
        "https://smartdatamodels.org/dataModel.Parking/ParkingSpot"
    );
    // Through ld+json too, naming it in the body.
    let created = broker
        .call(Method::POST, "/entities", Some(&broker.token))
        .header("content-type", "application/ld+json")
        .body(json!({"@context": url, "id": "urn:ngsi-ld:ParkingSpot:h-2", "type": "ParkingSpot", "occupancy": "free"}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201);
    let compacted: Value = broker
        .call(
            Method::GET,
            "/entities/urn:ngsi-ld:ParkingSpot:h-2",
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

    // Served to anyone (JSON-LD processors dereference it), listed with details.
    let served = broker
        .call(Method::GET, &format!("/jsonldContexts/{local_id}"), None)
        .send()
        .await
        .expect("sent");
    assert_eq!(served.status(), 200);
    assert_eq!(
        served
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/ld+json")
    );
    let document: Value = served.json().await.expect("json");
    assert_eq!(document, json!({"@context": [parking_context(), CORE]}));
    let listed = broker.get_json("/jsonldContexts").await;
    assert_eq!(listed, json!([url]));
    let detailed = broker
        .get_json("/jsonldContexts?details=true&kind=Hosted")
        .await;
    assert_eq!(detailed[0]["localId"], local_id);
    assert_eq!(detailed[0]["kind"], "Hosted");
    assert!(detailed[0]["createdAt"].is_string());

    // Bad input, and only its department (or a platform admin) deletes it.
    for (body, status, kind) in [
        (json!({"terms": {}}), 400, "BadRequestData"),
        (json!({"@context": 42}), 400, "BadRequestData"),
        (
            json!({"@context": "https://example.org/nowhere.jsonld"}),
            503,
            "LdContextNotAvailable",
        ),
    ] {
        expect_ngsi_error(
            broker.send(Method::POST, "/jsonldContexts", body).await,
            status,
            kind,
        )
        .await;
    }
    expect_ngsi_error(
        broker.get("/jsonldContexts?details=maybe").await,
        400,
        "BadRequestData",
    )
    .await;
    let anonymous = broker
        .call(Method::DELETE, &format!("/jsonldContexts/{local_id}"), None)
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);
    let admin = broker.server.admin().await;
    let other = broker
        .server
        .user(&admin, "water.op", "water", "operator")
        .await;
    let foreign = broker
        .call(
            Method::DELETE,
            &format!("/jsonldContexts/{local_id}"),
            Some(&other),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(foreign.status(), 403);
    let deleted = broker
        .call(
            Method::DELETE,
            &format!("/jsonldContexts/{local_id}"),
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 204);
    let gone = broker
        .call(
            Method::GET,
            "/entities/urn:ngsi-ld:ParkingSpot:h-1",
            Some(&broker.token),
        )
        .header("link", link)
        .send()
        .await
        .expect("sent");
    expect_ngsi_error(gone, 503, "LdContextNotAvailable").await;
    expect_ngsi_error(
        broker
            .call(
                Method::DELETE,
                &format!("/jsonldContexts/{local_id}"),
                Some(&broker.token),
            )
            .send()
            .await
            .expect("sent"),
        404,
        "ResourceNotFound",
    )
    .await;
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

/// A moved entity is found by geo queries at its new place only; a change that leaves the
/// location alone keeps it there.
async fn moved_entities_are_found_where_they_are(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let id = "urn:ngsi-ld:ParkingSpot:qd-009";
    broker
        .send(Method::POST, "/entities", spot(9, 120.38, 36.06, "free", 4))
        .await;
    let near = |lon: f64, lat: f64| {
        format!(
            "/entities?type=ParkingSpot&georel=near;maxDistance==200&geometry=Point&coordinates=[{lon},{lat}]"
        )
    };
    let found = |page: &Value| {
        page.as_array()
            .is_some_and(|items| items.iter().any(|e| e["id"] == id))
    };
    assert!(found(&broker.get_json(&near(120.38, 36.06)).await));
    let moved = broker
        .send(
            Method::PATCH,
            &format!("/entities/{id}/attrs"),
            json!({"location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.45, 36.10]}}}),
        )
        .await;
    assert_eq!(moved.status(), 204);
    assert!(!found(&broker.get_json(&near(120.38, 36.06)).await));
    assert!(found(&broker.get_json(&near(120.45, 36.10)).await));
    let occupied = broker
        .send(
            Method::PATCH,
            &format!("/entities/{id}/attrs"),
            json!({"occupancy": {"type": "Property", "value": "occupied"}}),
        )
        .await;
    assert_eq!(occupied.status(), 204);
    let there = broker.get_json(&near(120.45, 36.10)).await;
    assert!(found(&there), "{there}");
    assert!(!found(&broker.get_json(&near(120.38, 36.06)).await));

    // Deleted, it is gone from the spatial index too: the next entity (which SQLite gives the
    // same row number) is indexed at its own place.
    let deleted = broker
        .call(
            Method::DELETE,
            &format!("/entities/{id}"),
            Some(&broker.token),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 204);
    assert!(!found(&broker.get_json(&near(120.45, 36.10)).await));
    let next = broker
        .send(
            Method::POST,
            "/entities",
            spot(10, 120.30, 36.08, "free", 2),
        )
        .await;
    assert_eq!(next.status(), 201);
    let page = broker.get_json(&near(120.30, 36.08)).await;
    assert!(
        page.as_array().is_some_and(|items| items
            .iter()
            .any(|e| e["id"] == "urn:ngsi-ld:ParkingSpot:qd-010")),
        "{page}"
    );
    assert!(!found(&broker.get_json(&near(120.45, 36.10)).await));
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

async fn linked_entities_are_joined_inline_or_flat(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let site = "urn:ngsi-ld:ParkingSite:qd-1";
    let operator = "urn:ngsi-ld:Organization:qd-parking";
    for entity in [
        json!({"id": site, "type": "ParkingSite", "name": "香港中路停车场",
               "operatedBy": {"type": "Relationship", "object": operator}}),
        // Its operator manages the site back: a cycle that joining must end.
        json!({"id": operator, "type": "Organization", "name": "青岛停车公司",
               "manages": {"type": "Relationship", "object": site}}),
        spot(1, 120.384, 36.062, "free", 1),
        spot(2, 120.385, 36.063, "occupied", 1),
    ] {
        assert_eq!(
            broker
                .send(Method::POST, "/entities", entity)
                .await
                .status(),
            201
        );
    }
    // One spot names a site that does not exist, one a site of another department.
    let mut lost = spot(3, 120.386, 36.064, "free", 1);
    lost["refParkingSite"]["object"] = json!("urn:ngsi-ld:ParkingSite:gone");
    let mut foreign = spot(4, 120.387, 36.065, "free", 1);
    foreign["refParkingSite"]["object"] = json!("urn:ngsi-ld:ParkingSite:water-1");
    for entity in [lost, foreign] {
        assert_eq!(
            broker
                .send(Method::POST, "/entities", entity)
                .await
                .status(),
            201
        );
    }
    let admin = broker.server.admin().await;
    let water = broker
        .server
        .user(&admin, "water.op", "water", "operator")
        .await;
    let theirs = broker
        .call(Method::POST, "/entities", Some(&water))
        .header("content-type", "application/json")
        .body(json!({"id": "urn:ngsi-ld:ParkingSite:water-1", "type": "ParkingSite", "name": "水务停车场"}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(theirs.status(), 201);

    let spot1 = "/entities/urn:ngsi-ld:ParkingSpot:qd-001";
    // Inline, one level: the site inside the relationship, its own links left as ids.
    let inline = broker.get_json(&format!("{spot1}?join=inline")).await;
    let joined = &inline["refParkingSite"]["entity"];
    assert_eq!(joined["id"], site);
    assert_eq!(joined["name"]["value"], "香港中路停车场");
    assert_eq!(joined["operatedBy"]["object"], operator);
    assert!(joined["operatedBy"].get("entity").is_none());
    assert_eq!(inline["refParkingSite"]["object"], site);
    // Three levels: spot → site → operator, whose link back to the site is not followed.
    let deep = broker
        .get_json(&format!("{spot1}?join=inline&joinLevel=3"))
        .await;
    let joined_operator = &deep["refParkingSite"]["entity"]["operatedBy"]["entity"];
    assert_eq!(joined_operator["id"], operator);
    assert_eq!(joined_operator["manages"]["object"], site);
    assert!(joined_operator["manages"].get("entity").is_none());
    // Simplified: the entity takes the place of the id.
    let simple = broker
        .get_json(&format!("{spot1}?join=inline&options=keyValues"))
        .await;
    assert_eq!(
        simple["refParkingSite"],
        json!({"id": site, "type": "ParkingSite", "name": "香港中路停车场", "operatedBy": operator})
    );
    // Flat: the entity, then what it links to, nearest first.
    let flat = broker
        .get_json(&format!("{spot1}?join=flat&joinLevel=2&options=keyValues"))
        .await;
    let ids: Vec<&str> = flat
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, ["urn:ngsi-ld:ParkingSpot:qd-001", site, operator]);
    // Queries: each linked entity once after the page; missing and hidden ones not at all.
    let response = broker
        .get("/entities?type=ParkingSpot&join=flat&count=true&options=keyValues")
        .await;
    assert_eq!(response.headers()["ngsild-results-count"], "4");
    let listed: Value = response.json().await.expect("json");
    let ids: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "urn:ngsi-ld:ParkingSpot:qd-001",
            "urn:ngsi-ld:ParkingSpot:qd-002",
            "urn:ngsi-ld:ParkingSpot:qd-003",
            "urn:ngsi-ld:ParkingSpot:qd-004",
            site
        ]
    );
    let queried: Value = broker
        .send(
            Method::POST,
            "/entityOperations/query",
            json!({"type": "Query", "entities": [{"type": "ParkingSpot"}], "join": "inline"}),
        )
        .await
        .json()
        .await
        .expect("json");
    let joined: Vec<bool> = queried
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["refParkingSite"].get("entity").is_some())
        .collect();
    assert_eq!(joined, [true, true, false, false]);
    for bad in [
        "join=deep",
        "join=inline&joinLevel=0",
        "join=flat&joinLevel=x",
    ] {
        expect_ngsi_error(
            broker.get(&format!("{spot1}?{bad}")).await,
            400,
            "BadRequestData",
        )
        .await;
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

async fn an_earlier_version_preferred_gets_what_it_knew(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let id = "urn:ngsi-ld:Building:v1";
    let created = broker
        .send(
            Method::POST,
            "/entities",
            json!({"id": id, "type": "Building",
                   "category": {"type": "VocabProperty", "vocab": "office"},
                   "plan": {"type": "JsonProperty", "json": {"floors": 12}},
                   "tenants": {"type": "ListProperty", "valueList": ["a", "b"]},
                   "neighbours": {"type": "ListRelationship",
                                  "objectList": [{"object": "urn:ngsi-ld:Building:v2"}]},
                   "label": {"type": "LanguageProperty", "languageMap": {"zh": "大楼", "en": "tower"}},
                   "height": 40}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let subscribed = broker
        .send(
            Method::POST,
            "/subscriptions",
            json!({"id": "urn:ngsi-ld:Subscription:versions", "type": "Subscription",
                   "entities": [{"type": "Building"}],
                   "notification": {"attributes": ["height"], "endpoint": {"uri": "http://127.0.0.1:9/"}}}),
        )
        .await;
    assert_eq!(subscribed.status(), 201);
    let prefer = |path: String, prefer: &'static str| {
        let broker = &broker;
        async move {
            broker
                .call(Method::GET, &path, Some(&broker.token))
                .header("prefer", prefer)
                .send()
                .await
                .expect("sent")
        }
    };
    let applied = |response: &Response| {
        response
            .headers()
            .get("preference-applied")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // Clause 4.3.6.8: types a version did not know become those it did; 203 says so.
    let old = prefer(format!("/entities/{id}"), "ngsi-ld=1.5").await;
    assert_eq!(old.status(), 203);
    assert_eq!(applied(&old).as_deref(), Some("ngsi-ld=1.5"));
    let shown: Value = old.json().await.expect("json");
    assert_eq!(
        shown["category"],
        json!({"type": "Property", "value": "office"})
    );
    assert_eq!(
        shown["plan"],
        json!({"type": "Property", "value": {"floors": 12}})
    );
    assert_eq!(
        shown["tenants"],
        json!({"type": "Property", "value": ["a", "b"]})
    );
    assert_eq!(
        shown["neighbours"],
        json!({"type": "Relationship", "object": ["urn:ngsi-ld:Building:v2"]})
    );
    assert_eq!(shown["label"]["type"], "LanguageProperty", "1.5 knew it");
    assert_eq!(shown["height"]["type"], "Property");
    let oldest = prefer("/entities?type=Building".into(), "ngsi-ld=1.0").await;
    assert_eq!(oldest.status(), 203);
    let listed: Value = oldest.json().await.expect("json");
    assert_eq!(
        listed[0]["label"],
        json!({"type": "Property", "value": {"zh": "大楼", "en": "tower"}})
    );
    // The native version, and resources that are not entities: unaltered, 200.
    let native = prefer(format!("/entities/{id}"), "ngsi-ld=1.9").await;
    assert_eq!(native.status(), 200);
    assert_eq!(applied(&native).as_deref(), Some("ngsi-ld=1.9"));
    assert_eq!(
        native.json::<Value>().await.expect("json")["category"]["type"],
        "VocabProperty"
    );
    let subscription = prefer(
        "/subscriptions/urn:ngsi-ld:Subscription:versions".into(),
        "ngsi-ld=1.0",
    )
    .await;
    assert_eq!(subscription.status(), 200);
    assert_eq!(applied(&subscription).as_deref(), Some("ngsi-ld=1.0"));
    // RFC 7240 spellings; no version preferred, none applied.
    for spelling in [
        "NGSI-LD=1.0",
        "Ngsi-Ld=1.0",
        "ngsi-ld=\"1.0\"",
        "ngsi-ld=1.0;q=0.1",
        "respond-async, ngsi-ld=1.0",
    ] {
        let answer = prefer(
            "/subscriptions/urn:ngsi-ld:Subscription:versions".into(),
            spelling,
        )
        .await;
        assert_eq!(
            applied(&answer).as_deref(),
            Some("ngsi-ld=1.0"),
            "{spelling}"
        );
    }
    for none in ["respond-async", "ngsi-ld=2.0", "ngsi-ld=latest"] {
        let answer = prefer(format!("/entities/{id}"), none).await;
        assert_eq!(answer.status(), 200, "{none}");
        assert_eq!(applied(&answer), None, "{none}");
    }
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

async fn registrations_keep_to_their_mode(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let register = |registration: Value| {
        let broker = &broker;
        async move {
            broker
                .send(Method::POST, "/csourceRegistrations", registration)
                .await
        }
    };
    let building = "urn:ngsi-ld:Building:b1";
    let created = broker
        .send(
            Method::POST,
            "/entities",
            json!({"id": building, "type": "Building", "subCategory": "office"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    // Clause 4.3.6.3: an exclusive registration names single entities by id and their
    // attributes; clause 4.3.6.2: an auxiliary one names reads only; clause 5.2.34: the
    // management member.
    let info = |entities: Value, names: Option<Value>| {
        let mut info = json!({"entities": entities});
        if let Some(names) = names {
            info["propertyNames"] = names;
        }
        json!([info])
    };
    for (mode, information, extra) in [
        (
            "exclusive",
            info(json!([{"type": "Car", "id": "urn:ngsi-ld:Car:c1"}]), None),
            json!({}),
        ),
        (
            "exclusive",
            info(json!([{"type": "Car"}]), Some(json!(["speed"]))),
            json!({}),
        ),
        (
            "exclusive",
            info(
                json!([{"type": "Car", "idPattern": "urn:ngsi-ld:Car:.*"}]),
                Some(json!(["speed"])),
            ),
            json!({}),
        ),
        (
            "auxiliary",
            info(json!([{"type": "Car"}]), None),
            json!({"operations": ["updateEntity"]}),
        ),
        (
            "inclusive",
            info(json!([{"type": "Car"}]), None),
            json!({"management": "yes"}),
        ),
        (
            "inclusive",
            info(json!([{"type": "Car"}]), None),
            json!({"management": {"cacheDuration": "bogus"}}),
        ),
        (
            "inclusive",
            info(json!([{"type": "Car"}]), None),
            json!({"management": {"cooldown": 0}}),
        ),
        (
            "inclusive",
            info(json!([{"type": "Car"}]), None),
            json!({"management": {"timeout": -5}}),
        ),
        (
            "inclusive",
            info(json!([{"type": "Car"}]), None),
            json!({"management": {"localOnly": "yes"}}),
        ),
    ] {
        let mut registration = json!({"type": "ContextSourceRegistration", "mode": mode,
            "endpoint": "http://source.example.com", "information": information});
        for (key, value) in extra.as_object().into_iter().flatten() {
            registration[key] = value.clone();
        }
        let refused = register(registration.clone()).await;
        assert_eq!(refused.status(), 400, "{registration}");
        expect_ngsi_error(refused, 400, "BadRequestData").await;
    }
    let managed = register(json!({"type": "ContextSourceRegistration", "endpoint": "http://source.example.com",
        "information": info(json!([{"type": "Car"}]), None),
        "management": {"cacheDuration": "PT5M", "cooldown": 500, "timeout": 3000, "localOnly": true}}))
    .await;
    assert_eq!(managed.status(), 201);
    let reads = register(json!({"type": "ContextSourceRegistration", "endpoint": "http://source.example.com",
        "mode": "auxiliary", "operations": ["retrieveOps"], "information": info(json!([{"type": "Car"}]), None)}))
    .await;
    assert_eq!(reads.status(), 201);
    // What an exclusive registration holds, nothing else exclusive or redirect may claim;
    // redirect registrations may overlap each other (clause 4.3.6.3).
    let car = |mode: &str, id: &str| {
        json!({"type": "ContextSourceRegistration", "mode": mode, "endpoint": "http://source.example.com",
               "information": info(json!([{"type": "Car", "id": id}]), Some(json!(["speed"])))})
    };
    assert_eq!(
        register(car("exclusive", "urn:ngsi-ld:Car:c1"))
            .await
            .status(),
        201
    );
    for mode in ["exclusive", "redirect"] {
        expect_ngsi_error(
            register(car(mode, "urn:ngsi-ld:Car:c1")).await,
            409,
            "Conflict",
        )
        .await;
    }
    assert_eq!(
        register(car("redirect", "urn:ngsi-ld:Car:c2"))
            .await
            .status(),
        201
    );
    assert_eq!(
        register(car("redirect", "urn:ngsi-ld:Car:c2"))
            .await
            .status(),
        201
    );
    // Clause 5.9.2.4: not over an entity (redirect) or its attributes (exclusive) held here.
    let over = |mode: &str, names: &str| {
        json!({"type": "ContextSourceRegistration", "mode": mode, "operations": ["retrieveOps"],
               "endpoint": "http://source.example.com",
               "information": info(json!([{"type": "Building", "id": building}]), Some(json!([names])))})
    };
    expect_ngsi_error(register(over("redirect", "height")).await, 409, "Conflict").await;
    // The same holds when a registration is changed into one that claims too much.
    let mut shared = over("inclusive", "height");
    shared["id"] = json!("urn:ngsi-ld:ContextSourceRegistration:b1-shared");
    assert_eq!(register(shared).await.status(), 201);
    let redirected = broker
        .send(
            Method::PATCH,
            "/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:b1-shared",
            json!({"mode": "redirect"}),
        )
        .await;
    expect_ngsi_error(redirected, 409, "Conflict").await;
    expect_ngsi_error(
        register(over("exclusive", "subCategory")).await,
        409,
        "Conflict",
    )
    .await;
    assert_eq!(register(over("exclusive", "height")).await.status(), 201);
    // Clause 5.10.2.4: discovery filters on the registrations' own properties, scope and
    // location.
    for (name, endpoint, extra) in [
        (
            "a",
            "http://csf-a.example.com",
            json!({"scope": "/Qingdao/Shinan", "location": {"type": "Point", "coordinates": [120.38, 36.07]}}),
        ),
        ("b", "http://csf-b.example.com", json!({"scope": "/Jinan"})),
    ] {
        let mut registration = json!({"id": format!("urn:ngsi-ld:ContextSourceRegistration:park-{name}"),
            "type": "ContextSourceRegistration", "endpoint": endpoint,
            "information": info(json!([{"type": "ParkingSite"}]), None)});
        for (key, value) in extra.as_object().into_iter().flatten() {
            registration[key] = value.clone();
        }
        assert_eq!(register(registration).await.status(), 201);
    }
    for filter in [
        "csf=endpoint==%22http://csf-a.example.com%22",
        "scopeQ=/Qingdao/%23",
        "georel=near;maxDistance==2000&geometry=Point&coordinates=[120.381,36.071]",
    ] {
        let found = broker
            .get_json(&format!("/csourceRegistrations?type=ParkingSite&{filter}"))
            .await;
        let ids: Vec<&str> = found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str())
            .collect();
        assert_eq!(
            ids,
            ["urn:ngsi-ld:ContextSourceRegistration:park-a"],
            "{filter}"
        );
    }
    broker.server.cleanup().await;
}

async fn entity_maps_keep_the_set_a_query_selected(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let slow = "urn:ngsi-ld:Vehicle:em-slow";
    let fast = "urn:ngsi-ld:Vehicle:em-fast";
    for (id, speed) in [(slow, 30), (fast, 90)] {
        let created = broker
            .send(
                Method::POST,
                "/entities",
                json!({"id": id, "type": "Vehicle",
                       "speed": {"type": "Property", "value": speed, "observedAt": "2026-11-30T08:00:00Z"}}),
            )
            .await;
        assert_eq!(created.status(), 201);
    }
    let located = |response: &Response| {
        response.headers()["ngsild-entitymap"]
            .to_str()
            .expect("header")
            .to_owned()
    };
    // Clause 5.14.4: a map of a query, local entities under "@none"; q narrows it.
    let made = broker.get("/entityMaps?type=Vehicle").await;
    assert_eq!(made.status(), 201);
    let location = located(&made);
    let map: Value = made.json().await.expect("json");
    assert_eq!(map["type"], "EntityMap");
    assert!(map["expiresAt"].is_string(), "{map}");
    assert_eq!(map["entityMap"][slow], json!(["@none"]), "{map}");
    assert_eq!(map["entityMap"][fast], json!(["@none"]), "{map}");
    assert!(location.ends_with(map["id"].as_str().expect("id")));
    let narrowed = broker
        .get("/entityMaps?type=Vehicle&q=speed%3E50&entityMapLifetime=PT10M")
        .await;
    assert_eq!(narrowed.status(), 201);
    let narrowed: Value = narrowed.json().await.expect("json");
    assert_eq!(narrowed["entityMap"], json!({fast: ["@none"]}));
    // A map holds every match, whatever page the query would show.
    let every = broker
        .get("/entityMaps?type=Vehicle&q=speed%3E10&limit=1")
        .await;
    assert_eq!(every.status(), 201);
    let every: Value = every.json().await.expect("json");
    assert_eq!(
        every["entityMap"],
        json!({fast: ["@none"], slow: ["@none"]}),
        "{every}"
    );
    for (bad, why) in [
        (format!("/entityMaps?id={slow}"), "too wide"),
        (
            "/entityMaps?type=Vehicle&entityMapLifetime=1hour".into(),
            "not a duration",
        ),
        (
            "/entityMaps?type=Vehicle&entityMapLifetime=P30D".into(),
            "too long",
        ),
        (
            "/entities?type=Vehicle&entityMap=maybe".into(),
            "not a flag",
        ),
    ] {
        let refused = broker.get(&bad).await;
        assert_eq!(refused.status(), 400, "{why}");
        expect_ngsi_error(refused, 400, "BadRequestData").await;
    }
    // Retrieve, update (expiresAt), delete (clauses 5.14.1–5.14.3); only for its department.
    let path = location.trim_start_matches("/ngsi-ld/v1").to_owned();
    assert_eq!(broker.get_json(&path).await, map);
    let admin = broker.server.admin().await;
    let water = broker
        .server
        .user(&admin, "water.op", "water", "operator")
        .await;
    let theirs = broker
        .call(Method::GET, &path, Some(&water))
        .send()
        .await
        .expect("sent");
    expect_ngsi_error(theirs, 404, "ResourceNotFound").await;
    let past = broker
        .send(
            Method::PATCH,
            &path,
            json!({"expiresAt": "2020-01-01T00:00:00Z"}),
        )
        .await;
    expect_ngsi_error(past, 400, "BadRequestData").await;
    let later = yunnao_core::time::rfc3339_ms(yunnao_core::time::now_ms() + 7_200_000);
    let updated = broker
        .send(Method::PATCH, &path, json!({"expiresAt": later}))
        .await;
    assert_eq!(updated.status(), 204);
    assert_eq!(broker.get_json(&path).await["expiresAt"], later);
    let deleted = broker
        .call(Method::DELETE, &path, Some(&broker.token))
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 204);
    expect_ngsi_error(broker.get(&path).await, 404, "ResourceNotFound").await;
    // Clause 5.5.14: a query asked for a map makes one (201); naming it later keeps the set,
    // though a new vehicle now matches; a map that is gone makes a new one.
    let first = broker.get("/entities?type=Vehicle&entityMap=true").await;
    assert_eq!(first.status(), 201);
    let kept = located(&first);
    let ids = |page: Value| {
        let mut ids: Vec<String> = page
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(first.json().await.expect("json")), [fast, slow]);
    let newer = broker
        .send(
            Method::POST,
            "/entities",
            json!({"id": "urn:ngsi-ld:Vehicle:em-new", "type": "Vehicle", "speed": 50}),
        )
        .await;
    assert_eq!(newer.status(), 201);
    let again = broker
        .call(Method::GET, "/entities?type=Vehicle", Some(&broker.token))
        .header("ngsild-entitymap", &kept)
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), 200);
    assert_eq!(located(&again), kept);
    assert_eq!(ids(again.json().await.expect("json")), [fast, slow]);
    let dead = broker
        .call(Method::GET, "/entities?type=Vehicle", Some(&broker.token))
        .header("ngsild-entitymap", "urn:ngsi-ld:EntityMap:gone")
        .send()
        .await
        .expect("sent");
    assert_eq!(dead.status(), 201);
    assert!(!located(&dead).contains("gone"));
    assert_eq!(ids(dead.json().await.expect("json")).len(), 3);
    // Retrieve Entity (clause 5.7.1.4): the entity stays the body; the map holds it.
    let retrieved = broker
        .get(&format!("/entities/{slow}?entityMap=true"))
        .await;
    assert_eq!(retrieved.status(), 200);
    let single = located(&retrieved);
    let body: Value = retrieved.json().await.expect("json");
    assert_eq!(body["id"], slow);
    assert!(body.get("entityMap").is_none());
    assert_eq!(
        broker
            .get_json(single.trim_start_matches("/ngsi-ld/v1"))
            .await["entityMap"],
        json!({slow: ["@none"]})
    );
    // Temporal queries (clause 5.7.4.4): the same.
    let window = "timerel=after&timeAt=2000-01-01T00:00:00Z";
    let temporal = broker
        .get(&format!(
            "/temporal/entities?type=Vehicle&id={slow}&{window}&entityMap=true"
        ))
        .await;
    assert_eq!(temporal.status(), 201);
    let one = located(&temporal);
    let fixed = broker
        .call(
            Method::GET,
            &format!("/temporal/entities?type=Vehicle&{window}"),
            Some(&broker.token),
        )
        .header("ngsild-entitymap", &one)
        .send()
        .await
        .expect("sent");
    assert_eq!(fixed.status(), 200);
    assert_eq!(located(&fixed), one);
    assert_eq!(ids(fixed.json().await.expect("json")), [slow]);
    let temporal_map = broker
        .get(&format!("/temporal/entityMaps?type=Vehicle&{window}"))
        .await;
    assert_eq!(temporal_map.status(), 201);
    let temporal_map: Value = temporal_map.json().await.expect("json");
    assert_eq!(
        temporal_map["entityMap"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec![
            fast.to_owned(),
            "urn:ngsi-ld:Vehicle:em-new".to_owned(),
            slow.to_owned()
        ])
    );
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

/// `text` as a query-string value: what would end or cut the value is percent-encoded (the URL
/// parser encodes the rest).
fn query_value(text: &str) -> String {
    text.replace('%', "%25")
        .replace('#', "%23")
        .replace('&', "%26")
        .replace('+', "%2B")
}

/// Clauses 4.5.20, 4.9 (EXAMPLE 12) and 5.7.2.4: a VocabProperty holds terms of the context,
/// kept as IRIs and compacted for each reader; `q` compares them with what it is given unless
/// `expandValues` names the attribute, which expands `q`'s strings the same way, in queries of
/// entities and of their temporal evolution.
async fn vocab_values_are_terms_of_the_context(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let shop = "urn:ngsi-ld:Shop:vocab-1";
    let created = broker
        .send(
            Method::POST,
            "/entities",
            json!({"id": shop, "type": "Shop",
                   "category": {"type": "VocabProperty", "vocab": "commercial"},
                   "kinds": {"type": "VocabProperty", "vocab": ["retail", "food"]}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    // Given with a context that names another vocabulary: stored as that IRI.
    let elsewhere = broker
        .call(Method::POST, "/entities", Some(&broker.token))
        .header("content-type", "application/ld+json")
        .body(
            json!({"id": "urn:ngsi-ld:Shop:vocab-2", "type": "Shop",
                   "category": {"type": "VocabProperty", "vocab": "kind:commercial"},
                   "@context": [{"kind": "https://example.org/kinds#"}, CORE]})
            .to_string(),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(elsewhere.status(), 201);

    let entity = broker.get_json(&format!("/entities/{shop}")).await;
    assert_eq!(entity["category"]["vocab"], "commercial");
    assert_eq!(entity["kinds"]["vocab"], json!(["retail", "food"]));
    let simplified = broker
        .get_json(&format!("/entities/{shop}?options=keyValues"))
        .await;
    assert_eq!(simplified["category"], json!({"vocab": "commercial"}));
    let other = broker.get_json("/entities/urn:ngsi-ld:Shop:vocab-2").await;
    assert_eq!(
        other["category"]["vocab"], "https://example.org/kinds#commercial",
        "under the core context the other vocabulary's IRI stays whole"
    );

    let default_iri = "https://uri.etsi.org/ngsi-ld/default-context/commercial";
    // (q, expandValues, ids found)
    let cases: &[(&str, Option<&str>, &[&str])] = &[
        ("category==commercial", None, &[]),
        ("category==commercial", Some("category"), &[shop]),
        ("category==\"commercial\"", Some("category"), &[shop]),
        (
            "category==industrial,commercial",
            Some("category,kinds"),
            &[shop],
        ),
        ("category==commercial", Some("kinds"), &[]),
        ("kinds==food", Some("kinds"), &[shop]),
        (&format!("category=={default_iri}"), None, &[shop]),
        (
            "category==https://example.org/kinds#commercial",
            None,
            &["urn:ngsi-ld:Shop:vocab-2"],
        ),
    ];
    for (q, expand, expected) in cases {
        let mut query = format!("type=Shop&q={}", query_value(q));
        if let Some(names) = expand {
            query.push_str(&format!("&expandValues={names}"));
        }
        let found = broker.get_json(&format!("/entities?{query}")).await;
        let ids: Vec<&str> = found
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|e| e["id"].as_str())
            .collect();
        assert_eq!(&ids, expected, "q={q} expandValues={expand:?}");
        let window = "timerel=after&timeAt=2000-01-01T00:00:00Z";
        let temporal = broker
            .get_json(&format!("/temporal/entities?{query}&{window}"))
            .await;
        let ids: Vec<&str> = temporal
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|e| e["id"].as_str())
            .collect();
        assert_eq!(&ids, expected, "temporal: q={q} expandValues={expand:?}");
    }
    broker.server.cleanup().await;
}

/// Clause 4.5.9: the simplified temporal representation names each attribute type's pairs
/// (`values`, `objects`, `languageMaps`, `jsons`, `vocabs`, `valueLists`, `objectLists`) and
/// holds the bare value of each instance with its time.
async fn simplified_temporal_values_follow_each_attribute_type(backend: TestBackend) {
    let broker = Broker::start(backend).await;
    let id = "urn:ngsi-ld:Vehicle:simplified";
    let at = "2026-08-10T00:00:01Z";
    let created = broker
        .send(
            Method::POST,
            "/temporal/entities",
            json!({"id": id, "type": "Vehicle",
                "location": [
                    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1.0, 2.0]}, "observedAt": at},
                    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [3.0, 4.0]}, "observedAt": "2026-08-10T00:00:02Z"}],
                "speed": {"type": "Property", "value": 12, "observedAt": at},
                "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1", "observedAt": at},
                "label": {"type": "LanguageProperty", "languageMap": {"en": "red"}, "observedAt": at},
                "spec": {"type": "JsonProperty", "json": {"a": 1}, "observedAt": at},
                "category": {"type": "VocabProperty", "vocab": "commercial", "observedAt": at},
                "depths": {"type": "ListProperty", "valueList": [1.2, 3.4], "observedAt": at},
                "route": {"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Road:1", "urn:ngsi-ld:Road:2"], "observedAt": at}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let simplified = broker
        .get_json(&format!("/temporal/entities/{id}?options=temporalValues"))
        .await;
    // (attribute, type, member, first value)
    let cases = [
        (
            "location",
            "GeoProperty",
            "values",
            json!({"type": "Point", "coordinates": [1.0, 2.0]}),
        ),
        ("speed", "Property", "values", json!(12)),
        (
            "owner",
            "Relationship",
            "objects",
            json!("urn:ngsi-ld:Person:1"),
        ),
        (
            "label",
            "LanguageProperty",
            "languageMaps",
            json!({"languageMap": {"en": "red"}}),
        ),
        // Values that are JSON objects or terms stay under their member (as in keyValues).
        ("spec", "JsonProperty", "jsons", json!({"json": {"a": 1}})),
        (
            "category",
            "VocabProperty",
            "vocabs",
            json!({"vocab": "commercial"}),
        ),
        ("depths", "ListProperty", "valueLists", json!([1.2, 3.4])),
        (
            "route",
            "ListRelationship",
            "objectLists",
            json!(["urn:ngsi-ld:Road:1", "urn:ngsi-ld:Road:2"]),
        ),
    ];
    for (name, kind, member, first) in cases {
        let attribute = &simplified[name];
        assert_eq!(attribute["type"], kind, "{name}: {attribute}");
        assert_eq!(
            attribute[member][0],
            json!([first, at]),
            "{name}: {attribute}"
        );
        let members: Vec<&String> = attribute
            .as_object()
            .expect("object")
            .keys()
            .filter(|k| *k != "type" && *k != member)
            .collect();
        assert!(
            members.is_empty(),
            "{name} holds only its pairs: {attribute}"
        );
    }
    assert_eq!(
        simplified["location"]["values"].as_array().map(Vec::len),
        Some(2)
    );
    // Clause 6.3.12: format takes precedence over options.
    for given in [
        "format=temporalValues",
        "format=temporalValues&options=aggregatedValues&aggrMethods=sum",
    ] {
        let same = broker
            .get_json(&format!("/temporal/entities/{id}?{given}"))
            .await;
        assert_eq!(same, simplified, "{given}");
    }
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

backend_tests!(
    deletions_are_kept_and_times_chosen_by_timeproperty,
    simplified_temporal_values_follow_each_attribute_type,
    vocab_values_are_terms_of_the_context,
    an_earlier_version_preferred_gets_what_it_knew,
    queries_and_subscriptions_reach_linked_entities,
    registrations_keep_to_their_mode,
    entity_maps_keep_the_set_a_query_selected,
    distributed_requests_follow_their_registrations,
    writes_go_to_the_context_sources_that_hold_them,
    context_sources_answer_what_they_are_registered_for,
    periodic_subscriptions_tell_what_matches_every_interval,
    linked_entities_are_joined_inline_or_flat,
    subscriptions_hear_only_what_their_department_may_read,
    registration_subscriptions_hear_of_matching_registrations,
    notification_triggers_choose_what_is_notified,
    context_sources_are_registered_and_discovered,
    representations_follow_each_attribute_type,
    scopes_place_entities_in_hierarchies,
    requests_are_negotiated_as_clause_6_3_says,
    temporal_representations_are_provided_and_deleted,
    a_slow_receiver_gets_every_notification_under_load,
    hosted_contexts_are_served_and_used_without_any_fetch,
    subscriptions_notify_over_mqtt,
    retrievals_show_every_write_at_once,
    moved_entities_are_found_where_they_are,
    entity_changes_commit_with_their_audit_records,
    remote_contexts_come_only_from_the_allow_list_and_are_cached,
    sensor_data_reaches_entities_and_fires_subscriptions,
    subscriptions_notify_and_count_every_delivery,
    attribute_history_answers_temporal_queries,
    batch_operations_report_each_entity,
    the_city_is_there_from_the_start_as_open_data,
    entities_are_created_retrieved_and_rendered,
    bad_requests_get_the_specified_errors,
    attributes_are_appended_updated_merged_and_deleted,
    queries_filter_page_and_count,
    departments_tenants_and_anonymous_readers_are_kept_apart,
    authentication_can_be_turned_off_for_conformance_suites,
);
