//! The connection loop over an in-memory transport: framing, pipelining,
//! limits, and arbitrary bytes (property test: no panic, no hang).

use proptest::prelude::*;
use rayltics_net::transport::MemoryTransport;
use rayltics_net::{Handler, HttpLimits, Request, Response, Shutdown, serve};

struct Echo;

impl Handler for Echo {
    async fn handle(&self, req: &Request) -> Response {
        let body = format!(
            "{} {} {}",
            req.method().as_str(),
            req.path(),
            req.body().len()
        );
        Response::new(200).with_body("text/plain", body)
    }
}

fn run(input: &[u8], chunk: usize, limits: HttpLimits) -> String {
    let mut rt = monoio::RuntimeBuilder::<monoio::time::TimeDriver<monoio::LegacyDriver>>::new()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut io = MemoryTransport::new(input.to_vec(), chunk);
        serve(&mut io, &Echo, &limits, &Shutdown::new()).await;
        String::from_utf8_lossy(&io.output).into_owned()
    })
}

fn statuses(out: &str) -> Vec<u16> {
    out.match_indices("HTTP/1.1 ")
        .map(|(i, _)| out[i + 9..i + 12].parse().unwrap())
        .collect()
}

#[test]
fn pipelined_requests_answer_in_order() {
    let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nPOST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for chunk in [0, 1, 7] {
        let out = run(input, chunk, HttpLimits::default());
        let a = out.find("GET /a 0").unwrap();
        let b = out.find("GET /b 0").unwrap();
        let c = out.find("POST /c 3").unwrap();
        let d = out.find("GET /d 0").unwrap();
        assert!(a < b && b < c && c < d, "out of order: {out}");
        assert!(out.contains("connection: close"));
    }
}

#[test]
fn chunked_body_and_trailers() {
    let input = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: v\r\n\r\nGET /y HTTP/1.1\r\nHost: x\r\n\r\n";
    let out = run(input, 3, HttpLimits::default());
    assert!(out.contains("POST /x 11"), "{out}");
    assert!(out.contains("GET /y 0"), "{out}");
}

#[test]
fn expect_continue_gets_100_then_answer() {
    let input = b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    let mut rt = monoio::RuntimeBuilder::<monoio::time::TimeDriver<monoio::LegacyDriver>>::new()
        .build()
        .unwrap();
    let out = rt.block_on(async move {
        // Body arrives only after the head: the server must say 100 first.
        let mut io = MemoryTransport::new(input.to_vec(), input.len());
        io.input.extend_from_slice(b"ok");
        serve(&mut io, &Echo, &HttpLimits::default(), &Shutdown::new()).await;
        String::from_utf8_lossy(&io.output).into_owned()
    });
    assert!(
        out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200"),
        "{out}"
    );
}

#[test]
fn limits_map_to_statuses() {
    let limits = HttpLimits {
        max_header_bytes: 512,
        max_headers: 4,
        max_uri_bytes: 64,
        max_body_bytes: 10,
        ..HttpLimits::default()
    };
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100));
    assert_eq!(
        statuses(&run(long_uri.as_bytes(), 0, limits.clone())),
        [414]
    );
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "b".repeat(600)
    );
    assert_eq!(
        statuses(&run(big_header.as_bytes(), 0, limits.clone())),
        [431]
    );
    let many = "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n";
    assert_eq!(statuses(&run(many.as_bytes(), 0, limits.clone())), [431]);
    let body = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world";
    assert_eq!(statuses(&run(body.as_bytes(), 0, limits.clone())), [413]);
    let chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n";
    assert_eq!(statuses(&run(chunked.as_bytes(), 0, limits.clone())), [413]);
    for bad in [
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET nope HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(
            statuses(&run(bad.as_bytes(), 0, limits.clone())),
            [400],
            "{bad:?}"
        );
    }
    let out = run(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
        0,
        limits,
    );
    assert_eq!(statuses(&out), [200, 400]);
    assert!(out.contains("application/problem+json") && out.contains("\"code\":\"bad_request\""));
}

#[test]
fn http10_closes_unless_keep_alive() {
    let out = run(
        b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
        0,
        HttpLimits::default(),
    );
    assert_eq!(statuses(&out), [200]);
    let out = run(
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
        0,
        HttpLimits::default(),
    );
    assert_eq!(statuses(&out), [200, 200]);
}

fn request_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        Just(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody".to_vec()),
        Just(b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()),
        Just(b"Expect: 100-continue\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_or_hang(
        pieces in proptest::collection::vec(request_piece(), 0..8),
        chunk in 0usize..16,
    ) {
        let input: Vec<u8> = pieces.concat();
        let limits = HttpLimits { max_body_bytes: 64, max_header_bytes: 256, ..HttpLimits::default() };
        let started = std::time::Instant::now();
        let out = run(&input, chunk, limits);
        prop_assert!(started.elapsed() < std::time::Duration::from_secs(5));
        prop_assert!(out.is_empty() || out.starts_with("HTTP/1.1 "), "{}", out);
        for status in statuses(&out) {
            prop_assert!(status != 500, "500 for {:?}", String::from_utf8_lossy(&input));
        }
    }
}

#[test]
fn absolute_form_targets_route_by_their_path() {
    let out = run(
        b"GET http://example.com/a/b?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\nGET HTTP://h HTTP/1.1\r\nHost: h\r\n\r\n",
        0,
        HttpLimits::default(),
    );
    assert!(out.contains("GET /a/b 0"), "{out}");
    assert_eq!(statuses(&out), [200, 200]);
}

#[test]
fn http10_keep_alive_is_confirmed() {
    let out = run(
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        0,
        HttpLimits::default(),
    );
    assert!(out.contains("connection: keep-alive"), "{out}");
}
