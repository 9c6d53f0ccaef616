//! HTTP/1.1 on the generator's hot path: requests are encoded once, responses
//! are framed incrementally (status line + headers by httparse, then a
//! `Content-Length` or chunked body that is skipped, never copied).
//!
//! The parser keeps no buffer of its own: the connection feeds it whatever
//! bytes it has, and it says how many it consumed and whether a response ended.
//! Only when asked ([`ResponseParser::sniffing_all`]) does it keep the first
//! bytes of bodies, to tell expected refusals (`sold_out`) from errors and
//! read an order's id.
//!
//! Flash-sale purchases ([`KeyedPost`]: a bearer token per connection, an
//! `Idempotency-Key` per request) are written from a fixed per-connection
//! prefix, a decimal counter and a fixed suffix.

use std::sync::atomic::{AtomicU64, Ordering};

/// Most headers a response may carry before it counts as a parse error.
const MAX_HEADERS: usize = 32;
/// Bytes of a 4xx/5xx body kept when sniffing (a problem+json `type` URI
/// names its `code` within the first 64 bytes).
const SNIFF: usize = 256;

/// Encodes `GET path` with a `Host` header, as wrk and oha send it.
pub(crate) fn encode_get(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// A JSON `POST` sent by every connection with its own bearer token and a
/// unique `Idempotency-Key` per request: `{run}-{conn}-{seq}`, where `run`
/// is unique per [`KeyedPost::new_run`] call, `conn` the connection's index
/// in the run and `seq` its request counter.
#[derive(Debug)]
pub(crate) struct KeyedPost {
    /// Request line and the headers shared by all connections.
    head: String,
    /// Bearer tokens: connection `i` uses `tokens[i % tokens.len()]`.
    tokens: Vec<String>,
    /// Blank line and body.
    suffix: Vec<u8>,
}

impl KeyedPost {
    pub(crate) fn new(host: &str, path: &str, tokens: Vec<String>, body: &str) -> Self {
        assert!(!tokens.is_empty(), "a keyed POST needs a token");
        Self {
            head: format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ),
            tokens,
            suffix: format!("\r\n\r\n{body}").into_bytes(),
        }
    }

    /// Which token (user) connection `conn` sends as.
    pub(crate) fn user_of(&self, conn: usize) -> usize {
        conn % self.tokens.len()
    }

    /// A run tag no earlier run of this process (nor, practically, of any
    /// other) used: keys of a new run never replay an old answer.
    pub(crate) fn new_run() -> String {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        format!(
            "{nanos:x}{:x}r{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Connection `conn`'s requests up to the key's counter.
    pub(crate) fn conn_prefix(&self, run: &str, conn: usize) -> Vec<u8> {
        format!(
            "{}Authorization: Bearer {}\r\nIdempotency-Key: {run}-{conn}-",
            self.head,
            self.tokens[self.user_of(conn)]
        )
        .into_bytes()
    }

    /// Appends request `seq` of the connection whose prefix is `prefix`.
    pub(crate) fn encode(&self, prefix: &[u8], seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(prefix);
        push_decimal(out, seq);
        out.extend_from_slice(&self.suffix);
    }
}

/// Appends `n` in decimal, without allocating.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Why a response could not be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// The status line or a header was malformed.
    Head,
    /// A chunk size line or chunk terminator was malformed.
    Chunk,
    /// `Content-Length` was not a number (or several disagreed).
    Length,
}

/// What one call to [`ResponseParser::advance`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// `consumed` bytes were used; the response is not complete yet.
    NeedMore { consumed: usize },
    /// A final response ended after `consumed` bytes.
    Done {
        consumed: usize,
        status: u16,
        /// The server will close the connection after this response.
        close: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body {
        remaining: u64,
    },
    ChunkSize,
    ChunkData {
        remaining: u64,
    },
    ChunkCrlf,
    Trailer,
    /// No length and not chunked: the body ends when the server closes.
    UntilClose,
}

/// Incremental framer for the responses on one connection.
#[derive(Debug)]
pub(crate) struct ResponseParser {
    state: State,
    status: u16,
    close: bool,
    /// Keep the first bytes of every body (see [`Self::sniffed`]).
    sniff_bodies: bool,
    /// The current response's body is being kept.
    sniffing: bool,
    sniff: [u8; SNIFF],
    sniff_len: usize,
}

impl Default for ResponseParser {
    fn default() -> Self {
        Self {
            state: State::Head,
            status: 0,
            close: false,
            sniff_bodies: false,
            sniffing: false,
            sniff: [0; SNIFF],
            sniff_len: 0,
        }
    }
}

impl ResponseParser {
    /// A parser that keeps the first 256 bytes of every body (an order's
    /// id, a payment's status, a refusal's problem `code`).
    pub(crate) fn sniffing_all() -> Self {
        Self {
            sniff_bodies: true,
            ..Self::default()
        }
    }

    /// Forgets a half-read response (the connection was closed).
    pub(crate) fn reset(&mut self) {
        self.state = State::Head;
        self.status = 0;
        self.close = false;
        self.sniffing = false;
        self.sniff_len = 0;
    }

    /// With [`Self::sniffing_all`]: the first bytes of the body of the
    /// response that just ended (else empty).
    pub(crate) fn sniffed(&self) -> &[u8] {
        &self.sniff[..self.sniff_len]
    }

    fn keep(&mut self, body: &[u8]) {
        let n = body.len().min(SNIFF - self.sniff_len);
        self.sniff[self.sniff_len..self.sniff_len + n].copy_from_slice(&body[..n]);
        self.sniff_len += n;
    }

    /// True while the body runs until the server closes the connection; the
    /// caller then ends the response itself on EOF with [`Self::status`].
    pub(crate) fn reads_until_close(&self) -> bool {
        self.state == State::UntilClose
    }

    /// Status code of the response being read.
    pub(crate) fn status(&self) -> u16 {
        self.status
    }

    /// Consumes as much of `buf` as belongs to the current response.
    pub(crate) fn advance(&mut self, buf: &[u8]) -> Result<Step, ParseError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                State::Head => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut resp = httparse::Response::new(&mut headers);
                    let n = match resp.parse(rest) {
                        Ok(httparse::Status::Complete(n)) => n,
                        Ok(httparse::Status::Partial) => {
                            return Ok(Step::NeedMore { consumed: pos });
                        }
                        Err(_) => return Err(ParseError::Head),
                    };
                    pos += n;
                    let status = resp.code.unwrap_or(0);
                    if (100..200).contains(&status) {
                        // Interim response (100 Continue): the final one follows.
                        continue;
                    }
                    let mut close = resp.version == Some(0);
                    let mut length: Option<u64> = None;
                    let mut chunked = false;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let v = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|s| s.trim().parse::<u64>().ok())
                                .ok_or(ParseError::Length)?;
                            if length.is_some_and(|l| l != v) {
                                return Err(ParseError::Length);
                            }
                            length = Some(v);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked =
                                h.value
                                    .split(|b| *b == b',')
                                    .next_back()
                                    .is_some_and(|last| {
                                        last.trim_ascii().eq_ignore_ascii_case(b"chunked")
                                    });
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            for token in h.value.split(|b| *b == b',') {
                                let token = token.trim_ascii();
                                if token.eq_ignore_ascii_case(b"close") {
                                    close = true;
                                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                                    close = false;
                                }
                            }
                        }
                    }
                    self.status = status;
                    self.close = close;
                    self.sniffing = self.sniff_bodies;
                    self.sniff_len = 0;
                    self.state = if status == 204 || status == 304 {
                        State::Body { remaining: 0 }
                    } else if chunked {
                        State::ChunkSize
                    } else if let Some(l) = length {
                        State::Body { remaining: l }
                    } else {
                        self.close = true;
                        State::UntilClose
                    };
                }
                State::Body { remaining } => {
                    let take = remaining.min(rest.len() as u64);
                    if self.sniffing {
                        self.keep(&rest[..take as usize]);
                    }
                    pos += take as usize;
                    if take == remaining {
                        return Ok(self.finish(pos));
                    }
                    self.state = State::Body {
                        remaining: remaining - take,
                    };
                    return Ok(Step::NeedMore { consumed: pos });
                }
                State::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((n, size))) => {
                        pos += n;
                        self.state = if size == 0 {
                            State::Trailer
                        } else {
                            State::ChunkData { remaining: size }
                        };
                    }
                    Ok(httparse::Status::Partial) => return Ok(Step::NeedMore { consumed: pos }),
                    Err(_) => return Err(ParseError::Chunk),
                },
                State::ChunkData { remaining } => {
                    let take = remaining.min(rest.len() as u64);
                    if self.sniffing {
                        self.keep(&rest[..take as usize]);
                    }
                    pos += take as usize;
                    if take < remaining {
                        self.state = State::ChunkData {
                            remaining: remaining - take,
                        };
                        return Ok(Step::NeedMore { consumed: pos });
                    }
                    self.state = State::ChunkCrlf;
                }
                State::ChunkCrlf => {
                    if rest.len() < 2 {
                        return Ok(Step::NeedMore { consumed: pos });
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ParseError::Chunk);
                    }
                    pos += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailer => {
                    let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                        return Ok(Step::NeedMore { consumed: pos });
                    };
                    pos += eol + 2;
                    if eol == 0 {
                        return Ok(self.finish(pos));
                    }
                }
                State::UntilClose => {
                    return Ok(Step::NeedMore {
                        consumed: buf.len(),
                    });
                }
            }
        }
    }

    fn finish(&mut self, consumed: usize) -> Step {
        let step = Step::Done {
            consumed,
            status: self.status,
            close: self.close,
        };
        self.state = State::Head;
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `piece` bytes, returning the finished statuses.
    fn feed(input: &[u8], piece: usize) -> Result<Vec<(u16, bool)>, ParseError> {
        let mut p = ResponseParser::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            buf.extend_from_slice(chunk);
            loop {
                if buf.is_empty() {
                    break;
                }
                match p.advance(&buf)? {
                    Step::NeedMore { consumed } => {
                        buf.drain(..consumed);
                        break;
                    }
                    Step::Done {
                        consumed,
                        status,
                        close,
                    } => {
                        buf.drain(..consumed);
                        out.push((status, close));
                    }
                }
            }
        }
        Ok(out)
    }

    const HYPER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\nok";
    const CHUNKED: &[u8] = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10;ext=1\r\n0123456789abcdef\r\n0\r\nx-trailer: 1\r\n\r\n";

    #[test]
    fn pipelined_responses_in_any_split() {
        let mut input = Vec::new();
        for _ in 0..3 {
            input.extend_from_slice(HYPER);
            input.extend_from_slice(CHUNKED);
        }
        for piece in [1, 2, 3, 7, 64, input.len()] {
            let got = feed(&input, piece).unwrap();
            assert_eq!(got.len(), 6, "piece {piece}");
            assert_eq!(got[0], (200, false));
            assert_eq!(got[1], (404, false));
        }
    }

    #[test]
    fn connection_close_and_http10() {
        let r = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(feed(r, 5).unwrap(), vec![(503, true)]);
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx";
        assert_eq!(feed(r, 100).unwrap(), vec![(200, true)]);
        let r = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx";
        assert_eq!(feed(r, 100).unwrap(), vec![(200, false)]);
    }

    #[test]
    fn interim_and_no_body_statuses() {
        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(feed(r, 4).unwrap(), vec![(204, false), (200, false)]);
    }

    #[test]
    fn body_until_close() {
        let mut p = ResponseParser::default();
        let step = p.advance(b"HTTP/1.1 200 OK\r\n\r\nabc").unwrap();
        assert!(matches!(step, Step::NeedMore { consumed: 22 }));
        assert!(p.reads_until_close());
        assert_eq!(p.status(), 200);
    }

    #[test]
    fn errors() {
        assert_eq!(feed(b"HTTX/1.1 200 OK\r\n\r\n", 100), Err(ParseError::Head));
        assert_eq!(
            feed(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 100),
            Err(ParseError::Length)
        );
        assert_eq!(
            feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                100
            ),
            Err(ParseError::Chunk)
        );
    }

    #[test]
    fn bodies_are_sniffed_across_reads() {
        let body = br#"{"type":"https://rayltics.dev/problems/sold_out","status":409}"#;
        let mut input = format!(
            "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{{}}HTTP/1.1 409 Conflict\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        input.extend_from_slice(body);
        let mut p = ResponseParser::sniffing_all();
        let (first, second) = input.split_at(input.len() - 10);
        let Step::Done { consumed, .. } = p.advance(first).unwrap() else {
            panic!("the 201 is complete")
        };
        assert_eq!(p.sniffed(), b"{}");
        let Step::NeedMore { consumed: more } = p.advance(&first[consumed..]).unwrap() else {
            panic!("the 409 is not complete yet")
        };
        assert_eq!(consumed + more, first.len());
        assert!(matches!(
            p.advance(second),
            Ok(Step::Done { status: 409, .. })
        ));
        assert_eq!(p.sniffed(), body);
        let mut plain = ResponseParser::default();
        assert!(matches!(plain.advance(&input), Ok(Step::Done { .. })));
        assert!(plain.sniffed().is_empty());
    }

    #[test]
    fn keyed_posts() {
        let t = KeyedPost::new("h:1", "/buy", vec!["a".into(), "b".into()], "{}");
        assert_eq!(t.user_of(3), 1);
        let prefix = t.conn_prefix("r7", 3);
        let mut out = Vec::new();
        t.encode(&prefix, 0, &mut out);
        t.encode(&prefix, 1_234_567, &mut out);
        let text = String::from_utf8(out).unwrap();
        let one = "POST /buy HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nAuthorization: Bearer b\r\nIdempotency-Key: r7-3-";
        assert_eq!(text, format!("{one}0\r\n\r\n{{}}{one}1234567\r\n\r\n{{}}"));
        assert_ne!(KeyedPost::new_run(), KeyedPost::new_run());
    }

    #[test]
    fn get_encoding() {
        assert_eq!(
            encode_get("127.0.0.1:8080", "/healthz"),
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
    }
}
