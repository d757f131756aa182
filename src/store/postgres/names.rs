//! [`Names`] on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;

use super::Postgres;
use crate::domain::name_key;
use crate::store::names::{
    CLASH_QUERIES, FILL_NAME_KEY, NameClash, Names, PAGE, SET_SORT_KEY, VERSION_SORT_KEYS,
    VERSION_TAGS, WEBHOOKS_WITHOUT_KEY, WORKSPACE_STATUSES, changed_sort_key, clash_groups,
    status_clashes, tag_clashes,
};
use crate::store::{Result, is_unique_violation};

#[async_trait]
impl Names for Postgres {
    async fn name_clashes(&self) -> Result<Vec<NameClash>> {
        let mut out = Vec::new();
        for query in CLASH_QUERIES {
            let rows = sqlx::query(query.sql).fetch_all(&self.pool).await?;
            let mut named = Vec::with_capacity(rows.len());
            for row in rows {
                named.push((
                    row.try_get("scope")?,
                    row.try_get("n")?,
                    row.try_get("name")?,
                ));
            }
            out.extend(clash_groups(query, named));
        }
        let rows = sqlx::query(WORKSPACE_STATUSES)
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let ws: String = row.try_get("name")?;
            let text: String = row.try_get("statuses")?;
            out.extend(status_clashes(&ws, &text)?);
        }
        Ok(out)
    }

    async fn check_version_tags(&self) -> Result<Vec<NameClash>> {
        let mut out = Vec::new();
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(VERSION_TAGS)
                .bind(after)
                .bind(PAGE)
                .fetch_all(&self.pool)
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("id")?;
            for row in &rows {
                let scope: String = row.try_get("scope")?;
                let tags: String = row.try_get("tags")?;
                out.extend(tag_clashes(&scope, &tags)?);
            }
        }
        Ok(out)
    }

    async fn fill_webhook_name_keys(&self) -> Result<()> {
        let rows = sqlx::query(WEBHOOKS_WITHOUT_KEY)
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let id: String = row.try_get("id")?;
            let model_id: i64 = row.try_get("model_id")?;
            let name: String = row.try_get("name")?;
            let done = sqlx::query(FILL_NAME_KEY)
                .bind(name_key(&name))
                .bind(id.as_str())
                .bind(model_id)
                .execute(&self.pool)
                .await;
            match done {
                Ok(_) => {}
                // Another node filled the same key meanwhile: this one is a clash.
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn fix_sort_keys(&self) -> Result<()> {
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(VERSION_SORT_KEYS)
                .bind(after)
                .bind(PAGE)
                .fetch_all(&self.pool)
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("id")?;
            for row in &rows {
                let version: String = row.try_get("version")?;
                let stored: String = row.try_get("sort_key")?;
                if let Some(key) = changed_sort_key(&version, &stored) {
                    sqlx::query(SET_SORT_KEY)
                        .bind(key)
                        .bind(row.try_get::<i64, _>("id")?)
                        .execute(&self.pool)
                        .await?;
                }
            }
        }
        Ok(())
    }
}
