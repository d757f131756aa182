//! The web UI in a real Chromium (Debian's `chromium`, headless), driven over CDP against a
//! real `berth` on 127.0.0.1 and a real webhook receiver: sign in, create a model and a
//! version, create a webhook in the modal, test it, copy the full response, edit it, receive
//! a real event, open its delivery, redeliver, disable, delete. A console error or an asset
//! that fails to load fails the test. Screenshots land in `target/screenshots/`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::browser::{
    PermissionDescriptor, PermissionSetting, SetPermissionParams,
};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::network::{EventLoadingFailed, EventResponseReceived};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::{Page, ScreenshotParams};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, TestReceiver};

const CHROMIUM: &str = "/usr/bin/chromium";

struct Ui {
    page: Page,
    base: String,
    problems: Arc<Mutex<Vec<String>>>,
    shots: std::path::PathBuf,
}

impl Ui {
    async fn goto(&self, path: &str) {
        self.page
            .goto(format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("goto {path}: {e}"));
        self.wait_until("document.readyState === 'complete'").await;
    }

    /// Polls a JS boolean expression until it holds (10 s), tolerating page reloads.
    async fn wait_until(&self, condition: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = self.page.evaluate(format!("!!({condition})")).await
                && r.into_value::<bool>().unwrap_or(false)
            {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let page = self
                    .page
                    .evaluate("document.body ? document.body.innerText : ''")
                    .await
                    .ok()
                    .and_then(|r| r.into_value::<String>().ok())
                    .unwrap_or_default();
                panic!("timed out waiting for: {condition}\n--- page text ---\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Marks the current document, so `wait_reloaded` can tell when a new one replaced it.
    async fn mark(&self) {
        self.eval("window.__berthMark = true").await;
    }

    /// Waits until the marked document was replaced (the page reloaded after an action).
    async fn wait_reloaded(&self) {
        self.wait_until("!window.__berthMark && document.readyState === 'complete'")
            .await;
    }

    async fn eval(&self, expr: &str) -> Value {
        self.page
            .evaluate(expr.to_owned())
            .await
            .unwrap_or_else(|e| panic!("eval {expr}: {e}"))
            .into_value::<Value>()
            .unwrap_or(Value::Null)
    }

    async fn click(&self, css: &str) {
        self.wait_until(&format!("document.querySelector({css:?})"))
            .await;
        self.page
            .find_element(css)
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Types `text` into the field `css`. The page may still be replacing its document
    /// when the field first shows (a navigation just committed), so the element found can go
    /// stale under us: then the field is emptied and found again, a few times.
    async fn type_into(&self, css: &str, text: &str) {
        let mut last_error = String::new();
        for _ in 0..5 {
            self.wait_until(&format!(
                "document.readyState === 'complete' && document.querySelector({css:?})"
            ))
            .await;
            let typed = async {
                let el = self.page.find_element(css).await?;
                el.click().await?;
                el.type_str(text).await?;
                Ok::<(), chromiumoxide::error::CdpError>(())
            };
            match typed.await {
                Ok(()) => return,
                Err(e) => last_error = e.to_string(),
            }
            self.eval(&format!(
                "(e => e && (e.value = ''))(document.querySelector({css:?}))"
            ))
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("typing into {css} failed: {last_error}");
    }

    async fn text(&self, css: &str) -> String {
        self.wait_until(&format!("document.querySelector({css:?})"))
            .await;
        self.eval(&format!("document.querySelector({css:?}).innerText"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn shot(&self, name: &str) {
        let _ = self.page.evaluate("window.scrollTo(0, 0)").await;
        let png = self
            .page
            .screenshot(ScreenshotParams::builder().full_page(true).build())
            .await
            .expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }

    fn assert_clean(&self) {
        let problems = self.problems.lock().expect("lock").clone();
        assert!(problems.is_empty(), "the browser reported: {problems:#?}");
    }
}

async fn launch(app: &TestApp) -> (Browser, Ui, tokio::task::JoinHandle<()>) {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: scripts/test.sh installs it (apt-get install chromium)"
    );
    let profile = tempfile::tempdir().expect("profile dir").keep();
    let config = BrowserConfig::builder()
        .chrome_executable(CHROMIUM)
        .no_sandbox()
        .user_data_dir(&profile)
        .args([
            "--headless",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .window_size(1280, 800)
        .viewport(Viewport {
            width: 1280,
            height: 800,
            ..Viewport::default()
        })
        .request_timeout(Duration::from_secs(30))
        .build()
        .expect("browser config");
    let (browser, mut handler) = Browser::launch(config).await.expect("launch chromium");
    let handle = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page("about:blank").await.expect("new page");
    let problems = Arc::new(Mutex::new(Vec::new()));

    let mut console = page
        .event_listener::<EventConsoleApiCalled>()
        .await
        .expect("console events");
    let p = problems.clone();
    tokio::spawn(async move {
        while let Some(e) = console.next().await {
            if matches!(
                e.r#type,
                ConsoleApiCalledType::Error | ConsoleApiCalledType::Assert
            ) {
                let text: Vec<String> = e
                    .args
                    .iter()
                    .map(|a| {
                        a.value
                            .as_ref()
                            .map(|v| v.to_string())
                            .or_else(|| a.description.clone())
                            .unwrap_or_default()
                    })
                    .collect();
                p.lock()
                    .expect("lock")
                    .push(format!("console.error: {}", text.join(" ")));
            }
        }
    });
    let mut exceptions = page
        .event_listener::<EventExceptionThrown>()
        .await
        .expect("exception events");
    let p = problems.clone();
    tokio::spawn(async move {
        while let Some(e) = exceptions.next().await {
            p.lock()
                .expect("lock")
                .push(format!("exception: {}", e.exception_details.text));
        }
    });
    let mut responses = page
        .event_listener::<EventResponseReceived>()
        .await
        .expect("response events");
    let p = problems.clone();
    tokio::spawn(async move {
        while let Some(e) = responses.next().await {
            let url = &e.response.url;
            let asset = url.contains("/static/") || url.ends_with("favicon.ico");
            if asset && e.response.status >= 400 {
                p.lock()
                    .expect("lock")
                    .push(format!("asset {url} answered {}", e.response.status));
            }
        }
    });
    let mut failed = page
        .event_listener::<EventLoadingFailed>()
        .await
        .expect("loading events");
    let p = problems.clone();
    tokio::spawn(async move {
        while let Some(e) = failed.next().await {
            if !e.canceled.unwrap_or(false) {
                p.lock()
                    .expect("lock")
                    .push(format!("load failed: {}", e.error_text));
            }
        }
    });

    // A Content-Security-Policy violation (an inline style or script the policy refuses) is a
    // problem too: Chromium only logs it, so every page reports it as a console error.
    page.evaluate_on_new_document(
        "document.addEventListener('securitypolicyviolation', e => console.error(\
         'CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber))",
    )
    .await
    .expect("CSP listener");
    for name in ["clipboard-read", "clipboard-write"] {
        let params = SetPermissionParams::builder()
            .permission(PermissionDescriptor::new(name))
            .setting(PermissionSetting::Granted)
            .origin(app.base.clone())
            .build()
            .expect("permission params");
        browser
            .execute(params)
            .await
            .expect("grant clipboard permission");
    }

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let ui = Ui {
        page,
        base: app.base.clone(),
        problems,
        shots,
    };
    (browser, ui, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_end_to_end_in_chromium() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let rx = TestReceiver::start().await;
    app.workspace("acme").await;
    let (mut browser, ui, handler) = launch(&app).await;

    // Sign in.
    ui.goto("/").await;
    ui.wait_until("location.pathname === '/login'").await;
    ui.shot("01-sign-in").await;
    ui.type_into("#token", ADMIN_TOKEN).await;
    ui.click("#sign-in").await;
    ui.wait_until("location.pathname === '/w/acme'").await;
    ui.wait_until("document.querySelector('#ws-switch')").await;

    // Create a model on the Model Registry page.
    ui.click("#create-model-open").await;
    ui.type_into("#model-name", "fraud-detector").await;
    ui.type_into("#model-description", "Scores card transactions")
        .await;
    ui.click("#create-model-form button[type=submit]").await;
    ui.wait_until("location.pathname === '/w/acme/m/fraud-detector'")
        .await;

    // Add a version on the Versions tab.
    ui.type_into("#v-version", "1.0.0").await;
    ui.type_into("#v-tags", "nlp, candidate").await;
    ui.type_into("#v-exp", "711e50b9e477498b91d32c024ffc802e")
        .await;
    ui.click("#add-version-form button[type=submit]").await;
    ui.wait_until("document.querySelector('tr[data-version=\"1.0.0\"]')")
        .await;
    ui.shot("03-model-versions").await;
    // A bad version is refused beside its field, and the form keeps what was typed.
    ui.type_into("#v-version", "not-semver").await;
    ui.click("#add-version-form button[type=submit]").await;
    ui.wait_until("document.querySelector('.field-error[data-for=version]').innerText.includes('semantic version')")
        .await;
    assert_eq!(
        ui.eval("document.querySelector('#v-version').value").await,
        "not-semver"
    );

    // Set a status from the select; a member's request for Production shows up for the admin
    // with Approve, which sets it.
    ui.mark().await;
    ui.eval(
        "(() => { const s = document.querySelector('.status-select[data-version=\"1.0.0\"]'); \
         s.value = 'Staging'; s.dispatchEvent(new Event('change')); })()",
    )
    .await;
    ui.wait_reloaded().await;
    assert_eq!(
        ui.eval("document.querySelector('.status-select[data-version=\"1.0.0\"]').value")
            .await,
        "Staging"
    );
    let member = app.user("mia").await;
    app.add_member("acme", "mia", "member").await;
    let (s, _) = app
        .post(
            &member,
            "/api/v1/workspaces/acme/models/fraud-detector/versions/1.0.0/status-requests",
            json!({"status": "Production", "comment": "ready"}),
        )
        .await;
    assert_eq!(s, 201);
    ui.goto("/w/acme/m/fraud-detector").await;
    let pending = ui.text("#pending-requests").await;
    assert!(
        pending.contains("Production") && pending.contains("mia"),
        "{pending}"
    );
    ui.click("#pending-requests [data-approve]").await;
    ui.wait_until("!document.querySelector('#pending-requests') && document.querySelector('.status-select[data-version=\"1.0.0\"]').value === 'Production'")
        .await;

    // The registry lists the model with its latest version.
    ui.goto("/w/acme").await;
    let row = ui.text("#models tbody tr").await;
    assert!(
        row.contains("fraud-detector") && row.contains("1.0.0"),
        "{row}"
    );
    ui.shot("02-model-registry").await;

    // Create a webhook in the modal: two headers and a secret.
    ui.goto("/w/acme/m/fraud-detector?tab=webhooks").await;
    ui.click("#create-webhook").await;
    ui.wait_until("!document.querySelector('#webhook-modal').hidden")
        .await;
    ui.type_into("#wh-name", "ci-hook").await;
    ui.type_into("#wh-url", &format!("{}/hook", rx.url)).await;
    ui.type_into("#wh-secret", "s3cret-from-ui").await;
    ui.click("input[name=triggers][value=MODEL_VERSION_CREATED]")
        .await;
    ui.click("input[name=triggers][value=MODEL_TAG_CHANGED]")
        .await;
    ui.click("#add-header").await;
    ui.click("#add-header").await;
    ui.type_into(".header-row:nth-child(1) .h-name", "X-Team")
        .await;
    ui.type_into(".header-row:nth-child(1) .h-value", "ml-platform")
        .await;
    ui.type_into(".header-row:nth-child(2) .h-name", "X-Env")
        .await;
    ui.type_into(".header-row:nth-child(2) .h-value", "staging")
        .await;
    ui.click("#wh-github").await;
    let snippet = ui.text("#gh-snippet").await;
    assert!(
        snippet.contains("repository_dispatch")
            && snippet.contains("MODEL_VERSION_CREATED, MODEL_TAG_CHANGED"),
        "{snippet}"
    );
    ui.shot("04-webhook-modal-github").await;
    // With GitHub Actions on, our receiver URL is refused beside the URL field.
    ui.click("#wh-save").await;
    ui.wait_until(
        "document.querySelector('.field-error[data-for=url]').innerText.includes('GitHub')",
    )
    .await;
    ui.click("#wh-github").await;
    ui.shot("05-webhook-modal").await;
    // Tab from the last control wraps to the first: focus stays in the modal.
    ui.page
        .find_element("#wh-save")
        .await
        .expect("save")
        .focus()
        .await
        .expect("focus");
    ui.page
        .find_element("#wh-save")
        .await
        .expect("save")
        .press_key("Tab")
        .await
        .expect("tab");
    ui.wait_until("document.querySelector('#webhook-modal').contains(document.activeElement)")
        .await;
    ui.click("#wh-save").await;
    ui.wait_until("document.querySelector('tr[data-webhook]')")
        .await;
    let row = ui.text("tr[data-webhook]").await;
    assert!(row.contains("ci-hook") && row.contains("enabled"), "{row}");
    ui.shot("06-webhooks-tab").await;

    // Test it from the ⋮ menu, opened with the keyboard.
    ui.page
        .find_element("tr[data-webhook] .kebab")
        .await
        .expect("kebab")
        .focus()
        .await
        .expect("focus");
    ui.page
        .find_element("tr[data-webhook] .kebab")
        .await
        .expect("kebab")
        .press_key("Enter")
        .await
        .expect("enter");
    ui.wait_until("!document.querySelector('tr[data-webhook] .menu-items').hidden")
        .await;
    ui.click("tr[data-webhook] [data-action=test]").await;
    ui.wait_until("document.querySelector('tr[data-webhook] [data-test-badge]')")
        .await;
    let badge = ui
        .eval("document.querySelector('tr[data-webhook] [data-test-badge]').dataset.testBadge")
        .await;
    assert_eq!(badge, "success");
    let tip = ui.text("tr[data-webhook] .tooltip").await;
    assert!(tip.contains("Status: 200"), "{tip}");
    assert!(tip.contains("Duration:"), "{tip}");
    ui.shot("07-test-tooltip").await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["eventTrigger"], "TEST");
    assert_eq!(
        got[0].header("authorization").as_deref(),
        Some("s3cret-from-ui")
    );
    assert_eq!(got[0].header("x-team").as_deref(), Some("ml-platform"));
    assert_eq!(got[0].header("x-env").as_deref(), Some("staging"));

    // Copy full response: the clipboard holds the whole JSON result.
    ui.click("tr[data-webhook] [data-copy-response]").await;
    let copied = ui
        .page
        .evaluate_function("async () => await navigator.clipboard.readText()")
        .await
        .expect("read clipboard")
        .into_value::<String>()
        .expect("clipboard text");
    let copied: Value = serde_json::from_str(&copied).expect("clipboard holds JSON");
    assert_eq!(copied["success"], true);
    assert_eq!(copied["statusCode"], 200);
    assert!(copied["request"]["headers"]["Authorization"] == "********");
    assert_eq!(copied["response"]["body"], "ok");

    // A failing test shows a failure badge with the status and the body.
    rx.script([crate::helpers::Reply::status(500).body("receiver exploded")]);
    ui.click("tr[data-webhook] .kebab").await;
    ui.click("tr[data-webhook] [data-action=test]").await;
    ui.wait_until("document.querySelector('tr[data-webhook] [data-test-badge=failure]')")
        .await;
    let tip = ui.text("tr[data-webhook] .tooltip").await;
    assert!(
        tip.contains("500") && tip.contains("receiver exploded"),
        "{tip}"
    );
    ui.shot("08-test-failure-tooltip").await;

    // Escape closes the modal.
    ui.click("#create-webhook").await;
    ui.wait_until("!document.querySelector('#webhook-modal').hidden")
        .await;
    ui.page
        .find_element("#wh-name")
        .await
        .expect("name")
        .press_key("Escape")
        .await
        .expect("escape");
    ui.wait_until("document.querySelector('#webhook-modal').hidden")
        .await;

    // Edit: rename, keep the secret (blank field), and test from the modal.
    ui.click("tr[data-webhook] .kebab").await;
    ui.click("tr[data-webhook] [data-action=edit]").await;
    ui.wait_until("!document.querySelector('#webhook-modal').hidden")
        .await;
    assert_eq!(
        ui.eval("document.querySelector('#wh-name').value").await,
        "ci-hook"
    );
    ui.eval("document.querySelector('#wh-name').value = ''")
        .await;
    ui.type_into("#wh-name", "ci-hook-renamed").await;
    ui.click("#wh-test").await;
    ui.wait_until("document.querySelector('#modal-test-result [data-test-badge=success]')")
        .await;
    ui.click("#wh-save").await;
    ui.wait_until("document.querySelector('tr[data-webhook]') && document.querySelector('tr[data-webhook]').innerText.includes('ci-hook-renamed')")
        .await;
    let n = rx.received().len();
    let got = rx.wait_for(n, Duration::from_secs(1)).await;
    assert_eq!(
        got.last()
            .and_then(|r| r.header("authorization"))
            .as_deref(),
        Some("s3cret-from-ui"),
        "the stored secret is still sent after an edit"
    );

    // Moving the URL to another origin asks for the secret again: the modal says so, and a
    // save without it is refused under the secret field (nothing changes).
    ui.click("tr[data-webhook] .kebab").await;
    ui.click("tr[data-webhook] [data-action=edit]").await;
    ui.wait_until("!document.querySelector('#webhook-modal').hidden")
        .await;
    ui.eval("document.querySelector('#wh-url').value = ''")
        .await;
    ui.type_into("#wh-url", "http://127.0.0.1:9/elsewhere")
        .await;
    ui.wait_until("document.querySelector('#secret-hint').innerText.includes('another origin')")
        .await;
    assert_eq!(
        ui.eval("document.querySelector('#wh-secret').required")
            .await,
        Value::Bool(true)
    );
    ui.click("#wh-save").await;
    ui.wait_until("document.querySelector('[data-for=secret]').innerText.includes('origin')")
        .await;
    ui.shot("08b-secret-asked-again").await;
    ui.click("#wh-cancel").await;
    ui.wait_until("document.querySelector('#webhook-modal').hidden")
        .await;

    // A real event: add a version in the UI; the webhook receives it.
    ui.goto("/w/acme/m/fraud-detector").await;
    ui.type_into("#v-version", "1.1.0").await;
    ui.mark().await;
    ui.click("#add-version-form button[type=submit]").await;
    ui.wait_reloaded().await;
    let before = n;
    let got = rx.wait_for(before + 1, Duration::from_secs(10)).await;
    let event = got
        .iter()
        .find(|r| r.json()["eventTrigger"] == "MODEL_VERSION_CREATED")
        .expect("a MODEL_VERSION_CREATED delivery");
    assert_eq!(event.json()["version"], "1.1.0");
    let webhook_id = event.header("webhook-id").expect("webhook-id");

    // Its delivery, opened; then redelivered with the same webhook-id.
    let hooks_path = "/api/v1/workspaces/acme/models/fraud-detector/webhooks";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = app.get(ADMIN_TOKEN, hooks_path).await;
        if list["items"][0]["lastDelivery"]["state"] == "succeeded" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery not recorded: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ui.goto("/w/acme/m/fraud-detector?tab=webhooks").await;
    ui.wait_until("document.querySelector('tr[data-webhook]').innerText.includes('succeeded')")
        .await;
    ui.click("tr[data-webhook] .kebab").await;
    ui.click("tr[data-webhook] [data-action=deliveries]").await;
    ui.wait_until("location.pathname.endsWith('/deliveries')")
        .await;
    ui.wait_until("document.querySelector('#delivery-chart')")
        .await;
    ui.click("tr.delivery").await;
    ui.wait_until("!document.querySelector('#delivery-detail').hidden")
        .await;
    let detail = ui.text("#delivery-detail").await;
    assert!(detail.contains("MODEL_VERSION_CREATED"), "{detail}");
    assert!(detail.contains("Authorization: ********"), "{detail}");
    assert!(
        !detail.contains("s3cret-from-ui"),
        "the secret is never shown"
    );
    ui.shot("09-deliveries").await;
    let count = rx.received().len();
    ui.mark().await;
    ui.click("#redeliver").await;
    ui.wait_reloaded().await;
    let got = rx.wait_for(count + 1, Duration::from_secs(10)).await;
    assert_eq!(
        got.last().and_then(|r| r.header("webhook-id")),
        Some(webhook_id),
        "redelivery keeps the webhook-id"
    );

    // Disable, then delete with a confirmation.
    ui.goto("/w/acme/m/fraud-detector?tab=webhooks").await;
    ui.click("tr[data-webhook] .kebab").await;
    ui.click("tr[data-webhook] [data-action=toggle]").await;
    ui.wait_until("document.querySelector('tr[data-webhook]').innerText.includes('disabled')")
        .await;
    ui.click("tr[data-webhook] .kebab").await;
    ui.click("tr[data-webhook] [data-action=delete]").await;
    ui.wait_until("document.querySelector('#confirm-dialog')")
        .await;
    ui.shot("10-delete-confirmation").await;
    ui.click("#confirm-yes").await;
    ui.wait_until("!document.querySelector('tr[data-webhook]')")
        .await;
    let (_, list) = app
        .get(
            ADMIN_TOKEN,
            "/api/v1/workspaces/acme/models/fraud-detector/webhooks",
        )
        .await;
    assert_eq!(list["items"], json!([]));

    // Readable at phone width.
    ui.page
        .execute(
            SetDeviceMetricsOverrideParams::builder()
                .width(390)
                .height(844)
                .device_scale_factor(2.0)
                .mobile(true)
                .build()
                .expect("metrics"),
        )
        .await
        .expect("phone viewport");
    ui.goto("/w/acme/m/fraud-detector").await;
    ui.shot("11-phone-model-page").await;
    let overflow = ui
        .eval("document.documentElement.scrollWidth <= window.innerWidth + 1")
        .await;
    assert_eq!(
        overflow, true,
        "no horizontal scrolling of the page at phone width"
    );

    // Sign out.
    ui.click("#sign-out").await;
    ui.wait_until("location.pathname === '/login'").await;

    ui.assert_clean();
    let _ = browser.close().await;
    let _ = browser.wait().await;
    handler.abort();
    app.stop().await;
}

/// A webhook Berth disabled shows a banner and its reason on its row; the banner's button
/// re-enables it, and the receiver then gets what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disabled_banner_re_enables_and_sends_what_was_missed() {
    // One delivery in flight per webhook: what it missed then arrives strictly in order
    // (with more, several are sent at once, as the README says).
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.delivery.per_webhook_in_flight = 1;
    })
    .await;
    let rx = TestReceiver::start().await;
    rx.script([crate::helpers::Reply::status(410)]);
    app.workspace("acme").await;
    app.model("acme", "fraud").await;
    let hooks = "/api/v1/workspaces/acme/models/fraud/webhooks";
    let (_, hook) = app
        .post(
            ADMIN_TOKEN,
            hooks,
            json!({"name": "ci", "url": rx.url, "triggers": ["MODEL_VERSION_CREATED"]}),
        )
        .await;
    let hook_id = hook["id"].as_str().expect("id").to_owned();
    app.version("acme", "fraud", json!({"version": "1.0.0"}))
        .await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, w) = app.get(ADMIN_TOKEN, &format!("{hooks}/{hook_id}")).await;
        if w["enabled"] == false {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "410 did not disable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Missed while disabled.
    app.version("acme", "fraud", json!({"version": "1.1.0"}))
        .await;

    let (mut browser, ui, handler) = launch(&app).await;
    ui.goto("/").await;
    ui.wait_until("location.pathname === '/login'").await;
    ui.type_into("#token", ADMIN_TOKEN).await;
    ui.click("#sign-in").await;
    ui.wait_until("location.pathname === '/w/acme'").await;
    ui.goto("/w/acme/m/fraud?tab=webhooks").await;
    ui.wait_until("document.querySelector('.banner.warn [data-enable]')")
        .await;
    let banner = ui.text(".banner.warn").await;
    assert!(banner.contains("410 Gone"), "{banner}");
    let row = ui.text("tr[data-webhook]").await;
    assert!(
        row.contains("disabled") && row.contains("410 Gone") && row.contains("Re-enable"),
        "{row}"
    );
    ui.shot("12-disabled-banner").await;
    ui.mark().await;
    ui.click(".banner.warn [data-enable]").await;
    ui.wait_reloaded().await;
    ui.wait_until("!document.querySelector('.banner.warn')")
        .await;
    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    let versions: Vec<String> = got[1..]
        .iter()
        .map(|r| r.json()["version"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"], "what it missed, in order");
    ui.wait_until("document.querySelector('tr[data-webhook]').innerText.includes('enabled')")
        .await;

    ui.assert_clean();
    let _ = browser.close().await;
    let _ = browser.wait().await;
    handler.abort();
    app.stop().await;
}
