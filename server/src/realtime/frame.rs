//! WebSocket bytes on the wire: server frames encoded once into `Bytes`
//! (header + payload; a room's message goes to every member as the same
//! bytes), and the client side of the stream as fastwebsockets reads it.
//!
//! fastwebsockets parses and unmasks client frames but accepts an unmasked
//! one (RFC 6455 5.1: the server must fail the connection) and a close or
//! pong longer than 125 bytes (5.5). [`ClientBytes`] sits under the parser,
//! tracks frame boundaries and refuses the first such header with
//! [`Malformed`]. It also replays the
//! bytes the HTTP edge had already read past the upgrade request.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use tokio::io::{AsyncRead, ReadBuf};

/// A complete, unmasked server frame with `payload`.
pub fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut head = [0u8; 10];
    let n = Frame::new(true, opcode, None, Payload::Borrowed(payload)).fmt_head(&mut head);
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
    out.into()
}

/// A text frame.
pub fn text(json: &[u8]) -> Bytes {
    encode(OpCode::Text, json)
}

/// A close frame with `code` and a short `reason` (cut to fit the 125-byte
/// control-frame limit at a character boundary).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Close, &payload)
}

/// The error [`ClientBytes`] reads when a client frame header breaks the
/// protocol in a way the parser lets through.
#[derive(Debug)]
pub enum Malformed {
    /// A client frame without a mask.
    Unmasked,
    /// A control frame with more than 125 bytes of payload.
    LongControl,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Malformed::Unmasked => "client frame is not masked",
            Malformed::LongControl => "control frame longer than 125 bytes",
        })
    }
}

impl std::error::Error for Malformed {}

/// Whether `e` is a [`Malformed`] refusal.
pub fn is_malformed(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Malformed>())
}

fn malformed(m: Malformed) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m)
}

/// Where the scan is in the client's frame sequence.
#[derive(Debug)]
enum Scan {
    /// In a header: bytes of it seen so far, its full length once the
    /// second byte told it (0 until then), whether it is a control frame.
    Head {
        seen: usize,
        len: usize,
        ext: [u8; 8],
        control: bool,
    },
    /// In a payload: bytes left.
    Payload(u64),
}

impl Scan {
    const HEAD: Scan = Scan::Head {
        seen: 0,
        len: 0,
        ext: [0; 8],
        control: false,
    };
}

/// The client's byte stream: first the bytes read past the upgrade
/// request, then the socket; each frame header is checked for the mask bit.
#[derive(Debug)]
pub struct ClientBytes<R> {
    inner: R,
    prefix: Vec<u8>,
    prefix_pos: usize,
    scan: Scan,
}

impl<R> ClientBytes<R> {
    /// Wraps `inner`, to be read after `prefix`.
    pub fn new(inner: R, prefix: Vec<u8>) -> Self {
        Self {
            inner,
            prefix,
            prefix_pos: 0,
            scan: Scan::HEAD,
        }
    }

    /// Follows `bytes` through the frame structure.
    fn check(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.scan {
                Scan::Payload(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.scan = Scan::HEAD;
                    }
                }
                Scan::Head {
                    seen,
                    len,
                    ext,
                    control,
                } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    match *seen {
                        0 => *control = b & 0x08 != 0,
                        1 => {
                            if b & 0x80 == 0 {
                                return Err(malformed(Malformed::Unmasked));
                            }
                            if *control && b & 0x7f > 125 {
                                return Err(malformed(Malformed::LongControl));
                            }
                            let extra = match b & 0x7f {
                                126 => 2,
                                127 => 8,
                                short => {
                                    ext[7] = short;
                                    0
                                }
                            };
                            *len = 2 + extra + 4;
                        }
                        n if n < *len - 4 => {
                            // Extended length, big-endian, right-aligned in `ext`.
                            let extra = *len - 6;
                            ext[8 - extra + (n - 2)] = b;
                        }
                        _ => {}
                    }
                    *seen += 1;
                    if *len > 0 && *seen == *len {
                        let payload = u64::from_be_bytes(*ext);
                        self.scan = if payload == 0 {
                            Scan::HEAD
                        } else {
                            Scan::Payload(payload)
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ClientBytes<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let start = buf.filled().len();
        if this.prefix_pos < this.prefix.len() {
            let n = (this.prefix.len() - this.prefix_pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.prefix_pos..this.prefix_pos + n]);
            this.prefix_pos += n;
            if this.prefix_pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.prefix_pos = 0;
            }
        } else {
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        }
        let fresh = buf.filled()[start..].to_vec();
        Poll::Ready(this.check(&fresh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(payload_len: usize) -> Vec<u8> {
        let mut head = [0u8; 14];
        let payload = vec![b'x'; payload_len];
        let mut f = Frame::new(
            true,
            OpCode::Text,
            Some([1, 2, 3, 4]),
            Payload::Owned(payload.clone()),
        );
        let n = f.fmt_head(&mut head);
        let mut out = head[..n].to_vec();
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn masked_frames_of_every_length_form_pass_in_any_split() {
        let mut stream = Vec::new();
        for len in [0, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            stream.extend(masked(len));
        }
        for chunk in [1, 3, 7, 4096] {
            let mut c = ClientBytes::new((), Vec::new());
            for piece in stream.chunks(chunk) {
                c.check(piece).unwrap();
            }
            assert!(
                matches!(c.scan, Scan::Head { seen: 0, .. }),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn an_unmasked_frame_after_masked_ones_is_refused() {
        let mut stream = masked(200);
        stream.extend_from_slice(&text(b"hi"));
        let mut c = ClientBytes::new((), Vec::new());
        let e = c.check(&stream).unwrap_err();
        assert!(is_malformed(&e));
    }

    #[test]
    fn a_control_frame_over_125_bytes_is_refused() {
        let mut head = [0u8; 14];
        let mut f = Frame::new(
            true,
            OpCode::Close,
            Some([1, 2, 3, 4]),
            Payload::Owned(vec![0; 126]),
        );
        let n = f.fmt_head(&mut head);
        let mut c = ClientBytes::new((), Vec::new());
        assert!(is_malformed(&c.check(&head[..n]).unwrap_err()));
    }

    #[test]
    fn server_frames_are_unmasked_with_the_right_length_form() {
        assert_eq!(&text(b"hi")[..], &[0x81, 2, b'h', b'i']);
        let long = text(&[b'a'; 300]);
        assert_eq!(&long[..4], &[0x81, 126, 1, 44]);
        let c = close(1008, "slow");
        assert_eq!(&c[..], &[0x88, 6, 0x03, 0xf0, b's', b'l', b'o', b'w']);
        assert_eq!(close(1000, &"é".repeat(100)).len(), 2 + 2 + 122);
    }
}
