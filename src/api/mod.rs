//! The REST API: one module per resource, each with its own `router()`; this module merges
//! them, serves the OpenAPI document generated from their annotations, and answers unknown
//! paths in the API's error shape.

pub mod audit;
pub mod auth;
pub mod comet;
pub mod events;
pub mod extract;
pub mod health;
pub mod limits;
pub mod models;
pub mod schema;
pub mod users;
pub mod versions;
pub mod webhooks;
pub mod workspaces;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Berth",
        description = "A self-hostable model registry with first-class webhooks. \
            Authenticate with `Authorization: Bearer <token>`. Errors are \
            `{\"error\": {\"code\", \"message\", \"field\"}}`. Lists take `limit` (1-500, \
            default 50) and `cursor`, and answer `{items, nextCursor}`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "users", description = "Users, tokens, and who am I"),
        (name = "workspaces", description = "Workspaces, members and statuses"),
        (name = "models", description = "Registered models"),
        (name = "versions", description = "Model versions, tags, statuses and status requests"),
        (name = "events", description = "The event outbox: every webhook trigger, in commit order"),
        (name = "webhooks", description = "Webhooks, their deliveries, Test Webhook, and Comet-compatible configuration"),
        (name = "audit", description = "The audit log: who changed what in a workspace, and when (workspace admins)"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The error answers an endpoint may give, all in the [`ErrorBody`] shape.
pub struct ErrorResponses;

impl utoipa::IntoResponses for ErrorResponses {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        [
            (
                "400",
                "Malformed or invalid input; `field` names the culprit",
            ),
            ("401", "Missing, invalid or revoked token"),
            ("403", "Authenticated, but not allowed"),
            ("404", "No such resource, or not visible to the caller"),
            ("409", "Conflicts with the current state"),
            ("413", "Request body over 1 MiB"),
            ("415", "Request body is not JSON"),
            ("503", "The database is unavailable; retry later"),
        ]
        .into_iter()
        .map(|(code, description)| (code.to_owned(), RefOr::T(error_response(description))))
        .collect()
    }
}

/// One error answer in the [`ErrorBody`] shape.
fn error_response(description: &str) -> utoipa::openapi::response::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// Adds to every operation the error answers any request may get, whatever its handler lists:
/// 414 and 431 (request too large) everywhere; on authenticated operations also 400, 401,
/// 404, 429 (rate limited, with `Retry-After`) and 503, and 413 and 415 where there is a
/// request body. An endpoint added later is covered without listing them.
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                let public = op.security.as_ref().is_some_and(|reqs| {
                    reqs.iter().all(|r| {
                        serde_json::to_value(r)
                            .is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
                    })
                });
                let mut add = vec![
                    ("414", "The request path and query are over 8 KiB"),
                    ("431", "Too many request headers, or a header too large"),
                ];
                if !public {
                    add.extend([
                        (
                            "400",
                            "Malformed or invalid input; `field` names the culprit",
                        ),
                        ("401", "Missing, invalid or revoked token"),
                        ("404", "No such resource, or not visible to the caller"),
                        ("503", "The database is unavailable; retry later"),
                    ]);
                    if op.request_body.is_some() {
                        add.extend([
                            ("413", "Request body over 1 MiB"),
                            ("415", "Request body is not JSON"),
                        ]);
                    }
                }
                let responses = &mut op.responses.responses;
                for (code, description) in add {
                    responses
                        .entry(code.to_owned())
                        .or_insert_with(|| RefOr::T(error_response(description)));
                }
                if !public {
                    responses.entry("429".to_owned()).or_insert_with(|| {
                        let mut r = error_response(
                            "Too many requests with this token, or too many failed \
                             authentications from this address; retry after `Retry-After`",
                        );
                        r.headers.insert(
                            "Retry-After".to_owned(),
                            RefOr::T(
                                utoipa::openapi::HeaderBuilder::new()
                                    .schema(Some(
                                        utoipa::openapi::ObjectBuilder::new()
                                            .schema_type(utoipa::openapi::schema::Type::Integer),
                                    ))
                                    .description(Some("Whole seconds to wait"))
                                    .build(),
                            ),
                        );
                        RefOr::T(r)
                    });
                }
            }
        }
    }
}

/// The routes with their document, the common responses added.
fn api_parts() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = api_router().split_for_parts();
    utoipa::Modify::modify(&CommonResponses, &mut doc);
    (router, doc)
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(users::router())
        .merge(workspaces::router())
        .merge(models::router())
        .merge(versions::router())
        .merge(events::router())
        .merge(webhooks::router())
        .merge(audit::router())
        .merge(comet::router())
}

/// Only `/healthz`, `/readyz` and `/metrics`: what a worker node serves.
pub fn health_router() -> Router<AppState> {
    let (router, _) = OpenApiRouter::new()
        .merge(health::router())
        .split_for_parts();
    router
}

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_parts().1
}

/// The OpenAPI document as the server serves it and as `openapi.json` commits it.
pub fn openapi_json() -> String {
    openapi().to_pretty_json().unwrap_or_default()
}

/// Every API route (the caller adds the state).
pub fn router() -> Router<AppState> {
    let (router, doc) = api_parts();
    let doc = Arc::new(doc.to_pretty_json().unwrap_or_default());
    router.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    doc.as_ref().clone(),
                )
            }
        }),
    )
}

/// The answer to a method a route does not serve.
pub async fn method_not_allowed() -> axum::response::Response {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(ErrorBody {
            error: crate::error::ErrorDetail {
                code: "method_not_allowed".into(),
                message: "this path does not accept this method".into(),
                field: None,
                errors: Vec::new(),
            },
        }),
    )
        .into_response()
}

/// The answer to a path no route serves.
pub async fn not_found() -> axum::response::Response {
    ApiError::NotFound("no such endpoint".into()).into_response()
}

/// Formats a stored time (microseconds since the epoch) as an RFC 3339 UTC string.
pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
