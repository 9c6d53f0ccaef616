//! Shard-per-core runtime for rayltics.
//!
//! A node runs one *shard* per core: a pinned OS thread with its own monoio
//! runtime. A shard owns the keys that [`shard_for`] maps to it outright, as
//! plain `!Send` data; no other thread ever touches that state. Work for a key
//! owned elsewhere travels as a typed message over the [`mesh`].
//!
//! # Layout
//! - [`key`]: `ShardId` and the stable `shard_for(key, shard_count)` hash.
//! - [`runtime`]: starts the shard threads, pins them and builds each runtime
//!   (epoll or io_uring driver).
//! - [`mesh`]: one SPSC ring per ordered shard pair plus a per-shard doorbell
//!   that is rung only when the receiving shard's pump is parked.
//! - [`router`]: the typed request/reply layer on top of the mesh. A
//!   [`Service`] is one enum of requests and one of responses; a [`Router`]
//!   runs a call inline when the key is local and sends it otherwise.
//! - [`stats`]: node-wide, per-shard mesh counters for `/metrics`.
//!
//! # A cross-shard call
//! `Router::call(owner, req)` on shard A: if `owner == A` the service runs
//! inline. Otherwise the request is pushed to ring A->B with a reply slot from
//! A's pending table; B's pump drains *every* inbound ring on each pass,
//! spawns the handler, and pushes the reply to ring B->A; A's pump completes
//! the slot and wakes the caller. A pump that finds nothing spins briefly
//! (yielding to other tasks) and then parks on its doorbell; senders ring the
//! doorbell only when they see the receiver parked, so busy shards exchange
//! messages without a syscall.

pub mod key;
pub mod mesh;
pub mod router;
pub mod runtime;
pub mod stats;
mod yield_now;

pub use key::{ShardId, shard_for};
pub use mesh::{Mesh, MeshEndpoint, MeshOptions};
pub use router::{MeshError, Router, Service};
pub use runtime::{Driver, RuntimeOptions, spawn_shards};
pub use stats::{MeshStats, ShardMeshStats};
pub use yield_now::{spin_then_await, yield_now};
