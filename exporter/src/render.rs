//! Snapshot -> OpenMetrics text: the only place that knows metric names, help texts and labels.
//!
//! Each function renders one source's fragment (families only, no `# EOF`), so a source that
//! did not change is not rendered again; `exposition` joins the fragments. Encoding goes through
//! `prometheus-client` with typed label sets. Families are always written whole and in a fixed
//! order, so the output for the same snapshot is byte-for-byte the same.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::hub::SourceStatus;
use crate::snapshot::{Guest, GuestsSnapshot, LegacyUsage, Project, ProjectsSnapshot};
use crate::weights::{Resource, Weights};

/// Which optional families the projects fragment carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// `project_vcpu_usage` and `project_mb_usage`, for portals built on the original exporter.
    pub legacy_metrics: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            legacy_metrics: true,
        }
    }
}

/// Renders the `openstack_project_*` families (and the legacy ones when enabled).
pub fn projects(snapshot: Arc<ProjectsSnapshot>, options: RenderOptions) -> String {
    encode(ProjectsCollector { snapshot, options })
}

/// Renders the `libvirt_*` families.
pub fn guests(snapshot: Arc<GuestsSnapshot>) -> String {
    encode(GuestsCollector { snapshot })
}

/// Encodes one collector into an OpenMetrics fragment without the `# EOF` marker.
pub(crate) fn encode(collector: impl Collector) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let mut out = String::new();
    prometheus_client::encoding::text::encode_registry(&mut out, &registry)
        .expect("encoding into a String cannot fail");
    out
}

/// Two label sets written as one, without cloning either.
#[derive(Debug)]
pub(crate) struct Join<'a, A, B>(pub &'a A, pub &'a B);

impl<A: EncodeLabelSet, B: EncodeLabelSet> EncodeLabelSet for Join<'_, A, B> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)?;
        self.1.encode(encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct ProjectLabels {
    project_id: String,
    project_name: String,
    domain_id: String,
    domain_name: String,
}

impl From<&Project> for ProjectLabels {
    fn from(p: &Project) -> Self {
        Self {
            project_id: p.id.clone(),
            project_name: p.name.clone(),
            domain_id: p.domain_id.clone(),
            domain_name: p.domain_name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct EnabledLabel {
    enabled: String,
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
    fn(&crate::snapshot::ProjectUsage) -> f64,
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
                let status = StatusLabel {
                    status: status.clone(),
                };
                ConstGauge::new(*count as i64).encode(family.encode_family(&Join(l, &status))?)?;
            }
        }

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
                fn(&crate::snapshot::Quota) -> Option<u64>,
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
            let enabled = EnabledLabel {
                enabled: p.project.enabled.to_string(),
            };
            family.encode_info(&Join(l, &enabled))?;
        }

        if self.options.legacy_metrics && !self.snapshot.legacy.is_empty() {
            // Names, help texts and label names as the original os_project_usage_exporter has
            // them: portals bill from these series.
            let series = &self.snapshot.legacy;
            let legacy_labels: Vec<ProjectLabels> =
                series.iter().map(|s| (&s.project).into()).collect();
            type LegacyFamily = (&'static str, &'static str, fn(&LegacyUsage) -> f64);
            let legacy: [LegacyFamily; 2] = [
                ("project_vcpu_usage", "Total vcpu usage", |u| u.vcpu_hours),
                ("project_mb_usage", "Total MB usage", |u| u.memory_hours),
            ];
            for (name, help, value) in &legacy {
                let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                for (s, l) in series.iter().zip(&legacy_labels) {
                    ConstGauge::new(value(&s.usage)).encode(family.encode_family(l)?)?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct WeightLabels {
    resource: String,
    value: String,
    since: String,
}

/// Renders `site_exporter_usage_weight`: the credit weights in force, so a portal can see what
/// the legacy families were computed with.
pub fn weights(weights: Arc<Weights>) -> String {
    encode(WeightsCollector { weights })
}

#[derive(Debug)]
struct WeightsCollector {
    weights: Arc<Weights>,
}

impl Collector for WeightsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_weights(&mut encoder, &self.weights)
    }
}

fn encode_weights(
    encoder: &mut DescriptorEncoder,
    weights: &Weights,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "site_exporter_usage_weight",
        "Credit weight applied to the legacy usage of servers of this size that started since the set's Unix time",
        None,
        MetricType::Gauge,
    )?;
    for set in weights.sets() {
        for (resource, steps) in [
            (Resource::Vcpus, &set.vcpus),
            (Resource::Memory, &set.memory),
        ] {
            for step in steps {
                let labels = WeightLabels {
                    resource: resource.key().to_string(),
                    value: step.value.to_string(),
                    since: set.since.to_string(),
                };
                ConstGauge::new(step.weight).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct DomainLabel {
    domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct DeviceLabel {
    target_device: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct VcpuLabel {
    vcpu: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct OpenstackLabels {
    instance_id: String,
    instance_name: String,
    flavor_name: String,
    project_id: String,
    project_name: String,
    user_id: String,
    user_name: String,
}

#[derive(Debug)]
struct GuestsCollector {
    snapshot: Arc<GuestsSnapshot>,
}

type GuestFamily = (&'static str, &'static str, Option<Unit>, fn(&Guest) -> f64);
type MemoryFamily = (
    &'static str,
    &'static str,
    fn(&crate::snapshot::MemoryStats) -> Option<u64>,
);
type BlockFamily = (
    &'static str,
    &'static str,
    Option<Unit>,
    MetricType,
    fn(&crate::snapshot::BlockStats) -> f64,
);
type InterfaceFamily = (
    &'static str,
    &'static str,
    Option<Unit>,
    fn(&crate::snapshot::InterfaceStats) -> u64,
);

impl Collector for GuestsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = &self.snapshot;
        let guests = &snap.guests;
        let labels: Vec<DomainLabel> = guests
            .iter()
            .map(|g| DomainLabel {
                domain: g.name.clone(),
            })
            .collect();

        let family = encoder.encode_descriptor(
            "libvirt_up",
            "Whether the last refresh reached libvirt",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(snap.up)).encode(family)?;
        let family = encoder.encode_descriptor(
            "libvirt_domains",
            "Number of domains on this host",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(guests.len() as i64).encode(family)?;

        let mut family = encoder.encode_descriptor(
            "libvirt_domain_state_code",
            "libvirt state of the domain: 0 no state, 1 running, 2 blocked, 3 paused, 4 shutting down, 5 shut off, 6 crashed, 7 suspended",
            None,
            MetricType::Gauge,
        )?;
        for (g, l) in guests.iter().zip(&labels) {
            ConstGauge::new(i64::from(g.state.code())).encode(family.encode_family(l)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "libvirt_domain_openstack",
            "OpenStack instance, flavor, project and user of the domain from Nova's metadata",
            None,
            MetricType::Info,
        )?;
        for (g, l) in guests.iter().zip(&labels) {
            if let Some(m) = &g.openstack {
                let info = OpenstackLabels {
                    instance_id: m.instance_id.clone(),
                    instance_name: m.instance_name.clone(),
                    flavor_name: m.flavor_name.clone(),
                    project_id: m.project_id.clone(),
                    project_name: m.project_name.clone(),
                    user_id: m.user_id.clone(),
                    user_name: m.user_name.clone(),
                };
                family.encode_info(&Join(l, &info))?;
            }
        }

        let info_gauges: [GuestFamily; 3] = [
            (
                "libvirt_domain_info_virtual_cpus",
                "Number of virtual CPUs of the domain",
                None,
                |g| g.info.virtual_cpus as f64,
            ),
            (
                "libvirt_domain_info_maximum_memory",
                "Maximum memory of the domain",
                Some(Unit::Bytes),
                |g| g.info.maximum_memory_bytes as f64,
            ),
            (
                "libvirt_domain_info_memory_usage",
                "Memory currently assigned to the domain",
                Some(Unit::Bytes),
                |g| g.info.memory_usage_bytes as f64,
            ),
        ];
        for (name, help, unit, value) in &info_gauges {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            for (g, l) in guests.iter().zip(&labels) {
                ConstGauge::new(value(g)).encode(family.encode_family(l)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "libvirt_domain_info_cpu_time",
            "CPU time used by the domain",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        for (g, l) in guests.iter().zip(&labels) {
            ConstCounter::new(g.info.cpu_time_seconds).encode(family.encode_family(l)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "libvirt_domain_vcpu_time",
            "CPU time used by one virtual CPU of the domain",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        for (g, l) in guests.iter().zip(&labels) {
            for v in &g.vcpus {
                let vcpu = VcpuLabel { vcpu: v.vcpu };
                ConstCounter::new(v.time_seconds).encode(family.encode_family(&Join(l, &vcpu))?)?;
            }
        }

        let memory: [MemoryFamily; 5] = [
            (
                "libvirt_domain_memory_stats_actual_balloon",
                "Current balloon size of the domain",
                |m| m.actual_balloon_bytes,
            ),
            (
                "libvirt_domain_memory_stats_available",
                "Memory usable by the domain as its guest sees it",
                |m| m.available_bytes,
            ),
            (
                "libvirt_domain_memory_stats_unused",
                "Memory left completely unused by the guest",
                |m| m.unused_bytes,
            ),
            (
                "libvirt_domain_memory_stats_usable",
                "Memory the guest can reclaim without swapping",
                |m| m.usable_bytes,
            ),
            (
                "libvirt_domain_memory_stats_rss",
                "Resident set size of the domain's process on the host",
                |m| m.rss_bytes,
            ),
        ];
        for (name, help, value) in &memory {
            let mut family =
                encoder.encode_descriptor(name, help, Some(&Unit::Bytes), MetricType::Gauge)?;
            for (g, l) in guests.iter().zip(&labels) {
                if let Some(v) = g.memory.as_ref().and_then(value) {
                    ConstGauge::new(v as f64).encode(family.encode_family(l)?)?;
                }
            }
        }

        let blocks: [BlockFamily; 7] = [
            (
                "libvirt_domain_block_stats_read",
                "Bytes read from the block device",
                Some(Unit::Bytes),
                MetricType::Counter,
                |b| b.read_bytes as f64,
            ),
            (
                "libvirt_domain_block_stats_write",
                "Bytes written to the block device",
                Some(Unit::Bytes),
                MetricType::Counter,
                |b| b.write_bytes as f64,
            ),
            (
                "libvirt_domain_block_stats_read_requests",
                "Read requests to the block device",
                None,
                MetricType::Counter,
                |b| b.read_requests as f64,
            ),
            (
                "libvirt_domain_block_stats_write_requests",
                "Write requests to the block device",
                None,
                MetricType::Counter,
                |b| b.write_requests as f64,
            ),
            (
                "libvirt_domain_block_stats_read_time",
                "Time spent reading from the block device",
                Some(Unit::Seconds),
                MetricType::Counter,
                |b| b.read_time_seconds,
            ),
            (
                "libvirt_domain_block_stats_write_time",
                "Time spent writing to the block device",
                Some(Unit::Seconds),
                MetricType::Counter,
                |b| b.write_time_seconds,
            ),
            (
                "libvirt_domain_block_stats_capacity",
                "Logical size of the block device",
                Some(Unit::Bytes),
                MetricType::Gauge,
                |b| b.capacity_bytes as f64,
            ),
        ];
        for (name, help, unit, kind, value) in &blocks {
            let mut family = encoder.encode_descriptor(name, help, unit.as_ref(), *kind)?;
            for (g, l) in guests.iter().zip(&labels) {
                for b in &g.blocks {
                    let dev = DeviceLabel {
                        target_device: b.target_device.clone(),
                    };
                    let labels = Join(l, &dev);
                    let series = family.encode_family(&labels)?;
                    match kind {
                        MetricType::Counter => ConstCounter::new(value(b)).encode(series)?,
                        _ => ConstGauge::new(value(b)).encode(series)?,
                    }
                }
            }
        }

        let interfaces: [InterfaceFamily; 8] = [
            (
                "libvirt_domain_interface_stats_receive",
                "Bytes received on the interface",
                Some(Unit::Bytes),
                |i| i.receive_bytes,
            ),
            (
                "libvirt_domain_interface_stats_receive_packets",
                "Packets received on the interface",
                None,
                |i| i.receive_packets,
            ),
            (
                "libvirt_domain_interface_stats_receive_errors",
                "Receive errors on the interface",
                None,
                |i| i.receive_errors,
            ),
            (
                "libvirt_domain_interface_stats_receive_drops",
                "Received packets dropped on the interface",
                None,
                |i| i.receive_drops,
            ),
            (
                "libvirt_domain_interface_stats_transmit",
                "Bytes transmitted on the interface",
                Some(Unit::Bytes),
                |i| i.transmit_bytes,
            ),
            (
                "libvirt_domain_interface_stats_transmit_packets",
                "Packets transmitted on the interface",
                None,
                |i| i.transmit_packets,
            ),
            (
                "libvirt_domain_interface_stats_transmit_errors",
                "Transmit errors on the interface",
                None,
                |i| i.transmit_errors,
            ),
            (
                "libvirt_domain_interface_stats_transmit_drops",
                "Transmitted packets dropped on the interface",
                None,
                |i| i.transmit_drops,
            ),
        ];
        for (name, help, unit, value) in &interfaces {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
            for (g, l) in guests.iter().zip(&labels) {
                for i in &g.interfaces {
                    let dev = DeviceLabel {
                        target_device: i.target_device.clone(),
                    };
                    ConstCounter::new(value(i)).encode(family.encode_family(&Join(l, &dev))?)?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

#[derive(Debug)]
struct SelfCollector {
    version: &'static str,
    statuses: Vec<SourceStatus>,
}

/// Renders the exporter's own families: build info and the refresh status of every source.
pub fn self_metrics(version: &'static str, statuses: &[SourceStatus]) -> String {
    encode(SelfCollector {
        version,
        statuses: statuses.to_vec(),
    })
}

impl Collector for SelfCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "site_exporter_build",
            "Version of the site exporter",
            None,
            MetricType::Info,
        )?;
        family.encode_info(&VersionLabel {
            version: self.version.to_string(),
        })?;

        let labels: Vec<SourceLabel> = self
            .statuses
            .iter()
            .map(|s| SourceLabel {
                source: s.name.to_string(),
            })
            .collect();
        let mut family = encoder.encode_descriptor(
            "site_exporter_source_up",
            "Whether the last refresh of the source succeeded",
            None,
            MetricType::Gauge,
        )?;
        for (s, l) in self.statuses.iter().zip(&labels) {
            ConstGauge::new(i64::from(s.up)).encode(family.encode_family(l)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "site_exporter_source_last_success_timestamp",
            "Unix time of the source's last successful refresh",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (s, l) in self.statuses.iter().zip(&labels) {
            if let Some(at) = s.last_success {
                let secs = at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                ConstGauge::new(secs).encode(family.encode_family(l)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "site_exporter_source_refresh_duration",
            "Duration of the source's last refresh, successful or not",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (s, l) in self.statuses.iter().zip(&labels) {
            if let Some(took) = s.last_duration {
                ConstGauge::new(took.as_secs_f64()).encode(family.encode_family(l)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "site_exporter_source_refresh_errors",
            "Failed refreshes of the source",
            None,
            MetricType::Counter,
        )?;
        for (s, l) in self.statuses.iter().zip(&labels) {
            ConstCounter::new(s.errors).encode(family.encode_family(l)?)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct RequestLabels {
    service: String,
    code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Debug)]
struct OpenstackRequestsCollector(
    crate::sources::openstack::client::RequestStats,
    Option<crate::sources::openstack::UsageStart>,
);

/// The OpenStack source's self-metrics: its requests and, once settled, where its accounting
/// starts (`origin="requested"`: configuration or portal; `origin="accounting"`: the
/// accounting in force, which a state file can hold from an earlier start).
pub fn openstack_self_metrics(
    stats: crate::sources::openstack::client::RequestStats,
    start: Option<crate::sources::openstack::UsageStart>,
) -> String {
    encode(OpenstackRequestsCollector(stats, start))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct OriginLabel {
    origin: String,
}

fn encode_usage_start(
    encoder: &mut DescriptorEncoder,
    start: crate::sources::openstack::UsageStart,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
            "site_exporter_openstack_usage_start_timestamp",
            "Start of the OpenStack usage accounting: requested (configuration or portal) and in force (accounting, possibly resumed from a state file); they differ after a start change",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
    for (origin, secs) in [
        ("accounting", start.accounting),
        ("requested", start.requested),
    ] {
        let labels = OriginLabel {
            origin: origin.to_owned(),
        };
        ConstGauge::new(secs as i64).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for OpenstackRequestsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "site_exporter_openstack_requests",
            "HTTP requests of the OpenStack source by service and status code (error: no response)",
            None,
            MetricType::Counter,
        )?;
        for ((service, code), n) in &self.0.requests {
            let labels = RequestLabels {
                service: service.as_str().to_owned(),
                code: code.clone(),
            };
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "site_exporter_openstack_request_duration",
            "Duration of the OpenStack source's HTTP requests by service",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (service, h) in &self.0.durations {
            let labels = ServiceLabel {
                service: service.as_str().to_owned(),
            };
            family
                .encode_family(&labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    h.sum,
                    h.count,
                    &h.pairs(),
                    None,
                )?;
        }
        if let Some(start) = self.1 {
            encode_usage_start(&mut encoder, start)?;
        }
        Ok(())
    }
}
