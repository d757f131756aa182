//! [`Users`] on SQLite: writes on the group writer, reads on the calling thread.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Sqlite;
use crate::store::users::{
    AUTHENTICATE, COUNT_ACTIVE_TOKENS, COUNT_USERS, Caller, DELETE_SESSION, INSERT_ADMIN,
    INSERT_SESSION, INSERT_TOKEN, INSERT_USER, LIST_TOKENS, REVOKE_TOKEN, SESSION, TokenInfo,
    USER_BY_NAME, User, Users,
};
use crate::store::{Result, now_micros};

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get("id")?,
        username: r.get("username")?,
        server_admin: r.get::<_, i64>("server_admin")? != 0,
        created_at: r.get("created_at")?,
    })
}

fn caller_from_row(r: &Row<'_>) -> rusqlite::Result<Caller> {
    Ok(Caller {
        user_id: r.get("id")?,
        username: r.get("username")?,
        server_admin: r.get::<_, i64>("server_admin")? != 0,
        token_id: r.get("token_id")?,
    })
}

fn insert_token(
    conn: &Connection,
    token_id: &str,
    user_id: i64,
    token_hash: &str,
    now: i64,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(INSERT_TOKEN)?
        .execute(params![token_id, user_id, token_hash, now])
}

#[async_trait]
impl Users for Sqlite {
    async fn bootstrap_admin(&self, token_id: &str, token_hash: &str) -> Result<bool> {
        let (token_id, token_hash) = (token_id.to_owned(), token_hash.to_owned());
        self.write(move |conn| {
            let count: i64 = conn.query_row(COUNT_USERS, [], |r| r.get("n"))?;
            if count > 0 {
                return Ok(false);
            }
            let now = now_micros();
            let id: i64 = conn.query_row(INSERT_ADMIN, [now], |r| r.get("id"))?;
            insert_token(conn, &token_id, id, &token_hash, now)?;
            Ok(true)
        })
        .await
    }

    async fn authenticate(&self, token_hash: &str) -> Result<Option<Caller>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(AUTHENTICATE)?
                .query_row([token_hash], caller_from_row)
                .optional()?)
        })
    }

    async fn create_user(&self, username: &str) -> Result<User> {
        let username = username.to_owned();
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(INSERT_USER)?
                .query_row(params![username, now_micros()], user_from_row)?)
        })
        .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(USER_BY_NAME)?
                .query_row([username], user_from_row)
                .optional()?)
        })
    }

    async fn count_active_tokens(&self, user_id: i64) -> Result<i64> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(COUNT_ACTIVE_TOKENS)?
                .query_row([user_id], |r| r.get("n"))?)
        })
    }

    async fn create_token(
        &self,
        user_id: i64,
        token_id: &str,
        token_hash: &str,
    ) -> Result<TokenInfo> {
        let (token_id, token_hash) = (token_id.to_owned(), token_hash.to_owned());
        self.write(move |conn| {
            let now = now_micros();
            insert_token(conn, &token_id, user_id, &token_hash, now)?;
            Ok(TokenInfo {
                id: token_id,
                created_at: now,
                revoked_at: None,
            })
        })
        .await
    }

    async fn list_tokens(&self, user_id: i64) -> Result<Vec<TokenInfo>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(LIST_TOKENS)?;
            let rows = stmt.query_map([user_id], |r| {
                Ok(TokenInfo {
                    id: r.get("id")?,
                    created_at: r.get("created_at")?,
                    revoked_at: r.get("revoked_at")?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn revoke_token(&self, user_id: i64, token_id: &str) -> Result<bool> {
        let token_id = token_id.to_owned();
        self.write(move |conn| {
            let n = conn.prepare_cached(REVOKE_TOKEN)?.execute(params![
                now_micros(),
                user_id,
                token_id
            ])?;
            Ok(n > 0)
        })
        .await
    }

    async fn create_session(
        &self,
        id_hash: &str,
        caller: &Caller,
        csrf: &str,
        expires_at: i64,
    ) -> Result<()> {
        let (id_hash, csrf) = (id_hash.to_owned(), csrf.to_owned());
        let (user_id, token_id) = (caller.user_id, caller.token_id.clone());
        self.write(move |conn| {
            conn.prepare_cached(INSERT_SESSION)?.execute(params![
                id_hash,
                user_id,
                token_id,
                csrf,
                now_micros(),
                expires_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<(Caller, String)>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(SESSION)?
                .query_row(params![id_hash, now_micros()], |r| {
                    Ok((caller_from_row(r)?, r.get("csrf")?))
                })
                .optional()?)
        })
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        let id_hash = id_hash.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(DELETE_SESSION)?
                .execute(params![id_hash, now_micros()])?;
            Ok(())
        })
        .await
    }
}
