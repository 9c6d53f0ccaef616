//! The gRPC scenarios, over tonic (HTTP/2) channels to the node's
//! `--grpc-addr`:
//!
//! - `grpc-who-owns`: `rayltics.node.v1.NodeService/WhoOwns` (the sidecar
//!   forwards it over the mesh to the shard that owns the key), keys drawn
//!   uniformly from `{--key-prefix}0 .. {--key-prefix}{--keys - 1}` by seeded
//!   streams (`--seed`).
//! - `grpc-health`: `grpc.health.v1.Health/Check` of the whole server.
//!
//! One OS thread per `--cpus` entry (pinned) runs a current-thread tokio
//! runtime; the `--connections` channels are spread over them round robin,
//! each with `--pipeline` requests in flight (concurrent HTTP/2 streams).
//! Closed loop: each in-flight slot sends its next request when its answer
//! comes. Open loop (`--rate`): each thread schedules its share of the
//! arrivals at their intended times (uniform or Poisson) and hands them to
//! its channels round robin; an arrival that finds every slot of its channel
//! busy waits for one (`queued`). Latency counts from the intended time, so
//! a slow answer delays nothing unrecorded (no coordinated omission). tokio
//! timers tick every millisecond: with `--spin` above zero the scheduler
//! sleeps until 1 ms + `--spin` before a send and then yields in a loop
//! (busy-polls) until it is due.
//!
//! **Check.** Every WhoOwns answer must have `answered_by == owner_shard <
//! shard_count`, one `shard_count` throughout, and the same owner as any
//! earlier answer for its key on that thread; with `--http-target`, the owner
//! of each key (the first `--verify-keys`, default all) is read from the
//! node's `GET /debug/shards/{key}` before the run, and every answer for it
//! must match. A Health answer must be `SERVING`. A wrong answer is an error:
//! `grpc.wrong_answers` and `errors.parse`. Non-OK statuses count by code
//! (`grpc.status_codes`; client-side codes as `status_4xx`, the others as
//! `status_5xx`), failures without a status (connection lost, reset) as
//! `transport_errors` (`errors.io`) and calls without an answer after
//! `--timeout` as `timeouts`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use rayltics_proto::node::v1::node_service_client::NodeServiceClient;
use rayltics_proto::node::v1::{WhoOwnsRequest, WhoOwnsResponse};
use serde::Serialize;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::engine::Arrival;
use crate::engine::sys;
use crate::report::{self, ConfigOut, Document};
use crate::sampling::Rng;
use crate::stats::{
    Errors, Latency, RunResult, Second, SendLag, ThreadUsage, new_histogram, round3,
};
use crate::{Progress, RunArgs, Scenario, Target, setup};

/// Options of the gRPC scenarios.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GrpcArgs {
    /// grpc-who-owns: size of the key set (`{key-prefix}0` ..
    /// `{key-prefix}{keys - 1}`); each request's key is drawn uniformly.
    #[arg(long, default_value_t = 1000)]
    pub(crate) keys: usize,
    /// grpc-who-owns: prefix of the keys.
    #[arg(long, default_value = "sku-")]
    pub(crate) key_prefix: String,
    /// grpc-who-owns: the node's HTTP address (`http://HOST:PORT`): the
    /// owner of each key is read from `GET /debug/shards/{key}` before the
    /// run and every answer for that key must name it.
    #[arg(long)]
    pub(crate) http_target: Option<String>,
    /// With `--http-target`: read the owners of the first N keys only
    /// (default: every key).
    #[arg(long)]
    pub(crate) verify_keys: Option<usize>,
}

/// The RPC a scenario calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    WhoOwns,
    Health,
}

impl Method {
    pub(crate) fn of(s: Scenario) -> Option<Self> {
        match s {
            Scenario::GrpcWhoOwns => Some(Self::WhoOwns),
            Scenario::GrpcHealth => Some(Self::Health),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::WhoOwns => "rayltics.node.v1.NodeService/WhoOwns",
            Self::Health => "grpc.health.v1.Health/Check",
        }
    }
}

/// The key set of grpc-who-owns: `{prefix}0` .. `{prefix}{n - 1}`.
pub(crate) fn key_set(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Whether `prefix` can go into a URL path unescaped (RFC 3986 unreserved).
fn url_safe(prefix: &str) -> bool {
    prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// What the whole run shares.
#[derive(Debug)]
struct Setup {
    method: Method,
    url: String,
    channels: usize,
    in_flight: usize,
    rate: Option<f64>,
    arrival: Arrival,
    seed: u64,
    keys: Vec<String>,
    /// Per key: its owner as `/debug/shards/{key}` reported (`None`: not read).
    reference: Vec<Option<u32>>,
    threads: usize,
    cpus: Vec<usize>,
    warmup_ns: u64,
    duration_ns: u64,
    timeout: Duration,
    spin_ns: u64,
    base: Instant,
    /// Start of the warm-up, ns since `base` (0: not yet).
    go_at: AtomicU64,
    abort: AtomicBool,
}

impl Setup {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn instant(&self, ns: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.base + Duration::from_nanos(ns))
    }
}

/// What a call came back with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw {
    WhoOwns(WhoOwnsResponse),
    /// `ServingStatus` as sent.
    Health(i32),
    /// A non-OK status answered by the server.
    Status(Code),
    /// No status: the connection failed, was reset, ...
    Transport,
    Timeout,
}

impl Raw {
    fn of_status(s: &tonic::Status) -> Self {
        // tonic keeps the underlying error as the source of the statuses it
        // makes up for transport failures; the server's own have none.
        if std::error::Error::source(s).is_some() {
            Self::Transport
        } else {
            Self::Status(s.code())
        }
    }
}

/// A non-OK status the client caused (counted as `status_4xx`; the others
/// as `status_5xx`).
pub(crate) fn client_side(code: Code) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unauthenticated
    )
}

/// An answer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Correct; who-owns: the owner shard.
    Ok(Option<u32>),
    /// Not the owner `/debug/shards/{key}` reported.
    WrongOwner,
    /// Contradicts itself or an earlier answer.
    Inconsistent,
    /// Health: not `SERVING`.
    NotServing,
}

/// No answer seen yet for a key.
const UNSEEN: u32 = u32::MAX;

/// Checks one WhoOwns answer: `expected` is the reference owner of its key
/// (if read), `seen` the owner an earlier answer named (`UNSEEN`), and
/// `shard_count` the count the first answer gave.
pub(crate) fn check_who_owns(
    r: &WhoOwnsResponse,
    expected: Option<u32>,
    seen: &mut u32,
    shard_count: &mut Option<u32>,
) -> Verdict {
    if r.answered_by != r.owner_shard || r.owner_shard >= r.shard_count {
        return Verdict::Inconsistent;
    }
    match shard_count {
        Some(c) if *c != r.shard_count => return Verdict::Inconsistent,
        _ => *shard_count = Some(r.shard_count),
    }
    if expected.is_some_and(|e| e != r.owner_shard) {
        return Verdict::WrongOwner;
    }
    if *seen != UNSEEN && *seen != r.owner_shard {
        return Verdict::Inconsistent;
    }
    *seen = r.owner_shard;
    Verdict::Ok(Some(r.owner_shard))
}

/// One thread's counts over one phase (warm-up or measured window).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tally {
    /// Answers with a status (OK or not).
    pub(crate) completed: u64,
    /// OK answers that passed the check.
    pub(crate) ok: u64,
    pub(crate) sent: u64,
    pub(crate) late_over_1ms: u64,
    pub(crate) queued: u64,
    pub(crate) timeouts: u64,
    pub(crate) transport: u64,
    /// Non-OK statuses by code.
    pub(crate) codes: BTreeMap<String, u64>,
    pub(crate) wrong_owner: u64,
    pub(crate) inconsistent: u64,
    pub(crate) not_serving: u64,
    /// Answers compared with the reference owner.
    pub(crate) checked: u64,
    /// OK answers per owner shard.
    pub(crate) by_shard: Vec<u64>,
    pub(crate) shard_count: Option<u32>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.completed += o.completed;
        self.ok += o.ok;
        self.sent += o.sent;
        self.late_over_1ms += o.late_over_1ms;
        self.queued += o.queued;
        self.timeouts += o.timeouts;
        self.transport += o.transport;
        for (k, v) in &o.codes {
            *self.codes.entry(k.clone()).or_default() += v;
        }
        self.wrong_owner += o.wrong_owner;
        self.inconsistent += o.inconsistent;
        self.not_serving += o.not_serving;
        self.checked += o.checked;
        if self.by_shard.len() < o.by_shard.len() {
            self.by_shard.resize(o.by_shard.len(), 0);
        }
        for (i, n) in o.by_shard.iter().enumerate() {
            self.by_shard[i] += n;
        }
        if self.shard_count.is_none() {
            self.shard_count = o.shard_count;
        } else if o.shard_count.is_some() && o.shard_count != self.shard_count {
            // Two threads were told different counts: one of them is wrong.
            self.inconsistent += 1;
        }
    }

    fn wrong(&self) -> u64 {
        self.wrong_owner + self.inconsistent + self.not_serving
    }

    /// The errors by the report's kinds.
    pub(crate) fn errors(&self) -> Errors {
        let (mut c4, mut c5) = (0, 0);
        for (code, n) in &self.codes {
            if client_side(code_of(code)) {
                c4 += n;
            } else {
                c5 += n;
            }
        }
        Errors {
            connect: 0,
            timeout: self.timeouts,
            status_5xx: c5,
            status_4xx: c4,
            io: self.transport,
            parse: self.wrong(),
        }
    }

    /// Counts one outcome; `Some(verdict)` for an answer.
    fn count(&mut self, raw: &Raw, verdict: Option<Verdict>, reference_checked: bool) {
        match (raw, verdict) {
            (Raw::Timeout, _) => self.timeouts += 1,
            (Raw::Transport, _) => self.transport += 1,
            (Raw::Status(c), _) => {
                self.completed += 1;
                *self.codes.entry(format!("{c:?}")).or_default() += 1;
            }
            (_, v) => {
                self.completed += 1;
                if reference_checked {
                    self.checked += 1;
                }
                match v {
                    Some(Verdict::Ok(owner)) => {
                        self.ok += 1;
                        if let Some(o) = owner {
                            let o = o as usize;
                            if self.by_shard.len() <= o {
                                self.by_shard.resize(o + 1, 0);
                            }
                            self.by_shard[o] += 1;
                        }
                    }
                    Some(Verdict::WrongOwner) => self.wrong_owner += 1,
                    Some(Verdict::Inconsistent) | None => self.inconsistent += 1,
                    Some(Verdict::NotServing) => self.not_serving += 1,
                }
            }
        }
    }
}

/// The tonic code named by its `Debug` form (the keys of `codes`).
fn code_of(name: &str) -> Code {
    (0..=16)
        .map(Code::from_i32)
        .find(|c| format!("{c:?}") == name)
        .unwrap_or(Code::Unknown)
}

/// One thread's measurements, shared by its tasks.
#[derive(Debug)]
struct State {
    window_start: u64,
    window_end: u64,
    open: bool,
    window: Tally,
    warmup: Tally,
    hist: Histogram<u64>,
    lag: Histogram<u64>,
    /// Per measured second: latencies, answers, errors.
    secs: BTreeMap<u32, (Histogram<u64>, u64, u64)>,
    seen: Vec<u32>,
    shard_count: Option<u32>,
    /// Requests sent in the window and not answered yet.
    in_flight_window: u64,
    spun: Duration,
}

impl State {
    fn in_window(&self, t: u64) -> bool {
        (self.window_start..self.window_end).contains(&t)
    }

    fn on_send(&mut self, intended: u64, sent: u64, queued: bool) {
        if self.in_window(sent) {
            self.window.sent += 1;
            self.in_flight_window += 1;
            if self.open && sent.saturating_sub(intended) > 1_000_000 {
                self.window.late_over_1ms += 1;
            }
        }
        if queued && self.in_window(intended) {
            self.window.queued += 1;
        }
    }

    fn record(&mut self, setup: &Setup, key: usize, intended: u64, sent: u64, done: u64, raw: Raw) {
        if self.in_window(sent) {
            self.in_flight_window = self.in_flight_window.saturating_sub(1);
        }
        let expected = setup.reference.get(key).copied().flatten();
        let verdict = match &raw {
            Raw::WhoOwns(r) => Some(check_who_owns(
                r,
                expected,
                &mut self.seen[key],
                &mut self.shard_count,
            )),
            Raw::Health(s) if *s == ServingStatus::Serving as i32 => Some(Verdict::Ok(None)),
            Raw::Health(_) => Some(Verdict::NotServing),
            _ => None,
        };
        let checked = expected.is_some() && matches!(raw, Raw::WhoOwns(_));
        if done < self.window_start {
            self.warmup.count(&raw, verdict, checked);
            return;
        }
        if done >= self.window_end {
            return;
        }
        let errors_before = self.window.errors().total();
        self.window.count(&raw, verdict, checked);
        let error = self.window.errors().total() > errors_before;
        let sec = ((done - self.window_start) / 1_000_000_000) as u32;
        let entry = self
            .secs
            .entry(sec)
            .or_insert_with(|| (new_histogram(), 0, 0));
        if matches!(raw, Raw::Timeout | Raw::Transport) {
            entry.2 += 1;
            return;
        }
        let latency = done.saturating_sub(intended).max(1);
        self.hist.saturating_record(latency);
        entry.0.saturating_record(latency);
        entry.1 += 1;
        entry.2 += u64::from(error);
    }
}

/// A client of the scenario's service over one channel.
#[derive(Debug, Clone)]
enum Client {
    WhoOwns(NodeServiceClient<Channel>),
    Health(HealthClient<Channel>),
}

impl Client {
    fn new(method: Method, ch: Channel) -> Self {
        match method {
            Method::WhoOwns => Self::WhoOwns(NodeServiceClient::new(ch)),
            Method::Health => Self::Health(HealthClient::new(ch)),
        }
    }

    async fn call(&mut self, key: &str, timeout: Duration) -> Raw {
        match self {
            Self::WhoOwns(c) => {
                let req = WhoOwnsRequest {
                    key: key.to_string(),
                };
                match tokio::time::timeout(timeout, c.who_owns(req)).await {
                    Err(_) => Raw::Timeout,
                    Ok(Ok(r)) => Raw::WhoOwns(r.into_inner()),
                    Ok(Err(s)) => Raw::of_status(&s),
                }
            }
            Self::Health(c) => {
                let req = HealthCheckRequest {
                    service: String::new(),
                };
                match tokio::time::timeout(timeout, c.check(req)).await {
                    Err(_) => Raw::Timeout,
                    Ok(Ok(r)) => Raw::Health(r.into_inner().status),
                    Ok(Err(s)) => Raw::of_status(&s),
                }
            }
        }
    }
}

/// What a worker thread tells the main thread.
#[derive(Debug)]
enum Report {
    Ready,
    Second {
        second: u32,
        interval_s: f64,
        hist: Histogram<u64>,
        count: u64,
        errors: u64,
    },
    Done(Box<Done>),
    Failed {
        worker: usize,
        error: String,
    },
}

/// One worker's totals.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) worker: usize,
    pub(crate) cpu: Option<usize>,
    pub(crate) connections: usize,
    pub(crate) window: Tally,
    pub(crate) warmup: Tally,
    pub(crate) hist: Histogram<u64>,
    pub(crate) lag: Histogram<u64>,
    /// CPU time (user, system) over the window.
    pub(crate) cpu_window: (Duration, Duration),
    pub(crate) spun: Duration,
    pub(crate) unanswered: u64,
}

fn worker(id: usize, setup: Arc<Setup>, tx: mpsc::Sender<Report>) {
    let cpu = setup.cpus.get(id).copied();
    if let Some(core) = cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
    {
        eprintln!("rayltics-bench: warning: could not pin worker {id} to cpu {core}");
    }
    sys::tighten_timer_slack();
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")
        .and_then(|rt| {
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, work(id, cpu, &setup, &tx))
        });
    let report = match outcome {
        Ok(done) => Report::Done(Box::new(done)),
        Err(e) => {
            setup.abort.store(true, Ordering::SeqCst);
            Report::Failed {
                worker: id,
                error: format!("{e:#}"),
            }
        }
    };
    let _ = tx.send(report);
}

async fn work(
    id: usize,
    cpu: Option<usize>,
    setup: &Arc<Setup>,
    tx: &mpsc::Sender<Report>,
) -> anyhow::Result<Done> {
    let mine: Vec<usize> = (id..setup.channels).step_by(setup.threads).collect();
    let mut clients = Vec::with_capacity(mine.len());
    for _ in &mine {
        let ch = Endpoint::from_shared(setup.url.clone())
            .with_context(|| format!("{}: not a gRPC endpoint", setup.url))?
            .tcp_nodelay(true)
            .connect_timeout(setup.timeout)
            .connect()
            .await
            .with_context(|| format!("connecting to {}", setup.url))?;
        clients.push(Client::new(setup.method, ch));
    }
    let _ = tx.send(Report::Ready);
    let go = loop {
        let g = setup.go_at.load(Ordering::SeqCst);
        if g != 0 {
            break g;
        }
        if setup.abort.load(Ordering::SeqCst) {
            bail!("aborted before the start");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let window_start = go + setup.warmup_ns;
    let window_end = window_start + setup.duration_ns;
    let st = Rc::new(RefCell::new(State {
        window_start,
        window_end,
        open: setup.rate.is_some(),
        window: Tally::default(),
        warmup: Tally::default(),
        hist: new_histogram(),
        lag: new_histogram(),
        secs: BTreeMap::new(),
        seen: vec![UNSEEN; setup.keys.len()],
        shard_count: None,
        in_flight_window: 0,
        spun: Duration::ZERO,
    }));
    tokio::time::sleep_until(setup.instant(go)).await;
    match setup.rate {
        None => {
            for (client, c) in clients.iter().zip(&mine) {
                for slot in 0..setup.in_flight {
                    let stream = (*c * setup.in_flight + slot) as u64;
                    tokio::task::spawn_local(closed_slot(
                        st.clone(),
                        setup.clone(),
                        client.clone(),
                        Rng::for_stream(setup.seed, stream),
                        window_end,
                    ));
                }
            }
        }
        Some(rate) => {
            let sems = clients
                .iter()
                .map(|_| Rc::new(tokio::sync::Semaphore::new(setup.in_flight)))
                .collect();
            tokio::task::spawn_local(schedule(
                st.clone(),
                setup.clone(),
                clients,
                sems,
                id,
                rate,
                go,
            ));
        }
    }

    // The window: CPU time at both ends, a report every second.
    tokio::time::sleep_until(setup.instant(window_start)).await;
    let cpu0 = sys::thread_cpu_time();
    let mut cpu1 = cpu0;
    let mut next = 0u32;
    loop {
        let start = window_start + u64::from(next) * 1_000_000_000;
        let boundary = (start + 1_000_000_000).min(window_end);
        tokio::time::sleep_until(setup.instant(boundary)).await;
        if boundary >= window_end {
            cpu1 = sys::thread_cpu_time();
        }
        let (hist, count, errors) = st
            .borrow_mut()
            .secs
            .remove(&next)
            .unwrap_or_else(|| (new_histogram(), 0, 0));
        let _ = tx.send(Report::Second {
            second: next,
            interval_s: (boundary - start) as f64 / 1e9,
            hist,
            count,
            errors,
        });
        next += 1;
        if boundary >= window_end || setup.abort.load(Ordering::SeqCst) {
            break;
        }
    }
    let mut s = st.borrow_mut();
    s.window.shard_count = s.shard_count;
    Ok(Done {
        worker: id,
        cpu,
        connections: mine.len(),
        window: std::mem::take(&mut s.window),
        warmup: std::mem::take(&mut s.warmup),
        hist: s.hist.clone(),
        lag: s.lag.clone(),
        cpu_window: (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1),
        spun: s.spun,
        unanswered: s.in_flight_window,
    })
}

/// Closed loop: one in-flight slot of a channel, from the start to `end`.
async fn closed_slot(
    st: Rc<RefCell<State>>,
    setup: Arc<Setup>,
    mut client: Client,
    mut rng: Rng,
    end: u64,
) {
    let n = setup.keys.len().max(1);
    loop {
        let now = setup.now();
        if now >= end || setup.abort.load(Ordering::Relaxed) {
            return;
        }
        let key = rng.below(n);
        st.borrow_mut().on_send(now, now, false);
        let name = setup.keys.get(key).map_or("", String::as_str);
        let raw = client.call(name, setup.timeout).await;
        let done = setup.now();
        st.borrow_mut().record(&setup, key, now, now, done, raw);
    }
}

/// Open loop: this thread's arrivals, each handed to a channel (round robin).
async fn schedule(
    st: Rc<RefCell<State>>,
    setup: Arc<Setup>,
    clients: Vec<Client>,
    sems: Vec<Rc<tokio::sync::Semaphore>>,
    id: usize,
    rate: f64,
    go: u64,
) {
    let end = go + setup.warmup_ns + setup.duration_ns;
    let period = 1e9 * setup.threads as f64 / rate;
    let mut arrivals = Rng::for_stream(setup.seed, 1 << 40 | id as u64);
    let mut keys = Rng::for_stream(setup.seed, id as u64);
    let gap = |rng: &mut Rng| match setup.arrival {
        Arrival::Uniform => period,
        Arrival::Poisson => -rng.unit().ln() * period,
    };
    // Threads are offset by a fraction of the period.
    let mut due_f = go as f64 + period * id as f64 / setup.threads as f64;
    if setup.arrival == Arrival::Poisson {
        due_f += gap(&mut arrivals);
    }
    let n = setup.keys.len().max(1);
    let mut i = 0usize;
    loop {
        let due = due_f as u64;
        if due >= end || setup.abort.load(Ordering::Relaxed) {
            return;
        }
        let spun = wait_until(&setup, due).await;
        let now = setup.now();
        {
            let mut s = st.borrow_mut();
            s.spun += spun;
            if s.in_window(due) {
                s.lag.saturating_record(now.saturating_sub(due).max(1));
            }
        }
        let c = i % clients.len();
        i += 1;
        let key = keys.below(n);
        tokio::task::spawn_local(open_request(
            st.clone(),
            setup.clone(),
            clients[c].clone(),
            sems[c].clone(),
            due,
            key,
        ));
        due_f += gap(&mut arrivals);
    }
}

/// Sleeps until `due` (ns since the base), busy-polling the last
/// `--spin` + 1 ms when `--spin` is above zero; returns the time spent
/// spinning idle (yields that came straight back).
async fn wait_until(setup: &Setup, due: u64) -> Duration {
    if setup.spin_ns == 0 {
        tokio::time::sleep_until(setup.instant(due)).await;
        return Duration::ZERO;
    }
    let ahead = setup.spin_ns + 1_000_000;
    if setup.now() + ahead < due {
        tokio::time::sleep_until(setup.instant(due - ahead)).await;
    }
    let mut spun = Duration::ZERO;
    loop {
        let t = Instant::now();
        if setup.now() >= due {
            return spun;
        }
        tokio::task::yield_now().await;
        let d = t.elapsed();
        if d < Duration::from_micros(3) {
            spun += d;
        }
    }
}

/// Open loop: one request, sent when a slot of its channel is free.
async fn open_request(
    st: Rc<RefCell<State>>,
    setup: Arc<Setup>,
    mut client: Client,
    sem: Rc<tokio::sync::Semaphore>,
    intended: u64,
    key: usize,
) {
    let (_permit, queued) = match sem.try_acquire() {
        Ok(p) => (p, false),
        Err(_) => match sem.acquire().await {
            Ok(p) => (p, true),
            Err(_) => return,
        },
    };
    let sent = setup.now();
    st.borrow_mut().on_send(intended, sent, queued);
    let name = setup.keys.get(key).map_or("", String::as_str);
    let raw = client.call(name, setup.timeout).await;
    let done = setup.now();
    st.borrow_mut()
        .record(&setup, key, intended, sent, done, raw);
}

/// The gRPC run's details (JSON `runs[].grpc`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct GrpcRun {
    /// `rayltics.node.v1.NodeService/WhoOwns` or `grpc.health.v1.Health/Check`.
    pub(crate) method: &'static str,
    /// HTTP/2 channels (`--connections`).
    pub(crate) channels: usize,
    /// Requests in flight per channel (`--pipeline`).
    pub(crate) in_flight_per_channel: usize,
    /// Non-OK statuses answered in the window, by code (`Unavailable`, ...).
    pub(crate) status_codes: BTreeMap<String, u64>,
    /// Calls that failed without a status (`errors.io`).
    pub(crate) transport_errors: u64,
    /// Calls without an answer after `--timeout` (`errors.timeout`).
    pub(crate) timeouts: u64,
    /// Answers that failed the check (`errors.parse`): the sum of the three
    /// below.
    pub(crate) wrong_answers: u64,
    /// who-owns: not the owner `/debug/shards/{key}` reported.
    pub(crate) wrong_owner: u64,
    /// who-owns: `answered_by != owner_shard`, an owner out of range, a
    /// changed `shard_count`, or another owner than an earlier answer's.
    pub(crate) inconsistent: u64,
    /// health: not `SERVING`.
    pub(crate) not_serving: u64,
    /// who-owns: answers compared with the reference owner of their key.
    pub(crate) checked_against_reference: u64,
    /// who-owns: the node's shards, as answered.
    pub(crate) shard_count: Option<u32>,
    /// who-owns: correct answers per owner shard.
    pub(crate) answers_by_shard: Vec<u64>,
}

/// The gRPC scenario's options (JSON `config.grpc`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct GrpcConfig {
    pub(crate) method: &'static str,
    pub(crate) in_flight_per_channel: usize,
    /// who-owns: the key set's size and prefix.
    pub(crate) keys: Option<usize>,
    pub(crate) key_prefix: Option<String>,
    /// who-owns: where the reference owners were read
    /// (`http://HOST:PORT/debug/shards/{key}`), and for how many keys.
    pub(crate) reference: Option<String>,
    pub(crate) verified_keys: usize,
    pub(crate) spin_us: f64,
}

/// What a run was asked to do, for [`assemble`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape<'a> {
    pub(crate) method: Method,
    pub(crate) target: &'a str,
    pub(crate) channels: usize,
    pub(crate) in_flight: usize,
    /// The measured window, seconds.
    pub(crate) window_s: f64,
    /// Open loop: the rate offered.
    pub(crate) offered: Option<f64>,
}

/// Merges the workers' totals and seconds into the run's result.
pub(crate) fn assemble(shape: &Shape<'_>, done: &[Done], timeline: Vec<Second>) -> RunResult {
    let Shape {
        method,
        target,
        channels,
        in_flight,
        window_s,
        offered,
    } = *shape;
    let mut hist = new_histogram();
    let mut lag = new_histogram();
    let mut w = Tally::default();
    let mut warm = Tally::default();
    let mut generator = Vec::new();
    let mut unanswered = 0;
    for d in done {
        hist.add(&d.hist).expect("same histogram bounds");
        lag.add(&d.lag).expect("same histogram bounds");
        w.add(&d.window);
        warm.add(&d.warmup);
        unanswered += d.unanswered;
        let (user, system) = d.cpu_window;
        let cpu_s = (user + system).as_secs_f64();
        let spun = d.spun.as_secs_f64();
        generator.push(ThreadUsage {
            thread: d.worker,
            cpu: d.cpu,
            connections: d.connections,
            cpu_fraction: round3(cpu_s / window_s),
            spin_fraction: round3(spun.min(cpu_s) / window_s),
            busy_fraction: round3((cpu_s - spun).max(0.0) / window_s),
            user_s: round3(user.as_secs_f64()),
            system_s: round3(system.as_secs_f64()),
        });
    }
    let generator_cpu_total = round3(generator.iter().map(|g| g.cpu_fraction).sum());
    let generator_busy_total = round3(generator.iter().map(|g| g.busy_fraction).sum());
    let lag_l = Latency::of(&lag);
    let send_lag = offered.map(|_| SendLag {
        late_over_1ms: w.late_over_1ms,
        late_fraction: if w.sent == 0 {
            0.0
        } else {
            (w.late_over_1ms as f64 / w.sent as f64 * 1e6).round() / 1e6
        },
        queued: w.queued,
        generator_p50_us: lag_l.p50_us,
        generator_p99_us: lag_l.p99_us,
        generator_max_us: lag_l.max_us,
    });
    RunResult {
        target: target.to_string(),
        duration_s: round3(window_s),
        requests: w.completed,
        ok: w.ok,
        sent: w.sent,
        throughput_rps: round3(w.completed as f64 / window_s),
        offered_rps: offered,
        latency: Latency::of(&hist),
        errors: w.errors(),
        outcomes: None,
        steps: Vec::new(),
        warmup_errors: warm.errors(),
        unanswered_at_end: unanswered,
        send_lag,
        generator,
        generator_cpu_total,
        generator_busy_total,
        timeline,
        tallies: Vec::new(),
        script_base: 0,
        orders: Vec::new(),
        websocket: None,
        grpc: Some(Box::new(GrpcRun {
            method: method.path(),
            channels,
            in_flight_per_channel: in_flight,
            status_codes: w.codes.clone(),
            transport_errors: w.transport,
            timeouts: w.timeouts,
            wrong_answers: w.wrong(),
            wrong_owner: w.wrong_owner,
            inconsistent: w.inconsistent,
            not_serving: w.not_serving,
            checked_against_reference: w.checked,
            shard_count: w.shard_count,
            answers_by_shard: w.by_shard.clone(),
        })),
    }
}

/// Reads the owners of the first `n` keys from `GET /debug/shards/{key}`.
fn read_reference(api: &setup::Api, keys: &[String], n: usize) -> anyhow::Result<Vec<Option<u32>>> {
    let mut out = vec![None; keys.len()];
    for (i, key) in keys.iter().take(n).enumerate() {
        let v = api.expect(200, "GET", &format!("/debug/shards/{key}"), None, None)?;
        let owner = v["owner_shard"]
            .as_u64()
            .and_then(|o| u32::try_from(o).ok())
            .with_context(|| format!("/debug/shards/{key}: no owner_shard in {v}"))?;
        out[i] = Some(owner);
    }
    Ok(out)
}

/// Runs a gRPC scenario against `target` (the node's gRPC address) and
/// writes its report.
pub(crate) fn run(args: &RunArgs, target: &Target) -> anyhow::Result<()> {
    let method = Method::of(args.scenario).context("not a gRPC scenario")?;
    if args.baseline.is_some() || args.baseline_scenario.is_some() || args.slo.is_some() {
        bail!(
            "--scenario {} runs alone (no baseline, no --slo)",
            args.scenario.name()
        );
    }
    let cpus = args.cpus.clone().map(|c| c.0).unwrap_or_default();
    let threads = if cpus.is_empty() {
        args.threads.max(1)
    } else {
        cpus.len()
    };
    if args.connections < threads {
        bail!(
            "--connections ({}) must be at least the number of threads ({threads})",
            args.connections
        );
    }
    let g = &args.grpc;
    let started = Instant::now();
    let (keys, reference, reference_url) = match method {
        Method::Health => (Vec::new(), Vec::new(), None),
        Method::WhoOwns => {
            if g.keys == 0 {
                bail!("--keys must be at least 1");
            }
            if !url_safe(&g.key_prefix) {
                bail!("--key-prefix may hold only letters, digits and - . _ ~");
            }
            let keys = key_set(&g.key_prefix, g.keys);
            match &g.http_target {
                Some(h) => {
                    let t = crate::parse_target(h)?;
                    let api = setup::Api::new(t.addr, &t.authority);
                    let n = g.verify_keys.unwrap_or(keys.len()).min(keys.len());
                    let reference =
                        read_reference(&api, &keys, n).context("reading the reference owners")?;
                    let url = format!("http://{}/debug/shards/{{key}}", t.authority);
                    (keys, reference, Some(url))
                }
                None => {
                    let n = keys.len();
                    (keys, vec![None; n], None)
                }
            }
        }
    };
    let verified = reference.iter().filter(|r| r.is_some()).count();
    let setup_s = round3(started.elapsed().as_secs_f64());
    if reference_url.is_some() {
        eprintln!(
            "rayltics-bench: owners of {verified} keys read from /debug/shards in {setup_s:.1} s"
        );
    }

    let setup = Arc::new(Setup {
        method,
        url: target.url.trim_end_matches('/').to_string(),
        channels: args.connections,
        in_flight: args.pipeline,
        rate: args.rate,
        arrival: args.arrival,
        seed: args.seed,
        keys,
        reference,
        threads,
        cpus: cpus.clone(),
        warmup_ns: args.warmup.as_nanos() as u64,
        duration_ns: args.duration.as_nanos() as u64,
        timeout: args.timeout,
        spin_ns: args.spin.as_nanos() as u64,
        base: Instant::now(),
        go_at: AtomicU64::new(0),
        abort: AtomicBool::new(false),
    });
    let mode = match args.rate {
        Some(r) => format!("open loop, {r} req/s"),
        None => "closed loop".to_string(),
    };
    eprintln!(
        "rayltics-bench: {} {}: {} {mode} over {} channel(s) x {} in flight, {threads} thread(s), warm-up {:?} + {:?}",
        args.target_name,
        target.url,
        method.path(),
        args.connections,
        args.pipeline,
        args.warmup,
        args.duration
    );
    let progress = Progress {
        enabled: !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(threads);
    for id in 0..threads {
        let (setup, tx) = (setup.clone(), tx.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-grpc-{id}"))
                .spawn(move || worker(id, setup, tx))
                .context("spawning a worker thread")?,
        );
    }
    drop(tx);
    let mut ready = 0;
    let mut failure = None;
    let mut done = Vec::with_capacity(threads);
    let mut pending: BTreeMap<u32, (usize, f64, Histogram<u64>, u64, u64)> = BTreeMap::new();
    let mut timeline = Vec::new();
    let total_s = args.duration.as_secs_f64();
    for report in rx {
        match report {
            Report::Ready => {
                ready += 1;
                if ready == threads {
                    setup
                        .go_at
                        .store(setup.now() + 20_000_000, Ordering::SeqCst);
                }
            }
            Report::Second {
                second,
                interval_s,
                hist,
                count,
                errors,
            } => {
                let e = pending
                    .entry(second)
                    .or_insert_with(|| (0, 0.0, new_histogram(), 0, 0));
                e.0 += 1;
                e.1 = f64::max(e.1, interval_s);
                e.2.add(&hist).expect("same histogram bounds");
                e.3 += count;
                e.4 += errors;
                if e.0 == threads
                    && let Some((_, interval, h, count, errors)) = pending.remove(&second)
                {
                    let s = Second {
                        second,
                        interval_s: round3(interval),
                        count,
                        throughput_rps: round3(count as f64 / interval.max(1e-9)),
                        p50_us: round3(h.value_at_quantile(0.5) as f64 / 1000.0),
                        p99_us: round3(h.value_at_quantile(0.99) as f64 / 1000.0),
                        max_us: round3(h.max() as f64 / 1000.0),
                        errors,
                    };
                    progress.line(&args.target_name, total_s, &s);
                    timeline.push(s);
                }
            }
            Report::Done(d) => done.push(*d),
            Report::Failed { worker, error } => {
                failure.get_or_insert(format!("worker {worker}: {error}"));
                setup.abort.store(true, Ordering::SeqCst);
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
    let window = args.duration.as_secs_f64();
    let shape = Shape {
        method,
        target: &target.url,
        channels: args.connections,
        in_flight: args.pipeline,
        window_s: window,
        offered: args.rate,
    };
    let result = assemble(&shape, &done, timeline);
    if result.requests == 0 {
        eprintln!(
            "rayltics-bench: warning: no answer from {} in the measured window (errors: {:?}, during warm-up: {:?})",
            target.url, result.errors, result.warmup_errors
        );
    }

    let (started_at, out_dir) = report::started_now(args.out.as_deref());
    let who = method == Method::WhoOwns;
    let config = ConfigOut {
        seed: who.then_some(args.seed),
        setup_s: reference_url.is_some().then_some(setup_s),
        grpc: Some(GrpcConfig {
            method: method.path(),
            in_flight_per_channel: args.pipeline,
            keys: who.then_some(g.keys),
            key_prefix: who.then(|| g.key_prefix.clone()),
            reference: reference_url,
            verified_keys: verified,
            spin_us: round3(args.spin.as_secs_f64() * 1e6),
        }),
        ..args.config_out(target, threads, cpus, window)
    };
    let doc = Document::single(started_at, config, result);
    report::write(&out_dir, &doc)?;
    print!("{}", report::stdout_summary(&doc, &out_dir));
    Ok(())
}

/// The gRPC line under a run, for the terminal.
pub(crate) fn stdout_line(g: &GrpcRun) -> String {
    let mut s = format!(
        "  grpc {}: {} channel(s) x {} in flight; wrong answers {} (checked against /debug/shards {})",
        g.method, g.channels, g.in_flight_per_channel, g.wrong_answers, g.checked_against_reference
    );
    if let Some(c) = g.shard_count {
        let _ = write!(
            s,
            "; {c} shard(s), answers by owner {:?}",
            g.answers_by_shard
        );
    }
    if !g.status_codes.is_empty() {
        let _ = write!(s, "; statuses {:?}", g.status_codes);
    }
    if g.transport_errors + g.timeouts > 0 {
        let _ = write!(
            s,
            "; transport errors {}, timeouts {}",
            g.transport_errors, g.timeouts
        );
    }
    s.push('\n');
    s
}

/// The gRPC section of summary.md.
pub(crate) fn markdown(doc: &Document) -> String {
    let mut s = String::new();
    let Some(c) = &doc.config.grpc else {
        return s;
    };
    let _ = writeln!(s, "\n## gRPC\n");
    let _ = writeln!(
        s,
        "`{}` over {} HTTP/2 channel(s), {} request(s) in flight each (tonic client).",
        c.method, doc.config.connections, c.in_flight_per_channel
    );
    if let (Some(n), Some(p)) = (c.keys, &c.key_prefix) {
        let reference = c.reference.as_ref().map_or(
            "no reference read (consistency checks only)".to_string(),
            |r| format!("owners of {} keys read from `{r}`", c.verified_keys),
        );
        let _ = writeln!(
            s,
            "Keys `{p}0` .. `{p}{}` drawn uniformly (seed {}); {reference}.",
            n.saturating_sub(1),
            doc.config.seed.unwrap_or(0)
        );
    }
    let _ = writeln!(
        s,
        "\n| run | answers | wrong | wrong owner | inconsistent | not serving | checked vs reference | statuses | transport | timeouts | by owner shard |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|");
    for run in &doc.runs {
        let Some(g) = &run.result.grpc else {
            continue;
        };
        let codes = if g.status_codes.is_empty() {
            "-".to_string()
        } else {
            g.status_codes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {codes} | {} | {} | {:?} |",
            run.name,
            run.result.requests,
            g.wrong_answers,
            g.wrong_owner,
            g.inconsistent,
            g.not_serving,
            g.checked_against_reference,
            g.transport_errors,
            g.timeouts,
            g.answers_by_shard
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(owner: u32, by: u32, count: u32) -> WhoOwnsResponse {
        WhoOwnsResponse {
            owner_shard: owner,
            answered_by: by,
            shard_count: count,
        }
    }

    #[test]
    fn keys_are_a_seeded_uniform_set() {
        let keys = key_set("sku-", 4);
        assert_eq!(keys, ["sku-0", "sku-1", "sku-2", "sku-3"]);
        let draw = |seed| {
            let mut rng = Rng::for_stream(seed, 3);
            (0..4000).map(|_| rng.below(4)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1), "the same seed draws the same keys");
        assert_ne!(draw(1), draw(2));
        let mut counts = [0; 4];
        draw(1).iter().for_each(|&k| counts[k] += 1);
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        assert!(url_safe("sku-") && url_safe("a.b_c~") && !url_safe("a/b") && !url_safe("a b"));
    }

    #[test]
    fn who_owns_answers_are_checked() {
        let (mut seen, mut count) = (UNSEEN, None);
        assert_eq!(
            check_who_owns(&answer(1, 1, 2), Some(1), &mut seen, &mut count),
            Verdict::Ok(Some(1))
        );
        assert_eq!((seen, count), (1, Some(2)));
        // Another owner than the reference, or than the earlier answer.
        assert_eq!(
            check_who_owns(&answer(0, 0, 2), Some(1), &mut UNSEEN.clone(), &mut count),
            Verdict::WrongOwner
        );
        assert_eq!(
            check_who_owns(&answer(0, 0, 2), None, &mut seen, &mut count),
            Verdict::Inconsistent
        );
        // Answered by another shard, out of range, another shard count.
        for a in [answer(1, 0, 2), answer(2, 2, 2), answer(1, 1, 3)] {
            assert_eq!(
                check_who_owns(&a, None, &mut UNSEEN.clone(), &mut count),
                Verdict::Inconsistent,
                "{a:?}"
            );
        }
    }

    #[test]
    fn errors_by_kind() {
        let mut t = Tally::default();
        t.count(&Raw::Timeout, None, false);
        t.count(&Raw::Transport, None, false);
        t.count(&Raw::Status(Code::Unavailable), None, false);
        t.count(&Raw::Status(Code::InvalidArgument), None, false);
        let ok = Raw::WhoOwns(answer(1, 1, 2));
        t.count(&ok, Some(Verdict::Ok(Some(1))), true);
        t.count(&ok, Some(Verdict::WrongOwner), true);
        t.count(&Raw::Health(2), Some(Verdict::NotServing), false);
        let e = t.errors();
        assert_eq!(
            (
                e.timeout,
                e.io,
                e.status_5xx,
                e.status_4xx,
                e.parse,
                e.connect
            ),
            (1, 1, 1, 1, 2, 0)
        );
        assert_eq!((t.completed, t.ok, t.checked), (5, 1, 2));
        assert_eq!(t.by_shard, [0, 1]);
        assert_eq!(t.codes["Unavailable"], 1);
        assert_eq!(code_of("Unavailable"), Code::Unavailable);
    }

    fn done(worker: usize, ok: u64, latency_ns: u64) -> Done {
        let mut hist = new_histogram();
        for _ in 0..ok {
            hist.record(latency_ns).unwrap();
        }
        Done {
            worker,
            cpu: Some(worker),
            connections: 2,
            window: Tally {
                completed: ok + 1,
                ok,
                sent: ok + 2,
                codes: BTreeMap::from([("Internal".to_string(), 1)]),
                by_shard: vec![ok / 2, ok - ok / 2],
                shard_count: Some(2),
                checked: ok,
                ..Tally::default()
            },
            warmup: Tally {
                timeouts: 1,
                ..Tally::default()
            },
            hist,
            lag: new_histogram(),
            cpu_window: (Duration::from_millis(500), Duration::from_millis(250)),
            spun: Duration::from_millis(250),
            unanswered: 1,
        }
    }

    #[test]
    fn result_assembly() {
        let shape = Shape {
            method: Method::WhoOwns,
            target: "http://127.0.0.1:1",
            channels: 4,
            in_flight: 2,
            window_s: 2.0,
            offered: None,
        };
        let r = assemble(
            &shape,
            &[done(0, 100, 50_000), done(1, 300, 100_000)],
            Vec::new(),
        );
        assert_eq!((r.requests, r.ok, r.sent), (402, 400, 404));
        assert_eq!(r.throughput_rps, 201.0);
        assert_eq!(r.errors.status_5xx, 2);
        assert_eq!(r.errors.total(), 2);
        assert_eq!(r.warmup_errors.timeout, 2);
        assert_eq!(r.unanswered_at_end, 2);
        assert!((r.latency.p50_us - 100.0).abs() < 0.1, "{:?}", r.latency);
        assert_eq!(r.generator.len(), 2);
        assert_eq!(r.generator[0].cpu_fraction, 0.375);
        assert_eq!(r.generator[0].busy_fraction, 0.25);
        assert_eq!(r.generator_cpu_total, 0.75);
        assert!(r.send_lag.is_none());
        let g = r.grpc.as_deref().unwrap();
        assert_eq!(g.answers_by_shard, [200, 200]);
        assert_eq!(
            (g.shard_count, g.wrong_answers, g.checked_against_reference),
            (Some(2), 0, 400)
        );
        assert_eq!(g.status_codes["Internal"], 2);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["grpc"]["method"],
            "rayltics.node.v1.NodeService/WhoOwns"
        );
        assert!(json.get("websocket").is_none());
    }

    /// `rayltics-bench run ARGS --target MOCK --out TMP`: the outcome and
    /// the result.json.
    fn bench(faulty: bool, args: &[&str]) -> serde_json::Value {
        use clap::Parser as _;
        let addr = mock::server(faulty);
        let dir = tempfile::tempdir().unwrap();
        let target = format!("http://{addr}");
        let out = dir.path().to_str().unwrap();
        let mut argv = vec!["rayltics-bench", "run", "--target", &target, "--quiet"];
        argv.extend_from_slice(&["--out", out, "--warmup", "200ms", "--duration", "1s"]);
        argv.extend_from_slice(args);
        let crate::Command::Run(args) = crate::Cli::try_parse_from(argv).unwrap().command else {
            panic!("not a run")
        };
        crate::run(*args).unwrap();
        let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.contains("## gRPC"), "{md}");
        let json = std::fs::read_to_string(dir.path().join("result.json")).unwrap();
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn who_owns_closed_loop_end_to_end() {
        let doc = bench(
            false,
            &[
                "--scenario",
                "grpc-who-owns",
                "--connections",
                "2",
                "--pipeline",
                "4",
                "--keys",
                "50",
            ],
        );
        let run = &doc["runs"][0];
        assert_eq!(doc["schema_version"], 1);
        assert_eq!(doc["config"]["grpc"]["keys"], 50);
        assert!(run["ok"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["ok"], run["requests"], "{run}");
        assert_eq!(run["errors"]["parse"], 0, "{run}");
        let g = &run["grpc"];
        assert_eq!(g["wrong_answers"], 0, "{g}");
        assert_eq!(g["shard_count"], 2, "{g}");
        let by_shard: Vec<u64> = serde_json::from_value(g["answers_by_shard"].clone()).unwrap();
        assert!(
            by_shard.len() == 2 && by_shard.iter().all(|n| *n > 0),
            "{g}"
        );
        assert!(!run["timeline"].as_array().unwrap().is_empty());
        assert!(
            run["generator"][0]["cpu_fraction"].as_f64().unwrap() > 0.0,
            "{run}"
        );
    }

    #[test]
    fn a_wrong_answer_is_an_error() {
        let doc = bench(
            true,
            &[
                "--scenario",
                "grpc-who-owns",
                "--connections",
                "1",
                "--keys",
                "10",
            ],
        );
        let run = &doc["runs"][0];
        let g = &run["grpc"];
        assert!(g["inconsistent"].as_u64().unwrap() > 0, "{g}");
        assert_eq!(run["errors"]["parse"], g["wrong_answers"], "{run}");
        assert!(run["ok"].as_u64().unwrap() > 0, "{run}");
    }

    #[test]
    fn health_open_loop_end_to_end() {
        let doc = bench(
            false,
            &[
                "--scenario",
                "grpc-health",
                "--connections",
                "2",
                "--rate",
                "500",
                "--spin",
                "0s",
            ],
        );
        let run = &doc["runs"][0];
        let answered = run["requests"].as_u64().unwrap();
        assert!((350..=600).contains(&answered), "{run}");
        assert_eq!(run["ok"], run["requests"], "{run}");
        assert_eq!(run["offered_rps"], 500.0);
        assert!(run["send_lag"].is_object(), "{run}");
        assert_eq!(run["grpc"]["method"], "grpc.health.v1.Health/Check");
        assert!(doc["config"]["grpc"]["keys"].is_null());
    }

    /// A NodeService and Health server on a thread of its own; `faulty`
    /// answers `sku-7` from the wrong shard.
    mod mock {
        use rayltics_proto::node::v1::node_service_server::{NodeService, NodeServiceServer};
        use rayltics_proto::node::v1::{WhoOwnsRequest, WhoOwnsResponse};
        use tonic::{Request, Response, Status};

        struct Node {
            faulty: bool,
        }

        #[tonic::async_trait]
        impl NodeService for Node {
            async fn who_owns(
                &self,
                request: Request<WhoOwnsRequest>,
            ) -> Result<Response<WhoOwnsResponse>, Status> {
                let key = request.into_inner().key;
                let owner = (key.bytes().map(u32::from).sum::<u32>()) % 2;
                // Faulty: sku-7 answered by the shard that does not own it.
                let answered_by = if self.faulty && key == "sku-7" {
                    1 - owner
                } else {
                    owner
                };
                Ok(Response::new(WhoOwnsResponse {
                    owner_shard: owner,
                    answered_by,
                    shard_count: 2,
                }))
            }
        }

        pub(super) fn server(faulty: bool) -> std::net::SocketAddr {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            listener.set_nonblocking(true).unwrap();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let (reporter, health) = tonic_health::server::health_reporter();
                    reporter
                        .set_service_status("", tonic_health::ServingStatus::Serving)
                        .await;
                    tonic::transport::Server::builder()
                        .add_service(health)
                        .add_service(NodeServiceServer::new(Node { faulty }))
                        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                        .await
                        .unwrap();
                });
            });
            addr
        }
    }
}
