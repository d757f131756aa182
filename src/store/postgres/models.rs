//! [`Models`] on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;

use super::{Postgres, insert_audit};
use crate::store::models::{
    COUNT_PENDING, COUNT_VERSIONS, DELETE_MODEL, DeleteModel, GET_MODEL, INSERT_MODEL, LIST_MODELS,
    MODEL_BY_ID, MODEL_ID, MODEL_ROW, Model, ModelPatch, ModelScopeRow, Models, SCOPE_SQL,
    ScopeColumns, UPDATE_MODEL, contains_pattern, created, deleted, latest,
};
use crate::store::{ModelRef, Result, now_micros};

fn model_from_row(row: &sqlx::postgres::PgRow) -> Result<Model> {
    Ok(Model {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        latest: latest(
            row.try_get("latest_version")?,
            row.try_get("latest_status")?,
            row.try_get("latest_tags")?,
        )?,
    })
}

#[async_trait]
impl Models for Postgres {
    async fn create_model(
        &self,
        workspace_id: i64,
        name: &str,
        description: &str,
        actor: &str,
    ) -> Result<Model> {
        let now = now_micros();
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query(INSERT_MODEL)
            .bind(workspace_id)
            .bind(name)
            .bind(description)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
        insert_audit(&mut tx, &created(workspace_id, actor, name)).await?;
        tx.commit().await?;
        Ok(Model {
            id,
            name: name.to_owned(),
            description: description.to_owned(),
            created_at: now,
            updated_at: now,
            latest: None,
        })
    }

    async fn list_models(
        &self,
        workspace_id: i64,
        after: Option<&str>,
        name_contains: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Model>> {
        let rows = sqlx::query(LIST_MODELS)
            .bind(workspace_id)
            .bind(after)
            .bind(name_contains.map(contains_pattern))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(model_from_row).collect()
    }

    async fn get_model(&self, workspace_id: i64, name: &str) -> Result<Option<Model>> {
        let row = sqlx::query(GET_MODEL)
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(model_from_row).transpose()
    }

    async fn model_id(&self, workspace_id: i64, name: &str) -> Result<Option<(i64, String)>> {
        let row = sqlx::query(MODEL_ID)
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
            .transpose()
    }

    async fn update_model(&self, model: &ModelRef, patch: &ModelPatch) -> Result<Model> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(UPDATE_MODEL)
            .bind(patch.name.as_deref())
            .bind(patch.description.as_deref())
            .bind(now_micros())
            .bind(model.model_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(MODEL_BY_ID)
            .bind(model.model_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        model_from_row(&row)
    }

    async fn delete_model(&self, model: &ModelRef, actor: &str) -> Result<DeleteModel> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("{MODEL_ROW} FOR UPDATE")))
            .bind(model.model_id)
            .fetch_optional(&mut *tx)
            .await?;
        let n: i64 = sqlx::query(COUNT_VERSIONS)
            .bind(model.model_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if n > 0 {
            return Ok(DeleteModel::HasVersions);
        }
        let pending: i64 = sqlx::query(COUNT_PENDING)
            .bind(model.model_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if pending > 0 {
            return Ok(DeleteModel::PendingDeliveries(pending));
        }
        sqlx::query(DELETE_MODEL)
            .bind(model.model_id)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, &deleted(model, actor)).await?;
        tx.commit().await?;
        Ok(DeleteModel::Deleted)
    }

    async fn model_scope(
        &self,
        token_hash: &str,
        ws: &str,
        model: &str,
    ) -> Result<Option<ModelScopeRow>> {
        let row = sqlx::query(SCOPE_SQL)
            .bind(token_hash)
            .bind(ws)
            .bind(model)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let columns = ScopeColumns {
            user_id: row.try_get("user_id")?,
            username: row.try_get("username")?,
            server_admin: row.try_get("server_admin")?,
            token_id: row.try_get("token_id")?,
            ws_id: row.try_get("ws_id")?,
            ws_name: row.try_get("ws_name")?,
            role: row.try_get("role")?,
            model_id: row.try_get("model_id")?,
            model_name: row.try_get("model_name")?,
        };
        Ok(Some(columns.into_scope()))
    }
}
