//! The event outbox: one row per webhook trigger, written inside the transaction of the change
//! that caused it, and read back in an order no later commit can break.
//!
//! On SQLite that order is `seq`: one writer, so `seq` is commit order. On PostgreSQL
//! `seq` values are handed out before commit and concurrent writers commit in any order, so
//! the feed orders by `(tx_id, seq)` and shows only events below the [`FEED_HORIZON`]: see
//! [`Store::list_events`] and ARCHITECTURE.md, "PostgreSQL: events in commit order".

use sqlx::Row;

use super::{Backend, ModelRef, Store, now_micros};
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
pub(super) fn event_row(payload: &EventPayload) -> Result<(String, String), sqlx::Error> {
    let body = serde_json::to_string(payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    Ok((uuid::Uuid::now_v7().to_string(), body))
}

impl Store {
    /// Writes an event inside `tx`, the transaction of the change it reports, and its
    /// deliveries: one per enabled webhook of the model subscribed to its trigger. Answers
    /// how many deliveries it wrote (the worker needs waking only when some were).
    ///
    /// No lock: on PostgreSQL concurrent writers commit together, and the row's `tx_id`
    /// (`DEFAULT pg_current_xact_id()`, migration 0010) is what keeps the feed's order.
    pub(super) async fn insert_event(
        &self,
        tx: &mut sqlx::AnyConnection,
        model: &ModelRef,
        payload: &EventPayload,
    ) -> Result<usize, sqlx::Error> {
        let (id, body) = event_row(payload)?;
        let now = now_micros();
        let seq: i64 = sqlx::query(
            "INSERT INTO events (id, workspace_id, model_id, event_trigger, payload, occurred_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
        )
        .bind(id.as_str())
        .bind(model.workspace_id)
        .bind(model.model_id)
        .bind(payload.event_trigger.as_str())
        .bind(body)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("seq")?;
        self.fan_out(
            tx,
            model.model_id,
            seq,
            &id,
            payload.event_trigger.as_str(),
            now,
        )
        .await
    }

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
    pub async fn list_events(
        &self,
        workspace_id: i64,
        after: Option<EventCursor>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, sqlx::Error> {
        let rows = match self.backend {
            Backend::Sqlite => {
                sqlx::query(
                    "SELECT id, seq, NULL AS tx, payload, occurred_at FROM events \
                     WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(workspace_id)
                .bind(after.map_or(0, |c| c.seq))
                .bind(limit)
                .fetch_all(&self.read)
                .await?
            }
            Backend::Postgres => {
                let (tx, seq) = match after {
                    None => (0, 0),
                    Some(EventCursor { tx: Some(tx), seq }) => (tx, seq),
                    Some(EventCursor { tx: None, seq }) => {
                        (self.legacy_position(workspace_id, seq).await?, seq)
                    }
                };
                let sql = sqlx::AssertSqlSafe(format!(
                    "SELECT id, seq, tx_id::text::bigint AS tx, payload, occurred_at \
                     FROM events WHERE workspace_id = $1 \
                     AND (tx_id, seq) > ($2::text::xid8, $3) AND tx_id < {FEED_HORIZON} \
                     ORDER BY tx_id, seq LIMIT $4"
                ));
                sqlx::query(sql)
                    .bind(workspace_id)
                    .bind(tx.to_string())
                    .bind(seq)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                let payload: String = r.try_get("payload")?;
                Ok(EventRecord {
                    id: r.try_get("id")?,
                    seq: r.try_get("seq")?,
                    tx: r.try_get("tx")?,
                    payload: serde_json::from_str(&payload)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    occurred_at: r.try_get("occurred_at")?,
                })
            })
            .collect()
    }

    /// PostgreSQL: the `tx_id` of a cursor that holds only a `seq` (handed out before
    /// migration 0010, while `seq` was commit order), read from its event. Such an event
    /// was written before the migration, so it and every event the reader had not yet seen
    /// from then have the migration's `tx_id` or a later one: `(tx_id, seq)` continues where
    /// `seq` left off. When the event is gone (its workspace was deleted; the cursor names
    /// nothing of this one) the answer is 0: the reader starts again from the workspace's
    /// first event, seeing some twice rather than missing any.
    async fn legacy_position(&self, workspace_id: i64, seq: i64) -> Result<i64, sqlx::Error> {
        let row = sqlx::query(
            "SELECT tx_id::text::bigint AS tx FROM events WHERE seq = $1 AND workspace_id = $2",
        )
        .bind(seq)
        .bind(workspace_id)
        .fetch_optional(&self.read)
        .await?;
        match row {
            Some(r) => r.try_get("tx"),
            None => Ok(0),
        }
    }
}
