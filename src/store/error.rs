//! The store's own error type: what a caller of the store can act on, whichever database
//! answered. No driver error leaves `store/` except inside [`Error::Other`], for the log.

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A unique constraint refused the write: the value of `field` is taken. Nothing was
    /// written.
    #[error("the {field} is already taken")]
    Conflict { field: &'static str },
    /// The database cannot be reached or is going away (a refused, reset or timed-out
    /// connection, a pool that waited too long, a server shutting down, SQLite still busy
    /// after its busy timeout), or it gave the transaction up to break a deadlock or a
    /// serialization conflict. Nothing was written; the same call may succeed later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A text value held a NUL character, which PostgreSQL's text type cannot store: the
    /// client's input, so a 400, never a 500. Nothing was written.
    #[error("text must not contain NUL (\\u0000) characters")]
    NulInText,
    /// Anything else: a bug, a corrupt row, a full disk.
    #[error(transparent)]
    Other(anyhow::Error),
}

/// What every store call answers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error that is none of the kinds above.
    pub fn other(message: impl std::fmt::Display) -> Error {
        Error::Other(anyhow::anyhow!("{message}"))
    }

    /// The same error again, for each of several callers one failure answers (a batch):
    /// the kind is kept, the cause is told in words.
    pub(crate) fn again(&self) -> Error {
        match self {
            Error::Conflict { field } => Error::Conflict { field },
            Error::Unavailable(m) => Error::Unavailable(m.clone()),
            Error::NulInText => Error::NulInText,
            Error::Other(e) => Error::other(format!("{e:#}")),
        }
    }

    /// True for [`Error::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Error {
        if super::is_unavailable(&err) || super::is_transient_conflict(&err) {
            return Error::Unavailable(err.to_string());
        }
        if super::is_nul_in_text(&err) {
            return Error::NulInText;
        }
        if let Some(db) = err.as_database_error()
            && db.is_unique_violation()
        {
            return Error::Conflict {
                field: conflict_field(db.constraint(), db.message()),
            };
        }
        Error::Other(err.into())
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Error {
        use rusqlite::ffi;
        match &err {
            rusqlite::Error::SqliteFailure(f, message) => match f.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    Error::Conflict {
                        field: conflict_field(None, message.as_deref().unwrap_or_default()),
                    }
                }
                // Still busy after the busy timeout, or locked: try again later.
                _ if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
                {
                    Error::Unavailable(err.to_string())
                }
                _ => Error::Other(err.into()),
            },
            _ => Error::Other(err.into()),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Error {
        Error::Other(anyhow::Error::new(err).context("a stored JSON value"))
    }
}

/// The request field a unique constraint guards, from the constraint's name (PostgreSQL) or
/// the message naming the table and column or the index (SQLite: `UNIQUE constraint failed:
/// users.username`, or `index 'users_username_folded'`). The tables' unique keys are in
/// `migrations/`; a name this does not know is a bug and answers `id`.
pub(crate) fn conflict_field(constraint: Option<&str>, message: &str) -> &'static str {
    let text = constraint.unwrap_or(message);
    // Most specific first: `model_versions` and `models` both contain `models`' letters.
    const FIELDS: &[(&str, &str)] = &[
        ("model_versions", "version"),
        ("webhooks", "name"),
        ("models", "name"),
        ("workspaces", "name"),
        ("api_tokens", "token"),
        ("users", "username"),
    ];
    FIELDS
        .iter()
        .find(|(table, _)| text.contains(table))
        .map_or("id", |(_, field)| field)
}

#[cfg(test)]
mod tests {
    use super::conflict_field;

    #[test]
    fn each_unique_key_names_its_field() {
        assert_eq!(
            conflict_field(None, "UNIQUE constraint failed: users.username"),
            "username"
        );
        assert_eq!(
            conflict_field(Some("users_username_folded"), "duplicate key value"),
            "username"
        );
        assert_eq!(
            conflict_field(None, "UNIQUE constraint failed: index 'models_name_folded'"),
            "name"
        );
        assert_eq!(
            conflict_field(Some("model_versions_precedence"), ""),
            "version"
        );
        assert_eq!(
            conflict_field(
                None,
                "UNIQUE constraint failed: model_versions.model_id, model_versions.version"
            ),
            "version"
        );
        assert_eq!(conflict_field(Some("webhooks_model_name_key"), ""), "name");
        assert_eq!(conflict_field(Some("workspaces_name_key"), ""), "name");
        assert_eq!(conflict_field(Some("something_else"), ""), "id");
    }
}
