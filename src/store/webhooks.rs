//! Webhooks: configuration rows (secrets already sealed by the caller), their signing keys,
//! disabling and enabling (with what a disabled webhook missed), deleting. The interface both
//! backends implement, the values it answers, the row decoding and the query text both
//! dialects share. Their deliveries are in `deliveries.rs`.

use async_trait::async_trait;

use super::Result;
use super::audit::{AuditAction, AuditEntry, AuditTarget, webhook_changes};
use crate::domain::{DeliveryState, EventTrigger, WebhookUrl};

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

/// One change of a batch given to [`Webhooks::save_webhooks`].
#[derive(Debug, Clone)]
pub enum WebhookWrite {
    Create(WebhookRecord),
    Update(WebhookRecord),
}

/// What [`Webhooks::save_webhooks`] did. Anything but `Saved` wrote nothing.
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

/// What re-enabling a webhook queued (see [`Webhooks::enable_webhook`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct EnableOutcome {
    /// Deliveries that had failed while the webhook kept failing, queued again.
    pub replayed_failed: u64,
    /// Events that happened while it was disabled, now queued for it.
    pub missed_events: u64,
    /// Deliveries that were still waiting, now due.
    pub pending: u64,
}

/// The webhook configuration, on either database. Every change writes its audit row in the
/// same transaction.
#[async_trait]
pub trait Webhooks {
    /// How many webhooks model `model_id` has.
    async fn count_webhooks(&self, model_id: i64) -> Result<i64>;

    /// Inserts a webhook, with its `webhook.created` audit row. A name taken on this model
    /// is a [`super::Error::Conflict`] on `name`.
    async fn create_webhook(&self, w: &WebhookRecord, actor: &str) -> Result<()>;

    /// Writes a batch of webhook changes in one transaction, as `actor`: all of them, or,
    /// when a model would pass `max_per_model` webhooks or a webhook to update is gone,
    /// none. The count is taken inside the transaction, under a lock on each model the
    /// batch adds to (PostgreSQL; SQLite's writer is alone), so concurrent batches cannot
    /// pass the limit together.
    async fn save_webhooks(
        &self,
        writes: &[WebhookWrite],
        max_per_model: i64,
        actor: &str,
    ) -> Result<SaveWebhooks>;

    /// Replaces a webhook's configuration (not its signing keys), with audit rows for what
    /// changed: `webhook.updated` (which fields) and `webhook.enabled` / `webhook.disabled`.
    /// False when it is gone.
    async fn update_webhook(&self, w: &WebhookRecord, actor: &str) -> Result<bool>;

    /// The webhooks of a model, by name, each with its newest delivery's outcome.
    async fn list_webhooks(&self, model_id: i64) -> Result<Vec<WebhookRecord>>;

    /// A webhook of a model, with its newest delivery's outcome.
    async fn get_webhook(&self, model_id: i64, id: &str) -> Result<Option<WebhookRecord>>;

    /// A webhook of a model by its exact name.
    async fn get_webhook_by_name(&self, model_id: i64, name: &str)
    -> Result<Option<WebhookRecord>>;

    /// Deletes a webhook and, with it, its pending deliveries and log. From the moment this
    /// commits, the webhook receives nothing more.
    async fn delete_webhook(&self, model_id: i64, id: &str, actor: &str) -> Result<bool>;

    /// Replaces the signing key, keeping the previous one valid until `old_expires_at`.
    async fn rotate_signing_key(
        &self,
        id: &str,
        new_enc: &str,
        old_enc: &str,
        old_expires_at: i64,
        actor: &str,
    ) -> Result<bool>;

    /// Re-enables a disabled webhook and queues what it missed, in one transaction: the
    /// deliveries that failed since its failures began, the model's events since it was
    /// disabled that it was not sent (it subscribes to their trigger, and they came after
    /// the webhook was created), and the deliveries still waiting, all due now. They share
    /// one due time, so the worker claims them in delivery id order, which is event order.
    /// Answers `None` when there is no such webhook; an enabled webhook is left as it is.
    async fn enable_webhook(
        &self,
        model_id: i64,
        id: &str,
        actor: &str,
    ) -> Result<Option<EnableOutcome>>;
}

/// A result row of either backend's driver, read by column name: what the row decoders
/// shared by both need. Each backend implements it for its row type.
pub(super) trait Columns {
    fn text(&self, name: &str) -> Result<String>;
    fn opt_text(&self, name: &str) -> Result<Option<String>>;
    fn int(&self, name: &str) -> Result<i64>;
    fn opt_int(&self, name: &str) -> Result<Option<i64>>;
}

/// A stored delivery state.
pub(super) fn state_of(value: &str) -> Result<DeliveryState> {
    DeliveryState::parse("state", value)
        .map_err(|e| super::Error::other(format!("deliveries.state: {}", e.message)))
}

/// A stored trigger name.
pub(super) fn trigger_of(value: &str) -> Result<EventTrigger> {
    EventTrigger::from_str_opt(value)
        .ok_or_else(|| super::Error::other(format!("unknown stored trigger `{value}`")))
}

/// True when a webhook's stored trigger list (a JSON array) holds `trigger`.
pub(super) fn subscribed(triggers: &str, trigger: EventTrigger) -> Result<bool> {
    let triggers: Vec<EventTrigger> = serde_json::from_str(triggers)?;
    Ok(triggers.contains(&trigger))
}

/// A webhook's row (selected with [`WEBHOOK_COLUMNS`], and with `with_last`, with
/// [`LAST_DELIVERY_COLUMNS`]).
pub(super) fn webhook_from_row(row: &impl Columns, with_last: bool) -> Result<WebhookRecord> {
    let last_delivery = if with_last {
        match row.opt_text("last_state")? {
            Some(s) => Some((state_of(&s)?, row.opt_int("last_code")?)),
            None => None,
        }
    } else {
        None
    };
    let url = row.text("url")?;
    Ok(WebhookRecord {
        id: row.text("id")?,
        workspace_id: row.int("workspace_id")?,
        model_id: row.int("model_id")?,
        name: row.text("name")?,
        url: WebhookUrl::stored(&url)
            .map_err(|e| super::Error::other(format!("stored webhook URL `{url}`: {e}")))?,
        secret_enc: row.opt_text("secret_enc")?,
        triggers: serde_json::from_str(&row.text("triggers")?)?,
        headers: serde_json::from_str(&row.text("headers")?)?,
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

/// The columns [`webhook_from_row`] reads, of `webhooks w` (a macro so that the queries
/// built on it stay `const` text).
macro_rules! webhook_columns {
    () => {
        "w.id, w.workspace_id, w.model_id, w.name, w.url, w.secret_enc, w.triggers, w.headers, \
         w.github_actions, w.enabled, w.disabled_reason, w.signing_key_enc, \
         w.old_signing_key_enc, w.old_signing_expires_at, w.failing_since, w.created_at, \
         w.updated_at"
    };
}
pub(super) const WEBHOOK_COLUMNS: &str = webhook_columns!();

/// The newest delivery's state and status code, for `webhook_from_row(_, true)`.
macro_rules! last_delivery_columns {
    () => {
        "(SELECT d.state FROM deliveries d WHERE d.webhook_id = w.id \
          ORDER BY d.id DESC LIMIT 1) AS last_state, \
         (SELECT d.last_status_code FROM deliveries d WHERE d.webhook_id = w.id \
          ORDER BY d.id DESC LIMIT 1) AS last_code"
    };
}

pub(super) const COUNT_WEBHOOKS: &str = "SELECT COUNT(*) AS n FROM webhooks WHERE model_id = $1";

pub(super) const LIST_WEBHOOKS: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    ", ",
    last_delivery_columns!(),
    " FROM webhooks w WHERE w.model_id = $1 ORDER BY w.name, w.id"
);

pub(super) const GET_WEBHOOK: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    ", ",
    last_delivery_columns!(),
    " FROM webhooks w WHERE w.model_id = $1 AND w.id = $2"
);

pub(super) const GET_WEBHOOK_BY_NAME: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks w WHERE w.model_id = $1 AND w.name = $2"
);

/// A webhook by id, inside a write transaction (PostgreSQL appends `FOR UPDATE`).
pub(super) const WEBHOOK_BY_ID: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks w WHERE w.id = $1"
);

/// A new webhook: `$1`-`$12` its columns in [`WebhookRecord`]'s order, `$13` its time, `$14`
/// its name key, then the backend's `extra` columns and values (PostgreSQL: the feed
/// horizon). Created disabled, it notes the newest `seq` (see each backend's `disable`).
pub(super) fn insert_webhook(extra_columns: &str, extra_values: &str) -> String {
    format!(
        "INSERT INTO webhooks (id, workspace_id, model_id, name, url, secret_enc, triggers, \
         headers, github_actions, enabled, disabled_reason, signing_key_enc, created_at, \
         updated_at, disabled_after_seq, name_key{extra_columns}) VALUES ($1, $2, $3, $4, $5, \
         $6, $7, $8, $9, $10, $11, $12, $13, $13, \
         CASE WHEN $10 = 0 THEN (SELECT COALESCE(MAX(seq), 0) FROM events) END, \
         $14{extra_values})"
    )
}

/// A webhook's new configuration: `$1`-`$8` name, URL, secret, triggers, headers, GitHub
/// Actions, enabled, disabled reason; `$9` the time, `$10` the name key, `$11` the id;
/// `extra` the backend's own assignments, each followed by `, ` (PostgreSQL: the feed
/// horizon, from `$7`). Disabled here, it notes the newest `seq` (see each backend's `disable`).
/// Enabled by a user here, its run of failures is forgotten.
pub(super) fn update_webhook(extra: &str) -> String {
    format!(
        "UPDATE webhooks SET name = $1, url = $2, secret_enc = $3, triggers = $4, \
         headers = $5, github_actions = $6, enabled = $7, disabled_reason = $8, \
         updated_at = $9, \
         disabled_after_seq = CASE WHEN $7 = 0 AND enabled = 1 \
           THEN (SELECT COALESCE(MAX(seq), 0) FROM events) \
           WHEN $7 = 1 THEN NULL ELSE disabled_after_seq END, {extra}\
         failing_since = CASE WHEN $7 = 1 AND enabled = 0 THEN NULL ELSE failing_since END, \
         name_key = CASE WHEN name_key IS NULL AND name = $1 THEN NULL ELSE $10 END \
         WHERE id = $11"
    )
}

pub(super) const DELETE_WEBHOOK: &str = "DELETE FROM webhooks WHERE model_id = $1 AND id = $2";

/// `$1` the new key, `$2` the old one, `$3` until when the old one stays valid, `$4` the time,
/// `$5` the webhook.
pub(super) const ROTATE_SIGNING_KEY: &str = "UPDATE webhooks SET signing_key_enc = $1, \
     old_signing_key_enc = $2, old_signing_expires_at = $3, updated_at = $4 WHERE id = $5";

/// A webhook's workspace, name and model name, for its audit rows.
pub(super) const WEBHOOK_TARGET: &str = "SELECT w.workspace_id, w.name, m.name AS model_name \
     FROM webhooks w JOIN models m ON m.id = w.model_id WHERE w.id = $1";

/// Re-enabling: the deliveries still waiting, due now (`$1`), of webhook `$2`.
pub(super) const ENABLE_PENDING: &str = "UPDATE deliveries SET next_attempt_at = $1, \
     schedule_offset = attempt_count, updated_at = $1 WHERE webhook_id = $2 AND state = 'pending'";

/// Re-enabling: the deliveries of webhook `$2` that failed since its run of failures began
/// (`$3`), due now (`$1`).
pub(super) const ENABLE_FAILED: &str = "UPDATE deliveries SET state = 'pending', \
     next_attempt_at = $1, schedule_offset = attempt_count, updated_at = $1 \
     WHERE webhook_id = $2 AND state = 'failed' AND updated_at >= $3";

/// Re-enabling: the model's events after `$2` (the webhook's `disabled_after_seq`) since the
/// webhook was created (`$4`) that it has no delivery of: `$1` the workspace, `$3` the
/// model, `$5` the webhook. (SQLite's whole answer; on PostgreSQL, only for webhooks
/// disabled before migration 0010 noted a feed horizon.)
pub(super) const MISSED_SINCE_SEQ: &str = "SELECT e.seq, e.id, e.event_trigger FROM events e \
     WHERE e.workspace_id = $1 AND e.seq > $2 AND e.model_id = $3 \
     AND e.occurred_at >= $4 AND NOT EXISTS ( \
       SELECT 1 FROM deliveries d WHERE d.webhook_id = $5 AND d.event_seq = e.seq) \
     ORDER BY e.seq";

/// Re-enabling: a delivery of an event the webhook missed.
pub(super) const INSERT_MISSED: &str = "INSERT INTO deliveries (id, webhook_id, event_seq, \
     event_id, event_trigger, state, next_attempt_at, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $6)";

/// `$1` the time, `$2` the webhook.
pub(super) const ENABLE: &str = "UPDATE webhooks SET enabled = 1, disabled_reason = NULL, \
     failing_since = NULL, disabled_after_seq = NULL, updated_at = $1 WHERE id = $2";

/// A webhook's audit target, from the columns of [`WEBHOOK_TARGET`].
pub(super) fn target_of(model_name: &str, webhook_id: &str, webhook_name: &str) -> AuditTarget {
    AuditTarget::webhook(model_name, webhook_id, webhook_name)
}

/// The audit rows of an update from `old` to `new`: `webhook.updated` (which fields) and
/// `webhook.enabled` / `webhook.disabled`.
pub(super) fn update_entries(
    workspace_id: i64,
    target: &AuditTarget,
    old: &WebhookRecord,
    new: &WebhookRecord,
    actor: &str,
) -> Vec<AuditEntry> {
    let mut entries = Vec::new();
    if let Some(details) = webhook_changes(old, new) {
        entries.push((AuditAction::WebhookUpdated, details));
    }
    if old.enabled != new.enabled {
        let action = if new.enabled {
            AuditAction::WebhookEnabled
        } else {
            AuditAction::WebhookDisabled
        };
        entries.push((
            action,
            serde_json::json!({ "reason": new.disabled_reason, "previousReason": old.disabled_reason }),
        ));
    }
    entries
        .into_iter()
        .map(|(action, details)| AuditEntry {
            workspace_id,
            actor: actor.to_owned(),
            action,
            target: target.clone(),
            details,
        })
        .collect()
}

/// The audit details of an enable.
pub(super) fn enabled_details(outcome: &EnableOutcome) -> serde_json::Value {
    serde_json::json!({
        "replayedFailed": outcome.replayed_failed,
        "missedEvents": outcome.missed_events,
        "pending": outcome.pending,
    })
}

/// How many webhooks each model a batch creates webhooks on gains, by model id (ascending,
/// so two batches lock models in the same order).
pub(super) fn additions(writes: &[WebhookWrite]) -> std::collections::BTreeMap<i64, i64> {
    let mut adding = std::collections::BTreeMap::new();
    for w in writes {
        if let WebhookWrite::Create(r) = w {
            *adding.entry(r.model_id).or_default() += 1;
        }
    }
    adding
}

/// The shared text built at run time, for the placeholder check in `store/mod.rs`.
#[cfg(test)]
pub(super) fn shared_sql_built() -> Vec<String> {
    vec![insert_webhook("", ""), update_webhook("")]
}

#[cfg(test)]
pub(super) const SHARED_SQL: &[&str] = &[
    COUNT_WEBHOOKS,
    LIST_WEBHOOKS,
    GET_WEBHOOK,
    GET_WEBHOOK_BY_NAME,
    WEBHOOK_BY_ID,
    DELETE_WEBHOOK,
    ROTATE_SIGNING_KEY,
    WEBHOOK_TARGET,
    ENABLE_PENDING,
    ENABLE_FAILED,
    INSERT_MISSED,
    MISSED_SINCE_SEQ,
    ENABLE,
];
