//! The embedded event log's wire format: event payloads are the Protobuf
//! messages of `proto/rayltics/events/v1/events.proto`, and a shard's
//! records convert to `rayltics.events.v1.Event` for readers
//! (`EventLog/Read` on the gRPC sidecar).

use prost::Message;
use prost::encoding::{self, WireType};

use rayltics_commerce::clock::{Timestamp, rfc3339};
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
///
/// Encoded field by field from the borrowed record, byte for byte what
/// prost makes of the owned `pb::OrderEvent` (a test holds it to that),
/// without copying every string into that message first: this runs for
/// every order change, flash-sale purchases included.
pub fn order_payload(o: &OrderRec, user_email: &str) -> Vec<u8> {
    let mut order = Vec::with_capacity(256);
    put_str(&mut order, 1, &o.id);
    put_str(&mut order, 2, &o.user_id);
    put_str(&mut order, 3, o.status.as_str());
    let mut line = Vec::with_capacity(64);
    for l in &o.items {
        line.clear();
        put_str(&mut line, 1, &l.sku);
        put_varint(&mut line, 2, u64::from(l.quantity));
        put_varint(&mut line, 3, l.price_cents as u64);
        put_bytes(&mut order, 4, &line);
    }
    put_varint(&mut order, 5, o.total_cents as u64);
    put_str(&mut order, 6, &o.currency);
    put_str(&mut order, 7, Timestamp::of(o.created_at).as_str());
    put_str(&mut order, 8, Timestamp::of(o.updated_at).as_str());
    put_str(&mut order, 9, Timestamp::of(o.expires_at).as_str());
    put_str(&mut order, 10, o.sale_id.as_deref().unwrap_or(""));
    put_str(&mut order, 11, user_email);
    let mut event = Vec::with_capacity(order.len() + 4);
    put_bytes(&mut event, 1, &order);
    event
}

/// A length-delimited field (a nested message is written even when empty,
/// as prost writes a `Some` message field).
fn put_bytes(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(bytes.len() as u64, buf);
    buf.extend_from_slice(bytes);
}

/// A proto3 `string` field: left out when empty (the default).
fn put_str(buf: &mut Vec<u8>, tag: u32, s: &str) {
    if !s.is_empty() {
        put_bytes(buf, tag, s.as_bytes());
    }
}

/// A proto3 `uint32` / `int64` field (an `int64` as its two's complement
/// bits): left out when zero.
fn put_varint(buf: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        encoding::encode_key(tag, WireType::Varint, buf);
        encoding::encode_varint(v, buf);
    }
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

    /// What prost makes of the owned message: the reference encoding.
    fn prost_payload(o: &OrderRec, user_email: &str) -> Vec<u8> {
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

    #[test]
    fn order_payload_is_what_prost_encodes() {
        use rayltics_commerce::model::Line;
        let line = |sku: &str, quantity, price_cents| Line {
            sku: sku.into(),
            quantity,
            price_cents,
        };
        let mut o = OrderRec {
            id: "01234567-89ab-7def-8123-456789abcdef".into(),
            user_id: "u".repeat(200),
            status: OrderStatus::PaymentFailed,
            items: vec![line("A", 3, 1999), line("", 0, 0), line("B", u32::MAX, -5)],
            total_cents: i64::MIN,
            currency: "EUR".into(),
            sale_id: Some("s-1".into()),
            created_at: 1_795_000_000_123,
            updated_at: -1,
            expires_at: 0,
        };
        assert_eq!(order_payload(&o, "a@b.test"), prost_payload(&o, "a@b.test"));
        o.items.clear();
        o.sale_id = None;
        o.currency.clear();
        o.total_cents = 0;
        assert_eq!(order_payload(&o, ""), prost_payload(&o, ""));
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
