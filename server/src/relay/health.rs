//! What the relay knows of the broker, for `/readyz` and logs: a node-wide
//! view (`Send + Sync`), written by the relay thread and librdkafka's
//! callbacks, read by anyone.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntGauge;

/// The relay's view of the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaState {
    /// No `[kafka] brokers` configured: events stay in the embedded log.
    Disabled,
    /// Configured; no answer from the broker yet (topics not created yet).
    Connecting,
    /// The broker answered last (topics created, or a delivery acknowledged).
    Up,
    /// The last contact failed; the relay retries with backoff and keeps
    /// every unpublished event.
    Down,
}

impl KafkaState {
    /// Lower-case name (`disabled`, `connecting`, `up`, `down`).
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaState::Disabled => "disabled",
            KafkaState::Connecting => "connecting",
            KafkaState::Up => "up",
            KafkaState::Down => "down",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => KafkaState::Connecting,
            2 => KafkaState::Up,
            3 => KafkaState::Down,
            _ => KafkaState::Disabled,
        }
    }
}

/// A snapshot of [`KafkaHealth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaStatus {
    /// Current state.
    pub state: KafkaState,
    /// How long it has been in that state.
    pub for_how_long: Duration,
    /// The latest error (kept after recovery, for diagnosis).
    pub last_error: Option<String>,
    /// Committed events not yet acknowledged by the broker, all shards (as
    /// of each shard's last gauge update, about once a second).
    pub backlog_events: u64,
}

/// The relay's health, shared node-wide. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KafkaHealth(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    state: AtomicU8,
    since: Mutex<Instant>,
    last_error: Mutex<Option<String>>,
    backlog: Vec<IntGauge>,
}

impl KafkaHealth {
    /// The health of a node without a relay.
    pub fn disabled() -> Self {
        Self::with_state(KafkaState::Disabled, Vec::new())
    }

    /// A configured relay, before any contact; `backlog` holds each shard's
    /// outbox backlog gauge.
    pub fn connecting(backlog: Vec<IntGauge>) -> Self {
        Self::with_state(KafkaState::Connecting, backlog)
    }

    fn with_state(state: KafkaState, backlog: Vec<IntGauge>) -> Self {
        Self(Arc::new(Inner {
            state: AtomicU8::new(state as u8),
            since: Mutex::new(Instant::now()),
            last_error: Mutex::new(None),
            backlog,
        }))
    }

    /// The state, how long it has held, the last error and the backlog:
    /// what `/readyz` reports for Kafka.
    pub fn kafka_state(&self) -> KafkaStatus {
        let since = *self.0.since.lock().unwrap_or_else(|e| e.into_inner());
        KafkaStatus {
            state: self.state(),
            for_how_long: since.elapsed(),
            last_error: self
                .0
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            backlog_events: self
                .0
                .backlog
                .iter()
                .map(|g| u64::try_from(g.get()).unwrap_or(0))
                .sum(),
        }
    }

    /// The state alone (one atomic load).
    pub fn state(&self) -> KafkaState {
        KafkaState::from_u8(self.0.state.load(Ordering::Relaxed))
    }

    /// The broker answered. Returns whether this changed the state.
    pub(crate) fn up(&self) -> bool {
        self.set(KafkaState::Up)
    }

    /// Contact failed with `error`. Returns whether this changed the state.
    pub(crate) fn down(&self, error: &str) -> bool {
        *self.0.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_owned());
        self.set(KafkaState::Down)
    }

    fn set(&self, to: KafkaState) -> bool {
        if self.state() == KafkaState::Disabled {
            return false;
        }
        let before = self.0.state.swap(to as u8, Ordering::Relaxed);
        if before != to as u8 {
            *self.0.since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_reported_once_and_disabled_stays_disabled() {
        let off = KafkaHealth::disabled();
        assert!(!off.up());
        assert_eq!(off.kafka_state().state, KafkaState::Disabled);

        let g = IntGauge::new("b", "b").unwrap();
        g.set(7);
        let h = KafkaHealth::connecting(vec![g.clone(), g]);
        assert_eq!(h.state(), KafkaState::Connecting);
        assert!(h.down("all brokers down"));
        assert!(!h.down("still down"));
        assert!(h.up());
        let s = h.kafka_state();
        assert_eq!(s.state, KafkaState::Up);
        assert_eq!(s.last_error.as_deref(), Some("still down"));
        assert_eq!(s.backlog_events, 14);
    }
}
