//! The shard-side handle: append, group commit, snapshots.
//!
//! `append` encodes a record straight into the shard's current batch buffer
//! (rkyv + frame header + CRC32C) and returns its sequence number; nothing is
//! written yet. `commit()` returns a future that completes once every record
//! appended before the call is durable.
//!
//! # Group commit
//! One [`Flusher`] task per journal, spawned on the owning shard, moves batches
//! to the writer thread. A commit that finds its records still in the buffer
//! wakes the flusher, which monoio queues *behind* every task already ready:
//! by the time it runs, every task of the current tick has appended and
//! committed, so the whole tick goes out as one batch (one `write`, one
//! `fdatasync`). While that batch is being synced, new appends accumulate in a
//! fresh buffer, and the flusher hands them over the moment the previous sync
//! returns. One cross-thread wake-up per batch brings the answer back; the
//! flusher then wakes the waiting commits locally.

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::task::{Context, Poll, Waker};
use std::thread::{self, JoinHandle};

use futures::channel::oneshot;
use rkyv::api::high::HighSerializer;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use slab::Slab;

use crate::frame;
use crate::options::{JournalOptions, Medium, PgOptions};
use crate::pg;
use crate::prealloc::Preallocator;
use crate::recovery::{self, Recovered};
use crate::stats::{JournalStats, StatsView};
use crate::writer::{Cmd, Writer};
use crate::{Error, Seq, dir, snapshot};

/// Records the journal can encode: anything rkyv can serialize with its
/// high-level serializer (every `#[derive(rkyv::Archive, rkyv::Serialize)]`
/// type).
pub trait Encode:
    for<'a, 'b> rkyv::Serialize<HighSerializer<&'b mut Vec<u8>, ArenaHandle<'a>, rancor::Error>>
{
}

impl<T> Encode for T where
    T: ?Sized
        + for<'a, 'b> rkyv::Serialize<HighSerializer<&'b mut Vec<u8>, ArenaHandle<'a>, rancor::Error>>
{
}

/// A shard's journal of `R` records. Cheap to clone (all clones are the same
/// journal); `!Send`: it belongs to the shard that opened it.
pub struct Journal<R> {
    inner: Rc<Inner>,
    _record: PhantomData<fn(&R)>,
}

impl<R> Clone for Journal<R> {
    fn clone(&self) -> Self {
        Journal {
            inner: self.inner.clone(),
            _record: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for Journal<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.st.borrow();
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .field("last_seq", &(st.next_seq - 1))
            .field("durable_seq", &st.durable)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Inner {
    st: RefCell<State>,
    tx: RefCell<Option<Sender<Cmd>>>,
    writer: RefCell<Option<JoinHandle<()>>>,
    stats: Arc<JournalStats>,
    /// Set when the journal stops: a writer retrying an unreachable medium
    /// gives up instead of holding the shutdown.
    closing: Arc<std::sync::atomic::AtomicBool>,
    dir: PathBuf,
    shard: usize,
    opts: JournalOptions,
}

#[derive(Debug)]
struct State {
    /// Frames appended since the last hand-off.
    buf: Vec<u8>,
    /// A returned buffer, reused for the next batch.
    spare: Vec<u8>,
    /// Sequence number of the next append.
    next_seq: Seq,
    /// Last sequence number handed to the writer.
    handed_off: Seq,
    /// Last sequence number known durable.
    durable: Seq,
    /// Highest sequence number a pending commit waits for.
    wanted: Seq,
    waiters: Slab<Waiter>,
    flusher: Option<Waker>,
    flusher_running: bool,
    /// Identifies the current flusher (a new one may follow one that ended).
    flusher_gen: u64,
    failed: Option<Arc<Error>>,
    closed: bool,
    snapshot_seq: Seq,
    snapshot_busy: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug)]
struct Waiter {
    target: Seq,
    waker: Option<Waker>,
}

impl State {
    fn check_writable(&self) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(Error::Poisoned(e.clone()));
        }
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Wakers of the commits that `durable` (or a failure) completes.
    fn take_ready_wakers(&mut self, all: bool) -> Vec<Waker> {
        let durable = self.durable;
        self.waiters
            .iter_mut()
            .filter(|(_, w)| all || w.target <= durable)
            .filter_map(|(_, w)| w.waker.take())
            .collect()
    }
}

impl<R> Journal<R> {
    /// Opens (creating if needed) the journal of shard `shard` under the data
    /// directory `root` (files in `root/shard-{shard}/`), recovers it and
    /// starts its writer thread.
    ///
    /// Returns the journal, positioned after the last recovered record, and
    /// what to rebuild the shard's state from: the latest snapshot and the
    /// records after it. A torn tail is cut off (and reported in
    /// [`Recovered::torn_tail`]); damage anywhere else is [`Error::Corrupt`].
    pub fn open(
        root: impl AsRef<Path>,
        shard: usize,
        opts: JournalOptions,
    ) -> Result<(Self, Recovered<R>), Error> {
        let dir = dir::shard_dir(root.as_ref(), shard);
        dir::create(&dir)?;
        let lock = dir::lock(&dir)?;
        let stats = Arc::new(JournalStats::default());
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let unpin = opts.unpin_threads;
        let spawn = |name: String, body: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name)
                .spawn(move || {
                    if unpin {
                        crate::threads::leave_shard_core();
                    }
                    body();
                })
                .map_err(|e| Error::io("spawn writer thread for", &dir, e))
        };
        let (handle, recovered, snapshot_seq, next_seq) = match &opts.medium {
            Medium::Files => {
                let outcome = recovery::recover::<R>(&dir)?;
                let spares = if opts.preallocate {
                    Some(Preallocator::start(
                        &dir,
                        shard,
                        opts.segment_size,
                        opts.sync,
                        unpin,
                        stats.clone(),
                    )?)
                } else {
                    None
                };
                let writer = Writer::new(
                    dir.clone(),
                    opts.sync,
                    opts.segment_size,
                    stats.clone(),
                    lock,
                    outcome.segments,
                    outcome.snapshot_seq,
                    outcome.next_seq,
                    spares,
                )?;
                let handle = spawn(format!("journal-{shard}"), Box::new(move || writer.run(rx)))?;
                (
                    handle,
                    outcome.recovered,
                    outcome.snapshot_seq,
                    outcome.next_seq,
                )
            }
            Medium::Postgres(pg_opts) => {
                let writer = pg::writer::PgWriter::new(
                    pg_opts.clone(),
                    shard,
                    stats.clone(),
                    closing.clone(),
                    lock,
                    dir.clone(),
                );
                let (init_tx, init_rx) = mpsc::sync_channel(1);
                let pg_opts = pg_opts.clone();
                let handle = spawn(
                    format!("journal-pg-{shard}"),
                    Box::new(move || {
                        let rt = match pg::runtime(&pg_opts) {
                            Ok(rt) => rt,
                            Err(e) => {
                                let _ = init_tx.send(Err(e));
                                return;
                            }
                        };
                        let mut writer = writer;
                        match rt.block_on(writer.start()) {
                            Ok(loaded) => {
                                if init_tx.send(Ok(loaded)).is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = init_tx.send(Err(e));
                                return;
                            }
                        }
                        writer.run(&rt, rx);
                    }),
                )?;
                let loaded = match init_rx.recv() {
                    Ok(r) => r?,
                    Err(_) => return Err(Error::Closed),
                };
                let (snapshot_seq, next_seq) = (loaded.snapshot_seq, loaded.next_seq);
                (handle, loaded.into_recovered(), snapshot_seq, next_seq)
            }
        };
        let last = next_seq - 1;
        let st = State {
            buf: Vec::with_capacity(opts.batch_capacity),
            spare: Vec::new(),
            next_seq,
            handed_off: last,
            durable: last,
            wanted: last,
            waiters: Slab::new(),
            flusher: None,
            flusher_running: false,
            flusher_gen: 0,
            failed: None,
            closed: false,
            snapshot_seq,
            snapshot_busy: Arc::default(),
        };
        let inner = Rc::new(Inner {
            st: RefCell::new(st),
            tx: RefCell::new(Some(tx)),
            writer: RefCell::new(Some(handle)),
            stats,
            closing,
            dir,
            shard,
            opts,
        });
        Ok((
            Journal {
                inner,
                _record: PhantomData,
            },
            recovered,
        ))
    }

    /// Encodes `record` into the current batch and returns its sequence
    /// number. Not durable until a [`commit`](Self::commit) covering it
    /// completes.
    pub fn append(&self, record: &R) -> Result<Seq, Error>
    where
        R: Encode,
    {
        let mut st = self.inner.st.borrow_mut();
        st.check_writable()?;
        let group_start = st.buf.is_empty();
        let start = frame::begin(&mut st.buf);
        if let Err(e) = rkyv::api::high::to_bytes_in::<_, rancor::Error>(record, &mut st.buf) {
            st.buf.truncate(start);
            return Err(Error::Encode(e));
        }
        self.finish(&mut st, start, group_start)
    }

    /// Appends an already encoded payload (for callers that encode
    /// themselves; [`crate::Record::access`] expects rkyv bytes of `R`).
    pub fn append_encoded(&self, payload: &[u8]) -> Result<Seq, Error> {
        let mut st = self.inner.st.borrow_mut();
        st.check_writable()?;
        let group_start = st.buf.is_empty();
        let start = frame::begin(&mut st.buf);
        st.buf.extend_from_slice(payload);
        self.finish(&mut st, start, group_start)
    }

    fn finish(&self, st: &mut State, start: usize, group_start: bool) -> Result<Seq, Error> {
        let seq = st.next_seq;
        let max = self.inner.opts.max_record_size;
        match frame::finish(&mut st.buf, start, seq, group_start, max) {
            Ok(_) => {
                st.next_seq += 1;
                JournalStats::bump(&self.inner.stats.appended, 1);
                Ok(seq)
            }
            Err(len) => Err(Error::RecordTooLarge {
                len,
                max: max.min(frame::MAX_PAYLOAD),
            }),
        }
    }

    /// A future that completes, with the sequence number it covers, once every
    /// record appended before this call is durable. Many commits share one
    /// batch and one fdatasync. Needs the journal's [`Flusher`] running on
    /// this thread; otherwise it fails with [`Error::NoFlusher`].
    pub fn commit(&self) -> Commit {
        let target = self.inner.st.borrow().next_seq - 1;
        Commit {
            inner: self.inner.clone(),
            target,
            slot: None,
        }
    }

    /// The task that moves batches to the writer thread. Spawn it once on the
    /// shard that owns the journal (`monoio::spawn(journal.flusher())`); it
    /// ends when the journal is closed or dropped, or after a write failure.
    ///
    /// # Panics
    /// If a flusher for this journal is already running.
    pub fn flusher(&self) -> Flusher {
        let mut st = self.inner.st.borrow_mut();
        assert!(!st.flusher_running, "a journal has exactly one flusher");
        st.flusher_running = true;
        st.flusher_gen += 1;
        let generation = st.flusher_gen;
        let weak = Rc::downgrade(&self.inner);
        Flusher {
            fut: Box::pin(run_flusher(weak.clone())),
            weak,
            generation,
        }
    }

    /// Makes every appended record durable, blocking the calling thread until
    /// it is (no flusher or async runtime needed: for tools, tests and
    /// benches, never on a shard's event loop). Returns the last sequence
    /// number it covers.
    pub fn commit_blocking(&self) -> Result<Seq, Error> {
        let (target, durable) = {
            let st = self.inner.st.borrow();
            if let Some(e) = &st.failed {
                return Err(Error::Poisoned(e.clone()));
            }
            (st.next_seq - 1, st.durable)
        };
        if durable >= target {
            return Ok(target);
        }
        if let Some((last, rx)) = self.inner.hand_off() {
            let res = futures::executor::block_on(rx);
            self.inner.complete(last, res);
        } else {
            // Our records are in the flusher's in-flight batch: the writer
            // answers a barrier after it.
            let (done, rx) = oneshot::channel();
            self.inner.send(Cmd::Barrier { done })?;
            let res = futures::executor::block_on(rx);
            let res = res.map(|r| r.map(|()| Vec::new()));
            self.inner.complete(target, res);
        }
        let st = self.inner.st.borrow();
        if st.durable >= target {
            Ok(target)
        } else {
            Err(st.failed.clone().map_or(Error::Closed, Error::Poisoned))
        }
    }

    /// Writes `bytes` as the snapshot of the shard's state after record `seq`
    /// (at most [`last_seq`](Self::last_seq)), on a helper thread: temp file,
    /// fdatasync, rename, directory fsync. Once durable, the previous
    /// snapshot and every segment the new one covers are removed. The future
    /// completes when all that is done; one snapshot at a time.
    ///
    /// `bytes` must be the state exactly as of record `seq` (capture both in
    /// the same tick). Records up to `seq` need not be committed yet: the
    /// snapshot makes their effect durable, and recovery replays only what
    /// follows it. Written off the writer thread, so commits are not held up
    /// by a large snapshot.
    pub fn write_snapshot<B>(&self, seq: Seq, bytes: B) -> SnapshotWrite
    where
        B: AsRef<[u8]> + Send + 'static,
    {
        let rx = self.start_snapshot(seq, bytes).map_err(|e| e.map(Box::new));
        SnapshotWrite { rx }
    }

    /// [`write_snapshot`](Self::write_snapshot) of `state` encoded with rkyv
    /// (on this thread).
    pub fn write_snapshot_of<S>(&self, seq: Seq, state: &S) -> SnapshotWrite
    where
        S: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
    {
        match rkyv::to_bytes::<rancor::Error>(state) {
            Ok(bytes) => self.write_snapshot(seq, bytes),
            Err(e) => SnapshotWrite {
                rx: Err(Some(Box::new(Error::Encode(e)))),
            },
        }
    }

    fn start_snapshot<B>(&self, seq: Seq, bytes: B) -> Result<SnapRx, Option<Error>>
    where
        B: AsRef<[u8]> + Send + 'static,
    {
        use std::sync::atomic::Ordering;
        let st = self.inner.st.borrow();
        st.check_writable().map_err(Some)?;
        let refuse = |reason| Err(Some(Error::Snapshot { seq, reason }));
        if seq >= st.next_seq {
            return refuse("beyond the last appended record");
        }
        if seq < st.snapshot_seq {
            return refuse("older than the current snapshot");
        }
        if st.snapshot_busy.swap(true, Ordering::AcqRel) {
            return refuse("another snapshot is still being written");
        }
        let busy = st.snapshot_busy.clone();
        drop(st);
        let tx = self
            .inner
            .tx
            .borrow()
            .clone()
            .ok_or(Some(Error::Closed))
            .inspect_err(|_| busy.store(false, Ordering::Release))?;
        let (done, rx) = oneshot::channel();
        let dir = self.inner.dir.clone();
        let sync = self.inner.opts.sync;
        let unpin = self.inner.opts.unpin_threads;
        let medium = self.inner.opts.medium.clone();
        let shard = self.inner.shard;
        let spawned = thread::Builder::new()
            .name(format!("journal-snap-{}", self.inner.shard))
            .spawn(move || {
                if unpin {
                    crate::threads::run_in_background();
                }
                let written = match &medium {
                    Medium::Files => snapshot::write(&dir, seq, bytes.as_ref(), sync),
                    Medium::Postgres(pg_opts) => {
                        pg::write_snapshot(pg_opts, shard, seq, bytes.as_ref())
                    }
                };
                match written {
                    Ok(()) => {
                        if let Err(mpsc::SendError(Cmd::Truncate { done, .. })) =
                            tx.send(Cmd::Truncate { seq, done })
                        {
                            let _ = done.send(Err(Error::Closed));
                        }
                    }
                    Err(e) => {
                        let _ = done.send(Err(e));
                    }
                }
                busy.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.inner
                .st
                .borrow()
                .snapshot_busy
                .store(false, Ordering::Release);
            return Err(Some(Error::io(
                "spawn snapshot thread for",
                &self.inner.dir,
                e,
            )));
        }
        self.inner.st.borrow_mut().snapshot_seq = seq;
        Ok(rx)
    }

    /// Sequence number of the last appended record (0 if none ever was).
    pub fn last_seq(&self) -> Seq {
        self.inner.st.borrow().next_seq - 1
    }

    /// Sequence number up to which every record is known durable.
    pub fn durable_seq(&self) -> Seq {
        self.inner.st.borrow().durable
    }

    /// Sequence number of the latest snapshot requested (0: none).
    pub fn snapshot_seq(&self) -> Seq {
        self.inner.st.borrow().snapshot_seq
    }

    /// The journal's counters (shareable with a metrics thread).
    pub fn stats(&self) -> &Arc<JournalStats> {
        &self.inner.stats
    }

    /// A copy of the counters now.
    pub fn stats_view(&self) -> StatsView {
        self.inner.stats.view()
    }

    /// The shard's journal directory (segments and snapshots on the file
    /// medium; only the lock file on PostgreSQL).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The medium batches go to.
    pub fn medium(&self) -> &Medium {
        &self.inner.opts.medium
    }

    /// Whether the medium takes writes now: false after a write failure on
    /// files (the journal is poisoned) and while PostgreSQL is unreachable
    /// (the writer retries; new changes should be refused until it is back).
    pub fn available(&self) -> bool {
        self.inner.st.borrow().failed.is_none()
            && self
                .inner
                .stats
                .available
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long callers should wait for a commit before answering
    /// "unavailable" (PostgreSQL's `commit_timeout`); `None` on files, where
    /// a commit either completes or fails.
    pub fn commit_timeout(&self) -> Option<std::time::Duration> {
        match &self.inner.opts.medium {
            Medium::Files => None,
            Medium::Postgres(o) => Some(o.commit_timeout),
        }
    }

    /// A reader of this journal's durable records, for another thread (see
    /// [`DurableReader::read`]).
    pub fn durable_reader(&self) -> DurableReader {
        DurableReader {
            dir: self.inner.dir.clone(),
            shard: self.inner.shard,
            medium: self.inner.opts.medium.clone(),
        }
    }

    /// Commits everything appended, stops the flusher and the writer thread
    /// and releases the directory lock. Other clones of this journal fail
    /// with [`Error::Closed`] afterwards.
    pub async fn close(self) -> Result<(), Error> {
        let running = self.inner.st.borrow().flusher_running;
        let committed = if running {
            self.commit().await.map(drop)
        } else {
            self.commit_blocking().map(drop)
        };
        {
            let mut st = self.inner.st.borrow_mut();
            st.closed = true;
            if let Some(w) = st.flusher.take() {
                w.wake();
            }
        }
        self.inner.shutdown();
        committed
    }
}

impl Inner {
    /// Sends a command to the writer thread.
    fn send(&self, cmd: Cmd) -> Result<(), Error> {
        let tx = self.tx.borrow();
        match tx.as_ref().map(|tx| tx.send(cmd)) {
            Some(Ok(())) => Ok(()),
            _ => Err(Error::Closed),
        }
    }

    /// Hands the current buffer to the writer. `None` when it is empty (or
    /// the writer is gone, which fails the journal).
    fn hand_off(&self) -> Option<(Seq, BatchRx)> {
        let (bytes, first, last) = {
            let mut st = self.st.borrow_mut();
            if st.buf.is_empty() {
                return None;
            }
            let mut next = std::mem::take(&mut st.spare);
            if next.capacity() == 0 {
                next.reserve(self.opts.batch_capacity);
            }
            let bytes = std::mem::replace(&mut st.buf, next);
            let first = st.handed_off + 1;
            let last = st.next_seq - 1;
            st.handed_off = last;
            (bytes, first, last)
        };
        JournalStats::bump(&self.stats.batches, 1);
        let (done, rx) = oneshot::channel();
        if let Err(e) = self.send(Cmd::Append {
            bytes,
            first,
            last,
            done,
        }) {
            self.complete(last, Ok(Err(Arc::new(e))));
            return None;
        }
        Some((last, rx))
    }

    /// Records the writer's answer for the batch ending at `last` and wakes
    /// the commits it completes.
    fn complete(&self, last: Seq, res: Result<Result<Vec<u8>, Arc<Error>>, oneshot::Canceled>) {
        let wakers = {
            let mut st = self.st.borrow_mut();
            match res {
                Ok(Ok(mut bytes)) => {
                    st.durable = st.durable.max(last);
                    if bytes.capacity() > st.spare.capacity() {
                        bytes.clear();
                        st.spare = bytes;
                    }
                    st.take_ready_wakers(false)
                }
                Ok(Err(e)) => {
                    st.failed.get_or_insert(e);
                    st.take_ready_wakers(true)
                }
                Err(oneshot::Canceled) => {
                    st.failed.get_or_insert_with(|| Arc::new(Error::Closed));
                    st.take_ready_wakers(true)
                }
            }
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Stops the writer thread (after it finishes what it was sent, or gives
    /// up on a medium that stays unreachable) and waits for it.
    fn shutdown(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
        drop(self.tx.borrow_mut().take());
        if let Some(handle) = self.writer.borrow_mut().take()
            && handle.join().is_err()
        {
            tracing::error!(dir = %self.dir.display(), "journal writer thread panicked");
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(w) = self.st.get_mut().flusher.take() {
            w.wake();
        }
        self.shutdown();
    }
}

type BatchRx = oneshot::Receiver<Result<Vec<u8>, Arc<Error>>>;
type SnapRx = oneshot::Receiver<Result<(), Error>>;

/// The flusher loop (see the module docs).
async fn run_flusher(weak: Weak<Inner>) {
    loop {
        let work = std::future::poll_fn(|cx| {
            let Some(inner) = weak.upgrade() else {
                return Poll::Ready(None);
            };
            let mut st = inner.st.borrow_mut();
            if st.failed.is_some() {
                return Poll::Ready(None);
            }
            if st.wanted > st.handed_off {
                st.flusher = None;
                drop(st);
                return Poll::Ready(Some(inner));
            }
            if st.closed {
                return Poll::Ready(None);
            }
            match &mut st.flusher {
                Some(w) => w.clone_from(cx.waker()),
                None => st.flusher = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await;
        let Some(inner) = work else { break };
        if let Some((last, rx)) = inner.hand_off() {
            let res = rx.await;
            inner.complete(last, res);
        }
    }
}

impl Inner {
    /// The flusher `generation` stopped: pending commits must not wait for it.
    fn flusher_stopped(&self, generation: u64) {
        let wakers = {
            let mut st = self.st.borrow_mut();
            if !st.flusher_running || st.flusher_gen != generation {
                return;
            }
            st.flusher_running = false;
            st.flusher = None;
            st.take_ready_wakers(true)
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// The journal's flusher task (see [`Journal::flusher`]).
#[must_use = "spawn the flusher on the shard that owns the journal"]
pub struct Flusher {
    fut: Pin<Box<dyn Future<Output = ()>>>,
    weak: Weak<Inner>,
    generation: u64,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Finished, or dropped with its runtime: either way it flushes no
        // more, and waiting commits fail instead of hanging.
        if let Some(inner) = self.weak.upgrade() {
            inner.flusher_stopped(self.generation);
        }
    }
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher").finish_non_exhaustive()
    }
}

impl Future for Flusher {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let done = self.fut.as_mut().poll(cx);
        if done.is_ready()
            && let Some(inner) = self.weak.upgrade()
        {
            inner.flusher_stopped(self.generation);
        }
        done
    }
}

/// Future returned by [`Journal::commit`].
#[derive(Debug)]
#[must_use = "a commit does nothing unless awaited"]
pub struct Commit {
    inner: Rc<Inner>,
    target: Seq,
    slot: Option<usize>,
}

impl Commit {
    /// The sequence number this commit waits for.
    pub fn seq(&self) -> Seq {
        self.target
    }
}

impl Future for Commit {
    type Output = Result<Seq, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Seq, Error>> {
        let this = self.get_mut();
        let mut st = this.inner.st.borrow_mut();
        let done = if st.durable >= this.target {
            Some(Ok(this.target))
        } else if let Some(e) = &st.failed {
            Some(Err(Error::Poisoned(e.clone())))
        } else if st.closed {
            Some(Err(Error::Closed))
        } else if !st.flusher_running {
            Some(Err(Error::NoFlusher))
        } else {
            None
        };
        if let Some(out) = done {
            if let Some(k) = this.slot.take() {
                st.waiters.remove(k);
            }
            return Poll::Ready(out);
        }
        match this.slot {
            Some(k) => match &mut st.waiters[k].waker {
                Some(w) => w.clone_from(cx.waker()),
                w @ None => *w = Some(cx.waker().clone()),
            },
            None => {
                this.slot = Some(st.waiters.insert(Waiter {
                    target: this.target,
                    waker: Some(cx.waker().clone()),
                }));
            }
        }
        if this.target > st.wanted {
            st.wanted = this.target;
            if this.target > st.handed_off
                && let Some(w) = st.flusher.take()
            {
                drop(st);
                w.wake();
            }
        }
        Poll::Pending
    }
}

impl Drop for Commit {
    fn drop(&mut self) {
        if let Some(k) = self.slot.take() {
            self.inner.st.borrow_mut().waiters.remove(k);
        }
    }
}

/// Future returned by [`Journal::write_snapshot`]: completes when the
/// snapshot is durable and what it covers has been removed.
#[derive(Debug)]
#[must_use = "a snapshot's outcome is only known by awaiting it"]
pub struct SnapshotWrite {
    // Boxed: `Error` is not `Unpin`.
    rx: Result<SnapRx, Option<Box<Error>>>,
}

impl Future for SnapshotWrite {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match &mut self.rx {
            Ok(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(Error::Closed))),
            Err(e) => Poll::Ready(Err(e.take().map_or(Error::Closed, |e| *e))),
        }
    }
}

/// Reads a journal's durable records from any thread, whatever its medium
/// (see [`Journal::durable_reader`]).
#[derive(Debug, Clone)]
pub struct DurableReader {
    dir: PathBuf,
    shard: usize,
    medium: Medium,
}

impl DurableReader {
    /// The latest snapshot and the records after it up to and including
    /// `upto`, which must be durable (at most
    /// [`Journal::durable_seq`]); nothing is changed. For building a
    /// snapshot off the shard thread while the journal keeps appending (see
    /// [`read_durable`](crate::read_durable)). On PostgreSQL it opens its
    /// own connection and reads in one repeatable-read transaction; call it
    /// from a plain thread, not from inside a tokio runtime.
    pub fn read<R>(&self, upto: Seq) -> Result<Recovered<R>, Error> {
        match &self.medium {
            Medium::Files => recovery::read_durable(&self.dir, upto),
            Medium::Postgres(opts) => read_durable_pg(opts, self.shard, upto),
        }
    }
}

fn read_durable_pg<R>(opts: &PgOptions, shard: usize, upto: Seq) -> Result<Recovered<R>, Error> {
    use sqlx::Connection;
    let loaded = pg::block_on(opts, async {
        let mut conn = pg::connect(opts).await?;
        let mut tx = conn
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| pg::pg_error(opts, "read the journal from", e))?;
        let loaded = pg::load::load(opts, &mut tx, shard, Some(upto)).await?;
        let _ = tx.commit().await;
        let _ = conn.close().await;
        Ok(loaded)
    })?;
    Ok(loaded.into_recovered())
}
