//! The JSON shapes of API.md, built from the shard records.

use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use rayltics_commerce::clock::Timestamp;
use rayltics_commerce::model::{Line, OrderRec, ProductRec, SaleRec, Stock, UserRec};
use rayltics_commerce::state::CartLine;

use super::openapi::{LineSchema, OrderStatus, Role, TokenType};

/// A user account (API.md `user`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView<'a> {
    #[schema(format = "uuid")]
    id: &'a str,
    email: &'a str,
    name: &'a str,
    #[schema(value_type = Role)]
    role: &'static str,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
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
        created_at: Timestamp::of(u.created_at),
    }
}

/// The answer to register, login and refresh.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session<'a> {
    /// The user.
    pub user: UserView<'a>,
    /// Access JWT.
    pub access_token: String,
    /// Opaque refresh token.
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(value_type = TokenType)]
    pub token_type: &'static str,
    /// Access token lifetime, seconds.
    pub expires_in: i64,
}

/// A product with its available stock (API.md `product`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Product)]
pub struct ProductView<'a> {
    sku: &'a str,
    name: &'a str,
    description: &'a str,
    /// Unit price in minor units of `currency`.
    price_cents: i64,
    /// ISO 4217 code, e.g. `USD`.
    currency: &'a str,
    category: &'a str,
    /// Free-form JSON object given at creation.
    #[serde(serialize_with = "raw_json_object")]
    #[schema(value_type = Object)]
    attributes: &'a str,
    /// Units that can still be ordered (on hand minus reserved, at least 0).
    #[schema(minimum = 0)]
    stock_available: i64,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
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
        created_at: Timestamp::of(p.created_at),
        updated_at: Timestamp::of(p.updated_at),
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

/// A SKU's stock (API.md `inventory`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Inventory)]
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

/// The caller's cart (API.md `cart`); `currency` of its first line, `USD`
/// when empty.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Cart)]
pub struct CartView {
    #[schema(value_type = Vec<LineSchema>)]
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
        total_cents: rayltics_commerce::model::total_cents(&items),
        items,
        currency,
    }
}

/// An order (API.md `order`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Order)]
pub struct OrderView<'a> {
    #[schema(format = "uuid")]
    id: &'a str,
    #[schema(format = "uuid")]
    user_id: &'a str,
    #[schema(value_type = OrderStatus)]
    status: &'static str,
    #[schema(value_type = Vec<LineSchema>)]
    items: &'a [Line],
    total_cents: i64,
    currency: &'a str,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
    /// When a `pending` order expires unless paid.
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
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
        created_at: Timestamp::of(o.created_at),
        updated_at: Timestamp::of(o.updated_at),
        expires_at: Timestamp::of(o.expires_at),
    }
}

/// An order's JSON (response bodies recorded for idempotent replays, and
/// event payloads).
pub fn order_json(o: &OrderRec) -> Vec<u8> {
    serde_json::to_vec(&order(o)).unwrap_or_default()
}

/// A flash sale (API.md `flash sale`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FlashSale)]
pub struct SaleView<'a> {
    #[schema(format = "uuid")]
    id: &'a str,
    sku: &'a str,
    quantity: u32,
    /// Units not yet reserved or sold.
    remaining: u32,
    price_cents: i64,
    #[schema(value_type = String, format = DateTime)]
    starts_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    ends_at: Timestamp,
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
        starts_at: Timestamp::of(s.starts_at),
        ends_at: Timestamp::of(s.ends_at),
        per_user_limit: s.per_user_limit,
    }
}

/// A page of a list: `{items, next_cursor}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor of the next page, `null` at the end.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}
