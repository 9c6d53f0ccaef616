//! A shard's store: its [`ShardData`] and the journal that makes it durable.
//!
//! Every change goes through [`Store::write`]: append to the journal's
//! current batch, apply to memory, and hand back the [`Commit`] to await
//! before answering. Changes are applied before they are durable (a reader
//! on the shard may see them a tick early), but nothing is acknowledged
//! before its commit completes, and the journal is ordered, so whatever an
//! acknowledged answer depends on is durable too. Owned by one shard.

use std::cell::{Cell, Ref, RefCell};
use std::path::Path;
use std::time::Instant;

use rayltics_journal::{Commit, Flusher, Journal, JournalOptions, Seq, StatsView};

use crate::change::Change;
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
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("last_seq", &self.journal.last_seq())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens shard `shard`'s journal under `root` and rebuilds its state:
    /// the latest snapshot, then every record after it.
    pub fn open(
        root: &Path,
        shard: usize,
        opts: JournalOptions,
        snapshot_every: u64,
    ) -> Result<(Self, RecoveryReport), rayltics_journal::Error> {
        let started = Instant::now();
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
    /// decision that produced them (no await in between).
    pub fn write(&self, changes: Vec<Change>) -> DomainResult<Commit> {
        for c in &changes {
            self.journal.append(c).map_err(unavailable)?;
        }
        let mut data = self.data.borrow_mut();
        for c in changes {
            data.apply(c);
        }
        Ok(self.journal.commit())
    }

    /// [`write`](Self::write) and wait until durable.
    pub async fn commit(&self, changes: Vec<Change>) -> DomainResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.write(changes)?.await.map_err(unavailable)?;
        Ok(())
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
        let dir = self.journal.dir().to_owned();
        let journal = self.journal.clone();
        let (tx, rx) = futures::channel::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("snapshot-build".into())
            .spawn(move || {
                let _ = tx.send(build_snapshot(&dir, upto));
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
/// from the journal directory (runs on a helper thread).
fn build_snapshot(dir: &Path, upto: Seq) -> Result<rkyv::util::AlignedVec, String> {
    let mut recovered =
        rayltics_journal::read_durable::<Change>(dir, upto).map_err(|e| e.to_string())?;
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

fn unavailable(e: rayltics_journal::Error) -> DomainError {
    tracing::error!(error = %e, "journal write failed");
    DomainError::Unavailable("the shard cannot make changes durable".into())
}
