#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::legacy::LegacyOptions;
use crate::sources::dummy::{CloudSpec, DummyConfig, DummySource};
use crate::weights::WeightsInput;

fn schedule() -> Schedule {
    Schedule {
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(5),
    }
}

/// One project with one 2-vCPU server since the accounting start, 10 hours ago.
fn dummy(dir: &Path, weights: WeightsInput) -> DummySource {
    let cloud = dir.join("cloud.toml");
    std::fs::write(&cloud, "[d]\ndomain_id = \"d\"\n[[d.projects]]\nproject_name = \"alpha\"\nmachines = [{cpus = 2, ram = 4}]\n").unwrap();
    let config = DummyConfig {
        cloud: CloudSpec::File(cloud),
        guests: None,
        usage_start: Some("2024-01-01T00:00:00Z".into()),
        usage_start_url: None,
        schedule: schedule(),
    };
    DummySource::new(
        &config,
        LegacyOptions::default(),
        weights,
        SystemTime::UNIX_EPOCH,
    )
    .unwrap()
}

fn vcpu_hours(source: &DummySource) -> Option<f64> {
    let now = humantime::parse_rfc3339("2024-01-01T10:00:00Z").unwrap();
    let SourceData::Cloud { projects, .. } = source.snapshot(now) else {
        panic!()
    };
    projects.legacy.first().map(|s| s.usage.vcpu_hours)
}

#[tokio::test]
async fn legacy_families_wait_for_the_first_set_and_follow_file_edits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weights.yaml");
    std::fs::write(
        &file,
        "- {resource_set_timestamp: 0, vcpus: [{value: 2, weight: 2}], memory_mb: []}\n",
    )
    .unwrap();
    let cell = Arc::new(WeightsCell::default());
    let source_dummy = dummy(dir.path(), WeightsInput::Shared(Arc::clone(&cell)));
    assert_eq!(
        vcpu_hours(&source_dummy),
        None,
        "withheld before the weights load"
    );

    let config = WeightsConfig {
        origin: Origin::File(file.clone()),
        schedule: schedule(),
    };
    let mut weights = WeightsSource::new(&config, Arc::clone(&cell));
    let data = weights.collect(SystemTime::now()).await.unwrap();
    assert!(matches!(data, SourceData::Weights(w) if w.sets().len() == 1));
    assert_eq!(vcpu_hours(&source_dummy), Some(10.0 * 2.0 * 2.0));

    std::fs::write(
        &file,
        "- {resource_set_timestamp: 0, vcpus: [{value: 2, weight: 3}], memory_mb: []}\n",
    )
    .unwrap();
    weights.collect(SystemTime::now()).await.unwrap();
    assert_eq!(vcpu_hours(&source_dummy), Some(60.0));

    std::fs::write(&file, "- {resource_set_timestamp: soon}\n").unwrap();
    let err = weights
        .collect(SystemTime::now())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("weights file {}", file.display())),
        "{err}"
    );
    assert_eq!(
        vcpu_hours(&source_dummy),
        Some(60.0),
        "the last good set stays in force"
    );

    // Without weights configured, weight 1 and no waiting.
    assert_eq!(
        vcpu_hours(&dummy(dir.path(), WeightsInput::None)),
        Some(20.0)
    );
}

async fn portal(script: Vec<(u16, &'static str)>) -> String {
    let base = crate::test_support::scripted_http(script).await;
    base.replace("http://", "http://user:secret@") + "/api/weights/?token=also-secret"
}

#[tokio::test]
async fn portal_url_failures_keep_the_last_good_set_and_hide_credentials() {
    let good =
        r#"[{"resource_set_timestamp": 0, "vcpus": [{"value": 2, "weight": 2}], "memory_mb": []}]"#;
    let url = portal(vec![
        (200, good),
        (200, "{not json"),
        (500, "oops"),
        (200, "[]"),
    ])
    .await;
    let cell = Arc::new(WeightsCell::default());
    let config = WeightsConfig {
        origin: Origin::Url(url),
        schedule: schedule(),
    };
    let mut source = WeightsSource::new(&config, Arc::clone(&cell));

    source.collect(SystemTime::now()).await.unwrap();
    let first = cell.get().unwrap();
    assert_eq!(first.sets().len(), 1);

    let malformed = source
        .collect(SystemTime::now())
        .await
        .unwrap_err()
        .to_string();
    assert!(malformed.contains("invalid weights JSON"), "{malformed}");
    let server_error = source
        .collect(SystemTime::now())
        .await
        .unwrap_err()
        .to_string();
    assert!(server_error.ends_with("HTTP 500"), "{server_error}");
    for err in [&malformed, &server_error] {
        assert!(!err.contains("secret"), "credentials in an error: {err}");
        assert!(err.contains("/api/weights/"), "{err}");
    }
    assert_eq!(
        cell.get().unwrap(),
        first,
        "the last good set stays in force"
    );

    // An empty list is a valid answer: no sets, every weight 1.
    source.collect(SystemTime::now()).await.unwrap();
    assert!(cell.get().unwrap().sets().is_empty());
}

#[tokio::test]
async fn unreachable_portal_is_an_error_naming_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = WeightsConfig {
        origin: Origin::Url(format!("http://127.0.0.1:{port}/w")),
        schedule: schedule(),
    };
    let cell = Arc::new(WeightsCell::default());
    let mut source = WeightsSource::new(&config, Arc::clone(&cell));
    let err = source
        .collect(SystemTime::now())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("weights URL http://127.0.0.1:{port}/w")),
        "{err}"
    );
    assert!(cell.get().is_none());
    // The attempt counts: projects sources no longer wait for it.
    tokio::time::timeout(Duration::from_secs(1), cell.first_attempt())
        .await
        .unwrap();
}
