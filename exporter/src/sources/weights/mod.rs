//! The credit-weights source: the portal's weights (a URL) or a file, refreshed in the
//! background and shared with every projects source through a [`WeightsCell`] (the rule, the
//! file formats and the cell live in `crate::weights`).
//!
//! Until a set has loaded once, the cell is empty and the projects sources withhold the
//! legacy families (weight-1 values that later jump would be wrong bills), and `/-/ready` is
//! 503 because this source has produced no data yet. A failed or malformed fetch keeps the
//! last good set in force and shows as `site_exporter_source_up{source="weights"} 0`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use crate::settings::Schedule;
use crate::snapshot::SourceData;
use crate::source::Source;
use crate::sources::portal::{self, PortalError};
use crate::weights::{self, FileError, Weights, WeightsCell, WeightsError};

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

/// Errors of one weights refresh.
#[derive(Debug, thiserror::Error)]
pub enum WeightsSourceError {
    #[error("weights URL {0}")]
    Fetch(#[from] PortalError),
    #[error("weights URL {url}: {source}")]
    BadUrlData { url: String, source: WeightsError },
    #[error(transparent)]
    File(#[from] FileError),
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
                let text =
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|source| FileError::Read {
                            path: path.clone(),
                            source,
                        })?;
                Ok(
                    weights::parse_file(path, &text).map_err(|source| FileError::Parse {
                        path: path.clone(),
                        source,
                    })?,
                )
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
        self.cell.record_attempt();
        let weights = Arc::new(loaded?);
        if self.cell.get().as_deref() != Some(&*weights) {
            tracing::info!(sets = weights.sets().len(), "credit weights loaded");
        }
        self.cell.set(Arc::clone(&weights));
        Ok(SourceData::Weights(weights))
    }
}

pub mod config;

#[cfg(test)]
mod tests;
