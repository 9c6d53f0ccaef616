//! Key ownership over HTTP: `/debug/shards/{key}` is answered by the shard
//! that owns the key by `rayltics_shards::shard_for`, whichever shard the
//! kernel handed the connection to (the cross-shard mesh hop).

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{Node, get};

const CONNECTIONS: usize = 48;
const KEYS_PER_CONNECTION: usize = 4;

/// What one `/debug/shards/{key}` answer said.
struct Probe {
    owner: usize,
    answered_by: usize,
    accepted_by: usize,
}

fn probe(v: &Value, key: &str, shards: usize) -> Probe {
    let field = |name: &str| -> usize {
        v[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} missing in {v}")) as usize
    };
    assert_eq!(v["key"], key, "{v}");
    assert_eq!(field("shard_count"), shards, "{v}");
    assert_eq!(v["owned_by_answerer"], true, "{v}");
    let p = Probe {
        owner: field("owner_shard"),
        answered_by: field("answered_by"),
        accepted_by: field("accepted_by"),
    };
    assert_eq!(
        p.owner,
        rayltics_shards::shard_for(key.as_bytes(), shards),
        "owner_shard disagrees with shard_for: {v}"
    );
    assert_eq!(p.answered_by, p.owner, "answered by a non-owner: {v}");
    assert!(p.accepted_by < shards, "{v}");
    p
}

fn every_key_is_answered_by_its_owner(shards: usize) {
    let node = Node::builder().shards(shards).start();
    assert_eq!(node.shards, shards);
    let all: BTreeSet<usize> = (0..shards).collect();
    let mut owners = BTreeSet::new();
    let mut acceptors = BTreeSet::new();
    let mut hops = 0;
    // Many connections, so the kernel spreads them over every shard's
    // listener; several keep-alive requests on each.
    for c in 0..CONNECTIONS {
        let mut conn = node.connect();
        let mut accepted_here = None;
        for j in 0..KEYS_PER_CONNECTION {
            let key = format!("sku-{c}-{j}");
            let resp = conn.request(&get(&format!("/debug/shards/{key}")));
            assert_eq!(resp.status, 200, "{key}: {}", resp.text());
            assert_eq!(resp.header("content-type"), Some("application/json"));
            let p = probe(&resp.json(), &key, shards);
            // One connection lives on one shard.
            assert_eq!(*accepted_here.get_or_insert(p.accepted_by), p.accepted_by);
            owners.insert(p.owner);
            acceptors.insert(p.accepted_by);
            if p.accepted_by != p.owner {
                hops += 1;
            }
        }
    }
    assert_eq!(owners, all, "keys should land on every shard");
    assert_eq!(acceptors, all, "connections should land on every shard");
    assert!(hops > 0, "no answer crossed shards");
}

#[test]
fn two_shards_answer_their_own_keys() {
    every_key_is_answered_by_its_owner(2);
}

#[test]
fn three_shards_answer_their_own_keys() {
    every_key_is_answered_by_its_owner(3);
}

#[test]
fn keys_are_percent_decoded_before_hashing() {
    let node = Node::builder().shards(3).start();
    for (encoded, key) in [
        ("a%20b", "a b"),
        ("sku%2F1", "sku/1"),
        ("%D0%BA%D0%BB%D1%8E%D1%87", "ключ"),
        ("plain-key", "plain-key"),
    ] {
        let resp = node.get(&format!("/debug/shards/{encoded}"));
        assert_eq!(resp.status, 200, "{encoded}: {}", resp.text());
        probe(&resp.json(), key, 3);
    }
    // Not UTF-8 once decoded: no such key.
    node.get("/debug/shards/%ff")
        .assert_problem(404, "not_found");
}

#[test]
fn oversized_key_is_422() {
    let node = Node::start();
    let key = "k".repeat(1025);
    node.get(&format!("/debug/shards/{key}"))
        .assert_problem(422, "validation_failed");
    let key = "k".repeat(1024);
    let resp = node.get(&format!("/debug/shards/{key}"));
    assert_eq!(resp.status, 200);
    probe(&resp.json(), &key, 2);
}
