//! Group commit for SQLite: one writer thread folds the write transactions that arrive while
//! it is busy into one database transaction and one fsync, answering each caller only when
//! the commit that holds its change is durable.
//!
//! Each job runs inside its own `SAVEPOINT`, so a job that fails (a duplicate version, say) is
//! rolled back alone and answered with its own error, while the others commit. A failed
//! `COMMIT` fails every job of the batch: none of them was acknowledged, so nothing
//! acknowledged is lost. SQLite allows one writer at a time anyway; batching turns N fsyncs
//! into one.
//!
//! Every write of the SQLite backend is such a job: a closure run on the thread's own
//! `rusqlite` connection, statement after statement without leaving the thread, so a whole
//! batch costs one hand-off. This is the only connection that writes.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use anyhow::Context;
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::{Error, Result};

/// Called once the batch's `COMMIT` is known (with its error, if it failed).
type Finish = Box<dyn FnOnce(Option<&Error>) + Send>;

/// One write: runs on the writer thread's connection; answers whether it succeeded and how
/// to answer its caller once the commit is known.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;

/// The most jobs folded into one transaction.
const MAX_BATCH: usize = 256;

/// A handle to the writer.
#[derive(Clone)]
pub struct GroupWriter {
    jobs: std_mpsc::Sender<Job>,
}

impl GroupWriter {
    /// Starts the writer thread on its own connection to `file`.
    pub fn start(file: &Path) -> anyhow::Result<GroupWriter> {
        let conn = open_writer(file)
            .with_context(|| format!("cannot open SQLite database {}", file.display()))?;
        let (jobs, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("berth-writer".into())
            .spawn(move || writer_thread(&conn, &rx))
            .context("starting the SQLite writer thread")?;
        Ok(GroupWriter { jobs })
    }

    /// Queues `work` for the writer thread's connection, in the next group transaction (at
    /// once: before the answer is awaited); the answer comes once it is committed. `work`
    /// must not block on anything but SQLite.
    pub fn write<T, F>(&self, work: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            let result = work(conn);
            (result.is_ok(), answer(result, tx))
        });
        let sent = self.jobs.send(job).is_ok();
        async move {
            let gone = || Error::Unavailable("the SQLite writer has stopped".into());
            if !sent {
                return Err(gone());
            }
            rx.await.map_err(|_| gone())?
        }
    }
}

/// How to answer a job's caller once its batch's commit is known.
fn answer<T: Send + 'static>(result: Result<T>, tx: oneshot::Sender<Result<T>>) -> Finish {
    Box::new(move |commit_error| {
        let answer = match (result, commit_error) {
            (Ok(v), None) => Ok(v),
            (Ok(_), Some(e)) => Err(commit_failed(e)),
            (Err(e), _) => Err(e),
        };
        let _ = tx.send(answer);
    })
}

/// A job's answer when the commit of its batch failed: nothing of it was kept.
fn commit_failed(e: &Error) -> Error {
    match e {
        Error::Unavailable(m) => Error::Unavailable(format!("commit failed: {m}")),
        other => Error::other(format!("commit failed: {other}")),
    }
}

fn fail_all(jobs: Vec<Job>, e: &Error) {
    tracing::warn!(error = %e, "the SQLite writer cannot begin a transaction");
    // The jobs never ran; answer each with the error by running nothing. Dropping a job
    // drops its answer channel, which its caller reads as the writer being unavailable.
    drop(jobs);
}

/// Opens the writer's connection: WAL with `synchronous=FULL` (a commit that returned is on
/// disk), foreign keys on.
pub(super) fn open_writer(file: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(file)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The writer thread: folds the jobs that arrived while it was busy into one transaction.
/// It stops when every handle is gone.
fn writer_thread(conn: &Connection, jobs: &std_mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if catch_unwind(AssertUnwindSafe(|| run_batch(conn, batch))).is_err() {
            // A bug in a job: its batch is rolled back and unanswered (its callers get an
            // error); the thread goes on serving the next batches.
            tracing::error!("a write panicked; its batch was rolled back");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
    }
}

fn exec(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Runs a run of jobs as one transaction, each in a savepoint when there are several.
fn run_batch(conn: &Connection, jobs: Vec<Job>) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        fail_all(jobs, &e);
        return;
    }
    let single = jobs.len() == 1;
    let mut finishes: Vec<Finish> = Vec::with_capacity(jobs.len());
    let mut broken: Option<Error> = None;
    for job in jobs {
        if broken.is_some() {
            // A savepoint statement failed: the transaction's state is unknown, so nothing
            // more runs and nothing of this batch is acknowledged. Dropping the job drops
            // its answer channel: its caller gets an error.
            drop(job);
            continue;
        }
        if !single && let Err(e) = exec(conn, "SAVEPOINT berth_job") {
            broken = Some(e);
            drop(job);
            continue;
        }
        let (ok, finish) = job(conn);
        finishes.push(finish);
        let closed = match (single, ok) {
            (true, true) => Ok(()),
            (true, false) => exec(conn, "ROLLBACK"),
            (false, true) => exec(conn, "RELEASE berth_job"),
            (false, false) => {
                exec(conn, "ROLLBACK TO berth_job").and_then(|()| exec(conn, "RELEASE berth_job"))
            }
        };
        if let Err(e) = closed {
            broken = Some(e);
        }
    }
    if broken.is_none() && !conn.is_autocommit() {
        // (A lone job that failed was rolled back above.)
        if let Err(e) = exec(conn, "COMMIT") {
            broken = Some(e);
        }
    }
    match broken {
        None => finishes.into_iter().for_each(|f| f(None)),
        Some(e) => {
            tracing::error!(error = %e, "group commit failed");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            finishes.into_iter().for_each(|f| f(Some(&e)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("g.db");
        let conn = open_writer(&file).expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .expect("create");
        (dir, file)
    }

    /// Jobs queued while the writer is busy form one batch; the failing ones (duplicate
    /// keys) are answered with their error and leave no trace, the others commit.
    #[tokio::test]
    async fn a_batch_commits_the_good_jobs_and_refuses_the_bad_ones_alone() {
        let (_dir, file) = setup();
        let writer = GroupWriter::start(&file).expect("start");
        let (release, hold) = std_mpsc::channel::<()>();
        let (started, running) = oneshot::channel::<()>();
        let first = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write(move |conn| {
                        let _ = started.send(());
                        // Holds the writer until the others are queued.
                        let _ = hold.recv();
                        insert(conn, 1)
                    })
                    .await
            }
        });
        running.await.expect("the first job runs");
        // Queued behind the held job (`write` queues at once), they run as one batch.
        let rest: Vec<_> = [2, 3, 3, 2, 4, 5]
            .into_iter()
            .map(|v| tokio::spawn(writer.write(move |conn| insert(conn, v))))
            .collect();
        let _ = release.send(());
        assert_eq!(first.await.expect("join").expect("first"), 1);
        let mut ok = Vec::new();
        let mut failed = 0;
        for t in rest {
            match t.await.expect("join") {
                Ok(v) => ok.push(v),
                Err(e) => {
                    assert!(matches!(e, Error::Conflict { .. }), "{e}");
                    failed += 1;
                }
            }
        }
        ok.sort_unstable();
        assert_eq!((ok, failed), (vec![2, 3, 4, 5], 2));
        assert_eq!(values(&file), vec![1, 2, 3, 4, 5]);
    }

    /// A job alone in its transaction: committed when it succeeds, rolled back whole when it
    /// fails after writing.
    #[tokio::test]
    async fn a_lone_job_commits_or_rolls_back_whole() {
        let (_dir, file) = setup();
        let writer = GroupWriter::start(&file).expect("start");
        assert_eq!(writer.write(|c| insert(c, 7)).await.expect("7"), 7);
        let err = writer
            .write(|c| {
                insert(c, 8)?;
                insert(c, 7)
            })
            .await
            .expect_err("duplicate");
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        assert_eq!(values(&file), vec![7]);
    }

    /// A database still locked after the busy timeout reads as unavailable (a 503, try
    /// again), not as a bug (a 500).
    #[test]
    fn a_busy_database_is_unavailable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("b.db");
        let holder = open_writer(&file).expect("open");
        holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let other = open_writer(&file).expect("open");
        other.busy_timeout(Duration::ZERO).expect("timeout");
        let err = Error::from(other.execute_batch("BEGIN IMMEDIATE").expect_err("busy"));
        assert!(err.is_unavailable(), "{err}");
    }

    /// The values committed to `t`, in order.
    fn values(file: &Path) -> Vec<i64> {
        let conn = Connection::open(file).expect("open");
        let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v").expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("select")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    fn insert(conn: &Connection, v: i64) -> Result<i64> {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
        Ok(v)
    }
}
