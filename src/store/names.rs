//! The names check that follows migration 0008 (README → Names): rows written before it whose
//! names now collide (`resnet` and `ResNet`, `café` in NFC and NFD, `Production` and
//! `Prоduction`, `1.0.0` and `1.0.0+build`) are kept as they are and reported, never merged;
//! the unique indexes of 0008 keep every new row from joining them.
//!
//! [`Store::migrate`] runs [`Store::check_names`] after the migrations, so `berth migrate` and
//! every `berth serve` log what still collides. It also computes what SQL cannot: the name
//! keys (NFC and case folding) of webhooks written before 0008, and, once, the sort keys of
//! versions whose pre-release numbers are too big for 64 bits.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Result, Store, is_unique_violation};
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
const PAGE: i64 = 1000;

impl Store {
    /// Fills what migration 0008 could not, then logs a warning for every clash. Answers the
    /// clashes (those of tags only from the one-time pass, when it ran).
    pub async fn check_names(&self) -> Result<Vec<NameClash>> {
        self.fill_webhook_name_keys().await?;
        let mut clashes = Vec::new();
        if self.setting(VERSIONS_CHECKED).await?.is_none() {
            clashes.extend(self.fix_versions().await?);
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

    /// Every clash of users, workspaces, models, versions, webhooks and statuses (tags are
    /// checked once, by [`Store::check_version_tags`]).
    pub async fn name_clashes(&self) -> Result<Vec<NameClash>> {
        let mut out = Vec::new();
        let folded = |s: &str| s.to_ascii_lowercase();
        out.extend(
            self.clash_groups(
                "username",
                "SELECT '' AS scope, u.username AS name, u.id AS n FROM users c \
                 JOIN users u ON LOWER(u.username) = LOWER(c.username) \
                 WHERE c.name_clash = 1",
                folded,
            )
            .await?,
        );
        out.extend(
            self.clash_groups(
                "workspace",
                "SELECT '' AS scope, w.name AS name, w.id AS n FROM workspaces c \
                 JOIN workspaces w ON LOWER(w.name) = LOWER(c.name) WHERE c.name_clash = 1",
                folded,
            )
            .await?,
        );
        out.extend(
            self.clash_groups(
                "model",
                "SELECT w.name AS scope, m.name AS name, m.id AS n FROM models c \
                 JOIN models m ON m.workspace_id = c.workspace_id \
                 AND LOWER(m.name) = LOWER(c.name) \
                 JOIN workspaces w ON w.id = m.workspace_id WHERE c.name_clash = 1",
                folded,
            )
            .await?,
        );
        out.extend(
            self.clash_groups(
                "version",
                "SELECT w.name || '/' || m.name AS scope, v.version AS name, v.id AS n \
                 FROM model_versions c \
                 JOIN model_versions v ON v.model_id = c.model_id AND v.sort_key = c.sort_key \
                 JOIN models m ON m.id = v.model_id JOIN workspaces w ON w.id = m.workspace_id \
                 WHERE c.precedence_clash = 1",
                |v| {
                    VersionNumber::parse("version", v)
                        .map(|v| v.sort_key())
                        .unwrap_or_else(|_| v.to_owned())
                },
            )
            .await?,
        );
        out.extend(
            self.clash_groups(
                "webhook",
                "SELECT w.name || '/' || m.name AS scope, h.name AS name, h.created_at AS n \
                 FROM webhooks h JOIN models m ON m.id = h.model_id \
                 JOIN workspaces w ON w.id = m.workspace_id \
                 WHERE h.model_id IN (SELECT model_id FROM webhooks WHERE name_key IS NULL)",
                name_key,
            )
            .await?,
        );
        let rows = sqlx::query("SELECT name, statuses FROM workspaces ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        for row in rows {
            let ws: String = row.try_get("name")?;
            let text: String = row.try_get("statuses")?;
            let statuses: Vec<super::StatusDef> =
                serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            let names = statuses.iter().map(|s| s.name.clone());
            out.extend(groups("status", &ws, names, look_alike_key));
        }
        Ok(out)
    }

    /// The clashes of `sql` (rows of `scope`, `name`, and `n` to order by), grouped by scope
    /// and `key`: only groups of two or more.
    async fn clash_groups(
        &self,
        kind: &'static str,
        sql: &'static str,
        key: impl Fn(&str) -> String,
    ) -> Result<Vec<NameClash>> {
        let rows = sqlx::query(sql).fetch_all(&self.read).await?;
        let mut named: Vec<(String, i64, String)> = Vec::with_capacity(rows.len());
        for row in rows {
            named.push((
                row.try_get("scope")?,
                row.try_get("n")?,
                row.try_get("name")?,
            ));
        }
        named.sort();
        named.dedup();
        let mut by_scope: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (scope, _, name) in named {
            by_scope.entry(scope).or_default().push(name);
        }
        Ok(by_scope
            .into_iter()
            .flat_map(|(scope, names)| groups(kind, &scope, names, &key))
            .collect())
    }

    /// Gives every webhook without a name key (written before migration 0008) its key,
    /// oldest first, unless a webhook of the same model already has it: that one keeps NULL,
    /// and is reported.
    async fn fill_webhook_name_keys(&self) -> Result<()> {
        let rows = sqlx::query(
            "SELECT id, model_id, name FROM webhooks WHERE name_key IS NULL \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.read)
        .await?;
        for row in rows {
            let id: String = row.try_get("id")?;
            let model_id: i64 = row.try_get("model_id")?;
            let name: String = row.try_get("name")?;
            let done = sqlx::query(
                "UPDATE webhooks SET name_key = $2 WHERE id = $1 AND name_key IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM webhooks o WHERE o.model_id = $3 \
                 AND o.name_key = $2)",
            )
            .bind(id.as_str())
            .bind(name_key(&name))
            .bind(model_id)
            .execute(&self.write)
            .await;
            match done {
                Ok(_) => {}
                // Another node filled the same key meanwhile: this one is a clash.
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The one-time pass over versions: recomputes sort keys that changed when pre-release
    /// numbers too big for 64 bits began to sort as numbers, and answers the tags that clash
    /// within a version.
    async fn fix_versions(&self) -> Result<Vec<NameClash>> {
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(
                "SELECT id, version, sort_key FROM model_versions WHERE id > $1 \
                 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(PAGE)
            .fetch_all(&self.read)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("id")?;
            for row in &rows {
                let version: String = row.try_get("version")?;
                let stored: String = row.try_get("sort_key")?;
                let Ok(parsed) = VersionNumber::parse("version", &version) else {
                    continue;
                };
                let key = parsed.sort_key();
                if key != stored {
                    sqlx::query("UPDATE model_versions SET sort_key = $2 WHERE id = $1")
                        .bind(row.try_get::<i64, _>("id")?)
                        .bind(key)
                        .execute(&self.write)
                        .await?;
                }
            }
        }
        self.check_version_tags().await
    }

    /// The tags that look alike within a version (`prod`, `PROD` and `pr\u{200B}od`):
    /// a scan of every version.
    pub async fn check_version_tags(&self) -> Result<Vec<NameClash>> {
        let mut out = Vec::new();
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(
                "SELECT v.id, w.name || '/' || m.name || '@' || v.version AS scope, v.tags \
                 FROM model_versions v JOIN models m ON m.id = v.model_id \
                 JOIN workspaces w ON w.id = m.workspace_id WHERE v.id > $1 \
                 ORDER BY v.id LIMIT $2",
            )
            .bind(after)
            .bind(PAGE)
            .fetch_all(&self.read)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("id")?;
            for row in &rows {
                let tags: String = row.try_get("tags")?;
                let tags: Vec<String> =
                    serde_json::from_str(&tags).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                if tags.len() > 1 {
                    let scope: String = row.try_get("scope")?;
                    out.extend(groups("tag", &scope, tags, look_alike_key));
                }
            }
        }
        Ok(out)
    }
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
