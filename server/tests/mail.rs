//! Order mails on the embedded default (no Kafka): the workers role reads
//! the shards' outboxes and writes one `.eml` file per mail into
//! `<data_dir>/workers/mail`; the mailed offset is each shard's published
//! offset, so a kill -9 and restart neither loses nor repeats a mail.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use support::Node;
use support::api::Client;

/// Order id -> number of confirmation mails in `dir`.
fn confirmations(dir: &Path) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if e.path().extension().is_none_or(|x| x != "eml") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).expect("read a mail");
        if let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: [rayltics] Order "))
            .and_then(|rest| rest.strip_suffix(" received"))
        {
            *out.entry(id.to_owned()).or_default() += 1;
        }
    }
    out
}

fn wait_for_mails(dir: &Path, orders: &[String], timeout: Duration) -> HashMap<String, usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = confirmations(dir);
        if orders.iter().all(|o| got.contains_key(o)) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn place_orders(c: &mut Client, tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let r = c.post_idem(
                "/api/v1/orders",
                &format!("{tag}-{i}"),
                &json!({"items": [{"sku": "mail-sku", "quantity": 1}]}),
            );
            assert_eq!(r.status, 201, "order: {}", r.text());
            r.json()["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn order_confirmations_are_written_once_across_a_kill_9() {
    let data = support::unique_temp_path("mail");
    let mail_dir = data.join("workers/mail");
    let node = Node::builder().commerce().shards(2).data_dir(&data).start();
    let mut admin = Client::admin(&node);
    admin.create_product("mail-sku", 1200, 10_000);
    let (mut user, _) = Client::register(&node, "buyer@mail.test");
    let first = place_orders(&mut user, "a", 20);
    let got = wait_for_mails(&mail_dir, &first, Duration::from_secs(20));
    for o in &first {
        assert_eq!(got.get(o), Some(&1), "one confirmation for {o}: {got:?}");
    }

    // Orders right before a kill -9: mailed after the restart if not before,
    // and never twice.
    let second = place_orders(&mut user, "b", 20);
    drop(user);
    drop(admin);
    let mut node = node;
    node.signal(libc::SIGKILL);
    node.wait_exit(Duration::from_secs(10));
    drop(node);
    let node = Node::builder().commerce().shards(2).data_dir(&data).start();
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    let got = wait_for_mails(&mail_dir, &all, Duration::from_secs(20));
    for o in &all {
        assert_eq!(got.get(o), Some(&1), "one confirmation for {o}: {got:?}");
    }
    assert_eq!(got.len(), all.len(), "no other mails: {got:?}");
    drop(node);
    let _ = std::fs::remove_dir_all(&data);
}
