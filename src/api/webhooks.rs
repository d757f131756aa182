//! Webhooks of a model: configuration, signing keys, Test Webhook, and the delivery log with
//! redelivery and replay.
//!
//! Members may read webhooks and their deliveries; workspace admins configure, test, rotate,
//! redeliver and replay. Secrets are sealed before they are stored and never returned.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, model_ref, require_ws_admin, workspace};
use super::extract::{
    ApiJson, ApiPath, ApiQuery, decode_cursor, double_option, paginate, parse_limit,
};
use super::schema::{DeliveryStateName, TriggerName, WebhookHeaders, WebhookNameText};
use super::{ErrorResponses, rfc3339};
use crate::app::AppState;
use crate::delivery::http::{self, Outcome};
use crate::delivery::signing::new_signing_secret;
use crate::delivery::worker::{secret_context, signing_context, target_of};
use crate::domain::{
    DeliveryState, EventPayload, EventTrigger, WebhookUrl, parse_headers, parse_secret,
    parse_triggers, parse_webhook_name,
};
use crate::error::{ApiError, FieldErrors};
use crate::store::{
    AuditAction, AuditEntry, AuditTarget, ModelRef, SaveWebhooks, WebhookRecord, WebhookWrite,
    WorkspaceAccess, now_micros, url_host,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, put_webhook, delete_webhook))
        .routes(routes!(test_unsaved))
        .routes(routes!(test_saved))
        .routes(routes!(get_signing_secret))
        .routes(routes!(rotate_signing_secret))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(redeliver))
        .routes(routes!(replay))
        .routes(routes!(enable))
}

/// A webhook's configuration, as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookIn {
    /// 1-100 characters, unique among the model's webhooks.
    #[schema(value_type = WebhookNameText)]
    pub name: String,
    /// Absolute http(s) URL, at most 2048 characters, without user info. With
    /// `githubActions` true, its path must be `/repos/OWNER/REPO/dispatches` (or
    /// `/api/v3/repos/OWNER/REPO/dispatches` on GitHub Enterprise).
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    /// Sent verbatim as the `Authorization` header (as `Bearer <secret>` in GitHub Actions
    /// mode): 1-4096 bytes, no control characters. On PUT: absent keeps the stored secret,
    /// null removes it.
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(
        value_type = Option<String>,
        min_length = 1,
        max_length = 4096,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub secret: Option<Option<String>>,
    /// At least one of MODEL_VERSION_CREATED, MODEL_VERSION_DELETED, MODEL_TAG_CHANGED,
    /// MODEL_STATUS_CHANGED, MODEL_STATUS_CHANGE_REQUESTED.
    #[schema(value_type = Vec<TriggerName>, min_items = 1)]
    pub triggers: Vec<String>,
    /// Extra headers, name → value (at most 20; not the ones Berth sets itself).
    #[schema(value_type = Option<WebhookHeaders>)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Send in GitHub `repository_dispatch` form (the `url` must then be a dispatch URL).
    pub github_actions: Option<bool>,
    /// Default true (on PUT: absent keeps the current value).
    pub enabled: Option<bool>,
}

/// An unsaved configuration to test, optionally of an existing webhook whose stored secret
/// and signing key to use when `secret` is absent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookTestIn {
    #[schema(value_type = Option<WebhookNameText>)]
    pub name: Option<String>,
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    #[serde(default, deserialize_with = "double_option::deserialize")]
    #[schema(
        value_type = Option<String>,
        min_length = 1,
        max_length = 4096,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub secret: Option<Option<String>>,
    /// Absent or empty: MODEL_VERSION_CREATED.
    #[schema(value_type = Option<Vec<TriggerName>>)]
    pub triggers: Option<Vec<String>>,
    #[schema(value_type = Option<WebhookHeaders>)]
    pub headers: Option<BTreeMap<String, String>>,
    pub github_actions: Option<bool>,
    pub enabled: Option<bool>,
    /// The webhook being edited, if any.
    pub webhook_id: Option<String>,
}

/// The outcome of the newest delivery.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastDelivery {
    /// `pending`, `succeeded` or `failed`.
    pub state: String,
    pub status_code: Option<i64>,
}

/// A webhook as shown: never its secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookOut {
    pub id: String,
    pub name: String,
    pub url: String,
    pub has_secret: bool,
    pub triggers: Vec<String>,
    pub headers: BTreeMap<String, String>,
    pub github_actions: bool,
    pub enabled: bool,
    /// Why Berth disabled it (e.g. the receiver answered 410 Gone).
    pub disabled_reason: Option<String>,
    pub last_delivery: Option<LastDelivery>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<WebhookRecord> for WebhookOut {
    fn from(w: WebhookRecord) -> Self {
        WebhookOut {
            id: w.id,
            name: w.name,
            url: w.url.as_str().to_owned(),
            has_secret: w.secret_enc.is_some(),
            triggers: w.triggers.iter().map(|t| t.as_str().to_owned()).collect(),
            headers: w.headers.into_iter().collect(),
            github_actions: w.github_actions,
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            last_delivery: w.last_delivery.map(|(state, status_code)| LastDelivery {
                state: state.as_str().to_owned(),
                status_code,
            }),
            created_at: rfc3339(w.created_at),
            updated_at: rfc3339(w.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookOut>,
}

/// The key that signs deliveries (Standard Webhooks `webhook-signature`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningSecretOut {
    /// `whsec_…`: verify `webhook-signature` with it.
    pub key: String,
    /// After a rotation, the previous key, which keeps signing beside the new one until
    /// `previousKeyExpiresAt`.
    pub previous_key: Option<String>,
    pub previous_key_expires_at: Option<String>,
}

/// A request as sent (the `Authorization` header masked).
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestOut {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// The JSON body, exactly as sent.
    pub body: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseOut {
    pub status_code: u16,
    /// The first headers of the answer: at most 64, and 16 KiB in all.
    pub headers: BTreeMap<String, String>,
    /// How many headers of the answer were not kept, past those caps (0: all were).
    pub headers_omitted: u64,
    /// The first 64 KiB of the body.
    pub body: String,
}

/// What Test Webhook did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub success: bool,
    pub status_code: Option<u16>,
    pub duration_ms: i64,
    /// Why it failed, for a person.
    pub error: Option<String>,
    /// `timeout`, `connect`, `dns`, `tls`, `blocked`, `redirect` or `http_status`.
    pub error_class: Option<String>,
    pub request: RequestOut,
    pub response: Option<ResponseOut>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOut {
    /// Also the `webhook-id` header of every attempt.
    pub id: String,
    pub event_id: String,
    pub event_trigger: String,
    /// `pending`, `succeeded` or `failed`.
    pub state: String,
    pub attempt_count: i64,
    pub last_status_code: Option<i64>,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    pub items: Vec<DeliveryOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptOut {
    pub attempt: i64,
    pub started_at: String,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    /// `timeout`, `connect`, `dns`, `tls`, `blocked`, `redirect` or `http_status`; null on
    /// success.
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub request_headers: BTreeMap<String, String>,
    /// The first headers of the answer: at most 64, and 16 KiB in all.
    pub response_headers: BTreeMap<String, String>,
    /// How many headers of the answer were not kept, past those caps (0: all were).
    pub response_headers_omitted: i64,
    /// The first 64 KiB.
    pub response_body: Option<String>,
    /// The Berth node that made the attempt.
    pub node: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: DeliveryOut,
    pub request: RequestOut,
    pub attempts: Vec<AttemptOut>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// How many items to return: 1 to 500, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page: base64url, as handed out. One this server did
    /// not hand out answers 404 naming `cursor`.
    #[param(min_length = 1, max_length = 1024, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
    /// Only deliveries in this state: `pending`, `succeeded` or `failed`.
    #[param(inline, value_type = Option<DeliveryStateName>)]
    pub state: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// RFC 3339 time: every failed delivery created since then is queued again.
    #[schema(format = DateTime)]
    pub since: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayOut {
    /// How many deliveries were queued again.
    pub requeued: u64,
}

/// A re-enabled webhook and what it was queued.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnableOut {
    pub webhook: WebhookOut,
    /// Deliveries that had failed since the webhook's failures began, queued again.
    pub replayed_failed: u64,
    /// Events of the model that happened while it was disabled, now queued for it.
    pub missed_events: u64,
    /// Deliveries that were still waiting, now due.
    pub pending: u64,
}

/// A validated configuration, secrets still in clear.
pub(crate) struct Parsed {
    pub name: String,
    pub url: WebhookUrl,
    /// None: not given (keep); Some(None): remove; Some(Some): set.
    pub secret: Option<Option<String>>,
    pub triggers: Vec<EventTrigger>,
    pub headers: Vec<(String, String)>,
    pub github_actions: bool,
    pub enabled: Option<bool>,
}

/// A configuration as received, before checks.
pub(crate) struct RawConfig<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub secret: &'a Option<Option<String>>,
    pub triggers: &'a [String],
    pub headers: Option<&'a BTreeMap<String, String>>,
    pub github_actions: bool,
    pub enabled: Option<bool>,
}

impl<'a> RawConfig<'a> {
    fn of(input: &'a WebhookIn) -> Self {
        RawConfig {
            name: &input.name,
            url: &input.url,
            secret: &input.secret,
            triggers: &input.triggers,
            headers: input.headers.as_ref(),
            github_actions: input.github_actions.unwrap_or(false),
            enabled: input.enabled,
        }
    }
}

/// Checks a configuration field by field, reporting every bad field at once; a literal
/// blocked address is refused here.
fn parse_config(state: &AppState, raw: RawConfig<'_>) -> Result<Parsed, ApiError> {
    let mut errors = FieldErrors::new();
    let parsed = check_config(state, raw, &|f: &str| f.to_owned(), &mut errors);
    errors.finish_with(parsed)
}

/// The checks of [`parse_config`], adding each bad field to `errors` under the name
/// `field` gives it (`name`, `url`, `secret`, `triggers`, `headers`: the Comet routes name
/// them after their own request's shape). `None` when a field was bad.
pub(crate) fn check_config(
    state: &AppState,
    raw: RawConfig<'_>,
    field: &dyn Fn(&str) -> String,
    errors: &mut FieldErrors,
) -> Option<Parsed> {
    let RawConfig {
        name,
        url,
        secret,
        triggers,
        headers,
        github_actions,
        enabled,
    } = raw;
    let name = errors.check(parse_webhook_name(&field("name"), name));
    let url = errors
        .check(WebhookUrl::parse(&field("url"), url))
        .and_then(|url| {
            let checked = match state.sender.policy().check_url(url.url()) {
                Err(b) => Err(ApiError::invalid(field("url"), b.to_string())),
                Ok(()) if github_actions => url
                    .check_github_dispatch(&field("url"))
                    .map_err(ApiError::from),
                Ok(()) => Ok(()),
            };
            errors.check(checked).map(|()| url)
        });
    let secret = match secret {
        None => Some(None),
        Some(None) => Some(Some(None)),
        Some(Some(s)) => errors
            .check(parse_secret(&field("secret"), s))
            .map(|s| Some(Some(s))),
    };
    let triggers = errors.check(parse_triggers(&field("triggers"), triggers));
    let headers = match headers {
        Some(h) => errors.check(parse_headers(&field("headers"), h)),
        None => Some(Vec::new()),
    };
    match (name, url, secret, triggers, headers) {
        (Some(name), Some(url), Some(secret), Some(triggers), Some(headers)) => Some(Parsed {
            name,
            url,
            secret,
            triggers,
            headers,
            github_actions,
            enabled,
        }),
        _ => None,
    }
}

async fn webhook_of(
    state: &AppState,
    mref: &ModelRef,
    id: &str,
) -> Result<WebhookRecord, ApiError> {
    state
        .store
        .get_webhook(mref.model_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

async fn scope(
    state: &AppState,
    caller: &crate::store::Caller,
    ws: &str,
    model_name: &str,
) -> Result<(WorkspaceAccess, ModelRef), ApiError> {
    let ws = workspace(state, caller, ws).await?;
    let mref = model_ref(state, &ws, model_name).await?;
    Ok((ws, mref))
}

/// The most webhooks one model may have: every event writes one delivery per webhook, and
/// the model's list is answered whole.
pub const MAX_WEBHOOKS_PER_MODEL: i64 = 100;

/// A new webhook from a parsed configuration, its secret sealed and a signing key made.
pub(crate) fn new_record(state: &AppState, mref: &ModelRef, p: Parsed) -> WebhookRecord {
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_micros();
    WebhookRecord {
        secret_enc: p
            .secret
            .flatten()
            .map(|s| state.secrets.seal(&secret_context(&id), &s)),
        signing_key_enc: state
            .secrets
            .seal(&signing_context(&id), &new_signing_secret()),
        id,
        workspace_id: mref.workspace_id,
        model_id: mref.model_id,
        name: p.name,
        url: p.url,
        triggers: p.triggers,
        headers: p.headers,
        github_actions: p.github_actions,
        enabled: p.enabled.unwrap_or(true),
        disabled_reason: None,
        old_signing_key_enc: None,
        old_signing_expires_at: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
        last_delivery: None,
    }
}

/// A stored webhook with a parsed configuration applied (not yet saved).
pub(crate) fn updated_record(
    state: &AppState,
    mut record: WebhookRecord,
    p: Parsed,
) -> WebhookRecord {
    record.name = p.name;
    record.url = p.url;
    match p.secret {
        None => {}
        Some(None) => record.secret_enc = None,
        Some(Some(s)) => {
            record.secret_enc = Some(state.secrets.seal(&secret_context(&record.id), &s));
        }
    }
    record.triggers = p.triggers;
    record.headers = p.headers;
    record.github_actions = p.github_actions;
    if let Some(enabled) = p.enabled {
        if enabled && !record.enabled {
            record.disabled_reason = None;
        }
        if !enabled && record.enabled {
            record.disabled_reason = Some("disabled by a user".into());
        }
        record.enabled = enabled;
    }
    record.updated_at = now_micros();
    record
}

/// Saves webhook changes in one transaction, as `actor`: all or none. `too_many` words the
/// refusal when a model would pass [`MAX_WEBHOOKS_PER_MODEL`].
pub(crate) async fn save(
    state: &AppState,
    writes: &[WebhookWrite],
    actor: &str,
    too_many: impl FnOnce(i64, i64) -> ApiError,
) -> Result<(), ApiError> {
    let outcome = state
        .store
        .save_webhooks(writes, MAX_WEBHOOKS_PER_MODEL, actor)
        .await
        .map_err(|e| {
            ApiError::unique(e, "name", "this model already has a webhook with this name")
        })?;
    match outcome {
        SaveWebhooks::Saved => Ok(()),
        SaveWebhooks::TooMany { model_id, total } => Err(too_many(model_id, total)),
        SaveWebhooks::Missing { .. } => Err(ApiError::not_found("webhook")),
    }
}

fn too_many_webhooks(_model_id: i64, _total: i64) -> ApiError {
    ApiError::conflict(
        "name",
        format!("a model has at most {MAX_WEBHOOKS_PER_MODEL} webhooks; delete one first"),
    )
}

/// Refuses to keep a stored secret for a URL of another origin (scheme, host, port): it
/// would travel to a host it was never given for. The caller must give the secret again,
/// or remove it, in the same request. (The signing key may stay: it never travels, only
/// signatures made with it, and workspace admins can read it anyway.)
pub(crate) fn check_secret_follows(
    stored: &WebhookRecord,
    url: &WebhookUrl,
    secret_given: bool,
    field: &str,
    how: &str,
) -> Result<(), ApiError> {
    if secret_given || stored.secret_enc.is_none() || url.same_origin(&stored.url) {
        return Ok(());
    }
    Err(ApiError::invalid(
        field,
        format!(
            "the URL moves this webhook from {} to {}: a stored secret is never sent to \
             another origin, so {how}",
            stored.url.origin(),
            url.origin()
        ),
    ))
}

/// Removing or replacing the secret, in the native API's words.
const GIVE_SECRET: &str = "give the secret again (or null to remove it) in the same request";

/// Attach a webhook to a model (workspace admins).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/models/{model}/webhooks", tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name")),
    request_body = WebhookIn,
    responses((status = 201, body = WebhookOut), ErrorResponses))]
async fn create_webhook(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name)): ApiPath<(String, String)>,
    ApiJson(input): ApiJson<WebhookIn>,
) -> Result<(StatusCode, Json<WebhookOut>), ApiError> {
    let (ws, mref) = scope(&state, &caller, &ws, &name).await?;
    require_ws_admin(&ws, "configure webhooks")?;
    let p = parse_config(&state, RawConfig::of(&input))?;
    let record = new_record(&state, &mref, p);
    save(
        &state,
        &[WebhookWrite::Create(record.clone())],
        &caller.username,
        too_many_webhooks,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// The model's webhooks, by name, each with its newest delivery's outcome.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/models/{model}/webhooks", tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name")),
    responses((status = 200, body = WebhookList), ErrorResponses))]
async fn list_webhooks(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name)): ApiPath<(String, String)>,
) -> Result<Json<WebhookList>, ApiError> {
    let (_, mref) = scope(&state, &caller, &ws, &name).await?;
    let items = state.store.list_webhooks(mref.model_id).await?;
    Ok(Json(WebhookList {
        items: items.into_iter().map(WebhookOut::from).collect(),
    }))
}

/// One webhook.
#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = WebhookOut), ErrorResponses))]
async fn get_webhook(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, id)): ApiPath<(String, String, String)>,
) -> Result<Json<WebhookOut>, ApiError> {
    let (_, mref) = scope(&state, &caller, &ws, &name).await?;
    Ok(Json(webhook_of(&state, &mref, &id).await?.into()))
}

/// Replace a webhook's configuration (workspace admins). An absent `secret` keeps the stored
/// one; null removes it.
#[utoipa::path(put, path = "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("id" = String, Path, description = "Webhook id")),
    request_body = WebhookIn,
    responses((status = 200, body = WebhookOut), ErrorResponses))]
async fn put_webhook(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, id)): ApiPath<(String, String, String)>,
    ApiJson(input): ApiJson<WebhookIn>,
) -> Result<Json<WebhookOut>, ApiError> {
    let (ws, mref) = scope(&state, &caller, &ws, &name).await?;
    let record = webhook_of(&state, &mref, &id).await?;
    require_ws_admin(&ws, "configure webhooks")?;
    let p = parse_config(&state, RawConfig::of(&input))?;
    check_secret_follows(&record, &p.url, p.secret.is_some(), "secret", GIVE_SECRET)?;
    let record = updated_record(&state, record, p);
    let id = record.id.clone();
    save(
        &state,
        &[WebhookWrite::Update(record)],
        &caller.username,
        too_many_webhooks,
    )
    .await?;
    let fresh = state
        .store
        .get_webhook(mref.model_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(Json(fresh.into()))
}

/// Delete a webhook (workspace admins): it receives nothing more, from this call on.
#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted"), ErrorResponses))]
async fn delete_webhook(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, id)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let (ws, mref) = scope(&state, &caller, &ws, &name).await?;
    webhook_of(&state, &mref, &id).await?;
    require_ws_admin(&ws, "configure webhooks")?;
    if state
        .store
        .delete_webhook(mref.model_id, &id, &caller.username)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}

fn test_result(req: &http::Outgoing, outcome: Outcome) -> TestResult {
    let response = outcome.status_code.map(|code| ResponseOut {
        status_code: code,
        headers: outcome.response_headers.iter().cloned().collect(),
        headers_omitted: u64::try_from(outcome.response_headers_omitted).unwrap_or(u64::MAX),
        body: outcome.response_body.clone(),
    });
    TestResult {
        success: outcome.succeeded(),
        status_code: outcome.status_code,
        duration_ms: outcome.duration_ms,
        error: outcome.error,
        error_class: outcome.error_class.map(|c| c.as_str().to_owned()),
        request: RequestOut {
            url: req.url.to_string(),
            headers: http::masked(&req.headers).into_iter().collect(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
        },
        response,
    }
}

/// Records a Test Webhook in the audit log, on its own (a test changes nothing else): which
/// webhook (if any), whether its saved configuration was tested, where it went (host only)
/// and how it ended; never the secret, headers or bodies.
async fn audit_test(
    state: &AppState,
    actor: &str,
    mref: &ModelRef,
    (webhook, saved): (Option<&WebhookRecord>, bool),
    url: &str,
    result: &TestResult,
) -> Result<(), ApiError> {
    let target = match webhook {
        Some(w) => AuditTarget::webhook(&mref.model_name, &w.id, &w.name),
        None => AuditTarget::model(&mref.model_name),
    };
    let entry = AuditEntry {
        workspace_id: mref.workspace_id,
        actor: actor.to_owned(),
        action: AuditAction::WebhookTested,
        target,
        details: serde_json::json!({
            "saved": saved,
            "urlHost": url_host(url),
            "success": result.success,
            "statusCode": result.status_code,
            "errorClass": result.error_class,
        }),
    };
    state.store.record_audit(&entry).await?;
    Ok(())
}

/// Sends the TEST event to `target` now, through the same signing and SSRF guard as every
/// delivery.
async fn send_test(state: &AppState, mref: &ModelRef, target: &http::Target) -> TestResult {
    let now = now_micros().div_euclid(1_000_000);
    let payload = EventPayload::test(&mref.workspace_name, &mref.model_name, now);
    let msg_id = format!("msg_test_{}", uuid::Uuid::now_v7().simple());
    let req = http::build(target, &msg_id, &payload, 1, now);
    let outcome = state.sender.send(&req, target.github_actions).await;
    state.metrics.observe(&outcome);
    test_result(&req, outcome)
}

/// Test an unsaved configuration (the webhook modal): sends the TEST event at once. With
/// `webhookId` and no `secret`, the stored secret is used.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/models/{model}/webhooks/test",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name")),
    request_body = WebhookTestIn,
    responses((status = 200, body = TestResult), ErrorResponses))]
async fn test_unsaved(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name)): ApiPath<(String, String)>,
    ApiJson(input): ApiJson<WebhookTestIn>,
) -> Result<Json<TestResult>, ApiError> {
    let (ws, mref) = scope(&state, &caller, &ws, &name).await?;
    let stored = match &input.webhook_id {
        Some(id) => Some(webhook_of(&state, &mref, id).await?),
        None => None,
    };
    require_ws_admin(&ws, "test webhooks")?;
    let triggers = input
        .triggers
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| vec!["MODEL_VERSION_CREATED".into()]);
    let p = parse_config(
        &state,
        RawConfig {
            name: input.name.as_deref().unwrap_or("test"),
            url: &input.url,
            secret: &input.secret,
            triggers: &triggers,
            headers: input.headers.as_ref(),
            github_actions: input.github_actions.unwrap_or(false),
            enabled: input.enabled,
        },
    )?;
    if let Some(w) = &stored {
        check_secret_follows(w, &p.url, p.secret.is_some(), "secret", GIVE_SECRET)?;
    }
    let (stored_secret, signing) = match &stored {
        Some(w) => {
            let t = target_of(&state.secrets, w).map_err(ApiError::Internal)?;
            (t.secret, t.signing_secrets)
        }
        None => (None, vec![new_signing_secret()]),
    };
    let secret = match p.secret {
        None => stored_secret,
        Some(s) => s,
    };
    let target = http::Target {
        url: p.url.url().clone(),
        secret,
        headers: p.headers,
        github_actions: p.github_actions,
        signing_secrets: signing,
    };
    let result = send_test(&state, &mref, &target).await;
    audit_test(
        &state,
        &caller.username,
        &mref,
        (stored.as_ref(), false),
        p.url.as_str(),
        &result,
    )
    .await?;
    Ok(Json(result))
}

/// Test a saved webhook: sends the TEST event at once, with its secret and signing key.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/test",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = TestResult), ErrorResponses))]
async fn test_saved(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, id)): ApiPath<(String, String, String)>,
) -> Result<Json<TestResult>, ApiError> {
    let (ws, mref) = scope(&state, &caller, &ws, &name).await?;
    let record = webhook_of(&state, &mref, &id).await?;
    require_ws_admin(&ws, "test webhooks")?;
    let target = target_of(&state.secrets, &record).map_err(ApiError::Internal)?;
    let result = send_test(&state, &mref, &target).await;
    audit_test(
        &state,
        &caller.username,
        &mref,
        (Some(&record), true),
        record.url.as_str(),
        &result,
    )
    .await?;
    Ok(Json(result))
}

fn signing_out(state: &AppState, w: &WebhookRecord) -> Result<SigningSecretOut, ApiError> {
    let ctx = signing_context(&w.id);
    let key = state
        .secrets
        .open(&ctx, &w.signing_key_enc)
        .map_err(ApiError::Internal)?;
    let live_old = match (&w.old_signing_key_enc, w.old_signing_expires_at) {
        (Some(old), Some(until)) if until > now_micros() => Some((old, until)),
        _ => None,
    };
    let (previous_key, previous_key_expires_at) = match live_old {
        Some((old, until)) => (
            Some(state.secrets.open(&ctx, old).map_err(ApiError::Internal)?),
            Some(rfc3339(until)),
        ),
        None => (None, None),
    };
    Ok(SigningSecretOut {
        key,
        previous_key,
        previous_key_expires_at,
    })
}

/// The webhook's signing key (workspace admins), to verify `webhook-signature`.
#[utoipa::path(get,
    path = "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/signing-secret",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = SigningSecretOut), ErrorResponses))]
async fn get_signing_secret(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, id)): ApiPath<(String, String, String)>,
) -> Result<Json<SigningSecretOut>, ApiError> {
    let (ws, mref) = scope(&state, &caller, &ws, &name).await?;
    let record = webhook_of(&state, &mref, &id).await?;
    require_ws_admin(&ws, "read signing keys")?;
    Ok(Json(signing_out(&state, &record)?))
}

/// Rotate the signing key (workspace admins). The previous key keeps signing beside the new
/// one for 24 hours, so receivers can switch without missing a beat.
#[utoipa::path(post,
    path = "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/signing-secret/rotate",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = SigningSecretOut), ErrorResponses))]
async fn rotate_signing_secret(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, id)): ApiPath<(String, String, String)>,
) -> Result<Json<SigningSecretOut>, ApiError> {
    let (ws, mref) = scope(&state, &caller, &ws, &name).await?;
    let record = webhook_of(&state, &mref, &id).await?;
    require_ws_admin(&ws, "rotate signing keys")?;
    let ctx = signing_context(&record.id);
    let new_enc = state.secrets.seal(&ctx, &new_signing_secret());
    let expires = now_micros() + 24 * 3600 * 1_000_000;
    state
        .store
        .rotate_signing_key(
            &record.id,
            &new_enc,
            &record.signing_key_enc,
            expires,
            &caller.username,
        )
        .await?;
    let record = webhook_of(&state, &mref, &id).await?;
    Ok(Json(signing_out(&state, &record)?))
}

fn delivery_out(d: &crate::store::DeliveryRecord) -> DeliveryOut {
    DeliveryOut {
        id: d.id.clone(),
        event_id: d.event_id.clone(),
        event_trigger: d.event_trigger.as_str().to_owned(),
        state: d.state.as_str().to_owned(),
        attempt_count: d.attempt_count,
        last_status_code: d.last_status_code,
        next_attempt_at: if d.state == DeliveryState::Pending {
            d.next_attempt_at.map(rfc3339)
        } else {
            None
        },
        created_at: rfc3339(d.created_at),
    }
}

/// The webhook's deliveries, newest first.
#[utoipa::path(get,
    path = "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("id" = String, Path, description = "Webhook id"), DeliveryQuery),
    responses((status = 200, body = DeliveryList), ErrorResponses))]
async fn list_deliveries(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, id)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    let (_, mref) = scope(&state, &caller, &ws, &name).await?;
    let record = webhook_of(&state, &mref, &id).await?;
    let limit = parse_limit(q.limit.as_deref())?;
    let before: Option<String> = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let only = q
        .state
        .as_deref()
        .map(|s| DeliveryState::parse("state", s))
        .transpose()?;
    let rows = state
        .store
        .list_deliveries(&record.id, only, before.as_deref(), limit + 1)
        .await?;
    let (rows, next_cursor) = paginate(rows, limit, |d| d.id.clone());
    Ok(Json(DeliveryList {
        items: rows.iter().map(delivery_out).collect(),
        next_cursor,
    }))
}

fn header_map(json: Option<&str>) -> BTreeMap<String, String> {
    json.and_then(|j| serde_json::from_str::<Vec<(String, String)>>(j).ok())
        .map(|v| v.into_iter().collect())
        .unwrap_or_default()
}

/// One delivery: the request sent (secret masked) and every attempt with its answer.
#[utoipa::path(get,
    path = "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/deliveries/{deliveryId}",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("id" = String, Path, description = "Webhook id"),
           ("deliveryId" = String, Path, description = "Delivery id")),
    responses((status = 200, body = DeliveryDetail), ErrorResponses))]
async fn get_delivery(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, id, delivery_id)): ApiPath<(String, String, String, String)>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    let (_, mref) = scope(&state, &caller, &ws, &name).await?;
    let record = webhook_of(&state, &mref, &id).await?;
    let (d, attempts) = state
        .store
        .get_delivery(&record.id, &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    let payload: EventPayload =
        serde_json::from_str(&d.payload).map_err(|e| ApiError::Internal(e.into()))?;
    let body =
        String::from_utf8_lossy(&http::body_of(&payload, record.github_actions)).into_owned();
    let request = match attempts.last() {
        Some(a) => RequestOut {
            url: a.request_url.clone(),
            headers: header_map(Some(&a.request_headers)),
            body,
        },
        None => {
            let target = target_of(&state.secrets, &record).map_err(ApiError::Internal)?;
            let req = http::build(
                &target,
                &d.id,
                &payload,
                d.attempt_count + 1,
                now_micros().div_euclid(1_000_000),
            );
            RequestOut {
                url: req.url.to_string(),
                headers: http::masked(&req.headers).into_iter().collect(),
                body,
            }
        }
    };
    Ok(Json(DeliveryDetail {
        delivery: delivery_out(&d),
        request,
        attempts: attempts
            .iter()
            .map(|a| AttemptOut {
                attempt: a.attempt,
                started_at: rfc3339(a.started_at),
                duration_ms: a.duration_ms,
                status_code: a.status_code,
                error_class: a.error_class.clone(),
                error: a.error.clone(),
                request_headers: header_map(Some(&a.request_headers)),
                response_headers: header_map(a.response_headers.as_deref()),
                response_headers_omitted: a.response_headers_omitted,
                response_body: a.response_body.clone(),
                node: a.node.clone(),
            })
            .collect(),
    }))
}

/// Send a delivery again now (workspace admins), with the same `webhook-id` and a fresh retry
/// schedule.
#[utoipa::path(post,
    path = "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/deliveries/{deliveryId}/redeliver",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("id" = String, Path, description = "Webhook id"),
           ("deliveryId" = String, Path, description = "Delivery id")),
    responses((status = 202, body = DeliveryOut), ErrorResponses))]
async fn redeliver(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, id, delivery_id)): ApiPath<(String, String, String, String)>,
) -> Result<(StatusCode, Json<DeliveryOut>), ApiError> {
    let (ws, mref) = scope(&state, &caller, &ws, &name).await?;
    let record = webhook_of(&state, &mref, &id).await?;
    require_ws_admin(&ws, "redeliver")?;
    if !state
        .store
        .redeliver(&record.id, &delivery_id, &caller.username)
        .await?
    {
        return Err(ApiError::not_found("delivery"));
    }
    state.store.wake_worker();
    let (d, _) = state
        .store
        .get_delivery(&record.id, &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    Ok((StatusCode::ACCEPTED, Json(delivery_out(&d))))
}

/// Queue again every failed delivery of the webhook created since a time (workspace admins).
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/replay",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("id" = String, Path, description = "Webhook id")),
    request_body = ReplayIn,
    responses((status = 202, body = ReplayOut), ErrorResponses))]
async fn replay(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, id)): ApiPath<(String, String, String)>,
    ApiJson(input): ApiJson<ReplayIn>,
) -> Result<(StatusCode, Json<ReplayOut>), ApiError> {
    let (ws, mref) = scope(&state, &caller, &ws, &name).await?;
    let record = webhook_of(&state, &mref, &id).await?;
    require_ws_admin(&ws, "replay deliveries")?;
    let since = chrono::DateTime::parse_from_rfc3339(&input.since)
        .map_err(|_| {
            ApiError::invalid(
                "since",
                "since must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z",
            )
        })?
        .timestamp_micros();
    let requeued = state
        .store
        .replay_failed(&record.id, since, &caller.username)
        .await?;
    state.store.wake_worker();
    Ok((StatusCode::ACCEPTED, Json(ReplayOut { requeued })))
}

/// Re-enable a disabled webhook and send it what it missed (workspace admins): the
/// deliveries that failed since its failures began, the events that happened while it was
/// disabled, and the deliveries still waiting, all at once, in event order. An enabled
/// webhook is left as it is (nothing is queued). `PUT` with `"enabled": true` only enables.
#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/enable",
    tag = "webhooks",
    params(("ws" = String, Path, description = "Workspace name"),
           ("model" = String, Path, description = "Model name"),
           ("id" = String, Path, description = "Webhook id")),
    responses((status = 200, body = EnableOut), ErrorResponses))]
async fn enable(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((ws, name, id)): ApiPath<(String, String, String)>,
) -> Result<Json<EnableOut>, ApiError> {
    let (ws, mref) = scope(&state, &caller, &ws, &name).await?;
    webhook_of(&state, &mref, &id).await?;
    require_ws_admin(&ws, "enable webhooks")?;
    let outcome = state
        .store
        .enable_webhook(mref.model_id, &id, &caller.username)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    let webhook = webhook_of(&state, &mref, &id).await?;
    Ok(Json(EnableOut {
        webhook: webhook.into(),
        replayed_failed: outcome.replayed_failed,
        missed_events: outcome.missed_events,
        pending: outcome.pending,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_maps_tolerate_garbage() {
        assert!(super::header_map(Some("nonsense")).is_empty());
        assert_eq!(super::header_map(Some(r#"[["a","b"]]"#)).len(), 1);
    }
}
