//! The edge turns a panicking handler into a 500 problem and keeps serving.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use utoipa_axum::router::OpenApiRouter;
use yunnao_http::{EdgeConfig, Metrics, edge};

#[utoipa::path(get, path = "/boom", responses((status = 500)))]
async fn boom() -> &'static str {
    let items: Vec<u8> = Vec::new();
    let index = items.len() + 3;
    // An out-of-bounds index stands in for any bug in a handler.
    if items.get(index).is_none() {
        panic!("index {index} out of bounds");
    }
    "unreachable"
}

#[utoipa::path(get, path = "/fine", responses((status = 200)))]
async fn fine() -> &'static str {
    "fine"
}

fn app(metrics: Metrics) -> Router {
    let (router, _) = OpenApiRouter::new()
        .routes(utoipa_axum::routes!(boom))
        .routes(utoipa_axum::routes!(fine))
        .split_for_parts();
    edge(router, &EdgeConfig::default(), metrics)
}

#[tokio::test]
async fn a_panic_becomes_a_500_problem_and_the_server_keeps_serving() {
    let metrics = Metrics::new();
    let router = app(metrics.clone());
    let response = router
        .clone()
        .oneshot(Request::get("/boom").body(Body::empty()).expect("request"))
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    let problem: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(problem["type"], "/problems/internal");
    assert!(
        !problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("out of bounds"),
        "panic text must not leak"
    );

    let after = router
        .oneshot(Request::get("/fine").body(Body::empty()).expect("request"))
        .await
        .expect("answered");
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(metrics.http_panics.get(), 1);
    assert!(metrics.render().contains("yunnao_http_panics_total 1"));
}

#[tokio::test]
async fn a_client_request_id_is_kept() {
    let response = app(Metrics::new())
        .oneshot(
            Request::get("/fine")
                .header("x-request-id", "abc-123")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answered");
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("abc-123")
    );
}
