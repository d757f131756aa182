//! The web UI: server-rendered pages (maud) with a small script and stylesheet of our own,
//! embedded in the binary. Reads render from the store; every action the pages offer is a
//! call to the REST API from `static/app.js`, authenticated by the session cookie and the
//! page's CSRF token, so the UI takes exactly the API's code paths.

mod audit;
mod pages;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::Deserialize;

use crate::api::auth::{
    Accept, Authenticated, SESSION_COOKIE, authenticate, authenticate_sign_in, cookie, hash_token,
};
use crate::app::AppState;
use crate::error::ApiError;
use crate::store::{Caller, now_micros};

/// How long a browser session lasts.
const SESSION_HOURS: i64 = 12;
/// The cookie holding the sign-in form's CSRF token (double submit).
const LOGIN_CSRF_COOKIE: &str = "berth_login_csrf";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/w/{ws}", get(registry_page))
        .route("/w/{ws}/audit", get(audit::audit_page))
        .route("/w/{ws}/m/{model}", get(model_page))
        .route(
            "/w/{ws}/m/{model}/webhooks/{id}/deliveries",
            get(deliveries_page),
        )
        .route("/static/app.js", get(app_js))
        .route("/static/app.css", get(app_css))
        .route("/favicon.ico", get(favicon))
        .layer(axum::middleware::map_response(security_headers))
}

/// The policy of every page: Berth's own script, style and images only, no inline script or
/// style, no plugin, no framing (clickjacking), forms and `fetch` to Berth alone.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Adds the browser protections to every answer of the web UI.
async fn security_headers(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// Whether the request reached Berth over HTTPS. Berth itself serves plain HTTP, so only a
/// reverse proxy can say so, and only when `trust_forwarded_proto` is set: its
/// `X-Forwarded-Proto: https` or `Forwarded: proto=https`.
fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    if !state.settings.trust_forwarded_proto {
        return false;
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if let Some(proto) = first("x-forwarded-proto") {
        return proto == "https";
    }
    first("forwarded").is_some_and(|element| {
        element.split(';').any(|pair| {
            pair.trim().split_once('=').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("proto") && v.trim_matches('"') == "https"
            })
        })
    })
}

/// Whether a form POST came from Berth's own pages. A browser sends `Origin` with every POST:
/// one naming another site than the `Host` it was sent to (or `null`) is refused, as is
/// `Sec-Fetch-Site: cross-site`. A client that sends neither (curl, scripts) is not a browser
/// a foreign page could drive, and passes (the form's CSRF cookie still applies).
fn same_origin(parts: &Parts) -> bool {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site") == Some("cross-site") {
        return false;
    }
    let Some(origin) = parts.headers.get(axum::http::header::ORIGIN) else {
        return true;
    };
    let host = header("host").or_else(|| parts.uri.authority().map(|a| a.as_str()));
    let (Ok(origin), Some(host)) = (origin.to_str(), host) else {
        return false;
    };
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let Some(origin_host) = url.host_str() else {
        return false;
    };
    let default_port = match url.scheme() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let port = url.port().unwrap_or(default_port);
    let with_port = format!("{origin_host}:{port}");
    host.eq_ignore_ascii_case(&with_port)
        || (url.port().is_none() && host.eq_ignore_ascii_case(origin_host))
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signed-in browser: the user and the session's CSRF token. Pages without one redirect to
/// the sign-in page.
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let secure = over_https(state, &parts.headers);
        session(state, parts)
            .await?
            .ok_or_else(|| to_sign_in(secure))
    }
}

/// The request's session, through the one gate every route takes (`auth::authenticate`: the
/// blocked-address check, the failed-authentication count and the token's rate limit). `None`
/// when there is no valid session; other refusals (429) come back as their answer.
async fn session(state: &AppState, parts: &Parts) -> Result<Option<Session>, Response> {
    let no_token = |_| async { Ok::<Option<Caller>, ApiError>(None) };
    match authenticate(state, parts, Accept::Page, no_token, |c| c).await {
        Ok(Authenticated::Session { caller, csrf }) => Ok(Some(Session { caller, csrf })),
        Ok(Authenticated::Token(_)) | Err(ApiError::Unauthorized(_)) => Ok(None),
        Err(e) => Err(e.into_response()),
    }
}

/// The way to the sign-in page, forgetting a session cookie that no longer opens a session.
fn to_sign_in(secure: bool) -> Response {
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .append(SET_COOKIE, cookie_header(SESSION_COOKIE, "", 0, secure));
    resp
}

/// A cookie of the web UI: HttpOnly, SameSite=Strict, and Secure when the request came over
/// HTTPS (see [`over_https`]).
fn cookie_header(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn home(State(state): State<AppState>, parts: Parts) -> Response {
    match session(&state, &parts).await {
        Ok(Some(Session { caller, .. })) => match state.store.workspaces_of(caller.user_id).await {
            Ok(list) => match list.first() {
                Some(ws) => Redirect::to(&format!("/w/{}", ws.name)).into_response(),
                None => pages::no_workspace(&caller).into_response(),
            },
            Err(e) => ApiError::from(e).into_response(),
        },
        Ok(None) => to_sign_in(over_https(&state, &parts.headers)),
        Err(resp) => resp,
    }
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let csrf = random_token();
    let mut resp = pages::login(&csrf, None).into_response();
    resp.headers_mut().append(
        SET_COOKIE,
        cookie_header(LOGIN_CSRF_COOKIE, &csrf, 3600, over_https(&state, &headers)),
    );
    resp
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    csrf: String,
}

async fn login(
    State(state): State<AppState>,
    parts: Parts,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let expected = cookie(&parts, LOGIN_CSRF_COOKIE);
    let secure = over_https(&state, &parts.headers);
    let retry = |message: &str, status: StatusCode| {
        let csrf = random_token();
        let mut resp = (status, pages::login(&csrf, Some(message))).into_response();
        resp.headers_mut().append(
            SET_COOKIE,
            cookie_header(LOGIN_CSRF_COOKIE, &csrf, 3600, secure),
        );
        resp
    };
    if !same_origin(&parts) {
        return retry(
            "This sign-in came from another site's page. Sign in from Berth's own page.",
            StatusCode::FORBIDDEN,
        );
    }
    if expected.as_deref() != Some(form.csrf.as_str()) || form.csrf.is_empty() {
        return retry(
            "The sign-in form expired. Please try again.",
            StatusCode::FORBIDDEN,
        );
    }
    let caller = match authenticate_sign_in(&state, &parts, &form.token).await {
        Ok(c) => c,
        Err(ApiError::Unauthorized(_)) => {
            return retry("That token is not valid.", StatusCode::UNAUTHORIZED);
        }
        Err(ApiError::RateLimited { .. }) => {
            return retry(
                "Too many failed sign-ins from this address. Please wait a minute.",
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        Err(e) => return e.into_response(),
    };
    let session_id = random_token();
    let csrf = random_token();
    let expires = now_micros() + SESSION_HOURS * 3600 * 1_000_000;
    if let Err(e) = state
        .store
        .create_session(&hash_token(&session_id), &caller, &csrf, expires)
        .await
    {
        return ApiError::from(e).into_response();
    }
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut().append(
        SET_COOKIE,
        cookie_header(SESSION_COOKIE, &session_id, SESSION_HOURS * 3600, secure),
    );
    resp.headers_mut()
        .append(SET_COOKIE, cookie_header(LOGIN_CSRF_COOKIE, "", 0, secure));
    resp
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LogoutForm>,
) -> Response {
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    parts.headers = headers;
    if form.csrf != session.csrf || !same_origin(&parts) {
        return (
            StatusCode::FORBIDDEN,
            "wrong CSRF token or a foreign origin",
        )
            .into_response();
    }
    let secure = over_https(&state, &parts.headers);
    if let Some(id) = cookie(&parts, SESSION_COOKIE) {
        let _ = state.store.delete_session(&hash_token(&id)).await;
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .append(SET_COOKIE, cookie_header(SESSION_COOKIE, "", 0, secure));
    resp
}

#[derive(Deserialize)]
struct RegistryQuery {
    name: Option<String>,
}

async fn registry_page(
    State(state): State<AppState>,
    session: Session,
    Path(ws): Path<String>,
    Query(q): Query<RegistryQuery>,
) -> Result<Response, ApiError> {
    let ws = crate::api::auth::workspace(&state, &session.caller, &ws).await?;
    let workspaces = state.store.workspaces_of(session.caller.user_id).await?;
    let models = state
        .store
        .list_models(ws.id, None, q.name.as_deref(), 500)
        .await?;
    Ok(pages::registry(&session, &workspaces, &ws, &models, q.name.as_deref()).into_response())
}

#[derive(Deserialize)]
struct ModelQuery {
    tab: Option<String>,
}

async fn model_page(
    State(state): State<AppState>,
    session: Session,
    Path((ws, model)): Path<(String, String)>,
    Query(q): Query<ModelQuery>,
) -> Result<Response, ApiError> {
    let ws = crate::api::auth::workspace(&state, &session.caller, &ws).await?;
    let (mref, m) = crate::api::auth::model(&state, &ws, &model).await?;
    let workspaces = state.store.workspaces_of(session.caller.user_id).await?;
    let tab = if q.tab.as_deref() == Some("webhooks") {
        pages::Tab::Webhooks
    } else {
        pages::Tab::Versions
    };
    let data = match tab {
        pages::Tab::Versions => pages::TabData::Versions {
            versions: state.store.list_versions(mref.model_id, None, 500).await?,
            statuses: state.store.statuses(ws.id).await?,
            pending: state
                .store
                .list_workspace_requests(ws.id, Some("pending"), None, 500)
                .await?
                .into_iter()
                .filter(|r| r.model_name == m.name)
                .collect(),
        },
        pages::Tab::Webhooks => pages::TabData::Webhooks {
            webhooks: state.store.list_webhooks(mref.model_id).await?,
        },
    };
    Ok(pages::model(&session, &workspaces, &ws, &m, tab, &data).into_response())
}

#[derive(Deserialize)]
struct DeliveriesQuery {
    state: Option<String>,
}

async fn deliveries_page(
    State(state): State<AppState>,
    session: Session,
    Path((ws, model, id)): Path<(String, String, String)>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Response, ApiError> {
    let ws = crate::api::auth::workspace(&state, &session.caller, &ws).await?;
    let (mref, m) = crate::api::auth::model(&state, &ws, &model).await?;
    let hook = state
        .store
        .get_webhook(mref.model_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    let filter = q
        .state
        .and_then(|s| crate::domain::DeliveryState::parse("state", &s).ok());
    let deliveries = state
        .store
        .list_deliveries(&hook.id, filter, None, 200)
        .await?;
    let now = now_micros();
    let outcomes = state
        .store
        .attempt_outcomes(&hook.id, now - 24 * 3600 * 1_000_000)
        .await?;
    let workspaces = state.store.workspaces_of(session.caller.user_id).await?;
    Ok(pages::deliveries(
        &session,
        &workspaces,
        &ws,
        &m,
        &hook,
        &deliveries,
        &pages::hourly(&outcomes, now),
        filter.map(crate::domain::DeliveryState::as_str),
    )
    .into_response())
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

async fn app_js() -> Response {
    asset(
        include_str!("../../static/app.js"),
        "text/javascript; charset=utf-8",
    )
}

async fn app_css() -> Response {
    asset(
        include_str!("../../static/app.css"),
        "text/css; charset=utf-8",
    )
}

async fn favicon() -> Response {
    asset(include_str!("../../static/favicon.svg"), "image/svg+xml")
}
