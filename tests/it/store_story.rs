//! One story told to the storage interface itself, below the HTTP layer, on each backend: the
//! same calls must give the same answers whichever database holds the data (as atuin tests
//! its `Database` trait). The HTTP suites prove the routes; this proves the interface each
//! backend implements, including the answers a route never shows (the conflict's field, the
//! last admin's refusal, what an unknown token or an expired session reads as).

use std::time::Duration;

use berth::domain::{Role, Tag, VersionNumber};
use berth::store::{
    Caller, DeleteModel, Error, ModelPatch, ModelRef, NewVersion, StatusDef, Store, now_micros,
};

use crate::conformance;
use crate::helpers::{Backend, PgDatabase};

/// A migrated, empty store on `backend`, with what keeps its database alive.
async fn open(backend: Backend) -> (Store, tempfile::TempDir, Option<PgDatabase>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, pg) = match backend {
        Backend::Sqlite => (Store::open_sqlite(dir.path()).await.expect("open"), None),
        Backend::Postgres => {
            let db = PgDatabase::create().await;
            let store = Store::open_postgres(&db.url, 4, Duration::from_secs(10))
                .await
                .expect("open");
            (store, Some(db))
        }
    };
    store.migrate().await.expect("migrate");
    (store, dir, pg)
}

fn field_of(err: Error) -> &'static str {
    match err {
        Error::Conflict { field } => field,
        other => panic!("expected a conflict, got {other}"),
    }
}

conformance!(the_storage_interface_tells_one_story_on_both_backends);
async fn the_storage_interface_tells_one_story_on_both_backends(backend: Backend) {
    let (store, _dir, _pg) = open(backend).await;

    // Users and tokens. The first admin exists once, however often bootstrap runs.
    assert!(
        store
            .bootstrap_admin("tok-admin", "hash-admin")
            .await
            .expect("bootstrap")
    );
    assert!(
        !store
            .bootstrap_admin("tok-2", "hash-2")
            .await
            .expect("bootstrap again")
    );
    let admin = store
        .authenticate("hash-admin")
        .await
        .expect("authenticate")
        .expect("the admin's token");
    assert!(admin.server_admin);
    assert_eq!(admin.username, "admin");
    assert!(store.authenticate("hash-2").await.expect("read").is_none());

    let alice = store.create_user("alice").await.expect("alice");
    assert!(!alice.server_admin);
    assert_eq!(
        field_of(store.create_user("ALICE").await.expect_err("taken")),
        "username"
    );
    assert_eq!(
        store
            .user_by_name("alice")
            .await
            .expect("read")
            .map(|u| u.id),
        Some(alice.id)
    );
    assert!(store.user_by_name("nobody").await.expect("read").is_none());
    store
        .create_token(alice.id, "tok-a1", "hash-a1")
        .await
        .expect("token");
    store
        .create_token(alice.id, "tok-a2", "hash-a2")
        .await
        .expect("token");
    assert_eq!(store.count_active_tokens(alice.id).await.expect("count"), 2);
    assert!(
        store
            .revoke_token(alice.id, "tok-a1")
            .await
            .expect("revoke")
    );
    assert!(
        !store
            .revoke_token(admin.user_id, "tok-a2")
            .await
            .expect("not hers")
    );
    assert!(store.authenticate("hash-a1").await.expect("read").is_none());
    let tokens = store.list_tokens(alice.id).await.expect("list");
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        tokens.iter().filter(|t| t.revoked_at.is_some()).count(),
        1,
        "{tokens:?}"
    );
    let alice_caller: Caller = store
        .authenticate("hash-a2")
        .await
        .expect("read")
        .expect("her live token");

    // Sessions: live until they expire or their token is revoked.
    let hour = 3_600_000_000;
    store
        .create_session("sess-live", &alice_caller, "csrf-1", now_micros() + hour)
        .await
        .expect("session");
    store
        .create_session("sess-old", &alice_caller, "csrf-2", now_micros() - 1)
        .await
        .expect("expired session");
    let (who, csrf) = store
        .session("sess-live")
        .await
        .expect("read")
        .expect("live");
    assert_eq!((who.user_id, csrf.as_str()), (alice.id, "csrf-1"));
    assert!(store.session("sess-old").await.expect("read").is_none());
    store.delete_session("sess-live").await.expect("sign out");
    assert!(store.session("sess-live").await.expect("read").is_none());

    // Workspaces and members. A workspace never loses its last admin.
    let ws = store
        .create_workspace("ml", admin.user_id)
        .await
        .expect("ws");
    assert_eq!(
        field_of(
            store
                .create_workspace("ML", alice.id)
                .await
                .expect_err("taken")
        ),
        "name"
    );
    assert!(
        store
            .workspace_access(alice.id, false, "ml")
            .await
            .expect("read")
            .is_none(),
        "a non-member does not see it"
    );
    let seen = store
        .workspace_access(alice.id, true, "ml")
        .await
        .expect("read")
        .expect("a server admin sees every workspace");
    assert_eq!(seen.role, Role::Admin);
    assert!(
        store
            .set_member(ws.id, admin.user_id, Role::Member, "admin")
            .await
            .expect("write")
            .is_err(),
        "the last admin cannot step down"
    );
    let member = store
        .set_member(ws.id, alice.id, Role::Member, "admin")
        .await
        .expect("write")
        .expect("added");
    assert_eq!(
        (member.username.as_str(), member.role),
        ("alice", Role::Member)
    );
    assert_eq!(
        store
            .workspace_access(alice.id, false, "ml")
            .await
            .expect("read")
            .map(|w| w.role),
        Some(Role::Member)
    );
    assert_eq!(store.workspaces_of(alice.id).await.expect("read").len(), 1);
    let names: Vec<String> = store
        .list_members(ws.id)
        .await
        .expect("read")
        .into_iter()
        .map(|m| m.username)
        .collect();
    assert_eq!(names, ["admin", "alice"]);
    assert!(
        store
            .remove_member(ws.id, admin.user_id, "admin")
            .await
            .expect("write")
            .is_err(),
        "the last admin cannot leave"
    );
    assert!(
        store
            .remove_member(ws.id, alice.id, "admin")
            .await
            .expect("write")
            .expect("removed")
    );
    assert!(
        !store
            .remove_member(ws.id, alice.id, "admin")
            .await
            .expect("write")
            .expect("gone")
    );

    // Statuses: the defaults, replaced, but never dropping one a version has.
    let defaults = store.statuses(ws.id).await.expect("read");
    assert_eq!(defaults, StatusDef::defaults());

    // Models.
    let model = store
        .create_model(ws.id, "resnet", "a classifier", "admin")
        .await
        .expect("model");
    assert_eq!(
        field_of(
            store
                .create_model(ws.id, "ResNet", "", "admin")
                .await
                .expect_err("taken")
        ),
        "name"
    );
    store
        .create_model(ws.id, "bert", "", "admin")
        .await
        .expect("model");
    store
        .create_model(ws.id, "res_50%", "", "admin")
        .await
        .expect("model");
    let all: Vec<String> = store
        .list_models(ws.id, None, None, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(all, ["bert", "res_50%", "resnet"]);
    let after: Vec<String> = store
        .list_models(ws.id, Some("bert"), None, 1)
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(after, ["res_50%"]);
    // `%` and `_` are literal in a search, and case does not matter.
    let found: Vec<String> = store
        .list_models(ws.id, None, Some("S_50%"), 10)
        .await
        .expect("search")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(found, ["res_50%"]);
    let mref = ModelRef {
        workspace_id: ws.id,
        workspace_name: ws.name.clone(),
        model_id: model.id,
        model_name: model.name.clone(),
    };
    let version = store
        .create_version(
            &mref,
            &NewVersion {
                version: VersionNumber::parse("version", "1.2.0").expect("semver"),
                tags: vec![Tag::parse("tags", "prod").expect("tag")],
                status: Some("Staging".into()),
                source_experiment_key: None,
                description: String::new(),
                created_by: "admin".into(),
            },
        )
        .await
        .expect("version");
    assert_eq!(version.version, "1.2.0");
    let got = store
        .get_model(ws.id, "resnet")
        .await
        .expect("read")
        .expect("there");
    assert_eq!(
        got.latest,
        Some(("1.2.0".into(), Some("Staging".into()), vec!["prod".into()]))
    );
    let renamed = store
        .update_model(
            &mref,
            &ModelPatch {
                name: None,
                description: Some("now described".into()),
            },
        )
        .await
        .expect("update");
    assert_eq!(
        (renamed.name.as_str(), renamed.description.as_str()),
        ("resnet", "now described")
    );
    assert_eq!(
        field_of(
            store
                .update_model(
                    &mref,
                    &ModelPatch {
                        name: Some("BERT".into()),
                        description: None,
                    },
                )
                .await
                .expect_err("taken")
        ),
        "name"
    );
    // A status a version has cannot be dropped.
    let only_dev = vec![StatusDef {
        name: "Development".into(),
        review_required: false,
    }];
    assert_eq!(
        store.set_statuses(ws.id, &only_dev).await.expect("write"),
        Err("Staging".to_owned())
    );
    assert_eq!(
        store.statuses(ws.id).await.expect("read"),
        StatusDef::defaults()
    );
    assert_eq!(
        store.delete_model(&mref, "admin").await.expect("delete"),
        DeleteModel::HasVersions
    );

    // The model scope: one read, the same answers as the three it replaces.
    let scope = store
        .model_scope("hash-a2", "ml", "resnet")
        .await
        .expect("read")
        .expect("a live token");
    assert!(scope.workspace.is_none(), "alice is no longer a member");
    assert!(scope.model.is_none());
    let scope = store
        .model_scope("hash-admin", "ml", "resnet")
        .await
        .expect("read")
        .expect("a live token");
    assert_eq!(scope.workspace.map(|w| w.role), Some(Role::Admin));
    assert_eq!(scope.model, Some((model.id, "resnet".into())));
    assert!(
        store
            .model_scope("hash-a1", "ml", "resnet")
            .await
            .expect("read")
            .is_none()
    );

    // A model without versions goes, and its name is free again.
    let bert = store
        .model_id(ws.id, "bert")
        .await
        .expect("read")
        .expect("bert");
    let bert_ref = ModelRef {
        workspace_id: ws.id,
        workspace_name: ws.name.clone(),
        model_id: bert.0,
        model_name: bert.1,
    };
    assert_eq!(
        store
            .delete_model(&bert_ref, "admin")
            .await
            .expect("delete"),
        DeleteModel::Deleted
    );
    assert!(store.model_id(ws.id, "bert").await.expect("read").is_none());
    store
        .create_model(ws.id, "BERT", "", "admin")
        .await
        .expect("the name is free");
    store.close().await;
}

conformance!(the_delivery_queue_is_vacuumed_where_dead_rows_stay);
async fn the_delivery_queue_is_vacuumed_where_dead_rows_stay(backend: Backend) {
    use berth::store::Tending;
    use sqlx::Connection;
    let (store, _dir, pg) = open(backend).await;
    let Some(pg) = pg else {
        // SQLite keeps no dead row versions: there is never anything to tend.
        assert_eq!(
            store.tend_queue(0).await.expect("tend"),
            Tending::NothingToTend
        );
        store.close().await;
        return;
    };
    async fn vacuums(url: &str) -> i64 {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        let n: i64 = sqlx::query_scalar(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'deliveries'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("vacuum count");
        let _ = conn.close().await;
        n
    }
    let before = vacuums(&pg.url).await;
    // Fewer dead rows than the threshold: nothing is done.
    assert!(matches!(
        store.tend_queue(u64::MAX).await.expect("tend"),
        Tending::Clean { .. }
    ));
    assert_eq!(vacuums(&pg.url).await, before);
    // At the threshold the table is vacuumed, and PostgreSQL counts the vacuum.
    assert!(matches!(
        store.tend_queue(0).await.expect("tend"),
        Tending::Vacuumed { .. }
    ));
    assert_eq!(vacuums(&pg.url).await, before + 1);

    // A user who does not own the table may not vacuum it, and is told so.
    let role = format!("berth_nonowner_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(&pg.url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} LOGIN")))
        .execute(&mut admin)
        .await
        .expect("create role");
    let (_, rest) = pg.url.split_once('@').expect("URL has a user");
    let other_url = format!("postgres://{role}@{rest}");
    let other = Store::open_postgres(&other_url, 1, Duration::from_secs(10))
        .await
        .expect("open as another user");
    let answer = other.tend_queue(0).await;
    other.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(&mut admin)
        .await
        .expect("drop role");
    let _ = admin.close().await;
    assert_eq!(answer.expect("tend"), Tending::NotPermitted);
    assert_eq!(vacuums(&pg.url).await, before + 1);
    store.close().await;
}
