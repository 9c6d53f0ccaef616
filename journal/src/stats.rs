//! Journal counters, for `/metrics` and for tests that count fdatasyncs.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one journal. Each field has a single writer (the shard thread
/// or the journal's writer thread, as noted), so updates are a relaxed load +
/// store; any thread may read them.
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Records appended (shard thread).
    pub appended: AtomicU64,
    /// Batches handed to the writer thread (shard thread).
    pub batches: AtomicU64,
    /// Batches written: one `write` each (writer thread).
    pub writes: AtomicU64,
    /// Bytes written to segments (writer thread).
    pub bytes_written: AtomicU64,
    /// fdatasync calls on segments (writer thread). With group commit this
    /// grows by one per batch, however many records and commits it covers.
    pub fdatasyncs: AtomicU64,
    /// Total time spent in segment fdatasyncs, in microseconds (writer thread).
    pub fdatasync_micros: AtomicU64,
    /// Segments created (writer thread).
    pub segments_created: AtomicU64,
    /// Segments removed after a snapshot covered them (writer thread).
    pub segments_removed: AtomicU64,
    /// Snapshots made durable (writer thread).
    pub snapshots: AtomicU64,
}

/// A copy of [`JournalStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsView {
    /// See [`JournalStats::appended`].
    pub appended: u64,
    /// See [`JournalStats::batches`].
    pub batches: u64,
    /// See [`JournalStats::writes`].
    pub writes: u64,
    /// See [`JournalStats::bytes_written`].
    pub bytes_written: u64,
    /// See [`JournalStats::fdatasyncs`].
    pub fdatasyncs: u64,
    /// See [`JournalStats::fdatasync_micros`].
    pub fdatasync_micros: u64,
    /// See [`JournalStats::segments_created`].
    pub segments_created: u64,
    /// See [`JournalStats::segments_removed`].
    pub segments_removed: u64,
    /// See [`JournalStats::snapshots`].
    pub snapshots: u64,
}

impl JournalStats {
    /// Adds `n` to a counter this thread is the only writer of.
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn view(&self) -> StatsView {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsView {
            appended: g(&self.appended),
            batches: g(&self.batches),
            writes: g(&self.writes),
            bytes_written: g(&self.bytes_written),
            fdatasyncs: g(&self.fdatasyncs),
            fdatasync_micros: g(&self.fdatasync_micros),
            segments_created: g(&self.segments_created),
            segments_removed: g(&self.segments_removed),
            snapshots: g(&self.snapshots),
        }
    }
}
