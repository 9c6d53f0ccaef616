//! The `Idempotency-Key` guard (on the user's shard, where keys live).
//!
//! Same key + same request fingerprint replays the recorded response; a
//! different fingerprint is `idempotency_conflict`; a key whose first
//! request is still running is `idempotency_in_progress`. Only successful
//! creates are recorded (in the same commit as the order), so a request
//! refused for lack of stock may be retried under its key.

use rayltics_commerce::model::{IdempotencyRec, OrderStatus};
use rayltics_commerce::{Change, DomainError, DomainResult, Millis};

use super::OpReply;
use crate::api::views;
use crate::service::ShardState;

/// What to do with an idempotent request.
pub(super) enum Begin<'a> {
    /// Answer with the recorded response.
    Replay(OpReply),
    /// Run it; the guard holds the key until dropped.
    Run(Guard<'a>),
}

/// Holds a key "in progress" on its shard until dropped.
pub(super) struct Guard<'a> {
    state: &'a ShardState,
    slot: (String, String),
    fingerprint: [u8; 32],
}

pub(super) fn begin<'a>(
    state: &'a ShardState,
    user_id: &str,
    key: &str,
    fingerprint: [u8; 32],
) -> DomainResult<Begin<'a>> {
    if let Some(rec) = state.store.read().idempotent(user_id, key) {
        return if rec.fingerprint == fingerprint {
            Ok(Begin::Replay(OpReply::Stored {
                status: rec.status,
                body: as_created(state, &rec.order_id)?,
            }))
        } else {
            Err(DomainError::IdempotencyConflict)
        };
    }
    let slot = (user_id.to_owned(), key.to_owned());
    if !state.in_flight.borrow_mut().insert(slot.clone()) {
        return Err(DomainError::IdempotencyInProgress);
    }
    Ok(Begin::Run(Guard {
        state,
        slot,
        fingerprint,
    }))
}

/// The first response of the request that created `order_id`: the order
/// as it was created.
fn as_created(state: &ShardState, order_id: &str) -> DomainResult<Vec<u8>> {
    let data = state.store.read();
    let Some(order) = data.order(order_id) else {
        return Err(DomainError::Unavailable(format!(
            "idempotency record of a missing order {order_id}"
        )));
    };
    let mut created = order.clone();
    created.status = OrderStatus::Pending;
    created.updated_at = created.created_at;
    Ok(views::order_json(&created))
}

impl Guard<'_> {
    /// The change recording `status` and the created order as the key's
    /// response.
    pub(super) fn record(&self, status: u16, order_id: &str, now: Millis) -> Change {
        self.state.store.read().plan_idempotency(
            &self.slot.0,
            &self.slot.1,
            IdempotencyRec {
                fingerprint: self.fingerprint,
                status,
                order_id: order_id.to_owned(),
                at: now,
            },
        )
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.state.in_flight.borrow_mut().remove(&self.slot);
    }
}
