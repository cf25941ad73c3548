//! The state's files: the log (version 3, and version 2 to migrate) and the version-2
//! snapshot, read once to migrate it (the version-3 checkpoint is in
//! [`checkpoint`](super::checkpoint)).
//!
//! Version-2 snapshot (`<path>`): `SXOSSNAP`, version (u32), generation (u64), the cloud, the
//! start and window end, the project table with totals, the metadata table, every server (id,
//! index, record), the stopped servers, then a CRC-32 of everything before it.
//!
//! Log (`<path>.log`): a 24-byte header (`SXOSLOG\0`, version, the generation of the
//! checkpoint it continues, CRC-32 of those 20 bytes), then one entry per refresh: payload
//! length (u32), CRC-32 of the payload, payload. A payload holds (version 3 only) its sequence
//! number, the window it ends, the table entries it adds, the records whose fields changed,
//! every hours increment in the order it was added, the totals of the projects that changed
//! (absolute) and the changes of the stopped servers. Replaying an entry repeats exactly the
//! floating-point additions the refresh made.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use super::super::accounting::{len_u32, Accounting, Journal, ProjectTotals, ServerRecord};
use super::super::compact::Metadata;
use super::super::stopped::{Since, Stopped};
use super::codec::{unzigzag, zigzag, Dec, DecodeError, Enc};

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"SXOSSNAP";
pub const LOG_MAGIC: &[u8; 8] = b"SXOSLOG\0";
/// The format version this build writes and reads (1 was the JSON file, 2 a snapshot rewritten
/// whole; both are migrated on load).
pub const VERSION: u32 = 3;
pub const VERSION_2: u32 = 2;
pub const LOG_HEADER_LEN: u64 = 24;
/// Length and checksum before each log payload.
pub const ENTRY_HEAD_LEN: u64 = 8;

/// A decoded snapshot.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub cloud: String,
    pub accounting: Accounting,
    pub stopped: Stopped,
}

pub(super) fn totals(e: &mut Enc, t: &ProjectTotals) {
    e.f64(t.vcpu_seconds);
    e.f64(t.memory_byte_seconds);
    e.f64(t.disk_byte_seconds);
    e.f64(t.instance_seconds);
}

pub(super) fn read_totals(d: &mut Dec<'_>) -> Result<ProjectTotals, DecodeError> {
    Ok(ProjectTotals {
        vcpu_seconds: d.f64("vcpu seconds")?,
        memory_byte_seconds: d.f64("memory byte seconds")?,
        disk_byte_seconds: d.f64("disk byte seconds")?,
        instance_seconds: d.f64("instance seconds")?,
    })
}

pub(super) fn metadata(e: &mut Enc, m: &Metadata) {
    e.len(m.len());
    for (k, v) in m {
        e.str(k);
        e.str(v);
    }
}

pub(super) fn read_metadata(d: &mut Dec<'_>) -> Result<Metadata, DecodeError> {
    let n = d.count("metadata size")?;
    let mut m = Metadata::new();
    for _ in 0..n {
        let k = d.str("metadata key")?.to_owned();
        m.insert(k, d.str("metadata value")?.to_owned());
    }
    Ok(m)
}

/// Reads a project (id and totals) and adds it to the table.
pub(super) fn read_project(d: &mut Dec<'_>, acc: &mut Accounting) -> Result<(), DecodeError> {
    let at = d.offset();
    let name = d.str("project id")?;
    if acc.projects.push(Arc::from(name)) as usize != acc.totals.len() {
        return Err(DecodeError {
            offset: at,
            what: format!("project {name} listed twice"),
        });
    }
    acc.totals.push(read_totals(d)?);
    Ok(())
}

/// Reads a metadata map and adds it to the table.
pub(super) fn read_metadata_entry(
    d: &mut Dec<'_>,
    acc: &mut Accounting,
) -> Result<(), DecodeError> {
    let at = d.offset();
    let m = read_metadata(d)?;
    let next = acc.metadata.len();
    if acc.metadata.push(Arc::new(m)) as usize != next {
        return Err(DecodeError {
            offset: at,
            what: "metadata map listed twice".into(),
        });
    }
    Ok(())
}

/// The record's fields but hours.
pub(super) fn fields(e: &mut Enc, r: &ServerRecord) {
    e.var(r.project.into());
    e.var(r.vcpus);
    e.var(r.memory_mb);
    e.f64(r.started_at);
    e.var(r.metadata.into());
}

pub(super) fn read_fields(d: &mut Dec<'_>, hours: f64) -> Result<ServerRecord, DecodeError> {
    Ok(ServerRecord {
        project: d.index("project index")?,
        hours,
        vcpus: d.var("vcpus")?,
        memory_mb: d.var("memory_mb")?,
        started_at: d.f64("started_at")?,
        metadata: d.index("metadata index")?,
    })
}

pub(super) fn since(e: &mut Enc, id: &str, s: &Since) {
    e.str(id);
    e.str(&s.status);
    e.u64(s.since);
}

pub(super) fn read_since(d: &mut Dec<'_>) -> Result<(String, Since), DecodeError> {
    let id = d.str("stopped server id")?.to_owned();
    let status = d.str("stopped status")?.to_owned();
    let since = d.u64("stopped since")?;
    Ok((id, Since { status, since }))
}

pub(super) fn seen_at(e: &mut Enc, s: Option<u64>) {
    e.u8(u8::from(s.is_some()));
    e.u64(s.unwrap_or(0));
}

pub(super) fn read_seen_at(d: &mut Dec<'_>) -> Result<Option<u64>, DecodeError> {
    let some = d.u8("seen_at flag")?;
    let v = d.u64("seen_at")?;
    Ok((some != 0).then_some(v))
}

/// Reads a version-2 snapshot file's bytes (magic already recognised by the caller or not).
pub fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let Some(body_len) = bytes.len().checked_sub(4).filter(|&n| n >= 12) else {
        return Err(DecodeError {
            offset: 0,
            what: format!("{} bytes is too short for a snapshot", bytes.len()),
        });
    };
    let (body, tail) = bytes.split_at(body_len);
    let mut d = Dec::new(body, 0);
    if d.take(8, "magic")? != SNAPSHOT_MAGIC {
        return Err(DecodeError {
            offset: 0,
            what: "not a state snapshot (magic)".into(),
        });
    }
    let version = d.u32("version")?;
    if version != VERSION_2 {
        return Err(DecodeError {
            offset: 8,
            what: format!("unknown version {version} (this build reads {VERSION_2} and {VERSION})"),
        });
    }
    let want = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if crc32fast::hash(body) != want {
        return Err(DecodeError {
            offset: body_len as u64,
            what: "checksum mismatch: the file is damaged".into(),
        });
    }
    let generation = d.u64("generation")?;
    let cloud = d.str("cloud")?.to_owned();
    let usage_start = d.u64("usage_start")?;
    let mut acc = Accounting::empty(usage_start);
    acc.window_end = d.u64("window end")?;
    let n = d.count("project count")?;
    for _ in 0..n {
        read_project(&mut d, &mut acc)?;
    }
    let n = d.count("metadata count")?;
    acc.metadata = Default::default();
    for _ in 0..n {
        read_metadata_entry(&mut d, &mut acc)?;
    }
    if acc.metadata.is_empty() {
        acc.metadata.push(Arc::new(Metadata::new()));
    }
    let n = d.count("server count")?;
    let mut slots: Vec<Option<ServerRecord>> = vec![None; n];
    for _ in 0..n {
        let at = d.offset();
        let id = d.id("server id")?;
        let i = d.index("server index")?;
        let hours = d.f64("hours")?;
        let r = read_fields(&mut d, hours)?;
        match slots.get_mut(i as usize) {
            Some(slot @ None) => *slot = Some(r),
            _ => {
                return Err(DecodeError {
                    offset: at,
                    what: format!("server {}: index {i} out of range or taken", id.to_text()),
                })
            }
        }
        if acc.index.insert(id, i).is_some() {
            return Err(DecodeError {
                offset: at,
                what: "server listed twice".into(),
            });
        }
    }
    acc.records = slots.into_iter().flatten().collect();
    let mut stopped = Stopped {
        seen_at: read_seen_at(&mut d)?,
        servers: BTreeMap::new(),
    };
    let n = d.count("stopped count")?;
    for _ in 0..n {
        let (id, s) = read_since(&mut d)?;
        stopped.servers.insert(id, s);
    }
    if !d.is_empty() {
        return Err(d.error("trailing bytes"));
    }
    Ok(Snapshot {
        generation,
        cloud,
        accounting: acc,
        stopped,
    })
}

/// A file header (24 bytes): `magic`, the version this build writes, `generation`, then the
/// CRC-32 of those 20 bytes.
pub fn header(magic: &[u8; 8], generation: u64) -> Vec<u8> {
    let mut e = Enc::default();
    e.buf.extend_from_slice(magic);
    e.u32(VERSION);
    e.u64(generation);
    let crc = crc32fast::hash(&e.buf);
    e.u32(crc);
    e.buf
}

/// The version and generation in a header of the state's `what` file (see [`header`]), if it
/// is one of the `versions` this build reads.
pub fn read_header(
    bytes: &[u8],
    magic: &[u8; 8],
    what: &str,
    versions: &[u32],
) -> Result<(u32, u64), DecodeError> {
    let mut d = Dec::new(bytes, 0);
    let head = d.take(20, &format!("{what} header"))?;
    let crc = d.u32("header checksum")?;
    if &head[..8] != magic {
        return Err(DecodeError {
            offset: 0,
            what: format!("not a state {what} (magic)"),
        });
    }
    if crc32fast::hash(head) != crc {
        return Err(DecodeError {
            offset: 20,
            what: format!("{what} header checksum mismatch"),
        });
    }
    let mut d = Dec::new(&head[8..], 8);
    let version = d.u32("version")?;
    if !versions.contains(&version) {
        return Err(DecodeError {
            offset: 8,
            what: format!("unknown {what} version {version} (this build reads {versions:?})"),
        });
    }
    Ok((version, d.u64("generation")?))
}

/// The log header for `generation`.
pub fn log_header(generation: u64) -> Vec<u8> {
    header(LOG_MAGIC, generation)
}

/// The version of a log and the generation it continues.
pub fn read_log_header(bytes: &[u8]) -> Result<(u32, u64), DecodeError> {
    read_header(bytes, LOG_MAGIC, "log", &[VERSION_2, VERSION])
}

/// What changed in the stopped servers since they were last written: the ids gone (in id
/// order), and the entries new or different (in id order).
#[derive(Debug, Default, PartialEq)]
pub struct StoppedChanges {
    pub removed: Vec<String>,
    pub upserts: Vec<(String, Since)>,
}

impl StoppedChanges {
    /// From `old` to `new`, in one walk of both maps; only what changed is cloned.
    pub fn between(old: &BTreeMap<String, Since>, new: &BTreeMap<String, Since>) -> Self {
        let mut out = Self::default();
        let (mut old, mut new) = (old.iter().peekable(), new.iter().peekable());
        loop {
            let order = match (old.peek(), new.peek()) {
                (None, None) => return out,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((o, _)), Some((n, _))) => o.cmp(n),
            };
            match order {
                Ordering::Less => {
                    let (id, _) = old.next().expect("peeked");
                    out.removed.push(id.clone());
                }
                Ordering::Greater => {
                    let (id, s) = new.next().expect("peeked");
                    out.upserts.push((id.clone(), s.clone()));
                }
                Ordering::Equal => {
                    let ((_, was), (id, s)) =
                        (old.next().expect("peeked"), new.next().expect("peeked"));
                    if was != s {
                        out.upserts.push((id.clone(), s.clone()));
                    }
                }
            }
        }
    }

    /// Applies the changes to `servers` (the map they were taken from becomes the other).
    pub fn apply(self, servers: &mut BTreeMap<String, Since>) {
        for id in &self.removed {
            servers.remove(id);
        }
        servers.extend(self.upserts);
    }
}

/// Log entry number `seq` (length, checksum, payload): what changed since the state at
/// `prev_window_end`, with the stopped servers' `changes` since they were last written.
pub fn encode_entry(
    seq: u64,
    prev_window_end: u64,
    acc: &Accounting,
    j: &Journal,
    stopped: &Stopped,
    changes: &StoppedChanges,
) -> Vec<u8> {
    let mut e = Enc {
        buf: Vec::with_capacity(64 + j.hours.len() * 3 + j.projects.len() * 34),
    };
    e.buf.extend_from_slice(&[0; ENTRY_HEAD_LEN as usize]);
    e.u64(seq);
    e.u64(prev_window_end);
    e.u64(acc.window_end);
    e.var(j.first_project.into());
    let names: Vec<&str> = acc.projects.iter().skip(j.first_project as usize).collect();
    e.len(names.len());
    for name in names {
        e.str(name);
    }
    e.var(j.first_metadata.into());
    let maps: Vec<&Metadata> = acc
        .metadata
        .iter()
        .skip(j.first_metadata as usize)
        .collect();
    e.len(maps.len());
    for m in maps {
        metadata(&mut e, m);
    }
    e.var(j.first_server.into());
    e.len(j.new_servers.len());
    for id in &j.new_servers {
        e.id(id);
    }
    e.len(j.records.len());
    for &i in &j.records {
        e.var(i.into());
        fields(&mut e, &acc.records[i as usize]);
    }
    // Hours: the distinct increments once (in a window most servers gain the same hours),
    // then (index step, increment number) pairs.
    let mut numbers: HashMap<u64, u64> = HashMap::new();
    let mut distinct: Vec<u64> = Vec::new();
    let mut previous: Option<(u64, u64)> = None;
    let keys: Vec<u64> = j
        .hours
        .iter()
        .map(|(_, h)| {
            let bits = h.to_bits();
            match previous {
                Some((b, k)) if b == bits => k,
                _ => {
                    let k = *numbers.entry(bits).or_insert_with(|| {
                        distinct.push(bits);
                        distinct.len() as u64 - 1
                    });
                    previous = Some((bits, k));
                    k
                }
            }
        })
        .collect();
    e.len(distinct.len());
    for &h in &distinct {
        e.u64(h);
    }
    e.len(j.hours.len());
    let mut last: i64 = 0;
    for (&(i, _), &k) in j.hours.iter().zip(&keys) {
        e.var(zigzag(i64::from(i) - last));
        last = i64::from(i);
        e.var(k);
    }
    e.len(j.projects.len());
    for &p in &j.projects {
        e.var(p.into());
        totals(&mut e, &acc.totals[p as usize]);
    }
    seen_at(&mut e, stopped.seen_at);
    e.len(changes.removed.len());
    for id in &changes.removed {
        e.str(id);
    }
    e.len(changes.upserts.len());
    for (id, s) in &changes.upserts {
        since(&mut e, id, s);
    }
    let payload_len = e.buf.len() - ENTRY_HEAD_LEN as usize;
    let crc = crc32fast::hash(&e.buf[ENTRY_HEAD_LEN as usize..]);
    let len = u32::try_from(payload_len).expect("a log entry under 4 GiB");
    e.buf[..4].copy_from_slice(&len.to_le_bytes());
    e.buf[4..8].copy_from_slice(&crc.to_le_bytes());
    e.buf
}

/// What an entry is replayed over.
#[derive(Debug)]
pub enum Over {
    /// A version-2 snapshot and log: each entry continues exactly the state before it.
    Exact,
    /// A checkpoint (version 3), see [`checkpoint`](super::checkpoint).
    Checkpoint(Replay),
}

/// Where the replay of entries over a checkpoint stands.
#[derive(Debug)]
pub struct Replay {
    /// The checkpoint's sequence number: entries up to it are skipped.
    pub after: u64,
    /// The last entry applied (or `after`).
    pub last: u64,
    /// Per record: the sequence number of the part it came from; 0 for a record an entry
    /// created, [`ABSENT`](super::checkpoint::ABSENT) for one not (yet) there.
    pub record_seq: Vec<u64>,
}

/// Whether record `i` is there to be changed.
fn present(replay: &Option<(u64, &mut Replay)>, len: usize, i: usize) -> bool {
    match replay {
        None => i < len,
        Some((_, r)) => r
            .record_seq
            .get(i)
            .is_some_and(|&s| s != super::checkpoint::ABSENT),
    }
}

/// Applies one entry's payload (starting at byte `base` of the log) to `acc` and `stopped`.
/// Checks that it continues this state; on error, `acc` may be partly changed.
pub fn apply_entry(
    payload: &[u8],
    base: u64,
    acc: &mut Accounting,
    stopped: &mut Stopped,
    over: &mut Over,
) -> Result<(), DecodeError> {
    let mut d = Dec::new(payload, base);
    let mut replay = match over {
        Over::Exact => None,
        Over::Checkpoint(r) => {
            let seq = d.u64("entry number")?;
            if seq <= r.after && r.last == r.after {
                return Ok(()); // in the checkpoint already
            }
            if seq != r.last + 1 {
                return Err(d.error(format!(
                    "entry {seq} where entry {} was due: the log is not continuous",
                    r.last + 1
                )));
            }
            r.last = seq;
            Some((seq, r))
        }
    };
    let prev = d.u64("previous window end")?;
    if replay.is_none() && prev != acc.window_end {
        return Err(d.error(format!(
            "entry continues window end {prev}, the state is at {}",
            acc.window_end
        )));
    }
    let end = d.u64("window end")?;
    if end < prev {
        return Err(d.error("window end goes backwards"));
    }
    // A table entry the state has already (from a checkpoint part) must be the same; new ones
    // continue the table without a gap.
    let fuzzy = replay.is_some();
    let place = |d: &Dec<'_>, at: usize, len: usize, what: &str| -> Result<bool, DecodeError> {
        if at == len || (fuzzy && at < len) {
            Ok(at == len)
        } else {
            Err(d.error(format!(
                "{what} table: entry adds index {at}, state has {len}"
            )))
        }
    };
    let first = d.index("first project")? as usize;
    for k in 0..d.count("new projects")? {
        let name = d.str("project id")?;
        if place(&d, first + k, acc.projects.len(), "project")? {
            if acc.projects.push(Arc::from(name)) as usize != acc.totals.len() {
                return Err(d.error(format!("project {name} added twice")));
            }
            acc.totals.push(ProjectTotals::default());
        } else if acc.projects.get(len_u32(first + k)) != Some(name) {
            return Err(d.error(format!("project {} is not {name}", first + k)));
        }
    }
    let first = d.index("first metadata")? as usize;
    for k in 0..d.count("new metadata")? {
        let m = read_metadata(&mut d)?;
        if place(&d, first + k, acc.metadata.len(), "metadata")? {
            let next = acc.metadata.len();
            if acc.metadata.push(Arc::new(m)) as usize != next {
                return Err(d.error("metadata map added twice"));
            }
        } else if acc.metadata.get(len_u32(first + k)) != Some(&m) {
            return Err(d.error(format!("metadata map {} differs", first + k)));
        }
    }
    let first = d.index("first server")? as usize;
    for k in 0..d.count("new servers")? {
        let id = d.id("server id")?;
        let i = first + k;
        match &mut replay {
            None => {
                place(&d, i, acc.records.len(), "server")?;
                if acc.index.insert(id, len_u32(i)).is_some() {
                    return Err(d.error("server added twice"));
                }
                acc.records.push(ServerRecord::default());
            }
            Some((_, r)) => match acc.index.get(&id) {
                Some(&j) if j as usize == i => {}
                Some(&j) => {
                    return Err(d.error(format!(
                        "server {} is record {j}, the entry adds it as {i}",
                        id.to_text()
                    )))
                }
                None => {
                    if acc.records.len() <= i {
                        acc.records.resize(i + 1, ServerRecord::default());
                        r.record_seq.resize(i + 1, super::checkpoint::ABSENT);
                    }
                    if r.record_seq[i] != super::checkpoint::ABSENT {
                        return Err(d.error(format!("record {i} added twice")));
                    }
                    r.record_seq[i] = 0;
                    acc.index.insert(id, len_u32(i));
                }
            },
        }
    }
    for _ in 0..d.count("changed records")? {
        let i = d.index("record index")? as usize;
        if !present(&replay, acc.records.len(), i) {
            return Err(d.error(format!("record index {i} out of range")));
        }
        let hours = acc.records[i].hours;
        acc.records[i] = read_fields(&mut d, hours)?;
    }
    let n = d.count("distinct increments")?;
    let mut distinct = Vec::with_capacity(n);
    for _ in 0..n {
        distinct.push(d.f64("increment")?);
    }
    let mut last: i64 = 0;
    for _ in 0..d.count("increments")? {
        let step = unzigzag(d.var("index step")?);
        let k = d.var("increment number")?;
        let i = last.checked_add(step).and_then(|i| usize::try_from(i).ok());
        let (Some(i), Some(&h)) = (i, usize::try_from(k).ok().and_then(|k| distinct.get(k))) else {
            return Err(d.error("increment index out of range"));
        };
        if !present(&replay, acc.records.len(), i) {
            return Err(d.error(format!("record index {i} out of range")));
        }
        // A record from a part taken after this entry has its hours already.
        if replay
            .as_ref()
            .is_none_or(|(seq, r)| r.record_seq[i] < *seq)
        {
            acc.records[i].hours += h;
        }
        last = i as i64;
    }
    for _ in 0..d.count("changed totals")? {
        let p = d.index("project index")? as usize;
        let t = read_totals(&mut d)?;
        let Some(slot) = acc.totals.get_mut(p) else {
            return Err(d.error(format!("project index {p} out of range")));
        };
        *slot = t;
    }
    stopped.seen_at = read_seen_at(&mut d)?;
    for _ in 0..d.count("stopped removed")? {
        stopped.servers.remove(d.str("stopped server id")?);
    }
    for _ in 0..d.count("stopped changed")? {
        let (id, s) = read_since(&mut d)?;
        stopped.servers.insert(id, s);
    }
    if !d.is_empty() {
        return Err(d.error("trailing bytes in entry"));
    }
    acc.window_end = end;
    Ok(())
}
