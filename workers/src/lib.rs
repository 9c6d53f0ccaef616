//! The workers role of rayltics (issue 6, DESIGN.md section 2): Kafka
//! consumer groups whose effects leave the node — order mails and the chat
//! archive in MongoDB.
//!
//! Delivery is at least once, effects are idempotent: a batch's offsets are
//! committed only after its effects, and each effect is keyed so that a
//! redelivered event changes nothing (the email sender by event id in a
//! durable sent-ids log, the chat persister by the unique `(room, seq)`).
//!
//! # Layout
//! - [`config`]: the `[workers]` section ([`WorkersConfig`]).
//! - [`consumer`]: a consumer-group member (manual commits, batches of N
//!   events or T ms, lag from librdkafka's statistics) and the event
//!   [`consumer::Envelope`] (headers `event-id`, `kind`, `at`).
//! - [`email`]: the email sender: [`email::render`] (templates),
//!   [`email::sent_log`] (durable ids), [`email::transport`] (SMTP via
//!   lettre, or `.eml` files).
//! - [`chat`]: the chat persister and [`chat::archive::ChatArchive`]
//!   (MongoDB writes and history reads).
//! - [`metrics`]: [`WorkerMetrics`], registered into the node's registry.
//! - [`error`]: what failed and whether a retry helps ([`WorkerError`]).
//!
//! # Flow
//! Kafka `rayltics.orders` -> `GroupConsumer::next_batch` ->
//! decode `OrderEvent` -> skip ids in the sent log -> render -> SMTP / `.eml`
//! -> record id -> fdatasync log -> commit offsets.
//!
//! Kafka `rayltics.chat` -> `next_batch` -> decode `ChatEvent` ->
//! `insert_many(ordered = false)` (duplicates ignored; retried with backoff
//! while MongoDB is away) -> commit offsets.
//!
//! On the embedded default (no Kafka), [`run_email_from`] runs the email
//! sender on an [`EventSource`] the node provides: its shards' outboxes.
//!
//! [`run`] runs both on the caller's tokio runtime (the node's I/O sidecar)
//! until its shutdown future completes; each worker then finishes or
//! abandons its batch (abandoned batches are not committed) and returns.

#![warn(missing_docs)]

pub mod chat;
pub mod config;
pub mod consumer;
pub mod email;
pub mod error;
pub mod metrics;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

pub use chat::archive::ChatArchive;
pub use config::{ChatPersisterConfig, EmailConfig, MailTransport, WorkersConfig};
pub use consumer::{Envelope, EventSource};
pub use email::EmailWorker;
pub use error::WorkerError;
pub use metrics::WorkerMetrics;

/// Runs the configured workers until `shutdown` completes, then stops them
/// and waits for them. Workers that the configuration leaves off (no Kafka
/// brokers; no MongoDB URL for the chat persister; `email.enabled = false`)
/// do not start, so with the embedded defaults this returns once
/// `shutdown` completes.
///
/// Returns an error for a wrong configuration or an unusable data dir at
/// start, or when a worker failed while running; broker, SMTP and MongoDB
/// outages are retried inside and never end a worker.
pub async fn run(
    config: WorkersConfig,
    metrics: Arc<WorkerMetrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), WorkerError> {
    config.validate()?;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    if config.email_enabled() {
        let worker = email::EmailWorker::new(&config, metrics.clone())?;
        tasks.spawn(worker.run(stopped.clone()));
    }
    if config.chat_enabled() {
        let worker = chat::ChatPersister::new(&config, metrics.clone()).await?;
        tasks.spawn(worker.run(stopped.clone()));
    }
    if tasks.is_empty() {
        tracing::info!("no worker configured (workers.kafka_brokers empty)");
    }
    let mut failure = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(done) = tasks.join_next() => {
                if let Some(e) = task_failure(done) {
                    tracing::error!(error = %e, "a worker failed; stopping the others");
                    failure = Some(e);
                    break;
                }
            }
        }
    }
    let _ = stop.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Some(e) = task_failure(done) {
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Runs the email sender on events from `source` (the node's own outboxes
/// on the embedded default, where there is no Kafka) until `shutdown`
/// completes. `config.email.transport` applies as usual (`.eml` files by
/// default).
pub async fn run_email_from(
    config: WorkersConfig,
    metrics: Arc<WorkerMetrics>,
    source: impl EventSource,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), WorkerError> {
    let worker = email::EmailWorker::with_source(&config, metrics, source)?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(worker.run(stopped));
    shutdown.await;
    let _ = stop.send(true);
    match task.await {
        Ok(result) => result,
        Err(e) => Err(WorkerError::Task(e.to_string())),
    }
}

/// The error a finished worker task ended with, if any.
fn task_failure(
    done: Result<Result<(), WorkerError>, tokio::task::JoinError>,
) -> Option<WorkerError> {
    match done {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(WorkerError::Task(e.to_string())),
    }
}
