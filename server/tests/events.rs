//! The embedded event log (outbox): every order status change is recorded in
//! the same commit as the change and read back by offset over gRPC
//! (`rayltics.events.v1.EventLog/Read`), with Protobuf payloads, across a
//! restart.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use prost::Message;
use rayltics_proto::events::v1::event_log_client::EventLogClient;
use rayltics_proto::events::v1::{Event, OrderEvent, ReadRequest};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

use support::Node;
use support::api::Client;

async fn read_all(node: &Node) -> Vec<(u32, Event)> {
    let channel = Channel::from_shared(node.grpc_url())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let mut client = EventLogClient::new(channel);
    let mut all = Vec::new();
    let mut shard = 0;
    loop {
        let mut after = 0;
        loop {
            let page = client
                .read(ReadRequest {
                    shard,
                    after_offset: after,
                    max_events: 2,
                })
                .await
                .unwrap()
                .into_inner();
            if page.events.is_empty() {
                assert_eq!(after, page.last_offset, "the log ends at its last offset");
                if shard + 1 >= page.shard_count {
                    return all;
                }
                break;
            }
            for e in page.events {
                assert_eq!(e.offset, after + 1, "offsets are gap-free");
                after = e.offset;
                all.push((shard, e));
            }
        }
        shard += 1;
    }
}

#[tokio::test]
async fn order_events_are_read_by_offset_and_survive_a_restart() {
    let data = support::unique_temp_path("events");
    let node = Node::builder().commerce().data_dir(&data).start();
    let mut admin = Client::admin(&node);
    admin.create_product("ev-1", 300, 10);
    let (mut c, _) = Client::register(&node, "events@log.test");
    let mut ids = Vec::new();
    for i in 0..3 {
        let o = c.post_idem(
            "/api/v1/orders",
            &format!("ev-{i}"),
            &json!({"items": [{"sku": "ev-1", "quantity": 1}]}),
        );
        ids.push(o.json()["id"].as_str().unwrap().to_owned());
    }
    c.post(
        &format!("/api/v1/orders/{}/pay", ids[0]),
        &json!({"payment_method": "test_card", "card_number": "4242424242424242"}),
    );
    c.post(&format!("/api/v1/orders/{}/cancel", ids[1]), &json!({}));

    let events = read_all(&node).await;
    let mut kinds: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (_, e) in &events {
        assert_eq!(e.topic, "rayltics.orders");
        assert!(seen.insert(e.id.clone()), "event ids are unique");
        let payload = OrderEvent::decode(e.payload.as_slice()).expect("protobuf payload");
        let order = payload.order.expect("order");
        assert_eq!(order.id, e.key);
        let kind = match order.status.as_str() {
            "pending" => "order.created".to_owned(),
            other => format!("order.{other}"),
        };
        assert_eq!(kind, e.kind);
        kinds.entry(e.key.clone()).or_default().push(e.kind.clone());
    }
    assert_eq!(kinds[&ids[0]], ["order.created", "order.paid"]);
    assert_eq!(kinds[&ids[1]], ["order.created", "order.cancelled"]);
    assert_eq!(kinds[&ids[2]], ["order.created"]);

    let mut client = EventLogClient::new(
        Channel::from_shared(node.grpc_url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let err = client
        .read(ReadRequest {
            shard: 99,
            after_offset: 0,
            max_events: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .read(ReadRequest {
            shard: 0,
            after_offset: 0,
            max_events: 5000,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    drop(node);
    let node = Node::builder().commerce().data_dir(&data).start();
    let again = read_all(&node).await;
    assert_eq!(again, events, "the log is durable");
    drop(node);
    let _ = std::fs::remove_dir_all(&data);
}
