//! Model versions, their tags and statuses, and status change requests: the interface both
//! backends implement, the values it answers and the query text both dialects share. Every
//! change here that is a webhook trigger writes its event in the same transaction (the
//! backend's `insert_event`, in its `events.rs`).

use async_trait::async_trait;

use super::audit::{AuditAction, AuditEntry};
use super::{ModelRef, Result};
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

/// Versions, their tags and statuses, and status requests, on either database.
#[async_trait]
pub trait Versions {
    /// Creates a version and its MODEL_VERSION_CREATED event. A number of the same precedence
    /// as one the model has (`1.0.0+build` beside `1.0.0`) is [`super::Error::Conflict`] on
    /// `version` (the index `model_versions_precedence` on the sort key); see
    /// [`Versions::version_like`].
    async fn create_version(&self, model: &ModelRef, new: &NewVersion) -> Result<Version>;

    /// Versions of a model, newest (by semver precedence) first.
    async fn list_versions(
        &self,
        model_id: i64,
        after: Option<&VersionCursor>,
        limit: i64,
    ) -> Result<Vec<Version>>;

    /// The version of a model with the same semver precedence as `number` (equal but for
    /// build metadata), if there is one: what a new version cannot coexist with.
    async fn version_like(&self, model_id: i64, number: &VersionNumber) -> Result<Option<String>>;

    async fn get_version(&self, model_id: i64, version: &str) -> Result<Option<Version>>;

    /// Deletes a version (and its status requests) with its MODEL_VERSION_DELETED event.
    /// `None` when there is no such version.
    async fn delete_version(
        &self,
        model: &ModelRef,
        version: &str,
        actor: &str,
    ) -> Result<Option<Version>>;

    /// Adds and removes tags (compared by `Tag::is`); writes MODEL_TAG_CHANGED only when the
    /// set really changed. `None` when there is no such version.
    async fn change_tags(
        &self,
        model: &ModelRef,
        version: &str,
        add: &[Tag],
        remove: &[Tag],
        actor: &str,
    ) -> Result<Option<Version>>;

    /// Sets (or, with `None`, clears) a version's status; writes MODEL_STATUS_CHANGED and its
    /// audit row (`version.status_forced` when `forced`: an admin set a status that needs
    /// review) when it changed. `None` when there is no such version.
    async fn set_status(
        &self,
        model: &ModelRef,
        version: &str,
        status: Option<&str>,
        actor: &str,
        forced: bool,
    ) -> Result<Option<Version>>;

    /// Records a pending request for `status` with its MODEL_STATUS_CHANGE_REQUESTED event.
    /// `None` when there is no such version.
    async fn request_status(
        &self,
        model: &ModelRef,
        version: &str,
        status: &str,
        comment: Option<&str>,
        requested_by: &str,
    ) -> Result<Option<StatusRequest>>;

    /// Status requests of one version, newest first.
    async fn list_version_requests(
        &self,
        version_id: i64,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StatusRequest>>;

    /// Status requests of a workspace, newest first, optionally only those in `state`.
    async fn list_workspace_requests(
        &self,
        workspace_id: i64,
        state: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StatusRequest>>;

    async fn get_request(&self, workspace_id: i64, id: &str) -> Result<Option<StatusRequest>>;

    /// Approves or rejects a pending request. Approval sets the status with its
    /// MODEL_STATUS_CHANGED event, in the same transaction.
    async fn decide_request(
        &self,
        workspace: (i64, &str),
        id: &str,
        approve: bool,
        decided_by: &str,
    ) -> Result<Decision>;
}

/// The JSON a version's tags are stored as.
pub(super) fn encode_tags(tags: &[String]) -> Result<String> {
    Ok(serde_json::to_string(tags)?)
}

/// The row a new version is, all but its id: what was bound.
pub(super) fn new_row(id: i64, new: &NewVersion, now: i64) -> Version {
    Version {
        id,
        version: new.version.as_str().to_owned(),
        sort_key: new.version.sort_key(),
        tags: new.tags.iter().map(|t| t.as_str().to_owned()).collect(),
        status: new.status.clone(),
        source_experiment_key: new.source_experiment_key.clone(),
        description: new.description.clone(),
        created_by: new.created_by.clone(),
        created_at: now,
        updated_at: now,
    }
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

/// A version's tags after adding `add` and removing `remove`, and the tags that went, or
/// `None` when the set does not change. Tags are one tag when their keys match (`prod`,
/// `PROD`): removing `PROD` removes `prod`, and adding `PROD` to a version tagged `prod`
/// changes nothing.
pub(super) fn retag(
    before: &[String],
    add: &[Tag],
    remove: &[Tag],
) -> Option<(Vec<String>, Vec<String>)> {
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
    (added || !deleted.is_empty()).then_some((tags, deleted))
}

pub(super) fn deleted_entry(model: &ModelRef, v: &Version, actor: &str) -> AuditEntry {
    AuditEntry::about_version(
        model,
        &v.version,
        actor,
        AuditAction::VersionDeleted,
        serde_json::json!({ "tags": v.tags, "status": v.status }),
    )
}

/// The audit row of a change of tags from `before` to `v.tags`.
pub(super) fn tags_entry(
    model: &ModelRef,
    v: &Version,
    before: &[String],
    deleted: &[String],
    actor: &str,
) -> AuditEntry {
    AuditEntry::about_version(
        model,
        &v.version,
        actor,
        AuditAction::VersionTagsChanged,
        serde_json::json!({
            "added": v.tags.iter().filter(|t| !before.contains(t)).collect::<Vec<_>>(),
            "removed": deleted,
        }),
    )
}

/// The audit row of a status set from `old` to `v.status`.
pub(super) fn status_entry(
    model: &ModelRef,
    v: &Version,
    old: &Option<String>,
    actor: &str,
    forced: bool,
) -> AuditEntry {
    let action = if forced {
        AuditAction::VersionStatusForced
    } else {
        AuditAction::VersionStatusChanged
    };
    AuditEntry::about_version(
        model,
        &v.version,
        actor,
        action,
        serde_json::json!({ "from": old, "to": v.status }),
    )
}

/// A new pending request for `status` on `v`, its event's payload and its audit row.
pub(super) fn new_request(
    model: &ModelRef,
    v: &Version,
    status: &str,
    comment: Option<&str>,
    requested_by: &str,
    now: i64,
) -> (StatusRequest, EventPayload, AuditEntry) {
    let id = uuid::Uuid::now_v7().to_string();
    let mut p = payload(
        model,
        EventTrigger::ModelStatusChangeRequested,
        v,
        vec![],
        v.status.clone(),
    );
    p.status = Some(status.to_owned());
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
    let request = StatusRequest {
        id,
        model_name: model.model_name.clone(),
        version: v.version.clone(),
        status: status.to_owned(),
        comment: comment.map(str::to_owned),
        state: "pending".into(),
        requested_by: requested_by.to_owned(),
        created_at: now,
        decided_by: None,
        decided_at: None,
    };
    (request, p, entry)
}

/// What a decision reads of its request (the row [`DECIDE_ROW`] answers).
pub(super) struct DecideRow {
    pub state: String,
    pub model_id: i64,
    pub model_name: String,
    pub version: String,
    /// The status requested.
    pub status: String,
    pub current_status: Option<String>,
    pub requested_by: String,
}

impl DecideRow {
    /// The model the request is about, in `workspace`.
    pub(super) fn model(&self, (workspace_id, workspace_name): (i64, &str)) -> ModelRef {
        ModelRef {
            workspace_id,
            workspace_name: workspace_name.to_owned(),
            model_id: self.model_id,
            model_name: self.model_name.clone(),
        }
    }

    /// The audit row of approving or rejecting request `id`.
    pub(super) fn entry(
        &self,
        model: &ModelRef,
        id: &str,
        approve: bool,
        decided_by: &str,
    ) -> AuditEntry {
        AuditEntry::about_version(
            model,
            &self.version,
            decided_by,
            if approve {
                AuditAction::StatusRequestApproved
            } else {
                AuditAction::StatusRequestRejected
            },
            serde_json::json!({
                "requestId": id,
                "status": self.status,
                "from": self.current_status,
                "requestedBy": self.requested_by,
            }),
        )
    }
}

/// A decided request's state.
pub(super) fn decided_state(approve: bool) -> &'static str {
    if approve { "approved" } else { "rejected" }
}

macro_rules! version_select {
    ($rest:literal) => {
        concat!(
            "SELECT id, version, sort_key, tags, status, source_experiment_key, description, \
             created_by, created_at, updated_at FROM model_versions ",
            $rest
        )
    };
}

macro_rules! request_select {
    ($rest:literal) => {
        concat!(
            "SELECT r.id, m.name AS model_name, v.version, r.status, r.comment, \
             r.state, r.requested_by, r.created_at, r.decided_by, r.decided_at \
             FROM status_requests r JOIN model_versions v ON v.id = r.version_id \
             JOIN models m ON m.id = v.model_id ",
            $rest
        )
    };
}

macro_rules! decide_row {
    ($($lock:literal)?) => {
        concat!(
            "SELECT r.state, r.version_id, r.status, r.requested_by, v.model_id, \
             m.name AS model_name, v.version, v.status AS current_status \
             FROM status_requests r JOIN model_versions v ON v.id = r.version_id \
             JOIN models m ON m.id = v.model_id WHERE r.workspace_id = $1 AND r.id = $2"
            $(, $lock)?
        )
    };
}

macro_rules! insert_version {
    ($($returning:literal)?) => {
        concat!(
            "INSERT INTO model_versions (model_id, version, sort_key, tags, status, \
             source_experiment_key, description, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
            $(, $returning)?
        )
    };
}

/// A new version; SQLite reads its id from the connection, PostgreSQL from
/// [`INSERT_VERSION_RETURNING_ID`].
pub(super) const INSERT_VERSION: &str = insert_version!();
pub(super) const INSERT_VERSION_RETURNING_ID: &str = insert_version!(" RETURNING id");
pub(super) const LIST_VERSIONS: &str = version_select!(
    "WHERE model_id = $1 \
     AND ($2 IS NULL OR sort_key < $2 OR (sort_key = $2 AND id < $3)) \
     ORDER BY sort_key DESC, id DESC LIMIT $4"
);
pub(super) const VERSION_LIKE: &str = "SELECT version FROM model_versions \
     WHERE model_id = $1 AND sort_key = $2 ORDER BY id LIMIT 1";
pub(super) const GET_VERSION: &str = version_select!("WHERE model_id = $1 AND version = $2");
/// [`GET_VERSION`] with the row locked, for the change that follows (PostgreSQL; SQLite's
/// write transactions are already exclusive).
pub(super) const GET_VERSION_FOR_UPDATE: &str =
    version_select!("WHERE model_id = $1 AND version = $2 FOR UPDATE");
pub(super) const DELETE_VERSION: &str = "DELETE FROM model_versions WHERE id = $1";
pub(super) const UPDATE_TAGS: &str =
    "UPDATE model_versions SET tags = $1, updated_at = $2 WHERE id = $3";
pub(super) const UPDATE_STATUS: &str =
    "UPDATE model_versions SET status = $1, updated_at = $2 WHERE id = $3";
pub(super) const INSERT_REQUEST: &str = "INSERT INTO status_requests (id, workspace_id, version_id, status, comment, state, \
     requested_by, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)";
pub(super) const LIST_VERSION_REQUESTS: &str = request_select!(
    "WHERE r.version_id = $1 AND ($2 IS NULL OR r.id < $2) ORDER BY r.id DESC LIMIT $3"
);
pub(super) const LIST_WORKSPACE_REQUESTS: &str = request_select!(
    "WHERE r.workspace_id = $1 AND ($2 IS NULL OR r.state = $2) \
     AND ($3 IS NULL OR r.id < $3) ORDER BY r.id DESC LIMIT $4"
);
pub(super) const GET_REQUEST: &str = request_select!("WHERE r.workspace_id = $1 AND r.id = $2");
pub(super) const REQUEST_BY_ID: &str = request_select!("WHERE r.id = $1");
/// A request and what deciding it needs; PostgreSQL locks it ([`DECIDE_ROW_FOR_UPDATE`]).
pub(super) const DECIDE_ROW: &str = decide_row!();
pub(super) const DECIDE_ROW_FOR_UPDATE: &str = decide_row!(" FOR UPDATE");
pub(super) const DECIDE: &str = "UPDATE status_requests SET state = $1, decided_by = $2, decided_at = $3 \
     WHERE id = $4";

#[cfg(test)]
pub(super) const SHARED_SQL: &[&str] = &[
    INSERT_VERSION,
    INSERT_VERSION_RETURNING_ID,
    LIST_VERSIONS,
    VERSION_LIKE,
    GET_VERSION,
    GET_VERSION_FOR_UPDATE,
    DELETE_VERSION,
    UPDATE_TAGS,
    UPDATE_STATUS,
    INSERT_REQUEST,
    LIST_VERSION_REQUESTS,
    LIST_WORKSPACE_REQUESTS,
    GET_REQUEST,
    REQUEST_BY_ID,
    DECIDE_ROW,
    DECIDE_ROW_FOR_UPDATE,
    DECIDE,
];
