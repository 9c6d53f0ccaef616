//! Catalog and inventory handlers. A product and its stock live on the
//! shard of its SKU; a search asks every shard and merges their pages.

use std::collections::{BTreeMap, HashMap};

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use rayltics_commerce::model::{ProductRec, Stock};
use rayltics_commerce::search::{Query, Sort, SortKey, merge};
use rayltics_commerce::state::ProductPatch;
use rayltics_commerce::{DomainError, MAX_STOCK};
use rayltics_net::Response;

use super::openapi::{PROBLEM_JSON, Problem, SearchSort};
use super::{ApiError, ApiResult, Ctx, input, views};
use crate::ops::{Op, OpReply, call, call_owner, unexpected};

/// Largest `attributes` object, as JSON text.
const MAX_ATTRIBUTES_BYTES: usize = 8 * 1024;
/// Largest price, minor units.
const MAX_PRICE_CENTS: i64 = 1_000_000_000_000;

/// A new product. Text fields hold no control characters but tab and
/// newline; `name` and `category` are trimmed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateProductRequest, example = json!({
    "sku": "TSHIRT-RED-M", "name": "T-shirt, red, M", "description": "Organic cotton",
    "price_cents": 1999, "currency": "USD", "category": "apparel",
    "attributes": {"color": "red", "size": "M"}, "stock": 100
}))]
pub(super) struct CreateBody {
    /// Unique; 1-64 characters of `A-Z a-z 0-9 . _ -`.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    sku: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    name: String,
    #[serde(default)]
    #[schema(
        max_length = 5000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    description: String,
    /// Unit price in minor units.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    price_cents: i64,
    /// Three upper-case letters (ISO 4217), e.g. `USD`.
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    category: String,
    /// A JSON object of at most 8 KiB; default `{}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    attributes: Option<Box<RawValue>>,
    /// Initial units on hand; default 0.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    stock: i64,
}

/// A partial update: the fields given (and not `null`) are replaced, under
/// the rules of `CreateProductRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateProductRequest, example = json!({"price_cents": 1799}))]
pub(super) struct PatchBody {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    name: Option<String>,
    #[schema(
        max_length = 5000,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    description: Option<String>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    price_cents: Option<i64>,
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    category: Option<String>,
    /// A JSON object of at most 8 KiB.
    #[schema(value_type = Option<Object>)]
    attributes: Option<Box<RawValue>>,
}

/// A signed change of the units on hand.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AdjustInventoryRequest, example = json!({"delta": 10}))]
pub(super) struct AdjustBody {
    /// Added to `on_hand`, which never goes below `reserved`.
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000)]
    delta: i64,
}

fn attributes(raw: Option<&RawValue>) -> Result<String, ApiError> {
    let Some(raw) = raw else {
        return Ok("{}".into());
    };
    let text = raw.get();
    if text.len() > MAX_ATTRIBUTES_BYTES {
        return Err(DomainError::invalid(format!(
            "attributes: at most {MAX_ATTRIBUTES_BYTES} bytes of JSON"
        ))
        .into());
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|_| DomainError::invalid("attributes: must be a JSON object"))?;
    if !value.is_object() {
        return Err(DomainError::invalid("attributes: must be a JSON object").into());
    }
    Ok(value.to_string())
}

fn product_fields(
    name: Option<&str>,
    description: Option<&str>,
    price: Option<i64>,
    currency: Option<&str>,
    category: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(n) = name {
        input::text("name", n, 1, 200)?;
    }
    if let Some(d) = description {
        input::text("description", d, 0, 5000)?;
    }
    if let Some(p) = price {
        input::range("price_cents", p, 0, MAX_PRICE_CENTS)?;
    }
    if let Some(c) = currency {
        input::currency(c)?;
    }
    if let Some(c) = category {
        input::text("category", c, 1, 100)?;
    }
    Ok(())
}

fn product_response(status: u16, reply: OpReply) -> ApiResult {
    match reply {
        OpReply::Product(p, s) => Ok(Response::json(status, &views::product(&p, &s))),
        other => Err(unexpected(other).into()),
    }
}

/// Creates a product with its initial stock (admin).
#[utoipa::path(
    post,
    path = "/api/v1/products",
    operation_id = "create_product",
    tag = "catalog",
    security(("bearerAuth" = [])),
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created", body = views::ProductView<'static>, links(
            ("get_product" = (operation_id = "get_product", parameters(("sku" = "$response.body#/sku")))),
            ("update_product" = (operation_id = "update_product", parameters(("sku" = "$response.body#/sku")))),
            ("get_inventory" = (operation_id = "get_inventory", parameters(("sku" = "$response.body#/sku")))),
            ("adjust_inventory" = (operation_id = "adjust_inventory", parameters(("sku" = "$response.body#/sku")))),
            ("put_cart_item" = (operation_id = "put_cart_item", parameters(("sku" = "$response.body#/sku")))),
            ("delete_product" = (operation_id = "delete_product", parameters(("sku" = "$response.body#/sku")))),
        )),
        (status = 400, description = "`bad_request`: malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "`forbidden`: not an admin", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`sku_taken`", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: a field breaks its rule (named in `detail`)", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn create(ctx: &Ctx<'_>) -> ApiResult {
    ctx.admin()?;
    let b: CreateBody = input::json(ctx.req)?;
    input::sku("sku", &b.sku)?;
    product_fields(
        Some(&b.name),
        Some(&b.description),
        Some(b.price_cents),
        Some(&b.currency),
        Some(&b.category),
    )?;
    input::range("stock", b.stock, 0, MAX_STOCK)?;
    let now = ctx.now_ms();
    let product = ProductRec {
        sku: b.sku.clone(),
        name: b.name.trim().to_owned(),
        description: b.description,
        price_cents: b.price_cents,
        currency: b.currency,
        category: b.category.trim().to_owned(),
        attributes_json: attributes(b.attributes.as_deref())?,
        created_at: now,
        updated_at: now,
    };
    let op = Op::CreateProduct {
        product,
        stock: b.stock,
    };
    product_response(201, call_owner(ctx.router, &b.sku, op).await?)
}

/// A product with its available stock.
#[utoipa::path(
    get,
    path = "/api/v1/products/{sku}",
    operation_id = "get_product",
    tag = "catalog",
    params(("sku" = String, Path, description = "The SKU", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The product", body = views::ProductView<'static>),
        (status = 404, description = "`not_found`", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn get(ctx: &Ctx<'_>) -> ApiResult {
    let sku = ctx.param("sku");
    input::sku("sku", sku).map_err(|_| DomainError::NotFound("product"))?;
    let op = Op::GetProduct {
        sku: sku.to_owned(),
    };
    product_response(200, call_owner(ctx.router, sku, op).await?)
}

/// Updates some fields of a product (admin).
#[utoipa::path(
    patch,
    path = "/api/v1/products/{sku}",
    operation_id = "update_product",
    tag = "catalog",
    security(("bearerAuth" = [])),
    params(("sku" = String, Path, description = "The SKU", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    request_body = PatchBody,
    responses(
        (status = 200, description = "The updated product", body = views::ProductView<'static>),
        (status = 400, description = "`bad_request`: malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "`forbidden`: not an admin", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`not_found`", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: a field breaks its rule (named in `detail`)", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn update(ctx: &Ctx<'_>) -> ApiResult {
    ctx.admin()?;
    let sku = ctx.param("sku");
    input::sku("sku", sku).map_err(|_| DomainError::NotFound("product"))?;
    let b: PatchBody = input::json(ctx.req)?;
    product_fields(
        b.name.as_deref(),
        b.description.as_deref(),
        b.price_cents,
        b.currency.as_deref(),
        b.category.as_deref(),
    )?;
    let patch = ProductPatch {
        name: b.name.map(|n| n.trim().to_owned()),
        description: b.description,
        price_cents: b.price_cents,
        currency: b.currency,
        category: b.category.map(|c| c.trim().to_owned()),
        attributes_json: match b.attributes {
            Some(raw) => Some(attributes(Some(&raw))?),
            None => None,
        },
    };
    let op = Op::UpdateProduct {
        sku: sku.to_owned(),
        patch,
    };
    product_response(200, call_owner(ctx.router, sku, op).await?)
}

/// Deletes a product (admin).
#[utoipa::path(
    delete,
    path = "/api/v1/products/{sku}",
    operation_id = "delete_product",
    tag = "catalog",
    security(("bearerAuth" = [])),
    params(("sku" = String, Path, description = "The SKU", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "`forbidden`: not an admin", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`not_found`", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn delete(ctx: &Ctx<'_>) -> ApiResult {
    ctx.admin()?;
    let sku = ctx.param("sku");
    input::sku("sku", sku).map_err(|_| DomainError::NotFound("product"))?;
    call_owner(
        ctx.router,
        sku,
        Op::DeleteProduct {
            sku: sku.to_owned(),
        },
    )
    .await?;
    Ok(Response::new(204))
}

/// A page of search results.
#[derive(Serialize, ToSchema)]
#[schema(as = ProductPage)]
pub(super) struct SearchResponse<'a> {
    items: Vec<views::ProductView<'a>>,
    /// Cursor of the next page, `null` at the end.
    #[schema(required = true)]
    next_cursor: Option<String>,
    facets: Facets,
}

/// Counts of all matches (not just this page) per facet value.
#[derive(Serialize, ToSchema)]
pub(super) struct Facets {
    /// Matches per category name.
    category: BTreeMap<String, u64>,
}

/// Searches products.
///
/// Full text over name and description, filters, sort and cursor
/// pagination across every shard; facets count all matches.
#[utoipa::path(
    get,
    path = "/api/v1/products",
    operation_id = "search_products",
    tag = "catalog",
    params(
        ("q" = Option<String>, Query, description = "Full-text query over name and description", max_length = 200, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"),
        ("category" = Option<String>, Query, description = "Only this category", min_length = 1, max_length = 100, pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"),
        ("min_price" = Option<i64>, Query, description = "Lowest `price_cents`"),
        ("max_price" = Option<i64>, Query, description = "Highest `price_cents`"),
        ("sort" = Option<SearchSort>, Query, description = "Order of the results; default `relevance`"),
        ("limit" = Option<u32>, Query, description = "Page size; default 20", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page (same `sort`)"),
    ),
    responses(
        (status = 200, description = "A page of products with facets", body = SearchResponse<'static>),
        (status = 422, description = "`validation_failed`: an unknown, repeated or invalid query parameter", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn search(ctx: &Ctx<'_>) -> ApiResult {
    let q = input::query(
        ctx.req,
        &[
            "q",
            "category",
            "min_price",
            "max_price",
            "sort",
            "limit",
            "cursor",
        ],
    )?;
    let text = input::get(&q, "q").map(str::to_owned);
    if let Some(t) = &text {
        input::text("q", t, 0, 200)?;
    }
    let category = input::get(&q, "category").map(str::to_owned);
    if let Some(c) = &category {
        input::text("category", c, 1, 100)?;
    }
    let min_price = input::get_i64(&q, "min_price")?;
    let max_price = input::get_i64(&q, "max_price")?;
    let sort = match input::get(&q, "sort") {
        None => Sort::Relevance,
        Some(s) => s.parse::<Sort>().map_err(|_| {
            DomainError::invalid("sort: must be relevance, price_asc, price_desc or newest")
        })?,
    };
    let limit = input::limit(&q)?;
    let after = match input::get(&q, "cursor") {
        None => None,
        Some(c) => Some(
            SortKey::decode(c, sort)
                .ok_or_else(|| DomainError::invalid("cursor: not a cursor of this search"))?,
        ),
    };
    let query = Query {
        text,
        category,
        min_price,
        max_price,
        sort,
        limit,
        after,
    };
    let replies = join_all((0..ctx.router.shard_count()).map(|shard| {
        let op = Op::Search {
            query: query.clone(),
        };
        call(ctx.router, shard, op)
    }))
    .await;
    let mut pages = Vec::with_capacity(replies.len());
    let mut products: HashMap<String, (ProductRec, Stock)> = HashMap::new();
    for reply in replies {
        match reply? {
            OpReply::Search(page, found) => {
                pages.push(page);
                products.extend(found.into_iter().map(|(p, s)| (p.sku.clone(), (p, s))));
            }
            other => return Err(unexpected(other).into()),
        }
    }
    let (hits, facets, _total, next) = merge(pages, limit);
    let items = hits
        .iter()
        .filter_map(|h| products.get(&h.sku))
        .map(|(p, s)| views::product(p, s))
        .collect();
    Ok(Response::json(
        200,
        &SearchResponse {
            items,
            next_cursor: next.map(|k| k.encode(sort)),
            facets: Facets { category: facets },
        },
    ))
}

/// A SKU's stock.
#[utoipa::path(
    get,
    path = "/api/v1/inventory/{sku}",
    operation_id = "get_inventory",
    tag = "inventory",
    params(("sku" = String, Path, description = "The SKU", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The stock", body = views::InventoryView<'static>),
        (status = 404, description = "`not_found`", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn inventory(ctx: &Ctx<'_>) -> ApiResult {
    let sku = ctx.param("sku");
    input::sku("sku", sku).map_err(|_| DomainError::NotFound("product"))?;
    match call_owner(
        ctx.router,
        sku,
        Op::GetStock {
            sku: sku.to_owned(),
        },
    )
    .await?
    {
        OpReply::Stock(s) => Ok(Response::json(200, &views::inventory(sku, &s))),
        other => Err(unexpected(other).into()),
    }
}

/// Adjusts a SKU's units on hand (admin).
#[utoipa::path(
    post,
    path = "/api/v1/inventory/{sku}/adjust",
    operation_id = "adjust_inventory",
    tag = "inventory",
    security(("bearerAuth" = [])),
    params(("sku" = String, Path, description = "The SKU", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    request_body = AdjustBody,
    responses(
        (status = 200, description = "The stock after the change", body = views::InventoryView<'static>),
        (status = 400, description = "`bad_request`: malformed JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "`unauthorized`: missing, invalid or expired access token", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "`forbidden`: not an admin", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`not_found`", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`below_reserved`: `on_hand` would go below the units reserved", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "`unsupported_media_type`: not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`validation_failed`: `delta` out of range, or the result would be", body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "`unavailable`", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(super) async fn adjust(ctx: &Ctx<'_>) -> ApiResult {
    ctx.admin()?;
    let sku = ctx.param("sku");
    input::sku("sku", sku).map_err(|_| DomainError::NotFound("product"))?;
    let b: AdjustBody = input::json(ctx.req)?;
    input::range("delta", b.delta, -MAX_STOCK, MAX_STOCK)?;
    let op = Op::AdjustStock {
        sku: sku.to_owned(),
        delta: b.delta,
    };
    match call_owner(ctx.router, sku, op).await? {
        OpReply::Stock(s) => Ok(Response::json(200, &views::inventory(sku, &s))),
        other => Err(unexpected(other).into()),
    }
}
