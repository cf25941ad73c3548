//! `federation-gateway`: lets a portal read only the allowed `/federate` selectors of a site
//! Prometheus, over TLS, with a bearer token per client.
//!
//! A request passes these phases, each a pure function where it can be, and the first that
//! fails decides the one response (`error`):
//!
//! ```text
//! route (GET /federate only) -> auth (Bearer, constant time) -> ratelimit (per client)
//!   -> query (only match[], each parsed) -> selectors (each within the client's allow-list)
//!   -> upstream (fresh request, canonical selectors, streamed back)
//! ```
//!
//! - [`cli`]: flags; [`config`]: the YAML file -> validated [`config::Config`].
//! - [`state`]: the configuration in force, swapped whole on SIGHUP; [`metrics`].
//! - [`routes`]: the pipeline; [`error`]: outcomes and the error-to-HTTP mapping.
//! - [`auth`], [`ratelimit`], [`query`], [`selectors`]: the phases.
//! - [`upstream`]: the pooled client to the site Prometheus; [`tls`]: certificates.
//! - [`server`]: the public and internal listeners.

#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod metrics;
pub mod query;
pub mod ratelimit;
pub mod routes;
pub mod selectors;
pub mod server;
pub mod state;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

/// Serves both listeners until `shutdown` completes.
pub async fn run(
    state: Arc<state::State>,
    public: TcpListener,
    internal: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let wait = |mut rx: tokio::sync::broadcast::Receiver<()>| async move {
        let _ = rx.recv().await;
    };
    let internal_task = internal.map(|l| {
        tokio::spawn(server::serve_internal(
            l,
            Arc::clone(&state),
            wait(stop.subscribe()),
        ))
    });
    let public_task = tokio::spawn(server::serve_public(public, state, wait(stop.subscribe())));
    shutdown.await;
    let _ = stop.send(());
    let _ = public_task.await;
    if let Some(t) = internal_task {
        let _ = t.await;
    }
}
