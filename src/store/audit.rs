//! The audit log: who did what in a workspace, and when. Each row is written inside the
//! transaction of the change it records (as events are), so a change and its record commit
//! or roll back together; a Test Webhook, which changes nothing, writes its row on its own.
//!
//! **Architecture Invariant:** no secret is ever recorded. Rows are built here from the
//! non-secret parts of what changed: webhook secrets, signing keys, custom header values and
//! tokens never reach this module, only the names of the fields and headers that changed.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::webhooks::WebhookRecord;
use super::{ModelRef, Result};

/// The audit log, on either database. (The rows of a change are written inside that
/// change's own transaction, by each backend's `insert_audit`.)
#[async_trait]
pub trait Audit {
    /// Writes `entry` on its own: for actions that change nothing else (Test Webhook).
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()>;

    /// A workspace's entries, newest first, below `before` (an id), at most `limit`.
    async fn list_audit(
        &self,
        workspace_id: i64,
        filter: AuditFilter<'_>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>>;
}

/// The actor of what Berth does on its own (the delivery worker disabling a webhook).
pub const SYSTEM_ACTOR: &str = "system";

/// What was done. The names (`as_str`) are stable: clients filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    WebhookCreated,
    WebhookUpdated,
    WebhookDeleted,
    WebhookTested,
    WebhookSecretRotated,
    WebhookDisabled,
    WebhookEnabled,
    WebhookRedelivered,
    WebhookReplayed,
    VersionDeleted,
    VersionTagsChanged,
    VersionStatusChanged,
    VersionStatusForced,
    StatusRequestCreated,
    StatusRequestApproved,
    StatusRequestRejected,
    ModelCreated,
    ModelDeleted,
    MemberAdded,
    MemberRoleChanged,
    MemberRemoved,
}

impl AuditAction {
    pub const ALL: [AuditAction; 21] = [
        AuditAction::WebhookCreated,
        AuditAction::WebhookUpdated,
        AuditAction::WebhookDeleted,
        AuditAction::WebhookTested,
        AuditAction::WebhookSecretRotated,
        AuditAction::WebhookDisabled,
        AuditAction::WebhookEnabled,
        AuditAction::WebhookRedelivered,
        AuditAction::WebhookReplayed,
        AuditAction::VersionDeleted,
        AuditAction::VersionTagsChanged,
        AuditAction::VersionStatusChanged,
        AuditAction::VersionStatusForced,
        AuditAction::StatusRequestCreated,
        AuditAction::StatusRequestApproved,
        AuditAction::StatusRequestRejected,
        AuditAction::ModelCreated,
        AuditAction::ModelDeleted,
        AuditAction::MemberAdded,
        AuditAction::MemberRoleChanged,
        AuditAction::MemberRemoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::WebhookCreated => "webhook.created",
            AuditAction::WebhookUpdated => "webhook.updated",
            AuditAction::WebhookDeleted => "webhook.deleted",
            AuditAction::WebhookTested => "webhook.tested",
            AuditAction::WebhookSecretRotated => "webhook.secret_rotated",
            AuditAction::WebhookDisabled => "webhook.disabled",
            AuditAction::WebhookEnabled => "webhook.enabled",
            AuditAction::WebhookRedelivered => "webhook.redelivered",
            AuditAction::WebhookReplayed => "webhook.replayed",
            AuditAction::VersionDeleted => "version.deleted",
            AuditAction::VersionTagsChanged => "version.tags_changed",
            AuditAction::VersionStatusChanged => "version.status_changed",
            AuditAction::VersionStatusForced => "version.status_forced",
            AuditAction::StatusRequestCreated => "status_request.created",
            AuditAction::StatusRequestApproved => "status_request.approved",
            AuditAction::StatusRequestRejected => "status_request.rejected",
            AuditAction::ModelCreated => "model.created",
            AuditAction::ModelDeleted => "model.deleted",
            AuditAction::MemberAdded => "member.added",
            AuditAction::MemberRoleChanged => "member.role_changed",
            AuditAction::MemberRemoved => "member.removed",
        }
    }

    /// The action named `name`, if there is one.
    pub fn parse(name: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// What an entry is about. Stored by name, so it outlives what it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditTarget {
    pub model: Option<String>,
    pub version: Option<String>,
    pub webhook_id: Option<String>,
    pub webhook_name: Option<String>,
}

impl AuditTarget {
    pub fn model(name: &str) -> AuditTarget {
        AuditTarget {
            model: Some(name.to_owned()),
            ..AuditTarget::default()
        }
    }

    pub fn version(model: &str, version: &str) -> AuditTarget {
        AuditTarget {
            model: Some(model.to_owned()),
            version: Some(version.to_owned()),
            ..AuditTarget::default()
        }
    }

    pub fn webhook(model: &str, id: &str, name: &str) -> AuditTarget {
        AuditTarget {
            model: Some(model.to_owned()),
            webhook_id: Some(id.to_owned()),
            webhook_name: Some(name.to_owned()),
            ..AuditTarget::default()
        }
    }
}

/// One entry to write.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub workspace_id: i64,
    pub actor: String,
    pub action: AuditAction,
    pub target: AuditTarget,
    /// A JSON object; never a secret (see the module's invariant).
    pub details: Value,
}

impl AuditEntry {
    /// An entry about version `version` of `model`.
    pub fn about_version(
        model: &ModelRef,
        version: &str,
        actor: &str,
        action: AuditAction,
        details: Value,
    ) -> AuditEntry {
        AuditEntry {
            workspace_id: model.workspace_id,
            actor: actor.to_owned(),
            action,
            target: AuditTarget::version(&model.model_name, version),
            details,
        }
    }
}

/// One stored entry.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: AuditTarget,
    pub details: Value,
}

/// Which entries to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditFilter<'a> {
    pub action: Option<AuditAction>,
    pub model: Option<&'a str>,
}

/// The host (and port) of a webhook URL: what the audit log records of it. A URL's path or
/// query may carry a token (many chat services put one there), so the rest is left out.
pub fn url_host(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => String::new(),
        },
        Err(_) => String::new(),
    }
}

/// A stored time (microseconds since the epoch) as RFC 3339, for details.
pub fn iso(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn header_names(headers: &[(String, String)]) -> Vec<&str> {
    headers.iter().map(|(k, _)| k.as_str()).collect()
}

/// A webhook's configuration as the audit log shows it: no secret, no header values, no
/// URL path.
pub fn webhook_summary(w: &WebhookRecord) -> Value {
    json!({
        "name": w.name,
        "urlHost": url_host(w.url.as_str()),
        "triggers": w.triggers,
        "headerNames": header_names(&w.headers),
        "hasSecret": w.secret_enc.is_some(),
        "githubActions": w.github_actions,
        "enabled": w.enabled,
    })
}

/// What changed between two configurations of a webhook, other than `enabled`: the names of
/// the changed fields and a JSON object describing them, or `None` when nothing did. Header
/// values and secrets are compared but never copied.
pub fn webhook_changes(old: &WebhookRecord, new: &WebhookRecord) -> Option<Value> {
    let mut changed: Vec<&str> = Vec::new();
    let mut details = serde_json::Map::new();
    if old.name != new.name {
        changed.push("name");
        details.insert("name".into(), json!({"from": old.name, "to": new.name}));
    }
    if old.url != new.url {
        changed.push("url");
        details.insert(
            "urlHost".into(),
            json!({"from": url_host(old.url.as_str()), "to": url_host(new.url.as_str())}),
        );
    }
    if old.triggers != new.triggers {
        changed.push("triggers");
        details.insert(
            "triggers".into(),
            json!({"from": old.triggers, "to": new.triggers}),
        );
    }
    if old.headers != new.headers {
        changed.push("headers");
        let value_of = |hs: &[(String, String)], name: &str| {
            hs.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let added: Vec<&str> = header_names(&new.headers)
            .into_iter()
            .filter(|n| value_of(&old.headers, n).is_none())
            .collect();
        let removed: Vec<&str> = header_names(&old.headers)
            .into_iter()
            .filter(|n| value_of(&new.headers, n).is_none())
            .collect();
        let modified: Vec<&str> = header_names(&new.headers)
            .into_iter()
            .filter(|n| matches!(value_of(&old.headers, n), Some(v) if Some(&v) != value_of(&new.headers, n).as_ref()))
            .collect();
        details.insert(
            "headers".into(),
            json!({"added": added, "removed": removed, "changed": modified}),
        );
    }
    // A new secret is sealed afresh, so its ciphertext differs whenever one was sent.
    if old.secret_enc != new.secret_enc {
        changed.push("secret");
        let what = match (&old.secret_enc, &new.secret_enc) {
            (None, Some(_)) => "set",
            (Some(_), None) => "removed",
            _ => "replaced",
        };
        details.insert("secret".into(), json!(what));
    }
    if old.github_actions != new.github_actions {
        changed.push("githubActions");
        details.insert(
            "githubActions".into(),
            json!({"from": old.github_actions, "to": new.github_actions}),
        );
    }
    if changed.is_empty() {
        return None;
    }
    details.insert("changed".into(), json!(changed));
    Some(Value::Object(details))
}

/// The audit row's insert, on both databases.
pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit_log (workspace_id, at, actor, action, model, version, \
     webhook_id, webhook_name, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// A workspace's entries, newest first: `$1` the workspace, `$2` the id to list below,
/// `$3` the action and `$4` the model to filter on (each `NULL` for none), `$5` the limit.
pub(super) const LIST_AUDIT: &str = "SELECT id, at, actor, action, model, version, webhook_id, \
     webhook_name, details FROM audit_log WHERE workspace_id = $1 AND ($2 IS NULL OR id < $2) \
     AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR model = $4) \
     ORDER BY id DESC LIMIT $5";

#[cfg(test)]
pub(super) const SHARED_SQL: &[&str] = &[INSERT_AUDIT, LIST_AUDIT];

/// The audit writes of the code not moved to the storage interface yet (versions, webhooks),
/// inside their `sqlx` transactions.
#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> crate::domain::WebhookUrl {
        crate::domain::WebhookUrl::parse("url", text).expect("a valid URL")
    }

    fn hook() -> WebhookRecord {
        WebhookRecord {
            id: "h1".into(),
            workspace_id: 1,
            model_id: 1,
            name: "ci".into(),
            url: url("https://hooks.example.com/services/T000/B000/XXXXSECRETPATH?token=abc"),
            secret_enc: Some("sealed-1".into()),
            triggers: vec![crate::domain::EventTrigger::ModelVersionCreated],
            headers: vec![("X-Team".into(), "value-one".into())],
            github_actions: false,
            enabled: true,
            disabled_reason: None,
            signing_key_enc: "k".into(),
            old_signing_key_enc: None,
            old_signing_expires_at: None,
            failing_since: None,
            created_at: 0,
            updated_at: 0,
            last_delivery: None,
        }
    }

    #[test]
    fn action_names_round_trip() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("webhook"), None);
    }

    #[test]
    fn summary_and_changes_hold_no_secret() {
        let old = hook();
        let mut new = hook();
        new.headers = vec![
            ("X-Team".into(), "value-two".into()),
            ("X-New".into(), "value-three".into()),
        ];
        new.secret_enc = Some("sealed-2".into());
        new.url = url("https://other.example.com:8443/p?token=def");
        let changes = webhook_changes(&old, &new).expect("changes");
        let text = format!(
            "{changes} {} {}",
            webhook_summary(&old),
            webhook_summary(&new)
        );
        for secret in [
            "value-one",
            "value-two",
            "value-three",
            "sealed",
            "SECRETPATH",
            "token",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(
            changes["changed"],
            json!(["url", "headers", "secret"]),
            "{changes}"
        );
        assert_eq!(changes["headers"]["added"], json!(["X-New"]));
        assert_eq!(changes["headers"]["changed"], json!(["X-Team"]));
        assert_eq!(changes["secret"], json!("replaced"));
        assert_eq!(changes["urlHost"]["to"], json!("other.example.com:8443"));
        assert!(webhook_changes(&old, &hook()).is_none());
    }
}
