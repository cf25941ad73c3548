//! Shared state between the refresh tasks and the HTTP server.
//!
//! Every source owns a slot holding its last good fragment and its refresh status. After each
//! refresh the hub rebuilds the exposition from all slots plus the self-metrics and swaps it in
//! whole, so a scrape never sees a half-updated exposition and never waits for a source.
//! Publishing is serialized by the slot lock, so a slower publish can never overwrite a newer
//! one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use crate::exposition::{Exposition, Format, Fragment};
use crate::render;
pub use crate::snapshot::health::SourceStatus;

#[derive(Debug)]
struct Slot {
    status: SourceStatus,
    /// The last good data, kept while later refreshes fail.
    fragment: Option<Fragment>,
    /// What the next render of the source may reuse (it carries its own text, so it holds
    /// even if it is older than `fragment`).
    memo: Option<render::Memo>,
    /// The source's own metrics, current whether or not its last refresh succeeded.
    source_metrics: Option<Fragment>,
}

/// What the server reads and the refresh tasks write.
#[derive(Debug)]
pub struct Hub {
    version: &'static str,
    slots: Mutex<Vec<Slot>>,
    /// What handlers read: swapped whole, never waits for a publish in progress.
    published: RwLock<Published>,
    /// A client has asked for the classic format: later publishes translate and gzip it
    /// ahead (on the refresh's thread), so no scrape waits for that work.
    classic_wanted: AtomicBool,
}

#[derive(Debug, Clone)]
struct Published {
    exposition: Arc<Exposition>,
    /// Every source has produced data at least once.
    ready: bool,
}

/// Names one source's slot in the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotId(usize);

impl Hub {
    /// A hub with no sources; `version` goes into `site_exporter_build_info`.
    pub fn new(version: &'static str) -> Self {
        let hub = Self {
            version,
            slots: Mutex::new(Vec::new()),
            published: RwLock::new(Published {
                exposition: Arc::new(Exposition::default()),
                ready: true,
            }),
            classic_wanted: AtomicBool::new(false),
        };
        hub.publish(&hub.lock_slots());
        hub
    }

    /// Adds a source that has not produced data yet.
    pub fn register(&self, name: &'static str) -> SlotId {
        let mut slots = self.lock_slots();
        slots.push(Slot {
            status: SourceStatus {
                name,
                up: false,
                last_success: None,
                last_duration: None,
                errors: 0,
                panics: 0,
                last_error: None,
            },
            fragment: None,
            memo: None,
            source_metrics: None,
        });
        self.publish(&slots);
        SlotId(slots.len() - 1)
    }

    /// Records a successful refresh and publishes its data.
    pub fn succeeded(&self, id: SlotId, fragment: Fragment, at: SystemTime, took: Duration) {
        let mut slots = self.lock_slots();
        let slot = &mut slots[id.0];
        slot.fragment = Some(fragment);
        slot.status.up = true;
        slot.status.last_error = None;
        slot.status.last_success = Some(at);
        slot.status.last_duration = Some(took);
        self.publish(&slots);
    }

    /// The slot's last good fragment, whose compressed blocks the next one may reuse.
    pub fn fragment(&self, id: SlotId) -> Option<Fragment> {
        self.lock_slots()[id.0].fragment.clone()
    }

    /// The memo of the slot's last render, for the next render.
    pub fn memo(&self, id: SlotId) -> Option<render::Memo> {
        self.lock_slots()[id.0].memo.clone()
    }

    /// Keeps the memo of a render for the next one.
    pub fn keep_memo(&self, id: SlotId, memo: render::Memo) {
        self.lock_slots()[id.0].memo = Some(memo);
    }

    /// Records a failed refresh; the source's last good data stays published.
    pub fn failed(&self, id: SlotId, took: Duration, error: String) {
        let mut slots = self.lock_slots();
        let slot = &mut slots[id.0];
        slot.status.up = false;
        slot.status.last_error = Some(error);
        slot.status.errors += 1;
        slot.status.last_duration = Some(took);
        self.publish(&slots);
    }

    /// Records that the source's task panicked: down until a rebuilt source refreshes; its
    /// last good data stays published.
    pub fn panicked(&self, id: SlotId, message: &str) {
        let mut slots = self.lock_slots();
        let slot = &mut slots[id.0];
        slot.status.up = false;
        slot.status.last_error = Some(format!("panicked: {message}"));
        slot.status.panics += 1;
        self.publish(&slots);
    }

    /// Sets the source's own metrics; published with the next `succeeded` or `failed`.
    pub fn stage_source_metrics(&self, id: SlotId, fragment: Fragment) {
        self.lock_slots()[id.0].source_metrics = Some(fragment);
    }

    /// True once every registered source has produced data at least once.
    pub fn ready(&self) -> bool {
        self.read_published().ready
    }

    /// What `/-/ready` says while not ready: each source without data yet, and why its last
    /// refresh failed (the portal's start date, the weights, OpenStack, ...).
    pub fn waiting_for(&self) -> String {
        let mut out = String::from("not ready; waiting for the first data of:\n");
        for slot in self.lock_slots().iter().filter(|s| s.fragment.is_none()) {
            let why = match &slot.status.last_error {
                Some(e) => format!("last refresh failed: {e}"),
                None => "no refresh finished yet".to_owned(),
            };
            out.push_str(&format!("- {} ({why})\n", slot.status.name));
        }
        out
    }

    /// The refresh status of every source, in registration order.
    pub fn statuses(&self) -> Vec<SourceStatus> {
        self.lock_slots().iter().map(|s| s.status.clone()).collect()
    }

    /// The exposition to serve now.
    pub fn exposition(&self) -> Arc<Exposition> {
        self.read_published().exposition
    }

    /// The exposition to serve now in `format`; asking for the classic format once makes
    /// every later publish prepare it.
    pub fn exposition_for(&self, format: Format) -> Arc<Exposition> {
        if format == Format::Classic {
            self.classic_wanted.store(true, Ordering::Relaxed);
        }
        self.exposition()
    }

    fn read_published(&self) -> Published {
        self.published
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn publish(&self, slots: &[Slot]) {
        let statuses: Vec<SourceStatus> = slots.iter().map(|s| s.status.clone()).collect();
        let own = Fragment::from_openmetrics(render::self_metrics(self.version, &statuses));
        let exposition = Exposition::build(
            slots
                .iter()
                .filter_map(|s| s.fragment.as_ref())
                .chain(slots.iter().filter_map(|s| s.source_metrics.as_ref()))
                .chain(std::iter::once(&own)),
        );
        if self.classic_wanted.load(Ordering::Relaxed) {
            exposition.prepare_classic();
        }
        let ready = slots.iter().all(|s| s.fragment.is_some());
        *self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Published {
            exposition: Arc::new(exposition),
            ready,
        };
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // A panic while holding the lock cannot leave a slot half-written (each update is a
        // few field assignments), so the data is still good.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_body_is_prepared_ahead_once_a_client_asked_for_it() {
        let hub = Hub::new("test");
        let slot = hub.register("dummy");
        let refresh = |value: u32| {
            let text = format!("# HELP a A\n# TYPE a counter\na_total {value}\n");
            hub.succeeded(
                slot,
                Fragment::from_openmetrics(text),
                SystemTime::now(),
                Duration::ZERO,
            );
        };
        refresh(1);
        assert!(!hub.exposition_for(Format::OpenMetrics).classic_prepared());
        refresh(2);
        assert!(
            !hub.exposition().classic_prepared(),
            "nobody asked for classic: not made"
        );
        assert!(!hub.exposition_for(Format::Classic).classic_prepared());
        refresh(3);
        let exposition = hub.exposition();
        assert!(exposition.classic_prepared(), "made before publishing");
        let body = exposition.body(Format::Classic, false).to_bytes();
        assert!(
            body.starts_with(b"# HELP a_total A\n# TYPE a_total counter\na_total 3\n"),
            "{body:?}"
        );
    }
}
