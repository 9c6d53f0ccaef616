//! A shard's store: its [`ShardData`] and the journal that makes it durable.
//!
//! Every change goes through [`Store::write`]: append to the journal's
//! current batch, apply to memory, and hand back the [`StoreCommit`] to
//! await before answering. Changes are applied before they are durable (a
//! reader on the shard may see them a tick early), but nothing is
//! acknowledged before its commit completes, and the journal is ordered, so
//! whatever an acknowledged answer depends on is durable too. Owned by one
//! shard.
//!
//! The journal's medium is segment files (the embedded default) or
//! PostgreSQL (`storage = "postgres"`): the same batches, then one
//! transaction each, with the batch's events written to the `outbox` table
//! in that transaction (see [`outbox_row`]). On PostgreSQL the store refuses
//! new changes with [`DomainError::Unavailable`] while the server is
//! unreachable (before applying anything), and a commit waits at most the
//! medium's `commit_timeout` before answering `Unavailable`; such a batch
//! still commits once the server is back (the client, as after any timeout,
//! does not know).

use std::cell::{Cell, Ref, RefCell};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rayltics_journal::{
    Commit, DurableReader, Flusher, Journal, JournalOptions, Medium, Outbox, OutboxEntry,
    OutboxRow, Seq, StatsView,
};

use crate::change::{ArchivedChange, Change};
use crate::error::{DomainError, DomainResult};
use crate::state::{Durable, ShardData};

/// What recovery found, for the start-up log line.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryReport {
    /// Sequence number of the snapshot loaded (0: none).
    pub snapshot_seq: Seq,
    /// Records replayed after it.
    pub replayed: usize,
    /// Bytes cut off a torn tail.
    pub torn_bytes: u64,
    /// Time spent, milliseconds.
    pub elapsed_ms: u128,
}

/// A shard's state and journal.
pub struct Store {
    data: RefCell<ShardData>,
    journal: Journal<Change>,
    /// Write a snapshot once this many records follow the last one.
    snapshot_every: u64,
    snapshot_busy: Cell<bool>,
    /// How long a commit may wait before answering unavailable (PostgreSQL).
    commit_timeout: Option<Duration>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("last_seq", &self.journal.last_seq())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens shard `shard`'s journal under `root` (or in PostgreSQL, as
    /// `opts.medium` says) and rebuilds its state: the latest snapshot, then
    /// every record after it. On PostgreSQL without an outbox extractor of
    /// its own, the store's ([`outbox_row`]) is used.
    pub fn open(
        root: &Path,
        shard: usize,
        mut opts: JournalOptions,
        snapshot_every: u64,
    ) -> Result<(Self, RecoveryReport), rayltics_journal::Error> {
        let started = Instant::now();
        if let Medium::Postgres(pg) = &mut opts.medium
            && pg.outbox.is_none()
        {
            pg.outbox = Some(Outbox::new(outbox_row));
        }
        let (journal, mut recovered) = Journal::<Change>::open(root, shard, opts)?;
        let (mut data, snapshot_seq) = match recovered.take_snapshot() {
            Some(snap) => (
                ShardData::from_durable(snap.deserialize::<Durable>()?),
                snap.seq(),
            ),
            None => (ShardData::new(), 0),
        };
        let replayed = replay(&recovered, &mut data)?;
        let torn_bytes = recovered.torn_tail().map_or(0, |t| t.discarded);
        let report = RecoveryReport {
            snapshot_seq,
            replayed,
            torn_bytes,
            elapsed_ms: started.elapsed().as_millis(),
        };
        Ok((
            Store {
                data: RefCell::new(data),
                commit_timeout: journal.commit_timeout(),
                journal,
                snapshot_every: snapshot_every.max(1),
                snapshot_busy: Cell::new(false),
            },
            report,
        ))
    }

    /// Reads the state. Do not hold the borrow across an await.
    pub fn read(&self) -> Ref<'_, ShardData> {
        self.data.borrow()
    }

    /// Appends `changes` to the journal, applies them, and returns the
    /// commit to await before acknowledging. Call in the same tick as the
    /// decision that produced them (no await in between). Refuses (changing
    /// nothing) while the journal's medium is unavailable.
    pub fn write(&self, changes: Vec<Change>) -> DomainResult<StoreCommit> {
        if !self.journal.available() {
            return Err(DomainError::Unavailable(format!(
                "the {} store is unreachable; retry later",
                self.journal.medium().name()
            )));
        }
        for c in &changes {
            self.journal.append(c).map_err(unavailable)?;
        }
        let mut data = self.data.borrow_mut();
        for c in changes {
            data.apply(c);
        }
        Ok(StoreCommit {
            commit: self.journal.commit(),
            timeout: self.commit_timeout,
            deadline: None,
        })
    }

    /// [`write`](Self::write) and wait until durable.
    pub async fn commit(&self, changes: Vec<Change>) -> DomainResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write(changes)?.await?;
        Ok(())
    }

    /// Whether the store takes changes now (see [`Journal::available`]).
    pub fn available(&self) -> bool {
        self.journal.available()
    }

    /// The task that hands batches to the journal's writer thread; spawn it
    /// on the shard.
    pub fn flusher(&self) -> Flusher {
        self.journal.flusher()
    }

    /// Journal counters.
    pub fn journal_stats(&self) -> StatsView {
        self.journal.stats_view()
    }

    /// The journal's live counters (for `/metrics`).
    pub fn journal_counters(&self) -> std::sync::Arc<rayltics_journal::JournalStats> {
        self.journal.stats().clone()
    }

    /// A snapshot when enough durable records followed the last one and
    /// none is being made: the returned future (spawn it on the shard)
    /// rebuilds the state as of the latest durable record on a helper
    /// thread (previous snapshot + journal, read-only), serialises it there,
    /// then writes it; the shard thread never pauses for it. Call
    /// [`snapshot_done`](Self::snapshot_done) when it completes.
    pub fn snapshot_if_due(
        &self,
    ) -> Option<impl std::future::Future<Output = Result<(), String>> + 'static> {
        let upto = self.journal.durable_seq();
        if self.snapshot_busy.get() || upto < self.journal.snapshot_seq() + self.snapshot_every {
            return None;
        }
        self.snapshot_busy.set(true);
        let reader = self.journal.durable_reader();
        let journal = self.journal.clone();
        let (tx, rx) = futures::channel::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("snapshot-build".into())
            .spawn(move || {
                rayltics_journal::threads::run_in_background();
                let _ = tx.send(build_snapshot(&reader, upto));
            });
        Some(async move {
            spawned.map_err(|e| format!("cannot start the snapshot thread: {e}"))?;
            let bytes = rx
                .await
                .map_err(|_| "the snapshot thread died".to_owned())??;
            journal
                .write_snapshot(upto, bytes)
                .await
                .map_err(|e| e.to_string())
        })
    }

    /// Marks the snapshot started by [`snapshot_if_due`](Self::snapshot_if_due) finished.
    pub fn snapshot_done(&self) {
        self.snapshot_busy.set(false);
    }

    /// Flushes and closes the journal (on stop).
    pub async fn close(self) -> Result<(), rayltics_journal::Error> {
        self.journal.close().await
    }
}

/// The rkyv image of the shard's durable state as of record `upto`, rebuilt
/// from the journal's durable records (runs on a helper thread).
fn build_snapshot(reader: &DurableReader, upto: Seq) -> Result<rkyv::util::AlignedVec, String> {
    let mut recovered = reader.read::<Change>(upto).map_err(|e| e.to_string())?;
    let mut data = match recovered.take_snapshot() {
        Some(snap) => {
            ShardData::from_durable(snap.deserialize::<Durable>().map_err(|e| e.to_string())?)
        }
        None => ShardData::new(),
    };
    replay(&recovered, &mut data).map_err(|e| e.to_string())?;
    rkyv::to_bytes::<rkyv::rancor::Error>(data.durable()).map_err(|e| e.to_string())
}

/// Records decoded per hand-off from the decoding thread.
const REPLAY_BATCH: usize = 4096;

/// Replays every recovered record into `data`: a scoped thread decodes
/// (validates and deserializes) batches of records while this thread applies
/// the previous batch, so start-up costs about the larger of the two.
fn replay(
    recovered: &rayltics_journal::Recovered<Change>,
    data: &mut ShardData,
) -> Result<usize, rayltics_journal::Error> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Change>>(4);
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || -> Result<(), rayltics_journal::Error> {
            let mut batch = Vec::with_capacity(REPLAY_BATCH);
            for rec in recovered.records() {
                batch.push(rec.deserialize()?);
                if batch.len() == REPLAY_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(REPLAY_BATCH));
                    if tx.send(full).is_err() {
                        return Ok(());
                    }
                }
            }
            let _ = tx.send(batch);
            Ok(())
        });
        let mut replayed = 0;
        for batch in rx {
            replayed += batch.len();
            for change in batch {
                data.apply(change);
            }
        }
        match decoder.join() {
            Ok(result) => result.map(|()| replayed),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// What a journal record means to the PostgreSQL outbox: [`Change::Event`]
/// records become rows and [`Change::EventsPublished`] marks them published
/// (read from the archived bytes, no deserialization); every other change
/// means nothing.
pub fn outbox_row(payload: &[u8]) -> Option<OutboxEntry> {
    let change = rkyv::access::<ArchivedChange, rkyv::rancor::Error>(payload).ok()?;
    match change {
        ArchivedChange::EventsPublished { upto } => Some(OutboxEntry::Published {
            upto: upto.to_native(),
        }),
        ArchivedChange::Event(e) => Some(OutboxEntry::Event(OutboxRow {
            event_offset: e.offset.to_native(),
            event_id: e.id.as_str().to_owned(),
            topic: e.topic.as_str().to_owned(),
            key: e.key.as_str().to_owned(),
            kind: e.kind.as_str().to_owned(),
            at_ms: e.at.to_native(),
            payload: e.payload.as_slice().to_vec(),
        })),
        _ => None,
    }
}

/// Future returned by [`Store::write`]: completes once the changes are
/// durable, or with [`DomainError::Unavailable`] when the journal fails or
/// (PostgreSQL) the commit takes longer than the medium's commit timeout.
#[must_use = "a commit does nothing unless awaited"]
pub struct StoreCommit {
    commit: Commit,
    timeout: Option<Duration>,
    deadline: Option<Pin<Box<monoio::time::Sleep>>>,
}

impl std::fmt::Debug for StoreCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCommit")
            .field("seq", &self.commit.seq())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl StoreCommit {
    /// The journal sequence number this commit waits for.
    pub fn seq(&self) -> Seq {
        self.commit.seq()
    }
}

impl Future for StoreCommit {
    type Output = DomainResult<Seq>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DomainResult<Seq>> {
        if let Poll::Ready(r) = Pin::new(&mut self.commit).poll(cx) {
            return Poll::Ready(r.map_err(unavailable));
        }
        let Some(timeout) = self.timeout else {
            return Poll::Pending;
        };
        // The timer starts at the first poll that finds the commit pending
        // (the common case completes without one).
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(monoio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::warn!(
                    seq = self.commit.seq(),
                    timeout_ms = timeout.as_millis() as u64,
                    "commit timed out; the batch will still commit once the store is back"
                );
                Poll::Ready(Err(DomainError::Unavailable(format!(
                    "the store did not confirm the change within {} ms; it may still be applied",
                    timeout.as_millis()
                ))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn unavailable(e: rayltics_journal::Error) -> DomainError {
    tracing::error!(error = %e, "journal write failed");
    DomainError::Unavailable("the shard cannot make changes durable".into())
}
