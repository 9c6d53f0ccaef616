//! Flash-sale handlers. A sale lives on its SKU's shard (its id is drawn to
//! hash there); a purchase is coordinated by the buyer's shard.

use serde::Deserialize;

use rayltics_commerce::clock::parse_rfc3339;
use rayltics_commerce::model::SaleRec;
use rayltics_commerce::{DomainError, MAX_STOCK, ids};
use rayltics_net::Response;

use super::input::MAX_LINE_QUANTITY;
use super::orders::stored;
use super::{ApiError, ApiResult, Ctx, input, views};
use crate::ops::{Op, OpReply, Purchase, call_owner, unexpected};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    sku: String,
    quantity: i64,
    price_cents: i64,
    starts_at: String,
    ends_at: String,
    per_user_limit: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurchaseBody {
    quantity: i64,
}

fn time(field: &str, value: &str) -> Result<i64, ApiError> {
    parse_rfc3339(value).ok_or_else(|| {
        DomainError::invalid(format!(
            "{field}: must be an RFC 3339 time, e.g. 2026-11-24T12:00:00Z"
        ))
        .into()
    })
}

fn sale_response(status: u16, reply: OpReply) -> ApiResult {
    match reply {
        OpReply::Sale(s, remaining) => Ok(Response::json(status, &views::sale(&s, remaining))),
        other => Err(unexpected(other).into()),
    }
}

/// POST /api/v1/flash-sales (admin)
pub(super) async fn create(ctx: &Ctx<'_>) -> ApiResult {
    ctx.admin()?;
    let b: CreateBody = input::json(ctx.req)?;
    input::sku("sku", &b.sku)?;
    input::range("quantity", b.quantity, 1, MAX_STOCK)?;
    input::range("price_cents", b.price_cents, 0, 1_000_000_000_000)?;
    input::range(
        "per_user_limit",
        b.per_user_limit,
        1,
        i64::from(MAX_LINE_QUANTITY),
    )?;
    let starts_at = time("starts_at", &b.starts_at)?;
    let ends_at = time("ends_at", &b.ends_at)?;
    if ends_at <= starts_at {
        return Err(DomainError::invalid("ends_at: must be after starts_at").into());
    }
    let home = ctx.router.owner_of(b.sku.as_bytes());
    let sale = SaleRec {
        id: ids::id_on_shard(home, ctx.router.shard_count()),
        sku: b.sku,
        quantity: u32::try_from(b.quantity).unwrap_or(0),
        price_cents: b.price_cents,
        currency: String::new(),
        starts_at,
        ends_at,
        per_user_limit: u32::try_from(b.per_user_limit).unwrap_or(0),
    };
    let reply = crate::ops::call(ctx.router, home, Op::CreateSale { sale }).await?;
    sale_response(201, reply)
}

fn sale_id(ctx: &Ctx<'_>) -> Result<String, ApiError> {
    let id = ctx.param("id");
    if !ids::is_id(id) {
        return Err(DomainError::NotFound("flash sale").into());
    }
    Ok(id.to_owned())
}

/// GET /api/v1/flash-sales/{id}
pub(super) async fn get(ctx: &Ctx<'_>) -> ApiResult {
    let id = sale_id(ctx)?;
    sale_response(
        200,
        call_owner(ctx.router, &id, Op::GetSale { id: id.clone() }).await?,
    )
}

/// POST /api/v1/flash-sales/{id}/purchase
pub(super) async fn purchase(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let sale_id = sale_id(ctx)?;
    let key = input::idempotency_key(ctx.req)?;
    let b: PurchaseBody = input::json(ctx.req)?;
    input::range("quantity", b.quantity, 1, i64::from(MAX_LINE_QUANTITY))?;
    let op = Op::Purchase(Purchase {
        user_id: caller.user_id.clone(),
        key,
        fingerprint: input::fingerprint(ctx.req),
        sale_id,
        quantity: u32::try_from(b.quantity).unwrap_or(0),
    });
    stored(call_owner(ctx.router, &caller.user_id, op).await?)
}
