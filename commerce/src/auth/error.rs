//! Errors of the auth primitives.
//!
//! Each variant says whether retrying the same call can help, so the HTTP
//! layer can choose between `503 Retry-After` and a plain error.

/// Why an access token was refused by [`TokenKeys::verify`](super::TokenKeys::verify).
///
/// None of these is helped by retrying with the same token: the client must
/// log in again or use its refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed HS256 JWT of ours: too long, bad base64 or JSON,
    /// missing claims, unknown header fields.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match our key, or the header names another
    /// algorithm (including `none`).
    #[error("bad token signature")]
    BadSignature,
    /// Correctly signed, but `exp` is not after the caller's `now`.
    #[error("token expired")]
    Expired,
}

/// Errors of the password hasher, the signing keys and token issuance.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The hasher's queue is full. Retrying later helps: answer `503` with
    /// `Retry-After` rather than queueing more work.
    #[error("password hasher busy")]
    Busy,
    /// The hasher's worker threads are gone (they panicked). Retrying does
    /// not help; the process needs a restart.
    #[error("password hasher unavailable")]
    Unavailable,
    /// Hashing or verifying failed: the stored PHC string is malformed, names
    /// an unsupported algorithm, or asks for more resources than allowed.
    /// Retrying does not help: the stored hash must be fixed.
    #[error("password hash: {0}")]
    Hash(String),
    /// Invalid configuration (thread count, argon2 parameters) or a worker
    /// thread could not be spawned. Retrying does not help.
    #[error("auth config: {0}")]
    Config(String),
    /// The signing secret or its key file is unusable: too short, unreadable,
    /// not base64url, not writable. The message names the path. Retrying does
    /// not help until the file or setting is fixed.
    #[error("signing key: {0}")]
    Key(String),
    /// A token could not be signed. Should not happen with HS256; retrying
    /// does not help.
    #[error("token signing: {0}")]
    Sign(String),
    /// An access token was refused. Retrying with the same token does not
    /// help.
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl AuthError {
    /// Whether the same call may succeed if retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AuthError::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_busy_is_retryable() {
        assert!(AuthError::Busy.is_retryable());
        assert!(!AuthError::Unavailable.is_retryable());
        assert!(!AuthError::Hash("x".into()).is_retryable());
        assert!(!AuthError::Token(TokenError::Expired).is_retryable());
    }

    #[test]
    fn token_error_converts_and_displays() {
        let e: AuthError = TokenError::BadSignature.into();
        assert_eq!(e.to_string(), "bad token signature");
        assert_eq!(TokenError::Malformed.to_string(), "malformed token");
    }
}
