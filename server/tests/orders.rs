//! Carts and the order saga through the public HTTP API: reserve -> pending
//! -> pay / decline / cancel / expire, all-or-nothing across shards,
//! idempotency keys, listing.

mod support;

use serde_json::{Value, json};

use support::Node;
use support::api::Client;

fn manual_clock_node() -> Node {
    Node::builder()
        .commerce()
        .env("RAYLTICS_DEBUG__MANUAL_CLOCK", "true")
        .env("RAYLTICS_COMMERCE__ACCESS_TOKEN_TTL_SECS", 86_400)
        .start()
}

fn inventory(c: &mut Client, sku: &str) -> Value {
    c.get(&format!("/api/v1/inventory/{sku}")).json()
}

fn order(c: &mut Client, key: &str, items: Value) -> support::Resp {
    c.post_idem("/api/v1/orders", key, &json!({ "items": items }))
}

#[test]
fn pay_decline_and_cancel_settle_the_reservation() {
    let node = manual_clock_node();
    let mut admin = Client::admin(&node);
    admin.create_product("pay-1", 1500, 10);
    let (mut alice, _) = Client::register(&node, "alice@orders.test");

    let placed = order(
        &mut alice,
        "k-pay",
        json!([{"sku": "pay-1", "quantity": 2}]),
    );
    assert_eq!(placed.status, 201, "{}", placed.text());
    let o = placed.json();
    assert_eq!(o["status"], "pending");
    assert_eq!(o["total_cents"], 3000);
    assert_eq!(
        o["items"],
        json!([{"sku": "pay-1", "quantity": 2, "price_cents": 1500}])
    );
    assert_eq!(inventory(&mut alice, "pay-1")["reserved"], 2);
    let id = o["id"].as_str().unwrap().to_owned();
    let paid = alice.post(
        &format!("/api/v1/orders/{id}/pay"),
        &json!({"payment_method": "test_card", "card_number": "4242424242424242"}),
    );
    assert_eq!(paid.status, 200, "{}", paid.text());
    assert_eq!(paid.json()["status"], "paid");
    let inv = inventory(&mut alice, "pay-1");
    assert_eq!(
        (inv["on_hand"].clone(), inv["reserved"].clone()),
        (json!(8), json!(0))
    );
    // Paying twice, or cancelling a paid order, is a conflict.
    alice
        .post(&format!("/api/v1/orders/{id}/cancel"), &json!({}))
        .assert_problem(409, "order_not_pending");

    let declined = order(
        &mut alice,
        "k-decline",
        json!([{"sku": "pay-1", "quantity": 3}]),
    )
    .json();
    let id = declined["id"].as_str().unwrap();
    let r = alice.post(
        &format!("/api/v1/orders/{id}/pay"),
        &json!({"payment_method": "test_card", "card_number": "4000000000000002"}),
    );
    assert_eq!(r.json()["status"], "payment_failed");
    assert_eq!(inventory(&mut alice, "pay-1")["available"], 8);

    let cancelled = order(
        &mut alice,
        "k-cancel",
        json!([{"sku": "pay-1", "quantity": 1}]),
    )
    .json();
    let id = cancelled["id"].as_str().unwrap();
    let r = alice.post(&format!("/api/v1/orders/{id}/cancel"), &json!({}));
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(inventory(&mut alice, "pay-1")["available"], 8);

    // Someone else's order does not exist for them; an admin sees it.
    let (mut bob, _) = Client::register(&node, "bob@orders.test");
    bob.get(&format!("/api/v1/orders/{id}"))
        .assert_problem(404, "not_found");
    assert_eq!(admin.get(&format!("/api/v1/orders/{id}")).status, 200);
}

#[test]
fn an_unpaid_order_expires_on_the_clock_and_releases_stock() {
    let node = manual_clock_node();
    let mut admin = Client::admin(&node);
    admin.create_product("exp-1", 100, 5);
    let (mut c, _) = Client::register(&node, "late@orders.test");
    let o = order(&mut c, "k1", json!([{"sku": "exp-1", "quantity": 5}])).json();
    assert_eq!(inventory(&mut c, "exp-1")["available"], 0);
    c.post("/debug/clock", &json!({"advance_ms": 15 * 60_000 + 1}));
    let id = o["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while c.get(&format!("/api/v1/orders/{id}")).json()["status"] != "expired" {
        assert!(
            std::time::Instant::now() < deadline,
            "the order did not expire"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(inventory(&mut c, "exp-1")["available"], 5);
    c.post(
        &format!("/api/v1/orders/{id}/pay"),
        &json!({"payment_method": "test_card", "card_number": "4242424242424242"}),
    )
    .assert_problem(409, "order_not_pending");
}

#[test]
fn out_of_stock_on_one_shard_reserves_nothing_anywhere() {
    let node = Node::builder().shards(3).commerce().start();
    let mut admin = Client::admin(&node);
    // SKUs spread over the shards; the last one is short.
    let skus: Vec<String> = (0..6).map(|i| format!("multi-{i}")).collect();
    for sku in &skus {
        admin.create_product(sku, 100, 10);
    }
    admin.post("/api/v1/inventory/multi-5/adjust", &json!({"delta": -9}));
    let (mut c, _) = Client::register(&node, "multi@orders.test");
    let mut items: Vec<Value> = skus
        .iter()
        .map(|s| json!({"sku": s, "quantity": 2}))
        .collect();
    order(&mut c, "k-short", json!(items)).assert_problem(409, "out_of_stock");
    for sku in &skus {
        assert_eq!(
            inventory(&mut c, sku)["reserved"],
            0,
            "{sku} kept a reservation"
        );
    }
    // Unknown SKU: a validation error, nothing reserved.
    items.push(json!({"sku": "no-such-sku", "quantity": 1}));
    order(&mut c, "k-unknown", json!(items)).assert_problem(422, "validation_failed");
    assert_eq!(inventory(&mut c, "multi-0")["reserved"], 0);
    // With enough stock the same order spans every shard.
    items.truncate(5);
    let r = order(&mut c, "k-ok", json!(items));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["total_cents"], 1000);
}

#[test]
fn idempotency_keys_replay_and_conflict() {
    let node = Node::builder().commerce().start();
    let mut admin = Client::admin(&node);
    admin.create_product("idem-1", 700, 10);
    let (mut c, _) = Client::register(&node, "idem@orders.test");
    let items = json!([{"sku": "idem-1", "quantity": 1}]);
    let first = order(&mut c, "same-key", items.clone());
    assert_eq!(first.status, 201);
    let again = order(&mut c, "same-key", items);
    assert_eq!(again.status, 201);
    assert_eq!(
        again.json(),
        first.json(),
        "a replay returns the first response"
    );
    assert_eq!(
        inventory(&mut c, "idem-1")["reserved"],
        1,
        "a replay reserves nothing"
    );
    // Still the first response, byte for byte, after the order moved on.
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let paid = c.post(
        &format!("/api/v1/orders/{id}/pay"),
        &json!({"payment_method": "test_card", "card_number": "4242424242424242"}),
    );
    assert_eq!(paid.json()["status"], "paid");
    let later = order(
        &mut c,
        "same-key",
        json!([{"sku": "idem-1", "quantity": 1}]),
    );
    assert_eq!(later.status, 201);
    assert_eq!(
        later.body, first.body,
        "the replay after payment is the first response"
    );
    order(
        &mut c,
        "same-key",
        json!([{"sku": "idem-1", "quantity": 2}]),
    )
    .assert_problem(422, "idempotency_conflict");
    // Keys are per user: another user's same key is a new order.
    let (mut d, _) = Client::register(&node, "idem2@orders.test");
    assert_eq!(
        order(
            &mut d,
            "same-key",
            json!([{"sku": "idem-1", "quantity": 1}])
        )
        .status,
        201
    );
    // The header is required.
    c.post(
        "/api/v1/orders",
        &json!({"items": [{"sku": "idem-1", "quantity": 1}]}),
    )
    .assert_problem(422, "validation_failed");
}

#[test]
fn cart_to_order_and_listing_newest_first() {
    let node = Node::builder().commerce().start();
    let mut admin = Client::admin(&node);
    admin.create_product("cart-1", 250, 100);
    admin.create_product("cart-2", 1000, 100);
    let (mut c, session) = Client::register(&node, "cart@orders.test");
    let r = c.call(
        "PUT",
        "/api/v1/cart/items/cart-1",
        Some(&json!({"quantity": 4})),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let cart = c
        .call(
            "PUT",
            "/api/v1/cart/items/cart-2",
            Some(&json!({"quantity": 1})),
            &[],
        )
        .json();
    assert_eq!(cart["total_cents"], 2000);
    assert_eq!(cart["currency"], "USD");
    let cart = c
        .call("DELETE", "/api/v1/cart/items/cart-2", None, &[])
        .json();
    assert_eq!(
        cart["items"],
        json!([{"sku": "cart-1", "quantity": 4, "price_cents": 250}])
    );
    let o = c.post_idem("/api/v1/orders", "from-cart", &json!({"from_cart": true}));
    assert_eq!(o.status, 201, "{}", o.text());
    assert_eq!(o.json()["total_cents"], 1000);
    assert_eq!(c.get("/api/v1/cart").json()["items"], json!([]));

    for i in 0..4 {
        order(
            &mut c,
            &format!("list-{i}"),
            json!([{"sku": "cart-2", "quantity": 1}]),
        );
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/orders?limit=2".to_owned();
    loop {
        let page = c.get(&path).json();
        for o in page["items"].as_array().unwrap() {
            seen.push((
                o["created_at"].as_str().unwrap().to_owned(),
                o["id"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(cur) => path = format!("/api/v1/orders?limit=2&cursor={cur}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first, no duplicates");
    // An admin lists one user's orders, or everyone's.
    let uid = session["user"]["id"].as_str().unwrap();
    let mine = admin
        .get(&format!("/api/v1/orders?user_id={uid}&limit=100"))
        .json();
    assert_eq!(mine["items"].as_array().unwrap().len(), 5);
    c.get("/api/v1/orders?user_id=01900000-0000-7000-8000-000000000000")
        .assert_problem(403, "forbidden");
}
