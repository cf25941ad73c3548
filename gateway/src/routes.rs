//! The request pipeline: route, authenticate, rate-limit, check the query, forward.
//!
//! Each phase returns a typed [`GatewayError`]; `error` turns it into the response, and this
//! module records the outcome once per request (metrics and one log line, never the token).
//! Only `GET /federate` with every `match[]` allowed reaches the upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::auth;
use crate::error::{GatewayError, Outcome};
use crate::query;
use crate::state::{Active, State};

/// What every response body is: a short local answer, or the upstream's streamed body.
pub type GatewayBody = Either<Full<Bytes>, Counted>;

/// Longest selector text a log line carries.
const LOGGED_SELECTOR: usize = 200;

/// Who asked, for the log line.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Handles one request on the public listener.
pub async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    peer: Peer,
) -> Result<Response<GatewayBody>, Infallible> {
    let started = Instant::now();
    let active = state.active();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut client = "unknown".to_string();
    let result = pipeline(&req, &active, &mut client).await;
    let log = RequestLog {
        client,
        method,
        path,
        peer: peer.0,
        started,
    };
    Ok(match result {
        Ok(upstream) => {
            let status = upstream.status();
            let outcome = if status.is_server_error() {
                Outcome::UpstreamError
            } else {
                Outcome::Allowed
            };
            let (parts, body) = upstream.into_parts();
            let mut resp = Response::new(Either::Right(Counted {
                inner: body,
                bytes: 0,
                done: None,
            }));
            *resp.status_mut() = status;
            crate::upstream::pass_headers(&parts.headers, resp.headers_mut());
            state
                .metrics
                .request(&log.client, outcome, started.elapsed().as_secs_f64());
            if let Either::Right(counted) = resp.body_mut() {
                counted.done = Some(Done {
                    state: Arc::clone(&state),
                    log,
                    outcome,
                    status: status.as_u16(),
                });
            }
            resp
        }
        Err(error) => {
            let outcome = error.outcome();
            state
                .metrics
                .request(&log.client, outcome, started.elapsed().as_secs_f64());
            let resp = error.response();
            let selector = match &error {
                GatewayError::Forbidden { selector } => Some(truncate(selector)),
                GatewayError::BadQuery(query::QueryError::Selector { selector, .. }) => {
                    Some(truncate(selector))
                }
                _ => None,
            };
            log.write(
                outcome,
                resp.status().as_u16(),
                resp.body().len() as u64,
                selector.as_deref(),
                Some(&error),
            );
            resp.map(|b| Either::Left(Full::new(b)))
        }
    })
}

/// Route, authenticate, rate-limit, check, forward. `client` is set once known.
async fn pipeline(
    req: &Request<Incoming>,
    active: &Active,
    client: &mut String,
) -> Result<Response<Incoming>, GatewayError> {
    let limits = &active.config.limits;
    let uri = req.uri();
    let target_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > limits.max_uri_bytes {
        return Err(GatewayError::UriTooLong);
    }
    // HTTP/1 requests must use the origin form (`/federate?…`); HTTP/2 always carries the
    // scheme and authority as pseudo-headers.
    if req.version() < Version::HTTP_2 && (uri.scheme().is_some() || uri.authority().is_some()) {
        return Err(GatewayError::AbsoluteTarget);
    }
    if uri.path() != "/federate" {
        return Err(GatewayError::NotFound);
    }
    if req.method() != Method::GET {
        return Err(GatewayError::MethodNotAllowed);
    }
    // Nothing is ever forwarded from a request body; one being announced (especially with
    // conflicting framing, a smuggling attempt through a proxy in front) is refused.
    let h = req.headers();
    let has_length = h
        .get_all(CONTENT_LENGTH)
        .iter()
        .any(|v| v.as_bytes() != b"0");
    if has_length || h.contains_key(TRANSFER_ENCODING) {
        return Err(GatewayError::UnexpectedBody);
    }
    let index = auth::authenticate(req.headers(), &active.tokens)?;
    let c = &active.config.clients[index];
    client.clone_from(&c.name);
    if let Some(limiter) = &c.limiter {
        limiter
            .check()
            .map_err(|retry_after| GatewayError::RateLimited { retry_after })?;
    }
    let selectors = query::parse(uri.query(), limits.max_match)?;
    if let Some(denied) = selectors.iter().find(|s| !s.is_allowed_by(&c.allow)) {
        return Err(GatewayError::Forbidden {
            selector: denied.to_string(),
        });
    }
    active.upstream.federate(&selectors, req.headers()).await
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(LOGGED_SELECTOR) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// What the request's log line says.
#[derive(Debug)]
struct RequestLog {
    client: String,
    method: Method,
    path: String,
    peer: SocketAddr,
    started: Instant,
}

impl RequestLog {
    fn write(
        &self,
        outcome: Outcome,
        status: u16,
        bytes: u64,
        selector: Option<&str>,
        error: Option<&GatewayError>,
    ) {
        tracing::info!(
            client = %self.client,
            method = %self.method,
            path = %self.path,
            outcome = outcome.as_str(),
            status,
            bytes,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            peer = %self.peer,
            selector,
            error = error.map(tracing::field::display),
            "request"
        );
    }
}

/// Written when the upstream body ends (or the client goes away).
#[derive(Debug)]
struct Done {
    state: Arc<State>,
    log: RequestLog,
    outcome: Outcome,
    status: u16,
}

/// The upstream body, passed through frame by frame, counting the bytes sent.
#[derive(Debug)]
pub struct Counted {
    inner: Incoming,
    bytes: u64,
    done: Option<Done>,
}

impl Counted {
    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done.state
                .metrics
                .response_bytes(&done.log.client, self.bytes);
            done.log
                .write(done.outcome, done.status, self.bytes, None, None);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
