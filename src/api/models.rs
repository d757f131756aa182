//! Registered models.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, model, model_ref, require_ws_admin, workspace};
use super::extract::{ApiJson, ApiPath, ApiQuery, paginate, parse_limit};
use super::{ErrorResponses, rfc3339};
use crate::app::AppState;
use crate::domain::{ModelName, check_text};
use crate::error::{ApiError, FieldErrors};
use crate::store::{DeleteModel, Model, ModelPatch};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_model, list_models))
        .routes(routes!(get_model, patch_model, delete_model))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelIn {
    /// 1-100 characters: letters, digits, '.', '_' and '-', starting with a letter or digit.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )]
    pub name: String,
    /// At most 5000 characters, no control characters but tab, CR and LF.
    #[schema(
        max_length = 5000,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPatchIn {
    /// A new name, as for creation.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )]
    pub name: Option<String>,
    /// As for creation.
    #[schema(
        max_length = 5000,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )]
    pub description: Option<String>,
}

/// The newest version of a model by semver precedence.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatestVersion {
    pub version: String,
    pub status: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelOut {
    pub name: String,
    pub description: String,
    pub created_at: String,
    pub updated_at: String,
    pub latest_version: Option<LatestVersion>,
}

impl From<Model> for ModelOut {
    fn from(m: Model) -> Self {
        ModelOut {
            name: m.name,
            description: m.description,
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
            latest_version: m.latest.map(|(version, status, tags)| LatestVersion {
                version,
                status,
                tags,
            }),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelList {
    pub items: Vec<ModelOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelQuery {
    /// How many items to return: 1 to 500, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page: base64url, as handed out. One this server did
    /// not hand out answers 404 naming `cursor`.
    #[param(min_length = 1, max_length = 1024, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
    /// Only models whose name contains this text (case-insensitive): at most 100
    /// characters, no control characters but tab, CR and LF.
    #[param(
        max_length = 100,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: Option<String>,
}

fn check_description(text: &str) -> Result<(), ApiError> {
    check_text("description", text, 5000).map_err(ApiError::from)
}

/// Register a model (any member).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/models", tag = "models",
    params(("ws" = String, Path, description = "Workspace name")),
    request_body = ModelIn,
    responses((status = 201, body = ModelOut), ErrorResponses))]
async fn create_model(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(ws): ApiPath<String>,
    ApiJson(input): ApiJson<ModelIn>,
) -> Result<(StatusCode, Json<ModelOut>), ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let mut errors = FieldErrors::new();
    let name = errors.check(ModelName::parse(&input.name));
    let description = input.description.unwrap_or_default();
    errors.check(check_description(&description));
    let name = errors.finish_with(name)?;
    let m = state
        .store
        .create_model(ws.id, name.as_str(), &description, &caller.username)
        .await
        .map_err(|e| {
            ApiError::unique(
                e,
                "name",
                "a model with this name (ignoring case) already exists",
            )
        })?;
    Ok((StatusCode::CREATED, Json(m.into())))
}

/// The workspace's models, by name.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/models", tag = "models",
    params(("ws" = String, Path, description = "Workspace name"), ModelQuery),
    responses((status = 200, body = ModelList), ErrorResponses))]
async fn list_models(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(ws): ApiPath<String>,
    ApiQuery(q): ApiQuery<ModelQuery>,
) -> Result<Json<ModelList>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let limit = parse_limit(q.limit.as_deref())?;
    let after: Option<String> = q
        .cursor
        .as_deref()
        .map(super::extract::decode_cursor)
        .transpose()?;
    if let Some(n) = &q.name {
        check_text("name", n, 100)?;
    }
    let rows = state
        .store
        .list_models(ws.id, after.as_deref(), q.name.as_deref(), limit + 1)
        .await?;
    let (rows, next_cursor) = paginate(rows, limit, |m| m.name.clone());
    Ok(Json(ModelList {
        items: rows.into_iter().map(ModelOut::from).collect(),
        next_cursor,
    }))
}

/// One model.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/models/{model}", tag = "models",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name")),
    responses((status = 200, body = ModelOut), ErrorResponses))]
async fn get_model(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name)): ApiPath<(String, String)>,
) -> Result<Json<ModelOut>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let (_, m) = model(&state, &ws, &name).await?;
    Ok(Json(m.into()))
}

/// Rename a model or change its description (any member).
#[utoipa::path(patch, path = "/api/v1/workspaces/{ws}/models/{model}", tag = "models",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name")),
    request_body = ModelPatchIn,
    responses((status = 200, body = ModelOut), ErrorResponses))]
async fn patch_model(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name)): ApiPath<(String, String)>,
    ApiJson(input): ApiJson<ModelPatchIn>,
) -> Result<Json<ModelOut>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let mref = model_ref(&state, &ws, &name).await?;
    let mut errors = FieldErrors::new();
    let new_name = errors.check(input.name.as_deref().map(ModelName::parse).transpose());
    if let Some(d) = &input.description {
        errors.check(check_description(d));
    }
    let new_name = errors.finish_with(new_name)?.map(|n| n.as_str().to_owned());
    let m = state
        .store
        .update_model(
            &mref,
            &ModelPatch {
                name: new_name,
                description: input.description,
            },
        )
        .await
        .map_err(|e| {
            ApiError::unique(
                e,
                "name",
                "a model with this name (ignoring case) already exists",
            )
        })?;
    Ok(Json(m.into()))
}

/// Delete a model and its webhooks (workspace admins). 409 while it has versions, or while
/// its webhooks still have deliveries to make.
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/models/{model}", tag = "models",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name")),
    responses((status = 204, description = "Deleted"), ErrorResponses))]
async fn delete_model(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let mref = model_ref(&state, &ws, &name).await?;
    require_ws_admin(&ws, "delete models")?;
    match state.store.delete_model(&mref, &caller.username).await? {
        DeleteModel::Deleted => Ok(StatusCode::NO_CONTENT),
        DeleteModel::HasVersions => Err(ApiError::conflict(
            "model",
            "the model still has versions; delete them first",
        )),
        DeleteModel::PendingDeliveries(n) => Err(ApiError::conflict(
            "model",
            format!(
                "the model's webhooks still have {n} pending deliveries; wait for them, or \
                 delete the webhooks first"
            ),
        )),
    }
}
