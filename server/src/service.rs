//! What shards ask each other over the mesh: one request enum, one response
//! enum, handled by [`ShardState`] on the owning shard.
//!
//! Commerce requests are [`Op`]s: each names the key whose shard must run it
//! (a SKU, a user id, an order or sale id) and is executed there by
//! [`crate::ops::execute`], inline when that shard is this one.

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use rayltics_commerce::auth::{RateLimiter, TokenCache};
use rayltics_commerce::{DomainResult, Store};
use rayltics_shards::{Service, ShardId};

use crate::commerce::CommerceShared;
use crate::ops::{Op, OpReply};
use crate::realtime::{ChatOp, ChatReply, Hub};

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
    /// A commerce operation on state this shard owns.
    Op(Op),
    /// A real-time operation (rooms, deliveries, notifications).
    Chat(ChatOp),
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
    /// Answer to [`ShardRequest::Op`].
    Op(DomainResult<OpReply>),
    /// Answer to [`ShardRequest::Chat`].
    Chat(DomainResult<ChatReply>),
}

/// A shard's own state. Owned by exactly one shard; never leaves its thread.
#[derive(Debug)]
pub struct ShardState {
    /// This shard's id.
    pub id: ShardId,
    /// Shards on the node.
    pub shard_count: usize,
    /// Its commerce state and journal.
    pub store: Store,
    /// Node-wide commerce context (clock, keys, hasher, settings).
    pub shared: Arc<CommerceShared>,
    /// Verified access tokens (this shard's cache).
    pub tokens: RefCell<TokenCache>,
    /// Login attempts per client IP (IPs that connect to this shard).
    pub ip_limits: RefCell<RateLimiter<IpAddr>>,
    /// Login attempts per email (emails this shard owns).
    pub email_limits: RefCell<RateLimiter<String>>,
    /// (user id, idempotency key) of requests still running here.
    pub in_flight: RefCell<HashSet<(String, String)>>,
    /// The mesh router, set once the shard has joined the mesh; taken on
    /// stop (it holds this state: the cycle is broken there).
    pub router: RefCell<Option<ShardRouter>>,
    /// WebSocket connections held here and rooms owned here.
    pub realtime: Hub,
    /// The chat archive in MongoDB (through the sidecar) when configured:
    /// history older than a room's retained messages.
    pub chat_archive: Option<crate::bridge::SidecarHandle>,
}

impl ShardState {
    /// The shard's router. Set before the shard serves anything.
    pub fn router(&self) -> ShardRouter {
        self.router
            .borrow()
            .clone()
            .expect("the router is set before the shard serves requests")
    }
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
            ShardRequest::Op(op) => ShardResponse::Op(crate::ops::execute(&self, op).await),
            ShardRequest::Chat(op) => {
                ShardResponse::Chat(Box::pin(crate::realtime::rooms::execute(&self, op)).await)
            }
        }
    }
}

/// The mesh router of the node's shard service.
pub type ShardRouter = rayltics_shards::Router<ShardState>;
/// What travels on the node's mesh rings.
pub type ShardEnvelope = rayltics_shards::router::Envelope<ShardRequest, ShardResponse>;
