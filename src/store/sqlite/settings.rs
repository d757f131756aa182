//! [`ServerSettings`] on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::Sqlite;
use crate::store::Result;
use crate::store::settings::{INIT_SETTING, PING, SETTING, ServerSettings};

fn setting(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(SETTING)?
        .query_row([name], |r| r.get("value"))
        .optional()
}

#[async_trait]
impl ServerSettings for Sqlite {
    async fn setting(&self, name: &str) -> Result<Option<String>> {
        self.read(|conn| Ok(setting(conn, name)?))
    }

    async fn init_setting(&self, name: &str, value: &str) -> Result<String> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(INIT_SETTING)?
                .execute(params![name, value])?;
            Ok(setting(conn, &name)?.unwrap_or(value))
        })
        .await
    }

    /// A trivial read on a read connection (on this thread: nothing to time out).
    async fn ping(&self) -> bool {
        self.read(|conn| Ok(conn.query_row(PING, [], |_| Ok(()))?))
            .is_ok()
    }
}
