//! `project_vcpu_usage` and `project_mb_usage` with the original exporter's names, help texts
//! and label names: portals bill from these series. Withheld (no family at all) while the
//! series are empty, i.e. while configured credit weights have not loaded.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::ProjectLabels;
use crate::snapshot::{LegacySeries, LegacyUsage};

/// Writes both legacy families for `series`; nothing when there is none.
pub(super) fn encode(
    encoder: &mut DescriptorEncoder,
    series: &[LegacySeries],
) -> Result<(), std::fmt::Error> {
    if series.is_empty() {
        return Ok(());
    }
    // Names, help texts and label names as the original os_project_usage_exporter has
    // them: portals bill from these series.
    let legacy_labels: Vec<ProjectLabels> = series.iter().map(|s| (&s.project).into()).collect();
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
    Ok(())
}
