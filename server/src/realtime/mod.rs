//! Real-time: WebSocket chat rooms and order notifications on the shards
//! (API.md "Real-time", DESIGN.md section 4).
//!
//! # Layout
//! - [`upgrade`]: `GET /ws` (and the conformance echo at `/ws/echo`): the
//!   RFC 6455 handshake and authentication, answered by the HTTP edge with a
//!   `101`, after which the shard's accept loop calls [`serve_socket`].
//! - [`socket`]: one connection: fastwebsockets reads the client's frames,
//!   fragments are reassembled under the size limit, and a writer drains a
//!   bounded send queue (a slow reader is cut off with 1008).
//! - [`frame`]: server frames as bytes, encoded once.
//! - [`coalesce`]: one write tick per shard for sockets of busy rooms.
//! - [`reader`]: client frames (fastwebsockets), the checks it leaves out,
//!   and its read buffer held only while frames arrive.
//! - [`protocol`]: the JSON frames of API.md.
//! - [`session`]: a chat connection's ops (join, leave, send, history,
//!   typing, ping) turned into requests to the rooms' shards.
//! - [`rooms`]: a room on its shard: membership, presence, typing, and
//!   ordering: seq from the archive, journal commit, then fan-out in seq order.
//! - [`hub`]: a shard's registry: its connections, their room subscriptions,
//!   the rooms it owns, and where the users it owns have sockets.
//!
//! # A message's path
//! Client on shard A sends `send` -> A checks it joined the room and asks
//! the room's shard R (`ChatOp::Post`) -> R assigns the next seq, appends
//! `Change::ChatPosted` to its journal, waits for the group commit, encodes
//! the `message` frame once and sends it (`ChatOp::Deliver`) to every shard
//! with members, in seq order -> each shard pushes the same bytes onto its
//! members' send queues -> R answers A, which sends the `ack`.
//!
//! An order's status change is committed on its user's shard, which knows
//! on which shards that user has sockets (`ChatOp::Socket`) and sends them
//! the `notification` frame (`ChatOp::Notify`).

pub mod coalesce;
pub mod frame;
pub mod hub;
pub mod protocol;
pub mod reader;
pub mod rooms;
pub mod session;
pub mod socket;
pub mod upgrade;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rayltics_net::{Shutdown, UpgradePayload};

use crate::service::ShardState;

pub use hub::Hub;
pub use rooms::{ChatOp, ChatReply};

/// Real-time limits and switches (config section `[realtime]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Serve the unauthenticated echo endpoint `/ws/echo` (conformance
    /// testing only).
    pub echo_endpoint: bool,
    /// Limits of each connection.
    pub socket: socket::SocketLimits,
    /// Rooms one connection may be in.
    pub max_rooms_per_connection: usize,
    /// Connections one room may hold.
    pub max_members_per_room: usize,
    /// Client frames per second per connection (sustained).
    pub messages_per_second: u32,
    /// Client frames per connection in a burst.
    pub message_burst: u32,
}

/// What the `101` hands to the socket.
#[derive(Debug)]
pub enum Upgrade {
    /// A chat connection of an authenticated user.
    Chat {
        /// User id.
        user_id: String,
        /// Admin role.
        admin: bool,
    },
    /// The conformance echo.
    Echo,
}

/// Runs an upgraded connection to its end.
pub async fn serve_socket(
    stream: monoio::net::TcpStream,
    leftover: Vec<u8>,
    payload: UpgradePayload,
    state: &Rc<ShardState>,
    settings: &Rc<Settings>,
    shutdown: &Shutdown,
) {
    let Ok(upgrade) = payload.downcast::<Upgrade>() else {
        return;
    };
    match Arc::unwrap_or_clone(upgrade) {
        Upgrade::Echo => {
            let mut limits = settings.socket.clone();
            // Autobahn's section 9 sends messages of up to 16 MiB.
            limits.max_message_bytes = limits.max_message_bytes.max(32 << 20);
            limits.send_queue_bytes = limits.send_queue_bytes.max(64 << 20);
            let outbox = Rc::new(socket::Outbox::new(limits.send_queue_bytes));
            let echo = Echo(outbox.clone());
            socket::run(stream, leftover, outbox, &echo, &limits, None, shutdown).await;
        }
        Upgrade::Chat { user_id, admin } => {
            let outbox = Rc::new(socket::Outbox::new(settings.socket.send_queue_bytes));
            let peer = state.realtime.connect(user_id, admin, outbox.clone());
            let user_shard = state.router().owner_of(peer.user_id.as_bytes());
            let opened = ChatOp::Socket {
                user: peer.user_id.clone(),
                shard: state.id,
                open: true,
            };
            Box::pin(rooms::send(state, user_shard, opened)).await;
            let chat = session::ChatSession {
                state: state.clone(),
                peer,
                settings: settings.clone(),
                bucket: RefCell::new(session::TokenBucket::new(
                    settings.messages_per_second,
                    settings.message_burst,
                )),
                posting: Rc::default(),
            };
            let tick = (!settings.socket.write_coalesce.is_zero())
                .then(|| state.realtime.flush_tick.clone());
            socket::run(
                stream,
                leftover,
                outbox,
                &chat,
                &settings.socket,
                tick,
                shutdown,
            )
            .await;
            Box::pin(chat.close()).await;
        }
    }
}

impl Clone for Upgrade {
    fn clone(&self) -> Self {
        match self {
            Upgrade::Chat { user_id, admin } => Upgrade::Chat {
                user_id: user_id.clone(),
                admin: *admin,
            },
            Upgrade::Echo => Upgrade::Echo,
        }
    }
}

/// The echo endpoint: every message comes back as it came.
struct Echo(Rc<socket::Outbox>);

impl socket::Messages for Echo {
    async fn text(&self, text: &str) {
        let _ = self.0.push(frame::text(text.as_bytes()));
    }

    async fn binary(&self, data: &[u8]) {
        let _ = self
            .0
            .push(frame::encode(fastwebsockets::OpCode::Binary, data));
    }
}

/// Sends `order.updated` with the order's JSON to every socket of its owner.
/// Runs on the owner's shard (where orders live and sockets are counted).
pub async fn notify_order(state: &ShardState, user_id: &str, order_json: &[u8]) {
    let shards = state.realtime.user_shards(user_id);
    if shards.is_empty() {
        return;
    }
    let frame = protocol::order_notification(order_json);
    for shard in shards {
        if shard == state.id {
            state.realtime.deliver_to_user(user_id, &frame);
        } else {
            let op = ChatOp::Notify {
                user: user_id.to_owned(),
                frame: frame.clone(),
            };
            rooms::send(state, shard, op).await;
        }
    }
}

/// The shard's real-time housekeeping: typing states expire, and chat
/// connections that were sent nothing for a ping interval get a ping.
pub async fn sweep(state: Rc<ShardState>, settings: Rc<Settings>) {
    let tick = Duration::from_millis(500);
    let mut since_ping = Duration::ZERO;
    loop {
        monoio::time::sleep(tick).await;
        if state.router.borrow().is_none() {
            return;
        }
        rooms::expire_typing(&state).await;
        since_ping += tick;
        if since_ping >= settings.socket.ping_interval {
            since_ping = Duration::ZERO;
            state.realtime.ping_quiet_connections();
        }
    }
}
