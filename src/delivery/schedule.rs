//! The retry schedule: how long to wait before each retry, with ±20% jitter, and how far a
//! receiver's `Retry-After` is honoured.

use std::time::Duration;

use rand::Rng;

/// Parses a duration such as `500ms`, `5s`, `5m`, `2h` or `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{t}` has no unit (ms, s, m, h or d)"))?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{t}` does not start with a number"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        _ => return Err(format!("`{t}` has an unknown unit (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_millis(ms))
}

/// The waits before each retry. The first attempt is immediate; after the last retry fails,
/// the delivery is `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl Default for RetrySchedule {
    fn default() -> Self {
        // 5s,5m,30m,2h,5h,10h,10h
        let s = |secs: u64| Duration::from_secs(secs);
        RetrySchedule(vec![
            s(5),
            s(300),
            s(1800),
            s(7200),
            s(18000),
            s(36000),
            s(36000),
        ])
    }
}

/// Bounds on a receiver's `Retry-After`.
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

impl RetrySchedule {
    /// Parses `5s,5m,30m` (an empty string means no retries).
    pub fn parse(text: &str) -> Result<RetrySchedule, String> {
        let parts: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.len() > 50 {
            return Err("at most 50 retries".into());
        }
        parts
            .into_iter()
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()
            .map(RetrySchedule)
    }

    /// The wait before retry number `retry` (0 = the first retry), jittered by ±20%, or `None`
    /// when the schedule is exhausted. A `Retry-After` from the receiver replaces the scheduled
    /// wait, clamped to [1 s, 6 h].
    pub fn next_wait(&self, retry: usize, retry_after: Option<Duration>) -> Option<Duration> {
        let base = *self.0.get(retry)?;
        if let Some(ra) = retry_after {
            return Some(ra.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER));
        }
        let factor = rand::rng().random_range(0.8..=1.2);
        Some(base.mul_f64(factor))
    }
}

/// Parses a `Retry-After` header: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - now;
    delta.to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_default() {
        let s = RetrySchedule::parse("5s,5m,30m,2h,5h,10h,10h").unwrap();
        assert_eq!(s, RetrySchedule::default());
        assert!(RetrySchedule::parse("5x").is_err());
        assert!(RetrySchedule::parse("s").is_err());
        assert_eq!(RetrySchedule::parse("").unwrap().0.len(), 0);
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let s = RetrySchedule::parse("10s").unwrap();
        for _ in 0..200 {
            let w = s.next_wait(0, None).unwrap();
            assert!(
                w >= Duration::from_secs(8) && w <= Duration::from_secs(12),
                "{w:?}"
            );
        }
        assert_eq!(s.next_wait(1, None), None);
    }

    #[test]
    fn retry_after_is_bounded() {
        let s = RetrySchedule::default();
        assert_eq!(
            s.next_wait(0, Some(Duration::from_secs(0))),
            Some(MIN_RETRY_AFTER)
        );
        assert_eq!(
            s.next_wait(0, Some(Duration::from_secs(999_999))),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(s.next_wait(7, Some(Duration::from_secs(5))), None);
        let now = chrono::Utc::now();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert!(parse_retry_after("soon", now).is_none());
    }
}
