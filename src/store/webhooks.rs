//! Webhooks and their deliveries: configuration rows (secrets already sealed by the caller),
//! the fan-out of an event into delivery rows, the worker's leased claims, attempts, and the
//! delivery log.

use sqlx::Row;

use super::audit::{AuditAction, AuditEntry, SYSTEM_ACTOR, iso, webhook_changes, webhook_summary};
use super::events::FEED_HORIZON;
use super::fast::NextLease;
use super::group::Db;
use super::{Backend, Store, now_micros};
use crate::domain::name_key;

/// A webhook as stored. Secret fields are AES-GCM ciphertexts (see `delivery::crypto`).
#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub id: String,
    pub workspace_id: i64,
    pub model_id: i64,
    pub name: String,
    pub url: String,
    pub secret_enc: Option<String>,
    pub triggers: Vec<String>,
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
    pub last_delivery: Option<(String, Option<i64>)>,
}

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
    pub event_trigger: String,
    pub state: String,
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
    /// `pending` (with `next_attempt_at`), `succeeded` or `failed`.
    pub state: &'static str,
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

/// Queue figures for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueStats {
    pub pending: i64,
    pub due: i64,
    pub oldest_due_at: Option<i64>,
}

fn json_err(e: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

const WEBHOOK_COLUMNS: &str = "w.id, w.workspace_id, w.model_id, w.name, w.url, w.secret_enc, \
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

fn webhook_from_row(row: &impl Columns, with_last: bool) -> Result<WebhookRecord, sqlx::Error> {
    let last_delivery = if with_last {
        match row.opt_text("last_state")? {
            Some(s) => Some((s, row.opt_int("last_code")?)),
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
        url: row.text("url")?,
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
        event_trigger: row.try_get("event_trigger")?,
        state: row.try_get("state")?,
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

/// True when a webhook's stored trigger list (a JSON array) holds `trigger`.
pub(super) fn subscribed(triggers: &str, trigger: &str) -> Result<bool, sqlx::Error> {
    let triggers: Vec<String> = serde_json::from_str(triggers).map_err(json_err)?;
    Ok(triggers.iter().any(|t| t == trigger))
}

/// A new delivery's id: also its `webhook-id`, the same for every attempt.
pub(super) fn new_delivery_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
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
    async fn audit_webhook(
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
                        .bind(result.state)
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
                        .bind(result.state)
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
        state: Option<&str>,
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
        .bind(state)
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
        let triggers: Vec<String> = serde_json::from_str(&triggers).map_err(json_err)?;
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
                if !triggers.contains(&trigger) {
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
