//! One Kafka consumer-group member per worker: manual offset commits
//! (at-least-once: a batch's offsets are committed only after its effects),
//! batches of up to N events or T ms, the lag gauge fed from librdkafka's
//! statistics, and the event envelope (headers `event-id`, `kind`, `at`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::message::{Headers as _, Message as _, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::config::WorkersConfig;
use crate::error::WorkerError;
use crate::metrics::WorkerMetrics;

/// Header carrying the event's unique id (agreed with the relay).
pub const HEADER_EVENT_ID: &str = "event-id";
/// Header carrying the event's kind (`order.created`, `chat.message`, ...).
pub const HEADER_KIND: &str = "kind";
/// Header carrying the commit time of the event, RFC 3339 UTC.
pub const HEADER_AT: &str = "at";

/// The client context: exports per-partition lag from the statistics.
struct LagContext {
    group: String,
    metrics: Arc<WorkerMetrics>,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if *partition < 0 || p.hi_offset < 0 {
                    continue;
                }
                let lag = if p.committed_offset >= 0 {
                    p.hi_offset - p.committed_offset
                } else if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else {
                    continue;
                };
                self.metrics
                    .consumer_lag
                    .with_label_values(&[&self.group, topic, &partition.to_string()])
                    .set(lag.max(0));
            }
        }
    }
}

impl ConsumerContext for LagContext {}

/// One event as a worker sees it.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Header `event-id` (empty when the producer sent none).
    pub event_id: String,
    /// Header `kind` (empty when absent).
    pub kind: String,
    /// Header `at`, RFC 3339 (empty when absent).
    pub at: String,
    /// The record's key (the aggregate id).
    pub key: String,
    /// The protobuf payload.
    pub payload: Vec<u8>,
    /// Where it came from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

impl Envelope {
    fn from_message(m: &OwnedMessage) -> Self {
        let mut e = Envelope {
            event_id: String::new(),
            kind: String::new(),
            at: String::new(),
            key: m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
        };
        if let Some(headers) = m.headers() {
            for h in headers.iter() {
                let value = h
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                match h.key {
                    HEADER_EVENT_ID => e.event_id = value,
                    HEADER_KIND => e.kind = value,
                    HEADER_AT => e.at = value,
                    _ => {}
                }
            }
        }
        e
    }
}

/// Where a worker's events come from: a Kafka consumer group
/// ([`GroupConsumer`]), or on the embedded default the node's own outboxes
/// (implemented by the node). Delivery is at least once: a batch's events
/// come again unless [`commit`](EventSource::commit) succeeded.
pub trait EventSource: Send + Sync + 'static {
    /// The next batch: waits for a first event (or shutdown, then returns
    /// nothing), then takes more until `max` or `wait` after the first.
    fn next_batch(
        &self,
        max: usize,
        wait: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> impl Future<Output = Vec<Envelope>> + Send;

    /// Records that `batch`'s effects are done. `false` when that could not
    /// be recorded (the events then come again; effects are idempotent).
    fn commit(&self, batch: &[Envelope]) -> impl Future<Output = bool> + Send;
}

impl EventSource for GroupConsumer {
    fn next_batch(
        &self,
        max: usize,
        wait: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> impl Future<Output = Vec<Envelope>> + Send {
        GroupConsumer::next_batch(self, max, wait, shutdown)
    }

    fn commit(&self, batch: &[Envelope]) -> impl Future<Output = bool> + Send {
        GroupConsumer::commit(self, batch)
    }
}

/// A worker's side of the batch loop ([`run_batches`]): where its events
/// come from and what it does with a batch.
pub(crate) trait BatchWorker: Send {
    /// Where the events come from.
    type Source: EventSource;
    /// The worker label of its metrics and logs.
    const NAME: &'static str;
    /// The source (borrowed for one call at a time).
    fn source(&self) -> &Self::Source;
    /// At most this many events per batch, gathered for at most this long
    /// after the first.
    fn batch_limits(&self) -> (usize, Duration);
    /// Its metrics.
    fn metrics(&self) -> &WorkerMetrics;
    /// Carries out `batch`'s effects: `Ok(true)` when all are done (its
    /// offsets are then committed), `Ok(false)` when shutdown cut it short
    /// (nothing is committed: the batch comes again). An `Err` stops the
    /// worker.
    fn handle(
        &mut self,
        batch: &[Envelope],
        shutdown: &mut watch::Receiver<bool>,
    ) -> impl Future<Output = Result<bool, WorkerError>> + Send;
}

/// The loop every worker runs until `shutdown` turns true: take a batch,
/// carry out its effects, and only then commit it (at least once; the
/// effects are idempotent).
pub(crate) async fn run_batches<W: BatchWorker>(
    mut worker: W,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let (max, wait) = worker.batch_limits();
    loop {
        let batch = worker.source().next_batch(max, wait, &mut shutdown).await;
        if batch.is_empty() {
            if *shutdown.borrow() {
                break;
            }
            continue;
        }
        let t0 = std::time::Instant::now();
        if !worker.handle(&batch, &mut shutdown).await? {
            break;
        }
        worker.source().commit(&batch).await;
        worker.metrics().batch_done(W::NAME, batch.len(), t0);
    }
    tracing::info!(worker = W::NAME, "worker stopped");
    Ok(())
}

/// A consumer-group member subscribed to one topic.
pub struct GroupConsumer {
    inner: Arc<StreamConsumer<LagContext>>,
    worker: &'static str,
    metrics: Arc<WorkerMetrics>,
    retry_max: Duration,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl GroupConsumer {
    /// Joins `group` on `topic` (the join itself happens on the first poll).
    pub(crate) fn new(
        cfg: &WorkersConfig,
        worker: &'static str,
        group: &str,
        topic: &str,
        metrics: Arc<WorkerMetrics>,
    ) -> Result<Self, WorkerError> {
        let ctx = LagContext {
            group: group.to_owned(),
            metrics: metrics.clone(),
        };
        let consumer: StreamConsumer<LagContext> = ClientConfig::new()
            .set("bootstrap.servers", &cfg.kafka_brokers)
            .set("group.id", group)
            .set("client.id", format!("rayltics-{worker}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                cfg.heartbeat_interval_ms.to_string(),
            )
            .set(
                "statistics.interval.ms",
                cfg.statistics_interval_ms.to_string(),
            )
            .set(
                "topic.metadata.refresh.interval.ms",
                cfg.metadata_refresh_ms.to_string(),
            )
            .set("fetch.wait.max.ms", cfg.fetch_wait_max_ms.to_string())
            .set(
                "reconnect.backoff.max.ms",
                cfg.retry_max_ms.min(10_000).to_string(),
            )
            .create_with_context(ctx)?;
        consumer.subscribe(&[topic])?;
        Ok(Self {
            inner: Arc::new(consumer),
            worker,
            metrics,
            retry_max: Duration::from_millis(cfg.retry_max_ms),
        })
    }

    /// The next batch: waits for a first event (or shutdown, then returns
    /// what it has: nothing), then takes more until `max` or `wait` after
    /// the first. Poll errors (broker away) are logged, counted and waited
    /// out with backoff.
    pub(crate) async fn next_batch(
        &self,
        max: usize,
        wait: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Vec<Envelope> {
        let mut batch = Vec::new();
        let mut backoff = Backoff::new(self.retry_max);
        let mut deadline: Option<tokio::time::Instant> = None;
        while batch.len() < max {
            if *shutdown.borrow() {
                break;
            }
            let recv = self.inner.recv();
            let got = match deadline {
                None => tokio::select! {
                    m = recv => Some(m),
                    _ = shutdown.changed() => None,
                },
                Some(d) => tokio::select! {
                    m = recv => Some(m),
                    _ = tokio::time::sleep_until(d) => break,
                    _ = shutdown.changed() => None,
                },
            };
            match got {
                None => break,
                Some(Ok(m)) => {
                    backoff.reset();
                    batch.push(Envelope::from_message(&m.detach()));
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + wait);
                }
                Some(Err(e)) => {
                    self.metrics.retry(self.worker, "kafka");
                    tracing::warn!(worker = self.worker, error = %e, "kafka poll failed; retrying");
                    if !batch.is_empty() {
                        break;
                    }
                    if !backoff.wait(shutdown).await {
                        break;
                    }
                }
            }
        }
        batch
    }

    /// Commits the offsets after `batch` (per partition, one past the
    /// highest offset). A failed commit is logged and counted: the events
    /// come again and the effects are idempotent.
    pub(crate) async fn commit(&self, batch: &[Envelope]) -> bool {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for e in batch {
            let o = next.entry((e.topic.as_str(), e.partition)).or_insert(0);
            *o = (*o).max(e.offset + 1);
        }
        if next.is_empty() {
            return true;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
                tracing::warn!(worker = self.worker, error = %e, "bad offset to commit");
                return false;
            }
        }
        let consumer = self.inner.clone();
        let done =
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await;
        match done {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.metrics.retry(self.worker, "commit");
                tracing::warn!(worker = self.worker, error = %e,
                    "offset commit failed; the batch will be redelivered (effects are idempotent)");
                false
            }
            Err(e) => {
                tracing::warn!(worker = self.worker, error = %e, "offset commit task failed");
                false
            }
        }
    }
}

/// Exponential backoff from 50 ms to a ceiling, cut short by shutdown.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);

    pub(crate) fn new(max: Duration) -> Self {
        Self {
            next: Self::FIRST.min(max),
            max,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST.min(self.max);
    }

    /// Sleeps the current delay and doubles it; false if shutdown came first.
    pub(crate) async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        if *shutdown.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = shutdown.changed() => false,
        }
    }
}

/// Seconds since `at` (RFC 3339), if it parses and is in the past.
pub(crate) fn age_secs(at: &str) -> Option<f64> {
    let ms = rayltics_commerce::clock::parse_rfc3339(at)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis();
    let age = i64::try_from(now).ok()?.checked_sub(ms)?;
    (age >= 0).then(|| age as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_its_ceiling_and_stops_on_shutdown() {
        let (tx, mut rx) = watch::channel(false);
        let mut b = Backoff::new(Duration::from_millis(150));
        let t0 = tokio::time::Instant::now();
        assert!(b.wait(&mut rx).await);
        assert!(b.wait(&mut rx).await);
        assert!(b.wait(&mut rx).await);
        assert_eq!(t0.elapsed(), Duration::from_millis(50 + 100 + 150));
        tx.send(true).expect("receiver alive");
        assert!(!b.wait(&mut rx).await);
    }

    #[test]
    fn age_of_a_past_time() {
        assert!(age_secs("2020-01-01T00:00:00Z").is_some_and(|s| s > 1e8));
        assert_eq!(age_secs("garbage"), None);
    }
}
