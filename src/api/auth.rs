//! Authentication (bearer tokens) and the authorization helpers every handler uses.
//!
//! A user who is not a member of a workspace gets 404 for every path under it, exactly as if
//! it did not exist; [`workspace`] is the one place that decides this.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::domain::Role;
use crate::error::ApiError;
use crate::store::{Caller, ModelRef, WorkspaceAccess};

/// A new API token: `berth_` and 32 random bytes, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("berth_{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn new_token_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Tokens are stored as their SHA-256: they are long random strings, so a fast hash is as
/// good as a slow one and keeps authentication cheap.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Reads the token from `Authorization: Bearer <token>`; with `allow_bare`, also from a bare
/// `Authorization: <token>` (as Comet's clients send it).
pub fn token_from(parts: &Parts, allow_bare: bool) -> Result<String, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <token>".into()))?;
    let text = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("invalid Authorization header".into()))?
        .trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or(("", text));
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(rest.trim().to_owned())
    } else if allow_bare && !text.is_empty() && !text.contains(' ') {
        Ok(text.to_owned())
    } else {
        Err(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`".into(),
        ))
    }
}

/// Authenticates `token` for a request from the client at `parts`: a client address that made
/// too many failed authentications lately gets 429 before its token is looked at, and each
/// failure counts against its address (`api::limits`).
pub async fn authenticate_request(
    state: &AppState,
    parts: &Parts,
    token: &str,
) -> Result<Caller, ApiError> {
    let ip = super::limits::client_ip(parts);
    if let Some(ip) = ip {
        state.limits.check_address(ip)?;
    }
    match authenticate(state, token).await {
        Err(ApiError::Unauthorized(message)) => {
            if let Some(ip) = ip {
                state.limits.auth_failed(ip)?;
            }
            Err(ApiError::Unauthorized(message))
        }
        other => other,
    }
}

pub async fn authenticate(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    if token.is_empty() || token.len() > 512 {
        return Err(ApiError::Unauthorized("invalid or revoked token".into()));
    }
    state
        .store
        .authenticate(&hash_token(token))
        .await?
        .ok_or_else(|| ApiError::Unauthorized("invalid or revoked token".into()))
}

/// The name of the web UI's session cookie.
pub const SESSION_COOKIE: &str = "berth_session";
/// The header that carries the session's CSRF token on state-changing calls.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name`, if the request carries it.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The user of a web UI session cookie, with the session's CSRF token.
pub async fn session_caller(
    state: &AppState,
    parts: &Parts,
) -> Result<Option<(Caller, String)>, ApiError> {
    match cookie(parts, SESSION_COOKIE) {
        Some(id) if !id.is_empty() && id.len() <= 256 => {
            Ok(state.store.session(&hash_token(&id)).await?)
        }
        _ => Ok(None),
    }
}

/// The authenticated caller of an API request: `Authorization: Bearer <token>`, or the web
/// UI's session cookie, in which case a state-changing method must also carry the session's
/// CSRF token in `X-CSRF-Token`. Each request counts against its token's rate limit (a
/// session's against the token it was opened with).
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.get(AUTHORIZATION).is_none()
            && let Some((caller, csrf)) = session_caller(state, parts).await?
        {
            let safe = matches!(
                parts.method,
                axum::http::Method::GET | axum::http::Method::HEAD
            );
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !safe && sent != Some(csrf.as_str()) {
                return Err(ApiError::Forbidden(
                    "missing or wrong X-CSRF-Token for a session request".into(),
                ));
            }
            state.limits.check_token(&caller.token_id)?;
            return Ok(Auth(caller));
        }
        let token = token_from(parts, false)?;
        let caller = authenticate_request(state, parts, &token).await?;
        state.limits.check_token(&caller.token_id)?;
        Ok(Auth(caller))
    }
}

/// The caller, their access to the path's workspace `{ws}`, and the path's model `{model}`:
/// the same answers, errors and order of checks as [`Auth`], [`workspace`] and [`model_ref`]
/// in turn (401, then 404 for the workspace, then 404 for the model), found with one query
/// for a bearer token. This is the hot path of every model-scoped write.
pub struct ModelScope {
    pub caller: Caller,
    pub ws: WorkspaceAccess,
    pub model: ModelRef,
}

impl FromRequestParts<AppState> for ModelScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let params = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::Invalid {
                message: format!("invalid path: {}", e.body_text()),
                field: Some("path".into()),
            })?;
        let (mut ws_name, mut model_name) = (None, None);
        for (key, value) in &params {
            match key {
                "ws" => ws_name = Some(value.to_owned()),
                "model" => model_name = Some(value.to_owned()),
                _ => {}
            }
        }
        let (Some(ws_name), Some(model_name)) = (ws_name, model_name) else {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "ModelScope on a route without {{ws}} and {{model}}"
            )));
        };
        if parts.headers.get(AUTHORIZATION).is_none() {
            // A web UI session: the three steps, as every other route takes them.
            let Auth(caller) = Auth::from_request_parts(parts, state).await?;
            let ws = workspace(state, &caller, &ws_name).await?;
            let model = model_ref(state, &ws, &model_name).await?;
            return Ok(ModelScope { caller, ws, model });
        }
        let token = token_from(parts, false)?;
        if token.is_empty() || token.len() > 512 {
            return Err(ApiError::Unauthorized("invalid or revoked token".into()));
        }
        let row = state
            .store
            .model_scope(&hash_token(&token), &ws_name, &model_name)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("invalid or revoked token".into()))?;
        let ws = row
            .workspace
            .ok_or_else(|| ApiError::not_found("workspace"))?;
        let (model_id, model_name) = row.model.ok_or_else(|| ApiError::not_found("model"))?;
        let model = ModelRef {
            workspace_id: ws.id,
            workspace_name: ws.name.clone(),
            model_id,
            model_name,
        };
        Ok(ModelScope {
            caller: row.caller,
            ws,
            model,
        })
    }
}

/// Like [`Auth`], but also accepts a bare `Authorization: <token>` (the Comet routes).
pub struct CometAuth(pub Caller);

impl FromRequestParts<AppState> for CometAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = token_from(parts, true)?;
        let caller = authenticate_request(state, parts, &token).await?;
        state.limits.check_token(&caller.token_id)?;
        Ok(CometAuth(caller))
    }
}

pub fn require_server_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.server_admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only a server admin may do this".into(),
        ))
    }
}

/// The caller's access to workspace `name`, or 404 when it does not exist or the caller is
/// not a member.
pub async fn workspace(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<WorkspaceAccess, ApiError> {
    state
        .store
        .workspace_access(caller.user_id, caller.server_admin, name)
        .await?
        .ok_or_else(|| ApiError::not_found("workspace"))
}

pub fn require_ws_admin(ws: &WorkspaceAccess, action: &str) -> Result<(), ApiError> {
    if ws.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "only workspace admins may {action}"
        )))
    }
}

/// The model `name` in `ws` as a reference (id and names), or 404. Cheaper than [`model`].
pub async fn model_ref(
    state: &AppState,
    ws: &WorkspaceAccess,
    name: &str,
) -> Result<ModelRef, ApiError> {
    let (model_id, model_name) = state
        .store
        .model_id(ws.id, name)
        .await?
        .ok_or_else(|| ApiError::not_found("model"))?;
    Ok(ModelRef {
        workspace_id: ws.id,
        workspace_name: ws.name.clone(),
        model_id,
        model_name,
    })
}

/// The model `name` in `ws`, or 404.
pub async fn model(
    state: &AppState,
    ws: &WorkspaceAccess,
    name: &str,
) -> Result<(ModelRef, crate::store::Model), ApiError> {
    let model = state
        .store
        .get_model(ws.id, name)
        .await?
        .ok_or_else(|| ApiError::not_found("model"))?;
    Ok((
        ModelRef {
            workspace_id: ws.id,
            workspace_name: ws.name.clone(),
            model_id: model.id,
            model_name: model.name.clone(),
        },
        model,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(auth: Option<&str>) -> Parts {
        let mut b = axum::http::Request::builder();
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn token_parsing() {
        assert_eq!(
            token_from(&parts(Some("Bearer abc")), false).unwrap(),
            "abc"
        );
        assert_eq!(
            token_from(&parts(Some("bearer abc")), false).unwrap(),
            "abc"
        );
        assert!(token_from(&parts(Some("abc")), false).is_err());
        assert_eq!(token_from(&parts(Some("abc")), true).unwrap(), "abc");
        assert!(token_from(&parts(None), true).is_err());
        assert!(token_from(&parts(Some("Basic abc")), true).is_err());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token();
        assert!(a.starts_with("berth_"));
        assert_ne!(a, new_token());
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), a);
    }
}
