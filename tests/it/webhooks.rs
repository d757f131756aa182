//! Webhooks end to end: configuration, delivery to real receivers on loopback, signatures,
//! retries, the delivery log, Test Webhook, and the SSRF guard.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, TestReceiver};

conformance!(version_created_is_delivered_signed);

async fn version_created_is_delivered_signed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let (s, hook) = app
        .post(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/fraud/webhooks",
            json!({"name": "ci", "url": format!("{}/hook", rx.url), "secret": "s3cret",
                   "triggers": ["MODEL_VERSION_CREATED"], "headers": {"X-Team": "ml"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    assert_eq!(hook["hasSecret"], true);
    assert!(hook.get("secret").is_none());
    let id = hook["id"].as_str().unwrap();
    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let r = &got[0];
    assert_eq!(r.header("authorization").as_deref(), Some("s3cret"));
    assert_eq!(r.header("x-team").as_deref(), Some("ml"));
    assert_eq!(r.json()["eventTrigger"], "MODEL_VERSION_CREATED");
    let (_, key) = app
        .get(
            ADMIN_TOKEN,
            &format!("/api/v1/workspaces/acme/models/fraud/webhooks/{id}/signing-secret"),
        )
        .await;
    let wh = standardwebhooks::Webhook::new(key["key"].as_str().unwrap()).unwrap();
    let mut headers = axum::http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, r.header(name).unwrap().parse().unwrap());
    }
    wh.verify(&r.body, &headers).expect("signature verifies");
    app.stop().await;
}

/// The README's Python receiver (`examples/receiver.py`) verifies real deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_python_receiver_verifies_signatures() {
    use std::io::{BufRead, BufReader};
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_, hook) = app
        .post(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/fraud/webhooks",
            json!({"name": "py", "url": format!("http://127.0.0.1:{port}/"),
                   "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    let id = hook["id"].as_str().unwrap();
    let (_, key) = app
        .get(
            ADMIN_TOKEN,
            &format!("/api/v1/workspaces/acme/models/fraud/webhooks/{id}/signing-secret"),
        )
        .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/receiver.py");
    let mut child = std::process::Command::new("python3")
        .args([script, &port.to_string(), key["key"].as_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the example receiver");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("receiver started");
    assert!(first.starts_with("listening on"), "{first}");
    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;
    let line = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("a delivery");
    assert_eq!(line, "verified MODEL_VERSION_CREATED fraud 1.0.0");
    let _ = child.kill();
    let _ = child.wait();
    app.stop().await;
}
