//! The exporter's own families: build info and the refresh status of every source.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::encode;
use crate::snapshot::health::SourceStatus;

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
        let mut family = encoder.encode_descriptor(
            "site_exporter_source_panics",
            "Panics of the source's refresh task; each is followed by a rebuild of the source from its configuration and state",
            None,
            MetricType::Counter,
        )?;
        for (s, l) in self.statuses.iter().zip(&labels) {
            ConstCounter::new(s.panics).encode(family.encode_family(l)?)?;
        }
        Ok(())
    }
}
