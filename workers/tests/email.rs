//! The email sender against a real Kafka-protocol broker (tansu) and a real
//! SMTP server (aiosmtpd storing into a maildir): one mail per order event,
//! whatever the duplicates, restarts and lost offsets.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use prost::Message as _;
use rayltics_proto::events::v1 as pb;
use rayltics_workers::MailTransport;

use common::*;

/// One order event of a test.
#[derive(Debug, Clone)]
struct Ev {
    event_id: String,
    order_id: String,
    kind: &'static str,
    email: String,
    payload: Vec<u8>,
}

fn order_event(run: &str, i: usize, kind: &'static str) -> Ev {
    let order_id = format!("{run}-o{i}");
    let email = format!("user{i}@{run}.test");
    let status = match kind {
        "order.created" => "pending",
        "order.payment_failed" => "payment_failed",
        "order.expired" => "expired",
        _ => "paid",
    };
    let payload = pb::OrderEvent {
        order: Some(pb::Order {
            id: order_id.clone(),
            user_id: format!("{run}-u{i}"),
            status: status.into(),
            items: vec![pb::OrderLine {
                sku: format!("SKU-{i}"),
                quantity: 1 + (i as u32 % 3),
                price_cents: 1999,
            }],
            total_cents: 1999 * (1 + (i as i64 % 3)),
            currency: "EUR".into(),
            created_at: now_rfc3339(),
            updated_at: now_rfc3339(),
            expires_at: now_rfc3339(),
            sale_id: String::new(),
            user_email: email.clone(),
        }),
    }
    .encode_to_vec();
    Ev {
        event_id: format!("{run}-{kind}-{i}"),
        order_id,
        kind,
        email,
        payload,
    }
}

/// Every order's created event, plus failures, expiries and (mail-less)
/// payments for some.
fn events(run: &str, orders: std::ops::Range<usize>) -> Vec<Ev> {
    let mut out = Vec::new();
    for i in orders {
        out.push(order_event(run, i, "order.created"));
        match i % 4 {
            0 => out.push(order_event(run, i, "order.payment_failed")),
            1 => out.push(order_event(run, i, "order.expired")),
            2 => out.push(order_event(run, i, "order.paid")),
            _ => {}
        }
    }
    out
}

fn mails_expected(evs: &[Ev]) -> usize {
    evs.iter().filter(|e| e.kind != "order.paid").count()
}

async fn send_all(topic: &str, evs: &[Ev]) {
    let p = producer(&backend("RAYLTICS_TEST_KAFKA_BROKERS"));
    let at = now_rfc3339();
    for e in evs {
        produce(&p, topic, &e.order_id, &e.event_id, e.kind, &at, &e.payload).await;
    }
}

/// A mail as stored by aiosmtpd's Mailbox handler: its unfolded headers.
#[derive(Debug)]
struct Stored {
    headers: BTreeMap<String, String>,
}

fn parse_mail(text: &str) -> Stored {
    let head = text
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .replace('\r', "");
    let mut headers = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(k) = &last {
                headers
                    .entry(k.clone())
                    .and_modify(|v: &mut String| v.push_str(line));
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            headers.insert(k.clone(), v.trim().to_owned());
            last = Some(k);
        }
    }
    Stored { headers }
}

/// The mails of this run in the SMTP server's maildir.
fn mails_of(run: &str) -> Vec<Stored> {
    let dir = Path::new(&backend("RAYLTICS_TEST_SMTP_MAILDIR")).to_owned();
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            if text.contains(run) {
                out.push(parse_mail(&text));
            }
        }
    }
    out
}

/// Each expected (order, kind) has exactly one mail, to the right
/// recipient, with the right subject and the Message-ID of its event.
fn check_one_mail_each(run: &str, evs: &[Ev]) {
    let mails = mails_of(run);
    let mut by_id: BTreeMap<String, Vec<&Stored>> = BTreeMap::new();
    for m in &mails {
        let id = m.headers.get("message-id").cloned().unwrap_or_default();
        by_id.entry(id).or_default().push(m);
    }
    let mut expected = BTreeSet::new();
    for e in evs.iter().filter(|e| e.kind != "order.paid") {
        let mid = format!("<{}@rayltics.invalid>", e.event_id);
        expected.insert(mid.clone());
        let got = by_id.get(&mid).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            got.len(),
            1,
            "{} mails for {} {}",
            got.len(),
            e.kind,
            e.order_id
        );
        let m = got[0];
        assert_eq!(m.headers.get("x-rcptto"), Some(&e.email), "{m:?}");
        assert_eq!(m.headers.get("to"), Some(&e.email), "{m:?}");
        let subject = match e.kind {
            "order.created" => format!("[rayltics] Order {} received", e.order_id),
            "order.payment_failed" => {
                format!("[rayltics] Payment failed for order {}", e.order_id)
            }
            _ => format!("[rayltics] Order {} expired", e.order_id),
        };
        assert_eq!(m.headers.get("subject"), Some(&subject), "{m:?}");
    }
    let extra: Vec<_> = by_id.keys().filter(|k| !expected.contains(*k)).collect();
    assert!(extra.is_empty(), "unexpected mails: {extra:?}");
    assert_eq!(mails.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_one_mail_per_order_event_across_duplicates_and_restarts() {
    let brokers = backend("RAYLTICS_TEST_KAFKA_BROKERS");
    let smtp = backend("RAYLTICS_TEST_SMTP_ADDR");
    let (host, port) = smtp.rsplit_once(':').expect("host:port");
    let run = unique("mail");
    let topic = format!("orders-{run}");
    create_topic(&brokers, &topic, 3).await;
    let data = tempfile::tempdir().expect("tempdir");
    let cfg = |group: &str| {
        let mut c = config(data.path().to_owned());
        c.email.enabled = true;
        c.email.topic = topic.clone();
        c.email.group_id = group.to_owned();
        c.email.transport = MailTransport::Smtp;
        c.email.smtp_host = host.to_owned();
        c.email.smtp_port = port.parse().expect("port");
        c.email.max_batch = 8;
        c
    };
    let group = format!("email-{run}");

    // Wave 1, every event twice (a relay that published twice).
    let wave1 = events(&run, 0..12);
    send_all(&topic, &wave1).await;
    send_all(&topic, &wave1).await;
    let w = start(cfg(&group));
    let want1 = mails_expected(&wave1);
    wait_until("wave 1 mails", 60, || async {
        mails_of(&run).len() >= want1
    })
    .await;
    w.stop().await;
    check_one_mail_each(&run, &wave1);

    // The worker is down: wave 2 arrives, and wave 1 once more.
    let wave2 = events(&run, 12..24);
    send_all(&topic, &wave2).await;
    send_all(&topic, &wave1).await;
    let w = start(cfg(&group));
    let all: Vec<Ev> = wave1.iter().chain(&wave2).cloned().collect();
    let want = mails_expected(&all);
    wait_until("wave 2 mails", 60, || async {
        mails_of(&run).len() >= want
    })
    .await;
    // Let the duplicates of wave 1 come through, then check nothing more.
    wait_until("wave 1 duplicates seen", 30, || async {
        w.counter("events", &["email", "duplicate"]) >= want1 as u64
    })
    .await;
    w.stop().await;
    check_one_mail_each(&run, &all);

    // Offsets lost (a new group reads from the start): the sent-ids log
    // keeps every mail from going out again.
    let w = start(cfg(&format!("email-again-{run}")));
    // Wave 1 was delivered three times, wave 2 once: every delivery of a
    // mailed kind is now a duplicate.
    let mailed = 3 * want1 + (want - want1);
    wait_until("every event seen again", 60, || async {
        w.counter("events", &["email", "duplicate"]) >= mailed as u64
    })
    .await;
    assert_eq!(w.counter("mails_sent", &["order.created"]), 0);
    assert_eq!(w.counter("events", &["email", "done"]), 0);

    // The SMTP server goes away: the mails wait (retried, offsets not
    // committed) and go out once it is back, once each.
    infra("down.sh", "smtp");
    let wave3 = events(&run, 24..28);
    send_all(&topic, &wave3).await;
    wait_until("SMTP retries", 30, || async {
        w.counter("retries", &["email", "smtp"]) >= 2
    })
    .await;
    infra("up.sh", "smtp");
    let all: Vec<Ev> = all.iter().chain(&wave3).cloned().collect();
    let want = mails_expected(&all);
    wait_until("wave 3 mails", 60, || async {
        mails_of(&run).len() >= want
    })
    .await;
    w.stop().await;
    check_one_mail_each(&run, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eml_files_one_per_event() {
    let brokers = backend("RAYLTICS_TEST_KAFKA_BROKERS");
    let run = unique("eml");
    let topic = format!("orders-{run}");
    create_topic(&brokers, &topic, 2).await;
    let data = tempfile::tempdir().expect("tempdir");
    let cfg = |group: &str| {
        let mut c = config(data.path().to_owned());
        c.email.enabled = true;
        c.email.topic = topic.clone();
        c.email.group_id = group.to_owned();
        c.email.transport = MailTransport::Eml;
        c
    };
    let evs = events(&run, 0..10);
    send_all(&topic, &evs).await;
    send_all(&topic, &evs).await;
    let want = mails_expected(&evs);
    let dir = data.path().join("mail");
    let count = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
                    .count()
            })
            .unwrap_or(0)
    };
    let w = start(cfg(&format!("email-{run}")));
    wait_until("eml files", 60, || async { count(&dir) >= want }).await;
    wait_until("duplicates seen", 30, || async {
        w.counter("events", &["email", "duplicate"]) >= want as u64
    })
    .await;
    w.stop().await;
    assert_eq!(count(&dir), want);
    for e in evs.iter().filter(|e| e.kind != "order.paid") {
        let path = dir.join(format!("{}.eml", e.event_id));
        let text = std::fs::read_to_string(&path).expect("one file per event id");
        let m = parse_mail(&text);
        assert_eq!(m.headers.get("to"), Some(&e.email));
        assert_eq!(
            m.headers.get("message-id"),
            Some(&format!("<{}@rayltics.invalid>", e.event_id))
        );
        assert!(text.contains("multipart/alternative"), "{text}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Everything again under a new group: no file is written again.
    let w = start(cfg(&format!("email-again-{run}")));
    wait_until("every event seen again", 60, || async {
        w.counter("events", &["email", "duplicate"]) >= 2 * want as u64
    })
    .await;
    assert_eq!(w.counter("events", &["email", "done"]), 0);
    w.stop().await;
    assert_eq!(count(&dir), want);
}
