//! The PostgreSQL backend: a pool of connections, the server grouping concurrent commits
//! itself. Several nodes may share the database: row locks (`FOR UPDATE`, `SKIP LOCKED`)
//! where two nodes could meet, `pg_notify` to wake the others' workers.

mod audit;
mod deliveries;
mod events;
mod models;
mod names;
mod nodes;
pub(crate) mod probe;
mod settings;
mod users;
mod versions;
mod webhooks;
mod workspaces;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::Notify;

use super::audit::{AuditAction, AuditEntry, AuditTarget, INSERT_AUDIT};
use super::webhooks::{Columns, WEBHOOK_TARGET, target_of};
use super::{Result, Storage, now_micros};

/// The PostgreSQL implementation of [`Storage`].
pub struct Postgres {
    pool: PgPool,
    /// Where the pool connects: the `LISTEN` connection is its own, outside the pool.
    url: String,
    /// Records successful attempts in batches (see `deliveries.rs`).
    batcher: deliveries::AttemptBatcher,
    /// Wakes this process's delivery worker after a commit that wrote deliveries.
    wake: Arc<Notify>,
    /// Tells the other nodes (see `events::Notifier`).
    notifier: events::Notifier,
}

impl Postgres {
    /// After a commit that wrote `deliveries` due deliveries: wakes this process's worker
    /// and tells the other nodes'.
    fn woke(&self, deliveries: impl TryInto<u64>) {
        if deliveries.try_into().unwrap_or(1) > 0 {
            self.wake.notify_one();
            self.notifier.ask();
        }
    }

    /// Connects to PostgreSQL at `url`. A request that waits longer than `acquire_timeout`
    /// for a connection (the database is away, or the pool is exhausted) fails as
    /// unavailable, which the API answers with 503.
    pub(super) async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Postgres> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect(url)
            .await
            .context("cannot connect to PostgreSQL")?;
        Ok(Postgres {
            batcher: deliveries::AttemptBatcher::start(pool.clone()),
            notifier: events::Notifier::start(pool.clone()),
            pool,
            url: url.to_owned(),
            wake,
        })
    }
}

#[async_trait::async_trait]
impl Storage for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn apply_migrations(&self) -> anyhow::Result<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    fn listen_for_deliveries(&self, stop: tokio::sync::watch::Receiver<bool>) {
        tokio::spawn(events::listen_for_deliveries(
            self.url.clone(),
            self.wake.clone(),
            stop,
        ));
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Writes `entry` inside `tx`, the transaction of the change it records.
async fn insert_audit(tx: &mut PgConnection, entry: &AuditEntry) -> Result<()> {
    sqlx::query(INSERT_AUDIT)
        .bind(entry.workspace_id)
        .bind(now_micros())
        .bind(entry.actor.as_str())
        .bind(entry.action.as_str())
        .bind(entry.target.model.as_deref())
        .bind(entry.target.version.as_deref())
        .bind(entry.target.webhook_id.as_deref())
        .bind(entry.target.webhook_name.as_deref())
        .bind(serde_json::to_string(&entry.details)?)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A webhook's workspace and audit target, read inside `tx`.
async fn webhook_target(
    tx: &mut PgConnection,
    webhook_id: &str,
) -> Result<Option<(i64, AuditTarget)>> {
    let row = sqlx::query(WEBHOOK_TARGET)
        .bind(webhook_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let name: String = row.try_get("name")?;
    let model: String = row.try_get("model_name")?;
    Ok(Some((
        row.try_get("workspace_id")?,
        target_of(&model, webhook_id, &name),
    )))
}

/// Writes an audit row about webhook `id` inside `tx` (none when the webhook is gone).
async fn audit_webhook(
    tx: &mut PgConnection,
    id: &str,
    actor: &str,
    action: AuditAction,
    details: serde_json::Value,
) -> Result<()> {
    if let Some((workspace_id, target)) = webhook_target(tx, id).await? {
        let entry = AuditEntry {
            workspace_id,
            actor: actor.to_owned(),
            action,
            target,
            details,
        };
        insert_audit(tx, &entry).await?;
    }
    Ok(())
}

impl Columns for PgRow {
    fn text(&self, name: &str) -> Result<String> {
        Ok(self.try_get(name)?)
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>> {
        Ok(self.try_get(name)?)
    }
    fn int(&self, name: &str) -> Result<i64> {
        Ok(self.try_get(name)?)
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.try_get(name)?)
    }
}
