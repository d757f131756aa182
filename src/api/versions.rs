//! Model versions: creation and deletion, tags, statuses, and status change requests with
//! their approval by workspace admins.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, ModelScope, model_ref, require_ws_admin, workspace};
use super::extract::{ApiJson, ApiPath, ApiQuery, PageQuery, double_option, paginate, parse_limit};
use super::{ErrorResponses, rfc3339};
use crate::app::AppState;
use crate::domain::{Role, StatusName, Tag, VersionNumber, check_text};
use crate::error::{ApiError, FieldErrors};
use crate::store::{
    Decision, ModelRef, NewVersion, StatusRequest, Version, VersionCursor, WorkspaceAccess,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_version, list_versions))
        .routes(routes!(get_version, delete_version))
        .routes(routes!(change_tags))
        .routes(routes!(set_status))
        .routes(routes!(request_status, list_version_requests))
        .routes(routes!(approve_version_request))
        .routes(routes!(reject_version_request))
        .routes(routes!(list_workspace_requests))
        .routes(routes!(get_request))
        .routes(routes!(approve_request))
        .routes(routes!(reject_request))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionIn {
    /// A semantic version (semver 2.0.0): "1.2.3", "2.0.0-rc.1"; at most 128 characters,
    /// major, minor and patch at most 19 digits.
    #[schema(
        max_length = 128,
        pattern = "^(?:0|[1-9][0-9]{0,18})\\.(?:0|[1-9][0-9]{0,18})\\.(?:0|[1-9][0-9]{0,18})(?:-(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?(?:\\+[0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*)?$"
    )]
    pub version: String,
    /// Tags: at most 1000. Duplicates are dropped.
    #[schema(value_type = Option<Vec<super::schema::TagText>>, max_items = 1000)]
    pub tags: Option<Vec<String>>,
    /// One of the workspace's statuses (one it does not have: 409). One that needs review is
    /// for workspace admins only.
    #[schema(value_type = Option<super::schema::StatusNameText>)]
    pub status: Option<String>,
    /// The experiment that produced this version: 1-128 characters, no control characters
    /// but tab, CR and LF.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )]
    pub source_experiment_key: Option<String>,
    /// At most 5000 characters, no control characters but tab, CR and LF.
    #[schema(
        max_length = 5000,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionOut {
    pub version: String,
    pub tags: Vec<String>,
    pub status: Option<String>,
    pub source_experiment_key: Option<String>,
    pub description: String,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Version> for VersionOut {
    fn from(v: Version) -> Self {
        VersionOut {
            version: v.version,
            tags: v.tags,
            status: v.status,
            source_experiment_key: v.source_experiment_key,
            description: v.description,
            created_by: v.created_by,
            created_at: rfc3339(v.created_at),
            updated_at: rfc3339(v.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionList {
    pub items: Vec<VersionOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsIn {
    /// Tags to add (at most 1000).
    #[schema(value_type = Option<Vec<super::schema::TagText>>, max_items = 1000)]
    pub add: Option<Vec<String>>,
    /// Tags to remove (at most 1000).
    #[schema(value_type = Option<Vec<super::schema::TagText>>, max_items = 1000)]
    pub remove: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusIn {
    /// The new status (one the workspace does not have: 409), or null to clear it.
    #[serde(deserialize_with = "double_option::deserialize")]
    #[schema(value_type = Option<super::schema::StatusNameText>, required = true)]
    pub status: Option<Option<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequestIn {
    /// The status asked for (one the workspace does not have: 409).
    #[schema(value_type = super::schema::StatusNameText)]
    pub status: String,
    /// Why; at most 1000 characters, no control characters but tab, CR and LF.
    #[schema(
        max_length = 1000,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )]
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusRequestOut {
    pub id: String,
    pub model_name: String,
    pub version: String,
    pub status: String,
    pub comment: Option<String>,
    /// `pending`, `approved` or `rejected`.
    pub state: String,
    pub requested_by: String,
    pub created_at: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
}

impl From<StatusRequest> for StatusRequestOut {
    fn from(r: StatusRequest) -> Self {
        StatusRequestOut {
            id: r.id,
            model_name: r.model_name,
            version: r.version,
            status: r.status,
            comment: r.comment,
            state: r.state,
            requested_by: r.requested_by,
            created_at: rfc3339(r.created_at),
            decided_by: r.decided_by,
            decided_at: r.decided_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusRequestList {
    pub items: Vec<StatusRequestOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestQuery {
    /// How many items to return: 1 to 500, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page: base64url, as handed out. One this server did
    /// not hand out answers 404 naming `cursor`.
    #[param(min_length = 1, max_length = 1024, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
    /// Only requests in this state: `pending`, `approved` or `rejected`.
    #[param(inline, value_type = Option<super::schema::RequestStateName>)]
    pub state: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct VersionCursorJson {
    k: String,
    i: i64,
}

/// Checks that `status` is one of the workspace's statuses and that the caller may set it
/// directly; answers whether it needs review.
async fn check_status(
    state: &AppState,
    ws: &WorkspaceAccess,
    status: &str,
    field: &str,
) -> Result<bool, ApiError> {
    let statuses = state.store.statuses(ws.id).await?;
    match statuses.iter().find(|s| s.name == status) {
        // A look-alike of a status that needs review (kept from before look-alikes were
        // refused: `Prоduction` beside `Production`) needs review too.
        Some(s) => Ok(s.review_required
            || statuses
                .iter()
                .any(|o| o.review_required && StatusName::looks_like(&o.name, &s.name))),
        None => {
            // A well-formed name the workspace does not (now) have conflicts with its
            // statuses, which an admin may change: 409, as the schema cannot list them.
            StatusName::parse(field, status)?;
            let names: Vec<&str> = statuses.iter().map(|s| s.name.as_str()).collect();
            Err(ApiError::conflict(
                field,
                format!(
                    "unknown status `{status}`; this workspace's statuses are: {}",
                    names.join(", ")
                ),
            ))
        }
    }
}

fn review_forbidden(status: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "status `{status}` needs a workspace admin's review: request it with POST \
         .../status-requests"
    ))
}

async fn version_of(state: &AppState, mref: &ModelRef, version: &str) -> Result<Version, ApiError> {
    state
        .store
        .get_version(mref.model_id, version)
        .await?
        .ok_or_else(|| ApiError::not_found("version"))
}

/// Register a version of a model (any member), with its MODEL_VERSION_CREATED event.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/models/{model}/versions", tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name")),
    request_body = VersionIn,
    responses((status = 201, body = VersionOut), ErrorResponses))]
async fn create_version(
    State(state): State<AppState>,
    ModelScope {
        caller,
        ws,
        model: mref,
    }: ModelScope,
    ApiJson(input): ApiJson<VersionIn>,
) -> Result<(StatusCode, Json<VersionOut>), ApiError> {
    let mut errors = FieldErrors::new();
    let version = errors.check(VersionNumber::parse("version", &input.version));
    let tags = errors.check(Tag::parse_set(
        "tags",
        input.tags.as_deref().unwrap_or_default(),
    ));
    if let Some(key) = &input.source_experiment_key {
        if key.is_empty() {
            errors.add(ApiError::invalid(
                "sourceExperimentKey",
                "sourceExperimentKey must not be empty (omit it or send null)",
            ));
        } else {
            errors.check(check_text("sourceExperimentKey", key, 128));
        }
    }
    let description = input.description.unwrap_or_default();
    errors.check(check_text("description", &description, 5000));
    if let Some(status) = &input.status {
        errors.check(StatusName::parse("status", status));
    }
    let (version, tags) = errors.finish_with(version.zip(tags))?;
    // Only a well-formed request meets the workspace's statuses (an unknown one is 409).
    let needs_review = match &input.status {
        Some(status) => check_status(&state, &ws, status, "status").await?,
        None => false,
    };
    if let Some(status) = &input.status
        && needs_review
        && ws.role != Role::Admin
    {
        return Err(review_forbidden(status));
    }
    let new = NewVersion {
        version,
        tags,
        status: input.status,
        source_experiment_key: input.source_experiment_key,
        description,
        created_by: caller.username,
    };
    let v = match state.store.create_version(&mref, &new).await {
        Ok(v) => v,
        Err(crate::store::Error::Conflict { .. }) => {
            return Err(duplicate_version(&state, &mref, &new.version).await);
        }
        Err(e) => return Err(e.into()),
    };
    Ok((StatusCode::CREATED, Json(v.into())))
}

/// The 409 for a version whose precedence the model already has, naming the one it has: build
/// metadata does not make a different version (semver §10), so `1.0.0+build` is refused
/// beside `1.0.0`.
async fn duplicate_version(state: &AppState, mref: &ModelRef, number: &VersionNumber) -> ApiError {
    let existing = match state.store.version_like(mref.model_id, number).await {
        Ok(existing) => existing,
        Err(e) => return e.into(),
    };
    let message = match existing {
        Some(v) if v != number.as_str() => format!(
            "version {v} of this model has the same precedence as {} (build metadata does \
             not make a different version)",
            number.as_str()
        ),
        _ => format!("version {} of this model already exists", number.as_str()),
    };
    ApiError::conflict("version", message)
}

/// The versions of a model, newest first by semver precedence.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/models/{model}/versions", tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"), PageQuery),
    responses((status = 200, body = VersionList), ErrorResponses))]
async fn list_versions(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<VersionList>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let mref = model_ref(&state, &ws, &name).await?;
    let limit = page.limit()?;
    let after: Option<VersionCursorJson> = page.cursor()?;
    let after = after.map(|c| VersionCursor {
        sort_key: c.k,
        id: c.i,
    });
    let rows = state
        .store
        .list_versions(mref.model_id, after.as_ref(), limit + 1)
        .await?;
    let (rows, next_cursor) = paginate(rows, limit, |v| VersionCursorJson {
        k: v.sort_key.clone(),
        i: v.id,
    });
    Ok(Json(VersionList {
        items: rows.into_iter().map(VersionOut::from).collect(),
        next_cursor,
    }))
}

/// One version.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/models/{model}/versions/{version}",
    tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version number")),
    responses((status = 200, body = VersionOut), ErrorResponses))]
async fn get_version(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, version)): ApiPath<(String, String, String)>,
) -> Result<Json<VersionOut>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let mref = model_ref(&state, &ws, &name).await?;
    Ok(Json(version_of(&state, &mref, &version).await?.into()))
}

/// Delete a version (workspace admins), with its MODEL_VERSION_DELETED event.
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/models/{model}/versions/{version}",
    tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version number")),
    responses((status = 204, description = "Deleted"), ErrorResponses))]
async fn delete_version(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, version)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let mref = model_ref(&state, &ws, &name).await?;
    version_of(&state, &mref, &version).await?;
    require_ws_admin(&ws, "delete versions")?;
    match state
        .store
        .delete_version(&mref, &version, &caller.username)
        .await?
    {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::not_found("version")),
    }
}

/// Add and remove tags (any member). MODEL_TAG_CHANGED is written only when the set changed.
#[utoipa::path(patch, path = "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/tags",
    tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version number")),
    request_body = TagsIn,
    responses((status = 200, body = VersionOut), ErrorResponses))]
async fn change_tags(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, version)): ApiPath<(String, String, String)>,
    ApiJson(input): ApiJson<TagsIn>,
) -> Result<Json<VersionOut>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let mref = model_ref(&state, &ws, &name).await?;
    let mut errors = FieldErrors::new();
    let add = errors.check(Tag::parse_set(
        "add",
        input.add.as_deref().unwrap_or_default(),
    ));
    let remove = errors.check(Tag::parse_set(
        "remove",
        input.remove.as_deref().unwrap_or_default(),
    ));
    let (add, remove) = errors.finish_with(add.zip(remove))?;
    if let Some(both) = add.iter().find(|t| remove.contains(t)) {
        return Err(ApiError::invalid(
            "remove",
            format!("tag `{}` is both added and removed", both.as_str()),
        ));
    }
    match state
        .store
        .change_tags(&mref, &version, &add, &remove, &caller.username)
        .await?
    {
        Some(v) => Ok(Json(v.into())),
        None => Err(ApiError::not_found("version")),
    }
}

/// Set a version's status directly, or clear it with null. A status that needs review is for
/// workspace admins only (who thereby force it); members request it instead.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status",
    tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version number")),
    request_body = StatusIn,
    responses((status = 200, body = VersionOut), ErrorResponses))]
async fn set_status(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, version)): ApiPath<(String, String, String)>,
    ApiJson(input): ApiJson<StatusIn>,
) -> Result<Json<VersionOut>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let mref = model_ref(&state, &ws, &name).await?;
    version_of(&state, &mref, &version).await?;
    let Some(status) = input.status else {
        return Err(ApiError::invalid(
            "status",
            "status is required (a status name, or null to clear it)",
        ));
    };
    // A status that needs review, set directly by an admin, is a forced change.
    let mut forced = false;
    if let Some(s) = &status
        && check_status(&state, &ws, s, "status").await?
    {
        if ws.role != Role::Admin {
            return Err(review_forbidden(s));
        }
        forced = true;
    }
    match state
        .store
        .set_status(&mref, &version, status.as_deref(), &caller.username, forced)
        .await?
    {
        Some(v) => Ok(Json(v.into())),
        None => Err(ApiError::not_found("version")),
    }
}

/// Ask for a status change (any member), with its MODEL_STATUS_CHANGE_REQUESTED event.
#[utoipa::path(post,
    path = "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status-requests",
    tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version number")),
    request_body = StatusRequestIn,
    responses((status = 201, body = StatusRequestOut), ErrorResponses))]
async fn request_status(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, version)): ApiPath<(String, String, String)>,
    ApiJson(input): ApiJson<StatusRequestIn>,
) -> Result<(StatusCode, Json<StatusRequestOut>), ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let mref = model_ref(&state, &ws, &name).await?;
    version_of(&state, &mref, &version).await?;
    let mut errors = FieldErrors::new();
    errors.check(StatusName::parse("status", &input.status));
    if let Some(c) = &input.comment {
        errors.check(check_text("comment", c, 1000));
    }
    errors.finish()?;
    check_status(&state, &ws, &input.status, "status").await?;
    match state
        .store
        .request_status(
            &mref,
            &version,
            &input.status,
            input.comment.as_deref(),
            &caller.username,
        )
        .await?
    {
        Some(r) => Ok((StatusCode::CREATED, Json(r.into()))),
        None => Err(ApiError::not_found("version")),
    }
}

/// The status requests of one version, newest first.
#[utoipa::path(get,
    path = "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status-requests",
    tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version number"), PageQuery),
    responses((status = 200, body = StatusRequestList), ErrorResponses))]
async fn list_version_requests(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, version)): ApiPath<(String, String, String)>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<StatusRequestList>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let mref = model_ref(&state, &ws, &name).await?;
    let v = version_of(&state, &mref, &version).await?;
    let limit = page.limit()?;
    let after: Option<String> = page.cursor()?;
    let rows = state
        .store
        .list_version_requests(v.id, after.as_deref(), limit + 1)
        .await?;
    let (rows, next_cursor) = paginate(rows, limit, |r| r.id.clone());
    Ok(Json(StatusRequestList {
        items: rows.into_iter().map(StatusRequestOut::from).collect(),
        next_cursor,
    }))
}

/// The status requests of a workspace, newest first; `state=pending` for the review queue.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/status-requests", tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"), RequestQuery),
    responses((status = 200, body = StatusRequestList), ErrorResponses))]
async fn list_workspace_requests(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(ws): ApiPath<String>,
    ApiQuery(q): ApiQuery<RequestQuery>,
) -> Result<Json<StatusRequestList>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let limit = parse_limit(q.limit.as_deref())?;
    let after: Option<String> = q
        .cursor
        .as_deref()
        .map(super::extract::decode_cursor)
        .transpose()?;
    if let Some(s) = &q.state
        && !matches!(s.as_str(), "pending" | "approved" | "rejected")
    {
        return Err(ApiError::invalid(
            "state",
            "state must be pending, approved or rejected",
        ));
    }
    let rows = state
        .store
        .list_workspace_requests(ws.id, q.state.as_deref(), after.as_deref(), limit + 1)
        .await?;
    let (rows, next_cursor) = paginate(rows, limit, |r| r.id.clone());
    Ok(Json(StatusRequestList {
        items: rows.into_iter().map(StatusRequestOut::from).collect(),
        next_cursor,
    }))
}

/// One status request.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/status-requests/{id}", tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("id" = String, Path, description = "Status request id")),
    responses((status = 200, body = StatusRequestOut), ErrorResponses))]
async fn get_request(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, id)): ApiPath<(String, String)>,
) -> Result<Json<StatusRequestOut>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    state
        .store
        .get_request(ws.id, &id)
        .await?
        .map(|r| Json(r.into()))
        .ok_or_else(|| ApiError::not_found("status request"))
}

async fn decide(
    state: &AppState,
    caller: &crate::store::Caller,
    ws: &str,
    scope: Option<(&str, &str)>,
    id: &str,
    approve: bool,
) -> Result<Json<StatusRequestOut>, ApiError> {
    let ws = workspace(state, caller, ws).await?;
    if let Some((model_name, version)) = scope {
        let mref = model_ref(state, &ws, model_name).await?;
        version_of(state, &mref, version).await?;
        let found = state.store.get_request(ws.id, id).await?;
        if !found.is_some_and(|r| r.model_name == mref.model_name && r.version == version) {
            return Err(ApiError::not_found("status request"));
        }
    }
    require_ws_admin(
        &ws,
        if approve {
            "approve status requests"
        } else {
            "reject status requests"
        },
    )?;
    if approve
        && let Some(r) = state.store.get_request(ws.id, id).await?
        && r.state == "pending"
        && !state
            .store
            .statuses(ws.id)
            .await?
            .iter()
            .any(|s| s.name == r.status)
    {
        return Err(ApiError::conflict(
            "status",
            format!(
                "status `{}` no longer exists in this workspace; reject the request instead",
                r.status
            ),
        ));
    }
    match state
        .store
        .decide_request((ws.id, &ws.name), id, approve, &caller.username)
        .await?
    {
        Decision::Done(r) => Ok(Json(r.into())),
        Decision::NotFound => Err(ApiError::not_found("status request")),
        Decision::AlreadyDecided(s) => Err(ApiError::conflict(
            "id",
            format!("the request is already {s}"),
        )),
    }
}

/// Approve a pending request (workspace admins): the status is set, with its
/// MODEL_STATUS_CHANGED event.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/status-requests/{id}/approve",
    tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("id" = String, Path, description = "Status request id")),
    responses((status = 200, body = StatusRequestOut), ErrorResponses))]
async fn approve_request(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, id)): ApiPath<(String, String)>,
) -> Result<Json<StatusRequestOut>, ApiError> {
    decide(&state, &caller, &ws, None, &id, true).await
}

/// Reject a pending request (workspace admins).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/status-requests/{id}/reject",
    tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("id" = String, Path, description = "Status request id")),
    responses((status = 200, body = StatusRequestOut), ErrorResponses))]
async fn reject_request(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, id)): ApiPath<(String, String)>,
) -> Result<Json<StatusRequestOut>, ApiError> {
    decide(&state, &caller, &ws, None, &id, false).await
}

/// Approve a pending request of this version (workspace admins).
#[utoipa::path(post,
    path = "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status-requests/{id}/approve",
    tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version number"),
           ("id" = String, Path, description = "Status request id")),
    responses((status = 200, body = StatusRequestOut), ErrorResponses))]
async fn approve_version_request(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, version, id)): ApiPath<(String, String, String, String)>,
) -> Result<Json<StatusRequestOut>, ApiError> {
    decide(&state, &caller, &ws, Some((&name, &version)), &id, true).await
}

/// Reject a pending request of this version (workspace admins).
#[utoipa::path(post,
    path = "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status-requests/{id}/reject",
    tag = "versions",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version number"),
           ("id" = String, Path, description = "Status request id")),
    responses((status = 200, body = StatusRequestOut), ErrorResponses))]
async fn reject_version_request(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, version, id)): ApiPath<(String, String, String, String)>,
) -> Result<Json<StatusRequestOut>, ApiError> {
    decide(&state, &caller, &ws, Some((&name, &version)), &id, false).await
}
