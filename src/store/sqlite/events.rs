//! [`Events`] on SQLite, and `insert_event`, the outbox write with its fan-out, run inside
//! the writer's transaction of the change it reports.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::Sqlite;
use crate::domain::EventPayload;
use crate::store::deliveries::new_delivery_id;
use crate::store::events::{EventCursor, EventRecord, Events, INSERT_EVENT, event_row};
use crate::store::webhooks::subscribed;
use crate::store::{ModelRef, Result, now_micros};

/// The enabled webhooks of a model: fan-out skips disabled ones (one writer, so nothing falls
/// between this read and an enable: see `enable_webhook`).
const ENABLED_WEBHOOKS: &str =
    "SELECT id, triggers FROM webhooks WHERE model_id = $1 AND enabled = 1";

const INSERT_DELIVERY: &str = "INSERT INTO deliveries (id, webhook_id, event_seq, event_id, event_trigger, \
     state, next_attempt_at, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $6)";

/// The feed: by `seq`, which is commit order (one writer).
const LIST_EVENTS: &str = "SELECT id, seq, payload, occurred_at FROM events \
     WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// Writes an event inside the writer's transaction of the change it reports, and its
/// deliveries: one per enabled webhook of the model subscribed to its trigger. Answers how
/// many deliveries it wrote (the worker needs waking only when some were).
pub(super) fn insert_event(
    conn: &Connection,
    model: &ModelRef,
    payload: &EventPayload,
) -> Result<usize> {
    let (id, body) = event_row(payload)?;
    let now = now_micros();
    let trigger = payload.event_trigger.as_str();
    let seq: i64 = conn.prepare_cached(INSERT_EVENT)?.query_row(
        params![id, model.workspace_id, model.model_id, trigger, body, now],
        |r| r.get(0),
    )?;
    let webhooks: Vec<(String, String)> = conn
        .prepare_cached(ENABLED_WEBHOOKS)?
        .query_map([model.model_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut insert = conn.prepare_cached(INSERT_DELIVERY)?;
    let mut n = 0;
    for (webhook_id, triggers) in &webhooks {
        if subscribed(triggers, payload.event_trigger)? {
            insert.execute(params![
                new_delivery_id(),
                webhook_id,
                seq,
                id,
                trigger,
                now
            ])?;
            n += 1;
        }
    }
    Ok(n)
}

#[async_trait]
impl Events for Sqlite {
    async fn list_events(
        &self,
        workspace_id: i64,
        after: Option<EventCursor>,
        limit: i64,
    ) -> Result<Vec<EventRecord>> {
        let after = after.map_or(0, |c| c.seq);
        let rows: Vec<(String, i64, String, i64)> = self.read(|conn| {
            let mut stmt = conn.prepare_cached(LIST_EVENTS)?;
            let rows = stmt.query_map(params![workspace_id, after, limit], |r| {
                Ok((
                    r.get("id")?,
                    r.get("seq")?,
                    r.get("payload")?,
                    r.get("occurred_at")?,
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        rows.into_iter()
            .map(|(id, seq, payload, occurred_at)| {
                Ok(EventRecord {
                    id,
                    seq,
                    tx: None,
                    payload: serde_json::from_str(&payload)?,
                    occurred_at,
                })
            })
            .collect()
    }
}
