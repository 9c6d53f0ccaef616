//! The tokio sidecar: a small tokio runtime inside the node for the crates
//! that need a tokio reactor (tonic today; sqlx, redis, mongodb later).
//!
//! It serves gRPC on `grpc_addr`: `grpc.health.v1.Health` (tonic-health),
//! server reflection (v1 and v1alpha), `rayltics.node.v1.NodeService` and
//! `rayltics.events.v1.EventLog`, whose calls go into the shards through
//! [`ShardInboxes`]. Shards reach it
//! through [`SidecarHandle`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

use rayltics_proto::events::v1::event_log_server::{EventLog, EventLogServer};
use rayltics_proto::events::v1::{ReadRequest, ReadResponse};
use rayltics_proto::node::v1::node_service_server::{NodeService, NodeServiceServer};
use rayltics_proto::node::v1::{WhoOwnsRequest, WhoOwnsResponse};

use crate::bridge::{ShardCall, ShardInboxes, SidecarCall, SidecarHandle};

/// The chat archive in MongoDB, connected on first use.
#[derive(Debug)]
struct ChatArchiveClient {
    config: Option<rayltics_workers::ChatPersisterConfig>,
    client: tokio::sync::OnceCell<rayltics_workers::ChatArchive>,
}

impl ChatArchiveClient {
    async fn history(
        &self,
        room: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<rayltics_commerce::model::ChatMessageRec>, String> {
        let Some(config) = &self.config else {
            return Err("no chat archive is configured".into());
        };
        let archive = self
            .client
            .get_or_try_init(|| rayltics_workers::ChatArchive::connect(config))
            .await
            .map_err(|e| e.to_string())?;
        archive
            .history(room, Some(before), limit)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Largest key the gRPC node service accepts, bytes.
const MAX_KEY_BYTES: usize = 1024;

/// A running sidecar.
#[derive(Debug)]
pub struct Sidecar {
    /// The bound gRPC address (resolved when `grpc_addr` had port 0).
    pub grpc_addr: SocketAddr,
    handle: SidecarHandle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sidecar {
    /// Starts the sidecar thread, binds gRPC and returns once it serves.
    /// With `archive`, chat history older than the shards keep is read from
    /// MongoDB.
    pub fn start(
        grpc_addr: SocketAddr,
        shards: ShardInboxes,
        archive: Option<rayltics_workers::ChatPersisterConfig>,
    ) -> anyhow::Result<Self> {
        let (call_tx, call_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sidecar".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("sidecar runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(run(grpc_addr, shards, archive, call_rx, stop_rx, ready_tx));
            })?;
        let bound = ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the sidecar thread died during start-up"))??;
        Ok(Self {
            grpc_addr: bound,
            handle: SidecarHandle::new(call_tx),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// A handle for shards.
    pub fn handle(&self) -> SidecarHandle {
        self.handle.clone()
    }

    /// Stops serving gRPC (in-flight calls finish) and joins the thread.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(
    addr: SocketAddr,
    shards: ShardInboxes,
    archive: Option<rayltics_workers::ChatPersisterConfig>,
    mut calls: mpsc::UnboundedReceiver<SidecarCall>,
    stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<anyhow::Result<SocketAddr>>,
) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!("cannot bind grpc_addr {addr}: {e}")));
            return;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<NodeServiceServer<NodeApi>>().await;
    health.set_serving::<EventLogServer<EventLogApi>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(rayltics_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) =
        match (reflection().build_v1(), reflection().build_v1alpha()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                let _ = ready.send(Err(anyhow::anyhow!("grpc reflection: {e}")));
                return;
            }
        };
    let events = EventLogServer::new(EventLogApi {
        shards: shards.clone(),
    });
    let node = NodeServiceServer::new(NodeApi {
        shards,
        next: AtomicUsize::new(0),
    });

    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(node)
        .add_service(events)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async {
                let _ = stop.await;
            },
        );
    let _ = ready.send(Ok(bound));
    tracing::info!(addr = %bound, "grpc serving (health, reflection, rayltics.node.v1, rayltics.events.v1)");

    let archive = std::sync::Arc::new(ChatArchiveClient {
        config: archive,
        client: tokio::sync::OnceCell::new(),
    });
    let calls_loop = async {
        while let Some(call) = calls.recv().await {
            match call {
                SidecarCall::Echo { reply, .. } => {
                    let _ = reply.send(std::time::Instant::now());
                }
                SidecarCall::ChatHistory {
                    room,
                    before,
                    limit,
                    reply,
                } => {
                    let archive = archive.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(archive.history(&room, before, limit).await);
                    });
                }
            }
        }
    };
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                tracing::error!(error = %e, "grpc server failed");
            }
        }
        () = calls_loop => {}
    }
    health.set_not_serving::<NodeServiceServer<NodeApi>>().await;
}

/// `rayltics.node.v1.NodeService`, answered by the shards.
#[derive(Debug)]
struct NodeApi {
    shards: ShardInboxes,
    next: AtomicUsize,
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn who_owns(
        &self,
        request: Request<WhoOwnsRequest>,
    ) -> Result<Response<WhoOwnsResponse>, Status> {
        let key = request.into_inner().key;
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Status::invalid_argument(format!(
                "key must be 1..={MAX_KEY_BYTES} bytes"
            )));
        }
        // Any shard can take the call; it routes to the owner over the mesh.
        let entry = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len().max(1);
        let (reply, rx) = oneshot::channel();
        if !self.shards.send(entry, ShardCall::WhoOwns { key, reply }) {
            return Err(Status::unavailable("the node is shutting down"));
        }
        let (owner, answered_by, count) = rx
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        Ok(Response::new(WhoOwnsResponse {
            owner_shard: owner as u32,
            answered_by: answered_by as u32,
            shard_count: count as u32,
        }))
    }
}

/// `rayltics.events.v1.EventLog`: each shard answers for its own log.
#[derive(Debug)]
struct EventLogApi {
    shards: ShardInboxes,
}

#[tonic::async_trait]
impl EventLog for EventLogApi {
    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadResponse>, Status> {
        let r = request.into_inner();
        let count = self.shards.len();
        let shard = usize::try_from(r.shard).unwrap_or(usize::MAX);
        if shard >= count {
            return Err(Status::invalid_argument(format!(
                "shard must be below the shard count {count}"
            )));
        }
        let max = match r.max_events {
            0 => 100,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        if max > crate::events::MAX_READ {
            return Err(Status::invalid_argument(format!(
                "max_events must be at most {}",
                crate::events::MAX_READ
            )));
        }
        let (reply, rx) = oneshot::channel();
        let call = ShardCall::ReadEvents {
            after: r.after_offset,
            max,
            reply,
        };
        if !self.shards.send(shard, call) {
            return Err(Status::unavailable("the node is shutting down"));
        }
        let page = rx
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        Ok(Response::new(ReadResponse {
            events: page.events,
            last_offset: page.last_offset,
            first_offset: page.first_offset,
            shard_count: u32::try_from(count).unwrap_or(u32::MAX),
        }))
    }
}
