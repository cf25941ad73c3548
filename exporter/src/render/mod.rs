//! Snapshot -> OpenMetrics text: the only place that knows metric names, help texts and labels.
//!
//! Each function renders one source's fragment (families only, no `# EOF`), so a source that
//! did not change is not rendered again; `exposition` joins the fragments. Encoding goes through
//! `prometheus-client` with typed label sets. Families are always written whole and in a fixed
//! order, so the output for the same snapshot is byte-for-byte the same.
//!
//! Depends on the domain types only (`snapshot`, `weights`), never on a source:
//! - `projects`: `openstack_project_*`, with `legacy`'s `project_*_usage` families;
//! - `guests`: the `libvirt_*` families;
//! - `weights`: the `site_exporter_usage_weight` family;
//! - `health`: build info and every source's refresh status;
//! - `openstack`: the OpenStack source's requests and accounting start.

mod guests;
mod health;
mod legacy;
mod openstack;
mod projects;
mod weights;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::registry::Registry;

use std::sync::Arc;

use crate::exposition::{Fragment, Layout, TextBuilder};
use crate::snapshot::health::SourceMetrics;
use crate::snapshot::{Project, SourceData};

pub use guests::guests;
pub use health::self_metrics;
pub use projects::projects;
pub use weights::weights;

/// Which optional families the projects fragment carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// `project_vcpu_usage` and `project_mb_usage`, for portals built on the original exporter.
    pub legacy_metrics: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            legacy_metrics: true,
        }
    }
}

/// Renders a source's data (families only, no `# EOF`).
pub fn source_data(data: SourceData, options: RenderOptions) -> String {
    let mut out = TextBuilder::single();
    source_data_into(&mut out, data, options, None);
    out.into_string()
}

/// What a render leaves for the next render of the same source: digests of the projects
/// families' inputs and where each piece is in the fragment made of the render's text.
#[derive(Debug, Clone, Default)]
pub struct Memo {
    projects: Option<projects::ProjectsMemo>,
    fragment: Option<Fragment>,
}

impl Memo {
    /// Projects units written by the render, and how many were kept from the previous text.
    pub fn projects_units(&self) -> Option<(usize, usize)> {
        self.projects.as_ref().map(projects::ProjectsMemo::units)
    }

    /// Where the render's pieces start in its text, ascending: where a gzip block may start
    /// so that an unchanged piece keeps its compressed bytes.
    pub fn cuts(&self) -> Vec<usize> {
        self.projects
            .as_ref()
            .map(|p| p.cuts().collect())
            .unwrap_or_default()
    }

    /// The memo with the fragment made of the render's text, which it indexes.
    pub fn with_fragment(mut self, fragment: Fragment) -> Self {
        self.fragment = Some(fragment);
        self
    }
}

/// [`source_data`], given the previous render's memo: projects pieces whose inputs did not
/// change keep the previous fragment's text (sharing its buffers) rather than being encoded
/// again. The text comes back as a [`Layout`] for [`Fragment::from_layout`].
pub fn source_data_after(
    data: SourceData,
    options: RenderOptions,
    previous: Option<&Memo>,
) -> (Layout, Memo) {
    let mut out = TextBuilder::after(previous.and_then(|m| m.fragment.as_ref()));
    let memo = source_data_into(&mut out, data, options, previous);
    (out.finish(), memo)
}

fn source_data_into(
    out: &mut TextBuilder,
    data: SourceData,
    options: RenderOptions,
    previous: Option<&Memo>,
) -> Memo {
    let previous_projects = previous.and_then(|memo| memo.projects.as_ref());
    let mut memo = Memo::default();
    match data {
        SourceData::Projects(p) => {
            memo.projects = Some(projects::projects_into(
                out,
                Arc::new(p),
                options,
                previous_projects,
            ));
        }
        SourceData::Guests(g) => encode_into(out.text(), guests::collector(Arc::new(g))),
        SourceData::Cloud { projects, guests } => {
            memo.projects = Some(projects::projects_into(
                out,
                Arc::new(projects),
                options,
                previous_projects,
            ));
            encode_into(out.text(), guests::collector(Arc::new(guests)));
        }
        SourceData::Weights(w) => out.text().push_str(&weights::weights(w)),
    }
    memo
}

/// Renders a source's own metrics.
pub fn source_metrics(metrics: &SourceMetrics) -> String {
    match metrics {
        SourceMetrics::Openstack {
            requests,
            start,
            window_end,
        } => openstack::self_metrics(requests.clone(), *start, *window_end),
    }
}

/// Encodes one collector into an OpenMetrics fragment without the `# EOF` marker.
fn encode(collector: impl Collector) -> String {
    let mut out = String::new();
    encode_into(&mut out, collector);
    out
}

/// Appends one collector's OpenMetrics families to `out`, without the `# EOF` marker.
fn encode_into(out: &mut String, collector: impl Collector) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    prometheus_client::encoding::text::encode_registry(out, &registry)
        .expect("encoding into a String cannot fail");
}

/// Two label sets written as one, without cloning either.
#[derive(Debug)]
struct Join<'a, A, B>(pub &'a A, pub &'a B);

impl<A: EncodeLabelSet, B: EncodeLabelSet> EncodeLabelSet for Join<'_, A, B> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)?;
        self.1.encode(encoder)
    }
}

/// The labels every project series carries, borrowed from the snapshot (a render writes
/// them for every series of every project; nothing is copied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ProjectLabels<'a> {
    project_id: &'a str,
    project_name: &'a str,
    domain_id: &'a str,
    domain_name: &'a str,
}

impl EncodeLabelSet for ProjectLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [
            ("project_id", self.project_id),
            ("project_name", self.project_name),
            ("domain_id", self.domain_id),
            ("domain_name", self.domain_name),
        ]
        .encode(encoder)
    }
}

impl ProjectLabels<'_> {
    /// The labels as a series carries them (`project_id="…",…`, values escaped as
    /// prometheus-client escapes them), to be written by [`Written`] in every series of a
    /// project instead of encoded again for each.
    fn text(&self) -> String {
        let mut out = String::with_capacity(
            64 + self.project_id.len()
                + self.project_name.len()
                + self.domain_id.len()
                + self.domain_name.len(),
        );
        for (i, (key, value)) in [
            ("project_id", self.project_id),
            ("project_name", self.project_name),
            ("domain_id", self.domain_id),
            ("domain_name", self.domain_name),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            if value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
                for c in value.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\n' => out.push_str("\\n"),
                        c => out.push(c),
                    }
                }
            } else {
                out.push_str(value);
            }
            out.push('"');
        }
        out
    }
}

/// A label set already written out by [`ProjectLabels::text`], copied into the series as it
/// is.
#[derive(Debug, Clone, Copy)]
struct Written<'a>(&'a str);

impl EncodeLabelSet for Written<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        // One label whose key writer (which writes without escaping) takes the whole text;
        // a label set joined after it is separated by a comma as after any label.
        let mut label = encoder.encode_label();
        std::fmt::Write::write_str(&mut label.encode_label_key()?, self.0)
    }
}

impl<'a> From<&'a Project> for ProjectLabels<'a> {
    fn from(p: &'a Project) -> Self {
        Self {
            project_id: &p.id,
            project_name: &p.name,
            domain_id: &p.domain_id,
            domain_name: &p.domain_name,
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::metrics::MetricType;

    use super::*;

    /// One series of a project, its labels encoded by prometheus-client or copied as text.
    #[derive(Debug)]
    struct Series {
        project: Project,
        written: bool,
    }

    impl Collector for Series {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor("x", "help", None, MetricType::Gauge)?;
            let labels = ProjectLabels::from(&self.project);
            let text = labels.text();
            let status = [("status", "active")];
            let gauge = ConstGauge::new(1);
            if self.written {
                gauge.encode(family.encode_family(&Written(&text))?)?;
                gauge.encode(family.encode_family(&Join(&Written(&text), &status))?)
            } else {
                gauge.encode(family.encode_family(&labels)?)?;
                gauge.encode(family.encode_family(&Join(&labels, &status))?)
            }
        }
    }

    #[test]
    fn labels_written_as_text_equal_labels_encoded_by_prometheus_client() {
        let names = [
            "plain",
            "",
            "quote \" inside",
            "back\\slash",
            "new\nline",
            "\\\"\n all three at the end \\",
            "unicode ünïcødé ✓",
        ];
        for name in names {
            let project = Project {
                id: "0123abcd".into(),
                name: name.into(),
                domain_id: "default".into(),
                domain_name: format!("domain {name}"),
                enabled: true,
            };
            let written = encode(Series {
                project: project.clone(),
                written: true,
            });
            let encoded = encode(Series {
                project,
                written: false,
            });
            assert_eq!(written, encoded, "{name:?}");
            assert!(encoded.contains("x{project_id=\"0123abcd\",project_name=\""));
        }
    }
}
