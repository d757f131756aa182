//! [`Users`] on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;

use super::Postgres;
use crate::store::users::{
    AUTHENTICATE, COUNT_ACTIVE_TOKENS, COUNT_USERS, Caller, DELETE_SESSION, INSERT_ADMIN,
    INSERT_SESSION, INSERT_TOKEN, INSERT_USER, LIST_TOKENS, REVOKE_TOKEN, SESSION, TokenInfo,
    USER_BY_NAME, User, Users,
};
use crate::store::{Result, now_micros};

fn user_from_row(row: &sqlx::postgres::PgRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        server_admin: row.try_get::<i64, _>("server_admin")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

fn caller_from_row(row: &sqlx::postgres::PgRow) -> Result<Caller> {
    Ok(Caller {
        user_id: row.try_get("id")?,
        username: row.try_get("username")?,
        server_admin: row.try_get::<i64, _>("server_admin")? != 0,
        token_id: row.try_get("token_id")?,
    })
}

#[async_trait]
impl Users for Postgres {
    async fn bootstrap_admin(&self, token_id: &str, token_hash: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Two nodes starting on an empty database at once: the second waits here for the
        // first's commit and then sees its admin.
        sqlx::query("LOCK TABLE users IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let count: i64 = sqlx::query(COUNT_USERS)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if count > 0 {
            return Ok(false);
        }
        let now = now_micros();
        let id: i64 = sqlx::query(INSERT_ADMIN)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
        sqlx::query(INSERT_TOKEN)
            .bind(token_id)
            .bind(id)
            .bind(token_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn authenticate(&self, token_hash: &str) -> Result<Option<Caller>> {
        let row = sqlx::query(AUTHENTICATE)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(caller_from_row).transpose()
    }

    async fn create_user(&self, username: &str) -> Result<User> {
        let row = sqlx::query(INSERT_USER)
            .bind(username)
            .bind(now_micros())
            .fetch_one(&self.pool)
            .await?;
        user_from_row(&row)
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        let row = sqlx::query(USER_BY_NAME)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn count_active_tokens(&self, user_id: i64) -> Result<i64> {
        Ok(sqlx::query(COUNT_ACTIVE_TOKENS)
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    async fn create_token(
        &self,
        user_id: i64,
        token_id: &str,
        token_hash: &str,
    ) -> Result<TokenInfo> {
        let now = now_micros();
        sqlx::query(INSERT_TOKEN)
            .bind(token_id)
            .bind(user_id)
            .bind(token_hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(TokenInfo {
            id: token_id.to_owned(),
            created_at: now,
            revoked_at: None,
        })
    }

    async fn list_tokens(&self, user_id: i64) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(LIST_TOKENS)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenInfo {
                    id: r.try_get("id")?,
                    created_at: r.try_get("created_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    async fn revoke_token(&self, user_id: i64, token_id: &str) -> Result<bool> {
        let done = sqlx::query(REVOKE_TOKEN)
            .bind(now_micros())
            .bind(user_id)
            .bind(token_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_session(
        &self,
        id_hash: &str,
        caller: &Caller,
        csrf: &str,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(INSERT_SESSION)
            .bind(id_hash)
            .bind(caller.user_id)
            .bind(caller.token_id.as_str())
            .bind(csrf)
            .bind(now_micros())
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str) -> Result<Option<(Caller, String)>> {
        let row = sqlx::query(SESSION)
            .bind(id_hash)
            .bind(now_micros())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok((caller_from_row(&row)?, row.try_get("csrf")?)))
            .transpose()
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query(DELETE_SESSION)
            .bind(id_hash)
            .bind(now_micros())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
