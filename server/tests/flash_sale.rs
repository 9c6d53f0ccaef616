//! Flash sales and stock under concurrency, and durability across kill -9,
//! through the public HTTP API of the real binary.

mod support;

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::Node;
use support::api::{Client, rfc3339_in};

fn create_sale(admin: &mut Client, sku: &str, quantity: i64, limit: i64) -> String {
    let r = admin.post(
        "/api/v1/flash-sales",
        &json!({
            "sku": sku, "quantity": quantity, "price_cents": 500,
            "starts_at": rfc3339_in(-3600), "ends_at": rfc3339_in(86_400),
            "per_user_limit": limit
        }),
    );
    assert_eq!(r.status, 201, "create sale: {}", r.text());
    let sale = r.json();
    assert_eq!(sale["remaining"], quantity);
    sale["id"].as_str().unwrap().to_owned()
}

#[test]
fn forty_users_ten_attempts_each_sell_exactly_the_pool() {
    let node = Node::builder().commerce().start();
    let mut admin = Client::admin(&node);
    admin.create_product("flash-1", 2000, 0);
    let sale_id = create_sale(&mut admin, "flash-1", 100, 3);

    let users: Vec<Client> = (0..40)
        .map(|i| Client::register(&node, &format!("buyer{i}@race.test")).0)
        .collect();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for (u, user) in users.iter().enumerate() {
        for attempt in 0..10 {
            let token = user.token.clone();
            let (outcomes, sale_id) = (outcomes.clone(), sale_id.clone());
            let mut c = Client::new(&node);
            threads.push(thread::spawn(move || {
                c.token = token;
                let r = c.post_idem(
                    &format!("/api/v1/flash-sales/{sale_id}/purchase"),
                    &format!("u{u}-a{attempt}"),
                    &json!({"quantity": 1}),
                );
                let code = if r.status == 201 {
                    "created".to_owned()
                } else {
                    r.json()["code"].as_str().unwrap_or("?").to_owned()
                };
                outcomes.lock().unwrap().push((u, r.status, code));
            }));
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    let outcomes = outcomes.lock().unwrap();
    let created: Vec<_> = outcomes.iter().filter(|o| o.1 == 201).collect();
    assert_eq!(created.len(), 100, "exactly the pool is sold");
    for u in 0..40 {
        let mine = created.iter().filter(|o| o.0 == u).count();
        assert!(mine <= 3, "user {u} bought {mine} > 3");
    }
    for (_, status, code) in outcomes.iter().filter(|o| o.1 != 201) {
        assert!(
            (*status == 409 && code == "sold_out") || (*status == 403 && code == "limit_exceeded"),
            "unexpected refusal {status} {code}"
        );
    }
    let sale = Client::new(&node)
        .get(&format!("/api/v1/flash-sales/{sale_id}"))
        .json();
    assert_eq!(sale["remaining"], 0);
}

#[test]
fn plain_orders_racing_on_little_stock_never_oversell() {
    let node = Node::builder().commerce().start();
    let mut admin = Client::admin(&node);
    admin.create_product("scarce-1", 1000, 20);
    let users: Vec<Client> = (0..50)
        .map(|i| Client::register(&node, &format!("racer{i}@race.test")).0)
        .collect();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let token = user.token.clone();
            let statuses = statuses.clone();
            let mut c = Client::new(&node);
            thread::spawn(move || {
                c.token = token;
                let r = c.post_idem(
                    "/api/v1/orders",
                    &format!("order-{i}"),
                    &json!({"items": [{"sku": "scarce-1", "quantity": 1}]}),
                );
                if r.status != 201 {
                    r.assert_problem(409, "out_of_stock");
                }
                statuses.lock().unwrap().push(r.status);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let created = statuses
        .lock()
        .unwrap()
        .iter()
        .filter(|s| **s == 201)
        .count();
    assert_eq!(created, 20);
    let inv = Client::new(&node).get("/api/v1/inventory/scarce-1").json();
    assert_eq!(inv["on_hand"], 20);
    assert_eq!(inv["reserved"], 20);
    assert_eq!(inv["available"], 0);
}

/// Buys in a loop until told to stop; records every 201 (order, token).
fn storm(
    node: &Node,
    who: usize,
    token: String,
    sale_id: &str,
    stop: &Mutex<bool>,
) -> Vec<(String, String)> {
    let mut c = Client::new(node);
    c.token = Some(token.clone());
    let path = format!("/api/v1/flash-sales/{sale_id}/purchase");
    let mut created = Vec::new();
    let mut i = 0;
    while !*stop.lock().unwrap() {
        i += 1;
        let key = format!("storm-{who}-{i}");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.post_idem(&path, &key, &json!({"quantity": 1}))
        }));
        match r {
            Ok(r) if r.status == 201 => {
                created.push((r.json()["id"].as_str().unwrap().to_owned(), token.clone()));
            }
            Ok(_) => {}
            Err(_) => break, // the node died under us
        }
    }
    created
}

#[test]
fn kill_9_during_a_purchase_storm_keeps_every_acknowledged_order() {
    let data = support::unique_temp_path("kill9");
    let node = Node::builder()
        .commerce()
        .env("RAYLTICS_DEBUG__MANUAL_CLOCK", "true")
        .env("RAYLTICS_COMMERCE__ACCESS_TOKEN_TTL_SECS", 86_400)
        .data_dir(&data)
        .start();
    let mut admin = Client::admin(&node);
    admin.create_product("storm-1", 900, 0);
    let quantity = 5_000;
    let sale_id = create_sale(&mut admin, "storm-1", quantity, 10_000);
    let users: Vec<Client> = (0..8)
        .map(|i| Client::register(&node, &format!("storm{i}@kill.test")).0)
        .collect();
    let stop = Arc::new(Mutex::new(false));
    let node = Arc::new(node);
    let threads: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(who, u)| {
            let (node, stop, sale_id) = (node.clone(), stop.clone(), sale_id.clone());
            let token = u.token.clone().unwrap();
            thread::spawn(move || storm(&node, who, token, &sale_id, &stop))
        })
        .collect();
    thread::sleep(Duration::from_millis(800));
    node.signal(libc::SIGKILL);
    *stop.lock().unwrap() = true;
    let acknowledged: Vec<(String, String)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        !acknowledged.is_empty(),
        "the storm bought nothing before the kill"
    );
    drop(node);

    let started = Instant::now();
    let node = Node::builder()
        .commerce()
        .env("RAYLTICS_DEBUG__MANUAL_CLOCK", "true")
        .env("RAYLTICS_COMMERCE__ACCESS_TOKEN_TTL_SECS", 86_400)
        .data_dir(&data)
        .start();
    eprintln!("restart took {:?}", started.elapsed());
    let mut c = Client::new(&node);
    let mut held = 0;
    for (id, token) in &acknowledged {
        c.token = Some(token.clone());
        let r = c.get(&format!("/api/v1/orders/{id}"));
        assert_eq!(r.status, 200, "acknowledged order {id} lost: {}", r.text());
        assert_eq!(r.json()["status"], "pending");
        held += r.json()["items"][0]["quantity"].as_i64().unwrap();
    }
    let sale = c.get(&format!("/api/v1/flash-sales/{sale_id}")).json();
    let sold = quantity - sale["remaining"].as_i64().unwrap();
    assert!(
        sold >= held,
        "sold {sold} < units held by acknowledged orders {held}"
    );
    assert!(sold <= quantity);

    // Past the reservation TTL and the SKU shard's grace period, every
    // pending order expires and nothing stays reserved.
    let r = c.post("/debug/clock", &json!({"advance_ms": 16 * 60_000 + 61_000}));
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let remaining =
            c.get(&format!("/api/v1/flash-sales/{sale_id}")).json()["remaining"].clone();
        if remaining == json!(quantity) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reservations leaked: remaining {remaining}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    for (id, token) in acknowledged.iter().take(20) {
        c.token = Some(token.clone());
        let o: Value = c.get(&format!("/api/v1/orders/{id}")).json();
        assert_eq!(o["status"], "expired");
    }
    drop(node);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn store_metrics_show_journal_batches_and_sale_pools() {
    let node = Node::builder().shards(1).commerce().start();
    let mut admin = Client::admin(&node);
    admin.create_product("metric-1", 100, 0);
    let sale_id = create_sale(&mut admin, "metric-1", 10, 10);
    let (mut c, _) = Client::register(&node, "metrics@sale.test");
    let r = c.post_idem(
        &format!("/api/v1/flash-sales/{sale_id}/purchase"),
        "m1",
        &json!({"quantity": 4}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let want = format!("rayltics_flash_sale_remaining_units{{sale=\"{sale_id}\",shard=\"0\"}} 6");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = node.get("/metrics").text();
        let batches = text
            .lines()
            .find(|l| l.starts_with("rayltics_journal_events_total{kind=\"batches\",shard=\"0\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0);
        if text.contains(&want) && text.contains("rayltics_orders_pending{shard=\"0\"} 1") {
            assert!(batches > 0, "no journal batches counted:\n{text}");
            assert!(
                text.contains("rayltics_token_cache_lookups_total{result=\"miss\",shard=\"0\"}")
            );
            break;
        }
        assert!(Instant::now() < deadline, "store gauges missing:\n{text}");
        thread::sleep(Duration::from_millis(100));
    }
}
