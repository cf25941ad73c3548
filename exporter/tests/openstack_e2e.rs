//! Opt-in: the OpenStack source against the real stack of `shared/openstack` (see README,
//! "The OpenStack source"). Runs only with `OPENSTACK_E2E=1` and the stack's `openrc` sourced;
//! `OPENSTACK_CLI` names the official client (default `/tmp/realstack/venv/bin/openstack`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use site_exporter::legacy::LegacyOptions;
use site_exporter::sources::openstack::client::{Client, Connect, Limits};
use site_exporter::sources::openstack::keystone::Filters;
use site_exporter::sources::openstack::{OpenstackSource, Settings};
use site_exporter::sources::weights::WeightsInput;

fn enabled() -> bool {
    std::env::var("OPENSTACK_E2E").ok().as_deref() == Some("1")
}

fn midnight_days_ago(days: u64) -> SystemTime {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    UNIX_EPOCH + Duration::from_secs((now / 86_400 - days) * 86_400)
}

fn date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_owned()
}

/// `openstack usage list` for [start, end): project (the client prints ids) -> CPU hours.
fn official(start: SystemTime, end: SystemTime) -> BTreeMap<String, f64> {
    let cli = std::env::var("OPENSTACK_CLI")
        .unwrap_or_else(|_| "/tmp/realstack/venv/bin/openstack".into());
    let out = std::process::Command::new(&cli)
        .args([
            "usage",
            "list",
            "--start",
            &date(start),
            "--end",
            &date(end),
            "-f",
            "json",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{cli}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let num = |v: &serde_json::Value| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap()
    };
    rows.iter()
        .map(|r| {
            (
                r["Project"].as_str().unwrap().to_owned(),
                num(&r["CPU Hours"]),
            )
        })
        .collect()
}

#[tokio::test]
async fn totals_equal_openstack_usage_list_for_the_same_window() {
    if !enabled() {
        eprintln!("skipped: set OPENSTACK_E2E=1 with the real stack running and openrc sourced");
        return;
    }
    let start = midnight_days_ago(3);
    let end = midnight_days_ago(0);
    let connect: Connect = Arc::new(|| Box::pin(async { osauth::Session::from_env().await }));
    let mut source = OpenstackSource::new(
        Client::new(connect, Limits::default()),
        Settings {
            usage_start: Some(start),
            start_url: None,
            state_file: None,
            cloud: std::env::var("OS_AUTH_URL").unwrap(),
            filters: Filters::default(),
            legacy: LegacyOptions::default(),
            weights: WeightsInput::None,
            quotas: true,
        },
    );
    // Two refreshes splitting the window: incremental sums must equal the one-shot answer.
    let middle = midnight_days_ago(1) + Duration::from_secs(12 * 3600 + 7);
    source.refresh(middle).await.unwrap();
    let snap = source.refresh(end).await.unwrap();
    let ours: BTreeMap<String, f64> = snap
        .projects
        .iter()
        .filter(|p| p.totals.vcpu_seconds > 0.0)
        .map(|p| (p.project.id.clone(), p.totals.vcpu_seconds / 3600.0))
        .collect();
    let theirs: BTreeMap<String, f64> = official(start, end)
        .into_iter()
        .filter(|(_, h)| *h > 0.0)
        .collect();
    eprintln!("ours (CPU hours): {ours:?}\nopenstack usage list: {theirs:?}");
    assert!(
        !theirs.is_empty(),
        "no usage in the window: run ./backdate.sh 2 after seeding"
    );
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (name, h) in &theirs {
        // The client prints two decimals.
        assert!(
            (ours[name] - h).abs() <= 0.005 + 1e-9,
            "{name}: ours {} vs {h}",
            ours[name]
        );
    }
}
