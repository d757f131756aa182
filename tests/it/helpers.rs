//! The test harness: a real Berth server on `127.0.0.1:0` over a fresh SQLite file or a fresh
//! PostgreSQL database, and a small JSON client.
//!
//! `conformance!(name)` runs `async fn name(backend: Backend)` against both databases.
//! PostgreSQL comes from `BERTH_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each app creates its own database and drops
//! it afterwards. An unreachable PostgreSQL fails the test: it is never skipped.

#![allow(dead_code)]

use std::net::SocketAddr;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

use berth::config::{Database, Secret, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `async fn $name(Backend)` as two tests: `$name::sqlite` and `$name::postgres`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

pub const ADMIN_TOKEN: &str = "berth_test_admin_token_0123456789";

pub fn pg_base_url() -> String {
    std::env::var("BERTH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty PostgreSQL database, dropped when this value is.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        let base = pg_base_url();
        let name = format!("berth_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {base} is unreachable: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
        PgDatabase {
            url: format!("{prefix}/{name}"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let base = pg_base_url();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// A running Berth, stopped when dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub backend: Backend,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    store: berth::store::Store,
    pub worker: berth::delivery::worker::Worker,
    /// The server's rate limiters (tests pause their clock).
    pub limits: std::sync::Arc<berth::api::limits::RateLimits>,
    /// The delivery worker's clock (a test clock): `clock.advance(…)` moves due times,
    /// leases, heartbeats, retries and auto-disable forward without waiting.
    pub clock: berth::clock::Clock,
    // Declared last: dropped after the server is asked to stop.
    pg: Option<PgDatabase>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Like `spawn`, with webhooks allowed to reach loopback (receivers run there), rate
    /// limits off, and `tune` applied to the settings first.
    pub async fn spawn_with(backend: Backend, tune: impl FnOnce(&mut Settings)) -> TestApp {
        berth::init_crypto();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("BERTH_TEST_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
            )
            .with_test_writer()
            .try_init();
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::for_data_dir(data_dir.path());
        settings.admin_token = Some(Secret::new(ADMIN_TOKEN.into()));
        settings.delivery.policy =
            berth::delivery::ssrf::TargetPolicy::parse("127.0.0.0/8,::1/128").expect("cidrs");
        settings.delivery.poll_interval = std::time::Duration::from_millis(200);
        // Tests make requests in bursts far above any sane rate limit; `limits.rs` sets its
        // own limits through `tune`.
        settings.rate_limit = berth::config::RateLimitSettings::disabled();
        settings.delivery.clock = berth::clock::Clock::test();
        tune(&mut settings);
        let clock = settings.delivery.clock.clone();
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let db = PgDatabase::create().await;
                settings.database = Database::Postgres(db.url.clone());
                Some(db)
            }
        };
        let (state, listener, addr) = berth::app::prepare(settings).await.expect("prepare");
        let store = state.store.clone();
        let worker = state.worker.clone();
        let limits = state.limits.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = berth::app::run(state, listener, async {
                let _ = rx.await;
            })
            .await;
        });
        TestApp {
            addr,
            base: format!("http://{addr}"),
            backend,
            client: reqwest::Client::new(),
            data_dir,
            shutdown: Some(tx),
            server: Some(server),
            store,
            worker,
            limits,
            clock,
            pg,
        }
    }

    /// The store, for checks a test cannot make through the API.
    pub fn store(&self) -> &berth::store::Store {
        &self.store
    }

    /// Does all the delivery work there is now ([`Worker::run_once`]): waits for the attempts
    /// the worker loop has in flight, then sends everything due by the clock. When it returns,
    /// every attempt due so far was made and recorded, and none is in flight: what receivers
    /// got is final, unless the database still holds deliveries that will fall due. Answers
    /// the attempts it made itself; panics after 30 s (a queue that never drains).
    ///
    /// [`Worker::run_once`]: berth::delivery::worker::Worker::run_once
    pub async fn drain(&self) -> usize {
        tokio::time::timeout(std::time::Duration::from_secs(30), self.worker.run_once())
            .await
            .expect("the delivery queue did not drain within 30 s")
            .expect("run_once")
    }

    /// How many deliveries the database holds pending (due or not, leased or not), from
    /// `/metrics`: 0 means no delivery will ever be sent again until a new event or a
    /// redelivery.
    pub async fn pending_deliveries(&self) -> u64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix("berth_delivery_queue_depth "))
            .unwrap_or_else(|| panic!("no berth_delivery_queue_depth in /metrics:\n{text}"))
            .trim()
            .parse()
            .expect("queue depth")
    }

    /// PostgreSQL: the URL of this app's own database, for a test's raw connection.
    pub fn pg_url(&self) -> Option<&str> {
        self.pg.as_ref().map(|db| db.url.as_str())
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
        self.store.close().await;
    }

    /// Sends a request; `body` is sent as JSON when given. Answers the status and the JSON
    /// body (`Value::Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{path}: response is not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, value)
    }

    /// Sends raw bytes with a content type.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.body(body).send().await.expect("request");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn post_empty(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), None).await
    }

    pub async fn put(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Creates a user and a token for them; answers the token.
    pub async fn user(&self, username: &str) -> String {
        let (s, b) = self
            .post(
                ADMIN_TOKEN,
                "/api/v1/users",
                json!({ "username": username }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "create user {username}: {b}");
        let (s, b) = self
            .post_empty(ADMIN_TOKEN, &format!("/api/v1/users/{username}/tokens"))
            .await;
        assert_eq!(s, StatusCode::CREATED, "create token for {username}: {b}");
        b["token"].as_str().expect("token").to_owned()
    }

    /// Creates a workspace (as the server admin).
    pub async fn workspace(&self, name: &str) {
        let (s, b) = self
            .post(ADMIN_TOKEN, "/api/v1/workspaces", json!({ "name": name }))
            .await;
        assert_eq!(s, StatusCode::CREATED, "create workspace {name}: {b}");
    }

    /// Makes `username` a member of `ws` with `role` (as the server admin).
    pub async fn add_member(&self, ws: &str, username: &str, role: &str) {
        let (s, b) = self
            .put(
                ADMIN_TOKEN,
                &format!("/api/v1/workspaces/{ws}/members/{username}"),
                json!({ "role": role }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "add member {username}: {b}");
    }

    /// Creates a model in `ws` (as the server admin).
    pub async fn model(&self, ws: &str, name: &str) {
        let (s, b) = self
            .post(
                ADMIN_TOKEN,
                &format!("/api/v1/workspaces/{ws}/models"),
                json!({ "name": name }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "create model {name}: {b}");
    }

    /// Creates a version (as the server admin) from a JSON body.
    pub async fn version(&self, ws: &str, model: &str, body: Value) -> Value {
        let (s, b) = self
            .post(
                ADMIN_TOKEN,
                &format!("/api/v1/workspaces/{ws}/models/{model}/versions"),
                body,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "create version: {b}");
        b
    }

    /// Every event of a workspace, reading page after page.
    pub async fn all_events(&self, token: &str, ws: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(c) => format!("/api/v1/workspaces/{ws}/events?limit=2&after={c}"),
                None => format!("/api/v1/workspaces/{ws}/events?limit=2"),
            };
            let (s, b) = self.get(token, &path).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            let items = b["items"].as_array().expect("items").clone();
            if items.is_empty() {
                break;
            }
            out.extend(items);
            after = b["nextCursor"].as_str().map(str::to_owned);
        }
        out
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.abort();
        }
    }
}

/// Asserts an error answer: status, `error.code`, and (when given) `error.field`.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: u16, field: Option<&str>) {
    let (s, b) = got;
    assert_eq!(s.as_u16(), status, "body: {b}");
    let err = &b["error"];
    assert!(err["code"].is_string(), "error.code missing: {b}");
    assert!(err["message"].is_string(), "error.message missing: {b}");
    if let Some(f) = field {
        assert_eq!(err["field"].as_str(), Some(f), "error.field: {b}");
    }
}

/// One request a [`TestReceiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    pub at: std::time::Instant,
    /// The sender's address: one per TCP connection.
    pub peer: SocketAddr,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// How a [`TestReceiver`] answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: std::time::Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: std::time::Duration::ZERO,
        }
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_owned();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn delay(mut self, d: std::time::Duration) -> Reply {
        self.delay = d;
        self
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    /// Answers for the next requests, in order; then `default`.
    script: std::collections::VecDeque<Reply>,
    default: Option<Reply>,
}

/// A real HTTP server on 127.0.0.1 that records every request and answers as scripted
/// (200 by default).
#[derive(Clone)]
pub struct TestReceiver {
    pub url: String,
    pub addr: SocketAddr,
    state: std::sync::Arc<std::sync::Mutex<ReceiverState>>,
    notify: std::sync::Arc<tokio::sync::Notify>,
}

impl TestReceiver {
    pub async fn start() -> TestReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let state = std::sync::Arc::new(std::sync::Mutex::new(ReceiverState::default()));
        let notify = std::sync::Arc::new(tokio::sync::Notify::new());
        let (st, nt) = (state.clone(), notify.clone());
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let st = st.clone();
            let nt = nt.clone();
            async move {
                let (parts, body) = req.into_parts();
                let peer = parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<SocketAddr>>()
                    .expect("the receiver is served with connect info")
                    .0;
                let body = axum::body::to_bytes(body, 10 * 1024 * 1024)
                    .await
                    .unwrap_or_default()
                    .to_vec();
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in &parts.headers {
                    if let (Ok(k), Ok(v)) = (
                        reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes()),
                        reqwest::header::HeaderValue::from_bytes(v.as_bytes()),
                    ) {
                        headers.append(k, v);
                    }
                }
                let reply = {
                    let mut s = st.lock().expect("lock");
                    s.received.push(Received {
                        path: parts.uri.to_string(),
                        headers,
                        body,
                        at: std::time::Instant::now(),
                        peer,
                    });
                    s.script
                        .pop_front()
                        .or_else(|| s.default.clone())
                        .unwrap_or_else(|| Reply::status(200).body("ok"))
                };
                nt.notify_waiters();
                if !reply.delay.is_zero() {
                    tokio::time::sleep(reply.delay).await;
                }
                let mut resp = axum::response::Response::builder().status(reply.status);
                for (k, v) in &reply.headers {
                    resp = resp.header(k.as_str(), v.as_str());
                }
                resp.body(axum::body::Body::from(reply.body))
                    .expect("response")
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        TestReceiver {
            url: format!("http://{addr}"),
            addr,
            state,
            notify,
        }
    }

    /// Answers the next requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().expect("lock").script.extend(replies);
    }

    /// Answers every request not scripted with `reply`.
    pub fn default_reply(&self, reply: Reply) {
        self.state.lock().expect("lock").default = Some(reply);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("lock").received.clone()
    }

    /// Waits until at least `n` requests arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let got = self.received();
                assert!(
                    got.len() >= n,
                    "receiver got {} requests, expected {n} within {timeout:?}",
                    got.len()
                );
                return got;
            }
        }
    }
}

impl TestApp {
    /// Signs in through the sign-in form like a browser; answers the session cookie.
    pub async fn sign_in(&self, token: &str) -> String {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let resp = client
            .get(format!("{}/login", self.base))
            .send()
            .await
            .expect("login page");
        let csrf = cookie_value(&resp, "berth_login_csrf").expect("login csrf cookie");
        let resp = client
            .post(format!("{}/login", self.base))
            .header("cookie", format!("berth_login_csrf={csrf}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}&csrf={csrf}"))
            .send()
            .await
            .expect("sign in");
        assert!(resp.status().is_redirection(), "{}", resp.status());
        cookie_value(&resp, "berth_session").expect("session cookie")
    }
}

/// The value of cookie `name` set by `resp`, if any.
pub fn cookie_value(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}
