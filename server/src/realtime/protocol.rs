//! The chat protocol of API.md "Real-time": one JSON object per text frame,
//! field `op`. Client frames are parsed into [`ClientOp`]; server frames are
//! built here as complete WebSocket frames (`Bytes`), encoded once.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use rayltics_commerce::clock::rfc3339;
use rayltics_commerce::model::ChatMessageRec;

use super::frame;

/// Longest message text, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Longest `client_msg_id`, in bytes.
pub const MAX_CLIENT_MSG_ID: usize = 128;
/// Most messages one `history` returns (and the default).
pub const MAX_HISTORY: u32 = 100;

/// A client frame.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClientOp {
    /// Join a room, replaying messages after `since`.
    Join {
        /// Room name.
        room: String,
        /// Last seq the client has.
        since: Option<u64>,
    },
    /// Leave a room.
    Leave {
        /// Room name.
        room: String,
    },
    /// Post a message to a joined room.
    Send {
        /// Room name.
        room: String,
        /// The text.
        text: String,
        /// The client's id for it, echoed in the `ack`.
        client_msg_id: String,
    },
    /// Older messages of a room.
    History {
        /// Room name.
        room: String,
        /// Only messages with a smaller seq.
        before: Option<u64>,
        /// How many (at most [`MAX_HISTORY`]).
        limit: Option<u32>,
    },
    /// The sender is typing in a room.
    Typing {
        /// Room name.
        room: String,
    },
    /// Keep-alive at the application level.
    Ping,
}

/// Why a client frame was refused (an `error` frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// Machine-readable code.
    pub code: &'static str,
    /// What was wrong.
    pub message: String,
}

impl OpError {
    /// An error with `code`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Parses and validates a client frame.
pub fn parse(text: &str) -> Result<ClientOp, OpError> {
    let op: ClientOp = serde_json::from_str(text).map_err(|e| {
        let code = if e.to_string().starts_with("unknown variant") {
            "unknown_op"
        } else {
            "bad_frame"
        };
        OpError::new(code, e.to_string())
    })?;
    match &op {
        ClientOp::Join { room, .. }
        | ClientOp::Leave { room }
        | ClientOp::History { room, .. }
        | ClientOp::Typing { room } => check_room(room)?,
        ClientOp::Send {
            room,
            text,
            client_msg_id,
        } => {
            check_room(room)?;
            let chars = text.chars().count();
            if chars == 0 || chars > MAX_TEXT_CHARS {
                return Err(OpError::new(
                    "invalid_field",
                    format!("text: must be 1..={MAX_TEXT_CHARS} characters"),
                ));
            }
            if client_msg_id.is_empty() || client_msg_id.len() > MAX_CLIENT_MSG_ID {
                return Err(OpError::new(
                    "invalid_field",
                    format!("client_msg_id: must be 1..={MAX_CLIENT_MSG_ID} bytes"),
                ));
            }
        }
        ClientOp::Ping => {}
    }
    if let ClientOp::History {
        limit: Some(limit), ..
    } = op
        && !(1..=MAX_HISTORY).contains(&limit)
    {
        return Err(OpError::new(
            "invalid_field",
            format!("limit: must be 1..={MAX_HISTORY}"),
        ));
    }
    Ok(op)
}

/// Whether `room` is a valid room name: `[a-z0-9_-]{1,64}`.
pub fn valid_room(room: &str) -> bool {
    (1..=64).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check_room(room: &str) -> Result<(), OpError> {
    if valid_room(room) {
        Ok(())
    } else {
        Err(OpError::new(
            "invalid_room",
            "room: must match [a-z0-9_-]{1,64}",
        ))
    }
}

/// A message as clients see it (frames and the REST history).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageView<'a> {
    /// Room name.
    pub room: &'a str,
    /// Position in the room.
    pub seq: u64,
    /// Message id.
    pub id: &'a str,
    /// Sender's user id.
    pub from: &'a str,
    /// The text.
    pub text: &'a str,
    /// When the room accepted it (RFC 3339).
    pub ts: String,
}

impl<'a> From<&'a ChatMessageRec> for MessageView<'a> {
    fn from(m: &'a ChatMessageRec) -> Self {
        Self {
            room: &m.room,
            seq: m.seq,
            id: &m.id,
            from: &m.from,
            text: &m.text,
            ts: rfc3339(m.at),
        }
    }
}

#[derive(Serialize)]
struct Tagged<T> {
    op: &'static str,
    #[serde(flatten)]
    body: T,
}

fn encode<T: Serialize>(op: &'static str, body: T) -> Bytes {
    let json = serde_json::to_vec(&Tagged { op, body }).unwrap_or_default();
    frame::text(&json)
}

/// `{"op":"message",...}`.
pub fn message(m: &ChatMessageRec) -> Bytes {
    encode("message", MessageView::from(m))
}

/// `{"op":"joined","room":R,"last_seq":N,"recovered":B}`.
pub fn joined(room: &str, last_seq: u64, recovered: bool) -> Bytes {
    #[derive(Serialize)]
    struct Joined<'a> {
        room: &'a str,
        last_seq: u64,
        recovered: bool,
    }
    encode(
        "joined",
        Joined {
            room,
            last_seq,
            recovered,
        },
    )
}

/// `{"op":"left","room":R}`.
pub fn left(room: &str) -> Bytes {
    #[derive(Serialize)]
    struct Left<'a> {
        room: &'a str,
    }
    encode("left", Left { room })
}

/// `{"op":"ack","client_msg_id":C,"seq":N}`.
pub fn ack(client_msg_id: &str, seq: u64) -> Bytes {
    #[derive(Serialize)]
    struct Ack<'a> {
        client_msg_id: &'a str,
        seq: u64,
    }
    encode("ack", Ack { client_msg_id, seq })
}

/// `{"op":"history","room":R,"messages":[...]}`.
pub fn history(room: &str, messages: &[ChatMessageRec]) -> Bytes {
    #[derive(Serialize)]
    struct History<'a> {
        room: &'a str,
        messages: Vec<MessageView<'a>>,
    }
    encode(
        "history",
        History {
            room,
            messages: messages.iter().map(MessageView::from).collect(),
        },
    )
}

/// A user's state in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Has a connection in the room.
    Online,
    /// Left (their last connection in the room).
    Offline,
    /// Is typing (expires by itself).
    Typing,
}

/// `{"op":"presence","room":R,"user":U,"state":S}`.
pub fn presence(room: &str, user: &str, state: Presence) -> Bytes {
    #[derive(Serialize)]
    struct P<'a> {
        room: &'a str,
        user: &'a str,
        state: Presence,
    }
    encode("presence", P { room, user, state })
}

/// `{"op":"notification","kind":"order.updated","order":ORDER}` from the
/// order's JSON.
pub fn order_notification(order_json: &[u8]) -> Bytes {
    let mut json = Vec::with_capacity(order_json.len() + 48);
    json.extend_from_slice(br#"{"op":"notification","kind":"order.updated","order":"#);
    json.extend_from_slice(order_json);
    json.push(b'}');
    frame::text(&json)
}

/// `{"op":"pong"}`.
pub fn pong() -> Bytes {
    frame::text(br#"{"op":"pong"}"#)
}

/// `{"op":"error","code":C,"message":M}`.
pub fn error(e: &OpError) -> Bytes {
    #[derive(Serialize)]
    struct E<'a> {
        code: &'a str,
        message: &'a str,
    }
    encode(
        "error",
        E {
            code: e.code,
            message: &e.message,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_client_op() {
        assert_eq!(
            parse(r#"{"op":"join","room":"lobby","since":4}"#),
            Ok(ClientOp::Join {
                room: "lobby".into(),
                since: Some(4)
            })
        );
        assert_eq!(parse(r#"{"op":"ping"}"#), Ok(ClientOp::Ping));
        assert!(matches!(
            parse(r#"{"op":"send","room":"a","text":"hi","client_msg_id":"c1"}"#),
            Ok(ClientOp::Send { .. })
        ));
    }

    #[test]
    fn refuses_bad_frames_with_a_code() {
        let code = |s: &str| parse(s).unwrap_err().code;
        assert_eq!(code("not json"), "bad_frame");
        assert_eq!(code(r#"{"op":"dance"}"#), "unknown_op");
        assert_eq!(code(r#"{"op":"join"}"#), "bad_frame");
        assert_eq!(code(r#"{"op":"join","room":"Lobby"}"#), "invalid_room");
        assert_eq!(
            code(&format!(r#"{{"op":"join","room":"{}"}}"#, "a".repeat(65))),
            "invalid_room"
        );
        assert_eq!(
            code(r#"{"op":"send","room":"a","text":"","client_msg_id":"c"}"#),
            "invalid_field"
        );
        assert_eq!(
            code(r#"{"op":"history","room":"a","limit":0}"#),
            "invalid_field"
        );
        assert_eq!(code(r#"{"op":"join","room":"a","since":-1}"#), "bad_frame");
    }

    #[test]
    fn server_frames_are_single_json_objects() {
        let f = joined("lobby", 3, true);
        let json: serde_json::Value = serde_json::from_slice(&f[2..]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"op":"joined","room":"lobby","last_seq":3,"recovered":true})
        );
        let n = order_notification(br#"{"id":"o1"}"#);
        let json: serde_json::Value = serde_json::from_slice(&n[2..]).unwrap();
        assert_eq!(json["order"]["id"], "o1");
        assert_eq!(json["kind"], "order.updated");
    }
}
