//! The WebSocket scenarios (API.md "Real-time", `GET /ws`):
//!
//! - `ws-idle`: holds `--connections` authenticated connections open and
//!   reports the node's resident memory per connection (`VmRSS` of
//!   `--node-pid` before opening them and after, once settled), then checks
//!   that every one still answers `{"op":"ping"}` after `--duration`.
//! - `chat-fanout`: `--rooms` rooms of `--members` connections each; the first
//!   `--senders` members of each room also send, at `--rate` messages per
//!   second over all senders (open loop: each message carries its intended
//!   send time, `t=<unix ns>`, in its text). Every member reads every frame
//!   and records delivery latency = receive time - that time (one clock: the
//!   generator's). After the window, a delivery check: every member got every
//!   message of its room exactly once, in seq order without gaps, with the
//!   text its ack named.
//!
//! # Layout
//! - [`frame`]: handshake, masked client frames, server frame headers, the
//!   chat frames' fields read without a JSON parser.
//! - `worker`: one epoll thread per `--cpus` entry over its share of the
//!   connections.
//! - [`node`]: `/proc` readers (the node's RSS and CPU per thread, kernel TCP
//!   memory) and the generator's file limit.
//! - this module: options, setup over the API, the run's phases (all open ->
//!   start -> window -> drain), merging, the delivery check and the report.

pub(crate) mod frame;
#[cfg(test)]
mod mock;
pub(crate) mod node;
mod worker;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::report::{self, ConfigOut, Document};
use crate::stats::{
    Errors, Latency, RunResult, Second, SendLag, ThreadUsage, new_histogram, round3,
};
use crate::{Progress, RunArgs, Scenario, Target, setup};

/// Options of the WebSocket scenarios.
#[derive(Debug, clap::Args)]
pub(crate) struct WsArgs {
    /// chat-fanout: rooms.
    #[arg(long, default_value_t = 1)]
    pub(crate) rooms: usize,
    /// chat-fanout: connections per room (each joins one room).
    #[arg(long, default_value_t = 100)]
    pub(crate) members: usize,
    /// chat-fanout: senders per room (members that also send).
    #[arg(long, default_value_t = 1)]
    pub(crate) senders: usize,
    /// The node's process id: its RSS (ws-idle: bytes per connection) and CPU
    /// time (per thread) are read from /proc.
    #[arg(long)]
    pub(crate) node_pid: Option<u32>,
    /// ws-idle: wait this long after setup and after the last connection
    /// opened before reading the node's RSS.
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    pub(crate) settle: std::time::Duration,
    /// Handshakes (connect, upgrade, join) in progress at a time per thread.
    #[arg(long, default_value_t = 64)]
    pub(crate) connect_concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Idle,
    Fanout,
}

/// The generator's clock: nanoseconds since `base` (never 0), and the Unix
/// time of `base` to write and read the timestamps embedded in messages.
#[derive(Debug)]
pub(super) struct Clock {
    base: Instant,
    unix_base: u64,
}

impl Clock {
    fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self {
            base: Instant::now(),
            unix_base: unix,
        }
    }

    pub(super) fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }

    /// Unix nanoseconds of a clock reading.
    pub(super) fn unix(&self, t: u64) -> u64 {
        self.unix_base + t
    }

    /// The clock reading of Unix nanoseconds.
    pub(super) fn mono(&self, unix: u64) -> u64 {
        unix.saturating_sub(self.unix_base)
    }
}

/// What every worker reads.
#[derive(Debug)]
pub(super) struct Setup {
    pub(super) kind: Kind,
    pub(super) addr: SocketAddr,
    pub(super) host: String,
    /// `/ws?token=...` of each user.
    pub(super) paths: Vec<String>,
    pub(super) rooms: Vec<String>,
    pub(super) connections: usize,
    pub(super) senders_per_room: usize,
    /// Messages per second over all senders.
    pub(super) rate: f64,
    pub(super) threads: usize,
    pub(super) cpus: Vec<usize>,
    pub(super) warmup_ns: u64,
    pub(super) duration_ns: u64,
    pub(super) timeout_ns: u64,
    pub(super) spin_ns: u64,
    pub(super) connect_concurrency: usize,
    pub(super) clock: Clock,
}

impl Setup {
    /// Connection `g`'s room and whether it sends: room `g % rooms`, member
    /// `g / rooms` of it; the first `senders` members send (so senders are
    /// connections `0..rooms * senders`).
    pub(super) fn role_of(&self, g: usize) -> (Option<usize>, bool) {
        match self.kind {
            Kind::Idle => (None, false),
            Kind::Fanout => {
                let rooms = self.rooms.len();
                (Some(g % rooms), g / rooms < self.senders_per_room)
            }
        }
    }

    pub(super) fn total_senders(&self) -> usize {
        match self.kind {
            Kind::Idle => 0,
            Kind::Fanout => self.rooms.len() * self.senders_per_room,
        }
    }
}

/// Shared between the workers and the main thread.
#[derive(Debug)]
pub(super) struct Control {
    /// The common start (clock reading; 0 = not yet).
    pub(super) go_at: AtomicU64,
    /// Workers past the window (they send no more).
    pub(super) stopped: AtomicUsize,
    /// Sends written and not yet acked or refused, over all workers.
    pub(super) outstanding: AtomicI64,
    /// Highest acked seq of each room.
    pub(super) room_max: Vec<AtomicU64>,
    pub(super) abort: AtomicBool,
}

/// Timeouts by what timed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Timeouts {
    /// Connect + upgrade not done within `--timeout`.
    pub(crate) handshake: u64,
    /// No `joined` within `--timeout` of the `join`.
    pub(crate) join: u64,
    /// ws-idle: connections that did not answer the final ping.
    pub(crate) pong: u64,
    /// chat-fanout: workers whose drain ended at its deadline (acks or
    /// messages still missing).
    pub(crate) drain: u64,
}

impl Timeouts {
    fn add(&mut self, o: &Timeouts) {
        self.handshake += o.handshake;
        self.join += o.join;
        self.pong += o.pong;
        self.drain += o.drain;
    }

    fn total(&self) -> u64 {
        self.handshake + self.join + self.pong + self.drain
    }
}

/// Acks of one room's messages (as the senders saw them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RoomAcks {
    pub(super) acks: u64,
    /// Sum of the acked messages' tags ([`frame::tag`]).
    pub(super) hash: u64,
    pub(super) min_seq: u64,
    pub(super) max_seq: u64,
}

/// A worker's counters over the whole run (window counts say so).
#[derive(Debug, Clone, Default)]
pub(super) struct WsCounters {
    pub(super) upgraded: u64,
    pub(super) joined: u64,
    /// Messages read by members in the window (by receive time).
    pub(super) deliveries: u64,
    pub(super) deliveries_total: u64,
    /// Sends intended in the window.
    pub(super) sends: u64,
    pub(super) sends_total: u64,
    /// Arrivals whose sender was closed (not sent).
    pub(super) sends_skipped: u64,
    pub(super) acks: u64,
    pub(super) late_over_1ms: u64,
    pub(super) presence: u64,
    pub(super) server_pings: u64,
    pub(super) connect_errors: u64,
    /// Upgrades answered with another status (0: a 101 with a wrong key).
    pub(super) refused: BTreeMap<u16, u64>,
    pub(super) error_frames: BTreeMap<String, u64>,
    /// Close frames by code; 1006: the connection ended without one.
    pub(super) closes: BTreeMap<u16, u64>,
    pub(super) protocol_errors: u64,
    pub(super) unexpected_frames: u64,
    pub(super) timeouts: Timeouts,
    pub(super) rooms: BTreeMap<usize, RoomAcks>,
}

impl WsCounters {
    fn add(&mut self, o: &WsCounters) {
        self.upgraded += o.upgraded;
        self.joined += o.joined;
        self.deliveries += o.deliveries;
        self.deliveries_total += o.deliveries_total;
        self.sends += o.sends;
        self.sends_total += o.sends_total;
        self.sends_skipped += o.sends_skipped;
        self.acks += o.acks;
        self.late_over_1ms += o.late_over_1ms;
        self.presence += o.presence;
        self.server_pings += o.server_pings;
        self.connect_errors += o.connect_errors;
        worker::merge_counts(&mut self.refused, &o.refused);
        worker::merge_counts(&mut self.error_frames, &o.error_frames);
        worker::merge_counts(&mut self.closes, &o.closes);
        self.protocol_errors += o.protocol_errors;
        self.unexpected_frames += o.unexpected_frames;
        self.timeouts.add(&o.timeouts);
        for (room, acks) in &o.rooms {
            self.rooms
                .entry(*room)
                .or_insert_with(RoomAcks::empty)
                .merge(acks);
        }
    }
}

/// One member's tally for the delivery check.
#[derive(Debug, Clone, Copy)]
pub(super) struct MemberCheck {
    pub(super) room: usize,
    pub(super) joined: bool,
    pub(super) open: bool,
    pub(super) base: u64,
    pub(super) last: u64,
    pub(super) count: u64,
    pub(super) hash: u64,
    pub(super) duplicates: u64,
    pub(super) gaps: u64,
}

/// One worker's second of the window.
#[derive(Debug)]
pub(super) struct WsSecond {
    pub(super) second: u32,
    pub(super) interval_s: f64,
    pub(super) hist: Histogram<u64>,
    pub(super) deliveries: u64,
    pub(super) errors: u64,
}

/// A worker's totals.
#[derive(Debug)]
pub(super) struct WorkerDone {
    pub(super) worker: usize,
    pub(super) cpu: Option<usize>,
    pub(super) connections: usize,
    pub(super) cpu_window: Option<(Duration, Duration)>,
    pub(super) spun: Duration,
    pub(super) latency: Histogram<u64>,
    pub(super) ack: Histogram<u64>,
    pub(super) handshake: Histogram<u64>,
    pub(super) ping: Histogram<u64>,
    pub(super) lag: Histogram<u64>,
    pub(super) counters: WsCounters,
    /// ws-idle: connections that answered the final ping; chat-fanout:
    /// connections open at the end.
    pub(super) alive: usize,
    /// Sends never acked nor refused.
    pub(super) outstanding: u64,
    pub(super) members: Vec<MemberCheck>,
}

#[derive(Debug)]
pub(super) enum Report {
    Ready { opened: usize },
    Second(Box<WsSecond>),
    Done(Box<WorkerDone>),
    Failed { worker: usize, error: String },
}

/// ws-idle: the node's memory (JSON `websocket.idle`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct IdleMemory {
    pub(crate) node_pid: Option<u32>,
    /// `VmRSS` after setup, before the first connection.
    pub(crate) rss_before_bytes: Option<u64>,
    /// `VmRSS` once every connection is open and `settle_s` passed.
    pub(crate) rss_after_bytes: Option<u64>,
    /// `VmRSS` at the end of the hold (`--duration`), before the pings.
    pub(crate) rss_end_bytes: Option<u64>,
    /// `(rss_after - rss_before) / connections open`.
    pub(crate) bytes_per_connection: Option<f64>,
    /// The same at the end of the hold.
    pub(crate) bytes_per_connection_end: Option<f64>,
    /// Kernel TCP memory (`/proc/net/sockstat`, every socket of the machine,
    /// both ends of each loopback connection) after - before: not in the RSS.
    pub(crate) kernel_tcp_mem_delta_bytes: Option<i64>,
    pub(crate) settle_s: f64,
    /// `ping` -> `pong` at the end, every connection.
    pub(crate) ping_rtt: Latency,
}

/// chat-fanout: deliveries (JSON `websocket.fanout`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Fanout {
    pub(crate) rooms: usize,
    pub(crate) members_per_room: usize,
    pub(crate) senders_per_room: usize,
    pub(crate) users: usize,
    /// `--rate`: messages per second over all senders.
    pub(crate) offered_sends_per_s: f64,
    /// `offered_sends_per_s * members_per_room`.
    pub(crate) offered_deliveries_per_s: f64,
    /// Sends intended in the window; over the whole run; skipped (sender closed).
    pub(crate) sends: u64,
    pub(crate) sends_total: u64,
    pub(crate) sends_skipped: u64,
    /// Acks over the whole run.
    pub(crate) acks: u64,
    /// Messages read by members in the window (by receive time).
    pub(crate) deliveries: u64,
    pub(crate) deliveries_total: u64,
    pub(crate) deliveries_per_s: f64,
    /// `--server-cores`.
    pub(crate) server_cores: u32,
    pub(crate) deliveries_per_s_per_server_core: f64,
    /// Deliveries per CPU-second of the node (`--node-pid`): what one core
    /// fully busy would deliver at this load's efficiency.
    pub(crate) deliveries_per_server_cpu_s: Option<f64>,
    /// Send -> ack of the sends intended in the window.
    pub(crate) ack_latency: Latency,
    pub(crate) presence_frames: u64,
    /// The generator's CPU per delivery (busy time, empty polls excluded).
    pub(crate) generator_ns_per_delivery: Option<f64>,
    /// `deliveries_per_s / generator busy cores`: the rate at which the
    /// generator's threads would be fully busy at this cost.
    pub(crate) generator_ceiling_deliveries_per_s: Option<f64>,
}

/// What a WebSocket run adds to its result (JSON `websocket`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct WsRun {
    pub(crate) scenario: &'static str,
    pub(crate) connections: usize,
    /// Connections answered `101` (with the right accept key).
    pub(crate) upgraded: u64,
    /// chat-fanout: connections that read their `joined`.
    pub(crate) joined: u64,
    /// ws-idle: answered the final ping; chat-fanout: open at the end.
    pub(crate) alive_at_end: usize,
    /// Connect start -> `101`.
    pub(crate) handshake: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) idle: Option<IdleMemory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fanout: Option<Fanout>,
    /// The node's CPU over the window (`--node-pid`).
    pub(crate) node_cpu: Option<node::NodeCpu>,
    /// `{"op":"error"}` frames by code.
    pub(crate) error_frames: BTreeMap<String, u64>,
    /// Connections closed by the server, by close code (1006: no close frame).
    pub(crate) closes: BTreeMap<String, u64>,
    /// Upgrades refused, by status (0: a `101` with a wrong accept key).
    pub(crate) refused: BTreeMap<String, u64>,
    pub(crate) connect_errors: u64,
    pub(crate) timeouts: Timeouts,
    /// Frames that break RFC 6455 or the generator's expectations.
    pub(crate) protocol_errors: u64,
    pub(crate) unexpected_frames: u64,
    /// WebSocket pings from the server (answered with pongs).
    pub(crate) server_pings: u64,
    /// The generator's `RLIMIT_NOFILE` (raised to the hard limit).
    pub(crate) nofile_limit: u64,
}

/// The verdict on a WebSocket run (JSON `ws_check`; `passed: false` makes
/// the invocation fail).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct WsCheck {
    pub(crate) passed: bool,
    pub(crate) detail: String,
    pub(crate) connections: usize,
    pub(crate) alive_at_end: usize,
    /// chat-fanout: members compared with their room's acks.
    pub(crate) members_checked: usize,
    pub(crate) members_ok: usize,
    /// Messages acked to a sender that a member never got.
    pub(crate) missing: u64,
    /// Messages a member got beyond its room's acks.
    pub(crate) extra: u64,
    pub(crate) duplicates: u64,
    pub(crate) gaps: u64,
    /// Members with the right count whose (seq, text) pairs differ from the acks.
    pub(crate) mismatched: usize,
    /// Sends never acked nor refused.
    pub(crate) unacked: u64,
}

/// Options recorded in `config.websocket`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct WsConfig {
    pub(crate) rooms: Option<usize>,
    pub(crate) members_per_room: Option<usize>,
    pub(crate) senders_per_room: Option<usize>,
    pub(crate) node_pid: Option<u32>,
    pub(crate) settle_s: f64,
    pub(crate) connect_concurrency: usize,
    pub(crate) spin_us: f64,
}

fn check_args(args: &RunArgs) -> anyhow::Result<Kind> {
    let kind = match args.scenario {
        Scenario::WsIdle => Kind::Idle,
        Scenario::ChatFanout => Kind::Fanout,
        _ => unreachable!("not a WebSocket scenario"),
    };
    let name = args.scenario.name();
    if args.baseline.is_some() || args.baseline_scenario.is_some() {
        bail!("--scenario {name} does not alternate with a baseline");
    }
    if args.slo.is_some() {
        bail!("--scenario {name} has no --slo search: run it at a few --rate values");
    }
    if args.pipeline != 1 {
        bail!("--pipeline does not apply to --scenario {name}");
    }
    if args.arrival != crate::engine::Arrival::Uniform {
        bail!("--scenario {name}: arrivals are uniform only");
    }
    if args.ws.connect_concurrency == 0 {
        bail!("--connect-concurrency must be at least 1");
    }
    match kind {
        Kind::Idle => {
            if args.rate.is_some() {
                bail!("--scenario ws-idle sends nothing: no --rate");
            }
        }
        Kind::Fanout => {
            if args.rate.is_none() {
                bail!("--scenario chat-fanout needs --rate (messages per second over all senders)");
            }
            if args.ws.rooms == 0 || args.ws.members == 0 {
                bail!("--rooms and --members must be at least 1");
            }
            if args.ws.senders == 0 || args.ws.senders > args.ws.members {
                bail!("--senders (per room) must be between 1 and --members");
            }
        }
    }
    Ok(kind)
}

/// Runs `ws-idle` or `chat-fanout` against `target` and writes the report.
pub(crate) fn run(args: &RunArgs, target: &Target) -> anyhow::Result<()> {
    let kind = check_args(args)?;
    let connections = match kind {
        Kind::Idle => args.connections,
        Kind::Fanout => args.ws.rooms * args.ws.members,
    };
    let cpus = args.cpus.clone().map(|c| c.0).unwrap_or_default();
    let threads = if cpus.is_empty() {
        args.threads.max(1)
    } else {
        cpus.len()
    };
    if connections < threads {
        bail!("{connections} connection(s) cannot be spread over {threads} thread(s)");
    }
    let nofile = node::raise_nofile();
    if nofile < connections as u64 + 64 {
        bail!(
            "this process may open {nofile} files, fewer than {connections} connections need: raise the hard limit (ulimit -Hn)"
        );
    }
    let pid = args.ws.node_pid;
    if let Some(p) = pid {
        node::rss_bytes(p)?;
    }

    // Setup (not measured): users over the REST API, fresh room names.
    let started = Instant::now();
    let api = setup::Api::new(target.addr, &target.authority);
    // One user per connection unless `--users` says fewer (connection `i`
    // is user `i % users`): every socket then costs the node its per-user
    // state too, as real clients would.
    let n_users = args
        .flash
        .users
        .map_or(connections, |u| (u as usize).min(connections));
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let setup_id = format!("{:x}{:x}", now.as_micros(), std::process::id());
    let users = setup::register_users(&api, &format!("ws{setup_id}"), n_users)
        .context("registering the users")?;
    let rooms: Vec<String> = match kind {
        Kind::Idle => Vec::new(),
        Kind::Fanout => (0..args.ws.rooms)
            .map(|r| format!("bench-{setup_id}-{r}"))
            .collect(),
    };
    let setup_s = round3(started.elapsed().as_secs_f64());
    eprintln!(
        "rayltics-bench: {} set up in {setup_s:.1} s ({} users); file limit {nofile}",
        args.scenario.name(),
        users.len()
    );

    let setup = Arc::new(Setup {
        kind,
        addr: target.addr,
        host: target.authority.clone(),
        paths: users
            .iter()
            .map(|u| format!("/ws?token={}", u.token))
            .collect(),
        rooms,
        connections,
        senders_per_room: args.ws.senders,
        rate: args.rate.unwrap_or(0.0),
        threads,
        cpus: cpus.clone(),
        warmup_ns: match kind {
            Kind::Idle => 0,
            Kind::Fanout => args.warmup.as_nanos() as u64,
        },
        duration_ns: args.duration.as_nanos() as u64,
        timeout_ns: args.timeout.as_nanos() as u64,
        spin_ns: args.spin.as_nanos() as u64,
        connect_concurrency: args.ws.connect_concurrency,
        clock: Clock::new(),
    });
    let ctl = Arc::new(Control {
        go_at: AtomicU64::new(0),
        stopped: AtomicUsize::new(0),
        outstanding: AtomicI64::new(0),
        room_max: (0..setup.rooms.len()).map(|_| AtomicU64::new(0)).collect(),
        abort: AtomicBool::new(false),
    });

    // ws-idle: the node's memory before any connection.
    if kind == Kind::Idle && pid.is_some() {
        std::thread::sleep(args.ws.settle);
    }
    let rss_before = pid.map(node::rss_bytes).transpose()?;
    let tcp_before = node::kernel_tcp_mem_bytes();

    let progress = Progress {
        enabled: !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let mode = match kind {
        Kind::Idle => format!("{connections} idle connections"),
        Kind::Fanout => format!(
            "{} room(s) x {} members, {} sender(s) per room, {} messages/s",
            args.ws.rooms, args.ws.members, args.ws.senders, setup.rate
        ),
    };
    eprintln!(
        "rayltics-bench: {} {}: {mode}, {threads} thread(s); opening the connections",
        args.target_name, target.url
    );

    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(threads);
    for id in 0..threads {
        let (setup, ctl, tx) = (setup.clone(), ctl.clone(), tx.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-ws-{id}"))
                .spawn(move || worker::run(id, setup, ctl, tx))
                .context("spawning a worker thread")?,
        );
    }
    drop(tx);

    let clock = &setup.clock;
    let mut ready = 0;
    let mut opened = 0;
    let mut opened_at = None;
    let mut go: Option<u64> = None;
    let mut rss_after = None;
    let mut tcp_after = None;
    let mut rss_end = None;
    let mut cpu_start: Option<node::CpuSnapshot> = None;
    let mut node_cpu = None;
    let mut failure = None;
    let mut done = Vec::with_capacity(threads);
    let mut pending: BTreeMap<u32, (usize, f64, Histogram<u64>, u64, u64)> = BTreeMap::new();
    let mut timeline = Vec::new();
    let total_s = args.duration.as_secs_f64();
    let warmup_ns = setup.warmup_ns;
    let duration_ns = setup.duration_ns;
    loop {
        match rx.recv_timeout(Duration::from_millis(2)) {
            Ok(Report::Ready { opened: n, .. }) => {
                ready += 1;
                opened += n;
                if ready == threads {
                    opened_at = Some(Instant::now());
                    eprintln!(
                        "rayltics-bench: {opened} of {connections} connections open{}",
                        if kind == Kind::Fanout {
                            " and joined"
                        } else {
                            ""
                        }
                    );
                    if kind == Kind::Fanout {
                        go = Some(clock.now() + 50_000_000);
                        ctl.go_at.store(go.unwrap_or(1), Ordering::SeqCst);
                    }
                }
            }
            Ok(Report::Second(s)) => {
                let entry = pending
                    .entry(s.second)
                    .or_insert_with(|| (0, 0.0, new_histogram(), 0, 0));
                entry.0 += 1;
                entry.1 = f64::max(entry.1, s.interval_s);
                entry.2.add(&s.hist).expect("same histogram bounds");
                entry.3 += s.deliveries;
                entry.4 += s.errors;
                if entry.0 == threads
                    && let Some((_, interval, hist, deliveries, errors)) = pending.remove(&s.second)
                {
                    let second = Second {
                        second: s.second,
                        interval_s: round3(interval),
                        count: deliveries,
                        throughput_rps: round3(deliveries as f64 / interval.max(1e-9)),
                        p50_us: round3(hist.value_at_quantile(0.5) as f64 / 1000.0),
                        p99_us: round3(hist.value_at_quantile(0.99) as f64 / 1000.0),
                        max_us: round3(hist.max() as f64 / 1000.0),
                        errors,
                    };
                    if kind == Kind::Fanout {
                        progress.line(&args.target_name, total_s, &second);
                        timeline.push(second);
                    }
                }
            }
            Ok(Report::Done(d)) => done.push(d),
            Ok(Report::Failed { worker, error }) => {
                failure.get_or_insert(format!("worker {worker}: {error}"));
                ctl.abort.store(true, Ordering::SeqCst);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        // Timed steps of the main thread.
        if kind == Kind::Idle
            && go.is_none()
            && let Some(at) = opened_at
            && at.elapsed() >= args.ws.settle
        {
            rss_after = pid.map(node::rss_bytes).transpose()?;
            tcp_after = node::kernel_tcp_mem_bytes();
            cpu_start = pid.map(node::CpuSnapshot::take);
            let now = clock.now();
            go = Some(now);
            ctl.go_at.store(now, Ordering::SeqCst);
            eprintln!(
                "rayltics-bench: holding {opened} connections for {:?}",
                args.duration
            );
        }
        if let Some(g) = go {
            let now = clock.now();
            if kind == Kind::Fanout && cpu_start.is_none() && now >= g + warmup_ns {
                cpu_start = pid.map(node::CpuSnapshot::take);
            }
            if node_cpu.is_none()
                && now >= g + warmup_ns + duration_ns
                && let Some(start) = &cpu_start
            {
                node_cpu = Some(start.until_now());
                if kind == Kind::Idle {
                    rss_end = pid.map(node::rss_bytes).transpose()?;
                }
            }
        }
    }
    progress.end();
    for h in handles {
        if h.join().is_err() {
            failure.get_or_insert_with(|| "a worker thread panicked".to_string());
        }
    }
    if let Some(f) = failure {
        bail!("the load generator failed: {f}");
    }
    done.sort_by_key(|d| d.worker);
    if kind == Kind::Idle && rss_end.is_none() {
        rss_end = pid.map(node::rss_bytes).transpose()?;
    }

    // Merge.
    let mut latency = new_histogram();
    let mut ack = new_histogram();
    let mut handshake = new_histogram();
    let mut ping = new_histogram();
    let mut lag = new_histogram();
    let mut c = WsCounters::default();
    let mut members = Vec::new();
    let mut generator = Vec::new();
    let mut alive = 0;
    let mut unacked = 0;
    let window = args.duration.as_secs_f64();
    for d in &mut done {
        for (all, h) in [
            (&mut latency, &d.latency),
            (&mut ack, &d.ack),
            (&mut handshake, &d.handshake),
            (&mut ping, &d.ping),
            (&mut lag, &d.lag),
        ] {
            all.add(h).expect("same histogram bounds");
        }
        c.add(&d.counters);
        members.append(&mut d.members);
        alive += d.alive;
        unacked += d.outstanding;
        let (user, system) = d.cpu_window.unwrap_or_default();
        let cpu_s = (user + system).as_secs_f64();
        generator.push(ThreadUsage {
            thread: d.worker,
            cpu: d.cpu,
            connections: d.connections,
            cpu_fraction: round3(cpu_s / window),
            spin_fraction: round3(d.spun.as_secs_f64() / window),
            busy_fraction: round3((cpu_s - d.spun.as_secs_f64()).max(0.0) / window),
            user_s: round3(user.as_secs_f64()),
            system_s: round3(system.as_secs_f64()),
        });
    }
    let generator_cpu_total = round3(generator.iter().map(|g| g.cpu_fraction).sum());
    let generator_busy_total = round3(generator.iter().map(|g| g.busy_fraction).sum());

    let ws_run = WsRun {
        scenario: args.scenario.name(),
        connections,
        upgraded: c.upgraded,
        joined: c.joined,
        alive_at_end: alive,
        handshake: Latency::of(&handshake),
        idle: (kind == Kind::Idle).then(|| {
            let per = |after: Option<u64>| match (rss_before, after) {
                (Some(b), Some(a)) if c.upgraded > 0 => {
                    Some(round3((a as f64 - b as f64) / c.upgraded as f64))
                }
                _ => None,
            };
            IdleMemory {
                node_pid: pid,
                rss_before_bytes: rss_before,
                rss_after_bytes: rss_after,
                rss_end_bytes: rss_end,
                bytes_per_connection: per(rss_after),
                bytes_per_connection_end: per(rss_end),
                kernel_tcp_mem_delta_bytes: match (tcp_before, tcp_after) {
                    (Some(b), Some(a)) => Some(a as i64 - b as i64),
                    _ => None,
                },
                settle_s: args.ws.settle.as_secs_f64(),
                ping_rtt: Latency::of(&ping),
            }
        }),
        fanout: (kind == Kind::Fanout).then(|| {
            let deliveries_per_s = round3(c.deliveries as f64 / window);
            let node_cpu_s = node_cpu
                .as_ref()
                .map(|n: &node::NodeCpu| n.cpu_fraction * window);
            Fanout {
                rooms: args.ws.rooms,
                members_per_room: args.ws.members,
                senders_per_room: args.ws.senders,
                users: users.len(),
                offered_sends_per_s: setup.rate,
                offered_deliveries_per_s: setup.rate * args.ws.members as f64,
                sends: c.sends,
                sends_total: c.sends_total,
                sends_skipped: c.sends_skipped,
                acks: c.acks,
                deliveries: c.deliveries,
                deliveries_total: c.deliveries_total,
                deliveries_per_s,
                server_cores: args.server_cores,
                deliveries_per_s_per_server_core: round3(
                    deliveries_per_s / f64::from(args.server_cores),
                ),
                deliveries_per_server_cpu_s: node_cpu_s
                    .filter(|s| *s > 0.0)
                    .map(|s| round3(c.deliveries as f64 / s)),
                ack_latency: Latency::of(&ack),
                presence_frames: c.presence,
                generator_ns_per_delivery: (c.deliveries > 0)
                    .then(|| round3(generator_busy_total * window * 1e9 / c.deliveries as f64)),
                generator_ceiling_deliveries_per_s: (generator_busy_total > 0.0)
                    .then(|| round3(deliveries_per_s / generator_busy_total)),
            }
        }),
        node_cpu,
        error_frames: c.error_frames.clone(),
        closes: c.closes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        refused: c.refused.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        connect_errors: c.connect_errors,
        timeouts: c.timeouts,
        protocol_errors: c.protocol_errors,
        unexpected_frames: c.unexpected_frames,
        server_pings: c.server_pings,
        nofile_limit: nofile,
    };
    let check = match kind {
        Kind::Idle => idle_check(connections, c.upgraded, alive),
        Kind::Fanout => fanout_check(connections, c.joined, alive, &members, &c.rooms, unacked),
    };

    let refused_4xx: u64 = c
        .refused
        .iter()
        .filter(|(s, _)| (400..500).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let refused_5xx: u64 = c
        .refused
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    let refused_other: u64 = c
        .refused
        .iter()
        .filter(|(s, _)| **s < 400)
        .map(|(_, n)| n)
        .sum();
    let errors = Errors {
        connect: c.connect_errors,
        timeout: c.timeouts.total(),
        status_5xx: refused_5xx,
        status_4xx: refused_4xx + c.error_frames.values().sum::<u64>(),
        io: c.closes.values().sum(),
        parse: c.protocol_errors + c.unexpected_frames + refused_other,
    };
    let (requests, sent, throughput) = match kind {
        Kind::Idle => (ping.len(), alive as u64, 0.0),
        Kind::Fanout => (c.deliveries, c.sends, round3(c.deliveries as f64 / window)),
    };
    let lag_l = Latency::of(&lag);
    let result = RunResult {
        target: target.url.clone(),
        duration_s: round3(window),
        requests,
        ok: requests,
        sent,
        throughput_rps: throughput,
        offered_rps: (kind == Kind::Fanout).then_some(setup.rate),
        latency: match kind {
            Kind::Idle => Latency::of(&handshake),
            Kind::Fanout => Latency::of(&latency),
        },
        errors,
        outcomes: None,
        steps: Vec::new(),
        warmup_errors: Errors::default(),
        unanswered_at_end: unacked,
        send_lag: (kind == Kind::Fanout).then(|| SendLag {
            late_over_1ms: c.late_over_1ms,
            late_fraction: if c.sends_total == 0 {
                0.0
            } else {
                (c.late_over_1ms as f64 / c.sends_total as f64 * 1e6).round() / 1e6
            },
            queued: 0,
            generator_p50_us: lag_l.p50_us,
            generator_p99_us: lag_l.p99_us,
            generator_max_us: lag_l.max_us,
        }),
        generator,
        generator_cpu_total,
        generator_busy_total,
        timeline,
        tallies: Vec::new(),
        script_base: 0,
        orders: Vec::new(),
        websocket: Some(Box::new(ws_run)),
        grpc: None,
    };

    let (started_at, out_dir) = report::started_now(args.out.as_deref());
    let config = ConfigOut {
        mode: match kind {
            Kind::Idle => "idle",
            Kind::Fanout => "open",
        },
        connections,
        pipeline: 1,
        warmup_s: warmup_ns as f64 / 1e9,
        users: Some(users.len()),
        setup_s: Some(setup_s),
        websocket: Some(WsConfig {
            rooms: (kind == Kind::Fanout).then_some(args.ws.rooms),
            members_per_room: (kind == Kind::Fanout).then_some(args.ws.members),
            senders_per_room: (kind == Kind::Fanout).then_some(args.ws.senders),
            node_pid: pid,
            settle_s: args.ws.settle.as_secs_f64(),
            connect_concurrency: args.ws.connect_concurrency,
            spin_us: round3(args.spin.as_secs_f64() * 1e6),
        }),
        ..args.config_out(target, threads, cpus, window)
    };
    let mut doc = Document::single(started_at, config, result);
    doc.ws_check = Some(check);
    report::write(&out_dir, &doc)?;
    print!("{}", report::stdout_summary(&doc, &out_dir));
    if let Some(ch) = doc.ws_check.as_ref().filter(|c| !c.passed) {
        bail!("the WebSocket check FAILED: {}", ch.detail);
    }
    Ok(())
}

fn idle_check(connections: usize, upgraded: u64, alive: usize) -> WsCheck {
    let passed = upgraded == connections as u64 && alive == connections;
    WsCheck {
        passed,
        detail: if passed {
            format!("all {connections} connections opened and answered the final ping")
        } else {
            format!(
                "{upgraded} of {connections} connections opened, {alive} answered the final ping"
            )
        },
        connections,
        alive_at_end: alive,
        members_checked: 0,
        members_ok: 0,
        missing: 0,
        extra: 0,
        duplicates: 0,
        gaps: 0,
        mismatched: 0,
        unacked: 0,
    }
}

/// Every member against its room's acks: the same messages (count, seqs
/// from the first acked one to the last, the sum of (seq, text) tags), in
/// seq order, none twice.
fn fanout_check(
    connections: usize,
    joined: u64,
    alive: usize,
    members: &[MemberCheck],
    rooms: &BTreeMap<usize, RoomAcks>,
    unacked: u64,
) -> WsCheck {
    let mut ch = WsCheck {
        passed: false,
        detail: String::new(),
        connections,
        alive_at_end: alive,
        members_checked: members.len(),
        members_ok: 0,
        missing: 0,
        extra: 0,
        duplicates: 0,
        gaps: 0,
        mismatched: 0,
        unacked,
    };
    let mut not_joined = 0;
    let closed = members.iter().filter(|m| !m.open).count() as u64;
    let mut bad_rooms = 0;
    for (room, acks) in rooms {
        if acks.acks > 0 && acks.max_seq - acks.min_seq + 1 != acks.acks {
            bad_rooms += 1;
            let _ = room;
        }
    }
    for m in members {
        if !m.joined {
            not_joined += 1;
            continue;
        }
        let acks = rooms.get(&m.room).copied().unwrap_or(RoomAcks::empty());
        ch.duplicates += m.duplicates;
        ch.gaps += m.gaps;
        ch.missing += acks.acks.saturating_sub(m.count);
        ch.extra += m.count.saturating_sub(acks.acks);
        let first_ok = acks.acks == 0 || m.base + 1 == acks.min_seq;
        let same = m.count == acks.acks
            && m.hash == acks.hash
            && m.duplicates == 0
            && m.gaps == 0
            && first_ok
            && (acks.acks == 0 || m.last == acks.max_seq);
        if same {
            ch.members_ok += 1;
        } else if m.count == acks.acks && m.duplicates == 0 && m.gaps == 0 {
            ch.mismatched += 1;
        }
    }
    let total_acks: u64 = rooms.values().map(|r| r.acks).sum();
    ch.passed = not_joined == 0
        && joined == connections as u64
        && ch.members_ok == members.len()
        && members.len() == connections
        && unacked == 0
        && bad_rooms == 0
        && total_acks > 0;
    let mut d = String::new();
    if ch.passed {
        let _ = write!(
            d,
            "all {} members got all {total_acks} acked messages of their room once, in seq order without gaps",
            members.len()
        );
    } else {
        let _ = write!(
            d,
            "{} of {} members got exactly their room's {total_acks} acked messages",
            ch.members_ok, connections
        );
        for (what, n) in [
            ("joined", joined),
            ("members closed before the end", closed),
            ("missing messages", ch.missing),
            ("extra messages", ch.extra),
            ("duplicates", ch.duplicates),
            ("seq gaps", ch.gaps),
            ("members with other texts", ch.mismatched as u64),
            ("sends never acked", unacked),
            ("rooms whose acked seqs are not contiguous", bad_rooms),
        ] {
            if n > 0 || what == "joined" {
                let _ = write!(d, "; {what} {n}");
            }
        }
        if total_acks == 0 {
            d.push_str("; no message was acked");
        }
    }
    ch.detail = d;
    ch
}

/// The WebSocket lines of the terminal summary.
pub(crate) fn stdout_lines(w: &WsRun, r: &RunResult) -> String {
    let mut s = String::new();
    if let Some(i) = &w.idle {
        let mib = |b: Option<u64>| {
            b.map_or("?".to_string(), |b| {
                format!("{:.1} MiB", b as f64 / 1048576.0)
            })
        };
        let _ = writeln!(
            s,
            "  ws-idle: {} of {} connections open; node RSS {} -> {} (end {}): {} bytes per connection (end {}); {} answered the final ping (rtt p99 {:.0} us)",
            w.upgraded,
            w.connections,
            mib(i.rss_before_bytes),
            mib(i.rss_after_bytes),
            mib(i.rss_end_bytes),
            i.bytes_per_connection
                .map_or("? (no --node-pid)".into(), |b| format!("{b:.0}")),
            i.bytes_per_connection_end
                .map_or("?".into(), |b| format!("{b:.0}")),
            w.alive_at_end,
            i.ping_rtt.p99_us,
        );
        if let Some(k) = i.kernel_tcp_mem_delta_bytes {
            let _ = writeln!(
                s,
                "  kernel TCP memory (both ends, not in RSS): {:+} bytes, {:.0} per connection",
                k,
                k as f64 / w.connections.max(1) as f64
            );
        }
    }
    if let Some(f) = &w.fanout {
        let _ = writeln!(
            s,
            "  chat-fanout: {} room(s) x {} members, {} sender(s)/room, {} msg/s offered ({} deliveries/s): {:.0} deliveries/s ({:.0}/s per server core{}); sends {} acked {}; ack p99 {:.0} us",
            f.rooms,
            f.members_per_room,
            f.senders_per_room,
            f.offered_sends_per_s,
            f.offered_deliveries_per_s,
            f.deliveries_per_s,
            f.deliveries_per_s_per_server_core,
            f.deliveries_per_server_cpu_s
                .map_or(String::new(), |d| format!(", {d:.0} per node CPU-second")),
            f.sends_total,
            f.acks,
            f.ack_latency.p99_us,
        );
        let _ = writeln!(
            s,
            "  node CPU {}; generator busy {:.2} core(s), {} ns per delivery (ceiling ~{} deliveries/s)",
            w.node_cpu
                .as_ref()
                .map_or("? (no --node-pid)".into(), |n| format!(
                    "{:.2} core(s)",
                    n.cpu_fraction
                )),
            r.generator_busy_total,
            f.generator_ns_per_delivery
                .map_or("?".into(), |n| format!("{n:.0}")),
            f.generator_ceiling_deliveries_per_s
                .map_or("?".into(), |n| format!("{n:.0}")),
        );
    }
    let problems = problems(w);
    if !problems.is_empty() {
        let _ = writeln!(s, "  websocket errors: {problems}");
    }
    s
}

fn problems(w: &WsRun) -> String {
    let mut p = Vec::new();
    for (code, n) in &w.error_frames {
        p.push(format!("error frame {code} x{n}"));
    }
    for (code, n) in &w.closes {
        p.push(format!("close {code} x{n}"));
    }
    for (status, n) in &w.refused {
        p.push(format!("upgrade refused {status} x{n}"));
    }
    for (what, n) in [
        ("connect errors", w.connect_errors),
        ("handshake timeouts", w.timeouts.handshake),
        ("join timeouts", w.timeouts.join),
        ("pong timeouts", w.timeouts.pong),
        ("drain timeouts", w.timeouts.drain),
        ("protocol errors", w.protocol_errors),
        ("unexpected frames", w.unexpected_frames),
    ] {
        if n > 0 {
            p.push(format!("{what} {n}"));
        }
    }
    p.join(", ")
}

/// The check's verdict in one line.
pub(crate) fn check_line(c: &WsCheck) -> String {
    format!(
        "websocket check: {}: {}",
        if c.passed { "PASSED" } else { "FAILED" },
        c.detail
    )
}

/// The Markdown section of a WebSocket run.
pub(crate) fn markdown(doc: &Document) -> String {
    let mut s = String::new();
    for run in &doc.runs {
        let Some(w) = &run.result.websocket else {
            continue;
        };
        let _ = writeln!(s, "\n## WebSocket ({})\n", w.scenario);
        if let Some(c) = &doc.ws_check {
            let _ = writeln!(s, "**{}**\n", check_line(c));
        }
        let _ = writeln!(
            s,
            "Connections: {} asked, {} upgraded (connect -> 101 p50 {:.0} us, p99 {:.0} us),{} {} alive at the end; server pings answered {}.\n",
            w.connections,
            w.upgraded,
            w.handshake.p50_us,
            w.handshake.p99_us,
            if w.fanout.is_some() {
                format!(" {} joined,", w.joined)
            } else {
                String::new()
            },
            w.alive_at_end,
            w.server_pings
        );
        if let Some(i) = &w.idle {
            let b = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
            let _ = writeln!(
                s,
                "| node pid | RSS before | RSS after (settled {} s) | RSS at end | bytes/connection | at end | kernel TCP memory delta |\n|---|---:|---:|---:|---:|---:|---:|\n| {} | {} | {} | {} | **{}** | {} | {} |\n",
                i.settle_s,
                i.node_pid.map_or("-".into(), |p| p.to_string()),
                b(i.rss_before_bytes),
                b(i.rss_after_bytes),
                b(i.rss_end_bytes),
                f(i.bytes_per_connection),
                f(i.bytes_per_connection_end),
                i.kernel_tcp_mem_delta_bytes
                    .map_or("-".into(), |k| k.to_string()),
            );
            let _ = writeln!(
                s,
                "Final `ping` -> `pong` of every connection: p50 {:.0} us, p99 {:.0} us, max {:.0} us. RSS counts the node's user-space memory; socket buffers are kernel memory (sockstat, both ends of every loopback connection).\n",
                i.ping_rtt.p50_us, i.ping_rtt.p99_us, i.ping_rtt.max_us
            );
        }
        if let Some(f) = &w.fanout {
            let l = &run.result.latency;
            let _ = writeln!(
                s,
                "{} room(s) x {} members ({} users), {} sender(s) per room, {} messages/s offered = {} deliveries/s.\n",
                f.rooms,
                f.members_per_room,
                f.users,
                f.senders_per_room,
                f.offered_sends_per_s,
                f.offered_deliveries_per_s
            );
            let _ = writeln!(
                s,
                "| deliveries/s | per server core | per node CPU-second | p50 | p90 | p99 | p99.9 | max | sends (window) | acks (run) | ack p99 |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n| {:.0} | {:.0} | {} | {:.0} us | {:.0} us | {:.0} us | {:.0} us | {:.0} us | {} | {} | {:.0} us |\n",
                f.deliveries_per_s,
                f.deliveries_per_s_per_server_core,
                f.deliveries_per_server_cpu_s
                    .map_or("-".into(), |d| format!("{d:.0}")),
                l.p50_us,
                l.p90_us,
                l.p99_us,
                l.p99_9_us,
                l.max_us,
                f.sends,
                f.acks,
                f.ack_latency.p99_us
            );
            let _ = writeln!(
                s,
                "Delivery latency = the member's receive time - the send time embedded in the message (intended, open loop), for messages intended in the window. Generator: busy {:.2} core(s), {} ns per delivery, ceiling ~{} deliveries/s at that cost; presence frames {}.\n",
                run.result.generator_busy_total,
                f.generator_ns_per_delivery
                    .map_or("-".into(), |n| format!("{n:.0}")),
                f.generator_ceiling_deliveries_per_s
                    .map_or("-".into(), |n| format!("{n:.0}")),
                f.presence_frames
            );
        }
        if let Some(n) = &w.node_cpu {
            let threads: Vec<String> = n
                .threads
                .iter()
                .map(|t| format!("{} {:.2}", t.name, t.cpu_fraction))
                .collect();
            let _ = writeln!(
                s,
                "Node CPU over the window: {:.2} core(s){}.\n",
                n.cpu_fraction,
                if threads.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", threads.join(", "))
                }
            );
        }
        let p = problems(w);
        let _ = writeln!(
            s,
            "Errors: {}.",
            if p.is_empty() { "none".to_string() } else { p }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rayltics-bench run ARGS --target MOCK --out TMP`: the outcome and
    /// the result.json.
    fn bench(faulty: bool, args: &[&str]) -> (anyhow::Result<()>, serde_json::Value) {
        use clap::Parser as _;
        let addr = mock::server(faulty);
        let dir = tempfile::tempdir().unwrap();
        let target = format!("http://{addr}");
        let pid = std::process::id().to_string();
        let out = dir.path().to_str().unwrap();
        let mut argv = vec!["rayltics-bench", "run", "--target", &target, "--quiet"];
        argv.extend_from_slice(&["--node-pid", &pid, "--out", out, "--spin", "0s"]);
        argv.extend_from_slice(args);
        let crate::Command::Run(args) = crate::Cli::try_parse_from(argv).unwrap().command else {
            panic!("not a run")
        };
        let outcome = crate::run(*args);
        let json = std::fs::read_to_string(dir.path().join("result.json")).unwrap();
        let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.contains("## WebSocket"), "{md}");
        (outcome, serde_json::from_str(&json).unwrap())
    }

    #[test]
    fn chat_fanout_end_to_end() {
        let (outcome, doc) = bench(
            false,
            &[
                "--scenario",
                "chat-fanout",
                "--rooms",
                "2",
                "--members",
                "6",
                "--senders",
                "2",
                "--rate",
                "200",
                "--threads",
                "2",
                "--warmup",
                "200ms",
                "--duration",
                "1s",
            ],
        );
        outcome.unwrap();
        let check = &doc["ws_check"];
        assert_eq!(check["passed"], true, "{check}");
        assert_eq!(check["members_checked"], 12);
        let run = &doc["runs"][0];
        let f = &run["websocket"]["fanout"];
        // 200 messages/s for 1.2 s (warm-up included), 6 members each.
        let acks = f["acks"].as_u64().unwrap();
        assert!((230..=250).contains(&acks), "{f}");
        assert_eq!(f["sends_total"], acks);
        assert_eq!(f["deliveries_total"].as_u64().unwrap(), acks * 6);
        let window = run["requests"].as_u64().unwrap();
        // 1 200 expected; a loaded machine may read a few after the window.
        assert!(
            (900..=1300).contains(&window),
            "{window} deliveries in the window"
        );
        assert!(run["latency"]["p99_us"].as_f64().unwrap() > 0.0);
        assert_eq!(run["errors"]["io"], 0);
        assert_eq!(run["websocket"]["joined"], 12);
        assert!(
            run["websocket"]["node_cpu"]["cpu_fraction"]
                .as_f64()
                .is_some()
        );
        assert_eq!(run["timeline"].as_array().unwrap().len(), 1);
        assert_eq!(doc["config"]["websocket"]["senders_per_room"], 2);
        assert_eq!(doc["config"]["users"], 12);
    }

    #[test]
    fn a_lost_message_fails_the_delivery_check() {
        let (outcome, doc) = bench(
            true,
            &[
                "--scenario",
                "chat-fanout",
                "--members",
                "4",
                "--rate",
                "50",
                "--warmup",
                "100ms",
                "--duration",
                "500ms",
                "--timeout",
                "1s",
            ],
        );
        let err = outcome.unwrap_err().to_string();
        assert!(err.contains("WebSocket check FAILED"), "{err}");
        let check = &doc["ws_check"];
        assert_eq!(check["passed"], false);
        assert_eq!(check["missing"], 1, "{check}");
        assert_eq!(check["members_ok"], 3, "{check}");
    }

    #[test]
    fn ws_idle_end_to_end() {
        let (outcome, doc) = bench(
            false,
            &[
                "--scenario",
                "ws-idle",
                "--connections",
                "50",
                "--threads",
                "2",
                "--settle",
                "100ms",
                "--duration",
                "300ms",
            ],
        );
        outcome.unwrap();
        assert_eq!(doc["ws_check"]["passed"], true);
        let w = &doc["runs"][0]["websocket"];
        assert_eq!(
            (w["upgraded"].as_u64(), w["alive_at_end"].as_u64()),
            (Some(50), Some(50))
        );
        assert!(w["idle"]["bytes_per_connection"].as_f64().is_some(), "{w}");
        assert_eq!(w["idle"]["ping_rtt"]["count"], 50);
        assert_eq!(doc["config"]["mode"], "idle");
    }

    fn member(room: usize, count: u64, hash: u64, last: u64) -> MemberCheck {
        MemberCheck {
            room,
            joined: true,
            open: true,
            base: 0,
            last,
            count,
            hash,
            duplicates: 0,
            gaps: 0,
        }
    }

    #[test]
    fn the_delivery_check_compares_members_with_acks() {
        let mut acks = RoomAcks::empty();
        let tags: Vec<u64> = (1..=3).map(|s| frame::tag(s, b"x")).collect();
        for (s, t) in (1..=3).zip(&tags) {
            acks.add(s, *t);
        }
        let hash = tags.iter().fold(0u64, |a, t| a.wrapping_add(*t));
        let rooms = BTreeMap::from([(0, acks)]);
        let ok = fanout_check(
            2,
            2,
            2,
            &[member(0, 3, hash, 3), member(0, 3, hash, 3)],
            &rooms,
            0,
        );
        assert!(ok.passed, "{ok:?}");
        assert_eq!(ok.members_ok, 2);
        let short = fanout_check(
            2,
            2,
            2,
            &[member(0, 3, hash, 3), member(0, 2, 1, 2)],
            &rooms,
            0,
        );
        assert!(!short.passed);
        assert_eq!(short.missing, 1);
        assert!(
            short.detail.contains("missing messages 1"),
            "{}",
            short.detail
        );
        let other = fanout_check(
            2,
            2,
            2,
            &[member(0, 3, hash, 3), member(0, 3, hash ^ 1, 3)],
            &rooms,
            0,
        );
        assert!(!other.passed);
        assert_eq!(other.mismatched, 1);
        let unacked = fanout_check(
            2,
            2,
            2,
            &[member(0, 3, hash, 3), member(0, 3, hash, 3)],
            &rooms,
            1,
        );
        assert!(!unacked.passed);
        let mut dup = member(0, 3, hash, 3);
        dup.duplicates = 1;
        assert!(!fanout_check(2, 2, 2, &[member(0, 3, hash, 3), dup], &rooms, 0).passed);
        assert!(!fanout_check(1, 1, 1, &[member(0, 0, 0, 0)], &BTreeMap::new(), 0).passed);
    }

    #[test]
    fn idle_check_needs_every_connection() {
        assert!(idle_check(10, 10, 10).passed);
        assert!(!idle_check(10, 10, 9).passed);
        assert!(!idle_check(10, 9, 9).passed);
    }

    #[test]
    fn roles_of_connections() {
        let setup = Setup {
            kind: Kind::Fanout,
            addr: "127.0.0.1:1".parse().unwrap(),
            host: "h".into(),
            paths: vec!["/ws".into()],
            rooms: vec!["a".into(), "b".into()],
            connections: 6,
            senders_per_room: 1,
            rate: 1.0,
            threads: 1,
            cpus: Vec::new(),
            warmup_ns: 0,
            duration_ns: 1,
            timeout_ns: 1,
            spin_ns: 0,
            connect_concurrency: 1,
            clock: Clock::new(),
        };
        let roles: Vec<_> = (0..6).map(|g| setup.role_of(g)).collect();
        assert_eq!(
            roles,
            [
                (Some(0), true),
                (Some(1), true),
                (Some(0), false),
                (Some(1), false),
                (Some(0), false),
                (Some(1), false)
            ]
        );
        assert_eq!(setup.total_senders(), 2);
        let t = setup.clock.now();
        assert_eq!(setup.clock.mono(setup.clock.unix(t)), t);
    }
}
