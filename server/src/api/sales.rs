//! Flash-sale handlers. A sale lives on its SKU's shard (its id is drawn to
//! hash there); a purchase is coordinated by the buyer's shard.

use serde::Deserialize;
use utoipa::ToSchema;

use rayltics_commerce::clock::parse_rfc3339;
use rayltics_commerce::model::SaleRec;
use rayltics_commerce::{DomainError, MAX_STOCK, ids};
use rayltics_net::Response;

use super::input::MAX_LINE_QUANTITY;
use super::openapi::{PROBLEM_JSON, Problem};
use super::orders::stored;
use super::{ApiError, ApiResult, Ctx, input, views};
use crate::ops::{Op, OpReply, Purchase, call_owner, unexpected};

/// A new flash sale of an existing product.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateFlashSaleRequest, example = json!({
    "sku": "TSHIRT-RED-M", "quantity": 300, "price_cents": 999,
    "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z", "per_user_limit": 2
}))]
pub(super) struct CreateBody {
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    /// Units for sale (a pool of its own, apart from the product's stock).
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    quantity: i64,
    /// Sale unit price, minor units of the product's currency.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    price_cents: i64,
    #[schema(format = DateTime)]
    starts_at: String,
    /// After `starts_at`.
    #[schema(format = DateTime)]
    ends_at: String,
    /// Most units one user may hold.
    #[schema(minimum = 1, maximum = 10_000)]
    per_user_limit: i64,
}

/// A purchase in a flash sale.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PurchaseRequest, example = json!({"quantity": 1}))]
pub(super) struct PurchaseBody {
    #[schema(minimum = 1, maximum = 10_000)]
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

/// Creates a flash sale (admin).
#[utoipa::path(
    post,
    path = "/api/v1/flash-sales",
    operation_id = "create_flash_sale",
    tag = "flash-sales",
    security(("bearerAuth" = [])),
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created", body = views::SaleView<'static>, links(
            ("get_flash_sale" = (operation_id = "get_flash_sale", parameters(("id" = "$response.body#/id")))),
            ("purchase" = (operation_id = "purchase", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "`bad_request`: malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "`forbidden`: not an admin", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: a field breaks its rule, or unknown SKU", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
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

/// A flash sale, with its current `remaining`.
#[utoipa::path(
    get,
    path = "/api/v1/flash-sales/{id}",
    operation_id = "get_flash_sale",
    tag = "flash-sales",
    params(("id" = String, Path, description = "The flash sale id", format = "uuid")),
    responses(
        (status = 200, description = "The sale", body = views::SaleView<'static>),
        (status = 404, description = "`not_found`", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn get(ctx: &Ctx<'_>) -> ApiResult {
    let id = sale_id(ctx)?;
    sale_response(
        200,
        call_owner(ctx.router, &id, Op::GetSale { id: id.clone() }).await?,
    )
}

/// Buys in a flash sale.
///
/// Answers with a `pending` order at the sale price, stock reserved.
#[utoipa::path(
    post,
    path = "/api/v1/flash-sales/{id}/purchase",
    operation_id = "purchase",
    tag = "flash-sales",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "The flash sale id", format = "uuid"), ("Idempotency-Key" = String, Header, description = "Client-chosen key: the same key and body replay the first response (kept at least 24 h, per user)", min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$")),
    request_body = PurchaseBody,
    responses(
        (status = 201, description = "The pending order (or the replay of the key's first answer)",
            body = views::OrderView<'static>, links(
            ("get_order" = (operation_id = "get_order", parameters(("id" = "$response.body#/id")))),
            ("pay_order" = (operation_id = "pay_order", parameters(("id" = "$response.body#/id")))),
            ("cancel_order" = (operation_id = "cancel_order", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "`bad_request`: malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "`limit_exceeded`: over the sale's `per_user_limit`", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`not_found`: no such sale", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`sold_out`, `sale_not_active`, or `idempotency_in_progress`", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed` (bad `quantity`, missing `Idempotency-Key`), or `idempotency_conflict`", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
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
