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
        if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
            fail_all(jobs, &e);
            continue;
        }
        let mut finishes: Vec<Finish> = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Err(e) = conn.execute("SAVEPOINT berth_job").await {
                // The job never runs: dropping it drops its answer channel, and its caller
                // gets an error, with nothing acknowledged.
                tracing::error!(error = %e, "opening a savepoint failed");
                drop(job);
                continue;
            }
            let (ok, finish) = job(&mut conn).await;
            let closed = if ok {
                conn.execute("RELEASE berth_job").await
            } else {
                match conn.execute("ROLLBACK TO berth_job").await {
                    Ok(_) => conn.execute("RELEASE berth_job").await,
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = closed {
                tracing::error!(error = %e, "closing a savepoint failed");
            }
            finishes.push(finish);
        }
        match conn.execute("COMMIT").await {
            Ok(_) => finishes.into_iter().for_each(|f| f(None)),
            Err(e) => {
                tracing::error!(error = %e, "group commit failed");
                let _ = conn.execute("ROLLBACK").await;
                finishes.into_iter().for_each(|f| f(Some(&e)));
            }
        }
    }
}

fn fail_all(jobs: Vec<Job>, e: &sqlx::Error) {
    tracing::warn!(error = %e, "the writer cannot reach the database");
    // The jobs never ran; answer each with the error by running nothing. Dropping a job
    // drops its answer channel, which its caller reads as the pool being closed.
    drop(jobs);
}
