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
    Timestamp::of(ms).as_str().to_owned()
}

/// An RFC 3339 UTC time with milliseconds, formatted on the stack: what
/// [`rfc3339`] returns, without the allocation (views serialise it as a
/// string). Years 0000-9999 only, the range RFC 3339 can write; other
/// times show as the epoch, as before.
#[derive(Clone, Copy)]
pub struct Timestamp([u8; 24]);

impl Timestamp {
    /// `ms` formatted.
    pub fn of(ms: Millis) -> Self {
        const EPOCH: &[u8; 24] = b"1970-01-01T00:00:00.000Z";
        // -62_167_219_200_000 is 0000-01-01T00:00:00Z; 253_402_300_799_999
        // the last millisecond of 9999.
        if !(-62_167_219_200_000..=253_402_300_799_999).contains(&ms) {
            return Timestamp(*EPOCH);
        }
        let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
        // Julian day 2 440 588 is 1970-01-01; the range check above keeps
        // the day within `time::Date`'s years 0000-9999.
        let Ok(date) = time::Date::from_julian_day((days + 2_440_588) as i32) else {
            return Timestamp(*EPOCH);
        };
        let (year, month, day) = (
            i64::from(date.year()),
            i64::from(u8::from(date.month())),
            i64::from(date.day()),
        );
        let secs = ms_of_day / 1000;
        let mut b = *EPOCH;
        let mut put = |at: usize, value: i64, width: usize| {
            let mut v = value;
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year, 4);
        put(5, month, 2);
        put(8, day, 2);
        put(11, secs / 3600, 2);
        put(14, secs / 60 % 60, 2);
        put(17, secs % 60, 2);
        put(20, ms_of_day % 1000, 3);
        Timestamp(b)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and the fixed separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000Z")
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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

    /// The formatter agrees with the `time` crate over the whole range,
    /// leap days and the ends of the range included.
    #[test]
    fn timestamps_match_the_time_crate() {
        let reference = |ms: Millis| {
            let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            )
        };
        let mut ms: Millis = -62_167_219_200_000;
        while ms <= 253_402_300_799_999 {
            assert_eq!(rfc3339(ms), reference(ms), "{ms}");
            ms += 7_777_777_777;
        }
        for ms in [
            -62_167_219_200_000,
            -1,
            0,
            951_782_400_000,     // 2000-02-29
            4_107_542_399_999,   // 2100-02-28T23:59:59.999
            253_402_300_799_999, // 9999-12-31T23:59:59.999
        ] {
            assert_eq!(rfc3339(ms), reference(ms), "{ms}");
        }
        assert_eq!(rfc3339(253_402_300_800_000), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            serde_json::to_string(&Timestamp::of(1_795_000_000_123)).unwrap(),
            "\"2026-11-18T11:06:40.123Z\""
        );
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
