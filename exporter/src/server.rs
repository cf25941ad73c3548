//! HTTP: accept loop, graceful shutdown, and the one match on method and path.
//!
//! `/metrics` serves the hub's cached exposition (OpenMetrics when the client asks for it,
//! classic text otherwise; gzipped when accepted) and never waits for a source. `/-/healthy`
//! answers while the process runs, `/-/ready` once every source has produced data.
//!
//! With a web config ([`crate::webconfig`]), connections are TLS when it says so, and every
//! path, `/-/healthy` included, needs basic authentication when it has users, as in the
//! exporter-toolkit; its headers go on every response, the 401 included.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT, ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::exposition::{Chunks, Format};
use crate::hub::Hub;
use crate::webconfig::live::LiveWebConfig;

/// How long open connections may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const INDEX: &str = "<!DOCTYPE html>
<html><head><title>site-exporter</title></head>
<body><h1>site-exporter</h1>
<p>Per-project OpenStack usage and libvirt guest statistics for Prometheus.</p>
<ul>
<li><a href=\"/metrics\">/metrics</a></li>
<li><a href=\"/-/healthy\">/-/healthy</a></li>
<li><a href=\"/-/ready\">/-/ready</a></li>
</ul></body></html>
";

/// Serves `hub` on `listener` until `shutdown` completes, then drains open connections.
/// `web` secures it (TLS, basic auth, headers); `None` serves plain HTTP to anyone.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    web: Option<Arc<LiveWebConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A body goes out in several writes and its last one is small (the final families and
        // `# EOF`): with Nagle's algorithm it waits for the ACK of the megabytes before it.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let service = {
            let (hub, web) = (Arc::clone(&hub), web.clone());
            hyper::service::service_fn(move |req| {
                let (hub, web) = (Arc::clone(&hub), web.clone());
                async move { Ok::<_, Infallible>(secured(req, &hub, web.as_deref()).await) }
            })
        };
        let tls = web
            .as_ref()
            .and_then(|w| w.current().tls.clone())
            .map(tokio_rustls::TlsAcceptor::from);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let conn = builder.serve_connection(TokioIo::new(tls), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down; draining connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// [`route`] behind the web config's basic authentication, with its headers added.
async fn secured(
    req: Request<Incoming>,
    hub: &Hub,
    web: Option<&LiveWebConfig>,
) -> Response<Chunks> {
    let Some(web) = web else {
        return route(&req, hub);
    };
    let active = web.current();
    let allowed = !active.auth.required()
        || Arc::clone(&active.auth)
            .allows_blocking(req.headers().clone())
            .await;
    let mut resp = if allowed {
        route(&req, hub)
    } else {
        let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic"),
        );
        // Go's http.Error, which the exporter-toolkit answers with, sets it too.
        r.headers_mut().insert(
            http::header::X_CONTENT_TYPE_OPTIONS,
            http::HeaderValue::from_static("nosniff"),
        );
        r
    };
    for (name, value) in &active.config.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

/// The one place that maps a request to a response.
pub fn route(req: &Request<Incoming>, hub: &Hub) -> Response<Chunks> {
    route_parts(req.method(), req.uri().path(), req.headers(), hub)
}

pub(crate) fn route_parts(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    hub: &Hub,
) -> Response<Chunks> {
    let read_only = method == Method::GET || method == Method::HEAD;
    let known = matches!(path, "/" | "/metrics" | "/-/healthy" | "/-/ready");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if !read_only {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let mut resp = match path {
        "/metrics" => metrics(headers, hub),
        "/-/healthy" => text(StatusCode::OK, "healthy\n"),
        "/-/ready" if hub.ready() => text(StatusCode::OK, "ready\n"),
        "/-/ready" => text(StatusCode::SERVICE_UNAVAILABLE, hub.waiting_for()),
        _ => {
            let mut r = Response::new(Chunks::from(INDEX));
            r.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
    };
    if method == Method::HEAD {
        *resp.body_mut() = Chunks::default();
    }
    resp
}

fn metrics(headers: &HeaderMap, hub: &Hub) -> Response<Chunks> {
    let format = negotiate_format(headers);
    let gzip = accepts_gzip(headers);
    let body = hub.exposition_for(format).body(format, gzip);
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static(format.content_type()),
    );
    h.insert(
        VARY,
        http::HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    if gzip {
        h.insert(CONTENT_ENCODING, http::HeaderValue::from_static("gzip"));
    }
    resp
}

fn text(status: StatusCode, body: impl Into<Chunks>) -> Response<Chunks> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The entries of a comma-separated header as `(value, q)`, with `q` defaulting to 1.
fn weighted(
    headers: &HeaderMap,
    name: http::HeaderName,
) -> impl Iterator<Item = (String, f32)> + '_ {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let value = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (value, q)
        })
}

/// OpenMetrics when the client accepts it at least as much as classic text.
pub fn negotiate_format(headers: &HeaderMap) -> Format {
    let mut openmetrics: f32 = 0.0;
    let mut classic: f32 = 0.0;
    for (value, q) in weighted(headers, ACCEPT) {
        match value.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => classic = classic.max(q),
            _ => {}
        }
    }
    if openmetrics > 0.0 && openmetrics >= classic {
        Format::OpenMetrics
    } else {
        Format::Classic
    }
}

/// Whether the client accepts gzip (and did not refuse it with `q=0`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    weighted(headers, ACCEPT_ENCODING).any(|(value, q)| value == "gzip" && q > 0.0)
}

#[cfg(test)]
mod tests;
