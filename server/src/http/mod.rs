//! The node's HTTP application: routes and handlers behind the edge.
//!
//! One [`App`] per shard. `Handler::handle` matches the route, runs the
//! endpoint (inline, or over the mesh for keys owned elsewhere) and records
//! the request in the shard's metrics.

mod ops;

pub use ops::StorageHealth;

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rayltics_net::{Handler, Match, Method, Problem, Request, Response, Router};

use crate::api::{self, Route};
use crate::metrics::ShardMetrics;
use crate::realtime;
use crate::service::{ShardRouter, ShardState};

/// Node-wide facts every shard's app reads.
#[derive(Debug)]
pub struct NodeShared {
    /// Set when the node starts draining: `/readyz` turns 503.
    pub draining: AtomicBool,
    /// The store's health (`/readyz`).
    pub storage: StorageHealth,
    /// The Kafka relay's view of the broker (`/readyz`).
    pub kafka: crate::relay::KafkaHealth,
}

/// The endpoints of the API, one per route.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    ShardOf,
    WebSocket,
    EchoSocket,
    Api(Route),
}

impl From<Route> for Endpoint {
    fn from(r: Route) -> Self {
        Endpoint::Api(r)
    }
}

/// A shard's HTTP application. Owned by that shard.
#[derive(Debug)]
pub struct App {
    routes: Router<Endpoint>,
    shard: ShardRouter,
    metrics: ShardMetrics,
    node: Arc<NodeShared>,
    realtime: Rc<realtime::Settings>,
}

impl App {
    /// Builds the app of one shard.
    pub fn new(
        shard: ShardRouter,
        metrics: ShardMetrics,
        node: Arc<NodeShared>,
        realtime: Rc<realtime::Settings>,
    ) -> Self {
        let routes = Router::new()
            .route(Method::Get, "/healthz", Endpoint::Healthz)
            .route(Method::Get, "/readyz", Endpoint::Readyz)
            .route(Method::Get, "/metrics", Endpoint::Metrics)
            .route(Method::Get, "/openapi.json", Endpoint::OpenApi)
            .route(Method::Get, "/debug/shards/{key}", Endpoint::ShardOf)
            .route(Method::Get, "/ws", Endpoint::WebSocket)
            .route(Method::Get, "/ws/echo", Endpoint::EchoSocket);
        let routes = api::routes(routes);
        Self {
            routes,
            shard,
            metrics,
            node,
            realtime,
        }
    }

    fn state(&self) -> &Rc<ShardState> {
        self.shard.local()
    }

    /// The shard's metric handles.
    pub fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }
}

impl Handler for App {
    async fn handle(&self, req: &Request) -> Response {
        let started = Instant::now();
        let (route, response) = match self.routes.at(req.method(), req.path()) {
            Match::Found {
                value,
                pattern,
                params,
            } => {
                let response = match value {
                    Endpoint::Healthz => ops::healthz(),
                    Endpoint::Readyz => ops::readyz(
                        &self.node,
                        self.shard.shard_count(),
                        &self.metrics.node().workers,
                    ),
                    Endpoint::Metrics => ops::metrics(&self.metrics),
                    Endpoint::OpenApi => api::openapi::response(),
                    Endpoint::ShardOf => {
                        ops::shard_of(&self.shard, params.get("key").unwrap_or_default()).await
                    }
                    Endpoint::WebSocket => realtime::upgrade::chat(req, self.state()),
                    Endpoint::EchoSocket => realtime::upgrade::echo(req, &self.realtime),
                    Endpoint::Api(route) => {
                        let ctx = api::Ctx {
                            state: self.state(),
                            router: &self.shard,
                            req,
                            params: &params,
                        };
                        api::handle(*route, ctx).await
                    }
                };
                (pattern, response)
            }
            Match::MethodNotAllowed(allowed) => {
                let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
                let problem = Problem::new(
                    405,
                    "method_not_allowed",
                    format!("{} is not allowed here", req.method().as_str()),
                );
                (
                    "unmatched",
                    problem
                        .into_response()
                        .with_header("allow", allow.join(", ")),
                )
            }
            Match::NotFound => (
                "unmatched",
                Problem::not_found(format!("no route for {}", req.path())).into_response(),
            ),
        };
        self.metrics
            .observe(route, response.status, started.elapsed());
        response
    }

    fn edge_error(&self, status: u16) {
        self.metrics.count_edge(status);
    }
}
