//! The PostgreSQL writer thread: one per journal, the only code that writes
//! the shard's batch rows.
//!
//! It receives the same commands as the file writer and turns each batch
//! into one statement (one implicit transaction): the `journal_batches` row
//! and, in a data-modifying CTE, the batch's outbox rows. Batches arrive in
//! sequence order and the next is not taken before the current one commits.
//!
//! A failed attempt is not a poison here (a lost connection leaves nothing
//! half-written, and PostgreSQL's own durability is not in doubt): the
//! writer marks the medium unavailable, drops the connection, and retries
//! the same batch with backoff on a new one until it commits, then marks the
//! medium available again. Because the answer to a commit can be lost, a
//! retry that finds a row at its `first_seq` already compares it with its
//! own: the same batch means "already committed"; a different one is a
//! [`Error::Conflict`] (another writer), which does poison the journal, as
//! does a permanent error (bad data, a missing table). While the journal
//! closes, a batch that cannot be written is given up (it was never
//! acknowledged).
//!
//! Each connection takes the session advisory lock of (schema, shard), so two
//! processes never write the same shard's rows at once.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;
use sqlx::postgres::PgConnection;

use super::load::{self, Loaded};
use super::{ATTEMPT_TIMEOUT, MAX_BACKOFF, MIN_BACKOFF, pg_error, seq_key, shard_key, transient};
use crate::frame::ALIGN;
use crate::options::{OutboxEntry, OutboxRow, PgOptions};
use crate::stats::JournalStats;
use crate::writer::Cmd;
use crate::{Error, Seq};

/// The batch row and its outbox rows, in one statement.
const INSERT_BATCH: &str = "\
WITH b AS (
    INSERT INTO journal_batches (shard, first_seq, last_seq, frames)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (shard, first_seq) DO NOTHING
    RETURNING 1
), o AS (
    INSERT INTO outbox (shard, event_offset, event_id, topic, \"key\", kind, \"at\", payload, seq)
    SELECT $1, u.* FROM UNNEST($5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[],
                               $10::bigint[], $11::bytea[], $12::bigint[]) AS u
    WHERE EXISTS (SELECT 1 FROM b)
), p AS (
    UPDATE outbox SET published = true
    WHERE shard = $1 AND event_offset <= $13 AND NOT published AND EXISTS (SELECT 1 FROM b)
)
SELECT count(*) FROM b";

/// How long start-up waits for the shard's advisory lock before it reports
/// a conflict.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// How one attempt failed.
enum Attempt {
    /// Worth retrying on a new connection.
    Retry(Error),
    /// Retrying cannot help.
    Fatal(Error),
}

/// The outbox rows of one batch, as column arrays.
#[derive(Debug, Default)]
struct OutboxCols {
    offsets: Vec<i64>,
    ids: Vec<String>,
    topics: Vec<String>,
    keys: Vec<String>,
    kinds: Vec<String>,
    ats: Vec<i64>,
    payloads: Vec<Vec<u8>>,
    seqs: Vec<i64>,
    /// The highest "published up to" offset the batch records (0: none).
    published_upto: i64,
}

impl OutboxCols {
    fn push(&mut self, seq: Seq, row: OutboxRow) {
        self.offsets.push(seq_key(row.event_offset));
        self.ids.push(row.event_id);
        self.topics.push(row.topic);
        self.keys.push(row.key);
        self.kinds.push(row.kind);
        self.ats.push(row.at_ms);
        self.payloads.push(row.payload);
        self.seqs.push(seq_key(seq));
    }
}

/// State of the PostgreSQL writer thread.
pub(crate) struct PgWriter {
    opts: PgOptions,
    shard: usize,
    stats: Arc<JournalStats>,
    closing: Arc<AtomicBool>,
    conn: Option<PgConnection>,
    snapshot_seq: Seq,
    failed: Option<Arc<Error>>,
    /// Set while a failure streak lasts (logged once at its start and end).
    down_since: Option<Instant>,
    /// Holds the data directory's shard lock for as long as the journal is
    /// open (one process per data directory, whatever the medium).
    _lock: File,
    dir: PathBuf,
}

impl std::fmt::Debug for PgWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWriter")
            .field("shard", &self.shard)
            .field("schema", &self.opts.schema)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl PgWriter {
    pub(crate) fn new(
        opts: PgOptions,
        shard: usize,
        stats: Arc<JournalStats>,
        closing: Arc<AtomicBool>,
        lock: File,
        dir: PathBuf,
    ) -> Self {
        PgWriter {
            opts,
            shard,
            stats,
            closing,
            conn: None,
            snapshot_seq: 0,
            failed: None,
            down_since: None,
            _lock: lock,
            dir,
        }
    }

    /// Connects (failing fast: this is start-up), takes the shard's lock,
    /// reads what recovery needs and finishes a truncation a crash
    /// interrupted.
    pub(crate) async fn start(&mut self) -> Result<Loaded, Error> {
        let mut conn = super::connect(&self.opts).await?;
        super::require_tables(&self.opts, &mut conn).await?;
        // A session that just ended (this process's previous journal, a
        // node killed a moment ago) keeps the lock until the server has
        // noticed: wait for that a little before calling it a conflict.
        let deadline = Instant::now() + LOCK_WAIT;
        while !self.try_lock(&mut conn).await? {
            if Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            return Err(Error::Conflict(format!(
                "shard {} of schema {:?} is held by another process (advisory lock); two nodes \
                 must not share a schema",
                self.shard, self.opts.schema
            )));
        }
        let loaded = load::load(&self.opts, &mut conn, self.shard, None).await?;
        self.snapshot_seq = loaded.snapshot_seq;
        if loaded.snapshot_seq > 0 {
            self.delete_covered(&mut conn, loaded.snapshot_seq)
                .await
                .map_err(|e| pg_error(&self.opts, "remove what the snapshot covers in", e))?;
        }
        tracing::info!(
            shard = self.shard,
            schema = %self.opts.schema,
            snapshot_seq = loaded.snapshot_seq,
            records = loaded.records,
            next_seq = loaded.next_seq,
            "journal recovered from PostgreSQL"
        );
        self.conn = Some(conn);
        Ok(loaded)
    }

    /// Serves commands until every sender is gone.
    pub(crate) fn run(mut self, rt: &tokio::runtime::Runtime, rx: Receiver<Cmd>) {
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Cmd::Append {
                    bytes,
                    first,
                    last,
                    done,
                } => {
                    let r = rt
                        .block_on(self.append(&bytes, first, last))
                        .map(|()| bytes);
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
                    let _ = done.send(rt.block_on(self.truncate(seq)));
                }
            }
        }
        if let Some(conn) = self.conn.take() {
            let _ = rt.block_on(sqlx::Connection::close(conn));
        }
        tracing::debug!(dir = %self.dir.display(), "journal writer (PostgreSQL) stopped");
    }

    /// Commits one batch, retrying until it is in (or the journal closes, or
    /// a permanent error).
    async fn append(&mut self, bytes: &[u8], first: Seq, last: Seq) -> Result<(), Arc<Error>> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let outbox = self.outbox_rows(bytes);
        let started = Instant::now();
        let mut backoff = MIN_BACKOFF;
        loop {
            match self.try_append(bytes, first, last, &outbox).await {
                Ok(()) => {
                    JournalStats::bump(&self.stats.writes, 1);
                    JournalStats::bump(&self.stats.bytes_written, bytes.len() as u64);
                    JournalStats::bump(&self.stats.fdatasyncs, 1);
                    JournalStats::bump(
                        &self.stats.fdatasync_micros,
                        started.elapsed().as_micros() as u64,
                    );
                    self.mark_up();
                    return Ok(());
                }
                Err(Attempt::Fatal(e)) => {
                    tracing::error!(
                        shard = self.shard, error = %e,
                        "journal writer (PostgreSQL) failed; refusing further writes"
                    );
                    let e = Arc::new(e);
                    self.failed = Some(e.clone());
                    self.stats.available.store(false, Ordering::Relaxed);
                    return Err(e);
                }
                Err(Attempt::Retry(e)) => {
                    self.mark_down(&e);
                    if self.closing.load(Ordering::Acquire) {
                        tracing::warn!(
                            shard = self.shard,
                            first,
                            last,
                            "journal closing while PostgreSQL is unreachable: giving up an \
                             unacknowledged batch"
                        );
                        return Err(Arc::new(Error::Closed));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn try_append(
        &mut self,
        bytes: &[u8],
        first: Seq,
        last: Seq,
        o: &OutboxCols,
    ) -> Result<(), Attempt> {
        let shard = shard_key(self.shard);
        let opts = self.opts.clone();
        let conn = self.connection().await?;
        let insert = sqlx::query_scalar::<_, i64>(INSERT_BATCH)
            .bind(shard)
            .bind(seq_key(first))
            .bind(seq_key(last))
            .bind(bytes)
            .bind(&o.offsets)
            .bind(&o.ids)
            .bind(&o.topics)
            .bind(&o.keys)
            .bind(&o.kinds)
            .bind(&o.ats)
            .bind(&o.payloads)
            .bind(&o.seqs)
            .bind(o.published_upto)
            .fetch_one(&mut *conn);
        let inserted = match tokio::time::timeout(ATTEMPT_TIMEOUT, insert).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(self.classify("commit a batch to", e)),
            Err(_) => return Err(self.attempt_timed_out()),
        };
        if inserted == 1 {
            return Ok(());
        }
        // A row is already there: ours, if the answer to an earlier commit
        // was lost; anyone else's is a conflict.
        let same = sqlx::query_as::<_, (i64, bool)>(
            "SELECT last_seq, frames = $3 FROM journal_batches WHERE shard = $1 AND first_seq = $2",
        )
        .bind(shard)
        .bind(seq_key(first))
        .bind(bytes)
        .fetch_optional(&mut *conn);
        match tokio::time::timeout(ATTEMPT_TIMEOUT, same).await {
            Ok(Ok(Some((l, true)))) if l == seq_key(last) => {
                tracing::info!(
                    shard = self.shard,
                    first,
                    last,
                    "batch found already committed (the answer to its commit was lost)"
                );
                Ok(())
            }
            Ok(Ok(_)) => Err(Attempt::Fatal(Error::Conflict(format!(
                "schema {:?} already holds a different batch at record {first} of shard {}: \
                 another process writes this shard",
                opts.schema, self.shard
            )))),
            Ok(Err(e)) => Err(self.classify("check a batch in", e)),
            Err(_) => Err(self.attempt_timed_out()),
        }
    }

    /// The connection, opened (with the shard's advisory lock) if needed.
    async fn connection(&mut self) -> Result<&mut PgConnection, Attempt> {
        if self.conn.is_none() {
            let mut conn = super::connect(&self.opts).await.map_err(Attempt::Retry)?;
            match self.try_lock(&mut conn).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Attempt::Retry(Error::Conflict(format!(
                        "shard {} of schema {:?} is locked by another session (a previous \
                         connection not yet closed by the server, or another process)",
                        self.shard, self.opts.schema
                    ))));
                }
                Err(e) => return Err(Attempt::Retry(e)),
            }
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Attempt::Retry(Error::Closed))
    }

    /// Takes the session advisory lock of (schema, shard).
    async fn try_lock(&self, conn: &mut PgConnection) -> Result<bool, Error> {
        sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock(hashtext($1), $2)")
            .bind(&self.opts.schema)
            .bind(shard_key(self.shard))
            .fetch_one(conn)
            .await
            .map_err(|e| pg_error(&self.opts, "lock the shard in", e))
    }

    fn classify(&mut self, op: &'static str, e: sqlx::Error) -> Attempt {
        if transient(&e) {
            self.conn = None;
            Attempt::Retry(pg_error(&self.opts, op, e))
        } else {
            Attempt::Fatal(pg_error(&self.opts, op, e))
        }
    }

    fn attempt_timed_out(&mut self) -> Attempt {
        self.conn = None;
        Attempt::Retry(pg_error(
            &self.opts,
            "commit a batch to",
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
            )),
        ))
    }

    fn mark_down(&mut self, e: &Error) {
        JournalStats::bump(&self.stats.retries, 1);
        self.stats.available.store(false, Ordering::Relaxed);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(
                shard = self.shard, error = %e,
                "PostgreSQL unavailable: refusing new writes, retrying the pending batch"
            );
        } else {
            tracing::debug!(shard = self.shard, error = %e, "PostgreSQL still unavailable");
        }
    }

    fn mark_up(&mut self) {
        if let Some(since) = self.down_since.take() {
            tracing::info!(
                shard = self.shard,
                down_ms = since.elapsed().as_millis() as u64,
                "PostgreSQL available again"
            );
        }
        self.stats.available.store(true, Ordering::Relaxed);
    }

    /// Runs the caller's extractor over every record of the batch.
    fn outbox_rows(&self, bytes: &[u8]) -> OutboxCols {
        let mut cols = OutboxCols::default();
        let Some(outbox) = &self.opts.outbox else {
            return cols;
        };
        let mut aligned = AlignedVec::<16>::new();
        for (seq, payload) in load::payloads(bytes) {
            let payload = if (payload.as_ptr() as usize).is_multiple_of(ALIGN) {
                payload
            } else {
                aligned.clear();
                aligned.extend_from_slice(payload);
                &aligned[..]
            };
            match outbox.extract(payload) {
                Some(OutboxEntry::Event(row)) => cols.push(seq, row),
                Some(OutboxEntry::Published { upto }) => {
                    cols.published_upto = cols.published_upto.max(seq_key(upto));
                }
                None => {}
            }
        }
        cols
    }

    /// A snapshot for `seq` is stored: drop the batches and snapshots it
    /// covers. A failure leaves them for the next snapshot (recovery ignores
    /// them) and does not poison the journal.
    async fn truncate(&mut self, seq: Seq) -> Result<(), Error> {
        JournalStats::bump(&self.stats.snapshots, 1);
        let shard = shard_key(self.shard);
        if seq < self.snapshot_seq {
            // Overtaken by a newer snapshot: this one is redundant.
            let conn = self.connection().await.map_err(Attempt::into_error)?;
            return sqlx::query("DELETE FROM snapshots WHERE shard = $1 AND seq = $2")
                .bind(shard)
                .bind(seq_key(seq))
                .execute(conn)
                .await
                .map(drop)
                .map_err(|e| pg_error(&self.opts, "remove a snapshot from", e));
        }
        self.snapshot_seq = seq;
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => {
                self.connection().await.map_err(Attempt::into_error)?;
                self.conn.take().ok_or(Error::Closed)?
            }
        };
        let r = self.delete_covered(&mut conn, seq).await;
        match r {
            Ok(()) => {
                self.conn = Some(conn);
                Ok(())
            }
            Err(e) => {
                if !transient(&e) {
                    self.conn = Some(conn);
                }
                Err(pg_error(&self.opts, "remove what a snapshot covers in", e))
            }
        }
    }

    /// Deletes the batches and older snapshots that the snapshot at `seq`
    /// covers, and the published outbox rows they carried, in one statement.
    async fn delete_covered(&self, conn: &mut PgConnection, seq: Seq) -> Result<(), sqlx::Error> {
        sqlx::query(
            "WITH b AS (DELETE FROM journal_batches WHERE shard = $1 AND last_seq <= $2), \
             s AS (DELETE FROM snapshots WHERE shard = $1 AND seq < $2), \
             o AS (DELETE FROM outbox WHERE shard = $1 AND published AND seq <= $2) SELECT 1",
        )
        .bind(shard_key(self.shard))
        .bind(seq_key(seq))
        .execute(conn)
        .await
        .map(drop)
    }
}

impl Attempt {
    fn into_error(self) -> Error {
        match self {
            Attempt::Retry(e) | Attempt::Fatal(e) => e,
        }
    }
}
