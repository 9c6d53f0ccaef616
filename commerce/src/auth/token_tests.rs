//! Tests of [`TokenKeys`]: issue/verify, refusals and the key file.

use std::os::unix::fs::PermissionsExt;

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: i64 = 1_700_000_000;

fn claims(exp: i64) -> Claims {
    Claims {
        sub: "0190b5c2-7f3a-7000-8000-000000000001".into(),
        email: "ada@example.com".into(),
        role: Role::Customer,
        iat: NOW,
        exp,
    }
}

fn keys() -> TokenKeys {
    TokenKeys::from_secret(SECRET).unwrap()
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn issue_verify_roundtrip() {
    let k = keys();
    let c = Claims {
        role: Role::Admin,
        ..claims(NOW + 900)
    };
    let token = k.issue(&c).unwrap();
    assert_eq!(k.verify(&token, NOW).unwrap(), c);
    assert_eq!(k.clone().verify(&token, NOW + 899).unwrap(), c);
}

#[test]
fn expiry_uses_the_callers_clock() {
    let k = keys();
    let token = k.issue(&claims(NOW + 60)).unwrap();
    assert!(k.verify(&token, NOW + 59).is_ok());
    assert_eq!(k.verify(&token, NOW + 60), Err(TokenError::Expired));
    assert_eq!(k.verify(&token, NOW + 61), Err(TokenError::Expired));
    // Long expired by the system clock, valid by the injected one.
    let old = k.issue(&claims(1_000)).unwrap();
    assert!(k.verify(&old, 999).is_ok());
}

#[test]
fn tampered_token_is_refused() {
    let k = keys();
    let token = k.issue(&claims(NOW + 60)).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = b64(&serde_json::to_string(&Claims {
        role: Role::Admin,
        ..claims(NOW + 60)
    })
    .unwrap());
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(k.verify(&forged, NOW), Err(TokenError::BadSignature));
    let first = if parts[2].starts_with('A') { "B" } else { "A" };
    let bad_sig = format!("{}.{}.{}{}", parts[0], parts[1], first, &parts[2][1..]);
    assert_eq!(k.verify(&bad_sig, NOW), Err(TokenError::BadSignature));
}

#[test]
fn wrong_key_is_refused() {
    let token = keys().issue(&claims(NOW + 60)).unwrap();
    let other = TokenKeys::from_secret(b"another-secret-of-at-least-32-bytes!").unwrap();
    assert_eq!(other.verify(&token, NOW), Err(TokenError::BadSignature));
}

#[test]
fn alg_none_and_other_algs_are_refused() {
    let k = keys();
    let payload = b64(&serde_json::to_string(&claims(NOW + 60)).unwrap());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"typ":"JWT"}"#,
    ] {
        let token = format!("{}.{payload}.", b64(header));
        assert!(k.verify(&token, NOW).is_err(), "{header}");
    }
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims(NOW + 60),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_eq!(k.verify(&hs512, NOW), Err(TokenError::BadSignature));
}

#[test]
fn malformed_and_oversized_tokens_are_refused() {
    let k = keys();
    for bad in [
        "",
        "a",
        "a.b",
        "a.b.c",
        "..",
        "a.b.c.d",
        "\u{0}.\u{0}.\u{0}",
    ] {
        assert_eq!(k.verify(bad, NOW), Err(TokenError::Malformed), "{bad:?}");
    }
    assert_eq!(
        k.verify(&"a".repeat(MAX_TOKEN_LEN + 1), NOW),
        Err(TokenError::Malformed)
    );
    let big = Claims {
        email: "x".repeat(MAX_TOKEN_LEN),
        ..claims(NOW + 60)
    };
    let token = k.issue(&big).unwrap();
    assert_eq!(
        k.verify(&token, NOW),
        Err(TokenError::Malformed),
        "signed but too long"
    );
}

#[test]
fn short_secret_is_rejected() {
    assert!(matches!(
        TokenKeys::from_secret(&SECRET[..31]),
        Err(AuthError::Key(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let r = TokenKeys::load_or_create(dir.path(), Some("too short"));
    assert!(matches!(r, Err(AuthError::Key(m)) if m.contains("configured")));
}

#[test]
fn load_or_create_creates_a_0600_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEY_FILE);
    let first = TokenKeys::load_or_create(dir.path(), None).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(URL_SAFE_NO_PAD.decode(text.trim()).unwrap().len(), 32);
    assert!(!dir.path().join(format!("{KEY_FILE}.tmp")).exists());

    let second = TokenKeys::load_or_create(dir.path(), None).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "not rewritten"
    );
    let token = first.issue(&claims(NOW + 60)).unwrap();
    assert!(second.verify(&token, NOW).is_ok(), "same key after reload");
}

#[test]
fn configured_secret_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = TokenKeys::load_or_create(dir.path(), None).unwrap();
    let configured = "a configured secret that is long enough";
    let k = TokenKeys::load_or_create(dir.path(), Some(configured)).unwrap();
    let token = k.issue(&claims(NOW + 60)).unwrap();
    assert!(
        TokenKeys::from_secret(configured.as_bytes())
            .unwrap()
            .verify(&token, NOW)
            .is_ok()
    );
    assert_eq!(from_file.verify(&token, NOW), Err(TokenError::BadSignature));
}

#[test]
fn invalid_key_file_is_an_error_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEY_FILE);
    for content in ["", "not*base64", &URL_SAFE_NO_PAD.encode([7u8; 16])] {
        std::fs::write(&path, content).unwrap();
        let r = TokenKeys::load_or_create(dir.path(), None);
        assert!(
            matches!(&r, Err(AuthError::Key(m)) if m.contains(KEY_FILE)),
            "{content:?}: {r:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
    }
    let key = URL_SAFE_NO_PAD.encode(SECRET);
    std::fs::write(&path, format!("  {key}\n")).unwrap();
    let token = keys().issue(&claims(NOW + 60)).unwrap();
    assert!(
        TokenKeys::load_or_create(dir.path(), None)
            .unwrap()
            .verify(&token, NOW)
            .is_ok()
    );
}
