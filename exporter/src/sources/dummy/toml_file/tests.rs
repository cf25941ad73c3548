#![allow(clippy::unwrap_used)]

use super::*;
use crate::legacy::LegacyOptions;
use crate::weights::Weights;

fn at(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).unwrap()
}

/// Every `existence` form, against an accounting start of 2024-01-01 and a clock at
/// 2024-01-11 (240 hours later).
const CLOUD: &str = r#"
[default]
domain_id = "default"

[[default.projects]]
project_name = "alpha"
project_id = "alpha-id"
machines = [
    {ram = 8, cpus = 2, existence = true, instance_id = "m1"},
    {ram = 8, cpus = 4, existence = false, instance_id = "m2"},
    {ram = 16, cpus = 2, existence = 2024-01-06T02:00:00+02:00, instance_id = "m3"},
    {ram = 4, cpus = 8, existence = [2023-12-20T00:00:00, 2024-01-02T12:00:00], instance_id = "m4"},
    {ram = 4, cpus = 8, existence = [2024-01-12T00:00:00, 2024-01-13T00:00:00], instance_id = "m5"},
    {ram = 2, cpus = 1, existence = 2023-06-01, instance_id = "m6"},
    {ram = 2, cpus = 1, existence = [2023-01-01T00:00:00, 2023-02-01T00:00:00], instance_id = "m7"},
]

[elixir]
domain_id = "elixir-id"

[[elixir.projects]]
project_name = "pool"
project_id = "pool-id"

    [[elixir.projects.machines]]
    cpus = 2
    existence = true
    instance_id = "m8"
    metadata = {project_name = "MySVM", project_id = ""}
"#;

/// Set 1 from 2023-11-14, set 2 from 2024-01-03T16:40:00Z (listed newest first, as the
/// original's file does).
const WEIGHTS: &str = r#"
[[weights]]
resource_set_timestamp = 1704300000
vcpus = [{value = 2, weight = 0.5}, {value = 8, weight = 3}]
memory_mb = []

[[weights]]
resource_set_timestamp = 1700000000
vcpus = [{value = 2, weight = 1}, {value = 4, weight = 2}]
memory_mb = [{value = 8, weight = 1}, {value = 16, weight = 1.5}]
"#;

#[test]
fn parses_every_existence_form() {
    let start = at("2024-01-01T00:00:00Z");
    let cloud = parse(CLOUD, start).unwrap();
    let names: Vec<(&str, &str)> = cloud
        .domains
        .iter()
        .map(|d| (d.name.as_str(), d.id.as_str()))
        .collect();
    assert_eq!(
        names,
        [("default", "default"), ("elixir", "elixir-id")],
        "file order kept"
    );
    let alpha = &cloud.domains[0].projects[0];
    let ids: Vec<&str> = alpha.servers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        ["m1", "m3", "m4", "m5", "m6", "m7"],
        "existence = false is no server"
    );
    let m1 = &alpha.servers[0];
    assert_eq!((m1.created, m1.deleted), (start, None));
    assert_eq!(m1.flavor.ram_mb, 8192);
    assert_eq!(
        alpha.servers[1].created,
        at("2024-01-06T00:00:00Z"),
        "the offset is honoured"
    );
    assert_eq!(alpha.servers[2].deleted, Some(at("2024-01-02T12:00:00Z")));
    assert_eq!(
        alpha.servers[4].created,
        at("2023-06-01T00:00:00Z"),
        "a date is its midnight"
    );
    let m8 = &cloud.domains[1].projects[0].servers[0];
    assert_eq!(
        (m8.flavor.vcpus, m8.flavor.ram_mb),
        (2, 8 * 1024),
        "ram defaults to 8 GiB"
    );
    assert_eq!(
        m8.metadata.get("project_name").map(String::as_str),
        Some("MySVM")
    );
}

#[test]
fn legacy_values_worked_out_by_hand() {
    let cloud = parse(CLOUD, at("2024-01-01T00:00:00Z")).unwrap();
    let weights = Weights::from_toml(WEIGHTS).unwrap();
    let snap = cloud.projects(
        at("2024-01-11T00:00:00Z"),
        &LegacyOptions::default(),
        &weights,
    );
    let alpha = &snap.projects[0];
    assert_eq!(alpha.project.id, "alpha-id");
    // m1: 240 h since the start, started with it (set 1): 2 vCPUs weigh 1, 8 GiB weigh 1.
    // m3: 120 h, started 2024-01-06 (set 2): 2 vCPUs weigh 0.5; no memory list, weight 1.
    // m4: 36 h (start to stop), started 2023-12-20 (set 1): 8 vCPUs are above every value,
    //     so the largest (4) gives 2; 4 GiB weigh 1.
    // m5: not booted yet. m6: 240 h, started before every set (set 1): 1 vCPU -> 1, 2 GiB -> 1.
    // m7: stopped before the start: nothing.
    let vcpu = 240.0 * 2.0 * 1.0 + 120.0 * 2.0 * 0.5 + 36.0 * 8.0 * 2.0 + 240.0 * 1.0 * 1.0;
    let memory = 240.0 * 8.0 * 1.0 + 120.0 * 16.0 * 1.0 + 36.0 * 4.0 * 1.0 + 240.0 * 2.0 * 1.0;
    assert_eq!((vcpu, memory), (1416.0, 4464.0));
    assert_eq!(snap.legacy[0].project.id, "alpha-id");
    assert_eq!(snap.legacy[0].usage.vcpu_hours, vcpu);
    assert_eq!(snap.legacy[0].usage.memory_hours, memory);
    // Without weights, the plain sums.
    let plain = cloud.projects(
        at("2024-01-11T00:00:00Z"),
        &LegacyOptions::default(),
        &Weights::default(),
    );
    assert_eq!(
        plain.legacy[0].usage.vcpu_hours,
        240.0 * 2.0 + 120.0 * 2.0 + 36.0 * 8.0 + 240.0
    );
}

#[test]
fn invalid_files_name_the_place() {
    let cases = [
        ("not TOML", "[a\n", "TOML"),
        ("domain not a table", "a = 1\n", "line 1, column 5\n  |\n1 | a = 1\n  |     ^\ninvalid type: integer `1`, expected a table (a domain)"),
        ("projects not an array", "[a]\nprojects = 3\n", "line 2, column 12\n  |\n2 | projects = 3\n  |            ^\ninvalid type: integer `3`, expected a sequence"),
        ("zero cpus", "[a]\n[[a.projects]]\nmachines = [{cpus = 0}]\n", "[a].projects[0].machines[0].cpus: must be a positive integer"),
        ("bad existence", "[a]\n[[a.projects]]\nmachines = [{existence = \"yes\"}]\n", "line 3, column 26\n  |\n3 | machines = [{existence = \"yes\"}]\n  |                          ^^^^^\ninvalid type: string \"yes\", expected true, false, a time or [start, stop]"),
        ("reversed pair", "[a]\n[[a.projects]]\nmachines = [{existence = [2024-01-02T00:00:00, 2024-01-01T00:00:00]}]\n", "the first time must not be after the second"),
        ("pair of three", "[a]\n[[a.projects]]\nmachines = [{existence = [2024-01-01T00:00:00, 2024-01-02T00:00:00, 2024-01-03T00:00:00]}]\n", "a pair must be [start, stop]"),
        ("time without a date", "[a]\n[[a.projects]]\nmachines = [{existence = 10:00:00}]\n", "has no date"),
        ("project id not a string", "[a]\n[[a.projects]]\nproject_id = 5\n", "line 3, column 14\n  |\n3 | project_id = 5\n  |              ^\ninvalid type: integer `5`, expected a string"),
        // Found by tests/properties.rs: a ram whose MiB overflow u64 panicked, and a huge cpu
        // count allocated one series per vCPU.
        ("ram overflows", "[a]\n[[a.projects]]\nmachines = [{ram = 9223372036854775807}]\n", "[a].projects[0].machines[0].ram: 9223372036854775807 GiB"),
        ("ram bytes overflow", "[a]\n[[a.projects]]\nmachines = [{ram = 17179869184}]\n", "[a].projects[0].machines[0]: ram_mb 17592186044416"),
        ("too many cpus", "[a]\n[[a.projects]]\nmachines = [{cpus = 4097}]\n", "[a].projects[0].machines[0]: vcpus 4097 is more than 4096"),
    ];
    let mut failed = Vec::new();
    for (name, text, want) in cases {
        let err = parse(text, SystemTime::UNIX_EPOCH)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        if !err.contains(want) {
            failed.push(format!("case {name}: {err:?} lacks {want:?}"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn the_original_stress_file_parses_and_counts() {
    // The original's dev stack ships dummy_cc_site_a.toml.N; a small slice of that shape.
    let mut text = String::from("[default]\ndomain_id = \"default\"\n");
    for p in 0..3 {
        text.push_str(&format!(
            "[[default.projects]]\nproject_name=\"test{p}\"\nproject_id=\"test{p}\"\nmachines= [\n"
        ));
        for m in 0..5 {
            text.push_str(&format!(
                "    {{ram = 8, cpus = {}, existence = true, instance_id = \"{}\"}},\n",
                2 + 2 * (m % 2),
                p * 5 + m
            ));
        }
        text.push_str("]\n");
    }
    let start = at("2024-01-01T00:00:00Z");
    let cloud = parse(&text, start).unwrap();
    let snap = cloud.projects(
        at("2024-01-01T10:00:00Z"),
        &LegacyOptions::default(),
        &Weights::default(),
    );
    assert_eq!(snap.projects.len(), 3);
    assert_eq!(snap.legacy.len(), 3);
    for s in &snap.legacy {
        // 10 h × (2 + 4 + 2 + 4 + 2) vCPUs; 10 h × 5 × 8 GiB.
        assert_eq!(s.usage.vcpu_hours, 140.0);
        assert_eq!(s.usage.memory_hours, 400.0);
    }
}
