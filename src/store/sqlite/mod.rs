//! The SQLite backend: one file, one writer. Every write runs on the group writer's thread
//! (`group.rs`: the writes that arrive together share one transaction and one fsync, each in
//! its own savepoint) on its `rusqlite` connection; every read runs on the calling thread on
//! one of a few `rusqlite` read connections (`fast::Readers`): a read of a few indexed rows
//! costs microseconds, less than a hand-off to another thread.
//!
//! The areas of the store interface move here from the shared `sqlx` code one by one; those
//! not yet here are still served by `Store`'s own methods (see `store/mod.rs`).

mod audit;
mod backup;
mod events;
mod migrate;
mod models;
mod names;
mod settings;
mod users;
mod versions;
mod workspaces;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use rusqlite::Connection;
use tokio::sync::Notify;

use super::audit::{AuditEntry, INSERT_AUDIT};
pub use backup::copy_sqlite;

use super::fast::Readers;
use super::group::GroupWriter;
use super::{Result, Storage, now_micros};

/// The SQLite implementation of [`Storage`].
pub struct Sqlite {
    writer: GroupWriter,
    readers: Arc<Readers>,
    /// The database file, `berth.db` in the data directory.
    file: PathBuf,
    /// Wakes this process's delivery worker after a commit that wrote deliveries.
    wake: Arc<Notify>,
}

impl Sqlite {
    pub(super) fn new(
        writer: GroupWriter,
        readers: Arc<Readers>,
        file: PathBuf,
        wake: Arc<Notify>,
    ) -> Sqlite {
        Sqlite {
            writer,
            readers,
            file,
            wake,
        }
    }

    /// Runs `work` in the writer's next group transaction; answers once it is durable.
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.writer.write_sync(work).await
    }

    /// Runs `read` on a read connection, on this thread.
    fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.readers.read(read)
    }
}

#[async_trait::async_trait]
impl Storage for Sqlite {
    async fn apply_migrations(&self) -> anyhow::Result<()> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || migrate::migrate(&file))
            .await
            .context("the migration task")?
    }
}

/// Writes `entry` inside the transaction of the change it records (the writer's).
fn insert_audit(conn: &Connection, entry: &AuditEntry) -> Result<()> {
    conn.prepare_cached(INSERT_AUDIT)?
        .execute(rusqlite::params![
            entry.workspace_id,
            now_micros(),
            entry.actor,
            entry.action.as_str(),
            entry.target.model,
            entry.target.version,
            entry.target.webhook_id,
            entry.target.webhook_name,
            serde_json::to_string(&entry.details)?,
        ])?;
    Ok(())
}
