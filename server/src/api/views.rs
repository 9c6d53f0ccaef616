//! The JSON shapes of API.md, built from the shard records.

use serde::Serialize;
use serde_json::value::RawValue;

use rayltics_commerce::clock::rfc3339;
use rayltics_commerce::model::{Line, OrderRec, ProductRec, SaleRec, Stock, UserRec};
use rayltics_commerce::state::CartLine;

/// `user`.
#[derive(Debug, Serialize)]
pub struct UserView<'a> {
    id: &'a str,
    email: &'a str,
    name: &'a str,
    role: &'static str,
    created_at: String,
}

/// A user as the API shows it.
pub fn user(u: &UserRec) -> UserView<'_> {
    UserView {
        id: &u.id,
        email: &u.email,
        name: &u.name,
        role: if u.role == rayltics_commerce::model::ROLE_ADMIN {
            "admin"
        } else {
            "customer"
        },
        created_at: rfc3339(u.created_at),
    }
}

/// The answer to register, login and refresh.
#[derive(Debug, Serialize)]
pub struct Session<'a> {
    /// The user.
    pub user: UserView<'a>,
    /// Access JWT.
    pub access_token: String,
    /// Opaque refresh token.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access token lifetime, seconds.
    pub expires_in: i64,
}

/// `product`.
#[derive(Debug, Serialize)]
pub struct ProductView<'a> {
    sku: &'a str,
    name: &'a str,
    description: &'a str,
    price_cents: i64,
    currency: &'a str,
    category: &'a str,
    #[serde(serialize_with = "raw_json_object")]
    attributes: &'a str,
    stock_available: i64,
    created_at: String,
    updated_at: String,
}

/// A product with its stock as the API shows it.
pub fn product<'a>(p: &'a ProductRec, s: &Stock) -> ProductView<'a> {
    ProductView {
        sku: &p.sku,
        name: &p.name,
        description: &p.description,
        price_cents: p.price_cents,
        currency: &p.currency,
        category: &p.category,
        attributes: &p.attributes_json,
        stock_available: s.available().max(0),
        created_at: rfc3339(p.created_at),
        updated_at: rfc3339(p.updated_at),
    }
}

/// Writes stored JSON object text as-is (it was validated on the way in);
/// an empty object if it somehow is not JSON.
fn raw_json_object<S: serde::Serializer>(text: &&str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) => raw.serialize(s),
        Err(_) => serde_json::Map::new().serialize(s),
    }
}

/// `inventory`.
#[derive(Debug, Serialize)]
pub struct InventoryView<'a> {
    sku: &'a str,
    on_hand: i64,
    reserved: i64,
    available: i64,
}

/// A SKU's stock as the API shows it.
pub fn inventory<'a>(sku: &'a str, s: &Stock) -> InventoryView<'a> {
    InventoryView {
        sku,
        on_hand: s.on_hand,
        reserved: s.reserved,
        available: s.available(),
    }
}

/// `cart`.
#[derive(Debug, Serialize)]
pub struct CartView {
    items: Vec<Line>,
    total_cents: i64,
    currency: String,
}

/// A cart as the API shows it.
pub fn cart(lines: Vec<(String, CartLine)>) -> CartView {
    let currency = lines
        .first()
        .map_or_else(|| "USD".to_owned(), |(_, l)| l.currency.clone());
    let items: Vec<Line> = lines
        .into_iter()
        .map(|(sku, l)| Line {
            sku,
            quantity: l.quantity,
            price_cents: l.price_cents,
        })
        .collect();
    CartView {
        total_cents: items
            .iter()
            .map(|l| l.price_cents.saturating_mul(i64::from(l.quantity)))
            .fold(0, i64::saturating_add),
        items,
        currency,
    }
}

/// `order`.
#[derive(Debug, Serialize)]
pub struct OrderView<'a> {
    id: &'a str,
    user_id: &'a str,
    status: &'static str,
    items: &'a [Line],
    total_cents: i64,
    currency: &'a str,
    created_at: String,
    updated_at: String,
    expires_at: String,
}

/// An order as the API shows it.
pub fn order(o: &OrderRec) -> OrderView<'_> {
    OrderView {
        id: &o.id,
        user_id: &o.user_id,
        status: o.status.as_str(),
        items: &o.items,
        total_cents: o.total_cents,
        currency: &o.currency,
        created_at: rfc3339(o.created_at),
        updated_at: rfc3339(o.updated_at),
        expires_at: rfc3339(o.expires_at),
    }
}

/// An order's JSON (response bodies recorded for idempotent replays, and
/// event payloads).
pub fn order_json(o: &OrderRec) -> Vec<u8> {
    serde_json::to_vec(&order(o)).unwrap_or_default()
}

/// `flash sale`.
#[derive(Debug, Serialize)]
pub struct SaleView<'a> {
    id: &'a str,
    sku: &'a str,
    quantity: u32,
    remaining: u32,
    price_cents: i64,
    starts_at: String,
    ends_at: String,
    per_user_limit: u32,
}

/// A flash sale as the API shows it.
pub fn sale(s: &SaleRec, remaining: u32) -> SaleView<'_> {
    SaleView {
        id: &s.id,
        sku: &s.sku,
        quantity: s.quantity,
        remaining,
        price_cents: s.price_cents,
        starts_at: rfc3339(s.starts_at),
        ends_at: rfc3339(s.ends_at),
        per_user_limit: s.per_user_limit,
    }
}

/// `{items, next_cursor}`.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor of the next page, `null` at the end.
    pub next_cursor: Option<String>,
}
