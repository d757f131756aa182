//! [`Deliveries`] on PostgreSQL: a claim is one statement (`SKIP LOCKED`, so nodes claiming
//! at once never wait on each other) leasing up to its limit; successful attempts are
//! recorded in batches, like SQLite's group commit: the successes that finish while a batch
//! is being written form the next one, one statement whatever its size, which also leases
//! each webhook's next due delivery for the slot a success frees ([`AttemptBatcher`]). A failed attempt, which may start a run of failures, disable the
//! webhook and audit it, is one transaction of its own.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::webhooks::disable;
use super::{Postgres, audit_webhook};
use crate::domain::DeliveryState;
use crate::store::audit::{AuditAction, SYSTEM_ACTOR};
use crate::store::deliveries::{
    ATTEMPT_OUTCOMES, AttemptRecord, AttemptResult, CLAIMED_SELECT, ClaimedDelivery,
    DELIVERY_EXISTS, Deliveries, DeliveryRecord, END_FAILING_RUN, FAILING_SINCE, GET_DELIVERY,
    INSERT_ATTEMPT, LIST_ATTEMPTS, LIST_DELIVERIES, NEXT_DUE, NextLease, PURGE_ATTEMPTS,
    PURGE_DELIVERIES, QUEUE_STATS, QueueStats, RECORD_OUTCOME, REDELIVER, RELEASE_EVERY_LEASE,
    RELEASE_LEASES, REPLAY_FAILED, Recorded, START_FAILING_RUN, Tending, attempt_from_row,
    claimed_from_row, delivery_from_row, disable_reason, disabled_details, redelivered_details,
    replayed_details,
};
use crate::store::{Error, Result, now_micros};

/// The claim, in one statement (one round trip): per enabled webhook, its oldest due,
/// unleased deliveries up to its free slots (`LATERAL`), rows another node is claiming
/// skipped (`SKIP LOCKED`), the oldest `$5` of those leased until `$1` to node `$2` with a
/// new fencing token. `$3` now, `$4` the per-webhook limit.
const CLAIM: &str = "WITH cand AS ( \
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
     WHERE deliveries.id = cand.id RETURNING deliveries.id";

/// The queue's dead row versions as the statistics count them, how many vacuums the table
/// has had, and whether this database user may vacuum it (its owner, a member of the
/// owner's role, or a superuser).
const QUEUE_DEAD_ROWS: &str = "SELECT COALESCE(s.n_dead_tup, 0) AS dead, \
     COALESCE(s.vacuum_count, 0) AS vacuums, \
     pg_has_role(current_user, c.relowner, 'USAGE') AS may_vacuum \
     FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
     WHERE c.oid = 'deliveries'::regclass";

/// `SKIP_LOCKED`: when another vacuum of the table (another node's, autovacuum's) holds its
/// lock, this one is skipped rather than queued behind it. Outside any transaction (VACUUM
/// cannot run inside one), so on the simple query protocol.
const VACUUM_QUEUE: &str = "VACUUM (SKIP_LOCKED) deliveries";

impl Postgres {
    /// Everything the worker needs to send the deliveries it just leased. A delivery whose
    /// webhook was deleted since the lease is simply not there.
    async fn load_claimed(&self, won: Vec<String>) -> Result<Vec<ClaimedDelivery>> {
        if won.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("{}d.id = ANY($1)", *CLAIMED_SELECT);
        // The text is fixed above; the ids are bound.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(won)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(claimed_from_row).collect()
    }
}

/// Records an attempt inside `tx`: see [`Deliveries::record_attempt`].
async fn record(
    tx: &mut PgConnection,
    delivery_id: &str,
    webhook_id: &str,
    result: &AttemptResult,
) -> Result<Recorded> {
    let a = &result.attempt;
    let done = sqlx::query(RECORD_OUTCOME)
        .bind(result.state.as_str())
        .bind(result.next_attempt_at)
        .bind(a.status_code)
        .bind(result.now)
        .bind(delivery_id)
        .bind(result.lease_token)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        // Either the webhook (and so the delivery) was deleted meanwhile, or another claim
        // took the delivery since this attempt's lease.
        let exists = sqlx::query(DELIVERY_EXISTS)
            .bind(delivery_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        return Ok(if exists {
            Recorded::StaleLease
        } else {
            Recorded::Gone
        });
    }
    insert_attempt(tx, delivery_id, a).await?;
    if a.error_class.is_none() {
        if result.webhook_was_failing {
            sqlx::query(END_FAILING_RUN)
                .bind(webhook_id)
                .execute(&mut *tx)
                .await?;
        }
        return Ok(Recorded::Recorded);
    }
    sqlx::query(START_FAILING_RUN)
        .bind(a.started_at)
        .bind(webhook_id)
        .execute(&mut *tx)
        .await?;
    let failing_since = match (&result.disable_webhook, result.auto_disable_before) {
        (None, Some(cutoff)) => sqlx::query(FAILING_SINCE)
            .bind(webhook_id)
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<i64, _>("failing_since"))
            .transpose()?,
        _ => None,
    };
    if let Some(reason) = disable_reason(result, failing_since)
        && disable(tx, webhook_id, &reason, result.now).await?
    {
        audit_webhook(
            tx,
            webhook_id,
            SYSTEM_ACTOR,
            AuditAction::WebhookDisabled,
            disabled_details(&reason, delivery_id, result),
        )
        .await?;
    }
    Ok(Recorded::Recorded)
}

async fn insert_attempt(tx: &mut PgConnection, delivery_id: &str, a: &AttemptRecord) -> Result<()> {
    sqlx::query(INSERT_ATTEMPT)
        .bind(delivery_id)
        .bind(a.attempt)
        .bind(a.started_at)
        .bind(a.duration_ms)
        .bind(a.status_code)
        .bind(a.error_class.as_deref())
        .bind(a.error.as_deref())
        .bind(a.request_url.as_str())
        .bind(a.request_headers.as_str())
        .bind(a.response_headers.as_deref())
        .bind(a.response_body.as_deref())
        .bind(a.node.as_str())
        .bind(a.response_headers_omitted)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The most successes recorded in one transaction.
const MAX_BATCH: usize = 512;

/// How many batches' transactions may run at once: one commit's flush need not wait for the
/// previous one's. They never wait on each other's rows: each delivery is in one batch,
/// next leases skip rows another batch holds (`SKIP LOCKED`), and the webhook rows a batch
/// touches (ending runs of failures) are locked in id order.
const MAX_BATCHES_AT_ONCE: usize = 4;

/// A success waiting for the batch that records it.
struct Success {
    delivery_id: String,
    webhook_id: String,
    result: AttemptResult,
    /// Where to lease the webhook's next due delivery, in the same transaction.
    next: Option<NextLease>,
    answer: oneshot::Sender<Result<(Recorded, Option<ClaimedDelivery>)>>,
}

/// Records successful attempts in batches: the successes that arrive while the batches
/// already running (at most [`MAX_BATCHES_AT_ONCE`]) are being written queue, and form the
/// next batch. Each caller is answered once the transaction holding its attempt has
/// committed (or failed: then nothing of the batch was written, and each caller may try
/// again).
pub(super) struct AttemptBatcher {
    queue: mpsc::UnboundedSender<Success>,
}

impl AttemptBatcher {
    /// Starts the batching task on `pool`; it ends when the batcher is dropped.
    pub(super) fn start(pool: PgPool) -> AttemptBatcher {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_batches(pool, rx));
        AttemptBatcher { queue }
    }

    async fn record(
        &self,
        delivery_id: &str,
        webhook_id: &str,
        result: &AttemptResult,
        next: Option<NextLease>,
    ) -> Result<(Recorded, Option<ClaimedDelivery>)> {
        let (answer, answered) = oneshot::channel();
        let gone = || Error::Unavailable("the attempt batcher has stopped".into());
        self.queue
            .send(Success {
                delivery_id: delivery_id.to_owned(),
                webhook_id: webhook_id.to_owned(),
                result: result.clone(),
                next,
                answer,
            })
            .map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
    }
}

async fn run_batches(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Success>) {
    let running = Arc::new(Semaphore::new(MAX_BATCHES_AT_ONCE));
    while let Some(first) = rx.recv().await {
        // While every batch slot is taken, successes queue and the next batch grows.
        let Ok(slot) = running.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            answer_batch(&pool, batch).await;
            drop(slot);
        });
    }
}

async fn answer_batch(pool: &PgPool, batch: Vec<Success>) {
    match record_batch(pool, &batch).await {
        Ok(answers) => {
            for (s, answer) in batch.into_iter().zip(answers) {
                let _ = s.answer.send(Ok(answer));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, attempts = batch.len(), "recording a batch of attempts failed");
            for s in batch {
                let _ = s.answer.send(Err(e.again()));
            }
        }
    }
}

/// A batch of successes as one statement, so one round trip and one implicit transaction
/// (its data-modifying parts see one snapshot, and commit or fail together):
/// - `rec`: the outcomes, each fenced by its lease token (`$1`-`$6`: ids, states, next
///   attempts, status codes, times, tokens), answering the deliveries found under them;
/// - `att`: the attempts of those, one array per column of [`INSERT_ATTEMPT`] (`$7`-`$19`);
/// - `ended`: the runs of failures those successes end (`$20`: the webhooks that were
///   failing);
/// - `nxt`: per webhook, as many of its oldest due, unleased deliveries as it had recorded
///   successes asking for a next lease (`$21`: their delivery ids), if it is still enabled,
///   leased at `$22` until `$23` to `$24`, rows another node is claiming skipped. (The
///   recorded ones are leased in the statement's snapshot, so none of them is taken.)
///
/// Answers one row per recorded success (`r`), per next lease (`n`, with its webhook), and
/// per delivery of the batch that exists (`x`): one not recorded but existing lost its
/// lease to another claim; one not existing is gone.
const RECORD_BATCH: &str = "WITH v AS ( \
       SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], \
         $6::int8[]) AS v(id, state, next_at, code, at, token)), \
     rec AS ( \
       UPDATE deliveries AS d SET attempt_count = d.attempt_count + 1, state = v.state, \
       next_attempt_at = v.next_at, locked_until = NULL, locked_by = NULL, \
       last_status_code = v.code, updated_at = v.at \
       FROM v WHERE d.id = v.id AND d.lease_token = v.token RETURNING d.id, d.webhook_id), \
     att AS ( \
       INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, \
       status_code, error_class, error, request_url, request_headers, response_headers, \
       response_body, node, response_headers_omitted) \
       SELECT a.* FROM unnest($7::text[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], \
         $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], \
         $18::text[], $19::int8[]) AS a(delivery_id, attempt, started_at, duration_ms, \
         status_code, error_class, error, request_url, request_headers, response_headers, \
         response_body, node, response_headers_omitted) \
       WHERE a.delivery_id IN (SELECT id FROM rec)), \
     ended AS ( \
       UPDATE webhooks SET failing_since = NULL WHERE id = ANY($20) \
       AND failing_since IS NOT NULL AND id IN (SELECT webhook_id FROM rec)), \
     want AS ( \
       SELECT rec.webhook_id, COUNT(*) AS n FROM rec WHERE rec.id = ANY($21) \
       GROUP BY rec.webhook_id), \
     cand AS ( \
       SELECT d.id FROM want JOIN webhooks w ON w.id = want.webhook_id AND w.enabled = 1 \
       CROSS JOIN LATERAL ( \
         SELECT d.id FROM deliveries d WHERE d.webhook_id = want.webhook_id \
         AND d.state = 'pending' AND d.next_attempt_at <= $22 \
         AND (d.locked_until IS NULL OR d.locked_until <= $22) \
         ORDER BY d.next_attempt_at, d.id LIMIT want.n \
         FOR UPDATE OF d SKIP LOCKED) d), \
     nxt AS ( \
       UPDATE deliveries SET locked_until = $23, locked_by = $24, \
       lease_token = deliveries.lease_token + 1 FROM cand \
       WHERE deliveries.id = cand.id RETURNING deliveries.id, deliveries.webhook_id) \
     SELECT 'r' AS kind, id, webhook_id FROM rec \
     UNION ALL SELECT 'n', id, webhook_id FROM nxt \
     UNION ALL SELECT 'x', id, webhook_id FROM deliveries WHERE id = ANY($1)";

/// Writes a batch of successes in one statement ([`RECORD_BATCH`]); answers what became of
/// each, in order, with the next lease of its webhook (loaded) when it asked for one and one
/// was due. All the successes of one process ask for leases to the same node; the latest
/// `now` of the batch says what is due, and its lease end holds for all.
async fn record_batch(
    pool: &PgPool,
    batch: &[Success],
) -> Result<Vec<(Recorded, Option<ClaimedDelivery>)>> {
    let asking = batch.iter().filter_map(|s| s.next.as_ref().map(|n| (s, n)));
    let latest = asking.clone().map(|(_, n)| n).max_by_key(|n| n.now);
    let chain: Vec<&str> = match latest {
        Some(l) => asking
            .filter(|(_, n)| n.node == l.node)
            .map(|(s, _)| s.delivery_id.as_str())
            .collect(),
        None => Vec::new(),
    };
    let mut failing: Vec<&str> = batch
        .iter()
        .filter(|s| s.result.webhook_was_failing)
        .map(|s| s.webhook_id.as_str())
        .collect();
    // Sorted: a batch locks webhook rows in one order.
    failing.sort_unstable();
    failing.dedup();
    let a: Vec<&AttemptRecord> = batch.iter().map(|s| &s.result.attempt).collect();
    let rows = sqlx::query(RECORD_BATCH)
        .bind(
            batch
                .iter()
                .map(|s| s.delivery_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|s| s.result.state.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|s| s.result.next_attempt_at)
                .collect::<Vec<_>>(),
        )
        .bind(a.iter().map(|a| a.status_code).collect::<Vec<_>>())
        .bind(batch.iter().map(|s| s.result.now).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|s| s.result.lease_token)
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|s| s.delivery_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(a.iter().map(|a| a.attempt).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.started_at).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.duration_ms).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.status_code).collect::<Vec<_>>())
        .bind(
            a.iter()
                .map(|a| a.error_class.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(a.iter().map(|a| a.error.as_deref()).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.request_url.as_str()).collect::<Vec<_>>())
        .bind(
            a.iter()
                .map(|a| a.request_headers.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            a.iter()
                .map(|a| a.response_headers.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            a.iter()
                .map(|a| a.response_body.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(a.iter().map(|a| a.node.as_str()).collect::<Vec<_>>())
        .bind(
            a.iter()
                .map(|a| a.response_headers_omitted)
                .collect::<Vec<_>>(),
        )
        .bind(failing)
        .bind(chain)
        .bind(latest.map_or(0, |l| l.now))
        .bind(latest.map_or(0, |l| l.lease_until))
        .bind(latest.map_or("", |l| l.node.as_str()))
        .fetch_all(pool)
        .await?;
    let mut recorded = std::collections::HashSet::new();
    let mut existing = std::collections::HashSet::new();
    let mut leased = Vec::new();
    for row in &rows {
        let kind: String = row.try_get("kind")?;
        let id: String = row.try_get("id")?;
        match kind.as_str() {
            "r" => {
                recorded.insert(id);
            }
            "n" => leased.push(id),
            _ => {
                existing.insert(id);
            }
        }
    }
    let mut chained: std::collections::HashMap<String, Vec<ClaimedDelivery>> = Default::default();
    if !leased.is_empty() {
        let sql = format!("{}d.id = ANY($1)", *CLAIMED_SELECT);
        // The text is fixed above; the ids are bound. A lease whose webhook was deleted
        // since is simply not there.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(leased)
            .fetch_all(pool)
            .await?;
        for row in &rows {
            let claimed = claimed_from_row(row)?;
            chained
                .entry(claimed.webhook.id.clone())
                .or_default()
                .push(claimed);
        }
    }
    Ok(batch
        .iter()
        .map(|s| {
            if recorded.contains(&s.delivery_id) {
                let next = chained
                    .get_mut(&s.webhook_id)
                    .filter(|_| s.next.is_some())
                    .and_then(Vec::pop);
                (Recorded::Recorded, next)
            } else if existing.contains(&s.delivery_id) {
                // Another claim took the delivery since this attempt's lease.
                (Recorded::StaleLease, None)
            } else {
                // The webhook (and so the delivery) was deleted meanwhile.
                (Recorded::Gone, None)
            }
        })
        .collect())
}

#[async_trait]
impl Deliveries for Postgres {
    async fn claim_deliveries(
        &self,
        node: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
        per_webhook: i64,
    ) -> Result<Vec<ClaimedDelivery>> {
        let rows = sqlx::query(CLAIM)
            .bind(lease_until)
            .bind(node)
            .bind(now)
            .bind(per_webhook)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let won: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        self.load_claimed(won).await
    }

    /// A success joins the next batch ([`AttemptBatcher`]), which leases the webhook's next
    /// due delivery with `next`; a failure is a transaction of its own, and leaves the next
    /// delivery to the next claim.
    async fn record_attempt_then_lease(
        &self,
        delivery_id: &str,
        webhook_id: &str,
        result: &AttemptResult,
        next: Option<NextLease>,
    ) -> Result<(Recorded, Option<ClaimedDelivery>)> {
        if result.attempt.error_class.is_none() {
            return self
                .batcher
                .record(delivery_id, webhook_id, result, next)
                .await;
        }
        let mut tx = self.pool.begin().await?;
        let recorded = record(&mut tx, delivery_id, webhook_id, result).await?;
        tx.commit().await?;
        Ok((recorded, None))
    }

    async fn release_leases(&self, node: &str) -> Result<u64> {
        let done = sqlx::query(RELEASE_LEASES)
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn release_every_lease(&self) -> Result<u64> {
        let done = sqlx::query(RELEASE_EVERY_LEASE).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn next_due_at(&self) -> Result<Option<i64>> {
        Ok(sqlx::query(NEXT_DUE)
            .fetch_one(&self.pool)
            .await?
            .try_get("t")?)
    }

    async fn queue_stats(&self, now: i64) -> Result<QueueStats> {
        let row = sqlx::query(QUEUE_STATS)
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        Ok(QueueStats {
            pending: row.try_get("pending")?,
            due: row.try_get("due")?,
            oldest_due_at: row.try_get("oldest")?,
        })
    }

    async fn tend_queue(&self, min_dead_rows: u64) -> Result<Tending> {
        let row = sqlx::query(QUEUE_DEAD_ROWS).fetch_one(&self.pool).await?;
        if !row.try_get::<bool, _>("may_vacuum")? {
            return Ok(Tending::NotPermitted);
        }
        let dead = u64::try_from(row.try_get::<i64, _>("dead")?).unwrap_or(0);
        if dead < min_dead_rows {
            return Ok(Tending::Clean { dead_rows: dead });
        }
        let vacuums: i64 = row.try_get("vacuums")?;
        sqlx::raw_sql(VACUUM_QUEUE).execute(&self.pool).await?;
        // A skipped vacuum only warns; the count of vacuums tells whether this one ran (a
        // vacuum counts itself in the statistics as it ends).
        let after: i64 = sqlx::query(QUEUE_DEAD_ROWS)
            .fetch_one(&self.pool)
            .await?
            .try_get("vacuums")?;
        Ok(if after > vacuums {
            Tending::Vacuumed { dead_rows: dead }
        } else {
            Tending::Busy
        })
    }

    async fn list_deliveries(
        &self,
        webhook_id: &str,
        state: Option<DeliveryState>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>> {
        let rows = sqlx::query(LIST_DELIVERIES)
            .bind(webhook_id)
            .bind(state.map(DeliveryState::as_str))
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn get_delivery(
        &self,
        webhook_id: &str,
        id: &str,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptRecord>)>> {
        let row = sqlx::query(GET_DELIVERY)
            .bind(webhook_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let delivery = delivery_from_row(&row)?;
        let attempts = sqlx::query(LIST_ATTEMPTS)
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(attempt_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Some((delivery, attempts)))
    }

    async fn redeliver(&self, webhook_id: &str, id: &str, actor: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(REDELIVER)
            .bind(now_micros())
            .bind(webhook_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        audit_webhook(
            &mut tx,
            webhook_id,
            actor,
            AuditAction::WebhookRedelivered,
            redelivered_details(id),
        )
        .await?;
        tx.commit().await?;
        self.woke(1);
        Ok(true)
    }

    async fn replay_failed(&self, webhook_id: &str, since: i64, actor: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let requeued = sqlx::query(REPLAY_FAILED)
            .bind(now_micros())
            .bind(webhook_id)
            .bind(since)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        audit_webhook(
            &mut tx,
            webhook_id,
            actor,
            AuditAction::WebhookReplayed,
            replayed_details(since, requeued),
        )
        .await?;
        tx.commit().await?;
        self.woke(requeued);
        Ok(requeued)
    }

    async fn attempt_outcomes(&self, webhook_id: &str, since: i64) -> Result<Vec<(i64, bool)>> {
        let rows = sqlx::query(ATTEMPT_OUTCOMES)
            .bind(webhook_id)
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let class: Option<String> = r.try_get("error_class")?;
                Ok((r.try_get("started_at")?, class.is_none()))
            })
            .collect()
    }

    async fn purge_before(&self, cutoff: i64, batch: i64) -> Result<u64> {
        let attempts = sqlx::query(PURGE_ATTEMPTS)
            .bind(cutoff)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let deliveries = sqlx::query(PURGE_DELIVERIES)
            .bind(cutoff)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(attempts + deliveries)
    }
}
