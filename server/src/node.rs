//! Starting and stopping a node: listeners, mesh, sidecar, shard threads.
//!
//! Start order: data dir -> HTTP listeners (bound before anything runs, so
//! port 0 resolves once and every shard shares it) -> mesh -> sidecar (gRPC)
//! -> shards -> Kafka relay (when configured) -> workers (role `workers`,
//! with Kafka brokers). Stop order is the reverse: readiness off -> relay
//! stops (its last published mark still lands) -> shards stop accepting and
//! drain -> workers stop -> sidecar stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use socket2::{Domain, Socket, Type};
use tokio::sync::watch;

use rayltics_shards::{Mesh, MeshOptions, RuntimeOptions};

use crate::bridge::ShardInboxes;
use crate::commerce::CommerceShared;
use crate::config::Config;
use crate::http::NodeShared;
use crate::metrics::Metrics;
use crate::relay::{KafkaHealth, KafkaStatus, Relay, ShardOutbox};
use crate::service::ShardEnvelope;
use crate::shard::{self, ShardContext, ShardInit};
use crate::sidecar::Sidecar;
use crate::workers::{Feed, Workers};

/// A started node.
#[derive(Debug)]
pub struct RunningNode {
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Shard threads.
    pub shards: usize,
    threads: Vec<JoinHandle<()>>,
    sidecar: Option<Sidecar>,
    relay: Option<Relay>,
    workers: Option<Workers>,
    kafka: KafkaHealth,
    stop: watch::Sender<bool>,
    shared: Arc<NodeShared>,
}

/// Starts a node as configured.
pub fn start(config: &Config) -> anyhow::Result<RunningNode> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let shards = config.shard_count();
    check_shard_count(&config.data_dir, shards)?;
    // Before any shard opens its store: recovery trims the event log too.
    // Events wait in the outbox for their reader: the relay, or on the
    // embedded default the email sender.
    let workers_config = config.workers_config();
    let embedded_mail = config.runs_role("workers")
        && !config.kafka.enabled()
        && workers_config.email.enabled
        && workers_config.kafka_brokers.is_empty();
    rayltics_commerce::state::set_hold_unpublished_events(config.kafka.enabled() || embedded_mail);
    rayltics_commerce::state::set_room_messages_retained(config.realtime.room_messages_retained);

    let listeners = bind_reuseport(config.http_addr, shards)
        .with_context(|| format!("cannot bind http_addr {}", config.http_addr))?;
    let http_addr = listeners[0].local_addr()?;

    let mesh_options = MeshOptions {
        ring_capacity: config.runtime.mesh_ring_capacity,
        spin_us: config.runtime.mesh_spin_us,
    };
    let endpoints = Mesh::build::<ShardEnvelope>(shards, mesh_options)?;
    let metrics = Metrics::new();
    metrics.attach_mesh(endpoints[0].stats().clone());

    let (inboxes, inbox_rxs) = ShardInboxes::new(shards);
    let outboxes: Vec<ShardOutbox> = (0..shards)
        .map(|s| ShardOutbox::new(inboxes.clone(), s))
        .collect();
    let worker_outboxes = outboxes.clone();
    let kafka = if config.kafka.enabled() {
        KafkaHealth::connecting((0..shards).map(|s| metrics.relay.backlog(s)).collect())
    } else {
        KafkaHealth::disabled()
    };
    let relay_metrics = metrics.relay.clone();
    let worker_metrics = metrics.workers.clone();
    let archive = (!workers_config.chat.mongo_url.is_empty()).then(|| workers_config.chat.clone());
    let mongo_history = archive.is_some();
    let sidecar = Sidecar::start(config.grpc_addr, inboxes, archive)?;
    let grpc_addr = sidecar.grpc_addr;

    let commerce = Arc::new(CommerceShared::new(config)?);
    let shared = Arc::new(NodeShared {
        draining: AtomicBool::new(false),
        storage: crate::http::StorageHealth::new(config.storage.name()),
        kafka: kafka.clone(),
    });
    let ctx = Arc::new(ShardContext {
        limits: config.http_limits(),
        max_connections: config.http.max_connections_per_shard,
        drain_timeout: Duration::from_millis(config.shutdown.drain_timeout_ms),
        metrics,
        node: shared.clone(),
        sidecar: sidecar.handle(),
        commerce,
        realtime: Arc::new(config.realtime.settings()),
        kafka: kafka.clone(),
        mongo_history,
    });
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = watch::channel(false);
    let inits: Vec<ShardInit> = endpoints
        .into_iter()
        .zip(listeners)
        .zip(inbox_rxs)
        .map(|((endpoint, listener), inbox)| ShardInit {
            endpoint,
            listener,
            stop: stop_rx.clone(),
            inbox,
            ready: ready_tx.clone(),
        })
        .collect();
    let runtime = RuntimeOptions {
        driver: config.runtime.driver.parse().map_err(anyhow::Error::msg)?,
        cores: if config.runtime.pin_cores {
            RuntimeOptions::available_cores()
        } else {
            Vec::new()
        },
        thread_prefix: "shard".into(),
    };
    let threads = rayltics_shards::spawn_shards(&runtime, inits, move |id, init| {
        shard::run(id, init, ctx.clone())
    })
    .context("cannot start shard threads")?;
    drop(ready_tx);
    let mut node = RunningNode {
        http_addr,
        grpc_addr,
        shards,
        threads,
        sidecar: Some(sidecar),
        relay: None,
        workers: None,
        kafka: kafka.clone(),
        stop,
        shared,
    };
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                node.stop_now();
                anyhow::bail!(e);
            }
            Err(_) => {
                node.stop_now();
                anyhow::bail!("a shard thread ended during start-up");
            }
        }
    }
    if config.kafka.enabled() {
        let topics: Vec<String> = crate::relay::TOPICS.iter().map(|t| t.to_string()).collect();
        match Relay::start(&config.kafka, &topics, outboxes, &relay_metrics, kafka) {
            Ok(relay) => node.relay = Some(relay),
            Err(e) => {
                node.stop_now();
                return Err(e);
            }
        }
    }
    let feed = Feed::for_config(&workers_config, || worker_outboxes);
    if let (true, Some(feed)) = (config.runs_role("workers"), feed) {
        match Workers::start(workers_config, worker_metrics, feed) {
            Ok(workers) => node.workers = Some(workers),
            Err(e) => {
                node.stop_now();
                return Err(e.context("cannot start the workers"));
            }
        }
    }
    Ok(node)
}

impl RunningNode {
    /// Drains and stops, in reverse start order. Returns when every
    /// component has stopped (at most about the drain deadline).
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    /// The Kafka relay's state (`Disabled` without `[kafka] brokers`).
    pub fn kafka_state(&self) -> KafkaStatus {
        self.kafka.kafka_state()
    }

    fn stop_now(&mut self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        if let Some(relay) = self.relay.take() {
            relay.stop();
            tracing::info!("kafka relay stopped");
        }
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a shard thread panicked while stopping");
            }
        }
        tracing::info!("shards stopped");
        if let Some(workers) = self.workers.take() {
            workers.stop();
            tracing::info!("workers stopped");
        }
        if let Some(sidecar) = self.sidecar.take() {
            sidecar.stop();
        }
        tracing::info!("sidecar stopped");
    }
}

/// File in the data directory that records the shard count its journals
/// were written with.
const SHARD_COUNT_FILE: &str = "shard-count";

/// Keys are placed by `shard_for(key, shards)` and every shard owns its own
/// journal, so a data directory must always be opened with the shard count
/// it was written with: another count would re-home keys away from their
/// state. Records the count on first start; refuses a different one.
fn check_shard_count(data_dir: &std::path::Path, shards: usize) -> anyhow::Result<()> {
    let path = data_dir.join(SHARD_COUNT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let recorded: usize = text
                .trim()
                .parse()
                .with_context(|| format!("{} does not hold a shard count", path.display()))?;
            if recorded != shards {
                anyhow::bail!(
                    "data_dir {} was written by a node with {recorded} shards; start it with \
                     --shards {recorded} (changing the shard count of a data directory is not \
                     supported)",
                    data_dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = data_dir.join(format!("{SHARD_COUNT_FILE}.tmp"));
            std::fs::write(&tmp, format!("{shards}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .and_then(|()| std::fs::File::open(data_dir)?.sync_all())
                .with_context(|| format!("cannot record the shard count in {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Binds `count` listeners on one address with SO_REUSEPORT: the first
/// resolves port 0, the rest join the same port. The kernel spreads new
/// connections across them by address hash.
fn bind_reuseport(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(bound), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&bound.into())?;
        socket.listen(4096)?;
        let listener: std::net::TcpListener = socket.into();
        bound = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}
