//! A shard's side of real-time: the chat connections it holds and which
//! rooms they joined (member side), and the rooms it owns (owner side, in
//! [`super::rooms`]). Plain `RefCell`ed maps: only this shard touches them.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;

use bytes::Bytes;

use rayltics_commerce::state::Map;
use rayltics_shards::ShardId;

use super::rooms::Room;
use super::socket::{Outbox, Refused};

/// A connection's id on its shard.
pub type ConnId = u64;

/// A chat connection, as the shard holding it knows it.
#[derive(Debug)]
pub struct Peer {
    /// Its id on this shard.
    pub id: ConnId,
    /// The authenticated user.
    pub user_id: String,
    /// Whether the user is an admin.
    pub admin: bool,
    /// Its send queue.
    pub outbox: Rc<Outbox>,
    /// Rooms it joined (or is joining).
    pub rooms: RefCell<HashSet<String>>,
}

/// A local connection's subscription to a room.
#[derive(Debug)]
enum Sub {
    /// Waiting for the room's `joined` answer: frames that arrive meanwhile
    /// wait here (seq `None` for presence).
    Joining(Vec<(Option<u64>, Bytes)>),
    /// Receiving; the highest seq delivered (duplicates and replays at or
    /// below it are dropped).
    Live(u64),
}

/// A room's connections on this shard, with their send queues.
type Members = Map<ConnId, (Sub, Rc<Outbox>)>;

/// One shard's real-time registry.
#[derive(Debug, Default)]
pub struct Hub {
    next_conn: Cell<ConnId>,
    peers: RefCell<Map<ConnId, Rc<Peer>>>,
    /// user id -> their connections on this shard.
    by_user: RefCell<Map<String, Vec<ConnId>>>,
    /// room -> this shard's connections in it.
    subs: RefCell<Map<String, Members>>,
    /// Rooms this shard owns, while they have members or messages in flight.
    pub(super) rooms: RefCell<Map<String, Room>>,
    /// Users this shard owns -> their open connections per shard.
    pub(super) sockets: RefCell<Map<String, Vec<u32>>>,
    /// Slow consumers cut off (for metrics).
    pub slow_consumers: Cell<u64>,
    /// The shard's write tick (`realtime.write_coalesce_us`).
    pub flush_tick: Rc<super::coalesce::FlushTick>,
}

impl Hub {
    /// Registers a new connection of `user_id`.
    pub fn connect(&self, user_id: String, admin: bool, outbox: Rc<Outbox>) -> Rc<Peer> {
        let id = self.next_conn.get() + 1;
        self.next_conn.set(id);
        let peer = Rc::new(Peer {
            id,
            user_id,
            admin,
            outbox,
            rooms: RefCell::new(HashSet::new()),
        });
        self.peers.borrow_mut().insert(id, peer.clone());
        self.by_user
            .borrow_mut()
            .entry(peer.user_id.clone())
            .or_default()
            .push(id);
        peer
    }

    /// Forgets a connection (its rooms must be left first).
    pub fn disconnect(&self, peer: &Peer) {
        self.peers.borrow_mut().remove(&peer.id);
        let mut by_user = self.by_user.borrow_mut();
        if let Some(ids) = by_user.get_mut(&peer.user_id) {
            ids.retain(|&i| i != peer.id);
            if ids.is_empty() {
                by_user.remove(&peer.user_id);
            }
        }
    }

    /// Chat connections open on this shard.
    pub fn connections(&self) -> usize {
        self.peers.borrow().len()
    }

    /// Pings every connection that was sent nothing since the last call.
    pub fn ping_quiet_connections(&self) {
        for peer in self.peers.borrow().values() {
            peer.outbox.ping_if_quiet();
        }
    }

    /// Starts a subscription: frames for `room` wait until [`Hub::go_live`].
    pub fn subscribe(&self, room: &str, peer: &Peer) {
        self.subs
            .borrow_mut()
            .entry(room.to_owned())
            .or_default()
            .insert(peer.id, (Sub::Joining(Vec::new()), peer.outbox.clone()));
    }

    /// Ends a subscription.
    pub fn unsubscribe(&self, room: &str, conn: ConnId) {
        let mut subs = self.subs.borrow_mut();
        if let Some(members) = subs.get_mut(room) {
            members.remove(&conn);
            if members.is_empty() {
                subs.remove(room);
            }
        }
    }

    /// The room answered the join: sends `joined` and the replay, then what
    /// arrived meanwhile (after `last_seq`), and delivers live from now on.
    pub fn go_live(&self, room: &str, peer: &Peer, head: Vec<Bytes>, last_seq: u64) {
        let waiting = {
            let mut subs = self.subs.borrow_mut();
            let Some((sub, _)) = subs.get_mut(room).and_then(|m| m.get_mut(&peer.id)) else {
                return;
            };
            match std::mem::replace(sub, Sub::Live(last_seq)) {
                Sub::Joining(w) => w,
                Sub::Live(_) => Vec::new(),
            }
        };
        let mut upto = last_seq;
        let mut frames = head;
        for (seq, frame) in waiting {
            match seq {
                Some(s) if s <= upto => continue,
                Some(s) => upto = s,
                None => {}
            }
            frames.push(frame);
        }
        if let Some((Sub::Live(u), _)) = self
            .subs
            .borrow_mut()
            .get_mut(room)
            .and_then(|m| m.get_mut(&peer.id))
        {
            *u = upto;
        }
        for f in frames {
            if self.send(&peer.outbox, f).is_err() {
                break;
            }
        }
    }

    /// A room frame for this shard's members of `room`: a message (with its
    /// seq) or presence (`None`). The same bytes go to every connection.
    pub fn deliver(&self, room: &str, seq: Option<u64>, frame: &Bytes) {
        let mut overflowed = Vec::new();
        {
            let mut subs = self.subs.borrow_mut();
            let Some(members) = subs.get_mut(room) else {
                return;
            };
            for (conn, (sub, outbox)) in members.iter_mut() {
                match sub {
                    Sub::Joining(waiting) => waiting.push((seq, frame.clone())),
                    Sub::Live(upto) => {
                        if let Some(s) = seq {
                            if s <= *upto {
                                continue;
                            }
                            *upto = s;
                        }
                        if outbox.push(frame.clone()) == Err(Refused::Overflow) {
                            overflowed.push(*conn);
                        }
                    }
                }
            }
        }
        self.count_overflows(overflowed.len());
    }

    /// A frame for every connection `user_id` has on this shard.
    pub fn deliver_to_user(&self, user_id: &str, frame: &Bytes) {
        let ids = self
            .by_user
            .borrow()
            .get(user_id)
            .cloned()
            .unwrap_or_default();
        let peers: Vec<_> = {
            let all = self.peers.borrow();
            ids.iter().filter_map(|i| all.get(i).cloned()).collect()
        };
        for p in peers {
            let _ = self.send(&p.outbox, frame.clone());
        }
    }

    /// Queues `frame` on one connection, counting a cut-off slow consumer.
    pub fn send(&self, outbox: &Outbox, frame: Bytes) -> Result<(), Refused> {
        let r = outbox.push(frame);
        if r == Err(Refused::Overflow) {
            self.count_overflows(1);
        }
        r
    }

    fn count_overflows(&self, n: usize) {
        if n > 0 {
            self.slow_consumers
                .set(self.slow_consumers.get() + n as u64);
            tracing::debug!(n, "slow WebSocket consumers cut off (1008)");
        }
    }

    /// Counts a connection of `user` (owned here) opening on `shard`.
    pub fn socket_opened(&self, user: String, shard: ShardId, shard_count: usize) {
        let mut s = self.sockets.borrow_mut();
        let counts = s.entry(user).or_insert_with(|| vec![0; shard_count]);
        if let Some(c) = counts.get_mut(shard) {
            *c += 1;
        }
    }

    /// Counts a connection of `user` (owned here) closing on `shard`.
    pub fn socket_closed(&self, user: &str, shard: ShardId) {
        let mut s = self.sockets.borrow_mut();
        if let Some(counts) = s.get_mut(user) {
            if let Some(c) = counts.get_mut(shard) {
                *c = c.saturating_sub(1);
            }
            if counts.iter().all(|&c| c == 0) {
                s.remove(user);
            }
        }
    }

    /// Shards where `user` (owned here) has open connections.
    pub fn user_shards(&self, user: &str) -> Vec<ShardId> {
        self.sockets
            .borrow()
            .get(user)
            .map_or_else(Vec::new, |counts| {
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(s, _)| s)
                    .collect()
            })
    }
}
