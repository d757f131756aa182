//! The README's walk-through, end to end.

use reqwest::StatusCode;
use serde_json::json;

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp};

conformance!(walkthrough);

async fn walkthrough(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (s, _) = app.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    app.version(
        "acme",
        "fraud",
        json!({"version": "1.0.0", "tags": ["a"], "sourceExperimentKey": "exp1"}),
    )
    .await;
    let (s, v) = app
        .patch(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/fraud/versions/1.0.0/tags",
            json!({"add": ["b"], "remove": ["a"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tags"], json!(["b"]));
    let events = app.all_events(ADMIN_TOKEN, "acme").await;
    let triggers: Vec<&str> = events
        .iter()
        .map(|e| e["eventTrigger"].as_str().unwrap())
        .collect();
    assert_eq!(triggers, ["MODEL_VERSION_CREATED", "MODEL_TAG_CHANGED"]);
    assert_eq!(events[1]["payload"]["deletedTags"], json!(["a"]));
    app.stop().await;
}
