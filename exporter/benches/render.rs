//! One refresh of a large dummy cloud, phase by phase: compute the snapshot, render
//! OpenMetrics, translate to classic, join and gzip both formats (OpenMetrics also when no
//! family changed since the previous refresh, so every compressed block is kept); and render
//! again after a render of the same snapshot (every projects family copied).
//!
//! `cargo bench -p site-exporter --bench render` (BENCHMARKS.md has the figures).

use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use site_exporter::exposition::{Exposition, Fragment};
use site_exporter::legacy::LegacyOptions;
use site_exporter::render::{self, RenderOptions};
use site_exporter::settings::Schedule;
use site_exporter::sources::dummy::{CloudSpec, DummyConfig, DummySource, Generate};
use site_exporter::weights::WeightsInput;

fn source(projects: u64, guests: u64) -> DummySource {
    let config = DummyConfig {
        cloud: CloudSpec::Generated(Generate {
            projects,
            servers_per_project: 5,
            seed: 1,
        }),
        guests: Some(guests),
        usage_start: None,
        usage_start_url: None,
        schedule: Schedule {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(15),
        },
    };
    DummySource::new(
        &config,
        LegacyOptions::default(),
        WeightsInput::None,
        SystemTime::now(),
    )
    .expect("a generated cloud")
}

fn refresh(c: &mut Criterion) {
    let source = source(10_000, 500);
    let now = SystemTime::now();
    let options = RenderOptions::default();
    let openmetrics = render::source_data(source.snapshot(now), options);
    let fragment = Fragment::from_openmetrics(openmetrics.clone());

    let mut group = c.benchmark_group("10k_projects_x5_500_guests");
    group.sample_size(20);
    group.bench_function("snapshot", |b| b.iter(|| source.snapshot(now)));
    group.bench_function("render_openmetrics", |b| {
        b.iter(|| render::source_data(source.snapshot(now), options))
    });
    // The same snapshot again after a render: every projects piece is kept (shared).
    let (text, memo) = render::source_data_after(source.snapshot(now), options, None);
    let memo = memo.with_fragment(Fragment::from_layout(text, &[], None));
    group.bench_function("render_openmetrics_unchanged", |b| {
        b.iter(|| render::source_data_after(source.snapshot(now), options, Some(&memo)))
    });
    // Each block compressed (the first refresh, or every family changed)...
    group.bench_function("join_and_gzip_openmetrics", |b| {
        b.iter(|| Exposition::build([&Fragment::from_openmetrics(openmetrics.clone())]))
    });
    // ...and no family changed since the previous fragment (every block kept).
    group.bench_function("join_and_gzip_openmetrics_unchanged", |b| {
        b.iter(|| {
            let next = Fragment::from_openmetrics_after(openmetrics.clone(), &[], Some(&fragment));
            Exposition::build([&next])
        })
    });
    group.bench_function("classic_on_first_request", |b| {
        b.iter(|| site_exporter::classic::from_openmetrics(&openmetrics))
    });
    group.bench_function("whole_refresh", |b| {
        b.iter(|| {
            let om = render::source_data(source.snapshot(now), options);
            Exposition::build([&Fragment::from_openmetrics(om)])
        })
    });
    group.finish();
}

criterion_group!(benches, refresh);
criterion_main!(benches);
