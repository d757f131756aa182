//! [`Webhooks`] on SQLite: every change a closure on the group writer, with its audit rows in
//! the same transaction; reads on the calling thread. One writer, so no row locks: nothing
//! falls between a read and a write of the same job.

use std::sync::LazyLock;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Sqlite, audit_webhook, decode_all, insert_audit, webhook_target};
use crate::domain::{EventTrigger, name_key};
use crate::store::audit::{AuditAction, AuditEntry, iso, webhook_summary};
use crate::store::deliveries::new_delivery_id;
use crate::store::webhooks::{
    COUNT_WEBHOOKS, DELETE_WEBHOOK, ENABLE, ENABLE_FAILED, ENABLE_PENDING, EnableOutcome,
    GET_WEBHOOK, GET_WEBHOOK_BY_NAME, INSERT_MISSED, LIST_WEBHOOKS, MISSED_SINCE_SEQ,
    ROTATE_SIGNING_KEY, SaveWebhooks, WEBHOOK_BY_ID, WebhookRecord, WebhookWrite, Webhooks,
    additions, enabled_details, insert_webhook, trigger_of, update_entries, update_webhook,
    webhook_from_row,
};
use crate::store::{Result, now_micros};

static INSERT_WEBHOOK: LazyLock<String> = LazyLock::new(|| insert_webhook("", ""));
static UPDATE_WEBHOOK: LazyLock<String> = LazyLock::new(|| update_webhook(""));

/// Disables a webhook, noting the newest `seq`: `enable_webhook` sends it the events after
/// it. (One writer: `seq` is commit order, and no event falls between this and its fan-out.)
/// Every disable (410 Gone, auto-disable, a user) goes through here or through
/// `update_webhook`, which does the same.
const DISABLE: &str = "UPDATE webhooks SET enabled = 0, disabled_reason = $1, updated_at = $2, \
     disabled_after_seq = (SELECT COALESCE(MAX(seq), 0) FROM events) \
     WHERE id = $3 AND enabled = 1";

const WEBHOOK_EXISTS: &str = "SELECT 1 FROM webhooks WHERE id = $1";

/// Re-enabling: the webhook's state, to find what it missed.
const ENABLE_ROW: &str = "SELECT workspace_id, triggers, enabled, failing_since, \
     disabled_after_seq, created_at FROM webhooks WHERE model_id = $1 AND id = $2";

/// SQLite's own text, for the placeholder check in `store/mod.rs`.
#[cfg(test)]
pub(in crate::store) const SQLITE_SQL: &[&str] = &[DISABLE, WEBHOOK_EXISTS, ENABLE_ROW];

/// Disables an enabled webhook with `reason` inside the writer's transaction; true when it
/// was enabled.
pub(super) fn disable(conn: &Connection, webhook_id: &str, reason: &str, now: i64) -> Result<bool> {
    let done = conn
        .prepare_cached(DISABLE)?
        .execute(params![reason, now, webhook_id])?;
    let disabled = done > 0;
    if disabled {
        tracing::warn!(webhook = %webhook_id, reason, "disabling the webhook");
    }
    Ok(disabled)
}

fn insert(conn: &Connection, w: &WebhookRecord, actor: &str) -> Result<()> {
    conn.prepare_cached(&INSERT_WEBHOOK)?.execute(params![
        w.id,
        w.workspace_id,
        w.model_id,
        w.name,
        w.url.as_str(),
        w.secret_enc,
        serde_json::to_string(&w.triggers)?,
        serde_json::to_string(&w.headers)?,
        i64::from(w.github_actions),
        i64::from(w.enabled),
        w.disabled_reason,
        w.signing_key_enc,
        w.created_at,
        name_key(&w.name),
    ])?;
    if let Some((workspace_id, target)) = webhook_target(conn, &w.id)? {
        let entry = AuditEntry {
            workspace_id,
            actor: actor.to_owned(),
            action: AuditAction::WebhookCreated,
            target,
            details: webhook_summary(w),
        };
        insert_audit(conn, &entry)?;
    }
    Ok(())
}

/// `update_webhook` inside the writer's transaction: false when the webhook is gone.
fn update(conn: &Connection, w: &WebhookRecord, actor: &str) -> Result<bool> {
    let Some(old) = decode_all(conn, WEBHOOK_BY_ID, [&w.id], |r| webhook_from_row(r, false))?.pop()
    else {
        return Ok(false);
    };
    let done = conn.prepare_cached(&UPDATE_WEBHOOK)?.execute(params![
        w.name,
        w.url.as_str(),
        w.secret_enc,
        serde_json::to_string(&w.triggers)?,
        serde_json::to_string(&w.headers)?,
        i64::from(w.github_actions),
        i64::from(w.enabled),
        w.disabled_reason,
        now_micros(),
        name_key(&w.name),
        w.id,
    ])?;
    if done == 0 {
        return Ok(false);
    }
    if let Some((workspace_id, target)) = webhook_target(conn, &w.id)? {
        for entry in update_entries(workspace_id, &target, &old, w, actor) {
            insert_audit(conn, &entry)?;
        }
    }
    Ok(true)
}

/// Re-enables webhook `id` of model `model_id` inside the writer's transaction: see
/// [`Webhooks::enable_webhook`].
fn enable(
    conn: &Connection,
    model_id: i64,
    id: &str,
    actor: &str,
) -> Result<Option<EnableOutcome>> {
    type Row = (i64, String, i64, Option<i64>, Option<i64>, i64);
    let row: Option<Row> = conn
        .prepare_cached(ENABLE_ROW)?
        .query_row(params![model_id, id], |r| {
            Ok((
                r.get("workspace_id")?,
                r.get("triggers")?,
                r.get("enabled")?,
                r.get("failing_since")?,
                r.get("disabled_after_seq")?,
                r.get("created_at")?,
            ))
        })
        .optional()?;
    let Some((workspace_id, triggers, enabled, failing_since, after_seq, created_at)) = row else {
        return Ok(None);
    };
    if enabled != 0 {
        return Ok(Some(EnableOutcome::default()));
    }
    let triggers: Vec<EventTrigger> = serde_json::from_str(&triggers)?;
    let now = now_micros();
    let mut outcome = EnableOutcome {
        pending: conn
            .prepare_cached(ENABLE_PENDING)?
            .execute(params![now, id])? as u64,
        ..EnableOutcome::default()
    };
    if let Some(since) = failing_since {
        outcome.replayed_failed = conn
            .prepare_cached(ENABLE_FAILED)?
            .execute(params![now, id, since])? as u64;
    }
    if let Some(seq) = after_seq {
        let events: Vec<(i64, String, String)> = conn
            .prepare_cached(MISSED_SINCE_SEQ)?
            .query_map(params![workspace_id, seq, model_id, created_at, id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut insert = conn.prepare_cached(INSERT_MISSED)?;
        for (seq, event_id, trigger) in events {
            if !triggers.contains(&trigger_of(&trigger)?) {
                continue;
            }
            insert.execute(params![new_delivery_id(), id, seq, event_id, trigger, now])?;
            outcome.missed_events += 1;
        }
    }
    conn.prepare_cached(ENABLE)?.execute(params![now, id])?;
    audit_webhook(
        conn,
        id,
        actor,
        AuditAction::WebhookEnabled,
        enabled_details(&outcome),
    )?;
    Ok(Some(outcome))
}

#[async_trait]
impl Webhooks for Sqlite {
    async fn count_webhooks(&self, model_id: i64) -> Result<i64> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(COUNT_WEBHOOKS)?
                .query_row([model_id], |r| r.get(0))?)
        })
    }

    async fn create_webhook(&self, w: &WebhookRecord, actor: &str) -> Result<()> {
        let (w, actor) = (w.clone(), actor.to_owned());
        self.write(move |conn| insert(conn, &w, &actor)).await
    }

    async fn save_webhooks(
        &self,
        writes: &[WebhookWrite],
        max_per_model: i64,
        actor: &str,
    ) -> Result<SaveWebhooks> {
        let (writes, actor) = (writes.to_vec(), actor.to_owned());
        self.write(move |conn| {
            // Every refusal is found before anything is written (one writer: nothing changes
            // in between), so a refused batch leaves no trace.
            for (model_id, n) in additions(&writes) {
                let have: i64 = conn
                    .prepare_cached(COUNT_WEBHOOKS)?
                    .query_row([model_id], |r| r.get(0))?;
                if have + n > max_per_model {
                    return Ok(SaveWebhooks::TooMany {
                        model_id,
                        total: have + n,
                    });
                }
            }
            for w in &writes {
                if let WebhookWrite::Update(r) = w
                    && !conn.prepare_cached(WEBHOOK_EXISTS)?.exists([&r.id])?
                {
                    return Ok(SaveWebhooks::Missing { id: r.id.clone() });
                }
            }
            for w in &writes {
                match w {
                    WebhookWrite::Create(r) => insert(conn, r, &actor)?,
                    WebhookWrite::Update(r) => {
                        update(conn, r, &actor)?;
                    }
                }
            }
            Ok(SaveWebhooks::Saved)
        })
        .await
    }

    async fn update_webhook(&self, w: &WebhookRecord, actor: &str) -> Result<bool> {
        let (w, actor) = (w.clone(), actor.to_owned());
        self.write(move |conn| update(conn, &w, &actor)).await
    }

    async fn list_webhooks(&self, model_id: i64) -> Result<Vec<WebhookRecord>> {
        self.read(|conn| {
            decode_all(conn, LIST_WEBHOOKS, [model_id], |r| {
                webhook_from_row(r, true)
            })
        })
    }

    async fn get_webhook(&self, model_id: i64, id: &str) -> Result<Option<WebhookRecord>> {
        self.read(|conn| {
            Ok(decode_all(conn, GET_WEBHOOK, params![model_id, id], |r| {
                webhook_from_row(r, true)
            })?
            .pop())
        })
    }

    async fn get_webhook_by_name(
        &self,
        model_id: i64,
        name: &str,
    ) -> Result<Option<WebhookRecord>> {
        self.read(|conn| {
            Ok(
                decode_all(conn, GET_WEBHOOK_BY_NAME, params![model_id, name], |r| {
                    webhook_from_row(r, false)
                })?
                .pop(),
            )
        })
    }

    async fn delete_webhook(&self, model_id: i64, id: &str, actor: &str) -> Result<bool> {
        let (id, actor) = (id.to_owned(), actor.to_owned());
        self.write(move |conn| {
            let target = webhook_target(conn, &id)?;
            let done = conn
                .prepare_cached(DELETE_WEBHOOK)?
                .execute(params![model_id, id])?;
            if done == 0 {
                return Ok(false);
            }
            if let Some((workspace_id, target)) = target {
                let entry = AuditEntry {
                    workspace_id,
                    actor,
                    action: AuditAction::WebhookDeleted,
                    details: serde_json::json!({ "name": target.webhook_name }),
                    target,
                };
                insert_audit(conn, &entry)?;
            }
            Ok(true)
        })
        .await
    }

    async fn rotate_signing_key(
        &self,
        id: &str,
        new_enc: &str,
        old_enc: &str,
        old_expires_at: i64,
        actor: &str,
    ) -> Result<bool> {
        let (id, new_enc, old_enc, actor) = (
            id.to_owned(),
            new_enc.to_owned(),
            old_enc.to_owned(),
            actor.to_owned(),
        );
        self.write(move |conn| {
            let done = conn.prepare_cached(ROTATE_SIGNING_KEY)?.execute(params![
                new_enc,
                old_enc,
                old_expires_at,
                now_micros(),
                id
            ])?;
            if done == 0 {
                return Ok(false);
            }
            audit_webhook(
                conn,
                &id,
                &actor,
                AuditAction::WebhookSecretRotated,
                serde_json::json!({ "previousKeyExpiresAt": iso(old_expires_at) }),
            )?;
            Ok(true)
        })
        .await
    }

    async fn enable_webhook(
        &self,
        model_id: i64,
        id: &str,
        actor: &str,
    ) -> Result<Option<EnableOutcome>> {
        let (id, actor) = (id.to_owned(), actor.to_owned());
        let outcome = self
            .write(move |conn| enable(conn, model_id, &id, &actor))
            .await?;
        self.wake.notify_one();
        Ok(outcome)
    }
}
