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

    /// A string whose byte order is semver precedence order (build metadata ignored): two
    /// versions have the same key exactly when they have the same precedence, which is what
    /// makes a version unique in its model (`1.0.0` and `1.0.0+build` cannot coexist).
    ///
    /// Layout: major, minor and patch as 20-digit numbers, then `-` and the pre-release
    /// identifiers for a pre-release, or `~` for a release (so a release sorts after its
    /// pre-releases). Each pre-release identifier is `0` and its number when numeric, or `1`
    /// and the text when alphanumeric (numeric identifiers have lower precedence), joined by
    /// `!`, which sorts below every character an identifier may hold; a shorter list of
    /// otherwise equal identifiers is a prefix and so sorts first. A number of up to 20
    /// digits (every `u64`) is zero-padded to 20; a longer one (semver sets no bound) is `:`,
    /// its length in 3 digits and its digits: `:` sorts above every digit, so it comes after
    /// every shorter number, and among long numbers the longer is the larger. (Numeric
    /// identifiers have no leading zeros, and a version is at most 128 characters.)
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
                if numeric && ident.len() <= 20 {
                    key.push('0');
                    key.push_str(&format!("{ident:0>20}"));
                } else if numeric {
                    key.push_str(&format!("0:{:03}", ident.len()));
                    key.push_str(ident);
                } else {
                    key.push('1');
                    key.push_str(ident);
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
        for same in ["1.0.0+build", "1.0.0+build.2", "1.0.0+001"] {
            assert_eq!(
                key(same),
                key("1.0.0"),
                "{same}: build metadata is not precedence"
            );
        }
        assert_eq!(key("1.0.0-rc.1+a"), key("1.0.0-rc.1+b"));
        assert!(key("1.0.0-a") < key("1.0.0-a-b"), "a prefix sorts first");
        assert!(
            key("1.0.0-a.b") < key("1.0.0-a-b"),
            "the separator sorts below '-'"
        );
    }

    #[test]
    fn numbers_too_big_for_u64_still_sort_as_numbers() {
        let huge = "1.0.0-99999999999999999999999";
        let ordered = [
            "1.0.0-0",
            "1.0.0-18446744073709551615",
            "1.0.0-18446744073709551616",
            "1.0.0-99999999999999999999",
            "1.0.0-100000000000000000000",
            huge,
            "1.0.0-100000000000000000000000",
            "1.0.0-1a",
            "1.0.0-a",
            "1.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(key(pair[0]) < key(pair[1]), "{} < {}", pair[0], pair[1]);
            let a = semver::Version::parse(pair[0]).unwrap();
            let b = semver::Version::parse(pair[1]).unwrap();
            assert!(a < b, "semver agrees: {} < {}", pair[0], pair[1]);
        }
        assert!(
            key(&format!("{huge}.1")) > key(huge),
            "a longer list sorts after"
        );
        assert!(key(&format!("{huge}.1")) < key("1.0.0-100000000000000000000000"));
        // Every u64 keeps the key it had before long numbers were handled.
        assert_eq!(
            key("1.0.0-7"),
            format!("{:020}.{:020}.{:020}-0{:020}", 1, 0, 0, 7)
        );
        // Leading zeros are not valid semver, so a number has one spelling.
        assert!(VersionNumber::parse("v", "1.0.0-007").is_err());
    }
}
