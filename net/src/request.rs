//! The request a handler sees.

use std::ops::Range;

/// Request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// HEAD (served by GET routes, without the body)
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// Anything else (answered 405 / 501 by the router's user).
    Other,
}

impl Method {
    /// Parses a method token.
    pub fn parse(token: &str) -> Self {
        match token {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            _ => Self::Other,
        }
    }

    /// The method token.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Other => "OTHER",
        }
    }
}

/// A parsed request. Reused across the requests of one connection, so
/// steady-state keep-alive traffic allocates nothing here.
#[derive(Debug, Default)]
pub struct Request {
    pub(crate) method: Option<Method>,
    pub(crate) head: Vec<u8>,
    pub(crate) path: Range<usize>,
    pub(crate) query: Option<Range<usize>>,
    pub(crate) headers: Vec<(Range<usize>, Range<usize>)>,
    pub(crate) http10: bool,
    pub(crate) body: Vec<u8>,
    pub(crate) peer: Option<std::net::IpAddr>,
}

impl Request {
    /// Builds a request by hand (tests, internal calls).
    pub fn new(method: Method, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        let mut req = Self {
            method: Some(method),
            ..Self::default()
        };
        req.head.extend_from_slice(target.as_bytes());
        let (path_end, query) = match target.find('?') {
            Some(q) => (q, Some(q + 1..target.len())),
            None => (target.len(), None),
        };
        req.path = 0..path_end;
        req.query = query;
        for (name, value) in headers {
            let n0 = req.head.len();
            req.head.extend_from_slice(name.as_bytes());
            let v0 = req.head.len();
            req.head.extend_from_slice(value.as_bytes());
            req.headers.push((n0..v0, v0..req.head.len()));
        }
        req.body.extend_from_slice(body);
        req
    }

    /// Sets the client address (tests, internal calls).
    pub fn with_peer(mut self, ip: std::net::IpAddr) -> Self {
        self.peer = Some(ip);
        self
    }

    /// The client's IP address, when known.
    pub fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.peer
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Other)
    }

    /// The path (before `?`), as sent (not percent-decoded).
    pub fn path(&self) -> &str {
        std::str::from_utf8(&self.head[self.path.clone()]).unwrap_or("")
    }

    /// The query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.query
            .clone()
            .map(|r| std::str::from_utf8(&self.head[r]).unwrap_or(""))
    }

    /// Decoded query parameters, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let Some(q) = self.query() else {
            return Vec::new();
        };
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode_query(k), decode_query(v))
            })
            .collect()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| self.head[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &self.head[v.clone()])
    }

    /// The first value of header `name` as UTF-8 text.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|(n, v)| (&self.head[n.clone()], &self.head[v.clone()]))
    }

    /// The decoded body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether the request was HTTP/1.0.
    pub fn is_http10(&self) -> bool {
        self.http10
    }

    pub(crate) fn clear(&mut self) {
        self.method = None;
        self.head.clear();
        self.headers.clear();
        self.query = None;
        self.path = 0..0;
        self.http10 = false;
        self.body.clear();
    }
}

fn decode_query(s: &str) -> String {
    let plus_decoded = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8_lossy()
        .into_owned()
}
