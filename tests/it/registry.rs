//! Models, versions, tags, statuses, status requests and events.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, assert_error};

conformance!(
    event_payloads_exact,
    scripted_event_order,
    no_event_on_noops,
    semver_ordering_and_version_pagination,
    model_pagination_and_name_filter,
    event_pagination_and_polling,
    events_visible_despite_unrelated_open_transaction,
    model_rename_events_use_new_name,
    model_crud_and_conflicts,
    version_conflicts_and_delete,
    review_flow_approve,
    review_flow_reject,
    direct_status_rules,
    concurrent_version_creation,
    bad_version_input,
    bad_model_input,
    bad_tag_input,
    bad_status_input,
    bad_list_params,
    tag_validation_limits,
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn models_path(ws: &str) -> String {
    format!("/api/v1/workspaces/{ws}/models")
}

fn model_path(ws: &str, m: &str) -> String {
    format!("/api/v1/workspaces/{ws}/models/{m}")
}

fn versions_path(ws: &str, m: &str) -> String {
    format!("/api/v1/workspaces/{ws}/models/{m}/versions")
}

fn version_path(ws: &str, m: &str, v: &str) -> String {
    format!("/api/v1/workspaces/{ws}/models/{m}/versions/{v}")
}

/// Seconds since the epoch of an RFC 3339 UTC string (truncated), checking it is UTC.
#[track_caller]
fn secs(ts: &Value) -> i64 {
    let s = ts
        .as_str()
        .unwrap_or_else(|| panic!("timestamp not a string: {ts}"));
    assert!(
        s.ends_with('Z') || s.ends_with("+00:00"),
        "timestamp not UTC: {s}"
    );
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("not RFC 3339: {s}: {e}"))
        .timestamp()
}

/// Sorts the set-valued fields of a payload so payloads can be compared as whole objects.
fn norm(mut p: Value) -> Value {
    for k in ["tags", "deletedTags"] {
        if let Some(arr) = p.get_mut(k).and_then(Value::as_array_mut) {
            arr.sort_by_key(Value::to_string);
        }
    }
    p
}

const PAYLOAD_KEYS: [&str; 10] = [
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

/// Checks the envelope of every event and answers their payloads.
#[track_caller]
fn payloads(events: &[Value]) -> Vec<Value> {
    let mut ids = BTreeSet::new();
    for e in events {
        let obj = e.as_object().expect("event is an object");
        for k in ["id", "eventTrigger", "occurredAt", "payload"] {
            assert!(obj.contains_key(k), "event lacks {k}: {e}");
        }
        assert!(ids.insert(e["id"].to_string()), "duplicate event id: {e}");
        assert_eq!(e["eventTrigger"], e["payload"]["eventTrigger"], "{e}");
        secs(&e["occurredAt"]);
        let keys: BTreeSet<&str> = e["payload"]
            .as_object()
            .expect("payload is an object")
            .keys()
            .map(String::as_str)
            .collect();
        let want: BTreeSet<&str> = PAYLOAD_KEYS.into_iter().collect();
        assert_eq!(keys, want, "payload keys: {e}");
        assert!(e["payload"]["version"].is_string(), "{e}");
        assert!(e["payload"]["createdAt"].is_i64(), "{e}");
    }
    events.iter().map(|e| e["payload"].clone()).collect()
}

fn triggers(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["eventTrigger"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn expected(
    trigger: &str,
    ws: &str,
    model: &str,
    version: &Value,
    tags: Value,
    deleted: Value,
    status: Value,
    old_status: Value,
) -> Value {
    norm(json!({
        "eventTrigger": trigger,
        "workspaceName": ws,
        "registryModelName": model,
        "version": version["version"],
        "tags": tags,
        "deletedTags": deleted,
        "status": status,
        "oldStatus": old_status,
        "createdAt": secs(&version["createdAt"]),
        "sourceExperimentKey": version["sourceExperimentKey"],
    }))
}

/// Every event of `ws`, waiting up to ten seconds for at least `n` to be readable.
///
/// On PostgreSQL an event shows once the transactions of its database that were running when
/// it committed have finished (`store/events.rs`, `list_events`): at once here, but a worker
/// transaction may still be open for a moment; waiting keeps that from failing a test.
async fn evs(app: &TestApp, ws: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = app.all_events(ADMIN_TOKEN, ws).await;
        if got.len() >= n || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `events_after(acme, after, 2)`, read again (for at most 10 s) until it holds at least
/// `want` events.
async fn settled_page(
    app: &TestApp,
    after: Option<&str>,
    want: usize,
) -> (Vec<Value>, Option<String>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = events_after(app, "acme", after, 2).await;
        if page.0.len() >= want || std::time::Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn events_after(
    app: &TestApp,
    ws: &str,
    after: Option<&str>,
    limit: u32,
) -> (Vec<Value>, Option<String>) {
    let path = match after {
        Some(c) => format!("/api/v1/workspaces/{ws}/events?limit={limit}&after={c}"),
        None => format!("/api/v1/workspaces/{ws}/events?limit={limit}"),
    };
    let (s, b) = app.get(ADMIN_TOKEN, &path).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (
        b["items"].as_array().expect("items").clone(),
        b["nextCursor"].as_str().map(str::to_owned),
    )
}

async fn version_list(app: &TestApp, ws: &str, m: &str) -> Vec<String> {
    let (s, b) = app.get(ADMIN_TOKEN, &versions_path(ws, m)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_owned())
        .collect()
}

/// A workspace `ws` with model `m`, a workspace admin `boss` and a member `joe`; answers their
/// tokens.
async fn setup(app: &TestApp, ws: &str, m: &str) -> (String, String) {
    app.workspace(ws).await;
    app.model(ws, m).await;
    let boss = app.user(&format!("{ws}-boss")).await;
    let joe = app.user(&format!("{ws}-joe")).await;
    app.add_member(ws, &format!("{ws}-boss"), "admin").await;
    app.add_member(ws, &format!("{ws}-joe"), "member").await;
    (boss, joe)
}

// ---------------------------------------------------------------------------------------------
// Events

async fn event_payloads_exact(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (boss, joe) = setup(&app, "acme", "fraud").await;
    let vp = version_path("acme", "fraud", "1.2.3");

    // CREATED
    let (s, v) = app
        .post(
            &joe,
            &versions_path("acme", "fraud"),
            json!({"version": "1.2.3", "tags": ["a", "b"], "status": "Development",
                   "sourceExperimentKey": "exp-42", "description": "first"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["version"], "1.2.3");
    assert_eq!(v["status"], "Development");
    assert_eq!(v["sourceExperimentKey"], "exp-42");
    assert_eq!(v["description"], "first");
    let tagset: BTreeSet<&str> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tagset, BTreeSet::from(["a", "b"]));
    secs(&v["createdAt"]);
    secs(&v["updatedAt"]);

    // TAG_CHANGED
    let (s, t) = app
        .patch(
            &joe,
            &format!("{vp}/tags"),
            json!({"add": ["c"], "remove": ["a", "zz"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(norm(t.clone())["tags"], json!(["b", "c"]));

    // STATUS_CHANGED (direct, by a member)
    let (s, b) = app
        .put(&joe, &format!("{vp}/status"), json!({"status": "Staging"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "Staging");

    // STATUS_CHANGE_REQUESTED
    let (s, req) = app
        .post(
            &joe,
            &format!("{vp}/status-requests"),
            json!({"status": "Production", "comment": "ship it"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{req}");

    // STATUS_CHANGED (approval)
    let id = req["id"].as_str().unwrap();
    let (s, b) = app
        .post_empty(
            &boss,
            &format!("/api/v1/workspaces/acme/status-requests/{id}/approve"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // STATUS_CHANGED (cleared with null, by the admin)
    let (s, b) = app
        .put(&boss, &format!("{vp}/status"), json!({"status": null}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], Value::Null);

    // DELETED
    let (s, b) = app.delete(&boss, &vp).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");

    let events = evs(&app, "acme", 7).await;
    let got: Vec<Value> = payloads(&events).into_iter().map(norm).collect();
    assert_eq!(got.len(), 7, "{events:#?}");
    let ws = "acme";
    let m = "fraud";
    assert_eq!(
        got[0],
        expected(
            "MODEL_VERSION_CREATED",
            ws,
            m,
            &v,
            json!(["a", "b"]),
            json!([]),
            json!("Development"),
            Value::Null
        )
    );
    // oldStatus of MODEL_TAG_CHANGED is not defined by the spec: null or the unchanged status.
    let mut tag_ev = got[1].clone();
    let old = tag_ev["oldStatus"].take();
    assert!(old.is_null() || old == "Development", "{}", got[1]);
    tag_ev["oldStatus"] = Value::Null;
    assert_eq!(
        tag_ev,
        expected(
            "MODEL_TAG_CHANGED",
            ws,
            m,
            &v,
            json!(["b", "c"]),
            json!(["a"]),
            json!("Development"),
            Value::Null
        )
    );
    assert_eq!(
        got[2],
        expected(
            "MODEL_STATUS_CHANGED",
            ws,
            m,
            &v,
            json!(["b", "c"]),
            json!([]),
            json!("Staging"),
            json!("Development")
        )
    );
    assert_eq!(
        got[3],
        expected(
            "MODEL_STATUS_CHANGE_REQUESTED",
            ws,
            m,
            &v,
            json!(["b", "c"]),
            json!([]),
            json!("Production"),
            json!("Staging")
        )
    );
    assert_eq!(
        got[4],
        expected(
            "MODEL_STATUS_CHANGED",
            ws,
            m,
            &v,
            json!(["b", "c"]),
            json!([]),
            json!("Production"),
            json!("Staging")
        )
    );
    assert_eq!(
        got[5],
        expected(
            "MODEL_STATUS_CHANGED",
            ws,
            m,
            &v,
            json!(["b", "c"]),
            json!([]),
            Value::Null,
            json!("Production")
        )
    );
    assert_eq!(
        got[6],
        expected(
            "MODEL_VERSION_DELETED",
            ws,
            m,
            &v,
            json!(["b", "c"]),
            json!([]),
            Value::Null,
            Value::Null
        )
    );

    // A version without a source experiment: sourceExperimentKey is null; a pre-release
    // version number is still a string.
    let v2 = app
        .version("acme", "fraud", json!({"version": "2.0.0-rc.1"}))
        .await;
    assert_eq!(v2["sourceExperimentKey"], Value::Null);
    let events = evs(&app, "acme", 8).await;
    let last = norm(payloads(&events).pop().unwrap());
    assert_eq!(
        last,
        expected(
            "MODEL_VERSION_CREATED",
            ws,
            m,
            &v2,
            json!([]),
            json!([]),
            Value::Null,
            Value::Null
        )
    );
    assert_eq!(last["sourceExperimentKey"], Value::Null);
    app.stop().await;
}

async fn scripted_event_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (boss, joe) = setup(&app, "acme", "m1").await;
    app.model("acme", "m2").await;
    app.version("acme", "m1", json!({"version": "1.0.0"})).await;
    app.version("acme", "m2", json!({"version": "0.1.0"})).await;
    let (s, _) = app
        .patch(
            &joe,
            &format!("{}/tags", version_path("acme", "m1", "1.0.0")),
            json!({"add": ["x"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .put(
            &joe,
            &format!("{}/status", version_path("acme", "m2", "0.1.0")),
            json!({"status": "Staging"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = app
        .post(
            &joe,
            &format!("{}/status-requests", version_path("acme", "m1", "1.0.0")),
            json!({"status": "Production"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    app.version("acme", "m1", json!({"version": "1.1.0"})).await;
    let id = r["id"].as_str().unwrap();
    let (s, b) = app
        .post_empty(
            &boss,
            &format!(
                "{}/status-requests/{id}/approve",
                version_path("acme", "m1", "1.0.0")
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = app
        .delete(&boss, &version_path("acme", "m2", "0.1.0"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let events = evs(&app, "acme", 8).await;
    let p = payloads(&events);
    let summary: Vec<(String, String, String)> = p
        .iter()
        .map(|e| {
            (
                e["eventTrigger"].as_str().unwrap().to_owned(),
                e["registryModelName"].as_str().unwrap().to_owned(),
                e["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("MODEL_VERSION_CREATED", "m1", "1.0.0"),
        ("MODEL_VERSION_CREATED", "m2", "0.1.0"),
        ("MODEL_TAG_CHANGED", "m1", "1.0.0"),
        ("MODEL_STATUS_CHANGED", "m2", "0.1.0"),
        ("MODEL_STATUS_CHANGE_REQUESTED", "m1", "1.0.0"),
        ("MODEL_VERSION_CREATED", "m1", "1.1.0"),
        ("MODEL_STATUS_CHANGED", "m1", "1.0.0"),
        ("MODEL_VERSION_DELETED", "m2", "0.1.0"),
    ]
    .iter()
    .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
    .collect();
    assert_eq!(summary, want);
    // Events of another workspace are not mixed in.
    app.workspace("other").await;
    app.model("other", "m1").await;
    app.version("other", "m1", json!({"version": "9.9.9"}))
        .await;
    assert_eq!(evs(&app, "acme", 8).await.len(), 8);
    assert_eq!(evs(&app, "other", 1).await.len(), 1);
    app.stop().await;
}

async fn no_event_on_noops(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (boss, joe) = setup(&app, "acme", "m").await;
    app.version(
        "acme",
        "m",
        json!({"version": "1.0.0", "tags": ["a", "b"], "status": "Staging"}),
    )
    .await;
    let vp = version_path("acme", "m", "1.0.0");
    let before = evs(&app, "acme", 1).await.len();
    assert_eq!(before, 1);
    for body in [
        json!({"add": ["a"]}),
        json!({"remove": ["nope"]}),
        json!({"add": ["b", "a"], "remove": ["zzz"]}),
        json!({}),
        json!({"add": [], "remove": []}),
        json!({"add": ["a", "a"]}),
    ] {
        let (s, b) = app.patch(&joe, &format!("{vp}/tags"), body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body}: {b}");
        let tags: BTreeSet<&str> = b["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(tags, BTreeSet::from(["a", "b"]), "{body}");
    }
    // The same status again, by a member and by an admin.
    let (s, b) = app
        .put(&joe, &format!("{vp}/status"), json!({"status": "Staging"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .put(&boss, &format!("{vp}/status"), json!({"status": "Staging"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        evs(&app, "acme", 1).await.len(),
        before,
        "no-ops wrote events"
    );
    // Clearing twice: one event.
    let (s, _) = app
        .put(&joe, &format!("{vp}/status"), json!({"status": null}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .put(&joe, &format!("{vp}/status"), json!({"status": null}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let ev = evs(&app, "acme", 2).await;
    assert_eq!(
        triggers(&ev),
        ["MODEL_VERSION_CREATED", "MODEL_STATUS_CHANGED"]
    );
    // Approving a request for the status the version already has changes nothing.
    let (s, _) = app
        .put(
            &boss,
            &format!("{vp}/status"),
            json!({"status": "Production"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = app
        .post(
            &joe,
            &format!("{vp}/status-requests"),
            json!({"status": "Production"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap();
    let (s, b) = app
        .post_empty(
            &boss,
            &format!("/api/v1/workspaces/acme/status-requests/{id}/approve"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let ev = evs(&app, "acme", 4).await;
    assert_eq!(
        triggers(&ev),
        [
            "MODEL_VERSION_CREATED",
            "MODEL_STATUS_CHANGED",
            "MODEL_STATUS_CHANGED",
            "MODEL_STATUS_CHANGE_REQUESTED"
        ]
    );
    app.stop().await;
}

async fn event_pagination_and_polling(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    // No events yet.
    let (items, _) = events_after(&app, "acme", None, 2).await;
    assert!(items.is_empty());
    for i in 0..5 {
        app.version("acme", "m", json!({"version": format!("1.0.{i}")}))
            .await;
    }
    evs(&app, "acme", 5).await;
    // Walk with limit=2. (On PostgreSQL a page may briefly show fewer events than have
    // committed: the feed horizon waits for transactions it cannot place, see
    // `FEED_HORIZON`; `settled_page` reads again until the page holds what is there.)
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let want = (5 - seen.len()).min(2);
        let (items, next) = settled_page(&app, cursor.as_deref(), want).await;
        assert!(items.len() <= 2);
        pages.push(items.len());
        if items.is_empty() {
            assert!(
                next.is_some(),
                "nextCursor must be present even on the last page"
            );
            cursor = next;
            break;
        }
        seen.extend(items);
        assert!(next.is_some(), "nextCursor missing");
        cursor = next;
    }
    assert_eq!(pages, [2, 2, 1, 0]);
    let versions: Vec<&str> = seen
        .iter()
        .map(|e| e["payload"]["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4"]);
    // Polling: nothing new until something happens; then exactly the new event.
    let c = cursor.unwrap();
    let (items, next) = events_after(&app, "acme", Some(&c), 2).await;
    assert!(items.is_empty());
    assert_eq!(
        next.as_deref(),
        Some(c.as_str()),
        "re-read must keep the cursor"
    );
    app.version("acme", "m", json!({"version": "1.0.5"})).await;
    evs(&app, "acme", 6).await;
    let (items, next) = settled_page(&app, Some(&c), 1).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["payload"]["version"], "1.0.5");
    let (items, _) = events_after(&app, "acme", next.as_deref(), 2).await;
    assert!(items.is_empty());
    // Default limit and the full list agree.
    let (s, b) = app.get(ADMIN_TOKEN, "/api/v1/workspaces/acme/events").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"].as_array().unwrap().len(), 6);
    app.stop().await;
}

/// A change's event is readable once the change has been answered, whatever unrelated
/// transactions are running elsewhere. On PostgreSQL a transaction is held open (with an
/// xid) in another database of the same cluster while the change happens.
async fn events_visible_despite_unrelated_open_transaction(backend: Backend) {
    use sqlx::Connection;
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    app.version("acme", "m", json!({"version": "1.0.0"})).await;
    assert_eq!(evs(&app, "acme", 1).await.len(), 1);
    let mut other = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&crate::helpers::pg_base_url())
                .await
                .expect("connect to PostgreSQL");
            sqlx::query("BEGIN")
                .execute(&mut conn)
                .await
                .expect("begin");
            sqlx::query("SELECT pg_current_xact_id()")
                .execute(&mut conn)
                .await
                .expect("take an xid");
            Some(conn)
        }
    };
    app.version("acme", "m", json!({"version": "1.0.1"})).await;
    let (s, v) = app
        .patch(
            ADMIN_TOKEN,
            &format!("{}/tags", version_path("acme", "m", "1.0.1")),
            json!({"add": ["t"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Read without waiting: the committed changes must be there.
    let got = app.all_events(ADMIN_TOKEN, "acme").await;
    let seen = triggers(&got);
    if let Some(mut conn) = other.take() {
        let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        let _ = conn.close().await;
    }
    assert_eq!(
        seen,
        [
            "MODEL_VERSION_CREATED",
            "MODEL_VERSION_CREATED",
            "MODEL_TAG_CHANGED"
        ],
        "events of committed changes are hidden while an unrelated transaction is open"
    );
    app.stop().await;
}

async fn concurrent_version_creation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let url = format!("{}{}", app.base, versions_path("acme", "m"));
    let events_url = format!("{}/api/v1/workspaces/acme/events", app.base);

    // A reader polling with its cursor while the writers run: it must miss nothing and see
    // nothing twice.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let client = app.client.clone();
        let done = done.clone();
        let events_url = events_url.clone();
        tokio::spawn(async move {
            let mut seen: Vec<Value> = Vec::new();
            let mut cursor: Option<String> = None;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let url = match &cursor {
                    Some(c) => format!("{events_url}?limit=3&after={c}"),
                    None => format!("{events_url}?limit=3"),
                };
                let resp = client
                    .get(&url)
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .expect("events");
                assert_eq!(resp.status(), StatusCode::OK);
                let b: Value = resp.json().await.expect("json");
                let items = b["items"].as_array().unwrap().clone();
                if let Some(c) = b["nextCursor"].as_str() {
                    cursor = Some(c.to_owned());
                }
                let empty = items.is_empty();
                seen.extend(items);
                if (finished && empty && seen.len() >= 20) || std::time::Instant::now() > deadline {
                    break;
                }
                if empty {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
            seen
        })
    };

    let mut handles = Vec::new();
    for i in 0..20 {
        let client = app.client.clone();
        let url = url.clone();
        handles.push(tokio::spawn(async move {
            let resp = client
                .post(&url)
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"version": format!("3.{i}.0"), "tags": [format!("t{i}")]}))
                .send()
                .await
                .expect("request");
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body)
        }));
    }
    let mut created = BTreeSet::new();
    for h in handles {
        let (s, b) = h.await.expect("join");
        assert_eq!(s, StatusCode::CREATED, "{b}");
        created.insert(b["version"].as_str().unwrap().to_owned());
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(created.len(), 20);

    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{}?limit=7&cursor={c}", versions_path("acme", "m")),
            None => format!("{}?limit=7", versions_path("acme", "m")),
        };
        let (s, b) = app.get(ADMIN_TOKEN, &path).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        listed.extend(
            b["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["version"].as_str().unwrap().to_owned()),
        );
        match b["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let want: Vec<String> = (0..20).rev().map(|i| format!("3.{i}.0")).collect();
    assert_eq!(listed, want, "versions newest first");

    let events = evs(&app, "acme", 20).await;
    let p = payloads(&events);
    assert_eq!(p.len(), 20, "{}", triggers(&events).join(","));
    assert!(
        p.iter()
            .all(|e| e["eventTrigger"] == "MODEL_VERSION_CREATED")
    );
    let ev_versions: BTreeSet<String> = p
        .iter()
        .map(|e| e["version"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ev_versions, created);
    for e in &p {
        let i = e["version"].as_str().unwrap().split('.').nth(1).unwrap();
        assert_eq!(e["tags"], json!([format!("t{i}")]), "{e}");
    }

    let polled = reader.await.expect("reader");
    let polled_ids: Vec<String> = polled.iter().map(|e| e["id"].to_string()).collect();
    let all_ids: Vec<String> = events.iter().map(|e| e["id"].to_string()).collect();
    assert_eq!(
        polled_ids, all_ids,
        "a polling reader saw a different sequence than the final one"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Versions

async fn semver_ordering_and_version_pagination(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    // The spec's example, created out of order.
    for v in [
        "1.2.0",
        "2.0.0-rc.1",
        "10.0.0",
        "1.10.0",
        "2.0.0",
        "2.0.0-rc.2",
    ] {
        app.version("acme", "m", json!({"version": v})).await;
    }
    assert_eq!(
        version_list(&app, "acme", "m").await,
        [
            "10.0.0",
            "2.0.0",
            "2.0.0-rc.2",
            "2.0.0-rc.1",
            "1.10.0",
            "1.2.0"
        ]
    );
    // limit=2 pages through them, with nextCursor null on the last page.
    let mut cursor: Option<String> = None;
    let mut pages: Vec<Vec<String>> = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("{}?limit=2&cursor={c}", versions_path("acme", "m")),
            None => format!("{}?limit=2", versions_path("acme", "m")),
        };
        let (s, b) = app.get(ADMIN_TOKEN, &path).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        pages.push(
            b["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["version"].as_str().unwrap().to_owned())
                .collect(),
        );
        match b["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    let flat: Vec<String> = pages.iter().flatten().cloned().collect();
    assert_eq!(
        flat,
        [
            "10.0.0",
            "2.0.0",
            "2.0.0-rc.2",
            "2.0.0-rc.1",
            "1.10.0",
            "1.2.0"
        ]
    );
    assert!(
        pages.iter().all(|p| p.len() <= 2 && !p.is_empty()),
        "{pages:?}"
    );

    // latestVersion follows semver precedence.
    let (s, m) = app.get(ADMIN_TOKEN, &model_path("acme", "m")).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(
        m["latestVersion"],
        json!({"version": "10.0.0", "status": null, "tags": []})
    );

    // semver.org's precedence example, on a second model.
    app.model("acme", "s").await;
    let asc = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.2.0",
        "1.10.0",
        "2.0.0-0",
        "2.0.0-a-b",
        "2.0.0",
        "10.0.0",
    ];
    // Create them shuffled so creation order does not give the answer away.
    let mut order: Vec<&str> = asc.to_vec();
    order.sort_by_key(|v| v.len() * 7 % 5);
    for v in &order {
        app.version("acme", "s", json!({"version": v})).await;
    }
    let want: Vec<&str> = asc.iter().rev().copied().collect();
    assert_eq!(version_list(&app, "acme", "s").await, want);
    let (_, m) = app.get(ADMIN_TOKEN, &model_path("acme", "s")).await;
    assert_eq!(m["latestVersion"]["version"], "10.0.0");

    // A model with only pre-releases: the newest pre-release is latest.
    app.model("acme", "p").await;
    let (_, m) = app.get(ADMIN_TOKEN, &model_path("acme", "p")).await;
    assert_eq!(m["latestVersion"], Value::Null);
    app.version(
        "acme",
        "p",
        json!({"version": "2.0.0-rc.10", "tags": ["x"], "status": "Staging"}),
    )
    .await;
    app.version("acme", "p", json!({"version": "2.0.0-rc.9"}))
        .await;
    let (_, m) = app.get(ADMIN_TOKEN, &model_path("acme", "p")).await;
    assert_eq!(
        m["latestVersion"],
        json!({"version": "2.0.0-rc.10", "status": "Staging", "tags": ["x"]})
    );
    app.stop().await;
}

async fn version_conflicts_and_delete(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (boss, joe) = setup(&app, "acme", "m").await;
    let v = app.version("acme", "m", json!({"version": "1.0.0"})).await;
    assert!(v["createdBy"].is_string(), "{v}");
    // Duplicate: 409, no second event.
    let got = app
        .post(
            &joe,
            &versions_path("acme", "m"),
            json!({"version": "1.0.0"}),
        )
        .await;
    assert_error(&got, 409, None);
    assert_eq!(version_list(&app, "acme", "m").await, ["1.0.0"]);
    assert_eq!(evs(&app, "acme", 1).await.len(), 1);
    // GET one version.
    let (s, b) = app.get(&joe, &version_path("acme", "m", "1.0.0")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["version"], "1.0.0");
    let got = app.get(&joe, &version_path("acme", "m", "9.9.9")).await;
    assert_error(&got, 404, None);
    let got = app.get(&joe, &versions_path("acme", "nope")).await;
    assert_error(&got, 404, None);
    // Members may not delete versions.
    let got = app.delete(&joe, &version_path("acme", "m", "1.0.0")).await;
    assert_error(&got, 403, None);
    assert_eq!(version_list(&app, "acme", "m").await, ["1.0.0"]);
    assert_eq!(evs(&app, "acme", 1).await.len(), 1);
    // Model delete while it has versions: 409.
    let got = app.delete(&boss, &model_path("acme", "m")).await;
    assert_error(&got, 409, None);
    // Admin deletes; deleting again is 404 without a second event.
    let (s, _) = app.delete(&boss, &version_path("acme", "m", "1.0.0")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let got = app.delete(&boss, &version_path("acme", "m", "1.0.0")).await;
    assert_error(&got, 404, None);
    let ev = evs(&app, "acme", 2).await;
    assert_eq!(
        triggers(&ev),
        ["MODEL_VERSION_CREATED", "MODEL_VERSION_DELETED"]
    );
    // The number is free again.
    app.version("acme", "m", json!({"version": "1.0.0"})).await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Models

async fn model_crud_and_conflicts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (boss, joe) = setup(&app, "acme", "first").await;
    let (s, m) = app
        .post(
            &joe,
            &models_path("acme"),
            json!({"name": "second", "description": "d"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    assert_eq!(m["name"], "second");
    assert_eq!(m["description"], "d");
    assert_eq!(m["latestVersion"], Value::Null);
    secs(&m["createdAt"]);
    secs(&m["updatedAt"]);
    let got = app
        .post(&joe, &models_path("acme"), json!({"name": "second"}))
        .await;
    assert_error(&got, 409, None);
    let (s, m) = app.get(&joe, &model_path("acme", "second")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(m["description"], "d");
    // PATCH description only.
    let (s, m) = app
        .patch(
            &joe,
            &model_path("acme", "second"),
            json!({"description": "new"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["name"], "second");
    assert_eq!(m["description"], "new");
    // Rename onto a taken name: 409, nothing changes.
    let got = app
        .patch(
            &joe,
            &model_path("acme", "second"),
            json!({"name": "first"}),
        )
        .await;
    assert_error(&got, 409, None);
    let (s, m) = app.get(&joe, &model_path("acme", "second")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(m["description"], "new");
    // Delete: members 403, admins 204, then 404.
    let got = app.delete(&joe, &model_path("acme", "second")).await;
    assert_error(&got, 403, None);
    let (s, _) = app.get(&joe, &model_path("acme", "second")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = app.delete(&boss, &model_path("acme", "second")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let got = app.get(&joe, &model_path("acme", "second")).await;
    assert_error(&got, 404, None);
    let got = app.delete(&boss, &model_path("acme", "second")).await;
    assert_error(&got, 404, None);
    // The name can be used again; the same name in another workspace is fine.
    app.model("acme", "second").await;
    app.workspace("other").await;
    app.model("other", "second").await;
    // A 100-character name is fine.
    app.model("acme", &"a".repeat(100)).await;
    app.stop().await;
}

async fn model_pagination_and_name_filter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    let names = [
        "beta", "Zeta", "alpha", "alpha-2", "a_b", "axb", "gamma.1", "Beta2", "delta",
    ];
    for n in names {
        app.model("acme", n).await;
    }
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort();
    let walk = |filter: &'static str| {
        let app = &app;
        async move {
            let mut out: Vec<String> = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..20 {
                let mut path = format!("{}?limit=2", models_path("acme"));
                if !filter.is_empty() {
                    path.push_str(&format!("&name={filter}"));
                }
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let (s, b) = app.get(ADMIN_TOKEN, &path).await;
                assert_eq!(s, StatusCode::OK, "{b}");
                let items = b["items"].as_array().unwrap();
                assert!(items.len() <= 2);
                out.extend(items.iter().map(|m| m["name"].as_str().unwrap().to_owned()));
                match b["nextCursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => return out,
                }
            }
            panic!("pagination does not end");
        }
    };
    assert_eq!(walk("").await, sorted);
    // Substring filter.
    assert_eq!(walk("lph").await, ["alpha", "alpha-2"]);
    assert_eq!(walk("eta").await, ["Beta2", "Zeta", "beta"]);
    // '_' and '.' are literal, not wildcards.
    assert_eq!(walk("a_b").await, ["a_b"]);
    assert_eq!(walk("a.1").await, ["gamma.1"]);
    assert!(walk("nothing").await.is_empty());
    // Default page.
    let (s, b) = app.get(ADMIN_TOKEN, &models_path("acme")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["items"].as_array().unwrap().len(), names.len());
    assert_eq!(b["nextCursor"], Value::Null);
    app.stop().await;
}

async fn model_rename_events_use_new_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (boss, joe) = setup(&app, "acme", "old-name").await;
    app.version("acme", "old-name", json!({"version": "1.0.0"}))
        .await;
    let (s, r) = app
        .post(
            &joe,
            &format!(
                "{}/status-requests",
                version_path("acme", "old-name", "1.0.0")
            ),
            json!({"status": "Production"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let (s, m) = app
        .patch(
            &joe,
            &model_path("acme", "old-name"),
            json!({"name": "new-name"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["name"], "new-name");
    assert_eq!(m["latestVersion"]["version"], "1.0.0");
    let got = app.get(&joe, &model_path("acme", "old-name")).await;
    assert_error(&got, 404, None);
    let vp = version_path("acme", "new-name", "1.0.0");
    let (s, _) = app
        .patch(&joe, &format!("{vp}/tags"), json!({"add": ["t"]}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .put(&joe, &format!("{vp}/status"), json!({"status": "Staging"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let id = r["id"].as_str().unwrap();
    let (s, b) = app
        .post_empty(
            &boss,
            &format!("/api/v1/workspaces/acme/status-requests/{id}/approve"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["modelName"], "new-name");
    app.version("acme", "new-name", json!({"version": "1.1.0"}))
        .await;
    let (s, _) = app.delete(&boss, &vp).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let ev = evs(&app, "acme", 7).await;
    let names: Vec<&str> = ev
        .iter()
        .map(|e| e["payload"]["registryModelName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "old-name", "old-name", "new-name", "new-name", "new-name", "new-name", "new-name"
        ]
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Statuses and the review flow

async fn review_flow_approve(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (boss, joe) = setup(&app, "acme", "m").await;
    app.version(
        "acme",
        "m",
        json!({"version": "1.0.0", "status": "Staging"}),
    )
    .await;
    let vp = version_path("acme", "m", "1.0.0");
    // A member may not set Production directly.
    let got = app
        .put(
            &joe,
            &format!("{vp}/status"),
            json!({"status": "Production"}),
        )
        .await;
    assert_error(&got, 403, None);
    // Nor create a version with it.
    let got = app
        .post(
            &joe,
            &versions_path("acme", "m"),
            json!({"version": "1.0.1", "status": "Production"}),
        )
        .await;
    assert_error(&got, 403, None);
    assert_eq!(version_list(&app, "acme", "m").await, ["1.0.0"]);
    assert_eq!(evs(&app, "acme", 1).await.len(), 1);
    // The member requests it.
    let (s, r) = app
        .post(
            &joe,
            &format!("{vp}/status-requests"),
            json!({"status": "Production", "comment": "please"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["status"], "Production");
    assert_eq!(r["state"], "pending");
    assert_eq!(r["requestedBy"], "acme-joe");
    assert!(r["id"].is_string());
    secs(&r["createdAt"]);
    let id = r["id"].as_str().unwrap().to_owned();
    // The status is unchanged while pending.
    let (_, v) = app.get(&joe, &vp).await;
    assert_eq!(v["status"], "Staging");
    // Review queues.
    let (s, b) = app
        .get(
            &joe,
            "/api/v1/workspaces/acme/status-requests?state=pending",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let ids: Vec<&str> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let (s, b) = app.get(&joe, &format!("{vp}/status-requests")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"].as_array().unwrap().len(), 1);
    assert_eq!(b["items"][0]["id"], id.as_str());
    // Members may not approve, on either path.
    let got = app
        .post_empty(
            &joe,
            &format!("/api/v1/workspaces/acme/status-requests/{id}/approve"),
        )
        .await;
    assert_error(&got, 403, None);
    let got = app
        .post_empty(&joe, &format!("{vp}/status-requests/{id}/approve"))
        .await;
    assert_error(&got, 403, None);
    let (_, v) = app.get(&joe, &vp).await;
    assert_eq!(v["status"], "Staging");
    // The admin approves.
    let (s, b) = app
        .post_empty(
            &boss,
            &format!("/api/v1/workspaces/acme/status-requests/{id}/approve"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "approved");
    assert_eq!(b["id"], id.as_str());
    let (_, v) = app.get(&joe, &vp).await;
    assert_eq!(v["status"], "Production");
    let (_, m) = app.get(&joe, &model_path("acme", "m")).await;
    assert_eq!(m["latestVersion"]["status"], "Production");
    // Deciding twice: 409, on both paths, for approve and reject.
    for path in [
        format!("/api/v1/workspaces/acme/status-requests/{id}/approve"),
        format!("/api/v1/workspaces/acme/status-requests/{id}/reject"),
        format!("{vp}/status-requests/{id}/approve"),
        format!("{vp}/status-requests/{id}/reject"),
    ] {
        let got = app.post_empty(&boss, &path).await;
        assert_error(&got, 409, None);
    }
    // Unknown request id: 404.
    let got = app
        .post_empty(
            &boss,
            "/api/v1/workspaces/acme/status-requests/nope/approve",
        )
        .await;
    assert_error(&got, 404, None);
    let (_, b) = app
        .get(
            &joe,
            "/api/v1/workspaces/acme/status-requests?state=pending",
        )
        .await;
    assert!(b["items"].as_array().unwrap().is_empty(), "{b}");
    let (_, b) = app
        .get(
            &joe,
            "/api/v1/workspaces/acme/status-requests?state=approved",
        )
        .await;
    assert_eq!(b["items"].as_array().unwrap().len(), 1, "{b}");
    let ev = evs(&app, "acme", 3).await;
    assert_eq!(
        triggers(&ev),
        [
            "MODEL_VERSION_CREATED",
            "MODEL_STATUS_CHANGE_REQUESTED",
            "MODEL_STATUS_CHANGED"
        ]
    );
    assert_eq!(ev[1]["payload"]["status"], "Production");
    assert_eq!(ev[1]["payload"]["oldStatus"], "Staging");
    assert_eq!(ev[2]["payload"]["status"], "Production");
    assert_eq!(ev[2]["payload"]["oldStatus"], "Staging");

    // The version-scoped approve path works too.
    app.version("acme", "m", json!({"version": "2.0.0"})).await;
    let vp2 = version_path("acme", "m", "2.0.0");
    let (s, r) = app
        .post(
            &joe,
            &format!("{vp2}/status-requests"),
            json!({"status": "Production"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id2 = r["id"].as_str().unwrap();
    // ...but not through another version's path.
    let got = app
        .post_empty(&boss, &format!("{vp}/status-requests/{id2}/approve"))
        .await;
    assert!(got.0 == StatusCode::NOT_FOUND, "{got:?}");
    let (s, b) = app
        .post_empty(&boss, &format!("{vp2}/status-requests/{id2}/approve"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, v) = app.get(&joe, &vp2).await;
    assert_eq!(v["status"], "Production");
    let ev = evs(&app, "acme", 6).await;
    let last = ev.last().unwrap();
    assert_eq!(last["eventTrigger"], "MODEL_STATUS_CHANGED");
    assert_eq!(last["payload"]["oldStatus"], Value::Null);
    assert_eq!(last["payload"]["version"], "2.0.0");
    app.stop().await;
}

async fn review_flow_reject(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (boss, joe) = setup(&app, "acme", "m").await;
    app.version(
        "acme",
        "m",
        json!({"version": "1.0.0", "status": "Development"}),
    )
    .await;
    let vp = version_path("acme", "m", "1.0.0");
    let (s, r) = app
        .post(
            &joe,
            &format!("{vp}/status-requests"),
            json!({"status": "Production"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    let got = app
        .post_empty(
            &joe,
            &format!("/api/v1/workspaces/acme/status-requests/{id}/reject"),
        )
        .await;
    assert_error(&got, 403, None);
    let (s, b) = app
        .post_empty(&boss, &format!("{vp}/status-requests/{id}/reject"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "rejected");
    let (_, v) = app.get(&joe, &vp).await;
    assert_eq!(v["status"], "Development");
    let got = app
        .post_empty(
            &boss,
            &format!("/api/v1/workspaces/acme/status-requests/{id}/approve"),
        )
        .await;
    assert_error(&got, 409, None);
    let got = app
        .post_empty(
            &boss,
            &format!("/api/v1/workspaces/acme/status-requests/{id}/reject"),
        )
        .await;
    assert_error(&got, 409, None);
    let (_, v) = app.get(&joe, &vp).await;
    assert_eq!(v["status"], "Development");
    let (_, b) = app
        .get(
            &joe,
            "/api/v1/workspaces/acme/status-requests?state=rejected",
        )
        .await;
    assert_eq!(b["items"].as_array().unwrap().len(), 1, "{b}");
    let (_, b) = app
        .get(
            &joe,
            "/api/v1/workspaces/acme/status-requests?state=pending",
        )
        .await;
    assert!(b["items"].as_array().unwrap().is_empty(), "{b}");
    let got = app
        .get(&joe, "/api/v1/workspaces/acme/status-requests?state=bogus")
        .await;
    assert_error(&got, 400, Some("state"));
    let ev = evs(&app, "acme", 2).await;
    assert_eq!(
        triggers(&ev),
        ["MODEL_VERSION_CREATED", "MODEL_STATUS_CHANGE_REQUESTED"]
    );
    app.stop().await;
}

async fn direct_status_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (boss, joe) = setup(&app, "acme", "m").await;
    app.version("acme", "m", json!({"version": "1.0.0"})).await;
    let vp = version_path("acme", "m", "1.0.0");
    let sp = format!("{vp}/status");
    // Members set statuses without review.
    let (s, b) = app.put(&joe, &sp, json!({"status": "Development"})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app.put(&joe, &sp, json!({"status": "Staging"})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Workspace admins force Production.
    let (s, b) = app.put(&boss, &sp, json!({"status": "Production"})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "Production");
    // Members may clear or lower it (needs no review).
    let (s, b) = app.put(&joe, &sp, json!({"status": null})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], Value::Null);
    // Not on an unknown version.
    let got = app
        .put(
            &joe,
            &format!("{}/status", version_path("acme", "m", "9.0.0")),
            json!({"status": "Staging"}),
        )
        .await;
    assert_error(&got, 404, None);
    let ev = evs(&app, "acme", 5).await;
    let p = payloads(&ev);
    let pairs: Vec<(Value, Value)> = p[1..]
        .iter()
        .map(|e| (e["status"].clone(), e["oldStatus"].clone()))
        .collect();
    assert_eq!(
        pairs,
        [
            (json!("Development"), Value::Null),
            (json!("Staging"), json!("Development")),
            (json!("Production"), json!("Staging")),
            (Value::Null, json!("Production")),
        ]
    );
    assert!(
        p[1..]
            .iter()
            .all(|e| e["eventTrigger"] == "MODEL_STATUS_CHANGED")
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Bad input

async fn bad_version_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_boss, joe) = setup(&app, "acme", "m").await;
    let vp = versions_path("acme", "m");
    let long = "x".repeat(5001);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "version"),
        (json!({"version": ""}), "version"),
        (json!({"version": "1"}), "version"),
        (json!({"version": "1.2"}), "version"),
        (json!({"version": "v1.2.3"}), "version"),
        (json!({"version": "1.2.3.4"}), "version"),
        (json!({"version": "01.2.3"}), "version"),
        (json!({"version": "1.2.3-"}), "version"),
        (json!({"version": "latest"}), "version"),
        (
            json!({"version": format!("1.0.0-{}", "a".repeat(200))}),
            "version",
        ),
        (json!({"version": 1}), "version"),
        (json!({"version": 1.2}), "version"),
        (json!({"version": null}), "version"),
        (json!({"version": ["1.0.0"]}), "version"),
        (json!({"version": "1.0.0", "tags": "a"}), "tags"),
        (json!({"version": "1.0.0", "tags": {"a": 1}}), "tags"),
        (json!({"version": "1.0.0", "status": ""}), "status"),
        (json!({"version": "1.0.0", "status": 3}), "status"),
        (
            json!({"version": "1.0.0", "sourceExperimentKey": ""}),
            "sourceExperimentKey",
        ),
        (
            json!({"version": "1.0.0", "sourceExperimentKey": 42}),
            "sourceExperimentKey",
        ),
        (
            json!({"version": "1.0.0", "sourceExperimentKey": "x".repeat(1000)}),
            "sourceExperimentKey",
        ),
        (
            json!({"version": "1.0.0", "description": long}),
            "description",
        ),
        (
            json!({"version": "1.0.0", "description": false}),
            "description",
        ),
        (json!({"version": "1.0.0", "bogus": 1}), "bogus"),
        (
            json!({"version": "1.0.0", "source_experiment_key": "e"}),
            "source_experiment_key",
        ),
    ];
    for (body, field) in &cases {
        let got = app.post(&joe, &vp, body.clone()).await;
        assert_eq!(got.0.as_u16(), 400, "{body} -> {:?}", got);
        assert_error(&got, 400, Some(field));
    }
    // Well-formed statuses the workspace does not have conflict with its statuses.
    for status in ["Nope", "production"] {
        let body = json!({"version": "1.0.0", "status": status});
        let got = app.post(&joe, &vp, body).await;
        assert_error(&got, 409, Some("status"));
    }
    // Tags: field names the element.
    for body in [
        json!({"version": "1.0.0", "tags": ["ok", ""]}),
        json!({"version": "1.0.0", "tags": ["ok", 5]}),
        json!({"version": "1.0.0", "tags": [null]}),
        json!({"version": "1.0.0", "tags": ["a".repeat(101)]}),
        json!({"version": "1.0.0", "tags": ["bad\u{0007}"]}),
        json!({"version": "1.0.0", "tags": ["line\nbreak"]}),
    ] {
        let got = app.post(&joe, &vp, body.clone()).await;
        assert_error(&got, 400, None);
        let field = got.1["error"]["field"].as_str().unwrap_or("");
        assert!(field.starts_with("tags"), "{body}: field {field}");
    }
    // Not JSON at all.
    let got = app
        .call_raw(
            reqwest::Method::POST,
            &vp,
            Some(&joe),
            Some("application/json"),
            b"{".to_vec(),
        )
        .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST);
    // Nothing was created, no event written.
    assert!(version_list(&app, "acme", "m").await.is_empty());
    assert!(evs(&app, "acme", 0).await.is_empty());
    // Unknown model and workspace.
    let got = app
        .post(
            &joe,
            &versions_path("acme", "nope"),
            json!({"version": "1.0.0"}),
        )
        .await;
    assert_error(&got, 404, None);
    // Valid edge cases are accepted.
    app.version(
        "acme",
        "m",
        json!({"version": "1.0.0-alpha+build.5", "tags": [], "status": null,
        "sourceExperimentKey": null, "description": ""}),
    )
    .await;
    app.version("acme", "m", json!({"version": "0.0.0"})).await;
    assert_eq!(
        version_list(&app, "acme", "m").await,
        ["1.0.0-alpha+build.5", "0.0.0"]
    );
    assert_eq!(evs(&app, "acme", 2).await.len(), 2);
    app.stop().await;
}

async fn bad_model_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_boss, joe) = setup(&app, "acme", "m").await;
    let mp = models_path("acme");
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "-x"}), "name"),
        (json!({"name": ".x"}), "name"),
        (json!({"name": "_x"}), "name"),
        (json!({"name": "a b"}), "name"),
        (json!({"name": "a/b"}), "name"),
        (json!({"name": "é"}), "name"),
        (json!({"name": "a".repeat(101)}), "name"),
        (json!({"name": 7}), "name"),
        (json!({"name": null}), "name"),
        (
            json!({"name": "ok", "description": "x".repeat(5001)}),
            "description",
        ),
        (json!({"name": "ok", "description": 1}), "description"),
        (json!({"name": "ok", "extra": true}), "extra"),
    ];
    for (body, field) in &cases {
        let got = app.post(&joe, &mp, body.clone()).await;
        assert_error(&got, 400, Some(field));
    }
    let patch_cases: Vec<(Value, &str)> = vec![
        (json!({"name": ""}), "name"),
        (json!({"name": "bad name"}), "name"),
        (json!({"name": 3}), "name"),
        (json!({"description": "x".repeat(5001)}), "description"),
        (json!({"nam": "x"}), "nam"),
    ];
    for (body, field) in &patch_cases {
        let got = app
            .patch(&joe, &model_path("acme", "m"), body.clone())
            .await;
        assert_error(&got, 400, Some(field));
    }
    let (s, b) = app.get(&joe, &mp).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["m"]);
    let (_, m) = app.get(&joe, &model_path("acme", "m")).await;
    assert_eq!(m["description"], "");
    app.stop().await;
}

async fn bad_tag_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_boss, joe) = setup(&app, "acme", "m").await;
    app.version("acme", "m", json!({"version": "1.0.0", "tags": ["keep"]}))
        .await;
    let tp = format!("{}/tags", version_path("acme", "m", "1.0.0"));
    for (body, prefix) in [
        (json!({"add": "x"}), "add"),
        (json!({"add": [""]}), "add"),
        (json!({"add": ["ok", 1]}), "add"),
        (json!({"add": ["a".repeat(101)]}), "add"),
        (json!({"add": ["tab\there"]}), "add"),
        (json!({"remove": "keep"}), "remove"),
        (json!({"remove": [""]}), "remove"),
        (json!({"remove": [null]}), "remove"),
        (json!({"tags": ["x"]}), "tags"),
        (json!({"add": ["new"], "extra": 1}), "extra"),
    ] {
        let got = app.patch(&joe, &tp, body.clone()).await;
        assert_error(&got, 400, None);
        let field = got.1["error"]["field"].as_str().unwrap_or("");
        assert!(field.starts_with(prefix), "{body}: field {field}");
    }
    let got = app
        .patch(
            &joe,
            &format!("{}/tags", version_path("acme", "m", "2.0.0")),
            json!({"add": ["x"]}),
        )
        .await;
    assert_error(&got, 404, None);
    let (_, v) = app.get(&joe, &version_path("acme", "m", "1.0.0")).await;
    assert_eq!(v["tags"], json!(["keep"]));
    assert_eq!(
        triggers(&evs(&app, "acme", 1).await),
        ["MODEL_VERSION_CREATED"]
    );
    app.stop().await;
}

async fn bad_status_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (boss, joe) = setup(&app, "acme", "m").await;
    app.version(
        "acme",
        "m",
        json!({"version": "1.0.0", "status": "Staging"}),
    )
    .await;
    let vp = version_path("acme", "m", "1.0.0");
    let sp = format!("{vp}/status");
    for (body, field) in [
        (json!({}), "status"),
        (json!({"status": ""}), "status"),
        (json!({"status": 1}), "status"),
        (json!({"status": ["Staging"]}), "status"),
        (json!({"status": "Development", "why": "x"}), "why"),
    ] {
        for token in [&joe, &boss] {
            let got = app.put(token, &sp, body.clone()).await;
            assert_error(&got, 400, Some(field));
        }
    }
    for token in [&joe, &boss] {
        let got = app.put(token, &sp, json!({"status": "Nope"})).await;
        assert_error(&got, 409, Some("status"));
        let got = app
            .post(
                token,
                &sp.replace("/status", "/status-requests"),
                json!({"status": "Nope"}),
            )
            .await;
        assert_error(&got, 409, Some("status"));
    }
    let rp = format!("{vp}/status-requests");
    for (body, field) in [
        (json!({}), "status"),
        (json!({"status": null}), "status"),
        (json!({"status": 1}), "status"),
        (
            json!({"status": "Production", "comment": "c".repeat(1001)}),
            "comment",
        ),
        (json!({"status": "Production", "comment": 5}), "comment"),
        (json!({"status": "Production", "extra": 5}), "extra"),
    ] {
        let got = app.post(&joe, &rp, body.clone()).await;
        assert_error(&got, 400, Some(field));
    }
    let (_, v) = app.get(&joe, &vp).await;
    assert_eq!(v["status"], "Staging");
    let (_, b) = app.get(&joe, &rp).await;
    assert!(b["items"].as_array().unwrap().is_empty(), "{b}");
    assert_eq!(
        triggers(&evs(&app, "acme", 1).await),
        ["MODEL_VERSION_CREATED"]
    );
    app.stop().await;
}

async fn bad_list_params(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    app.version("acme", "m", json!({"version": "1.0.0"})).await;
    let lists = [
        models_path("acme"),
        versions_path("acme", "m"),
        "/api/v1/workspaces/acme/events".to_owned(),
        "/api/v1/workspaces/acme/status-requests".to_owned(),
    ];
    for base in &lists {
        for bad in ["0", "501", "x", "-1", "1.5"] {
            let got = app.get(ADMIN_TOKEN, &format!("{base}?limit={bad}")).await;
            assert_error(&got, 400, Some("limit"));
        }
        for good in ["1", "500"] {
            let (s, b) = app.get(ADMIN_TOKEN, &format!("{base}?limit={good}")).await;
            assert_eq!(s, StatusCode::OK, "{base} limit={good}: {b}");
        }
    }
    for base in &lists[..2] {
        let got = app
            .get(ADMIN_TOKEN, &format!("{base}?cursor=garbage!"))
            .await;
        assert_error(&got, 400, Some("cursor"));
    }
    let got = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/acme/events?after=garbage!")
        .await;
    assert_error(&got, 400, Some("after"));
    let got = app
        .get(
            ADMIN_TOKEN,
            &format!("{}?name={}", models_path("acme"), "a".repeat(101)),
        )
        .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{:?}", got.1);
    app.stop().await;
}

async fn tag_validation_limits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_boss, joe) = setup(&app, "acme", "m").await;
    // 100 characters (not bytes) is the limit; duplicates are dropped; unicode is fine.
    let hundred = "é".repeat(100);
    let v = app
        .version(
            "acme",
            "m",
            json!({"version": "1.0.0", "tags": [hundred, "x y", "x y", "日本"]}),
        )
        .await;
    let tags: BTreeSet<&str> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, BTreeSet::from([hundred.as_str(), "x y", "日本"]));
    let got = app
        .post(
            &joe,
            &versions_path("acme", "m"),
            json!({"version": "1.0.1", "tags": ["é".repeat(101)]}),
        )
        .await;
    assert_error(&got, 400, None);
    let tp = format!("{}/tags", version_path("acme", "m", "1.0.0"));
    let (s, b) = app
        .patch(
            &joe,
            &tp,
            json!({"add": ["z".repeat(100)], "remove": ["日本", "x y"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let tags: BTreeSet<String> = b["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags, BTreeSet::from([hundred.clone(), "z".repeat(100)]));
    let ev = evs(&app, "acme", 2).await;
    assert_eq!(
        triggers(&ev),
        ["MODEL_VERSION_CREATED", "MODEL_TAG_CHANGED"]
    );
    let p = norm(ev[1]["payload"].clone());
    assert_eq!(
        p["deletedTags"],
        norm(json!({"deletedTags": ["x y", "日本"]}))["deletedTags"]
    );
    let mut want_tags = vec![hundred, "z".repeat(100)];
    want_tags.sort_by_key(|t| Value::from(t.as_str()).to_string());
    assert_eq!(p["tags"], json!(want_tags));
    app.stop().await;
}
