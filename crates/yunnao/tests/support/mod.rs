//! A real server on a free loopback port, on the backend under test.

#![allow(dead_code)]

use reqwest::{Client, Method, Response};
use serde_json::{Value, json};
use yunnao::Config;
use yunnao_store::testing::{TestBackend, TestDb};

pub const ADMIN_PASSWORD: &str = "admin-password-1";

pub struct TestServer {
    pub base: String,
    pub mqtt_port: u16,
    pub client: Client,
    pub config: Config,
    pub identity: yunnao_identity::Identity,
    pub services: yunnao_services::api::ServicesState,
    pub external_mqtt: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    pub test_db: Option<TestDb>,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(backend: TestBackend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: TestBackend, adjust: impl FnOnce(&mut Config)) -> Self {
        let test_db = TestDb::new(backend).await.expect("test database");
        let data_dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: data_dir.path().to_path_buf(),
            db: Some(test_db.url.clone()),
            admin_password: Some(ADMIN_PASSWORD.into()),
            // Coarse unit grids (about 0.7 km², 15,000 over the city) keep start-up quick in
            // debug builds; the grid's own tests and the benchmark use the real resolution.
            grid_resolution: 8,
            // The data hub's synthetic tables are the data hub tests' (they turn them on).
            data_seed_tables: false,
            ..Config::default()
        };
        adjust(&mut config);
        let app = yunnao::build(&config).await.expect("app builds");
        let identity = app.identity.clone();
        let services = app.services.clone();
        let external_mqtt = app.external_mqtt.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mqtt = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mqtt");
        let mqtt_port = mqtt.local_addr().expect("addr").port();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            yunnao::serve(app, listener, Some(mqtt), async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            base,
            mqtt_port,
            client: Client::new(),
            config,
            identity,
            services,
            external_mqtt,
            test_db: Some(test_db),
            data_dir,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn sign_in(&self, username: &str, password: &str) -> String {
        let response = self
            .request(
                Method::POST,
                "/api/v1/auth/sign-in",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(response.status(), 200, "sign-in of {username}");
        let body: Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_owned()
    }

    pub async fn admin(&self) -> String {
        self.sign_in("admin", ADMIN_PASSWORD).await
    }

    /// Creates a user as `token` and signs them in.
    pub async fn user(&self, token: &str, username: &str, department: &str, role: &str) -> String {
        let response = self
            .request(
                Method::POST,
                "/api/v1/users",
                Some(token),
                Some(json!({"username": username, "display_name": username, "password": "password-123",
                            "department": department, "roles": [role]})),
            )
            .await;
        assert_eq!(response.status(), 201, "create {username}");
        self.sign_in(username, "password-123").await
    }

    /// Stops the server (graceful: the final audit checkpoint is signed) and keeps the database.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    pub async fn cleanup(mut self) {
        self.stop().await;
        if let Some(db) = self.test_db.take() {
            db.cleanup().await;
        }
    }
}

/// Asserts an RFC 9457 problem response and returns its body.
pub async fn expect_problem(response: Response, status: u16, slug: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["type"], format!("/problems/{slug}"), "{body}");
    assert_eq!(body["status"], status);
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    body
}

/// The `name=value` pair of a response's Set-Cookie header.
pub fn set_cookie(response: &Response) -> String {
    response.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned()
}

/// A page's HTML as a signed-in browser gets it (status 200 expected).
pub async fn page(browser: &Client, url: &str, cookie: &str) -> String {
    let response = browser
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200, "GET {url}");
    response.text().await.expect("html")
}

/// The plan page's row of one target, between its `<tr>` and `</tr>`.
pub fn target_row<'a>(html: &'a str, id: &str) -> &'a str {
    html.split(&format!(" data-target=\"{id}\">"))
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no row for target {id}"))
}
