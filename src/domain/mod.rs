//! Validated domain types and event payloads. Everything here is pure: no I/O.
//!
//! Values are parsed once at the edge (the API layer) into these types; the store and the
//! delivery worker only ever see parsed values.

mod event;
mod names;
mod version;
mod webhook;

pub use event::{EventPayload, EventTrigger};
pub use names::{
    ModelName, Role, StatusName, Tag, Username, WorkspaceName, look_alike_key, name_chars_problem,
    name_key, name_pattern,
};
pub use version::VersionNumber;
pub use webhook::{
    DeliveryState, MAX_HEADERS, MAX_URL_LEN, WebhookUrl, header_name_pattern, parse_headers,
    parse_secret, parse_triggers, parse_webhook_name,
};

/// A validation failure: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Checks that a free-text field has at most `max` characters and no control characters
/// other than newlines and tabs.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), Invalid> {
    if value.chars().count() > max {
        return Err(Invalid::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(())
}
