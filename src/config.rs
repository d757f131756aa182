//! Configuration, layered: built-in defaults, then an optional TOML file (`berth.toml` in the
//! working directory, or `--config`), then `BERTH_*` environment variables, then command-line
//! flags. [`Settings::resolve`] checks everything at start-up: a wrong value stops the server
//! with a message that names the setting. `config.default.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::clock::Clock;
use crate::delivery::crypto::SecretBox;
use crate::delivery::schedule::{RetrySchedule, parse_duration};
use crate::delivery::ssrf::TargetPolicy;

/// Settings as they arrive from flags and environment variables (clap fills these).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// TOML configuration file (default: ./berth.toml when it exists)
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free one)
    #[arg(long, env = "BERTH_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Directory for the SQLite database and generated files
    #[arg(long, env = "BERTH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://…); without it Berth uses SQLite in the data directory
    #[arg(
        long,
        env = "BERTH_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Most connections to PostgreSQL from this node
    #[arg(long, env = "BERTH_DATABASE_MAX_CONNECTIONS", value_name = "N")]
    pub database_max_connections: Option<u32>,
    /// Timeout of one webhook attempt, e.g. 15s
    #[arg(long, env = "BERTH_DELIVERY_TIMEOUT", value_name = "DURATION")]
    pub delivery_timeout: Option<String>,
    /// Waits before each retry, e.g. 5s,5m,30m,2h,5h,10h,10h
    #[arg(long, env = "BERTH_RETRY_SCHEDULE", value_name = "LIST")]
    pub retry_schedule: Option<String>,
    /// Address ranges webhooks may reach although private, e.g. 127.0.0.0/8
    #[arg(long, env = "BERTH_ALLOWED_TARGET_CIDRS", value_name = "CIDRS")]
    pub allowed_target_cidrs: Option<String>,
    /// Most webhook attempts in flight on this node
    #[arg(long, env = "BERTH_DELIVERY_MAX_IN_FLIGHT", value_name = "N")]
    pub delivery_max_in_flight: Option<usize>,
    /// Most attempts in flight for one webhook
    #[arg(long, env = "BERTH_DELIVERY_PER_WEBHOOK_IN_FLIGHT", value_name = "N")]
    pub delivery_per_webhook_in_flight: Option<usize>,
    /// Longest idle wait of the delivery worker, e.g. 1s
    #[arg(long, env = "BERTH_DELIVERY_POLL_INTERVAL", value_name = "DURATION")]
    pub delivery_poll_interval: Option<String>,
    /// This node's name in delivery leases and logs (default: hostname-pid)
    #[arg(long, env = "BERTH_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// How often a worker node beats in the database, e.g. 1s
    #[arg(long, env = "BERTH_NODE_HEARTBEAT_INTERVAL", value_name = "DURATION")]
    pub node_heartbeat_interval: Option<String>,
    /// How long a node may be silent before the others take over its deliveries, e.g. 5s
    #[arg(long, env = "BERTH_NODE_DEAD_AFTER", value_name = "DURATION")]
    pub node_dead_after: Option<String>,
    /// How often a worker node on PostgreSQL looks at the delivery queue's dead rows and
    /// vacuums the table when there are many, e.g. 2s (0s: never, leave it to autovacuum)
    #[arg(long, env = "BERTH_QUEUE_VACUUM_INTERVAL", value_name = "DURATION")]
    pub queue_vacuum_interval: Option<String>,
    /// How long shutdown waits for requests and attempts in flight, e.g. 20s
    #[arg(long, env = "BERTH_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// What this node does: all (API, UI and delivery worker), api, or worker
    #[arg(long, env = "BERTH_ROLE", value_name = "ROLE")]
    pub role: Option<String>,
    /// Days to keep delivery attempts (0 keeps them forever)
    #[arg(long, env = "BERTH_RETENTION_DAYS", value_name = "DAYS")]
    pub retention_days: Option<u32>,
    /// Requests per second one API token may make, on average (0 disables the limit)
    #[arg(long, env = "BERTH_RATE_LIMIT_PER_SECOND", value_name = "N")]
    pub rate_limit_per_second: Option<u32>,
    /// Requests one API token may make at once before the per-second rate applies
    #[arg(long, env = "BERTH_RATE_LIMIT_BURST", value_name = "N")]
    pub rate_limit_burst: Option<u32>,
    /// Failed authentications per minute one client address may make (0 disables the limit)
    #[arg(long, env = "BERTH_AUTH_FAILURES_PER_MINUTE", value_name = "N")]
    pub auth_failures_per_minute: Option<u32>,
    /// Disable a webhook whose every attempt failed for this long, e.g. 5d (0s: never)
    #[arg(long, env = "BERTH_AUTO_DISABLE_AFTER", value_name = "DURATION")]
    pub auto_disable_after: Option<String>,
    /// Longest wait for a PostgreSQL connection before a request answers 503, e.g. 3s
    #[arg(long, env = "BERTH_DATABASE_ACQUIRE_TIMEOUT", value_name = "DURATION")]
    pub database_acquire_timeout: Option<String>,
    /// Believe a reverse proxy's X-Forwarded-Proto / Forwarded header (true or false): the
    /// web UI's cookies are then marked Secure for requests that arrived over HTTPS
    #[arg(long, env = "BERTH_TRUST_FORWARDED_PROTO", value_name = "BOOL")]
    pub trust_forwarded_proto: Option<bool>,
    /// Longest wait for a request's head (request line and headers), e.g. 10s
    #[arg(long, env = "BERTH_HEADER_READ_TIMEOUT", value_name = "DURATION")]
    pub header_read_timeout: Option<String>,
    /// Longest wait for a request's whole body once its head arrived, e.g. 30s
    #[arg(long, env = "BERTH_BODY_READ_TIMEOUT", value_name = "DURATION")]
    pub body_read_timeout: Option<String>,
    /// How long a connection may sit idle between requests, e.g. 75s
    #[arg(long, env = "BERTH_KEEP_ALIVE_TIMEOUT", value_name = "DURATION")]
    pub keep_alive_timeout: Option<String>,
    /// Most client connections open at once; more are answered 503 and closed
    #[arg(long, env = "BERTH_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
}

/// The optional configuration file. Unknown keys are an error, so a typo is caught.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    secret_key: Option<String>,
    delivery_timeout: Option<String>,
    retry_schedule: Option<String>,
    allowed_target_cidrs: Option<String>,
    delivery_max_in_flight: Option<usize>,
    delivery_per_webhook_in_flight: Option<usize>,
    delivery_poll_interval: Option<String>,
    node_name: Option<String>,
    node_heartbeat_interval: Option<String>,
    node_dead_after: Option<String>,
    queue_vacuum_interval: Option<String>,
    shutdown_grace: Option<String>,
    role: Option<String>,
    retention_days: Option<u32>,
    rate_limit_per_second: Option<u32>,
    rate_limit_burst: Option<u32>,
    auth_failures_per_minute: Option<u32>,
    auto_disable_after: Option<String>,
    database_acquire_timeout: Option<String>,
    trust_forwarded_proto: Option<bool>,
    header_read_timeout: Option<String>,
    body_read_timeout: Option<String>,
    keep_alive_timeout: Option<String>,
    max_connections: Option<usize>,
}

/// Which database to use.
#[derive(Clone)]
pub enum Database {
    Sqlite,
    Postgres(String),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite => f.write_str("Sqlite"),
            // The URL may hold a password.
            Database::Postgres(_) => f.write_str("Postgres(<redacted>)"),
        }
    }
}

/// A secret string whose `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The checked settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: Database,
    pub database_max_connections: u32,
    /// Longest wait for a pooled PostgreSQL connection; past it a request answers 503.
    pub database_acquire_timeout: Duration,
    /// The server admin's token on first start (`BERTH_ADMIN_TOKEN`).
    pub admin_token: Option<Secret>,
    /// The key that seals secrets at rest (`BERTH_SECRET_KEY`); generated into the data
    /// directory when unset.
    pub secret_key: Option<Secret>,
    pub delivery: DeliverySettings,
    pub shutdown_grace: Duration,
    pub role: Role,
    /// Delivery attempts older than this many days are deleted (0: never).
    pub retention_days: u32,
    pub rate_limit: RateLimitSettings,
    /// Whether the web UI believes `X-Forwarded-Proto` / `Forwarded: proto=` (set it only
    /// behind a reverse proxy that sets or strips those headers).
    pub trust_forwarded_proto: bool,
    pub connections: ConnectionSettings,
}

/// Client connection limits (see `app::run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// A request's head must arrive whole within this long of the connection opening, of the
    /// previous response, or (when the connection sat idle first) of its first byte.
    pub header_read_timeout: Duration,
    /// A request's body must arrive whole within this long of its head.
    pub body_read_timeout: Duration,
    /// A connection that sends nothing for this long after a response is closed.
    pub keep_alive_timeout: Duration,
    /// Most client connections open at once (lowered at start to fit the open-file limit).
    pub max_connections: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            // Longer than the 60 s idle timeout of common reverse proxies and load
            // balancers, so that they close an idle connection first, never mid-request.
            keep_alive_timeout: Duration::from_secs(75),
            max_connections: 10_000,
        }
    }
}

/// Request rate limits (see `api::limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Requests per second per API token, on average; 0: no limit.
    pub per_second: u32,
    /// Requests per API token at once before `per_second` applies.
    pub burst: u32,
    /// Failed authentications per minute per client address (also its burst); 0: no limit.
    pub auth_failures_per_minute: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            per_second: 100,
            burst: 200,
            auth_failures_per_minute: 60,
        }
    }
}

impl RateLimitSettings {
    /// No limits at all (tests and the benchmark's own server).
    pub fn disabled() -> Self {
        RateLimitSettings {
            per_second: 0,
            burst: 0,
            auth_failures_per_minute: 0,
        }
    }
}

/// What a node does. Any number of nodes can share one PostgreSQL database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The API, the web UI and the delivery worker.
    All,
    /// The API and the web UI, no delivery worker.
    Api,
    /// The delivery worker (and the retention cleaner); HTTP serves only health and metrics.
    Worker,
}

impl Role {
    pub fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    pub fn runs_worker(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub timeout: Duration,
    pub schedule: RetrySchedule,
    pub policy: TargetPolicy,
    pub max_in_flight: usize,
    pub per_webhook_in_flight: usize,
    pub poll_interval: Duration,
    pub node: String,
    /// Disable a webhook whose every attempt has failed for this long (`None`: never).
    pub auto_disable_after: Option<Duration>,
    /// How often this node beats in `nodes` (and looks for silent nodes).
    pub heartbeat_interval: Duration,
    /// How long a node's heartbeat may be silent before the others declare it dead and
    /// release its leases. More than twice `heartbeat_interval`.
    pub dead_after: Duration,
    /// How often this node looks at the queue's dead row versions and vacuums the table
    /// when there are [`QUEUE_VACUUM_DEAD_ROWS`] or more (`None`: never). PostgreSQL only:
    /// SQLite keeps none.
    pub queue_vacuum_interval: Option<Duration>,
    /// The worker's time source: the system clock; tests put a test clock here.
    pub clock: Clock,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            timeout: Duration::from_secs(15),
            schedule: RetrySchedule::default(),
            policy: TargetPolicy::default(),
            max_in_flight: 64,
            per_webhook_in_flight: 4,
            poll_interval: Duration::from_secs(1),
            node: default_node_name(),
            auto_disable_after: Some(DEFAULT_AUTO_DISABLE_AFTER),
            heartbeat_interval: DEFAULT_NODE_HEARTBEAT_INTERVAL,
            dead_after: DEFAULT_NODE_DEAD_AFTER,
            queue_vacuum_interval: Some(DEFAULT_QUEUE_VACUUM_INTERVAL),
            clock: Clock::system(),
        }
    }
}

/// A worker node beats every second...
pub const DEFAULT_NODE_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// ...and one silent for five seconds is declared dead: its deliveries in flight go out
/// again about five to six seconds after it died.
pub const DEFAULT_NODE_DEAD_AFTER: Duration = Duration::from_secs(5);

/// A worker node looks at the queue's dead rows every two seconds...
pub const DEFAULT_QUEUE_VACUUM_INTERVAL: Duration = Duration::from_secs(2);

/// ...and vacuums the table when it finds this many: at a thousand deliveries a second (two
/// dead versions each) every look, at a few a second about once in five minutes.
pub const QUEUE_VACUUM_DEAD_ROWS: u64 = 1_000;

/// Five days of nothing but failures disable a webhook.
pub const DEFAULT_AUTO_DISABLE_AFTER: Duration = Duration::from_secs(5 * 86_400);

/// The default `database_acquire_timeout`: short, so that requests fail fast (503) while
/// the database is away, long enough for a busy pool.
pub const DEFAULT_DATABASE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "berth".into());
    format!("{host}-{}", std::process::id())
}

/// Parses a duration setting, naming it on failure.
fn duration_setting(
    name: &str,
    env: &str,
    text: &str,
    min: Duration,
    max: Duration,
) -> anyhow::Result<Duration> {
    let d =
        parse_duration(text).map_err(|e| anyhow::anyhow!("invalid setting {name} ({env}): {e}"))?;
    if d < min || d > max {
        bail!(
            "invalid setting {name} ({env}): must be between {} ms and {} s",
            min.as_millis(),
            max.as_secs()
        );
    }
    Ok(d)
}

impl Settings {
    /// Defaults for tests and embedding: SQLite in `data_dir`, listening on a free port.
    pub fn for_data_dir(data_dir: &Path) -> Settings {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_owned(),
            database: Database::Sqlite,
            database_max_connections: 10,
            database_acquire_timeout: DEFAULT_DATABASE_ACQUIRE_TIMEOUT,
            admin_token: None,
            secret_key: None,
            delivery: DeliverySettings::default(),
            shutdown_grace: Duration::from_secs(20),
            role: Role::All,
            retention_days: 30,
            trust_forwarded_proto: false,
            rate_limit: RateLimitSettings::default(),
            connections: ConnectionSettings::default(),
        }
    }

    /// Merges defaults, the file, and the overrides (environment and flags), and checks them.
    pub fn resolve(over: &Overrides) -> anyhow::Result<Settings> {
        let file = match &over.config {
            Some(path) => read_file(path)?,
            None => {
                let default = Path::new("berth.toml");
                if default.exists() {
                    read_file(default)?
                } else {
                    FileConfig::default()
                }
            }
        };
        let listen_text = over
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            anyhow::anyhow!(
                "invalid setting listen (--listen / BERTH_LISTEN): `{listen_text}` is not \
                 HOST:PORT with a numeric IP address, e.g. 127.0.0.1:8080"
            )
        })?;
        let data_dir = over
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("berth-data"));
        if data_dir.as_os_str().is_empty() {
            bail!("invalid setting data_dir (--data-dir / BERTH_DATA_DIR): must not be empty");
        }
        let database = match over.database_url.clone().or(file.database_url) {
            None => Database::Sqlite,
            Some(url) if url.trim().is_empty() => Database::Sqlite,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Database::Postgres(url)
            }
            Some(_) => bail!(
                "invalid setting database_url (--database-url / BERTH_DATABASE_URL): must start \
                 with postgres:// or postgresql:// (leave it unset for SQLite in the data \
                 directory)"
            ),
        };
        let database_max_connections = over
            .database_max_connections
            .or(file.database_max_connections)
            .unwrap_or(10);
        if !(1..=1000).contains(&database_max_connections) {
            bail!(
                "invalid setting database_max_connections (--database-max-connections / \
                 BERTH_DATABASE_MAX_CONNECTIONS): must be between 1 and 1000"
            );
        }
        let database_acquire_timeout = match over
            .database_acquire_timeout
            .clone()
            .or(file.database_acquire_timeout)
        {
            Some(t) => duration_setting(
                "database_acquire_timeout",
                "BERTH_DATABASE_ACQUIRE_TIMEOUT",
                &t,
                Duration::from_millis(100),
                Duration::from_secs(300),
            )?,
            None => DEFAULT_DATABASE_ACQUIRE_TIMEOUT,
        };
        let admin_token = match std::env::var("BERTH_ADMIN_TOKEN") {
            Ok(t) if t.is_empty() => None,
            Ok(t) => {
                if t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    bail!(
                        "invalid setting BERTH_ADMIN_TOKEN: must be at least 16 characters \
                         without spaces or control characters"
                    );
                }
                Some(Secret::new(t))
            }
            Err(_) => None,
        };
        let secret_key = match std::env::var("BERTH_SECRET_KEY").ok().or(file.secret_key) {
            Some(k) if k.trim().is_empty() => None,
            Some(k) => {
                SecretBox::parse_key(&k).map_err(|e| {
                    anyhow::anyhow!("invalid setting secret_key (BERTH_SECRET_KEY): {e}")
                })?;
                Some(Secret::new(k))
            }
            None => None,
        };
        let mut delivery = DeliverySettings::default();
        if let Some(t) = over.delivery_timeout.clone().or(file.delivery_timeout) {
            delivery.timeout = duration_setting(
                "delivery_timeout",
                "BERTH_DELIVERY_TIMEOUT",
                &t,
                Duration::from_millis(100),
                Duration::from_secs(300),
            )?;
        }
        if let Some(t) = over.retry_schedule.clone().or(file.retry_schedule) {
            delivery.schedule = RetrySchedule::parse(&t).map_err(|e| {
                anyhow::anyhow!("invalid setting retry_schedule (BERTH_RETRY_SCHEDULE): {e}")
            })?;
        }
        if let Some(t) = over
            .allowed_target_cidrs
            .clone()
            .or(file.allowed_target_cidrs)
        {
            delivery.policy = TargetPolicy::parse(&t).map_err(|e| {
                anyhow::anyhow!(
                    "invalid setting allowed_target_cidrs (BERTH_ALLOWED_TARGET_CIDRS): {e}"
                )
            })?;
        }
        if let Some(n) = over.delivery_max_in_flight.or(file.delivery_max_in_flight) {
            if !(1..=10_000).contains(&n) {
                bail!(
                    "invalid setting delivery_max_in_flight (BERTH_DELIVERY_MAX_IN_FLIGHT): \
                     must be between 1 and 10000"
                );
            }
            delivery.max_in_flight = n;
        }
        if let Some(n) = over
            .delivery_per_webhook_in_flight
            .or(file.delivery_per_webhook_in_flight)
        {
            if !(1..=1000).contains(&n) {
                bail!(
                    "invalid setting delivery_per_webhook_in_flight \
                     (BERTH_DELIVERY_PER_WEBHOOK_IN_FLIGHT): must be between 1 and 1000"
                );
            }
            delivery.per_webhook_in_flight = n;
        }
        if let Some(t) = over
            .delivery_poll_interval
            .clone()
            .or(file.delivery_poll_interval)
        {
            delivery.poll_interval = duration_setting(
                "delivery_poll_interval",
                "BERTH_DELIVERY_POLL_INTERVAL",
                &t,
                Duration::from_millis(10),
                Duration::from_secs(60),
            )?;
        }
        if let Some(n) = over.node_name.clone().or(file.node_name) {
            if n.is_empty() || n.len() > 100 || n.chars().any(char::is_control) {
                bail!(
                    "invalid setting node_name (BERTH_NODE_NAME): must be 1-100 characters \
                     without control characters"
                );
            }
            delivery.node = n;
        }
        if let Some(t) = over
            .node_heartbeat_interval
            .clone()
            .or(file.node_heartbeat_interval)
        {
            delivery.heartbeat_interval = duration_setting(
                "node_heartbeat_interval",
                "BERTH_NODE_HEARTBEAT_INTERVAL",
                &t,
                Duration::from_millis(10),
                Duration::from_secs(60),
            )?;
        }
        if let Some(t) = over.node_dead_after.clone().or(file.node_dead_after) {
            delivery.dead_after = duration_setting(
                "node_dead_after",
                "BERTH_NODE_DEAD_AFTER",
                &t,
                Duration::from_millis(50),
                Duration::from_secs(3600),
            )?;
        }
        if delivery.dead_after <= 2 * delivery.heartbeat_interval {
            bail!(
                "invalid setting node_dead_after (BERTH_NODE_DEAD_AFTER): must be more than \
                 twice node_heartbeat_interval ({} ms), or one late beat would declare a live \
                 node dead; it is {} ms",
                delivery.heartbeat_interval.as_millis(),
                delivery.dead_after.as_millis()
            );
        }
        if let Some(t) = over.auto_disable_after.clone().or(file.auto_disable_after) {
            let d = duration_setting(
                "auto_disable_after",
                "BERTH_AUTO_DISABLE_AFTER",
                &t,
                Duration::ZERO,
                Duration::from_secs(3650 * 86_400),
            )?;
            delivery.auto_disable_after = (!d.is_zero()).then_some(d);
        }
        if let Some(t) = over
            .queue_vacuum_interval
            .clone()
            .or(file.queue_vacuum_interval)
        {
            let d = duration_setting(
                "queue_vacuum_interval",
                "BERTH_QUEUE_VACUUM_INTERVAL",
                &t,
                Duration::ZERO,
                Duration::from_secs(3600),
            )?;
            if !d.is_zero() && d < Duration::from_millis(100) {
                bail!(
                    "invalid setting queue_vacuum_interval (BERTH_QUEUE_VACUUM_INTERVAL): \
                     0s (never) or at least 100 ms"
                );
            }
            delivery.queue_vacuum_interval = (!d.is_zero()).then_some(d);
        }
        let shutdown_grace = match over.shutdown_grace.clone().or(file.shutdown_grace) {
            Some(t) => duration_setting(
                "shutdown_grace",
                "BERTH_SHUTDOWN_GRACE",
                &t,
                Duration::from_millis(0),
                Duration::from_secs(3600),
            )?,
            None => Duration::from_secs(20),
        };
        let role = match over.role.clone().or(file.role).as_deref() {
            None | Some("all") => Role::All,
            Some("api") => Role::Api,
            Some("worker") => Role::Worker,
            Some(other) => bail!(
                "invalid setting role (--role / BERTH_ROLE): `{other}` is not all, api or worker"
            ),
        };
        if role != Role::All && matches!(database, Database::Sqlite) {
            bail!(
                "invalid setting role (--role / BERTH_ROLE): api and worker nodes share a \
                 PostgreSQL database; with SQLite run one node with role all"
            );
        }
        let retention_days = over.retention_days.or(file.retention_days).unwrap_or(30);
        if retention_days > 36_500 {
            bail!("invalid setting retention_days (BERTH_RETENTION_DAYS): at most 36500");
        }
        let mut rate_limit = RateLimitSettings::default();
        if let Some(n) = over.rate_limit_per_second.or(file.rate_limit_per_second) {
            if n > 1_000_000 {
                bail!(
                    "invalid setting rate_limit_per_second (--rate-limit-per-second / \
                     BERTH_RATE_LIMIT_PER_SECOND): at most 1000000 (0 disables the limit)"
                );
            }
            rate_limit.per_second = n;
        }
        if let Some(n) = over.rate_limit_burst.or(file.rate_limit_burst) {
            if !(1..=1_000_000).contains(&n) {
                bail!(
                    "invalid setting rate_limit_burst (--rate-limit-burst / \
                     BERTH_RATE_LIMIT_BURST): must be between 1 and 1000000"
                );
            }
            rate_limit.burst = n;
        }
        if let Some(n) = over
            .auth_failures_per_minute
            .or(file.auth_failures_per_minute)
        {
            if n > 1_000_000 {
                bail!(
                    "invalid setting auth_failures_per_minute (--auth-failures-per-minute / \
                     BERTH_AUTH_FAILURES_PER_MINUTE): at most 1000000 (0 disables the limit)"
                );
            }
            rate_limit.auth_failures_per_minute = n;
        }
        let mut connections = ConnectionSettings::default();
        let timeouts = [
            (
                "header_read_timeout",
                "BERTH_HEADER_READ_TIMEOUT",
                over.header_read_timeout
                    .clone()
                    .or(file.header_read_timeout),
                &mut connections.header_read_timeout,
            ),
            (
                "body_read_timeout",
                "BERTH_BODY_READ_TIMEOUT",
                over.body_read_timeout.clone().or(file.body_read_timeout),
                &mut connections.body_read_timeout,
            ),
            (
                "keep_alive_timeout",
                "BERTH_KEEP_ALIVE_TIMEOUT",
                over.keep_alive_timeout.clone().or(file.keep_alive_timeout),
                &mut connections.keep_alive_timeout,
            ),
        ];
        for (name, env, text, slot) in timeouts {
            if let Some(t) = text {
                *slot = duration_setting(
                    name,
                    env,
                    &t,
                    Duration::from_millis(100),
                    Duration::from_secs(3600),
                )?;
            }
        }
        if let Some(n) = over.max_connections.or(file.max_connections) {
            if !(1..=1_000_000).contains(&n) {
                bail!(
                    "invalid setting max_connections (--max-connections / \
                     BERTH_MAX_CONNECTIONS): must be between 1 and 1000000"
                );
            }
            connections.max_connections = n;
        }
        Ok(Settings {
            listen,
            data_dir,
            database,
            database_max_connections,
            database_acquire_timeout,
            admin_token,
            secret_key,
            delivery,
            shutdown_grace,
            role,
            retention_days,
            trust_forwarded_proto: over
                .trust_forwarded_proto
                .or(file.trust_forwarded_proto)
                .unwrap_or(false),
            rate_limit,
            connections,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_listen_names_the_setting() {
        let over = Overrides {
            listen: Some("nonsense".into()),
            config: Some(PathBuf::from("/nonexistent/berth.toml")),
            ..Default::default()
        };
        // The missing file is reported first.
        let err = Settings::resolve(&over).unwrap_err().to_string();
        assert!(err.contains("configuration file"), "{err}");
        let over = Overrides {
            listen: Some("nonsense".into()),
            ..Default::default()
        };
        let err = Settings::resolve(&over).unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn bad_database_url_names_the_setting() {
        let over = Overrides {
            database_url: Some("mysql://x".into()),
            ..Default::default()
        };
        let err = Settings::resolve(&over).unwrap_err().to_string();
        assert!(err.contains("database_url"), "{err}");
        assert!(!err.contains("mysql://x"), "the URL may hold a password");
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let over = Overrides {
            config: Some(path),
            ..Default::default()
        };
        let err = format!("{:#}", Settings::resolve(&over).unwrap_err());
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn rate_limits_default_on_and_checked() {
        let s = Settings::resolve(&Overrides::default()).unwrap();
        assert_eq!(s.rate_limit, RateLimitSettings::default());
        assert_eq!((s.rate_limit.per_second, s.rate_limit.burst), (100, 200));
        let over = Overrides {
            rate_limit_burst: Some(0),
            ..Default::default()
        };
        let err = Settings::resolve(&over).unwrap_err().to_string();
        assert!(err.contains("rate_limit_burst"), "{err}");
        let over = Overrides {
            rate_limit_per_second: Some(0),
            auth_failures_per_minute: Some(0),
            ..Default::default()
        };
        let s = Settings::resolve(&over).unwrap();
        assert_eq!(s.rate_limit.per_second, 0);
        assert_eq!(s.rate_limit.auth_failures_per_minute, 0);
    }

    #[test]
    fn auto_disable_after_and_acquire_timeout_are_checked() {
        let resolve = |auto: &str, acquire: &str| {
            Settings::resolve(&Overrides {
                auto_disable_after: Some(auto.into()),
                database_acquire_timeout: Some(acquire.into()),
                config: Some(PathBuf::from("/dev/null")),
                ..Default::default()
            })
        };
        let s = resolve("90s", "1s").unwrap();
        assert_eq!(s.delivery.auto_disable_after, Some(Duration::from_secs(90)));
        assert_eq!(s.database_acquire_timeout, Duration::from_secs(1));
        assert_eq!(
            resolve("0s", "3s").unwrap().delivery.auto_disable_after,
            None
        );
        let err = resolve("soon", "3s").unwrap_err().to_string();
        assert!(err.contains("auto_disable_after"), "{err}");
        let err = resolve("5d", "0ms").unwrap_err().to_string();
        assert!(err.contains("database_acquire_timeout"), "{err}");
        let defaults = Settings::resolve(&Overrides {
            config: Some(PathBuf::from("/dev/null")),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            defaults.delivery.auto_disable_after,
            Some(DEFAULT_AUTO_DISABLE_AFTER)
        );
    }

    /// Every key `config.default.toml` documents is one the file may set.
    #[test]
    fn the_default_file_documents_known_keys() {
        let text = include_str!("../config.default.toml");
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')))
            .map(|l| format!("{l}\n"))
            .collect();
        let file: FileConfig = toml::from_str(&uncommented).unwrap();
        assert_eq!(file.auto_disable_after.as_deref(), Some("5d"));
        assert_eq!(file.database_acquire_timeout.as_deref(), Some("3s"));
        assert_eq!(file.shutdown_grace.as_deref(), Some("20s"));
        assert_eq!(file.header_read_timeout.as_deref(), Some("10s"));
        assert_eq!(file.body_read_timeout.as_deref(), Some("30s"));
        assert_eq!(file.keep_alive_timeout.as_deref(), Some("75s"));
        assert_eq!(file.max_connections, Some(10_000));
        assert_eq!(file.node_heartbeat_interval.as_deref(), Some("1s"));
        assert_eq!(file.node_dead_after.as_deref(), Some("5s"));
        assert_eq!(file.queue_vacuum_interval.as_deref(), Some("2s"));
    }

    #[test]
    fn queue_vacuum_interval_defaults_turns_off_and_is_checked() {
        let resolve = |every: Option<&str>| {
            Settings::resolve(&Overrides {
                queue_vacuum_interval: every.map(str::to_owned),
                config: Some(PathBuf::from("/dev/null")),
                ..Default::default()
            })
        };
        let every = |t| resolve(t).unwrap().delivery.queue_vacuum_interval;
        assert_eq!(every(None), Some(Duration::from_secs(2)));
        assert_eq!(every(Some("500ms")), Some(Duration::from_millis(500)));
        assert_eq!(every(Some("0s")), None);
        for bad in ["50ms", "2h", "sometimes"] {
            let err = resolve(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("queue_vacuum_interval"), "{bad}: {err}");
        }
    }

    #[test]
    fn node_heartbeat_settings_default_and_checked() {
        let resolve = |interval: Option<&str>, dead: Option<&str>| {
            Settings::resolve(&Overrides {
                node_heartbeat_interval: interval.map(str::to_owned),
                node_dead_after: dead.map(str::to_owned),
                config: Some(PathBuf::from("/dev/null")),
                ..Default::default()
            })
        };
        let s = resolve(None, None).unwrap();
        assert_eq!(s.delivery.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(s.delivery.dead_after, Duration::from_secs(5));
        let s = resolve(Some("200ms"), Some("1s")).unwrap();
        assert_eq!(s.delivery.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(s.delivery.dead_after, Duration::from_secs(1));
        // Exactly twice the interval is refused: one late beat would look like a death.
        let err = resolve(Some("500ms"), Some("1s")).unwrap_err().to_string();
        assert!(
            err.contains("node_dead_after") && err.contains("twice"),
            "{err}"
        );
        let err = resolve(None, Some("2s")).unwrap_err().to_string();
        assert!(err.contains("node_dead_after"), "{err}");
        let err = resolve(Some("0s"), None).unwrap_err().to_string();
        assert!(err.contains("node_heartbeat_interval"), "{err}");
        let err = resolve(Some("often"), None).unwrap_err().to_string();
        assert!(err.contains("node_heartbeat_interval"), "{err}");
    }

    #[test]
    fn connection_settings_default_and_checked() {
        let resolve = |over: Overrides| {
            Settings::resolve(&Overrides {
                config: Some(PathBuf::from("/dev/null")),
                ..over
            })
        };
        let s = resolve(Overrides::default()).unwrap();
        assert_eq!(s.connections, ConnectionSettings::default());
        let s = resolve(Overrides {
            header_read_timeout: Some("2s".into()),
            body_read_timeout: Some("3s".into()),
            keep_alive_timeout: Some("4s".into()),
            max_connections: Some(7),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            s.connections,
            ConnectionSettings {
                header_read_timeout: Duration::from_secs(2),
                body_read_timeout: Duration::from_secs(3),
                keep_alive_timeout: Duration::from_secs(4),
                max_connections: 7,
            }
        );
        let err = resolve(Overrides {
            keep_alive_timeout: Some("0s".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("keep_alive_timeout"), "{err}");
        let err = resolve(Overrides {
            max_connections: Some(0),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_connections"), "{err}");
    }

    #[test]
    fn database_debug_is_redacted() {
        let d = Database::Postgres("postgres://u:hunter2@h/db".into());
        assert!(!format!("{d:?}").contains("hunter2"));
    }
}
