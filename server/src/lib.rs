//! The rayltics node: one process, one shard per core.
//!
//! # Layout
//! - [`config`]: defaults -> TOML file -> `RAYLTICS_*` env -> flags, validated.
//! - [`node`]: start order (listeners, mesh, sidecar, shards) and the
//!   reverse stop order with a drain deadline.
//! - [`shard`]: one shard's life: join the mesh, accept on the shared
//!   SO_REUSEPORT port, serve connections, take sidecar calls, drain.
//! - [`service`]: the typed requests shards send each other over the mesh,
//!   and the shard state that answers them.
//! - [`http`]: the application behind the HTTP edge (routing, operations
//!   endpoints, metrics per route).
//! - [`api`]: the REST API (validation, auth, problem+json, JSON views).
//! - [`ops`]: commerce operations, run on the shard that owns their key;
//!   the order and flash-sale sagas.
//! - [`commerce`]: node-wide commerce context (clock, token keys, hasher),
//!   each shard's store start-up, admin bootstrap, expiry sweeps.
//! - [`bridge`] / [`sidecar`]: typed channels to and from the tokio sidecar,
//!   which serves gRPC (health, reflection, `rayltics.node.v1`).
//! - [`realtime`]: WebSocket chat rooms and order notifications (`GET /ws`).
//! - [`events`]: the embedded event log's wire format (Protobuf payloads).
//! - [`relay`]: the outbox relay that publishes every committed event to
//!   Kafka and marks it published once acknowledged (`[kafka]`).
//! - [`metrics`]: Prometheus families with per-shard labels.
//! - [`telemetry`]: the tracing subscriber.
//!
//! # A request's path
//! The kernel hands a new connection to one shard's listener (SO_REUSEPORT).
//! That shard's `rayltics_net::serve` parses each request and calls
//! `http::App::handle`, which routes it. A handler that needs a key owned by
//! another shard calls `ShardRouter::call(owner, ShardRequest::..)`: inline
//! when local, otherwise over the mesh ring to the owner and back. The
//! response is written on the accepting shard's connection. A `GET /ws`
//! answered with `101` leaves HTTP: the shard runs the connection as a
//! WebSocket ([`realtime`]) until it closes.

pub mod api;
pub mod bridge;
pub mod commerce;
pub mod config;
pub mod events;
pub mod http;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod realtime;
pub mod relay;
pub mod service;
pub mod shard;
pub mod sidecar;
pub mod telemetry;
pub mod workers;
