//! Blocking HTTP/1.1 + JSON calls for a scenario's setup and checks, outside
//! the measurement: one `Connection: close` request per call over a std
//! `TcpStream`, the answer read to the end and its body parsed as JSON.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

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
