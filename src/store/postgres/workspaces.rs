//! [`Workspaces`] on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;

use super::{Postgres, insert_audit};
use crate::domain::Role;
use crate::store::workspaces::{
    ADMINS, DELETE_MEMBER, INSERT_ADMIN_MEMBER, INSERT_WORKSPACE, LIST_MEMBERS, LastAdmin, MEMBER,
    MEMBER_ROLE, Member, SET_STATUSES, STATUSES, StatusDef, UPSERT_MEMBER, USED_STATUSES, USERNAME,
    WORKSPACE_ACCESS, WORKSPACES_OF, Workspace, WorkspaceAccess, Workspaces, access_role,
    member_change, member_removed, role_of,
};
use crate::store::{Result, now_micros};

fn member_from_row(r: &sqlx::postgres::PgRow) -> Result<Member> {
    Ok(Member {
        username: r.try_get("username")?,
        role: role_of(&r.try_get::<String, _>("role")?),
        created_at: r.try_get("created_at")?,
    })
}

/// Whether `user_id` is the workspace's only admin, its admins' rows locked until `tx` ends,
/// so two demotions cannot both pass.
async fn is_last_admin(
    tx: &mut sqlx::PgConnection,
    workspace_id: i64,
    user_id: i64,
) -> Result<bool> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{ADMINS} FOR UPDATE")))
        .bind(workspace_id)
        .fetch_all(&mut *tx)
        .await?;
    let admins: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get("user_id"))
        .collect::<Result<_, _>>()?;
    Ok(admins == [user_id])
}

#[async_trait]
impl Workspaces for Postgres {
    async fn create_workspace(&self, name: &str, creator_id: i64) -> Result<Workspace> {
        let now = now_micros();
        let statuses = serde_json::to_string(&StatusDef::defaults())?;
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query(INSERT_WORKSPACE)
            .bind(name)
            .bind(statuses)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
        sqlx::query(INSERT_ADMIN_MEMBER)
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

    async fn workspaces_of(&self, user_id: i64) -> Result<Vec<WorkspaceAccess>> {
        let rows = sqlx::query(WORKSPACES_OF)
            .bind(user_id)
            .fetch_all(&self.pool)
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

    async fn workspace_access(
        &self,
        user_id: i64,
        server_admin: bool,
        name: &str,
    ) -> Result<Option<WorkspaceAccess>> {
        let row = sqlx::query(WORKSPACE_ACCESS)
            .bind(user_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let membership: Option<String> = row.try_get("role")?;
        let Some(role) = access_role(membership.as_deref(), server_admin) else {
            return Ok(None);
        };
        Ok(Some(WorkspaceAccess {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            role,
        }))
    }

    async fn list_members(&self, workspace_id: i64) -> Result<Vec<Member>> {
        let rows = sqlx::query(LIST_MEMBERS)
            .bind(workspace_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(member_from_row).collect()
    }

    async fn set_member(
        &self,
        workspace_id: i64,
        user_id: i64,
        role: Role,
        actor: &str,
    ) -> Result<Result<Member, LastAdmin>> {
        let mut tx = self.pool.begin().await?;
        if role == Role::Member && is_last_admin(&mut tx, workspace_id, user_id).await? {
            return Ok(Err(LastAdmin));
        }
        let previous: Option<String> = sqlx::query(MEMBER_ROLE)
            .bind(workspace_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("role"))
            .transpose()?;
        sqlx::query(UPSERT_MEMBER)
            .bind(workspace_id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(MEMBER)
            .bind(workspace_id)
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        let member = member_from_row(&row)?;
        if let Some(entry) = member_change(
            workspace_id,
            actor,
            &member.username,
            role,
            previous.as_deref(),
        ) {
            insert_audit(&mut tx, &entry).await?;
        }
        tx.commit().await?;
        Ok(Ok(member))
    }

    async fn remove_member(
        &self,
        workspace_id: i64,
        user_id: i64,
        actor: &str,
    ) -> Result<Result<bool, LastAdmin>> {
        let mut tx = self.pool.begin().await?;
        if is_last_admin(&mut tx, workspace_id, user_id).await? {
            return Ok(Err(LastAdmin));
        }
        let done = sqlx::query(DELETE_MEMBER)
            .bind(workspace_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(Ok(false));
        }
        let username: String = sqlx::query(USERNAME)
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("username")?;
        insert_audit(&mut tx, &member_removed(workspace_id, actor, &username)).await?;
        tx.commit().await?;
        Ok(Ok(true))
    }

    async fn statuses(&self, workspace_id: i64) -> Result<Vec<StatusDef>> {
        let text: String = sqlx::query(STATUSES)
            .bind(workspace_id)
            .fetch_one(&self.pool)
            .await?
            .try_get("statuses")?;
        Ok(serde_json::from_str(&text)?)
    }

    async fn set_statuses(
        &self,
        workspace_id: i64,
        statuses: &[StatusDef],
    ) -> Result<Result<(), String>> {
        let text = serde_json::to_string(statuses)?;
        let mut tx = self.pool.begin().await?;
        let used = sqlx::query(USED_STATUSES)
            .bind(workspace_id)
            .fetch_all(&mut *tx)
            .await?;
        for row in &used {
            let name: String = row.try_get("status")?;
            if !statuses.iter().any(|s| s.name == name) {
                return Ok(Err(name));
            }
        }
        sqlx::query(SET_STATUSES)
            .bind(text)
            .bind(workspace_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }
}
