//! Helpers shared by the integration tests that run the binary.

use std::io::{Read, Write};
use std::time::Duration;

/// A port the OS had free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The whole HTTP/1.1 response to `GET path`, or `None` while nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Everything a finished (or killed and reaped) child wrote to its piped stderr.
pub fn stderr_of(child: &mut std::process::Child) -> String {
    let mut out = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut out);
    }
    out
}
