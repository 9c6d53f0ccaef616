//! Snapshot files: the shard's whole state as of one sequence number.
//!
//! ```text
//! offset  0  [u8; 8]  magic "RYLSNAP1"
//! offset  8  u64 LE   seq: the last record whose effect the snapshot contains
//! offset 16  u64 LE   payload length
//! offset 24  u32 LE   crc32c of bytes 0..24 followed by the payload
//! offset 28  u32      reserved (0)
//! offset 32  payload (rkyv bytes, read back into a 16-aligned buffer)
//! ```
//!
//! Written to `*.tmp`, fdatasync'd, renamed into place, then the directory is
//! fsync'd: a snapshot file that exists under its final name is complete.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use rkyv::util::AlignedVec;

use crate::{Error, Seq, dir};

const MAGIC: &[u8; 8] = b"RYLSNAP1";
const HEADER_LEN: usize = 32;

/// A recovered snapshot: the bytes the application passed to
/// `Journal::write_snapshot`, and the sequence number they cover.
#[derive(Debug)]
pub struct Snapshot {
    seq: Seq,
    bytes: AlignedVec,
}

impl Snapshot {
    /// A snapshot read from another medium (already verified).
    pub(crate) fn from_parts(seq: Seq, bytes: AlignedVec) -> Self {
        Snapshot { seq, bytes }
    }

    /// The last record whose effect the snapshot contains; replay starts
    /// after it.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// The snapshot's bytes (16-aligned, so rkyv can access them in place).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the buffer.
    pub fn into_bytes(self) -> AlignedVec {
        self.bytes
    }

    /// Validates the bytes as an archived `T` and returns a reference into
    /// them (no copy).
    pub fn access<T>(&self) -> Result<&T::Archived, Error>
    where
        T: rkyv::Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            >,
    {
        rkyv::access::<T::Archived, rkyv::rancor::Error>(&self.bytes)
            .map_err(|source| Error::Decode { seq: 0, source })
    }

    /// Validates and deserializes the bytes into a `T`.
    pub fn deserialize<T>(&self) -> Result<T, Error>
    where
        T: rkyv::Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>,
            > + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        rkyv::from_bytes::<T, rkyv::rancor::Error>(&self.bytes)
            .map_err(|source| Error::Decode { seq: 0, source })
    }
}

fn header(seq: Seq, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[0..24]), payload);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Bytes of a snapshot written between two writeback steps.
const WRITEBACK_CHUNK: usize = 4 << 20;

/// Starts writeback of the chunk just written (`len` bytes at `offset`) and
/// waits for the `window` bytes before it, so a file of hundreds of MB
/// (a snapshot, a spare segment) never has more than two chunks queued at
/// the disk: the journal's fdatasyncs (the shard's commit latency)
/// interleave with it instead of waiting behind one huge flush at the end.
/// Linux only; best effort (the final fsync is what counts).
pub(crate) fn paced_writeback(file: &File, offset: u64, len: u64, window: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        let fd = file.as_raw_fd();
        // SAFETY: plain syscalls on an open descriptor with in-range offsets.
        unsafe {
            libc::sync_file_range(
                fd,
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
            let previous = offset.saturating_sub(window);
            if previous < offset {
                libc::sync_file_range(
                    fd,
                    previous as libc::off64_t,
                    (offset - previous) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len, window);
}

/// Writes the snapshot for `seq` durably (temp file, fdatasync, rename,
/// directory fsync; the syncs are skipped when `sync` is false).
pub(crate) fn write(dir: &Path, seq: Seq, payload: &[u8], sync: bool) -> Result<(), Error> {
    let path = dir::snapshot_path(dir, seq);
    let tmp = dir::tmp_path(&path);
    let mut file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    let h = header(seq, payload);
    file.write_all(&h)
        .map_err(|e| Error::io("write", &tmp, e))?;
    let mut written = h.len() as u64;
    for chunk in payload.chunks(WRITEBACK_CHUNK) {
        file.write_all(chunk)
            .map_err(|e| Error::io("write", &tmp, e))?;
        if sync {
            paced_writeback(&file, written, chunk.len() as u64, WRITEBACK_CHUNK as u64);
        }
        written += chunk.len() as u64;
    }
    if sync {
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", &tmp, e))?;
    }
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
    if sync {
        dir::sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
    }
    Ok(())
}

/// Reads and verifies the snapshot at `path`, which its name says covers
/// `seq`.
pub(crate) fn read(path: &Path, seq: Seq) -> Result<Snapshot, Error> {
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    if file_len < HEADER_LEN as u64 {
        return Err(Error::corrupt(
            path,
            0,
            format!("snapshot file is {file_len} bytes, shorter than its header"),
        ));
    }
    let mut h = [0u8; HEADER_LEN];
    file.read_exact(&mut h)
        .map_err(|e| Error::io("read", path, e))?;
    if &h[0..8] != MAGIC {
        return Err(Error::corrupt(path, 0, "not a snapshot file (bad magic)"));
    }
    let stored_seq = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    let stored_crc = u32::from_le_bytes(h[24..28].try_into().expect("4 bytes"));
    if stored_seq != seq {
        return Err(Error::corrupt(
            path,
            8,
            format!("snapshot header says seq {stored_seq}, file name says {seq}"),
        ));
    }
    if len != file_len - HEADER_LEN as u64 {
        return Err(Error::corrupt(
            path,
            16,
            format!(
                "snapshot header says {len} payload bytes, file holds {}",
                file_len - HEADER_LEN as u64
            ),
        ));
    }
    let len = usize::try_from(len)
        .map_err(|_| Error::corrupt(path, 16, "snapshot larger than the address space"))?;
    let mut bytes = AlignedVec::<16>::with_capacity(len);
    bytes.resize(len, 0);
    file.read_exact(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[0..24]), &bytes);
    if crc != stored_crc {
        return Err(Error::corrupt(
            path,
            0,
            format!("snapshot checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"),
        ));
    }
    Ok(Snapshot { seq, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_detect_damage() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 9, b"state bytes", true).unwrap();
        let path = dir::snapshot_path(dir.path(), 9);
        let s = read(&path, 9).unwrap();
        assert_eq!((s.seq(), s.bytes()), (9, &b"state bytes"[..]));
        assert_eq!(s.bytes().as_ptr() as usize % 16, 0);

        let mut raw = fs::read(&path).unwrap();
        raw[HEADER_LEN + 2] ^= 0x40;
        fs::write(&path, &raw).unwrap();
        let err = read(&path, 9).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
