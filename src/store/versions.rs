//! Model versions, their tags and statuses, and status change requests. Every change here that
//! is a webhook trigger writes its event in the same transaction.

use sqlx::Row;

use super::audit::{AuditAction, AuditEntry};
use super::{ModelRef, Result, Store, now_micros};
use crate::domain::{EventPayload, EventTrigger, Tag, VersionNumber};

#[derive(Debug, Clone)]
pub struct Version {
    pub id: i64,
    pub version: String,
    pub sort_key: String,
    pub tags: Vec<String>,
    pub status: Option<String>,
    pub source_experiment_key: Option<String>,
    pub description: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A validated new version.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub version: VersionNumber,
    pub tags: Vec<Tag>,
    pub status: Option<String>,
    pub source_experiment_key: Option<String>,
    pub description: String,
    pub created_by: String,
}

/// Where a page of versions starts: after this (sort key, id), going down.
#[derive(Debug, Clone)]
pub struct VersionCursor {
    pub sort_key: String,
    pub id: i64,
}

/// Where a page of status requests starts: after this id, going down.
pub type StatusRequestCursor = String;

#[derive(Debug, Clone)]
pub struct StatusRequest {
    pub id: String,
    pub model_name: String,
    pub version: String,
    pub status: String,
    pub comment: Option<String>,
    pub state: String,
    pub requested_by: String,
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
}

/// What became of a decision on a status request.
#[derive(Debug)]
pub enum Decision {
    NotFound,
    /// The request was already decided; its state.
    AlreadyDecided(String),
    /// The request as decided.
    Done(StatusRequest),
}

fn version_from_row(row: &sqlx::any::AnyRow) -> Result<Version, sqlx::Error> {
    let tags: String = row.try_get("tags")?;
    Ok(Version {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        sort_key: row.try_get("sort_key")?,
        tags: serde_json::from_str(&tags).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        status: row.try_get("status")?,
        source_experiment_key: row.try_get("source_experiment_key")?,
        description: row.try_get("description")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn request_from_row(row: &sqlx::any::AnyRow) -> Result<StatusRequest> {
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

pub(super) fn encode_tags(tags: &[String]) -> Result<String, sqlx::Error> {
    serde_json::to_string(tags).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// The ten-field payload of an event about `v`.
pub(super) fn payload(
    model: &ModelRef,
    trigger: EventTrigger,
    v: &Version,
    deleted_tags: Vec<String>,
    old_status: Option<String>,
) -> EventPayload {
    EventPayload {
        event_trigger: trigger,
        workspace_name: model.workspace_name.clone(),
        registry_model_name: model.model_name.clone(),
        version: v.version.clone(),
        tags: v.tags.clone(),
        deleted_tags,
        status: v.status.clone(),
        old_status,
        created_at: v.created_at.div_euclid(1_000_000),
        source_experiment_key: v.source_experiment_key.clone(),
    }
}

const REQUEST_SELECT: &str = "SELECT r.id, m.name AS model_name, v.version, r.status, r.comment, \
    r.state, r.requested_by, r.created_at, r.decided_by, r.decided_at \
    FROM status_requests r JOIN model_versions v ON v.id = r.version_id \
    JOIN models m ON m.id = v.model_id ";

impl Store {
    /// Creates a version and its MODEL_VERSION_CREATED event. A number of the same precedence
    /// as one the model has (`1.0.0+build` beside `1.0.0`) is a unique violation (the index
    /// `model_versions_precedence` on the sort key); see [`Store::version_like`].
    pub async fn create_version(&self, model: &ModelRef, new: &NewVersion) -> Result<Version> {
        let (store, model, new) = (self.clone(), model.clone(), new.clone());
        if let Some(writer) = &self.group {
            // SQLite: on the writer thread, with no round trip per statement.
            let (version, deliveries) = writer
                .write_sync(move |conn| super::fast::create_version(conn, &model, &new))
                .await?;
            if deliveries > 0 {
                self.wake_worker();
            }
            return Ok(version);
        }
        let (version, deliveries) = self
            .write_tx(move |conn| {
                Box::pin(async move {
                    let now = now_micros();
                    let tags: Vec<String> =
                        new.tags.iter().map(|t| t.as_str().to_owned()).collect();
                    let row = sqlx::query(
                        "INSERT INTO model_versions (model_id, version, sort_key, tags, status, \
                         source_experiment_key, description, created_by, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
                         RETURNING id, version, sort_key, tags, status, source_experiment_key, \
                         description, created_by, created_at, updated_at",
                    )
                    .bind(model.model_id)
                    .bind(new.version.as_str())
                    .bind(new.version.sort_key())
                    .bind(encode_tags(&tags)?)
                    .bind(new.status.as_deref())
                    .bind(new.source_experiment_key.as_deref())
                    .bind(new.description.as_str())
                    .bind(new.created_by.as_str())
                    .bind(now)
                    .fetch_one(&mut *conn)
                    .await?;
                    let version = version_from_row(&row)?;
                    let deliveries = store
                        .insert_event(
                            conn,
                            &model,
                            &payload(
                                &model,
                                EventTrigger::ModelVersionCreated,
                                &version,
                                vec![],
                                None,
                            ),
                        )
                        .await?;
                    Ok((version, deliveries))
                })
            })
            .await?;
        if deliveries > 0 {
            self.wake_worker();
        }
        Ok(version)
    }

    /// Versions of a model, newest (by semver precedence) first.
    pub async fn list_versions(
        &self,
        model_id: i64,
        after: Option<&VersionCursor>,
        limit: i64,
    ) -> Result<Vec<Version>> {
        let rows = sqlx::query(
            "SELECT id, version, sort_key, tags, status, source_experiment_key, description, \
             created_by, created_at, updated_at FROM model_versions \
             WHERE model_id = $1 \
             AND ($2 IS NULL OR sort_key < $2 OR (sort_key = $2 AND id < $3)) \
             ORDER BY sort_key DESC, id DESC LIMIT $4",
        )
        .bind(model_id)
        .bind(after.map(|c| c.sort_key.as_str()))
        .bind(after.map(|c| c.id))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(version_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The version of a model with the same semver precedence as `number` (equal but for
    /// build metadata), if there is one: what a new version cannot coexist with.
    pub async fn version_like(
        &self,
        model_id: i64,
        number: &VersionNumber,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT version FROM model_versions WHERE model_id = $1 AND sort_key = $2 \
             ORDER BY id LIMIT 1",
        )
        .bind(model_id)
        .bind(number.sort_key())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| r.try_get("version")).transpose()?)
    }

    pub async fn get_version(&self, model_id: i64, version: &str) -> Result<Option<Version>> {
        let row = sqlx::query(
            "SELECT id, version, sort_key, tags, status, source_experiment_key, description, \
             created_by, created_at, updated_at FROM model_versions \
             WHERE model_id = $1 AND version = $2",
        )
        .bind(model_id)
        .bind(version)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(version_from_row).transpose()?)
    }

    async fn lock_version(
        &self,
        tx: &mut sqlx::AnyConnection,
        model_id: i64,
        version: &str,
    ) -> Result<Option<Version>> {
        let row = sqlx::query(self.pick(locked!(
            "SELECT id, version, sort_key, tags, status, source_experiment_key, description, \
             created_by, created_at, updated_at FROM model_versions \
             WHERE model_id = $1 AND version = $2"
        )))
        .bind(model_id)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
        Ok(row.as_ref().map(version_from_row).transpose()?)
    }

    /// Deletes a version (and its status requests) with its MODEL_VERSION_DELETED event.
    /// `None` when there is no such version.
    pub async fn delete_version(
        &self,
        model: &ModelRef,
        version: &str,
        actor: &str,
    ) -> Result<Option<Version>> {
        let mut tx = self.begin().await?;
        let Some(v) = self.lock_version(&mut tx, model.model_id, version).await? else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM model_versions WHERE id = $1")
            .bind(v.id)
            .execute(&mut *tx)
            .await?;
        self.insert_event(
            &mut tx,
            model,
            &payload(model, EventTrigger::ModelVersionDeleted, &v, vec![], None),
        )
        .await?;
        let entry = AuditEntry::about_version(
            model,
            &v.version,
            actor,
            AuditAction::VersionDeleted,
            serde_json::json!({ "tags": v.tags, "status": v.status }),
        );
        self.insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        self.wake_worker();
        Ok(Some(v))
    }

    /// Adds and removes tags (compared by `Tag::is`); writes MODEL_TAG_CHANGED only when the
    /// set really changed.
    /// `None` when there is no such version.
    pub async fn change_tags(
        &self,
        model: &ModelRef,
        version: &str,
        add: &[Tag],
        remove: &[Tag],
        actor: &str,
    ) -> Result<Option<Version>> {
        let mut tx = self.begin().await?;
        let Some(mut v) = self.lock_version(&mut tx, model.model_id, version).await? else {
            return Ok(None);
        };
        let before = v.tags.clone();
        // Tags are one tag when their keys match (`prod`, `PROD`): removing `PROD` removes
        // `prod`, and adding `PROD` to a version tagged `prod` changes nothing.
        let mut tags: Vec<String> = before
            .iter()
            .filter(|t| !remove.iter().any(|r| r.is(t)))
            .cloned()
            .collect();
        for t in add {
            if !tags.iter().any(|x| t.is(x)) {
                tags.push(t.as_str().to_owned());
            }
        }
        let deleted: Vec<String> = before
            .iter()
            .filter(|t| !tags.contains(t))
            .cloned()
            .collect();
        let added = tags.iter().any(|t| !before.contains(t));
        if deleted.is_empty() && !added {
            return Ok(Some(v));
        }
        let now = now_micros();
        sqlx::query("UPDATE model_versions SET tags = $2, updated_at = $3 WHERE id = $1")
            .bind(v.id)
            .bind(encode_tags(&tags)?)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let entry = AuditEntry::about_version(
            model,
            &v.version,
            actor,
            AuditAction::VersionTagsChanged,
            serde_json::json!({
                "added": tags.iter().filter(|t| !before.contains(t)).collect::<Vec<_>>(),
                "removed": deleted,
            }),
        );
        self.insert_audit(&mut tx, &entry).await?;
        v.tags = tags;
        v.updated_at = now;
        let old_status = v.status.clone();
        self.insert_event(
            &mut tx,
            model,
            &payload(
                model,
                EventTrigger::ModelTagChanged,
                &v,
                deleted,
                old_status,
            ),
        )
        .await?;
        tx.commit().await?;
        self.wake_worker();
        Ok(Some(v))
    }

    /// Sets (or, with `None`, clears) a version's status; writes MODEL_STATUS_CHANGED and its
    /// audit row (`version.status_forced` when `forced`: an admin set a status that needs
    /// review) when it changed. `None` when there is no such version.
    pub async fn set_status(
        &self,
        model: &ModelRef,
        version: &str,
        status: Option<&str>,
        actor: &str,
        forced: bool,
    ) -> Result<Option<Version>> {
        let mut tx = self.begin().await?;
        let Some(v) = self.lock_version(&mut tx, model.model_id, version).await? else {
            return Ok(None);
        };
        let old = v.status.clone();
        let v = self.apply_status(&mut tx, model, v, status).await?;
        if old != v.status {
            let action = if forced {
                AuditAction::VersionStatusForced
            } else {
                AuditAction::VersionStatusChanged
            };
            let entry = AuditEntry::about_version(
                model,
                &v.version,
                actor,
                action,
                serde_json::json!({ "from": old, "to": v.status }),
            );
            self.insert_audit(&mut tx, &entry).await?;
        }
        tx.commit().await?;
        self.wake_worker();
        Ok(Some(v))
    }

    async fn apply_status(
        &self,
        tx: &mut sqlx::AnyConnection,
        model: &ModelRef,
        mut v: Version,
        status: Option<&str>,
    ) -> Result<Version> {
        if v.status.as_deref() == status {
            return Ok(v);
        }
        let now = now_micros();
        sqlx::query("UPDATE model_versions SET status = $2, updated_at = $3 WHERE id = $1")
            .bind(v.id)
            .bind(status)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let old = v.status.take();
        v.status = status.map(str::to_owned);
        v.updated_at = now;
        self.insert_event(
            tx,
            model,
            &payload(model, EventTrigger::ModelStatusChanged, &v, vec![], old),
        )
        .await?;
        Ok(v)
    }

    /// Records a pending request for `status` with its MODEL_STATUS_CHANGE_REQUESTED event.
    /// `None` when there is no such version.
    pub async fn request_status(
        &self,
        model: &ModelRef,
        version: &str,
        status: &str,
        comment: Option<&str>,
        requested_by: &str,
    ) -> Result<Option<StatusRequest>> {
        let mut tx = self.begin().await?;
        let Some(v) = self.lock_version(&mut tx, model.model_id, version).await? else {
            return Ok(None);
        };
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_micros();
        sqlx::query(
            "INSERT INTO status_requests (id, workspace_id, version_id, status, comment, state, \
             requested_by, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)",
        )
        .bind(id.as_str())
        .bind(model.workspace_id)
        .bind(v.id)
        .bind(status)
        .bind(comment)
        .bind(requested_by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut p = payload(
            model,
            EventTrigger::ModelStatusChangeRequested,
            &v,
            vec![],
            v.status.clone(),
        );
        p.status = Some(status.to_owned());
        self.insert_event(&mut tx, model, &p).await?;
        let entry = AuditEntry::about_version(
            model,
            &v.version,
            requested_by,
            AuditAction::StatusRequestCreated,
            serde_json::json!({
                "requestId": id,
                "status": status,
                "currentStatus": v.status,
                "comment": comment,
            }),
        );
        self.insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        self.wake_worker();
        Ok(Some(StatusRequest {
            id,
            model_name: model.model_name.clone(),
            version: v.version,
            status: status.to_owned(),
            comment: comment.map(str::to_owned),
            state: "pending".into(),
            requested_by: requested_by.to_owned(),
            created_at: now,
            decided_by: None,
            decided_at: None,
        }))
    }

    /// Status requests of one version, newest first.
    pub async fn list_version_requests(
        &self,
        version_id: i64,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StatusRequest>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{REQUEST_SELECT} WHERE r.version_id = $1 AND ($2 IS NULL OR r.id < $2) \
             ORDER BY r.id DESC LIMIT $3"
        ));
        let rows = sqlx::query(sql)
            .bind(version_id)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// Status requests of a workspace, newest first, optionally only those in `state`.
    pub async fn list_workspace_requests(
        &self,
        workspace_id: i64,
        state: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StatusRequest>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{REQUEST_SELECT} WHERE r.workspace_id = $1 AND ($2 IS NULL OR r.state = $2) \
             AND ($3 IS NULL OR r.id < $3) ORDER BY r.id DESC LIMIT $4"
        ));
        let rows = sqlx::query(sql)
            .bind(workspace_id)
            .bind(state)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    pub async fn get_request(&self, workspace_id: i64, id: &str) -> Result<Option<StatusRequest>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{REQUEST_SELECT} WHERE r.workspace_id = $1 AND r.id = $2"
        ));
        let row = sqlx::query(sql)
            .bind(workspace_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// Approves or rejects a pending request. Approval sets the status with its
    /// MODEL_STATUS_CHANGED event, in the same transaction.
    pub async fn decide_request(
        &self,
        workspace: (i64, &str),
        id: &str,
        approve: bool,
        decided_by: &str,
    ) -> Result<Decision> {
        let (workspace_id, workspace_name) = workspace;
        let mut tx = self.begin().await?;
        let row = sqlx::query(self.pick(locked!(
            "SELECT r.state, r.version_id, r.status, r.requested_by, v.model_id, \
             m.name AS model_name, v.version, v.status AS current_status \
             FROM status_requests r JOIN model_versions v ON v.id = r.version_id \
             JOIN models m ON m.id = v.model_id WHERE r.workspace_id = $1 AND r.id = $2"
        )))
        .bind(workspace_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Decision::NotFound);
        };
        let state: String = row.try_get("state")?;
        if state != "pending" {
            return Ok(Decision::AlreadyDecided(state));
        }
        let new_state = if approve { "approved" } else { "rejected" };
        sqlx::query(
            "UPDATE status_requests SET state = $2, decided_by = $3, decided_at = $4 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(new_state)
        .bind(decided_by)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        let model = ModelRef {
            workspace_id,
            workspace_name: workspace_name.to_owned(),
            model_id: row.try_get("model_id")?,
            model_name: row.try_get("model_name")?,
        };
        let version: String = row.try_get("version")?;
        let requested: String = row.try_get("status")?;
        let current: Option<String> = row.try_get("current_status")?;
        let requested_by: String = row.try_get("requested_by")?;
        let entry = AuditEntry::about_version(
            &model,
            &version,
            decided_by,
            if approve {
                AuditAction::StatusRequestApproved
            } else {
                AuditAction::StatusRequestRejected
            },
            serde_json::json!({
                "requestId": id,
                "status": requested,
                "from": current,
                "requestedBy": requested_by,
            }),
        );
        self.insert_audit(&mut tx, &entry).await?;
        if approve {
            let status: String = sqlx::query("SELECT status FROM status_requests WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("status")?;
            if let Some(v) = self.lock_version(&mut tx, model.model_id, &version).await? {
                self.apply_status(&mut tx, &model, v, Some(&status)).await?;
            }
        }
        let sql = sqlx::AssertSqlSafe(format!("{REQUEST_SELECT} WHERE r.id = $1"));
        let row = sqlx::query(sql).bind(id).fetch_one(&mut *tx).await?;
        let request = request_from_row(&row)?;
        tx.commit().await?;
        self.wake_worker();
        Ok(Decision::Done(request))
    }
}
