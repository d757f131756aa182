//! [`Audit`] on SQLite: a row on its own through the group writer; the log read on the
//! calling thread.

use async_trait::async_trait;
use rusqlite::{Row, params};

use super::{Sqlite, insert_audit};
use crate::store::Result;
use crate::store::audit::{
    Audit, AuditAction, AuditEntry, AuditFilter, AuditRecord, AuditTarget, LIST_AUDIT,
};

/// An audit row's columns, its details still JSON.
fn audit_columns(r: &Row<'_>) -> rusqlite::Result<(AuditRecord, String)> {
    Ok((
        AuditRecord {
            id: r.get("id")?,
            at: r.get("at")?,
            actor: r.get("actor")?,
            action: r.get("action")?,
            target: AuditTarget {
                model: r.get("model")?,
                version: r.get("version")?,
                webhook_id: r.get("webhook_id")?,
                webhook_name: r.get("webhook_name")?,
            },
            details: serde_json::Value::Null,
        },
        r.get("details")?,
    ))
}

#[async_trait]
impl Audit for Sqlite {
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        let entry = entry.clone();
        self.write(move |conn| insert_audit(conn, &entry)).await
    }

    async fn list_audit(
        &self,
        workspace_id: i64,
        filter: AuditFilter<'_>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let rows: Vec<(AuditRecord, String)> = self.read(|conn| {
            let mut stmt = conn.prepare_cached(LIST_AUDIT)?;
            let rows = stmt.query_map(
                params![
                    workspace_id,
                    before,
                    filter.action.map(AuditAction::as_str),
                    filter.model,
                    limit
                ],
                audit_columns,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        rows.into_iter()
            .map(|(mut record, details)| {
                record.details = serde_json::from_str(&details)?;
                Ok(record)
            })
            .collect()
    }
}
