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
