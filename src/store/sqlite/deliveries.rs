//! [`Deliveries`] on SQLite: the worker's claims and attempts are closures on the group
//! writer (statement after statement on its thread, no round trip between them, batched
//! with whatever else is being written); the log is read on the calling thread.

use std::sync::LazyLock;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::webhooks::disable;
use super::{Sqlite, audit_webhook, decode_all};
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
use crate::store::{Result, now_micros};

/// Per webhook with due work and free slots, oldest due first: its id and how many leases it
/// holds now.
const DUE_WEBHOOKS: &str = "SELECT w.id, \
     (SELECT COUNT(*) FROM deliveries x WHERE x.webhook_id = w.id \
      AND x.state = 'pending' AND x.locked_until > $1) AS inflight, \
     (SELECT MIN(d.next_attempt_at) FROM deliveries d WHERE d.webhook_id = w.id \
      AND d.state = 'pending') AS oldest \
     FROM webhooks w WHERE w.enabled = 1 AND EXISTS ( \
       SELECT 1 FROM deliveries d WHERE d.webhook_id = w.id AND d.state = 'pending' \
       AND d.next_attempt_at <= $1 AND (d.locked_until IS NULL OR d.locked_until <= $1)) \
     ORDER BY oldest";

/// The oldest `$3` due, unleased deliveries of webhook `$1` at `$2`. Ties on the due time go
/// in creation order (`rowid`, which the index carries, so no sort is needed).
const DUE_OF: &str = "SELECT id FROM deliveries WHERE webhook_id = $1 AND state = 'pending' \
     AND next_attempt_at <= $2 AND (locked_until IS NULL OR locked_until <= $2) \
     ORDER BY next_attempt_at, rowid LIMIT $3";

/// A lease: until `$1`, to node `$2`, of delivery `$3`, with a new fencing token.
const LEASE: &str = "UPDATE deliveries SET locked_until = $1, locked_by = $2, \
     lease_token = lease_token + 1 WHERE id = $3";

/// After a success: the lease (until `$1`, to `$2`) of webhook `$3`'s oldest due, unleased
/// delivery at `$4`, if the webhook is still enabled, in one statement (the order of
/// `DUE_OF`).
const LEASE_NEXT: &str = "UPDATE deliveries SET locked_until = $1, locked_by = $2, \
     lease_token = lease_token + 1 WHERE rowid = ( \
       SELECT d.rowid FROM deliveries d WHERE d.webhook_id = $3 \
       AND d.state = 'pending' AND d.next_attempt_at <= $4 \
       AND (d.locked_until IS NULL OR d.locked_until <= $4) \
       AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = $3 AND w.enabled = 1) \
       ORDER BY d.next_attempt_at, d.rowid LIMIT 1) \
     RETURNING id";

/// SQLite's own text, for the placeholder check in `store/mod.rs`.
#[cfg(test)]
pub(in crate::store) const SQLITE_SQL: &[&str] = &[DUE_WEBHOOKS, DUE_OF, LEASE, LEASE_NEXT];

static LOAD_CLAIMED: LazyLock<String> = LazyLock::new(|| format!("{}d.id = $1", *CLAIMED_SELECT));

/// Leases up to `limit` due deliveries to `node` until `lease_until`, at most `per_webhook`
/// in flight per webhook, inside the writer's transaction (nobody else can take them between
/// the read and the lease), and loads them there too, with their event and webhook. First
/// the webhooks with due work and free slots, oldest due first; then, for each, its oldest
/// due deliveries up to its free slots.
fn lease_due(
    conn: &Connection,
    node: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
    per_webhook: i64,
) -> Result<Vec<ClaimedDelivery>> {
    let webhooks: Vec<(String, i64)> = conn
        .prepare_cached(DUE_WEBHOOKS)?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut won: Vec<ClaimedDelivery> = Vec::new();
    for (webhook_id, inflight) in webhooks {
        let room = limit - i64::try_from(won.len()).unwrap_or(i64::MAX);
        if room <= 0 {
            break;
        }
        let free = (per_webhook - inflight).min(room);
        if free <= 0 {
            continue;
        }
        let due: Vec<String> = conn
            .prepare_cached(DUE_OF)?
            .query_map(params![webhook_id, now, free], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in due {
            conn.prepare_cached(LEASE)?
                .execute(params![lease_until, node, id])?;
            won.push(load(conn, &id)?);
        }
    }
    Ok(won)
}

/// Loads what sending leased delivery `id` takes.
fn load(conn: &Connection, id: &str) -> Result<ClaimedDelivery> {
    let mut stmt = conn.prepare_cached(&LOAD_CLAIMED)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => claimed_from_row(row),
        None => Err(crate::store::Error::other(format!(
            "leased delivery {id} has no event or webhook"
        ))),
    }
}

/// Records an attempt inside the writer's transaction: see
/// [`Deliveries::record_attempt_then_lease`].
fn record(
    conn: &Connection,
    delivery_id: &str,
    webhook_id: &str,
    result: &AttemptResult,
    next: Option<&NextLease>,
) -> Result<(Recorded, Option<ClaimedDelivery>)> {
    let a = &result.attempt;
    let updated = conn.prepare_cached(RECORD_OUTCOME)?.execute(params![
        result.state.as_str(),
        result.next_attempt_at,
        a.status_code,
        result.now,
        delivery_id,
        result.lease_token,
    ])?;
    if updated == 0 {
        // Either the webhook (and so the delivery) was deleted meanwhile, or another claim
        // took the delivery since this attempt's lease.
        let exists = conn
            .prepare_cached(DELIVERY_EXISTS)?
            .exists([delivery_id])?;
        let why = if exists {
            Recorded::StaleLease
        } else {
            Recorded::Gone
        };
        return Ok((why, None));
    }
    insert_attempt(conn, delivery_id, a)?;
    if a.error_class.is_some() {
        record_failure(conn, delivery_id, webhook_id, result)?;
        return Ok((Recorded::Recorded, None));
    }
    if result.webhook_was_failing {
        conn.prepare_cached(END_FAILING_RUN)?
            .execute([webhook_id])?;
    }
    let Some(next) = next else {
        return Ok((Recorded::Recorded, None));
    };
    let leased: Option<String> = conn
        .prepare_cached(LEASE_NEXT)?
        .query_row(
            params![next.lease_until, next.node, webhook_id, next.now],
            |r| r.get(0),
        )
        .optional()?;
    let claimed = leased.map(|id| load(conn, &id)).transpose()?;
    Ok((Recorded::Recorded, claimed))
}

fn insert_attempt(conn: &Connection, delivery_id: &str, a: &AttemptRecord) -> Result<()> {
    conn.prepare_cached(INSERT_ATTEMPT)?.execute(params![
        delivery_id,
        a.attempt,
        a.started_at,
        a.duration_ms,
        a.status_code,
        a.error_class,
        a.error,
        a.request_url,
        a.request_headers,
        a.response_headers,
        a.response_body,
        a.node,
        a.response_headers_omitted,
    ])?;
    Ok(())
}

/// After a failed attempt: the first failure after a success starts the webhook's run of
/// failures; a 410, or a run older than `auto_disable_before`, disables the webhook, with its
/// audit row.
fn record_failure(
    conn: &Connection,
    delivery_id: &str,
    webhook_id: &str,
    result: &AttemptResult,
) -> Result<()> {
    conn.prepare_cached(START_FAILING_RUN)?
        .execute(params![result.attempt.started_at, webhook_id])?;
    let failing_since = match (&result.disable_webhook, result.auto_disable_before) {
        (None, Some(cutoff)) => conn
            .prepare_cached(FAILING_SINCE)?
            .query_row(params![webhook_id, cutoff], |r| r.get(0))
            .optional()?,
        _ => None,
    };
    if let Some(reason) = disable_reason(result, failing_since)
        && disable(conn, webhook_id, &reason, result.now)?
    {
        audit_webhook(
            conn,
            webhook_id,
            SYSTEM_ACTOR,
            AuditAction::WebhookDisabled,
            disabled_details(&reason, delivery_id, result),
        )?;
    }
    Ok(())
}

#[async_trait]
impl Deliveries for Sqlite {
    async fn claim_deliveries(
        &self,
        node: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
        per_webhook: i64,
    ) -> Result<Vec<ClaimedDelivery>> {
        let node = node.to_owned();
        self.write(move |conn| lease_due(conn, &node, now, lease_until, limit, per_webhook))
            .await
    }

    async fn record_attempt_then_lease(
        &self,
        delivery_id: &str,
        webhook_id: &str,
        result: &AttemptResult,
        next: Option<NextLease>,
    ) -> Result<(Recorded, Option<ClaimedDelivery>)> {
        let (delivery_id, webhook_id, result) = (
            delivery_id.to_owned(),
            webhook_id.to_owned(),
            result.clone(),
        );
        self.write(move |conn| record(conn, &delivery_id, &webhook_id, &result, next.as_ref()))
            .await
    }

    async fn release_leases(&self, node: &str) -> Result<u64> {
        let node = node.to_owned();
        self.write(move |conn| Ok(conn.prepare_cached(RELEASE_LEASES)?.execute([node])? as u64))
            .await
    }

    async fn release_every_lease(&self) -> Result<u64> {
        self.write(|conn| Ok(conn.prepare_cached(RELEASE_EVERY_LEASE)?.execute([])? as u64))
            .await
    }

    async fn next_due_at(&self) -> Result<Option<i64>> {
        self.read(|conn| Ok(conn.prepare_cached(NEXT_DUE)?.query_row([], |r| r.get(0))?))
    }

    async fn queue_stats(&self, now: i64) -> Result<QueueStats> {
        self.read(|conn| {
            Ok(conn.prepare_cached(QUEUE_STATS)?.query_row([now], |r| {
                Ok(QueueStats {
                    pending: r.get("pending")?,
                    due: r.get("due")?,
                    oldest_due_at: r.get("oldest")?,
                })
            })?)
        })
    }

    /// SQLite writes a changed row over the old one (in its WAL, which checkpoints fold back
    /// into the file) and reuses freed pages: no dead versions pile up in the queue's indexes.
    async fn tend_queue(&self, _min_dead_rows: u64) -> Result<Tending> {
        Ok(Tending::NothingToTend)
    }

    async fn list_deliveries(
        &self,
        webhook_id: &str,
        state: Option<DeliveryState>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>> {
        self.read(|conn| {
            decode_all(
                conn,
                LIST_DELIVERIES,
                params![webhook_id, state.map(DeliveryState::as_str), before, limit],
                |r| delivery_from_row(r),
            )
        })
    }

    async fn get_delivery(
        &self,
        webhook_id: &str,
        id: &str,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptRecord>)>> {
        self.read(|conn| {
            let Some(delivery) = decode_all(conn, GET_DELIVERY, params![webhook_id, id], |r| {
                delivery_from_row(r)
            })?
            .pop() else {
                return Ok(None);
            };
            let attempts = decode_all(conn, LIST_ATTEMPTS, [id], |r| attempt_from_row(r))?;
            Ok(Some((delivery, attempts)))
        })
    }

    async fn redeliver(&self, webhook_id: &str, id: &str, actor: &str) -> Result<bool> {
        let (webhook_id, id, actor) = (webhook_id.to_owned(), id.to_owned(), actor.to_owned());
        self.write(move |conn| {
            let done =
                conn.prepare_cached(REDELIVER)?
                    .execute(params![now_micros(), webhook_id, id])?;
            if done == 0 {
                return Ok(false);
            }
            audit_webhook(
                conn,
                &webhook_id,
                &actor,
                AuditAction::WebhookRedelivered,
                redelivered_details(&id),
            )?;
            Ok(true)
        })
        .await
    }

    async fn replay_failed(&self, webhook_id: &str, since: i64, actor: &str) -> Result<u64> {
        let (webhook_id, actor) = (webhook_id.to_owned(), actor.to_owned());
        self.write(move |conn| {
            let requeued = conn.prepare_cached(REPLAY_FAILED)?.execute(params![
                now_micros(),
                webhook_id,
                since
            ])? as u64;
            audit_webhook(
                conn,
                &webhook_id,
                &actor,
                AuditAction::WebhookReplayed,
                replayed_details(since, requeued),
            )?;
            Ok(requeued)
        })
        .await
    }

    async fn attempt_outcomes(&self, webhook_id: &str, since: i64) -> Result<Vec<(i64, bool)>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(ATTEMPT_OUTCOMES)?
                .query_map(params![webhook_id, since], |r| {
                    Ok((r.get(0)?, r.get::<_, Option<String>>(1)?.is_none()))
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn purge_before(&self, cutoff: i64, batch: i64) -> Result<u64> {
        self.write(move |conn| {
            let attempts = conn
                .prepare_cached(PURGE_ATTEMPTS)?
                .execute(params![cutoff, batch])?;
            let deliveries = conn
                .prepare_cached(PURGE_DELIVERIES)?
                .execute(params![cutoff, batch])?;
            Ok((attempts + deliveries) as u64)
        })
        .await
    }
}
