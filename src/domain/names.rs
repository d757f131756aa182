//! Names and small values that appear in URLs and payloads.

use super::Invalid;

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

/// A version tag: 1–100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(field: &str, value: &str) -> Result<Self, Invalid> {
        let n = value.chars().count();
        if n == 0 {
            return Err(Invalid::new(field, "a tag must not be empty"));
        }
        if n > 100 {
            return Err(Invalid::new(field, "a tag must be at most 100 characters"));
        }
        if value.chars().any(char::is_control) {
            return Err(Invalid::new(
                field,
                "a tag must not contain control characters",
            ));
        }
        Ok(Tag(value.to_owned()))
    }

    /// Parses a list of tags, dropping duplicates but keeping the first-seen order.
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
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The name of a status ("Production"): 1–50 characters, no control characters.
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
        if value.chars().any(char::is_control) {
            return Err(Invalid::new(
                field,
                "a status name must not contain control characters",
            ));
        }
        Ok(StatusName(value.to_owned()))
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
    }
}
