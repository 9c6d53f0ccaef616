//! One shard's commerce state: the durable maps (journaled, snapshotted) and
//! what is derived from them (the search index, expiry queues).
//!
//! Owned by exactly one shard; plain data, no locks. Changes enter only
//! through [`ShardData::apply`] (live writes and recovery alike). The
//! read/decide functions are split by concern:
//! - `users`: registration, login lookup, refresh families.
//! - `catalog`: products and their search.
//! - `stock`: inventory, reservations, flash sales (the SKU's shard).
//! - `orders`: orders, carts, idempotency, the event log (the user's shard).
//! - `chat`: each room's sequence and message archive (the room's shard).

mod catalog;
mod chat;
mod orders;
mod stock;
mod users;

use std::collections::{BTreeSet, VecDeque};

use rkyv::{Archive, Deserialize, Serialize};

use crate::change::Change;
use crate::clock::Millis;
use crate::model::{
    EventRec, IdempotencyRec, OrderRec, OrderStatus, ProductRec, RefreshFamily, ReservationRec,
    SaleRec, Stock, UserRec,
};
use crate::search::{ProductDoc, SearchIndex};

pub use catalog::ProductPatch;
pub use chat::{ROOM_ARCHIVE_RETAINED, RoomLog, RoomSlice};
pub use orders::{CartLine, OrderPage};
pub use stock::{RESERVATION_GRACE_MS, ReserveLine, SaleCounts};
pub use users::RefreshOutcome;

/// The shard's hash maps: foldhash (fast, randomly seeded per process)
/// instead of SipHash; replaying a journal is mostly map inserts.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Events kept in memory (and in snapshots) per shard for consumers that
/// read the event log by offset.
pub const EVENT_LOG_RETAINED: usize = 100_000;

/// The part of a shard's state that snapshots hold. Everything here is
/// rebuilt exactly by replaying the journal.
#[derive(Archive, Serialize, Deserialize, Debug, Default)]
pub struct Durable {
    users: Map<String, UserRec>,
    /// Lower-cased email -> user id.
    emails: Map<String, String>,
    refresh: Map<String, RefreshFamily>,
    products: Map<String, ProductRec>,
    stock: Map<String, Stock>,
    /// user id -> sku -> line.
    carts: Map<String, Map<String, CartLine>>,
    /// order id -> its reservations on this shard.
    reservations: Map<String, Vec<ReservationRec>>,
    sales: Map<String, (SaleRec, SaleCounts)>,
    orders: Map<String, OrderRec>,
    /// user id -> idempotency key -> first response (nested, so a lookup
    /// by `&str` allocates nothing).
    idempotency: Map<String, Map<String, IdempotencyRec>>,
    events: VecDeque<EventRec>,
    next_event_offset: u64,
    /// room -> its sequence and archive.
    rooms: Map<String, RoomLog>,
}

/// A shard's commerce state.
#[derive(Debug, Default)]
pub struct ShardData {
    d: Durable,
    search: SearchIndex,
    /// (expires_at, order id) of reservations held here.
    reservation_expiry: BTreeSet<(Millis, String)>,
    /// The orders owned here, by time, by user and by expiry.
    orders: OrderIndex,
}

impl ShardData {
    /// An empty shard.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the state from a snapshot's durable part.
    pub fn from_durable(d: Durable) -> Self {
        let mut s = ShardData {
            d,
            ..ShardData::default()
        };
        for p in s.d.products.values() {
            s.search.upsert(doc_of(p));
        }
        for (order_id, lines) in &s.d.reservations {
            if let Some(r) = lines.first() {
                s.reservation_expiry
                    .insert((r.expires_at, order_id.clone()));
            }
        }
        for o in s.d.orders.values() {
            s.orders.insert(o);
        }
        s
    }

    /// Pending orders owned here.
    pub fn pending_orders(&self) -> usize {
        self.orders.expiry.len()
    }

    /// Orders holding units here.
    pub fn held_reservations(&self) -> usize {
        self.reservation_expiry.len()
    }

    /// (sale id, remaining units) of every flash sale here.
    pub fn sales_remaining(&self) -> impl Iterator<Item = (&str, u32)> {
        self.d
            .sales
            .iter()
            .map(|(id, (_, c))| (id.as_str(), c.remaining))
    }

    /// The durable part, for a snapshot.
    pub fn durable(&self) -> &Durable {
        &self.d
    }

    /// Applies one change. Deterministic: the same changes in the same order
    /// give the same state (recovery depends on it). A change that no longer
    /// applies (e.g. releasing a reservation that is gone) is a no-op.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::UserCreated(u) => {
                self.d.emails.insert(u.email.clone(), u.id.clone());
                self.d.users.insert(u.id.clone(), u);
            }
            Change::RefreshSet {
                family_id,
                user_id,
                digest,
                expires_at,
            } => {
                self.d.refresh.insert(
                    family_id,
                    RefreshFamily {
                        user_id,
                        digest,
                        expires_at,
                    },
                );
            }
            Change::RefreshRevoked { family_id } => {
                self.d.refresh.remove(&family_id);
            }
            Change::ProductPut(p) => {
                self.search.upsert(doc_of(&p));
                self.d.stock.entry(p.sku.clone()).or_default();
                self.d.products.insert(p.sku.clone(), p);
            }
            Change::ProductDeleted { sku } => {
                self.search.remove(&sku);
                self.d.products.remove(&sku);
            }
            Change::StockSet { sku, on_hand } => {
                self.d.stock.entry(sku).or_default().on_hand = on_hand;
            }
            Change::CartPut {
                user_id,
                sku,
                quantity,
                price_cents,
                currency,
            } => {
                let cart = self.d.carts.entry(user_id.clone()).or_default();
                if quantity == 0 {
                    cart.remove(&sku);
                    if cart.is_empty() {
                        self.d.carts.remove(&user_id);
                    }
                } else {
                    cart.insert(
                        sku,
                        CartLine {
                            quantity,
                            price_cents,
                            currency,
                        },
                    );
                }
            }
            Change::CartCleared { user_id } => {
                self.d.carts.remove(&user_id);
            }
            Change::Reserved(r) => self.apply_reserved(r),
            Change::Released { order_id, sku } => self.settle(&order_id, &sku, false),
            Change::Sold { order_id, sku } => self.settle(&order_id, &sku, true),
            Change::SaleCreated(sale) => {
                let counts = SaleCounts {
                    remaining: sale.quantity,
                    held_by_user: Map::default(),
                };
                self.d.sales.insert(sale.id.clone(), (sale, counts));
            }
            Change::OrderPut(o) => {
                if let Some(old) = self.d.orders.get(&o.id) {
                    self.orders.expiry.remove(&(old.expires_at, old.id.clone()));
                }
                self.orders.insert(&o);
                self.d.orders.insert(o.id.clone(), o);
            }
            Change::IdempotencySaved { user_id, key, rec } => {
                self.d
                    .idempotency
                    .entry(user_id)
                    .or_default()
                    .insert(key, rec);
            }
            Change::IdempotencyExpired { before } => {
                self.d.idempotency.retain(|_, keys| {
                    keys.retain(|_, r| r.at >= before);
                    !keys.is_empty()
                });
            }
            Change::ChatPosted(m) => self.apply_chat_posted(m),
            Change::Event(e) => {
                self.d.next_event_offset = e.offset + 1;
                self.d.events.push_back(e);
                while self.d.events.len() > EVENT_LOG_RETAINED {
                    self.d.events.pop_front();
                }
            }
        }
    }
}

/// Derived indexes over a shard's orders (rebuilt from the durable maps).
#[derive(Debug, Default)]
struct OrderIndex {
    /// (expires_at, order id) of pending orders.
    expiry: BTreeSet<(Millis, String)>,
    /// (created_at, order id) of every order.
    by_time: BTreeSet<(Millis, String)>,
    /// user id -> (created_at, order id) of their orders.
    by_user: Map<String, BTreeSet<(Millis, String)>>,
}

impl OrderIndex {
    fn insert(&mut self, o: &OrderRec) {
        self.by_time.insert((o.created_at, o.id.clone()));
        self.by_user
            .entry(o.user_id.clone())
            .or_default()
            .insert((o.created_at, o.id.clone()));
        if o.status == OrderStatus::Pending {
            self.expiry.insert((o.expires_at, o.id.clone()));
        }
    }
}

/// What the search index needs of a product.
fn doc_of(p: &ProductRec) -> ProductDoc<'_> {
    ProductDoc {
        sku: &p.sku,
        name: &p.name,
        description: &p.description,
        category: &p.category,
        price_cents: p.price_cents,
        created_at_ms: p.created_at,
    }
}
