//! Typed parameters of one bulk stats record -> the guest's statistics, by stats group.
//!
//! Pure: the unsafe module (`bulk`) copies libvirt's `virTypedParameter` arrays into
//! [`Param`]s, and everything here works on those copies, so tests feed it `key=value` lists
//! like `virsh domstats --raw` prints ([`parse_virsh_raw`]). Each group comes back as an
//! `Option`: `None` means the record had no key of that group, which the caller needs to tell
//! "the driver does not return this group" (fill it from per-domain calls) from "the group is
//! empty" (a guest without disks). Units are converted here: KiB and nanoseconds become bytes
//! and seconds. Unknown keys are ignored and a value of the wrong type counts as missing,
//! so a newer libvirt cannot break the decoder.

use std::collections::BTreeMap;

use crate::snapshot::{BlockStats, GuestState, InterfaceStats, MemoryStats, VcpuStats};

/// One typed parameter's value (`virTypedParameterType`).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i32),
    UInt(u32),
    LLong(i64),
    ULLong(u64),
    Double(f64),
    Boolean(bool),
    String(String),
}

impl Param {
    /// The value as an unsigned integer; negative, fractional and non-numeric values are `None`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Int(v) => u64::try_from(*v).ok(),
            Self::UInt(v) => Some(u64::from(*v)),
            Self::LLong(v) => u64::try_from(*v).ok(),
            Self::ULLong(v) => Some(*v),
            Self::Double(v) if v.fract() == 0.0 && *v >= 0.0 && *v < u64::MAX as f64 => {
                Some(*v as u64)
            }
            Self::Double(_) | Self::Boolean(_) | Self::String(_) => None,
        }
    }

    /// The value as text, as `virsh` prints it (device names may look like numbers).
    pub fn to_text(&self) -> String {
        match self {
            Self::Int(v) => v.to_string(),
            Self::UInt(v) => v.to_string(),
            Self::LLong(v) => v.to_string(),
            Self::ULLong(v) => v.to_string(),
            Self::Double(v) => v.to_string(),
            Self::Boolean(v) => if *v { "yes" } else { "no" }.to_string(),
            Self::String(v) => v.clone(),
        }
    }
}

/// Balloon group (`balloon.*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Balloon {
    /// `balloon.current`, in bytes: the memory the guest has now.
    pub current_bytes: Option<u64>,
    /// `balloon.maximum`, in bytes.
    pub maximum_bytes: Option<u64>,
    /// The guest's memory statistics, `actual_balloon_bytes` being `balloon.current`.
    pub memory: MemoryStats,
}

/// vCPU group (`vcpu.*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vcpus {
    /// `vcpu.current`: the number of online vCPUs.
    pub current: Option<u64>,
    /// `vcpu.<n>.time` for every vCPU that has one, by vCPU number.
    pub times: Vec<VcpuStats>,
}

/// One record, group by group; `None` where the record has no key of the group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub state: Option<GuestState>,
    /// `cpu.time`, in seconds.
    pub cpu_time_seconds: Option<f64>,
    pub balloon: Option<Balloon>,
    pub vcpu: Option<Vcpus>,
    pub blocks: Option<Vec<BlockStats>>,
    pub interfaces: Option<Vec<InterfaceStats>>,
}

const KIB: u64 = 1024;

fn kib(v: &Param) -> Option<u64> {
    v.as_u64().map(|k| k.saturating_mul(KIB))
}

fn nanos(v: &Param) -> Option<f64> {
    v.as_u64().map(|ns| ns as f64 / 1e9)
}

/// Splits `block.3.rd.bytes` into `(3, "rd.bytes")`.
fn indexed(rest: &str) -> Option<(usize, &str)> {
    let (index, field) = rest.split_once('.')?;
    Some((index.parse().ok()?, field))
}

/// Decodes one record's parameters.
pub fn decode<'a>(params: impl IntoIterator<Item = &'a (String, Param)>) -> Decoded {
    let mut out = Decoded::default();
    let mut blocks: BTreeMap<usize, (Option<String>, BlockStats)> = BTreeMap::new();
    let mut nets: BTreeMap<usize, (Option<String>, InterfaceStats)> = BTreeMap::new();
    let mut vcpu_times: BTreeMap<usize, f64> = BTreeMap::new();
    for (key, value) in params {
        let Some((group, rest)) = key.split_once('.') else {
            continue;
        };
        match group {
            "state" if rest == "state" => {
                out.state = value
                    .as_u64()
                    .and_then(|c| u32::try_from(c).ok())
                    .map(GuestState::from_code);
            }
            "cpu" if rest == "time" => out.cpu_time_seconds = nanos(value),
            "balloon" => {
                let b = out.balloon.get_or_insert_with(Balloon::default);
                let m = &mut b.memory;
                match rest {
                    "current" => {
                        b.current_bytes = kib(value);
                        m.actual_balloon_bytes = b.current_bytes;
                    }
                    "maximum" => b.maximum_bytes = kib(value),
                    "available" => m.available_bytes = kib(value),
                    "unused" => m.unused_bytes = kib(value),
                    "usable" => m.usable_bytes = kib(value),
                    "rss" => m.rss_bytes = kib(value),
                    _ => {}
                }
            }
            "vcpu" => {
                let v = out.vcpu.get_or_insert_with(Vcpus::default);
                if rest == "current" {
                    v.current = value.as_u64();
                } else if let Some((n, "time")) = indexed(rest) {
                    if let Some(t) = nanos(value) {
                        vcpu_times.insert(n, t);
                    }
                }
            }
            "block" => {
                out.blocks.get_or_insert_with(Vec::new);
                let Some((n, field)) = indexed(rest) else {
                    continue;
                };
                let (name, b) = blocks.entry(n).or_default();
                let int = || value.as_u64().unwrap_or(0);
                match field {
                    "name" => *name = Some(value.to_text()),
                    "rd.bytes" => b.read_bytes = int(),
                    "wr.bytes" => b.write_bytes = int(),
                    "rd.reqs" => b.read_requests = int(),
                    "wr.reqs" => b.write_requests = int(),
                    "rd.times" => b.read_time_seconds = nanos(value).unwrap_or(0.0),
                    "wr.times" => b.write_time_seconds = nanos(value).unwrap_or(0.0),
                    "capacity" => b.capacity_bytes = int(),
                    _ => {}
                }
            }
            "net" => {
                out.interfaces.get_or_insert_with(Vec::new);
                let Some((n, field)) = indexed(rest) else {
                    continue;
                };
                let (name, i) = nets.entry(n).or_default();
                let int = || value.as_u64().unwrap_or(0);
                match field {
                    "name" => *name = Some(value.to_text()),
                    "rx.bytes" => i.receive_bytes = int(),
                    "rx.pkts" => i.receive_packets = int(),
                    "rx.errs" => i.receive_errors = int(),
                    "rx.drop" => i.receive_drops = int(),
                    "tx.bytes" => i.transmit_bytes = int(),
                    "tx.pkts" => i.transmit_packets = int(),
                    "tx.errs" => i.transmit_errors = int(),
                    "tx.drop" => i.transmit_drops = int(),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if let Some(v) = &mut out.vcpu {
        v.times = vcpu_times
            .into_iter()
            .filter_map(|(n, t)| {
                Some(VcpuStats {
                    vcpu: u32::try_from(n).ok()?,
                    time_seconds: t,
                })
            })
            .collect();
    }
    // A device without a name cannot be labelled: leave it out rather than invent one.
    if let Some(list) = &mut out.blocks {
        *list = blocks
            .into_values()
            .filter_map(|(name, b)| {
                Some(BlockStats {
                    target_device: name?,
                    ..b
                })
            })
            .collect();
    }
    if let Some(list) = &mut out.interfaces {
        *list = nets
            .into_values()
            .filter_map(|(name, i)| {
                Some(InterfaceStats {
                    target_device: name?,
                    ..i
                })
            })
            .collect();
    }
    out
}

/// One record of `virsh domstats --raw` output: the domain name and its parameters.
pub type RawRecord = (String, Vec<(String, Param)>);

/// Parses what `virsh domstats --raw` prints (`Domain: 'name'` then `  key=value` lines).
///
/// virsh prints values without their types: integers become [`Param::ULLong`] (or
/// [`Param::LLong`] when negative), other numbers [`Param::Double`], the rest
/// [`Param::String`]. Lines outside a record are ignored.
pub fn parse_virsh_raw(text: &str) -> Vec<RawRecord> {
    let mut records: Vec<RawRecord> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("Domain:") {
            let name = name.trim().trim_matches('\'').to_string();
            records.push((name, Vec::new()));
        } else if let (Some((key, value)), Some(record)) =
            (line.split_once('='), records.last_mut())
        {
            let value = if let Ok(v) = value.parse::<u64>() {
                Param::ULLong(v)
            } else if let Ok(v) = value.parse::<i64>() {
                Param::LLong(v)
            } else if let Ok(v) = value.parse::<f64>() {
                Param::Double(v)
            } else {
                Param::String(value.to_string())
            };
            record.1.push((key.to_string(), value));
        }
    }
    records
}

#[cfg(test)]
mod tests;
