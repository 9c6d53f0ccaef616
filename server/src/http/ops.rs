//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`, and the
//! ownership probe `/debug/shards/{key}`.

use std::sync::atomic::Ordering;

use rayltics_net::{Problem, Response};
use serde_json::json;

use super::NodeShared;
use crate::metrics::ShardMetrics;
use crate::service::{ShardRequest, ShardResponse, ShardRouter};

/// Largest key `/debug/shards/{key}` accepts, bytes.
const MAX_KEY_BYTES: usize = 1024;

/// `GET /healthz`: the process is up.
pub(super) fn healthz() -> Response {
    Response::text(200, "ok")
}

/// `GET /readyz`: every configured backend reachable; 503 while draining.
pub(super) fn readyz(node: &NodeShared, shards: usize) -> Response {
    if node.draining.load(Ordering::Relaxed) {
        return Problem::new(503, "not_ready", "the node is draining").into_response();
    }
    // The embedded node has no external backends yet; each configured
    // backend will report here by name.
    Response::json(
        200,
        &json!({ "status": "ready", "shards": shards, "backends": {} }),
    )
}

/// `GET /metrics`: Prometheus text exposition of the whole node.
pub(super) fn metrics(metrics: &ShardMetrics) -> Response {
    Response::new(200).with_body(
        "text/plain; version=0.0.4; charset=utf-8",
        metrics.node().render(),
    )
}

/// `GET /debug/shards/{key}`: asks the shard that owns `key` (over the mesh
/// when it is not this one) and reports who answered.
pub(super) async fn shard_of(shard: &ShardRouter, key: &str) -> Response {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Problem::validation(format!("key must be 1..={MAX_KEY_BYTES} bytes")).into();
    }
    let owner = shard.owner_of(key.as_bytes());
    match shard
        .call(
            owner,
            ShardRequest::WhoOwns {
                key: key.to_owned(),
            },
        )
        .await
    {
        Ok(ShardResponse::Owner { answered_by, owns }) => Response::json(
            200,
            &json!({
                "key": key,
                "owner_shard": owner,
                "answered_by": answered_by,
                "owned_by_answerer": owns,
                "accepted_by": shard.shard_id(),
                "shard_count": shard.shard_count(),
            }),
        ),
        Ok(other) => {
            Problem::new(500, "internal", format!("unexpected mesh reply {other:?}")).into()
        }
        Err(e) => Problem::new(503, "unavailable", e.to_string()).into(),
    }
}
