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

use bytes::Bytes;

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

/// Renders whatever a source produced into one OpenMetrics fragment.
pub fn source_data(data: SourceData, options: RenderOptions) -> String {
    source_data_sized(data, options, 0)
}

/// [`source_data`] into a buffer of `capacity` bytes to start with. With the size of the
/// source's previous fragment, a large fragment (16 MB on the original's stress file) is one
/// allocation instead of a doubling series that leaves the allocator holding the smaller ones.
pub fn source_data_sized(data: SourceData, options: RenderOptions, capacity: usize) -> String {
    source_data_after(data, options, None, capacity).0
}

/// What a render leaves for the next render of the same source: digests of the projects
/// families' inputs, the text written and where each family is in it (see `projects`).
#[derive(Debug, Clone, Default)]
pub struct Memo {
    projects: Option<projects::ProjectsMemo>,
    text: Bytes,
}

impl Memo {
    /// Projects units written by the render, and how many were copied from the previous text.
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

    /// The memo with the text it indexes (the fragment made of the render's `String`, shared).
    pub fn with_text(mut self, text: Bytes) -> Self {
        self.text = text;
        self
    }
}

/// [`source_data_sized`], given the previous render's memo: projects families whose inputs
/// did not change are copied from the previous text rather than encoded again.
pub fn source_data_after(
    data: SourceData,
    options: RenderOptions,
    previous: Option<&Memo>,
    capacity: usize,
) -> (String, Memo) {
    let mut out = String::with_capacity(capacity);
    let previous_projects =
        previous.and_then(|memo| memo.projects.as_ref().map(|m| (m, &memo.text[..])));
    let mut memo = Memo::default();
    match data {
        SourceData::Projects(p) => {
            memo.projects = Some(projects::projects_into(
                &mut out,
                Arc::new(p),
                options,
                previous_projects,
            ));
        }
        SourceData::Guests(g) => encode_into(&mut out, guests::collector(Arc::new(g))),
        SourceData::Cloud { projects, guests } => {
            memo.projects = Some(projects::projects_into(
                &mut out,
                Arc::new(projects),
                options,
                previous_projects,
            ));
            encode_into(&mut out, guests::collector(Arc::new(guests)));
        }
        SourceData::Weights(w) => out.push_str(&weights::weights(w)),
    }
    (out, memo)
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
