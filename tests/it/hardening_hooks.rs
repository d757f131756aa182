//! Issue 12's webhook holes: a refused Comet request changes nothing, IPv6 forms of blocked
//! IPv4 addresses are refused, a receiver's headers are capped, and a stored secret never
//! follows the URL to another origin.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, Reply, TestApp, TestReceiver, assert_error};

const HOOKS: &str = "/api/v1/workspaces/acme/models/fraud/webhooks";
const COMET: &str = "/api/rest/v2/webhooks/config";

async fn setup(backend: Backend, tune: impl FnOnce(&mut berth::config::Settings)) -> TestApp {
    let app = TestApp::spawn_with(backend, tune).await;
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    app.model("acme", "other").await;
    app
}

fn hook(name: &str, url: &str) -> Value {
    json!({"name": name, "url": url, "triggers": ["MODEL_VERSION_CREATED"]})
}

fn comet_hook(name: &str, url: &str) -> Value {
    json!({"name": name, "url": url, "triggers": ["MODEL_VERSION_CREATED"]})
}

fn comet(model: &str, hooks: Vec<Value>) -> Value {
    json!({"workspaceName": "acme", "modelName": model, "webhookUrls": hooks})
}

async fn hooks_of(app: &TestApp, model: &str) -> Vec<Value> {
    let (s, b) = app
        .get(
            ADMIN_TOKEN,
            &format!("/api/v1/workspaces/acme/models/{model}/webhooks"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"].as_array().expect("items").clone()
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    let (s, b) = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/acme/audit?limit=500")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Item 4: a refused request changes nothing.

conformance!(a_refused_comet_request_changes_nothing);

/// 101 `webhookUrls` for a fresh model: 409 naming the list, and not one webhook (nor audit
/// row) is written. The same when the limit is passed by a later model of the request, or
/// together with updates; exactly 100 is accepted.
async fn a_refused_comet_request_changes_nothing(backend: Backend) {
    let app = setup(backend, |_| {}).await;
    let url = "http://127.0.0.1:9/h";
    let many = |n: usize, prefix: &str| -> Vec<Value> {
        (0..n)
            .map(|i| comet_hook(&format!("{prefix}{i}"), url))
            .collect()
    };
    let got = app
        .post(
            ADMIN_TOKEN,
            COMET,
            json!({"webhookConfigs": [comet("fraud", many(101, "h"))]}),
        )
        .await;
    assert_error(&got, 409, Some("webhookConfigs[0].webhookUrls"));
    assert!(got.1.to_string().contains("at most 100"), "{}", got.1);
    assert!(hooks_of(&app, "fraud").await.is_empty(), "nothing created");
    assert!(
        !audit_actions(&app)
            .await
            .iter()
            .any(|a| a.starts_with("webhook.")),
        "no audit row for a refused request"
    );

    // A valid first model and a second that passes the limit: neither is written.
    let got = app
        .post(
            ADMIN_TOKEN,
            COMET,
            json!({"webhookConfigs": [comet("other", many(3, "o")), comet("fraud", many(101, "h"))]}),
        )
        .await;
    assert_error(&got, 409, Some("webhookConfigs[1].webhookUrls"));
    assert!(hooks_of(&app, "other").await.is_empty());
    assert!(hooks_of(&app, "fraud").await.is_empty());

    // 99 exist; an update of one and two new ones: refused, and the update is not applied.
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            COMET,
            json!({"webhookConfigs": [comet("fraud", many(99, "h"))]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut batch = vec![comet_hook("h0", "http://127.0.0.1:10/changed")];
    batch.extend(many(2, "new"));
    let got = app
        .post(
            ADMIN_TOKEN,
            COMET,
            json!({"webhookConfigs": [comet("fraud", batch)]}),
        )
        .await;
    assert_error(&got, 409, Some("webhookConfigs[0].webhookUrls"));
    let hooks = hooks_of(&app, "fraud").await;
    assert_eq!(hooks.len(), 99);
    let h0 = hooks.iter().find(|h| h["name"] == "h0").expect("h0");
    assert_eq!(
        h0["url"], url,
        "the update of a refused request is not applied"
    );

    // A name twice in one request is refused before anything is written.
    let got = app
        .post(
            ADMIN_TOKEN,
            COMET,
            json!({"webhookConfigs": [comet("other", vec![comet_hook("x", url), comet_hook("x", url)])]}),
        )
        .await;
    assert_error(&got, 400, Some("webhookConfigs[0].webhookUrls[1].name"));
    assert!(hooks_of(&app, "other").await.is_empty());

    // Exactly 100 is accepted, with an update in the same request.
    let mut batch = vec![comet_hook("h0", "http://127.0.0.1:10/changed")];
    batch.extend(many(1, "new"));
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            COMET,
            json!({"webhookConfigs": [comet("fraud", batch)]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let hooks = hooks_of(&app, "fraud").await;
    assert_eq!(hooks.len(), 100);
    let h0 = hooks.iter().find(|h| h["name"] == "h0").expect("h0");
    assert_eq!(h0["url"], "http://127.0.0.1:10/changed");
    app.stop().await;
}

conformance!(concurrent_creates_cannot_pass_the_limit);

/// The limit is counted inside the writing transaction: 8 creates at once on a model with
/// 97 webhooks leave exactly 100.
async fn concurrent_creates_cannot_pass_the_limit(backend: Backend) {
    let app = setup(backend, |_| {}).await;
    let batch: Vec<Value> = (0..97)
        .map(|i| comet_hook(&format!("h{i}"), "http://127.0.0.1:9/h"))
        .collect();
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            COMET,
            json!({"webhookConfigs": [comet("fraud", batch)]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let calls = (0..8).map(|i| {
        app.post(
            ADMIN_TOKEN,
            HOOKS,
            hook(&format!("c{i}"), "http://127.0.0.1:9/c"),
        )
    });
    let answers = futures_util::future::join_all(calls).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    for got in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_error(got, 409, Some("name"));
    }
    assert_eq!(created, 3, "{answers:?}");
    assert_eq!(hooks_of(&app, "fraud").await.len(), 100);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Item 5: IPv6 forms of blocked IPv4 addresses.

/// The IPv6 forms of 127.0.0.1 (with `port`) that the guard must refuse.
fn loopback_in_disguise(port: u16) -> Vec<String> {
    [
        "[::ffff:0:127.0.0.1]",
        "[::ffff:0:7f00:1]",
        "[::ffff:127.0.0.1]",
        "[::127.0.0.1]",
        "[64:ff9b::127.0.0.1]",
        "[64:ff9b:1::7f00:1]",
        "[2002:7f00:1::1]",
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
    ]
    .iter()
    .map(|h| format!("http://{h}:{port}/hook"))
    .collect()
}

conformance!(ipv6_forms_of_loopback_are_refused_without_connecting);

/// With the guard as in production, every IPv6 form of 127.0.0.1 is a 400 on `url` when a
/// webhook is created, updated, configured through Comet or tested unsaved; a row saved
/// before the guard knew the form is refused by Test Webhook and by delivery as `blocked`,
/// before any connection: the loopback receiver on that port never hears from Berth.
async fn ipv6_forms_of_loopback_are_refused_without_connecting(backend: Backend) {
    let app = setup(backend, |s| {
        s.delivery.policy = berth::delivery::ssrf::TargetPolicy::default();
    })
    .await;
    let rx = TestReceiver::start().await;
    let port = rx.addr.port();
    // A webhook at a public-looking name, to update; it is never sent anything here.
    let (s, saved) = app
        .post(
            ADMIN_TOKEN,
            HOOKS,
            hook("saved", "https://hooks.example.com/x"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{saved}");
    let id = saved["id"].as_str().expect("id").to_owned();
    for url in loopback_in_disguise(port) {
        let got = app.post(ADMIN_TOKEN, HOOKS, hook("new", &url)).await;
        assert_error(&got, 400, Some("url"));
        assert!(
            got.1["error"]["message"].as_str().is_some_and(
                |m| m.contains("127.0.0.1") || m.contains("which webhooks may not reach")
            ),
            "{url}: {}",
            got.1
        );
        let got = app
            .put(ADMIN_TOKEN, &format!("{HOOKS}/{id}"), hook("saved", &url))
            .await;
        assert_error(&got, 400, Some("url"));
        let got = app
            .post(ADMIN_TOKEN, &format!("{HOOKS}/test"), json!({"url": url}))
            .await;
        assert_error(&got, 400, Some("url"));
        let got = app
            .post(
                ADMIN_TOKEN,
                COMET,
                json!({"webhookConfigs": [comet("fraud", vec![comet_hook("c", &url)])]}),
            )
            .await;
        assert_error(&got, 400, Some("webhookConfigs[0].webhookUrls[0].url"));
    }
    assert_eq!(
        hooks_of(&app, "fraud").await.len(),
        1,
        "nothing else was saved"
    );

    // A row stored before the guard knew this form (written past the API). The test's
    // database is fresh: the model's id is small.
    let mut found = None;
    for model_id in 1..=10 {
        found = app
            .store()
            .get_webhook(model_id, &id)
            .await
            .expect("lookup");
        if found.is_some() {
            break;
        }
    }
    let mut record = found.expect("the saved webhook");
    // Stored as saved before the check refused such addresses.
    record.url =
        berth::domain::WebhookUrl::stored(&format!("http://[::ffff:0:7f00:1]:{port}/hook"))
            .expect("a URL");
    assert!(
        app.store()
            .update_webhook(&record, "test")
            .await
            .expect("update")
    );
    let (s, b) = app
        .post_empty(ADMIN_TOKEN, &format!("{HOOKS}/{id}/test"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["success"], false, "{b}");
    assert_eq!(b["errorClass"], "blocked", "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "{b}"
    );
    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;
    let deliveries = format!("{HOOKS}/{id}/deliveries");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let (_, list) = app.get(ADMIN_TOKEN, &deliveries).await;
        if list["items"][0]["attemptCount"].as_i64().unwrap_or(0) >= 1 {
            break list["items"][0]["id"].as_str().expect("id").to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "no attempt: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, detail) = app
        .get(ADMIN_TOKEN, &format!("{deliveries}/{delivery}"))
        .await;
    assert_eq!(detail["attempts"][0]["errorClass"], "blocked", "{detail}");
    assert!(rx.received().is_empty(), "Berth connected to the receiver");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Item 8: a receiver's headers are capped.

/// The bytes of headers as counted by the cap: `name: value\r\n`.
fn header_bytes(headers: &Value) -> usize {
    headers
        .as_object()
        .expect("headers")
        .iter()
        .map(|(k, v)| k.len() + v.as_str().unwrap_or_default().len() + 4)
        .sum()
}

conformance!(a_receivers_headers_are_capped_and_the_cut_is_said);

/// A real loopback receiver answering with 95 headers of 3.8 KB (361 KB): Test Webhook's
/// answer and the attempt row keep at most 64 headers and 16 KiB, and say how many were left
/// out.
async fn a_receivers_headers_are_capped_and_the_cut_is_said(backend: Backend) {
    let app = setup(backend, |_| {}).await;
    let rx = TestReceiver::start().await;
    let mut reply = Reply::status(200).body("ok");
    for i in 0..95 {
        reply = reply.header(&format!("x-big-{i:02}"), &"a".repeat(3800));
    }
    rx.default_reply(reply);
    let url = format!("{}/hook", rx.url);

    let (s, b) = app
        .post(ADMIN_TOKEN, &format!("{HOOKS}/test"), json!({"url": url}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["success"], true, "{b}");
    let headers = &b["response"]["headers"];
    let kept = headers.as_object().expect("headers").len();
    assert!(kept <= 64, "{kept} headers kept");
    assert!(
        header_bytes(headers) <= 16 * 1024,
        "{}",
        header_bytes(headers)
    );
    let omitted = b["response"]["headersOmitted"]
        .as_u64()
        .expect("headersOmitted");
    assert!(
        kept as u64 + omitted >= 95,
        "kept {kept}, omitted {omitted}"
    );
    assert!(omitted >= 91, "{omitted}");
    assert!(b.to_string().len() < 32 * 1024, "the answer stays small");

    let (s, created) = app.post(ADMIN_TOKEN, HOOKS, hook("big", &url)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id");
    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;
    let deliveries = format!("{HOOKS}/{id}/deliveries");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let (_, list) = app.get(ADMIN_TOKEN, &deliveries).await;
        if list["items"][0]["state"] == "succeeded" {
            break list["items"][0]["id"].as_str().expect("id").to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (s, detail) = app
        .get(ADMIN_TOKEN, &format!("{deliveries}/{delivery}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{detail}");
    let attempt = &detail["attempts"][0];
    let headers = &attempt["responseHeaders"];
    assert!(headers.as_object().expect("headers").len() <= 64);
    assert!(header_bytes(headers) <= 16 * 1024);
    assert!(
        attempt["responseHeadersOmitted"].as_i64().expect("omitted") >= 91,
        "{attempt}"
    );
    assert!(
        detail.to_string().len() < 32 * 1024,
        "the attempt row stays small"
    );

    // A small answer is kept whole and says so.
    rx.default_reply(Reply::status(200).header("x-one", "1").body("ok"));
    let (_, b) = app
        .post(ADMIN_TOKEN, &format!("{HOOKS}/test"), json!({"url": url}))
        .await;
    assert_eq!(b["response"]["headersOmitted"], 0, "{b}");
    assert_eq!(b["response"]["headers"]["x-one"], "1", "{b}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Item 9: a stored secret never follows the URL to another origin.

conformance!(a_stored_secret_never_follows_the_url_to_another_origin);

/// When the URL's origin changes, the stored secret must be given again or removed in the
/// same request: PUT, Test Webhook (unsaved, with `webhookId`) and Comet's mask all refuse
/// with a 400 naming the secret's field, and the new host never receives the old secret.
/// A change within the origin keeps it, as does a webhook without a secret.
async fn a_stored_secret_never_follows_the_url_to_another_origin(backend: Backend) {
    let app = setup(backend, |_| {}).await;
    let old = TestReceiver::start().await;
    let new = TestReceiver::start().await;
    let old_url = format!("{}/hook", old.url);
    let new_url = format!("{}/hook", new.url);
    let mut body = hook("h", &old_url);
    body["secret"] = json!("s3cret-old");
    let (s, created) = app.post(ADMIN_TOKEN, HOOKS, body).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let one = format!("{HOOKS}/{id}");

    // PUT to another origin without the secret: refused, nothing changed.
    let got = app.put(ADMIN_TOKEN, &one, hook("h", &new_url)).await;
    assert_error(&got, 400, Some("secret"));
    let message = got.1["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&old.url) && message.contains(&new.url) && message.contains("secret"),
        "{message}"
    );
    let (_, now) = app.get(ADMIN_TOKEN, &one).await;
    assert_eq!(now["url"], old_url.as_str());
    // Another scheme, or the same host on another port, is another origin too.
    let https = old_url.replace("http://", "https://");
    assert_error(
        &app.put(ADMIN_TOKEN, &one, hook("h", &https)).await,
        400,
        Some("secret"),
    );

    // Test Webhook of the edited form, to the new origin, without the secret: refused.
    let got = app
        .post(
            ADMIN_TOKEN,
            &format!("{HOOKS}/test"),
            json!({"url": new_url, "webhookId": id}),
        )
        .await;
    assert_error(&got, 400, Some("secret"));

    // Comet: the mask keeps the secret only at the same origin.
    let masked = |url: &str| {
        json!({"webhookConfigs": [comet("fraud", vec![json!({
            "name": "h", "url": url, "triggers": ["MODEL_VERSION_CREATED"],
            "header": {"Authorization": "********"}})])]})
    };
    let got = app.post(ADMIN_TOKEN, COMET, masked(&new_url)).await;
    assert_error(
        &got,
        400,
        Some("webhookConfigs[0].webhookUrls[0].header.Authorization"),
    );
    assert!(new.received().is_empty(), "the new host heard nothing");

    // Within the origin, the secret is kept (native and Comet).
    let same = format!("{}/other/path?x=1", old.url);
    let (s, b) = app.put(ADMIN_TOKEN, &one, hook("h", &same)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["hasSecret"], true);
    let (s, b) = app.post(ADMIN_TOKEN, COMET, masked(&old_url)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app.post_empty(ADMIN_TOKEN, &format!("{one}/test")).await;
    assert_eq!((s, &b["success"]), (StatusCode::OK, &json!(true)), "{b}");
    let got = old.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(
        got[0].header("authorization").as_deref(),
        Some("s3cret-old")
    );

    // Given again, the secret moves with the URL; Test Webhook with a secret given works too.
    let got = app
        .post(
            ADMIN_TOKEN,
            &format!("{HOOKS}/test"),
            json!({"url": new_url, "webhookId": id, "secret": "s3cret-new"}),
        )
        .await;
    assert_eq!(got.1["success"], true, "{}", got.1);
    let mut body = hook("h", &new_url);
    body["secret"] = json!("s3cret-new");
    let (s, b) = app.put(ADMIN_TOKEN, &one, body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = app.post_empty(ADMIN_TOKEN, &format!("{one}/test")).await;
    assert_eq!(b["success"], true, "{b}");
    let got = new.wait_for(2, Duration::from_secs(5)).await;
    for r in &got {
        assert_eq!(r.header("authorization").as_deref(), Some("s3cret-new"));
    }

    // Removed (null) in the same request: allowed, and nothing is sent as Authorization.
    let mut body = hook("h", &old_url);
    body["secret"] = Value::Null;
    let (s, b) = app.put(ADMIN_TOKEN, &one, body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["hasSecret"], false);
    // Without a secret stored, the URL moves freely.
    let (s, b) = app.put(ADMIN_TOKEN, &one, hook("h", &new_url)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = app.post_empty(ADMIN_TOKEN, &format!("{one}/test")).await;
    assert_eq!(b["success"], true, "{b}");
    let got = new.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(got[2].header("authorization"), None);
    for r in new.received() {
        assert_ne!(r.header("authorization").as_deref(), Some("s3cret-old"));
    }
    app.stop().await;
}
