//! Hot paths of a commerce request, each against a baseline in the same run:
//! - JSON encode of a product (`api::views::product`, borrowed fields and
//!   stored attribute JSON written as-is) vs building and encoding the same
//!   document as a `serde_json::Value`.
//! - An access-token check that hits the per-shard cache vs verifying the
//!   JWT's HS256 signature every time (what the cache saves).
//!
//! `cargo bench -p rayltics --bench hot_paths`

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

use rayltics::api::views;
use rayltics_commerce::auth::{Claims, Role, TokenCache, TokenKeys};
use rayltics_commerce::model::{ProductRec, Stock};

fn product_json(c: &mut Criterion) {
    let p = ProductRec {
        sku: "TSHIRT-RED-M".into(),
        name: "T-shirt, red, M".into(),
        description: "Organic cotton, regular fit, machine washable at 40 degrees.".into(),
        price_cents: 1999,
        currency: "USD".into(),
        category: "apparel".into(),
        attributes_json: r#"{"color":"red","size":"M","material":"cotton"}"#.into(),
        created_at: 1_795_000_000_000,
        updated_at: 1_795_000_100_000,
    };
    let stock = Stock {
        on_hand: 120,
        reserved: 7,
    };
    let mut group = c.benchmark_group("product JSON");
    group.bench_function("views::product", |b| {
        b.iter(|| serde_json::to_vec(&views::product(std::hint::black_box(&p), &stock)).unwrap())
    });
    group.bench_function("baseline: serde_json::Value", |b| {
        b.iter(|| {
            let p = std::hint::black_box(&p);
            let v = json!({
                "sku": p.sku, "name": p.name, "description": p.description,
                "price_cents": p.price_cents, "currency": p.currency, "category": p.category,
                "attributes": serde_json::from_str::<serde_json::Value>(&p.attributes_json).unwrap(),
                "stock_available": stock.available(),
                "created_at": rayltics_commerce::clock::rfc3339(p.created_at),
                "updated_at": rayltics_commerce::clock::rfc3339(p.updated_at),
            });
            serde_json::to_vec(&v).unwrap()
        })
    });
    group.finish();
}

fn token_check(c: &mut Criterion) {
    let keys = TokenKeys::from_secret(&[42u8; 32]).unwrap();
    let claims = Claims {
        sub: "01a20f4c-a7db-7203-a197-d99404c4bbed".into(),
        email: "bob@example.com".into(),
        role: Role::Customer,
        iat: 1_795_000_000,
        exp: 1_795_000_900,
    };
    let token = keys.issue(&claims).unwrap();
    let mut cache = TokenCache::new(65_536);
    cache.insert(&token, claims.clone());
    let now = 1_795_000_100;
    let mut group = c.benchmark_group("access token check");
    group.bench_function("per-shard cache hit", |b| {
        b.iter(|| cache.get(std::hint::black_box(&token), now).unwrap())
    });
    group.bench_function("baseline: HS256 verify", |b| {
        b.iter(|| keys.verify(std::hint::black_box(&token), now).unwrap())
    });
    group.finish();
}

criterion_group!(benches, product_json, token_check);
criterion_main!(benches);
