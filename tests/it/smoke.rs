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

conformance!(bad_paths_and_methods_answer_in_the_error_shape);

async fn bad_paths_and_methods_answer_in_the_error_shape(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    // Invalid UTF-8 in a path parameter.
    let got = app.get(ADMIN_TOKEN, "/api/v1/workspaces/%FF/models").await;
    crate::helpers::assert_error(&got, 400, Some("path"));
    // A method the route does not serve.
    let got = app
        .call(reqwest::Method::DELETE, "/healthz", None, None)
        .await;
    crate::helpers::assert_error(&got, 405, None);
    // A path no route serves.
    let got = app.get(ADMIN_TOKEN, "/api/v1/nothing-here").await;
    crate::helpers::assert_error(&got, 404, None);
    app.stop().await;
}
