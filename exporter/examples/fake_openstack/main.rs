//! A fake Keystone + Nova serving a large generated cloud, for benchmarking the OpenStack
//! source (`bench/openstack.sh`). Not for tests of behaviour: those use the small fake in
//! `src/sources/openstack/tests/fake.rs`.
//!
//! - [`cloud`]: the generated projects and servers (seeded, reproducible).
//! - [`templates`]: the recorded responses every answer is built from.
//! - [`keystone`], [`nova`]: the answers, with Nova's window and paging rules.
//! - [`stats`]: requests, bytes and build time per endpoint, usage windows asked.
//! - [`faults`]: fault injection for the soak (`bench/soak.sh`); off by default.
//!
//! ```sh
//! cargo run --release -p site-exporter --example fake_openstack -- --projects 10000 --servers 200000
//! ```
//!
//! Prints one JSON line when ready (`listen`, `auth_url`, sizes). Keystone and Nova share
//! the one address (the catalog says so). `GET /_stats` returns the statistics as JSON,
//! `GET /_totals?start=&end=` the fake's own vCPU-hours for a window (`&projects=1` adds each
//! project's totals as the exporter's counters define them), `GET`/`POST /_faults` the fault
//! injection; none of them is counted or faulted. On SIGINT or SIGTERM the statistics are
//! printed to standard output.

mod cloud;
mod faults;
mod keystone;
mod nova;
mod stats;
mod templates;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::{Request, Response};
use serde_json::{json, Value};

use cloud::{Cloud, Params as CloudParams, Rng};
use faults::{Fault, Faults};
use nova::{param, BadRequest, Params};
use stats::{Served, Stats};
use templates::Templates;

/// Fake Keystone + Nova with a generated cloud, bound to loopback.
#[derive(Debug, Parser)]
struct Args {
    /// Projects (all in domain "elixir").
    #[arg(long, default_value_t = 10_000)]
    projects: usize,
    /// Servers ever launched, deleted ones included.
    #[arg(long, default_value_t = 200_000)]
    servers: usize,
    /// Share of servers still existing at start-up.
    #[arg(long, default_value_t = 0.25)]
    live_fraction: f64,
    /// Launches spread uniformly over this many days before start-up.
    #[arg(long, default_value_t = 400)]
    history_days: u64,
    /// Share of servers launched (and of live ones deleted) during the churn window.
    #[arg(long, default_value_t = 0.01)]
    churn_fraction: f64,
    /// Churn window after start-up.
    #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
    churn_window: std::time::Duration,
    /// Nova's `[api] max_limit` (largest page).
    #[arg(long, default_value_t = 1000)]
    max_limit: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of API requests answered with a fault (0: none, the default; see `faults`).
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Fault kinds drawn from, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    fault_kinds: String,
    /// Delay of a `slow` fault, in seconds.
    #[arg(long, default_value_t = 3.0)]
    fault_slow_seconds: f64,
    /// Where to listen: a loopback address, or any address together with `--public-url`.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The base URL the catalog names (`http://<listen address>` by default). Needed for a
    /// non-loopback `--listen`: in a container on a compose network, its service name there
    /// (the container tests run it so, since a container cannot reach the host's loopback).
    #[arg(long)]
    public_url: Option<String>,
}

struct Fake {
    cloud: Cloud,
    templates: Templates,
    tokens: Mutex<HashSet<String>>,
    rng: Mutex<Rng>,
    stats: Mutex<Stats>,
    faults: Faults,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.listen.ip().is_loopback() || args.public_url.is_some(),
        "--listen {} is not a loopback address: give --public-url too (the URL clients reach it by)",
        args.listen
    );
    if let Some(url) = &args.public_url {
        anyhow::ensure!(
            url.starts_with("http://") && !url.ends_with('/'),
            "--public-url {url}: want http://host:port, without a trailing slash"
        );
    }
    anyhow::ensure!(args.projects > 0, "--projects must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.fault_rate),
        "--fault-rate must be in [0, 1]"
    );
    anyhow::ensure!(
        args.fault_slow_seconds.is_finite() && (0.0..3600.0).contains(&args.fault_slow_seconds),
        "--fault-slow-seconds must be in [0, 3600)"
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let started = Instant::now();
    let base = args.public_url.clone().unwrap_or(format!("http://{addr}"));
    let templates = Templates::new(base.clone(), args.max_limit.max(1));
    let now0 = unix_now() as i64;
    let cloud = Cloud::generate(
        &CloudParams {
            projects: args.projects,
            servers: args.servers,
            live_fraction: args.live_fraction,
            history: args.history_days as i64 * 86_400,
            churn_fraction: args.churn_fraction,
            churn_window: args.churn_window.as_secs() as i64,
            seed: args.seed,
            now0,
        },
        templates.flavors.len(),
    );
    println!(
        "{}",
        json!({
            "listen": addr.to_string(),
            "auth_url": format!("{base}/v3"),
            "domains": cloud.domains.iter().map(|d| (d.name.clone(), d.id.clone())).collect::<std::collections::BTreeMap<_, _>>(),
            "projects": cloud.projects.len(),
            "servers": cloud.servers.len(),
            "live_now": cloud.live_at(cloud.now0),
            "now0": cloud.now0,
            "generated_seconds": started.elapsed().as_secs_f64(),
        })
    );
    let fake = Arc::new(Fake {
        cloud,
        templates,
        tokens: Mutex::default(),
        rng: Mutex::new(Rng::new(args.seed ^ 0xabcdef)),
        stats: Mutex::default(),
        faults: Faults::new(
            args.fault_rate,
            faults::parse_kinds(&args.fault_kinds).map_err(anyhow::Error::msg)?,
            std::time::Duration::from_secs_f64(args.fault_slow_seconds),
            args.seed,
        ),
    });
    let accept = {
        let fake = Arc::clone(&fake);
        async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // With faults on, a connection we give up on ends with RST, as a crashed
                // server's or a proxy's would (the `reset`, `cut` and Keystone-down faults).
                if fake.faults.enabled() {
                    let _ = stream.set_zero_linger();
                }
                let fake = Arc::clone(&fake);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let fake = Arc::clone(&fake);
                        async move { fake.handle(req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        () = accept => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!("{}", fake.stats_json());
    Ok(())
}

/// `key=value&...`, percent-decoded, in request order.
fn parse_query(q: Option<&str>) -> Params {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response body: whole, or cut after its first part (the connection is then aborted, so the
/// client sees fewer bytes than `Content-Length` announced).
#[derive(Debug)]
enum Body {
    Whole(Option<Bytes>),
    Cut(Option<Bytes>),
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(match self.get_mut() {
            Body::Whole(b) => b.take().map(|b| Ok(Frame::data(b))),
            Body::Cut(b) => Some(b.take().map(Frame::data).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut by a fault")
            })),
        })
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Body::Whole(b) => {
                http_body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len()) as u64)
            }
            Body::Cut(_) => http_body::SizeHint::default(),
        }
    }
}

fn respond(status: u16, body: Vec<u8>, headers: &[(&str, String)]) -> Response<Body> {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Body::Whole(Some(Bytes::from(body))))
        .unwrap_or_else(|_| Response::new(Body::Whole(None)))
}

/// The connection dropped on purpose (the `reset` faults).
fn reset() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by a fault")
}

/// What a route produced: endpoint name for the statistics, status, body, extra headers and
/// the usage window it answered.
struct Answer {
    endpoint: &'static str,
    status: u16,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    window: Option<(String, String, u64)>,
}

impl Answer {
    fn json(endpoint: &'static str, status: u16, doc: &Value) -> Answer {
        Answer {
            endpoint,
            status,
            body: serde_json::to_vec(doc).unwrap_or_default(),
            headers: Vec::new(),
            window: None,
        }
    }

    fn text(endpoint: &'static str, text: String) -> Answer {
        Answer {
            endpoint,
            status: 200,
            body: text.into_bytes(),
            headers: Vec::new(),
            window: None,
        }
    }

    fn bad(endpoint: &'static str, e: &BadRequest) -> Answer {
        Answer::text(endpoint, e.body()).with_status(400)
    }

    fn with_status(mut self, status: u16) -> Answer {
        self.status = status;
        self
    }
}

impl Fake {
    fn stats_json(&self) -> Value {
        self.stats
            .lock()
            .map(|s| s.to_json())
            .unwrap_or_else(|_| json!({}))
    }

    /// One request: an admin endpoint, an injected fault, or the route's answer. `Err` drops
    /// the connection (the `reset` faults).
    async fn handle(
        &self,
        req: Request<hyper::body::Incoming>,
    ) -> Result<Response<Body>, std::io::Error> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let params = parse_query(req.uri().query());
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let token = header("x-auth-token");
        let mv_header =
            header("x-openstack-nova-api-version").or_else(|| header("openstack-api-version"));
        // Drain the body (the token request's credentials are not checked).
        let _ = req.into_body().collect().await;
        if let Some(admin) = self.admin(method.as_str(), &path, &params) {
            return Ok(admin);
        }
        let fault = self.faults.draw(&path);
        match fault {
            Some(Fault::Reset | Fault::KeystoneDown) => return Err(reset()),
            Some(Fault::Status(code)) => {
                let doc = json!({"error": {"code": code, "message": "injected fault", "title": "Injected"}});
                return Ok(respond(code, doc.to_string().into_bytes(), &[]));
            }
            Some(Fault::TooMany) => {
                let doc = json!({"overLimit": {"code": 429, "message": "injected fault"}});
                let retry = [("retry-after", "1".to_owned())];
                return Ok(respond(429, doc.to_string().into_bytes(), &retry));
            }
            Some(Fault::Malformed) => {
                return Ok(respond(200, faults::MALFORMED.as_bytes().to_vec(), &[]))
            }
            Some(Fault::ExpireToken) => {
                if let Ok(mut set) = self.tokens.lock() {
                    set.clear();
                }
                let a = unauthorized();
                return Ok(respond(a.status, a.body, &[]));
            }
            Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
            _ => {}
        }
        let now = unix_now();
        let authorized = token.is_some_and(|t| {
            self.tokens
                .lock()
                .map(|set| set.contains(&t))
                .unwrap_or(false)
        });
        let mv = nova::microversion(mv_header.as_deref());
        let mut answer = self.route(method.as_str(), &path, &params, authorized, mv, now);
        if path.starts_with("/v2.1/") {
            let v = format!("{}.{}", mv.0, mv.1);
            answer
                .headers
                .push(("openstack-api-version", format!("compute {v}")));
            answer.headers.push(("x-openstack-nova-api-version", v));
        }
        match fault {
            Some(Fault::Truncated) => {
                let half = faults::half(&answer.body);
                return Ok(respond(answer.status, half, &answer.headers));
            }
            Some(Fault::Cut) => {
                let full = answer.body.len().to_string();
                let mut r = respond(answer.status, Vec::new(), &answer.headers);
                if let Ok(v) = http::HeaderValue::from_str(&full) {
                    r.headers_mut().insert(http::header::CONTENT_LENGTH, v);
                }
                *r.body_mut() = Body::Cut(Some(Bytes::from(faults::half(&answer.body))));
                return Ok(r);
            }
            _ => {}
        }
        let busy = started.elapsed().as_secs_f64();
        if let Ok(mut stats) = self.stats.lock() {
            stats.record(Served {
                endpoint: answer.endpoint,
                status: answer.status,
                bytes: answer.body.len() as u64,
                busy_seconds: busy,
                at: unix_now(),
                microversion: mv_header.as_deref(),
                window: answer.window.take(),
            });
        }
        Ok(respond(answer.status, answer.body, &answer.headers))
    }

    /// The endpoints of the bench and the soak (`/_stats`, `/_totals`, `/_faults`), never
    /// faulted; `None` for any other path.
    fn admin(&self, method: &str, path: &str, params: &Params) -> Option<Response<Body>> {
        let now = unix_now();
        let body = match path {
            "/_stats" => self.stats_json(),
            "/_totals" => {
                let t = |k| param(params, k).map_or(Ok(now), nova::parse_time);
                let per_project = param(params, "projects") == Some("1");
                match (t("start"), t("end")) {
                    (Ok(s), Ok(e)) => {
                        nova::totals(&self.cloud, &self.templates, s, e, now, per_project)
                    }
                    _ => json!({"error": "start and end are times"}),
                }
            }
            "/_faults" if method == "POST" => match self.faults.set(params) {
                Ok(()) => self.faults.to_json(),
                Err(e) => {
                    return Some(respond(
                        400,
                        json!({"error": e}).to_string().into_bytes(),
                        &[],
                    ))
                }
            },
            "/_faults" => self.faults.to_json(),
            _ => return None,
        };
        Some(respond(200, body.to_string().into_bytes(), &[]))
    }

    fn route(
        &self,
        method: &str,
        path: &str,
        params: &Params,
        authorized: bool,
        mv: (u32, u32),
        now: f64,
    ) -> Answer {
        let (c, t) = (&self.cloud, &self.templates);
        let path = path.trim_end_matches('/');
        match (method, path) {
            ("GET", "/v3") => {
                return Answer::text("versions", t.rewrite(templates::KEYSTONE_VERSIONS))
            }
            ("GET", "") => return Answer::text("versions", t.rewrite(templates::NOVA_VERSIONS)),
            ("GET", "/v2.1") => {
                return Answer::text("versions", t.rewrite(templates::NOVA_VERSION))
            }
            ("POST", "/v3/auth/tokens") => {
                let id = self
                    .rng
                    .lock()
                    .map(|mut r| format!("gAAAAA{}", r.hex32()))
                    .unwrap_or_default();
                if let Ok(mut set) = self.tokens.lock() {
                    set.insert(id.clone());
                }
                let mut a = Answer::json("POST /v3/auth/tokens", 201, &keystone::token(t));
                a.headers.push(("x-subject-token", id));
                return a;
            }
            _ => {}
        }
        if !authorized {
            return unauthorized();
        }
        const USAGE_ONE: &str = "GET /v2.1/os-simple-tenant-usage/{tenant}";
        match (method, path) {
            ("GET", "/v3/projects") => {
                Answer::json("GET /v3/projects", 200, &keystone::projects(c, t, params))
            }
            ("GET", "/v3/domains") => {
                Answer::json("GET /v3/domains", 200, &keystone::domains(c, t, params))
            }
            ("GET", "/v2.1/os-simple-tenant-usage") => {
                const E: &str = "GET /v2.1/os-simple-tenant-usage";
                match nova::usage_all(c, t, &t.base, params, mv, now) {
                    Ok((doc, n)) => with_window(Answer::json(E, 200, &doc), params, n),
                    Err(e) => Answer::bad(E, &e),
                }
            }
            ("GET", p) if p.starts_with("/v2.1/os-simple-tenant-usage/") => {
                let tenant = &p["/v2.1/os-simple-tenant-usage/".len()..];
                match nova::usage_one(c, t, tenant, params, now) {
                    Ok((doc, n)) => with_window(Answer::json(USAGE_ONE, 200, &doc), params, n),
                    Err(e) => Answer::bad(USAGE_ONE, &e),
                }
            }
            ("GET", "/v2.1/servers/detail") => {
                const E: &str = "GET /v2.1/servers/detail";
                match nova::servers(c, t, &t.base, params, now) {
                    Ok((doc, _)) => Answer::json(E, 200, &doc),
                    Err(e) => Answer::bad(E, &e),
                }
            }
            _ => {
                let doc = json!({"itemNotFound": {"code": 404, "message": "Not found"}});
                Answer::json("not found", 404, &doc)
            }
        }
    }
}

/// Keystone's 401 (Nova's has the same shape).
fn unauthorized() -> Answer {
    let doc = json!({"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}});
    Answer::json("unauthorized", 401, &doc)
}

fn with_window(mut a: Answer, params: &Params, servers: u64) -> Answer {
    let get = |k| param(params, k).unwrap_or("(now)").to_owned();
    a.window = Some((get("start"), get("end"), servers));
    a
}

#[cfg(test)]
mod tests;
