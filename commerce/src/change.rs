//! The journal record: one state change of one shard.
//!
//! A handler decides (reading the shard's state), then writes a batch of
//! changes through [`crate::Store::write`], which appends them to the journal
//! and applies them with [`crate::state::ShardData::apply`]; recovery replays
//! the same records through the same `apply`, so the state after a restart
//! is the state that was acknowledged.

use rkyv::{Archive, Deserialize, Serialize};

use crate::clock::Millis;
use crate::model::{
    ChatMessageRec, EventRec, IdempotencyRec, OrderRec, ProductRec, ReservationRec, SaleRec,
    UserRec,
};

/// One state change.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Change {
    /// A user registered (or the admin was bootstrapped).
    UserCreated(UserRec),
    /// A refresh family was started or rotated to a new token.
    RefreshSet {
        /// Family id.
        family_id: String,
        /// Its owner.
        user_id: String,
        /// sha256 of the new token's secret.
        digest: [u8; 32],
        /// Expiry of the new token.
        expires_at: Millis,
    },
    /// A refresh family ended (logout, or re-use of a rotated token).
    RefreshRevoked {
        /// Family id.
        family_id: String,
    },
    /// A product was created or replaced.
    ProductPut(ProductRec),
    /// A product was deleted.
    ProductDeleted {
        /// SKU.
        sku: String,
    },
    /// A SKU's on-hand count was set (creation, admin adjust).
    StockSet {
        /// SKU.
        sku: String,
        /// New on-hand units.
        on_hand: i64,
    },
    /// A cart line was set (quantity 0 removes it).
    CartPut {
        /// Cart owner.
        user_id: String,
        /// SKU.
        sku: String,
        /// Units.
        quantity: u32,
        /// Unit price when added.
        price_cents: i64,
        /// Currency of the price.
        currency: String,
    },
    /// A cart was emptied (it became an order).
    CartCleared {
        /// Cart owner.
        user_id: String,
    },
    /// Units were reserved for an order.
    Reserved(ReservationRec),
    /// An order's reservation of a SKU was released (stock back).
    Released {
        /// Order id.
        order_id: String,
        /// SKU.
        sku: String,
    },
    /// An order's reservation of a SKU was sold (units leave stock).
    Sold {
        /// Order id.
        order_id: String,
        /// SKU.
        sku: String,
    },
    /// A flash sale was created.
    SaleCreated(SaleRec),
    /// An order was created or changed status (the full record).
    OrderPut(OrderRec),
    /// The first response to an idempotent request.
    IdempotencySaved {
        /// The user the key is scoped to.
        user_id: String,
        /// The `Idempotency-Key`.
        key: String,
        /// The response.
        rec: IdempotencyRec,
    },
    /// An event appended to the shard's event log.
    Event(EventRec),
    /// Idempotency records older than `before` are forgotten (API.md keeps
    /// them at least 24 h).
    IdempotencyExpired {
        /// Records with `at < before` go.
        before: Millis,
    },
    /// A chat message was accepted by its room (the room's shard).
    ChatPosted(ChatMessageRec),
    /// The Kafka relay had every event of this shard's log up to `upto`
    /// acknowledged by the broker (`acks=all`): they are published, and the
    /// relay resumes after `upto` when the node starts again. Offsets only
    /// move forward; a smaller `upto` than the current one is a no-op.
    EventsPublished {
        /// Last published offset (inclusive).
        upto: u64,
    },
}
