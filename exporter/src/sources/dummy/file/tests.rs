#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

const ANCHOR_SECS: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z

fn anchor() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(ANCHOR_SECS)
}

#[test]
fn times() {
    struct Case {
        input: &'static str,
        want: Result<i64, &'static str>,
    }
    let cases = [
        Case {
            input: "now",
            want: Ok(0),
        },
        Case {
            input: "-3d",
            want: Ok(-3 * 86_400),
        },
        Case {
            input: "+10m",
            want: Ok(600),
        },
        Case {
            input: " -1h 30m ",
            want: Ok(-5400),
        },
        Case {
            input: "2023-11-14",
            want: Ok(-(22 * 3600 + 13 * 60 + 20)),
        },
        Case {
            input: "2023-11-14T22:13:21Z",
            want: Ok(1),
        },
        Case {
            input: "2023-11-14 22:13:20",
            want: Ok(0),
        },
        // One date parser for every input: offsets are honoured.
        Case {
            input: "2023-11-14T22:13:20+01:00",
            want: Ok(-3600),
        },
        // Offsets that leave the representable range are errors, not panics.
        Case {
            input: "+300000000000y",
            want: Err("too far in the future"),
        },
        Case {
            input: "-300000000000y",
            want: Err("before 1970"),
        },
        Case {
            input: "yesterday",
            want: Err("invalid time 'yesterday'"),
        },
        Case {
            input: "-3 fortnights",
            want: Err("invalid relative time"),
        },
        Case {
            input: "2023-13-01",
            want: Err("invalid date"),
        },
    ];
    for case in cases {
        let got = time(case.input, anchor()).map(|t| {
            let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
            secs - ANCHOR_SECS as i64
        });
        match (got, case.want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "input {:?}", case.input),
            (Err(got), Err(want)) => {
                assert!(
                    got.contains(want),
                    "input {:?}: {got:?} lacks {want:?}",
                    case.input
                )
            }
            (got, want) => panic!("input {:?}: got {got:?}, want {want:?}", case.input),
        }
    }
}

#[test]
fn parses_a_cloud_with_derived_and_given_ids() {
    let text = "
usage_start: -10d
flavors:
  small: {vcpus: 2, ram_mb: 4096, disk_gb: 20, ephemeral_gb: 5}
domains:
  - name: Default
    projects:
      - name: p1
        servers:
          - {name: a, flavor: small, created: -2d, deleted: -1d, status: SHUTOFF, metadata: {project_name: x}}
          - {name: b, vcpus: 1, ram_mb: 512}
  - name: other
    id: given-domain-id
    projects:
      - {name: p2, id: given-project-id, enabled: false}
";
    let cloud = parse(text, anchor()).unwrap();
    assert_eq!(
        cloud.usage_start,
        anchor() - Duration::from_secs(10 * 86_400)
    );
    let d0 = &cloud.domains[0];
    assert_eq!(d0.id, "default");
    let p1 = &d0.projects[0];
    assert_eq!(p1.id.len(), 32);
    assert!(p1.id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(p1.enabled);
    let a = &p1.servers[0];
    assert_eq!(a.status, "shutoff");
    assert_eq!(a.flavor.vcpus, 2);
    assert_eq!(a.flavor.ephemeral_gb, 5);
    assert_eq!(a.created, anchor() - Duration::from_secs(2 * 86_400));
    assert_eq!(a.deleted, Some(anchor() - Duration::from_secs(86_400)));
    assert_eq!(
        a.metadata.get("project_name").map(String::as_str),
        Some("x")
    );
    assert_eq!(a.id.len(), 36);
    let b = &p1.servers[1];
    assert_eq!(
        b.created, cloud.usage_start,
        "created defaults to the accounting start"
    );
    assert_eq!(b.status, "active");
    assert_eq!(b.user, "demo");
    assert_eq!(cloud.domains[1].id, "given-domain-id");
    assert_eq!(cloud.domains[1].projects[0].id, "given-project-id");
    assert!(!cloud.domains[1].projects[0].enabled);
    // The same text gives the same ids; another name gives another id.
    let again = parse(text, anchor()).unwrap();
    assert_eq!(again.domains[0].projects[0].id, p1.id);
    assert_ne!(derived_id(&["project", "Default", "p2"]), p1.id);
}

#[test]
fn invalid_files_name_the_place() {
    let server = |s: &str| {
        format!("flavors: {{f: {{vcpus: 1, ram_mb: 1}}}}\ndomains:\n  - name: d\n    projects:\n      - name: p\n        servers:\n          - {s}\n")
    };
    // (case, file text, what the error must say)
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown key", "domains: []\nextra: 1\n".into(), "unknown field `extra`"),
        ("no domains", "usage_start: -1d\n".into(), "missing field `domains`"),
        ("bad usage_start", "usage_start: tomorrow\ndomains: []\n".into(), "usage_start: invalid time 'tomorrow'"),
        ("duplicate domain", "domains: [{name: a}, {name: a}]\n".into(), "domains[1] (a): a domain of that name is already defined"),
        ("duplicate project", "domains: [{name: a, projects: [{name: p}, {name: p}]}]\n".into(), "domains[0] (a).projects[1] (p): a project of that name"),
        ("empty project name", "domains: [{name: a, projects: [{name: ''}]}]\n".into(), "name is empty"),
        ("wrong type", "domains: [{name: a, projects: [{name: p, enabled: maybe}]}]\n".into(), "invalid type"),
        ("unknown flavor", server("{name: s, flavor: big}"), "domains[0] (d).projects[0] (p).servers[0] (s): flavor 'big' is not in the flavors table"),
        ("bad status", server("{name: s, flavor: f, status: sleeping}"), "status 'sleeping' is not a Nova server status"),
        ("deleted before created", server("{name: s, flavor: f, created: -1d, deleted: -2d}"), "deleted is before created"),
        ("flavor and inline", server("{name: s, flavor: f, vcpus: 2}"), "either flavor or vcpus"),
        ("nothing about size", server("{name: s, vcpus: 2}"), "needs a flavor, or at least vcpus and ram_mb"),
        ("bad created", server("{name: s, flavor: f, created: later}"), "created: invalid time 'later'"),
        // Found by tests/properties.rs: sizes whose bytes overflow u64 panicked in the
        // snapshot, and a huge vCPU count allocated one series per vCPU.
        ("disk bytes overflow", server("{name: s, vcpus: 1, ram_mb: 1, disk_gb: 18446744073709551615}"), "servers[0] (s): disk 18446744073709551615 + 0 GiB"),
        ("disk sum overflows", server("{name: s, vcpus: 1, ram_mb: 1, disk_gb: 9223372036854775808, ephemeral_gb: 9223372036854775808}"), "disk 9223372036854775808 + 9223372036854775808 GiB"),
        ("ram bytes overflow", server("{name: s, vcpus: 1, ram_mb: 17592186044416}"), "ram_mb 17592186044416"),
        ("too many vcpus", server("{name: s, vcpus: 4097, ram_mb: 1}"), "vcpus 4097 is more than 4096"),
    ];
    for (name, text, want) in cases {
        let err = parse(&text, anchor()).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(want), "case {name:?}: {err:?} lacks {want:?}");
    }
}

#[test]
fn builtin_cloud_is_valid_and_varied() {
    let cloud = parse(crate::sources::dummy::BUILTIN, anchor()).unwrap();
    let names: Vec<&str> = cloud.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["default", "elixir"]);
    let servers: Vec<_> = cloud
        .domains
        .iter()
        .flat_map(|d| &d.projects)
        .flat_map(|p| &p.servers)
        .collect();
    assert!((20..=30).contains(&servers.len()), "{}", servers.len());
    let now = anchor();
    assert!(
        servers.iter().any(|s| s.created < cloud.usage_start),
        "running since before start"
    );
    assert!(servers.iter().any(|s| s.created > now), "created later");
    assert!(
        servers.iter().any(|s| s.deleted.is_some_and(|d| d < now)),
        "deleted in the past"
    );
    assert!(servers.iter().any(|s| s.status == "error"), "one in error");
}
