//! The outbox relay against a real Kafka-protocol broker (tansu from
//! `infra/local`, `RAYLTICS_TEST_KAFKA_BROKERS`): every committed order
//! event reaches `rayltics.orders` keyed by its order id with its Protobuf
//! payload and per-order order; a broker outage loses nothing; a restarted
//! node resumes from its durable published offset.
//!
//! The outage tests stop and start the broker with `infra/local/down.sh` /
//! `up.sh` (same `RAYLTICS_INFRA_DIR`; the port comes from the brokers
//! variable). tansu keeps topics in memory, so a restarted broker has none:
//! the relay must create them again. The tests of this file take turns
//! (one broker).

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use prost::Message as _;
use rayltics_proto::events::v1::event_log_client::EventLogClient;
use rayltics_proto::events::v1::{Event, OrderEvent, ReadRequest};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use tonic::transport::Channel;

use support::Node;
use support::api::{Client, rfc3339_in};

/// One broker for every test here: they take turns.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOPIC: &str = "rayltics.orders";

fn brokers() -> String {
    std::env::var("RAYLTICS_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "RAYLTICS_TEST_KAFKA_BROKERS is not set: start a broker with \
             `infra/local/install.sh kafka && infra/local/up.sh kafka` and source its env.sh"
        )
    })
}

/// A node whose relay publishes to the test broker, with short retry
/// waits so outage tests finish quickly.
fn kafka_node() -> support::NodeBuilder {
    Node::builder()
        .commerce()
        .env("RAYLTICS_KAFKA__BROKERS", brokers())
        .env("RAYLTICS_KAFKA__RETRY_BACKOFF_MAX_MS", 1000)
        .env("RAYLTICS_KAFKA__DELIVERY_TIMEOUT_MS", 3000)
        .env("RAYLTICS_KAFKA__LINGER_MS", 2)
}

/// Runs `infra/local/{script} kafka` on the test broker's infra dir/port.
fn infra(script: &str) {
    let port = brokers()
        .rsplit_once(':')
        .map(|(_, p)| p.to_owned())
        .expect("brokers is host:port");
    infra_on(script, "kafka", &[("RAYLTICS_KAFKA_PORT", port)]);
}

/// Starts the broker again when a test ends early (a failed assertion must
/// not leave it stopped for the next test).
struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            infra("up.sh");
        }
    }
}

/// Prints the node's log when a test fails while it runs.
struct LogOnPanic<'a>(&'a Node);

impl Drop for LogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- node stderr ---\n{}", self.0.stderr());
            // The node may be gone: a failed scrape must not panic here.
            let metrics = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.0.get("/metrics").text()
            }))
            .unwrap_or_default();
            let relay: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("rayltics_kafka") || l.starts_with("rayltics_outbox"))
                .filter(|l| !l.contains("_bucket"))
                .collect();
            eprintln!("--- relay metrics ---\n{}", relay.join("\n"));
        }
    }
}

/// One message as consumed.
#[derive(Debug, Clone)]
struct Got {
    partition: i32,
    offset: i64,
    key: String,
    id: String,
    kind: String,
    at: String,
    payload: Vec<u8>,
}

/// Reads `topic` from the beginning of every partition (assigned, no group
/// join) until `done` holds or `timeout` passes.
fn consume(topic: &str, timeout: Duration, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("rayltics-test-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "2000")
        .set("heartbeat.interval.ms", "500")
        .set("socket.timeout.ms", "3000")
        .set("api.version.request.timeout.ms", "3000")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + timeout;
    let partitions = loop {
        if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(2))
            && let Some(t) = md.topics().first()
            && t.error().is_none()
            && !t.partitions().is_empty()
        {
            break t.partitions().len() as i32;
        }
        assert!(
            Instant::now() < deadline,
            "topic {topic} did not appear within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    while Instant::now() < deadline && !done(&got) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let header = |name: &str| {
                    m.headers()
                        .and_then(|h| h.iter().find(|h| h.key == name))
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                };
                got.push(Got {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    id: header("event-id"),
                    kind: header("kind"),
                    at: header("at"),
                    payload: m.payload().unwrap_or_default().to_vec(),
                });
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    got
}

/// Every event of the node's embedded log, by shard, in offset order.
async fn event_log(node: &Node) -> Vec<Event> {
    let channel = Channel::from_shared(node.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = EventLogClient::new(channel);
    let mut all = Vec::new();
    for shard in 0..node.shards as u32 {
        let mut after = 0;
        loop {
            let page = client
                .read(ReadRequest {
                    shard,
                    after_offset: after,
                    max_events: 1000,
                })
                .await
                .unwrap()
                .into_inner();
            let Some(last) = page.events.last() else {
                break;
            };
            after = last.offset;
            all.extend(page.events);
        }
    }
    all
}

/// `rayltics_outbox_backlog_events` summed over shards.
fn backlog(node: &Node) -> i64 {
    let text = node.get("/metrics").text();
    text.lines()
        .filter(|l| l.starts_with("rayltics_outbox_backlog_events{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|v| v as i64)
        .sum()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Places `orders` orders from `users` fresh users (each order one unit of
/// `sku`); pays every second one and cancels every fourth. Returns the
/// order ids and the number of events they made.
fn storm(node: &Node, tag: &str, sku: &str, users: usize, orders: usize) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut events = 0;
    for u in 0..users {
        let (mut c, _) = Client::register(node, &format!("{tag}-{u}@kafka.test"));
        for i in 0..orders {
            let r = c.post_idem(
                "/api/v1/orders",
                &format!("{tag}-{u}-{i}"),
                &json!({"items": [{"sku": sku, "quantity": 1}]}),
            );
            assert_eq!(r.status, 201, "order: {}", r.text());
            let id = r.json()["id"].as_str().unwrap().to_owned();
            if i % 2 == 0 {
                let r = c.post(
                    &format!("/api/v1/orders/{id}/pay"),
                    &json!({"payment_method": "test_card", "card_number": "4242424242424242"}),
                );
                assert_eq!(r.status, 200, "pay: {}", r.text());
                events += 1;
            } else if i % 4 == 1 {
                let r = c.post(&format!("/api/v1/orders/{id}/cancel"), &json!({}));
                assert_eq!(r.status, 200, "cancel: {}", r.text());
                events += 1;
            }
            ids.push(id);
            events += 1;
        }
    }
    (ids, events)
}

/// Checks that every event of `expected` arrived (duplicates allowed, each
/// with the same content), keyed and decodable, and that each order's
/// distinct events arrived in the order of its log.
fn check_delivery(expected: &[Event], got: &[Got]) {
    let wanted: HashMap<&str, &Event> = expected.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut sorted: Vec<&Got> = got
        .iter()
        .filter(|g| wanted.contains_key(g.id.as_str()))
        .collect();
    sorted.sort_by_key(|g| (g.partition, g.offset));
    let mut seen = HashSet::new();
    let mut arrived: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    for g in &sorted {
        let e = wanted[g.id.as_str()];
        assert_eq!(g.key, e.key, "key = aggregate (order) id");
        assert_eq!(g.kind, e.kind, "kind header");
        assert_eq!(g.at, e.at, "at header");
        assert_eq!(g.payload, e.payload, "payload as committed");
        let order = OrderEvent::decode(g.payload.as_slice())
            .expect("protobuf payload")
            .order
            .expect("order");
        assert_eq!(order.id, g.key);
        assert_eq!(
            *partition_of.entry(e.key.as_str()).or_insert(g.partition),
            g.partition,
            "one partition per key"
        );
        if seen.insert(g.id.as_str()) {
            arrived
                .entry(e.key.as_str())
                .or_default()
                .push(g.id.as_str());
        }
    }
    let missing: Vec<&str> = expected
        .iter()
        .filter(|e| !seen.contains(e.id.as_str()))
        .map(|e| e.id.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events never arrived, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(5)]
    );
    let mut logged: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in expected {
        logged
            .entry(e.key.as_str())
            .or_default()
            .push(e.id.as_str());
    }
    assert_eq!(arrived, logged, "each order's events in log order");
}

fn all_arrived(expected: &[Event]) -> impl Fn(&[Got]) -> bool + '_ {
    move |got| {
        let ids: HashSet<&str> = got.iter().map(|g| g.id.as_str()).collect();
        expected.iter().all(|e| ids.contains(e.id.as_str()))
    }
}

#[tokio::test]
async fn order_events_reach_kafka_keyed_in_order() {
    let _turn = BROKER.lock().await;
    let node = kafka_node().start();
    let _log = LogOnPanic(&node);
    let mut admin = Client::admin(&node);
    admin.create_product("kafka-1", 500, 1000);
    let (ids, events) = storm(&node, "k1", "kafka-1", 2, 6);

    let expected: Vec<Event> = event_log(&node)
        .await
        .into_iter()
        .filter(|e| ids.contains(&e.key))
        .collect();
    assert_eq!(expected.len(), events, "created + paid + cancelled");
    let got = consume(TOPIC, Duration::from_secs(30), all_arrived(&expected));
    check_delivery(&expected, &got);
    wait_until(
        "published offset reaches the log",
        Duration::from_secs(10),
        || backlog(&node) == 0,
    );
    let metrics = node.get("/metrics").text();
    assert!(metrics.contains("rayltics_kafka_events_published_total{shard=\"0\"}"));
    assert!(metrics.contains("rayltics_kafka_delivery_seconds_bucket"));
}

#[tokio::test]
async fn a_broker_outage_loses_nothing() {
    let _turn = BROKER.lock().await;
    let node = kafka_node().start();
    let _log = LogOnPanic(&node);
    let mut admin = Client::admin(&node);
    admin.create_product("kafka-2", 500, 10_000);
    // Published before the outage (the broker forgets it: memory storage).
    let (before, _) = storm(&node, "k2a", "kafka-2", 1, 2);
    let published: Vec<Event> = event_log(&node)
        .await
        .into_iter()
        .filter(|e| before.contains(&e.key))
        .collect();
    let got = consume(TOPIC, Duration::from_secs(30), all_arrived(&published));
    check_delivery(&published, &got);

    let _back = BrokerBack;
    infra("down.sh");
    let (ids, events) = storm(&node, "k2b", "kafka-2", 4, 25);
    let expected: Vec<Event> = event_log(&node)
        .await
        .into_iter()
        .filter(|e| ids.contains(&e.key))
        .collect();
    assert_eq!(expected.len(), events);
    wait_until(
        "the backlog shows the outage",
        Duration::from_secs(5),
        || backlog(&node) >= expected.len() as i64,
    );
    wait_until(
        "/readyz names kafka down (still 200: events wait)",
        Duration::from_secs(30),
        || {
            let r = node.get("/readyz");
            let v = r.json();
            r.status == 200
                && v["backends"]["kafka"] == "down"
                && v["kafka_backlog_events"].as_u64() > Some(0)
        },
    );
    infra("up.sh");

    let got = consume(TOPIC, Duration::from_secs(60), all_arrived(&expected));
    check_delivery(&expected, &got);
    wait_until(
        "published offset catches up",
        Duration::from_secs(20),
        || backlog(&node) == 0,
    );
    wait_until("/readyz names kafka up", Duration::from_secs(10), || {
        node.get("/readyz").json()["backends"]["kafka"] == "up"
    });
    let metrics = node.get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rayltics_kafka_publish_retries_total") && !l.ends_with(" 0")),
        "the outage shows as re-send rounds"
    );
}

#[tokio::test]
async fn a_restarted_node_resumes_from_its_published_offset() {
    let _turn = BROKER.lock().await;
    let data = support::unique_temp_path("kafka-restart");
    let node = kafka_node().data_dir(&data).start();
    let guard = LogOnPanic(&node);
    let mut admin = Client::admin(&node);
    admin.create_product("kafka-3", 500, 10_000);
    let (first, _) = storm(&node, "k3a", "kafka-3", 1, 4);
    let published: Vec<Event> = event_log(&node)
        .await
        .into_iter()
        .filter(|e| first.contains(&e.key))
        .collect();
    let got = consume(TOPIC, Duration::from_secs(30), all_arrived(&published));
    check_delivery(&published, &got);
    // The mark follows the acknowledgement by one hop and one fsync.
    std::thread::sleep(Duration::from_secs(1));

    let _back = BrokerBack;
    infra("down.sh");
    let (second, _) = storm(&node, "k3b", "kafka-3", 2, 10);
    let log = event_log(&node).await;
    let expected: Vec<Event> = log
        .iter()
        .filter(|e| second.contains(&e.key))
        .cloned()
        .collect();
    let before: HashSet<String> = log
        .iter()
        .filter(|e| first.contains(&e.key))
        .map(|e| e.id.clone())
        .collect();
    // kill -9: nothing of the second batch was acknowledged by a broker.
    drop(guard);
    let mut node = node;
    node.signal(libc::SIGKILL);
    node.wait_exit(Duration::from_secs(10));
    drop(node);
    infra("up.sh");

    let node = kafka_node().data_dir(&data).start();
    let _log = LogOnPanic(&node);
    let got = consume(TOPIC, Duration::from_secs(60), all_arrived(&expected));
    check_delivery(&expected, &got);
    let republished = got.iter().filter(|g| before.contains(&g.id)).count();
    assert_eq!(
        republished, 0,
        "events published before the restart are not sent again"
    );
    wait_until(
        "published offset catches up",
        Duration::from_secs(20),
        || backlog(&node) == 0,
    );
    drop(_log);
    drop(node);
    let _ = std::fs::remove_dir_all(&data);
}

/// The SMTP server of `infra/local` (aiosmtpd storing into a maildir).
fn smtp() -> (String, u16, PathBuf) {
    let addr = std::env::var("RAYLTICS_TEST_SMTP_ADDR").expect(
        "RAYLTICS_TEST_SMTP_ADDR is not set: `infra/local/up.sh smtp` and source its env.sh",
    );
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let maildir = std::env::var("RAYLTICS_TEST_SMTP_MAILDIR").expect("RAYLTICS_TEST_SMTP_MAILDIR");
    (host.to_owned(), port.parse().expect("port"), maildir.into())
}

/// Subjects of the mails in `maildir` whose subject starts with `[{shop}]`.
fn subjects(maildir: &std::path::Path, shop: &str) -> Vec<String> {
    let prefix = format!("Subject: [{shop}] ");
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            if let Some(line) = text.lines().find(|l| l.starts_with(&prefix)) {
                out.push(line["Subject: ".len()..].trim().to_owned());
            }
        }
    }
    out
}

/// Flash-sale purchases from `buyers` concurrent users until `count` of
/// them got a 201; returns the ids of the orders created.
fn purchase_storm(
    node: &Node,
    tag: &str,
    sale_id: &str,
    buyers: usize,
    count: usize,
) -> Vec<String> {
    let per_buyer = count.div_ceil(buyers);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..buyers)
            .map(|b| {
                s.spawn(move || {
                    let (mut c, _) = Client::register(node, &format!("{tag}-{b}@mail.test"));
                    let path = format!("/api/v1/flash-sales/{sale_id}/purchase");
                    (0..per_buyer)
                        .map(|i| {
                            let r = c.post_idem(
                                &path,
                                &format!("{tag}-{b}-{i}"),
                                &json!({"quantity": 1}),
                            );
                            assert_eq!(r.status, 201, "purchase: {}", r.text());
                            r.json()["id"].as_str().unwrap().to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("buyer thread"))
            .collect()
    })
}

/// Issue 6: a purchase storm while the broker is stopped and then started
/// again: every order's confirmation reaches the email worker (SMTP, a real
/// server) exactly once in effect, none lost. The broker keeps its log in
/// memory, so a restart empties it: the mails of the orders before the
/// outage are awaited before it (what a broker forgets after acknowledging
/// is the broker's loss, not the relay's).
#[tokio::test]
async fn order_mails_arrive_once_across_a_broker_outage() {
    let _turn = BROKER.lock().await;
    let (host, port, maildir) = smtp();
    let shop = format!("mailtest{}", std::process::id());
    // Production topology: the shards (with the relay) in one process, the
    // workers role in another, talking through the broker only.
    let node = kafka_node()
        .shards(2)
        .arg("--roles")
        .arg("gateway,auth,catalog,inventory,order,chat")
        .start();
    let _log = LogOnPanic(&node);
    let workers = Node::builder()
        .arg("--roles")
        .arg("workers")
        .env("RAYLTICS_WORKERS__KAFKA_BROKERS", brokers())
        .env("RAYLTICS_WORKERS__SESSION_TIMEOUT_MS", 2000)
        .env("RAYLTICS_WORKERS__RETRY_MAX_MS", 1000)
        .env("RAYLTICS_WORKERS__METADATA_REFRESH_MS", 1000)
        .env("RAYLTICS_WORKERS__EMAIL__TRANSPORT", "smtp")
        .env("RAYLTICS_WORKERS__EMAIL__SMTP_HOST", host)
        .env("RAYLTICS_WORKERS__EMAIL__SMTP_PORT", port)
        .env("RAYLTICS_WORKERS__EMAIL__GROUP_ID", format!("email-{shop}"))
        .env("RAYLTICS_WORKERS__EMAIL__SHOP_NAME", &shop)
        .start();
    let _workers_log = LogOnPanic(&workers);
    let mut admin = Client::admin(&node);
    admin.create_product("mail-1", 900, 100_000);
    let r = admin.post(
        "/api/v1/flash-sales",
        &json!({
            "sku": "mail-1", "quantity": 10_000, "price_cents": 500,
            "starts_at": rfc3339_in(-3600), "ends_at": rfc3339_in(86_400),
            "per_user_limit": 1000
        }),
    );
    assert_eq!(r.status, 201, "create sale: {}", r.text());
    let sale_id = r.json()["id"].as_str().unwrap().to_owned();

    let expect_one_each = |orders: &[String], timeout: Duration| {
        let wanted: HashSet<String> = orders
            .iter()
            .map(|id| format!("[{shop}] Order {id} received"))
            .collect();
        wait_until("a confirmation for every order", timeout, || {
            let got = subjects(&maildir, &shop);
            wanted.iter().all(|w| got.contains(w))
        });
        got_once(&subjects(&maildir, &shop), &wanted);
    };
    let before = purchase_storm(&node, "m1", &sale_id, 4, 20);
    expect_one_each(&before, Duration::from_secs(60));

    let _back = BrokerBack;
    infra("down.sh");
    let during = purchase_storm(&node, "m2", &sale_id, 8, 200);
    infra("up.sh");
    // The relay sees the broker again (topics recreated) before the last storm.
    wait_until("/readyz names kafka up", Duration::from_secs(60), || {
        node.get("/readyz").json()["backends"]["kafka"] == "up"
    });
    let after = purchase_storm(&node, "m3", &sale_id, 4, 20);
    let all: Vec<String> = before.into_iter().chain(during).chain(after).collect();
    expect_one_each(&all, Duration::from_secs(90));
    assert_eq!(workers.get("/readyz").json()["backends"]["smtp"], "up");
    // Redeliveries after the outage must not show up as second mails later.
    std::thread::sleep(Duration::from_secs(2));
    let wanted: HashSet<String> = all
        .iter()
        .map(|id| format!("[{shop}] Order {id} received"))
        .collect();
    got_once(&subjects(&maildir, &shop), &wanted);
}

/// Every subject of `wanted` appears exactly once in `got`.
fn got_once(got: &[String], wanted: &HashSet<String>) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for s in got {
        *count.entry(s.as_str()).or_default() += 1;
    }
    for w in wanted {
        assert_eq!(
            count.get(w.as_str()).copied().unwrap_or(0),
            1,
            "mails for {w}"
        );
    }
}

/// Runs `infra/local/{script} {backend}` with the test environment (its
/// `RAYLTICS_INFRA_DIR` and ports come from `env.sh`) plus `env`.
fn infra_on(script: &str, backend: &str, env: &[(&str, String)]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("infra/local").join(script))
        .arg(backend)
        .current_dir(&root)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run the infra script");
    assert!(
        out.status.success(),
        "infra/local/{script} {backend} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts MongoDB again when a test ends early.
struct MongoBack;

impl Drop for MongoBack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            infra_on("up.sh", "mongo", &[]);
        }
    }
}

/// Sends `texts` to `room` and waits for each `ack`.
fn chat(ws: &mut support::ws::Ws, room: &str, tag: &str, count: usize) {
    for k in 0..count {
        ws.send(json!({"op": "send", "room": room, "text": format!("{tag}-{k}"), "client_msg_id": format!("{tag}-{k}")}));
        ws.expect_op("ack", Duration::from_secs(5));
    }
}

/// Issue 6: chat messages go shard -> outbox -> Kafka `rayltics.chat` ->
/// the chat persister -> MongoDB; MongoDB stopped and started in the middle:
/// the persister catches up with no gap and no duplicate in the room's seqs.
#[tokio::test]
async fn the_chat_archive_in_mongodb_has_no_gap_across_an_outage() {
    let _turn = BROKER.lock().await;
    let mongo_url = std::env::var("RAYLTICS_TEST_MONGO_URL").expect(
        "RAYLTICS_TEST_MONGO_URL is not set: `infra/local/up.sh mongo` and source its env.sh",
    );
    let run = std::process::id();
    let collection = format!("chat_{run}");
    let node = kafka_node()
        .env("RAYLTICS_WORKERS__SESSION_TIMEOUT_MS", 2000)
        .env("RAYLTICS_WORKERS__RETRY_MAX_MS", 1000)
        .env("RAYLTICS_WORKERS__METADATA_REFRESH_MS", 1000)
        .env("RAYLTICS_WORKERS__EMAIL__ENABLED", "false")
        .env("RAYLTICS_WORKERS__CHAT__MONGO_URL", &mongo_url)
        .env("RAYLTICS_WORKERS__CHAT__COLLECTION", &collection)
        .env(
            "RAYLTICS_WORKERS__CHAT__GROUP_ID",
            format!("persister-{run}"),
        )
        .env("RAYLTICS_WORKERS__CHAT__MAX_WAIT_MS", 20)
        .env("RAYLTICS_REALTIME__ROOM_MESSAGES_RETAINED", 25)
        .start();
    let _log = LogOnPanic(&node);
    let (user, _) = Client::register(&node, "chatter@mongo.test");
    let mut ws = support::ws::Ws::connect(&node, user.token.as_deref().expect("token"));
    let room = format!("archive-{run}");
    ws.join(&room, None);

    let archive = rayltics_workers::ChatArchive::connect(&rayltics_workers::ChatPersisterConfig {
        mongo_url,
        collection,
        ..Default::default()
    })
    .await
    .expect("connect to MongoDB");
    let archived = |archive: &rayltics_workers::ChatArchive| {
        let room = room.clone();
        let archive = archive.clone();
        async move {
            archive
                .history(&room, None, 1000)
                .await
                .map(|msgs| msgs.iter().map(|m| m.seq).collect::<Vec<u64>>())
                .unwrap_or_default()
        }
    };
    let wait_for = |n: u64, timeout: Duration| {
        let archive = archive.clone();
        async move {
            let deadline = Instant::now() + timeout;
            loop {
                let seqs = archived(&archive).await;
                if seqs.len() as u64 >= n || Instant::now() > deadline {
                    return seqs;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    chat(&mut ws, &room, "before", 30);
    assert_eq!(
        wait_for(30, Duration::from_secs(60)).await,
        (1..=30).collect::<Vec<_>>()
    );

    let _back = MongoBack;
    infra_on("down.sh", "mongo", &[]);
    chat(&mut ws, &room, "during", 30);
    wait_until(
        "/readyz names mongodb down (still 200)",
        Duration::from_secs(20),
        || {
            let r = node.get("/readyz");
            r.status == 200 && r.json()["backends"]["mongodb"] == "down"
        },
    );
    // The persister keeps retrying its batch meanwhile (and commits nothing).
    tokio::time::sleep(Duration::from_secs(2)).await;
    infra_on("up.sh", "mongo", &[]);
    chat(&mut ws, &room, "after", 20);
    let seqs = wait_for(80, Duration::from_secs(90)).await;
    assert_eq!(node.get("/readyz").json()["backends"]["mongodb"], "up");
    assert_eq!(
        seqs,
        (1..=80).collect::<Vec<_>>(),
        "every seq once, in order"
    );
    // The room keeps its latest 25 messages; older history comes from the
    // archive, seamlessly, through the REST API.
    let mut reader = user;
    let mut page = |before: Option<u64>| -> Vec<u64> {
        let path = match before {
            Some(b) => format!("/api/v1/chat/rooms/{room}/messages?limit=50&before={b}"),
            None => format!("/api/v1/chat/rooms/{room}/messages?limit=50"),
        };
        let r = reader.get(&path);
        assert_eq!(r.status, 200, "history: {}", r.text());
        r.json()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(page(None), (31..=80).collect::<Vec<_>>());
    assert_eq!(page(Some(31)), (1..=30).collect::<Vec<_>>());
    let metrics = node.get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rayltics_worker_retries_total") && !l.ends_with(" 0")),
        "the outage shows as retries"
    );
}
