//! Persistence: one storage interface ([`Storage`]), implemented once per backend,
//! `sqlite/` (rusqlite: one file, one group-commit writer thread, reads on the calling
//! thread) and `postgres/` (sqlx on a PostgreSQL pool, several nodes sharing the database).
//!
//! Each area of the interface has a file here (`users.rs`, `workspaces.rs`, `models.rs`,
//! `versions.rs`, `events.rs`, `webhooks.rs`, `deliveries.rs`, `nodes.rs`, `audit.rs`,
//! `names.rs`, `settings.rs`) holding its trait, the values it answers, and the query text
//! both dialects accept (`$N` placeholders, which SQLite reads too), written once; each
//! backend's file of the same name implements the trait with that text and its own where the
//! dialects differ. No driver type leaves `store/`; the store answers its own [`Error`].
//! Each database has its own embedded migrations under `migrations/<backend>/`, with the same
//! numbers. The conformance suite (`tests/it`) runs every test against both.
//!
//! Every change that is a webhook trigger writes its event row in the same transaction as the
//! change (each backend's `insert_event`, in its `events.rs`), and every change an admin may
//! need to account for writes its audit row in that same transaction (see `audit.rs`).

mod audit;
mod deliveries;
mod error;
mod events;
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
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;

pub use audit::{
    Audit, AuditAction, AuditEntry, AuditFilter, AuditRecord, AuditTarget, SYSTEM_ACTOR, url_host,
};
pub use deliveries::{
    AttemptRecord, AttemptResult, ClaimedDelivery, Deliveries, DeliveryRecord, NextLease,
    QueueStats, Recorded, Tending,
};
pub use error::{Error, Result};
pub use events::{EventCursor, EventRecord, Events};
pub use models::{DeleteModel, Model, ModelPatch, ModelScopeRow, Models};
pub use names::{NameClash, Names};
pub use nodes::{DeadNode, NodeRecord, Nodes};
pub use postgres::probe::{PgBackend, PgBackends, PgCounters, PgProbe, WalLsn};
pub use settings::ServerSettings;
pub use sqlite::copy_sqlite;
pub use users::{Caller, TokenInfo, User, Users};
pub use versions::{
    Decision, NewVersion, StatusRequest, StatusRequestCursor, Version, VersionCursor, Versions,
};
pub use webhooks::{EnableOutcome, SaveWebhooks, WebhookRecord, WebhookWrite, Webhooks};
pub use workspaces::{LastAdmin, Member, StatusDef, Workspace, WorkspaceAccess, Workspaces};

/// The storage interface: what the API, the worker and the web pages may ask of a database,
/// one trait per area, each implemented once per backend (`sqlite/`, `postgres/`). A
/// [`Store`] derefs to it.
#[async_trait::async_trait]
pub trait Storage:
    Users
    + Workspaces
    + Models
    + Versions
    + Events
    + Webhooks
    + Deliveries
    + Nodes
    + Audit
    + Names
    + ServerSettings
    + Send
    + Sync
{
    /// The backend's name, for the log: `sqlite` or `postgres`.
    fn name(&self) -> &'static str;

    /// Applies this backend's embedded migrations (`migrations/<backend>/`) the database
    /// lacks.
    async fn apply_migrations(&self) -> anyhow::Result<()>;

    /// Wakes this process's worker, until `stop`, whenever another process commits
    /// deliveries (PostgreSQL: `LISTEN`). Nothing to do where this process is the only
    /// writer (SQLite).
    fn listen_for_deliveries(&self, _stop: tokio::sync::watch::Receiver<bool>) {}

    /// Closes the connections, waiting for those in use.
    async fn close(&self) {}
}

/// The database: a handle to the backend's [`Storage`] (it derefs to it) and the signal that
/// wakes this process's delivery worker.
#[derive(Clone)]
pub struct Store {
    db: Arc<dyn Storage>,
    wake: Arc<Notify>,
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
        let wake = Arc::new(Notify::new());
        let file = data_dir.join("berth.db");
        let db = tokio::task::spawn_blocking({
            let wake = wake.clone();
            move || sqlite::Sqlite::open(file, wake)
        })
        .await
        .context("opening the SQLite database")??;
        Ok(Store {
            db: Arc::new(db),
            wake,
        })
    }

    /// Connects to PostgreSQL at `url`. A request that waits longer than `acquire_timeout`
    /// for a connection (the database is away, or the pool is exhausted) fails as
    /// unavailable, which the API answers with 503.
    pub async fn open_postgres(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> anyhow::Result<Store> {
        let wake = Arc::new(Notify::new());
        let db = postgres::Postgres::connect(url, max_connections, acquire_timeout, wake.clone())
            .await?;
        Ok(Store {
            db: Arc::new(db),
            wake,
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
}

/// The current time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// True when `err` means the database cannot be reached or is going away (a connection
/// refused, reset or timed out, a pool that waited too long, PostgreSQL shutting down), rather
/// than a problem with the query: the API answers it with 503 and the worker backs off.
pub(crate) fn is_unavailable(err: &sqlx::Error) -> bool {
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
pub(crate) fn is_transient_conflict(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| matches!(&*code, "40P01" | "40001"))
}

/// True when PostgreSQL refused a text value holding a NUL character (22021), which its
/// text type cannot store: client input, so a 400, never a 500.
pub(crate) fn is_nul_in_text(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| &*code == "22021")
}

/// True when `err` is a unique-constraint violation.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
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
            super::webhooks::SHARED_SQL,
            super::deliveries::SHARED_SQL,
            super::nodes::SHARED_SQL,
            super::sqlite::deliveries::SQLITE_SQL,
            super::sqlite::webhooks::SQLITE_SQL,
        ];
        let built = super::webhooks::shared_sql_built();
        for text in shared
            .into_iter()
            .flatten()
            .copied()
            .chain(built.iter().map(String::as_str))
        {
            let found = placeholders(text);
            let expected: Vec<u32> = (1..=found.len() as u32).collect();
            assert_eq!(found, expected, "{text}");
        }
        assert_eq!(placeholders("a $2, $1"), vec![2, 1]);
    }
}
