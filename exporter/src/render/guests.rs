//! The `libvirt_*` families: one hypervisor's guests as libvirt reports them, with the Nova
//! metadata that joins them to projects.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{encode, Join};
use crate::snapshot::{
    BlockStats, Guest, GuestsSnapshot, InterfaceStats, MemoryStats, NovaMetadata,
};

/// Renders the `libvirt_*` families.
pub fn guests(snapshot: Arc<GuestsSnapshot>) -> String {
    encode(collector(snapshot))
}

/// What [`guests`] encodes, for encoding into a buffer of the caller's.
pub(super) fn collector(snapshot: Arc<GuestsSnapshot>) -> impl Collector {
    GuestsCollector { snapshot }
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
struct EventLabels {
    event: &'static str,
    reason: &'static str,
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
type MemoryFamily = (&'static str, &'static str, fn(&MemoryStats) -> Option<u64>);
type BlockFamily = (
    &'static str,
    &'static str,
    Option<Unit>,
    MetricType,
    fn(&BlockStats) -> f64,
);
type InterfaceFamily = (
    &'static str,
    &'static str,
    Option<Unit>,
    fn(&InterfaceStats) -> u64,
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
        // Departed domains keep theirs for the grace period: the per-project join of their
        // last lifecycle events needs it.
        let present = guests.iter().map(|g| (&g.name, &g.openstack));
        let departed = snap.departed.iter().map(|d| (&d.name, &d.openstack));
        for (name, meta) in present.chain(departed) {
            if let Some(m) = meta {
                let domain = DomainLabel {
                    domain: name.clone(),
                };
                family.encode_info(&Join(&domain, &openstack_labels(m)))?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "libvirt_domain_lifecycle_events",
            "Lifecycle events of the domain since the exporter started, by libvirt event and reason",
            None,
            MetricType::Counter,
        )?;
        for d in &snap.events {
            let domain = DomainLabel {
                domain: d.domain.clone(),
            };
            for (kind, count) in &d.counts {
                let labels = EventLabels {
                    event: kind.event,
                    reason: kind.reason,
                };
                ConstCounter::new(*count).encode(family.encode_family(&Join(&domain, &labels))?)?;
            }
        }
        let family = encoder.encode_descriptor(
            "libvirt_event_stream_up",
            "Whether the lifecycle event callback is registered on a live connection",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(snap.event_stream.up)).encode(family)?;
        let family = encoder.encode_descriptor(
            "libvirt_event_stream_reconnects",
            "Times the lifecycle event stream was lost and registered again on a new connection",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(snap.event_stream.reconnects).encode(family)?;

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

fn openstack_labels(m: &NovaMetadata) -> OpenstackLabels {
    OpenstackLabels {
        instance_id: m.instance_id.clone(),
        instance_name: m.instance_name.clone(),
        flavor_name: m.flavor_name.clone(),
        project_id: m.project_id.clone(),
        project_name: m.project_name.clone(),
        user_id: m.user_id.clone(),
        user_name: m.user_name.clone(),
    }
}
