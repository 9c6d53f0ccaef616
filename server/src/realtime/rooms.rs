//! Rooms on their owning shard, and the real-time messages shards send
//! each other.
//!
//! The room's shard keeps the live membership (which connection on which
//! shard, per-user presence, typing) and orders the room: a `Post` gets the
//! next seq from the archive (`rayltics_commerce::state::chat`), is committed
//! to the journal, and only then fanned out, strictly in seq order, as one
//! `Deliver` per shard that has members, carrying the frame encoded once.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;

use rayltics_commerce::model::ChatMessageRec;
use rayltics_commerce::{DomainError, DomainResult, Millis};
use rayltics_shards::ShardId;

use super::hub::ConnId;
use super::protocol::{self, Presence};
use crate::service::{ShardRequest, ShardResponse, ShardState};

/// How long a `typing` state lasts without another `typing`.
pub const TYPING_TTL_MS: Millis = 5_000;
/// A user's repeated `typing` is broadcast at most this often.
const TYPING_REBROADCAST_MS: Millis = 1_000;

/// Real-time requests between shards.
#[derive(Debug)]
pub enum ChatOp {
    /// Add a connection to a room (room's shard).
    Join {
        /// Room name.
        room: String,
        /// The connection's shard.
        shard: ShardId,
        /// The connection on it.
        conn: ConnId,
        /// Its user.
        user: String,
        /// Replay messages after this seq.
        since: Option<u64>,
        /// Largest room size.
        max_members: usize,
    },
    /// Remove a connection from a room (room's shard).
    Leave {
        /// Room name.
        room: String,
        /// The connection's shard.
        shard: ShardId,
        /// The connection on it.
        conn: ConnId,
    },
    /// Post a message (room's shard).
    Post {
        /// Room name.
        room: String,
        /// Sender.
        from: String,
        /// Text.
        text: String,
    },
    /// Messages before a seq (room's shard).
    History {
        /// Room name.
        room: String,
        /// Only seqs below this.
        before: Option<u64>,
        /// How many.
        limit: usize,
    },
    /// A member is typing (room's shard).
    Typing {
        /// Room name.
        room: String,
        /// Who.
        user: String,
    },
    /// A room frame for a shard's members of the room (member's shard).
    Deliver {
        /// Room name.
        room: String,
        /// The message's seq (`None`: presence).
        seq: Option<u64>,
        /// The frame.
        frame: Bytes,
    },
    /// A user's connection opened / closed on `shard` (user's shard).
    Socket {
        /// The user.
        user: String,
        /// Where.
        shard: ShardId,
        /// Opened (true) or closed.
        open: bool,
    },
    /// A frame for every connection of a user (shard holding them).
    Notify {
        /// The user.
        user: String,
        /// The frame.
        frame: Bytes,
    },
}

/// Answers to [`ChatOp`]s.
#[derive(Debug)]
pub enum ChatReply {
    /// Joined: the room's last delivered seq, whether the replay covers
    /// everything after `since`, and the replayed message frames.
    Joined {
        /// Seq of the last message delivered to members.
        last_seq: u64,
        /// `false` when messages after `since` are no longer retained.
        recovered: bool,
        /// The replay, oldest first.
        replay: Vec<Bytes>,
    },
    /// Posted with this seq.
    Posted(u64),
    /// A page of history, oldest first.
    History(Vec<ChatMessageRec>),
    /// Done.
    Done,
}

/// A room's live state on its shard.
#[derive(Debug)]
pub struct Room {
    /// (shard, conn) -> user.
    members: rayltics_commerce::state::Map<(ShardId, ConnId), String>,
    /// Members per shard (who gets a `Deliver`).
    per_shard: Vec<u32>,
    /// user -> connections in the room.
    online: rayltics_commerce::state::Map<String, u32>,
    /// user -> (typing until, last broadcast).
    typing: rayltics_commerce::state::Map<String, (Millis, Millis)>,
    /// Seq of the last message fanned out.
    delivered: u64,
    /// Committed messages waiting for an earlier seq's commit.
    ready: BTreeMap<u64, Option<Bytes>>,
    /// Posts written but not yet committed.
    in_flight: u32,
    /// A task is fanning out (it drains `ready` in order).
    fanning_out: bool,
}

impl Room {
    fn new(delivered: u64, shard_count: usize) -> Self {
        Self {
            members: Default::default(),
            per_shard: vec![0; shard_count],
            online: Default::default(),
            typing: Default::default(),
            delivered,
            ready: BTreeMap::new(),
            in_flight: 0,
            fanning_out: false,
        }
    }

    fn idle(&self) -> bool {
        self.members.is_empty() && self.in_flight == 0 && self.ready.is_empty() && !self.fanning_out
    }

    fn shards(&self) -> Vec<ShardId> {
        self.per_shard
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(s, _)| s)
            .collect()
    }
}

/// Runs a real-time request on this shard.
pub async fn execute(state: &Rc<ShardState>, op: ChatOp) -> DomainResult<ChatReply> {
    match op {
        ChatOp::Join {
            room,
            shard,
            conn,
            user,
            since,
            max_members,
        } => join(state, room, (shard, conn), user, since, max_members).await,
        ChatOp::Leave { room, shard, conn } => {
            leave(state, &room, (shard, conn)).await;
            Ok(ChatReply::Done)
        }
        ChatOp::Post { room, from, text } => post(state, room, &from, &text).await,
        ChatOp::History {
            room,
            before,
            limit,
        } => Ok(ChatReply::History(
            history(state, &room, before, limit).await,
        )),
        ChatOp::Typing { room, user } => {
            typing(state, &room, user).await;
            Ok(ChatReply::Done)
        }
        ChatOp::Deliver { room, seq, frame } => {
            state.realtime.deliver(&room, seq, &frame);
            Ok(ChatReply::Done)
        }
        ChatOp::Socket { user, shard, open } => {
            if open {
                state.realtime.socket_opened(user, shard, state.shard_count);
            } else {
                state.realtime.socket_closed(&user, shard);
            }
            Ok(ChatReply::Done)
        }
        ChatOp::Notify { user, frame } => {
            state.realtime.deliver_to_user(&user, &frame);
            Ok(ChatReply::Done)
        }
    }
}

async fn join(
    state: &Rc<ShardState>,
    room: String,
    member: (ShardId, ConnId),
    user: String,
    since: Option<u64>,
    max_members: usize,
) -> DomainResult<ChatReply> {
    let (reply, first_of_user) = {
        let mut rooms = state.realtime.rooms.borrow_mut();
        let r = rooms.entry(room.clone()).or_insert_with(|| {
            Room::new(state.store.read().room_last_seq(&room), state.shard_count)
        });
        if r.members.len() >= max_members && !r.members.contains_key(&member) {
            return Err(DomainError::Conflict(
                "room_full",
                format!("room {room} has {max_members} members"),
            ));
        }
        if r.members.insert(member, user.clone()).is_none() {
            r.per_shard[member.0] += 1;
        }
        let n = r.online.entry(user.clone()).or_insert(0);
        *n += 1;
        let last_seq = r.delivered;
        let (replay, recovered) = match since {
            None => (Vec::new(), true),
            Some(since) if since >= last_seq => (Vec::new(), true),
            Some(since) => {
                let data = state.store.read();
                let slice = data.room_after(&room, since, usize::MAX);
                let replay: Vec<Bytes> = slice
                    .messages
                    .iter()
                    .take_while(|m| m.seq <= last_seq)
                    .map(|m| protocol::message(m))
                    .collect();
                let first = slice.messages.first().map_or(last_seq + 1, |m| m.seq);
                (replay, first == since + 1)
            }
        };
        (
            ChatReply::Joined {
                last_seq,
                recovered,
                replay,
            },
            *n == 1,
        )
    };
    if first_of_user {
        broadcast(
            state,
            &room,
            protocol::presence(&room, &user, Presence::Online),
        )
        .await;
    }
    Ok(reply)
}

async fn leave(state: &Rc<ShardState>, room: &str, member: (ShardId, ConnId)) {
    let gone_user = {
        let mut rooms = state.realtime.rooms.borrow_mut();
        let Some(r) = rooms.get_mut(room) else {
            return;
        };
        let Some(user) = r.members.remove(&member) else {
            return;
        };
        r.per_shard[member.0] = r.per_shard[member.0].saturating_sub(1);
        let last = match r.online.get_mut(&user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                r.online.remove(&user);
                r.typing.remove(&user);
                true
            }
        };
        if r.idle() {
            rooms.remove(room);
        }
        last.then_some(user)
    };
    if let Some(user) = gone_user {
        broadcast(
            state,
            room,
            protocol::presence(room, &user, Presence::Offline),
        )
        .await;
    }
}

async fn post(
    state: &Rc<ShardState>,
    room: String,
    from: &str,
    text: &str,
) -> DomainResult<ChatReply> {
    let now = state.shared.clock.now_ms();
    let (msg, commit) = {
        let mut rooms = state.realtime.rooms.borrow_mut();
        let r = rooms.entry(room.clone()).or_insert_with(|| {
            Room::new(state.store.read().room_last_seq(&room), state.shard_count)
        });
        let id = rayltics_commerce::ids::id_on_shard(state.id, state.shard_count);
        let (msg, changes) = state.store.read().plan_chat_post(
            &room,
            id,
            from,
            text,
            now,
            crate::events::chat_payload,
        );
        let commit = state.store.write(changes)?;
        r.in_flight += 1;
        (msg, commit)
    };
    let frame = protocol::message(&msg);
    let committed = commit.await;
    {
        let mut rooms = state.realtime.rooms.borrow_mut();
        if let Some(r) = rooms.get_mut(&room) {
            r.in_flight -= 1;
            // A failed commit still takes its turn (as a gap nobody is
            // sent), or every later message would wait for it forever.
            r.ready.insert(msg.seq, committed.is_ok().then_some(frame));
        }
    }
    fan_out(state, &room).await;
    committed.map_err(|e| DomainError::Unavailable(format!("journal: {e}")))?;
    Ok(ChatReply::Posted(msg.seq))
}

/// Sends the room's committed messages to its member shards in seq order.
/// One task at a time per room does it; others leave their message in
/// `ready` for it.
async fn fan_out(state: &Rc<ShardState>, room: &str) {
    {
        let mut rooms = state.realtime.rooms.borrow_mut();
        let Some(r) = rooms.get_mut(room) else {
            return;
        };
        if r.fanning_out {
            return;
        }
        r.fanning_out = true;
    }
    loop {
        let next = {
            let mut rooms = state.realtime.rooms.borrow_mut();
            let Some(r) = rooms.get_mut(room) else {
                return;
            };
            match r.ready.remove(&(r.delivered + 1)) {
                Some(frame) => {
                    r.delivered += 1;
                    frame.map(|f| (r.delivered, f, r.shards()))
                }
                None => {
                    r.fanning_out = false;
                    if r.idle() {
                        rooms.remove(room);
                    }
                    return;
                }
            }
        };
        if let Some((seq, frame, shards)) = next {
            send_to_shards(state, room, Some(seq), frame, shards).await;
        }
    }
}

/// Sends a presence frame to every shard with members of `room`.
async fn broadcast(state: &Rc<ShardState>, room: &str, frame: Bytes) {
    let shards = match state.realtime.rooms.borrow().get(room) {
        Some(r) => r.shards(),
        None => return,
    };
    send_to_shards(state, room, None, frame, shards).await;
}

async fn send_to_shards(
    state: &Rc<ShardState>,
    room: &str,
    seq: Option<u64>,
    frame: Bytes,
    shards: Vec<ShardId>,
) {
    let router = state.router();
    for shard in shards {
        if shard == state.id {
            state.realtime.deliver(room, seq, &frame);
            continue;
        }
        let op = ChatOp::Deliver {
            room: room.to_owned(),
            seq,
            frame: frame.clone(),
        };
        if let Err(e) = router.send(shard, ShardRequest::Chat(op)).await {
            tracing::warn!(shard, room, error = %e, "room delivery failed");
        }
    }
}

async fn typing(state: &Rc<ShardState>, room: &str, user: String) {
    let now = state.shared.clock.now_ms();
    let announce = {
        let mut rooms = state.realtime.rooms.borrow_mut();
        let Some(r) = rooms.get_mut(room) else {
            return;
        };
        if !r.online.contains_key(&user) {
            return;
        }
        let entry = r.typing.entry(user.clone()).or_insert((0, 0));
        entry.0 = now + TYPING_TTL_MS;
        if now - entry.1 >= TYPING_REBROADCAST_MS {
            entry.1 = now;
            true
        } else {
            false
        }
    };
    if announce {
        broadcast(
            state,
            room,
            protocol::presence(room, &user, Presence::Typing),
        )
        .await;
    }
}

/// Ends `typing` states that expired: their users are `online` again.
pub async fn expire_typing(state: &Rc<ShardState>) {
    let now = state.shared.clock.now_ms();
    let expired: Vec<(String, String)> = {
        let mut rooms = state.realtime.rooms.borrow_mut();
        let mut out = Vec::new();
        for (name, r) in rooms.iter_mut() {
            r.typing.retain(|user, (until, _)| {
                if *until <= now {
                    out.push((name.clone(), user.clone()));
                    false
                } else {
                    true
                }
            });
        }
        out
    };
    for (room, user) in expired {
        broadcast(
            state,
            &room,
            protocol::presence(&room, &user, Presence::Online),
        )
        .await;
    }
}

/// Runs `op` on `shard` and returns its answer.
pub async fn call(state: &ShardState, shard: ShardId, op: ChatOp) -> DomainResult<ChatReply> {
    match state.router().call(shard, ShardRequest::Chat(op)).await {
        Ok(ShardResponse::Chat(reply)) => reply,
        Ok(other) => Err(DomainError::Unavailable(format!(
            "unexpected mesh reply {other:?}"
        ))),
        Err(e) => Err(DomainError::Unavailable(format!("shard {shard}: {e}"))),
    }
}

/// Sends `op` to `shard` without waiting for an answer.
pub async fn send(state: &ShardState, shard: ShardId, op: ChatOp) {
    if let Err(e) = state.router().send(shard, ShardRequest::Chat(op)).await {
        tracing::warn!(shard, error = %e, "real-time message not sent");
    }
}

/// Up to `limit` of `room`'s messages before `before`, oldest first: from
/// the room's retained messages, and what is older than those from the
/// archive in MongoDB when one is configured (otherwise, or while it is
/// unreachable, the answer starts at the oldest retained message).
async fn history(
    state: &ShardState,
    room: &str,
    before: Option<u64>,
    limit: usize,
) -> Vec<ChatMessageRec> {
    let (mut messages, older_than) = {
        let data = state.store.read();
        let slice = data.room_before(room, before, limit);
        let messages: Vec<ChatMessageRec> = slice.messages.into_iter().cloned().collect();
        let older_than = match messages.first() {
            Some(m) => m.seq,
            None => before.unwrap_or(u64::MAX).min(slice.last_seq + 1),
        };
        (messages, (!slice.complete).then_some(older_than))
    };
    let (Some(older_than), Some(archive)) = (older_than, &state.chat_archive) else {
        return messages;
    };
    let missing = limit.saturating_sub(messages.len());
    if missing == 0 || older_than <= 1 {
        return messages;
    }
    match archive.chat_history(room, older_than, missing).await {
        Ok(mut older) => {
            older.retain(|m| m.seq < older_than);
            older.append(&mut messages);
            older
        }
        Err(e) => {
            tracing::warn!(room, error = %e, "chat archive unreachable; history starts at the retained messages");
            messages
        }
    }
}
