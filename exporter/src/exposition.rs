//! The encoded exposition that `/metrics` serves: built once per refresh, served many times.
//!
//! A [`Fragment`] is one source's families as OpenMetrics text, held in buffers: a render
//! after another ([`TextBuilder`]) writes what changed into new buffers and shares the
//! previous fragment's buffers for what did not, so a large fragment whose values mostly stay
//! the same is neither copied nor held twice. An [`Exposition`] is the sources' fragments in a
//! fixed order plus the self-metrics and `# EOF`, kept as the very `Bytes` the hub holds (no
//! copy), and gzipped once. Prometheus asks for gzipped OpenMetrics, so that body is ready
//! before the exposition is published; the classic translation and its gzip are made on the
//! first request that wants them and kept until the next refresh, or before publishing once a
//! client has asked for them (see `Hub::exposition_for`). The classic body shares the
//! OpenMetrics bytes of its samples (only family headers differ), so it adds kilobytes, not a
//! second copy of the exposition.
//!
//! The OpenMetrics gzip is assembled from blocks: each part of a fragment is cut at family
//! boundaries (and where the render says a family's piece starts) into blocks of at least
//! `MIN_BLOCK` bytes, each compressed on its own as raw deflate ending in a sync flush
//! (byte-aligned, not final). Concatenated behind one gzip header, followed by an
//! empty final block and the combined CRC-32, they form one ordinary gzip member (as pigz writes
//! them), which every client reads. A block whose text is the same as in the source's previous
//! fragment keeps its compressed bytes, so a refresh compresses only the pieces that changed
//! (on a large cloud most gauges stay the same between two refreshes; the counters move).

use std::convert::Infallible;
use std::io::Write;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::{Compress, Compression, FlushCompress};
use http_body::{Frame, SizeHint};

use crate::classic;

/// `Content-Type` of the OpenMetrics body.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the classic body.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Smallest block compressed on its own: small families are grouped, so that each sync flush
/// (a few bytes, and a fresh compression dictionary) is spread over enough text.
const MIN_BLOCK: usize = 64 * 1024;

/// New text goes into buffers of about this size, closed where a piece of the render ends: an
/// unchanged piece shares its buffer with the next fragment, and a buffer holds the text of a
/// few pieces at most, so what a shared buffer keeps alive beside them stays small. Large
/// enough that the plain body is a few dozen chunks.
const BUFFER: usize = 1 << 20;

/// One source's families as OpenMetrics text, without `# EOF`, and its compressed blocks.
///
/// The text is a sequence of parts, each a range of one of the fragment's buffers. A fragment
/// rendered after another shares the buffers that hold its unchanged pieces ([`TextBuilder`]),
/// so a refresh neither copies those pieces nor holds them twice.
#[derive(Debug, Clone, Default)]
pub struct Fragment {
    buffers: Arc<[Bytes]>,
    parts: Arc<[Part]>,
    blocks: Arc<[Block]>,
}

/// `range` of buffer `buffer`, at offset `start` of the fragment's text.
#[derive(Debug, Clone)]
struct Part {
    buffer: usize,
    range: Range<usize>,
    start: usize,
}

/// Whole families of a fragment (`range` of buffer `buffer`) as raw deflate ending in a sync
/// flush.
#[derive(Debug, Clone)]
struct Block {
    buffer: usize,
    range: Range<usize>,
    deflate: Bytes,
    crc: u32,
}

/// A fragment's text before its blocks are compressed: buffers and the parts of them, in order.
#[derive(Debug, Default)]
pub struct Layout {
    buffers: Vec<Bytes>,
    parts: Vec<Part>,
}

impl Layout {
    /// The whole text, one buffer.
    fn single(text: String) -> Self {
        let mut layout = Self::default();
        layout.push_new(text);
        layout
    }

    fn len(&self) -> usize {
        self.parts.last().map_or(0, |p| p.start + p.range.len())
    }

    /// Appends `text` as a buffer of its own.
    fn push_new(&mut self, mut text: String) {
        if text.is_empty() {
            return;
        }
        // A rendered String grew by doubling; `Bytes` would keep its unused capacity until
        // the next refresh.
        text.shrink_to_fit();
        let start = self.len();
        self.parts.push(Part {
            buffer: self.buffers.len(),
            range: 0..text.len(),
            start,
        });
        self.buffers.push(Bytes::from(text));
    }

    /// Appends `range` of our buffer `buffer`, joined to the last part when it follows it.
    fn push_shared(&mut self, buffer: usize, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        if let Some(last) = self.parts.last_mut() {
            if last.buffer == buffer && last.range.end == range.start {
                last.range.end = range.end;
                return;
            }
        }
        let start = self.len();
        self.parts.push(Part {
            buffer,
            range,
            start,
        });
    }

    /// The whole text as one `String`.
    fn into_string(self) -> String {
        let mut out = Vec::with_capacity(self.len());
        for p in &self.parts {
            out.extend_from_slice(&self.buffers[p.buffer][p.range.clone()]);
        }
        // Buffers are only ever made from Strings, cut at line starts.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Writes a fragment's text: new text into buffers of about `BUFFER` bytes (or one buffer),
/// and ranges of the previous fragment kept as they are ([`TextBuilder::keep`]): shared when
/// at least half of their buffer stays in use, copied otherwise, so that a fragment never keeps
/// alive more than twice the text it shares.
#[derive(Debug)]
pub struct TextBuilder<'a> {
    previous: Option<&'a Fragment>,
    /// Per buffer of `previous`: whether its kept ranges may share it, and its index in ours.
    shareable: Vec<bool>,
    shared: Vec<Option<usize>>,
    layout: Layout,
    open: String,
    limit: usize,
}

impl<'a> TextBuilder<'a> {
    /// A builder of text kept in one buffer, with no previous fragment.
    pub fn single() -> Self {
        Self {
            previous: None,
            shareable: Vec::new(),
            shared: Vec::new(),
            layout: Layout::default(),
            open: String::new(),
            limit: usize::MAX,
        }
    }

    /// A builder whose [`TextBuilder::keep`] takes ranges of `previous`.
    pub fn after(previous: Option<&'a Fragment>) -> Self {
        Self::after_with_limit(previous, BUFFER)
    }

    fn after_with_limit(previous: Option<&'a Fragment>, limit: usize) -> Self {
        let buffers = previous.map_or(0, |p| p.buffers.len());
        Self {
            previous,
            shareable: vec![false; buffers],
            shared: vec![None; buffers],
            limit,
            ..Self::single()
        }
    }

    /// Says which ranges of the previous fragment will be kept, before any is: a buffer is
    /// shared only when they use at least half of it.
    pub fn plan(&mut self, kept: impl IntoIterator<Item = Range<usize>>) {
        let Some(previous) = self.previous else {
            return;
        };
        let mut used = vec![0usize; previous.buffers.len()];
        for range in kept {
            if let Some((buffer, range)) = previous.locate(range) {
                used[buffer] += range.len();
            }
        }
        for (i, used) in used.into_iter().enumerate() {
            self.shareable[i] = used >= previous.buffers[i].len() / 2;
        }
    }

    /// Where new text is written.
    pub fn text(&mut self) -> &mut String {
        if self.open.capacity() == 0 && self.limit != usize::MAX {
            self.open.reserve(self.limit + self.limit / 4);
        }
        &mut self.open
    }

    /// Length of the text so far: the offset of what is written next.
    pub fn len(&self) -> usize {
        self.layout.len() + self.open.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Says that a piece ends here: the buffer being written is closed once it is full.
    pub fn boundary(&mut self) {
        if self.open.len() >= self.limit {
            self.close();
        }
    }

    /// Appends `range` of the previous fragment (a range its parts hold whole), shared or
    /// copied (see [`TextBuilder::plan`]). False, with nothing written, when the previous
    /// fragment has no such range.
    pub fn keep(&mut self, range: Range<usize>) -> bool {
        let Some(previous) = self.previous else {
            return false;
        };
        let Some((buffer, local)) = previous.locate(range) else {
            return false;
        };
        let bytes = &previous.buffers[buffer];
        if self.shareable[buffer] {
            self.close();
            let ours = *self.shared[buffer].get_or_insert_with(|| {
                self.layout.buffers.push(bytes.clone());
                self.layout.buffers.len() - 1
            });
            self.layout.push_shared(ours, local);
            return true;
        }
        match std::str::from_utf8(&bytes[local]) {
            Ok(text) => {
                self.text().push_str(text);
                true
            }
            Err(_) => false,
        }
    }

    fn close(&mut self) {
        let text = std::mem::take(&mut self.open);
        self.layout.push_new(text);
    }

    pub fn finish(mut self) -> Layout {
        self.close();
        self.layout
    }

    /// The text as one `String`: for a builder from [`TextBuilder::single`], the very buffer.
    pub fn into_string(self) -> String {
        if self.layout.parts.is_empty() {
            return self.open;
        }
        self.finish().into_string()
    }
}

impl Fragment {
    pub fn from_openmetrics(openmetrics: String) -> Self {
        Self::from_openmetrics_after(openmetrics, &[], None)
    }

    /// The fragment of `openmetrics`, reusing the compressed blocks of `previous` (the same
    /// source's last fragment) whose text did not change. Blocks start at family boundaries
    /// and at `cuts` (offsets at line starts, ascending: where the render's pieces start).
    pub fn from_openmetrics_after(
        openmetrics: String,
        cuts: &[usize],
        previous: Option<&Fragment>,
    ) -> Self {
        Self::from_layout(Layout::single(openmetrics), cuts, previous)
    }

    /// The fragment of a written text ([`TextBuilder`]), reusing the compressed blocks of
    /// `previous` whose text did not change; `cuts` are offsets in the whole text.
    pub fn from_layout(layout: Layout, cuts: &[usize], previous: Option<&Fragment>) -> Self {
        let Layout { buffers, parts } = layout;
        // One compressor for the blocks that changed (its state is large), reset between them.
        let mut compress: Option<Compress> = None;
        let mut blocks = Vec::new();
        for part in &parts {
            let text = &buffers[part.buffer][part.range.clone()];
            let end = part.start + text.len();
            let first = cuts.partition_point(|&c| c <= part.start);
            let last = cuts.partition_point(|&c| c < end);
            let local: Vec<usize> = cuts[first..last].iter().map(|c| c - part.start).collect();
            for range in block_ranges(text, &local) {
                let block = &text[range.clone()];
                let range = part.range.start + range.start..part.range.start + range.end;
                let same = previous.and_then(|p| {
                    p.blocks.iter().find(|b| {
                        let old = &p.buffers[b.buffer][b.range.clone()];
                        old.len() == block.len() && (old.as_ptr() == block.as_ptr() || old == block)
                    })
                });
                blocks.push(match same {
                    Some(b) => Block {
                        buffer: part.buffer,
                        range,
                        deflate: b.deflate.clone(),
                        crc: b.crc,
                    },
                    None => Block {
                        buffer: part.buffer,
                        range,
                        deflate: deflate_block(&mut compress, block),
                        crc: crc32fast::hash(block),
                    },
                });
            }
        }
        Self {
            buffers: buffers.into(),
            parts: parts.into(),
            blocks: blocks.into(),
        }
    }

    /// Length of the text.
    pub fn len(&self) -> usize {
        self.parts.last().map_or(0, |p| p.start + p.range.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many parts the text is in, and the bytes of the buffers holding them (what the
    /// fragment keeps alive, shared buffers included).
    pub fn held(&self) -> (usize, usize) {
        (self.parts.len(), self.buffers.iter().map(Bytes::len).sum())
    }

    /// The text, part by part (shared, not copied).
    pub fn chunks(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.parts
            .iter()
            .map(|p| self.buffers[p.buffer].slice(p.range.clone()))
    }

    /// The whole text, copied.
    #[cfg(test)]
    pub(crate) fn text(&self) -> String {
        let mut out = Vec::with_capacity(self.len());
        self.chunks().for_each(|c| out.extend_from_slice(&c));
        String::from_utf8(out).unwrap_or_default()
    }

    /// Whether one of the fragment's buffers is one of `other`'s (the same memory).
    #[cfg(test)]
    pub(crate) fn shares_with(&self, other: &Fragment) -> bool {
        self.buffers
            .iter()
            .any(|a| other.buffers.iter().any(|b| a.as_ptr() == b.as_ptr()))
    }

    /// The buffer holding `range` of the text whole, and the range in that buffer.
    fn locate(&self, range: Range<usize>) -> Option<(usize, Range<usize>)> {
        let i = self
            .parts
            .partition_point(|p| p.start <= range.start)
            .checked_sub(1)?;
        let part = &self.parts[i];
        let offset = range.start - part.start;
        let end = offset.checked_add(range.len())?;
        (range.start <= range.end && end <= part.range.len()).then(|| {
            (
                part.buffer,
                part.range.start + offset..part.range.start + end,
            )
        })
    }
}

/// Where the fragment is cut: at lines starting a family (`# HELP`) or at one of `cuts`,
/// once a block holds [`MIN_BLOCK`] bytes.
fn block_ranges(text: &[u8], cuts: &[usize]) -> Vec<Range<usize>> {
    let families = memchr::memmem::find_iter(text, b"\n# HELP ").map(|found| found + 1);
    let mut candidates: Vec<usize> = families.chain(cuts.iter().copied()).collect();
    candidates.sort_unstable();
    let mut ranges = Vec::new();
    let mut start = 0;
    for cut in candidates {
        if cut <= text.len() && cut >= start + MIN_BLOCK {
            ranges.push(start..cut);
            start = cut;
        }
    }
    if start < text.len() {
        ranges.push(start..text.len());
    }
    ranges
}

/// `block` as raw deflate, level 1, ending in a sync flush: byte-aligned and not final, so
/// blocks compressed apart can follow each other in one stream.
fn deflate_block(compress: &mut Option<Compress>, block: &[u8]) -> Bytes {
    let compress = match compress {
        Some(c) => {
            c.reset();
            c
        }
        None => compress.insert(Compress::new(Compression::fast(), false)),
    };
    let mut out = Vec::with_capacity(block.len() / 5 + 64);
    loop {
        let done = usize::try_from(compress.total_in()).unwrap_or(block.len());
        compress
            .compress_vec(&block[done..], &mut out, FlushCompress::Sync)
            .expect("deflate into a Vec cannot fail");
        // The flush is complete once all input is taken and the output was not filled.
        if usize::try_from(compress.total_in()).ok() == Some(block.len())
            && out.len() < out.capacity()
        {
            break;
        }
        out.reserve(out.capacity().max(4096));
    }
    out.shrink_to_fit();
    Bytes::from(out)
}

/// The gzip member of `fragments` followed by the `tail` block: a header, the blocks'
/// deflate in order, an empty final block, the CRC-32 and length of all the text. Copied into
/// one buffer (a few MB at most): served as one chunk, a gzip scrape costs what it did before
/// the blocks (served as ~30 chunks, the stress file's p99 rose to 1.27x nginx's).
fn gzip_blocks(fragments: &[Fragment], tail: &Block) -> Bytes {
    // Magic, deflate, no flags, no mtime, no extra flags, OS unknown (as flate2 writes it).
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    // A final fixed-Huffman block holding only its end code.
    const FINAL: [u8; 2] = [0x03, 0x00];
    let mut chunks = vec![Bytes::from_static(&HEADER)];
    let mut crc = crc32fast::Hasher::new();
    let mut len: u64 = 0;
    for f in fragments {
        for b in f.blocks.iter() {
            chunks.push(b.deflate.clone());
            let n = b.range.len() as u64;
            crc.combine(&crc32fast::Hasher::new_with_initial_len(b.crc, n));
            len += n;
        }
    }
    chunks.push(tail.deflate.clone());
    crc.combine(&crc32fast::Hasher::new_with_initial_len(
        tail.crc,
        tail.range.len() as u64,
    ));
    len += tail.range.len() as u64;
    let mut trailer = Vec::with_capacity(10);
    trailer.extend_from_slice(&FINAL);
    trailer.extend_from_slice(&crc.finalize().to_le_bytes());
    // ISIZE: the length modulo 2^32.
    trailer.extend_from_slice(&((len & 0xffff_ffff) as u32).to_le_bytes());
    chunks.push(Bytes::from(trailer));
    Bytes::from(chunks.concat())
}

/// The text formats `/metrics` can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Classic,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::Classic => CLASSIC_CONTENT_TYPE,
        }
    }
}

const EOF: &[u8] = b"# EOF\n";

/// A complete exposition; see the module documentation for what is computed when.
#[derive(Debug)]
pub struct Exposition {
    /// The fragments' parts in order, ending with `# EOF`.
    openmetrics: Vec<Bytes>,
    /// One gzip member (see the module documentation).
    openmetrics_gzip: Bytes,
    classic: OnceLock<Vec<Bytes>>,
    classic_gzip: OnceLock<Bytes>,
}

impl Default for Exposition {
    fn default() -> Self {
        Self::build(std::iter::empty())
    }
}

impl Exposition {
    /// Joins the fragments in order (sharing their bytes) and gzips the OpenMetrics body.
    pub fn build<'a>(fragments: impl IntoIterator<Item = &'a Fragment>) -> Self {
        let fragments: Vec<Fragment> = fragments
            .into_iter()
            .filter(|f| !f.is_empty())
            .cloned()
            .collect();
        let mut openmetrics: Vec<Bytes> = fragments.iter().flat_map(Fragment::chunks).collect();
        openmetrics.push(Bytes::from_static(EOF));
        // `# EOF`, compressed once.
        static EOF_BLOCK: OnceLock<Block> = OnceLock::new();
        let eof = EOF_BLOCK.get_or_init(|| Block {
            buffer: 0,
            range: 0..EOF.len(),
            deflate: deflate_block(&mut None, EOF),
            crc: crc32fast::hash(EOF),
        });
        let openmetrics_gzip = gzip_blocks(&fragments, eof);
        Self {
            openmetrics,
            openmetrics_gzip,
            classic: OnceLock::new(),
            classic_gzip: OnceLock::new(),
        }
    }

    /// The body for a format, gzipped or not.
    pub fn body(&self, format: Format, gzip: bool) -> Chunks {
        match (format, gzip) {
            (Format::OpenMetrics, false) => Chunks::new(self.openmetrics.clone()),
            (Format::OpenMetrics, true) => Chunks::one(self.openmetrics_gzip.clone()),
            (Format::Classic, false) => Chunks::new(self.classic().to_vec()),
            (Format::Classic, true) => Chunks::one(self.classic_gzip().clone()),
        }
    }

    /// Makes the classic body and its gzip now rather than on the first request for them.
    pub fn prepare_classic(&self) {
        self.classic_gzip();
    }

    /// Whether the classic body is ready (prepared or already asked for).
    #[cfg(test)]
    pub fn classic_prepared(&self) -> bool {
        self.classic_gzip.get().is_some()
    }

    fn classic_gzip(&self) -> &Bytes {
        self.classic_gzip.get_or_init(|| gzip(self.classic()))
    }

    fn classic(&self) -> &[Bytes] {
        self.classic.get_or_init(|| {
            let parts = &self.openmetrics[..self.openmetrics.len() - 1];
            parts.iter().flat_map(classic_of).collect()
        })
    }
}

/// The classic translation of one part of a fragment (parts end at line ends, and never between
/// a family's `# HELP` and `# TYPE`): its sample lines are slices of the part's own bytes, so
/// the classic body costs only its family headers in memory.
fn classic_of(fragment: &Bytes) -> Vec<Bytes> {
    // Fragments are rendered from Strings, so they are UTF-8.
    let text = std::str::from_utf8(fragment).unwrap_or_default();
    classic::segments(text)
        .into_iter()
        .map(|segment| match segment {
            classic::Segment::Copy(range) => fragment.slice(range),
            classic::Segment::New(text) => Bytes::from(text),
        })
        .collect()
}

fn gzip(chunks: &[Bytes]) -> Bytes {
    // Level 1: metric text still compresses about sixfold, and this runs on every refresh.
    let size: usize = chunks.iter().map(Bytes::len).sum();
    let mut encoder = GzEncoder::new(Vec::with_capacity(size / 5), Compression::fast());
    for chunk in chunks {
        encoder
            .write_all(chunk)
            .expect("compressing into a Vec cannot fail");
    }
    let mut out = encoder
        .finish()
        .expect("compressing into a Vec cannot fail");
    // The estimate above is several times the usual result; `Bytes` would keep it all.
    out.shrink_to_fit();
    Bytes::from(out)
}

/// A response body made of ready chunks: sent as they are, with an exact `Content-Length`.
#[derive(Debug, Default)]
pub struct Chunks {
    chunks: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl Chunks {
    pub fn new(chunks: Vec<Bytes>) -> Self {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Self {
            chunks: chunks.into(),
            remaining,
        }
    }

    pub fn one(chunk: Bytes) -> Self {
        Self::new(vec![chunk])
    }

    /// Collects the whole body (for tests and small bodies).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(usize::try_from(self.remaining).unwrap_or(0));
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        Bytes::from(out)
    }
}

impl From<String> for Chunks {
    fn from(text: String) -> Self {
        Self::one(Bytes::from(text))
    }
}

impl From<&'static str> for Chunks {
    fn from(text: &'static str) -> Self {
        Self::one(Bytes::from_static(text.as_bytes()))
    }
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use http_body::Body;
    use std::io::Read;

    #[test]
    fn joins_fragments_and_gzip_round_trips() {
        let a = Fragment::from_openmetrics("# HELP a A\n# TYPE a counter\na_total 1\n".into());
        let empty = Fragment::default();
        let b = Fragment::from_openmetrics("# HELP b B\n# TYPE b gauge\nb 2\n".into());
        let e = Exposition::build([&a, &empty, &b]);
        let om = e.body(Format::OpenMetrics, false);
        assert_eq!(om.size_hint().exact(), Some(om.to_bytes().len() as u64));
        let om = om.to_bytes();
        assert_eq!(
            &om[..],
            b"# HELP a A\n# TYPE a counter\na_total 1\n# HELP b B\n# TYPE b gauge\nb 2\n# EOF\n"
        );
        let a_bytes = a.buffers[0].as_ptr_range();
        assert!(
            a_bytes.start == e.openmetrics[0].as_ptr(),
            "fragments are shared, not copied"
        );
        assert!(
            e.classic().iter().any(|c| a_bytes.contains(&c.as_ptr())),
            "classic samples share the OpenMetrics bytes"
        );
        let classic = e.body(Format::Classic, false).to_bytes();
        assert_eq!(
            &classic[..],
            b"# HELP a_total A\n# TYPE a_total counter\na_total 1\n# HELP b B\n# TYPE b gauge\nb 2\n"
        );
        for (format, plain) in [(Format::OpenMetrics, om), (Format::Classic, classic)] {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&e.body(format, true).to_bytes()[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, plain);
        }
    }

    /// A fragment of `families` gauge families of `series` series each; family `bump` (if
    /// any) carries other values.
    fn families(families: usize, series: usize, bump: Option<usize>) -> String {
        let mut text = String::new();
        for f in 0..families {
            text.push_str(&format!("# HELP f{f} Family {f}\n# TYPE f{f} gauge\n"));
            for i in 0..series {
                let v = if bump == Some(f) { i * 7 + 1 } else { i };
                text.push_str(&format!(
                    "f{f}{{project_id=\"p{i:05}\",domain=\"d\"}} {v}\n"
                ));
            }
        }
        text
    }

    fn gunzip_one_member(body: &[u8]) -> Vec<u8> {
        // `GzDecoder` reads one gzip member only: a body that were several members would come
        // out short here.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn gzip_of_many_blocks_is_one_member_that_gunzip_reads() {
        // (families, series per family): one block, several blocks, a family larger than a
        // block, an empty fragment beside others.
        for (n, series) in [(1, 10), (12, 1500), (3, 9000), (40, 3)] {
            let a = Fragment::from_openmetrics(families(n, series, None));
            let own = Fragment::from_openmetrics("# HELP up Up\n# TYPE up gauge\nup 1\n".into());
            let e = Exposition::build([&a, &Fragment::default(), &own]);
            let plain = e.body(Format::OpenMetrics, false).to_bytes();
            let gz = e.body(Format::OpenMetrics, true).to_bytes();
            assert_eq!(gunzip_one_member(&gz), plain, "{n} x {series}");
            // The system's gzip (a decoder that is not ours) agrees, and finds a valid trailer.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("body.gz");
            std::fs::write(&path, &gz).unwrap();
            let out = std::process::Command::new("gzip")
                .arg("-dc")
                .arg(&path)
                .output()
                .expect("gzip is installed");
            assert!(
                out.status.success(),
                "gzip -dc: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, plain, "{n} x {series}");
            if n * series > 10_000 {
                assert!(a.blocks.len() > 1, "{n} x {series}: cut into blocks");
            }
        }
    }

    #[test]
    fn unchanged_families_keep_their_compressed_bytes() {
        let first = Fragment::from_openmetrics(families(12, 1500, None));
        let second =
            Fragment::from_openmetrics_after(families(12, 1500, Some(5)), &[], Some(&first));
        assert!(first.blocks.len() > 3);
        assert_eq!(first.blocks.len(), second.blocks.len());
        let mut kept = 0;
        for (a, b) in first.blocks.iter().zip(second.blocks.iter()) {
            let same_text = first.buffers[a.buffer][a.range.clone()]
                == second.buffers[b.buffer][b.range.clone()];
            let shared = a.deflate.as_ptr() == b.deflate.as_ptr();
            assert_eq!(same_text, shared, "block {:?}", b.range);
            kept += usize::from(shared);
        }
        assert_eq!(
            kept,
            first.blocks.len() - 1,
            "only the block of family 5 is new"
        );
        let e = Exposition::build([&second]);
        assert_eq!(
            gunzip_one_member(&e.body(Format::OpenMetrics, true).to_bytes()),
            e.body(Format::OpenMetrics, false).to_bytes()
        );
    }

    #[test]
    fn a_family_cut_where_the_render_says_recompresses_only_the_changed_piece() {
        let text = families(1, 20_000, None);
        // Every 2,000th series line (~76 KB apart), as the render's pieces start.
        let lines: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
        let cuts: Vec<usize> = lines.iter().copied().skip(1).step_by(2000).collect();
        let first = Fragment::from_openmetrics_after(text.clone(), &cuts, None);
        assert!(first.blocks.len() >= 9, "{}", first.blocks.len());
        for b in first.blocks.iter() {
            assert!(b.range.start == 0 || cuts.contains(&b.range.start), "{b:?}");
        }
        // One value changes, the text keeps its length.
        let changed = text.replacen(
            "\"p10000\",domain=\"d\"} 10000",
            "\"p10000\",domain=\"d\"} 99999",
            1,
        );
        assert_ne!(changed, text);
        let second = Fragment::from_openmetrics_after(changed, &cuts, Some(&first));
        let new = second
            .blocks
            .iter()
            .filter(|b| {
                !first
                    .blocks
                    .iter()
                    .any(|a| a.deflate.as_ptr() == b.deflate.as_ptr())
            })
            .count();
        assert_eq!(
            new, 1,
            "only the piece holding the changed line is compressed again"
        );
        let e = Exposition::build([&second]);
        assert_eq!(
            gunzip_one_member(&e.body(Format::OpenMetrics, true).to_bytes()),
            e.body(Format::OpenMetrics, false).to_bytes()
        );
    }

    /// Ten pieces of 40 bytes, `# HELP` lines so that each is a block of its own.
    fn piece(i: usize, version: u32) -> String {
        let line = format!("# HELP p{i} v{version}\n");
        format!("{line:\u{2e}<39}\n").replacen(".\n", "\n", 1)
    }

    #[test]
    fn kept_pieces_share_the_previous_buffers_when_half_of_a_buffer_is_kept() {
        // (what, pieces kept, pieces expected to be shared rather than copied)
        let cases: [(&str, &[usize], &[usize]); 5] = [
            (
                "all",
                &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
                &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            ),
            ("none", &[], &[]),
            // Buffers hold pieces 0-2, 3-5, 6-8 and 9: two thirds of the first kept, one
            // third of the second.
            ("two thirds and one third", &[0, 1, 3], &[0, 1]),
            ("the last buffer, alone", &[9], &[9]),
            ("every other piece", &[0, 2, 4, 6, 8], &[0, 2, 6, 8]),
        ];
        let mut first = TextBuilder::after_with_limit(None, 100);
        let mut ranges = Vec::new();
        for i in 0..10 {
            let start = first.len();
            first.text().push_str(&piece(i, 1));
            ranges.push(start..first.len());
            first.boundary();
        }
        let cuts: Vec<usize> = ranges.iter().map(|r| r.start).collect();
        let first = Fragment::from_layout(first.finish(), &cuts, None);
        assert_eq!(first.buffers.len(), 4);
        for (what, kept, shared) in cases {
            let mut next = TextBuilder::after_with_limit(Some(&first), 100);
            next.plan(kept.iter().map(|&i| ranges[i].clone()));
            let mut want = String::new();
            for (i, range) in ranges.iter().enumerate() {
                if kept.contains(&i) {
                    assert!(next.keep(range.clone()), "{what}: {i}");
                    want.push_str(&piece(i, 1));
                } else {
                    next.text().push_str(&piece(i, 2));
                    want.push_str(&piece(i, 2));
                }
                next.boundary();
            }
            let next = Fragment::from_layout(next.finish(), &cuts, Some(&first));
            assert_eq!(next.text(), want, "{what}");
            let old: Vec<_> = first.buffers.iter().map(|b| b.as_ptr_range()).collect();
            let found: Vec<usize> = (0..ranges.len())
                .filter(|&i| {
                    let (buffer, range) = next.locate(ranges[i].clone()).unwrap();
                    let at = next.buffers[buffer][range].as_ptr();
                    old.iter().any(|r| r.contains(&at))
                })
                .collect();
            assert_eq!(found, shared, "{what}: pieces shared");
            // Shared buffers are at least half in use: never more than twice the text held.
            let (_, held) = next.held();
            assert!(
                next.len() <= held && held <= 2 * next.len(),
                "{what}: {held} bytes held for {}",
                next.len()
            );
            // Blocks are at least `MIN_BLOCK` long, so here one per part: kept whole, the
            // compressed bytes are kept too.
            if kept.len() == ranges.len() {
                for b in next.blocks.iter() {
                    let reused = first
                        .blocks
                        .iter()
                        .any(|a| a.deflate.as_ptr() == b.deflate.as_ptr());
                    assert!(reused, "{what}: {:?}", b.range);
                }
            }
            let e = Exposition::build([&next]);
            assert_eq!(
                gunzip_one_member(&e.body(Format::OpenMetrics, true).to_bytes()),
                e.body(Format::OpenMetrics, false).to_bytes()
            );
        }
        // A range the previous fragment does not hold whole is not kept.
        let mut next = TextBuilder::after(Some(&first));
        assert!(
            !next.keep(ranges[2].start..ranges[3].end),
            "across two buffers"
        );
        assert!(!next.keep(400..440), "past the end");
        assert!(next.is_empty());
    }

    #[test]
    fn chunks_body_streams_every_chunk_in_order() {
        use http_body_util::BodyExt;
        let body = Chunks::new(vec![
            Bytes::from("ab"),
            Bytes::from("c"),
            Bytes::from("def"),
        ]);
        assert_eq!(body.size_hint().exact(), Some(6));
        let collected = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(body.collect())
            .unwrap()
            .to_bytes();
        assert_eq!(&collected[..], b"abcdef");
    }
}
