//! The `openstack_project_*` families: usage since the accounting start, allocation now,
//! statuses, long-stopped servers, quotas and names; the legacy families follow when enabled.
//!
//! The families are written in [`Unit`]s (a family, or the few that always change together).
//! A render may be given the previous render's [`ProjectsMemo`] and text: a unit whose inputs
//! are the same in both snapshots (same projects and labels, values equal bit for bit, as told
//! by a SHA-256 of them) is copied from the previous text instead of encoded again. Between two OpenStack refreshes the usage
//! counters move and the allocation, statuses, names and quotas mostly do not.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit as MetricUnit;

use super::{encode_into, Join, ProjectLabels, RenderOptions};
use crate::snapshot::{Held, ProjectUsage, ProjectsSnapshot, Quota};

/// Renders the `openstack_project_*` families (and the legacy ones when enabled).
pub fn projects(snapshot: Arc<ProjectsSnapshot>, options: RenderOptions) -> String {
    let mut out = String::new();
    projects_into(&mut out, snapshot, options, None);
    out
}

/// What a render of the projects families leaves for the next one: a digest of each unit's
/// inputs, and where the unit's text is in the fragment it was written into.
#[derive(Debug, Clone)]
pub struct ProjectsMemo {
    options: RenderOptions,
    units: Vec<(Unit, Digest, Range<usize>)>,
    /// How many units this render copied from the previous text.
    reused: usize,
}

impl ProjectsMemo {
    /// Units written, and how many of them were copied from the previous text.
    pub fn units(&self) -> (usize, usize) {
        (self.units.len(), self.reused)
    }
}

/// Appends the projects families to `out`. With `previous` (the last render's memo and the
/// fragment text it indexes), units whose inputs did not change are copied from that text.
pub(super) fn projects_into(
    out: &mut String,
    snapshot: Arc<ProjectsSnapshot>,
    options: RenderOptions,
    previous: Option<(&ProjectsMemo, &[u8])>,
) -> ProjectsMemo {
    let previous = previous.filter(|(memo, _)| memo.options == options);
    let labels = labels_digest(&snapshot);
    let mut units = Vec::new();
    let mut reused = 0;
    for unit in Unit::all(&snapshot, options) {
        let start = out.len();
        let digest = unit.digest(&snapshot, &labels);
        let kept = previous.and_then(|(memo, text)| {
            let (_, old_digest, range) = memo.units.iter().find(|(u, _, _)| *u == unit)?;
            let old = std::str::from_utf8(text.get(range.clone())?).ok()?;
            (*old_digest == digest).then_some(old)
        });
        match kept {
            Some(old) => {
                out.push_str(old);
                reused += 1;
            }
            None => encode_into(
                out,
                UnitCollector {
                    unit,
                    snapshot: Arc::clone(&snapshot),
                },
            ),
        }
        units.push((unit, digest, start..out.len()));
    }
    ProjectsMemo {
        options,
        units,
        reused,
    }
}

/// SHA-256 of what a unit is written from. Equal digests stand for equal inputs (a SHA-256
/// collision is not a practical concern), so the memo keeps 32 bytes per unit rather than the
/// previous snapshot (10 MB for 10,000 projects).
type Digest = [u8; 32];

/// Feeds values to a digest unambiguously: strings with their length, numbers as their bits.
struct Feed {
    context: ring::digest::Context,
    buffer: Vec<u8>,
}

impl Feed {
    fn new() -> Self {
        Self {
            context: ring::digest::Context::new(&ring::digest::SHA256),
            buffer: Vec::with_capacity(FEED_BUFFER),
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buffer.extend_from_slice(b);
        if self.buffer.len() >= FEED_BUFFER {
            self.context.update(&self.buffer);
            self.buffer.clear();
        }
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Bit for bit: `-0.0` and `0.0` are written differently, and NaN is NaN.
    fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
    }

    fn project(&mut self, p: &crate::snapshot::Project) {
        for s in [&p.id, &p.name, &p.domain_id, &p.domain_name] {
            self.str(s);
        }
        self.u64(u64::from(p.enabled));
    }

    fn finish(mut self) -> Digest {
        self.context.update(&self.buffer);
        let mut out = [0; 32];
        out.copy_from_slice(self.context.finish().as_ref());
        out
    }
}

/// Bytes gathered before they are handed to the digest (many values are 8 bytes).
const FEED_BUFFER: usize = 16 * 1024;

/// The projects and their labels, in order: what every unit but the legacy one is keyed by.
fn labels_digest(snapshot: &ProjectsSnapshot) -> Digest {
    let mut feed = Feed::new();
    feed.u64(snapshot.projects.len() as u64);
    for p in &snapshot.projects {
        feed.project(&p.project);
    }
    feed.finish()
}

/// A family, or families that are written and change together, in fragment order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// `COUNTERS[i]`.
    Counter(usize),
    Instances,
    /// The three stopped-servers families.
    Stopped,
    /// `GAUGES[i]`.
    Gauge(usize),
    /// The three quota families, written only by a source that reads quotas.
    Quotas,
    Info,
    /// `project_vcpu_usage` and `project_mb_usage`.
    Legacy,
}

impl Unit {
    /// The units of `snapshot`'s fragment, in order.
    fn all(snapshot: &ProjectsSnapshot, options: RenderOptions) -> Vec<Unit> {
        let mut units: Vec<Unit> = (0..COUNTERS.len()).map(Unit::Counter).collect();
        units.extend([Unit::Instances, Unit::Stopped]);
        units.extend((0..GAUGES.len()).map(Unit::Gauge));
        // Only a source that reads quotas writes these.
        if snapshot.projects.iter().any(|p| p.quota.is_some()) {
            units.push(Unit::Quotas);
        }
        units.push(Unit::Info);
        if options.legacy_metrics {
            units.push(Unit::Legacy);
        }
        units
    }

    /// The digest of what the unit is written from, given the projects' `labels` digest.
    fn digest(self, snapshot: &ProjectsSnapshot, labels: &Digest) -> Digest {
        let mut feed = Feed::new();
        feed.bytes(labels);
        let projects = &snapshot.projects;
        match self {
            Unit::Counter(i) => projects.iter().for_each(|p| feed.f64(COUNTERS[i].3(p))),
            Unit::Gauge(i) => projects.iter().for_each(|p| feed.f64(GAUGES[i].3(p))),
            Unit::Instances => {
                for p in projects {
                    feed.u64(p.instances.len() as u64);
                    for (status, n) in &p.instances {
                        feed.str(status);
                        feed.u64(*n);
                    }
                }
            }
            Unit::Stopped => {
                for p in projects {
                    feed.u64(p.stopped.len() as u64);
                    for (bucket, held) in &p.stopped {
                        feed.str(&bucket.status);
                        feed.u64(bucket.older_than.as_secs());
                        feed.u64(u64::from(bucket.older_than.subsec_nanos()));
                        feed.u64(held.instances);
                        feed.u64(held.vcpus);
                        feed.u64(held.memory_bytes);
                    }
                }
            }
            Unit::Quotas => {
                for p in projects {
                    let q = p.quota.unwrap_or_default();
                    feed.u64(u64::from(p.quota.is_some()));
                    for limit in [q.vcpus, q.memory_bytes, q.instances] {
                        feed.u64(u64::from(limit.is_some()));
                        feed.u64(limit.unwrap_or_default());
                    }
                }
            }
            // The labels alone.
            Unit::Info => {}
            Unit::Legacy => {
                feed.u64(snapshot.legacy.len() as u64);
                for s in &snapshot.legacy {
                    feed.project(&s.project);
                    feed.f64(s.usage.vcpu_hours);
                    feed.f64(s.usage.memory_hours);
                }
            }
        }
        feed.finish()
    }
}

/// One unit of a snapshot as a collector.
#[derive(Debug)]
struct UnitCollector {
    unit: Unit,
    snapshot: Arc<ProjectsSnapshot>,
}

/// The `older_than` label of a bucket bound: whole days as `7d`, else hours, minutes, seconds.
pub(crate) fn age_label(age: std::time::Duration) -> String {
    let s = age.as_secs();
    match s {
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3600 == 0 => format!("{}h", s / 3600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// The stopped-servers families: only non-empty buckets have series.
fn encode_stopped(
    encoder: &mut DescriptorEncoder,
    projects: &[ProjectUsage],
    labels: &[ProjectLabels],
) -> Result<(), std::fmt::Error> {
    type StoppedFamily = (
        &'static str,
        &'static str,
        Option<MetricUnit>,
        fn(&Held) -> u64,
    );
    let families: [StoppedFamily; 3] = [
        (
            "openstack_project_stopped_instances",
            "Servers of the project in a stopped or broken status (shutoff, shelved, shelved_offloaded, error) for longer than older_than (cumulative buckets)",
            None,
            |h| h.instances,
        ),
        (
            "openstack_project_stopped_vcpus",
            "vCPUs of the flavors of the project's servers stopped or broken for longer than older_than",
            None,
            |h| h.vcpus,
        ),
        (
            "openstack_project_stopped_memory",
            "Memory of the flavors of the project's servers stopped or broken for longer than older_than",
            Some(MetricUnit::Bytes),
            |h| h.memory_bytes,
        ),
    ];
    // The few bucket bounds, written once per render rather than once per series.
    let mut ages: BTreeMap<Duration, String> = BTreeMap::new();
    for p in projects {
        for bucket in p.stopped.keys() {
            ages.entry(bucket.older_than)
                .or_insert_with(|| age_label(bucket.older_than));
        }
    }
    for (name, help, unit, value) in &families {
        let mut family = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
        for (p, l) in projects.iter().zip(labels) {
            for (bucket, held) in &p.stopped {
                let older_than = ages.get(&bucket.older_than).map_or("", String::as_str);
                let bucket = [
                    ("status", bucket.status.as_str()),
                    ("older_than", older_than),
                ];
                ConstGauge::new(value(held) as f64)
                    .encode(family.encode_family(&Join(l, &bucket))?)?;
            }
        }
    }
    Ok(())
}

/// One family per entry: name, help, unit, and how to read the value from a project.
type ProjectFamily = (
    &'static str,
    &'static str,
    Option<fn() -> MetricUnit>,
    fn(&ProjectUsage) -> f64,
);

/// Usage since the accounting start (counters).
const COUNTERS: [ProjectFamily; 4] = [
    (
        "openstack_project_vcpu",
        "vCPU time held by the project's servers since the accounting start (vCPUs times seconds)",
        Some(|| MetricUnit::Seconds),
        |p| p.totals.vcpu_seconds,
    ),
    (
        "openstack_project_memory",
        "Memory held by the project's servers since the accounting start (bytes times seconds)",
        Some(|| MetricUnit::Other("byte_seconds".into())),
        |p| p.totals.memory_byte_seconds,
    ),
    (
        "openstack_project_disk",
        "Root and ephemeral disk held by the project's servers since the accounting start (bytes times seconds)",
        Some(|| MetricUnit::Other("byte_seconds".into())),
        |p| p.totals.disk_byte_seconds,
    ),
    (
        "openstack_project_instance",
        "Time the project's servers existed since the accounting start",
        Some(|| MetricUnit::Seconds),
        |p| p.totals.instance_seconds,
    ),
];

/// What is held now (gauges).
const GAUGES: [ProjectFamily; 3] = [
    (
        "openstack_project_vcpus",
        "vCPUs held now by the project's servers",
        None,
        |p| p.allocation.vcpus as f64,
    ),
    (
        "openstack_project_memory",
        "Memory held now by the project's servers",
        Some(|| MetricUnit::Bytes),
        |p| p.allocation.memory_bytes as f64,
    ),
    (
        "openstack_project_disk",
        "Root and ephemeral disk held now by the project's servers",
        Some(|| MetricUnit::Bytes),
        |p| p.allocation.disk_bytes as f64,
    ),
];

impl Collector for UnitCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let projects = &self.snapshot.projects;
        let labels: Vec<ProjectLabels> = projects.iter().map(|p| (&p.project).into()).collect();
        let simple = |encoder: &mut DescriptorEncoder,
                      (name, help, unit, value): &ProjectFamily,
                      kind: MetricType|
         -> Result<(), std::fmt::Error> {
            let unit = unit.map(|u| u());
            let mut family = encoder.encode_descriptor(name, help, unit.as_ref(), kind)?;
            for (p, l) in projects.iter().zip(&labels) {
                match kind {
                    MetricType::Counter => {
                        ConstCounter::new(value(p)).encode(family.encode_family(l)?)?
                    }
                    _ => ConstGauge::new(value(p)).encode(family.encode_family(l)?)?,
                }
            }
            Ok(())
        };
        match self.unit {
            Unit::Counter(i) => simple(&mut encoder, &COUNTERS[i], MetricType::Counter),
            Unit::Gauge(i) => simple(&mut encoder, &GAUGES[i], MetricType::Gauge),
            Unit::Instances => {
                let mut family = encoder.encode_descriptor(
                    "openstack_project_instances",
                    "Existing servers of the project by Nova status",
                    None,
                    MetricType::Gauge,
                )?;
                for (p, l) in projects.iter().zip(&labels) {
                    for (status, count) in &p.instances {
                        let status = [("status", status.as_str())];
                        ConstGauge::new(*count as i64)
                            .encode(family.encode_family(&Join(l, &status))?)?;
                    }
                }
                Ok(())
            }
            Unit::Stopped => encode_stopped(&mut encoder, projects, &labels),
            Unit::Quotas => encode_quotas(&mut encoder, projects, &labels),
            Unit::Info => {
                let mut family = encoder.encode_descriptor(
                    "openstack_project",
                    "Project names and state",
                    None,
                    MetricType::Info,
                )?;
                for (p, l) in projects.iter().zip(&labels) {
                    let enabled = [("enabled", if p.project.enabled { "true" } else { "false" })];
                    family.encode_info(&Join(l, &enabled))?;
                }
                Ok(())
            }
            Unit::Legacy => super::legacy::encode(&mut encoder, &self.snapshot.legacy),
        }
    }
}

/// The quota families; an unlimited quota has no series.
fn encode_quotas(
    encoder: &mut DescriptorEncoder,
    projects: &[ProjectUsage],
    labels: &[ProjectLabels],
) -> Result<(), std::fmt::Error> {
    type QuotaFamily = (
        &'static str,
        &'static str,
        Option<MetricUnit>,
        fn(&Quota) -> Option<u64>,
    );
    let quotas: [QuotaFamily; 3] = [
        (
            "openstack_project_quota_vcpus",
            "Compute quota of the project: vCPUs",
            None,
            |q| q.vcpus,
        ),
        (
            "openstack_project_quota_memory",
            "Compute quota of the project: memory",
            Some(MetricUnit::Bytes),
            |q| q.memory_bytes,
        ),
        (
            "openstack_project_quota_instances",
            "Compute quota of the project: servers",
            None,
            |q| q.instances,
        ),
    ];
    for (name, help, unit, value) in &quotas {
        let mut family = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
        for (p, l) in projects.iter().zip(labels) {
            if let Some(v) = p.quota.as_ref().and_then(value) {
                ConstGauge::new(v as f64).encode(family.encode_family(l)?)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::snapshot::{
        Allocation, LegacySeries, LegacyUsage, Project, StoppedBucket, UsageTotals,
    };

    fn project(i: u32) -> ProjectUsage {
        let f = f64::from(i);
        ProjectUsage {
            project: Project {
                id: format!("p{i}"),
                name: format!("project-{i}"),
                domain_id: "d".into(),
                domain_name: "elixir".into(),
                enabled: true,
            },
            totals: UsageTotals {
                vcpu_seconds: 3600.0 * f,
                memory_byte_seconds: 1e12 * f,
                disk_byte_seconds: 2e12 * f,
                instance_seconds: 7200.0 * f,
            },
            allocation: Allocation {
                vcpus: 2,
                memory_bytes: 1 << 30,
                disk_bytes: 20 << 30,
            },
            instances: [("active".to_owned(), 2), ("shutoff".to_owned(), 1)].into(),
            quota: Some(Quota {
                vcpus: Some(16),
                memory_bytes: None,
                instances: Some(10),
            }),
            stopped: [(
                StoppedBucket {
                    status: "shutoff".into(),
                    older_than: Duration::from_secs(86_400),
                },
                Held {
                    instances: 1,
                    vcpus: 2,
                    memory_bytes: 1 << 30,
                },
            )]
            .into(),
        }
    }

    fn snapshot() -> ProjectsSnapshot {
        let projects: Vec<ProjectUsage> = (1..=3).map(project).collect();
        let legacy = projects
            .iter()
            .map(|p| LegacySeries {
                project: p.project.clone(),
                usage: LegacyUsage {
                    vcpu_hours: p.totals.vcpu_seconds / 3600.0,
                    memory_hours: 512.0,
                },
            })
            .collect();
        ProjectsSnapshot { projects, legacy }
    }

    #[test]
    fn a_render_after_another_equals_a_fresh_render_and_copies_only_unchanged_units() {
        type Change = fn(&mut ProjectsSnapshot);
        // (what changes, units of the 12 copied from the previous text)
        let cases: [(&str, Change, usize); 12] = [
            ("nothing", |_| {}, 12),
            (
                "a counter",
                |s| s.projects[1].totals.vcpu_seconds += 1.0,
                11,
            ),
            (
                "every counter and legacy",
                |s| {
                    for p in &mut s.projects {
                        p.totals.vcpu_seconds += 1.0;
                        p.totals.memory_byte_seconds += 1.0;
                        p.totals.disk_byte_seconds += 1.0;
                        p.totals.instance_seconds += 1.0;
                    }
                    s.legacy[0].usage.vcpu_hours += 1.0;
                },
                7,
            ),
            (
                "zero's sign",
                |s| s.projects[0].totals.disk_byte_seconds = -0.0,
                11,
            ),
            ("an allocation", |s| s.projects[2].allocation.vcpus = 4, 11),
            (
                "a status count",
                |s| {
                    s.projects[0].instances.insert("error".into(), 1);
                },
                11,
            ),
            (
                "a stopped bucket",
                |s| {
                    s.projects[0].stopped.clear();
                },
                11,
            ),
            ("a quota", |s| s.projects[1].quota = None, 11),
            (
                "no quota any more",
                |s| {
                    for p in &mut s.projects {
                        p.quota = None;
                    }
                },
                11,
            ),
            (
                "a legacy series",
                |s| s.legacy[2].usage.memory_hours = 0.5,
                11,
            ),
            (
                "a project's name",
                |s| s.projects[0].project.name = "renamed".into(),
                0,
            ),
            ("one project more", |s| s.projects.push(project(4)), 0),
        ];
        let options = RenderOptions::default();
        let first = Arc::new(snapshot());
        let mut first_text = String::new();
        let memo = projects_into(&mut first_text, Arc::clone(&first), options, None);
        assert_eq!(memo.units(), (12, 0));
        for (what, change, copied) in cases {
            let mut next = snapshot();
            change(&mut next);
            let next = Arc::new(next);
            let mut text = String::new();
            let after = projects_into(
                &mut text,
                Arc::clone(&next),
                options,
                Some((&memo, first_text.as_bytes())),
            );
            assert_eq!(text, projects(Arc::clone(&next), options), "{what}");
            assert_eq!(after.units().1, copied, "{what}: units copied");
        }
    }
}
