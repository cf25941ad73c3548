//! The encoded exposition that `/metrics` serves: built once per refresh, served many times.
//!
//! A [`Fragment`] is one source's families as OpenMetrics text. An [`Exposition`] is the
//! sources' fragments in a fixed order plus the self-metrics and `# EOF`, kept as the very
//! `Bytes` the hub holds (no copy), and gzipped once. Prometheus asks for gzipped OpenMetrics,
//! so that body is ready before the exposition is published; the classic translation and its
//! gzip are made on the first request that wants them and kept until the next refresh, or
//! before publishing once a client has asked for them (see `Hub::exposition_for`). The
//! classic body shares the OpenMetrics bytes of its samples (only family headers differ), so it
//! adds kilobytes, not a second copy of the exposition.
//!
//! The OpenMetrics gzip is assembled from blocks: each fragment is cut at family boundaries
//! (and where the render says a family's piece starts) into blocks of at least [`MIN_BLOCK`]
//! bytes, each compressed on its own as raw deflate ending
//! in a sync flush (byte-aligned, not final). Concatenated behind one gzip header, followed by an
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

/// One source's families as OpenMetrics text, without `# EOF`, and its compressed blocks.
#[derive(Debug, Clone, Default)]
pub struct Fragment {
    text: Bytes,
    blocks: Arc<[Block]>,
}

/// Whole families of a fragment (`range` of its text) as raw deflate ending in a sync flush.
#[derive(Debug, Clone)]
struct Block {
    range: Range<usize>,
    deflate: Bytes,
    crc: u32,
}

/// Equal when the text is: the blocks follow from it.
impl PartialEq for Fragment {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Fragment {}

impl Fragment {
    pub fn from_openmetrics(openmetrics: String) -> Self {
        Self::from_openmetrics_after(openmetrics, &[], None)
    }

    /// The fragment of `openmetrics`, reusing the compressed blocks of `previous` (the same
    /// source's last fragment) whose text did not change. Blocks start at family boundaries
    /// and at `cuts` (offsets at line starts, ascending: where the render's pieces start).
    pub fn from_openmetrics_after(
        mut openmetrics: String,
        cuts: &[usize],
        previous: Option<&Fragment>,
    ) -> Self {
        // A rendered String grew by doubling; `Bytes` would keep its unused capacity until
        // the next refresh.
        openmetrics.shrink_to_fit();
        let ranges = block_ranges(&openmetrics, cuts);
        let text = Bytes::from(openmetrics);
        // One compressor for the blocks that changed (its state is large), reset between them.
        let mut compress: Option<Compress> = None;
        let blocks = ranges
            .into_iter()
            .map(|range| {
                let block = &text[range.clone()];
                let same = previous.and_then(|p| {
                    p.blocks
                        .iter()
                        .find(|b| b.range.len() == block.len() && &p.text[b.range.clone()] == block)
                });
                match same {
                    Some(b) => Block {
                        range,
                        deflate: b.deflate.clone(),
                        crc: b.crc,
                    },
                    None => Block {
                        deflate: deflate_block(&mut compress, block),
                        crc: crc32fast::hash(block),
                        range,
                    },
                }
            })
            .collect();
        Self { text, blocks }
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.text
    }
}

/// Where the fragment is cut: at lines starting a family (`# HELP`) or at one of `cuts`,
/// once a block holds [`MIN_BLOCK`] bytes.
fn block_ranges(text: &str, cuts: &[usize]) -> Vec<Range<usize>> {
    let families = memchr::memmem::find_iter(text.as_bytes(), b"\n# HELP ").map(|found| found + 1);
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
    /// OpenMetrics fragments, ending with `# EOF`.
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
            .filter(|f| !f.text.is_empty())
            .cloned()
            .collect();
        let mut openmetrics: Vec<Bytes> = fragments.iter().map(|f| f.text.clone()).collect();
        openmetrics.push(Bytes::from_static(EOF));
        // `# EOF`, compressed once.
        static EOF_BLOCK: OnceLock<Block> = OnceLock::new();
        let eof = EOF_BLOCK.get_or_init(|| Block {
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
            let fragments = &self.openmetrics[..self.openmetrics.len() - 1];
            fragments.iter().flat_map(classic_of).collect()
        })
    }
}

/// The classic translation of one fragment: its sample lines are slices of the fragment's
/// own bytes, so the classic body costs only its family headers in memory.
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
        assert!(
            a.as_bytes().as_ptr() == e.openmetrics[0].as_ptr(),
            "fragments are shared, not copied"
        );
        let a_bytes = a.as_bytes().as_ptr_range();
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
            let same_text = first.text[a.range.clone()] == second.text[b.range.clone()];
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
