//! The served OpenAPI document is generated from the code and must match the committed
//! `openapi.json`. Regenerate it with `cargo run -- openapi > openapi.json` (or run this test
//! with `BERTH_UPDATE_OPENAPI=1`).

use crate::helpers::{Backend, TestApp};

#[tokio::test]
async fn served_document_matches_the_committed_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let served = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    if std::env::var("BERTH_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(path, format!("{served}\n")).expect("write openapi.json");
    }
    let committed = std::fs::read_to_string(path).expect("read openapi.json");
    assert_eq!(
        committed.trim_end(),
        served.trim_end(),
        "openapi.json is out of date: run `cargo run -- openapi > openapi.json`"
    );
    let doc: serde_json::Value = serde_json::from_str(&served).expect("valid JSON");
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/api/v1/users",
        "/api/v1/me",
        "/api/v1/workspaces",
        "/api/v1/workspaces/{ws}/statuses",
        "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/tags",
        "/api/v1/workspaces/{ws}/status-requests",
        "/api/v1/workspaces/{ws}/events",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    app.stop().await;
}
