//! `rayltics-bench`: the load generator of the rayltics bench suite.
//!
//! # Layout
//! - `main.rs`: the command line, the A/B alternation with a baseline, output.
//! - [`engine`]: thread-per-core epoll workers that drive HTTP/1.1 keep-alive
//!   connections in a closed loop (`--connections`) or an open loop (`--rate`,
//!   latency measured from each request's intended send time).
//! - [`http1`]: request encoding and the incremental response framer.
//! - [`stats`]: counters, HdrHistogram summaries, the per-run result.
//! - [`report`]: JSON (schema version 1), Markdown and terminal summaries.
//! - [`charts`]: SVG charts of the per-second timeline.
//! - [`slo`]: the step search for the highest rate that holds a latency SLO.
//! - [`null_server`]: a canned-answer server to measure the generator's ceiling.
//! - [`capacity`]: cores and nodes for a traffic profile, from measured results.
//! - [`workload`]: the scripted scenarios (`browse`, `checkout`,
//!   `flash-sale`, `mixed`): each connection's next request and what its
//!   answers mean; [`sampling`]: their seeded random choices (Zipf).
//! - [`catalog`], [`checkout`], [`flash_sale`]: setup over the API and the
//!   correctness gates, over the blocking JSON client of [`setup`].
//! - [`ws`]: the WebSocket scenarios (`ws-idle`, `chat-fanout`), with their
//!   own epoll workers and delivery check.
//! - [`grpc`]: the gRPC scenarios (`grpc-who-owns`, `grpc-health`): tonic
//!   channels on current-thread tokio runtimes, and the answers' check.
//!
//! A run: `main` builds a [`engine::Plan`], `engine::run` starts one worker per
//! CPU, each worker connects, warms up, then reports every second; `main`
//! merges the seconds (live progress line) and the totals into a
//! [`stats::RunResult`], and `report` writes them out.

mod capacity;
mod catalog;
mod charts;
mod checkout;
mod engine;
mod flash_sale;
mod grpc;
mod http1;
mod null_server;
mod report;
mod sampling;
mod setup;
mod slo;
mod stats;
#[cfg(test)]
mod test_server;
mod workload;
mod ws;

use std::io::{IsTerminal, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use engine::{Arrival, Load, Plan, Requests};
use report::{Comparison, ConfigOut, Document, Run};
use stats::RunResult;

/// rayltics-bench: load generator for rayltics (and any HTTP/1.1 server).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario against a target (and optionally alternate with a baseline).
    Run(Box<RunArgs>),
    /// Estimate the cores and nodes a traffic profile needs, from the
    /// throughput measured by `run` (one result.json per scenario).
    Capacity(capacity::CapacityArgs),
    /// Serve a canned `200 ok` to every request, as cheaply as possible: a
    /// target for measuring the generator's own ceiling. Calibration only.
    NullServer {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:18083")]
        addr: SocketAddr,
    },
}

/// What each request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// `GET /healthz`.
    Healthz,
    /// `GET` of the target URL's own path.
    Get,
    /// `POST /api/v1/flash-sales/{id}/purchase` of one unit, each connection
    /// as one user, a fresh `Idempotency-Key` per request, on a sale created
    /// at setup; a correctness gate checks the units sold after the run.
    FlashSale,
    /// Anonymous catalog reads: searches (`q`, `category`) and product pages
    /// with a Zipf-skewed SKU popularity, over a catalog created at setup.
    Browse,
    /// Each connection as one user: cart line, order from the cart, payment;
    /// a correctness gate lists every order back after the run.
    Checkout,
    /// A weighted blend of browse, checkout and flash-sale requests
    /// (`--scenario-file`), with both gates.
    Mixed,
    /// Holds `--connections` authenticated WebSocket connections (`GET /ws`)
    /// and reports the node's RSS per connection (`--node-pid`); each must
    /// still answer a ping after `--duration`.
    WsIdle,
    /// Chat rooms (`--rooms` x `--members` WebSocket connections, `--senders`
    /// per room) with messages sent at `--rate`: delivery latency, deliveries
    /// per second and a check that every member got every message once, in
    /// order.
    ChatFanout,
    /// `rayltics.node.v1.NodeService/WhoOwns` over gRPC (`--target` is the
    /// node's `--grpc-addr`), keys drawn from `--keys` seeded ones; every
    /// answer is checked (`--http-target`: against `/debug/shards/{key}`).
    GrpcWhoOwns,
    /// `grpc.health.v1.Health/Check` over gRPC; every answer must be SERVING.
    GrpcHealth,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Healthz => "healthz",
            Self::Get => "get",
            Self::FlashSale => "flash-sale",
            Self::Browse => "browse",
            Self::Checkout => "checkout",
            Self::Mixed => "mixed",
            Self::WsIdle => "ws-idle",
            Self::ChatFanout => "chat-fanout",
            Self::GrpcWhoOwns => "grpc-who-owns",
            Self::GrpcHealth => "grpc-health",
        }
    }

    /// Sends requests written per connection by a script (set up first).
    fn scripted(self) -> bool {
        !matches!(self, Self::Healthz | Self::Get) && !self.websocket() && !self.grpc()
    }

    /// One of the gRPC scenarios (their own engine, `grpc`).
    fn grpc(self) -> bool {
        matches!(self, Self::GrpcWhoOwns | Self::GrpcHealth)
    }

    /// One of the WebSocket scenarios (their own engine, `ws`).
    fn websocket(self) -> bool {
        matches!(self, Self::WsIdle | Self::ChatFanout)
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Workload.
    #[arg(long, value_enum, default_value = "healthz")]
    scenario: Scenario,
    /// Server under test, `http://HOST:PORT[/PATH]`.
    #[arg(long)]
    target: String,
    /// Name of the target in the reports.
    #[arg(long, default_value = "target")]
    target_name: String,
    /// Scenario name written in the results (default: the `--scenario`),
    /// e.g. `browse` for a `get` of a catalogue page; `capacity` matches the
    /// profile's scenarios against it.
    #[arg(long)]
    scenario_name: Option<String>,
    /// Cores the server under test runs on (recorded for `capacity`, which
    /// divides the measured throughput by it).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    server_cores: u32,
    /// Open loop: requests per second offered over all connections. Without
    /// it the load is a closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Connections (closed loop: each one waits for its answer; open loop: the
    /// rate is spread over them, a request queues on a busy connection).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Requests in flight per connection (HTTP/1.1 pipelining; 1 = none;
    /// gRPC: concurrent streams per HTTP/2 channel).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Measured duration (`10s`, `500ms`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up before each measured run, not recorded.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// A request without an answer after this long counts as a timeout (its
    /// connection is closed and reopened).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Busy-poll instead of sleeping while the next send is due within this
    /// long or the last event is younger than this: sends leave on time and
    /// answers are read at once, at the cost of CPU (reported apart as
    /// `spin_fraction`). `0s` always sleeps; on a VM, waking up then adds tens
    /// of microseconds to the measured latencies.
    #[arg(long, default_value = "100us", value_parser = parse_duration)]
    spin: Duration,
    /// CPUs to pin the generator's threads to, one thread each (`1`, `1,3`,
    /// `2-5`). Default: one unpinned thread.
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<CpuList>,
    /// Threads when `--cpus` is not given (unpinned).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Open loop: spacing of arrivals.
    #[arg(long, value_enum, default_value = "uniform")]
    arrival: Arrival,
    /// Seed of the Poisson arrivals (open loop) and of the scenarios'
    /// random choices (SKU popularity, searches, the mix): the same seed
    /// gives every connection the same sequence of requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `--scenario mixed`: a TOML file of weights per scenario, e.g.
    /// `bench/scenarios/shop.toml` (`[weights] browse = 80, checkout = 15,
    /// flash-sale = 5`: shares of the requests).
    #[arg(long)]
    scenario_file: Option<PathBuf>,
    /// Baseline server: the same workload alternates target, baseline, target,
    /// baseline ... and the ratios target/baseline are reported.
    #[arg(long)]
    baseline: Option<String>,
    /// Baseline workload (`healthz` or `get`): alternates the scenario with
    /// this one, on the `--baseline` server or else on the target itself
    /// (e.g. flash-sale purchases over `GET /healthz` of the same node).
    #[arg(long, value_enum)]
    baseline_scenario: Option<Scenario>,
    /// Name of the baseline in the reports (default: `baseline`, or the
    /// `--baseline-scenario` without `--baseline`).
    #[arg(long)]
    baseline_name: Option<String>,
    /// Pairs of runs (target then baseline) with `--baseline` or
    /// `--baseline-scenario`.
    #[arg(long, default_value_t = 3)]
    pairs: usize,
    /// Pause between two runs (lets sockets in TIME_WAIT and the servers settle).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pause: Duration,
    /// Directory for result.json and summary.md (default:
    /// target/bench-results/<UTC timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// No live progress line, even on a terminal.
    #[arg(long)]
    quiet: bool,
    /// Step search (open loop, needs `--rate` as the start): the highest rate
    /// whose steps hold this latency objective, e.g. `p99=5ms` (metrics p50,
    /// p90, p99, p99.9, p99.99, max). A step holds it when the percentile is
    /// at most the limit, no request failed and 95 % of the offered requests
    /// were answered.
    #[arg(long, value_parser = slo::parse_slo, requires = "rate", conflicts_with_all = ["baseline", "baseline_scenario"])]
    slo: Option<slo::Slo>,
    /// `--slo`: measured duration of each step (each also runs `--warmup`).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    step_duration: Duration,
    /// `--slo`: rate multiplier while the objective holds.
    #[arg(long, default_value_t = 1.5)]
    step_factor: f64,
    /// `--slo`: at most this many growing steps.
    #[arg(long, default_value_t = 12)]
    max_steps: usize,
    /// `--slo`: bisection steps between the last good and the first bad rate.
    #[arg(long, default_value_t = 4)]
    search_steps: usize,
    #[command(flatten)]
    flash: flash_sale::FlashSaleArgs,
    #[command(flatten)]
    catalog: catalog::CatalogArgs,
    #[command(flatten)]
    checkout: checkout::CheckoutArgs,
    #[command(flatten)]
    ws: ws::WsArgs,
    #[command(flatten)]
    grpc: grpc::GrpcArgs,
}

/// Parses `10s`, `250ms`, `1.5s`, `2m`, `100us`; a bare number is seconds.
impl RunArgs {
    /// The report's configuration as the flags give it, for one target and
    /// no baseline; engines override what is theirs (`..args.config_out(..)`).
    fn config_out(
        &self,
        target: &Target,
        threads: usize,
        cpus: Vec<usize>,
        duration_s: f64,
    ) -> ConfigOut {
        ConfigOut {
            scenario: self
                .scenario_name
                .clone()
                .unwrap_or_else(|| self.scenario.name().to_string()),
            server_cores: self.server_cores,
            mode: if self.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            connections: self.connections,
            rate: self.rate,
            arrival: self.rate.map(|_| self.arrival),
            seed: None,
            pipeline: self.pipeline,
            warmup_s: self.warmup.as_secs_f64(),
            duration_s,
            timeout_s: self.timeout.as_secs_f64(),
            threads,
            cpus,
            target: target.url.clone(),
            target_name: self.target_name.clone(),
            baseline: None,
            baseline_name: None,
            baseline_scenario: None,
            pairs: None,
            flash_sale: None,
            mix: None,
            catalog: None,
            users: None,
            decline_every: None,
            setup_s: None,
            websocket: None,
            grpc: None,
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown duration unit {other:?} (us, ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(n * scale).map_err(|e| format!("{s:?}: {e}"))
}

/// CPUs given on the command line, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CpuList(Vec<usize>);

/// Parses a CPU list: `1`, `0,2`, `2-5`, `0,4-6`.
fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("{part:?} is not a CPU or a range of CPUs");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err("empty CPU list".into());
    }
    Ok(CpuList(out))
}

/// A target URL: where to connect and what the `Host` header and path are.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    url: String,
    /// `host:port` as written (the `Host` header).
    authority: String,
    path: String,
    addr: SocketAddr,
}

fn parse_target(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url:?}: only http:// targets are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        bail!("{url:?}: no host");
    }
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    let with_port = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("{url:?}: cannot resolve {with_port}"))?
        .next()
        .with_context(|| format!("{url:?}: {with_port} resolves to no address"))?;
    Ok(Target {
        url: url.to_string(),
        authority: authority.to_string(),
        path: path.to_string(),
        addr,
    })
}

/// Live progress on stderr, when it is a terminal.
#[derive(Debug)]
struct Progress {
    enabled: bool,
}

impl Progress {
    fn line(&self, label: &str, total_s: f64, s: &stats::Second) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{label} {}/{total_s:.0}s] {:.0} req/s  p50 {:.1} us  p99 {:.1} us  errors {}",
            s.second + 1,
            s.throughput_rps,
            s.p50_us,
            s.p99_us,
            s.errors
        );
        let _ = err.flush();
    }

    fn end(&self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// Runs `plan` once; `verbose` prints its result line on stderr at once
/// (between the runs of an A/B series).
fn run_one(
    plan: &Plan,
    label: &str,
    progress: &Progress,
    verbose: bool,
) -> anyhow::Result<RunResult> {
    let mode = match plan.load {
        Load::Closed => format!("closed loop, {} connections", plan.connections),
        Load::Open { rate, .. } => {
            format!(
                "open loop, {rate} req/s over {} connections",
                plan.connections
            )
        }
    };
    eprintln!(
        "rayltics-bench: {label} {}: {mode}, pipeline {}, warm-up {:?} + {:?}",
        plan.target, plan.pipeline, plan.warmup, plan.duration
    );
    let total_s = plan.duration.as_secs_f64();
    let result = engine::run(plan, |s| progress.line(label, total_s, s))?;
    progress.end();
    if verbose {
        eprintln!("{}", report::run_line(label, &result));
    }
    if result.requests == 0 {
        eprintln!(
            "rayltics-bench: warning: no response from {} in the measured window (errors: {:?}, during warm-up: {:?})",
            plan.target, result.errors, result.warmup_errors
        );
    }
    Ok(result)
}

fn check_reachable(t: &Target) -> anyhow::Result<()> {
    TcpStream::connect_timeout(&t.addr, Duration::from_secs(2))
        .map(drop)
        .with_context(|| format!("cannot connect to {} ({})", t.url, t.addr))
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.duration.is_zero() {
        bail!("--duration must be above zero");
    }
    if args.pipeline == 0 {
        bail!("--pipeline must be at least 1");
    }
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if let Some(r) = args.rate
        && !(r.is_finite() && r > 0.0)
    {
        bail!("--rate must be a positive number of requests per second");
    }
    if args.scenario.websocket() {
        let target = parse_target(&args.target)?;
        check_reachable(&target)?;
        return ws::run(&args, &target);
    }
    if args.scenario.grpc() {
        let target = parse_target(&args.target)?;
        check_reachable(&target)?;
        return grpc::run(&args, &target);
    }
    let alternate = args.baseline.is_some() || args.baseline_scenario.is_some();
    if alternate && args.pairs == 0 {
        bail!("--pairs must be at least 1");
    }
    if let Some(b) = args.baseline_scenario.filter(|b| b.scripted()) {
        bail!(
            "--baseline-scenario {} is not supported (healthz or get): make it the --scenario",
            b.name()
        );
    }
    if args.scenario.scripted() && args.baseline.is_some() && args.baseline_scenario.is_none() {
        bail!(
            "--scenario {} sets up its data on the target only: give the baseline a --baseline-scenario",
            args.scenario.name()
        );
    }
    match (args.scenario, &args.scenario_file) {
        (Scenario::Mixed, None) => bail!("--scenario mixed needs a --scenario-file"),
        (s, Some(_)) if s != Scenario::Mixed => {
            bail!("--scenario-file goes with --scenario mixed")
        }
        _ => {}
    }
    args.catalog.check()?;
    let target = parse_target(&args.target)?;
    let baseline_target = args.baseline.as_deref().map(parse_target).transpose()?;
    check_reachable(&target)?;
    if let Some(b) = &baseline_target {
        check_reachable(b)?;
    }
    // The B side of an A/B series: another server, another workload, or both.
    let baseline = alternate.then(|| {
        (
            baseline_target.clone().unwrap_or_else(|| target.clone()),
            args.baseline_scenario.unwrap_or(args.scenario),
        )
    });
    let baseline_name = args.baseline_name.clone().unwrap_or_else(|| {
        match (&args.baseline, args.baseline_scenario) {
            (None, Some(s)) => s.name().to_string(),
            _ => "baseline".to_string(),
        }
    });
    let api = setup::Api::new(target.addr, &target.authority);
    let prepared = prepare(&args, &api, &target.authority)?;
    let sale = prepared.as_ref().and_then(|p| p.sale.clone());
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
    let load = match args.rate {
        Some(rate) => Load::Open {
            rate,
            arrival: args.arrival,
            seed: args.seed,
        },
        None => Load::Closed,
    };
    let plan_for = |t: &Target, scenario: Scenario| {
        let request = match (scenario, &prepared) {
            (Scenario::Healthz, _) => Requests::Fixed(http1::encode_get(&t.authority, "/healthz")),
            (Scenario::Get, _) => Requests::Fixed(http1::encode_get(&t.authority, &t.path)),
            (_, Some(p)) => Requests::Script(p.workload.clone()),
            (_, None) => unreachable!("scripted plans follow their setup"),
        };
        Plan {
            target: t.url.clone(),
            addr: t.addr,
            request,
            load,
            connections: args.connections,
            pipeline: args.pipeline,
            warmup: args.warmup,
            duration: args.duration,
            timeout: args.timeout,
            spin: args.spin,
            threads,
            cpus: cpus.clone(),
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (started_at, stamp) = report::utc_stamps(now);
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/bench-results").join(&stamp));
    let progress = Progress {
        enabled: !args.quiet && std::io::stderr().is_terminal(),
    };

    let mut runs = Vec::new();
    let mut slo_search = None;
    let comparison = match (&baseline, args.slo.clone()) {
        (None, Some(slo)) => {
            if !(args.step_factor.is_finite() && args.step_factor > 1.0) {
                bail!("--step-factor must be above 1");
            }
            if args.step_duration.is_zero() {
                bail!("--step-duration must be above zero");
            }
            let opts = slo::Options {
                start_rate: args.rate.unwrap_or(1.0),
                factor: args.step_factor,
                max_grow_steps: args.max_steps,
                bisect_steps: args.search_steps,
            };
            let template = plan_for(&target, args.scenario);
            let found = slo::search(&slo, opts, |n, rate| {
                if n > 1 {
                    std::thread::sleep(args.pause);
                }
                let plan = Plan {
                    load: Load::Open {
                        rate,
                        arrival: args.arrival,
                        seed: args.seed,
                    },
                    duration: args.step_duration,
                    ..template.clone()
                };
                let name = format!("{}@{rate}rps", args.target_name);
                let result = run_one(&plan, &format!("step {n}: {name}"), &progress, true)?;
                runs.push(Run {
                    name,
                    role: "step",
                    pair: None,
                    result: result.clone(),
                });
                Ok(result)
            })?;
            slo_search = Some(found);
            None
        }
        (None, None) => {
            let result = run_one(
                &plan_for(&target, args.scenario),
                &args.target_name,
                &progress,
                false,
            )?;
            runs.push(Run {
                name: args.target_name.clone(),
                role: "target",
                pair: None,
                result,
            });
            None
        }
        (Some((bt, bs)), _) => {
            let (pa, pb) = (plan_for(&target, args.scenario), plan_for(bt, *bs));
            for pair in 1..=args.pairs {
                for (plan, name, role) in [
                    (&pa, &args.target_name, "target"),
                    (&pb, &baseline_name, "baseline"),
                ] {
                    if !runs.is_empty() {
                        std::thread::sleep(args.pause);
                    }
                    let label = format!("{name}#{pair}");
                    let result = run_one(plan, &label, &progress, true)?;
                    runs.push(Run {
                        name: name.clone(),
                        role,
                        pair: Some(pair),
                        result,
                    });
                }
            }
            let pairs: Vec<(&RunResult, &RunResult)> = runs
                .chunks(2)
                .map(|c| (&c[0].result, &c[1].result))
                .collect();
            Some(Comparison::of(&args.target_name, &baseline_name, &pairs))
        }
    };

    // The correctness gate: every purchase of every run against the server's
    // count, read back after the last run.
    let gate = sale.as_ref().map(|sale| {
        let mut p = flash_sale::Purchases::new(sale.users);
        for run in &runs {
            p.add(&run.result.tallies, run.result.script_base);
        }
        match flash_sale::remaining(&api, &sale.sale_id) {
            Ok(remaining) => flash_sale::gate(sale, remaining, &p),
            Err(e) => flash_sale::Gate {
                passed: false,
                detail: format!("cannot read the sale back: {e:#}"),
                ..flash_sale::gate(sale, sale.quantity, &p)
            },
        }
    });
    // The checkout gate: every order answered 201, listed back per user.
    let checkout_gate = prepared.as_ref().filter(|p| p.mix.checks_out()).map(|p| {
        let mut told = vec![checkout::UserOrders::default(); p.users.len()];
        for run in &runs {
            checkout::UserOrders::add(&mut told, &run.result.orders, &run.result.tallies);
        }
        if args.checkout.gate_expect_paid {
            told.iter_mut().for_each(checkout::UserOrders::expect_paid);
        }
        let (email, password) = p.admin.clone();
        checkout::gate(&api, &email, &password, &p.users, &told)
            .unwrap_or_else(|e| checkout::unreadable(&e))
    });

    if let Some(path) = &args.checkout.order_times {
        let n = checkout::write_order_times(path, runs.iter().flat_map(|r| &r.result.orders))?;
        eprintln!("{n} order times written to {}", path.display());
    }

    let duration_s = if args.slo.is_some() {
        args.step_duration.as_secs_f64()
    } else {
        args.duration.as_secs_f64()
    };
    let config = ConfigOut {
        seed: (args.rate.is_some() || prepared.is_some()).then_some(args.seed),
        baseline: baseline.as_ref().map(|(b, _)| b.url.clone()),
        baseline_name: baseline.as_ref().map(|_| baseline_name.clone()),
        baseline_scenario: args.baseline_scenario.map(|s| s.name().to_string()),
        pairs: baseline.as_ref().map(|_| args.pairs),
        flash_sale: sale.clone(),
        mix: prepared.as_ref().map(|p| p.mix.clone()),
        catalog: prepared.as_ref().and_then(|p| p.catalog.clone()),
        users: prepared.as_ref().map(|p| p.users.len()).filter(|n| *n > 0),
        decline_every: prepared
            .as_ref()
            .filter(|p| p.mix.checks_out())
            .map(|_| args.checkout.decline_every),
        setup_s: prepared.as_ref().map(|p| p.setup_s),
        ..args.config_out(&target, threads, cpus, duration_s)
    };
    let doc = Document {
        comparison,
        slo_search,
        gate,
        checkout_gate,
        ..Document::new(started_at, config, runs)
    };
    report::write(&out_dir, &doc)?;
    print!("{}", report::stdout_summary(&doc, &out_dir));
    let mut failed = Vec::new();
    if let Some(g) = doc.gate.as_ref().filter(|g| !g.passed) {
        failed.push(format!(
            "the flash-sale correctness gate FAILED: {}",
            g.detail
        ));
    }
    if let Some(g) = doc.checkout_gate.as_ref().filter(|g| !g.passed) {
        failed.push(format!(
            "the checkout correctness gate FAILED: {}",
            g.detail
        ));
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

/// What a scripted scenario set up on the target before its runs.
#[derive(Debug)]
struct Prepared {
    mix: workload::Mix,
    workload: Arc<workload::Workload>,
    catalog: Option<catalog::Catalog>,
    sale: Option<flash_sale::Sale>,
    users: Vec<setup::User>,
    /// The admin's email and password (the checkout gate logs in again).
    admin: (String, String),
    setup_s: f64,
}

/// Sets up what the scenario needs over the API (not measured): logs the
/// admin in, creates the catalog (browse, checkout), registers the users
/// (checkout, flash-sale) and creates the sale (flash-sale). `None` for
/// healthz and get.
fn prepare(args: &RunArgs, api: &setup::Api, host: &str) -> anyhow::Result<Option<Prepared>> {
    let mix = match args.scenario {
        Scenario::Healthz
        | Scenario::Get
        | Scenario::WsIdle
        | Scenario::ChatFanout
        | Scenario::GrpcWhoOwns
        | Scenario::GrpcHealth => {
            return Ok(None);
        }
        Scenario::Browse => workload::Mix::only(true, false, false),
        Scenario::Checkout => workload::Mix::only(false, true, false),
        Scenario::FlashSale => workload::Mix::only(false, false, true),
        Scenario::Mixed => {
            let file = args
                .scenario_file
                .as_deref()
                .context("--scenario mixed needs a --scenario-file")?;
            workload::Mix::load(file)?
        }
    };
    if mix.checks_out() && args.pipeline > 1 {
        bail!("checkouts wait for each answer (an order's id): --pipeline must be 1");
    }
    let started = Instant::now();
    let (Some(email), Some(password)) = (&args.flash.admin_email, &args.flash.admin_password)
    else {
        bail!(
            "--scenario {} needs an admin: --admin-email/--admin-password or RAYLTICS_ADMIN_EMAIL/RAYLTICS_ADMIN_PASSWORD",
            args.scenario.name()
        );
    };
    let admin = setup::login(api, email, password).context("logging the admin in")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let setup_id = format!("{:x}{:x}", now.as_micros(), std::process::id());
    let catalog = if mix.browses() || mix.checks_out() {
        let c = catalog::setup(api, &admin, &args.catalog)?;
        eprintln!(
            "rayltics-bench: catalog {}: {} products in {} categories ({} created, {} reused), Zipf s = {}",
            c.name,
            c.products,
            c.categories.len(),
            c.created,
            c.reused,
            c.zipf_s
        );
        Some(c)
    } else {
        None
    };
    let users = if mix.checks_out() || mix.buys_flash_sale() {
        let n = args.flash.users.map_or(args.connections, |u| u as usize);
        if mix.checks_out() && n < args.connections {
            // Two connections of one user would fill and order one cart.
            bail!("checkouts need a user per connection: --users must be at least --connections");
        }
        setup::register_users(api, &setup_id, n)?
    } else {
        Vec::new()
    };
    let mut sale = if mix.buys_flash_sale() {
        let tokens = users.iter().map(|u| u.token.clone()).collect();
        Some(flash_sale::setup(
            api,
            &args.flash,
            &admin,
            &setup_id,
            tokens,
        )?)
    } else {
        None
    };
    let workload = workload::Workload::new(
        host,
        &mix,
        catalog.as_ref(),
        &users,
        sale.as_ref().map(|s| s.requests(host)),
        args.checkout.decline_every,
        args.seed,
    )?;
    let setup_s = stats::round3(started.elapsed().as_secs_f64());
    if let Some(sale) = &mut sale {
        sale.setup_s = setup_s;
        eprintln!(
            "rayltics-bench: flash sale {} on {} ({} units, {} per user)",
            sale.sale_id, sale.sku, sale.quantity, sale.per_user_limit
        );
    }
    eprintln!(
        "rayltics-bench: {} set up in {setup_s:.1} s ({} users)",
        args.scenario.name(),
        users.len()
    );
    Ok(Some(Prepared {
        mix,
        workload: Arc::new(workload),
        catalog,
        sale,
        users,
        admin: (email.clone(), password.clone()),
        setup_s,
    }))
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Capacity(args) => capacity::run(&args).map(|s| print!("{s}")),
        Command::NullServer { addr } => null_server::serve(addr),
    };
    if let Err(e) = result {
        eprintln!("rayltics-bench: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "rayltics-bench",
            "run",
            "--target",
            "http://127.0.0.1:1",
            "--cpus",
            "1,3",
            "--rate",
            "1000",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not a run")
        };
        assert_eq!(args.cpus, Some(CpuList(vec![1, 3])));
        assert_eq!(args.rate, Some(1000.0));
        let cli = Cli::try_parse_from([
            "rayltics-bench",
            "run",
            "--target",
            "http://127.0.0.1:1",
            "--scenario",
            "flash-sale",
            "--baseline-scenario",
            "healthz",
            "--gate-stock",
            "299",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not a run")
        };
        assert_eq!(args.scenario, Scenario::FlashSale);
        assert_eq!(args.scenario.name(), "flash-sale");
        assert_eq!(args.baseline_scenario, Some(Scenario::Healthz));
        assert_eq!(args.flash.gate_stock, Some(299));
        assert_eq!(args.flash.sale_quantity, 100_000_000);
        let cli = Cli::try_parse_from([
            "rayltics-bench",
            "run",
            "--target",
            "http://127.0.0.1:1",
            "--scenario",
            "mixed",
            "--scenario-file",
            "bench/scenarios/shop.toml",
            "--products",
            "500",
            "--zipf-s",
            "1.2",
            "--decline-every",
            "3",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not a run")
        };
        assert_eq!(args.scenario.name(), "mixed");
        assert!(args.scenario.scripted() && !Scenario::Get.scripted());
        assert_eq!((args.catalog.products, args.catalog.categories), (500, 4));
        assert_eq!(args.catalog.zipf_s, 1.2);
        assert_eq!(args.checkout.decline_every, 3);
        assert!(!args.checkout.gate_expect_paid);
    }

    /// A server answering each connection's requests one at a time, each
    /// after `service`: about 1 / service req/s per connection.
    fn slow_server(service: Duration) -> SocketAddr {
        crate::test_server::server(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            None,
            service,
        )
    }

    #[test]
    fn slo_step_search_end_to_end() {
        // One connection to a 2 ms server: at most 500 req/s. Steps 120, 180,
        // 270, 405 hold a 50 ms p99; 608 cannot (the queue grows by 100+ req/s).
        let addr = slow_server(Duration::from_millis(2));
        let dir = tempfile::tempdir().unwrap();
        let target = format!("http://{addr}");
        let out = dir.path().to_str().unwrap();
        let cli = Cli::try_parse_from([
            "rayltics-bench",
            "run",
            "--target",
            &target,
            "--scenario-name",
            "slow",
            "--connections",
            "1",
            "--spin",
            "0s",
            "--warmup",
            "100ms",
            "--pause",
            "0s",
            "--rate",
            "120",
            "--slo",
            "p99=50ms",
            "--step-duration",
            "1s",
            "--search-steps",
            "2",
            "--quiet",
            "--out",
            out,
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not a run")
        };
        run(*args).unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("result.json")).unwrap())
                .unwrap();
        let search = &doc["slo_search"];
        let steps = search["steps"].as_array().unwrap();
        // The search's mechanics, not the machine's timing: on a quiet
        // machine it grows 120 -> 180 -> 270 -> 405 and breaks near 608;
        // when other tests starve it, a step may break early and the search
        // bisects below it instead, which is just as correct.
        let rate = |s: &serde_json::Value| s["rate"].as_f64().unwrap();
        assert_eq!(rate(&steps[0]), 120.0, "{search}");
        for w in steps.windows(2) {
            if w[0]["phase"] == "grow" && w[1]["phase"] == "grow" {
                assert_eq!(w[0]["held"], true, "grew past a broken step: {search}");
                let grown = rate(&w[0]) * 1.5;
                assert!((rate(&w[1]) - grown).abs() <= 1.0, "{search}");
            }
        }
        assert!(steps.iter().any(|s| s["held"] == false), "{search}");
        assert!(steps.iter().any(|s| s["phase"] == "bisect"), "{search}");
        let first_bad = search["first_bad_rate"].as_f64().unwrap();
        assert!(
            first_bad < 1000.0,
            "a 2 ms server on one connection broke only at {first_bad}"
        );
        if let Some(best) = search["best_rate"].as_f64() {
            assert!(best < first_bad, "{search}");
            let held = steps.iter().filter(|s| s["held"] == true).map(rate);
            assert_eq!(
                held.fold(0.0, f64::max),
                best,
                "best is the highest held step"
            );
        }
        assert_eq!(doc["runs"].as_array().unwrap().len(), steps.len());
        assert_eq!(doc["runs"][0]["role"], "step");
        let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.contains("## SLO search"), "{md}");
        assert!(dir.path().join("latency.svg").exists());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("1"), Ok(CpuList(vec![1])));
        assert_eq!(parse_cpus("0,2-4"), Ok(CpuList(vec![0, 2, 3, 4])));
        assert!(parse_cpus("4-2").is_err());
        assert!(parse_cpus("").is_err());
    }

    #[test]
    fn targets() {
        let t = parse_target("http://127.0.0.1:18080").unwrap();
        assert_eq!(t.authority, "127.0.0.1:18080");
        assert_eq!(t.path, "/");
        assert_eq!(t.addr, "127.0.0.1:18080".parse().unwrap());
        let t = parse_target("http://127.0.0.1:9/x/y").unwrap();
        assert_eq!(t.path, "/x/y");
        let t = parse_target("http://[::1]:8080/").unwrap();
        assert_eq!(t.addr, "[::1]:8080".parse().unwrap());
        let t = parse_target("http://127.0.0.1/").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert!(parse_target("https://x:1").is_err());
    }
}
