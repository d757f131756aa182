//! What the OpenAPI document cannot say, answered so that a schema-valid request is never a
//! 400: a cursor of the documented form that this server did not hand out names no page
//! (404, naming the field), and a well-formed status the workspace does not have conflicts
//! with its statuses (409, naming the field). The fuzz test (`fuzz.rs`, `--checks all`)
//! checks the rest of the document against the handlers.

use serde_json::json;

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, assert_error};

conformance!(foreign_cursors_name_no_page_and_malformed_ones_are_invalid);

async fn foreign_cursors_name_no_page_and_malformed_ones_are_invalid(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    app.version("acme", "m", json!({"version": "1.0.0"})).await;
    let lists = [
        "/api/v1/workspaces?cursor=",
        "/api/v1/workspaces/acme/models?cursor=",
        "/api/v1/workspaces/acme/models/m/versions?cursor=",
        "/api/v1/workspaces/acme/status-requests?cursor=",
        "/api/v1/workspaces/acme/audit?cursor=",
        "/api/v1/workspaces/acme/events?after=",
    ];
    for list in lists {
        let field = if list.ends_with("after=") {
            "after"
        } else {
            "cursor"
        };
        // The documented form (base64url), but not one this server handed out.
        for foreign in ["0", "AAAA", "e30", "bm90LWpzb24"] {
            let got = app.get(ADMIN_TOKEN, &format!("{list}{foreign}")).await;
            assert_error(&got, 404, Some(field));
            assert_eq!(got.1["error"]["code"], "not_found", "{list}{foreign}");
        }
        // Not of the documented form: malformed.
        for bad in ["", "a.b", "%2B%2F", &"A".repeat(1025)] {
            let got = app.get(ADMIN_TOKEN, &format!("{list}{bad}")).await;
            assert_error(&got, 400, Some(field));
        }
    }
    app.stop().await;
}

conformance!(an_unknown_status_conflicts_with_the_workspaces_statuses);

async fn an_unknown_status_conflicts_with_the_workspaces_statuses(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    app.version("acme", "m", json!({"version": "1.0.0"})).await;
    let version = "/api/v1/workspaces/acme/models/m/versions/1.0.0";
    // Production exists by default; a pending request for it does not stop another one.
    for _ in 0..2 {
        let got = app
            .post(
                ADMIN_TOKEN,
                &format!("{version}/status-requests"),
                json!({"status": "Production"}),
            )
            .await;
        assert_eq!(got.0.as_u16(), 201, "{}", got.1);
    }
    // Once the workspace no longer has it, asking for it conflicts with its statuses.
    let got = app
        .put(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/statuses",
            json!({"statuses": [{"name": "Staging", "reviewRequired": false}]}),
        )
        .await;
    assert_eq!(got.0.as_u16(), 200, "{}", got.1);
    let got = app
        .post(
            ADMIN_TOKEN,
            &format!("{version}/status-requests"),
            json!({"status": "Production"}),
        )
        .await;
    assert_error(&got, 409, Some("status"));
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Staging"),
        "{}",
        got.1
    );
    let got = app
        .put(
            ADMIN_TOKEN,
            &format!("{version}/status"),
            json!({"status": "Production"}),
        )
        .await;
    assert_error(&got, 409, Some("status"));
    let got = app
        .post(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/m/versions",
            json!({"version": "2.0.0", "status": "Production"}),
        )
        .await;
    assert_error(&got, 409, Some("status"));
    // A malformed status is still invalid, reported with the other bad fields.
    let got = app
        .post(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/m/versions",
            json!({"version": "v2", "status": ""}),
        )
        .await;
    assert_error(&got, 400, Some("version"));
    assert_eq!(got.1["error"]["errors"][1]["field"], "status", "{}", got.1);
    // Nothing was written by the refused requests.
    let (_, list) = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/acme/models/m/versions")
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    app.stop().await;
}
