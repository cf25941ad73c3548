//! Command-line flags. Every flag also reads `SITE_EXPORTER_<FLAG>` (dots and dashes become
//! underscores); a flag or variable overrides the same setting in the `--config` file.
//!
//! Values are only parsed here (clap names the flag when one does not parse); `config` merges
//! them with the file and checks what depends on more than one setting.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::Parser;

/// Prometheus exporter for per-project OpenStack usage and libvirt guest statistics.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "site-exporter", version, about, max_term_width = 100)]
pub struct Cli {
    /// YAML configuration file; flags and environment variables override it.
    #[arg(long, env = "SITE_EXPORTER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Validate the configuration, print the result and exit (status 2 when invalid).
    #[arg(long = "check-config")]
    pub check_config: bool,

    /// With --check-config: also reach every backend once (portal URLs, Keystone and Nova,
    /// libvirt) and report each; status 1 when one cannot be reached.
    #[arg(long, requires = "check_config")]
    pub probe: bool,

    /// Address to serve metrics on [default: 0.0.0.0:9184].
    #[arg(
        long = "web.listen-address",
        env = "SITE_EXPORTER_WEB_LISTEN_ADDRESS",
        value_name = "ADDR"
    )]
    pub listen_address: Option<std::net::SocketAddr>,

    /// TLS, basic authentication and headers, in the Prometheus exporter-toolkit's format
    /// (node_exporter's keys); re-read when it changes [default: plain HTTP, no auth].
    #[arg(
        long = "web.config.file",
        env = "SITE_EXPORTER_WEB_CONFIG_FILE",
        value_name = "FILE"
    )]
    pub web_config_file: Option<PathBuf>,

    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives [default: info].
    #[arg(
        long = "log.level",
        env = "SITE_EXPORTER_LOG_LEVEL",
        value_name = "LEVEL"
    )]
    pub log_level: Option<String>,

    /// Log format: text or json [default: text].
    #[arg(
        long = "log.format",
        env = "SITE_EXPORTER_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: Option<crate::settings::LogFormat>,

    /// Export the original exporter's project_vcpu_usage and project_mb_usage [default: true].
    #[arg(
        long = "legacy-metrics",
        env = "SITE_EXPORTER_LEGACY_METRICS",
        value_name = "BOOL"
    )]
    pub legacy_metrics: Option<bool>,

    /// Serve a dummy cloud (a whole fake site: projects, usage, guests) instead of real
    /// sources; excludes --openstack and --libvirt.
    #[arg(long, env = "SITE_EXPORTER_DUMMY")]
    pub dummy: bool,

    /// YAML file describing the dummy cloud; re-read when it changes.
    #[arg(
        long = "dummy.file",
        env = "SITE_EXPORTER_DUMMY_FILE",
        value_name = "FILE"
    )]
    pub dummy_file: Option<PathBuf>,

    /// Generate a dummy cloud with this many projects.
    #[arg(
        long = "dummy.projects",
        env = "SITE_EXPORTER_DUMMY_PROJECTS",
        value_name = "N"
    )]
    pub dummy_projects: Option<u64>,

    /// Servers per generated project [default: 5].
    #[arg(
        long = "dummy.servers-per-project",
        env = "SITE_EXPORTER_DUMMY_SERVERS_PER_PROJECT",
        value_name = "M"
    )]
    pub dummy_servers_per_project: Option<u64>,

    /// Live servers that also appear as libvirt guests, the first in the cloud [default: 100].
    #[arg(
        long = "dummy.guests",
        env = "SITE_EXPORTER_DUMMY_GUESTS",
        value_name = "G"
    )]
    pub dummy_guests: Option<u64>,

    /// Seed of the generated cloud: the same seed gives the same cloud [default: 1].
    #[arg(
        long = "dummy.seed",
        env = "SITE_EXPORTER_DUMMY_SEED",
        value_name = "S"
    )]
    pub dummy_seed: Option<u64>,

    /// The same as --weights.file (the original exporter's --dummy-weights).
    #[arg(
        long = "dummy.weights",
        env = "SITE_EXPORTER_DUMMY_WEIGHTS",
        value_name = "FILE"
    )]
    pub dummy_weights: Option<PathBuf>,

    /// Accounting start of the dummy cloud: a date, an RFC 3339 time, or relative (-30d)
    /// [default: the file's own; for a TOML file, the exporter's start].
    #[arg(
        long = "dummy.usage-start",
        env = "SITE_EXPORTER_DUMMY_USAGE_START",
        value_name = "TIME",
        allow_hyphen_values = true
    )]
    pub dummy_usage_start: Option<String>,

    /// The portal's accounting start: a URL answering [{"start_date": ...}]; it wins over
    /// every other start date, and usage sources wait for it.
    #[arg(
        long = "usage-start-url",
        env = "SITE_EXPORTER_USAGE_START_URL",
        value_name = "URL"
    )]
    pub usage_start_url: Option<String>,

    /// The portal's credit weights (JSON), fetched at start and every --weights.interval; the
    /// legacy families wait until they have loaded once.
    #[arg(
        long = "weights.url",
        env = "SITE_EXPORTER_WEIGHTS_URL",
        value_name = "URL"
    )]
    pub weights_url: Option<String>,

    /// Credit weights from a file (.toml as the original writes them, .json, else YAML).
    #[arg(
        long = "weights.file",
        env = "SITE_EXPORTER_WEIGHTS_FILE",
        value_name = "FILE"
    )]
    pub weights_file: Option<PathBuf>,

    /// Weights refresh interval [default: 10 x the usage source's interval for a URL, the same
    /// interval for a file].
    #[arg(
        long = "weights.interval",
        env = "SITE_EXPORTER_WEIGHTS_INTERVAL",
        value_name = "DURATION"
    )]
    pub weights_interval: Option<humantime::Duration>,

    /// Refresh interval of the dummy source [default: 15s].
    #[arg(
        long = "dummy.interval",
        env = "SITE_EXPORTER_DUMMY_INTERVAL",
        value_name = "DURATION"
    )]
    pub dummy_interval: Option<humantime::Duration>,

    /// Export the guests of a hypervisor through a read-only libvirt connection.
    #[arg(long, env = "SITE_EXPORTER_LIBVIRT")]
    pub libvirt: bool,

    /// libvirt connection URI, opened read-only [default: qemu:///system].
    #[arg(
        long = "libvirt.uri",
        env = "SITE_EXPORTER_LIBVIRT_URI",
        value_name = "URI"
    )]
    pub libvirt_uri: Option<String>,

    /// Refresh interval of the libvirt source [default: 15s].
    #[arg(
        long = "libvirt.interval",
        env = "SITE_EXPORTER_LIBVIRT_INTERVAL",
        value_name = "DURATION"
    )]
    pub libvirt_interval: Option<humantime::Duration>,

    /// How long a domain gone from libvirt keeps its lifecycle event counters and Nova
    /// metadata [default: 1h].
    #[arg(
        long = "libvirt.event-grace",
        env = "SITE_EXPORTER_LIBVIRT_EVENT_GRACE",
        value_name = "DURATION"
    )]
    pub libvirt_event_grace: Option<humantime::Duration>,

    /// Read per-project usage from OpenStack (credentials from OS_* variables or clouds.yaml).
    #[arg(long, env = "SITE_EXPORTER_OPENSTACK")]
    pub openstack: bool,

    /// clouds.yaml entry to authenticate with [default: OS_CLOUD, else the OS_* variables].
    #[arg(
        long = "openstack.cloud",
        env = "SITE_EXPORTER_OPENSTACK_CLOUD",
        value_name = "NAME"
    )]
    pub openstack_cloud: Option<String>,

    /// Accounting start, e.g. 2026-01-01 or 2026-01-01T00:00:00Z (required, UTC).
    #[arg(
        long = "openstack.usage-start",
        env = "SITE_EXPORTER_OPENSTACK_USAGE_START",
        value_name = "DATE"
    )]
    pub openstack_usage_start: Option<String>,

    /// File the running totals are kept in across restarts; an empty value keeps them in
    /// memory only [default: data/openstack-state.json, relative to the working directory].
    #[arg(
        long = "openstack.state-file",
        env = "SITE_EXPORTER_OPENSTACK_STATE_FILE",
        value_name = "FILE",
        // Empty is meaningful (memory only); clap's path parser would refuse it.
        value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from)
    )]
    pub openstack_state_file: Option<PathBuf>,

    /// Refresh interval of the OpenStack source [default: 5m].
    #[arg(
        long = "openstack.interval",
        env = "SITE_EXPORTER_OPENSTACK_INTERVAL",
        value_name = "DURATION"
    )]
    pub openstack_interval: Option<humantime::Duration>,

    /// Age buckets of the stopped-servers families, comma-separated [default: 1d,7d,30d,90d].
    #[arg(
        long = "openstack.stopped-older-than",
        env = "SITE_EXPORTER_OPENSTACK_STOPPED_OLDER_THAN",
        value_name = "DURATIONS",
        value_delimiter = ','
    )]
    pub openstack_stopped_older_than: Option<Vec<String>>,

    /// How often the OpenStack source lists every server and compares its incremental usage
    /// with Nova's own answer [default: 6h].
    #[arg(
        long = "openstack.reconcile-interval",
        env = "SITE_EXPORTER_OPENSTACK_RECONCILE_INTERVAL",
        value_name = "DURATION"
    )]
    pub openstack_reconcile_interval: Option<humantime::Duration>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::CommandFactory;

    use super::*;

    #[test]
    fn dummy_help_says_it_replaces_real_sources() {
        let cmd = Cli::command();
        let help = cmd
            .get_arguments()
            .find(|a| a.get_id() == "dummy")
            .and_then(|a| a.get_help())
            .unwrap()
            .to_string();
        assert!(help.contains("instead of real"), "{help}");
        assert!(!help.contains("beside"), "{help}");
    }
}
