//! Semantic version numbers of model versions, and a byte-ordered key that sorts them by
//! semver precedence so the database can page through them.

use super::Invalid;

/// A model version number: a valid semantic version ("1.2.3", "2.0.0-rc.1").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionNumber {
    text: String,
    parsed: semver::Version,
}

impl VersionNumber {
    pub fn parse(field: &str, value: &str) -> Result<Self, Invalid> {
        if value.len() > 128 {
            return Err(Invalid::new(field, "must be at most 128 characters"));
        }
        let parsed = semver::Version::parse(value).map_err(|e| {
            Invalid::new(
                field,
                format!("must be a semantic version such as 1.2.3 or 2.0.0-rc.1 ({e})"),
            )
        })?;
        Ok(VersionNumber {
            text: value.to_owned(),
            parsed,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A string whose byte order is semver precedence order (build metadata ignored).
    ///
    /// Layout: major, minor and patch as 20-digit numbers, then `-` and the pre-release
    /// identifiers for a pre-release, or `~` for a release (so a release sorts after its
    /// pre-releases). Each pre-release identifier is `0` and a 20-digit number when numeric, or
    /// `1` and the text when alphanumeric (numeric identifiers have lower precedence), joined by `!`,
    /// which sorts below every character an identifier may hold; a shorter list of otherwise
    /// equal identifiers is a prefix and so sorts first.
    pub fn sort_key(&self) -> String {
        let v = &self.parsed;
        let mut key = format!("{:020}.{:020}.{:020}", v.major, v.minor, v.patch);
        if v.pre.is_empty() {
            key.push('~');
        } else {
            key.push('-');
            for (i, ident) in v.pre.as_str().split('.').enumerate() {
                if i > 0 {
                    key.push('!');
                }
                let numeric = !ident.is_empty() && ident.bytes().all(|b| b.is_ascii_digit());
                match ident.parse::<u64>() {
                    Ok(n) if numeric => key.push_str(&format!("0{n:020}")),
                    _ => {
                        key.push('1');
                        key.push_str(ident);
                    }
                }
            }
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> String {
        VersionNumber::parse("v", s).unwrap().sort_key()
    }

    #[test]
    fn rejects_non_semver() {
        for bad in [
            "", "1", "1.2", "v1.2.3", "1.2.3.4", "01.2.3", "1.2.3-", "a.b.c",
        ] {
            assert!(VersionNumber::parse("v", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sort_key_follows_semver_precedence() {
        // The example from semver.org, section 11, in ascending order.
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2.0",
            "1.10.0",
            "2.0.0-0",
            "2.0.0-a-b",
            "2.0.0",
            "10.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(key(pair[0]) < key(pair[1]), "{} < {}", pair[0], pair[1]);
            let a = semver::Version::parse(pair[0]).unwrap();
            let b = semver::Version::parse(pair[1]).unwrap();
            assert!(a < b);
        }
        assert_eq!(key("1.0.0+build.1"), key("1.0.0"));
        assert!(key("1.0.0-a") < key("1.0.0-a-b"), "a prefix sorts first");
        assert!(
            key("1.0.0-a.b") < key("1.0.0-a-b"),
            "the separator sorts below '-'"
        );
    }
}
