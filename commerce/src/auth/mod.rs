//! Authentication primitives.
//!
//! - [`password`](PasswordHasher): argon2id hashing on a few dedicated threads,
//!   so a login never stalls a shard's event loop; a full queue is
//!   [`AuthError::Busy`].
//! - [`token`](TokenKeys): HS256 JWT access tokens ([`Claims`]) and the
//!   signing key (configured, or a 0600 key file in the data directory).
//! - [`cache`](TokenCache): the per-shard cache of already verified tokens.
//! - [`refresh`](RefreshToken): opaque refresh tokens; the server stores only
//!   their digest.
//! - [`ratelimit`](RateLimiter): per-email and per-IP login token buckets.
//! - [`error`](AuthError): the error types.
//!
//! # Checking a request's access token
//!
//! 1. [`TokenCache::get`] with the bearer token and the shard's clock: a hit
//!    returns the claims (the entry is only returned while `exp > now`).
//! 2. On a miss, [`TokenKeys::verify`] checks algorithm, signature and expiry
//!    against the same clock.
//! 3. On success, [`TokenCache::insert`] the token with its claims, so the
//!    next request with it is a hit.
//!
//! Everything here is plain data driven by `&mut self` and an injected clock,
//! except [`PasswordHasher`], which is a `Send + Sync` handle to its threads.

mod cache;
mod error;
mod password;
mod ratelimit;
mod refresh;
mod token;

pub use cache::TokenCache;
pub use error::{AuthError, TokenError};
pub use password::{Argon2Params, PasswordHasher};
pub use ratelimit::{RateLimiter, RetryAfter};
pub use refresh::{RefreshToken, digest_matches};
pub use token::{Claims, KEY_FILE, MAX_TOKEN_LEN, MIN_SECRET_LEN, TokenKeys};

use serde::{Deserialize, Serialize};

/// What a user may do; carried in [`Claims::role`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A shopper: their own carts, orders and profile.
    Customer,
    /// Staff: catalog, inventory and flash-sale administration.
    Admin,
}

impl Role {
    /// The serialized name: `"customer"` or `"admin"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_serde_is_lowercase() {
        for role in [Role::Customer, Role::Admin] {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
        assert!(serde_json::from_str::<Role>("\"Admin\"").is_err());
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }
}
