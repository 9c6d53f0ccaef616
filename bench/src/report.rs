//! The results of an invocation: JSON (schema version 1), a Markdown summary
//! and a few lines for the terminal, plus the A/B pair ratios.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::checkout::CheckoutGate;
use crate::engine::Arrival;
use crate::flash_sale::{Gate, Sale};
use crate::slo::SearchResult;
use crate::stats::{Outcomes, RunResult};
use crate::workload::Mix;

/// Bumped whenever a field changes meaning or disappears.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// The whole JSON document.
#[derive(Debug, Serialize)]
pub(crate) struct Document {
    pub(crate) schema_version: u32,
    pub(crate) tool: &'static str,
    pub(crate) tool_version: &'static str,
    /// UTC, RFC 3339.
    pub(crate) started_at: String,
    pub(crate) host: Host,
    pub(crate) config: ConfigOut,
    pub(crate) runs: Vec<Run>,
    /// Present when a baseline was given.
    pub(crate) comparison: Option<Comparison>,
    /// Present with `--slo`: every step and the highest rate that held (the
    /// steps' runs have the role `step`).
    pub(crate) slo_search: Option<SearchResult>,
    /// Flash sale: the correctness gate over every run (`passed: false`
    /// makes the invocation fail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) gate: Option<Gate>,
    /// Checkout (and mixed with checkouts): every order answered 201 listed
    /// back with the status the client expects (`passed: false` makes the
    /// invocation fail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) checkout_gate: Option<CheckoutGate>,
    /// WebSocket scenarios: every connection alive at the end (ws-idle);
    /// every member got every acked message of its room once, in order
    /// (chat-fanout). `passed: false` makes the invocation fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ws_check: Option<crate::ws::WsCheck>,
}

impl Document {
    /// A document of `runs` with no comparison, search or gate yet.
    pub(crate) fn new(started_at: String, config: ConfigOut, runs: Vec<Run>) -> Self {
        Document {
            schema_version: SCHEMA_VERSION,
            tool: "rayltics-bench",
            tool_version: env!("CARGO_PKG_VERSION"),
            started_at,
            host: Host::probe(),
            config,
            runs,
            comparison: None,
            slo_search: None,
            gate: None,
            checkout_gate: None,
            ws_check: None,
        }
    }

    /// The document of one run against the target.
    pub(crate) fn single(started_at: String, config: ConfigOut, result: RunResult) -> Self {
        let run = Run {
            name: config.target_name.clone(),
            role: "target",
            pair: None,
            result,
        };
        Self::new(started_at, config, vec![run])
    }
}

/// Now as the report's `started_at`, and the results directory: `out`, or
/// `target/bench-results/<UTC stamp>`.
pub(crate) fn started_now(out: Option<&Path>) -> (String, std::path::PathBuf) {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (started_at, stamp) = utc_stamps(unix);
    let dir = out.map_or_else(
        || std::path::PathBuf::from("target/bench-results").join(&stamp),
        Path::to_path_buf,
    );
    (started_at, dir)
}

#[derive(Debug, Serialize)]
pub(crate) struct Host {
    pub(crate) hostname: String,
    pub(crate) kernel: String,
    pub(crate) cpus_online: usize,
}

impl Host {
    pub(crate) fn probe() -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Self {
            hostname: read("/proc/sys/kernel/hostname"),
            kernel: read("/proc/sys/kernel/osrelease"),
            cpus_online: crate::engine::sys::cpus_online(),
        }
    }
}

/// The workload, as run against every target.
#[derive(Debug, Serialize)]
pub(crate) struct ConfigOut {
    pub(crate) scenario: String,
    /// Cores the server under test ran on (`--server-cores`, default 1).
    pub(crate) server_cores: u32,
    /// `closed` or `open`.
    pub(crate) mode: &'static str,
    pub(crate) connections: usize,
    /// Open loop: requests/s offered.
    pub(crate) rate: Option<f64>,
    pub(crate) arrival: Option<Arrival>,
    pub(crate) seed: Option<u64>,
    pub(crate) pipeline: usize,
    pub(crate) warmup_s: f64,
    pub(crate) duration_s: f64,
    pub(crate) timeout_s: f64,
    pub(crate) threads: usize,
    pub(crate) cpus: Vec<usize>,
    pub(crate) target: String,
    pub(crate) target_name: String,
    pub(crate) baseline: Option<String>,
    pub(crate) baseline_name: Option<String>,
    /// `--baseline-scenario`: the baseline's workload when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) baseline_scenario: Option<String>,
    pub(crate) pairs: Option<usize>,
    /// Flash sale: the sale bought from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) flash_sale: Option<Sale>,
    /// Scripted scenarios: the weights of browse, checkout and flash-sale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mix: Option<Mix>,
    /// Browse and checkout: the catalog read and bought from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) catalog: Option<Catalog>,
    /// Users registered at setup (checkout, flash-sale).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) users: Option<usize>,
    /// Checkout: every Nth checkout of a connection pays with the declined card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) decline_every: Option<u64>,
    /// Scripted scenarios: setup time, seconds (not measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) setup_s: Option<f64>,
    /// WebSocket scenarios: rooms, members, senders, the node's pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) websocket: Option<crate::ws::WsConfig>,
    /// gRPC scenarios: the method, in-flight streams per channel, the key
    /// set and where the reference owners were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) grpc: Option<crate::grpc::GrpcConfig>,
}

/// One run: against the target (`A`) or the baseline (`B`).
#[derive(Debug, Serialize)]
pub(crate) struct Run {
    pub(crate) name: String,
    /// `target` or `baseline`.
    pub(crate) role: &'static str,
    /// 1-based pair number when alternating with a baseline.
    pub(crate) pair: Option<usize>,
    #[serde(flatten)]
    pub(crate) result: RunResult,
}

/// A over B. Throughput above 1 means A is faster; latency ratios below 1
/// mean A answers sooner.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Ratios {
    pub(crate) throughput_ratio: f64,
    pub(crate) p50_ratio: f64,
    pub(crate) p99_ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct PairRatios {
    pub(crate) pair: usize,
    #[serde(flatten)]
    pub(crate) ratios: Ratios,
}

#[derive(Debug, Serialize)]
pub(crate) struct Comparison {
    pub(crate) a: String,
    pub(crate) b: String,
    pub(crate) pairs: Vec<PairRatios>,
    /// Median of each ratio over the pairs.
    pub(crate) median: Ratios,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        return f64::NAN;
    }
    (a / b * 10_000.0).round() / 10_000.0
}

/// Median (mean of the middle two for an even count); NaN when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

impl Comparison {
    /// Ratios of each `(a, b)` pair of runs and their medians.
    pub(crate) fn of(a: &str, b: &str, pairs: &[(&RunResult, &RunResult)]) -> Self {
        let pairs: Vec<PairRatios> = pairs
            .iter()
            .enumerate()
            .map(|(i, (a, b))| PairRatios {
                pair: i + 1,
                ratios: Ratios {
                    throughput_ratio: ratio(a.throughput_rps, b.throughput_rps),
                    p50_ratio: ratio(a.latency.p50_us, b.latency.p50_us),
                    p99_ratio: ratio(a.latency.p99_us, b.latency.p99_us),
                },
            })
            .collect();
        let med = |f: fn(&Ratios) -> f64| {
            let m = median(&pairs.iter().map(|p| f(&p.ratios)).collect::<Vec<_>>());
            (m * 10_000.0).round() / 10_000.0
        };
        let median = Ratios {
            throughput_ratio: med(|r| r.throughput_ratio),
            p50_ratio: med(|r| r.p50_ratio),
            p99_ratio: med(|r| r.p99_ratio),
        };
        Self {
            a: a.to_string(),
            b: b.to_string(),
            pairs,
            median,
        }
    }
}

/// UTC date-time of a Unix time, as (`2026-01-31T12:00:00Z`, `20260131T120000Z`).
pub(crate) fn utc_stamps(unix_secs: u64) -> (String, String) {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        format!("{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
    )
}

fn fmt_rate(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn fmt_us(x: f64) -> String {
    if x >= 10_000.0 {
        format!("{:.1} ms", x / 1000.0)
    } else if x >= 100.0 {
        format!("{x:.0} us")
    } else {
        format!("{x:.1} us")
    }
}

/// One line for a run, for the terminal.
pub(crate) fn run_line(name: &str, r: &RunResult) -> String {
    let mut line = format!(
        "{name:<12} {:>11} req/s  p50 {:>9}  p90 {:>9}  p99 {:>9}  p99.9 {:>9}  max {:>9}  errors {}  gen cpu {:.2} (busy {:.2})",
        fmt_rate(r.throughput_rps),
        fmt_us(r.latency.p50_us),
        fmt_us(r.latency.p90_us),
        fmt_us(r.latency.p99_us),
        fmt_us(r.latency.p99_9_us),
        fmt_us(r.latency.max_us),
        r.errors.total(),
        r.generator_cpu_total,
        r.generator_busy_total,
    );
    if let Some(lag) = &r.send_lag {
        let _ = write!(
            line,
            "  late>1ms {} (queued {}, gen lag p99 {})",
            lag.late_over_1ms,
            lag.queued,
            fmt_us(lag.generator_p99_us)
        );
    }
    if let Some(o) = r.outcomes.as_ref().filter(|o| **o != Outcomes::default()) {
        let _ = write!(line, "  201 {}", o.created);
        for (name, n) in [
            ("sold_out", o.sold_out),
            ("limit_exceeded", o.limit_exceeded),
            ("out_of_stock", o.out_of_stock),
            ("paid", o.paid),
            ("payment_failed", o.payment_failed),
        ] {
            if n > 0 {
                let _ = write!(line, " {name} {n}");
            }
        }
    }
    line
}

/// One line per step of a scripted run, for the terminal.
fn step_lines(r: &RunResult) -> String {
    let mut s = String::new();
    for st in &r.steps {
        let _ = writeln!(
            s,
            "  {:<9} {:>9} req  p50 {:>9}  p99 {:>9}  max {:>9}  refused {}  errors {}",
            st.step,
            st.requests,
            fmt_us(st.latency.p50_us),
            fmt_us(st.latency.p99_us),
            fmt_us(st.latency.max_us),
            st.refused,
            st.errors
        );
    }
    s
}

/// The gate's verdict in one line.
pub(crate) fn gate_line(g: &Gate) -> String {
    format!(
        "flash-sale gate: {}: {}",
        if g.passed { "PASSED" } else { "FAILED" },
        g.detail
    )
}

/// The checkout gate's verdict in one line.
pub(crate) fn checkout_gate_line(g: &CheckoutGate) -> String {
    format!(
        "checkout gate: {}: {}",
        if g.passed { "PASSED" } else { "FAILED" },
        g.detail
    )
}

/// The concise summary printed on stdout.
pub(crate) fn stdout_summary(doc: &Document, out_dir: &Path) -> String {
    let mut s = String::new();
    for run in &doc.runs {
        let name = match run.pair {
            Some(p) => format!("{}#{p}", run.name),
            None => run.name.clone(),
        };
        let _ = writeln!(s, "{}", run_line(&name, &run.result));
        s.push_str(&step_lines(&run.result));
        if let Some(w) = &run.result.websocket {
            s.push_str(&crate::ws::stdout_lines(w, &run.result));
        }
        if let Some(g) = &run.result.grpc {
            s.push_str(&crate::grpc::stdout_line(g));
        }
    }
    if let Some(c) = &doc.comparison {
        for p in &c.pairs {
            let _ = writeln!(
                s,
                "pair {}: {a}/{b} throughput x{:.3}  p50 x{:.3}  p99 x{:.3}",
                p.pair,
                p.ratios.throughput_ratio,
                p.ratios.p50_ratio,
                p.ratios.p99_ratio,
                a = c.a,
                b = c.b,
            );
        }
        let _ = writeln!(
            s,
            "median {a}/{b}: throughput x{:.3}  p50 x{:.3}  p99 x{:.3}",
            c.median.throughput_ratio,
            c.median.p50_ratio,
            c.median.p99_ratio,
            a = c.a,
            b = c.b,
        );
    }
    if let Some(search) = &doc.slo_search {
        let _ = writeln!(s, "{}", slo_line(search));
    }
    if let Some(g) = &doc.gate {
        let _ = writeln!(s, "{}", gate_line(g));
    }
    if let Some(g) = &doc.checkout_gate {
        let _ = writeln!(s, "{}", checkout_gate_line(g));
    }
    if let Some(c) = &doc.ws_check {
        let _ = writeln!(s, "{}", crate::ws::check_line(c));
    }
    let _ = writeln!(s, "results: {}", out_dir.display());
    s
}

/// The outcome of an SLO search in one line.
pub(crate) fn slo_line(r: &SearchResult) -> String {
    let best = r
        .best_rate
        .map_or("none (the first steps broke it)".to_string(), |b| {
            format!("{} req/s", fmt_rate(b))
        });
    let bad = r.first_bad_rate.map_or(
        "none within the steps: the ceiling is higher".to_string(),
        |b| format!("{} req/s", fmt_rate(b)),
    );
    format!(
        "SLO {} <= {}: highest rate that held {best}; lowest that broke it {bad}",
        r.slo.metric,
        fmt_us(r.slo.threshold_us)
    )
}

/// The Markdown summary written next to the JSON.
pub(crate) fn markdown(doc: &Document) -> String {
    let c = &doc.config;
    let mut s = String::new();
    let _ = writeln!(s, "# rayltics-bench: {}\n", c.scenario);
    let _ = writeln!(
        s,
        "{} on {} ({} CPUs, Linux {}), rayltics-bench {}.\n",
        doc.started_at, doc.host.hostname, doc.host.cpus_online, doc.host.kernel, doc.tool_version
    );
    let load = match (c.mode, c.rate) {
        (_, _) if c.websocket.is_some() => match c.rate {
            Some(rate) => format!(
                "open loop, {} messages/s offered (uniform) over {} WebSocket connections; req/s below = deliveries/s",
                fmt_rate(rate),
                c.connections
            ),
            None => format!(
                "{} idle WebSocket connections; latency below = connect -> 101",
                c.connections
            ),
        },
        ("open", Some(rate)) => format!(
            "open loop, {} req/s offered ({:?} arrivals, seed {}) over {} connections",
            fmt_rate(rate),
            c.arrival.unwrap_or(Arrival::Uniform),
            c.seed.unwrap_or(0),
            c.connections
        ),
        _ => format!("closed loop, {} connections", c.connections),
    };
    let _ = writeln!(
        s,
        "- Load: {load}, pipeline {}; warm-up {} s, measured {} s, timeout {} s",
        c.pipeline, c.warmup_s, c.duration_s, c.timeout_s
    );
    let cpus = if c.cpus.is_empty() {
        "not pinned".to_string()
    } else {
        format!("CPUs {:?}", c.cpus)
    };
    let _ = writeln!(s, "- Generator: {} thread(s), {cpus}", c.threads);
    let _ = writeln!(
        s,
        "- Target `{}`: {} ({} server core(s))",
        c.target_name, c.target, c.server_cores
    );
    if let (Some(b), Some(n)) = (&c.baseline, &c.baseline_name) {
        let workload = c
            .baseline_scenario
            .as_ref()
            .map_or(String::new(), |w| format!("scenario `{w}` on "));
        let _ = writeln!(
            s,
            "- Baseline `{n}`: {workload}{b}, alternated A B A B ... over {} pair(s)",
            c.pairs.unwrap_or(0)
        );
    }
    if let Some(m) = &c.mix {
        let file = m
            .file
            .as_ref()
            .map_or(String::new(), |f| format!(" (`{f}`)"));
        let _ = writeln!(
            s,
            "- Mix{file}: browse {}, checkout {}, flash-sale {} (shares of the requests); seed {}",
            m.browse,
            m.checkout,
            m.flash_sale,
            c.seed.unwrap_or(0)
        );
    }
    if let Some(cat) = &c.catalog {
        let _ = writeln!(
            s,
            "- Catalog `{}`: {} products in {} categories ({} created, {} reused); SKU popularity Zipf s = {}; {} % of browse requests are searches",
            cat.name,
            cat.products,
            cat.categories.len(),
            cat.created,
            cat.reused,
            cat.zipf_s,
            cat.search_fraction * 100.0
        );
    }
    if let Some(n) = c.users {
        let decline = match c.decline_every {
            Some(d) if d > 0 => {
                format!("; every {d}th checkout of a connection pays with the declined card")
            }
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "- {n} users registered, connection i as user i % {n}{decline}"
        );
    }
    if let Some(sale) = &c.flash_sale {
        let _ = writeln!(
            s,
            "- Flash sale `{}` on SKU `{}`: {} units, at most {} per user, {} users",
            sale.sale_id, sale.sku, sale.quantity, sale.per_user_limit, sale.users
        );
    }
    if let Some(t) = c.setup_s {
        let _ = writeln!(s, "- Setup (not measured): {t} s");
    }
    let _ = writeln!(
        s,
        "\n| run | req/s | p50 | p90 | p99 | p99.9 | max | errors | late>1ms | gen CPU | gen busy |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &doc.runs {
        let r = &run.result;
        let name = match run.pair {
            Some(p) => format!("{} #{p}", run.name),
            None => run.name.clone(),
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} |",
            fmt_rate(r.throughput_rps),
            fmt_us(r.latency.p50_us),
            fmt_us(r.latency.p90_us),
            fmt_us(r.latency.p99_us),
            fmt_us(r.latency.p99_9_us),
            fmt_us(r.latency.max_us),
            r.errors.total(),
            r.send_lag
                .map_or("-".to_string(), |l| l.late_over_1ms.to_string()),
            r.generator_cpu_total,
            r.generator_busy_total,
        );
    }
    if let Some(cmp) = &doc.comparison {
        let _ = writeln!(
            s,
            "\n## {a} / {b}\n\nThroughput ratio above 1: {a} serves more; latency ratio below 1: {a} answers sooner.\n",
            a = cmp.a,
            b = cmp.b
        );
        let _ = writeln!(s, "| pair | throughput | p50 | p99 |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        for p in &cmp.pairs {
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.3} | {:.3} |",
                p.pair, p.ratios.throughput_ratio, p.ratios.p50_ratio, p.ratios.p99_ratio
            );
        }
        let _ = writeln!(
            s,
            "| **median** | **{:.3}** | **{:.3}** | **{:.3}** |",
            cmp.median.throughput_ratio, cmp.median.p50_ratio, cmp.median.p99_ratio
        );
    }
    if let Some(search) = &doc.slo_search {
        let _ = writeln!(s, "\n## SLO search\n\n{}.\n", slo_line(search));
        let _ = writeln!(
            s,
            "| step | phase | offered req/s | {} | req/s | errors | held |",
            search.slo.metric
        );
        let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---|");
        for st in &search.steps {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                st.step,
                st.phase,
                fmt_rate(st.rate),
                fmt_us(st.value_us),
                fmt_rate(st.throughput_rps),
                st.errors,
                if st.held { "yes" } else { "no" }
            );
        }
    }
    if doc.runs.iter().any(|r| !r.result.steps.is_empty()) {
        let _ = writeln!(
            s,
            "\n## Steps\n\nEach kind of request in the measured window: answers, 1xx-3xx, expected refusals (`sold_out`, `limit_exceeded`, `out_of_stock`), other errors, latency.\n"
        );
        let _ = writeln!(
            s,
            "| run | step | requests | ok | refused | errors | p50 | p90 | p99 | p99.9 | max |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for run in &doc.runs {
            let name = match run.pair {
                Some(p) => format!("{} #{p}", run.name),
                None => run.name.clone(),
            };
            for st in &run.result.steps {
                let l = &st.latency;
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    st.step,
                    st.requests,
                    st.ok,
                    st.refused,
                    st.errors,
                    fmt_us(l.p50_us),
                    fmt_us(l.p90_us),
                    fmt_us(l.p99_us),
                    fmt_us(l.p99_9_us),
                    fmt_us(l.max_us)
                );
            }
        }
    }
    let _ = writeln!(s, "\n## Errors\n");
    let _ = writeln!(
        s,
        "| run | connect | timeout | 5xx | 4xx | io | parse | in flight at end |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for run in &doc.runs {
        let e = &run.result.errors;
        let name = match run.pair {
            Some(p) => format!("{} #{p}", run.name),
            None => run.name.clone(),
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            e.connect,
            e.timeout,
            e.status_5xx,
            e.status_4xx,
            e.io,
            e.parse,
            run.result.unanswered_at_end
        );
    }
    if let Some(g) = &doc.gate {
        let _ = writeln!(s, "\n## Flash sale\n\n**{}**\n", gate_line(g));
        let _ = writeln!(
            s,
            "Sold (quantity - remaining, read back): {} of {}; 201s over every run (warm-ups and drains included): {}; gate stock {}; most per user {} (limit {}); unanswered {}.\n",
            g.sold,
            g.quantity,
            g.successful_201s,
            g.gate_stock,
            g.max_per_user,
            g.per_user_limit,
            g.unanswered
        );
        let _ = writeln!(
            s,
            "Expected answers in each measured window (not errors):\n\n| run | 201 | 409 sold_out | 403 limit_exceeded |\n|---|---:|---:|---:|"
        );
        for run in doc.runs.iter() {
            if let Some(o) = &run.result.outcomes {
                let name = match run.pair {
                    Some(p) => format!("{} #{p}", run.name),
                    None => run.name.clone(),
                };
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {} |",
                    o.created, o.sold_out, o.limit_exceeded
                );
            }
        }
    }
    if let Some(g) = &doc.checkout_gate {
        let _ = writeln!(s, "\n## Checkout\n\n**{}**\n", checkout_gate_line(g));
        let _ = writeln!(
            s,
            "Orders answered 201 over every run (warm-ups and drains included): {}; expected paid {}, payment_failed {}, never paid {}, payment unanswered {}; confirmed by the listing {}, missing {}, wrong status {}; order requests unanswered {}; orders listed {} (of which not checkouts {}, flash-sale purchases answered 201 {}).\n",
            g.orders_created,
            g.expect_paid,
            g.expect_payment_failed,
            g.expect_pending,
            g.expect_unknown,
            g.confirmed,
            g.missing,
            g.wrong_status,
            g.unanswered,
            g.listed,
            g.other_listed,
            g.purchases_created
        );
        let _ = writeln!(
            s,
            "Expected answers in each measured window:\n\n| run | 201 | 409 out_of_stock | paid | payment_failed |\n|---|---:|---:|---:|---:|"
        );
        for run in &doc.runs {
            if let Some(o) = &run.result.outcomes {
                let name = match run.pair {
                    Some(p) => format!("{} #{p}", run.name),
                    None => run.name.clone(),
                };
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {} | {} |",
                    o.created, o.out_of_stock, o.paid, o.payment_failed
                );
            }
        }
    }
    if doc.runs.iter().any(|r| r.result.websocket.is_some()) {
        s.push_str(&crate::ws::markdown(doc));
    }
    if doc.config.grpc.is_some() {
        s.push_str(&crate::grpc::markdown(doc));
    }
    let _ = writeln!(s, "\n## Per second\n");
    for run in &doc.runs {
        let name = match run.pair {
            Some(p) => format!("{} #{p}", run.name),
            None => run.name.clone(),
        };
        let _ = writeln!(
            s,
            "<details><summary>{name}</summary>\n\n| s | req/s | p50 | p99 | max | errors |\n|---:|---:|---:|---:|---:|---:|"
        );
        for sec in &run.result.timeline {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                sec.second,
                fmt_rate(sec.throughput_rps),
                fmt_us(sec.p50_us),
                fmt_us(sec.p99_us),
                fmt_us(sec.max_us),
                sec.errors
            );
        }
        let _ = writeln!(s, "\n</details>\n");
    }
    s
}

/// Writes `result.json`, `summary.md` and the charts (`latency.svg`,
/// `throughput.svg`) into `dir` (created if needed).
pub(crate) fn write(dir: &Path, doc: &Document) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(doc).context("encoding the JSON result")?;
    std::fs::write(dir.join("result.json"), json + "\n")
        .with_context(|| format!("writing {}", dir.join("result.json").display()))?;
    let series: Vec<crate::charts::Series<'_>> = doc
        .runs
        .iter()
        .map(|r| crate::charts::Series {
            label: match r.pair {
                Some(p) => format!("{}#{p}", r.name),
                None => r.name.clone(),
            },
            timeline: &r.result.timeline,
        })
        .collect();
    let charts = crate::charts::write(dir, &doc.config.scenario, &series)?;
    let mut md = markdown(doc);
    if !charts.is_empty() {
        md.push_str("## Charts\n\n");
        for c in &charts {
            if let Some(name) = c.file_name().and_then(|n| n.to_str()) {
                let _ = writeln!(md, "![{name}]({name})\n");
            }
        }
    }
    std::fs::write(dir.join("summary.md"), md)
        .with_context(|| format!("writing {}", dir.join("summary.md").display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn utc() {
        assert_eq!(utc_stamps(0).0, "1970-01-01T00:00:00Z");
        assert_eq!(utc_stamps(951_782_400).1, "20000229T000000Z");
        assert_eq!(utc_stamps(1_767_225_599).0, "2025-12-31T23:59:59Z");
    }

    #[test]
    fn rates_are_grouped() {
        assert_eq!(fmt_rate(1_234_567.4), "1 234 567");
        assert_eq!(fmt_rate(999.0), "999");
    }
}
