//! Every input of the cart, order, payment and flash-sale endpoints is
//! validated with a problem+json 4xx (empty, too long, negative, wrong type,
//! unknown SKU), never a 5xx; flash-sale windows are enforced.

mod support;

use serde_json::{Value, json};

use support::Node;
use support::api::Client;

fn assert_invalid(r: &support::Resp, field: &str, case: &str) {
    r.assert_problem(422, "validation_failed");
    let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        detail.contains(field),
        "{case}: detail {detail:?} does not name {field}"
    );
}

#[test]
fn order_cart_pay_and_sale_inputs_are_validated() {
    let node = Node::builder().commerce().start();
    let mut admin = Client::admin(&node);
    admin.create_product("val-1", 100, 50);
    let (mut c, _) = Client::register(&node, "val@validation.test");

    let orders: Vec<(Value, &str)> = vec![
        (json!({"items": []}), "items"),
        (json!({}), "items"),
        (
            json!({"items": [{"sku": "val-1", "quantity": 0}]}),
            "quantity",
        ),
        (
            json!({"items": [{"sku": "val-1", "quantity": -1}]}),
            "quantity",
        ),
        (
            json!({"items": [{"sku": "val-1", "quantity": 10_001}]}),
            "quantity",
        ),
        (
            json!({"items": [{"sku": "val-1", "quantity": "2"}]}),
            "quantity",
        ),
        (json!({"items": [{"sku": "", "quantity": 1}]}), "sku"),
        (
            json!({"items": [{"sku": "x".repeat(65), "quantity": 1}]}),
            "sku",
        ),
        (json!({"items": [{"sku": "nope", "quantity": 1}]}), "sku"),
        (
            json!({"items": [{"sku": "val-1", "quantity": 1}], "from_cart": true}),
            "from_cart",
        ),
        (json!({"from_cart": true}), "items"),
        (json!({"items": [{"sku": "val-1"}]}), "quantity"),
        (json!({"items": "val-1"}), "items"),
    ];
    for (i, (body, field)) in orders.iter().enumerate() {
        let r = c.post_idem("/api/v1/orders", &format!("val-{i}"), body);
        assert_invalid(&r, field, &body.to_string());
    }
    let long_key = "k".repeat(256);
    let r = c.post_idem(
        "/api/v1/orders",
        &long_key,
        &json!({"items": [{"sku": "val-1", "quantity": 1}]}),
    );
    assert_invalid(&r, "Idempotency-Key", "long key");
    assert_eq!(
        c.get("/api/v1/inventory/val-1").json()["reserved"],
        0,
        "no invalid request reserved stock"
    );

    for (body, field) in [
        (json!({"quantity": -1}), "quantity"),
        (json!({"quantity": 10_001}), "quantity"),
        (json!({"quantity": "one"}), "quantity"),
        (json!({}), "quantity"),
    ] {
        let r = c.call("PUT", "/api/v1/cart/items/val-1", Some(&body), &[]);
        assert_invalid(&r, field, &body.to_string());
    }
    let r = c.call(
        "PUT",
        "/api/v1/cart/items/nope",
        Some(&json!({"quantity": 1})),
        &[],
    );
    assert_invalid(&r, "sku", "unknown sku in cart");

    let o = c.post_idem(
        "/api/v1/orders",
        "ok",
        &json!({"items": [{"sku": "val-1", "quantity": 1}]}),
    );
    let id = o.json()["id"].as_str().unwrap().to_owned();
    for (body, field) in [
        (
            json!({"payment_method": "cash", "card_number": "4242424242424242"}),
            "payment_method",
        ),
        (
            json!({"payment_method": "test_card", "card_number": "42"}),
            "card_number",
        ),
        (
            json!({"payment_method": "test_card", "card_number": "4242-4242-4242"}),
            "card_number",
        ),
        (json!({"payment_method": "test_card"}), "card_number"),
    ] {
        let r = c.post(&format!("/api/v1/orders/{id}/pay"), &body);
        assert_invalid(&r, field, &body.to_string());
    }
    c.get("/api/v1/orders/not-an-id")
        .assert_problem(404, "not_found");
    c.get("/api/v1/orders?limit=500")
        .assert_problem(422, "validation_failed");
    c.get("/api/v1/orders?cursor=%%%")
        .assert_problem(422, "validation_failed");

    let sale = |starts: &str, ends: &str| {
        json!({"sku": "val-1", "quantity": 10, "price_cents": 50,
               "starts_at": starts, "ends_at": ends, "per_user_limit": 1})
    };
    let mut cases: Vec<(Value, &str)> = Vec::new();
    for (field, value) in [
        ("quantity", json!(0)),
        ("quantity", json!(-3)),
        ("price_cents", json!(-1)),
        ("per_user_limit", json!(0)),
        ("sku", json!("nope")),
        ("starts_at", json!("yesterday")),
    ] {
        let mut b = sale("2026-01-01T00:00:00Z", "2036-01-01T00:00:00Z");
        b[field] = value;
        cases.push((b, field));
    }
    cases.push((
        sale("2036-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        "ends_at",
    ));
    for (body, field) in &cases {
        let r = admin.post("/api/v1/flash-sales", body);
        assert_invalid(&r, field, &body.to_string());
    }
    c.post(
        "/api/v1/flash-sales",
        &sale("2026-01-01T00:00:00Z", "2036-01-01T00:00:00Z"),
    )
    .assert_problem(403, "forbidden");

    // Outside its window a sale refuses purchases.
    let future = admin
        .post(
            "/api/v1/flash-sales",
            &sale("2035-01-01T00:00:00Z", "2036-01-01T00:00:00Z"),
        )
        .json();
    let id = future["id"].as_str().unwrap();
    c.post_idem(
        &format!("/api/v1/flash-sales/{id}/purchase"),
        "w",
        &json!({"quantity": 1}),
    )
    .assert_problem(409, "sale_not_active");
    let r = c.post_idem(
        &format!("/api/v1/flash-sales/{id}/purchase"),
        "w2",
        &json!({"quantity": 0}),
    );
    assert_invalid(&r, "quantity", "purchase of 0");
    c.get("/api/v1/flash-sales/01900000-0000-7000-8000-000000000000")
        .assert_problem(404, "not_found");
}
