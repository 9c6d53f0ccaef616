//! Users and sessions, on the user's shard (= the shard of their email).

use rayltics_commerce::state::RefreshOutcome;
use rayltics_commerce::{Change, DomainError, DomainResult};

use super::{Op, OpReply};
use crate::service::ShardState;

pub(super) async fn execute(state: &ShardState, op: Op) -> DomainResult<OpReply> {
    let now = state.shared.clock.now_ms();
    let refresh_expires = now.saturating_add(state.shared.refresh_ttl_ms);
    match op {
        Op::Register {
            user,
            family_id,
            digest,
        } => {
            let mut changes = state.store.read().plan_register(user.clone())?;
            changes.push(Change::RefreshSet {
                family_id,
                user_id: user.id.clone(),
                digest,
                expires_at: refresh_expires,
            });
            state.store.commit(changes).await?;
            Ok(OpReply::User(user))
        }
        Op::LoginLookup { email } => {
            if let Err(wait) = state.email_limits.borrow_mut().check(&email, now) {
                return Err(DomainError::RateLimited(wait.secs));
            }
            let user = state.store.read().user_by_email(&email).cloned();
            user.map(OpReply::User)
                .ok_or(DomainError::InvalidCredentials)
        }
        Op::StartSession {
            user_id,
            family_id,
            digest,
        } => {
            let user = state
                .store
                .read()
                .user(&user_id)
                .cloned()
                .ok_or(DomainError::InvalidCredentials)?;
            state
                .store
                .commit(vec![Change::RefreshSet {
                    family_id,
                    user_id,
                    digest,
                    expires_at: refresh_expires,
                }])
                .await?;
            Ok(OpReply::User(user))
        }
        Op::Refresh {
            user_id,
            family_id,
            presented,
            next,
        } => {
            let outcome = state.store.read().plan_refresh(
                &user_id,
                &family_id,
                &presented,
                next,
                refresh_expires,
                now,
            );
            match outcome {
                RefreshOutcome::Rotate(changes) => {
                    state.store.commit(changes).await?;
                    let user = state.store.read().user(&user_id).cloned();
                    user.map(OpReply::User)
                        .ok_or(DomainError::Unauthorized("unknown user"))
                }
                RefreshOutcome::Reused(changes) => {
                    state.store.commit(changes).await?;
                    tracing::warn!(user = %user_id, family = %family_id, "refresh token re-used: family revoked");
                    Err(DomainError::Unauthorized(
                        "refresh token was already used; the session is revoked",
                    ))
                }
                RefreshOutcome::Refused => Err(DomainError::Unauthorized("invalid refresh token")),
            }
        }
        Op::Logout {
            user_id,
            family_id,
            presented,
        } => {
            let owns = state
                .store
                .read()
                .refresh_family(&family_id)
                .is_some_and(|f| {
                    f.user_id == user_id
                        && rayltics_commerce::auth::digest_matches(&f.digest, &presented)
                });
            if owns {
                state
                    .store
                    .commit(vec![Change::RefreshRevoked { family_id }])
                    .await?;
            }
            Ok(OpReply::Done)
        }
        Op::GetUser { user_id } => {
            let user = state.store.read().user(&user_id).cloned();
            user.map(OpReply::User).ok_or(DomainError::NotFound("user"))
        }
        other => Err(super::unexpected_op(other)),
    }
}
