//! The librdkafka side of the relay: producer settings, the delivery
//! callback that routes each acknowledgement to its shard's pump, the
//! producer that is rebuilt after a fatal error, and topic creation.
//!
//! One idempotent producer serves every shard's pump, so batches (per
//! partition) mix events of all shards. Each message carries its shard and
//! offset as the delivery opaque; librdkafka's polling thread turns the
//! delivery report into an [`Ack`] on that shard's channel.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::{Notify, mpsc, watch};

use super::KafkaConfig;
use super::health::KafkaHealth;

/// Bits of the delivery opaque that hold the offset; the shard index sits
/// above them.
const OFFSET_BITS: u32 = 48;

/// Packs (pump index, offset) into a delivery opaque.
pub(crate) fn opaque(index: usize, offset: u64) -> usize {
    (index << OFFSET_BITS) | (offset & ((1 << OFFSET_BITS) - 1)) as usize
}

fn unpack(opaque: usize) -> (usize, u64) {
    (
        opaque >> OFFSET_BITS,
        (opaque as u64) & ((1 << OFFSET_BITS) - 1),
    )
}

/// The broker's answer for one event.
#[derive(Debug)]
pub(crate) struct Ack {
    /// The event's offset in its shard's log.
    pub offset: u64,
    /// Why it was not acknowledged, and its topic; `None`: acknowledged.
    pub error: Option<(KafkaError, String)>,
}

/// What librdkafka calls back into: delivery reports, errors, logs.
#[derive(Debug, Clone)]
pub(crate) struct RelayContext {
    acks: Arc<Vec<mpsc::UnboundedSender<Ack>>>,
    health: KafkaHealth,
}

impl ClientContext for RelayContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}");
            }
            // Errors (a refused connection while the broker is away) also
            // reach `error` below, which logs state changes once.
            _ => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let all_down = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        );
        if all_down || error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            if self.health.down(&format!("{error}: {reason}")) {
                tracing::warn!(error = %error, reason, "kafka: broker unreachable; events are kept until it returns");
            }
        } else {
            tracing::debug!(error = %error, reason, "kafka client error");
        }
    }
}

impl ProducerContext for RelayContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let (index, offset) = unpack(opaque);
        let error = match result {
            Ok(_) => None,
            Err((e, msg)) => Some((e.clone(), msg.topic().to_owned())),
        };
        if let Some(tx) = self.acks.get(index) {
            // A closed channel: that pump has stopped; nothing to tell.
            let _ = tx.send(Ack { offset, error });
        }
    }
}

/// The relay's producer.
pub(crate) type RelayProducer = ThreadedProducer<RelayContext>;

/// librdkafka settings of the relay's producer.
pub(crate) fn producer_config(cfg: &KafkaConfig, queued_messages: usize) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.trim())
        .set("client.id", &cfg.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("batch.size", cfg.batch_size_bytes.to_string())
        .set("batch.num.messages", cfg.batch_num_messages.to_string())
        .set("compression.type", &cfg.compression)
        .set("message.timeout.ms", cfg.delivery_timeout_ms.to_string())
        .set("retry.backoff.ms", cfg.retry_backoff_ms.to_string())
        .set("retry.backoff.max.ms", cfg.retry_backoff_max_ms.to_string())
        .set("reconnect.backoff.ms", cfg.retry_backoff_ms.to_string())
        .set(
            "reconnect.backoff.max.ms",
            cfg.retry_backoff_max_ms.to_string(),
        )
        .set(
            "queue.buffering.max.messages",
            queued_messages.clamp(1_000, 2_000_000).to_string(),
        )
        .set("queue.buffering.max.kbytes", "2097151");
    c
}

/// The shared producer, rebuilt after every failed round of deliveries.
/// Measured against a broker restarted without its state (tansu on memory
/// storage): the old idempotent producer never delivers again (its producer
/// id, sequence numbers and leader epochs belong to the broker that was),
/// while a new one delivers at once; a fatal idempotence error needs a new
/// producer as well.
pub(crate) struct ProducerCell {
    config: ClientConfig,
    context: RelayContext,
    current: Mutex<(u64, Arc<RelayProducer>)>,
}

impl std::fmt::Debug for ProducerCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerCell").finish_non_exhaustive()
    }
}

impl ProducerCell {
    /// Builds the producer; `acks[i]` receives the reports of pump `i`.
    pub(crate) fn new(
        config: ClientConfig,
        acks: Vec<mpsc::UnboundedSender<Ack>>,
        health: KafkaHealth,
    ) -> Result<Self, KafkaError> {
        let context = RelayContext {
            acks: Arc::new(acks),
            health,
        };
        let producer = RelayProducer::from_config_and_context(&config, context.clone())?;
        Ok(Self {
            config,
            context,
            current: Mutex::new((0, Arc::new(producer))),
        })
    }

    /// The producer in use and its generation.
    pub(crate) fn current(&self) -> (u64, Arc<RelayProducer>) {
        let g = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (g.0, g.1.clone())
    }

    /// Replaces generation `generation` with a new producer (several pumps
    /// may ask after the same failure; the first one rebuilds). Returns
    /// whether it did. The old producer is dropped on a helper thread: its
    /// drop purges what it still holds (those pumps see the failures and
    /// re-send) and waits up to half a second.
    pub(crate) fn rebuild(&self, generation: u64) -> bool {
        let old = {
            let mut g = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if g.0 != generation {
                return false;
            }
            if let Some((code, reason)) = g.1.client().fatal_error() {
                tracing::warn!(?code, reason, "kafka: fatal producer error");
            }
            match RelayProducer::from_config_and_context(&self.config, self.context.clone()) {
                Ok(p) => std::mem::replace(&mut *g, (generation + 1, Arc::new(p))).1,
                Err(e) => {
                    tracing::error!(error = %e, "kafka: cannot rebuild the producer");
                    return false;
                }
            }
        };
        let _ = std::thread::Builder::new()
            .name("kafka-producer-drop".into())
            .spawn(move || drop(old));
        true
    }

    /// Waits up to `timeout` for every queued message to be acknowledged
    /// or failed.
    pub(crate) fn flush(&self, timeout: Duration) {
        let (_, p) = self.current();
        if let Err(e) = p.flush(timeout) {
            tracing::debug!(error = %e, "kafka: flush at stop did not complete");
        }
    }
}

/// The topics the relay publishes to, created at start and again after
/// every failed round of deliveries (a broker that lost its metadata, e.g.
/// restarted on memory storage, reports them unknown, or lets messages to
/// them time out). One task keeps them ([`Topics::keep`]).
pub(crate) struct Topics {
    admin: AdminClient<DefaultClientContext>,
    names: Mutex<BTreeSet<String>>,
    partitions: i32,
    replication: i32,
    ready: watch::Sender<bool>,
    check: Notify,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

/// How long one topic-creation round may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

impl Topics {
    /// An admin client for `cfg.brokers`; creates nothing yet.
    pub(crate) fn new(cfg: &KafkaConfig, names: &[String]) -> Result<Self, KafkaError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", cfg.brokers.trim())
            .set("client.id", format!("{}-admin", cfg.client_id))
            .set("reconnect.backoff.ms", cfg.retry_backoff_ms.to_string())
            .set(
                "reconnect.backoff.max.ms",
                cfg.retry_backoff_max_ms.to_string(),
            )
            .set_log_level(RDKafkaLogLevel::Critical);
        Ok(Self {
            admin: c.create()?,
            names: Mutex::new(names.iter().cloned().collect()),
            partitions: cfg.topic_partitions,
            replication: cfg.topic_replication,
            ready: watch::channel(false).0,
            check: Notify::new(),
        })
    }

    /// Adds a topic to the set [`ensure`](Self::ensure) creates.
    pub(crate) fn add(&self, name: &str) {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
    }

    /// Creates every topic of the set; one that exists already is fine.
    pub(crate) async fn ensure(&self) -> Result<(), String> {
        let names: Vec<String> = self
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let new: Vec<NewTopic<'_>> = names
            .iter()
            .map(|n| {
                NewTopic::new(
                    n,
                    self.partitions,
                    TopicReplication::Fixed(self.replication),
                )
            })
            .collect();
        let opts = AdminOptions::new()
            .request_timeout(Some(ADMIN_TIMEOUT))
            .operation_timeout(Some(ADMIN_TIMEOUT));
        let results = tokio::time::timeout(
            ADMIN_TIMEOUT + Duration::from_secs(1),
            self.admin.create_topics(&new, &opts),
        )
        .await
        .map_err(|_| format!("creating topics took over {ADMIN_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot create topics: {e}"))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(format!("cannot create topic {topic}: {code}")),
            }
        }
        self.ready.send_replace(true);
        Ok(())
    }

    /// Asks the keeper to create the topics again (requests made while it
    /// works coalesce into one more round).
    pub(crate) fn request_check(&self) {
        self.check.notify_one();
    }

    /// The keeper: creates the topics at start, retrying with a doubling
    /// backoff until the broker answers, then again on every
    /// [`request_check`](Self::request_check), until `stop`.
    pub(crate) async fn keep(
        &self,
        health: &KafkaHealth,
        (min, max): (Duration, Duration),
        errors: &prometheus::IntCounter,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let mut backoff = min;
            loop {
                let result = tokio::select! {
                    r = self.ensure() => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match result {
                    Ok(()) => {
                        health.up();
                        tracing::debug!("kafka: topics ready");
                        break;
                    }
                    Err(e) => {
                        errors.inc();
                        if health.down(&e) {
                            tracing::warn!(error = %e, "kafka: cannot create the topics; retrying");
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(max);
            }
            tokio::select! {
                () = self.check.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Waits until the first [`ensure`](Self::ensure) succeeded.
    pub(crate) async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }
}

/// Whether a delivery error means the topic is missing on the broker.
pub(crate) fn is_unknown_topic(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_round_trips_shard_and_offset() {
        for (i, o) in [(0, 1), (3, 123_456_789), (1023, (1 << 48) - 1)] {
            assert_eq!(unpack(opaque(i, o)), (i, o));
        }
    }
}
