//! Weights files: the format follows the name (`.toml` is the original's, `.json` the portal's,
//! anything else YAML).

use std::path::{Path, PathBuf};

use super::{Weights, WeightsError};

/// A weights file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read weights file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("weights file {path}: {source}")]
    Parse { path: PathBuf, source: WeightsError },
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
pub fn check_file(path: &Path) -> Result<Weights, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_file(path, &text).map_err(|source| FileError::Parse {
        path: path.to_owned(),
        source,
    })
}
