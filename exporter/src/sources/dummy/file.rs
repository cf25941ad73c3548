//! The YAML dummy-cloud format: domains -> projects -> servers.
//!
//! ```yaml
//! usage_start: -30d              # accounting start; default -30d
//! flavors:
//!   m1.small: {vcpus: 1, ram_mb: 2048, disk_gb: 20, ephemeral_gb: 0}
//! domains:
//!   - name: default              # id derived from the name unless given (`default` -> "default")
//!     projects:
//!       - name: alpha
//!         enabled: true          # default true
//!         servers:
//!           - name: web-1
//!             flavor: m1.small   # or inline: vcpus, ram_mb, disk_gb, ephemeral_gb
//!             status: active     # any Nova status, default active
//!             created: -10d      # default: the accounting start
//!             deleted: -2d       # optional
//!             user: alice        # default demo
//!             metadata: {project_name: portal-project}
//! ```
//! Times are absolute (`2024-05-01T12:00:00Z`, `2024-05-01`) or relative to the moment the
//! exporter started (`-3d`, `+10m`, `now`), so a relative cloud keeps the same shape while
//! its counters grow. Ids are derived deterministically from names unless given.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::cloud::{Cloud, CloudProject, Domain, Flavor, Server};

/// Why a dummy file cannot be used; `at` names the place in the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("{at}: {problem}")]
    Invalid { at: String, problem: String },
}

fn invalid(at: impl Into<String>, problem: impl Into<String>) -> FileError {
    FileError::Invalid {
        at: at.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloudFile {
    usage_start: Option<String>,
    #[serde(default)]
    flavors: BTreeMap<String, FlavorSpec>,
    domains: Vec<DomainSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlavorSpec {
    vcpus: u64,
    ram_mb: u64,
    #[serde(default)]
    disk_gb: u64,
    #[serde(default)]
    ephemeral_gb: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainSpec {
    name: String,
    id: Option<String>,
    #[serde(default)]
    projects: Vec<ProjectSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectSpec {
    name: String,
    id: Option<String>,
    enabled: Option<bool>,
    #[serde(default)]
    servers: Vec<ServerSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSpec {
    name: String,
    id: Option<String>,
    flavor: Option<String>,
    vcpus: Option<u64>,
    ram_mb: Option<u64>,
    disk_gb: Option<u64>,
    ephemeral_gb: Option<u64>,
    status: Option<String>,
    created: Option<String>,
    deleted: Option<String>,
    user: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// Nova's server statuses, lower case.
const STATUSES: &[&str] = &[
    "active",
    "build",
    "error",
    "hard_reboot",
    "migrating",
    "password",
    "paused",
    "reboot",
    "rebuild",
    "rescue",
    "resize",
    "revert_resize",
    "shelved",
    "shelved_offloaded",
    "shutoff",
    "soft_deleted",
    "suspended",
    "unknown",
    "verify_resize",
];

/// Default accounting start of a file that names none, before the exporter started.
const DEFAULT_USAGE_START: Duration = Duration::from_secs(30 * 86_400);

/// Parses a dummy file; relative times count from `anchor`.
pub fn parse(text: &str, anchor: SystemTime) -> Result<Cloud, FileError> {
    let file: CloudFile = serde_yaml::from_str(text)?;
    let usage_start = match &file.usage_start {
        Some(t) => time(t, anchor).map_err(|p| invalid("usage_start", p))?,
        None => anchor - DEFAULT_USAGE_START,
    };
    let mut domains = Vec::with_capacity(file.domains.len());
    let mut domain_names = BTreeSet::new();
    for (di, d) in file.domains.into_iter().enumerate() {
        let at = format!("domains[{di}] ({})", d.name);
        if d.name.is_empty() {
            return Err(invalid(at, "name is empty"));
        }
        if !domain_names.insert(d.name.clone()) {
            return Err(invalid(at, "a domain of that name is already defined"));
        }
        let domain_id = d.id.unwrap_or_else(|| derived_domain_id(&d.name));
        let mut projects = Vec::with_capacity(d.projects.len());
        let mut project_names = BTreeSet::new();
        for (pi, p) in d.projects.into_iter().enumerate() {
            let at = format!("{at}.projects[{pi}] ({})", p.name);
            if p.name.is_empty() {
                return Err(invalid(at, "name is empty"));
            }
            if !project_names.insert(p.name.clone()) {
                return Err(invalid(
                    at,
                    "a project of that name is already in this domain",
                ));
            }
            let project_id =
                p.id.unwrap_or_else(|| derived_id(&["project", &d.name, &p.name]));
            let mut servers = Vec::with_capacity(p.servers.len());
            for (si, s) in p.servers.into_iter().enumerate() {
                let at = format!("{at}.servers[{si}] ({})", s.name);
                let id = s.id.clone().unwrap_or_else(|| {
                    uuid::Uuid::new_v5(
                        &uuid::Uuid::NAMESPACE_OID,
                        format!("server/{}/{}/{}", d.name, p.name, s.name).as_bytes(),
                    )
                    .hyphenated()
                    .to_string()
                });
                servers.push(
                    server(s, id, &file.flavors, usage_start, anchor)
                        .map_err(|p| invalid(at, p))?,
                );
            }
            projects.push(CloudProject {
                id: project_id,
                name: p.name,
                enabled: p.enabled.unwrap_or(true),
                servers,
            });
        }
        domains.push(Domain {
            id: domain_id,
            name: d.name,
            projects,
        });
    }
    Ok(Cloud {
        usage_start,
        domains,
    })
}

fn server(
    s: ServerSpec,
    id: String,
    flavors: &BTreeMap<String, FlavorSpec>,
    usage_start: SystemTime,
    anchor: SystemTime,
) -> Result<Server, String> {
    let inline =
        s.vcpus.is_some() || s.ram_mb.is_some() || s.disk_gb.is_some() || s.ephemeral_gb.is_some();
    let flavor = match (&s.flavor, inline) {
        (Some(_), true) => {
            return Err("give either flavor or vcpus/ram_mb/disk_gb, not both".into())
        }
        (Some(name), false) => {
            let f = flavors
                .get(name)
                .ok_or_else(|| format!("flavor '{name}' is not in the flavors table"))?;
            Flavor {
                name: name.clone(),
                vcpus: f.vcpus,
                ram_mb: f.ram_mb,
                root_gb: f.disk_gb,
                ephemeral_gb: f.ephemeral_gb,
            }
        }
        (None, _) => {
            let (Some(vcpus), Some(ram_mb)) = (s.vcpus, s.ram_mb) else {
                return Err("needs a flavor, or at least vcpus and ram_mb".into());
            };
            let root_gb = s.disk_gb.unwrap_or(0);
            let ephemeral_gb = s.ephemeral_gb.unwrap_or(0);
            Flavor {
                name: format!("custom.{vcpus}c{ram_mb}m{root_gb}g"),
                vcpus,
                ram_mb,
                root_gb,
                ephemeral_gb,
            }
        }
    };
    flavor.check()?;
    let status = s
        .status
        .unwrap_or_else(|| "active".into())
        .to_ascii_lowercase();
    if !STATUSES.contains(&status.as_str()) {
        return Err(format!("status '{status}' is not a Nova server status"));
    }
    let created = match &s.created {
        Some(t) => time(t, anchor).map_err(|p| format!("created: {p}"))?,
        None => usage_start,
    };
    let deleted = match &s.deleted {
        Some(t) => Some(time(t, anchor).map_err(|p| format!("deleted: {p}"))?),
        None => None,
    };
    if deleted.is_some_and(|d| d < created) {
        return Err("deleted is before created".into());
    }
    Ok(Server {
        id,
        name: s.name,
        flavor,
        status,
        created,
        deleted,
        user: s.user.unwrap_or_else(|| "demo".into()),
        metadata: s.metadata,
    })
}

/// Keystone's default domain has the id `default`; others get a derived one.
pub(super) fn derived_domain_id(name: &str) -> String {
    if name.eq_ignore_ascii_case("default") {
        "default".into()
    } else {
        derived_id(&["domain", name])
    }
}

/// A Keystone-style id (32 hex digits) derived from names.
pub(super) fn derived_id(parts: &[&str]) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, parts.join("/").as_bytes())
        .simple()
        .to_string()
}

/// Parses `now`, `-3d`, `+10m`, `2024-05-01` or an RFC 3339 time.
pub fn time(text: &str, anchor: SystemTime) -> Result<SystemTime, String> {
    let t = text.trim();
    if t == "now" || t.starts_with('-') || t.starts_with('+') {
        return crate::dates::parse_relative(t, anchor);
    }
    crate::dates::parse(t).map_err(|e| {
        if t.len() == 10 {
            format!("invalid date '{text}': {e}")
        } else {
            format!("invalid time '{text}': {e} (use RFC 3339, a date, now, or -3d / +2h)")
        }
    })
}

#[cfg(test)]
mod tests;
