//! The PostgreSQL backend: a pool of connections, the server grouping concurrent commits
//! itself.
//!
//! The areas of the store interface move here from the shared `sqlx` code one by one; those
//! not yet here are still served by `Store`'s own methods (see `store/mod.rs`).

mod audit;
mod events;
mod models;
mod names;
mod settings;
mod users;
mod versions;
mod workspaces;

use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::Notify;

use super::audit::{AuditEntry, INSERT_AUDIT};
use super::{Result, Storage, now_micros};

/// The PostgreSQL implementation of [`Storage`].
pub struct Postgres {
    pool: AnyPool,
    /// Wakes this process's delivery worker after a commit that wrote deliveries (other
    /// nodes hear of it through `pg_notify`, see `events::fan_out`).
    wake: Arc<Notify>,
}

impl Postgres {
    pub(super) fn new(pool: AnyPool, wake: Arc<Notify>) -> Postgres {
        Postgres { pool, wake }
    }
}

#[async_trait::async_trait]
impl Storage for Postgres {
    async fn apply_migrations(&self) -> anyhow::Result<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }
}

/// Writes `entry` inside `tx`, the transaction of the change it records.
async fn insert_audit(tx: &mut sqlx::AnyConnection, entry: &AuditEntry) -> Result<()> {
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
