//! Cart handlers. A cart lives on its user's shard; setting a line first
//! asks the SKU's shard for the product (it must exist) and its price.

use serde::Deserialize;

use rayltics_commerce::DomainError;
use rayltics_commerce::state::CartLine;
use rayltics_net::Response;

use super::input::MAX_LINE_QUANTITY;
use super::{ApiResult, Ctx, input, views};
use crate::ops::{Op, OpReply, call_owner, unexpected};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    quantity: i64,
}

fn cart_response(reply: OpReply) -> ApiResult {
    match reply {
        OpReply::Cart(lines) => Ok(Response::json(200, &views::cart(lines))),
        other => Err(unexpected(other).into()),
    }
}

/// GET /api/v1/cart
pub(super) async fn get(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let op = Op::GetCart {
        user_id: caller.user_id.clone(),
    };
    cart_response(call_owner(ctx.router, &caller.user_id, op).await?)
}

/// PUT /api/v1/cart/items/{sku}
pub(super) async fn put(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let sku = ctx.param("sku");
    input::sku("sku", sku)?;
    let b: PutBody = input::json(ctx.req)?;
    input::range("quantity", b.quantity, 0, i64::from(MAX_LINE_QUANTITY))?;
    let quantity = u32::try_from(b.quantity).unwrap_or(0);
    set_line(ctx, &caller.user_id, sku, quantity).await
}

/// DELETE /api/v1/cart/items/{sku}
pub(super) async fn delete(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let sku = ctx.param("sku");
    input::sku("sku", sku)?;
    set_line(ctx, &caller.user_id, sku, 0).await
}

async fn set_line(ctx: &Ctx<'_>, user_id: &str, sku: &str, quantity: u32) -> ApiResult {
    let line = if quantity == 0 {
        CartLine {
            quantity,
            price_cents: 0,
            currency: String::new(),
        }
    } else {
        let op = Op::GetProduct {
            sku: sku.to_owned(),
        };
        match call_owner(ctx.router, sku, op).await {
            Ok(OpReply::Product(p, _)) => CartLine {
                quantity,
                price_cents: p.price_cents,
                currency: p.currency,
            },
            Err(DomainError::NotFound(_)) => {
                return Err(DomainError::invalid(format!("sku: unknown sku {sku:?}")).into());
            }
            Err(e) => return Err(e.into()),
            Ok(other) => return Err(unexpected(other).into()),
        }
    };
    let op = Op::PutCart {
        user_id: user_id.to_owned(),
        sku: sku.to_owned(),
        line,
    };
    cart_response(call_owner(ctx.router, user_id, op).await?)
}
