//! Where the relay reads events and marks them published: a shard's outbox
//! (its event log), reached over the sidecar bridge ([`ShardOutbox`]), and
//! the two handlers that answer those calls on the shard itself.
//!
//! A read is a long poll: the shard holds it (a waker in its `ShardData`,
//! no timer, no cross-thread traffic while idle) until an event is appended,
//! waits for the journal's group commit to make it durable, and answers
//! with the durable events only. So nothing is published that was not
//! committed, and a burst of orders costs one hop per fsync, not per event.

use std::future::poll_fn;

use futures::future::{Either, select};
use tokio::sync::oneshot;

use rayltics_commerce::change::Change;
use rayltics_commerce::model::EventRec;
use rayltics_shards::ShardId;

use crate::bridge::{ShardCall, ShardInboxes};
use crate::service::ShardState;

/// One answer to an outbox read.
#[derive(Debug, Clone, Default)]
pub struct OutboxPage {
    /// Durable events after the requested offset, oldest first.
    pub events: Vec<EventRec>,
    /// Oldest offset the log still holds (0: empty log).
    pub first_offset: u64,
    /// Last durable offset when the page was cut.
    pub last_offset: u64,
    /// The durable published offset.
    pub published: u64,
}

/// Answer channel of a read.
pub type ReadReply = oneshot::Receiver<Result<OutboxPage, String>>;
/// Answer channel of a mark.
pub type MarkReply = oneshot::Receiver<Result<(), String>>;

/// A source of events for the relay: a shard's outbox on a node, or a
/// synthetic one (the relay bench).
pub trait Outbox: Send + Sync + 'static {
    /// Asks for at most `max` events after `after` (`None`: after the
    /// published offset). The answer may wait until there is one. `None`
    /// when the source has stopped.
    fn read(&self, after: Option<u64>, max: usize) -> Option<ReadReply>;

    /// Records that every event up to `upto` is acknowledged; answered once
    /// durable. `None` when the source has stopped.
    fn mark_published(&self, upto: u64) -> Option<MarkReply>;
}

/// A shard's outbox, reached through its sidecar inbox.
#[derive(Debug, Clone)]
pub struct ShardOutbox {
    inboxes: ShardInboxes,
    shard: ShardId,
}

impl ShardOutbox {
    /// The outbox of shard `shard`.
    pub fn new(inboxes: ShardInboxes, shard: ShardId) -> Self {
        Self { inboxes, shard }
    }
}

impl Outbox for ShardOutbox {
    fn read(&self, after: Option<u64>, max: usize) -> Option<ReadReply> {
        let (reply, rx) = oneshot::channel();
        self.inboxes
            .send(self.shard, ShardCall::ReadOutbox { after, max, reply })
            .then_some(rx)
    }

    fn mark_published(&self, upto: u64) -> Option<MarkReply> {
        let (reply, rx) = oneshot::channel();
        self.inboxes
            .send(self.shard, ShardCall::MarkPublished { upto, reply })
            .then_some(rx)
    }
}

/// Answers `ShardCall::ReadOutbox` on the shard (spawned per call): waits
/// for an event after `after` (or for the reader to give up), makes
/// everything appended so far durable, then answers with the durable
/// events.
pub(crate) async fn serve_read(
    state: &ShardState,
    after: Option<u64>,
    max: usize,
    mut reply: oneshot::Sender<Result<OutboxPage, String>>,
) {
    let after = after.unwrap_or_else(|| state.store.read().events_published());
    {
        let grown = std::pin::pin!(poll_fn(|cx| state
            .store
            .read()
            .poll_events_after(after, cx)));
        let gone = std::pin::pin!(reply.closed());
        if let Either::Right(_) = select(grown, gone).await {
            return;
        }
    }
    // Every event up to `upto` was appended to the journal before this
    // barrier: once it completes they are durable.
    let upto = state.store.read().last_event_offset();
    let barrier = match state.store.write(Vec::new()) {
        Ok(commit) => commit.await.map(drop).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = barrier {
        let _ = reply.send(Err(format!("the journal failed: {e}")));
        return;
    }
    let data = state.store.read();
    let (mut events, _, first_offset) = data.events_after(after, max);
    events.retain(|e| e.offset <= upto);
    let _ = reply.send(Ok(OutboxPage {
        events,
        first_offset,
        last_offset: upto,
        published: data.events_published(),
    }));
}

/// Answers `ShardCall::MarkPublished` on the shard: commits the published
/// offset.
pub(crate) async fn serve_mark(
    state: &ShardState,
    upto: u64,
    reply: oneshot::Sender<Result<(), String>>,
) {
    let done = state
        .store
        .commit(vec![Change::EventsPublished { upto }])
        .await
        .map_err(|e| e.to_string());
    let _ = reply.send(done);
}
