//! The `weights:` config section, its flags, and the original exporter's
//! `USAGE_EXPORTER_WEIGHTS_UPDATE_ENDPOINT`, `USAGE_EXPORTER_DUMMY_WEIGHTS_FILE` and
//! `USAGE_EXPORTER_WEIGHT_UPDATE_FREQUENCY`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Origin, WeightsConfig};
use crate::settings::{invalid, ConfigError, MigrationEnv, Schedule};
use crate::sources::portal;
use crate::weights;

/// The file's `weights:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsSection {
    url: Option<String>,
    file: Option<PathBuf>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    timeout: Option<Duration>,
}

/// What the flags say about the weights.
#[derive(Debug, Clone, Default)]
pub struct WeightsFlags {
    pub url: Option<String>,
    pub file: Option<PathBuf>,
    /// `--dummy.weights`, the same as `--weights.file`.
    pub dummy_weights: Option<PathBuf>,
    pub interval: Option<Duration>,
}

/// Weights refresh timeout when none is given (capped by the interval).
const DEFAULT_WEIGHTS_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the configuration, or `None` when no weights are configured. `dummy_weights` is the
/// dummy section's `weights:` key; `projects_interval` the interval of the projects source
/// (the default refresh follows it, as in the original).
pub fn from_parts(
    flags: &WeightsFlags,
    section: Option<WeightsSection>,
    dummy_weights: Option<PathBuf>,
    env: &MigrationEnv,
    projects_interval: Option<Duration>,
) -> Result<Option<WeightsConfig>, ConfigError> {
    let s = section.unwrap_or_default();
    let url = flags.url.clone().or(s.url).or(env.weights_url.clone());
    let file = flags
        .file
        .clone()
        .or(flags.dummy_weights.clone())
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
            portal::check_url("weights.url (--weights.url)", &url)?;
            Origin::Url(url)
        }
        (None, Some(path)) => {
            weights::check_file(&path)
                .map_err(|e| invalid("weights.file (--weights.file)", e.to_string()))?;
            Origin::File(path)
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
        (Origin::Url(_), None) => projects_interval * 10,
        (Origin::File(_), None) => projects_interval,
    };
    let interval = flags.interval.or(s.interval).unwrap_or(default_interval);
    let timeout = s.timeout.or(Some(DEFAULT_WEIGHTS_TIMEOUT.min(interval)));
    let schedule = Schedule::try_new(
        interval,
        timeout,
        ("weights.interval (--weights.interval)", "weights.timeout"),
    )?;
    Ok(Some(WeightsConfig { origin, schedule }))
}
