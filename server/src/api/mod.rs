//! The REST API of API.md: request parsing and validation, authentication,
//! and the mapping of domain errors to problem+json, in one place.
//!
//! Each handler runs on the shard that accepted the connection: it
//! validates, authenticates (per-shard verified-token cache), builds an
//! `ops::Op` and sends it to the shard that owns the key, then renders the
//! reply with `views`.
//!
//! - `auth`, `catalog`, `cart`, `orders`, `sales`, `chat`: the handlers.
//! - `input`: body and query parsing, field validation.
//! - `views`: the JSON shapes.
//! - `openapi`: the OpenAPI 3.1 document of all of the above (utoipa
//!   annotations on the handlers and shapes), served at `/openapi.json`.

mod auth;
mod cart;
mod catalog;
mod chat;
mod input;
pub mod openapi;
mod orders;
mod sales;
pub mod views;

use std::rc::Rc;

use rayltics_commerce::DomainError;
use rayltics_commerce::auth::Claims;
use rayltics_net::{Method, Params, Problem, Request, Response, Router};

use crate::ops::Caller;
use crate::service::{ShardRouter, ShardState};

/// The API's routes.
#[derive(Debug, Clone, Copy)]
pub enum Route {
    /// POST /api/v1/auth/register
    Register,
    /// POST /api/v1/auth/login
    Login,
    /// POST /api/v1/auth/refresh
    Refresh,
    /// POST /api/v1/auth/logout
    Logout,
    /// GET /api/v1/me
    Me,
    /// POST /api/v1/products
    CreateProduct,
    /// GET /api/v1/products
    SearchProducts,
    /// GET /api/v1/products/{sku}
    GetProduct,
    /// PATCH /api/v1/products/{sku}
    UpdateProduct,
    /// DELETE /api/v1/products/{sku}
    DeleteProduct,
    /// GET /api/v1/inventory/{sku}
    GetInventory,
    /// POST /api/v1/inventory/{sku}/adjust
    AdjustInventory,
    /// GET /api/v1/cart
    GetCart,
    /// PUT /api/v1/cart/items/{sku}
    PutCartItem,
    /// DELETE /api/v1/cart/items/{sku}
    DeleteCartItem,
    /// POST /api/v1/orders
    PlaceOrder,
    /// GET /api/v1/orders
    ListOrders,
    /// GET /api/v1/orders/{id}
    GetOrder,
    /// POST /api/v1/orders/{id}/pay
    PayOrder,
    /// POST /api/v1/orders/{id}/cancel
    CancelOrder,
    /// POST /api/v1/flash-sales
    CreateSale,
    /// GET /api/v1/flash-sales/{id}
    GetSale,
    /// POST /api/v1/flash-sales/{id}/purchase
    Purchase,
    /// GET /api/v1/chat/rooms/{room}/messages
    RoomMessages,
    /// POST /debug/clock (only with `debug.manual_clock`)
    AdvanceClock,
}

/// The API's routes: method, path pattern, route. The operations of the
/// OpenAPI document (`openapi`) are these, less `/debug/*`.
pub const ROUTES: [(Method, &str, Route); 25] = {
    use Method::{Delete, Get, Patch, Post, Put};
    [
        (Post, "/api/v1/auth/register", Route::Register),
        (Post, "/api/v1/auth/login", Route::Login),
        (Post, "/api/v1/auth/refresh", Route::Refresh),
        (Post, "/api/v1/auth/logout", Route::Logout),
        (Get, "/api/v1/me", Route::Me),
        (Post, "/api/v1/products", Route::CreateProduct),
        (Get, "/api/v1/products", Route::SearchProducts),
        (Get, "/api/v1/products/{sku}", Route::GetProduct),
        (Patch, "/api/v1/products/{sku}", Route::UpdateProduct),
        (Delete, "/api/v1/products/{sku}", Route::DeleteProduct),
        (Get, "/api/v1/inventory/{sku}", Route::GetInventory),
        (
            Post,
            "/api/v1/inventory/{sku}/adjust",
            Route::AdjustInventory,
        ),
        (Get, "/api/v1/cart", Route::GetCart),
        (Put, "/api/v1/cart/items/{sku}", Route::PutCartItem),
        (Delete, "/api/v1/cart/items/{sku}", Route::DeleteCartItem),
        (Post, "/api/v1/orders", Route::PlaceOrder),
        (Get, "/api/v1/orders", Route::ListOrders),
        (Get, "/api/v1/orders/{id}", Route::GetOrder),
        (Post, "/api/v1/orders/{id}/pay", Route::PayOrder),
        (Post, "/api/v1/orders/{id}/cancel", Route::CancelOrder),
        (Post, "/api/v1/flash-sales", Route::CreateSale),
        (Get, "/api/v1/flash-sales/{id}", Route::GetSale),
        (Post, "/api/v1/flash-sales/{id}/purchase", Route::Purchase),
        (
            Get,
            "/api/v1/chat/rooms/{room}/messages",
            Route::RoomMessages,
        ),
        (Post, "/debug/clock", Route::AdvanceClock),
    ]
};

/// Adds the API's routes to `router`.
pub fn routes<T: From<Route>>(router: Router<T>) -> Router<T> {
    debug_assert!(
        ROUTES
            .iter()
            .all(|(_, p, _)| p.starts_with("/api/v1/") || p.starts_with("/debug/"))
    );
    ROUTES
        .into_iter()
        .fold(router, |r, (m, p, route)| r.route(m, p, route.into()))
}

/// What a handler works with.
pub struct Ctx<'a> {
    /// This shard's state.
    pub state: &'a Rc<ShardState>,
    /// The mesh router.
    pub router: &'a ShardRouter,
    /// The request.
    pub req: &'a Request,
    /// Path parameters.
    pub params: &'a Params,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("path", &self.req.path())
            .finish_non_exhaustive()
    }
}

/// A handler's result: a response, or a problem to answer with.
pub type ApiResult = Result<Response, ApiError>;

/// A refused request (rendered as problem+json).
#[derive(Debug)]
pub struct ApiError(Problem, Option<u64>);

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let retry = match e {
            DomainError::RateLimited(secs) => Some(secs),
            DomainError::Unavailable(_) => Some(1),
            _ => None,
        };
        ApiError(Problem::new(e.status(), e.code(), e.to_string()), retry)
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        ApiError(p, None)
    }
}

impl ApiError {
    /// The problem+json response.
    pub fn into_response(self) -> Response {
        let unauthorized = self.0.status == 401;
        let mut r = self.0.into_response();
        if let Some(secs) = self.1 {
            r = r.with_header("retry-after", secs.to_string());
        }
        if unauthorized {
            r = r.with_header("www-authenticate", "Bearer");
        }
        r
    }
}

/// Runs the handler of `route`.
pub async fn handle(route: Route, ctx: Ctx<'_>) -> Response {
    let result = match route {
        Route::Register => auth::register(&ctx).await,
        Route::Login => auth::login(&ctx).await,
        Route::Refresh => auth::refresh(&ctx).await,
        Route::Logout => auth::logout(&ctx).await,
        Route::Me => auth::me(&ctx).await,
        Route::CreateProduct => catalog::create(&ctx).await,
        Route::SearchProducts => catalog::search(&ctx).await,
        Route::GetProduct => catalog::get(&ctx).await,
        Route::UpdateProduct => catalog::update(&ctx).await,
        Route::DeleteProduct => catalog::delete(&ctx).await,
        Route::GetInventory => catalog::inventory(&ctx).await,
        Route::AdjustInventory => catalog::adjust(&ctx).await,
        Route::GetCart => cart::get(&ctx).await,
        Route::PutCartItem => cart::put(&ctx).await,
        Route::DeleteCartItem => cart::delete(&ctx).await,
        Route::PlaceOrder => orders::place(&ctx).await,
        Route::ListOrders => orders::list(&ctx).await,
        Route::GetOrder => orders::get(&ctx).await,
        Route::PayOrder => orders::pay(&ctx).await,
        Route::CancelOrder => orders::cancel(&ctx).await,
        Route::CreateSale => sales::create(&ctx).await,
        Route::GetSale => sales::get(&ctx).await,
        Route::Purchase => sales::purchase(&ctx).await,
        Route::RoomMessages => chat::messages(&ctx).await,
        Route::AdvanceClock => advance_clock(&ctx),
    };
    result.unwrap_or_else(ApiError::into_response)
}

impl Ctx<'_> {
    /// The verified claims of the request's bearer token (cached per shard).
    pub fn claims(&self) -> Result<Claims, ApiError> {
        let token = self
            .req
            .header_str("authorization")
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(DomainError::Unauthorized("missing bearer token"))?;
        verify_token(self.state, token)
    }

    /// The caller, from the bearer token.
    pub fn caller(&self) -> Result<Caller, ApiError> {
        let c = self.claims()?;
        Ok(Caller {
            admin: c.role == rayltics_commerce::auth::Role::Admin,
            user_id: c.sub,
        })
    }

    /// The caller, who must be an admin.
    pub fn admin(&self) -> Result<Caller, ApiError> {
        let caller = self.caller()?;
        if !caller.admin {
            return Err(DomainError::Forbidden("admin role required").into());
        }
        Ok(caller)
    }

    /// A path parameter.
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).unwrap_or_default()
    }

    /// Now on the node's clock.
    pub fn now_ms(&self) -> i64 {
        self.state.shared.clock.now_ms()
    }
}

/// The claims of a valid access token (the shard's verified-token cache
/// first, then the signature check).
pub fn verify_token(state: &ShardState, token: &str) -> Result<Claims, ApiError> {
    let now_secs = state.shared.clock.now_ms() / 1000;
    if let Some(claims) = state.tokens.borrow_mut().get(token, now_secs) {
        return Ok(claims);
    }
    let claims = state
        .shared
        .keys
        .verify(token, now_secs)
        .map_err(|_| DomainError::Unauthorized("invalid or expired access token"))?;
    state.tokens.borrow_mut().insert(token, claims.clone());
    Ok(claims)
}

/// POST /debug/clock `{"advance_ms": N}`: moves the manual clock (404
/// unless `debug.manual_clock`).
fn advance_clock(ctx: &Ctx<'_>) -> ApiResult {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Advance {
        advance_ms: i64,
    }
    if !ctx.state.shared.manual_clock {
        return Err(Problem::not_found("no route for /debug/clock").into());
    }
    let body: Advance = input::json(ctx.req)?;
    if !(0..=365 * 24 * 3_600_000).contains(&body.advance_ms) {
        return Err(DomainError::invalid("advance_ms: must be within 0..=1 year").into());
    }
    let now = ctx.state.shared.clock.advance(body.advance_ms).unwrap_or(0);
    Ok(Response::json(
        200,
        &serde_json::json!({ "now": rayltics_commerce::clock::rfc3339(now) }),
    ))
}
