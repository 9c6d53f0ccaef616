//! One WebSocket connection after the upgrade: a reader (fastwebsockets
//! parses the client's frames; fragments are reassembled here under the
//! message-size limit) and a writer draining a bounded [`Outbox`].
//!
//! The outbox holds complete frames as `Bytes`; the writer takes everything
//! queued and writes it with one `write` (a busy room's messages batch up per
//! socket). When a reader falls so far behind that the queue would pass its
//! byte limit, the queue is dropped and the connection closed with 1008: the
//! memory a slow consumer costs is bounded by that limit.
//!
//! Close codes (RFC 6455 7.4.1): 1000 normal, 1001 going away (node drain,
//! idle timeout), 1002 protocol error (including an unmasked client frame),
//! 1007 invalid UTF-8, 1008 policy (slow consumer), 1009 message too big.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, WebSocketError};
use futures::future::{Either, select};
use monoio::io::IntoPollIo;
use tokio::io::AsyncWriteExt;

use rayltics_net::Shutdown;

use super::coalesce::FlushTick;
use super::frame;
use super::reader::{self, FrameReader};

/// What a connection's owner does with complete messages.
pub trait Messages {
    /// A complete text message (valid UTF-8).
    fn text(&self, text: &str) -> impl std::future::Future<Output = ()>;
    /// A complete binary message.
    fn binary(&self, data: &[u8]) -> impl std::future::Future<Output = ()>;
}

/// Limits of one connection.
#[derive(Debug, Clone)]
pub struct SocketLimits {
    /// Largest message (after reassembly), bytes.
    pub max_message_bytes: usize,
    /// Largest send backlog before the connection is cut with 1008, bytes.
    pub send_queue_bytes: usize,
    /// A connection that sends nothing (not even a pong) for this long is
    /// closed with 1001.
    pub idle_timeout: Duration,
    /// The server pings a connection it has written nothing to for this long.
    pub ping_interval: Duration,
    /// A socket written to less than this long ago waits for the shard's
    /// next write tick (zero: write at once).
    pub write_coalesce: Duration,
}

/// Why an outbox refused a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The connection is closing.
    Closing,
    /// The reader is too slow: the connection is now being closed with 1008.
    Overflow,
}

/// The bounded send queue of one connection.
#[derive(Debug)]
pub struct Outbox {
    inner: RefCell<OutboxInner>,
}

#[derive(Debug)]
struct OutboxInner {
    frames: VecDeque<Bytes>,
    queued: usize,
    limit: usize,
    /// A close frame is queued (or written): nothing more is accepted.
    closing: bool,
    writer: Option<Waker>,
    /// The reader, waiting to hear that the connection is closing.
    reader: Option<Waker>,
    /// The code of the close frame the server queued, once there is one.
    close_code: Option<u16>,
    /// The send queue overflowed (a slow consumer).
    overflowed: bool,
    /// Data frames were queued since the last keep-alive check.
    wrote: bool,
}

impl Outbox {
    /// An empty outbox holding at most `limit` bytes of data frames.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: RefCell::new(OutboxInner {
                frames: VecDeque::new(),
                queued: 0,
                limit,
                closing: false,
                writer: None,
                reader: None,
                close_code: None,
                overflowed: false,
                wrote: false,
            }),
        }
    }

    /// Queues a data frame. Past the limit the backlog is dropped and a
    /// 1008 close queued instead.
    pub fn push(&self, frame: Bytes) -> Result<(), Refused> {
        let mut o = self.inner.borrow_mut();
        if o.closing {
            return Err(Refused::Closing);
        }
        if o.queued + frame.len() > o.limit {
            o.frames.clear();
            o.queued = 0;
            o.overflowed = true;
            drop(o);
            self.close(1008, "send queue full: the client reads too slowly");
            return Err(Refused::Overflow);
        }
        o.queued += frame.len();
        o.wrote = true;
        o.frames.push_back(frame);
        if let Some(w) = o.writer.take() {
            w.wake();
        }
        Ok(())
    }

    /// Queues a control frame (pong, close echo) past the limit.
    fn push_control(&self, frame: Bytes, closes: bool) {
        let mut o = self.inner.borrow_mut();
        if o.closing {
            return;
        }
        o.closing |= closes;
        o.frames.push_back(frame);
        if let Some(w) = o.writer.take() {
            w.wake();
        }
        if closes && let Some(r) = o.reader.take() {
            r.wake();
        }
    }

    /// Resolves once a close frame is queued.
    async fn closing(&self) {
        poll_fn(|cx| {
            let mut o = self.inner.borrow_mut();
            if o.closing {
                return Poll::Ready(());
            }
            o.reader = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Queues a close frame with `code` (once; later calls do nothing).
    pub fn close(&self, code: u16, reason: &str) {
        let first = {
            let mut o = self.inner.borrow_mut();
            !o.closing && o.close_code.replace(code).is_none()
        };
        if first {
            self.push_control(frame::close(code, reason), true);
        }
    }

    /// Whether a close frame is queued or sent.
    pub fn is_closing(&self) -> bool {
        self.inner.borrow().closing
    }

    /// Bytes of data frames waiting.
    pub fn queued_bytes(&self) -> usize {
        self.inner.borrow().queued
    }

    /// Waits for frames and moves them into `batch` (swapped when it is
    /// empty, so the two queues trade buffers and nothing is allocated);
    /// returns whether the last one is the close.
    async fn take_all(&self, batch: &mut VecDeque<Bytes>) -> bool {
        poll_fn(|cx| {
            if self.inner.borrow().frames.is_empty() {
                self.inner.borrow_mut().writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(self.take_now(batch))
        })
        .await
    }

    /// Moves what is queued into `batch` now; returns whether the last
    /// frame is the close.
    fn take_now(&self, batch: &mut VecDeque<Bytes>) -> bool {
        let mut o = self.inner.borrow_mut();
        if batch.is_empty() {
            std::mem::swap(&mut o.frames, batch);
        } else {
            batch.extend(o.frames.drain(..));
        }
        o.queued = 0;
        o.closing
    }

    /// Queues a ping unless something was sent since the last call: the
    /// shard's keep-alive sweep (one timer per shard, not per connection).
    pub fn ping_if_quiet(&self) {
        let quiet = !std::mem::replace(&mut self.inner.borrow_mut().wrote, false);
        if quiet {
            self.push_control(frame::encode(OpCode::Ping, b""), false);
        }
    }
}

/// Runs a connection to its end: `messages` gets each complete message,
/// `outbox` carries everything sent. Returns the close code it ended with.
pub async fn run<M: Messages>(
    stream: monoio::net::TcpStream,
    leftover: Vec<u8>,
    outbox: Rc<Outbox>,
    messages: &M,
    limits: &SocketLimits,
    tick: Option<Rc<FlushTick>>,
    shutdown: &Shutdown,
) -> u16 {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let Ok(stream) = stream.into_poll_io() else {
        return 1006;
    };
    let (read, write) = tokio::io::split(stream);
    let mut ws = FrameReader::new(read, leftover, limits.max_message_bytes);
    let coalesce = tick.map(|t| (t, limits.write_coalesce));
    let writer = monoio::spawn(write_loop(outbox.clone(), write, coalesce));
    let code = read_loop(&mut ws, &outbox, messages, limits, shutdown).await;
    outbox.close(code, "");
    let (code, overflowed) = {
        let o = outbox.inner.borrow();
        (o.close_code.unwrap_or(code), o.overflowed)
    };
    if overflowed {
        // A slow consumer: what the kernel still buffers for it goes too.
        abort(fd);
    }
    // The writer ends once the close frame is out (or the socket failed).
    let _ = monoio::time::timeout(Duration::from_secs(2), writer).await;
    if outbox.is_closing() && code != 1006 {
        // Give the client a moment to answer our close before the socket goes.
        let _ = monoio::time::timeout(Duration::from_millis(500), async {
            while let Ok(f) = ws.read_frame(&mut |_| {}).await {
                if f.opcode == OpCode::Close {
                    break;
                }
            }
        })
        .await;
    }
    code
}

/// Resets the connection: unsent bytes are discarded (no lingering in
/// kernel buffers) and the writer's pending write fails at once.
fn abort(fd: std::os::fd::RawFd) {
    // SAFETY: `fd` is this connection's socket and stays open for the
    // duration of the borrow: the caller still holds its read half.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&fd);
    let _ = sock.set_linger(Some(Duration::ZERO));
    let _ = sock.shutdown(std::net::Shutdown::Both);
}

type Reader = FrameReader<tokio::io::ReadHalf<monoio::net::tcp::stream_poll::TcpStreamPoll>>;

/// A message being reassembled from fragments.
struct Partial {
    opcode: OpCode,
    data: Vec<u8>,
    /// Prefix of `data` known to be valid UTF-8 (text only).
    valid_to: usize,
}

async fn read_loop<M: Messages>(
    ws: &mut Reader,
    outbox: &Rc<Outbox>,
    messages: &M,
    limits: &SocketLimits,
    shutdown: &Shutdown,
) -> u16 {
    let mut partial: Option<Partial> = None;
    loop {
        if outbox.is_closing() {
            return 1000;
        }
        let frame = {
            let mut obligations = |f: Frame<'_>| {
                let closes = f.opcode == OpCode::Close;
                outbox.push_control(frame::encode(f.opcode, &f.payload), closes);
            };
            let read = std::pin::pin!(monoio::time::timeout(
                limits.idle_timeout,
                ws.read_frame(&mut obligations)
            ));
            // Ends on the server's own close too (a slow consumer cut
            // off, a write failure): the client may never send again.
            let draining = std::pin::pin!(shutdown.wait());
            let closing = std::pin::pin!(outbox.closing());
            let stop = select(draining, closing);
            match select(read, stop).await {
                Either::Left((Ok(result), _)) => result,
                Either::Left((Err(_elapsed), _)) => {
                    outbox.close(1001, "idle timeout");
                    return 1001;
                }
                Either::Right((Either::Left(_), _)) => {
                    outbox.close(1001, "server shutting down");
                    return 1001;
                }
                Either::Right((Either::Right(_), _)) => return 1000,
            }
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return fail(outbox, e),
        };
        match frame.opcode {
            OpCode::Close => return 1000,
            OpCode::Ping | OpCode::Pong => {}
            OpCode::Text | OpCode::Binary => {
                if partial.is_some() {
                    return fail(outbox, WebSocketError::InvalidFragment);
                }
                if frame.fin {
                    deliver(messages, frame.opcode, &frame.payload).await;
                } else {
                    let mut p = Partial {
                        opcode: frame.opcode,
                        data: Vec::new(),
                        valid_to: 0,
                    };
                    if let Err(code) = p.extend(&frame.payload, false, limits) {
                        return refuse(outbox, code);
                    }
                    partial = Some(p);
                }
            }
            OpCode::Continuation => {
                let Some(p) = partial.as_mut() else {
                    return fail(outbox, WebSocketError::InvalidContinuationFrame);
                };
                if let Err(code) = p.extend(&frame.payload, frame.fin, limits) {
                    return refuse(outbox, code);
                }
                if frame.fin {
                    let p = partial.take().expect("checked above");
                    deliver(messages, p.opcode, &p.data).await;
                }
            }
        }
    }
}

impl Partial {
    /// Appends a fragment; fails fast on a size or UTF-8 violation.
    fn extend(&mut self, bytes: &[u8], fin: bool, limits: &SocketLimits) -> Result<(), u16> {
        if self.data.len() + bytes.len() > limits.max_message_bytes {
            return Err(1009);
        }
        self.data.extend_from_slice(bytes);
        if self.opcode == OpCode::Text {
            match std::str::from_utf8(&self.data[self.valid_to..]) {
                Ok(_) => self.valid_to = self.data.len(),
                Err(e) if e.error_len().is_some() => return Err(1007),
                Err(e) if fin => {
                    let _ = e;
                    return Err(1007);
                }
                Err(e) => self.valid_to += e.valid_up_to(),
            }
        }
        Ok(())
    }
}

async fn deliver<M: Messages>(messages: &M, opcode: OpCode, data: &[u8]) {
    // Boxed: the handler's future lives only while a message is handled,
    // instead of widening every idle connection's task by its size.
    if opcode == OpCode::Text {
        // Unfragmented text was checked by the parser, reassembled text here.
        if let Ok(text) = std::str::from_utf8(data) {
            Box::pin(messages.text(text)).await;
        }
    } else {
        Box::pin(messages.binary(data)).await;
    }
}

/// Closes after a protocol violation; returns the code.
fn fail(outbox: &Outbox, e: WebSocketError) -> u16 {
    let code = match &e {
        WebSocketError::InvalidUTF8 => 1007,
        WebSocketError::FrameTooLarge => 1009,
        WebSocketError::IoError(io) if reader::is_malformed(io) => 1002,
        WebSocketError::IoError(_) | WebSocketError::UnexpectedEOF => return 1006,
        WebSocketError::ConnectionClosed => return 1000,
        _ => 1002,
    };
    refuse(outbox, code)
}

fn refuse(outbox: &Outbox, code: u16) -> u16 {
    let reason = match code {
        1007 => "invalid UTF-8",
        1009 => "message too big",
        _ => "protocol error",
    };
    outbox.close(code, reason);
    code
}

/// A batch the client does not take within this long ends the connection
/// (and with it the writer: nothing waits on a dead reader forever).
const WRITE_STALL: Duration = Duration::from_secs(10);

async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(
    outbox: Rc<Outbox>,
    mut write: W,
    coalesce: Option<(Rc<FlushTick>, Duration)>,
) {
    let mut buf = Vec::new();
    let mut batch = VecDeque::new();
    let mut last_write: Option<std::time::Instant> = None;
    loop {
        let mut closing = outbox.take_all(&mut batch).await;
        if let Some((tick, interval)) = &coalesce
            && !closing
            && last_write.is_some_and(|t| t.elapsed() < *interval)
        {
            // Written to a moment ago: gather what else comes until the
            // shard's next tick, and write it all at once.
            tick.wait().await;
            closing = outbox.take_now(&mut batch);
        }
        let write_batch = async {
            if batch.len() == 1 {
                write.write_all(&batch[0]).await
            } else {
                buf.clear();
                for f in &batch {
                    buf.extend_from_slice(f);
                }
                write.write_all(&buf).await
            }
        };
        let mut write_batch = std::pin::pin!(write_batch);
        // Most writes complete at once: only a write that has to wait for
        // the client gets a stall timer.
        let result = match futures::poll!(write_batch.as_mut()) {
            Poll::Ready(r) => Ok(r),
            Poll::Pending => monoio::time::timeout(WRITE_STALL, write_batch).await,
        };
        if coalesce.is_some() {
            last_write = Some(std::time::Instant::now());
        }
        batch.clear();
        if buf.capacity() > 64 * 1024 {
            buf = Vec::new();
        }
        if batch.capacity() > 64 {
            batch = VecDeque::new();
        }
        if !matches!(result, Ok(Ok(()))) {
            outbox.close(1006, "");
            return;
        }
        if closing {
            let _ = write.shutdown().await;
            return;
        }
    }
}
