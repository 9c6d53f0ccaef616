//! Metrics of the outbox relay to Kafka: events published, relay batches,
//! delivery errors and re-send rounds, delivery latency, and each shard's
//! outbox backlog (committed events not yet acknowledged by the broker).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Delivery latency buckets, seconds: 100 us .. 5 min (an outage shows as
/// the tail of the commit-to-ack lag).
const DELIVERY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Events per relay batch.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// The relay's metric families (node-wide, label `shard`).
#[derive(Debug, Clone)]
pub struct RelayMetrics {
    published: IntCounterVec,
    batches: IntCounterVec,
    batch_events: HistogramVec,
    errors: IntCounterVec,
    retries: IntCounterVec,
    backlog: IntGaugeVec,
    delivery: HistogramVec,
    lag: HistogramVec,
}

impl RelayMetrics {
    /// Creates the families and registers them.
    pub(super) fn register(registry: &Registry) -> Self {
        let counters = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                &["shard"],
            )
            .expect("valid metric")
        };
        let m = RelayMetrics {
            published: counters(
                "kafka_events_published_total",
                "Events the broker acknowledged (acks=all), in offset order; re-sent ones count again.",
                &["shard"],
            ),
            batches: counters(
                "kafka_publish_batches_total",
                "Relay batches: events read from a shard's outbox and handed to the producer at once.",
                &["shard"],
            ),
            batch_events: histogram(
                "kafka_publish_batch_events",
                "Events per relay batch.",
                BATCH_BUCKETS,
            ),
            errors: counters(
                "kafka_publish_errors_total",
                "Relay failures by kind: delivery (the broker did not acknowledge), enqueue (the producer refused a message), mark (the published offset could not be committed), topics (topic creation failed).",
                &["shard", "kind"],
            ),
            retries: counters(
                "kafka_publish_retries_total",
                "Re-send rounds: after a failed delivery the relay waits (backoff) and re-sends from the first unacknowledged event.",
                &["shard"],
            ),
            backlog: IntGaugeVec::new(
                Opts::new(
                    "outbox_backlog_events",
                    "Committed events the relay has not yet had acknowledged (kept in memory until then).",
                ),
                &["shard"],
            )
            .expect("valid metric"),
            delivery: histogram(
                "kafka_delivery_seconds",
                "Time from handing an event to the producer to the broker's acknowledgement.",
                DELIVERY_BUCKETS,
            ),
            lag: histogram(
                "outbox_publish_lag_seconds",
                "Time from an event's commit to the broker's acknowledgement (wall clock, ms resolution).",
                DELIVERY_BUCKETS,
            ),
        };
        for c in [
            Box::new(m.published.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.batches.clone()),
            Box::new(m.batch_events.clone()),
            Box::new(m.errors.clone()),
            Box::new(m.retries.clone()),
            Box::new(m.backlog.clone()),
            Box::new(m.delivery.clone()),
            Box::new(m.lag.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        m
    }

    /// The outbox backlog gauge of shard `shard`.
    pub fn backlog(&self, shard: usize) -> IntGauge {
        self.backlog
            .with_label_values(&[shard.to_string().as_str()])
    }

    /// Failed topic-creation rounds (node-wide: label `shard="node"`).
    pub fn topic_errors(&self) -> IntCounter {
        self.errors.with_label_values(&["node", "topics"])
    }

    /// The handles one shard's relay pump uses.
    pub fn for_shard(&self, shard: usize) -> ShardRelayMetrics {
        let label = shard.to_string();
        let l = label.as_str();
        ShardRelayMetrics {
            published: self.published.with_label_values(&[l]),
            batches: self.batches.with_label_values(&[l]),
            batch_events: self.batch_events.with_label_values(&[l]),
            delivery_errors: self.errors.with_label_values(&[l, "delivery"]),
            enqueue_errors: self.errors.with_label_values(&[l, "enqueue"]),
            mark_errors: self.errors.with_label_values(&[l, "mark"]),
            retries: self.retries.with_label_values(&[l]),
            backlog: self.backlog.with_label_values(&[l]),
            delivery: self.delivery.with_label_values(&[l]),
            lag: self.lag.with_label_values(&[l]),
        }
    }
}

/// One shard's relay metric handles (`Send`: used on the relay thread).
#[derive(Debug, Clone)]
pub struct ShardRelayMetrics {
    /// Events acknowledged.
    pub published: IntCounter,
    /// Relay batches.
    pub batches: IntCounter,
    /// Events per relay batch.
    pub batch_events: Histogram,
    /// Deliveries the broker did not acknowledge.
    pub delivery_errors: IntCounter,
    /// Messages the producer refused to queue.
    pub enqueue_errors: IntCounter,
    /// Published-offset commits that failed.
    pub mark_errors: IntCounter,
    /// Re-send rounds.
    pub retries: IntCounter,
    /// Unpublished events of the shard.
    pub backlog: IntGauge,
    /// Send -> ack.
    pub delivery: Histogram,
    /// Commit -> ack.
    pub lag: Histogram,
}
