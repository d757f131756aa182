//! The event outbox: one row per webhook trigger, written inside the transaction of the change
//! that caused it, and read back in commit order.

use sqlx::Row;

use super::{Backend, ModelRef, Store, now_micros};
use crate::domain::EventPayload;

/// A stored event.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub id: String,
    pub seq: i64,
    pub tx_order: i64,
    pub payload: EventPayload,
    pub occurred_at: i64,
}

/// Where a page of events starts: after this (transaction order, sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    pub tx_order: i64,
    pub seq: i64,
}

impl Store {
    /// Writes an event inside `tx`, the transaction of the change it reports.
    pub(super) async fn insert_event(
        &self,
        tx: &mut sqlx::AnyConnection,
        model: &ModelRef,
        payload: &EventPayload,
    ) -> Result<String, sqlx::Error> {
        let id = uuid::Uuid::now_v7().to_string();
        let body = serde_json::to_string(payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(
            "INSERT INTO events (id, workspace_id, model_id, event_trigger, payload, occurred_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.as_str())
        .bind(model.workspace_id)
        .bind(model.model_id)
        .bind(payload.event_trigger.as_str())
        .bind(body)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        Ok(id)
    }

    /// Events of a workspace after `after`, in commit order.
    ///
    /// On SQLite there is one writer, so `seq` is commit order. On PostgreSQL identity values
    /// are handed out before commit, so a later `seq` can become visible first; there each
    /// event carries its transaction id (`tx_order`) and only events whose transaction is older
    /// than every transaction still in progress are returned. An event is therefore never
    /// returned after a later-ordered one, and a reader that keeps its cursor misses nothing.
    pub async fn list_events(
        &self,
        workspace_id: i64,
        after: Option<EventCursor>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, sqlx::Error> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT id, seq, tx_order, payload, occurred_at FROM events \
                 WHERE workspace_id = $1 AND (tx_order > $2 OR (tx_order = $2 AND seq > $3)) \
                 ORDER BY tx_order, seq LIMIT $4"
            }
            Backend::Postgres => {
                "SELECT id, seq, tx_order, payload, occurred_at FROM events \
                 WHERE workspace_id = $1 AND (tx_order > $2 OR (tx_order = $2 AND seq > $3)) \
                 AND tx_order < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
                 ORDER BY tx_order, seq LIMIT $4"
            }
        };
        let after = after.unwrap_or(EventCursor {
            tx_order: -1,
            seq: -1,
        });
        let rows = sqlx::query(sql)
            .bind(workspace_id)
            .bind(after.tx_order)
            .bind(after.seq)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let payload: String = r.try_get("payload")?;
                Ok(EventRecord {
                    id: r.try_get("id")?,
                    seq: r.try_get("seq")?,
                    tx_order: r.try_get("tx_order")?,
                    payload: serde_json::from_str(&payload)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    occurred_at: r.try_get("occurred_at")?,
                })
            })
            .collect()
    }
}
