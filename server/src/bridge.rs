//! Typed channels between the shards and the tokio sidecar, both directions.
//!
//! tokio's mpsc and oneshot work inside monoio tasks (their wakers are plain
//! `Waker`s; monoio's `sync` feature delivers cross-thread wake-ups), so a
//! shard awaits a sidecar answer like any other future, and the sidecar awaits
//! a shard's answer the same way.

use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use rayltics_shards::ShardId;

/// A call from a shard to the sidecar (crates that need a tokio reactor).
#[derive(Debug)]
pub enum SidecarCall {
    /// Round trip: the sidecar answers at once (latency probe, bench).
    Echo {
        /// When the shard sent it.
        sent: Instant,
        /// Where the answer goes.
        reply: oneshot::Sender<Instant>,
    },
    /// Up to `limit` of `room`'s archived messages with seq < `before`,
    /// oldest first, from the chat archive in MongoDB.
    ChatHistory {
        /// Room.
        room: String,
        /// Exclusive upper seq.
        before: u64,
        /// Most messages.
        limit: usize,
        /// The messages, or why not.
        reply: oneshot::Sender<Result<Vec<rayltics_commerce::model::ChatMessageRec>, String>>,
    },
}

/// A call from the sidecar (gRPC handlers) into a shard.
#[derive(Debug)]
pub enum ShardCall {
    /// Which shard owns `key`? The receiving shard routes it over the mesh
    /// to the owner, which answers with its own id.
    WhoOwns {
        /// Any key.
        key: String,
        /// `(owner, answered_by, shard_count)`.
        reply: oneshot::Sender<(ShardId, ShardId, usize)>,
    },
    /// Read the receiving shard's event log after `after` (at most `max`).
    ReadEvents {
        /// Exclusive start offset.
        after: u64,
        /// Most events.
        max: usize,
        /// The page.
        reply: oneshot::Sender<crate::events::LogPage>,
    },
    /// The outbox relay's long poll: the receiving shard answers once its
    /// log holds an event after `after` (or after its published offset when
    /// `None`), and only with events that are durable.
    ReadOutbox {
        /// Exclusive start offset; `None`: the shard's published offset.
        after: Option<u64>,
        /// Most events.
        max: usize,
        /// The page, or why the shard cannot answer (journal failure).
        reply: oneshot::Sender<Result<crate::relay::OutboxPage, String>>,
    },
    /// The outbox relay had every event up to `upto` acknowledged by the
    /// broker: the shard commits `Change::EventsPublished`.
    MarkPublished {
        /// Last acknowledged offset (inclusive).
        upto: u64,
        /// Answered once the mark is durable.
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// The sidecar's handle to every shard's inbox (node-wide, `Send`).
#[derive(Debug, Clone)]
pub struct ShardInboxes {
    senders: Vec<mpsc::UnboundedSender<ShardCall>>,
}

impl ShardInboxes {
    /// Creates one inbox per shard; returns the node-wide senders and the
    /// per-shard receivers (index = shard id).
    pub fn new(shards: usize) -> (Self, Vec<mpsc::UnboundedReceiver<ShardCall>>) {
        let (senders, receivers) = (0..shards).map(|_| mpsc::unbounded_channel()).unzip();
        (Self { senders }, receivers)
    }

    /// Sends `call` to shard `shard`. `false` when that shard has stopped.
    pub fn send(&self, shard: ShardId, call: ShardCall) -> bool {
        self.senders
            .get(shard)
            .is_some_and(|s| s.send(call).is_ok())
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Whether there are no shards (never, on a started node).
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }
}

/// How long a shard polls for a sidecar answer before parking.
const REPLY_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// A shard's handle to the sidecar. `Send + Clone`.
#[derive(Debug, Clone)]
pub struct SidecarHandle {
    tx: mpsc::UnboundedSender<SidecarCall>,
}

impl SidecarHandle {
    /// Wraps the sidecar's inbox.
    pub fn new(tx: mpsc::UnboundedSender<SidecarCall>) -> Self {
        Self { tx }
    }

    /// Up to `limit` of `room`'s messages before seq `before` from the chat
    /// archive in MongoDB, oldest first.
    pub async fn chat_history(
        &self,
        room: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<rayltics_commerce::model::ChatMessageRec>, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(SidecarCall::ChatHistory {
                room: room.to_owned(),
                before,
                limit,
                reply,
            })
            .map_err(|_| "the sidecar has stopped".to_owned())?;
        rx.await.map_err(|_| "the sidecar has stopped".to_owned())?
    }

    /// Shard -> sidecar -> shard round trip; `None` if the sidecar stopped.
    pub async fn echo(&self) -> Option<Instant> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(SidecarCall::Echo {
                sent: Instant::now(),
                reply,
            })
            .ok()?;
        rayltics_shards::spin_then_await(rx, REPLY_SPIN).await.ok()
    }
}
