//! The copy `berth backup` makes (see `src/backup.rs` for the checks around it).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};

/// Copies the live database `source` into `dest` (an empty file already created, private)
/// with `VACUUM INTO`: one read transaction, so a snapshot of what was committed before it
/// began, while the server goes on writing. Then makes the copy durable and checks it with
/// `PRAGMA integrity_check`.
pub fn copy_sqlite(source: &Path, dest: &Path) -> anyhow::Result<()> {
    let dest_text = dest
        .to_str()
        .with_context(|| format!("backup path {} is not valid UTF-8", dest.display()))?;
    // The live database, never created here; waiting on the server's write lock rather than
    // failing (VACUUM INTO only reads, but it needs the WAL index). A path, not a URI: a
    // name with `?`, `#` or `%` in it stays the name it is.
    let conn = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", source.display()))?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.execute("VACUUM INTO ?1", [dest_text])?;
    drop(conn);

    // The copy is complete on disk before we say so.
    std::fs::File::open(dest)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", dest.display()))?;

    let copy = Connection::open_with_flags(
        dest,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the copy {}", dest.display()))?;
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .with_context(|| format!("checking {}", dest.display()))?;
    if check != "ok" {
        bail!(
            "the copy {} failed PRAGMA integrity_check: {check}",
            dest.display()
        );
    }
    Ok(())
}
