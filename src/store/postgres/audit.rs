//! [`Audit`] on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;

use super::{Postgres, insert_audit};
use crate::store::Result;
use crate::store::audit::{
    Audit, AuditAction, AuditEntry, AuditFilter, AuditRecord, AuditTarget, LIST_AUDIT,
};

fn audit_from_row(row: &sqlx::postgres::PgRow) -> Result<AuditRecord> {
    let details: String = row.try_get("details")?;
    Ok(AuditRecord {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: AuditTarget {
            model: row.try_get("model")?,
            version: row.try_get("version")?,
            webhook_id: row.try_get("webhook_id")?,
            webhook_name: row.try_get("webhook_name")?,
        },
        details: serde_json::from_str(&details)?,
    })
}

#[async_trait]
impl Audit for Postgres {
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, entry).await
    }

    async fn list_audit(
        &self,
        workspace_id: i64,
        filter: AuditFilter<'_>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(LIST_AUDIT)
            .bind(workspace_id)
            .bind(before)
            .bind(filter.action.map(AuditAction::as_str))
            .bind(filter.model)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }
}
