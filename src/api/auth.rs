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

/// The credentials a route accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Accept {
    /// The API: `Authorization: Bearer <token>`, or, without an `Authorization` header, the
    /// web UI's session cookie (a state-changing method must then carry the session's CSRF
    /// token in `X-CSRF-Token`).
    Api,
    /// The Comet routes: `Bearer <token>` or a bare `Authorization: <token>`; no session.
    Comet,
    /// The web UI's pages: the session cookie only.
    Page,
}

/// Who a request was authenticated as: the result of a bearer token's lookup, or a session.
pub enum Authenticated<T> {
    Token(T),
    Session { caller: Caller, csrf: String },
}

/// **The one way a request is authenticated**, with the limits inside it. Every extractor
/// ([`Auth`], [`ModelScope`], [`CometAuth`], the web UI's `Session`) and the sign-in form
/// come through here, so a route cannot skip a limit by choosing another extractor. In order:
///
/// 1. a client address blocked for too many failed authentications gets 429 before its
///    credentials are even read;
/// 2. missing credentials are 401; a bearer token is looked up by its hash with `lookup`
///    (the caller alone, or, for [`ModelScope`], the caller with the path's workspace and
///    model in one read), a session cookie in the sessions table. Unknown ones count
///    against the client address and get 401, or 429 when that failure was one too many;
/// 3. the request counts against its token's rate limit (a session's against the token it
///    was opened with): 429 when over;
/// 4. a session's state-changing API call needs its CSRF token (403).
pub async fn authenticate<T, Found>(
    state: &AppState,
    parts: &Parts,
    accept: Accept,
    lookup: impl FnOnce(String) -> Found,
    caller_of: impl Fn(&T) -> &Caller,
) -> Result<Authenticated<T>, ApiError>
where
    Found: Future<Output = Result<Option<T>, ApiError>>,
{
    let ip = super::limits::client_ip(parts);
    if let Some(ip) = ip {
        state.limits.check_address(ip)?;
    }
    let presented = presented(parts, accept)?;
    let found = match presented {
        Presented::Token(token) => {
            let found = if token.is_empty() || token.len() > 512 {
                None
            } else {
                lookup(hash_token(&token)).await?
            };
            found.map(Authenticated::Token)
        }
        Presented::Session(id) => {
            let found = if id.is_empty() || id.len() > 256 {
                None
            } else {
                state.store.session(&hash_token(&id)).await?
            };
            found.map(|(caller, csrf)| Authenticated::Session { caller, csrf })
        }
    };
    let Some(found) = found else {
        if let Some(ip) = ip {
            state.limits.auth_failed(ip)?;
        }
        return Err(ApiError::Unauthorized(match accept {
            Accept::Page => "the session expired or was closed; sign in again".into(),
            _ => "invalid or revoked token".into(),
        }));
    };
    let caller = match &found {
        Authenticated::Token(t) => caller_of(t),
        Authenticated::Session { caller, .. } => caller,
    };
    state.limits.check_token(&caller.token_id)?;
    if let Authenticated::Session { csrf, .. } = &found {
        let safe = matches!(
            parts.method,
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if accept == Accept::Api && !safe && sent != Some(csrf.as_str()) {
            return Err(ApiError::Forbidden(
                "missing or wrong X-CSRF-Token for a session request".into(),
            ));
        }
    }
    Ok(found)
}

/// Authenticates a token typed into the web UI's sign-in form, through [`authenticate`]'s
/// limits: the form's token is treated as a bearer token of this request.
pub async fn authenticate_sign_in(
    state: &AppState,
    parts: &Parts,
    token: &str,
) -> Result<Caller, ApiError> {
    let mut parts = parts.clone();
    parts.headers.remove(axum::http::header::COOKIE);
    let value = axum::http::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
        .map_err(|_| ApiError::Unauthorized("invalid or revoked token".into()))?;
    parts.headers.insert(AUTHORIZATION, value);
    match authenticate(
        state,
        &parts,
        Accept::Api,
        |hash| lookup_caller(state, hash),
        |c| c,
    )
    .await?
    {
        Authenticated::Token(caller) | Authenticated::Session { caller, .. } => Ok(caller),
    }
}

/// The bearer-token lookup of most routes: the token's caller alone.
async fn lookup_caller(state: &AppState, hash: String) -> Result<Option<Caller>, ApiError> {
    Ok(state.store.authenticate(&hash).await?)
}

/// What a request presents, by what its route accepts.
enum Presented {
    Token(String),
    Session(String),
}

fn presented(parts: &Parts, accept: Accept) -> Result<Presented, ApiError> {
    match accept {
        Accept::Page => cookie(parts, SESSION_COOKIE)
            .map(Presented::Session)
            .ok_or_else(|| ApiError::Unauthorized("sign in first".into())),
        Accept::Api => {
            if parts.headers.get(AUTHORIZATION).is_none()
                && let Some(id) = cookie(parts, SESSION_COOKIE)
            {
                return Ok(Presented::Session(id));
            }
            token_from(parts, false).map(Presented::Token)
        }
        Accept::Comet => token_from(parts, true).map(Presented::Token),
    }
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

/// The authenticated caller of an API request ([`Accept::Api`], through [`authenticate`]).
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match authenticate(
            state,
            parts,
            Accept::Api,
            |hash| lookup_caller(state, hash),
            |c| c,
        )
        .await?
        {
            Authenticated::Token(caller) | Authenticated::Session { caller, .. } => {
                Ok(Auth(caller))
            }
        }
    }
}

/// The caller, their access to the path's workspace `{ws}`, and the path's model `{model}`:
/// the same answers, errors and order of checks as [`Auth`], [`workspace`] and [`model_ref`]
/// in turn (429 and 401 from [`authenticate`], then 404 for the workspace, then 404 for the
/// model), found with one query for a bearer token. This is the hot path of every
/// model-scoped write.
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
        let (ws_ref, model_ref_name) = (&ws_name, &model_name);
        let lookup = |hash: String| async move {
            Ok(state
                .store
                .model_scope(&hash, ws_ref, model_ref_name)
                .await?)
        };
        let row = match authenticate(state, parts, Accept::Api, lookup, |row| &row.caller).await? {
            Authenticated::Token(row) => row,
            Authenticated::Session { caller, .. } => {
                // A web UI session: the workspace and the model as every other route finds them.
                let ws = workspace(state, &caller, &ws_name).await?;
                let model = model_ref(state, &ws, &model_name).await?;
                return Ok(ModelScope { caller, ws, model });
            }
        };
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

/// Like [`Auth`], but also accepts a bare `Authorization: <token>` (the Comet routes), and no
/// session.
pub struct CometAuth(pub Caller);

impl FromRequestParts<AppState> for CometAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match authenticate(
            state,
            parts,
            Accept::Comet,
            |hash| lookup_caller(state, hash),
            |c| c,
        )
        .await?
        {
            Authenticated::Token(caller) | Authenticated::Session { caller, .. } => {
                Ok(CometAuth(caller))
            }
        }
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
