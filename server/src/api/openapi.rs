//! The OpenAPI 3.1 document of the REST API, served at `GET /openapi.json`.
//!
//! Generated from the code with utoipa: each handler in `auth`, `catalog`,
//! `cart`, `orders` and `sales` carries a `#[utoipa::path]` with its
//! parameters, body and every status it answers; the request bodies and the
//! `views` derive `ToSchema`. What has no handler here (the operations
//! endpoints of `http`, and this document itself) is described by hand
//! below. `/debug/*` is left out on purpose.
//!
//! The document is rendered once per process ([`json`]).

use std::sync::OnceLock;

use rayltics_net::Response;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{auth, cart, catalog, chat, orders, sales};

/// Media type of every error body (RFC 9457).
pub(super) const PROBLEM_JSON: &str = "application/problem+json";

/// The name of the bearer security scheme.
pub(super) const BEARER: &str = "bearerAuth";

/// The REST API's document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "rayltics",
        description = "Shard-per-core e-commerce backend: the REST API of API.md. \
            Errors are RFC 9457 `application/problem+json` with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        auth::register,
        auth::login,
        auth::refresh,
        auth::logout,
        auth::me,
        catalog::create,
        catalog::search,
        catalog::get,
        catalog::update,
        catalog::delete,
        catalog::inventory,
        catalog::adjust,
        cart::get,
        cart::put,
        cart::delete,
        orders::place,
        orders::list,
        orders::get,
        orders::pay,
        orders::cancel,
        sales::create,
        sales::get,
        sales::purchase,
        chat::messages,
        ops_docs::healthz,
        ops_docs::readyz,
        ops_docs::metrics,
        ops_docs::openapi,
    ),
    components(schemas(Problem, SearchSort)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "catalog", description = "Products and search"),
        (name = "inventory", description = "Stock per SKU"),
        (name = "cart", description = "The caller's cart"),
        (name = "orders", description = "Orders: reserve, pay or cancel"),
        (name = "flash-sales", description = "Limited sales of one SKU"),
        (name = "chat", description = "Chat history (live chat is the WebSocket at GET /ws)"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    ),
)]
pub struct ApiDoc;

/// Adds the `bearerAuth` scheme (access JWT from login, register or refresh).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".into());
        http.description =
            Some("The `access_token` of a session (register, login, refresh).".into());
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(http));
    }
}

/// The document as JSON, rendered on first use.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc.to_json().expect("the OpenAPI document serializes")
    })
}

/// `GET /openapi.json`.
pub fn response() -> Response {
    Response::new(200).with_body("application/json", json())
}

// Schema-only types: they describe bodies built elsewhere (rayltics_net's
// `Problem`, rayltics_commerce's `Line`) or string sets the handlers match by
// hand, and are never constructed.

/// RFC 9457 problem details, the body of every error.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct Problem {
    /// URI naming the problem type, derived from `code`.
    #[schema(rename = "type", format = "uri")]
    type_uri: String,
    /// The HTTP reason phrase.
    title: String,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// What went wrong with this request.
    detail: String,
    /// Stable snake_case machine code: `validation_failed`, `not_found`,
    /// `unauthorized`, `forbidden`, `email_taken`, `sku_taken`,
    /// `out_of_stock`, `sold_out`, `limit_exceeded`, `sale_not_active`,
    /// `idempotency_conflict`, `rate_limited`, `unavailable`, ...
    #[schema(pattern = "^[a-z][a-z0-9_]*$")]
    code: String,
}

/// One line of an order or a cart.
#[derive(ToSchema)]
#[schema(as = Line)]
#[allow(dead_code)]
pub(super) struct LineSchema {
    sku: String,
    /// Units.
    quantity: u32,
    /// Unit price in minor units.
    price_cents: i64,
}

/// A user's role.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(super) enum Role {
    Customer,
    Admin,
}

/// Always `Bearer`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) enum TokenType {
    Bearer,
}

/// An order's status.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(super) enum OrderStatus {
    Pending,
    Paid,
    PaymentFailed,
    Cancelled,
    Expired,
}

/// Order of a product search.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub(super) enum SearchSort {
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
}

/// The operations endpoints, served by `http` without an API handler.
#[allow(dead_code)]
mod ops_docs {
    use super::Problem;

    /// Liveness: the process is up.
    #[utoipa::path(
        get,
        path = "/healthz",
        tag = "operations",
        responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")),
    )]
    fn healthz() {}

    /// Readiness: each configured backend and its state (`backends`); 503
    /// while the store refuses writes or while draining. With Kafka
    /// configured, `backends.kafka` is `connecting`, `up` or `down` and
    /// `kafka_backlog_events` counts events waiting for the broker (a broker
    /// that is away does not make the node unready).
    #[utoipa::path(
        get,
        path = "/readyz",
        tag = "operations",
        responses(
            (status = 200, description = "Ready", body = Object, content_type = "application/json",
                example = json!({"status": "ready", "shards": 2, "backends": {"journal": "up", "kafka": "up"}, "kafka_backlog_events": 0})),
            (status = 503, description = "`not_ready`: draining, or a backend is unreachable (named in `detail`)",
                body = Problem, content_type = super::PROBLEM_JSON),
        ),
    )]
    fn readyz() {}

    /// Prometheus text exposition of the whole node.
    #[utoipa::path(
        get,
        path = "/metrics",
        tag = "operations",
        responses((status = 200, description = "Metrics in the Prometheus text format 0.0.4",
            body = String, content_type = "text/plain; version=0.0.4; charset=utf-8")),
    )]
    fn metrics() {}

    /// This document: the OpenAPI 3.1 description of the REST API.
    #[utoipa::path(
        get,
        path = "/openapi.json",
        tag = "operations",
        responses((status = 200, description = "The OpenAPI document", body = Object,
            content_type = "application/json")),
    )]
    fn openapi() {}
}
