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

use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use http_body::{Frame, SizeHint};

use crate::classic;

/// `Content-Type` of the OpenMetrics body.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the classic body.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One source's families as OpenMetrics text, without `# EOF`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment(Bytes);

impl Fragment {
    pub fn from_openmetrics(mut openmetrics: String) -> Self {
        // A rendered String grew by doubling; `Bytes` would keep its unused capacity until
        // the next refresh.
        openmetrics.shrink_to_fit();
        Self(Bytes::from(openmetrics))
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
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
        let mut openmetrics: Vec<Bytes> = fragments
            .into_iter()
            .map(|f| f.0.clone())
            .filter(|b| !b.is_empty())
            .collect();
        openmetrics.push(Bytes::from_static(EOF));
        let openmetrics_gzip = gzip(&openmetrics);
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
