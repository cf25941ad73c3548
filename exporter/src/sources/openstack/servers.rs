//! The server table of the incremental refresh, and Nova's usage arithmetic on it. Pure: the
//! caller reads Nova and the clock.
//!
//! The table holds every server a full `/servers/detail` listing returned, merged with every
//! `changes-since` listing after it (a server listed again replaces its entry; a deleted one
//! stays, `status: DELETED`, until its last window has been counted). From it, the usage of a
//! window `[start, end)` is computed exactly as `os-simple-tenant-usage` computes it
//! (nova/api/openstack/compute/simple_tenant_usage.py, Nova 34):
//! - `instance_get_active_by_window_joined` returns the servers with `launched_at < end` and
//!   (`terminated_at` null or `> start`), deleted ones included, ordered by project and id;
//!   a server that never launched is not returned;
//! - `_hours_for`: from `max(launched_at, start)` to `min(end, terminated_at)`, in
//!   microseconds, `total_seconds() / 3600.0`;
//! - sizes from the server's current flavor, `local_gb` = root + ephemeral; `started_at` is
//!   `launched_at`.
//!
//! The window is computed straight into the accounting's form ([`nova::ProjectWindow`]):
//! what Nova's answer also says but the accounting does not use (names, flavor name,
//! `state`, `ended_at`) is neither computed nor compared at reconciliation.
//!
//! Nova restarts `launched_at` at a resize, a resize revert and an unshelve, and its answer for
//! a past window uses the value it holds when asked; the table holds the latest value too, so
//! both agree (including a change inside the window: the hours before it are lost on both
//! sides). A server whose listing lacks what the arithmetic needs (no embedded flavor, a time
//! that does not parse) makes the window [`Inexact`]; the caller then asks Nova.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use super::compact::ServerId;
use super::nova::{self, Listed, ListedSize, ListedValues, ProjectWindow, ServerWindow};

/// Seconds subtracted from the largest `updated` seen to form the next `changes-since`
/// bound. `updated_at` is whole seconds and compared with `>=`, so a later change in the same
/// second is caught without overlap; the overlap covers writers whose clocks lag the one
/// that wrote the largest value (API, conductor and computes each stamp `updated_at`) and
/// transactions stamped before, but committed after, our listing. Servers changed within it
/// are listed twice, which the merge absorbs.
pub const OVERLAP_SECONDS: i64 = 60;

/// Why the table cannot compute a window exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inexact {
    #[error("server {0}: no embedded flavor (Nova older than microversion 2.47)")]
    NoFlavor(String),
    #[error("server {id}: {field} '{value}' is not a time")]
    BadTime {
        id: String,
        field: &'static str,
        value: String,
    },
}

/// A listed time, or why the window cannot use it.
fn time(
    l: &Listed,
    field: &'static str,
    t: &Result<Option<i64>, Box<str>>,
) -> Result<Option<i64>, Inexact> {
    t.clone().map_err(|value| Inexact::BadTime {
        id: l.id.to_text(),
        field,
        value: value.into(),
    })
}

/// The servers known from the last full listing and the changes since, in compact form
/// ([`Listed`]: about 200 bytes each, project ids, statuses and metadata shared).
#[derive(Debug, Clone, Default)]
pub struct ServerTable {
    entries: BTreeMap<ServerId, Listed>,
    /// The values the entries share.
    values: ListedValues,
    /// Largest `updated` seen, seconds since 1970 (Nova's clock).
    max_updated: Option<i64>,
    /// Servers whose metadata the accounting has not taken in since their entry last
    /// changed (merged, or listed in full).
    unnoted: BTreeSet<ServerId>,
}

/// Equal entries and bound (how the values are shared does not matter).
impl PartialEq for ServerTable {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
            && self.max_updated == other.max_updated
            && self.unnoted == other.unnoted
    }
}

/// What a reconciliation found: servers whose window usage differs from Nova's answer (or
/// that only one side has), servers the table had that the full listing lacks (archived
/// between refreshes), servers the listing has that the table lacked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disagreements {
    pub usage: Vec<String>,
    pub archived: Vec<String>,
    pub untracked: Vec<String>,
}

impl Disagreements {
    /// `(kind, ids)` for the metric and the log.
    pub fn kinds(&self) -> [(&'static str, &[String]); 3] {
        [
            ("usage", &self.usage),
            ("archived", &self.archived),
            ("untracked", &self.untracked),
        ]
    }
}

impl ServerTable {
    /// The table of a full listing (existing servers only).
    pub fn from_listing(servers: Vec<Listed>) -> Self {
        let mut t = Self::default();
        t.merge(servers);
        t
    }

    /// Takes in a `changes-since` listing: each server replaces its entry.
    pub fn merge(&mut self, servers: Vec<Listed>) {
        for mut s in servers {
            self.max_updated = self.max_updated.max(s.updated);
            self.values.adopt(&mut s);
            self.unnoted.insert(s.id.clone());
            self.entries.insert(s.id.clone(), s);
        }
    }

    /// The next `changes-since` bound, seconds since 1970: the largest `updated` seen, capped
    /// at `cap` (the end of the window the listing was read for, in case our clock is behind
    /// Nova's), minus [`OVERLAP_SECONDS`]. With no server seen yet, `cap` minus the overlap.
    pub fn changes_since(&self, cap: i64) -> i64 {
        self.max_updated.map_or(cap, |u| u.min(cap)) - OVERLAP_SECONDS
    }

    /// The existing servers (deleted ones left out), in id order.
    pub fn live(&self) -> impl Iterator<Item = &Listed> + Clone {
        self.entries.values().filter(|e| !e.deleted())
    }

    /// The existing servers whose metadata the accounting has not taken in since their entry
    /// changed, in id order.
    pub fn unnoted(&self) -> impl Iterator<Item = &Listed> {
        self.unnoted
            .iter()
            .filter_map(|id| self.entries.get(id))
            .filter(|e| !e.deleted())
    }

    /// The accounting took in the metadata of [`ServerTable::unnoted`] except `missing`
    /// (servers it has no record of yet: they stay to be taken in at a later refresh).
    pub fn noted(&mut self, missing: impl IntoIterator<Item = ServerId>) {
        self.unnoted = missing.into_iter().collect();
    }

    /// Makes every entry unnoted, as after a full listing.
    pub fn renote_all(&mut self) {
        self.unnoted = self.entries.keys().cloned().collect();
    }

    /// Number of entries, deleted ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no server.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets deleted servers whose last window ended at `end` (seconds since 1970): those
    /// terminated by then, and those that never launched; and the values no server holds.
    pub fn prune(&mut self, end: i64) {
        let end = end.saturating_mul(1_000_000);
        self.entries.retain(|_, e| {
            !e.deleted()
                || match (&e.launched, &e.terminated) {
                    (Ok(None), _) => false,
                    (_, Ok(Some(t))) => *t > end,
                    _ => true,
                }
        });
        self.values.forget_unused();
    }

    /// Nova's answer for `[start, end)` (seconds since 1970) in the accounting's form,
    /// projects in Nova's order.
    pub fn window(&self, start: i64, end: i64) -> Result<Vec<ProjectWindow>, Inexact> {
        let (start, end) = (
            start.saturating_mul(1_000_000),
            end.saturating_mul(1_000_000),
        );
        // Entries come in id order, so each project's servers do: gathered by project, then
        // the projects ordered, it is Nova's `paginate_query(..., ['project_id', 'uuid'])`
        // order, and the running sums add in the same order as when Nova's answer is applied
        // (a ServerId orders as its text).
        // Gathered by the address of the shared project id (one copy per table).
        let mut groups: Vec<(&str, Vec<ServerWindow>)> = Vec::new();
        let mut group_of: HashMap<*const u8, usize> = HashMap::new();
        for e in self.entries.values() {
            let launched = time(e, "launched_at", &e.launched)?;
            let terminated = time(e, "terminated_at", &e.terminated)?;
            if let Some(u) = usage(e, launched, terminated, start, end)? {
                let g = *group_of
                    .entry(Arc::as_ptr(&e.project).cast::<u8>())
                    .or_insert_with(|| {
                        groups.push((&e.project, Vec::new()));
                        groups.len() - 1
                    });
                groups[g].1.push(u);
            }
        }
        groups.sort_by(|a, b| a.0.cmp(b.0));
        let mut out: Vec<ProjectWindow> = Vec::with_capacity(groups.len());
        for (project, servers) in groups {
            match out.last_mut() {
                // The same id in two copies: one group, still in id order.
                Some(last) if last.project_id == project => {
                    last.servers.extend(servers);
                    last.servers.sort_by(|a, b| a.id.cmp(&b.id));
                }
                _ => out.push(ProjectWindow {
                    project_id: project.to_owned(),
                    servers,
                }),
            }
        }
        Ok(out)
    }

    /// The table after a full listing: the listing's servers, plus this table's deleted
    /// servers whose last window is still to count (a full listing leaves deleted servers
    /// out). The `changes-since` bound stays this table's when it has one: anything changed
    /// after its last merge has an `updated` at or after it.
    pub fn rebuilt(self, listing: ServerTable) -> ServerTable {
        let mut t = listing;
        for (id, mut e) in self.entries {
            if e.deleted() && !t.entries.contains_key(&id) {
                t.values.adopt(&mut e);
                t.entries.insert(id, e);
            }
        }
        if self.max_updated.is_some() {
            t.max_updated = self.max_updated;
        }
        t
    }

    /// Servers the table has (existing) that `listing` lacks, and the other way round.
    pub fn membership(&self, listing: &ServerTable) -> (Vec<String>, Vec<String>) {
        let archived = self
            .live()
            .filter(|s| !listing.entries.contains_key(&s.id))
            .map(|s| s.id.to_text())
            .collect();
        let untracked = listing
            .live()
            .filter(|s| self.entries.get(&s.id).is_none_or(Listed::deleted))
            .map(|s| s.id.to_text())
            .collect();
        (archived, untracked)
    }
}

/// Hours of one server in `[start, end)` (microseconds), Nova's `_hours_for` on the servers
/// its window query returns; `None` for the ones it does not return.
pub fn hours(launched: Option<i64>, terminated: Option<i64>, start: i64, end: i64) -> Option<f64> {
    let launched = launched?;
    if launched >= end || terminated.is_some_and(|t| t <= start) {
        return None;
    }
    let from = launched.max(start);
    let to = terminated.map_or(end, |t| t.min(end));
    // timedelta.total_seconds(): integer microseconds / 10**6, correctly rounded, as here
    // (the difference is far below 2^53).
    Some((to - from) as f64 / 1e6 / 3600.0)
}

fn usage(
    e: &Listed,
    launched: Option<i64>,
    terminated: Option<i64>,
    start: i64,
    end: i64,
) -> Result<Option<ServerWindow>, Inexact> {
    let Some(h) = hours(launched, terminated, start, end) else {
        return Ok(None);
    };
    let f = match &e.size {
        ListedSize::Embedded(f) => f,
        ListedSize::Reference(_) => return Err(Inexact::NoFlavor(e.id.to_text())),
    };
    Ok(Some(ServerWindow {
        id: e.id.clone(),
        hours: h,
        vcpus: f.vcpus,
        memory_mb: f.ram,
        local_gb: f.disk.saturating_add(f.ephemeral),
        // Nova writes `started_at` from `launched_at`, which `hours` found set.
        started_at: launched.map_or(0.0, nova::started_at_seconds),
    }))
}

/// Servers whose usage in `ours` and `nova` (the same window) differ, or that only one lists,
/// by id text. Compared is what the accounting adds: project, hours (as bits), sizes and the
/// start (as bits); names, flavor name, state and end are not accounted and not compared.
pub fn compare_window(ours: &[ProjectWindow], nova: &[ProjectWindow]) -> Vec<String> {
    let (a, b) = (by_id(ours), by_id(nova));
    let same = |(ta, x): &(&str, &ServerWindow), (tb, y): &(&str, &ServerWindow)| {
        ta == tb
            && x.hours.to_bits() == y.hours.to_bits()
            && (x.vcpus, x.memory_mb, x.local_gb) == (y.vcpus, y.memory_mb, y.local_gb)
            && x.started_at.to_bits() == y.started_at.to_bits()
    };
    let mut ids: Vec<&ServerId> = a
        .iter()
        .filter(|(id, x)| b.get(*id).is_none_or(|y| !same(x, y)))
        .map(|(id, _)| *id)
        .collect();
    ids.extend(b.keys().filter(|id| !a.contains_key(*id)));
    // ServerIds order as their text.
    ids.sort();
    ids.into_iter().map(ServerId::to_text).collect()
}

/// Each server of a window with its project, by id.
fn by_id(usages: &[ProjectWindow]) -> BTreeMap<&ServerId, (&str, &ServerWindow)> {
    usages
        .iter()
        .flat_map(|p| {
            p.servers
                .iter()
                .map(|u| (&u.id, (p.project_id.as_str(), u)))
        })
        .collect()
}

#[cfg(test)]
#[path = "servers/tests.rs"]
mod tests;
