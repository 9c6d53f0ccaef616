//! Catalog and inventory through the public HTTP API: CRUD, search with
//! relevance, filters, facets and cursor pagination across shards, stock
//! adjustments, input validation.

mod support;

use serde_json::{Value, json};

use support::Node;
use support::api::Client;

fn product(sku: &str, name: &str, category: &str, price: i64) -> Value {
    json!({
        "sku": sku, "name": name, "description": format!("{name} for every day"),
        "price_cents": price, "currency": "USD", "category": category,
        "attributes": {"size": 42}, "stock": 7
    })
}

#[test]
fn crud_and_inventory() {
    let node = Node::builder().commerce().start();
    let mut admin = Client::admin(&node);
    let r = admin.post(
        "/api/v1/products",
        &product("crud-1", "Blue Mug", "kitchen", 900),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let p = r.json();
    assert_eq!(p["stock_available"], 7);
    assert_eq!(p["attributes"], json!({"size": 42}));
    admin
        .post(
            "/api/v1/products",
            &product("crud-1", "Again", "kitchen", 1),
        )
        .assert_problem(409, "sku_taken");
    let mut anon = Client::new(&node);
    assert_eq!(anon.get("/api/v1/products/crud-1").json(), p);

    let r = admin.call(
        "PATCH",
        "/api/v1/products/crud-1",
        Some(&json!({"price_cents": 1200})),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["price_cents"], 1200);
    assert_eq!(r.json()["name"], "Blue Mug");

    let inv = admin
        .post("/api/v1/inventory/crud-1/adjust", &json!({"delta": 3}))
        .json();
    assert_eq!(
        inv,
        json!({"sku": "crud-1", "on_hand": 10, "reserved": 0, "available": 10})
    );
    admin
        .post("/api/v1/inventory/crud-1/adjust", &json!({"delta": -11}))
        .assert_problem(409, "below_reserved");
    let (mut c, _) = Client::register(&node, "buyer@catalog.test");
    c.post_idem(
        "/api/v1/orders",
        "k",
        &json!({"items": [{"sku": "crud-1", "quantity": 4}]}),
    );
    admin
        .post("/api/v1/inventory/crud-1/adjust", &json!({"delta": -7}))
        .assert_problem(409, "below_reserved");
    assert_eq!(
        anon.get("/api/v1/products/crud-1").json()["stock_available"],
        6
    );

    assert_eq!(
        admin
            .call("DELETE", "/api/v1/products/crud-1", None, &[])
            .status,
        204
    );
    anon.get("/api/v1/products/crud-1")
        .assert_problem(404, "not_found");
    anon.get("/api/v1/products/no-such")
        .assert_problem(404, "not_found");
    anon.get("/api/v1/inventory/no-such")
        .assert_problem(404, "not_found");
}

#[test]
fn product_fields_are_validated() {
    let node = Node::builder().commerce().start();
    let mut admin = Client::admin(&node);
    let base = product("valid-1", "Name", "cat", 100);
    let cases: Vec<(&str, Value)> = vec![
        ("sku", json!("")),
        ("sku", json!("has space")),
        ("sku", json!("x".repeat(65))),
        ("name", json!("")),
        ("name", json!("n".repeat(201))),
        ("price_cents", json!(-1)),
        ("price_cents", json!("ten")),
        ("currency", json!("usd")),
        ("currency", json!("DOLLAR")),
        ("category", json!("")),
        ("attributes", json!([1, 2])),
        ("stock", json!(-5)),
        ("stock", json!(1.5)),
    ];
    for (field, value) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        let r = admin.post("/api/v1/products", &body);
        r.assert_problem(422, "validation_failed");
        assert!(
            r.json()["detail"].as_str().unwrap().contains(field),
            "{field}={value}: {}",
            r.text()
        );
    }
    let r = admin.post("/api/v1/products", &json!({"sku": "valid-1"}));
    r.assert_problem(422, "validation_failed");
    let mut anon = Client::new(&node);
    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "sort=cheap",
        "cursor=zz",
        "min_price=a",
        "bogus=1",
    ] {
        anon.get(&format!("/api/v1/products?{bad}"))
            .assert_problem(422, "validation_failed");
    }
}

#[test]
fn search_relevance_filters_facets_and_pages_across_shards() {
    let node = Node::builder().shards(3).commerce().start();
    let mut admin = Client::admin(&node);
    for i in 0..30 {
        let (cat, name) = if i % 3 == 0 {
            ("shoes", "Trail Runner")
        } else {
            ("hats", "Wool Hat")
        };
        admin.post(
            "/api/v1/products",
            &product(&format!("srch-{i:02}"), name, cat, 100 + i),
        );
    }
    // Read-your-writes: the product created a moment ago is found (and is
    // the newest: timestamps are in milliseconds).
    std::thread::sleep(std::time::Duration::from_millis(5));
    admin.post(
        "/api/v1/products",
        &product("srch-new", "Runner Deluxe Runner", "shoes", 5000),
    );
    let mut anon = Client::new(&node);
    let page = anon.get("/api/v1/products?q=deluxe").json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["items"][0]["sku"], "srch-new");
    let page = anon.get("/api/v1/products?q=RUNNER&limit=100").json();
    assert_eq!(page["items"].as_array().unwrap().len(), 11, "{page}");
    assert_eq!(page["facets"]["category"], json!({"shoes": 11}));
    assert_eq!(
        anon.get("/api/v1/products?q=zzz").json()["items"],
        json!([])
    );

    let hats = anon.get("/api/v1/products?category=hats&limit=100").json();
    assert_eq!(hats["items"].as_array().unwrap().len(), 20);
    assert_eq!(hats["facets"]["category"], json!({"hats": 20, "shoes": 11}));
    let range = anon
        .get("/api/v1/products?min_price=110&max_price=119&limit=100")
        .json();
    assert_eq!(range["items"].as_array().unwrap().len(), 10);

    // Cursor pagination over all 31 products, cheapest first, no repeats.
    let mut prices = Vec::new();
    let mut path = "/api/v1/products?sort=price_asc&limit=7".to_owned();
    loop {
        let page = anon.get(&path).json();
        prices.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["price_cents"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/products?sort=price_asc&limit=7&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(prices.len(), 31);
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
    let newest = anon.get("/api/v1/products?sort=newest&limit=1").json();
    assert_eq!(newest["items"][0]["sku"], "srch-new");
}
