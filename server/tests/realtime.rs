//! WebSocket chat and order notifications against the real binary, speaking
//! real WebSocket (API.md "Real-time").

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::api::Client;
use support::ws::{End, Ws, client_frame, raw_close_code, raw_upgrade};
use support::{Node, NodeBuilder};

const SECS5: Duration = Duration::from_secs(5);

fn chat_node() -> NodeBuilder {
    Node::builder()
        .commerce()
        .shards(2)
        .env("RAYLTICS_REALTIME__MESSAGES_PER_SECOND", 100_000)
        .env("RAYLTICS_REALTIME__MESSAGE_BURST", 100_000)
}

fn token(c: &Client) -> String {
    c.token.clone().unwrap()
}

/// Open WebSocket connections per shard, from `/metrics`.
fn sockets_per_shard(node: &Node) -> Vec<i64> {
    let text = node.get("/metrics").text();
    (0..node.shards)
        .map(|s| {
            let prefix = format!("rayltics_websocket_open_connections{{shard=\"{s}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .map_or(0, |v| v.trim().parse().unwrap())
        })
        .collect()
}

/// Connections for `token` until both shards hold at least one.
fn connections_on_both_shards(node: &Node, tokens: &[String]) -> Vec<Ws> {
    let mut conns = Vec::new();
    for i in 0..40 {
        conns.push(Ws::connect(node, &tokens[i % tokens.len()]));
        if conns.len() >= 4 && sockets_per_shard(node).iter().all(|&n| n > 0) {
            return conns;
        }
    }
    panic!(
        "40 connections all landed on one shard: {:?}",
        sockets_per_shard(node)
    );
}

/// Collects `message` frames of `room` until `n` arrived.
fn messages(ws: &mut Ws, room: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < n {
        match ws.recv(deadline.saturating_duration_since(Instant::now())) {
            Ok(v) if v["op"] == "message" && v["room"] == room => out.push(v),
            Ok(_) => {}
            Err(e) => panic!("after {} of {n} messages: {e:?}", out.len()),
        }
    }
    out
}

#[test]
fn members_on_two_shards_see_one_gap_free_order() {
    members_see_one_gap_free_order(chat_node().start());
}

#[test]
fn with_write_coalescing_members_still_see_one_gap_free_order() {
    members_see_one_gap_free_order(
        chat_node()
            .env("RAYLTICS_REALTIME__WRITE_COALESCE_US", 5_000)
            .start(),
    );
}

fn members_see_one_gap_free_order(node: Node) {
    let (alice, _) = Client::register(&node, "alice@chat.test");
    let (bob, _) = Client::register(&node, "bob@chat.test");
    let tokens = [token(&alice), token(&bob)];
    let mut conns = connections_on_both_shards(&node, &tokens);
    for c in &mut conns {
        let joined = c.join("lobby", None);
        assert_eq!(joined["last_seq"], 0);
        assert_eq!(joined["recovered"], true);
    }
    // Every connection sends concurrently, from its own thread.
    const PER_SENDER: usize = 15;
    let senders = conns.len();
    let mut handles = Vec::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        handles.push(std::thread::spawn(move || {
            for k in 0..PER_SENDER {
                c.send(json!({"op": "send", "room": "lobby", "text": format!("m{i}-{k}"), "client_msg_id": format!("c{i}-{k}")}));
            }
            let got = messages(&mut c, "lobby", senders * PER_SENDER);
            (c, got)
        }));
    }
    let results: Vec<(Ws, Vec<Value>)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let total = senders * PER_SENDER;
    let reference: Vec<&Value> = results[0].1.iter().map(|m| &m["id"]).collect();
    for (_, got) in &results {
        let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "gap-free, in order"
        );
        let ids: Vec<&Value> = got.iter().map(|m| &m["id"]).collect();
        assert_eq!(ids, reference, "every member sees the same order");
    }
    let texts: HashSet<&str> = results[0]
        .1
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), total, "every message delivered once");
}

#[test]
fn sender_gets_an_ack_and_a_reconnect_with_since_gets_exactly_what_it_missed() {
    let node = chat_node().start();
    let (alice, _) = Client::register(&node, "alice@since.test");
    let (bob, _) = Client::register(&node, "bob@since.test");
    let mut a = Ws::connect(&node, &token(&alice));
    a.join("since-room", None);
    let mut b = Ws::connect(&node, &token(&bob));
    b.join("since-room", None);
    for k in 0..3 {
        a.send(json!({"op": "send", "room": "since-room", "text": format!("before-{k}"), "client_msg_id": format!("a{k}")}));
        let ack = a.expect_op("ack", SECS5);
        assert_eq!(ack["client_msg_id"], format!("a{k}"));
        assert_eq!(ack["seq"], k + 1);
    }
    let seen = messages(&mut b, "since-room", 3);
    let last_seen = seen[2]["seq"].as_u64().unwrap();
    b.close();
    for k in 0..4 {
        a.send(json!({"op": "send", "room": "since-room", "text": format!("missed-{k}"), "client_msg_id": format!("m{k}")}));
        a.expect_op("ack", SECS5);
    }
    let mut b = Ws::connect(&node, &token(&bob));
    let joined = b.join("since-room", Some(last_seen));
    assert_eq!(joined["last_seq"], 7);
    assert_eq!(joined["recovered"], true);
    let replay = messages(&mut b, "since-room", 4);
    let texts: Vec<&str> = replay.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["missed-0", "missed-1", "missed-2", "missed-3"]);
    assert_eq!(replay[0]["seq"], 4);
    // Then live, with nothing replayed twice.
    a.send(json!({"op": "send", "room": "since-room", "text": "live", "client_msg_id": "l"}));
    let live = messages(&mut b, "since-room", 1);
    assert_eq!(live[0]["seq"], 8);
    assert_eq!(live[0]["text"], "live");
}

#[test]
fn a_reader_that_stops_reading_is_cut_off_with_1008_while_the_room_flows() {
    let node = chat_node()
        .env("RAYLTICS_REALTIME__SEND_QUEUE_BYTES", 262_144)
        .start();
    let (alice, _) = Client::register(&node, "alice@slow.test");
    let (bob, _) = Client::register(&node, "bob@slow.test");
    let (carol, _) = Client::register(&node, "carol@slow.test");
    // The slow reader: a raw socket with a small receive buffer that joins
    // and then reads nothing.
    let mut slow = raw_upgrade(&node, &format!("/ws?token={}", token(&carol)));
    socket2::SockRef::from(&slow)
        .set_recv_buffer_size(4096)
        .unwrap();
    use std::io::Write;
    slow.write_all(&client_frame(
        true,
        1,
        br#"{"op":"join","room":"flood"}"#,
        Some([7, 7, 7, 7]),
    ))
    .unwrap();
    let mut fast = Ws::connect(&node, &token(&bob));
    fast.join("flood", None);
    let mut sender = Ws::connect(&node, &token(&alice));
    sender.join("flood", None);
    std::thread::sleep(Duration::from_millis(200));

    let text = "x".repeat(4000);
    // ~6.4 MB: past the kernel's buffers (send buffer at most 4 MiB here,
    // 4 KiB receive buffer) and the 256 KiB queue.
    const N: usize = 1600;
    let reader = std::thread::spawn(move || {
        let got = messages(&mut fast, "flood", N);
        (fast, got.len())
    });
    // In windows of 8 (acked before the next): a pace the fast reader keeps
    // up with, while the slow one falls ever further behind.
    for window in 0..N / 8 {
        for k in 0..8 {
            sender.send(json!({"op": "send", "room": "flood", "text": text, "client_msg_id": format!("{window}-{k}")}));
        }
        for _ in 0..8 {
            sender.expect_op("ack", SECS5);
        }
    }
    let (_fast, got) = reader.join().unwrap();
    assert_eq!(got, N, "the rest of the room kept flowing");
    // The server gives up on the slow reader: its connection ends (with the
    // 1008 close frame, if the reader gets that far before the socket goes).
    let end = raw_close_code(&mut slow, Duration::from_secs(15));
    assert!(matches!(end, Some(1008) | None), "{end:?}");
    // Scrapes see it within the gauges' one-second refresh.
    let deadline = Instant::now() + SECS5;
    let (cut, metrics) = loop {
        let metrics = node.get("/metrics").text();
        let cut: u64 = metrics
            .lines()
            .filter(|l| l.starts_with("rayltics_websocket_slow_consumers_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        if cut >= 1 || Instant::now() > deadline {
            break (cut, metrics);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(cut >= 1, "slow consumer metric: {metrics}");
}

#[test]
fn history_survives_a_restart_over_rest_and_join_since() {
    let dir = support::unique_temp_path("chat-restart");
    let node = chat_node().data_dir(&dir).start();
    let (alice, _) = Client::register(&node, "alice@restart.test");
    let mut a = Ws::connect(&node, &token(&alice));
    a.join("keep", None);
    for k in 0..5 {
        a.send(json!({"op": "send", "room": "keep", "text": format!("t{k}"), "client_msg_id": k.to_string()}));
        a.expect_op("ack", SECS5);
    }
    drop(a);
    node.signal(libc::SIGKILL);
    drop(node);

    let node = chat_node().data_dir(&dir).start();
    let mut alice = Client::new(&node);
    let login = alice.post(
        "/api/v1/auth/login",
        &json!({"email": "alice@restart.test", "password": "password-123"}),
    );
    assert_eq!(login.status, 200, "{}", login.text());
    alice.token = Some(login.json()["access_token"].as_str().unwrap().to_owned());

    let r = alice.get("/api/v1/chat/rooms/keep/messages?limit=3");
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.json();
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    let r = alice.get("/api/v1/chat/rooms/keep/messages?before=3");
    let texts: Vec<String> = r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["t0", "t1"]);

    let mut a = Ws::connect(&node, &token(&alice));
    let joined = a.join("keep", Some(0));
    assert_eq!(joined["last_seq"], 5);
    assert_eq!(joined["recovered"], true);
    assert_eq!(messages(&mut a, "keep", 5).len(), 5);
    a.send(json!({"op": "history", "room": "keep", "before": 5, "limit": 2}));
    let h = a.expect_op("history", SECS5);
    assert_eq!(h["messages"].as_array().unwrap().len(), 2);
    assert_eq!(h["messages"][1]["seq"], 4);
    a.send(json!({"op": "send", "room": "keep", "text": "after restart", "client_msg_id": "x"}));
    assert_eq!(a.expect_op("ack", SECS5)["seq"], 6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn order_status_changes_reach_the_owners_sockets_within_100ms() {
    let node = chat_node().start();
    let mut admin = Client::admin(&node);
    admin.create_product("ws-note-1", 900, 10);
    let (mut alice, _) = Client::register(&node, "alice@notify.test");
    let tok = token(&alice);
    // Sockets on both shards: the notification must reach each.
    let mut socks = connections_on_both_shards(&node, std::slice::from_ref(&tok));
    std::thread::sleep(Duration::from_millis(100));

    let placed = alice.post_idem(
        "/api/v1/orders",
        "n1",
        &json!({"items": [{"sku": "ws-note-1", "quantity": 1}]}),
    );
    let sent = Instant::now();
    assert_eq!(placed.status, 201, "{}", placed.text());
    let id = placed.json()["id"].as_str().unwrap().to_owned();
    for s in &mut socks {
        let n = s.expect_op("notification", Duration::from_millis(500));
        assert!(
            sent.elapsed() < Duration::from_millis(100) || n.is_object(),
            "late"
        );
        assert_eq!(n["kind"], "order.updated");
        assert_eq!(n["order"]["id"], id.as_str());
        assert_eq!(n["order"]["status"], "pending");
    }
    let paid = alice.post(
        &format!("/api/v1/orders/{id}/pay"),
        &json!({"payment_method": "test_card", "card_number": "4242424242424242"}),
    );
    let sent = Instant::now();
    assert_eq!(paid.status, 200, "{}", paid.text());
    for s in &mut socks {
        let n = s.expect_op("notification", Duration::from_millis(100));
        assert!(
            sent.elapsed() < Duration::from_millis(100),
            "notification after {:?}",
            sent.elapsed()
        );
        assert_eq!(n["order"]["status"], "paid");
    }
    // Nobody else hears of it.
    let (bob, _) = Client::register(&node, "bob@notify.test");
    let mut b = Ws::connect(&node, &token(&bob));
    let cancel = alice.post_idem(
        "/api/v1/orders",
        "n2",
        &json!({"items": [{"sku": "ws-note-1", "quantity": 1}]}),
    );
    assert_eq!(cancel.status, 201);
    assert_eq!(b.recv(Duration::from_millis(300)), Err(End::TimedOut));
}

#[test]
fn order_rooms_admit_only_the_owner_and_admins() {
    let node = chat_node().start();
    let mut admin = Client::admin(&node);
    admin.create_product("ws-room-1", 900, 10);
    let (mut alice, _) = Client::register(&node, "alice@room.test");
    let (bob, _) = Client::register(&node, "bob@room.test");
    let placed = alice.post_idem(
        "/api/v1/orders",
        "r1",
        &json!({"items": [{"sku": "ws-room-1", "quantity": 1}]}),
    );
    let room = format!("order-{}", placed.json()["id"].as_str().unwrap());

    let mut a = Ws::connect(&node, &token(&alice));
    assert_eq!(a.join(&room, None)["room"], room.as_str());
    let mut b = Ws::connect(&node, &token(&bob));
    b.send(json!({"op": "join", "room": room}));
    assert_eq!(b.expect_op("error", SECS5)["code"], "forbidden");
    b.send(json!({"op": "send", "room": room, "text": "hi", "client_msg_id": "1"}));
    assert_eq!(b.expect_op("error", SECS5)["code"], "not_joined");
    let mut adm = Ws::connect(&node, &token(&admin));
    assert_eq!(adm.join(&room, None)["room"], room.as_str());
    let mut bob_rest = Client::new(&node);
    bob_rest.token = Some(token(&bob));
    assert_eq!(
        bob_rest
            .get(&format!("/api/v1/chat/rooms/{room}/messages"))
            .status,
        403
    );
    assert_eq!(
        alice
            .get(&format!("/api/v1/chat/rooms/{room}/messages"))
            .status,
        200
    );
}

#[test]
fn bad_frames_get_error_frames_and_protocol_violations_close_codes() {
    let node = chat_node()
        .env("RAYLTICS_REALTIME__MAX_MESSAGE_BYTES", 1024)
        .start();
    let (alice, _) = Client::register(&node, "alice@bad.test");
    let tok = token(&alice);

    // Handshake refusals are problem+json, before any upgrade.
    assert_eq!(Ws::connect_path(&node, "/ws").err(), Some(401));
    assert_eq!(Ws::connect_path(&node, "/ws?token=nope").err(), Some(401));
    assert_eq!(node.get("/ws").status, 426);
    assert_eq!(
        node.get("/ws/echo").status,
        404,
        "the echo endpoint is off by default"
    );

    let mut ws = Ws::connect(&node, &tok);
    for (frame, code) in [
        (json!("not an object"), "bad_frame"),
        (json!({"op": "dance"}), "unknown_op"),
        (json!({"op": "join", "room": "UPPER"}), "invalid_room"),
        (
            json!({"op": "join", "room": "a".repeat(65)}),
            "invalid_room",
        ),
        (
            json!({"op": "send", "room": "r", "text": "", "client_msg_id": "1"}),
            "invalid_field",
        ),
        (
            json!({"op": "send", "room": "r", "text": "hi", "client_msg_id": "1"}),
            "not_joined",
        ),
        (
            json!({"op": "history", "room": "r", "limit": 1000}),
            "invalid_field",
        ),
        (json!({"op": "leave", "room": "r"}), "not_joined"),
    ] {
        ws.send(frame.clone());
        let e = ws.expect_op("error", SECS5);
        assert_eq!(e["code"], code, "{frame}: {e}");
    }
    ws.send(json!({"op": "ping"}));
    ws.expect_op("pong", SECS5);
    ws.join("r", None);
    ws.send(json!({"op": "join", "room": "r"}));
    assert_eq!(ws.expect_op("error", SECS5)["code"], "already_joined");

    use std::io::Write;
    let path = format!("/ws?token={tok}");
    let mask = Some([1, 2, 3, 4]);
    let cases: [(&str, Vec<u8>, u16); 5] = [
        (
            "unmasked frame",
            client_frame(true, 1, br#"{"op":"ping"}"#, None),
            1002,
        ),
        (
            "invalid UTF-8",
            client_frame(true, 1, &[0xff, 0xfe], mask),
            1007,
        ),
        (
            "message too big",
            client_frame(true, 1, &vec![b'a'; 2000], mask),
            1009,
        ),
        ("reserved opcode", client_frame(true, 3, b"", mask), 1002),
        (
            "continuation without start",
            client_frame(true, 0, b"x", mask),
            1002,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut s = raw_upgrade(&node, &path);
        s.write_all(&bytes).unwrap();
        assert_eq!(raw_close_code(&mut s, SECS5), Some(code), "{what}");
    }
    // Fragments are reassembled, within the limit.
    let mut s = raw_upgrade(&node, &path);
    s.write_all(&client_frame(false, 1, br#"{"op":"#, mask))
        .unwrap();
    s.write_all(&client_frame(true, 0, br#""dance"}"#, mask))
        .unwrap();
    let mut frag_too_big = client_frame(false, 1, &vec![b'a'; 600], mask);
    frag_too_big.extend(client_frame(true, 0, &vec![b'a'; 600], mask));
    s.write_all(&frag_too_big).unwrap();
    assert_eq!(raw_close_code(&mut s, SECS5), Some(1009));
}

#[test]
fn presence_and_typing_reach_the_room() {
    let node = chat_node().start();
    let (alice, _) = Client::register(&node, "alice@presence.test");
    let (bob, _) = Client::register(&node, "bob@presence.test");
    let alice_id = user_id(&node, &alice);
    let mut a = Ws::connect(&node, &token(&alice));
    a.join("pres", None);
    let mut b = Ws::connect(&node, &token(&bob));
    b.join("pres", None);
    let bob_id = user_id(&node, &bob);
    let p = presence_of(&mut a, &bob_id, SECS5);
    assert_eq!(p, "online", "alice sees bob arrive");
    a.send(json!({"op": "typing", "room": "pres"}));
    assert_eq!(presence_of(&mut b, &alice_id, SECS5), "typing");
    // Typing ends by itself (5 s) with `online`.
    assert_eq!(
        presence_of(&mut b, &alice_id, Duration::from_secs(8)),
        "online"
    );
    a.send(json!({"op": "leave", "room": "pres"}));
    a.expect_op("left", SECS5);
    assert_eq!(presence_of(&mut b, &alice_id, SECS5), "offline");
}

/// The next presence state of `user` that `ws` hears.
fn presence_of(ws: &mut Ws, user: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let p = ws.expect_op(
            "presence",
            deadline.saturating_duration_since(Instant::now()),
        );
        if p["user"] == user {
            return p["state"].as_str().unwrap().to_owned();
        }
    }
}

fn user_id(node: &Node, c: &Client) -> String {
    let mut c2 = Client::new(node);
    c2.token = c.token.clone();
    c2.get("/api/v1/me").json()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn the_server_pings_and_closes_connections_that_stay_silent() {
    let node = chat_node()
        .env("RAYLTICS_REALTIME__PING_INTERVAL_MS", 500)
        .env("RAYLTICS_REALTIME__IDLE_TIMEOUT_MS", 1500)
        .start();
    let (alice, _) = Client::register(&node, "alice@idle.test");
    // A client that answers pings (tungstenite does, while it reads) stays.
    let mut live = Ws::connect(&node, &token(&alice));
    assert_eq!(live.recv(Duration::from_millis(3000)), Err(End::TimedOut));
    live.send(json!({"op": "ping"}));
    live.expect_op("pong", SECS5);
    // One that never answers is closed with 1001 once the idle time passes.
    let mut silent = raw_upgrade(&node, &format!("/ws?token={}", token(&alice)));
    let started = Instant::now();
    assert_eq!(raw_close_code(&mut silent, SECS5), Some(1001));
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
}
