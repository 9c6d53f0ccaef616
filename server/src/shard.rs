//! One shard's life: build its state, join the mesh, accept on the shared
//! port, serve connections, take sidecar calls, drain on stop.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{Either, select};
use tokio::sync::{mpsc, watch};

use rayltics_net::{HttpLimits, Served, Shutdown};
use rayltics_shards::{MeshEndpoint, ShardId};

use crate::bridge::{ShardCall, SidecarHandle};
use crate::commerce::{self, CommerceShared};
use crate::http::{App, NodeShared};
use crate::metrics::Metrics;
use crate::realtime;
use crate::service::{ShardEnvelope, ShardRequest, ShardResponse, ShardRouter, ShardState};

/// What a shard owns from birth; moved into its thread.
#[derive(Debug)]
pub struct ShardInit {
    /// Its end of the mesh.
    pub endpoint: MeshEndpoint<ShardEnvelope>,
    /// Its SO_REUSEPORT listener on the shared HTTP port.
    pub listener: std::net::TcpListener,
    /// Flips to `true` when the node stops.
    pub stop: watch::Receiver<bool>,
    /// Calls from the sidecar.
    pub inbox: mpsc::UnboundedReceiver<ShardCall>,
    /// Reports once the shard has recovered its store and is about to
    /// serve (or why it cannot).
    pub ready: std::sync::mpsc::Sender<Result<ShardId, String>>,
}

/// Node-wide context every shard gets (shared, read-only).
#[derive(Debug)]
pub struct ShardContext {
    /// Edge limits.
    pub limits: HttpLimits,
    /// Per-shard connection cap.
    pub max_connections: usize,
    /// How long a drain may take.
    pub drain_timeout: Duration,
    /// Metric families.
    pub metrics: Arc<Metrics>,
    /// Node-wide flags.
    pub node: Arc<NodeShared>,
    /// The sidecar, for handlers that need a tokio-reactor client.
    pub sidecar: SidecarHandle,
    /// Node-wide commerce context.
    pub commerce: Arc<CommerceShared>,
    /// WebSocket limits and switches.
    pub realtime: Arc<realtime::Settings>,
    /// The Kafka relay's broker view (`kafka_state()`, for `/readyz`).
    pub kafka: crate::relay::KafkaHealth,
    /// Chat history older than a room's retained messages comes from the
    /// archive in MongoDB (through the sidecar).
    pub mongo_history: bool,
}

/// Runs shard `id` until the node stops and its connections have drained.
pub async fn run(id: ShardId, init: ShardInit, ctx: Arc<ShardContext>) {
    let shard_count = init.endpoint.shard_count();
    let ready = init.ready;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        let _ = ready.send(Err(format!("shard {id}: {what}: {e:#}")));
    };
    let archive = ctx.mongo_history.then(|| ctx.sidecar.clone());
    let state = match ctx.commerce.open_shard(id, shard_count, archive) {
        Ok(s) => Rc::new(s),
        Err(e) => return fail("cannot open its store", &e),
    };
    monoio::spawn(state.store.flusher());
    let router = match ShardRouter::start(init.endpoint, state.clone()) {
        Ok(r) => r,
        Err(e) => return fail("cannot join the mesh", &e),
    };
    *state.router.borrow_mut() = Some(router.clone());
    let listener = match monoio::net::TcpListener::from_std(init.listener) {
        Ok(l) => l,
        Err(e) => return fail("cannot adopt the HTTP listener", &e),
    };
    if let Err(e) = commerce::bootstrap_admin(&state).await {
        return fail("cannot create the admin", &e);
    }
    monoio::spawn(commerce::sweep(state.clone()));
    let _ = ready.send(Ok(id));
    let realtime = Rc::new(ctx.realtime.as_ref().clone());
    monoio::spawn(realtime::sweep(state.clone(), realtime.clone()));
    if !realtime.socket.write_coalesce.is_zero() {
        let tick = state.realtime.flush_tick.clone();
        monoio::spawn(tick.run(realtime.socket.write_coalesce));
    }
    let app = Rc::new(App::new(
        router.clone(),
        ctx.metrics.for_shard(id),
        ctx.node.clone(),
        realtime.clone(),
    ));
    ctx.metrics
        .store
        .attach_journal(id, state.store.journal_counters());
    ctx.node.storage.attach(id, state.store.journal_counters());
    monoio::spawn(update_store_gauges(app.clone(), state.clone()));
    let shutdown = Shutdown::new();
    monoio::spawn(watch_stop(init.stop, shutdown.clone()));
    monoio::spawn(serve_sidecar_calls(router.clone(), init.inbox));

    let open = Rc::new(Cell::new(0usize));
    tracing::debug!(shard = id, "accepting");
    loop {
        let accepted = {
            let accept = std::pin::pin!(listener.accept());
            let stop = std::pin::pin!(shutdown.wait());
            match select(accept, stop).await {
                Either::Left((result, _)) => result,
                Either::Right(_) => break,
            }
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(shard = id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= ctx.max_connections {
            app.metrics().rejected_connections.inc();
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.set(open.get() + 1);
        app.metrics().open_connections.inc();
        let (app, ctx, shutdown, open) = (app.clone(), ctx.clone(), shutdown.clone(), open.clone());
        let (state, realtime) = (state.clone(), realtime.clone());
        monoio::spawn(async move {
            let mut stream = stream;
            let served = rayltics_net::serve(&mut stream, &*app, &ctx.limits, &shutdown).await;
            if let Served::Upgraded { payload, leftover } = served {
                // A task of its own: the HTTP connection's state (buffers,
                // parser) is freed now, not held for the socket's lifetime.
                monoio::spawn(async move {
                    app.metrics().open_websockets.inc();
                    realtime::serve_socket(stream, leftover, payload, &state, &realtime, &shutdown)
                        .await;
                    app.metrics().open_websockets.dec();
                    open.set(open.get() - 1);
                    app.metrics().open_connections.dec();
                });
                return;
            }
            open.set(open.get() - 1);
            app.metrics().open_connections.dec();
        });
    }
    drop(listener);
    let deadline = Instant::now() + ctx.drain_timeout;
    while open.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    if open.get() > 0 {
        tracing::warn!(
            shard = id,
            open = open.get(),
            "drain deadline passed; closing connections"
        );
    }
    // The router holds the state and the state the router: break the cycle.
    state.router.borrow_mut().take();
    tracing::debug!(shard = id, "stopped");
}

/// Sets the shard's store gauges from its state once a second.
async fn update_store_gauges(app: Rc<App>, state: Rc<ShardState>) {
    loop {
        let m = app.metrics();
        m.store.update(&state.store.read(), &state.tokens.borrow());
        let cut = state.realtime.slow_consumers.get();
        if cut > m.slow_consumers.get() {
            m.slow_consumers.inc_by(cut - m.slow_consumers.get());
        }
        monoio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn watch_stop(mut stop: watch::Receiver<bool>, shutdown: Shutdown) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    shutdown.trigger();
}

async fn serve_sidecar_calls(router: ShardRouter, mut inbox: mpsc::UnboundedReceiver<ShardCall>) {
    while let Some(call) = inbox.recv().await {
        let router = router.clone();
        monoio::spawn(async move {
            match call {
                ShardCall::WhoOwns { key, reply } => {
                    let owner = router.owner_of(key.as_bytes());
                    if let Ok(ShardResponse::Owner { answered_by, .. }) =
                        router.call(owner, ShardRequest::WhoOwns { key }).await
                    {
                        let _ = reply.send((owner, answered_by, router.shard_count()));
                    }
                }
                ShardCall::ReadOutbox { after, max, reply } => {
                    crate::relay::serve_read(router.local(), after, max, reply).await;
                }
                ShardCall::MarkPublished { upto, reply } => {
                    crate::relay::serve_mark(router.local(), upto, reply).await;
                }
                ShardCall::ReadEvents { after, max, reply } => {
                    let (events, last_offset, first_offset) =
                        router.local().store.read().events_after(after, max);
                    let _ = reply.send(crate::events::LogPage {
                        events: events.into_iter().map(crate::events::to_wire).collect(),
                        last_offset,
                        first_offset,
                    });
                }
            }
        });
    }
}
