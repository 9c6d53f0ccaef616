//! The workers' Prometheus families, registered into the node's registry
//! (the `prometheus` crate, like `server/src/metrics`, ADR-0004). Names
//! carry no `rayltics_` prefix: the node's registry adds it.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Batch-size buckets (events per batch).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// Latency buckets, seconds: 1 ms .. 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Event-age buckets, seconds: 1 ms steps to 10 ms, 5 ms steps to 50 ms,
/// 10 ms steps to 100 ms, then wider to 60 s, so a percentile of the
/// order -> mail latency (tens of ms) reads to within a few ms.
const EVENT_AGE_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010, 0.012, 0.015, 0.020,
    0.025, 0.030, 0.035, 0.040, 0.045, 0.050, 0.060, 0.070, 0.080, 0.090, 0.100, 0.125, 0.150,
    0.200, 0.250, 0.300, 0.400, 0.500, 0.750, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
];

/// Every family of the workers role; shared by the worker tasks (`Arc`).
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    /// `worker_consumer_lag{group,topic,partition}`: events in the partition
    /// past the group's committed offset (from librdkafka's statistics).
    pub consumer_lag: IntGaugeVec,
    /// `worker_batch_size{worker}`: events per handled batch.
    pub batch_size: HistogramVec,
    /// `worker_batch_duration_seconds{worker}`: from a batch's last event
    /// received to its offsets committed (effects included).
    pub batch_duration: HistogramVec,
    /// `worker_retries_total{worker,cause}`: retried operations (`kafka`,
    /// `smtp`, `mongo`, `commit`, `file`).
    pub retries: IntCounterVec,
    /// `worker_events_total{worker,outcome}`: events handled, by outcome
    /// (`done`, `duplicate`, `ignored`, `undecodable`, `no_recipient`,
    /// `rejected`).
    pub events: IntCounterVec,
    /// `worker_mails_sent_total{kind}`: mails accepted by the SMTP server
    /// or written as `.eml`.
    pub mails_sent: IntCounterVec,
    /// `worker_chat_messages_total{outcome}`: chat messages written to
    /// MongoDB (`inserted`) or already there (`duplicate`).
    pub chat_messages: IntCounterVec,
    /// `worker_event_age_seconds{worker}`: from the event's `at` to its
    /// effect (order -> mail latency for the email sender).
    pub event_age: HistogramVec,
    /// `worker_backend_up{backend}`: 1 after the last operation on the
    /// backend (`smtp`, `eml`, `mongodb`) succeeded, 0 while it fails and is
    /// retried; absent until the first operation.
    pub backend_up: IntGaugeVec,
}

impl WorkerMetrics {
    /// Creates the families (not registered yet).
    pub fn new() -> Self {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                &["worker"],
            )
            .expect("valid metric")
        };
        Self {
            backend_up: gauge(
                "worker_backend_up",
                "1 after the last operation on the backend succeeded, 0 while it fails and is retried.",
                &["backend"],
            ),
            consumer_lag: gauge(
                "worker_consumer_lag",
                "Events past the consumer group's committed offset, per partition.",
                &["group", "topic", "partition"],
            ),
            batch_size: histogram(
                "worker_batch_size",
                "Events per batch a worker handled.",
                BATCH_BUCKETS,
            ),
            batch_duration: histogram(
                "worker_batch_duration_seconds",
                "Time to apply a batch's effects and commit its offsets.",
                SECONDS_BUCKETS,
            ),
            retries: counter(
                "worker_retries_total",
                "Operations a worker retried, by cause.",
                &["worker", "cause"],
            ),
            events: counter(
                "worker_events_total",
                "Events a worker handled, by outcome.",
                &["worker", "outcome"],
            ),
            mails_sent: counter(
                "worker_mails_sent_total",
                "Mails handed over (SMTP accepted or .eml written), by kind.",
                &["kind"],
            ),
            chat_messages: counter(
                "worker_chat_messages_total",
                "Chat messages written to MongoDB, by outcome.",
                &["outcome"],
            ),
            event_age: histogram(
                "worker_event_age_seconds",
                "Time from an event's commit to its effect.",
                EVENT_AGE_BUCKETS,
            ),
        }
    }

    /// Registers every family into `registry` (the node's, whose prefix
    /// makes the names `rayltics_worker_*`).
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.consumer_lag.clone()))?;
        registry.register(Box::new(self.batch_size.clone()))?;
        registry.register(Box::new(self.batch_duration.clone()))?;
        registry.register(Box::new(self.retries.clone()))?;
        registry.register(Box::new(self.events.clone()))?;
        registry.register(Box::new(self.mails_sent.clone()))?;
        registry.register(Box::new(self.chat_messages.clone()))?;
        registry.register(Box::new(self.event_age.clone()))?;
        registry.register(Box::new(self.backend_up.clone()))?;
        Ok(())
    }

    /// Records whether the last operation on `backend` succeeded.
    pub(crate) fn backend(&self, backend: &str, up: bool) {
        self.backend_up
            .with_label_values(&[backend])
            .set(i64::from(up));
    }

    /// Every backend a worker has used, and whether it is up (for
    /// `/readyz`), by name.
    pub fn backend_states(&self) -> Vec<(String, bool)> {
        use prometheus::core::Collector as _;
        let mut out: Vec<(String, bool)> = self
            .backend_up
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter_map(|m| {
                let name = m.get_label().first()?.value().to_owned();
                Some((name, m.get_gauge().get_value() > 0.0))
            })
            .collect();
        out.sort();
        out
    }

    /// Counts one retry of `worker` caused by `cause`.
    pub(crate) fn retry(&self, worker: &str, cause: &str) {
        self.retries.with_label_values(&[worker, cause]).inc();
    }

    /// Counts `n` events of `worker` with `outcome`.
    pub(crate) fn events(&self, worker: &str, outcome: &str, n: u64) {
        if n > 0 {
            self.events.with_label_values(&[worker, outcome]).inc_by(n);
        }
    }

    /// The batch-size histogram of `worker`.
    /// Records a committed batch of `events` that `worker` started at `started`.
    pub(crate) fn batch_done(&self, worker: &str, events: usize, started: std::time::Instant) {
        self.batch_size
            .with_label_values(&[worker])
            .observe(events as f64);
        self.batch_duration
            .with_label_values(&[worker])
            .observe(started.elapsed().as_secs_f64());
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_register_with_the_node_prefix() {
        let registry = Registry::new_custom(Some("rayltics".into()), None).expect("registry");
        let m = WorkerMetrics::new();
        m.register(&registry).expect("register");
        m.retry("email", "smtp");
        m.consumer_lag.with_label_values(&["g", "t", "0"]).set(3);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(
            names.contains(&"rayltics_worker_retries_total".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&"rayltics_worker_consumer_lag".to_owned()),
            "{names:?}"
        );
        assert!(m.register(&registry).is_err(), "twice is refused");
    }
}
