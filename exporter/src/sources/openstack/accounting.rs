//! Running usage totals since `usage_start`, built from consecutive Nova windows.
//!
//! Invariants: windows are contiguous (`[window_end, new_end)`, whole seconds); a window is
//! applied whole or not at all; only non-negative amounts are added, so no counter ever goes
//! backwards. Each server keeps its own record (accumulated hours, latest size, start, end,
//! state, metadata).
//!
//! The legacy families are not running sums: release 3.0.0 recomputes them every cycle from
//! Nova's per-server hours over `[usage_start, now)`, each server at its current size (Nova
//! reports the current flavor for all of a server's hours), weighted by the weights in force
//! now. The records hold exactly that — the hours summed over our windows equal Nova's hours
//! over the whole window — so [`Accounting::snapshot`] recomputes the legacy series from them
//! without asking Nova for the whole window again.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::nova::{self, server_totals, ServerUsage, TenantUsage};
use crate::legacy::{self, LegacyOptions, LegacyServer, ServerHours};
use crate::snapshot::{Project, ProjectUsage, ProjectsSnapshot, UsageTotals};
use crate::weights::Weights;

/// One server's accumulated usage since the accounting start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerRecord {
    pub project_id: String,
    pub name: String,
    /// Hours summed over every applied window.
    pub hours: f64,
    /// Size as last reported (a resize changes it; past windows were counted at their size).
    pub vcpus: u64,
    pub memory_mb: u64,
    pub local_gb: u64,
    pub flavor: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub state: Option<String>,
    /// Nova metadata, when known from the servers list (deleted servers keep the last seen).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
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

/// Everything accumulated since `usage_start`; what the state file stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accounting {
    /// The accounting epoch, seconds since 1970.
    pub usage_start: u64,
    /// End of the last applied window (exclusive), seconds since 1970.
    pub window_end: u64,
    pub projects: BTreeMap<String, ProjectTotals>,
    pub servers: BTreeMap<String, ServerRecord>,
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
        let start = epoch_secs(usage_start);
        Self {
            usage_start: start,
            window_end: start,
            projects: BTreeMap::new(),
            servers: BTreeMap::new(),
        }
    }

    /// Why a loaded accounting cannot be trusted, if it cannot: times past what the clock
    /// and the formats can hold, or later than `now` allows; sums that are not finite
    /// non-negative numbers. Arithmetic on such values would panic or count nonsense.
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
        if let Some((id, _)) = self.projects.iter().find(|(_, t)| {
            bad(t.vcpu_seconds)
                || bad(t.memory_byte_seconds)
                || bad(t.disk_byte_seconds)
                || bad(t.instance_seconds)
        }) {
            return Some(format!("project {id}: a total is negative or not a number"));
        }
        if let Some((id, _)) = self.servers.iter().find(|(_, r)| bad(r.hours)) {
            return Some(format!("server {id}: hours negative or not a number"));
        }
        None
    }

    /// Start of the next window to query.
    pub fn next_window_start(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.window_end)
    }

    /// Adds the usage of `[window_end, end)`. `usages` may list one tenant several times
    /// (pages split tenants); every server usage is added once.
    pub fn apply_window(
        &mut self,
        end: SystemTime,
        usages: &[TenantUsage],
    ) -> Result<(), WindowError> {
        let end = epoch_secs(end);
        if end <= self.window_end {
            return Err(WindowError::NotAfter {
                last: self.window_end,
                end,
            });
        }
        self.check_finite(usages)?;
        for tenant in usages {
            for server in &tenant.server_usages {
                self.add_server(&tenant.tenant_id, server);
            }
        }
        self.window_end = end;
        Ok(())
    }

    /// Refuses, before anything is added, a window whose sums would not be finite numbers:
    /// JSON has no infinity, so the saved state would be set aside at the next start.
    fn check_finite(&self, usages: &[TenantUsage]) -> Result<(), WindowError> {
        let mut projects: BTreeMap<&str, ProjectTotals> = BTreeMap::new();
        let mut hours: BTreeMap<&str, f64> = BTreeMap::new();
        for tenant in usages {
            for u in &tenant.server_usages {
                let totals = server_totals(u);
                let p = projects.entry(&tenant.tenant_id).or_insert_with(|| {
                    self.projects
                        .get(&tenant.tenant_id)
                        .copied()
                        .unwrap_or_default()
                });
                p.add(totals);
                let h = hours
                    .entry(&u.instance_id)
                    .or_insert_with(|| self.servers.get(&u.instance_id).map_or(0.0, |r| r.hours));
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
                        project: tenant.tenant_id.clone(),
                        server: u.instance_id.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    fn add_server(&mut self, project_id: &str, u: &ServerUsage) {
        let totals = server_totals(u);
        let hours = totals.instance_seconds / 3600.0;
        self.projects
            .entry(project_id.to_owned())
            .or_default()
            .add(totals);
        let record = self.servers.entry(u.instance_id.clone()).or_default();
        record.project_id = project_id.to_owned();
        record.name.clone_from(&u.name);
        record.hours += hours;
        record.vcpus = u.vcpus;
        record.memory_mb = u.memory_mb;
        record.local_gb = u.local_gb;
        record.flavor.clone_from(&u.flavor);
        record.started_at.clone_from(&u.started_at);
        record.ended_at.clone_from(&u.ended_at);
        record.state.clone_from(&u.state);
    }

    /// Remembers the metadata of servers that exist now (kept once they are deleted).
    pub fn note_metadata<'a>(
        &mut self,
        servers: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
    ) {
        for (id, metadata) in servers {
            if let Some(record) = self.servers.get_mut(id) {
                record.metadata.clone_from(metadata);
            }
        }
    }

    /// The snapshot for `projects` (Keystone's, after filters): totals from the accounting,
    /// current state from `current`, the legacy series recomputed from the server records
    /// with `weights` (`None`: weights configured but not loaded yet, the legacy families are
    /// withheld). Projects Keystone no longer lists are not exported, but their totals stay
    /// in the state.
    pub fn snapshot(
        &self,
        projects: &[Project],
        current: &BTreeMap<String, (crate::snapshot::Allocation, BTreeMap<String, u64>)>,
        options: &LegacyOptions,
        weights: Option<&Weights>,
    ) -> ProjectsSnapshot {
        let mut by_project: BTreeMap<&str, Vec<&ServerRecord>> = BTreeMap::new();
        if weights.is_some() {
            for r in self.servers.values() {
                by_project.entry(&r.project_id).or_default().push(r);
            }
        }
        let mut legacy_series = Vec::new();
        let projects = projects
            .iter()
            .map(|p| {
                if let Some(weights) = weights {
                    let servers = by_project.get(p.id.as_str()).into_iter().flatten();
                    legacy_series.extend(legacy::project_series(
                        p,
                        servers.map(|r| r.legacy()),
                        options,
                        weights,
                    ));
                }
                let totals = self
                    .projects
                    .get(&p.id)
                    .map(ProjectTotals::usage)
                    .unwrap_or_default();
                let (allocation, instances) = current.get(&p.id).cloned().unwrap_or_default();
                ProjectUsage {
                    project: p.clone(),
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
}

impl ServerRecord {
    /// The server as the legacy arithmetic sees it: all its hours at its current size, its
    /// start selecting the weights set (an unknown start selects the earliest set).
    fn legacy(&self) -> LegacyServer<'_> {
        LegacyServer {
            hours: ServerHours {
                hours: self.hours,
                vcpus: self.vcpus,
                memory_mb: self.memory_mb,
            },
            started_at: self
                .started_at
                .as_deref()
                .and_then(nova::epoch_seconds)
                .unwrap_or(0.0),
            metadata: &self.metadata,
        }
    }
}

#[cfg(test)]
#[path = "accounting/tests.rs"]
mod tests;
