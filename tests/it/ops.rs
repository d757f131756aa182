//! Operations: the real binary backed up under write load, stopped with SIGTERM mid-delivery,
//! and cut off from PostgreSQL by a proxy; auto-disable and re-enable are in `ops_disable.rs`.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, Reply, TestReceiver};
use crate::process::{Db, Server};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const VERSIONS: &str = "/api/v1/workspaces/acme/models/fraud/versions";
const HOOKS: &str = "/api/v1/workspaces/acme/models/fraud/webhooks";

async fn setup_hook(server: &Server, rx: &TestReceiver) -> String {
    server
        .post("/api/v1/workspaces", json!({"name": "acme"}))
        .await;
    server
        .post("/api/v1/workspaces/acme/models", json!({"name": "fraud"}))
        .await;
    let hook = server
        .post(
            HOOKS,
            json!({"name": "slow", "url": format!("{}/hook", rx.url),
                   "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    hook["id"].as_str().expect("webhook id").to_owned()
}

/// One delivery row: id, state, attempt count, lease.
#[derive(Debug)]
struct DeliveryRow {
    id: String,
    state: String,
    attempt_count: i64,
    locked_by: Option<String>,
    locked_until: Option<i64>,
}

async fn delivery_rows(conn: &mut sqlx::AnyConnection) -> Vec<DeliveryRow> {
    sqlx::query("SELECT id, state, attempt_count, locked_by, locked_until FROM deliveries")
        .fetch_all(&mut *conn)
        .await
        .expect("read deliveries")
        .iter()
        .map(|r| DeliveryRow {
            id: r.try_get("id").expect("id"),
            state: r.try_get("state").expect("state"),
            attempt_count: r.try_get("attempt_count").expect("attempt_count"),
            locked_by: r.try_get("locked_by").expect("locked_by"),
            locked_until: r.try_get("locked_until").expect("locked_until"),
        })
        .collect()
}

/// (delivery id, status code) of every recorded attempt.
async fn attempt_rows(conn: &mut sqlx::AnyConnection) -> Vec<(String, Option<i64>)> {
    sqlx::query("SELECT delivery_id, status_code FROM delivery_attempts")
        .fetch_all(&mut *conn)
        .await
        .expect("read attempts")
        .iter()
        .map(|r| {
            (
                r.try_get("delivery_id").expect("delivery_id"),
                r.try_get("status_code").expect("status_code"),
            )
        })
        .collect()
}

/// Waits until the receiver has seen every version in `want`.
async fn wait_versions(rx: &TestReceiver, want: &BTreeSet<String>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got: BTreeSet<String> = rx
            .received()
            .iter()
            .filter_map(|r| r.json()["version"].as_str().map(str::to_owned))
            .collect();
        if want.is_subset(&got) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "missing versions after {timeout:?}: {:?}",
            want.difference(&got).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Backup
// ---------------------------------------------------------------------------------------------

/// `berth backup` under concurrent writes: the copy is sound, holds every version the API
/// acknowledged before the backup started, and a server started on it serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_backup_of_a_running_server_under_write_load() {
    let db = Db::new(Backend::Sqlite).await;
    let server = Server::start(db.dir.path(), None, &[]).await;
    server
        .post("/api/v1/workspaces", json!({"name": "acme"}))
        .await;
    server
        .post("/api/v1/workspaces/acme/models", json!({"name": "fraud"}))
        .await;

    // Four writers, each recording the versions the API acknowledged (201).
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acked, stop) = (acked.clone(), stop.clone());
        let (client, base) = (server.client.clone(), server.base.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let version = format!("{w}.0.{i}");
                i += 1;
                let resp = client
                    .post(format!("{base}{VERSIONS}"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"version": version}))
                    .send()
                    .await;
                if let Ok(r) = resp
                    && r.status().as_u16() == 201
                {
                    acked.lock().expect("lock").push(version);
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().expect("lock").len() < 100 {
        assert!(Instant::now() < deadline, "writes are too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Everything acknowledged by now must be in the copy.
    let before: BTreeSet<String> = acked.lock().expect("lock").iter().cloned().collect();
    let copy = db.dir.path().join("copy.db");
    let data = db.dir.path().to_owned();
    let copy_arg = copy.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .arg("backup")
            .arg(&copy_arg)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("BERTH_DATABASE_URL")
            .env_remove("BERTH_CONFIG")
            .output()
            .expect("run berth backup")
    })
    .await
    .expect("backup task");
    let during = acked.lock().expect("lock").len();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "berth backup failed: {stderr}");
    assert!(stderr.contains("secret"), "reminds of the key: {stderr}");
    let after = acked.lock().expect("lock").len();
    assert!(
        after > before.len(),
        "writes went on during the backup ({} before, {during} when it ended, {after} in all)",
        before.len()
    );

    // The copy is private, as the database is: it holds token hashes and the audit log.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).expect("copy").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "backup file mode {mode:o}");
    }
    // The copy is sound and holds every acknowledged version.
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{}", copy.display()))
        .await
        .expect("open the copy");
    let check: String = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("integrity_check")
        .try_get(0)
        .expect("text");
    assert_eq!(check, "ok");
    let in_copy: BTreeSet<String> = sqlx::query("SELECT version FROM model_versions")
        .fetch_all(&mut conn)
        .await
        .expect("versions")
        .iter()
        .map(|r| r.try_get("version").expect("version"))
        .collect();
    let _ = conn.close().await;
    eprintln!(
        "backup: {} versions acknowledged before it began, {} in the copy, {after} in all",
        before.len(),
        in_copy.len()
    );
    let missing: Vec<_> = before.difference(&in_copy).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in the copy: {missing:?}"
    );

    // A second backup to the same file is refused, naming the problem.
    let again = Command::new(BIN)
        .arg("backup")
        .arg(&copy)
        .arg("--data-dir")
        .arg(db.dir.path())
        .env_remove("BERTH_DATABASE_URL")
        .env_remove("BERTH_CONFIG")
        .output()
        .expect("run berth backup");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    drop(server);

    // Restore: the copy as berth.db of a fresh data directory (same secret key), then serve.
    let restored = tempfile::tempdir().expect("temp dir");
    std::fs::copy(&copy, restored.path().join("berth.db")).expect("copy into data dir");
    let server = Server::start(restored.path(), None, &[]).await;
    let mut served = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{VERSIONS}?limit=500&cursor={c}"),
            None => format!("{VERSIONS}?limit=500"),
        };
        let a = server.get(&path).await;
        assert_eq!(a.status, 200, "{}", a.body);
        for v in a.body["items"].as_array().expect("items") {
            served.insert(v["version"].as_str().expect("version").to_owned());
        }
        match a.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(served, in_copy, "the restored server serves the copy");
}

#[test]
fn ops_backup_refuses_postgresql_and_names_pg_dump() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(BIN)
        .arg("backup")
        .arg(dir.path().join("x.db"))
        .args(["--database-url", "postgres://berth@127.0.0.1:5432/berth"])
        .env_remove("BERTH_CONFIG")
        .output()
        .expect("run berth backup");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!dir.path().join("x.db").exists());
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------------

conformance!(ops_sigterm_finishes_attempts_in_flight_and_releases_leases);

/// SIGTERM while slow attempts are in flight: they finish and are recorded whole, the
/// process exits 0 within the grace, no lease is left, and the rest waits for the next start.
async fn ops_sigterm_finishes_attempts_in_flight_and_releases_leases(backend: Backend) {
    const N: usize = 10;
    let db = Db::new(backend).await;
    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(200).delay(Duration::from_millis(1500)));
    let env = [
        ("BERTH_SHUTDOWN_GRACE", "10s"),
        ("BERTH_DELIVERY_TIMEOUT", "5s"),
    ];
    let mut server = Server::start(db.dir.path(), db.url(), &env).await;
    let hook = setup_hook(&server, &rx).await;
    for i in 0..N {
        server
            .post(VERSIONS, json!({"version": format!("1.0.{i}")}))
            .await;
    }
    // Four attempts (the per-webhook limit) are now waiting on the receiver.
    rx.wait_for(4, Duration::from_secs(20)).await;
    // And one request: Test Webhook, to a receiver that answers after 1.5 s too.
    let test_rx = TestReceiver::start().await;
    test_rx.default_reply(Reply::status(200).delay(Duration::from_millis(1500)));
    let test_hook = server
        .post(
            HOOKS,
            json!({"name": "tested", "url": format!("{}/t", test_rx.url),
                   "triggers": ["MODEL_VERSION_DELETED"]}),
        )
        .await;
    let test_path = format!("{HOOKS}/{}/test", test_hook["id"].as_str().expect("id"));
    let request = {
        let client = reqwest::Client::new();
        let url = format!("{}{test_path}", server.base);
        tokio::spawn(async move {
            let resp = client.post(url).bearer_auth(ADMIN_TOKEN).send().await?;
            let status = resp.status().as_u16();
            let body: Value = resp.json().await?;
            Ok::<_, reqwest::Error>((status, body))
        })
    };
    test_rx.wait_for(1, Duration::from_secs(20)).await;
    let sent = Instant::now();
    server.terminate();
    // New connections are refused at once, while the process still finishes its work.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        if fresh
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err()
        {
            break;
        }
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = request
        .await
        .expect("request task")
        .expect("the request in flight at SIGTERM is answered");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    let status = server.wait_exit(Duration::from_secs(20)).await;
    let took = sent.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}, past the grace"
    );
    assert!(
        took >= Duration::from_millis(500),
        "exited after {took:?}: did not wait for the attempts in flight"
    );
    let log = server.log().join("\n");
    assert!(log.contains("stopped"), "{log}");
    drop(server);

    let received = rx.received();
    assert!(
        received.len() < N,
        "not mid-delivery: {} sent",
        received.len()
    );
    let sent_ids: BTreeSet<String> = received
        .iter()
        .map(|r| r.header("webhook-id").expect("webhook-id"))
        .collect();
    let mut conn = db.connect().await;
    let deliveries = delivery_rows(&mut conn).await;
    let attempts = attempt_rows(&mut conn).await;
    let _ = conn.close().await;
    assert_eq!(deliveries.len(), N);
    for d in &deliveries {
        assert!(
            d.locked_by.is_none() && d.locked_until.is_none(),
            "a lease outlived the process: {d:?}"
        );
        if sent_ids.contains(&d.id) {
            assert_eq!(
                (d.state.as_str(), d.attempt_count),
                ("succeeded", 1),
                "{d:?}"
            );
        } else {
            assert_eq!((d.state.as_str(), d.attempt_count), ("pending", 0), "{d:?}");
        }
    }
    // One attempt row per request the receiver got, each with the receiver's answer.
    assert_eq!(attempts.len(), received.len(), "{attempts:?}");
    for (id, code) in &attempts {
        assert!(sent_ids.contains(id), "{id} recorded but never sent");
        assert_eq!(*code, Some(200), "{id} recorded half");
    }

    // The next start sends the rest.
    rx.default_reply(Reply::status(200));
    let server = Server::start(db.dir.path(), db.url(), &env).await;
    let want: BTreeSet<String> = (0..N).map(|i| format!("1.0.{i}")).collect();
    wait_versions(&rx, &want, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = server
            .get(&format!(
                "{HOOKS}/{hook}/deliveries?state=succeeded&limit=100"
            ))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        if a.body["items"].as_array().map(Vec::len) == Some(N) {
            break;
        }
        assert!(Instant::now() < deadline, "not all succeeded: {}", a.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
}

conformance!(ops_attempt_longer_than_the_grace_is_released_and_sent_again);

/// An attempt that cannot finish within the grace is abandoned unrecorded: its lease is
/// released, the process still exits 0, and the next start sends it (same webhook-id).
async fn ops_attempt_longer_than_the_grace_is_released_and_sent_again(backend: Backend) {
    let db = Db::new(backend).await;
    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(200).delay(Duration::from_secs(30)));
    let env = [
        ("BERTH_SHUTDOWN_GRACE", "1s"),
        ("BERTH_DELIVERY_TIMEOUT", "60s"),
    ];
    let mut server = Server::start(db.dir.path(), db.url(), &env).await;
    let hook = setup_hook(&server, &rx).await;
    server.post(VERSIONS, json!({"version": "1.0.0"})).await;
    let first = rx.wait_for(1, Duration::from_secs(20)).await;
    let id = first[0].header("webhook-id").expect("webhook-id");
    // A request that cannot finish within the grace either: Test Webhook to the same receiver.
    let request = {
        let client = reqwest::Client::new();
        let url = format!("{}{HOOKS}/{hook}/test", server.base);
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    rx.wait_for(2, Duration::from_secs(20)).await;
    let sent = Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(20)).await;
    let took = sent.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took < Duration::from_secs(8),
        "took {took:?}: did not give up at the grace"
    );
    let log = server.log().join("\n");
    assert!(log.contains("abandon"), "{log}");
    let answer = request.await.expect("request task");
    assert!(
        answer.is_err(),
        "the request past the grace is cut off, not answered: {answer:?}"
    );
    drop(server);

    let mut conn = db.connect().await;
    let deliveries = delivery_rows(&mut conn).await;
    let attempts = attempt_rows(&mut conn).await;
    let _ = conn.close().await;
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert_eq!(d.id, id);
    assert_eq!((d.state.as_str(), d.attempt_count), ("pending", 0), "{d:?}");
    assert!(d.locked_by.is_none() && d.locked_until.is_none(), "{d:?}");
    assert!(attempts.is_empty(), "nothing half-recorded: {attempts:?}");

    rx.default_reply(Reply::status(200));
    let server = Server::start(db.dir.path(), db.url(), &env).await;
    let got = rx.wait_for(3, Duration::from_secs(30)).await;
    assert_eq!(got[2].header("webhook-id").as_deref(), Some(id.as_str()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = server.get(HOOKS).await;
        assert_eq!(a.status, 200, "{}", a.body);
        if a.body["items"][0]["lastDelivery"]["state"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "not recorded: {}", a.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Database outage
// ---------------------------------------------------------------------------------------------

/// A loopback TCP proxy to PostgreSQL that a test can cut (every connection dropped, new ones
/// closed as soon as they are accepted) and restore.
struct Proxy {
    port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (c, l) = (cut.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                l.lock().expect("links").push(link.abort_handle());
            }
        });
        Proxy {
            port,
            cut,
            links,
            accept,
        }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// PostgreSQL cut off: the API answers 503 in the error shape, `/readyz` 503, the worker
/// backs off without a hot loop; once it is back everything resumes and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_database_outage_answers_503_and_recovers() {
    const N: usize = 4;
    let db = Db::new(Backend::Postgres).await;
    let direct = url::Url::parse(db.url().expect("pg url")).expect("parse pg url");
    let target = direct
        .socket_addrs(|| Some(5432))
        .expect("pg address")
        .into_iter()
        .next()
        .expect("one address");
    assert!(target.ip().is_loopback(), "PostgreSQL must be on loopback");
    let proxy = Proxy::start(target).await;
    let mut proxied = direct.clone();
    proxied.set_port(Some(proxy.port)).expect("set port");

    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(200).delay(Duration::from_millis(1000)));
    let env = [
        ("BERTH_DATABASE_ACQUIRE_TIMEOUT", "1s"),
        ("BERTH_DELIVERY_PER_WEBHOOK_IN_FLIGHT", "1"),
        (
            "BERTH_RETRY_SCHEDULE",
            "500ms,500ms,500ms,500ms,500ms,500ms",
        ),
        ("BERTH_DELIVERY_TIMEOUT", "5s"),
    ];
    let server = Server::start(db.dir.path(), Some(proxied.as_str()), &env).await;
    let hook = setup_hook(&server, &rx).await;
    for i in 0..N {
        server
            .post(VERSIONS, json!({"version": format!("1.0.{i}")}))
            .await;
    }
    rx.wait_for(1, Duration::from_secs(20)).await;

    // Cut: one attempt is in flight, the others wait in the queue.
    proxy.cut();
    let cut_at = Instant::now();
    let log_before = server.log().len();
    let paths = [
        "/api/v1/workspaces/acme/models",
        "/api/v1/workspaces/acme/events",
        "/api/v1/me",
    ];
    for path in paths {
        let started = Instant::now();
        let a = server.get(path).await;
        assert_eq!(a.status, 503, "GET {path}: {}", a.body);
        assert_eq!(a.body["error"]["code"], "unavailable", "{}", a.body);
        assert_eq!(a.retry_after.as_deref(), Some("5"));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "GET {path} took {:?}: requests must fail fast",
            started.elapsed()
        );
    }
    let a = server
        .call(
            reqwest::Method::POST,
            VERSIONS,
            Some(json!({"version": "9.9.9"})),
        )
        .await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "unavailable");
    let ready = server.get("/readyz").await;
    assert_eq!(
        (ready.status, &ready.body),
        (503, &json!({"status": "unavailable"}))
    );
    let health = server.get("/healthz").await;
    assert_eq!(health.status, 200, "the process is alive");

    // Stay cut for a few seconds and count the worker's complaints.
    while cut_at.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during: Vec<String> = server.log()[log_before..].to_vec();
    let claim_failures = during
        .iter()
        .filter(|l| l.contains("claiming deliveries failed"))
        .count();
    assert!(
        (1..=8).contains(&claim_failures),
        "the worker should back off, one line per step; {claim_failures} lines in 6 s:\n{}",
        during.join("\n")
    );
    eprintln!(
        "outage: {claim_failures} claim failures logged, {} log lines in 6 s",
        during.len()
    );
    assert!(
        during.len() < 80,
        "too much logging during the outage ({} lines):\n{}",
        during.len(),
        during.join("\n")
    );

    // Restore: ready again, and every version is delivered.
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = server.get("/readyz").await;
        if ready.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not ready after the restore");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let want: BTreeSet<String> = (0..N).map(|i| format!("1.0.{i}")).collect();
    rx.default_reply(Reply::status(200));
    wait_versions(&rx, &want, Duration::from_secs(90)).await;
    let a = server
        .call(
            reqwest::Method::POST,
            VERSIONS,
            Some(json!({"version": "2.0.0"})),
        )
        .await;
    assert_eq!(a.status, 201, "writes work again: {}", a.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = server
            .get(&format!("{HOOKS}/{hook}/deliveries?limit=100"))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let items = a.body["items"].as_array().cloned().unwrap_or_default();
        if items.len() == N + 1 && items.iter().all(|d| d["state"] == "succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "log not settled: {}", a.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server.log().iter().any(|l| l.contains("works again")),
        "the worker says when it recovers"
    );
    drop(server);
    drop(proxy);
}

/// SQLite: a second `berth serve` on a data directory in use refuses to start, naming the
/// directory, and the first one goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_a_second_server_on_the_same_sqlite_directory_refuses_to_start() {
    let db = Db::new(Backend::Sqlite).await;
    let first = Server::start(db.dir.path(), None, &[]).await;
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(db.dir.path())
        .env_remove("BERTH_DATABASE_URL")
        .env_remove("BERTH_CONFIG")
        .env("BERTH_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("run a second berth serve");
    assert!(!out.status.success(), "the second server started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another berth serve is using the data directory")
            && stderr.contains(&db.dir.path().display().to_string()),
        "{stderr}"
    );
    assert_eq!(first.get("/api/v1/me").await.status, 200);
}

conformance!(ops_a_taken_port_creates_nothing_and_says_the_address_is_in_use);

/// `berth serve` on a port another process holds, with a fresh data directory: it exits
/// saying the address is in use (not that a setting is invalid), prints no admin token, and
/// creates nothing: no data directory, no database tables.
async fn ops_a_taken_port_creates_nothing_and_says_the_address_is_in_use(backend: Backend) {
    let db = Db::new(backend).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("address").to_string();
    let data_dir = db.dir.path().join("fresh");
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", &addr, "--data-dir"])
        .arg(&data_dir)
        .env_remove("BERTH_DATABASE_URL")
        .env_remove("BERTH_CONFIG")
        .env_remove("BERTH_ADMIN_TOKEN")
        .env_remove("BERTH_SECRET_KEY");
    if let Some(url) = db.url() {
        cmd.args(["--database-url", url]);
    }
    let out = cmd.output().expect("run berth serve");
    assert!(!out.status.success(), "berth serve started on a taken port");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("already in use"),
        "{stderr}"
    );
    assert!(!stderr.contains("invalid setting"), "{stderr}");
    assert!(!stdout.contains("Created the server admin"), "{stdout}");
    assert!(
        !data_dir.exists(),
        "the data directory was created: {:?}",
        std::fs::read_dir(&data_dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    if db.pg.is_some() {
        let mut conn = db.connect().await;
        let tables: i64 = sqlx::query(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("count tables")
        .get(0);
        let _ = conn.close().await;
        assert_eq!(tables, 0, "migrations ran before the port was bound");
    }
    drop(taken);
}

/// The permission bits of `path`.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn set_mode(path: &std::path::Path, bits: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(bits))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// SQLite: a new data directory is created 0700 and the database files (`berth.db`, `-wal`,
/// `-shm`) 0600; a looser directory and files found at start are tightened, with a log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_the_data_directory_and_database_files_are_private() {
    const FILES: [&str; 4] = ["berth.db", "berth.db-wal", "berth.db-shm", "berth.lock"];
    let db = Db::new(Backend::Sqlite).await;
    let data_dir = db.dir.path().join("fresh");
    let mut server = Server::start(&data_dir, None, &[]).await;
    server
        .post("/api/v1/workspaces", json!({"name": "acme"}))
        .await;
    assert_eq!(mode(&data_dir), 0o700, "a new data directory");
    for f in FILES {
        assert_eq!(mode(&data_dir.join(f)), 0o600, "a new {f}");
    }
    // Killed, so the -wal and -shm files stay; then loosened, as an older Berth left them.
    server.kill();
    set_mode(&data_dir, 0o755);
    for f in FILES {
        set_mode(&data_dir.join(f), 0o644);
    }
    let server = Server::start(&data_dir, None, &[]).await;
    assert_eq!(server.get("/api/v1/workspaces/acme").await.status, 200);
    assert_eq!(
        mode(&data_dir),
        0o700,
        "an existing data directory, tightened"
    );
    for f in FILES {
        assert_eq!(mode(&data_dir.join(f)), 0o600, "an existing {f}, tightened");
    }
    let log = server.log().join("\n");
    assert!(
        log.contains("tightened") && log.contains(&data_dir.display().to_string()),
        "{log}"
    );
}
