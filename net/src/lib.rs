//! The HTTP/1.1 edge of a rayltics shard.
//!
//! Every shard accepts connections on the shared port and serves them here,
//! on its own thread: no state is shared between shards.
//!
//! # Layout
//! - [`conn`]: the per-connection loop: read, parse (httparse), enforce
//!   [`limits`], frame the body (Content-Length or chunked, `Expect:
//!   100-continue`), call the [`Handler`], write responses in order
//!   (pipelining), keep-alive / `Connection: close`, timeouts, drain.
//! - [`request`] / [`response`]: the request a handler sees and the response
//!   it returns; [`date`] caches the `Date` header per thread.
//! - [`router`]: method + path-pattern matching with `{param}` captures.
//! - [`problem`]: RFC 9457 problem+json, the one error shape of the API.
//! - [`shutdown`]: a shard-local drain signal.
//! - A handler may answer `101 Switching Protocols` with an upgrade
//!   payload ([`Response::switching_protocols`]): `serve` then writes it and
//!   returns [`Served::Upgraded`], handing the connection to its caller.
//! - [`transport`]: the byte stream a connection runs on (TCP, or memory in
//!   tests and fuzzing).
//!
//! # A request's path
//! `conn::serve` reads into a per-connection buffer, parses a head, checks
//! the limits (414 URI, 431 headers, 413 body, 400 malformed, 408 slow
//! client), reads the body, and awaits `Handler::handle(&Request)`. While the
//! buffer still holds further pipelined requests their responses accumulate
//! in one write buffer; it is flushed when the input runs dry, so a burst of
//! pipelined requests costs one `write`.

pub mod conn;
pub mod date;
pub mod limits;
pub mod problem;
pub mod request;
pub mod response;
pub mod router;
pub mod shutdown;
pub mod transport;

pub use conn::{Handler, Served, serve};
pub use limits::HttpLimits;
pub use problem::Problem;
pub use request::{Method, Request};
pub use response::{Response, UpgradePayload};
pub use router::{Match, Params, Router};
pub use shutdown::Shutdown;
pub use transport::Transport;
