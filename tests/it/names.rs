//! Names that look the same cannot coexist (README → Names): versions of equal semver
//! precedence, users, workspaces, models and webhooks that differ only in case or Unicode
//! normal form, look-alike statuses; invisible characters are refused; and rows that collided
//! before migration 0008 are reported, not merged.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, PgDatabase, TestApp, assert_error};

const HOOK_URL: &str = "http://127.0.0.1:9/hook";
/// `café` with a precomposed `é` (NFC) and with `e` and a combining acute (NFD).
const CAFE_NFC: &str = "caf\u{E9}";
const CAFE_NFD: &str = "cafe\u{301}";
/// `Production` with a Cyrillic `о` (U+043E) for its `o`.
const PRODUCTION_CYRILLIC: &str = "Pr\u{43E}duction";

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

async fn versions_of(app: &TestApp, ws: &str, model: &str) -> Vec<String> {
    let (s, b) = app
        .get(
            ADMIN_TOKEN,
            &format!("/api/v1/workspaces/{ws}/models/{model}/versions"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["items"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["version"].as_str().expect("version").to_owned())
        .collect()
}

conformance!(versions_of_equal_precedence_cannot_coexist);
async fn versions_of_equal_precedence_cannot_coexist(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let path = "/api/v1/workspaces/acme/models/m/versions";
    app.version("acme", "m", json!({"version": "1.0.0"})).await;
    for dup in ["1.0.0", "1.0.0+build", "1.0.0+build.2", "1.0.0+001"] {
        let got = app.post(ADMIN_TOKEN, path, json!({"version": dup})).await;
        assert_error(&got, 409, Some("version"));
        assert!(
            message(&got.1).contains("version 1.0.0 "),
            "{dup}: names the existing version: {}",
            got.1
        );
    }
    // The other way round: the one with build metadata came first.
    app.version("acme", "m", json!({"version": "2.0.0-rc.1+sha.5114f85"}))
        .await;
    let got = app
        .post(ADMIN_TOKEN, path, json!({"version": "2.0.0-rc.1"}))
        .await;
    assert_error(&got, 409, Some("version"));
    assert!(
        message(&got.1).contains("2.0.0-rc.1+sha.5114f85"),
        "{}",
        got.1
    );
    // Different precedence is a different version.
    app.version("acme", "m", json!({"version": "2.0.0-rc.1.0+b"}))
        .await;
    assert_eq!(
        versions_of(&app, "acme", "m").await,
        ["2.0.0-rc.1.0+b", "2.0.0-rc.1+sha.5114f85", "1.0.0"]
    );
    app.stop().await;
}

conformance!(prerelease_numbers_too_big_for_u64_sort_as_numbers);
async fn prerelease_numbers_too_big_for_u64_sort_as_numbers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let newest_first = [
        "1.0.0",
        "1.0.0-a",
        "1.0.0-1a",
        "1.0.0-100000000000000000000000",
        "1.0.0-99999999999999999999999",
        "1.0.0-18446744073709551616",
        "1.0.0-18446744073709551615",
        "1.0.0-2",
    ];
    for v in newest_first.iter().rev() {
        app.version("acme", "m", json!({"version": v})).await;
    }
    assert_eq!(versions_of(&app, "acme", "m").await, newest_first);
    // Pages follow the same order.
    let (s, page) = app
        .get(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/m/versions?limit=3",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let cursor = page["nextCursor"].as_str().expect("a next page");
    let (_, next) = app
        .get(
            ADMIN_TOKEN,
            &format!("/api/v1/workspaces/acme/models/m/versions?limit=3&cursor={cursor}"),
        )
        .await;
    assert_eq!(next["items"][0]["version"], newest_first[3]);
    let (_, model) = app
        .get(ADMIN_TOKEN, "/api/v1/workspaces/acme/models/m")
        .await;
    assert_eq!(model["latestVersion"]["version"], "1.0.0", "{model}");
    app.stop().await;
}

conformance!(names_differing_in_case_or_normal_form_cannot_coexist);
async fn names_differing_in_case_or_normal_form_cannot_coexist(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Users.
    app.user("alice").await;
    let got = app
        .post(ADMIN_TOKEN, "/api/v1/users", json!({"username": "Alice"}))
        .await;
    assert_error(&got, 409, Some("username"));
    // Workspaces.
    app.workspace("ws1").await;
    let got = app
        .post(ADMIN_TOKEN, "/api/v1/workspaces", json!({"name": "WS1"}))
        .await;
    assert_error(&got, 409, Some("name"));
    // Models, by creation and by rename; names keep the case they were given.
    app.model("ws1", "resnet").await;
    app.model("ws1", "other").await;
    for look_alike in ["ResNet", "RESNET"] {
        let got = app
            .post(
                ADMIN_TOKEN,
                "/api/v1/workspaces/ws1/models",
                json!({"name": look_alike}),
            )
            .await;
        assert_error(&got, 409, Some("name"));
        assert!(message(&got.1).contains("ignoring case"), "{}", got.1);
        let got = app
            .patch(
                ADMIN_TOKEN,
                "/api/v1/workspaces/ws1/models/other",
                json!({"name": look_alike}),
            )
            .await;
        assert_error(&got, 409, Some("name"));
    }
    let (s, b) = app
        .patch(
            ADMIN_TOKEN,
            "/api/v1/workspaces/ws1/models/other",
            json!({"name": "Other"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "a model may change its own case: {b}");
    assert_eq!(b["name"], "Other");
    // The same model name in another workspace is another model.
    app.workspace("ws2").await;
    app.model("ws2", "ResNet").await;
    // Webhooks: NFC and NFD, and case, by creation and by rename.
    let hooks = "/api/v1/workspaces/ws1/models/resnet/webhooks";
    let hook =
        |name: &str| json!({"name": name, "url": HOOK_URL, "triggers": ["MODEL_VERSION_CREATED"]});
    let (s, created) = app.post(ADMIN_TOKEN, hooks, hook(CAFE_NFC)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], CAFE_NFC);
    for look_alike in [CAFE_NFD, "CAF\u{C9}", "Cafe\u{301}"] {
        let got = app.post(ADMIN_TOKEN, hooks, hook(look_alike)).await;
        assert_error(&got, 409, Some("name"));
    }
    let (s, slack) = app.post(ADMIN_TOKEN, hooks, hook("Slack")).await;
    assert_eq!(s, StatusCode::CREATED, "{slack}");
    let got = app.post(ADMIN_TOKEN, hooks, hook("slack")).await;
    assert_error(&got, 409, Some("name"));
    let id = slack["id"].as_str().expect("id");
    let got = app
        .put(ADMIN_TOKEN, &format!("{hooks}/{id}"), hook(CAFE_NFD))
        .await;
    assert_error(&got, 409, Some("name"));
    let (s, b) = app
        .put(ADMIN_TOKEN, &format!("{hooks}/{id}"), hook("SLACK"))
        .await;
    assert_eq!(s, StatusCode::OK, "a webhook may change its own case: {b}");
    let (_, list) = app.get(ADMIN_TOKEN, hooks).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
    app.stop().await;
}

conformance!(invisible_characters_and_padding_are_refused);
async fn invisible_characters_and_padding_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let versions = "/api/v1/workspaces/acme/models/m/versions";
    for (tags, field) in [
        (json!(["pr\u{200B}od"]), "tags[0]"),
        (json!(["ok", "\u{202E}dorp"]), "tags[1]"),
        (json!([" prod"]), "tags[0]"),
        (json!(["prod\u{FEFF}"]), "tags[0]"),
    ] {
        let got = app
            .post(
                ADMIN_TOKEN,
                versions,
                json!({"version": "1.0.0", "tags": tags}),
            )
            .await;
        assert_error(&got, 400, Some(field));
    }
    app.version("acme", "m", json!({"version": "1.0.0", "tags": ["prod"]}))
        .await;
    let got = app
        .patch(
            ADMIN_TOKEN,
            &format!("{versions}/1.0.0/tags"),
            json!({"add": ["pr\u{200B}od"]}),
        )
        .await;
    assert_error(&got, 400, Some("add[0]"));
    for (name, field) in [
        ("Pro\u{200B}duction", "statuses[0].name"),
        ("Production\u{200E}", "statuses[0].name"),
        ("Staging ", "statuses[0].name"),
    ] {
        let got = app
            .put(
                ADMIN_TOKEN,
                "/api/v1/workspaces/acme/statuses",
                json!({"statuses": [{"name": name, "reviewRequired": false}]}),
            )
            .await;
        assert_error(&got, 400, Some(field));
    }
    for name in ["ci\u{200D}", "\u{2066}ci", " ci", "ci "] {
        let got = app
            .post(
                ADMIN_TOKEN,
                "/api/v1/workspaces/acme/models/m/webhooks",
                json!({"name": name, "url": HOOK_URL, "triggers": ["MODEL_VERSION_CREATED"]}),
            )
            .await;
        assert_error(&got, 400, Some("name"));
    }
    let (_, v) = app.get(ADMIN_TOKEN, &format!("{versions}/1.0.0")).await;
    assert_eq!(v["tags"], json!(["prod"]), "nothing changed");
    app.stop().await;
}

conformance!(tags_differing_in_case_or_normal_form_are_one_tag);
async fn tags_differing_in_case_or_normal_form_are_one_tag(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let v = app
        .version(
            "acme",
            "m",
            json!({"version": "1.0.0", "tags": ["prod", "PROD", CAFE_NFC, CAFE_NFD]}),
        )
        .await;
    assert_eq!(v["tags"], json!(["prod", CAFE_NFC]));
    let tags = "/api/v1/workspaces/acme/models/m/versions/1.0.0/tags";
    let before = app.all_events(ADMIN_TOKEN, "acme").await.len();
    let (s, v) = app
        .patch(ADMIN_TOKEN, tags, json!({"add": ["Prod", CAFE_NFD]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tags"], json!(["prod", CAFE_NFC]), "adding a tag it has");
    assert_eq!(
        app.all_events(ADMIN_TOKEN, "acme").await.len(),
        before,
        "no MODEL_TAG_CHANGED for no change"
    );
    let got = app
        .patch(ADMIN_TOKEN, tags, json!({"add": ["x"], "remove": ["X"]}))
        .await;
    assert_error(&got, 400, Some("remove"));
    let (s, v) = app
        .patch(ADMIN_TOKEN, tags, json!({"remove": ["PROD", "CAF\u{C9}"]}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["tags"], json!([]));
    app.stop().await;
}

conformance!(a_member_cannot_set_a_look_alike_of_a_reviewed_status);
async fn a_member_cannot_set_a_look_alike_of_a_reviewed_status(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    app.model("acme", "m").await;
    let bob = app.user("bob").await;
    app.add_member("acme", "bob", "member").await;
    app.version("acme", "m", json!({"version": "1.0.0"})).await;
    let statuses = "/api/v1/workspaces/acme/statuses";
    for look_alike in [
        PRODUCTION_CYRILLIC,
        "production",
        "PRODUCTION",
        "Pr\u{F6}duction",
    ] {
        let body = json!({"statuses": [
            {"name": "Production", "reviewRequired": true},
            {"name": look_alike, "reviewRequired": false},
        ]});
        let got = app.put(ADMIN_TOKEN, statuses, body).await;
        if look_alike == "Pr\u{F6}duction" {
            // An `ö` is a letter of its own, not a look-alike.
            assert_eq!(got.0, StatusCode::OK, "{}", got.1);
            continue;
        }
        assert_error(&got, 409, Some("statuses[1].name"));
        assert!(message(&got.1).contains("Production"), "{}", got.1);
    }
    // The default list holds Production (review required); the look-alike is unknown.
    let (s, b) = app
        .put(
            ADMIN_TOKEN,
            statuses,
            json!({"statuses": [{"name": "Production", "reviewRequired": true}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let status = "/api/v1/workspaces/acme/models/m/versions/1.0.0/status";
    let got = app
        .put(&bob, status, json!({"status": PRODUCTION_CYRILLIC}))
        .await;
    // Well-formed, but not one of the workspace's statuses: a conflict with them.
    assert_error(&got, 409, Some("status"));
    // A list kept from before look-alikes were refused (written past the API's checks): the
    // look-alike needs review as well.
    let ws = app
        .store()
        .workspace_access(0, true, "acme")
        .await
        .expect("read")
        .expect("workspace");
    let legacy = vec![
        berth::store::StatusDef {
            name: "Production".into(),
            review_required: true,
        },
        berth::store::StatusDef {
            name: PRODUCTION_CYRILLIC.into(),
            review_required: false,
        },
    ];
    app.store()
        .set_statuses(ws.id, &legacy)
        .await
        .expect("write")
        .expect("no version holds a dropped status");
    let got = app
        .put(&bob, status, json!({"status": PRODUCTION_CYRILLIC}))
        .await;
    assert_error(&got, 403, None);
    let got = app
        .post(
            &bob,
            "/api/v1/workspaces/acme/models/m/versions",
            json!({"version": "2.0.0", "status": PRODUCTION_CYRILLIC}),
        )
        .await;
    assert_error(&got, 403, None);
    let (_, v) = app
        .get(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/m/versions/1.0.0",
        )
        .await;
    assert_eq!(v["status"], Value::Null, "nothing changed");
    let clashes = app.store().name_clashes().await.expect("check");
    assert!(
        clashes
            .iter()
            .any(|c| c.kind == "status" && c.names == ["Production", PRODUCTION_CYRILLIC]),
        "{clashes:?}"
    );
    app.stop().await;
}

/// A database at migration 0007 with rows that collide under the new rules; answers what
/// opens it as a `Store`, and keeps what it needs alive.
struct Legacy {
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
    store: berth::store::Store,
}

async fn legacy_database(backend: Backend) -> Legacy {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, pg) = match backend {
        Backend::Sqlite => (
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("berth.db").display()
            ),
            None,
        ),
        Backend::Postgres => {
            let db = PgDatabase::create().await;
            (db.url.clone(), Some(db))
        }
    };
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
    // The migrations up to 0007, as released before 0008.
    let sub = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(sub);
    let old = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&src).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        if name.as_str() < "0008" {
            std::fs::copy(&path, old.path().join(&name)).expect("copy");
        }
    }
    sqlx::migrate::Migrator::new(old.path())
        .await
        .expect("migrations")
        .run(&pool)
        .await
        .expect("migrate to 0007");
    let statuses = serde_json::to_string(&json!([
        {"name": "Production", "reviewRequired": true},
        {"name": PRODUCTION_CYRILLIC, "reviewRequired": false},
        {"name": "Staging", "reviewRequired": false},
    ]))
    .expect("json");
    let old_key = |v: &str| {
        berth::domain::VersionNumber::parse("v", v)
            .expect("version")
            .sort_key()
    };
    // The key 0007 stored for a pre-release number too big for 64 bits: as if alphanumeric.
    let huge = "1.0.0-99999999999999999999999";
    let huge_old_key = format!("{:020}.{:020}.{:020}-199999999999999999999999", 1, 0, 0);
    let mut sql: Vec<(String, Vec<String>)> = vec![
        (
            "INSERT INTO users (username, server_admin, created_at) VALUES ('alice', 0, 1)".into(),
            vec![],
        ),
        (
            "INSERT INTO users (username, server_admin, created_at) VALUES ('Alice', 0, 2)".into(),
            vec![],
        ),
        (
            "INSERT INTO workspaces (name, statuses, created_at) VALUES ('ws1', $1, 1)".into(),
            vec![statuses.clone()],
        ),
        (
            "INSERT INTO workspaces (name, statuses, created_at) VALUES ('WS1', '[]', 2)".into(),
            vec![],
        ),
    ];
    for (i, name) in ["resnet", "ResNet", "RESNET", "other"].iter().enumerate() {
        sql.push((
            format!(
                "INSERT INTO models (workspace_id, name, description, created_at, updated_at) \
                 SELECT id, '{name}', '', {i}, {i} FROM workspaces WHERE name = 'ws1'"
            ),
            vec![],
        ));
    }
    for (i, (version, key, tags)) in [
        ("1.0.0", old_key("1.0.0"), r#"["prod"]"#),
        ("1.0.0+build", old_key("1.0.0"), "[]"),
        ("1.0.0+001", old_key("1.0.0"), "[]"),
        (
            "1.0.0-1a",
            old_key("1.0.0-1a"),
            "[\"prod\",\"pr\u{200B}od\"]",
        ),
        (huge, huge_old_key, "[]"),
    ]
    .into_iter()
    .enumerate()
    {
        sql.push((
            format!(
                "INSERT INTO model_versions (model_id, version, sort_key, tags, created_by, \
                 created_at, updated_at) SELECT id, $1, $2, $3, 'admin', {i}, {i} FROM models \
                 WHERE name = 'resnet'"
            ),
            vec![version.to_owned(), key, tags.to_owned()],
        ));
    }
    for (i, name) in [CAFE_NFC, CAFE_NFD, "Slack"].iter().enumerate() {
        sql.push((
            format!(
                "INSERT INTO webhooks (id, workspace_id, model_id, name, url, triggers, headers, \
                 signing_key_enc, created_at, updated_at) \
                 SELECT 'wh_{i}', workspace_id, id, $1, '{HOOK_URL}', \
                 '[\"MODEL_VERSION_CREATED\"]', '{{}}', 'k', {i}, {i} FROM models \
                 WHERE name = 'resnet'"
            ),
            vec![(*name).to_owned()],
        ));
    }
    for (text, binds) in &sql {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(text.clone()));
        for b in binds {
            q = q.bind(b.clone());
        }
        q.execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{text}: {e}"));
    }
    pool.close().await;
    let store = match backend {
        Backend::Sqlite => berth::store::Store::open_sqlite(dir.path()).await,
        Backend::Postgres => {
            berth::store::Store::open_postgres(&url, 4, Duration::from_secs(10)).await
        }
    }
    .expect("open");
    Legacy {
        _dir: dir,
        _pg: pg,
        store,
    }
}

conformance!(migration_reports_names_that_already_collide);
async fn migration_reports_names_that_already_collide(backend: Backend) {
    let legacy = legacy_database(backend).await;
    let store = &legacy.store;
    // The start that applies 0008 reports every clash (and the tags', once); so does every
    // later start.
    store.migrate().await.expect("migrate to 0008 and check");
    let found = store.check_names().await.expect("check again");
    let has = |kind: &str, scope: &str, names: &[&str]| {
        found
            .iter()
            .any(|c| c.kind == kind && c.scope == scope && c.names == names)
    };
    assert!(has("username", "", &["alice", "Alice"]), "{found:?}");
    assert!(has("workspace", "", &["ws1", "WS1"]), "{found:?}");
    assert!(
        has("model", "ws1", &["resnet", "ResNet", "RESNET"]),
        "{found:?}"
    );
    assert!(
        has(
            "version",
            "ws1/resnet",
            &["1.0.0", "1.0.0+build", "1.0.0+001"]
        ),
        "{found:?}"
    );
    assert!(
        has("webhook", "ws1/resnet", &[CAFE_NFC, CAFE_NFD]),
        "{found:?}"
    );
    assert!(
        has("status", "ws1", &["Production", PRODUCTION_CYRILLIC]),
        "{found:?}"
    );
    assert_eq!(found.len(), 6, "{found:?}");
    let tags = store.check_version_tags().await.expect("tags");
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert_eq!(tags[0].scope, "ws1/resnet@1.0.0-1a");
    assert_eq!(tags[0].names, ["prod", "pr\u{200B}od"]);
    // Nothing was merged or renamed, and the sort key of the huge number was recomputed.
    let ws = store
        .workspace_access(0, true, "ws1")
        .await
        .expect("read")
        .expect("ws1");
    let model = store
        .get_model(ws.id, "resnet")
        .await
        .expect("read")
        .expect("resnet");
    let versions: Vec<String> = store
        .list_versions(model.id, None, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions.len(), 5);
    assert_eq!(versions[3], "1.0.0-1a", "{versions:?}");
    assert_eq!(versions[4], "1.0.0-99999999999999999999999", "{versions:?}");
    assert!(
        store
            .get_model(ws.id, "RESNET")
            .await
            .expect("read")
            .is_some()
    );
    // New rows still cannot join a clash.
    // The store names the field a taken name is in, on either database.
    let conflict_on = |e: berth::store::Error| match e {
        berth::store::Error::Conflict { field } => field,
        other => panic!("not a conflict: {other}"),
    };
    let is_unique = |e: berth::store::Error| conflict_on(e) == "name";
    let err = store.create_user("ALICE").await.expect_err("taken");
    assert_eq!(conflict_on(err), "username");
    let err = store.create_workspace("Ws1", 1).await.expect_err("taken");
    assert!(is_unique(err));
    let err = store
        .create_model(ws.id, "Resnet", "", "admin")
        .await
        .expect_err("taken");
    assert!(is_unique(err));
    // A rename out of the clash frees the row from it; a rename into one is refused.
    let rref = |id: i64, name: &str| berth::store::ModelRef {
        workspace_id: ws.id,
        workspace_name: "ws1".into(),
        model_id: id,
        model_name: name.into(),
    };
    let upper = store
        .get_model(ws.id, "RESNET")
        .await
        .expect("read")
        .expect("RESNET");
    let patch = |name: &str| berth::store::ModelPatch {
        name: Some(name.into()),
        description: None,
    };
    let err = store
        .update_model(&rref(upper.id, "RESNET"), &patch("resNET"))
        .await
        .expect_err("still taken");
    assert!(is_unique(err));
    store
        .update_model(&rref(upper.id, "RESNET"), &patch("resnet-v2"))
        .await
        .expect("a free name");
    let again = store.name_clashes().await.expect("check");
    assert!(
        again
            .iter()
            .any(|c| c.kind == "model" && c.names == ["resnet", "ResNet"]),
        "{again:?}"
    );
    let err = store
        .create_model(ws.id, "RESNET-V2", "", "admin")
        .await
        .expect_err("the renamed one holds its name");
    assert!(is_unique(err));
    store.close().await;
}
