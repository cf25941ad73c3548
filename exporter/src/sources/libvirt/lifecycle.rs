//! Lifecycle events, pure: libvirt's (event, detail) numbers -> label values, and the book
//! that counts them per domain.
//!
//! Invariants the book keeps:
//! - the label set is bounded: a domain is kept while libvirt lists it and for the grace period
//!   after it was last seen, then dropped with its counts;
//! - the pairs alerts use ([`LifecycleEvent::ALERT_PAIRS`]) exist at 0 from the first time a domain is seen, so
//!   that `increase()` sees a new domain's first crash;
//! - counts only grow while a domain is kept.
//!
//! `DEFINED` and `UNDEFINED` are configuration changes, not lifecycle: they are not counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::snapshot::{DepartedGuest, DomainEvents, Guest, LifecycleEvent, NovaMetadata};

fn pair(event: &'static str, reason: &'static str) -> LifecycleEvent {
    LifecycleEvent { event, reason }
}

/// Label values of libvirt's `virDomainEventType` and its detail; `None` for the events not
/// counted (defined, undefined). A number this table does not know becomes `unknown`, so a
/// newer libvirt cannot grow the label set beyond one value per event.
pub fn label(event: i32, detail: i32) -> Option<LifecycleEvent> {
    let (event, details): (&'static str, &[&'static str]) = match event {
        0 | 1 => return None,
        2 => (
            "started",
            &[
                "booted",
                "migrated",
                "restored",
                "from_snapshot",
                "wakeup",
                "recreated",
            ],
        ),
        3 => (
            "suspended",
            &[
                "paused",
                "migrated",
                "ioerror",
                "watchdog",
                "restored",
                "from_snapshot",
                "api_error",
                "postcopy",
                "postcopy_failed",
                "guest_shutdown",
            ],
        ),
        4 => (
            "resumed",
            &[
                "unpaused",
                "migrated",
                "from_snapshot",
                "postcopy",
                "postcopy_failed",
            ],
        ),
        5 => (
            "stopped",
            &[
                "shutdown",
                "destroyed",
                "crashed",
                "migrated",
                "saved",
                "failed",
                "from_snapshot",
                "recreated",
            ],
        ),
        6 => ("shutdown", &["finished", "guest", "host"]),
        7 => ("pmsuspended", &["memory", "disk"]),
        8 => ("crashed", &["panicked", "crashloaded"]),
        _ => ("unknown", &[]),
    };
    let reason = usize::try_from(detail)
        .ok()
        .and_then(|d| details.get(d).copied())
        .unwrap_or("unknown");
    Some(pair(event, reason))
}

#[derive(Debug, Default)]
struct Entry {
    counts: BTreeMap<LifecycleEvent, u64>,
    openstack: Option<NovaMetadata>,
    /// When a refresh first missed the domain; `None` while libvirt lists it.
    gone_since: Option<Instant>,
}

/// Lifecycle events per domain name, counted since start.
#[derive(Debug)]
pub struct EventBook {
    grace: Duration,
    domains: HashMap<String, Entry>,
}

impl EventBook {
    /// A book that keeps a gone domain for `grace`.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            domains: HashMap::new(),
        }
    }

    /// Counts one event of `domain`; `event` and `detail` are libvirt's numbers.
    pub fn record(&mut self, domain: &str, event: i32, detail: i32) {
        let Some(kind) = label(event, detail) else {
            return;
        };
        let entry = self.domains.entry(domain.to_string()).or_default();
        *entry.counts.entry(kind).or_default() += 1;
    }

    /// A refresh listed `guests` at `now`: they are present (alert pairs at 0, metadata kept);
    /// every other domain is gone, and dropped once gone for longer than the grace period.
    pub fn observe(&mut self, guests: &[Guest], now: Instant) {
        for g in guests {
            let entry = self.domains.entry(g.name.clone()).or_default();
            for kind in LifecycleEvent::ALERT_PAIRS {
                entry.counts.entry(kind).or_default();
            }
            entry.openstack.clone_from(&g.openstack);
            entry.gone_since = None;
        }
        let present: HashSet<&str> = guests.iter().map(|g| g.name.as_str()).collect();
        let grace = self.grace;
        self.domains.retain(|name, e| {
            if present.contains(name.as_str()) {
                return true;
            }
            let since = *e.gone_since.get_or_insert(now);
            now.saturating_duration_since(since) <= grace
        });
    }

    /// Every kept domain's counts, by name.
    pub fn events(&self) -> Vec<DomainEvents> {
        let mut out: Vec<DomainEvents> = self
            .domains
            .iter()
            .filter(|(_, e)| !e.counts.is_empty())
            .map(|(name, e)| DomainEvents {
                domain: name.clone(),
                counts: e.counts.iter().map(|(k, v)| (*k, *v)).collect(),
            })
            .collect();
        out.sort_by(|a, b| a.domain.cmp(&b.domain));
        out
    }

    /// The domains gone within the grace period, by name.
    pub fn departed(&self) -> Vec<DepartedGuest> {
        let mut out: Vec<DepartedGuest> = self
            .domains
            .iter()
            .filter(|(_, e)| e.gone_since.is_some())
            .map(|(name, e)| DepartedGuest {
                name: name.clone(),
                openstack: e.openstack.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests;
