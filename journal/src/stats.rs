//! Journal counters, for `/metrics` and for tests that count fdatasyncs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters of one journal. Each field has a single writer (the shard thread
/// or the journal's writer thread, as noted), so updates are a relaxed load +
/// store; any thread may read them.
///
/// On the PostgreSQL medium, `writes` counts batch transactions,
/// `bytes_written` their frame bytes, `fdatasyncs` and `fdatasync_micros`
/// the commits and the time each batch took from its first attempt to its
/// commit, so batch size and flush latency read the same for both media.
#[derive(Debug)]
pub struct JournalStats {
    /// False while the medium cannot take writes (PostgreSQL unreachable and
    /// the writer retrying); true otherwise (writer thread).
    pub available: AtomicBool,
    /// Failed attempts to write a batch or to reconnect that were retried
    /// (writer thread; PostgreSQL only).
    pub retries: AtomicU64,
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
    /// Segments created (writer thread): `segments_preallocated +
    /// segments_grown`.
    pub segments_created: AtomicU64,
    /// Segments started from a ready zero-filled spare (writer thread):
    /// their batches overwrite written blocks, so an fdatasync has no file
    /// size change to commit.
    pub segments_preallocated: AtomicU64,
    /// Segments started as empty files that every batch grows, because no
    /// spare was ready (the preallocator fell behind, or preallocation is
    /// off) (writer thread).
    pub segments_grown: AtomicU64,
    /// True while a zero-filled spare segment is ready for the next
    /// rotation (set by the preallocator thread once the spare is durable,
    /// cleared by the writer thread when it takes it).
    pub spare_ready: AtomicBool,
    /// Segments removed after a snapshot covered them (writer thread).
    pub segments_removed: AtomicU64,
    /// Snapshots made durable (writer thread).
    pub snapshots: AtomicU64,
}

impl Default for JournalStats {
    fn default() -> Self {
        JournalStats {
            available: AtomicBool::new(true),
            retries: AtomicU64::new(0),
            appended: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            fdatasyncs: AtomicU64::new(0),
            fdatasync_micros: AtomicU64::new(0),
            segments_created: AtomicU64::new(0),
            segments_preallocated: AtomicU64::new(0),
            segments_grown: AtomicU64::new(0),
            spare_ready: AtomicBool::new(false),
            segments_removed: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
        }
    }
}

/// A copy of [`JournalStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsView {
    /// See [`JournalStats::available`].
    pub available: bool,
    /// See [`JournalStats::retries`].
    pub retries: u64,
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
    /// See [`JournalStats::segments_preallocated`].
    pub segments_preallocated: u64,
    /// See [`JournalStats::segments_grown`].
    pub segments_grown: u64,
    /// See [`JournalStats::spare_ready`].
    pub spare_ready: bool,
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
            available: self.available.load(Ordering::Relaxed),
            retries: g(&self.retries),
            appended: g(&self.appended),
            batches: g(&self.batches),
            writes: g(&self.writes),
            bytes_written: g(&self.bytes_written),
            fdatasyncs: g(&self.fdatasyncs),
            fdatasync_micros: g(&self.fdatasync_micros),
            segments_created: g(&self.segments_created),
            segments_preallocated: g(&self.segments_preallocated),
            segments_grown: g(&self.segments_grown),
            spare_ready: self.spare_ready.load(Ordering::Acquire),
            segments_removed: g(&self.segments_removed),
            snapshots: g(&self.snapshots),
        }
    }
}
