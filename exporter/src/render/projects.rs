//! The `openstack_project_*` families: usage since the accounting start, allocation now,
//! statuses, long-stopped servers, quotas and names; the legacy families follow when enabled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{encode, Join, ProjectLabels, RenderOptions};
use crate::snapshot::{Held, ProjectUsage, ProjectsSnapshot, Quota};

/// Renders the `openstack_project_*` families (and the legacy ones when enabled).
pub fn projects(snapshot: Arc<ProjectsSnapshot>, options: RenderOptions) -> String {
    encode(collector(snapshot, options))
}

/// What [`projects`] encodes, for encoding into a buffer of the caller's.
pub(super) fn collector(snapshot: Arc<ProjectsSnapshot>, options: RenderOptions) -> impl Collector {
    ProjectsCollector { snapshot, options }
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
    type StoppedFamily = (&'static str, &'static str, Option<Unit>, fn(&Held) -> u64);
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
            Some(Unit::Bytes),
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

#[derive(Debug)]
struct ProjectsCollector {
    snapshot: Arc<ProjectsSnapshot>,
    options: RenderOptions,
}

/// One family per entry: name, help, unit, and how to read the value from a project.
type ProjectFamily = (
    &'static str,
    &'static str,
    Option<Unit>,
    fn(&ProjectUsage) -> f64,
);

impl Collector for ProjectsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let projects = &self.snapshot.projects;
        let labels: Vec<ProjectLabels> = projects.iter().map(|p| (&p.project).into()).collect();

        let counters: [ProjectFamily; 4] = [
            (
                "openstack_project_vcpu",
                "vCPU time held by the project's servers since the accounting start (vCPUs times seconds)",
                Some(Unit::Seconds),
                |p| p.totals.vcpu_seconds,
            ),
            (
                "openstack_project_memory",
                "Memory held by the project's servers since the accounting start (bytes times seconds)",
                Some(Unit::Other("byte_seconds".into())),
                |p| p.totals.memory_byte_seconds,
            ),
            (
                "openstack_project_disk",
                "Root and ephemeral disk held by the project's servers since the accounting start (bytes times seconds)",
                Some(Unit::Other("byte_seconds".into())),
                |p| p.totals.disk_byte_seconds,
            ),
            (
                "openstack_project_instance",
                "Time the project's servers existed since the accounting start",
                Some(Unit::Seconds),
                |p| p.totals.instance_seconds,
            ),
        ];
        for (name, help, unit, value) in &counters {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
            for (p, l) in projects.iter().zip(&labels) {
                ConstCounter::new(value(p)).encode(family.encode_family(l)?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "openstack_project_instances",
            "Existing servers of the project by Nova status",
            None,
            MetricType::Gauge,
        )?;
        for (p, l) in projects.iter().zip(&labels) {
            for (status, count) in &p.instances {
                let status = [("status", status.as_str())];
                ConstGauge::new(*count as i64).encode(family.encode_family(&Join(l, &status))?)?;
            }
        }

        encode_stopped(&mut encoder, projects, &labels)?;

        let gauges: [ProjectFamily; 3] = [
            (
                "openstack_project_vcpus",
                "vCPUs held now by the project's servers",
                None,
                |p| p.allocation.vcpus as f64,
            ),
            (
                "openstack_project_memory",
                "Memory held now by the project's servers",
                Some(Unit::Bytes),
                |p| p.allocation.memory_bytes as f64,
            ),
            (
                "openstack_project_disk",
                "Root and ephemeral disk held now by the project's servers",
                Some(Unit::Bytes),
                |p| p.allocation.disk_bytes as f64,
            ),
        ];
        for (name, help, unit, value) in &gauges {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            for (p, l) in projects.iter().zip(&labels) {
                ConstGauge::new(value(p)).encode(family.encode_family(l)?)?;
            }
        }

        // Only a source that reads quotas writes these; an unlimited quota has no series.
        if projects.iter().any(|p| p.quota.is_some()) {
            type QuotaFamily = (
                &'static str,
                &'static str,
                Option<Unit>,
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
                    Some(Unit::Bytes),
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
                let mut family =
                    encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
                for (p, l) in projects.iter().zip(&labels) {
                    if let Some(v) = p.quota.as_ref().and_then(value) {
                        ConstGauge::new(v as f64).encode(family.encode_family(l)?)?;
                    }
                }
            }
        }

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

        if self.options.legacy_metrics {
            super::legacy::encode(&mut encoder, &self.snapshot.legacy)?;
        }
        Ok(())
    }
}
