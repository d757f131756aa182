//! SQLite's migrations, applied on a `rusqlite` connection of their own before the store
//! opens: the files of `migrations/sqlite/`, embedded by `sqlx::migrate!` (which also
//! computes their checksums), recorded in sqlx's own `_sqlx_migrations` table the way sqlx
//! records them, so a database migrated by an earlier Berth (which ran sqlx's migrator) is
//! recognised, and a database this runner migrated still reads as applied to sqlx's tools.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations ( \
     version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
     installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
     checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)";

/// Applies every migration of `migrations/sqlite/` that `file` lacks, each in its own
/// transaction with its bookkeeping row. Refuses a database left half-migrated (a row with
/// `success = false`), one whose applied migration differs from the embedded file of the
/// same number (an applied migration is never edited), and one migrated by a newer Berth.
pub(crate) fn migrate(file: &Path) -> anyhow::Result<()> {
    let mut conn = Connection::open(file)
        .with_context(|| format!("cannot open SQLite database {}", file.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.execute_batch(BOOKKEEPING)?;
    let dirty: Option<i64> = conn
        .query_row(
            "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(version) = dirty {
        bail!("migration {version} was left half-applied; restore a backup");
    }
    let applied: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some((newest, _)) = applied.iter().find(|(v, _)| *v > known) {
        bail!(
            "the database has migration {newest}, newer than this Berth knows (up to {known}): \
             run the Berth that migrated it"
        );
    }
    for migration in MIGRATOR.iter() {
        if let Some((_, checksum)) = applied.iter().find(|(v, _)| *v == migration.version) {
            if checksum.as_slice() != &*migration.checksum {
                bail!(
                    "migration {} ({}) differs from the one applied to this database",
                    migration.version,
                    migration.description
                );
            }
            continue;
        }
        let started = Instant::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(migration.sql.as_str()).with_context(|| {
            format!(
                "applying migration {} ({})",
                migration.version, migration.description
            )
        })?;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (?1, ?2, TRUE, ?3, ?4)",
            params![
                migration.version,
                &*migration.description,
                &*migration.checksum,
                i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX),
            ],
        )?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(file: &Path) -> Vec<i64> {
        let conn = Connection::open(file).expect("open");
        conn.prepare("SELECT version FROM _sqlx_migrations ORDER BY version")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    #[test]
    fn applies_every_migration_once_and_refuses_an_edited_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("berth.db");
        migrate(&file).expect("first run");
        let all: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert_eq!(versions(&file), all);
        migrate(&file).expect("a second run changes nothing");
        assert_eq!(versions(&file), all);

        let conn = Connection::open(&file).expect("open");
        conn.execute(
            "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 1",
            [],
        )
        .expect("tamper");
        let err = migrate(&file).expect_err("an edited migration");
        assert!(err.to_string().contains("differs"), "{err}");

        conn.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (99999, 'future', TRUE, x'00', 0)",
            [],
        )
        .expect("future");
        let err = migrate(&file).expect_err("a newer database");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    /// A database migrated by sqlx's own migrator (every earlier Berth) reads as migrated.
    #[tokio::test]
    async fn a_database_sqlx_migrated_is_recognised() {
        use sqlx::Connection as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("berth.db");
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open");
        MIGRATOR.run(&mut conn).await.expect("sqlx migrates");
        conn.close().await.expect("close");
        migrate(&file).expect("nothing to apply, nothing refused");
        let all: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert_eq!(versions(&file), all);
    }
}
