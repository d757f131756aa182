//! Auto-disable: a webhook whose every delivery failed for `auto_disable_after` is disabled
//! with a reason; `POST …/enable` re-enables it and sends what it missed, in event order.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, Reply, TestApp, TestReceiver, assert_error};

const HOOKS: &str = "/api/v1/workspaces/acme/models/fraud/webhooks";

async fn app_with(backend: Backend, auto_disable_after: Duration, schedule: &str) -> TestApp {
    let schedule = berth::delivery::schedule::RetrySchedule::parse(schedule).expect("schedule");
    TestApp::spawn_with(backend, move |s| {
        s.delivery.auto_disable_after = Some(auto_disable_after);
        s.delivery.schedule = schedule;
        // One attempt at a time per webhook: arrivals are in claim order.
        s.delivery.per_webhook_in_flight = 1;
    })
    .await
}

async fn create_hook(app: &TestApp, rx: &TestReceiver, name: &str) -> String {
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            HOOKS,
            json!({"name": name, "url": format!("{}/{name}", rx.url),
                   "triggers": ["MODEL_VERSION_CREATED", "MODEL_TAG_CHANGED"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_str().expect("id").to_owned()
}

async fn webhook(app: &TestApp, hook: &str) -> Value {
    let (s, b) = app.get(ADMIN_TOKEN, &format!("{HOOKS}/{hook}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

/// (trigger, version) of every request a receiver got from `from` on.
fn arrivals(rx: &TestReceiver, from: usize) -> Vec<(String, String)> {
    rx.received()[from..]
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["eventTrigger"].as_str().unwrap_or_default().to_owned(),
                body["version"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn create_version(app: &TestApp, version: &str, events: &mut Vec<(String, String)>) {
    app.version("acme", "fraud", json!({"version": version}))
        .await;
    events.push(("MODEL_VERSION_CREATED".into(), version.into()));
}

conformance!(ops_failing_webhook_is_disabled_then_enable_sends_what_it_missed);

/// On the test clock, with one retry 10 minutes after a failure: nothing waits for the
/// schedule or the auto-disable period in real time.
async fn ops_failing_webhook_is_disabled_then_enable_sends_what_it_missed(backend: Backend) {
    let app = app_with(backend, Duration::from_secs(3600), "10m").await;
    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(500));
    let healthy_rx = TestReceiver::start().await;
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let bob = app.user("bob").await;
    app.add_member("acme", "bob", "member").await;
    let hook = create_hook(&app, &rx, "failing").await;
    let healthy = create_hook(&app, &healthy_rx, "healthy").await;

    // Every attempt fails. The first failure starts the run; 40 minutes on, 1.0.1 fails and
    // 1.0.0's retry too (its last: it is failed), and the webhook is still enabled; 80
    // minutes on, 1.0.2's first failure disables it. Each step drains the queue: every
    // attempt due is made and recorded before the webhook is looked at.
    let mut events = Vec::new();
    create_version(&app, "1.0.0", &mut events).await;
    app.drain().await;
    assert_eq!(
        webhook(&app, &hook).await["enabled"],
        true,
        "disabled at its first failure"
    );
    app.clock.advance(Duration::from_secs(40 * 60));
    create_version(&app, "1.0.1", &mut events).await;
    app.drain().await;
    let w = webhook(&app, &hook).await;
    assert_eq!(
        w["enabled"], true,
        "disabled before auto_disable_after, after 40 minutes of failures: {w}"
    );
    app.clock.advance(Duration::from_secs(40 * 60));
    create_version(&app, "1.0.2", &mut events).await;
    app.drain().await;
    let disabled = webhook(&app, &hook).await;
    assert_eq!(
        disabled["enabled"], false,
        "not disabled after 80 minutes of failures: {disabled}"
    );
    let reason = disabled["disabledReason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("every delivery failed since 20"),
        "reason: {disabled}"
    );
    assert_eq!(
        webhook(&app, &healthy).await["enabled"],
        true,
        "a healthy webhook beside it stays enabled"
    );

    // While it is disabled, events go on; it is sent nothing: not the new events (they get
    // no delivery), not the retries still waiting (due by the clock, not claimed).
    let before = rx.received().len();
    let log_before = deliveries_of(&app, &hook).await;
    assert_eq!(
        recorded_attempts(&log_before),
        before as u64,
        "{log_before:#?}"
    );
    create_version(&app, "2.0.0", &mut events).await;
    create_version(&app, "2.0.1", &mut events).await;
    let (s, b) = app
        .patch(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/fraud/versions/2.0.0/tags",
            json!({"add": ["prod"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    events.push(("MODEL_TAG_CHANGED".into(), "2.0.0".into()));
    app.clock.advance(Duration::from_secs(3600));
    app.drain().await;
    assert_eq!(
        rx.received().len(),
        before,
        "a disabled webhook is sent nothing"
    );
    let log = deliveries_of(&app, &hook).await;
    assert_eq!(log, log_before, "a disabled webhook's deliveries changed");

    // Only a workspace admin may enable; an unknown webhook is a 404.
    let path = format!("{HOOKS}/{hook}/enable");
    assert_error(&app.post_empty(&bob, &path).await, 403, None);
    assert_error(
        &app.post_empty(ADMIN_TOKEN, &format!("{HOOKS}/nope/enable"))
            .await,
        404,
        None,
    );

    // One call re-enables it and queues everything it missed, in event order.
    rx.default_reply(Reply::status(200));
    let from = rx.received().len();
    let (s, b) = app.post_empty(ADMIN_TOKEN, &path).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["webhook"]["enabled"], true, "{b}");
    assert_eq!(b["webhook"]["disabledReason"], Value::Null, "{b}");
    // The three above (and a version created as it was being disabled, if any).
    assert!(b["missedEvents"].as_u64().unwrap_or(0) >= 3, "{b}");
    let queued = b["replayedFailed"].as_u64().unwrap_or(0)
        + b["missedEvents"].as_u64().unwrap_or(0)
        + b["pending"].as_u64().unwrap_or(0);
    assert_eq!(queued as usize, events.len(), "every event, once: {b}");
    assert!(b["replayedFailed"].as_u64().unwrap_or(0) >= 1, "{b}");

    rx.wait_for(from + events.len(), Duration::from_secs(30))
        .await;
    assert_eq!(
        arrivals(&rx, from),
        events,
        "what it missed, in event order"
    );

    // The log agrees, and a second enable changes nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = app
            .get(ADMIN_TOKEN, &format!("{HOOKS}/{hook}/deliveries?limit=500"))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let items = b["items"].as_array().cloned().unwrap_or_default();
        if items.len() == events.len() && items.iter().all(|d| d["state"] == "succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "log not settled: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, b) = app.post_empty(ADMIN_TOKEN, &path).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (&b["replayedFailed"], &b["missedEvents"], &b["pending"]),
        (&json!(0), &json!(0), &json!(0))
    );
    app.drain().await;
    assert_eq!(app.pending_deliveries().await, 0, "nothing is left to send");
    assert_eq!(
        rx.received().len(),
        from + events.len(),
        "nothing sent twice"
    );
    app.stop().await;
}

/// The webhook's deliveries, as the log shows them.
async fn deliveries_of(app: &TestApp, hook: &str) -> Vec<Value> {
    let (s, b) = app
        .get(ADMIN_TOKEN, &format!("{HOOKS}/{hook}/deliveries?limit=500"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"].as_array().cloned().unwrap_or_default()
}

/// The attempts recorded over these deliveries.
fn recorded_attempts(log: &[Value]) -> u64 {
    log.iter().filter_map(|d| d["attemptCount"].as_u64()).sum()
}

/// Waits until `n` attempts of the webhook's deliveries are recorded (not just sent): the
/// retry's due time is set when the failure is recorded, by the clock of that moment.
async fn wait_recorded(app: &TestApp, hook: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = app
            .get(ADMIN_TOKEN, &format!("{HOOKS}/{hook}/deliveries?limit=500"))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let recorded: u64 = b["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|d| d["attemptCount"].as_u64())
                    .sum()
            })
            .unwrap_or(0);
        if recorded >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{recorded} of {n} attempts recorded: {b}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

conformance!(ops_a_success_resets_the_run_of_failures);

/// Failures broken by successes never add up to a disable; unbroken, they do. On the test
/// clock: each delivery fails, its retry falls due 30 minutes later, and succeeds; four
/// such rounds span two hours of failures, twice `auto_disable_after`, without a disable.
/// Then a run of failures longer than an hour disables the webhook. Nothing waits for
/// the schedule or the auto-disable period in real time.
async fn ops_a_success_resets_the_run_of_failures(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.delivery.auto_disable_after = Some(Duration::from_secs(3600));
        s.delivery.schedule =
            berth::delivery::schedule::RetrySchedule::parse("30m").expect("schedule");
        s.delivery.per_webhook_in_flight = 1;
    })
    .await;
    // A retry is due 30 minutes ± 20% after its failure.
    let retry_wait = Duration::from_secs(37 * 60);
    let rx = TestReceiver::start().await;
    // Every delivery fails once, then succeeds on its retry; then everything fails.
    rx.script((0..4).flat_map(|_| [Reply::status(500), Reply::status(200)]));
    rx.default_reply(Reply::status(500));
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let hook = create_hook(&app, &rx, "flaky").await;
    let mut events = Vec::new();
    for i in 0..4 {
        create_version(&app, &format!("1.0.{i}"), &mut events).await;
        wait_recorded(&app, &hook, 2 * i as u64 + 1).await;
        app.clock.advance(retry_wait);
        rx.wait_for(2 * i + 2, Duration::from_secs(10)).await;
    }
    let w = webhook(&app, &hook).await;
    assert_eq!(w["enabled"], true, "{w}");
    assert_eq!(w["disabledReason"], Value::Null, "{w}");
    // Now every attempt fails: the first starts the run, the retry 37 minutes later ends
    // the schedule, and the next delivery's first attempt, 74 minutes into the run,
    // disables the webhook.
    create_version(&app, "2.0.0", &mut events).await;
    wait_recorded(&app, &hook, 9).await;
    app.clock.advance(retry_wait);
    wait_recorded(&app, &hook, 10).await;
    assert_eq!(
        webhook(&app, &hook).await["enabled"],
        true,
        "37 minutes of failures"
    );
    app.clock.advance(retry_wait);
    create_version(&app, "2.0.1", &mut events).await;
    rx.wait_for(11, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let w = loop {
        let w = webhook(&app, &hook).await;
        if w["enabled"] == false {
            break w;
        }
        assert!(
            Instant::now() < deadline,
            "not disabled after 74 minutes of failures: {w}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        w["disabledReason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("every delivery failed since 20"),
        "{w}"
    );
    app.stop().await;
}

conformance!(ops_gone_disables_and_enable_replays_the_refused_delivery);

/// 410 Gone disables at once, the same way: enable sends the refused delivery and what
/// happened since.
async fn ops_gone_disables_and_enable_replays_the_refused_delivery(backend: Backend) {
    let app = app_with(backend, Duration::from_secs(3600), "200ms,200ms").await;
    let rx = TestReceiver::start().await;
    rx.script([Reply::status(410)]);
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let hook = create_hook(&app, &rx, "gone").await;
    let mut events = Vec::new();
    create_version(&app, "1.0.0", &mut events).await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let w = loop {
        let w = webhook(&app, &hook).await;
        if w["enabled"] == false {
            break w;
        }
        assert!(Instant::now() < deadline, "410 did not disable: {w}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        w["disabledReason"]
            .as_str()
            .unwrap_or_default()
            .contains("410"),
        "{w}"
    );
    create_version(&app, "1.0.1", &mut events).await;
    let (s, b) = app
        .post_empty(ADMIN_TOKEN, &format!("{HOOKS}/{hook}/enable"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (&b["replayedFailed"], &b["missedEvents"]),
        (&json!(1), &json!(1)),
        "{b}"
    );
    rx.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(arrivals(&rx, 1), events);
    app.stop().await;
}
