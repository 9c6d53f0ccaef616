//! The cross-shard mesh: one SPSC ring per ordered shard pair, built once at
//! start-up, plus one doorbell per shard.
//!
//! Rings are lock-free (`rtrb`). A shard's pump drains all of its inbound
//! rings on every pass, so one wake-up serves every message waiting. Waking a
//! parked thread costs 25-45 us here, so a sender rings a doorbell (a one-byte
//! write on a socket pair the receiver's runtime polls) only when the
//! receiver's pump has announced it is parked, and only the first sender that
//! observes the park rings it.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};

use crate::key::ShardId;
use crate::stats::{MeshStats, ShardMeshStats};

/// Tuning of the mesh.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// Slots per ring (per ordered shard pair).
    pub ring_capacity: usize,
    /// How long an idle pump keeps polling (yielding to other tasks) before it
    /// parks on its doorbell, in microseconds. Trades idle CPU for latency.
    pub spin_us: u64,
}

impl Default for MeshOptions {
    fn default() -> Self {
        Self {
            ring_capacity: 4096,
            spin_us: 50,
        }
    }
}

/// Node-wide doorbell of one shard. Shared by every shard.
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    parked: AtomicBool,
    waker: futures::task::AtomicWaker,
}

impl Doorbell {
    /// Called by a sender after publishing a message: wakes the receiver if
    /// (and only if) it is parked. Returns whether a signal was sent.
    pub(crate) fn notify(&self) -> bool {
        // Pairs with the fence in `Inbox::prepare_park`: either the receiver
        // sees our message when it re-checks, or we see `parked == true`.
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            self.waker.wake();
            return true;
        }
        false
    }

    /// Receiver side: announce the park. The caller must re-check its rings
    /// afterwards (the fence pairs with the one in [`Doorbell::notify`]).
    pub(crate) fn mark_parked(&self) {
        self.parked.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Receiver side: back to running (after a wake-up or an aborted park).
    pub(crate) fn clear_parked(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }

    /// Receiver side: still parked? Registers `waker` first, so a sender that
    /// clears the flag afterwards also wakes it.
    pub(crate) fn still_parked(&self, waker: &std::task::Waker) -> bool {
        self.waker.register(waker);
        self.parked.load(Ordering::SeqCst)
    }
}

/// What one shard holds of the mesh: its producers towards every other shard,
/// its consumers from every other shard, and its doorbell receiver.
///
/// Built on the main thread and moved into the shard thread; from then on it
/// belongs to that shard alone.
#[derive(Debug)]
pub struct MeshEndpoint<M> {
    pub(crate) id: ShardId,
    pub(crate) outbound: Vec<Option<rtrb::Producer<M>>>,
    pub(crate) inbound: Vec<Option<rtrb::Consumer<M>>>,
    pub(crate) doorbells: Arc<[Doorbell]>,
    pub(crate) stats: MeshStats,
    pub(crate) options: MeshOptions,
}

impl<M> MeshEndpoint<M> {
    /// The shard this endpoint belongs to.
    pub fn shard_id(&self) -> ShardId {
        self.id
    }

    /// Number of shards on the mesh.
    pub fn shard_count(&self) -> usize {
        self.outbound.len()
    }

    /// Node-wide mesh counters.
    pub fn stats(&self) -> &MeshStats {
        &self.stats
    }
}

/// Builder of the mesh for a node.
#[derive(Debug)]
pub struct Mesh;

impl Mesh {
    /// Builds the full mesh for `shard_count` shards: `n * (n - 1)` rings and
    /// `n` doorbells. Returns one endpoint per shard, index = shard id.
    pub fn build<M: Send>(
        shard_count: usize,
        options: MeshOptions,
    ) -> io::Result<Vec<MeshEndpoint<M>>> {
        let n = shard_count.max(1);
        let doorbells: Arc<[Doorbell]> = (0..n).map(|_| Doorbell::default()).collect();
        let stats: MeshStats = (0..n).map(|_| ShardMeshStats::default()).collect();

        let mut outbound: Vec<Vec<Option<rtrb::Producer<M>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut inbound: Vec<Vec<Option<rtrb::Consumer<M>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        for from in 0..n {
            for to in 0..n {
                if from != to {
                    let (p, c) = rtrb::RingBuffer::new(options.ring_capacity);
                    outbound[from][to] = Some(p);
                    inbound[to][from] = Some(c);
                }
            }
        }
        Ok(outbound
            .into_iter()
            .zip(inbound)
            .enumerate()
            .map(|(id, (outbound, inbound))| MeshEndpoint {
                id,
                outbound,
                inbound,
                doorbells: doorbells.clone(),
                stats: stats.clone(),
                options: options.clone(),
            })
            .collect())
    }
}
