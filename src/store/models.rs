//! Registered models.

use sqlx::Row;

use super::audit::{AuditAction, AuditEntry, AuditTarget};
use super::workspaces::role_of;
use super::{Caller, ModelRef, Result, Store, WorkspaceAccess, now_micros};
use crate::domain::Role;

#[derive(Debug, Clone)]
pub struct Model {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The newest version by semver precedence: its number, status and tags.
    pub latest: Option<(String, Option<String>, Vec<String>)>,
}

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

fn model_from_row(row: &sqlx::any::AnyRow) -> Result<Model> {
    let latest_version: Option<String> = row.try_get("latest_version")?;
    let latest = match latest_version {
        Some(v) => {
            let tags: String = row.try_get("latest_tags")?;
            let tags: Vec<String> =
                serde_json::from_str(&tags).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            Some((v, row.try_get("latest_status")?, tags))
        }
        None => None,
    };
    Ok(Model {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        latest,
    })
}

impl Store {
    /// Creates a model, with its `model.created` audit row. A taken name (ignoring case) is a
    /// unique violation.
    pub async fn create_model(
        &self,
        workspace_id: i64,
        name: &str,
        description: &str,
        actor: &str,
    ) -> Result<Model> {
        let now = now_micros();
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO models (workspace_id, name, description, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(workspace_id)
        .bind(name)
        .bind(description)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        let entry = AuditEntry {
            workspace_id,
            actor: actor.to_owned(),
            action: AuditAction::ModelCreated,
            target: AuditTarget::model(name),
            details: serde_json::json!({}),
        };
        self.insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(Model {
            id,
            name: name.to_owned(),
            description: description.to_owned(),
            created_at: now,
            updated_at: now,
            latest: None,
        })
    }

    /// Models by name, after `after` (a name), at most `limit`.
    pub async fn list_models(
        &self,
        workspace_id: i64,
        after: Option<&str>,
        name_contains: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Model>> {
        let pattern = name_contains.map(|s| {
            let escaped = s
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{}%", escaped.to_lowercase())
        });
        let rows = sqlx::query(model_select!(
            "WHERE m.workspace_id = $1 AND ($2 IS NULL OR m.name > $2) \
             AND ($3 IS NULL OR LOWER(m.name) LIKE $3 ESCAPE '\\') \
             ORDER BY m.name LIMIT $4"
        ))
        .bind(workspace_id)
        .bind(after)
        .bind(pattern)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(model_from_row).collect()
    }

    pub async fn get_model(&self, workspace_id: i64, name: &str) -> Result<Option<Model>> {
        let row = sqlx::query(model_select!("WHERE m.workspace_id = $1 AND m.name = $2"))
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(model_from_row).transpose()
    }

    /// A model's id and name, without the latest-version columns: what write paths need.
    pub async fn model_id(&self, workspace_id: i64, name: &str) -> Result<Option<(i64, String)>> {
        let row = sqlx::query("SELECT id, name FROM models WHERE workspace_id = $1 AND name = $2")
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
            .transpose()
    }

    /// Renames a model and/or changes its description. A taken name (ignoring case) is a
    /// unique violation. A rename clears `name_clash` (a name kept from before names were
    /// compared: see `names.rs`), so the new name must be free.
    pub async fn update_model(&self, model: &ModelRef, patch: &ModelPatch) -> Result<Model> {
        sqlx::query(
            "UPDATE models SET name = COALESCE($2, name), \
             description = COALESCE($3, description), updated_at = $4, \
             name_clash = CASE WHEN $2 IS NULL OR $2 = name THEN name_clash ELSE 0 END \
             WHERE id = $1",
        )
        .bind(model.model_id)
        .bind(patch.name.as_deref())
        .bind(patch.description.as_deref())
        .bind(now_micros())
        .execute(&self.write)
        .await?;
        let row = sqlx::query(model_select!("WHERE m.id = $1"))
            .bind(model.model_id)
            .fetch_one(&self.read)
            .await?;
        model_from_row(&row)
    }

    /// Deletes a model (and its webhooks) that has no versions and no delivery still pending,
    /// so that no event is lost with it.
    pub async fn delete_model(&self, model: &ModelRef, actor: &str) -> Result<DeleteModel> {
        let mut tx = self.begin().await?;
        // Lock the model row: a concurrent version insert (which checks the foreign key)
        // then waits for this transaction instead of slipping in between.
        sqlx::query(self.pick(locked!("SELECT id FROM models WHERE id = $1")))
            .bind(model.model_id)
            .fetch_optional(&mut *tx)
            .await?;
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM model_versions WHERE model_id = $1")
            .bind(model.model_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if n > 0 {
            return Ok(DeleteModel::HasVersions);
        }
        let pending: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE w.model_id = $1 AND d.state = 'pending'",
        )
        .bind(model.model_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if pending > 0 {
            return Ok(DeleteModel::PendingDeliveries(pending));
        }
        sqlx::query("DELETE FROM models WHERE id = $1")
            .bind(model.model_id)
            .execute(&mut *tx)
            .await?;
        let entry = AuditEntry {
            workspace_id: model.workspace_id,
            actor: actor.to_owned(),
            action: AuditAction::ModelDeleted,
            target: AuditTarget::model(&model.model_name),
            details: serde_json::json!({}),
        };
        self.insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(DeleteModel::Deleted)
    }
}

/// What one query tells about a bearer token, a workspace name and a model name: see
/// [`Store::model_scope`].
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
    fn into_scope(self) -> ModelScopeRow {
        let caller = Caller {
            user_id: self.user_id,
            username: self.username,
            server_admin: self.server_admin != 0,
            token_id: self.token_id,
        };
        let role = match (self.ws_id, self.role, caller.server_admin) {
            (None, _, _) | (Some(_), None, false) => None,
            (Some(_), _, true) => Some(Role::Admin),
            (Some(_), Some(r), false) => Some(role_of(&r)),
        };
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

impl Store {
    /// The caller of `token_hash`, their access to workspace `ws` and the model `model` in it,
    /// in one read: the same answers as [`Store::authenticate`], [`Store::workspace_access`]
    /// and [`Store::model_id`] in turn, for a third of the round trips (the hot path of
    /// every model-scoped request). `None` when the token is unknown or revoked. On SQLite
    /// the read runs on the calling thread (see `fast::Readers`).
    pub async fn model_scope(
        &self,
        token_hash: &str,
        ws: &str,
        model: &str,
    ) -> Result<Option<ModelScopeRow>> {
        if let Some(readers) = &self.readers {
            let columns = readers.read(|conn| super::fast::scope(conn, token_hash, ws, model))?;
            return Ok(columns.map(ScopeColumns::into_scope));
        }
        let row = sqlx::query(SCOPE_SQL)
            .bind(token_hash)
            .bind(ws)
            .bind(model)
            .fetch_optional(&self.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let columns = ScopeColumns {
            user_id: row.try_get("user_id")?,
            username: row.try_get("username")?,
            server_admin: row.try_get("server_admin")?,
            token_id: row.try_get("token_id")?,
            ws_id: row.try_get("ws_id")?,
            ws_name: row.try_get("ws_name")?,
            role: row.try_get("role")?,
            model_id: row.try_get("model_id")?,
            model_name: row.try_get("model_name")?,
        };
        Ok(Some(columns.into_scope()))
    }
}
