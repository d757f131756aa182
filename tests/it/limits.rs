//! Request limits: body size, header count and sizes, URI length, absurdly long strings in
//! every JSON field and path, the list `limit` cap, and the rate limits (per token, with the
//! web UI's session counted against its token; and failed authentications per address).
//! Every refusal is a 4xx in the API's error shape, never a 5xx or a hang.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, assert_error};

conformance!(absurd_strings_in_bodies_and_paths_are_4xx);

/// Far over every field's limit, far under the 1 MiB body limit.
fn long() -> String {
    "a".repeat(100_000)
}

/// A client that gives up instead of hanging.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

#[tokio::test]
async fn body_over_one_mebibyte_is_413() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let body =
        serde_json::to_vec(&json!({"name": "x", "pad": "x".repeat(1024 * 1024)})).expect("json");
    let got = app
        .call_raw(
            Method::POST,
            "/api/v1/workspaces",
            Some(ADMIN_TOKEN),
            Some("application/json"),
            body,
        )
        .await;
    assert_error(&got, 413, None);
    assert_eq!(got.1["error"]["code"], "payload_too_large");
    app.stop().await;
}

#[tokio::test]
async fn too_many_headers_are_431() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut req = client()
        .get(format!("{}/api/v1/me", app.base))
        .bearer_auth(ADMIN_TOKEN);
    for i in 0..150 {
        req = req.header(format!("x-extra-{i}"), "1");
    }
    let resp = req.send().await.expect("an answer, not a hang");
    // The HTTP server refuses over 100 headers itself, with a bare 431.
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // 90 headers are fine.
    let mut req = client()
        .get(format!("{}/api/v1/me", app.base))
        .bearer_auth(ADMIN_TOKEN);
    for i in 0..90 {
        req = req.header(format!("x-extra-{i}"), "1");
    }
    let resp = req.send().await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    app.stop().await;
}

/// Sends `GET target` over a bare TCP connection; answers the status line.
async fn raw_status(addr: std::net::SocketAddr, target: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Connection: close\r\n\r\n"
    );
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("an answer, not a hang");
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.expect("an answer, not a hang");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn huge_header_values_are_431_in_the_error_shape() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let url = format!("{}/api/v1/me", app.base);
    // One value over 8 KiB.
    let got = send(
        client()
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .header("x-big", "v".repeat(9 * 1024)),
    )
    .await;
    assert_error(&got, 431, None);
    assert_eq!(got.1["error"]["code"], "headers_too_large");
    // A huge token is refused the same way, before it is looked at.
    let got = send(client().get(&url).bearer_auth("t".repeat(200 * 1024))).await;
    assert_error(&got, 431, None);
    // Many mid-sized headers, over 64 KiB in all.
    let mut req = client().get(&url).bearer_auth(ADMIN_TOKEN);
    for i in 0..20 {
        req = req.header(format!("x-mid-{i}"), "m".repeat(4 * 1024));
    }
    let got = send(req).await;
    assert_error(&got, 431, None);
    // Past what the HTTP server buffers at all: still 431, without a body.
    let got = send(
        client()
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .header("x-huge", "h".repeat(1024 * 1024)),
    )
    .await;
    assert_eq!(got.0, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // A long but reasonable cookie is fine.
    let got = send(
        client()
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .header("cookie", format!("other={}", "c".repeat(4000))),
    )
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    app.stop().await;
}

#[tokio::test]
async fn huge_uris_are_414() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Over 8 KiB: answered in the error shape.
    let got = send(
        client()
            .get(format!(
                "{}/api/v1/workspaces/{}/models",
                app.base,
                "w".repeat(9 * 1024)
            ))
            .bearer_auth(ADMIN_TOKEN),
    )
    .await;
    assert_error(&got, 414, None);
    assert_eq!(got.1["error"]["code"], "uri_too_long");
    let got = send(
        client()
            .get(format!(
                "{}/api/v1/workspaces?cursor={}",
                app.base,
                "c".repeat(20 * 1024)
            ))
            .bearer_auth(ADMIN_TOKEN),
    )
    .await;
    assert_error(&got, 414, None);
    // Past what the HTTP server parses at all (64 KiB; no client library sends that): 414
    // without a body.
    let status = raw_status(app.addr, &format!("/{}", "p".repeat(100 * 1024))).await;
    assert!(status.starts_with("HTTP/1.1 414"), "{status}");
    // The web UI's paths are guarded too.
    let got = send(client().get(format!("{}/w/{}", app.base, "w".repeat(9 * 1024)))).await;
    assert_error(&got, 414, None);
    app.stop().await;
}

#[tokio::test]
async fn list_limit_is_capped() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.workspace("w").await;
    for q in ["501", "0", "-1", "99999999999999999999999", "1e3", "abc"] {
        let got = app
            .get(ADMIN_TOKEN, &format!("/api/v1/workspaces?limit={q}"))
            .await;
        assert_error(&got, 400, Some("limit"));
    }
    let (s, b) = app.get(ADMIN_TOKEN, "/api/v1/workspaces?limit=500").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let got = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/w/events?limit=100000")
        .await;
    assert_error(&got, 400, Some("limit"));
    app.stop().await;
}

/// Every string field of every request body, far too long; absurd paths and queries.
async fn absurd_strings_in_bodies_and_paths_are_4xx(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("w").await;
    app.model("w", "m").await;
    app.version("w", "m", json!({"version": "1.0.0"})).await;
    app.user("alice").await;
    let (s, hook) = app
        .post(
            ADMIN_TOKEN,
            "/api/v1/workspaces/w/models/m/webhooks",
            json!({"name": "h", "url": "http://127.0.0.1:9/hook", "triggers": ["MODEL_VERSION_CREATED"], "enabled": false}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let hook_id = hook["id"].as_str().expect("id").to_owned();
    let l = long();
    let long_url = format!("http://127.0.0.1:9/{l}");
    let hook_body = |overrides: Value| {
        let mut b = json!({"name": "h2", "url": "http://127.0.0.1:9/hook",
                           "triggers": ["MODEL_VERSION_CREATED"]});
        if let (Some(b), Some(o)) = (b.as_object_mut(), overrides.as_object()) {
            for (k, v) in o {
                b.insert(k.clone(), v.clone());
            }
        }
        b
    };
    let many_headers: serde_json::Map<String, Value> =
        (0..1000).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let many_tags: Vec<String> = (0..5000).map(|i| format!("t{i}")).collect();
    let hooks = "/api/v1/workspaces/w/models/m/webhooks";
    let cases: Vec<(Method, String, Value, Option<&str>)> = vec![
        (
            Method::POST,
            "/api/v1/users".into(),
            json!({"username": l}),
            Some("username"),
        ),
        (
            Method::POST,
            "/api/v1/workspaces".into(),
            json!({"name": l}),
            Some("name"),
        ),
        (
            Method::PUT,
            "/api/v1/workspaces/w/statuses".into(),
            json!({"statuses": [{"name": l, "reviewRequired": false}]}),
            None,
        ),
        (
            Method::PUT,
            "/api/v1/workspaces/w/members/alice".into(),
            json!({"role": l}),
            Some("role"),
        ),
        (
            Method::POST,
            "/api/v1/workspaces/w/models".into(),
            json!({"name": l}),
            Some("name"),
        ),
        (
            Method::POST,
            "/api/v1/workspaces/w/models".into(),
            json!({"name": "ok", "description": l}),
            Some("description"),
        ),
        (
            Method::PATCH,
            "/api/v1/workspaces/w/models/m".into(),
            json!({"description": l}),
            Some("description"),
        ),
        (
            Method::PATCH,
            "/api/v1/workspaces/w/models/m".into(),
            json!({"name": l}),
            Some("name"),
        ),
        (
            Method::POST,
            "/api/v1/workspaces/w/models/m/versions".into(),
            json!({"version": l}),
            Some("version"),
        ),
        (
            Method::POST,
            "/api/v1/workspaces/w/models/m/versions".into(),
            json!({"version": format!("1.0.0-{l}")}),
            Some("version"),
        ),
        (
            Method::POST,
            "/api/v1/workspaces/w/models/m/versions".into(),
            json!({"version": "2.0.0", "tags": [l]}),
            Some("tags[0]"),
        ),
        (
            Method::POST,
            "/api/v1/workspaces/w/models/m/versions".into(),
            json!({"version": "2.0.0", "tags": many_tags}),
            Some("tags"),
        ),
        (
            Method::POST,
            "/api/v1/workspaces/w/models/m/versions".into(),
            json!({"version": "2.0.0", "description": l}),
            Some("description"),
        ),
        (
            Method::POST,
            "/api/v1/workspaces/w/models/m/versions".into(),
            json!({"version": "2.0.0", "sourceExperimentKey": l}),
            Some("sourceExperimentKey"),
        ),
        (
            Method::POST,
            "/api/v1/workspaces/w/models/m/versions".into(),
            json!({"version": "2.0.0", "status": l}),
            None,
        ),
        (
            Method::PATCH,
            "/api/v1/workspaces/w/models/m/versions/1.0.0/tags".into(),
            json!({"add": [l]}),
            None,
        ),
        (
            Method::PATCH,
            "/api/v1/workspaces/w/models/m/versions/1.0.0/tags".into(),
            json!({"remove": [l]}),
            None,
        ),
        (
            Method::PUT,
            "/api/v1/workspaces/w/models/m/versions/1.0.0/status".into(),
            json!({"status": l}),
            None,
        ),
        (
            Method::POST,
            "/api/v1/workspaces/w/models/m/versions/1.0.0/status-requests".into(),
            json!({"status": "Production", "comment": l}),
            Some("comment"),
        ),
        (
            Method::POST,
            hooks.into(),
            hook_body(json!({"name": l})),
            Some("name"),
        ),
        (
            Method::POST,
            hooks.into(),
            hook_body(json!({"url": long_url})),
            Some("url"),
        ),
        (
            Method::POST,
            hooks.into(),
            hook_body(json!({"secret": l})),
            Some("secret"),
        ),
        (
            Method::POST,
            hooks.into(),
            hook_body(json!({"triggers": [l]})),
            None,
        ),
        (
            Method::POST,
            hooks.into(),
            hook_body(json!({"headers": {l.clone(): "v"}})),
            None,
        ),
        (
            Method::POST,
            hooks.into(),
            hook_body(json!({"headers": {"X-Team": l}})),
            None,
        ),
        (
            Method::POST,
            hooks.into(),
            hook_body(json!({"headers": many_headers})),
            Some("headers"),
        ),
        (
            Method::PUT,
            format!("{hooks}/{hook_id}"),
            hook_body(json!({"url": long_url})),
            Some("url"),
        ),
        (
            Method::POST,
            format!("{hooks}/test"),
            json!({"url": long_url}),
            Some("url"),
        ),
        (
            Method::POST,
            format!("{hooks}/test"),
            json!({"url": "http://127.0.0.1:9/hook", "webhookId": l}),
            None,
        ),
        (
            Method::POST,
            format!("{hooks}/{hook_id}/replay"),
            json!({"since": l}),
            Some("since"),
        ),
        (
            Method::POST,
            "/api/rest/v2/webhooks/config".into(),
            json!({"webhookConfigs": [{"workspaceName": "w", "modelName": "m",
                "webhookUrls": [{"name": "c", "url": long_url, "triggers": ["MODEL_VERSION_CREATED"]}]}]}),
            None,
        ),
        (
            Method::POST,
            "/api/rest/v2/webhooks/config".into(),
            json!({"webhookConfigs": [{"workspaceName": "w", "modelName": "m",
                "webhookUrls": [{"name": l, "url": "http://127.0.0.1:9/c", "triggers": ["MODEL_VERSION_CREATED"]}]}]}),
            None,
        ),
        (
            Method::POST,
            "/api/rest/v2/webhooks/config".into(),
            json!({"webhookConfigs": [{"workspaceName": "w", "modelName": "m",
                "webhookUrls": [{"name": "c", "url": "http://127.0.0.1:9/c",
                    "triggers": ["MODEL_VERSION_CREATED"], "header": {"Authorization": l, "X-A": l}}]}]}),
            None,
        ),
        (
            Method::POST,
            "/api/rest/v2/webhooks/config".into(),
            json!({"webhookConfigs": [{"workspaceName": l, "modelName": l, "webhookUrls": []}]}),
            None,
        ),
    ];
    for (method, path, body, field) in cases {
        let got = app
            .call(method.clone(), &path, Some(ADMIN_TOKEN), Some(body))
            .await;
        assert!(
            got.0.is_client_error(),
            "{method} {path}: expected a 4xx, got {} {}",
            got.0,
            got.1
        );
        assert_error(&got, got.0.as_u16(), field);
    }
    // Deeply nested JSON.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let got = app
        .call_raw(
            Method::POST,
            "/api/v1/workspaces",
            Some(ADMIN_TOKEN),
            Some("application/json"),
            deep.into_bytes(),
        )
        .await;
    assert_error(&got, 400, None);
    // Long path segments and queries, under the URI limit: 404 or 400, never 5xx.
    let seg = "s".repeat(7000);
    for path in [
        format!("/api/v1/workspaces/{seg}"),
        format!("/api/v1/workspaces/w/models/{seg}/versions"),
        format!("/api/v1/workspaces/w/models/m/versions/{seg}"),
        format!("/api/v1/workspaces/w/models/m/webhooks/{seg}"),
        format!("/api/v1/workspaces/w/models/m/webhooks/{hook_id}/deliveries/{seg}"),
        format!("/api/v1/workspaces/w/status-requests/{seg}"),
        format!("/api/v1/users/{seg}/tokens"),
        format!("/api/v1/workspaces/w/events?after={seg}"),
        format!("/api/v1/workspaces/w/models?cursor={seg}"),
        format!("/api/rest/v2/webhooks/config?workspaceName={seg}&modelName=m"),
    ] {
        let got = app.get(ADMIN_TOKEN, &path).await;
        assert!(
            got.0 == StatusCode::NOT_FOUND || got.0 == StatusCode::BAD_REQUEST,
            "GET {}…: {} {}",
            &path[..60],
            got.0,
            got.1
        );
        assert_error(&got, got.0.as_u16(), None);
    }
    let got = app
        .call(
            Method::DELETE,
            &format!("/api/v1/users/alice/tokens/{seg}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_error(&got, 404, None);
    app.stop().await;
}

/// A token with a budget of `burst` requests, refilled at one per second.
async fn limited_app(burst: u32) -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, |s| {
        s.rate_limit = berth::config::RateLimitSettings {
            per_second: 1,
            burst,
            auth_failures_per_minute: 0,
        };
    })
    .await
}

#[track_caller]
fn assert_rate_limited(resp_status: StatusCode, retry_after: Option<&str>, body: &Value) {
    assert_eq!(resp_status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    let secs: u64 = retry_after
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&secs), "Retry-After: {secs}");
}

async fn get_with_headers(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>, Value) {
    let mut req = app.client.get(format!("{}{path}", app.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, retry, body)
}

#[tokio::test]
async fn per_token_rate_limit_answers_429_with_retry_after() {
    let app = limited_app(5).await;
    let alice = app.user("alice").await;
    let bearer = format!("Bearer {alice}");
    for i in 0..5 {
        let (s, _, b) = get_with_headers(&app, "/api/v1/me", &[("authorization", &bearer)]).await;
        assert_eq!(s, StatusCode::OK, "request {i}: {b}");
    }
    let (s, retry, b) = get_with_headers(&app, "/api/v1/me", &[("authorization", &bearer)]).await;
    assert_rate_limited(s, retry.as_deref(), &b);
    // The Comet routes count against the same token, with a bare token too.
    let (s, retry, b) = get_with_headers(
        &app,
        "/api/rest/v2/webhooks/config?workspaceName=w&modelName=m",
        &[("authorization", &alice)],
    )
    .await;
    assert_rate_limited(s, retry.as_deref(), &b);
    // Another token has its own budget (creating alice took 2 of the admin's 5).
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let (s, _, b) = get_with_headers(&app, "/api/v1/me", &[("authorization", &admin)]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Health checks are not limited.
    for _ in 0..20 {
        let (s, _, _) = get_with_headers(&app, "/healthz", &[]).await;
        assert_eq!(s, StatusCode::OK);
    }
    // After the wait, the token works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _, b) = get_with_headers(&app, "/api/v1/me", &[("authorization", &bearer)]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    app.stop().await;
}

#[tokio::test]
async fn a_session_counts_against_its_token() {
    let app = limited_app(4).await;
    let alice = app.user("alice").await;
    let session = format!("berth_session={}", app.sign_in(&alice).await);
    let bearer = format!("Bearer {alice}");
    // The sign-in, one request with the token and two with the session: the budget of 4 is
    // spent (signing in authenticates the token, so it counts too).
    for headers in [
        [("authorization", bearer.as_str())],
        [("cookie", session.as_str())],
        [("cookie", session.as_str())],
    ] {
        let (s, _, b) = get_with_headers(&app, "/api/v1/me", &headers).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, retry, b) = get_with_headers(&app, "/api/v1/me", &[("cookie", &session)]).await;
    assert_rate_limited(s, retry.as_deref(), &b);
    let (s, retry, b) = get_with_headers(&app, "/api/v1/me", &[("authorization", &bearer)]).await;
    assert_rate_limited(s, retry.as_deref(), &b);
    app.stop().await;
}

#[tokio::test]
async fn failed_authentications_are_limited_per_address() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.rate_limit = berth::config::RateLimitSettings {
            per_second: 0,
            burst: 0,
            auth_failures_per_minute: 3,
        };
    })
    .await;
    // A missing token is a plain 401 and costs nothing.
    for _ in 0..5 {
        let got = app.call(Method::GET, "/api/v1/me", None, None).await;
        assert_error(&got, 401, None);
    }
    for i in 0..3 {
        let got = app
            .call(Method::GET, "/api/v1/me", Some("berth_wrong_token"), None)
            .await;
        assert_error(&got, 401, None);
        assert_eq!(got.1["error"]["code"], "unauthorized", "attempt {i}");
    }
    let bad = "Bearer berth_wrong_token";
    let (s, retry, b) = get_with_headers(&app, "/api/v1/me", &[("authorization", bad)]).await;
    assert_rate_limited(s, retry.as_deref(), &b);
    // While the address waits, its tokens are not even looked at, good ones included.
    let good = format!("Bearer {ADMIN_TOKEN}");
    let (s, retry, b) = get_with_headers(&app, "/api/v1/me", &[("authorization", &good)]).await;
    assert_rate_limited(s, retry.as_deref(), &b);
    // The web UI's sign-in form answers 429 too.
    let resp = app
        .client
        .post(format!("{}/login", app.base))
        .header("cookie", "berth_login_csrf=x")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=berth_wrong_token&csrf=x")
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}

#[tokio::test]
async fn the_test_harness_is_not_throttled() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for _ in 0..400 {
        let (s, b) = app.get(ADMIN_TOKEN, "/api/v1/me").await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    app.stop().await;
}

conformance!(nul_characters_are_400_never_500);

/// PostgreSQL's text cannot hold NUL, so NUL anywhere a client can put it is refused with a
/// 400 naming where, on both databases alike; a receiver answering with NUL in its body is
/// recorded, not retried forever.
async fn nul_characters_are_400_never_500(backend: Backend) {
    use base64::Engine;
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let versions = "/api/v1/workspaces/acme/models/m/versions";
    let got = app
        .post(
            ADMIN_TOKEN,
            versions,
            json!({"version": "1.0.0", "description": "a\u{0}b"}),
        )
        .await;
    assert_error(&got, 400, Some("description"));
    let got = app
        .post(
            ADMIN_TOKEN,
            versions,
            json!({"version": "1.0.0", "tags": ["ok", "b\u{0}"]}),
        )
        .await;
    assert_error(&got, 400, Some("tags[1]"));
    let got = app.get(ADMIN_TOKEN, "/api/v1/workspaces/a%00b").await;
    assert_error(&got, 400, Some("path"));
    let got = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/acme/models/m%00/versions")
        .await;
    assert_error(&got, 400, Some("path"));
    let got = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/acme/models?name=%00")
        .await;
    assert_error(&got, 400, Some("query"));
    // A well-formed cursor holding NUL is one this server never handed out: 404 naming it
    // (as any foreign cursor), never a 500.
    for cursor in [r#"{"s":"\u0000","i":1}"#, r#"{"k":"\u0000","i":1}"#] {
        let c = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cursor);
        let got = app
            .get(ADMIN_TOKEN, &format!("{versions}?cursor={c}"))
            .await;
        assert_error(&got, 404, Some("cursor"));
    }
    // Nothing above was written.
    let (_, list) = app.get(ADMIN_TOKEN, versions).await;
    assert_eq!(list["items"], json!([]));

    // A receiver's answer with NUL in it is stored (NUL shown as U+FFFD) and the delivery
    // succeeds once.
    let rx = crate::helpers::TestReceiver::start().await;
    rx.default_reply(crate::helpers::Reply::status(200).body("ok\u{0}ok"));
    let hooks = "/api/v1/workspaces/acme/models/m/webhooks";
    let (s, hook) = app
        .post(
            ADMIN_TOKEN,
            hooks,
            json!({"name": "nul", "url": format!("{}/nul", rx.url),
                   "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let id = hook["id"].as_str().expect("id");
    app.version("acme", "m", json!({"version": "2.0.0"})).await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let (_, list) = app
            .get(ADMIN_TOKEN, &format!("{hooks}/{id}/deliveries"))
            .await;
        let first = list["items"][0].clone();
        if first["state"] == "succeeded" {
            break first;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the delivery was not recorded: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let did = delivery["id"].as_str().expect("delivery id");
    let (s, detail) = app
        .get(ADMIN_TOKEN, &format!("{hooks}/{id}/deliveries/{did}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{detail}");
    assert!(
        detail.to_string().contains("ok\u{FFFD}ok"),
        "the body is kept with NUL replaced: {detail}"
    );
    // Recorded as succeeded, once; nothing is in flight or left to send.
    assert_eq!(detail["attemptCount"], 1, "{detail}");
    app.drain().await;
    assert_eq!(app.pending_deliveries().await, 0, "it is to be sent again");
    assert_eq!(rx.received().len(), 1, "sent once, not again and again");
    app.stop().await;
}

conformance!(webhooks_per_model_and_tokens_per_user_are_capped);

/// The lists that are answered whole stay short: at most 100 webhooks per model and 100
/// unrevoked tokens per user; one more is a 409 that says what to do, and making room works.
async fn webhooks_per_model_and_tokens_per_user_are_capped(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let hooks = "/api/v1/workspaces/acme/models/m/webhooks";
    let body = |i: usize| {
        json!({"name": format!("h{i}"), "url": "http://127.0.0.1:9/h",
               "triggers": ["MODEL_VERSION_CREATED"], "enabled": false})
    };
    let mut last = String::new();
    for i in 0..100 {
        let (s, b) = app.post(ADMIN_TOKEN, hooks, body(i)).await;
        assert_eq!(s, StatusCode::CREATED, "webhook {i}: {b}");
        last = b["id"].as_str().expect("id").to_owned();
    }
    let got = app.post(ADMIN_TOKEN, hooks, body(100)).await;
    assert_error(&got, 409, Some("name"));
    assert!(got.1.to_string().contains("at most 100"), "{}", got.1);
    let (s, _) = app.delete(ADMIN_TOKEN, &format!("{hooks}/{last}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = app.post(ADMIN_TOKEN, hooks, body(100)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // `user` creates alice with one token.
    let alice = app.user("alice").await;
    let tokens = "/api/v1/users/alice/tokens";
    let mut last = String::new();
    for i in 1..100 {
        let (s, b) = app.post_empty(&alice, tokens).await;
        assert_eq!(s, StatusCode::CREATED, "token {i}: {b}");
        last = b["id"].as_str().expect("id").to_owned();
    }
    let got = app.post_empty(&alice, tokens).await;
    assert_error(&got, 409, None);
    assert!(got.1.to_string().contains("revoke one first"), "{}", got.1);
    let (s, _) = app.delete(&alice, &format!("{tokens}/{last}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = app.post_empty(&alice, tokens).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    app.stop().await;
}
