//! The delivery worker's sense of time: when a delivery is due, when a lease ends, when a
//! node's last heartbeat makes it dead, when a retry falls due, when a failing webhook has
//! failed long enough to be disabled. Production reads the system clock; tests use an
//! adjustable clock and move it forward instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A source of "now", in microseconds since the Unix epoch.
///
/// The test clock is the system time plus an offset that only moves forward: rows the API
/// writes (events, deliveries due at once) carry the system time, and they stay due under
/// the test clock, which never runs behind it. [`Clock::advance`] jumps over a retry wait,
/// a lease, a node's silence or an auto-disable period at once.
#[derive(Clone, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some`: the offset (microseconds) of a test clock.
    offset: Option<Arc<AtomicI64>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.offset {
            None => f.write_str("Clock::System"),
            Some(o) => write!(f, "Clock::Test(+{} µs)", o.load(Ordering::Relaxed)),
        }
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { offset: None }
    }

    /// A test clock, at the system time until [`Clock::advance`] moves it on.
    pub fn test() -> Clock {
        Clock {
            offset: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Now, in microseconds since the Unix epoch.
    pub fn now_micros(&self) -> i64 {
        let system = crate::store::now_micros();
        match &self.offset {
            None => system,
            Some(o) => system.saturating_add(o.load(Ordering::Relaxed)),
        }
    }

    /// Moves a test clock forward by `by` (every holder of a clone sees it). Panics on the
    /// system clock: production time is not for moving.
    pub fn advance(&self, by: Duration) {
        let Some(o) = &self.offset else {
            panic!("Clock::advance on the system clock");
        };
        o.fetch_add(micros(by), Ordering::Relaxed);
    }
}

/// A duration in whole microseconds, saturating.
pub fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_clock_moves_forward_for_every_clone() {
        let clock = Clock::test();
        let other = clock.clone();
        let before = other.now_micros();
        clock.advance(Duration::from_secs(3600));
        let after = other.now_micros();
        assert!(after - before >= 3_600_000_000, "{before} {after}");
        assert!(after - Clock::system().now_micros() >= 3_599_000_000);
    }
}
