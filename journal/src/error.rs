//! The journal's error type.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::Seq;

/// Everything that can go wrong opening, appending to, committing or
/// snapshotting a journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
    #[error("journal I/O error: {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"open"`, `"write"`, `"fdatasync"`, ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Damage that recovery must not paper over: a record before the tail of
    /// the journal, a snapshot, or the sequence of segments is unreadable or
    /// inconsistent. Start-up stops here; nothing is truncated.
    #[error(
        "journal corrupt: {} at byte offset {offset}: {reason}. Acknowledged data cannot be read \
         past this point, so the shard refuses to start; restore the shard directory from a \
         backup, or move the damaged file aside to accept losing what follows it",
        file.display()
    )]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damaged frame (or header) within `file`.
        offset: u64,
        /// What exactly is wrong.
        reason: String,
    },
    /// Another journal (in this process or another) holds the directory's
    /// lock.
    #[error("journal directory {} is locked by another open journal", dir.display())]
    Locked {
        /// The shard's journal directory.
        dir: PathBuf,
    },
    /// rkyv could not serialize a record or snapshot.
    #[error("cannot encode journal record: {0}")]
    Encode(#[source] rkyv::rancor::Error),
    /// rkyv validation or deserialization of a recovered record or snapshot
    /// failed (the bytes passed their checksum, so the type does not match
    /// what was written).
    #[error("cannot decode journal record {seq}: {source}")]
    Decode {
        /// Sequence number of the record (0 for a snapshot).
        seq: Seq,
        /// What rkyv reported.
        #[source]
        source: rkyv::rancor::Error,
    },
    /// An encoded record is larger than `JournalOptions::max_record_size`.
    #[error("journal record of {len} bytes exceeds the {max}-byte limit")]
    RecordTooLarge {
        /// Encoded size of the record.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A snapshot was requested for a sequence number the journal cannot
    /// accept (beyond the last appended record, or older than the current
    /// snapshot), or while another snapshot is still being written.
    #[error("cannot snapshot at seq {seq}: {reason}")]
    Snapshot {
        /// The requested sequence number.
        seq: Seq,
        /// Why it was refused.
        reason: &'static str,
    },
    /// `commit` was awaited on a journal whose flusher is not running (see
    /// `Journal::flusher`).
    #[error("journal commit awaited but no flusher task is running for this journal")]
    NoFlusher,
    /// A PostgreSQL operation failed (the URL is shown without its
    /// password).
    #[error("PostgreSQL {op} failed ({url}): {source}")]
    Postgres {
        /// What was being done (`"connect"`, `"recover"`, `"commit"`, ...).
        op: &'static str,
        /// The server's URL, password removed.
        url: String,
        /// What sqlx reported.
        #[source]
        source: sqlx::Error,
    },
    /// Embedded migrations could not be applied.
    #[error("PostgreSQL migrations failed ({url}): {source}")]
    Migrate {
        /// The server's URL, password removed.
        url: String,
        /// What the migrator reported.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A PostgreSQL row of the journal is damaged or inconsistent (a frame
    /// fails its checksum, a gap between batches). Start-up stops here.
    #[error(
        "journal corrupt in PostgreSQL: {what}: {reason}. Acknowledged data cannot be read past \
         this point, so the shard refuses to start; restore the schema from a backup"
    )]
    CorruptRow {
        /// Which row (table, shard, key).
        what: String,
        /// What exactly is wrong.
        reason: String,
    },
    /// Another writer holds this shard's rows (another process with the same
    /// schema), or stored a different batch under the same sequence numbers.
    #[error("journal conflict in PostgreSQL: {0}")]
    Conflict(String),
    /// The journal was closed.
    #[error("journal is closed")]
    Closed,
    /// An earlier write or fdatasync failed. After a failed fdatasync the
    /// state of the page cache is unknown, so the journal refuses all further
    /// writes until the process restarts and recovers from disk.
    #[error("journal failed earlier and accepts no more writes: {0}")]
    Poisoned(Arc<Error>),
}

impl Error {
    /// Wraps an I/O error with what was being done to which path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds a [`Error::Corrupt`].
    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
