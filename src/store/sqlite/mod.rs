//! The SQLite backend: one file, one writer. Every write runs on the group writer's thread
//! (`group.rs`: the writes that arrive together share one transaction and one fsync, each in
//! its own savepoint) on its `rusqlite` connection; every read runs on the calling thread on
//! one of a few `rusqlite` read connections (`fast::Readers`): a read of a few indexed rows
//! costs microseconds, less than a hand-off to another thread.
//!
//! The areas of the store interface move here from the shared `sqlx` code one by one; those
//! not yet here are still served by `Store`'s own methods (see `store/mod.rs`).

mod audit;
mod models;
mod names;
mod settings;
mod users;
mod workspaces;

use std::sync::Arc;

use rusqlite::Connection;

use super::audit::{AuditEntry, INSERT_AUDIT};
use super::fast::Readers;
use super::group::GroupWriter;
use super::{Result, Storage, now_micros};

/// The SQLite implementation of [`Storage`].
pub struct Sqlite {
    writer: GroupWriter,
    readers: Arc<Readers>,
}

impl Sqlite {
    pub(super) fn new(writer: GroupWriter, readers: Arc<Readers>) -> Sqlite {
        Sqlite { writer, readers }
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

impl Storage for Sqlite {}

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
