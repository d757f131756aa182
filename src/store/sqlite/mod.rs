//! The SQLite backend: one file, one writer. Every write runs on the group writer's thread
//! (`group.rs`: the writes that arrive together share one transaction and one fsync, each in
//! its own savepoint) on its `rusqlite` connection; every read runs on the calling thread on
//! one of a few `rusqlite` read connections ([`Readers`]): a read of a few indexed rows
//! costs microseconds, less than a hand-off to another thread.

mod audit;
mod backup;
pub(super) mod deliveries;
mod events;
mod group;
mod migrate;
mod models;
mod names;
mod nodes;
mod settings;
mod users;
mod versions;
pub(super) mod webhooks;
mod workspaces;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::Notify;

use super::audit::{AuditAction, AuditEntry, AuditTarget, INSERT_AUDIT};
use super::webhooks::Columns;
use super::webhooks::{WEBHOOK_TARGET, target_of};
use super::{Result, Storage, now_micros};
pub use backup::copy_sqlite;
use group::GroupWriter;

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
    /// Opens (creating if needed) the database file `file`, starting its writer thread.
    pub(super) fn open(file: PathBuf, wake: Arc<Notify>) -> anyhow::Result<Sqlite> {
        let writer = GroupWriter::start(&file)?;
        Ok(Sqlite {
            writer,
            readers: Arc::new(Readers::new(file.clone())),
            file,
            wake,
        })
    }

    /// Runs `work` in the writer's next group transaction; answers once it is durable.
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.writer.write(work).await
    }

    /// Runs `read` on a read connection, on this thread.
    fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.readers.read(read)
    }
}

#[async_trait::async_trait]
impl Storage for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

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

/// A webhook's workspace and audit target, read inside the writer's transaction.
fn webhook_target(conn: &Connection, webhook_id: &str) -> Result<Option<(i64, AuditTarget)>> {
    let row = conn
        .prepare_cached(WEBHOOK_TARGET)?
        .query_row([webhook_id], |r| {
            Ok((
                r.get::<_, i64>("workspace_id")?,
                r.get::<_, String>("name")?,
                r.get::<_, String>("model_name")?,
            ))
        })
        .optional()?;
    Ok(row.map(|(workspace_id, name, model)| (workspace_id, target_of(&model, webhook_id, &name))))
}

/// Writes an audit row about webhook `id` inside the writer's transaction (none when the
/// webhook is gone).
fn audit_webhook(
    conn: &Connection,
    id: &str,
    actor: &str,
    action: AuditAction,
    details: serde_json::Value,
) -> Result<()> {
    if let Some((workspace_id, target)) = webhook_target(conn, id)? {
        let entry = AuditEntry {
            workspace_id,
            actor: actor.to_owned(),
            action,
            target,
            details,
        };
        insert_audit(conn, &entry)?;
    }
    Ok(())
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, name: &str) -> Result<String> {
        Ok(self.get(name)?)
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>> {
        Ok(self.get(name)?)
    }
    fn int(&self, name: &str) -> Result<i64> {
        Ok(self.get(name)?)
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.get(name)?)
    }
}

/// The rows of a prepared query, each decoded by `decode` (a decoder shared by both
/// backends, over [`Columns`]).
fn decode_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&rusqlite::Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// Synchronous read connections to the SQLite file: run on the calling thread, a read of a
/// few indexed rows costs about ten microseconds, less than handing it to another thread and
/// back. Connections are opened on demand and at most `MAX_IDLE` are kept.
struct Readers {
    file: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

const MAX_IDLE: usize = 8;

impl Readers {
    fn new(file: PathBuf) -> Readers {
        Readers {
            file,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on an idle connection (or a new one).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let conn = match idle {
            Some(c) => c,
            None => open_reader(&self.file)?,
        };
        let result = f(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
        result
    }
}

fn open_reader(file: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(file)?;
    // A WAL reader waits only in rare cases (the log being recovered); it runs on a runtime
    // thread, so it waits briefly, then answers busy (a 503: try again).
    conn.busy_timeout(Duration::from_secs(1))?;
    // Reads only, whatever a bug might try.
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}
