//! The event outbox, read back: every webhook trigger of a workspace, in an order no later
//! commit can break (see `Store::list_events`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, workspace};
use super::extract::{ApiPath, ApiQuery, decode_cursor_as, encode_cursor, parse_limit};
use super::{ErrorResponses, rfc3339};
use crate::app::AppState;
use crate::domain::{EventPayload, EventTrigger};
use crate::error::ApiError;
use crate::store::EventCursor;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventOut {
    pub id: String,
    pub event_trigger: EventTrigger,
    pub occurred_at: String,
    /// Exactly the body a webhook receives.
    pub payload: EventPayload,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    pub items: Vec<EventOut>,
    /// Pass as `after` to read on. Present even on the last page, so a reader can poll.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// The `nextCursor` of the previous page (base64url, as handed out); absent to start from
    /// the first event. One this server did not hand out answers 404 naming `after`.
    #[param(min_length = 1, max_length = 1024, pattern = "^[A-Za-z0-9_-]+$")]
    pub after: Option<String>,
    /// How many events to return: 1 to 500, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

/// `s`: the last event's `seq`; `x` (PostgreSQL only): its transaction id, the first half of
/// the feed's order there (see `Store::list_events`). A PostgreSQL cursor without `x`, handed
/// out before migration 0010, still reads on.
#[derive(Debug, Serialize, Deserialize)]
struct CursorJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<i64>,
    s: i64,
}

/// The workspace's events after a cursor, oldest first, in commit order.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/events", tag = "events",
    params(("ws" = String, Path, description = "Workspace name"), EventQuery),
    responses((status = 200, body = EventList), ErrorResponses))]
async fn list_events(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(ws): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> Result<Json<EventList>, ApiError> {
    let ws = workspace(&state, &caller, &ws).await?;
    let limit = parse_limit(q.limit.as_deref())?;
    let after = match q.after.as_deref() {
        None => None,
        Some(text) => {
            let c: CursorJson = decode_cursor_as("after", text)?;
            if c.x.is_some_and(|x| x < 0) {
                // Transaction ids are never negative: not a cursor this server handed out.
                return Err(ApiError::NotFoundIn {
                    message: "after is not a cursor this server handed out".to_owned(),
                    field: "after".to_owned(),
                });
            }
            Some(EventCursor { tx: c.x, seq: c.s })
        }
    };
    let rows = state.store.list_events(ws.id, after, limit).await?;
    let next_cursor = match rows.last() {
        Some(last) => Some(encode_cursor(&CursorJson {
            x: last.tx,
            s: last.seq,
        })),
        None => q.after.clone(),
    };
    Ok(Json(EventList {
        items: rows
            .into_iter()
            .map(|e| EventOut {
                id: e.id,
                event_trigger: e.payload.event_trigger,
                occurred_at: rfc3339(e.occurred_at),
                payload: e.payload,
            })
            .collect(),
        next_cursor,
    }))
}
