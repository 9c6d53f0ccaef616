//! Blocking HTTP/1.1 + JSON calls for a scenario's setup and checks, outside
//! the measurement: one `Connection: close` request per call over a std
//! `TcpStream`, the answer read to the end and its body parsed as JSON.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Password of the registered bench users.
const USER_PASSWORD: &str = "bench-password-1";
/// Threads registering users at setup (password hashing is the server's cost).
const SETUP_THREADS: usize = 8;

/// A JSON API client for one server.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    addr: SocketAddr,
    /// The `Host` header.
    host: String,
    timeout: Duration,
}

impl Api {
    pub(crate) fn new(addr: SocketAddr, host: &str) -> Self {
        Self {
            addr,
            host: host.to_string(),
            timeout: Duration::from_secs(30),
        }
    }

    /// `method path` with an optional bearer token and JSON body: the status
    /// and the JSON answer (`Null` when the body is empty or not JSON).
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        let what = || format!("{method} {path} on {}", self.addr);
        let mut s = TcpStream::connect_timeout(&self.addr, self.timeout).with_context(what)?;
        s.set_read_timeout(Some(self.timeout)).with_context(what)?;
        s.write_all(req.as_bytes()).with_context(what)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).with_context(what)?;
        let (status, body) = parse_response(&raw).with_context(what)?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// [`Self::call`], failing unless the answer has status `want`.
    pub(crate) fn expect(
        &self,
        want: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.call(method, path, token, body)?;
        if status != want {
            bail!("{method} {path}: status {status} (expected {want}): {v}");
        }
        Ok(v)
    }
}

/// A registered bench user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) id: String,
    /// Its access token.
    pub(crate) token: String,
}

fn str_field<'a>(v: &'a Value, field: &str) -> anyhow::Result<&'a str> {
    v[field]
        .as_str()
        .with_context(|| format!("no string {field:?} in {v}"))
}

/// Logs `email` in: its access token.
pub(crate) fn login(api: &Api, email: &str, password: &str) -> anyhow::Result<String> {
    let v = api.expect(
        200,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({"email": email, "password": password})),
    )?;
    Ok(str_field(&v, "access_token")?.to_string())
}

/// Registers `bench-{setup_id}-{i}@bench.test` for `i` in `0..n`, a few at
/// a time; the users in order.
pub(crate) fn register_users(api: &Api, setup_id: &str, n: usize) -> anyhow::Result<Vec<User>> {
    let register = |i: usize| -> anyhow::Result<User> {
        let body = json!({
            "email": format!("bench-{setup_id}-{i}@bench.test"),
            "password": USER_PASSWORD,
            "name": format!("bench user {i}"),
        });
        let v = api
            .expect(201, "POST", "/api/v1/auth/register", None, Some(&body))
            .with_context(|| format!("registering user {i}"))?;
        Ok(User {
            id: str_field(&v["user"], "id")?.to_string(),
            token: str_field(&v, "access_token")?.to_string(),
        })
    };
    let threads = SETUP_THREADS.min(n).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| register(i).map(|u| (i, u)))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut users = vec![None; n];
        for h in handles {
            let part = h
                .join()
                .map_err(|_| anyhow::anyhow!("a setup thread panicked"))??;
            for (i, u) in part {
                users[i] = Some(u);
            }
        }
        Ok(users.into_iter().flatten().collect())
    })
}

/// Status and body of a complete response (`Content-Length`, chunked, or
/// up to the end).
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(raw).context("malformed response")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => bail!("truncated response head"),
    };
    let status = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let rest = &raw[n..];
    if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let (used, size) = match httparse::parse_chunk_size(&rest[pos..]) {
                Ok(httparse::Status::Complete(c)) => c,
                _ => bail!("malformed chunked body"),
            };
            pos += used;
            if size == 0 {
                return Ok((status, body));
            }
            let end = pos + size as usize;
            body.extend_from_slice(rest.get(pos..end).context("truncated chunk")?);
            pos = end + 2;
        }
    }
    let body = match header("content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(len) => rest.get(..len).context("truncated body")?,
        None => rest,
    };
    Ok((status, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        let (s, b) =
            parse_response(b"HTTP/1.1 201 Created\r\nContent-Length: 7\r\n\r\n{\"a\":1}").unwrap();
        assert_eq!((s, b.as_slice()), (201, &b"{\"a\":1}"[..]));
        let (s, b) = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":2}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"{\"a\":2}"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab").is_err());
    }
}
