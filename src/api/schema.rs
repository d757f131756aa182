//! Schema-only types: how the OpenAPI document spells values that handlers receive as plain
//! strings, lists and maps and parse themselves (webhook names, tags, statuses, triggers,
//! extra headers). Each schema is built from the parser's own rules and tables
//! (`domain::name_pattern`, `EventTrigger::SUBSCRIBABLE`, `domain::header_name_pattern`), so
//! what the document allows is what the handler takes. Request types name them with
//! `#[schema(value_type = …)]`.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::{EventTrigger, MAX_HEADERS, header_name_pattern, name_pattern};
use crate::store::AuditAction;

/// A header value as `parse_headers` takes it.
pub const HEADER_VALUE_PATTERN: &str = "^[^\\r\\n\\u0000]*$";

fn name_text(max: usize, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(name_pattern()))
        .description(Some(description))
        .into()
}

fn headers(allow_authorization: bool, max: usize, description: &str) -> RefOr<Schema> {
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(256))
        .pattern(Some(header_name_pattern(allow_authorization)));
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(8192))
        .pattern(Some(HEADER_VALUE_PATTERN));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(name))
        .additional_properties(Some(value))
        .max_properties(Some(max))
        .description(Some(description))
        .into()
}

macro_rules! schema_type {
    ($(#[$doc:meta])* $name:ident, $body:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $body
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

schema_type!(
    /// A webhook's name.
    WebhookNameText,
    name_text(
        100,
        "1-100 characters, unique among the model's webhooks (compared after Unicode NFC and \
         case folding); no white space at either end, no control or format (Cf) characters."
    )
);

schema_type!(
    /// A tag.
    TagText,
    name_text(
        100,
        "1-100 characters; no white space at either end, no control or format (Cf) \
         characters. Tags that differ only in case or Unicode normalization are one tag."
    )
);

schema_type!(
    /// A status name.
    StatusNameText,
    name_text(
        50,
        "1-50 characters; no white space at either end, no control or format (Cf) characters."
    )
);

schema_type!(
    /// A trigger a webhook may subscribe to.
    TriggerName,
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(EventTrigger::SUBSCRIBABLE.iter().map(|t| t.as_str())))
        .description(Some("An event a webhook may subscribe to."))
        .into()
);

schema_type!(
    /// An action of the audit log.
    AuditActionName,
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(
            AuditAction::ALL
                .iter()
                .map(|a| a.as_str())
                .chain(std::iter::once("")),
        ))
        .description(Some("An action of the audit log; empty for every action."))
        .into()
);

schema_type!(
    /// A webhook's extra headers.
    WebhookHeaders,
    headers(
        false,
        MAX_HEADERS,
        "Extra headers, name → value: at most 20; names are RFC 9110 tokens of 1-256 \
         characters, none that Berth sets itself (Host, Content-Type, Authorization — set \
         `secret` —, User-Agent, webhook-*, …), no two equal ignoring case; values at most 8192 \
         bytes, without CR, LF or NUL."
    )
);

schema_type!(
    /// A Comet webhook's headers: the extra headers, and `Authorization`, the secret.
    CometHeaders,
    headers(
        true,
        MAX_HEADERS,
        "Headers, name → value: `Authorization` is the webhook's secret (1-4096 bytes, no \
         control characters; `********` keeps the stored one); at most 20 others (so 21 with \
         `Authorization`), as a \
         webhook's `headers`: RFC 9110 token names of 1-256 characters, none that Berth sets \
         itself, values at most 8192 bytes without CR, LF or NUL."
    )
);

/// A delivery's state, as a filter.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum DeliveryStateName {
    Pending,
    Succeeded,
    Failed,
}

/// A status request's state, as a filter.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum RequestStateName {
    Pending,
    Approved,
    Rejected,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_are_the_subscribable_ones() {
        let json = serde_json::to_value(TriggerName::schema()).unwrap();
        assert_eq!(json["enum"].as_array().unwrap().len(), 5);
        assert!(!json.to_string().contains("\"TEST\""));
    }
}
