//! Comet-compatible webhook configuration, for users moving from Comet's model registry:
//! `POST/GET /api/rest/v2/webhooks/config`. These routes also accept a bare
//! `Authorization: <token>`, as Comet's clients send it.

use std::collections::{BTreeMap, HashSet};

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ErrorResponses;
use super::auth::{CometAuth, model_ref, require_ws_admin, workspace};
use super::extract::{ApiJson, ApiQuery};
use super::schema::{CometHeaders, TriggerName, WebhookNameText};
use super::webhooks::{
    MAX_WEBHOOKS_PER_MODEL, RawConfig, check_config, check_secret_follows, new_record, save,
    updated_record,
};
use crate::app::AppState;
use crate::error::{ApiError, FieldErrors};
use crate::store::{ModelRef, WebhookRecord, WebhookWrite};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_config, get_config))
}

/// What GET shows in place of a stored secret; POSTing it back keeps the secret.
pub const MASK: &str = "********";

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CometConfigs {
    pub webhook_configs: Vec<CometConfig>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CometConfig {
    /// A workspace name, as in the REST API.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )]
    pub workspace_name: String,
    /// A model name, as in the REST API.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )]
    pub model_name: String,
    pub webhook_urls: Vec<CometWebhook>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CometWebhook {
    #[schema(value_type = WebhookNameText)]
    pub name: String,
    /// Absolute http(s) URL, at most 2048 characters, without user info.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    #[schema(value_type = Vec<TriggerName>, min_items = 1)]
    pub triggers: Vec<String>,
    /// Extra headers; `Authorization` is the webhook's secret (masked on GET).
    #[serde(default)]
    #[schema(value_type = CometHeaders)]
    pub header: BTreeMap<String, String>,
    /// Berth extension: GitHub Actions format.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub github_actions: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct CometQuery {
    /// Required: a workspace name.
    #[param(required = true, value_type = String, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    pub workspace_name: Option<String>,
    /// Required: a model name.
    #[param(required = true, value_type = String, min_length = 1, max_length = 100, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    pub model_name: Option<String>,
}

fn comet_of(w: WebhookRecord) -> CometWebhook {
    let mut header: BTreeMap<String, String> = w.headers.into_iter().collect();
    if w.secret_enc.is_some() {
        header.insert("Authorization".into(), MASK.into());
    }
    CometWebhook {
        name: w.name,
        url: w.url.as_str().to_owned(),
        triggers: w.triggers.iter().map(|t| t.as_str().to_owned()).collect(),
        header,
        github_actions: w.github_actions,
    }
}

/// Splits the `Authorization` header (any case) from the others: absent removes the
/// secret (`Some(None)`), the mask keeps it (`None`), anything else sets it.
fn split_authorization(
    header: &BTreeMap<String, String>,
) -> (Option<Option<String>>, BTreeMap<String, String>) {
    let mut extra = header.clone();
    let auth_key = extra
        .keys()
        .find(|k| k.eq_ignore_ascii_case("authorization"))
        .cloned();
    let secret = match auth_key.and_then(|k| extra.remove(&k)) {
        Some(v) if v == MASK => None,
        Some(v) => Some(Some(v)),
        None => Some(None),
    };
    (secret, extra)
}

/// Create or update webhooks by name, in Comet's shape (workspace admins). An
/// `Authorization` header becomes the webhook's secret; the mask `********` keeps the stored
/// one (not when the URL's origin changes: then the header must be sent again); no
/// `Authorization` removes it. The whole request is checked, then written in one
/// transaction: a refused request changes nothing.
#[utoipa::path(post, path = "/api/rest/v2/webhooks/config", tag = "webhooks",
    request_body = CometConfigs,
    responses((status = 200, body = CometConfigs), ErrorResponses))]
async fn post_config(
    State(state): State<AppState>,
    CometAuth(caller): CometAuth,
    ApiJson(input): ApiJson<CometConfigs>,
) -> Result<Json<CometConfigs>, ApiError> {
    let mut writes = Vec::new();
    let mut models: Vec<(usize, ModelRef)> = Vec::new();
    let mut seen: HashSet<(i64, String)> = HashSet::new();
    let mut errors = FieldErrors::new();
    for (i, cfg) in input.webhook_configs.iter().enumerate() {
        let ws = workspace(&state, &caller, &cfg.workspace_name).await?;
        let mref = model_ref(&state, &ws, &cfg.model_name).await?;
        require_ws_admin(&ws, "configure webhooks")?;
        for (j, hook) in cfg.webhook_urls.iter().enumerate() {
            let at = |f: &str| format!("webhookConfigs[{i}].webhookUrls[{j}].{f}");
            // Every bad field of every entry is reported at once (`errors`), by the native
            // routes' checks, under this request's field names.
            let (secret, extra) = split_authorization(&hook.header);
            let raw = RawConfig {
                name: &hook.name,
                url: &hook.url,
                secret: &secret,
                triggers: &hook.triggers,
                headers: Some(&extra),
                github_actions: hook.github_actions,
                enabled: None,
            };
            let field = |f: &str| match f {
                "secret" => at("header.Authorization"),
                "headers" => at("header"),
                other => at(other),
            };
            let Some(parsed) = check_config(&state, raw, &field, &mut errors) else {
                continue;
            };
            if !seen.insert((mref.model_id, parsed.name.clone())) {
                errors.add(ApiError::invalid(
                    at("name"),
                    "this request names this model's webhook twice; name each once",
                ));
                continue;
            }
            match state
                .store
                .get_webhook_by_name(mref.model_id, &parsed.name)
                .await?
            {
                Some(record) => {
                    let follows = check_secret_follows(
                        &record,
                        &parsed.url,
                        parsed.secret.is_some(),
                        &at("header.Authorization"),
                        "send the Authorization header itself again (not the mask), or leave it \
                         out to remove the secret",
                    );
                    if errors.check(follows).is_some() {
                        writes.push(WebhookWrite::Update(updated_record(&state, record, parsed)));
                    }
                }
                None => writes.push(WebhookWrite::Create(new_record(&state, &mref, parsed))),
            }
        }
        models.push((i, mref));
    }
    errors.finish()?;
    save(&state, &writes, &caller.username, |model_id, total| {
        let (i, name) = models
            .iter()
            .find(|(_, m)| m.model_id == model_id)
            .map(|(i, m)| (*i, m.model_name.as_str()))
            .unwrap_or((0, ""));
        ApiError::conflict(
            format!("webhookConfigs[{i}].webhookUrls"),
            format!(
                "a model has at most {MAX_WEBHOOKS_PER_MODEL} webhooks; this request would \
                 give `{name}` {total}: nothing was changed"
            ),
        )
    })
    .await?;
    let mut out = Vec::new();
    for (_, mref) in models {
        let hooks = state.store.list_webhooks(mref.model_id).await?;
        out.push(CometConfig {
            workspace_name: mref.workspace_name.clone(),
            model_name: mref.model_name.clone(),
            webhook_urls: hooks.into_iter().map(comet_of).collect(),
        });
    }
    Ok(Json(CometConfigs {
        webhook_configs: out,
    }))
}

/// The webhooks of a model, in Comet's shape, secrets masked.
#[utoipa::path(get, path = "/api/rest/v2/webhooks/config", tag = "webhooks",
    params(CometQuery),
    responses((status = 200, body = CometConfigs), ErrorResponses))]
async fn get_config(
    State(state): State<AppState>,
    CometAuth(caller): CometAuth,
    ApiQuery(q): ApiQuery<CometQuery>,
) -> Result<Json<CometConfigs>, ApiError> {
    let ws_name = q
        .workspace_name
        .ok_or_else(|| ApiError::invalid("workspaceName", "workspaceName is required"))?;
    let model_name = q
        .model_name
        .ok_or_else(|| ApiError::invalid("modelName", "modelName is required"))?;
    let ws = workspace(&state, &caller, &ws_name).await?;
    let mref = model_ref(&state, &ws, &model_name).await?;
    let hooks = state.store.list_webhooks(mref.model_id).await?;
    Ok(Json(CometConfigs {
        webhook_configs: vec![CometConfig {
            workspace_name: mref.workspace_name,
            model_name: mref.model_name,
            webhook_urls: hooks.into_iter().map(comet_of).collect(),
        }],
    }))
}
