//! Node heartbeats and lease fencing: a node silent for `node_dead_after` is declared dead by
//! another, which releases its leases (so its deliveries go out again and stop counting
//! against their webhooks' in-flight limit); every claim gives the lease a new token, and an
//! attempt recorded under an old one is refused. Store-level tests move a test clock; the
//! process tests SIGKILL, SIGSTOP and SIGCONT real binaries.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Row;

use berth::delivery::heartbeat::Heartbeat;
use berth::store::{AttemptRecord, AttemptResult, ClaimedDelivery, NextLease, Recorded, Store};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, PgDatabase, Reply, TestApp, TestReceiver};
use crate::process::{Db, Server};

const HOOKS: &str = "/api/v1/workspaces/acme/models/m/webhooks";
const MINUTE: i64 = 60_000_000;

/// A server with no delivery worker of its own (role `api`), so the test alone claims, with
/// one attempt in flight per webhook; and a webhook to `rx` with `n` deliveries due.
async fn app_with_deliveries(backend: Backend, rx: &TestReceiver, n: usize) -> (TestApp, String) {
    let app = TestApp::spawn_with(backend, |s| {
        s.role = berth::config::Role::Api;
        s.delivery.per_webhook_in_flight = 1;
    })
    .await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            HOOKS,
            json!({"name": "r", "url": rx.url, "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    for i in 0..n {
        app.version("acme", "m", json!({"version": format!("1.0.{i}")}))
            .await;
    }
    (app, b["id"].as_str().expect("id").to_owned())
}

/// A successful attempt by `node` under the lease of `d`, recorded at `now`.
fn success(d: &ClaimedDelivery, node: &str, now: i64) -> AttemptResult {
    AttemptResult {
        attempt: AttemptRecord {
            attempt: d.attempt_count + 1,
            started_at: now,
            duration_ms: 3,
            status_code: Some(200),
            error_class: None,
            error: None,
            request_url: "http://127.0.0.1:9/".into(),
            request_headers: "[]".into(),
            response_headers: Some("[]".into()),
            response_body: Some("ok".into()),
            node: node.into(),
            response_headers_omitted: 0,
        },
        lease_token: d.lease_token,
        now,
        state: berth::domain::DeliveryState::Succeeded,
        next_attempt_at: None,
        disable_webhook: None,
        auto_disable_before: None,
        webhook_was_failing: false,
    }
}

/// Leases for `node` at `now`, for an hour, at most one per webhook.
async fn claim(store: &Store, node: &str, now: i64) -> Vec<ClaimedDelivery> {
    store
        .claim_deliveries(node, now, now + 60 * MINUTE, 10, 1)
        .await
        .expect("claim")
}

/// The nodes of the attempts recorded for delivery `id`.
async fn attempt_nodes(app: &TestApp, hook: &str, id: &str) -> Vec<String> {
    let (s, b) = app
        .get(ADMIN_TOKEN, &format!("{HOOKS}/{hook}/deliveries/{id}"))
        .await;
    assert_eq!(s, 200, "{b}");
    b["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["node"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn heartbeat(app: &TestApp, node: &str) -> Heartbeat {
    Heartbeat {
        store: app.store().clone(),
        node: node.into(),
        clock: app.clock.clone(),
        interval: Duration::from_secs(1),
        dead_after: Duration::from_secs(5),
    }
}

conformance!(a_silent_node_is_declared_dead_and_its_leases_stop_counting);

/// A node that stops beating holds its webhook's one in-flight slot until another node,
/// `node_dead_after` later by the clock, declares it dead: its lease is released in the same
/// transaction, the delivery is claimed again at once, and the dead node's late attempt is
/// refused.
async fn a_silent_node_is_declared_dead_and_its_leases_stop_counting(backend: Backend) {
    let rx = TestReceiver::start().await;
    let (app, hook) = app_with_deliveries(backend, &rx, 2).await;
    let store = app.store();
    let clock = &app.clock;
    let live = heartbeat(&app, "live");
    let ghost = heartbeat(&app, "ghost");
    assert_eq!(ghost.beat(false).await.expect("beat"), Default::default());
    let held = claim(store, "ghost", clock.now_micros()).await;
    assert_eq!(held.len(), 1, "one slot per webhook");
    // The webhook's slot is taken: the other node gets nothing.
    assert!(claim(store, "live", clock.now_micros()).await.is_empty());
    let beat = live.beat(false).await.expect("beat");
    assert!(beat.declared_dead.is_empty(), "ghost just beat: {beat:?}");
    // Four seconds of silence: not yet dead.
    clock.advance(Duration::from_secs(4));
    assert!(
        live.beat(true)
            .await
            .expect("beat")
            .declared_dead
            .is_empty()
    );
    assert!(claim(store, "live", clock.now_micros()).await.is_empty());
    // Past `dead_after`: declared dead, its lease released, no longer counted.
    clock.advance(Duration::from_secs(2));
    let beat = live.beat(true).await.expect("beat");
    assert_eq!(beat.declared_dead, vec![("ghost".to_owned(), 1)]);
    assert!(!beat.was_declared_dead);
    let names: Vec<String> = store
        .nodes()
        .await
        .expect("nodes")
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["live"]);
    let taken = claim(store, "live", clock.now_micros()).await;
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, held[0].id, "the dead node's delivery, first");
    assert!(taken[0].lease_token > held[0].lease_token, "a new token");
    // The new owner records; the dead node, waking, cannot record over it.
    let now = clock.now_micros();
    assert_eq!(
        store
            .record_attempt(&taken[0].id, &hook, &success(&taken[0], "live", now))
            .await
            .expect("record"),
        Recorded::Recorded
    );
    assert_eq!(
        store
            .record_attempt(&held[0].id, &hook, &success(&held[0], "ghost", now))
            .await
            .expect("record"),
        Recorded::StaleLease
    );
    assert_eq!(attempt_nodes(&app, &hook, &held[0].id).await, ["live"]);
    // The ghost finds its row gone at its next beat: it says so and registers again.
    let beat = ghost.beat(true).await.expect("beat");
    assert!(beat.was_declared_dead, "{beat:?}");
    assert_eq!(store.nodes().await.expect("nodes").len(), 2);
    // A declared dead once is not declared dead again by a second node.
    clock.advance(Duration::from_secs(6));
    let first = live.beat(true).await.expect("beat");
    let second = heartbeat(&app, "third").beat(false).await.expect("beat");
    assert_eq!(first.declared_dead, vec![("ghost".to_owned(), 0)]);
    assert!(second.declared_dead.is_empty(), "{second:?}");
    app.stop().await;
}

conformance!(a_lease_past_its_end_is_taken_over_and_its_holder_fenced);

/// Without heartbeats (a node that never beat), a lease ends at `locked_until` by the clock;
/// the next claim gives a new token, and the first holder's attempt is refused, its
/// success or its failure alike, while the new owner's stands. The lease chained after a
/// success (SQLite) gets a new token too.
async fn a_lease_past_its_end_is_taken_over_and_its_holder_fenced(backend: Backend) {
    let rx = TestReceiver::start().await;
    let (app, hook) = app_with_deliveries(backend, &rx, 2).await;
    let store = app.store();
    let clock = &app.clock;
    let first = claim(store, "a", clock.now_micros()).await;
    assert_eq!(first.len(), 1);
    clock.advance(Duration::from_secs(59 * 60));
    assert!(
        claim(store, "b", clock.now_micros()).await.is_empty(),
        "still leased"
    );
    clock.advance(Duration::from_secs(2 * 60));
    let second = claim(store, "b", clock.now_micros()).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(second[0].lease_token, first[0].lease_token + 1);
    let now = clock.now_micros();
    let mut failure = success(&first[0], "a", now);
    failure.attempt.status_code = Some(500);
    failure.attempt.error_class = Some("http_status".into());
    failure.state = berth::domain::DeliveryState::Pending;
    failure.next_attempt_at = Some(now);
    assert_eq!(
        store
            .record_attempt(&first[0].id, &hook, &failure)
            .await
            .expect("record"),
        Recorded::StaleLease,
        "a failure under a stale lease"
    );
    let next = NextLease {
        node: "b".into(),
        now,
        lease_until: now + 60 * MINUTE,
    };
    let (recorded, chained) = store
        .record_attempt_then_lease(
            &second[0].id,
            &hook,
            &success(&second[0], "b", now),
            Some(next),
        )
        .await
        .expect("record");
    assert_eq!(recorded, Recorded::Recorded);
    assert_eq!(
        store
            .record_attempt(&first[0].id, &hook, &success(&first[0], "a", now))
            .await
            .expect("record"),
        Recorded::StaleLease,
        "a success under a stale lease, after the new owner's"
    );
    assert_eq!(attempt_nodes(&app, &hook, &first[0].id).await, ["b"]);
    let (s, d) = app
        .get(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{hook}/deliveries/{}", first[0].id),
        )
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(
        d["attemptCount"], 1,
        "the refused attempts are not counted: {d}"
    );
    assert_eq!(d["state"], "succeeded", "{d}");
    // Both backends chain the next lease after a success, fenced like a claim's.
    let chained = chained.expect("a success chains the webhook's next due delivery");
    clock.advance(Duration::from_secs(61 * 60));
    let taken = claim(store, "c", clock.now_micros()).await;
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, chained.id);
    assert_eq!(taken[0].lease_token, chained.lease_token + 1);
    let now = clock.now_micros();
    assert_eq!(
        store
            .record_attempt(&chained.id, &hook, &success(&chained, "b", now))
            .await
            .expect("record"),
        Recorded::StaleLease
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Real processes
// ---------------------------------------------------------------------------------------------

/// Test defaults for a node: a short delivery timeout (so the lease, the delivery timeout
/// plus 30 s, is 32 s: far beyond the takeover these tests wait for) and one attempt in
/// flight per webhook.
fn node_env<'a>(name: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("BERTH_NODE_NAME", name),
        ("BERTH_DELIVERY_TIMEOUT", "2s"),
        ("BERTH_DELIVERY_PER_WEBHOOK_IN_FLIGHT", "1"),
    ];
    env.extend_from_slice(extra);
    env
}

/// A workspace, a model and a webhook to `rx`; answers the webhook's id.
async fn setup(server: &Server, rx: &TestReceiver) -> String {
    server
        .post("/api/v1/workspaces", json!({"name": "acme"}))
        .await;
    server
        .post("/api/v1/workspaces/acme/models", json!({"name": "m"}))
        .await;
    let hook = server
        .post(
            HOOKS,
            json!({"name": "r", "url": rx.url, "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    hook["id"].as_str().expect("id").to_owned()
}

/// `(node, status code)` of every attempt recorded for delivery `id`.
async fn attempts(db: &Db, id: &str) -> Vec<(String, Option<i64>)> {
    let mut conn = db.connect().await;
    sqlx::query(
        "SELECT node, status_code FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut conn)
    .await
    .expect("attempts")
    .iter()
    .map(|r| (r.get("node"), r.get("status_code")))
    .collect()
}

/// Waits until delivery `id` is in `state` (panics after `timeout`).
async fn wait_state(db: &Db, id: &str, state: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut conn = db.connect().await;
    loop {
        let now: Option<String> = sqlx::query("SELECT state FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut conn)
            .await
            .expect("state")
            .map(|r| r.get("state"));
        if now.as_deref() == Some(state) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "delivery {id}: {now:?}, not {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// PostgreSQL: node B is killed with SIGKILL while it holds every in-flight slot of the
/// webhook (the receiver holds its requests open); node A, with the default heartbeat
/// settings, declares it dead and sends those deliveries again within 15 s of the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_deliveries_go_out_again_within_15_seconds() {
    berth::init_crypto();
    let pg = PgDatabase::create().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let rx = TestReceiver::start().await;
    // B's attempt is held open far longer than the test; every later request is answered.
    rx.script([Reply::status(200).delay(Duration::from_secs(120))]);
    let mut b = Server::start(
        &dir.path().join("b"),
        Some(&pg.url),
        &node_env("node-b", &[]),
    )
    .await;
    setup(&b, &rx).await;
    b.post(
        "/api/v1/workspaces/acme/models/m/versions",
        json!({"version": "1.0.0"}),
    )
    .await;
    let held = rx.wait_for(1, Duration::from_secs(10)).await;
    let id = held[0].header("webhook-id").expect("webhook-id");
    // A runs too: the webhook's one slot is B's, so A cannot send it while B lives.
    let a = Server::start(
        &dir.path().join("a"),
        Some(&pg.url),
        &node_env("node-a", &[]),
    )
    .await;
    let killed = Instant::now();
    b.kill();
    let got = rx.wait_for(2, Duration::from_secs(15)).await;
    let took = killed.elapsed();
    assert_eq!(got[1].header("webhook-id").as_deref(), Some(id.as_str()));
    assert!(took < Duration::from_secs(15), "sent again after {took:?}");
    a.wait_log("declared a silent node dead", Duration::from_secs(5))
        .await;
    let db = Db {
        dir: tempfile::tempdir().expect("temp dir"),
        pg: Some(pg),
    };
    wait_state(&db, &id, "succeeded", Duration::from_secs(10)).await;
    assert_eq!(attempts(&db, &id).await, [("node-a".to_owned(), Some(200))]);
    drop(a);
}

/// PostgreSQL: node A is paused with SIGSTOP mid-attempt; node B declares it dead, takes the
/// delivery and records its success. Resumed with SIGCONT, A finishes its attempt (its
/// timeout has passed) and tries to record it: refused, with a log line naming the delivery
/// and the node; A also notices it was declared dead. Only B's attempt is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_cannot_record_over_the_new_owner_postgres() {
    berth::init_crypto();
    let db = Db::new(Backend::Postgres).await;
    let url = db.url().expect("url").to_owned();
    let rx = TestReceiver::start().await;
    rx.script([Reply::status(200).delay(Duration::from_secs(120))]);
    let fast = [
        ("BERTH_NODE_HEARTBEAT_INTERVAL", "200ms"),
        ("BERTH_NODE_DEAD_AFTER", "1s"),
    ];
    let a = Server::start(
        &db.dir.path().join("a"),
        Some(&url),
        &node_env("node-a", &fast),
    )
    .await;
    setup(&a, &rx).await;
    a.post(
        "/api/v1/workspaces/acme/models/m/versions",
        json!({"version": "1.0.0"}),
    )
    .await;
    let held = rx.wait_for(1, Duration::from_secs(10)).await;
    let id = held[0].header("webhook-id").expect("webhook-id");
    a.pause();
    let b = Server::start(
        &db.dir.path().join("b"),
        Some(&url),
        &node_env("node-b", &fast),
    )
    .await;
    rx.wait_for(2, Duration::from_secs(15)).await;
    wait_state(&db, &id, "succeeded", Duration::from_secs(10)).await;
    a.resume();
    let line = a.wait_log("attempt refused", Duration::from_secs(15)).await;
    assert!(line.contains(&id) && line.contains("node-a"), "{line}");
    a.wait_log("declared dead by another node", Duration::from_secs(10))
        .await;
    assert_eq!(attempts(&db, &id).await, [("node-b".to_owned(), Some(200))]);
    // A carries on: it beats again, and delivers new events.
    a.post(
        "/api/v1/workspaces/acme/models/m/versions",
        json!({"version": "1.0.1"}),
    )
    .await;
    rx.wait_for(3, Duration::from_secs(15)).await;
    drop((a, b));
}

/// SQLite: one server per data directory, so what takes a paused server's lease is another
/// claim on the same file once the lease has ended: here the test's own, through the store,
/// with its clock past the lease. Resumed, the server's attempt is refused and logged; the
/// test's attempt stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_cannot_record_over_the_new_owner_sqlite() {
    let db = Db::new(Backend::Sqlite).await;
    let rx = TestReceiver::start().await;
    rx.script([Reply::status(200).delay(Duration::from_secs(120))]);
    // A slow heartbeat: the pause should not catch the server inside a write (it would
    // keep the file's write lock while stopped).
    let slow = [
        ("BERTH_NODE_HEARTBEAT_INTERVAL", "10s"),
        ("BERTH_NODE_DEAD_AFTER", "30s"),
    ];
    let server = Server::start(db.dir.path(), None, &node_env("solo", &slow)).await;
    let hook = setup(&server, &rx).await;
    server
        .post(
            "/api/v1/workspaces/acme/models/m/versions",
            json!({"version": "1.0.0"}),
        )
        .await;
    let held = rx.wait_for(1, Duration::from_secs(10)).await;
    let id = held[0].header("webhook-id").expect("webhook-id");
    server.pause();
    let store = Store::open_sqlite(db.dir.path()).await.expect("open");
    // The server's lease ends 32 s after its claim; claim past that.
    let later = berth::store::now_micros() + 40_000_000;
    let taken = store
        .claim_deliveries("intruder", later, later + 60 * MINUTE, 10, 1)
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, id);
    assert_eq!(
        store
            .record_attempt(&id, &hook, &success(&taken[0], "intruder", later))
            .await
            .expect("record"),
        Recorded::Recorded
    );
    store.close().await;
    server.resume();
    let line = server
        .wait_log("attempt refused", Duration::from_secs(15))
        .await;
    assert!(line.contains(&id) && line.contains("solo"), "{line}");
    assert_eq!(
        attempts(&db, &id).await,
        [("intruder".to_owned(), Some(200))]
    );
    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    drop(server);
}

conformance!(successes_recorded_together_are_each_answered_for_their_own_lease);

/// Successes recorded at once (PostgreSQL writes them in one batch, SQLite in one group
/// commit) are each fenced by their own lease: in one go, two with their lease record, one
/// under a lease taken since is refused, one whose webhook was deleted meanwhile is gone, and
/// each answer names its own fate.
async fn successes_recorded_together_are_each_answered_for_their_own_lease(backend: Backend) {
    let rx = TestReceiver::start().await;
    let (app, hook) = app_with_deliveries(backend, &rx, 3).await;
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            HOOKS,
            json!({"name": "other", "url": rx.url, "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let other = b["id"].as_str().expect("id").to_owned();
    app.version("acme", "m", json!({"version": "2.0.0"})).await;
    let store = app.store();
    let now = app.clock.now_micros();
    let taken = store
        .claim_deliveries("a", now, now + 60 * MINUTE, 10, 10)
        .await
        .expect("claim");
    let (mine, theirs): (Vec<_>, Vec<_>) = taken.iter().partition(|d| d.webhook.id == hook);
    assert_eq!((mine.len(), theirs.len()), (4, 1), "{taken:#?}");
    let (s, b) = app.delete(ADMIN_TOKEN, &format!("{HOOKS}/{other}")).await;
    assert_eq!(s, 204, "{b}");
    let mut stale = success(mine[1], "a", now);
    stale.lease_token -= 1;
    let calls = [
        (mine[0], success(mine[0], "a", now)),
        (mine[1], stale),
        (theirs[0], success(theirs[0], "a", now)),
        (mine[2], success(mine[2], "a", now)),
    ];
    let answers = futures_util::future::join_all(
        calls
            .iter()
            .map(|(d, r)| store.record_attempt(&d.id, &d.webhook.id, r)),
    )
    .await;
    let answers: Vec<Recorded> = answers.into_iter().map(|a| a.expect("record")).collect();
    assert_eq!(
        answers,
        [
            Recorded::Recorded,
            Recorded::StaleLease,
            Recorded::Gone,
            Recorded::Recorded
        ]
    );
    assert_eq!(attempt_nodes(&app, &hook, &mine[0].id).await, ["a"]);
    assert!(attempt_nodes(&app, &hook, &mine[1].id).await.is_empty());
    assert_eq!(attempt_nodes(&app, &hook, &mine[2].id).await, ["a"]);
    // The refused one is still leased and pending, untouched.
    let (s, b) = app
        .get(
            ADMIN_TOKEN,
            &format!("{HOOKS}/{hook}/deliveries/{}", mine[1].id),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["state"].as_str(), b["attemptCount"].as_i64()),
        (Some("pending"), Some(0))
    );
}

conformance!(a_node_beats_while_it_runs_and_removes_its_row_when_it_stops);

/// The real binary registers at start, beats, and deletes its row on SIGTERM.
async fn a_node_beats_while_it_runs_and_removes_its_row_when_it_stops(backend: Backend) {
    let db = Db::new(backend).await;
    let data = db.dir.path().join("data");
    let mut server = Server::start(
        &data,
        db.url(),
        &node_env(
            "beating",
            &[
                ("BERTH_NODE_HEARTBEAT_INTERVAL", "100ms"),
                ("BERTH_NODE_DEAD_AFTER", "1s"),
            ],
        ),
    )
    .await;
    let url = match db.url() {
        Some(u) => u.to_owned(),
        None => format!("sqlite://{}", data.join("berth.db").display()),
    };
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    let first = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(t) = last_beat(&mut conn).await {
                break t;
            }
            assert!(Instant::now() < deadline, "no heartbeat row");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = last_beat(&mut conn).await.expect("row");
        if t > first {
            break;
        }
        assert!(Instant::now() < deadline, "the heartbeat does not move");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Answered: the server runs, with its signal handlers installed.
    assert_eq!(server.get("/healthz").await.status, 200);
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}: {}", server.log().join("\n"));
    assert_eq!(
        last_beat(&mut conn).await,
        None,
        "a clean stop removes the row"
    );
}

/// The last heartbeat of node `beating`, if it has a row.
async fn last_beat(conn: &mut sqlx::AnyConnection) -> Option<i64> {
    sqlx::query("SELECT last_beat_at FROM nodes WHERE name = 'beating'")
        .fetch_optional(conn)
        .await
        .expect("nodes")
        .map(|r| r.get::<i64, _>("last_beat_at"))
}
