//! Cart handlers. A cart lives on its user's shard; setting a line first
//! asks the SKU's shard for the product (it must exist) and its price.

use serde::Deserialize;
use utoipa::ToSchema;

use rayltics_commerce::DomainError;
use rayltics_commerce::state::CartLine;
use rayltics_net::Response;

use super::input::MAX_LINE_QUANTITY;
use super::openapi::{PROBLEM_JSON, Problem};
use super::{ApiResult, Ctx, input, views};
use crate::ops::{Op, OpReply, call_owner, unexpected};

/// A cart line's new quantity.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PutCartItemRequest, example = json!({"quantity": 2}))]
pub(super) struct PutBody {
    /// Units; 0 removes the line.
    #[schema(minimum = 0, maximum = 10_000)]
    quantity: i64,
}

fn cart_response(reply: OpReply) -> ApiResult {
    match reply {
        OpReply::Cart(lines) => Ok(Response::json(200, &views::cart(lines))),
        other => Err(unexpected(other).into()),
    }
}

/// The caller's cart.
#[utoipa::path(
    get,
    path = "/api/v1/cart",
    operation_id = "get_cart",
    tag = "cart",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The cart", body = views::CartView),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn get(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let op = Op::GetCart {
        user_id: caller.user_id.clone(),
    };
    cart_response(call_owner(ctx.router, &caller.user_id, op).await?)
}

/// Sets the quantity of a SKU in the caller's cart.
///
/// At the product's current price; 0 removes the line.
#[utoipa::path(
    put,
    path = "/api/v1/cart/items/{sku}",
    operation_id = "put_cart_item",
    tag = "cart",
    security(("bearerAuth" = [])),
    params(("sku" = String, Path, description = "The SKU", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    request_body = PutBody,
    responses(
        (status = 200, description = "The cart", body = views::CartView),
        (status = 400, description = "`bad_request`: malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: unknown SKU, or `quantity` out of range", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn put(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let sku = ctx.param("sku");
    input::sku("sku", sku)?;
    let b: PutBody = input::json(ctx.req)?;
    input::range("quantity", b.quantity, 0, i64::from(MAX_LINE_QUANTITY))?;
    let quantity = u32::try_from(b.quantity).unwrap_or(0);
    set_line(ctx, &caller.user_id, sku, quantity).await
}

/// Removes a SKU from the caller's cart.
#[utoipa::path(
    delete,
    path = "/api/v1/cart/items/{sku}",
    operation_id = "delete_cart_item",
    tag = "cart",
    security(("bearerAuth" = [])),
    params(("sku" = String, Path, description = "The SKU", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The cart", body = views::CartView),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: not a SKU", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
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
