//! The audit log: every recorded action with its actor and target, newest-first paging and
//! filters, who may read it, that no secret ever reaches it, the worker's automatic disable
//! recorded as `system`, and the admins' HTML page.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, Reply, TestApp, TestReceiver, assert_error};

const WS: &str = "/api/v1/workspaces/acme";
const HOOKS: &str = "/api/v1/workspaces/acme/models/fraud/webhooks";
const VERSIONS: &str = "/api/v1/workspaces/acme/models/fraud/versions";

/// Every audit entry of acme, newest first, read two at a time; also the raw text of every
/// page, for the secret scan.
async fn all_audit(app: &TestApp, token: &str) -> (Vec<Value>, String) {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{WS}/audit?limit=2&cursor={c}"),
            None => format!("{WS}/audit?limit=2"),
        };
        let (s, b) = app.get(token, &path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        text.push_str(&b.to_string());
        out.extend(b["items"].as_array().expect("items").iter().cloned());
        match b["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    (out, text)
}

/// The entries with `action`.
fn with_action<'a>(entries: &'a [Value], action: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["action"] == action).collect()
}

/// The one entry with `action`, checked for its actor.
#[track_caller]
fn one<'a>(entries: &'a [Value], action: &str, actor: &str) -> &'a Value {
    let found = with_action(entries, action);
    assert_eq!(found.len(), 1, "{action}: {found:?}");
    assert_eq!(found[0]["actor"], actor, "{action}: {}", found[0]);
    assert!(
        found[0]["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{}",
        found[0]
    );
    found[0]
}

#[track_caller]
fn assert_absent(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!s.is_empty());
        assert!(!text.contains(s), "{s:?} leaked into the audit log: {text}");
    }
}

conformance!(records_each_action_with_actor_and_target);

async fn records_each_action_with_actor_and_target(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.add_member("acme", "alice", "member").await;
    app.add_member("acme", "bob", "admin").await;

    // Webhooks, configured by bob.
    let url = format!("{}/hook/pathtoken-QRS?k=querytoken-TUV", rx.url);
    let (s, hook) = app
        .post(
            &bob,
            HOOKS,
            json!({"name": "ci", "url": url, "secret": "s3cret-value-XYZ",
                   "triggers": ["MODEL_VERSION_CREATED", "MODEL_STATUS_CHANGED"],
                   "headers": {"X-Team": "hdr-value-ABC", "X-Gone": "hdr-value-GONE"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let id = hook["id"].as_str().expect("id").to_owned();
    // A duplicate name is refused, and its transaction leaves no audit row behind.
    let (s, _) = app
        .post(
            &bob,
            HOOKS,
            json!({"name": "ci", "url": url, "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let key_before = app
        .get(&bob, &format!("{HOOKS}/{id}/signing-secret"))
        .await
        .1["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let (s, b) = app
        .put(
            &bob,
            &format!("{HOOKS}/{id}"),
            json!({"name": "ci", "url": format!("{}/hook2", rx.url), "secret": "s3cret-value-NEW",
                   "triggers": ["MODEL_VERSION_CREATED", "MODEL_STATUS_CHANGED", "MODEL_TAG_CHANGED"],
                   "headers": {"X-Team": "hdr-value-DEF", "X-New": "hdr-value-GHI"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let put = |enabled: bool| {
        json!({"name": "ci", "url": format!("{}/hook2", rx.url),
               "triggers": ["MODEL_VERSION_CREATED", "MODEL_STATUS_CHANGED", "MODEL_TAG_CHANGED"],
               "headers": {"X-Team": "hdr-value-DEF", "X-New": "hdr-value-GHI"},
               "enabled": enabled})
    };
    let (s, b) = app.put(&bob, &format!("{HOOKS}/{id}"), put(false)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app.put(&bob, &format!("{HOOKS}/{id}"), put(true)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app.post_empty(&bob, &format!("{HOOKS}/{id}/test")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .post(
            &bob,
            &format!("{HOOKS}/test"),
            json!({"url": format!("{}/unsaved", rx.url), "secret": "s3cret-value-UNSAVED",
                   "headers": {"X-Try": "hdr-value-TRY"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The modal's Test of the webhook being edited: its target, but not its saved configuration.
    let (s, b) = app
        .post(
            &bob,
            &format!("{HOOKS}/test"),
            json!({"url": format!("{}/edited", rx.url), "webhookId": id}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, rotated) = app
        .post_empty(&bob, &format!("{HOOKS}/{id}/signing-secret/rotate"))
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let key_after = rotated["key"].as_str().expect("key").to_owned();

    // Versions and statuses.
    let (s, b) = app
        .post(&alice, VERSIONS, json!({"version": "1.0.0", "tags": ["a"]}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // A duplicate version fails inside the group commit; it leaves no audit row.
    let (s, _) = app
        .post(&alice, VERSIONS, json!({"version": "1.0.0"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, b) = app
        .patch(
            &alice,
            &format!("{VERSIONS}/1.0.0/tags"),
            json!({"add": ["b"], "remove": ["a"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for _ in 0..2 {
        // The second one changes nothing and records nothing.
        let (s, b) = app
            .put(
                &alice,
                &format!("{VERSIONS}/1.0.0/status"),
                json!({"status": "Staging"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, req) = app
        .post(
            &alice,
            &format!("{VERSIONS}/1.0.0/status-requests"),
            json!({"status": "Production", "comment": "ready"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{req}");
    let req_id = req["id"].as_str().expect("id").to_owned();
    let (s, b) = app
        .post_empty(&bob, &format!("{WS}/status-requests/{req_id}/approve"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, req2) = app
        .post(
            &alice,
            &format!("{VERSIONS}/1.0.0/status-requests"),
            json!({"status": "Development"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{req2}");
    let req2_id = req2["id"].as_str().expect("id").to_owned();
    let (s, b) = app
        .post_empty(&bob, &format!("{WS}/status-requests/{req2_id}/reject"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app.post(&bob, VERSIONS, json!({"version": "1.1.0"})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app
        .put(
            &bob,
            &format!("{VERSIONS}/1.1.0/status"),
            json!({"status": "Production"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Redeliver and replay, once a delivery exists.
    rx.wait_for(1, Duration::from_secs(10)).await;
    let (s, list) = app
        .get(&bob, &format!("{HOOKS}/{id}/deliveries?limit=1"))
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let delivery = list["items"][0]["id"]
        .as_str()
        .expect("delivery")
        .to_owned();
    let (s, b) = app
        .post_empty(
            &bob,
            &format!("{HOOKS}/{id}/deliveries/{delivery}/redeliver"),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, b) = app
        .post(
            &bob,
            &format!("{HOOKS}/{id}/replay"),
            json!({"since": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, _) = app.delete(&bob, &format!("{HOOKS}/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.delete(&bob, &format!("{VERSIONS}/1.1.0")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Models and members.
    let (s, b) = app
        .post(&bob, &format!("{WS}/models"), json!({"name": "scratch"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, _) = app.delete(&bob, &format!("{WS}/models/scratch")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = app
        .put(
            &bob,
            &format!("{WS}/members/alice"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = app.delete(&bob, &format!("{WS}/members/alice")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let (entries, text) = all_audit(&app, &bob).await;
    let ids: Vec<i64> = entries
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    let target = |e: &Value| e["target"].clone();
    let hook_target =
        json!({"model": "fraud", "version": null, "webhookId": id, "webhookName": "ci"});

    let e = one(&entries, "webhook.created", "bob");
    assert_eq!(target(e), hook_target);
    assert_eq!(e["details"]["hasSecret"], true, "{e}");
    assert_eq!(
        e["details"]["headerNames"],
        json!(["X-Gone", "X-Team"]),
        "{e}"
    );
    let host = rx.url.trim_start_matches("http://");
    assert_eq!(e["details"]["urlHost"], host, "{e}");

    let e = one(&entries, "webhook.updated", "bob");
    assert_eq!(target(e), hook_target);
    assert_eq!(
        e["details"]["changed"],
        json!(["url", "triggers", "headers", "secret"]),
        "{e}"
    );
    assert_eq!(e["details"]["headers"]["added"], json!(["X-New"]), "{e}");
    assert_eq!(e["details"]["headers"]["removed"], json!(["X-Gone"]), "{e}");
    assert_eq!(e["details"]["headers"]["changed"], json!(["X-Team"]), "{e}");
    assert_eq!(e["details"]["secret"], "replaced", "{e}");

    let e = one(&entries, "webhook.disabled", "bob");
    assert_eq!(target(e), hook_target);
    assert_eq!(e["details"]["reason"], "disabled by a user", "{e}");
    assert_eq!(target(one(&entries, "webhook.enabled", "bob")), hook_target);

    let tests = with_action(&entries, "webhook.tested");
    assert_eq!(tests.len(), 3, "{tests:?}");
    // Newest first: the edited webhook's form, the unsaved one, then the saved webhook.
    assert_eq!(tests[0]["details"]["saved"], false);
    assert_eq!(target(tests[0]), hook_target);
    assert_eq!(tests[1]["details"]["saved"], false);
    assert_eq!(
        target(tests[1]),
        json!({"model": "fraud", "version": null, "webhookId": null, "webhookName": null})
    );
    assert_eq!(tests[2]["details"]["saved"], true);
    assert_eq!(tests[2]["details"]["success"], true);
    assert_eq!(tests[2]["details"]["statusCode"], 200);
    assert_eq!(target(tests[2]), hook_target);
    assert!(tests.iter().all(|t| t["actor"] == "bob"));

    assert_eq!(
        target(one(&entries, "webhook.secret_rotated", "bob")),
        hook_target
    );
    let e = one(&entries, "webhook.redelivered", "bob");
    assert_eq!(e["details"]["deliveryId"], delivery.as_str(), "{e}");
    let e = one(&entries, "webhook.replayed", "bob");
    assert_eq!(e["details"]["since"], "2020-01-01T00:00:00Z", "{e}");
    assert_eq!(target(one(&entries, "webhook.deleted", "bob")), hook_target);

    let v100 =
        json!({"model": "fraud", "version": "1.0.0", "webhookId": null, "webhookName": null});
    let v110 =
        json!({"model": "fraud", "version": "1.1.0", "webhookId": null, "webhookName": null});
    // Version creation is in the event feed (with its author), not repeated here.
    assert!(with_action(&entries, "version.created").is_empty());
    let e = one(&entries, "version.tags_changed", "alice");
    assert_eq!(target(e), v100);
    assert_eq!(e["details"]["added"], json!(["b"]), "{e}");
    assert_eq!(e["details"]["removed"], json!(["a"]), "{e}");
    let e = one(&entries, "version.status_changed", "alice");
    assert_eq!(target(e), v100);
    assert_eq!(e["details"], json!({"from": null, "to": "Staging"}));
    let e = one(&entries, "version.status_forced", "bob");
    assert_eq!(target(e), v110);
    assert_eq!(e["details"]["to"], "Production");
    assert_eq!(target(one(&entries, "version.deleted", "bob")), v110);

    let requested = with_action(&entries, "status_request.created");
    assert_eq!(requested.len(), 2);
    assert!(
        requested
            .iter()
            .all(|r| r["actor"] == "alice" && target(r) == v100)
    );
    let e = one(&entries, "status_request.approved", "bob");
    assert_eq!(target(e), v100);
    assert_eq!(e["details"]["requestId"], req_id.as_str());
    assert_eq!(e["details"]["status"], "Production");
    assert_eq!(e["details"]["from"], "Staging");
    assert_eq!(e["details"]["requestedBy"], "alice");
    let e = one(&entries, "status_request.rejected", "bob");
    assert_eq!(e["details"]["requestId"], req2_id.as_str());

    let models = with_action(&entries, "model.created");
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["actor"], "bob");
    assert_eq!(models[0]["target"]["model"], "scratch");
    assert_eq!(models[1]["actor"], "admin");
    assert_eq!(models[1]["target"]["model"], "fraud");
    assert_eq!(
        one(&entries, "model.deleted", "bob")["target"]["model"],
        "scratch"
    );
    let added = with_action(&entries, "member.added");
    assert_eq!(added.len(), 2);
    assert_eq!(added[0]["details"]["username"], "bob");
    assert_eq!(added[1]["details"]["username"], "alice");
    assert!(added.iter().all(|a| a["actor"] == "admin"));
    let e = one(&entries, "member.role_changed", "bob");
    assert_eq!(
        e["details"],
        json!({"username": "alice", "role": "admin", "previousRole": "member"})
    );
    assert_eq!(
        one(&entries, "member.removed", "bob")["details"]["username"],
        "alice"
    );

    // Nothing secret, anywhere in any page.
    assert_absent(
        &text,
        &[
            "s3cret-value-XYZ",
            "s3cret-value-NEW",
            "s3cret-value-UNSAVED",
            "hdr-value-ABC",
            "hdr-value-GONE",
            "hdr-value-DEF",
            "hdr-value-GHI",
            "hdr-value-TRY",
            "pathtoken-QRS",
            "querytoken-TUV",
            &key_before,
            &key_before["whsec_".len()..],
            &key_after,
            &key_after["whsec_".len()..],
            ADMIN_TOKEN,
            &alice,
            &bob,
        ],
    );
    app.stop().await;
}

conformance!(pages_newest_first_with_filters);

async fn pages_newest_first_with_filters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    for i in 1..=7 {
        app.model("acme", &format!("m{i}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("{WS}/audit?limit=3&cursor={c}"),
            None => format!("{WS}/audit?limit=3"),
        };
        let (s, b) = app.get(ADMIN_TOKEN, &path).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        pages += 1;
        for e in b["items"].as_array().expect("items") {
            assert_eq!(e["action"], "model.created");
            seen.push(e["target"]["model"].as_str().expect("model").to_owned());
        }
        match b["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["m7", "m6", "m5", "m4", "m3", "m2", "m1"]);

    let (s, b) = app.get(ADMIN_TOKEN, &format!("{WS}/audit?model=m3")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b["items"][0]["target"]["model"], "m3");
    let (s, b) = app
        .get(
            ADMIN_TOKEN,
            &format!("{WS}/audit?action=model.created&limit=500"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"].as_array().map(Vec::len), Some(7));
    assert_eq!(b["nextCursor"], Value::Null);
    let (s, b) = app
        .get(ADMIN_TOKEN, &format!("{WS}/audit?action=webhook.deleted"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"], json!([]));

    for (query, field) in [
        ("action=webhook.exploded", "action"),
        ("model=not%20a%20name", "model"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=many", "limit"),
        ("cursor=%21%21", "cursor"),
    ] {
        let got = app.get(ADMIN_TOKEN, &format!("{WS}/audit?{query}")).await;
        assert_error(&got, 400, Some(field));
    }
    // Base64url, but not a cursor this server handed out: it names no page.
    let got = app
        .get(ADMIN_TOKEN, &format!("{WS}/audit?cursor=eyJ4IjoxfQ"))
        .await;
    assert_error(&got, 404, Some("cursor"));
    app.stop().await;
}

conformance!(only_admins_read_it);

async fn only_admins_read_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.workspace("acme").await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    app.add_member("acme", "alice", "member").await;
    app.add_member("acme", "bob", "admin").await;

    let (s, b) = app.get(&bob, &format!("{WS}/audit")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app.get(ADMIN_TOKEN, &format!("{WS}/audit")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_error(&app.get(&alice, &format!("{WS}/audit")).await, 403, None);
    assert_error(&app.get(&carol, &format!("{WS}/audit")).await, 404, None);
    assert_error(
        &app.get(&bob, "/api/v1/workspaces/nowhere/audit").await,
        404,
        None,
    );
    let no_token = app
        .call(reqwest::Method::GET, &format!("{WS}/audit"), None, None)
        .await;
    assert_error(&no_token, 401, None);
    // A server admin who is not a member reads it too.
    let (s, _) = app
        .delete(ADMIN_TOKEN, &format!("{WS}/members/admin"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = app.get(ADMIN_TOKEN, &format!("{WS}/audit")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"][0]["action"], "member.removed", "{b}");
    assert_eq!(b["items"][0]["details"]["username"], "admin", "{b}");
    app.stop().await;
}

conformance!(gone_disable_is_recorded_as_system);

async fn gone_disable_is_recorded_as_system(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    rx.default_reply(Reply::status(410));
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let (s, hook) = app
        .post(
            ADMIN_TOKEN,
            HOOKS,
            json!({"name": "gone", "url": format!("{}/hook", rx.url),
                   "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let id = hook["id"].as_str().expect("id").to_owned();
    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let entry = loop {
        let (s, b) = app
            .get(ADMIN_TOKEN, &format!("{WS}/audit?action=webhook.disabled"))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if let Some(e) = b["items"].as_array().and_then(|i| i.first()) {
            assert_eq!(b["items"].as_array().map(Vec::len), Some(1), "{b}");
            break e.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no webhook.disabled entry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(entry["actor"], "system", "{entry}");
    assert_eq!(
        entry["target"],
        json!({"model": "fraud", "version": null, "webhookId": id, "webhookName": "gone"})
    );
    assert!(
        entry["details"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("410")),
        "{entry}"
    );
    assert_eq!(entry["details"]["statusCode"], 410, "{entry}");
    assert!(entry["details"]["deliveryId"].is_string(), "{entry}");
    let (_, w) = app.get(ADMIN_TOKEN, &format!("{HOOKS}/{id}")).await;
    assert_eq!(w["enabled"], false, "{w}");
    app.stop().await;
}

async fn page(app: &TestApp, session: &str, path: &str) -> (StatusCode, String) {
    let resp = app
        .client
        .get(format!("{}{path}", app.base))
        .header("cookie", format!("berth_session={session}"))
        .send()
        .await
        .expect("page");
    let status = resp.status();
    (status, resp.text().await.expect("html"))
}

conformance!(admins_see_the_audit_page);

async fn admins_see_the_audit_page(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let rx = TestReceiver::start().await;
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.add_member("acme", "alice", "member").await;
    app.add_member("acme", "bob", "admin").await;
    let (s, b) = app
        .post(
            &bob,
            HOOKS,
            json!({"name": "ci", "url": format!("{}/hook", rx.url), "secret": "page-secret-XYZ",
                   "triggers": ["MODEL_VERSION_CREATED"], "headers": {"X-Team": "page-header-ABC"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let bob_session = app.sign_in(&bob).await;
    let (s, html) = page(&app, &bob_session, "/w/acme").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("id=\"audit-link\""), "admins see the link");
    let (s, html) = page(&app, &bob_session, "/w/acme/audit").await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("<h1>Audit log</h1>"), "{html}");
    assert!(html.contains("webhook.created"), "{html}");
    assert!(html.contains("member.added"), "{html}");
    assert!(!html.contains("<script>"), "no inline script: {html}");
    assert_absent(&html, &["page-secret-XYZ", "page-header-ABC", &bob, &alice]);
    // Paging: one entry per page, an "Older" link that works.
    let (s, html) = page(&app, &bob_session, "/w/acme/audit?limit=1").await;
    assert_eq!(s, StatusCode::OK);
    let older = html
        .split("id=\"audit-older\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an Older link")
        .replace("&amp;", "&");
    let (s, html) = page(&app, &bob_session, &older).await;
    assert_eq!(s, StatusCode::OK, "{older}: {html}");
    assert!(html.contains("audit-newest"), "{html}");
    // Filters.
    let (s, html) = page(
        &app,
        &bob_session,
        "/w/acme/audit?action=member.added&model=",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!html.contains("<code>webhook.created</code>"), "{html}");

    let alice_session = app.sign_in(&alice).await;
    let (s, html) = page(&app, &alice_session, "/w/acme").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!html.contains("audit-link"), "members see no link");
    let (s, _) = page(&app, &alice_session, "/w/acme/audit").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    app.stop().await;
}
