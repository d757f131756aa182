//! A webhook's configuration, parsed: its URL, extra headers and triggers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{EventTrigger, Invalid};

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// The most extra headers a webhook may carry.
pub const MAX_HEADERS: usize = 20;

/// An absolute http(s) URL without user info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub fn parse(field: &str, value: &str) -> Result<Self, Invalid> {
        if value.is_empty() {
            return Err(Invalid::new(field, "must not be empty"));
        }
        if value.len() > MAX_URL_LEN {
            return Err(Invalid::new(
                field,
                format!("must be at most {MAX_URL_LEN} characters"),
            ));
        }
        let url = url::Url::parse(value)
            .map_err(|e| Invalid::new(field, format!("must be an absolute http(s) URL ({e})")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(Invalid::new(field, "must use http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Invalid::new(
                field,
                "must not contain user info; use the secret or a header instead",
            ));
        }
        if url.host().is_none() {
            return Err(Invalid::new(field, "must have a host"));
        }
        if url.fragment().is_some() {
            return Err(Invalid::new(field, "must not contain a #fragment"));
        }
        Ok(WebhookUrl(url))
    }

    /// A URL read back from the store: checked by [`WebhookUrl::parse`] when it was saved, so
    /// only parsed again here (rules added since do not make a saved webhook unreadable).
    pub fn stored(value: &str) -> Result<Self, url::ParseError> {
        url::Url::parse(value).map(WebhookUrl)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }

    /// The origin: scheme, host and port (the scheme's default when none is written), e.g.
    /// `https://example.com:8443`.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }

    /// Whether `other` has the same origin.
    pub fn same_origin(&self, other: &WebhookUrl) -> bool {
        other.0.origin() == self.0.origin()
    }

    /// Checks the path of a GitHub `repository_dispatch` endpoint: `/repos/OWNER/REPO/dispatches`
    /// (api.github.com) or `/api/v3/repos/OWNER/REPO/dispatches` (GitHub Enterprise Server).
    pub fn check_github_dispatch(&self, field: &str) -> Result<(), Invalid> {
        let segments: Vec<&str> = self.0.path().trim_end_matches('/').split('/').collect();
        let ok = match segments.as_slice() {
            ["", "repos", owner, repo, "dispatches"]
            | ["", "api", "v3", "repos", owner, repo, "dispatches"] => {
                !owner.is_empty() && !repo.is_empty()
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Invalid::new(
                field,
                "with GitHub Actions on, the URL must be \
                 https://api.github.com/repos/OWNER/REPO/dispatches (or \
                 /api/v3/repos/OWNER/REPO/dispatches on GitHub Enterprise)",
            ))
        }
    }
}

impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a delivery stands: waiting for its next attempt (`pending`), or finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 3] = [
        DeliveryState::Pending,
        DeliveryState::Succeeded,
        DeliveryState::Failed,
    ];

    /// The name stored in `deliveries.state` and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Failed => "failed",
        }
    }

    /// Parses a state name, as a filter or as stored.
    pub fn parse(field: &str, value: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| {
                Invalid::new(
                    field,
                    format!("unknown state `{value}`; states are pending, succeeded, failed"),
                )
            })
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Headers the delivery engine sets itself; a webhook may not override them (nor any
/// `webhook-…` header).
const RESERVED_HEADERS: [&str; 15] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "authorization",
    "user-agent",
    "x-berth-event",
    "x-berth-attempt",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
];

fn is_reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("webhook-")
}

/// The JSON Schema `pattern` of the extra header names [`parse_headers`] takes: 1-256 token
/// characters, none of the reserved names in any case (with `authorization` when
/// `allow_authorization`, as Comet's `header` carries the secret under it).
pub fn header_name_pattern(allow_authorization: bool) -> String {
    let any_case = |name: &str| -> String {
        name.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_uppercase(), c)
                } else {
                    c.to_string()
                }
            })
            .collect()
    };
    let reserved: Vec<String> = RESERVED_HEADERS
        .iter()
        .filter(|n| !(allow_authorization && **n == "authorization"))
        .map(|n| any_case(n))
        .collect();
    format!(
        "^(?!(?:{})$)(?!{})[A-Za-z0-9!#$%&'*+.^_`|~-]{{1,256}}$",
        reserved.join("|"),
        any_case("webhook-")
    )
}

/// RFC 9110 `token` characters.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parses extra headers: RFC 9110 token names, values without CR, LF or NUL, at most 20, none
/// the engine owns. Names are compared case-insensitively for duplicates.
pub fn parse_headers(
    field: &str,
    headers: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, Invalid> {
    if headers.len() > MAX_HEADERS {
        return Err(Invalid::new(
            field,
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let f = format!("{field}.{name}");
        if name.is_empty() || name.len() > 256 || !name.chars().all(is_tchar) {
            return Err(Invalid::new(
                f,
                "header names must be 1-256 token characters (RFC 9110)",
            ));
        }
        if is_reserved(name) {
            let hint = if name.eq_ignore_ascii_case("authorization") {
                " (set `secret` instead)"
            } else {
                ""
            };
            return Err(Invalid::new(
                f,
                format!("header `{name}` is set by Berth and cannot be overridden{hint}"),
            ));
        }
        if value.len() > 8192 {
            return Err(Invalid::new(f, "header values must be at most 8192 bytes"));
        }
        if value.contains(['\r', '\n', '\0']) {
            return Err(Invalid::new(
                f,
                "header values must not contain CR, LF or NUL",
            ));
        }
        if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(Invalid::new(f, "duplicate header name"));
        }
        out.push((name.clone(), value.clone()));
    }
    Ok(out)
}

/// Parses a webhook's triggers: at least one, each a known trigger (TEST is not one).
pub fn parse_triggers(field: &str, values: &[String]) -> Result<Vec<EventTrigger>, Invalid> {
    if values.is_empty() {
        return Err(Invalid::new(field, "choose at least one trigger"));
    }
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let t = EventTrigger::from_str_opt(v)
            .filter(|t| *t != EventTrigger::Test)
            .ok_or_else(|| {
                let all: Vec<&str> = EventTrigger::SUBSCRIBABLE
                    .iter()
                    .map(|t| t.as_str())
                    .collect();
                Invalid::new(
                    format!("{field}[{i}]"),
                    format!("unknown trigger `{v}`; triggers are {}", all.join(", ")),
                )
            })?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// Parses a webhook name: 1-100 characters, none of them control or format characters, no
/// white space at either end. Names are unique in a model by [`super::name_key`] (Unicode NFC
/// and case folding): `café` in NFC and in NFD, or `Slack` and `slack`, are one name.
pub fn parse_webhook_name(field: &str, value: &str) -> Result<String, Invalid> {
    let n = value.chars().count();
    if value.trim().is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if n > 100 {
        return Err(Invalid::new(field, "must be at most 100 characters"));
    }
    if let Some(problem) = super::name_chars_problem(value) {
        return Err(Invalid::new(field, problem));
    }
    Ok(value.to_owned())
}

/// Parses a webhook secret (sent as the `Authorization` header): 1-4096 characters, none of
/// CR, LF or NUL.
pub fn parse_secret(field: &str, value: &str) -> Result<String, Invalid> {
    if value.is_empty() {
        return Err(Invalid::new(
            field,
            "must not be empty (omit it, or send null to remove it)",
        ));
    }
    if value.len() > 4096 {
        return Err(Invalid::new(field, "must be at most 4096 bytes"));
    }
    if value.contains(['\r', '\n', '\0']) || value.chars().any(char::is_control) {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let u = WebhookUrl::parse("url", "https://Example.com/a?b=1").unwrap();
        assert_eq!(u.origin(), "https://example.com");
        let other = |s: &str| WebhookUrl::parse("url", s).unwrap();
        assert!(u.same_origin(&other("https://example.com:443/other/path")));
        assert!(!u.same_origin(&other("http://example.com/a?b=1")));
        assert!(!u.same_origin(&other("https://example.com:8443/a?b=1")));
        assert!(!u.same_origin(&other("https://evil.example.com/a?b=1")));
        assert_eq!(other("http://127.0.0.1:9/x").origin(), "http://127.0.0.1:9");
        assert!(WebhookUrl::stored("not a url").is_err());
    }

    #[test]
    fn urls() {
        assert!(WebhookUrl::parse("url", "https://example.com/hook").is_ok());
        assert!(WebhookUrl::parse("url", "http://127.0.0.1:8080/x?y=1").is_ok());
        for bad in [
            "",
            "example.com",
            "ftp://example.com",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "https://example.com/#frag",
        ] {
            assert!(WebhookUrl::parse("url", bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(WebhookUrl::parse("url", &long).is_err());
    }

    #[test]
    fn github_paths() {
        let ok = [
            "https://api.github.com/repos/o/r/dispatches",
            "https://ghe.example.com/api/v3/repos/o/r/dispatches",
        ];
        for u in ok {
            let url = WebhookUrl::parse("url", u).unwrap();
            assert!(url.check_github_dispatch("url").is_ok(), "{u}");
        }
        for u in [
            "https://api.github.com/repos/o/dispatches",
            "https://api.github.com/repos/o/r/issues",
            "https://api.github.com/",
        ] {
            let url = WebhookUrl::parse("url", u).unwrap();
            assert!(url.check_github_dispatch("url").is_err(), "{u}");
        }
    }

    #[test]
    fn headers() {
        let mut h = BTreeMap::new();
        h.insert("X-Team".to_owned(), "ml".to_owned());
        assert_eq!(parse_headers("headers", &h).unwrap().len(), 1);
        for (name, value) in [
            ("Authorization", "x"),
            ("content-type", "x"),
            ("Webhook-Id", "x"),
            ("Host", "x"),
            ("bad name", "x"),
            ("", "x"),
            ("X-Ok", "a\r\nInjected: 1"),
            ("X-Ok", "a\0"),
        ] {
            let mut h = BTreeMap::new();
            h.insert(name.to_owned(), value.to_owned());
            let err = parse_headers("headers", &h).unwrap_err();
            assert!(err.field.starts_with("headers."), "{name}: {err:?}");
        }
        let many: BTreeMap<String, String> = (0..21)
            .map(|i| (format!("X-{i}"), "v".to_owned()))
            .collect();
        assert_eq!(
            parse_headers("headers", &many).unwrap_err().field,
            "headers"
        );
    }

    #[test]
    fn triggers() {
        assert!(parse_triggers("triggers", &[]).is_err());
        assert!(parse_triggers("triggers", &["TEST".into()]).is_err());
        let err =
            parse_triggers("triggers", &["MODEL_VERSION_CREATED".into(), "X".into()]).unwrap_err();
        assert_eq!(err.field, "triggers[1]");
        assert_eq!(
            parse_triggers("triggers", &["MODEL_TAG_CHANGED".into()]).unwrap(),
            vec![EventTrigger::ModelTagChanged]
        );
    }

    #[test]
    fn webhook_names() {
        assert_eq!(parse_webhook_name("name", "my hook").unwrap(), "my hook");
        assert_eq!(
            parse_webhook_name("name", "cafe\u{301}").unwrap(),
            "cafe\u{301}",
            "stored as given"
        );
        for bad in [" x", "x ", "x\u{200B}y", "\u{202E}x", "x\ty", ""] {
            let err = parse_webhook_name("name", bad).unwrap_err();
            assert_eq!(err.field, "name", "{bad:?}");
        }
    }
}
