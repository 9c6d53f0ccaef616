//! WebSocket bytes on the wire, client side: the opening handshake, masked
//! client frames, server frame headers, and the fields of the chat frames of
//! API.md "Real-time" read without a JSON parser.
//!
//! The receive path is the generator's hot path (a room of 1 000 members is
//! 1 000 frames per message): a server frame is located by its 2-10 byte
//! header, and a `message` frame's `seq` and the timestamp embedded in its
//! text are read positionally from the server's fixed field order
//! (`op, room, seq, id, from, text, ts`), with a slower search by key as the
//! fallback when the order differs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Opcodes (RFC 6455 5.2).
pub(crate) const OP_CONT: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// The upgrade request for `path` (with its `?token=` query) and the
/// `Sec-WebSocket-Accept` the server must answer for `key` (16 bytes).
pub(crate) fn handshake(host: &str, path: &str, key: [u8; 16]) -> (Vec<u8>, String) {
    let key = STANDARD.encode(key);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    (req.into_bytes(), accept_key(&key))
}

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 4.2.2).
pub(crate) fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID);
    STANDARD.encode(sha.finalize())
}

/// The answer to an upgrade request, once its head is complete.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Upgrade {
    /// Head not complete yet.
    Partial,
    /// `101` with the right accept key; the head's length (frames may follow).
    Switched(usize),
    /// Any other status, or a `101` with a wrong or missing accept key (0).
    Refused(u16),
    /// Not HTTP.
    Malformed,
}

/// Reads the server's answer to the handshake.
pub(crate) fn upgrade_answer(buf: &[u8], expected_accept: &str) -> Upgrade {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => Upgrade::Partial,
        Err(_) => Upgrade::Malformed,
        Ok(httparse::Status::Complete(n)) => {
            let status = resp.code.unwrap_or(0);
            if status != 101 {
                return Upgrade::Refused(status);
            }
            let accept = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
                .map(|h| h.value);
            if accept.map(<[u8]>::trim_ascii) == Some(expected_accept.as_bytes()) {
                Upgrade::Switched(n)
            } else {
                Upgrade::Refused(0)
            }
        }
    }
}

/// Appends a complete masked client frame (FIN set) to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A server frame located in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) fin: bool,
    pub(crate) opcode: u8,
    /// Payload: `payload_start..payload_start + payload_len` of the buffer.
    pub(crate) payload_start: usize,
    pub(crate) payload_len: usize,
}

impl Frame {
    /// Bytes of the whole frame.
    pub(crate) fn end(&self) -> usize {
        self.payload_start + self.payload_len
    }
}

/// Why a server frame breaks the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A server frame must not be masked (RFC 6455 5.1).
    Masked,
    /// Reserved bits set without an extension.
    Reserved,
    /// A control frame over 125 bytes or fragmented (5.5).
    BadControl,
    /// Longer than the generator accepts.
    TooLong,
}

/// The first frame of `buf`: `Ok(None)` until it is complete.
pub(crate) fn parse(buf: &[u8], max_payload: usize) -> Result<Option<Frame>, FrameError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let (len, head) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode >= OP_CLOSE && (len > 125 || !fin) {
        return Err(FrameError::BadControl);
    }
    if len > max_payload as u64 {
        return Err(FrameError::TooLong);
    }
    let frame = Frame {
        fin,
        opcode,
        payload_start: head,
        payload_len: len as usize,
    };
    Ok((buf.len() >= frame.end()).then_some(frame))
}

/// A chat frame from the server, as far as the generator reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerOp<'a> {
    /// `{"op":"message",...}`: its room, seq and text (still JSON-escaped;
    /// the generator's texts need no escaping).
    Message {
        room: &'a [u8],
        seq: u64,
        text: &'a [u8],
    },
    /// `{"op":"ack","client_msg_id":C,"seq":N}`.
    Ack { client_msg_id: &'a [u8], seq: u64 },
    /// `{"op":"joined","room":R,"last_seq":N,...}`.
    Joined { room: &'a [u8], last_seq: u64 },
    /// `{"op":"presence",...}`.
    Presence,
    /// `{"op":"pong"}`.
    Pong,
    /// `{"op":"error","code":C,...}`.
    Error { code: &'a [u8] },
    /// Another op, or a frame these fields could not be read from.
    Other,
}

const MESSAGE: &[u8] = br#"{"op":"message","room":""#;

/// Classifies a text frame's payload and reads the fields the generator needs.
pub(crate) fn server_op(p: &[u8]) -> ServerOp<'_> {
    if p.starts_with(MESSAGE) {
        return message_fast(p)
            .or_else(|| message_slow(p))
            .unwrap_or(ServerOp::Other);
    }
    let Some(rest) = p.strip_prefix(br#"{"op":""#) else {
        return ServerOp::Other;
    };
    let op = match rest.iter().position(|&b| b == b'"') {
        Some(i) => &rest[..i],
        None => return ServerOp::Other,
    };
    let parsed = match op {
        b"message" => message_slow(p),
        b"ack" => (|| {
            Some(ServerOp::Ack {
                client_msg_id: str_field(p, b"client_msg_id")?,
                seq: num_field(p, b"seq")?,
            })
        })(),
        b"joined" => (|| {
            Some(ServerOp::Joined {
                room: str_field(p, b"room")?,
                last_seq: num_field(p, b"last_seq")?,
            })
        })(),
        b"presence" => Some(ServerOp::Presence),
        b"pong" => Some(ServerOp::Pong),
        b"error" => str_field(p, b"code").map(|code| ServerOp::Error { code }),
        _ => None,
    };
    parsed.unwrap_or(ServerOp::Other)
}

/// The server's own layout: `{"op":"message","room":"R","seq":N,"id":"I",
/// "from":"U","text":"T",...}`.
fn message_fast(p: &[u8]) -> Option<ServerOp<'_>> {
    let mut at = MESSAGE.len();
    let room = until_quote(p, at)?;
    at += room.len();
    at = expect(p, at, br#"","seq":"#)?;
    let (seq, used) = digits(&p[at..])?;
    at += used;
    at = expect(p, at, br#","id":""#)?;
    at += until_quote(p, at)?.len();
    at = expect(p, at, br#"","from":""#)?;
    at += until_quote(p, at)?.len();
    at = expect(p, at, br#"","text":""#)?;
    let text = until_quote(p, at)?;
    if text.contains(&b'\\') {
        // An escaped quote may hide the real end: read it the slow way.
        return None;
    }
    Some(ServerOp::Message { room, seq, text })
}

/// Any field order.
fn message_slow(p: &[u8]) -> Option<ServerOp<'_>> {
    Some(ServerOp::Message {
        room: str_field(p, b"room")?,
        seq: num_field(p, b"seq")?,
        text: str_field(p, b"text")?,
    })
}

fn expect(p: &[u8], at: usize, lit: &[u8]) -> Option<usize> {
    p.get(at..at + lit.len())
        .filter(|s| *s == lit)
        .map(|_| at + lit.len())
}

/// The bytes from `at` to the next unescaped `"`.
fn until_quote(p: &[u8], at: usize) -> Option<&[u8]> {
    let s = p.get(at..)?;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(&s[..i]),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// A decimal number at the start of `s`: its value and length.
pub(crate) fn digits(s: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        n += 1;
    }
    (n > 0).then_some((v, n))
}

/// Where the value of top-level-looking key `"key":` starts.
fn value_at(p: &[u8], key: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = find(&p[from..], key) {
        let start = from + i;
        let end = start + key.len();
        // `"key":` with the quotes around the key.
        if start > 0 && p[start - 1] == b'"' && p.get(end..end + 2) == Some(br#"":"#) {
            return Some(end + 2);
        }
        from = end;
    }
    None
}

fn str_field<'a>(p: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = value_at(p, key)?;
    if p.get(at) != Some(&b'"') {
        return None;
    }
    until_quote(p, at + 1)
}

fn num_field(p: &[u8], key: &[u8]) -> Option<u64> {
    digits(&p[value_at(p, key)?..]).map(|(v, _)| v)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The timestamp the generator embeds at the start of a message's text,
/// `t=<unix nanoseconds> ...`.
pub(crate) fn embedded_time(text: &[u8]) -> Option<u64> {
    digits(text.strip_prefix(b"t=")?).map(|(v, _)| v)
}

/// Writes a message's text: `t=<unix ns> c=<sender>-<k>` (also its
/// `client_msg_id`, so an ack names the text it acknowledges).
pub(crate) fn message_text(out: &mut Vec<u8>, unix_ns: u64, sender: usize, k: u64) {
    use std::io::Write as _;
    let _ = write!(out, "t={unix_ns} c={sender}-{k}");
}

/// A `send` frame's JSON for `room` whose text and `client_msg_id` are both
/// `text` (which needs no JSON escaping).
pub(crate) fn send_json(out: &mut Vec<u8>, room: &str, text: &[u8]) {
    out.extend_from_slice(br#"{"op":"send","room":""#);
    out.extend_from_slice(room.as_bytes());
    out.extend_from_slice(br#"","text":""#);
    out.extend_from_slice(text);
    out.extend_from_slice(br#"","client_msg_id":""#);
    out.extend_from_slice(text);
    out.extend_from_slice(br#""}"#);
}

/// A message's identity for the delivery check: its seq and its text. The
/// sum over a member's messages equals the sum over the room's acks exactly
/// when they hold the same (seq, text) pairs (up to a 2^-64 accident).
pub(crate) fn tag(seq: u64, text: &[u8]) -> u64 {
    // FNV-1a over the text, then SplitMix64's finaliser with the seq.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in text {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let (req, accept) = handshake("h:1", "/ws?token=abc", *b"the sample nonce");
        let req = String::from_utf8(req).unwrap();
        assert!(req.starts_with("GET /ws?token=abc HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(req.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn upgrade_answers() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        let acc = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        assert_eq!(upgrade_answer(ok, acc), Upgrade::Switched(ok.len() - 2));
        assert_eq!(upgrade_answer(&ok[..40], acc), Upgrade::Partial);
        assert_eq!(upgrade_answer(ok, "other"), Upgrade::Refused(0));
        assert_eq!(
            upgrade_answer(
                b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n",
                acc
            ),
            Upgrade::Refused(401)
        );
        assert_eq!(upgrade_answer(b"\x81\x05hello", acc), Upgrade::Malformed);
    }

    /// Unmasks a client frame the way a server does.
    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        assert_eq!(frame[0] & 0x80, 0x80, "FIN");
        assert_eq!(frame[1] & 0x80, 0x80, "client frames are masked");
        let (len, at) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let mask = &frame[at..at + 4];
        let payload = frame[at + 4..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect::<Vec<_>>();
        assert_eq!(payload.len(), len);
        (frame[0] & 0x0F, payload)
    }

    #[test]
    fn client_frames_are_masked() {
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            encode(&mut out, OP_TEXT, &payload, [1, 2, 3, 4]);
            let (op, back) = unmask(&out);
            assert_eq!((op, back), (OP_TEXT, payload));
        }
        let mut out = Vec::new();
        encode(&mut out, OP_PONG, b"hi", [9, 9, 9, 9]);
        assert_eq!(unmask(&out), (OP_PONG, b"hi".to_vec()));
    }

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 65535 => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn server_frames_are_located() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536] {
            let payload = vec![b'x'; len];
            let f = server_frame(OP_TEXT, &payload);
            let got = parse(&f, 1 << 20).unwrap().unwrap();
            assert_eq!((got.fin, got.opcode, got.payload_len), (true, OP_TEXT, len));
            assert_eq!(got.end(), f.len());
            // Every strict prefix is incomplete, not an error.
            for cut in [0, 1, got.payload_start - 1, f.len() - 1] {
                if cut < f.len() {
                    assert_eq!(parse(&f[..cut], 1 << 20), Ok(None), "len {len} cut {cut}");
                }
            }
        }
        // Two frames back to back: the first ends where the second starts.
        let mut two = server_frame(OP_TEXT, b"one");
        two.extend(server_frame(OP_PING, b""));
        let first = parse(&two, 100).unwrap().unwrap();
        let second = parse(&two[first.end()..], 100).unwrap().unwrap();
        assert_eq!((second.opcode, second.payload_len), (OP_PING, 0));
        assert_eq!(first.end() + second.end(), two.len());
    }

    #[test]
    fn protocol_violations() {
        assert_eq!(parse(b"\x81\x85abcd", 100), Err(FrameError::Masked));
        assert_eq!(parse(b"\xC1\x00", 100), Err(FrameError::Reserved));
        assert_eq!(
            parse(b"\x89\x7E\x00\x80", 1000),
            Err(FrameError::BadControl)
        );
        assert_eq!(parse(b"\x09\x00", 100), Err(FrameError::BadControl));
        assert_eq!(parse(b"\x81\x7E\x01\x00", 100), Err(FrameError::TooLong));
        // A fragment is located (the caller refuses it).
        let f = parse(b"\x01\x01a", 100).unwrap().unwrap();
        assert!(!f.fin);
    }

    const MSG: &[u8] = br#"{"op":"message","room":"bench-1-0","seq":42,"id":"01JDQ3ZK3W8M5V2X7N4R6T9YBC","from":"01JDQ3Y0000000000000000000","text":"t=1732500000123456789 c=3-17","ts":"2026-11-24T23:00:00.123Z"}"#;

    #[test]
    fn message_fields_and_embedded_time() {
        let op = server_op(MSG);
        assert_eq!(
            op,
            ServerOp::Message {
                room: b"bench-1-0",
                seq: 42,
                text: b"t=1732500000123456789 c=3-17"
            }
        );
        assert_eq!(message_fast(MSG), Some(op), "the fast path reads it");
        let ServerOp::Message { text, .. } = op else {
            unreachable!()
        };
        assert_eq!(embedded_time(text), Some(1_732_500_000_123_456_789));
        assert_eq!(embedded_time(b"hello"), None);
        assert_eq!(embedded_time(b"t=x"), None);
        // Another field order: the slow path reads the same fields.
        let other =
            br#"{"op":"message","seq":7,"text":"t=5 c=0-0","room":"r","id":"i","from":"u"}"#;
        assert_eq!(
            server_op(other),
            ServerOp::Message {
                room: b"r",
                seq: 7,
                text: b"t=5 c=0-0"
            }
        );
        // A text with an escaped quote ends at the real closing quote.
        let escaped =
            br#"{"op":"message","room":"r","seq":1,"id":"i","from":"u","text":"a\"b","ts":"x"}"#;
        assert_eq!(
            server_op(escaped),
            ServerOp::Message {
                room: b"r",
                seq: 1,
                text: br#"a\"b"#
            }
        );
        // Truncated or broken frames are not messages.
        assert_eq!(server_op(&MSG[..60]), ServerOp::Other);
        assert_eq!(
            server_op(br#"{"op":"message","room":"r","seq":"x"}"#),
            ServerOp::Other
        );
    }

    #[test]
    fn other_server_ops() {
        assert_eq!(
            server_op(br#"{"op":"ack","client_msg_id":"t=9 c=1-2","seq":5}"#),
            ServerOp::Ack {
                client_msg_id: b"t=9 c=1-2",
                seq: 5
            }
        );
        assert_eq!(
            server_op(br#"{"op":"joined","room":"lobby","last_seq":12,"recovered":true}"#),
            ServerOp::Joined {
                room: b"lobby",
                last_seq: 12
            }
        );
        assert_eq!(
            server_op(br#"{"op":"presence","room":"r","user":"u","state":"online"}"#),
            ServerOp::Presence
        );
        assert_eq!(server_op(br#"{"op":"pong"}"#), ServerOp::Pong);
        assert_eq!(
            server_op(
                br#"{"op":"error","code":"rate_limited","message":"more than 50 frames per second"}"#
            ),
            ServerOp::Error {
                code: b"rate_limited"
            }
        );
        assert_eq!(server_op(br#"{"op":"left","room":"r"}"#), ServerOp::Other);
        assert_eq!(server_op(b"not json"), ServerOp::Other);
        // A key inside a string value is not a key.
        assert_eq!(
            server_op(br#"{"op":"error","message":"no \"code\":","code":"x"}"#),
            ServerOp::Error { code: b"x" }
        );
    }

    #[test]
    fn send_frames_round_trip() {
        let mut text = Vec::new();
        message_text(&mut text, 1_732_500_000_000_000_001, 3, 17);
        assert_eq!(text, b"t=1732500000000000001 c=3-17");
        let mut json = Vec::new();
        send_json(&mut json, "bench-a-0", &text);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["op"], "send");
        assert_eq!(v["room"], "bench-a-0");
        assert_eq!(v["text"], "t=1732500000000000001 c=3-17");
        assert_eq!(v["client_msg_id"], v["text"]);
    }

    #[test]
    fn tags_tell_messages_apart() {
        let a = tag(1, b"t=1 c=0-0");
        assert_eq!(a, tag(1, b"t=1 c=0-0"));
        assert_ne!(a, tag(2, b"t=1 c=0-0"));
        assert_ne!(a, tag(1, b"t=1 c=0-1"));
        // Sums are order-free: the check compares sets.
        let (x, y) = (tag(1, b"a"), tag(2, b"b"));
        assert_eq!(x.wrapping_add(y), y.wrapping_add(x));
    }
}
