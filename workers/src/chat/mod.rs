//! The chat persister: consumer group `rayltics-chat-persister` on
//! `rayltics.chat` -> MongoDB.
//!
//! Per batch (up to `max_batch` messages or `max_wait_ms`): decode each
//! `ChatEvent`, make sure the unique index exists, `insert_many` unordered
//! (duplicates on `(room, seq)` are already archived), and only then commit
//! the offsets. While MongoDB is away the same batch is retried with
//! backoff and nothing is committed, so no message is skipped: a room's
//! seqs arrive in the archive without gaps once it is back.

pub mod archive;

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use rayltics_commerce::model::ChatMessageRec;
use rayltics_proto::events::v1 as pb;
use tokio::sync::watch;

use crate::config::WorkersConfig;
use crate::consumer::{Backoff, BatchWorker, Envelope, GroupConsumer, age_secs, run_batches};
use crate::error::WorkerError;
use crate::metrics::WorkerMetrics;
use archive::ChatArchive;

/// The worker label of this worker's metrics.
const WORKER: &str = "chat";

/// The chat persister (see the module docs).
#[derive(Debug)]
pub struct ChatPersister {
    consumer: GroupConsumer,
    archive: ChatArchive,
    indexed: bool,
    max_batch: usize,
    max_wait: Duration,
    retry_max: Duration,
    metrics: Arc<WorkerMetrics>,
}

impl ChatPersister {
    /// Creates the MongoDB client and joins the consumer group.
    pub async fn new(
        cfg: &WorkersConfig,
        metrics: Arc<WorkerMetrics>,
    ) -> Result<Self, WorkerError> {
        let c = &cfg.chat;
        let archive = ChatArchive::connect(c).await?;
        let consumer = GroupConsumer::new(cfg, WORKER, &c.group_id, &c.topic, metrics.clone())?;
        tracing::info!(group = %c.group_id, topic = %c.topic, collection = %c.collection,
            "chat persister started");
        Ok(Self {
            consumer,
            archive,
            indexed: false,
            max_batch: c.max_batch,
            max_wait: Duration::from_millis(c.max_wait_ms),
            retry_max: Duration::from_millis(cfg.retry_max_ms),
            metrics,
        })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), WorkerError> {
        run_batches(self, shutdown).await
    }

    /// Writes the batch, retrying until MongoDB takes it; false if shutdown
    /// came first (nothing may be committed then).
    async fn persist(&mut self, batch: &[Envelope], shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut docs = Vec::with_capacity(batch.len());
        let mut ages = Vec::with_capacity(batch.len());
        for env in batch {
            match decode(env) {
                Some(m) => {
                    docs.push(archive::to_doc(&m, &env.event_id));
                    ages.push(env.at.as_str());
                }
                None => {
                    tracing::warn!(topic = %env.topic, partition = env.partition,
                        offset = env.offset, kind = %env.kind, "not a chat message; skipped");
                    self.metrics.events(WORKER, "undecodable", 1);
                }
            }
        }
        if docs.is_empty() {
            return true;
        }
        let mut backoff = Backoff::new(self.retry_max);
        loop {
            match self.try_insert(docs.clone()).await {
                Ok(done) => {
                    self.metrics.backend("mongodb", true);
                    self.metrics
                        .chat_messages
                        .with_label_values(&["inserted"])
                        .inc_by(done.inserted as u64);
                    self.metrics
                        .chat_messages
                        .with_label_values(&["duplicate"])
                        .inc_by(done.duplicates as u64);
                    self.metrics.events(WORKER, "done", done.inserted as u64);
                    self.metrics
                        .events(WORKER, "duplicate", done.duplicates as u64);
                    let hist = self.metrics.event_age.with_label_values(&[WORKER]);
                    for age in ages.into_iter().filter_map(age_secs) {
                        hist.observe(age);
                    }
                    return true;
                }
                Err(e) => {
                    self.metrics.backend("mongodb", false);
                    self.metrics.retry(WORKER, "mongo");
                    tracing::warn!(error = %e, messages = docs.len(),
                        "cannot archive the batch; retrying (offsets not committed)");
                    if !backoff.wait(shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn try_insert(
        &mut self,
        docs: Vec<mongodb::bson::Document>,
    ) -> Result<archive::Inserted, WorkerError> {
        if !self.indexed {
            self.archive.ensure_indexes().await?;
            self.indexed = true;
        }
        self.archive.insert(docs).await
    }
}

impl BatchWorker for ChatPersister {
    type Source = GroupConsumer;
    const NAME: &'static str = WORKER;

    fn source(&self) -> &GroupConsumer {
        &self.consumer
    }

    fn batch_limits(&self) -> (usize, Duration) {
        (self.max_batch, self.max_wait)
    }

    fn metrics(&self) -> &WorkerMetrics {
        &self.metrics
    }

    async fn handle(
        &mut self,
        batch: &[Envelope],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool, WorkerError> {
        Ok(self.persist(batch, shutdown).await)
    }
}

/// The message a `rayltics.chat` event carries.
fn decode(env: &Envelope) -> Option<ChatMessageRec> {
    if !env.kind.is_empty() && env.kind != "chat.message" {
        return None;
    }
    let m = pb::ChatEvent::decode(env.payload.as_slice())
        .ok()?
        .message?;
    if m.room.is_empty() || m.seq == 0 {
        return None;
    }
    Some(ChatMessageRec {
        at: rayltics_commerce::clock::parse_rfc3339(&m.sent_at).unwrap_or(0),
        room: m.room,
        seq: m.seq,
        id: m.id,
        from: m.user_id,
        text: m.text,
    })
}
