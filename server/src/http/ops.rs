//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`, and the
//! ownership probe `/debug/shards/{key}`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rayltics_journal::JournalStats;

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

/// The store's health as `/readyz` reports it: which store is configured
/// and, per shard, whether its journal's medium takes writes. Node-wide;
/// each shard attaches its journal counters at start.
#[derive(Debug)]
pub struct StorageHealth {
    kind: &'static str,
    shards: Mutex<Vec<(usize, Arc<JournalStats>)>>,
}

impl StorageHealth {
    /// Health of the store named `kind` (`journal` or `postgres`), with no
    /// shard attached yet.
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            shards: Mutex::new(Vec::new()),
        }
    }

    /// Lets `/readyz` read shard `shard`'s journal state.
    pub fn attach(&self, shard: usize, stats: Arc<JournalStats>) {
        self.shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((shard, stats));
    }

    /// Shards whose medium refuses writes now, in order.
    fn down(&self) -> Vec<usize> {
        let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        let mut down: Vec<usize> = shards
            .iter()
            .filter(|(_, s)| !s.available.load(Ordering::Relaxed))
            .map(|(id, _)| *id)
            .collect();
        down.sort_unstable();
        down
    }
}

/// `GET /readyz`: names each configured backend and its state. 503 while
/// the store refuses writes (naming it and the shards affected) or while
/// draining. A Kafka broker, SMTP server or MongoDB that is away does not
/// make the node unready: events wait in the outbox (`kafka_backlog_events`
/// says how many) and are published, mailed or archived when it returns.
pub(super) fn readyz(
    node: &NodeShared,
    shards: usize,
    workers: &rayltics_workers::WorkerMetrics,
) -> Response {
    if node.draining.load(Ordering::Relaxed) {
        return Problem::new(503, "not_ready", "the node is draining").into_response();
    }
    let storage = &node.storage;
    let down = storage.down();
    if !down.is_empty() {
        return Problem::new(
            503,
            "not_ready",
            format!(
                "backend {} unreachable: shards {down:?} cannot make changes durable",
                storage.kind
            ),
        )
        .into_response();
    }
    let mut backends = serde_json::Map::new();
    backends.insert(storage.kind.into(), json!("up"));
    let kafka = node.kafka.kafka_state();
    let mut body = json!({ "status": "ready", "shards": shards });
    if kafka.state != crate::relay::KafkaState::Disabled {
        backends.insert("kafka".into(), json!(kafka.state.as_str()));
        body["kafka_backlog_events"] = json!(kafka.backlog_events);
        if let Some(e) = &kafka.last_error {
            body["kafka_last_error"] = json!(e);
        }
    }
    // The workers' backends (SMTP, MongoDB) once used: a mail or an archive
    // write that waits does not make the node unready either.
    for (name, up) in workers.backend_states() {
        backends.insert(name, json!(if up { "up" } else { "down" }));
    }
    body["backends"] = serde_json::Value::Object(backends);
    Response::json(200, &body)
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
