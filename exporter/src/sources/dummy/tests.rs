#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use super::*;
use crate::legacy::{LegacyOptions, MemoryUnit};
use crate::snapshot::{GuestState, ProjectsSnapshot};
use crate::weights::{Weights, WeightsInput};

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

fn at(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).unwrap()
}

/// A project with one server of each kind the accounting treats differently.
const SMALL: &str = "
usage_start: 2024-01-01T00:00:00Z
domains:
  - name: default
    projects:
      - name: p
        servers:
          - {name: before-start, vcpus: 2, ram_mb: 4096, disk_gb: 20, ephemeral_gb: 10, created: 2023-12-01T00:00:00Z}
          - {name: short-lived, vcpus: 1, ram_mb: 1536, disk_gb: 10, created: 2024-01-10T00:00:00Z, deleted: 2024-01-10T12:00:00Z}
          - {name: broken, vcpus: 4, ram_mb: 8192, status: error, created: 2024-01-05T00:00:00Z}
          - {name: stopped, vcpus: 1, ram_mb: 2048, status: shutoff, created: 2024-01-09T00:00:00Z}
          - {name: future, vcpus: 8, ram_mb: 8192, created: 2024-01-12T00:00:00Z}
";

fn small_cloud() -> Cloud {
    file::parse(SMALL, at("2024-01-11T00:00:00Z")).unwrap()
}

fn only_project(s: &ProjectsSnapshot) -> &crate::snapshot::ProjectUsage {
    assert_eq!(s.projects.len(), 1);
    &s.projects[0]
}

#[test]
fn usage_worked_out_by_hand() {
    let now = at("2024-01-11T00:00:00Z");
    let snap = small_cloud().projects(now, &LegacyOptions::default(), &Weights::default());
    let p = only_project(&snap);
    // before-start: the 10 days since the accounting start (240 h), not since creation.
    // short-lived: 12 h. broken: never launched, 0. stopped: 2 days (48 h). future: not yet.
    let seconds = [240.0 * 3600.0, 12.0 * 3600.0, 0.0, 48.0 * 3600.0];
    let vcpus = [2.0, 1.0, 4.0, 1.0];
    let ram_mb = [4096.0, 1536.0, 8192.0, 2048.0];
    let disk_gb = [30.0, 10.0, 0.0, 0.0];
    let dot = |a: &[f64; 4]| a.iter().zip(&seconds).map(|(x, s)| x * s).sum::<f64>();
    assert_eq!(p.totals.instance_seconds, seconds.iter().sum::<f64>());
    assert_eq!(p.totals.vcpu_seconds, dot(&vcpus));
    assert_eq!(p.totals.vcpu_seconds, 1_944_000.0);
    assert_eq!(p.totals.memory_byte_seconds, dot(&ram_mb) * MIB);
    assert_eq!(p.totals.disk_byte_seconds, dot(&disk_gb) * GIB);
    // Legacy: hours × vcpus, hours × whole GiB (1536 MB counts as 1 GiB).
    assert_eq!(snap.legacy.len(), 1);
    let legacy = snap.legacy[0].usage;
    assert_eq!(legacy.vcpu_hours, 240.0 * 2.0 + 12.0 + 48.0);
    assert_eq!(legacy.memory_hours, 240.0 * 4.0 + 12.0 * 1.0 + 48.0 * 2.0);
    let mb = small_cloud().projects(
        now,
        &LegacyOptions {
            memory_unit: MemoryUnit::Mb,
            simple_vm: None,
        },
        &Weights::default(),
    );
    assert_eq!(
        mb.legacy[0].usage.memory_hours,
        240.0 * 4096.0 + 12.0 * 1536.0 + 48.0 * 2048.0
    );
    // Existing now: before-start (active), broken (error), stopped (shutoff).
    let instances: Vec<(&str, u64)> = p.instances.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(instances, [("active", 1), ("error", 1), ("shutoff", 1)]);
    assert_eq!(p.allocation.vcpus, 2 + 4 + 1);
    assert_eq!(p.allocation.memory_bytes, (4096 + 8192 + 2048) << 20);
    assert_eq!(p.allocation.disk_bytes, 30 << 30);
}

#[test]
fn counters_grow_and_servers_appear() {
    let cloud = small_cloud();
    let t0 = at("2024-01-11T00:00:00Z");
    let t1 = at("2024-01-12T06:00:00Z");
    let (a, b) = (
        cloud.projects(t0, &LegacyOptions::default(), &Weights::default()),
        cloud.projects(t1, &LegacyOptions::default(), &Weights::default()),
    );
    assert!(b.legacy[0].usage.vcpu_hours > a.legacy[0].usage.vcpu_hours);
    let (a, b) = (only_project(&a), only_project(&b));
    assert!(b.totals.vcpu_seconds > a.totals.vcpu_seconds);
    // 30 more hours for before-start (2 vCPUs) and stopped (1), 6 for future (8).
    assert_eq!(
        b.totals.vcpu_seconds - a.totals.vcpu_seconds,
        (30.0 * 3.0 + 6.0 * 8.0) * 3600.0
    );
    assert_eq!(b.instances.get("active"), Some(&2), "future now exists");

    let (ga, gb) = (cloud.guests(t0, 100), cloud.guests(t1, 100));
    let running = |g: &crate::snapshot::GuestsSnapshot| {
        g.guests
            .iter()
            .find(|g| g.state == GuestState::Running)
            .cloned()
            .unwrap()
    };
    let (ra, rb) = (running(&ga), running(&gb));
    assert_eq!(ra.name, rb.name);
    assert!(rb.info.cpu_time_seconds > ra.info.cpu_time_seconds);
    assert!(rb.blocks[0].read_bytes > ra.blocks[0].read_bytes);
    assert!(rb.interfaces[0].transmit_bytes > ra.interfaces[0].transmit_bytes);
}

#[test]
fn guests_are_the_live_servers_with_a_domain() {
    let now = at("2024-01-11T00:00:00Z");
    let guests = small_cloud().guests(now, 100);
    assert!(guests.up);
    let summary: Vec<(&str, GuestState)> = guests
        .guests
        .iter()
        .map(|g| {
            (
                g.openstack.as_ref().unwrap().instance_name.as_str(),
                g.state,
            )
        })
        .collect();
    // short-lived is deleted, broken never got a domain, future does not exist yet.
    assert_eq!(
        summary,
        [
            ("before-start", GuestState::Running),
            ("stopped", GuestState::Shutoff)
        ]
    );
    let running = &guests.guests[0];
    assert_eq!(running.vcpus.len(), 2);
    let devices: Vec<&str> = running
        .blocks
        .iter()
        .map(|b| b.target_device.as_str())
        .collect();
    assert_eq!(devices, ["vda", "vdb"]);
    assert_eq!(running.blocks[1].capacity_bytes, 10 << 30);
    assert!(running.memory.is_some());
    let stopped = &guests.guests[1];
    assert!(stopped.vcpus.is_empty() && stopped.blocks.is_empty() && stopped.memory.is_none());
    assert_eq!(stopped.info.cpu_time_seconds, 0.0);
    // A limit keeps the first guests only.
    assert_eq!(small_cloud().guests(now, 1).guests.len(), 1);
}

fn write(path: &std::path::Path, text: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn config(path: &std::path::Path) -> DummyConfig {
    DummyConfig {
        cloud: CloudSpec::File(path.to_owned()),
        guests: None,
        usage_start: None,
        usage_start_url: None,
        schedule: Schedule {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        },
    }
}

fn project_names(data: &SourceData) -> Vec<String> {
    let SourceData::Cloud { projects, .. } = data else {
        panic!("the dummy source produces a cloud")
    };
    projects
        .projects
        .iter()
        .map(|p| p.project.name.clone())
        .collect()
}

#[tokio::test]
async fn file_is_reloaded_when_it_changes_and_invalid_edits_fail_the_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.yaml");
    write(&path, "domains: [{name: d, projects: [{name: one}]}]\n");
    let now = SystemTime::now();
    let mut source = DummySource::new(
        &config(&path),
        LegacyOptions::default(),
        WeightsInput::None,
        now,
    )
    .unwrap();
    assert_eq!(project_names(&source.collect(now).await.unwrap()), ["one"]);

    write(
        &path,
        "domains: [{name: d, projects: [{name: one}, {name: two}]}]\n",
    );
    assert_eq!(
        project_names(&source.collect(now).await.unwrap()),
        ["one", "two"]
    );

    write(
        &path,
        "domains: [{name: d, projects: [{name: one}, {name: two}]\n",
    );
    let err = source.collect(now).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("dummy file {}", path.display())),
        "{err}"
    );
    // Still invalid on the next refresh: still an error, never a silent success.
    assert!(source.collect(now).await.is_err());
    // The last good cloud is intact underneath.
    assert_eq!(project_names(&source.snapshot(now)), ["one", "two"]);

    std::fs::remove_file(&path).unwrap();
    let err = source.collect(now).await.unwrap_err().to_string();
    assert!(err.contains("cannot read dummy file"), "{err}");

    write(&path, "domains: [{name: d, projects: [{name: three}]}]\n");
    assert_eq!(
        project_names(&source.collect(now).await.unwrap()),
        ["three"]
    );
}

#[test]
fn simple_vm_project_is_split_by_tag_and_deleted_servers_keep_counting() {
    let text = "
usage_start: 2024-01-01T00:00:00Z
domains:
  - name: elixir
    projects:
      - name: pool
        id: pool-id
        servers:
          - {name: a, vcpus: 2, ram_mb: 2048, created: 2024-01-02T00:00:00Z, metadata: {project_name: genomics}}
          - {name: b, vcpus: 1, ram_mb: 1024, created: 2024-01-03T00:00:00Z, deleted: 2024-01-04T00:00:00Z, metadata: {project_name: teaching}}
          - {name: c, vcpus: 4, ram_mb: 4096, created: 2024-01-05T00:00:00Z}
      - name: other
        servers:
          - {name: d, vcpus: 1, ram_mb: 1024, created: 2024-01-09T00:00:00Z, metadata: {project_name: genomics}}
";
    let now = at("2024-01-10T00:00:00Z");
    let cloud = file::parse(text, now).unwrap();
    let options = LegacyOptions {
        memory_unit: MemoryUnit::Gib,
        simple_vm: Some(crate::legacy::SimpleVm {
            project_id: "pool-id".into(),
            tag: "project_name".into(),
        }),
    };
    let snap = cloud.projects(now, &options, &Weights::default());
    let got: Vec<(&str, &str, f64)> = snap
        .legacy
        .iter()
        .map(|s| {
            (
                s.project.id.as_str(),
                s.project.name.as_str(),
                s.usage.vcpu_hours,
            )
        })
        .collect();
    let other_id = snap.projects[1].project.id.as_str();
    // a: 8 days × 2 vCPUs; b: deleted after 1 day, still counted; c has no tag: left out.
    assert_eq!(
        got,
        [
            ("pool-id", "genomics", 8.0 * 24.0 * 2.0),
            ("pool-id", "teaching", 24.0),
            (other_id, "other", 24.0)
        ]
    );
    // Our own families are not split.
    assert_eq!(snap.projects.len(), 2);
    assert_eq!(
        snap.projects[0].totals.vcpu_seconds,
        (8.0 * 24.0 * 2.0 + 24.0 + 5.0 * 24.0 * 4.0) * 3600.0
    );
}

#[tokio::test]
async fn the_portal_start_date_wins_and_the_source_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.toml");
    write(&path, "[d]\ndomain_id = \"d\"\n[[d.projects]]\nproject_name = \"alpha\"\nmachines = [{cpus = 2, ram = 4, existence = true}]\n");
    let url = crate::test_support::scripted_http(vec![
        (503, "later"),
        (200, r#"[{"start_date": "2024-01-01"}]"#),
    ])
    .await;
    let mut config = config(&path);
    config.usage_start = Some("2023-06-01".into());
    config.usage_start_url = Some(format!("{url}/api/start/"));
    let mut source = DummySource::new(
        &config,
        LegacyOptions::default(),
        WeightsInput::None,
        SystemTime::UNIX_EPOCH,
    )
    .unwrap();
    let now = at("2024-01-01T10:00:00Z");
    let err = source.collect(now).await.unwrap_err().to_string();
    assert!(err.ends_with("/api/start/: HTTP 503"), "{err}");
    let data = source.collect(now).await.unwrap();
    let SourceData::Cloud { projects, .. } = data else {
        panic!()
    };
    // existence = true counts from the portal's start, not from dummy.usage_start.
    assert_eq!(projects.legacy[0].usage.vcpu_hours, 20.0);
}

/// The format follows the extension when it names one, else the content: the original's
/// stress files are TOML named `dummy_cc_site_a.toml.10000`.
#[tokio::test]
async fn format_comes_from_the_extension_or_else_the_content() {
    const TOML: &str = "[default]\ndomain_id = \"default\"\n[[default.projects]]\nproject_name = \"from-toml\"\nproject_id = \"p1\"\nmachines = [{ram = 8, cpus = 2, existence = true, instance_id = \"1\"}]\n";
    const YAML: &str = "domains: [{name: d, projects: [{name: from-yaml}]}]\n";
    struct Case {
        file: &'static str,
        text: &'static str,
        want: Result<&'static str, &'static str>,
    }
    let cases = [
        Case {
            file: "dummy_cc_site_a.toml.10000",
            text: TOML,
            want: Ok("from-toml"),
        },
        Case {
            file: "cloud",
            text: TOML,
            want: Ok("from-toml"),
        },
        Case {
            file: "cloud.toml",
            text: TOML,
            want: Ok("from-toml"),
        },
        Case {
            file: "cloud.txt",
            text: YAML,
            want: Ok("from-yaml"),
        },
        Case {
            file: "cloud",
            text: YAML,
            want: Ok("from-yaml"),
        },
        // Neither format: the error of the format whose syntax the text has.
        Case {
            file: "cloud",
            text: "[d]\nprojects = 3\n",
            want: Err("expected a sequence"),
        },
        Case {
            file: "cloud",
            text: "domains: [{name: d, projects: 3}]\n",
            want: Err("domains[0].projects: invalid type"),
        },
        // A named format is not second-guessed.
        Case {
            file: "cloud.yaml",
            text: TOML,
            want: Err("dummy file"),
        },
        Case {
            file: "cloud.toml",
            text: YAML,
            want: Err("dummy file"),
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    for case in cases {
        let path = dir.path().join(case.file);
        write(&path, case.text);
        let got = match DummySource::new(
            &config(&path),
            LegacyOptions::default(),
            WeightsInput::None,
            now,
        ) {
            Ok(mut source) => source
                .collect(now)
                .await
                .map(|d| project_names(&d).join(","))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match (got, case.want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{}", case.file),
            (Err(got), Err(want)) => assert!(got.contains(want), "{}: {got}", case.file),
            (got, want) => panic!("{}: got {got:?}, want {want:?}", case.file),
        }
        std::fs::remove_file(&path).unwrap();
    }
}
