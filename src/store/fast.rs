//! SQLite's hot writes of the delivery worker, run on the group writer's thread (see
//! `group.rs`): leasing due deliveries and recording a successful attempt. Each runs
//! statement after statement on the thread's `rusqlite` connection, with no round trip
//! between them; PostgreSQL runs the `sqlx` versions beside them in `webhooks.rs`. The SQL
//! is the same, with SQLite's `?N` placeholders. (Creating a version, with its event and
//! deliveries, is in `sqlite/versions.rs` and `sqlite/events.rs`.)

use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, named_params, params};

use super::deliveries::{
    AttemptResult, ClaimedDelivery, Recorded, claimed_from_row, claimed_select,
};
use super::group::Db;
use super::models::{SCOPE_SQL, ScopeColumns};

/// Leases up to `limit` due deliveries to `node` until `lease_until`, at most `per_webhook`
/// in flight per webhook; answers them loaded. Per webhook, never across all of them: a dead
/// receiver's backlog cannot crowd the healthy webhooks out of a claim. First the webhooks
/// with due work and free slots, oldest due first; then, for each, its oldest due
/// deliveries up to its free slots. Inside the write transaction, so nobody else can take
/// them between the read and the lease; loaded there too, with their event and webhook.
pub(super) fn lease_due(
    conn: &Connection,
    node: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
    per_webhook: i64,
) -> Result<Vec<ClaimedDelivery>, sqlx::Error> {
    let webhooks: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT w.id, \
             (SELECT COUNT(*) FROM deliveries x WHERE x.webhook_id = w.id \
              AND x.state = 'pending' AND x.locked_until > ?1) AS inflight, \
             (SELECT MIN(d.next_attempt_at) FROM deliveries d WHERE d.webhook_id = w.id \
              AND d.state = 'pending') AS oldest \
             FROM webhooks w WHERE w.enabled = 1 AND EXISTS ( \
               SELECT 1 FROM deliveries d WHERE d.webhook_id = w.id AND d.state = 'pending' \
               AND d.next_attempt_at <= ?1 AND (d.locked_until IS NULL OR d.locked_until <= ?1)) \
             ORDER BY oldest",
        )
        .and_then(|mut s| {
            s.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .db()?;
    let mut won: Vec<ClaimedDelivery> = Vec::new();
    for (webhook_id, inflight) in webhooks {
        let room = limit - i64::try_from(won.len()).unwrap_or(i64::MAX);
        if room <= 0 {
            break;
        }
        let free = (per_webhook - inflight).min(room);
        if free <= 0 {
            continue;
        }
        for id in due_of(conn, &webhook_id, now, free)? {
            won.push(lease(conn, &id, node, lease_until)?);
        }
    }
    Ok(won)
}

/// The oldest `n` due, unleased deliveries of a webhook. Ties on the due time go in
/// creation order (`rowid`, which the index carries, so no sort is needed).
fn due_of(
    conn: &Connection,
    webhook_id: &str,
    now: i64,
    n: i64,
) -> Result<Vec<String>, sqlx::Error> {
    conn.prepare_cached(
        "SELECT id FROM deliveries WHERE webhook_id = ?1 AND state = 'pending' \
         AND next_attempt_at <= ?2 AND (locked_until IS NULL OR locked_until <= ?2) \
         ORDER BY next_attempt_at, rowid LIMIT ?3",
    )
    .and_then(|mut s| {
        s.query_map(params![webhook_id, now, n], |r| r.get(0))?
            .collect()
    })
    .db()
}

/// Leases delivery `id` to `node` (a new fencing token) and loads what sending it takes.
fn lease(
    conn: &Connection,
    id: &str,
    node: &str,
    lease_until: i64,
) -> Result<ClaimedDelivery, sqlx::Error> {
    conn.prepare_cached(
        "UPDATE deliveries SET locked_until = ?1, locked_by = ?2, \
         lease_token = lease_token + 1 WHERE id = ?3",
    )
    .and_then(|mut s| s.execute(params![lease_until, node, id]))
    .db()?;
    load(conn, id)
}

/// Loads what sending leased delivery `id` takes.
fn load(conn: &Connection, id: &str) -> Result<ClaimedDelivery, sqlx::Error> {
    static LOAD: LazyLock<String> = LazyLock::new(|| format!("{}d.id = ?1", claimed_select()));
    let mut load = conn.prepare_cached(&LOAD).db()?;
    let mut rows = load.query([id]).db()?;
    let row = rows.next().db()?.ok_or(sqlx::Error::RowNotFound)?;
    claimed_from_row(row)
}

/// Records a successful attempt and the delivery's new state, releasing the lease, and ends
/// the webhook's run of failures if it had one, while the delivery still holds the attempt's
/// lease token; otherwise writes nothing and answers why (the delivery is gone, or another
/// claim took it). As `Store::record_attempt`, for a success. With `next`,
/// also leases (to that node, until that time) and loads the webhook's oldest due delivery,
/// if the webhook is still enabled and has one: the slot this attempt frees goes straight
/// to the next one, with no claim in between.
pub(super) fn record_success(
    conn: &Connection,
    delivery_id: &str,
    webhook_id: &str,
    result: &AttemptResult,
    next: Option<&NextLease>,
) -> Result<(Recorded, Option<ClaimedDelivery>), sqlx::Error> {
    let a = &result.attempt;
    let updated = conn
        .prepare_cached(
            "UPDATE deliveries SET attempt_count = attempt_count + 1, state = ?2, \
             next_attempt_at = ?3, locked_until = NULL, locked_by = NULL, \
             last_status_code = ?4, updated_at = ?5 WHERE id = ?1 AND lease_token = ?6",
        )
        .and_then(|mut s| {
            s.execute(params![
                delivery_id,
                result.state.as_str(),
                result.next_attempt_at,
                a.status_code,
                result.now,
                result.lease_token,
            ])
        })
        .db()?;
    if updated == 0 {
        let exists = conn
            .prepare_cached("SELECT 1 FROM deliveries WHERE id = ?1")
            .and_then(|mut s| s.exists([delivery_id]))
            .db()?;
        let why = if exists {
            Recorded::StaleLease
        } else {
            Recorded::Gone
        };
        return Ok((why, None));
    }
    conn.prepare_cached(
        "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, \
         status_code, error_class, error, request_url, request_headers, response_headers, \
         response_body, node, response_headers_omitted) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .and_then(|mut s| {
        s.execute(params![
            delivery_id,
            a.attempt,
            a.started_at,
            a.duration_ms,
            a.status_code,
            a.error_class,
            a.error,
            a.request_url,
            a.request_headers,
            a.response_headers,
            a.response_body,
            a.node,
            a.response_headers_omitted,
        ])
    })
    .db()?;
    if result.webhook_was_failing {
        conn.prepare_cached(
            "UPDATE webhooks SET failing_since = NULL WHERE id = ?1 AND failing_since IS NOT NULL",
        )
        .and_then(|mut s| s.execute([webhook_id]))
        .db()?;
    }
    let Some(next) = next else {
        return Ok((Recorded::Recorded, None));
    };
    // The webhook's oldest due, unleased delivery, if the webhook is still enabled, leased in
    // one statement (the order of `due_of`).
    let leased: Option<String> = conn
        .prepare_cached(
            "UPDATE deliveries SET locked_until = ?3, locked_by = ?4, \
             lease_token = lease_token + 1 WHERE rowid = ( \
               SELECT d.rowid FROM deliveries d WHERE d.webhook_id = ?1 \
               AND d.state = 'pending' AND d.next_attempt_at <= ?2 \
               AND (d.locked_until IS NULL OR d.locked_until <= ?2) \
               AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = ?1 AND w.enabled = 1) \
               ORDER BY d.next_attempt_at, d.rowid LIMIT 1) \
             RETURNING id",
        )
        .and_then(|mut s| {
            s.query_row(
                params![webhook_id, next.now, next.lease_until, next.node],
                |r| r.get(0),
            )
            .optional()
        })
        .db()?;
    let claimed = leased.map(|id| load(conn, &id)).transpose()?;
    Ok((Recorded::Recorded, claimed))
}

/// Where to lease the next delivery of the same webhook after a success.
#[derive(Debug, Clone)]
pub struct NextLease {
    pub node: String,
    /// Now, by the worker's clock: what is due.
    pub now: i64,
    pub lease_until: i64,
}

/// Synchronous read connections to the SQLite file, for the hottest read (the model scope of
/// every model-scoped request): run on the calling thread, a read of a few indexed rows
/// costs about ten microseconds, less than handing it to a `sqlx` reader thread and back.
/// Connections are opened on demand and at most `MAX_IDLE` are kept.
pub struct Readers {
    file: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

const MAX_IDLE: usize = 8;

impl Readers {
    pub fn new(file: PathBuf) -> Readers {
        Readers {
            file,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on an idle connection (or a new one).
    pub fn read<T, E: From<sqlx::Error>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let conn = match idle {
            Some(c) => c,
            None => open_reader(&self.file).db()?,
        };
        let result = f(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
        result
    }
}

fn open_reader(file: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(file)?;
    // A WAL reader waits only in rare cases (the log being recovered); it runs on a runtime
    // thread, so it waits briefly, then answers busy (a 503: try again).
    conn.busy_timeout(Duration::from_secs(1))?;
    // Reads only, whatever a bug might try.
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

/// The model-scope read (see `Store::model_scope`).
pub(super) fn scope(
    conn: &Connection,
    token_hash: &str,
    ws: &str,
    model: &str,
) -> Result<Option<ScopeColumns>, sqlx::Error> {
    conn.prepare_cached(SCOPE_SQL)
        .and_then(|mut s| {
            s.query_row(
                named_params! {"$1": token_hash, "$2": ws, "$3": model},
                |r| {
                    Ok(ScopeColumns {
                        user_id: r.get("user_id")?,
                        username: r.get("username")?,
                        server_admin: r.get("server_admin")?,
                        token_id: r.get("token_id")?,
                        ws_id: r.get("ws_id")?,
                        ws_name: r.get("ws_name")?,
                        role: r.get("role")?,
                        model_id: r.get("model_id")?,
                        model_name: r.get("model_name")?,
                    })
                },
            )
            .optional()
        })
        .db()
}
