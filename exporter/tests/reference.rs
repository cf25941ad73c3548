//! The README's metric reference is in step with the real output: every family the exporter
//! writes is documented with exactly its type and labels, and nothing undocumented is written.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use site_exporter::exposition::{Format, Fragment};
use site_exporter::hub::Hub;
use site_exporter::legacy::LegacyOptions;
use site_exporter::refresh;
use site_exporter::render::RenderOptions;
use site_exporter::settings::Schedule;
use site_exporter::snapshot::health::{RequestStats, Service, SourceMetrics, UsageStart};
use site_exporter::sources::dummy::{CloudSpec, DummyConfig, DummySource};
use site_exporter::sources::weights::{Origin, WeightsConfig, WeightsSource};
use site_exporter::weights::{WeightsCell, WeightsInput};

type Families = BTreeMap<String, (String, BTreeSet<String>)>;

/// (type, labels) per metric from the README's tables under "### Metric reference".
fn documented() -> Families {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = readme
        .split("### Metric reference")
        .nth(1)
        .expect("README has a Metric reference section");
    let section = section.split("\n## ").next().unwrap();
    let section = section.split("\n### ").next().unwrap();
    let mut out = Families::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `name` | type | labels | meaning |
        if cells.len() < 5 || !cells[1].starts_with('`') {
            continue;
        }
        let name = cells[1].trim_matches('`').to_string();
        let kind = cells[2].split_whitespace().next().unwrap().to_string();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_string())
            .filter(|l| !l.is_empty())
            .collect();
        assert!(
            out.insert(name.clone(), (kind, labels)).is_none(),
            "{name} documented twice"
        );
    }
    out
}

/// (type, labels) per family in the classic exposition.
fn written(text: &str) -> Families {
    let mut out = Families::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.insert(name.to_string(), (kind.to_string(), BTreeSet::new()));
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            let family = out
                .iter_mut()
                .rev()
                .find(|(f, _)| {
                    name == f.as_str()
                        || name
                            .strip_prefix(f.as_str())
                            .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))
                })
                .unwrap_or_else(|| panic!("sample {name} outside its family"));
            if let Some(labels) = line[name_end..].strip_prefix('{') {
                let labels = &labels[..labels.rfind('}').unwrap()];
                for pair in labels.split("\",") {
                    let key = pair.split('=').next().unwrap().trim_start_matches(',');
                    if !key.is_empty() && key != "le" {
                        family.1 .1.insert(key.to_string());
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn readme_metric_reference_matches_the_output() {
    let hub = Arc::new(Hub::new("test"));
    let schedule = Schedule {
        interval: Duration::from_secs(15),
        timeout: Duration::from_secs(5),
    };
    // With credit weights, so that the weights family is written too.
    let cell = Arc::new(WeightsCell::default());
    let weights = WeightsConfig {
        origin: Origin::File(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights.toml"),
        ),
        schedule,
    };
    let mut weights_source = WeightsSource::new(&weights, Arc::clone(&cell));
    let slot = hub.register("weights");
    let options = RenderOptions::default();
    assert!(refresh::refresh_once(&mut weights_source, schedule, &hub, slot, options).await);
    let config = DummyConfig {
        cloud: CloudSpec::BuiltIn,
        guests: None,
        usage_start: None,
        usage_start_url: None,
        schedule,
    };
    let mut source = DummySource::new(
        &config,
        LegacyOptions::default(),
        WeightsInput::Shared(cell),
        SystemTime::now(),
    )
    .unwrap();
    let slot = hub.register("dummy");
    assert!(refresh::refresh_once(&mut source, schedule, &hub, slot, options).await);
    // The OpenStack source's own families, as it stages them after a refresh.
    let openstack = hub.register("openstack");
    let mut stats = RequestStats::default();
    stats
        .requests
        .insert((Service::Compute, "200".to_owned()), 3);
    stats.durations.entry(Service::Compute).or_default();
    hub.stage_source_metrics(
        openstack,
        Fragment::from_openmetrics(site_exporter::render::source_metrics(
            &SourceMetrics::Openstack {
                requests: stats,
                start: Some(UsageStart {
                    requested: 1_780_272_000,
                    accounting: 1_767_225_600,
                }),
                window_end: Some(1_780_272_000),
            },
        )),
    );
    hub.failed(openstack, Duration::from_millis(1), "planted".into());
    // Quota families appear only when the OpenStack source reads quotas.
    let with_quota = hub.register("openstack-quotas");
    let mut projects = match source.snapshot(SystemTime::now()) {
        site_exporter::snapshot::SourceData::Cloud { projects, .. } => projects,
        _ => unreachable!("the dummy source serves a cloud"),
    };
    projects.projects.truncate(1);
    projects.projects[0].quota = Some(site_exporter::snapshot::Quota {
        vcpus: Some(20),
        memory_bytes: Some(1 << 30),
        instances: Some(10),
    });
    hub.succeeded(
        with_quota,
        Fragment::from_openmetrics(site_exporter::render::projects(
            Arc::new(projects),
            RenderOptions::default(),
        )),
        SystemTime::now(),
        Duration::from_millis(1),
    );
    let text = String::from_utf8(
        hub.exposition()
            .body(Format::Classic, false)
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    let written = written(&text);
    let documented = documented();
    let missing: Vec<_> = written
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    let extra: Vec<_> = documented
        .keys()
        .filter(|k| !written.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "written but not in the README: {missing:?}"
    );
    assert!(extra.is_empty(), "in the README but not written: {extra:?}");
    for (name, want) in &documented {
        assert_eq!(&written[name], want, "type and labels of {name}");
    }
}
