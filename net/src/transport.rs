//! The byte stream a connection runs on.

use std::future::Future;
use std::io;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

/// What [`crate::serve`] needs from a connection: owned-buffer reads and
/// whole-buffer writes (the shape of monoio's completion-based I/O).
pub trait Transport {
    /// Reads into the spare capacity of `buf` (after `buf.len()`), returning
    /// how many bytes were appended; 0 means end of stream.
    fn read(&mut self, buf: Vec<u8>) -> impl Future<Output = (io::Result<usize>, Vec<u8>)>;

    /// Writes all of `buf`.
    fn write_all(&mut self, buf: Vec<u8>) -> impl Future<Output = (io::Result<()>, Vec<u8>)>;

    /// Half-closes the write side (the peer reads end of stream).
    fn shutdown_write(&mut self) -> impl Future<Output = ()>;

    /// The client's IP address, when the transport has one.
    fn peer_ip(&self) -> Option<std::net::IpAddr> {
        None
    }
}

impl Transport for monoio::net::TcpStream {
    async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let len = buf.len();
        let (result, slice) = AsyncReadRent::read(self, buf.slice_mut(len..)).await;
        (result, slice.into_inner())
    }

    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (result, buf) = AsyncWriteRentExt::write_all(self, buf).await;
        (result.map(|_| ()), buf)
    }

    async fn shutdown_write(&mut self) {
        let _ = monoio::io::AsyncWriteRent::shutdown(self).await;
    }

    fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.peer_addr().ok().map(|a| a.ip())
    }
}

/// An in-memory transport: reads come from `input` in pieces of at most
/// `chunk` bytes, writes go to `output`. For tests and fuzzing.
#[derive(Debug, Default)]
pub struct MemoryTransport {
    /// Bytes the "client" sends.
    pub input: Vec<u8>,
    /// Read position in `input`.
    pub read_pos: usize,
    /// Largest piece one read returns (0 = unlimited).
    pub chunk: usize,
    /// Bytes the server wrote.
    pub output: Vec<u8>,
}

impl MemoryTransport {
    /// A transport that delivers `input` in pieces of `chunk` bytes.
    pub fn new(input: Vec<u8>, chunk: usize) -> Self {
        Self {
            input,
            chunk,
            ..Self::default()
        }
    }
}

impl Transport for MemoryTransport {
    async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let left = &self.input[self.read_pos..];
        let room = buf.capacity() - buf.len();
        let mut n = left.len().min(room);
        if self.chunk > 0 {
            n = n.min(self.chunk);
        }
        buf.extend_from_slice(&left[..n]);
        self.read_pos += n;
        (Ok(n), buf)
    }

    async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.output.extend_from_slice(&buf);
        (Ok(()), buf)
    }

    async fn shutdown_write(&mut self) {}
}
