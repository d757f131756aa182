//! [`Names`] on SQLite: the reads on the calling thread, the writes through the group
//! writer.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::Sqlite;
use crate::domain::name_key;
use crate::store::names::{
    CLASH_QUERIES, FILL_NAME_KEY, NameClash, Names, PAGE, SET_SORT_KEY, VERSION_SORT_KEYS,
    VERSION_TAGS, WEBHOOKS_WITHOUT_KEY, WORKSPACE_STATUSES, changed_sort_key, clash_groups,
    status_clashes, tag_clashes,
};
use crate::store::{Error, Result};

/// The rows of `sql`, three columns each.
fn rows<A, B, C>(conn: &Connection, sql: &str, page: &[i64]) -> Result<Vec<(A, B, C)>>
where
    A: rusqlite::types::FromSql,
    B: rusqlite::types::FromSql,
    C: rusqlite::types::FromSql,
{
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(page), |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[async_trait]
impl Names for Sqlite {
    async fn name_clashes(&self) -> Result<Vec<NameClash>> {
        let mut out = Vec::new();
        for query in CLASH_QUERIES {
            let named = self.read(|conn| {
                let mut stmt = conn.prepare_cached(query.sql)?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get("scope")?, r.get("n")?, r.get("name")?)))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })?;
            out.extend(clash_groups(query, named));
        }
        let statuses: Vec<(String, String)> = self.read(|conn| {
            let mut stmt = conn.prepare_cached(WORKSPACE_STATUSES)?;
            let rows = stmt.query_map([], |r| Ok((r.get("name")?, r.get("statuses")?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        for (ws, text) in statuses {
            out.extend(status_clashes(&ws, &text)?);
        }
        Ok(out)
    }

    async fn check_version_tags(&self) -> Result<Vec<NameClash>> {
        let mut out = Vec::new();
        let mut after = 0i64;
        loop {
            let page: Vec<(i64, String, String)> =
                self.read(|conn| rows(conn, VERSION_TAGS, &[after, PAGE]))?;
            let Some((last, _, _)) = page.last() else {
                break;
            };
            after = *last;
            for (_, scope, tags) in &page {
                out.extend(tag_clashes(scope, tags)?);
            }
        }
        Ok(out)
    }

    async fn fill_webhook_name_keys(&self) -> Result<()> {
        // One writer job: the rows without a key are read inside the transaction that fills
        // them.
        self.write(|conn| {
            let hooks: Vec<(String, i64, String)> = rows(conn, WEBHOOKS_WITHOUT_KEY, &[])?;
            let mut fill = conn.prepare_cached(FILL_NAME_KEY)?;
            for (id, model_id, name) in hooks {
                match fill.execute(params![name_key(&name), id, model_id]) {
                    Ok(_) => {}
                    // The key is taken: this one is a clash, and keeps NULL.
                    Err(e) => match Error::from(e) {
                        Error::Conflict { .. } => {}
                        e => return Err(e),
                    },
                }
            }
            Ok(())
        })
        .await
    }

    async fn fix_sort_keys(&self) -> Result<()> {
        let mut after = 0i64;
        loop {
            let page: Vec<(i64, String, String)> =
                self.read(|conn| rows(conn, VERSION_SORT_KEYS, &[after, PAGE]))?;
            let Some((last, _, _)) = page.last() else {
                break;
            };
            after = *last;
            let changed: Vec<(String, i64)> = page
                .iter()
                .filter_map(|(id, version, stored)| {
                    changed_sort_key(version, stored).map(|key| (key, *id))
                })
                .collect();
            if changed.is_empty() {
                continue;
            }
            self.write(move |conn| {
                let mut set = conn.prepare_cached(SET_SORT_KEY)?;
                for (key, id) in &changed {
                    set.execute(params![key, id])?;
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    }
}
