//! A small chat server for the tests: `POST /api/v1/auth/register` and the
//! `GET /ws` protocol of API.md (join, send with ack and fan-out in seq
//! order, ping), one thread per connection, blocking I/O. `faulty` makes it
//! skip one message for one member, which the delivery check must catch.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::frame;

#[derive(Debug, Default)]
struct Room {
    seq: u64,
    members: Vec<TcpStream>,
}

#[derive(Debug, Default)]
struct State {
    rooms: Mutex<BTreeMap<String, Room>>,
    users: AtomicU64,
    /// Skip seq 2 for the second member to join.
    faulty: bool,
}

/// Starts the server; its address.
pub(crate) fn server(faulty: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(State {
        faulty,
        ..State::default()
    });
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let state = state.clone();
            std::thread::spawn(move || {
                let _ = serve(stream, &state);
            });
        }
    });
    addr
}

fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line);
    }
    let header = |name: &str| {
        head.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let mut out = stream;
    if head[0].starts_with("POST /api/v1/auth/register") {
        let len: usize = header("content-length")
            .unwrap_or_default()
            .parse()
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let n = state.users.fetch_add(1, Ordering::SeqCst);
        let json = format!(r#"{{"user":{{"id":"user{n}"}},"access_token":"token{n}"}}"#);
        write!(
            out,
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        )?;
        return Ok(());
    }
    let Some(key) = header("sec-websocket-key") else {
        write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    };
    let user = head[0]
        .split("token=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or("anonymous")
        .to_string();
    write!(
        out,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        frame::accept_key(&key)
    )?;
    let mut joined: Option<String> = None;
    loop {
        let Some((opcode, payload)) = read_frame(&mut reader)? else {
            return Ok(());
        };
        match opcode {
            frame::OP_CLOSE => return Ok(()),
            frame::OP_PING => out.write_all(&server_frame(frame::OP_PONG, &payload))?,
            frame::OP_TEXT => {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                match v["op"].as_str().unwrap_or_default() {
                    "ping" => out.write_all(&server_frame(frame::OP_TEXT, br#"{"op":"pong"}"#))?,
                    "join" => {
                        let room = v["room"].as_str().unwrap().to_string();
                        let mut rooms = state.rooms.lock().unwrap();
                        let r = rooms.entry(room.clone()).or_default();
                        r.members.push(out.try_clone()?);
                        let json = format!(
                            r#"{{"op":"joined","room":"{room}","last_seq":{},"recovered":true}}"#,
                            r.seq
                        );
                        out.write_all(&server_frame(frame::OP_TEXT, json.as_bytes()))?;
                        joined = Some(room);
                    }
                    "send" => {
                        let room = v["room"].as_str().unwrap();
                        if joined.as_deref() != Some(room) {
                            let e = br#"{"op":"error","code":"not_joined","message":"join first"}"#;
                            out.write_all(&server_frame(frame::OP_TEXT, e))?;
                            continue;
                        }
                        let text = v["text"].as_str().unwrap();
                        let cmid = v["client_msg_id"].as_str().unwrap();
                        let mut rooms = state.rooms.lock().unwrap();
                        let r = rooms.get_mut(room).unwrap();
                        r.seq += 1;
                        let json = format!(
                            r#"{{"op":"message","room":"{room}","seq":{},"id":"m{}","from":"{user}","text":"{text}","ts":"2026-01-01T00:00:00Z"}}"#,
                            r.seq, r.seq
                        );
                        let f = server_frame(frame::OP_TEXT, json.as_bytes());
                        for (i, m) in r.members.iter_mut().enumerate() {
                            if state.faulty && i == 1 && r.seq == 2 {
                                continue;
                            }
                            let _ = m.write_all(&f);
                        }
                        let ack =
                            format!(r#"{{"op":"ack","client_msg_id":"{cmid}","seq":{}}}"#, r.seq);
                        out.write_all(&server_frame(frame::OP_TEXT, ack.as_bytes()))?;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

fn read_frame(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; 2];
    if r.read_exact(&mut h).is_err() {
        return Ok(None);
    }
    assert_eq!(h[1] & 0x80, 0x80, "client frames are masked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut mask = [0u8; 4];
    r.read_exact(&mut mask)?;
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some((h[0] & 0x0F, payload)))
}

fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    if payload.len() < 126 {
        f.push(payload.len() as u8);
    } else {
        f.push(126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}
