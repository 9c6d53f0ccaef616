//! The record both journal benches write: an order event as the commerce
//! features will journal it (~104 bytes of rkyv).

/// An order event.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone)]
pub(crate) struct OrderEvent {
    pub(crate) order_id: u64,
    pub(crate) user_id: u64,
    pub(crate) sku: String,
    pub(crate) qty: u32,
    pub(crate) unit_price_cents: u64,
    pub(crate) at_ms: u64,
    pub(crate) status: u8,
    pub(crate) note: String,
}

/// The `i`-th event of a deterministic stream.
pub(crate) fn event(i: u64) -> OrderEvent {
    OrderEvent {
        order_id: i,
        user_id: i.wrapping_mul(2_654_435_761) % 1_000_000,
        sku: format!("SKU-{:08}", i % 50_000),
        qty: (i % 5) as u32 + 1,
        unit_price_cents: 999 + i % 10_000,
        at_ms: 1_760_000_000_000 + i,
        status: (i % 4) as u8,
        note: format!("flash-sale order #{i:010}"),
    }
}
