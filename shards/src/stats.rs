//! Mesh counters, node-wide view of every shard's traffic.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one shard's mesh traffic. Written only by the owning shard
/// (single writer, relaxed), read by whichever shard serves `/metrics`.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct ShardMeshStats {
    /// Messages (requests and replies) this shard pushed to other shards.
    pub sent: AtomicU64,
    /// Messages this shard's pump drained from its inbound rings.
    pub received: AtomicU64,
    /// Times this shard rang another shard's doorbell (a syscall + wake-up).
    pub doorbells_rung: AtomicU64,
    /// Times this shard's pump parked on its doorbell.
    pub parks: AtomicU64,
    /// Times a send found the ring full and had to wait.
    pub ring_full: AtomicU64,
}

impl ShardMeshStats {
    /// Adds `n` to a counter owned by this shard.
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64, n: u64) {
        // Single writer: a plain load + store avoids a locked RMW.
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Node-wide view: one [`ShardMeshStats`] per shard, indexed by shard id.
pub type MeshStats = std::sync::Arc<[ShardMeshStats]>;
