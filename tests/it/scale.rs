//! Several nodes on one PostgreSQL: roles, shared delivery queue, a node killed with SIGKILL
//! under load; and the retention cleaner.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, PgDatabase, Reply, TestApp, TestReceiver};
use crate::process::Server;

const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// Starts a node on `db` with `role`.
async fn node(db: &PgDatabase, name: &str, role: &str, data: &std::path::Path) -> Server {
    Server::start_with(
        data,
        Some(&db.url),
        &["--role", role],
        &[
            ("BERTH_NODE_NAME", name),
            ("BERTH_DELIVERY_TIMEOUT", "2s"),
            ("BERTH_RETRY_SCHEDULE", "200ms,200ms,200ms,200ms,200ms"),
            ("BERTH_DELIVERY_POLL_INTERVAL", "500ms"),
        ],
    )
    .await
}

async fn post(client: &reqwest::Client, url: String, body: serde_json::Value) -> u16 {
    client
        .post(url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_queue_and_a_killed_node_loses_nothing() {
    berth::init_crypto();
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(200).delay(Duration::from_millis(40)));
    let a = node(&db, "node-a", "all", &dir.path().join("a")).await;
    let mut b = node(&db, "node-b", "all", &dir.path().join("b")).await;
    let (url_a, url_b) = (a.base.clone(), b.base.clone());
    let client = reqwest::Client::new();
    assert_eq!(
        post(
            &client,
            format!("{url_a}/api/v1/workspaces"),
            json!({"name": "acme"})
        )
        .await,
        201
    );
    assert_eq!(
        post(
            &client,
            format!("{url_b}/api/v1/workspaces/acme/models"),
            json!({"name": "fraud"})
        )
        .await,
        201
    );
    let hooks = "/api/v1/workspaces/acme/models/fraud/webhooks";
    assert_eq!(
        post(
            &client,
            format!("{url_a}{hooks}"),
            json!({"name": "r", "url": format!("{}/h", rx.url), "triggers": ["MODEL_VERSION_CREATED"]})
        )
        .await,
        201
    );
    // Load through both nodes; kill B with SIGKILL once deliveries are flowing.
    const N: usize = 60;
    let mut killed = false;
    for i in 0..N {
        let base = if killed || i % 2 == 0 { &url_a } else { &url_b };
        let status = post(
            &client,
            format!("{base}/api/v1/workspaces/acme/models/fraud/versions"),
            json!({"version": format!("1.0.{i}")}),
        )
        .await;
        assert_eq!(status, 201, "version {i}");
        if !killed && rx.received().len() >= 12 {
            b.kill();
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !killed {
        b.kill();
    }
    // Every version arrives at the receiver.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in rx.received() {
            *counts
                .entry(r.json()["version"].as_str().unwrap_or("").to_owned())
                .or_default() += 1;
        }
        if counts.len() == N {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {N} versions delivered",
            counts.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Wait until the log shows every delivery succeeded: the killed node's in-flight attempts
    // are sent again once their leases run out (delivery timeout + 30 s).
    let list: serde_json::Value = client
        .get(format!("{url_a}{hooks}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let id = list["items"][0]["id"].as_str().expect("id").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let page: serde_json::Value = client
            .get(format!(
                "{url_a}{hooks}/{id}/deliveries?limit=500&state=succeeded"
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("deliveries")
            .json()
            .await
            .expect("json");
        let n = page["items"].as_array().map_or(0, Vec::len);
        if n == N {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {n} of {N} deliveries succeeded"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in rx.received() {
        *counts
            .entry(r.header("webhook-id").unwrap_or_default())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), N, "one webhook-id per event");
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= 4,
        "only the killed node's in-flight attempts (at most 4 per webhook) may repeat: {duplicates}"
    );
    // Both nodes delivered.
    let mut nodes = std::collections::HashSet::new();
    let mut succeeded = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{url_a}{hooks}/{id}/deliveries?limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = client
            .get(url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("deliveries")
            .json()
            .await
            .expect("json");
        for d in page["items"].as_array().expect("items") {
            if d["state"] == "succeeded" {
                succeeded += 1;
            }
            let did = d["id"].as_str().expect("id");
            let detail: serde_json::Value = client
                .get(format!("{url_a}{hooks}/{id}/deliveries/{did}"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("detail")
                .json()
                .await
                .expect("json");
            for attempt in detail["attempts"].as_array().expect("attempts") {
                nodes.insert(attempt["node"].as_str().unwrap_or("").to_owned());
            }
        }
        cursor = page["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(succeeded, N, "every delivery succeeded");
    assert!(
        nodes.contains("node-a") && nodes.contains("node-b"),
        "{nodes:?}"
    );
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_worker_roles_split_the_work() {
    berth::init_crypto();
    let db = PgDatabase::create().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let rx = TestReceiver::start().await;
    let api = node(&db, "api-1", "api", &dir.path().join("a")).await;
    let worker = node(&db, "worker-1", "worker", &dir.path().join("w")).await;
    let (url_api, url_worker) = (api.base.clone(), worker.base.clone());
    let client = reqwest::Client::new();
    post(
        &client,
        format!("{url_api}/api/v1/workspaces"),
        json!({"name": "acme"}),
    )
    .await;
    post(
        &client,
        format!("{url_api}/api/v1/workspaces/acme/models"),
        json!({"name": "m"}),
    )
    .await;
    post(
        &client,
        format!("{url_api}/api/v1/workspaces/acme/models/m/webhooks"),
        json!({"name": "r", "url": format!("{}/h", rx.url), "triggers": ["MODEL_VERSION_CREATED"]}),
    )
    .await;
    // The worker node serves health and metrics only.
    let status = client
        .get(format!("{url_worker}/api/v1/me"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status, 404);
    let status = client
        .get(format!("{url_worker}/readyz"))
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status, 200);
    // The API node writes the event; the worker node delivers it, woken by NOTIFY.
    let started = std::time::Instant::now();
    post(
        &client,
        format!("{url_api}/api/v1/workspaces/acme/models/m/versions"),
        json!({"version": "1.0.0"}),
    )
    .await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["version"], "1.0.0");
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "woken by NOTIFY, not by the 500 ms poll: {:?}",
        started.elapsed()
    );
    drop((api, worker));
}

#[test]
fn roles_other_than_all_need_postgresql() {
    let out = Command::new(BIN)
        .args(["serve", "--role", "worker", "--listen", "127.0.0.1:0"])
        .env_remove("BERTH_DATABASE_URL")
        .output()
        .expect("run berth");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("role"));
}

conformance!(retention_deletes_old_attempts_in_batches);

async fn retention_deletes_old_attempts_in_batches(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let (_, hook) = app
        .post(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/m/webhooks",
            json!({"name": "r", "url": format!("{}/h", rx.url), "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    let id = hook["id"].as_str().expect("id");
    for i in 0..5 {
        app.version("acme", "m", json!({"version": format!("1.0.{i}")}))
            .await;
    }
    rx.wait_for(5, Duration::from_secs(10)).await;
    let path = format!("/api/v1/workspaces/acme/models/m/webhooks/{id}/deliveries");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = app
            .get(ADMIN_TOKEN, &format!("{path}?state=succeeded"))
            .await;
        if list["items"].as_array().map_or(0, Vec::len) == 5 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing is older than a cutoff in the past.
    let past = berth::store::now_micros() - 3_600_000_000;
    assert_eq!(app.store().purge_before(past, 2).await.expect("purge"), 0);
    // With a cutoff in the future, batches of 2 take everything, a few rows at a time.
    let future = berth::store::now_micros() + 1_000_000;
    let mut batches = 0;
    loop {
        let n = app.store().purge_before(future, 2).await.expect("purge");
        assert!(n <= 4, "one batch of attempts and one of deliveries: {n}");
        if n == 0 {
            break;
        }
        batches += 1;
    }
    assert!(batches >= 3, "{batches}");
    let (_, list) = app.get(ADMIN_TOKEN, &path).await;
    assert_eq!(list["items"], json!([]));
    // Events stay: they are the registry's history.
    assert_eq!(app.all_events(ADMIN_TOKEN, "acme").await.len(), 5);
    app.stop().await;
}

conformance!(concurrent_writes_with_failures_commit_only_the_good_ones);

/// Writes arriving together share one transaction on SQLite (group commit); a failing one
/// (a duplicate version) must be refused alone, without taking the others down or leaving a
/// trace, and every acknowledged one must be there with its event.
async fn concurrent_writes_with_failures_commit_only_the_good_ones(backend: Backend) {
    let app = std::sync::Arc::new(TestApp::spawn(backend).await);
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let (s, _) = app
                .post(
                    ADMIN_TOKEN,
                    "/api/v1/workspaces/acme/models/m/versions",
                    json!({"version": format!("1.0.{}", i / 2)}),
                )
                .await;
            s.as_u16()
        }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.expect("task") {
            201 => created += 1,
            409 => conflicts += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((created, conflicts), (20, 20));
    let (_, list) = app
        .get(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/m/versions?limit=500",
        )
        .await;
    assert_eq!(list["items"].as_array().map_or(0, Vec::len), 20);
    let events = app.all_events(ADMIN_TOKEN, "acme").await;
    assert_eq!(
        events.len(),
        20,
        "one event per committed version, none for a refused one"
    );
}

conformance!(an_attempt_for_a_delivery_deleted_meanwhile_records_nothing);

/// The worker records an attempt after its send; if the webhook (and so the delivery) was
/// deleted meanwhile, the record answers `false` and writes no attempt row, on both
/// databases (SQLite takes the update and the insert in one call).
async fn an_attempt_for_a_delivery_deleted_meanwhile_records_nothing(backend: Backend) {
    use berth::store::{AttemptRecord, AttemptResult, Recorded};
    let app = TestApp::spawn(backend).await;
    let result = AttemptResult {
        attempt: AttemptRecord {
            attempt: 1,
            started_at: 1,
            duration_ms: 3,
            status_code: Some(200),
            error_class: None,
            error: None,
            request_url: "http://127.0.0.1:9/".into(),
            request_headers: "[]".into(),
            response_headers: Some("[]".into()),
            response_body: Some("ok".into()),
            node: "test".into(),
            response_headers_omitted: 0,
        },
        lease_token: 1,
        now: berth::store::now_micros(),
        state: berth::domain::DeliveryState::Succeeded,
        next_attempt_at: None,
        disable_webhook: None,
        auto_disable_before: None,
        webhook_was_failing: false,
    };
    let recorded = app
        .store()
        .record_attempt("msg_gone", "no-such-webhook", &result)
        .await
        .expect("record");
    // An attempt row would break its foreign key to the missing delivery and fail the
    // record with an error: `Gone` means nothing was written.
    assert_eq!(recorded, Recorded::Gone);
    app.stop().await;
}
