//! The shape of bad-input answers: a body must be a JSON object, a malformed body is blamed on
//! no field (with its position), and every bad field of a request is listed in `errors`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, assert_error};

conformance!(
    a_body_that_is_not_an_object_is_refused,
    a_malformed_body_is_blamed_on_no_field,
    every_bad_field_is_reported_at_once,
);

/// The fields of `errors`, in order; also checks that the first is `field` and `message`.
#[track_caller]
fn error_fields(got: &(StatusCode, Value)) -> Vec<String> {
    assert_error(got, 400, None);
    let err = &got.1["error"];
    let list = err["errors"].as_array().expect("error.errors");
    assert!(!list.is_empty(), "{}", got.1);
    assert_eq!(list[0]["field"], err["field"], "{}", got.1);
    assert_eq!(list[0]["message"], err["message"], "{}", got.1);
    for e in list {
        assert!(e["message"].is_string(), "{}", got.1);
    }
    list.iter()
        .map(|e| e["field"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn raw(app: &TestApp, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
    app.call_raw(
        method,
        path,
        Some(ADMIN_TOKEN),
        Some("application/json"),
        body.as_bytes().to_vec(),
    )
    .await
}

/// `["9.9.1", ["arr-tag"], null, null, "x"]` would fill `VersionIn` field by field; every
/// request body is an object, so arrays (and other non-objects) are 400 and change nothing.
async fn a_body_that_is_not_an_object_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let versions = "/api/v1/workspaces/acme/models/m/versions";
    let cases: [(Method, &str, &str); 7] = [
        (
            Method::POST,
            versions,
            r#"["9.9.1",["arr-tag"],null,null,"created from a JSON array"]"#,
        ),
        (Method::POST, "/api/v1/workspaces", r#"["arrws"]"#),
        (
            Method::PATCH,
            "/api/v1/workspaces/acme/models/m",
            "[null,null]",
        ),
        (Method::POST, "/api/v1/users", r#"["arruser"]"#),
        (
            Method::POST,
            "/api/v1/workspaces/acme/models",
            r#"["arrmodel", "d"]"#,
        ),
        (
            Method::POST,
            "/api/v1/workspaces/acme/models/m/webhooks",
            r#"["h","http://127.0.0.1:9/",null,["MODEL_VERSION_CREATED"],null,null,null]"#,
        ),
        (
            Method::PUT,
            "/api/v1/workspaces/acme/statuses",
            r#"[[{"name": "x", "reviewRequired": false}]]"#,
        ),
    ];
    for (method, path, body) in cases {
        let got = raw(&app, method.clone(), path, body).await;
        assert_error(&got, 400, None);
        let err = &got.1["error"];
        assert!(err.get("field").is_none(), "{method} {path}: {}", got.1);
        assert_eq!(
            err["message"], "the request body must be a JSON object, not an array",
            "{method} {path}"
        );
    }
    for (body, kind) in [
        ("\"9.9.1\"", "a string"),
        ("5", "a number"),
        ("null", "null"),
        ("true", "a boolean"),
    ] {
        let got = raw(&app, Method::POST, versions, body).await;
        assert_error(&got, 400, None);
        assert_eq!(
            got.1["error"]["message"],
            format!("the request body must be a JSON object, not {kind}")
        );
    }
    // Nothing was created or changed.
    let (_, list) = app.get(ADMIN_TOKEN, versions).await;
    assert_eq!(list["items"], json!([]), "{list}");
    let (s, _) = app.get(ADMIN_TOKEN, "/api/v1/workspaces/arrws").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/acme/models/arrmodel")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, hooks) = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/acme/models/m/webhooks")
        .await;
    assert_eq!(hooks["items"], json!([]), "{hooks}");
    let (_, model) = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/acme/models/m")
        .await;
    assert_eq!(model["name"], "m");
    // An object is still fine.
    app.version("acme", "m", json!({"version": "9.9.1"})).await;
    app.stop().await;
}

/// A body cut short is not a bad `version`: no field is blamed, and the message says where the
/// document broke.
async fn a_malformed_body_is_blamed_on_no_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let versions = "/api/v1/workspaces/acme/models/m/versions";
    for (body, position) in [
        (r#"{"version": "1.0"#, "line 1 column 16"),
        (r#"{"version": "1.0.0", "tags": ["a""#, "line 1 column 33"),
        ("{\"version\": 1.0.0}", "line 1 column 16"),
        (
            "{\n  \"version\": \"1.0.0\",\n  \"tags\": [x]\n}",
            "line 3 column 12",
        ),
    ] {
        let got = raw(&app, Method::POST, versions, body).await;
        assert_error(&got, 400, None);
        let err = &got.1["error"];
        assert!(err.get("field").is_none(), "{body}: {}", got.1);
        let message = err["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("the request body is not valid JSON") && message.contains(position),
            "{body}: {message}"
        );
        assert_eq!(err["errors"].as_array().map(Vec::len), Some(1), "{}", got.1);
    }
    let got = raw(&app, Method::POST, versions, r#"{"version": "1.0"#).await;
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ends too early")),
        "{}",
        got.1
    );
    let (_, list) = app.get(ADMIN_TOKEN, versions).await;
    assert_eq!(list["items"], json!([]), "{list}");
    app.stop().await;
}

/// A request with several bad fields names all of them in `errors`, the first also as
/// `field`/`message`; nothing is written.
async fn every_bad_field_is_reported_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let hooks = "/api/v1/workspaces/acme/models/m/webhooks";

    // Webhooks: a bad URL and a bad trigger (and a bad header), on create and on update.
    let bad_hook = json!({
        "name": "h",
        "url": "not a url",
        "triggers": ["NOPE"],
        "headers": {"Bad Header": "x"},
    });
    let got = app.post(ADMIN_TOKEN, hooks, bad_hook.clone()).await;
    assert_eq!(
        error_fields(&got),
        ["url", "triggers[0]", "headers.Bad Header"],
        "{}",
        got.1
    );
    assert_eq!(got.1["error"]["field"], "url");
    let (_, list) = app.get(ADMIN_TOKEN, hooks).await;
    assert_eq!(list["items"], json!([]), "{list}");
    let (s, hook) = app
        .post(
            ADMIN_TOKEN,
            hooks,
            json!({"name": "h", "url": "http://127.0.0.1:9/", "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let one = format!("{hooks}/{}", hook["id"].as_str().unwrap_or_default());
    let got = app
        .put(
            ADMIN_TOKEN,
            &one,
            json!({"name": "", "url": "ftp://127.0.0.1/", "triggers": []}),
        )
        .await;
    assert_eq!(error_fields(&got), ["name", "url", "triggers"], "{}", got.1);
    let (_, same) = app.get(ADMIN_TOKEN, &one).await;
    assert_eq!(same["name"], "h");
    assert_eq!(same["url"], "http://127.0.0.1:9/");

    // Versions: a bad number, an empty experiment key, a control character in the
    // description and a malformed status (a well-formed unknown one is a 409, checked only
    // once the request is well-formed).
    let versions = "/api/v1/workspaces/acme/models/m/versions";
    let got = app
        .post(
            ADMIN_TOKEN,
            versions,
            json!({
                "version": "v1",
                "tags": ["ok"],
                "sourceExperimentKey": "",
                "description": "bell \u{7}",
                "status": " NoSuchStatus",
            }),
        )
        .await;
    assert_eq!(
        error_fields(&got),
        ["version", "sourceExperimentKey", "description", "status"],
        "{}",
        got.1
    );
    // Fields of the wrong type, unknown or missing: all of them, too.
    let got = app
        .post(
            ADMIN_TOKEN,
            versions,
            json!({"version": 1, "tags": "x", "bogus": true}),
        )
        .await;
    // (`json!` sends the members in name order.)
    let mut fields = error_fields(&got);
    fields.sort();
    assert_eq!(fields, ["bogus", "tags", "version"], "{}", got.1);
    let (_, list) = app.get(ADMIN_TOKEN, versions).await;
    assert_eq!(list["items"], json!([]), "{list}");

    // Tags: both lists bad.
    app.version("acme", "m", json!({"version": "1.0.0"})).await;
    let got = app
        .patch(
            ADMIN_TOKEN,
            &format!("{versions}/1.0.0/tags"),
            json!({"add": [""], "remove": ["a\u{1}"]}),
        )
        .await;
    let fields = error_fields(&got);
    assert_eq!(fields.len(), 2, "{}", got.1);
    assert!(
        fields[0].starts_with("add") && fields[1].starts_with("remove"),
        "{fields:?}"
    );

    // Models: a bad name and a bad description, on create and on rename.
    let got = app
        .post(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models",
            json!({"name": "", "description": "x".repeat(5001)}),
        )
        .await;
    assert_eq!(error_fields(&got), ["name", "description"], "{}", got.1);
    let got = app
        .patch(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/m",
            json!({"name": "a/b", "description": "nul-free but \u{1b}"}),
        )
        .await;
    assert_eq!(error_fields(&got), ["name", "description"], "{}", got.1);
    let (_, model) = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/acme/models/m")
        .await;
    assert_eq!(model["description"], "");

    // Members: a bad role and a bad user name (from the path).
    let got = app
        .put(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/members/-bad",
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(error_fields(&got), ["role", "username"], "{}", got.1);

    // Statuses: every bad name.
    let got = app
        .put(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/statuses",
            json!({"statuses": [
                {"name": "", "reviewRequired": false},
                {"name": "Fine", "reviewRequired": false},
                {"name": "Fine", "reviewRequired": true},
                {"name": " x", "reviewRequired": false},
            ]}),
        )
        .await;
    assert_eq!(
        error_fields(&got),
        ["statuses[0].name", "statuses[3].name"],
        "{}",
        got.1
    );

    // Comet's configuration: every bad field of every webhook.
    let got = app
        .post(
            ADMIN_TOKEN,
            "/api/rest/v2/webhooks/config",
            json!({"webhookConfigs": [{"workspaceName": "acme", "modelName": "m", "webhookUrls": [
                {"name": "a", "url": "nope", "triggers": ["MODEL_VERSION_CREATED"]},
                {"name": "b", "url": "http://127.0.0.1:9/", "triggers": ["X"],
                 "header": {"Content-Type": "text/plain"}},
            ]}]}),
        )
        .await;
    assert_eq!(
        error_fields(&got),
        [
            "webhookConfigs[0].webhookUrls[0].url",
            "webhookConfigs[0].webhookUrls[1].triggers[0]",
            "webhookConfigs[0].webhookUrls[1].header.Content-Type",
        ],
        "{}",
        got.1
    );
    let (_, list) = app.get(ADMIN_TOKEN, hooks).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");

    // One bad field: `errors` still lists it, alone.
    let got = app
        .post(ADMIN_TOKEN, versions, json!({"version": "v2"}))
        .await;
    assert_eq!(error_fields(&got), ["version"], "{}", got.1);
    app.stop().await;
}
