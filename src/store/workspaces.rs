//! Workspaces, their members and their statuses: the interface both backends implement, the
//! values it answers and the query text both dialects share.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Result;
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

/// The change would leave a workspace without an admin.
#[derive(Debug, Clone, Copy)]
pub struct LastAdmin;

/// Workspaces, memberships and statuses, on either database.
#[async_trait]
pub trait Workspaces {
    /// Creates a workspace with the default statuses, its creator its first admin. A taken
    /// name is [`super::Error::Conflict`] on `name`.
    async fn create_workspace(&self, name: &str, creator_id: i64) -> Result<Workspace>;

    /// The workspaces a user is a member of, by name, with the user's role.
    async fn workspaces_of(&self, user_id: i64) -> Result<Vec<WorkspaceAccess>>;

    /// The caller's access to a workspace: `None` when it does not exist or the caller is not
    /// a member (the two are deliberately indistinguishable). Server admins act as workspace
    /// admins everywhere.
    async fn workspace_access(
        &self,
        user_id: i64,
        server_admin: bool,
        name: &str,
    ) -> Result<Option<WorkspaceAccess>>;

    async fn list_members(&self, workspace_id: i64) -> Result<Vec<Member>>;

    /// Adds a member or changes their role (audited). `Ok(Err(LastAdmin))` when the change
    /// would leave the workspace without an admin.
    async fn set_member(
        &self,
        workspace_id: i64,
        user_id: i64,
        role: Role,
        actor: &str,
    ) -> Result<Result<Member, LastAdmin>>;

    /// Removes a member (audited). `Ok(Ok(false))` when they were not one;
    /// `Ok(Err(LastAdmin))` when they are the last admin.
    async fn remove_member(
        &self,
        workspace_id: i64,
        user_id: i64,
        actor: &str,
    ) -> Result<Result<bool, LastAdmin>>;

    async fn statuses(&self, workspace_id: i64) -> Result<Vec<StatusDef>>;

    /// Replaces the statuses. `Ok(Err(name))` when a version still has a status the new list
    /// drops.
    async fn set_statuses(
        &self,
        workspace_id: i64,
        statuses: &[StatusDef],
    ) -> Result<Result<(), String>>;
}

pub(super) fn role_of(text: &str) -> Role {
    if text == "admin" {
        Role::Admin
    } else {
        Role::Member
    }
}

/// The role an access row gives: a server admin is an admin everywhere; anyone else needs a
/// membership.
pub(super) fn access_role(membership: Option<&str>, server_admin: bool) -> Option<Role> {
    match (membership, server_admin) {
        (_, true) => Some(Role::Admin),
        (Some(r), false) => Some(role_of(r)),
        (None, false) => None,
    }
}

/// The audit row of a membership change, when it is one.
pub(super) fn member_change(
    workspace_id: i64,
    actor: &str,
    username: &str,
    role: Role,
    previous: Option<&str>,
) -> Option<super::AuditEntry> {
    use super::{AuditAction, AuditTarget};
    let action = match previous {
        None => AuditAction::MemberAdded,
        Some(p) if p != role.as_str() => AuditAction::MemberRoleChanged,
        Some(_) => return None,
    };
    Some(super::AuditEntry {
        workspace_id,
        actor: actor.to_owned(),
        action,
        target: AuditTarget::default(),
        details: serde_json::json!({
            "username": username,
            "role": role.as_str(),
            "previousRole": previous,
        }),
    })
}

/// The audit row of a member's removal.
pub(super) fn member_removed(workspace_id: i64, actor: &str, username: &str) -> super::AuditEntry {
    super::AuditEntry {
        workspace_id,
        actor: actor.to_owned(),
        action: super::AuditAction::MemberRemoved,
        target: super::AuditTarget::default(),
        details: serde_json::json!({ "username": username }),
    }
}

pub(super) const INSERT_WORKSPACE: &str =
    "INSERT INTO workspaces (name, statuses, created_at) VALUES ($1, $2, $3) RETURNING id";
pub(super) const INSERT_ADMIN_MEMBER: &str = "INSERT INTO memberships (workspace_id, user_id, role, created_at) \
     VALUES ($1, $2, 'admin', $3)";
pub(super) const WORKSPACES_OF: &str = "SELECT w.id, w.name, m.role FROM memberships m \
     JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = $1 ORDER BY w.name";
pub(super) const WORKSPACE_ACCESS: &str = "SELECT w.id, w.name, m.role FROM workspaces w \
     LEFT JOIN memberships m ON m.workspace_id = w.id AND m.user_id = $1 WHERE w.name = $2";
pub(super) const LIST_MEMBERS: &str = "SELECT u.username, m.role, m.created_at FROM memberships m \
     JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1 ORDER BY u.username";
pub(super) const MEMBER_ROLE: &str =
    "SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2";
pub(super) const UPSERT_MEMBER: &str = "INSERT INTO memberships (workspace_id, user_id, role, created_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role";
pub(super) const MEMBER: &str = "SELECT u.username, m.role, m.created_at FROM memberships m \
     JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1 AND m.user_id = $2";
pub(super) const DELETE_MEMBER: &str =
    "DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2";
pub(super) const USERNAME: &str = "SELECT username FROM users WHERE id = $1";
/// The workspace's admins (PostgreSQL locks them: `FOR UPDATE` is added there).
pub(super) const ADMINS: &str =
    "SELECT user_id FROM memberships WHERE workspace_id = $1 AND role = 'admin'";
pub(super) const STATUSES: &str = "SELECT statuses FROM workspaces WHERE id = $1";
pub(super) const USED_STATUSES: &str = "SELECT DISTINCT v.status FROM model_versions v JOIN models m ON m.id = v.model_id \
     WHERE m.workspace_id = $1 AND v.status IS NOT NULL";
pub(super) const SET_STATUSES: &str = "UPDATE workspaces SET statuses = $1 WHERE id = $2";

#[cfg(test)]
pub(super) const SHARED_SQL: &[&str] = &[
    INSERT_WORKSPACE,
    INSERT_ADMIN_MEMBER,
    WORKSPACES_OF,
    WORKSPACE_ACCESS,
    MEMBER_ROLE,
    UPSERT_MEMBER,
    MEMBER,
    DELETE_MEMBER,
    USERNAME,
    ADMINS,
    STATUSES,
    USED_STATUSES,
    SET_STATUSES,
    LIST_MEMBERS,
];
