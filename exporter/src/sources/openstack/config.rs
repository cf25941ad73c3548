//! The `openstack:` config section, its flags, and the original exporter's variables.
//!
//! Precedence: flag (or its `SITE_EXPORTER_OPENSTACK_*` variable) > config file >
//! `USAGE_EXPORTER_*` variable of the original exporter > default.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::client::Limits;
use super::keystone::Filters;
use crate::settings::{ConfigError, Schedule};
use crate::snapshot::StoppedAges;

/// Default state file, relative to the working directory (as Prometheus keeps `data/`); in
/// the image the working directory is the state volume.
pub const DEFAULT_STATE_FILE: &str = "data/openstack-state.json";

/// Default refresh interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// The file's `openstack:` section; present (even empty) means enabled.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenstackSection {
    cloud: Option<String>,
    usage_start: Option<String>,
    state_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    request_timeout: Option<Duration>,
    concurrency: Option<usize>,
    retries: Option<u32>,
    #[serde(default)]
    quotas: bool,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    exclude_domains: Vec<String>,
    #[serde(default)]
    projects: Vec<String>,
    #[serde(default)]
    exclude_projects: Vec<String>,
    /// Age buckets of the stopped-servers families, e.g. `[1d, 7d, 30d, 90d]`.
    stopped_older_than: Option<Vec<String>>,
    incremental: Option<bool>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    reconcile_interval: Option<Duration>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    projects_interval: Option<Duration>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    quotas_interval: Option<Duration>,
}

/// What the flags say about the source.
#[derive(Debug, Clone, Default)]
pub struct OpenstackFlags {
    pub enabled: bool,
    pub cloud: Option<String>,
    pub usage_start: Option<String>,
    pub state_file: Option<PathBuf>,
    pub interval: Option<Duration>,
    /// `--openstack.stopped-older-than`, comma-separated durations as given.
    pub stopped_older_than: Option<Vec<String>>,
    /// `--openstack.reconcile-interval`.
    pub reconcile_interval: Option<Duration>,
}

/// How often each part of the cloud is read in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// Between reconciliations, list only the servers changed since the last refresh and
    /// compute the usage window from them [default: true]; off, every refresh lists every
    /// server and asks Nova for the window.
    pub incremental: bool,
    /// A full listing and Nova's own usage answer this often [default: 6h].
    pub reconcile: Duration,
    /// Keystone's projects and domains are read again this often [default: 15m].
    pub projects: Duration,
    /// Quotas are read again this often [default: 1h]; a project not read yet is read at the
    /// next refresh.
    pub quotas: Duration,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            incremental: true,
            reconcile: DEFAULT_RECONCILE_INTERVAL,
            projects: DEFAULT_PROJECTS_INTERVAL,
            quotas: DEFAULT_QUOTAS_INTERVAL,
        }
    }
}

/// Default reconciliation interval: a few hours, so that rows archived in between are caught
/// the same day at a few full listings' cost.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// Default age of Keystone's project list before it is read again.
pub const DEFAULT_PROJECTS_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Default age of the quotas before they are read again.
pub const DEFAULT_QUOTAS_INTERVAL: Duration = Duration::from_secs(3600);

/// The validated configuration of the OpenStack source.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenstackConfig {
    /// A clouds.yaml entry; `None` reads `OS_*` variables (or `OS_CLOUD`).
    pub cloud: Option<String>,
    /// The accounting epoch; `None` only when `usage_start_url` gives it.
    pub usage_start: Option<SystemTime>,
    /// The portal's start date (top-level `usage_start_url`); it wins over `usage_start`.
    pub usage_start_url: Option<String>,
    pub state_file: Option<PathBuf>,
    pub schedule: Schedule,
    pub limits: Limits,
    pub filters: Filters,
    /// Read per-project compute quotas [default: false].
    pub quotas: bool,
    /// Age buckets of the stopped-servers families [default: 1d, 7d, 30d, 90d].
    pub stopped_ages: StoppedAges,
    pub cadence: Cadence,
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// Builds the configuration, or `None` when the source is not enabled. `env` reads the
/// original exporter's `USAGE_EXPORTER_*` variables; `usage_start_url` is the top-level
/// setting (already validated), which makes `usage_start` optional.
pub fn from_parts(
    flags: &OpenstackFlags,
    section: Option<OpenstackSection>,
    usage_start_url: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<OpenstackConfig>, ConfigError> {
    let enabled = flags.enabled || section.is_some();
    if !enabled {
        return Ok(None);
    }
    // Empty values count as unset, as in the original.
    let env = |key: &str| {
        env(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let s = section.unwrap_or_default();
    let start_text = flags
        .usage_start
        .clone()
        .or(s.usage_start)
        .or_else(|| env("USAGE_EXPORTER_START_DATE"));
    let usage_start = match start_text {
        Some(text) => {
            let start = crate::dates::parse(&text)
                .map_err(|e| invalid("openstack.usage_start (--openstack.usage-start)", e))?;
            if start > SystemTime::now() {
                return Err(invalid(
                    "openstack.usage_start (--openstack.usage-start)",
                    format!("'{text}' is in the future"),
                ));
            }
            Some(start)
        }
        None if usage_start_url.is_some() => None,
        None => {
            return Err(invalid(
                "openstack.usage_start (--openstack.usage-start)",
                "required: the accounting start, e.g. 2026-01-01 (or USAGE_EXPORTER_START_DATE, or usage_start_url)",
            ))
        }
    };
    let legacy_interval = match env("USAGE_EXPORTER_UPDATE_INTERVAL") {
        Some(v) => Some(Duration::from_secs(v.trim().parse::<u64>().map_err(
            |_| {
                invalid(
                    "USAGE_EXPORTER_UPDATE_INTERVAL",
                    format!("'{v}' is not a number of seconds"),
                )
            },
        )?)),
        None => None,
    };
    let interval = flags
        .interval
        .or(s.interval)
        .or(legacy_interval)
        .unwrap_or(DEFAULT_INTERVAL);
    let schedule = Schedule::try_new(
        interval,
        s.timeout,
        (
            "openstack.interval (--openstack.interval)",
            "openstack.timeout",
        ),
    )?;
    let defaults = Limits::default();
    let limits = Limits {
        concurrency: s.concurrency.unwrap_or(defaults.concurrency),
        request_timeout: s.request_timeout.unwrap_or(defaults.request_timeout),
        retries: s.retries.unwrap_or(defaults.retries),
        backoff: defaults.backoff,
    };
    if limits.concurrency == 0 || limits.concurrency > 64 {
        return Err(invalid("openstack.concurrency", "must be between 1 and 64"));
    }
    if limits.request_timeout.is_zero() {
        return Err(invalid(
            "openstack.request_timeout",
            "must be greater than zero",
        ));
    }
    let stopped_ages = match flags.stopped_older_than.clone().or(s.stopped_older_than) {
        None => StoppedAges::default(),
        Some(texts) => stopped_ages(&texts)?,
    };
    let cadence = cadence(
        s.incremental,
        flags.reconcile_interval.or(s.reconcile_interval),
        s.projects_interval,
        s.quotas_interval,
        interval,
    )?;
    let mut domains = s.domains;
    if domains.is_empty() {
        if let Some(v) = env("USAGE_EXPORTER_PROJECT_DOMAINS") {
            domains = v
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect();
        }
        // As in the original, the domain id takes precedence over the names.
        if let Some(id) = env("USAGE_EXPORTER_PROJECT_DOMAIN_ID").filter(|v| !v.trim().is_empty()) {
            domains = vec![id.trim().to_owned()];
        }
    }
    Ok(Some(OpenstackConfig {
        cloud: flags.cloud.clone().or(s.cloud),
        usage_start,
        usage_start_url: usage_start_url.map(str::to_owned),
        // On by default: without it a restart re-reads the whole window, and rows Nova has
        // archived since are gone from the answer, so counters would drop. Empty turns it off.
        state_file: match flags.state_file.clone().or(s.state_file) {
            None => Some(PathBuf::from(DEFAULT_STATE_FILE)),
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p),
        },
        schedule,
        limits,
        filters: Filters {
            domains,
            exclude_domains: s.exclude_domains,
            projects: s.projects,
            exclude_projects: s.exclude_projects,
        },
        quotas: s.quotas,
        stopped_ages,
        cadence,
    }))
}

/// The cadence from its keys: intervals of at least a second, the reconciliation not more
/// often than the refresh (every refresh in full is `incremental: false`).
fn cadence(
    incremental: Option<bool>,
    reconcile: Option<Duration>,
    projects: Option<Duration>,
    quotas: Option<Duration>,
    interval: Duration,
) -> Result<Cadence, ConfigError> {
    let d = Cadence::default();
    let c = Cadence {
        incremental: incremental.unwrap_or(d.incremental),
        reconcile: reconcile.unwrap_or(d.reconcile),
        projects: projects.unwrap_or(d.projects),
        quotas: quotas.unwrap_or(d.quotas),
    };
    for (key, v) in [
        (
            "openstack.reconcile_interval (--openstack.reconcile-interval)",
            c.reconcile,
        ),
        ("openstack.projects_interval", c.projects),
        ("openstack.quotas_interval", c.quotas),
    ] {
        if v < Duration::from_secs(1) {
            return Err(invalid(key, "must be at least 1s"));
        }
    }
    if c.reconcile < interval {
        return Err(invalid(
            "openstack.reconcile_interval (--openstack.reconcile-interval)",
            format!(
                "{} is shorter than the refresh interval {}; for a full listing at every refresh set openstack.incremental: false",
                humantime::format_duration(c.reconcile),
                humantime::format_duration(interval)
            ),
        ));
    }
    Ok(c)
}

/// The age buckets from their texts (`1d`, `36h`, ...), or an error naming the bad one.
fn stopped_ages(texts: &[String]) -> Result<StoppedAges, ConfigError> {
    const KEY: &str = "openstack.stopped_older_than (--openstack.stopped-older-than)";
    let ages = texts
        .iter()
        .map(|t| {
            humantime::parse_duration(t.trim())
                .map_err(|e| invalid(KEY, format!("'{t}' is not a duration such as 7d: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    StoppedAges::try_new(ages).map_err(|problem| invalid(KEY, format!("{texts:?}: {problem}")))
}

#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
