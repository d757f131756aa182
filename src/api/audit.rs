//! The audit log of a workspace, for its admins: who created, changed, tested, rotated,
//! disabled or deleted a webhook, who changed a status or decided a request, and when.
//!
//! The rows are written by the store in the transaction of each change (see
//! `store/audit.rs`); this module only reads them. No secret is ever in them.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, require_ws_admin, workspace};
use super::extract::{ApiPath, ApiQuery, decode_cursor, paginate, parse_limit};
use super::{ErrorResponses, rfc3339};
use crate::app::AppState;
use crate::domain::ModelName;
use crate::error::ApiError;
use crate::store::{AuditAction, AuditFilter, AuditRecord, WorkspaceAccess};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

/// What an entry is about. Names are kept as they were, so an entry outlives what it names.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditTargetOut {
    pub model: Option<String>,
    pub version: Option<String>,
    pub webhook_id: Option<String>,
    pub webhook_name: Option<String>,
}

/// One entry of the audit log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryOut {
    pub id: i64,
    /// When it happened (RFC 3339, UTC).
    pub at: String,
    /// The username, or `system` for what Berth did on its own (a webhook disabled after a
    /// 410 Gone).
    pub actor: String,
    /// A stable dotted name: `webhook.created`, `webhook.updated`, `webhook.deleted`,
    /// `webhook.tested`, `webhook.secret_rotated`, `webhook.disabled`, `webhook.enabled`,
    /// `webhook.redelivered`, `webhook.replayed`, `version.deleted`,
    /// `version.tags_changed`, `version.status_changed`, `version.status_forced`,
    /// `status_request.created`, `status_request.approved`, `status_request.rejected`,
    /// `model.created`, `model.deleted`, `member.added`, `member.role_changed`,
    /// `member.removed`.
    pub action: String,
    pub target: AuditTargetOut,
    /// What changed, as a JSON object. Never a secret, a signing key, a header value or a
    /// token: a webhook update names the fields and headers that changed, and a URL is shown
    /// by its host only.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<AuditRecord> for AuditEntryOut {
    fn from(r: AuditRecord) -> Self {
        AuditEntryOut {
            id: r.id,
            at: rfc3339(r.at),
            actor: r.actor,
            action: r.action,
            target: AuditTargetOut {
                model: r.target.model,
                version: r.target.version,
                webhook_id: r.target.webhook_id,
                webhook_name: r.target.webhook_name,
            },
            details: r.details,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditList {
    pub items: Vec<AuditEntryOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many entries to return: 1 to 500, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page: base64url, as handed out. One this server did
    /// not hand out answers 404 naming `cursor`.
    #[param(min_length = 1, max_length = 1024, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
    /// Only entries with this action, e.g. `webhook.updated`; empty: every action.
    #[param(inline, value_type = Option<super::schema::AuditActionName>)]
    pub action: Option<String>,
    /// Only entries about this model (by name; deleted models included); empty: every model.
    #[param(max_length = 100, pattern = "^(?:[A-Za-z0-9][A-Za-z0-9._-]*)?$")]
    pub model: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorJson {
    i: i64,
}

/// One page of `ws`'s audit log, newest first. The caller must be a workspace admin (or a
/// server admin); the web UI's page uses this too.
pub async fn audit_page(
    state: &AppState,
    ws: &WorkspaceAccess,
    q: &AuditQuery,
) -> Result<AuditList, ApiError> {
    require_ws_admin(ws, "read the audit log")?;
    let limit = parse_limit(q.limit.as_deref())?;
    let before = q
        .cursor
        .as_deref()
        .map(decode_cursor::<CursorJson>)
        .transpose()?
        .map(|c| c.i);
    let action = match q.action.as_deref() {
        None | Some("") => None,
        Some(name) => Some(AuditAction::parse(name).ok_or_else(|| {
            ApiError::invalid(
                "action",
                format!(
                    "unknown action `{name}`; the actions are: {}",
                    AuditAction::ALL.map(AuditAction::as_str).join(", ")
                ),
            )
        })?),
    };
    let model = match q.model.as_deref() {
        None | Some("") => None,
        Some(m) => Some(ModelName::parse_as("model", m)?),
    };
    let filter = AuditFilter {
        action,
        model: model.as_ref().map(ModelName::as_str),
    };
    let rows = state
        .store
        .list_audit(ws.id, filter, before, limit + 1)
        .await?;
    let (rows, next_cursor) = paginate(rows, limit, |r| CursorJson { i: r.id });
    Ok(AuditList {
        items: rows.into_iter().map(AuditEntryOut::from).collect(),
        next_cursor,
    })
}

/// The workspace's audit log, newest first (workspace admins and server admins; a member who
/// is not an admin gets 403). Filter with `action` and `model`; page with `limit` and
/// `cursor`.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/audit", tag = "audit",
    params(("ws" = String, Path, description = "Workspace name"), AuditQuery),
    responses((status = 200, body = AuditList), ErrorResponses))]
async fn list_audit(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(ws): ApiPath<String>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    Ok(Json(audit_page(&state, &ws, &q).await?))
}
