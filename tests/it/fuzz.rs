//! Schema fuzzing: schemathesis (`st`, installed by `scripts/test.sh` into
//! `target/schemathesis-venv`) against the served `/api/v1/openapi.json`, with the server
//! admin's token, every operation, a bounded number of examples, on SQLite and on PostgreSQL
//! (where text cannot hold NUL, among other differences), with every check schemathesis has
//! (`--checks all`). It fails on any 5xx, any answer that breaks its documented schema, headers
//! or content type, any undocumented status code, a schema-valid request refused with 400 or
//! 422 (positive data acceptance: the document must say every constraint a handler checks), a
//! schema-invalid one accepted (negative data rejection), and the other checks (unsupported
//! methods, missing headers, ignored auth, use after free).
//!
//! Network safety: the hooks in `tests/fuzz/hooks.py` rewrite every `url` field of every request
//! body to the loopback [`TestReceiver`] before it is sent, refuse to send anywhere but
//! loopback, and stop the schemathesis process from resolving any other host. The server
//! allows loopback targets (the harness sets `allowed_target_cidrs`). After the run, the test
//! reads the log of every body sent and checks that each `url` field was the receiver's.
//!
//! A missing `st` is a failure, never a skip. `BERTH_FUZZ_EXAMPLES` (default 100),
//! `BERTH_FUZZ_SEED`, `BERTH_FUZZ_PHASES` (default `examples,coverage,fuzzing`) and
//! `BERTH_FUZZ_CHECKS` (default `all`) tune a run;
//! `BERTH_FUZZ_OUTPUT=FILE` keeps schemathesis's whole report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::conformance;
use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, TestReceiver};

/// Where `scripts/test.sh` installs schemathesis (pinned there).
fn schemathesis() -> PathBuf {
    if let Ok(p) = std::env::var("BERTH_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis-venv/bin/st")
}

/// Every `url` field (any case, any depth) of a JSON value.
fn url_fields(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if k.eq_ignore_ascii_case("url") {
                    out.push(x.clone());
                } else {
                    url_fields(x, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| url_fields(x, out)),
        _ => {}
    }
}

/// Data for the fuzzer to find: workspace `fuzz`, model `m` with a version, a pending status
/// request, a webhook to the receiver, and the user `victim` (whose tokens the fuzzer may
/// revoke: it learns ids from answers, and would otherwise revoke the token it runs with).
async fn seed(app: &TestApp, receiver_url: &str) {
    app.user("victim").await;
    app.workspace("fuzz").await;
    app.model("fuzz", "m").await;
    app.version("fuzz", "m", json!({"version": "1.0.0", "tags": ["a"]}))
        .await;
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            "/api/v1/workspaces/fuzz/models/m/webhooks",
            json!({"name": "hook", "url": receiver_url, "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    assert_eq!(s.as_u16(), 201, "{b}");
    let (s, b) = app
        .post(
            ADMIN_TOKEN,
            "/api/v1/workspaces/fuzz/models/m/versions/1.0.0/status-requests",
            json!({"status": "Production"}),
        )
        .await;
    assert_eq!(s.as_u16(), 201, "{b}");
}

conformance!(schemathesis_finds_no_server_errors_or_schema_breaks);

async fn schemathesis_finds_no_server_errors_or_schema_breaks(backend: Backend) {
    let st = schemathesis();
    assert!(
        st.exists(),
        "schemathesis is missing at {}: run `bash scripts/test.sh`, which installs it (or set \
         BERTH_SCHEMATHESIS to an `st` binary)",
        st.display()
    );
    let receiver = TestReceiver::start().await;
    let receiver_url = format!("{}/fuzz", receiver.url);
    assert!(receiver_url.starts_with("http://127.0.0.1:"));
    // What tests/fuzz/hooks.py puts in a GitHub Actions webhook's `url`.
    let dispatch_url = format!("{}/repos/berth/fuzz/dispatches", receiver.url);
    let app = TestApp::spawn(backend).await;
    seed(&app, &receiver_url).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        "# Written by tests/it/fuzz.rs: aim the fuzzer at data that exists.\n\
         [parameters]\n\
         \"path.ws\" = \"fuzz\"\n\
         \"path.model\" = \"m\"\n\
         \"path.username\" = \"victim\"\n",
    )
    .expect("write config");
    let log = dir.path().join("sent.jsonl");
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/hooks.py");
    let examples = std::env::var("BERTH_FUZZ_EXAMPLES").unwrap_or_else(|_| "100".into());
    let seed = std::env::var("BERTH_FUZZ_SEED").unwrap_or_else(|_| "20261128".into());
    let phases =
        std::env::var("BERTH_FUZZ_PHASES").unwrap_or_else(|_| "examples,coverage,fuzzing".into());
    let checks = std::env::var("BERTH_FUZZ_CHECKS").unwrap_or_else(|_| "all".into());
    let mut cmd = tokio::process::Command::new(&st);
    cmd.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", app.base))
        .args([
            "--checks",
            &checks,
            "--phases",
            &phases,
            "--max-examples",
            &examples,
            "--seed",
            &seed,
            // One worker: Hypothesis's lambda-source cache is not thread-safe here and
            // sometimes fails a draw with "AST constructor recursion depth mismatch".
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--continue-on-failure",
            "--generation-database",
            "none",
            "--generation-with-security-parameters",
            "false",
            "--no-color",
            "--header",
            &format!("Authorization: Bearer {ADMIN_TOKEN}"),
        ])
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .env("BERTH_FUZZ_RECEIVER", &receiver_url)
        .env("BERTH_FUZZ_LOG", &log)
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .kill_on_drop(true);
    let started = std::time::Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(420), cmd.output())
        .await
        .expect("schemathesis took more than 7 minutes")
        .expect("running schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if let Ok(path) = std::env::var("BERTH_FUZZ_OUTPUT") {
        std::fs::write(path, &text).expect("write BERTH_FUZZ_OUTPUT");
    }
    eprintln!(
        "schemathesis ran for {:.0?}; its summary:\n{}",
        started.elapsed(),
        text.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Every body sent: each url field was the receiver's.
    let sent = std::fs::read_to_string(&log).unwrap_or_default();
    let mut bodies_with_urls = 0;
    for line in sent.lines() {
        let entry: Value = serde_json::from_str(line).expect("log line");
        let target = entry["url"].as_str().unwrap_or_default();
        assert!(
            target.starts_with(&app.base),
            "schemathesis sent a request elsewhere: {target}"
        );
        let Some(body) = entry["body"].as_str() else {
            continue;
        };
        let Ok(doc) = serde_json::from_str::<Value>(body) else {
            continue;
        };
        let mut urls = Vec::new();
        url_fields(&doc, &mut urls);
        for u in &urls {
            // The receiver's URL, or (for a GitHub Actions webhook, which needs a dispatch
            // path) its dispatch path on the same loopback receiver.
            assert!(
                u.as_str() == Some(receiver_url.as_str())
                    || u.as_str() == Some(dispatch_url.as_str()),
                "a body left with {u}"
            );
        }
        bodies_with_urls += usize::from(!urls.is_empty());
    }
    assert!(
        bodies_with_urls > 0,
        "no body with a url field was sent: are the hooks loaded?\n{text}"
    );
    // Every webhook request Berth made reached the receiver's path.
    for r in receiver.received() {
        assert!(
            r.path.starts_with("/fuzz") || r.path == "/repos/berth/fuzz/dispatches",
            "receiver got {}",
            r.path
        );
    }
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}):\n{text}",
        output.status.code()
    );
    app.stop().await;
}
