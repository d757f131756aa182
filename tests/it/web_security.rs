//! The web UI's browser protections: every answer forbids framing and carries a
//! Content-Security-Policy that allows only Berth's own script and style; cookies are `Secure`
//! when a trusted reverse proxy says the request came over HTTPS; a sign-in or sign-out POST
//! from a foreign page is refused. (The browser suite fails on any CSP violation, so the
//! pages themselves keep to the policy.)

use reqwest::StatusCode;
use reqwest::redirect::Policy;

use crate::helpers::{ADMIN_TOKEN, Backend, TestApp, cookie_value};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// The sign-in page's CSRF cookie (the double-submit token of its form).
async fn login_csrf(app: &TestApp, headers: &[(&str, &str)]) -> (String, Vec<String>) {
    let mut req = client().get(format!("{}/login", app.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("login page");
    assert_eq!(resp.status(), StatusCode::OK);
    let cookies = set_cookies(&resp);
    let csrf = cookie_value(&resp, "berth_login_csrf").expect("login csrf cookie");
    (csrf, cookies)
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

/// Posts the sign-in form with `headers` added; answers the response.
async fn sign_in(app: &TestApp, csrf: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}/login", app.base))
        .header("cookie", format!("berth_login_csrf={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}&csrf={csrf}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("sign in")
}

#[tokio::test]
async fn pages_forbid_framing_and_foreign_script_and_style() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let session = app.sign_in(ADMIN_TOKEN).await;
    app.workspace("w").await;
    app.model("w", "m").await;
    for path in [
        "/login",
        "/w/w",
        "/w/w/m/m",
        "/w/w/audit",
        "/static/app.js",
        "/w/nope",
    ] {
        let resp = client()
            .get(format!("{}{path}", app.base))
            .header("cookie", format!("berth_session={session}"))
            .send()
            .await
            .expect("page");
        let h = resp.headers();
        let csp = h
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: CSP {csp:?} lacks {directive}"
            );
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(
            h.get("x-frame-options").and_then(|v| v.to_str().ok()),
            Some("DENY"),
            "{path}"
        );
        assert_eq!(
            h.get("x-content-type-options")
                .and_then(|v| v.to_str().ok()),
            Some("nosniff"),
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn cookies_are_secure_behind_a_trusted_https_proxy_only() {
    // Not trusted (the default): a client's own X-Forwarded-Proto changes nothing.
    let app = TestApp::spawn(Backend::Sqlite).await;
    let https = [("x-forwarded-proto", "https")];
    let (csrf, cookies) = login_csrf(&app, &https).await;
    assert!(cookies.iter().all(|c| !c.contains("Secure")), "{cookies:?}");
    let resp = sign_in(&app, &csrf, &https).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookies = set_cookies(&resp);
    assert!(
        cookies.iter().any(|c| c.starts_with("berth_session=")),
        "{cookies:?}"
    );
    assert!(cookies.iter().all(|c| !c.contains("Secure")), "{cookies:?}");
    app.stop().await;

    // Trusted: HTTPS requests get Secure cookies, plain HTTP ones (as the proxy says) do not.
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.trust_forwarded_proto = true).await;
    for (headers, secure) in [
        (vec![("x-forwarded-proto", "https")], true),
        (
            vec![("forwarded", "for=192.0.2.60;proto=https;by=203.0.113.43")],
            true,
        ),
        (vec![("x-forwarded-proto", "http")], false),
        (vec![], false),
    ] {
        let (csrf, cookies) = login_csrf(&app, &headers).await;
        assert!(
            cookies.iter().all(|c| c.contains("; Secure") == secure),
            "{headers:?}: {cookies:?}"
        );
        let resp = sign_in(&app, &csrf, &headers).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{headers:?}");
        let cookies = set_cookies(&resp);
        let session = cookies
            .iter()
            .find(|c| c.starts_with("berth_session="))
            .expect("session cookie");
        assert_eq!(
            session.contains("; Secure"),
            secure,
            "{headers:?}: {session}"
        );
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_sign_in_from_a_foreign_page_is_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let own = app.base.clone();
    let host = app.base.trim_start_matches("http://").to_owned();
    for (headers, ok) in [
        (vec![("origin", own.as_str())], true),
        (
            vec![("origin", own.as_str()), ("sec-fetch-site", "same-origin")],
            true,
        ),
        // curl and scripts send no Origin: the CSRF cookie protects them.
        (vec![], true),
        (vec![("origin", "http://evil.example")], false),
        (vec![("origin", "null")], false),
        (vec![("origin", "https://127.0.0.1.evil.example")], false),
        (vec![("sec-fetch-site", "cross-site")], false),
        // Same host, another port: another origin.
        (vec![("origin", "http://127.0.0.1:1")], false),
    ] {
        let (csrf, _) = login_csrf(&app, &[]).await;
        let resp = sign_in(&app, &csrf, &headers).await;
        let cookies = set_cookies(&resp);
        let session = cookies.iter().any(|c| c.starts_with("berth_session="));
        if ok {
            assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{headers:?} ({host})");
            assert!(session, "{headers:?}: {cookies:?}");
        } else {
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{headers:?}");
            assert!(!session, "{headers:?} got a session: {cookies:?}");
            let text = resp.text().await.expect("body");
            assert!(text.contains("another site"), "{text}");
        }
    }

    // Signing out from a foreign page is refused too, and the session stays open.
    let session = app.sign_in(ADMIN_TOKEN).await;
    let page = client()
        .get(format!("{}/w/none", app.base))
        .header("cookie", format!("berth_session={session}"))
        .send()
        .await
        .expect("page");
    assert_ne!(page.status(), StatusCode::SEE_OTHER, "the session is open");
    let me = |session: String| {
        let app_base = app.base.clone();
        async move {
            client()
                .get(format!("{app_base}/api/v1/me"))
                .header("cookie", format!("berth_session={session}"))
                .send()
                .await
                .expect("me")
                .status()
        }
    };
    assert_eq!(me(session.clone()).await, StatusCode::OK);
    let csrf = session_csrf(&app, &session).await;
    let resp = client()
        .post(format!("{}/logout", app.base))
        .header("cookie", format!("berth_session={session}"))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(me(session.clone()).await, StatusCode::OK, "still signed in");
    app.stop().await;
}

/// The session's CSRF token, as the pages carry it (`<meta name="csrf-token">`).
async fn session_csrf(app: &TestApp, session: &str) -> String {
    app.workspace("sc").await;
    let html = client()
        .get(format!("{}/w/sc", app.base))
        .header("cookie", format!("berth_session={session}"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let marker = "name=\"csrf-token\" content=\"";
    let start = html.find(marker).expect("csrf meta") + marker.len();
    html[start..]
        .split('"')
        .next()
        .expect("csrf value")
        .to_owned()
}
