//! Journal configuration: batching limits and the medium batches go to.

use std::sync::Arc;
use std::time::Duration;

/// How a journal writes.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// A segment is closed and a new one started once it holds at least this
    /// many bytes (checked between batches: a batch is never split, so a
    /// segment can exceed it by one batch). Default 64 MiB. Files only.
    pub segment_size: u64,
    /// fdatasync every batch (and fsync the directory after creating,
    /// renaming or removing files). Default true. `false` is for tests and
    /// benches of the framing only: nothing is durable against power loss.
    /// Files only (PostgreSQL commits are as durable as the server makes them).
    pub sync: bool,
    /// Largest encoded record accepted by `append` (at most 1 GiB - 1).
    /// Default 16 MiB.
    pub max_record_size: usize,
    /// Initial capacity of the shard-side batch buffer. Default 64 KiB.
    pub batch_capacity: usize,
    /// Let the writer, snapshot and preallocator threads run on every core
    /// the process may use (snapshots and preallocation at the lowest
    /// priority), instead of inheriting the pinning of the shard thread that opened
    /// the journal. Default true.
    pub unpin_threads: bool,
    /// Keep one zero-filled spare segment of `segment_size` bytes ready,
    /// written by a background thread (nice 19, paced), and start each new
    /// segment from it: batches then overwrite blocks already written and
    /// synced, and an fdatasync has no file size to commit (on ext4 that
    /// saves a journal commit: ~30 % less fdatasync time, ADR-0013). Costs
    /// every segment byte written twice (once as zeros, off the commit
    /// path) and one more segment's worth of disk per journal. When no
    /// spare is ready at a rotation the new segment grows as it does
    /// without; the writer never waits. Default true. Files only.
    pub preallocate: bool,
    /// Where batches and snapshots go. Default: segment files.
    pub medium: Medium,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            segment_size: 64 << 20,
            sync: true,
            max_record_size: 16 << 20,
            batch_capacity: 64 << 10,
            unpin_threads: true,
            preallocate: true,
            medium: Medium::Files,
        }
    }
}

/// The storage a journal's writer thread makes batches durable in. Batching,
/// sequence numbers, commits, snapshots and recovery are the same for both.
#[derive(Debug, Clone, Default)]
pub enum Medium {
    /// Segment files and snapshot files in the shard's directory (one
    /// `write` + `fdatasync` per batch).
    #[default]
    Files,
    /// PostgreSQL: one transaction per batch (see the `pg` module).
    Postgres(PgOptions),
}

impl Medium {
    /// `"journal"` or `"postgres"`, as configuration and `/readyz` name it.
    pub fn name(&self) -> &'static str {
        match self {
            Medium::Files => "journal",
            Medium::Postgres(_) => "postgres",
        }
    }
}

/// Where and how a journal writes to PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connection URL, `postgres://user:password@host:port/database`.
    pub url: String,
    /// Schema that holds this node's tables (one schema per node: every
    /// shard's rows are keyed by shard number inside it). The connection's
    /// `search_path` is set to it; `migrate` creates it if missing. Must be a
    /// plain lower-case identifier (see [`PgOptions::validate_schema`]).
    pub schema: String,
    /// How long a caller should wait for a commit before answering
    /// "unavailable" (the journal does not enforce it: the shard owns the
    /// timer; a batch that outlives it still commits later). Default 2 s.
    pub commit_timeout: Duration,
    /// Limit for one connection attempt. Default 5 s.
    pub connect_timeout: Duration,
    /// Turns records into outbox rows written in the same transaction as
    /// their batch (`None`: no outbox rows).
    pub outbox: Option<Outbox>,
}

impl PgOptions {
    /// Options for `url` and `schema` with the default timeouts and no
    /// outbox.
    pub fn new(url: impl Into<String>, schema: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            schema: schema.into(),
            commit_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            outbox: None,
        }
    }

    /// Checks that `schema` is an identifier the journal can use unquoted:
    /// `[a-z_][a-z0-9_]*`, at most 63 bytes.
    pub fn validate_schema(schema: &str) -> Result<(), String> {
        let mut bytes = schema.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if first_ok && rest_ok && schema.len() <= 63 && !schema.starts_with("pg_") {
            Ok(())
        } else {
            Err(format!(
                "schema {schema:?} is not a plain identifier ([a-z_][a-z0-9_]*, at most 63 \
                 bytes, not starting with pg_)"
            ))
        }
    }
}

/// One outbox row: an event recorded in the same transaction as the record
/// that carries it, for a relay to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Position in the shard's event log (unique per shard).
    pub event_offset: u64,
    /// Globally unique event id (consumers are idempotent on it).
    pub event_id: String,
    /// Topic, e.g. `rayltics.orders`.
    pub topic: String,
    /// Partition key (the aggregate id).
    pub key: String,
    /// Event kind, e.g. `order.created`.
    pub kind: String,
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The encoded event.
    pub payload: Vec<u8>,
}

/// What a record means to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxEntry {
    /// An event: a new row.
    Event(OutboxRow),
    /// A relay published every event up to this offset: their rows are
    /// marked published (and deleted with the batches the next snapshot
    /// covers).
    Published {
        /// Last published offset.
        upto: u64,
    },
}

/// The caller's extractor of outbox entries: given a record's payload (the
/// bytes passed to `append`, 16-aligned), what it means to the outbox, if
/// anything. Runs on the writer thread, once per record.
#[derive(Clone)]
pub struct Outbox(Arc<ExtractFn>);

/// The extractor's type.
type ExtractFn = dyn Fn(&[u8]) -> Option<OutboxEntry> + Send + Sync;

impl Outbox {
    /// Wraps an extractor.
    pub fn new(f: impl Fn(&[u8]) -> Option<OutboxEntry> + Send + Sync + 'static) -> Self {
        Outbox(Arc::new(f))
    }

    /// Runs the extractor on one record payload.
    pub fn extract(&self, payload: &[u8]) -> Option<OutboxEntry> {
        (self.0)(payload)
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox(..)")
    }
}
