//! Server-wide settings (the `server_settings` table) and the health check: the interface
//! both backends implement, and the query text both dialects share.

use async_trait::async_trait;

use super::Result;

/// Server-wide settings and health, on either database.
#[async_trait]
pub trait ServerSettings {
    /// A server-wide setting.
    async fn setting(&self, name: &str) -> Result<Option<String>>;

    /// Stores a server-wide setting unless it is already set; answers the value in force.
    async fn init_setting(&self, name: &str, value: &str) -> Result<String>;

    /// True when the database answers a trivial query (on PostgreSQL, within 5 seconds).
    async fn ping(&self) -> bool;
}

pub(super) const SETTING: &str = "SELECT value FROM server_settings WHERE name = $1";
pub(super) const INIT_SETTING: &str = "INSERT INTO server_settings (name, value) VALUES ($1, $2) \
     ON CONFLICT (name) DO NOTHING";
pub(super) const PING: &str = "SELECT 1";

#[cfg(test)]
pub(super) const SHARED_SQL: &[&str] = &[SETTING, INIT_SETTING, PING];
