//! Background refresh of one source: interval, timeout, backoff, last good data.
//!
//! `/metrics` never calls a source. Each source runs in its own task, on the runtime given to
//! [`spawn`] (the binary gives the sources a runtime of their own, so that a collection's CPU
//! work never holds up a scrape): collect under a timeout, render the result on the blocking
//! pool, hand it to the hub. A failed or timed-out refresh
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

/// Registers a source with the hub and refreshes it forever, under supervision: `build`
/// makes the source (from its configuration and, for OpenStack, its state file); a panic in
/// the source is caught, logged with the source's name, counted in
/// `site_exporter_source_panics_total`, reported as down, and answered by building the source
/// afresh after the usual backoff, never by resuming its half-changed memory. The last good
/// data stays published meanwhile, its age visible in the last-success timestamp. Aborting
/// the returned task stops the source too. The source runs on `runtime`.
pub fn spawn<S, E, F>(
    name: &'static str,
    mut build: F,
    schedule: Schedule,
    hub: Arc<Hub>,
    options: RenderOptions,
    runtime: &tokio::runtime::Handle,
) -> tokio::task::JoinHandle<()>
where
    S: Source,
    E: std::fmt::Display + Send,
    F: FnMut() -> Result<S, E> + Send + 'static,
{
    let slot = hub.register(name);
    runtime.spawn(async move {
        let mut panics: u32 = 0;
        loop {
            // A panic while building is caught too: this task must not die unnoticed.
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut build));
            let source = match built {
                Ok(Ok(source)) => source,
                Ok(Err(error)) => {
                    tracing::error!(source = name, %error, "cannot build the source; retrying");
                    hub.failed(
                        slot,
                        Duration::ZERO,
                        format!("cannot build the source: {error}"),
                    );
                    panics = panics.saturating_add(1);
                    tokio::time::sleep(next_delay(schedule.interval, panics)).await;
                    continue;
                }
                Err(payload) => {
                    let message = panic_message(payload);
                    tracing::error!(source = name, panic = %message, "building the source panicked; retrying");
                    hub.panicked(slot, &message);
                    panics = panics.saturating_add(1);
                    tokio::time::sleep(next_delay(schedule.interval, panics)).await;
                    continue;
                }
            };
            let mut task = AbortOnDrop(tokio::spawn(run(
                source,
                schedule,
                Arc::clone(&hub),
                slot,
                options,
            )));
            let outcome = (&mut task.0).await;
            match outcome {
                Err(e) if e.is_panic() => {
                    let message = panic_message(e.into_panic());
                    tracing::error!(source = name, panic = %message, "the source panicked; rebuilding it");
                    hub.panicked(slot, &message);
                    panics = panics.saturating_add(1);
                    tokio::time::sleep(next_delay(schedule.interval, panics)).await;
                }
                // Cancelled (the runtime is shutting down) or, impossibly, returned.
                _ => return,
            }
        }
    })
}

/// Aborts the inner task when the supervisor itself is aborted or dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The text a panic was raised with, when it has one.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Refreshes `source` until it panics or the task is aborted.
async fn run<S: Source>(
    mut source: S,
    schedule: Schedule,
    hub: Arc<Hub>,
    slot: SlotId,
    options: RenderOptions,
) {
    let mut failures: u32 = 0;
    loop {
        let ok = refresh_once(&mut source, schedule, &hub, slot, options).await;
        failures = if ok { 0 } else { failures.saturating_add(1) };
        tokio::time::sleep(next_delay(schedule.interval, failures)).await;
    }
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
                let previous = hub.fragment(slot);
                // Pieces whose values did not change keep the previous text, not encoded
                // again...
                let memo = hub.memo(slot);
                let (text, memo) = render::source_data_after(data, options, memo.as_ref());
                // ...and their compressed bytes.
                let fragment = Fragment::from_layout(text, &memo.cuts(), previous.as_ref());
                if let Some((units, copied)) = memo.projects_units() {
                    let (parts, held) = fragment.held();
                    tracing::debug!(
                        source = name,
                        units,
                        copied,
                        bytes = fragment.len(),
                        parts,
                        held,
                        "projects families rendered"
                    );
                }
                drop(previous);
                hub.keep_memo(slot, memo.with_fragment(fragment.clone()));
                hub.succeeded(slot, fragment, now, started.elapsed());
                // The previous fragment's buffers that the new one does not share were just
                // freed: give them back, so that resident memory follows what is live.
                crate::allocator::release_free_memory();
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
            let error = error.to_string();
            let _ = tokio::task::spawn_blocking(move || hub.failed(slot, started.elapsed(), error))
                .await;
            false
        }
        Err(_) => {
            tracing::warn!(
                source = name,
                timeout = ?schedule.timeout,
                "refresh timed out; keeping the last good data"
            );
            let error = format!("timed out after {:?}", schedule.timeout);
            let _ = tokio::task::spawn_blocking(move || hub.failed(slot, started.elapsed(), error))
                .await;
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
        Panic,
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
                        }
                        .into(),
                        totals: Default::default(),
                        allocation: Default::default(),
                        instances: Default::default(),
                        quota: None,
                        stopped: Default::default(),
                    }],
                })),
                Step::Fail => Err(Failure),
                Step::Hang => std::future::pending().await,
                Step::Panic => panic!("scripted panic"),
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

    /// A source whose collection holds its thread, as CPU work does, until `release` says so;
    /// it fails if that takes 10 s.
    struct Busy {
        entered: std::sync::mpsc::Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
    }

    impl Source for Busy {
        type Error = Failure;

        fn name(&self) -> &'static str {
            "busy"
        }

        async fn collect(&mut self, now: SystemTime) -> Result<SourceData, Failure> {
            let _ = self.entered.send(());
            match self.release.recv_timeout(Duration::from_secs(10)) {
                Ok(()) => {
                    let mut done = Scripted {
                        script: vec![Step::Data("released")],
                    };
                    done.collect(now).await
                }
                Err(_) => Err(Failure),
            }
        }
    }

    #[test]
    fn a_source_holding_its_thread_does_not_hold_up_the_runtime_that_serves() {
        // The serving runtime has one thread: were the source run there, nothing else could run
        // while it holds it, the release below would come after its 10 s, and it would fail.
        let serving = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sources = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let hub = Arc::new(Hub::new("test"));
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let mut busy = Some(Busy {
            entered: entered_tx,
            release: release_rx,
        });
        let schedule = Schedule {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(30),
        };
        serving.block_on(async {
            let task = spawn(
                "busy",
                move || busy.take().ok_or(Failure),
                schedule,
                Arc::clone(&hub),
                RenderOptions::default(),
                sources.handle(),
            );
            let waited =
                tokio::task::spawn_blocking(move || entered.recv_timeout(Duration::from_secs(30)));
            waited
                .await
                .unwrap()
                .expect("the source started collecting");
            // The serving runtime runs a task of its own while the source holds its thread.
            tokio::spawn(async {}).await.unwrap();
            release.send(()).unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !body(&hub).contains("project_name=\"released\"") {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no data from the released source: {}",
                    body(&hub)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Released in time: the first collection succeeded, not a retry after it failed.
            let b = body(&hub);
            assert!(
                b.contains("site_exporter_source_refresh_errors_total{source=\"busy\"} 0\n"),
                "{b}"
            );
            task.abort();
        });
        sources.shutdown_timeout(Duration::from_secs(5));
    }

    /// A source built from a shared script: `Panic` steps panic inside `collect`.
    struct Shared {
        script: Arc<std::sync::Mutex<Vec<Step>>>,
    }

    impl Source for Shared {
        type Error = Failure;

        fn name(&self) -> &'static str {
            "scripted"
        }

        async fn collect(&mut self, now: SystemTime) -> Result<SourceData, Failure> {
            let step = {
                let mut script = self.script.lock().unwrap();
                if script.is_empty() {
                    Step::Data("steady")
                } else {
                    script.remove(0)
                }
            };
            if let Step::Panic = step {
                panic!("scripted panic");
            }
            Scripted { script: vec![step] }.collect(now).await
        }
    }

    /// A supervised `Shared` source on `script`; also returns how many sources were built.
    fn spawn_scripted(
        hub: &Arc<Hub>,
        script: Vec<Step>,
    ) -> (
        tokio::task::JoinHandle<()>,
        Arc<std::sync::atomic::AtomicU32>,
    ) {
        let script = Arc::new(std::sync::Mutex::new(script));
        let builds = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let b = Arc::clone(&builds);
        let task = spawn(
            "scripted",
            move || {
                b.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, Failure>(Shared {
                    script: Arc::clone(&script),
                })
            },
            Schedule {
                interval: Duration::from_secs(15),
                timeout: Duration::from_secs(5),
            },
            Arc::clone(hub),
            RenderOptions::default(),
            &tokio::runtime::Handle::current(),
        );
        (task, builds)
    }

    /// Waits (in paused time) until the exposition satisfies `ok`.
    async fn until(hub: &Hub, ok: impl Fn(&str) -> bool) -> String {
        for _ in 0..600 {
            let b = body(hub);
            if ok(&b) {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("condition never held: {}", body(hub));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_source_is_counted_reported_down_and_rebuilt() {
        struct Case {
            name: &'static str,
            script: Vec<Step>,
            /// After the panics: the text that must appear.
            want: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "panics once, then works",
                script: vec![Step::Data("first"), Step::Panic],
                want: &[
                    "site_exporter_source_panics_total{source=\"scripted\"} 1\n",
                    "site_exporter_source_up{source=\"scripted\"} 1\n",
                    "project_name=\"steady\"",
                ],
            },
            Case {
                name: "panics every time after one success",
                script: std::iter::once(Step::Data("first"))
                    .chain((0..1000).map(|_| Step::Panic))
                    .collect(),
                want: &[
                    "site_exporter_source_panics_total{source=\"scripted\"} 5\n",
                    "site_exporter_source_up{source=\"scripted\"} 0\n",
                    // The last good data stays, with its age in the last-success time.
                    "project_name=\"first\"",
                    "site_exporter_source_last_success_timestamp_seconds{source=\"scripted\"}",
                ],
            },
        ];
        for case in cases {
            let hub = Arc::new(Hub::new("test"));
            let (task, builds) = spawn_scripted(&hub, case.script);
            let got = until(&hub, |b| case.want.iter().all(|w| b.contains(w))).await;
            assert!(hub.ready(), "{}: data once means ready", case.name);
            // Each panic was answered by a fresh source, never by the old one (the latest
            // may still be waiting out its backoff).
            let panics = hub.statuses()[0].panics;
            let built = u64::from(builds.load(std::sync::atomic::Ordering::SeqCst));
            assert!(
                built == panics || built == panics + 1,
                "{}: {built} builds, {panics} panics: {got}",
                case.name
            );
            task.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_that_panics_before_any_data_is_not_ready_and_keeps_being_retried() {
        let hub = Arc::new(Hub::new("test"));
        let task = spawn(
            "scripted",
            || -> Result<Shared, Failure> { panic!("build panics are the caller's") },
            Schedule {
                interval: Duration::from_secs(15),
                timeout: Duration::from_secs(5),
            },
            Arc::clone(&hub),
            RenderOptions::default(),
            &tokio::runtime::Handle::current(),
        );
        // A panic while building is caught, counted and retried like any other.
        until(&hub, |b| {
            b.contains("site_exporter_source_panics_total{source=\"scripted\"} 2\n")
        })
        .await;
        assert!(!hub.ready());
        assert!(!task.is_finished());
        task.abort();

        let hub = Arc::new(Hub::new("test"));
        let (task, _) = spawn_scripted(&hub, (0..1000).map(|_| Step::Panic).collect());
        until(&hub, |b| {
            b.contains("site_exporter_source_panics_total{source=\"scripted\"} 3\n")
        })
        .await;
        assert!(!hub.ready(), "never produced data: not ready");
        assert!(body(&hub).contains("site_exporter_source_up{source=\"scripted\"} 0\n"));
        task.abort();
    }

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let interval = Duration::from_secs(15);
        let delays: Vec<u64> = (0..7).map(|f| next_delay(interval, f).as_secs()).collect();
        assert_eq!(delays, [15, 1, 2, 4, 8, 15, 15]);
        assert_eq!(next_delay(interval, u32::MAX), interval);
    }
}
