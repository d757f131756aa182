//! Deliveries: the worker's leased claims, its attempts, and the delivery log. (The fan-out
//! of an event into delivery rows is in each backend's `events.rs`.)

use sqlx::Row;

use super::audit::{AuditAction, SYSTEM_ACTOR, iso};
use super::events::FEED_HORIZON;
use super::fast::NextLease;
use super::webhooks::{
    Columns, WEBHOOK_COLUMNS, WebhookRecord, state_of, trigger_of, webhook_from_row,
};
use super::{Backend, Store, now_micros};
use crate::domain::{DeliveryState, EventTrigger};

/// A delivery the worker holds a lease on, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: String,
    /// The fencing token of this lease: the delivery's `lease_token` as this claim left it.
    /// The attempt is recorded only while the row still holds it (see [`Recorded`]).
    pub lease_token: i64,
    pub attempt_count: i64,
    pub schedule_offset: i64,
    pub event_id: String,
    pub payload: String,
    pub webhook: WebhookRecord,
}

/// One row of the delivery log.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_trigger: EventTrigger,
    pub state: DeliveryState,
    pub attempt_count: i64,
    pub last_status_code: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub payload: String,
}

/// One attempt, as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub request_url: String,
    /// JSON array of `[name, value]`, `Authorization` masked.
    pub request_headers: String,
    /// JSON array of `[name, value]`.
    pub response_headers: Option<String>,
    pub response_body: Option<String>,
    pub node: String,
    /// How many of the receiver's headers were not kept (see `http::cap_headers`).
    pub response_headers_omitted: i64,
}

/// What the worker decided after an attempt.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub attempt: AttemptRecord,
    /// The token of the lease the attempt was made under ([`ClaimedDelivery::lease_token`]).
    pub lease_token: i64,
    /// When the attempt is recorded (the worker's clock): the delivery's `updated_at`.
    pub now: i64,
    /// Pending (with `next_attempt_at`), succeeded or failed.
    pub state: DeliveryState,
    pub next_attempt_at: Option<i64>,
    /// Disable the webhook, with this reason (410 Gone).
    pub disable_webhook: Option<String>,
    /// Auto-disable: when the attempt failed and every attempt of the webhook has failed
    /// since this time (microseconds) or earlier, disable it.
    pub auto_disable_before: Option<i64>,
    /// The webhook was failing (`failing_since` set) when this delivery was claimed: a
    /// success must end the run. When it was not, a success skips that write, the hot path.
    /// (A failure recorded between the claim and this success leaves `failing_since` set
    /// until the next success: the run then looks older by at most one attempt's time.)
    pub webhook_was_failing: bool,
}

/// What recording an attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The attempt and the delivery's new state are written.
    Recorded,
    /// The delivery is gone (its webhook was deleted meanwhile): nothing written.
    Gone,
    /// Another claim took the delivery since this attempt's lease (its node was paused, or
    /// declared dead, past the lease): nothing written, the new owner's attempt stands.
    StaleLease,
}

/// Queue figures for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueStats {
    pub pending: i64,
    pub due: i64,
    pub oldest_due_at: Option<i64>,
}

/// What the worker needs to send a leased delivery, selected by [`claimed_select`] + a
/// condition on `d.id`.
pub(super) fn claimed_from_row(row: &impl Columns) -> Result<ClaimedDelivery, sqlx::Error> {
    Ok(ClaimedDelivery {
        id: row.text("delivery_id")?,
        lease_token: row.int("lease_token")?,
        attempt_count: row.int("attempt_count")?,
        schedule_offset: row.int("schedule_offset")?,
        event_id: row.text("event_id")?,
        payload: row.text("payload")?,
        webhook: webhook_from_row(row, false)?,
    })
}

/// The start of the select that loads leased deliveries (up to `WHERE `).
pub(super) fn claimed_select() -> String {
    format!(
        "SELECT d.id AS delivery_id, d.lease_token, d.attempt_count, d.schedule_offset, \
         d.event_id, e.payload, {WEBHOOK_COLUMNS} FROM deliveries d \
         JOIN webhooks w ON w.id = d.webhook_id JOIN events e ON e.seq = d.event_seq WHERE "
    )
}

fn delivery_from_row(row: &sqlx::any::AnyRow) -> Result<DeliveryRecord, sqlx::Error> {
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_id: row.try_get("event_id")?,
        event_trigger: trigger_of(&row.try_get::<String, _>("event_trigger")?)?,
        state: state_of(&row.try_get::<String, _>("state")?)?,
        attempt_count: row.try_get("attempt_count")?,
        last_status_code: row.try_get("last_status_code")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        payload: row.try_get("payload")?,
    })
}

/// A time in microseconds as RFC 3339 UTC, to the second.
fn micros_to_rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| micros.to_string())
}

/// Disables an enabled webhook with `reason`, remembering the newest event so that
/// re-enabling it can send what it missed. Every disable (410 Gone, auto-disable, a user)
/// goes through here or through `update_webhook`, which does the same.
/// Binds an attempt's fields after the delivery id and status code, in the order both
/// attempt inserts of `record_attempt` name them.
fn bind_attempt<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    a: &'q AttemptRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    q.bind(a.attempt)
        .bind(a.started_at)
        .bind(a.duration_ms)
        .bind(a.error_class.as_deref())
        .bind(a.error.as_deref())
        .bind(a.request_url.as_str())
        .bind(a.request_headers.as_str())
        .bind(a.response_headers.as_deref())
        .bind(a.response_body.as_deref())
        .bind(a.node.as_str())
        .bind(a.response_headers_omitted)
}

/// Disables a webhook, noting where `enable_webhook` will look for the events it missed:
/// the newest `seq` (SQLite, and webhooks disabled before migration 0010), and on PostgreSQL
/// the feed horizon (`disabled_after_xid`, from [`FEED_HORIZON`]).
///
/// Why the horizon: event writers do not take turns on PostgreSQL, so `seq` is not commit
/// order. An event may take `seq` 5, let 6 commit (and be sent), see the webhook disabled
/// in its fan-out, and commit after the disable, below its `disabled_after_seq` of 6, with
/// no delivery. Its `tx_id` is at or above the horizon noted here: a transaction below it
/// had finished before the disabling statement began, so its fan-out saw the webhook as it
/// was before. `enable_webhook` therefore takes every event with `tx_id >=
/// disabled_after_xid` as a candidate (the few that were in flight and sent anyway have a
/// delivery and are skipped). The other race, an event whose fan-out sees the webhook
/// disabled but that commits after `enable_webhook` has looked, is closed by a row lock:
/// see `fan_out`.
async fn disable(
    conn: &mut sqlx::AnyConnection,
    webhook_id: &str,
    reason: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let horizon = if conn.backend_name() == "PostgreSQL" {
        format!(", disabled_after_xid = {FEED_HORIZON}")
    } else {
        String::new()
    };
    // The text holds placeholders only; every value is bound.
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE webhooks SET enabled = 0, disabled_reason = $2, updated_at = $3, \
         disabled_after_seq = (SELECT COALESCE(MAX(seq), 0) FROM events){horizon} \
         WHERE id = $1 AND enabled = 1"
    )))
    .bind(webhook_id)
    .bind(reason)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let disabled = done.rows_affected() > 0;
    if disabled {
        tracing::warn!(webhook = %webhook_id, reason, "disabling the webhook");
    }
    Ok(disabled)
}

/// Why an attempt's update found no row under its lease token: the delivery is gone, or
/// another claim changed the token since.
async fn lease_lost(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Recorded, sqlx::Error> {
    let row = sqlx::query("SELECT lease_token FROM deliveries WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(_) => Recorded::StaleLease,
        None => Recorded::Gone,
    })
}

/// A new delivery's id: also its `webhook-id`, the same for every attempt.
pub(super) fn new_delivery_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

impl Store {
    /// Leases up to `limit` due deliveries to `node` until `lease_until`, never letting one
    /// webhook hold more than `per_webhook` leases at once, so a slow receiver cannot take
    /// every worker slot.
    pub async fn claim_deliveries(
        &self,
        node: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
        per_webhook: i64,
    ) -> Result<Vec<ClaimedDelivery>, sqlx::Error> {
        if self.backend == Backend::Postgres {
            return self
                .claim_postgres(node, now, lease_until, limit, per_webhook)
                .await;
        }
        // SQLite: found and leased in one write transaction on the writer thread (see
        // `fast::lease_due`), then loaded by a reader.
        let Some(writer) = &self.group else {
            return Err(sqlx::Error::Protocol("SQLite without its writer".into()));
        };
        let node = node.to_owned();
        writer
            .write_sync(move |conn| {
                super::fast::lease_due(conn, &node, now, lease_until, limit, per_webhook)
            })
            .await
    }

    /// The PostgreSQL claim, in one statement (one round trip): per enabled webhook, its
    /// oldest due, unleased deliveries up to its free slots (`LATERAL`), rows another node is
    /// claiming skipped (`SKIP LOCKED`), the oldest `limit` of those leased.
    async fn claim_postgres(
        &self,
        node: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
        per_webhook: i64,
    ) -> Result<Vec<ClaimedDelivery>, sqlx::Error> {
        let rows = sqlx::query(
            "WITH cand AS ( \
               SELECT d.id, d.next_attempt_at FROM webhooks w \
               CROSS JOIN LATERAL ( \
                 SELECT GREATEST($4 - (SELECT COUNT(*) FROM deliveries x \
                   WHERE x.webhook_id = w.id AND x.state = 'pending' \
                   AND x.locked_until > $3), 0) AS free) f \
               CROSS JOIN LATERAL ( \
                 SELECT d.id, d.next_attempt_at FROM deliveries d \
                 WHERE d.webhook_id = w.id AND d.state = 'pending' \
                 AND d.next_attempt_at <= $3 \
                 AND (d.locked_until IS NULL OR d.locked_until <= $3) \
                 ORDER BY d.next_attempt_at, d.id LIMIT f.free \
                 FOR UPDATE OF d SKIP LOCKED) d \
               WHERE w.enabled = 1 \
               ORDER BY d.next_attempt_at, d.id LIMIT $5) \
             UPDATE deliveries SET locked_until = $1, locked_by = $2, \
             lease_token = deliveries.lease_token + 1 FROM cand \
             WHERE deliveries.id = cand.id RETURNING deliveries.id",
        )
        .bind(lease_until)
        .bind(node)
        .bind(now)
        .bind(per_webhook)
        .bind(limit)
        .fetch_all(&self.write)
        .await?;
        let won: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        self.load_claimed(won).await
    }

    /// Everything the worker needs to send the deliveries it just leased.
    async fn load_claimed(&self, won: Vec<String>) -> Result<Vec<ClaimedDelivery>, sqlx::Error> {
        if won.is_empty() {
            return Ok(Vec::new());
        }
        let list = (0..won.len())
            .map(|i| format!("${}", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("{}d.id IN ({list})", claimed_select());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &won {
            q = q.bind(id.as_str());
        }
        // A delivery whose webhook was deleted since the lease is simply not there.
        let rows = q.fetch_all(&self.read).await?;
        rows.iter().map(claimed_from_row).collect()
    }

    /// Records an attempt and the delivery's new state, releasing the lease; disables the
    /// webhook when told to. All in one transaction: an attempt is never half-recorded.
    /// Fenced: only while the delivery still holds `result.lease_token`, so an attempt made
    /// under a lease another claim has taken since is refused ([`Recorded::StaleLease`]),
    /// not recorded and not counted.
    pub async fn record_attempt(
        &self,
        delivery_id: &str,
        webhook_id: &str,
        result: &AttemptResult,
    ) -> Result<Recorded, sqlx::Error> {
        Ok(self
            .record_attempt_then_lease(delivery_id, webhook_id, result, None)
            .await?
            .0)
    }

    /// [`Store::record_attempt`], and, on SQLite after a success, in the same transaction:
    /// with `next`, the lease of the webhook's oldest due delivery, loaded (see
    /// `fast::record_success`). Elsewhere the second answer is always `None`.
    pub async fn record_attempt_then_lease(
        &self,
        delivery_id: &str,
        webhook_id: &str,
        result: &AttemptResult,
        next: Option<NextLease>,
    ) -> Result<(Recorded, Option<ClaimedDelivery>), sqlx::Error> {
        let (delivery_id, webhook_id, result) = (
            delivery_id.to_owned(),
            webhook_id.to_owned(),
            result.clone(),
        );
        if let Some(writer) = &self.group
            && result.attempt.error_class.is_none()
        {
            // SQLite, a success (the common case): on the writer thread, with no round trip
            // per statement. A failure may disable the webhook and audit it: the path below.
            return writer
                .write_sync(move |conn| {
                    super::fast::record_success(
                        conn,
                        &delivery_id,
                        &webhook_id,
                        &result,
                        next.as_ref(),
                    )
                })
                .await;
        }
        let store = self.clone();
        self.write_tx(move |conn| {
            Box::pin(async move {
                let a = &result.attempt;
                let now = result.now;
                // `$T` is the lease token's placeholder: after the attempt's on SQLite.
                let update = "UPDATE deliveries SET attempt_count = attempt_count + 1, \
                     state = $2, next_attempt_at = $3, locked_until = NULL, locked_by = NULL, \
                     last_status_code = $4, updated_at = $5 WHERE id = $1 AND lease_token = $T";
                let found = if store.backend == Backend::Sqlite {
                    // Both statements in one call: one round trip to the connection's thread
                    // instead of two. `$N` names the same value in both; the insert runs only
                    // when the update found the delivery.
                    let update = update.replace("$T", "$17");
                    let text = format!(
                        "{update}; INSERT INTO delivery_attempts (delivery_id, attempt, \
                         started_at, duration_ms, status_code, error_class, error, \
                         request_url, request_headers, response_headers, response_body, node, \
                         response_headers_omitted) \
                         SELECT $1, $6, $7, $8, $4, $9, $10, $11, $12, $13, $14, $15, $16 \
                         WHERE changes() > 0"
                    );
                    // The text is fixed above; every value is bound.
                    let q = sqlx::query(sqlx::AssertSqlSafe(text))
                        .bind(delivery_id.as_str())
                        .bind(result.state.as_str())
                        .bind(result.next_attempt_at)
                        .bind(a.status_code)
                        .bind(now);
                    let done = bind_attempt(q, a)
                        .bind(result.lease_token)
                        .execute(&mut *conn)
                        .await?;
                    done.rows_affected() > 0
                } else {
                    let update = update.replace("$T", "$6");
                    // The text is fixed above; every value is bound.
                    let done = sqlx::query(sqlx::AssertSqlSafe(update))
                        .bind(delivery_id.as_str())
                        .bind(result.state.as_str())
                        .bind(result.next_attempt_at)
                        .bind(a.status_code)
                        .bind(now)
                        .bind(result.lease_token)
                        .execute(&mut *conn)
                        .await?;
                    if done.rows_affected() > 0 {
                        let q = sqlx::query(
                            "INSERT INTO delivery_attempts (delivery_id, status_code, attempt, \
                             started_at, duration_ms, error_class, error, request_url, \
                             request_headers, response_headers, response_body, node, \
                             response_headers_omitted) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                        )
                        .bind(delivery_id.as_str())
                        .bind(a.status_code);
                        bind_attempt(q, a).execute(&mut *conn).await?;
                    }
                    done.rows_affected() > 0
                };
                if !found {
                    // Either the webhook (and so the delivery) was deleted meanwhile, or
                    // another claim took the delivery since this attempt's lease.
                    return lease_lost(&mut *conn, &delivery_id).await;
                }
                if a.error_class.is_none() {
                    // A success ends a run of failures.
                    if result.webhook_was_failing {
                        sqlx::query(
                            "UPDATE webhooks SET failing_since = NULL \
                             WHERE id = $1 AND failing_since IS NOT NULL",
                        )
                        .bind(webhook_id.as_str())
                        .execute(&mut *conn)
                        .await?;
                    }
                    return Ok(Recorded::Recorded);
                }
                // A failure: the first one after a success starts the run.
                sqlx::query(
                    "UPDATE webhooks SET failing_since = $2 \
                     WHERE id = $1 AND failing_since IS NULL",
                )
                .bind(webhook_id.as_str())
                .bind(a.started_at)
                .execute(&mut *conn)
                .await?;
                let reason = match (&result.disable_webhook, result.auto_disable_before) {
                    (Some(reason), _) => Some(reason.clone()),
                    (None, Some(cutoff)) => {
                        let row = sqlx::query(
                            "SELECT failing_since FROM webhooks \
                             WHERE id = $1 AND enabled = 1 AND failing_since <= $2",
                        )
                        .bind(webhook_id.as_str())
                        .bind(cutoff)
                        .fetch_optional(&mut *conn)
                        .await?;
                        match row {
                            Some(r) => {
                                let since: i64 = r.try_get("failing_since")?;
                                Some(format!(
                                    "every delivery failed since {}",
                                    micros_to_rfc3339(since)
                                ))
                            }
                            None => None,
                        }
                    }
                    (None, None) => None,
                };
                if let Some(reason) = reason
                    && disable(&mut *conn, &webhook_id, &reason, now).await?
                {
                    let details = serde_json::json!({
                        "reason": reason,
                        "deliveryId": delivery_id,
                        "statusCode": a.status_code,
                    });
                    store
                        .audit_webhook(
                            conn,
                            &webhook_id,
                            SYSTEM_ACTOR,
                            AuditAction::WebhookDisabled,
                            details,
                        )
                        .await?;
                }
                Ok(Recorded::Recorded)
            })
        })
        .await
        .map(|found| (found, None))
    }

    /// Releases the leases a node holds (on shutdown), so others can take them at once.
    pub async fn release_leases(&self, node: &str) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            // The first two terms let it read the small leased index, not the whole table.
            "UPDATE deliveries SET locked_until = NULL, locked_by = NULL \
             WHERE state = 'pending' AND locked_until IS NOT NULL AND locked_by = $1",
        )
        .bind(node)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    /// Releases every lease. Only for a server that knows no other process can hold one:
    /// a SQLite server at start, holding its data directory's lock (see `app::serve`), for
    /// which every lease left is a process's that died mid-attempt. Its deliveries go out
    /// again at once (same `webhook-id`), not when the lease would have ended.
    pub async fn release_every_lease(&self) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE deliveries SET locked_until = NULL, locked_by = NULL \
             WHERE state = 'pending' AND locked_until IS NOT NULL",
        )
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    /// When the next pending delivery falls due (ignoring leases).
    pub async fn next_due_at(&self) -> Result<Option<i64>, sqlx::Error> {
        let row =
            sqlx::query("SELECT MIN(next_attempt_at) AS t FROM deliveries WHERE state = 'pending'")
                .fetch_one(&self.read)
                .await?;
        row.try_get("t")
    }

    pub async fn queue_stats(&self, now: i64) -> Result<QueueStats, sqlx::Error> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS pending, \
             COUNT(CASE WHEN next_attempt_at <= $1 THEN 1 END) AS due, \
             MIN(CASE WHEN next_attempt_at <= $1 THEN next_attempt_at END) AS oldest \
             FROM deliveries WHERE state = 'pending'",
        )
        .bind(now)
        .fetch_one(&self.read)
        .await?;
        Ok(QueueStats {
            pending: row.try_get("pending")?,
            due: row.try_get("due")?,
            oldest_due_at: row.try_get("oldest")?,
        })
    }

    /// A webhook's deliveries, newest first, optionally in one state.
    pub async fn list_deliveries(
        &self,
        webhook_id: &str,
        state: Option<DeliveryState>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT d.id, d.webhook_id, d.event_id, d.event_trigger, d.state, d.attempt_count, \
             d.last_status_code, d.next_attempt_at, d.created_at, d.updated_at, e.payload \
             FROM deliveries d JOIN events e ON e.seq = d.event_seq \
             WHERE d.webhook_id = $1 AND ($2 IS NULL OR d.state = $2) \
             AND ($3 IS NULL OR d.id < $3) ORDER BY d.id DESC LIMIT $4",
        )
        .bind(webhook_id)
        .bind(state.map(DeliveryState::as_str))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    pub async fn get_delivery(
        &self,
        webhook_id: &str,
        id: &str,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptRecord>)>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT d.id, d.webhook_id, d.event_id, d.event_trigger, d.state, d.attempt_count, \
             d.last_status_code, d.next_attempt_at, d.created_at, d.updated_at, e.payload \
             FROM deliveries d JOIN events e ON e.seq = d.event_seq \
             WHERE d.webhook_id = $1 AND d.id = $2",
        )
        .bind(webhook_id)
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let delivery = delivery_from_row(&row)?;
        let rows = sqlx::query(
            "SELECT attempt, started_at, duration_ms, status_code, error_class, error, \
             request_url, request_headers, response_headers, response_body, node, \
             response_headers_omitted FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        let attempts = rows
            .iter()
            .map(|r| {
                Ok(AttemptRecord {
                    attempt: r.try_get("attempt")?,
                    started_at: r.try_get("started_at")?,
                    duration_ms: r.try_get("duration_ms")?,
                    status_code: r.try_get("status_code")?,
                    error_class: r.try_get("error_class")?,
                    error: r.try_get("error")?,
                    request_url: r.try_get("request_url")?,
                    request_headers: r.try_get("request_headers")?,
                    response_headers: r.try_get("response_headers")?,
                    response_body: r.try_get("response_body")?,
                    node: r.try_get("node")?,
                    response_headers_omitted: r.try_get("response_headers_omitted")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some((delivery, attempts)))
    }

    /// Queues a delivery to be sent again now, with a fresh retry schedule and the same id.
    pub async fn redeliver(
        &self,
        webhook_id: &str,
        id: &str,
        actor: &str,
    ) -> Result<bool, sqlx::Error> {
        let now = now_micros();
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = $3, \
             schedule_offset = attempt_count, updated_at = $3 \
             WHERE webhook_id = $1 AND id = $2",
        )
        .bind(webhook_id)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.audit_webhook(
            &mut tx,
            webhook_id,
            actor,
            AuditAction::WebhookRedelivered,
            serde_json::json!({ "deliveryId": id }),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Queues again every failed delivery of a webhook created at or after `since`.
    pub async fn replay_failed(
        &self,
        webhook_id: &str,
        since: i64,
        actor: &str,
    ) -> Result<u64, sqlx::Error> {
        let now = now_micros();
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = $3, \
             schedule_offset = attempt_count, updated_at = $3 \
             WHERE webhook_id = $1 AND state = 'failed' AND created_at >= $2",
        )
        .bind(webhook_id)
        .bind(since)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let requeued = done.rows_affected();
        self.audit_webhook(
            &mut tx,
            webhook_id,
            actor,
            AuditAction::WebhookReplayed,
            serde_json::json!({ "since": iso(since), "requeued": requeued }),
        )
        .await?;
        tx.commit().await?;
        Ok(requeued)
    }
}

impl Store {
    /// Start times and outcomes (true = success) of a webhook's attempts since `since`: the
    /// raw data of the deliveries chart.
    pub async fn attempt_outcomes(
        &self,
        webhook_id: &str,
        since: i64,
    ) -> Result<Vec<(i64, bool)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT a.started_at, a.error_class FROM delivery_attempts a \
             JOIN deliveries d ON d.id = a.delivery_id \
             WHERE d.webhook_id = $1 AND a.started_at >= $2",
        )
        .bind(webhook_id)
        .bind(since)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let class: Option<String> = r.try_get("error_class")?;
                Ok((r.try_get("started_at")?, class.is_none()))
            })
            .collect()
    }
}

impl Store {
    /// Deletes up to `batch` delivery attempts that started before `cutoff`, then up to
    /// `batch` finished deliveries last touched before it; answers how many rows went. Small
    /// batches keep each transaction (and SQLite's write lock) short.
    pub async fn purge_before(&self, cutoff: i64, batch: i64) -> Result<u64, sqlx::Error> {
        let attempts = sqlx::query(
            "DELETE FROM delivery_attempts WHERE id IN \
             (SELECT id FROM delivery_attempts WHERE started_at < $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(batch)
        .execute(&self.write)
        .await?
        .rows_affected();
        let deliveries = sqlx::query(
            "DELETE FROM deliveries WHERE id IN \
             (SELECT id FROM deliveries WHERE state <> 'pending' AND updated_at < $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(batch)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(attempts + deliveries)
    }
}
