//! One shard's relay pump: read the outbox after the last event handed to
//! the producer, send each event, track the broker's acknowledgements in
//! offset order, and mark the acknowledged prefix published on the shard.
//!
//! Ordering and loss: events go to the idempotent producer in offset order,
//! and librdkafka keeps a partition's messages in order across its own
//! retries. Only the contiguous acknowledged prefix is marked published.
//! When a delivery fails (the broker was away past `message.timeout.ms`, a
//! topic vanished, a fatal producer error), the pump stops sending, waits
//! for every message in flight to settle, repairs what it can (has the
//! topics created again, rebuilds the producer), waits out a doubling
//! backoff, and
//! re-sends from the first unacknowledged event: events after it that had
//! been acknowledged go again (at-least-once; consumers dedupe on the event
//! id), and none is skipped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use tokio::sync::{mpsc, watch};

use rayltics_commerce::clock::rfc3339;

use super::kafka::{Ack, ProducerCell, Topics, is_unknown_topic, opaque};
use super::outbox::{MarkReply, Outbox, OutboxPage, ReadReply};
use crate::metrics::ShardRelayMetrics;
use crate::relay::health::KafkaHealth;

/// How a pump paces itself.
#[derive(Debug, Clone)]
pub(crate) struct PumpSettings {
    /// Events handed to the producer and not yet acknowledged, at most.
    pub max_in_flight: usize,
    /// Events per outbox read, at most.
    pub read_batch: usize,
    /// First wait before a re-send round.
    pub backoff_min: Duration,
    /// Longest wait before a re-send round.
    pub backoff_max: Duration,
    /// Warn once the shard's backlog passes this many events.
    pub backlog_warn: u64,
    /// At stop, how long to wait for acknowledgements in flight.
    pub drain: Duration,
}

/// An event handed to the producer.
#[derive(Debug)]
enum Slot {
    /// Sent at, committed at (ms).
    Pending(Instant, i64),
    /// Acknowledged, not yet at the front of the window.
    Done,
    /// Failed; the round ends once nothing is pending.
    Failed,
}

/// Why a round of sends failed.
#[derive(Debug)]
struct Failure {
    error: String,
    unknown_topic: Option<String>,
}

/// One shard's pump. Lives on the relay thread.
pub(crate) struct Pump<O: Outbox> {
    /// Index of the shard (the delivery opaque's upper bits).
    pub index: usize,
    /// Where events come from.
    pub outbox: O,
    /// The shared producer.
    pub producers: Arc<ProducerCell>,
    /// The topics (re-created when the broker lost one).
    pub topics: Arc<Topics>,
    /// Acknowledgements of this shard's messages.
    pub acks: mpsc::UnboundedReceiver<Ack>,
    /// Pacing.
    pub settings: PumpSettings,
    /// Metric handles.
    pub metrics: ShardRelayMetrics,
    /// The node-wide broker view.
    pub health: KafkaHealth,
}

/// The pump's progress.
#[derive(Debug, Default)]
struct Progress {
    /// Known: every event up to here is acknowledged, in order.
    acked: u64,
    /// Durably marked published on the shard.
    marked: u64,
    /// Offsets `acked + 1 ..= acked + window.len()`, in send order.
    window: VecDeque<Slot>,
    /// Producer generation the window was sent with.
    generation: u64,
    /// Set by the first failed delivery of a round.
    failure: Option<Failure>,
    /// The first read has answered (its page carries the published offset).
    started: bool,
    /// Backlog warning given and not yet cleared.
    warned: bool,
}

impl Progress {
    fn sent(&self) -> u64 {
        self.acked + self.window.len() as u64
    }

    fn pending(&self) -> bool {
        self.window.iter().any(|s| matches!(s, Slot::Pending(..)))
    }
}

impl<O: Outbox> Pump<O> {
    /// Runs until `stop` turns true (or the shard stops), then drains: waits
    /// up to `settings.drain` for acknowledgements in flight and marks them.
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tokio::select! {
            () = self.topics.wait_ready() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut p = Progress::default();
        let mut backoff = self.settings.backoff_min;
        // The read in flight and the offset it asked after.
        let mut read: Option<(Option<u64>, ReadReply)> = None;
        let mut mark: Option<(u64, MarkReply)> = None;
        let mut resume_at: Option<tokio::time::Instant> = None;
        let mut mark_after: Option<tokio::time::Instant> = None;
        loop {
            if read.is_none()
                && resume_at.is_none()
                && p.failure.is_none()
                && p.window.len() < self.settings.max_in_flight
            {
                let after = p.started.then(|| p.sent());
                let max = self
                    .settings
                    .read_batch
                    .min(self.settings.max_in_flight - p.window.len());
                match self.outbox.read(after, max) {
                    Some(rx) => read = Some((after, rx)),
                    None => return,
                }
            }
            if mark.is_none()
                && p.acked > p.marked
                && mark_after.is_none_or(|t| t <= tokio::time::Instant::now())
            {
                match self.outbox.mark_published(p.acked) {
                    Some(rx) => mark = Some((p.acked, rx)),
                    None => return,
                }
            }
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                Some(ack) = self.acks.recv() => {
                    self.on_ack(&mut p, ack, &mut backoff);
                    while let Ok(ack) = self.acks.try_recv() {
                        self.on_ack(&mut p, ack, &mut backoff);
                    }
                }
                answer = async { (&mut read.as_mut().expect("guarded").1).await }, if read.is_some() => {
                    let (after, _) = read.take().expect("guarded");
                    match answer {
                        Ok(Ok(page)) => self.on_page(&mut p, after, page),
                        Ok(Err(e)) => {
                            tracing::warn!(shard = self.index, error = %e, "outbox read failed; retrying");
                            resume_at = Some(tokio::time::Instant::now() + backoff);
                        }
                        Err(_) => return,
                    }
                }
                answer = async { (&mut mark.as_mut().expect("guarded").1).await }, if mark.is_some() => {
                    let (upto, _) = mark.take().expect("guarded");
                    match answer {
                        Ok(Ok(())) => {
                            p.marked = upto;
                            mark_after = None;
                        }
                        Ok(Err(e)) => {
                            self.metrics.mark_errors.inc();
                            tracing::warn!(shard = self.index, error = %e, "cannot commit the published offset; retrying");
                            mark_after = Some(tokio::time::Instant::now() + backoff);
                        }
                        Err(_) => return,
                    }
                }
                () = sleep_until(resume_at.or(mark_after)), if resume_at.is_some() || mark_after.is_some() => {
                    let now = tokio::time::Instant::now();
                    if resume_at.is_some_and(|t| t <= now) {
                        resume_at = None;
                    }
                }
            }
            if p.failure.is_some() && !p.pending() {
                let failure = p.failure.take().expect("checked");
                self.end_round(&mut p, failure);
                // A long poll issued before the rewind asks after the wrong
                // offset (and may wait for events that never come): drop
                // it, which also ends it on the shard.
                read = None;
                resume_at = Some(tokio::time::Instant::now() + backoff);
                backoff = (backoff * 2).min(self.settings.backoff_max);
            }
        }
        drop(read);
        self.drain(p, mark).await;
    }

    /// Hands a page's events to the producer, in offset order. `after` is
    /// what the read asked for: a page read before a failed round rewound
    /// the pump no longer follows what was sent, and is dropped.
    fn on_page(&self, p: &mut Progress, after: Option<u64>, page: OutboxPage) {
        if !p.started {
            p.started = true;
            p.acked = page.published;
            p.marked = page.published;
        } else if after != Some(p.sent()) {
            return;
        }
        if p.failure.is_some() {
            return;
        }
        let backlog = page.last_offset.saturating_sub(p.acked);
        if backlog > self.settings.backlog_warn && !p.warned {
            p.warned = true;
            tracing::warn!(
                shard = self.index,
                backlog,
                "outbox backlog above kafka.backlog_warn_events: events are kept in memory until the broker acknowledges them"
            );
        } else if backlog <= self.settings.backlog_warn / 2 {
            p.warned = false;
        }
        let (generation, producer) = self.producers.current();
        if p.window.is_empty() {
            p.generation = generation;
        }
        let mut sent = 0usize;
        for e in &page.events {
            if e.offset <= p.sent() {
                continue;
            }
            if e.offset > p.sent() + 1 {
                if !p.window.is_empty() || page.first_offset <= p.sent() + 1 {
                    tracing::error!(
                        shard = self.index,
                        expected = p.sent() + 1,
                        got = e.offset,
                        "outbox page skips offsets; reading again"
                    );
                    break;
                }
                // Only events trimmed before a relay was configured (the
                // embedded log keeps the newest ones) can be missing.
                tracing::warn!(
                    shard = self.index,
                    from = p.sent() + 1,
                    to = e.offset - 1,
                    "events no longer in the outbox (trimmed before the relay was configured); not published"
                );
                p.acked = e.offset - 1;
            }
            let at = rfc3339(e.at);
            let headers = OwnedHeaders::new_with_capacity(3)
                .insert(Header {
                    key: "event-id",
                    value: Some(e.id.as_str()),
                })
                .insert(Header {
                    key: "kind",
                    value: Some(e.kind.as_str()),
                })
                .insert(Header {
                    key: "at",
                    value: Some(at.as_str()),
                });
            let record = BaseRecord::with_opaque_to(&e.topic, opaque(self.index, e.offset))
                .key(e.key.as_str())
                .payload(e.payload.as_slice())
                .timestamp(e.at)
                .headers(headers);
            match producer.send(record) {
                Ok(()) => {
                    p.window.push_back(Slot::Pending(Instant::now(), e.at));
                    sent += 1;
                }
                Err((err, _)) => {
                    // Nothing after it may go before it: the round ends.
                    self.metrics.enqueue_errors.inc();
                    p.window.push_back(Slot::Failed);
                    p.failure = Some(Failure {
                        unknown_topic: is_unknown_topic(&err).then(|| e.topic.clone()),
                        error: format!("cannot queue event {}: {err}", e.offset),
                    });
                    break;
                }
            }
        }
        if sent > 0 {
            self.metrics.batches.inc();
            self.metrics.batch_events.observe(sent as f64);
        }
    }

    /// Records one acknowledgement (or failure) and advances the prefix.
    fn on_ack(&self, p: &mut Progress, ack: Ack, backoff: &mut Duration) {
        if ack.offset <= p.acked {
            return;
        }
        let Some(slot) = p.window.get_mut((ack.offset - p.acked - 1) as usize) else {
            return;
        };
        let Slot::Pending(sent_at, at) = *slot else {
            return;
        };
        match ack.error {
            None => {
                *slot = Slot::Done;
                self.metrics
                    .delivery
                    .observe(sent_at.elapsed().as_secs_f64());
                let now_ms = rayltics_commerce::Clock::System.now_ms();
                self.metrics
                    .lag
                    .observe(now_ms.saturating_sub(at).max(0) as f64 / 1000.0);
                if self.health.up() {
                    tracing::info!("kafka: broker acknowledging again");
                }
                *backoff = self.settings.backoff_min;
            }
            Some((err, topic)) => {
                *slot = Slot::Failed;
                self.metrics.delivery_errors.inc();
                if p.failure.is_none() {
                    p.failure = Some(Failure {
                        unknown_topic: is_unknown_topic(&err).then_some(topic),
                        error: format!("delivery of event {} failed: {err}", ack.offset),
                    });
                }
            }
        }
        while let Some(Slot::Done) = p.window.front() {
            p.window.pop_front();
            p.acked += 1;
            self.metrics.published.inc();
        }
    }

    /// Ends a failed round once nothing is in flight: forget the window
    /// (re-send from the first unacknowledged event), repair the cause.
    fn end_round(&self, p: &mut Progress, failure: Failure) {
        p.window.clear();
        self.metrics.retries.inc();
        if self.health.down(&failure.error) {
            tracing::warn!(shard = self.index, error = %failure.error, "kafka: delivery failed; re-sending from the first unacknowledged event after a backoff");
        } else {
            tracing::debug!(shard = self.index, error = %failure.error, "kafka: delivery failed again");
        }
        if self.producers.rebuild(p.generation) {
            tracing::info!(
                shard = self.index,
                "kafka: producer rebuilt for the next round"
            );
        }
        if let Some(topic) = failure.unknown_topic {
            self.topics.add(&topic);
        }
        // A broker that lost its topics may also just let messages time
        // out: check them after every failed round (cheap, and "already
        // exists" is the usual answer).
        self.topics.request_check();
    }

    /// At stop: no more reads; wait (bounded) for what is in flight, then
    /// mark the acknowledged prefix.
    async fn drain(mut self, mut p: Progress, mark: Option<(u64, MarkReply)>) {
        let deadline = tokio::time::Instant::now() + self.settings.drain;
        if let Some((upto, rx)) = mark
            && let Ok(Ok(Ok(()))) = tokio::time::timeout_at(deadline, rx).await
        {
            p.marked = upto;
        }
        let mut backoff = self.settings.backoff_min;
        while p.pending() {
            match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                Ok(Some(ack)) => self.on_ack(&mut p, ack, &mut backoff),
                _ => break,
            }
        }
        if p.acked > p.marked
            && let Some(rx) = self.outbox.mark_published(p.acked)
        {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Ok(()))) => p.marked = p.acked,
                _ => tracing::warn!(
                    shard = self.index,
                    acked = p.acked,
                    "could not record the published offset at stop; those events go again after the restart"
                ),
            }
        }
        tracing::debug!(
            shard = self.index,
            published = p.marked,
            "relay pump stopped"
        );
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
