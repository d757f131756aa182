//! Request limits: a rate limit per API token, a limit on failed authentications per client
//! address, and the size checks every request passes before it is routed (URI length, header
//! count and sizes). Body size is checked by `ApiJson`; list sizes by `parse_limit`.
//!
//! Every refusal is an answer in the API's error shape: 429 `rate_limited` with `Retry-After`
//! (whole seconds), 414 `uri_too_long`, 431 `headers_too_large`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::RateLimitSettings;
use crate::error::ApiError;

/// The longest request target (path and query) accepted, in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most request headers accepted. The HTTP server itself refuses only far more (see
/// `connections::PROTOCOL_MAX_HEADERS`), so this check answers in the error shape.
pub const MAX_REQUEST_HEADERS: usize = 100;
/// The longest single header value accepted, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
/// The largest header section accepted (names, values and separators), in bytes.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Every how many checks the limiters forget keys that are back to a fresh state.
const PRUNE_EVERY: u64 = 4096;

/// The clock of the limiters: monotonic time since the limits were made, which a test (or a
/// tool) may stop with [`RateLimits::pause_clock`] so that no budget refills while it looks.
#[derive(Clone)]
pub struct LimitClock {
    start: Instant,
    /// While paused, the time it stopped at in nanoseconds, plus one; 0 while running.
    paused: Arc<AtomicU64>,
}

impl Clock for LimitClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        match self.paused.load(Ordering::Relaxed) {
            0 => self.start.elapsed(),
            at => Duration::from_nanos(at - 1),
        }
    }
}

type Keyed<K> = RateLimiter<K, HashMapStateStore<K>, LimitClock, NoOpMiddleware<Duration>>;

/// The rate limiters of one node. Limits are per node: with several nodes behind a load
/// balancer, a token may make up to the limit on each.
pub struct RateLimits {
    per_token: Option<Keyed<String>>,
    failed_auth: Option<Keyed<IpAddr>>,
    /// Addresses whose failed authentications went over the limit, until when (clock time).
    blocked: Mutex<HashMap<IpAddr, Duration>>,
    clock: LimitClock,
    checks: AtomicU64,
}

impl RateLimits {
    pub fn new(settings: RateLimitSettings) -> RateLimits {
        let clock = LimitClock {
            start: Instant::now(),
            paused: Arc::new(AtomicU64::new(0)),
        };
        let per_token = NonZeroU32::new(settings.per_second).map(|rate| {
            let burst = NonZeroU32::new(settings.burst).unwrap_or(rate);
            RateLimiter::hashmap_with_clock(
                Quota::per_second(rate).allow_burst(burst),
                clock.clone(),
            )
        });
        let failed_auth = NonZeroU32::new(settings.auth_failures_per_minute).map(|n| {
            RateLimiter::hashmap_with_clock(Quota::per_minute(n).allow_burst(n), clock.clone())
        });
        RateLimits {
            per_token,
            failed_auth,
            blocked: Mutex::new(HashMap::new()),
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// Stops the limiters' clock: no budget refills and no block ends until
    /// [`resume_clock`](Self::resume_clock). For tests that must see a limit hold while they
    /// send many requests, however slow the machine.
    pub fn pause_clock(&self) {
        let now = self.clock.now();
        let nanos = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX - 1);
        self.clock.paused.store(nanos + 1, Ordering::Relaxed);
    }

    /// Lets the limiters' clock run again; it jumps to the real time, so budgets refill for
    /// the pause at once (the clock never goes back).
    pub fn resume_clock(&self) {
        self.clock.paused.store(0, Ordering::Relaxed);
    }

    /// Counts one request of the token `token_id`; 429 when it is over its rate.
    pub fn check_token(&self, token_id: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_token else {
            return Ok(());
        };
        self.maybe_prune();
        match limiter.check_key(&token_id.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(ApiError::RateLimited {
                    message: "too many requests with this token; retry after Retry-After \
                              seconds"
                        .into(),
                    retry_after: whole_seconds(wait),
                })
            }
        }
    }

    /// 429 when `ip` made too many failed authentications lately: its credentials are then
    /// not even looked at until the wait is over.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), ApiError> {
        if self.failed_auth.is_none() {
            return Ok(());
        }
        let now = self.clock.now();
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        match blocked.get(&ip) {
            Some(until) if *until > now => Err(too_many_failures(*until - now)),
            Some(_) => {
                blocked.remove(&ip);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts one failed authentication from `ip`; 429 (instead of 401) when that is one too
    /// many, and the address is refused until its budget is back.
    pub fn auth_failed(&self, ip: IpAddr) -> Result<(), ApiError> {
        let Some(limiter) = &self.failed_auth else {
            return Ok(());
        };
        self.maybe_prune();
        match limiter.check_key(&ip) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until
                    .wait_time_from(self.clock.now())
                    .max(Duration::from_secs(1));
                let now = self.clock.now();
                let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
                blocked.retain(|_, until| *until > now);
                blocked.insert(ip, now + wait);
                Err(too_many_failures(wait))
            }
        }
    }

    fn maybe_prune(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            if let Some(l) = &self.per_token {
                l.retain_recent();
                l.shrink_to_fit();
            }
            if let Some(l) = &self.failed_auth {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
    }
}

fn too_many_failures(wait: Duration) -> ApiError {
    ApiError::RateLimited {
        message: "too many failed authentications from this address; retry after Retry-After \
                  seconds"
            .into(),
        retry_after: whole_seconds(wait),
    }
}

/// A wait as whole seconds for `Retry-After`, rounded up, at least 1.
fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The client address that failed authentications count against, when the server recorded
/// the TCP peer (`axum::serve` with connect info): an IPv4 address, or an IPv6 address's /64
/// (one host usually holds a whole /64, so single addresses would be free to rotate).
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| match addr.ip().to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !u128::from(u64::MAX),
            )),
            v4 => v4,
        })
}

/// Refuses requests whose target or headers are too large, before routing.
pub async fn check_request_size(req: Request, next: Next) -> Response {
    match request_size_error(&req) {
        Some(err) => err.into_response(),
        None => next.run(req).await,
    }
}

fn request_size_error(req: &Request) -> Option<ApiError> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(ApiError::UriTooLong(format!(
            "the request path and query are longer than {MAX_URI_BYTES} bytes"
        )));
    }
    // A NUL character can name nothing and no text column keeps it: refuse it in the path
    // and the query before any lookup sees it.
    let has_nul = |t: &str| {
        t.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    if has_nul(req.uri().path()) {
        return Some(ApiError::invalid(
            "path",
            "the path must not contain NUL (%00) characters",
        ));
    }
    if req.uri().query().is_some_and(has_nul) {
        return Some(ApiError::invalid(
            "query",
            "the query must not contain NUL (%00) characters",
        ));
    }
    let headers = req.headers();
    if headers.len() > MAX_REQUEST_HEADERS {
        return Some(ApiError::HeadersTooLarge(format!(
            "more than {MAX_REQUEST_HEADERS} request headers"
        )));
    }
    let mut total = 0;
    for (name, value) in headers {
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Some(ApiError::HeadersTooLarge(format!(
                "header {name} is longer than {MAX_HEADER_VALUE_BYTES} bytes"
            )));
        }
        total += name.as_str().len() + value.len() + 4;
    }
    if total > MAX_HEADER_BYTES {
        return Some(ApiError::HeadersTooLarge(format!(
            "the request headers are larger than {MAX_HEADER_BYTES} bytes in all"
        )));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(10)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn token_limit_allows_the_burst_then_refuses() {
        let limits = RateLimits::new(RateLimitSettings {
            per_second: 1,
            burst: 3,
            auth_failures_per_minute: 0,
        });
        for _ in 0..3 {
            assert!(limits.check_token("t1").is_ok());
        }
        match limits.check_token("t1") {
            Err(ApiError::RateLimited { retry_after, .. }) => assert_eq!(retry_after, 1),
            other => panic!("expected 429, got {other:?}"),
        }
        // Another token has its own budget.
        assert!(limits.check_token("t2").is_ok());
    }

    #[test]
    fn a_paused_clock_refills_nothing() {
        let limits = RateLimits::new(RateLimitSettings {
            per_second: 1000,
            burst: 2,
            auth_failures_per_minute: 0,
        });
        limits.pause_clock();
        assert!(limits.check_token("t").is_ok());
        assert!(limits.check_token("t").is_ok());
        std::thread::sleep(Duration::from_millis(20));
        assert!(limits.check_token("t").is_err(), "refilled while paused");
        limits.resume_clock();
        assert!(
            limits.check_token("t").is_ok(),
            "20 ms at 1000/s refill two"
        );
    }

    #[test]
    fn disabled_limits_never_refuse() {
        let limits = RateLimits::new(RateLimitSettings::disabled());
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..10_000 {
            assert!(limits.check_token("t").is_ok());
            assert!(limits.auth_failed(ip).is_ok());
            assert!(limits.check_address(ip).is_ok());
        }
    }

    #[test]
    fn failed_authentications_block_the_address() {
        let limits = RateLimits::new(RateLimitSettings {
            per_second: 0,
            burst: 0,
            auth_failures_per_minute: 2,
        });
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        assert!(limits.check_address(ip).is_ok());
        assert!(limits.auth_failed(ip).is_ok());
        assert!(limits.auth_failed(ip).is_ok());
        assert!(limits.auth_failed(ip).is_err());
        match limits.check_address(ip) {
            Err(ApiError::RateLimited { retry_after, .. }) => {
                assert!((1..=30).contains(&retry_after), "{retry_after}");
            }
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(limits.check_address(other).is_ok());
    }
}
