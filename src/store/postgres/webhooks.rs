//! [`Webhooks`] on PostgreSQL: each change one transaction with its audit rows. Event writers
//! do not take turns here, so disabling notes the feed horizon and enabling locks the
//! webhook's row against the events in flight: see [`disable`] and `events::fan_out`.

use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::{PgConnection, Row};

use super::{Postgres, audit_webhook, insert_audit, webhook_target};
use crate::domain::{EventTrigger, name_key};
use crate::store::audit::{AuditAction, AuditEntry, iso, webhook_summary};
use crate::store::deliveries::new_delivery_id;
use crate::store::events::FEED_HORIZON;
use crate::store::webhooks::{
    COUNT_WEBHOOKS, DELETE_WEBHOOK, ENABLE, ENABLE_FAILED, ENABLE_PENDING, EnableOutcome,
    GET_WEBHOOK, GET_WEBHOOK_BY_NAME, INSERT_MISSED, LIST_WEBHOOKS, MISSED_SINCE_SEQ,
    ROTATE_SIGNING_KEY, SaveWebhooks, WEBHOOK_BY_ID, WebhookRecord, WebhookWrite, Webhooks,
    additions, enabled_details, insert_webhook, trigger_of, update_entries, update_webhook,
    webhook_from_row,
};
use crate::store::{Result, now_micros};

/// Created disabled: the horizon, as [`disable`] notes it.
static INSERT_WEBHOOK: LazyLock<String> = LazyLock::new(|| {
    insert_webhook(
        ", disabled_after_xid",
        &format!(", CASE WHEN $10 = 0 THEN {FEED_HORIZON} END"),
    )
});

/// Disabled here: the horizon, as [`disable`] notes it; enabled: none.
static UPDATE_WEBHOOK: LazyLock<String> = LazyLock::new(|| {
    update_webhook(&format!(
        "disabled_after_xid = CASE WHEN $7 = 0 AND enabled = 1 THEN {FEED_HORIZON} \
         WHEN $7 = 1 THEN NULL ELSE disabled_after_xid END, "
    ))
});

static WEBHOOK_FOR_UPDATE: LazyLock<String> =
    LazyLock::new(|| format!("{WEBHOOK_BY_ID} FOR UPDATE"));

static DISABLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE webhooks SET enabled = 0, disabled_reason = $1, updated_at = $2, \
         disabled_after_seq = (SELECT COALESCE(MAX(seq), 0) FROM events), \
         disabled_after_xid = {FEED_HORIZON} WHERE id = $3 AND enabled = 1"
    )
});

/// Re-enabling: the webhook's state, locked `FOR NO KEY UPDATE`: it keeps other enables and
/// disables off this row, and waits for the events holding it `FOR SHARE` (see `fan_out`),
/// but not for an event's foreign-key check on it.
const ENABLE_ROW: &str = "SELECT workspace_id, triggers, enabled, failing_since, \
     disabled_after_seq, disabled_after_xid::text::bigint AS after_xid, created_at \
     FROM webhooks WHERE model_id = $1 AND id = $2 FOR NO KEY UPDATE";

/// Re-enabling: the model's events at or above the horizon of the disable (`$2`) since the
/// webhook was created (`$4`) that it has no delivery of.
const MISSED_SINCE_XID: &str = "SELECT e.seq, e.id, e.event_trigger FROM events e \
     WHERE e.workspace_id = $1 AND e.tx_id >= $2::text::xid8 AND e.model_id = $3 \
     AND e.occurred_at >= $4 AND NOT EXISTS ( \
       SELECT 1 FROM deliveries d WHERE d.webhook_id = $5 AND d.event_seq = e.seq) \
     ORDER BY e.seq";

/// Disables a webhook inside `tx`, noting where `enable_webhook` will look for the events it
/// missed: the feed horizon (`disabled_after_xid`, from [`FEED_HORIZON`]) and the newest
/// `seq`. True when it was enabled.
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
pub(super) async fn disable(
    tx: &mut PgConnection,
    webhook_id: &str,
    reason: &str,
    now: i64,
) -> Result<bool> {
    // The text holds placeholders only; every value is bound.
    let done = sqlx::query(sqlx::AssertSqlSafe(DISABLE.as_str()))
        .bind(reason)
        .bind(now)
        .bind(webhook_id)
        .execute(&mut *tx)
        .await?;
    let disabled = done.rows_affected() > 0;
    if disabled {
        tracing::warn!(webhook = %webhook_id, reason, "disabling the webhook");
    }
    Ok(disabled)
}

async fn insert(tx: &mut PgConnection, w: &WebhookRecord, actor: &str) -> Result<()> {
    // The text holds placeholders only; every value is bound.
    sqlx::query(sqlx::AssertSqlSafe(INSERT_WEBHOOK.as_str()))
        .bind(w.id.as_str())
        .bind(w.workspace_id)
        .bind(w.model_id)
        .bind(w.name.as_str())
        .bind(w.url.as_str())
        .bind(w.secret_enc.as_deref())
        .bind(serde_json::to_string(&w.triggers)?)
        .bind(serde_json::to_string(&w.headers)?)
        .bind(i64::from(w.github_actions))
        .bind(i64::from(w.enabled))
        .bind(w.disabled_reason.as_deref())
        .bind(w.signing_key_enc.as_str())
        .bind(w.created_at)
        .bind(name_key(&w.name))
        .execute(&mut *tx)
        .await?;
    if let Some((workspace_id, target)) = webhook_target(tx, &w.id).await? {
        let entry = AuditEntry {
            workspace_id,
            actor: actor.to_owned(),
            action: AuditAction::WebhookCreated,
            target,
            details: webhook_summary(w),
        };
        insert_audit(tx, &entry).await?;
    }
    Ok(())
}

/// `update_webhook` inside `tx`, the webhook's row locked: false when it is gone.
async fn update(tx: &mut PgConnection, w: &WebhookRecord, actor: &str) -> Result<bool> {
    // The text holds placeholders only; every value is bound.
    let old = sqlx::query(sqlx::AssertSqlSafe(WEBHOOK_FOR_UPDATE.as_str()))
        .bind(w.id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(old) = old.map(|r| webhook_from_row(&r, false)).transpose()? else {
        return Ok(false);
    };
    // The text holds placeholders only; every value is bound.
    let done = sqlx::query(sqlx::AssertSqlSafe(UPDATE_WEBHOOK.as_str()))
        .bind(w.name.as_str())
        .bind(w.url.as_str())
        .bind(w.secret_enc.as_deref())
        .bind(serde_json::to_string(&w.triggers)?)
        .bind(serde_json::to_string(&w.headers)?)
        .bind(i64::from(w.github_actions))
        .bind(i64::from(w.enabled))
        .bind(w.disabled_reason.as_deref())
        .bind(now_micros())
        .bind(name_key(&w.name))
        .bind(w.id.as_str())
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    if let Some((workspace_id, target)) = webhook_target(tx, &w.id).await? {
        for entry in update_entries(workspace_id, &target, &old, w, actor) {
            insert_audit(tx, &entry).await?;
        }
    }
    Ok(true)
}

/// Re-enables webhook `id` of model `model_id` inside `tx`: see
/// [`Webhooks::enable_webhook`].
async fn enable(
    tx: &mut PgConnection,
    model_id: i64,
    id: &str,
    actor: &str,
) -> Result<Option<EnableOutcome>> {
    let row = sqlx::query(ENABLE_ROW)
        .bind(model_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    if row.try_get::<i64, _>("enabled")? != 0 {
        return Ok(Some(EnableOutcome::default()));
    }
    let workspace_id: i64 = row.try_get("workspace_id")?;
    let triggers: Vec<EventTrigger> = serde_json::from_str(&row.try_get::<String, _>("triggers")?)?;
    let failing_since: Option<i64> = row.try_get("failing_since")?;
    let after_seq: Option<i64> = row.try_get("disabled_after_seq")?;
    let after_xid: Option<i64> = row.try_get("after_xid")?;
    let created_at: i64 = row.try_get("created_at")?;
    let now = now_micros();
    let mut outcome = EnableOutcome {
        pending: sqlx::query(ENABLE_PENDING)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        ..EnableOutcome::default()
    };
    if let Some(since) = failing_since {
        outcome.replayed_failed = sqlx::query(ENABLE_FAILED)
            .bind(now)
            .bind(id)
            .bind(since)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    // Which events it may have missed: those at or above the feed horizon of its disable
    // (see `disable`), whatever their seq; for webhooks disabled before migration 0010,
    // those after the newest seq of then. No event whose fan-out saw the webhook disabled
    // can commit after this scan: such an event holds the webhook's row `FOR SHARE` (see
    // `fan_out`), which `ENABLE_ROW` waited for.
    let missed = match (after_xid, after_seq) {
        (Some(xid), _) => Some(
            sqlx::query(MISSED_SINCE_XID)
                .bind(workspace_id)
                .bind(xid.to_string()),
        ),
        (None, Some(seq)) => Some(sqlx::query(MISSED_SINCE_SEQ).bind(workspace_id).bind(seq)),
        (None, None) => None,
    };
    if let Some(missed) = missed {
        let events = missed
            .bind(model_id)
            .bind(created_at)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        for e in &events {
            let trigger: String = e.try_get("event_trigger")?;
            if !triggers.contains(&trigger_of(&trigger)?) {
                continue;
            }
            sqlx::query(INSERT_MISSED)
                .bind(new_delivery_id())
                .bind(id)
                .bind(e.try_get::<i64, _>("seq")?)
                .bind(e.try_get::<String, _>("id")?)
                .bind(trigger)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            outcome.missed_events += 1;
        }
    }
    sqlx::query(ENABLE)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit_webhook(
        tx,
        id,
        actor,
        AuditAction::WebhookEnabled,
        enabled_details(&outcome),
    )
    .await?;
    Ok(Some(outcome))
}

#[async_trait]
impl Webhooks for Postgres {
    async fn count_webhooks(&self, model_id: i64) -> Result<i64> {
        Ok(sqlx::query(COUNT_WEBHOOKS)
            .bind(model_id)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    async fn create_webhook(&self, w: &WebhookRecord, actor: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert(&mut tx, w, actor).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn save_webhooks(
        &self,
        writes: &[WebhookWrite],
        max_per_model: i64,
        actor: &str,
    ) -> Result<SaveWebhooks> {
        let mut tx = self.pool.begin().await?;
        // In ascending model order, so two batches lock in the same order. A refusal
        // returns before the commit: the transaction is rolled back, nothing written.
        for (model_id, n) in additions(writes) {
            sqlx::query("SELECT id FROM models WHERE id = $1 FOR NO KEY UPDATE")
                .bind(model_id)
                .execute(&mut *tx)
                .await?;
            let have: i64 = sqlx::query(COUNT_WEBHOOKS)
                .bind(model_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            if have + n > max_per_model {
                return Ok(SaveWebhooks::TooMany {
                    model_id,
                    total: have + n,
                });
            }
        }
        for w in writes {
            match w {
                WebhookWrite::Create(r) => insert(&mut tx, r, actor).await?,
                WebhookWrite::Update(r) => {
                    if !update(&mut tx, r, actor).await? {
                        return Ok(SaveWebhooks::Missing { id: r.id.clone() });
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(SaveWebhooks::Saved)
    }

    async fn update_webhook(&self, w: &WebhookRecord, actor: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !update(&mut tx, w, actor).await? {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn list_webhooks(&self, model_id: i64) -> Result<Vec<WebhookRecord>> {
        let rows = sqlx::query(LIST_WEBHOOKS)
            .bind(model_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| webhook_from_row(r, true)).collect()
    }

    async fn get_webhook(&self, model_id: i64, id: &str) -> Result<Option<WebhookRecord>> {
        let row = sqlx::query(GET_WEBHOOK)
            .bind(model_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| webhook_from_row(&r, true)).transpose()
    }

    async fn get_webhook_by_name(
        &self,
        model_id: i64,
        name: &str,
    ) -> Result<Option<WebhookRecord>> {
        let row = sqlx::query(GET_WEBHOOK_BY_NAME)
            .bind(model_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| webhook_from_row(&r, false)).transpose()
    }

    async fn delete_webhook(&self, model_id: i64, id: &str, actor: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let target = webhook_target(&mut tx, id).await?;
        let done = sqlx::query(DELETE_WEBHOOK)
            .bind(model_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some((workspace_id, target)) = target {
            let entry = AuditEntry {
                workspace_id,
                actor: actor.to_owned(),
                action: AuditAction::WebhookDeleted,
                details: serde_json::json!({ "name": target.webhook_name }),
                target,
            };
            insert_audit(&mut tx, &entry).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn rotate_signing_key(
        &self,
        id: &str,
        new_enc: &str,
        old_enc: &str,
        old_expires_at: i64,
        actor: &str,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(ROTATE_SIGNING_KEY)
            .bind(new_enc)
            .bind(old_enc)
            .bind(old_expires_at)
            .bind(now_micros())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        audit_webhook(
            &mut tx,
            id,
            actor,
            AuditAction::WebhookSecretRotated,
            serde_json::json!({ "previousKeyExpiresAt": iso(old_expires_at) }),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn enable_webhook(
        &self,
        model_id: i64,
        id: &str,
        actor: &str,
    ) -> Result<Option<EnableOutcome>> {
        let mut tx = self.pool.begin().await?;
        let outcome = enable(&mut tx, model_id, id, actor).await?;
        tx.commit().await?;
        if outcome.is_some() {
            self.woke(1);
        }
        Ok(outcome)
    }
}
