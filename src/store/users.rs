//! Users, their API tokens and their browser sessions: the interface both backends
//! implement, with the values it answers and the query text both dialects share. Tokens are
//! stored as SHA-256 hashes, never in clear.

use async_trait::async_trait;

use super::Result;

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

/// Users, tokens and sessions, on either database.
#[async_trait]
pub trait Users {
    /// On an empty database, creates the server admin `admin` with one token. Answers whether
    /// it did; on a database that has users it does nothing.
    async fn bootstrap_admin(&self, token_id: &str, token_hash: &str) -> Result<bool>;

    /// The user owning the unrevoked token with this hash.
    async fn authenticate(&self, token_hash: &str) -> Result<Option<Caller>>;

    /// Creates a user; a taken name is [`super::Error::Conflict`] on `username`.
    async fn create_user(&self, username: &str) -> Result<User>;

    async fn user_by_name(&self, username: &str) -> Result<Option<User>>;

    /// How many unrevoked tokens user `user_id` has.
    async fn count_active_tokens(&self, user_id: i64) -> Result<i64>;

    async fn create_token(
        &self,
        user_id: i64,
        token_id: &str,
        token_hash: &str,
    ) -> Result<TokenInfo>;

    /// The user's tokens, newest first.
    async fn list_tokens(&self, user_id: i64) -> Result<Vec<TokenInfo>>;

    /// Revokes a token of this user; false when the user has no such token.
    async fn revoke_token(&self, user_id: i64, token_id: &str) -> Result<bool>;

    /// Opens a browser session for the holder of `caller.token_id`.
    async fn create_session(
        &self,
        id_hash: &str,
        caller: &Caller,
        csrf: &str,
        expires_at: i64,
    ) -> Result<()>;

    /// The user of a live session, with its CSRF token; `None` when the session expired or
    /// its API token was revoked.
    async fn session(&self, id_hash: &str) -> Result<Option<(Caller, String)>>;

    /// Ends a session, and every expired one with it.
    async fn delete_session(&self, id_hash: &str) -> Result<()>;
}

// The query text both dialects take: `$N` placeholders, first used in the order of their
// numbers (SQLite numbers `$N` parameters in the order they first appear; see
// `sql_text_numbers_its_parameters_in_order`).

pub(super) const COUNT_USERS: &str = "SELECT COUNT(*) AS n FROM users";
pub(super) const INSERT_ADMIN: &str = "INSERT INTO users (username, server_admin, created_at) \
     VALUES ('admin', 1, $1) RETURNING id";
pub(super) const INSERT_TOKEN: &str =
    "INSERT INTO api_tokens (id, user_id, token_hash, created_at) VALUES ($1, $2, $3, $4)";
pub(super) const AUTHENTICATE: &str = "SELECT u.id, u.username, u.server_admin, t.id AS token_id \
     FROM api_tokens t JOIN users u ON u.id = t.user_id \
     WHERE t.token_hash = $1 AND t.revoked_at IS NULL";
pub(super) const INSERT_USER: &str = "INSERT INTO users (username, server_admin, created_at) \
     VALUES ($1, 0, $2) RETURNING id, username, server_admin, created_at";
pub(super) const USER_BY_NAME: &str =
    "SELECT id, username, server_admin, created_at FROM users WHERE username = $1";
pub(super) const COUNT_ACTIVE_TOKENS: &str =
    "SELECT COUNT(*) AS n FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL";
pub(super) const LIST_TOKENS: &str = "SELECT id, created_at, revoked_at FROM api_tokens \
     WHERE user_id = $1 ORDER BY created_at DESC, id DESC";
pub(super) const REVOKE_TOKEN: &str = "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) \
     WHERE user_id = $2 AND id = $3";
pub(super) const INSERT_SESSION: &str = "INSERT INTO sessions (id_hash, user_id, token_id, csrf, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";
pub(super) const SESSION: &str = "SELECT u.id, u.username, u.server_admin, t.id AS token_id, s.csrf \
     FROM sessions s JOIN users u ON u.id = s.user_id \
     JOIN api_tokens t ON t.id = s.token_id \
     WHERE s.id_hash = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL";
pub(super) const DELETE_SESSION: &str =
    "DELETE FROM sessions WHERE id_hash = $1 OR expires_at < $2";

#[cfg(test)]
pub(super) const SHARED_SQL: &[&str] = &[
    COUNT_USERS,
    INSERT_ADMIN,
    INSERT_TOKEN,
    AUTHENTICATE,
    INSERT_USER,
    USER_BY_NAME,
    COUNT_ACTIVE_TOKENS,
    LIST_TOKENS,
    REVOKE_TOKEN,
    INSERT_SESSION,
    SESSION,
    DELETE_SESSION,
];
