//! Workspaces, their members and their statuses.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::audit::{AuditAction, AuditEntry, AuditTarget};
use super::{Result, Store, now_micros};
use crate::domain::Role;

#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

/// A workspace as the caller may use it.
#[derive(Debug, Clone)]
pub struct WorkspaceAccess {
    pub id: i64,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub username: String,
    pub role: Role,
    pub created_at: i64,
}

/// One status a version may have, and whether setting it needs an admin's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDef {
    pub name: String,
    pub review_required: bool,
}

impl StatusDef {
    /// Comet's defaults: Development, Staging, and Production (which needs review).
    pub fn defaults() -> Vec<StatusDef> {
        [
            ("Development", false),
            ("Staging", false),
            ("Production", true),
        ]
        .into_iter()
        .map(|(name, review_required)| StatusDef {
            name: name.into(),
            review_required,
        })
        .collect()
    }
}

pub(super) fn role_of(text: &str) -> Role {
    if text == "admin" {
        Role::Admin
    } else {
        Role::Member
    }
}

fn decode_statuses(text: &str) -> Result<Vec<StatusDef>> {
    Ok(serde_json::from_str(text)?)
}

impl Store {
    /// Creates a workspace with the default statuses, its creator its first admin.
    pub async fn create_workspace(&self, name: &str, creator_id: i64) -> Result<Workspace> {
        let now = now_micros();
        let statuses = serde_json::to_string(&StatusDef::defaults())
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO workspaces (name, statuses, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(statuses)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at) \
             VALUES ($1, $2, 'admin', $3)",
        )
        .bind(id)
        .bind(creator_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Workspace {
            id,
            name: name.to_owned(),
            created_at: now,
        })
    }

    /// The workspaces a user is a member of, by name, with the user's role.
    pub async fn workspaces_of(&self, user_id: i64) -> Result<Vec<WorkspaceAccess>> {
        let rows = sqlx::query(
            "SELECT w.id, w.name, m.role FROM memberships m \
             JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 ORDER BY w.name",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkspaceAccess {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    role: role_of(&r.try_get::<String, _>("role")?),
                })
            })
            .collect()
    }

    /// The caller's access to a workspace: `None` when it does not exist or the caller is not a
    /// member (the two are deliberately indistinguishable). Server admins act as workspace
    /// admins everywhere.
    pub async fn workspace_access(
        &self,
        user_id: i64,
        server_admin: bool,
        name: &str,
    ) -> Result<Option<WorkspaceAccess>> {
        let row = sqlx::query(
            "SELECT w.id, w.name, m.role FROM workspaces w \
             LEFT JOIN memberships m ON m.workspace_id = w.id AND m.user_id = $2 \
             WHERE w.name = $1",
        )
        .bind(name)
        .bind(user_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let role: Option<String> = row.try_get("role")?;
        let role = match (role, server_admin) {
            (_, true) => Role::Admin,
            (Some(r), false) => role_of(&r),
            (None, false) => return Ok(None),
        };
        Ok(Some(WorkspaceAccess {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            role,
        }))
    }

    pub async fn list_members(&self, workspace_id: i64) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT u.username, m.role, m.created_at FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1 ORDER BY u.username",
        )
        .bind(workspace_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    username: r.try_get("username")?,
                    role: role_of(&r.try_get::<String, _>("role")?),
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Adds a member or changes their role. `Ok(Err(LastAdmin))` when the change would leave
    /// the workspace without an admin.
    pub async fn set_member(
        &self,
        workspace_id: i64,
        user_id: i64,
        role: Role,
        actor: &str,
    ) -> Result<Result<Member, LastAdmin>> {
        let mut tx = self.begin().await?;
        if role == Role::Member && self.is_last_admin(&mut tx, workspace_id, user_id).await? {
            return Ok(Err(LastAdmin));
        }
        let previous: Option<String> =
            sqlx::query("SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                .bind(workspace_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("role"))
                .transpose()?;
        let now = now_micros();
        sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(workspace_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT u.username, m.role, m.created_at FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1 AND m.user_id = $2",
        )
        .bind(workspace_id)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        let username: String = row.try_get("username")?;
        let action = match previous.as_deref() {
            None => Some(AuditAction::MemberAdded),
            Some(p) if p != role.as_str() => Some(AuditAction::MemberRoleChanged),
            Some(_) => None,
        };
        if let Some(action) = action {
            let entry = AuditEntry {
                workspace_id,
                actor: actor.to_owned(),
                action,
                target: AuditTarget::default(),
                details: serde_json::json!({
                    "username": username,
                    "role": role.as_str(),
                    "previousRole": previous,
                }),
            };
            self.insert_audit(&mut tx, &entry).await?;
        }
        tx.commit().await?;
        Ok(Ok(Member {
            username: row.try_get("username")?,
            role: role_of(&row.try_get::<String, _>("role")?),
            created_at: row.try_get("created_at")?,
        }))
    }

    /// Removes a member. `Ok(Ok(false))` when they were not one; `Ok(Err(LastAdmin))` when they
    /// are the last admin.
    pub async fn remove_member(
        &self,
        workspace_id: i64,
        user_id: i64,
        actor: &str,
    ) -> Result<Result<bool, LastAdmin>> {
        let mut tx = self.begin().await?;
        if self.is_last_admin(&mut tx, workspace_id, user_id).await? {
            return Ok(Err(LastAdmin));
        }
        let done = sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
            .bind(workspace_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(Ok(false));
        }
        let username: String = sqlx::query("SELECT username FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("username")?;
        let entry = AuditEntry {
            workspace_id,
            actor: actor.to_owned(),
            action: AuditAction::MemberRemoved,
            target: AuditTarget::default(),
            details: serde_json::json!({ "username": username }),
        };
        self.insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(Ok(true))
    }

    async fn is_last_admin(
        &self,
        tx: &mut sqlx::AnyConnection,
        workspace_id: i64,
        user_id: i64,
    ) -> Result<bool> {
        let rows = sqlx::query(self.pick(locked!(
            "SELECT user_id FROM memberships WHERE workspace_id = $1 AND role = 'admin'"
        )))
        .bind(workspace_id)
        .fetch_all(&mut *tx)
        .await?;
        let admins: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get("user_id"))
            .collect::<Result<_, _>>()?;
        Ok(admins == [user_id])
    }

    pub async fn statuses(&self, workspace_id: i64) -> Result<Vec<StatusDef>> {
        let text: String = sqlx::query("SELECT statuses FROM workspaces WHERE id = $1")
            .bind(workspace_id)
            .fetch_one(&self.read)
            .await?
            .try_get("statuses")?;
        decode_statuses(&text)
    }

    /// Replaces the statuses. `Ok(Err(name))` when a version still has a status the new list
    /// drops.
    pub async fn set_statuses(
        &self,
        workspace_id: i64,
        statuses: &[StatusDef],
    ) -> Result<Result<(), String>> {
        let text = serde_json::to_string(statuses).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let mut tx = self.begin().await?;
        let used = sqlx::query(
            "SELECT DISTINCT v.status FROM model_versions v JOIN models m ON m.id = v.model_id \
             WHERE m.workspace_id = $1 AND v.status IS NOT NULL",
        )
        .bind(workspace_id)
        .fetch_all(&mut *tx)
        .await?;
        for row in &used {
            let name: String = row.try_get("status")?;
            if !statuses.iter().any(|s| s.name == name) {
                return Ok(Err(name));
            }
        }
        sqlx::query("UPDATE workspaces SET statuses = $2 WHERE id = $1")
            .bind(workspace_id)
            .bind(text)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }
}

/// The change would leave a workspace without an admin.
#[derive(Debug, Clone, Copy)]
pub struct LastAdmin;
