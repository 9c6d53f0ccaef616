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

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use rkyv::{Archive, Deserialize, Serialize};

use crate::change::Change;
use crate::clock::Millis;
use crate::ids::{IdKey, id_key};
use crate::model::{
    EventRec, IdempotencyRec, OrderRec, OrderStatus, ProductRec, RefreshFamily, ReservationRec,
    SaleRec, Stock, UserRec,
};
use crate::search::{ProductDoc, SearchIndex};

pub use catalog::ProductPatch;
pub use chat::{ROOM_ARCHIVE_RETAINED, RoomLog, RoomSlice, set_room_messages_retained};
pub use orders::{CartLine, OrderPage};
pub use stock::{RESERVATION_GRACE_MS, ReserveLine, SaleCounts};
pub use users::RefreshOutcome;

/// The shard's hash maps: foldhash (fast, randomly seeded per process)
/// instead of SipHash; replaying a journal is mostly map inserts.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Events kept in memory (and in snapshots) per shard for consumers that
/// read the event log by offset. While an outbox relay is configured
/// ([`set_hold_unpublished_events`]) only *published* events count against
/// this: unpublished ones are never trimmed.
pub const EVENT_LOG_RETAINED: usize = 100_000;

/// Node-wide switch: an outbox relay (Kafka) publishes the event log, so
/// events after the shard's published offset must stay until the relay
/// marks them published. A process-wide flag rather than a field because
/// recovery and the snapshot builder rebuild [`ShardData`] on their own
/// threads and must trim exactly as the live shard does.
static HOLD_UNPUBLISHED: AtomicBool = AtomicBool::new(false);

/// Keeps unpublished events in the event log (never trimmed) when `hold`;
/// set once at start, before any shard opens its store, when a relay is
/// configured.
pub fn set_hold_unpublished_events(hold: bool) {
    HOLD_UNPUBLISHED.store(hold, Ordering::Relaxed);
}

/// Whether unpublished events are held (see [`set_hold_unpublished_events`]).
pub fn hold_unpublished_events() -> bool {
    HOLD_UNPUBLISHED.load(Ordering::Relaxed)
}

/// The part of a shard's state that snapshots hold. Everything here is
/// rebuilt exactly by replaying the journal.
///
/// What grows with traffic (orders, reservations, idempotency records, the
/// orders index) lives in B-trees, not hash maps: a hash map that fills up
/// re-inserts every entry into a table twice the size in one step, a pause
/// on the shard that grows with the map (tens of ms at 100 000 orders,
/// measured: BENCHMARKS.md), while a B-tree grows a node at a time. Order
/// ids are UUIDv7, so new orders append at the tree's right edge, which
/// stays in cache.
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
    /// order -> its reservations on this shard.
    reservations: BTreeMap<IdKey, Vec<ReservationRec>>,
    sales: Map<String, (SaleRec, SaleCounts)>,
    orders: BTreeMap<IdKey, OrderRec>,
    /// user id -> idempotency key -> first response (nested, so a lookup
    /// by `&str` allocates nothing).
    idempotency: BTreeMap<IdKey, BTreeMap<String, IdempotencyRec>>,
    events: VecDeque<EventRec>,
    next_event_offset: u64,
    /// room -> its sequence and archive.
    rooms: Map<String, RoomLog>,
    /// Last event offset the outbox relay had acknowledged by the broker
    /// (0: none). Only moves forward.
    events_published: u64,
}

/// A shard's commerce state.
#[derive(Debug, Default)]
pub struct ShardData {
    d: Durable,
    search: SearchIndex,
    /// (expires_at, order) of reservations held here.
    reservation_expiry: BTreeSet<(Millis, IdKey)>,
    /// The orders owned here, by time, by user and by expiry.
    orders: OrderIndex,
    /// (at, user, key) of every idempotency record: expiry takes what is
    /// older than the cut-off without scanning the rest.
    idempotency_by_time: BTreeSet<(Millis, IdKey, String)>,
    /// Tasks waiting for the event log to grow (the relay's long poll);
    /// woken by every appended event.
    event_waiters: RefCell<Vec<Waker>>,
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
        for (&order, lines) in &s.d.reservations {
            if let Some(r) = lines.first() {
                s.reservation_expiry.insert((r.expires_at, order));
            }
        }
        for (&key, o) in &s.d.orders {
            s.orders.insert(key, o);
        }
        for (&user, keys) in &s.d.idempotency {
            for (key, rec) in keys {
                s.idempotency_by_time.insert((rec.at, user, key.clone()));
            }
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
                    held_by_user: BTreeMap::new(),
                };
                self.d.sales.insert(sale.id.clone(), (sale, counts));
            }
            Change::OrderPut(o) => {
                let key = id_key(&o.id);
                if let Some(old) = self.d.orders.get(&key) {
                    self.orders.expiry.remove(&(old.expires_at, key));
                }
                self.orders.insert(key, &o);
                self.d.orders.insert(key, o);
            }
            Change::IdempotencySaved { user_id, key, rec } => {
                let (at, user) = (rec.at, id_key(&user_id));
                let keys = self.d.idempotency.entry(user).or_default();
                if let Some(old) = keys.insert(key.clone(), rec) {
                    self.idempotency_by_time
                        .remove(&(old.at, user, key.clone()));
                }
                self.idempotency_by_time.insert((at, user, key));
            }
            Change::IdempotencyExpired { before } => self.expire_idempotency(before),
            Change::ChatPosted(m) => self.apply_chat_posted(m),
            Change::Event(e) => {
                self.d.next_event_offset = e.offset + 1;
                if self.d.events.capacity() == 0 {
                    // The ring's full size at once: growing it later would
                    // copy up to `EVENT_LOG_RETAINED` events in one step.
                    self.d.events.reserve_exact(EVENT_LOG_RETAINED + 1);
                }
                self.d.events.push_back(e);
                self.trim_events();
                for w in self.event_waiters.get_mut().drain(..) {
                    w.wake();
                }
            }
            Change::EventsPublished { upto } => {
                let upto = upto.min(self.last_event_offset());
                if upto > self.d.events_published {
                    self.d.events_published = upto;
                    self.trim_events();
                }
            }
        }
    }

    /// Last offset of the event log (0: no event yet).
    pub fn last_event_offset(&self) -> u64 {
        self.d.next_event_offset.saturating_sub(1)
    }

    /// Last event offset the outbox relay has published (0: none).
    pub fn events_published(&self) -> u64 {
        self.d.events_published
    }

    /// Events committed but not yet published by the outbox relay.
    pub fn outbox_backlog(&self) -> u64 {
        self.last_event_offset()
            .saturating_sub(self.d.events_published)
    }

    /// Ready once the log holds an event after `after`; otherwise the task
    /// is woken when the next event is appended (on this shard).
    pub fn poll_events_after(&self, after: u64, cx: &mut Context<'_>) -> Poll<()> {
        if self.last_event_offset() > after {
            return Poll::Ready(());
        }
        let mut waiters = self.event_waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    fn trim_events(&mut self) {
        trim_event_log(
            &mut self.d.events,
            EVENT_LOG_RETAINED,
            self.d.events_published,
            hold_unpublished_events(),
        );
    }
}

/// Drops the oldest events beyond `retained`; with `hold`, never one after
/// `published` (the outbox relay has not had it acknowledged yet).
fn trim_event_log(events: &mut VecDeque<EventRec>, retained: usize, published: u64, hold: bool) {
    while events.len() > retained {
        match events.front() {
            Some(e) if !hold || e.offset <= published => {
                events.pop_front();
            }
            _ => break,
        }
    }
}

/// Derived indexes over a shard's orders (rebuilt from the durable maps).
#[derive(Debug, Default)]
struct OrderIndex {
    /// (expires_at, order) of pending orders.
    expiry: BTreeSet<(Millis, IdKey)>,
    /// (created_at, order) of every order.
    by_time: BTreeSet<(Millis, IdKey)>,
    /// user id -> (created_at, order) of their orders.
    by_user: BTreeMap<IdKey, BTreeSet<(Millis, IdKey)>>,
}

impl OrderIndex {
    fn insert(&mut self, key: IdKey, o: &OrderRec) {
        self.by_time.insert((o.created_at, key));
        self.by_user
            .entry(id_key(&o.user_id))
            .or_default()
            .insert((o.created_at, key));
        if o.status == OrderStatus::Pending {
            self.expiry.insert((o.expires_at, key));
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

#[cfg(test)]
mod event_log_tests {
    use super::*;

    fn event(offset: u64) -> EventRec {
        EventRec {
            offset,
            id: format!("e{offset}"),
            topic: "rayltics.orders".into(),
            key: "o1".into(),
            kind: "order.created".into(),
            at: 0,
            payload: Vec::new(),
        }
    }

    fn log(offsets: std::ops::RangeInclusive<u64>) -> VecDeque<EventRec> {
        offsets.map(event).collect()
    }

    fn offsets(events: &VecDeque<EventRec>) -> Vec<u64> {
        events.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn without_a_relay_the_log_keeps_the_newest() {
        let mut events = log(1..=6);
        trim_event_log(&mut events, 3, 0, false);
        assert_eq!(offsets(&events), [4, 5, 6]);
    }

    #[test]
    fn with_a_relay_unpublished_events_are_never_trimmed() {
        let mut events = log(1..=6);
        trim_event_log(&mut events, 3, 0, true);
        assert_eq!(offsets(&events), [1, 2, 3, 4, 5, 6]);
        trim_event_log(&mut events, 3, 2, true);
        assert_eq!(offsets(&events), [3, 4, 5, 6], "only published ones go");
        trim_event_log(&mut events, 3, 6, true);
        assert_eq!(offsets(&events), [4, 5, 6], "then the usual bound");
    }

    #[test]
    fn published_offset_only_moves_forward_and_stays_within_the_log() {
        let mut data = ShardData::new();
        for o in 1..=3 {
            data.apply(Change::Event(event(o)));
        }
        assert_eq!(data.outbox_backlog(), 3);
        data.apply(Change::EventsPublished { upto: 2 });
        assert_eq!((data.events_published(), data.outbox_backlog()), (2, 1));
        data.apply(Change::EventsPublished { upto: 1 });
        assert_eq!(data.events_published(), 2, "never backwards");
        data.apply(Change::EventsPublished { upto: 99 });
        assert_eq!(data.events_published(), 3, "never past the log");
        assert_eq!(data.outbox_backlog(), 0);
    }

    #[test]
    fn appending_an_event_wakes_the_waiting_reader() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicUsize;
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut data = ShardData::new();
        assert!(data.poll_events_after(0, &mut cx).is_pending());
        assert!(data.poll_events_after(0, &mut cx).is_pending());
        data.apply(Change::Event(event(1)));
        assert_eq!(count.0.load(Ordering::Relaxed), 1, "woken once");
        assert!(data.poll_events_after(0, &mut cx).is_ready());
        assert!(data.poll_events_after(1, &mut cx).is_pending());
    }
}
