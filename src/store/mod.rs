//! Persistence: one `Store` over SQLite or PostgreSQL.
//!
//! Both databases run the same SQL text (runtime `sqlx` queries through the `Any` driver, with
//! `$N` placeholders, which SQLite accepts too); the few places where the dialects differ
//! (row locks, commit-order visibility of events) branch on [`Backend`] in the function that
//! needs it. Each database has its own embedded migrations under `migrations/<backend>/`, with
//! the same numbers. The conformance suite (`tests/it`) runs every test against both.
//!
//! Every change that is a webhook trigger writes its event row in the same transaction as the
//! change (each backend's `insert_event`, in its `events.rs`), and every change an admin may
//! need to account for writes its audit row in that same transaction (see `audit.rs`).

mod audit;
mod deliveries;
mod error;
mod events;
mod fast;
mod group;
pub mod models;
mod names;
mod nodes;
mod postgres;
mod settings;
mod sqlite;
pub mod users;
mod versions;
mod webhooks;
pub mod workspaces;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use tokio::sync::Notify;

pub use audit::{
    Audit, AuditAction, AuditEntry, AuditFilter, AuditRecord, AuditTarget, SYSTEM_ACTOR, url_host,
};
pub use deliveries::{
    AttemptRecord, AttemptResult, ClaimedDelivery, DeliveryRecord, QueueStats, Recorded,
};
pub use error::{Error, Result};
pub use events::{EventCursor, EventRecord, Events};
pub use fast::NextLease;
pub use models::{DeleteModel, Model, ModelPatch, ModelScopeRow, Models};
pub use names::{NameClash, Names};
pub use nodes::{DeadNode, NodeRecord};
pub use settings::Settings;
pub use sqlite::copy_sqlite;
pub use users::{Caller, TokenInfo, User, Users};
pub use versions::{
    Decision, NewVersion, StatusRequest, StatusRequestCursor, Version, VersionCursor, Versions,
};
pub use webhooks::{EnableOutcome, SaveWebhooks, WebhookRecord, WebhookWrite};
pub use workspaces::{LastAdmin, Member, StatusDef, Workspace, WorkspaceAccess, Workspaces};

/// The storage interface: what the API, the worker and the web pages may ask of a database,
/// one trait per area, each implemented once per backend (`sqlite/`, `postgres/`). A
/// [`Store`] derefs to it.
#[async_trait::async_trait]
pub trait Storage:
    Users + Workspaces + Models + Versions + Events + Audit + Names + Settings + Send + Sync
{
    /// Applies this backend's embedded migrations (`migrations/<backend>/`) the database
    /// lacks.
    async fn apply_migrations(&self) -> anyhow::Result<()>;
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database, with a pool for reads and one for writes.
///
/// On SQLite the write pool has a single connection: SQLite allows one writer at a time, and
/// queueing writers in the pool is cheaper and fairer than letting them collide on the file
/// lock. On PostgreSQL both pools are the same pool.
#[derive(Clone)]
pub struct Store {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
    wake: Arc<Notify>,
    /// SQLite's group-commit writer (see `group.rs`); `None` on PostgreSQL.
    group: Option<group::GroupWriter>,
    /// The backend's implementation of the [`Storage`] interface.
    db: Arc<dyn Storage>,
}

impl std::ops::Deref for Store {
    type Target = dyn Storage;

    fn deref(&self) -> &(dyn Storage + 'static) {
        &*self.db
    }
}

/// A model and the workspace it lives in: what an event payload needs to name them.
#[derive(Debug, Clone)]
pub struct ModelRef {
    pub workspace_id: i64,
    pub workspace_name: String,
    pub model_id: i64,
    pub model_name: String,
}

impl Store {
    /// Opens (creating if needed) the SQLite file `berth.db` under `data_dir`.
    pub async fn open_sqlite(data_dir: &Path) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let file = data_dir.join("berth.db");
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("invalid SQLite path {}", file.display()))?;
        let pragmas = || {
            AnyPoolOptions::new()
                .acquire_timeout(Duration::from_secs(10))
                // A file on this machine does not hang up: no ping (a round trip to the
                // connection's thread) before each use. The writer thread takes the write
                // connection once per batch.
                .test_before_acquire(false)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // WAL with synchronous=FULL: a commit that returned is on disk.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        Ok(())
                    })
                })
        };
        let write = pragmas()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open SQLite database {}", file.display()))?;
        let read = pragmas()
            .max_connections(8)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open SQLite database {}", file.display()))?;
        let writer = group::GroupWriter::start(write.clone(), &file)?;
        let readers = Arc::new(fast::Readers::new(file.clone()));
        let wake = Arc::new(Notify::new());
        Ok(Store {
            read,
            db: Arc::new(sqlite::Sqlite::new(
                writer.clone(),
                readers,
                file.clone(),
                wake.clone(),
            )),
            group: Some(writer),
            write,
            backend: Backend::Sqlite,
            wake,
        })
    }

    /// Connects to PostgreSQL at `url`. A request that waits longer than `acquire_timeout`
    /// for a connection (the database is away, or the pool is exhausted) fails with
    /// `PoolTimedOut`, which the API answers with 503.
    pub async fn open_postgres(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url).context("invalid database URL")?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .context("cannot connect to PostgreSQL")?;
        let wake = Arc::new(Notify::new());
        Ok(Store {
            db: Arc::new(postgres::Postgres::new(pool.clone(), wake.clone())),
            read: pool.clone(),
            write: pool,
            backend: Backend::Postgres,
            wake,
            group: None,
        })
    }

    /// Applies the embedded migrations of this backend, then reports the names that
    /// collide ([`Names::check_names`]).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.db
            .apply_migrations()
            .await
            .context("applying database migrations")?;
        self.check_names()
            .await
            .context("checking names for look-alikes (migration 0008)")?;
        Ok(())
    }

    /// Wakes this process's delivery worker: called after a commit that may have written
    /// deliveries. (Other nodes hear of it through PostgreSQL `NOTIFY`.)
    pub fn wake_worker(&self) {
        self.wake.notify_one();
    }

    /// What the delivery worker waits on.
    pub fn wake_signal(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so a transaction that reads before it writes never fails to upgrade.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.write.begin().await,
        }
    }

    /// Runs `work` as one write transaction. On SQLite it joins the group commit: the
    /// writes that arrive together share one transaction and one fsync, each in its own
    /// savepoint. On PostgreSQL it is an ordinary transaction (the server groups commits
    /// itself). Either way `work` has committed, durably, when this answers `Ok`.
    async fn write_tx<T, F>(&self, work: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut sqlx::AnyConnection,
            ) -> group::ConnFuture<'c, Result<T, sqlx::Error>>
            + Send
            + 'static,
    {
        match &self.group {
            Some(g) => g.write(work).await,
            None => {
                let mut tx = self.begin().await?;
                let value = work(&mut tx).await?;
                tx.commit().await?;
                Ok(value)
            }
        }
    }

    /// Picks the SQLite or the PostgreSQL text of a query.
    fn pick(&self, (sqlite, postgres): (&'static str, &'static str)) -> &'static str {
        match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        }
    }
}

/// The current time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// True when `err` means the database cannot be reached or is going away (a connection
/// refused, reset or timed out, a pool that waited too long, PostgreSQL shutting down), rather
/// than a problem with the query: the API answers it with 503 and the worker backs off.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // PostgreSQL: class 08: connection exception; 57P01-57P03: admin or crash
            // shutdown, cannot connect now; 53300: too many connections. SQLite (extended
            // result codes): SQLITE_BUSY and its kinds, still busy after the busy timeout.
            code.starts_with("08")
                || matches!(
                    &*code,
                    "57P01" | "57P02" | "57P03" | "53300" | "5" | "261" | "517" | "773"
                )
        }),
        _ => false,
    }
}

/// True when PostgreSQL gave up a transaction to break a deadlock or a serialization
/// conflict (40P01, 40001): it changed nothing, and a retry succeeds.
pub fn is_transient_conflict(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| matches!(&*code, "40P01" | "40001"))
}

/// True when PostgreSQL refused a text value holding a NUL character (22021), which its
/// text type cannot store: client input, so a 400, never a 500.
pub fn is_nul_in_text(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| &*code == "22021")
}

/// True when `err` is a unique-constraint violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

#[cfg(test)]
mod tests {
    /// The `$N` placeholders of `text`, in the order they first appear.
    fn placeholders(text: &str) -> Vec<u32> {
        let mut seen = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<u32>()
                && !seen.contains(&n)
            {
                seen.push(n);
            }
        }
        seen
    }

    /// Shared query text binds its values by position on both databases: PostgreSQL by the
    /// number, SQLite in the order each `$N` first appears. Both agree only when `$1, $2, …`
    /// first appear in that order.
    #[test]
    fn sql_text_numbers_its_parameters_in_order() {
        let shared = [
            super::users::SHARED_SQL,
            super::workspaces::SHARED_SQL,
            super::models::SHARED_SQL,
            super::versions::SHARED_SQL,
            super::events::SHARED_SQL,
            super::audit::SHARED_SQL,
            super::names::SHARED_SQL,
            super::settings::SHARED_SQL,
        ];
        for text in shared.into_iter().flatten() {
            let found = placeholders(text);
            let expected: Vec<u32> = (1..=found.len() as u32).collect();
            assert_eq!(found, expected, "{text}");
        }
        assert_eq!(placeholders("a $2, $1"), vec![2, 1]);
    }
}
