//! The `Idempotency-Key` guard (on the user's shard, where keys live).
//!
//! Same key + same request fingerprint replays the recorded response; a
//! different fingerprint is `idempotency_conflict`; a key whose first
//! request is still running is `idempotency_in_progress`. Only successful
//! creates are recorded (in the same commit as the order), so a request
//! refused for lack of stock may be retried under its key.

use rayltics_commerce::model::IdempotencyRec;
use rayltics_commerce::{Change, DomainError, DomainResult, Millis};

use super::OpReply;
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
                body: rec.body.clone(),
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

impl Guard<'_> {
    /// The change recording `status` + `body` as the key's response.
    pub(super) fn record(&self, status: u16, body: Vec<u8>, now: Millis) -> Change {
        self.state.store.read().plan_idempotency(
            &self.slot.0,
            &self.slot.1,
            IdempotencyRec {
                fingerprint: self.fingerprint,
                status,
                body,
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
