//! The embedded event log's wire format: event payloads are the Protobuf
//! messages of `proto/rayltics/events/v1/events.proto`, and a shard's
//! records convert to `rayltics.events.v1.Event` for readers
//! (`EventLog/Read` on the gRPC sidecar).

use prost::Message;

use rayltics_commerce::clock::rfc3339;
use rayltics_commerce::model::{EventRec, OrderRec};
use rayltics_proto::events::v1 as pb;

/// Most events one read returns.
pub const MAX_READ: usize = 1000;

/// The `rayltics.orders` payload of an order after a change.
pub fn order_payload(o: &OrderRec) -> Vec<u8> {
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
