//! [`Events`] on PostgreSQL (the feed in commit order, below [`FEED_HORIZON`]);
//! `insert_event` with its `fan_out`, run inside the transaction of the change they report;
//! and the notification that tells every node's worker deliveries are due, sent and heard.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::Notify;

use super::Postgres;
use crate::domain::{EventPayload, EventTrigger};
use crate::store::deliveries::new_delivery_id;
use crate::store::events::{
    EventCursor, EventRecord, Events, FEED_HORIZON, INSERT_EVENT, event_row,
};
use crate::store::webhooks::subscribed;
use crate::store::{ModelRef, Result, now_micros};

/// Writes an event inside `tx`, the transaction of the change it reports, and its
/// deliveries: one per enabled webhook of the model subscribed to its trigger. Answers how
/// many deliveries it wrote (the worker needs waking only when some were).
///
/// No lock: concurrent writers commit together, and the row's `tx_id`
/// (`DEFAULT pg_current_xact_id()`, migration 0010) is what keeps the feed's order.
pub(super) async fn insert_event(
    tx: &mut PgConnection,
    model: &ModelRef,
    payload: &EventPayload,
) -> Result<usize> {
    let (id, body) = event_row(payload)?;
    let now = now_micros();
    let seq: i64 = sqlx::query(INSERT_EVENT)
        .bind(id.as_str())
        .bind(model.workspace_id)
        .bind(model.model_id)
        .bind(payload.event_trigger.as_str())
        .bind(body)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("seq")?;
    fan_out(tx, model.model_id, seq, &id, payload.event_trigger, now).await
}

/// Writes one delivery per enabled webhook of the model subscribed to `trigger`, inside the
/// event's transaction `tx`. Answers how many.
///
/// A disabled webhook subscribed to the trigger is read again with `FOR SHARE`, held until
/// this event commits. `enable_webhook` starts by locking the webhook's row `FOR NO KEY
/// UPDATE`, which conflicts with it, so either this event locked first and has committed
/// before `enable_webhook` looks for missed events (and is found there), or
/// `enable_webhook` locked first and this read waits for it and sees the webhook enabled
/// (and writes its delivery). Without it an event could see the webhook disabled, commit
/// after the enable had looked, and be sent never. (SQLite has one writer: nothing falls
/// between.) Only events of models with such a webhook pay for the lock; enabled webhooks
/// are locked `FOR KEY SHARE` by the deliveries' foreign key as before, which conflicts with
/// nothing the hot path does.
pub(super) async fn fan_out(
    tx: &mut PgConnection,
    model_id: i64,
    event_seq: i64,
    event_id: &str,
    trigger: EventTrigger,
    now: i64,
) -> Result<usize> {
    let rows =
        sqlx::query("SELECT id, triggers, enabled FROM webhooks WHERE model_id = $1 ORDER BY id")
            .bind(model_id)
            .fetch_all(&mut *tx)
            .await?;
    let mut targets = Vec::with_capacity(rows.len());
    for row in &rows {
        if !subscribed(&row.try_get::<String, _>("triggers")?, trigger)? {
            continue;
        }
        let id: String = row.try_get("id")?;
        if row.try_get::<i64, _>("enabled")? == 0 {
            // Read it again, locked.
            let now_row =
                sqlx::query("SELECT triggers, enabled FROM webhooks WHERE id = $1 FOR SHARE")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(now_row) = now_row else { continue };
            if now_row.try_get::<i64, _>("enabled")? == 0
                || !subscribed(&now_row.try_get::<String, _>("triggers")?, trigger)?
            {
                continue;
            }
        }
        targets.push(id);
    }
    let n = targets.len();
    // One multi-row INSERT per 100 webhooks rather than one statement each.
    for chunk in targets.chunks(100) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = 5 + 2 * i;
                format!("(${p}, ${}, $1, $2, $3, 'pending', $4, $4, $4)", p + 1)
            })
            .collect();
        let text = format!(
            "INSERT INTO deliveries (id, webhook_id, event_seq, event_id, event_trigger, \
             state, next_attempt_at, created_at, updated_at) VALUES {}",
            rows.join(", ")
        );
        // The text holds placeholders only; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(text))
            .bind(event_seq)
            .bind(event_id)
            .bind(trigger.as_str())
            .bind(now);
        for webhook_id in chunk {
            q = q.bind(new_delivery_id()).bind(webhook_id.as_str());
        }
        q.execute(&mut *tx).await?;
    }
    // (The other nodes are told after the commit: see `Notifier`.)
    Ok(n)
}

#[async_trait]
impl Events for Postgres {
    /// By `(tx_id, seq)`, and only events with `tx_id` below [`FEED_HORIZON`]: see
    /// [`Events::list_events`].
    async fn list_events(
        &self,
        workspace_id: i64,
        after: Option<EventCursor>,
        limit: i64,
    ) -> Result<Vec<EventRecord>> {
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
        let rows = sqlx::query(sql)
            .bind(workspace_id)
            .bind(tx.to_string())
            .bind(seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let payload: String = r.try_get("payload")?;
                Ok(EventRecord {
                    id: r.try_get("id")?,
                    seq: r.try_get("seq")?,
                    tx: r.try_get("tx")?,
                    payload: serde_json::from_str(&payload)?,
                    occurred_at: r.try_get("occurred_at")?,
                })
            })
            .collect()
    }
}

impl Postgres {
    /// The `tx_id` of a cursor that holds only a `seq` (handed out before migration 0010,
    /// while `seq` was commit order), read from its event. Such an event was written before
    /// the migration, so it and every event the reader had not yet seen from then have the
    /// migration's `tx_id` or a later one: `(tx_id, seq)` continues where `seq` left off.
    /// When the event is gone (its workspace was deleted; the cursor names nothing of this
    /// one) the answer is 0: the reader starts again from the workspace's first event,
    /// seeing some twice rather than missing any.
    async fn legacy_position(&self, workspace_id: i64, seq: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT tx_id::text::bigint AS tx FROM events WHERE seq = $1 AND workspace_id = $2",
        )
        .bind(seq)
        .bind(workspace_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(r.try_get("tx")?),
            None => Ok(0),
        }
    }
}

/// Tells the other nodes' workers that deliveries are due (`NOTIFY berth_deliveries`, which
/// [`listen_for_deliveries`] hears), after the commit that wrote them: one notification for
/// however many commits asked meanwhile. Not inside the writing transaction: PostgreSQL
/// makes the commits of notifying transactions take turns (a lock held from before the
/// commit until after its WAL flush), which would make every event writer wait for the
/// others' flushes again. A notification lost (the database away, the process killed between
/// the commit and the notification) costs the other nodes at most their idle poll.
pub(super) struct Notifier {
    asked: Arc<Notify>,
}

impl Notifier {
    /// Starts the task that sends the notifications, on `pool`; it ends with the process.
    pub(super) fn start(pool: PgPool) -> Notifier {
        let asked = Arc::new(Notify::new());
        let waiting = asked.clone();
        tokio::spawn(async move {
            loop {
                waiting.notified().await;
                if let Err(e) = sqlx::query("SELECT pg_notify('berth_deliveries', '')")
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(error = %e, "cannot tell the other nodes deliveries are due");
                }
            }
        });
        Notifier { asked }
    }

    /// Asks for a notification (after a commit that wrote due deliveries).
    pub(super) fn ask(&self) {
        self.asked.notify_one();
    }
}

/// Wakes this node's worker when any node commits deliveries (`NOTIFY berth_deliveries`,
/// sent by the committing transaction), so several nodes share one queue without polling
/// fast, until `stop`. Reconnects on its own, waiting longer each time (one log line per
/// wait) while PostgreSQL is away; the worker's slow poll covers any gap.
pub(super) async fn listen_for_deliveries(
    url: String,
    wake: Arc<Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    const FIRST_WAIT: Duration = Duration::from_secs(1);
    const LONGEST_WAIT: Duration = Duration::from_secs(30);
    let mut wait = FIRST_WAIT;
    loop {
        match PgListener::connect(&url).await {
            Ok(mut listener) => match listener.listen("berth_deliveries").await {
                Ok(()) => loop {
                    wait = FIRST_WAIT;
                    tokio::select! {
                        n = listener.recv() => match n {
                            Ok(_) => wake.notify_one(),
                            Err(e) => {
                                tracing::warn!(error = %e, "delivery notifications interrupted");
                                break;
                            }
                        },
                        _ = stop.changed() => return,
                    }
                },
                Err(e) => tracing::warn!(error = %e, "cannot LISTEN for deliveries"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot connect to LISTEN for deliveries"),
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        // A notification may have been missed while the connection was down.
        wake.notify_one();
        wait = (wait * 2).min(LONGEST_WAIT);
    }
}
