//! The state file: the accounting, and since when servers are stopped, persisted after each
//! successful refresh.
//!
//! Written atomically (temporary file in the same directory, fsync, rename, fsync of the
//! directory), so a crash leaves the old or the new state, never half of one. A file that is
//! corrupt, of an unknown version, or belongs to another cloud is renamed aside — never
//! deleted, never trusted — and accounting starts afresh. A state that started at another date
//! than the one now requested is still this cloud's accounting: it is resumed, and the caller
//! reports the conflict.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::accounting::Accounting;
use super::stopped::Stopped;

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// Which cloud the totals belong to (its identity URL); never a credential.
    cloud: String,
    accounting: Accounting,
    /// Since when servers are stopped; absent in files written before it was kept (their
    /// stopped servers start from Nova's `updated`, as at a first start).
    #[serde(default)]
    stopped: Stopped,
}

/// [`StateFile`] borrowed, for writing without copying the accounting.
#[derive(Serialize)]
struct StateFileRef<'a> {
    version: u32,
    cloud: &'a str,
    accounting: &'a Accounting,
    stopped: &'a Stopped,
}

/// What loading found.
#[derive(Debug, PartialEq)]
pub enum Loaded {
    /// No state file yet: start from `usage_start`.
    Missing,
    /// The totals to resume from, and the stopped servers remembered.
    Resumed(Accounting, Stopped),
    /// The file could not be trusted; it was renamed to `moved_to`.
    SetAside { reason: String, moved_to: PathBuf },
}

/// A state file that could not be read, written or moved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path}: encoding: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// Reads `path`, expecting the accounting of `cloud`.
pub fn load(path: &Path, cloud: &str) -> Result<Loaded, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => return Err(io(path, "reading")(e)),
    };
    let reason = match serde_json::from_slice::<StateFile>(&bytes) {
        Err(e) => format!("not a state file of this exporter ({e})"),
        Ok(s) if s.version != VERSION => {
            format!("unknown version {} (this build reads {VERSION})", s.version)
        }
        Ok(s) if s.cloud != cloud => format!("belongs to cloud {:?}, not {cloud:?}", s.cloud),
        Ok(s) => match s.accounting.implausible(SystemTime::now()) {
            Some(reason) => reason,
            None => return Ok(Loaded::Resumed(s.accounting, s.stopped)),
        },
    };
    let moved_to = set_aside_name(path);
    fs::rename(path, &moved_to).map_err(io(path, "setting aside"))?;
    Ok(Loaded::SetAside { reason, moved_to })
}

/// An epoch second as RFC 3339 (the number itself when no date can show it).
pub fn fmt_epoch(secs: u64) -> String {
    UNIX_EPOCH
        .checked_add(std::time::Duration::from_secs(secs))
        .filter(|t| *t < UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_800))
        .map_or_else(
            || secs.to_string(),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        )
}

/// `<path>.set-aside-<unix seconds>[-n]`, a name not yet taken.
fn set_aside_name(path: &Path) -> PathBuf {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = format!("{}.set-aside-{now}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

/// Writes `accounting` and `stopped` for `cloud` to `path` atomically.
pub fn save(
    path: &Path,
    cloud: &str,
    accounting: &Accounting,
    stopped: &Stopped,
) -> Result<(), StateError> {
    let file = StateFileRef {
        version: VERSION,
        cloud,
        accounting,
        stopped,
    };
    let bytes = serde_json::to_vec(&file).map_err(|source| StateError::Encode {
        path: path.to_owned(),
        source,
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The default path's `data/` may not exist yet.
        fs::create_dir_all(dir).map_err(io(dir, "creating the directory"))?;
    }
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp, "creating"))?;
        f.write_all(&bytes).map_err(io(&tmp, "writing"))?;
        f.sync_all().map_err(io(&tmp, "syncing"))?;
    }
    fs::rename(&tmp, path).map_err(io(path, "renaming into place"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Makes the rename durable; a directory that cannot be opened (some filesystems)
        // still has the complete file in place.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "state/tests.rs"]
mod tests;
