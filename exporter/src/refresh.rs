//! Background refresh of one source: interval, timeout, backoff, last good data.
//!
//! `/metrics` never calls a source. Each source runs in its own task: collect under a timeout,
//! render the result off the async threads, hand it to the hub. A failed or timed-out refresh
//! leaves the last good data published, marks the source down and retries sooner (doubling
//! from one second up to the interval), so a brief outage heals fast and a long one does not
//! hammer the backend.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::exposition::Fragment;
use crate::hub::{Hub, SlotId};
use crate::render::{self, RenderOptions};
use crate::settings::Schedule;
use crate::source::Source;

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
    if let Some(own) = source.self_metrics() {
        hub.stage_source_metrics(
            slot,
            Fragment::from_openmetrics(render::source_metrics(&own)),
        );
    }
    match outcome {
        Ok(Ok(data)) => {
            // Rendering and compressing a large cloud takes milliseconds of CPU: keep it off
            // the threads that answer scrapes.
            let published = tokio::task::spawn_blocking(move || {
                let fragment = Fragment::from_openmetrics(render::source_data(data, options));
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
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::exposition::Format;
    use crate::snapshot::{Project, ProjectUsage, ProjectsSnapshot, SourceData};

    /// Answers from a script: data, an error, or never.
    struct Scripted {
        script: Vec<Step>,
    }

    enum Step {
        Data(&'static str),
        Fail,
        Hang,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("scripted failure")]
    struct Failure;

    impl Source for Scripted {
        type Error = Failure;

        fn name(&self) -> &'static str {
            "scripted"
        }

        async fn collect(&mut self, _now: SystemTime) -> Result<SourceData, Failure> {
            match self.script.remove(0) {
                Step::Data(name) => Ok(SourceData::Projects(ProjectsSnapshot {
                    legacy: Default::default(),
                    projects: vec![ProjectUsage {
                        project: Project {
                            id: "id".into(),
                            name: name.into(),
                            domain_id: "default".into(),
                            domain_name: "Default".into(),
                            enabled: true,
                        },
                        totals: Default::default(),
                        allocation: Default::default(),
                        instances: Default::default(),
                        quota: None,
                    }],
                })),
                Step::Fail => Err(Failure),
                Step::Hang => std::future::pending().await,
            }
        }
    }

    fn body(hub: &Hub) -> String {
        String::from_utf8(
            hub.exposition()
                .body(Format::Classic, false)
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_source_keeps_its_last_data_and_reports_down() {
        let hub = Arc::new(Hub::new("test"));
        let mut source = Scripted {
            script: vec![
                Step::Data("first"),
                Step::Fail,
                Step::Hang,
                Step::Data("second"),
            ],
        };
        let slot = hub.register(source.name());
        let schedule = Schedule {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(5),
        };
        let options = RenderOptions::default();
        assert!(!hub.ready());
        assert!(body(&hub).contains("site_exporter_source_up{source=\"scripted\"} 0"));

        assert!(refresh_once(&mut source, schedule, &hub, slot, options).await);
        assert!(hub.ready());
        let b = body(&hub);
        assert!(b.contains("project_name=\"first\""), "{b}");
        assert!(
            b.contains("site_exporter_source_up{source=\"scripted\"} 1"),
            "{b}"
        );

        // An error, then a refresh that never answers (the timeout ends it): the data stays.
        assert!(!refresh_once(&mut source, schedule, &hub, slot, options).await);
        assert!(!refresh_once(&mut source, schedule, &hub, slot, options).await);
        let b = body(&hub);
        assert!(b.contains("project_name=\"first\""), "{b}");
        assert!(
            b.contains("site_exporter_source_up{source=\"scripted\"} 0"),
            "{b}"
        );
        assert!(
            b.contains("site_exporter_source_refresh_errors_total{source=\"scripted\"} 2"),
            "{b}"
        );
        assert!(hub.ready(), "a source that produced data once stays ready");

        assert!(refresh_once(&mut source, schedule, &hub, slot, options).await);
        let b = body(&hub);
        assert!(b.contains("project_name=\"second\"") && !b.contains("project_name=\"first\""));
        assert!(
            b.contains("site_exporter_source_up{source=\"scripted\"} 1"),
            "{b}"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let interval = Duration::from_secs(15);
        let delays: Vec<u64> = (0..7).map(|f| next_delay(interval, f).as_secs()).collect();
        assert_eq!(delays, [15, 1, 2, 4, 8, 15, 15]);
        assert_eq!(next_delay(interval, u32::MAX), interval);
    }
}
