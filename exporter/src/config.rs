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
use crate::legacy::{LegacyOptions, MemoryUnit, SimpleVm, DEFAULT_SIMPLE_VM_TAG};
use crate::refresh::Schedule;
use crate::render::RenderOptions;
use crate::sources::dummy::{self, CloudSpec, DummyConfig, DummyError, Generate};
use crate::sources::libvirt::{self, LibvirtConfig};
use crate::sources::weights::{self, WeightsConfig};

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
    /// How the legacy families are computed (memory unit, SimpleVM split).
    pub legacy: LegacyOptions,
    pub dummy: Option<DummyConfig>,
    /// Credit weights for the legacy families, when configured.
    pub weights: Option<WeightsConfig>,
    pub libvirt: Option<LibvirtConfig>,
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
    simple_vm: Option<SimpleVmSection>,
    weights: Option<WeightsSection>,
    /// The portal's start-date URL, for every usage source.
    usage_start_url: Option<String>,
    /// Present (even as `dummy: {}`) means enabled.
    dummy: Option<DummySection>,
    /// Present (even as `libvirt: {}`) means enabled.
    libvirt: Option<LibvirtSection>,
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
struct WeightsSection {
    url: Option<String>,
    file: Option<PathBuf>,
    #[serde(default, deserialize_with = "duration::option")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration::option")]
    timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimpleVmSection {
    project_id: String,
    tag: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DummySection {
    file: Option<PathBuf>,
    /// The same as `weights.file`, where the original exporter kept it.
    weights: Option<PathBuf>,
    usage_start: Option<String>,
    projects: Option<u64>,
    servers_per_project: Option<u64>,
    guests: Option<u64>,
    seed: Option<u64>,
    #[serde(default, deserialize_with = "duration::option")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration::option")]
    timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LibvirtSection {
    uri: Option<String>,
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

/// The original exporter's environment variables that still mean something here. Each applies
/// only where the matching flag, variable or key of ours is not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationEnv {
    /// `USAGE_EXPORTER_START_DATE`: the accounting start.
    pub start_date: Option<String>,
    /// `USAGE_EXPORTER_DUMMY_FILE`: a dummy cloud file; enables the dummy source.
    pub dummy_file: Option<PathBuf>,
    /// `USAGE_EXPORTER_DUMMY_WEIGHTS_FILE`: credit weights for the dummy source.
    pub dummy_weights_file: Option<PathBuf>,
    /// `USAGE_EXPORTER_START_DATE_ENDPOINT`: the portal's start-date URL.
    pub start_date_url: Option<String>,
    /// `USAGE_EXPORTER_WEIGHTS_UPDATE_ENDPOINT`: the portal's weights URL.
    pub weights_url: Option<String>,
    /// `USAGE_EXPORTER_WEIGHT_UPDATE_FREQUENCY`: weights refresh, in refresh intervals.
    pub weights_laps: Option<String>,
    /// `USAGE_EXPORTER_SIMPLE_VM_PROJECT_ID`: the SimpleVM project.
    pub simple_vm_project_id: Option<String>,
    /// `USAGE_EXPORTER_SIMPLE_VM_PROJECT_TAG`: its metadata key.
    pub simple_vm_tag: Option<String>,
    /// `USAGE_EXPORTER_VERBOSE_MODE`: debug logging (Python's `strtobool`; anything else is off).
    pub verbose: bool,
}

impl MigrationEnv {
    /// Reads the variables; empty ones count as unset, as in the original.
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Self {
            start_date: var("USAGE_EXPORTER_START_DATE"),
            dummy_file: var("USAGE_EXPORTER_DUMMY_FILE").map(PathBuf::from),
            dummy_weights_file: var("USAGE_EXPORTER_DUMMY_WEIGHTS_FILE").map(PathBuf::from),
            start_date_url: var("USAGE_EXPORTER_START_DATE_ENDPOINT"),
            weights_url: var("USAGE_EXPORTER_WEIGHTS_UPDATE_ENDPOINT"),
            weights_laps: var("USAGE_EXPORTER_WEIGHT_UPDATE_FREQUENCY"),
            simple_vm_project_id: var("USAGE_EXPORTER_SIMPLE_VM_PROJECT_ID"),
            simple_vm_tag: var("USAGE_EXPORTER_SIMPLE_VM_PROJECT_TAG"),
            verbose: var("USAGE_EXPORTER_VERBOSE_MODE").is_some_and(|v| {
                matches!(
                    v.to_ascii_lowercase().as_str(),
                    "y" | "yes" | "t" | "true" | "on" | "1"
                )
            }),
        }
    }
}

impl Config {
    /// Reads `--config` (when given) and the original's variables, and merges the flags over
    /// them.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Self::merge(cli, file, &MigrationEnv::from_env())
    }

    /// Merges flags over a parsed file and the original's variables, and validates the result.
    pub fn merge(cli: &Cli, file: FileConfig, env: &MigrationEnv) -> Result<Self, ConfigError> {
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
            .unwrap_or_else(|| if env.verbose { "debug" } else { "info" }.to_string());
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
        let simple_vm = match (file.simple_vm, &env.simple_vm_project_id) {
            (Some(section), _) => Some((section.project_id, section.tag)),
            (None, Some(id)) => Some((id.clone(), None)),
            (None, None) => None,
        };
        let simple_vm = match simple_vm {
            Some((project_id, tag)) => {
                let tag = tag
                    .or(env.simple_vm_tag.clone())
                    .unwrap_or_else(|| DEFAULT_SIMPLE_VM_TAG.to_string());
                if project_id.trim().is_empty() {
                    return Err(invalid("simple_vm.project_id", "must not be empty"));
                }
                if tag.trim().is_empty() {
                    return Err(invalid("simple_vm.tag", "must not be empty"));
                }
                Some(SimpleVm { project_id, tag })
            }
            None => None,
        };
        let legacy = LegacyOptions {
            memory_unit: file.legacy.memory_unit.unwrap_or_default(),
            simple_vm,
        };

        let dummy_weights = file.dummy.as_ref().and_then(|d| d.weights.clone());
        let usage_start_url = cli
            .usage_start_url
            .clone()
            .or(file.usage_start_url)
            .or(env.start_date_url.clone());
        if let Some(url) = &usage_start_url {
            http_url("usage_start_url (--usage-start-url)", url)?;
        }
        let mut dummy = dummy_config(cli, file.dummy, env)?;
        if let Some(d) = dummy.as_mut() {
            d.usage_start_url = usage_start_url.clone();
        }
        let libvirt = libvirt_config(cli, file.libvirt)?;
        if dummy.is_some() && libvirt.is_some() {
            // Both would export the libvirt_* families, and one exposition cannot hold a
            // family twice.
            return Err(invalid(
                "libvirt (--libvirt)",
                "the dummy source already exports libvirt_* guests: enable --dummy or --libvirt, not both",
            ));
        }
        let openstack = crate::sources::openstack::config::from_parts(
            &crate::sources::openstack::config::OpenstackFlags {
                enabled: cli.openstack,
                cloud: cli.openstack_cloud.clone(),
                usage_start: cli.openstack_usage_start.clone(),
                state_file: cli.openstack_state_file.clone(),
                interval: cli.openstack_interval.map(Into::into),
            },
            file.openstack,
            usage_start_url.as_deref(),
            |key| std::env::var(key).ok(),
        )?;
        if dummy.is_some() && openstack.is_some() {
            // Both export the openstack_project_* families.
            return Err(invalid(
                "openstack (--openstack)",
                "the dummy source already exports a whole cloud: enable --dummy or --openstack, not both",
            ));
        }
        if dummy.is_none() && libvirt.is_none() && openstack.is_none() {
            return Err(invalid(
                "sources",
                "no source is enabled: pass --dummy, --openstack or --libvirt, or add a dummy:, openstack: or libvirt: section to the config file",
            ));
        }

        let projects_interval = openstack
            .as_ref()
            .map(|o| o.schedule.interval)
            .or(dummy.as_ref().map(|d| d.schedule.interval));
        let weights = weights_config(cli, file.weights, dummy_weights, env, projects_interval)?;
        Ok(Self {
            listen_address,
            log,
            render,
            legacy,
            dummy,
            weights,
            libvirt,
            openstack,
        })
    }
}

fn dummy_config(
    cli: &Cli,
    section: Option<DummySection>,
    env: &MigrationEnv,
) -> Result<Option<DummyConfig>, ConfigError> {
    let enabled = cli.dummy || section.is_some() || env.dummy_file.is_some();
    let s = section.unwrap_or_default();
    let file = cli.dummy_file.clone().or(s.file).or(env.dummy_file.clone());
    let usage_start = cli
        .dummy_usage_start
        .clone()
        .or(s.usage_start)
        .or(env.start_date.clone());
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
            ("--dummy.usage-start", cli.dummy_usage_start.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            return Err(invalid(
                "dummy",
                format!("{flag} is set but the dummy source is not enabled (pass --dummy)"),
            ));
        }
        return Ok(None);
    }

    let schedule = schedule(
        interval.unwrap_or(DEFAULT_DUMMY_INTERVAL),
        s.timeout,
        ("dummy.interval (--dummy.interval)", "dummy.timeout"),
    )?;

    let generated = projects.is_some() || servers_per_project.is_some() || seed.is_some();
    let cloud = match (file, generated) {
        (Some(_), true) => {
            return Err(invalid(
                "dummy.file (--dummy.file)",
                "a dummy file and a generated cloud (projects, servers_per_project, seed) exclude each other",
            ))
        }
        (Some(path), false) => CloudSpec::File(path),
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
    let config = DummyConfig {
        cloud,
        guests,
        usage_start,
        usage_start_url: None,
        schedule,
    };
    // Fail at start-up (and in --check-config) rather than at the first refresh.
    dummy::check(&config).map_err(|e| {
        let key = match e {
            DummyError::Read { .. } | DummyError::Parse { .. } => "dummy.file (--dummy.file)",
            DummyError::UsageStart(_) => "dummy.usage_start (--dummy.usage-start)",
            DummyError::StartDate(_) => "usage_start_url (--usage-start-url)",
        };
        invalid(key, e.to_string())
    })?;
    Ok(Some(config))
}

/// A refresh schedule: both durations positive, the timeout defaulting to the interval.
fn schedule(
    interval: Duration,
    timeout: Option<Duration>,
    (interval_key, timeout_key): (&'static str, &'static str),
) -> Result<Schedule, ConfigError> {
    if interval.is_zero() {
        return Err(invalid(interval_key, "must be greater than zero"));
    }
    let timeout = timeout.unwrap_or(interval);
    if timeout.is_zero() {
        return Err(invalid(timeout_key, "must be greater than zero"));
    }
    Ok(Schedule { interval, timeout })
}

/// An absolute http(s) URL; the error shows it without credentials or query.
fn http_url(key: &'static str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
        _ => Err(invalid(
            key,
            format!(
                "'{}' is not an http(s) URL",
                crate::sources::portal::redact(url)
            ),
        )),
    }
}

/// Weights refresh timeout when none is given (capped by the interval).
const DEFAULT_WEIGHTS_TIMEOUT: Duration = Duration::from_secs(30);

fn weights_config(
    cli: &Cli,
    section: Option<WeightsSection>,
    dummy_weights: Option<PathBuf>,
    env: &MigrationEnv,
    projects_interval: Option<Duration>,
) -> Result<Option<WeightsConfig>, ConfigError> {
    let s = section.unwrap_or_default();
    let url = cli
        .weights_url
        .clone()
        .or(s.url)
        .or(env.weights_url.clone());
    let file = cli
        .weights_file
        .clone()
        .or(cli.dummy_weights.clone())
        .or(s.file)
        .or(dummy_weights)
        .or(env.dummy_weights_file.clone());
    let origin = match (url, file) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(invalid(
                "weights",
                "give a weights URL or a weights file, not both",
            ))
        }
        (Some(url), None) => {
            http_url("weights.url (--weights.url)", &url)?;
            weights::Origin::Url(url)
        }
        (None, Some(path)) => {
            weights::check_file(&path)
                .map_err(|e| invalid("weights.file (--weights.file)", e.to_string()))?;
            weights::Origin::File(path)
        }
    };
    let Some(projects_interval) = projects_interval else {
        return Err(invalid(
            "weights",
            "credit weights are configured but no source of project usage is enabled",
        ));
    };
    let laps = match &env.weights_laps {
        Some(text) => Some(text.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            invalid(
                "USAGE_EXPORTER_WEIGHT_UPDATE_FREQUENCY",
                format!("'{text}' is not a positive whole number"),
            )
        })?),
        None => None,
    };
    let default_interval = match (&origin, laps) {
        (_, Some(laps)) => projects_interval * laps,
        (weights::Origin::Url(_), None) => projects_interval * 10,
        (weights::Origin::File(_), None) => projects_interval,
    };
    let interval = cli
        .weights_interval
        .map(Into::into)
        .or(s.interval)
        .unwrap_or(default_interval);
    let timeout = s.timeout.or(Some(DEFAULT_WEIGHTS_TIMEOUT.min(interval)));
    let schedule = schedule(
        interval,
        timeout,
        ("weights.interval (--weights.interval)", "weights.timeout"),
    )?;
    Ok(Some(WeightsConfig { origin, schedule }))
}

fn libvirt_config(
    cli: &Cli,
    section: Option<LibvirtSection>,
) -> Result<Option<LibvirtConfig>, ConfigError> {
    let enabled = cli.libvirt || section.is_some();
    let s = section.unwrap_or_default();
    let uri = cli.libvirt_uri.clone().or(s.uri);
    let interval = cli.libvirt_interval.map(Into::into).or(s.interval);
    if !enabled {
        let given = [
            ("--libvirt.uri", uri.is_some()),
            ("--libvirt.interval", interval.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            return Err(invalid(
                "libvirt",
                format!("{flag} is set but the libvirt source is not enabled (pass --libvirt)"),
            ));
        }
        return Ok(None);
    }
    if !cfg!(feature = "libvirt") {
        return Err(invalid(
            "libvirt (--libvirt)",
            "this site-exporter was built without the libvirt feature (rebuild with --features libvirt)",
        ));
    }
    let uri = uri.unwrap_or_else(|| libvirt::DEFAULT_URI.to_string());
    if uri.trim().is_empty() {
        return Err(invalid("libvirt.uri (--libvirt.uri)", "must not be empty"));
    }
    let schedule = schedule(
        interval.unwrap_or(libvirt::DEFAULT_INTERVAL),
        s.timeout,
        ("libvirt.interval (--libvirt.interval)", "libvirt.timeout"),
    )?;
    Ok(Some(LibvirtConfig { uri, schedule }))
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
