//! Running usage totals since `usage_start`, built from consecutive Nova windows.
//!
//! Invariants: windows are contiguous (`[window_end, new_end)`, whole seconds); a window is
//! applied whole or not at all; only non-negative amounts are added, so no counter ever goes
//! backwards. Each server keeps its own record (accumulated hours, latest size, start, end,
//! state), so later consumers (credit weights, SimpleVM split) can recompute from servers.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::nova::{server_totals, ServerUsage, TenantUsage};
use crate::legacy::{server_usage, MemoryUnit, ServerHours};
use crate::snapshot::{
    LegacySeries, LegacyUsage, Project, ProjectUsage, ProjectsSnapshot, UsageTotals,
};

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
    pub legacy_vcpu_hours: f64,
    pub legacy_memory_hours: f64,
}

impl ProjectTotals {
    fn add(&mut self, t: UsageTotals, l: LegacyUsage) {
        self.vcpu_seconds += t.vcpu_seconds;
        self.memory_byte_seconds += t.memory_byte_seconds;
        self.disk_byte_seconds += t.disk_byte_seconds;
        self.instance_seconds += t.instance_seconds;
        self.legacy_vcpu_hours += l.vcpu_hours;
        self.legacy_memory_hours += l.memory_hours;
    }

    fn usage(&self) -> (UsageTotals, LegacyUsage) {
        (
            UsageTotals {
                vcpu_seconds: self.vcpu_seconds,
                memory_byte_seconds: self.memory_byte_seconds,
                disk_byte_seconds: self.disk_byte_seconds,
                instance_seconds: self.instance_seconds,
            },
            LegacyUsage {
                vcpu_hours: self.legacy_vcpu_hours,
                memory_hours: self.legacy_memory_hours,
            },
        )
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
        unit: MemoryUnit,
    ) -> Result<(), WindowError> {
        let end = epoch_secs(end);
        if end <= self.window_end {
            return Err(WindowError::NotAfter {
                last: self.window_end,
                end,
            });
        }
        for tenant in usages {
            for server in &tenant.server_usages {
                self.add_server(&tenant.tenant_id, server, unit);
            }
        }
        self.window_end = end;
        Ok(())
    }

    fn add_server(&mut self, project_id: &str, u: &ServerUsage, unit: MemoryUnit) {
        let totals = server_totals(u);
        let hours = totals.instance_seconds / 3600.0;
        let legacy = server_usage(
            ServerHours {
                hours,
                vcpus: u.vcpus,
                memory_mb: u.memory_mb,
            },
            unit,
        );
        self.projects
            .entry(project_id.to_owned())
            .or_default()
            .add(totals, legacy);
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
    /// current state from `current`. Projects Keystone no longer lists are not exported, but
    /// their totals stay in the state.
    pub fn snapshot(
        &self,
        projects: &[Project],
        current: &BTreeMap<String, (crate::snapshot::Allocation, BTreeMap<String, u64>)>,
    ) -> ProjectsSnapshot {
        // The legacy families are the running unweighted sums, one series per project.
        // (Credit weights and the SimpleVM split for this source recompute them from the
        // per-server records: issue #8.)
        let mut legacy = Vec::with_capacity(projects.len());
        let projects = projects
            .iter()
            .map(|p| {
                let (totals, usage) = self
                    .projects
                    .get(&p.id)
                    .map(ProjectTotals::usage)
                    .unwrap_or_default();
                legacy.push(LegacySeries {
                    project: p.clone(),
                    usage,
                });
                let (allocation, instances) = current.get(&p.id).cloned().unwrap_or_default();
                ProjectUsage {
                    project: p.clone(),
                    totals,
                    allocation,
                    instances,
                    quota: None,
                }
            })
            .collect();
        ProjectsSnapshot { projects, legacy }
    }
}

#[cfg(test)]
#[path = "accounting/tests.rs"]
mod tests;
