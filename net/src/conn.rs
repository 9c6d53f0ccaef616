//! The per-connection loop: parse, enforce limits, frame bodies, dispatch,
//! write responses in order.

use std::future::Future;
use std::time::Duration;

use std::pin::Pin;
use std::time::Instant;

use futures::FutureExt;
use futures::future::{Either, select};
use httparse::Status;
use monoio::time::Sleep;
use monoio::time::timeout;

use crate::limits::HttpLimits;
use crate::problem::Problem;
use crate::request::{Method, Request};
use crate::response::{Connection, Response};
use crate::shutdown::{Shutdown, Wait};
use crate::transport::Transport;

/// What the edge calls for each complete request.
pub trait Handler {
    /// Answers `req`. Runs on the shard that accepted the connection.
    fn handle(&self, req: &Request) -> impl Future<Output = Response>;

    /// Called when the edge itself answers (400, 408, 413, 414, 431, ...)
    /// without reaching the handler; for metrics.
    fn edge_error(&self, _status: u16) {}
}

/// Largest response backlog kept while more pipelined requests are parsed.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Buffers above this are shrunk back after use (a big body or response
/// must not pin memory on an idle keep-alive connection).
const KEEP_BUFFER_BYTES: usize = 64 * 1024;
const INITIAL_BUFFER_BYTES: usize = 4096;
/// After an error answer, unread input is drained for at most this long so
/// the client sees the answer instead of a reset.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;
/// A chunk-size line longer than this is malformed.
const MAX_CHUNK_LINE: usize = 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How [`serve`] left a connection.
#[derive(Debug)]
pub enum Served {
    /// HTTP is over: the client closed, a limit or timeout ended it, or the
    /// shard drained it.
    Closed,
    /// The handler answered `101 Switching Protocols` and the response was
    /// written: the transport now speaks the upgraded protocol.
    Upgraded {
        /// What the handler attached to its `101`.
        payload: crate::response::UpgradePayload,
        /// Bytes the client sent after the upgrade request (already read).
        leftover: Vec<u8>,
    },
}

/// Serves one connection until the client closes it, a limit or timeout
/// ends it, `shutdown` drains it, or a handler upgrades it.
pub async fn serve<T: Transport, H: Handler>(
    io: &mut T,
    handler: &H,
    limits: &HttpLimits,
    shutdown: &Shutdown,
) -> Served {
    let mut conn = Conn {
        io,
        limits,
        shutdown,
        body_deadline: Instant::now(),
        idle_timer: None,
        drain: None,
        rbuf: Vec::with_capacity(INITIAL_BUFFER_BYTES),
        pos: 0,
        wbuf: Vec::with_capacity(INITIAL_BUFFER_BYTES),
    };
    let mut req = Request {
        peer: conn.io.peer_ip(),
        ..Request::default()
    };
    loop {
        match conn.next_request(&mut req, shutdown).await {
            Next::Request { keep_alive } => {
                let mut response = handler.handle(&req).await;
                if response.status == 101
                    && let Some(payload) = response.upgrade.take()
                {
                    response.encode(&mut conn.wbuf, Connection::Default, false);
                    if conn.flush().await.is_err() {
                        return Served::Closed;
                    }
                    let leftover = conn.rbuf[conn.pos..].to_vec();
                    return Served::Upgraded { payload, leftover };
                }
                let close = !keep_alive || response.close || shutdown.is_triggered();
                let connection = if close {
                    Connection::Close
                } else if req.is_http10() {
                    Connection::KeepAlive
                } else {
                    Connection::Default
                };
                response.encode(&mut conn.wbuf, connection, req.method() == Method::Head);
                if close {
                    // Unread pipelined input would turn our close into a
                    // reset that can destroy this response: drain it briefly.
                    let unread = conn.pos < conn.rbuf.len();
                    if conn.flush().await.is_ok() && unread {
                        conn.linger().await;
                    }
                    return Served::Closed;
                }
                if (conn.wbuf.len() >= WRITE_BATCH_BYTES || conn.pos == conn.rbuf.len())
                    && conn.flush().await.is_err()
                {
                    return Served::Closed;
                }
            }
            Next::Fail(problem) => {
                handler.edge_error(problem.status);
                problem
                    .into_response()
                    .encode(&mut conn.wbuf, Connection::Close, false);
                if conn.flush().await.is_ok() {
                    conn.linger().await;
                }
                return Served::Closed;
            }
            Next::Close => {
                let _ = conn.flush().await;
                return Served::Closed;
            }
        }
        conn.shrink();
    }
}

enum Next {
    Request { keep_alive: bool },
    Fail(Problem),
    Close,
}

enum Framing {
    None,
    Length(usize),
    Chunked,
}

enum Read {
    Data,
    Eof,
    TimedOut,
    Failed,
    Shutdown,
}

impl From<std::io::Result<usize>> for Read {
    fn from(result: std::io::Result<usize>) -> Self {
        match result {
            Ok(0) => Read::Eof,
            Ok(_) => Read::Data,
            Err(_) => Read::Failed,
        }
    }
}

struct Head {
    len: usize,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

struct Conn<'a, T> {
    io: &'a mut T,
    limits: &'a HttpLimits,
    shutdown: &'a Shutdown,
    body_deadline: Instant,
    idle_timer: Option<Pin<Box<Sleep>>>,
    drain: Option<Pin<Box<Wait<'a>>>>,
    rbuf: Vec<u8>,
    pos: usize,
    wbuf: Vec<u8>,
}

impl<T: Transport> Conn<'_, T> {
    async fn next_request(&mut self, req: &mut Request, shutdown: &Shutdown) -> Next {
        req.clear();
        // One deadline for the whole head (from its first byte), so a client
        // trickling a byte at a time cannot hold the connection forever.
        let mut head_deadline: Option<Instant> = None;
        let head = loop {
            if self.pos == self.rbuf.len() {
                self.rbuf.clear();
                self.pos = 0;
            }
            match parse_head(&self.rbuf[self.pos..], self.limits, req) {
                Ok(Some(head)) => break head,
                Err(problem) => return Next::Fail(problem),
                Ok(None) => {}
            }
            let pending = self.rbuf.len() - self.pos;
            if let Some(problem) = oversized_partial_head(&self.rbuf[self.pos..], self.limits) {
                return Next::Fail(problem);
            }
            if self.flush().await.is_err() {
                return Next::Close;
            }
            let idle = pending == 0;
            if idle && shutdown.is_triggered() {
                return Next::Close;
            }
            let outcome = if idle {
                self.read_idle().await
            } else {
                let deadline = *head_deadline
                    .get_or_insert_with(|| Instant::now() + self.limits.header_read_timeout);
                self.read_until(deadline, self.limits.max_header_bytes + 1)
                    .await
            };
            match outcome {
                Read::Data => {}
                Read::TimedOut if !idle => {
                    return Next::Fail(Problem::new(
                        408,
                        "request_timeout",
                        "the request head did not arrive in time",
                    ));
                }
                Read::Eof | Read::Failed | Read::TimedOut | Read::Shutdown => return Next::Close,
            }
        };
        self.pos += head.len;

        if head.expect_continue && !matches!(head.framing, Framing::None) {
            let buffered = self.rbuf.len() > self.pos;
            if !buffered {
                self.wbuf.extend_from_slice(CONTINUE);
                if self.flush().await.is_err() {
                    return Next::Close;
                }
            }
        }
        // Likewise one deadline for the whole body.
        self.body_deadline = Instant::now() + self.limits.body_read_timeout;
        let body = match head.framing {
            Framing::None => Ok(()),
            Framing::Length(n) => self.read_length_body(n, req).await,
            Framing::Chunked => self.read_chunked_body(req).await,
        };
        match body {
            Ok(()) => Next::Request {
                keep_alive: head.keep_alive,
            },
            Err(next) => next,
        }
    }

    async fn read_length_body(&mut self, n: usize, req: &mut Request) -> Result<(), Next> {
        while self.rbuf.len() - self.pos < n {
            let missing = n - (self.rbuf.len() - self.pos);
            self.body_read(missing).await?;
        }
        req.body
            .extend_from_slice(&self.rbuf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(())
    }

    async fn read_chunked_body(&mut self, req: &mut Request) -> Result<(), Next> {
        let max = self.limits.max_body_bytes;
        loop {
            let avail = &self.rbuf[self.pos..];
            match httparse::parse_chunk_size(avail) {
                Ok(Status::Complete((line, size))) => {
                    let size = usize::try_from(size).unwrap_or(usize::MAX);
                    if size > max.saturating_sub(req.body.len()) {
                        return Err(too_large(max));
                    }
                    if size == 0 {
                        self.pos += line;
                        return self.skip_trailers().await;
                    }
                    let need = line + size + 2;
                    if avail.len() < need {
                        self.body_read(need - avail.len()).await?;
                        continue;
                    }
                    if &avail[line + size..need] != b"\r\n" {
                        return Err(Next::Fail(Problem::bad_request("malformed chunk")));
                    }
                    req.body.extend_from_slice(&avail[line..line + size]);
                    self.pos += need;
                }
                Ok(Status::Partial) => {
                    if avail.len() > MAX_CHUNK_LINE {
                        return Err(Next::Fail(Problem::bad_request("chunk size line too long")));
                    }
                    self.body_read(1).await?;
                }
                Err(_) => return Err(Next::Fail(Problem::bad_request("malformed chunk size"))),
            }
        }
    }

    /// Skips the trailer section after the last chunk, up to its empty line.
    async fn skip_trailers(&mut self) -> Result<(), Next> {
        let mut seen = 0usize;
        loop {
            let avail = &self.rbuf[self.pos..];
            match avail.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.pos += 2;
                    return Ok(());
                }
                Some(line) => {
                    seen += line + 2;
                    self.pos += line + 2;
                    if seen > self.limits.max_header_bytes {
                        return Err(Next::Fail(Problem::new(
                            431,
                            "headers_too_large",
                            "trailer section too large",
                        )));
                    }
                }
                None => {
                    if avail.len() + seen > self.limits.max_header_bytes {
                        return Err(Next::Fail(Problem::new(
                            431,
                            "headers_too_large",
                            "trailer section too large",
                        )));
                    }
                    self.body_read(1).await?;
                }
            }
        }
    }

    async fn body_read(&mut self, at_least: usize) -> Result<(), Next> {
        match self.read_until(self.body_deadline, at_least).await {
            Read::Data => Ok(()),
            Read::TimedOut => Err(Next::Fail(Problem::new(
                408,
                "request_timeout",
                "the request body did not arrive in time",
            ))),
            Read::Eof | Read::Failed | Read::Shutdown => Err(Next::Close),
        }
    }

    /// Reads more input with room for at least `want` bytes (capped),
    /// giving up at `deadline`.
    async fn read_until(&mut self, deadline: Instant, want: usize) -> Read {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Read::TimedOut;
        }
        self.make_room(want);
        let buf = std::mem::take(&mut self.rbuf);
        match timeout(left, self.io.read(buf)).await {
            Ok((result, buf)) => {
                self.rbuf = buf;
                Read::from(result)
            }
            Err(_) => Read::TimedOut,
        }
    }

    /// Waits for the next request on a keep-alive connection: ends at the
    /// idle timeout or when the shard drains.
    ///
    /// Hot path: a request that is already there is read with one poll (no
    /// timer, no select). Otherwise the connection's one idle timer and one
    /// drain waiter (armed once per connection, re-armed only when the timer
    /// fires early) guard the wait.
    async fn read_idle(&mut self) -> Read {
        self.make_room(INITIAL_BUFFER_BYTES);
        let buf = std::mem::take(&mut self.rbuf);
        let mut read = std::pin::pin!(self.io.read(buf));
        let outcome = match (&mut read).now_or_never() {
            Some(outcome) => outcome,
            None => {
                let idle_timeout = self.limits.idle_timeout;
                let deadline = Instant::now() + idle_timeout;
                let shutdown = self.shutdown;
                let timer = self
                    .idle_timer
                    .get_or_insert_with(|| Box::pin(monoio::time::sleep(idle_timeout)));
                let stop = self.drain.get_or_insert_with(|| Box::pin(shutdown.wait()));
                loop {
                    match select(&mut read, select(timer.as_mut(), stop.as_mut())).await {
                        Either::Left((outcome, _)) => break outcome,
                        // The timer was armed for an earlier wait: re-arm it
                        // for this one unless this one is over too.
                        Either::Right((Either::Left(_), _)) => {
                            if Instant::now() >= deadline {
                                return Read::TimedOut;
                            }
                            timer.as_mut().reset(deadline.into());
                        }
                        Either::Right((Either::Right(_), _)) => return Read::Shutdown,
                    }
                }
            }
        };
        let (result, buf) = outcome;
        self.rbuf = buf;
        Read::from(result)
    }

    fn make_room(&mut self, want: usize) {
        if self.pos > 0 && self.pos == self.rbuf.len() {
            self.rbuf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.rbuf.capacity() - self.rbuf.len() < want {
            self.rbuf.drain(..self.pos);
            self.pos = 0;
        }
        let room = self.rbuf.capacity() - self.rbuf.len();
        let want = want.clamp(INITIAL_BUFFER_BYTES, 1024 * 1024);
        if room < want {
            self.rbuf.reserve(want);
        }
    }

    async fn flush(&mut self) -> Result<(), ()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.wbuf);
        let mut write = std::pin::pin!(self.io.write_all(buf));
        // Hot path: the socket takes the whole response at once; only a
        // write that has to wait gets a timer.
        let written = match (&mut write).now_or_never() {
            Some(done) => done,
            None => match timeout(self.limits.write_timeout, write).await {
                Ok(done) => done,
                Err(_) => return Err(()),
            },
        };
        match written {
            (Ok(()), mut buf) => {
                buf.clear();
                self.wbuf = buf;
                Ok(())
            }
            (Err(_), _) => Err(()),
        }
    }

    /// Drains unread input briefly after an error answer, so closing with
    /// unread data does not reset the connection before the client reads.
    async fn linger(&mut self) {
        self.io.shutdown_write().await;
        let deadline = Instant::now() + LINGER;
        let mut drained = 0;
        while drained < LINGER_BYTES {
            self.rbuf.clear();
            self.pos = 0;
            let before = self.rbuf.len();
            match self.read_until(deadline, INITIAL_BUFFER_BYTES).await {
                Read::Data => drained += self.rbuf.len() - before,
                _ => return,
            }
        }
    }

    fn shrink(&mut self) {
        if self.rbuf.capacity() > KEEP_BUFFER_BYTES && self.pos == self.rbuf.len() {
            self.rbuf = Vec::with_capacity(INITIAL_BUFFER_BYTES);
            self.pos = 0;
        }
        if self.wbuf.capacity() > KEEP_BUFFER_BYTES && self.wbuf.is_empty() {
            self.wbuf = Vec::with_capacity(INITIAL_BUFFER_BYTES);
        }
    }
}

fn too_large(max: usize) -> Next {
    Next::Fail(Problem::new(
        413,
        "payload_too_large",
        format!("request body exceeds {max} bytes"),
    ))
}

/// A partial head that can no longer become acceptable: 414 while the
/// request line alone is too long, 431 once the whole head is.
fn oversized_partial_head(buf: &[u8], limits: &HttpLimits) -> Option<Problem> {
    let line_done = buf.contains(&b'\n');
    if !line_done && buf.len() > limits.max_uri_bytes + 32 {
        return Some(Problem::new(
            414,
            "uri_too_long",
            format!("request target exceeds {} bytes", limits.max_uri_bytes),
        ));
    }
    (buf.len() > limits.max_header_bytes).then(|| headers_too_large(limits))
}

fn headers_too_large(limits: &HttpLimits) -> Problem {
    Problem::new(
        431,
        "headers_too_large",
        format!(
            "request head exceeds {} bytes or {} fields",
            limits.max_header_bytes, limits.max_headers
        ),
    )
}

/// Parses one request head from `buf` into `req`. `Ok(None)` = incomplete.
fn parse_head(buf: &[u8], limits: &HttpLimits, req: &mut Request) -> Result<Option<Head>, Problem> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Uninitialised header slots: no 4 KiB memset per request.
    let mut storage = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() };
        HttpLimits::HARD_MAX_HEADERS];
    let max_headers = limits.max_headers.clamp(1, HttpLimits::HARD_MAX_HEADERS);
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut storage[..max_headers]) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(headers_too_large(limits)),
        Err(httparse::Error::Version) => {
            return Err(Problem::new(
                505,
                "http_version_not_supported",
                "only HTTP/1.x is served",
            ));
        }
        Err(e) => return Err(Problem::bad_request(format!("malformed request: {e}"))),
    };
    if len > limits.max_header_bytes {
        return Err(headers_too_large(limits));
    }
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(Problem::bad_request("incomplete request line"));
    };
    let target = origin_form(target);
    if target.len() > limits.max_uri_bytes {
        return Err(Problem::new(
            414,
            "uri_too_long",
            format!("request target exceeds {} bytes", limits.max_uri_bytes),
        ));
    }
    let is_origin_form = target.starts_with('/') || target.is_empty();
    let asterisk_form = method == "OPTIONS" && target == "*";
    if !(is_origin_form || asterisk_form) {
        return Err(Problem::bad_request(
            "request target must be an absolute path",
        ));
    }

    req.method = Some(Method::parse(method));
    req.http10 = version == 0;
    req.head.extend_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - base;
    let t0 = offset(target.as_bytes());
    match target.find('?') {
        Some(q) => {
            req.path = t0..t0 + q;
            req.query = Some(t0 + q + 1..t0 + target.len());
        }
        None => req.path = t0..t0 + target.len(),
    }

    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut has_host = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    for h in parsed.headers.iter() {
        let n0 = offset(h.name.as_bytes());
        let v0 = offset(h.value);
        req.headers
            .push((n0..n0 + h.name.len(), v0..v0 + h.value.len()));
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = parse_content_length(h.value)
                .ok_or_else(|| Problem::bad_request("invalid Content-Length"))?;
            if content_length.is_some_and(|prev| prev != value) {
                return Err(Problem::bad_request("conflicting Content-Length headers"));
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
            chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            if !chunked || h.value.split(|b| *b == b',').count() > 1 {
                return Err(Problem::new(
                    501,
                    "unsupported_transfer_encoding",
                    "only Transfer-Encoding: chunked is supported",
                ));
            }
        } else if name.eq_ignore_ascii_case("host") {
            has_host = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                conn_close |= token.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(Problem::new(
                    417,
                    "expectation_failed",
                    "unsupported Expect value",
                ));
            }
        }
    }
    if transfer_encoding && content_length.is_some() {
        return Err(Problem::bad_request(
            "both Transfer-Encoding and Content-Length",
        ));
    }
    if version == 1 && !has_host {
        return Err(Problem::bad_request("missing Host header"));
    }
    let framing = match (chunked, content_length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) if n > limits.max_body_bytes => {
            return Err(Problem::new(
                413,
                "payload_too_large",
                format!("request body exceeds {} bytes", limits.max_body_bytes),
            ));
        }
        (false, Some(0)) | (false, None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    let keep_alive = if version == 0 {
        conn_keep_alive && !conn_close
    } else {
        !conn_close
    };
    Ok(Some(Head {
        len,
        framing,
        keep_alive,
        expect_continue,
    }))
}

/// The path-and-query of an absolute-form target (`http://host/p?q`, which
/// RFC 9112 section 3.2.2 says servers must accept); other targets as they are.
fn origin_form(target: &str) -> &str {
    let lower = |n: usize| target.get(..n).map(str::to_ascii_lowercase);
    let rest = if lower(7).as_deref() == Some("http://") {
        &target[7..]
    } else if lower(8).as_deref() == Some("https://") {
        &target[8..]
    } else {
        return target;
    };
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        // `http://host` or `http://host?q`: no path; keep the query out of it.
        _ => &rest[rest.len()..],
    }
}

fn parse_content_length(value: &[u8]) -> Option<usize> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}
