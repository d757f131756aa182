//! Users and their API tokens. Tokens are stored as SHA-256 hashes, never in clear.

use sqlx::Row;

use super::{Result, Store, now_micros};

/// The authenticated user behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: i64,
    pub username: String,
    pub server_admin: bool,
    pub token_id: String,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub server_admin: bool,
    pub created_at: i64,
}

/// A token as listed: never its value.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub id: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

fn user_from_row(row: &sqlx::any::AnyRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        server_admin: row.try_get::<i64, _>("server_admin")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// On an empty database, creates the server admin `admin` with one token. Answers whether
    /// it did; on a database that has users it does nothing.
    pub async fn bootstrap_admin(&self, token_id: &str, token_hash: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if count > 0 {
            return Ok(false);
        }
        let now = now_micros();
        let id: i64 = sqlx::query(
            "INSERT INTO users (username, server_admin, created_at) VALUES ('admin', 1, $1) \
             RETURNING id",
        )
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_id)
        .bind(id)
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The user owning the unrevoked token with this hash.
    pub async fn authenticate(&self, token_hash: &str) -> Result<Option<Caller>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.server_admin, t.id AS token_id \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| {
            Ok(Caller {
                user_id: row.try_get("id")?,
                username: row.try_get("username")?,
                server_admin: row.try_get::<i64, _>("server_admin")? != 0,
                token_id: row.try_get("token_id")?,
            })
        })
        .transpose()
    }

    /// Creates a user; a taken name is a unique violation.
    pub async fn create_user(&self, username: &str) -> Result<User> {
        let row = sqlx::query(
            "INSERT INTO users (username, server_admin, created_at) VALUES ($1, 0, $2) \
             RETURNING id, username, server_admin, created_at",
        )
        .bind(username)
        .bind(now_micros())
        .fetch_one(&self.write)
        .await?;
        user_from_row(&row)
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT id, username, server_admin, created_at FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// How many unrevoked tokens user `user_id` has.
    pub async fn count_active_tokens(&self, user_id: i64) -> Result<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.read)
        .await?
        .try_get("n")?)
    }

    pub async fn create_token(
        &self,
        user_id: i64,
        token_id: &str,
        token_hash: &str,
    ) -> Result<TokenInfo> {
        let now = now_micros();
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_id)
        .bind(user_id)
        .bind(token_hash)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(TokenInfo {
            id: token_id.to_owned(),
            created_at: now,
            revoked_at: None,
        })
    }

    pub async fn list_tokens(&self, user_id: i64) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT id, created_at, revoked_at FROM api_tokens WHERE user_id = $1 \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.read)
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

    /// Revokes a token of this user; false when the user has no such token.
    pub async fn revoke_token(&self, user_id: i64, token_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE user_id = $1 AND id = $2",
        )
        .bind(user_id)
        .bind(token_id)
        .bind(now_micros())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

impl Store {
    /// Opens a browser session for the holder of `token_id`.
    pub async fn create_session(
        &self,
        id_hash: &str,
        caller: &Caller,
        csrf: &str,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, token_id, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_hash)
        .bind(caller.user_id)
        .bind(caller.token_id.as_str())
        .bind(csrf)
        .bind(now_micros())
        .bind(expires_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The user of a live session, with its CSRF token; `None` when the session expired or
    /// its API token was revoked.
    pub async fn session(&self, id_hash: &str) -> Result<Option<(Caller, String)>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.server_admin, t.id AS token_id, s.csrf \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             JOIN api_tokens t ON t.id = s.token_id \
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL",
        )
        .bind(id_hash)
        .bind(now_micros())
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| {
            Ok((
                Caller {
                    user_id: row.try_get("id")?,
                    username: row.try_get("username")?,
                    server_admin: row.try_get::<i64, _>("server_admin")? != 0,
                    token_id: row.try_get("token_id")?,
                },
                row.try_get("csrf")?,
            ))
        })
        .transpose()
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1 OR expires_at < $2")
            .bind(id_hash)
            .bind(now_micros())
            .execute(&self.write)
            .await?;
        Ok(())
    }
}
