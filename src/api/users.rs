//! Users, their API tokens, and `GET /api/v1/me`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{self, Auth, require_server_admin};
use super::extract::ApiJson;
use super::extract::ApiPath;
use super::{ErrorResponses, rfc3339};
use crate::app::AppState;
use crate::domain::Username;
use crate::error::ApiError;
use crate::store::{Caller, TokenInfo, User};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(me))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    /// 1-64 characters: letters, digits, '.', '_' and '-', starting with a letter or digit.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )]
    pub username: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserOut {
    pub username: String,
    pub server_admin: bool,
    pub created_at: String,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        UserOut {
            username: u.username,
            server_admin: u.server_admin,
            created_at: rfc3339(u.created_at),
        }
    }
}

/// A new token: the only time its value is shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewTokenOut {
    pub id: String,
    pub token: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenOut {
    pub id: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<TokenInfo> for TokenOut {
    fn from(t: TokenInfo) -> Self {
        TokenOut {
            id: t.id,
            created_at: rfc3339(t.created_at),
            revoked_at: t.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub items: Vec<TokenOut>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeOut {
    pub username: String,
    pub server_admin: bool,
    pub workspaces: Vec<MyWorkspace>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyWorkspace {
    pub name: String,
    /// `admin` or `member`.
    pub role: String,
}

/// Create a user (server admins only).
#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body = UserIn,
    responses((status = 201, body = UserOut), ErrorResponses))]
async fn create_user(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiJson(input): ApiJson<UserIn>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    require_server_admin(&caller)?;
    let name = Username::parse(&input.username)?;
    let user = state.store.create_user(name.as_str()).await.map_err(|e| {
        ApiError::unique(
            e,
            "username",
            "a user with this name (ignoring case) already exists",
        )
    })?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// The user `username` may be managed by a server admin or by themself.
async fn managed_user(state: &AppState, caller: &Caller, username: &str) -> Result<User, ApiError> {
    if !caller.server_admin && caller.username != username {
        return Err(ApiError::Forbidden(
            "only a server admin may manage another user's tokens".into(),
        ));
    }
    state
        .store
        .user_by_name(username)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))
}

/// The most unrevoked tokens one user may hold (the list is answered whole).
pub const MAX_TOKENS_PER_USER: i64 = 100;

/// Create an API token; its value is in this answer only.
#[utoipa::path(post, path = "/api/v1/users/{username}/tokens", tag = "users",
    params(("username" = String, Path, description = "The user")),
    responses((status = 201, body = NewTokenOut), ErrorResponses))]
async fn create_token(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(username): ApiPath<String>,
) -> Result<(StatusCode, Json<NewTokenOut>), ApiError> {
    let user = managed_user(&state, &caller, &username).await?;
    if state.store.count_active_tokens(user.id).await? >= MAX_TOKENS_PER_USER {
        return Err(ApiError::Conflict {
            message: format!(
                "a user has at most {MAX_TOKENS_PER_USER} unrevoked tokens; revoke one first"
            ),
            field: None,
        });
    }
    let token = auth::new_token();
    let info = state
        .store
        .create_token(user.id, &auth::new_token_id(), &auth::hash_token(&token))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewTokenOut {
            id: info.id,
            token,
            created_at: rfc3339(info.created_at),
        }),
    ))
}

/// List a user's tokens (never their values).
#[utoipa::path(get, path = "/api/v1/users/{username}/tokens", tag = "users",
    params(("username" = String, Path, description = "The user")),
    responses((status = 200, body = TokenList), ErrorResponses))]
async fn list_tokens(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<TokenList>, ApiError> {
    let user = managed_user(&state, &caller, &username).await?;
    let items = state.store.list_tokens(user.id).await?;
    Ok(Json(TokenList {
        items: items.into_iter().map(TokenOut::from).collect(),
    }))
}

/// Revoke a token. It stops working at once.
#[utoipa::path(delete, path = "/api/v1/users/{username}/tokens/{id}", tag = "users",
    params(("username" = String, Path, description = "The user"),
           ("id" = String, Path, description = "The token's id")),
    responses((status = 204, description = "Revoked"), ErrorResponses))]
async fn revoke_token(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((username, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user = managed_user(&state, &caller, &username).await?;
    if state.store.revoke_token(user.id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("token"))
    }
}

/// Who am I: the caller, and their workspaces with their role in each.
#[utoipa::path(get, path = "/api/v1/me", tag = "users",
    responses((status = 200, body = MeOut), ErrorResponses))]
async fn me(State(state): State<AppState>, Auth(caller): Auth) -> Result<Json<MeOut>, ApiError> {
    let workspaces = state.store.workspaces_of(caller.user_id).await?;
    Ok(Json(MeOut {
        username: caller.username,
        server_admin: caller.server_admin,
        workspaces: workspaces
            .into_iter()
            .map(|w| MyWorkspace {
                name: w.name,
                role: w.role.as_str().into(),
            })
            .collect(),
    }))
}
