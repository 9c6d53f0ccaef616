//! Commerce operations, executed on the shard that owns their key.
//!
//! An HTTP handler (on whichever shard accepted the connection) validates
//! the request, builds an [`Op`] and sends it to the owner with
//! [`call_owner`]; the owner runs [`execute`], which reads and decides with
//! `rayltics_commerce::state`, commits through the shard's `Store`, and
//! replies with an [`OpReply`]. Multi-shard operations (orders, flash-sale
//! purchases) run on the user's shard and call the SKU shards in turn.
//!
//! - `users`: register, login, refresh rotation, logout, profile.
//! - `catalog`: products, search, stock.
//! - `orders`: carts and the order saga (reserve, pay, cancel, expire).
//! - `sales`: flash sales and purchases.
//! - `idempotency`: the `Idempotency-Key` guard.

mod catalog;
mod idempotency;
pub mod orders;
mod sales;
mod users;

use rayltics_commerce::model::{Line, OrderRec, ProductRec, SaleRec, Stock, UserRec};
use rayltics_commerce::search::{Query, SearchPage};
use rayltics_commerce::state::{CartLine, OrderPage, ProductPatch, ReserveLine};
use rayltics_commerce::{DomainError, DomainResult, Millis};
use rayltics_shards::ShardId;

use crate::service::{ShardRequest, ShardResponse, ShardRouter, ShardState};

pub use orders::PlaceOrder;
pub use sales::Purchase;

/// Who is asking, from their access token.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// User id.
    pub user_id: String,
    /// Whether they are an admin.
    pub admin: bool,
}

/// A commerce operation, run on the shard that owns its key.
#[derive(Debug)]
pub enum Op {
    /// Register `user` and start a refresh family (user's shard).
    Register {
        /// The new user (password already hashed).
        user: UserRec,
        /// Refresh family to start.
        family_id: String,
        /// Digest of its first token.
        digest: [u8; 32],
    },
    /// Fetch a user by email for a login (email's shard; rate-limited there).
    LoginLookup {
        /// Lower-cased email.
        email: String,
    },
    /// Start a refresh family after a successful login (user's shard).
    StartSession {
        /// User id.
        user_id: String,
        /// Family id.
        family_id: String,
        /// Digest of its first token.
        digest: [u8; 32],
    },
    /// Rotate a refresh token (user's shard).
    Refresh {
        /// User id from the token.
        user_id: String,
        /// Family id from the token.
        family_id: String,
        /// Digest of the presented secret.
        presented: [u8; 32],
        /// Digest of the next token.
        next: [u8; 32],
    },
    /// End a refresh family (user's shard).
    Logout {
        /// User id from the token.
        user_id: String,
        /// Family id from the token.
        family_id: String,
        /// Digest of the presented secret.
        presented: [u8; 32],
    },
    /// A user's profile (user's shard).
    GetUser {
        /// User id.
        user_id: String,
    },
    /// Create a product (SKU's shard).
    CreateProduct {
        /// The product.
        product: ProductRec,
        /// Initial on-hand units.
        stock: i64,
    },
    /// A product (SKU's shard).
    GetProduct {
        /// SKU.
        sku: String,
    },
    /// Update a product (SKU's shard).
    UpdateProduct {
        /// SKU.
        sku: String,
        /// Fields to change.
        patch: ProductPatch,
    },
    /// Delete a product (SKU's shard).
    DeleteProduct {
        /// SKU.
        sku: String,
    },
    /// Search this shard's products (every shard).
    Search {
        /// The query.
        query: Query,
    },
    /// A SKU's stock (SKU's shard).
    GetStock {
        /// SKU.
        sku: String,
    },
    /// Adjust a SKU's on-hand units (SKU's shard).
    AdjustStock {
        /// SKU.
        sku: String,
        /// Signed change.
        delta: i64,
    },
    /// A user's cart (user's shard).
    GetCart {
        /// User id.
        user_id: String,
    },
    /// Set a cart line (user's shard).
    PutCart {
        /// User id.
        user_id: String,
        /// SKU.
        sku: String,
        /// The line (quantity 0 removes).
        line: CartLine,
    },
    /// Place an order (user's shard; reserves on the SKU shards).
    PlaceOrder(PlaceOrder),
    /// An order (order's shard = its user's shard).
    GetOrder {
        /// Order id.
        order_id: String,
        /// Who asks.
        caller: Caller,
    },
    /// A page of orders, newest first (one user's shard, or every shard).
    ListOrders {
        /// Only this user's orders.
        user_id: Option<String>,
        /// Strictly after this (created_at, id).
        after: Option<(Millis, String)>,
        /// Page size.
        limit: usize,
    },
    /// Pay an order (order's shard).
    Pay {
        /// Order id.
        order_id: String,
        /// Who asks.
        caller: Caller,
        /// Test card number (validated).
        card_number: String,
    },
    /// Cancel a pending order (order's shard).
    Cancel {
        /// Order id.
        order_id: String,
        /// Who asks.
        caller: Caller,
    },
    /// Saga step: reserve plain stock for an order (SKU's shard).
    Reserve {
        /// Order id.
        order_id: String,
        /// Owner.
        user_id: String,
        /// Lines owned by this shard.
        lines: Vec<ReserveLine>,
        /// Expiry of the order.
        expires_at: Millis,
    },
    /// Saga step: sell or release an order's reservations (SKU's shard).
    Settle {
        /// Order id.
        order_id: String,
        /// Sell (`true`) or release.
        sold: bool,
    },
    /// Create a flash sale (SKU's shard; the id hashes there).
    CreateSale {
        /// The sale.
        sale: SaleRec,
    },
    /// A flash sale (its shard).
    GetSale {
        /// Sale id.
        id: String,
    },
    /// Buy in a flash sale (user's shard; reserves on the sale's shard).
    Purchase(Purchase),
    /// Saga step: take units from a sale's pool (sale's shard).
    SaleReserve {
        /// Sale id.
        sale_id: String,
        /// Order id.
        order_id: String,
        /// Buyer.
        user_id: String,
        /// Units.
        quantity: u32,
        /// Expiry of the order.
        expires_at: Millis,
    },
}

/// What an [`Op`] returns.
#[derive(Debug)]
pub enum OpReply {
    /// A user.
    User(UserRec),
    /// A product and its stock.
    Product(ProductRec, Stock),
    /// Done, nothing to return.
    Done,
    /// One shard's search page and the products of its hits.
    Search(SearchPage, Vec<(ProductRec, Stock)>),
    /// A SKU's stock.
    Stock(Stock),
    /// A cart's lines, sorted by SKU.
    Cart(Vec<(String, CartLine)>),
    /// Reserved lines, priced, and their currency.
    Reserved(Vec<Line>, String),
    /// An order.
    Order(OrderRec),
    /// A page of orders.
    Orders(OrderPage),
    /// A flash sale and its remaining units.
    Sale(SaleRec, u32),
    /// A recorded response (idempotent creates): status and JSON body.
    Stored {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: Vec<u8>,
    },
}

/// Runs `op` on this shard (which owns its key).
pub async fn execute(state: &ShardState, op: Op) -> DomainResult<OpReply> {
    match op {
        Op::Register { .. }
        | Op::LoginLookup { .. }
        | Op::StartSession { .. }
        | Op::Refresh { .. }
        | Op::Logout { .. }
        | Op::GetUser { .. } => users::execute(state, op).await,
        Op::CreateProduct { .. }
        | Op::GetProduct { .. }
        | Op::UpdateProduct { .. }
        | Op::DeleteProduct { .. }
        | Op::Search { .. }
        | Op::GetStock { .. }
        | Op::AdjustStock { .. } => catalog::execute(state, op).await,
        // The sagas call other shards, and a call to this shard runs
        // inline: boxing here breaks the recursion of the future types.
        Op::CreateSale { .. } | Op::GetSale { .. } | Op::Purchase(_) | Op::SaleReserve { .. } => {
            Box::pin(sales::execute(state, op)).await
        }
        _ => Box::pin(orders::execute(state, op)).await,
    }
}

/// Sends `op` to shard `shard` (inline when it is this one) and returns its
/// reply.
pub async fn call(router: &ShardRouter, shard: ShardId, op: Op) -> DomainResult<OpReply> {
    match router.call(shard, ShardRequest::Op(op)).await {
        Ok(ShardResponse::Op(reply)) => reply,
        Ok(other) => Err(DomainError::Unavailable(format!(
            "unexpected mesh reply {other:?}"
        ))),
        Err(e) => Err(DomainError::Unavailable(format!("shard {shard}: {e}"))),
    }
}

/// Sends `op` to the shard that owns `key`.
pub async fn call_owner(router: &ShardRouter, key: &str, op: Op) -> DomainResult<OpReply> {
    call(router, router.owner_of(key.as_bytes()), op).await
}

/// A reply of the wrong kind: a bug, reported as 503 rather than a panic.
pub fn unexpected(reply: OpReply) -> DomainError {
    tracing::error!(?reply, "unexpected operation reply");
    DomainError::Unavailable("internal: unexpected reply".into())
}

/// An operation routed to the wrong executor: a bug, reported as 503.
fn unexpected_op(op: Op) -> DomainError {
    tracing::error!(?op, "operation routed to the wrong executor");
    DomainError::Unavailable("internal: misrouted operation".into())
}
