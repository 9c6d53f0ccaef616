//! `GET /openapi.json`: an OpenAPI 3.1 document that covers every REST
//! route the node serves (less `/debug/*`), whose references resolve, and
//! whose shapes agree with real answers.

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};

use support::Node;
use support::api::Client;

/// Operations documented by hand: the operations endpoints and the document.
const OPERATIONS_ENDPOINTS: [(&str, &str); 4] = [
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

/// Every `(method, path)` of the document's `paths`.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                ops.insert((method.clone(), path.clone()));
            }
        }
    }
    ops
}

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The schema `#/components/schemas/NAME` names.
fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "no schema {name}");
    s
}

/// The names of `schema`'s properties, and of its required ones.
fn fields(schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let props = schema["properties"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let required = schema["required"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (props, required)
}

/// Asserts `body`'s keys are exactly the properties of schema `name`, all of
/// them required.
fn assert_shape(doc: &Value, name: &str, body: &Value) {
    let (props, required) = fields(schema(doc, name));
    let keys: BTreeSet<String> = body.as_object().expect("object").keys().cloned().collect();
    assert_eq!(keys, props, "{name}: body {body} vs schema properties");
    assert_eq!(required, props, "{name}: every property is always present");
}

#[test]
fn document_covers_every_route_and_matches_answers() {
    let node = Node::builder().commerce().start();
    let mut admin = Client::admin(&node);

    let r = admin.get("/openapi.json");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "openapi: {}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "rayltics");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    // Built once: the same bytes every time.
    assert_eq!(admin.get("/openapi.json").body, r.body);

    // Exactly the routes of `api::ROUTES` (less /debug/*) and the hand-made
    // operations endpoints.
    let mut expected: BTreeSet<(String, String)> = rayltics::api::ROUTES
        .iter()
        .filter(|(_, path, _)| !path.starts_with("/debug/"))
        .map(|(m, path, _)| (m.as_str().to_ascii_lowercase(), (*path).to_owned()))
        .collect();
    assert_eq!(expected.len(), 24, "the REST routes of API.md");
    expected.extend(
        OPERATIONS_ENDPOINTS
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned())),
    );
    let documented = operations(&doc);
    let missing: Vec<_> = expected.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&expected).collect();
    assert!(missing.is_empty(), "routes not documented: {missing:?}");
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
    assert!(
        !doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .any(|p| p.starts_with("/debug"))
    );

    // Every operation: a unique id, responses, and problem+json errors;
    // a declared path parameter for every `{name}` of its path.
    let mut ids = BTreeSet::new();
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        let id = op["operationId"].as_str().expect("operationId");
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        let responses = op["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{method} {path}: no responses");
        for (status, resp) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    resp["content"]["application/problem+json"]["schema"]["$ref"]
                        == "#/components/schemas/Problem",
                    "{method} {path} {status}: not a problem+json Problem: {resp}"
                );
            }
        }
        for segment in path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let declared = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true)
                });
                assert!(
                    declared,
                    "{method} {path}: path parameter {name} undeclared"
                );
            }
        }
    }

    // Bearer auth: declared, and required exactly where a token is.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "The `access_token` of a session (register, login, refresh)."})
    );
    let public: BTreeSet<(&str, &str)> = [
        ("post", "/api/v1/auth/register"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/v1/auth/logout"),
        ("get", "/api/v1/products"),
        ("get", "/api/v1/products/{sku}"),
        ("get", "/api/v1/inventory/{sku}"),
        ("get", "/api/v1/flash-sales/{id}"),
    ]
    .into_iter()
    .chain(OPERATIONS_ENDPOINTS)
    .collect();
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        let bearer = op["security"] == json!([{"bearerAuth": []}]);
        let is_public = public.contains(&(method.as_str(), path.as_str()));
        assert_eq!(
            bearer, !is_public,
            "{method} {path}: security {}",
            op["security"]
        );
        if bearer {
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path}: no 401"
            );
        }
    }

    // Every reference resolves.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        schema(&doc, name);
    }

    // The shapes agree with real answers.
    let r = admin.get("/api/v1/products/no-such-sku");
    r.assert_problem(404, "not_found");
    assert_shape(&doc, "Problem", &r.json());
    let product = admin.create_product("oa-1", 1999, 5);
    assert_shape(&doc, "Product", &product);
    assert!(product["attributes"].is_object());
    let r = admin.get("/api/v1/me");
    assert_shape(&doc, "User", &r.json());
    let r = admin.get("/api/v1/inventory/oa-1");
    assert_shape(&doc, "Inventory", &r.json());
    let r = admin.get("/api/v1/products?q=oa");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_shape(&doc, "ProductPage", &r.json());
    let (mut user, session) = Client::register(&node, "openapi@example.com");
    assert_shape(&doc, "Session", &session);
    let r = user.call(
        "PUT",
        "/api/v1/cart/items/oa-1",
        Some(&json!({"quantity": 1})),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_shape(&doc, "Cart", &r.json());
    let r = user.post_idem("/api/v1/orders", "oa-key-1", &json!({"from_cart": true}));
    assert_eq!(r.status, 201, "{}", r.text());
    let order = r.json();
    assert_shape(&doc, "Order", &order);
    assert_shape(&doc, "Line", &order["items"][0]);
    let r = admin.post(
        "/api/v1/flash-sales",
        &json!({"sku": "oa-1", "quantity": 3, "price_cents": 999,
                "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2999-01-01T00:00:00Z",
                "per_user_limit": 1}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_shape(&doc, "FlashSale", &r.json());

    // Enumerations list what the code answers.
    let statuses = &schema(&doc, "OrderStatus")["enum"];
    assert_eq!(
        statuses,
        &json!(["pending", "paid", "payment_failed", "cancelled", "expired"])
    );
    assert!(statuses.as_array().unwrap().contains(&order["status"]));
    assert_eq!(schema(&doc, "Role")["enum"], json!(["customer", "admin"]));
}
