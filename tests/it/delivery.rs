//! Delivery end to end: payloads, signatures, GitHub mode, retries, log, redelivery, isolation, crash safety.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, Received, Reply, TestApp, TestReceiver, assert_error};
use crate::process::{Db, Server};

const ALL_TRIGGERS: [&str; 5] = [
    "MODEL_VERSION_CREATED",
    "MODEL_VERSION_DELETED",
    "MODEL_TAG_CHANGED",
    "MODEL_STATUS_CHANGED",
    "MODEL_STATUS_CHANGE_REQUESTED",
];

const HOOKS: &str = "/api/v1/workspaces/acme/models/fraud/webhooks";

fn schedule(text: &str) -> berth::delivery::schedule::RetrySchedule {
    berth::delivery::schedule::RetrySchedule::parse(text).unwrap()
}

/// Creates a webhook on acme/fraud; answers its id.
async fn create_hook(app: &TestApp, body: Value) -> String {
    create_hook_on(app, HOOKS, body).await
}

async fn create_hook_on(app: &TestApp, path: &str, body: Value) -> String {
    let (s, b) = app.post(ADMIN_TOKEN, path, body).await;
    assert_eq!(s, StatusCode::CREATED, "create webhook: {b}");
    b["id"].as_str().expect("webhook id").to_owned()
}

async fn signing_key(app: &TestApp, hook: &str) -> String {
    let (s, b) = app
        .get(ADMIN_TOKEN, &format!("{HOOKS}/{hook}/signing-secret"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["key"].as_str().expect("key").to_owned()
}

/// The delivery log of a webhook, one page.
async fn deliveries(app: &TestApp, hook: &str, query: &str) -> Value {
    let (s, b) = app
        .get(ADMIN_TOKEN, &format!("{HOOKS}/{hook}/deliveries{query}"))
        .await;
    assert_eq!(s, StatusCode::OK, "deliveries{query}: {b}");
    b
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().expect("items").clone()
}

async fn delivery(app: &TestApp, hook: &str, id: &str) -> Value {
    let (s, b) = app
        .get(ADMIN_TOKEN, &format!("{HOOKS}/{hook}/deliveries/{id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "delivery {id}: {b}");
    b
}

/// Polls the log until every delivery of `hook` is finished (none pending) and there are at
/// least `n`; answers the items.
async fn wait_settled(app: &TestApp, hook: &str, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = items(&deliveries(app, hook, "?limit=500").await);
        if all.len() >= n && all.iter().all(|d| d["state"] != "pending") {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries did not settle within {timeout:?}: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls one delivery until it is in `state`.
async fn wait_delivery_state(
    app: &TestApp,
    hook: &str,
    id: &str,
    state: &str,
    timeout: Duration,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let d = delivery(app, hook, id).await;
        if d["state"] == state {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "delivery {id} is not {state} within {timeout:?}: {d:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks `webhook-signature` twice: with the standardwebhooks crate and with an HMAC computed
/// here from the `whsec_` key.
#[track_caller]
fn verify_signature(key: &str, r: &Received) {
    let wh = standardwebhooks::Webhook::new(key).expect("whsec key");
    let mut headers = axum::http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let v = r
            .header(name)
            .unwrap_or_else(|| panic!("{name} header missing"));
        headers.insert(name, v.parse().unwrap());
    }
    wh.verify(&r.body, &headers)
        .expect("standardwebhooks verifies the signature");

    let id = r.header("webhook-id").unwrap();
    let ts = r.header("webhook-timestamp").unwrap();
    let ts_n: i64 = ts.parse().expect("webhook-timestamp is an integer");
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - ts_n).abs() < 120,
        "webhook-timestamp {ts_n} is not now ({now})"
    );
    let raw = STANDARD
        .decode(key.strip_prefix("whsec_").expect("key starts with whsec_"))
        .expect("key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&raw).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let sig = r.header("webhook-signature").unwrap();
    assert!(
        sig.split(' ').any(|s| s == expected),
        "webhook-signature {sig} does not contain {expected}"
    );
}

/// The body is compact JSON: as long as serde's compact form of the same value.
#[track_caller]
fn assert_compact(r: &Received) {
    let v = r.json();
    assert_eq!(
        r.body.len(),
        serde_json::to_vec(&v).unwrap().len(),
        "body is not compact JSON: {}",
        String::from_utf8_lossy(&r.body)
    );
}

/// A header from a shown header map, by case-insensitive name.
fn hdr(map: &Value, name: &str) -> Value {
    map.as_object()
        .unwrap_or_else(|| panic!("not a header map: {map}"))
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or(Value::Null)
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Payloads and headers
// ---------------------------------------------------------------------------------------------

conformance!(every_trigger_delivers_the_exact_payload_signed);

async fn every_trigger_delivers_the_exact_payload_signed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    let other_rx = TestReceiver::start().await;
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    app.model("acme", "other").await;
    let hook = create_hook(
        &app,
        json!({"name": "all", "url": format!("{}/hook", rx.url), "secret": "s3cret",
               "triggers": ALL_TRIGGERS, "headers": {"X-Team": "ml"}}),
    )
    .await;
    let other_hooks = "/api/v1/workspaces/acme/models/other/webhooks";
    let other = create_hook_on(
        &app,
        other_hooks,
        json!({"name": "other", "url": format!("{}/hook", other_rx.url),
               "triggers": ALL_TRIGGERS}),
    )
    .await;

    let v = "/api/v1/workspaces/acme/models/fraud/versions/1.0.0";
    app.version(
        "acme",
        "fraud",
        json!({"version": "1.0.0", "tags": ["a", "b"], "status": "Development",
               "sourceExperimentKey": "exp-1"}),
    )
    .await;
    let (s, b) = app
        .patch(
            ADMIN_TOKEN,
            &format!("{v}/tags"),
            json!({"add": ["c"], "remove": ["a"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .put(
            ADMIN_TOKEN,
            &format!("{v}/status"),
            json!({"status": "Staging"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            &format!("{v}/status-requests"),
            json!({"status": "Production"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app.delete(ADMIN_TOKEN, v).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");

    rx.wait_for(5, Duration::from_secs(15)).await;
    // All the work there is, done and recorded; nothing pending is left to be sent later.
    app.drain().await;
    assert_eq!(app.pending_deliveries().await, 0, "nothing is left to send");
    let got = rx.received();
    assert_eq!(got.len(), 5, "exactly one request per event");
    assert!(
        other_rx.received().is_empty(),
        "another model's webhook got fraud's events"
    );
    let (s, b) = app
        .get(ADMIN_TOKEN, &format!("{other_hooks}/{other}/deliveries"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["items"],
        json!([]),
        "another model's webhook has deliveries"
    );

    let events = app.all_events(ADMIN_TOKEN, "acme").await;
    assert_eq!(events.len(), 5, "{events:#?}");
    let log = items(&deliveries(&app, &hook, "?limit=500").await);
    assert_eq!(log.len(), 5, "one delivery per event: {log:#?}");
    assert!(
        log.iter()
            .all(|d| d["state"] == "succeeded" && d["attemptCount"] == 1),
        "each delivered once, and done: {log:#?}"
    );
    let key = signing_key(&app, &hook).await;
    let now = chrono::Utc::now().timestamp();

    for ev in &events {
        let trigger = ev["eventTrigger"].as_str().unwrap();
        let d = log
            .iter()
            .find(|d| d["eventId"] == ev["id"])
            .unwrap_or_else(|| panic!("no delivery for event {ev}"));
        assert_eq!(d["eventTrigger"], trigger);
        let did = d["id"].as_str().unwrap();
        let rs: Vec<&Received> = got
            .iter()
            .filter(|r| r.header("webhook-id").as_deref() == Some(did))
            .collect();
        assert_eq!(
            rs.len(),
            1,
            "{trigger}: one request with webhook-id {did} (the delivery's id)"
        );
        let r = rs[0];
        let body = r.json();
        assert_eq!(
            body, ev["payload"],
            "{trigger}: the body is the event's payload"
        );
        assert_eq!(body.as_object().unwrap().len(), 10, "ten fields: {body}");
        assert_compact(r);
        assert_eq!(r.path, "/hook");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            r.header("user-agent"),
            Some(format!("Berth-Webhooks/{}", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(r.header("x-team").as_deref(), Some("ml"));
        assert_eq!(r.header("authorization").as_deref(), Some("s3cret"));
        assert_eq!(r.header("x-berth-event").as_deref(), Some(trigger));
        assert_eq!(r.header("x-berth-attempt").as_deref(), Some("1"));
        assert!(r.header("accept").as_deref() != Some("application/vnd.github+json"));
        verify_signature(&key, r);

        assert_eq!(body["workspaceName"], "acme");
        assert_eq!(body["registryModelName"], "fraud");
        assert_eq!(body["version"], "1.0.0");
        assert_eq!(body["sourceExperimentKey"], "exp-1");
        let created = body["createdAt"].as_i64().expect("createdAt in seconds");
        assert!((now - created).abs() < 120, "createdAt {created} vs {now}");
        match trigger {
            "MODEL_VERSION_CREATED" => {
                assert_eq!(sorted(&body["tags"]), ["a", "b"]);
                assert_eq!(body["deletedTags"], json!([]));
                assert_eq!(body["status"], "Development");
                assert_eq!(body["oldStatus"], Value::Null);
            }
            "MODEL_TAG_CHANGED" => {
                assert_eq!(sorted(&body["tags"]), ["b", "c"], "tags = the new set");
                assert_eq!(body["deletedTags"], json!(["a"]), "deletedTags = removed");
            }
            "MODEL_STATUS_CHANGED" => {
                assert_eq!(body["status"], "Staging");
                assert_eq!(body["oldStatus"], "Development");
            }
            "MODEL_STATUS_CHANGE_REQUESTED" => {
                assert_eq!(body["status"], "Production", "status = requested");
                assert_eq!(body["oldStatus"], "Staging", "oldStatus = current");
            }
            "MODEL_VERSION_DELETED" => {
                assert_eq!(sorted(&body["tags"]), ["b", "c"]);
                assert_eq!(body["status"], "Staging");
            }
            other => panic!("unexpected trigger {other}"),
        }
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Who gets what
// ---------------------------------------------------------------------------------------------

conformance!(only_subscribed_enabled_existing_webhooks_receive);

async fn only_subscribed_enabled_existing_webhooks_receive(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (rxa, rxb, rxc, rxd, rxe) = (
        TestReceiver::start().await,
        TestReceiver::start().await,
        TestReceiver::start().await,
        TestReceiver::start().await,
        TestReceiver::start().await,
    );
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let a = create_hook(
        &app,
        json!({"name": "a", "url": rxa.url, "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;
    let b = create_hook(
        &app,
        json!({"name": "b", "url": rxb.url, "triggers": ["MODEL_TAG_CHANGED"]}),
    )
    .await;
    let c = create_hook(
        &app,
        json!({"name": "c", "url": rxc.url, "triggers": ALL_TRIGGERS}),
    )
    .await;
    let d = create_hook(
        &app,
        json!({"name": "d", "url": rxd.url, "triggers": ALL_TRIGGERS}),
    )
    .await;
    let (s, body) = app
        .put(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{c}"),
            json!({"name": "c", "url": rxc.url, "triggers": ALL_TRIGGERS, "enabled": false}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], false);
    let (s, body) = app.delete(ADMIN_TOKEN, &format!("{HOOKS}/{d}")).await;
    assert!(s.is_success(), "delete webhook: {s} {body}");

    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;
    let (s, body) = app
        .patch(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/fraud/versions/1.0.0/tags",
            json!({"add": ["x"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    rxa.wait_for(1, Duration::from_secs(10)).await;
    rxb.wait_for(1, Duration::from_secs(10)).await;
    // All the work there is, done and recorded. Nothing is pending: no delivery was made for
    // the disabled or the deleted webhook, to be sent now or ever.
    app.drain().await;
    assert_eq!(app.pending_deliveries().await, 0, "nothing is left to send");
    let got_a = rxa.received();
    assert_eq!(got_a.len(), 1, "a subscribes to CREATED only");
    assert_eq!(got_a[0].json()["eventTrigger"], "MODEL_VERSION_CREATED");
    let got_b = rxb.received();
    assert_eq!(got_b.len(), 1, "b subscribes to TAG_CHANGED only");
    assert_eq!(got_b[0].json()["eventTrigger"], "MODEL_TAG_CHANGED");
    assert!(
        rxc.received().is_empty(),
        "a disabled webhook got a request"
    );
    assert!(rxd.received().is_empty(), "a deleted webhook got a request");
    assert!(
        items(&deliveries(&app, &c, "").await).is_empty(),
        "a disabled webhook has deliveries"
    );
    assert_eq!(items(&deliveries(&app, &a, "").await).len(), 1);
    assert_eq!(items(&deliveries(&app, &b, "").await).len(), 1);

    // Created just before an event: gets it.
    let e = create_hook(
        &app,
        json!({"name": "e", "url": rxe.url, "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;
    app.version("acme", "fraud", json!({"version": "2.0.0"}))
        .await;
    let got_e = rxe.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got_e[0].json()["version"], "2.0.0");
    rxa.wait_for(2, Duration::from_secs(10)).await;

    // Deleted: nothing from the next event on.
    let (s, body) = app.delete(ADMIN_TOKEN, &format!("{HOOKS}/{a}")).await;
    assert!(s.is_success(), "delete webhook: {s} {body}");
    app.version("acme", "fraud", json!({"version": "3.0.0"}))
        .await;
    rxe.wait_for(2, Duration::from_secs(10)).await;
    app.drain().await;
    assert_eq!(
        app.pending_deliveries().await,
        0,
        "a delivery is left for the deleted webhook"
    );
    assert_eq!(rxa.received().len(), 2, "a deleted webhook got 3.0.0");
    assert!(rxc.received().is_empty());
    assert!(items(&deliveries(&app, &c, "").await).is_empty());
    let log_e = items(&deliveries(&app, &e, "").await);
    assert_eq!(log_e.len(), 2);
    assert!(log_e.iter().all(|d| d["attemptCount"] == 1), "{log_e:#?}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// GitHub Actions mode
// ---------------------------------------------------------------------------------------------

conformance!(github_actions_mode);

async fn github_actions_mode(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.delivery.schedule = schedule("100ms,100ms,100ms");
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(204));
    let bad = TestReceiver::start().await;
    bad.script([
        Reply::status(401).body("{\"message\":\"Bad credentials\"}"),
        Reply::status(403),
        Reply::status(404),
        Reply::status(422),
    ]);
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let url = format!("{}/repos/o/r/dispatches", rx.url);
    let mut expected_auth = HashMap::new();
    for (name, secret, auth) in [
        ("plain", "ghp_abc", "Bearer ghp_abc"),
        ("token", "token ghp_tok", "token ghp_tok"),
        ("bearer", "Bearer ghp_bear", "Bearer ghp_bear"),
    ] {
        let id = create_hook(
            &app,
            json!({"name": name, "url": url, "secret": secret, "githubActions": true,
                   "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
        expected_auth.insert(id, (secret, auth));
    }
    let bad_hook = create_hook(
        &app,
        json!({"name": "bad", "url": format!("{}/repos/o/r/dispatches", bad.url),
               "secret": "ghp_bad", "githubActions": true,
               "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;

    app.version(
        "acme",
        "fraud",
        json!({"version": "1.0.0", "tags": ["t"], "sourceExperimentKey": "k"}),
    )
    .await;
    rx.wait_for(3, Duration::from_secs(10)).await;
    let events = app.all_events(ADMIN_TOKEN, "acme").await;
    assert_eq!(events.len(), 1);
    let payload = &events[0]["payload"];

    for (hook, (secret, auth)) in &expected_auth {
        let log = wait_settled(&app, hook, 1, Duration::from_secs(10)).await;
        assert_eq!(log.len(), 1);
        assert_eq!(log[0]["state"], "succeeded", "204 is success: {log:#?}");
        assert_eq!(log[0]["lastStatusCode"], 204);
        let did = log[0]["id"].as_str().unwrap();
        let rs: Vec<Received> = rx
            .received()
            .into_iter()
            .filter(|r| r.header("webhook-id").as_deref() == Some(did))
            .collect();
        assert_eq!(rs.len(), 1, "one request for {did}");
        let r = &rs[0];
        assert_eq!(r.path, "/repos/o/r/dispatches");
        let body = r.json();
        assert_eq!(
            body.as_object().unwrap().len(),
            2,
            "event_type and client_payload only: {body}"
        );
        assert_eq!(body["event_type"], "MODEL_VERSION_CREATED");
        assert_eq!(&body["client_payload"], payload);
        assert_compact(r);
        assert_eq!(
            r.header("accept").as_deref(),
            Some("application/vnd.github+json")
        );
        assert_eq!(
            r.header("x-github-api-version").as_deref(),
            Some("2022-11-28")
        );
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            r.header("user-agent"),
            Some(format!("Berth-Webhooks/{}", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(
            r.header("x-berth-event").as_deref(),
            Some("MODEL_VERSION_CREATED")
        );
        assert_eq!(r.header("x-berth-attempt").as_deref(), Some("1"));
        assert_eq!(r.header("authorization").as_deref(), Some(*auth));
        verify_signature(&signing_key(&app, hook).await, r);

        let detail = delivery(&app, hook, did).await;
        let shown = hdr(&detail["request"]["headers"], "Authorization");
        let shown = shown
            .as_str()
            .unwrap_or_else(|| panic!("request.headers has Authorization: {detail:#}"));
        let bare = secret.split(' ').next_back().unwrap();
        assert!(
            shown.contains("********") && !shown.contains(bare),
            "the secret is masked: {shown}"
        );
        assert_eq!(detail["request"]["url"], url);
        let shown_body: Value =
            serde_json::from_str(detail["request"]["body"].as_str().unwrap()).unwrap();
        assert_eq!(shown_body, body);
    }

    // GitHub's refusals are explained.
    let log = wait_settled(&app, &bad_hook, 1, Duration::from_secs(15)).await;
    let did = log[0]["id"].as_str().unwrap();
    let detail = delivery(&app, &bad_hook, did).await;
    assert_eq!(detail["state"], "failed", "{detail:#}");
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "{detail:#}");
    for (a, code) in attempts.iter().zip([401, 403, 404, 422]) {
        assert_eq!(a["statusCode"], code);
        assert_eq!(a["errorClass"], "http_status");
        let err = a["error"].as_str().expect("error");
        assert!(err.contains(&code.to_string()), "{err}");
        assert!(
            err.len() > format!("the receiver answered HTTP {code}").len() + 10,
            "{code} is explained: {err}"
        );
    }
    assert_eq!(
        attempts[0]["responseBody"],
        "{\"message\":\"Bad credentials\"}"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------------------------

conformance!(retries_keep_the_webhook_id_then_fail);

async fn retries_keep_the_webhook_id_then_fail(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.delivery.schedule = schedule("100ms,100ms,100ms");
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(500).body("nope").header("X-Why", "broken"));
    let rx2 = TestReceiver::start().await;
    rx2.script([Reply::status(500)]);
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let url = format!("{}/hook", rx.url);
    let hook = create_hook(
        &app,
        json!({"name": "down", "url": url, "secret": "s3cret",
               "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;
    let hook2 = create_hook(
        &app,
        json!({"name": "flaky", "url": rx2.url, "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;
    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;

    let got = rx.wait_for(4, Duration::from_secs(10)).await;
    let id = got[0].header("webhook-id").expect("webhook-id");
    let key = signing_key(&app, &hook).await;
    for (i, r) in got.iter().enumerate() {
        assert_eq!(
            r.header("webhook-id").as_deref(),
            Some(id.as_str()),
            "same webhook-id on every retry"
        );
        assert_eq!(
            r.header("x-berth-attempt"),
            Some((i + 1).to_string()),
            "X-Berth-Attempt"
        );
        verify_signature(&key, r);
    }
    for w in got.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= Duration::from_millis(75) && gap < Duration::from_millis(450),
            "retry came {gap:?} after the previous attempt (schedule 100ms ±20%)"
        );
    }

    let d = wait_delivery_state(&app, &hook, &id, "failed", Duration::from_secs(10)).await;
    assert_eq!(d["id"], id.as_str(), "webhook-id is the delivery id");
    assert_eq!(d["attemptCount"], 4);
    assert_eq!(d["lastStatusCode"], 500);
    assert_eq!(d["nextAttemptAt"], Value::Null);
    assert_eq!(d["eventTrigger"], "MODEL_VERSION_CREATED");
    assert_eq!(d["request"]["url"], url);
    assert_eq!(hdr(&d["request"]["headers"], "Authorization"), "********");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4);
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt"], i + 1);
        assert_eq!(a["statusCode"], 500);
        assert_eq!(a["errorClass"], "http_status");
        assert!(a["error"].is_string(), "{a}");
        assert_eq!(a["responseBody"], "nope");
        assert_eq!(
            hdr(&a["responseHeaders"], "x-why"),
            "broken",
            "responseHeaders: {a}"
        );
        assert_eq!(hdr(&a["requestHeaders"], "Authorization"), "********");
        assert_eq!(
            hdr(&a["requestHeaders"], "X-Berth-Attempt"),
            (i + 1).to_string()
        );
        assert!(a["startedAt"].is_string());
        assert!(a["durationMs"].as_i64().is_some_and(|m| m >= 0));
        assert!(a["node"].as_str().is_some_and(|n| !n.is_empty()));
    }
    let text = d.to_string();
    assert!(!text.contains("s3cret"), "the secret leaks in the log");
    // Failed, with no next attempt (above): nothing is due now or later. What is in flight
    // is finished and recorded; the receiver got exactly the four recorded attempts.
    app.drain().await;
    assert_eq!(
        delivery(&app, &hook, &id).await["attemptCount"],
        4,
        "no attempt after the last retry"
    );
    assert_eq!(rx.received().len(), 4, "no attempt after the last retry");

    // A failure then a success.
    let got2 = rx2.wait_for(2, Duration::from_secs(10)).await;
    let id2 = got2[0].header("webhook-id").unwrap();
    assert_eq!(got2[1].header("webhook-id"), Some(id2.clone()));
    let d2 = wait_delivery_state(&app, &hook2, &id2, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(d2["attemptCount"], 2);
    assert_eq!(d2["lastStatusCode"], 200);
    assert_eq!(d2["attempts"][0]["errorClass"], "http_status");
    assert_eq!(d2["attempts"][1]["errorClass"], Value::Null);
    app.stop().await;
}

conformance!(redirect_timeout_connect_and_gone);

async fn redirect_timeout_connect_and_gone(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.delivery.schedule = schedule("100ms");
        s.delivery.timeout = Duration::from_millis(500);
    })
    .await;
    let redirect = TestReceiver::start().await;
    redirect.default_reply(
        Reply::status(302).header("Location", &format!("{}/elsewhere", redirect.url)),
    );
    let slow = TestReceiver::start().await;
    slow.default_reply(Reply::status(200).delay(Duration::from_secs(3)));
    let gone = TestReceiver::start().await;
    gone.default_reply(Reply::status(410));
    let accepted = TestReceiver::start().await;
    accepted.default_reply(Reply::status(202));
    let big = TestReceiver::start().await;
    big.default_reply(Reply::status(500).body(&"x".repeat(100_000)));
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let t = ["MODEL_VERSION_CREATED"];
    let h_redirect = create_hook(
        &app,
        json!({"name": "redirect", "url": format!("{}/hook", redirect.url), "triggers": t}),
    )
    .await;
    let h_slow = create_hook(
        &app,
        json!({"name": "slow", "url": slow.url, "triggers": t}),
    )
    .await;
    let h_gone = create_hook(
        &app,
        json!({"name": "gone", "url": gone.url, "triggers": t}),
    )
    .await;
    let h_closed = create_hook(
        &app,
        json!({"name": "closed", "url": format!("http://127.0.0.1:{closed}/"), "triggers": t}),
    )
    .await;
    let h_accepted = create_hook(
        &app,
        json!({"name": "accepted", "url": accepted.url, "triggers": t}),
    )
    .await;
    let h_big = create_hook(&app, json!({"name": "big", "url": big.url, "triggers": t})).await;
    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;

    let log = wait_settled(&app, &h_accepted, 1, Duration::from_secs(10)).await;
    assert_eq!(log[0]["state"], "succeeded", "any 2xx is success: {log:#?}");
    assert_eq!(log[0]["lastStatusCode"], 202);
    let log = wait_settled(&app, &h_big, 1, Duration::from_secs(10)).await;
    let d = delivery(&app, &h_big, log[0]["id"].as_str().unwrap()).await;
    let kept = d["attempts"][0]["responseBody"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        kept.len(),
        64 * 1024,
        "the first 64 KiB of the response body"
    );

    for (hook, class, attempts) in [
        (&h_redirect, "redirect", 2),
        (&h_slow, "timeout", 2),
        (&h_closed, "connect", 2),
        (&h_gone, "http_status", 1),
    ] {
        let log = wait_settled(&app, hook, 1, Duration::from_secs(15)).await;
        let did = log[0]["id"].as_str().unwrap();
        let d = delivery(&app, hook, did).await;
        assert_eq!(d["state"], "failed", "{class}: {d:#}");
        let list = d["attempts"].as_array().unwrap();
        assert_eq!(list.len(), attempts, "{class}: {d:#}");
        for a in list {
            assert_eq!(a["errorClass"], class, "{a}");
            assert!(a["error"].is_string(), "{a}");
        }
        if class == "timeout" {
            let ms = list[0]["durationMs"].as_i64().unwrap();
            assert!(
                (400..2500).contains(&ms),
                "the 500 ms timeout cut the attempt: {ms} ms"
            );
            assert_eq!(list[0]["statusCode"], Value::Null);
        }
        if class == "redirect" {
            assert_eq!(list[0]["statusCode"], 302);
        }
    }
    let got = redirect.received();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter().all(|r| r.path == "/hook"),
        "redirects are not followed: {:?}",
        got.iter().map(|r| &r.path).collect::<Vec<_>>()
    );

    // 410 Gone: the webhook is disabled, the delivery failed, no retry, nothing more.
    assert_eq!(gone.received().len(), 1);
    let (s, w) = app.get(ADMIN_TOKEN, &format!("{HOOKS}/{h_gone}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(w["enabled"], false, "{w}");
    assert!(
        w["disabledReason"].as_str().is_some_and(|r| !r.is_empty()),
        "{w}"
    );
    let d = &items(&deliveries(&app, &h_gone, "").await)[0];
    assert_eq!(d["lastStatusCode"], 410);
    app.version("acme", "fraud", json!({"version": "2.0.0"}))
        .await;
    redirect.wait_for(3, Duration::from_secs(10)).await;
    // 2.0.0's deliveries exist (the redirect's arrived). All the work due is done and
    // recorded; the disabled webhook has no delivery of 2.0.0, so it is never sent one.
    app.drain().await;
    assert_eq!(gone.received().len(), 1, "a disabled webhook got 2.0.0");
    let log = items(&deliveries(&app, &h_gone, "").await);
    assert_eq!(
        log.len(),
        1,
        "a disabled webhook has a delivery of 2.0.0: {log:#?}"
    );
    assert_eq!(log[0]["attemptCount"], 1, "{log:#?}");
    app.stop().await;
}

conformance!(retry_after_is_honoured_within_bounds);

async fn retry_after_is_honoured_within_bounds(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.delivery.schedule = schedule("100ms,100ms,100ms");
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.script([
        Reply::status(429).header("Retry-After", "0"),
        Reply::status(503).header("Retry-After", "2"),
    ]);
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let hook = create_hook(
        &app,
        json!({"name": "busy", "url": rx.url, "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;
    // Retry-After is only for 429 and 503: on a 500 the schedule decides.
    let plain = TestReceiver::start().await;
    plain.script([Reply::status(500).header("Retry-After", "5")]);
    create_hook(
        &app,
        json!({"name": "plain", "url": plain.url, "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;
    // A huge Retry-After is cut to 6 hours.
    let far = TestReceiver::start().await;
    far.default_reply(Reply::status(503).header("Retry-After", "86400"));
    let far_hook = create_hook(
        &app,
        json!({"name": "far", "url": far.url, "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;
    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;
    let got_plain = plain.wait_for(2, Duration::from_secs(10)).await;
    let gap = got_plain[1].at - got_plain[0].at;
    assert!(
        gap < Duration::from_millis(900),
        "Retry-After on a 500 is ignored (schedule 100ms); waited {gap:?}"
    );
    let far_got = far.wait_for(1, Duration::from_secs(10)).await;
    let far_id = far_got[0].header("webhook-id").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let d = loop {
        let d = delivery(&app, &far_hook, &far_id).await;
        if d["attemptCount"] == 1 {
            break d;
        }
        assert!(Instant::now() < deadline, "attempt not recorded: {d:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(d["state"], "pending", "{d:#}");
    assert_eq!(d["lastStatusCode"], 503);
    let next = chrono::DateTime::parse_from_rfc3339(
        d["nextAttemptAt"]
            .as_str()
            .unwrap_or_else(|| panic!("a pending delivery shows nextAttemptAt: {d:#}")),
    )
    .expect("nextAttemptAt is RFC 3339")
    .timestamp();
    let want = chrono::Utc::now().timestamp() + 6 * 3600;
    assert!(
        (next - want).abs() < 120,
        "Retry-After 86400 is capped at 6 h: next attempt at {next}, expected about {want}"
    );

    let got = rx.wait_for(3, Duration::from_secs(15)).await;
    let g1 = got[1].at - got[0].at;
    let g2 = got[2].at - got[1].at;
    assert!(
        g1 >= Duration::from_millis(950) && g1 < Duration::from_millis(2500),
        "Retry-After: 0 is raised to the 1 s minimum; waited {g1:?}"
    );
    assert!(
        g2 >= Duration::from_millis(1950) && g2 < Duration::from_millis(3500),
        "Retry-After: 2 on 503 is honoured; waited {g2:?}"
    );
    let id = got[0].header("webhook-id").unwrap();
    let d = wait_delivery_state(&app, &hook, &id, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(d["attemptCount"], 3);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The delivery log, redelivery, replay
// ---------------------------------------------------------------------------------------------

conformance!(delivery_log_is_paginated_and_filtered);

async fn delivery_log_is_paginated_and_filtered(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.delivery.schedule = schedule("");
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.script([
        Reply::status(200),
        Reply::status(500),
        Reply::status(200),
        Reply::status(500),
        Reply::status(200),
    ]);
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let hook = create_hook(
        &app,
        json!({"name": "log", "url": rx.url, "secret": "s3cret",
               "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;
    for i in 0..5 {
        app.version("acme", "fraud", json!({"version": format!("1.0.{i}")}))
            .await;
    }
    let all = wait_settled(&app, &hook, 5, Duration::from_secs(15)).await;
    assert_eq!(all.len(), 5);
    let events = app.all_events(ADMIN_TOKEN, "acme").await;
    let order: Vec<&Value> = events.iter().rev().map(|e| &e["id"]).collect();
    let listed: Vec<&Value> = all.iter().map(|d| &d["eventId"]).collect();
    assert_eq!(listed, order, "newest first");
    for d in &all {
        for k in [
            "id",
            "eventId",
            "eventTrigger",
            "state",
            "attemptCount",
            "lastStatusCode",
            "nextAttemptAt",
            "createdAt",
        ] {
            assert!(d.get(k).is_some(), "{k} missing: {d}");
        }
        assert_eq!(d["attemptCount"], 1);
        assert_eq!(d["nextAttemptAt"], Value::Null);
        let code = if d["state"] == "succeeded" { 200 } else { 500 };
        assert_eq!(d["lastStatusCode"], code, "{d}");
    }

    // Pages of two.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=2&cursor={c}"),
            None => "?limit=2".to_owned(),
        };
        let page = deliveries(&app, &hook, &q).await;
        pages += 1;
        paged.extend(items(&page));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, all, "the pages together are the whole log");

    let failed = items(&deliveries(&app, &hook, "?state=failed").await);
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|d| d["state"] == "failed"));
    let ok = items(&deliveries(&app, &hook, "?state=succeeded").await);
    assert_eq!(ok.len(), 3);
    assert!(ok.iter().all(|d| d["state"] == "succeeded"));
    assert!(items(&deliveries(&app, &hook, "?state=pending").await).is_empty());
    let bad = app
        .get(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{hook}/deliveries?state=bogus"),
        )
        .await;
    assert_error(&bad, 400, Some("state"));

    // One delivery in full.
    let f = &failed[0];
    let fid = f["id"].as_str().unwrap();
    let d = delivery(&app, &hook, fid).await;
    for k in [
        "id",
        "eventId",
        "eventTrigger",
        "state",
        "attemptCount",
        "createdAt",
    ] {
        assert_eq!(d[k], f[k], "{k}");
    }
    assert_eq!(d["request"]["url"], rx.url.clone() + "/");
    assert_eq!(hdr(&d["request"]["headers"], "Authorization"), "********");
    let ev = events.iter().find(|e| e["id"] == f["eventId"]).unwrap();
    let body: Value = serde_json::from_str(d["request"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, ev["payload"]);
    let r = rx
        .received()
        .into_iter()
        .find(|r| r.header("webhook-id").as_deref() == Some(fid))
        .expect("the failed delivery was sent");
    assert_eq!(r.body, d["request"]["body"].as_str().unwrap().as_bytes());
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(d["attempts"][0]["statusCode"], 500);
    let missing = app
        .get(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{hook}/deliveries/msg_00000000000000000000000000000000"),
        )
        .await;
    assert_error(&missing, 404, None);
    app.stop().await;
}

conformance!(redeliver_and_replay_keep_the_webhook_id);

async fn redeliver_and_replay_keep_the_webhook_id(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.delivery.schedule = schedule("");
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.script([Reply::status(500), Reply::status(500)]);
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let hook = create_hook(
        &app,
        json!({"name": "r", "url": rx.url, "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;
    let before = chrono::Utc::now() - chrono::Duration::hours(1);
    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;
    app.version("acme", "fraud", json!({"version": "2.0.0"}))
        .await;
    let all = wait_settled(&app, &hook, 2, Duration::from_secs(10)).await;
    assert!(all.iter().all(|d| d["state"] == "failed"), "{all:#?}");
    let (d1, d2) = (
        all[0]["id"].as_str().unwrap().to_owned(),
        all[1]["id"].as_str().unwrap().to_owned(),
    );
    let key = signing_key(&app, &hook).await;

    // Redeliver one.
    let (s, b) = app
        .post_empty(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{hook}/deliveries/{d1}/redeliver"),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["id"], d1.as_str());
    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(
        got[2].header("webhook-id"),
        Some(d1.clone()),
        "same webhook-id"
    );
    assert_eq!(got[2].header("x-berth-attempt").as_deref(), Some("2"));
    verify_signature(&key, &got[2]);
    let d = wait_delivery_state(&app, &hook, &d1, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(d["attemptCount"], 2);

    // A succeeded delivery can be sent again too.
    let (s, b) = app
        .post_empty(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{hook}/deliveries/{d1}/redeliver"),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let got = rx.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(got[3].header("webhook-id"), Some(d1.clone()));
    wait_settled(&app, &hook, 2, Duration::from_secs(10)).await;

    let unknown = app
        .post_empty(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{hook}/deliveries/msg_00000000000000000000000000000000/redeliver"),
        )
        .await;
    assert_error(&unknown, 404, None);

    // Replay: nothing failed since a future time; the other one since an hour ago.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{hook}/replay"),
            json!({"since": future}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["requeued"], 0);
    let bad = app
        .post(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{hook}/replay"),
            json!({"since": "yesterday"}),
        )
        .await;
    assert_error(&bad, 400, Some("since"));
    let since = before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{hook}/replay"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["requeued"], 1, "only the failed delivery is queued again");
    let got = rx.wait_for(5, Duration::from_secs(10)).await;
    assert_eq!(
        got[4].header("webhook-id"),
        Some(d2.clone()),
        "same webhook-id"
    );
    verify_signature(&key, &got[4]);
    let d = wait_delivery_state(&app, &hook, &d2, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(d["attemptCount"], 2);
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{hook}/replay"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["requeued"], 0);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Isolation
// ---------------------------------------------------------------------------------------------

conformance!(a_slow_receiver_does_not_delay_another);

async fn a_slow_receiver_does_not_delay_another(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.delivery.timeout = Duration::from_secs(10);
        s.delivery.max_in_flight = 4;
        s.delivery.per_webhook_in_flight = 2;
    })
    .await;
    let slow = TestReceiver::start().await;
    slow.default_reply(Reply::status(200).delay(Duration::from_secs(5)));
    let fast = TestReceiver::start().await;
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let t = ["MODEL_VERSION_CREATED"];
    create_hook(
        &app,
        json!({"name": "a-slow", "url": slow.url, "triggers": t}),
    )
    .await;
    create_hook(
        &app,
        json!({"name": "b-fast", "url": fast.url, "triggers": t}),
    )
    .await;

    let mut created = BTreeMap::new();
    for i in 0..10 {
        let v = format!("1.0.{i}");
        let at = Instant::now();
        app.version("acme", "fraud", json!({"version": v})).await;
        created.insert(v, at);
    }
    let got = fast.wait_for(10, Duration::from_secs(20)).await;
    let slow_count = slow.received().len();
    let mut worst = Duration::ZERO;
    for r in &got {
        let v = r.json()["version"].as_str().unwrap().to_owned();
        let lag = r.at - created[&v];
        worst = worst.max(lag);
        assert!(
            lag < Duration::from_secs(2),
            "the healthy receiver got {v} {lag:?} after it was created"
        );
    }
    assert!(
        slow_count < 10,
        "the slow receiver got all {slow_count} before the healthy one finished"
    );
    eprintln!("healthy receiver: worst lag {worst:?}; slow receiver had {slow_count} of 10");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Crash safety: the real binary, SIGKILLed mid-delivery
// ---------------------------------------------------------------------------------------------

/// Quick retries and a short timeout, so the restarted server finishes the backlog soon; and
/// one node name across the restart, as a process manager restarting a node would keep it.
const CRASH_ENVS: &[(&str, &str)] = &[
    ("BERTH_RETRY_SCHEDULE", "200ms,200ms,200ms,200ms,200ms"),
    ("BERTH_DELIVERY_TIMEOUT", "2s"),
    ("BERTH_NODE_NAME", "crash-node"),
];

conformance!(killing_the_server_mid_delivery_loses_nothing);

async fn killing_the_server_mid_delivery_loses_nothing(backend: Backend) {
    const N: usize = 30;
    let db = Db::new(backend).await;
    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(200).delay(Duration::from_millis(300)));

    let mut bin = Server::start(db.dir.path(), db.url(), CRASH_ENVS).await;
    bin.post("/api/v1/workspaces", json!({"name": "acme"}))
        .await;
    bin.post("/api/v1/workspaces/acme/models", json!({"name": "fraud"}))
        .await;
    let hook = bin
        .post(
            HOOKS,
            json!({"name": "slow", "url": format!("{}/hook", rx.url),
                   "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    let hook = hook["id"].as_str().unwrap().to_owned();
    for i in 0..N {
        bin.post(
            "/api/v1/workspaces/acme/models/fraud/versions",
            json!({"version": format!("1.0.{i}")}),
        )
        .await;
    }
    rx.wait_for(8, Duration::from_secs(20)).await;
    let killed_at = Instant::now();
    bin.kill();
    let before_kill = rx.received().len();
    assert!(
        before_kill < N,
        "everything was delivered before the kill ({before_kill}); not mid-delivery"
    );

    let bin = Server::start(db.dir.path(), db.url(), CRASH_ENVS).await;
    // The restarted server releases the killed process's leases (on SQLite all of them, as it
    // holds the data directory's lock; on PostgreSQL those under its node name) and sends
    // those deliveries again at once, well before the leases would end (2 s timeout + 30 s).
    let settle = Duration::from_secs(15);
    let deadline = Instant::now() + settle;
    loop {
        let versions: BTreeSet<String> = rx
            .received()
            .iter()
            .map(|r| r.json()["version"].as_str().unwrap().to_owned())
            .collect();
        if versions.len() == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart only {} of {N} versions were delivered within {settle:?}",
            versions.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The log agrees: every delivery succeeded, and its id is the webhook-id received.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let answer = bin
            .get(&format!("{HOOKS}/{hook}/deliveries?limit=500"))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let list = items(&answer.body);
        if list.len() == N && list.iter().all(|d| d["state"] == "succeeded") {
            break list;
        }
        assert!(Instant::now() < deadline, "log not settled: {list:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let got = rx.received();
    let mut by_id: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in &got {
        let id = r.header("webhook-id").expect("webhook-id");
        by_id.entry(id).or_default().push(r);
    }
    let log_ids: BTreeSet<String> = log
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    let received_ids: BTreeSet<String> = by_id.keys().cloned().collect();
    assert_eq!(received_ids, log_ids, "one webhook-id per delivery");
    let mut duplicates = Vec::new();
    for (id, rs) in &by_id {
        let versions: BTreeSet<String> = rs
            .iter()
            .map(|r| r.json()["version"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(versions.len(), 1, "{id} carried several versions");
        if rs.len() > 1 {
            let first = rs[0].at;
            assert!(
                first < killed_at && killed_at - first < Duration::from_millis(1500),
                "{id} was sent again though it was not in flight at the kill ({:?} before)",
                killed_at.saturating_duration_since(first)
            );
            duplicates.push((id.clone(), rs.len()));
        }
    }
    assert!(
        duplicates.len() <= 4,
        "more duplicates than deliveries in flight (per-webhook limit 4): {duplicates:?}"
    );
    eprintln!(
        "crash safety ({backend:?}): {} requests for {N} deliveries, {before_kill} before the \
         kill, duplicates {duplicates:?}",
        got.len()
    );
    assert!(
        bin.log()
            .iter()
            .any(|l| l.contains("sending its deliveries in flight again")),
        "the restart did not say it released the killed process's leases"
    );
    drop(bin);
    drop(db);
}

conformance!(disabling_a_webhook_stops_its_pending_retries);

/// A failed delivery waits for its retry; the webhook is disabled meanwhile; the clock goes
/// past every retry of the schedule, and the queue is drained: nothing is sent, the delivery
/// still waits (for an enable), and no attempt was added.
async fn disabling_a_webhook_stops_its_pending_retries(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        // Retries far apart: only the test clock brings them due.
        s.delivery.schedule = schedule("10m,10m,10m");
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(500));
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let hook = create_hook(
        &app,
        json!({"name": "h", "url": rx.url, "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;
    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    // The failure is recorded, its retry due in 10 minutes.
    app.drain().await;
    let log = items(&deliveries(&app, &hook, "").await);
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0]["state"], "pending", "{log:#?}");
    assert_eq!(log[0]["attemptCount"], 1, "{log:#?}");
    let id = log[0]["id"].as_str().expect("id").to_owned();
    let (s, b) = app
        .put(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{hook}"),
            json!({"name": "h", "url": rx.url, "triggers": ["MODEL_VERSION_CREATED"],
                   "enabled": false}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Every retry of the schedule is due now, by the worker's clock.
    app.clock.advance(Duration::from_secs(3600));
    app.drain().await;
    assert_eq!(
        rx.received().len(),
        1,
        "a disabled webhook gets nothing, not even retries"
    );
    let d = delivery(&app, &hook, &id).await;
    assert_eq!(d["attemptCount"], 1, "an attempt was recorded: {d:#}");
    assert_eq!(
        d["state"], "pending",
        "the delivery waits for an enable: {d:#}"
    );
    app.stop().await;
}

conformance!(a_backlog_goes_out_in_order_and_stops_when_the_webhook_is_disabled);

/// With one attempt in flight per webhook, a backlog is sent oldest first (on SQLite each
/// recorded success leases the webhook's next delivery in its own transaction: a chain), and
/// disabling the webhook part-way stops it after at most the attempt in flight; what was not
/// sent is still there, pending, not lost.
async fn a_backlog_goes_out_in_order_and_stops_when_the_webhook_is_disabled(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.delivery.per_webhook_in_flight = 1;
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(204).delay(Duration::from_millis(50)));
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let body = json!({"name": "h", "url": rx.url, "triggers": ["MODEL_VERSION_CREATED"]});
    let hook = create_hook(&app, body.clone()).await;
    let total = 40;
    for i in 0..total {
        app.version("acme", "fraud", json!({"version": format!("1.0.{i}")}))
            .await;
    }
    rx.wait_for(5, Duration::from_secs(20)).await;
    let mut off = body;
    off["enabled"] = json!(false);
    let (s, b) = app.put(ADMIN_TOKEN, &format!("{HOOKS}/{hook}"), off).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let at_disable = rx.received().len();
    // The attempt in flight, if any, finishes and is recorded, and no chained lease follows
    // it; the webhook's due deliveries are not claimed.
    assert_eq!(
        app.drain().await,
        0,
        "a disabled webhook's deliveries were claimed"
    );
    let got: Vec<String> = rx
        .received()
        .iter()
        .map(|r| r.json()["version"].as_str().expect("version").to_owned())
        .collect();
    assert!(
        got.len() <= at_disable + 1,
        "{} arrived after the webhook was disabled ({at_disable} before)",
        got.len() - at_disable
    );
    assert!(got.len() < total, "all {total} arrived despite the disable");
    let expected: Vec<String> = (0..got.len()).map(|i| format!("1.0.{i}")).collect();
    assert_eq!(got, expected, "the backlog went out of order");
    let pending = items(&deliveries(&app, &hook, "?state=pending&limit=500").await);
    assert_eq!(
        pending.len(),
        total - got.len(),
        "every delivery not sent is still pending"
    );
    assert!(
        pending.iter().all(|d| d["attemptCount"] == 0),
        "{pending:#?}"
    );
    let sent = items(&deliveries(&app, &hook, "?state=succeeded&limit=500").await);
    assert_eq!(sent.len(), got.len(), "one recorded attempt per request");
    app.stop().await;
}

conformance!(many_webhooks_on_one_receiver_keep_their_connections);

/// Ten webhooks at one receiver, four sends in flight each: the sender keeps as many
/// connections to that host as it has sends in flight, so a busy receiver is not sent a
/// new TCP connection (and, over TLS, a new handshake) for most deliveries.
async fn many_webhooks_on_one_receiver_keep_their_connections(backend: Backend) {
    let max_in_flight = 64;
    let app = TestApp::spawn_with(backend, |s| {
        s.delivery.max_in_flight = max_in_flight;
        s.delivery.per_webhook_in_flight = 4;
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(204).delay(Duration::from_millis(5)));
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    for i in 0..10 {
        let body = json!({"name": format!("h{i}"), "url": format!("{}/h{i}", rx.url),
            "triggers": ["MODEL_VERSION_CREATED"]});
        create_hook(&app, body).await;
    }
    let events = 40;
    for i in 0..events {
        app.version("acme", "fraud", json!({"version": format!("1.0.{i}")}))
            .await;
    }
    let got = rx.wait_for(events * 10, Duration::from_secs(60)).await;
    let connections: std::collections::HashSet<_> = got.iter().map(|r| r.peer).collect();
    assert!(
        connections.len() <= max_in_flight,
        "{} deliveries came over {} connections; at most {max_in_flight} (the sends in \
         flight) should have been opened",
        got.len(),
        connections.len()
    );
    app.stop().await;
}
