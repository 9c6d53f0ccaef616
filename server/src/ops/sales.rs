//! Flash sales. A sale lives on its SKU's shard (its id hashes there); a
//! purchase runs on the buyer's shard: idempotency check, then one message
//! to the sale's shard (window, per-user limit, pool decrement, all in one
//! local step, durable before the reply), then the pending order at the sale
//! price in one commit with its event and idempotency record. When buyer and
//! sale share a shard, reservation and order go into that one commit.

use rayltics_commerce::model::{Line, OrderRec, OrderStatus, total_cents};
use rayltics_commerce::{DomainError, DomainResult, ids};

use super::idempotency::{self, Begin};
use super::orders::record_new_order;
use super::{Op, OpReply, call};
use crate::service::ShardState;

/// A flash-sale purchase (runs on the buyer's shard).
#[derive(Debug)]
pub struct Purchase {
    /// Buyer.
    pub user_id: String,
    /// `Idempotency-Key`.
    pub key: String,
    /// Fingerprint of the request.
    pub fingerprint: [u8; 32],
    /// Sale id.
    pub sale_id: String,
    /// Units.
    pub quantity: u32,
}

pub(super) async fn execute(state: &ShardState, op: Op) -> DomainResult<OpReply> {
    match op {
        Op::CreateSale { sale } => {
            let (changes, sale) = state.store.read().plan_create_sale(sale)?;
            state.store.commit(changes).await?;
            let remaining = sale.quantity;
            Ok(OpReply::Sale(sale, remaining))
        }
        Op::GetSale { id } => {
            let data = state.store.read();
            let (sale, counts) = data.sale(&id).ok_or(DomainError::NotFound("flash sale"))?;
            Ok(OpReply::Sale(sale.clone(), counts.remaining))
        }
        Op::SaleReserve {
            sale_id,
            order_id,
            user_id,
            quantity,
            expires_at,
        } => {
            let now = state.shared.clock.now_ms();
            let (changes, sale) = state
                .store
                .read()
                .plan_sale_reserve(&sale_id, &order_id, &user_id, quantity, expires_at, now)?;
            state.store.commit(changes).await?;
            let line = Line {
                sku: sale.sku,
                quantity,
                price_cents: sale.price_cents,
            };
            Ok(OpReply::Reserved(vec![line], sale.currency))
        }
        Op::Purchase(p) => purchase(state, p).await,
        other => Err(super::unexpected_op(other)),
    }
}

async fn purchase(state: &ShardState, p: Purchase) -> DomainResult<OpReply> {
    let guard = match idempotency::begin(state, &p.user_id, &p.key, p.fingerprint)? {
        Begin::Replay(reply) => return Ok(reply),
        Begin::Run(guard) => guard,
    };
    let now = state.shared.clock.now_ms();
    let expires_at = now.saturating_add(state.shared.reservation_ttl_ms);
    let order_id = ids::id_on_shard(state.id, state.shard_count);
    let router = state.router();
    let sale_shard = router.owner_of(p.sale_id.as_bytes());
    // When the sale lives on this shard, its reservation and the order go
    // into one commit (the reservation is appended first, so a torn tail
    // can lose the order but never keep it without its units). Otherwise
    // the sale's shard makes the reservation durable before we record the
    // order.
    let local = sale_shard == state.id;
    let (items, currency, mut changes) = if local {
        let (changes, sale) = state.store.read().plan_sale_reserve(
            &p.sale_id, &order_id, &p.user_id, p.quantity, expires_at, now,
        )?;
        let line = Line {
            sku: sale.sku,
            quantity: p.quantity,
            price_cents: sale.price_cents,
        };
        (vec![line], sale.currency, changes)
    } else {
        let reserve = Op::SaleReserve {
            sale_id: p.sale_id.clone(),
            order_id: order_id.clone(),
            user_id: p.user_id.clone(),
            quantity: p.quantity,
            expires_at,
        };
        match call(&router, sale_shard, reserve).await? {
            OpReply::Reserved(items, currency) => (items, currency, Vec::new()),
            other => return Err(super::unexpected(other)),
        }
    };
    let order = OrderRec {
        id: order_id.clone(),
        user_id: p.user_id.clone(),
        status: OrderStatus::Pending,
        total_cents: total_cents(&items),
        items,
        currency,
        sale_id: Some(p.sale_id.clone()),
        created_at: now,
        updated_at: now,
        expires_at,
    };
    let body = record_new_order(state, &guard, order, now, &mut changes);
    if let Err(e) = state.store.commit(changes).await {
        if local {
            return Err(e);
        }
        let release = Op::Settle {
            order_id,
            sold: false,
        };
        let _ = call(&router, sale_shard, release).await;
        return Err(e);
    }
    crate::realtime::notify_order(state, &p.user_id, &body).await;
    Ok(OpReply::Stored { status: 201, body })
}
