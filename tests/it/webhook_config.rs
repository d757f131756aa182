//! Webhook configuration: native API, Comet routes, validation, secrets, SSRF refusals.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, Reply, TestApp, TestReceiver, assert_error};

const HOOKS: &str = "/api/v1/workspaces/acme/models/fraud/webhooks";
const COMET: &str = "/api/rest/v2/webhooks/config";

/// Every subscribable trigger.
const TRIGGERS: [&str; 5] = [
    "MODEL_VERSION_CREATED",
    "MODEL_VERSION_DELETED",
    "MODEL_TAG_CHANGED",
    "MODEL_STATUS_CHANGED",
    "MODEL_STATUS_CHANGE_REQUESTED",
];

/// Tokens of a workspace admin, a plain member and an outsider of `acme`.
struct People {
    admin: String,
    member: String,
    outsider: String,
}

/// A server with workspace `acme`, model `fraud`, and its people.
async fn setup(backend: Backend) -> (TestApp, People) {
    setup_with(backend, |_| {}).await
}

async fn setup_with(
    backend: Backend,
    tune: impl FnOnce(&mut berth::config::Settings),
) -> (TestApp, People) {
    let app = TestApp::spawn_with(backend, tune).await;
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let admin = app.user("alice").await;
    let member = app.user("bob").await;
    let outsider = app.user("eve").await;
    app.add_member("acme", "alice", "admin").await;
    app.add_member("acme", "bob", "member").await;
    (
        app,
        People {
            admin,
            member,
            outsider,
        },
    )
}

/// The SSRF guard as in production: nothing private is reachable.
fn guard_on(s: &mut berth::config::Settings) {
    s.delivery.policy = berth::delivery::ssrf::TargetPolicy::default();
}

fn hook_body(name: &str, url: &str) -> Value {
    json!({"name": name, "url": url, "triggers": ["MODEL_VERSION_CREATED"]})
}

async fn create(app: &TestApp, body: Value) -> Value {
    let (s, b) = app.post(ADMIN_TOKEN, HOOKS, body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b
}

async fn list_names(app: &TestApp) -> Vec<String> {
    let (s, b) = app.get(ADMIN_TOKEN, HOOKS).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|w| w["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Panics when any of `secrets` appears anywhere in `v`.
#[track_caller]
fn assert_no_secret(v: &Value, secrets: &[&str]) {
    let text = v.to_string();
    for s in secrets {
        assert!(
            !text.contains(s),
            "secret {s:?} leaked in a response: {text}"
        );
    }
}

/// Sends with a raw `Authorization` header value (e.g. a bare token).
async fn call_with_authorization(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .header("authorization", authorization);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A loopback port with nothing listening.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

fn header_map_of(r: &crate::helpers::Received) -> axum::http::HeaderMap {
    let mut headers = axum::http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(
            name,
            r.header(name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .parse()
                .expect("header value"),
        );
    }
    headers
}

// ---------------------------------------------------------------------------------------------

conformance!(crud_round_trip);

async fn crud_round_trip(backend: Backend) {
    let (app, p) = setup(backend).await;
    let (s, hook) = app
        .post(
            &p.admin,
            HOOKS,
            json!({"name": "ci", "url": "https://example.com/hook", "secret": "crud-secret-1",
                   "triggers": TRIGGERS, "headers": {"X-Team": "ml"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    assert_no_secret(&hook, &["crud-secret-1"]);
    assert!(hook.get("secret").is_none(), "{hook}");
    assert_eq!(hook["name"], "ci");
    assert_eq!(hook["url"], "https://example.com/hook");
    assert_eq!(hook["hasSecret"], true);
    assert_eq!(hook["enabled"], true, "enabled defaults to true");
    assert_eq!(hook["triggers"], json!(TRIGGERS));
    assert_eq!(hook["headers"], json!({"X-Team": "ml"}));
    assert!(hook["id"].is_string(), "{hook}");
    assert!(hook["createdAt"].is_string(), "{hook}");
    assert!(hook["updatedAt"].is_string(), "{hook}");
    assert!(hook.get("disabledReason").is_some(), "{hook}");
    assert!(hook.get("lastDelivery").is_some(), "{hook}");
    let id = hook["id"].as_str().unwrap().to_owned();

    // A second webhook on the same model, created disabled and without a secret.
    let (s, second) = app
        .post(
            &p.admin,
            HOOKS,
            json!({"name": "audit", "url": "https://example.org/x", "triggers": ["MODEL_TAG_CHANGED"],
                   "enabled": false}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    assert_eq!(second["hasSecret"], false);
    assert_eq!(second["enabled"], false);

    // Members may list and get.
    let (s, list) = app.get(&p.member, HOOKS).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    assert_no_secret(&list, &["crud-secret-1"]);
    let (s, got) = app.get(&p.member, &format!("{HOOKS}/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["hasSecret"], true);
    assert!(got.get("secret").is_none());
    assert_no_secret(&got, &["crud-secret-1"]);

    // PUT replaces the configuration.
    let (s, put) = app
        .put(
            &p.admin,
            &format!("{HOOKS}/{id}"),
            json!({"name": "ci-renamed", "url": "https://example.com/other",
                   "triggers": ["MODEL_STATUS_CHANGED"], "headers": {"X-Env": "prod"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{put}");
    assert_eq!(put["name"], "ci-renamed");
    assert_eq!(put["url"], "https://example.com/other");
    assert_eq!(put["triggers"], json!(["MODEL_STATUS_CHANGED"]));
    assert_eq!(put["headers"], json!({"X-Env": "prod"}));
    assert_eq!(put["hasSecret"], true, "absent secret keeps it");
    assert_eq!(put["createdAt"], hook["createdAt"]);
    let (_, got) = app.get(&p.admin, &format!("{HOOKS}/{id}")).await;
    assert_eq!(got["name"], "ci-renamed");

    // DELETE.
    let (s, _) = app.delete(&p.admin, &format!("{HOOKS}/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_error(
        &app.get(&p.admin, &format!("{HOOKS}/{id}")).await,
        404,
        None,
    );
    assert_error(
        &app.delete(&p.admin, &format!("{HOOKS}/{id}")).await,
        404,
        None,
    );
    assert_eq!(list_names(&app).await, vec!["audit".to_owned()]);
    app.stop().await;
}

conformance!(every_validation_rule_names_its_field);

async fn every_validation_rule_names_its_field(backend: Backend) {
    let (app, _) = setup(backend).await;
    let base = |f: &dyn Fn(&mut Value)| {
        let mut b = json!({"name": "v", "url": "https://example.com/hook",
                           "triggers": ["MODEL_VERSION_CREATED"]});
        f(&mut b);
        b
    };
    let long_url = format!("https://example.com/{}", "a".repeat(2049 - 20));
    assert_eq!(long_url.len(), 2049);
    let many_headers: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("empty name", base(&|b| b["name"] = json!("")), "name"),
        (
            "101-char name",
            base(&|b| b["name"] = json!("n".repeat(101))),
            "name",
        ),
        (
            "101 two-byte characters",
            base(&|b| b["name"] = json!("é".repeat(101))),
            "name",
        ),
        ("empty url", base(&|b| b["url"] = json!("")), "url"),
        (
            "relative url",
            base(&|b| b["url"] = json!("example.com/hook")),
            "url",
        ),
        ("path-only url", base(&|b| b["url"] = json!("/hook")), "url"),
        (
            "ftp url",
            base(&|b| b["url"] = json!("ftp://example.com/hook")),
            "url",
        ),
        (
            "javascript url",
            base(&|b| b["url"] = json!("javascript:alert(1)")),
            "url",
        ),
        (
            "user and password",
            base(&|b| b["url"] = json!("https://user:pw@example.com/hook")),
            "url",
        ),
        (
            "user only",
            base(&|b| b["url"] = json!("https://user@example.com/hook")),
            "url",
        ),
        (
            "2049-char url",
            base(&|b| b["url"] = json!(long_url)),
            "url",
        ),
        (
            "no triggers",
            base(&|b| b["triggers"] = json!([])),
            "triggers",
        ),
        (
            "TEST trigger",
            base(&|b| b["triggers"] = json!(["TEST"])),
            "triggers",
        ),
        (
            "unknown trigger",
            base(&|b| b["triggers"] = json!(["MODEL_VERSION_CREATED", "NOPE"])),
            "triggers",
        ),
        (
            "header name with a space",
            base(&|b| b["headers"] = json!({"bad name": "x"})),
            "headers.bad name",
        ),
        (
            "header name with a colon",
            base(&|b| b["headers"] = json!({"X-A:b": "x"})),
            "headers.X-A:b",
        ),
        (
            "header value with CR LF",
            base(&|b| b["headers"] = json!({"X-Ok": "a\r\nInjected: 1"})),
            "headers.X-Ok",
        ),
        (
            "header value with LF",
            base(&|b| b["headers"] = json!({"X-Ok": "a\nb"})),
            "headers.X-Ok",
        ),
        (
            "header value with CR",
            base(&|b| b["headers"] = json!({"X-Ok": "a\rb"})),
            "headers.X-Ok",
        ),
        (
            "header value with NUL",
            base(&|b| b["headers"] = json!({"X-Ok": "a\u{0}b"})),
            "headers.X-Ok",
        ),
        (
            "21 headers",
            base(&|b| b["headers"] = Value::Object(many_headers.clone())),
            "headers",
        ),
        (
            "GitHub mode, wrong path",
            base(&|b| {
                b["url"] = json!("https://api.github.com/repos/o/r/issues");
                b["githubActions"] = json!(true);
            }),
            "url",
        ),
        (
            "GitHub mode, missing repo",
            base(&|b| {
                b["url"] = json!("https://api.github.com/repos/o/dispatches");
                b["githubActions"] = json!(true);
            }),
            "url",
        ),
        (
            "GitHub mode, root",
            base(&|b| {
                b["url"] = json!("https://api.github.com/");
                b["githubActions"] = json!(true);
            }),
            "url",
        ),
    ];
    for (what, body, field) in &cases {
        let got = app.post(ADMIN_TOKEN, HOOKS, body.clone()).await;
        let (s, b) = &got;
        assert_eq!(s.as_u16(), 400, "{what}: {b}");
        let f = b["error"]["field"].as_str().unwrap_or_default();
        if *field == "triggers" {
            // `triggers` itself or the offending entry (`triggers[1]`).
            assert!(f.starts_with("triggers"), "{what}: field {f:?}: {b}");
        } else {
            assert_error(&got, 400, Some(field));
        }
    }
    // The engine's own headers are refused, each named.
    for name in [
        "Host",
        "Content-Length",
        "Content-Type",
        "Transfer-Encoding",
        "Connection",
        "Authorization",
        "authorization",
        "webhook-id",
        "Webhook-Signature",
        "webhook-timestamp",
        "webhook-anything",
    ] {
        let body = base(&|b| b["headers"] = json!({ name: "x" }));
        let got = app.post(ADMIN_TOKEN, HOOKS, body).await;
        assert_error(&got, 400, Some(&format!("headers.{name}")));
    }
    assert!(
        list_names(&app).await.is_empty(),
        "nothing is stored by a refused request"
    );

    // The limits themselves are accepted.
    let url_2048 = format!("https://example.com/{}", "a".repeat(2048 - 20));
    assert_eq!(url_2048.len(), 2048);
    let twenty: serde_json::Map<String, Value> =
        (0..20).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let ok: Vec<Value> = vec![
        base(&|b| b["name"] = json!("n".repeat(100))),
        base(&|b| b["name"] = json!("é".repeat(100))),
        base(&|b| {
            b["name"] = json!("a");
            b["url"] = json!(url_2048);
        }),
        base(&|b| {
            b["name"] = json!("twenty");
            b["headers"] = Value::Object(twenty.clone());
        }),
        base(&|b| {
            b["name"] = json!("token-chars");
            b["headers"] = json!({"X-!#$%&'*+-.^_`|~0": "tab\tand spaces ok"});
        }),
        base(&|b| {
            b["name"] = json!("all-triggers");
            b["triggers"] = json!(TRIGGERS);
        }),
        base(&|b| {
            b["name"] = json!("plain-http");
            b["url"] = json!("http://example.com/hook?x=1");
        }),
        base(&|b| {
            b["name"] = json!("gh");
            b["url"] = json!("https://api.github.com/repos/o/r/dispatches");
            b["githubActions"] = json!(true);
        }),
        base(&|b| {
            b["name"] = json!("ghe");
            b["url"] = json!("https://ghe.example.com/api/v3/repos/o/r/dispatches");
            b["githubActions"] = json!(true);
        }),
    ];
    for body in ok {
        let (s, b) = app.post(ADMIN_TOKEN, HOOKS, body.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{body} -> {b}");
    }

    // PUT validates the same way and leaves the stored webhook unchanged.
    let hook = create(&app, hook_body("put-me", "https://example.com/p")).await;
    let path = format!("{HOOKS}/{}", hook["id"].as_str().unwrap());
    for (what, body, field) in &cases {
        let mut body = body.clone();
        if body["name"] == "v" {
            body["name"] = json!("put-me");
        }
        let got = app.put(ADMIN_TOKEN, &path, body).await;
        let f = got.1["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(got.0.as_u16(), 400, "PUT {what}: {}", got.1);
        assert!(f.starts_with(field), "PUT {what}: field {f:?}");
    }
    let (_, after) = app.get(ADMIN_TOKEN, &path).await;
    assert_eq!(after["url"], "https://example.com/p");
    assert_eq!(after["updatedAt"], hook["updatedAt"]);
    app.stop().await;
}

conformance!(literal_blocked_addresses_are_refused_at_configuration);

async fn literal_blocked_addresses_are_refused_at_configuration(backend: Backend) {
    let (app, _) = setup_with(backend, guard_on).await;
    let blocked = [
        "http://127.0.0.1/hook",
        "http://127.1.2.3:8080/hook",
        "http://10.0.0.1/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::]/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://0.0.0.0/hook",
        "http://192.0.2.1/hook",
        "http://255.255.255.255/hook",
        "http://[64:ff9b::a9fe:a9fe]/hook",
        "http://[2002:7f00:1::1]/hook",
        // Alternative spellings of loopback that URL parsing normalises.
        "http://2130706433/hook",
        "http://0x7f.0.0.1/hook",
        "http://127.1/hook",
    ];
    for url in blocked {
        let got = app.post(ADMIN_TOKEN, HOOKS, hook_body("x", url)).await;
        assert_error(&got, 400, Some("url"));
        // Test Webhook refuses it the same way, before any connection.
        let got = app
            .post(ADMIN_TOKEN, &format!("{HOOKS}/test"), json!({ "url": url }))
            .await;
        assert_error(&got, 400, Some("url"));
        // And the Comet route.
        let got = app
            .post(
                ADMIN_TOKEN,
                COMET,
                json!({"webhookConfigs": [{"workspaceName": "acme", "modelName": "fraud",
                    "webhookUrls": [{"name": "x", "url": url,
                                     "triggers": ["MODEL_VERSION_CREATED"]}]}]}),
            )
            .await;
        assert_error(&got, 400, Some("webhookConfigs[0].webhookUrls[0].url"));
    }
    assert!(list_names(&app).await.is_empty(), "nothing stored");

    // PUT cannot move a webhook onto a blocked address either.
    let hook = create(&app, hook_body("pub", "https://example.com/hook")).await;
    let path = format!("{HOOKS}/{}", hook["id"].as_str().unwrap());
    for url in [
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://169.254.169.254/",
    ] {
        let got = app.put(ADMIN_TOKEN, &path, hook_body("pub", url)).await;
        assert_error(&got, 400, Some("url"));
    }
    let (_, after) = app.get(ADMIN_TOKEN, &path).await;
    assert_eq!(after["url"], "https://example.com/hook");
    app.stop().await;
}

conformance!(allow_list_opens_only_what_it_lists);

async fn allow_list_opens_only_what_it_lists(backend: Backend) {
    // The default test policy allows 127.0.0.0/8 and ::1, nothing else.
    let (app, _) = setup(backend).await;
    let got = app
        .post(
            ADMIN_TOKEN,
            HOOKS,
            hook_body("lo", "http://127.0.0.1:9/hook"),
        )
        .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    for url in [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/",
        "http://[fd00::1]/",
        "http://[::ffff:10.0.0.1]/",
    ] {
        let got = app.post(ADMIN_TOKEN, HOOKS, hook_body("x", url)).await;
        assert_error(&got, 400, Some("url"));
    }
    assert_eq!(list_names(&app).await, vec!["lo".to_owned()]);
    app.stop().await;
}

conformance!(a_name_resolving_to_loopback_is_blocked_at_send_time);

async fn a_name_resolving_to_loopback_is_blocked_at_send_time(backend: Backend) {
    let (app, _) = setup_with(backend, guard_on).await;
    // A listener on the port that accepts nothing, so a connection (if one were made) would
    // be seen: the kernel completes a TCP handshake before `connect` returns, so a connection
    // made by a send waits in the backlog once the send has answered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let port = listener.local_addr().expect("addr").port();
    let url = format!("http://localhost:{port}/hook");
    // A hostname is not judged at configuration time.
    let hook = create(&app, hook_body("local", &url)).await;
    let id = hook["id"].as_str().unwrap();
    let (s, r) = app
        .post_empty(ADMIN_TOKEN, &format!("{HOOKS}/{id}/test"))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["errorClass"], "blocked", "{r}");
    assert!(r["statusCode"].is_null(), "{r}");
    assert!(r["error"].is_string(), "{r}");
    let (s, r) = app
        .post(ADMIN_TOKEN, &format!("{HOOKS}/test"), json!({ "url": url }))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["errorClass"], "blocked", "{r}");
    // Both sends are over (their calls answered), and no event made a delivery: had either
    // connected, the connection would be waiting.
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("no connection may be made: {other:?}"),
    }
    app.stop().await;
}

conformance!(roles_decide_who_may_do_what);

async fn roles_decide_who_may_do_what(backend: Backend) {
    let (app, p) = setup(backend).await;
    let rx = TestReceiver::start().await;
    let hook = create(&app, hook_body("h", &format!("{}/hook", rx.url))).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let one = format!("{HOOKS}/{id}");
    let fake_delivery = "0190a000-0000-7000-8000-000000000000";

    type Req = (Method, String, Option<Value>);
    let admin_only: Vec<Req> = vec![
        (
            Method::POST,
            HOOKS.to_owned(),
            Some(hook_body("new", "https://example.com/new")),
        ),
        (
            Method::PUT,
            one.clone(),
            Some(hook_body("h", &format!("{}/changed", rx.url))),
        ),
        (Method::POST, format!("{one}/test"), None),
        (
            Method::POST,
            format!("{HOOKS}/test"),
            Some(json!({"url": format!("{}/unsaved", rx.url)})),
        ),
        (Method::GET, format!("{one}/signing-secret"), None),
        (Method::POST, format!("{one}/signing-secret/rotate"), None),
        (
            Method::POST,
            format!("{one}/deliveries/{fake_delivery}/redeliver"),
            None,
        ),
        (
            Method::POST,
            format!("{one}/replay"),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        ),
        (Method::DELETE, one.clone(), None),
    ];
    let readable: Vec<Req> = vec![
        (Method::GET, HOOKS.to_owned(), None),
        (Method::GET, one.clone(), None),
    ];

    // Members: read yes, everything else 403.
    for (m, path, body) in &readable {
        let (s, b) = app
            .call(m.clone(), path, Some(&p.member), body.clone())
            .await;
        assert_eq!(s, StatusCode::OK, "member {m} {path}: {b}");
    }
    for (m, path, body) in &admin_only {
        let got = app
            .call(m.clone(), path, Some(&p.member), body.clone())
            .await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "member {m} {path}: {}", got.1);
        assert_error(&got, 403, None);
    }
    assert!(rx.received().is_empty(), "a refused test sends nothing");

    // Outsiders: 404 everywhere, identical to a workspace that does not exist.
    for (m, path, body) in readable.iter().chain(admin_only.iter()) {
        let got = app
            .call(m.clone(), path, Some(&p.outsider), body.clone())
            .await;
        assert_error(&got, 404, None);
        let missing = path.replace("/workspaces/acme/", "/workspaces/nowhere/");
        let other = app
            .call(m.clone(), &missing, Some(&p.outsider), body.clone())
            .await;
        assert_eq!(got, other, "outsider {m} {path} vs missing workspace");
    }
    // Comet routes: same rules.
    let cfg = json!({"webhookConfigs": [{"workspaceName": "acme", "modelName": "fraud",
        "webhookUrls": [{"name": "c", "url": "https://example.com/c",
                         "triggers": ["MODEL_VERSION_CREATED"]}]}]});
    assert_error(&app.post(&p.member, COMET, cfg.clone()).await, 403, None);
    let missing_cfg = json!({"webhookConfigs": [{"workspaceName": "nowhere", "modelName": "fraud",
        "webhookUrls": [{"name": "c", "url": "https://example.com/c",
                         "triggers": ["MODEL_VERSION_CREATED"]}]}]});
    let a = app.post(&p.outsider, COMET, cfg.clone()).await;
    assert_error(&a, 404, None);
    assert_eq!(a, app.post(&p.outsider, COMET, missing_cfg).await);
    let q = format!("{COMET}?workspaceName=acme&modelName=fraud");
    let (s, b) = app.get(&p.member, &q).await;
    assert_eq!(s, StatusCode::OK, "member may read the Comet config: {b}");
    let a = app.get(&p.outsider, &q).await;
    assert_error(&a, 404, None);
    assert_eq!(
        a,
        app.get(
            &p.outsider,
            &format!("{COMET}?workspaceName=nowhere&modelName=fraud")
        )
        .await
    );

    // No token at all.
    assert_error(&app.call(Method::GET, HOOKS, None, None).await, 401, None);

    // Workspace admins may do everything (the delete last).
    for (m, path, body) in &admin_only {
        let (s, b) = app
            .call(m.clone(), path, Some(&p.admin), body.clone())
            .await;
        if path.contains("/redeliver") {
            assert_eq!(s, StatusCode::NOT_FOUND, "no such delivery: {b}");
        } else {
            assert!(s.is_success(), "admin {m} {path}: {s} {b}");
        }
    }
    assert_eq!(list_names(&app).await, vec!["new".to_owned()]);
    assert_eq!(rx.received().len(), 2, "saved and unsaved tests were sent");
    app.stop().await;
}

conformance!(put_secret_absent_keeps_null_clears);

async fn put_secret_absent_keeps_null_clears(backend: Backend) {
    let (app, _) = setup(backend).await;
    let rx = TestReceiver::start().await;
    let url = format!("{}/hook", rx.url);
    let secrets = ["old-secret-AbC123", "new-secret-XyZ789"];
    let hook = create(
        &app,
        json!({"name": "s", "url": url, "secret": secrets[0],
               "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let one = format!("{HOOKS}/{id}");

    let (app_ref, one_ref) = (&app, &one);
    let test_saved = move || async move {
        let (s, r) = app_ref
            .post_empty(ADMIN_TOKEN, &format!("{one_ref}/test"))
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["success"], true, "{r}");
        assert_no_secret(&r, &secrets);
        r
    };

    // Absent: keeps the stored secret.
    let (s, b) = app
        .put(ADMIN_TOKEN, &one, hook_body("s", &format!("{url}?v=2")))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["hasSecret"], true);
    let r = test_saved().await;
    assert_eq!(r["request"]["headers"]["Authorization"], "********", "{r}");
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("authorization").as_deref(), Some(secrets[0]));
    assert!(got[0].path.ends_with("?v=2"), "{}", got[0].path);

    // With webhookId and no secret, the unsaved test uses the stored one too.
    let (s, r) = app
        .post(
            ADMIN_TOKEN,
            &format!("{HOOKS}/test"),
            json!({"url": format!("{url}?unsaved"), "webhookId": id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["success"], true, "{r}");
    assert_no_secret(&r, &secrets);
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].header("authorization").as_deref(), Some(secrets[0]));

    // A new value replaces it.
    let mut body = hook_body("s", &url);
    body["secret"] = json!(secrets[1]);
    let (s, b) = app.put(ADMIN_TOKEN, &one, body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_no_secret(&b, &secrets);
    test_saved().await;
    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got[2].header("authorization").as_deref(), Some(secrets[1]));

    // null clears it.
    let mut body = hook_body("s", &url);
    body["secret"] = Value::Null;
    let (s, b) = app.put(ADMIN_TOKEN, &one, body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["hasSecret"], false);
    let (_, b) = app.get(ADMIN_TOKEN, &one).await;
    assert_eq!(b["hasSecret"], false);
    let r = test_saved().await;
    assert!(
        r["request"]["headers"].get("Authorization").is_none(),
        "{r}"
    );
    let got = rx.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(got[3].header("authorization"), None);
    app.stop().await;
}

conformance!(duplicate_names_conflict);

async fn duplicate_names_conflict(backend: Backend) {
    let (app, _) = setup(backend).await;
    create(&app, hook_body("one", "https://example.com/1")).await;
    let got = app
        .post(
            ADMIN_TOKEN,
            HOOKS,
            hook_body("one", "https://example.com/other"),
        )
        .await;
    assert_error(&got, 409, Some("name"));
    let two = create(&app, hook_body("two", "https://example.com/2")).await;
    let path = format!("{HOOKS}/{}", two["id"].as_str().unwrap());
    let got = app
        .put(
            ADMIN_TOKEN,
            &path,
            hook_body("one", "https://example.com/2"),
        )
        .await;
    assert_error(&got, 409, Some("name"));
    let (_, still) = app.get(ADMIN_TOKEN, &path).await;
    assert_eq!(still["name"], "two");
    // Renaming to its own name is fine, and so is the same name on another model.
    let (s, b) = app
        .put(
            ADMIN_TOKEN,
            &path,
            hook_body("two", "https://example.com/2b"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    app.model("acme", "churn").await;
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/churn/webhooks",
            hook_body("one", "https://example.com/1"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let mut names = list_names(&app).await;
    names.sort();
    assert_eq!(names, vec!["one".to_owned(), "two".to_owned()]);
    app.stop().await;
}

conformance!(comet_round_trip_and_mask);

async fn comet_round_trip_and_mask(backend: Backend) {
    let (app, p) = setup(backend).await;
    let rx = TestReceiver::start().await;
    let secret = "comet-secret-Q1w2E3";
    let url = format!("{}/comet", rx.url);
    let cfg = |url: &str, auth: &str| {
        json!({"webhookConfigs": [{"workspaceName": "acme", "modelName": "fraud",
            "webhookUrls": [{"name": "comet-hook", "url": url,
                             "triggers": ["MODEL_VERSION_CREATED", "MODEL_STATUS_CHANGED"],
                             "header": {"Authorization": auth, "X-Team": "ml"}}]}]})
    };
    let (s, b) = app.post(&p.admin, COMET, cfg(&url, secret)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_no_secret(&b, &[secret]);

    // Native view: the Authorization header became the secret.
    let (_, list) = app.get(&p.admin, HOOKS).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    let native = &items[0];
    assert_eq!(native["name"], "comet-hook");
    assert_eq!(native["url"], url.as_str());
    assert_eq!(native["hasSecret"], true);
    assert_eq!(native["headers"], json!({"X-Team": "ml"}));
    assert_eq!(
        native["triggers"],
        json!(["MODEL_VERSION_CREATED", "MODEL_STATUS_CHANGED"])
    );
    let id = native["id"].as_str().unwrap().to_owned();

    // GET masks it.
    let q = format!("{COMET}?workspaceName=acme&modelName=fraud");
    let (s, got) = app.get(&p.admin, &q).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_no_secret(&got, &[secret]);
    let cfgs = got["webhookConfigs"].as_array().unwrap();
    assert_eq!(cfgs.len(), 1, "{got}");
    assert_eq!(cfgs[0]["workspaceName"], "acme");
    assert_eq!(cfgs[0]["modelName"], "fraud");
    let hooks = cfgs[0]["webhookUrls"].as_array().unwrap();
    assert_eq!(hooks.len(), 1, "{got}");
    assert_eq!(hooks[0]["name"], "comet-hook");
    assert_eq!(hooks[0]["url"], url.as_str());
    assert_eq!(
        hooks[0]["triggers"],
        json!(["MODEL_VERSION_CREATED", "MODEL_STATUS_CHANGED"])
    );
    assert_eq!(hooks[0]["header"]["Authorization"], "********");
    assert_eq!(hooks[0]["header"]["X-Team"], "ml");

    // Receivers get the secret verbatim.
    let (_, r) = app
        .post_empty(&p.admin, &format!("{HOOKS}/{id}/test"))
        .await;
    assert_eq!(r["success"], true, "{r}");
    assert_no_secret(&r, &[secret]);
    let got_rx = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got_rx[0].header("authorization").as_deref(), Some(secret));
    assert_eq!(got_rx[0].header("x-team").as_deref(), Some("ml"));

    // Posting GET's answer back (mask included) keeps the secret; an update by name keeps the id.
    let mut back = got.clone();
    back["webhookConfigs"][0]["webhookUrls"][0]["url"] = json!(format!("{url}/v2"));
    let (s, b) = app.post(&p.admin, COMET, back).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_no_secret(&b, &[secret]);
    let (_, list) = app.get(&p.admin, HOOKS).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["id"], id.as_str(), "updated by name");
    assert_eq!(list["items"][0]["url"], format!("{url}/v2"));
    assert_eq!(list["items"][0]["hasSecret"], true);
    app.post_empty(&p.admin, &format!("{HOOKS}/{id}/test"))
        .await;
    let got_rx = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got_rx[1].header("authorization").as_deref(), Some(secret));
    assert_eq!(got_rx[1].path, "/comet/v2");

    // A second name creates a second webhook.
    let mut two = cfg("https://example.com/second", "other-secret-ZZ");
    two["webhookConfigs"][0]["webhookUrls"][0]["name"] = json!("second");
    let (s, b) = app.post(&p.admin, COMET, two).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_no_secret(&b, &[secret, "other-secret-ZZ"]);
    let mut names = list_names(&app).await;
    names.sort();
    assert_eq!(names, vec!["comet-hook".to_owned(), "second".to_owned()]);

    // Validation names the Comet field.
    let mut bad = cfg(&url, secret);
    bad["webhookConfigs"][0]["webhookUrls"][0]["triggers"] = json!([]);
    let got = app.post(&p.admin, COMET, bad).await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    let f = got.1["error"]["field"].as_str().unwrap_or_default();
    assert!(
        f.starts_with("webhookConfigs[0].webhookUrls[0].triggers"),
        "{f}"
    );
    let mut bad = cfg("ftp://example.com/", secret);
    bad["webhookConfigs"][0]["webhookUrls"][0]["name"] = json!("third");
    assert_error(
        &app.post(&p.admin, COMET, bad).await,
        400,
        Some("webhookConfigs[0].webhookUrls[0].url"),
    );
    assert_eq!(
        list_names(&app).await.len(),
        2,
        "a refused POST stores nothing"
    );

    let mut bad = cfg(&url, secret);
    bad["webhookConfigs"][0]["webhookUrls"][0]["triggers"] = json!(["TEST"]);
    let got = app.post(&p.admin, COMET, bad).await;
    assert_eq!(
        got.0,
        StatusCode::BAD_REQUEST,
        "TEST is not subscribable: {}",
        got.1
    );
    let mut bad = cfg(&url, secret);
    bad["webhookConfigs"][0]["webhookUrls"][0]["header"]["Content-Type"] = json!("text/plain");
    assert_error(
        &app.post(&p.admin, COMET, bad).await,
        400,
        Some("webhookConfigs[0].webhookUrls[0].header.Content-Type"),
    );
    assert_eq!(
        list_names(&app).await.len(),
        2,
        "a refused POST stores nothing"
    );

    // The header name is matched without regard to case.
    let mut lower = cfg(&url, "x");
    lower["webhookConfigs"][0]["webhookUrls"][0]["header"] =
        json!({"authorization": "lower-secret-K7", "X-Team": "ml"});
    let (s, b) = app.post(&p.admin, COMET, lower).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_no_secret(&b, &["lower-secret-K7"]);
    app.post_empty(&p.admin, &format!("{HOOKS}/{id}/test"))
        .await;
    let got_rx = rx.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(
        got_rx[2].header("authorization").as_deref(),
        Some("lower-secret-K7")
    );

    // GET requires both query parameters.
    assert_error(
        &app.get(&p.admin, &format!("{COMET}?modelName=fraud")).await,
        400,
        Some("workspaceName"),
    );
    assert_error(
        &app.get(&p.admin, &format!("{COMET}?workspaceName=acme"))
            .await,
        400,
        Some("modelName"),
    );
    app.stop().await;
}

conformance!(bare_token_only_on_comet_routes);

async fn bare_token_only_on_comet_routes(backend: Backend) {
    let (app, p) = setup(backend).await;
    let q = format!("{COMET}?workspaceName=acme&modelName=fraud");
    let (s, b) = call_with_authorization(&app, Method::GET, &q, &p.admin, None).await;
    assert_eq!(s, StatusCode::OK, "bare token on Comet GET: {b}");
    let cfg = json!({"webhookConfigs": [{"workspaceName": "acme", "modelName": "fraud",
        "webhookUrls": [{"name": "bare", "url": "https://example.com/bare",
                         "triggers": ["MODEL_TAG_CHANGED"]}]}]});
    let (s, b) =
        call_with_authorization(&app, Method::POST, COMET, &p.admin, Some(cfg.clone())).await;
    assert_eq!(s, StatusCode::OK, "bare token on Comet POST: {b}");
    assert_eq!(
        b["webhookConfigs"][0]["webhookUrls"][0]["name"], "bare",
        "{b}"
    );
    // Bearer works there too.
    let (s, b) =
        call_with_authorization(&app, Method::GET, &q, &format!("Bearer {}", p.admin), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // A bad bare token is still refused.
    let (s, _) = call_with_authorization(&app, Method::GET, &q, "berth_nope", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The native API wants Bearer.
    let got = call_with_authorization(&app, Method::GET, HOOKS, &p.admin, None).await;
    assert_error(&got, 401, None);
    let got = call_with_authorization(
        &app,
        Method::POST,
        HOOKS,
        &p.admin,
        Some(hook_body("x", "https://example.com/x")),
    )
    .await;
    assert_error(&got, 401, None);
    assert_eq!(list_names(&app).await, vec!["bare".to_owned()]);
    app.stop().await;
}

conformance!(signing_key_rotation_signs_with_both);

async fn signing_key_rotation_signs_with_both(backend: Backend) {
    let (app, p) = setup(backend).await;
    let rx = TestReceiver::start().await;
    let hook = create(&app, hook_body("sig", &format!("{}/sig", rx.url))).await;
    let one = format!("{HOOKS}/{}", hook["id"].as_str().unwrap());

    let (s, k1) = app.get(&p.admin, &format!("{one}/signing-secret")).await;
    assert_eq!(s, StatusCode::OK, "{k1}");
    let old = k1["key"].as_str().unwrap().to_owned();
    assert!(old.starts_with("whsec_"), "{k1}");
    assert!(k1["previousKey"].is_null(), "{k1}");
    assert!(k1["previousKeyExpiresAt"].is_null(), "{k1}");

    // Before rotation: one signature.
    app.post_empty(&p.admin, &format!("{one}/test")).await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let sig = got[0].header("webhook-signature").unwrap();
    assert_eq!(sig.split(' ').count(), 1, "{sig}");
    standardwebhooks::Webhook::new(&old)
        .unwrap()
        .verify(&got[0].body, &header_map_of(&got[0]))
        .expect("signed with the key");

    let (s, k2) = app
        .post_empty(&p.admin, &format!("{one}/signing-secret/rotate"))
        .await;
    assert_eq!(s, StatusCode::OK, "{k2}");
    let new = k2["key"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_"), "{k2}");
    assert_ne!(new, old);
    assert_eq!(k2["previousKey"], old.as_str());
    let expires =
        chrono::DateTime::parse_from_rfc3339(k2["previousKeyExpiresAt"].as_str().expect("expiry"))
            .expect("RFC 3339")
            .timestamp();
    let in_secs = expires - now_secs();
    assert!(
        (23 * 3600..=25 * 3600).contains(&in_secs),
        "previous key kept ~24h, got {in_secs}s"
    );
    let (_, k3) = app.get(&p.admin, &format!("{one}/signing-secret")).await;
    assert_eq!(k3["key"], new.as_str());
    assert_eq!(k3["previousKey"], old.as_str());

    // After rotation: two v1 signatures, each key verifies.
    let (_, r) = app.post_empty(&p.admin, &format!("{one}/test")).await;
    assert_eq!(r["success"], true, "{r}");
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let sig = got[1].header("webhook-signature").unwrap();
    let parts: Vec<&str> = sig.split(' ').collect();
    assert_eq!(parts.len(), 2, "{sig}");
    assert!(parts.iter().all(|p| p.starts_with("v1,")), "{sig}");
    let headers = header_map_of(&got[1]);
    for key in [&new, &old] {
        standardwebhooks::Webhook::new(key)
            .unwrap()
            .verify(&got[1].body, &headers)
            .expect("both keys verify");
    }
    app.stop().await;
}

conformance!(test_webhook_sends_the_test_payload);

async fn test_webhook_sends_the_test_payload(backend: Backend) {
    let (app, p) = setup(backend).await;
    let rx = TestReceiver::start().await;
    let secret = "test-secret-Pq9Rs8";
    let url = format!("{}/unsaved?x=1", rx.url);
    let (s, r) = app
        .post(
            &p.admin,
            &format!("{HOOKS}/test"),
            json!({"url": url, "name": "modal", "secret": secret,
                   "headers": {"X-Team": "ml"}, "triggers": ["MODEL_TAG_CHANGED"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_no_secret(&r, &[secret]);
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["statusCode"], 200, "{r}");
    assert!(r["durationMs"].is_i64() || r["durationMs"].is_u64(), "{r}");
    assert!(r["error"].is_null(), "{r}");
    assert!(r["errorClass"].is_null(), "{r}");
    assert_eq!(r["request"]["url"], url.as_str());
    assert_eq!(r["request"]["headers"]["Authorization"], "********", "{r}");
    assert_eq!(r["request"]["headers"]["X-Team"], "ml", "{r}");
    assert_eq!(r["response"]["statusCode"], 200, "{r}");
    assert_eq!(r["response"]["body"], "ok", "{r}");
    assert!(r["response"]["headers"].is_object(), "{r}");

    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.path, "/unsaved?x=1");
    assert_eq!(req.header("authorization").as_deref(), Some(secret));
    assert_eq!(req.header("x-team").as_deref(), Some("ml"));
    assert_eq!(
        String::from_utf8_lossy(&req.body),
        r["request"]["body"].as_str().unwrap(),
        "the response shows the body exactly as sent"
    );
    let body = req.json();
    check_test_payload(&body, "acme", "fraud");

    // A saved webhook's Test sends the same payload, signed with its key.
    let hook = create(
        &app,
        json!({"name": "saved", "url": format!("{}/saved", rx.url),
               "triggers": ["MODEL_VERSION_DELETED"]}),
    )
    .await;
    let one = format!("{HOOKS}/{}", hook["id"].as_str().unwrap());
    let (s, r) = app.post_empty(&p.admin, &format!("{one}/test")).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["success"], true, "{r}");
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    check_test_payload(&got[1].json(), "acme", "fraud");
    assert_eq!(got[1].header("authorization"), None);
    let (_, key) = app.get(&p.admin, &format!("{one}/signing-secret")).await;
    standardwebhooks::Webhook::new(key["key"].as_str().unwrap())
        .unwrap()
        .verify(&got[1].body, &header_map_of(&got[1]))
        .expect("signature verifies");
    app.stop().await;
}

#[track_caller]
fn check_test_payload(body: &Value, ws: &str, model: &str) {
    let obj = body.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    let mut want = vec![
        "eventTrigger",
        "workspaceName",
        "registryModelName",
        "version",
        "tags",
        "deletedTags",
        "status",
        "oldStatus",
        "createdAt",
        "sourceExperimentKey",
    ];
    want.sort();
    assert_eq!(keys, want, "exactly the ten keys: {body}");
    assert_eq!(body["eventTrigger"], "TEST");
    assert_eq!(body["workspaceName"], ws);
    assert_eq!(body["registryModelName"], model);
    assert_eq!(body["version"], "1.2.3");
    assert_eq!(body["tags"], json!(["addedTag", "marketing"]));
    assert_eq!(body["deletedTags"], json!(["deletedTag"]));
    assert_eq!(body["status"], "Staging");
    assert_eq!(body["oldStatus"], "Development");
    assert_eq!(
        body["sourceExperimentKey"],
        "711e50b9e477498b91d32c024ffc802e"
    );
    let created = body["createdAt"].as_i64().expect("createdAt is a number");
    let want = now_secs() - 3600;
    assert!(
        (created - want).abs() <= 5,
        "createdAt {created}, want {want} ± 5"
    );
}

conformance!(test_webhook_failure_classes);

async fn test_webhook_failure_classes(backend: Backend) {
    let (app, p) = setup(backend).await;
    let rx = TestReceiver::start().await;
    let test = |url: String| {
        let app = &app;
        let token = p.admin.clone();
        async move {
            let (s, r) = app
                .post(&token, &format!("{HOOKS}/test"), json!({ "url": url }))
                .await;
            assert_eq!(s, StatusCode::OK, "{r}");
            r
        }
    };

    // 500: a failure with the answer visible.
    rx.script([Reply::status(500).body("boom: database on fire")]);
    let r = test(format!("{}/fail", rx.url)).await;
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["statusCode"], 500, "{r}");
    assert_eq!(r["errorClass"], "http_status", "{r}");
    assert!(r["error"].is_string(), "{r}");
    assert_eq!(r["response"]["statusCode"], 500, "{r}");
    assert_eq!(r["response"]["body"], "boom: database on fire", "{r}");

    // Closed port: connect.
    let port = closed_port().await;
    let r = test(format!("http://127.0.0.1:{port}/hook")).await;
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["errorClass"], "connect", "{r}");
    assert!(r["statusCode"].is_null(), "{r}");
    assert!(r["response"].is_null(), "{r}");
    assert!(r["error"].is_string(), "{r}");

    // 302: redirect, not followed.
    let before = rx.received().len();
    rx.script([Reply::status(302).header("location", &format!("{}/elsewhere", rx.url))]);
    let r = test(format!("{}/moved", rx.url)).await;
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["errorClass"], "redirect", "{r}");
    assert_eq!(r["statusCode"], 302, "{r}");
    // The call answers when its send is over, and the receiver records a request before it
    // answers it: a redirect followed would be here by now.
    let got = rx.received();
    assert_eq!(got.len(), before + 1, "the redirect is not followed");
    assert_eq!(got.last().unwrap().path, "/moved");

    // 204 counts as success.
    rx.script([Reply::status(204)]);
    let r = test(format!("{}/nocontent", rx.url)).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["statusCode"], 204, "{r}");
    app.stop().await;
}

conformance!(secrets_never_leave_the_server);

async fn secrets_never_leave_the_server(backend: Backend) {
    let (app, p) = setup(backend).await;
    let rx = TestReceiver::start().await;
    let native = "native-secret-7f3a9c1e";
    let comet = "comet-secret-b82d44e0";
    let put_secret = "put-secret-19ce77aa";
    let unsaved = "unsaved-secret-5a5a5a";
    let all = [native, comet, put_secret, unsaved];
    let mut seen: Vec<Value> = Vec::new();

    let (s, hook) = app
        .post(
            &p.admin,
            HOOKS,
            json!({"name": "n", "url": format!("{}/n", rx.url), "secret": native,
                   "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let id = hook["id"].as_str().unwrap().to_owned();
    let one = format!("{HOOKS}/{id}");
    seen.push(hook);
    let (s, b) = app
        .post(
            &p.admin,
            COMET,
            json!({"webhookConfigs": [{"workspaceName": "acme", "modelName": "fraud",
                "webhookUrls": [{"name": "c", "url": format!("{}/c", rx.url),
                                 "triggers": ["MODEL_VERSION_CREATED"],
                                 "header": {"Authorization": comet}}]}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    seen.push(b);

    // A delivery, so the delivery log has something to show.
    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;
    let got = rx.wait_for(2, Duration::from_secs(15)).await;
    let mut auths: Vec<String> = got
        .iter()
        .filter_map(|r| r.header("authorization"))
        .collect();
    auths.sort();
    let mut want = vec![comet.to_owned(), native.to_owned()];
    want.sort();
    assert_eq!(auths, want, "receivers get the secrets verbatim");

    for path in [
        HOOKS.to_owned(),
        one.clone(),
        format!("{COMET}?workspaceName=acme&modelName=fraud"),
        format!("{one}/signing-secret"),
        format!("{one}/deliveries"),
    ] {
        let (s, b) = app.get(&p.admin, &path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        seen.push(b);
    }
    // Wait until the delivery is recorded, then read its detail.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        let (_, b) = app.get(&p.admin, &format!("{one}/deliveries")).await;
        if let Some(d) = b["items"].as_array().and_then(|i| i.first()).cloned()
            && d["state"] != "pending"
        {
            seen.push(b);
            break d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery not done: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (s, b) = app
        .get(
            &p.admin,
            &format!("{one}/deliveries/{}", delivery["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    seen.push(b);
    let (_, b) = app.post_empty(&p.admin, &format!("{one}/test")).await;
    seen.push(b);
    let (_, b) = app
        .post(
            &p.admin,
            &format!("{HOOKS}/test"),
            json!({"url": format!("{}/u", rx.url), "secret": unsaved}),
        )
        .await;
    seen.push(b);
    let (_, b) = app
        .post(
            &p.admin,
            &format!("{HOOKS}/test"),
            json!({"url": format!("{}/u", rx.url), "webhookId": id}),
        )
        .await;
    seen.push(b);
    let mut body = hook_body("n", &format!("{}/n", rx.url));
    body["secret"] = json!(put_secret);
    let (s, b) = app.put(&p.admin, &one, body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    seen.push(b);
    // Refused requests do not echo the secret either.
    let (s, b) = app
        .post(
            &p.admin,
            HOOKS,
            json!({"name": "", "url": "https://example.com", "secret": native,
                   "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    seen.push(b);
    let (_, b) = app.get(&p.admin, &one).await;
    seen.push(b);
    for v in &seen {
        assert_no_secret(v, &all);
    }

    let (_, key) = app.get(&p.admin, &format!("{one}/signing-secret")).await;
    let signing_key = key["key"].as_str().expect("key").to_owned();
    let signing_raw = signing_key.trim_start_matches("whsec_").to_owned();
    let all = [native, comet, put_secret, unsaved, signing_raw.as_str()];

    if backend == Backend::Sqlite {
        let scan = |when: &str| {
            for file in ["berth.db", "berth.db-wal"] {
                let path = app.data_dir.path().join(file);
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                for s in all {
                    let hit = bytes.windows(s.len()).any(|w| w == s.as_bytes());
                    assert!(!hit, "{when}: clear secret {s:?} found in {file}");
                }
            }
        };
        assert!(app.data_dir.path().join("berth.db").exists());
        scan("while running");
        let dir = app.data_dir.path().to_owned();
        app.stop().await;
        for file in ["berth.db", "berth.db-wal"] {
            if let Ok(bytes) = std::fs::read(dir.join(file)) {
                for s in all {
                    let hit = bytes.windows(s.len()).any(|w| w == s.as_bytes());
                    assert!(!hit, "after stop: clear secret {s:?} found in {file}");
                }
            }
        }
    } else {
        app.stop().await;
    }
}

conformance!(metrics_are_prometheus_text_without_auth);

async fn metrics_are_prometheus_text_without_auth(backend: Backend) {
    let (app, p) = setup(backend).await;
    let rx = TestReceiver::start().await;
    app.post(
        &p.admin,
        &format!("{HOOKS}/test"),
        json!({"url": format!("{}/m", rx.url)}),
    )
    .await;
    let resp = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = resp.text().await.expect("text");
    for name in [
        "berth_delivery_attempts_total",
        "berth_delivery_attempt_duration_seconds",
        "berth_delivery_queue_depth",
        "berth_delivery_oldest_due_age_seconds",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(
        text.contains("# TYPE berth_delivery_attempts_total counter"),
        "{text}"
    );
    app.stop().await;
}
