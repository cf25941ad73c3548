//! The contract every source keeps: a name, a refresh that produces a [`SourceData`], and
//! optionally its own metrics.
//!
//! Sources depend on this module and the domain types only; `refresh` runs them, so a source
//! never sees the hub, the renderer or the HTTP server.

use std::future::Future;
use std::time::SystemTime;

use crate::snapshot::health::SourceMetrics;
use crate::snapshot::SourceData;

/// A producer of snapshots: the dummy cloud, OpenStack, libvirt, the credit weights.
pub trait Source: Send + 'static {
    /// The error of one failed refresh; logged once by the refresh task.
    type Error: std::error::Error + Send + 'static;

    /// The `source` label of the self-metrics.
    fn name(&self) -> &'static str;

    /// Reads the source's current state. `now` is the wall-clock time the data is for.
    fn collect(
        &mut self,
        now: SystemTime,
    ) -> impl Future<Output = Result<SourceData, Self::Error>> + Send;

    /// The source's own metrics, published after every refresh, failed or not. None by
    /// default.
    fn self_metrics(&self) -> Option<SourceMetrics> {
        None
    }
}
