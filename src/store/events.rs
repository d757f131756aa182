//! The event outbox: one row per webhook trigger, written inside the transaction of the change
//! that caused it, and read back in an order no later commit can break.
//!
//! On SQLite that order is `seq`: one writer, so `seq` is commit order. On PostgreSQL
//! `seq` values are handed out before commit and concurrent writers commit in any order, so
//! the feed orders by `(tx_id, seq)` and shows only events below the [`FEED_HORIZON`]: see
//! [`Events::list_events`] and ARCHITECTURE.md, "PostgreSQL: events in commit order".
//!
//! This is the interface, the values it answers and the query text both dialects share;
//! each backend's `events.rs` holds its `insert_event` (called inside the transaction of the
//! change, with the fan-out to deliveries) and its feed read.

use async_trait::async_trait;

use super::Result;
use crate::domain::EventPayload;

/// A stored event.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub id: String,
    pub seq: i64,
    /// PostgreSQL: the id of the transaction that wrote it (`events.tx_id`, an `xid8`, which
    /// stays far below `i64::MAX`); `None` on SQLite.
    pub tx: Option<i64>,
    pub payload: EventPayload,
    pub occurred_at: i64,
}

/// Where a page of events starts: after this position. On SQLite the position is `seq`; on
/// PostgreSQL it is `(tx, seq)`, and a cursor without `tx` (handed out before migration 0010)
/// is placed by looking its event up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    pub tx: Option<i64>,
    pub seq: i64,
}

/// PostgreSQL: the feed horizon, an `xid8` below which every transaction *of this database*
/// has finished (committed or rolled back), so the set of visible events with a smaller
/// `tx_id` can never grow again.
///
/// It is the oldest transaction id the statement's snapshot still counts as running
/// (`pg_snapshot_xip`), or the snapshot's `xmax` when there is none, skipping the ids that
/// `pg_stat_activity` shows belong to a session of another database: those cannot write
/// this database's events, and the plain snapshot `xmin` is cluster-wide, so one open
/// transaction in any database would hold the feed back. Skipping only ids positively seen
/// in another database is safe whatever the timing: a session's database never changes.
/// An id not found there (finished meanwhile, a prepared transaction) counts as ours, which
/// can only delay events, never hide one for good. `pg_stat_activity` shows every session's
/// `backend_xid` to every role.
///
/// The functions are `STABLE`: they see the snapshot of the statement this is part of.
pub(super) const FEED_HORIZON: &str = "LEAST(pg_snapshot_xmax(pg_current_snapshot()), \
     (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x WHERE NOT EXISTS ( \
       SELECT 1 FROM pg_stat_activity a WHERE a.backend_xid = x::xid \
       AND a.datname IS DISTINCT FROM current_database())))";

/// A new event's id and its stored payload.
pub(super) fn event_row(payload: &EventPayload) -> Result<(String, String)> {
    let body = serde_json::to_string(payload)?;
    Ok((uuid::Uuid::now_v7().to_string(), body))
}

/// The event feed, on either database.
#[async_trait]
pub trait Events {
    /// Events of a workspace after `after`, oldest first, in an order no later commit can
    /// break: a reader that pages on with the last position it saw never misses an event.
    ///
    /// SQLite: by `seq`, which is commit order (one writer).
    ///
    /// PostgreSQL: by `(tx_id, seq)`, and only events with `tx_id` below [`FEED_HORIZON`].
    /// Every transaction of this database below the horizon has finished, so every event it
    /// wrote is visible to this statement. An event this statement does not see (not yet
    /// committed, or not yet written) therefore has a `tx_id` at or above the horizon, above
    /// every position of this page: whenever it commits, it lands after them. An event is
    /// therefore shown once the oldest transaction still running in this database when it
    /// committed has finished: usually at once; a long-running or idle-in-transaction
    /// session that holds a transaction id delays the feed (never webhooks, whose deliveries
    /// are written in the event's own transaction) and loses nothing.
    async fn list_events(
        &self,
        workspace_id: i64,
        after: Option<EventCursor>,
        limit: i64,
    ) -> Result<Vec<EventRecord>>;
}

/// The outbox write: `$1` the id, `$2` the workspace, `$3` the model, `$4` the trigger, `$5`
/// the payload, `$6` the time. No lock: on PostgreSQL concurrent writers commit together,
/// and the row's `tx_id` (`DEFAULT pg_current_xact_id()`, migration 0010) is what keeps the
/// feed's order.
pub(super) const INSERT_EVENT: &str = "INSERT INTO events (id, workspace_id, model_id, event_trigger, payload, occurred_at) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq";

#[cfg(test)]
pub(super) const SHARED_SQL: &[&str] = &[INSERT_EVENT];
