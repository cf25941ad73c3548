//! The dummy source: a whole fake OpenStack site through the real metric families.
//!
//! Three kinds of cloud: the built-in one (`builtin.yaml`), a file of the operator's — our YAML
//! format, or the original exporter's TOML format (`.toml`, or any name whose content is TOML) — or a generated
//! one of any size. A file is re-read whenever its content changes; an invalid edit fails the
//! refresh, so the previous data stays exported and `site_exporter_source_up{source="dummy"}`
//! drops to 0. Credit weights come from the weights source (`sources::weights`). Each refresh computes usage from the
//! wall clock, so counters grow as they would on a real site; the live servers also appear as
//! libvirt guests.

mod cloud;
pub mod config;
mod file;
mod generate;
mod toml_file;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use cloud::{Cloud, CloudProject, Domain, Flavor, Server};
pub use file::FileError;
pub use generate::Generate;

use crate::legacy::LegacyOptions;
use crate::settings::Schedule;
use crate::snapshot::{ProjectsSnapshot, SourceData};
use crate::source::Source;
use crate::weights::WeightsInput;

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
    /// Takes the accounting start from the portal instead (see `sources::start_date`).
    pub usage_start_url: Option<String>,
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
    #[error("dummy usage_start: {0}")]
    UsageStart(String),
    #[error(transparent)]
    StartDate(#[from] crate::sources::start_date::StartDateError),
}

/// Builds the source once, for start-up validation of its files and times.
pub fn check(config: &DummyConfig) -> Result<(), DummyError> {
    DummySource::new(
        config,
        LegacyOptions::default(),
        WeightsInput::None,
        SystemTime::now(),
    )
    .map(|_| ())
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

/// The format a file's extension names: `.toml` is the original's TOML, `.yaml`, `.yml` and
/// `.json` are ours; `None` for any other name.
fn named_toml(path: &Path) -> Option<bool> {
    if has_extension(path, "toml") {
        return Some(true);
    }
    ["yaml", "yml", "json"]
        .iter()
        .any(|ext| has_extension(path, ext))
        .then_some(false)
}

/// A dummy file in either format (see [`parse_here`]), parsed on a thread of its own; the
/// caller keeps a copy of the result and drops the original.
///
/// The TOML parser's transient tree (~170 MB at its peak on the original's 10,000-project
/// stress file) then lives in that thread's malloc arena, all of which is free at the end, and
/// glibc gives it back, instead of keeping it resident among the long-lived cloud (BENCHMARKS.md,
/// issue 15 §3: 134 -> 72 MiB when ready on the stress file; with the previous `toml::Table`
/// parse the same thread made it worse, 205 MiB).
fn parse(
    path: &Path,
    text: &str,
    anchor: SystemTime,
    usage_start: Option<SystemTime>,
) -> Result<Cloud, DummyError> {
    let parsed = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("dummy-parse".into())
            .spawn_scoped(scope, || parse_here(path, text, anchor, usage_start))
            .map(|t| t.join())
    });
    match parsed {
        Ok(Ok(result)) => {
            let parsed = result?;
            // The copy is allocated in this thread's arena; the original goes back to the
            // parse thread's, which is then all free.
            let copy = parsed.clone();
            drop(parsed);
            Ok(copy)
        }
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // No thread to be had: parse here, at the cost of the memory above.
        Err(_) => parse_here(path, text, anchor, usage_start),
    }
}

/// A dummy file in either format; `usage_start` overrides the file's own accounting start.
///
/// A name that names no format is read as the original reads any name (its stress files are
/// named `dummy_cc_site_a.toml.10000`): as TOML, and as our YAML when that fails. When both
/// fail, the error reported is the TOML one if the text is valid TOML, else the YAML one (the
/// text is parsed into a `toml::Table` only on that error path).
fn parse_here(
    path: &Path,
    text: &str,
    anchor: SystemTime,
    usage_start: Option<SystemTime>,
) -> Result<Cloud, DummyError> {
    let toml = || toml_file::parse(text, usage_start.unwrap_or(anchor));
    let yaml = || {
        file::parse(text, anchor).map(|mut cloud| {
            if let Some(start) = usage_start {
                cloud.usage_start = start;
            }
            cloud
        })
    };
    let parsed = match named_toml(path) {
        Some(true) => toml(),
        Some(false) => yaml(),
        None if text.trim().is_empty() => yaml(),
        None => toml().or_else(|toml_error| {
            yaml().map_err(|yaml_error| {
                if text.parse::<toml::Table>().is_ok() {
                    toml_error
                } else {
                    yaml_error
                }
            })
        }),
    };
    parsed.map_err(|source| DummyError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// A file re-read at every refresh and re-parsed only when its content changed. Only a digest
/// of the accepted content is kept (the stress file's text is 4 MB).
#[derive(Debug)]
struct Watched {
    path: PathBuf,
    digest: ring::digest::Digest,
}

fn digest(text: &str) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
}

impl Watched {
    /// The file's content, and the watch that has accepted it.
    fn load(path: &Path) -> Result<(Self, String), DummyError> {
        let text = read(path)?;
        let watched = Self {
            path: path.to_owned(),
            digest: digest(&text),
        };
        Ok((watched, text))
    }

    /// The new content and its digest if it changed since the last accepted one.
    fn changed(&self) -> Result<Option<(String, ring::digest::Digest)>, DummyError> {
        let text = read(&self.path)?;
        let d = digest(&text);
        Ok((d.as_ref() != self.digest.as_ref()).then_some((text, d)))
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
    weights: WeightsInput,
    /// The portal's start-date URL, until it has answered once.
    start_url: Option<String>,
}

impl DummySource {
    /// Builds the source; relative times count from `anchor`.
    pub fn new(
        config: &DummyConfig,
        legacy: LegacyOptions,
        weights: WeightsInput,
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
                let (watched, text) = Watched::load(path)?;
                let cloud = parse(path, &text, anchor, usage_start)?;
                (cloud, Some(watched))
            }
        };
        if let Some(start) = usage_start {
            cloud.usage_start = start;
        }
        Ok(Self {
            guests: config.guests.unwrap_or(DEFAULT_GUESTS),
            legacy,
            anchor,
            usage_start,
            cloud,
            cloud_file,
            weights,
            start_url: config.usage_start_url.clone(),
        })
    }

    /// Takes the accounting start from the portal, once; until then every refresh fails.
    async fn fetch_start(&mut self) -> Result<(), DummyError> {
        let Some(url) = &self.start_url else {
            return Ok(());
        };
        let client = crate::sources::portal::client(std::time::Duration::from_secs(30));
        let start = crate::sources::start_date::fetch(&client, url).await?;
        tracing::info!(start = %humantime::format_rfc3339(start), "accounting start from the portal");
        self.usage_start = Some(start);
        match &mut self.cloud_file {
            // A TOML cloud's `existence = true` means "since the start": parse it again (the
            // file as it is now; a change is then taken as by a reload).
            Some(w) => {
                let (watched, text) = Watched::load(&w.path)?;
                self.cloud = parse(&watched.path, &text, self.anchor, self.usage_start)?;
                *w = watched;
            }
            None => self.cloud.usage_start = start,
        }
        self.start_url = None;
        Ok(())
    }

    /// Re-reads the cloud file when its content changed since the last good load.
    fn reload(&mut self) -> Result<(), DummyError> {
        let Some(w) = self.cloud_file.as_mut() else {
            return Ok(());
        };
        if let Some((text, digest)) = w.changed()? {
            self.cloud = parse(&w.path, &text, self.anchor, self.usage_start)?;
            w.digest = digest;
            tracing::info!(path = %w.path.display(), "dummy file reloaded");
        }
        Ok(())
    }

    /// The snapshot at `now`, without touching the file. The legacy families are withheld
    /// while configured weights have not loaded.
    pub fn snapshot(&self, now: SystemTime) -> SourceData {
        let projects = match self.weights.current() {
            Some(weights) => self.cloud.projects(now, &self.legacy, &weights),
            None => ProjectsSnapshot {
                legacy: Vec::new(),
                ..self.cloud.projects(now, &self.legacy, &Default::default())
            },
        };
        SourceData::Cloud {
            projects,
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
        self.weights.ready().await;
        self.fetch_start().await?;
        self.reload()?;
        Ok(self.snapshot(now))
    }
}

#[cfg(test)]
mod tests;
