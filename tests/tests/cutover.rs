//! The cut-over comparison (`bench/compare-legacy.py`, README "Cutting over from the original
//! exporter") against two real exporters: equal legacy families compare equal, and a changed
//! server, a missing project and a tolerance are reported as they should be.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use site_exporter::settings::Schedule;
use site_exporter::sources::dummy::{CloudSpec, DummyConfig};
use stack_tests::{poll, stack::repo, Exporter};

/// A cloud of finished servers only, so its values do not move with the clock.
fn cloud(dir: &Path, name: &str, web_flavor: &str, extra_project: bool) -> DummyConfig {
    let extra = if extra_project {
        "      - name: gamma\n        servers:\n          - {name: g, flavor: big, created: 2024-01-01, deleted: 2024-01-03}\n"
    } else {
        ""
    };
    let text = format!(
        "usage_start: 2023-12-01\nflavors:\n  small: {{vcpus: 1, ram_mb: 2048, disk_gb: 20}}\n  big: {{vcpus: 4, ram_mb: 8192, disk_gb: 80}}\ndomains:\n  - name: default\n    projects:\n      - name: alpha\n        servers:\n          - {{name: web, flavor: {web_flavor}, created: 2024-01-01, deleted: 2024-01-02}}\n      - name: beta\n        servers:\n          - {{name: db, flavor: big, created: 2024-01-01, deleted: 2024-01-11}}\n{extra}"
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the cloud");
    DummyConfig {
        cloud: CloudSpec::File(path),
        guests: None,
        usage_start: None,
        usage_start_url: None,
        schedule: Schedule {
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
        },
    }
}

fn compare(a: &Exporter, b: &Exporter, tolerance: Option<&str>) -> (i32, String) {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("bench/compare-legacy.py"))
        .arg(format!("http://{}/metrics", a.addr))
        .arg(format!("http://{}/metrics", b.addr));
    if let Some(t) = tolerance {
        cmd.args(["--tolerance", t]);
    }
    let out = cmd
        .output()
        .expect("python3 runs (run-tests.sh installs it when missing)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn ready(e: &Exporter) {
    poll("exporter ready", Duration::from_secs(30), || {
        let (status, _) = stack_tests::get(&format!("http://{}/-/ready", e.addr))?;
        Ok((status == 200).then_some(()))
    })
    .expect("exporter ready");
}

#[test]
fn the_comparison_finds_exactly_the_differences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let same_a = Exporter::start(cloud(dir.path(), "a.yaml", "small", false));
    let same_b = Exporter::start(cloud(dir.path(), "b.yaml", "small", false));
    let changed = Exporter::start(cloud(dir.path(), "c.yaml", "big", true));
    for e in [&same_a, &same_b, &changed] {
        ready(e);
    }

    let (code, out) = compare(&same_a, &same_b, None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("4 series compared, 0 differences"), "{out}");

    let (code, out) = compare(&same_a, &changed, None);
    assert_eq!(code, 1, "{out}");
    // alpha's web server: 24 h at 1 vCPU against 24 h at 4 vCPUs.
    assert!(
        out.contains("differs: project_vcpu_usage{project_id=") && out.contains("A=24.0 B=96.0"),
        "{out}"
    );
    assert!(
        out.contains("only in B: project_vcpu_usage{") && out.contains("'gamma'"),
        "{out}"
    );
    assert!(out.contains("6 series compared, 4 differences"), "{out}");

    // A loose tolerance does not hide a missing project.
    let (code, out) = compare(&same_a, &changed, Some("10"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("2 differences"), "{out}");

    // An endpoint that cannot be read is its own outcome.
    let gone = format!("http://127.0.0.1:{}/metrics", stack_tests::free_port());
    let out = Command::new("python3")
        .arg(repo().join("bench/compare-legacy.py"))
        .arg(&gone)
        .arg(format!("http://{}/metrics", same_a.addr))
        .output()
        .expect("python3 runs");
    assert_eq!(out.status.code(), Some(2));
}
