//! The `openstack_project_*` families: usage since the accounting start, allocation now,
//! statuses, long-stopped servers, quotas and names; the legacy families follow when enabled.
//!
//! Each family is written in [`Piece`]s of [`PIECE`] projects (legacy series for the legacy
//! families). A render may be given the previous render's [`ProjectsMemo`] and fragment: a
//! piece whose inputs are the same in both snapshots (same projects and labels, values equal
//! bit for bit, as told by a SHA-256 of them) keeps the previous fragment's text instead of
//! being encoded again: its buffer is shared, not copied (see `exposition::TextBuilder`).
//! Between two OpenStack refreshes the usage counters move, and a few servers that changed
//! touch one piece of the allocation, statuses or stopped families; names and quotas mostly do
//! not move. Each piece starts a gzip block of its own ([`ProjectsMemo::cuts`]), so what was
//! kept also keeps its compressed bytes.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit as MetricUnit;

use super::{encode_into, Join, ProjectLabels, RenderOptions, Written};
use crate::exposition::TextBuilder;
use crate::snapshot::{Held, ProjectUsage, ProjectsSnapshot, Quota};

/// Projects (or legacy series) per piece of a family: ~100 KB of text for the simple
/// families, above the gzip block size, so that each piece is a block of its own.
const PIECE: usize = 512;

/// Renders the `openstack_project_*` families (and the legacy ones when enabled).
pub fn projects(snapshot: Arc<ProjectsSnapshot>, options: RenderOptions) -> String {
    let mut out = TextBuilder::single();
    projects_into(&mut out, snapshot, options, None);
    out.into_string()
}

/// What a render of the projects families leaves for the next one: a digest of each piece's
/// inputs, and where the piece's text is in the fragment it was written into.
#[derive(Debug, Clone)]
pub struct ProjectsMemo {
    options: RenderOptions,
    pieces: Vec<(Piece, Digest, Range<usize>)>,
    /// How many pieces this render kept from the previous text.
    reused: usize,
}

impl ProjectsMemo {
    /// Pieces written, and how many of them were kept from the previous text.
    pub fn units(&self) -> (usize, usize) {
        (self.pieces.len(), self.reused)
    }

    /// Where each piece starts in the fragment: where a gzip block may start.
    pub fn cuts(&self) -> impl Iterator<Item = usize> + '_ {
        self.pieces.iter().map(|(_, _, range)| range.start)
    }
}

/// Appends the projects families to `out`. With `previous` (the last render's memo, indexing
/// the fragment `out` was made after), pieces whose inputs did not change keep that
/// fragment's text instead of being encoded again.
pub(super) fn projects_into(
    out: &mut TextBuilder,
    snapshot: Arc<ProjectsSnapshot>,
    options: RenderOptions,
    previous: Option<&ProjectsMemo>,
) -> ProjectsMemo {
    let previous = previous.filter(|memo| memo.options == options);
    let old: HashMap<Piece, (&Digest, &Range<usize>)> = previous
        .map(|memo| memo.pieces.iter().map(|(p, d, r)| (*p, (d, r))).collect())
        .unwrap_or_default();
    // Each project's labels digested once, for the pieces of every family.
    let labels: Vec<Digest> = snapshot.projects.iter().map(project_digest).collect();
    let pieces: Vec<(Piece, Digest, Option<Range<usize>>)> = Piece::all(&snapshot, options)
        .into_iter()
        .map(|piece| {
            let digest = piece.digest(&snapshot, &labels);
            let kept = old
                .get(&piece)
                .filter(|(old_digest, _)| **old_digest == digest)
                .map(|(_, range)| (*range).clone());
            (piece, digest, kept)
        })
        .collect();
    out.plan(pieces.iter().filter_map(|(_, _, kept)| kept.clone()));
    // Written at the first piece that is encoded.
    let mut texts: Option<Arc<LabelTexts>> = None;
    let mut written = Vec::with_capacity(pieces.len());
    let mut reused = 0;
    for (piece, digest, kept) in pieces {
        let start = out.len();
        if kept.is_some_and(|range| out.keep(range)) {
            reused += 1;
        } else {
            let texts = texts.get_or_insert_with(|| Arc::new(LabelTexts::of(&snapshot)));
            let text = out.text();
            let local = text.len();
            encode_into(
                text,
                UnitCollector {
                    piece,
                    snapshot: Arc::clone(&snapshot),
                    labels: Arc::clone(texts),
                },
            );
            if piece.part > 0 {
                // The family's descriptor is written once, by its first piece.
                let descriptor = descriptor_len(&text[local..]);
                text.drain(local..local + descriptor);
            }
        }
        written.push((piece, digest, start..out.len()));
        out.boundary();
    }
    ProjectsMemo {
        options,
        pieces: written,
        reused,
    }
}

/// Length of the `# HELP`, `# TYPE` and `# UNIT` lines that start `text`.
fn descriptor_len(text: &str) -> usize {
    let mut len = 0;
    while text[len..].starts_with("# ") {
        match text[len..].find('\n') {
            Some(end) => len += end + 1,
            None => return text.len(),
        }
    }
    len
}

/// SHA-256 of what a piece is written from. Equal digests stand for equal inputs (a SHA-256
/// collision is not a practical concern), so the memo keeps 32 bytes per piece rather than
/// the previous snapshot (10 MB for 10,000 projects).
type Digest = [u8; 32];

/// Feeds values to a digest unambiguously: strings with their length, numbers as their bits.
struct Feed {
    context: ring::digest::Context,
    buffer: Vec<u8>,
}

impl Feed {
    fn new() -> Self {
        Self {
            context: ring::digest::Context::new(&ring::digest::SHA256),
            buffer: Vec::with_capacity(FEED_BUFFER),
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buffer.extend_from_slice(b);
        if self.buffer.len() >= FEED_BUFFER {
            self.context.update(&self.buffer);
            self.buffer.clear();
        }
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Bit for bit: `-0.0` and `0.0` are written differently, and NaN is NaN.
    fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
    }

    fn project(&mut self, p: &crate::snapshot::Project) {
        for s in [&p.id, &p.name, &p.domain_id, &p.domain_name] {
            self.str(s);
        }
        self.u64(u64::from(p.enabled));
    }

    fn finish(mut self) -> Digest {
        self.context.update(&self.buffer);
        let mut out = [0; 32];
        out.copy_from_slice(self.context.finish().as_ref());
        out
    }
}

/// Bytes gathered before they are handed to the digest (many values are 8 bytes).
const FEED_BUFFER: usize = 16 * 1024;

/// The digest of a project's labels (what [`Feed::project`] feeds).
fn project_digest(p: &ProjectUsage) -> Digest {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let p = &p.project;
    for s in [&p.id, &p.name, &p.domain_id, &p.domain_name] {
        context.update(&(s.len() as u64).to_le_bytes());
        context.update(s.as_bytes());
    }
    context.update(&u64::from(p.enabled).to_le_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// A family, in fragment order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Family {
    /// `COUNTERS[i]`.
    Counter(usize),
    Instances,
    /// `STOPPED[i]`.
    Stopped(usize),
    /// `GAUGES[i]`.
    Gauge(usize),
    /// `QUOTAS[i]`, written only by a source that reads quotas.
    Quota(usize),
    Info,
    /// `super::legacy::FAMILIES[i]`, over the legacy series rather than the projects.
    Legacy(usize),
}

/// Part `part` of a family: its projects (or legacy series) `[part * PIECE, (part + 1) *
/// PIECE)`; part 0 also writes the family's descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Piece {
    family: Family,
    part: usize,
}

impl Piece {
    /// The pieces of `snapshot`'s fragment, in order.
    fn all(snapshot: &ProjectsSnapshot, options: RenderOptions) -> Vec<Piece> {
        let mut families: Vec<Family> = (0..COUNTERS.len()).map(Family::Counter).collect();
        families.push(Family::Instances);
        families.extend((0..STOPPED.len()).map(Family::Stopped));
        families.extend((0..GAUGES.len()).map(Family::Gauge));
        // Only a source that reads quotas writes these.
        if snapshot.projects.iter().any(|p| p.quota.is_some()) {
            families.extend((0..QUOTAS.len()).map(Family::Quota));
        }
        families.push(Family::Info);
        // Withheld while there is no series (weights not loaded yet).
        if options.legacy_metrics && !snapshot.legacy.is_empty() {
            families.extend((0..super::legacy::FAMILIES.len()).map(Family::Legacy));
        }
        let parts = |n: usize| n.div_ceil(PIECE).max(1);
        families
            .into_iter()
            .flat_map(|family| {
                let n = match family {
                    Family::Legacy(_) => snapshot.legacy.len(),
                    _ => snapshot.projects.len(),
                };
                (0..parts(n)).map(move |part| Piece { family, part })
            })
            .collect()
    }

    /// The piece's share of `items`.
    fn of<T>(self, items: &[T]) -> &[T] {
        let start = (self.part * PIECE).min(items.len());
        &items[start..(start + PIECE).min(items.len())]
    }

    /// The digest of what the piece is written from; `labels` are the projects' digests
    /// ([`project_digest`]).
    fn digest(self, snapshot: &ProjectsSnapshot, labels: &[Digest]) -> Digest {
        let mut feed = Feed::new();
        if let Family::Legacy(i) = self.family {
            let series = self.of(&snapshot.legacy);
            feed.u64(series.len() as u64);
            for s in series {
                feed.project(&s.project);
                feed.f64(super::legacy::FAMILIES[i].2(&s.usage));
            }
            return feed.finish();
        }
        let projects = self.of(&snapshot.projects);
        feed.u64(projects.len() as u64);
        for (p, label) in projects.iter().zip(self.of(labels)) {
            feed.bytes(label);
            match self.family {
                Family::Counter(i) => feed.f64(COUNTERS[i].3(p)),
                Family::Gauge(i) => feed.f64(GAUGES[i].3(p)),
                Family::Instances => {
                    feed.u64(p.instances.len() as u64);
                    for (status, n) in &p.instances {
                        feed.str(status);
                        feed.u64(*n);
                    }
                }
                Family::Stopped(i) => {
                    feed.u64(p.stopped.len() as u64);
                    for (bucket, held) in &p.stopped {
                        feed.str(&bucket.status);
                        feed.u64(bucket.older_than.as_secs());
                        feed.u64(u64::from(bucket.older_than.subsec_nanos()));
                        feed.u64(STOPPED[i].3(held));
                    }
                }
                Family::Quota(i) => {
                    let limit = p.quota.as_ref().and_then(QUOTAS[i].3);
                    feed.u64(u64::from(limit.is_some()));
                    feed.u64(limit.unwrap_or_default());
                }
                // The labels alone.
                Family::Info => {}
                Family::Legacy(_) => {}
            }
        }
        feed.finish()
    }
}

/// One piece of a snapshot as a collector.
#[derive(Debug)]
struct UnitCollector {
    piece: Piece,
    snapshot: Arc<ProjectsSnapshot>,
    labels: Arc<LabelTexts>,
}

/// Each project's and each legacy series' labels as a series carries them
/// ([`ProjectLabels::text`]): written once per render, copied into the series of every family.
/// A legacy series of a project (all but the SimpleVM split) shares the project's text.
#[derive(Debug)]
struct LabelTexts {
    /// The projects' texts, in the snapshot's order, then those of legacy series that have
    /// their own.
    texts: Vec<String>,
    /// How many of `texts` are the projects'.
    projects: usize,
    /// Index in `texts` of each legacy series' labels.
    legacy: Vec<usize>,
}

impl LabelTexts {
    fn of(snapshot: &ProjectsSnapshot) -> Self {
        let text = |p: &crate::snapshot::Project| ProjectLabels::from(p).text();
        let mut texts: Vec<String> = snapshot.projects.iter().map(|p| text(&p.project)).collect();
        let projects = texts.len();
        // Series come in the projects' order: the project a series shares is found walking
        // forward.
        let mut next = 0;
        let mut legacy = Vec::with_capacity(snapshot.legacy.len());
        for s in &snapshot.legacy {
            let shared = snapshot.projects[next..]
                .iter()
                .take(3)
                .position(|p| Arc::ptr_eq(&p.project, &s.project));
            match shared {
                Some(k) => {
                    next += k;
                    legacy.push(next);
                }
                None => {
                    texts.push(text(&s.project));
                    legacy.push(texts.len() - 1);
                }
            }
        }
        Self {
            texts,
            projects,
            legacy,
        }
    }

    /// The labels of the piece's projects.
    fn projects(&self, piece: Piece) -> Vec<Written<'_>> {
        piece
            .of(&self.texts[..self.projects])
            .iter()
            .map(|t| Written(t))
            .collect()
    }

    /// The labels of the piece's legacy series.
    fn legacy(&self, piece: Piece) -> Vec<Written<'_>> {
        piece
            .of(&self.legacy)
            .iter()
            .map(|&i| Written(&self.texts[i]))
            .collect()
    }
}

/// The `older_than` label of a bucket bound: whole days as `7d`, else hours, minutes, seconds.
pub(crate) fn age_label(age: std::time::Duration) -> String {
    let s = age.as_secs();
    match s {
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3600 == 0 => format!("{}h", s / 3600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// A family: name, help, unit, and how to read its value from a `T`.
type FamilyOf<T, V> = (
    &'static str,
    &'static str,
    Option<fn() -> MetricUnit>,
    fn(&T) -> V,
);

/// A stopped-servers family, read from a bucket.
type StoppedFamily = FamilyOf<Held, u64>;

/// Servers stopped or broken for longer than a bucket's bound.
const STOPPED: [StoppedFamily; 3] = [
    (
        "openstack_project_stopped_instances",
        "Servers of the project in a stopped or broken status (shutoff, shelved, shelved_offloaded, error) for longer than older_than (cumulative buckets)",
        None,
        |h| h.instances,
    ),
    (
        "openstack_project_stopped_vcpus",
        "vCPUs of the flavors of the project's servers stopped or broken for longer than older_than",
        None,
        |h| h.vcpus,
    ),
    (
        "openstack_project_stopped_memory",
        "Memory of the flavors of the project's servers stopped or broken for longer than older_than",
        Some(|| MetricUnit::Bytes),
        |h| h.memory_bytes,
    ),
];

/// A stopped-servers family: only non-empty buckets have series.
fn encode_stopped(
    encoder: &mut DescriptorEncoder,
    (name, help, unit, value): &StoppedFamily,
    projects: &[ProjectUsage],
    labels: &[Written],
) -> Result<(), std::fmt::Error> {
    // The few bucket bounds, written once per piece rather than once per series.
    let mut ages: BTreeMap<Duration, String> = BTreeMap::new();
    for p in projects {
        for bucket in p.stopped.keys() {
            ages.entry(bucket.older_than)
                .or_insert_with(|| age_label(bucket.older_than));
        }
    }
    let unit = unit.map(|u| u());
    let mut family = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
    for (p, l) in projects.iter().zip(labels) {
        for (bucket, held) in &p.stopped {
            let older_than = ages.get(&bucket.older_than).map_or("", String::as_str);
            let bucket = [
                ("status", bucket.status.as_str()),
                ("older_than", older_than),
            ];
            ConstGauge::new(value(held) as f64).encode(family.encode_family(&Join(l, &bucket))?)?;
        }
    }
    Ok(())
}

/// A family read from a project.
type ProjectFamily = FamilyOf<ProjectUsage, f64>;

/// Usage since the accounting start (counters).
const COUNTERS: [ProjectFamily; 4] = [
    (
        "openstack_project_vcpu",
        "vCPU time held by the project's servers since the accounting start (vCPUs times seconds)",
        Some(|| MetricUnit::Seconds),
        |p| p.totals.vcpu_seconds,
    ),
    (
        "openstack_project_memory",
        "Memory held by the project's servers since the accounting start (bytes times seconds)",
        Some(|| MetricUnit::Other("byte_seconds".into())),
        |p| p.totals.memory_byte_seconds,
    ),
    (
        "openstack_project_disk",
        "Root and ephemeral disk held by the project's servers since the accounting start (bytes times seconds)",
        Some(|| MetricUnit::Other("byte_seconds".into())),
        |p| p.totals.disk_byte_seconds,
    ),
    (
        "openstack_project_instance",
        "Time the project's servers existed since the accounting start",
        Some(|| MetricUnit::Seconds),
        |p| p.totals.instance_seconds,
    ),
];

/// What is held now (gauges).
const GAUGES: [ProjectFamily; 3] = [
    (
        "openstack_project_vcpus",
        "vCPUs held now by the project's servers",
        None,
        |p| p.allocation.vcpus as f64,
    ),
    (
        "openstack_project_memory",
        "Memory held now by the project's servers",
        Some(|| MetricUnit::Bytes),
        |p| p.allocation.memory_bytes as f64,
    ),
    (
        "openstack_project_disk",
        "Root and ephemeral disk held now by the project's servers",
        Some(|| MetricUnit::Bytes),
        |p| p.allocation.disk_bytes as f64,
    ),
];

impl Collector for UnitCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let piece = self.piece;
        if let Family::Legacy(i) = piece.family {
            let series = piece.of(&self.snapshot.legacy);
            let labels = self.labels.legacy(piece);
            return super::legacy::encode(
                &mut encoder,
                &super::legacy::FAMILIES[i],
                series,
                &labels,
            );
        }
        let projects = piece.of(&self.snapshot.projects);
        let labels = self.labels.projects(piece);
        let labels = &labels[..];
        let simple = |encoder: &mut DescriptorEncoder,
                      (name, help, unit, value): &ProjectFamily,
                      kind: MetricType|
         -> Result<(), std::fmt::Error> {
            let unit = unit.map(|u| u());
            let mut family = encoder.encode_descriptor(name, help, unit.as_ref(), kind)?;
            for (p, l) in projects.iter().zip(labels) {
                match kind {
                    MetricType::Counter => {
                        ConstCounter::new(value(p)).encode(family.encode_family(l)?)?
                    }
                    _ => ConstGauge::new(value(p)).encode(family.encode_family(l)?)?,
                }
            }
            Ok(())
        };
        match piece.family {
            Family::Counter(i) => simple(&mut encoder, &COUNTERS[i], MetricType::Counter),
            Family::Gauge(i) => simple(&mut encoder, &GAUGES[i], MetricType::Gauge),
            Family::Instances => {
                let mut family = encoder.encode_descriptor(
                    "openstack_project_instances",
                    "Existing servers of the project by Nova status",
                    None,
                    MetricType::Gauge,
                )?;
                for (p, l) in projects.iter().zip(labels) {
                    for (status, count) in &p.instances {
                        let status = [("status", status.as_str())];
                        ConstGauge::new(*count as i64)
                            .encode(family.encode_family(&Join(l, &status))?)?;
                    }
                }
                Ok(())
            }
            Family::Stopped(i) => encode_stopped(&mut encoder, &STOPPED[i], projects, labels),
            Family::Quota(i) => encode_quota(&mut encoder, &QUOTAS[i], projects, labels),
            Family::Info => {
                let mut family = encoder.encode_descriptor(
                    "openstack_project",
                    "Project names and state",
                    None,
                    MetricType::Info,
                )?;
                for (p, l) in projects.iter().zip(labels) {
                    let enabled = [("enabled", if p.project.enabled { "true" } else { "false" })];
                    family.encode_info(&Join(l, &enabled))?;
                }
                Ok(())
            }
            Family::Legacy(_) => Ok(()),
        }
    }
}

/// A quota family: the limit, `None` when unlimited.
type QuotaFamily = FamilyOf<Quota, Option<u64>>;

/// Compute quotas.
const QUOTAS: [QuotaFamily; 3] = [
    (
        "openstack_project_quota_vcpus",
        "Compute quota of the project: vCPUs",
        None,
        |q| q.vcpus,
    ),
    (
        "openstack_project_quota_memory",
        "Compute quota of the project: memory",
        Some(|| MetricUnit::Bytes),
        |q| q.memory_bytes,
    ),
    (
        "openstack_project_quota_instances",
        "Compute quota of the project: servers",
        None,
        |q| q.instances,
    ),
];

/// A quota family; an unlimited quota has no series.
fn encode_quota(
    encoder: &mut DescriptorEncoder,
    (name, help, unit, value): &QuotaFamily,
    projects: &[ProjectUsage],
    labels: &[Written],
) -> Result<(), std::fmt::Error> {
    let unit = unit.map(|u| u());
    let mut family = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
    for (p, l) in projects.iter().zip(labels) {
        if let Some(v) = p.quota.as_ref().and_then(value) {
            ConstGauge::new(v as f64).encode(family.encode_family(l)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::exposition::Fragment;
    use crate::snapshot::{
        Allocation, LegacySeries, LegacyUsage, Project, StoppedBucket, UsageTotals,
    };

    fn project(i: u32) -> ProjectUsage {
        let f = f64::from(i);
        ProjectUsage {
            project: Project {
                id: format!("p{i}"),
                name: format!("project-{i}"),
                domain_id: "d".into(),
                domain_name: "elixir".into(),
                enabled: true,
            }
            .into(),
            totals: UsageTotals {
                vcpu_seconds: 3600.0 * f,
                memory_byte_seconds: 1e12 * f,
                disk_byte_seconds: 2e12 * f,
                instance_seconds: 7200.0 * f,
            },
            allocation: Allocation {
                vcpus: 2,
                memory_bytes: 1 << 30,
                disk_bytes: 20 << 30,
            },
            instances: [("active".to_owned(), 2), ("shutoff".to_owned(), 1)].into(),
            quota: Some(Quota {
                vcpus: Some(16),
                memory_bytes: None,
                instances: Some(10),
            }),
            stopped: [(
                StoppedBucket {
                    status: "shutoff".into(),
                    older_than: Duration::from_secs(86_400),
                },
                Held {
                    instances: 1,
                    vcpus: 2,
                    memory_bytes: 1 << 30,
                },
            )]
            .into(),
        }
    }

    fn snapshot(n: u32) -> ProjectsSnapshot {
        let projects: Vec<ProjectUsage> = (1..=n).map(project).collect();
        let legacy = projects
            .iter()
            .map(|p| LegacySeries {
                project: p.project.clone(),
                usage: LegacyUsage {
                    vcpu_hours: p.totals.vcpu_seconds / 3600.0,
                    memory_hours: 512.0,
                },
            })
            .collect();
        ProjectsSnapshot { projects, legacy }
    }

    #[test]
    fn each_series_gets_its_own_labels_shared_or_not() {
        // Legacy series: most share their project's labels; a SimpleVM split writes others;
        // a project may have none.
        let base = snapshot(6);
        let split = |name: &str| {
            Arc::new(Project {
                name: name.into(),
                ..Project::clone(&base.projects[2].project)
            })
        };
        let cases: [(&str, Vec<Arc<Project>>); 4] = [
            (
                "one per project",
                base.projects
                    .iter()
                    .map(|p| Arc::clone(&p.project))
                    .collect(),
            ),
            ("none", vec![]),
            (
                "a split and a project without series",
                vec![
                    Arc::clone(&base.projects[0].project),
                    split("genomics"),
                    split("teaching"),
                    Arc::clone(&base.projects[3].project),
                    Arc::clone(&base.projects[5].project),
                ],
            ),
            (
                "copies equal to the projects, not shared",
                base.projects
                    .iter()
                    .map(|p| Arc::new(Project::clone(&p.project)))
                    .collect(),
            ),
        ];
        for (what, series) in cases {
            let mut s = snapshot(6);
            s.legacy = series
                .into_iter()
                .map(|project| LegacySeries {
                    project,
                    usage: LegacyUsage::default(),
                })
                .collect();
            let texts = LabelTexts::of(&s);
            let text = |p: &Project| ProjectLabels::from(p).text();
            // One piece holds all six projects and their series.
            let piece = Piece {
                family: Family::Info,
                part: 0,
            };
            let written = |labels: Vec<Written>| -> Vec<String> {
                labels.iter().map(|w| w.0.to_owned()).collect()
            };
            let legacy: Vec<String> = s.legacy.iter().map(|l| text(&l.project)).collect();
            assert_eq!(written(texts.legacy(piece)), legacy, "{what}");
            let projects: Vec<String> = s.projects.iter().map(|p| text(&p.project)).collect();
            assert_eq!(written(texts.projects(piece)), projects, "{what}");
        }
    }

    #[test]
    fn a_render_after_another_equals_a_fresh_render_and_copies_only_unchanged_pieces() {
        type Change = fn(&mut ProjectsSnapshot);
        // 17 families: 4 counters, instances, 3 stopped, 3 gauges, 3 quotas, info, 2 legacy.
        // (what changes, projects, pieces written, pieces copied from the previous text)
        let cases: [(&str, Change, u32, usize, usize); 16] = [
            ("nothing", |_| {}, 3, 17, 17),
            (
                "a counter",
                |s| s.projects[1].totals.vcpu_seconds += 1.0,
                3,
                17,
                16,
            ),
            (
                "every counter and a legacy vCPU series",
                |s| {
                    for p in &mut s.projects {
                        p.totals.vcpu_seconds += 1.0;
                        p.totals.memory_byte_seconds += 1.0;
                        p.totals.disk_byte_seconds += 1.0;
                        p.totals.instance_seconds += 1.0;
                    }
                    s.legacy[0].usage.vcpu_hours += 1.0;
                },
                3,
                17,
                12,
            ),
            (
                "zero's sign",
                |s| s.projects[0].totals.disk_byte_seconds = -0.0,
                3,
                17,
                16,
            ),
            (
                "an allocation",
                |s| s.projects[2].allocation.vcpus = 4,
                3,
                17,
                16,
            ),
            (
                "a status count",
                |s| {
                    s.projects[0].instances.insert("error".into(), 1);
                },
                3,
                17,
                16,
            ),
            (
                "a stopped bucket: its three families",
                |s| {
                    s.projects[0].stopped.clear();
                },
                3,
                17,
                14,
            ),
            (
                "a quota: the two families with a limit",
                |s| s.projects[1].quota = None,
                3,
                17,
                15,
            ),
            (
                "no quota any more",
                |s| {
                    for p in &mut s.projects {
                        p.quota = None;
                    }
                },
                3,
                14,
                14,
            ),
            (
                "a legacy memory series",
                |s| s.legacy[2].usage.memory_hours = 0.5,
                3,
                17,
                16,
            ),
            (
                "a project's name",
                |s| {
                    Arc::make_mut(&mut s.projects[0].project).name = "renamed".into();
                    Arc::make_mut(&mut s.legacy[0].project).name = "renamed".into();
                },
                3,
                17,
                0,
            ),
            (
                "one project more, without a legacy series yet",
                |s| s.projects.push(project(4)),
                3,
                17,
                2,
            ),
            // 1100 projects: three pieces per family, the family's descriptor written once.
            ("nothing, three pieces each", |_| {}, 1100, 51, 51),
            (
                "an allocation in the second piece",
                |s| s.projects[700].allocation.vcpus = 4,
                1100,
                51,
                50,
            ),
            (
                "a counter in the last piece",
                |s| s.projects[1099].totals.vcpu_seconds += 1.0,
                1100,
                51,
                50,
            ),
            (
                "one project more at the end: the last pieces",
                |s| s.projects.push(project(1101)),
                1100,
                51,
                51 - 15,
            ),
        ];
        let options = RenderOptions::default();
        for (what, change, n, written, copied) in cases {
            let first = Arc::new(snapshot(n));
            let mut first_text = TextBuilder::after(None);
            let memo = projects_into(&mut first_text, Arc::clone(&first), options, None);
            let parts = (n as usize).div_ceil(PIECE);
            assert_eq!(memo.units(), (17 * parts, 0), "{what}");
            let cuts: Vec<usize> = memo.cuts().collect();
            let first_fragment = Fragment::from_layout(first_text.finish(), &cuts, None);
            let mut next = snapshot(n);
            change(&mut next);
            let next = Arc::new(next);
            let mut text = TextBuilder::after(Some(&first_fragment));
            let after = projects_into(&mut text, Arc::clone(&next), options, Some(&memo));
            let cuts: Vec<usize> = after.cuts().collect();
            let fragment = Fragment::from_layout(text.finish(), &cuts, Some(&first_fragment));
            let fresh = projects(Arc::clone(&next), options);
            assert_eq!(fragment.text(), fresh, "{what}");
            assert_eq!(
                after.units(),
                (written, copied),
                "{what}: pieces written, kept"
            );
            // Nearly all kept: the first fragment's memory, not a copy of it (a buffer of
            // which less than half is kept is copied from, see `TextBuilder::plan`).
            if copied * 10 >= written * 9 {
                assert!(fragment.shares_with(&first_fragment), "{what}: shared");
            }
            if copied == 0 {
                assert!(!fragment.shares_with(&first_fragment), "{what}: not shared");
            }
            // Each family is described once, and every piece starts at a line.
            assert_eq!(fresh.matches("# HELP ").count(), written / parts, "{what}");
            for cut in after.cuts() {
                assert!(
                    cut == 0 || fresh.as_bytes()[cut - 1] == b'\n',
                    "{what}: {cut}"
                );
            }
        }
    }
}
