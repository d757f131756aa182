//! The event feed's promise under concurrent commits: a reader that polls with its cursor
//! never misses an event that commits after it read on (on PostgreSQL one may have taken a
//! smaller `seq` first), and never sees one twice. The re-enable of a webhook keeps the same
//! promise for what the webhook missed.
//!
//! The PostgreSQL tests hold a transaction of their own open on the app's database, as a
//! slow writer would, and check what the server shows meanwhile: no sleeps, only states read
//! at a moment the test controls, or conditions waited for.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, TestReceiver};

conformance!(feed_reader_racing_concurrent_writers_gets_every_event_once);

const EVENTS: &str = "/api/v1/workspaces/acme/events";
const HOOKS: &str = "/api/v1/workspaces/acme/models/m/webhooks";

/// One page of the feed after `after`.
async fn page(app: &TestApp, after: Option<&str>, limit: u32) -> (Vec<Value>, Option<String>) {
    let path = match after {
        Some(c) => format!("{EVENTS}?limit={limit}&after={c}"),
        None => format!("{EVENTS}?limit={limit}"),
    };
    let (s, b) = app.get(ADMIN_TOKEN, &path).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (
        b["items"].as_array().expect("items").clone(),
        b["nextCursor"].as_str().map(str::to_owned),
    )
}

/// The first page after `after` that holds at least `n` events, waiting up to ten seconds
/// (on PostgreSQL a committed event shows once the transactions older than it are done).
async fn page_of(app: &TestApp, after: Option<&str>, n: usize) -> (Vec<Value>, Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = page(app, after, 100).await;
        if got.0.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} events after {after:?}: {:?}",
            got.0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|e| e["id"].as_str().expect("event id").to_owned())
        .collect()
}

/// A raw connection to the app's own PostgreSQL database.
async fn raw(app: &TestApp) -> sqlx::PgConnection {
    let url = app.pg_url().expect("a PostgreSQL app");
    sqlx::PgConnection::connect(url).await.expect("connect")
}

/// In `conn`, which must be inside a transaction: a copy of event `of` under a new id, as a
/// slow writer would insert it (it takes the next `seq` and a transaction id now). Answers
/// the new event's id and seq.
async fn insert_event_copy(conn: &mut sqlx::PgConnection, of: &str) -> (String, i64) {
    let id = uuid::Uuid::now_v7().to_string();
    let seq: i64 = sqlx::query(
        "INSERT INTO events (id, workspace_id, model_id, event_trigger, payload, occurred_at) \
         SELECT $1, workspace_id, model_id, event_trigger, payload, occurred_at FROM events \
         WHERE id = $2 RETURNING seq",
    )
    .bind(id.as_str())
    .bind(of)
    .fetch_one(&mut *conn)
    .await
    .expect("insert the slow event")
    .get("seq");
    (id, seq)
}

async fn seq_of(conn: &mut sqlx::PgConnection, event_id: &str) -> i64 {
    sqlx::query("SELECT seq FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_one(&mut *conn)
        .await
        .expect("event seq")
        .get("seq")
}

/// Waits until a session of the app's database waits for a lock (the server's request,
/// blocked by the test's transaction), or fails if `task` finishes first.
async fn wait_for_lock_wait<T>(conn: &mut sqlx::PgConnection, task: &tokio::task::JoinHandle<T>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut *conn)
        .await
        .expect("pg_stat_activity")
        .get("n");
        if waiting > 0 {
            return;
        }
        assert!(
            !task.is_finished(),
            "the request finished without waiting for the test's transaction"
        );
        assert!(Instant::now() < deadline, "the request never waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A slow writer took a smaller `seq` and is still open while a later event commits: the
/// feed must not show the later one yet (a reader would move past the slow one and never
/// see it), and once the slow writer commits, a reader polling with its old cursor gets
/// both, the slow one included. A cursor of the old form (`seq` only) reads on the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_holds_back_an_event_committed_past_an_open_smaller_seq() {
    let app = TestApp::spawn(Backend::Postgres).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    app.version("acme", "m", json!({"version": "1.0.0"})).await;
    let (first, cursor) = page_of(&app, None, 1).await;
    assert_eq!(first.len(), 1);
    let cursor = cursor.expect("a cursor");
    let first_id = ids(&first).remove(0);

    let mut slow = raw(&app).await;
    sqlx::query("BEGIN")
        .execute(&mut slow)
        .await
        .expect("begin");
    let (slow_id, slow_seq) = insert_event_copy(&mut slow, &first_id).await;

    // A later event, committed before this call answers.
    app.version("acme", "m", json!({"version": "1.0.1"})).await;
    let mut check = raw(&app).await;
    let later_seq: i64 = sqlx::query(
        "SELECT max(seq) AS s FROM events WHERE payload LIKE '%\"version\":\"1.0.1\"%'",
    )
    .fetch_one(&mut check)
    .await
    .expect("the later event")
    .get("s");
    assert!(slow_seq < later_seq, "{slow_seq} < {later_seq}");

    // While the slow writer is open, nothing past it shows: not with the cursor, not from
    // the start.
    let (items, next) = page(&app, Some(&cursor), 100).await;
    assert!(
        items.is_empty(),
        "the feed showed an event committed past an open smaller seq: {items:?}"
    );
    assert_eq!(next.as_deref(), Some(cursor.as_str()), "the cursor stays");
    let (items, _) = page(&app, None, 100).await;
    assert_eq!(ids(&items), vec![first_id.clone()]);

    sqlx::query("COMMIT")
        .execute(&mut slow)
        .await
        .expect("commit");

    // The reader polls on with the cursor it had: the slow event first, then the later one.
    let (items, _) = page_of(&app, Some(&cursor), 2).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0]["id"], json!(slow_id), "{items:?}");
    assert_eq!(items[1]["payload"]["version"], "1.0.1", "{items:?}");

    // A cursor handed out before migration 0010 (`{"s": seq}`) places the reader at its
    // event: it reads on from there.
    let first_seq = seq_of(&mut check, &first_id).await;
    let legacy = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"s": first_seq})).expect("json"));
    let (items, _) = page(&app, Some(&legacy), 100).await;
    assert_eq!(ids(&items), ids(&page(&app, Some(&cursor), 100).await.0));
    // One whose event does not exist (its workspace is gone) starts from the first event.
    let gone = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"s": later_seq + 1000})).expect("json"));
    let (items, _) = page(&app, Some(&gone), 100).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[0]["id"], json!(first_id));
    // A transaction id is never negative: not a cursor this server handed out.
    let bad = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"x": -1, "s": 1})).expect("json"));
    let (s, b) = app.get(ADMIN_TOKEN, &format!("{EVENTS}?after={bad}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let _ = slow.close().await;
    let _ = check.close().await;
    app.stop().await;
}

/// Writers on several models at once, and a reader polling with its cursor while they run:
/// at the end it has read every event exactly once.
async fn feed_reader_racing_concurrent_writers_gets_every_event_once(backend: Backend) {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 6;
    const MODELS: usize = 3;
    let expected = WRITERS * ROUNDS * 2;
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    for m in 0..MODELS {
        app.model("acme", &format!("m{m}")).await;
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let client = app.client.clone();
        let url = format!("{}{EVENTS}", app.base);
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            let mut cursor: Option<String> = None;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page_url = match &cursor {
                    Some(c) => format!("{url}?limit=4&after={c}"),
                    None => format!("{url}?limit=4"),
                };
                let resp = client
                    .get(&page_url)
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .expect("events");
                assert_eq!(resp.status(), StatusCode::OK);
                let b: Value = resp.json().await.expect("json");
                let items = b["items"].as_array().expect("items").clone();
                cursor = b["nextCursor"].as_str().map(str::to_owned).or(cursor);
                let empty = items.is_empty();
                seen.extend(ids(&items));
                if (finished && seen.len() >= expected) || Instant::now() > deadline {
                    return seen;
                }
                if empty {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = app.client.clone();
        let base = app.base.clone();
        writers.push(tokio::spawn(async move {
            for r in 0..ROUNDS {
                let model = format!("m{}", (w + r) % MODELS);
                let versions = format!("{base}/api/v1/workspaces/acme/models/{model}/versions");
                let version = format!("{w}.{r}.0");
                let resp = client
                    .post(&versions)
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"version": version}))
                    .send()
                    .await
                    .expect("create");
                assert_eq!(resp.status(), StatusCode::CREATED);
                let resp = client
                    .patch(format!("{versions}/{version}/tags"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"add": [format!("t{w}")]}))
                    .send()
                    .await
                    .expect("tag");
                assert_eq!(resp.status(), StatusCode::OK);
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.expect("reader");
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "the reader saw an event twice");
    let all = ids(&page_of(&app, None, expected).await.0);
    assert_eq!(all.len(), expected);
    let all: BTreeSet<&String> = all.iter().collect();
    assert_eq!(
        unique, all,
        "the reader missed events (or saw foreign ones)"
    );
    app.stop().await;
}

async fn create_hook(app: &TestApp, rx: &TestReceiver) -> (String, Value) {
    let body = json!({"name": "h", "url": format!("{}/h", rx.url),
                      "triggers": ["MODEL_VERSION_CREATED"]});
    let (s, b) = app.post(ADMIN_TOKEN, HOOKS, body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    (b["id"].as_str().expect("id").to_owned(), body)
}

async fn deliveries_of(conn: &mut sqlx::PgConnection, hook: &str, event_id: &str) -> i64 {
    sqlx::query("SELECT count(*) AS n FROM deliveries WHERE webhook_id = $1 AND event_id = $2")
        .bind(hook)
        .bind(event_id)
        .fetch_one(&mut *conn)
        .await
        .expect("deliveries")
        .get("n")
}

/// An event took a smaller `seq`, a larger one committed and was sent, the webhook was
/// disabled, and then the first event committed, without a delivery (its fan-out saw the
/// webhook disabled). Re-enabling must queue it, though its `seq` is below the newest of
/// the disable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_queues_an_event_committed_after_the_disable_with_a_smaller_seq() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let rx = TestReceiver::start().await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let (hook, mut body) = create_hook(&app, &rx).await;
    app.version("acme", "m", json!({"version": "1.0.0"})).await;
    let (first, _) = page_of(&app, None, 1).await;
    let first_id = ids(&first).remove(0);

    let mut slow = raw(&app).await;
    sqlx::query("BEGIN")
        .execute(&mut slow)
        .await
        .expect("begin");
    let (slow_id, slow_seq) = insert_event_copy(&mut slow, &first_id).await;
    app.version("acme", "m", json!({"version": "1.0.1"})).await;
    body["enabled"] = json!(false);
    let (s, b) = app.put(ADMIN_TOKEN, &format!("{HOOKS}/{hook}"), body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut check = raw(&app).await;
    let after_seq: i64 = sqlx::query("SELECT disabled_after_seq FROM webhooks WHERE id = $1")
        .bind(hook.as_str())
        .fetch_one(&mut check)
        .await
        .expect("webhook")
        .get("disabled_after_seq");
    assert!(slow_seq < after_seq, "{slow_seq} < {after_seq}");
    sqlx::query("COMMIT")
        .execute(&mut slow)
        .await
        .expect("commit");
    assert_eq!(deliveries_of(&mut check, &hook, &slow_id).await, 0);

    let (s, b) = app
        .post_empty(ADMIN_TOKEN, &format!("{HOOKS}/{hook}/enable"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["missedEvents"], json!(1), "{b}");
    assert_eq!(deliveries_of(&mut check, &hook, &slow_id).await, 1);
    let _ = slow.close().await;
    let _ = check.close().await;
    app.stop().await;
}

/// An event whose fan-out finds the webhook disabled while a re-enable is under way waits
/// for it, and then writes its delivery: the enable had looked for missed events before
/// this one committed. The test's transaction plays the enable (its row lock, then the
/// update).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_racing_a_re_enable_waits_for_it_and_is_sent() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let rx = TestReceiver::start().await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let (hook, mut body) = create_hook(&app, &rx).await;
    body["enabled"] = json!(false);
    let (s, b) = app.put(ADMIN_TOKEN, &format!("{HOOKS}/{hook}"), body).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let mut enable = raw(&app).await;
    sqlx::query("BEGIN")
        .execute(&mut enable)
        .await
        .expect("begin");
    sqlx::query("SELECT id FROM webhooks WHERE id = $1 FOR NO KEY UPDATE")
        .bind(hook.as_str())
        .execute(&mut enable)
        .await
        .expect("lock the webhook");
    let create = {
        let client = app.client.clone();
        let url = format!("{}/api/v1/workspaces/acme/models/m/versions", app.base);
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"version": "2.0.0"}))
                .send()
                .await
                .expect("create")
                .status()
        })
    };
    let mut check = raw(&app).await;
    wait_for_lock_wait(&mut check, &create).await;
    sqlx::query(
        "UPDATE webhooks SET enabled = 1, disabled_reason = NULL, disabled_after_seq = NULL, \
         disabled_after_xid = NULL WHERE id = $1",
    )
    .bind(hook.as_str())
    .execute(&mut enable)
    .await
    .expect("enable");
    sqlx::query("COMMIT")
        .execute(&mut enable)
        .await
        .expect("commit");
    assert_eq!(create.await.expect("create task"), StatusCode::CREATED);

    let event_id: String =
        sqlx::query("SELECT id FROM events WHERE payload LIKE '%\"version\":\"2.0.0\"%'")
            .fetch_one(&mut check)
            .await
            .expect("the event")
            .get("id");
    assert_eq!(deliveries_of(&mut check, &hook, &event_id).await, 1);
    let _ = enable.close().await;
    let _ = check.close().await;
    app.stop().await;
}

/// The other side of the same race: an event whose fan-out found the webhook disabled and
/// is still open when the re-enable starts. The enable waits for it, and queues it. The
/// test's transaction plays the event (its insert, then its fan-out's row lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_enable_waits_for_an_open_event_that_saw_the_webhook_disabled() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let rx = TestReceiver::start().await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let (hook, mut body) = create_hook(&app, &rx).await;
    app.version("acme", "m", json!({"version": "1.0.0"})).await;
    let (first, _) = page_of(&app, None, 1).await;
    let first_id = ids(&first).remove(0);
    body["enabled"] = json!(false);
    let (s, b) = app.put(ADMIN_TOKEN, &format!("{HOOKS}/{hook}"), body).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let mut event = raw(&app).await;
    sqlx::query("BEGIN")
        .execute(&mut event)
        .await
        .expect("begin");
    let (slow_id, _) = insert_event_copy(&mut event, &first_id).await;
    sqlx::query("SELECT enabled FROM webhooks WHERE id = $1 FOR SHARE")
        .bind(hook.as_str())
        .execute(&mut event)
        .await
        .expect("fan-out's lock");
    let enable = {
        let client = app.client.clone();
        let url = format!("{}{HOOKS}/{hook}/enable", app.base);
        tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("enable");
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    let mut check = raw(&app).await;
    wait_for_lock_wait(&mut check, &enable).await;
    sqlx::query("COMMIT")
        .execute(&mut event)
        .await
        .expect("commit");
    let (s, b) = enable.await.expect("enable task");
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["missedEvents"], json!(1), "{b}");
    assert_eq!(deliveries_of(&mut check, &hook, &slow_id).await, 1);
    let _ = event.close().await;
    let _ = check.close().await;
    app.stop().await;
}
