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
use crate::config::{Database, Settings};
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<Settings>,
}

/// Opens the configured database (creating the data directory and SQLite file as needed) and
/// applies the embedded migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "invalid setting data_dir: cannot create {}",
            settings.data_dir.display()
        )
    })?;
    let store = match &settings.database {
        Database::Sqlite => Store::open_sqlite(&settings.data_dir).await?,
        Database::Postgres(url) => {
            Store::open_postgres(url, settings.database_max_connections).await?
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
    api::router(state).layer(TraceLayer::new_for_http())
}

/// Serves on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")
}

/// Prepares the store and binds the listener: everything `serve` does before it serves.
pub async fn prepare(settings: Settings) -> anyhow::Result<(AppState, TcpListener, SocketAddr)> {
    let store = open_store(&settings).await?;
    bootstrap_admin(&settings, &store).await?;
    let listener = TcpListener::bind(settings.listen).await.with_context(|| {
        format!(
            "invalid setting listen: cannot listen on {}",
            settings.listen
        )
    })?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let state = AppState {
        store,
        settings: Arc::new(settings),
    };
    Ok((state, listener, addr))
}

/// `berth serve`: runs until SIGINT or SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let (state, listener, addr) = prepare(settings).await?;
    tracing::info!(
        backend = ?state.store.backend(),
        "listening on http://{addr}"
    );
    let store = state.store.clone();
    run(state, listener, shutdown_signal()).await?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// `berth migrate`: applies migrations and exits.
pub async fn migrate_only(settings: &Settings) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    store.close().await;
    tracing::info!("migrations applied");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
