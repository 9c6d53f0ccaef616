//! Helpers of the workers' integration tests: the real backends of
//! `infra/local` (`. $RAYLTICS_INFRA_DIR/env.sh`), an rdkafka producer that
//! sends events the way the relay does (protobuf payload, key = aggregate
//! id, headers `event-id`, `kind`, `at`), and a worker run that can be
//! stopped.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayltics_workers::{WorkerMetrics, WorkersConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A backend's address from env.sh; fails with how to start it.
pub fn backend(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: start the backends first: infra/local/install.sh kafka,mongo,smtp && \
             infra/local/up.sh kafka,mongo,smtp && . $RAYLTICS_INFRA_DIR/env.sh \
             (scripts/test.sh does this)"
        )
    })
}

/// A name no earlier run used (topics, groups, collections, ids).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Creates `topic` with `partitions` partitions (tansu does not auto-create).
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let res = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topics");
    for r in res {
        r.expect("topic created");
    }
}

/// A producer like the relay's (idempotent, acks=all).
pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Sends one event and waits for the broker's ack.
pub async fn produce(
    p: &FutureProducer,
    topic: &str,
    key: &str,
    event_id: &str,
    kind: &str,
    at: &str,
    payload: &[u8],
) {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "event-id",
            value: Some(event_id),
        })
        .insert(Header {
            key: "kind",
            value: Some(kind),
        })
        .insert(Header {
            key: "at",
            value: Some(at),
        });
    p.send(
        FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers),
        Duration::from_secs(10),
    )
    .await
    .map_err(|(e, _)| e)
    .expect("produced");
}

/// The current time, RFC 3339.
pub fn now_rfc3339() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    rayltics_commerce::clock::rfc3339(ms)
}

/// Worker settings for tests: fast group joins and retries.
pub fn config(data_dir: PathBuf) -> WorkersConfig {
    let mut c = WorkersConfig {
        kafka_brokers: backend("RAYLTICS_TEST_KAFKA_BROKERS"),
        session_timeout_ms: 2000,
        heartbeat_interval_ms: 500,
        statistics_interval_ms: 500,
        metadata_refresh_ms: 1000,
        data_dir,
        retry_max_ms: 500,
        ..Default::default()
    };
    c.email.enabled = false;
    c
}

/// A running `rayltics_workers::run`.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), rayltics_workers::WorkerError>>,
    pub metrics: Arc<WorkerMetrics>,
}

/// Starts the workers of `cfg` on the test's runtime.
pub fn start(cfg: WorkersConfig) -> Running {
    let metrics = Arc::new(WorkerMetrics::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(rayltics_workers::run(cfg, metrics.clone(), async move {
        let _ = stopped.await;
    }));
    Running {
        stop: Some(stop),
        task,
        metrics,
    }
}

impl Running {
    /// Stops the workers and waits for them (they must end cleanly).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("workers stop within 30 s")
            .expect("worker task joined")
            .expect("workers ended without error");
    }

    /// The value of a counter of `family` with exactly these label values.
    pub fn counter(&self, family: &str, labels: &[&str]) -> u64 {
        let m = &self.metrics;
        match family {
            "mails_sent" => m.mails_sent.with_label_values(labels).get(),
            "events" => m.events.with_label_values(labels).get(),
            "retries" => m.retries.with_label_values(labels).get(),
            "chat_messages" => m.chat_messages.with_label_values(labels).get(),
            other => panic!("unknown family {other}"),
        }
    }
}

/// Polls `check` every 100 ms until it returns true; fails after `secs`.
pub async fn wait_until<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `infra/local/<script> <backend>` (stop or start one backend).
pub fn infra(script: &str, backend: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(root.join("infra/local").join(script))
        .arg(backend)
        .current_dir(&root);
    if std::env::var_os("RAYLTICS_INFRA_DIR").is_none() {
        cmd.env("RAYLTICS_INFRA_DIR", root.join("target/infra"));
    }
    let out = cmd.output().expect("run infra script");
    assert!(
        out.status.success(),
        "infra/local/{script} {backend} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
