//! [`Workspaces`] on SQLite. A write transaction is the only writer, so reading the admins
//! inside it needs no lock.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Sqlite, insert_audit};
use crate::domain::Role;
use crate::store::workspaces::{
    ADMINS, DELETE_MEMBER, INSERT_ADMIN_MEMBER, INSERT_WORKSPACE, LIST_MEMBERS, LastAdmin, MEMBER,
    MEMBER_ROLE, Member, SET_STATUSES, STATUSES, StatusDef, UPSERT_MEMBER, USED_STATUSES, USERNAME,
    WORKSPACE_ACCESS, WORKSPACES_OF, Workspace, WorkspaceAccess, Workspaces, access_role,
    member_change, member_removed, role_of,
};
use crate::store::{Result, now_micros};

fn member_from_row(r: &Row<'_>) -> rusqlite::Result<Member> {
    Ok(Member {
        username: r.get("username")?,
        role: role_of(&r.get::<_, String>("role")?),
        created_at: r.get("created_at")?,
    })
}

fn is_last_admin(conn: &Connection, workspace_id: i64, user_id: i64) -> Result<bool> {
    let mut stmt = conn.prepare_cached(ADMINS)?;
    let admins: Vec<i64> = stmt
        .query_map([workspace_id], |r| r.get("user_id"))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(admins == [user_id])
}

#[async_trait]
impl Workspaces for Sqlite {
    async fn create_workspace(&self, name: &str, creator_id: i64) -> Result<Workspace> {
        let name = name.to_owned();
        let statuses = serde_json::to_string(&StatusDef::defaults())?;
        self.write(move |conn| {
            let now = now_micros();
            let id: i64 = conn
                .prepare_cached(INSERT_WORKSPACE)?
                .query_row(params![name, statuses, now], |r| r.get("id"))?;
            conn.prepare_cached(INSERT_ADMIN_MEMBER)?
                .execute(params![id, creator_id, now])?;
            Ok(Workspace {
                id,
                name,
                created_at: now,
            })
        })
        .await
    }

    async fn workspaces_of(&self, user_id: i64) -> Result<Vec<WorkspaceAccess>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(WORKSPACES_OF)?;
            let rows = stmt.query_map([user_id], |r| {
                Ok(WorkspaceAccess {
                    id: r.get("id")?,
                    name: r.get("name")?,
                    role: role_of(&r.get::<_, String>("role")?),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn workspace_access(
        &self,
        user_id: i64,
        server_admin: bool,
        name: &str,
    ) -> Result<Option<WorkspaceAccess>> {
        let row = self.read(|conn| {
            Ok(conn
                .prepare_cached(WORKSPACE_ACCESS)?
                .query_row(params![user_id, name], |r| {
                    Ok((
                        r.get::<_, i64>("id")?,
                        r.get::<_, String>("name")?,
                        r.get::<_, Option<String>>("role")?,
                    ))
                })
                .optional()?)
        })?;
        let Some((id, name, membership)) = row else {
            return Ok(None);
        };
        Ok(
            access_role(membership.as_deref(), server_admin).map(|role| WorkspaceAccess {
                id,
                name,
                role,
            }),
        )
    }

    async fn list_members(&self, workspace_id: i64) -> Result<Vec<Member>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(LIST_MEMBERS)?;
            let rows = stmt.query_map([workspace_id], member_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn set_member(
        &self,
        workspace_id: i64,
        user_id: i64,
        role: Role,
        actor: &str,
    ) -> Result<Result<Member, LastAdmin>> {
        let actor = actor.to_owned();
        self.write(move |conn| {
            if role == Role::Member && is_last_admin(conn, workspace_id, user_id)? {
                return Ok(Err(LastAdmin));
            }
            let previous: Option<String> = conn
                .prepare_cached(MEMBER_ROLE)?
                .query_row(params![workspace_id, user_id], |r| r.get("role"))
                .optional()?;
            conn.prepare_cached(UPSERT_MEMBER)?.execute(params![
                workspace_id,
                user_id,
                role.as_str(),
                now_micros()
            ])?;
            let member = conn
                .prepare_cached(MEMBER)?
                .query_row(params![workspace_id, user_id], member_from_row)?;
            if let Some(entry) = member_change(
                workspace_id,
                &actor,
                &member.username,
                role,
                previous.as_deref(),
            ) {
                insert_audit(conn, &entry)?;
            }
            Ok(Ok(member))
        })
        .await
    }

    async fn remove_member(
        &self,
        workspace_id: i64,
        user_id: i64,
        actor: &str,
    ) -> Result<Result<bool, LastAdmin>> {
        let actor = actor.to_owned();
        self.write(move |conn| {
            if is_last_admin(conn, workspace_id, user_id)? {
                return Ok(Err(LastAdmin));
            }
            let removed = conn
                .prepare_cached(DELETE_MEMBER)?
                .execute(params![workspace_id, user_id])?;
            if removed == 0 {
                return Ok(Ok(false));
            }
            let username: String = conn
                .prepare_cached(USERNAME)?
                .query_row([user_id], |r| r.get("username"))?;
            insert_audit(conn, &member_removed(workspace_id, &actor, &username))?;
            Ok(Ok(true))
        })
        .await
    }

    async fn statuses(&self, workspace_id: i64) -> Result<Vec<StatusDef>> {
        let text: String = self.read(|conn| {
            Ok(conn
                .prepare_cached(STATUSES)?
                .query_row([workspace_id], |r| r.get("statuses"))?)
        })?;
        Ok(serde_json::from_str(&text)?)
    }

    async fn set_statuses(
        &self,
        workspace_id: i64,
        statuses: &[StatusDef],
    ) -> Result<Result<(), String>> {
        let names: Vec<String> = statuses.iter().map(|s| s.name.clone()).collect();
        let text = serde_json::to_string(statuses)?;
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(USED_STATUSES)?;
            let used: Vec<String> = stmt
                .query_map([workspace_id], |r| r.get("status"))?
                .collect::<rusqlite::Result<_>>()?;
            if let Some(dropped) = used.into_iter().find(|u| !names.contains(u)) {
                return Ok(Err(dropped));
            }
            conn.prepare_cached(SET_STATUSES)?
                .execute(params![text, workspace_id])?;
            Ok(Ok(()))
        })
        .await
    }
}
