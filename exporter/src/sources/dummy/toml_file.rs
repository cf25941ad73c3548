//! The original exporter's TOML dummy clouds, read as they are (files ending in `.toml`).
//!
//! ```toml
//! [default]                       # domain name
//! domain_id = "default"
//! [[default.projects]]
//! project_name = "MyOSP"
//! project_id = "123MyOSP"
//! machines = [
//!   {ram = 8, cpus = 2, existence = true, instance_id = "1"},              # since the start
//!   {ram = 8, cpus = 4, existence = false, instance_id = "2"},             # never
//!   {ram = 8, cpus = 2, existence = 2020-07-15T14:30:00, instance_id = "3"},  # since then
//!   {ram = 8, cpus = 4, existence = [2020-07-15T14:30:00, 2020-07-16T20:40:00], instance_id = "4"},
//!   {ram = 8, cpus = 2, existence = true, instance_id = "5", metadata = {project_name = "MySVM"}},
//! ]
//! ```
//! `ram` is in GiB (default 8), `cpus` defaults to 4, `existence` to `true`. `true` means since
//! the accounting start (the configured start date, or the exporter's start without one); a
//! time means since then, or since the start if that is later; a pair means between the two.
//! As in the original, a time without an offset is UTC; unlike the original, an explicit
//! offset is honoured rather than dropped.
//!
//! The text is deserialized straight into the structs below rather than through a
//! `toml::Table` of owned values (the `toml` crate still builds its own borrowed tree while
//! parsing, ~110 MB on the original's 10,000-project stress file; see `super::parse` for how
//! that memory is given back). Types the structs do not accept are the TOML deserializer's
//! errors (line, column and the line itself); value checks name the place as a key path.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::value::{Datetime, Offset};
use toml::Value;

use super::cloud::{Cloud, CloudProject, Domain, Flavor, Server};
use super::file::FileError;

fn invalid(at: impl Into<String>, problem: impl Into<String>) -> FileError {
    FileError::Invalid {
        at: at.into(),
        problem: problem.into(),
    }
}

/// The top level: domains by name, in file order.
struct RawFile(Vec<(String, RawDomain)>);

#[derive(Deserialize)]
#[serde(expecting = "a table (a domain)")]
struct RawDomain {
    domain_id: Option<String>,
    #[serde(default)]
    projects: Vec<RawProject>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table (a project)")]
struct RawProject {
    project_name: Option<String>,
    project_id: Option<String>,
    #[serde(default)]
    machines: Vec<RawMachine>,
}

#[derive(Deserialize)]
#[serde(expecting = "a table (a machine)")]
struct RawMachine {
    ram: Option<i64>,
    cpus: Option<i64>,
    instance_id: Option<String>,
    existence: Option<Existence>,
    metadata: Option<BTreeMap<String, Value>>,
}

/// `existence`: `true`, `false`, a time, or a list that must be `[start, stop]`.
enum Existence {
    Flag(bool),
    Since(Datetime),
    Between(Vec<Datetime>),
}

impl<'de> Deserialize<'de> for RawFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Domains;
        impl<'de> Visitor<'de> for Domains {
            type Value = RawFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("tables of domains")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFile, A::Error> {
                let mut domains = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    domains.push(entry);
                }
                Ok(RawFile(domains))
            }
        }
        d.deserialize_map(Domains)
    }
}

impl<'de> Deserialize<'de> for Existence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Forms;
        impl<'de> Visitor<'de> for Forms {
            type Value = Existence;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, a time or [start, stop]")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Existence, E> {
                Ok(Existence::Flag(v))
            }
            // A TOML date-time reaches a visitor as a one-entry map.
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Existence, A::Error> {
                Datetime::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Existence::Since)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Existence, A::Error> {
                let mut times = Vec::with_capacity(2);
                while let Some(t) = seq.next_element()? {
                    times.push(t);
                }
                Ok(Existence::Between(times))
            }
        }
        d.deserialize_any(Forms)
    }
}

/// Parses an original TOML cloud; `usage_start` is what `existence = true` means.
pub fn parse(text: &str, usage_start: SystemTime) -> Result<Cloud, FileError> {
    let RawFile(raw) = toml::from_str(text).map_err(|e| invalid("TOML", e.to_string()))?;
    let mut domains = Vec::with_capacity(raw.len());
    for (domain_name, content) in raw {
        let at = format!("[{domain_name}]");
        let projects = content
            .projects
            .into_iter()
            .enumerate()
            .map(|(i, p)| project(p, &format!("{at}.projects[{i}]"), usage_start))
            .collect::<Result<_, _>>()?;
        domains.push(Domain {
            id: content
                .domain_id
                .unwrap_or_else(|| "UNKNOWN_DOMAIN_ID".into()),
            name: domain_name,
            projects,
        });
    }
    Ok(Cloud {
        usage_start,
        domains,
    })
}

fn project(p: RawProject, at: &str, usage_start: SystemTime) -> Result<CloudProject, FileError> {
    let mut servers = Vec::with_capacity(p.machines.len());
    for (i, m) in p.machines.into_iter().enumerate() {
        if let Some(server) = machine(m, &format!("{at}.machines[{i}]"), usage_start)? {
            servers.push(server);
        }
    }
    Ok(CloudProject {
        id: p.project_id.unwrap_or_else(|| "UNKNOWN_ID".into()),
        name: p.project_name.unwrap_or_else(|| "UNKNOWN_NAME".into()),
        enabled: true,
        servers,
    })
}

fn positive(value: Option<i64>, key: &str, default: u64, at: &str) -> Result<u64, FileError> {
    match value {
        None => Ok(default),
        Some(n) if n > 0 => Ok(n.unsigned_abs()),
        Some(n) => Err(invalid(
            format!("{at}.{key}"),
            format!("must be a positive integer, not {n}"),
        )),
    }
}

/// One machine, or `None` for `existence = false`.
fn machine(m: RawMachine, at: &str, usage_start: SystemTime) -> Result<Option<Server>, FileError> {
    let ram_gib = positive(m.ram, "ram", 8, at)?;
    let ram_mb = ram_gib
        .checked_mul(1024)
        .ok_or_else(|| invalid(format!("{at}.ram"), format!("{ram_gib} GiB is too large")))?;
    let cpus = positive(m.cpus, "cpus", 4, at)?;
    let instance_id = m.instance_id.unwrap_or_else(|| "UNKNOWN_ID".into());
    let existence_at = format!("{at}.existence");
    let (created, deleted) = match m.existence {
        None | Some(Existence::Flag(true)) => (usage_start, None),
        Some(Existence::Flag(false)) => return Ok(None),
        Some(Existence::Since(t)) => (time(&t, &existence_at)?, None),
        Some(Existence::Between(pair)) => match pair.as_slice() {
            [a, b] => {
                let (a, b) = (time(a, &existence_at)?, time(b, &existence_at)?);
                if a > b {
                    return Err(invalid(
                        existence_at,
                        "the first time must not be after the second",
                    ));
                }
                (a, Some(b))
            }
            _ => {
                return Err(invalid(
                    existence_at,
                    "a pair must be [start, stop], two times",
                ))
            }
        },
    };
    let metadata = m
        .metadata
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect();
    let flavor = Flavor {
        name: format!("{cpus}c{ram_gib}g"),
        vcpus: cpus,
        ram_mb,
        root_gb: 0,
        ephemeral_gb: 0,
    };
    flavor.check().map_err(|p| invalid(at, p))?;
    Ok(Some(Server {
        id: instance_id.clone(),
        name: format!("machine-{instance_id}"),
        flavor,
        status: "active".into(),
        created,
        deleted,
        user: "demo".into(),
        metadata,
    }))
}

/// A TOML date-time as a moment: no offset means UTC, a date alone means its midnight.
fn time(t: &Datetime, at: &str) -> Result<SystemTime, FileError> {
    let Some(date) = t.date else {
        return Err(invalid(at, format!("{t} has no date")));
    };
    let clock = t
        .time
        .map_or_else(|| "00:00:00".to_string(), |c| c.to_string());
    let utc = humantime::parse_rfc3339_weak(&format!("{date}T{clock}Z"))
        .map_err(|e| invalid(at, format!("{t}: {e}")))?;
    let offset_secs = match t.offset {
        None | Some(Offset::Z) => 0,
        Some(Offset::Custom { minutes }) => i64::from(minutes) * 60,
    };
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    let moment = if offset_secs >= 0 {
        utc.checked_sub(shift)
    } else {
        utc.checked_add(shift)
    };
    moment.ok_or_else(|| invalid(at, format!("{t} is out of range")))
}

#[cfg(test)]
mod tests;
