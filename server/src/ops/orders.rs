//! Carts and the order saga, coordinated on the user's shard.
//!
//! Place: reserve every line on its SKU's shard (one message per shard, in
//! parallel); if any shard refuses, release what the others reserved and
//! answer 409 (nothing stays reserved). Then record the order, its event and
//! the idempotency key in one commit. When every line lives on the user's
//! shard, the reservations join that commit (one fdatasync per order). Pay / cancel / expire settle the
//! reservations (sell or release) on the SKU shards, then record the new
//! status. One transition per order at a time (an order-level guard).

use std::collections::BTreeMap;

use futures::future::join_all;
use rayltics_commerce::model::{Line, OrderRec, OrderStatus, total_cents};
use rayltics_commerce::state::ReserveLine;
use rayltics_commerce::{Change, DomainError, DomainResult, ids};
use rayltics_shards::ShardId;

use super::idempotency::{self, Begin};
use super::{Caller, Op, OpReply, call};
use crate::api::views;
use crate::service::ShardState;

/// The test card that is always declined (API.md Orders).
pub const DECLINED_CARD: &str = "4000000000000002";

/// An order to place (runs on the user's shard).
#[derive(Debug)]
pub struct PlaceOrder {
    /// Owner.
    pub user_id: String,
    /// `Idempotency-Key`.
    pub key: String,
    /// Fingerprint of the request.
    pub fingerprint: [u8; 32],
    /// Lines (merged by SKU); `None` = the user's cart.
    pub items: Option<Vec<ReserveLine>>,
}

pub(super) async fn execute(state: &ShardState, op: Op) -> DomainResult<OpReply> {
    match op {
        Op::GetCart { user_id } => Ok(OpReply::Cart(state.store.read().cart(&user_id))),
        Op::PutCart { user_id, sku, line } => {
            let changes = state.store.read().plan_cart_put(&user_id, &sku, line)?;
            state.store.commit(changes).await?;
            Ok(OpReply::Cart(state.store.read().cart(&user_id)))
        }
        Op::PlaceOrder(p) => place(state, p).await,
        Op::GetOrder { order_id, caller } => {
            Ok(OpReply::Order(owned_order(state, &order_id, &caller)?))
        }
        Op::ListOrders {
            user_id,
            after,
            limit,
        } => Ok(OpReply::Orders(state.store.read().orders_page(
            user_id.as_deref(),
            after.as_ref(),
            limit,
        ))),
        Op::Pay {
            order_id,
            caller,
            card_number,
        } => pay(state, &order_id, &caller, &card_number).await,
        Op::Cancel { order_id, caller } => {
            owned_order(state, &order_id, &caller)?;
            let order = finish(state, &order_id, OrderStatus::Cancelled).await?;
            Ok(OpReply::Order(order))
        }
        Op::Reserve {
            order_id,
            user_id,
            lines,
            expires_at,
        } => {
            let (changes, priced, currency) = state
                .store
                .read()
                .plan_reserve(&order_id, &user_id, &lines, expires_at)?;
            state.store.commit(changes).await?;
            Ok(OpReply::Reserved(priced, currency))
        }
        Op::Settle { order_id, sold } => {
            let changes = state.store.read().plan_settle(&order_id, sold)?;
            state.store.commit(changes).await?;
            Ok(OpReply::Done)
        }
        other => Err(super::unexpected_op(other)),
    }
}

async fn place(state: &ShardState, p: PlaceOrder) -> DomainResult<OpReply> {
    let guard = match idempotency::begin(state, &p.user_id, &p.key, p.fingerprint)? {
        Begin::Replay(reply) => return Ok(reply),
        Begin::Run(guard) => guard,
    };
    let from_cart = p.items.is_none();
    let lines = match p.items {
        Some(lines) => lines,
        None => state
            .store
            .read()
            .cart(&p.user_id)
            .into_iter()
            .map(|(sku, l)| ReserveLine {
                sku,
                quantity: l.quantity,
            })
            .collect(),
    };
    if lines.is_empty() {
        return Err(DomainError::invalid(
            "items: the order has no lines (is the cart empty?)",
        ));
    }
    let now = state.shared.clock.now_ms();
    let expires_at = now.saturating_add(state.shared.reservation_ttl_ms);
    let order_id = ids::id_on_shard(state.id, state.shard_count);
    let router = state.router();

    let mut by_shard: BTreeMap<ShardId, Vec<ReserveLine>> = BTreeMap::new();
    for l in &lines {
        by_shard
            .entry(router.owner_of(l.sku.as_bytes()))
            .or_default()
            .push(l.clone());
    }
    // Every line on this shard: reserve and record the order in one commit
    // (reservations first, so a torn tail never keeps the order alone).
    let local_only = by_shard.len() == 1 && by_shard.contains_key(&state.id);
    let (replies, mut changes) = if local_only {
        let lines = by_shard.remove(&state.id).unwrap_or_default();
        let planned = state
            .store
            .read()
            .plan_reserve(&order_id, &p.user_id, &lines, expires_at);
        match planned {
            Ok((changes, priced, currency)) => (
                vec![(state.id, Ok(OpReply::Reserved(priced, currency)))],
                changes,
            ),
            Err(e) => return Err(e),
        }
    } else {
        let replies = join_all(by_shard.into_iter().map(|(shard, lines)| {
            let op = Op::Reserve {
                order_id: order_id.clone(),
                user_id: p.user_id.clone(),
                lines,
                expires_at,
            };
            let router = router.clone();
            async move { (shard, call(&router, shard, op).await) }
        }))
        .await;
        (replies, Vec::new())
    };
    let mut reserved_on = Vec::new();
    let mut priced: Vec<Line> = Vec::with_capacity(lines.len());
    let mut currency: Option<String> = None;
    let mut failure = None;
    for (shard, reply) in replies {
        match reply {
            Ok(OpReply::Reserved(ls, c)) => {
                reserved_on.push(shard);
                if currency.as_ref().is_some_and(|cur| *cur != c) {
                    failure.get_or_insert(DomainError::invalid(
                        "items: every line of an order must have the same currency",
                    ));
                }
                currency.get_or_insert(c);
                priced.extend(ls);
            }
            Ok(other) => {
                failure.get_or_insert(super::unexpected(other));
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        release_on(state, &order_id, reserved_on).await;
        return Err(e);
    }
    // Lines in the order the client gave them.
    priced.sort_by_key(|l| lines.iter().position(|x| x.sku == l.sku));
    let order = OrderRec {
        id: order_id.clone(),
        user_id: p.user_id.clone(),
        status: OrderStatus::Pending,
        total_cents: total_cents(&priced),
        items: priced,
        currency: currency.unwrap_or_else(|| "USD".into()),
        sale_id: None,
        created_at: now,
        updated_at: now,
        expires_at,
    };
    let body = record_new_order(state, &guard, order, now, &mut changes);
    if from_cart {
        changes.push(Change::CartCleared {
            user_id: p.user_id.clone(),
        });
    }
    if let Err(e) = state.store.commit(changes).await {
        if !local_only {
            release_on(state, &order_id, reserved_on).await;
        }
        return Err(e);
    }
    crate::realtime::notify_order(state, &p.user_id, &body).await;
    Ok(OpReply::Stored { status: 201, body })
}

/// Appends to `changes` what records a new pending order: the order, its
/// event and, under the guard's key, its 201 response; returns that body.
pub(super) fn record_new_order(
    state: &ShardState,
    guard: &idempotency::Guard<'_>,
    order: OrderRec,
    now: rayltics_commerce::Millis,
    changes: &mut Vec<Change>,
) -> Vec<u8> {
    let body = views::order_json(&order);
    let payload = crate::events::order_payload_on(&state.store.read(), &order);
    // The order before the record that points at it: a torn journal tail
    // can lose the record, never leave it without its order.
    let recorded = guard.record(201, &order.id, now);
    changes.extend(state.store.read().plan_order_put(order, payload, now));
    changes.push(recorded);
    body
}

/// The order, if `caller` may see it (owner or admin); 404 otherwise.
fn owned_order(state: &ShardState, id: &str, caller: &Caller) -> DomainResult<OrderRec> {
    let data = state.store.read();
    match data.order(id) {
        Some(o) if caller.admin || o.user_id == caller.user_id => Ok(o.clone()),
        _ => Err(DomainError::NotFound("order")),
    }
}

async fn pay(
    state: &ShardState,
    order_id: &str,
    caller: &Caller,
    card: &str,
) -> DomainResult<OpReply> {
    let order = owned_order(state, order_id, caller)?;
    if order.status == OrderStatus::Pending && order.expires_at <= state.shared.clock.now_ms() {
        finish(state, order_id, OrderStatus::Expired).await?;
        return Err(DomainError::Conflict(
            "order_not_pending",
            "the order expired before it was paid".into(),
        ));
    }
    let status = if card == DECLINED_CARD {
        OrderStatus::PaymentFailed
    } else {
        OrderStatus::Paid
    };
    Ok(OpReply::Order(finish(state, order_id, status).await?))
}

/// Expires `id` if it is still pending and overdue (the sweep calls this).
pub async fn expire_order(state: &ShardState, id: &str) -> DomainResult<()> {
    let now = state.shared.clock.now_ms();
    let due = state
        .store
        .read()
        .order(id)
        .is_some_and(|o| o.status == OrderStatus::Pending && o.expires_at <= now);
    if due {
        finish(state, id, OrderStatus::Expired).await?;
    }
    Ok(())
}

/// Moves a pending order to a final status: settles its reservations on
/// their shards (sold when paid, released otherwise), then records the
/// status and its event.
async fn finish(state: &ShardState, id: &str, status: OrderStatus) -> DomainResult<OrderRec> {
    // Not pending any more is `order_not_pending`, checked before the guard:
    // the change that ended the order applies its status before its commit
    // is durable and holds the guard until then, so checking after it would
    // answer `order_busy` for an order already shown as expired or paid.
    // (No await between the check and the guard.)
    let order = state
        .store
        .read()
        .transition(id, status, state.shared.clock.now_ms())?;
    let _busy = OrderGuard::take(state, id)?;
    let router = state.router();
    let mut shards: Vec<ShardId> = order
        .items
        .iter()
        .map(|l| router.owner_of(l.sku.as_bytes()))
        .collect();
    shards.sort_unstable();
    shards.dedup();
    let sold = status == OrderStatus::Paid;
    let results = join_all(shards.iter().map(|&shard| {
        let op = Op::Settle {
            order_id: id.to_owned(),
            sold,
        };
        let router = router.clone();
        async move { call(&router, shard, op).await }
    }))
    .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(e);
    }
    let now = state.shared.clock.now_ms();
    let order = state.store.read().transition(id, status, now)?;
    let payload = crate::events::order_payload_on(&state.store.read(), &order);
    let changes = state
        .store
        .read()
        .plan_order_put(order.clone(), payload, now);
    state.store.commit(changes).await?;
    crate::realtime::notify_order(state, &order.user_id, &views::order_json(&order)).await;
    Ok(order)
}

/// Releases `order_id`'s reservations on `shards` (compensation).
async fn release_on(state: &ShardState, order_id: &str, shards: Vec<ShardId>) {
    let router = state.router();
    for shard in shards {
        let op = Op::Settle {
            order_id: order_id.to_owned(),
            sold: false,
        };
        if let Err(e) = call(&router, shard, op).await {
            // The SKU's shard releases it by itself after the grace period.
            tracing::warn!(order = %order_id, shard, error = %e, "compensating release failed");
        }
    }
}

/// One status transition per order at a time.
struct OrderGuard<'a> {
    state: &'a ShardState,
    slot: (String, String),
}

impl<'a> OrderGuard<'a> {
    fn take(state: &'a ShardState, id: &str) -> DomainResult<Self> {
        let slot = (String::new(), id.to_owned());
        if !state.in_flight.borrow_mut().insert(slot.clone()) {
            return Err(DomainError::Conflict(
                "order_busy",
                "another change of this order is in progress".into(),
            ));
        }
        Ok(OrderGuard { state, slot })
    }
}

impl Drop for OrderGuard<'_> {
    fn drop(&mut self) {
        self.state.in_flight.borrow_mut().remove(&self.slot);
    }
}
