//! Webhooks: configuration rows (secrets already sealed by the caller), their signing keys,
//! enabling (with what a disabled webhook missed) and deleting. Their deliveries are in
//! `deliveries.rs`.

use sqlx::Row;

use super::audit::{AuditAction, AuditEntry, iso, webhook_changes, webhook_summary};
use super::deliveries::new_delivery_id;
use super::events::FEED_HORIZON;
use super::group::Db;
use super::{Backend, Store, now_micros};
use crate::domain::{DeliveryState, EventTrigger, WebhookUrl, name_key};

/// A webhook as stored. Secret fields are AES-GCM ciphertexts (see `delivery::crypto`).
#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub id: String,
    pub workspace_id: i64,
    pub model_id: i64,
    pub name: String,
    pub url: WebhookUrl,
    pub secret_enc: Option<String>,
    pub triggers: Vec<EventTrigger>,
    pub headers: Vec<(String, String)>,
    pub github_actions: bool,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub signing_key_enc: String,
    pub old_signing_key_enc: Option<String>,
    pub old_signing_expires_at: Option<i64>,
    /// Since when every attempt has failed (microseconds), or `None` after a success.
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The newest delivery's state and status code, when there is one.
    pub last_delivery: Option<(DeliveryState, Option<i64>)>,
}

/// One change of a batch given to [`Store::save_webhooks`].
#[derive(Debug, Clone)]
pub enum WebhookWrite {
    Create(WebhookRecord),
    Update(WebhookRecord),
}

/// What [`Store::save_webhooks`] did. Anything but `Saved` wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveWebhooks {
    Saved,
    /// Model `model_id` would have `total` webhooks, more than the limit.
    TooMany {
        model_id: i64,
        total: i64,
    },
    /// A webhook to update no longer exists.
    Missing {
        id: String,
    },
}

/// What re-enabling a webhook queued (see [`Store::enable_webhook`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct EnableOutcome {
    /// Deliveries that had failed while the webhook kept failing, queued again.
    pub replayed_failed: u64,
    /// Events that happened while it was disabled, now queued for it.
    pub missed_events: u64,
    /// Deliveries that were still waiting, now due.
    pub pending: u64,
}

fn json_err(e: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// A stored delivery state.
pub(super) fn state_of(value: &str) -> Result<DeliveryState, sqlx::Error> {
    DeliveryState::parse("state", value)
        .map_err(|e| sqlx::Error::Decode(format!("deliveries.state: {}", e.message).into()))
}

/// A stored trigger name.
pub(super) fn trigger_of(value: &str) -> Result<EventTrigger, sqlx::Error> {
    EventTrigger::from_str_opt(value)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown stored trigger `{value}`").into()))
}

pub(super) const WEBHOOK_COLUMNS: &str = "w.id, w.workspace_id, w.model_id, w.name, w.url, w.secret_enc, \
    w.triggers, w.headers, w.github_actions, w.enabled, w.disabled_reason, w.signing_key_enc, \
    w.old_signing_key_enc, w.old_signing_expires_at, w.failing_since, w.created_at, \
    w.updated_at";

/// The newest delivery's state and status code, for `webhook_from_row(_, true)`.
const LAST_DELIVERY_COLUMNS: &str = "\
    (SELECT d.state FROM deliveries d WHERE d.webhook_id = w.id \
     ORDER BY d.id DESC LIMIT 1) AS last_state, \
    (SELECT d.last_status_code FROM deliveries d WHERE d.webhook_id = w.id \
     ORDER BY d.id DESC LIMIT 1) AS last_code";

/// A result row of either driver (`sqlx` or the SQLite writer's `rusqlite`), read by column
/// name: what the row decoders shared by both need.
pub(super) trait Columns {
    fn text(&self, name: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, name: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, name: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, name: &str) -> Result<Option<i64>, sqlx::Error>;
}

impl Columns for sqlx::any::AnyRow {
    fn text(&self, name: &str) -> Result<String, sqlx::Error> {
        self.try_get(name)
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(name)
    }
    fn int(&self, name: &str) -> Result<i64, sqlx::Error> {
        self.try_get(name)
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(name)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, name: &str) -> Result<String, sqlx::Error> {
        self.get(name).db()
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>, sqlx::Error> {
        self.get(name).db()
    }
    fn int(&self, name: &str) -> Result<i64, sqlx::Error> {
        self.get(name).db()
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>, sqlx::Error> {
        self.get(name).db()
    }
}

pub(super) fn webhook_from_row(
    row: &impl Columns,
    with_last: bool,
) -> Result<WebhookRecord, sqlx::Error> {
    let last_delivery = if with_last {
        match row.opt_text("last_state")? {
            Some(s) => Some((state_of(&s)?, row.opt_int("last_code")?)),
            None => None,
        }
    } else {
        None
    };
    Ok(WebhookRecord {
        id: row.text("id")?,
        workspace_id: row.int("workspace_id")?,
        model_id: row.int("model_id")?,
        name: row.text("name")?,
        url: WebhookUrl::stored(&row.text("url")?).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        secret_enc: row.opt_text("secret_enc")?,
        triggers: serde_json::from_str(&row.text("triggers")?).map_err(json_err)?,
        headers: serde_json::from_str(&row.text("headers")?).map_err(json_err)?,
        github_actions: row.int("github_actions")? != 0,
        enabled: row.int("enabled")? != 0,
        disabled_reason: row.opt_text("disabled_reason")?,
        signing_key_enc: row.text("signing_key_enc")?,
        old_signing_key_enc: row.opt_text("old_signing_key_enc")?,
        old_signing_expires_at: row.opt_int("old_signing_expires_at")?,
        failing_since: row.opt_int("failing_since")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
        last_delivery,
    })
}

/// True when a webhook's stored trigger list (a JSON array) holds `trigger`.
pub(super) fn subscribed(triggers: &str, trigger: EventTrigger) -> Result<bool, sqlx::Error> {
    let triggers: Vec<EventTrigger> = serde_json::from_str(triggers).map_err(json_err)?;
    Ok(triggers.contains(&trigger))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(v).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

impl Store {
    /// Inserts a webhook, with its `webhook.created` audit row. A name taken on this model is a
    /// unique violation.
    /// How many webhooks model `model_id` has.
    pub async fn count_webhooks(&self, model_id: i64) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) AS n FROM webhooks WHERE model_id = $1")
            .bind(model_id)
            .fetch_one(&self.read)
            .await?
            .try_get("n")
    }

    pub async fn create_webhook(&self, w: &WebhookRecord, actor: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        self.insert_webhook(&mut tx, w, actor).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes a batch of webhook changes in one transaction, as `actor`: all of them, or,
    /// when a model would pass `max_per_model` webhooks or a webhook to update is gone,
    /// none. The count is taken inside the transaction, under a lock on each model the
    /// batch adds to (PostgreSQL; SQLite's writer is alone), so concurrent batches cannot
    /// pass the limit together.
    pub async fn save_webhooks(
        &self,
        writes: &[WebhookWrite],
        max_per_model: i64,
        actor: &str,
    ) -> Result<SaveWebhooks, sqlx::Error> {
        let mut adding: std::collections::BTreeMap<i64, i64> = Default::default();
        for w in writes {
            if let WebhookWrite::Create(r) = w {
                *adding.entry(r.model_id).or_default() += 1;
            }
        }
        let mut tx = self.begin().await?;
        // In ascending model order, so two batches lock in the same order.
        for (&model_id, &n) in &adding {
            if self.backend == Backend::Postgres {
                sqlx::query("SELECT id FROM models WHERE id = $1 FOR NO KEY UPDATE")
                    .bind(model_id)
                    .execute(&mut *tx)
                    .await?;
            }
            let have: i64 = sqlx::query("SELECT COUNT(*) AS n FROM webhooks WHERE model_id = $1")
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
                WebhookWrite::Create(r) => self.insert_webhook(&mut tx, r, actor).await?,
                WebhookWrite::Update(r) => {
                    if !self.update_webhook_in(&mut tx, r, actor).await? {
                        return Ok(SaveWebhooks::Missing { id: r.id.clone() });
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(SaveWebhooks::Saved)
    }

    /// Inserts a webhook and its `webhook.created` audit row inside `tx`.
    async fn insert_webhook(
        &self,
        tx: &mut sqlx::AnyConnection,
        w: &WebhookRecord,
        actor: &str,
    ) -> Result<(), sqlx::Error> {
        // Created disabled: the same notes as `disable`'s.
        let (column, horizon) = match self.backend {
            Backend::Sqlite => ("", String::new()),
            Backend::Postgres => (
                ", disabled_after_xid",
                format!(", CASE WHEN $10 = 0 THEN {FEED_HORIZON} END"),
            ),
        };
        // The text holds placeholders only; every value is bound.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO webhooks (id, workspace_id, model_id, name, url, secret_enc, triggers, \
             headers, github_actions, enabled, disabled_reason, signing_key_enc, created_at, \
             updated_at, disabled_after_seq, name_key{column}) VALUES ($1, $2, $3, $4, $5, $6, \
             $7, $8, $9, $10, $11, $12, $13, $13, \
             CASE WHEN $10 = 0 THEN (SELECT COALESCE(MAX(seq), 0) FROM events) END, \
             $14{horizon})"
        )))
        .bind(w.id.as_str())
        .bind(w.workspace_id)
        .bind(w.model_id)
        .bind(w.name.as_str())
        .bind(w.url.as_str())
        .bind(w.secret_enc.as_deref())
        .bind(encode(&w.triggers)?)
        .bind(encode(&w.headers)?)
        .bind(i64::from(w.github_actions))
        .bind(i64::from(w.enabled))
        .bind(w.disabled_reason.as_deref())
        .bind(w.signing_key_enc.as_str())
        .bind(w.created_at)
        .bind(name_key(&w.name))
        .execute(&mut *tx)
        .await?;
        if let Some((workspace_id, target)) = self.webhook_target(tx, &w.id).await? {
            let entry = AuditEntry {
                workspace_id,
                actor: actor.to_owned(),
                action: AuditAction::WebhookCreated,
                target,
                details: webhook_summary(w),
            };
            self.insert_audit(tx, &entry).await?;
        }
        Ok(())
    }

    /// Replaces a webhook's configuration (not its signing keys), with audit rows for what
    /// changed: `webhook.updated` (which fields) and `webhook.enabled` / `webhook.disabled`.
    pub async fn update_webhook(
        &self,
        w: &WebhookRecord,
        actor: &str,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        if !self.update_webhook_in(&mut tx, w, actor).await? {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// `update_webhook` inside `tx`: false when the webhook is gone.
    async fn update_webhook_in(
        &self,
        tx: &mut sqlx::AnyConnection,
        w: &WebhookRecord,
        actor: &str,
    ) -> Result<bool, sqlx::Error> {
        let lock = if self.backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.id = $1{lock}"
        ));
        let old = sqlx::query(sql)
            .bind(w.id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(old) = old
            .as_ref()
            .map(|r| webhook_from_row(r, false))
            .transpose()?
        else {
            return Ok(false);
        };
        // Disabled here: the same notes as `disable`'s.
        let horizon = match self.backend {
            Backend::Sqlite => String::new(),
            Backend::Postgres => format!(
                "disabled_after_xid = CASE WHEN $8 = 0 AND enabled = 1 THEN {FEED_HORIZON} \
                 WHEN $8 = 1 THEN NULL ELSE disabled_after_xid END, "
            ),
        };
        // The text holds placeholders only; every value is bound.
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE webhooks SET name = $2, url = $3, secret_enc = $4, triggers = $5, \
             headers = $6, github_actions = $7, enabled = $8, disabled_reason = $9, \
             updated_at = $10, \
             disabled_after_seq = CASE WHEN $8 = 0 AND enabled = 1 \
               THEN (SELECT COALESCE(MAX(seq), 0) FROM events) \
               WHEN $8 = 1 THEN NULL ELSE disabled_after_seq END, {horizon}\
             failing_since = CASE WHEN $8 = 1 AND enabled = 0 THEN NULL ELSE failing_since END, \
             name_key = CASE WHEN name_key IS NULL AND name = $2 THEN NULL ELSE $11 END \
             WHERE id = $1"
        )))
        .bind(w.id.as_str())
        .bind(w.name.as_str())
        .bind(w.url.as_str())
        .bind(w.secret_enc.as_deref())
        .bind(encode(&w.triggers)?)
        .bind(encode(&w.headers)?)
        .bind(i64::from(w.github_actions))
        .bind(i64::from(w.enabled))
        .bind(w.disabled_reason.as_deref())
        .bind(now_micros())
        .bind(name_key(&w.name))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some((workspace_id, target)) = self.webhook_target(tx, &w.id).await? {
            let mut entries = Vec::new();
            if let Some(details) = webhook_changes(&old, w) {
                entries.push((AuditAction::WebhookUpdated, details));
            }
            if old.enabled != w.enabled {
                let action = if w.enabled {
                    AuditAction::WebhookEnabled
                } else {
                    AuditAction::WebhookDisabled
                };
                entries.push((
                    action,
                    serde_json::json!({ "reason": w.disabled_reason, "previousReason": old.disabled_reason }),
                ));
            }
            for (action, details) in entries {
                let entry = AuditEntry {
                    workspace_id,
                    actor: actor.to_owned(),
                    action,
                    target: target.clone(),
                    details,
                };
                self.insert_audit(tx, &entry).await?;
            }
        }
        Ok(true)
    }

    /// The webhooks of a model, by name, each with its newest delivery's outcome.
    pub async fn list_webhooks(&self, model_id: i64) -> Result<Vec<WebhookRecord>, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {WEBHOOK_COLUMNS}, {LAST_DELIVERY_COLUMNS} FROM webhooks w WHERE w.model_id = $1 ORDER BY w.name, w.id"
        ));
        let rows = sqlx::query(sql)
            .bind(model_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| webhook_from_row(r, true)).collect()
    }

    pub async fn get_webhook(
        &self,
        model_id: i64,
        id: &str,
    ) -> Result<Option<WebhookRecord>, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {WEBHOOK_COLUMNS}, {LAST_DELIVERY_COLUMNS} FROM webhooks w WHERE w.model_id = $1 AND w.id = $2"
        ));
        let row = sqlx::query(sql)
            .bind(model_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(|r| webhook_from_row(r, true)).transpose()
    }

    pub async fn get_webhook_by_name(
        &self,
        model_id: i64,
        name: &str,
    ) -> Result<Option<WebhookRecord>, sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.model_id = $1 AND w.name = $2"
        ));
        let row = sqlx::query(sql)
            .bind(model_id)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(|r| webhook_from_row(r, false)).transpose()
    }

    /// Deletes a webhook and, with it, its pending deliveries and log. From the moment this
    /// commits, the webhook receives nothing more.
    pub async fn delete_webhook(
        &self,
        model_id: i64,
        id: &str,
        actor: &str,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let target = self.webhook_target(&mut tx, id).await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE model_id = $1 AND id = $2")
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
            self.insert_audit(&mut tx, &entry).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces the signing key, keeping the previous one valid until `old_expires_at`.
    pub async fn rotate_signing_key(
        &self,
        id: &str,
        new_enc: &str,
        old_enc: &str,
        old_expires_at: i64,
        actor: &str,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE webhooks SET signing_key_enc = $2, old_signing_key_enc = $3, \
             old_signing_expires_at = $4, updated_at = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(new_enc)
        .bind(old_enc)
        .bind(old_expires_at)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.audit_webhook(
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

    /// Writes an audit row about webhook `id` inside `tx`.
    pub(super) async fn audit_webhook(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
        actor: &str,
        action: AuditAction,
        details: serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        if let Some((workspace_id, target)) = self.webhook_target(tx, id).await? {
            let entry = AuditEntry {
                workspace_id,
                actor: actor.to_owned(),
                action,
                target,
                details,
            };
            self.insert_audit(tx, &entry).await?;
        }
        Ok(())
    }
}

impl Store {
    /// Re-enables a disabled webhook and queues what it missed, in one transaction: the
    /// deliveries that failed since its failures began, the model's events since it was
    /// disabled that it was not sent (it subscribes to their trigger, and they came after
    /// the webhook was created), and the deliveries still waiting, all due now. They share
    /// one due time, so the worker claims them in delivery id order, which is event order.
    /// Answers `None` when there is no such webhook; an enabled webhook is left as it is.
    pub async fn enable_webhook(
        &self,
        model_id: i64,
        id: &str,
        actor: &str,
    ) -> Result<Option<EnableOutcome>, sqlx::Error> {
        let mut tx = self.begin().await?;
        // NO KEY UPDATE on PostgreSQL: it keeps other enables and disables off this row, and
        // waits for the events holding it `FOR SHARE` (see `fan_out`), but not for an event's
        // foreign-key check on it.
        let row = sqlx::query(self.pick((
            "SELECT workspace_id, triggers, enabled, failing_since, disabled_after_seq, \
             NULL AS after_xid, created_at FROM webhooks WHERE model_id = $1 AND id = $2",
            "SELECT workspace_id, triggers, enabled, failing_since, disabled_after_seq, \
             disabled_after_xid::text::bigint AS after_xid, created_at FROM webhooks \
             WHERE model_id = $1 AND id = $2 FOR NO KEY UPDATE",
        )))
        .bind(model_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        if row.try_get::<i64, _>("enabled")? != 0 {
            return Ok(Some(EnableOutcome::default()));
        }
        let workspace_id: i64 = row.try_get("workspace_id")?;
        let triggers: String = row.try_get("triggers")?;
        let triggers: Vec<EventTrigger> = serde_json::from_str(&triggers).map_err(json_err)?;
        let failing_since: Option<i64> = row.try_get("failing_since")?;
        let after_seq: Option<i64> = row.try_get("disabled_after_seq")?;
        let after_xid: Option<i64> = row.try_get("after_xid")?;
        let created_at: i64 = row.try_get("created_at")?;
        let now = now_micros();
        let pending = sqlx::query(
            "UPDATE deliveries SET next_attempt_at = $2, schedule_offset = attempt_count, \
             updated_at = $2 WHERE webhook_id = $1 AND state = 'pending'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let replayed_failed = match failing_since {
            Some(since) => sqlx::query(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = $3, \
                 schedule_offset = attempt_count, updated_at = $3 \
                 WHERE webhook_id = $1 AND state = 'failed' AND updated_at >= $2",
            )
            .bind(id)
            .bind(since)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            None => 0,
        };
        // Which events it may have missed: on PostgreSQL those at or above the feed horizon
        // of its disable (see `disable`), whatever their seq; on SQLite, and for webhooks
        // disabled before migration 0010, those after the newest seq of then. No event whose
        // fan-out saw the webhook disabled can commit after this scan: such an event holds
        // the webhook's row `FOR SHARE` (see `fan_out`), which the `FOR NO KEY UPDATE` above
        // waited for.
        let mut missed_events = 0;
        let since = match (after_xid, after_seq) {
            (Some(xid), _) => Some(("e.tx_id >= $2::text::xid8", Some(xid.to_string()), 0)),
            (None, Some(seq)) => Some(("e.seq > $2", None, seq)),
            (None, None) => None,
        };
        if let Some((position, xid, seq)) = since {
            // The text holds placeholders only; every value is bound.
            let events = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT e.seq, e.id, e.event_trigger FROM events e \
                 WHERE e.workspace_id = $1 AND {position} AND e.model_id = $3 \
                 AND e.occurred_at >= $4 AND NOT EXISTS ( \
                   SELECT 1 FROM deliveries d WHERE d.webhook_id = $5 AND d.event_seq = e.seq) \
                 ORDER BY e.seq"
            )))
            .bind(workspace_id);
            let events = match xid {
                Some(xid) => events.bind(xid),
                None => events.bind(seq),
            }
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
                let seq: i64 = e.try_get("seq")?;
                let event_id: String = e.try_get("id")?;
                sqlx::query(
                    "INSERT INTO deliveries (id, webhook_id, event_seq, event_id, event_trigger, \
                     state, next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $6)",
                )
                .bind(new_delivery_id())
                .bind(id)
                .bind(seq)
                .bind(event_id)
                .bind(trigger)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                missed_events += 1;
            }
        }
        sqlx::query(
            "UPDATE webhooks SET enabled = 1, disabled_reason = NULL, failing_since = NULL, \
             disabled_after_seq = NULL, updated_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.audit_webhook(
            &mut tx,
            id,
            actor,
            AuditAction::WebhookEnabled,
            serde_json::json!({
                "replayedFailed": replayed_failed,
                "missedEvents": missed_events,
                "pending": pending,
            }),
        )
        .await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify('berth_deliveries', '')")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.wake_worker();
        Ok(Some(EnableOutcome {
            replayed_failed,
            missed_events,
            pending,
        }))
    }
}
