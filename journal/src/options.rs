//! Journal configuration.

/// How a journal writes.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// A segment is closed and a new one started once it holds at least this
    /// many bytes (checked between batches: a batch is never split, so a
    /// segment can exceed it by one batch). Default 64 MiB.
    pub segment_size: u64,
    /// fdatasync every batch (and fsync the directory after creating,
    /// renaming or removing files). Default true. `false` is for tests and
    /// benches of the framing only: nothing is durable against power loss.
    pub sync: bool,
    /// Largest encoded record accepted by `append` (at most 1 GiB - 1).
    /// Default 16 MiB.
    pub max_record_size: usize,
    /// Initial capacity of the shard-side batch buffer. Default 64 KiB.
    pub batch_capacity: usize,
    /// Let the writer and snapshot threads run on every core the process may
    /// use, instead of inheriting the pinning of the shard thread that opened
    /// the journal. Default true.
    pub unpin_threads: bool,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            segment_size: 64 << 20,
            sync: true,
            max_record_size: 16 << 20,
            batch_capacity: 64 << 10,
            unpin_threads: true,
        }
    }
}
