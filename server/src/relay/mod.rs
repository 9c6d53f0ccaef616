//! The outbox relay: publishes every committed event of every shard's event
//! log to Kafka, and marks it published on its shard only once the broker
//! acknowledged it (ADR-0010).
//!
//! # Layout
//! - [`config`]: the `[kafka]` section ([`KafkaConfig`]).
//! - `kafka`: producer settings (idempotent, `acks=all`, linger, batch
//!   size, lz4/zstd), the delivery callback, the producer rebuilt after a
//!   fatal error, topic creation.
//! - [`outbox`]: where events come from ([`Outbox`]; a shard's is
//!   [`ShardOutbox`]) and the shard-side handlers of the relay's calls.
//! - `pump`: one per shard: read, send, track acknowledgements in offset
//!   order, mark published, re-send after a failure.
//! - [`health`]: the broker as the relay sees it ([`KafkaHealth`], for
//!   `/readyz`).
//!
//! # An event's path
//! A handler commits `Change::Event` with the change it describes (the
//! outbox). The shard's pump has a `ShardCall::ReadOutbox` waiting on that
//! shard; the append wakes it, the shard waits for the group commit and
//! answers with the durable events. The pump hands them to the producer
//! (key = aggregate id, headers `id`, `kind`, `at`). librdkafka batches
//! them per partition (`linger.ms`), and its polling thread reports each
//! acknowledgement back to the pump, which advances the acknowledged
//! prefix and sends `ShardCall::MarkPublished`: the shard commits
//! `Change::EventsPublished`, and from then on may trim those events.
//!
//! # Threads
//! The relay runs on a thread of its own (`kafka-relay`, a tokio
//! current-thread runtime), not on the gRPC sidecar: a stalled broker,
//! backoff or a burst of deliveries never delays gRPC, and it stops before
//! the shards (so its last mark still lands) while the sidecar stops after.

pub mod config;
pub mod health;
mod kafka;
pub mod outbox;
mod pump;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use config::KafkaConfig;
pub use health::{KafkaHealth, KafkaState, KafkaStatus};
pub use outbox::{MarkReply, Outbox, OutboxPage, ReadReply, ShardOutbox};
pub(crate) use outbox::{serve_mark, serve_read};

use crate::metrics::RelayMetrics;
use kafka::{ProducerCell, Topics};
use pump::{Pump, PumpSettings};

/// The topics of API.md "Events", created at start.
pub const TOPICS: &[&str] = &[
    "rayltics.orders",
    "rayltics.inventory",
    "rayltics.chat",
    "rayltics.notifications",
];

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    health: KafkaHealth,
}

impl Relay {
    /// Builds the producer (a configuration librdkafka refuses fails here)
    /// and starts the relay thread: it creates `topics` (retrying with
    /// backoff while the broker is away), then runs one pump per outbox
    /// (`outboxes[i]` is shard `i`'s). Returns at once; the broker need not
    /// be reachable yet.
    pub fn start<O: Outbox>(
        cfg: &KafkaConfig,
        topics: &[String],
        outboxes: Vec<O>,
        metrics: &RelayMetrics,
        health: KafkaHealth,
    ) -> anyhow::Result<Self> {
        let (ack_txs, ack_rxs): (Vec<_>, Vec<_>) =
            outboxes.iter().map(|_| mpsc::unbounded_channel()).unzip();
        let queued = outboxes.len().max(1) * cfg.max_in_flight_events;
        let producers = Arc::new(
            ProducerCell::new(kafka::producer_config(cfg, queued), ack_txs, health.clone())
                .map_err(|e| anyhow::anyhow!("kafka: cannot create the producer: {e}"))?,
        );
        let topics = Arc::new(
            Topics::new(cfg, topics)
                .map_err(|e| anyhow::anyhow!("kafka: cannot create the admin client: {e}"))?,
        );
        let settings = PumpSettings {
            max_in_flight: cfg.max_in_flight_events,
            read_batch: cfg.read_batch_events,
            backoff_min: Duration::from_millis(cfg.retry_backoff_ms),
            backoff_max: Duration::from_millis(cfg.retry_backoff_max_ms),
            backlog_warn: cfg.backlog_warn_events,
            drain: Duration::from_secs(5),
        };
        let pumps: Vec<Pump<O>> = outboxes
            .into_iter()
            .zip(ack_rxs)
            .enumerate()
            .map(|(index, (outbox, acks))| Pump {
                index,
                outbox,
                producers: producers.clone(),
                topics: topics.clone(),
                acks,
                settings: settings.clone(),
                metrics: metrics.for_shard(index),
                health: health.clone(),
            })
            .collect();
        let (stop, stop_rx) = watch::channel(false);
        let brokers = cfg.brokers.clone();
        let backoff = (settings.backoff_min, settings.backoff_max);
        let topic_errors = metrics.topic_errors();
        let thread_health = health.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("kafka relay runtime: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("kafka-relay".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    let keeper_stop = stop_rx.clone();
                    tasks.spawn(async move {
                        topics
                            .keep(&thread_health, backoff, &topic_errors, keeper_stop)
                            .await;
                    });
                    for pump in pumps {
                        tasks.spawn(pump.run(stop_rx.clone()));
                    }
                    while tasks.join_next().await.is_some() {}
                });
                producers.flush(Duration::from_secs(1));
            })?;
        tracing::info!(brokers = %brokers, "kafka relay started");
        Ok(Self {
            stop,
            thread: Some(thread),
            health,
        })
    }

    /// The relay's broker view.
    pub fn health(&self) -> &KafkaHealth {
        &self.health
    }

    /// Stops reading, waits (a few seconds at most) for deliveries in flight
    /// and marks them published, then joins the thread. Events not marked
    /// go again after the next start.
    pub fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the kafka relay thread panicked");
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
