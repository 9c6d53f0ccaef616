//! Record framing inside a segment file.
//!
//! ```text
//! offset  0  u32 LE  crc32c of bytes 4 .. 16 + len (header fields and payload)
//! offset  4  u32 LE  len | flags: payload length in bits 0..=29,
//!                    bit 31 = first record of a write group, bit 30 reserved (0)
//! offset  8  u64 LE  sequence number
//! offset 16  payload (len bytes, rkyv), then zero padding to a multiple of 16
//! ```
//!
//! Frames start at multiples of [`ALIGN`] in the file, so a segment read into
//! a 16-aligned buffer hands out payloads that rkyv can access in place.
//!
//! The *group start* flag marks the first record of each write (one write +
//! one fdatasync). Recovery uses it to tell a torn tail (damage inside the last
//! write, which may not have been acknowledged) from damage to a write that
//! was followed by another one (and so had been synced): see
//! `recovery::later_group_follows`.

use crate::Seq;

/// Frame header length in bytes.
pub(crate) const HEADER_LEN: usize = 16;
/// Alignment of frames within a file and of payloads in a recovery buffer.
pub(crate) const ALIGN: usize = 16;
/// Flag bit: first record of a write group.
pub(crate) const FLAG_GROUP_START: u32 = 1 << 31;
/// Reserved flag bit; must be zero.
const FLAG_RESERVED: u32 = 1 << 30;
/// Mask of the length bits.
const LEN_MASK: u32 = (1 << 30) - 1;
/// Largest payload a frame can describe (1 GiB - 1).
pub const MAX_PAYLOAD: usize = LEN_MASK as usize;

/// `len` rounded up to [`ALIGN`].
#[inline]
pub(crate) const fn padded(len: usize) -> usize {
    (len + ALIGN - 1) & !(ALIGN - 1)
}

/// Total bytes a frame with a `len`-byte payload occupies.
#[inline]
pub(crate) const fn frame_len(len: usize) -> usize {
    HEADER_LEN + padded(len)
}

/// Starts a frame at the end of `buf` (whose length must be a multiple of
/// [`ALIGN`]): reserves the header and returns the frame's start offset. The
/// payload is then appended to `buf` and the frame closed with [`finish`].
#[inline]
pub(crate) fn begin(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    debug_assert_eq!(start % ALIGN, 0, "frames start aligned");
    buf.extend_from_slice(&[0u8; HEADER_LEN]);
    start
}

/// Closes the frame that [`begin`] opened at `start`: fills in the header,
/// checksums, pads. Returns the payload length, or `Err(len)` (with `buf`
/// restored to `start`) when the payload exceeds `max`.
#[inline]
pub(crate) fn finish(
    buf: &mut Vec<u8>,
    start: usize,
    seq: Seq,
    group_start: bool,
    max: usize,
) -> Result<usize, usize> {
    let len = buf.len() - start - HEADER_LEN;
    if len > max.min(MAX_PAYLOAD) {
        buf.truncate(start);
        return Err(len);
    }
    let flags = if group_start { FLAG_GROUP_START } else { 0 };
    let header = &mut buf[start..start + HEADER_LEN];
    header[4..8].copy_from_slice(&(len as u32 | flags).to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    buf.resize(start + frame_len(len), 0);
    Ok(len)
}

/// A frame that decoded and passed its checksum.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    /// Sequence number.
    pub(crate) seq: Seq,
    /// Payload length.
    pub(crate) len: usize,
}

impl Frame {
    /// Bytes the frame occupies, padding included.
    pub(crate) fn total_len(&self) -> usize {
        frame_len(self.len)
    }
}

/// Why the bytes at an offset are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer bytes remain than the header (or the header's length) needs.
    Short {
        /// Bytes needed for the whole frame (header only when even that is
        /// missing).
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The length field has reserved bits set.
    BadLength(u32),
    /// The stored checksum does not match the bytes.
    Checksum {
        /// Stored checksum.
        stored: u32,
        /// Checksum of the bytes on disk.
        computed: u32,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Short { need, have } => {
                write!(f, "incomplete frame: needs {need} bytes, {have} present")
            }
            FrameError::BadLength(v) => write!(f, "impossible length field {v:#010x}"),
            FrameError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
        }
    }
}

/// Reads the header fields at `off` without checking anything:
/// `(crc, len_flags, seq)`. `buf` must hold `off + HEADER_LEN` bytes.
#[inline]
fn header(buf: &[u8], off: usize) -> (u32, u32, Seq) {
    let h = &buf[off..off + HEADER_LEN];
    let crc = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let lf = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let seq = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    (crc, lf, seq)
}

/// Decodes and verifies the frame at `off` (a multiple of [`ALIGN`]).
pub(crate) fn decode(buf: &[u8], off: usize) -> Result<Frame, FrameError> {
    let have = buf.len() - off;
    if have < HEADER_LEN {
        return Err(FrameError::Short {
            need: HEADER_LEN,
            have,
        });
    }
    let (stored, lf, seq) = header(buf, off);
    if lf & FLAG_RESERVED != 0 {
        return Err(FrameError::BadLength(lf));
    }
    let len = (lf & LEN_MASK) as usize;
    // The payload must be present; the padding after the last frame may be
    // missing only if nothing follows, which `finish` never produces, so
    // require it too.
    let need = frame_len(len);
    if need > have {
        return Err(FrameError::Short { need, have });
    }
    let computed = crc32c::crc32c(&buf[off + 4..off + HEADER_LEN + len]);
    if computed != stored {
        return Err(FrameError::Checksum { stored, computed });
    }
    Ok(Frame { seq, len })
}

/// Payload length of an already verified frame at `off` (recovery's second
/// pass, which hands out records without re-checking them).
#[inline]
pub(crate) fn verified_len(buf: &[u8], off: usize) -> usize {
    (header(buf, off).1 & LEN_MASK) as usize
}

/// Cheap pre-check before [`decode`] when scanning for a later write group:
/// does `off` look like a group-start header with a plausible length and a
/// sequence number of at least `min_seq`?
pub(crate) fn looks_like_group_start(buf: &[u8], off: usize, min_seq: Seq) -> bool {
    if buf.len() - off < HEADER_LEN {
        return false;
    }
    let (_, lf, seq) = header(buf, off);
    lf & FLAG_GROUP_START != 0
        && lf & FLAG_RESERVED == 0
        && frame_len((lf & LEN_MASK) as usize) <= buf.len() - off
        && seq >= min_seq
        // a group start cannot be further ahead than one record per ALIGN bytes
        && seq - min_seq <= ((buf.len() - off) / ALIGN) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode() {
        let mut buf = Vec::new();
        let s = begin(&mut buf);
        buf.extend_from_slice(b"hello");
        assert_eq!(finish(&mut buf, s, 7, true, 1 << 20), Ok(5));
        let s2 = begin(&mut buf);
        assert_eq!(s2, 32);
        buf.extend_from_slice(&[9u8; 16]);
        finish(&mut buf, s2, 8, false, 1 << 20).unwrap();
        assert_eq!(buf.len(), 32 + 32);

        let f = decode(&buf, 0).unwrap();
        assert_eq!((f.seq, f.len), (7, 5));
        assert_eq!(&buf[16..21], b"hello");
        let f = decode(&buf, 32).unwrap();
        assert_eq!((f.seq, f.len), (8, 16));
        assert_eq!(verified_len(&buf, 32), 16);

        let mut bad = buf.clone();
        bad[18] ^= 1;
        assert!(matches!(decode(&bad, 0), Err(FrameError::Checksum { .. })));
        assert!(matches!(
            decode(&buf[..40], 32),
            Err(FrameError::Short { need: 16, have: 8 })
        ));
        assert!(matches!(
            decode(&buf[..50], 32),
            Err(FrameError::Short { need: 32, have: 18 })
        ));
        assert!(looks_like_group_start(&buf, 0, 7));
        assert!(!looks_like_group_start(&buf, 32, 7));
    }

    #[test]
    fn too_large_is_rolled_back() {
        let mut buf = Vec::new();
        let s = begin(&mut buf);
        buf.extend_from_slice(&[0u8; 100]);
        assert_eq!(finish(&mut buf, s, 1, true, 99), Err(100));
        assert!(buf.is_empty());
    }
}
