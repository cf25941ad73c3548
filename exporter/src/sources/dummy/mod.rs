//! The dummy source: a whole fake OpenStack site through the real metric families.
//!
//! Three kinds of cloud: the built-in one (`builtin.yaml`), a YAML file of the operator's
//! (re-read whenever its content changes; an invalid edit fails the refresh, so the previous
//! data stays exported and `site_exporter_source_up{source="dummy"}` drops to 0), or a
//! generated one of any size. Each refresh computes usage from the wall clock, so counters
//! grow as they would on a real site; the live servers also appear as libvirt guests.

mod cloud;
mod file;
mod generate;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use cloud::{Cloud, CloudProject, Domain, Flavor, Server};
pub use file::FileError;
pub use generate::Generate;

use crate::legacy::MemoryUnit;
use crate::refresh::{Schedule, Source};
use crate::snapshot::SourceData;

/// The built-in cloud, also a worked example of the file format.
pub const BUILTIN: &str = include_str!("builtin.yaml");

/// Guests of a generated cloud when `guests` is not set.
pub const DEFAULT_GENERATED_GUESTS: u64 = 100;

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
    /// Live servers exported as guests; `None` is all of them (a generated cloud: 100).
    pub guests: Option<u64>,
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
}

/// Reads and parses a dummy file once, for start-up validation.
pub fn check_file(path: &Path) -> Result<Cloud, DummyError> {
    read(path).and_then(|text| parse(path, &text, SystemTime::now()))
}

fn read(path: &Path) -> Result<String, DummyError> {
    std::fs::read_to_string(path).map_err(|source| DummyError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse(path: &Path, text: &str, anchor: SystemTime) -> Result<Cloud, DummyError> {
    file::parse(text, anchor).map_err(|source| DummyError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// The dummy cloud as a [`Source`].
#[derive(Debug)]
pub struct DummySource {
    spec: CloudSpec,
    guests: Option<u64>,
    memory_unit: MemoryUnit,
    /// Relative times in files count from here: the moment the source was created.
    anchor: SystemTime,
    cloud: Cloud,
    /// The file content `cloud` was built from, to notice edits.
    loaded: Option<String>,
}

impl DummySource {
    /// Builds the source; relative times count from `anchor`.
    pub fn new(
        config: &DummyConfig,
        memory_unit: MemoryUnit,
        anchor: SystemTime,
    ) -> Result<Self, DummyError> {
        let (cloud, loaded, guests) = match &config.cloud {
            CloudSpec::BuiltIn => (builtin(anchor), None, config.guests),
            CloudSpec::Generated(g) => (
                generate::generate(*g, anchor),
                None,
                Some(config.guests.unwrap_or(DEFAULT_GENERATED_GUESTS)),
            ),
            CloudSpec::File(path) => {
                let text = read(path)?;
                (parse(path, &text, anchor)?, Some(text), config.guests)
            }
        };
        Ok(Self {
            spec: config.cloud.clone(),
            guests,
            memory_unit,
            anchor,
            cloud,
            loaded,
        })
    }

    /// Re-reads the file when its content changed since the last good load.
    fn reload(&mut self) -> Result<(), DummyError> {
        let CloudSpec::File(path) = &self.spec else {
            return Ok(());
        };
        let text = read(path)?;
        if self.loaded.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        self.cloud = parse(path, &text, self.anchor)?;
        tracing::info!(path = %path.display(), "dummy file reloaded");
        self.loaded = Some(text);
        Ok(())
    }

    /// The snapshot at `now`, without touching the file.
    pub fn snapshot(&self, now: SystemTime) -> SourceData {
        SourceData::Cloud {
            projects: self.cloud.projects(now, self.memory_unit),
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
