//! A shard's journal directory: file names, listing, locking, directory fsync.
//!
//! ```text
//! DIR/shard-{id}/LOCK                          flock held while the journal is open
//! DIR/shard-{id}/journal-{first_seq:020}.log   segments, named by their first record
//! DIR/shard-{id}/snapshot-{seq:020}.snap       snapshots, named by the last record they cover
//! DIR/shard-{id}/spare.zero                    a zero-filled spare segment, ready (removed at open)
//! DIR/shard-{id}/*.tmp                         a snapshot or spare being written (removed at open)
//! ```
//!
//! A spare is renamed to `journal-{first_seq:020}.log` when the writer starts
//! a segment (see `prealloc`). So a segment file may be longer than its
//! records: what follows its last frame is then all zeros.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::{Error, Seq};

const SEGMENT_PREFIX: &str = "journal-";
const SEGMENT_SUFFIX: &str = ".log";
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".tmp";
const SPARE_NAME: &str = "spare.zero";

/// The journal directory of shard `shard` under the data directory `root`.
pub fn shard_dir(root: &Path, shard: usize) -> PathBuf {
    root.join(format!("shard-{shard}"))
}

/// Path of the segment whose first record is `first_seq`.
pub(crate) fn segment_path(dir: &Path, first_seq: Seq) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first_seq:020}{SEGMENT_SUFFIX}"))
}

/// Path of the snapshot covering records up to `seq`.
pub(crate) fn snapshot_path(dir: &Path, seq: Seq) -> PathBuf {
    dir.join(format!("{SNAPSHOT_PREFIX}{seq:020}{SNAPSHOT_SUFFIX}"))
}

/// Path of the ready spare segment.
pub(crate) fn spare_path(dir: &Path) -> PathBuf {
    dir.join(SPARE_NAME)
}

/// Temporary path a file is written to before being renamed to `path`.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

/// What a journal directory holds, each list sorted by sequence number.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// `(first_seq, path)` of every segment.
    pub(crate) segments: Vec<(Seq, PathBuf)>,
    /// `(seq, path)` of every snapshot.
    pub(crate) snapshots: Vec<(Seq, PathBuf)>,
    /// Leftover temporary files.
    pub(crate) temps: Vec<PathBuf>,
    /// A ready spare segment, if one was left.
    pub(crate) spare: Option<PathBuf>,
}

/// Parses `{prefix}{seq:020}{suffix}`.
fn parse(name: &str, prefix: &str, suffix: &str) -> Option<Seq> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Lists the journal files in `dir`. Unknown files are left alone.
pub(crate) fn list(dir: &Path) -> Result<Listing, Error> {
    let mut out = Listing::default();
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.ends_with(TMP_SUFFIX) {
            out.temps.push(path);
        } else if name == SPARE_NAME {
            out.spare = Some(path);
        } else if let Some(seq) = parse(name, SEGMENT_PREFIX, SEGMENT_SUFFIX) {
            out.segments.push((seq, path));
        } else if let Some(seq) = parse(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX) {
            out.snapshots.push((seq, path));
        }
    }
    out.segments.sort_unstable_by_key(|(s, _)| *s);
    out.snapshots.sort_unstable_by_key(|(s, _)| *s);
    Ok(out)
}

/// fsyncs a directory so that creations, renames and deletions in it are
/// durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and its parents) if needed and makes the entry durable.
pub(crate) fn create(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent).map_err(|e| Error::io("fsync directory", parent, e))?;
    }
    Ok(())
}

/// Takes the directory's exclusive lock (an `flock` on `LOCK`, released when
/// the returned file is closed or the process dies).
pub(crate) fn lock(dir: &Path) -> Result<File, Error> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
    }
}

/// Removes a file; a missing file is not an error.
pub(crate) fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let d = Path::new("/x");
        let p = segment_path(d, 42);
        assert_eq!(p, Path::new("/x/journal-00000000000000000042.log"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse(name, SEGMENT_PREFIX, SEGMENT_SUFFIX), Some(42));
        let s = snapshot_path(d, u64::MAX);
        let name = s.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            parse(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX),
            Some(u64::MAX)
        );
        assert_eq!(
            parse("journal-42.log", SEGMENT_PREFIX, SEGMENT_SUFFIX),
            None
        );
        assert!(tmp_path(&s).to_str().unwrap().ends_with(".snap.tmp"));
    }

    #[test]
    fn a_spare_is_not_a_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        fs::write(spare_path(d), b"").unwrap();
        fs::write(tmp_path(&spare_path(d)), b"").unwrap();
        fs::write(segment_path(d, 1), b"").unwrap();
        let l = list(d).unwrap();
        assert_eq!(l.segments, vec![(1, segment_path(d, 1))]);
        assert_eq!(l.spare, Some(spare_path(d)));
        assert_eq!(l.temps, vec![tmp_path(&spare_path(d))]);
    }
}
