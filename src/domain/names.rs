//! Names and small values that appear in URLs and payloads, and how names are compared.
//!
//! Names are stored as given and compared by a key, so that two names a person would take
//! for the same one cannot coexist (README → Names):
//! - users, workspaces and models have ASCII names ([`parse_slug`]): compared ignoring case
//!   (the database enforces it with a unique index on `LOWER(name)`);
//! - webhook names and tags: compared by [`name_key`], canonical caseless matching (Unicode
//!   NFC and full case folding), so `café` in NFC and in NFD, or `prod` and `PROD`, are one;
//! - statuses: compared by [`look_alike_key`], the confusable skeleton (Unicode TS #39) of
//!   the name key, so `Production` and `Prоduction` (a Cyrillic `о`) are one too.
//!
//! Every name, tag and status refuses surrounding white space, control characters and format
//! characters (category Cf: zero-width spaces and joiners, bidi overrides), which are
//! invisible ([`name_chars_problem`]).

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use super::Invalid;

/// The key two names are compared by: canonical caseless matching (Unicode §3.13), that is
/// NFD, full case folding, then NFC. `café` (NFC or NFD), `Café` and `CAFÉ` share a key.
pub fn name_key(value: &str) -> String {
    value.chars().nfd().default_case_fold().nfc().collect()
}

/// The key two look-alike names share: the confusable skeleton (Unicode TS #39) of their
/// [`name_key`]. `Production` and `Prоduction` (a Cyrillic `о`) share one; so do `rn` and `m`.
pub fn look_alike_key(value: &str) -> String {
    unicode_security::skeleton(&name_key(value)).collect()
}

/// What is wrong with the characters of a name, tag or status, if anything: white space at
/// either end, a control character, or a format character (category Cf: zero-width spaces
/// and joiners, bidi overrides, soft hyphens…), which shows as nothing and so makes two
/// different names look the same. The answer completes a sentence ("a tag must not …").
pub fn name_chars_problem(value: &str) -> Option<String> {
    if value.trim() != value {
        return Some("must not start or end with white space".into());
    }
    if value.chars().any(char::is_control) {
        return Some("must not contain control characters".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.general_category() == GeneralCategory::Format)
    {
        return Some(format!(
            "must not contain invisible format characters (U+{:04X})",
            u32::from(c)
        ));
    }
    None
}

/// The JSON Schema `pattern` (ECMA-262 with the `u` flag, as JSON Schema 2020-12 reads it) of
/// exactly the values [`name_chars_problem`] passes: no white space at either end, no control
/// or format character anywhere. Built from the same character tables the check uses, so the
/// OpenAPI document cannot drift from it. Code points of the Basic Multilingual Plane are
/// written `\uXXXX`; the few above it (format characters such as U+E0001) literally, since
/// `\u{…}` is not read by every engine that consumes the document.
pub fn name_pattern() -> &'static str {
    static PATTERN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| {
        let barred = char_class(is_barred);
        let edge = char_class(|c| is_barred(c) || c.is_whitespace());
        format!("^[^{edge}](?:[^{barred}]*[^{edge}])?$")
    })
}

/// A character no name, tag or status may hold anywhere.
fn is_barred(c: char) -> bool {
    c.is_control() || c.general_category() == GeneralCategory::Format
}

/// The body of a regex character class holding exactly the characters `pred` takes.
fn char_class(pred: impl Fn(char) -> bool) -> String {
    fn put(out: &mut String, c: char) {
        if u32::from(c) <= 0xFFFF {
            out.push_str(&format!("\\u{:04X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    let mut out = String::new();
    let mut run: Option<(char, char)> = None;
    let flush = |out: &mut String, run: (char, char)| {
        put(out, run.0);
        if run.1 != run.0 {
            out.push('-');
            put(out, run.1);
        }
    };
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        let take = pred(c);
        run = match (run, take) {
            // A run never crosses from the BMP above it, where the spelling changes.
            (Some((a, b)), true) if u32::from(b) + 1 == u32::from(c) && u32::from(c) != 0x10000 => {
                Some((a, c))
            }
            (Some(r), true) => {
                flush(&mut out, r);
                Some((c, c))
            }
            (Some(r), false) => {
                flush(&mut out, r);
                None
            }
            (None, true) => Some((c, c)),
            (None, false) => None,
        };
    }
    if let Some(r) = run {
        flush(&mut out, r);
    }
    out
}

/// Checks a name used in a URL path: 1..=max characters from `[A-Za-z0-9._-]`, starting with a
/// letter or digit.
fn parse_slug(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    if value.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(Invalid::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !first_ok || !rest_ok {
        return Err(Invalid::new(
            field,
            "must start with a letter or digit and contain only letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(value.to_owned())
}

macro_rules! slug_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses a value received in the field of the same name.
            pub fn parse(value: &str) -> Result<Self, Invalid> {
                Self::parse_as($field, value)
            }

            /// Parses a value, blaming `field` when it is invalid.
            pub fn parse_as(field: &str, value: &str) -> Result<Self, Invalid> {
                parse_slug(field, value, $max).map($name)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_type!(
    /// A user's login name.
    Username,
    "username",
    64
);
slug_type!(
    /// A workspace's name, unique on the server.
    WorkspaceName,
    "name",
    64
);
slug_type!(
    /// A registered model's name, unique in its workspace.
    ModelName,
    "name",
    100
);

/// A version tag: 1–100 characters, none of them control or format characters, no white
/// space at either end. Two tags are the same tag when their [`name_key`]s are equal (`prod`,
/// `Prod` and `PROD` are one tag); a tag keeps the text it was first given.
#[derive(Debug, Clone)]
pub struct Tag {
    text: String,
    key: String,
}

impl PartialEq for Tag {
    fn eq(&self, other: &Tag) -> bool {
        self.key == other.key
    }
}

impl Eq for Tag {}

impl std::hash::Hash for Tag {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl Tag {
    pub fn parse(field: &str, value: &str) -> Result<Self, Invalid> {
        let n = value.chars().count();
        if n == 0 {
            return Err(Invalid::new(field, "a tag must not be empty"));
        }
        if n > 100 {
            return Err(Invalid::new(field, "a tag must be at most 100 characters"));
        }
        if let Some(problem) = name_chars_problem(value) {
            return Err(Invalid::new(field, format!("a tag {problem}")));
        }
        Ok(Tag {
            text: value.to_owned(),
            key: name_key(value),
        })
    }

    /// Parses a list of tags, dropping duplicates (by key) but keeping the first-seen order.
    pub fn parse_set(field: &str, values: &[String]) -> Result<Vec<Tag>, Invalid> {
        if values.len() > 1000 {
            return Err(Invalid::new(field, "at most 1000 tags"));
        }
        let mut out: Vec<Tag> = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let tag = Tag::parse(&format!("{field}[{i}]"), v)?;
            if !out.contains(&tag) {
                out.push(tag);
            }
        }
        Ok(out)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when stored tag text `other` is this tag.
    pub fn is(&self, other: &str) -> bool {
        self.key == name_key(other)
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

/// The name of a status ("Production"): 1–50 characters, none of them control or format
/// characters, no white space at either end. Two statuses of a workspace may not look alike
/// ([`StatusName::looks_like`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusName(String);

impl StatusName {
    pub fn parse(field: &str, value: &str) -> Result<Self, Invalid> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(Invalid::new(field, "a status name must not be empty"));
        }
        if trimmed != value {
            return Err(Invalid::new(
                field,
                "a status name must not start or end with spaces",
            ));
        }
        if value.chars().count() > 50 {
            return Err(Invalid::new(
                field,
                "a status name must be at most 50 characters",
            ));
        }
        if let Some(problem) = name_chars_problem(value) {
            return Err(Invalid::new(field, format!("a status name {problem}")));
        }
        Ok(StatusName(value.to_owned()))
    }

    /// True when status names `a` and `b` would be taken for one another: equal after NFC
    /// and case folding, or confusable (the same [`look_alike_key`]).
    pub fn looks_like(a: &str, b: &str) -> bool {
        look_alike_key(a) == look_alike_key(b)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A member's role in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn parse(field: &str, value: &str) -> Result<Self, Invalid> {
        match value {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err(Invalid::new(field, "must be \"admin\" or \"member\"")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's pattern takes exactly what `name_chars_problem` passes, character by
    /// character, at either end and inside (the pattern is also what the fuzz test generates
    /// names from).
    #[test]
    fn name_pattern_is_the_check() {
        let re = regex::Regex::new(name_pattern()).unwrap();
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let inner = format!("a{c}b");
            let alone = c.to_string();
            assert_eq!(
                re.is_match(&inner),
                name_chars_problem(&inner).is_none(),
                "U+{:04X} inside",
                u32::from(c)
            );
            assert_eq!(
                re.is_match(&alone),
                name_chars_problem(&alone).is_none(),
                "U+{:04X} alone",
                u32::from(c)
            );
        }
        assert!(re.is_match("Production") && re.is_match("a b") && re.is_match("\u{1F600}"));
        assert!(!re.is_match("") && !re.is_match(" a") && !re.is_match("p\u{200B}rod"));
        assert!(!re.is_match("tag\u{E0001}") && !re.is_match("a\nb"));
    }

    #[test]
    fn slugs() {
        assert!(ModelName::parse("fraud-detector_v2.1").is_ok());
        assert!(ModelName::parse("").is_err());
        assert!(ModelName::parse("-x").is_err());
        assert!(ModelName::parse("a b").is_err());
        assert!(ModelName::parse("a/b").is_err());
        assert!(ModelName::parse(&"a".repeat(101)).is_err());
        assert!(ModelName::parse(&"a".repeat(100)).is_ok());
        assert!(WorkspaceName::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn tags() {
        let set = Tag::parse_set("tags", &["a".into(), "b".into(), "a".into()]).unwrap();
        assert_eq!(set.len(), 2);
        let err = Tag::parse_set("tags", &["ok".into(), "".into()]).unwrap_err();
        assert_eq!(err.field, "tags[1]");
        assert!(Tag::parse("t", "x\u{7}").is_err());
        assert!(Tag::parse("t", &"é".repeat(100)).is_ok());
        assert!(Tag::parse("t", &"é".repeat(101)).is_err());
    }

    #[test]
    fn statuses() {
        assert!(StatusName::parse("s", "Production").is_ok());
        assert!(StatusName::parse("s", " x").is_err());
        assert!(StatusName::parse("s", "").is_err());
        for bad in [
            "Pro\u{200B}duction",
            "\u{202E}noitcudorP",
            "Prod\u{AD}uction",
        ] {
            let err = StatusName::parse("statuses[1].name", bad).unwrap_err();
            assert_eq!(err.field, "statuses[1].name");
            assert!(err.message.contains("format characters"), "{bad}: {err:?}");
        }
        // Cyrillic о (U+043E) in the middle: a look-alike of the Latin name.
        assert!(StatusName::looks_like("Production", "Pr\u{43E}duction"));
        assert!(StatusName::looks_like("Production", "PRODUCTION"));
        assert!(StatusName::looks_like("Production", "production"));
        assert!(!StatusName::looks_like("Production", "Staging"));
        assert!(!StatusName::looks_like("Production", "Productions"));
        // A name all in Cyrillic is a name of its own.
        assert!(StatusName::parse("s", "Производство").is_ok());
        assert!(!StatusName::looks_like("Production", "Производство"));
    }

    #[test]
    fn name_keys_join_normal_forms_and_cases() {
        let nfc = "caf\u{E9}";
        let nfd = "cafe\u{301}";
        assert_ne!(nfc, nfd);
        assert_eq!(name_key(nfc), name_key(nfd));
        assert_eq!(name_key("CAF\u{C9}"), name_key(nfd));
        assert_eq!(name_key("ResNet"), name_key("RESNET"));
        assert_eq!(
            name_key("Stra\u{DF}e"),
            name_key("STRASSE"),
            "full case folding"
        );
        assert_ne!(name_key("resnet"), name_key("resnet2"));
        assert_ne!(
            name_key("prod"),
            name_key("pr\u{43E}d"),
            "no skeleton in name keys"
        );
    }

    #[test]
    fn invisible_and_padded_names_are_refused() {
        assert_eq!(name_chars_problem("prod"), None);
        assert_eq!(name_chars_problem("my hook"), None);
        assert_eq!(name_chars_problem("caf\u{E9}"), None);
        for bad in [
            "pr\u{200B}od",
            "pr\u{200D}od",
            "\u{FEFF}prod",
            "pr\u{2066}od",
            " prod",
            "prod\u{A0}",
            "prod\n",
            "pr\u{7}od",
        ] {
            assert!(name_chars_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn tags_are_one_tag_by_key() {
        let err = Tag::parse_set("tags", &["prod".into(), "pr\u{200B}od".into()]).unwrap_err();
        assert_eq!(err.field, "tags[1]");
        assert!(err.message.contains("U+200B"), "{err:?}");
        assert!(Tag::parse("t", " prod").is_err());
        assert!(Tag::parse("t", "prod ").is_err());
        let set = Tag::parse_set(
            "tags",
            &[
                "prod".into(),
                "PROD".into(),
                "caf\u{E9}".into(),
                "cafe\u{301}".into(),
            ],
        )
        .unwrap();
        let kept: Vec<&str> = set.iter().map(Tag::as_str).collect();
        assert_eq!(kept, ["prod", "caf\u{E9}"], "the first-seen text is kept");
        assert!(set[0].is("Prod"));
        assert!(!set[0].is("prod2"));
    }
}
