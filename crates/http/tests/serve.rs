//! The server loop and the edge against real sockets: slow clients are closed, connections and
//! concurrent requests are bounded with a clear refusal, every error is problem+json, and
//! metrics labels stay a closed set.

use axum::Router;
use axum::body::Bytes;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use utoipa_axum::router::OpenApiRouter;
use yunnao_http::{EdgeConfig, Metrics, ServeConfig, edge};

#[utoipa::path(get, path = "/fine", responses((status = 200)))]
async fn fine() -> &'static str {
    "fine"
}

#[utoipa::path(get, path = "/slow", responses((status = 200)))]
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(800)).await;
    "slow"
}

/// A handler taking a raw body: its rejections are axum's plain text.
#[utoipa::path(post, path = "/raw/{id}", params(("id" = String, Path)), request_body = Vec<u8>, responses((status = 200)))]
async fn raw(axum::extract::Path(id): axum::extract::Path<String>, body: Bytes) -> String {
    format!("{id}: {}", body.len())
}

struct Server {
    address: std::net::SocketAddr,
    metrics: Metrics,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(serve: ServeConfig, edge_config: EdgeConfig) -> Server {
    let metrics = Metrics::new();
    let (router, _) = OpenApiRouter::new()
        .routes(utoipa_axum::routes!(fine))
        .routes(utoipa_axum::routes!(slow))
        .routes(utoipa_axum::routes!(raw))
        .split_for_parts();
    let router: Router = edge(router, &edge_config, metrics.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(yunnao_http::serve(listener, router, serve, async move {
        let _ = stopped.await;
    }));
    Server {
        address,
        metrics,
        stop: Some(stop),
    }
}

/// Sends `raw` and reads the answer until the server closes or `wait` passes.
async fn exchange(address: std::net::SocketAddr, raw: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(raw).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_and_type(answer: &str) -> (String, bool) {
    let status = answer.split(' ').nth(1).unwrap_or("").to_owned();
    (status, answer.contains("application/problem+json"))
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_closed() {
    let server = start(
        ServeConfig {
            header_read_timeout: Duration::from_millis(300),
            ..ServeConfig::default()
        },
        EdgeConfig::default(),
    )
    .await;
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    stream
        .write_all(b"GET /fine HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("send");
    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the server closed the connection");

    // An idle kept-alive connection is closed after the same time.
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    stream
        .write_all(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let mut answer = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "an idle connection is closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_past_the_limit_are_refused_with_a_problem() {
    let server = start(
        ServeConfig {
            max_connections: 3,
            ..ServeConfig::default()
        },
        EdgeConfig::default(),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.address).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = exchange(
        server.address,
        b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        status_and_type(&answer),
        ("503".to_owned(), true),
        "{answer}"
    );
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"));
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = exchange(
        server.address,
        b"GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn requests_past_the_concurrency_limit_are_shed() {
    let server = start(
        ServeConfig::default(),
        EdgeConfig {
            max_in_flight: 2,
            ..EdgeConfig::default()
        },
    )
    .await;
    let slow = b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answers = futures_join(server.address, slow, 6).await;
    let ok = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 200"))
        .count();
    let shed: Vec<&String> = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 503"))
        .collect();
    assert_eq!(ok, 2, "{answers:?}");
    assert_eq!(shed.len(), 4, "{answers:?}");
    assert!(
        shed.iter()
            .all(|a| a.contains("application/problem+json") && a.contains("retry-after: 1"))
    );
    assert_eq!(server.metrics.http_shed.get(), 4);
    // Health checks are answered whatever the load (none routed here: a 404 problem, not 503).
    let answer = exchange(
        server.address,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}

async fn futures_join(address: std::net::SocketAddr, raw: &[u8], n: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let raw = raw.to_vec();
        tasks.push(tokio::spawn(async move {
            exchange(address, &raw, Duration::from_secs(5)).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap_or_default());
    }
    answers
}

#[tokio::test]
async fn every_refusal_is_problem_json() {
    let server = start(ServeConfig::default(), EdgeConfig::default()).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20_000));
    let huge_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let big_header = format!(
        "GET /fine HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let many_headers = format!(
        "GET /fine HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("long URI", long_uri.into_bytes(), "414"),
        ("URI past hyper's limit", huge_uri.into_bytes(), "414"),
        ("large headers", big_header.into_bytes(), "431"),
        ("too many headers", many_headers.into_bytes(), "431"),
        (
            "control byte in a header",
            b"GET /fine HTTP/1.1\r\nHost: x\r\nContent-Type: a\x01b\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "not HTTP",
            b"HELLO\x00 WORLD\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "huge declared body under 100-continue",
            b"POST /raw/a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 99999999999\r\n\r\n"
                .to_vec(),
            "413",
        ),
        (
            "invalid UTF-8 in a path parameter",
            b"POST /raw/%FF%FE HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_vec(),
            "400",
        ),
        (
            "body over the limit",
            [
                format!(
                    "POST /raw/a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    2 * 1024 * 1024
                )
                .into_bytes(),
                vec![b'x'; 2 * 1024 * 1024],
            ]
            .concat(),
            "413",
        ),
        (
            "unknown method",
            b"BREW /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            "405",
        ),
    ];
    for (name, raw, status) in cases {
        let answer = exchange(server.address, &raw, Duration::from_secs(3)).await;
        assert_eq!(
            status_and_type(&answer),
            (status.to_owned(), true),
            "{name}: {}",
            answer.chars().take(300).collect::<String>()
        );
    }
    // The server still serves.
    let answer = exchange(
        server.address,
        b"GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn invented_methods_do_not_grow_the_metrics() {
    let server = start(ServeConfig::default(), EdgeConfig::default()).await;
    for i in 0..50 {
        let raw = format!("M{i} /x{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        exchange(server.address, raw.as_bytes(), Duration::from_secs(3)).await;
    }
    let text = server.metrics.render();
    assert!(!text.contains("method=\"M1"), "methods are folded");
    assert!(!text.contains("/x1"), "unmatched paths are folded");
    let series = text
        .lines()
        .filter(|l| l.starts_with("yunnao_http_requests_total"))
        .count();
    assert_eq!(series, 1, "{text}");
    assert!(text.contains("method=\"OTHER\""));
}
