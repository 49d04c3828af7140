//! Test harness: `spawn_app(backend)` starts a real livecamp on 127.0.0.1:0 with a fresh database
//! — a new SQLite file, or a new PostgreSQL database that is dropped afterwards — and the demo
//! data (password [`DEMO_PASSWORD`]). `backend_tests!` runs each test against both backends.
//!
//! PostgreSQL and Redis are expected at `TEST_POSTGRES_URL` (default
//! postgres://postgres@127.0.0.1:5432/postgres) and `TEST_REDIS_URL` (default
//! redis://127.0.0.1:6379); `make test` makes sure they run. A missing service fails the test.

#![allow(dead_code)]

pub mod rtc_peer;
pub mod shop;

use std::sync::Arc;

use foundation::AppState;
use foundation::clock::{Clock, SystemClock};
use foundation::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const DEMO_PASSWORD: &str = "demo12345";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Runs each listed `async fn name(backend: Backend)` once per backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::common::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::common::Backend::Postgres).await } )*
        }
    };
}

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub backend: Backend,
    pg_database: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// A fresh PostgreSQL database; returns its URL and name. [`drop_pg_database`] removes it.
pub async fn create_pg_database() -> (String, String) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let admin = postgres_admin_url();
    let name = format!("livecamp_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(&admin)
        .await
        .expect("PostgreSQL must run at TEST_POSTGRES_URL (make test starts it)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    (format!("{base}/{name}"), name)
}

pub fn test_config(dir: &std::path::Path, database_url: String) -> Config {
    let (field_keys, lookup_key) = foundation::crypto::Keys::generate();
    Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        database_url: Some(database_url),
        demo_password: Some(DEMO_PASSWORD.into()),
        field_keys,
        lookup_key,
        argon2_memory_kib: 256,
        argon2_iterations: 1,
        login_rate_per_minute: 10_000,
        shutdown_grace_seconds: 1,
        log_level: "warn".into(),
        media_listen: "127.0.0.1:0".into(),
        ..Config::default()
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}, Arc::new(SystemClock)).await
}

pub async fn spawn_app_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Config),
    clock: Arc<dyn Clock>,
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let (database_url, pg_database) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}/livecamp.db", dir.path().display()),
            None,
        ),
        Backend::Postgres => {
            let (url, name) = create_pg_database().await;
            (url, Some(name))
        }
    };
    let mut config = test_config(dir.path(), database_url);
    adjust(&mut config);
    let state = AppState::build_with_clock(config, clock)
        .await
        .expect("app state builds");
    foundation::demo::ensure_demo_data(&state)
        .await
        .expect("demo data");
    serve_node(state, backend, pg_database, dir).await
}

/// Serves `state` on 127.0.0.1:0 until the `TestApp` is stopped or dropped.
async fn serve_node(
    state: AppState,
    backend: Backend,
    pg_database: Option<String>,
    dir: tempfile::TempDir,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = oneshot::channel::<()>();
    let serve_state = state.clone();
    let server = tokio::spawn(async move {
        let _ = livecamp::serve(listener, serve_state, async {
            let _ = rx.await;
        })
        .await;
    });
    TestApp {
        base,
        state,
        backend,
        pg_database,
        shutdown: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

/// Nodes of one cluster: the same database and keys, the bus shared through Redis at
/// `redis_url`; the first node owns (and drops) the database.
pub async fn spawn_cluster(backend: Backend, nodes: usize, redis_url: &str) -> Vec<TestApp> {
    let first = spawn_app_with(
        backend,
        |c| {
            c.redis_url = Some(redis_url.to_owned());
            // A namespace per cluster keeps concurrent tests apart on the shared Redis.
            c.redis_namespace = format!("test-{}", uuid::Uuid::new_v4().simple());
        },
        Arc::new(SystemClock),
    )
    .await;
    let mut apps = Vec::with_capacity(nodes);
    for _ in 1..nodes {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = (*first.state.config).clone();
        config.data_dir = dir.path().to_path_buf();
        let state = AppState::build_with_clock(config, Arc::new(SystemClock))
            .await
            .expect("node state builds");
        apps.push(serve_node(state, backend, None, dir).await);
    }
    apps.insert(0, first);
    apps
}

/// Drops a database made by [`create_pg_database`], waiting for it; usable from `Drop`, which
/// cannot await (a runtime of its own, on a thread of its own). Failures are ignored: a left-over
/// test database is harmless.
pub fn drop_pg_database(name: String) {
    let admin = postgres_admin_url();
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
            }
        });
    })
    .join();
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(name) = self.pg_database.take() {
            drop_pg_database(name);
        }
    }
}

/// A client that keeps cookies, like a browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client")
}

pub fn api() -> reqwest::Client {
    reqwest::Client::new()
}

/// A WebSocket client connection to a node's hub.
pub type WsSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends one JSON frame on a hub WebSocket.
pub async fn ws_send(socket: &mut WsSocket, frame: Value) {
    use futures::SinkExt;
    socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            frame.to_string().into(),
        ))
        .await
        .expect("send");
}

impl TestApp {
    /// Opens a WebSocket to this node's hub with a session token.
    pub async fn ws(&self, token: &str) -> WsSocket {
        let url = format!("{}/ws?token={token}", self.base.replace("http://", "ws://"));
        tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects")
            .0
    }

    /// The host's socket, joined to `room` with the live started (its frames not read yet).
    pub async fn go_live(&self, token: &str, room: i64) -> WsSocket {
        let mut socket = self.ws(token).await;
        ws_send(
            &mut socket,
            serde_json::json!({"v": 1, "type": "join", "room": room}),
        )
        .await;
        ws_send(
            &mut socket,
            serde_json::json!({"v": 1, "type": "start_live", "room": room}),
        )
        .await;
        socket
    }

    /// Creates a live-commerce room in the first class `token` sees; returns its id.
    pub async fn create_room(&self, token: &str, title: &str) -> i64 {
        let class = self.get(token, "/api/v1/classes").await.1[0]["id"]
            .as_i64()
            .expect("a class");
        let (status, room) = self
            .send(
                reqwest::Method::POST,
                token,
                "/api/v1/rooms",
                json!({"class_id": class, "kind": "live_commerce", "title": title}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{room}");
        room["id"].as_i64().expect("room id")
    }

    /// Graceful shutdown, as on SIGTERM; returns when the server has finished.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Logs in and returns the bearer token.
    pub async fn token(&self, username: &str) -> String {
        let (status, body) = self.login(&api(), username, DEMO_PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "login {username}: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn login(
        &self,
        client: &reqwest::Client,
        username: &str,
        password: &str,
    ) -> (StatusCode, Value) {
        let response = client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let response = api()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let response = api()
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn count(&self, table: &'static str) -> i64 {
        use sqlx::Row;
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(self.state.db.pool())
            .await
            .expect("count")
            .try_get(0)
            .expect("count value")
    }
}

/// Asserts an error answer: status and `code`, and a non-empty message.
pub fn assert_error(status: StatusCode, body: &Value, expected_status: u16, expected_code: &str) {
    assert_eq!(status.as_u16(), expected_status, "body: {body}");
    assert_eq!(body["code"], expected_code, "body: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without message: {body}"
    );
}
