//! Prometheus metrics of the delivery engine, kept in atomics and rendered as text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::http::{ErrorClass, Outcome};
use crate::store::QueueStats;

/// Upper bounds of the attempt latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const OUTCOMES: [&str; 9] = [
    "success",
    "timeout",
    "connect",
    "dns",
    "tls",
    "blocked",
    "redirect",
    "http_status",
    "internal",
];

#[derive(Default)]
pub struct Metrics {
    attempts: [AtomicU64; 9],
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
    stale_leases: AtomicU64,
}

impl Metrics {
    /// Counts one attempt.
    pub fn observe(&self, o: &Outcome) {
        let index = match o.error_class {
            None => 0,
            Some(ErrorClass::Timeout) => 1,
            Some(ErrorClass::Connect) => 2,
            Some(ErrorClass::Dns) => 3,
            Some(ErrorClass::Tls) => 4,
            Some(ErrorClass::Blocked) => 5,
            Some(ErrorClass::Redirect) => 6,
            Some(ErrorClass::HttpStatus) => 7,
            Some(ErrorClass::Internal) => 8,
        };
        self.attempts[index].fetch_add(1, Ordering::Relaxed);
        let secs = o.duration_ms as f64 / 1000.0;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(o.duration_ms)
            .unwrap_or(0)
            .saturating_mul(1000);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts one attempt refused because another claim took its lease meanwhile.
    pub fn stale_lease(&self) {
        self.stale_leases.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text, with the queue figures read at scrape time.
    pub fn render(&self, queue: Option<QueueStats>, now_micros: i64) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP berth_delivery_attempts_total Webhook delivery attempts by outcome.\n\
             # TYPE berth_delivery_attempts_total counter"
        );
        for (i, name) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "berth_delivery_attempts_total{{outcome=\"{name}\"}} {}",
                self.attempts[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP berth_delivery_attempt_duration_seconds Duration of webhook delivery attempts.\n\
             # TYPE berth_delivery_attempt_duration_seconds histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "berth_delivery_attempt_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "berth_delivery_attempt_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             berth_delivery_attempt_duration_seconds_sum {}\n\
             berth_delivery_attempt_duration_seconds_count {count}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP berth_delivery_stale_attempts_total Attempts refused, not recorded, because \
             another claim took their lease meanwhile (their node was paused or declared dead).\n\
             # TYPE berth_delivery_stale_attempts_total counter\n\
             berth_delivery_stale_attempts_total {}",
            self.stale_leases.load(Ordering::Relaxed)
        );
        if let Some(q) = queue {
            let oldest = q
                .oldest_due_at
                .map(|t| ((now_micros - t).max(0)) as f64 / 1e6)
                .unwrap_or(0.0);
            let _ = writeln!(
                out,
                "# HELP berth_delivery_queue_depth Deliveries waiting to be sent (pending).\n\
                 # TYPE berth_delivery_queue_depth gauge\n\
                 berth_delivery_queue_depth {}\n\
                 # HELP berth_delivery_queue_due Pending deliveries that are due now.\n\
                 # TYPE berth_delivery_queue_due gauge\n\
                 berth_delivery_queue_due {}\n\
                 # HELP berth_delivery_oldest_due_age_seconds Age of the oldest due delivery.\n\
                 # TYPE berth_delivery_oldest_due_age_seconds gauge\n\
                 berth_delivery_oldest_due_age_seconds {oldest}",
                q.pending, q.due
            );
        }
        out
    }
}
