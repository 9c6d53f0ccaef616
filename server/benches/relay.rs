//! Events/s the outbox relay publishes to a real broker with batching, as a
//! ratio to publishing one event per request (issue 6), in the same run.
//!
//! Drives the relay's own code (`rayltics::relay::Relay` with its pumps,
//! producer and acknowledgement tracking) from an in-memory outbox of
//! order events (Protobuf payloads of a realistic size, 1000 order ids as
//! keys) in two modes, alternated (A/B pairs, medians reported):
//! - **batched**: the relay as configured by default (`linger.ms` 5, up to
//!   20 000 events in flight per shard, lz4);
//! - **one by one**: the same relay with one event in flight and
//!   `linger.ms` 0: send one, await its acknowledgement, then the next.
//!
//! A run ends when the outbox has every event marked published (acked by
//! the broker with `acks=all`, in order). Each run uses fresh topics.
//!
//! ```sh
//! . target/infra/env.sh   # RAYLTICS_TEST_KAFKA_BROKERS
//! cargo bench -p rayltics --bench relay -- [--events N] [--one-by-one-events N] [--pairs N] [--shards N]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::oneshot;

use rayltics::metrics::Metrics;
use rayltics::relay::{KafkaConfig, KafkaHealth, MarkReply, Outbox, OutboxPage, ReadReply, Relay};
use rayltics_commerce::model::EventRec;
use rayltics_proto::events::v1 as pb;

/// An outbox of pre-made events; reads answer at once, a read past the end
/// waits forever (like a shard's long poll).
#[derive(Debug)]
struct MemOutbox {
    events: Arc<Vec<EventRec>>,
    published: Arc<AtomicU64>,
    first_read: Arc<Mutex<Option<Instant>>>,
    parked: Mutex<Vec<oneshot::Sender<Result<OutboxPage, String>>>>,
}

impl Outbox for MemOutbox {
    fn read(&self, after: Option<u64>, max: usize) -> Option<ReadReply> {
        self.first_read
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now);
        let after = after.unwrap_or_else(|| self.published.load(Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        let from = usize::try_from(after).unwrap_or(usize::MAX);
        if from >= self.events.len() {
            self.parked.lock().unwrap().push(tx);
            return Some(rx);
        }
        let to = (from + max).min(self.events.len());
        let _ = tx.send(Ok(OutboxPage {
            events: self.events[from..to].to_vec(),
            first_offset: 1,
            last_offset: self.events.len() as u64,
            published: self.published.load(Ordering::Relaxed),
        }));
        Some(rx)
    }

    fn mark_published(&self, upto: u64) -> Option<MarkReply> {
        self.published.fetch_max(upto, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Ok(()));
        Some(rx)
    }
}

/// `n` order events on `topic`: 1000 orders, each a few status changes.
fn events(n: usize, topic: &str) -> Vec<EventRec> {
    (0..n)
        .map(|i| {
            let order = format!("0190a1b2-c3d4-7e5f-8a9b-{:012x}", i % 1000);
            let payload = pb::OrderEvent {
                order: Some(pb::Order {
                    id: order.clone(),
                    user_id: "0190a1b2-c3d4-7e5f-8a9b-00000000beef".into(),
                    status: "pending".into(),
                    items: vec![pb::OrderLine {
                        sku: format!("sku-{}", i % 97),
                        quantity: 1,
                        price_cents: 1999,
                    }],
                    total_cents: 1999,
                    currency: "USD".into(),
                    created_at: "2026-11-25T01:02:03.456Z".into(),
                    updated_at: "2026-11-25T01:02:03.456Z".into(),
                    expires_at: "2026-11-25T01:17:03.456Z".into(),
                    sale_id: String::new(),
                    ..Default::default()
                }),
            }
            .encode_to_vec();
            EventRec {
                offset: i as u64 + 1,
                id: uuid::Uuid::now_v7().hyphenated().to_string(),
                topic: topic.to_owned(),
                key: order,
                kind: "order.created".into(),
                at: 1_795_000_000_000 + i as i64,
                payload,
            }
        })
        .collect()
}

/// One measured run: publishes `n` events per shard; returns events/s and
/// the relay batches it took.
fn run(cfg: &KafkaConfig, shards: usize, n: usize, tag: &str) -> (f64, u64) {
    let topic = format!("rayltics.bench.{}.{tag}", std::process::id());
    let metrics = Metrics::new();
    let published: Vec<Arc<AtomicU64>> = (0..shards).map(|_| Arc::default()).collect();
    let first_read = Arc::new(Mutex::new(None));
    let outboxes: Vec<MemOutbox> = (0..shards)
        .map(|s| MemOutbox {
            events: Arc::new(events(n, &topic)),
            published: published[s].clone(),
            first_read: first_read.clone(),
            parked: Mutex::new(Vec::new()),
        })
        .collect();
    let relay = Relay::start(
        cfg,
        &[topic],
        outboxes,
        &metrics.relay,
        KafkaHealth::connecting(Vec::new()),
    )
    .expect("start the relay");
    let deadline = Instant::now() + Duration::from_secs(600);
    while published
        .iter()
        .any(|p| p.load(Ordering::Relaxed) < n as u64)
    {
        assert!(
            Instant::now() < deadline,
            "{tag}: not published within 10 min"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    let done = Instant::now();
    let started = first_read.lock().unwrap().expect("the relay read");
    relay.stop();
    let text = String::from_utf8(metrics.render()).unwrap_or_default();
    let batches: u64 = text
        .lines()
        .filter(|l| l.starts_with("rayltics_kafka_publish_batches_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum();
    let secs = done.duration_since(started).as_secs_f64();
    ((shards * n) as f64 / secs, batches)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut events_batched = 200_000usize;
    let mut events_single = 3_000usize;
    let mut pairs = 3usize;
    let mut shards = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--events" => events_batched = value(),
            "--one-by-one-events" => events_single = value(),
            "--pairs" => pairs = value(),
            "--shards" => shards = value(),
            // cargo bench passes --bench
            _ => {}
        }
    }
    let Ok(brokers) = std::env::var("RAYLTICS_BENCH_KAFKA_BROKERS")
        .or_else(|_| std::env::var("RAYLTICS_TEST_KAFKA_BROKERS"))
    else {
        eprintln!(
            "relay bench: set RAYLTICS_TEST_KAFKA_BROKERS (infra/local/up.sh kafka); skipped"
        );
        return;
    };
    let batched = KafkaConfig {
        brokers: brokers.clone(),
        client_id: "rayltics-bench".into(),
        ..KafkaConfig::default()
    };
    let single = KafkaConfig {
        linger_ms: 0,
        max_in_flight_events: 1,
        read_batch_events: 1,
        ..batched.clone()
    };
    println!(
        "relay bench: broker {brokers}, {shards} shard(s); batched {events_batched} events/shard \
         (linger {} ms, {} in flight, {}), one by one {events_single} events/shard; {pairs} A/B pairs",
        batched.linger_ms, batched.max_in_flight_events, batched.compression
    );
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        let (rate_a, batches_a) = run(&batched, shards, events_batched, &format!("b{i}"));
        let (rate_b, batches_b) = run(&single, shards, events_single, &format!("s{i}"));
        println!(
            "pair {i}: batched {rate_a:>10.0} events/s ({batches_a} relay batches) | one by one {rate_b:>8.0} events/s ({batches_b} relay batches) | x{:.1}",
            rate_a / rate_b
        );
        a.push(rate_a);
        b.push(rate_b);
    }
    let (ma, mb) = (median(a), median(b));
    println!(
        "median: batched {ma:.0} events/s, one by one {mb:.0} events/s, ratio x{:.1} (target >= x10)",
        ma / mb
    );
}
