//! `berth backup FILE`: a consistent copy of the SQLite database, taken while Berth runs.
//!
//! The copy is made with `VACUUM INTO`, which reads the database in one read transaction: a
//! snapshot of every transaction committed before it began, whatever the server writes
//! meanwhile (WAL lets the reader and the writer run side by side). PostgreSQL is backed up
//! with its own tools (`pg_dump`), which do the same there.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::config::{Database, Settings};

/// Writes a consistent copy of the SQLite database of `settings` to `dest`, which must not
/// exist yet; checks the copy with `PRAGMA integrity_check`.
pub async fn backup(settings: &Settings, dest: &Path) -> anyhow::Result<()> {
    if let Database::Postgres(_) = settings.database {
        bail!(
            "berth backup copies SQLite databases only, and database_url points to PostgreSQL: \
             back it up with pg_dump (e.g. `pg_dump --format=custom --file=berth.dump \"$BERTH_DATABASE_URL\"`) \
             and restore it with pg_restore"
        );
    }
    let source = settings.data_dir.join("berth.db");
    if !source.is_file() {
        bail!(
            "no SQLite database at {} (check data_dir / --data-dir / BERTH_DATA_DIR)",
            source.display()
        );
    }
    // `symlink_metadata` sees a dangling link too: never write through one.
    if dest.symlink_metadata().is_ok() {
        bail!(
            "backup file {} already exists: berth backup never overwrites a file; choose a new \
             name or remove it first",
            dest.display()
        );
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        bail!(
            "cannot write the backup to {}: directory {} does not exist",
            dest.display(),
            parent.display()
        );
    }
    let dest_text = dest
        .to_str()
        .with_context(|| format!("backup path {} is not valid UTF-8", dest.display()))?;

    // Open the live database without creating it, and wait on the server's write lock
    // rather than fail: VACUUM INTO only reads, but it needs the WAL index.
    // `filename`, not a URL: a path with `?`, `#` or `%` in it stays the path it is.
    let options = SqliteConnectOptions::new()
        .filename(&source)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30));
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot open {}", source.display()))?;
    // The copy holds token and session hashes and the audit log, like the database: it is
    // created empty and private (0600) first, atomically (`create_new` refuses a file that
    // appeared since the check above), and VACUUM INTO fills that empty file.
    create_private_file(dest)
        .with_context(|| format!("cannot create the backup file {}", dest.display()))?;
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(dest_text)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    if let Err(e) = copied {
        let _ = std::fs::remove_file(dest);
        return Err(e)
            .with_context(|| format!("copying {} to {}", source.display(), dest.display()));
    }

    // The copy is complete on disk before we say so.
    std::fs::File::open(dest)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", dest.display()))?;

    let copy_options = SqliteConnectOptions::new()
        .filename(dest)
        .create_if_missing(false)
        .read_only(true);
    let mut copy = SqliteConnection::connect_with(&copy_options)
        .await
        .with_context(|| format!("cannot open the copy {}", dest.display()))?;
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut copy)
        .await
        .with_context(|| format!("checking {}", dest.display()))?;
    let _ = copy.close().await;
    if check != "ok" {
        bail!(
            "the copy {} failed PRAGMA integrity_check: {check}",
            dest.display()
        );
    }
    Ok(())
}

/// Creates `path` empty, readable by its owner alone; fails if anything is there already.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}
