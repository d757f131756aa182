//! The names check that follows migration 0008 (README → Names): rows written before it whose
//! names now collide (`resnet` and `ResNet`, `café` in NFC and NFD, `Production` and
//! `Prоduction`, `1.0.0` and `1.0.0+build`) are kept as they are and reported, never merged;
//! the unique indexes of 0008 keep every new row from joining them.
//!
//! [`super::Store::migrate`] runs [`Names::check_names`] after the migrations, so `berth migrate` and
//! every `berth serve` log what still collides. It also computes what SQL cannot: the name
//! keys (NFC and case folding) of webhooks written before 0008, and, once, the sort keys of
//! versions whose pre-release numbers are too big for 64 bits.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{Result, ServerSettings, StatusDef};
use crate::domain::{VersionNumber, look_alike_key, name_key};

/// Names that would be taken for one another, all kept from before migration 0008.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameClash {
    /// `username`, `workspace`, `model`, `version`, `webhook`, `status` or `tag`.
    pub kind: &'static str,
    /// Where the names must differ: empty (the server), a workspace (`ws`), a model
    /// (`ws/model`) or a version (`ws/model@1.0.0`).
    pub scope: String,
    /// The names, oldest first.
    pub names: Vec<String>,
}

impl std::fmt::Display for NameClash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.names.iter().map(|n| format!("{n:?}")).collect();
        write!(f, "{} {}", self.kind, names.join(", "))?;
        if !self.scope.is_empty() {
            write!(f, " in {}", self.scope)?;
        }
        Ok(())
    }
}

/// The server setting that says the one-time pass over versions was made.
const VERSIONS_CHECKED: &str = "names_0008_versions_checked";

/// Rows read per page by the one-time pass over versions.
pub(super) const PAGE: i64 = 1000;

/// The names check, on either database. Each backend implements the steps;
/// [`Names::check_names`], which runs them, is written once, here.
#[async_trait]
pub trait Names: ServerSettings {
    /// Fills what migration 0008 could not, then logs a warning for every clash. Answers the
    /// clashes (those of tags only from the one-time pass, when it ran).
    async fn check_names(&self) -> Result<Vec<NameClash>> {
        self.fill_webhook_name_keys().await?;
        let mut clashes = Vec::new();
        if self.setting(VERSIONS_CHECKED).await?.is_none() {
            self.fix_sort_keys().await?;
            clashes.extend(self.check_version_tags().await?);
            self.init_setting(VERSIONS_CHECKED, "1").await?;
        }
        clashes.splice(0..0, self.name_clashes().await?);
        for clash in &clashes {
            tracing::warn!(
                kind = clash.kind,
                scope = %clash.scope,
                "{clash} look alike; they were created before names were compared \
                 (README → Names): rename or delete all but one"
            );
        }
        Ok(clashes)
    }

    /// Every clash of users, workspaces, models, versions, webhooks (the queries of
    /// [`CLASH_QUERIES`]) and statuses. Tags are checked once, by
    /// [`Names::check_version_tags`].
    async fn name_clashes(&self) -> Result<Vec<NameClash>>;

    /// The tags that look alike within a version (`prod`, `PROD` and `pr\u{200B}od`): a scan
    /// of every version, [`PAGE`] rows at a time.
    async fn check_version_tags(&self) -> Result<Vec<NameClash>>;

    /// Gives every webhook without a name key (written before migration 0008) its key,
    /// oldest first, unless a webhook of the same model already has it: that one keeps
    /// NULL, and is reported.
    async fn fill_webhook_name_keys(&self) -> Result<()>;

    /// Part of the one-time pass over versions: recomputes, [`PAGE`] rows at a time, the sort
    /// keys that changed when pre-release numbers too big for 64 bits began to sort as
    /// numbers.
    async fn fix_sort_keys(&self) -> Result<()>;
}

/// One kind of name, and the query that finds its clashes: rows of `scope`, `name`, and `n`
/// to order by (every row of a group that holds a row kept from before 0008).
pub(super) struct ClashQuery {
    pub kind: &'static str,
    pub sql: &'static str,
    /// What two names that clash have in common.
    pub key: fn(&str) -> String,
}

fn folded(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn precedence(version: &str) -> String {
    VersionNumber::parse("version", version)
        .map(|v| v.sort_key())
        .unwrap_or_else(|_| version.to_owned())
}

// The query text both dialects take (see `sql_text_numbers_its_parameters_in_order`).

pub(super) const CLASH_QUERIES: &[ClashQuery] = &[
    ClashQuery {
        kind: "username",
        sql: "SELECT '' AS scope, u.username AS name, u.id AS n FROM users c \
              JOIN users u ON LOWER(u.username) = LOWER(c.username) \
              WHERE c.name_clash = 1",
        key: folded,
    },
    ClashQuery {
        kind: "workspace",
        sql: "SELECT '' AS scope, w.name AS name, w.id AS n FROM workspaces c \
              JOIN workspaces w ON LOWER(w.name) = LOWER(c.name) WHERE c.name_clash = 1",
        key: folded,
    },
    ClashQuery {
        kind: "model",
        sql: "SELECT w.name AS scope, m.name AS name, m.id AS n FROM models c \
              JOIN models m ON m.workspace_id = c.workspace_id \
              AND LOWER(m.name) = LOWER(c.name) \
              JOIN workspaces w ON w.id = m.workspace_id WHERE c.name_clash = 1",
        key: folded,
    },
    ClashQuery {
        kind: "version",
        sql: "SELECT w.name || '/' || m.name AS scope, v.version AS name, v.id AS n \
              FROM model_versions c \
              JOIN model_versions v ON v.model_id = c.model_id AND v.sort_key = c.sort_key \
              JOIN models m ON m.id = v.model_id JOIN workspaces w ON w.id = m.workspace_id \
              WHERE c.precedence_clash = 1",
        key: precedence,
    },
    ClashQuery {
        kind: "webhook",
        sql: "SELECT w.name || '/' || m.name AS scope, h.name AS name, h.created_at AS n \
              FROM webhooks h JOIN models m ON m.id = h.model_id \
              JOIN workspaces w ON w.id = m.workspace_id \
              WHERE h.model_id IN (SELECT model_id FROM webhooks WHERE name_key IS NULL)",
        key: name_key,
    },
];

/// Every workspace's name and statuses (JSON).
pub(super) const WORKSPACE_STATUSES: &str = "SELECT name, statuses FROM workspaces ORDER BY id";

/// The webhooks without a name key, oldest first.
pub(super) const WEBHOOKS_WITHOUT_KEY: &str = "SELECT id, model_id, name FROM webhooks \
     WHERE name_key IS NULL ORDER BY created_at, id";

/// Gives webhook `$2` (of model `$3`) the name key `$1`, unless another webhook of its model
/// has it.
pub(super) const FILL_NAME_KEY: &str = "UPDATE webhooks SET name_key = $1 \
     WHERE id = $2 AND name_key IS NULL \
     AND NOT EXISTS (SELECT 1 FROM webhooks o WHERE o.model_id = $3 AND o.name_key = $1)";

/// A page of versions after id `$1`, at most `$2`, with their sort keys.
pub(super) const VERSION_SORT_KEYS: &str = "SELECT id, version, sort_key FROM model_versions \
     WHERE id > $1 ORDER BY id LIMIT $2";

pub(super) const SET_SORT_KEY: &str = "UPDATE model_versions SET sort_key = $1 WHERE id = $2";

/// A page of versions after id `$1`, at most `$2`, with their scope and tags (JSON).
pub(super) const VERSION_TAGS: &str = "SELECT v.id, \
     w.name || '/' || m.name || '@' || v.version AS scope, v.tags \
     FROM model_versions v JOIN models m ON m.id = v.model_id \
     JOIN workspaces w ON w.id = m.workspace_id WHERE v.id > $1 \
     ORDER BY v.id LIMIT $2";

#[cfg(test)]
pub(super) const SHARED_SQL: &[&str] = &[
    CLASH_QUERIES[0].sql,
    CLASH_QUERIES[1].sql,
    CLASH_QUERIES[2].sql,
    CLASH_QUERIES[3].sql,
    CLASH_QUERIES[4].sql,
    WORKSPACE_STATUSES,
    WEBHOOKS_WITHOUT_KEY,
    FILL_NAME_KEY,
    VERSION_SORT_KEYS,
    SET_SORT_KEY,
    VERSION_TAGS,
];

/// The clashes among the rows of a [`ClashQuery`] (`(scope, n, name)`), grouped by scope
/// and the query's key: only groups of two or more.
pub(super) fn clash_groups(
    query: &ClashQuery,
    mut named: Vec<(String, i64, String)>,
) -> Vec<NameClash> {
    named.sort();
    named.dedup();
    let mut by_scope: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (scope, _, name) in named {
        by_scope.entry(scope).or_default().push(name);
    }
    by_scope
        .into_iter()
        .flat_map(|(scope, names)| groups(query.kind, &scope, names, query.key))
        .collect()
}

/// The statuses of workspace `ws` (stored as JSON) that look alike.
pub(super) fn status_clashes(ws: &str, statuses: &str) -> Result<Vec<NameClash>> {
    let statuses: Vec<StatusDef> = serde_json::from_str(statuses)?;
    let names = statuses.into_iter().map(|s| s.name);
    Ok(groups("status", ws, names, look_alike_key))
}

/// The tags of one version (stored as JSON; `scope` names the version) that look alike.
pub(super) fn tag_clashes(scope: &str, tags: &str) -> Result<Vec<NameClash>> {
    let tags: Vec<String> = serde_json::from_str(tags)?;
    if tags.len() < 2 {
        return Ok(Vec::new());
    }
    Ok(groups("tag", scope, tags, look_alike_key))
}

/// The sort key `version` should have, when it is not `stored` (and `version` parses).
pub(super) fn changed_sort_key(version: &str, stored: &str) -> Option<String> {
    let key = VersionNumber::parse("version", version).ok()?.sort_key();
    (key != stored).then_some(key)
}

/// The groups of two or more `names` (in order) with equal `key`s, as clashes in `scope`.
fn groups(
    kind: &'static str,
    scope: &str,
    names: impl IntoIterator<Item = String>,
    key: impl Fn(&str) -> String,
) -> Vec<NameClash> {
    let mut by_key: Vec<(String, Vec<String>)> = Vec::new();
    for name in names {
        let k = key(&name);
        match by_key.iter_mut().find(|(other, _)| *other == k) {
            Some((_, names)) => names.push(name),
            None => by_key.push((k, vec![name])),
        }
    }
    by_key
        .into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(_, names)| NameClash {
            kind,
            scope: scope.to_owned(),
            names,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StatusName;

    #[test]
    fn groups_only_what_looks_alike() {
        let names = ["Production", "Staging", "Pr\u{43E}duction", "production"];
        let found = groups(
            "status",
            "ws",
            names.iter().map(|s| s.to_string()),
            look_alike_key,
        );
        assert_eq!(
            found,
            [NameClash {
                kind: "status",
                scope: "ws".into(),
                names: vec![
                    "Production".into(),
                    "Pr\u{43E}duction".into(),
                    "production".into()
                ],
            }]
        );
        assert!(StatusName::looks_like(
            &found[0].names[0],
            &found[0].names[1]
        ));
        assert_eq!(
            found[0].to_string(),
            "status \"Production\", \"Prоduction\", \"production\" in ws"
        );
    }
}
