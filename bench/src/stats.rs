//! Counters and latency summaries, and the result of one run as it appears in
//! the JSON report (field names are part of schema version 1).

use hdrhistogram::Histogram;
use serde::Serialize;

/// Histograms record nanoseconds, 3 significant digits, up to one hour.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Which kind of error a failure is counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Connect,
    Timeout,
    Io,
    Parse,
}

/// Errors by kind. Each counts requests, except `connect` (connection
/// attempts). A 4xx/5xx answer is a completed response *and* an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Errors {
    pub(crate) connect: u64,
    pub(crate) timeout: u64,
    pub(crate) status_5xx: u64,
    pub(crate) status_4xx: u64,
    pub(crate) io: u64,
    pub(crate) parse: u64,
}

impl Errors {
    pub(crate) fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.timeout += o.timeout;
        self.status_5xx += o.status_5xx;
        self.status_4xx += o.status_4xx;
        self.io += o.io;
        self.parse += o.parse;
    }

    pub(crate) fn total(&self) -> u64 {
        self.connect + self.timeout + self.status_5xx + self.status_4xx + self.io + self.parse
    }

    pub(crate) fn count(&mut self, kind: Failure, n: u64) {
        match kind {
            Failure::Connect => self.connect += n,
            Failure::Timeout => self.timeout += n,
            Failure::Io => self.io += n,
            Failure::Parse => self.parse += n,
        }
    }
}

/// Answers to purchases, orders and payments that are expected outcomes,
/// not errors (JSON `outcomes`). `created`, `paid` and `payment_failed`
/// also count as `ok`; the refusals count as neither `ok` nor an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Outcomes {
    /// 2xx to a flash-sale purchase or an order: an order created (201).
    pub(crate) created: u64,
    /// 409 `sold_out`.
    pub(crate) sold_out: u64,
    /// 403 `limit_exceeded`.
    pub(crate) limit_exceeded: u64,
    /// 409 `out_of_stock` to an order (nothing reserved).
    pub(crate) out_of_stock: u64,
    /// 200 to a payment: the order is `paid`.
    pub(crate) paid: u64,
    /// 200 to a payment with the declined card: `payment_failed`.
    pub(crate) payment_failed: u64,
}

impl Outcomes {
    pub(crate) fn add(&mut self, o: &Outcomes) {
        self.created += o.created;
        self.sold_out += o.sold_out;
        self.limit_exceeded += o.limit_exceeded;
        self.out_of_stock += o.out_of_stock;
        self.paid += o.paid;
        self.payment_failed += o.payment_failed;
    }

    pub(crate) fn count(&mut self, o: Outcome) {
        match o {
            Outcome::Created => self.created += 1,
            Outcome::SoldOut => self.sold_out += 1,
            Outcome::LimitExceeded => self.limit_exceeded += 1,
            Outcome::OutOfStock => self.out_of_stock += 1,
            Outcome::Paid => self.paid += 1,
            Outcome::PaymentFailed => self.payment_failed += 1,
        }
    }
}

/// One expected answer to a purchase, an order or a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Created,
    SoldOut,
    LimitExceeded,
    OutOfStock,
    Paid,
    PaymentFailed,
}

impl Outcome {
    /// A refusal the scenario expects (not `ok`, not an error).
    pub(crate) fn is_refusal(self) -> bool {
        matches!(self, Self::SoldOut | Self::LimitExceeded | Self::OutOfStock)
    }
}

impl Outcome {
    /// Classifies an answer to a flash-sale purchase from its status and the first bytes of its body
    /// (problem+json: the `code` also ends the `type` URI); `None` for
    /// anything else (an error, or a 2xx-3xx of another kind).
    pub(crate) fn of(status: u16, body: &[u8]) -> Option<Self> {
        let has = |code: &[u8]| body.windows(code.len()).any(|w| w == code);
        match status {
            200..=299 => Some(Self::Created),
            409 if has(b"sold_out\"") => Some(Self::SoldOut),
            403 if has(b"limit_exceeded\"") => Some(Self::LimitExceeded),
            _ => None,
        }
    }
}

/// One connection's purchases over a whole run (warm-up, measured window
/// and the drain after it): what the correctness gate adds up per user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Purchase requests handed to the socket.
    pub(crate) sent: u64,
    /// Of them, answered (any status).
    pub(crate) answered: u64,
    pub(crate) outcomes: Outcomes,
}

/// What happened in one interval (a second, the warm-up, the whole run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Responses received (any status).
    pub(crate) completed: u64,
    /// Responses with a 1xx-3xx status.
    pub(crate) ok: u64,
    /// Requests written.
    pub(crate) sent: u64,
    /// Open loop: requests written more than 1 ms after their intended time.
    pub(crate) late_over_1ms: u64,
    /// Open loop: requests whose connection was busy at their intended time.
    pub(crate) queued: u64,
    pub(crate) errors: Errors,
    /// Purchases, orders, payments: expected outcomes (refusals are not in
    /// `errors`).
    pub(crate) outcomes: Outcomes,
}

impl Counters {
    pub(crate) fn add(&mut self, o: &Counters) {
        self.completed += o.completed;
        self.ok += o.ok;
        self.sent += o.sent;
        self.late_over_1ms += o.late_over_1ms;
        self.queued += o.queued;
        self.errors.add(&o.errors);
        self.outcomes.add(&o.outcomes);
    }
}

/// One kind of request of a scripted scenario (a search, a product page, a
/// cart line, an order, a payment, a purchase), over the measured window.
#[derive(Debug, Clone)]
pub(crate) struct StepStats {
    pub(crate) hist: Histogram<u64>,
    pub(crate) requests: u64,
    pub(crate) ok: u64,
    pub(crate) refused: u64,
    pub(crate) errors: u64,
}

impl StepStats {
    pub(crate) fn new() -> Self {
        Self {
            hist: new_histogram(),
            requests: 0,
            ok: 0,
            refused: 0,
            errors: 0,
        }
    }

    /// An answer with `status`, classified as `outcome` by its scenario.
    pub(crate) fn record(&mut self, status: u16, outcome: Option<Outcome>, latency_ns: u64) {
        self.hist.saturating_record(latency_ns.max(1));
        self.requests += 1;
        match outcome {
            Some(o) if o.is_refusal() => self.refused += 1,
            _ if status >= 400 => self.errors += 1,
            _ => self.ok += 1,
        }
    }

    pub(crate) fn add(&mut self, o: &StepStats) {
        self.hist.add(&o.hist).expect("same histogram bounds");
        self.requests += o.requests;
        self.ok += o.ok;
        self.refused += o.refused;
        self.errors += o.errors;
    }

    pub(crate) fn reset(&mut self) {
        self.hist.reset();
        self.requests = 0;
        self.ok = 0;
        self.refused = 0;
        self.errors = 0;
    }

    pub(crate) fn result(&self, step: &'static str) -> StepResult {
        StepResult {
            step,
            requests: self.requests,
            ok: self.ok,
            refused: self.refused,
            errors: self.errors,
            latency: Latency::of(&self.hist),
        }
    }
}

/// One kind of request over the measured window (JSON `steps[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct StepResult {
    /// `search`, `product`, `cart`, `order`, `pay` or `purchase`.
    pub(crate) step: &'static str,
    /// Answers received.
    pub(crate) requests: u64,
    /// 1xx-3xx answers.
    pub(crate) ok: u64,
    /// Expected refusals (`sold_out`, `limit_exceeded`, `out_of_stock`).
    pub(crate) refused: u64,
    /// Other 4xx/5xx answers.
    pub(crate) errors: u64,
    pub(crate) latency: Latency,
}

/// Latency percentiles in microseconds (fractional: recorded in ns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) min_us: f64,
    pub(crate) mean_us: f64,
    pub(crate) stdev_us: f64,
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p99_9_us: f64,
    pub(crate) p99_99_us: f64,
    pub(crate) max_us: f64,
}

fn us(ns: u64) -> f64 {
    round3(ns as f64 / 1000.0)
}

/// Rounds to 3 decimals so the JSON stays readable.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Latency {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min_us: us(h.min()),
            mean_us: round3(h.mean() / 1000.0),
            stdev_us: round3(h.stdev() / 1000.0),
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p99_9_us: us(h.value_at_quantile(0.999)),
            p99_99_us: us(h.value_at_quantile(0.9999)),
            max_us: us(h.max()),
        }
    }
}

/// One second of the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Second {
    /// Seconds since the end of the warm-up (0 = first measured second).
    pub(crate) second: u32,
    /// Length of the interval (the last one may be shorter than 1 s).
    pub(crate) interval_s: f64,
    pub(crate) count: u64,
    pub(crate) throughput_rps: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
    pub(crate) errors: u64,
}

/// The generator's own cost on one worker thread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ThreadUsage {
    pub(crate) thread: usize,
    /// CPU the thread was pinned to (`null`: not pinned).
    pub(crate) cpu: Option<usize>,
    pub(crate) connections: usize,
    /// CPU time (user + system) over the measured window / its wall time:
    /// 1.0 = one core fully busy.
    pub(crate) cpu_fraction: f64,
    /// Of `cpu_fraction`, the share spent in empty busy polls (`--spin`).
    pub(crate) spin_fraction: f64,
    /// `cpu_fraction - spin_fraction`: the work the thread did. Near 1.0
    /// the generator is the bottleneck.
    pub(crate) busy_fraction: f64,
    pub(crate) user_s: f64,
    pub(crate) system_s: f64,
}

/// Open loop: how far behind schedule requests were written, and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct SendLag {
    /// Requests written more than 1 ms after their intended time, for any
    /// reason (a busy connection or a late generator).
    pub(crate) late_over_1ms: u64,
    /// `late_over_1ms / sent`.
    pub(crate) late_fraction: f64,
    /// Requests that found their connection busy (answer outstanding) at
    /// their intended time and queued behind it: the target's slowness.
    pub(crate) queued: u64,
    /// The generator's own lateness: how long after its intended time each
    /// request was taken up by its worker (timer wake-up, a busy loop).
    pub(crate) generator_p50_us: f64,
    pub(crate) generator_p99_us: f64,
    pub(crate) generator_max_us: f64,
}

/// The result of one run against one target (schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RunResult {
    pub(crate) target: String,
    /// Measured window, seconds.
    pub(crate) duration_s: f64,
    /// Responses received in the window.
    pub(crate) requests: u64,
    /// Of them, with a 1xx-3xx status.
    pub(crate) ok: u64,
    /// Requests written in the window.
    pub(crate) sent: u64,
    /// `requests / duration_s`.
    pub(crate) throughput_rps: f64,
    /// Open loop: requests offered per second.
    pub(crate) offered_rps: Option<f64>,
    pub(crate) latency: Latency,
    pub(crate) errors: Errors,
    /// Scripted scenarios (all but healthz and get): expected answers in the
    /// window (201 orders, 409 `sold_out`, 403 `limit_exceeded`, 409
    /// `out_of_stock`, payments), refusals not counted in `errors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) outcomes: Option<Outcomes>,
    /// Scripted scenarios: each kind of request's count, outcome and latency.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) steps: Vec<StepResult>,
    /// Errors during the warm-up (not in `errors`).
    pub(crate) warmup_errors: Errors,
    /// Requests started in the window and still unanswered at its end.
    pub(crate) unanswered_at_end: u64,
    /// Open loop only.
    pub(crate) send_lag: Option<SendLag>,
    pub(crate) generator: Vec<ThreadUsage>,
    /// Sum of the threads' `cpu_fraction`.
    pub(crate) generator_cpu_total: f64,
    /// Sum of the threads' `busy_fraction`.
    pub(crate) generator_busy_total: f64,
    pub(crate) timeline: Vec<Second>,
    /// Scripted scenarios: each connection's flash-sale purchases over the
    /// whole run, in connection order (for the gate; not in the JSON).
    #[serde(skip)]
    pub(crate) tallies: Vec<Tally>,
    /// Script index of connection 0 (see `engine::run`): connection `i`
    /// of the run bought as user `(script_base + i) % users`.
    #[serde(skip)]
    pub(crate) script_base: usize,
    /// Scripted scenarios: each connection's checkouts over the whole run,
    /// in connection order (for the checkout gate; not in the JSON).
    #[serde(skip)]
    pub(crate) orders: Vec<crate::checkout::CheckoutLog>,
    /// WebSocket scenarios (`ws-idle`, `chat-fanout`): connections, the
    /// node's memory and CPU, deliveries, errors by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) websocket: Option<Box<crate::ws::WsRun>>,
    /// gRPC scenarios (`grpc-who-owns`, `grpc-health`): the method, statuses
    /// by code, transport errors, timeouts and the answers' check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) grpc: Option<Box<crate::grpc::GrpcRun>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_reported_in_microseconds() {
        let mut h = new_histogram();
        for v in [10_000u64, 20_000, 30_000, 40_000] {
            h.record(v).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 4);
        assert_eq!(l.min_us, 10.0);
        assert!((l.max_us - 40.0).abs() < 0.05, "{}", l.max_us);
        assert!((l.p50_us - 20.0).abs() < 0.05);
        assert_eq!(Latency::of(&new_histogram()), Latency::default());
    }

    #[test]
    fn errors_add_up() {
        let mut e = Errors::default();
        e.count(Failure::Io, 2);
        e.count(Failure::Connect, 1);
        let mut t = Errors {
            status_5xx: 3,
            ..Errors::default()
        };
        t.add(&e);
        assert_eq!(t.total(), 6);
    }

    #[test]
    fn purchase_outcomes() {
        let sold_out =
            br#"{"type":"https://rayltics.dev/problems/sold_out","title":"Conflict","status":409"#;
        assert_eq!(Outcome::of(201, b""), Some(Outcome::Created));
        assert_eq!(Outcome::of(409, sold_out), Some(Outcome::SoldOut));
        assert_eq!(
            Outcome::of(403, br#"{"code":"limit_exceeded"}"#),
            Some(Outcome::LimitExceeded)
        );
        assert_eq!(Outcome::of(409, br#"{"code":"sale_not_active"}"#), None);
        assert_eq!(Outcome::of(403, sold_out), None);
        assert_eq!(Outcome::of(500, b""), None);
    }
}
