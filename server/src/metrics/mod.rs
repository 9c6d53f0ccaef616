//! Prometheus metrics: one node-wide registry, per-shard label `shard`.
//!
//! Hot-path handles (counter + histogram per route and status) are resolved
//! once per shard and cached in the shard's own map ([`ShardMetrics`]), so a
//! request costs a local lookup and a few uncontended atomic adds. Mesh
//! counters live in the shards crate as atomics and are copied in at scrape.
//! `store`: the commerce store's families (journal, orders, sales, tokens).
//! `relay`: the outbox relay to Kafka (published, errors, backlog, latency).

mod relay;
mod store;

pub use relay::{RelayMetrics, ShardRelayMetrics};
pub use store::{ShardStoreGauges, StoreMetrics};

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use rayltics_shards::{MeshStats, ShardMeshStats};

/// Latency buckets, seconds: 25 us .. 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Node-wide metric families. Shared by every shard (`Arc`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    open_connections: IntGaugeVec,
    rejected_connections: IntCounterVec,
    open_websockets: IntGaugeVec,
    slow_consumers: IntCounterVec,
    mesh: IntCounterVec,
    mesh_source: Mutex<Option<MeshStats>>,
    /// The commerce store's families.
    pub store: StoreMetrics,
    /// The outbox relay's families.
    pub relay: RelayMetrics,
    /// The workers' families (`rayltics_worker_*`).
    pub workers: Arc<rayltics_workers::WorkerMetrics>,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Arc<Self> {
        let registry = Registry::new_custom(Some("rayltics".into()), None).expect("valid prefix");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route and status.",
            ),
            &["shard", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from a complete request to its encoded response, by route and status.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["shard", "route", "status"],
        )
        .expect("valid metric");
        let open_connections = IntGaugeVec::new(
            Opts::new("http_open_connections", "Open HTTP connections."),
            &["shard"],
        )
        .expect("valid metric");
        let rejected_connections = IntCounterVec::new(
            Opts::new(
                "http_rejected_connections_total",
                "Connections closed at accept because the shard was at its limit.",
            ),
            &["shard"],
        )
        .expect("valid metric");
        let open_websockets = IntGaugeVec::new(
            Opts::new("websocket_open_connections", "Open WebSocket connections."),
            &["shard"],
        )
        .expect("valid metric");
        let slow_consumers = IntCounterVec::new(
            Opts::new(
                "websocket_slow_consumers_total",
                "WebSocket connections closed with 1008 because their send queue was full.",
            ),
            &["shard"],
        )
        .expect("valid metric");
        let mesh = IntCounterVec::new(
            Opts::new("mesh_events_total", "Cross-shard mesh events, by kind."),
            &["shard", "kind"],
        )
        .expect("valid metric");
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(open_connections.clone()),
            Box::new(rejected_connections.clone()),
            Box::new(open_websockets.clone()),
            Box::new(slow_consumers.clone()),
            Box::new(mesh.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        let store = StoreMetrics::register(&registry);
        let relay = RelayMetrics::register(&registry);
        let workers = Arc::new(rayltics_workers::WorkerMetrics::new());
        workers.register(&registry).expect("unique metric");
        Arc::new(Self {
            store,
            relay,
            workers,
            registry,
            http_requests,
            http_duration,
            open_connections,
            rejected_connections,
            open_websockets,
            slow_consumers,
            mesh,
            mesh_source: Mutex::new(None),
        })
    }

    /// Lets scrapes read the mesh counters.
    pub fn attach_mesh(&self, stats: MeshStats) {
        *self.mesh_source.lock().unwrap_or_else(|e| e.into_inner()) = Some(stats);
    }

    /// The text exposition (`text/plain; version=0.0.4`).
    pub fn render(&self) -> Vec<u8> {
        self.sync_mesh();
        self.store.sync();
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    fn sync_mesh(&self) {
        let guard = self.mesh_source.lock().unwrap_or_else(|e| e.into_inner());
        let Some(stats) = guard.as_ref() else { return };
        for (shard, s) in stats.iter().enumerate() {
            let shard = shard.to_string();
            for (kind, counter) in [
                ("sent", &s.sent),
                ("received", &s.received),
                ("doorbell", &s.doorbells_rung),
                ("park", &s.parks),
                ("ring_full", &s.ring_full),
            ] {
                let c = self.mesh.with_label_values(&[shard.as_str(), kind]);
                let now = ShardMeshStats::get(counter);
                let seen = c.get();
                if now > seen {
                    c.inc_by(now - seen);
                }
            }
        }
    }

    /// The handles one shard uses.
    pub fn for_shard(self: &Arc<Self>, shard: usize) -> ShardMetrics {
        let label = shard.to_string();
        ShardMetrics {
            open_connections: self.open_connections.with_label_values(&[label.as_str()]),
            rejected_connections: self
                .rejected_connections
                .with_label_values(&[label.as_str()]),
            open_websockets: self.open_websockets.with_label_values(&[label.as_str()]),
            slow_consumers: self.slow_consumers.with_label_values(&[label.as_str()]),
            store: self.store.for_shard(&label, self.relay.backlog(shard)),
            label,
            node: self.clone(),
            routes: RefCell::new(HashMap::new()),
        }
    }
}

/// (route pattern, status code).
type RouteKey = (&'static str, u16);

/// One shard's metric handles. Owned by that shard (`!Sync` cache).
#[derive(Debug)]
pub struct ShardMetrics {
    label: String,
    node: Arc<Metrics>,
    routes: RefCell<HashMap<RouteKey, (IntCounter, Histogram)>>,
    /// Open connections on this shard.
    pub open_connections: IntGauge,
    /// Connections refused at the per-shard limit.
    pub rejected_connections: IntCounter,
    /// Open WebSocket connections on this shard.
    pub open_websockets: IntGauge,
    /// Slow WebSocket consumers cut off on this shard.
    pub slow_consumers: IntCounter,
    /// Store gauges of this shard.
    pub store: ShardStoreGauges,
}

impl ShardMetrics {
    /// Records one answered request.
    pub fn observe(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.record(route, status, Some(elapsed));
    }

    /// Counts a request the edge answered itself (no handler ran, so there
    /// is no latency to record).
    pub fn count_edge(&self, status: u16) {
        self.record("edge", status, None);
    }

    fn record(&self, route: &'static str, status: u16, elapsed: Option<Duration>) {
        let mut routes = self.routes.borrow_mut();
        let (count, hist) = routes.entry((route, status)).or_insert_with(|| {
            let status = status.to_string();
            let labels = [self.label.as_str(), route, status.as_str()];
            (
                self.node.http_requests.with_label_values(&labels),
                self.node.http_duration.with_label_values(&labels),
            )
        });
        count.inc();
        if let Some(elapsed) = elapsed {
            hist.observe(elapsed.as_secs_f64());
        }
    }

    /// The node-wide registry (for `/metrics`).
    pub fn node(&self) -> &Arc<Metrics> {
        &self.node
    }
}
