//! The spare-segment preallocator: one background thread per journal that
//! keeps one zero-filled, synced file of `segment_size` bytes ready for the
//! writer's next segment.
//!
//! Why: a batch that grows its file makes its fdatasync commit the inode's
//! new size too (on ext4, a jbd2 journal commit); a batch that overwrites
//! blocks already written and synced does not. Blocks that are merely
//! allocated (`fallocate`) are not enough: they are "unwritten" extents, and
//! writing them changes metadata again. So the spare is really written, with
//! zeros (as PostgreSQL and RocksDB do with their WAL files).
//!
//! The thread writes `spare.zero.tmp` in [`CHUNK`]s, paced with
//! `sync_file_range` so that at most two chunks wait at the disk (the
//! writer's fdatasyncs interleave instead of queueing behind a burst),
//! fsyncs it, renames it to `spare.zero` and fsyncs the directory: a file
//! under the ready name is all zeros and durable. Then it sleeps until the
//! writer takes the spare ([`Preallocator::take`] renames it to the new
//! segment's name) and prepares the next one. One spare at a time.
//!
//! The writer never waits for it: with no spare ready, it starts a growing
//! segment as without preallocation. A failure here only costs that (it is
//! logged and retried at the next rotation). Dropping the [`Preallocator`]
//! stops the thread (between two chunks) and removes its unfinished file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use crate::stats::JournalStats;
use crate::{Error, dir, snapshot};

/// Bytes of zeros written between two writeback steps.
const CHUNK: usize = 1 << 20;

/// What the writer and the preallocator thread share.
#[derive(Debug)]
struct Shared {
    /// The journal is closing: the thread ends.
    stop: AtomicBool,
    /// `spare_ready`: `spare.zero` exists and is complete (set by the
    /// thread, cleared by the writer once it has renamed the spare away).
    stats: Arc<JournalStats>,
}

impl Shared {
    fn ready(&self) -> bool {
        self.stats.spare_ready.load(Ordering::Acquire)
    }

    fn set_ready(&self, ready: bool) {
        self.stats.spare_ready.store(ready, Ordering::Release);
    }
}

/// The writer's handle on its preallocator thread (owned by the writer
/// thread; see the module docs).
#[derive(Debug)]
pub(crate) struct Preallocator {
    dir: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Preallocator {
    /// Starts the thread, which prepares a first spare of `size` bytes at
    /// once. `sync: false` skips the pacing and fsyncs (nothing is durable
    /// then anyway). `unpin`: leave the shard's core and run at the lowest
    /// priority (as snapshot threads do).
    pub(crate) fn start(
        dir: &Path,
        shard: usize,
        size: u64,
        sync: bool,
        unpin: bool,
        stats: Arc<JournalStats>,
    ) -> Result<Self, Error> {
        stats.spare_ready.store(false, Ordering::Release);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stats,
        });
        let thread = {
            let (dir, shared) = (dir.to_path_buf(), shared.clone());
            thread::Builder::new()
                .name(format!("journal-spare-{shard}"))
                .spawn(move || {
                    if unpin {
                        crate::threads::run_in_background();
                    }
                    run(&dir, size, sync, &shared);
                })
        }
        .map_err(|e| Error::io("spawn preallocator thread for", dir, e))?;
        Ok(Preallocator {
            dir: dir.to_path_buf(),
            shared,
            thread: Some(thread),
        })
    }

    /// Turns the ready spare into the segment at `path`, opened for
    /// (positioned) writing; `None`, without waiting, when no spare is ready
    /// (or it could not be renamed: the caller then creates a growing
    /// segment). Either way the thread goes on to prepare the next spare.
    pub(crate) fn take(&self, path: &Path) -> Option<File> {
        let file = self.shared.ready().then(|| self.rename_to(path));
        self.wake();
        match file {
            Some(Ok(file)) => Some(file),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "journal: cannot use the spare segment; growing a new one");
                None
            }
            None => None,
        }
    }

    fn rename_to(&self, path: &Path) -> io::Result<File> {
        let spare = dir::spare_path(&self.dir);
        if fs::symlink_metadata(path).is_ok() {
            // The spare would replace it: never (segments are created once).
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        let renamed = fs::rename(&spare, path);
        // Renamed or not, the thread makes a new spare (it replaces a
        // leftover `spare.zero`).
        self.shared.set_ready(false);
        renamed?;
        OpenOptions::new().write(true).open(path)
    }

    fn wake(&self) {
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

impl Drop for Preallocator {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            if t.join().is_err() {
                tracing::error!(dir = %self.dir.display(), "journal preallocator thread panicked");
            }
        }
        self.shared.set_ready(false); // no rotation will take it
    }
}

/// The thread: keep one spare ready until told to stop.
fn run(dir: &Path, size: u64, sync: bool, shared: &Shared) {
    let zeros = vec![0u8; CHUNK.min(size as usize).max(1)];
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if !shared.ready() {
            match fill(dir, size, sync, &zeros, &shared.stop) {
                Ok(true) => shared.set_ready(true),
                Ok(false) => return,
                Err(e) => {
                    // Retried when the writer next rotates (it wakes us).
                    tracing::warn!(error = %e, "journal: cannot prepare a spare segment; new segments grow meanwhile");
                }
            }
        }
        // Woken by `take` (spare taken, or none was ready) or by `drop`;
        // a spurious wake-up only re-checks the flags.
        thread::park();
    }
}

/// Writes a spare of `size` zero bytes under the temporary name, makes it
/// durable and renames it to the ready name. `Ok(false)`: stopped first
/// (the temporary file is removed).
fn fill(dir: &Path, size: u64, sync: bool, zeros: &[u8], stop: &AtomicBool) -> Result<bool, Error> {
    let spare = dir::spare_path(dir);
    let tmp = dir::tmp_path(&spare);
    let written = write_zeros(&tmp, size, sync, zeros, stop);
    if !matches!(written, Ok(true)) {
        let _ = fs::remove_file(&tmp);
        return written;
    }
    fs::rename(&tmp, &spare).map_err(|e| Error::io("rename", &tmp, e))?;
    if sync {
        dir::sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    Ok(true)
}

fn write_zeros(
    tmp: &Path,
    size: u64,
    sync: bool,
    zeros: &[u8],
    stop: &AtomicBool,
) -> Result<bool, Error> {
    let mut file = File::create(tmp).map_err(|e| Error::io("create", tmp, e))?;
    let mut off = 0u64;
    while off < size {
        if stop.load(Ordering::Acquire) {
            return Ok(false);
        }
        let n = zeros.len().min((size - off) as usize);
        file.write_all(&zeros[..n])
            .map_err(|e| Error::io("write", tmp, e))?;
        if sync {
            snapshot::paced_writeback(&file, off, n as u64, CHUNK as u64);
        }
        off += n as u64;
    }
    if sync {
        file.sync_all().map_err(|e| Error::io("fsync", tmp, e))?;
    }
    Ok(true)
}
