//! Registered models, and the model-scope read of every model-scoped request: the interface
//! both backends implement, the values it answers and the query text both dialects share.

use async_trait::async_trait;

use super::workspaces::access_role;
use super::{AuditAction, AuditEntry, AuditTarget, Caller, ModelRef, Result, WorkspaceAccess};

#[derive(Debug, Clone)]
pub struct Model {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The newest version by semver precedence: its number, status and tags.
    pub latest: Option<Latest>,
}

/// A model's newest version: its number, status and tags.
pub type Latest = (String, Option<String>, Vec<String>);

/// What became of a model deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteModel {
    Deleted,
    HasVersions,
    /// Its webhooks still have this many deliveries to make.
    PendingDeliveries(i64),
}

/// A partial update of a model.
#[derive(Debug, Clone, Default)]
pub struct ModelPatch {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// Models, on either database.
#[async_trait]
pub trait Models {
    /// Creates a model, with its `model.created` audit row. A taken name (ignoring case) is
    /// [`super::Error::Conflict`] on `name`.
    async fn create_model(
        &self,
        workspace_id: i64,
        name: &str,
        description: &str,
        actor: &str,
    ) -> Result<Model>;

    /// Models by name, after `after` (a name), at most `limit`; `name_contains` ignores case.
    async fn list_models(
        &self,
        workspace_id: i64,
        after: Option<&str>,
        name_contains: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Model>>;

    async fn get_model(&self, workspace_id: i64, name: &str) -> Result<Option<Model>>;

    /// A model's id and name, without the latest-version columns: what write paths need.
    async fn model_id(&self, workspace_id: i64, name: &str) -> Result<Option<(i64, String)>>;

    /// Renames a model and/or changes its description. A taken name (ignoring case) is
    /// [`super::Error::Conflict`] on `name`. A rename clears `name_clash` (a name kept from
    /// before names were compared: see `names.rs`), so the new name must be free.
    async fn update_model(&self, model: &ModelRef, patch: &ModelPatch) -> Result<Model>;

    /// Deletes a model (and its webhooks) that has no versions and no delivery still
    /// pending, so that no event is lost with it; audited.
    async fn delete_model(&self, model: &ModelRef, actor: &str) -> Result<DeleteModel>;

    /// The caller of `token_hash`, their access to workspace `ws` and the model `model` in
    /// it, in one read: the same answers as `authenticate`, `workspace_access` and
    /// `model_id` in turn, for a third of the round trips (the hot path of every
    /// model-scoped request). `None` when the token is unknown or revoked.
    async fn model_scope(
        &self,
        token_hash: &str,
        ws: &str,
        model: &str,
    ) -> Result<Option<ModelScopeRow>>;
}

/// The `LIKE` pattern of a case-insensitive substring search.
pub(super) fn contains_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{}%", escaped.to_lowercase())
}

pub(super) fn created(workspace_id: i64, actor: &str, name: &str) -> AuditEntry {
    AuditEntry {
        workspace_id,
        actor: actor.to_owned(),
        action: AuditAction::ModelCreated,
        target: AuditTarget::model(name),
        details: serde_json::json!({}),
    }
}

pub(super) fn deleted(model: &ModelRef, actor: &str) -> AuditEntry {
    AuditEntry {
        workspace_id: model.workspace_id,
        actor: actor.to_owned(),
        action: AuditAction::ModelDeleted,
        target: AuditTarget::model(&model.model_name),
        details: serde_json::json!({}),
    }
}

/// A model's latest version, from its JSON tags.
pub(super) fn latest(
    version: Option<String>,
    status: Option<String>,
    tags: Option<String>,
) -> Result<Option<Latest>> {
    match version {
        Some(v) => {
            let tags: Vec<String> = serde_json::from_str(tags.as_deref().unwrap_or("[]"))?;
            Ok(Some((v, status, tags)))
        }
        None => Ok(None),
    }
}

macro_rules! model_select {
    ($rest:literal) => {
        concat!(
            "SELECT m.id, m.name, m.description, m.created_at, m.updated_at, \
    (SELECT v.version FROM model_versions v WHERE v.model_id = m.id \
     ORDER BY v.sort_key DESC, v.id DESC LIMIT 1) AS latest_version, \
    (SELECT v.status FROM model_versions v WHERE v.model_id = m.id \
     ORDER BY v.sort_key DESC, v.id DESC LIMIT 1) AS latest_status, \
    (SELECT v.tags FROM model_versions v WHERE v.model_id = m.id \
     ORDER BY v.sort_key DESC, v.id DESC LIMIT 1) AS latest_tags FROM models m ",
            $rest
        )
    };
}

pub(super) const INSERT_MODEL: &str = "INSERT INTO models (workspace_id, name, description, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $4) RETURNING id";
pub(super) const LIST_MODELS: &str = model_select!(
    "WHERE m.workspace_id = $1 AND ($2 IS NULL OR m.name > $2) \
     AND ($3 IS NULL OR LOWER(m.name) LIKE $3 ESCAPE '\\') \
     ORDER BY m.name LIMIT $4"
);
pub(super) const GET_MODEL: &str = model_select!("WHERE m.workspace_id = $1 AND m.name = $2");
pub(super) const MODEL_BY_ID: &str = model_select!("WHERE m.id = $1");
pub(super) const MODEL_ID: &str =
    "SELECT id, name FROM models WHERE workspace_id = $1 AND name = $2";
pub(super) const UPDATE_MODEL: &str = "UPDATE models SET name = COALESCE($1, name), \
     description = COALESCE($2, description), updated_at = $3, \
     name_clash = CASE WHEN $1 IS NULL OR $1 = name THEN name_clash ELSE 0 END \
     WHERE id = $4";
/// The model's row (PostgreSQL locks it: `FOR UPDATE` is added there, so a concurrent
/// version insert, which checks the foreign key, waits for the deletion).
pub(super) const MODEL_ROW: &str = "SELECT id FROM models WHERE id = $1";
pub(super) const COUNT_VERSIONS: &str =
    "SELECT COUNT(*) AS n FROM model_versions WHERE model_id = $1";
pub(super) const COUNT_PENDING: &str = "SELECT COUNT(*) AS n FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
     WHERE w.model_id = $1 AND d.state = 'pending'";
pub(super) const DELETE_MODEL: &str = "DELETE FROM models WHERE id = $1";

#[cfg(test)]
pub(super) const SHARED_SQL: &[&str] = &[
    INSERT_MODEL,
    LIST_MODELS,
    GET_MODEL,
    MODEL_BY_ID,
    MODEL_ID,
    UPDATE_MODEL,
    MODEL_ROW,
    COUNT_VERSIONS,
    COUNT_PENDING,
    DELETE_MODEL,
    // (SCOPE_SQL is bound by name on SQLite: see `sqlite/models.rs`, `scope`.)
];

/// What one query tells about a bearer token, a workspace name and a model name: see
/// [`Models::model_scope`].
#[derive(Debug, Clone)]
pub struct ModelScopeRow {
    pub caller: Caller,
    /// The workspace, when it exists and the caller may see it.
    pub workspace: Option<WorkspaceAccess>,
    /// The model, when the workspace is visible and the model exists in it.
    pub model: Option<(i64, String)>,
}

/// The columns of the model-scope read, as both backends fetch them.
pub(super) struct ScopeColumns {
    pub user_id: i64,
    pub username: String,
    pub server_admin: i64,
    pub token_id: String,
    pub ws_id: Option<i64>,
    pub ws_name: Option<String>,
    pub role: Option<String>,
    pub model_id: Option<i64>,
    pub model_name: Option<String>,
}

/// The model-scope read: `$1` the token hash, `$2` the workspace name, `$3` the model name.
pub(super) const SCOPE_SQL: &str = "SELECT u.id AS user_id, u.username, u.server_admin, \
     t.id AS token_id, w.id AS ws_id, w.name AS ws_name, ms.role, md.id AS model_id, \
     md.name AS model_name \
     FROM api_tokens t JOIN users u ON u.id = t.user_id \
     LEFT JOIN workspaces w ON w.name = $2 \
     LEFT JOIN memberships ms ON ms.workspace_id = w.id AND ms.user_id = u.id \
     LEFT JOIN models md ON md.workspace_id = w.id AND md.name = $3 \
     WHERE t.token_hash = $1 AND t.revoked_at IS NULL";

impl ScopeColumns {
    pub(super) fn into_scope(self) -> ModelScopeRow {
        let caller = Caller {
            user_id: self.user_id,
            username: self.username,
            server_admin: self.server_admin != 0,
            token_id: self.token_id,
        };
        // The same rule as `workspace_access`.
        let role = self
            .ws_id
            .and(access_role(self.role.as_deref(), caller.server_admin));
        let workspace = match (self.ws_id, self.ws_name, role) {
            (Some(id), Some(name), Some(role)) => Some(WorkspaceAccess { id, name, role }),
            _ => None,
        };
        let model = match (&workspace, self.model_id, self.model_name) {
            (Some(_), Some(id), Some(name)) => Some((id, name)),
            _ => None,
        };
        ModelScopeRow {
            caller,
            workspace,
            model,
        }
    }
}
