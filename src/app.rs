//! Wiring: opens the store, creates the first admin, builds the router, and runs the server
//! until it is told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::api;
use crate::api::limits::RateLimits;
use crate::config::{Database, Settings};
use crate::delivery::crypto::SecretBox;
use crate::delivery::http::Sender;
use crate::delivery::metrics::Metrics;
use crate::delivery::worker::{Worker, WorkerConfig};
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<Settings>,
    /// Seals and opens secrets at rest.
    pub secrets: SecretBox,
    /// The guarded HTTP client of every webhook send (Test Webhook included).
    pub sender: Sender,
    pub metrics: Arc<Metrics>,
    /// The delivery worker (`run_once` drains the queue, for tests and tools).
    pub worker: Worker,
    /// Per-token and failed-authentication rate limits.
    pub limits: Arc<RateLimits>,
}

/// Loads the secret key: `BERTH_SECRET_KEY`, else `<data-dir>/secret-key`, generated on first
/// start. A key that does not open what the database holds stops the server.
pub async fn load_secret_key(settings: &Settings, store: &Store) -> anyhow::Result<SecretBox> {
    let text = match &settings.secret_key {
        Some(k) => k.expose().to_owned(),
        None => {
            let path = settings.data_dir.join("secret-key");
            match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let key = SecretBox::generate_key();
                    write_private(&path, &format!("{key}\n"))
                        .with_context(|| format!("writing {}", path.display()))?;
                    tracing::info!(file = %path.display(), "generated a secret key for webhook secrets");
                    key
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {}", path.display()));
                }
            }
        }
    };
    let key = SecretBox::parse_key(&text).map_err(|e| {
        anyhow::anyhow!(
            "invalid setting secret_key (BERTH_SECRET_KEY or <data-dir>/secret-key): {e}"
        )
    })?;
    let secrets = SecretBox::new(&key);
    let check = store
        .init_setting(
            "secret_key_check",
            &secrets.seal("server:key-check", "berth"),
        )
        .await
        .context("reading the secret key check")?;
    if secrets.open("server:key-check", &check).is_err() {
        anyhow::bail!(
            "invalid setting secret_key: this is not the key the database's secrets were sealed \
             with (set BERTH_SECRET_KEY to the original key; every node needs the same one)"
        );
    }
    Ok(secrets)
}

/// Opens the configured database (creating the data directory and SQLite file as needed) and
/// applies the embedded migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    create_data_dir(&settings.data_dir)?;
    let store = match &settings.database {
        Database::Sqlite => {
            make_sqlite_files_private(&settings.data_dir)?;
            Store::open_sqlite(&settings.data_dir).await?
        }
        Database::Postgres(url) => {
            Store::open_postgres(
                url,
                settings.database_max_connections,
                settings.database_acquire_timeout,
            )
            .await?
        }
    };
    store.migrate().await?;
    Ok(store)
}

/// On a fresh database, creates the server admin `admin`. Its token is `BERTH_ADMIN_TOKEN`
/// when set; otherwise a new one, printed once on standard output and written to
/// `<data-dir>/admin-token` with mode 0600.
pub async fn bootstrap_admin(settings: &Settings, store: &Store) -> anyhow::Result<()> {
    let (token, generated) = match &settings.admin_token {
        Some(t) => (t.expose().to_owned(), false),
        None => (api::auth::new_token(), true),
    };
    let created = store
        .bootstrap_admin(&api::auth::new_token_id(), &api::auth::hash_token(&token))
        .await
        .context("creating the server admin")?;
    if !created {
        return Ok(());
    }
    if generated {
        let path = settings.data_dir.join("admin-token");
        write_private(&path, &format!("{token}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "Created the server admin `admin`. Its API token (shown once, also saved to {}):\n{token}",
            path.display()
        );
        tracing::info!(file = %path.display(), "created the server admin `admin` with a generated token");
    } else {
        tracing::info!("created the server admin `admin` with the token from BERTH_ADMIN_TOKEN");
    }
    Ok(())
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let routes = if state.settings.role.serves_api() {
        api::router().merge(crate::web::router())
    } else {
        // A worker node answers only health checks and metrics.
        api::health_router()
    };
    routes
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
        // The web UI's forms get the API's body limit too (axum's own default is 2 MB).
        .layer(axum::extract::DefaultBodyLimit::max(
            api::extract::MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::from_fn(api::limits::check_request_size))
        .layer(TraceLayer::new_for_http())
}

/// The retention cleaner: every hour, deletes delivery attempts (and finished deliveries)
/// older than `days`, in batches of 500 with a pause between them, so the database does not
/// grow without bound and writers are never held up for long.
async fn clean_old_deliveries(
    store: Store,
    days: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    const BATCH: i64 = 500;
    loop {
        let cutoff = crate::store::now_micros() - i64::from(days) * 86_400 * 1_000_000;
        let mut total = 0;
        loop {
            match store.purge_before(cutoff, BATCH).await {
                Ok(n) => {
                    total += n;
                    if n < u64::try_from(BATCH).unwrap_or(0) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention cleaning failed; will retry");
                    break;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                _ = stop.changed() => return,
            }
        }
        if total > 0 {
            tracing::info!(deleted = total, days, "deleted old delivery attempts");
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Every `every`, vacuums the delivery queue's table when it holds
/// [`QUEUE_VACUUM_DEAD_ROWS`](crate::config::QUEUE_VACUUM_DEAD_ROWS) dead row versions or
/// more (`Deliveries::tend_queue`): autovacuum visits a database about once a minute, and
/// meanwhile each claim walks past every dead entry of the queue's indexes. Ends at once
/// on a backend with nothing to tend (SQLite), or where this user may not vacuum.
async fn tend_delivery_queue(
    store: Store,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use crate::store::Tending;
    let mut failing = false;
    loop {
        let started = std::time::Instant::now();
        match store
            .tend_queue(crate::config::QUEUE_VACUUM_DEAD_ROWS)
            .await
        {
            Ok(Tending::NothingToTend) => return,
            Ok(Tending::NotPermitted) => {
                tracing::warn!(
                    "this database user does not own the deliveries table and may not vacuum \
                     it; its dead rows wait for autovacuum (set queue_vacuum_interval = \"0s\" \
                     to silence this)"
                );
                return;
            }
            Ok(Tending::Vacuumed { dead_rows }) => {
                tracing::debug!(
                    dead_rows,
                    took_ms = started.elapsed().as_millis() as u64,
                    "vacuumed the delivery queue"
                );
                failing = false;
            }
            Ok(Tending::Clean { .. } | Tending::Busy) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot vacuum the delivery queue; will retry");
                    failing = true;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// Serves on `listener`, with the delivery worker beside it, until `shutdown` completes; then
/// stops accepting, lets requests and attempts in flight finish (attempts within the grace
/// period), and releases this node's delivery leases.
pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = state.settings.shutdown_grace;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stopping = stop_rx.clone();
    let stop_rx_http = stop_rx.clone();
    let role = state.settings.role;
    let worker = role
        .runs_worker()
        .then(|| tokio::spawn(state.worker.clone().run(stop_rx.clone(), grace)));
    if role.runs_worker() {
        state.store.listen_for_deliveries(stop_rx.clone());
        if let Some(every) = state.settings.delivery.queue_vacuum_interval {
            tokio::spawn(tend_delivery_queue(
                state.store.clone(),
                every,
                stop_rx.clone(),
            ));
        }
        if state.settings.retention_days > 0 {
            tokio::spawn(clean_old_deliveries(
                state.store.clone(),
                state.settings.retention_days,
                stop_rx,
            ));
        }
    }
    let connections = state.settings.connections;
    let cap = crate::connections::connection_cap(&state.settings, open_file_limit());
    let app = router(state);
    let server = crate::connections::serve(listener, app, connections, cap, stop_rx_http);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    // Requests in flight get the grace period too; then the server stops waiting for them
    // and closes their connections (dropping `server` drops them).
    tokio::select! {
        () = async { tokio::join!(server, shutdown); } => {}
        () = async {
            let _ = stopping.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("requests still in flight at the end of the shutdown grace; closing them");
        }
    }
    if let Some(w) = worker {
        let _ = w.await;
    }
    Ok(())
}

/// This process's soft open-file limit (None: unlimited or unknown).
fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Binds the listener and prepares the store: everything `serve` does before it serves.
pub async fn prepare(settings: Settings) -> anyhow::Result<(AppState, TcpListener, SocketAddr)> {
    let listener = bind(&settings).await?;
    prepare_with(settings, listener).await
}

/// Binds `listen`. It comes before anything is created, so a taken port leaves no trace.
pub async fn bind(settings: &Settings) -> anyhow::Result<TcpListener> {
    let addr = settings.listen;
    TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "cannot listen on {addr}: the address is already in use (another process listens \
             there; stop it, or give Berth another --listen / BERTH_LISTEN)"
        ),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot listen on {addr}: permission denied (ports below 1024 need privileges; \
             choose another --listen / BERTH_LISTEN)"
        ),
        _ => anyhow::anyhow!("cannot listen on {addr} (--listen / BERTH_LISTEN): {e}"),
    })
}

/// Opens the store, creates the first admin and builds the state, to serve on `listener`.
pub async fn prepare_with(
    settings: Settings,
    listener: TcpListener,
) -> anyhow::Result<(AppState, TcpListener, SocketAddr)> {
    let store = open_store(&settings).await?;
    bootstrap_admin(&settings, &store).await?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let state = build_state(settings, store).await?;
    Ok((state, listener, addr))
}

/// Everything the handlers and the worker share.
pub async fn build_state(settings: Settings, store: Store) -> anyhow::Result<AppState> {
    let secrets = load_secret_key(&settings, &store).await?;
    let d = &settings.delivery;
    let sender = Sender::new(d.policy.clone(), d.timeout, d.max_in_flight)
        .context("building the HTTP client")?;
    let metrics = Arc::new(Metrics::default());
    let worker = Worker::new(
        store.clone(),
        sender.clone(),
        secrets.clone(),
        WorkerConfig {
            node: d.node.clone(),
            max_in_flight: d.max_in_flight,
            per_webhook_in_flight: d.per_webhook_in_flight,
            poll_interval: d.poll_interval,
            lease: d.timeout + std::time::Duration::from_secs(30),
            schedule: d.schedule.clone(),
            auto_disable_after: d.auto_disable_after,
            heartbeat_interval: d.heartbeat_interval,
            dead_after: d.dead_after,
            clock: d.clock.clone(),
        },
        metrics.clone(),
    );
    let limits = Arc::new(RateLimits::new(settings.rate_limit));
    Ok(AppState {
        store,
        limits,
        settings: Arc::new(settings),
        secrets,
        sender,
        metrics,
        worker,
    })
}

/// The base URL in the log line `serve` writes once it listens (`listening on http://…`),
/// for whatever starts `berth serve` as a child and waits for it (the bench, the tests).
pub fn listening_url(log_line: &str) -> Option<&str> {
    let at = log_line.find("listening on http://")?;
    log_line[at + "listening on ".len()..]
        .split_whitespace()
        .next()
}

/// `berth serve`: runs until SIGINT or SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Every connection holds an open file: the connection cap, not the kernel, should refuse.
    crate::connections::raise_open_file_limit();
    let listener = bind(&settings).await?;
    // SQLite: one server per data directory, held by a lock until this process ends (the
    // kernel lets go of it even when the process is killed).
    let lock = match settings.database {
        Database::Sqlite => lock_data_dir(&settings.data_dir)?,
        Database::Postgres(_) => None,
    };
    let shutdown = shutdown_signal();
    let (state, listener, addr) = prepare_with(settings, listener).await?;
    // Leases a killed process left: on SQLite, with the lock held, every one; on PostgreSQL,
    // those under this node's name (names are distinct per node, so they are an earlier
    // run's of this node). A dead node's under another name are released by the heartbeat
    // of any running node once that name has been silent for `node_dead_after`.
    let released = if lock.is_some() {
        state.store.release_every_lease().await?
    } else {
        let node = &state.settings.delivery.node;
        state.store.release_leases(node).await?
    };
    if released > 0 {
        tracing::warn!(
            deliveries = released,
            "an earlier run stopped mid-attempt; sending its deliveries in flight again"
        );
    }
    tracing::info!(backend = state.store.name(), "listening on http://{addr}");
    let store = state.store.clone();
    run(state, listener, shutdown).await?;
    // Closing waits for connections still checked out; a request abandoned at the end of
    // the grace must not hold the exit up.
    if tokio::time::timeout(std::time::Duration::from_secs(5), store.close())
        .await
        .is_err()
    {
        tracing::warn!("database connections still busy at exit; closing them");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Creates the data directory 0700 (it holds token and session hashes, the audit log and
/// the secret key), or tightens an existing one that others may read, with a log line.
fn create_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("invalid setting data_dir: cannot create {}", dir.display()))?;
    make_private(dir, 0o700)
}

/// Takes group and other permissions off `path` (mode `bits`), logging what it changed.
#[cfg(unix)]
fn make_private(path: &std::path::Path, bits: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(bits))
            .with_context(|| format!("cannot make {} private (mode {bits:o})", path.display()))?;
        tracing::warn!(path = %path.display(), from = %format!("{mode:o}"), to = %format!("{bits:o}"),
            "tightened permissions: others could read Berth's files");
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_path: &std::path::Path, _bits: u32) -> anyhow::Result<()> {
    Ok(())
}

/// Creates `berth.db` 0600 before SQLite opens it (its `-wal` and `-shm` files then take the
/// same mode), and tightens the database files an older Berth left readable by others.
fn make_sqlite_files_private(dir: &std::path::Path) -> anyhow::Result<()> {
    let db = dir.join("berth.db");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(&db)
        .with_context(|| format!("cannot create {}", db.display()))?;
    for name in ["berth.db", "berth.db-wal", "berth.db-shm"] {
        let path = dir.join(name);
        if path.exists() {
            make_private(&path, 0o600)?;
        }
    }
    Ok(())
}

/// Takes the SQLite data directory's lock (`berth.lock`), so a second `berth serve` on the
/// same directory refuses to start rather than share the file. Answers None, with a
/// warning, where the file system cannot lock.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<Option<std::fs::File>> {
    create_data_dir(dir)?;
    let path = dir.join("berth.lock");
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    make_private(&path, 0o600)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another berth serve is using the data directory {} (it holds {}); stop it, or \
             give this one another --data-dir",
            dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::warn!(file = %path.display(), error = %e,
                "cannot lock the data directory; make sure no other berth serve uses it");
            Ok(None)
        }
    }
}

/// `berth migrate`: applies migrations and exits.
pub async fn migrate_only(settings: &Settings) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    store.close().await;
    tracing::info!("migrations applied");
    Ok(())
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a SIGTERM that arrives as soon as the server listens (a process
/// manager stopping it at once) is a clean shutdown too, never the default action's kill.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let int = async {
                match &mut int {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let term = async {
                match &mut term {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = int => {},
                () = term => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}
