//! The HTTP/1.1 edge of the real binary, over raw TCP: limits (413, 414,
//! 431), malformed input (400), slow clients (408), keep-alive, framing
//! (chunked, 100-continue, HEAD) and `Connection: close`.

mod support;

use std::time::{Duration, Instant};

use support::{Conn, Node, NodeBuilder, ReadEnd, exchange_until_close, get, parse_responses};

const MAX_HEADER_BYTES: usize = 2048;
const MAX_HEADERS: usize = 16;
const MAX_URI_BYTES: usize = 512;
const MAX_BODY_BYTES: usize = 1024;
/// How long an edge error answer may take to be followed by the close
/// (the node lingers up to 500 ms draining unread input).
const CLOSE_WITHIN: Duration = Duration::from_secs(3);

/// A node with small, known limits.
fn limited() -> NodeBuilder {
    Node::builder()
        .env("RAYLTICS_HTTP__MAX_HEADER_BYTES", MAX_HEADER_BYTES)
        .env("RAYLTICS_HTTP__MAX_HEADERS", MAX_HEADERS)
        .env("RAYLTICS_HTTP__MAX_URI_BYTES", MAX_URI_BYTES)
        .env("RAYLTICS_HTTP__MAX_BODY_BYTES", MAX_BODY_BYTES)
}

/// Sends `raw` on a fresh connection and asserts exactly one problem answer
/// with `status`/`code`, `connection: close`, and then the close.
fn expect_problem_then_close(node: &Node, raw: &[u8], status: u16, code: &str) {
    let bytes = exchange_until_close(node.http, raw, CLOSE_WITHIN);
    let responses = parse_responses(&bytes);
    assert_eq!(
        responses.len(),
        1,
        "one answer to {:?}, got {:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(120)]),
        String::from_utf8_lossy(&bytes)
    );
    let resp = &responses[0];
    resp.assert_problem(status, code);
    assert!(resp.closes(), "a {status} must carry connection: close");
}

#[test]
fn too_many_header_bytes_is_431() {
    let node = limited().start();
    let big = "a".repeat(MAX_HEADER_BYTES + 100);
    let raw = format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n");
    expect_problem_then_close(&node, raw.as_bytes(), 431, "headers_too_large");

    // A head that never ends but keeps growing is cut off at the limit too.
    let endless = format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {big}");
    expect_problem_then_close(&node, endless.as_bytes(), 431, "headers_too_large");
}

#[test]
fn too_many_header_fields_is_431() {
    let node = limited().start();
    let mut raw = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for i in 0..MAX_HEADERS + 4 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    assert!(raw.len() < MAX_HEADER_BYTES, "only the count is over");
    expect_problem_then_close(&node, raw.as_bytes(), 431, "headers_too_large");

    // Exactly at the limit is fine.
    let mut ok = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for i in 0..MAX_HEADERS - 1 {
        ok.push_str(&format!("X-H{i}: v\r\n"));
    }
    ok.push_str("\r\n");
    assert_eq!(node.connect().request(ok.as_bytes()).status, 200);
}

#[test]
fn long_uri_is_414() {
    let node = limited().start();
    let path = format!("/debug/shards/{}", "k".repeat(MAX_URI_BYTES));
    expect_problem_then_close(&node, &get(&path), 414, "uri_too_long");

    // A request line that never ends is cut off without waiting for it.
    let endless = format!("GET /{} ", "k".repeat(MAX_URI_BYTES + 100));
    expect_problem_then_close(&node, endless.as_bytes(), 414, "uri_too_long");

    // Just under the limit is routed.
    let path = format!("/debug/shards/{}", "k".repeat(MAX_URI_BYTES - 20));
    let resp = node.get(&path);
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn content_length_above_the_limit_is_413() {
    let node = limited().start();
    let raw = format!(
        "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    expect_problem_then_close(&node, raw.as_bytes(), 413, "payload_too_large");
}

#[test]
fn chunked_body_growing_above_the_limit_is_413() {
    let node = limited().start();
    let chunk = format!("{:x}\r\n{}\r\n", 400, "c".repeat(400));
    let mut raw =
        String::from("POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..3 {
        raw.push_str(&chunk); // 1200 bytes > 1024
    }
    raw.push_str("0\r\n\r\n");
    expect_problem_then_close(&node, raw.as_bytes(), 413, "payload_too_large");

    // The same framing under the limit is accepted (405: POST on a GET route).
    let mut ok =
        String::from("POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    ok.push_str(&chunk);
    ok.push_str(&chunk);
    ok.push_str("0\r\n\r\n");
    assert_eq!(node.connect().request(ok.as_bytes()).status, 405);
}

#[test]
fn malformed_requests_are_400_and_close() {
    let node = limited().start();
    let cases: &[(&str, &[u8])] = &[
        ("garbage line", b"GARBAGE\r\n\r\n"),
        ("binary junk", b"\x00\x01\x02\xff\xfe\r\n\r\n"),
        ("tls client hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
        ("method only", b"GET\r\n\r\n"),
        ("relative target", b"GET healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("header without colon", b"GET /healthz HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n"),
        (
            "content-length and transfer-encoding",
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "transfer-encoding and content-length",
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ),
        ("missing host on HTTP/1.1", b"GET /healthz HTTP/1.1\r\n\r\n"),
        (
            "non-numeric content-length",
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        ),
        (
            "negative content-length",
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        ),
        (
            "signed content-length",
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello",
        ),
        (
            "list content-length",
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello",
        ),
        (
            "conflicting content-lengths",
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "huge content-length",
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ),
        (
            "malformed chunk size",
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk without its CRLF",
            b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        ),
    ];
    // In parallel: each answer is followed by up to 500 ms of linger.
    std::thread::scope(|s| {
        for (what, raw) in cases {
            let addr = node.http;
            s.spawn(move || {
                let bytes = exchange_until_close(addr, raw, CLOSE_WITHIN);
                let responses = parse_responses(&bytes);
                assert_eq!(
                    responses.len(),
                    1,
                    "{what}: {:?}",
                    String::from_utf8_lossy(&bytes)
                );
                let resp = &responses[0];
                assert_eq!(resp.status, 400, "{what}: {:?}", resp.text());
                resp.assert_problem(400, "bad_request");
                assert!(resp.closes(), "{what}: no connection: close");
            });
        }
    });
    // The node is still healthy afterwards.
    assert_eq!(node.get("/healthz").status, 200);
}

#[test]
fn unsupported_version_encoding_and_expectation() {
    let node = limited().start();
    expect_problem_then_close(
        &node,
        b"GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n",
        505,
        "http_version_not_supported",
    );
    expect_problem_then_close(
        &node,
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
        "unsupported_transfer_encoding",
    );
    expect_problem_then_close(
        &node,
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
        "unsupported_transfer_encoding",
    );
    expect_problem_then_close(
        &node,
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx",
        417,
        "expectation_failed",
    );
}

#[test]
fn stalled_head_is_408() {
    let node = limited()
        .env("RAYLTICS_HTTP__HEADER_READ_TIMEOUT_MS", 300)
        .start();
    let mut conn = node.connect();
    let started = Instant::now();
    conn.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n"); // never finished
    let resp = conn.read_response();
    let waited = started.elapsed();
    resp.assert_problem(408, "request_timeout");
    assert!(resp.closes());
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "408 after {waited:?}, configured 300 ms"
    );
    conn.expect_closed(CLOSE_WITHIN);
}

#[test]
fn stalled_body_is_408() {
    let node = limited()
        .env("RAYLTICS_HTTP__BODY_READ_TIMEOUT_MS", 300)
        .start();
    let mut conn = node.connect();
    let started = Instant::now();
    conn.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345");
    let resp = conn.read_response();
    let waited = started.elapsed();
    resp.assert_problem(408, "request_timeout");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "408 after {waited:?}, configured 300 ms"
    );
    conn.expect_closed(CLOSE_WITHIN);
}

/// Sends `raw` a few bytes at a time, `every` apart, until the node answers
/// or `raw` runs out; returns the answer and when it came.
fn trickle(conn: &mut Conn, raw: &[u8], every: Duration) -> (support::Resp, Duration) {
    let started = Instant::now();
    for piece in raw.chunks(4) {
        if conn.try_send(piece).is_err() {
            break;
        }
        std::thread::sleep(every);
        conn.stream.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 1];
        let answered = matches!(conn.stream.peek(&mut probe), Ok(n) if n > 0);
        conn.stream.set_nonblocking(false).unwrap();
        if answered {
            break;
        }
    }
    let resp = conn.read_response();
    (resp, started.elapsed())
}

#[test]
fn head_trickled_slower_than_the_header_timeout_is_408() {
    // Slowloris: each piece arrives well inside the timeout, the whole head
    // does not. The timeout is for the head, not for each read.
    let node = limited()
        .env("RAYLTICS_HTTP__HEADER_READ_TIMEOUT_MS", 300)
        .start();
    let mut conn = node.connect();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(40)
    );
    let (resp, took) = trickle(&mut conn, head.as_bytes(), Duration::from_millis(100));
    assert_eq!(
        resp.status, 408,
        "a head trickled over {took:?} was answered {} (header timeout 300 ms)",
        resp.status
    );
    assert!(
        took < Duration::from_millis(1500),
        "408 only after {took:?}"
    );
}

#[test]
fn body_trickled_slower_than_the_body_timeout_is_408() {
    let node = limited()
        .env("RAYLTICS_HTTP__BODY_READ_TIMEOUT_MS", 300)
        .start();
    let mut conn = node.connect();
    conn.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 64\r\n\r\n");
    let body = [b'b'; 64];
    let (resp, took) = trickle(&mut conn, &body, Duration::from_millis(100));
    assert_eq!(
        resp.status, 408,
        "a body trickled over {took:?} was answered {} (body timeout 300 ms)",
        resp.status
    );
    assert!(
        took < Duration::from_millis(1500),
        "408 only after {took:?}"
    );
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let node = limited().env("RAYLTICS_HTTP__IDLE_TIMEOUT_MS", 300).start();
    let mut conn = node.connect();
    let resp = conn.request(&get("/healthz"));
    assert_eq!(resp.status, 200);
    assert!(!resp.closes(), "keep-alive by default on HTTP/1.1");
    let idle_from = Instant::now();
    conn.expect_closed(Duration::from_secs(3));
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(250),
        "closed after {idle:?} idle, configured 300 ms"
    );
}

#[test]
fn keep_alive_connection_survives_below_the_idle_timeout() {
    let node = limited()
        .env("RAYLTICS_HTTP__IDLE_TIMEOUT_MS", 2000)
        .start();
    let mut conn = node.connect();
    assert_eq!(conn.request(&get("/healthz")).status, 200);
    conn.expect_open_for(Duration::from_millis(500));
    assert_eq!(conn.request(&get("/healthz")).status, 200);
}

#[test]
fn expect_100_continue_gets_continue_before_the_answer() {
    let node = limited().start();
    let mut conn = node.connect();
    conn.send(
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let interim = conn.read_exact_bytes(b"HTTP/1.1 100 Continue\r\n\r\n".len());
    assert_eq!(
        String::from_utf8_lossy(&interim),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
    conn.send(b"hello");
    let resp = conn.read_response();
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET"));
    // The connection stays usable.
    assert_eq!(conn.request(&get("/healthz")).status, 200);

    // A 100-continue request over the body limit gets 413 instead of 100.
    let raw = format!(
        "POST /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES * 2
    );
    expect_problem_then_close(&node, raw.as_bytes(), 413, "payload_too_large");
}

#[test]
fn connection_close_is_honoured() {
    let node = limited().start();
    let mut conn = node.connect();
    let resp = conn.request(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");
    assert_eq!(resp.header("connection"), Some("close"));
    conn.expect_closed(Duration::from_secs(2));

    // Pipelined requests after the closing one are not answered.
    let bytes = exchange_until_close(
        node.http,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        Duration::from_secs(2),
    );
    assert_eq!(support::statuses(&bytes), vec![200]);
}

#[test]
fn http10_closes_unless_keep_alive() {
    let node = limited().start();
    // HTTP/1.0 needs no Host and closes by default.
    let bytes = exchange_until_close(
        node.http,
        b"GET /healthz HTTP/1.0\r\n\r\n",
        Duration::from_secs(2),
    );
    let responses = parse_responses(&bytes);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 200);
    assert!(responses[0].closes());

    let mut conn = node.connect();
    let resp = conn.request(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert!(!resp.closes());
    assert_eq!(conn.request(&get("/healthz")).status, 200);
}

#[test]
fn chunked_request_body_keeps_the_connection_usable() {
    let node = limited().start();
    let mut conn = node.connect();
    // Chunk extensions and a trailer section, both to be skipped.
    conn.send(
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let resp = conn.read_response();
    resp.assert_problem(405, "method_not_allowed");
    assert_eq!(resp.header("allow"), Some("GET"));
    assert!(!resp.closes(), "a 405 from the router keeps the connection");
    let resp = conn.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");

    // Content-Length framing, body split across writes.
    conn.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello");
    std::thread::sleep(Duration::from_millis(50));
    conn.send(b" world");
    assert_eq!(conn.read_response().status, 405);
    assert_eq!(conn.request(&get("/healthz")).status, 200);

    // Chunked body trickled a few bytes at a time.
    let raw: &[u8] =
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    for piece in raw.chunks(7) {
        conn.send(piece);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(conn.read_response().status, 405);
    assert_eq!(conn.request(&get("/healthz")).status, 200);
}

#[test]
fn unknown_path_is_404_problem() {
    let node = limited().start();
    let mut conn = node.connect();
    let resp = conn.request(&get("/no/such/route"));
    resp.assert_problem(404, "not_found");
    assert!(!resp.closes(), "a 404 keeps the connection");
    assert_eq!(conn.request(&get("/healthz")).status, 200);
}

#[test]
fn head_has_the_length_but_no_body() {
    let node = limited().start();
    let mut conn = node.connect();
    // HEAD then GET in one write: if HEAD carried a body, the GET's status
    // line would not start right after the HEAD's head.
    conn.send(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = conn.read_head_response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("2"));
    assert_eq!(head.header("content-type"), Some("text/plain"));
    let resp = conn.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok");
    conn.shutdown_write();
    let (rest, end) = conn.read_until_close(Duration::from_secs(2));
    assert_eq!(end, ReadEnd::Closed);
    assert!(
        rest.is_empty(),
        "stray bytes: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn connections_above_the_shard_limit_are_closed_at_accept() {
    let node = limited()
        .shards(1)
        .env("RAYLTICS_HTTP__MAX_CONNECTIONS_PER_SHARD", 2)
        .start();
    let mut a = node.connect();
    let mut b = node.connect();
    assert_eq!(a.request(&get("/healthz")).status, 200);
    assert_eq!(b.request(&get("/healthz")).status, 200);

    let mut c = Conn::open(node.http);
    let _ = c.try_send(&get("/healthz"));
    let (bytes, end) = c.read_until_close(Duration::from_secs(2));
    assert_eq!(end, ReadEnd::Closed, "third connection should be closed");
    assert!(bytes.is_empty(), "no answer on a rejected connection");

    // A freed slot is usable again.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut d = Conn::open(node.http);
        let _ = d.try_send(&get("/healthz"));
        let (bytes, _) = d.read_until_close(Duration::from_millis(300));
        if !bytes.is_empty() {
            assert_eq!(parse_responses(&bytes)[0].status, 200);
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
    }
    let metrics = b.request(&get("/metrics")).text();
    let rejected: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rayltics_http_rejected_connections_total{shard=\"0\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rejected-connections series:\n{metrics}"));
    assert!(rejected >= 1, "rejections counted: {rejected}");
}

#[test]
fn reader_that_never_reads_is_dropped_after_the_write_timeout() {
    let node = limited()
        .shards(1)
        .env("RAYLTICS_HTTP__WRITE_TIMEOUT_MS", 300)
        .start();
    let mut scraper = node.connect();
    let open_connections = |scraper: &mut Conn| -> u64 {
        let text = scraper.request(&get("/metrics")).text();
        text.lines()
            .find_map(|l| l.strip_prefix("rayltics_http_open_connections{shard=\"0\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no open-connections gauge:\n{text}"))
    };
    let response_size = scraper.request(&get("/metrics")).body.len();

    // Pipeline far more response bytes than the socket buffers hold, and
    // never read them.
    let mut slow = node.connect();
    assert_eq!(slow.request(&get("/healthz")).status, 200, "accepted");
    let count = (16 << 20) / response_size.max(1) + 1;
    let _ = slow.try_send(&get("/metrics").repeat(count));
    assert_eq!(open_connections(&mut scraper), 2, "slow reader connected");

    let deadline = Instant::now() + Duration::from_secs(10);
    while open_connections(&mut scraper) != 1 {
        assert!(
            Instant::now() < deadline,
            "a client that never reads is still connected after 10 s (write timeout 300 ms)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
