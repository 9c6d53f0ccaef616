//! `run --slo p99=5ms`: the highest open-loop rate that holds a latency SLO.
//!
//! Starting at `--rate`, short open-loop steps (`--step-duration`) multiply
//! the rate by `--step-factor` while the SLO holds; after the first step that
//! breaks it, `--search-steps` bisections between the last good and the first
//! bad rate narrow the answer down. A step holds the SLO when its percentile
//! is at most the threshold, no request failed, and at least 95 % of the
//! offered requests were answered in the window (an overloaded target leaves
//! requests unanswered, whose latency would otherwise not be counted).

use serde::Serialize;

use crate::stats::RunResult;

/// A latency objective: `p99=5ms`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Slo {
    /// As written: `p99`, `p50`, `p90`, `p99.9`, `p99.99`, `max`.
    pub(crate) metric: String,
    pub(crate) threshold_us: f64,
}

/// Parses `p99=5ms` (any duration `parse_duration` reads).
pub(crate) fn parse_slo(s: &str) -> Result<Slo, String> {
    let (metric, limit) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected METRIC=DURATION, e.g. p99=5ms"))?;
    let metric = metric.trim().to_ascii_lowercase();
    if !["p50", "p90", "p99", "p99.9", "p99.99", "max"].contains(&metric.as_str()) {
        return Err(format!(
            "{metric:?}: unknown metric (p50, p90, p99, p99.9, p99.99, max)"
        ));
    }
    let limit = crate::parse_duration(limit)?;
    if limit.is_zero() {
        return Err("the SLO threshold must be above zero".into());
    }
    Ok(Slo {
        metric,
        threshold_us: limit.as_secs_f64() * 1e6,
    })
}

impl Slo {
    /// The step's value of the metric, microseconds.
    pub(crate) fn value_us(&self, r: &RunResult) -> f64 {
        let l = &r.latency;
        match self.metric.as_str() {
            "p50" => l.p50_us,
            "p90" => l.p90_us,
            "p99.9" => l.p99_9_us,
            "p99.99" => l.p99_99_us,
            "max" => l.max_us,
            _ => l.p99_us,
        }
    }

    /// Whether a step at `rate` req/s held the objective (see the module doc).
    pub(crate) fn held(&self, rate: f64, r: &RunResult) -> bool {
        r.requests > 0
            && self.value_us(r) <= self.threshold_us
            && r.errors.total() == 0
            && r.requests as f64 >= 0.95 * rate * r.duration_s
    }
}

/// How the search proceeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Options {
    pub(crate) start_rate: f64,
    pub(crate) factor: f64,
    /// At most this many growing steps.
    pub(crate) max_grow_steps: usize,
    pub(crate) bisect_steps: usize,
}

/// One step of the search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Step {
    pub(crate) step: usize,
    /// `grow` or `bisect`.
    pub(crate) phase: &'static str,
    pub(crate) rate: f64,
    pub(crate) held: bool,
    /// The SLO metric of the step, microseconds.
    pub(crate) value_us: f64,
    pub(crate) throughput_rps: f64,
    pub(crate) errors: u64,
}

/// The outcome (`slo_search` in the JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SearchResult {
    pub(crate) slo: Slo,
    pub(crate) options: Options,
    /// Highest rate that held the SLO (`null`: none did).
    pub(crate) best_rate: Option<f64>,
    /// Lowest rate that broke it (`null`: none did, the ceiling is higher).
    pub(crate) first_bad_rate: Option<f64>,
    pub(crate) steps: Vec<Step>,
}

/// Runs the search; `run_step(rate)` measures one open-loop step.
pub(crate) fn search(
    slo: &Slo,
    opts: Options,
    mut run_step: impl FnMut(usize, f64) -> anyhow::Result<RunResult>,
) -> anyhow::Result<SearchResult> {
    let mut steps = Vec::new();
    let mut measure = |phase: &'static str, rate: f64| -> anyhow::Result<bool> {
        let n = steps.len() + 1;
        let r = run_step(n, rate)?;
        let held = slo.held(rate, &r);
        steps.push(Step {
            step: n,
            phase,
            rate,
            held,
            value_us: slo.value_us(&r),
            throughput_rps: r.throughput_rps,
            errors: r.errors.total(),
        });
        Ok(held)
    };
    let (mut good, mut bad) = (None::<f64>, None::<f64>);
    let mut rate = opts.start_rate.round().max(1.0);
    for _ in 0..opts.max_grow_steps.max(1) {
        if measure("grow", rate)? {
            good = Some(rate);
            rate = (rate * opts.factor).round().max(rate + 1.0);
        } else {
            bad = Some(rate);
            break;
        }
    }
    if let Some(mut hi) = bad {
        let mut lo = good.unwrap_or(0.0);
        for _ in 0..opts.bisect_steps {
            let mid = ((lo + hi) / 2.0).round();
            if mid <= lo || mid >= hi {
                break;
            }
            if measure("bisect", mid)? {
                lo = mid;
                good = Some(mid);
            } else {
                hi = mid;
            }
        }
        bad = Some(hi);
    }
    Ok(SearchResult {
        slo: slo.clone(),
        options: opts,
        best_rate: good,
        first_bad_rate: bad,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Errors, Latency};

    fn result(rate: f64, p99_us: f64) -> RunResult {
        RunResult {
            target: "t".into(),
            duration_s: 1.0,
            requests: rate as u64,
            ok: rate as u64,
            sent: rate as u64,
            throughput_rps: rate,
            offered_rps: Some(rate),
            latency: Latency {
                count: rate as u64,
                p50_us: p99_us / 2.0,
                p99_us,
                ..Latency::default()
            },
            errors: Errors::default(),
            outcomes: None,
            steps: Vec::new(),
            warmup_errors: Errors::default(),
            unanswered_at_end: 0,
            send_lag: None,
            generator: Vec::new(),
            generator_cpu_total: 0.0,
            generator_busy_total: 0.0,
            timeline: Vec::new(),
            tallies: Vec::new(),
            script_base: 0,
            orders: Vec::new(),
            websocket: None,
            grpc: None,
        }
    }

    #[test]
    fn slo_parses() {
        let s = parse_slo("p99=5ms").unwrap();
        assert_eq!(s.metric, "p99");
        assert!((s.threshold_us - 5000.0).abs() < 1e-6);
        assert_eq!(parse_slo("P99.9 = 250us").unwrap().metric, "p99.9");
        assert!(parse_slo("p98=1ms").is_err());
        assert!(parse_slo("p99").is_err());
        assert!(parse_slo("p99=0ms").is_err());
    }

    #[test]
    fn held_needs_latency_no_errors_and_the_answers() {
        let slo = parse_slo("p99=1ms").unwrap();
        assert!(slo.held(1000.0, &result(1000.0, 900.0)));
        assert!(!slo.held(1000.0, &result(1000.0, 1100.0)));
        let mut r = result(1000.0, 900.0);
        r.errors.timeout = 1;
        assert!(!slo.held(1000.0, &r));
        // Only 900 of 1000 offered answered.
        assert!(!slo.held(1000.0, &result(900.0, 900.0)));
    }

    /// A target whose p99 stays at 100 us up to 5 000 req/s and explodes above.
    fn synthetic(_: usize, rate: f64) -> anyhow::Result<RunResult> {
        Ok(result(rate, if rate <= 5000.0 { 100.0 } else { 50_000.0 }))
    }

    #[test]
    fn grows_then_bisects() {
        let slo = parse_slo("p99=1ms").unwrap();
        let opts = Options {
            start_rate: 1000.0,
            factor: 1.5,
            max_grow_steps: 20,
            bisect_steps: 6,
        };
        let r = search(&slo, opts, synthetic).unwrap();
        let rates: Vec<f64> = r.steps.iter().map(|s| s.rate).collect();
        // 1000 1500 2250 3375 5063(bad), then between 3375 and 5063.
        assert_eq!(&rates[..5], &[1000.0, 1500.0, 2250.0, 3375.0, 5063.0]);
        assert_eq!(r.steps[4].phase, "grow");
        assert!(!r.steps[4].held);
        assert_eq!(r.steps[5].phase, "bisect");
        assert_eq!(r.steps[5].rate, 4219.0);
        let best = r.best_rate.unwrap();
        assert!(best <= 5000.0 && best > 4900.0, "{best} {rates:?}");
        assert!(r.first_bad_rate.unwrap() > 5000.0);
        assert_eq!(r.steps.len(), 11);
    }

    #[test]
    fn first_step_failing_bisects_down_from_it() {
        let slo = parse_slo("p99=1ms").unwrap();
        let opts = Options {
            start_rate: 8000.0,
            factor: 1.5,
            max_grow_steps: 20,
            bisect_steps: 3,
        };
        let r = search(&slo, opts, synthetic).unwrap();
        let rates: Vec<f64> = r.steps.iter().map(|s| s.rate).collect();
        assert_eq!(rates, [8000.0, 4000.0, 6000.0, 5000.0]);
        assert_eq!(r.best_rate, Some(5000.0));
        assert_eq!(r.first_bad_rate, Some(6000.0));
    }

    #[test]
    fn never_failing_reports_no_ceiling() {
        let slo = parse_slo("p99=1ms").unwrap();
        let opts = Options {
            start_rate: 100.0,
            factor: 2.0,
            max_grow_steps: 3,
            bisect_steps: 3,
        };
        let r = search(&slo, opts, synthetic).unwrap();
        assert_eq!(r.best_rate, Some(400.0));
        assert_eq!(r.first_bad_rate, None);
        assert_eq!(r.steps.len(), 3);
    }
}
