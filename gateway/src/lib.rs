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
//! The modules, in layers; a module uses only modules of layers below its own (checked by
//! the workspace's `tests/tests/layers.rs`):
//!
//! 1. Leaves, knowing nothing of the others: [`selectors`] (parse + allow rule), [`auth`]
//!    (Bearer check), [`ratelimit`] (per-client limiter), [`tls`] (certificates, CA bundles,
//!    with its own error), [`cli`] (flags), [`intake`] (the bytes before hyper: a deadline for
//!    the first request, raw `"` in an HTTP/1 query percent-encoded).
//! 2. [`query`]: the `match[]` query string -> selectors. [`config`]: the YAML file ->
//!    validated [`config::Config`], building the TLS and selector values it names.
//! 3. [`error`]: every outcome, and the one error-to-HTTP mapping.
//! 4. [`metrics`]: the gateway's own metrics. [`upstream`]: the pooled client to the site
//!    Prometheus.
//! 5. [`state`]: the configuration in force with what is built from it, swapped whole on
//!    SIGHUP.
//! 6. [`routes`]: the pipeline above, recording each outcome once.
//! 7. [`server`]: the public and internal listeners, each connection read through [`intake`]; [`run`] below starts both.

#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod intake;
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
