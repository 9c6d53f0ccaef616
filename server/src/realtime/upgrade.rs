//! The WebSocket opening handshake (RFC 6455 4.2): `GET /ws` with
//! `Upgrade: websocket`, `Connection: upgrade`, `Sec-WebSocket-Version: 13`
//! and a 16-byte `Sec-WebSocket-Key`, authenticated by a bearer header or
//! `?token=`. Anything else is refused with problem+json before the upgrade.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use rayltics_net::{Problem, Request, Response};

use rayltics_commerce::DomainError;
use rayltics_commerce::auth::Role;

use super::{Settings, Upgrade};
use crate::api::{ApiError, verify_token};
use crate::service::ShardState;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` for a client's key.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Checks the handshake headers; returns the client's key.
pub fn check(req: &Request) -> Result<&str, Response> {
    let has_token = |name: &str, token: &str| {
        req.header_str(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(Problem::new(
            426,
            "upgrade_required",
            "this endpoint speaks WebSocket: send Upgrade: websocket and Connection: upgrade",
        )
        .into_response()
        .with_header("upgrade", "websocket"));
    }
    if req.header_str("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Problem::new(
            426,
            "unsupported_websocket_version",
            "Sec-WebSocket-Version must be 13",
        )
        .into_response()
        .with_header("sec-websocket-version", "13"));
    }
    let key = req
        .header_str("sec-websocket-key")
        .map(str::trim)
        .filter(|k| STANDARD.decode(k).is_ok_and(|raw| raw.len() == 16))
        .ok_or_else(|| {
            Problem::new(
                400,
                "invalid_websocket_key",
                "Sec-WebSocket-Key must be 16 bytes in base64",
            )
            .into_response()
        })?;
    Ok(key)
}

/// `GET /ws`: a chat connection for the token's user.
pub fn chat(req: &Request, state: &ShardState) -> Response {
    let key = match check(req) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Some(token) = token(req).filter(|t| !t.is_empty()) else {
        return ApiError::from(DomainError::Unauthorized("missing bearer token or ?token="))
            .into_response();
    };
    match verify_token(state, &token) {
        Ok(claims) => switch(
            key,
            Upgrade::Chat {
                admin: claims.role == Role::Admin,
                user_id: claims.sub,
            },
        ),
        Err(e) => e.into_response(),
    }
}

/// `GET /ws/echo`: the conformance echo, when `realtime.echo_endpoint` is on.
pub fn echo(req: &Request, settings: &Settings) -> Response {
    if !settings.echo_endpoint {
        return Problem::not_found("no route for /ws/echo").into_response();
    }
    match check(req) {
        Ok(key) => switch(key, Upgrade::Echo),
        Err(r) => r,
    }
}

/// The `101` that hands the connection to the socket with `upgrade`.
pub fn switch(key: &str, upgrade: Upgrade) -> Response {
    Response::switching_protocols("websocket", Arc::new(upgrade))
        .with_header("sec-websocket-accept", accept_key(key))
}

/// The access token of a WebSocket request: the bearer header, else `?token=`.
pub fn token(req: &Request) -> Option<String> {
    if let Some(h) = req.header_str("authorization") {
        return h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .map(|t| t.trim().to_owned());
    }
    req.query_pairs()
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayltics_net::Method;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn refuses_incomplete_handshakes() {
        let plain = Request::new(Method::Get, "/ws", &[], b"");
        assert_eq!(check(&plain).unwrap_err().status, 426);
        let base = [
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert_eq!(
            check(&Request::new(Method::Get, "/ws", &base, b"")).unwrap(),
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
        let mut v8 = base;
        v8[2].1 = "8";
        assert_eq!(
            check(&Request::new(Method::Get, "/ws", &v8, b""))
                .unwrap_err()
                .status,
            426
        );
        let mut short = base;
        short[3].1 = "c2hvcnQ=";
        assert_eq!(
            check(&Request::new(Method::Get, "/ws", &short, b""))
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn token_from_header_or_query() {
        let h = Request::new(Method::Get, "/ws", &[("authorization", "Bearer abc")], b"");
        assert_eq!(token(&h).as_deref(), Some("abc"));
        let q = Request::new(Method::Get, "/ws?token=xyz", &[], b"");
        assert_eq!(token(&q).as_deref(), Some("xyz"));
        assert_eq!(token(&Request::new(Method::Get, "/ws", &[], b"")), None);
    }
}
