//! Authenticated requests to Keystone and Nova: timeouts, retries, one re-auth, a limit on
//! requests in flight, and per-service request statistics.
//!
//! Authentication, the catalog and token reuse are osauth's; this module adds the policy.
//! Errors name the service and path, never a token or password (osauth keeps them out of its
//! own error texts; response bodies are not echoed).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use osauth::services::{GenericService, VersionSelector, COMPUTE};
use osauth::Session;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

pub use crate::snapshot::health::{RequestStats, Service};

/// Keystone v3 (osauth has no constant for it).
const IDENTITY: GenericService = GenericService::new("identity", VersionSelector::Major(3));

/// Request policy. Defaults: 4 in flight, 60 s per request, 3 retries from 1 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub concurrency: usize,
    pub request_timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrency: 4,
            request_timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

/// A request that failed for good.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{service} {path}: HTTP {status}{hint}")]
    Status {
        service: &'static str,
        path: String,
        status: u16,
        hint: &'static str,
    },
    #[error("{service} {path}: {kind}")]
    Transport {
        service: &'static str,
        path: String,
        kind: String,
    },
    #[error("{service} {path}: malformed response: {source}")]
    Malformed {
        service: &'static str,
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Makes a new authenticated session (from `OS_*`, clouds.yaml or explicit credentials).
///
/// Re-authentication after a 401 builds a new session with it: osauth's own refresh keeps a
/// token it believes alive, which is exactly the token the server just rejected.
pub type Connect = Arc<
    dyn Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Session, osauth::Error>> + Send>,
        > + Send
        + Sync,
>;

/// The session plus the request policy.
#[derive(Clone)]
pub struct Client {
    connect: Connect,
    /// `None` until the first request authenticates (start-up does not need Keystone up).
    session: Arc<tokio::sync::RwLock<Option<Session>>>,
    limits: Limits,
    permits: Arc<Semaphore>,
    stats: Arc<Mutex<RequestStats>>,
}

enum Attempt {
    Done(bytes::Bytes),
    Retry(Option<Duration>),
    ReAuth,
    Fail(RequestError),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Authenticates with `connect` now and applies `limits` to every request.
    pub async fn connect(connect: Connect, limits: Limits) -> Result<Self, osauth::Error> {
        let session = connect().await?;
        let client = Self::new(connect, limits);
        *client.session.write().await = Some(session);
        Ok(client)
    }

    /// A client that authenticates with `connect` at its first request.
    pub fn new(connect: Connect, limits: Limits) -> Self {
        Self {
            connect,
            session: Arc::default(),
            permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            limits,
            stats: Arc::default(),
        }
    }

    /// Records into `stats`, which may outlive this client (a rebuilt source keeps counting).
    pub fn sharing_stats(mut self, stats: Arc<Mutex<RequestStats>>) -> Self {
        self.stats = stats;
        self
    }

    /// Counts a state file that could not be written (kept with the request statistics so
    /// that it, too, survives a rebuilt source).
    pub fn count_state_write_error(&self) {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .state_write_errors += 1;
    }

    /// Counts `n` servers on which a reconciliation found the table disagreeing (kept with
    /// the request statistics so that a rebuilt source goes on counting).
    pub fn count_disagreements(&self, kind: &'static str, n: u64) {
        *self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .reconcile_disagreements
            .entry(kind)
            .or_default() += n;
    }

    /// A copy of the request statistics so far.
    pub fn stats(&self) -> RequestStats {
        // A panic while counting leaves whole numbers behind: keep them.
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether the compute endpoint supports microversion `version` (from its version
    /// document, which osauth caches per session).
    pub async fn compute_supports(&self, version: (u16, u16)) -> Result<bool, RequestError> {
        let fail = |kind: String| RequestError::Transport {
            service: Service::Compute.as_str(),
            path: "/ (version document)".into(),
            kind,
        };
        if self.session.read().await.is_none() {
            let fresh = (self.connect)()
                .await
                .map_err(|e| fail(format!("authentication failed: {}", e.kind())))?;
            *self.session.write().await = Some(fresh);
        }
        let guard = self.session.read().await;
        let Some(session) = guard.as_ref() else {
            return Err(fail("no session".into()));
        };
        session
            .supports_api_version(COMPUTE, osauth::ApiVersion(version.0, version.1))
            .await
            .map_err(|e| fail(e.kind().to_string()))
    }

    /// GET `path` (segments below the service's endpoint) with `query`, parsed as `T`.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        service: Service,
        path: &[&str],
        query: &[(&str, String)],
        microversion: Option<(u16, u16)>,
    ) -> Result<T, RequestError> {
        let shown = format!("/{}", path.join("/"));
        let bytes = self.get(service, path, &shown, query, microversion).await?;
        serde_json::from_slice(&bytes).map_err(|source| RequestError::Malformed {
            service: service.as_str(),
            path: shown,
            source,
        })
    }

    async fn get(
        &self,
        service: Service,
        path: &[&str],
        shown: &str,
        query: &[(&str, String)],
        microversion: Option<(u16, u16)>,
    ) -> Result<bytes::Bytes, RequestError> {
        let mut reauthed = false;
        let mut retries = 0;
        loop {
            if self.session.read().await.is_none() {
                match (self.connect)().await {
                    Ok(fresh) => *self.session.write().await = Some(fresh),
                    Err(e) => {
                        return Err(RequestError::Transport {
                            service: service.as_str(),
                            path: shown.to_owned(),
                            kind: format!("authentication failed: {}", e.kind()),
                        })
                    }
                }
            }
            let attempt = {
                let _permit =
                    self.permits
                        .acquire()
                        .await
                        .map_err(|_| RequestError::Transport {
                            service: service.as_str(),
                            path: shown.to_owned(),
                            kind: "client closed".into(),
                        })?;
                self.attempt(service, path, shown, query, microversion)
                    .await
            };
            match attempt {
                Attempt::Done(b) => return Ok(b),
                Attempt::Fail(e) => return Err(e),
                Attempt::ReAuth if !reauthed => {
                    reauthed = true;
                    match (self.connect)().await {
                        Ok(fresh) => *self.session.write().await = Some(fresh),
                        Err(e) => {
                            return Err(RequestError::Transport {
                                service: service.as_str(),
                                path: shown.to_owned(),
                                kind: format!("re-authentication after 401 failed: {}", e.kind()),
                            })
                        }
                    }
                }
                Attempt::ReAuth => {
                    return Err(RequestError::Status {
                        service: service.as_str(),
                        path: shown.to_owned(),
                        status: 401,
                        hint: " (still unauthorized after re-authenticating)",
                    })
                }
                Attempt::Retry(after) if retries < self.limits.retries => {
                    retries += 1;
                    tokio::time::sleep(after.unwrap_or_else(|| self.backoff(retries))).await;
                }
                Attempt::Retry(_) => {
                    return Err(RequestError::Transport {
                        service: service.as_str(),
                        path: shown.to_owned(),
                        kind: format!("giving up after {} retries", self.limits.retries),
                    })
                }
            }
        }
    }

    /// Exponential backoff with jitter in [50 %, 100 %] of the step.
    fn backoff(&self, retry: u32) -> Duration {
        let step = self
            .limits
            .backoff
            .saturating_mul(1 << retry.min(10).saturating_sub(1));
        step.mul_f64(jitter_fraction(retry))
    }

    async fn attempt(
        &self,
        service: Service,
        path: &[&str],
        shown: &str,
        query: &[(&str, String)],
        microversion: Option<(u16, u16)>,
    ) -> Attempt {
        let started = Instant::now();
        let result = {
            let guard = self.session.read().await;
            let Some(session) = guard.as_ref() else {
                return Attempt::ReAuth;
            };
            let timeout = self.limits.request_timeout;
            match service {
                Service::Identity => {
                    session
                        .get(IDENTITY, path)
                        .query(query)
                        .timeout(timeout)
                        .send_unchecked()
                        .await
                }
                Service::Compute => {
                    let mut rb = session.get(COMPUTE, path).query(query).timeout(timeout);
                    if let Some(v) = microversion {
                        rb = rb.api_version(v);
                    }
                    rb.send_unchecked().await
                }
            }
        };
        let fail = |kind: String| RequestError::Transport {
            service: service.as_str(),
            path: shown.to_owned(),
            kind,
        };
        let (code, attempt) = match result {
            Err(e) => {
                let retry = matches!(
                    e.kind(),
                    osauth::ErrorKind::ProtocolError
                        | osauth::ErrorKind::OperationTimedOut
                        | osauth::ErrorKind::InternalServerError
                );
                let a = if retry {
                    Attempt::Retry(None)
                } else {
                    Attempt::Fail(fail(e.kind().to_string()))
                };
                ("error".to_owned(), a)
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let a = match status {
                    200..=299 => match resp.bytes().await {
                        Ok(b) => Attempt::Done(b),
                        Err(_) => Attempt::Retry(None),
                    },
                    401 => Attempt::ReAuth,
                    429 => Attempt::Retry(retry_after),
                    500..=599 => Attempt::Retry(retry_after),
                    _ => Attempt::Fail(RequestError::Status {
                        service: service.as_str(),
                        path: shown.to_owned(),
                        status,
                        hint: hint(service, shown, status),
                    }),
                };
                (status.to_string(), a)
            }
        };
        if let Ok(mut stats) = self.stats.lock() {
            *stats.requests.entry((service, code)).or_default() += 1;
            stats
                .durations
                .entry(service)
                .or_default()
                .observe(started.elapsed().as_secs_f64());
        }
        attempt
    }
}

fn hint(service: Service, path: &str, status: u16) -> &'static str {
    match (service, status) {
        (Service::Compute, 403) if path.starts_with("/os-simple-tenant-usage") => {
            " (forbidden by Nova policy os_compute_api:os-simple-tenant-usage:list, admin by default)"
        }
        (_, 403) => " (forbidden: the exporter's user needs the admin or reader role)",
        _ => "",
    }
}

/// A factor in [0.5, 1.0) that differs between processes and moments, so that exporters
/// retrying the same failure do not retry in step. (The wall clock's sub-second part is the
/// varying input; `Instant::now().elapsed()` would be a near-constant few nanoseconds.)
fn jitter_fraction(retry: u32) -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let mixed =
        (nanos ^ u64::from(std::process::id()) ^ u64::from(retry).wrapping_mul(0x9e37_79b9))
            .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    0.5 + ((mixed >> 11) % 1000) as f64 / 2000.0
}

#[cfg(test)]
mod jitter_tests {
    use super::jitter_fraction;

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let samples: Vec<f64> = (0..200).map(|i| jitter_fraction(i % 4)).collect();
        assert!(
            samples.iter().all(|f| (0.5..1.0).contains(f)),
            "{samples:?}"
        );
        let distinct: std::collections::BTreeSet<u64> =
            samples.iter().map(|f| f.to_bits()).collect();
        assert!(
            distinct.len() > 10,
            "jitter barely varies: {} distinct values",
            distinct.len()
        );
    }
}
