//! Node heartbeats: the `nodes` table (migration 0011). Every node that runs the delivery
//! worker keeps a row with its last heartbeat; the others delete the row of a node silent for
//! `node_dead_after` and release its delivery leases in the same transaction, so its
//! deliveries are claimed and sent again without waiting for the leases to end, and stop
//! counting against their webhooks' in-flight limit. What keeps a node that was only paused
//! from recording over the new owner is the lease token (see
//! [`super::Deliveries::record_attempt`]).
//!
//! The interface both backends implement, and the query text, which both dialects share.

use async_trait::async_trait;

use super::Result;

/// A node's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub name: String,
    pub started_at: i64,
    pub last_beat_at: i64,
}

/// A node another node declared dead (see [`Nodes::reap_dead_nodes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadNode {
    pub name: String,
    pub last_beat_at: i64,
    /// How many of its delivery leases were released.
    pub released: u64,
}

/// The heartbeats, on either database.
#[async_trait]
pub trait Nodes {
    /// Registers `node` as running, with a heartbeat at `now`, replacing the row an earlier
    /// run under the same name left.
    async fn register_node(&self, node: &str, now: i64) -> Result<()>;

    /// Moves `node`'s heartbeat to `now`. Answers false when the node has no row: another
    /// node declared it dead (and released its leases) meanwhile, or it never registered.
    async fn beat(&self, node: &str, now: i64) -> Result<bool>;

    /// Declares dead every node but `me` whose last heartbeat is older than `dead_before`:
    /// deletes its row and releases its pending deliveries' leases, in one transaction per
    /// node. Nodes doing this at the same time declare each one dead once (the delete is
    /// conditional); a node that beats first is not declared dead.
    async fn reap_dead_nodes(&self, me: &str, dead_before: i64) -> Result<Vec<DeadNode>>;

    /// Deletes `node`'s row: it stopped cleanly (after releasing its leases).
    async fn forget_node(&self, node: &str) -> Result<()>;

    /// The nodes that have a row, by name.
    async fn nodes(&self) -> Result<Vec<NodeRecord>>;
}

pub(super) const REGISTER_NODE: &str = "INSERT INTO nodes (name, started_at, last_beat_at) \
     VALUES ($1, $2, $2) ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at, \
     last_beat_at = excluded.last_beat_at";

/// `$1` the time, `$2` the node.
pub(super) const BEAT: &str = "UPDATE nodes SET last_beat_at = $1 WHERE name = $2";

pub(super) const SILENT_NODES: &str =
    "SELECT name, last_beat_at FROM nodes WHERE last_beat_at < $1 AND name <> $2";

/// Declares a node dead, unless it beat since (or another node did it first).
pub(super) const DELETE_SILENT_NODE: &str =
    "DELETE FROM nodes WHERE name = $1 AND last_beat_at < $2";

pub(super) const FORGET_NODE: &str = "DELETE FROM nodes WHERE name = $1";

pub(super) const LIST_NODES: &str =
    "SELECT name, started_at, last_beat_at FROM nodes ORDER BY name";

#[cfg(test)]
pub(super) const SHARED_SQL: &[&str] = &[
    REGISTER_NODE,
    BEAT,
    SILENT_NODES,
    DELETE_SILENT_NODE,
    FORGET_NODE,
    LIST_NODES,
];
