//! Wall-clock time, injected: the system clock in production, a manual clock
//! that tests move forward (so reservation expiry is tested without sleeping).
//!
//! Node-wide: every shard holds a clone of the node's one [`Clock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// The node's clock.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system's real-time clock.
    System,
    /// A clock that only moves when told to (tests, `debug.manual_clock`).
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock starting at the current system time.
    pub fn manual() -> Self {
        Clock::Manual(Arc::new(AtomicI64::new(system_now_ms())))
    }

    /// Now, in milliseconds since the epoch.
    pub fn now_ms(&self) -> Millis {
        match self {
            Clock::System => system_now_ms(),
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }

    /// Moves a manual clock forward by `ms` and returns the new time; the
    /// system clock cannot be moved (returns `None`).
    pub fn advance(&self, ms: i64) -> Option<Millis> {
        match self {
            Clock::System => None,
            Clock::Manual(t) => Some(t.fetch_add(ms, Ordering::Relaxed) + ms),
        }
    }
}

fn system_now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Formats epoch milliseconds as an RFC 3339 UTC string with exactly three
/// fraction digits (`2026-11-24T20:24:53.120Z`), so the strings sort like
/// the times.
pub fn rfc3339(ms: Millis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// Parses an RFC 3339 timestamp (any offset) into epoch milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    if s.len() > 64 {
        return None;
    }
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_roundtrip() {
        let ms = 1_795_000_000_123;
        let s = rfc3339(ms);
        assert_eq!(s, "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339(1_795_000_000_100), "2026-11-18T11:06:40.100Z");
        assert_eq!(parse_rfc3339(&s), Some(ms));
        assert_eq!(
            parse_rfc3339("2026-01-01T00:00:00+01:00"),
            Some(1_767_222_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = Clock::manual();
        let t0 = c.now_ms();
        assert_eq!(c.now_ms(), t0);
        assert_eq!(c.advance(1_000), Some(t0 + 1_000));
        assert_eq!(Clock::System.advance(1), None);
    }
}
