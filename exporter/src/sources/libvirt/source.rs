//! The libvirt source as a [`Source`]: each refresh runs [`Blocking::refresh`] on the blocking
//! pool.
//!
//! libvirt calls block, and one can hang for as long as a guest's lock is held or the daemon
//! is stuck. The refresh task's timeout drops our future but cannot stop the blocking call, so
//! the call's handle stays here: while it is still running, every refresh fails at once
//! (keeping the last data published and `site_exporter_source_up{source="libvirt"}` at 0)
//! instead of piling up more stuck calls. Once it returns, its result is stale and is
//! dropped; the next refresh starts afresh.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use tokio::task::JoinHandle;

use super::host::{Blocking, Host};
use super::LibvirtConfig;
use crate::snapshot::{GuestsSnapshot, SourceData};
use crate::source::Source;

/// A failed libvirt refresh. (An unreachable libvirt is not one: it is `libvirt_up 0`.)
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    #[error("a libvirt call started {0:?} ago has not returned; not starting another")]
    Stuck(std::time::Duration),
    #[error("the libvirt refresh panicked: {0}")]
    Panicked(String),
}

/// Guests of one hypervisor, read through a read-only libvirt connection.
#[derive(Debug)]
pub struct LibvirtSource<B: Blocking = Host> {
    inner: Arc<Mutex<B>>,
    /// The refresh in flight, if an earlier `collect` gave up waiting for it.
    running: Option<(Instant, JoinHandle<GuestsSnapshot>)>,
}

impl LibvirtSource<Host> {
    /// The source for `config`; it connects on its first refresh, not here.
    pub fn new(config: &LibvirtConfig) -> Self {
        Self::with(Host::new(config.uri.clone(), config.event_grace))
    }
}

impl<B: Blocking> LibvirtSource<B> {
    /// The source around any blocking refresher (tests use fakes).
    pub fn with(inner: B) -> Self {
        Self {
            inner: Arc::new(Mutex::new(inner)),
            running: None,
        }
    }
}

impl<B: Blocking> Source for LibvirtSource<B> {
    type Error = LibvirtError;

    fn name(&self) -> &'static str {
        "libvirt"
    }

    async fn collect(&mut self, _now: SystemTime) -> Result<SourceData, LibvirtError> {
        if let Some((started, handle)) = &self.running {
            if !handle.is_finished() {
                return Err(LibvirtError::Stuck(started.elapsed()));
            }
            tracing::info!(took = ?started.elapsed(), "stuck libvirt call returned; its data is dropped");
            self.running = None;
        }
        let inner = Arc::clone(&self.inner);
        let handle = tokio::task::spawn_blocking(move || {
            // Only one refresh runs at a time (see above), so the lock is never contended; a
            // panic in an earlier refresh leaves a cache that is at worst incomplete.
            inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .refresh()
        });
        let (_, handle) = self.running.insert((Instant::now(), handle));
        let outcome = handle.await;
        self.running = None;
        match outcome {
            Ok(snapshot) => Ok(SourceData::Guests(snapshot)),
            Err(e) => Err(LibvirtError::Panicked(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests;
