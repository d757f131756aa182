//! [`Versions`] on PostgreSQL: each change one transaction, the version (or request) it
//! changes read `FOR UPDATE` first, ending in its event.

use async_trait::async_trait;
use sqlx::{PgConnection, Row};

use super::events::insert_event;
use super::{Postgres, insert_audit};
use crate::domain::{EventTrigger, Tag, VersionNumber};
use crate::store::versions::{
    DECIDE, DECIDE_ROW_FOR_UPDATE, DELETE_VERSION, DecideRow, Decision, GET_REQUEST, GET_VERSION,
    GET_VERSION_FOR_UPDATE, INSERT_REQUEST, INSERT_VERSION_RETURNING_ID, LIST_VERSION_REQUESTS,
    LIST_VERSIONS, LIST_WORKSPACE_REQUESTS, NewVersion, REQUEST_BY_ID, StatusRequest,
    UPDATE_STATUS, UPDATE_TAGS, VERSION_LIKE, Version, VersionCursor, Versions, decided_state,
    deleted_entry, encode_tags, new_request, new_row, payload, retag, status_entry, tags_entry,
};
use crate::store::{ModelRef, Result, now_micros};

fn version_from_row(row: &sqlx::postgres::PgRow) -> Result<Version> {
    let tags: String = row.try_get("tags")?;
    Ok(Version {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        sort_key: row.try_get("sort_key")?,
        tags: serde_json::from_str(&tags)?,
        status: row.try_get("status")?,
        source_experiment_key: row.try_get("source_experiment_key")?,
        description: row.try_get("description")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn request_from_row(row: &sqlx::postgres::PgRow) -> Result<StatusRequest> {
    Ok(StatusRequest {
        id: row.try_get("id")?,
        model_name: row.try_get("model_name")?,
        version: row.try_get("version")?,
        status: row.try_get("status")?,
        comment: row.try_get("comment")?,
        state: row.try_get("state")?,
        requested_by: row.try_get("requested_by")?,
        created_at: row.try_get("created_at")?,
        decided_by: row.try_get("decided_by")?,
        decided_at: row.try_get("decided_at")?,
    })
}

/// A version by number, locked `FOR UPDATE` until `tx` ends.
async fn lock_version(
    tx: &mut PgConnection,
    model_id: i64,
    version: &str,
) -> Result<Option<Version>> {
    let row = sqlx::query(GET_VERSION_FOR_UPDATE)
        .bind(model_id)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
    row.as_ref().map(version_from_row).transpose()
}

/// Sets `v`'s status to `status`, with its MODEL_STATUS_CHANGED event, unless it is that
/// already; answers the version and how many deliveries the event wrote.
async fn apply_status(
    tx: &mut PgConnection,
    model: &ModelRef,
    mut v: Version,
    status: Option<&str>,
) -> Result<(Version, usize)> {
    if v.status.as_deref() == status {
        return Ok((v, 0));
    }
    let now = now_micros();
    sqlx::query(UPDATE_STATUS)
        .bind(status)
        .bind(now)
        .bind(v.id)
        .execute(&mut *tx)
        .await?;
    let old = v.status.take();
    v.status = status.map(str::to_owned);
    v.updated_at = now;
    let event = payload(model, EventTrigger::ModelStatusChanged, &v, vec![], old);
    let deliveries = insert_event(tx, model, &event).await?;
    Ok((v, deliveries))
}

#[async_trait]
impl Versions for Postgres {
    async fn create_version(&self, model: &ModelRef, new: &NewVersion) -> Result<Version> {
        let now = now_micros();
        let row = new_row(0, new, now);
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query(INSERT_VERSION_RETURNING_ID)
            .bind(model.model_id)
            .bind(row.version.as_str())
            .bind(row.sort_key.as_str())
            .bind(encode_tags(&row.tags)?)
            .bind(row.status.as_deref())
            .bind(row.source_experiment_key.as_deref())
            .bind(row.description.as_str())
            .bind(row.created_by.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
        // Every column is what was just bound, but the id.
        let version = Version { id, ..row };
        let event = payload(
            model,
            EventTrigger::ModelVersionCreated,
            &version,
            vec![],
            None,
        );
        let deliveries = insert_event(&mut tx, model, &event).await?;
        tx.commit().await?;
        self.woke(deliveries);
        Ok(version)
    }

    async fn list_versions(
        &self,
        model_id: i64,
        after: Option<&VersionCursor>,
        limit: i64,
    ) -> Result<Vec<Version>> {
        let rows = sqlx::query(LIST_VERSIONS)
            .bind(model_id)
            .bind(after.map(|c| c.sort_key.as_str()))
            .bind(after.map(|c| c.id))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(version_from_row).collect()
    }

    async fn version_like(&self, model_id: i64, number: &VersionNumber) -> Result<Option<String>> {
        let row = sqlx::query(VERSION_LIKE)
            .bind(model_id)
            .bind(number.sort_key())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("version")).transpose()?)
    }

    async fn get_version(&self, model_id: i64, version: &str) -> Result<Option<Version>> {
        let row = sqlx::query(GET_VERSION)
            .bind(model_id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    async fn delete_version(
        &self,
        model: &ModelRef,
        version: &str,
        actor: &str,
    ) -> Result<Option<Version>> {
        let mut tx = self.pool.begin().await?;
        let Some(v) = lock_version(&mut tx, model.model_id, version).await? else {
            return Ok(None);
        };
        sqlx::query(DELETE_VERSION)
            .bind(v.id)
            .execute(&mut *tx)
            .await?;
        let event = payload(model, EventTrigger::ModelVersionDeleted, &v, vec![], None);
        let deliveries = insert_event(&mut tx, model, &event).await?;
        insert_audit(&mut tx, &deleted_entry(model, &v, actor)).await?;
        tx.commit().await?;
        self.woke(deliveries);
        Ok(Some(v))
    }

    async fn change_tags(
        &self,
        model: &ModelRef,
        version: &str,
        add: &[Tag],
        remove: &[Tag],
        actor: &str,
    ) -> Result<Option<Version>> {
        let mut tx = self.pool.begin().await?;
        let Some(mut v) = lock_version(&mut tx, model.model_id, version).await? else {
            return Ok(None);
        };
        let before = v.tags.clone();
        let Some((tags, deleted)) = retag(&before, add, remove) else {
            return Ok(Some(v));
        };
        let now = now_micros();
        sqlx::query(UPDATE_TAGS)
            .bind(encode_tags(&tags)?)
            .bind(now)
            .bind(v.id)
            .execute(&mut *tx)
            .await?;
        v.tags = tags;
        v.updated_at = now;
        insert_audit(&mut tx, &tags_entry(model, &v, &before, &deleted, actor)).await?;
        let old_status = v.status.clone();
        let event = payload(
            model,
            EventTrigger::ModelTagChanged,
            &v,
            deleted,
            old_status,
        );
        let deliveries = insert_event(&mut tx, model, &event).await?;
        tx.commit().await?;
        self.woke(deliveries);
        Ok(Some(v))
    }

    async fn set_status(
        &self,
        model: &ModelRef,
        version: &str,
        status: Option<&str>,
        actor: &str,
        forced: bool,
    ) -> Result<Option<Version>> {
        let mut tx = self.pool.begin().await?;
        let Some(v) = lock_version(&mut tx, model.model_id, version).await? else {
            return Ok(None);
        };
        let old = v.status.clone();
        let (v, deliveries) = apply_status(&mut tx, model, v, status).await?;
        if old != v.status {
            insert_audit(&mut tx, &status_entry(model, &v, &old, actor, forced)).await?;
        }
        tx.commit().await?;
        self.woke(deliveries);
        Ok(Some(v))
    }

    async fn request_status(
        &self,
        model: &ModelRef,
        version: &str,
        status: &str,
        comment: Option<&str>,
        requested_by: &str,
    ) -> Result<Option<StatusRequest>> {
        let mut tx = self.pool.begin().await?;
        let Some(v) = lock_version(&mut tx, model.model_id, version).await? else {
            return Ok(None);
        };
        let now = now_micros();
        let (request, event, entry) = new_request(model, &v, status, comment, requested_by, now);
        sqlx::query(INSERT_REQUEST)
            .bind(request.id.as_str())
            .bind(model.workspace_id)
            .bind(v.id)
            .bind(status)
            .bind(comment)
            .bind(requested_by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let deliveries = insert_event(&mut tx, model, &event).await?;
        insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        self.woke(deliveries);
        Ok(Some(request))
    }

    async fn list_version_requests(
        &self,
        version_id: i64,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StatusRequest>> {
        let rows = sqlx::query(LIST_VERSION_REQUESTS)
            .bind(version_id)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    async fn list_workspace_requests(
        &self,
        workspace_id: i64,
        state: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StatusRequest>> {
        let rows = sqlx::query(LIST_WORKSPACE_REQUESTS)
            .bind(workspace_id)
            .bind(state)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    async fn get_request(&self, workspace_id: i64, id: &str) -> Result<Option<StatusRequest>> {
        let row = sqlx::query(GET_REQUEST)
            .bind(workspace_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    async fn decide_request(
        &self,
        workspace: (i64, &str),
        id: &str,
        approve: bool,
        decided_by: &str,
    ) -> Result<Decision> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(DECIDE_ROW_FOR_UPDATE)
            .bind(workspace.0)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(Decision::NotFound);
        };
        let row = DecideRow {
            state: row.try_get("state")?,
            model_id: row.try_get("model_id")?,
            model_name: row.try_get("model_name")?,
            version: row.try_get("version")?,
            status: row.try_get("status")?,
            current_status: row.try_get("current_status")?,
            requested_by: row.try_get("requested_by")?,
        };
        if row.state != "pending" {
            return Ok(Decision::AlreadyDecided(row.state));
        }
        sqlx::query(DECIDE)
            .bind(decided_state(approve))
            .bind(decided_by)
            .bind(now_micros())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let model = row.model(workspace);
        insert_audit(&mut tx, &row.entry(&model, id, approve, decided_by)).await?;
        let mut deliveries = 0;
        if approve && let Some(v) = lock_version(&mut tx, model.model_id, &row.version).await? {
            deliveries = apply_status(&mut tx, &model, v, Some(&row.status)).await?.1;
        }
        let request = sqlx::query(REQUEST_BY_ID)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let request = request_from_row(&request)?;
        tx.commit().await?;
        self.woke(deliveries);
        Ok(Decision::Done(request))
    }
}
