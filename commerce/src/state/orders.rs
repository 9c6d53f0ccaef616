//! Orders, carts, idempotency keys and the event log (the user's shard).

use rkyv::{Archive, Deserialize, Serialize};

use crate::change::Change;
use crate::clock::Millis;
use crate::error::{DomainError, DomainResult};
use crate::ids::id_key;
use crate::model::{EventRec, IdempotencyRec, OrderRec, OrderStatus};

use super::ShardData;

/// Most distinct SKUs in one cart.
pub(crate) const MAX_CART_LINES: usize = 100;

/// One cart line (keyed by SKU in its cart).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CartLine {
    /// Units.
    pub quantity: u32,
    /// Unit price when the line was last set.
    pub price_cents: i64,
    /// Currency of the price.
    pub currency: String,
}

/// One page of orders, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderPage {
    /// The orders.
    pub items: Vec<OrderRec>,
    /// Whether more orders follow the last one.
    pub more: bool,
}

impl ShardData {
    /// A user's cart, sorted by SKU.
    pub fn cart(&self, user_id: &str) -> Vec<(String, CartLine)> {
        let mut lines: Vec<(String, CartLine)> = self
            .d
            .carts
            .get(user_id)
            .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        lines
    }

    /// Sets (or with 0 removes) a cart line.
    pub fn plan_cart_put(
        &self,
        user_id: &str,
        sku: &str,
        line: CartLine,
    ) -> DomainResult<Vec<Change>> {
        let cart = self.d.carts.get(user_id);
        let is_new = cart.is_none_or(|c| !c.contains_key(sku));
        if line.quantity > 0 && is_new && cart.is_some_and(|c| c.len() >= MAX_CART_LINES) {
            return Err(DomainError::invalid(format!(
                "a cart holds at most {MAX_CART_LINES} different SKUs"
            )));
        }
        Ok(vec![Change::CartPut {
            user_id: user_id.to_owned(),
            sku: sku.to_owned(),
            quantity: line.quantity,
            price_cents: line.price_cents,
            currency: line.currency,
        }])
    }

    /// An order by id.
    pub fn order(&self, id: &str) -> Option<&OrderRec> {
        self.d.orders.get(&id_key(id))
    }

    /// Records a new or changed order with its event (`kind` from its
    /// status) and returns the changes.
    pub fn plan_order_put(&self, order: OrderRec, payload: Vec<u8>, now: Millis) -> Vec<Change> {
        let event = self.next_event(
            "rayltics.orders",
            &order.id,
            order.status.event_kind(),
            payload,
            now,
            0,
        );
        vec![Change::OrderPut(order), Change::Event(event)]
    }

    /// Moves a pending order to `status` at `now`; `Err` unless pending.
    pub fn transition(&self, id: &str, status: OrderStatus, now: Millis) -> DomainResult<OrderRec> {
        let mut o = self
            .order(id)
            .cloned()
            .ok_or(DomainError::NotFound("order"))?;
        if o.status != OrderStatus::Pending {
            return Err(DomainError::Conflict(
                "order_not_pending",
                format!("the order is {}", o.status.as_str()),
            ));
        }
        o.status = status;
        o.updated_at = now.max(o.updated_at);
        Ok(o)
    }

    /// Pending orders whose time ran out at `now` (at most `max`).
    pub fn overdue_orders(&self, now: Millis, max: usize) -> Vec<String> {
        self.orders
            .expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .filter_map(|(_, key)| self.d.orders.get(key))
            .map(|o| o.id.clone())
            .collect()
    }

    /// Orders newest first, of one user or of everyone on this shard,
    /// strictly after `after` = (created_at, id) of the previous page's last.
    pub fn orders_page(
        &self,
        user_id: Option<&str>,
        after: Option<&(Millis, String)>,
        limit: usize,
    ) -> OrderPage {
        let empty = Default::default();
        let set = match user_id {
            Some(u) => self.orders.by_user.get(&id_key(u)).unwrap_or(&empty),
            None => &self.orders.by_time,
        };
        let after = after.map(|(at, id)| (*at, id_key(id)));
        let mut it = set
            .iter()
            .rev()
            .skip_while(|k| after.is_some_and(|a| **k >= a))
            .filter_map(|(_, key)| self.d.orders.get(key));
        let items: Vec<OrderRec> = it.by_ref().take(limit).cloned().collect();
        let more = it.next().is_some();
        OrderPage { items, more }
    }

    /// The first response recorded under a user's idempotency key.
    pub fn idempotent(&self, user_id: &str, key: &str) -> Option<&IdempotencyRec> {
        self.d.idempotency.get(&id_key(user_id))?.get(key)
    }

    /// How long idempotency records are kept (API.md: at least 24 h).
    pub const IDEMPOTENCY_TTL_MS: Millis = 24 * 3_600_000;

    /// The change that forgets idempotency records past their TTL at `now`,
    /// if there are any.
    pub fn plan_idempotency_expiry(&self, now: Millis) -> Option<Change> {
        let before = now.saturating_sub(Self::IDEMPOTENCY_TTL_MS);
        self.idempotency_by_time
            .first()
            .is_some_and(|(at, _, _)| *at < before)
            .then_some(Change::IdempotencyExpired { before })
    }

    /// Forgets every idempotency record with `at < before`: the front of
    /// the time index, nothing else is looked at.
    pub(super) fn expire_idempotency(&mut self, before: Millis) {
        let kept = self
            .idempotency_by_time
            .split_off(&(before, 0, String::new()));
        let expired = std::mem::replace(&mut self.idempotency_by_time, kept);
        for (_, user, key) in expired {
            if let Some(keys) = self.d.idempotency.get_mut(&user) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.d.idempotency.remove(&user);
                }
            }
        }
    }

    /// Records the first response under a user's idempotency key.
    pub fn plan_idempotency(&self, user_id: &str, key: &str, rec: IdempotencyRec) -> Change {
        Change::IdempotencySaved {
            user_id: user_id.to_owned(),
            key: key.to_owned(),
            rec,
        }
    }

    /// Events of this shard's log after `offset` (at most `limit`), oldest
    /// first; the last offset the log has reached; the oldest one retained.
    pub fn events_after(&self, offset: u64, limit: usize) -> (Vec<EventRec>, u64, u64) {
        let first = self.d.events.front().map_or(0, |e| e.offset);
        let skip = usize::try_from(offset.saturating_add(1).saturating_sub(first)).unwrap_or(0);
        let items = self
            .d
            .events
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect();
        (items, self.d.next_event_offset.saturating_sub(1), first)
    }

    /// The event record for the `i`-th event of the batch being planned.
    pub(super) fn next_event(
        &self,
        topic: &str,
        key: &str,
        kind: &str,
        payload: Vec<u8>,
        now: Millis,
        i: u64,
    ) -> EventRec {
        EventRec {
            offset: self.d.next_event_offset.max(1) + i,
            id: crate::ids::new_id(),
            topic: topic.to_owned(),
            key: key.to_owned(),
            kind: kind.to_owned(),
            at: now,
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(user: &str, key: &str, at: Millis) -> Change {
        Change::IdempotencySaved {
            user_id: user.into(),
            key: key.into(),
            rec: IdempotencyRec {
                fingerprint: [0; 32],
                status: 201,
                order_id: "o".into(),
                at,
            },
        }
    }

    #[test]
    fn idempotency_records_expire_after_a_day() {
        let mut s = ShardData::new();
        let day = ShardData::IDEMPOTENCY_TTL_MS;
        s.apply(saved("u", "old", 1_000));
        s.apply(saved("u", "new", 1_000 + day));
        assert_eq!(s.plan_idempotency_expiry(1_000 + day), None);
        let expire = s.plan_idempotency_expiry(2_000 + day).expect("one is old");
        s.apply(expire);
        assert!(s.idempotent("u", "old").is_none());
        assert!(s.idempotent("u", "new").is_some());
    }

    /// Any id string keys an order, not only the canonical ones the node
    /// makes (nothing is dropped), and another spelling finds nothing.
    #[test]
    fn orders_are_found_by_exactly_their_id() {
        let mut s = ShardData::new();
        let canonical = crate::ids::id_on_shard(0, 1);
        for id in [canonical.as_str(), "o-1"] {
            s.apply(Change::OrderPut(OrderRec {
                id: id.into(),
                user_id: "u".into(),
                status: OrderStatus::Pending,
                items: Vec::new(),
                total_cents: 0,
                currency: "EUR".into(),
                sale_id: None,
                created_at: 1,
                updated_at: 1,
                expires_at: 5,
            }));
        }
        assert_eq!(s.order("o-1").map(|o| o.id.as_str()), Some("o-1"));
        assert_eq!(
            s.order(&canonical).map(|o| o.id.as_str()),
            Some(canonical.as_str())
        );
        assert!(s.order("O-1").is_none());
        assert!(s.order(&canonical.to_uppercase()).is_none());
        let mut overdue = s.overdue_orders(5, 10);
        overdue.sort();
        let mut both = vec![canonical.clone(), "o-1".to_owned()];
        both.sort();
        assert_eq!(
            overdue, both,
            "the sweep reads the ids back from the orders"
        );
        assert_eq!(s.orders_page(Some("u"), None, 10).items.len(), 2);
    }

    /// Expiry through the time index forgets exactly the records older
    /// than the cut-off (what a scan of every record would), also for a
    /// key saved twice and after a rebuild from the durable state.
    #[test]
    fn expiry_forgets_exactly_the_old_records() {
        let mut s = ShardData::new();
        let mut all = Vec::new();
        for i in 0..200_i64 {
            let (user, key, at) = (
                format!("u{}", i % 7),
                format!("k{}", i % 50),
                (i * 37) % 101,
            );
            s.apply(saved(&user, &key, at));
            all.retain(|(u, k, _): &(String, String, Millis)| (u, k) != (&user, &key));
            all.push((user, key, at));
        }
        let rebuilt = ShardData::from_durable(
            rkyv::from_bytes::<super::super::Durable, rkyv::rancor::Error>(
                &rkyv::to_bytes::<rkyv::rancor::Error>(s.durable()).unwrap(),
            )
            .unwrap(),
        );
        for mut data in [s, rebuilt] {
            data.apply(Change::IdempotencyExpired { before: 50 });
            for (user, key, at) in &all {
                assert_eq!(
                    data.idempotent(user, key).is_some(),
                    *at >= 50,
                    "{user} {key} {at}"
                );
            }
            assert!(data.idempotency_by_time.iter().all(|(at, _, _)| *at >= 50));
            assert_eq!(
                data.idempotency_by_time.len(),
                all.iter().filter(|r| r.2 >= 50).count()
            );
        }
    }
}
