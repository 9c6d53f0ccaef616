//! What shards ask each other over the mesh: one request enum, one response
//! enum, handled by [`ShardState`] on the owning shard.

use std::rc::Rc;

use rayltics_shards::{Service, ShardId};

/// Requests between shards.
#[derive(Debug)]
pub enum ShardRequest {
    /// "Who are you?" for a key this shard owns (ownership probe).
    WhoOwns {
        /// The key.
        key: String,
    },
    /// An empty request/reply (mesh latency probe, bench).
    Ping,
}

/// Responses between shards.
#[derive(Debug)]
pub enum ShardResponse {
    /// Answer to [`ShardRequest::WhoOwns`].
    Owner {
        /// The shard that handled the request.
        answered_by: ShardId,
        /// Whether it owns the key by `shard_for`.
        owns: bool,
    },
    /// Answer to [`ShardRequest::Ping`].
    Pong,
}

/// A shard's own state. Owned by exactly one shard; never leaves its thread.
#[derive(Debug)]
pub struct ShardState {
    /// This shard's id.
    pub id: ShardId,
    /// Shards on the node.
    pub shard_count: usize,
}

impl Service for ShardState {
    type Request = ShardRequest;
    type Response = ShardResponse;

    async fn handle(self: Rc<Self>, req: ShardRequest) -> ShardResponse {
        match req {
            ShardRequest::WhoOwns { key } => ShardResponse::Owner {
                answered_by: self.id,
                owns: rayltics_shards::shard_for(key.as_bytes(), self.shard_count) == self.id,
            },
            ShardRequest::Ping => ShardResponse::Pong,
        }
    }
}

/// The mesh router of the node's shard service.
pub type ShardRouter = rayltics_shards::Router<ShardState>;
/// What travels on the node's mesh rings.
pub type ShardEnvelope = rayltics_shards::router::Envelope<ShardRequest, ShardResponse>;
