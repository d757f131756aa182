//! Group commit for SQLite: one writer task folds the write transactions that arrive while
//! it is busy into one database transaction and one fsync, answering each caller only when
//! the commit that holds its change is durable.
//!
//! Each job runs inside its own `SAVEPOINT`, so a job that fails (a duplicate version, say) is
//! rolled back alone and answered with its own error, while the others commit. A failed
//! `COMMIT` fails every job of the batch: none of them was acknowledged, so nothing
//! acknowledged is lost. SQLite allows one writer at a time anyway; batching turns N fsyncs
//! into one.

use std::future::Future;
use std::pin::Pin;

use sqlx::{AnyConnection, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot};

/// A boxed future borrowing the connection.
pub type ConnFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// Called once the batch's `COMMIT` is known (with its error, if it failed).
type Finish = Box<dyn FnOnce(Option<&sqlx::Error>) + Send>;

/// One write: runs on the writer's connection; answers whether it succeeded and how to
/// answer its caller once the commit is known.
type Job = Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> ConnFuture<'c, (bool, Finish)> + Send>;

/// The most jobs folded into one transaction.
const MAX_BATCH: usize = 256;

/// A handle to the writer task.
#[derive(Clone)]
pub struct GroupWriter {
    jobs: mpsc::UnboundedSender<Job>,
}

impl GroupWriter {
    /// Starts the writer task on `pool` (SQLite's one-connection write pool).
    pub fn start(pool: AnyPool) -> GroupWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, rx));
        GroupWriter { jobs: tx }
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
                let ok = result.is_ok();
                let finish: Finish = Box::new(move |commit_error| {
                    let answer = match (result, commit_error) {
                        (Ok(v), None) => Ok(v),
                        (Ok(_), Some(e)) => Err(commit_failed(e)),
                        (Err(e), _) => Err(e),
                    };
                    let _ = tx.send(answer);
                });
                (ok, finish)
            })
        });
        self.jobs.send(job).map_err(|_| sqlx::Error::PoolClosed)?;
        rx.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
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

fn fail_all(jobs: Vec<Job>, e: &sqlx::Error) {
    tracing::warn!(error = %e, "the writer cannot reach the database");
    // The jobs never ran; answer each with the error by running nothing. Dropping a job
    // drops its answer channel, which its caller reads as the pool being closed.
    drop(jobs);
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

    /// Jobs queued while the writer is busy form one batch; the failing one in the middle
    /// (a duplicate key) is answered with its error and leaves no trace, the others commit.
    #[tokio::test]
    async fn a_batch_commits_the_good_jobs_and_refuses_the_bad_one_alone() {
        let (_dir, pool) = pool().await;
        let writer = GroupWriter::start(pool.clone());
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
        // Queued behind the held job: 2, a duplicate of 2, 3 and 4 run as one batch.
        let mut rest = Vec::new();
        for v in [2, 2, 3, 4] {
            let writer = writer.clone();
            rest.push(tokio::spawn(async move { writer.write(insert(v)).await }));
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
        assert_eq!((ok, failed), (vec![2, 3, 4], 1));
        let rows: Vec<i64> = sqlx::query("SELECT v FROM t ORDER BY v")
            .fetch_all(&pool)
            .await
            .expect("select")
            .iter()
            .map(|r| r.get::<i64, _>("v"))
            .collect();
        assert_eq!(rows, vec![1, 2, 3, 4]);
    }

    fn is_unique(e: &sqlx::Error) -> bool {
        e.as_database_error()
            .is_some_and(|d| d.is_unique_violation())
    }
}
