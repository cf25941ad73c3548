//! YAML file + command line -> one validated [`Config`].
//!
//! The file is read once at start-up with unknown keys rejected; flags and their environment
//! variables override it. Everything is checked here, so nothing after start-up meets an
//! impossible value, and every [`ConfigError`] names the key or flag it is about.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::Cli;
use crate::legacy::MemoryUnit;
use crate::refresh::Schedule;
use crate::render::RenderOptions;
use crate::sources::dummy::{self, CloudSpec, DummyConfig, Generate};

/// Default `--web.listen-address`.
pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9184";
/// Default refresh interval of the dummy source.
pub const DEFAULT_DUMMY_INTERVAL: Duration = Duration::from_secs(15);

/// Everything the exporter needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_address: SocketAddr,
    pub log: LogConfig,
    pub render: RenderOptions,
    pub memory_unit: MemoryUnit,
    pub dummy: Option<DummyConfig>,
    pub openstack: Option<crate::sources::openstack::config::OpenstackConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing` filter, checked to parse.
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A configuration problem, naming the key or flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// The file's shape. Every section and key is optional; unknown ones are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    web: WebSection,
    #[serde(default)]
    log: LogSection,
    legacy_metrics: Option<bool>,
    #[serde(default)]
    legacy: LegacySection,
    /// Present (even as `dummy: {}`) means enabled.
    dummy: Option<DummySection>,
    /// Present (even as `openstack: {}`) means enabled.
    openstack: Option<crate::sources::openstack::config::OpenstackSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebSection {
    listen_address: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    level: Option<String>,
    format: Option<LogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacySection {
    memory_unit: Option<MemoryUnit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DummySection {
    file: Option<PathBuf>,
    projects: Option<u64>,
    servers_per_project: Option<u64>,
    guests: Option<u64>,
    seed: Option<u64>,
    #[serde(default, deserialize_with = "duration::option")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration::option")]
    timeout: Option<Duration>,
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    fn parse(text: &str) -> Result<Self, serde_yaml::Error> {
        // An empty file is an empty mapping, not an error.
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text)
    }
}

impl Config {
    /// Reads `--config` (when given) and merges the flags over it.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    /// Merges flags over a parsed file and validates the result.
    pub fn merge(cli: &Cli, file: FileConfig) -> Result<Self, ConfigError> {
        let listen_address = match cli.listen_address.or(file.web.listen_address) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN_ADDRESS
                .parse()
                .expect("the default listen address parses"),
        };

        let filter = cli
            .log_level
            .clone()
            .or(file.log.level)
            .unwrap_or_else(|| "info".to_string());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&filter) {
            return Err(invalid(
                "log.level (--log.level)",
                format!("'{filter}': {e}"),
            ));
        }
        let log = LogConfig {
            filter,
            format: cli.log_format.or(file.log.format).unwrap_or_default(),
        };

        let render = RenderOptions {
            legacy_metrics: cli.legacy_metrics.or(file.legacy_metrics).unwrap_or(true),
        };
        let memory_unit = file.legacy.memory_unit.unwrap_or_default();

        let dummy = dummy_config(cli, file.dummy)?;
        let openstack = crate::sources::openstack::config::from_parts(
            &crate::sources::openstack::config::OpenstackFlags {
                enabled: cli.openstack,
                cloud: cli.openstack_cloud.clone(),
                usage_start: cli.openstack_usage_start.clone(),
                state_file: cli.openstack_state_file.clone(),
                interval: cli.openstack_interval.map(Into::into),
            },
            file.openstack,
            |key| std::env::var(key).ok(),
        )?;
        if dummy.is_none() && openstack.is_none() {
            return Err(invalid(
                "sources",
                "no source is enabled: pass --dummy or --openstack, or add a dummy: or openstack: section to the config file",
            ));
        }

        Ok(Self {
            listen_address,
            log,
            render,
            memory_unit,
            dummy,
            openstack,
        })
    }
}

fn dummy_config(
    cli: &Cli,
    section: Option<DummySection>,
) -> Result<Option<DummyConfig>, ConfigError> {
    let enabled = cli.dummy || section.is_some();
    let s = section.unwrap_or_default();
    let file = cli.dummy_file.clone().or(s.file);
    let projects = cli.dummy_projects.or(s.projects);
    let servers_per_project = cli.dummy_servers_per_project.or(s.servers_per_project);
    let guests = cli.dummy_guests.or(s.guests);
    let seed = cli.dummy_seed.or(s.seed);
    let interval = cli.dummy_interval.map(Into::into).or(s.interval);

    if !enabled {
        let given = [
            ("--dummy.file", file.is_some()),
            ("--dummy.projects", projects.is_some()),
            ("--dummy.servers-per-project", servers_per_project.is_some()),
            ("--dummy.guests", guests.is_some()),
            ("--dummy.seed", seed.is_some()),
            ("--dummy.interval", interval.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            return Err(invalid(
                "dummy",
                format!("{flag} is set but the dummy source is not enabled (pass --dummy)"),
            ));
        }
        return Ok(None);
    }

    let interval = interval.unwrap_or(DEFAULT_DUMMY_INTERVAL);
    if interval.is_zero() {
        return Err(invalid(
            "dummy.interval (--dummy.interval)",
            "must be greater than zero",
        ));
    }
    let timeout = s.timeout.unwrap_or(interval);
    if timeout.is_zero() {
        return Err(invalid("dummy.timeout", "must be greater than zero"));
    }

    let generated = projects.is_some() || servers_per_project.is_some() || seed.is_some();
    let cloud = match (file, generated) {
        (Some(_), true) => {
            return Err(invalid(
                "dummy.file (--dummy.file)",
                "a dummy file and a generated cloud (projects, servers_per_project, seed) exclude each other",
            ))
        }
        (Some(path), false) => {
            // Fail at start-up (and in --check-config) rather than at the first refresh.
            dummy::check_file(&path).map_err(|e| invalid("dummy.file (--dummy.file)", e.to_string()))?;
            CloudSpec::File(path)
        }
        (None, true) => {
            let projects = projects.unwrap_or(100);
            if projects == 0 || projects > 1_000_000 {
                return Err(invalid(
                    "dummy.projects (--dummy.projects)",
                    format!("{projects} is out of range 1..=1000000"),
                ));
            }
            let servers_per_project = servers_per_project.unwrap_or(5);
            if servers_per_project > 1000 {
                return Err(invalid(
                    "dummy.servers_per_project (--dummy.servers-per-project)",
                    format!("{servers_per_project} is out of range 0..=1000"),
                ));
            }
            CloudSpec::Generated(Generate {
                projects,
                servers_per_project,
                seed: seed.unwrap_or(1),
            })
        }
        (None, false) => CloudSpec::BuiltIn,
    };
    Ok(Some(DummyConfig {
        cloud,
        guests,
        schedule: Schedule { interval, timeout },
    }))
}

/// `deserialize_with` helpers for durations written like `15s`, `1m30s`, `2h`.
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        humantime::parse_duration(&text)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration '{text}': {e}")))
    }
}

#[cfg(test)]
mod tests;
