//! Auth, users, tokens, workspaces, members and role rules.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, assert_error};

conformance!(
    missing_bad_and_revoked_tokens_get_401,
    server_admin_only_endpoints,
    token_lifecycle_and_rules,
    tokens_are_not_stored_in_clear,
    me_lists_workspaces_with_roles,
    workspace_role_rules,
    server_admin_acts_as_admin_everywhere,
    member_management,
    last_admin_cannot_be_removed_or_demoted,
    last_admin_survives_concurrent_demotions,
    non_members_see_nothing_of_a_workspace,
    statuses_defaults_and_replacement,
    statuses_bad_input,
    create_user_bad_input,
    create_workspace_bad_input,
    set_member_bad_input,
    duplicates_conflict,
    workspace_list_pagination,
    workspace_list_bad_paging,
);

/// 1.1 MiB: over the 1 MiB body limit.
const BIG: usize = 1024 * 1024 + 100 * 1024;

fn default_statuses() -> Value {
    json!({"statuses": [
        {"name": "Development", "reviewRequired": false},
        {"name": "Staging", "reviewRequired": false},
        {"name": "Production", "reviewRequired": true},
    ]})
}

/// A syntactically valid JSON object of about `BIG` bytes with `key` set to `value`.
fn big_json(key: &str, value: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ key: value, "padding": "x".repeat(BIG) })).expect("json")
}

/// Sends a request with a literal `Authorization` header value (or none).
async fn with_auth_header(
    app: &TestApp,
    method: Method,
    path: &str,
    header: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.client.request(method, format!("{}{path}", app.base));
    if let Some(h) = header {
        req = req.header("authorization", h);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Creates a token for `user` as the server admin; answers (id, token).
async fn new_token(app: &TestApp, user: &str) -> (String, String) {
    let (s, b) = app
        .post_empty(ADMIN_TOKEN, &format!("/api/v1/users/{user}/tokens"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    (
        b["id"].as_str().expect("id").to_owned(),
        b["token"].as_str().expect("token").to_owned(),
    )
}

async fn members(app: &TestApp, ws: &str) -> Value {
    let (s, b) = app
        .get(ADMIN_TOKEN, &format!("/api/v1/workspaces/{ws}/members"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

/// `[(username, role)]` of a workspace, by username.
async fn member_roles(app: &TestApp, ws: &str) -> Vec<(String, String)> {
    let b = members(app, ws).await;
    let mut out: Vec<(String, String)> = b["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| {
            (
                m["username"].as_str().expect("username").to_owned(),
                m["role"].as_str().expect("role").to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    v.sort();
    v
}

async fn statuses(app: &TestApp, ws: &str) -> Value {
    let (s, b) = app
        .get(ADMIN_TOKEN, &format!("/api/v1/workspaces/{ws}/statuses"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

/// Whether user `name` exists (the server admin may create tokens for any existing user).
async fn user_exists(app: &TestApp, name: &str) -> bool {
    let (s, b) = app
        .get(ADMIN_TOKEN, &format!("/api/v1/users/{name}/tokens"))
        .await;
    match s {
        StatusCode::OK => true,
        StatusCode::NOT_FOUND => false,
        other => panic!("listing tokens of {name}: {other} {b}"),
    }
}

/// Whether workspace `name` exists (the server admin sees every workspace).
async fn workspace_exists(app: &TestApp, name: &str) -> bool {
    let (s, b) = app
        .get(ADMIN_TOKEN, &format!("/api/v1/workspaces/{name}"))
        .await;
    match s {
        StatusCode::OK => true,
        StatusCode::NOT_FOUND => false,
        other => panic!("getting workspace {name}: {other} {b}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication

async fn missing_bad_and_revoked_tokens_get_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    let _alice = app.user("alice").await;
    app.add_member("acme", "alice", "member").await;
    let (revoked_id, revoked) = new_token(&app, "alice").await;
    let (s, b) = app
        .delete(
            ADMIN_TOKEN,
            &format!("/api/v1/users/alice/tokens/{revoked_id}"),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");

    let bearer_revoked = format!("Bearer {revoked}");
    let bearer_admin_typo = format!("Bearer {ADMIN_TOKEN}x");
    let basic_admin = format!("Basic {ADMIN_TOKEN}");
    let headers: [(&str, Option<&str>); 7] = [
        ("no header", None),
        ("empty bearer", Some("Bearer ")),
        ("unknown token", Some("Bearer berth_not_a_real_token")),
        ("admin token plus a char", Some(bearer_admin_typo.as_str())),
        ("bare token", Some(ADMIN_TOKEN)),
        ("basic scheme", Some(basic_admin.as_str())),
        ("revoked token", Some(bearer_revoked.as_str())),
    ];
    let endpoints: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/api/v1/me", None),
        (
            Method::POST,
            "/api/v1/users",
            Some(json!({"username": "eve"})),
        ),
        (Method::POST, "/api/v1/users/alice/tokens", None),
        (Method::GET, "/api/v1/users/alice/tokens", None),
        (
            Method::DELETE,
            "/api/v1/users/alice/tokens/00000000-0000-0000-0000-000000000000",
            None,
        ),
        (Method::GET, "/api/v1/workspaces", None),
        (
            Method::POST,
            "/api/v1/workspaces",
            Some(json!({"name": "evil"})),
        ),
        (Method::GET, "/api/v1/workspaces/acme", None),
        (Method::GET, "/api/v1/workspaces/acme/members", None),
        (
            Method::PUT,
            "/api/v1/workspaces/acme/members/alice",
            Some(json!({"role": "admin"})),
        ),
        (
            Method::DELETE,
            "/api/v1/workspaces/acme/members/alice",
            None,
        ),
        (Method::GET, "/api/v1/workspaces/acme/statuses", None),
        (
            Method::PUT,
            "/api/v1/workspaces/acme/statuses",
            Some(json!({"statuses": []})),
        ),
        (Method::GET, "/api/v1/workspaces/nope/members", None),
    ];
    for (label, header) in headers {
        for (method, path, body) in &endpoints {
            let got = with_auth_header(&app, method.clone(), path, header, body.clone()).await;
            assert_eq!(
                got.0,
                StatusCode::UNAUTHORIZED,
                "{label}: {method} {path}: {}",
                got.1
            );
            assert_error(&got, 401, None);
        }
    }
    // Nothing changed.
    assert!(!user_exists(&app, "eve").await);
    assert!(!workspace_exists(&app, "evil").await);
    assert_eq!(
        member_roles(&app, "acme").await,
        pairs(&[("admin", "admin"), ("alice", "member")])
    );
    assert_eq!(statuses(&app, "acme").await, default_statuses());
    app.stop().await;
}

async fn server_admin_only_endpoints(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    let plain = app.user("plain").await;
    let member = app.user("mem").await;
    let ws_admin = app.user("wsadmin").await;
    app.add_member("acme", "mem", "member").await;
    app.add_member("acme", "wsadmin", "admin").await;

    for (who, token) in [
        ("plain user", &plain),
        ("member", &member),
        ("workspace admin", &ws_admin),
    ] {
        let got = app
            .post(token, "/api/v1/users", json!({"username": "eve"}))
            .await;
        assert_eq!(
            got.0,
            StatusCode::FORBIDDEN,
            "{who}: create user: {}",
            got.1
        );
        assert_error(&got, 403, None);
        let got = app
            .post(token, "/api/v1/workspaces", json!({"name": "evil"}))
            .await;
        assert_eq!(
            got.0,
            StatusCode::FORBIDDEN,
            "{who}: create workspace: {}",
            got.1
        );
        assert_error(&got, 403, None);
    }
    assert!(!user_exists(&app, "eve").await);
    assert!(!workspace_exists(&app, "evil").await);

    // The server admin can.
    let (s, b) = app
        .post(ADMIN_TOKEN, "/api/v1/users", json!({"username": "eve"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["username"], "eve");
    assert_eq!(b["serverAdmin"], false);
    assert!(b["createdAt"].is_string(), "{b}");
    assert!(user_exists(&app, "eve").await);

    let (s, b) = app
        .post(ADMIN_TOKEN, "/api/v1/workspaces", json!({"name": "fresh"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["name"], "fresh");
    // The creator became a workspace admin.
    assert_eq!(
        member_roles(&app, "fresh").await,
        pairs(&[("admin", "admin")])
    );
    assert_eq!(statuses(&app, "fresh").await, default_statuses());
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Tokens

async fn token_lifecycle_and_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;

    // A user creates a token for themself.
    let (s, b) = app.post_empty(&alice, "/api/v1/users/alice/tokens").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let obj = b.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["createdAt", "id", "token"], "{b}");
    let second_id = b["id"].as_str().expect("id").to_owned();
    let second = b["token"].as_str().expect("token").to_owned();
    assert_ne!(second, alice);
    let (s, me) = app.get(&second, "/api/v1/me").await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "alice");

    // Someone else may not create, list or revoke alice's tokens.
    let got = app.post_empty(&bob, "/api/v1/users/alice/tokens").await;
    assert_error(&got, 403, None);
    let got = app.get(&bob, "/api/v1/users/alice/tokens").await;
    assert_error(&got, 403, None);
    let got = app
        .delete(&bob, &format!("/api/v1/users/alice/tokens/{second_id}"))
        .await;
    assert_error(&got, 403, None);
    // Nor the admin's.
    let got = app.post_empty(&alice, "/api/v1/users/admin/tokens").await;
    assert_error(&got, 403, None);
    let got = app.get(&alice, "/api/v1/users/admin/tokens").await;
    assert_error(&got, 403, None);
    // The 403s changed nothing: alice has her two tokens, both working.
    let (s, list) = app.get(&alice, "/api/v1/users/alice/tokens").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["items"].as_array().expect("items").len(), 2, "{list}");
    assert_eq!(app.get(&second, "/api/v1/me").await.0, StatusCode::OK);

    // The server admin may create a token for anyone.
    let (s, b) = app
        .post_empty(ADMIN_TOKEN, "/api/v1/users/bob/tokens")
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let bob2 = b["token"].as_str().expect("token").to_owned();
    let (s, me) = app.get(&bob2, "/api/v1/me").await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "bob");

    // Listing shows ids and times, never values.
    for token in [alice.as_str(), second.as_str(), ADMIN_TOKEN] {
        let (s, list) = app.get(token, "/api/v1/users/alice/tokens").await;
        assert_eq!(s, StatusCode::OK, "{list}");
        let items = list["items"].as_array().expect("items");
        assert_eq!(items.len(), 2, "{list}");
        for item in items {
            let mut keys: Vec<&str> = item
                .as_object()
                .expect("object")
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            assert_eq!(keys, ["createdAt", "id", "revokedAt"], "{item}");
            assert!(item["revokedAt"].is_null(), "{item}");
        }
        let text = list.to_string();
        assert!(!text.contains(&alice) && !text.contains(&second), "{text}");
        assert!(items.iter().any(|i| i["id"] == second_id.as_str()));
    }

    // Revoking: 204, then the token gets 401 and is listed as revoked.
    let (s, b) = app
        .delete(&alice, &format!("/api/v1/users/alice/tokens/{second_id}"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert_error(&app.get(&second, "/api/v1/me").await, 401, None);
    assert_error(
        &app.get(&second, "/api/v1/users/alice/tokens").await,
        401,
        None,
    );
    let (s, list) = app.get(&alice, "/api/v1/users/alice/tokens").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{list}");
    for item in items {
        if item["id"] == second_id.as_str() {
            assert!(item["revokedAt"].is_string(), "{item}");
        } else {
            assert!(item["revokedAt"].is_null(), "{item}");
        }
    }
    // alice's other token still works.
    assert_eq!(app.get(&alice, "/api/v1/me").await.0, StatusCode::OK);

    // The server admin may revoke anyone's token.
    let (s, list) = app.get(ADMIN_TOKEN, "/api/v1/users/bob/tokens").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let ids: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    for id in &ids {
        let (s, b) = app
            .delete(ADMIN_TOKEN, &format!("/api/v1/users/bob/tokens/{id}"))
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    }
    assert_error(&app.get(&bob, "/api/v1/me").await, 401, None);
    assert_error(&app.get(&bob2, "/api/v1/me").await, 401, None);

    // Unknown token ids and users are 404.
    assert_error(
        &app.delete(
            &alice,
            "/api/v1/users/alice/tokens/00000000-0000-0000-0000-000000000000",
        )
        .await,
        404,
        None,
    );
    // alice cannot revoke bob's token through her own path.
    assert_error(
        &app.delete(&alice, &format!("/api/v1/users/alice/tokens/{}", ids[0]))
            .await,
        404,
        None,
    );
    assert_error(
        &app.post_empty(ADMIN_TOKEN, "/api/v1/users/nobody/tokens")
            .await,
        404,
        None,
    );
    assert_error(
        &app.get(ADMIN_TOKEN, "/api/v1/users/nobody/tokens").await,
        404,
        None,
    );
    assert!(!user_exists(&app, "nobody").await);
    app.stop().await;
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

async fn tokens_are_not_stored_in_clear(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.user("alice").await;
    let (_, other) = new_token(&app, "alice").await;
    // The value is shown once: never again in any answer.
    let (_, list) = app.get(ADMIN_TOKEN, "/api/v1/users/alice/tokens").await;
    assert!(!list.to_string().contains(&alice), "{list}");
    assert!(!list.to_string().contains(&other), "{list}");
    if backend == Backend::Sqlite {
        // Whatever SQLite wrote (database, WAL), the token values are not in it.
        let mut files = Vec::new();
        files_under(app.data_dir.path(), &mut files);
        assert!(!files.is_empty());
        for f in files {
            let bytes = std::fs::read(&f).expect("read");
            for token in [alice.as_str(), other.as_str(), ADMIN_TOKEN] {
                assert!(
                    !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                    "{} contains a token in clear",
                    f.display()
                );
            }
        }
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Me

async fn me_lists_workspaces_with_roles(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for ws in ["alpha", "beta", "gamma"] {
        app.workspace(ws).await;
    }
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.add_member("alpha", "alice", "member").await;
    app.add_member("beta", "alice", "admin").await;

    let (s, me) = app.get(&alice, "/api/v1/me").await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "alice");
    assert_eq!(me["serverAdmin"], false);
    let mut ws = me["workspaces"].as_array().expect("workspaces").clone();
    ws.sort_by_key(|w| w["name"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        Value::Array(ws),
        json!([{"name": "alpha", "role": "member"}, {"name": "beta", "role": "admin"}])
    );

    let (s, me) = app.get(&bob, "/api/v1/me").await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(
        me,
        json!({"username": "bob", "serverAdmin": false, "workspaces": []})
    );

    let (s, me) = app.get(ADMIN_TOKEN, "/api/v1/me").await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "admin");
    assert_eq!(me["serverAdmin"], true);
    let names: Vec<&str> = me["workspaces"]
        .as_array()
        .expect("workspaces")
        .iter()
        .map(|w| {
            assert_eq!(w["role"], "admin", "{w}");
            w["name"].as_str().expect("name")
        })
        .collect();
    for n in ["alpha", "beta", "gamma"] {
        assert!(names.contains(&n), "{me}");
    }

    // Role changes and removals show up.
    app.add_member("alpha", "alice", "admin").await;
    let (s, b) = app
        .delete(ADMIN_TOKEN, "/api/v1/workspaces/beta/members/alice")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    let (_, me) = app.get(&alice, "/api/v1/me").await;
    assert_eq!(
        me["workspaces"],
        json!([{"name": "alpha", "role": "admin"}])
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Workspace roles

async fn workspace_role_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.workspace("other").await;
    let outsider = app.user("outsider").await;
    let member = app.user("mem").await;
    let ws_admin = app.user("wsadmin").await;
    let _target = app.user("target").await;
    app.add_member("acme", "mem", "member").await;
    app.add_member("acme", "wsadmin", "admin").await;
    app.add_member("other", "outsider", "admin").await;

    let new_statuses = json!({"statuses": [
        {"name": "Dev", "reviewRequired": false},
        {"name": "Prod", "reviewRequired": true},
    ]});

    // (caller, may read, may administer)
    let callers: [(&str, &str, u16, u16); 4] = [
        ("non-member", outsider.as_str(), 404, 404),
        ("member", member.as_str(), 200, 403),
        ("workspace admin", ws_admin.as_str(), 200, 200),
        ("server admin", ADMIN_TOKEN, 200, 200),
    ];
    for (who, token, read, write) in callers {
        let expect = |got: &(StatusCode, Value), status: u16, what: &str| {
            assert_eq!(got.0.as_u16(), status, "{who}: {what}: {}", got.1);
            if status >= 400 {
                assert_error(got, status, None);
            }
        };
        let got = app.get(token, "/api/v1/workspaces/acme").await;
        expect(&got, read, "get workspace");
        if read == 200 {
            assert_eq!(got.1["name"], "acme");
        }
        let got = app.get(token, "/api/v1/workspaces/acme/members").await;
        expect(&got, read, "list members");
        if read == 200 {
            assert_eq!(
                got.1["items"].as_array().map(Vec::len),
                Some(3),
                "{}",
                got.1
            );
        }
        let got = app.get(token, "/api/v1/workspaces/acme/statuses").await;
        expect(&got, read, "get statuses");
        if read == 200 {
            assert_eq!(got.1, default_statuses());
        }

        // Administration: add, change, remove a member; replace statuses.
        let got = app
            .put(
                token,
                "/api/v1/workspaces/acme/members/target",
                json!({"role": "member"}),
            )
            .await;
        expect(&got, write, "add member");
        if write == 200 {
            assert_eq!(got.1["username"], "target");
            assert_eq!(got.1["role"], "member");
        }
        let got = app
            .put(
                token,
                "/api/v1/workspaces/acme/members/target",
                json!({"role": "admin"}),
            )
            .await;
        expect(&got, write, "change role");
        let got = app
            .delete(token, "/api/v1/workspaces/acme/members/target")
            .await;
        expect(
            &got,
            if write == 200 { 204 } else { write },
            "remove member",
        );
        let got = app
            .put(
                token,
                "/api/v1/workspaces/acme/statuses",
                new_statuses.clone(),
            )
            .await;
        expect(&got, write, "put statuses");
        if write == 200 {
            assert_eq!(got.1, new_statuses);
            assert_eq!(statuses(&app, "acme").await, new_statuses);
        }
        // A refused caller changed nothing; an allowed one is undone for the next caller.
        assert_eq!(
            member_roles(&app, "acme").await,
            pairs(&[("admin", "admin"), ("mem", "member"), ("wsadmin", "admin")]),
            "{who}"
        );
        if write == 200 {
            let (s, b) = app
                .put(
                    ADMIN_TOKEN,
                    "/api/v1/workspaces/acme/statuses",
                    default_statuses(),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        } else {
            assert_eq!(statuses(&app, "acme").await, default_statuses(), "{who}");
        }
        // A member may not even remove another member or promote themself.
        if write == 403 {
            let got = app
                .delete(token, "/api/v1/workspaces/acme/members/wsadmin")
                .await;
            expect(&got, 403, "remove admin");
            let got = app
                .put(
                    token,
                    "/api/v1/workspaces/acme/members/mem",
                    json!({"role": "admin"}),
                )
                .await;
            expect(&got, 403, "promote self");
            assert_eq!(
                member_roles(&app, "acme").await,
                pairs(&[("admin", "admin"), ("mem", "member"), ("wsadmin", "admin")]),
                "{who}"
            );
        }
    }
    app.stop().await;
}

async fn server_admin_acts_as_admin_everywhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    let alice = app.user("alice").await;
    let _bob = app.user("bob").await;
    app.add_member("acme", "alice", "admin").await;
    // alice removes the server admin from the workspace.
    let (s, b) = app
        .delete(&alice, "/api/v1/workspaces/acme/members/admin")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert_eq!(
        member_roles(&app, "acme").await,
        pairs(&[("alice", "admin")])
    );

    // Not a member, the server admin still sees and administers it, as an admin.
    let (s, b) = app.get(ADMIN_TOKEN, "/api/v1/workspaces/acme").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, json!({"name": "acme", "role": "admin"}));
    let (s, b) = app
        .put(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/members/bob",
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let changed = json!({"statuses": [{"name": "Only", "reviewRequired": true}]});
    let (s, b) = app
        .put(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/statuses",
            changed.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(statuses(&app, "acme").await, changed);
    let (s, b) = app
        .delete(ADMIN_TOKEN, "/api/v1/workspaces/acme/members/bob")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    // The last (real) admin is still protected against the server admin.
    let got = app
        .delete(ADMIN_TOKEN, "/api/v1/workspaces/acme/members/alice")
        .await;
    assert_error(&got, 409, None);
    assert_eq!(
        member_roles(&app, "acme").await,
        pairs(&[("alice", "admin")])
    );
    app.stop().await;
}

async fn member_management(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.add_member("acme", "alice", "admin").await;

    // A workspace admin adds bob as a member.
    let (s, b) = app
        .put(
            &alice,
            "/api/v1/workspaces/acme/members/bob",
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["username"], "bob");
    assert_eq!(b["role"], "member");
    assert!(b["createdAt"].is_string(), "{b}");
    let (s, b) = app.get(&bob, "/api/v1/workspaces/acme").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, json!({"name": "acme", "role": "member"}));

    // Members list shows everyone with their role.
    let (s, list) = app.get(&bob, "/api/v1/workspaces/acme/members").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    for m in list["items"].as_array().expect("items") {
        assert!(m["createdAt"].is_string(), "{m}");
    }
    assert_eq!(
        member_roles(&app, "acme").await,
        pairs(&[("admin", "admin"), ("alice", "admin"), ("bob", "member")])
    );

    // Setting the same role again is harmless; promotion gives bob admin rights.
    let (s, b) = app
        .put(
            &alice,
            "/api/v1/workspaces/acme/members/bob",
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .put(
            &alice,
            "/api/v1/workspaces/acme/members/bob",
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["role"], "admin");
    let (s, b) = app
        .put(
            &bob,
            "/api/v1/workspaces/acme/statuses",
            json!({"statuses": [{"name": "X", "reviewRequired": false}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Removal: 204, then bob sees nothing of it; removing again is 404.
    let (s, b) = app
        .delete(&alice, "/api/v1/workspaces/acme/members/bob")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert_error(&app.get(&bob, "/api/v1/workspaces/acme").await, 404, None);
    let (_, me) = app.get(&bob, "/api/v1/me").await;
    assert_eq!(me["workspaces"], json!([]));
    assert_error(
        &app.delete(&alice, "/api/v1/workspaces/acme/members/bob")
            .await,
        404,
        None,
    );
    // Unknown users are 404, and are not created.
    assert_error(
        &app.put(
            &alice,
            "/api/v1/workspaces/acme/members/ghost",
            json!({"role": "member"}),
        )
        .await,
        404,
        None,
    );
    assert_error(
        &app.delete(&alice, "/api/v1/workspaces/acme/members/ghost")
            .await,
        404,
        None,
    );
    assert!(!user_exists(&app, "ghost").await);
    assert_eq!(
        member_roles(&app, "acme").await,
        pairs(&[("admin", "admin"), ("alice", "admin")])
    );
    app.stop().await;
}

async fn last_admin_cannot_be_removed_or_demoted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    let alice = app.user("alice").await;
    let _bob = app.user("bob").await;

    // The creator is the only admin.
    let got = app
        .delete(ADMIN_TOKEN, "/api/v1/workspaces/acme/members/admin")
        .await;
    assert_error(&got, 409, None);
    let got = app
        .put(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/members/admin",
            json!({"role": "member"}),
        )
        .await;
    assert_error(&got, 409, None);
    assert_eq!(
        member_roles(&app, "acme").await,
        pairs(&[("admin", "admin")])
    );

    // With a second admin, the first may go.
    app.add_member("acme", "alice", "admin").await;
    app.add_member("acme", "bob", "member").await;
    let (s, b) = app
        .put(
            &alice,
            "/api/v1/workspaces/acme/members/admin",
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .delete(&alice, "/api/v1/workspaces/acme/members/admin")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");

    // Now alice is the last admin: she cannot leave or step down, bob's role is no matter.
    let got = app
        .delete(&alice, "/api/v1/workspaces/acme/members/alice")
        .await;
    assert_error(&got, 409, None);
    let got = app
        .put(
            &alice,
            "/api/v1/workspaces/acme/members/alice",
            json!({"role": "member"}),
        )
        .await;
    assert_error(&got, 409, None);
    let got = app
        .put(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/members/alice",
            json!({"role": "member"}),
        )
        .await;
    assert_error(&got, 409, None);
    // Re-asserting admin is fine, and so is changing bob.
    let (s, b) = app
        .put(
            &alice,
            "/api/v1/workspaces/acme/members/alice",
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .delete(&alice, "/api/v1/workspaces/acme/members/bob")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert_eq!(
        member_roles(&app, "acme").await,
        pairs(&[("alice", "admin")])
    );
    app.stop().await;
}

async fn last_admin_survives_concurrent_demotions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.add_member("acme", "alice", "admin").await;
    app.add_member("acme", "bob", "admin").await;
    let (s, b) = app
        .delete(&alice, "/api/v1/workspaces/acme/members/admin")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    for round in 0..10 {
        // alice and bob, the two admins, demote (or remove) each other at the same time.
        let remove = round % 2 == 1;
        let act = |token: &str, target: &str| {
            let path = format!("/api/v1/workspaces/acme/members/{target}");
            let token = token.to_owned();
            let app = &app;
            async move {
                if remove {
                    app.delete(&token, &path).await
                } else {
                    app.put(&token, &path, json!({"role": "member"})).await
                }
            }
        };
        let (a, b) = tokio::join!(act(&alice, "bob"), act(&bob, "alice"));
        // One wins; the other is refused: 409 (last admin) if it was checked after the
        // winner's change, or 403/404 if the caller had already lost their admin role or
        // membership by the time they were authorized.
        let ok = if remove { 204 } else { 200 };
        let codes = [a.0.as_u16(), b.0.as_u16()];
        let refused: &[u16] = if remove {
            &[403, 404, 409]
        } else {
            &[403, 409]
        };
        let admins: Vec<String> = member_roles(&app, "acme")
            .await
            .into_iter()
            .filter(|(_, r)| r == "admin")
            .map(|(u, _)| u)
            .collect();
        assert_eq!(
            admins.len(),
            1,
            "round {round}: {codes:?}: admins left {admins:?}"
        );
        assert!(
            codes.contains(&ok) && codes.iter().any(|c| refused.contains(c)),
            "round {round}: {codes:?} ({}, {})",
            a.1,
            b.1
        );
        // Back to two admins.
        app.add_member("acme", "alice", "admin").await;
        app.add_member("acme", "bob", "admin").await;
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Invisibility of other workspaces

async fn non_members_see_nothing_of_a_workspace(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("wsa").await;
    app.workspace("wsb").await;
    let a_member = app.user("amember").await;
    let a_admin = app.user("aadmin").await;
    let loner = app.user("loner").await;
    let _b_member = app.user("bmember").await;
    app.add_member("wsa", "amember", "member").await;
    app.add_member("wsa", "aadmin", "admin").await;
    app.add_member("wsb", "bmember", "member").await;
    app.model("wsb", "m").await;
    app.version("wsb", "m", json!({"version": "1.0.0"})).await;
    let (s, sr) = app
        .post(
            ADMIN_TOKEN,
            "/api/v1/workspaces/wsb/models/m/versions/1.0.0/status-requests",
            json!({"status": "Production"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sr}");
    let request_id = sr["id"].as_str().expect("id").to_owned();

    let probes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "".into(), None),
        (Method::GET, "/members".into(), None),
        (
            Method::PUT,
            "/members/amember".into(),
            Some(json!({"role": "admin"})),
        ),
        (Method::DELETE, "/members/bmember".into(), None),
        (Method::GET, "/statuses".into(), None),
        (
            Method::PUT,
            "/statuses".into(),
            Some(json!({"statuses": [{"name": "X", "reviewRequired": false}]})),
        ),
        (Method::GET, "/models".into(), None),
        (Method::POST, "/models".into(), Some(json!({"name": "m2"}))),
        (Method::GET, "/models/m".into(), None),
        (
            Method::PATCH,
            "/models/m".into(),
            Some(json!({"description": "x"})),
        ),
        (Method::DELETE, "/models/m".into(), None),
        (Method::GET, "/models/m/versions".into(), None),
        (
            Method::POST,
            "/models/m/versions".into(),
            Some(json!({"version": "2.0.0"})),
        ),
        (Method::GET, "/models/m/versions/1.0.0".into(), None),
        (Method::DELETE, "/models/m/versions/1.0.0".into(), None),
        (
            Method::PATCH,
            "/models/m/versions/1.0.0/tags".into(),
            Some(json!({"add": ["x"]})),
        ),
        (
            Method::PUT,
            "/models/m/versions/1.0.0/status".into(),
            Some(json!({"status": "Staging"})),
        ),
        (
            Method::GET,
            "/models/m/versions/1.0.0/status-requests".into(),
            None,
        ),
        (
            Method::POST,
            "/models/m/versions/1.0.0/status-requests".into(),
            Some(json!({"status": "Staging"})),
        ),
        (
            Method::POST,
            format!("/models/m/versions/1.0.0/status-requests/{request_id}/approve"),
            None,
        ),
        (
            Method::POST,
            format!("/models/m/versions/1.0.0/status-requests/{request_id}/reject"),
            None,
        ),
        (Method::GET, "/events".into(), None),
        (Method::GET, "/events?limit=0".into(), None),
        (Method::GET, "/events?after=garbage!".into(), None),
        (Method::GET, "/models?cursor=!!!".into(), None),
        (Method::GET, "/status-requests?state=bogus".into(), None),
        (
            Method::PUT,
            "/members/amember".into(),
            Some(json!({"role": "owner"})),
        ),
        (Method::GET, "/models/nope".into(), None),
        (Method::GET, "/events?limit=1".into(), None),
        (Method::GET, "/status-requests".into(), None),
        (Method::GET, "/status-requests?state=pending".into(), None),
        (Method::GET, format!("/status-requests/{request_id}"), None),
        (
            Method::POST,
            format!("/status-requests/{request_id}/approve"),
            None,
        ),
        (
            Method::POST,
            format!("/status-requests/{request_id}/reject"),
            None,
        ),
    ];
    for (who, token) in [
        ("member of wsa", a_member.as_str()),
        ("admin of wsa", a_admin.as_str()),
        ("member of nothing", loner.as_str()),
    ] {
        for (method, rest, body) in &probes {
            let hidden = app
                .call(
                    method.clone(),
                    &format!("/api/v1/workspaces/wsb{rest}"),
                    Some(token),
                    body.clone(),
                )
                .await;
            let missing = app
                .call(
                    method.clone(),
                    &format!("/api/v1/workspaces/nonexistent{rest}"),
                    Some(token),
                    body.clone(),
                )
                .await;
            assert_eq!(
                hidden.0,
                StatusCode::NOT_FOUND,
                "{who}: {method} wsb{rest}: {}",
                hidden.1
            );
            assert_error(&hidden, 404, None);
            assert_eq!(
                hidden, missing,
                "{who}: {method} {rest}: a hidden workspace must answer exactly like a missing one"
            );
        }
        // The list of workspaces does not show it either.
        let (s, list) = app.get(token, "/api/v1/workspaces").await;
        assert_eq!(s, StatusCode::OK, "{list}");
        assert!(
            list["items"]
                .as_array()
                .expect("items")
                .iter()
                .all(|w| w["name"] != "wsb"),
            "{who}: {list}"
        );
        let (_, me) = app.get(token, "/api/v1/me").await;
        assert!(!me.to_string().contains("wsb"), "{who}: {me}");
    }

    // Nothing in wsb changed.
    assert_eq!(
        member_roles(&app, "wsb").await,
        pairs(&[("admin", "admin"), ("bmember", "member")])
    );
    assert_eq!(
        member_roles(&app, "wsa").await,
        pairs(&[
            ("aadmin", "admin"),
            ("admin", "admin"),
            ("amember", "member")
        ])
    );
    assert_eq!(statuses(&app, "wsb").await, default_statuses());
    let (s, b) = app
        .get(
            ADMIN_TOKEN,
            "/api/v1/workspaces/wsb/models/m/versions/1.0.0",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["tags"], json!([]));
    assert!(b["status"].is_null(), "{b}");
    assert_eq!(b["description"], "");
    let (s, b) = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/wsb/models/m/versions")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"].as_array().map(Vec::len), Some(1), "{b}");
    let (s, b) = app.get(ADMIN_TOKEN, "/api/v1/workspaces/wsb/models").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b["items"][0]["name"], "m");
    assert_eq!(b["items"][0]["description"], "");
    let (s, b) = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/wsb/status-requests")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b["items"][0]["id"], request_id.as_str());
    assert_eq!(b["items"][0]["state"], "pending");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Statuses

async fn statuses_defaults_and_replacement(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    let member = app.user("mem").await;
    app.add_member("acme", "mem", "member").await;

    let (s, b) = app.get(&member, "/api/v1/workspaces/acme/statuses").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, default_statuses());

    // Boundary: a 50-character name (characters, not bytes), and order is kept.
    let long = "\u{e9}".repeat(50);
    let wanted = json!({"statuses": [
        {"name": "Production", "reviewRequired": false},
        {"name": long, "reviewRequired": true},
        {"name": "QA", "reviewRequired": false},
    ]});
    let (s, b) = app
        .put(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/statuses",
            wanted.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, wanted);
    let (s, b) = app.get(&member, "/api/v1/workspaces/acme/statuses").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, wanted);

    // A member may not replace them.
    let got = app
        .put(
            &member,
            "/api/v1/workspaces/acme/statuses",
            default_statuses(),
        )
        .await;
    assert_error(&got, 403, None);
    assert_eq!(statuses(&app, "acme").await, wanted);

    // Each workspace has its own.
    app.workspace("other").await;
    assert_eq!(statuses(&app, "other").await, default_statuses());
    app.stop().await;
}

async fn statuses_bad_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    let path = "/api/v1/workspaces/acme/statuses";
    let ok = |name: &str| json!({"name": name, "reviewRequired": false});
    // A name twice in the list clashes (409, as a taken name does), and changes nothing.
    let got = app
        .put(
            ADMIN_TOKEN,
            path,
            json!({"statuses": [ok("A"), ok("B"), ok("A")]}),
        )
        .await;
    assert_error(&got, 409, Some("statuses[2].name"));
    assert_eq!(statuses(&app, "acme").await, default_statuses());
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        (
            "empty name",
            json!({"statuses": [ok("")]}),
            Some("statuses[0].name"),
        ),
        (
            "51-character name",
            json!({"statuses": [ok("A"), ok(&"n".repeat(51))]}),
            Some("statuses[1].name"),
        ),
        (
            "name of wrong type",
            json!({"statuses": [{"name": 5, "reviewRequired": false}]}),
            Some("statuses[0].name"),
        ),
        (
            "reviewRequired of wrong type",
            json!({"statuses": [{"name": "A", "reviewRequired": "yes"}]}),
            Some("statuses[0].reviewRequired"),
        ),
        (
            "missing name",
            json!({"statuses": [{"reviewRequired": false}]}),
            Some("statuses[0].name"),
        ),
        (
            "missing reviewRequired",
            json!({"statuses": [{"name": "A"}]}),
            Some("statuses[0].reviewRequired"),
        ),
        (
            "unknown field in a status",
            json!({"statuses": [{"name": "A", "reviewRequired": false, "color": "red"}]}),
            Some("statuses[0].color"),
        ),
        (
            "unknown top-level field",
            json!({"statuses": [ok("A")], "extra": 1}),
            Some("extra"),
        ),
        (
            "statuses of wrong type",
            json!({"statuses": "Development"}),
            Some("statuses"),
        ),
        ("statuses null", json!({"statuses": null}), Some("statuses")),
        ("missing statuses", json!({}), Some("statuses")),
        ("not an object", json!([ok("A")]), None),
    ];
    for (label, body, field) in cases {
        let got = app.put(ADMIN_TOKEN, path, body).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{label}: {}", got.1);
        assert_error(&got, 400, field);
        assert_eq!(statuses(&app, "acme").await, default_statuses(), "{label}");
    }
    let valid = serde_json::to_vec(&json!({"statuses": [ok("A")]})).expect("json");
    for (label, ct) in [
        ("text/plain", Some("text/plain")),
        ("form", Some("application/x-www-form-urlencoded")),
        ("no content type", None),
    ] {
        let got = app
            .call_raw(Method::PUT, path, Some(ADMIN_TOKEN), ct, valid.clone())
            .await;
        assert_eq!(got.0.as_u16(), 415, "{label}: {}", got.1);
        assert_error(&got, 415, None);
    }
    for (label, raw) in [("empty body", b"".to_vec()), ("broken JSON", b"{".to_vec())] {
        let got = app
            .call_raw(
                Method::PUT,
                path,
                Some(ADMIN_TOKEN),
                Some("application/json"),
                raw,
            )
            .await;
        assert_error(&got, 400, None);
        assert_eq!(got.0.as_u16(), 400, "{label}");
    }
    let mut big = serde_json::to_vec(&json!({"statuses": [ok("A")]})).expect("json");
    big.pop();
    big.extend_from_slice(b", \"pad\": \"");
    big.extend(std::iter::repeat_n(b'x', BIG));
    big.extend_from_slice(b"\"}");
    let got = app
        .call_raw(
            Method::PUT,
            path,
            Some(ADMIN_TOKEN),
            Some("application/json"),
            big,
        )
        .await;
    assert_eq!(got.0.as_u16(), 413, "{}", got.1);
    assert_error(&got, 413, None);
    assert_eq!(statuses(&app, "acme").await, default_statuses());
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Bad input for users, workspaces and members

/// The bad values of a name field, with their label.
fn bad_names() -> Vec<(&'static str, Value)> {
    vec![
        ("number", json!(5)),
        ("null", Value::Null),
        ("array", json!(["ok"])),
        ("object", json!({"n": "ok"})),
        ("bool", json!(true)),
        ("empty", json!("")),
        ("65 characters", json!("a".repeat(65))),
        ("leading dash", json!("-abc")),
        ("leading dot", json!(".abc")),
        ("leading underscore", json!("_abc")),
        ("space", json!("a b")),
        ("slash", json!("a/b")),
        ("at sign", json!("a@b")),
        ("non-ASCII", json!("jos\u{e9}")),
        ("newline", json!("ab\n")),
        ("percent", json!("a%20b")),
    ]
}

async fn create_user_bad_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let path = "/api/v1/users";
    for (label, value) in bad_names() {
        let got = app
            .post(ADMIN_TOKEN, path, json!({ "username": value }))
            .await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{label}: {}", got.1);
        assert_error(&got, 400, Some("username"));
    }
    let got = app.post(ADMIN_TOKEN, path, json!({})).await;
    assert_error(&got, 400, Some("username"));
    let got = app
        .post(
            ADMIN_TOKEN,
            path,
            json!({"username": "carol", "serverAdmin": true}),
        )
        .await;
    assert_error(&got, 400, Some("serverAdmin"));
    let got = app
        .post(ADMIN_TOKEN, path, json!({"username": "carol", "bogus": 1}))
        .await;
    assert_error(&got, 400, Some("bogus"));
    assert!(!user_exists(&app, "carol").await);

    let valid = serde_json::to_vec(&json!({"username": "carol"})).expect("json");
    for ct in [Some("text/plain"), Some("application/xml"), None] {
        let got = app
            .call_raw(Method::POST, path, Some(ADMIN_TOKEN), ct, valid.clone())
            .await;
        assert_eq!(got.0.as_u16(), 415, "{ct:?}: {}", got.1);
        assert_error(&got, 415, None);
    }
    for raw in [
        &b""[..],
        b"{",
        b"[]",
        b"\"carol\"",
        b"{\"username\": \"carol\"} x",
    ] {
        let got = app
            .call_raw(
                Method::POST,
                path,
                Some(ADMIN_TOKEN),
                Some("application/json"),
                raw.to_vec(),
            )
            .await;
        assert_eq!(
            got.0.as_u16(),
            400,
            "{}: {}",
            String::from_utf8_lossy(raw),
            got.1
        );
        assert_error(&got, 400, None);
    }
    let got = app
        .call_raw(
            Method::POST,
            path,
            Some(ADMIN_TOKEN),
            Some("application/json"),
            big_json("username", "carol"),
        )
        .await;
    assert_eq!(got.0.as_u16(), 413, "{}", got.1);
    assert_error(&got, 413, None);
    // The limit is 1 MiB: a body of exactly 1 MiB is read (and refused for its unknown
    // field), one byte more is 413.
    let exact = |len: usize| {
        let head = br#"{"username": "carol", "padding": ""#;
        let tail = br#""}"#;
        let mut body = head.to_vec();
        body.extend(std::iter::repeat_n(b'x', len - head.len() - tail.len()));
        body.extend_from_slice(tail);
        assert_eq!(body.len(), len);
        body
    };
    let got = app
        .call_raw(
            Method::POST,
            path,
            Some(ADMIN_TOKEN),
            Some("application/json"),
            exact(1024 * 1024),
        )
        .await;
    assert_eq!(got.0.as_u16(), 400, "exactly 1 MiB: {}", got.1);
    assert_error(&got, 400, Some("padding"));
    let got = app
        .call_raw(
            Method::POST,
            path,
            Some(ADMIN_TOKEN),
            Some("application/json"),
            exact(1024 * 1024 + 1),
        )
        .await;
    assert_eq!(got.0.as_u16(), 413, "1 MiB + 1 byte: {}", got.1);
    assert_error(&got, 413, None);
    // None of that created carol; a proper request does (with a charset, too).
    assert!(!user_exists(&app, "carol").await);
    let got = app
        .call_raw(
            Method::POST,
            path,
            Some(ADMIN_TOKEN),
            Some("application/json; charset=utf-8"),
            valid.clone(),
        )
        .await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert_eq!(got.1["username"], "carol");
    assert!(user_exists(&app, "carol").await);

    // Boundaries: 1 and 64 characters, every allowed character.
    for name in [
        "x".to_owned(),
        "7".to_owned(),
        "u".repeat(64),
        "A1.b_c-D".to_owned(),
    ] {
        let (s, b) = app
            .post(ADMIN_TOKEN, path, json!({ "username": name }))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{name}: {b}");
        assert_eq!(b["username"], name.as_str());
        assert!(user_exists(&app, &name).await);
    }
    app.stop().await;
}

async fn create_workspace_bad_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let path = "/api/v1/workspaces";
    let list_names = |b: &Value| -> Vec<String> {
        b["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|w| w["name"].as_str().expect("name").to_owned())
            .collect()
    };
    for (label, value) in bad_names() {
        let got = app.post(ADMIN_TOKEN, path, json!({ "name": value })).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{label}: {}", got.1);
        assert_error(&got, 400, Some("name"));
    }
    let got = app.post(ADMIN_TOKEN, path, json!({})).await;
    assert_error(&got, 400, Some("name"));
    let got = app
        .post(ADMIN_TOKEN, path, json!({"name": "acme", "statuses": []}))
        .await;
    assert_error(&got, 400, Some("statuses"));
    let valid = serde_json::to_vec(&json!({"name": "acme"})).expect("json");
    for ct in [Some("text/plain"), Some("multipart/form-data"), None] {
        let got = app
            .call_raw(Method::POST, path, Some(ADMIN_TOKEN), ct, valid.clone())
            .await;
        assert_eq!(got.0.as_u16(), 415, "{ct:?}: {}", got.1);
        assert_error(&got, 415, None);
    }
    for raw in [&b""[..], b"{", b"null", b"{\"name\": \"acme\",}"] {
        let got = app
            .call_raw(
                Method::POST,
                path,
                Some(ADMIN_TOKEN),
                Some("application/json"),
                raw.to_vec(),
            )
            .await;
        assert_eq!(
            got.0.as_u16(),
            400,
            "{}: {}",
            String::from_utf8_lossy(raw),
            got.1
        );
        assert_error(&got, 400, None);
    }
    let got = app
        .call_raw(
            Method::POST,
            path,
            Some(ADMIN_TOKEN),
            Some("application/json"),
            big_json("name", "acme"),
        )
        .await;
    assert_eq!(got.0.as_u16(), 413, "{}", got.1);
    assert_error(&got, 413, None);

    // Nothing was created.
    let (s, b) = app.get(ADMIN_TOKEN, path).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(list_names(&b), Vec::<String>::new());
    assert!(!workspace_exists(&app, "acme").await);

    for name in [
        "w".to_owned(),
        "9".to_owned(),
        "w".repeat(64),
        "Ab.c_d-9".to_owned(),
    ] {
        let (s, b) = app.post(ADMIN_TOKEN, path, json!({ "name": name })).await;
        assert_eq!(s, StatusCode::CREATED, "{name}: {b}");
        assert_eq!(b["name"], name.as_str());
        assert!(workspace_exists(&app, &name).await);
    }
    app.stop().await;
}

async fn set_member_bad_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    let _alice = app.user("alice").await;
    let path = "/api/v1/workspaces/acme/members/alice";
    let before = pairs(&[("admin", "admin")]);
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("role number", json!({"role": 1}), Some("role")),
        ("role null", json!({"role": null}), Some("role")),
        ("role bool", json!({"role": true}), Some("role")),
        ("role empty", json!({"role": ""}), Some("role")),
        ("role unknown", json!({"role": "owner"}), Some("role")),
        ("role wrong case", json!({"role": "Admin"}), Some("role")),
        (
            "role too long",
            json!({"role": "a".repeat(1000)}),
            Some("role"),
        ),
        ("missing role", json!({}), Some("role")),
        (
            "unknown field",
            json!({"role": "member", "username": "alice"}),
            Some("username"),
        ),
        ("not an object", json!("member"), None),
    ];
    for (label, body, field) in cases {
        let got = app.put(ADMIN_TOKEN, path, body).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{label}: {}", got.1);
        assert_error(&got, 400, field);
        assert_eq!(member_roles(&app, "acme").await, before, "{label}");
    }
    // A malformed username in the path.
    for bad in ["-alice", "a%20b", &"a".repeat(65)] {
        let got = app
            .put(
                ADMIN_TOKEN,
                &format!("/api/v1/workspaces/acme/members/{bad}"),
                json!({"role": "member"}),
            )
            .await;
        assert_error(&got, 400, Some("username"));
    }
    let valid = serde_json::to_vec(&json!({"role": "member"})).expect("json");
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let got = app
            .call_raw(Method::PUT, path, Some(ADMIN_TOKEN), ct, valid.clone())
            .await;
        assert_eq!(got.0.as_u16(), 415, "{ct:?}: {}", got.1);
        assert_error(&got, 415, None);
    }
    let got = app
        .call_raw(
            Method::PUT,
            path,
            Some(ADMIN_TOKEN),
            Some("application/json"),
            b"".to_vec(),
        )
        .await;
    assert_error(&got, 400, None);
    let got = app
        .call_raw(
            Method::PUT,
            path,
            Some(ADMIN_TOKEN),
            Some("application/json"),
            big_json("role", "member"),
        )
        .await;
    assert_eq!(got.0.as_u16(), 413, "{}", got.1);
    assert_error(&got, 413, None);
    assert_eq!(member_roles(&app, "acme").await, before);
    app.stop().await;
}

async fn duplicates_conflict(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.user("alice").await;
    for name in ["alice", "admin"] {
        let got = app
            .post(ADMIN_TOKEN, "/api/v1/users", json!({"username": name}))
            .await;
        assert_eq!(got.0, StatusCode::CONFLICT, "{name}: {}", got.1);
        assert_error(&got, 409, Some("username"));
    }
    // The original alice is untouched and still works.
    let (s, me) = app.get(&alice, "/api/v1/me").await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["serverAdmin"], false);
    let (_, list) = app.get(ADMIN_TOKEN, "/api/v1/users/alice/tokens").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");

    app.workspace("acme").await;
    app.add_member("acme", "alice", "admin").await;
    let got = app
        .post(ADMIN_TOKEN, "/api/v1/workspaces", json!({"name": "acme"}))
        .await;
    assert_eq!(got.0, StatusCode::CONFLICT, "{}", got.1);
    assert_error(&got, 409, Some("name"));
    // The workspace keeps its members and statuses.
    assert_eq!(
        member_roles(&app, "acme").await,
        pairs(&[("admin", "admin"), ("alice", "admin")])
    );
    assert_eq!(statuses(&app, "acme").await, default_statuses());
    let (_, list) = app.get(ADMIN_TOKEN, "/api/v1/workspaces").await;
    assert_eq!(list["items"], json!([{"name": "acme", "role": "admin"}]));
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Listing workspaces

async fn workspace_list_pagination(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.user("alice").await;
    // Created out of order; alice belongs to four of six.
    for ws in ["delta", "alpha", "foxtrot", "charlie", "bravo", "echo"] {
        app.workspace(ws).await;
    }
    app.add_member("delta", "alice", "member").await;
    app.add_member("alpha", "alice", "admin").await;
    app.add_member("charlie", "alice", "member").await;
    app.add_member("echo", "alice", "admin").await;
    let expected = json!([
        {"name": "alpha", "role": "admin"},
        {"name": "charlie", "role": "member"},
        {"name": "delta", "role": "member"},
        {"name": "echo", "role": "admin"},
    ]);

    // One page by default.
    let (s, b) = app.get(&alice, "/api/v1/workspaces").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"], expected);
    assert!(b["nextCursor"].is_null(), "{b}");

    // limit=1, walking nextCursor.
    for limit in [1usize, 2, 3, 4, 500] {
        let mut seen: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/workspaces?limit={limit}&cursor={c}"),
                None => format!("/api/v1/workspaces?limit={limit}"),
            };
            let (s, b) = app.get(&alice, &path).await;
            assert_eq!(s, StatusCode::OK, "{path}: {b}");
            let items = b["items"].as_array().expect("items");
            assert!(items.len() <= limit, "{path}: {b}");
            seen.extend(items.iter().cloned());
            pages += 1;
            assert!(pages <= 10, "pagination does not end: {b}");
            match b["nextCursor"].as_str() {
                Some(c) => {
                    assert_eq!(
                        items.len(),
                        limit,
                        "{path}: a short page with a cursor: {b}"
                    );
                    cursor = Some(c.to_owned());
                }
                None => {
                    assert!(b["nextCursor"].is_null(), "{b}");
                    break;
                }
            }
        }
        assert_eq!(Value::Array(seen), expected, "limit={limit}");
        if limit == 1 {
            assert!(pages >= 4, "limit=1 took {pages} pages");
        }
    }

    // The server admin lists those they belong to (all six, they created them).
    let (s, b) = app.get(ADMIN_TOKEN, "/api/v1/workspaces?limit=500").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let names: Vec<&str> = b["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|w| w["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    );

    // A user in no workspace gets an empty list.
    let bob = app.user("bob").await;
    let (s, b) = app.get(&bob, "/api/v1/workspaces?limit=1").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"], json!([]));
    assert!(b["nextCursor"].is_null(), "{b}");
    app.stop().await;
}

async fn workspace_list_bad_paging(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    let alice = app.user("alice").await;
    app.add_member("acme", "alice", "member").await;
    for token in [alice.as_str(), ADMIN_TOKEN] {
        for limit in [
            "0",
            "501",
            "x",
            "-1",
            "",
            "1.5",
            "99999999999999999999",
            "%201",
        ] {
            let got = app
                .get(token, &format!("/api/v1/workspaces?limit={limit}"))
                .await;
            assert_eq!(got.0, StatusCode::BAD_REQUEST, "limit={limit}: {}", got.1);
            assert_error(&got, 400, Some("limit"));
        }
        for cursor in ["!!!", "not a cursor", "%00", "a.b"] {
            let got = app
                .get(
                    token,
                    &format!("/api/v1/workspaces?limit=1&cursor={cursor}"),
                )
                .await;
            assert_eq!(got.0, StatusCode::BAD_REQUEST, "cursor={cursor}: {}", got.1);
            // NUL is refused in the query as a whole, before the cursor is read.
            let field = if cursor == "%00" { "query" } else { "cursor" };
            assert_error(&got, 400, Some(field));
        }
        // The boundaries are fine.
        for limit in ["1", "500"] {
            let (s, b) = app
                .get(token, &format!("/api/v1/workspaces?limit={limit}"))
                .await;
            assert_eq!(s, StatusCode::OK, "limit={limit}: {b}");
        }
    }
    app.stop().await;
}
