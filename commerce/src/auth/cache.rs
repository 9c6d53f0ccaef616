//! Per-shard cache of verified access tokens.
//!
//! Verifying an HS256 signature costs a few microseconds; a client sends the
//! same token with every request, so each shard remembers the tokens it has
//! already verified. Entries are keyed by the full token string, so only the
//! exact bytes that were verified can hit: no digest collision can ever
//! authenticate. Memory is bounded by two generations: inserts go to
//! `current`; when it holds `capacity / 2` entries it becomes `previous`
//! (dropping the old `previous`), and a hit in `previous` is promoted back.

use std::collections::HashMap;

use super::Claims;

/// Verified tokens and their claims, for one shard (`&mut self`, no locks).
#[derive(Debug)]
pub struct TokenCache {
    current: HashMap<Box<str>, Claims>,
    previous: HashMap<Box<str>, Claims>,
    generation: usize,
    hits: u64,
    misses: u64,
}

impl TokenCache {
    /// A cache holding at most `max(capacity, 2)` tokens; `0` disables it.
    /// Each entry costs the token (up to 4 KiB) plus its claims.
    pub fn new(capacity: usize) -> Self {
        let generation = if capacity == 0 {
            0
        } else {
            (capacity / 2).max(1)
        };
        Self {
            current: HashMap::with_capacity(generation),
            previous: HashMap::new(),
            generation,
            hits: 0,
            misses: 0,
        }
    }

    /// The claims of `token` if it was inserted and `exp > now_secs`. An
    /// expired entry is dropped. Counts a hit or a miss.
    pub fn get(&mut self, token: &str, now_secs: i64) -> Option<Claims> {
        let found = match self.current.get(token) {
            Some(c) if c.exp > now_secs => Some(c.clone()),
            Some(_) => {
                self.current.remove(token);
                None
            }
            None => match self.previous.remove(token) {
                Some(c) if c.exp > now_secs => {
                    self.insert(token, c.clone());
                    Some(c)
                }
                _ => None,
            },
        };
        if found.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        found
    }

    /// Remembers that `token` verified to `claims`. Call only after the
    /// signature check succeeded.
    pub fn insert(&mut self, token: &str, claims: Claims) {
        if self.generation == 0 {
            return;
        }
        if self.current.len() >= self.generation && !self.current.contains_key(token) {
            self.previous = std::mem::take(&mut self.current);
            self.current.reserve(self.generation);
        }
        self.previous.remove(token);
        self.current.insert(token.into(), claims);
    }

    /// Forgets every token (e.g. after the signing key changed).
    pub fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
    }

    /// Number of cached tokens, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that returned claims, since creation.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups that returned nothing (absent or expired), since creation.
    pub fn misses(&self) -> u64 {
        self.misses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn claims(exp: i64) -> Claims {
        let (sub, email) = ("u1".into(), "a@example.com".into());
        Claims {
            sub,
            email,
            role: Role::Customer,
            iat: 0,
            exp,
        }
    }

    #[test]
    fn hit_miss_and_counters() {
        let mut c = TokenCache::new(8);
        assert_eq!(c.get("t1", 10), None);
        c.insert("t1", claims(100));
        assert_eq!(c.get("t1", 10), Some(claims(100)));
        assert_eq!(c.get("t1x", 10), None);
        assert_eq!(c.get("t", 10), None, "a prefix is not the token");
        assert_eq!((c.hits(), c.misses(), c.len()), (1, 3, 1));
    }

    #[test]
    fn expired_entries_are_dropped() {
        let mut c = TokenCache::new(8);
        c.insert("t1", claims(100));
        assert!(c.get("t1", 99).is_some());
        assert_eq!(c.get("t1", 100), None);
        assert!(c.is_empty(), "dropped on expiry");
        assert_eq!(c.get("t1", 0), None, "gone even for an earlier clock");
    }

    #[test]
    fn memory_is_bounded() {
        let mut c = TokenCache::new(10);
        for i in 0..1000 {
            c.insert(&format!("token-{i}"), claims(100));
            assert!(c.len() <= 10, "len {} at {i}", c.len());
        }
        assert!(c.get("token-999", 0).is_some());
        assert!(c.get("token-0", 0).is_none(), "oldest evicted");
    }

    #[test]
    fn hits_in_previous_are_promoted() {
        let mut c = TokenCache::new(4); // generations of 2
        c.insert("a", claims(100));
        c.insert("b", claims(100));
        c.insert("c", claims(100)); // a, b -> previous
        assert!(c.get("a", 0).is_some()); // promoted: current = {c, a}
        c.insert("d", claims(100)); // current {c, a} -> previous; b dropped
        assert!(c.get("b", 0).is_none());
        assert!(
            c.get("a", 0).is_some(),
            "promoted entry survived a rotation"
        );
        assert!(c.get("d", 0).is_some());
        assert!(c.len() <= 4);
    }

    #[test]
    fn expired_entry_in_previous_is_dropped() {
        let mut c = TokenCache::new(2);
        c.insert("a", claims(5));
        c.insert("b", claims(100)); // a -> previous
        assert_eq!(c.get("a", 5), None);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn zero_capacity_disables_and_reinsert_does_not_rotate() {
        let mut c = TokenCache::new(0);
        c.insert("a", claims(100));
        assert!(c.is_empty() && c.get("a", 0).is_none());
        let mut c = TokenCache::new(4);
        c.insert("a", claims(100));
        c.insert("b", claims(100));
        c.insert("b", claims(200));
        assert_eq!(c.previous.len(), 0);
        assert_eq!(c.get("b", 150).map(|x| x.exp), Some(200));
        c.clear();
        assert!(c.is_empty());
    }
}
