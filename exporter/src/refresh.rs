//! Background refresh of one source: interval, timeout, backoff, last good data.
//!
//! `/metrics` never calls a source. Each source runs in its own task: collect under a timeout,
//! render the result off the async threads, hand it to the hub. A failed or timed-out refresh
//! leaves the last good data published, marks the source down and retries sooner (doubling
//! from one second up to the interval), so a brief outage heals fast and a long one does not
//! hammer the backend.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::exposition::Fragment;
use crate::hub::{Hub, SlotId};
use crate::render::{self, RenderOptions};
use crate::snapshot::SourceData;

/// A producer of snapshots: the dummy cloud, OpenStack, libvirt.
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
}

/// When a source refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub interval: Duration,
    /// Longest a single refresh may take before it counts as failed.
    pub timeout: Duration,
}

/// Registers `source` with the hub and refreshes it forever (until the task is dropped).
pub fn spawn<S: Source>(
    mut source: S,
    schedule: Schedule,
    hub: Arc<Hub>,
    options: RenderOptions,
) -> tokio::task::JoinHandle<()> {
    let slot = hub.register(source.name());
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            let ok = refresh_once(&mut source, schedule, &hub, slot, options).await;
            failures = if ok { 0 } else { failures.saturating_add(1) };
            tokio::time::sleep(next_delay(schedule.interval, failures)).await;
        }
    })
}

/// Runs one refresh and records its outcome in the hub. Returns whether it succeeded.
pub async fn refresh_once<S: Source>(
    source: &mut S,
    schedule: Schedule,
    hub: &Arc<Hub>,
    slot: SlotId,
    options: RenderOptions,
) -> bool {
    let name = source.name();
    let started = Instant::now();
    let now = SystemTime::now();
    let outcome = tokio::time::timeout(schedule.timeout, source.collect(now)).await;
    let hub = Arc::clone(hub);
    match outcome {
        Ok(Ok(data)) => {
            // Rendering and compressing a large cloud takes milliseconds of CPU: keep it off
            // the threads that answer scrapes.
            let published = tokio::task::spawn_blocking(move || {
                let fragment = Fragment::from_openmetrics(render_data(data, options));
                hub.succeeded(slot, fragment, now, started.elapsed());
            })
            .await;
            if published.is_err() {
                tracing::error!(source = name, "rendering the source's data panicked");
                return false;
            }
            tracing::debug!(source = name, took = ?started.elapsed(), "refresh done");
            true
        }
        Ok(Err(error)) => {
            tracing::warn!(source = name, %error, "refresh failed; keeping the last good data");
            let _ = tokio::task::spawn_blocking(move || hub.failed(slot, started.elapsed())).await;
            false
        }
        Err(_) => {
            tracing::warn!(
                source = name,
                timeout = ?schedule.timeout,
                "refresh timed out; keeping the last good data"
            );
            let _ = tokio::task::spawn_blocking(move || hub.failed(slot, started.elapsed())).await;
            false
        }
    }
}

/// Renders whatever a source produced into one OpenMetrics fragment.
pub fn render_data(data: SourceData, options: RenderOptions) -> String {
    match data {
        SourceData::Projects(p) => render::projects(Arc::new(p), options),
        SourceData::Guests(g) => render::guests(Arc::new(g)),
        SourceData::Cloud { projects, guests } => {
            let mut out = render::projects(Arc::new(projects), options);
            out.push_str(&render::guests(Arc::new(guests)));
            out
        }
    }
}

/// The pause before the next refresh after `failures` consecutive failures.
fn next_delay(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let backoff = Duration::from_secs(1).saturating_mul(1 << failures.min(16).saturating_sub(1));
    backoff.min(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let interval = Duration::from_secs(15);
        let delays: Vec<u64> = (0..7).map(|f| next_delay(interval, f).as_secs()).collect();
        assert_eq!(delays, [15, 1, 2, 4, 8, 15, 15]);
        assert_eq!(next_delay(interval, u32::MAX), interval);
    }
}
