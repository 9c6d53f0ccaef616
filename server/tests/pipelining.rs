//! Pipelined requests: many requests in one write get one response each,
//! in the order sent, even when some hop to another shard and some do not.

mod support;

use std::time::Duration;

use support::{Node, Resp};

const REQUESTS: usize = 50;

/// Request `i` of the burst: `/healthz`, `/debug/shards/k{i}` or `/readyz`.
fn path(i: usize) -> String {
    match i % 3 {
        0 => "/healthz".to_owned(),
        1 => format!("/debug/shards/k{i}"),
        _ => "/readyz".to_owned(),
    }
}

fn burst() -> Vec<u8> {
    (0..REQUESTS)
        .flat_map(|i| format!("GET {} HTTP/1.1\r\nHost: t\r\n\r\n", path(i)).into_bytes())
        .collect()
}

fn check_in_order(responses: &[Resp], shards: usize) {
    assert_eq!(responses.len(), REQUESTS);
    for (i, resp) in responses.iter().enumerate() {
        assert_eq!(
            resp.status,
            200,
            "response {i} to {}: {:?}",
            path(i),
            resp.text()
        );
        assert!(!resp.closes(), "response {i} closes the connection");
        match i % 3 {
            0 => assert_eq!(resp.text(), "ok", "response {i} should be /healthz"),
            1 => {
                let v = resp.json();
                assert_eq!(v["key"], format!("k{i}"), "response {i} out of order: {v}");
                assert_eq!(v["answered_by"], v["owner_shard"], "{v}");
                assert_eq!(v["shard_count"], shards, "{v}");
            }
            _ => {
                let v = resp.json();
                assert_eq!(v["status"], "ready", "response {i} should be /readyz: {v}");
            }
        }
    }
}

#[test]
fn fifty_pipelined_requests_in_one_write_are_answered_in_order() {
    let node = Node::start();
    let mut conn = node.connect();
    conn.send(&burst());
    let responses = conn.read_responses(REQUESTS, Duration::from_secs(10));
    check_in_order(&responses, node.shards);
    // Nothing extra, and the connection is still usable.
    conn.expect_open_for(Duration::from_millis(100));
    assert_eq!(conn.request(&support::get("/healthz")).status, 200);
}

#[test]
fn pipelined_requests_split_at_odd_boundaries_are_answered_in_order() {
    let node = Node::start();
    let mut conn = node.connect();
    // Writes that end mid-line, mid-header and mid-CRLF.
    let bytes = burst();
    for piece in bytes.chunks(37) {
        conn.send(piece);
        std::thread::sleep(Duration::from_millis(1));
    }
    let responses = conn.read_responses(REQUESTS, Duration::from_secs(10));
    check_in_order(&responses, node.shards);
}

#[test]
fn pipelined_burst_with_bodies_and_a_closing_request() {
    let node = Node::start();
    let mut raw = Vec::new();
    raw.extend_from_slice(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    raw.extend_from_slice(b"GET /debug/shards/one HTTP/1.1\r\nHost: t\r\n\r\n");
    raw.extend_from_slice(
        b"POST /readyz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    );
    raw.extend_from_slice(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    raw.extend_from_slice(
        b"GET /debug/shards/two HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    raw.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"); // after close: unanswered
    let bytes = support::exchange_until_close(node.http, &raw, Duration::from_secs(5));
    let responses = support::parse_responses(&bytes);
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![405, 200, 405, 404, 200]);
    assert_eq!(responses[1].json()["key"], "one");
    assert_eq!(responses[4].json()["key"], "two");
    assert!(responses[4].closes());
    assert!(responses[..4].iter().all(|r| !r.closes()));
}
