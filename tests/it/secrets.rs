//! Secrets stay secret: a full scenario against the real binary, logging at `debug`, then
//! every API response body and every log line is searched for every token and secret used.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Reply, TestReceiver};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const ADMIN: &str = "berth_admin_secret_token_0123456789";
const HOOK_SECRET: &str = "hook-secret-PLAIN-4f1c";
const GH_SECRET: &str = "ghp_githubtoken-SECRET-77";
const COMET_SECRET: &str = "comet-auth-SECRET-9d2e";

struct Client {
    base: String,
    http: reqwest::Client,
    bodies: Vec<String>,
}

impl Client {
    async fn call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let text = resp.text().await.expect("body");
        self.bodies.push(text.clone());
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_response_or_log_line() {
    berth::init_crypto();
    let dir = tempfile::tempdir().expect("temp dir");
    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(500).body("nope"));
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("BERTH_ADMIN_TOKEN", ADMIN)
        .env("BERTH_ALLOWED_TARGET_CIDRS", "127.0.0.0/8")
        .env("BERTH_RETRY_SCHEDULE", "100ms,100ms")
        .env("BERTH_LOG", "debug")
        .env_remove("BERTH_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        }
    });
    let mut log = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let base = loop {
        if let Ok(chunk) = lines.recv_timeout(Duration::from_millis(200)) {
            log.push_str(&chunk);
        }
        if let Some(url) = berth::app::listening_url(&log) {
            break url.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "berth did not start: {log}"
        );
    };
    let mut c = Client {
        base,
        http: reqwest::Client::new(),
        bodies: Vec::new(),
    };
    use reqwest::Method as M;
    c.call(
        M::POST,
        "/api/v1/workspaces",
        ADMIN,
        Some(json!({"name": "acme"})),
    )
    .await;
    c.call(
        M::POST,
        "/api/v1/users",
        ADMIN,
        Some(json!({"username": "alice"})),
    )
    .await;
    let alice = c
        .call(M::POST, "/api/v1/users/alice/tokens", ADMIN, None)
        .await;
    let alice = alice["token"].as_str().expect("token").to_owned();
    // The one response allowed to carry a token is the one that creates it.
    c.bodies.pop();
    c.call(
        M::PUT,
        "/api/v1/workspaces/acme/members/alice",
        ADMIN,
        Some(json!({"role": "admin"})),
    )
    .await;
    c.call(
        M::POST,
        "/api/v1/workspaces/acme/models",
        &alice,
        Some(json!({"name": "fraud"})),
    )
    .await;
    let hooks = "/api/v1/workspaces/acme/models/fraud/webhooks";
    let hook = c
        .call(
            M::POST,
            hooks,
            &alice,
            Some(
                json!({"name": "plain", "url": format!("{}/h", rx.url), "secret": HOOK_SECRET,
                        "triggers": ["MODEL_VERSION_CREATED"], "headers": {"X-Team": "ml"}}),
            ),
        )
        .await;
    let id = hook["id"].as_str().expect("id").to_owned();
    c.call(
        M::POST,
        hooks,
        &alice,
        Some(
            json!({"name": "gh", "url": format!("{}/repos/o/r/dispatches", rx.url),
                    "secret": GH_SECRET, "githubActions": true,
                    "triggers": ["MODEL_VERSION_CREATED"]}),
        ),
    )
    .await;
    c.call(
        M::POST,
        "/api/rest/v2/webhooks/config",
        &alice,
        Some(
            json!({"webhookConfigs": [{"workspaceName": "acme", "modelName": "fraud",
            "webhookUrls": [{"name": "comet", "url": format!("{}/c", rx.url),
            "triggers": ["MODEL_VERSION_CREATED"], "header": {"Authorization": COMET_SECRET}}]}]}),
        ),
    )
    .await;
    c.call(
        M::GET,
        "/api/rest/v2/webhooks/config?workspaceName=acme&modelName=fraud",
        &alice,
        None,
    )
    .await;
    c.call(M::POST, &format!("{hooks}/{id}/test"), &alice, None)
        .await;
    c.call(
        M::POST,
        &format!("{hooks}/test"),
        &alice,
        Some(json!({"url": format!("{}/t", rx.url), "secret": HOOK_SECRET})),
    )
    .await;
    c.call(
        M::POST,
        "/api/v1/workspaces/acme/models/fraud/versions",
        &alice,
        Some(json!({"version": "1.0.0"})),
    )
    .await;
    // 3 webhooks × 3 attempts each, all answered 500.
    rx.wait_for(2 + 9, Duration::from_secs(20)).await;
    // Until the last attempts are recorded: every webhook's delivery has failed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let list = loop {
        let list = c.call(M::GET, hooks, &alice, None).await;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        if items.len() == 3 && items.iter().all(|h| h["lastDelivery"]["state"] == "failed") {
            break list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deliveries did not fail: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for h in list["items"].as_array().expect("items") {
        let hid = h["id"].as_str().expect("id");
        let deliveries = c
            .call(M::GET, &format!("{hooks}/{hid}/deliveries"), &alice, None)
            .await;
        for d in deliveries["items"].as_array().expect("items") {
            let did = d["id"].as_str().expect("id");
            c.call(
                M::GET,
                &format!("{hooks}/{hid}/deliveries/{did}"),
                &alice,
                None,
            )
            .await;
        }
    }
    c.call(M::GET, "/api/v1/users/alice/tokens", &alice, None)
        .await;
    // The audit log records every webhook change above: never with a secret.
    let audit = c
        .call(
            M::GET,
            "/api/v1/workspaces/acme/audit?limit=500",
            ADMIN,
            None,
        )
        .await;
    assert!(
        audit["items"].as_array().is_some_and(|a| a.len() > 3),
        "the scenario was audited: {audit}"
    );
    c.call(M::GET, "/api/v1/me", &alice, None).await;
    c.call(M::GET, "/api/v1/nope", "wrong-token", None).await;

    // The signing key is handed out by design, but never logged.
    let key = c
        .call(
            M::GET,
            &format!("{hooks}/{id}/signing-secret"),
            &alice,
            None,
        )
        .await;
    c.bodies.pop();
    let key = key["key"].as_str().expect("key").to_owned();

    let _ = child.kill();
    let _ = child.wait();
    while let Ok(chunk) = lines.recv_timeout(Duration::from_millis(300)) {
        log.push_str(&chunk);
    }
    assert!(
        log.contains("webhook attempt failed"),
        "the scenario logged its failures"
    );
    // The receivers did get the secrets: they are real and were used.
    let got = rx.received();
    assert!(
        got.iter()
            .any(|r| r.header("authorization").as_deref() == Some(HOOK_SECRET))
    );
    for secret in [ADMIN, alice.as_str(), HOOK_SECRET, GH_SECRET, COMET_SECRET] {
        for (i, body) in c.bodies.iter().enumerate() {
            assert!(
                !body.contains(secret),
                "response {i} leaks a secret: {body}"
            );
        }
        assert!(!log.contains(secret), "the log leaks a secret");
    }
    assert!(!log.contains(&key), "the log leaks the signing key");
    let key_body = key.trim_start_matches("whsec_");
    assert!(!log.contains(key_body), "the log leaks the signing key");
    assert!(c.bodies.len() > 20);
}
