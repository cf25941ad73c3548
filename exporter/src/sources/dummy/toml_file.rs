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

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use toml::value::{Datetime, Offset};
use toml::{Table, Value};

use super::cloud::{Cloud, CloudProject, Domain, Flavor, Server};
use super::file::FileError;

fn invalid(at: impl Into<String>, problem: impl Into<String>) -> FileError {
    FileError::Invalid {
        at: at.into(),
        problem: problem.into(),
    }
}

/// Parses an original TOML cloud; `usage_start` is what `existence = true` means.
pub fn parse(text: &str, usage_start: SystemTime) -> Result<Cloud, FileError> {
    let root: Table = toml::from_str(text).map_err(|e| invalid("TOML", e.to_string()))?;
    let mut domains = Vec::new();
    for (domain_name, content) in root {
        let at = format!("[{domain_name}]");
        let Value::Table(content) = content else {
            return Err(invalid(at, "must be a table (a domain)"));
        };
        let domain_id = optional_str(&content, "domain_id", &at)?.unwrap_or("UNKNOWN_DOMAIN_ID");
        let projects = match content.get("projects") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, p)| project(p, &format!("{at}.projects[{i}]"), usage_start))
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(invalid(
                    format!("{at}.projects"),
                    "must be an array of tables",
                ))
            }
        };
        domains.push(Domain {
            id: domain_id.to_string(),
            name: domain_name,
            projects,
        });
    }
    Ok(Cloud {
        usage_start,
        domains,
    })
}

fn optional_str<'a>(table: &'a Table, key: &str, at: &str) -> Result<Option<&'a str>, FileError> {
    match table.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(
            format!("{at}.{key}"),
            format!("must be a string, not {}", other.type_str()),
        )),
    }
}

fn project(value: &Value, at: &str, usage_start: SystemTime) -> Result<CloudProject, FileError> {
    let Value::Table(p) = value else {
        return Err(invalid(at, "must be a table"));
    };
    let name = optional_str(p, "project_name", at)?.unwrap_or("UNKNOWN_NAME");
    let id = optional_str(p, "project_id", at)?.unwrap_or("UNKNOWN_ID");
    let machines = match p.get("machines") {
        None => &Vec::new(),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(invalid(format!("{at}.machines"), "must be an array")),
    };
    let mut servers = Vec::with_capacity(machines.len());
    for (i, m) in machines.iter().enumerate() {
        if let Some(server) = machine(m, &format!("{at}.machines[{i}]"), usage_start)? {
            servers.push(server);
        }
    }
    Ok(CloudProject {
        id: id.to_string(),
        name: name.to_string(),
        enabled: true,
        servers,
    })
}

fn positive(m: &Table, key: &str, default: i64, at: &str) -> Result<u64, FileError> {
    match m.get(key) {
        None => Ok(default.unsigned_abs()),
        Some(Value::Integer(n)) if *n > 0 => Ok(n.unsigned_abs()),
        Some(other) => Err(invalid(
            format!("{at}.{key}"),
            format!("must be a positive integer, not {other}"),
        )),
    }
}

/// One machine, or `None` for `existence = false`.
fn machine(value: &Value, at: &str, usage_start: SystemTime) -> Result<Option<Server>, FileError> {
    let Value::Table(m) = value else {
        return Err(invalid(at, "must be a table"));
    };
    let ram_gib = positive(m, "ram", 8, at)?;
    let ram_mb = ram_gib
        .checked_mul(1024)
        .ok_or_else(|| invalid(format!("{at}.ram"), format!("{ram_gib} GiB is too large")))?;
    let cpus = positive(m, "cpus", 4, at)?;
    let instance_id = optional_str(m, "instance_id", at)?.unwrap_or("UNKNOWN_ID");
    let existence_at = format!("{at}.existence");
    let (created, deleted) = match m.get("existence") {
        None | Some(Value::Boolean(true)) => (usage_start, None),
        Some(Value::Boolean(false)) => return Ok(None),
        Some(Value::Datetime(t)) => (time(t, &existence_at)?, None),
        Some(Value::Array(pair)) => match pair.as_slice() {
            [Value::Datetime(a), Value::Datetime(b)] => {
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
        Some(other) => {
            return Err(invalid(
                existence_at,
                format!("must be true, false, a time or [start, stop], not {other}"),
            ))
        }
    };
    let metadata = match m.get("metadata") {
        None => BTreeMap::new(),
        Some(Value::Table(t)) => t
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        Some(_) => return Err(invalid(format!("{at}.metadata"), "must be a table")),
    };
    let flavor = Flavor {
        name: format!("{cpus}c{ram_gib}g"),
        vcpus: cpus,
        ram_mb,
        root_gb: 0,
        ephemeral_gb: 0,
    };
    flavor.check().map_err(|p| invalid(at, p))?;
    Ok(Some(Server {
        id: instance_id.to_string(),
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
