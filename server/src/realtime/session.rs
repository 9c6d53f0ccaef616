//! A chat connection's protocol: each client frame (API.md "Real-time")
//! becomes a request to the room's shard, and its answer a server frame.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use rayltics_commerce::DomainError;

use super::Settings;
use super::hub::Peer;
use super::protocol::{self, ClientOp, OpError};
use super::rooms::{self, ChatOp, ChatReply};
use super::socket::Messages;
use crate::ops::{self, Caller, Op};
use crate::service::ShardState;

/// One authenticated chat connection on its shard.
#[derive(Debug)]
pub struct ChatSession {
    pub(super) state: Rc<ShardState>,
    pub(super) peer: Rc<Peer>,
    pub(super) settings: Rc<Settings>,
    pub(super) bucket: RefCell<TokenBucket>,
    /// `send`s posted and not yet answered by their room.
    pub(super) posting: Rc<Cell<usize>>,
}

/// `send`s one connection may have in flight: they are posted without
/// waiting for the previous one's journal commit (so they share group
/// commits); beyond this the connection's reader waits.
const MAX_POSTS_IN_FLIGHT: usize = 64;

impl Messages for ChatSession {
    async fn text(&self, text: &str) {
        if !self.bucket.borrow_mut().take() {
            self.error(&OpError::new(
                "rate_limited",
                format!(
                    "more than {} frames per second",
                    self.settings.messages_per_second
                ),
            ));
            return;
        }
        let result = match protocol::parse(text) {
            Ok(op) => self.handle(op).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.error(&e);
        }
    }

    async fn binary(&self, _data: &[u8]) {
        self.error(&OpError::new(
            "bad_frame",
            "binary frames are not part of the protocol: send JSON text",
        ));
    }
}

impl ChatSession {
    fn error(&self, e: &OpError) {
        let _ = self
            .state
            .realtime
            .send(&self.peer.outbox, protocol::error(e));
    }

    fn reply(&self, frame: bytes::Bytes) {
        let _ = self.state.realtime.send(&self.peer.outbox, frame);
    }

    fn room_shard(&self, room: &str) -> usize {
        self.state.router().owner_of(room.as_bytes())
    }

    async fn handle(&self, op: ClientOp) -> Result<(), OpError> {
        match op {
            ClientOp::Ping => self.reply(protocol::pong()),
            ClientOp::Join { room, since } => self.join(room, since).await?,
            ClientOp::Leave { room } => {
                if !self.peer.rooms.borrow_mut().remove(&room) {
                    return Err(not_joined(&room));
                }
                self.state.realtime.unsubscribe(&room, self.peer.id);
                let op = ChatOp::Leave {
                    room: room.clone(),
                    shard: self.state.id,
                    conn: self.peer.id,
                };
                rooms::send(&self.state, self.room_shard(&room), op).await;
                self.reply(protocol::left(&room));
            }
            ClientOp::Send {
                room,
                text,
                client_msg_id,
            } => {
                if !self.peer.rooms.borrow().contains(&room) {
                    return Err(not_joined(&room));
                }
                let op = ChatOp::Post {
                    room: room.clone(),
                    from: self.peer.user_id.clone(),
                    text,
                };
                let posting = post(
                    self.state.clone(),
                    self.peer.clone(),
                    self.room_shard(&room),
                    op,
                    client_msg_id,
                    self.posting.clone(),
                );
                // Posts are sent in frame order (so their seqs follow it)
                // and answered as their commits complete.
                if self.posting.get() < MAX_POSTS_IN_FLIGHT {
                    monoio::spawn(posting);
                } else {
                    posting.await;
                }
            }
            ClientOp::History {
                room,
                before,
                limit,
            } => {
                authorize(&self.state, &self.caller(), &room).await?;
                let limit = limit.unwrap_or(protocol::MAX_HISTORY) as usize;
                let op = ChatOp::History {
                    room: room.clone(),
                    before,
                    limit,
                };
                match rooms::call(&self.state, self.room_shard(&room), op).await {
                    Ok(ChatReply::History(messages)) => {
                        self.reply(protocol::history(&room, &messages))
                    }
                    Ok(_) => return Err(internal()),
                    Err(e) => return Err(domain(e)),
                }
            }
            ClientOp::Typing { room } => {
                if !self.peer.rooms.borrow().contains(&room) {
                    return Err(not_joined(&room));
                }
                let op = ChatOp::Typing {
                    room: room.clone(),
                    user: self.peer.user_id.clone(),
                };
                rooms::send(&self.state, self.room_shard(&room), op).await;
            }
        }
        Ok(())
    }

    fn caller(&self) -> Caller {
        Caller {
            user_id: self.peer.user_id.clone(),
            admin: self.peer.admin,
        }
    }

    async fn join(&self, room: String, since: Option<u64>) -> Result<(), OpError> {
        if self.peer.rooms.borrow().contains(&room) {
            return Err(OpError::new(
                "already_joined",
                format!("already in room {room}"),
            ));
        }
        if self.peer.rooms.borrow().len() >= self.settings.max_rooms_per_connection {
            return Err(OpError::new(
                "too_many_rooms",
                format!(
                    "a connection may join at most {} rooms",
                    self.settings.max_rooms_per_connection
                ),
            ));
        }
        authorize(&self.state, &self.caller(), &room).await?;
        self.peer.rooms.borrow_mut().insert(room.clone());
        self.state.realtime.subscribe(&room, &self.peer);
        let op = ChatOp::Join {
            room: room.clone(),
            shard: self.state.id,
            conn: self.peer.id,
            user: self.peer.user_id.clone(),
            since,
            max_members: self.settings.max_members_per_room,
        };
        match rooms::call(&self.state, self.room_shard(&room), op).await {
            Ok(ChatReply::Joined {
                last_seq,
                recovered,
                replay,
            }) => {
                let mut head = Vec::with_capacity(replay.len() + 1);
                head.push(protocol::joined(&room, last_seq, recovered));
                head.extend(replay);
                self.state
                    .realtime
                    .go_live(&room, &self.peer, head, last_seq);
                Ok(())
            }
            other => {
                self.peer.rooms.borrow_mut().remove(&room);
                self.state.realtime.unsubscribe(&room, self.peer.id);
                Err(match other {
                    Err(e) => domain(e),
                    Ok(_) => internal(),
                })
            }
        }
    }

    /// Leaves every room and tells the user's shard the socket closed.
    pub async fn close(&self) {
        let joined: Vec<String> = self.peer.rooms.borrow_mut().drain().collect();
        for room in joined {
            self.state.realtime.unsubscribe(&room, self.peer.id);
            let op = ChatOp::Leave {
                room: room.clone(),
                shard: self.state.id,
                conn: self.peer.id,
            };
            rooms::send(&self.state, self.room_shard(&room), op).await;
        }
        self.state.realtime.disconnect(&self.peer);
        let user_shard = self.state.router().owner_of(self.peer.user_id.as_bytes());
        let op = ChatOp::Socket {
            user: self.peer.user_id.clone(),
            shard: self.state.id,
            open: false,
        };
        rooms::send(&self.state, user_shard, op).await;
    }
}

/// Posts one message and answers the sender with its `ack` (or `error`).
async fn post(
    state: Rc<ShardState>,
    peer: Rc<Peer>,
    shard: usize,
    op: ChatOp,
    client_msg_id: String,
    posting: Rc<Cell<usize>>,
) {
    posting.set(posting.get() + 1);
    let frame = match rooms::call(&state, shard, op).await {
        Ok(ChatReply::Posted(seq)) => protocol::ack(&client_msg_id, seq),
        Ok(_) => protocol::error(&internal()),
        Err(e) => protocol::error(&domain(e)),
    };
    posting.set(posting.get() - 1);
    let _ = state.realtime.send(&peer.outbox, frame);
}

/// Whether `caller` may read and join `room`: `order-{id}` rooms admit only
/// the order's owner and admins; other names are open.
pub async fn authorize(state: &ShardState, caller: &Caller, room: &str) -> Result<(), OpError> {
    let Some(order_id) = room.strip_prefix("order-") else {
        return Ok(());
    };
    if caller.admin {
        return Ok(());
    }
    let forbidden = || OpError::new("forbidden", format!("room {room} is its order's owner's"));
    if !rayltics_commerce::ids::is_id(order_id) {
        return Err(forbidden());
    }
    let op = Op::GetOrder {
        order_id: order_id.to_owned(),
        caller: caller.clone(),
    };
    match ops::call_owner(&state.router(), order_id, op).await {
        Ok(_) => Ok(()),
        Err(DomainError::NotFound(_) | DomainError::Forbidden(_)) => Err(forbidden()),
        Err(e) => Err(domain(e)),
    }
}

fn not_joined(room: &str) -> OpError {
    OpError::new("not_joined", format!("join room {room} first"))
}

fn internal() -> OpError {
    OpError::new("unavailable", "internal: unexpected reply")
}

/// A domain refusal as an `error` frame.
pub fn domain(e: DomainError) -> OpError {
    OpError::new(e.code(), e.to_string())
}

/// Frames a connection may send: `rate` per second, bursts of `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
