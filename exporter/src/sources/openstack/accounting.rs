//! Running usage totals since `usage_start`, built from consecutive Nova windows.
//!
//! Invariants: windows are contiguous (`[window_end, new_end)`, whole seconds); a window is
//! applied whole or not at all; only non-negative amounts are added, so no counter ever goes
//! backwards. Each server keeps its own compact record (accumulated hours, latest size,
//! start, metadata), with project ids and metadata maps interned ([`super::compact`]): memory
//! follows the number of servers ever seen at about 100 bytes each.
//!
//! With a state file, every change is also noted in a [`Journal`] (hours added, in order;
//! records and totals that changed; new ids), which the state log writes instead of the whole
//! accounting; replaying it on the loaded accounting gives bit-identical numbers.
//!
//! The legacy families are not running sums: release 3.0.0 recomputes them every cycle from
//! Nova's per-server hours over `[usage_start, now)`, each server at its current size (Nova
//! reports the current flavor for all of a server's hours), weighted by the weights in force
//! now. The records hold exactly that — the hours summed over our windows equal Nova's hours
//! over the whole window — so [`Accounting::snapshot`] recomputes the legacy series from them
//! without asking Nova for the whole window again.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::compact::{Interner, Metadata, ServerId};
use super::nova::{ProjectWindow, ServerWindow};
use crate::legacy::{self, LegacyOptions, LegacyServer, ServerHours};
use crate::snapshot::{Project, ProjectUsage, ProjectsSnapshot, UsageTotals};
use crate::weights::Weights;

/// One server's accumulated usage since the accounting start: what the legacy families need.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerRecord {
    /// Index of its project in the project table.
    pub project: u32,
    /// Hours summed over every applied window.
    pub hours: f64,
    /// Size as last reported (a resize changes it; past windows were counted at their size).
    pub vcpus: u64,
    pub memory_mb: u64,
    /// Launch time as last reported, seconds since 1970; 0.0 when unknown (selects the
    /// earliest weights set).
    pub started_at: f64,
    /// Index of its metadata in the metadata table (0: none known).
    pub metadata: u32,
}

impl ServerRecord {
    /// Equal in every bit (hours aside): whether the journal must note a change.
    fn same_fields(&self, other: &Self) -> bool {
        self.project == other.project
            && self.vcpus == other.vcpus
            && self.memory_mb == other.memory_mb
            && self.started_at.to_bits() == other.started_at.to_bits()
            && self.metadata == other.metadata
    }
}

/// A server as callers see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerView<'a> {
    pub project_id: &'a str,
    pub hours: f64,
    pub vcpus: u64,
    pub memory_mb: u64,
    pub started_at: f64,
    pub metadata: &'a Metadata,
}

/// A project's running sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectTotals {
    pub vcpu_seconds: f64,
    pub memory_byte_seconds: f64,
    pub disk_byte_seconds: f64,
    pub instance_seconds: f64,
}

impl ProjectTotals {
    fn add(&mut self, t: UsageTotals) {
        self.vcpu_seconds += t.vcpu_seconds;
        self.memory_byte_seconds += t.memory_byte_seconds;
        self.disk_byte_seconds += t.disk_byte_seconds;
        self.instance_seconds += t.instance_seconds;
    }

    fn usage(&self) -> UsageTotals {
        UsageTotals {
            vcpu_seconds: self.vcpu_seconds,
            memory_byte_seconds: self.memory_byte_seconds,
            disk_byte_seconds: self.disk_byte_seconds,
            instance_seconds: self.instance_seconds,
        }
    }
}

/// What changed since the journal started, in the terms the state log writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Journal {
    /// Table lengths when it started: indexes at or past them are new.
    pub first_project: u32,
    pub first_metadata: u32,
    pub first_server: u32,
    /// Ids of the new servers, in index order.
    pub new_servers: Vec<ServerId>,
    /// Hours added, in the order they were added (replaying them in this order gives the
    /// same floating-point sums).
    pub hours: Vec<(u32, f64)>,
    /// Records whose fields other than hours changed (new ones included).
    pub records: BTreeSet<u32>,
    /// Projects whose totals changed.
    pub projects: BTreeSet<u32>,
}

impl Journal {
    /// Whether nothing but the window end changed.
    pub fn is_empty(&self) -> bool {
        self.new_servers.is_empty()
            && self.hours.is_empty()
            && self.records.is_empty()
            && self.projects.is_empty()
    }
}

/// Everything accumulated since `usage_start`; what the state file stores.
#[derive(Debug, Clone)]
pub struct Accounting {
    /// The accounting epoch, seconds since 1970.
    pub usage_start: u64,
    /// End of the last applied window (exclusive), seconds since 1970.
    pub window_end: u64,
    /// Project ids, interned; `totals` is indexed alike.
    pub(super) projects: Interner<str>,
    pub(super) totals: Vec<ProjectTotals>,
    /// Server id -> index in `records`; iterated in id order for the legacy sums.
    pub(super) index: BTreeMap<ServerId, u32>,
    pub(super) records: Vec<ServerRecord>,
    /// Metadata maps, interned; index 0 is the empty map.
    pub(super) metadata: Interner<Metadata>,
    /// Changes not yet written; `None` when nothing persists them.
    journal: Option<Journal>,
    /// Derived from `index` and `records`: built when first needed, then kept up to date by
    /// [`Accounting::apply_window`], the only writer of both once an accounting is loaded.
    members: std::sync::OnceLock<Members>,
}

/// Each project's servers in id order with their records: the order of the legacy sums, and
/// the order in which a window's servers (by project, then id) are found.
#[derive(Debug, Clone, Default, PartialEq)]
struct Members(Vec<Vec<(ServerId, u32)>>);

impl Members {
    fn of(acc: &Accounting) -> Self {
        let mut counts = vec![0usize; acc.projects.len()];
        for r in &acc.records {
            if let Some(n) = counts.get_mut(r.project as usize) {
                *n += 1;
            }
        }
        let mut lists: Vec<Vec<(ServerId, u32)>> =
            counts.into_iter().map(Vec::with_capacity).collect();
        for (id, &i) in &acc.index {
            let project = acc.records.get(i as usize).map(|r| r.project as usize);
            if let Some(list) = project.and_then(|p| lists.get_mut(p)) {
                list.push((id.clone(), i));
            }
        }
        Self(lists)
    }

    fn of_project(&self, project: u32) -> &[(ServerId, u32)] {
        self.0.get(project as usize).map_or(&[], Vec::as_slice)
    }

    fn insert(&mut self, project: u32, id: &ServerId, i: u32) {
        let p = project as usize;
        if self.0.len() <= p {
            self.0.resize_with(p + 1, Vec::new);
        }
        let list = &mut self.0[p];
        let at = list.partition_point(|(known, _)| known < id);
        list.insert(at, (id.clone(), i));
    }

    fn remove(&mut self, project: u32, i: u32) {
        if let Some(list) = self.0.get_mut(project as usize) {
            list.retain(|(_, j)| *j != i);
        }
    }
}

/// Equal when the same projects have the same totals and the same servers the same records,
/// whatever order the tables were built in.
impl PartialEq for Accounting {
    fn eq(&self, other: &Self) -> bool {
        self.usage_start == other.usage_start
            && self.window_end == other.window_end
            && self.project_map() == other.project_map()
            && self.server_map() == other.server_map()
    }
}

/// A window that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("usage window end {end} is not after the last window end {last}")]
    NotAfter { last: u64, end: u64 },
    #[error(
        "usage of server {server} (project {project}) makes a total that is not a finite number"
    )]
    NotFinite { project: String, server: String },
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Accounting {
    /// Empty accounting starting at `usage_start` (whole seconds).
    pub fn new(usage_start: SystemTime) -> Self {
        Self::empty(epoch_secs(usage_start))
    }

    pub(super) fn empty(usage_start: u64) -> Self {
        let mut metadata = Interner::default();
        metadata.push(Arc::new(Metadata::new()));
        Self {
            usage_start,
            window_end: usage_start,
            projects: Interner::default(),
            totals: Vec::new(),
            index: BTreeMap::new(),
            records: Vec::new(),
            metadata,
            journal: None,
            members: std::sync::OnceLock::new(),
        }
    }

    /// Starts noting changes (see [`Journal`]); the state file calls this once it holds
    /// everything so far.
    pub fn start_journal(&mut self) {
        self.journal = Some(Journal {
            first_project: len_u32(self.projects.len()),
            first_metadata: len_u32(self.metadata.len()),
            first_server: len_u32(self.records.len()),
            ..Journal::default()
        });
    }

    /// The changes noted so far; a new journal starts.
    pub fn take_journal(&mut self) -> Option<Journal> {
        let taken = self.journal.take();
        if taken.is_some() {
            self.start_journal();
        }
        taken
    }

    /// The totals of project `id`, if it ever had usage.
    pub fn project_totals(&self, id: &str) -> Option<ProjectTotals> {
        let i = self.projects.find(id)?;
        self.totals.get(i as usize).copied()
    }

    /// Every project with totals, by id.
    pub fn project_map(&self) -> BTreeMap<&str, ProjectTotals> {
        self.projects
            .iter()
            .zip(self.totals.iter().copied())
            .collect()
    }

    /// The record of server `id`.
    pub fn server(&self, id: &str) -> Option<ServerView<'_>> {
        let i = *self.index.get(&ServerId::new(id))?;
        Some(self.view(&self.records[i as usize]))
    }

    fn view<'a>(&'a self, r: &ServerRecord) -> ServerView<'a> {
        static EMPTY: Metadata = Metadata::new();
        ServerView {
            project_id: self.projects.get(r.project).unwrap_or_default(),
            hours: r.hours,
            vcpus: r.vcpus,
            memory_mb: r.memory_mb,
            started_at: r.started_at,
            metadata: self.metadata.get(r.metadata).unwrap_or(&EMPTY),
        }
    }

    /// Every server record, by id.
    pub fn server_map(&self) -> BTreeMap<&ServerId, ServerView<'_>> {
        self.index
            .iter()
            .map(|(id, &i)| (id, self.view(&self.records[i as usize])))
            .collect()
    }

    /// How many servers have a record.
    pub fn server_count(&self) -> usize {
        self.records.len()
    }

    /// Why a loaded accounting cannot be trusted, if it cannot: times past what the clock
    /// and the formats can hold, or later than `now` allows; sums that are not finite
    /// non-negative numbers; references to tables entries that do not exist. Arithmetic on
    /// such values would panic or count nonsense.
    pub fn implausible(&self, now: SystemTime) -> Option<String> {
        // Whole days of slack for clocks that disagree.
        let latest = epoch_secs(now).saturating_add(86_400);
        if self.window_end < self.usage_start {
            return Some("window end before usage_start".to_owned());
        }
        if self.window_end > latest {
            return Some(format!(
                "window end {} is in the future (now {})",
                self.window_end,
                epoch_secs(now)
            ));
        }
        let bad = |x: f64| !x.is_finite() || x < 0.0;
        if let Some((id, _)) = self.project_map().into_iter().find(|(_, t)| {
            bad(t.vcpu_seconds)
                || bad(t.memory_byte_seconds)
                || bad(t.disk_byte_seconds)
                || bad(t.instance_seconds)
        }) {
            return Some(format!("project {id}: a total is negative or not a number"));
        }
        let projects = self.projects.len();
        let metadata = self.metadata.len();
        let bad_record = |r: &ServerRecord| {
            bad(r.hours)
                || !r.started_at.is_finite()
                || r.project as usize >= projects
                || r.metadata as usize >= metadata
        };
        if let Some((id, _)) = self
            .index
            .iter()
            .find(|(_, &i)| self.records.get(i as usize).is_none_or(bad_record))
        {
            return Some(format!(
                "server {}: hours negative or not a number, or a table index out of range",
                id.to_text()
            ));
        }
        if self.index.len() != self.records.len() || self.totals.len() != projects {
            return Some("tables of different lengths".to_owned());
        }
        None
    }

    /// Start of the next window to query.
    pub fn next_window_start(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.window_end)
    }

    /// Adds the usage of `[window_end, end)`. `usages` may list one project several times
    /// (pages split tenants); every server usage is added once, in the order listed.
    pub fn apply_window(
        &mut self,
        end: SystemTime,
        usages: &[ProjectWindow],
    ) -> Result<(), WindowError> {
        let end = epoch_secs(end);
        if end <= self.window_end {
            return Err(WindowError::NotAfter {
                last: self.window_end,
                end,
            });
        }
        // Each server's record, looked up once for the check and the additions.
        let slots = self.slots(usages);
        self.check_finite(usages, &slots)?;
        let mut slots = slots.into_iter();
        for group in usages {
            let project = self.project_index(&group.project_id);
            for (server, slot) in group.servers.iter().zip(slots.by_ref()) {
                self.add_server(project, server, slot);
            }
        }
        self.window_end = end;
        Ok(())
    }

    /// Each server's record (`None`: new), in the order of `usages`. Few servers are looked up
    /// one by one; many (a window of every live server) are found by walking each group
    /// alongside its project's servers, both in id order, instead of a tree descent (a cache
    /// miss per level) for each. A server out of order or not among its project's (new, or
    /// under another project before) is looked up.
    fn slots(&self, usages: &[ProjectWindow]) -> Vec<Option<u32>> {
        let servers = usages.iter().flat_map(|p| &p.servers);
        let n = servers.clone().count();
        if n < self.index.len() / 16 {
            return servers.map(|u| self.index.get(&u.id).copied()).collect();
        }
        let members = self.members.get_or_init(|| Members::of(self));
        let mut slots = Vec::with_capacity(n);
        for group in usages {
            let known = self
                .projects
                .find(&group.project_id)
                .map_or(&[][..], |p| members.of_project(p));
            let mut known = known.iter().peekable();
            let mut last: Option<&ServerId> = None;
            for u in &group.servers {
                let mut found = None;
                if last.is_none_or(|l| *l <= u.id) {
                    while known.next_if(|(id, _)| *id < u.id).is_some() {}
                    found = known.peek().filter(|(id, _)| *id == u.id).map(|(_, i)| *i);
                    last = Some(&u.id);
                }
                slots.push(found.or_else(|| self.index.get(&u.id).copied()));
            }
        }
        slots
    }

    /// Refuses, before anything is added, a window whose sums would not be finite numbers:
    /// the saved state would be set aside at the next start. `slots` are the servers'
    /// records, in the order of `usages`.
    fn check_finite(
        &self,
        usages: &[ProjectWindow],
        slots: &[Option<u32>],
    ) -> Result<(), WindowError> {
        let mut projects: HashMap<&str, ProjectTotals> = HashMap::new();
        // Hours so far of the servers with a record (by record; NaN: not in the window yet,
        // as record hours are finite), and of new ones (by id).
        let mut known: Vec<f64> = vec![f64::NAN; self.records.len()];
        let mut new: HashMap<&ServerId, f64> = HashMap::new();
        let mut slots = slots.iter();
        for group in usages {
            let p = projects
                .entry(&group.project_id)
                .or_insert_with(|| self.project_totals(&group.project_id).unwrap_or_default());
            for (u, slot) in group.servers.iter().zip(slots.by_ref()) {
                let totals = u.totals();
                p.add(totals);
                let h = match slot {
                    Some(i) => {
                        let h = &mut known[*i as usize];
                        if h.is_nan() {
                            *h = self.records[*i as usize].hours;
                        }
                        h
                    }
                    None => new.entry(&u.id).or_insert(0.0),
                };
                *h += totals.instance_seconds / 3600.0;
                let sums = [
                    p.vcpu_seconds,
                    p.memory_byte_seconds,
                    p.disk_byte_seconds,
                    p.instance_seconds,
                    *h,
                ];
                if !sums.iter().all(|x| x.is_finite()) {
                    return Err(WindowError::NotFinite {
                        project: group.project_id.clone(),
                        server: u.id.to_text(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The index of project `id`, with totals, added if new.
    fn project_index(&mut self, id: &str) -> u32 {
        let project = self.projects.intern(id, |s: &str| Arc::from(s));
        if project as usize == self.totals.len() {
            self.totals.push(ProjectTotals::default());
        }
        project
    }

    /// Adds one server's window to project `project`; `slot` is its record when it had one
    /// before the window.
    fn add_server(&mut self, project: u32, u: &ServerWindow, slot: Option<u32>) {
        let totals = u.totals();
        let hours = totals.instance_seconds / 3600.0;
        self.totals[project as usize].add(totals);
        let i = match slot.or_else(|| self.index.get(&u.id).copied()) {
            Some(i) => {
                let was = self.records[i as usize].project;
                if was != project {
                    if let Some(m) = self.members.get_mut() {
                        m.remove(was, i);
                        m.insert(project, &u.id, i);
                    }
                }
                i
            }
            None => {
                let i = len_u32(self.records.len());
                // Default fields, so that the journal notes what differs from what the state
                // log's replay starts a new record with.
                self.records.push(ServerRecord::default());
                if let Some(j) = &mut self.journal {
                    j.new_servers.push(u.id.clone());
                }
                self.index.insert(u.id.clone(), i);
                if let Some(m) = self.members.get_mut() {
                    m.insert(project, &u.id, i);
                }
                i
            }
        };
        let record = &mut self.records[i as usize];
        record.hours += hours;
        let next = ServerRecord {
            project,
            vcpus: u.vcpus,
            memory_mb: u.memory_mb,
            started_at: u.started_at,
            ..*record
        };
        let changed = !record.same_fields(&next);
        *record = next;
        if let Some(j) = &mut self.journal {
            j.hours.push((i, hours));
            j.projects.insert(project);
            if changed {
                j.records.insert(i);
            }
        }
    }

    /// Remembers the metadata of servers that exist now (kept once they are deleted; the map
    /// is shared, not copied); the ids of those without a record yet (no usage counted so
    /// far), whose metadata is not kept.
    pub fn note_metadata<'a>(
        &mut self,
        servers: impl IntoIterator<Item = (&'a ServerId, &'a Arc<Metadata>)>,
    ) -> Vec<ServerId> {
        let mut missing = Vec::new();
        for (id, metadata) in servers {
            let Some(&i) = self.index.get(id) else {
                missing.push(id.clone());
                continue;
            };
            let m = self.metadata.intern(metadata, |_| Arc::clone(metadata));
            let record = &mut self.records[i as usize];
            if record.metadata != m {
                record.metadata = m;
                if let Some(j) = &mut self.journal {
                    j.records.insert(i);
                }
            }
        }
        missing
    }

    /// The snapshot for `projects` (Keystone's, after filters): totals from the accounting,
    /// current state from `current`, the legacy series recomputed from the server records
    /// with `weights` (`None`: weights configured but not loaded yet, the legacy families are
    /// withheld). Projects Keystone no longer lists are not exported, but their totals stay
    /// in the state.
    pub fn snapshot(
        &self,
        projects: &[Arc<Project>],
        mut current: super::nova::CurrentState,
        options: &LegacyOptions,
        weights: Option<&Weights>,
    ) -> ProjectsSnapshot {
        // Servers per project, each list in id order (the order of the sums).
        let members = weights.map(|_| self.members.get_or_init(|| Members::of(self)));
        let mut legacy_series = Vec::new();
        let projects = projects
            .iter()
            .map(|p| {
                let index = self.projects.find(p.id.as_str());
                if let (Some(weights), Some(members)) = (weights, members) {
                    let servers = index.map_or(&[][..], |i| members.of_project(i));
                    legacy_series.extend(legacy::project_series(
                        p,
                        servers
                            .iter()
                            .map(|(_, i)| self.legacy(&self.records[*i as usize])),
                        options,
                        weights,
                    ));
                }
                let totals = index
                    .and_then(|i| self.totals.get(i as usize))
                    .map(ProjectTotals::usage)
                    .unwrap_or_default();
                let (allocation, instances) = current.remove(&p.id).unwrap_or_default();
                ProjectUsage {
                    project: Arc::clone(p),
                    totals,
                    allocation,
                    instances,
                    quota: None,
                    stopped: BTreeMap::new(),
                }
            })
            .collect();
        ProjectsSnapshot {
            projects,
            legacy: legacy_series,
        }
    }

    /// The server as the legacy arithmetic sees it: all its hours at its current size, its
    /// start selecting the weights set (an unknown start selects the earliest set).
    fn legacy<'a>(&'a self, r: &ServerRecord) -> LegacyServer<'a> {
        let view = self.view(r);
        LegacyServer {
            hours: ServerHours {
                hours: r.hours,
                vcpus: r.vcpus,
                memory_mb: r.memory_mb,
            },
            started_at: r.started_at,
            metadata: view.metadata,
        }
    }
}

#[cfg(test)]
impl Accounting {
    /// Nova's answer applied as a refresh applies it: in the accounting's form first.
    pub(crate) fn apply_nova(
        &mut self,
        end: SystemTime,
        usages: &[super::nova::TenantUsage],
    ) -> Result<(), WindowError> {
        self.apply_window(end, &super::nova::compact_usage(usages.to_vec()))
    }

    /// [`Accounting::note_metadata`] by id text.
    pub(crate) fn note_metadata_of(&mut self, servers: &[(&str, &Metadata)]) -> Vec<String> {
        let servers: Vec<(ServerId, Arc<Metadata>)> = servers
            .iter()
            .map(|(id, m)| (ServerId::new(id), Arc::new((*m).clone())))
            .collect();
        let missing = self.note_metadata(servers.iter().map(|(id, m)| (id, m)));
        missing.iter().map(ServerId::to_text).collect()
    }
}

/// A table length as an index; tables past 2^32 entries are not representable in the
/// state file either.
pub(super) fn len_u32(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 2^32 projects, servers and metadata maps")
}

#[cfg(test)]
#[path = "accounting/tests.rs"]
mod tests;
