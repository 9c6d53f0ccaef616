//! Start-up recovery: latest snapshot + the records after it.
//!
//! 1. Leftover `*.tmp` files (a snapshot or spare segment interrupted
//!    mid-write) are removed, and so is a ready spare (see below).
//! 2. The newest snapshot is read and verified (a damaged one is
//!    [`Error::Corrupt`]: older segments may already be gone, so there is
//!    nothing to fall back to). Older snapshots are removed.
//! 3. Segments whose records are all covered by the snapshot (their successor
//!    starts at or before `snapshot + 1`) are removed unread, finishing a
//!    truncation that a crash interrupted.
//! 4. The remaining segments are read whole into 16-aligned buffers and every
//!    frame is verified (checksum, consecutive sequence numbers, no gaps
//!    between segments except ones the snapshot covers).
//!
//! A segment can be longer than its records: a preallocated one (the
//! writer's spare, see `prealloc`) is zeros after its last write. When every
//! byte after the last valid frame is zero, that is the segment's clean end
//! (its logical length, where the writer continues), in any segment: one can
//! be closed before it is full. The check is one pass over the remainder
//! ([`zero_tail_start`]), not a frame-by-frame decode. Continuity with the
//! next segment still catches records lost from a closed one.
//!
//! A frame that does not verify is a **torn tail** when it lies in the last
//! segment and no later write group starts after it: it belongs to the last
//! write, which may not have been acknowledged (kill -9 in the middle of the
//! `write`, or power loss before its fdatasync persisted every page; in a
//! preallocated segment: garbage, or valid frames then a damaged one,
//! followed by zeros). The segment is truncated there (its zero tail goes
//! too: it grows from then on) and a warning logged. Anywhere else the frame
//! was synced and then damaged: [`Error::Corrupt`] names the file and offset,
//! and start-up stops.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use rkyv::util::AlignedVec;

use crate::frame::{self, ALIGN, HEADER_LEN};
use crate::snapshot::{self, Snapshot};
use crate::{Error, Seq, dir};

/// What recovery found, for the application to rebuild its state from:
/// the latest snapshot (if any) and every record after it, in order.
///
/// The buffers hold the segments as read from disk; records are handed out as
/// slices into them (no copy per record). Drop it once the state is rebuilt.
#[derive(Debug)]
pub struct Recovered<R> {
    snapshot: Option<Snapshot>,
    views: Vec<View>,
    records: usize,
    next_seq: Seq,
    torn: Option<TornTail>,
    _record: PhantomData<fn() -> R>,
}

/// The records of one segment that come after the snapshot.
#[derive(Debug)]
struct View {
    buf: AlignedVec,
    start: usize,
    end: usize,
    first_seq: Seq,
}

/// A torn tail that recovery cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment that was truncated.
    pub file: PathBuf,
    /// Where it was cut (its new length).
    pub offset: u64,
    /// Bytes discarded.
    pub discarded: u64,
    /// What was wrong with the first discarded frame.
    pub reason: String,
}

impl<R> Recovered<R> {
    /// What a medium other than segment files read: `frames` holds the
    /// verified frames of records `first_seq..first_seq + records`, back to
    /// back.
    pub(crate) fn from_buffer(
        snapshot: Option<Snapshot>,
        frames: AlignedVec,
        first_seq: Seq,
        records: usize,
        next_seq: Seq,
    ) -> Self {
        let end = frames.len();
        let views = if records == 0 {
            Vec::new()
        } else {
            vec![View {
                buf: frames,
                start: 0,
                end,
                first_seq,
            }]
        };
        Recovered {
            snapshot,
            views,
            records,
            next_seq,
            torn: None,
            _record: PhantomData,
        }
    }

    /// The latest snapshot, if one was written.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Takes the snapshot out (e.g. to keep its buffer as the state).
    pub fn take_snapshot(&mut self) -> Option<Snapshot> {
        self.snapshot.take()
    }

    /// The records after the snapshot, in sequence order.
    pub fn records(&self) -> Records<'_, R> {
        Records {
            views: &self.views,
            view: 0,
            off: self.views.first().map_or(0, |v| v.start),
            seq: self.views.first().map_or(0, |v| v.first_seq),
            _record: PhantomData,
        }
    }

    /// Number of records after the snapshot.
    pub fn len(&self) -> usize {
        self.records
    }

    /// True when there is nothing to replay after the snapshot.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Sequence number of the last record (or of the snapshot), 0 for an
    /// empty journal.
    pub fn last_seq(&self) -> Seq {
        self.next_seq - 1
    }

    /// The torn tail that was cut off, if there was one.
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn.as_ref()
    }
}

/// Iterator over recovered records.
#[derive(Debug)]
pub struct Records<'a, R> {
    views: &'a [View],
    view: usize,
    off: usize,
    seq: Seq,
    _record: PhantomData<fn() -> R>,
}

impl<'a, R> Iterator for Records<'a, R> {
    type Item = Record<'a, R>;

    #[inline]
    fn next(&mut self) -> Option<Record<'a, R>> {
        loop {
            let v = self.views.get(self.view)?;
            if self.off < v.end {
                let len = frame::verified_len(&v.buf, self.off);
                let start = self.off + HEADER_LEN;
                let rec = Record {
                    seq: self.seq,
                    bytes: &v.buf[start..start + len],
                    _record: PhantomData,
                };
                self.off += frame::frame_len(len);
                self.seq += 1;
                return Some(rec);
            }
            self.view += 1;
            if let Some(next) = self.views.get(self.view) {
                self.off = next.start;
                self.seq = next.first_seq;
            }
        }
    }
}

/// One recovered record: its sequence number and its payload, 16-aligned.
#[derive(Debug)]
pub struct Record<'a, R> {
    seq: Seq,
    bytes: &'a [u8],
    _record: PhantomData<fn() -> R>,
}

impl<R> Clone for Record<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Record<'_, R> {}

impl<'a, R> Record<'a, R> {
    /// The record's sequence number.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// The payload as appended (rkyv bytes for [`crate::Journal::append`]).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Validates the payload as an archived `R` (bytecheck) and returns a
    /// reference into the recovery buffer.
    pub fn access(&self) -> Result<&'a R::Archived, Error>
    where
        R: rkyv::Archive,
        R::Archived: for<'b> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'b, rkyv::rancor::Error>,
            >,
    {
        rkyv::access::<R::Archived, rkyv::rancor::Error>(self.bytes).map_err(|source| {
            Error::Decode {
                seq: self.seq,
                source,
            }
        })
    }

    /// Validates and deserializes the payload into an `R`.
    pub fn deserialize(&self) -> Result<R, Error>
    where
        R: rkyv::Archive,
        R::Archived: for<'b> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'b, rkyv::rancor::Error>,
            > + rkyv::Deserialize<R, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        rkyv::from_bytes::<R, rkyv::rancor::Error>(self.bytes).map_err(|source| Error::Decode {
            seq: self.seq,
            source,
        })
    }
}

/// A segment that stays on disk after recovery.
#[derive(Debug)]
pub(crate) struct SegmentMeta {
    /// Sequence number of its first record (from its name).
    pub(crate) first: Seq,
    /// Sequence number after its last record (`first` when empty).
    pub(crate) next: Seq,
    /// Its path.
    pub(crate) path: PathBuf,
    /// Its logical length: the end of its last valid frame, after any
    /// truncation. The file can be longer (a zero tail).
    pub(crate) len: u64,
}

/// Recovery's result: what the application replays and what the writer
/// continues from.
#[derive(Debug)]
pub(crate) struct Outcome<R> {
    pub(crate) recovered: Recovered<R>,
    /// Segments left on disk, oldest first.
    pub(crate) segments: Vec<SegmentMeta>,
    /// Sequence number of the current snapshot (0: none).
    pub(crate) snapshot_seq: Seq,
    /// Sequence number the next appended record gets.
    pub(crate) next_seq: Seq,
}

/// Result of verifying one segment.
#[derive(Debug)]
struct Scan {
    /// End of the last valid frame.
    end: usize,
    /// Sequence number after the last valid frame.
    next: Seq,
    /// Offset of the first frame with a sequence number above the snapshot.
    view_start: Option<usize>,
    /// A torn tail found at `end`.
    torn: Option<TornTail>,
}

/// Recovers the journal in `dir`.
pub(crate) fn recover<R>(dir: &Path) -> Result<Outcome<R>, Error> {
    let listing = dir::list(dir)?;
    for tmp in &listing.temps {
        tracing::warn!(file = %tmp.display(), "removing an interrupted snapshot or spare segment");
        dir::remove(tmp)?;
    }
    // A ready spare is removed, not reused: if a crash came after the writer
    // renamed it to a segment and wrote a batch, but before the directory
    // fsync that makes the rename durable, the old name can come back with
    // that (unacknowledged) batch in it; a spare must be all zeros. The
    // preallocator writes a fresh one.
    if let Some(spare) = &listing.spare {
        dir::remove(spare)?;
    }

    let snapshot = match listing.snapshots.last() {
        Some((seq, path)) => Some(snapshot::read(path, *seq)?),
        None => None,
    };
    let snap_seq = snapshot.as_ref().map_or(0, Snapshot::seq);
    if let Some((_, older)) = listing.snapshots.split_last() {
        for (_, path) in older {
            dir::remove(path)?;
        }
    }

    // Segments wholly covered by the snapshot: an interrupted truncation.
    let mut segs = listing.segments.as_slice();
    while segs.len() > 1 && segs[1].0 <= snap_seq + 1 {
        tracing::debug!(file = %segs[0].1.display(), "removing a segment the snapshot covers");
        dir::remove(&segs[0].1)?;
        segs = &segs[1..];
    }

    let mut views = Vec::new();
    let mut metas: Vec<SegmentMeta> = Vec::with_capacity(segs.len());
    let mut records = 0usize;
    let mut torn = None;
    let mut expected: Option<Seq> = None;
    for (i, (first, path)) in segs.iter().enumerate() {
        let first = *first;
        let is_last = i + 1 == segs.len();
        check_continuity(path, first, expected, snap_seq)?;
        let buf = read_all(path)?;
        let scan = scan(&buf, first, snap_seq, path, is_last)?;
        if let Some(t) = scan.torn {
            tracing::warn!(
                file = %t.file.display(),
                offset = t.offset,
                discarded_bytes = t.discarded,
                reason = %t.reason,
                "journal: cutting off a torn tail (an unacknowledged write interrupted by a crash)"
            );
            truncate(path, t.offset)?;
            torn = Some(t);
        }
        if let Some(start) = scan.view_start {
            let first_seq = first.max(snap_seq + 1);
            records += (scan.next - first_seq) as usize;
            views.push(View {
                buf,
                start,
                end: scan.end,
                first_seq,
            });
        }
        metas.push(SegmentMeta {
            first,
            next: scan.next,
            path: path.clone(),
            len: scan.end as u64,
        });
        expected = Some(scan.next);
    }

    let next_seq = expected.unwrap_or(1).max(snap_seq + 1);
    // An empty last segment that the next record would not continue (e.g.
    // created just before a crash, then overtaken by a snapshot) goes.
    if let Some(last) = metas.last()
        && last.first == last.next
        && last.first != next_seq
    {
        dir::remove(&last.path)?;
        metas.pop();
    }

    tracing::info!(
        dir = %dir.display(),
        snapshot_seq = snap_seq,
        records,
        next_seq,
        segments = metas.len(),
        "journal recovered"
    );
    Ok(Outcome {
        recovered: Recovered {
            snapshot,
            views,
            records,
            next_seq,
            torn,
            _record: PhantomData,
        },
        segments: metas,
        snapshot_seq: snap_seq,
        next_seq,
    })
}

/// Reads, without changing anything on disk, the latest snapshot and the
/// records after it up to and including `upto`, which must be durable (at
/// most [`Journal::durable_seq`](crate::Journal::durable_seq)). For building
/// a snapshot off the shard thread while the journal keeps appending: the
/// writer only adds bytes after `upto`, and no segment is removed while the
/// journal's one snapshot at a time is being prepared.
pub fn read_durable<R>(dir: &Path, upto: Seq) -> Result<Recovered<R>, Error> {
    let listing = dir::list(dir)?;
    let snapshot = match listing.snapshots.last() {
        Some((seq, path)) => Some(snapshot::read(path, *seq)?),
        None => None,
    };
    let snap_seq = snapshot.as_ref().map_or(0, Snapshot::seq);
    let mut views = Vec::new();
    let mut records = 0usize;
    let mut expected = snap_seq + 1;
    for (i, (first, path)) in listing.segments.iter().enumerate() {
        let next_first = listing.segments.get(i + 1).map(|(f, _)| *f);
        if next_first.is_some_and(|n| n <= expected) || *first > upto {
            continue; // wholly before the snapshot, or after `upto`
        }
        if *first > expected {
            return Err(Error::corrupt(
                path,
                0,
                format!(
                    "segment starts at record {first}: records {expected}..={} are missing",
                    first - 1
                ),
            ));
        }
        let buf = read_all(path)?;
        let (mut off, mut seq, mut start) = (0usize, *first, None);
        while seq <= upto && off < buf.len() {
            let f = match frame::decode(buf.as_slice(), off) {
                Ok(f) => f,
                // A zero tail: the segment's records end here (the next
                // segment continues them, checked below).
                Err(_) if zero_tail_start(&buf[off..]) == 0 => break,
                Err(e) => {
                    return Err(Error::corrupt(
                        path,
                        off as u64,
                        format!("{e} in durable record {seq}"),
                    ));
                }
            };
            if f.seq != seq {
                return Err(Error::corrupt(
                    path,
                    off as u64,
                    format!("record {} where {seq} was expected", f.seq),
                ));
            }
            if seq >= expected && start.is_none() {
                start = Some(off);
            }
            off += f.total_len();
            seq += 1;
        }
        if let Some(start) = start {
            let first_seq = (*first).max(expected);
            records += (seq - first_seq) as usize;
            views.push(View {
                buf,
                start,
                end: off,
                first_seq,
            });
            expected = seq;
        }
    }
    if expected <= upto {
        return Err(Error::corrupt(
            dir,
            0,
            format!("durable records end at {}, before {upto}", expected - 1),
        ));
    }
    Ok(Recovered {
        snapshot,
        views,
        records,
        next_seq: expected,
        torn: None,
        _record: PhantomData,
    })
}

/// Checks that a segment starting at `first` continues the previous one
/// (which ended before `expected`), or that the snapshot covers any gap.
fn check_continuity(
    path: &Path,
    first: Seq,
    expected: Option<Seq>,
    snap_seq: Seq,
) -> Result<(), Error> {
    match expected {
        None if first > snap_seq + 1 => Err(Error::corrupt(
            path,
            0,
            format!(
                "the oldest segment starts at record {first}, but the snapshot only covers \
                 records up to {snap_seq}: records {}..={} are missing",
                snap_seq + 1,
                first - 1
            ),
        )),
        Some(e) if first < e => Err(Error::corrupt(
            path,
            0,
            format!(
                "segment starts at record {first}, but the previous segment already holds \
                 records up to {}",
                e - 1
            ),
        )),
        Some(e) if first > e && first > snap_seq + 1 => Err(Error::corrupt(
            path,
            0,
            format!(
                "segment starts at record {first}, but the previous segment ends at record {}: \
                 records {e}..={} are missing",
                e - 1,
                first - 1
            ),
        )),
        _ => Ok(()),
    }
}

/// Reads a whole file into a 16-aligned buffer.
fn read_all(path: &Path) -> Result<AlignedVec, Error> {
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let len = usize::try_from(len)
        .map_err(|_| Error::corrupt(path, 0, "segment larger than the address space"))?;
    let mut buf = AlignedVec::<16>::with_capacity(len);
    buf.resize(len, 0);
    file.read_exact(&mut buf)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(buf)
}

/// Start of the all-zero tail of `buf` (`buf.len()` when its last byte is
/// not zero, 0 when all of it is zero). Checks 4 KiB at a time with a
/// branch-free OR, which the compiler vectorises: a 64 MiB zero tail costs
/// a few milliseconds, a segment without one a single block.
pub(crate) fn zero_tail_start(buf: &[u8]) -> usize {
    const BLOCK: usize = 4096;
    let mut end = buf.len();
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let block = &buf[start..end];
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            let last = block.iter().rposition(|&b| b != 0).unwrap_or(0);
            return start + last + 1;
        }
        end = start;
    }
    0
}

/// Cuts a segment at `len` and makes the new length durable.
fn truncate(path: &Path, len: u64) -> Result<(), Error> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    file.set_len(len)
        .map_err(|e| Error::io("truncate", path, e))?;
    file.sync_all().map_err(|e| Error::io("fsync", path, e))
}

/// Verifies every frame of one segment.
fn scan(buf: &[u8], first: Seq, snap_seq: Seq, path: &Path, is_last: bool) -> Result<Scan, Error> {
    let mut off = 0usize;
    let mut seq = first;
    let mut view_start = None;
    while off < buf.len() {
        match frame::decode(buf, off) {
            Ok(f) if f.seq == seq => {
                if view_start.is_none() && seq > snap_seq {
                    view_start = Some(off);
                }
                off += f.total_len();
                seq += 1;
            }
            Ok(f) => {
                return Err(Error::corrupt(
                    path,
                    off as u64,
                    format!(
                        "record has sequence number {}, expected {seq} (its checksum is valid, \
                         so the file is out of place or was damaged before it was written)",
                        f.seq
                    ),
                ));
            }
            Err(e) => {
                // Where the non-zero bytes end (looked at only here: a full
                // segment ends at its last frame).
                let data_end = off + zero_tail_start(&buf[off..]);
                if data_end == off {
                    break; // the rest is zeros: the segment's clean end
                }
                if !is_last {
                    return Err(Error::corrupt(
                        path,
                        off as u64,
                        format!("{e} in record {seq}, in a segment that is not the last one"),
                    ));
                }
                if let Some(at) = later_group_follows(buf, off, data_end, seq) {
                    return Err(Error::corrupt(
                        path,
                        off as u64,
                        format!(
                            "{e} in record {seq}, and a later write follows at byte {at}, so \
                             this record had been synced"
                        ),
                    ));
                }
                let torn = TornTail {
                    file: path.to_path_buf(),
                    offset: off as u64,
                    discarded: (buf.len() - off) as u64,
                    reason: format!("{e} in record {seq}"),
                };
                return Ok(Scan {
                    end: off,
                    next: seq,
                    view_start,
                    torn: Some(torn),
                });
            }
        }
    }
    Ok(Scan {
        end: off,
        next: seq,
        view_start,
        torn: None,
    })
}

/// Looks for a valid group-start frame (the first record of a later write)
/// after the bad frame at `off`, whose sequence number would have been `seq`.
/// Only offsets before `data_end` (where the segment's zero tail starts: a
/// frame header is never all zeros) are tried.
///
/// The writer issues one write per group and fdatasyncs it before it writes
/// the next group, so the presence of a later group proves that the group
/// holding the bad frame had been synced (and possibly acknowledged): damage
/// there is corruption, not a torn tail. Without one, the bad frame lies in
/// the last group, whose pages may have reached the disk in any order.
fn later_group_follows(buf: &[u8], off: usize, data_end: usize, seq: Seq) -> Option<usize> {
    let mut at = off + ALIGN;
    while at < data_end && at + HEADER_LEN <= buf.len() {
        if frame::looks_like_group_start(buf, at, seq) && frame::decode(buf, at).is_ok() {
            return Some(at);
        }
        at += ALIGN;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_tail_start_finds_the_last_non_zero_byte() {
        let mut buf = vec![0u8; 3 * 4096 + 100];
        assert_eq!(zero_tail_start(&buf), 0);
        assert_eq!(zero_tail_start(&[]), 0);
        buf[5] = 1;
        assert_eq!(zero_tail_start(&buf), 6);
        buf[4096 + 7] = 9;
        assert_eq!(zero_tail_start(&buf), 4096 + 8);
        let n = buf.len();
        buf[n - 1] = 1;
        assert_eq!(zero_tail_start(&buf), n);
    }

    #[test]
    fn zeros_are_not_a_frame() {
        // A clean end relies on it: an all-zero header fails its checksum.
        assert!(frame::decode(&[0u8; 64], 0).is_err());
    }
}
