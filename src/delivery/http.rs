//! Building and sending one webhook request: the body, the headers (custom, secret, GitHub
//! Actions, Standard Webhooks signature), the guarded HTTP client, and the classification of
//! what came back. Used by the worker and by Test Webhook alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::schedule::parse_retry_after;
use super::signing::signature_header;
use super::ssrf::{Blocked, DnsFailure, GuardedResolver, TargetPolicy};
use crate::domain::EventPayload;

/// The most of a response body that is kept.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// The most response headers kept per attempt (and shown by Test Webhook).
pub const MAX_RESPONSE_HEADERS: usize = 64;
/// The most bytes of response headers kept, counted as on the wire (`name: value\r\n`).
pub const MAX_RESPONSE_HEADER_BYTES: usize = 16 * 1024;

/// The first response headers that fit both caps, and how many were left out after them.
pub fn cap_headers(mut all: Vec<(String, String)>) -> (Vec<(String, String)>, usize) {
    let mut bytes = 0;
    let mut kept = 0;
    for (k, v) in &all {
        let size = k.len() + v.len() + 4;
        if kept == MAX_RESPONSE_HEADERS || bytes + size > MAX_RESPONSE_HEADER_BYTES {
            break;
        }
        bytes += size;
        kept += 1;
    }
    let omitted = all.len() - kept;
    all.truncate(kept);
    (all, omitted)
}

/// The user agent of every webhook request.
pub fn user_agent() -> String {
    format!("Berth-Webhooks/{}", env!("CARGO_PKG_VERSION"))
}

/// Where and how one webhook is sent.
#[derive(Clone)]
pub struct Target {
    pub url: url::Url,
    /// Sent as `Authorization` (verbatim; `Bearer <secret>` in GitHub Actions mode).
    pub secret: Option<String>,
    pub headers: Vec<(String, String)>,
    pub github_actions: bool,
    /// The `whsec_` keys that sign: the current one, and during a rotation the previous one.
    pub signing_secrets: Vec<String>,
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Timeout,
    Connect,
    Dns,
    Tls,
    Blocked,
    Redirect,
    HttpStatus,
    /// Berth could not prepare the request (see the attempt's error).
    Internal,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connect => "connect",
            ErrorClass::Dns => "dns",
            ErrorClass::Tls => "tls",
            ErrorClass::Blocked => "blocked",
            ErrorClass::Redirect => "redirect",
            ErrorClass::HttpStatus => "http_status",
            ErrorClass::Internal => "internal",
        }
    }
}

/// What happened to one attempt.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
    /// The first headers of the answer, within [`MAX_RESPONSE_HEADERS`] and
    /// [`MAX_RESPONSE_HEADER_BYTES`].
    pub response_headers: Vec<(String, String)>,
    /// How many headers of the answer were not kept, past those caps.
    pub response_headers_omitted: usize,
    pub response_body: String,
    pub retry_after: Option<Duration>,
}

impl Outcome {
    /// An attempt that never left Berth.
    pub fn internal(message: String) -> Outcome {
        Outcome {
            started_at: crate::store::now_micros(),
            duration_ms: 0,
            status_code: None,
            error_class: Some(ErrorClass::Internal),
            error: Some(message),
            response_headers: Vec::new(),
            response_headers_omitted: 0,
            response_body: String::new(),
            retry_after: None,
        }
    }

    pub fn succeeded(&self) -> bool {
        self.error_class.is_none()
    }
}

/// The JSON body: the ten payload fields, or in GitHub Actions mode
/// `{"event_type", "client_payload"}`.
pub fn body_of(payload: &EventPayload, github_actions: bool) -> Vec<u8> {
    let result = if github_actions {
        serde_json::to_vec(&serde_json::json!({
            "event_type": payload.event_trigger.as_str(),
            "client_payload": payload,
        }))
    } else {
        serde_json::to_vec(payload)
    };
    // Serializing plain strings and numbers cannot fail.
    result.unwrap_or_default()
}

/// The `Authorization` value for a secret.
fn authorization(secret: &str, github_actions: bool) -> String {
    let lower = secret.to_ascii_lowercase();
    if github_actions && !lower.starts_with("bearer ") && !lower.starts_with("token ") {
        format!("Bearer {secret}")
    } else {
        secret.to_owned()
    }
}

/// Builds the request for message `msg_id` (the delivery id, stable across retries).
pub fn build(
    target: &Target,
    msg_id: &str,
    payload: &EventPayload,
    attempt: i64,
    timestamp: i64,
) -> Outgoing {
    let body = body_of(payload, target.github_actions);
    let mut headers: Vec<(String, String)> = vec![
        ("Content-Type".into(), "application/json".into()),
        ("User-Agent".into(), user_agent()),
    ];
    if target.github_actions {
        headers.push(("Accept".into(), "application/vnd.github+json".into()));
        headers.push(("X-GitHub-Api-Version".into(), "2022-11-28".into()));
    }
    headers.extend(target.headers.iter().cloned());
    headers.push((
        "X-Berth-Event".into(),
        payload.event_trigger.as_str().into(),
    ));
    headers.push(("X-Berth-Attempt".into(), attempt.to_string()));
    headers.push(("webhook-id".into(), msg_id.to_owned()));
    headers.push(("webhook-timestamp".into(), timestamp.to_string()));
    headers.push((
        "webhook-signature".into(),
        signature_header(&target.signing_secrets, msg_id, timestamp, &body),
    ));
    if let Some(secret) = &target.secret {
        headers.push((
            "Authorization".into(),
            authorization(secret, target.github_actions),
        ));
    }
    Outgoing {
        url: target.url.clone(),
        headers,
        body,
    }
}

/// The headers as they may be shown: `Authorization` masked.
pub fn masked(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            if k.eq_ignore_ascii_case("authorization") {
                let lower = v.to_ascii_lowercase();
                let shown = if lower.starts_with("bearer ") {
                    "Bearer ********".to_owned()
                } else if lower.starts_with("token ") {
                    "token ********".to_owned()
                } else {
                    "********".to_owned()
                };
                (k.clone(), shown)
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

/// The HTTP client of every webhook send: guarded resolver, no redirects, no proxy.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<TargetPolicy>,
    timeout: Duration,
}

impl Sender {
    /// `max_in_flight`: the most sends at once, and so the most connections worth keeping
    /// open to one host (many webhooks can point at the same receiver: keeping fewer than
    /// the sends in flight would open, and close, a connection for every send past them).
    pub fn new(
        policy: TargetPolicy,
        timeout: Duration,
        max_in_flight: usize,
    ) -> anyhow::Result<Sender> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(max_in_flight)
            .build()?;
        Ok(Sender {
            client,
            policy,
            timeout,
        })
    }

    pub fn policy(&self) -> &TargetPolicy {
        &self.policy
    }

    /// Sends one request and classifies the answer. `github_actions` adds explanations to
    /// GitHub's usual refusals.
    pub async fn send(&self, req: &Outgoing, github_actions: bool) -> Outcome {
        let started_at = crate::store::now_micros();
        let clock = Instant::now();
        let mut outcome = Outcome {
            started_at,
            duration_ms: 0,
            status_code: None,
            error_class: None,
            error: None,
            response_headers: Vec::new(),
            response_headers_omitted: 0,
            response_body: String::new(),
            retry_after: None,
        };
        if let Err(b) = self.policy.check_url(&req.url) {
            outcome.error_class = Some(ErrorClass::Blocked);
            outcome.error = Some(b.to_string());
            return outcome;
        }
        let mut builder = self.client.post(req.url.clone()).body(req.body.clone());
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let result = tokio::time::timeout(self.timeout, async {
            let resp = builder.send().await?;
            let status = resp.status();
            let headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).replace('\0', "\u{FFFD}"),
                    )
                })
                .collect();
            let mut body = Vec::new();
            let mut resp = resp;
            while body.len() < MAX_RESPONSE_BODY {
                match resp.chunk().await? {
                    Some(chunk) => body.extend_from_slice(&chunk),
                    None => break,
                }
            }
            body.truncate(MAX_RESPONSE_BODY);
            Ok::<_, reqwest::Error>((status, headers, body))
        })
        .await;
        outcome.duration_ms = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
        match result {
            Err(_) => {
                outcome.error_class = Some(ErrorClass::Timeout);
                outcome.error = Some(format!(
                    "no complete answer within {} ms",
                    self.timeout.as_millis()
                ));
            }
            Ok(Err(e)) => {
                // The URL can carry a token (in its path or query): keep it out of the error
                // text, which is logged and shown in the delivery log.
                let (class, message) = classify(&e.without_url());
                outcome.error_class = Some(class);
                outcome.error = Some(message);
            }
            Ok(Ok((status, headers, body))) => {
                let code = status.as_u16();
                outcome.status_code = Some(code);
                // NUL cannot be stored in PostgreSQL text: show it as U+FFFD, like any
                // other byte that is not text.
                outcome.response_body = String::from_utf8_lossy(&body).replace('\0', "\u{FFFD}");
                if code == 429 || code == 503 {
                    outcome.retry_after = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                        .and_then(|(_, v)| parse_retry_after(v, chrono::Utc::now()));
                }
                (outcome.response_headers, outcome.response_headers_omitted) = cap_headers(headers);
                if status.is_redirection() {
                    outcome.error_class = Some(ErrorClass::Redirect);
                    outcome.error = Some(format!(
                        "the receiver answered {code}, a redirect; redirects are not followed: \
                         use the final URL"
                    ));
                } else if !status.is_success() {
                    outcome.error_class = Some(ErrorClass::HttpStatus);
                    outcome.error = Some(explain_status(code, github_actions));
                }
            }
        }
        outcome
    }
}

fn explain_status(code: u16, github_actions: bool) -> String {
    let base = format!("the receiver answered HTTP {code}");
    if !github_actions {
        return if code == 410 {
            format!("{base} (Gone): the webhook is disabled")
        } else {
            base
        };
    }
    let why = match code {
        401 => {
            "GitHub did not accept the token: set the secret to a valid personal access token \
                or GitHub App token"
        }
        403 => {
            "the token is not allowed to dispatch: a fine-grained token needs \"Contents: read \
                and write\" on the repository (a classic token needs the `repo` scope)"
        }
        404 => {
            "GitHub cannot see OWNER/REPO: check the URL and that the token has access to \
                that repository"
        }
        422 => {
            "GitHub rejected the payload: event_type must be at most 100 characters and \
                client_payload at most 10 top-level properties"
        }
        _ => return base,
    };
    format!("{base}: {why}")
}

/// Sorts a transport error into its class, with a message that names the cause.
fn classify(err: &reqwest::Error) -> (ErrorClass, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(b) = e.downcast_ref::<Blocked>() {
            return (ErrorClass::Blocked, b.to_string());
        }
        if let Some(d) = e.downcast_ref::<DnsFailure>() {
            return (ErrorClass::Dns, d.to_string());
        }
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return (ErrorClass::Tls, format!("TLS error: {t}"));
        }
        source = e.source();
    }
    let message = chain(err);
    if err.is_timeout() {
        (ErrorClass::Timeout, message)
    } else {
        (ErrorClass::Connect, message)
    }
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventPayload;

    fn target(github: bool, secret: Option<&str>) -> Target {
        Target {
            url: url::Url::parse("https://api.github.com/repos/o/r/dispatches").unwrap(),
            secret: secret.map(str::to_owned),
            headers: vec![("X-Team".into(), "ml".into())],
            github_actions: github,
            signing_secrets: vec![super::super::signing::new_signing_secret()],
        }
    }

    fn header<'a>(o: &'a Outgoing, name: &str) -> Option<&'a str> {
        o.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn response_headers_are_capped_by_count_and_bytes() {
        let many: Vec<(String, String)> =
            (0..100).map(|i| (format!("x-h{i}"), "v".into())).collect();
        let (kept, omitted) = cap_headers(many);
        assert_eq!(
            (kept.len(), omitted),
            (MAX_RESPONSE_HEADERS, 100 - MAX_RESPONSE_HEADERS)
        );
        assert_eq!(kept[0].0, "x-h0", "the first ones are kept, in order");
        let big: Vec<(String, String)> = (0..95)
            .map(|i| (format!("x-big-{i}"), "a".repeat(3800)))
            .collect();
        let (kept, omitted) = cap_headers(big);
        let bytes: usize = kept.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        assert!(bytes <= MAX_RESPONSE_HEADER_BYTES, "{bytes}");
        assert_eq!((kept.len(), omitted), (4, 91));
        let (kept, omitted) = cap_headers(vec![("a".into(), "b".into())]);
        assert_eq!((kept.len(), omitted), (1, 0));
    }

    #[test]
    fn plain_body_is_the_ten_fields() {
        let p = EventPayload::test("ws", "m", 1_000_000);
        let o = build(&target(false, Some("s3cret")), "id1", &p, 1, 5);
        let v: serde_json::Value = serde_json::from_slice(&o.body).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 10);
        assert_eq!(header(&o, "authorization"), Some("s3cret"));
        assert_eq!(header(&o, "x-team"), Some("ml"));
        assert_eq!(header(&o, "webhook-id"), Some("id1"));
        assert_eq!(header(&o, "x-berth-attempt"), Some("1"));
        assert!(header(&o, "accept").is_none());
    }

    #[test]
    fn github_mode() {
        let p = EventPayload::test("ws", "m", 1_000_000);
        let o = build(&target(true, Some("ghp_x")), "id1", &p, 2, 5);
        let v: serde_json::Value = serde_json::from_slice(&o.body).unwrap();
        assert_eq!(v["event_type"], "TEST");
        assert_eq!(v["client_payload"]["version"], "1.2.3");
        assert_eq!(header(&o, "authorization"), Some("Bearer ghp_x"));
        assert_eq!(header(&o, "accept"), Some("application/vnd.github+json"));
        assert_eq!(header(&o, "x-github-api-version"), Some("2022-11-28"));
        let o = build(&target(true, Some("token ghp_x")), "id1", &p, 2, 5);
        assert_eq!(header(&o, "authorization"), Some("token ghp_x"));
        let m = masked(&o.headers);
        assert!(m.iter().all(|(_, v)| !v.contains("ghp_x")));
    }
}
