//! Order handlers. An order lives on its user's shard (its id hashes there),
//! which also coordinates the saga (see `ops::orders`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::join_all;
use serde::Deserialize;
use utoipa::ToSchema;

use rayltics_commerce::model::OrderRec;
use rayltics_commerce::state::ReserveLine;
use rayltics_commerce::{DomainError, Millis, ids};
use rayltics_net::Response;

use super::input::{MAX_LINE_QUANTITY, MAX_ORDER_LINES};
use super::openapi::{PROBLEM_JSON, Problem};
use super::{ApiError, ApiResult, Ctx, input, views};
use crate::ops::{Op, OpReply, PlaceOrder, call, call_owner, unexpected};

/// An order: either `items`, or `from_cart: true` (the caller's cart, which
/// is then emptied), not both.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PlaceOrderRequest, example = json!({"items": [{"sku": "TSHIRT-RED-M", "quantity": 2}]}))]
pub(super) struct PlaceBody {
    /// The lines; a SKU given twice is merged.
    #[schema(min_items = 1, max_items = 100)]
    items: Option<Vec<LineBody>>,
    /// Order the cart's lines instead.
    #[serde(default)]
    from_cart: bool,
}

/// One line of a new order.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OrderLineRequest)]
pub(super) struct LineBody {
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    #[schema(minimum = 1, maximum = 10_000)]
    quantity: i64,
}

/// A (test) payment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PayOrderRequest, example = json!({"payment_method": "test_card", "card_number": "4242424242424242"}))]
pub(super) struct PayBody {
    /// Only `test_card`.
    #[schema(pattern = "^test_card$")]
    payment_method: String,
    /// 12 to 19 digits; `4000000000000002` is declined.
    #[schema(pattern = "^[0-9]{12,19}$")]
    card_number: String,
}

/// A recorded or fresh response of an idempotent create.
pub(super) fn stored(reply: OpReply) -> ApiResult {
    match reply {
        OpReply::Stored { status, body } => {
            Ok(Response::new(status).with_body("application/json", body))
        }
        other => Err(unexpected(other).into()),
    }
}

/// Places an order.
///
/// Reserves the stock of every line (all or nothing) and answers with the
/// `pending` order, to be paid before `expires_at`.
#[utoipa::path(
    post,
    path = "/api/v1/orders",
    operation_id = "place_order",
    tag = "orders",
    security(("bearerAuth" = [])),
    params(("Idempotency-Key" = String, Header, description = "Client-chosen key: the same key and body replay the first response (kept at least 24 h, per user)", min_length = 1, max_length = 255, pattern = "^[!-~]{1,255}$")),
    request_body = PlaceBody,
    responses(
        (status = 201, description = "The pending order (or the replay of the key's first answer)",
            body = views::OrderView<'static>, links(
            ("get_order" = (operation_id = "get_order", parameters(("id" = "$response.body#/id")))),
            ("pay_order" = (operation_id = "pay_order", parameters(("id" = "$response.body#/id")))),
            ("cancel_order" = (operation_id = "cancel_order", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "`bad_request`: malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`out_of_stock` (nothing reserved), or `idempotency_in_progress`", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed` (bad lines, unknown SKU, empty cart, missing `Idempotency-Key`), or `idempotency_conflict`: the key was used with another body", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn place(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let key = input::idempotency_key(ctx.req)?;
    let b: PlaceBody = input::json(ctx.req)?;
    let items = match (b.items, b.from_cart) {
        (Some(_), true) => {
            return Err(DomainError::invalid("give either items or from_cart, not both").into());
        }
        (None, false) => {
            return Err(DomainError::invalid("items: required (or from_cart: true)").into());
        }
        (None, true) => None,
        (Some(lines), false) => Some(merge_lines(lines)?),
    };
    let op = Op::PlaceOrder(PlaceOrder {
        user_id: caller.user_id.clone(),
        key,
        fingerprint: input::fingerprint(ctx.req),
        items,
    });
    stored(call_owner(ctx.router, &caller.user_id, op).await?)
}

/// Validates lines and merges repeated SKUs.
fn merge_lines(lines: Vec<LineBody>) -> Result<Vec<ReserveLine>, ApiError> {
    if lines.is_empty() || lines.len() > MAX_ORDER_LINES {
        return Err(
            DomainError::invalid(format!("items: must hold 1 to {MAX_ORDER_LINES} lines")).into(),
        );
    }
    let mut merged: Vec<ReserveLine> = Vec::with_capacity(lines.len());
    for (i, l) in lines.into_iter().enumerate() {
        input::sku(&format!("items[{i}].sku"), &l.sku)?;
        input::range(
            &format!("items[{i}].quantity"),
            l.quantity,
            1,
            i64::from(MAX_LINE_QUANTITY),
        )?;
        let q = u32::try_from(l.quantity).unwrap_or(0);
        match merged.iter_mut().find(|m| m.sku == l.sku) {
            Some(m) => {
                m.quantity += q;
                if m.quantity > MAX_LINE_QUANTITY {
                    return Err(DomainError::invalid(format!(
                        "items[{i}].quantity: at most {MAX_LINE_QUANTITY} units of one sku"
                    ))
                    .into());
                }
            }
            None => merged.push(ReserveLine {
                sku: l.sku,
                quantity: q,
            }),
        }
    }
    Ok(merged)
}

fn order_id(ctx: &Ctx<'_>) -> Result<String, ApiError> {
    let id = ctx.param("id");
    if !ids::is_id(id) {
        return Err(DomainError::NotFound("order").into());
    }
    Ok(id.to_owned())
}

fn order_response(reply: OpReply) -> ApiResult {
    match reply {
        OpReply::Order(o) => Ok(Response::json(200, &views::order(&o))),
        other => Err(unexpected(other).into()),
    }
}

/// An order of the caller (any order for an admin).
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    operation_id = "get_order",
    tag = "orders",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "The order id", format = "uuid")),
    responses(
        (status = 200, description = "The order", body = views::OrderView<'static>),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`not_found`: no such order, or not the caller's", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn get(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let id = order_id(ctx)?;
    let op = Op::GetOrder {
        order_id: id.clone(),
        caller,
    };
    order_response(call_owner(ctx.router, &id, op).await?)
}

/// Pays a pending order.
///
/// `paid`, or `payment_failed` (stock released) for the declined test card
/// `4000000000000002`.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/pay",
    operation_id = "pay_order",
    tag = "orders",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "The order id", format = "uuid")),
    request_body = PayBody,
    responses(
        (status = 200, description = "The order, `paid` or `payment_failed`", body = views::OrderView<'static>),
        (status = 400, description = "`bad_request`: malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`not_found`: no such order, or not the caller's", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`order_not_pending` (also when it just expired), `order_busy`, `reservation_released`", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: bad `payment_method` or `card_number`", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn pay(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let id = order_id(ctx)?;
    let b: PayBody = input::json(ctx.req)?;
    if b.payment_method != "test_card" {
        return Err(DomainError::invalid("payment_method: must be \"test_card\"").into());
    }
    let digits = (12..=19).contains(&b.card_number.len())
        && b.card_number.bytes().all(|c| c.is_ascii_digit());
    if !digits {
        return Err(DomainError::invalid("card_number: must be 12 to 19 digits").into());
    }
    let op = Op::Pay {
        order_id: id.clone(),
        caller,
        card_number: b.card_number,
    };
    order_response(call_owner(ctx.router, &id, op).await?)
}

/// Cancels a pending order and releases its stock.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/cancel",
    operation_id = "cancel_order",
    tag = "orders",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "The order id", format = "uuid")),
    responses(
        (status = 200, description = "The `cancelled` order", body = views::OrderView<'static>),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`not_found`: no such order, or not the caller's", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`order_not_pending`, `order_busy`", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn cancel(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let id = order_id(ctx)?;
    let op = Op::Cancel {
        order_id: id.clone(),
        caller,
    };
    order_response(call_owner(ctx.router, &id, op).await?)
}

/// Lists orders, newest first.
///
/// The caller's own; an admin sees everyone's, or one user's with
/// `user_id`.
#[utoipa::path(
    get,
    path = "/api/v1/orders",
    operation_id = "list_orders",
    tag = "orders",
    security(("bearerAuth" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size; default 20", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page", max_length = 256),
        ("user_id" = Option<String>, Query, description = "Only this user's orders (admin, or the caller's own id)", format = "uuid"),
    ),
    responses(
        (status = 200, description = "A page of orders", body = views::Page<views::OrderView<'static>>),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "`forbidden`: `user_id` of another user, and not an admin", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: an unknown, repeated or invalid query parameter", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn list(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let q = input::query(ctx.req, &["limit", "cursor", "user_id"])?;
    let limit = input::limit(&q)?;
    let after = input::get(&q, "cursor").map(decode_cursor).transpose()?;
    let user = match input::get(&q, "user_id") {
        Some(u) if !caller.admin && u != caller.user_id => {
            return Err(DomainError::Forbidden("only admins list other users' orders").into());
        }
        Some(u) if !ids::is_id(u) => {
            return Err(DomainError::invalid("user_id: not a user id").into());
        }
        Some(u) => Some(u.to_owned()),
        None if caller.admin => None,
        None => Some(caller.user_id.clone()),
    };
    let shards: Vec<usize> = match &user {
        Some(u) => vec![ctx.router.owner_of(u.as_bytes())],
        None => (0..ctx.router.shard_count()).collect(),
    };
    let replies = join_all(shards.into_iter().map(|shard| {
        let op = Op::ListOrders {
            user_id: user.clone(),
            after: after.clone(),
            limit,
        };
        call(ctx.router, shard, op)
    }))
    .await;
    let mut all: Vec<OrderRec> = Vec::new();
    let mut more = false;
    for reply in replies {
        match reply? {
            OpReply::Orders(page) => {
                more |= page.more;
                all.extend(page.items);
            }
            other => return Err(unexpected(other).into()),
        }
    }
    all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    more |= all.len() > limit;
    all.truncate(limit);
    let next_cursor = if more {
        all.last().map(|o| encode_cursor(o.created_at, &o.id))
    } else {
        None
    };
    let items = all.iter().map(views::order).collect();
    Ok(Response::json(200, &views::Page { items, next_cursor }))
}

fn encode_cursor(at: Millis, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{at}.{id}"))
}

fn decode_cursor(c: &str) -> Result<(Millis, String), ApiError> {
    let bad = || ApiError::from(DomainError::invalid("cursor: not a cursor of this list"));
    if c.len() > 256 {
        return Err(bad());
    }
    let raw = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = text.split_once('.').ok_or_else(bad)?;
    let at = at.parse::<Millis>().map_err(|_| bad())?;
    if !ids::is_id(id) {
        return Err(bad());
    }
    Ok((at, id.to_owned()))
}
