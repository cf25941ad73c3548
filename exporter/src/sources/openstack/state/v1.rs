//! Version 1 of the state: one JSON file, as written until the binary format. Read only, to
//! migrate: every total and every record field the accounting still keeps carries over
//! unchanged (the server's name, flavor, disk size, end and state are no longer kept: nothing
//! exported needs them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::super::accounting::{len_u32, Accounting, ProjectTotals, ServerRecord};
use super::super::compact::ServerId;
use super::super::nova;
use super::super::stopped::Stopped;

/// The version-1 file.
#[derive(Debug, Serialize, Deserialize)]
pub struct StateFile {
    pub version: u32,
    /// Which cloud the totals belong to (its identity URL); never a credential.
    pub cloud: String,
    pub accounting: AccountingV1,
    /// Absent in files written before it was kept.
    #[serde(default)]
    pub stopped: Stopped,
}

/// The version-1 accounting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountingV1 {
    pub usage_start: u64,
    pub window_end: u64,
    pub projects: BTreeMap<String, ProjectTotals>,
    pub servers: BTreeMap<String, ServerRecordV1>,
}

/// The version-1 record of one server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerRecordV1 {
    pub project_id: String,
    pub name: String,
    pub hours: f64,
    pub vcpus: u64,
    pub memory_mb: u64,
    pub local_gb: u64,
    pub flavor: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub state: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl AccountingV1 {
    /// `acc` as the previous build wrote it (the fields no longer kept left empty): for
    /// tests of the migration.
    pub fn of(acc: &Accounting) -> Self {
        Self {
            usage_start: acc.usage_start,
            window_end: acc.window_end,
            projects: acc
                .project_map()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            servers: acc
                .server_map()
                .into_iter()
                .map(|(id, r)| {
                    let started_at = (r.started_at > 0.0).then(|| {
                        let t = UNIX_EPOCH + Duration::from_secs_f64(r.started_at);
                        humantime::format_rfc3339_micros(t).to_string()
                    });
                    let record = ServerRecordV1 {
                        project_id: r.project_id.to_owned(),
                        hours: r.hours,
                        vcpus: r.vcpus,
                        memory_mb: r.memory_mb,
                        started_at,
                        metadata: r.metadata.clone(),
                        ..Default::default()
                    };
                    (id.to_text(), record)
                })
                .collect(),
        }
    }

    /// The same accounting in today's form: totals and hours bit for bit, the start as the
    /// legacy arithmetic reads it (seconds since 1970, 0.0 when unknown).
    pub fn migrate(self) -> Accounting {
        let mut acc = Accounting::empty(self.usage_start);
        acc.window_end = self.window_end;
        for (id, t) in self.projects {
            acc.projects.push(Arc::from(id.as_str()));
            acc.totals.push(t);
        }
        for (id, r) in self.servers {
            let project = acc.projects.intern(&r.project_id, |s: &str| Arc::from(s));
            if project as usize == acc.totals.len() {
                // A record of a project without totals (hand-edited files): zero totals.
                acc.totals.push(ProjectTotals::default());
            }
            let metadata = acc.metadata.intern(&r.metadata, |m| Arc::new(m.clone()));
            let i = len_u32(acc.records.len());
            acc.records.push(ServerRecord {
                project,
                hours: r.hours,
                vcpus: r.vcpus,
                memory_mb: r.memory_mb,
                started_at: r
                    .started_at
                    .as_deref()
                    .and_then(nova::epoch_seconds)
                    .unwrap_or(0.0),
                metadata,
            });
            acc.index.insert(ServerId::new(&id), i);
        }
        acc
    }
}
