//! [`ServerSettings`] on PostgreSQL.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use super::Postgres;
use crate::store::Result;
use crate::store::settings::{INIT_SETTING, PING, SETTING, ServerSettings};

#[async_trait]
impl ServerSettings for Postgres {
    async fn setting(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query(SETTING)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    async fn init_setting(&self, name: &str, value: &str) -> Result<String> {
        sqlx::query(INIT_SETTING)
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(self
            .setting(name)
            .await?
            .unwrap_or_else(|| value.to_owned()))
    }

    /// A trivial query, given up after 5 seconds (an unreachable server, an exhausted pool).
    async fn ping(&self) -> bool {
        let query = sqlx::query(PING).execute(&self.pool);
        matches!(
            tokio::time::timeout(Duration::from_secs(5), query).await,
            Ok(Ok(_))
        )
    }
}
