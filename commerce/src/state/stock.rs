//! Inventory, reservations and flash sales (the SKU's shard).
//!
//! Reserving moves units from available to reserved (plain stock) or out of
//! a sale's pool; settling a reservation either sells the units (they leave
//! `on_hand`) or releases them. A reservation nobody settles is released by
//! its own shard [`RESERVATION_GRACE_MS`] after its order's expiry.

use rkyv::{Archive, Deserialize, Serialize};

use crate::change::Change;
use crate::clock::Millis;
use crate::error::{DomainError, DomainResult};
use crate::ids::{IdKey, id_key};
use crate::model::{Line, ReservationRec, SaleRec, Stock};

use super::ShardData;

/// How long after its order's expiry an unsettled reservation is released
/// by the SKU's shard itself (the order's shard normally settles it first).
pub const RESERVATION_GRACE_MS: Millis = 60_000;

/// A flash sale's live counters.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct SaleCounts {
    /// Units left in the pool.
    pub remaining: u32,
    /// Units each user holds (pending or paid).
    pub held_by_user: std::collections::BTreeMap<IdKey, u32>,
}

/// A reservation request for one order on one shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ReserveLine {
    /// SKU.
    pub sku: String,
    /// Units.
    pub quantity: u32,
}

impl ShardData {
    /// Adjusts a SKU's on-hand count by `delta`; never below what is reserved.
    pub fn plan_adjust(&self, sku: &str, delta: i64) -> DomainResult<(Vec<Change>, Stock)> {
        if !self.d.products.contains_key(sku) {
            return Err(DomainError::NotFound("product"));
        }
        let mut stock = self.stock_of(sku);
        let on_hand = stock
            .on_hand
            .checked_add(delta)
            .filter(|n| *n <= crate::MAX_STOCK)
            .ok_or_else(|| DomainError::invalid("delta: the result is out of range"))?;
        if on_hand < stock.reserved {
            return Err(DomainError::Conflict(
                "below_reserved",
                format!(
                    "on_hand would be {on_hand}, below the {} units reserved",
                    stock.reserved
                ),
            ));
        }
        stock.on_hand = on_hand;
        let changes = vec![Change::StockSet {
            sku: sku.to_owned(),
            on_hand,
        }];
        Ok((changes, stock))
    }

    /// Reserves plain stock for `order_id`: all lines or none. Returns the
    /// changes and the lines priced at the current product prices with
    /// their currency. Re-reserving an order that already holds units here
    /// returns what it holds (a retried saga step).
    pub fn plan_reserve(
        &self,
        order_id: &str,
        user_id: &str,
        lines: &[ReserveLine],
        expires_at: Millis,
    ) -> DomainResult<(Vec<Change>, Vec<Line>, String)> {
        let mut priced = Vec::with_capacity(lines.len());
        let mut currency = None::<&str>;
        for l in lines {
            let p =
                self.d.products.get(&l.sku).ok_or_else(|| {
                    DomainError::invalid(format!("items: unknown sku {:?}", l.sku))
                })?;
            match currency {
                Some(c) if c != p.currency => {
                    return Err(DomainError::invalid(
                        "items: every line of an order must have the same currency",
                    ));
                }
                _ => currency = Some(&p.currency),
            }
            priced.push(Line {
                sku: l.sku.clone(),
                quantity: l.quantity,
                price_cents: p.price_cents,
            });
        }
        let currency = currency.unwrap_or("USD").to_owned();
        if self.d.reservations.contains_key(&id_key(order_id)) {
            return Ok((Vec::new(), priced, currency));
        }
        let mut changes = Vec::with_capacity(lines.len());
        for l in lines {
            if self.stock_of(&l.sku).available() < i64::from(l.quantity) {
                return Err(DomainError::OutOfStock(l.sku.clone()));
            }
            changes.push(Change::Reserved(ReservationRec {
                order_id: order_id.to_owned(),
                user_id: user_id.to_owned(),
                sku: l.sku.clone(),
                quantity: l.quantity,
                sale_id: None,
                expires_at,
            }));
        }
        Ok((changes, priced, currency))
    }

    /// A flash sale and its counters.
    pub fn sale(&self, id: &str) -> Option<(&SaleRec, &SaleCounts)> {
        self.d.sales.get(id).map(|(s, c)| (s, c))
    }

    /// Creates a flash sale on an existing product of this shard (priced in
    /// the product's currency).
    pub fn plan_create_sale(&self, mut sale: SaleRec) -> DomainResult<(Vec<Change>, SaleRec)> {
        let Some(product) = self.d.products.get(&sale.sku) else {
            return Err(DomainError::invalid(format!(
                "sku: unknown sku {:?}",
                sale.sku
            )));
        };
        sale.currency = product.currency.clone();
        Ok((vec![Change::SaleCreated(sale.clone())], sale))
    }

    /// One purchase in a flash sale: window, per-user limit, pool. Returns
    /// the changes and the sale (for pricing the order).
    pub fn plan_sale_reserve(
        &self,
        sale_id: &str,
        order_id: &str,
        user_id: &str,
        quantity: u32,
        expires_at: Millis,
        now: Millis,
    ) -> DomainResult<(Vec<Change>, SaleRec)> {
        let (sale, counts) = self
            .d
            .sales
            .get(sale_id)
            .ok_or(DomainError::NotFound("flash sale"))?;
        if now < sale.starts_at || now >= sale.ends_at {
            return Err(DomainError::SaleNotActive);
        }
        if counts.remaining == 0 {
            return Err(DomainError::SoldOut);
        }
        let held = counts
            .held_by_user
            .get(&id_key(user_id))
            .copied()
            .unwrap_or(0);
        if held.saturating_add(quantity) > sale.per_user_limit {
            return Err(DomainError::LimitExceeded(sale.per_user_limit));
        }
        if counts.remaining < quantity {
            return Err(DomainError::SoldOut);
        }
        let changes = vec![Change::Reserved(ReservationRec {
            order_id: order_id.to_owned(),
            user_id: user_id.to_owned(),
            sku: sale.sku.clone(),
            quantity,
            sale_id: Some(sale_id.to_owned()),
            expires_at,
        })];
        Ok((changes, sale.clone()))
    }

    /// Settles every reservation `order_id` holds here: sells them
    /// (`sold`) or releases them. `Err` when selling and nothing is held
    /// (the reservation was already released).
    pub fn plan_settle(&self, order_id: &str, sold: bool) -> DomainResult<Vec<Change>> {
        let Some(held) = self.d.reservations.get(&id_key(order_id)) else {
            return if sold {
                Err(DomainError::Conflict(
                    "reservation_released",
                    "the order's reservation was already released".into(),
                ))
            } else {
                Ok(Vec::new())
            };
        };
        Ok(held
            .iter()
            .map(|r| {
                let (order_id, sku) = (r.order_id.clone(), r.sku.clone());
                if sold {
                    Change::Sold { order_id, sku }
                } else {
                    Change::Released { order_id, sku }
                }
            })
            .collect())
    }

    /// Orders whose reservations here are past expiry plus grace at `now`
    /// (at most `max`).
    pub fn overdue_reservations(&self, now: Millis, max: usize) -> Vec<String> {
        self.reservation_expiry
            .iter()
            .take_while(|(at, _)| at.saturating_add(RESERVATION_GRACE_MS) <= now)
            .take(max)
            .filter_map(|(_, key)| self.d.reservations.get(key)?.first())
            .map(|r| r.order_id.clone())
            .collect()
    }

    pub(super) fn apply_reserved(&mut self, r: ReservationRec) {
        let key = id_key(&r.order_id);
        match &r.sale_id {
            Some(sale_id) => {
                if let Some((_, c)) = self.d.sales.get_mut(sale_id) {
                    c.remaining = c.remaining.saturating_sub(r.quantity);
                    *c.held_by_user.entry(id_key(&r.user_id)).or_default() += r.quantity;
                }
            }
            None => {
                self.d.stock.entry(r.sku.clone()).or_default().reserved += i64::from(r.quantity);
            }
        }
        self.reservation_expiry.insert((r.expires_at, key));
        self.d.reservations.entry(key).or_default().push(r);
    }

    /// Removes `order_id`'s reservation of `sku`: sold units leave stock,
    /// released ones go back to where they came from.
    pub(super) fn settle(&mut self, order_id: &str, sku: &str, sold: bool) {
        let key = id_key(order_id);
        let Some(held) = self.d.reservations.get_mut(&key) else {
            return;
        };
        let Some(i) = held.iter().position(|r| r.sku == sku) else {
            return;
        };
        let r = held.swap_remove(i);
        if held.is_empty() {
            self.d.reservations.remove(&key);
            self.reservation_expiry.remove(&(r.expires_at, key));
        }
        let q = r.quantity;
        match &r.sale_id {
            Some(sale_id) => {
                if let Some((_, c)) = self.d.sales.get_mut(sale_id)
                    && !sold
                {
                    c.remaining = c.remaining.saturating_add(q);
                    let user = id_key(&r.user_id);
                    if let Some(h) = c.held_by_user.get_mut(&user) {
                        *h = h.saturating_sub(q);
                        if *h == 0 {
                            c.held_by_user.remove(&user);
                        }
                    }
                }
            }
            None => {
                let s = self.d.stock.entry(r.sku.clone()).or_default();
                s.reserved -= i64::from(q);
                if sold {
                    s.on_hand -= i64::from(q);
                }
            }
        }
    }
}
