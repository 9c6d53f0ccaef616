//! One keep-alive HTTP/1.1 connection of a worker: a state machine driven by
//! epoll readiness, with a fixed read buffer and no allocation per request.
//!
//! Fixed requests are identical, so the bytes still to be written are always
//! a suffix of "request repeated": `Shared::wire` holds `pipeline + 1` copies
//! and a pending write is one slice of it. Scripted requests (every scenario
//! but healthz and get) are written by the connection's
//! [`ConnScript`] into its reusable `wbuf` instead, and each answer goes
//! back to the script with the step of its request.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use super::sys::{self, Epoll};
use super::worker::Recorder;
use crate::checkout::CheckoutLog;
use crate::http1::{ResponseParser, Step};
use crate::stats::{Failure, Tally};
use crate::workload::ConnScript;

/// Read buffer per connection. Heads larger than this are a parse error.
const READ_BUF: usize = 16 * 1024;
/// Compact the read buffer when less than this is free at its end.
const COMPACT_BELOW: usize = 4 * 1024;
/// Wait before reconnecting after a failed connect.
const CONNECT_BACKOFF_NS: u64 = 50_000_000;

/// Worker-wide state the connections share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) epoll: Epoll,
    pub(super) addr: socket2::SockAddr,
    pub(super) domain: Domain,
    /// Fixed requests: the request repeated `pipeline + 1` times.
    pub(super) wire: Box<[u8]>,
    pub(super) req_len: usize,
    /// Scripted requests (`wire` is then empty).
    pub(super) scripted: bool,
    /// After the window, scripted requests only: read the answers still
    /// expected, send nothing new.
    pub(super) draining: bool,
    pub(super) pipeline: usize,
    /// Open loop: requests come from the arrival schedule (`Conn::backlog`).
    pub(super) open: bool,
    pub(super) timeout_ns: u64,
    pub(super) rec: Recorder,
    /// Connections that read answers during this wake-up and may send more.
    pub(super) to_fill: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No socket; (re)connect at this time.
    Idle {
        retry_at: u64,
    },
    Connecting,
    Open,
}

/// One connection. The token (its index in the worker) is its epoll key.
#[derive(Debug)]
pub(super) struct Conn {
    token: u64,
    sock: Option<Socket>,
    phase: Phase,
    interest: u32,
    /// When the pending connect started (for the connect timeout).
    connect_started: u64,
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    parser: ResponseParser,
    /// Requests written (or queued in `wpending`), oldest first: the time their
    /// latency is counted from (send time closed loop, intended time open
    /// loop) and their step (scripted requests; else 0).
    inflight: VecDeque<(u64, u8)>,
    /// Open loop: intended send times of requests not yet written.
    backlog: VecDeque<u64>,
    /// Bytes of requests accepted but not yet written to the socket.
    wpending: usize,
    /// Scripted requests: what to send next, and what the answers said.
    script: Option<Box<ConnScript>>,
    /// Scripted requests: encoded requests; the last `wpending` bytes are unsent.
    wbuf: Vec<u8>,
}

impl Conn {
    /// Connection `token` of its worker, with its script for scripted
    /// requests.
    pub(super) fn new(token: u64, pipeline: usize, script: Option<Box<ConnScript>>) -> Self {
        let scripted = script.is_some();
        Self {
            token,
            sock: None,
            phase: Phase::Idle { retry_at: 0 },
            interest: 0,
            connect_started: 0,
            rbuf: vec![0u8; READ_BUF].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            parser: if scripted {
                ResponseParser::sniffing_all()
            } else {
                ResponseParser::default()
            },
            inflight: VecDeque::with_capacity(pipeline.max(1)),
            backlog: VecDeque::with_capacity(1024),
            wpending: 0,
            wbuf: Vec::with_capacity(if scripted { 1024 * (pipeline + 1) } else { 0 }),
            script,
        }
    }

    /// Scripted requests: what this connection was told over the run.
    pub(super) fn take_log(&mut self) -> (Tally, CheckoutLog) {
        self.script
            .as_mut()
            .map(|s| s.take_log())
            .unwrap_or_default()
    }

    /// Requests accepted and not answered yet.
    pub(super) fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Starts a non-blocking connect.
    pub(super) fn connect(&mut self, sh: &mut Shared, now: u64) {
        let sock = match Socket::new(
            sh.domain,
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        ) {
            Ok(s) => s,
            Err(_) => return self.connect_failed(sh, now),
        };
        let _ = sock.set_tcp_nodelay(true);
        match sock.connect(&sh.addr) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(_) => return self.connect_failed(sh, now),
        }
        self.interest = sys::IN | sys::OUT;
        if sh
            .epoll
            .add(sock.as_raw_fd(), self.interest, self.token)
            .is_err()
        {
            return self.connect_failed(sh, now);
        }
        self.sock = Some(sock);
        self.phase = Phase::Connecting;
        self.connect_started = now;
    }

    fn connect_failed(&mut self, sh: &mut Shared, now: u64) {
        sh.rec.error(Failure::Connect, 1);
        self.sock = None;
        self.phase = Phase::Idle {
            retry_at: now + CONNECT_BACKOFF_NS,
        };
    }

    /// Readiness reported by epoll.
    pub(super) fn on_event(&mut self, sh: &mut Shared, events: u32, now: u64) {
        match self.phase {
            Phase::Idle { .. } => {}
            Phase::Connecting => {
                if events & (sys::OUT | sys::ERR) == 0 {
                    return;
                }
                let failed = match &self.sock {
                    Some(s) => !matches!(s.take_error(), Ok(None)) || events & sys::ERR != 0,
                    None => true,
                };
                if failed {
                    self.drop_socket();
                    self.connect_failed(sh, now);
                    return;
                }
                self.phase = Phase::Open;
                self.set_interest(sh, sys::IN);
                self.fill(sh, now);
            }
            Phase::Open => {
                if events & (sys::IN | sys::ERR) != 0 {
                    self.on_readable(sh, now);
                }
                if self.phase == Phase::Open && events & sys::OUT != 0 {
                    self.flush(sh, now);
                }
            }
        }
    }

    fn set_interest(&mut self, sh: &mut Shared, interest: u32) {
        if self.interest == interest {
            return;
        }
        if let Some(s) = &self.sock
            && sh.epoll.modify(s.as_raw_fd(), interest, self.token).is_ok()
        {
            self.interest = interest;
        }
    }

    fn on_readable(&mut self, sh: &mut Shared, now: u64) {
        let Some(sock) = &self.sock else { return };
        let n = match (&*sock).read(&mut self.rbuf[self.rend..]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return;
            }
            Err(_) => return self.close(sh, now, Failure::Io, 0),
        };
        if n == 0 {
            // The server closed. A body delimited by the close ends here.
            if self.parser.reads_until_close() {
                let status = self.parser.status();
                self.complete(sh, status, now);
            }
            return self.close(sh, now, Failure::Io, 0);
        }
        self.rend += n;
        let mut server_closes = false;
        while self.rstart < self.rend {
            match self.parser.advance(&self.rbuf[self.rstart..self.rend]) {
                Ok(Step::NeedMore { consumed }) => {
                    self.rstart += consumed;
                    break;
                }
                Ok(Step::Done {
                    consumed,
                    status,
                    close,
                }) => {
                    self.rstart += consumed;
                    self.complete(sh, status, now);
                    if close {
                        server_closes = true;
                        break;
                    }
                }
                Err(_) => return self.close(sh, now, Failure::Parse, 1),
            }
        }
        if server_closes {
            // Requests pipelined behind a `Connection: close` answer are lost.
            return self.close(sh, now, Failure::Io, 0);
        }
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        } else if self.rbuf.len() - self.rend < COMPACT_BELOW {
            if self.rstart == 0 {
                // A full buffer that still holds no complete head.
                return self.close(sh, now, Failure::Parse, 1);
            }
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        // Written after every ready connection was read: one burst per wake-up.
        sh.to_fill.push(self.token as u32);
    }

    /// A response ended: its latency is measured from the oldest in-flight
    /// request's start time.
    fn complete(&mut self, sh: &mut Shared, status: u16, now: u64) {
        let Some((start, step)) = self.inflight.pop_front() else {
            // An answer nobody asked for (a server bug): count and move on.
            sh.rec.error(Failure::Parse, 1);
            return;
        };
        let latency = now.saturating_sub(start);
        match &mut self.script {
            Some(script) => {
                let outcome = script.answered(step, status, self.parser.sniffed());
                sh.rec.response(status, outcome, latency);
                sh.rec.step(step, status, outcome, latency);
            }
            None => sh.rec.response(status, None, latency),
        }
    }

    /// Sends what may be sent: closed loop, a fresh batch of `pipeline`
    /// requests when none is in flight; open loop, the oldest due requests of
    /// the backlog while fewer than `pipeline` are in flight.
    pub(super) fn fill(&mut self, sh: &mut Shared, now: u64) {
        if self.phase != Phase::Open || sh.draining {
            return;
        }
        let room = if sh.open {
            sh.pipeline.saturating_sub(self.inflight.len())
        } else if self.inflight.is_empty() {
            // Closed loop: a batch of `pipeline` requests in one write, the
            // next batch once all are answered (as wrk's pipelining script).
            sh.pipeline
        } else {
            0
        };
        if room == 0 {
            return;
        }
        let k = if sh.open {
            let k = room.min(self.backlog.len());
            for _ in 0..k {
                let intended = self.backlog.pop_front().unwrap_or(now);
                sh.rec.sent_late(now.saturating_sub(intended));
                self.inflight.push_back((intended, 0));
            }
            k
        } else {
            for _ in 0..room {
                self.inflight.push_back((now, 0));
            }
            sh.rec.sent(room as u64);
            room
        };
        if k > 0 {
            match &mut self.script {
                None => self.wpending += k * sh.req_len,
                Some(script) => {
                    let before = self.wbuf.len();
                    let first = self.inflight.len() - k;
                    for (_, step) in self.inflight.range_mut(first..) {
                        *step = script.next(&mut self.wbuf);
                    }
                    self.wpending += self.wbuf.len() - before;
                }
            }
            self.flush(sh, now);
        }
    }

    fn flush(&mut self, sh: &mut Shared, now: u64) {
        while self.wpending > 0 {
            let Some(sock) = &self.sock else { return };
            let pending = if sh.scripted {
                &self.wbuf[self.wbuf.len() - self.wpending..]
            } else {
                let start = (sh.req_len - self.wpending % sh.req_len) % sh.req_len;
                &sh.wire[start..start + self.wpending]
            };
            match sock.send_with_flags(pending, libc::MSG_NOSIGNAL) {
                Ok(n) => self.wpending -= n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.set_interest(sh, sys::IN | sys::OUT);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(sh, now, Failure::Io, 0),
            }
        }
        self.wbuf.clear();
        self.set_interest(sh, sys::IN);
    }

    /// Drops the socket. In-flight requests are lost and counted as `lost`
    /// errors (beyond `extra`, counted once); the backlog stays for the next
    /// connection, which is opened right away.
    fn close(&mut self, sh: &mut Shared, now: u64, lost: Failure, extra: u64) {
        let n = self.inflight.len() as u64;
        if lost == Failure::Parse {
            sh.rec.error(Failure::Parse, extra);
            sh.rec.error(Failure::Io, n.saturating_sub(extra));
        } else {
            sh.rec.error(lost, n + extra);
        }
        if let Some(script) = &mut self.script {
            for (_, step) in &self.inflight {
                script.lost(*step);
            }
        }
        self.inflight.clear();
        self.drop_socket();
        self.phase = Phase::Idle { retry_at: now };
        self.connect(sh, now);
    }

    fn drop_socket(&mut self) {
        // Closing the descriptor removes it from the epoll set.
        self.sock = None;
        self.parser.reset();
        self.rstart = 0;
        self.rend = 0;
        self.wpending = 0;
        self.wbuf.clear();
        self.interest = 0;
    }

    /// Every few milliseconds: reconnects, request and connect timeouts.
    pub(super) fn housekeeping(&mut self, sh: &mut Shared, now: u64) {
        match self.phase {
            Phase::Idle { retry_at } => {
                if retry_at <= now {
                    self.connect(sh, now);
                }
            }
            Phase::Connecting => {
                if now.saturating_sub(self.connect_started) > sh.timeout_ns {
                    self.drop_socket();
                    self.connect_failed(sh, now);
                }
            }
            Phase::Open => {
                if self
                    .inflight
                    .front()
                    .is_some_and(|(t, _)| now.saturating_sub(*t) > sh.timeout_ns)
                {
                    self.close(sh, now, Failure::Timeout, 0);
                }
            }
        }
        // Open loop: arrivals that waited longer than the timeout are dropped.
        let mut expired = 0;
        while self
            .backlog
            .front()
            .is_some_and(|t| now.saturating_sub(*t) > sh.timeout_ns)
        {
            self.backlog.pop_front();
            expired += 1;
        }
        if expired > 0 {
            sh.rec.error(Failure::Timeout, expired);
        }
    }

    /// Open loop: a request is due now on this connection.
    pub(super) fn arrive(&mut self, sh: &mut Shared, intended: u64, now: u64) {
        let busy = self.phase != Phase::Open
            || !self.backlog.is_empty()
            || self.inflight.len() >= sh.pipeline;
        sh.rec.arrived(now.saturating_sub(intended), busy);
        self.backlog.push_back(intended);
        self.fill(sh, now);
    }

    /// Requests started at or after `since` and not answered yet.
    pub(super) fn unanswered_since(&self, since: u64) -> u64 {
        self.inflight
            .iter()
            .map(|(t, _)| t)
            .chain(self.backlog.iter())
            .filter(|t| **t >= since)
            .count() as u64
    }
}
