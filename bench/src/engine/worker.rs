//! One generator thread: an epoll loop over its share of the connections,
//! the open-loop arrival schedule and a per-second report to the main thread.
//!
//! Time is kept as nanoseconds since the run's epoch (shared by all workers).
//! The loop sleeps in `epoll_pwait2` until the next due instant (an arrival, a
//! second boundary, housekeeping or the end), with 1 ns timer slack, so an
//! open-loop request leaves within microseconds of its intended time when the
//! generator keeps up.

use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::conn::{Conn, Shared};
use super::sys::{self, Epoll};
use super::{Arrival, Load, Plan, Report, Requests, SecondReport, WorkerDone};
use crate::sampling::Rng;
use crate::stats::{Counters, Failure, Outcome, StepStats, new_histogram};
use crate::workload::{ConnScript, Step};

/// Housekeeping period: reconnects and timeouts.
const HOUSEKEEPING_NS: u64 = 10_000_000;
const SECOND_NS: u64 = 1_000_000_000;
const LATE_NS: u64 = 1_000_000;

/// What the connections record into; drained once per second.
#[derive(Debug)]
pub(crate) struct Recorder {
    /// Latency of the responses of the current second.
    sec: Histogram<u64>,
    /// Open loop: the worker's own lateness handling arrivals, this second.
    lag: Histogram<u64>,
    c: Counters,
    /// Scripted requests: each step's answers since the end of the warm-up
    /// (indexed by step; empty otherwise).
    steps: Vec<StepStats>,
    /// Time spent in empty busy polls since the start (never reset).
    spun_ns: u64,
}

impl Recorder {
    fn new(scripted: bool) -> Self {
        Self {
            sec: new_histogram(),
            lag: new_histogram(),
            c: Counters::default(),
            steps: if scripted {
                Step::ALL.iter().map(|_| StepStats::new()).collect()
            } else {
                Vec::new()
            },
            spun_ns: 0,
        }
    }

    /// An answer; an expected refusal (scripted requests) is not an error.
    pub(super) fn response(&mut self, status: u16, outcome: Option<Outcome>, latency_ns: u64) {
        self.sec.saturating_record(latency_ns.max(1));
        self.c.completed += 1;
        match outcome {
            Some(o) => {
                self.c.outcomes.count(o);
                if !o.is_refusal() {
                    self.c.ok += 1;
                }
            }
            None => match status {
                500.. => self.c.errors.status_5xx += 1,
                400..=499 => self.c.errors.status_4xx += 1,
                _ => self.c.ok += 1,
            },
        }
    }

    /// The same answer, counted for its step.
    pub(super) fn step(
        &mut self,
        step: u8,
        status: u16,
        outcome: Option<Outcome>,
        latency_ns: u64,
    ) {
        if let Some(s) = self.steps.get_mut(usize::from(step)) {
            s.record(status, outcome, latency_ns);
        }
    }

    pub(super) fn error(&mut self, kind: Failure, n: u64) {
        self.c.errors.count(kind, n);
    }

    pub(super) fn sent(&mut self, n: u64) {
        self.c.sent += n;
    }

    /// Open loop: a request was written `lag_ns` after its intended time.
    pub(super) fn sent_late(&mut self, lag_ns: u64) {
        self.c.sent += 1;
        if lag_ns > LATE_NS {
            self.c.late_over_1ms += 1;
        }
    }

    /// Open loop: the worker handled an arrival `lag_ns` after its intended
    /// time (its own lateness) and found its connection `busy` or not.
    pub(super) fn arrived(&mut self, lag_ns: u64, busy: bool) {
        self.lag.saturating_record(lag_ns.max(1));
        if busy {
            self.c.queued += 1;
        }
    }
}

/// Open-loop arrivals of this worker, in order.
#[derive(Debug)]
struct Schedule {
    arrival: Arrival,
    /// Mean gap between this worker's arrivals, ns.
    period_ns: f64,
    phase_ns: f64,
    index: u64,
    next_ns: f64,
    rng: Rng,
}

impl Schedule {
    fn new(arrival: Arrival, worker_rate: f64, phase_ns: f64, seed: u64) -> Self {
        let mut s = Self {
            arrival,
            period_ns: 1e9 / worker_rate,
            phase_ns,
            index: 0,
            next_ns: phase_ns,
            rng: Rng::new(seed),
        };
        if arrival == Arrival::Poisson {
            s.next_ns = phase_ns + s.gap();
        }
        s
    }

    fn gap(&mut self) -> f64 {
        -self.rng.unit().ln() * self.period_ns
    }

    fn next(&self) -> u64 {
        self.next_ns as u64
    }

    /// Hands every arrival due by `now` to its connection (round robin).
    fn dispatch(&mut self, conns: &mut [Conn], sh: &mut Shared, now: u64) {
        while self.next() <= now {
            let conn = (self.index % conns.len() as u64) as usize;
            conns[conn].arrive(sh, self.next(), now);
            self.advance();
        }
    }

    fn advance(&mut self) {
        self.index += 1;
        self.next_ns = match self.arrival {
            Arrival::Uniform => self.phase_ns + self.index as f64 * self.period_ns,
            Arrival::Poisson => self.next_ns + self.gap(),
        };
    }
}

/// Runs worker `id` until the end of the plan (scripted requests: and until
/// their last answer, see [`drain`]); reports to `tx`. `run_tag` makes this
/// run's idempotency keys unique.
pub(super) fn run(
    id: usize,
    plan: Arc<Plan>,
    run_tag: &str,
    script_base: usize,
    epoch: Instant,
    tx: Sender<Report>,
) {
    let fail = |e: std::io::Error| {
        let _ = tx.send(Report::Failed {
            worker: id,
            error: e.to_string(),
        });
    };
    let cpu = plan.cpus.get(id).copied();
    if let Some(core) = cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
    {
        eprintln!("rayltics-bench: warning: could not pin worker {id} to cpu {core}");
    }
    sys::tighten_timer_slack();
    let epoll = match Epoll::new() {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    let first = plan.first_conn(id);
    let nconns = plan.conns_of(id);
    let pipeline = plan.pipeline.max(1);
    let (request, workload): (&[u8], _) = match &plan.request {
        Requests::Fixed(r) => (r, None),
        Requests::Script(w) => (&[], Some(w.clone())),
    };
    let wire = request.repeat(pipeline + 1);
    let mut sh = Shared {
        epoll,
        addr: plan.addr.into(),
        domain: socket2::Domain::for_address(plan.addr),
        wire: wire.into_boxed_slice(),
        req_len: request.len(),
        scripted: workload.is_some(),
        draining: false,
        pipeline,
        open: matches!(plan.load, Load::Open { .. }),
        timeout_ns: plan.timeout.as_nanos() as u64,
        rec: Recorder::new(workload.is_some()),
        to_fill: Vec::with_capacity(nconns),
    };
    let mut conns: Vec<Conn> = (0..nconns)
        .map(|i| {
            let script = workload
                .as_ref()
                .map(|w| Box::new(ConnScript::new(w, run_tag, script_base + first + i)));
            Conn::new(i as u64, pipeline, script)
        })
        .collect();
    let mut schedule = match plan.load {
        Load::Open {
            rate,
            arrival,
            seed,
        } => {
            let worker_rate = rate * nconns as f64 / plan.connections as f64;
            // Offset the workers so their arrivals interleave.
            let phase = first as f64 * 1e9 / rate;
            Some(Schedule::new(
                arrival,
                worker_rate,
                phase,
                seed ^ ((id as u64) << 32),
            ))
        }
        Load::Closed => None,
    };

    let spin_ns = plan.spin.as_nanos() as u64;
    let mut last_event: u64 = 0;
    let warm_end = plan.warmup.as_nanos() as u64;
    let end = warm_end + plan.duration.as_nanos() as u64;
    let clock = || Instant::now().saturating_duration_since(epoch).as_nanos() as u64;

    let wait = epoch.saturating_duration_since(Instant::now());
    std::thread::sleep(wait);
    let mut now = clock();
    for c in conns.iter_mut() {
        c.connect(&mut sh, now);
    }

    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 512];
    let mut w = Window::new(warm_end, end);
    let mut next_house = now + HOUSEKEEPING_NS;

    loop {
        now = clock();
        w.catch_up(&mut sh.rec, now, &tx);
        if w.finished {
            break;
        }
        if now >= next_house {
            for c in conns.iter_mut() {
                c.housekeeping(&mut sh, now);
            }
            next_house = now + HOUSEKEEPING_NS;
        }
        let mut deadline = w.next_tick.min(next_house);
        if let Some(s) = schedule.as_mut() {
            s.dispatch(&mut conns, &mut sh, now);
            deadline = deadline.min(s.next());
        }
        // Busy-poll instead of sleeping while the next deadline is within
        // `spin`, or the last event is less than `spin` old: waking a halted
        // vCPU takes tens of microseconds on a VM, which would be added to
        // the measured latency. Sleeps end `spin` early for the same reason.
        let gap = deadline.saturating_sub(now);
        let polling = gap <= spin_ns || now.saturating_sub(last_event) < spin_ns;
        let timeout = Duration::from_nanos(if polling { 0 } else { gap - spin_ns });
        let n = match sh.epoll.wait(&mut events, Some(timeout)) {
            Ok(n) => n,
            Err(e) => return fail(e),
        };
        if n == 0 {
            if polling {
                // An empty poll: CPU burnt waiting, reported apart.
                sh.rec.spun_ns += clock().saturating_sub(now);
            }
            continue;
        }
        now = clock();
        last_event = now;
        // Attribute these events to the second they were seen in.
        w.catch_up(&mut sh.rec, now, &tx);
        if w.finished {
            break;
        }
        // Answers are timed at `now`, when epoll saw them ready. Sends take a
        // fresh clock reading: handling a burst of ready connections costs
        // several microseconds each in the kernel, and open-loop arrivals that
        // fall due meanwhile must not wait for the whole burst.
        for ev in &events[..n] {
            let (token, ready) = (ev.u64, ev.events);
            if let Some(c) = conns.get_mut(token as usize) {
                c.on_event(&mut sh, ready, now);
            }
            if let Some(s) = schedule.as_mut() {
                s.dispatch(&mut conns, &mut sh, clock());
            }
        }
        for i in 0..sh.to_fill.len() {
            let token = sh.to_fill[i] as usize;
            conns[token].fill(&mut sh, clock());
        }
        sh.to_fill.clear();
    }
    let (user, system) = sys::thread_cpu_time();
    let unanswered = conns.iter().map(|c| c.unanswered_since(warm_end)).sum();
    // The window's steps; what the drain reads is not measured.
    let steps = std::mem::take(&mut sh.rec.steps);
    let drain_until = end + sh.timeout_ns;
    if sh.scripted
        && let Err(e) = drain(&mut conns, &mut sh, &mut events, drain_until, clock)
    {
        return fail(e);
    }
    let (tallies, orders) = if sh.scripted {
        conns.iter_mut().map(Conn::take_log).unzip()
    } else {
        (Vec::new(), Vec::new())
    };
    let _ = tx.send(Report::Done(Box::new(WorkerDone {
        worker: id,
        cpu,
        connections: nconns,
        user: user.saturating_sub(w.cpu_start.0),
        system: system.saturating_sub(w.cpu_start.1),
        spun: Duration::from_nanos(sh.rec.spun_ns - w.spun_start),
        latency: w.total,
        lag: w.lag_total,
        counters: w.counters,
        warmup: w.warmup,
        unanswered,
        tallies,
        orders,
        steps,
    })));
}

/// After the window, scripted requests only: sends nothing more and reads
/// the answers still in flight until there are none or `deadline` (the end
/// plus `--timeout`), so the logs know the outcome of every purchase and
/// order the server may have made. What it reads is not measured.
fn drain(
    conns: &mut [Conn],
    sh: &mut Shared,
    events: &mut [libc::epoll_event],
    deadline: u64,
    clock: impl Fn() -> u64,
) -> std::io::Result<()> {
    sh.draining = true;
    loop {
        let now = clock();
        if now >= deadline || conns.iter().all(|c| c.in_flight() == 0) {
            return Ok(());
        }
        let wait = Duration::from_nanos((deadline - now).min(HOUSEKEEPING_NS));
        let n = sh.epoll.wait(events, Some(wait))?;
        let now = clock();
        for ev in &events[..n] {
            if let Some(c) = conns.get_mut(ev.u64 as usize) {
                c.on_event(sh, ev.events, now);
            }
        }
        sh.to_fill.clear();
    }
}

/// The measured window of one worker, cut into seconds. The first tick ends
/// the warm-up; the last one (at `end`) may close a partial second.
#[derive(Debug)]
struct Window {
    warm_end: u64,
    end: u64,
    next_tick: u64,
    second: u32,
    finished: bool,
    warmed: bool,
    cpu_start: (Duration, Duration),
    spun_start: u64,
    warmup: Counters,
    total: Histogram<u64>,
    lag_total: Histogram<u64>,
    counters: Counters,
}

impl Window {
    fn new(warm_end: u64, end: u64) -> Self {
        Self {
            warm_end,
            end,
            next_tick: warm_end,
            second: 0,
            finished: false,
            warmed: false,
            cpu_start: (Duration::ZERO, Duration::ZERO),
            spun_start: 0,
            warmup: Counters::default(),
            total: new_histogram(),
            lag_total: new_histogram(),
            counters: Counters::default(),
        }
    }

    /// Runs every tick due at `now`.
    fn catch_up(&mut self, rec: &mut Recorder, now: u64, tx: &Sender<Report>) {
        while !self.finished && now >= self.next_tick {
            self.tick(rec, tx);
        }
    }

    fn tick(&mut self, rec: &mut Recorder, tx: &Sender<Report>) {
        let at = self.next_tick;
        if !self.warmed {
            // End of the warm-up: what was recorded so far is set aside.
            self.warmed = true;
            self.warmup = rec.c;
            for s in &mut rec.steps {
                s.reset();
            }
            self.cpu_start = sys::thread_cpu_time();
            self.spun_start = rec.spun_ns;
        } else {
            let start = self.warm_end + u64::from(self.second) * SECOND_NS;
            self.total.add(&rec.sec).expect("same histogram bounds");
            self.lag_total.add(&rec.lag).expect("same histogram bounds");
            self.counters.add(&rec.c);
            let _ = tx.send(Report::Second(Box::new(SecondReport {
                second: self.second,
                interval_s: (at - start) as f64 / 1e9,
                hist: rec.sec.clone(),
                counters: rec.c,
            })));
            self.second += 1;
            self.finished = at >= self.end;
        }
        rec.sec.reset();
        rec.lag.reset();
        rec.c = Counters::default();
        self.next_tick = (self.warm_end + u64::from(self.second + 1) * SECOND_NS).min(self.end);
    }
}
