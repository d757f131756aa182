//! Request extractors that answer bad input in the API's error shape: JSON bodies (with the
//! offending field named), query strings, and opaque pagination cursors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON request body, which must be an object. Unknown fields, wrong types and missing
/// fields are 400 errors naming every bad field; a body that is not an object or not JSON is
/// a 400 naming no field; one that is not `application/json` is 415; one over 1 MiB is 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_json(content_type) {
            return Err(ApiError::UnsupportedMediaType(
                "the request body must be JSON (Content-Type: application/json)".into(),
            ));
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(body_error)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Why a body could not be read: over the size limit (413), late (408: the connection's
/// `body_read_timeout`, see `connections::BodyTimeout`), or broken off (400).
fn body_error(e: axum::Error) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return ApiError::PayloadTooLarge(MAX_BODY_BYTES);
        }
        if let Some(t) = c.downcast_ref::<crate::connections::BodyTimeout>() {
            return ApiError::RequestTimeout(t.to_string());
        }
        cause = c.source();
    }
    ApiError::BodyUnreadable(format!("the request body could not be read: {e}"))
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON object into `T`, naming the field to blame on failure. Every request body
/// is an object: serde would also fill a struct from an array of its fields in order
/// (`["1.0.0", ["tag"]]`), which the schema does not allow, so any other document is refused
/// before it is deserialized. A malformed document is blamed on no field, with its position;
/// fields of the wrong type, unknown or missing are all reported (see [`json_errors`]).
pub fn parse_json<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::Invalid {
                message: "the request body must be a JSON object".into(),
                field: None,
            });
        }
        Some(b'{') => {}
        Some(_) => return Err(not_an_object(bytes)),
    }
    if let Some(field) = nul_field(bytes) {
        return Err(ApiError::Invalid {
            message: format!("{field} must not contain NUL (\\u0000) characters"),
            field: Some(field),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => return Err(json_errors::<T>(bytes, e)),
    };
    de.end().map_err(|e| ApiError::Invalid {
        message: format!("trailing characters after the JSON document ({e})"),
        field: None,
    })?;
    Ok(value)
}

/// The answer to a body that is not a JSON object: what it is instead, or why it is not JSON.
fn not_an_object(bytes: &[u8]) -> ApiError {
    let kind = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Array(_)) => "an array",
        Ok(serde_json::Value::String(_)) => "a string",
        Ok(serde_json::Value::Number(_)) => "a number",
        Ok(serde_json::Value::Bool(_)) => "a boolean",
        Ok(serde_json::Value::Null) => "null",
        Ok(serde_json::Value::Object(_)) => "an object",
        Err(e) => return syntax_error(&e).into(),
    };
    ApiError::Invalid {
        message: format!("the request body must be a JSON object, not {kind}"),
        field: None,
    }
}

/// The most bad fields one answer lists.
const MAX_FIELD_ERRORS: usize = 20;

/// Every field serde refuses, not only the first: after the first error (in document
/// order), the document is read again as a value without that field's top-level member,
/// until it deserializes or a member is blamed twice (a removed required field is then
/// "missing"). A syntax error anywhere in the document is the only error.
fn json_errors<T: DeserializeOwned>(
    bytes: &[u8],
    first: serde_path_to_error::Error<serde_json::Error>,
) -> ApiError {
    // A broken document is reported as such, even where a field before the break was of
    // the wrong type (`{"version": 1.0.0}` is not a number in `version`).
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        && (e.is_syntax() || e.is_eof())
    {
        return syntax_error(&e).into();
    }
    let first = json_error(first);
    let Some(first_field) = first.field.clone() else {
        return first.into();
    };
    let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_slice(bytes) else {
        return first.into();
    };
    let mut removed = vec![top_level(&first_field).to_owned()];
    let mut errors = vec![first];
    while errors.len() < MAX_FIELD_ERRORS {
        let Some(last) = removed.last() else { break };
        if doc.remove(last).is_none() {
            break;
        }
        let again = serde_json::Value::Object(doc.clone());
        let Err(e) = serde_path_to_error::deserialize::<_, T>(&again) else {
            break;
        };
        let err = json_error(e);
        let Some(key) = err.field.as_deref().map(top_level) else {
            break;
        };
        if removed.iter().any(|r| r == key) {
            break;
        }
        removed.push(key.to_owned());
        errors.push(err);
    }
    if errors.len() == 1 {
        errors.remove(0).into()
    } else {
        ApiError::InvalidFields(errors)
    }
}

/// The top-level member a field path starts in: `tags` of `tags[1]`, `a` of `a.b`.
fn top_level(path: &str) -> &str {
    let end = path.find(['.', '[']).unwrap_or(path.len());
    &path[..end]
}

/// A document that is not JSON, blamed on no field, with where it went wrong.
fn syntax_error(err: &serde_json::Error) -> FieldError {
    let what = match err.classify() {
        serde_json::error::Category::Eof => "it ends too early",
        _ => "malformed",
    };
    FieldError {
        field: None,
        message: format!(
            "the request body is not valid JSON ({what}) at line {} column {}: {}",
            err.line(),
            err.column(),
            strip_position(&err.to_string())
        ),
    }
}

/// The path of the first string (or key) holding a NUL character, which no text column can
/// keep (PostgreSQL refuses it; SQLite would cut text at it). JSON carries NUL only as the
/// escape `\u0000`, so documents without that text are not walked.
fn nul_field(bytes: &[u8]) -> Option<String> {
    let escaped = bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"));
    if !escaped {
        return None;
    }
    fn walk(v: &serde_json::Value, path: &str) -> Option<String> {
        let here = |p: &str| {
            if path.is_empty() {
                p.to_owned()
            } else {
                format!("{path}.{p}")
            }
        };
        match v {
            serde_json::Value::String(t) if t.contains('\0') => Some(if path.is_empty() {
                "body".into()
            } else {
                path.to_owned()
            }),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| walk(item, &format!("{path}[{i}]"))),
            serde_json::Value::Object(map) => map.iter().find_map(|(k, item)| {
                if k.contains('\0') {
                    Some(here(&k.replace('\0', "\\u0000")))
                } else {
                    walk(item, &here(k))
                }
            }),
            _ => None,
        }
    }
    // A document that does not parse is left to the typed parse, which names the problem.
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    walk(&value, "")
}

fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if matches!(
        inner.classify(),
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof
    ) {
        // The document itself is broken; the field being read when it broke is not to blame.
        return syntax_error(&inner);
    }
    let text = inner.to_string();
    // serde reports unknown and missing fields at the parent; name the field itself.
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned);
    let field = match (named, path.as_str()) {
        (Some(name), ".") => Some(name),
        // serde_path_to_error already ends the path with an unknown field's name.
        (Some(name), p) if p == name || p.ends_with(&format!(".{name}")) => Some(p.to_owned()),
        (Some(name), parent) => Some(format!("{parent}.{name}")),
        (None, "." | "?") => None,
        (None, p) => Some(p.to_owned()),
    };
    let message = strip_position(&text);
    let message = match &field {
        Some(f) => format!("{f}: {message}"),
        None => message,
    };
    FieldError { field, message }
}

/// Drops serde_json's " at line X column Y" suffix.
fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

/// A query string parsed into `T` (all of whose fields should be optional strings, checked
/// by the handler so errors can name them).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::Invalid {
                message: format!("invalid query string: {e}"),
                field: None,
            })
    }
}

/// `limit` and `cursor` of a list request.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many items to return: 1 to 500, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page: base64url, as handed out. One this server did
    /// not hand out answers 404 naming `cursor`.
    #[param(min_length = 1, max_length = 1024, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

/// Default and largest page sizes.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

impl PageQuery {
    pub fn limit(&self) -> Result<i64, ApiError> {
        parse_limit(self.limit.as_deref())
    }

    pub fn cursor<C: DeserializeOwned>(&self) -> Result<Option<C>, ApiError> {
        self.cursor.as_deref().map(decode_cursor).transpose()
    }
}

pub fn parse_limit(text: Option<&str>) -> Result<i64, ApiError> {
    match text {
        None => Ok(DEFAULT_LIMIT),
        Some(t) => match t.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(
                "limit",
                format!("limit must be an integer from 1 to {MAX_LIMIT}"),
            )),
        },
    }
}

pub fn encode_cursor<C: Serialize>(c: &C) -> String {
    // Serializing our own small cursor types cannot fail.
    let json = serde_json::to_vec(c).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// The longest cursor taken (the documented `maxLength`); Berth's own are far shorter.
pub const MAX_CURSOR_LEN: usize = 1024;

/// Decodes a `cursor` parameter; see [`decode_cursor_as`].
pub fn decode_cursor<C: DeserializeOwned>(text: &str) -> Result<C, ApiError> {
    decode_cursor_as("cursor", text)
}

/// Decodes the cursor in parameter `field`. A value that is not base64url (the documented
/// pattern `^[A-Za-z0-9_-]+$`, at most [`MAX_CURSOR_LEN`] characters) is malformed: 400. One
/// of that form that this server did not hand out names no page: 404, naming the field, as
/// a well-formed id that names nothing would.
pub fn decode_cursor_as<C: DeserializeOwned>(field: &str, text: &str) -> Result<C, ApiError> {
    let well_formed = !text.is_empty()
        && text.len() <= MAX_CURSOR_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} must be a cursor as handed out: 1-{MAX_CURSOR_LEN} base64url characters"
            ),
        ));
    }
    let unknown = || ApiError::NotFoundIn {
        message: format!("{field} is not a cursor this server handed out"),
        field: field.to_owned(),
    };
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| unknown())?;
    if nul_field(&bytes).is_some() {
        return Err(unknown());
    }
    serde_json::from_slice(&bytes).map_err(|_| unknown())
}

/// Splits a fetched `limit + 1` rows into the page and the cursor of the next page.
pub fn paginate<T, C: Serialize>(
    mut rows: Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> C,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|r| encode_cursor(&cursor_of(r)));
        (rows, next)
    } else {
        (rows, None)
    }
}

/// Deserializes a field that may be absent (outer `None`), `null` (`Some(None)`) or a value.
pub mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Path parameters, with a bad one (e.g. invalid percent-encoding) answered in the API's
/// error shape.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|e| ApiError::Invalid {
                message: format!("invalid path: {}", e.body_text()),
                field: Some("path".into()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Input {
        version: String,
        tags: Option<Vec<String>>,
    }

    fn field_of(body: &str) -> Option<String> {
        match parse_json::<Input>(&Bytes::from(body.to_owned())) {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn names_the_field() {
        assert_eq!(field_of(r#"{"tags": []}"#).as_deref(), Some("version"));
        assert_eq!(field_of(r#"{"version": 1}"#).as_deref(), Some("version"));
        assert_eq!(
            field_of(r#"{"version": "1.0.0", "tags": ["a", 2]}"#).as_deref(),
            Some("tags[1]")
        );
        assert_eq!(
            field_of(r#"{"version": "1.0.0", "bogus": 1}"#).as_deref(),
            Some("bogus")
        );
        assert_eq!(field_of("{").as_deref(), None);
        assert_eq!(field_of("").as_deref(), None);
        assert_eq!(field_of(r#"{"version": "1.0.0"} x"#).as_deref(), None);
    }

    #[test]
    fn only_an_object_is_a_body() {
        for body in [r#"["1.0.0", ["a"]]"#, "\"1.0.0\"", "1", "null", "true"] {
            match parse_json::<Input>(&Bytes::from(body.to_owned())) {
                Err(ApiError::Invalid {
                    field: None,
                    message,
                }) => {
                    assert!(
                        message.contains("must be a JSON object"),
                        "{body}: {message}"
                    );
                }
                other => panic!("{body}: expected invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_broken_document_is_blamed_on_no_field_with_its_position() {
        match parse_json::<Input>(&Bytes::from_static(br#"{"version": "1.0"#)) {
            Err(ApiError::Invalid {
                field: None,
                message,
            }) => {
                assert!(message.contains("line 1 column 16"), "{message}");
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn names_every_bad_field() {
        let body = Bytes::from_static(br#"{"version": 1, "tags": "x", "bogus": 2}"#);
        match parse_json::<Input>(&body) {
            Err(ApiError::InvalidFields(list)) => {
                let fields: Vec<_> = list.iter().filter_map(|e| e.field.as_deref()).collect();
                assert_eq!(fields, ["version", "bogus", "tags"]);
            }
            other => panic!("expected several, got {other:?}"),
        }
        assert_eq!(top_level("a[1].b"), "a");
        assert_eq!(top_level("a.b"), "a");
        assert_eq!(top_level("a"), "a");
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None).unwrap(), 50);
        assert_eq!(parse_limit(Some("500")).unwrap(), 500);
        assert!(parse_limit(Some("501")).is_err());
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("x")).is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(&("a", 3));
        let back: (String, i64) = decode_cursor(&c).unwrap();
        assert_eq!(back, ("a".to_owned(), 3));
        let status = |r: Result<(String, i64), ApiError>| {
            axum::response::IntoResponse::into_response(r.unwrap_err()).status()
        };
        // Not base64url: malformed. Base64url, but not ours: names no page.
        assert_eq!(
            status(decode_cursor("!!")),
            axum::http::StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(decode_cursor("")),
            axum::http::StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(decode_cursor(&"A".repeat(1025))),
            axum::http::StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(decode_cursor("0")),
            axum::http::StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(decode_cursor("AAAA")),
            axum::http::StatusCode::NOT_FOUND
        );
    }
}
