//! The credit-weights source: the portal's weights (a URL) or a file, refreshed in the
//! background and shared with every projects source through a [`WeightsCell`].
//!
//! Until a set has loaded once, the cell is empty and the projects sources withhold the
//! legacy families (weight-1 values that later jump would be wrong bills), and `/-/ready` is
//! 503 because this source has produced no data yet. A failed or malformed fetch keeps the
//! last good set in force and shows as `site_exporter_source_up{source="weights"} 0`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use crate::refresh::{Schedule, Source};
use crate::snapshot::SourceData;
use crate::sources::portal::{self, PortalError};
use crate::weights::{Weights, WeightsError};

/// Where the weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The portal's JSON list, fetched with GET.
    Url(String),
    /// A file: `.toml` (the original's format), `.json`, or YAML.
    File(PathBuf),
}

/// The weights source's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsConfig {
    pub origin: Origin,
    pub schedule: Schedule,
}

/// The weights in force, shared between the weights source and the projects sources.
#[derive(Debug)]
pub struct WeightsCell {
    weights: RwLock<Option<Arc<Weights>>>,
    /// Becomes true once the first load was tried, successful or not.
    attempted: tokio::sync::watch::Sender<bool>,
}

impl Default for WeightsCell {
    fn default() -> Self {
        Self {
            weights: RwLock::new(None),
            attempted: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl WeightsCell {
    /// The weights in force, or `None` before the first set has loaded.
    pub fn get(&self) -> Option<Arc<Weights>> {
        self.weights
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, weights: Arc<Weights>) {
        *self.weights.write().unwrap_or_else(PoisonError::into_inner) = Some(weights);
    }

    /// Waits until the first load has been tried, so a projects source's first refresh after
    /// start does not needlessly go without its legacy families.
    pub async fn first_attempt(&self) {
        let mut rx = self.attempted.subscribe();
        let _ = rx.wait_for(|tried| *tried).await;
    }
}

/// What a projects source needs to know about weights.
#[derive(Debug, Clone, Default)]
pub enum WeightsInput {
    /// No weights configured: every weight is 1.
    #[default]
    None,
    /// Configured: the legacy families wait for the first set.
    Shared(Arc<WeightsCell>),
}

impl WeightsInput {
    /// Before the first refresh of a projects source: wait for the first weights attempt.
    pub async fn ready(&self) {
        if let Self::Shared(cell) = self {
            cell.first_attempt().await;
        }
    }

    /// The weights to compute with now; `None` means "not loaded yet, withhold the legacy
    /// families".
    pub fn current(&self) -> Option<Arc<Weights>> {
        match self {
            Self::None => Some(Arc::new(Weights::default())),
            Self::Shared(cell) => cell.get(),
        }
    }
}

/// Errors of one weights refresh.
#[derive(Debug, thiserror::Error)]
pub enum WeightsSourceError {
    #[error("weights URL {0}")]
    Fetch(#[from] PortalError),
    #[error("weights URL {url}: {source}")]
    BadUrlData { url: String, source: WeightsError },
    #[error("cannot read weights file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("weights file {path}: {source}")]
    BadFileData { path: PathBuf, source: WeightsError },
}

/// Parses weights data by the file's extension.
pub fn parse_file(path: &Path, text: &str) -> Result<Weights, WeightsError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("toml") => Weights::from_toml(text),
        Some("json") => Weights::from_json(text.as_bytes()),
        _ => Weights::from_yaml(text),
    }
}

/// Reads and parses a weights file once, for start-up validation.
pub fn check_file(path: &Path) -> Result<Weights, WeightsSourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| WeightsSourceError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_file(path, &text).map_err(|source| WeightsSourceError::BadFileData {
        path: path.to_owned(),
        source,
    })
}

/// The weights source.
#[derive(Debug)]
pub struct WeightsSource {
    origin: Origin,
    cell: Arc<WeightsCell>,
    client: reqwest::Client,
}

impl WeightsSource {
    /// A source filling `cell`; HTTP requests time out after `timeout`.
    pub fn new(config: &WeightsConfig, cell: Arc<WeightsCell>) -> Self {
        let client = portal::client(config.schedule.timeout);
        Self {
            origin: config.origin.clone(),
            cell,
            client,
        }
    }

    async fn load(&self) -> Result<Weights, WeightsSourceError> {
        match &self.origin {
            Origin::File(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|source| {
                    WeightsSourceError::Read {
                        path: path.clone(),
                        source,
                    }
                })?;
                parse_file(path, &text).map_err(|source| WeightsSourceError::BadFileData {
                    path: path.clone(),
                    source,
                })
            }
            Origin::Url(url) => {
                let body = portal::get(&self.client, url).await?;
                Weights::from_json(&body).map_err(|source| WeightsSourceError::BadUrlData {
                    url: portal::redact(url),
                    source,
                })
            }
        }
    }
}

impl Source for WeightsSource {
    type Error = WeightsSourceError;

    fn name(&self) -> &'static str {
        "weights"
    }

    async fn collect(&mut self, _now: SystemTime) -> Result<SourceData, WeightsSourceError> {
        let loaded = self.load().await;
        self.cell.attempted.send_replace(true);
        let weights = Arc::new(loaded?);
        if self.cell.get().as_deref() != Some(&*weights) {
            tracing::info!(sets = weights.sets().len(), "credit weights loaded");
        }
        self.cell.set(Arc::clone(&weights));
        Ok(SourceData::Weights(weights))
    }
}

#[cfg(test)]
mod tests;
