//! The `dummy:` config section, its flags and the original exporter's `USAGE_EXPORTER_DUMMY_FILE`
//! and `USAGE_EXPORTER_START_DATE`.
//!
//! Precedence: flag (or its `SITE_EXPORTER_DUMMY_*` variable) > config file > the original's
//! variable > default. The cloud's files and times are checked here, at start-up.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{CloudSpec, DummyConfig, DummyError, Generate};
use crate::settings::{invalid, ConfigError, MigrationEnv, Schedule};

/// Default refresh interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// The file's `dummy:` section; present (even as `dummy: {}`) means enabled.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DummySection {
    file: Option<PathBuf>,
    /// The same as `weights.file`, where the original exporter kept it.
    pub weights: Option<PathBuf>,
    usage_start: Option<String>,
    projects: Option<u64>,
    servers_per_project: Option<u64>,
    guests: Option<u64>,
    seed: Option<u64>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    timeout: Option<Duration>,
}

/// What the flags say about the source.
#[derive(Debug, Clone, Default)]
pub struct DummyFlags {
    pub enabled: bool,
    pub file: Option<PathBuf>,
    pub usage_start: Option<String>,
    pub projects: Option<u64>,
    pub servers_per_project: Option<u64>,
    pub guests: Option<u64>,
    pub seed: Option<u64>,
    pub interval: Option<Duration>,
}

/// Builds the configuration, or `None` when the source is not enabled.
pub fn from_parts(
    flags: &DummyFlags,
    section: Option<DummySection>,
    env: &MigrationEnv,
) -> Result<Option<DummyConfig>, ConfigError> {
    let enabled = flags.enabled || section.is_some() || env.dummy_file.is_some();
    let s = section.unwrap_or_default();
    let file = flags.file.clone().or(s.file).or(env.dummy_file.clone());
    let usage_start = flags
        .usage_start
        .clone()
        .or(s.usage_start)
        .or(env.start_date.clone());
    let projects = flags.projects.or(s.projects);
    let servers_per_project = flags.servers_per_project.or(s.servers_per_project);
    let guests = flags.guests.or(s.guests);
    let seed = flags.seed.or(s.seed);
    let interval = flags.interval.or(s.interval);

    if !enabled {
        let given = [
            ("--dummy.file", file.is_some()),
            ("--dummy.projects", projects.is_some()),
            ("--dummy.servers-per-project", servers_per_project.is_some()),
            ("--dummy.guests", guests.is_some()),
            ("--dummy.seed", seed.is_some()),
            ("--dummy.interval", interval.is_some()),
            ("--dummy.usage-start", flags.usage_start.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            return Err(invalid(
                "dummy",
                format!("{flag} is set but the dummy source is not enabled (pass --dummy)"),
            ));
        }
        return Ok(None);
    }

    let schedule = Schedule::try_new(
        interval.unwrap_or(DEFAULT_INTERVAL),
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
    super::check(&config).map_err(|e| {
        let key = match e {
            DummyError::Read { .. } | DummyError::Parse { .. } => "dummy.file (--dummy.file)",
            DummyError::UsageStart(_) => "dummy.usage_start (--dummy.usage-start)",
            DummyError::StartDate(_) => "usage_start_url (--usage-start-url)",
        };
        invalid(key, e.to_string())
    })?;
    Ok(Some(config))
}
