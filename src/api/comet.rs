//! Comet-compatible webhook configuration, for users moving from Comet's model registry:
//! `POST/GET /api/rest/v2/webhooks/config`. These routes also accept a bare
//! `Authorization: <token>`, as Comet's clients send it.

use std::collections::BTreeMap;

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
use super::webhooks::{Parsed, create_from, update_from};
use crate::app::AppState;
use crate::domain::{WebhookUrl, parse_headers, parse_secret, parse_triggers, parse_webhook_name};
use crate::error::{ApiError, FieldErrors};
use crate::store::WebhookRecord;

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
        url: w.url,
        triggers: w.triggers,
        header,
        github_actions: w.github_actions,
    }
}

/// Create or update webhooks by name, in Comet's shape (workspace admins). An
/// `Authorization` header becomes the webhook's secret; the mask `********` keeps the stored
/// one; no `Authorization` removes it.
#[utoipa::path(post, path = "/api/rest/v2/webhooks/config", tag = "webhooks",
    request_body = CometConfigs,
    responses((status = 200, body = CometConfigs), ErrorResponses))]
async fn post_config(
    State(state): State<AppState>,
    CometAuth(caller): CometAuth,
    ApiJson(input): ApiJson<CometConfigs>,
) -> Result<Json<CometConfigs>, ApiError> {
    // Check everything first, so a bad entry changes nothing; every bad field is reported.
    let mut plan = Vec::new();
    let mut errors = FieldErrors::new();
    for (i, cfg) in input.webhook_configs.iter().enumerate() {
        let ws = workspace(&state, &caller, &cfg.workspace_name).await?;
        let mref = model_ref(&state, &ws, &cfg.model_name).await?;
        require_ws_admin(&ws, "configure webhooks")?;
        for (j, hook) in cfg.webhook_urls.iter().enumerate() {
            let at = |f: &str| format!("webhookConfigs[{i}].webhookUrls[{j}].{f}");
            errors.check(parse_webhook_name(&at("name"), &hook.name));
            if let Some(url) = errors.check(WebhookUrl::parse(&at("url"), &hook.url)) {
                if let Err(b) = state.sender.policy().check_url(url.url()) {
                    errors.add(ApiError::invalid(at("url"), b.to_string()));
                } else if hook.github_actions {
                    errors.check(url.check_github_dispatch(&at("url")));
                }
            }
            errors.check(parse_triggers(&at("triggers"), &hook.triggers));
            let mut extra = hook.header.clone();
            let auth_key = extra
                .keys()
                .find(|k| k.eq_ignore_ascii_case("authorization"))
                .cloned();
            if let Some(k) = &auth_key {
                let v = extra.remove(k).unwrap_or_default();
                if v != MASK {
                    errors.check(parse_secret(&at("header.Authorization"), &v));
                }
            }
            errors.check(parse_headers(&at("header"), &extra));
        }
        plan.push((mref, cfg));
    }
    errors.finish()?;
    let mut out = Vec::new();
    for (mref, cfg) in plan {
        for hook in &cfg.webhook_urls {
            let mut extra = hook.header.clone();
            let auth_key = extra
                .keys()
                .find(|k| k.eq_ignore_ascii_case("authorization"))
                .cloned();
            let secret: Option<Option<String>> = match auth_key {
                Some(k) => match extra.remove(&k) {
                    Some(v) if v == MASK => None,
                    v => Some(v),
                },
                None => Some(None),
            };
            let existing = state
                .store
                .get_webhook_by_name(mref.model_id, &hook.name)
                .await?;
            let parsed = Parsed {
                name: hook.name.clone(),
                url: WebhookUrl::parse("url", &hook.url)?,
                secret,
                triggers: hook.triggers.clone(),
                headers: parse_headers("header", &extra)?,
                github_actions: hook.github_actions,
                enabled: None,
            };
            match existing {
                Some(record) => {
                    update_from(&state, record, parsed, &caller.username).await?;
                }
                None => {
                    create_from(&state, &mref, parsed, &caller.username).await?;
                }
            }
        }
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
