//! Golden exposition of a fixed dummy cloud at an injected clock, in both formats, and
//! `promtool check metrics` on the classic output.
//!
//! `UPDATE_GOLDEN=1 cargo test -p site-exporter --test golden` rewrites the golden files;
//! review the diff before committing it.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use site_exporter::exposition::Format;
use site_exporter::hub::Hub;
use site_exporter::legacy::LegacyOptions;
use site_exporter::refresh;
use site_exporter::render::{self, RenderOptions};
use site_exporter::settings::Schedule;
use site_exporter::sources::dummy::{CloudSpec, DummyConfig, DummySource};
use site_exporter::weights::WeightsInput;

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn golden_source() -> DummySource {
    let config = DummyConfig {
        cloud: CloudSpec::File(here().join("fixtures/golden-cloud.yaml")),
        guests: None,
        usage_start: None,
        usage_start_url: None,
        schedule: Schedule {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(5),
        },
    };
    DummySource::new(
        &config,
        LegacyOptions::default(),
        WeightsInput::None,
        SystemTime::UNIX_EPOCH,
    )
    .unwrap()
}

fn now() -> SystemTime {
    humantime::parse_rfc3339("2024-01-10T00:00:00Z").unwrap()
}

fn check_golden(name: &str, got: &str) {
    let path = here().join("golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    if got != want {
        let first = got.lines().zip(want.lines()).position(|(g, w)| g != w);
        panic!(
            "{} differs from the rendered output (first differing line: {:?})\n--- got ---\n{got}",
            path.display(),
            first.map(|i| (i + 1, want.lines().nth(i), got.lines().nth(i)))
        );
    }
}

#[test]
fn golden_exposition_in_both_formats() {
    let data = golden_source().snapshot(now());
    let openmetrics = render::source_data(data, RenderOptions::default());
    check_golden("cloud.openmetrics.txt", &format!("{openmetrics}# EOF\n"));
    check_golden(
        "cloud.classic.txt",
        &site_exporter::classic::from_openmetrics(&openmetrics),
    );
}

#[test]
fn rendering_is_deterministic() {
    let render = || render::source_data(golden_source().snapshot(now()), RenderOptions::default());
    assert_eq!(render(), render());
}

/// Runs `promtool check metrics` on `text` and returns what it printed.
fn promtool_check(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install Debian's prometheus package (the README's test command does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The whole classic exposition the server would send: the built-in dummy cloud, its guests,
/// and the self-metrics.
async fn full_classic(options: RenderOptions) -> String {
    let hub = Arc::new(Hub::new("0.0.0-test"));
    let config = DummyConfig {
        cloud: CloudSpec::BuiltIn,
        guests: None,
        usage_start: None,
        usage_start_url: None,
        schedule: Schedule {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(5),
        },
    };
    let mut source = DummySource::new(
        &config,
        LegacyOptions::default(),
        WeightsInput::None,
        SystemTime::now(),
    )
    .unwrap();
    let slot = hub.register("dummy");
    assert!(refresh::refresh_once(&mut source, config.schedule, &hub, slot, options).await);
    String::from_utf8(
        hub.exposition()
            .body(Format::Classic, false)
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn promtool_finds_nothing_in_our_own_families() {
    let text = full_classic(RenderOptions {
        legacy_metrics: false,
    })
    .await;
    assert!(text.contains("openstack_project_vcpu_seconds_total"));
    assert!(text.contains("libvirt_domain_info_cpu_time_seconds_total"));
    assert!(text.contains("site_exporter_source_up"));
    assert_eq!(promtool_check(&text), "");
}

#[tokio::test]
async fn promtool_flags_only_the_legacy_name_we_must_keep() {
    // `project_mb_usage` is the original exporter's name, which portals bill from: it stays,
    // and it is the only thing promtool may complain about.
    let text = full_classic(RenderOptions::default()).await;
    assert!(text.contains("project_vcpu_usage{"));
    assert_eq!(
        promtool_check(&text).trim(),
        "project_mb_usage metric names should not contain abbreviated units"
    );
}

#[tokio::test]
async fn promtool_catches_a_bad_name() {
    // The check is live: a counter without `_total` is reported.
    let text = "# HELP bad_counter A counter\n# TYPE bad_counter counter\nbad_counter 1\n";
    assert!(
        promtool_check(text).contains("bad_counter"),
        "promtool reported nothing"
    );
}
