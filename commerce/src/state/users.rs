//! Users and refresh-token families (the user's shard).

use crate::change::Change;
use crate::clock::Millis;
use crate::error::{DomainError, DomainResult};
use crate::model::{RefreshFamily, UserRec};

use super::ShardData;

/// What presenting a refresh token leads to.
#[derive(Debug, PartialEq)]
pub enum RefreshOutcome {
    /// The current token of a live family: rotate to the new one.
    Rotate(Vec<Change>),
    /// A rotated (old) token of a live family was replayed: revoke the whole
    /// family, then refuse.
    Reused(Vec<Change>),
    /// Unknown, revoked or expired family: refuse.
    Refused,
}

impl ShardData {
    /// A user by id.
    pub fn user(&self, id: &str) -> Option<&UserRec> {
        self.d.users.get(id)
    }

    /// A user by (lower-cased) email.
    pub fn user_by_email(&self, email: &str) -> Option<&UserRec> {
        self.d.emails.get(email).and_then(|id| self.d.users.get(id))
    }

    /// Registers `user` unless the email is taken.
    pub fn plan_register(&self, user: UserRec) -> DomainResult<Vec<Change>> {
        if self.d.emails.contains_key(&user.email) {
            return Err(DomainError::EmailTaken);
        }
        Ok(vec![Change::UserCreated(user)])
    }

    /// A refresh family by id.
    pub fn refresh_family(&self, family_id: &str) -> Option<&RefreshFamily> {
        self.d.refresh.get(family_id)
    }

    /// Decides what presenting refresh token `presented` (its secret's
    /// digest) of `family_id` does; on rotation the family moves to
    /// `next_digest`, valid until `next_expires_at`.
    pub fn plan_refresh(
        &self,
        user_id: &str,
        family_id: &str,
        presented: &[u8; 32],
        next_digest: [u8; 32],
        next_expires_at: Millis,
        now: Millis,
    ) -> RefreshOutcome {
        let Some(family) = self.d.refresh.get(family_id) else {
            return RefreshOutcome::Refused;
        };
        if family.user_id != user_id {
            return RefreshOutcome::Refused;
        }
        let revoke = vec![Change::RefreshRevoked {
            family_id: family_id.to_owned(),
        }];
        if !crate::auth::digest_matches(&family.digest, presented) {
            return RefreshOutcome::Reused(revoke);
        }
        if family.expires_at <= now {
            return RefreshOutcome::Reused(revoke);
        }
        RefreshOutcome::Rotate(vec![Change::RefreshSet {
            family_id: family_id.to_owned(),
            user_id: user_id.to_owned(),
            digest: next_digest,
            expires_at: next_expires_at,
        }])
    }
}
