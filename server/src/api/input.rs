//! Request bodies and query strings: parsing and field rules.
//!
//! Malformed JSON is 400 `bad_request`; JSON of the wrong shape or a field
//! outside its rule is 422 `validation_failed` with the field named.

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use rayltics_commerce::DomainError;
use rayltics_net::{Problem, Request};

use super::ApiError;

/// Most lines in one order.
pub(super) const MAX_ORDER_LINES: usize = 100;
/// Most units of one line, cart line or purchase.
pub(super) const MAX_LINE_QUANTITY: u32 = 10_000;
/// Longest `Idempotency-Key`.
pub(super) const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Parses the JSON body into `T`.
pub(super) fn json<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    if let Some(ct) = req.header_str("content-type") {
        let media = ct.split(';').next().unwrap_or_default().trim();
        if !media.eq_ignore_ascii_case("application/json") && !media.ends_with("+json") {
            return Err(Problem::new(
                415,
                "unsupported_media_type",
                format!("expected application/json, got {media:?}"),
            )
            .into());
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(req.body());
    match serde_path_to_error::deserialize(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_data() {
                let at = if path == "." {
                    String::new()
                } else {
                    format!("{path}: ")
                };
                Err(DomainError::invalid(format!("{at}{}", strip_position(&inner))).into())
            } else {
                Err(Problem::bad_request(format!("malformed JSON body: {inner}")).into())
            }
        }
    }
}

/// serde's message without " at line L column C".
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// A text field: trimmed length within `min..=max` characters.
pub(super) fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.trim().chars().count();
    if n < min || value.chars().count() > max {
        return Err(DomainError::invalid(if min > 0 && n == 0 {
            format!("{field}: must not be empty")
        } else {
            format!("{field}: must be {min} to {max} characters")
        })
        .into());
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(
            DomainError::invalid(format!("{field}: must not contain control characters")).into(),
        );
    }
    Ok(())
}

/// An integer within `min..=max`.
pub(super) fn range(field: &str, value: i64, min: i64, max: i64) -> Result<(), ApiError> {
    if value < min || value > max {
        return Err(DomainError::invalid(format!("{field}: must be within {min}..={max}")).into());
    }
    Ok(())
}

/// A SKU: 1-64 characters of `A-Z a-z 0-9 . _ -`.
pub(super) fn sku(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(DomainError::invalid(format!(
            "{field}: must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-'"
        ))
        .into());
    }
    Ok(())
}

/// An ISO 4217-style currency code: three upper-case letters.
pub(super) fn currency(value: &str) -> Result<(), ApiError> {
    if value.len() != 3 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(
            DomainError::invalid("currency: must be three upper-case letters, e.g. USD").into(),
        );
    }
    Ok(())
}

/// An email address, lower-cased.
pub(super) fn email(value: &str) -> Result<String, ApiError> {
    let e = value.trim().to_lowercase();
    let ok = (3..=254).contains(&e.len())
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if !ok {
        return Err(DomainError::invalid("email: must be a valid email address").into());
    }
    Ok(e)
}

/// The `Idempotency-Key` header (required).
pub(super) fn idempotency_key(req: &Request) -> Result<String, ApiError> {
    let key = req.header_str("idempotency-key").ok_or_else(|| {
        DomainError::invalid("Idempotency-Key: the header is required on this request")
    })?;
    let ok =
        (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(DomainError::invalid(format!(
            "Idempotency-Key: must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        ))
        .into());
    }
    Ok(key.to_owned())
}

/// sha256 of the method, path and body: "the same request" for
/// idempotency.
pub(super) fn fingerprint(req: &Request) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(req.method().as_str().as_bytes());
    h.update(b" ");
    h.update(req.path().as_bytes());
    h.update(b"\n");
    h.update(req.body());
    h.finalize().into()
}

/// The query string's pairs, each name at most once.
pub(super) fn query(req: &Request, known: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = req.query_pairs();
    for (i, (k, _)) in pairs.iter().enumerate() {
        if !known.contains(&k.as_str()) {
            return Err(DomainError::invalid(format!(
                "{k}: unknown query parameter (known: {})",
                known.join(", ")
            ))
            .into());
        }
        if pairs[..i].iter().any(|(p, _)| p == k) {
            return Err(DomainError::invalid(format!("{k}: given more than once")).into());
        }
    }
    Ok(pairs)
}

/// `?limit=`: default 20, 1..=100.
pub(super) fn limit(pairs: &[(String, String)]) -> Result<usize, ApiError> {
    match get(pairs, "limit") {
        None => Ok(20),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(DomainError::invalid("limit: must be an integer within 1..=100").into()),
        },
    }
}

/// A query parameter.
pub(super) fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An integer query parameter.
pub(super) fn get_i64(pairs: &[(String, String)], name: &str) -> Result<Option<i64>, ApiError> {
    get(pairs, name)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| DomainError::invalid(format!("{name}: must be an integer")).into())
        })
        .transpose()
}
