//! The state: the accounting and since when servers are stopped, persisted after each
//! successful refresh, in writes that follow what changed.
//!
//! Two files (formats in [`format`](mod@format)): a checksummed binary snapshot at `<path>`, and beside it
//! `<path>.log`, an append log with one checksummed entry per refresh (the hours each server
//! gained, the totals and records that changed). When the log has grown to the snapshot's
//! size the next save compacts: a new snapshot of the next generation, then an empty log of
//! that generation. Both replacements are atomic (temporary file in the same directory, fsync,
//! rename, fsync of the directory); an append is one write then fsync.
//!
//! A restart resumes exactly, whatever moment a crash hit:
//! - an entry cut short (or checksummed wrong as the last thing in the log) was never
//!   committed: loading drops it and truncates the log to the entries before it;
//! - a log of an older generation than the snapshot was folded into it already (a crash
//!   between the two renames of a compaction) and is ignored;
//! - a temporary file is never read.
//!
//! A file that is corrupt (anywhere but a torn tail), of an unknown version, or belongs to
//! another cloud is renamed aside with its log — never deleted, never trusted — and
//! accounting starts afresh; the reason names the file and the byte offset. A version-1
//! file (JSON) is migrated: loaded as it is, and replaced by a snapshot at the first save. A
//! state that started at another date than the one now requested is still this cloud's
//! accounting: it is resumed, and the caller reports the conflict.

mod codec;
pub mod format;
pub mod v1;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::accounting::Accounting;
use super::stopped::Stopped;

pub use format::VERSION;

/// What loading found.
// Made once per process start and moved straight into the source: boxing gains nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
pub enum Loaded {
    /// No state file yet: start from `usage_start`.
    Missing,
    /// The totals to resume from, and the stopped servers remembered.
    Resumed(Accounting, Stopped),
    /// The file could not be trusted; it was renamed to `moved_to` (its log, if any, to
    /// `moved_to` + `.log`).
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
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// The log beside `path`.
pub fn log_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.log", path.display()))
}

fn tmp_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.tmp", path.display()))
}

/// What one save wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// Bytes written (the entry, or the snapshot and the log header).
    pub bytes: u64,
    /// Whether it was a compaction.
    pub compacted: bool,
}

/// The open state of one path: where the next save goes.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    cloud: String,
    /// Generation of the snapshot on disk.
    generation: u64,
    snapshot_len: u64,
    /// Length of the log continuing the snapshot; `None`: there is none, the next save
    /// compacts.
    log_len: Option<u64>,
    /// The window end and stopped servers as last written.
    window_end: u64,
    persisted: Stopped,
}

/// A log shorter than this is never compacted (small clouds would compact every refresh).
const MIN_COMPACT: u64 = 1 << 20;

impl Store {
    /// A store whose next save writes a snapshot, of a generation past any on disk.
    fn fresh(path: &Path, cloud: &str) -> Self {
        let generation = peek_generation(path).max(peek_generation(&log_path(path)));
        Self {
            path: path.to_owned(),
            cloud: cloud.to_owned(),
            generation,
            snapshot_len: 0,
            log_len: None,
            window_end: 0,
            persisted: Stopped::default(),
        }
    }

    /// Persists what changed in `acc` (its journal) and `stopped` since the last save: one
    /// log entry, or a compaction when the log is as large as the snapshot, there is no log
    /// yet, or `acc` keeps no journal.
    pub fn save(&mut self, acc: &mut Accounting, stopped: &Stopped) -> Result<Saved, StateError> {
        let journal = acc.take_journal();
        let append = match (journal, self.log_len) {
            (Some(j), Some(len)) if len < self.snapshot_len.max(MIN_COMPACT) => Some((j, len)),
            _ => None,
        };
        let Some((journal, len)) = append else {
            return self.compact(acc, stopped);
        };
        let changes = format::StoppedChanges::between(&self.persisted.servers, &stopped.servers);
        let entry = format::encode_entry(self.window_end, acc, &journal, stopped, &changes);
        let log = log_path(&self.path);
        let appended = fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .map_err(io(&log, "opening the log"))
            .and_then(|mut f| {
                f.write_all(&entry).map_err(io(&log, "appending"))?;
                f.sync_data().map_err(io(&log, "syncing"))
            });
        if let Err(e) = appended {
            // What the entry held is now only in memory: the next save writes it all.
            self.log_len = None;
            return Err(e);
        }
        self.log_len = Some(len + entry.len() as u64);
        self.window_end = acc.window_end;
        self.persisted.seen_at = stopped.seen_at;
        changes.apply(&mut self.persisted.servers);
        Ok(Saved {
            bytes: entry.len() as u64,
            compacted: false,
        })
    }

    /// Writes a snapshot of the next generation, then an empty log continuing it.
    pub fn compact(
        &mut self,
        acc: &mut Accounting,
        stopped: &Stopped,
    ) -> Result<Saved, StateError> {
        // Anything noted before is in the snapshot.
        acc.start_journal();
        self.log_len = None;
        let generation = self.generation + 1;
        let snapshot = format::encode_snapshot(generation, &self.cloud, acc, stopped);
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The default path's `data/` may not exist yet.
            fs::create_dir_all(dir).map_err(io(dir, "creating the directory"))?;
        }
        replace(&self.path, &snapshot)?;
        self.generation = generation;
        self.snapshot_len = snapshot.len() as u64;
        let header = format::log_header(generation);
        replace(&log_path(&self.path), &header)?;
        self.log_len = Some(header.len() as u64);
        self.window_end = acc.window_end;
        self.persisted.clone_from(stopped);
        Ok(Saved {
            bytes: (snapshot.len() + header.len()) as u64,
            compacted: true,
        })
    }
}

/// Replaces `path` with `bytes` atomically.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = tmp_path(path);
    {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp, "creating"))?;
        f.write_all(bytes).map_err(io(&tmp, "writing"))?;
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

/// The generation in a snapshot's or log's header; 0 when there is none to read.
fn peek_generation(path: &Path) -> u64 {
    let mut head = [0u8; 20];
    let read = fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
    if read.is_err() || (&head[..8] != format::SNAPSHOT_MAGIC && &head[..8] != format::LOG_MAGIC) {
        return 0;
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&head[12..20]);
    u64::from_le_bytes(g)
}

/// Reads the state at `path`, expecting the accounting of `cloud`.
pub fn load(path: &Path, cloud: &str) -> Result<Loaded, StateError> {
    open(path, cloud).map(|(loaded, _)| loaded)
}

/// Reads the state at `path` and opens it for the next saves. The resumed accounting keeps
/// a journal from here on.
pub fn open(path: &Path, cloud: &str) -> Result<(Loaded, Store), StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let log = log_path(path);
            if log.exists() {
                // A log without its snapshot continues nothing; kept for inspection.
                let moved_to = set_aside_name(&log);
                fs::rename(&log, &moved_to).map_err(io(&log, "setting aside"))?;
                let reason = format!("{}: a log without its snapshot", log.display());
                return Ok((
                    Loaded::SetAside { reason, moved_to },
                    Store::fresh(path, cloud),
                ));
            }
            return Ok((Loaded::Missing, Store::fresh(path, cloud)));
        }
        Err(e) => return Err(io(path, "reading")(e)),
    };
    match resume(path, cloud, &bytes)? {
        Ok((mut acc, stopped, store)) => {
            acc.start_journal();
            Ok((Loaded::Resumed(acc, stopped), store))
        }
        Err(reason) => {
            let moved_to = set_aside_name(path);
            fs::rename(path, &moved_to).map_err(io(path, "setting aside"))?;
            let log = log_path(path);
            if log.exists() {
                let log_to = PathBuf::from(format!("{}.log", moved_to.display()));
                fs::rename(&log, &log_to).map_err(io(&log, "setting aside"))?;
            }
            Ok((
                Loaded::SetAside { reason, moved_to },
                Store::fresh(path, cloud),
            ))
        }
    }
}

type Resumed = (Accounting, Stopped, Store);

/// The state in `bytes` (and its log), or why it cannot be trusted.
fn resume(path: &Path, cloud: &str, bytes: &[u8]) -> Result<Result<Resumed, String>, StateError> {
    if bytes.first() == Some(&b'{') {
        return Ok(migrate(path, cloud, bytes));
    }
    let snap = match format::decode_snapshot(bytes) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Err(format!(
                "{}: not a state file of this exporter ({e})",
                path.display()
            )))
        }
    };
    if snap.cloud != cloud {
        return Ok(Err(format!(
            "belongs to cloud {:?}, not {cloud:?}",
            snap.cloud
        )));
    }
    let (mut acc, mut stopped) = (snap.accounting, snap.stopped);
    let log_len = match replay(path, snap.generation, &mut acc, &mut stopped)? {
        Ok(len) => len,
        Err(reason) => return Ok(Err(reason)),
    };
    if let Some(reason) = acc.implausible(SystemTime::now()) {
        return Ok(Err(reason));
    }
    let store = Store {
        path: path.to_owned(),
        cloud: cloud.to_owned(),
        generation: snap.generation,
        snapshot_len: bytes.len() as u64,
        log_len,
        window_end: acc.window_end,
        persisted: stopped.clone(),
    };
    Ok(Ok((acc, stopped, store)))
}

/// A version-1 JSON state, in today's form; the first save writes it as a snapshot.
fn migrate(path: &Path, cloud: &str, bytes: &[u8]) -> Result<Resumed, String> {
    let file = match serde_json::from_slice::<v1::StateFile>(bytes) {
        Err(e) => return Err(format!("not a state file of this exporter ({e})")),
        Ok(s) if s.version != 1 => {
            return Err(format!(
                "unknown version {} (this build reads 1 and {VERSION})",
                s.version
            ))
        }
        Ok(s) if s.cloud != cloud => {
            return Err(format!("belongs to cloud {:?}, not {cloud:?}", s.cloud))
        }
        Ok(s) => s,
    };
    let acc = file.accounting.migrate();
    if let Some(reason) = acc.implausible(SystemTime::now()) {
        return Err(reason);
    }
    tracing::info!(path = %path.display(), "migrating the version-1 state file");
    Ok((acc, file.stopped, Store::fresh(path, cloud)))
}

/// Replays the log of `generation` onto the snapshot's state. `Ok(Ok(Some(len)))`: the log's
/// valid length (a torn tail was cut off); `Ok(Ok(None))`: no log continues this snapshot.
fn replay(
    path: &Path,
    generation: u64,
    acc: &mut Accounting,
    stopped: &mut Stopped,
) -> Result<Result<Option<u64>, String>, StateError> {
    let log = log_path(path);
    let bytes = match fs::read(&log) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(None)),
        Err(e) => return Err(io(&log, "reading")(e)),
    };
    let shown = log.display();
    let log_generation = match format::read_log_header(&bytes) {
        Ok(g) => g,
        Err(e) => return Ok(Err(format!("{shown}: {e}"))),
    };
    if log_generation < generation {
        // Folded into the snapshot by a compaction that stopped before replacing the log.
        return Ok(Ok(None));
    }
    if log_generation > generation {
        return Ok(Err(format!(
            "{shown}: continues generation {log_generation}, the snapshot is {generation}"
        )));
    }
    let mut pos = format::LOG_HEADER_LEN as usize;
    let head = format::ENTRY_HEAD_LEN as usize;
    while bytes.len() - pos >= head {
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]);
        let crc = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]);
        let start = pos + head;
        let Some(end) = start
            .checked_add(len as usize)
            .filter(|&e| e <= bytes.len())
        else {
            break; // torn: the entry never finished
        };
        let payload = &bytes[start..end];
        if crc32fast::hash(payload) != crc {
            if end == bytes.len() {
                break; // torn: the last entry's pages did not all reach the disk
            }
            return Ok(Err(format!(
                "{shown}: at byte {pos}: entry checksum mismatch: the log is damaged"
            )));
        }
        if let Err(e) = format::apply_entry(payload, start as u64, acc, stopped) {
            return Ok(Err(format!("{shown}: {e}")));
        }
        pos = end;
    }
    if pos < bytes.len() {
        tracing::warn!(
            path = %shown,
            at = pos,
            dropped = bytes.len() - pos,
            "state log ends in an entry that was never completed; it is dropped"
        );
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .map_err(io(&log, "opening to cut the torn entry"))?;
        f.set_len(pos as u64)
            .and_then(|()| f.sync_all())
            .map_err(io(&log, "cutting the torn entry"))?;
    }
    Ok(Ok(Some(pos as u64)))
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

/// Writes `accounting` and `stopped` for `cloud` to `path` as a new snapshot (and an empty
/// log), whatever was there.
pub fn save(
    path: &Path,
    cloud: &str,
    accounting: &Accounting,
    stopped: &Stopped,
) -> Result<(), StateError> {
    let mut acc = accounting.clone();
    Store::fresh(path, cloud)
        .compact(&mut acc, stopped)
        .map(|_| ())
}

#[cfg(test)]
#[path = "state/tests.rs"]
mod tests;
