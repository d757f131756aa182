//! Deliveries: the worker's leased claims, its attempts, and the delivery log. The interface
//! both backends implement, the values it answers and the query text both dialects share.
//! (The fan-out of an event into delivery rows is in each backend's `events.rs`.)

use std::sync::LazyLock;

use async_trait::async_trait;

use super::Result;
use super::webhooks::{
    Columns, WEBHOOK_COLUMNS, WebhookRecord, state_of, trigger_of, webhook_from_row,
};
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

/// Where to lease the next delivery of the same webhook after a success.
#[derive(Debug, Clone)]
pub struct NextLease {
    pub node: String,
    /// Now, by the worker's clock: what is due.
    pub now: i64,
    pub lease_until: i64,
}

/// The delivery queue and its log, on either database.
#[async_trait]
pub trait Deliveries {
    /// Leases up to `limit` due deliveries to `node` until `lease_until` (each with a new
    /// fencing token), never letting one webhook hold more than `per_webhook` leases at once,
    /// so a slow receiver cannot take every worker slot; answers them loaded. Per webhook,
    /// never across all of them: a dead receiver's backlog cannot crowd the healthy webhooks
    /// out of a claim. A delivery whose webhook was deleted meanwhile is not answered.
    async fn claim_deliveries(
        &self,
        node: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
        per_webhook: i64,
    ) -> Result<Vec<ClaimedDelivery>>;

    /// Records an attempt and the delivery's new state, releasing the lease; starts or ends
    /// the webhook's run of failures; disables the webhook when told to (410 Gone) or when
    /// every attempt has failed since `auto_disable_before`, with its audit row. All in one
    /// transaction: an attempt is never half-recorded. Fenced: only while the delivery still
    /// holds `result.lease_token`, so an attempt made under a lease another claim has taken
    /// since is refused ([`Recorded::StaleLease`]), not recorded and not counted.
    async fn record_attempt(
        &self,
        delivery_id: &str,
        webhook_id: &str,
        result: &AttemptResult,
    ) -> Result<Recorded> {
        Ok(self
            .record_attempt_then_lease(delivery_id, webhook_id, result, None)
            .await?
            .0)
    }

    /// [`Deliveries::record_attempt`], and, after a success, with `next`, in the same
    /// transaction: the lease (to that node, until that time) of the webhook's oldest due
    /// delivery, loaded, if the webhook is still enabled and has one: the slot this attempt
    /// frees goes straight to the next one, with no claim in between. A backend may answer
    /// `None` and leave it to the next claim.
    async fn record_attempt_then_lease(
        &self,
        delivery_id: &str,
        webhook_id: &str,
        result: &AttemptResult,
        next: Option<NextLease>,
    ) -> Result<(Recorded, Option<ClaimedDelivery>)>;

    /// Releases the leases a node holds (on shutdown), so others can take them at once.
    async fn release_leases(&self, node: &str) -> Result<u64>;

    /// Releases every lease. Only for a server that knows no other process can hold one:
    /// a SQLite server at start, holding its data directory's lock (see `app::serve`), for
    /// which every lease left is a process's that died mid-attempt. Its deliveries go out
    /// again at once (same `webhook-id`), not when the lease would have ended.
    async fn release_every_lease(&self) -> Result<u64>;

    /// When the next pending delivery falls due (ignoring leases).
    async fn next_due_at(&self) -> Result<Option<i64>>;

    /// Queue figures for `/metrics`, as of `now`.
    async fn queue_stats(&self, now: i64) -> Result<QueueStats>;

    /// Clears the dead row versions the queue leaves behind, when there are at least
    /// `min_dead_rows` of them: every lease and every record writes a new version of a
    /// delivery's row, and on a database that keeps the old ones (PostgreSQL) the queue's
    /// indexes point at them until a vacuum, so claims walk more of them at every step.
    /// Called every `queue_vacuum_interval` by each worker node (`app::tend_delivery_queue`).
    async fn tend_queue(&self, min_dead_rows: u64) -> Result<Tending>;

    /// A webhook's deliveries, newest first, optionally in one state, before delivery id
    /// `before`.
    async fn list_deliveries(
        &self,
        webhook_id: &str,
        state: Option<DeliveryState>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>>;

    /// One delivery of a webhook, with its attempts in order.
    async fn get_delivery(
        &self,
        webhook_id: &str,
        id: &str,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptRecord>)>>;

    /// Queues a delivery to be sent again now, with a fresh retry schedule and the same id,
    /// with its audit row. False when there is no such delivery.
    async fn redeliver(&self, webhook_id: &str, id: &str, actor: &str) -> Result<bool>;

    /// Queues again every failed delivery of a webhook created at or after `since`, with its
    /// audit row; answers how many.
    async fn replay_failed(&self, webhook_id: &str, since: i64, actor: &str) -> Result<u64>;

    /// Start times and outcomes (true = success) of a webhook's attempts since `since`: the
    /// raw data of the deliveries chart.
    async fn attempt_outcomes(&self, webhook_id: &str, since: i64) -> Result<Vec<(i64, bool)>>;

    /// Deletes up to `batch` delivery attempts that started before `cutoff`, then up to
    /// `batch` finished deliveries last touched before it; answers how many rows went. Small
    /// batches keep each transaction (and SQLite's write lock) short.
    async fn purge_before(&self, cutoff: i64, batch: i64) -> Result<u64>;
}

/// What [`Deliveries::tend_queue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tending {
    /// This backend keeps no dead row versions (SQLite updates rows in place and reuses
    /// freed pages): there is nothing to tend, now or later.
    NothingToTend,
    /// Fewer dead rows than asked for: nothing done.
    Clean { dead_rows: u64 },
    /// The table was vacuumed; it held this many dead rows before.
    Vacuumed { dead_rows: u64 },
    /// Another vacuum of the table (another node's, or autovacuum's) was running: skipped.
    Busy,
    /// The database user may not vacuum the table (only its owner may): autovacuum alone
    /// tends it.
    NotPermitted,
}

/// A leased delivery, selected by [`CLAIMED_SELECT`].
pub(super) fn claimed_from_row(row: &impl Columns) -> Result<ClaimedDelivery> {
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

/// A row of the delivery log, selected by [`LIST_DELIVERIES`] or [`GET_DELIVERY`].
pub(super) fn delivery_from_row(row: &impl Columns) -> Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: row.text("id")?,
        webhook_id: row.text("webhook_id")?,
        event_id: row.text("event_id")?,
        event_trigger: trigger_of(&row.text("event_trigger")?)?,
        state: state_of(&row.text("state")?)?,
        attempt_count: row.int("attempt_count")?,
        last_status_code: row.opt_int("last_status_code")?,
        next_attempt_at: row.opt_int("next_attempt_at")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        payload: row.text("payload")?,
    })
}

/// An attempt, selected by [`LIST_ATTEMPTS`].
pub(super) fn attempt_from_row(row: &impl Columns) -> Result<AttemptRecord> {
    Ok(AttemptRecord {
        attempt: row.int("attempt")?,
        started_at: row.int("started_at")?,
        duration_ms: row.int("duration_ms")?,
        status_code: row.opt_int("status_code")?,
        error_class: row.opt_text("error_class")?,
        error: row.opt_text("error")?,
        request_url: row.text("request_url")?,
        request_headers: row.text("request_headers")?,
        response_headers: row.opt_text("response_headers")?,
        response_body: row.opt_text("response_body")?,
        node: row.text("node")?,
        response_headers_omitted: row.int("response_headers_omitted")?,
    })
}

/// A new delivery's id: also its `webhook-id`, the same for every attempt.
pub(super) fn new_delivery_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

/// A time in microseconds as RFC 3339 UTC, to the second.
fn micros_to_rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| micros.to_string())
}

/// Why auto-disable disabled a webhook failing since `since` (microseconds).
pub(super) fn auto_disable_reason(since: i64) -> String {
    format!("every delivery failed since {}", micros_to_rfc3339(since))
}

/// What the auto-disable check of a failed attempt decided: the reason to disable the
/// webhook, if any. `failing_since` is the webhook's run of failures as read after this
/// attempt's (`FAILING_SINCE`, when `auto_disable_before` is set).
pub(super) fn disable_reason(result: &AttemptResult, failing_since: Option<i64>) -> Option<String> {
    match (&result.disable_webhook, failing_since) {
        (Some(reason), _) => Some(reason.clone()),
        (None, Some(since)) => Some(auto_disable_reason(since)),
        (None, None) => None,
    }
}

/// The audit details of a disable caused by an attempt.
pub(super) fn disabled_details(
    reason: &str,
    delivery_id: &str,
    result: &AttemptResult,
) -> serde_json::Value {
    serde_json::json!({
        "reason": reason,
        "deliveryId": delivery_id,
        "statusCode": result.attempt.status_code,
    })
}

/// The select that loads leased deliveries, up to `WHERE ` (a condition on `d.id` follows).
pub(super) static CLAIMED_SELECT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT d.id AS delivery_id, d.lease_token, d.attempt_count, d.schedule_offset, \
         d.event_id, e.payload, {WEBHOOK_COLUMNS} FROM deliveries d \
         JOIN webhooks w ON w.id = d.webhook_id JOIN events e ON e.seq = d.event_seq WHERE "
    )
});

/// An attempt's outcome on the delivery, fenced by the lease token: `$1` the delivery's new
/// state, `$2` its next attempt, `$3` the status code, `$4` the time, `$5` the delivery, `$6`
/// the lease token. Touches no row when the lease was taken since or the delivery is gone.
pub(super) const RECORD_OUTCOME: &str = "UPDATE deliveries SET attempt_count = attempt_count + 1, \
     state = $1, next_attempt_at = $2, locked_until = NULL, locked_by = NULL, \
     last_status_code = $3, updated_at = $4 WHERE id = $5 AND lease_token = $6";

/// The attempt itself, in [`AttemptRecord`]'s order after the delivery id.
pub(super) const INSERT_ATTEMPT: &str = "INSERT INTO delivery_attempts (delivery_id, attempt, \
     started_at, duration_ms, status_code, error_class, error, request_url, request_headers, \
     response_headers, response_body, node, response_headers_omitted) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// Whether a delivery exists: after a fenced update found nothing, it tells a lost lease
/// ([`Recorded::StaleLease`]) from a deleted webhook ([`Recorded::Gone`]).
pub(super) const DELIVERY_EXISTS: &str = "SELECT 1 AS one FROM deliveries WHERE id = $1";

/// A success ends the webhook's run of failures.
pub(super) const END_FAILING_RUN: &str =
    "UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL";

/// The first failure after a success starts the run: `$1` its start time, `$2` the webhook.
pub(super) const START_FAILING_RUN: &str =
    "UPDATE webhooks SET failing_since = $1 WHERE id = $2 AND failing_since IS NULL";

/// The run of failures of an enabled webhook, when it started at `$2` or earlier.
pub(super) const FAILING_SINCE: &str = "SELECT failing_since FROM webhooks \
     WHERE id = $1 AND enabled = 1 AND failing_since <= $2";

pub(super) const RELEASE_LEASES: &str =
    // The first two terms let it read the small leased index, not the whole table.
    "UPDATE deliveries SET locked_until = NULL, locked_by = NULL \
     WHERE state = 'pending' AND locked_until IS NOT NULL AND locked_by = $1";

pub(super) const RELEASE_EVERY_LEASE: &str = "UPDATE deliveries SET locked_until = NULL, \
     locked_by = NULL WHERE state = 'pending' AND locked_until IS NOT NULL";

pub(super) const NEXT_DUE: &str =
    "SELECT MIN(next_attempt_at) AS t FROM deliveries WHERE state = 'pending'";

pub(super) const QUEUE_STATS: &str = "SELECT COUNT(*) AS pending, \
     COUNT(CASE WHEN next_attempt_at <= $1 THEN 1 END) AS due, \
     MIN(CASE WHEN next_attempt_at <= $1 THEN next_attempt_at END) AS oldest \
     FROM deliveries WHERE state = 'pending'";

/// A delivery-log row's columns, and the join they need (a macro so that the queries built
/// on it stay `const` text).
macro_rules! delivery_columns {
    () => {
        "d.id, d.webhook_id, d.event_id, d.event_trigger, d.state, d.attempt_count, \
         d.last_status_code, d.next_attempt_at, d.created_at, d.updated_at, e.payload \
         FROM deliveries d JOIN events e ON e.seq = d.event_seq"
    };
}

/// `$1` the webhook, `$2` a state or NULL, `$3` a delivery id to list below or NULL, `$4`
/// the limit.
pub(super) const LIST_DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " WHERE d.webhook_id = $1 AND ($2 IS NULL OR d.state = $2) \
     AND ($3 IS NULL OR d.id < $3) ORDER BY d.id DESC LIMIT $4"
);

pub(super) const GET_DELIVERY: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " WHERE d.webhook_id = $1 AND d.id = $2"
);

pub(super) const LIST_ATTEMPTS: &str = "SELECT attempt, started_at, duration_ms, status_code, \
     error_class, error, request_url, request_headers, response_headers, response_body, node, \
     response_headers_omitted FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id";

/// Due now (`$1`) with a fresh retry schedule: `$2` the webhook, `$3` the delivery.
pub(super) const REDELIVER: &str = "UPDATE deliveries SET state = 'pending', \
     next_attempt_at = $1, schedule_offset = attempt_count, updated_at = $1 \
     WHERE webhook_id = $2 AND id = $3";

/// Every failed delivery of webhook `$2` created since `$3`, due now (`$1`).
pub(super) const REPLAY_FAILED: &str = "UPDATE deliveries SET state = 'pending', \
     next_attempt_at = $1, schedule_offset = attempt_count, updated_at = $1 \
     WHERE webhook_id = $2 AND state = 'failed' AND created_at >= $3";

pub(super) const ATTEMPT_OUTCOMES: &str = "SELECT a.started_at, a.error_class \
     FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id \
     WHERE d.webhook_id = $1 AND a.started_at >= $2";

pub(super) const PURGE_ATTEMPTS: &str = "DELETE FROM delivery_attempts WHERE id IN \
     (SELECT id FROM delivery_attempts WHERE started_at < $1 LIMIT $2)";

pub(super) const PURGE_DELIVERIES: &str = "DELETE FROM deliveries WHERE id IN \
     (SELECT id FROM deliveries WHERE state <> 'pending' AND updated_at < $1 LIMIT $2)";

/// The audit details of a redelivery and of a replay.
pub(super) fn redelivered_details(id: &str) -> serde_json::Value {
    serde_json::json!({ "deliveryId": id })
}

pub(super) fn replayed_details(since: i64, requeued: u64) -> serde_json::Value {
    serde_json::json!({ "since": super::audit::iso(since), "requeued": requeued })
}

#[cfg(test)]
pub(super) const SHARED_SQL: &[&str] = &[
    RECORD_OUTCOME,
    INSERT_ATTEMPT,
    DELIVERY_EXISTS,
    END_FAILING_RUN,
    START_FAILING_RUN,
    FAILING_SINCE,
    RELEASE_LEASES,
    RELEASE_EVERY_LEASE,
    NEXT_DUE,
    QUEUE_STATS,
    LIST_DELIVERIES,
    GET_DELIVERY,
    LIST_ATTEMPTS,
    REDELIVER,
    REPLAY_FAILED,
    ATTEMPT_OUTCOMES,
    PURGE_ATTEMPTS,
    PURGE_DELIVERIES,
];
