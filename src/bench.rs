//! `berth bench`: starts its own Berth (this same binary, `serve`, as a child process) and
//! loopback receivers, runs the performance scenarios, prints a table and writes the same
//! figures as JSON. Figures only: nothing here asserts a speed.
//!
//! 1. registry writes (version creation over HTTP) at concurrency 1 and 16; on PostgreSQL
//!    each run is followed by its floor: `pgbench` running, at the same concurrency on a
//!    scratch table of the same database, the INSERTs one create commits;
//! 2. event → delivery latency at a steady rate;
//! 3. delivery throughput: 10 webhooks on one model, with the server's CPU per delivery; on
//!    PostgreSQL also PostgreSQL's CPU, WAL bytes and transactions per delivery, and the same
//!    scenario on a fresh SQLite server for the ratio;
//! 4. isolation: scenario 2 beside a receiver that never answers and a closed port;
//! 5. webhook propagation: a new webhook gets the very next event, a deleted one nothing;
//! 6. footprint: the server's peak RSS and the database size.
//!
//! Every target is then printed as a ratio to a limit measured in the same run ([`Ratios`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::store::{PgBackend, PgBackends, PgCounters, PgProbe, WalLsn};

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
    /// Seconds of each registry-write run (scenario 1), and of each pgbench floor run
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
    /// With --database-url: do not run scenario 3 on a fresh SQLite server as well (that run
    /// gives the PostgreSQL ÷ SQLite deliveries ratio)
    #[arg(long)]
    pub no_sqlite_baseline: bool,
    /// The pgbench program that measures the PostgreSQL floor of scenario 1 (when it cannot
    /// be started, the output says so and the floor is left out)
    #[arg(long, default_value = "pgbench", value_name = "PATH")]
    pub pgbench: String,
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

/// The figures of one run. The fields before `pgbench_floor` are those of earlier builds,
/// unchanged, so that `scripts/bench-ab.sh` can compare an old binary with a new one.
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
    /// Scenario 1's limit on PostgreSQL (None on SQLite or when scenario 1 did not run).
    pub pgbench_floor: Option<Floor>,
    /// The Berth server's CPU time (user + system) over scenario 3, per delivery.
    pub delivery_throughput_berth_cpu_us_per_delivery: f64,
    /// PostgreSQL only: scenario 3 again, on a fresh SQLite server, in the same run.
    pub sqlite_baseline: Option<ThroughputRun>,
    /// PostgreSQL only: what one delivery of scenario 3 cost.
    pub delivery_cost: Option<DeliveryCost>,
    /// Every target as a ratio (or a difference) to a limit measured in this run.
    pub ratios: Ratios,
}

/// The PostgreSQL floor of scenario 1: pgbench running, on a scratch table of the bench's own
/// database, transactions of the same small INSERTs one version create commits.
#[derive(Debug, Default, Serialize)]
pub struct Floor {
    /// INSERTs in the floor's transaction: [`CREATE_INSERTS_ON_POSTGRES`].
    pub inserts_per_transaction: usize,
    /// The size given to the events row's payload: the mean of scenario 1's own events.
    pub event_payload_bytes: usize,
    /// The transaction pgbench ran (`-f`).
    pub script: String,
    pub runs: Vec<FloorRun>,
}

#[derive(Debug, Default, Serialize)]
pub struct FloorRun {
    pub concurrency: usize,
    /// pgbench's `tps = … (without initial connection time)`; None when it did not run.
    pub tps: Option<f64>,
    /// Why there is no figure (pgbench missing, failed, unreadable output).
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct ThroughputRun {
    pub per_second: f64,
    pub deliveries: usize,
    pub berth_cpu_us_per_delivery: f64,
}

/// Scenario 3 on PostgreSQL, measured over the run (the creates of the events included: a
/// tenth of one create per delivery) and divided by the deliveries made.
#[derive(Debug, Default, Serialize)]
pub struct DeliveryCost {
    pub deliveries: usize,
    pub seconds: f64,
    /// The Berth server process (`/proc/<pid>/stat` utime + stime, all its threads).
    pub berth_cpu_us_per_delivery: f64,
    /// The PostgreSQL processes serving the bench's database (`pg_stat_activity.datname`):
    /// the server's connections and any autovacuum worker. None when PostgreSQL's processes
    /// cannot be read here (another machine).
    pub postgres_database_cpu_us_per_delivery: Option<f64>,
    /// The cluster's shared processes (walwriter, checkpointer, background writer,
    /// autovacuum launcher): they also work for any other database of the cluster.
    pub postgres_background_cpu_us_per_delivery: Option<f64>,
    /// Processes counted in `postgres_database_cpu_us_per_delivery`, and of those, how many
    /// ended during the run (counted up to their last sample, 200 ms apart).
    pub postgres_database_processes: usize,
    pub postgres_database_processes_ended: usize,
    /// `pg_wal_lsn_diff` of `pg_current_wal_lsn()` over the run: the whole cluster's WAL.
    pub wal_bytes_per_delivery: f64,
    /// `pg_stat_database.xact_commit` of the bench's database over the run.
    pub transactions_per_delivery: f64,
    /// `pg_stat_statements` calls in the bench's database; None when it is not loaded.
    pub statements_per_delivery: Option<f64>,
    pub totals: CostTotals,
}

#[derive(Debug, Default, Serialize)]
pub struct CostTotals {
    pub berth_cpu_ms: f64,
    pub postgres_database_cpu_ms: Option<f64>,
    pub postgres_background_cpu_ms: Option<f64>,
    pub wal_bytes: f64,
    pub transactions: i64,
    pub statements: Option<i64>,
}

/// The targets, each against a limit measured in the same run; None when a side of it did
/// not run (or has no meaning on this backend).
#[derive(Debug, Default, Serialize)]
pub struct Ratios {
    /// Scenario 1's creates/s at concurrency 1 ÷ the pgbench floor at 1 (target ≥ 0.70).
    pub creates_to_floor_c1: Option<f64>,
    /// The same at concurrency 16 (target ≥ 0.80).
    pub creates_to_floor_c16: Option<f64>,
    /// Scenario 4's healthy p99 − scenario 2's p99, in ms (target ≤ 10).
    pub isolation_p99_delta_ms: Option<f64>,
    /// Scenario 3's deliveries/s on PostgreSQL ÷ on SQLite (target ≥ 0.50).
    pub postgres_to_sqlite_deliveries: Option<f64>,
}

/// How many INSERTs one version create commits on PostgreSQL, for scenario 1's models, which
/// have no webhooks. Counted in the code: `create_version` (store/postgres/versions.rs)
/// inserts the `model_versions` row, then `insert_event` (store/postgres/events.rs) inserts
/// the `events` row, then `fan_out` (the same file) reads the model's webhooks and inserts
/// one multi-row `deliveries` INSERT per 100 of them (none here, and then no `pg_notify`);
/// creating a version writes no audit row. Recount when that path
/// changes.
pub const CREATE_INSERTS_ON_POSTGRES: usize = 2;

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

/// The API client of a freshly started server, with the bench's workspace created.
async fn bench_api(server: &Server) -> anyhow::Result<Arc<Api>> {
    let api = Arc::new(Api {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
        base: server.base.clone(),
    });
    api.post("/api/v1/workspaces", json!({"name": "bench"}))
        .await?;
    Ok(api)
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
        Some(url) => Some(PgProbe::create_scratch(url).await?),
        None => None,
    };
    let server = start_server(&data, pg.as_ref().map(PgProbe::url))?;
    eprintln!("{RATE_LIMIT_NOTE}");
    let api = bench_api(&server).await?;
    let mut report = Report {
        backend: if pg.is_some() { "postgres" } else { "sqlite" }.into(),
        machine: format!(
            "{} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        ..Report::default()
    };

    let wanted = |n: u8| args.only.is_empty() || args.only.contains(&n);
    if wanted(1) {
        eprintln!("1/6 registry writes…");
        let mut floor = None;
        for c in [1, 16] {
            report
                .registry_writes
                .push(registry_writes(&api, c, write_run).await?);
            if let Some(p) = &pg {
                if floor.is_none() {
                    floor = Some(floor_setup(p, &data).await?);
                }
                if let Some(f) = &mut floor {
                    eprintln!("1/6 pgbench floor, concurrency {c}…");
                    f.runs
                        .push(floor_run(&args.pgbench, p, &data, c, write_run).await);
                }
            }
        }
        report.pgbench_floor = floor;
    }
    if wanted(2) {
        scenario_latency(args, &api, duration, &mut report).await?;
    }
    if wanted(3) {
        eprintln!(
            "3/6 delivery throughput, 10 webhooks × {} events…",
            args.throughput_events
        );
        let (run, cost) = scenario_throughput(args, &api, server.child.id(), pg.as_ref()).await?;
        report.delivery_throughput_per_second = run.per_second;
        report.delivery_throughput_deliveries = run.deliveries;
        report.delivery_throughput_berth_cpu_us_per_delivery = run.berth_cpu_us_per_delivery;
        report.delivery_cost = cost;
        if pg.is_some() && !args.no_sqlite_baseline {
            eprintln!("3/6 the same on a fresh SQLite server, for the ratio…");
            report.sqlite_baseline = Some(sqlite_throughput(args).await?);
        }
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
        Some(p) => p.size_bytes().await? as f64 / 1_048_576.0,
        None => dir_mb(&data),
    };
    report.ratios = ratios(&report);
    drop(server);
    if let Some(p) = pg {
        p.drop_database().await;
    }
    let _ = std::fs::remove_dir_all(&data);
    Ok(report)
}

/// Scenario 3 on a server of its own with a fresh SQLite database.
async fn sqlite_throughput(args: &BenchArgs) -> anyhow::Result<ThroughputRun> {
    let data = tempfile_dir()?;
    let result = async {
        let server = start_server(&data, None)?;
        let api = bench_api(&server).await?;
        let (run, _) = scenario_throughput(args, &api, server.child.id(), None).await?;
        Ok(run)
    }
    .await;
    let _ = std::fs::remove_dir_all(&data);
    result
}

/// The targets against the limits measured in this run.
fn ratios(r: &Report) -> Ratios {
    let creates = |c: usize| {
        r.registry_writes
            .iter()
            .find(|w| w.concurrency == c)
            .map(|w| w.per_second)
    };
    let floor = |c: usize| {
        r.pgbench_floor.as_ref().and_then(|f| {
            f.runs
                .iter()
                .find(|run| run.concurrency == c)
                .and_then(|run| run.tps)
                .filter(|tps| *tps > 0.0)
        })
    };
    let ratio = |c: usize| Some(creates(c)? / floor(c)?);
    let (l, i) = (&r.delivery_latency, &r.isolation_healthy_latency);
    Ratios {
        creates_to_floor_c1: ratio(1),
        creates_to_floor_c16: ratio(16),
        isolation_p99_delta_ms: (l.count > 0 && i.count > 0).then_some(i.p99_ms - l.p99_ms),
        postgres_to_sqlite_deliveries: r
            .sqlite_baseline
            .filter(|s| s.per_second > 0.0 && r.delivery_throughput_deliveries > 0)
            .map(|s| r.delivery_throughput_per_second / s.per_second),
    }
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

/// Scenario 3: 10 webhooks on one model, `--throughput-events` creates from 16 clients, until
/// every delivery has arrived and the queue is empty. `server_pid` is the Berth server whose
/// CPU is counted; with `pg`, what PostgreSQL spent is measured too.
async fn scenario_throughput(
    args: &BenchArgs,
    api: &Arc<Api>,
    server_pid: u32,
    pg: Option<&PgProbe>,
) -> anyhow::Result<(ThroughputRun, Option<DeliveryCost>)> {
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
    let mut monitor = match pg {
        Some(p) => Some(PgMonitor::start(p).await?),
        None => None,
    };
    let berth_before = cpu_ticks(server_pid);
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
    let seconds = started.elapsed().as_secs_f64();
    let berth_ms = match (berth_before, cpu_ticks(server_pid)) {
        (Some(a), Some(b)) => ticks_ms(b.saturating_sub(a)),
        _ => 0.0,
    };
    let deliveries = tp.count.load(Ordering::Relaxed) as usize;
    let per = |x: f64| x / deliveries.max(1) as f64;
    let run = ThroughputRun {
        per_second: deliveries as f64 / seconds,
        deliveries,
        berth_cpu_us_per_delivery: per(berth_ms * 1000.0),
    };
    let cost = match monitor.take() {
        Some(m) => {
            let pg = m.finish().await?;
            Some(DeliveryCost {
                deliveries,
                seconds,
                berth_cpu_us_per_delivery: run.berth_cpu_us_per_delivery,
                postgres_database_cpu_us_per_delivery: pg
                    .database_cpu_ms
                    .map(|ms| per(ms * 1000.0)),
                postgres_background_cpu_us_per_delivery: pg
                    .background_cpu_ms
                    .map(|ms| per(ms * 1000.0)),
                postgres_database_processes: pg.database_processes,
                postgres_database_processes_ended: pg.database_processes_ended,
                wal_bytes_per_delivery: per(pg.wal_bytes),
                transactions_per_delivery: per(pg.transactions as f64),
                statements_per_delivery: pg.statements.map(|n| per(n as f64)),
                totals: CostTotals {
                    berth_cpu_ms: berth_ms,
                    postgres_database_cpu_ms: pg.database_cpu_ms,
                    postgres_background_cpu_ms: pg.background_cpu_ms,
                    wal_bytes: pg.wal_bytes,
                    transactions: pg.transactions,
                    statements: pg.statements,
                },
            })
        }
        None => None,
    };
    Ok((run, cost))
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

/// The CPU time (user + system, all threads) a process has used, in clock ticks:
/// `/proc/<pid>/stat` fields 14 and 15. None when the process is gone or not on this machine.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, field 2, is in parentheses and may hold spaces: count from after it,
    // where field 3 is the first.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks as milliseconds: `/proc` counts in USER_HZ, 100 a second on Linux.
fn ticks_ms(ticks: u64) -> f64 {
    ticks as f64 * 10.0
}

/// True when `pid` is a PostgreSQL process on this machine (its command name is `postgres`).
fn is_local_postgres(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres")
}

/// A PostgreSQL process seen while scenario 3 ran: its CPU ticks when first and last seen.
struct Seen {
    ours: bool,
    first: u64,
    last: u64,
    ended: bool,
}

/// What PostgreSQL spent over scenario 3.
struct PgSpent {
    database_cpu_ms: Option<f64>,
    background_cpu_ms: Option<f64>,
    database_processes: usize,
    database_processes_ended: usize,
    wal_bytes: f64,
    transactions: i64,
    statements: Option<i64>,
}

/// PostgreSQL's side of scenario 3. Its counters are read on connections to the database of
/// `--database-url`, not the bench's, so that they are not counted in the bench database's
/// transactions; `pg_stat_statements`, when loaded, is read in the bench's database (two
/// statements among thousands).
struct PgMonitor {
    counters: PgCounters,
    lsn: WalLsn,
    xacts: i64,
    calls: Option<i64>,
    stop: tokio::sync::oneshot::Sender<()>,
    sampler: tokio::task::JoinHandle<HashMap<u32, Seen>>,
}

/// PostgreSQL adds a backend's counters to `pg_stat_database` at most once a second, and one
/// that goes idle with counters pending adds them within 10 s (PGSTAT_IDLE_INTERVAL): the
/// transaction counts are read this long after the activity they should (not) include.
const PG_STATS_SETTLE: Duration = Duration::from_secs(11);

impl PgMonitor {
    async fn start(pg: &PgProbe) -> anyhow::Result<PgMonitor> {
        let mut counters = pg.counters().await?;
        eprintln!(
            "3/6 waiting {}s for PostgreSQL's statistics to settle…",
            PG_STATS_SETTLE.as_secs()
        );
        tokio::time::sleep(PG_STATS_SETTLE).await;
        let xacts = counters.xact_commit().await?;
        let calls = counters.statement_calls().await?;
        let lsn = counters.wal_lsn().await?;
        // The processes: sampled now (their CPU so far is not the run's) and every 200 ms
        // until the end, so a backend that ends meanwhile keeps its last figure.
        let mut seen = HashMap::new();
        let mut backends = pg.backends().await?;
        sample_processes(&mut backends, &mut seen, true).await;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let sampler = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                sample_processes(&mut backends, &mut seen, false).await;
            }
            sample_processes(&mut backends, &mut seen, false).await;
            backends.close().await;
            seen
        });
        Ok(PgMonitor {
            counters,
            lsn,
            xacts,
            calls,
            stop,
            sampler,
        })
    }

    /// Called at the end of the run: the CPU and the WAL now, the counters once settled.
    async fn finish(mut self) -> anyhow::Result<PgSpent> {
        let _ = self.stop.send(());
        let seen = self.sampler.await?;
        let wal_bytes = self.counters.wal_bytes_since(&self.lsn).await?;
        eprintln!(
            "3/6 waiting {}s for PostgreSQL's statistics to settle…",
            PG_STATS_SETTLE.as_secs()
        );
        tokio::time::sleep(PG_STATS_SETTLE).await;
        let transactions = self.counters.xact_commit().await? - self.xacts;
        let statements = match (self.counters.statement_calls().await?, self.calls) {
            (Some(now), Some(before)) => Some(now - before),
            _ => None,
        };
        self.counters.close().await;
        let sum = |ours: bool| {
            let ticks: Vec<u64> = seen
                .values()
                .filter(|s| s.ours == ours)
                .map(|s| s.last.saturating_sub(s.first))
                .collect();
            (!seen.is_empty()).then(|| ticks_ms(ticks.iter().sum()))
        };
        Ok(PgSpent {
            database_cpu_ms: sum(true),
            background_cpu_ms: sum(false),
            database_processes: seen.values().filter(|s| s.ours).count(),
            database_processes_ended: seen.values().filter(|s| s.ours && s.ended).count(),
            wal_bytes,
            transactions,
            statements,
        })
    }
}

/// Reads the CPU of the PostgreSQL processes that serve the bench's database (`ours`) and of
/// the cluster's background processes, into `seen`. A process first seen at the `initial`
/// sample counts from there; one that appears later started during the run and counts whole.
async fn sample_processes(backends: &mut PgBackends, seen: &mut HashMap<u32, Seen>, initial: bool) {
    let Ok(listed) = backends.list().await else {
        return;
    };
    for s in seen.values_mut() {
        s.ended = true;
    }
    for PgBackend { pid, ours } in listed {
        if !is_local_postgres(pid) {
            continue;
        }
        let Some(now) = cpu_ticks(pid) else { continue };
        let entry = seen.entry(pid).or_insert(Seen {
            ours,
            first: if initial { now } else { 0 },
            last: now,
            ended: false,
        });
        entry.last = entry.last.max(now);
        entry.ended = false;
    }
}

/// Creates the floor's tables ([`PgProbe::create_floor_tables`]) and writes its pgbench
/// script into `dir`: one transaction of [`CREATE_INSERTS_ON_POSTGRES`] INSERTs, the events
/// row's payload as long as the mean of the events scenario 1 has just written. pgbench's `:n` counts each client's transactions
/// (`-D n=0`) and `:model` is the concurrency, so versions are unique as the API's are.
async fn floor_setup(pg: &PgProbe, dir: &std::path::Path) -> anyhow::Result<Floor> {
    let payload = pg.create_floor_tables().await?;
    let payload = payload.round() as usize;
    let now = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";
    let script = format!(
        "\\set n :n + 1\n\
         BEGIN;\n\
         INSERT INTO bench_floor_versions (model_id, version, sort_key, tags, status, \
         source_experiment_key, description, created_by, created_at, updated_at) \
         VALUES (:model, '1.' || :client_id || '.' || :n, \
         lpad('1', 20, '0') || '.' || lpad(:client_id::text, 20, '0') || '.' || lpad(:n::text, 20, '0') || '~', \
         '[]', NULL, NULL, '', 'admin', {now}, {now}) RETURNING id;\n\
         INSERT INTO bench_floor_events (id, workspace_id, model_id, event_trigger, payload, \
         occurred_at) VALUES (to_char(clock_timestamp(), 'YYYYMMDDHH24MISSUS') || '-' || \
         :model || '-' || :client_id || '-' || :n, 1, :model, 'MODEL_VERSION_CREATED', \
         repeat('x', {payload}), {now}) RETURNING seq;\n\
         END;\n"
    );
    std::fs::write(dir.join("floor.sql"), &script)?;
    Ok(Floor {
        inserts_per_transaction: CREATE_INSERTS_ON_POSTGRES,
        event_payload_bytes: payload,
        script,
        runs: Vec::new(),
    })
}

/// One pgbench run of the floor: `pgbench -n -f floor.sql -c C -j 2 -T secs URL`.
async fn floor_run(
    pgbench: &str,
    pg: &PgProbe,
    dir: &std::path::Path,
    concurrency: usize,
    run: Duration,
) -> FloorRun {
    let secs = run.as_secs().max(1);
    let mut cmd = tokio::process::Command::new(pgbench);
    cmd.arg("-n")
        .arg("-f")
        .arg(dir.join("floor.sql"))
        .args(["-D", "n=0", "-D", &format!("model={concurrency}")])
        .args(["-c", &concurrency.to_string(), "-j", "2"])
        .args(["-T", &secs.to_string()])
        .arg(pg.url())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let failed = |error: String| FloorRun {
        concurrency,
        tps: None,
        error: Some(error),
    };
    let out = match tokio::time::timeout(Duration::from_secs(secs + 60), cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return failed(format!("{pgbench} not found: no floor measured"));
        }
        Ok(Err(e)) => return failed(format!("{pgbench} could not be started: {e}")),
        Err(_) => return failed(format!("{pgbench} did not finish within {}s", secs + 60)),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    match parse_pgbench_tps(&stdout) {
        Some(tps) if out.status.success() => FloorRun {
            concurrency,
            tps: Some(tps),
            error: None,
        },
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            failed(format!(
                "{pgbench} {}: {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ))
        }
    }
}

/// pgbench's `tps = 987.123456 (without initial connection time)`.
fn parse_pgbench_tps(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .filter(|l| l.contains("without initial connection time"))
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The table printed after a run: the figures, then every target as a ratio to a limit
/// measured in the same run, then (PostgreSQL) what one delivery cost.
pub fn table(r: &Report) -> String {
    let mut out = format!("Berth benchmark — {} — {}\n", r.backend, r.machine);
    out.push_str("| scenario | figure |\n|---|---|\n");
    let floor_runs = r.pgbench_floor.as_ref().map_or(&[][..], |f| &f.runs[..]);
    for w in &r.registry_writes {
        out.push_str(&format!(
            "| 1. registry writes, concurrency {} | {:.0} creates/s, p50 {:.2} ms, p99 {:.2} ms ({} ok, {} errors) |\n",
            w.concurrency, w.per_second, w.latency.p50_ms, w.latency.p99_ms, w.requests, w.errors
        ));
        if let Some(f) = floor_runs.iter().find(|f| f.concurrency == w.concurrency) {
            let figure = match (f.tps, &f.error) {
                (Some(tps), _) => format!("{tps:.0} transactions/s"),
                (None, Some(e)) => format!("not measured: {e}"),
                (None, None) => "not measured".to_owned(),
            };
            out.push_str(&format!(
                "| 1. pgbench floor, concurrency {} ({} INSERTs a transaction) | {figure} |\n",
                f.concurrency,
                r.pgbench_floor
                    .as_ref()
                    .map_or(0, |f| f.inserts_per_transaction)
            ));
        }
    }
    if r.registry_writes.is_empty() {
        out.push_str("| 1. registry writes | not run |\n");
    }
    let l = &r.delivery_latency;
    let i = &r.isolation_healthy_latency;
    let sqlite_row = r.sqlite_baseline.map(|s| {
        format!(
            "{:.0} deliveries/s ({} deliveries), Berth CPU {:.0} µs a delivery",
            s.per_second, s.deliveries, s.berth_cpu_us_per_delivery
        )
    });
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
                "{:.0} deliveries/s ({} deliveries, all recorded), Berth CPU {:.0} µs a delivery",
                r.delivery_throughput_per_second,
                r.delivery_throughput_deliveries,
                r.delivery_throughput_berth_cpu_us_per_delivery
            ),
        ),
        (
            sqlite_row.is_some(),
            "3. the same on a fresh SQLite server, same run",
            sqlite_row.unwrap_or_default(),
        ),
        (
            i.count > 0,
            "4. isolation: healthy webhook beside a hung one and a closed port",
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                i.p50_ms, i.p99_ms, i.max_ms
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
        if !ran && name.starts_with("3. the same") {
            continue;
        }
        let figure = if ran { figure } else { "not run".to_owned() };
        out.push_str(&format!("| {name} | {figure} |\n"));
    }
    out.push_str(&format!(
        "| 6. footprint | peak RSS {:.1} MB, database {:.1} MB |\n",
        r.peak_rss_mb, r.database_mb
    ));
    out.push('\n');
    out.push_str(&ratio_table(r));
    if let Some(c) = &r.delivery_cost {
        out.push('\n');
        out.push_str(&cost_table(c));
    }
    out.push('\n');
    out.push_str(RATE_LIMIT_NOTE);
    out.push('\n');
    out
}

/// The targets, each against a limit measured in this run.
fn ratio_table(r: &Report) -> String {
    let postgres = r.backend == "postgres";
    let pct = |x: Option<f64>| x.map(|x| format!("{:.0}%", x * 100.0));
    let creates = |c: usize| {
        r.registry_writes
            .iter()
            .find(|w| w.concurrency == c)
            .map_or(0.0, |w| w.per_second)
    };
    let floor = |c: usize| {
        r.pgbench_floor.as_ref().and_then(|f| {
            f.runs
                .iter()
                .find(|run| run.concurrency == c)
                .and_then(|run| run.tps)
        })
    };
    let why_not_floor = |c: usize| {
        if !postgres {
            "PostgreSQL only (--database-url)".to_owned()
        } else if r.registry_writes.is_empty() {
            "scenario 1 not run".to_owned()
        } else {
            let error = r.pgbench_floor.as_ref().and_then(|f| {
                f.runs
                    .iter()
                    .find(|run| run.concurrency == c)
                    .and_then(|run| run.error.clone())
            });
            format!(
                "no floor: {}",
                error.unwrap_or_else(|| "not measured".into())
            )
        }
    };
    let mut rows: Vec<(String, String, &str)> = Vec::new();
    for (c, value, target) in [
        (1, r.ratios.creates_to_floor_c1, "≥ 70%"),
        (16, r.ratios.creates_to_floor_c16, "≥ 80%"),
    ] {
        rows.push((
            format!("creates/s ÷ pgbench floor, concurrency {c}"),
            match (pct(value), floor(c)) {
                (Some(p), Some(f)) => format!("{p} ({:.0} ÷ {f:.0})", creates(c)),
                _ => why_not_floor(c),
            },
            target,
        ));
    }
    rows.push((
        "isolation: scenario 4's p99 − scenario 2's p99".to_owned(),
        match r.ratios.isolation_p99_delta_ms {
            Some(d) => format!(
                "{d:+.2} ms ({:.2} ms − {:.2} ms)",
                r.isolation_healthy_latency.p99_ms, r.delivery_latency.p99_ms
            ),
            None => "needs scenarios 2 and 4".to_owned(),
        },
        "≤ 10 ms",
    ));
    rows.push((
        "deliveries/s with 10 webhooks, PostgreSQL ÷ SQLite".to_owned(),
        match (
            pct(r.ratios.postgres_to_sqlite_deliveries),
            r.sqlite_baseline,
        ) {
            (Some(p), Some(s)) => format!(
                "{p} ({:.0} ÷ {:.0})",
                r.delivery_throughput_per_second, s.per_second
            ),
            _ if !postgres => "PostgreSQL only (--database-url)".to_owned(),
            _ => "needs scenario 3 on both (not with --no-sqlite-baseline)".to_owned(),
        },
        "≥ 50%",
    ));
    let mut out = String::from(
        "Targets, each against a limit measured in this run:\n\
         | ratio | this run | target |\n|---|---|---|\n",
    );
    for (name, figure, target) in rows {
        out.push_str(&format!("| {name} | {figure} | {target} |\n"));
    }
    out
}

/// What one delivery of scenario 3 cost on PostgreSQL.
fn cost_table(c: &DeliveryCost) -> String {
    let us = |x: Option<f64>| x.map_or("not readable here".to_owned(), |x| format!("{x:.0} µs"));
    let mut out = format!(
        "Cost of one delivery on PostgreSQL (scenario 3: {} deliveries in {:.1} s, each with a \
         tenth of its event's version create):\n| what | per delivery | over the run |\n|---|---|---|\n",
        c.deliveries, c.seconds
    );
    let t = &c.totals;
    let ms = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.0} ms"));
    let rows = [
        (
            "Berth server CPU (user + system)".to_owned(),
            format!("{:.0} µs", c.berth_cpu_us_per_delivery),
            format!("{:.0} ms", t.berth_cpu_ms),
        ),
        (
            format!(
                "PostgreSQL CPU, the {} processes serving the bench's database ({} ended during the run)",
                c.postgres_database_processes, c.postgres_database_processes_ended
            ),
            us(c.postgres_database_cpu_us_per_delivery),
            ms(t.postgres_database_cpu_ms),
        ),
        (
            "PostgreSQL CPU, walwriter, checkpointer, background writer (whole cluster)".to_owned(),
            us(c.postgres_background_cpu_us_per_delivery),
            ms(t.postgres_background_cpu_ms),
        ),
        (
            "WAL written (pg_current_wal_lsn, whole cluster)".to_owned(),
            format!("{:.0} bytes", c.wal_bytes_per_delivery),
            format!("{:.1} MB", t.wal_bytes / 1_048_576.0),
        ),
        (
            "transactions committed (pg_stat_database.xact_commit)".to_owned(),
            format!("{:.2}", c.transactions_per_delivery),
            t.transactions.to_string(),
        ),
        (
            "statements (pg_stat_statements)".to_owned(),
            c.statements_per_delivery
                .map_or("not loaded".to_owned(), |x| format!("{x:.2}")),
            t.statements.map_or("-".to_owned(), |n| n.to_string()),
        ),
    ];
    for (name, per, total) in rows {
        out.push_str(&format!("| {name} | {per} | {total} |\n"));
    }
    out.push_str(
        "\"Whole cluster\" includes whatever else used this PostgreSQL meanwhile; the \
         transactions include the worker's idle polls while the statistics settled.\n",
    );
    out
}

/// Said in the output: the benchmark's server runs without rate limits.
const RATE_LIMIT_NOTE: &str = "Rate limits are off in the benchmark's own server \
     (BERTH_RATE_LIMIT_PER_SECOND=0, BERTH_AUTH_FAILURES_PER_MINUTE=0).";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgbench_tps_without_connection_time() {
        let out = "number of failed transactions: 0 (0.000%)\n\
                   latency average = 5.726 ms\n\
                   initial connection time = 40.566 ms\n\
                   tps = 174.646430 (without initial connection time)\n";
        assert_eq!(parse_pgbench_tps(out), Some(174.64643));
        assert_eq!(
            parse_pgbench_tps("pgbench: error: connection failed\n"),
            None
        );
    }

    #[test]
    fn reads_this_process_cpu_time() {
        assert!(cpu_ticks(std::process::id()).is_some());
        assert_eq!(cpu_ticks(u32::MAX), None);
    }

    #[test]
    fn ratios_need_both_sides() {
        let mut r = Report {
            backend: "postgres".into(),
            registry_writes: vec![
                WriteRun {
                    concurrency: 1,
                    per_second: 700.0,
                    ..WriteRun::default()
                },
                WriteRun {
                    concurrency: 16,
                    per_second: 900.0,
                    ..WriteRun::default()
                },
            ],
            pgbench_floor: Some(Floor {
                runs: vec![
                    FloorRun {
                        concurrency: 1,
                        tps: Some(1000.0),
                        error: None,
                    },
                    FloorRun {
                        concurrency: 16,
                        tps: None,
                        error: Some("pgbench not found".into()),
                    },
                ],
                ..Floor::default()
            }),
            delivery_throughput_per_second: 800.0,
            delivery_throughput_deliveries: 10,
            sqlite_baseline: Some(ThroughputRun {
                per_second: 1600.0,
                ..ThroughputRun::default()
            }),
            ..Report::default()
        };
        r.delivery_latency = Latency::of(vec![1.0, 2.0]);
        let x = ratios(&r);
        assert_eq!(x.creates_to_floor_c1, Some(0.7));
        assert_eq!(x.creates_to_floor_c16, None);
        assert_eq!(x.postgres_to_sqlite_deliveries, Some(0.5));
        assert_eq!(x.isolation_p99_delta_ms, None);
        r.ratios = x;
        let text = table(&r);
        assert!(text.contains("70% (700 ÷ 1000)"), "{text}");
        assert!(text.contains("no floor: pgbench not found"), "{text}");
        assert!(text.contains("not measured: pgbench not found"), "{text}");
    }
}
