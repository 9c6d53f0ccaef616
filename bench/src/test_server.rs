//! A blocking HTTP/1.1 server for the crate's tests: every request head gets
//! a fixed response, optionally after a service time, optionally closing
//! the connection after a number of answers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Starts the server on a free loopback port; it lives as long as the test
/// process.
pub(crate) fn server(
    response: &'static [u8],
    close_after: Option<usize>,
    service: Duration,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || answer(stream, response, close_after, service));
        }
    });
    addr
}

fn answer(mut s: TcpStream, response: &[u8], close_after: Option<usize>, service: Duration) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut answered = 0;
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..p + 4);
            if !service.is_zero() {
                std::thread::sleep(service);
            }
            if s.write_all(response).is_err() {
                return;
            }
            answered += 1;
            if close_after.is_some_and(|c| answered >= c) {
                return;
            }
        }
    }
}
