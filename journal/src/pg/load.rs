//! Reading a shard's journal back from PostgreSQL: the latest snapshot and
//! the batches after it, verified frame by frame and concatenated into one
//! 16-aligned buffer, so [`Recovered`] hands out records exactly as it does
//! for segment files.
//!
//! A transaction commits whole, so there is no torn tail here: any frame
//! that fails its checksum, a batch whose frames do not match its
//! `first_seq..=last_seq`, or a gap between batches is
//! [`Error::CorruptRow`].

use futures::TryStreamExt;
use rkyv::util::AlignedVec;
use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::{pg_error, seq_key, shard_key};
use crate::frame::{self, HEADER_LEN};
use crate::options::PgOptions;
use crate::recovery::Recovered;
use crate::snapshot::Snapshot;
use crate::{Error, Seq};

/// What was read: snapshot + verified frames after it.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) snapshot: Option<Snapshot>,
    /// Frames of records `snapshot_seq + 1 .. next_seq`, back to back.
    pub(crate) frames: AlignedVec,
    pub(crate) records: usize,
    pub(crate) snapshot_seq: Seq,
    pub(crate) next_seq: Seq,
}

impl Loaded {
    /// The application's view of what was read.
    pub(crate) fn into_recovered<R>(self) -> Recovered<R> {
        Recovered::from_buffer(
            self.snapshot,
            self.frames,
            self.snapshot_seq + 1,
            self.records,
            self.next_seq,
        )
    }
}

/// Reads shard `shard`: the latest snapshot (at most `upto` when given) and
/// the records after it (up to `upto` when given, which must then all be
/// present).
pub(crate) async fn load(
    opts: &PgOptions,
    conn: &mut PgConnection,
    shard: usize,
    upto: Option<Seq>,
) -> Result<Loaded, Error> {
    let key = shard_key(shard);
    let snap_row = sqlx::query(
        "SELECT seq, bytes, checksum FROM snapshots WHERE shard = $1 AND seq <= $2 \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(key)
    .bind(seq_key(upto.unwrap_or(Seq::MAX)))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| pg_error(opts, "read the snapshot from", e))?;
    let snapshot = match snap_row {
        Some(row) => Some(snapshot_of(opts, shard, &row)?),
        None => None,
    };
    let snapshot_seq = snapshot.as_ref().map_or(0, Snapshot::seq);

    let mut frames = AlignedVec::<16>::new();
    let mut records = 0usize;
    // Sequence number of the next record to take.
    let mut next = snapshot_seq + 1;
    let mut rows = sqlx::query(
        "SELECT first_seq, last_seq, frames FROM journal_batches \
         WHERE shard = $1 AND last_seq > $2 AND first_seq <= $3 ORDER BY first_seq",
    )
    .bind(key)
    .bind(seq_key(snapshot_seq))
    .bind(seq_key(upto.unwrap_or(Seq::MAX)))
    .fetch(&mut *conn);
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|e| pg_error(opts, "read the journal from", e))?
    {
        let first = seq_of(opts, &row, 0)?;
        let last = seq_of(opts, &row, 1)?;
        let bytes: &[u8] = row
            .try_get(2)
            .map_err(|e| pg_error(opts, "read the journal from", e))?;
        let what = || format!("journal_batches shard {shard} first_seq {first}");
        if first > next {
            return Err(Error::CorruptRow {
                what: what(),
                reason: format!("records {next}..={} are missing", first - 1),
            });
        }
        if first < next && next > snapshot_seq + 1 {
            return Err(Error::CorruptRow {
                what: what(),
                reason: format!(
                    "overlaps the previous batch, which ends at record {}",
                    next - 1
                ),
            });
        }
        let (mut off, mut seq) = (0usize, first);
        while off < bytes.len() {
            let f = frame::decode(bytes, off).map_err(|e| Error::CorruptRow {
                what: what(),
                reason: format!("{e} in record {seq} at byte {off}"),
            })?;
            if f.seq != seq {
                return Err(Error::CorruptRow {
                    what: what(),
                    reason: format!("record {} at byte {off} where {seq} was expected", f.seq),
                });
            }
            let wanted = seq >= next && upto.is_none_or(|u| seq <= u);
            if wanted {
                frames.extend_from_slice(&bytes[off..off + f.total_len()]);
                records += 1;
                next = seq + 1;
            }
            off += f.total_len();
            seq += 1;
        }
        if seq != last + 1 {
            return Err(Error::CorruptRow {
                what: what(),
                reason: format!(
                    "last_seq is {last}, but the frames end at record {}",
                    seq - 1
                ),
            });
        }
        if upto.is_some_and(|u| last >= u) {
            break;
        }
    }
    drop(rows);
    if let Some(u) = upto
        && next <= u
    {
        return Err(Error::CorruptRow {
            what: format!("journal_batches shard {shard}"),
            reason: format!("durable records end at {}, before {u}", next - 1),
        });
    }
    Ok(Loaded {
        snapshot,
        frames,
        records,
        snapshot_seq,
        next_seq: next,
    })
}

fn seq_of(opts: &PgOptions, row: &sqlx::postgres::PgRow, i: usize) -> Result<Seq, Error> {
    let v: i64 = row
        .try_get(i)
        .map_err(|e| pg_error(opts, "read the journal from", e))?;
    Seq::try_from(v).map_err(|_| Error::CorruptRow {
        what: "journal_batches".into(),
        reason: format!("negative sequence number {v}"),
    })
}

/// Verifies and copies a snapshot row into a 16-aligned buffer.
fn snapshot_of(
    opts: &PgOptions,
    shard: usize,
    row: &sqlx::postgres::PgRow,
) -> Result<Snapshot, Error> {
    let read = |e| pg_error(opts, "read the snapshot from", e);
    let seq: i64 = row.try_get(0).map_err(read)?;
    let bytes: &[u8] = row.try_get(1).map_err(read)?;
    let stored: i64 = row.try_get(2).map_err(read)?;
    let computed = crc32c::crc32c(bytes);
    let what = || format!("snapshots shard {shard} seq {seq}");
    if i64::from(computed) != stored {
        return Err(Error::CorruptRow {
            what: what(),
            reason: format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
        });
    }
    let seq = Seq::try_from(seq).map_err(|_| Error::CorruptRow {
        what: what(),
        reason: "negative sequence number".into(),
    })?;
    let mut buf = AlignedVec::<16>::with_capacity(bytes.len());
    buf.extend_from_slice(bytes);
    Ok(Snapshot::from_parts(seq, buf))
}

/// The payload of every frame in `bytes` (a batch as built by the shard),
/// with its sequence number.
pub(crate) fn payloads(bytes: &[u8]) -> impl Iterator<Item = (Seq, &[u8])> {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        if off >= bytes.len() {
            return None;
        }
        let f = frame::decode(bytes, off).ok()?;
        let start = off + HEADER_LEN;
        off += f.total_len();
        Some((f.seq, &bytes[start..start + f.len]))
    })
}
