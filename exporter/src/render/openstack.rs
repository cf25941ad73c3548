//! The OpenStack source's self-metrics: its requests by service and status, their durations,
//! and where its accounting starts.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::encode;
use crate::snapshot::health::{RequestStats, UsageStart};

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct RequestLabels {
    service: String,
    code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug)]
struct OpenstackRequestsCollector(RequestStats, Option<UsageStart>, Option<u64>);

/// The OpenStack source's self-metrics: its requests and, once settled, where its accounting
/// starts (`origin="requested"`: configuration or portal; `origin="accounting"`: the
/// accounting in force, which a state file can hold from an earlier start).
pub(super) fn self_metrics(
    stats: RequestStats,
    start: Option<UsageStart>,
    window_end: Option<u64>,
) -> String {
    encode(OpenstackRequestsCollector(stats, start, window_end))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct OriginLabel {
    origin: String,
}

fn encode_usage_start(
    encoder: &mut DescriptorEncoder,
    start: UsageStart,
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
        let family = encoder.encode_descriptor(
            "site_exporter_openstack_state_write_errors",
            "State file writes of the OpenStack source that failed; it counts on in memory and retries at the next refresh",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.0.state_write_errors).encode(family)?;
        let mut family = encoder.encode_descriptor(
            "site_exporter_openstack_reconcile_disagreements",
            "Servers on which the incremental server table disagreed with Nova at a reconciliation, by kind (usage: window usage differs; archived: the full listing lacks a server the table had; untracked: the table lacked a listed server)",
            None,
            MetricType::Counter,
        )?;
        for kind in ["archived", "untracked", "usage"] {
            let n = self
                .0
                .reconcile_disagreements
                .get(kind)
                .copied()
                .unwrap_or(0);
            let labels = KindLabel {
                kind: kind.to_owned(),
            };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        if let Some(start) = self.1 {
            encode_usage_start(&mut encoder, start)?;
        }
        if let Some(end) = self.2 {
            let family = encoder.encode_descriptor(
                "site_exporter_openstack_usage_window_end_timestamp",
                "End of the last usage window the OpenStack source counted: the totals cover usage_start up to it",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::try_from(end).unwrap_or(i64::MAX)).encode(family)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_accounting_starts_are_exported() {
        let start = UsageStart {
            requested: 1_780_272_000,
            accounting: 1_767_225_600,
        };
        let text = self_metrics(RequestStats::default(), Some(start), None);
        for (origin, secs) in [("accounting", 1_767_225_600), ("requested", 1_780_272_000)] {
            let line = format!(
                "site_exporter_openstack_usage_start_timestamp_seconds{{origin=\"{origin}\"}} {secs}\n"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        let without = self_metrics(RequestStats::default(), None, None);
        assert!(!without.contains("usage_start"), "{without}");
    }
}
