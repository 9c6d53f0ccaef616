//! Typed request/reply over the mesh.
//!
//! A [`Service`] is what a shard offers to the others: one request enum, one
//! response enum, and a handler that runs on the owning shard with that
//! shard's state. A [`Router`] is a shard's handle on the mesh for one
//! service: it calls inline when the target is the local shard and otherwise
//! sends the request to the owner and awaits the reply.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::key::{ShardId, shard_for};
use crate::mesh::{Doorbell, MeshEndpoint, MeshOptions};
use crate::stats::{MeshStats, ShardMeshStats};
use crate::yield_now::yield_now;

/// A service offered by every shard to every other shard of the node.
///
/// The implementing type is the shard's own state (`!Send` is fine): it is
/// created on the shard and only ever used there.
pub trait Service: 'static {
    /// One variant per operation.
    type Request: Send + 'static;
    /// One variant per operation's answer.
    type Response: Send + 'static;

    /// Handles `req` on the shard that owns its key.
    fn handle(self: Rc<Self>, req: Self::Request)
    -> impl Future<Output = Self::Response> + 'static;
}

/// Why a cross-shard call could not be made. Retrying does not help with any
/// of these: they mean the node is misconfigured or shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// The target shard id is outside `0..shard_count`.
    #[error("shard {0} does not exist on this node")]
    NoSuchShard(ShardId),
    /// The target shard has stopped (its end of the ring is gone).
    #[error("shard {0} has stopped")]
    ShardGone(ShardId),
}

/// What travels on a ring.
#[derive(Debug)]
pub enum Envelope<Req, Resp> {
    /// A request; `slot` names the caller's pending reply (or [`NO_REPLY`]).
    Request {
        /// Reply slot on the sending shard.
        slot: u32,
        /// The request.
        req: Req,
    },
    /// The answer to the request that carried `slot`.
    Reply {
        /// Reply slot on the receiving shard.
        slot: u32,
        /// The response.
        resp: Resp,
    },
}

/// Slot value of a one-way message.
pub const NO_REPLY: u32 = u32::MAX;

type Env<S> = Envelope<<S as Service>::Request, <S as Service>::Response>;

enum Pending<R> {
    Waiting(Option<Waker>),
    Done(R),
    Abandoned,
}

/// A shard's handle on the mesh for service `S`. Cheap to clone; `!Send`.
///
/// Owned by one shard: created there by [`Router::start`], which also spawns
/// the shard's mesh pump.
pub struct Router<S: Service> {
    inner: Rc<Inner<S>>,
}

impl<S: Service> Clone for Router<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Service> std::fmt::Debug for Router<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("shard", &self.inner.id)
            .field("shard_count", &self.inner.count)
            .finish()
    }
}

struct Inner<S: Service> {
    id: ShardId,
    count: usize,
    service: Rc<S>,
    outbound: RefCell<Vec<Option<rtrb::Producer<Env<S>>>>>,
    inbound: RefCell<Vec<Option<rtrb::Consumer<Env<S>>>>>,
    pending: RefCell<Slab<Pending<S::Response>>>,
    doorbells: Arc<[Doorbell]>,
    stats: MeshStats,
    options: MeshOptions,
}

impl<S: Service> Router<S> {
    /// Takes this shard's mesh endpoint, spawns its pump on the current
    /// monoio runtime and returns the router. Call once per shard, on it.
    pub fn start(endpoint: MeshEndpoint<Env<S>>, service: Rc<S>) -> std::io::Result<Self> {
        let MeshEndpoint {
            id,
            outbound,
            inbound,
            doorbells,
            stats,
            options,
        } = endpoint;
        let count = outbound.len();
        let inner = Rc::new(Inner {
            id,
            count,
            service,
            outbound: RefCell::new(outbound),
            inbound: RefCell::new(inbound),
            pending: RefCell::new(Slab::with_capacity(256)),
            doorbells,
            stats,
            options,
        });
        if count > 1 {
            monoio::spawn(pump(inner.clone()));
        }
        Ok(Self { inner })
    }

    /// This shard's id.
    pub fn shard_id(&self) -> ShardId {
        self.inner.id
    }

    /// Number of shards on the node.
    pub fn shard_count(&self) -> usize {
        self.inner.count
    }

    /// The shard that owns `key`.
    pub fn owner_of(&self, key: &[u8]) -> ShardId {
        shard_for(key, self.inner.count)
    }

    /// This shard's service (its local state).
    pub fn local(&self) -> &Rc<S> {
        &self.inner.service
    }

    /// Node-wide mesh counters.
    pub fn stats(&self) -> &MeshStats {
        &self.inner.stats
    }

    /// Runs `req` on the shard that owns `key`.
    pub async fn call_key(&self, key: &[u8], req: S::Request) -> Result<S::Response, MeshError> {
        self.call(self.owner_of(key), req).await
    }

    /// Runs `req` on shard `shard`: inline when it is this shard, otherwise
    /// over the mesh.
    pub async fn call(&self, shard: ShardId, req: S::Request) -> Result<S::Response, MeshError> {
        if shard == self.inner.id {
            return Ok(self.inner.service.clone().handle(req).await);
        }
        if shard >= self.inner.count {
            return Err(MeshError::NoSuchShard(shard));
        }
        let slot = self
            .inner
            .pending
            .borrow_mut()
            .insert(Pending::Waiting(None));
        let wait = ReplyFuture {
            inner: self.inner.clone(),
            slot,
            finished: false,
        };
        self.inner
            .push(
                shard,
                Envelope::Request {
                    slot: slot as u32,
                    req,
                },
            )
            .await?;
        // A reply is coming: get our own pump polling (a local wake) so a
        // fast answer is picked up without a cross-thread wake-up.
        self.inner.doorbells[self.inner.id].notify();
        Ok(wait.await)
    }

    /// Sends `req` to shard `shard` without waiting for (or receiving) an
    /// answer. Runs inline, to completion, when `shard` is this shard.
    pub async fn send(&self, shard: ShardId, req: S::Request) -> Result<(), MeshError> {
        if shard == self.inner.id {
            self.inner.service.clone().handle(req).await;
            return Ok(());
        }
        if shard >= self.inner.count {
            return Err(MeshError::NoSuchShard(shard));
        }
        self.inner
            .push(
                shard,
                Envelope::Request {
                    slot: NO_REPLY,
                    req,
                },
            )
            .await
    }
}

impl<S: Service> Inner<S> {
    fn my_stats(&self) -> &ShardMeshStats {
        &self.stats[self.id]
    }

    async fn push(&self, to: ShardId, mut msg: Env<S>) -> Result<(), MeshError> {
        loop {
            let result = {
                let mut outbound = self.outbound.borrow_mut();
                let Some(producer) = outbound.get_mut(to).and_then(Option::as_mut) else {
                    return Err(MeshError::NoSuchShard(to));
                };
                if producer.is_abandoned() {
                    return Err(MeshError::ShardGone(to));
                }
                producer.push(msg)
            };
            let stats = self.my_stats();
            match result {
                Ok(()) => {
                    ShardMeshStats::bump(&stats.sent, 1);
                    if self.doorbells[to].notify() {
                        ShardMeshStats::bump(&stats.doorbells_rung, 1);
                    }
                    return Ok(());
                }
                Err(rtrb::PushError::Full(back)) => {
                    msg = back;
                    ShardMeshStats::bump(&stats.ring_full, 1);
                    if self.doorbells[to].notify() {
                        ShardMeshStats::bump(&stats.doorbells_rung, 1);
                    }
                    yield_now().await;
                }
            }
        }
    }

    /// Drains every inbound ring once. Returns how many messages it handled.
    fn drain(self: &Rc<Self>) -> usize {
        let mut handled = 0;
        let mut inbound = self.inbound.borrow_mut();
        for (from, consumer) in inbound.iter_mut().enumerate() {
            let Some(consumer) = consumer else { continue };
            let ready = consumer.slots();
            if ready == 0 {
                continue;
            }
            let Ok(chunk) = consumer.read_chunk(ready) else {
                continue;
            };
            for envelope in chunk {
                self.dispatch(from, envelope);
            }
            handled += ready;
        }
        if handled > 0 {
            ShardMeshStats::bump(&self.my_stats().received, handled as u64);
        }
        handled
    }

    fn dispatch(self: &Rc<Self>, from: ShardId, envelope: Env<S>) {
        match envelope {
            Envelope::Request { slot, req } => {
                let inner = self.clone();
                monoio::spawn(async move {
                    let resp = inner.service.clone().handle(req).await;
                    if slot != NO_REPLY {
                        // A gone caller shard is shutting down; nothing to do.
                        let _ = inner.push(from, Envelope::Reply { slot, resp }).await;
                    }
                });
            }
            Envelope::Reply { slot, resp } => {
                let mut pending = self.pending.borrow_mut();
                let slot = slot as usize;
                match pending.get_mut(slot) {
                    Some(Pending::Waiting(waker)) => {
                        let waker = waker.take();
                        pending[slot] = Pending::Done(resp);
                        drop(pending);
                        if let Some(w) = waker {
                            w.wake();
                        }
                    }
                    Some(Pending::Abandoned) => {
                        pending.remove(slot);
                    }
                    Some(Pending::Done(_)) | None => {
                        tracing::error!(slot, from, "mesh reply for a slot that is not waiting");
                    }
                }
            }
        }
    }

    fn inbound_empty(&self) -> bool {
        self.inbound.borrow().iter().flatten().all(|c| c.is_empty())
    }
}

/// The shard's mesh pump: drains, spins briefly when idle, then parks on the
/// doorbell until a sender rings it.
async fn pump<S: Service>(inner: Rc<Inner<S>>) {
    let spin = Duration::from_micros(inner.options.spin_us);
    let mut idle_since: Option<Instant> = None;
    loop {
        if inner.drain() > 0 {
            idle_since = None;
            yield_now().await;
            continue;
        }
        let now = Instant::now();
        if now.duration_since(*idle_since.get_or_insert(now)) < spin {
            yield_now().await;
            continue;
        }
        ShardMeshStats::bump(&inner.my_stats().parks, 1);
        Park {
            inner: &inner,
            marked: false,
        }
        .await;
        idle_since = None;
    }
}

/// Parks the pump until a sender rings this shard's doorbell.
struct Park<'a, S: Service> {
    inner: &'a Inner<S>,
    marked: bool,
}

impl<S: Service> Future for Park<'_, S> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let bell = &self.inner.doorbells[self.inner.id];
        if !self.marked {
            self.marked = true;
            bell.mark_parked();
        }
        if !bell.still_parked(cx.waker()) {
            return Poll::Ready(());
        }
        // Re-check after announcing the park: a message pushed before the
        // sender could see the flag must not be left waiting.
        if !self.inner.inbound_empty() {
            bell.clear_parked();
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// Waits for the reply in `slot`; gives the slot up if dropped early.
struct ReplyFuture<S: Service> {
    inner: Rc<Inner<S>>,
    slot: usize,
    finished: bool,
}

impl<S: Service> Future for ReplyFuture<S> {
    type Output = S::Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<S::Response> {
        let slot = self.slot;
        let mut pending = self.inner.pending.borrow_mut();
        match &mut pending[slot] {
            Pending::Done(_) => {
                let Pending::Done(resp) = pending.remove(slot) else {
                    unreachable!()
                };
                drop(pending);
                self.finished = true;
                Poll::Ready(resp)
            }
            Pending::Waiting(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Pending::Abandoned => unreachable!("a polled reply slot is never abandoned"),
        }
    }
}

impl<S: Service> Drop for ReplyFuture<S> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut pending = self.inner.pending.borrow_mut();
        match pending.get(self.slot) {
            Some(Pending::Done(_)) => {
                pending.remove(self.slot);
            }
            Some(Pending::Waiting(_)) => pending[self.slot] = Pending::Abandoned,
            _ => {}
        }
    }
}
