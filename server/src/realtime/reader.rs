//! The client's side of a WebSocket: frames parsed by fastwebsockets, with
//! what it leaves out checked underneath, and its read buffer held only
//! while frames are arriving.
//!
//! fastwebsockets parses and unmasks client frames but accepts an unmasked
//! one (RFC 6455 5.1: the server must fail the connection) and a close or
//! pong longer than 125 bytes (5.5). [`ClientBytes`] sits under the parser,
//! tracks frame boundaries and refuses the first such header with
//! [`Malformed`]. It also replays bytes already read (past the upgrade
//! request, or while idle).
//!
//! The parser allocates an 8 KiB buffer per instance and offers no way to
//! shrink it; kept for an idle connection, it would be most of what one
//! costs. [`FrameReader`] therefore drops the parser whenever every byte it
//! was given has been handed back as frames, waits for the next bytes with
//! a small buffer, and builds a new one when they arrive.

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use fastwebsockets::{Frame, OpCode, Role, WebSocketError, WebSocketRead};
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read while no parser is held (a typical client frame fits).
const IDLE_READ_BYTES: usize = 256;

/// A complete client frame, owning its payload.
#[derive(Debug)]
pub struct ClientFrame {
    /// Final fragment.
    pub fin: bool,
    /// Opcode.
    pub opcode: OpCode,
    /// Unmasked payload.
    pub payload: Vec<u8>,
}

/// The read half, shared by the successive parsers.
#[derive(Debug)]
pub struct Shared<R>(Rc<RefCell<R>>);

impl<R: AsyncRead + Unpin> AsyncRead for Shared<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

/// Client frames from a read half.
pub struct FrameReader<R> {
    half: Rc<RefCell<R>>,
    progress: Rc<Progress>,
    parser: Option<WebSocketRead<ClientBytes<Shared<R>>>>,
    /// Frames the current parser consumed (returned, or pings it answered).
    handed_over: u64,
    /// Bytes for the next parser to read first.
    pending: Vec<u8>,
    max_message_bytes: usize,
}

impl<R> std::fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("parsing", &self.parser.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads `half`, after `leftover` (bytes already read from it); frames
    /// longer than `max_message_bytes` are refused.
    pub fn new(half: R, leftover: Vec<u8>, max_message_bytes: usize) -> Self {
        Self {
            half: Rc::new(RefCell::new(half)),
            progress: Rc::default(),
            parser: None,
            handed_over: 0,
            pending: leftover,
            max_message_bytes,
        }
    }

    /// Whether a parser (and its buffer) is held now.
    pub fn is_parsing(&self) -> bool {
        self.parser.is_some()
    }

    /// The next frame that is not a ping (pings are answered through
    /// `obligations`, as are closes, with the frames to send back).
    pub async fn read_frame(
        &mut self,
        obligations: &mut impl FnMut(Frame<'_>),
    ) -> Result<ClientFrame, WebSocketError> {
        if self.parser.is_none() {
            let prefix = if self.pending.is_empty() {
                self.wait_for_bytes().await?
            } else {
                std::mem::take(&mut self.pending)
            };
            self.progress = Rc::default();
            self.handed_over = 0;
            let bytes = ClientBytes::new(Shared(self.half.clone()), prefix, self.progress.clone());
            let (mut ws, _) =
                fastwebsockets::after_handshake_split(bytes, tokio::io::sink(), Role::Server);
            ws.set_max_message_size(self.max_message_bytes.saturating_add(1));
            self.parser = Some(ws);
        }
        let parser = self.parser.as_mut().expect("set above");
        let pings = Cell::new(0u64);
        let result = parser
            .read_frame(&mut |f: Frame<'_>| {
                if f.opcode == OpCode::Pong {
                    pings.set(pings.get() + 1);
                }
                obligations(f);
                std::future::ready(Ok::<(), std::convert::Infallible>(()))
            })
            .await
            .map(|f| ClientFrame {
                fin: f.fin,
                opcode: f.opcode,
                payload: f.payload.to_vec(),
            });
        self.handed_over += pings.get() + u64::from(result.is_ok());
        if !self.progress.partial.get() && self.progress.completed.get() == self.handed_over {
            // Everything read has been handed back: nothing is buffered.
            self.parser = None;
        }
        result
    }

    async fn wait_for_bytes(&self) -> Result<Vec<u8>, WebSocketError> {
        let mut space = [0u8; IDLE_READ_BYTES];
        let n = std::future::poll_fn(|cx| {
            let mut buf = ReadBuf::new(&mut space);
            match Pin::new(&mut *self.half.borrow_mut()).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        if n == 0 {
            return Err(WebSocketError::UnexpectedEOF);
        }
        Ok(space[..n].to_vec())
    }
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

/// How far the bytes handed to the parser go: complete frames, and whether
/// they end on a frame boundary.
#[derive(Debug, Default)]
pub struct Progress {
    completed: Cell<u64>,
    partial: Cell<bool>,
}

/// The client's byte stream as the parser reads it: first `prefix` (bytes
/// already read), then the socket; each frame header is checked.
#[derive(Debug)]
pub struct ClientBytes<R> {
    inner: R,
    prefix: Vec<u8>,
    prefix_pos: usize,
    scan: Scan,
    progress: Rc<Progress>,
}

impl<R> ClientBytes<R> {
    /// Wraps `inner`, to be read after `prefix`.
    pub fn new(inner: R, prefix: Vec<u8>, progress: Rc<Progress>) -> Self {
        Self {
            inner,
            prefix,
            prefix_pos: 0,
            scan: Scan::HEAD,
            progress,
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
                        self.progress
                            .completed
                            .set(self.progress.completed.get() + 1);
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
                        if payload == 0 {
                            self.scan = Scan::HEAD;
                            self.progress
                                .completed
                                .set(self.progress.completed.get() + 1);
                        } else {
                            self.scan = Scan::Payload(payload);
                        }
                    }
                }
            }
        }
        self.progress
            .partial
            .set(!matches!(self.scan, Scan::Head { seen: 0, .. }));
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
    use fastwebsockets::Payload;

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
            let mut c = ClientBytes::new((), Vec::new(), Rc::default());
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
        stream.extend_from_slice(&crate::realtime::frame::text(b"hi"));
        let mut c = ClientBytes::new((), Vec::new(), Rc::default());
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
        let mut c = ClientBytes::new((), Vec::new(), Rc::default());
        assert!(is_malformed(&c.check(&head[..n]).unwrap_err()));
    }

    #[test]
    fn progress_counts_complete_frames_and_partial_ones() {
        let mut stream = masked(3);
        stream.extend(masked(300));
        let p: Rc<Progress> = Rc::default();
        let mut c = ClientBytes::new((), Vec::new(), p.clone());
        c.check(&stream[..10]).unwrap();
        assert_eq!((p.completed.get(), p.partial.get()), (1, true));
        c.check(&stream[10..]).unwrap();
        assert_eq!((p.completed.get(), p.partial.get()), (2, false));
    }

    #[monoio::test(enable_timer = true)]
    async fn the_parser_is_dropped_between_bursts_and_frames_still_arrive_whole() {
        let mut wire = masked(3);
        wire.extend(masked(2000));
        wire.extend(masked(10));
        // Delivered in pieces; a read returns what one piece holds.
        let pieces: Vec<Vec<u8>> = vec![
            wire[..5].to_vec(),
            wire[5..1200].to_vec(),
            wire[1200..].to_vec(),
        ];
        let mut r = FrameReader::new(Pieces(pieces.into()), Vec::new(), 64 * 1024);
        let mut lens = Vec::new();
        let mut parsing_after = Vec::new();
        for _ in 0..3 {
            let f = r.read_frame(&mut |_| {}).await.unwrap();
            lens.push(f.payload.len());
            parsing_after.push(r.is_parsing());
        }
        assert_eq!(lens, [3, 2000, 10]);
        assert_eq!(
            parsing_after.last(),
            Some(&false),
            "idle again after the last frame"
        );
    }

    /// A reader that returns one piece per read.
    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut p) = self.0.pop_front() {
                let n = p.len().min(buf.remaining());
                buf.put_slice(&p[..n]);
                if n < p.len() {
                    p.drain(..n);
                    self.0.push_front(p);
                }
            }
            Poll::Ready(Ok(()))
        }
    }
}
