//! The context crate's test harness: a broker on a test database of either backend, its
//! NGSI-LD routes as an in-process service (no HTTP server, no platform), authentication off.
// Each test binary uses a part of the harness.
#![allow(dead_code)]

use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use yunnao_context::{ContextBroker, ContextConfig};
use yunnao_identity::{Principal, PrincipalKind, Role};
use yunnao_store::testing::{TestBackend, TestDb};

pub struct Broker {
    pub broker: ContextBroker,
    router: axum::Router,
    _db: TestDb,
}

/// One answer: status, the headers a case compares, and the body (JSON, text, or null).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

/// Headers whose values a case states (others vary or say nothing about NGSI-LD behaviour).
pub const COMPARED_HEADERS: &[&str] = &[
    "content-type",
    "location",
    "link",
    "ngsild-results-count",
    "ngsild-entitymap",
    "ngsild-tenant",
];

pub async fn broker(backend: TestBackend) -> Broker {
    broker_with(backend, false).await
}

/// A broker that asks who calls (as the platform's edge would have told it); cases speak as
/// [`caller`]s.
pub async fn broker_with(backend: TestBackend, auth: bool) -> Broker {
    let db = TestDb::new(backend).await.expect("test database");
    yunnao_store::migrate::run(
        &db.db,
        &[yunnao_identity::MIGRATIONS, yunnao_context::MIGRATIONS],
    )
    .await
    .expect("migrations");
    let keys = yunnao_identity::PlatformKeys::generate().expect("keys");
    let identity = yunnao_identity::Identity::new(
        db.db.clone(),
        yunnao_bus::Bus::in_process(),
        keys,
        yunnao_identity::IdentityConfig::default(),
    );
    let broker = ContextBroker::start(
        db.db.clone(),
        identity,
        ContextConfig {
            auth,
            ..ContextConfig::default()
        },
    )
    .await
    .expect("broker");
    let (router, _) = yunnao_context::api::router()
        .with_state(broker.clone())
        .split_for_parts();
    Broker {
        broker,
        router,
        _db: db,
    }
}

impl Broker {
    /// Sends one request; `body` is sent as given (a JSON value is serialised).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<&Value>,
    ) -> Answer {
        self.call_as(None, method, path, headers, body).await
    }

    /// Sends one request as `caller` (signed in), or anonymously.
    pub async fn call_as(
        &self,
        caller: Option<Principal>,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<&Value>,
    ) -> Answer {
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if let Some(caller) = caller {
            request = request.extension(caller);
        }
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let bytes = match body {
            None => Vec::new(),
            Some(Value::String(text)) => text.clone().into_bytes(),
            Some(value) => value.to_string().into_bytes(),
        };
        if body.is_some() {
            // As a client sends it: the edge refuses bodies without a length.
            request = request.header("content-length", bytes.len());
        }
        let body = Body::from(bytes);
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let headers = COMPARED_HEADERS
            .iter()
            .filter_map(|name| {
                response
                    .headers()
                    .get(*name)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| (name.to_string(), v.to_owned()))
            })
            .collect();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }
}

/// A signed-in user of `department` with `role` (`"transport operator"`, `"water dept_admin"`).
pub fn caller(who: &str) -> Option<Principal> {
    let (department, role) = who.split_once(' ')?;
    let role: Role = serde_json::from_value(Value::String(role.to_owned())).ok()?;
    Some(Principal {
        kind: PrincipalKind::User,
        id: format!("{department}-{}", role.as_str()),
        name: format!("{department}.{}", role.as_str()),
        department: department.to_owned(),
        roles: vec![role],
        scopes: Vec::new(),
        session: None,
    })
}
