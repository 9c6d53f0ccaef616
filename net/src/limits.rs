//! Limits on what a client controls: sizes, counts and times.

use std::time::Duration;

/// Limits enforced on every connection, with the status a violation gets.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Request line + headers, in bytes (431; 414 when the request line alone
    /// exceeds `max_uri_bytes`).
    pub max_header_bytes: usize,
    /// Header fields per request (431). At most [`HttpLimits::HARD_MAX_HEADERS`].
    pub max_headers: usize,
    /// Request target length in bytes (414).
    pub max_uri_bytes: usize,
    /// Decoded body length in bytes (413).
    pub max_body_bytes: usize,
    /// Time to receive a complete request head once its first byte arrived (408).
    pub header_read_timeout: Duration,
    /// Time to receive the body once the head is in (408).
    pub body_read_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests (closed).
    pub idle_timeout: Duration,
    /// Time to write a response to a slow reader (closed).
    pub write_timeout: Duration,
}

impl HttpLimits {
    /// Upper bound for `max_headers` (stack-allocated parse array).
    pub const HARD_MAX_HEADERS: usize = 128;
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
        }
    }
}
