//! Token-bucket rate limits for login attempts, per key (email, IP).
//!
//! Each key has a bucket of `burst` tokens refilled at `refill_per_minute`;
//! an attempt takes one token. Buckets are kept as a "theoretical arrival
//! time" (GCRA), in exact integer arithmetic: time is scaled by
//! `refill_per_minute` so one token is always 60 000 units. Time is passed in
//! (injected clock) and may go backwards without harm.
//!
//! Memory is bounded by `max_keys`. When a new key arrives at the bound, the
//! buckets that have fully refilled (indistinguishable from absent ones) are
//! dropped; if none were, the least recently touched key is evicted, so a
//! flood of fresh keys cannot lock everyone else out.

use std::collections::HashMap;
use std::hash::Hash;

/// One token, in scaled time units (`ms * refill_per_minute`).
const TOKEN: i128 = 60_000;

/// Refusal: the caller may try again in `secs` seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    /// Seconds until the next attempt is allowed, rounded up, at least 1.
    pub secs: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Empty-bucket time in scaled units: the bucket is full when `tat <= now`.
    tat: i128,
    /// Last `check` of this key, in ms, for eviction.
    touched_ms: i64,
}

/// Token buckets per key, for one shard (`&mut self`, no locks).
#[derive(Debug)]
pub struct RateLimiter<K: Hash + Eq + Clone> {
    buckets: HashMap<K, Bucket>,
    burst: i128,
    refill_per_minute: i128,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// Buckets of `burst` attempts, refilled by `refill_per_minute` attempts a
    /// minute, for at most `max_keys` keys. Zeroes are raised to 1.
    pub fn new(burst: u32, refill_per_minute: u32, max_keys: usize) -> Self {
        Self {
            buckets: HashMap::new(),
            burst: i128::from(burst.max(1)),
            refill_per_minute: i128::from(refill_per_minute.max(1)),
            max_keys: max_keys.max(1),
        }
    }

    /// Takes one attempt from `key`'s bucket at time `now_ms`, or says how
    /// long to wait. A refused attempt takes nothing.
    pub fn check(&mut self, key: &K, now_ms: i64) -> Result<(), RetryAfter> {
        let now = i128::from(now_ms) * self.refill_per_minute;
        if !self.buckets.contains_key(key) {
            self.make_room(now);
        }
        let bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
            tat: now,
            touched_ms: now_ms,
        });
        bucket.touched_ms = now_ms;
        let tat = bucket.tat.max(now) + TOKEN;
        let allowed_at = tat - TOKEN * self.burst;
        if allowed_at > now {
            // Scaled units -> ms -> s, each rounded up.
            let ms = (allowed_at - now + self.refill_per_minute - 1) / self.refill_per_minute;
            let secs = u64::try_from((ms + 999) / 1000).unwrap_or(u64::MAX);
            return Err(RetryAfter { secs: secs.max(1) });
        }
        bucket.tat = tat;
        Ok(())
    }

    /// Number of keys currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn make_room(&mut self, now: i128) {
        if self.buckets.len() < self.max_keys {
            return;
        }
        self.buckets.retain(|_, b| b.tat > now);
        while self.buckets.len() >= self.max_keys {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.touched_ms)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.buckets.remove(&k),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn burst_then_refusal() {
        let mut rl = RateLimiter::new(5, 6, 100);
        for i in 0..5 {
            assert_eq!(rl.check(&"a@x", T0), Ok(()), "attempt {i}");
        }
        assert_eq!(rl.check(&"a@x", T0), Err(RetryAfter { secs: 10 }));
        assert_eq!(rl.check(&"b@x", T0), Ok(()), "keys are independent");
    }

    #[test]
    fn refills_over_injected_time() {
        let mut rl = RateLimiter::new(2, 6, 100); // one token every 10 s
        assert!(rl.check(&1u32, T0).is_ok() && rl.check(&1u32, T0).is_ok());
        assert_eq!(rl.check(&1u32, T0 + 4_000), Err(RetryAfter { secs: 6 }));
        assert_eq!(
            rl.check(&1u32, T0 + 9_001),
            Err(RetryAfter { secs: 1 }),
            "rounded up"
        );
        assert_eq!(rl.check(&1u32, T0 + 10_000), Ok(()));
        assert!(rl.check(&1u32, T0 + 10_000).is_err());
        // A long pause refills to the burst, not beyond.
        let later = T0 + 3_600_000;
        assert!(rl.check(&1u32, later).is_ok() && rl.check(&1u32, later).is_ok());
        assert!(rl.check(&1u32, later).is_err());
    }

    #[test]
    fn fractional_refill_and_clock_going_back() {
        let mut rl = RateLimiter::new(1, 7, 10); // one token every 8571.4 ms
        assert!(rl.check(&"k", T0).is_ok());
        assert_eq!(rl.check(&"k", T0), Err(RetryAfter { secs: 9 }));
        assert_eq!(rl.check(&"k", T0 - 60_000), Err(RetryAfter { secs: 69 }));
        assert!(rl.check(&"k", T0 + 8_571).is_err());
        assert!(rl.check(&"k", T0 + 8_572).is_ok());
    }

    #[test]
    fn zero_settings_do_not_divide_by_zero() {
        let mut rl = RateLimiter::new(0, 0, 0);
        assert!(rl.check(&"k", T0).is_ok());
        assert_eq!(rl.check(&"k", T0), Err(RetryAfter { secs: 60 }));
    }

    #[test]
    fn keys_are_bounded() {
        let mut rl = RateLimiter::new(3, 60, 4);
        for i in 0..1000u32 {
            let _ = rl.check(&i, T0 + i64::from(i));
            assert!(rl.len() <= 4);
        }
        // Full buckets are dropped first: after a refill, room without eviction.
        let mut rl = RateLimiter::new(1, 60, 2);
        assert!(rl.check(&"a", T0).is_ok() && rl.check(&"b", T0).is_ok());
        assert!(rl.check(&"c", T0 + 5_000).is_ok());
        assert_eq!(rl.len(), 1, "a and b had refilled and were dropped");
    }

    #[test]
    fn eviction_takes_the_least_recently_touched() {
        let mut rl = RateLimiter::new(1, 1, 2);
        assert!(rl.check(&"victim", T0).is_ok());
        assert!(rl.check(&"old", T0).is_ok());
        assert!(rl.check(&"victim", T0 + 10).is_err()); // touched again
        assert!(rl.check(&"new", T0 + 20).is_ok()); // evicts "old"
        assert!(rl.check(&"victim", T0 + 30).is_err(), "still limited");
        assert!(!rl.is_empty() && rl.len() == 2);
    }
}
