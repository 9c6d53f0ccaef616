//! One generator thread of the WebSocket scenarios: an epoll loop over its
//! share of the connections (level-triggered, raw non-blocking sockets, like
//! the HTTP engine), through the phases of a run:
//!
//! 1. *opening*: connect (at most `connect_concurrency` handshakes at a
//!    time), upgrade, and for chat-fanout join the connection's room and wait
//!    for `joined`; then report ready and keep serving the sockets until the
//!    main thread sets the common start;
//! 2. *running*: chat-fanout senders send on an open-loop schedule (each
//!    message's intended send time is embedded in its text); every frame is
//!    read as it comes;
//! 3. *draining* (chat-fanout): nothing more is sent; reads go on until every
//!    send is acked and every member has the room's last acked message, or
//!    `timeout` after the end;
//!    *pinging* (ws-idle): `{"op":"ping"}` on every connection, each must
//!    answer `{"op":"pong"}` within `timeout`.
//!
//! The receive path: one `recv` into a worker-wide 256 KiB buffer (a
//! connection's unfinished frame is kept in its own small buffer and put in
//! front), frames located by their header, `message` frames read
//! positionally ([`super::frame::server_op`]): no JSON parser, no allocation
//! per frame. A read's frames are timed by one clock reading right after the
//! `recv` (not when epoll reported the socket: reading a burst of ready
//! sockets takes milliseconds).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::Duration;

use hdrhistogram::Histogram;
use socket2::{Domain, Protocol, Socket, Type};

use super::frame::{self, ServerOp};
use super::{Control, Kind, MemberCheck, Report, RoomAcks, Setup, WsCounters, WsSecond};
use crate::engine::sys::{self, Epoll};
use crate::sampling::Rng;
use crate::stats::new_histogram;

const SECOND_NS: u64 = 1_000_000_000;
const HOUSEKEEPING_NS: u64 = 10_000_000;
/// While opening: admissions, retries and handshake timeouts this often.
const OPENING_TICK_NS: u64 = 1_000_000;
const LATE_NS: u64 = 1_000_000;
/// While a burst of ready sockets is read, arrivals due are sent after every
/// this many (a few microseconds of reads each): sends leave on time without
/// a clock reading per socket.
const DISPATCH_EVERY: usize = 16;
/// Receive buffer shared by a worker's connections.
const RECV_BUF: usize = 256 * 1024;
/// Largest server frame accepted (a frame must fit in the receive buffer).
const MAX_FRAME: usize = 128 * 1024;
/// Connect attempts per connection (refused or reset connects are retried).
const CONNECT_ATTEMPTS: u8 = 3;
const CONNECT_BACKOFF_NS: u64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not started (or waiting for a retry at `since`).
    Waiting,
    Connecting,
    Upgrading,
    /// Chat-fanout: `join` sent, `joined` not yet read.
    Joining,
    Open,
    /// Closed by either side or failed; never reopened.
    Closed,
}

/// One WebSocket connection of the worker.
#[derive(Debug)]
struct Conn {
    /// Index over all workers' connections.
    global: usize,
    sock: Option<Socket>,
    state: State,
    /// When the current state began (connect start while opening).
    since: u64,
    attempts: u8,
    interest: u32,
    /// `Sec-WebSocket-Accept` expected while upgrading.
    accept: Option<Box<str>>,
    /// An unfinished frame (or upgrade answer), kept between reads.
    pending: Vec<u8>,
    /// Bytes not yet written.
    out: Vec<u8>,
    /// Chat-fanout: the room (index) this connection is a member of.
    room: Option<usize>,
    sender: bool,
    /// Chat-fanout: read its `joined`.
    joined: bool,
    /// Delivery check (members): seq of `joined`, last seq, messages, sum of tags.
    base: u64,
    last: u64,
    count: u64,
    hash: u64,
    duplicates: u64,
    gaps: u64,
    /// Sends of this connection not yet acked (or refused).
    outstanding: u64,
    /// Messages this sender wrote so far (its `k`).
    sent: u64,
    ping_at: u64,
    ponged: bool,
}

impl Conn {
    fn new(global: usize, room: Option<usize>, sender: bool) -> Self {
        Self {
            global,
            sock: None,
            state: State::Waiting,
            since: 0,
            attempts: 0,
            interest: 0,
            accept: None,
            pending: Vec::new(),
            out: Vec::new(),
            room,
            sender,
            joined: false,
            base: 0,
            last: 0,
            count: 0,
            hash: 0,
            duplicates: 0,
            gaps: 0,
            outstanding: 0,
            sent: 0,
            ping_at: 0,
            ponged: false,
        }
    }

    fn opening(&self) -> bool {
        matches!(
            self.state,
            State::Connecting | State::Upgrading | State::Joining
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Opening,
    /// Ready; waiting for the main thread's start.
    Ready,
    Running,
    Draining,
    Pinging,
}

/// What the worker records; per-second parts are reset at each tick.
#[derive(Debug)]
struct Rec {
    /// Delivery latency of the messages read this second.
    sec: Histogram<u64>,
    sec_deliveries: u64,
    sec_errors: u64,
    /// Delivery latency of every message sent (intended) in the window,
    /// whenever it arrived.
    latency: Histogram<u64>,
    /// Send -> ack, for sends intended in the window.
    ack: Histogram<u64>,
    /// Upgrade time: connect start -> `101`.
    handshake: Histogram<u64>,
    /// ws-idle: `ping` -> `pong` at the end.
    ping: Histogram<u64>,
    /// Senders: how late each send left after its intended time.
    lag: Histogram<u64>,
    c: WsCounters,
    spun_ns: u64,
}

impl Rec {
    fn new() -> Self {
        Self {
            sec: new_histogram(),
            sec_deliveries: 0,
            sec_errors: 0,
            latency: new_histogram(),
            ack: new_histogram(),
            handshake: new_histogram(),
            ping: new_histogram(),
            lag: new_histogram(),
            c: WsCounters::default(),
            spun_ns: 0,
        }
    }

    fn error(&mut self) {
        self.sec_errors += 1;
    }
}

/// Worker-wide state the connections share.
struct Ctx<'a> {
    setup: &'a Setup,
    ctl: &'a Control,
    epoll: Epoll,
    addr: socket2::SockAddr,
    domain: Domain,
    rec: Rec,
    rng: Rng,
    /// Scratch for frames written.
    wbuf: Vec<u8>,
    text: Vec<u8>,
    /// Measured window in the common clock (0 until the start).
    warm_end: u64,
    end: u64,
}

impl Ctx<'_> {
    fn in_window(&self, t: u64) -> bool {
        t >= self.warm_end && t < self.end
    }

    fn mask(&mut self) -> [u8; 4] {
        (self.rng.next_u64() as u32).to_ne_bytes()
    }
}

/// Runs worker `id` to the end of the run; reports to `tx`.
pub(super) fn run(id: usize, setup: Arc<Setup>, ctl: Arc<Control>, tx: Sender<Report>) {
    let fail = |e: String| {
        ctl.abort.store(true, Ordering::SeqCst);
        let _ = tx.send(Report::Failed {
            worker: id,
            error: e,
        });
    };
    let cpu = setup.cpus.get(id).copied();
    if let Some(core) = cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
    {
        eprintln!("rayltics-bench: warning: could not pin worker {id} to cpu {core}");
    }
    sys::tighten_timer_slack();
    let epoll = match Epoll::new() {
        Ok(e) => e,
        Err(e) => return fail(e.to_string()),
    };
    let threads = setup.threads;
    let mut conns: Vec<Conn> = (id..setup.connections)
        .step_by(threads)
        .map(|g| {
            let (room, sender) = setup.role_of(g);
            Conn::new(g, room, sender)
        })
        .collect();
    let mut cx = Ctx {
        setup: &setup,
        ctl: &ctl,
        epoll,
        addr: setup.addr.into(),
        domain: Domain::for_address(setup.addr),
        rec: Rec::new(),
        rng: Rng::for_stream(0x5753, id as u64),
        wbuf: Vec::with_capacity(512),
        text: Vec::with_capacity(64),
        warm_end: u64::MAX,
        end: u64::MAX,
    };
    let mut buf = vec![0u8; RECV_BUF];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut phase = Phase::Opening;
    let mut next_connect = 0usize;
    let mut schedule = Schedule::new(&setup, id);
    let mut ticks = Ticks::default();
    let mut phase_deadline = u64::MAX;
    let mut next_house = 0u64;
    let mut last_event = 0u64;
    let spin_ns = setup.spin_ns;
    let clock = &setup.clock;

    loop {
        if ctl.abort.load(Ordering::Relaxed) {
            return;
        }
        let now = clock.now();
        // Phase changes.
        match phase {
            Phase::Opening => {
                if now >= next_house {
                    next_house = now + OPENING_TICK_NS;
                    let mut busy = 0;
                    let mut settled = next_connect == conns.len();
                    for (i, c) in conns.iter_mut().enumerate() {
                        housekeeping(&mut cx, c, i, now);
                        busy += usize::from(c.opening());
                        settled &= matches!(c.state, State::Open | State::Closed);
                    }
                    while busy < setup.connect_concurrency && next_connect < conns.len() {
                        connect(&mut cx, &mut conns[next_connect], next_connect, now);
                        next_connect += 1;
                        busy += 1;
                        settled = false;
                    }
                    if settled {
                        let opened = conns.iter().filter(|c| c.state == State::Open).count();
                        let _ = tx.send(Report::Ready { opened });
                        phase = Phase::Ready;
                    }
                }
            }
            Phase::Ready => {
                let go = ctl.go_at.load(Ordering::SeqCst);
                if go != 0 && now >= go {
                    cx.warm_end = go + setup.warmup_ns;
                    cx.end = cx.warm_end + setup.duration_ns;
                    ticks = Ticks::new(cx.warm_end, cx.end);
                    schedule.start(go, cx.end);
                    phase = Phase::Running;
                }
            }
            Phase::Running => {
                ticks.catch_up(&mut cx, now, &tx);
                if now >= cx.end {
                    match setup.kind {
                        Kind::Fanout => {
                            ctl.stopped.fetch_add(1, Ordering::SeqCst);
                            phase = Phase::Draining;
                            phase_deadline = cx.end + setup.timeout_ns;
                        }
                        Kind::Idle => {
                            ping_all(&mut cx, &mut conns, clock.now());
                            phase = Phase::Pinging;
                            phase_deadline = clock.now() + setup.timeout_ns;
                        }
                    }
                    continue;
                }
                schedule.dispatch(&mut cx, &mut conns, now);
            }
            Phase::Draining => {
                let all_stopped = ctl.stopped.load(Ordering::SeqCst) == threads;
                let drained = all_stopped
                    && ctl.outstanding.load(Ordering::SeqCst) <= 0
                    && conns.iter().all(|c| {
                        c.state != State::Open
                            || c.room
                                .is_none_or(|r| c.last >= ctl.room_max[r].load(Ordering::SeqCst))
                    });
                if drained || now >= phase_deadline {
                    if !drained {
                        cx.rec.c.timeouts.drain += 1;
                    }
                    break;
                }
            }
            Phase::Pinging => {
                let done = conns.iter().all(|c| c.state != State::Open || c.ponged);
                if done || now >= phase_deadline {
                    let unanswered = conns
                        .iter()
                        .filter(|c| c.state == State::Open && !c.ponged)
                        .count() as u64;
                    cx.rec.c.timeouts.pong += unanswered;
                    break;
                }
            }
        }
        // Sleep until the next thing due, or busy-poll when it is close.
        let mut deadline = phase_deadline.min(now + HOUSEKEEPING_NS);
        match phase {
            Phase::Running => {
                deadline = deadline.min(ticks.next).min(cx.end);
                if let Some(t) = schedule.next_due() {
                    deadline = deadline.min(t);
                }
            }
            Phase::Ready => deadline = deadline.min(now + 1_000_000),
            Phase::Opening => deadline = deadline.min(next_house),
            _ => {}
        }
        let gap = deadline.saturating_sub(now);
        let polling = gap <= spin_ns || now.saturating_sub(last_event) < spin_ns;
        let timeout = Duration::from_nanos(if polling { 0 } else { gap - spin_ns });
        let n = match cx.epoll.wait(&mut events, Some(timeout)) {
            Ok(n) => n,
            Err(e) => return fail(e.to_string()),
        };
        if n == 0 {
            if polling {
                cx.rec.spun_ns += clock.now().saturating_sub(now);
            }
            continue;
        }
        let now = clock.now();
        last_event = now;
        if phase == Phase::Running {
            ticks.catch_up(&mut cx, now, &tx);
        }
        for (k, ev) in events[..n].iter().enumerate() {
            let i = ev.u64 as usize;
            if let Some(c) = conns.get_mut(i) {
                on_event(&mut cx, c, i, ev.events, &mut buf, now);
            }
            if phase == Phase::Running && k % DISPATCH_EVERY == DISPATCH_EVERY - 1 {
                // Arrivals that fell due while a burst of reads was handled.
                schedule.dispatch(&mut cx, &mut conns, clock.now());
            }
        }
    }
    let (user, system) = sys::thread_cpu_time();
    let members = checks(&setup, &conns);
    let alive = conns
        .iter()
        .filter(|c| c.state == State::Open && (setup.kind == Kind::Fanout || c.ponged))
        .count();
    let outstanding = conns.iter().map(|c| c.outstanding).sum();
    let rec = cx.rec;
    let _ = tx.send(Report::Done(Box::new(super::WorkerDone {
        worker: id,
        cpu,
        connections: conns.len(),
        cpu_window: ticks.cpu_window.or_else(|| {
            Some((
                user.saturating_sub(ticks.cpu_start.0),
                system.saturating_sub(ticks.cpu_start.1),
            ))
        }),
        spun: Duration::from_nanos(ticks.spun_window),
        latency: rec.latency,
        ack: rec.ack,
        handshake: rec.handshake,
        ping: rec.ping,
        lag: rec.lag,
        counters: rec.c,
        alive,
        outstanding,
        members,
    })));
}

/// The delivery check's inputs of this worker: each member's tally.
fn checks(setup: &Setup, conns: &[Conn]) -> Vec<MemberCheck> {
    if setup.kind != Kind::Fanout {
        return Vec::new();
    }
    conns
        .iter()
        .filter_map(|c| {
            Some(MemberCheck {
                room: c.room?,
                joined: c.joined,
                open: c.state == State::Open,
                base: c.base,
                last: c.last,
                count: c.count,
                hash: c.hash,
                duplicates: c.duplicates,
                gaps: c.gaps,
            })
        })
        .collect()
}

/// Per-second reports of the measured window, and the window's CPU time.
#[derive(Debug, Default)]
struct Ticks {
    warm_end: u64,
    end: u64,
    next: u64,
    second: u32,
    warmed: bool,
    done: bool,
    cpu_start: (Duration, Duration),
    /// The thread's CPU time over the window (user, system), at its end.
    cpu_window: Option<(Duration, Duration)>,
    spun_start: u64,
    spun_window: u64,
}

impl Ticks {
    fn new(warm_end: u64, end: u64) -> Self {
        Self {
            warm_end,
            end,
            next: warm_end,
            ..Self::default()
        }
    }

    fn catch_up(&mut self, cx: &mut Ctx<'_>, now: u64, tx: &Sender<Report>) {
        while !self.done && now >= self.next {
            let at = self.next;
            if !self.warmed {
                self.warmed = true;
                self.cpu_start = sys::thread_cpu_time();
                self.spun_start = cx.rec.spun_ns;
            } else {
                let start = self.warm_end + u64::from(self.second) * SECOND_NS;
                let r = &mut cx.rec;
                let _ = tx.send(Report::Second(Box::new(WsSecond {
                    second: self.second,
                    interval_s: (at - start) as f64 / 1e9,
                    hist: r.sec.clone(),
                    deliveries: r.sec_deliveries,
                    errors: r.sec_errors,
                })));
                self.second += 1;
                if at >= self.end {
                    self.done = true;
                    let (u, s) = sys::thread_cpu_time();
                    self.cpu_window = Some((
                        u.saturating_sub(self.cpu_start.0),
                        s.saturating_sub(self.cpu_start.1),
                    ));
                    self.spun_window = cx.rec.spun_ns - self.spun_start;
                }
            }
            let r = &mut cx.rec;
            r.sec.reset();
            r.sec_deliveries = 0;
            r.sec_errors = 0;
            self.next = (self.warm_end + u64::from(self.second + 1) * SECOND_NS).min(self.end);
        }
    }
}

/// Chat-fanout: this worker's senders' share of the open-loop arrivals.
/// Arrival `i` (intended at `start + i / rate`) goes to sender `i % senders`;
/// sender `g` (a connection's global index) lives on worker `g % threads`.
#[derive(Debug)]
struct Schedule {
    /// Senders of this worker, ascending global index (= arrival offset).
    mine: Vec<usize>,
    senders: usize,
    period_ns: f64,
    start: u64,
    cycle: u64,
    pos: usize,
    end: u64,
    active: bool,
}

impl Schedule {
    fn new(setup: &Setup, worker: usize) -> Self {
        let senders = setup.total_senders();
        let mine = if setup.kind == Kind::Fanout {
            (0..senders)
                .filter(|g| g % setup.threads == worker)
                .collect()
        } else {
            Vec::new()
        };
        Self {
            mine,
            senders,
            period_ns: if setup.rate > 0.0 {
                1e9 / setup.rate
            } else {
                f64::INFINITY
            },
            start: 0,
            cycle: 0,
            pos: 0,
            end: 0,
            active: false,
        }
    }

    fn start(&mut self, start: u64, end: u64) {
        self.start = start;
        self.end = end;
        self.active = !self.mine.is_empty() && self.period_ns.is_finite();
    }

    /// Intended time of this worker's next arrival.
    fn next_due(&self) -> Option<u64> {
        if !self.active {
            return None;
        }
        let i = self.cycle * self.senders as u64 + self.mine[self.pos] as u64;
        Some(self.start + (i as f64 * self.period_ns) as u64)
    }

    fn advance(&mut self) {
        self.pos += 1;
        if self.pos == self.mine.len() {
            self.pos = 0;
            self.cycle += 1;
        }
    }

    fn dispatch(&mut self, cx: &mut Ctx<'_>, conns: &mut [Conn], now: u64) {
        while let Some(due) = self.next_due() {
            if due > now {
                return;
            }
            if due >= self.end {
                self.active = false;
                return;
            }
            let g = self.mine[self.pos];
            let k = self.cycle;
            self.advance();
            let i = g / cx.setup.threads;
            send_message(cx, &mut conns[i], i, due, now, k);
        }
    }
}

/// Sends message `k` of sender `c`, intended at `due`.
fn send_message(cx: &mut Ctx<'_>, c: &mut Conn, token: usize, due: u64, now: u64, k: u64) {
    let lag = now.saturating_sub(due);
    cx.rec.lag.saturating_record(lag.max(1));
    if lag > LATE_NS {
        cx.rec.c.late_over_1ms += 1;
    }
    if c.state != State::Open {
        // The sender was closed: the message is lost (counted, not sent).
        cx.rec.c.sends_skipped += 1;
        cx.rec.error();
        return;
    }
    let Some(room) = c.room else { return };
    cx.text.clear();
    frame::message_text(&mut cx.text, cx.setup.clock.unix(due), c.global, k);
    let mut json = std::mem::take(&mut cx.wbuf);
    json.clear();
    frame::send_json(&mut json, &cx.setup.rooms[room], &cx.text);
    let mask = cx.mask();
    let mut wire = Vec::with_capacity(json.len() + 8);
    frame::encode(&mut wire, frame::OP_TEXT, &json, mask);
    cx.wbuf = json;
    c.sent += 1;
    c.outstanding += 1;
    cx.ctl.outstanding.fetch_add(1, Ordering::SeqCst);
    cx.rec.c.sends_total += 1;
    if cx.in_window(due) {
        cx.rec.c.sends += 1;
    }
    write(cx, c, token, &wire);
}

fn connect(cx: &mut Ctx<'_>, c: &mut Conn, token: usize, now: u64) {
    c.attempts += 1;
    c.since = now;
    let sock = match Socket::new(
        cx.domain,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    ) {
        Ok(s) => s,
        Err(_) => return connect_failed(cx, c, now),
    };
    let _ = sock.set_tcp_nodelay(true);
    match sock.connect(&cx.addr) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(_) => return connect_failed(cx, c, now),
    }
    c.interest = sys::IN | sys::OUT;
    if cx
        .epoll
        .add(sock.as_raw_fd(), c.interest, token as u64)
        .is_err()
    {
        return connect_failed(cx, c, now);
    }
    c.sock = Some(sock);
    c.state = State::Connecting;
}

fn connect_failed(cx: &mut Ctx<'_>, c: &mut Conn, now: u64) {
    cx.rec.c.connect_errors += 1;
    cx.rec.error();
    c.sock = None;
    c.pending = Vec::new();
    c.out = Vec::new();
    if c.attempts < CONNECT_ATTEMPTS {
        c.state = State::Waiting;
        c.since = now + CONNECT_BACKOFF_NS;
    } else {
        c.state = State::Closed;
    }
}

/// Opening: retries due, handshakes and joins past `timeout`.
fn housekeeping(cx: &mut Ctx<'_>, c: &mut Conn, token: usize, now: u64) {
    match c.state {
        State::Waiting if c.attempts > 0 && now >= c.since => connect(cx, c, token, now),
        State::Connecting | State::Upgrading | State::Joining
            if now.saturating_sub(c.since) > cx.setup.timeout_ns =>
        {
            if c.state == State::Joining {
                cx.rec.c.timeouts.join += 1;
            } else {
                cx.rec.c.timeouts.handshake += 1;
            }
            cx.rec.error();
            close(c);
        }
        _ => {}
    }
}

fn close(c: &mut Conn) {
    // Dropping the socket closes it (and removes it from the epoll set).
    c.sock = None;
    c.state = State::Closed;
    c.pending = Vec::new();
    c.out = Vec::new();
}

fn set_interest(cx: &mut Ctx<'_>, c: &mut Conn, token: usize, interest: u32) {
    if c.interest == interest {
        return;
    }
    if let Some(s) = &c.sock
        && cx
            .epoll
            .modify(s.as_raw_fd(), interest, token as u64)
            .is_ok()
    {
        c.interest = interest;
    }
}

/// Writes `bytes` now (or queues them behind what is still unwritten).
fn write(cx: &mut Ctx<'_>, c: &mut Conn, token: usize, bytes: &[u8]) {
    if !c.out.is_empty() {
        c.out.extend_from_slice(bytes);
        return;
    }
    let Some(sock) = &c.sock else { return };
    match sock.send_with_flags(bytes, libc::MSG_NOSIGNAL) {
        Ok(n) if n == bytes.len() => {}
        Ok(n) => {
            c.out.extend_from_slice(&bytes[n..]);
            set_interest(cx, c, token, sys::IN | sys::OUT);
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
            c.out.extend_from_slice(bytes);
            set_interest(cx, c, token, sys::IN | sys::OUT);
        }
        Err(_) => lost(cx, c),
    }
}

fn flush(cx: &mut Ctx<'_>, c: &mut Conn, token: usize) {
    let Some(sock) = &c.sock else { return };
    match sock.send_with_flags(&c.out, libc::MSG_NOSIGNAL) {
        Ok(n) => {
            c.out.drain(..n);
            if c.out.is_empty() {
                c.out = Vec::new();
                set_interest(cx, c, token, sys::IN);
            }
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
        Err(_) => lost(cx, c),
    }
}

/// The connection ended without a close frame (reset, or EOF): 1006.
fn lost(cx: &mut Ctx<'_>, c: &mut Conn) {
    if c.opening() {
        cx.rec.c.connect_errors += 1;
    } else {
        *cx.rec.c.closes.entry(1006).or_default() += 1;
    }
    cx.rec.error();
    close(c);
}

fn on_event(cx: &mut Ctx<'_>, c: &mut Conn, token: usize, ready: u32, buf: &mut [u8], now: u64) {
    match c.state {
        State::Waiting | State::Closed => {}
        State::Connecting => {
            if ready & (sys::OUT | sys::ERR) == 0 {
                return;
            }
            let failed = match &c.sock {
                Some(s) => !matches!(s.take_error(), Ok(None)) || ready & sys::ERR != 0,
                None => true,
            };
            if failed {
                c.sock = None;
                return connect_failed(cx, c, now);
            }
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&cx.rng.next_u64().to_ne_bytes());
            key[8..].copy_from_slice(&cx.rng.next_u64().to_ne_bytes());
            let user = c.global % cx.setup.paths.len();
            let (req, accept) = frame::handshake(&cx.setup.host, &cx.setup.paths[user], key);
            c.accept = Some(accept.into_boxed_str());
            c.state = State::Upgrading;
            set_interest(cx, c, token, sys::IN);
            write(cx, c, token, &req);
        }
        State::Upgrading | State::Joining | State::Open => {
            if ready & (sys::IN | sys::ERR) != 0 {
                on_readable(cx, c, token, buf);
            }
            if c.sock.is_some() && ready & sys::OUT != 0 && !c.out.is_empty() {
                flush(cx, c, token);
            }
        }
    }
}

fn on_readable(cx: &mut Ctx<'_>, c: &mut Conn, token: usize, buf: &mut [u8]) {
    let Some(sock) = &c.sock else { return };
    let held = c.pending.len();
    buf[..held].copy_from_slice(&c.pending);
    let n = match (&*sock).read(&mut buf[held..]) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
            return;
        }
        Err(_) => return lost(cx, c),
    };
    if n == 0 {
        return lost(cx, c);
    }
    // Frames are timed when read, not when epoll reported the socket: a
    // burst of ready sockets takes milliseconds to read, and frames written
    // meanwhile (even ones this thread sent since) are in this read.
    let now = cx.setup.clock.now();
    c.pending.clear();
    let data = &buf[..held + n];
    let mut at = 0;
    if c.state == State::Upgrading {
        let accept = c.accept.as_deref().unwrap_or_default();
        match frame::upgrade_answer(data, accept) {
            frame::Upgrade::Partial => {
                if data.len() > 16 * 1024 {
                    return refuse(cx, c, 0);
                }
                c.pending.extend_from_slice(data);
                return;
            }
            frame::Upgrade::Switched(head) => {
                at = head;
                c.accept = None;
                cx.rec.c.upgraded += 1;
                cx.rec
                    .handshake
                    .saturating_record(now.saturating_sub(c.since).max(1));
                match c.room {
                    Some(room) if cx.setup.kind == Kind::Fanout => {
                        let join = format!(r#"{{"op":"join","room":"{}"}}"#, cx.setup.rooms[room]);
                        let mask = cx.mask();
                        let mut wire = Vec::with_capacity(join.len() + 8);
                        frame::encode(&mut wire, frame::OP_TEXT, join.as_bytes(), mask);
                        c.state = State::Joining;
                        c.since = now;
                        write(cx, c, token, &wire);
                        if c.sock.is_none() {
                            return;
                        }
                    }
                    _ => c.state = State::Open,
                }
            }
            frame::Upgrade::Refused(status) => return refuse(cx, c, status),
            frame::Upgrade::Malformed => return refuse(cx, c, 0),
        }
    }
    // Frames: read every complete one; keep the unfinished tail.
    loop {
        let rest = &buf[at..held + n];
        match frame::parse(rest, MAX_FRAME) {
            Ok(Some(f)) => {
                let payload = &rest[f.payload_start..f.end()];
                at += f.end();
                if !on_frame(cx, c, token, f, payload, now) {
                    return;
                }
            }
            Ok(None) => {
                c.pending.extend_from_slice(rest);
                return;
            }
            Err(_) => {
                cx.rec.c.protocol_errors += 1;
                cx.rec.error();
                return close(c);
            }
        }
    }
}

/// The upgrade was refused (`status`, 0: not a valid `101`).
fn refuse(cx: &mut Ctx<'_>, c: &mut Conn, status: u16) {
    *cx.rec.c.refused.entry(status).or_default() += 1;
    cx.rec.error();
    close(c);
}

/// Handles one frame; `false` when the connection is gone.
fn on_frame(
    cx: &mut Ctx<'_>,
    c: &mut Conn,
    token: usize,
    f: frame::Frame,
    payload: &[u8],
    now: u64,
) -> bool {
    if !f.fin || f.opcode == frame::OP_CONT || f.opcode == frame::OP_BINARY {
        // The server sends every message as one text frame.
        cx.rec.c.protocol_errors += 1;
        cx.rec.error();
        close(c);
        return false;
    }
    match f.opcode {
        frame::OP_TEXT => on_text(cx, c, payload, now),
        frame::OP_PING => {
            let mask = cx.mask();
            let mut wire = Vec::with_capacity(payload.len() + 6);
            frame::encode(&mut wire, frame::OP_PONG, payload, mask);
            cx.rec.c.server_pings += 1;
            write(cx, c, token, &wire);
            c.sock.is_some()
        }
        frame::OP_PONG => true,
        frame::OP_CLOSE => {
            let code = match payload {
                [a, b, ..] => u16::from_be_bytes([*a, *b]),
                _ => 1005,
            };
            *cx.rec.c.closes.entry(code).or_default() += 1;
            cx.rec.error();
            // Echo the close, then let the socket go.
            let mask = cx.mask();
            let mut wire = Vec::with_capacity(8);
            frame::encode(
                &mut wire,
                frame::OP_CLOSE,
                &payload[..payload.len().min(2)],
                mask,
            );
            if let Some(s) = &c.sock {
                let _ = s.send_with_flags(&wire, libc::MSG_NOSIGNAL);
            }
            close(c);
            false
        }
        _ => {
            cx.rec.c.protocol_errors += 1;
            cx.rec.error();
            close(c);
            false
        }
    }
}

fn on_text(cx: &mut Ctx<'_>, c: &mut Conn, payload: &[u8], now: u64) -> bool {
    match frame::server_op(payload) {
        ServerOp::Message { room, seq, text } => {
            let ours = c.state == State::Open
                && c.room.is_some_and(|r| cx.setup.rooms[r].as_bytes() == room);
            if !ours {
                cx.rec.c.unexpected_frames += 1;
                cx.rec.error();
                return true;
            }
            if seq == c.last + 1 {
                c.last = seq;
            } else if seq <= c.last {
                c.duplicates += 1;
            } else {
                c.gaps += seq - c.last - 1;
                c.last = seq;
            }
            c.count += 1;
            c.hash = c.hash.wrapping_add(frame::tag(seq, text));
            cx.rec.c.deliveries_total += 1;
            match frame::embedded_time(text) {
                Some(unix) => {
                    let sent = cx.setup.clock.mono(unix);
                    let latency = now.saturating_sub(sent).max(1);
                    if cx.in_window(sent) {
                        cx.rec.latency.saturating_record(latency);
                    }
                    if cx.in_window(now) {
                        cx.rec.c.deliveries += 1;
                        cx.rec.sec_deliveries += 1;
                        cx.rec.sec.saturating_record(latency);
                    }
                }
                None => {
                    cx.rec.c.unexpected_frames += 1;
                    cx.rec.error();
                }
            }
        }
        ServerOp::Ack { client_msg_id, seq } => {
            if !c.sender || c.outstanding == 0 {
                cx.rec.c.unexpected_frames += 1;
                cx.rec.error();
                return true;
            }
            c.outstanding -= 1;
            cx.ctl.outstanding.fetch_sub(1, Ordering::SeqCst);
            cx.rec.c.acks += 1;
            if let Some(room) = c.room {
                let acc = cx.rec.c.rooms.entry(room).or_insert_with(RoomAcks::empty);
                acc.add(seq, frame::tag(seq, client_msg_id));
                cx.ctl.room_max[room].fetch_max(seq, Ordering::SeqCst);
            }
            if let Some(unix) = frame::embedded_time(client_msg_id) {
                let sent = cx.setup.clock.mono(unix);
                if cx.in_window(sent) {
                    cx.rec
                        .ack
                        .saturating_record(now.saturating_sub(sent).max(1));
                }
            }
        }
        ServerOp::Joined { room, last_seq } => {
            let ours = c.state == State::Joining
                && c.room.is_some_and(|r| cx.setup.rooms[r].as_bytes() == room);
            if !ours {
                cx.rec.c.unexpected_frames += 1;
                cx.rec.error();
                return true;
            }
            c.base = last_seq;
            c.last = last_seq;
            c.joined = true;
            c.state = State::Open;
            cx.rec.c.joined += 1;
        }
        ServerOp::Presence => cx.rec.c.presence += 1,
        ServerOp::Pong => {
            if c.ping_at > 0 && !c.ponged {
                c.ponged = true;
                cx.rec
                    .ping
                    .saturating_record(now.saturating_sub(c.ping_at).max(1));
            } else {
                cx.rec.c.unexpected_frames += 1;
                cx.rec.error();
            }
        }
        ServerOp::Error { code } => {
            let code = String::from_utf8_lossy(code).into_owned();
            *cx.rec.c.error_frames.entry(code).or_default() += 1;
            cx.rec.error();
            if c.state == State::Joining {
                close(c);
                return false;
            }
            if c.sender && c.outstanding > 0 {
                // A refused send (e.g. rate_limited): it has no seq.
                c.outstanding -= 1;
                cx.ctl.outstanding.fetch_sub(1, Ordering::SeqCst);
            }
        }
        ServerOp::Other => {
            cx.rec.c.unexpected_frames += 1;
            cx.rec.error();
        }
    }
    true
}

/// ws-idle: `{"op":"ping"}` on every open connection.
fn ping_all(cx: &mut Ctx<'_>, conns: &mut [Conn], now: u64) {
    for (i, c) in conns.iter_mut().enumerate() {
        if c.state != State::Open {
            continue;
        }
        let mask = cx.mask();
        let mut wire = Vec::with_capacity(20);
        frame::encode(&mut wire, frame::OP_TEXT, br#"{"op":"ping"}"#, mask);
        c.ping_at = now.max(1);
        write(cx, c, i, &wire);
    }
}

impl RoomAcks {
    pub(super) fn empty() -> Self {
        Self {
            acks: 0,
            hash: 0,
            min_seq: u64::MAX,
            max_seq: 0,
        }
    }

    pub(super) fn add(&mut self, seq: u64, tag: u64) {
        self.acks += 1;
        self.hash = self.hash.wrapping_add(tag);
        self.min_seq = self.min_seq.min(seq);
        self.max_seq = self.max_seq.max(seq);
    }

    pub(super) fn merge(&mut self, o: &RoomAcks) {
        self.acks += o.acks;
        self.hash = self.hash.wrapping_add(o.hash);
        self.min_seq = self.min_seq.min(o.min_seq);
        self.max_seq = self.max_seq.max(o.max_seq);
    }
}

/// Counts of a map of codes, merged.
pub(super) fn merge_counts<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}
