//! [`Models`] on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, named_params, params};

use super::{Sqlite, insert_audit};
use crate::store::models::{
    COUNT_PENDING, COUNT_VERSIONS, DELETE_MODEL, DeleteModel, GET_MODEL, INSERT_MODEL, LIST_MODELS,
    MODEL_BY_ID, MODEL_ID, Model, ModelPatch, ModelScopeRow, Models, SCOPE_SQL, ScopeColumns,
    UPDATE_MODEL, contains_pattern, created, deleted, latest,
};
use crate::store::{ModelRef, Result, now_micros};

/// A model row's columns; the latest version's tags still JSON.
type ModelColumns = (Model, Option<String>, Option<String>, Option<String>);

fn model_columns(r: &Row<'_>) -> rusqlite::Result<ModelColumns> {
    Ok((
        Model {
            id: r.get("id")?,
            name: r.get("name")?,
            description: r.get("description")?,
            created_at: r.get("created_at")?,
            updated_at: r.get("updated_at")?,
            latest: None,
        },
        r.get("latest_version")?,
        r.get("latest_status")?,
        r.get("latest_tags")?,
    ))
}

fn model_of((mut model, version, status, tags): ModelColumns) -> Result<Model> {
    model.latest = latest(version, status, tags)?;
    Ok(model)
}

#[async_trait]
impl Models for Sqlite {
    async fn create_model(
        &self,
        workspace_id: i64,
        name: &str,
        description: &str,
        actor: &str,
    ) -> Result<Model> {
        let (name, description, actor) =
            (name.to_owned(), description.to_owned(), actor.to_owned());
        self.write(move |conn| {
            let now = now_micros();
            let id: i64 = conn
                .prepare_cached(INSERT_MODEL)?
                .query_row(params![workspace_id, name, description, now], |r| {
                    r.get("id")
                })?;
            insert_audit(conn, &created(workspace_id, &actor, &name))?;
            Ok(Model {
                id,
                name,
                description,
                created_at: now,
                updated_at: now,
                latest: None,
            })
        })
        .await
    }

    async fn list_models(
        &self,
        workspace_id: i64,
        after: Option<&str>,
        name_contains: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Model>> {
        let pattern = name_contains.map(contains_pattern);
        let rows: Vec<ModelColumns> = self.read(|conn| {
            let mut stmt = conn.prepare_cached(LIST_MODELS)?;
            let rows =
                stmt.query_map(params![workspace_id, after, pattern, limit], model_columns)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        rows.into_iter().map(model_of).collect()
    }

    async fn get_model(&self, workspace_id: i64, name: &str) -> Result<Option<Model>> {
        let row = self.read(|conn| {
            Ok(conn
                .prepare_cached(GET_MODEL)?
                .query_row(params![workspace_id, name], model_columns)
                .optional()?)
        })?;
        row.map(model_of).transpose()
    }

    async fn model_id(&self, workspace_id: i64, name: &str) -> Result<Option<(i64, String)>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(MODEL_ID)?
                .query_row(params![workspace_id, name], |r| {
                    Ok((r.get("id")?, r.get("name")?))
                })
                .optional()?)
        })
    }

    async fn update_model(&self, model: &ModelRef, patch: &ModelPatch) -> Result<Model> {
        let (id, patch) = (model.model_id, patch.clone());
        let row = self
            .write(move |conn| {
                conn.prepare_cached(UPDATE_MODEL)?.execute(params![
                    patch.name,
                    patch.description,
                    now_micros(),
                    id
                ])?;
                Ok(conn
                    .prepare_cached(MODEL_BY_ID)?
                    .query_row([id], model_columns)?)
            })
            .await?;
        model_of(row)
    }

    async fn delete_model(&self, model: &ModelRef, actor: &str) -> Result<DeleteModel> {
        let (model, actor) = (model.clone(), actor.to_owned());
        self.write(move |conn| {
            let n: i64 = conn
                .prepare_cached(COUNT_VERSIONS)?
                .query_row([model.model_id], |r| r.get("n"))?;
            if n > 0 {
                return Ok(DeleteModel::HasVersions);
            }
            let pending: i64 = conn
                .prepare_cached(COUNT_PENDING)?
                .query_row([model.model_id], |r| r.get("n"))?;
            if pending > 0 {
                return Ok(DeleteModel::PendingDeliveries(pending));
            }
            conn.prepare_cached(DELETE_MODEL)?
                .execute([model.model_id])?;
            insert_audit(conn, &deleted(&model, &actor))?;
            Ok(DeleteModel::Deleted)
        })
        .await
    }

    async fn model_scope(
        &self,
        token_hash: &str,
        ws: &str,
        model: &str,
    ) -> Result<Option<ModelScopeRow>> {
        let columns = self.read(|conn| scope(conn, token_hash, ws, model))?;
        Ok(columns.map(|c| c.into_scope()))
    }
}

/// The model-scope read (see `Models::model_scope`): bound by name, as `SCOPE_SQL` names its
/// parameters more than once.
fn scope(
    conn: &Connection,
    token_hash: &str,
    ws: &str,
    model: &str,
) -> Result<Option<ScopeColumns>> {
    Ok(conn
        .prepare_cached(SCOPE_SQL)?
        .query_row(
            named_params! {"$1": token_hash, "$2": ws, "$3": model},
            |r| {
                Ok(ScopeColumns {
                    user_id: r.get("user_id")?,
                    username: r.get("username")?,
                    server_admin: r.get("server_admin")?,
                    token_id: r.get("token_id")?,
                    ws_id: r.get("ws_id")?,
                    ws_name: r.get("ws_name")?,
                    role: r.get("role")?,
                    model_id: r.get("model_id")?,
                    model_name: r.get("model_name")?,
                })
            },
        )
        .optional()?)
}
