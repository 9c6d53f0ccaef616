//! Durable per-shard journal for rayltics.
//!
//! Each shard appends its state changes to its own journal in the data
//! directory and acknowledges a change only once it is on disk. Records are
//! rkyv-encoded and framed with their length, sequence number and a CRC32C;
//! one `write` + one `fdatasync` (on a writer thread, never on the shard's
//! event loop) covers every change a shard made during a tick (group commit).
//! Periodic snapshots bound recovery time and let old segments go; start-up
//! recovery loads the latest snapshot and replays the records after it.
//!
//! Batches go to one of two media ([`Medium`]): segment files in the data
//! directory (the embedded default), or PostgreSQL, where one batch is one
//! transaction (with the caller's outbox rows) and an outage is retried
//! rather than fatal (see [`pg`]).
//!
//! # Layout
//! - [`journal`](Journal): the shard-side handle: `append` (encode into the
//!   current batch), `commit` (await durability), the [`Flusher`] task that
//!   hands batches to the writer thread, snapshots, `close`.
//! - `writer`: the writer thread: one write + fdatasync per batch, segment
//!   rotation, removal of what a snapshot covers, poisoning on I/O errors.
//! - `prealloc`: the preallocator thread: keeps one zero-filled spare
//!   segment ready, so that batches overwrite instead of growing the file.
//! - [`pg`]: the PostgreSQL medium: its writer thread (tokio current-thread
//!   runtime + one connection, retries with backoff), recovery and durable
//!   reads from rows, [`pg::migrate`] (embedded `journal/migrations`).
//! - `recovery`: [`Recovered`] and the start-up scan: snapshot + segments,
//!   zero tails of preallocated segments, torn-tail truncation,
//!   [`Error::Corrupt`] for damage before the tail.
//! - `frame`: the record frame `[crc32c][len|flags][seq][payload][pad]`.
//! - [`Snapshot`]: the snapshot file format.
//! - `dir`: file names, directory listing, locking, directory fsync.
//! - [`threads`]: helper threads leave the shard's core; snapshot threads
//!   also drop to the lowest priority.
//! - [`JournalOptions`] (with [`Medium`], [`PgOptions`], [`Outbox`]),
//!   [`JournalStats`], [`Error`], [`DurableReader`].
//!
//! # Use on a shard
//! ```no_run
//! # async fn shard(data_dir: &std::path::Path) -> Result<(), rayltics_journal::Error> {
//! use rayltics_journal::{Journal, JournalOptions};
//!
//! #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
//! struct Sold { sku: u64, qty: u32 }
//!
//! let (journal, recovered) = Journal::<Sold>::open(data_dir, 0, JournalOptions::default())?;
//! for rec in recovered.records() {
//!     let sold = rec.access()?; // &ArchivedSold, validated, no copy
//!     let _ = (sold.sku, sold.qty);
//! }
//! drop(recovered);
//! monoio::spawn(journal.flusher());
//! // in a request handler:
//! journal.append(&Sold { sku: 7, qty: 1 })?;
//! journal.commit().await?; // durable: now answer the request
//! # Ok(()) }
//! ```
//!
//! # On disk
//! `DIR/shard-{id}/journal-{first_seq:020}.log` segments and
//! `DIR/shard-{id}/snapshot-{seq:020}.snap`; a snapshot at seq S contains the
//! effect of records `1..=S`, and segments whose records are all `<= S` are
//! removed once it is durable. A segment may end in zeros after its last
//! record (it was preallocated); `DIR/shard-{id}/spare.zero` is the next
//! one, ready.
//!
//! # In PostgreSQL
//! Tables `journal_batches(shard, first_seq, last_seq, frames)`,
//! `snapshots(shard, seq, bytes, checksum)` and `outbox(...)` in the node's
//! schema; `frames` holds exactly the bytes a segment would.

mod dir;
mod error;
mod frame;
mod journal;
mod options;
pub mod pg;
mod prealloc;
mod recovery;
mod snapshot;
mod stats;
pub mod threads;
mod writer;

pub use dir::shard_dir;
pub use error::Error;
pub use frame::MAX_PAYLOAD;
pub use journal::{Commit, DurableReader, Encode, Flusher, Journal, SnapshotWrite};
pub use options::{JournalOptions, Medium, Outbox, OutboxEntry, OutboxRow, PgOptions};
pub use recovery::{Record, Records, Recovered, TornTail, read_durable};
pub use snapshot::Snapshot;
pub use stats::{JournalStats, StatsView};

/// Sequence number of a record: 1 for the first record of a journal, then
/// consecutive. 0 means "none".
pub type Seq = u64;
