//! Hot-path costs of the HTTP edge, each against a baseline in the same run:
//! a whole keep-alive request through `serve` (parse, route, encode) on an
//! in-memory transport, and route matching against a `HashMap` lookup.

use std::collections::HashMap;

use criterion::{Criterion, criterion_group, criterion_main};
use rayltics_net::transport::MemoryTransport;
use rayltics_net::{
    Handler, HttpLimits, Match, Method, Request, Response, Router, Shutdown, serve,
};

struct Healthz;

impl Handler for Healthz {
    async fn handle(&self, _req: &Request) -> Response {
        Response::text(200, "ok")
    }
}

const REQUEST: &[u8] =
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";

fn edge(c: &mut Criterion) {
    let mut rt = monoio::RuntimeBuilder::<monoio::time::TimeDriver<monoio::LegacyDriver>>::new()
        .build()
        .expect("runtime");
    let limits = HttpLimits::default();
    let shutdown = Shutdown::new();
    let batch: Vec<u8> = REQUEST.repeat(64);

    let mut group = c.benchmark_group("edge/64 pipelined GET /healthz");
    group.bench_function("serve (parse + route + encode)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut io = MemoryTransport::new(batch.clone(), 0);
                serve(&mut io, &Healthz, &limits, &shutdown).await;
                io.output.len()
            })
        })
    });
    group.bench_function("baseline: httparse only", |b| {
        b.iter(|| {
            let mut rest: &[u8] = &batch;
            let mut n = 0;
            while !rest.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let mut req = httparse::Request::new(&mut headers);
                let Ok(httparse::Status::Complete(len)) = req.parse(rest) else {
                    break;
                };
                rest = &rest[len..];
                n += 1;
            }
            n
        })
    });
    group.finish();

    let routes = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/products/{sku}",
        "/api/v1/orders/{id}",
        "/api/v1/orders/{id}/pay",
        "/api/v1/cart/items/{sku}",
        "/api/v1/flash-sales/{id}/purchase",
    ];
    let router = routes
        .iter()
        .enumerate()
        .fold(Router::new(), |r, (i, p)| r.route(Method::Get, p, i));
    let map: HashMap<&str, usize> = routes.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let mut group = c.benchmark_group("router");
    group.bench_function("Router::at (params captured)", |b| {
        b.iter(|| {
            match router.at(
                Method::Get,
                std::hint::black_box("/api/v1/flash-sales/fs-123/purchase"),
            ) {
                Match::Found { value, .. } => *value,
                _ => usize::MAX,
            }
        })
    });
    group.bench_function("baseline: HashMap exact lookup", |b| {
        b.iter(|| {
            map.get(std::hint::black_box("/api/v1/flash-sales/{id}/purchase"))
                .copied()
        })
    });
    group.finish();
}

criterion_group!(benches, edge);
criterion_main!(benches);
