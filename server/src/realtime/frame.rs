//! Server frames on the wire: complete WebSocket frames (header + payload)
//! encoded once into `Bytes`, so a room's message goes to every member as
//! the same bytes.

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};

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

#[cfg(test)]
mod tests {
    use super::*;

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
