//! The dummy source: a whole fake OpenStack site through the real metric families.
//!
//! Three kinds of cloud: the built-in one (`builtin.yaml`), a file of the operator's — our YAML
//! format, or the original exporter's TOML format for names ending in `.toml` — or a generated
//! one of any size. Files, and the optional credit-weights file, are re-read whenever their
//! content changes; an invalid edit fails the refresh, so the previous data stays exported and
//! `site_exporter_source_up{source="dummy"}` drops to 0. Each refresh computes usage from the
//! wall clock, so counters grow as they would on a real site; the live servers also appear as
//! libvirt guests.

mod cloud;
mod file;
mod generate;
mod toml_file;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use cloud::{Cloud, CloudProject, Domain, Flavor, Server};
pub use file::FileError;
pub use generate::Generate;

use crate::legacy::LegacyOptions;
use crate::refresh::{Schedule, Source};
use crate::snapshot::SourceData;
use crate::weights::{Weights, WeightsError};

/// The built-in cloud, also a worked example of the file format.
pub const BUILTIN: &str = include_str!("builtin.yaml");

/// Live servers exported as guests when `guests` is not set: one hypervisor's worth, so a
/// large cloud does not become millions of guest series.
pub const DEFAULT_GUESTS: u64 = 100;

/// Which cloud to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudSpec {
    BuiltIn,
    File(PathBuf),
    Generated(Generate),
}

/// The dummy source's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DummyConfig {
    pub cloud: CloudSpec,
    /// Live servers exported as guests, the first ones in the cloud's order; `None` is
    /// [`DEFAULT_GUESTS`].
    pub guests: Option<u64>,
    /// Overrides the cloud's accounting start (`now`, `-3d`, `2024-05-01`, RFC 3339). For a
    /// TOML cloud it is what `existence = true` counts from; default: the exporter's start.
    pub usage_start: Option<String>,
    /// Credit weights for the legacy families (`.toml`, `.json`, else YAML).
    pub weights: Option<PathBuf>,
    pub schedule: Schedule,
}

/// Errors of one dummy refresh.
#[derive(Debug, thiserror::Error)]
pub enum DummyError {
    #[error("cannot read dummy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("dummy file {path}: {source}")]
    Parse { path: PathBuf, source: FileError },
    #[error("weights file {path}: {source}")]
    Weights { path: PathBuf, source: WeightsError },
    #[error("dummy usage_start: {0}")]
    UsageStart(String),
}

/// Builds the source once, for start-up validation of its files and times.
pub fn check(config: &DummyConfig) -> Result<(), DummyError> {
    DummySource::new(config, LegacyOptions::default(), SystemTime::now()).map(|_| ())
}

fn read(path: &Path) -> Result<String, DummyError> {
    std::fs::read_to_string(path).map_err(|source| DummyError::Read {
        path: path.to_owned(),
        source,
    })
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// A dummy file in either format; `usage_start` overrides the file's own accounting start.
fn parse(
    path: &Path,
    text: &str,
    anchor: SystemTime,
    usage_start: Option<SystemTime>,
) -> Result<Cloud, DummyError> {
    let parsed = if has_extension(path, "toml") {
        toml_file::parse(text, usage_start.unwrap_or(anchor))
    } else {
        file::parse(text, anchor).map(|mut cloud| {
            if let Some(start) = usage_start {
                cloud.usage_start = start;
            }
            cloud
        })
    };
    parsed.map_err(|source| DummyError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn parse_weights(path: &Path, text: &str) -> Result<Weights, DummyError> {
    let parsed = if has_extension(path, "toml") {
        Weights::from_toml(text)
    } else if has_extension(path, "json") {
        Weights::from_json(text.as_bytes())
    } else {
        Weights::from_yaml(text)
    };
    parsed.map_err(|source| DummyError::Weights {
        path: path.to_owned(),
        source,
    })
}

/// A file re-read at every refresh and re-parsed only when its content changed.
#[derive(Debug)]
struct Watched {
    path: PathBuf,
    content: String,
}

impl Watched {
    fn load(path: &Path) -> Result<Self, DummyError> {
        Ok(Self {
            path: path.to_owned(),
            content: read(path)?,
        })
    }

    /// The new content if it changed since the last accepted one.
    fn changed(&self) -> Result<Option<String>, DummyError> {
        let text = read(&self.path)?;
        Ok((text != self.content).then_some(text))
    }
}

/// The dummy cloud as a [`Source`].
#[derive(Debug)]
pub struct DummySource {
    guests: u64,
    legacy: LegacyOptions,
    /// Relative times in files count from here: the moment the source was created.
    anchor: SystemTime,
    usage_start: Option<SystemTime>,
    cloud: Cloud,
    cloud_file: Option<Watched>,
    weights: Weights,
    weights_file: Option<Watched>,
}

impl DummySource {
    /// Builds the source; relative times count from `anchor`.
    pub fn new(
        config: &DummyConfig,
        legacy: LegacyOptions,
        anchor: SystemTime,
    ) -> Result<Self, DummyError> {
        let usage_start = match &config.usage_start {
            Some(text) => Some(file::time(text, anchor).map_err(DummyError::UsageStart)?),
            None => None,
        };
        let (mut cloud, cloud_file) = match &config.cloud {
            CloudSpec::BuiltIn => (builtin(anchor), None),
            CloudSpec::Generated(g) => (generate::generate(*g, anchor), None),
            CloudSpec::File(path) => {
                let watched = Watched::load(path)?;
                let cloud = parse(path, &watched.content, anchor, usage_start)?;
                (cloud, Some(watched))
            }
        };
        if let Some(start) = usage_start {
            cloud.usage_start = start;
        }
        let (weights, weights_file) = match &config.weights {
            Some(path) => {
                let watched = Watched::load(path)?;
                (parse_weights(path, &watched.content)?, Some(watched))
            }
            None => (Weights::default(), None),
        };
        Ok(Self {
            guests: config.guests.unwrap_or(DEFAULT_GUESTS),
            legacy,
            anchor,
            usage_start,
            cloud,
            cloud_file,
            weights,
            weights_file,
        })
    }

    /// Re-reads the files whose content changed since the last good load. Nothing is replaced
    /// unless every changed file parses.
    fn reload(&mut self) -> Result<(), DummyError> {
        let cloud = match &self.cloud_file {
            Some(w) => match w.changed()? {
                Some(text) => Some((parse(&w.path, &text, self.anchor, self.usage_start)?, text)),
                None => None,
            },
            None => None,
        };
        let weights = match &self.weights_file {
            Some(w) => match w.changed()? {
                Some(text) => Some((parse_weights(&w.path, &text)?, text)),
                None => None,
            },
            None => None,
        };
        if let (Some((cloud, text)), Some(w)) = (cloud, self.cloud_file.as_mut()) {
            tracing::info!(path = %w.path.display(), "dummy file reloaded");
            self.cloud = cloud;
            w.content = text;
        }
        if let (Some((weights, text)), Some(w)) = (weights, self.weights_file.as_mut()) {
            tracing::info!(path = %w.path.display(), "weights file reloaded");
            self.weights = weights;
            w.content = text;
        }
        Ok(())
    }

    /// The snapshot at `now`, without touching the files.
    pub fn snapshot(&self, now: SystemTime) -> SourceData {
        SourceData::Cloud {
            projects: self.cloud.projects(now, &self.legacy, &self.weights),
            guests: self.cloud.guests(now, self.guests),
        }
    }
}

fn builtin(anchor: SystemTime) -> Cloud {
    file::parse(BUILTIN, anchor).expect("the built-in dummy cloud is valid (tested)")
}

impl Source for DummySource {
    type Error = DummyError;

    fn name(&self) -> &'static str {
        "dummy"
    }

    async fn collect(&mut self, now: SystemTime) -> Result<SourceData, DummyError> {
        self.reload()?;
        Ok(self.snapshot(now))
    }
}

#[cfg(test)]
mod tests;
