//! `berth bench`: starts its own Berth (this same binary, `serve`, as a child process) and
//! loopback receivers, runs the performance scenarios, prints a table and writes the same
//! figures as JSON. Figures only: nothing here asserts a speed.
//!
//! 1. registry writes (version creation over HTTP) at concurrency 1 and 16;
//! 2. event → delivery latency at a steady rate;
//! 3. delivery throughput: 10 webhooks on one model;
//! 4. isolation: scenario 2 beside a receiver that never answers and a closed port;
//! 5. webhook propagation: a new webhook gets the very next event, a deleted one nothing;
//! 6. footprint: the server's peak RSS and the database size.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};

const TOKEN: &str = "berth_bench_admin_token_0123456789";

/// Options of `berth bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Benchmark PostgreSQL at this URL (a fresh database is created there and dropped);
    /// default: SQLite in a temporary directory
    #[arg(long)]
    pub database_url: Option<String>,
    /// Length of the steady-rate scenarios (2 and 4)
    #[arg(long, default_value = "30s")]
    pub duration: String,
    /// Events per second in the steady-rate scenarios
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Seconds of each registry-write run (scenario 1)
    #[arg(long, default_value = "5s")]
    pub write_duration: String,
    /// Events in the throughput scenario (each goes to 10 webhooks)
    #[arg(long, default_value_t = 1000)]
    pub throughput_events: usize,
    /// Rounds of the propagation scenario
    #[arg(long, default_value_t = 20)]
    pub propagation_rounds: usize,
    /// Where to write the figures as JSON
    #[arg(long, default_value = "bench-results.json")]
    pub json: std::path::PathBuf,
    /// Run only these scenarios (comma-separated numbers 1–5; the footprint is always
    /// measured), e.g. `--only 1,3` while working on throughput
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=5))]
    pub only: Vec<u8>,
}

#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(mut samples: Vec<f64>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples[i.min(samples.len() - 1)]
        };
        Latency {
            count: samples.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: samples[samples.len() - 1],
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct WriteRun {
    pub concurrency: usize,
    pub requests: usize,
    pub errors: usize,
    pub per_second: f64,
    pub latency: Latency,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub backend: String,
    pub machine: String,
    pub registry_writes: Vec<WriteRun>,
    pub delivery_latency: Latency,
    pub delivery_throughput_per_second: f64,
    pub delivery_throughput_deliveries: usize,
    pub isolation_healthy_latency: Latency,
    pub propagation_created_received_next_event: String,
    pub propagation_deleted_received_after: String,
    pub peak_rss_mb: f64,
    pub database_mb: f64,
}

/// A receiver on 127.0.0.1 that notes when each version arrived (and counts everything).
#[derive(Clone)]
struct Receiver {
    url: String,
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    by_path: Arc<Mutex<HashMap<String, usize>>>,
    count: Arc<AtomicU64>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let r = Receiver {
            url: format!("http://{addr}"),
            arrivals: Arc::default(),
            by_path: Arc::default(),
            count: Arc::default(),
        };
        let state = r.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let state = state.clone();
            async move {
                let now = Instant::now();
                let path = req.uri().path().to_owned();
                let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                if let Ok(v) = serde_json::from_slice::<Value>(&body)
                    && let Some(version) = v["version"].as_str()
                {
                    state
                        .arrivals
                        .lock()
                        .map(|mut m| m.entry(version.to_owned()).or_insert(now).to_owned())
                        .ok();
                }
                if let Ok(mut m) = state.by_path.lock() {
                    *m.entry(path).or_default() += 1;
                }
                state.count.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(r)
    }
}

/// A TCP server that accepts connections and never answers.
async fn hung_receiver() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok(format!("http://{addr}"))
}

async fn closed_port() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(format!("http://{addr}"))
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(data_dir: &std::path::Path, database_url: Option<&str>) -> anyhow::Result<Server> {
    let exe = std::env::current_exe().context("locating the berth binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("BERTH_ADMIN_TOKEN", TOKEN)
        .env("BERTH_ALLOWED_TARGET_CIDRS", "127.0.0.0/8")
        .env("BERTH_DELIVERY_TIMEOUT", "5s")
        .env("BERTH_LOG", "info,berth::delivery=error")
        .env("BERTH_ROLE", "all")
        // The load below is far over the default per-token limit (100/s): measure the
        // server, not the limiter.
        .env("BERTH_RATE_LIMIT_PER_SECOND", "0")
        .env("BERTH_AUTH_FAILURES_PER_MINUTE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match database_url {
        Some(url) => cmd.env("BERTH_DATABASE_URL", url),
        None => cmd.env_remove("BERTH_DATABASE_URL"),
    };
    let mut child = cmd.spawn().context("starting berth serve")?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut shown = 0;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // The server's errors, if any, belong in the bench's output (the first 20).
            if line.contains("ERROR") && shown < 20 {
                eprintln!("server: {line}");
                shown += 1;
            }
            if let Some(url) = crate::app::listening_url(&line) {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .context("berth serve did not start")?;
    Ok(Server { child, base })
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let (s, v) = self.call(reqwest::Method::POST, path, Some(body)).await?;
        if !(200..300).contains(&s) {
            bail!("POST {path}: {s} {v}");
        }
        Ok(v)
    }

    async fn webhook(&self, model: &str, name: &str, url: &str) -> anyhow::Result<String> {
        let v = self
            .post(
                &format!("/api/v1/workspaces/bench/models/{model}/webhooks"),
                json!({"name": name, "url": url, "triggers": ["MODEL_VERSION_CREATED"]}),
            )
            .await?;
        Ok(v["id"].as_str().unwrap_or_default().to_owned())
    }

    async fn create_version(&self, model: &str, version: &str) -> anyhow::Result<u16> {
        let (s, _) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/workspaces/bench/models/{model}/versions"),
                Some(json!({ "version": version })),
            )
            .await?;
        Ok(s)
    }

    async fn queue_depth(&self) -> anyhow::Result<i64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("berth_delivery_queue_depth "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1))
    }
}

async fn registry_writes(
    api: &Arc<Api>,
    concurrency: usize,
    run: Duration,
) -> anyhow::Result<WriteRun> {
    let model = format!("writes-c{concurrency}");
    api.post("/api/v1/workspaces/bench/models", json!({ "name": model }))
        .await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let api = api.clone();
        let model = model.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0;
            let mut i = 0;
            while started.elapsed() < run {
                let t = Instant::now();
                match api.create_version(&model, &format!("1.{w}.{i}")).await {
                    Ok(201) => samples.push(t.elapsed().as_secs_f64() * 1000.0),
                    _ => errors += 1,
                }
                i += 1;
            }
            (samples, errors)
        }));
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (s, e) = t.await?;
        samples.extend(s);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(WriteRun {
        concurrency,
        requests: samples.len(),
        errors,
        per_second: samples.len() as f64 / elapsed,
        latency: Latency::of(samples),
    })
}

/// Creates versions of `model` at `rate` per second for `run`, and measures from each API
/// call's return to the receiver's arrival.
async fn steady_latency(
    api: &Arc<Api>,
    model: &str,
    rx: &Receiver,
    rate: u32,
    run: Duration,
) -> anyhow::Result<Latency> {
    let returned: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut i = 0u64;
    while started.elapsed() < run {
        ticker.tick().await;
        let api = api.clone();
        let returned = returned.clone();
        let model = model.to_owned();
        let version = format!("2.0.{i}");
        i += 1;
        tasks.push(tokio::spawn(async move {
            if let Ok(201) = api.create_version(&model, &version).await
                && let Ok(mut m) = returned.lock()
            {
                m.insert(version, Instant::now());
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let want = returned.lock().map(|m| m.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let got = rx.arrivals.lock().map(|m| m.len()).unwrap_or(0);
        if got >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let returned = returned.lock().map(|m| m.clone()).unwrap_or_default();
    let arrivals = rx.arrivals.lock().map(|m| m.clone()).unwrap_or_default();
    let samples: Vec<f64> = returned
        .iter()
        .filter_map(|(v, back)| {
            arrivals.get(v).map(|at| {
                // A delivery can land before the API's answer reaches the client: count 0.
                at.saturating_duration_since(*back).as_secs_f64() * 1000.0
            })
        })
        .collect();
    Ok(Latency::of(samples))
}

fn rss_peak_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn dir_mb(dir: &std::path::Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("berth.db"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len() as f64)
                .sum::<f64>()
        })
        .unwrap_or(0.0)
        / 1_048_576.0
}

/// Runs every scenario and answers the figures.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let duration = crate::delivery::schedule::parse_duration(&args.duration)
        .map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
    let write_run = crate::delivery::schedule::parse_duration(&args.write_duration)
        .map_err(|e| anyhow::anyhow!("--write-duration: {e}"))?;
    let data = tempfile_dir()?;
    // PostgreSQL: a fresh database beside the one named, dropped afterwards.
    let pg = match &args.database_url {
        Some(url) => Some(PgScratch::create(url).await?),
        None => None,
    };
    let server = start_server(&data, pg.as_ref().map(|p| p.url.as_str()))?;
    eprintln!("{RATE_LIMIT_NOTE}");
    let api = Arc::new(Api {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
        base: server.base.clone(),
    });
    let mut report = Report {
        backend: if pg.is_some() { "postgres" } else { "sqlite" }.into(),
        machine: format!(
            "{} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        ..Report::default()
    };
    api.post("/api/v1/workspaces", json!({"name": "bench"}))
        .await?;

    let wanted = |n: u8| args.only.is_empty() || args.only.contains(&n);
    if wanted(1) {
        eprintln!("1/6 registry writes…");
        for c in [1, 16] {
            report
                .registry_writes
                .push(registry_writes(&api, c, write_run).await?);
        }
    }
    if wanted(2) {
        scenario_latency(args, &api, duration, &mut report).await?;
    }
    if wanted(3) {
        scenario_throughput(args, &api, &mut report).await?;
    }
    if wanted(4) {
        scenario_isolation(args, &api, duration, &mut report).await?;
    }
    if wanted(5) {
        scenario_propagation(args, &api, &mut report).await?;
    }

    eprintln!("6/6 footprint…");
    report.peak_rss_mb = rss_peak_mb(server.child.id());
    report.database_mb = match &pg {
        Some(p) => p.size_mb().await?,
        None => dir_mb(&data),
    };
    drop(server);
    if let Some(p) = pg {
        p.drop_database().await;
    }
    let _ = std::fs::remove_dir_all(&data);
    Ok(report)
}

async fn scenario_latency(
    args: &BenchArgs,
    api: &Arc<Api>,
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!(
        "2/6 event → delivery latency at {}/s for {duration:?}…",
        args.rate
    );
    let rx = Receiver::start().await?;
    api.post(
        "/api/v1/workspaces/bench/models",
        json!({"name": "latency"}),
    )
    .await?;
    api.webhook("latency", "healthy", &format!("{}/h", rx.url))
        .await?;
    report.delivery_latency = steady_latency(api, "latency", &rx, args.rate, duration).await?;
    Ok(())
}

async fn scenario_throughput(
    args: &BenchArgs,
    api: &Arc<Api>,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!(
        "3/6 delivery throughput, 10 webhooks × {} events…",
        args.throughput_events
    );
    let tp = Receiver::start().await?;
    api.post(
        "/api/v1/workspaces/bench/models",
        json!({"name": "throughput"}),
    )
    .await?;
    for i in 0..10 {
        api.webhook("throughput", &format!("w{i}"), &format!("{}/w{i}", tp.url))
            .await?;
    }
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let api = api.clone();
        let next = next.clone();
        let total = args.throughput_events as u64;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let _ = api.create_version("throughput", &format!("3.0.{i}")).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let want = (args.throughput_events * 10) as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if tp.count.load(Ordering::Relaxed) >= want && api.queue_depth().await? == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report.delivery_throughput_deliveries = tp.count.load(Ordering::Relaxed) as usize;
    report.delivery_throughput_per_second =
        report.delivery_throughput_deliveries as f64 / started.elapsed().as_secs_f64();
    Ok(())
}

async fn scenario_isolation(
    args: &BenchArgs,
    api: &Arc<Api>,
    duration: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("4/6 isolation: the same load beside a hung receiver and a closed port…");
    let iso = Receiver::start().await?;
    api.post(
        "/api/v1/workspaces/bench/models",
        json!({"name": "isolation"}),
    )
    .await?;
    api.webhook("isolation", "healthy", &format!("{}/h", iso.url))
        .await?;
    api.webhook("isolation", "hung", &hung_receiver().await?)
        .await?;
    api.webhook("isolation", "closed", &closed_port().await?)
        .await?;
    report.isolation_healthy_latency =
        steady_latency(api, "isolation", &iso, args.rate, duration).await?;
    Ok(())
}

async fn scenario_propagation(
    args: &BenchArgs,
    api: &Arc<Api>,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("5/6 webhook propagation…");
    let prop = Receiver::start().await?;
    api.post(
        "/api/v1/workspaces/bench/models",
        json!({"name": "propagation"}),
    )
    .await?;
    let (mut created_ok, mut deleted_leaks) = (0, 0);
    for round in 0..args.propagation_rounds {
        let path = format!("/p{round}");
        let id = api
            .webhook(
                "propagation",
                &format!("p{round}"),
                &format!("{}{path}", prop.url),
            )
            .await?;
        api.create_version("propagation", &format!("5.{round}.0"))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if prop
                .by_path
                .lock()
                .map(|m| m.get(&path).copied().unwrap_or(0))
                .unwrap_or(0)
                > 0
            {
                created_ok += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        api.call(
            reqwest::Method::DELETE,
            &format!("/api/v1/workspaces/bench/models/propagation/webhooks/{id}"),
            None,
        )
        .await?;
        let before = prop
            .by_path
            .lock()
            .map(|m| m.get(&path).copied().unwrap_or(0))
            .unwrap_or(0);
        api.create_version("propagation", &format!("5.{round}.1"))
            .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = prop
            .by_path
            .lock()
            .map(|m| m.get(&path).copied().unwrap_or(0))
            .unwrap_or(0);
        if after > before {
            deleted_leaks += 1;
        }
    }
    report.propagation_created_received_next_event =
        format!("{created_ok}/{}", args.propagation_rounds);
    report.propagation_deleted_received_after =
        format!("{deleted_leaks}/{}", args.propagation_rounds);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("berth-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

struct PgScratch {
    base: String,
    name: String,
    url: String,
}

impl PgScratch {
    async fn create(base: &str) -> anyhow::Result<PgScratch> {
        use sqlx::Connection;
        let name = format!("berth_bench_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(base)
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        let (prefix, _) = base.rsplit_once('/').context("the URL has no database")?;
        Ok(PgScratch {
            base: base.to_owned(),
            url: format!("{prefix}/{name}"),
            name,
        })
    }

    async fn size_mb(&self) -> anyhow::Result<f64> {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::PgConnection::connect(&self.url).await?;
        let bytes: i64 = sqlx::query("SELECT pg_database_size(current_database()) AS n")
            .fetch_one(&mut conn)
            .await?
            .try_get("n")?;
        let _ = conn.close().await;
        Ok(bytes as f64 / 1_048_576.0)
    }

    async fn drop_database(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.base).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
    }
}

/// The table printed after a run.
pub fn table(r: &Report) -> String {
    let mut out = format!("Berth benchmark — {} — {}\n", r.backend, r.machine);
    out.push_str("| scenario | figure |\n|---|---|\n");
    for w in &r.registry_writes {
        out.push_str(&format!(
            "| 1. registry writes, concurrency {} | {:.0} creates/s, p50 {:.2} ms, p99 {:.2} ms ({} ok, {} errors) |\n",
            w.concurrency, w.per_second, w.latency.p50_ms, w.latency.p99_ms, w.requests, w.errors
        ));
    }
    if r.registry_writes.is_empty() {
        out.push_str("| 1. registry writes | not run |\n");
    }
    let l = &r.delivery_latency;
    let i = &r.isolation_healthy_latency;
    let rows = [
        (
            l.count > 0,
            "2. event → delivery latency",
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} events)",
                l.p50_ms, l.p99_ms, l.max_ms, l.count
            ),
        ),
        (
            r.delivery_throughput_deliveries > 0,
            "3. delivery throughput (10 webhooks)",
            format!(
                "{:.0} deliveries/s ({} deliveries, all recorded)",
                r.delivery_throughput_per_second, r.delivery_throughput_deliveries
            ),
        ),
        (
            i.count > 0,
            "4. isolation: healthy webhook beside a hung one and a closed port",
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (p99 {:+.2} ms vs. 2.)",
                i.p50_ms,
                i.p99_ms,
                i.max_ms,
                i.p99_ms - l.p99_ms
            ),
        ),
        (
            !r.propagation_created_received_next_event.is_empty(),
            "5. propagation",
            format!(
                "new webhook got the next event: {}; deleted webhook got an event after deletion: {}",
                r.propagation_created_received_next_event, r.propagation_deleted_received_after
            ),
        ),
    ];
    for (ran, name, figure) in rows {
        let figure = if ran { figure } else { "not run".to_owned() };
        out.push_str(&format!("| {name} | {figure} |\n"));
    }
    out.push_str(&format!(
        "| 6. footprint | peak RSS {:.1} MB, database {:.1} MB |\n",
        r.peak_rss_mb, r.database_mb
    ));
    out.push_str(RATE_LIMIT_NOTE);
    out.push('\n');
    out
}

/// Said in the output: the benchmark's server runs without rate limits.
const RATE_LIMIT_NOTE: &str = "Rate limits are off in the benchmark's own server \
     (BERTH_RATE_LIMIT_PER_SECOND=0, BERTH_AUTH_FAILURES_PER_MINUTE=0).";
