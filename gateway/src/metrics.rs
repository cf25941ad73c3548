//! The gateway's own metrics, served on the internal listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::error::Outcome;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// A configured client name, or `unknown`.
    pub client: String,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ClientLabel {
    pub client: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// Counters and histograms every request updates.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    response_bytes: Family<ClientLabel, Counter>,
    pub config_last_reload_success: Gauge,
    registry: Registry,
}

impl Metrics {
    pub fn new(version: &str) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "federation_gateway_requests",
            "Requests by client and outcome",
            requests.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register_with_unit(
            "federation_gateway_request_duration",
            "Time from the request's arrival to its response headers",
            Unit::Seconds,
            duration.clone(),
        );
        let response_bytes = Family::<ClientLabel, Counter>::default();
        registry.register_with_unit(
            "federation_gateway_response",
            "Body bytes sent to clients on the allowed path",
            Unit::Bytes,
            response_bytes.clone(),
        );
        let config_last_reload_success = Gauge::default();
        registry.register(
            "federation_gateway_config_last_reload_success",
            "Whether the last configuration (re)load succeeded",
            config_last_reload_success.clone(),
        );
        registry.register(
            "federation_gateway_build",
            "Version of the gateway",
            Info::new(VersionLabel {
                version: version.to_string(),
            }),
        );
        Self {
            requests,
            duration,
            response_bytes,
            config_last_reload_success,
            registry,
        }
    }

    pub fn request(&self, client: &str, outcome: Outcome, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                client: client.to_string(),
                outcome: outcome.as_str().to_string(),
            })
            .inc();
        self.duration.observe(seconds);
    }

    pub fn response_bytes(&self, client: &str, bytes: u64) {
        self.response_bytes
            .get_or_create(&ClientLabel {
                client: client.to_string(),
            })
            .inc_by(bytes);
    }

    /// The OpenMetrics exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding into a String cannot fail");
        out
    }
}
