//! The writer thread: one per journal, the only code that writes segments.
//!
//! It receives whole batches (every frame a shard appended since its previous
//! hand-off) and turns each into exactly one positioned write (at the
//! segment's logical end) + one `fdatasync`, then answers the batch's
//! oneshot and hands the buffer back for reuse. Batches arrive in sequence
//! order over one channel and are written in that order, each synced before
//! the next is written: so a later write group on disk proves the earlier
//! ones were synced (recovery relies on it).
//!
//! Segments rotate between batches. A new segment is, when one is ready, the
//! zero-filled spare that the preallocator thread prepared (see `prealloc`):
//! batches then overwrite written blocks and the file's size stays put, so
//! an fdatasync has no size change to commit. Otherwise it is a new empty
//! file that every batch grows. Either way a segment's records end at its
//! logical length (`SegmentMeta::len`), which can be below the file's size;
//! what follows is zeros, and recovery treats it as a clean end. After a
//! snapshot becomes durable the writer removes the older snapshot and every
//! segment the new one covers.
//!
//! Any write or fdatasync error poisons the writer: after a failed fdatasync
//! the page cache may have dropped the dirty pages, so retrying could report
//! durability that does not exist. Every later batch fails with the original
//! error; the process is expected to restart and recover.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use futures::channel::oneshot;

use crate::prealloc::Preallocator;
use crate::recovery::SegmentMeta;
use crate::stats::JournalStats;
use crate::{Error, Seq, dir};

/// What the shard side (and the snapshot thread) sends the writer.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Write `bytes` (frames `first..=last`) and sync; answer with the buffer.
    Append {
        bytes: Vec<u8>,
        first: Seq,
        last: Seq,
        done: oneshot::Sender<Result<Vec<u8>, Arc<Error>>>,
    },
    /// Answer once every batch sent before this one is done.
    Barrier {
        done: oneshot::Sender<Result<(), Arc<Error>>>,
    },
    /// The snapshot for `seq` is durable: drop what it covers.
    Truncate {
        seq: Seq,
        done: oneshot::Sender<Result<(), Error>>,
    },
}

/// The segment being appended to.
#[derive(Debug)]
struct Current {
    file: File,
    meta: SegmentMeta,
}

/// State of the writer thread.
#[derive(Debug)]
pub(crate) struct Writer {
    dir: PathBuf,
    sync: bool,
    segment_size: u64,
    stats: Arc<JournalStats>,
    closed: VecDeque<SegmentMeta>,
    current: Option<Current>,
    snapshot_seq: Seq,
    failed: Option<Arc<Error>>,
    /// Prepares spare segments (`None`: preallocation off). Dropped with
    /// the writer, which stops its thread.
    spares: Option<Preallocator>,
    /// Holds the directory lock for as long as the journal is open.
    _lock: File,
}

impl Writer {
    /// Continues from what recovery left: the last segment stays open, and
    /// the next batch goes at its logical length, when the next record
    /// continues it and it has room.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        dir: PathBuf,
        sync: bool,
        segment_size: u64,
        stats: Arc<JournalStats>,
        lock: File,
        segments: Vec<SegmentMeta>,
        snapshot_seq: Seq,
        next_seq: Seq,
        spares: Option<Preallocator>,
    ) -> Result<Self, Error> {
        let mut closed: VecDeque<SegmentMeta> = segments.into();
        let mut current = None;
        if closed
            .back()
            .is_some_and(|last| last.next == next_seq && last.len < segment_size)
        {
            let meta = closed.pop_back().expect("checked");
            let file = OpenOptions::new()
                .write(true)
                .open(&meta.path)
                .map_err(|e| Error::io("open", &meta.path, e))?;
            current = Some(Current { file, meta });
        }
        Ok(Writer {
            dir,
            sync,
            segment_size,
            stats,
            closed,
            current,
            snapshot_seq,
            failed: None,
            spares,
            _lock: lock,
        })
    }

    /// Serves commands until every sender is gone.
    pub(crate) fn run(mut self, rx: Receiver<Cmd>) {
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Cmd::Append {
                    bytes,
                    first,
                    last,
                    done,
                } => {
                    let r = self.append(&bytes, first, last).map(|()| bytes);
                    let _ = done.send(r);
                }
                Cmd::Barrier { done } => {
                    let r = match &self.failed {
                        Some(e) => Err(e.clone()),
                        None => Ok(()),
                    };
                    let _ = done.send(r);
                }
                Cmd::Truncate { seq, done } => {
                    let _ = done.send(self.truncate(seq));
                }
            }
        }
    }

    fn append(&mut self, bytes: &[u8], first: Seq, last: Seq) -> Result<(), Arc<Error>> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.write_batch(bytes, first, last).map_err(|e| {
            tracing::error!(error = %e, "journal writer failed; refusing further writes");
            let e = Arc::new(e);
            self.failed = Some(e.clone());
            e
        })
    }

    fn write_batch(&mut self, bytes: &[u8], first: Seq, last: Seq) -> Result<(), Error> {
        let rotate = match &self.current {
            None => true,
            Some(c) => c.meta.len >= self.segment_size || c.meta.next != first,
        };
        if rotate {
            self.rotate(first)?;
        }
        let cur = self.current.as_mut().expect("a segment is open");
        let created = cur.meta.len == 0;
        cur.file
            .write_all_at(bytes, cur.meta.len)
            .map_err(|e| Error::io("write", &cur.meta.path, e))?;
        JournalStats::bump(&self.stats.writes, 1);
        JournalStats::bump(&self.stats.bytes_written, bytes.len() as u64);
        if self.sync {
            let t = Instant::now();
            cur.file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", &cur.meta.path, e))?;
            JournalStats::bump(&self.stats.fdatasyncs, 1);
            JournalStats::bump(&self.stats.fdatasync_micros, t.elapsed().as_micros() as u64);
            if created {
                // The new segment's directory entry must be durable too.
                dir::sync_dir(&self.dir).map_err(|e| Error::io("fsync directory", &self.dir, e))?;
            }
        }
        cur.meta.len += bytes.len() as u64;
        cur.meta.next = last + 1;
        Ok(())
    }

    /// Closes the current segment and starts `journal-{first}.log`: the
    /// ready spare renamed, or else a new empty file. Its directory entry
    /// becomes durable with the first batch (see `write_batch`).
    fn rotate(&mut self, first: Seq) -> Result<(), Error> {
        if let Some(c) = self.current.take() {
            self.closed.push_back(c.meta);
        }
        let path = dir::segment_path(&self.dir, first);
        let file = match self.spares.as_ref().and_then(|p| p.take(&path)) {
            Some(file) => {
                JournalStats::bump(&self.stats.segments_preallocated, 1);
                file
            }
            None => {
                JournalStats::bump(&self.stats.segments_grown, 1);
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| Error::io("create", &path, e))?
            }
        };
        tracing::debug!(file = %path.display(), "journal: new segment");
        JournalStats::bump(&self.stats.segments_created, 1);
        self.current = Some(Current {
            file,
            meta: SegmentMeta {
                first,
                next: first,
                path,
                len: 0,
            },
        });
        Ok(())
    }

    /// A snapshot for `seq` is durable: remove the previous snapshot and every
    /// segment whose records it covers (oldest first, so what remains is
    /// always contiguous).
    fn truncate(&mut self, seq: Seq) -> Result<(), Error> {
        JournalStats::bump(&self.stats.snapshots, 1);
        let old = self.snapshot_seq;
        if seq < old {
            // Overtaken by a newer snapshot: this one is redundant.
            return dir::remove(&dir::snapshot_path(&self.dir, seq));
        }
        if old != 0 && old != seq {
            dir::remove(&dir::snapshot_path(&self.dir, old))?;
        }
        self.snapshot_seq = seq;
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.meta.next <= seq + 1)
        {
            // Every record of the open segment is covered: the next batch
            // starts a new one.
            let c = self.current.take().expect("checked");
            self.closed.push_back(c.meta);
        }
        while let Some(front) = self.closed.front() {
            if front.next > seq + 1 {
                break;
            }
            dir::remove(&front.path)?;
            tracing::debug!(file = %front.path.display(), "journal: removed a covered segment");
            JournalStats::bump(&self.stats.segments_removed, 1);
            self.closed.pop_front();
        }
        Ok(())
    }
}
