//! What every configuration section shares: the error that names a key or flag, durations in
//! config files, refresh schedules, the log format, and the original exporter's variables.
//!
//! The bottom of the configuration layers: each source owns its section (parsing, validation,
//! defaults) and builds it from these; `config` composes the sections. Nothing here reads a
//! file or knows a source.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

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

/// A [`ConfigError::Invalid`] for `key`.
pub fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// When a source refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub interval: Duration,
    /// Longest a single refresh may take before it counts as failed.
    pub timeout: Duration,
}

impl Schedule {
    /// Both durations positive, the timeout defaulting to the interval; errors name the key.
    pub fn try_new(
        interval: Duration,
        timeout: Option<Duration>,
        (interval_key, timeout_key): (&'static str, &'static str),
    ) -> Result<Self, ConfigError> {
        if interval.is_zero() {
            return Err(invalid(interval_key, "must be greater than zero"));
        }
        let timeout = timeout.unwrap_or(interval);
        if timeout.is_zero() {
            return Err(invalid(timeout_key, "must be greater than zero"));
        }
        Ok(Self { interval, timeout })
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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

/// `deserialize_with` helpers for durations written like `15s`, `1m30s`, `2h`.
pub mod duration {
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
