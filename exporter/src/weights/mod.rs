//! Credit weights: the portal's per-size multipliers for the legacy usage families.
//!
//! A weights list holds sets `{resource_set_timestamp, vcpus: [{value, weight}], memory_mb:
//! [{value, weight}]}`. For a server, the set in force is the one with the greatest timestamp
//! not after the server's start, or else the one with the smallest timestamp; in that set's
//! list for the resource, sorted by value, the weight is that of the first value not below the
//! server's amount, or else that of the largest value. An empty list, or no sets at all, means
//! weight 1. This is the original exporter 3.0.0's rule, kept exactly because portals bill
//! with it; as there, a later entry with the same timestamp or value replaces an earlier one.
//!
//! Three encodings of the same data: the portal's JSON list, YAML (the list, or a mapping with
//! a `weights` key), and the original's TOML (`[[weights]]` tables).
//!
//! This module is the whole domain side of weights: the rule (here), the file formats
//! ([`parse_file`], [`check_file`]) and the [`WeightsCell`] the projects sources read. The
//! refresh that loads them is `sources::weights`; their series are `render::weights`.

mod cell;
mod file;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use cell::{WeightsCell, WeightsInput};
pub use file::{check_file, parse_file, FileError};

/// The resources a weight applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Vcpus,
    /// Memory in the legacy unit (whole GiB by default; see `legacy::MemoryUnit`).
    Memory,
}

impl Resource {
    /// The key in the weights data and the `resource` label.
    pub fn key(self) -> &'static str {
        match self {
            Self::Vcpus => "vcpus",
            Self::Memory => "memory_mb",
        }
    }
}

/// One `{value, weight}` pair. Other fields the portal may add are ignored, as the original
/// ignores them.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Step {
    pub value: f64,
    pub weight: f64,
}

/// One set of weights, in force from `since` (Unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightSet {
    pub since: i64,
    /// Sorted by value, values unique.
    pub vcpus: Vec<Step>,
    /// Sorted by value, values unique.
    pub memory: Vec<Step>,
}

/// All weight sets, sorted by `since`, timestamps unique. Empty means weight 1 everywhere.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    sets: Vec<WeightSet>,
}

/// Weights data that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("invalid weights JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid weights YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("invalid weights TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("weights set {index} (resource_set_timestamp {since}): {problem}")]
    Invalid {
        index: usize,
        since: i64,
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
struct SetData {
    resource_set_timestamp: i64,
    #[serde(default)]
    vcpus: Vec<Step>,
    #[serde(default)]
    memory_mb: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    weights: Vec<SetData>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum YamlFile {
    List(Vec<SetData>),
    Mapping(TomlFile),
}

impl Weights {
    /// The portal's JSON list.
    pub fn from_json(bytes: &[u8]) -> Result<Self, WeightsError> {
        Self::from_sets(serde_json::from_slice::<Vec<SetData>>(bytes)?)
    }

    /// YAML: the same list, or a mapping with a `weights` key.
    pub fn from_yaml(text: &str) -> Result<Self, WeightsError> {
        match serde_yaml::from_str::<YamlFile>(text)? {
            YamlFile::List(sets) | YamlFile::Mapping(TomlFile { weights: sets }) => {
                Self::from_sets(sets)
            }
        }
    }

    /// The original exporter's TOML: `[[weights]]` tables.
    pub fn from_toml(text: &str) -> Result<Self, WeightsError> {
        Self::from_sets(toml::from_str::<TomlFile>(text)?.weights)
    }

    fn from_sets(data: Vec<SetData>) -> Result<Self, WeightsError> {
        let mut by_since: BTreeMap<i64, WeightSet> = BTreeMap::new();
        for (index, set) in data.into_iter().enumerate() {
            let since = set.resource_set_timestamp;
            let invalid = |problem: String| WeightsError::Invalid {
                index,
                since,
                problem,
            };
            let vcpus = steps(set.vcpus).map_err(|p| invalid(format!("vcpus: {p}")))?;
            let memory = steps(set.memory_mb).map_err(|p| invalid(format!("memory_mb: {p}")))?;
            by_since.insert(
                since,
                WeightSet {
                    since,
                    vcpus,
                    memory,
                },
            );
        }
        Ok(Self {
            sets: by_since.into_values().collect(),
        })
    }

    /// The sets in force, oldest first.
    pub fn sets(&self) -> &[WeightSet] {
        &self.sets
    }

    /// The weight of a server with `amount` of `resource` that started at `started_at`
    /// (Unix seconds).
    pub fn weight(&self, resource: Resource, amount: f64, started_at: f64) -> f64 {
        let Some(first) = self.sets.first() else {
            return 1.0;
        };
        let set = self
            .sets
            .iter()
            .rev()
            .find(|s| s.since as f64 <= started_at)
            .unwrap_or(first);
        let steps = match resource {
            Resource::Vcpus => &set.vcpus,
            Resource::Memory => &set.memory,
        };
        match steps.iter().find(|s| amount <= s.value).or(steps.last()) {
            Some(step) => step.weight,
            None => 1.0,
        }
    }
}

/// Sorts by value, the later of equal values winning; rejects values that are not numbers.
fn steps(mut list: Vec<Step>) -> Result<Vec<Step>, String> {
    if let Some(bad) = list
        .iter()
        .find(|s| !s.value.is_finite() || !s.weight.is_finite())
    {
        return Err(format!(
            "value {} with weight {} is not a finite number",
            bad.value, bad.weight
        ));
    }
    let mut by_value: Vec<Step> = Vec::with_capacity(list.len());
    // Stable sort keeps file order among equal values; keep the last of each. Not
    // `total_cmp`: it orders -0.0 before 0.0, which are the same value here.
    list.sort_by(|a, b| {
        a.value
            .partial_cmp(&b.value)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    for step in list {
        match by_value.last_mut() {
            Some(last) if last.value == step.value => *last = step,
            _ => by_value.push(step),
        }
    }
    Ok(by_value)
}

#[cfg(test)]
mod tests;
