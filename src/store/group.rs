//! Group commit for SQLite: one writer folds the write transactions that arrive while it is
//! busy into one database transaction and one fsync, answering each caller only when the
//! commit that holds its change is durable.
//!
//! Each job runs inside its own `SAVEPOINT`, so a job that fails (a duplicate version, say) is
//! rolled back alone and answered with its own error, while the others commit. A failed
//! `COMMIT` fails every job of the batch: none of them was acknowledged, so nothing
//! acknowledged is lost. SQLite allows one writer at a time anyway; batching turns N fsyncs
//! into one.
//!
//! Jobs come in two kinds:
//! - **sync** jobs (the hot writes: version creation, delivery claims, successful attempts)
//!   run on the writer thread's own `rusqlite` connection, statement after statement without
//!   leaving the thread: a whole batch costs one hand-off, where `sqlx` would cost a round
//!   trip to its connection thread per statement;
//! - **async** jobs (every other write) run on `sqlx`'s one write connection.
//!
//! Sync jobs go straight to the writer thread, async jobs to a writer task. Each holds the
//! one `sqlx` write connection while its transaction runs, so the two connections never
//! write at once, and neither does `Store::begin`, which takes the same connection.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use anyhow::Context;
use sqlx::{AnyConnection, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot};

/// A boxed future borrowing the connection.
pub type ConnFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// Called once the batch's `COMMIT` is known (with its error, if it failed).
type Finish = Box<dyn FnOnce(Option<&sqlx::Error>) + Send>;

/// One write: runs on the writer's connection; answers whether it succeeded and how to
/// answer its caller once the commit is known.
type Job = Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> ConnFuture<'c, (bool, Finish)> + Send>;

/// The same, run on the writer thread's `rusqlite` connection.
type SyncJob = Box<dyn FnOnce(&rusqlite::Connection) -> (bool, Finish) + Send>;

/// The most jobs folded into one transaction.
const MAX_BATCH: usize = 256;

/// A handle to the writer.
#[derive(Clone)]
pub struct GroupWriter {
    jobs: mpsc::UnboundedSender<Job>,
    sync: std_mpsc::Sender<SyncJob>,
}

impl GroupWriter {
    /// Starts the writer task on `pool` (SQLite's one-connection write pool) and the writer
    /// thread on its own connection to `file`.
    pub fn start(pool: AnyPool, file: &Path) -> anyhow::Result<GroupWriter> {
        let conn = open_sync(file)
            .with_context(|| format!("cannot open SQLite database {}", file.display()))?;
        let (sync, sync_rx) = std_mpsc::channel::<SyncJob>();
        let runtime = tokio::runtime::Handle::current();
        let lock = pool.clone();
        std::thread::Builder::new()
            .name("berth-writer".into())
            .spawn(move || writer_thread(&conn, &sync_rx, &lock, &runtime))
            .context("starting the SQLite writer thread")?;
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, rx));
        Ok(GroupWriter { jobs, sync })
    }

    /// Runs `work` in the next group transaction; answers once it is committed.
    pub async fn write<T, F>(&self, work: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> ConnFuture<'c, Result<T, sqlx::Error>>
            + Send
            + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, sqlx::Error>>();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let result = work(conn).await;
                (result.is_ok(), answer(result, tx))
            })
        });
        self.jobs.send(job).map_err(|_| sqlx::Error::PoolClosed)?;
        rx.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    /// Runs `work` on the writer thread's connection in the next group transaction; answers
    /// once it is committed. `work` must not block on anything but SQLite.
    pub async fn write_sync<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<sqlx::Error> + Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, E>>();
        let job: SyncJob = Box::new(move |conn| {
            let result = work(conn);
            (result.is_ok(), answer(result, tx))
        });
        self.sync
            .send(job)
            .map_err(|_| E::from(sqlx::Error::PoolClosed))?;
        rx.await.map_err(|_| E::from(sqlx::Error::PoolClosed))?
    }
}

/// How to answer a job's caller once its batch's commit is known.
fn answer<T: Send + 'static, E: From<sqlx::Error> + Send + 'static>(
    result: Result<T, E>,
    tx: oneshot::Sender<Result<T, E>>,
) -> Finish {
    Box::new(move |commit_error| {
        let answer = match (result, commit_error) {
            (Ok(v), None) => Ok(v),
            (Ok(_), Some(e)) => Err(E::from(commit_failed(e))),
            (Err(e), _) => Err(e),
        };
        let _ = tx.send(answer);
    })
}

fn commit_failed(e: &sqlx::Error) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(format!("commit failed: {e}")))
}

async fn run(pool: AnyPool, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut conn = match pool.acquire().await {
            Ok(c) => c,
            Err(e) => {
                fail_all(jobs, &e);
                continue;
            }
        };
        if jobs.len() == 1 {
            // Alone in its transaction: no savepoint needed, a failure rolls it all back.
            run_one(&mut conn, jobs).await;
        } else {
            run_batch(&mut conn, jobs).await;
        }
    }
}

/// Runs one job in its own transaction.
async fn run_one(conn: &mut AnyConnection, jobs: Vec<Job>) {
    if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
        fail_all(jobs, &e);
        return;
    }
    for job in jobs {
        let (ok, finish) = job(conn).await;
        if ok {
            match conn.execute("COMMIT").await {
                Ok(_) => finish(None),
                Err(e) => {
                    tracing::error!(error = %e, "commit failed");
                    let _ = conn.execute("ROLLBACK").await;
                    finish(Some(&e));
                }
            }
        } else {
            if let Err(e) = conn.execute("ROLLBACK").await {
                tracing::error!(error = %e, "rolling back a failed write failed");
            }
            finish(None);
        }
    }
}

/// Runs several jobs in one transaction, each in a savepoint. The statements that close one
/// savepoint and open the next go to SQLite as one batch: one round trip to the
/// connection's thread between jobs instead of two.
async fn run_batch(conn: &mut AnyConnection, jobs: Vec<Job>) {
    if let Err(e) = conn.execute("BEGIN IMMEDIATE; SAVEPOINT berth_job").await {
        let _ = conn.execute("ROLLBACK").await;
        fail_all(jobs, &e);
        return;
    }
    let last = jobs.len() - 1;
    let mut finishes: Vec<Finish> = Vec::with_capacity(jobs.len());
    let mut broken: Option<sqlx::Error> = None;
    for (i, job) in jobs.into_iter().enumerate() {
        if broken.is_some() {
            // A savepoint statement failed: the transaction's state is unknown, so nothing
            // more runs and nothing of this batch is acknowledged. Dropping the job drops
            // its answer channel: its caller gets an error.
            drop(job);
            continue;
        }
        let (ok, finish) = job(conn).await;
        finishes.push(finish);
        let close = match (ok, i == last) {
            (true, false) => "RELEASE berth_job; SAVEPOINT berth_job",
            (false, false) => "ROLLBACK TO berth_job; RELEASE berth_job; SAVEPOINT berth_job",
            (true, true) => "RELEASE berth_job; COMMIT",
            (false, true) => "ROLLBACK TO berth_job; RELEASE berth_job; COMMIT",
        };
        if let Err(e) = conn.execute(close).await {
            broken = Some(e);
        }
    }
    match broken {
        None => finishes.into_iter().for_each(|f| f(None)),
        Some(e) => {
            tracing::error!(error = %e, "group commit failed");
            let _ = conn.execute("ROLLBACK").await;
            finishes.into_iter().for_each(|f| f(Some(&e)));
        }
    }
}

fn fail_all<J>(jobs: Vec<J>, e: &dyn std::fmt::Display) {
    tracing::warn!(error = %e, "the writer cannot reach the database");
    // The jobs never ran; answer each with the error by running nothing. Dropping a job
    // drops its answer channel, which its caller reads as the pool being closed.
    drop(jobs);
}

/// Opens the writer thread's connection with the same settings as the `sqlx` pools: WAL
/// with `synchronous=FULL` (a commit that returned is on disk), foreign keys on.
fn open_sync(file: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(file)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The writer thread: folds the jobs that arrived while it was busy into one transaction,
/// holding the `sqlx` write connection (the write lock) meanwhile.
fn writer_thread(
    conn: &rusqlite::Connection,
    jobs: &std_mpsc::Receiver<SyncJob>,
    lock: &AnyPool,
    runtime: &tokio::runtime::Handle,
) {
    // The pool's connection is taken and given back through the runtime.
    let _runtime = runtime.enter();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let held = match catch_unwind(AssertUnwindSafe(|| runtime.block_on(lock.acquire()))) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                fail_all(batch, &e);
                continue;
            }
            // The runtime is shutting down: nobody is left to answer.
            Err(_) => return,
        };
        // What arrived while the lock was awaited joins the batch.
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if catch_unwind(AssertUnwindSafe(|| run_sync_batch(conn, batch))).is_err() {
            // A bug in a job: its batch is rolled back and unanswered (its callers get an
            // error); the thread goes on serving the next batches.
            tracing::error!("a write panicked; its batch was rolled back");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        drop(held);
    }
}

fn exec(conn: &rusqlite::Connection, sql: &str) -> Result<(), sqlx::Error> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(drop)
        .db()
}

/// Runs a run of sync jobs as one transaction, each in a savepoint when there are several.
fn run_sync_batch(conn: &rusqlite::Connection, jobs: Vec<SyncJob>) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        fail_all(jobs, &e);
        return;
    }
    let single = jobs.len() == 1;
    let mut finishes: Vec<Finish> = Vec::with_capacity(jobs.len());
    let mut broken: Option<sqlx::Error> = None;
    for job in jobs {
        if broken.is_some() {
            // As in `run_batch`: nothing more runs, nothing is acknowledged.
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

/// An error of the writer thread's SQLite connection, in the shape `sqlx` gives its own (the
/// extended result code as the code, the same kinds), so callers handle both alike.
#[derive(Debug)]
struct SqliteError {
    code: i32,
    message: String,
}

impl std::fmt::Display for SqliteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteError {}

impl sqlx::error::DatabaseError for SqliteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        use sqlx::error::ErrorKind;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

/// `rusqlite` results as `sqlx` results (the store's error type).
pub trait Db<T> {
    fn db(self) -> Result<T, sqlx::Error>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, sqlx::Error> {
        self.map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, message) => {
                sqlx::Error::Database(Box::new(SqliteError {
                    code: f.extended_code,
                    message: message.unwrap_or_else(|| f.to_string()),
                }))
            }
            other => sqlx::Error::Decode(Box::new(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    async fn pool() -> (tempfile::TempDir, AnyPool) {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("g.db").display());
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("open");
        sqlx::query("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .expect("create");
        (dir, pool)
    }

    fn insert(
        v: i64,
    ) -> impl for<'c> FnOnce(&'c mut AnyConnection) -> ConnFuture<'c, Result<i64, sqlx::Error>>
    + Send
    + 'static {
        move |conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO t (v) VALUES ($1)")
                    .bind(v)
                    .execute(&mut *conn)
                    .await?;
                Ok(v)
            })
        }
    }

    /// Jobs queued while the writer is busy form one batch, sync and async jobs mixed; the
    /// failing ones (duplicate keys, one in a run of each kind) are answered with their error
    /// and leave no trace, the others commit. The unique violation from `rusqlite` reads as
    /// `sqlx`'s does.
    #[tokio::test]
    async fn a_batch_commits_the_good_jobs_and_refuses_the_bad_ones_alone() {
        let (dir, pool) = pool().await;
        let writer = GroupWriter::start(pool.clone(), &dir.path().join("g.db")).expect("start");
        let (release, hold) = oneshot::channel::<()>();
        let first = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write(move |conn| {
                        Box::pin(async move {
                            let _ = hold.await;
                            sqlx::query("INSERT INTO t (v) VALUES (1)")
                                .execute(&mut *conn)
                                .await?;
                            Ok(1)
                        })
                    })
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // Queued behind the held job, they run as one batch: a sync run (2, 3, 3), an async
        // run (2, 4), a sync run (5).
        let mut rest = Vec::new();
        for (v, sync) in [
            (2, true),
            (3, true),
            (3, true),
            (2, false),
            (4, false),
            (5, true),
        ] {
            let writer = writer.clone();
            rest.push(tokio::spawn(async move {
                if sync {
                    writer.write_sync(move |conn| insert_sync(conn, v)).await
                } else {
                    writer.write(insert(v)).await
                }
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let _ = release.send(());
        assert_eq!(first.await.expect("join").expect("first"), 1);
        let mut ok = Vec::new();
        let mut failed = 0;
        for t in rest {
            match t.await.expect("join") {
                Ok(v) => ok.push(v),
                Err(e) => {
                    assert!(is_unique(&e), "{e}");
                    failed += 1;
                }
            }
        }
        ok.sort_unstable();
        assert_eq!((ok, failed), (vec![2, 3, 4, 5], 2));
        assert_eq!(values(&pool).await, vec![1, 2, 3, 4, 5]);
    }

    /// A sync job alone in its transaction: committed when it succeeds, rolled back whole
    /// when it fails after writing.
    #[tokio::test]
    async fn a_lone_sync_job_commits_or_rolls_back_whole() {
        let (dir, pool) = pool().await;
        let writer = GroupWriter::start(pool.clone(), &dir.path().join("g.db")).expect("start");
        assert_eq!(
            writer.write_sync(|c| insert_sync(c, 7)).await.expect("7"),
            7
        );
        let err = writer
            .write_sync(|c| {
                insert_sync(c, 8)?;
                insert_sync(c, 7)
            })
            .await
            .expect_err("duplicate");
        assert!(is_unique(&err), "{err}");
        assert_eq!(values(&pool).await, vec![7]);
    }

    /// A database still locked after the busy timeout reads as unavailable (a 503, try
    /// again), not as a bug (a 500).
    #[test]
    fn a_busy_database_is_unavailable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("b.db");
        let holder = open_sync(&file).expect("open");
        holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let other = open_sync(&file).expect("open");
        other.busy_timeout(Duration::ZERO).expect("timeout");
        let err = other
            .execute_batch("BEGIN IMMEDIATE")
            .db()
            .expect_err("busy");
        assert!(crate::store::is_unavailable(&err), "{err}");
    }

    /// The values committed to `t`, in order.
    async fn values(pool: &AnyPool) -> Vec<i64> {
        sqlx::query("SELECT v FROM t ORDER BY v")
            .fetch_all(pool)
            .await
            .expect("select")
            .iter()
            .map(|r| r.get::<i64, _>("v"))
            .collect()
    }

    fn insert_sync(conn: &rusqlite::Connection, v: i64) -> Result<i64, sqlx::Error> {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [v]).db()?;
        Ok(v)
    }

    fn is_unique(e: &sqlx::Error) -> bool {
        e.as_database_error()
            .is_some_and(|d| d.is_unique_violation())
    }
}
