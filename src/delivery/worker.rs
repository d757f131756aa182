//! The delivery worker: claims due deliveries with a lease, sends them with bounded
//! concurrency (overall and per webhook), records every attempt, and reschedules failures.
//!
//! It never loses a delivery: the rows were written in the event's transaction, a claim is only
//! a lease (`locked_until`), and the attempt and the new state are recorded together. If the
//! process dies mid-attempt, another node declares it dead once its heartbeat has been silent
//! for `node_dead_after` and releases its leases (see `heartbeat.rs`), or else the lease runs
//! out, and another claim sends it again, with the same `webhook-id`: delivery is at least
//! once. Every claim gives the lease a new token and an attempt is recorded only under its
//! own, so a node that was paused past its lease cannot record over the new owner's attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Semaphore, watch};

use super::crypto::SecretBox;
use super::heartbeat::Heartbeat;
use super::http::{self, Outcome, Sender, Target};
use super::metrics::Metrics;
use super::schedule::RetrySchedule;
use crate::clock::{Clock, micros};
use crate::domain::{DeliveryState, EventPayload};
use crate::store::{
    AttemptRecord, AttemptResult, ClaimedDelivery, NextLease, Recorded, Store, WebhookRecord,
    now_micros,
};

/// Most deliveries one slot sends in a row for its webhook (each leased when the previous
/// one's success is recorded) before it goes back to the claim, which serves the webhooks
/// oldest due first: chaining saves a claim per delivery without letting busy webhooks keep
/// the slots from the others.
const CHAIN_MAX: usize = 16;

/// How the worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This node's name in leases and attempt rows.
    pub node: String,
    /// Most attempts in flight at once.
    pub max_in_flight: usize,
    /// Most attempts in flight for one webhook.
    pub per_webhook_in_flight: usize,
    /// Longest wait between two looks at the queue when nothing wakes the worker.
    pub poll_interval: Duration,
    /// How long a claim holds a delivery (longer than the send timeout).
    pub lease: Duration,
    pub schedule: RetrySchedule,
    /// Disable a webhook whose every attempt has failed for this long (`None`: never).
    pub auto_disable_after: Option<Duration>,
    /// How often this node beats in `nodes`, and declares the silent ones dead.
    pub heartbeat_interval: Duration,
    /// How long a node's heartbeat may be silent before another declares it dead.
    pub dead_after: Duration,
    /// The time of due deliveries, leases, heartbeats, retries and auto-disable.
    pub clock: Clock,
}

/// The worker, shareable between the loop and tests.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    sender: Sender,
    secrets: SecretBox,
    config: WorkerConfig,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    /// Turns true when the shutdown grace is over: attempts still sending give up, unrecorded,
    /// and their deliveries go back to the queue with the released leases.
    abort: watch::Sender<bool>,
    /// Turns true when shutdown begins: no more chained leases.
    stopping: AtomicBool,
    /// Held by the loop from a claim until its attempts hold their slots, and by `run_once`
    /// throughout: `run_once` never misses a delivery the loop has claimed but not started.
    claiming: Mutex<()>,
}

impl Worker {
    pub fn new(
        store: Store,
        sender: Sender,
        secrets: SecretBox,
        config: WorkerConfig,
        metrics: Arc<Metrics>,
    ) -> Worker {
        let slots = Arc::new(Semaphore::new(config.max_in_flight));
        Worker {
            inner: Arc::new(Inner {
                store,
                sender,
                secrets,
                config,
                slots,
                metrics,
                abort: watch::Sender::new(false),
                stopping: AtomicBool::new(false),
                claiming: Mutex::new(()),
            }),
        }
    }

    /// This node's heartbeat (see `heartbeat.rs`), which `run` keeps beating.
    pub fn heartbeat(&self) -> Heartbeat {
        let config = &self.inner.config;
        Heartbeat {
            store: self.inner.store.clone(),
            node: config.node.clone(),
            clock: config.clock.clone(),
            interval: config.heartbeat_interval,
            dead_after: config.dead_after,
        }
    }

    /// Runs until `stop` turns true, then waits for attempts in flight (up to `grace`),
    /// abandons those still sending (unrecorded: they will be sent again), releases this
    /// node's leases and removes its heartbeat row. The heartbeat beats until then, so other
    /// nodes leave the attempts finishing in the grace alone.
    pub async fn run(self, mut stop: watch::Receiver<bool>, grace: Duration) {
        let wake = self.inner.store.wake_signal();
        let (beat_stop, beat_stop_rx) = watch::channel(false);
        let beating = tokio::spawn(self.heartbeat().run(beat_stop_rx));
        tracing::info!(node = %self.inner.config.node, "delivery worker started");
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        loop {
            if *stop.borrow() {
                break;
            }
            let claimed = match self.claim_and_spawn().await {
                Ok(n) => {
                    if backoff.reset() {
                        tracing::info!("claiming deliveries works again");
                    }
                    n
                }
                Err(e) => {
                    // The database is away (or failing): wait longer each time, one log line
                    // per wait, never a hot loop.
                    let wait = backoff.next();
                    tracing::warn!(error = %e, retry_in = ?wait,
                        "claiming deliveries failed; backing off");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            };
            if claimed > 0 && self.inner.slots.available_permits() > 0 {
                continue;
            }
            let wait = self.idle_wait().await;
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        self.inner.stopping.store(true, Ordering::Relaxed);
        // Let attempts in flight finish, within the grace period; then abandon those still
        // sending and give them a moment to let go of their slots.
        let all = u32::try_from(self.inner.config.max_in_flight).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, self.inner.slots.acquire_many(all))
            .await
            .is_err()
        {
            let left = self.inner.config.max_in_flight - self.inner.slots.available_permits();
            tracing::warn!(
                in_flight = left,
                "attempts still in flight at the end of the shutdown grace; abandoning them \
                 (they will be sent again)"
            );
            self.inner.abort.send_replace(true);
            let _ =
                tokio::time::timeout(Duration::from_secs(2), self.inner.slots.acquire_many(all))
                    .await;
        }
        match self
            .inner
            .store
            .release_leases(&self.inner.config.node)
            .await
        {
            Ok(n) if n > 0 => tracing::info!(released = n, "released delivery leases"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "releasing leases failed"),
        }
        beat_stop.send_replace(true);
        let _ = beating.await;
        if let Err(e) = self.inner.store.forget_node(&self.inner.config.node).await {
            tracing::warn!(error = %e, "removing this node's heartbeat row failed");
        }
        tracing::info!("delivery worker stopped");
    }

    /// How long to sleep when there is nothing to claim: until the next delivery is due, at
    /// most the poll interval; when due deliveries wait only for their webhook's free slots,
    /// the poll interval (a finished attempt wakes the worker anyway).
    async fn idle_wait(&self) -> Duration {
        let poll = self.inner.config.poll_interval;
        if self.inner.slots.available_permits() == 0 {
            return poll;
        }
        let now = self.now();
        match self.inner.store.next_due_at().await {
            // Something falls due later: sleep until then.
            Ok(Some(at)) if at > now => {
                let delta = at - now;
                Duration::from_micros(u64::try_from(delta).unwrap_or(0)).min(poll)
            }
            // Due now but not claimable (its webhooks are at their in-flight limit): do not
            // spin. The end of any attempt, or any new delivery, wakes the worker.
            _ => poll,
        }
    }

    /// Claims as many due deliveries as there are free slots and starts sending them.
    async fn claim_and_spawn(&self) -> anyhow::Result<usize> {
        let _claiming = self.inner.claiming.lock().await;
        let free = self.inner.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let claimed = self.claim(free).await?;
        let n = claimed.len();
        for d in claimed {
            let permit = self.inner.slots.clone().acquire_owned().await?;
            let this = self.clone();
            tokio::spawn(async move {
                // The slot sends this delivery, then, while its successes lease them, the
                // webhook's next ones (at most CHAIN_MAX in all).
                let mut next = Some(d);
                let mut sent = 0;
                while let Some(d) = next.take() {
                    sent += 1;
                    next = this.attempt(d, sent < CHAIN_MAX).await;
                }
                drop(permit);
                this.inner.store.wake_worker();
            });
        }
        Ok(n)
    }

    /// Now, by the worker's clock.
    fn now(&self) -> i64 {
        self.inner.config.clock.now_micros()
    }

    /// When a lease taken at `now` runs out.
    fn lease_end(&self, now: i64) -> i64 {
        now.saturating_add(micros(self.inner.config.lease))
    }

    async fn claim(&self, limit: usize) -> anyhow::Result<Vec<ClaimedDelivery>> {
        let now = self.now();
        Ok(self
            .inner
            .store
            .claim_deliveries(
                &self.inner.config.node,
                now,
                self.lease_end(now),
                i64::try_from(limit).unwrap_or(i64::MAX),
                i64::try_from(self.inner.config.per_webhook_in_flight).unwrap_or(i64::MAX),
            )
            .await?)
    }

    /// Does all the delivery work there is now, and waits for it: first for the attempts the
    /// worker loop has in flight (chained ones too), then claims and sends everything due by
    /// the clock, waiting for each attempt, until nothing due is left; the loop claims nothing
    /// meanwhile. When it returns, none of this node's attempts is in flight, and each has
    /// been recorded (unless the database stayed away past its lease: then it is sent again):
    /// for tests and tools that want to drain the queue deterministically. Other nodes'
    /// attempts are not waited for. Answers how many attempts it made itself.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let _claiming = self.inner.claiming.lock().await;
        let all = u32::try_from(self.inner.config.max_in_flight).unwrap_or(u32::MAX);
        let _slots = self.inner.slots.acquire_many(all).await?;
        let mut total = 0;
        loop {
            let claimed = self.claim(self.inner.config.max_in_flight).await?;
            if claimed.is_empty() {
                return Ok(total);
            }
            total += claimed.len();
            let mut handles = Vec::new();
            for d in claimed {
                let this = self.clone();
                handles.push(tokio::spawn(async move { this.attempt(d, false).await }));
            }
            for h in handles {
                let _ = h.await;
            }
        }
    }

    /// Sends one claimed delivery and records the outcome. With `chain`, a success recorded
    /// may come back with the webhook's next delivery, leased: the caller sends it next.
    async fn attempt(&self, d: ClaimedDelivery, chain: bool) -> Option<ClaimedDelivery> {
        let config = &self.inner.config;
        let leased_at = tokio::time::Instant::now();
        let attempt_no = d.attempt_count + 1;
        // A delivery that cannot be prepared (unreadable payload, a secret that does not
        // decrypt) is recorded as a failed attempt of class `internal` and retried on the
        // schedule like any other failure, never silently dropped or spun on.
        let prepared = serde_json::from_str::<EventPayload>(&d.payload)
            .map_err(|e| format!("the stored payload is unreadable: {e}"))
            .and_then(|p| {
                target_of(&self.inner.secrets, &d.webhook)
                    .map(|t| (p, t))
                    .map_err(|e| {
                        format!("cannot open the webhook's secrets ({e}); check BERTH_SECRET_KEY")
                    })
            });
        // The receiver checks `webhook-timestamp` against its own clock: the system's.
        let timestamp = now_micros().div_euclid(1_000_000);
        let started_at = self.now();
        let (req, outcome) = match prepared {
            Ok((payload, target)) => {
                let req = http::build(&target, &d.id, &payload, attempt_no, timestamp);
                let mut abort = self.inner.abort.subscribe();
                let outcome = tokio::select! {
                    outcome = self.inner.sender.send(&req, target.github_actions) => outcome,
                    _ = abort.wait_for(|aborted| *aborted) => {
                        // Shutting down past the grace: nothing is recorded, the lease is
                        // released, and the delivery is sent again later, whole.
                        tracing::info!(delivery = %d.id, "attempt abandoned at shutdown");
                        return None;
                    }
                };
                (Some(req), outcome)
            }
            Err(message) => {
                tracing::error!(delivery = %d.id, webhook = %d.webhook.id, error = %message,
                    "cannot prepare the delivery");
                (None, Outcome::internal(message))
            }
        };
        let gone = outcome.status_code == Some(410);
        let (state, next_attempt_at) = if outcome.succeeded() {
            (DeliveryState::Succeeded, None)
        } else if gone {
            (DeliveryState::Failed, None)
        } else {
            let retries_done = usize::try_from(attempt_no - d.schedule_offset - 1).unwrap_or(0);
            match config.schedule.next_wait(retries_done, outcome.retry_after) {
                Some(wait) => (
                    DeliveryState::Pending,
                    Some(self.now().saturating_add(micros(wait))),
                ),
                None => (DeliveryState::Failed, None),
            }
        };
        if let Some(class) = outcome.error_class {
            tracing::warn!(
                delivery = %d.id,
                webhook = %d.webhook.id,
                attempt = attempt_no,
                class = class.as_str(),
                status = outcome.status_code,
                error = outcome.error.as_deref().unwrap_or(""),
                next = state.as_str(),
                "webhook attempt failed"
            );
        } else {
            tracing::debug!(delivery = %d.id, attempt = attempt_no, "webhook delivered");
        }
        let result = AttemptResult {
            attempt: AttemptRecord {
                attempt: attempt_no,
                started_at,
                duration_ms: outcome.duration_ms,
                status_code: outcome.status_code.map(i64::from),
                error_class: outcome.error_class.map(|c| c.as_str().to_owned()),
                error: outcome.error.clone(),
                request_url: req
                    .as_ref()
                    .map_or_else(|| d.webhook.url.to_string(), |r| r.url.to_string()),
                request_headers: serde_json::to_string(
                    &req.as_ref()
                        .map(|r| http::masked(&r.headers))
                        .unwrap_or_default(),
                )
                .unwrap_or_default(),
                response_headers: Some(
                    serde_json::to_string(&outcome.response_headers).unwrap_or_default(),
                ),
                response_body: Some(outcome.response_body.clone()),
                node: config.node.clone(),
                response_headers_omitted: i64::try_from(outcome.response_headers_omitted)
                    .unwrap_or(i64::MAX),
            },
            lease_token: d.lease_token,
            now: self.now(),
            state,
            next_attempt_at,
            disable_webhook: gone.then(|| {
                "the receiver answered 410 Gone: it asked not to receive this webhook anymore"
                    .to_owned()
            }),
            auto_disable_before: config
                .auto_disable_after
                .map(|after| self.now().saturating_sub(micros(after))),
            webhook_was_failing: d.webhook.failing_since.is_some(),
        };
        // Record; if the database is away, keep trying while the lease keeps others off,
        // rather than send again. Past the lease, the delivery is sent again (same id).
        let give_up_at = leased_at + config.lease.saturating_sub(Duration::from_secs(2));
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let next = (chain && !self.inner.stopping.load(Ordering::Relaxed)).then(|| {
            let now = self.now();
            NextLease {
                node: config.node.clone(),
                now,
                lease_until: self.lease_end(now),
            }
        });
        loop {
            match self
                .inner
                .store
                .record_attempt_then_lease(&d.id, &d.webhook.id, &result, next.clone())
                .await
            {
                Ok((Recorded::StaleLease, _)) => {
                    // Another claim took the delivery since this lease: this node was paused
                    // (or cut off) past it, or declared dead. The new owner's attempt stands;
                    // this one is neither recorded nor counted.
                    self.inner.metrics.stale_lease();
                    tracing::warn!(
                        delivery = %d.id,
                        node = %config.node,
                        lease_token = d.lease_token,
                        attempt = attempt_no,
                        "attempt refused: its lease was taken by another claim meanwhile \
                         (this node was paused or declared dead); not recorded"
                    );
                    return None;
                }
                Ok((_, next)) => {
                    self.inner.metrics.observe(&outcome);
                    return next;
                }
                Err(e) => {
                    let wait = backoff.next();
                    if tokio::time::Instant::now() + wait > give_up_at || *self.inner.abort.borrow()
                    {
                        break;
                    }
                    tracing::warn!(delivery = %d.id, error = %e, retry_in = ?wait,
                        "recording the attempt failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        self.inner.metrics.observe(&outcome);
        tracing::error!(delivery = %d.id, "could not record the attempt; the delivery will be retried when its lease ends");
        None
    }
}

/// Waits that double from `first` up to `max`, for retrying against a database that is away.
#[derive(Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Option<Duration>,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: None,
        }
    }

    /// The next wait: `first`, then twice the previous one, at most `max`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Duration {
        let wait = self.next.unwrap_or(self.first);
        self.next = Some((wait * 2).min(self.max));
        wait
    }

    /// Starts over; answers whether it had been backing off.
    pub fn reset(&mut self) -> bool {
        self.next.take().is_some()
    }
}

/// The sending side of a stored webhook: decrypts its secret and signing keys.
pub fn target_of(secrets: &SecretBox, w: &WebhookRecord) -> anyhow::Result<Target> {
    let secret = w
        .secret_enc
        .as_deref()
        .map(|s| secrets.open(&secret_context(&w.id), s))
        .transpose()?;
    let mut signing_secrets = vec![secrets.open(&signing_context(&w.id), &w.signing_key_enc)?];
    if let (Some(old), Some(until)) = (&w.old_signing_key_enc, w.old_signing_expires_at)
        && until > now_micros()
    {
        signing_secrets.push(secrets.open(&signing_context(&w.id), old)?);
    }
    Ok(Target {
        url: w.url.url().clone(),
        secret,
        headers: w.headers.clone(),
        github_actions: w.github_actions,
        signing_secrets,
    })
}

/// The associated data under which a webhook's `Authorization` secret is sealed.
pub fn secret_context(webhook_id: &str) -> String {
    format!("webhook:{webhook_id}:secret")
}

/// The associated data under which a webhook's signing keys are sealed.
pub fn signing_context(webhook_id: &str) -> String {
    format!("webhook:{webhook_id}:signing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_limit_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(3));
        let waits: Vec<u128> = (0..5).map(|_| b.next().as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 3000, 3000]);
        assert!(b.reset());
        assert!(!b.reset());
        assert_eq!(b.next(), Duration::from_millis(500));
    }
}
