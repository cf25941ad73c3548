//! An upstream that fails in the middle of a body: the client must see a broken transfer
//! (HTTP/1: the connection closes before the announced length or without the last chunk;
//! HTTP/2: the stream is reset), never an answer that looks complete.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the upstream frames the body it cuts.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length,
    Chunked,
}

const SENT: usize = 3000;

/// An upstream that answers 200, sends part of the body, then closes the connection.
async fn cutting_upstream(framing: Framing) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let part = "x".repeat(SENT);
                let out = match framing {
                    Framing::Length => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{part}",
                        SENT * 10
                    ),
                    Framing::Chunked => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{part}\r\n",
                        SENT
                    ),
                };
                let _ = s.write_all(out.as_bytes()).await;
                // Close before the body is complete (FIN: what was sent still arrives; a RST
                // could discard it, and the soak in bench/ covers resets).
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Whether an HTTP/1 response, read until the server closed, is complete by its own framing.
fn complete_http1(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    };
    if let Some(len) = header("content-length") {
        return body.len() >= len.parse::<usize>().unwrap();
    }
    if header("transfer-encoding").as_deref() == Some("chunked") {
        return body.ends_with("0\r\n\r\n");
    }
    // Close-delimited: the client cannot tell; the gateway must never answer like this.
    true
}

#[tokio::test]
async fn a_body_cut_upstream_reaches_the_client_broken() {
    for framing in [Framing::Length, Framing::Chunked] {
        let upstream = cutting_upstream(framing).await;
        let gw = start_gateway(upstream, "").await;
        let target = format!("/federate?{ORIGINAL_QUERY}");

        // HTTP/1.1.
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(&get(&target, &[&bearer(TOKEN)])).await.unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 8192];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(
            read.is_ok(),
            "{framing:?}: the gateway kept the connection open"
        );
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{framing:?}: {text:.200}");
        assert!(
            text.matches('x').count() >= SENT / 2,
            "{framing:?}: the part that arrived was passed on"
        );
        assert!(
            !complete_http1(&out),
            "{framing:?}: the cut body looks complete: {:.300}",
            text
        );

        // HTTP/2: the stream must end in an error, not in END_STREAM.
        let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(format!("http://{}{target}", gw.addr))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{framing:?}");
        let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
            .await
            .expect("the HTTP/2 stream ends");
        assert!(
            body.is_err(),
            "{framing:?}: HTTP/2 body completed: {} bytes",
            body.map(|b| b.to_bytes().len()).unwrap_or(0)
        );
    }
}

#[test]
fn the_completeness_check_can_fail() {
    let cases: &[(&str, &[u8], bool)] = &[
        (
            "full length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab",
            true,
        ),
        (
            "short length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab",
            false,
        ),
        (
            "last chunk",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
            true,
        ),
        (
            "no last chunk",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n2\r\nab\r\n",
            false,
        ),
    ];
    for (name, bytes, want) in cases {
        assert_eq!(complete_http1(bytes), *want, "{name}");
    }
}
