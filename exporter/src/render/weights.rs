//! `site_exporter_usage_weight`: the credit weights in force, so a portal can see what the
//! legacy families were computed with.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::encode;
use crate::weights::{Resource, Weights};

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct WeightLabels {
    resource: String,
    value: String,
    since: String,
}

/// Renders the weights in force.
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
