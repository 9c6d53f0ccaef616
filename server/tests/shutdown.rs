//! Graceful stop on SIGTERM: listeners close, idle keep-alive connections
//! close, in-flight requests are answered (with `connection: close`), and
//! the process exits 0 within the drain deadline, even when a client stalls.

mod support;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Conn, Node, get};

/// Polls until a new connection to `node`'s HTTP port is refused. Panics if
/// that takes longer than `within` or if the process is gone by then (the
/// check must happen while the drain is still going on).
fn expect_refusing_connections(node: &mut Node, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect_timeout(&node.http, Duration::from_secs(1)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("connect failed other than refused: {e}"),
            // Raced the listener's close; it must not be served.
            Ok(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "new connections still accepted {within:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        node.is_running(),
        "the node exited before its in-flight requests were answered"
    );
}

/// A keep-alive connection that has had one request answered (so it is past
/// the kernel's accept queue and owned by a shard).
fn accepted(node: &Node) -> Conn {
    let mut conn = node.connect();
    assert_eq!(conn.request(&get("/healthz")).status, 200);
    conn
}

#[test]
fn sigterm_answers_in_flight_requests_closes_idle_ones_and_exits_zero() {
    let drain = Duration::from_secs(5);
    let mut node = Node::builder()
        .env("RAYLTICS_SHUTDOWN__DRAIN_TIMEOUT_MS", drain.as_millis())
        .start();

    // In flight: heads in, half of each body sent (on connections the node
    // has surely accepted: each answered a request first).
    let mut post = accepted(&node);
    post.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345");
    let mut ready = accepted(&node);
    ready.send(b"GET /readyz HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab");
    // Idle keep-alive after one answered request.
    let mut idle = accepted(&node);
    std::thread::sleep(Duration::from_millis(150));

    let stop = Instant::now();
    node.sigterm();

    idle.expect_closed(Duration::from_secs(2));
    expect_refusing_connections(&mut node, Duration::from_secs(2));

    // The rest of each body arrives after the drain began: both are answered
    // by the router, with connection: close, then closed.
    post.send(b"67890");
    let resp = post.read_response();
    resp.assert_problem(405, "method_not_allowed");
    assert!(resp.closes(), "in-flight answer during drain must close");
    post.expect_closed(Duration::from_secs(2));

    ready.send(b"cd");
    let resp = ready.read_response();
    resp.assert_problem(503, "not_ready");
    assert!(resp.closes());
    ready.expect_closed(Duration::from_secs(2));

    let status = node.wait_exit(drain);
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        node.stderr_tail()
    );
    assert!(stop.elapsed() < drain, "took {:?}", stop.elapsed());
}

#[test]
fn stalled_in_flight_requests_do_not_outlive_the_drain_deadline() {
    let drain = Duration::from_millis(600);
    let mut node = Node::builder()
        .env("RAYLTICS_SHUTDOWN__DRAIN_TIMEOUT_MS", drain.as_millis())
        .start();
    // One stalls in its body, one in its head; both far from their own
    // (default 30 s / 10 s) read timeouts.
    let mut body = accepted(&node);
    body.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345");
    let mut head = accepted(&node);
    head.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n");
    std::thread::sleep(Duration::from_millis(150));

    let stop = Instant::now();
    node.sigterm();
    let status = node.wait_exit(drain + Duration::from_secs(3));
    let took = stop.elapsed();
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        node.stderr_tail()
    );
    assert!(
        took >= drain - Duration::from_millis(100),
        "exited after {took:?}, before the {drain:?} drain deadline, with requests in flight"
    );
    // Nothing was answered; the connections are gone with the process.
    body.expect_closed(Duration::from_secs(1));
    head.expect_closed(Duration::from_secs(1));
}

#[test]
fn idle_node_stops_at_once_on_sigterm_and_sigint() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut node = Node::builder()
            .env("RAYLTICS_SHUTDOWN__DRAIN_TIMEOUT_MS", 10_000)
            .start();
        assert_eq!(node.get("/healthz").status, 200);
        let stop = Instant::now();
        node.signal(signal);
        let status = node.wait_exit(Duration::from_secs(5));
        assert!(status.success(), "signal {signal}: {status:?}");
        assert!(
            stop.elapsed() < Duration::from_secs(2),
            "signal {signal}: an idle node took {:?} to stop",
            stop.elapsed()
        );
        assert!(node.stderr().contains("stopped"), "{}", node.stderr_tail());
    }
}
