//! The workers role on this node: `rayltics_workers` (email sender, chat
//! persister) on its own thread with a tokio current-thread runtime, so a
//! slow SMTP server or MongoDB never delays gRPC or the relay.
//!
//! With Kafka brokers configured the workers are consumer groups
//! (`rayltics_workers::run`). On the embedded default (no Kafka) the email
//! sender reads the shards' outboxes directly ([`EmbeddedSource`]) and
//! writes `.eml` files: its consumed offset is each shard's published
//! offset, committed through the shard's journal, so nothing is mailed
//! twice after a restart and no event is trimmed before it was mailed.
//!
//! It starts after the shards when the node runs the `workers` role (or
//! `all`), and stops after them: a batch in progress finishes or is
//! abandoned uncommitted (at-least-once, effects idempotent).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use futures::future::{Either, select, select_all};
use tokio::sync::{oneshot, watch};

use rayltics_commerce::clock::rfc3339;
use rayltics_workers::{Envelope, EventSource, WorkerMetrics, WorkersConfig};

use crate::relay::{Outbox, OutboxPage, ReadReply, ShardOutbox};

/// How the workers get their events on this node.
#[derive(Debug)]
pub enum Feed {
    /// Kafka consumer groups (`workers.kafka_brokers`, or `[kafka]`'s).
    Kafka,
    /// The shards' outboxes (the embedded default): the email sender only.
    Embedded(Vec<ShardOutbox>),
}

impl Feed {
    /// The feed `config` calls for, if any worker runs at all.
    pub fn for_config(
        config: &WorkersConfig,
        outboxes: impl FnOnce() -> Vec<ShardOutbox>,
    ) -> Option<Self> {
        if config.email_enabled() || config.chat_enabled() {
            Some(Feed::Kafka)
        } else if config.kafka_brokers.is_empty() && config.email.enabled {
            Some(Feed::Embedded(outboxes()))
        } else {
            None
        }
    }
}

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Workers {
    /// Starts the workers on `feed`.
    pub fn start(
        config: WorkersConfig,
        metrics: Arc<WorkerMetrics>,
        feed: Feed,
    ) -> anyhow::Result<Self> {
        config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("workers runtime: {e}"))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("workers".into())
            .spawn(move || {
                let shutdown = async move {
                    let _ = stopped.await;
                };
                let done = runtime.block_on(async move {
                    match feed {
                        Feed::Kafka => rayltics_workers::run(config, metrics, shutdown).await,
                        Feed::Embedded(outboxes) => {
                            let topic = config.email.topic.clone();
                            let source = EmbeddedSource::new(outboxes, topic);
                            rayltics_workers::run_email_from(config, metrics, source, shutdown)
                                .await
                        }
                    }
                });
                if let Err(e) = done {
                    tracing::error!(error = %e, "workers stopped with an error");
                }
            })?;
        tracing::info!("workers started");
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Asks the workers to stop and waits for them.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the workers thread panicked");
        }
    }
}

/// Most events one outbox read returns.
const READ_MAX: usize = 500;
/// Wait after a failed read before asking that shard again.
const READ_RETRY: Duration = Duration::from_millis(200);

/// The shards' outboxes as an [`EventSource`]: one long-poll read per
/// shard outstanding; a batch is the events of `topic` in the pages that
/// answered; a commit marks those pages published on their shards. Pages
/// with no event of `topic` are marked at once, so other topics' events are
/// not held in memory for a reader that ignores them.
#[derive(Debug)]
pub struct EmbeddedSource {
    outboxes: Vec<ShardOutbox>,
    topic: String,
    state: Mutex<SourceState>,
}

#[derive(Debug, Default)]
struct SourceState {
    /// Per shard: the offset read up to (`None`: from its published offset).
    after: Vec<Option<u64>>,
    /// Per shard: the read in flight.
    reads: Vec<Option<ReadReply>>,
    /// Pages handed out in the last batch, to mark at commit: (shard, upto).
    handed: Vec<(usize, u64)>,
}

impl EmbeddedSource {
    /// Reads `topic`'s events from `outboxes` (one per shard, in shard order).
    pub fn new(outboxes: Vec<ShardOutbox>, topic: String) -> Self {
        let shards = outboxes.len();
        Self {
            outboxes,
            topic,
            state: Mutex::new(SourceState {
                after: vec![None; shards],
                reads: (0..shards).map(|_| None).collect(),
                handed: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SourceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes every read in flight, issuing the missing ones (at most `max`
    /// events each).
    fn take_reads(&self, max: usize) -> Vec<(usize, ReadReply)> {
        let mut st = self.lock();
        let mut out = Vec::new();
        for shard in 0..self.outboxes.len() {
            let read = match st.reads[shard].take() {
                Some(r) => Some(r),
                None => self.outboxes[shard].read(st.after[shard], max.clamp(1, READ_MAX)),
            };
            if let Some(r) = read {
                out.push((shard, r));
            }
        }
        out
    }

    /// Puts back the reads that did not answer.
    fn put_back(&self, reads: Vec<(usize, ReadReply)>) {
        let mut st = self.lock();
        for (shard, r) in reads {
            st.reads[shard] = Some(r);
        }
    }

    /// Records `page` of `shard` as read; its events of our topic.
    fn accept(&self, shard: usize, page: OutboxPage) -> Vec<Envelope> {
        let Some(upto) = page.events.last().map(|e| e.offset) else {
            return Vec::new();
        };
        let mut st = self.lock();
        st.after[shard] = Some(upto);
        st.handed.push((shard, upto));
        page.events
            .into_iter()
            .filter(|e| e.topic == self.topic)
            .map(|e| Envelope {
                at: rfc3339(e.at),
                event_id: e.id,
                kind: e.kind,
                key: e.key,
                payload: e.payload,
                topic: e.topic,
                partition: shard as i32,
                offset: e.offset as i64,
            })
            .collect()
    }

    /// Marks every handed-out page published; `false` if a mark failed.
    async fn mark_handed(&self) -> bool {
        let handed = std::mem::take(&mut self.lock().handed);
        let mut ok = true;
        for (shard, upto) in handed {
            let done = match self.outboxes[shard].mark_published(upto) {
                Some(rx) => matches!(rx.await, Ok(Ok(()))),
                None => false,
            };
            if !done {
                tracing::warn!(
                    shard,
                    upto,
                    "cannot mark mailed events; they will be mailed again after a restart (deduplicated)"
                );
                ok = false;
            }
        }
        ok
    }
}

impl EventSource for EmbeddedSource {
    async fn next_batch(
        &self,
        max: usize,
        _wait: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Vec<Envelope> {
        loop {
            if *shutdown.borrow() {
                return Vec::new();
            }
            let reads = self.take_reads(max);
            if reads.is_empty() {
                // Every shard has stopped.
                let _ = shutdown.changed().await;
                return Vec::new();
            }
            let (shards, receivers): (Vec<usize>, Vec<ReadReply>) = reads.into_iter().unzip();
            let first = select_all(receivers);
            let stopping = std::pin::pin!(shutdown.changed());
            let (answer, index, rest) = match select(first, stopping).await {
                Either::Left((done, _)) => done,
                Either::Right((_, first)) => {
                    let rest = first.into_inner();
                    self.put_back(shards.into_iter().zip(rest).collect());
                    return Vec::new();
                }
            };
            let answered = shards[index];
            let mut others: Vec<usize> = shards;
            others.remove(index);
            self.put_back(others.into_iter().zip(rest).collect());
            let batch = match answer {
                Ok(Ok(page)) => self.accept(answered, page),
                Ok(Err(e)) => {
                    tracing::warn!(shard = answered, error = %e, "outbox read failed; retrying");
                    tokio::time::sleep(READ_RETRY).await;
                    Vec::new()
                }
                Err(_) => Vec::new(), // that shard stopped
            };
            if !batch.is_empty() {
                return batch;
            }
            // Nothing of our topic: let those events go now.
            self.mark_handed().await;
        }
    }

    async fn commit(&self, _batch: &[Envelope]) -> bool {
        self.mark_handed().await
    }
}
