//! Restart from a snapshot plus the journal tail: the state a client saw
//! before the restart (users, products and their search index, stock,
//! orders, idempotency keys) is the state after it.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::Node;
use support::api::Client;

fn snapshots(node: &Node) -> u64 {
    node.get("/metrics")
        .text()
        .lines()
        .filter(|l| l.starts_with("rayltics_journal_events_total{kind=\"snapshots\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn state_survives_a_kill_after_snapshots() {
    let data = support::unique_temp_path("snapshots");
    let start = || {
        Node::builder()
            .commerce()
            .env("RAYLTICS_JOURNAL__SNAPSHOT_EVERY_RECORDS", 10)
            .data_dir(&data)
            .start()
    };
    let node = start();
    let mut admin = Client::admin(&node);
    for i in 0..6 {
        admin.create_product(&format!("snap-{i}"), 100 + i, 20);
    }
    let (mut c, session) = Client::register(&node, "snap@durable.test");
    let mut orders = Vec::new();
    for i in 0..6 {
        let r = c.post_idem(
            "/api/v1/orders",
            &format!("snap-order-{i}"),
            &json!({"items": [{"sku": format!("snap-{i}"), "quantity": 2}]}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        orders.push(r.json());
    }
    let paid = orders[0]["id"].as_str().unwrap().to_owned();
    c.post(
        &format!("/api/v1/orders/{paid}/pay"),
        &json!({"payment_method": "test_card", "card_number": "4242424242424242"}),
    );
    // More writes after the snapshots, so the restart replays a tail too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while snapshots(&node) == 0 {
        assert!(Instant::now() < deadline, "no snapshot was written");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.call(
        "PUT",
        "/api/v1/cart/items/snap-5",
        Some(&json!({"quantity": 3})),
        &[],
    );
    let before: Vec<Value> = (0..6)
        .map(|i| c.get(&format!("/api/v1/inventory/snap-{i}")).json())
        .collect();
    let listed = c.get("/api/v1/orders?limit=100").json();
    node.signal(libc::SIGKILL);
    drop(node);

    let node = start();
    let recovered_from_snapshot = node
        .stderr()
        .lines()
        .any(|l| l.contains("store recovered") && !l.contains("snapshot_seq=0"));
    assert!(
        recovered_from_snapshot,
        "no shard started from a snapshot:\n{}",
        node.stderr()
    );
    let mut c2 = Client::new(&node);
    let r = c2.post(
        "/api/v1/auth/login",
        &json!({"email": "snap@durable.test", "password": "password-123"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"], session["user"]);
    c2.token = Some(r.json()["access_token"].as_str().unwrap().to_owned());
    for (i, want) in before.iter().enumerate() {
        assert_eq!(&c2.get(&format!("/api/v1/inventory/snap-{i}")).json(), want);
    }
    assert_eq!(c2.get("/api/v1/orders?limit=100").json(), listed);
    assert_eq!(
        c2.get(&format!("/api/v1/orders/{paid}")).json()["status"],
        "paid"
    );
    assert_eq!(c2.get("/api/v1/cart").json()["items"][0]["quantity"], 3);
    // The search index is rebuilt from the snapshot.
    let found = c2.get("/api/v1/products?q=product&limit=100").json();
    assert_eq!(found["items"].as_array().unwrap().len(), 6, "{found}");
    // The idempotency key still replays the first response.
    let replay = c2.post_idem(
        "/api/v1/orders",
        "snap-order-1",
        &json!({"items": [{"sku": "snap-1", "quantity": 2}]}),
    );
    assert_eq!(replay.json()["id"], orders[1]["id"]);
    drop(node);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_data_dir_refuses_a_different_shard_count() {
    let data = support::unique_temp_path("shard-count");
    let node = Node::builder().shards(2).data_dir(&data).start();
    drop(node);
    let dir = data.to_str().unwrap();
    let out = support::run_to_exit(
        &[
            "serve",
            "--shards",
            "3",
            "--data-dir",
            dir,
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ],
        &[],
        Duration::from_secs(20),
    );
    assert!(
        !out.status.success(),
        "a 3-shard node started on a 2-shard data dir"
    );
    assert!(out.stderr.contains("--shards 2"), "{}", out.stderr);
    // The recorded count still works.
    drop(Node::builder().shards(2).data_dir(&data).start());
    let _ = std::fs::remove_dir_all(&data);
}
