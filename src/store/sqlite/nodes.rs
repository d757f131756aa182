//! [`Nodes`] on SQLite. One server holds the data directory's lock, so there is never a
//! second node to declare dead; the heartbeats still run, the same code on both backends.

use async_trait::async_trait;
use rusqlite::params;

use super::{Sqlite, decode_all};
use crate::store::Result;
use crate::store::deliveries::RELEASE_LEASES;
use crate::store::nodes::{
    BEAT, DELETE_SILENT_NODE, DeadNode, FORGET_NODE, LIST_NODES, NodeRecord, Nodes, REGISTER_NODE,
    SILENT_NODES,
};
use crate::store::webhooks::Columns;

#[async_trait]
impl Nodes for Sqlite {
    async fn register_node(&self, node: &str, now: i64) -> Result<()> {
        let node = node.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(REGISTER_NODE)?
                .execute(params![node, now])?;
            Ok(())
        })
        .await
    }

    async fn beat(&self, node: &str, now: i64) -> Result<bool> {
        let node = node.to_owned();
        self.write(move |conn| Ok(conn.prepare_cached(BEAT)?.execute(params![now, node])? > 0))
            .await
    }

    async fn reap_dead_nodes(&self, me: &str, dead_before: i64) -> Result<Vec<DeadNode>> {
        let me = me.to_owned();
        // One job: the writer is alone, so the read and the deletes see the same rows.
        self.write(move |conn| {
            let silent: Vec<(String, i64)> = conn
                .prepare_cached(SILENT_NODES)?
                .query_map(params![dead_before, me], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut dead = Vec::new();
            for (name, last_beat_at) in silent {
                if conn
                    .prepare_cached(DELETE_SILENT_NODE)?
                    .execute(params![name, dead_before])?
                    == 0
                {
                    continue;
                }
                let released = conn.prepare_cached(RELEASE_LEASES)?.execute([&name])? as u64;
                dead.push(DeadNode {
                    name,
                    last_beat_at,
                    released,
                });
            }
            Ok(dead)
        })
        .await
    }

    async fn forget_node(&self, node: &str) -> Result<()> {
        let node = node.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(FORGET_NODE)?.execute([node])?;
            Ok(())
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        self.read(|conn| {
            decode_all(conn, LIST_NODES, [], |r| {
                Ok(NodeRecord {
                    name: r.text("name")?,
                    started_at: r.int("started_at")?,
                    last_beat_at: r.int("last_beat_at")?,
                })
            })
        })
    }
}
