//! Command-line flags. Everything else is in the `--config` file.

use std::path::PathBuf;

use clap::Parser;

/// TLS + bearer-token gate that forwards only allowed /federate selectors to a Prometheus.
#[derive(Debug, Clone, Parser)]
#[command(name = "federation-gateway", version, about, max_term_width = 100)]
pub struct Cli {
    /// YAML configuration file; SIGHUP reloads it.
    #[arg(long, env = "FEDERATION_GATEWAY_CONFIG", value_name = "FILE")]
    pub config: PathBuf,

    /// Validate the configuration (and read its token and certificate files), then exit.
    #[arg(long = "check-config")]
    pub check_config: bool,

    /// Log filter: a level or tracing directives [default: info].
    #[arg(
        long = "log.level",
        env = "FEDERATION_GATEWAY_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,

    /// Log format.
    #[arg(long = "log.format", env = "FEDERATION_GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
