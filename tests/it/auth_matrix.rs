//! The authorization matrix: every operation of the committed `openapi.json` × every kind of
//! caller, with the status each must get. An operation missing from the table fails the test,
//! so an endpoint added later forces this table to be updated.
//!
//! A non-member must get 404 and learn nothing: for every workspace-scoped operation its answer
//! is compared with the answers for a missing workspace and for a missing model, version,
//! webhook, delivery or request; status and body must be identical.
//!
//! Test Webhook and redelivery only ever reach the loopback [`TestReceiver`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method;
use serde_json::{Value, json};

use berth::config::{RateLimitSettings, Settings};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, TestReceiver};

conformance!(every_operation_answers_every_caller_as_the_table_says);
conformance!(every_operation_is_rate_limited);

/// The kinds of caller, in the order of each row's statuses.
const ROLES: [&str; 7] = [
    "no token",
    "bad token",
    "revoked token",
    "non-member",
    "member",
    "workspace admin",
    "server admin",
];

/// No authentication needed.
const fn public(ok: u16) -> [u16; 7] {
    [ok; 7]
}

/// Any authenticated user.
const fn authed(ok: u16) -> [u16; 7] {
    [401, 401, 401, ok, ok, ok, ok]
}

/// Server admins only (the others are authenticated, so 403).
const fn server_admin(ok: u16) -> [u16; 7] {
    [401, 401, 401, 403, 403, 403, ok]
}

/// The member's own tokens (the path names the member): the member and server admins.
const fn own_tokens(ok: u16) -> [u16; 7] {
    [401, 401, 401, 403, ok, 403, ok]
}

/// Readable by any member of the workspace; a non-member gets 404.
const fn member(ok: u16) -> [u16; 7] {
    [401, 401, 401, 404, ok, ok, ok]
}

/// Workspace admins (and server admins); a member gets 403, a non-member 404.
const fn ws_admin(ok: u16) -> [u16; 7] {
    [401, 401, 401, 404, 403, ok, ok]
}

/// Every operation, with the status each kind of caller gets.
const TABLE: &[(&str, &str, [u16; 7])] = &[
    ("GET", "/healthz", public(200)),
    ("GET", "/readyz", public(200)),
    ("GET", "/metrics", public(200)),
    ("GET", "/api/v1/me", authed(200)),
    ("POST", "/api/v1/users", server_admin(201)),
    ("GET", "/api/v1/users/{username}/tokens", own_tokens(200)),
    ("POST", "/api/v1/users/{username}/tokens", own_tokens(201)),
    (
        "DELETE",
        "/api/v1/users/{username}/tokens/{id}",
        own_tokens(204),
    ),
    ("GET", "/api/v1/workspaces", authed(200)),
    ("POST", "/api/v1/workspaces", server_admin(201)),
    ("GET", "/api/v1/workspaces/{ws}", member(200)),
    ("GET", "/api/v1/workspaces/{ws}/events", member(200)),
    ("GET", "/api/v1/workspaces/{ws}/members", member(200)),
    (
        "PUT",
        "/api/v1/workspaces/{ws}/members/{username}",
        ws_admin(200),
    ),
    (
        "DELETE",
        "/api/v1/workspaces/{ws}/members/{username}",
        ws_admin(204),
    ),
    ("GET", "/api/v1/workspaces/{ws}/statuses", member(200)),
    ("PUT", "/api/v1/workspaces/{ws}/statuses", ws_admin(200)),
    ("GET", "/api/v1/workspaces/{ws}/models", member(200)),
    ("POST", "/api/v1/workspaces/{ws}/models", member(201)),
    ("GET", "/api/v1/workspaces/{ws}/models/{model}", member(200)),
    (
        "PATCH",
        "/api/v1/workspaces/{ws}/models/{model}",
        member(200),
    ),
    (
        "DELETE",
        "/api/v1/workspaces/{ws}/models/{model}",
        ws_admin(204),
    ),
    (
        "GET",
        "/api/v1/workspaces/{ws}/models/{model}/versions",
        member(200),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/models/{model}/versions",
        member(201),
    ),
    (
        "GET",
        "/api/v1/workspaces/{ws}/models/{model}/versions/{version}",
        member(200),
    ),
    (
        "DELETE",
        "/api/v1/workspaces/{ws}/models/{model}/versions/{version}",
        ws_admin(204),
    ),
    (
        "PUT",
        "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status",
        member(200),
    ),
    (
        "PATCH",
        "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/tags",
        member(200),
    ),
    (
        "GET",
        "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status-requests",
        member(200),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status-requests",
        member(201),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status-requests/{id}/approve",
        ws_admin(200),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status-requests/{id}/reject",
        ws_admin(200),
    ),
    (
        "GET",
        "/api/v1/workspaces/{ws}/status-requests",
        member(200),
    ),
    (
        "GET",
        "/api/v1/workspaces/{ws}/status-requests/{id}",
        member(200),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/status-requests/{id}/approve",
        ws_admin(200),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/status-requests/{id}/reject",
        ws_admin(200),
    ),
    (
        "GET",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks",
        member(200),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks",
        ws_admin(201),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks/test",
        ws_admin(200),
    ),
    (
        "GET",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}",
        member(200),
    ),
    (
        "PUT",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}",
        ws_admin(200),
    ),
    (
        "DELETE",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}",
        ws_admin(204),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/test",
        ws_admin(200),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/enable",
        ws_admin(200),
    ),
    ("GET", "/api/v1/workspaces/{ws}/audit", ws_admin(200)),
    (
        "GET",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/signing-secret",
        ws_admin(200),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/signing-secret/rotate",
        ws_admin(200),
    ),
    (
        "GET",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/deliveries",
        member(200),
    ),
    (
        "GET",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/deliveries/{deliveryId}",
        member(200),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/deliveries/{deliveryId}/redeliver",
        ws_admin(202),
    ),
    (
        "POST",
        "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/replay",
        ws_admin(202),
    ),
    ("GET", "/api/rest/v2/webhooks/config", member(200)),
    ("POST", "/api/rest/v2/webhooks/config", ws_admin(200)),
];

/// The workspace every row works in, and what stands for a missing one.
const WS: &str = "w";
const MISSING: &str = "zz-missing";

/// The fixtures and callers.
struct Ctx {
    app: TestApp,
    receiver: TestReceiver,
    /// Tokens by role (index into `ROLES`); `None` sends no `Authorization` header.
    tokens: Vec<Option<String>>,
    hook_id: String,
    delivery_id: String,
    /// The id of the member's revoked token.
    revoked_id: String,
    fresh: AtomicUsize,
}

/// One concrete request: path (with query) and JSON body.
#[derive(Debug, Clone)]
struct Req {
    path: String,
    body: Option<Value>,
}

impl Ctx {
    fn next(&self) -> usize {
        self.fresh.fetch_add(1, Ordering::Relaxed)
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (s, b) = self
            .app
            .call(method.clone(), path, Some(ADMIN_TOKEN), body)
            .await;
        assert!(s.is_success(), "fixture {method} {path}: {s} {b}");
        b
    }

    async fn fresh_model(&self) -> String {
        let name = format!("fm{}", self.next());
        self.app.model(WS, &name).await;
        name
    }

    async fn fresh_version(&self) -> String {
        let v = format!("3.0.{}", self.next());
        self.app.version(WS, "m", json!({ "version": v })).await;
        v
    }

    /// A fresh version with a pending request for Production; answers (version, request id).
    async fn fresh_request(&self) -> (String, String) {
        let v = self.fresh_version().await;
        let b = self
            .ok(
                Method::POST,
                &format!("/api/v1/workspaces/{WS}/models/m/versions/{v}/status-requests"),
                Some(json!({"status": "Production"})),
            )
            .await;
        (v, b["id"].as_str().expect("request id").to_owned())
    }

    async fn fresh_webhook(&self) -> String {
        let b = self
            .ok(
                Method::POST,
                &format!("/api/v1/workspaces/{WS}/models/m/webhooks"),
                Some(self.hook_body(&format!("fh{}", self.next()))),
            )
            .await;
        b["id"].as_str().expect("webhook id").to_owned()
    }

    async fn fresh_user(&self) -> String {
        let name = format!("fu{}", self.next());
        let (s, b) = self
            .app
            .post(ADMIN_TOKEN, "/api/v1/users", json!({ "username": name }))
            .await;
        assert_eq!(s.as_u16(), 201, "{b}");
        name
    }

    fn hook_body(&self, name: &str) -> Value {
        json!({"name": name, "url": self.receiver_url(),
               "triggers": ["MODEL_VERSION_CREATED"]})
    }

    fn receiver_url(&self) -> String {
        format!("{}/matrix", self.receiver.url)
    }

    /// The concrete request for one call of an operation, with fresh fixtures where the call
    /// changes or consumes what it acts on.
    async fn prepare(&self, method: &str, template: &str) -> Req {
        let ws = format!("/api/v1/workspaces/{WS}");
        let hooks = format!("{ws}/models/m/webhooks");
        let hook = format!("{hooks}/{}", self.hook_id);
        let req = |path: String, body: Option<Value>| Req { path, body };
        match (method, template) {
            ("GET", "/healthz" | "/readyz" | "/metrics" | "/api/v1/me" | "/api/v1/workspaces") => {
                req(template.to_owned(), None)
            }
            ("POST", "/api/v1/users") => req(
                template.into(),
                Some(json!({"username": format!("nu{}", self.next())})),
            ),
            ("GET" | "POST", "/api/v1/users/{username}/tokens") => {
                req("/api/v1/users/member/tokens".into(), None)
            }
            ("DELETE", "/api/v1/users/{username}/tokens/{id}") => {
                let b = self
                    .ok(Method::POST, "/api/v1/users/member/tokens", None)
                    .await;
                let id = b["id"].as_str().expect("token id");
                req(format!("/api/v1/users/member/tokens/{id}"), None)
            }
            ("POST", "/api/v1/workspaces") => req(
                template.into(),
                Some(json!({"name": format!("nw{}", self.next())})),
            ),
            ("GET", "/api/v1/workspaces/{ws}") => req(ws, None),
            ("GET", "/api/v1/workspaces/{ws}/events") => req(format!("{ws}/events?limit=2"), None),
            ("GET", "/api/v1/workspaces/{ws}/members") => req(format!("{ws}/members"), None),
            ("PUT", "/api/v1/workspaces/{ws}/members/{username}") => {
                let user = self.fresh_user().await;
                req(
                    format!("{ws}/members/{user}"),
                    Some(json!({"role": "member"})),
                )
            }
            ("DELETE", "/api/v1/workspaces/{ws}/members/{username}") => {
                let user = self.fresh_user().await;
                self.app.add_member(WS, &user, "member").await;
                req(format!("{ws}/members/{user}"), None)
            }
            ("GET", "/api/v1/workspaces/{ws}/statuses") => req(format!("{ws}/statuses"), None),
            ("PUT", "/api/v1/workspaces/{ws}/statuses") => req(
                format!("{ws}/statuses"),
                Some(json!({"statuses": [
                    {"name": "Development", "reviewRequired": false},
                    {"name": "Staging", "reviewRequired": false},
                    {"name": "Production", "reviewRequired": true},
                ]})),
            ),
            ("GET", "/api/v1/workspaces/{ws}/models") => req(format!("{ws}/models"), None),
            ("POST", "/api/v1/workspaces/{ws}/models") => req(
                format!("{ws}/models"),
                Some(json!({"name": format!("nm{}", self.next())})),
            ),
            ("GET", "/api/v1/workspaces/{ws}/models/{model}") => {
                req(format!("{ws}/models/m"), None)
            }
            ("PATCH", "/api/v1/workspaces/{ws}/models/{model}") => req(
                format!("{ws}/models/m"),
                Some(json!({"description": format!("d{}", self.next())})),
            ),
            ("DELETE", "/api/v1/workspaces/{ws}/models/{model}") => {
                let m = self.fresh_model().await;
                req(format!("{ws}/models/{m}"), None)
            }
            ("GET", "/api/v1/workspaces/{ws}/models/{model}/versions") => {
                req(format!("{ws}/models/m/versions"), None)
            }
            ("POST", "/api/v1/workspaces/{ws}/models/{model}/versions") => req(
                format!("{ws}/models/m/versions"),
                Some(json!({"version": format!("4.0.{}", self.next())})),
            ),
            ("GET", "/api/v1/workspaces/{ws}/models/{model}/versions/{version}") => {
                req(format!("{ws}/models/m/versions/1.0.0"), None)
            }
            ("DELETE", "/api/v1/workspaces/{ws}/models/{model}/versions/{version}") => {
                let v = self.fresh_version().await;
                req(format!("{ws}/models/m/versions/{v}"), None)
            }
            ("PUT", "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status") => req(
                format!("{ws}/models/m/versions/1.0.0/status"),
                Some(json!({"status": "Staging"})),
            ),
            ("PATCH", "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/tags") => req(
                format!("{ws}/models/m/versions/1.0.0/tags"),
                Some(json!({"add": ["matrix"]})),
            ),
            (
                "GET",
                "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status-requests",
            ) => req(
                format!("{ws}/models/m/versions/1.0.0/status-requests"),
                None,
            ),
            (
                "POST",
                "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status-requests",
            ) => {
                let v = self.fresh_version().await;
                req(
                    format!("{ws}/models/m/versions/{v}/status-requests"),
                    Some(json!({"status": "Production", "comment": "matrix"})),
                )
            }
            (
                "POST",
                "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status-requests/{id}/approve",
            ) => {
                let (v, id) = self.fresh_request().await;
                req(
                    format!("{ws}/models/m/versions/{v}/status-requests/{id}/approve"),
                    None,
                )
            }
            (
                "POST",
                "/api/v1/workspaces/{ws}/models/{model}/versions/{version}/status-requests/{id}/reject",
            ) => {
                let (v, id) = self.fresh_request().await;
                req(
                    format!("{ws}/models/m/versions/{v}/status-requests/{id}/reject"),
                    None,
                )
            }
            ("GET", "/api/v1/workspaces/{ws}/status-requests") => {
                req(format!("{ws}/status-requests"), None)
            }
            ("GET", "/api/v1/workspaces/{ws}/status-requests/{id}") => {
                let (_, id) = self.fresh_request().await;
                req(format!("{ws}/status-requests/{id}"), None)
            }
            ("POST", "/api/v1/workspaces/{ws}/status-requests/{id}/approve") => {
                let (_, id) = self.fresh_request().await;
                req(format!("{ws}/status-requests/{id}/approve"), None)
            }
            ("POST", "/api/v1/workspaces/{ws}/status-requests/{id}/reject") => {
                let (_, id) = self.fresh_request().await;
                req(format!("{ws}/status-requests/{id}/reject"), None)
            }
            ("GET", "/api/v1/workspaces/{ws}/models/{model}/webhooks") => req(hooks, None),
            ("POST", "/api/v1/workspaces/{ws}/models/{model}/webhooks") => {
                let body = self.hook_body(&format!("nh{}", self.next()));
                req(hooks, Some(body))
            }
            ("POST", "/api/v1/workspaces/{ws}/models/{model}/webhooks/test") => req(
                format!("{hooks}/test"),
                Some(json!({"url": self.receiver_url()})),
            ),
            ("GET", "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}") => req(hook, None),
            ("PUT", "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}") => {
                req(hook, Some(self.hook_body("matrix-hook")))
            }
            ("DELETE", "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}") => {
                let id = self.fresh_webhook().await;
                req(format!("{hooks}/{id}"), None)
            }
            ("POST", "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/test") => {
                req(format!("{hook}/test"), None)
            }
            ("POST", "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/enable") => {
                req(format!("{hook}/enable"), None)
            }
            ("GET", "/api/v1/workspaces/{ws}/audit") => req(format!("{ws}/audit"), None),
            ("GET", "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/signing-secret") => {
                req(format!("{hook}/signing-secret"), None)
            }
            (
                "POST",
                "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/signing-secret/rotate",
            ) => req(format!("{hook}/signing-secret/rotate"), None),
            ("GET", "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/deliveries") => {
                req(format!("{hook}/deliveries"), None)
            }
            (
                "GET",
                "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/deliveries/{deliveryId}",
            ) => req(format!("{hook}/deliveries/{}", self.delivery_id), None),
            (
                "POST",
                "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/deliveries/{deliveryId}/redeliver",
            ) => req(
                format!("{hook}/deliveries/{}/redeliver", self.delivery_id),
                None,
            ),
            ("POST", "/api/v1/workspaces/{ws}/models/{model}/webhooks/{id}/replay") => req(
                format!("{hook}/replay"),
                Some(json!({"since": "2020-01-01T00:00:00Z"})),
            ),
            ("GET", "/api/rest/v2/webhooks/config") => req(
                format!("/api/rest/v2/webhooks/config?workspaceName={WS}&modelName=m"),
                None,
            ),
            ("POST", "/api/rest/v2/webhooks/config") => req(
                template.into(),
                Some(
                    json!({"webhookConfigs": [{"workspaceName": WS, "modelName": "m",
                    "webhookUrls": [{"name": "comet", "url": self.receiver_url(),
                                     "triggers": ["MODEL_VERSION_CREATED"]}]}]}),
                ),
            ),
            _ => panic!("auth matrix: no request for {method} {template}: add one to `prepare`"),
        }
    }

    /// Sends a request as the caller of `role`; answers the status and the body (JSON, or the
    /// text as a JSON string).
    async fn send(&self, role: usize, method: &str, req: &Req) -> (u16, Value) {
        self.send_as(self.tokens[role].as_deref(), None, method, req)
            .await
    }

    /// Sends a request with `token` as its bearer token, or `session` as its session cookie
    /// (with the session's CSRF token taken as sent: a rate limit comes first).
    async fn send_as(
        &self,
        token: Option<&str>,
        session: Option<&str>,
        method: &str,
        req: &Req,
    ) -> (u16, Value) {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut r = self
            .app
            .client
            .request(method, format!("{}{}", self.app.base, req.path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(id) = session {
            r = r.header("cookie", format!("berth_session={id}"));
        }
        if let Some(b) = &req.body {
            r = r.json(b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }
}

/// The same request aimed at things that do not exist: the workspace, and the innermost
/// object the path (or the Comet body or query) names.
fn missing_variants(template: &str, req: &Req) -> Vec<Req> {
    let mut out = Vec::new();
    let ws_seg = format!("/workspaces/{WS}");
    if req.path.contains(&ws_seg) {
        out.push(Req {
            path: req
                .path
                .replacen(&ws_seg, &format!("/workspaces/{MISSING}"), 1),
            body: req.body.clone(),
        });
    }
    if req.path.contains("workspaceName=") {
        out.push(Req {
            path: req.path.replace(
                &format!("workspaceName={WS}"),
                &format!("workspaceName={MISSING}"),
            ),
            body: None,
        });
        out.push(Req {
            path: req
                .path
                .replace("modelName=m", &format!("modelName={MISSING}")),
            body: None,
        });
    }
    if let Some(body) = &req.body
        && body.get("webhookConfigs").is_some()
    {
        for (key, value) in [("workspaceName", MISSING), ("modelName", MISSING)] {
            let mut b = body.clone();
            b["webhookConfigs"][0][key] = json!(value);
            out.push(Req {
                path: req.path.clone(),
                body: Some(b),
            });
        }
    }
    // The innermost path parameter below the workspace, replaced by a missing value of the
    // right form.
    let t: Vec<&str> = template.split('/').collect();
    let mut p: Vec<String> = req
        .path
        .split('?')
        .next()
        .unwrap_or_default()
        .split('/')
        .map(str::to_owned)
        .collect();
    if t.len() == p.len()
        && let Some(i) = t.iter().rposition(|s| s.starts_with('{') && *s != "{ws}")
    {
        p[i] = match t[i] {
            "{version}" => "9.9.9".into(),
            "{model}" | "{username}" => MISSING.into(),
            _ => uuid::Uuid::now_v7().to_string(),
        };
        let query = req.path.split_once('?').map(|(_, q)| format!("?{q}"));
        out.push(Req {
            path: format!("{}{}", p.join("/"), query.unwrap_or_default()),
            body: req.body.clone(),
        });
    }
    out
}

/// Every operation of the committed document, as (METHOD, path).
fn documented_operations() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"))
        .expect("read openapi.json");
    let doc: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in [
            "get", "put", "post", "delete", "patch", "head", "options", "trace",
        ] {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

async fn every_operation_answers_every_caller_as_the_table_says(backend: Backend) {
    // The table covers exactly the documented operations.
    let documented = documented_operations();
    let tabled: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        TABLE.len(),
        tabled.len(),
        "an operation is in the table twice"
    );
    let missing: Vec<_> = documented.difference(&tabled).collect();
    assert!(
        missing.is_empty(),
        "operations in openapi.json missing from the auth matrix (add them to TABLE): {missing:?}"
    );
    let extra: Vec<_> = tabled.difference(&documented).collect();
    assert!(
        extra.is_empty(),
        "TABLE rows not in openapi.json: {extra:?}"
    );

    let ctx = setup(backend, |_| {}).await;
    let revoked_id = ctx.revoked_id.clone();

    let mut failures = Vec::new();
    for (method, template, expected) in TABLE {
        for (role, want) in expected.iter().enumerate() {
            let req = ctx.prepare(method, template).await;
            let (got, body) = ctx.send(role, method, &req).await;
            if got != *want {
                failures.push(format!(
                    "{method} {template} as {}: expected {want}, got {got} {body}",
                    ROLES[role]
                ));
                continue;
            }
            if got >= 400 && !(body["error"]["code"].is_string()) {
                failures.push(format!(
                    "{method} {template} as {}: {got} without the error shape: {body}",
                    ROLES[role]
                ));
            }
            // A non-member learns nothing: a missing workspace or object looks the same.
            if ROLES[role] == "non-member" && got == 404 {
                for variant in missing_variants(template, &req) {
                    let (s, b) = ctx.send(role, method, &variant).await;
                    if (s, &b) != (got, &body) {
                        failures.push(format!(
                            "{method} {template} as a non-member: {} answers {s} {b}, but the \
                             existing {} answers {got} {body}",
                            variant.path, req.path
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the auth matrix's expectations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Tokens are listed without their values; the revoked one says so.
    let (s, list) = ctx
        .app
        .get(ADMIN_TOKEN, "/api/v1/users/member/tokens")
        .await;
    assert_eq!(s.as_u16(), 200, "{list}");
    let items = list["items"].as_array().expect("items");
    assert!(items.iter().all(|t| t.get("token").is_none()), "{list}");
    assert!(
        items
            .iter()
            .any(|t| t["id"] == json!(revoked_id) && t["revokedAt"].is_string()),
        "{list}"
    );
    // Outbound requests reached only the loopback receiver.
    for r in ctx.receiver.received() {
        assert!(r.path.starts_with("/matrix"), "receiver got {}", r.path);
    }
    assert!(
        !ctx.receiver.received().is_empty(),
        "Test Webhook reached the receiver"
    );
    ctx.app.stop().await;
}

/// The fixtures of the matrix: a workspace with a model, a member, a workspace admin, an
/// outsider, a revoked token, a webhook to the loopback receiver and one delivery. `tune`
/// adjusts the server's settings first.
async fn setup(backend: Backend, tune: impl FnOnce(&mut Settings)) -> Ctx {
    let receiver = TestReceiver::start().await;
    assert!(receiver.url.starts_with("http://127.0.0.1:"));
    let app = TestApp::spawn_with(backend, tune).await;
    app.workspace(WS).await;
    app.model(WS, "m").await;
    let member = app.user("member").await;
    let ws_admin = app.user("wsadmin").await;
    let outsider = app.user("outsider").await;
    app.add_member(WS, "member", "member").await;
    app.add_member(WS, "wsadmin", "admin").await;
    // A revoked token of the member.
    let (s, b) = app
        .post_empty(ADMIN_TOKEN, "/api/v1/users/member/tokens")
        .await;
    assert_eq!(s.as_u16(), 201, "{b}");
    let revoked = b["token"].as_str().expect("token").to_owned();
    let revoked_id = b["id"].as_str().expect("id").to_owned();
    let (s, b) = app
        .delete(
            ADMIN_TOKEN,
            &format!("/api/v1/users/member/tokens/{revoked_id}"),
        )
        .await;
    assert_eq!(s.as_u16(), 204, "{b}");
    // A webhook to the receiver, and a delivery for it.
    let (s, hook) = app
        .post(
            ADMIN_TOKEN,
            &format!("/api/v1/workspaces/{WS}/models/m/webhooks"),
            json!({"name": "matrix-hook", "url": format!("{}/matrix", receiver.url),
                   "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    assert_eq!(s.as_u16(), 201, "{hook}");
    let hook_id = hook["id"].as_str().expect("id").to_owned();
    app.version(WS, "m", json!({"version": "1.0.0"})).await;
    let _ = app.worker.run_once().await;
    let (s, list) = app
        .get(
            ADMIN_TOKEN,
            &format!("/api/v1/workspaces/{WS}/models/m/webhooks/{hook_id}/deliveries"),
        )
        .await;
    assert_eq!(s.as_u16(), 200, "{list}");
    let delivery_id = list["items"][0]["id"]
        .as_str()
        .expect("a delivery")
        .to_owned();

    Ctx {
        app,
        receiver,
        tokens: vec![
            None,
            Some("berth_not_a_real_token_at_all_000000".into()),
            Some(revoked),
            Some(outsider),
            Some(member),
            Some(ws_admin),
            Some(ADMIN_TOKEN.into()),
        ],
        hook_id,
        delivery_id,
        revoked_id,
        fresh: AtomicUsize::new(0),
    }
}

/// The rate-limit column of the matrix: every documented operation that needs authentication
/// answers 429 for a token over its rate (as a bearer token and as the session opened with it)
/// and for a client address blocked after too many failed authentications, whatever token it
/// then sends; the public ones (`public(…)` in the table: health and metrics, for load
/// balancers and scrapers) are not limited. The web UI's pages take the same gate. The
/// limiters' clock is paused, so no budget refills during the sweep however slow the machine.
async fn every_operation_is_rate_limited(backend: Backend) {
    let ctx = setup(backend, |s: &mut Settings| {
        s.rate_limit = RateLimitSettings {
            per_second: 1,
            burst: 5000,
            auth_failures_per_minute: 3,
        };
    })
    .await;
    // A second token of the server admin, and a session opened with it: exhausted below.
    let (s, b) = ctx
        .app
        .post_empty(ADMIN_TOKEN, "/api/v1/users/admin/tokens")
        .await;
    assert_eq!(s.as_u16(), 201, "{b}");
    let spent = b["token"].as_str().expect("token").to_owned();
    let spent_id = b["id"].as_str().expect("id").to_owned();
    let session = ctx.app.sign_in(&spent).await;
    // Two requests of each operation, prepared while nothing is limited yet.
    let mut ops = Vec::new();
    for (method, template, expected) in TABLE {
        let public = *expected == public(expected[0]);
        let first = ctx.prepare(method, template).await;
        let second = ctx.prepare(method, template).await;
        ops.push((*method, *template, public, first, second));
    }
    let pages = ["/w/w", "/w/w/m/m", "/w/w/audit", "/"];

    ctx.app.limits.pause_clock();
    while ctx.app.limits.check_token(&spent_id).is_ok() {}
    let mut failures = Vec::new();
    let mut expect = |what: String, got: (u16, Value), public: bool, about: &str| {
        let (status, body) = got;
        if public {
            if status == 429 {
                failures.push(format!("{what}: a public operation answered 429"));
            }
        } else if status != 429
            || body["error"]["code"] != json!("rate_limited")
            || !body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(about)
        {
            failures.push(format!(
                "{what}: expected 429 about {about}, got {status} {body}"
            ));
        }
    };
    for (method, template, public, req, _) in &ops {
        let got = ctx.send_as(Some(&spent), None, method, req).await;
        expect(
            format!("{method} {template} with a spent token"),
            got,
            *public,
            "token",
        );
        if !template.starts_with("/api/rest/") {
            let got = ctx.send_as(None, Some(&session), method, req).await;
            expect(
                format!("{method} {template} in a spent session"),
                got,
                *public,
                "token",
            );
        }
    }
    for page in pages {
        let req = Req {
            path: page.into(),
            body: None,
        };
        let got = ctx.send_as(None, Some(&session), "GET", &req).await;
        expect(
            format!("page {page} in a spent session"),
            got,
            false,
            "token",
        );
    }

    // Three failed authentications are allowed; the fourth blocks the address (127.0.0.1,
    // every request of this test).
    let bad = Req {
        path: "/api/v1/me".into(),
        body: None,
    };
    for _ in 0..3 {
        let (s, b) = ctx.send_as(Some("berth_wrong"), None, "GET", &bad).await;
        assert_eq!(s, 401, "{b}");
    }
    let (s, b) = ctx.send_as(Some("berth_wrong"), None, "GET", &bad).await;
    assert_eq!(s, 429, "{b}");
    for (method, template, public, _, req) in &ops {
        let got = ctx.send_as(Some(ADMIN_TOKEN), None, method, req).await;
        expect(
            format!("{method} {template} from a blocked address"),
            got,
            *public,
            "address",
        );
        let got = ctx.send_as(None, None, method, req).await;
        expect(
            format!("{method} {template} without a token from a blocked address"),
            got,
            *public,
            "address",
        );
    }
    for page in pages {
        let req = Req {
            path: page.into(),
            body: None,
        };
        let got = ctx.send_as(None, Some(&session), "GET", &req).await;
        expect(
            format!("page {page} from a blocked address"),
            got,
            false,
            "address",
        );
    }
    assert!(
        failures.is_empty(),
        "{} operations skipped a limit:\n{}",
        failures.len(),
        failures.join("\n")
    );
    ctx.app.stop().await;
}
