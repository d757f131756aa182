//! Node heartbeats: the `nodes` table (migration 0011). Every node that runs the delivery
//! worker keeps a row with its last heartbeat; the others delete the row of a node silent for
//! `node_dead_after` and release its delivery leases in the same transaction, so its
//! deliveries are claimed and sent again without waiting for the leases to end, and stop
//! counting against their webhooks' in-flight limit. What keeps a node that was only paused
//! from recording over the new owner is the lease token (see `Store::record_attempt`).

use sqlx::Row;

use super::{Backend, Store};

/// A node's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub name: String,
    pub started_at: i64,
    pub last_beat_at: i64,
}

/// A node another node declared dead (see [`Store::reap_dead_nodes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadNode {
    pub name: String,
    pub last_beat_at: i64,
    /// How many of its delivery leases were released.
    pub released: u64,
}

impl Store {
    /// Registers `node` as running, with a heartbeat at `now`, replacing the row an earlier
    /// run under the same name left.
    pub async fn register_node(&self, node: &str, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO nodes (name, started_at, last_beat_at) VALUES ($1, $2, $2) \
             ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at, \
             last_beat_at = excluded.last_beat_at",
        )
        .bind(node)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Moves `node`'s heartbeat to `now`. Answers false when the node has no row: another
    /// node declared it dead (and released its leases) meanwhile, or it never registered.
    pub async fn beat(&self, node: &str, now: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("UPDATE nodes SET last_beat_at = $2 WHERE name = $1")
            .bind(node)
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Declares dead every node but `me` whose last heartbeat is older than `dead_before`:
    /// deletes its row and releases its pending deliveries' leases, in one transaction per
    /// node. Nodes doing this at the same time declare each one dead once (the delete is
    /// conditional); a node that beats first is not declared dead.
    pub async fn reap_dead_nodes(
        &self,
        me: &str,
        dead_before: i64,
    ) -> Result<Vec<DeadNode>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT name, last_beat_at FROM nodes WHERE last_beat_at < $1 AND name <> $2",
        )
        .bind(dead_before)
        .bind(me)
        .fetch_all(&self.read)
        .await?;
        let mut dead = Vec::new();
        for row in rows {
            let name: String = row.try_get("name")?;
            let last_beat_at: i64 = row.try_get("last_beat_at")?;
            let node = name.clone();
            let postgres = self.backend == Backend::Postgres;
            let released = self
                .write_tx(move |conn| {
                    Box::pin(async move {
                        if postgres {
                            // A paused node may sit inside a transaction holding a row
                            // this one needs: fail (and try again at the next beat)
                            // rather than hang this node's heartbeat behind it.
                            sqlx::query("SET LOCAL lock_timeout = '2s'")
                                .execute(&mut *conn)
                                .await?;
                        }
                        let gone =
                            sqlx::query("DELETE FROM nodes WHERE name = $1 AND last_beat_at < $2")
                                .bind(node.as_str())
                                .bind(dead_before)
                                .execute(&mut *conn)
                                .await?;
                        if gone.rows_affected() == 0 {
                            // It beat since, or another node declared it dead first.
                            return Ok(None);
                        }
                        let released = sqlx::query(
                            "UPDATE deliveries SET locked_until = NULL, locked_by = NULL \
                             WHERE state = 'pending' AND locked_until IS NOT NULL \
                             AND locked_by = $1",
                        )
                        .bind(node.as_str())
                        .execute(&mut *conn)
                        .await?;
                        Ok(Some(released.rows_affected()))
                    })
                })
                .await?;
            if let Some(released) = released {
                dead.push(DeadNode {
                    name,
                    last_beat_at,
                    released,
                });
            }
        }
        Ok(dead)
    }

    /// Deletes `node`'s row: it stopped cleanly (after releasing its leases).
    pub async fn forget_node(&self, node: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM nodes WHERE name = $1")
            .bind(node)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The nodes that have a row, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, sqlx::Error> {
        let rows = sqlx::query("SELECT name, started_at, last_beat_at FROM nodes ORDER BY name")
            .fetch_all(&self.read)
            .await?;
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
