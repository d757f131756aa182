//! PostgreSQL's own counters, for `berth bench`: not part of the storage interface.
//!
//! The bench measures Berth on a scratch database of its own ([`PgProbe`]) and reads what
//! PostgreSQL itself counts while it runs: committed transactions (`pg_stat_database`),
//! statements (`pg_stat_statements`, when loaded), WAL written ([`PgCounters`]), and which
//! server processes serve the scratch database ([`PgBackends`]). It also creates the tables
//! of its pgbench floor. Every query the bench makes is here, so that no driver type leaves
//! `store/`; what the bench does with the figures (timing, `/proc`, reports) stays in
//! `bench.rs`. Errors are plain [`anyhow::Error`]s: this is a tool, not the storage
//! interface, and its errors only end a bench run.

use anyhow::Context;
use sqlx::{Connection, PgConnection, Row};

/// A scratch database, created beside the one an URL names (`CREATE DATABASE`) and dropped by
/// [`PgProbe::drop_database`]; it also hands out the connections that read PostgreSQL's
/// counters about it.
pub struct PgProbe {
    /// The URL the database was created from: the counters are read there, not in the
    /// scratch database, so that their queries do not count among its transactions.
    base: String,
    name: String,
    url: String,
}

impl PgProbe {
    /// Creates a fresh database `berth_bench_<uuid>` on the server of `base` (a URL that
    /// names a database, which must exist).
    pub async fn create_scratch(base: &str) -> anyhow::Result<PgProbe> {
        let name = format!("berth_bench_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(base)
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        let (prefix, _) = base.rsplit_once('/').context("the URL has no database")?;
        Ok(PgProbe {
            base: base.to_owned(),
            url: format!("{prefix}/{name}"),
            name,
        })
    }

    /// The URL of the scratch database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The scratch database's size on disk (`pg_database_size`), in bytes.
    pub async fn size_bytes(&self) -> anyhow::Result<i64> {
        let mut conn = PgConnection::connect(&self.url).await?;
        let bytes: i64 = sqlx::query("SELECT pg_database_size(current_database()) AS n")
            .fetch_one(&mut conn)
            .await?
            .try_get("n")?;
        let _ = conn.close().await;
        Ok(bytes)
    }

    /// Drops the scratch database (`WITH (FORCE)`: connections still open are ended). Best
    /// effort: a failure leaves the database behind, and is not reported.
    pub async fn drop_database(self) {
        if let Ok(mut conn) = PgConnection::connect(&self.base).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
    }

    /// Creates the pgbench floor's tables (`FLOOR_TABLES`, below) in the scratch database and
    /// answers the mean length in bytes of the `payload` of the events Berth has written
    /// there so far (0 when there are none), for the floor's events rows.
    pub async fn create_floor_tables(&self) -> anyhow::Result<f64> {
        let mut conn = PgConnection::connect(&self.url).await?;
        sqlx::raw_sql(FLOOR_TABLES).execute(&mut conn).await?;
        let payload: f64 =
            sqlx::query("SELECT coalesce(avg(octet_length(payload)), 0)::float8 AS n FROM events")
                .fetch_one(&mut conn)
                .await?
                .try_get("n")?;
        let _ = conn.close().await;
        Ok(payload)
    }

    /// Opens the connections that read the scratch database's counters: one to the base
    /// database, and, when the server preloads `pg_stat_statements` and the extension can be
    /// created in the scratch database, one there to read it.
    pub async fn counters(&self) -> anyhow::Result<PgCounters> {
        let mut conn = PgConnection::connect(&self.base).await?;
        let mut statements = None;
        let preload: String =
            sqlx::query("SELECT current_setting('shared_preload_libraries') AS s")
                .fetch_one(&mut conn)
                .await?
                .try_get("s")?;
        if preload.contains("pg_stat_statements") {
            let mut c = PgConnection::connect(&self.url).await?;
            if sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .execute(&mut c)
                .await
                .is_ok()
            {
                statements = Some(c);
            }
        }
        Ok(PgCounters {
            conn,
            statements,
            name: self.name.clone(),
        })
    }

    /// Opens a connection to the base database that lists the server processes of the
    /// scratch database ([`PgBackends::list`]); it may move to a task of its own.
    pub async fn backends(&self) -> anyhow::Result<PgBackends> {
        Ok(PgBackends {
            conn: PgConnection::connect(&self.base).await?,
            name: self.name.clone(),
        })
    }
}

/// Cumulative counters of the scratch database, read on connections of their own: take them
/// before and after a run and subtract. PostgreSQL publishes a backend's counters in
/// `pg_stat_database` late (at most once a second, and within 10 s of the backend going
/// idle): the caller waits for them to settle.
pub struct PgCounters {
    /// To the base database, so that reading the counters is not counted in them.
    conn: PgConnection,
    /// To the scratch database, where `pg_stat_statements` was created; None without it.
    statements: Option<PgConnection>,
    name: String,
}

impl PgCounters {
    /// Transactions committed in the scratch database (`pg_stat_database.xact_commit`).
    pub async fn xact_commit(&mut self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query("SELECT xact_commit AS n FROM pg_stat_database WHERE datname = $1")
                .bind(&self.name)
                .fetch_one(&mut self.conn)
                .await?
                .try_get("n")?,
        )
    }

    /// Statements executed in the scratch database (the sum of `pg_stat_statements.calls`
    /// there, which counts this query too); None without `pg_stat_statements`.
    pub async fn statement_calls(&mut self) -> anyhow::Result<Option<i64>> {
        let Some(conn) = &mut self.statements else {
            return Ok(None);
        };
        Ok(Some(
            sqlx::query(
                "SELECT coalesce(sum(calls), 0)::int8 AS n FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(conn)
            .await?
            .try_get("n")?,
        ))
    }

    /// The server's WAL insert position now (`pg_current_wal_lsn`), for
    /// [`PgCounters::wal_bytes_since`].
    pub async fn wal_lsn(&mut self) -> anyhow::Result<WalLsn> {
        let lsn: String = sqlx::query("SELECT pg_current_wal_lsn()::text AS l")
            .fetch_one(&mut self.conn)
            .await?
            .try_get("l")?;
        Ok(WalLsn(lsn))
    }

    /// Bytes of WAL the whole server has written since `lsn` (`pg_wal_lsn_diff`).
    pub async fn wal_bytes_since(&mut self, lsn: &WalLsn) -> anyhow::Result<f64> {
        Ok(
            sqlx::query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8 AS b")
                .bind(&lsn.0)
                .fetch_one(&mut self.conn)
                .await?
                .try_get("b")?,
        )
    }

    /// Closes the connections.
    pub async fn close(self) {
        let _ = self.conn.close().await;
        if let Some(c) = self.statements {
            let _ = c.close().await;
        }
    }
}

/// A position in PostgreSQL's write-ahead log, as `pg_current_wal_lsn` gives it.
#[derive(Debug, Clone)]
pub struct WalLsn(String);

/// Lists the server processes that serve the scratch database, and the cluster's background
/// processes that write for it, on a connection of its own (to the base database).
pub struct PgBackends {
    conn: PgConnection,
    name: String,
}

/// One process [`PgBackends::list`] found.
#[derive(Debug, Clone, Copy)]
pub struct PgBackend {
    pub pid: u32,
    /// True for a backend connected to the scratch database, false for a background process
    /// (WAL writer, checkpointer, background writer, autovacuum launcher).
    pub ours: bool,
}

impl PgBackends {
    /// The processes in `pg_stat_activity` now, but this connection's own. A row whose pid
    /// does not read as a process id is left out.
    pub async fn list(&mut self) -> anyhow::Result<Vec<PgBackend>> {
        let rows = sqlx::query(
            "SELECT pid, datname IS NOT DISTINCT FROM $1 AS ours FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND (datname = $1 OR backend_type IN \
             ('walwriter', 'checkpointer', 'background writer', 'autovacuum launcher'))",
        )
        .bind(&self.name)
        .fetch_all(&mut self.conn)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let pid: i32 = r.try_get("pid").ok()?;
                Some(PgBackend {
                    pid: u32::try_from(pid).ok()?,
                    ours: r.try_get("ours").ok()?,
                })
            })
            .collect())
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// The tables of `berth bench`'s pgbench floor (scenario 1), beside Berth's own in the
/// scratch database: the columns, keys and indexes of `model_versions` and `events` (their
/// foreign keys pointing at one-row tables), so that a floor transaction writes what a create
/// writes. The pgbench script that writes them is `bench.rs`'s `floor_setup`.
const FLOOR_TABLES: &str = "
CREATE TABLE bench_floor_workspaces (id BIGINT PRIMARY KEY);
CREATE TABLE bench_floor_models (id BIGINT PRIMARY KEY);
INSERT INTO bench_floor_workspaces VALUES (1);
INSERT INTO bench_floor_models VALUES (1), (16);
CREATE TABLE bench_floor_versions (
    id                    BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id              BIGINT  NOT NULL REFERENCES bench_floor_models(id),
    version               TEXT    NOT NULL,
    sort_key              TEXT    COLLATE \"C\" NOT NULL,
    tags                  TEXT    NOT NULL,
    status                TEXT,
    source_experiment_key TEXT,
    description           TEXT    NOT NULL DEFAULT '',
    created_by            TEXT    NOT NULL,
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL,
    CONSTRAINT bench_floor_versions_model_version UNIQUE (model_id, version)
);
CREATE INDEX bench_floor_versions_order ON bench_floor_versions(model_id, sort_key, id);
CREATE TABLE bench_floor_events (
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            TEXT    NOT NULL UNIQUE,
    workspace_id  BIGINT  NOT NULL REFERENCES bench_floor_workspaces(id),
    model_id      BIGINT  NOT NULL,
    event_trigger TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    occurred_at   BIGINT  NOT NULL
);
CREATE INDEX bench_floor_events_workspace ON bench_floor_events(workspace_id, seq);
";
