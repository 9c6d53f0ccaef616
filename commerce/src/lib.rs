//! The commerce domain of rayltics: what one shard knows and decides.
//!
//! Runtime-agnostic (no I/O but the journal); the node's HTTP handlers and
//! mesh messages call into it on the shard that owns the key.
//!
//! # Layout
//! - [`model`]: the records a shard keeps (users, products, stock,
//!   reservations, sales, orders, idempotency keys, events).
//! - [`change`]: the journal record, one state change.
//! - [`state`]: [`state::ShardData`], the shard's maps; `apply(change)` is
//!   the only mutation; read/decide functions per concern.
//! - [`store`]: [`Store`] = state + journal: write = append + apply, then
//!   await the group commit; open = snapshot + replay.
//! - [`search`]: the per-shard full-text index over the products a shard owns.
//! - [`auth`]: password hashing off the event loop, JWT access tokens, the
//!   per-shard verified-token cache, refresh tokens, login rate limits.
//! - [`clock`]: the injected clock; [`ids`]: UUIDv7 ids placed on a shard.
//! - [`error`]: [`DomainError`], one status and API code per kind.
//!
//! # A write's path
//! A handler on the owning shard reads [`state::ShardData`], decides, and
//! gets back a `Vec<Change>` (or a [`DomainError`]). [`Store::write`]
//! appends them to the journal and applies them in the same tick; the
//! handler awaits the commit (one fdatasync shared by every write of the
//! tick) and only then answers.

pub mod auth;
pub mod change;
pub mod clock;
pub mod error;
pub mod ids;
pub mod model;
pub mod search;
pub mod state;
pub mod store;

pub use change::Change;
pub use clock::{Clock, Millis};
pub use error::{DomainError, DomainResult};
pub use store::{RecoveryReport, Store};

/// Largest stock count and order quantity handled (keeps sums far from
/// overflow).
pub const MAX_STOCK: i64 = 1_000_000_000;
