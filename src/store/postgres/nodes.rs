//! [`Nodes`] on PostgreSQL, where several nodes share the database.

use async_trait::async_trait;
use sqlx::Row;

use super::Postgres;
use crate::store::Result;
use crate::store::deliveries::RELEASE_LEASES;
use crate::store::nodes::{
    BEAT, DELETE_SILENT_NODE, DeadNode, FORGET_NODE, LIST_NODES, NodeRecord, Nodes, REGISTER_NODE,
    SILENT_NODES,
};

#[async_trait]
impl Nodes for Postgres {
    async fn register_node(&self, node: &str, now: i64) -> Result<()> {
        sqlx::query(REGISTER_NODE)
            .bind(node)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn beat(&self, node: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(BEAT)
            .bind(now)
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn reap_dead_nodes(&self, me: &str, dead_before: i64) -> Result<Vec<DeadNode>> {
        let rows = sqlx::query(SILENT_NODES)
            .bind(dead_before)
            .bind(me)
            .fetch_all(&self.pool)
            .await?;
        let mut dead = Vec::new();
        for row in rows {
            let name: String = row.try_get("name")?;
            let last_beat_at: i64 = row.try_get("last_beat_at")?;
            let mut tx = self.pool.begin().await?;
            // A paused node may sit inside a transaction holding a row this one needs: fail
            // (and try again at the next beat) rather than hang this node's heartbeat
            // behind it.
            sqlx::query("SET LOCAL lock_timeout = '2s'")
                .execute(&mut *tx)
                .await?;
            let gone = sqlx::query(DELETE_SILENT_NODE)
                .bind(name.as_str())
                .bind(dead_before)
                .execute(&mut *tx)
                .await?;
            if gone.rows_affected() == 0 {
                // It beat since, or another node declared it dead first.
                continue;
            }
            let released = sqlx::query(RELEASE_LEASES)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            dead.push(DeadNode {
                name,
                last_beat_at,
                released,
            });
        }
        Ok(dead)
    }

    async fn forget_node(&self, node: &str) -> Result<()> {
        sqlx::query(FORGET_NODE)
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows = sqlx::query(LIST_NODES).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(NodeRecord {
                    name: r.try_get("name")?,
                    started_at: r.try_get("started_at")?,
                    last_beat_at: r.try_get("last_beat_at")?,
                })
            })
            .collect()
    }
}
