//! `site-exporter`: Prometheus metrics for one OpenStack site.
//!
//! Data flows one way:
//!
//! ```text
//! sources/*  --collect-->  snapshot  --render-->  exposition  --server-->  /metrics
//!   (refresh: one task per source, interval + timeout + backoff; hub: last good data)
//! ```
//!
//! Modules by layer, bottom first; a module uses only layers below it (the `layers` test of
//! `stack-tests` holds the exact table):
//!
//! 1. Domain, no I/O:
//!    - [`allocator`]: gives memory freed after a big read back to the OS (glibc's
//!      `malloc_trim`); no dependencies, allowed `unsafe` for that one call.
//!    - [`dates`]: the one parser of every date and time read from outside.
//!    - [`weights`]: the credit-weights rule, its three file formats, the shared cell.
//!    - [`snapshot`]: what every source produces (projects, usage, guests) and the
//!      exporter's own health data ([`snapshot::health`]).
//!    - [`legacy`]: the original exporter's `project_*_usage` arithmetic.
//! 2. Contracts:
//!    - [`settings`]: what every config section shares ([`ConfigError`], schedules,
//!      durations, the original's variables).
//!    - [`source`]: the [`source::Source`] trait every source implements.
//! 3. [`sources`]: one module per source, each with its own `config` section: `dummy`,
//!    `openstack`, `libvirt` (the `libvirt` cargo feature), `weights`; plus the portal's
//!    `portal` client and `start_date`. Inside `openstack`, `compact` (compact server ids,
//!    interned values), `nova` (API JSON, pure conversion, on `compact`) and `servers` (the
//!    incremental server table and Nova's usage arithmetic, pure, on `nova`) are layers of
//!    their own below the source.
//! 4. Output:
//!    - [`classic`]: OpenMetrics -> the classic text format 0.0.4.
//!    - [`exposition`]: the cached bodies `/metrics` serves, plain and gzipped, made of
//!      fragments whose text may share buffers with the previous fragment.
//!    - [`render`]: snapshot -> OpenMetrics text (into an `exposition` text builder); the
//!      only place metric names live.
//! 5. Orchestration:
//!    - [`hub`]: last good data per source, self-metrics, readiness.
//!    - [`refresh`]: the background refresh of each source.
//!    - [`webconfig`]: `--web.config.file` (exporter-toolkit format): [`webconfig::parse`]
//!      (pure), [`webconfig::tls`] and [`webconfig::auth`] (rustls, bcrypt), and
//!      [`webconfig::live`] (re-read on change, last good kept).
//!    - [`server`]: HTTP routes, TLS and basic auth from the web config, graceful shutdown.
//! 6. Start-up:
//!    - [`cli`]: flags and their `SITE_EXPORTER_*` variables.
//!    - [`config`]: YAML file + flags -> one validated [`Config`], composed from the
//!      sources' sections.
//!    - [`probe`]: `--check-config --probe`, every backend reached once.
//!    - [`run`] (here): starts every configured source and serves until shutdown.
//!
//! `/metrics` never calls a source: a scrape costs a memory copy whatever the cloud's size, and
//! it never waits for a source's work either, which runs on a runtime of its own ([`run`]).
//! Adding a source: a module under `sources/` with its `config` section, a [`Source`] impl
//! producing a [`snapshot::SourceData`], its place in `config` and in [`run`], and a row in
//! the layer table.
//!
//! [`Source`]: source::Source

// `deny`, not `forbid`: the libvirt source's `bulk` and `events` modules allow `unsafe` for the
// FFI calls the `virt` crate does not wrap safely, and `allocator` for glibc's `malloc_trim`
// and `mallopt`.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod allocator;
pub mod classic;
pub mod cli;
pub mod config;
pub mod dates;
pub mod exposition;
pub mod hub;
pub mod legacy;
pub mod probe;
pub mod refresh;
pub mod render;
pub mod server;
pub mod settings;
pub mod snapshot;
pub mod source;
pub mod sources;
pub mod webconfig;
pub mod weights;

#[cfg(test)]
mod test_support;

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

pub use config::{Config, ConfigError};
use tokio::net::TcpListener;

/// The version reported in `site_exporter_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A source that could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Dummy(#[from] sources::dummy::DummyError),
    #[error(transparent)]
    Openstack(#[from] sources::openstack::OpenstackError),
    #[error("web config: {0}")]
    WebConfig(#[from] webconfig::parse::WebConfigError),
}

/// Starts every configured source on `sources` and serves `listener` until `shutdown`
/// completes.
///
/// Give the sources a runtime of their own (the binary does: one thread, `sources`): reading a
/// large cloud, decoding Nova's answers and computing usage take milliseconds of CPU at a time,
/// and on a thread that answers scrapes they would hold up the scrapes queued behind them.
/// Tests may pass the current runtime's handle.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    sources: tokio::runtime::Handle,
) -> Result<(), StartError> {
    let web = match &config.web_config_file {
        Some(path) => Some(Arc::new(webconfig::live::LiveWebConfig::load(path)?)),
        None => None,
    };
    let hub = Arc::new(hub::Hub::new(VERSION));
    let mut tasks = Vec::new();
    let weights = match &config.weights {
        Some(w) => {
            let cell = Arc::new(weights::WeightsCell::default());
            let (w2, c2) = (w.clone(), Arc::clone(&cell));
            tasks.push(refresh::spawn(
                "weights",
                move || {
                    Ok::<_, std::convert::Infallible>(sources::weights::WeightsSource::new(
                        &w2,
                        Arc::clone(&c2),
                    ))
                },
                w.schedule,
                Arc::clone(&hub),
                config.render,
                &sources,
            ));
            weights::WeightsInput::Shared(cell)
        }
        None => weights::WeightsInput::None,
    };
    if let Some(dummy) = &config.dummy {
        // The dummy cloud's clock starts with the exporter, also for a rebuilt source.
        let started = SystemTime::now();
        let (legacy, weights) = (config.legacy.clone(), weights.clone());
        let build = move |d: &sources::dummy::DummyConfig| {
            sources::dummy::DummySource::new(d, legacy.clone(), weights.clone(), started)
        };
        // Built once here so that a bad file stops the start.
        let mut first = Some(build(dummy)?);
        let d = dummy.clone();
        tasks.push(refresh::spawn(
            "dummy",
            move || first.take().map_or_else(|| build(&d), Ok),
            dummy.schedule,
            Arc::clone(&hub),
            config.render,
            &sources,
        ));
    }
    if let Some(openstack) = &config.openstack {
        // Request counters outlive a rebuilt source: they only ever grow.
        let stats = Arc::default();
        let (o, legacy, weights) = (openstack.clone(), config.legacy.clone(), weights.clone());
        tasks.push(refresh::spawn(
            "openstack",
            move || {
                Ok::<_, std::convert::Infallible>(
                    sources::openstack::OpenstackSource::from_config(
                        &o,
                        legacy.clone(),
                        weights.clone(),
                    )
                    .sharing_stats(Arc::clone(&stats)),
                )
            },
            openstack.schedule,
            Arc::clone(&hub),
            config.render,
            &sources,
        ));
    }
    #[cfg(feature = "libvirt")]
    if let Some(libvirt) = &config.libvirt {
        let l = libvirt.clone();
        tasks.push(refresh::spawn(
            "libvirt",
            move || Ok::<_, std::convert::Infallible>(sources::libvirt::LibvirtSource::new(&l)),
            libvirt.schedule,
            Arc::clone(&hub),
            config.render,
            &sources,
        ));
    }
    server::serve(listener, hub, web, shutdown).await;
    for task in tasks {
        task.abort();
    }
    Ok(())
}
