//! The checkpoint (`<path>`, version 3): the state written in parts, each part taken from the
//! state as it was after a given log entry, so that a checkpoint can be written a few hundred
//! kilobytes per refresh while the log goes on.
//!
//! Layout: a 24-byte header (`SXOSSNAP`, version, generation, CRC-32 of those 20 bytes), then
//! parts framed like log entries (payload length u32, CRC-32 of the payload, payload). A
//! payload is its kind (u8), the sequence number of the log entry after which it was taken
//! (u64), and its items up to the end of the payload:
//!
//! - `BEGIN`: the cloud and the accounting start; always first, its sequence number is the
//!   checkpoint's: every entry after it is replayed.
//! - `PROJECTS` / `METADATA`: the table entries from index `first` on (projects with their
//!   totals); the parts of a table follow each other without a gap.
//! - `SERVERS`: records (id, index, hours, fields) in id order, each part after the last id of
//!   the one before.
//! - `STOPPED`: stopped servers in id order, likewise.
//! - `END`: the window end and when the servers were last listed; always last.
//!
//! Loading replays the log entries after `BEGIN`'s over the parts. Every change an entry
//! holds sets a value (a table entry, a record's fields, a total, a stopped server) except the
//! hours, which add: an entry's hours are added only to records from a part taken before that
//! entry, so each record gets exactly the additions it had, in the same order, and its sum is
//! bit-identical. For the values that are set, the last entry that set one wins, and a value
//! no entry after `BEGIN` set is the same in every part. A server created after the part
//! that covers its id was taken is in no part; the entry that created it creates it again.

use std::ops::Bound;
use std::sync::Arc;

use super::super::accounting::{len_u32, Accounting, ServerRecord};
use super::super::compact::ServerId;
use super::super::stopped::Stopped;
use super::codec::{Dec, DecodeError, Enc};
use super::format::{
    self, fields, metadata, read_fields, read_metadata_entry, read_project, read_seen_at,
    read_since, seen_at, since, totals, SNAPSHOT_MAGIC, VERSION,
};

pub const HEADER_LEN: u64 = 24;
/// Length and checksum before each part's payload.
pub const PART_HEAD_LEN: usize = 8;

const BEGIN: u8 = 0;
const PROJECTS: u8 = 1;
const METADATA: u8 = 2;
const SERVERS: u8 = 3;
const STOPPED: u8 = 4;
const END: u8 = 5;

/// A record's sequence number while it is in no part (yet): nothing may touch it.
pub const ABSENT: u64 = u64::MAX;

/// The checkpoint header for `generation`.
pub fn header(generation: u64) -> Vec<u8> {
    format::header(SNAPSHOT_MAGIC, generation)
}

/// Where the writing of a checkpoint has got to: the next part starts here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    Begin,
    Projects(u32),
    Metadata(u32),
    /// After this server id (from the first when `None`).
    Servers(Option<ServerId>),
    /// After this stopped server id (from the first when `None`).
    Stopped(Option<String>),
    End,
    Done,
}

/// Appends to `out` the next parts of the checkpoint of `cloud`, taken from the state as it
/// is after log entry `seq`, from `cursor` on, adding at most `budget` bytes — except that
/// the first part always goes in with at least one item, so that each call moves on. Returns
/// whether the checkpoint is complete.
pub fn encode_parts(
    out: &mut Vec<u8>,
    cloud: &str,
    acc: &Accounting,
    stopped: &Stopped,
    seq: u64,
    cursor: &mut Cursor,
    budget: usize,
) -> bool {
    let start = out.len();
    let mut e = Enc {
        buf: std::mem::take(out),
    };
    while *cursor != Cursor::Done {
        let head = e.buf.len();
        let first = head == start;
        // Keeps what was added since `mark` if it fits (or must go in); drops it otherwise.
        let fits = |e: &mut Enc, mark: usize, forced: bool| {
            let ok = forced || e.buf.len() - start <= budget;
            if !ok {
                e.buf.truncate(mark);
            }
            ok
        };
        e.buf.extend_from_slice(&[0; PART_HEAD_LEN]);
        let next = match cursor {
            Cursor::Begin => {
                e.u8(BEGIN);
                e.u64(seq);
                e.str(cloud);
                e.u64(acc.usage_start);
                Cursor::Projects(0)
            }
            Cursor::Projects(from) => {
                e.u8(PROJECTS);
                e.u64(seq);
                e.var((*from).into());
                let from = *from as usize;
                let projects = acc.projects.iter().skip(from).zip(&acc.totals[from..]);
                let (n, _, more) = put_items(&mut e, projects, first, &fits, |e, (name, t)| {
                    e.str(name);
                    totals(e, t);
                });
                if more {
                    Cursor::Projects(len_u32(from + n))
                } else {
                    Cursor::Metadata(0)
                }
            }
            Cursor::Metadata(from) => {
                e.u8(METADATA);
                e.u64(seq);
                e.var((*from).into());
                let from = *from as usize;
                let maps = acc.metadata.iter().skip(from);
                let (n, _, more) = put_items(&mut e, maps, first, &fits, metadata);
                if more {
                    Cursor::Metadata(len_u32(from + n))
                } else {
                    Cursor::Servers(None)
                }
            }
            Cursor::Servers(after) => {
                e.u8(SERVERS);
                e.u64(seq);
                let from = after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
                let servers = acc.index.range((from, Bound::Unbounded));
                let (_, last, more) = put_items(&mut e, servers, first, &fits, |e, (id, &i)| {
                    let r = &acc.records[i as usize];
                    e.id(id);
                    e.var(i.into());
                    e.f64(r.hours);
                    fields(e, r);
                });
                match (more, last) {
                    (false, _) => Cursor::Stopped(None),
                    (true, Some((id, _))) => Cursor::Servers(Some(id.clone())),
                    (true, None) => cursor.clone(),
                }
            }
            Cursor::Stopped(after) => {
                e.u8(STOPPED);
                e.u64(seq);
                let from = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                let servers = stopped.servers.range::<str, _>((from, Bound::Unbounded));
                let (_, last, more) =
                    put_items(&mut e, servers, first, &fits, |e, (id, s)| since(e, id, s));
                match (more, last) {
                    (false, _) => Cursor::End,
                    (true, Some((id, _))) => Cursor::Stopped(Some(id.clone())),
                    (true, None) => cursor.clone(),
                }
            }
            Cursor::End => {
                e.u8(END);
                e.u64(seq);
                e.u64(acc.window_end);
                seen_at(&mut e, stopped.seen_at);
                Cursor::Done
            }
            Cursor::Done => unreachable!("the loop stops at Done"),
        };
        // A part that does not fit, or fits with none of the items it was for, waits.
        if next == *cursor || !fits(&mut e, head, first) {
            e.buf.truncate(head);
            break;
        }
        let payload = &e.buf[head + PART_HEAD_LEN..];
        let crc = crc32fast::hash(payload);
        let len = u32::try_from(payload.len()).expect("a checkpoint part under 4 GiB");
        e.buf[head..head + 4].copy_from_slice(&len.to_le_bytes());
        e.buf[head + 4..head + 8].copy_from_slice(&crc.to_le_bytes());
        *cursor = next;
    }
    *out = e.buf;
    *cursor == Cursor::Done
}

/// Reads where a table's part starts: right after the entries read so far.
fn continues(d: &mut Dec<'_>, read: usize, table: &str) -> Result<(), DecodeError> {
    let first = d.index("first index")?;
    if first as usize == read {
        Ok(())
    } else {
        Err(d.error(format!("{table} from {first}, {read} read so far")))
    }
}

/// Puts `items` while they fit (`fits`, see [`encode_parts`]; the first one anyway when
/// `forced`). Returns how many went in, the last of them, and whether any is left.
fn put_items<T: Copy>(
    e: &mut Enc,
    items: impl Iterator<Item = T>,
    forced: bool,
    fits: &impl Fn(&mut Enc, usize, bool) -> bool,
    put: impl Fn(&mut Enc, T),
) -> (usize, Option<T>, bool) {
    let mut items = items.peekable();
    let (mut n, mut last) = (0, None);
    while let Some(&item) = items.peek() {
        let mark = e.buf.len();
        put(e, item);
        if !fits(e, mark, forced && n == 0) {
            break;
        }
        n += 1;
        last = Some(item);
        items.next();
    }
    (n, last, items.peek().is_some())
}

/// A decoded checkpoint, before the log is replayed over it.
#[derive(Debug)]
pub struct Checkpoint {
    pub generation: u64,
    pub cloud: String,
    /// The sequence number of `BEGIN`: the log entries after it are replayed.
    pub seq: u64,
    /// The sequence number of `END`: the log must reach at least this entry.
    pub end_seq: u64,
    /// The records not in any part are default records with sequence number [`ABSENT`].
    pub accounting: Accounting,
    pub stopped: Stopped,
    /// Per record index: the sequence number of the part it came from.
    pub record_seq: Vec<u64>,
}

/// Reads a checkpoint file's bytes (magic and version already checked by the caller, or
/// not). Every part must be whole and checksummed right: the file is complete by the time it
/// has its name.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, DecodeError> {
    let (_, generation) = format::read_header(bytes, SNAPSHOT_MAGIC, "checkpoint", &[VERSION])?;
    let mut pos = HEADER_LEN as usize;
    let mut begin: Option<(u64, String)> = None;
    let mut acc = Accounting::empty(0);
    acc.metadata = Default::default();
    let mut stopped = Stopped::default();
    let mut slots: Vec<Option<(ServerRecord, u64)>> = Vec::new();
    let mut last_seq = 0;
    let mut ended = false;
    let mut end_seq = 0;
    while pos < bytes.len() {
        let mut f = Dec::new(&bytes[pos..], pos as u64);
        if ended {
            return Err(f.error("bytes after the END part"));
        }
        let len = f.u32("part length")? as usize;
        let crc = f.u32("part checksum")?;
        let payload = f.take(len, "part")?;
        if crc32fast::hash(payload) != crc {
            return Err(DecodeError {
                offset: pos as u64,
                what: "part checksum mismatch: the file is damaged".into(),
            });
        }
        let base = (pos + PART_HEAD_LEN) as u64;
        pos += PART_HEAD_LEN + len;
        let mut d = Dec::new(payload, base);
        let kind = d.u8("part kind")?;
        let seq = d.u64("part sequence number")?;
        if seq < last_seq {
            return Err(d.error("part taken before the one it follows"));
        }
        last_seq = seq;
        match (kind, &begin) {
            (BEGIN, None) => {
                let cloud = d.str("cloud")?.to_owned();
                acc.usage_start = d.u64("usage_start")?;
                begin = Some((seq, cloud));
            }
            (_, None) => return Err(d.error("the first part is not BEGIN")),
            (BEGIN, Some(_)) => return Err(d.error("a second BEGIN part")),
            (PROJECTS, _) => {
                continues(&mut d, acc.projects.len(), "projects")?;
                while !d.is_empty() {
                    read_project(&mut d, &mut acc)?;
                }
            }
            (METADATA, _) => {
                continues(&mut d, acc.metadata.len(), "metadata")?;
                while !d.is_empty() {
                    read_metadata_entry(&mut d, &mut acc)?;
                }
            }
            (SERVERS, _) => {
                while !d.is_empty() {
                    let at = d.offset();
                    let id = d.id("server id")?;
                    let i = d.index("server index")?;
                    let hours = d.f64("hours")?;
                    let r = read_fields(&mut d, hours)?;
                    let i = i as usize;
                    if slots.len() <= i {
                        slots.resize(i + 1, None);
                    }
                    if slots[i].is_some() || acc.index.insert(id.clone(), i as u32).is_some() {
                        return Err(DecodeError {
                            offset: at,
                            what: format!("server {} or its index {i} listed twice", id.to_text()),
                        });
                    }
                    slots[i] = Some((r, seq));
                }
            }
            (STOPPED, _) => {
                while !d.is_empty() {
                    let at = d.offset();
                    let (id, s) = read_since(&mut d)?;
                    if stopped.servers.insert(id, s).is_some() {
                        return Err(DecodeError {
                            offset: at,
                            what: "stopped server listed twice".into(),
                        });
                    }
                }
            }
            (END, _) => {
                acc.window_end = d.u64("window end")?;
                stopped.seen_at = read_seen_at(&mut d)?;
                end_seq = seq;
                ended = true;
            }
            (other, _) => return Err(d.error(format!("unknown part kind {other}"))),
        }
        if !d.is_empty() {
            return Err(d.error("trailing bytes in part"));
        }
    }
    let Some((seq, cloud)) = begin.filter(|_| ended) else {
        return Err(DecodeError {
            offset: pos as u64,
            what: "the checkpoint ends before its END part".into(),
        });
    };
    if acc.metadata.is_empty() {
        acc.metadata.push(Arc::new(Default::default()));
    }
    let mut record_seq = Vec::with_capacity(slots.len());
    acc.records = slots
        .into_iter()
        .map(|s| {
            let (r, seq) = s.unwrap_or((ServerRecord::default(), ABSENT));
            record_seq.push(seq);
            r
        })
        .collect();
    Ok(Checkpoint {
        generation,
        cloud,
        seq,
        end_seq,
        accounting: acc,
        stopped,
        record_seq,
    })
}
