//! [`Versions`] on SQLite: every change a closure on the group writer (`Sqlite::write`), so
//! it joins group commit, with its event and audit row in the same transaction; reads on the
//! calling thread.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::events::insert_event;
use super::{Sqlite, insert_audit};
use crate::domain::{EventTrigger, Tag, VersionNumber};
use crate::store::versions::{
    DECIDE, DECIDE_ROW, DELETE_VERSION, DecideRow, Decision, GET_REQUEST, GET_VERSION,
    INSERT_REQUEST, INSERT_VERSION, LIST_VERSION_REQUESTS, LIST_VERSIONS, LIST_WORKSPACE_REQUESTS,
    NewVersion, REQUEST_BY_ID, StatusRequest, UPDATE_STATUS, UPDATE_TAGS, VERSION_LIKE, Version,
    VersionCursor, Versions, decided_state, deleted_entry, encode_tags, new_request, new_row,
    payload, retag, status_entry, tags_entry,
};
use crate::store::{ModelRef, Result, now_micros};

/// A version row's columns; the tags still JSON.
type VersionColumns = (Version, String);

fn version_columns(r: &Row<'_>) -> rusqlite::Result<VersionColumns> {
    Ok((
        Version {
            id: r.get("id")?,
            version: r.get("version")?,
            sort_key: r.get("sort_key")?,
            tags: Vec::new(),
            status: r.get("status")?,
            source_experiment_key: r.get("source_experiment_key")?,
            description: r.get("description")?,
            created_by: r.get("created_by")?,
            created_at: r.get("created_at")?,
            updated_at: r.get("updated_at")?,
        },
        r.get("tags")?,
    ))
}

fn version_of((mut v, tags): VersionColumns) -> Result<Version> {
    v.tags = serde_json::from_str(&tags)?;
    Ok(v)
}

fn request_from_row(r: &Row<'_>) -> rusqlite::Result<StatusRequest> {
    Ok(StatusRequest {
        id: r.get("id")?,
        model_name: r.get("model_name")?,
        version: r.get("version")?,
        status: r.get("status")?,
        comment: r.get("comment")?,
        state: r.get("state")?,
        requested_by: r.get("requested_by")?,
        created_at: r.get("created_at")?,
        decided_by: r.get("decided_by")?,
        decided_at: r.get("decided_at")?,
    })
}

/// A version by number, inside the writer's transaction (exclusive: no lock needed).
fn version_row(conn: &Connection, model_id: i64, version: &str) -> Result<Option<Version>> {
    let row = conn
        .prepare_cached(GET_VERSION)?
        .query_row(params![model_id, version], version_columns)
        .optional()?;
    row.map(version_of).transpose()
}

/// Sets `v`'s status to `status`, with its MODEL_STATUS_CHANGED event, unless it is that
/// already; answers the version and how many deliveries the event wrote.
fn apply_status(
    conn: &Connection,
    model: &ModelRef,
    mut v: Version,
    status: Option<&str>,
) -> Result<(Version, usize)> {
    if v.status.as_deref() == status {
        return Ok((v, 0));
    }
    let now = now_micros();
    conn.prepare_cached(UPDATE_STATUS)?
        .execute(params![status, now, v.id])?;
    let old = v.status.take();
    v.status = status.map(str::to_owned);
    v.updated_at = now;
    let event = payload(model, EventTrigger::ModelStatusChanged, &v, vec![], old);
    let deliveries = insert_event(conn, model, &event)?;
    Ok((v, deliveries))
}

impl Sqlite {
    /// Runs `work` on the writer, then wakes the worker when it wrote deliveries.
    async fn write_event<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<(T, usize)> + Send + 'static,
    {
        let (value, deliveries) = self.write(work).await?;
        if deliveries > 0 {
            self.wake.notify_one();
        }
        Ok(value)
    }
}

#[async_trait]
impl Versions for Sqlite {
    async fn create_version(&self, model: &ModelRef, new: &NewVersion) -> Result<Version> {
        let (model, new) = (model.clone(), new.clone());
        // One writer job, statement after statement on the writer's thread.
        self.write_event(move |conn| {
            let now = now_micros();
            let row = new_row(0, &new, now);
            conn.prepare_cached(INSERT_VERSION)?.execute(params![
                model.model_id,
                row.version,
                row.sort_key,
                encode_tags(&row.tags)?,
                row.status,
                row.source_experiment_key,
                row.description,
                row.created_by,
                now,
            ])?;
            // Every column is what was just bound, but the id.
            let version = Version {
                id: conn.last_insert_rowid(),
                ..row
            };
            let event = payload(
                &model,
                EventTrigger::ModelVersionCreated,
                &version,
                vec![],
                None,
            );
            let deliveries = insert_event(conn, &model, &event)?;
            Ok((version, deliveries))
        })
        .await
    }

    async fn list_versions(
        &self,
        model_id: i64,
        after: Option<&VersionCursor>,
        limit: i64,
    ) -> Result<Vec<Version>> {
        let rows: Vec<VersionColumns> = self.read(|conn| {
            let mut stmt = conn.prepare_cached(LIST_VERSIONS)?;
            let rows = stmt.query_map(
                params![
                    model_id,
                    after.map(|c| c.sort_key.as_str()),
                    after.map(|c| c.id),
                    limit
                ],
                version_columns,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        rows.into_iter().map(version_of).collect()
    }

    async fn version_like(&self, model_id: i64, number: &VersionNumber) -> Result<Option<String>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(VERSION_LIKE)?
                .query_row(params![model_id, number.sort_key()], |r| r.get("version"))
                .optional()?)
        })
    }

    async fn get_version(&self, model_id: i64, version: &str) -> Result<Option<Version>> {
        let row = self.read(|conn| {
            Ok(conn
                .prepare_cached(GET_VERSION)?
                .query_row(params![model_id, version], version_columns)
                .optional()?)
        })?;
        row.map(version_of).transpose()
    }

    async fn delete_version(
        &self,
        model: &ModelRef,
        version: &str,
        actor: &str,
    ) -> Result<Option<Version>> {
        let (model, version, actor) = (model.clone(), version.to_owned(), actor.to_owned());
        self.write_event(move |conn| {
            let Some(v) = version_row(conn, model.model_id, &version)? else {
                return Ok((None, 0));
            };
            conn.prepare_cached(DELETE_VERSION)?.execute([v.id])?;
            let event = payload(&model, EventTrigger::ModelVersionDeleted, &v, vec![], None);
            let deliveries = insert_event(conn, &model, &event)?;
            insert_audit(conn, &deleted_entry(&model, &v, &actor))?;
            Ok((Some(v), deliveries))
        })
        .await
    }

    async fn change_tags(
        &self,
        model: &ModelRef,
        version: &str,
        add: &[Tag],
        remove: &[Tag],
        actor: &str,
    ) -> Result<Option<Version>> {
        let (model, version, actor) = (model.clone(), version.to_owned(), actor.to_owned());
        let (add, remove) = (add.to_vec(), remove.to_vec());
        self.write_event(move |conn| {
            let Some(mut v) = version_row(conn, model.model_id, &version)? else {
                return Ok((None, 0));
            };
            let before = v.tags.clone();
            let Some((tags, deleted)) = retag(&before, &add, &remove) else {
                return Ok((Some(v), 0));
            };
            let now = now_micros();
            conn.prepare_cached(UPDATE_TAGS)?
                .execute(params![encode_tags(&tags)?, now, v.id])?;
            v.tags = tags;
            v.updated_at = now;
            insert_audit(conn, &tags_entry(&model, &v, &before, &deleted, &actor))?;
            let old_status = v.status.clone();
            let event = payload(
                &model,
                EventTrigger::ModelTagChanged,
                &v,
                deleted,
                old_status,
            );
            let deliveries = insert_event(conn, &model, &event)?;
            Ok((Some(v), deliveries))
        })
        .await
    }

    async fn set_status(
        &self,
        model: &ModelRef,
        version: &str,
        status: Option<&str>,
        actor: &str,
        forced: bool,
    ) -> Result<Option<Version>> {
        let (model, version, actor) = (model.clone(), version.to_owned(), actor.to_owned());
        let status = status.map(str::to_owned);
        self.write_event(move |conn| {
            let Some(v) = version_row(conn, model.model_id, &version)? else {
                return Ok((None, 0));
            };
            let old = v.status.clone();
            let (v, deliveries) = apply_status(conn, &model, v, status.as_deref())?;
            if old != v.status {
                insert_audit(conn, &status_entry(&model, &v, &old, &actor, forced))?;
            }
            Ok((Some(v), deliveries))
        })
        .await
    }

    async fn request_status(
        &self,
        model: &ModelRef,
        version: &str,
        status: &str,
        comment: Option<&str>,
        requested_by: &str,
    ) -> Result<Option<StatusRequest>> {
        let (model, version, status) = (model.clone(), version.to_owned(), status.to_owned());
        let (comment, requested_by) = (comment.map(str::to_owned), requested_by.to_owned());
        self.write_event(move |conn| {
            let Some(v) = version_row(conn, model.model_id, &version)? else {
                return Ok((None, 0));
            };
            let now = now_micros();
            let (request, event, entry) =
                new_request(&model, &v, &status, comment.as_deref(), &requested_by, now);
            conn.prepare_cached(INSERT_REQUEST)?.execute(params![
                request.id,
                model.workspace_id,
                v.id,
                request.status,
                request.comment,
                request.requested_by,
                now,
            ])?;
            let deliveries = insert_event(conn, &model, &event)?;
            insert_audit(conn, &entry)?;
            Ok((Some(request), deliveries))
        })
        .await
    }

    async fn list_version_requests(
        &self,
        version_id: i64,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StatusRequest>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(LIST_VERSION_REQUESTS)?;
            let rows = stmt.query_map(params![version_id, after, limit], request_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn list_workspace_requests(
        &self,
        workspace_id: i64,
        state: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StatusRequest>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(LIST_WORKSPACE_REQUESTS)?;
            let rows =
                stmt.query_map(params![workspace_id, state, after, limit], request_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn get_request(&self, workspace_id: i64, id: &str) -> Result<Option<StatusRequest>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(GET_REQUEST)?
                .query_row(params![workspace_id, id], request_from_row)
                .optional()?)
        })
    }

    async fn decide_request(
        &self,
        workspace: (i64, &str),
        id: &str,
        approve: bool,
        decided_by: &str,
    ) -> Result<Decision> {
        let (workspace_id, workspace_name) = (workspace.0, workspace.1.to_owned());
        let (id, decided_by) = (id.to_owned(), decided_by.to_owned());
        self.write_event(move |conn| {
            let row = conn
                .prepare_cached(DECIDE_ROW)?
                .query_row(params![workspace_id, id], |r| {
                    Ok(DecideRow {
                        state: r.get("state")?,
                        model_id: r.get("model_id")?,
                        model_name: r.get("model_name")?,
                        version: r.get("version")?,
                        status: r.get("status")?,
                        current_status: r.get("current_status")?,
                        requested_by: r.get("requested_by")?,
                    })
                })
                .optional()?;
            let Some(row) = row else {
                return Ok((Decision::NotFound, 0));
            };
            if row.state != "pending" {
                return Ok((Decision::AlreadyDecided(row.state), 0));
            }
            conn.prepare_cached(DECIDE)?.execute(params![
                decided_state(approve),
                decided_by,
                now_micros(),
                id
            ])?;
            let model = row.model((workspace_id, &workspace_name));
            insert_audit(conn, &row.entry(&model, &id, approve, &decided_by))?;
            let mut deliveries = 0;
            if approve && let Some(v) = version_row(conn, model.model_id, &row.version)? {
                deliveries = apply_status(conn, &model, v, Some(&row.status))?.1;
            }
            let request = conn
                .prepare_cached(REQUEST_BY_ID)?
                .query_row([&id], request_from_row)?;
            Ok((Decision::Done(request), deliveries))
        })
        .await
    }
}
