//! The encoded exposition that `/metrics` serves: built once per refresh, served many times.
//!
//! A [`Fragment`] is one source's families in both text formats; an [`Exposition`] joins the
//! fragments in a fixed order and keeps each format plain and gzipped as `Bytes`, so a scrape
//! is a reference-count increment and a write, whatever the size of the cloud.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::classic;

/// `Content-Type` of the OpenMetrics body.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the classic body.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One source's families in both formats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment {
    pub openmetrics: String,
    pub classic: String,
}

impl Fragment {
    /// Translates an OpenMetrics fragment (no `# EOF`) and keeps both.
    pub fn from_openmetrics(openmetrics: String) -> Self {
        let classic = classic::from_openmetrics(&openmetrics);
        Self {
            openmetrics,
            classic,
        }
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

/// A complete exposition in both formats, each plain and gzipped.
#[derive(Debug, Clone)]
pub struct Exposition {
    openmetrics: Bytes,
    openmetrics_gzip: Bytes,
    classic: Bytes,
    classic_gzip: Bytes,
}

impl Default for Exposition {
    fn default() -> Self {
        Self::build(std::iter::empty())
    }
}

impl Exposition {
    /// Joins the fragments in order and compresses both formats.
    pub fn build<'a>(fragments: impl IntoIterator<Item = &'a Fragment> + Clone) -> Self {
        let size: usize = fragments
            .clone()
            .into_iter()
            .map(|f| f.openmetrics.len())
            .sum();
        let mut openmetrics = String::with_capacity(size + 6);
        let mut classic = String::with_capacity(size);
        for f in fragments {
            openmetrics.push_str(&f.openmetrics);
            classic.push_str(&f.classic);
        }
        openmetrics.push_str("# EOF\n");
        let openmetrics_gzip = gzip(openmetrics.as_bytes());
        let classic_gzip = gzip(classic.as_bytes());
        Self {
            openmetrics: Bytes::from(openmetrics),
            openmetrics_gzip,
            classic: Bytes::from(classic),
            classic_gzip,
        }
    }

    /// The body for a format, gzipped or not.
    pub fn body(&self, format: Format, gzip: bool) -> Bytes {
        match (format, gzip) {
            (Format::OpenMetrics, false) => self.openmetrics.clone(),
            (Format::OpenMetrics, true) => self.openmetrics_gzip.clone(),
            (Format::Classic, false) => self.classic.clone(),
            (Format::Classic, true) => self.classic_gzip.clone(),
        }
    }
}

fn gzip(data: &[u8]) -> Bytes {
    // Level 1: metric text compresses about tenfold even at the fastest level, and this runs on
    // every refresh of every source.
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 8), Compression::fast());
    encoder
        .write_all(data)
        .expect("compressing into a Vec cannot fail");
    Bytes::from(
        encoder
            .finish()
            .expect("compressing into a Vec cannot fail"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn joins_fragments_and_gzip_round_trips() {
        let a = Fragment::from_openmetrics("# HELP a A\n# TYPE a counter\na_total 1\n".into());
        let b = Fragment::from_openmetrics("# HELP b B\n# TYPE b gauge\nb 2\n".into());
        let e = Exposition::build([&a, &b]);
        let om = e.body(Format::OpenMetrics, false);
        assert_eq!(
            &om[..],
            b"# HELP a A\n# TYPE a counter\na_total 1\n# HELP b B\n# TYPE b gauge\nb 2\n# EOF\n"
        );
        let classic = e.body(Format::Classic, false);
        assert_eq!(
            &classic[..],
            b"# HELP a_total A\n# TYPE a_total counter\na_total 1\n# HELP b B\n# TYPE b gauge\nb 2\n"
        );
        for (format, plain) in [(Format::OpenMetrics, om), (Format::Classic, classic)] {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&e.body(format, true)[..])
                .read_to_end(&mut out)
                .expect("valid gzip");
            assert_eq!(out, plain);
        }
    }
}
