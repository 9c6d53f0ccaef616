//! Catalog and inventory handlers. A product and its stock live on the
//! shard of its SKU; a search asks every shard and merges their pages.

use std::collections::{BTreeMap, HashMap};

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use rayltics_commerce::model::{ProductRec, Stock};
use rayltics_commerce::search::{Query, Sort, SortKey, merge};
use rayltics_commerce::state::ProductPatch;
use rayltics_commerce::{DomainError, MAX_STOCK};
use rayltics_net::Response;

use super::{ApiError, ApiResult, Ctx, input, views};
use crate::ops::{Op, OpReply, call, call_owner, unexpected};

/// Largest `attributes` object, as JSON text.
const MAX_ATTRIBUTES_BYTES: usize = 8 * 1024;
/// Largest price, minor units.
const MAX_PRICE_CENTS: i64 = 1_000_000_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    sku: String,
    name: String,
    #[serde(default)]
    description: String,
    price_cents: i64,
    currency: String,
    category: String,
    #[serde(default)]
    attributes: Option<Box<RawValue>>,
    #[serde(default)]
    stock: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    name: Option<String>,
    description: Option<String>,
    price_cents: Option<i64>,
    currency: Option<String>,
    category: Option<String>,
    attributes: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustBody {
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

/// POST /api/v1/products (admin)
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

/// GET /api/v1/products/{sku}
pub(super) async fn get(ctx: &Ctx<'_>) -> ApiResult {
    let sku = ctx.param("sku");
    input::sku("sku", sku).map_err(|_| DomainError::NotFound("product"))?;
    let op = Op::GetProduct {
        sku: sku.to_owned(),
    };
    product_response(200, call_owner(ctx.router, sku, op).await?)
}

/// PATCH /api/v1/products/{sku} (admin)
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

/// DELETE /api/v1/products/{sku} (admin)
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

#[derive(Serialize)]
struct SearchResponse<'a> {
    items: Vec<views::ProductView<'a>>,
    next_cursor: Option<String>,
    facets: Facets,
}

#[derive(Serialize)]
struct Facets {
    category: BTreeMap<String, u64>,
}

/// GET /api/v1/products
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

/// GET /api/v1/inventory/{sku}
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

/// POST /api/v1/inventory/{sku}/adjust (admin)
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
