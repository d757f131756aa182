//! `berth backup FILE`: a consistent copy of the SQLite database, taken while Berth runs.
//!
//! The copy is made with `VACUUM INTO`, which reads the database in one read transaction: a
//! snapshot of every transaction committed before it began, whatever the server writes
//! meanwhile (WAL lets the reader and the writer run side by side). PostgreSQL is backed up
//! with its own tools (`pg_dump`), which do the same there.

use std::path::Path;

use anyhow::{Context, bail};

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
    if dest.to_str().is_none() {
        bail!("backup path {} is not valid UTF-8", dest.display());
    }
    // The copy holds token and session hashes and the audit log, like the database: it is
    // created empty and private (0600) first, atomically (`create_new` refuses a file that
    // appeared since the check above), and VACUUM INTO fills that empty file.
    create_private_file(dest)
        .with_context(|| format!("cannot create the backup file {}", dest.display()))?;
    let (from, to) = (source.clone(), dest.to_owned());
    let copied = tokio::task::spawn_blocking(move || crate::store::copy_sqlite(&from, &to))
        .await
        .context("the backup task")?;
    if let Err(e) = copied {
        let _ = std::fs::remove_file(dest);
        return Err(e)
            .with_context(|| format!("copying {} to {}", source.display(), dest.display()));
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
