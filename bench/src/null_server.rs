//! `rayltics-bench null-server`: the cheapest HTTP/1.1 server we can write,
//! to measure the generator's own ceiling (is the generator or the target the
//! limit?). One thread, one epoll loop; every request head (a `GET`, no body)
//! gets the same canned `200 ok`, and the answers to a pipelined batch leave
//! in one write. It checks nothing: never use it for anything but calibration.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use crate::engine::sys::{self, Epoll};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
/// Answers prepared back to back; more pending answers are written in turns.
const BATCH: usize = 64;
const LISTENER: u64 = u64::MAX;

#[derive(Debug)]
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    len: usize,
    /// Bytes of answers not yet written.
    pending: usize,
    writable_wait: bool,
}

/// Serves until killed.
pub(crate) fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    println!("null-server listening on {}", listener.local_addr()?);
    let mut epoll = Epoll::new()?;
    epoll.add(listener.as_raw_fd(), sys::IN, LISTENER)?;
    let wire: Vec<u8> = RESPONSE.repeat(BATCH);
    let mut clients: Vec<Option<Client>> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        let n = epoll.wait(&mut events, None)?;
        for ev in &events[..n] {
            let (token, ready) = (ev.u64, ev.events);
            if token == LISTENER {
                accept_all(&listener, &epoll, &mut clients);
                continue;
            }
            let slot = token as usize;
            let Some(c) = clients.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let keep = if ready & sys::OUT != 0 && c.pending > 0 {
                flush(c, &wire, &epoll, token)
            } else {
                true
            } && (ready & (sys::IN | sys::ERR) == 0
                || on_readable(c, &wire, &epoll, token));
            if !keep {
                clients[slot] = None;
            }
        }
    }
}

fn accept_all(listener: &TcpListener, epoll: &Epoll, clients: &mut Vec<Option<Client>>) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => {
                eprintln!("null-server: accept: {e}");
                return;
            }
        };
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        let _ = stream.set_nodelay(true);
        let slot = clients.iter().position(Option::is_none).unwrap_or_else(|| {
            clients.push(None);
            clients.len() - 1
        });
        if epoll.add(stream.as_raw_fd(), sys::IN, slot as u64).is_ok() {
            clients[slot] = Some(Client {
                stream,
                buf: vec![0; 64 * 1024],
                len: 0,
                pending: 0,
                writable_wait: false,
            });
        }
    }
}

/// Reads, counts complete request heads, answers them. False: drop the client.
fn on_readable(c: &mut Client, wire: &[u8], epoll: &Epoll, token: u64) -> bool {
    let n = match c.stream.read(&mut c.buf[c.len..]) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
            return true;
        }
        Err(_) => return false,
    };
    c.len += n;
    let mut answered = 0;
    let mut start = 0;
    while let Some(end) = find_head_end(&c.buf[start..c.len]) {
        start += end;
        answered += 1;
    }
    c.buf.copy_within(start..c.len, 0);
    c.len -= start;
    if c.len == c.buf.len() {
        return false; // a head larger than the buffer
    }
    c.pending += answered * RESPONSE.len();
    flush(c, wire, epoll, token)
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Writes pending answers. False: drop the client.
fn flush(c: &mut Client, wire: &[u8], epoll: &Epoll, token: u64) -> bool {
    while c.pending > 0 {
        let off = (RESPONSE.len() - c.pending % RESPONSE.len()) % RESPONSE.len();
        let len = c.pending.min(wire.len() - off);
        match c.stream.write(&wire[off..off + len]) {
            Ok(n) => c.pending -= n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !c.writable_wait {
                    c.writable_wait = true;
                    return set(epoll, c, sys::IN | sys::OUT, token).is_ok();
                }
                return true;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    if c.writable_wait {
        c.writable_wait = false;
        return set(epoll, c, sys::IN, token).is_ok();
    }
    true
}

fn set(epoll: &Epoll, c: &Client, events: u32, token: u64) -> io::Result<()> {
    epoll.modify(c.stream.as_raw_fd(), events, token)
}
