//! The `libvirt:` config section and its flags. Always compiled, so that a binary built without
//! the `libvirt` feature says so clearly instead of rejecting the section as unknown.

use std::time::Duration;

use serde::Deserialize;

use super::{LibvirtConfig, DEFAULT_EVENT_GRACE, DEFAULT_INTERVAL, DEFAULT_URI};
use crate::settings::{invalid, ConfigError, Schedule};

/// The file's `libvirt:` section; present (even as `libvirt: {}`) means enabled.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibvirtSection {
    uri: Option<String>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "crate::settings::duration::option")]
    event_grace: Option<Duration>,
}

/// What the flags say about the source.
#[derive(Debug, Clone, Default)]
pub struct LibvirtFlags {
    pub enabled: bool,
    pub uri: Option<String>,
    pub interval: Option<Duration>,
    pub event_grace: Option<Duration>,
}

/// Builds the configuration, or `None` when the source is not enabled.
pub fn from_parts(
    flags: &LibvirtFlags,
    section: Option<LibvirtSection>,
) -> Result<Option<LibvirtConfig>, ConfigError> {
    let enabled = flags.enabled || section.is_some();
    let s = section.unwrap_or_default();
    let uri = flags.uri.clone().or(s.uri);
    let interval = flags.interval.or(s.interval);
    let event_grace = flags.event_grace.or(s.event_grace);
    if !enabled {
        let given = [
            ("--libvirt.uri", uri.is_some()),
            ("--libvirt.interval", interval.is_some()),
            ("--libvirt.event-grace", flags.event_grace.is_some()),
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
    let uri = uri.unwrap_or_else(|| DEFAULT_URI.to_string());
    if uri.trim().is_empty() {
        return Err(invalid("libvirt.uri (--libvirt.uri)", "must not be empty"));
    }
    let schedule = Schedule::try_new(
        interval.unwrap_or(DEFAULT_INTERVAL),
        s.timeout,
        ("libvirt.interval (--libvirt.interval)", "libvirt.timeout"),
    )?;
    let event_grace = event_grace.unwrap_or(DEFAULT_EVENT_GRACE);
    if event_grace.is_zero() {
        return Err(invalid(
            "libvirt.event_grace (--libvirt.event-grace)",
            "must be greater than zero (it must outlast the alerts' windows)",
        ));
    }
    Ok(Some(LibvirtConfig {
        uri,
        schedule,
        event_grace,
    }))
}
