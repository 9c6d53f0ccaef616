//! The records a shard keeps and journals. Each lives on exactly one shard:
//! users (and their refresh families, carts, orders, idempotency keys) on
//! their user's shard; products, stock, reservations and flash sales on
//! their SKU's shard.

use rkyv::{Archive, Deserialize, Serialize};

use crate::clock::Millis;

/// `UserRec::role` of a customer.
pub const ROLE_CUSTOMER: u8 = 0;
/// `UserRec::role` of an admin.
pub const ROLE_ADMIN: u8 = 1;

/// A registered user. Owned by the shard of its id (= the shard of its email).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct UserRec {
    /// Id (UUIDv7).
    pub id: String,
    /// Email, normalised to lower case.
    pub email: String,
    /// Display name.
    pub name: String,
    /// [`ROLE_CUSTOMER`] or [`ROLE_ADMIN`].
    pub role: u8,
    /// argon2id PHC string.
    pub password_phc: String,
    /// Registration time.
    pub created_at: Millis,
}

/// The current refresh token of one login session (a token family).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RefreshFamily {
    /// The user it belongs to.
    pub user_id: String,
    /// sha256 of the current (latest rotated) token's secret.
    pub digest: [u8; 32],
    /// When the current token stops being accepted.
    pub expires_at: Millis,
}

/// A product. Owned by the shard of its SKU.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ProductRec {
    /// SKU (the key).
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Price in minor units.
    pub price_cents: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Category.
    pub category: String,
    /// The `attributes` JSON object, as compact JSON text.
    pub attributes_json: String,
    /// Creation time.
    pub created_at: Millis,
    /// Last update time.
    pub updated_at: Millis,
}

/// Stock of one SKU. Owned by the shard of its SKU.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct Stock {
    /// Units in the warehouse (sold units leave it).
    pub on_hand: i64,
    /// Units held by pending orders.
    pub reserved: i64,
}

impl Stock {
    /// Units that can still be reserved.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// Units held for a pending order on the SKU's shard, from plain stock or
/// from a flash sale's pool.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ReservationRec {
    /// The order holding the units.
    pub order_id: String,
    /// The order's owner.
    pub user_id: String,
    /// SKU.
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// The sale whose pool the units came from, if any.
    pub sale_id: Option<String>,
    /// When the order expires; the SKU's shard releases the units by
    /// itself a grace period later if nobody settled them (a crash between
    /// reserving and recording the order must not leak stock).
    pub expires_at: Millis,
}

/// A flash sale. Owned by the shard of its SKU (its id hashes there too).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SaleRec {
    /// Id (UUIDv7).
    pub id: String,
    /// SKU on sale.
    pub sku: String,
    /// Units in the sale's pool.
    pub quantity: u32,
    /// Sale price in minor units.
    pub price_cents: i64,
    /// Currency of the SKU.
    pub currency: String,
    /// Window start (inclusive).
    pub starts_at: Millis,
    /// Window end (exclusive).
    pub ends_at: Millis,
    /// Most units one user may hold (pending or paid).
    pub per_user_limit: u32,
}

/// Status of an order.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Stock reserved, waiting for payment.
    Pending,
    /// Paid: reserved units are sold.
    Paid,
    /// Payment declined: stock released.
    PaymentFailed,
    /// Cancelled by its owner: stock released.
    Cancelled,
    /// Not paid in time: stock released.
    Expired,
}

impl OrderStatus {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::PaymentFailed => "payment_failed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
        }
    }

    /// The event emitted on entering this status.
    pub fn event_kind(self) -> &'static str {
        match self {
            OrderStatus::Pending => "order.created",
            OrderStatus::Paid => "order.paid",
            OrderStatus::PaymentFailed => "order.payment_failed",
            OrderStatus::Cancelled => "order.cancelled",
            OrderStatus::Expired => "order.expired",
        }
    }
}

/// One line of an order or a cart.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, serde::Serialize)]
pub struct Line {
    /// SKU.
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// Unit price in minor units.
    pub price_cents: i64,
}

/// The sum of `lines` in minor units (saturating: never wraps).
pub fn total_cents(lines: &[Line]) -> i64 {
    lines
        .iter()
        .map(|l| l.price_cents.saturating_mul(i64::from(l.quantity)))
        .fold(0, i64::saturating_add)
}

/// An order. Owned by its user's shard (its id hashes there).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct OrderRec {
    /// Id (UUIDv7).
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Status.
    pub status: OrderStatus,
    /// Lines.
    pub items: Vec<Line>,
    /// Sum of the lines.
    pub total_cents: i64,
    /// Currency of every line.
    pub currency: String,
    /// The flash sale it was bought in, if any.
    pub sale_id: Option<String>,
    /// Creation time.
    pub created_at: Millis,
    /// Last status change.
    pub updated_at: Millis,
    /// When a pending order expires.
    pub expires_at: Millis,
}

/// The first response to an idempotent request, kept for replays.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct IdempotencyRec {
    /// sha256 of the request (method, path, body).
    pub fingerprint: [u8; 32],
    /// Response status.
    pub status: u16,
    /// The order the request created. Its response is the order as it was
    /// created (re-rendered on a replay: status `pending`, `updated_at` =
    /// `created_at`), so the body is not stored twice.
    pub order_id: String,
    /// When it was recorded (kept at least 24 h).
    pub at: Millis,
}

/// An event for the rest of the system (API.md Events), recorded in the same
/// commit as the change it describes (outbox).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EventRec {
    /// Position in this shard's event log (from 1).
    pub offset: u64,
    /// Unique event id (UUIDv7), for idempotent consumers.
    pub id: String,
    /// Topic, e.g. `rayltics.orders`.
    pub topic: String,
    /// Aggregate id (order id, SKU, room): the partition key.
    pub key: String,
    /// Kind, e.g. `order.created`.
    pub kind: String,
    /// When it happened.
    pub at: Millis,
    /// The aggregate after the change, as JSON.
    pub payload: Vec<u8>,
}

/// One chat message, as archived on its room's shard.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ChatMessageRec {
    /// Room name.
    pub room: String,
    /// Position in the room (from 1, gap-free).
    pub seq: u64,
    /// Message id (UUIDv7).
    pub id: String,
    /// Sender's user id.
    pub from: String,
    /// The text.
    pub text: String,
    /// When the room's shard accepted it.
    pub at: Millis,
}
