//! Workspaces, their members, and their statuses.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, require_server_admin, require_ws_admin, workspace};
use super::extract::{ApiJson, ApiPath, ApiQuery, PageQuery, paginate};
use super::{ErrorResponses, rfc3339};
use crate::app::AppState;
use crate::domain::{Role, StatusName, Username, WorkspaceName};
use crate::error::{ApiError, FieldErrors};
use crate::store::{Member, StatusDef};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_workspace, list_workspaces))
        .routes(routes!(get_workspace))
        .routes(routes!(list_members))
        .routes(routes!(set_member, remove_member))
        .routes(routes!(get_statuses, put_statuses))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceIn {
    /// 1-64 characters: letters, digits, '.', '_' and '-', starting with a letter or digit.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceOut {
    pub name: String,
    /// The caller's role: `admin` or `member`.
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceList {
    pub items: Vec<WorkspaceOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberIn {
    /// `admin` or `member`.
    #[schema(value_type = RoleName)]
    pub role: String,
}

/// A member's role in a workspace.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum RoleName {
    Admin,
    Member,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberOut {
    pub username: String,
    pub role: String,
    pub created_at: String,
}

impl From<Member> for MemberOut {
    fn from(m: Member) -> Self {
        MemberOut {
            username: m.username,
            role: m.role.as_str().into(),
            created_at: rfc3339(m.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub items: Vec<MemberOut>,
}

/// One status and whether setting it needs a workspace admin's approval.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusOut {
    #[schema(value_type = super::schema::StatusNameText)]
    pub name: String,
    pub review_required: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Statuses {
    /// At most 50, no two with the same name or names that look alike.
    #[schema(max_items = 50)]
    pub statuses: Vec<StatusOut>,
}

impl From<Vec<StatusDef>> for Statuses {
    fn from(list: Vec<StatusDef>) -> Self {
        Statuses {
            statuses: list
                .into_iter()
                .map(|s| StatusOut {
                    name: s.name,
                    review_required: s.review_required,
                })
                .collect(),
        }
    }
}

/// Create a workspace (server admins only); the caller becomes its admin.
#[utoipa::path(post, path = "/api/v1/workspaces", tag = "workspaces",
    request_body = WorkspaceIn,
    responses((status = 201, body = WorkspaceOut), ErrorResponses))]
async fn create_workspace(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<WorkspaceIn>,
) -> Result<(StatusCode, Json<WorkspaceOut>), ApiError> {
    require_server_admin(&caller)?;
    let name = WorkspaceName::parse(&input.name)?;
    let ws = state
        .store
        .create_workspace(name.as_str(), caller.user_id)
        .await
        .map_err(|e| {
            ApiError::unique(
                e,
                "name",
                "a workspace with this name (ignoring case) already exists",
            )
        })?;
    Ok((
        StatusCode::CREATED,
        Json(WorkspaceOut {
            name: ws.name,
            role: Role::Admin.as_str().into(),
        }),
    ))
}

/// The workspaces the caller belongs to, by name.
#[utoipa::path(get, path = "/api/v1/workspaces", tag = "workspaces",
    params(PageQuery),
    responses((status = 200, body = WorkspaceList), ErrorResponses))]
async fn list_workspaces(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<WorkspaceList>, ApiError> {
    let limit = page.limit()?;
    let after: Option<String> = page.cursor()?;
    let all = state.store.workspaces_of(caller.user_id).await?;
    let rows: Vec<_> = all
        .into_iter()
        .filter(|w| after.as_deref().is_none_or(|a| w.name.as_str() > a))
        .take(usize::try_from(limit + 1).unwrap_or(usize::MAX))
        .collect();
    let (rows, next_cursor) = paginate(rows, limit, |w| w.name.clone());
    Ok(Json(WorkspaceList {
        items: rows
            .into_iter()
            .map(|w| WorkspaceOut {
                name: w.name,
                role: w.role.as_str().into(),
            })
            .collect(),
        next_cursor,
    }))
}

/// One workspace, with the caller's role in it.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}", tag = "workspaces",
    params(("ws" = String, Path, description = "Workspace name")),
    responses((status = 200, body = WorkspaceOut), ErrorResponses))]
async fn get_workspace(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(ws): ApiPath<String>,
) -> Result<Json<WorkspaceOut>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    Ok(Json(WorkspaceOut {
        name: ws.name,
        role: ws.role.as_str().into(),
    }))
}

/// The members of a workspace.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/members", tag = "workspaces",
    params(("ws" = String, Path, description = "Workspace name")),
    responses((status = 200, body = MemberList), ErrorResponses))]
async fn list_members(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(ws): ApiPath<String>,
) -> Result<Json<MemberList>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let members = state.store.list_members(ws.id).await?;
    Ok(Json(MemberList {
        items: members.into_iter().map(MemberOut::from).collect(),
    }))
}

/// Add a member or change their role (workspace admins).
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/members/{username}", tag = "workspaces",
    params(("ws" = String, Path, description = "Workspace name"),
           ("username" = String, Path, description = "The user")),
    request_body = MemberIn,
    responses((status = 200, body = MemberOut), ErrorResponses))]
async fn set_member(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, username)): ApiPath<(String, String)>,
    ApiJson(input): ApiJson<MemberIn>,
) -> Result<Json<MemberOut>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    require_ws_admin(&ws, "manage members")?;
    let mut errors = FieldErrors::new();
    let role = errors.check(Role::parse("role", &input.role));
    let username = errors.check(Username::parse_as("username", &username));
    let (role, username) = errors.finish_with(role.zip(username))?;
    let user = state
        .store
        .user_by_name(username.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    match state
        .store
        .set_member(ws.id, user.id, role, &caller.username)
        .await?
    {
        Ok(member) => Ok(Json(member.into())),
        Err(_) => Err(ApiError::conflict(
            "role",
            "a workspace must keep at least one admin",
        )),
    }
}

/// Remove a member (workspace admins). The last admin cannot be removed.
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/members/{username}", tag = "workspaces",
    params(("ws" = String, Path, description = "Workspace name"),
           ("username" = String, Path, description = "The user")),
    responses((status = 204, description = "Removed"), ErrorResponses))]
async fn remove_member(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, username)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    require_ws_admin(&ws, "manage members")?;
    let user = state
        .store
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    match state
        .store
        .remove_member(ws.id, user.id, &caller.username)
        .await?
    {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found("member")),
        Err(_) => Err(ApiError::conflict(
            "username",
            "a workspace must keep at least one admin",
        )),
    }
}

/// The statuses a version may take in this workspace.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/statuses", tag = "workspaces",
    params(("ws" = String, Path, description = "Workspace name")),
    responses((status = 200, body = Statuses), ErrorResponses))]
async fn get_statuses(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(ws): ApiPath<String>,
) -> Result<Json<Statuses>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    Ok(Json(state.store.statuses(ws.id).await?.into()))
}

/// Replace the statuses (workspace admins). A status still held by a version cannot be
/// dropped (409).
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/statuses", tag = "workspaces",
    params(("ws" = String, Path, description = "Workspace name")),
    request_body = Statuses,
    responses((status = 200, body = Statuses), ErrorResponses))]
async fn put_statuses(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(ws): ApiPath<String>,
    ApiJson(input): ApiJson<Statuses>,
) -> Result<Json<Statuses>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    require_ws_admin(&ws, "change statuses")?;
    if input.statuses.len() > 50 {
        return Err(ApiError::invalid("statuses", "at most 50 statuses"));
    }
    let mut errors = FieldErrors::new();
    let mut clash = None;
    let mut defs: Vec<StatusDef> = Vec::with_capacity(input.statuses.len());
    for (i, s) in input.statuses.iter().enumerate() {
        let field = format!("statuses[{i}].name");
        let Some(name) = errors.check(StatusName::parse(&field, &s.name)) else {
            continue;
        };
        if let Some(d) = defs
            .iter()
            .find(|d| StatusName::looks_like(&d.name, name.as_str()))
        {
            let message = if d.name == name.as_str() {
                "status names must be unique".to_owned()
            } else {
                format!(
                    "status `{}` looks like `{}`: status names must not look alike (compared \
                     ignoring case, Unicode normal form and confusable characters)",
                    name.as_str(),
                    d.name
                )
            };
            // Two names of one list clash, as a name clashes with an existing one elsewhere
            // (models, users, webhooks): 409, after every format problem (400) is reported.
            clash.get_or_insert(ApiError::conflict(field, message));
            continue;
        }
        defs.push(StatusDef {
            name: name.as_str().to_owned(),
            review_required: s.review_required,
        });
    }
    errors.finish()?;
    if let Some(clash) = clash {
        return Err(clash);
    }
    match state.store.set_statuses(ws.id, &defs).await? {
        Ok(()) => Ok(Json(defs.into())),
        Err(in_use) => Err(ApiError::conflict(
            "statuses",
            format!("status `{in_use}` is still held by a version; change those versions first"),
        )),
    }
}
