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
    pub payload: EventPayload,
    pub occurred_at: i64,
}

/// Where a page of events starts: after this sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    pub seq: i64,
}

/// A new event's id and its stored payload.
pub(super) fn event_row(payload: &EventPayload) -> Result<(String, String), sqlx::Error> {
    let body = serde_json::to_string(payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    Ok((uuid::Uuid::now_v7().to_string(), body))
}

impl Store {
    /// Writes an event inside `tx`, the transaction of the change it reports, and its
    /// deliveries: one per enabled webhook of the model subscribed to its trigger. Answers
    /// how many deliveries it wrote (the worker needs waking only when some were).
    pub(super) async fn insert_event(
        &self,
        tx: &mut sqlx::AnyConnection,
        model: &ModelRef,
        payload: &EventPayload,
    ) -> Result<usize, sqlx::Error> {
        let (id, body) = event_row(payload)?;
        if self.backend == Backend::Postgres {
            // Keep `seq` in commit order: identity values are handed out before commit, so two
            // concurrent writers could otherwise commit 6 before 5 and a reader that had moved
            // past 6 would never see 5. This lock, held until commit, makes event writers take
            // turns from here on (SQLite has one writer anyway).
            sqlx::query("SELECT pg_advisory_xact_lock(7345298413)")
                .execute(&mut *tx)
                .await?;
        }
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

    /// Events of a workspace after `after`, in commit order (`seq` is commit order: see
    /// [`Store::insert_event`]).
    pub async fn list_events(
        &self,
        workspace_id: i64,
        after: Option<EventCursor>,
        limit: i64,
    ) -> Result<Vec<EventRecord>, sqlx::Error> {
        let after = after.map_or(0, |c| c.seq);
        let rows = sqlx::query(
            "SELECT id, seq, payload, occurred_at FROM events \
             WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(workspace_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let payload: String = r.try_get("payload")?;
                Ok(EventRecord {
                    id: r.try_get("id")?,
                    seq: r.try_get("seq")?,
                    payload: serde_json::from_str(&payload)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    occurred_at: r.try_get("occurred_at")?,
                })
            })
            .collect()
    }
}
