//! `project_vcpu_usage` and `project_mb_usage` with the original exporter's names, help texts
//! and label names: portals bill from these series. Withheld (no family at all) while the
//! series are empty, i.e. while configured credit weights have not loaded.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::Written;
use crate::snapshot::{LegacySeries, LegacyUsage};

/// A legacy family: name, help text, and its value of a series.
pub(super) type LegacyFamily = (&'static str, &'static str, fn(&LegacyUsage) -> f64);

/// Names, help texts and label names as the original os_project_usage_exporter has them:
/// portals bill from these series.
pub(super) const FAMILIES: [LegacyFamily; 2] = [
    ("project_vcpu_usage", "Total vcpu usage", |u| u.vcpu_hours),
    ("project_mb_usage", "Total MB usage", |u| u.memory_hours),
];

/// Writes one legacy family for `series`, whose labels are `labels` (the caller withholds
/// the families while there is no series at all).
pub(super) fn encode(
    encoder: &mut DescriptorEncoder,
    (name, help, value): &LegacyFamily,
    series: &[LegacySeries],
    labels: &[Written],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (s, l) in series.iter().zip(labels) {
        ConstGauge::new(value(&s.usage)).encode(family.encode_family(l)?)?;
    }
    Ok(())
}
