//! The response a handler returns, and its wire encoding.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;

/// What a `101 Switching Protocols` response hands to the new protocol's
/// driver (for a WebSocket: the authenticated session).
pub type UpgradePayload = Arc<dyn Any + Send + Sync>;

/// An HTTP response. `Content-Length`, `Date` and, when closing,
/// `Connection: close` are added by the connection.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, if there is a body.
    pub content_type: Option<&'static str>,
    /// Further headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body bytes.
    pub body: Bytes,
    /// Ask the connection to close after this response.
    pub close: bool,
    /// Set on a `101`: the connection leaves HTTP after this response and
    /// [`crate::serve`] returns [`crate::Served::Upgraded`] with it.
    pub upgrade: Option<UpgradePayload>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Bytes::new(),
            close: false,
            upgrade: None,
        }
    }

    /// A `101 Switching Protocols` to `protocol` (the `upgrade` header),
    /// carrying `payload` to the protocol's driver.
    pub fn switching_protocols(protocol: &'static str, payload: UpgradePayload) -> Self {
        let mut r = Self::new(101)
            .with_header("upgrade", protocol)
            .with_header("connection", "upgrade");
        r.upgrade = Some(payload);
        r
    }

    /// Sets the body and its content type.
    pub fn with_body(mut self, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        self.content_type = Some(content_type);
        self.body = body.into();
        self
    }

    /// A `200` with a JSON body serialised from `value`.
    pub fn json<T: serde::Serialize>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status).with_body("application/json", body),
            Err(e) => crate::Problem::new(500, "internal", format!("encoding failed: {e}")).into(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: &'static str) -> Self {
        Self::new(status).with_body("text/plain", Bytes::from_static(body.as_bytes()))
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Appends the status line, headers and body to `out`. `head_only`
    /// (a HEAD request) keeps the `Content-Length` but leaves the body out.
    pub fn encode(&self, out: &mut Vec<u8>, connection: Connection, head_only: bool) {
        let mut code = itoa::Buffer::new();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(code.format(self.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\ndate: ");
        crate::date::append_http_date(out);
        if let Some(ct) = self.content_type {
            out.extend_from_slice(b"\r\ncontent-type: ");
            out.extend_from_slice(ct.as_bytes());
        }
        let no_body = self.status == 204 || self.status == 304 || (100..200).contains(&self.status);
        if !no_body {
            out.extend_from_slice(b"\r\ncontent-length: ");
            out.extend_from_slice(code.format(self.body.len()).as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            // Header values never carry CR/LF (response splitting).
            out.extend(value.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
        }
        match connection {
            Connection::Close => out.extend_from_slice(b"\r\nconnection: close"),
            Connection::KeepAlive => out.extend_from_slice(b"\r\nconnection: keep-alive"),
            Connection::Default => {}
        }
        out.extend_from_slice(b"\r\n\r\n");
        if !no_body && !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

/// The `Connection` header a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// None: HTTP/1.1 keep-alive by default.
    Default,
    /// `connection: close`; the connection ends after this response.
    Close,
    /// `connection: keep-alive`, for HTTP/1.0 clients that asked for it.
    KeepAlive,
}

/// The reason phrase of `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
