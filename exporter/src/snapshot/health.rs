//! What the exporter reports about itself, as plain data: each source's refresh status, the
//! OpenStack client's request statistics and where its accounting starts.
//!
//! The hub and the sources fill these; `render` turns them into the `site_exporter_*`
//! families. No metric names here.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Refresh status of one source, as the self-metrics report it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceStatus {
    pub name: &'static str,
    /// Whether the last refresh succeeded.
    pub up: bool,
    pub last_success: Option<SystemTime>,
    pub last_duration: Option<Duration>,
    pub errors: u64,
    /// Panics of the source's task, each answered by rebuilding the source.
    pub panics: u64,
    /// Why the last refresh failed (as logged; errors never carry secrets); `None` after a
    /// success.
    pub last_error: Option<String>,
}

/// A source's own metrics, published after every refresh, failed or not.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceMetrics {
    /// The OpenStack source: its requests and, once settled, its accounting start.
    Openstack {
        requests: RequestStats,
        start: Option<UsageStart>,
        /// End of the last usage window counted, seconds since 1970, once settled.
        window_end: Option<u64>,
    },
}

/// Which API a request goes to; the `service` label of the self-metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Identity,
    Compute,
}

impl Service {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::Compute => "compute",
        }
    }
}

/// Counts and durations of requests, by service (and status code; `error` for no response).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RequestStats {
    pub requests: BTreeMap<(Service, String), u64>,
    /// Per service: bucket upper bounds' counts, sum of seconds, count.
    pub durations: BTreeMap<Service, Histogram>,
    /// State file writes that failed (the source counted on in memory).
    pub state_write_errors: u64,
    /// Servers on which the incremental table disagreed with Nova at reconciliation, by kind
    /// (`usage`, `archived`, `untracked`).
    pub reconcile_disagreements: BTreeMap<&'static str, u64>,
}

/// A histogram of request durations.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Histogram {
    /// Per-bucket (not cumulative) counts for [`BUCKETS`], then one for +Inf.
    pub buckets: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

/// Upper bounds of the request-duration buckets, seconds.
pub const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

impl Histogram {
    /// Counts one request that took `seconds`.
    pub fn observe(&mut self, seconds: f64) {
        if self.buckets.len() != BUCKETS.len() + 1 {
            self.buckets = vec![0; BUCKETS.len() + 1];
        }
        let i = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    /// `(upper bound, count)` pairs as the encoder takes them, +Inf last.
    pub fn pairs(&self) -> Vec<(f64, u64)> {
        BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().copied().chain(std::iter::repeat(0)))
            .collect()
    }
}

/// Where accounting starts: what was asked for (configuration or portal) and what the
/// accounting in force — possibly resumed from a state file — started at; epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageStart {
    pub requested: u64,
    pub accounting: u64,
}
