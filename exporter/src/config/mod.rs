//! YAML file + command line -> one validated [`Config`].
//!
//! The file is read once at start-up with unknown keys rejected; flags and their environment
//! variables override it. Everything is checked at start-up, so nothing after it meets an
//! impossible value, and every [`ConfigError`] names the key or flag it is about.
//!
//! This module composes: it owns the top-level keys (web, log, legacy, SimpleVM,
//! `usage_start_url`) and the checks between sources; each source owns its section, its flags'
//! meaning, its defaults and the original's variables for it (`sources::*::config`).

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::cli::Cli;
use crate::legacy::{LegacyOptions, MemoryUnit, SimpleVm, DEFAULT_SIMPLE_VM_TAG};
use crate::render::RenderOptions;
use crate::settings::invalid;
pub use crate::settings::{ConfigError, LogFormat, MigrationEnv};
use crate::sources::dummy::config::{DummyFlags, DummySection};
use crate::sources::dummy::DummyConfig;
use crate::sources::libvirt::config::{LibvirtFlags, LibvirtSection};
use crate::sources::libvirt::LibvirtConfig;
use crate::sources::openstack::config::{OpenstackConfig, OpenstackFlags, OpenstackSection};
use crate::sources::portal;
use crate::sources::weights::config::{WeightsFlags, WeightsSection};
use crate::sources::weights::WeightsConfig;

/// Default `--web.listen-address`.
pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9184";

/// Everything the exporter needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_address: SocketAddr,
    /// `--web.config.file`: TLS, basic auth, headers; read by [`crate::run`].
    pub web_config_file: Option<std::path::PathBuf>,
    pub log: LogConfig,
    pub render: RenderOptions,
    /// How the legacy families are computed (memory unit, SimpleVM split).
    pub legacy: LegacyOptions,
    pub dummy: Option<DummyConfig>,
    /// Credit weights for the legacy families, when configured.
    pub weights: Option<WeightsConfig>,
    pub libvirt: Option<LibvirtConfig>,
    pub openstack: Option<OpenstackConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing` filter, checked to parse.
    pub filter: String,
    pub format: LogFormat,
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
    openstack: Option<OpenstackSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebSection {
    listen_address: Option<SocketAddr>,
    config_file: Option<std::path::PathBuf>,
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
struct SimpleVmSection {
    project_id: String,
    tag: Option<String>,
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
            portal::check_url("usage_start_url (--usage-start-url)", url)?;
        }
        let dummy_flags = DummyFlags {
            enabled: cli.dummy,
            file: cli.dummy_file.clone(),
            usage_start: cli.dummy_usage_start.clone(),
            projects: cli.dummy_projects,
            servers_per_project: cli.dummy_servers_per_project,
            guests: cli.dummy_guests,
            seed: cli.dummy_seed,
            interval: cli.dummy_interval.map(Into::into),
        };
        let mut dummy = crate::sources::dummy::config::from_parts(&dummy_flags, file.dummy, env)?;
        if let Some(d) = dummy.as_mut() {
            d.usage_start_url = usage_start_url.clone();
        }
        let libvirt_flags = LibvirtFlags {
            enabled: cli.libvirt,
            uri: cli.libvirt_uri.clone(),
            interval: cli.libvirt_interval.map(Into::into),
            event_grace: cli.libvirt_event_grace.map(Into::into),
        };
        let libvirt = crate::sources::libvirt::config::from_parts(&libvirt_flags, file.libvirt)?;
        if dummy.is_some() && libvirt.is_some() {
            // Both would export the libvirt_* families, and one exposition cannot hold a
            // family twice.
            return Err(invalid(
                "libvirt (--libvirt)",
                "the dummy source already exports libvirt_* guests: enable --dummy or --libvirt, not both",
            ));
        }
        let openstack = crate::sources::openstack::config::from_parts(
            &OpenstackFlags {
                enabled: cli.openstack,
                cloud: cli.openstack_cloud.clone(),
                usage_start: cli.openstack_usage_start.clone(),
                state_file: cli.openstack_state_file.clone(),
                interval: cli.openstack_interval.map(Into::into),
                stopped_older_than: cli.openstack_stopped_older_than.clone(),
                reconcile_interval: cli.openstack_reconcile_interval.map(Into::into),
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
        let weights_flags = WeightsFlags {
            url: cli.weights_url.clone(),
            file: cli.weights_file.clone(),
            dummy_weights: cli.dummy_weights.clone(),
            interval: cli.weights_interval.map(Into::into),
        };
        let weights = crate::sources::weights::config::from_parts(
            &weights_flags,
            file.weights,
            dummy_weights,
            env,
            projects_interval,
        )?;
        Ok(Self {
            listen_address,
            web_config_file: cli.web_config_file.clone().or(file.web.config_file),
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

impl Config {
    /// What `--check-config` checked, one line per setting that matters, without secrets
    /// (URLs without user information or query; credentials are never part of the config).
    pub fn summary(&self) -> String {
        let mut out = vec![
            format!("listen address: {}", self.listen_address),
            format!("log: {} as {:?}", self.log.filter, self.log.format),
            format!(
                "legacy families: {} (memory unit {:?}{})",
                if self.render.legacy_metrics {
                    "on"
                } else {
                    "off"
                },
                self.legacy.memory_unit,
                self.legacy
                    .simple_vm
                    .as_ref()
                    .map_or(String::new(), |s| format!(
                        ", SimpleVM project {} split by {}",
                        s.project_id, s.tag
                    )),
            ),
        ];
        let every = |s: &crate::settings::Schedule| {
            format!("every {:?}, timeout {:?}", s.interval, s.timeout)
        };
        if let Some(d) = &self.dummy {
            let cloud = match &d.cloud {
                crate::sources::dummy::CloudSpec::BuiltIn => "the built-in cloud".to_owned(),
                crate::sources::dummy::CloudSpec::File(p) => format!("file {} (read)", p.display()),
                crate::sources::dummy::CloudSpec::Generated(g) => format!(
                    "{} generated projects of {} servers (seed {})",
                    g.projects, g.servers_per_project, g.seed
                ),
            };
            out.push(format!("source dummy: {cloud}, {}", every(&d.schedule)));
        }
        if let Some(o) = &self.openstack {
            let start = match (&o.usage_start_url, o.usage_start) {
                (Some(url), _) => format!("start from the portal ({})", portal::redact(url)),
                (None, Some(t)) => format!("start {}", humantime::format_rfc3339_seconds(t)),
                (None, None) => "no start".to_owned(),
            };
            let state = o.state_file.as_ref().map_or_else(
                || "memory only (no state file)".to_owned(),
                |p| format!("state file {}", p.display()),
            );
            let cloud = o.cloud.as_deref().map_or("OS_* variables".to_owned(), |c| {
                format!("clouds.yaml entry {c}")
            });
            out.push(format!(
                "source openstack: {cloud}, {start}, {state}, quotas {}, {} (Keystone and Nova are not contacted by this check)",
                if o.quotas { "on" } else { "off" },
                every(&o.schedule)
            ));
        }
        if let Some(l) = &self.libvirt {
            out.push(format!(
                "source libvirt: {}, {}, lifecycle events of a gone domain kept {}",
                l.uri,
                every(&l.schedule),
                humantime::format_duration(l.event_grace)
            ));
        }
        if let Some(w) = &self.weights {
            let origin = match &w.origin {
                crate::sources::weights::Origin::Url(u) => format!("URL {}", portal::redact(u)),
                crate::sources::weights::Origin::File(p) => format!("file {} (read)", p.display()),
            };
            out.push(format!("credit weights: {origin}, {}", every(&w.schedule)));
        }
        out.join("\n")
    }
}

#[cfg(test)]
mod tests;
