//! The state: the accounting and since when servers are stopped, persisted after each
//! successful refresh, in writes that follow what changed.
//!
//! Files beside each other (formats in [`format`](mod@format) and
//! [`checkpoint`](mod@checkpoint)): a checkpoint at `<path>`, the append log continuing it at
//! `<path>.log` (one checksummed entry per refresh: the hours each server gained, the totals
//! and records that changed), and while the next checkpoint is written, `<path>.next` and the
//! log continuing it, `<path>.next.log`.
//!
//! When the log has grown to the checkpoint's size, the next checkpoint is written a part per
//! refresh (the parts and the entry together about [`SAVE_BUDGET`] bytes), each part from the
//! state as it is at that refresh, while the entries go on in `<path>.next.log`. With its last
//! part it replaces `<path>`, and `<path>.next.log` replaces `<path>.log`. A whole checkpoint
//! in one save is written only at the first save, after loading an older format, or after a
//! write failed. An append is one write then fsync; a replacement is atomic (temporary file
//! in the same directory or `<path>.next`, fsync, rename, fsync of the directory).
//!
//! A restart resumes exactly, whatever moment a crash hit:
//! - an entry cut short (or checksummed wrong as the last thing in the log) was never
//!   committed: loading drops it and truncates the log to the entries before it;
//! - a checkpoint being written (`<path>.next`, or a temporary file) is never read; the
//!   entries since it began are in `<path>.next.log`, replayed after `<path>.log`;
//! - a log of an older generation than the checkpoint was folded into it already (a crash
//!   between the two renames) and is ignored.
//!
//! A file that is corrupt (anywhere but a torn tail), of an unknown version, or belongs to
//! another cloud is renamed aside with its logs — never deleted, never trusted — and
//! accounting starts afresh; the reason names the file and the byte offset. A version-1
//! file (JSON) or a version-2 snapshot and log are migrated: loaded as they are, and replaced
//! by a checkpoint at the first save. A state that started at another date than the one now
//! requested is still this cloud's accounting: it is resumed, and the caller reports the
//! conflict.

pub mod checkpoint;
mod codec;
pub mod format;
pub mod v1;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::accounting::Accounting;
use super::stopped::Stopped;
use checkpoint::Cursor;
use format::{Over, Replay};

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
    /// The file could not be trusted; it was renamed to `moved_to` (its logs, if any, to
    /// `moved_to` + `.log` and + `.next.log`).
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

/// `path` with `suffix` appended to its name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

/// The log beside `path`.
pub fn log_path(path: &Path) -> PathBuf {
    beside(path, ".log")
}

/// The checkpoint being written beside `path`.
pub fn next_path(path: &Path) -> PathBuf {
    beside(path, ".next")
}

/// The log continuing the checkpoint being written.
pub fn next_log_path(path: &Path) -> PathBuf {
    beside(path, ".next.log")
}

/// What one save wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// Bytes written: the entry, checkpoint parts, the log header.
    pub bytes: u64,
    /// Of which checkpoint parts.
    pub checkpoint_bytes: u64,
    /// Whether it wrote a whole checkpoint at once.
    pub compacted: bool,
}

/// What a save writes at most when the entry leaves room: the entry, then checkpoint parts.
pub const SAVE_BUDGET: u64 = 1_000_000;
/// Checkpoint parts written per save at least, however large the entry.
const MIN_PARTS: u64 = 64 << 10;
/// A log shorter than this never starts a checkpoint (small clouds would write one every
/// refresh).
const MIN_COMPACT: u64 = 1 << 20;

/// Which log the entries go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Active {
    /// `<path>.log`, continuing the checkpoint at `<path>`.
    Log,
    /// `<path>.next.log`, continuing it too, while (or after) `<path>.next` is written.
    Next,
}

/// A checkpoint being written to `<path>.next`.
#[derive(Debug, Clone)]
struct Writing {
    generation: u64,
    cursor: Cursor,
    /// Bytes in `<path>.next`; 0: not started (it is created with the first parts).
    len: u64,
}

/// The open state of one path: where the next save goes.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    cloud: String,
    /// Generation of the checkpoint at `path`.
    generation: u64,
    checkpoint_len: u64,
    /// The number of the last entry written (or of the last whole checkpoint).
    seq: u64,
    /// The log appends go to and its length; `None`: there is none, the next save writes a
    /// whole checkpoint.
    log: Option<(Active, u64)>,
    writing: Option<Writing>,
    /// The window end and stopped servers as last written.
    window_end: u64,
    persisted: Stopped,
    limits: Limits,
    /// Tests: the number of file operations a save may still do before it stops as if killed.
    #[cfg(test)]
    crash_after: Option<u32>,
}

/// How much a save writes; smaller in tests.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// See [`SAVE_BUDGET`].
    save: u64,
    /// See [`MIN_PARTS`].
    parts: u64,
    /// See [`MIN_COMPACT`].
    compact: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            save: SAVE_BUDGET,
            parts: MIN_PARTS,
            compact: MIN_COMPACT,
        }
    }
}

impl Store {
    /// A store whose next save writes a whole checkpoint, of a generation past any on disk.
    fn fresh(path: &Path, cloud: &str) -> Self {
        Self {
            path: path.to_owned(),
            cloud: cloud.to_owned(),
            generation: 0,
            checkpoint_len: 0,
            seq: 0,
            log: None,
            writing: None,
            window_end: 0,
            persisted: Stopped::default(),
            limits: Limits::default(),
            #[cfg(test)]
            crash_after: None,
        }
    }

    /// Before each file operation of a save: tests stop here as if the process were killed.
    #[cfg(test)]
    fn step(&mut self) -> Result<(), StateError> {
        match &mut self.crash_after {
            Some(0) => Err(io(&self.path, "simulated kill")(std::io::Error::other(
                "killed",
            ))),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    #[cfg(not(test))]
    fn step(&mut self) -> Result<(), StateError> {
        Ok(())
    }

    fn active_path(&self, active: Active) -> PathBuf {
        match active {
            Active::Log => log_path(&self.path),
            Active::Next => next_log_path(&self.path),
        }
    }

    /// After a failed write: what it held is only in memory, the next save writes it all.
    fn abandon(&mut self) {
        self.log = None;
        self.writing = None;
    }

    /// Persists what changed in `acc` (its journal) and `stopped` since the last save: one
    /// log entry and, while a checkpoint is being written, its next parts; a whole checkpoint
    /// when there is no log yet or `acc` keeps no journal.
    pub fn save(&mut self, acc: &mut Accounting, stopped: &Stopped) -> Result<Saved, StateError> {
        let journal = acc.take_journal();
        let (Some(journal), Some((active, len))) = (journal, self.log) else {
            return self.compact(acc, stopped);
        };
        let changes = format::StoppedChanges::between(&self.persisted.servers, &stopped.servers);
        let seq = self.seq + 1;
        let entry = format::encode_entry(seq, self.window_end, acc, &journal, stopped, &changes);
        let log = self.active_path(active);
        if let Err(e) = self.step().and_then(|()| append(&log, &entry)) {
            self.abandon();
            return Err(e);
        }
        self.seq = seq;
        self.log = Some((active, len + entry.len() as u64));
        self.window_end = acc.window_end;
        self.persisted.seen_at = stopped.seen_at;
        changes.apply(&mut self.persisted.servers);
        let mut saved = Saved {
            bytes: entry.len() as u64,
            checkpoint_bytes: 0,
            compacted: false,
        };
        if self.writing.is_none()
            && active == Active::Log
            && len + entry.len() as u64 >= self.checkpoint_len.max(self.limits.compact)
        {
            // The entries from here on continue the next checkpoint too.
            let generation = self.generation + 1;
            let header = format::log_header(generation);
            let next_log = next_log_path(&self.path);
            if let Err(e) = self.step().and_then(|()| replace(&next_log, &header)) {
                self.abandon();
                return Err(e);
            }
            saved.bytes += header.len() as u64;
            self.log = Some((Active::Next, header.len() as u64));
            self.writing = Some(Writing {
                generation,
                cursor: Cursor::Begin,
                len: 0,
            });
        }
        if self.writing.is_some() {
            let budget = self
                .limits
                .save
                .saturating_sub(saved.bytes)
                .max(self.limits.parts);
            match self.write_parts(acc, stopped, budget) {
                Ok(n) => {
                    saved.bytes += n;
                    saved.checkpoint_bytes = n;
                }
                Err(e) => {
                    self.abandon();
                    return Err(e);
                }
            }
        }
        Ok(saved)
    }

    /// Writes the next parts of the checkpoint being written, and puts it in place when it is
    /// complete. Returns the bytes written.
    fn write_parts(
        &mut self,
        acc: &Accounting,
        stopped: &Stopped,
        budget: u64,
    ) -> Result<u64, StateError> {
        let next = next_path(&self.path);
        self.step()?;
        let Some(w) = self.writing.as_mut() else {
            return Ok(0);
        };
        let mut buf = if w.len == 0 {
            checkpoint::header(w.generation)
        } else {
            Vec::new()
        };
        let budget = (budget as usize).saturating_sub(buf.len());
        let done = checkpoint::encode_parts(
            &mut buf,
            &self.cloud,
            acc,
            stopped,
            self.seq,
            &mut w.cursor,
            budget,
        );
        if w.len == 0 {
            let mut f = fs::File::create(&next).map_err(io(&next, "creating"))?;
            f.write_all(&buf).map_err(io(&next, "writing"))?;
            f.sync_data().map_err(io(&next, "syncing"))?;
        } else {
            append(&next, &buf)?;
        }
        w.len += buf.len() as u64;
        if done {
            let (generation, len) = (w.generation, w.len);
            self.step()?;
            rename(&next, &self.path)?;
            self.writing = None;
            self.generation = generation;
            self.checkpoint_len = len;
            let log_len = self.log.map_or(0, |(_, n)| n);
            self.step()?;
            rename(&next_log_path(&self.path), &log_path(&self.path))?;
            self.log = Some((Active::Log, log_len));
        }
        Ok(buf.len() as u64)
    }

    /// Writes a whole checkpoint of the next generation, then an empty log continuing it.
    pub fn compact(
        &mut self,
        acc: &mut Accounting,
        stopped: &Stopped,
    ) -> Result<Saved, StateError> {
        // Anything noted before is in the checkpoint.
        acc.start_journal();
        self.abandon();
        let generation = [
            self.path.clone(),
            log_path(&self.path),
            next_path(&self.path),
            next_log_path(&self.path),
        ]
        .iter()
        .map(|p| peek_generation(p))
        .max()
        .unwrap_or(0)
        .max(self.generation)
            + 1;
        let mut bytes = checkpoint::header(generation);
        let mut cursor = Cursor::Begin;
        checkpoint::encode_parts(
            &mut bytes,
            &self.cloud,
            acc,
            stopped,
            self.seq,
            &mut cursor,
            usize::MAX,
        );
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The default path's `data/` may not exist yet.
            fs::create_dir_all(dir).map_err(io(dir, "creating the directory"))?;
        }
        replace(&self.path, &bytes)?;
        self.generation = generation;
        self.checkpoint_len = bytes.len() as u64;
        let header = format::log_header(generation);
        replace(&log_path(&self.path), &header)?;
        self.log = Some((Active::Log, header.len() as u64));
        for stale in [next_path(&self.path), next_log_path(&self.path)] {
            // Of an older generation, so never read; removed to leave no doubt.
            if let Err(e) = fs::remove_file(&stale) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(io(&stale, "removing")(e));
                }
            }
        }
        self.window_end = acc.window_end;
        self.persisted.clone_from(stopped);
        Ok(Saved {
            bytes: (bytes.len() + header.len()) as u64,
            checkpoint_bytes: bytes.len() as u64,
            compacted: true,
        })
    }
}

/// Appends `bytes` to `path` and syncs them.
fn append(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io(path, "opening to append"))?;
    f.write_all(bytes).map_err(io(path, "appending"))?;
    f.sync_data().map_err(io(path, "syncing"))
}

/// Renames `from` to `to` and makes the rename durable.
fn rename(from: &Path, to: &Path) -> Result<(), StateError> {
    fs::rename(from, to).map_err(io(to, "renaming into place"))?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        // A directory that cannot be opened (some filesystems) still has the complete file in
        // place.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = beside(path, ".tmp");
    {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp, "creating"))?;
        f.write_all(bytes).map_err(io(&tmp, "writing"))?;
        f.sync_all().map_err(io(&tmp, "syncing"))?;
    }
    rename(&tmp, path)
}

/// The generation in a checkpoint's or log's header; 0 when there is none to read.
fn peek_generation(path: &Path) -> u64 {
    peek(path).map_or(0, |(_, g)| g)
}

/// The version and generation in a checkpoint's or log's header.
fn peek(path: &Path) -> Option<(u32, u64)> {
    let mut head = [0u8; 20];
    fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .ok()?;
    if &head[..8] != format::SNAPSHOT_MAGIC && &head[..8] != format::LOG_MAGIC {
        return None;
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let mut g = [0u8; 8];
    g.copy_from_slice(&head[12..20]);
    Some((version, u64::from_le_bytes(g)))
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
            let logs: Vec<PathBuf> = [log_path(path), next_log_path(path)]
                .into_iter()
                .filter(|l| l.exists())
                .collect();
            if let Some(log) = logs.first() {
                // A log without its checkpoint continues nothing; kept for inspection.
                let mut moved = Vec::new();
                for l in &logs {
                    let to = set_aside_name(l);
                    fs::rename(l, &to).map_err(io(l, "setting aside"))?;
                    moved.push(to);
                }
                let moved_to = moved.swap_remove(0);
                let reason = format!("{}: a log without its checkpoint", log.display());
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
            for (log, suffix) in [(log_path(path), ".log"), (next_log_path(path), ".next.log")] {
                if log.exists() {
                    let to = beside(&moved_to, suffix);
                    fs::rename(&log, &to).map_err(io(&log, "setting aside"))?;
                }
            }
            Ok((
                Loaded::SetAside { reason, moved_to },
                Store::fresh(path, cloud),
            ))
        }
    }
}

type Resumed = (Accounting, Stopped, Store);

/// The state in `bytes` (and its logs), or why it cannot be trusted.
fn resume(path: &Path, cloud: &str, bytes: &[u8]) -> Result<Result<Resumed, String>, StateError> {
    if bytes.first() == Some(&b'{') {
        return Ok(migrate(path, cloud, bytes));
    }
    // The version after the magic (the bytes are read already; `peek` would read the file).
    let version = bytes
        .get(8..12)
        .filter(|_| bytes.starts_with(format::SNAPSHOT_MAGIC))
        .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
    if version == Some(format::VERSION_2) {
        return migrate_v2(path, cloud, bytes);
    }
    let cp = match checkpoint::decode(bytes) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Err(format!(
                "{}: not a state file of this exporter ({e})",
                path.display()
            )))
        }
    };
    if cp.cloud != cloud {
        return Ok(Err(format!(
            "belongs to cloud {:?}, not {cloud:?}",
            cp.cloud
        )));
    }
    let end_seq = cp.end_seq;
    let (mut acc, mut stopped) = (cp.accounting, cp.stopped);
    let mut over = Over::Checkpoint(Replay {
        after: cp.seq,
        last: cp.seq,
        record_seq: cp.record_seq,
    });
    // The logs continuing this checkpoint, in order, with their generations.
    let (log, next_log) = (log_path(path), next_log_path(path));
    let g = cp.generation;
    let (logs, active): (Vec<(&Path, u64)>, Option<Active>) =
        match (peek_generation(&log), peek_generation(&next_log)) {
            (l, n) if l == g && n == g + 1 => {
                (vec![(&log, g), (&next_log, g + 1)], Some(Active::Next))
            }
            (l, n) if l == g && n < g => (vec![(&log, g)], Some(Active::Log)),
            // Killed between the renames that put a checkpoint in place.
            (l, n) if l < g && n == g => (vec![(&next_log, g)], Some(Active::Log)),
            (l, n) if l < g && n < g => (vec![], None),
            (l, n) => {
                return Ok(Err(format!(
                    "{}: the logs continue generations {l} and {n}, the checkpoint is {g}",
                    path.display()
                )))
            }
        };
    let mut log_len = 0;
    for (k, &(l, generation)) in logs.iter().enumerate() {
        let last = k + 1 == logs.len();
        match replay(
            l,
            format::VERSION,
            generation,
            last,
            &mut acc,
            &mut stopped,
            &mut over,
        )? {
            Ok(len) => log_len = len,
            Err(reason) => return Ok(Err(reason)),
        }
    }
    let Over::Checkpoint(r) = over else {
        unreachable!("set above")
    };
    if r.last < end_seq {
        return Ok(Err(format!(
            "{}: the checkpoint holds parts up to entry {end_seq}, the logs end at entry {}",
            path.display(),
            r.last
        )));
    }
    if let Some(i) = r.record_seq.iter().position(|&s| s == checkpoint::ABSENT) {
        return Ok(Err(format!(
            "{}: record {i} is in no part and no entry",
            path.display()
        )));
    }
    if let Some(reason) = acc.implausible(SystemTime::now()) {
        return Ok(Err(reason));
    }
    if logs.len() == 1 && logs[0].0 == next_log.as_path() {
        // Finish what the kill interrupted.
        rename(&next_log, &log)?;
    }
    let writing = (active == Some(Active::Next)).then(|| Writing {
        // The parts written before the restart are dropped: the checkpoint starts again.
        generation: g + 1,
        cursor: Cursor::Begin,
        len: 0,
    });
    let store = Store {
        path: path.to_owned(),
        cloud: cloud.to_owned(),
        generation: g,
        checkpoint_len: bytes.len() as u64,
        seq: r.last,
        log: active.map(|a| (a, log_len)),
        writing,
        window_end: acc.window_end,
        persisted: stopped.clone(),
        limits: Limits::default(),
        #[cfg(test)]
        crash_after: None,
    };
    Ok(Ok((acc, stopped, store)))
}

/// A version-1 JSON state, in today's form; the first save writes it as a checkpoint.
fn migrate(path: &Path, cloud: &str, bytes: &[u8]) -> Result<Resumed, String> {
    let file = match serde_json::from_slice::<v1::StateFile>(bytes) {
        Err(e) => return Err(format!("not a state file of this exporter ({e})")),
        Ok(s) if s.version != 1 => {
            return Err(format!(
                "unknown version {} (this build reads 1, 2 and {VERSION})",
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

/// A version-2 snapshot and its log; the first save writes them as a checkpoint.
fn migrate_v2(
    path: &Path,
    cloud: &str,
    bytes: &[u8],
) -> Result<Result<Resumed, String>, StateError> {
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
    let log = log_path(path);
    let g = peek_generation(&log);
    if g > snap.generation {
        return Ok(Err(format!(
            "{}: continues generation {g}, the snapshot is {}",
            log.display(),
            snap.generation
        )));
    }
    if g == snap.generation {
        let replayed = replay(
            &log,
            format::VERSION_2,
            g,
            true,
            &mut acc,
            &mut stopped,
            &mut Over::Exact,
        )?;
        if let Err(reason) = replayed {
            return Ok(Err(reason));
        }
    }
    if let Some(reason) = acc.implausible(SystemTime::now()) {
        return Ok(Err(reason));
    }
    tracing::info!(path = %path.display(), "migrating the version-2 state files");
    let mut store = Store::fresh(path, cloud);
    store.generation = snap.generation;
    Ok(Ok((acc, stopped, store)))
}

/// Replays the log at `log` (of `version`, continuing `generation`) onto the state. Returns
/// its valid length; a torn tail is cut off when `last`, and damage otherwise.
fn replay(
    log: &Path,
    version: u32,
    generation: u64,
    last: bool,
    acc: &mut Accounting,
    stopped: &mut Stopped,
    over: &mut Over,
) -> Result<Result<u64, String>, StateError> {
    let bytes = match fs::read(log) {
        Ok(b) => b,
        Err(e) => return Err(io(log, "reading")(e)),
    };
    let shown = log.display();
    match format::read_log_header(&bytes) {
        Ok((v, g)) if v == version && g == generation => {}
        Ok((v, g)) => {
            return Ok(Err(format!(
            "{shown}: version {v} generation {g} where {version} generation {generation} was due"
        )))
        }
        Err(e) => return Ok(Err(format!("{shown}: {e}"))),
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
        if let Err(e) = format::apply_entry(payload, start as u64, acc, stopped, over) {
            return Ok(Err(format!("{shown}: {e}")));
        }
        pos = end;
    }
    if pos < bytes.len() {
        if !last {
            return Ok(Err(format!(
                "{shown}: at byte {pos}: an entry cut short before the log that continues it"
            )));
        }
        tracing::warn!(
            path = %shown,
            at = pos,
            dropped = bytes.len() - pos,
            "state log ends in an entry that was never completed; it is dropped"
        );
        let f = fs::OpenOptions::new()
            .write(true)
            .open(log)
            .map_err(io(log, "opening to cut the torn entry"))?;
        f.set_len(pos as u64)
            .and_then(|()| f.sync_all())
            .map_err(io(log, "cutting the torn entry"))?;
    }
    Ok(Ok(pos as u64))
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
