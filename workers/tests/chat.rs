//! The chat persister against a real Kafka-protocol broker (tansu) and a
//! real MongoDB-wire server (secantusdb), which the test stops and starts:
//! every room's seqs end up in the archive once, without gaps.

mod common;

use std::collections::BTreeMap;

use mongodb::bson::doc;
use prost::Message as _;
use rayltics_proto::events::v1 as pb;
use rayltics_workers::{ChatArchive, WorkersConfig};

use common::*;

fn chat_payload(room: &str, seq: u64) -> Vec<u8> {
    pb::ChatEvent {
        message: Some(pb::ChatMessage {
            room: room.into(),
            seq,
            id: format!("{room}-m{seq}"),
            user_id: format!("u{}", seq % 3),
            text: format!("message {seq} in {room}"),
            sent_at: now_rfc3339(),
        }),
    }
    .encode_to_vec()
}

/// Publishes seqs `seqs` of each room (event ids as the relay would:
/// unique per event, the same on a republish).
async fn send(topic: &str, rooms: &[String], seqs: std::ops::RangeInclusive<u64>) {
    let p = producer(&backend("RAYLTICS_TEST_KAFKA_BROKERS"));
    let at = now_rfc3339();
    for seq in seqs {
        for room in rooms {
            let id = format!("{room}-e{seq}");
            produce(
                &p,
                topic,
                room,
                &id,
                "chat.message",
                &at,
                &chat_payload(room, seq),
            )
            .await;
        }
    }
}

/// seq -> copies, per room, straight from the collection.
async fn stored(cfg: &WorkersConfig, rooms: &[String]) -> BTreeMap<String, BTreeMap<u64, usize>> {
    let client = mongodb::Client::with_uri_str(&cfg.chat.mongo_url)
        .await
        .expect("client");
    let coll = client
        .database(&cfg.chat.database)
        .collection::<mongodb::bson::Document>(&cfg.chat.collection);
    let mut out = BTreeMap::new();
    for room in rooms {
        let mut seqs = BTreeMap::new();
        let mut cursor = match coll.find(doc! { "room": room }).await {
            Ok(c) => c,
            Err(_) => return BTreeMap::new(),
        };
        while cursor.advance().await.unwrap_or(false) {
            if let Ok(d) = cursor.deserialize_current() {
                let seq = d.get_i64("seq").expect("seq") as u64;
                *seqs.entry(seq).or_insert(0) += 1;
            }
        }
        out.insert(room.clone(), seqs);
    }
    out
}

fn complete(got: &BTreeMap<String, BTreeMap<u64, usize>>, rooms: &[String], n: u64) -> bool {
    rooms
        .iter()
        .all(|r| got.get(r).is_some_and(|s| s.len() as u64 >= n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_outage_leaves_no_gap_and_no_duplicate() {
    let brokers = backend("RAYLTICS_TEST_KAFKA_BROKERS");
    let run = unique("chat");
    let topic = format!("chat-{run}");
    create_topic(&brokers, &topic, 2).await;
    let rooms = vec![format!("room-a-{run}"), format!("room-b-{run}")];
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(data.path().to_owned());
    cfg.chat.mongo_url = backend("RAYLTICS_TEST_MONGO_URL");
    cfg.chat.database = "rayltics_test".into();
    cfg.chat.collection = format!("chat_messages_{}", run.replace('-', "_"));
    cfg.chat.topic = topic.clone();
    cfg.chat.group_id = format!("persister-{run}");
    cfg.chat.max_batch = 16;
    cfg.chat.server_selection_timeout_ms = 500;

    // 1..=30 per room, and 1..=10 published twice.
    send(&topic, &rooms, 1..=30).await;
    send(&topic, &rooms, 1..=10).await;
    let w = start(cfg.clone());
    wait_until("seqs 1..=30 archived", 60, || async {
        complete(&stored(&cfg, &rooms).await, &rooms, 30)
    })
    .await;

    // MongoDB goes away while messages keep coming.
    infra("down.sh", "mongo");
    send(&topic, &rooms, 31..=60).await;
    wait_until("inserts retried while MongoDB is down", 30, || async {
        w.counter("retries", &["chat", "mongo"]) >= 2
    })
    .await;
    infra("up.sh", "mongo");
    send(&topic, &rooms, 61..=80).await;
    wait_until("seqs 1..=80 archived", 90, || async {
        complete(&stored(&cfg, &rooms).await, &rooms, 80)
    })
    .await;
    // The republished 1..=10 hit the unique (room, seq) index and were
    // taken as already archived.
    assert!(w.counter("chat_messages", &["duplicate"]) >= 20);
    assert_eq!(w.counter("chat_messages", &["inserted"]), 160);
    w.stop().await;

    let got = stored(&cfg, &rooms).await;
    for room in &rooms {
        let seqs = &got[room];
        let want: Vec<u64> = (1..=80).collect();
        assert_eq!(
            seqs.keys().copied().collect::<Vec<_>>(),
            want,
            "{room}: gap"
        );
        let dups: Vec<_> = seqs.iter().filter(|(_, n)| **n != 1).collect();
        assert!(dups.is_empty(), "{room}: duplicates {dups:?}");
    }

    // History reads from the archive: newest page, then the page before.
    let archive = ChatArchive::connect(&cfg.chat).await.expect("archive");
    let page = archive.history(&rooms[0], None, 10).await.expect("history");
    let seqs: Vec<u64> = page.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (71..=80).collect::<Vec<_>>());
    assert_eq!(page[0].room, rooms[0]);
    assert_eq!(page[0].id, format!("{}-m71", rooms[0]));
    assert_eq!(page[0].text, format!("message 71 in {}", rooms[0]));
    let older = archive
        .history(&rooms[0], Some(5), 10)
        .await
        .expect("history");
    assert_eq!(
        older.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(
        archive
            .history("nowhere", None, 10)
            .await
            .expect("history")
            .is_empty()
    );
}
