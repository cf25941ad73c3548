#![allow(clippy::unwrap_used)]

use super::*;
use crate::sources::openstack::nova::{ServerUsage, TenantUsage};

const CLOUD: &str = "http://127.0.0.1:5000/v3";

fn accounting(start: u64) -> Accounting {
    let mut acc = Accounting::new(UNIX_EPOCH + std::time::Duration::from_secs(start));
    let usage = TenantUsage {
        tenant_id: "p".into(),
        server_usages: vec![ServerUsage {
            instance_id: "s".into(),
            hours: 1.25,
            vcpus: 2,
            memory_mb: 2048,
            local_gb: 10,
            ..Default::default()
        }],
    };
    acc.apply_window(
        UNIX_EPOCH + std::time::Duration::from_secs(start + 7200),
        &[usage],
    )
    .unwrap();
    acc
}

#[test]
fn round_trip_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    assert_eq!(load(&path, CLOUD).unwrap(), Loaded::Missing);
    let acc = accounting(1000);
    save(&path, CLOUD, &acc, &Stopped::default()).unwrap();
    assert_eq!(
        load(&path, CLOUD).unwrap(),
        Loaded::Resumed(acc, Stopped::default())
    );
    assert!(!dir.path().join("state.json.tmp").exists());
}

#[test]
fn a_state_with_another_start_is_resumed_not_set_aside() {
    // The caller compares the starts and reports the conflict; the data is this cloud's.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let acc = accounting(5000);
    save(&path, CLOUD, &acc, &Stopped::default()).unwrap();
    assert_eq!(
        load(&path, CLOUD).unwrap(),
        Loaded::Resumed(acc, Stopped::default())
    );
}

#[test]
fn a_state_written_by_the_previous_build_resumes() {
    // Version 1 as first released kept unweighted legacy sums per project; they are now
    // recomputed from the server records, so the fields are ignored.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(
        &path,
        r#"{"version":1,"cloud":"http://127.0.0.1:5000/v3","accounting":{"usage_start":1000,"window_end":8200,
           "projects":{"p":{"vcpu_seconds":9000.0,"memory_byte_seconds":9663676416000.0,"disk_byte_seconds":48318382080000.0,
           "instance_seconds":4500.0,"legacy_vcpu_hours":2.5,"legacy_memory_hours":2.5}},
           "servers":{"s":{"project_id":"p","name":"","hours":1.25,"vcpus":2,"memory_mb":2048,"local_gb":10,
           "flavor":null,"started_at":null,"ended_at":null,"state":null,"metadata":{}}}}}"#,
    )
    .unwrap();
    assert_eq!(
        load(&path, CLOUD).unwrap(),
        Loaded::Resumed(accounting(1000), Stopped::default())
    );
}

/// A version-1 state of this cloud with the given fields, written by hand.
fn raw(usage_start: u64, window_end: u64, vcpu_seconds: &str, hours: &str) -> Vec<u8> {
    format!(
        r#"{{"version":1,"cloud":"{CLOUD}","accounting":{{"usage_start":{usage_start},"window_end":{window_end},
           "projects":{{"p":{{"vcpu_seconds":{vcpu_seconds},"memory_byte_seconds":0.0,"disk_byte_seconds":0.0,"instance_seconds":0.0}}}},
           "servers":{{"s":{{"project_id":"p","name":"s","hours":{hours},"vcpus":1,"memory_mb":512,"local_gb":1,
           "flavor":null,"started_at":null,"ended_at":null,"state":null}}}}}}}}"#
    )
    .into_bytes()
}

#[test]
fn untrusted_files_are_set_aside_not_deleted() {
    struct Case {
        name: &'static str,
        input: Vec<u8>,
        want_reason: &'static str,
    }
    let good = |cloud: &str, start: u64, version: u32| {
        serde_json::to_vec(&StateFile {
            version,
            cloud: cloud.into(),
            accounting: accounting(start),
            stopped: Stopped::default(),
        })
        .unwrap()
    };
    let cases = [
        Case {
            name: "corrupt",
            input: b"{\"version\": 1, \"clo".to_vec(),
            want_reason: "not a state file",
        },
        Case {
            name: "not json at all",
            input: b"\x00\x01binary".to_vec(),
            want_reason: "not a state file",
        },
        Case {
            name: "unknown version",
            input: good(CLOUD, 1000, 99),
            want_reason: "unknown version 99",
        },
        Case {
            name: "other cloud",
            input: good("https://other:5000/v3", 1000, VERSION),
            want_reason: "belongs to cloud",
        },
        // Values that parse but would panic or count nonsense later.
        Case {
            name: "window end past any clock",
            input: raw(1000, u64::MAX, "1.0", "1.0"),
            want_reason: "in the future",
        },
        Case {
            name: "start and end past any clock",
            input: raw(u64::MAX - 1, u64::MAX, "1.0", "1.0"),
            want_reason: "in the future",
        },
        Case {
            name: "window end before the start",
            input: raw(5000, 1000, "1.0", "1.0"),
            want_reason: "window end before usage_start",
        },
        Case {
            name: "negative total",
            input: raw(1000, 8200, "-5.0", "1.0"),
            want_reason: "project p: a total is negative",
        },
        Case {
            name: "negative hours",
            input: raw(1000, 8200, "1.0", "-2.0"),
            want_reason: "server s: hours negative",
        },
        Case {
            name: "a total out of range",
            input: raw(1000, 8200, "1e999", "1.0"),
            want_reason: "not a state file",
        },
    ];
    for c in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, &c.input).unwrap();
        match load(&path, CLOUD).unwrap() {
            Loaded::SetAside { reason, moved_to } => {
                assert!(reason.contains(c.want_reason), "{}: {reason}", c.name);
                assert_eq!(std::fs::read(&moved_to).unwrap(), c.input, "{}", c.name);
                assert!(!path.exists(), "{}", c.name);
            }
            other => panic!("{}: {other:?}", c.name),
        }
        // A second set-aside file gets its own name.
        std::fs::write(&path, &c.input).unwrap();
        let Loaded::SetAside { moved_to, .. } = load(&path, CLOUD).unwrap() else {
            panic!("{}", c.name)
        };
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "{}: {moved_to:?}",
            c.name
        );
    }
}

#[test]
fn a_hand_written_plausible_state_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, raw(1000, 8200, "9000.0", "1.25")).unwrap();
    let Loaded::Resumed(acc, _) = load(&path, CLOUD).unwrap() else {
        panic!("resumed")
    };
    assert_eq!(acc.window_end, 8200);
}

#[test]
fn dates_past_any_clock_print_as_numbers() {
    assert_eq!(fmt_epoch(0), "1970-01-01T00:00:00Z");
    assert_eq!(fmt_epoch(u64::MAX), u64::MAX.to_string());
}

#[test]
fn unwritable_directory_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that cannot be created: a regular file stands in its way.
    std::fs::write(dir.path().join("missing-dir"), "a file").unwrap();
    let path = dir.path().join("missing-dir").join("state.json");
    let err = save(&path, CLOUD, &accounting(0), &Stopped::default()).unwrap_err();
    assert!(err.to_string().contains("missing-dir"), "{err}");
}

#[test]
fn stopped_servers_survive_a_restart_and_old_files_load_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let stopped = Stopped {
        seen_at: Some(8200),
        servers: [(
            "s".to_owned(),
            crate::sources::openstack::stopped::Since {
                status: "shelved_offloaded".into(),
                since: 4000,
            },
        )]
        .into(),
    };
    save(&path, CLOUD, &accounting(1000), &stopped).unwrap();
    assert_eq!(
        load(&path, CLOUD).unwrap(),
        Loaded::Resumed(accounting(1000), stopped)
    );
    // A file of the build before: no `stopped` key, nothing else lost.
    std::fs::write(&path, raw(1000, 8200, "9000.0", "1.25")).unwrap();
    let Loaded::Resumed(acc, stopped) = load(&path, CLOUD).unwrap() else {
        panic!("resumed")
    };
    assert_eq!(acc.projects["p"].vcpu_seconds, 9000.0);
    assert_eq!(stopped, Stopped::default());
}
