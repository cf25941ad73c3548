//! The bytes of a connection before hyper reads them: a deadline for the first request, and
//! raw `"`, `<` and `>` in an HTTP/1 request target's query percent-encoded.
//!
//! Why: `curl -g 'https://site/federate?match[]={job="x"}'` sends `"` unencoded, as many
//! clients do and as Prometheus accepts. The `http` crate refuses `"`, `<` and `>` in a query,
//! so hyper answers 400 before any of our code runs. In the query these bytes have no meaning
//! of their own: form decoding gives the same text for `"` and `%22`, so encoding them
//! changes no selector and no allow decision. Nothing else is touched: the path, `#`, the
//! method, the headers and every other byte reach hyper's strict parser as sent.
//!
//! How it stays in step with hyper: request heads are found with `httparse`, the parser hyper
//! itself uses, with hyper's defaults (100 headers at most). After a head, the next request
//! starts right after it only when the head announces no body (`Content-Length`,
//! `Transfer-Encoding`), no upgrade and is not `CONNECT`; otherwise, and whenever a head does
//! not parse or grows past the header limit, every later byte passes unchanged and hyper
//! decides alone, exactly as without this layer.
//!
//! HTTP/2 cannot be helped here: its `:path` is HPACK-compressed and checked by `h2` with the
//! same `http` rules, so a raw `"` there resets the stream (see the README).
//!
//! The deadline: hyper's header timeout only starts once it knows the protocol, which it learns
//! from the first bytes; a client that connects (and finishes TLS) and then sends nothing
//! would hold a connection slot forever. Until the first head (HTTP/1) or the 24-byte preface
//! (HTTP/2) has arrived, a read past the deadline fails with `TimedOut`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Most headers in a request, as hyper's default.
const MAX_HEADERS: usize = 100;
/// Bytes a client must send (an HTTP/2 preface's length) before the first-bytes deadline ends.
const PREFACE_LEN: usize = 24;

/// What the start of the buffered bytes holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// A whole request head of `len` bytes, as it must reach hyper; whether a body or another
    /// protocol may follow it (then the rest of the connection passes unchanged).
    Head {
        len: usize,
        head: Vec<u8>,
        body_follows: bool,
    },
    /// Not yet a whole head.
    Partial,
    /// Not an HTTP/1 head we can follow (or too long): pass everything to hyper unchanged.
    Pass,
}

/// Finds the request head at the start of `buf` and percent-encodes its query's `"`, `<`, `>`.
pub fn scan(buf: &[u8], max_head: usize) -> Scan {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Scan::Partial,
        Ok(httparse::Status::Partial) | Err(_) => return Scan::Pass,
    };
    let Some(path) = req.path else {
        return Scan::Pass;
    };
    let body_follows = req.method == Some("CONNECT")
        || req.headers.iter().any(|h| {
            ["content-length", "transfer-encoding", "upgrade"]
                .iter()
                .any(|n| h.name.eq_ignore_ascii_case(n))
        });
    // `path` borrows from `buf`; its offset is where the target starts.
    let start = (path.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    let end = start + path.len();
    if buf.get(start..end) != Some(path.as_bytes()) {
        return Scan::Pass;
    }
    let mut head = Vec::with_capacity(len + 16);
    head.extend_from_slice(&buf[..start]);
    encode_target(path.as_bytes(), &mut head);
    head.extend_from_slice(&buf[end..len]);
    Scan::Head {
        len,
        head,
        body_follows,
    }
}

/// Appends the target with `"`, `<`, `>` between the first `?` and any `#` percent-encoded.
fn encode_target(target: &[u8], out: &mut Vec<u8>) {
    let mut in_query = false;
    for &b in target {
        match b {
            b'?' if !in_query => in_query = true,
            b'#' => in_query = false,
            _ => {}
        }
        match b {
            b'"' if in_query => out.extend_from_slice(b"%22"),
            b'<' if in_query => out.extend_from_slice(b"%3C"),
            b'>' if in_query => out.extend_from_slice(b"%3E"),
            b => out.push(b),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reading a request head.
    Head,
    /// Everything passes unchanged.
    Pass,
    /// The client closed its side.
    Eof,
}

/// A connection's read side with request targets made acceptable to hyper; writes pass.
#[derive(Debug)]
pub struct Intake<S> {
    inner: S,
    mode: Mode,
    /// Bytes read but not yet scanned.
    pending: BytesMut,
    /// Bytes ready for hyper.
    ready: BytesMut,
    max_head: usize,
    /// Runs until the first head or preface has arrived.
    deadline: Option<Pin<Box<Sleep>>>,
    received: usize,
    /// Whether `pending` may now hold a whole head: a head ends with a newline, so bytes
    /// without one cannot complete it (and a slow sender does not make us parse it again).
    rescan: bool,
}

impl<S> Intake<S> {
    /// Wraps an HTTP/1 (or not yet known) connection.
    pub fn new(inner: S, max_head: usize, first_bytes_timeout: Duration) -> Self {
        Self::with_mode(inner, Mode::Head, max_head, first_bytes_timeout)
    }

    /// Wraps a connection known to speak HTTP/2: nothing is rewritten, only the deadline runs.
    pub fn http2(inner: S, first_bytes_timeout: Duration) -> Self {
        Self::with_mode(inner, Mode::Pass, 0, first_bytes_timeout)
    }

    fn with_mode(inner: S, mode: Mode, max_head: usize, timeout: Duration) -> Self {
        Self {
            inner,
            mode,
            pending: BytesMut::new(),
            ready: BytesMut::new(),
            max_head,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            received: 0,
            rescan: true,
        }
    }

    fn pass_rest(&mut self) {
        self.mode = Mode::Pass;
        let rest = self.pending.split();
        self.ready.unsplit(rest);
    }

    /// Fails once the first-bytes deadline has passed; registers for wake-up otherwise.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let expired = self
            .deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready());
        if expired {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request head before the header read timeout",
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Intake<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(out.remaining());
                out.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            match this.mode {
                Mode::Eof => return Poll::Ready(Ok(())),
                Mode::Pass => {
                    if this.deadline.is_none() {
                        return Pin::new(&mut this.inner).poll_read(cx, out);
                    }
                    let before = out.filled().len();
                    match Pin::new(&mut this.inner).poll_read(cx, out) {
                        Poll::Ready(result) => {
                            this.received += out.filled().len() - before;
                            if this.received >= PREFACE_LEN || out.filled().len() == before {
                                this.deadline = None;
                            }
                            return Poll::Ready(result);
                        }
                        Poll::Pending => {
                            this.check_deadline(cx)?;
                            return Poll::Pending;
                        }
                    }
                }
                Mode::Head => {}
            }
            let scanned = if this.rescan || this.pending.len() >= this.max_head {
                scan(&this.pending, this.max_head)
            } else {
                Scan::Partial
            };
            this.rescan = false;
            match scanned {
                Scan::Head {
                    len,
                    head,
                    body_follows,
                } => {
                    this.deadline = None;
                    this.pending.advance(len);
                    this.ready.extend_from_slice(&head);
                    this.rescan = true;
                    if body_follows {
                        this.pass_rest();
                    }
                    continue;
                }
                Scan::Pass => {
                    this.deadline = None;
                    this.pass_rest();
                    continue;
                }
                Scan::Partial => {}
            }
            let mut chunk = [0u8; 4096];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Pending => {
                    this.check_deadline(cx)?;
                    return Poll::Pending;
                }
                Poll::Ready(result) => result?,
            }
            if buf.filled().is_empty() {
                this.pass_rest();
                this.mode = Mode::Eof;
                continue;
            }
            this.rescan = buf.filled().contains(&b'\n');
            this.pending.extend_from_slice(buf.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Intake<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
