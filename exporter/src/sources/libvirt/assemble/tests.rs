//! Assembly with a fake domain: bulk and per-domain paths agree, NOWAIT gaps are not refilled,
//! failures stay with their guest or device.

use std::cell::RefCell;

use super::*;
use crate::snapshot::NovaMetadata;
use crate::sources::libvirt::params::{decode, parse_virsh_raw};

/// Per-domain answers for a fake domain, and a log of the calls made.
#[derive(Default)]
struct Fake {
    info: Option<(GuestState, GuestInfo)>,
    gone: bool,
    memory: Option<MemoryStats>,
    vcpus: Vec<VcpuStats>,
    blocks: Vec<BlockStats>,
    interfaces: Vec<InterfaceStats>,
    calls: RefCell<Vec<String>>,
}

impl Fake {
    fn call(&self, what: &str) -> Result<(), CallError> {
        self.calls.borrow_mut().push(what.to_string());
        if self.gone {
            Err(CallError::Gone)
        } else {
            Ok(())
        }
    }
}

impl PerDomain for Fake {
    fn info(&self) -> Result<(GuestState, GuestInfo), CallError> {
        self.call("info")?;
        self.info.ok_or(CallError::Failed("no info".into()))
    }
    fn memory(&self) -> Result<Option<MemoryStats>, CallError> {
        self.call("memory")?;
        Ok(self.memory)
    }
    fn vcpus(&self, count: u64) -> Result<Vec<VcpuStats>, CallError> {
        self.call(&format!("vcpus {count}"))?;
        Ok(self.vcpus.clone())
    }
    fn block(&self, target: &str) -> Result<BlockStats, CallError> {
        self.call(&format!("block {target}"))?;
        self.blocks
            .iter()
            .find(|b| b.target_device == target)
            .cloned()
            .ok_or(CallError::Failed(format!("invalid path: {target}")))
    }
    fn interface(&self, target: &str) -> Result<InterfaceStats, CallError> {
        self.call(&format!("interface {target}"))?;
        self.interfaces
            .iter()
            .find(|i| i.target_device == target)
            .cloned()
            .ok_or(CallError::Failed(format!(
                "not a known interface: {target}"
            )))
    }
}

fn decoded(text: &str) -> Decoded {
    let records = parse_virsh_raw(text);
    decode(&records[0].1)
}

const ALL: Support = Support {
    cpu: true,
    balloon: true,
    vcpu: true,
    block: true,
    net: true,
};
const NONE: Support = Support {
    cpu: false,
    balloon: false,
    vcpu: false,
    block: false,
    net: false,
};

/// A running guest as a full bulk record (what qemu returns).
const BULK: &str = "Domain: 'g'
  state.state=1
  cpu.time=12500000000
  balloon.current=1024
  balloon.maximum=2048
  balloon.available=1000
  balloon.unused=500
  balloon.usable=600
  balloon.rss=700
  vcpu.current=2
  vcpu.0.time=4000000000
  vcpu.1.time=5000000000
  block.count=2
  block.0.name=vda
  block.0.rd.reqs=1
  block.0.rd.bytes=2
  block.0.wr.reqs=3
  block.0.wr.bytes=4
  block.0.capacity=5
  block.1.name=vdb
  block.1.rd.reqs=6
  block.1.capacity=7
  net.count=1
  net.0.name=tap0
  net.0.rx.bytes=8
  net.0.tx.drop=9
";

fn xml() -> DomainXml {
    DomainXml {
        nova: Some(NovaMetadata {
            instance_name: "vm".into(),
            ..NovaMetadata::default()
        }),
        disks: vec!["vda".into(), "vdb".into()],
        interfaces: vec!["tap0".into()],
    }
}

/// The same guest as per-domain calls report it (what the test driver does).
fn per_domain() -> Fake {
    let bulk = decoded(BULK);
    Fake {
        info: Some((
            GuestState::Running,
            GuestInfo {
                virtual_cpus: 2,
                maximum_memory_bytes: 2048 * 1024,
                memory_usage_bytes: 1024 * 1024,
                cpu_time_seconds: 12.5,
            },
        )),
        memory: bulk.balloon.map(|b| b.memory),
        vcpus: bulk.vcpu.map(|v| v.times).unwrap_or_default(),
        blocks: bulk.blocks.unwrap_or_default(),
        interfaces: bulk.interfaces.unwrap_or_default(),
        ..Fake::default()
    }
}

fn build(d: Decoded, support: Support, calls: &Fake) -> Result<Option<Guest>, CallError> {
    assemble("g".into(), "uuid-1".into(), d, support, &xml(), calls)
}

#[test]
fn bulk_and_per_domain_paths_give_the_same_guest() {
    let bulk_calls = Fake::default();
    let from_bulk = build(decoded(BULK), ALL, &bulk_calls)
        .expect("ok")
        .expect("guest");
    assert!(
        bulk_calls.calls.borrow().is_empty(),
        "the bulk path makes no per-domain call"
    );

    let fallback = per_domain();
    let state_only = decoded("Domain: 'g'\n  state.state=1\n  state.reason=1\n");
    let from_calls = build(state_only, NONE, &fallback)
        .expect("ok")
        .expect("guest");
    assert_eq!(
        *fallback.calls.borrow(),
        [
            "info",
            "vcpus 2",
            "memory",
            "block vda",
            "block vdb",
            "interface tap0"
        ]
    );
    assert_eq!(from_bulk, from_calls);
    assert_eq!(
        from_bulk.openstack.as_ref().map(|m| m.instance_id.as_str()),
        Some("uuid-1")
    );
    assert_eq!(from_bulk.blocks.len(), 2);
    assert_eq!(from_bulk.vcpus.len(), 2);
}

#[test]
fn guests_not_running_get_no_counters_and_no_counter_calls() {
    for state in [GuestState::Paused, GuestState::Shutoff, GuestState::Crashed] {
        let fake = Fake {
            info: Some((state, GuestInfo::default())),
            ..per_domain()
        };
        let d = decoded(&format!("Domain: 'g'\n  state.state={}\n", state.code()));
        let g = build(d, NONE, &fake).expect("ok").expect("guest");
        assert_eq!(g.state, state);
        assert!(g.vcpus.is_empty() && g.blocks.is_empty() && g.interfaces.is_empty());
        assert_eq!(g.memory, None);
        assert!(g.openstack.is_some());
        assert_eq!(*fake.calls.borrow(), ["info"], "{state:?}");
    }
}

#[test]
fn a_group_left_out_under_nowait_is_not_asked_for_again() {
    // The driver returns block stats (ALL), but not for this guest: its job lock was held.
    let fake = per_domain();
    let d = decoded("Domain: 'g'\n  state.state=1\n  cpu.time=1\n  balloon.current=1\n  balloon.maximum=1\n  vcpu.current=1\n");
    let g = build(d, ALL, &fake).expect("ok").expect("guest");
    assert!(fake.calls.borrow().is_empty(), "{:?}", fake.calls.borrow());
    assert!(g.blocks.is_empty() && g.interfaces.is_empty() && g.vcpus.is_empty());
}

#[test]
fn failures_stay_local() {
    struct Case {
        name: &'static str,
        fake: Fake,
        want: Result<Option<usize>, CallError>,
    }
    let cases = [
        Case {
            name: "gone before info: skipped quietly",
            fake: Fake {
                gone: true,
                ..per_domain()
            },
            want: Ok(None),
        },
        Case {
            name: "info fails: the guest is an error",
            fake: Fake {
                info: None,
                ..per_domain()
            },
            want: Err(CallError::Failed("no info".into())),
        },
        Case {
            name: "one disk fails: the other stays",
            fake: Fake {
                blocks: vec![BlockStats {
                    target_device: "vdb".into(),
                    ..BlockStats::default()
                }],
                ..per_domain()
            },
            want: Ok(Some(1)),
        },
    ];
    let state_only = || decoded("Domain: 'g'\n  state.state=1\n");
    for case in cases {
        let got = build(state_only(), NONE, &case.fake).map(|g| g.map(|g| g.blocks.len()));
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[test]
fn support_is_judged_over_running_guests() {
    let running = decoded("Domain: 'a'\n  state.state=1\n  block.count=0\n  net.count=0\n");
    let off = decoded("Domain: 'b'\n  state.state=5\n  cpu.time=1\n  vcpu.current=1\n");
    assert_eq!(
        Support::of([&running, &off]),
        Support {
            cpu: false,
            balloon: false,
            vcpu: true,
            block: true,
            net: true,
        }
    );
    assert_eq!(Support::of([]), NONE);
}
