//! The load generator engine: thread-per-core epoll loops over raw
//! non-blocking TCP sockets, HTTP/1.1 keep-alive, no allocation per request.
//!
//! # Layout
//! - [`sys`]: epoll with a nanosecond timeout, per-thread CPU time.
//! - `conn`: one connection's state machine (connect, write, read, frame).
//! - `worker`: one pinned thread's event loop, arrival schedule and seconds.
//! - this module: the [`Plan`] of a run, starting the workers and merging what
//!   they report into a [`RunResult`].
//!
//! Why not monoio here: its timer wheel rounds every sleep up to the next
//! millisecond, which would add up to 1 ms of generator-made latency to every
//! open-loop request measured from its intended send time; and its readiness
//! model reads once more (EAGAIN) per request. A plain level-triggered epoll
//! loop with `epoll_pwait2` costs one `send` and one `recv` per request.

mod conn;
pub(crate) mod sys;
mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

use crate::checkout::CheckoutLog;
use crate::http1::KeyedPost;
use crate::stats::{
    Counters, Errors, Latency, RunResult, Second, SendLag, StepStats, Tally, ThreadUsage,
    new_histogram, round3,
};
use crate::workload::{Step, Workload};

/// How open-loop arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Arrival {
    /// Evenly spaced, 1/rate apart.
    Uniform,
    /// Exponential gaps (a Poisson process) with the same mean rate.
    Poisson,
}

/// The load model of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Load {
    /// Each connection sends its next request when an answer arrives.
    Closed,
    /// A fixed arrival rate (requests/s over all connections).
    Open {
        rate: f64,
        arrival: Arrival,
        seed: u64,
    },
}

/// What a run sends.
#[derive(Debug, Clone)]
pub(crate) enum Requests {
    /// One encoded request; every request of the run is this one.
    Fixed(Vec<u8>),
    /// Scripted scenarios (browse, checkout, flash-sale, mixed): each
    /// connection's [`ConnScript`](crate::workload::ConnScript) writes its
    /// next request and reads the answers (first 256 bytes of each body);
    /// answers are classified into [`Outcomes`](crate::stats::Outcomes) and
    /// counted per step, purchases and orders are logged per connection, and
    /// after the window the requests in flight are drained (answers read,
    /// nothing new sent) so that every purchase's and order's outcome is
    /// known.
    Script(Arc<Workload>),
}

/// Everything a run needs; shared read-only by the workers.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The target as the user wrote it (for the report).
    pub(crate) target: String,
    pub(crate) addr: SocketAddr,
    pub(crate) request: Requests,
    pub(crate) load: Load,
    pub(crate) connections: usize,
    /// Requests in flight per connection (1 = no pipelining).
    pub(crate) pipeline: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) timeout: Duration,
    /// Open loop: busy-poll instead of sleeping when the next send is due
    /// within this long (precision for CPU).
    pub(crate) spin: Duration,
    pub(crate) threads: usize,
    /// CPU of each worker thread (empty: not pinned).
    pub(crate) cpus: Vec<usize>,
}

impl Plan {
    fn conns_of(&self, worker: usize) -> usize {
        self.connections / self.threads + usize::from(worker < self.connections % self.threads)
    }

    fn first_conn(&self, worker: usize) -> usize {
        (0..worker).map(|w| self.conns_of(w)).sum()
    }
}

/// One worker's second.
#[derive(Debug)]
struct SecondReport {
    second: u32,
    interval_s: f64,
    hist: Histogram<u64>,
    counters: Counters,
}

/// One worker's totals over the measured window.
#[derive(Debug)]
struct WorkerDone {
    worker: usize,
    cpu: Option<usize>,
    connections: usize,
    user: Duration,
    system: Duration,
    /// Of `user + system`, time in empty busy polls (`--spin`).
    spun: Duration,
    latency: Histogram<u64>,
    lag: Histogram<u64>,
    counters: Counters,
    warmup: Counters,
    unanswered: u64,
    /// Scripted requests: each connection's purchases and checkouts, in
    /// connection order.
    tallies: Vec<Tally>,
    orders: Vec<CheckoutLog>,
    /// Scripted requests: each step's answers in the window.
    steps: Vec<StepStats>,
}

#[derive(Debug)]
enum Report {
    Second(Box<SecondReport>),
    Done(Box<WorkerDone>),
    Failed { worker: usize, error: String },
}

/// Scripted runs started by this process (see `script_base` in [`run`]).
static SCRIPTED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Runs `plan` once; `progress` sees each second as soon as every worker has
/// reported it.
pub(crate) fn run(plan: &Plan, mut progress: impl FnMut(&Second)) -> anyhow::Result<RunResult> {
    if plan.threads == 0 || plan.connections < plan.threads {
        bail!(
            "{} connection(s) cannot be spread over {} thread(s)",
            plan.connections,
            plan.threads
        );
    }
    if let Requests::Script(w) = &plan.request
        && w.needs_answers()
        && plan.pipeline > 1
    {
        bail!("checkouts wait for each answer (an order's id): no pipelining");
    }
    let plan = Arc::new(plan.clone());
    // A fresh key space for each run: no key of this run replays an answer
    // of an earlier one (scripted requests only).
    let run_tag: Arc<str> = KeyedPost::new_run().into();
    // Scripted runs number their connections' scripts on from the previous
    // run's: with `--users` above `--connections`, each run buys as the
    // next users, so a series of runs (pairs) does not pile every purchase
    // onto the same users' per-user limit.
    let script_base = match plan.request {
        Requests::Script(_) => SCRIPTED_RUNS.fetch_add(1, Ordering::Relaxed) * plan.connections,
        _ => 0,
    };
    // Give every thread time to start and pin before the common epoch.
    let epoch = Instant::now() + Duration::from_millis(50);
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(plan.threads);
    for id in 0..plan.threads {
        let (plan, tx, tag) = (plan.clone(), tx.clone(), run_tag.clone());
        let h = std::thread::Builder::new()
            .name(format!("bench-{id}"))
            .spawn(move || worker::run(id, plan, &tag, script_base, epoch, tx))
            .context("spawning a worker thread")?;
        handles.push(h);
    }
    drop(tx);

    let mut pending: BTreeMap<u32, (usize, f64, Histogram<u64>, Counters)> = BTreeMap::new();
    let mut timeline = Vec::new();
    let mut done = Vec::with_capacity(plan.threads);
    let mut failure = None;
    for report in rx {
        match report {
            Report::Second(s) => {
                let entry = pending
                    .entry(s.second)
                    .or_insert_with(|| (0, 0.0, new_histogram(), Counters::default()));
                entry.0 += 1;
                entry.1 = entry.1.max(s.interval_s);
                entry.2.add(&s.hist).expect("same histogram bounds");
                entry.3.add(&s.counters);
                if entry.0 == plan.threads
                    && let Some((_, interval, hist, c)) = pending.remove(&s.second)
                {
                    let second = Second {
                        second: s.second,
                        interval_s: round3(interval),
                        count: c.completed,
                        throughput_rps: round3(c.completed as f64 / interval.max(1e-9)),
                        p50_us: round3(hist.value_at_quantile(0.5) as f64 / 1000.0),
                        p99_us: round3(hist.value_at_quantile(0.99) as f64 / 1000.0),
                        max_us: round3(hist.max() as f64 / 1000.0),
                        errors: c.errors.total(),
                    };
                    progress(&second);
                    timeline.push(second);
                }
            }
            Report::Done(d) => done.push(d),
            Report::Failed { worker, error } => {
                failure.get_or_insert(format!("worker {worker}: {error}"));
            }
        }
    }
    for h in handles {
        if h.join().is_err() {
            failure.get_or_insert_with(|| "a worker thread panicked".to_string());
        }
    }
    if let Some(f) = failure {
        bail!("the load generator failed: {f}");
    }
    done.sort_by_key(|d| d.worker);

    let mut latency = new_histogram();
    let mut lag = new_histogram();
    let mut counters = Counters::default();
    let mut warmup_errors = Errors::default();
    let mut unanswered = 0;
    let mut tallies = Vec::new();
    let mut orders = Vec::new();
    let mut steps: Vec<StepStats> = Vec::new();
    let mut generator = Vec::new();
    let window = plan.duration.as_secs_f64();
    for d in &mut done {
        latency.add(&d.latency).expect("same histogram bounds");
        lag.add(&d.lag).expect("same histogram bounds");
        counters.add(&d.counters);
        warmup_errors.add(&d.warmup.errors);
        unanswered += d.unanswered;
        tallies.extend_from_slice(&d.tallies);
        orders.append(&mut d.orders);
        if steps.is_empty() {
            steps.clone_from(&d.steps);
        } else {
            for (all, s) in steps.iter_mut().zip(&d.steps) {
                all.add(s);
            }
        }
        generator.push(ThreadUsage {
            thread: d.worker,
            cpu: d.cpu,
            connections: d.connections,
            cpu_fraction: round3((d.user + d.system).as_secs_f64() / window),
            spin_fraction: round3(d.spun.as_secs_f64() / window),
            busy_fraction: round3(
                (d.user + d.system).saturating_sub(d.spun).as_secs_f64() / window,
            ),
            user_s: round3(d.user.as_secs_f64()),
            system_s: round3(d.system.as_secs_f64()),
        });
    }
    let (offered_rps, send_lag) = match plan.load {
        Load::Open { rate, .. } => (
            Some(rate),
            Some({
                let l = Latency::of(&lag);
                SendLag {
                    late_over_1ms: counters.late_over_1ms,
                    late_fraction: if counters.sent == 0 {
                        0.0
                    } else {
                        (counters.late_over_1ms as f64 / counters.sent as f64 * 1e6).round() / 1e6
                    },
                    queued: counters.queued,
                    generator_p50_us: l.p50_us,
                    generator_p99_us: l.p99_us,
                    generator_max_us: l.max_us,
                }
            }),
        ),
        Load::Closed => (None, None),
    };
    let generator_cpu_total = round3(generator.iter().map(|g| g.cpu_fraction).sum());
    let generator_busy_total = round3(generator.iter().map(|g| g.busy_fraction).sum());
    Ok(RunResult {
        target: plan.target.clone(),
        duration_s: round3(window),
        requests: counters.completed,
        ok: counters.ok,
        sent: counters.sent,
        throughput_rps: round3(counters.completed as f64 / window),
        offered_rps,
        latency: Latency::of(&latency),
        errors: counters.errors,
        outcomes: matches!(plan.request, Requests::Script(_)).then_some(counters.outcomes),
        steps: steps
            .iter()
            .zip(Step::ALL)
            .filter(|(s, _)| s.requests > 0)
            .map(|(s, step)| s.result(step.name()))
            .collect(),
        warmup_errors,
        unanswered_at_end: unanswered,
        send_lag,
        generator,
        generator_cpu_total,
        generator_busy_total,
        timeline,
        tallies,
        script_base,
        orders,
        websocket: None,
        grpc: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request head gets `response`; with `close_after`, the
    /// connection is closed after that many answers.
    fn server(response: &'static [u8], close_after: Option<usize>) -> SocketAddr {
        crate::test_server::server(response, close_after, std::time::Duration::ZERO)
    }

    fn plan(addr: SocketAddr, load: Load, pipeline: usize) -> Plan {
        Plan {
            target: format!("http://{addr}"),
            addr,
            request: Requests::Fixed(crate::http1::encode_get(&addr.to_string(), "/healthz")),
            load,
            connections: 4,
            pipeline,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(1200),
            timeout: Duration::from_secs(2),
            spin: Duration::ZERO,
            threads: 2,
            cpus: Vec::new(),
        }
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[test]
    fn closed_loop_with_pipelining() {
        let addr = server(OK, None);
        let mut seconds = 0;
        let r = run(&plan(addr, Load::Closed, 3), |_| seconds += 1).unwrap();
        assert!(r.requests > 100, "{r:?}");
        assert_eq!(r.ok, r.requests);
        assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
        assert_eq!(seconds, 2, "one full second and a partial one");
        assert_eq!(r.timeline.len(), 2);
        assert!((r.timeline[1].interval_s - 0.2).abs() < 1e-6);
        assert_eq!(r.timeline.iter().map(|s| s.count).sum::<u64>(), r.requests);
        assert_eq!(r.generator.len(), 2);
        assert!(r.send_lag.is_none());
    }

    #[test]
    fn open_loop_keeps_the_rate() {
        let addr = server(OK, None);
        let load = Load::Open {
            rate: 2000.0,
            arrival: Arrival::Uniform,
            seed: 1,
        };
        let r = run(&plan(addr, load, 1), |_| {}).unwrap();
        // 2000/s over 1.2 s, give or take the arrivals straddling the edges.
        assert!((2200..=2500).contains(&r.sent), "{r:?}");
        assert!(r.requests + r.unanswered_at_end >= r.sent - 10, "{r:?}");
        assert_eq!(r.errors.total(), 0);
        assert!(r.send_lag.is_some());
        let poisson = Load::Open {
            rate: 2000.0,
            arrival: Arrival::Poisson,
            seed: 7,
        };
        let r = run(&plan(addr, poisson, 1), |_| {}).unwrap();
        assert!((2100..=2700).contains(&r.sent), "{r:?}");
    }

    #[test]
    fn statuses_and_closes_are_counted() {
        let addr = server(
            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            Some(1),
        );
        let r = run(&plan(addr, Load::Closed, 1), |_| {}).unwrap();
        assert!(r.requests > 10, "{r:?}");
        assert_eq!(r.errors.status_5xx, r.requests);
        assert_eq!(r.ok, 0);
        assert_eq!(r.errors.connect, 0, "{:?}", r.errors);
    }

    #[test]
    fn keyed_requests_are_tallied_and_drained() {
        const SOLD_OUT: &[u8] = b"HTTP/1.1 409 Conflict\r\nContent-Type: application/problem+json\r\nContent-Length: 67\r\n\r\n{\"type\":\"https://rayltics.dev/problems/sold_out\",\"code\":\"sold_out\"}";
        let addr = server(SOLD_OUT, None);
        let keyed = crate::http1::KeyedPost::new(
            &addr.to_string(),
            "/buy",
            vec!["t0".into(), "t1".into(), "t2".into()],
            r#"{"quantity":1}"#,
        );
        let p = Plan {
            request: Requests::Script(Arc::new(
                Workload::new(
                    &addr.to_string(),
                    &crate::workload::Mix::only(false, false, true),
                    None,
                    &[],
                    Some(Arc::new(keyed)),
                    0,
                    1,
                )
                .unwrap(),
            )),
            ..plan(addr, Load::Closed, 2)
        };
        let r = run(&p, |_| {}).unwrap();
        assert!(r.requests > 100, "{r:?}");
        assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
        let o = r.outcomes.expect("keyed runs report outcomes");
        assert_eq!((o.sold_out, o.created, r.ok), (r.requests, 0, 0));
        // One tally per connection, covering the warm-up and the drain: every
        // request sent was answered.
        assert_eq!(r.tallies.len(), 4);
        for t in &r.tallies {
            assert!(t.sent > 0 && t.sent == t.answered, "{t:?}");
            assert_eq!(t.outcomes.sold_out, t.answered);
        }
        let tallied: u64 = r.tallies.iter().map(|t| t.outcomes.sold_out).sum();
        assert!(tallied >= r.requests, "{tallied} < {}", r.requests);
    }

    #[test]
    fn refused_connections_are_connect_errors() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let r = run(&plan(addr, Load::Closed, 1), |_| {}).unwrap();
        assert_eq!(r.requests, 0);
        assert!(r.errors.connect > 0, "{:?}", r.errors);
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let addr = server(b"HTTP/1.1 2x0 OK\r\n\r\n", None);
        let r = run(&plan(addr, Load::Closed, 1), |_| {}).unwrap();
        assert_eq!(r.requests, 0);
        assert!(r.errors.parse > 0, "{:?}", r.errors);
    }
}
