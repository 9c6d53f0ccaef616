//! Opaque refresh tokens: `rt1.{user_id}.{family_id}.{secret}`.
//!
//! `user_id` and `family_id` are ids without dots (UUIDs) that let the server
//! find the token family without a secondary index; `secret` is 32 random
//! bytes, base64url without padding (43 characters). The server stores only
//! [`RefreshToken::digest`] and compares digests with [`digest_matches`].

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "rt1.";
const SECRET_BYTES: usize = 32;
const SECRET_CHARS: usize = 43;
const MAX_ID_LEN: usize = 128;
const MAX_TOKEN_LEN: usize = 512;

/// A parsed or freshly minted refresh token.
///
/// `Debug` hides the secret; `Display` writes the full token for the client.
/// Compare tokens from clients by digest ([`digest_matches`]), not with `==`.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// Owner's user id (no dots).
    pub user_id: String,
    /// Token family (one login session and its rotations; no dots).
    pub family_id: String,
    /// 32 random bytes, base64url without padding.
    pub secret: String,
}

impl RefreshToken {
    /// A token with a fresh random secret. `user_id` and `family_id` must be
    /// 1-128 characters of `[A-Za-z0-9_-]` (UUIDs are), else the token will
    /// not [`parse`](Self::parse) back.
    pub fn new(user_id: &str, family_id: &str) -> Self {
        debug_assert!(
            valid_id(user_id) && valid_id(family_id),
            "bad refresh token ids"
        );
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self {
            user_id: user_id.to_owned(),
            family_id: family_id.to_owned(),
            secret: URL_SAFE_NO_PAD.encode(bytes),
        }
    }

    /// Parses a token from a client, strictly: the `rt1.` prefix, exactly
    /// three dot-separated parts after it, ids of 1-128 base64url characters,
    /// a secret that is the canonical encoding of 32 bytes, at most 512 bytes
    /// in all. Anything else is `None`; never panics.
    pub fn parse(s: &str) -> Option<RefreshToken> {
        if s.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut parts = s.strip_prefix(PREFIX)?.split('.');
        let (user_id, family_id, secret) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !valid_id(user_id) || !valid_id(family_id) {
            return None;
        }
        if secret.len() != SECRET_CHARS || !secret.bytes().all(is_b64url) {
            return None;
        }
        // Rejects non-canonical trailing bits, so one secret has one spelling.
        let mut buf = [0u8; SECRET_BYTES + 3];
        if URL_SAFE_NO_PAD.decode_slice(secret, &mut buf).ok()? != SECRET_BYTES {
            return None;
        }
        Some(RefreshToken {
            user_id: user_id.to_owned(),
            family_id: family_id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// SHA-256 of the secret's text: what the server stores and compares.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }
}

/// Compares two digests in constant time.
pub fn digest_matches(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

impl fmt::Display for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}.{}.{}",
            self.user_id, self.family_id, self.secret
        )
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshToken")
            .field("user_id", &self.user_id)
            .field("family_id", &self.family_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(is_b64url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const USER: &str = "0190b5c2-7f3a-7000-8000-000000000001";
    const FAMILY: &str = "0190b5c2-7f3a-7000-8000-0000000000ff";

    #[test]
    fn roundtrip_and_shape() {
        let t = RefreshToken::new(USER, FAMILY);
        let s = t.to_string();
        assert!(s.starts_with(&format!("rt1.{USER}.{FAMILY}.")));
        assert_eq!(t.secret.len(), 43);
        assert_eq!(RefreshToken::parse(&s), Some(t.clone()));
        assert_ne!(RefreshToken::new(USER, FAMILY).secret, t.secret);
        assert!(
            !format!("{t:?}").contains(&t.secret),
            "Debug leaks the secret"
        );
    }

    #[test]
    fn digest_is_sha256_of_secret_and_compares() {
        let t = RefreshToken::new(USER, FAMILY);
        let d = t.digest();
        let expected: [u8; 32] = Sha256::digest(t.secret.as_bytes()).into();
        assert_eq!(d, expected);
        assert!(digest_matches(&d, &t.clone().digest()));
        assert!(!digest_matches(
            &d,
            &RefreshToken::new(USER, FAMILY).digest()
        ));
    }

    #[test]
    fn malformed_strings_are_rejected() {
        let good = RefreshToken::new(USER, FAMILY).to_string();
        let secret = &good[good.len() - 43..];
        let long_id = "a".repeat(129);
        let cases = [
            String::new(),
            "rt1.".into(),
            good.replacen("rt1.", "rt2.", 1),
            good.replacen("rt1.", "RT1.", 1),
            format!("{good}."),
            format!("{good}.x"),
            format!(" {good}"),
            good[..good.len() - 1].to_string(),
            format!("{good}A"),
            format!("rt1..{FAMILY}.{secret}"),
            format!("rt1.{USER}..{secret}"),
            format!("rt1.{USER}.{FAMILY}."),
            format!("rt1.{long_id}.{FAMILY}.{secret}"),
            format!("rt1.{USER}.{FAMILY}.{}+", &secret[..42]),
            format!("rt1.{USER}.{FAMILY}.{}=", &secret[..42]),
            format!("rt1.us\u{e9}r.{FAMILY}.{secret}"),
            format!("rt1.{USER}.{FAMILY}.{}B", "A".repeat(42)), // non-canonical tail
        ];
        for case in &cases {
            assert_eq!(RefreshToken::parse(case), None, "{case:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = RefreshToken::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_near_misses(s in "rt1\\.[A-Za-z0-9_.=+/-]{0,200}") {
            if let Some(t) = RefreshToken::parse(&s) {
                prop_assert_eq!(t.to_string(), s);
            }
        }

        #[test]
        fn parse_inverts_display(user in "[A-Za-z0-9_-]{1,128}", family in "[A-Za-z0-9_-]{1,128}") {
            let t = RefreshToken::new(&user, &family);
            prop_assert_eq!(RefreshToken::parse(&t.to_string()), Some(t));
        }
    }
}
