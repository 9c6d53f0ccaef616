//! Metrics of the commerce store: journal batches and fdatasyncs (copied
//! from the journals' atomics at scrape), and per-shard gauges of pending
//! orders, held reservations, flash-sale pools and the token cache (set by
//! each shard's sweep from its own state), including the outbox backlog
//! while a relay holds unpublished events.

use std::sync::{Arc, Mutex};

use prometheus::{CounterVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use rayltics_commerce::auth::TokenCache;
use rayltics_commerce::state::ShardData;
use rayltics_journal::JournalStats;

/// The store's metric families.
#[derive(Debug)]
pub struct StoreMetrics {
    journal: IntCounterVec,
    fdatasync_seconds: CounterVec,
    orders_pending: IntGaugeVec,
    reservations_held: IntGaugeVec,
    sale_remaining: IntGaugeVec,
    token_cache: IntCounterVec,
    available: IntGaugeVec,
    journals: Mutex<Vec<(String, Arc<JournalStats>)>>,
}

fn counters(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn gauges(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

impl StoreMetrics {
    /// Creates the families and registers them.
    pub(super) fn register(registry: &Registry) -> Self {
        let m = StoreMetrics {
            journal: counters(
                "journal_events_total",
                "Journal activity by kind: records appended, batches written (one write + one fdatasync each, or one PostgreSQL transaction), bytes written, snapshots, retries (PostgreSQL: failed batch or reconnect attempts, retried), segments started from a zero-filled spare (segments_preallocated) or as growing files because none was ready (segments_grown).",
                &["shard", "kind"],
            ),
            fdatasync_seconds: CounterVec::new(
                Opts::new(
                    "journal_fdatasync_seconds_total",
                    "Time spent in journal fdatasyncs (divide by batches for the mean flush latency).",
                ),
                &["shard"],
            )
            .expect("valid metric"),
            orders_pending: gauges(
                "orders_pending",
                "Pending (reserved, unpaid) orders owned by the shard.",
                &["shard"],
            ),
            reservations_held: gauges(
                "reservations_held",
                "Orders holding stock or flash-sale units on the shard.",
                &["shard"],
            ),
            sale_remaining: gauges(
                "flash_sale_remaining_units",
                "Units left in each flash sale's pool.",
                &["shard", "sale"],
            ),
            token_cache: counters(
                "token_cache_lookups_total",
                "Access-token checks by the per-shard cache, by result (hit, miss).",
                &["shard", "result"],
            ),
            available: gauges(
                "journal_available",
                "1 while the shard's store takes writes; 0 while its medium (PostgreSQL) is unreachable and writes answer 503.",
                &["shard"],
            ),
            journals: Mutex::new(Vec::new()),
        };
        for c in [
            Box::new(m.journal.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.fdatasync_seconds.clone()),
            Box::new(m.orders_pending.clone()),
            Box::new(m.reservations_held.clone()),
            Box::new(m.sale_remaining.clone()),
            Box::new(m.token_cache.clone()),
            Box::new(m.available.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        m
    }

    /// Lets scrapes read shard `shard`'s journal counters.
    pub fn attach_journal(&self, shard: usize, stats: Arc<JournalStats>) {
        self.journals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((shard.to_string(), stats));
    }

    /// Copies the journal counters into the families (at scrape).
    pub(super) fn sync(&self) {
        let journals = self.journals.lock().unwrap_or_else(|e| e.into_inner());
        for (shard, stats) in journals.iter() {
            let v = stats.view();
            for (kind, now) in [
                ("records", v.appended),
                ("batches", v.writes),
                ("bytes", v.bytes_written),
                ("fdatasyncs", v.fdatasyncs),
                ("snapshots", v.snapshots),
                ("retries", v.retries),
                ("segments_preallocated", v.segments_preallocated),
                ("segments_grown", v.segments_grown),
            ] {
                advance(
                    &self.journal.with_label_values(&[shard.as_str(), kind]),
                    now,
                );
            }
            self.available
                .with_label_values(&[shard.as_str()])
                .set(i64::from(v.available));
            let secs = self.fdatasync_seconds.with_label_values(&[shard.as_str()]);
            let now = v.fdatasync_micros as f64 / 1e6;
            if now > secs.get() {
                secs.inc_by(now - secs.get());
            }
        }
    }

    /// The gauges one shard sets (`outbox_backlog` is the relay family's).
    pub(super) fn for_shard(&self, label: &str, outbox_backlog: IntGauge) -> ShardStoreGauges {
        ShardStoreGauges {
            label: label.to_owned(),
            outbox_backlog,
            orders_pending: self.orders_pending.with_label_values(&[label]),
            reservations_held: self.reservations_held.with_label_values(&[label]),
            sale_remaining: self.sale_remaining.clone(),
            token_hits: self.token_cache.with_label_values(&[label, "hit"]),
            token_misses: self.token_cache.with_label_values(&[label, "miss"]),
        }
    }
}

/// Raises a counter to `now` (the source counters only grow).
fn advance(c: &IntCounter, now: u64) {
    let seen = c.get();
    if now > seen {
        c.inc_by(now - seen);
    }
}

/// One shard's store gauges. Owned by that shard.
#[derive(Debug)]
pub struct ShardStoreGauges {
    label: String,
    orders_pending: IntGauge,
    reservations_held: IntGauge,
    sale_remaining: IntGaugeVec,
    token_hits: IntCounter,
    token_misses: IntCounter,
    outbox_backlog: IntGauge,
}

impl ShardStoreGauges {
    /// Sets the gauges from the shard's state (the sweep calls this).
    pub fn update(&self, data: &ShardData, tokens: &TokenCache) {
        self.orders_pending.set(gauge(data.pending_orders()));
        self.reservations_held.set(gauge(data.held_reservations()));
        for (sale, remaining) in data.sales_remaining() {
            self.sale_remaining
                .with_label_values(&[self.label.as_str(), sale])
                .set(i64::from(remaining));
        }
        advance(&self.token_hits, tokens.hits());
        advance(&self.token_misses, tokens.misses());
        if rayltics_commerce::state::hold_unpublished_events() {
            self.outbox_backlog
                .set(i64::try_from(data.outbox_backlog()).unwrap_or(i64::MAX));
        }
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
