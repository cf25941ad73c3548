//! Servers left stopped or broken (SHUTOFF, SHELVED, SHELVED_OFFLOADED, ERROR): since when
//! each has been in its status, remembered across refreshes and restarts (the state file keeps
//! [`Stopped`] beside the accounting), and bucketed by age per project. Pure: the caller reads
//! the servers list and the clock.
//!
//! Invariants: only servers now in a stopped status are remembered (one status and one
//! timestamp each), so a server that starts again or is deleted is forgotten at the next
//! refresh; a status change resets its time; no remembered time is after the refresh that
//! set it. Where a server's time comes from:
//! - seen stopped at the first refresh (no servers list read before): Nova's `updated`, a
//!   lower bound of how long it has been stopped (anything touching the server moves it);
//! - newly stopped, or in another stopped status, since an earlier refresh: Nova's `updated`
//!   when it lies between that refresh and now (the change touched it), else that refresh's
//!   time, when the server was last seen otherwise.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::nova::{Listed, Sizes};
use crate::snapshot::{Held, StoppedAges, StoppedBucket, STOPPED_STATUSES};

/// What the state file remembers about stopped servers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    /// When the servers list was last read, epoch seconds; `None` before the first time.
    #[serde(default)]
    pub seen_at: Option<u64>,
    /// Servers now in a stopped status, by server id.
    #[serde(default)]
    pub servers: BTreeMap<String, Since>,
}

/// One stopped server: its status (lower case) and since when, epoch seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since {
    pub status: String,
    pub since: u64,
}

/// Per project: the non-empty buckets of its stopped servers.
pub type StoppedByProject = BTreeMap<String, BTreeMap<StoppedBucket, Held>>;

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Stopped {
    /// Takes in the servers listed at `now`: remembers newly stopped ones, keeps the time of
    /// those still in the same status, forgets the others.
    pub fn observe<'a>(&mut self, servers: impl IntoIterator<Item = &'a Listed>, now: SystemTime) {
        let now = epoch_secs(now);
        let mut known = std::mem::take(&mut self.servers).into_iter().peekable();
        let mut next = Vec::new();
        // Both in id order: one walk instead of a lookup per server.
        for s in stopped_in_order(servers) {
            while known
                .next_if(|(id, _)| s.id.cmp_text(id) == Ordering::Greater)
                .is_some()
            {}
            let same = known.next_if(|(id, _)| s.id.cmp_text(id) == Ordering::Equal);
            let entry = match same {
                // A time after `now` (a state file written by a clock ahead) is taken as now.
                Some((id, k)) if is_lower_case_of(&k.status, &s.status) => (
                    id,
                    Since {
                        since: k.since.min(now),
                        status: k.status,
                    },
                ),
                same => (
                    same.map_or_else(|| s.id.to_text(), |(id, _)| id),
                    Since {
                        status: s.status.to_ascii_lowercase(),
                        since: self.first_seen(s, now),
                    },
                ),
            };
            next.push(entry);
        }
        // In order: built in one pass (a server listed twice keeps its last entry).
        self.servers = next.into_iter().collect();
        self.seen_at = Some(now);
    }

    /// The start of a server not remembered in its status; see the module documentation.
    fn first_seen(&self, s: &Listed, now: u64) -> u64 {
        let updated = s
            .updated
            .map(|t| u64::try_from(t).unwrap_or(0))
            .filter(|t| *t <= now);
        match (self.seen_at, updated) {
            (None, Some(t)) => t,
            (None, None) => now,
            (Some(seen), Some(t)) if t >= seen => t,
            (Some(seen), _) => seen.min(now),
        }
    }

    /// The stopped servers of each project in the buckets of `ages` at `now`, with the vCPUs
    /// and memory their flavors hold (nothing when the flavor is unknown, as for the
    /// allocation). Servers not remembered count nowhere.
    pub fn buckets<'a>(
        &self,
        servers: impl IntoIterator<Item = &'a Listed>,
        flavors: &BTreeMap<String, Sizes>,
        ages: &StoppedAges,
        now: SystemTime,
    ) -> StoppedByProject {
        let now = epoch_secs(now);
        let mut out = StoppedByProject::new();
        let mut remembered = self.servers.iter().peekable();
        // Only servers in a stopped status can be remembered (observe saw the same list);
        // both in id order, walked together.
        for s in stopped_in_order(servers) {
            while remembered
                .next_if(|(id, _)| s.id.cmp_text(id) == Ordering::Greater)
                .is_some()
            {}
            let Some((_, known)) = remembered
                .peek()
                .filter(|(id, _)| s.id.cmp_text(id) == Ordering::Equal)
            else {
                continue;
            };
            let size = s.sizes(flavors);
            let held = Held {
                instances: 1,
                vcpus: size.map_or(0, |f| f.vcpus),
                memory_bytes: size.map_or(0, |f| f.ram.saturating_mul(1 << 20)),
            };
            let age = Duration::from_secs(now.saturating_sub(known.since));
            let buckets = match out.get_mut(&*s.project) {
                Some(b) => b,
                None => out.entry(s.project.to_string()).or_default(),
            };
            ages.add(buckets, &known.status, age, held);
        }
        out.retain(|_, b| !b.is_empty());
        out
    }
}

/// The servers in a stopped status, in id order (the table's order; sorted if given in
/// another).
fn stopped_in_order<'a>(servers: impl IntoIterator<Item = &'a Listed>) -> Vec<&'a Listed> {
    let mut stopped: Vec<&Listed> = servers
        .into_iter()
        .filter(|s| stopped_status(&s.status))
        .collect();
    if !stopped.is_sorted_by(|a, b| a.id <= b.id) {
        // Stable: of a server listed twice, the later entry stays later.
        stopped.sort_by(|a, b| a.id.cmp(&b.id));
    }
    stopped
}

/// Whether `lower` is `status` in lower case (statuses are ASCII), without a copy.
fn is_lower_case_of(lower: &str, status: &str) -> bool {
    lower.len() == status.len()
        && lower
            .bytes()
            .zip(status.bytes())
            .all(|(l, s)| l == s.to_ascii_lowercase())
}

/// Whether `status` (any case) is one of [`STOPPED_STATUSES`], without a lower-case copy.
fn stopped_status(status: &str) -> bool {
    STOPPED_STATUSES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(status))
}

#[cfg(test)]
#[path = "stopped/tests.rs"]
mod tests;
