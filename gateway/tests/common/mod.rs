//! A gateway in-process in front of a recording upstream, both on 127.0.0.1 with OS-chosen
//! ports, and a raw HTTP/1 client that sends exactly the bytes a test writes.

#![allow(clippy::unwrap_used, dead_code)]

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use federation_gateway::config::Config;
use federation_gateway::state::State;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TOKEN: &str = "portal-token-0123456789abcdef";
pub const OTHER_TOKEN: &str = "other-token-0123456789abcdef";
pub const ALLOWED: &str = r#"{job="project_usages",__name__=~"project_.*_usage"}"#;
/// The request an unchanged portal Prometheus sends with the original whitelist.
pub const ORIGINAL_QUERY: &str =
    "match%5B%5D=%7Bjob%3D%22project_usages%22%2C__name__%3D~%22project_.%2A_usage%22%7D";
pub const BODY: &str =
    "# TYPE project_vcpu_usage untyped\nproject_vcpu_usage{project_id=\"p\"} 1 1700000000000\n";

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
}

/// An upstream that records every request and answers with `BODY`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let record = Arc::clone(&record);
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    record.lock().unwrap().push(Seen {
                        method: req.method().to_string(),
                        uri: req.uri().to_string(),
                        headers: req.headers().clone(),
                    });
                    async move {
                        let mut resp =
                            Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                        resp.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("text/plain; version=0.0.4"),
                        );
                        resp.headers_mut().insert(
                            "x-upstream-secret",
                            http::HeaderValue::from_static("internal"),
                        );
                        Ok::<_, Infallible>(resp)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

/// Log output of every test in this binary, to check that no token is ever logged.
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let buf = Arc::clone(&buf);
            move || LogWriter(Arc::clone(&buf))
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_writer(writer)
            .json()
            .try_init();
        buf
    })
    .clone()
}

pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A running gateway; stops when dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    pub internal: SocketAddr,
    pub state: Arc<State>,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Writes the config (with `{upstream}`, `{dir}` filled in) and the two token files.
/// Shortens the written config's `header_read_timeout` to 1 s (the default is 10 s).
pub fn with_header_read_timeout_1s(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("limits: {max_match: 4}"), "{text}");
    std::fs::write(
        path,
        text.replace(
            "limits: {max_match: 4}",
            "limits: {max_match: 4, header_read_timeout: 1s}",
        ),
    )
    .unwrap();
}

pub fn write_config(
    dir: &std::path::Path,
    upstream: SocketAddr,
    extra_top_yaml: &str,
    extra_client_yaml: &str,
) -> PathBuf {
    std::fs::write(dir.join("portal.token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.join("other.token"), OTHER_TOKEN).unwrap();
    let config = format!(
        "{extra_top_yaml}listen: 127.0.0.1:0\ninternal_listen: 127.0.0.1:0\nupstream: {{url: 'http://{upstream}', timeout: 2s}}\n\
         limits: {{max_match: 4}}\nclients:\n  - name: portal\n    token_file: portal.token\n    allow:\n      - '{ALLOWED}'\n      - '{{__name__=~\"openstack_project_.+\"}}'\n{extra_client_yaml}"
    );
    let path = dir.join("gateway.yml");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(config.as_bytes()).unwrap();
    path
}

pub async fn start_gateway(upstream: SocketAddr, extra_client_yaml: &str) -> Gateway {
    start_gateway_in(
        tempfile::tempdir().unwrap(),
        upstream,
        "",
        extra_client_yaml,
    )
    .await
}

/// Starts a gateway whose config lives in `dir` (files the extra YAML names go there too).
pub async fn start_gateway_in(
    dir: tempfile::TempDir,
    upstream: SocketAddr,
    extra_top_yaml: &str,
    extra_client_yaml: &str,
) -> Gateway {
    let _ = logs();
    let path = write_config(dir.path(), upstream, extra_top_yaml, extra_client_yaml);
    let config = Config::load(&path).unwrap();
    let state = Arc::new(State::new(&path, config).unwrap());
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, internal_addr) = (public.local_addr().unwrap(), internal.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(federation_gateway::run(
        Arc::clone(&state),
        public,
        Some(internal),
        async {
            let _ = stopped.await;
        },
    ));
    Gateway {
        addr,
        internal: internal_addr,
        state,
        dir,
        stop: Some(stop),
    }
}

/// A parsed raw response.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Sends `request` as written and reads the response until the server closes.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    // One response is enough: stop once its body is complete.
                    if complete(&out) {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no complete response within 10 s: {:?}",
        String::from_utf8_lossy(&out)
    );
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Raw {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn complete(out: &[u8]) -> bool {
    let text = String::from_utf8_lossy(out);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    match len {
        Some(n) => body.len() >= n,
        None => {
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
                && body.ends_with("0\r\n\r\n")
        }
    }
}

/// A well-formed GET with the given target and extra header lines.
pub fn get(target: &str, headers: &[&str]) -> Vec<u8> {
    let mut r = format!("GET {target} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

pub fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}
