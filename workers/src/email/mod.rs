//! The email sender: consumer group `rayltics-email` on `rayltics.orders`.
//!
//! Per batch: decode each event (`OrderEvent`), keep the kinds that send a
//! mail (`order.created`, `order.payment_failed`, `order.expired`), drop
//! event ids already in the [`SentLog`] (and repeats within the batch),
//! render and hand the mails over (up to `concurrency` at once; transient
//! failures are retried with backoff, a permanent refusal is logged and
//! recorded as done), record each id once handed over, fdatasync the log,
//! then commit the batch's offsets. A batch cut short by shutdown commits
//! nothing; what it sent is in the log, so the redelivery sends nothing
//! twice.

pub mod render;
pub mod sent_log;
pub mod transport;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use prost::Message as _;
use rayltics_proto::events::v1 as pb;
use tokio::sync::watch;

use crate::config::WorkersConfig;
use crate::consumer::{
    Backoff, BatchWorker, Envelope, EventSource, GroupConsumer, age_secs, run_batches,
};
use crate::error::WorkerError;
use crate::metrics::WorkerMetrics;
use render::MailKind;
use sent_log::SentLog;
use transport::{DeliveryError, Outbox};

/// The worker label of this worker's metrics.
const WORKER: &str = "email";

/// What one event leads to.
#[derive(Debug)]
enum Plan {
    /// Nothing to send; the outcome label says why.
    Skip(&'static str),
    /// A mail to hand over.
    Mail(Job),
}

/// One mail to hand over.
#[derive(Debug)]
struct Job {
    /// The idempotency key: the event id.
    key: String,
    kind: MailKind,
    at: String,
    mail: Message,
}

/// How handing over one mail ended.
#[derive(Debug)]
enum Outcome {
    Delivered,
    Rejected(String),
    Interrupted,
}

/// The email sender (see the module docs), reading its events from `S`: a
/// Kafka consumer group by default.
#[derive(Debug)]
pub struct EmailWorker<S = GroupConsumer> {
    consumer: S,
    outbox: Outbox,
    log: SentLog,
    from: Mailbox,
    domain: String,
    shop: String,
    max_batch: usize,
    max_wait: Duration,
    concurrency: usize,
    retry_max: Duration,
    metrics: Arc<WorkerMetrics>,
}

impl EmailWorker {
    /// Opens the sent-ids log and the outbox and joins the consumer group.
    pub fn new(cfg: &WorkersConfig, metrics: Arc<WorkerMetrics>) -> Result<Self, WorkerError> {
        let e = &cfg.email;
        let consumer = GroupConsumer::new(cfg, WORKER, &e.group_id, &e.topic, metrics.clone())?;
        Self::with_source(cfg, metrics, consumer)
    }
}

impl<S: EventSource> EmailWorker<S> {
    /// Opens the sent-ids log and the outbox; events come from `consumer`
    /// (only `workers.email.topic`'s are expected).
    pub fn with_source(
        cfg: &WorkersConfig,
        metrics: Arc<WorkerMetrics>,
        consumer: S,
    ) -> Result<Self, WorkerError> {
        let e = &cfg.email;
        let from: Mailbox = e
            .from
            .parse()
            .map_err(|err| WorkerError::Config(format!("workers.email.from: {err}")))?;
        let domain = from.email.domain().to_owned();
        let log = SentLog::open(&cfg.data_dir)?;
        let outbox = Outbox::new(e, &cfg.eml_dir())?;
        tracing::info!(group = %e.group_id, topic = %e.topic, outbox = ?outbox,
            sent = log.len(), "email sender started");
        Ok(Self {
            consumer,
            outbox,
            log,
            from,
            domain,
            shop: e.shop_name.clone(),
            max_batch: e.max_batch,
            max_wait: Duration::from_millis(e.max_wait_ms),
            concurrency: e.concurrency,
            retry_max: Duration::from_millis(cfg.retry_max_ms),
            metrics,
        })
    }

    /// Runs until `shutdown` turns true; an `Err` only for a failure of its
    /// own data dir (the sent-ids log cannot be made durable).
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), WorkerError> {
        run_batches(self, shutdown).await
    }

    /// Sends the batch's mails; false if shutdown interrupted it.
    async fn send_batch(
        &mut self,
        batch: &[Envelope],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<bool, WorkerError> {
        let mut jobs = Vec::new();
        let mut in_batch = HashSet::new();
        for env in batch {
            match self.plan(env) {
                Plan::Skip(outcome) => self.metrics.events(WORKER, outcome, 1),
                Plan::Mail(job) => {
                    if self.log.contains(&job.key) || !in_batch.insert(job.key.clone()) {
                        self.metrics.events(WORKER, "duplicate", 1);
                    } else {
                        jobs.push(job);
                    }
                }
            }
        }
        let outbox = self.outbox.clone();
        let metrics = self.metrics.clone();
        let retry_max = self.retry_max;
        let mut sent = futures::stream::iter(jobs)
            .map(|job| {
                let (outbox, metrics, shutdown) = (&outbox, &metrics, shutdown.clone());
                async move {
                    let outcome =
                        deliver_with_retry(outbox, metrics, &job, retry_max, shutdown).await;
                    (job, outcome)
                }
            })
            .buffer_unordered(self.concurrency);
        let mut complete = true;
        while let Some((job, outcome)) = sent.next().await {
            match outcome {
                Outcome::Delivered => {
                    self.log.record(&job.key)?;
                    self.metrics
                        .mails_sent
                        .with_label_values(&[job.kind.event_kind()])
                        .inc();
                    self.metrics.events(WORKER, "done", 1);
                    if let Some(age) = age_secs(&job.at) {
                        self.metrics
                            .event_age
                            .with_label_values(&[WORKER])
                            .observe(age);
                    }
                }
                Outcome::Rejected(why) => {
                    tracing::error!(event_id = %job.key, kind = job.kind.event_kind(), error = %why,
                        "the mail was refused for good; not retried");
                    self.log.record(&job.key)?;
                    self.metrics.events(WORKER, "rejected", 1);
                }
                Outcome::Interrupted => complete = false,
            }
        }
        Ok(complete)
    }

    /// Decides what `env` leads to.
    fn plan(&self, env: &Envelope) -> Plan {
        let Ok(event) = pb::OrderEvent::decode(env.payload.as_slice()) else {
            tracing::warn!(topic = %env.topic, partition = env.partition, offset = env.offset,
                "undecodable order event; skipped");
            return Plan::Skip("undecodable");
        };
        let Some(order) = event.order else {
            return Plan::Skip("undecodable");
        };
        let kind = if env.kind.is_empty() {
            kind_of_status(&order.status)
        } else {
            env.kind.as_str()
        };
        let Some(kind) = MailKind::for_event(kind) else {
            return Plan::Skip("ignored");
        };
        let Ok(to) = order.user_email.parse::<Mailbox>() else {
            tracing::warn!(order_id = %order.id, event_id = %env.event_id,
                "order event without a usable user_email; no mail sent");
            return Plan::Skip("no_recipient");
        };
        // Without an event id (a producer that sends none), the pair
        // (kind, order) is as good a key: an order has at most one event of
        // each mailed kind.
        let key = if env.event_id.is_empty() {
            format!("{}/{}", kind.event_kind(), order.id)
        } else {
            env.event_id.clone()
        };
        let at = if env.at.is_empty() {
            order.updated_at.clone()
        } else {
            env.at.clone()
        };
        match self.build(&key, kind, &order, to, &at) {
            Ok(mail) => Plan::Mail(Job {
                key,
                kind,
                at,
                mail,
            }),
            Err(e) => {
                tracing::warn!(order_id = %order.id, error = %e, "cannot build the mail; skipped");
                Plan::Skip("rejected")
            }
        }
    }

    /// The mail for `order`: `Message-ID` from the event id (the same event
    /// always makes the same mail, so a resend is recognisable), `Date`
    /// from the event's time.
    fn build(
        &self,
        key: &str,
        kind: MailKind,
        order: &pb::Order,
        to: Mailbox,
        at: &str,
    ) -> Result<Message, lettre::error::Error> {
        let r = render::render(kind, order, &self.shop);
        let date = rayltics_commerce::clock::parse_rfc3339(at)
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or_else(SystemTime::now, |ms| {
                SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
            });
        Message::builder()
            .message_id(Some(message_id(key, &self.domain)))
            .date(date)
            .from(self.from.clone())
            .to(to)
            .subject(r.subject)
            .multipart(MultiPart::alternative_plain_html(r.text, r.html))
    }
}

impl<S: EventSource> BatchWorker for EmailWorker<S> {
    type Source = S;
    const NAME: &'static str = WORKER;

    fn source(&self) -> &S {
        &self.consumer
    }

    fn batch_limits(&self) -> (usize, Duration) {
        (self.max_batch, self.max_wait)
    }

    fn metrics(&self) -> &WorkerMetrics {
        &self.metrics
    }

    /// Sends the batch's mails, then makes the sent-ids log durable (also
    /// when shutdown cut the batch short: what was sent stays recorded).
    async fn handle(
        &mut self,
        batch: &[Envelope],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool, WorkerError> {
        let complete = self.send_batch(batch, shutdown).await?;
        self.log.sync()?;
        Ok(complete)
    }
}

/// `<{key}@{domain}>`, with characters a Message-ID cannot hold replaced.
pub fn message_id(key: &str, domain: &str) -> String {
    let local: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._/=+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("<{local}@{domain}>")
}

/// The event kind of an order status (for events without a `kind` header).
fn kind_of_status(status: &str) -> &'static str {
    match status {
        "pending" => "order.created",
        "paid" => "order.paid",
        "payment_failed" => "order.payment_failed",
        "cancelled" => "order.cancelled",
        "expired" => "order.expired",
        _ => "",
    }
}

/// Hands `job` over, retrying transient failures until shutdown.
async fn deliver_with_retry(
    outbox: &Outbox,
    metrics: &WorkerMetrics,
    job: &Job,
    retry_max: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Outcome {
    let mut backoff = Backoff::new(retry_max);
    loop {
        let backend = match outbox {
            Outbox::Smtp(_) => "smtp",
            Outbox::Eml(_) => "eml",
        };
        match outbox.deliver(&job.key, job.mail.clone()).await {
            Ok(()) => {
                metrics.backend(backend, true);
                return Outcome::Delivered;
            }
            Err(DeliveryError::Permanent(why)) => {
                metrics.backend(backend, true);
                return Outcome::Rejected(why);
            }
            Err(DeliveryError::Transient(why)) => {
                metrics.backend(backend, false);
                let cause = match outbox {
                    Outbox::Smtp(_) => "smtp",
                    Outbox::Eml(_) => "file",
                };
                metrics.retry(WORKER, cause);
                tracing::warn!(event_id = %job.key, error = %why, "mail not handed over; retrying");
                if !backoff.wait(&mut shutdown).await {
                    return Outcome::Interrupted;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_come_from_the_event_id() {
        assert_eq!(
            message_id("0190a0b1-7c2d-7e3f-8a9b-0c1d2e3f4a5b", "shop.test"),
            "<0190a0b1-7c2d-7e3f-8a9b-0c1d2e3f4a5b@shop.test>"
        );
        assert_eq!(message_id("a b<c>", "d"), "<a_b_c_@d>");
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(kind_of_status("pending"), "order.created");
        assert_eq!(kind_of_status("expired"), "order.expired");
        assert_eq!(kind_of_status("?"), "");
    }
}
