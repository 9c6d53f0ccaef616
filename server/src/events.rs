//! The embedded event log's wire format: event payloads are the Protobuf
//! messages of `proto/rayltics/events/v1/events.proto`, and a shard's
//! records convert to `rayltics.events.v1.Event` for readers
//! (`EventLog/Read` on the gRPC sidecar).

use prost::Message;

use rayltics_commerce::clock::rfc3339;
use rayltics_commerce::model::{ChatMessageRec, EventRec, OrderRec};
use rayltics_commerce::state::ShardData;
use rayltics_proto::events::v1 as pb;

/// Most events one read returns.
pub const MAX_READ: usize = 1000;

/// The `rayltics.orders` payload of `o`, with its owner's email as `data`
/// knows it: an order lives on its user's shard, and so does the user
/// (user ids are made on the email's shard), so the lookup is local.
pub fn order_payload_on(data: &ShardData, o: &OrderRec) -> Vec<u8> {
    let email = data.user(&o.user_id).map_or("", |u| u.email.as_str());
    order_payload(o, email)
}

/// The `rayltics.orders` payload of an order after a change; `user_email`
/// is the owner's (the email worker writes to it; empty when unknown).
pub fn order_payload(o: &OrderRec, user_email: &str) -> Vec<u8> {
    pb::OrderEvent {
        order: Some(pb::Order {
            id: o.id.clone(),
            user_id: o.user_id.clone(),
            status: o.status.as_str().to_owned(),
            items: o
                .items
                .iter()
                .map(|l| pb::OrderLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    price_cents: l.price_cents,
                })
                .collect(),
            total_cents: o.total_cents,
            currency: o.currency.clone(),
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
            expires_at: rfc3339(o.expires_at),
            sale_id: o.sale_id.clone().unwrap_or_default(),
            user_email: user_email.to_owned(),
        }),
    }
    .encode_to_vec()
}

/// The `rayltics.chat` payload of a message accepted into its room.
pub fn chat_payload(m: &ChatMessageRec) -> Vec<u8> {
    pb::ChatEvent {
        message: Some(pb::ChatMessage {
            room: m.room.clone(),
            seq: m.seq,
            id: m.id.clone(),
            user_id: m.from.clone(),
            text: m.text.clone(),
            sent_at: rfc3339(m.at),
        }),
    }
    .encode_to_vec()
}

/// A journal event as readers see it.
pub fn to_wire(e: EventRec) -> pb::Event {
    pb::Event {
        offset: e.offset,
        id: e.id,
        topic: e.topic,
        key: e.key,
        kind: e.kind,
        at: rfc3339(e.at),
        payload: e.payload,
    }
}

/// What a shard answers to a read of its log.
#[derive(Debug)]
pub struct LogPage {
    /// The events, oldest first.
    pub events: Vec<pb::Event>,
    /// The log's last offset.
    pub last_offset: u64,
    /// The oldest offset retained.
    pub first_offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayltics_commerce::model::OrderStatus;

    #[test]
    fn chat_payload_decodes_as_a_chat_event() {
        let m = ChatMessageRec {
            room: "lobby".into(),
            seq: 7,
            id: "m-1".into(),
            from: "u-1".into(),
            text: "hi".into(),
            at: 1_764_000_000_000,
        };
        let e = pb::ChatEvent::decode(chat_payload(&m).as_slice()).expect("decodes");
        let got = e.message.expect("message");
        assert_eq!((got.room.as_str(), got.seq), ("lobby", 7));
        assert_eq!((got.id.as_str(), got.user_id.as_str()), ("m-1", "u-1"));
        assert_eq!(got.text, "hi");
        assert_eq!(got.sent_at, rfc3339(m.at));
    }

    #[test]
    fn order_payload_carries_the_owner_email() {
        let o = OrderRec {
            id: "o-1".into(),
            user_id: "u-1".into(),
            status: OrderStatus::Pending,
            items: Vec::new(),
            total_cents: 0,
            currency: "EUR".into(),
            sale_id: None,
            created_at: 0,
            updated_at: 0,
            expires_at: 0,
        };
        let e = pb::OrderEvent::decode(order_payload(&o, "a@b.test").as_slice()).expect("decodes");
        assert_eq!(e.order.expect("order").user_email, "a@b.test");
        let unknown = order_payload_on(&ShardData::new(), &o);
        let e = pb::OrderEvent::decode(unknown.as_slice()).expect("decodes");
        assert_eq!(e.order.expect("order").user_email, "");
    }
}
