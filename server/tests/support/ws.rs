//! A blocking WebSocket client of `GET /ws` (tungstenite), and raw frames
//! for protocol-violation tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use super::Node;

/// One chat connection.
#[derive(Debug)]
pub struct Ws {
    socket: WebSocket<TcpStream>,
}

/// How reading a connection ended.
#[derive(Debug, PartialEq)]
pub enum End {
    /// A close frame with this code.
    Closed(u16),
    /// The socket ended without a close frame.
    Dropped,
    /// Nothing more within the time allowed.
    TimedOut,
}

impl Ws {
    /// Connects to `path` (e.g. `/ws?token=...`); a refused handshake gives
    /// its HTTP status.
    pub fn connect_path(node: &Node, path: &str) -> Result<Ws, u16> {
        let stream = TcpStream::connect(node.http).expect("connect");
        stream.set_nodelay(true).unwrap();
        let url = format!("ws://{}{}", node.http, path);
        let (socket, _) = tungstenite::client(url.as_str(), stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r)) => {
                r.status().as_u16()
            }
            other => panic!("WebSocket handshake: {other}"),
        })?;
        Ok(Ws { socket })
    }

    /// Connects as the holder of `token` (`?token=`).
    pub fn connect(node: &Node, token: &str) -> Ws {
        Self::connect_path(node, &format!("/ws?token={token}")).expect("WebSocket handshake")
    }

    /// Sends a JSON text frame.
    pub fn send(&mut self, v: Value) {
        self.socket
            .send(Message::text(v.to_string()))
            .expect("send frame");
    }

    /// The next server frame as JSON, within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Value, End> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(End::TimedOut);
            }
            self.socket.get_mut().set_read_timeout(Some(left)).unwrap();
            match self.socket.read() {
                Ok(Message::Text(t)) => return Ok(serde_json::from_str(&t).expect("JSON frame")),
                Ok(Message::Close(frame)) => {
                    return Err(End::Closed(frame.map_or(1005, |f| f.code.into())));
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(End::TimedOut);
                }
                Err(_) => return Err(End::Dropped),
            }
        }
    }

    /// Frames until one with `op` (others are skipped), within `timeout`.
    pub fn expect_op(&mut self, op: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Ok(v) if v["op"] == op => return v,
                Ok(_) => continue,
                Err(e) => panic!("waiting for {op}: {e:?}"),
            }
        }
    }

    /// Joins `room` (with `since`) and returns the `joined` frame.
    pub fn join(&mut self, room: &str, since: Option<u64>) -> Value {
        let mut frame = json!({"op": "join", "room": room});
        if let Some(s) = since {
            frame["since"] = json!(s);
        }
        self.send(frame);
        self.expect_op("joined", Duration::from_secs(5))
    }

    /// Reads until the connection ends.
    pub fn read_to_end(&mut self, timeout: Duration) -> End {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())) {
                Ok(_) => continue,
                Err(end) => return end,
            }
        }
    }

    /// Closes normally.
    pub fn close(mut self) {
        let _ = self.socket.close(Some(CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "".into(),
        }));
        let _ = self.read_to_end(Duration::from_secs(2));
    }
}

/// A raw connection after a successful handshake on `path`, for sending
/// frames no well-behaved client would.
pub fn raw_upgrade(node: &Node, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(node.http).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// A client frame: masked unless `mask` is `None`.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n < 65536 => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Reads server frames from a raw connection until a close frame; returns
/// its code (`None` if the socket ended first). Panics if it did neither
/// within `timeout`.
pub fn raw_close_code(s: &mut TcpStream, timeout: Duration) -> Option<u16> {
    let deadline = std::time::Instant::now() + timeout;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Parse complete frames in `buf`.
        let mut pos = 0;
        while buf.len() >= pos + 2 {
            let op = buf[pos] & 0x0f;
            let mut len = (buf[pos + 1] & 0x7f) as usize;
            let mut at = pos + 2;
            if len == 126 {
                if buf.len() < at + 2 {
                    break;
                }
                len = u16::from_be_bytes([buf[at], buf[at + 1]]) as usize;
                at += 2;
            } else if len == 127 {
                if buf.len() < at + 8 {
                    break;
                }
                len = u64::from_be_bytes(buf[at..at + 8].try_into().unwrap()) as usize;
                at += 8;
            }
            if buf.len() < at + len {
                break;
            }
            if op == 0x8 {
                return (len >= 2).then(|| u16::from_be_bytes([buf[at], buf[at + 1]]));
            }
            pos = at + len;
        }
        buf.drain(..pos);
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "connection still open after {timeout:?}"
                );
            }
            Err(_) => return None,
        }
    }
}
