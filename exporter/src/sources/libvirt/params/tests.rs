//! Decoder tables on `virsh domstats --raw` style `key=value` lists.

use super::*;

/// What `virsh domstats --raw` prints for a running KVM guest (libvirt 9, trimmed).
const QEMU_RUNNING: &str = "Domain: 'instance-0000002a'
  state.state=1
  state.reason=1
  cpu.time=1234567890123
  cpu.user=1000000000
  cpu.system=2000000000
  balloon.current=4194304
  balloon.maximum=8388608
  balloon.swap_in=0
  balloon.available=4030000
  balloon.unused=3500000
  balloon.usable=3600000
  balloon.last-update=1700000000
  balloon.disk_caches=100000
  balloon.rss=1500000
  vcpu.current=2
  vcpu.maximum=4
  vcpu.0.state=1
  vcpu.0.time=600000000000
  vcpu.0.wait=0
  vcpu.1.state=1
  vcpu.1.time=500500000000
  net.count=2
  net.0.name=tap5a1b2c3d-4e
  net.0.rx.bytes=1000
  net.0.rx.pkts=10
  net.0.rx.errs=1
  net.0.rx.drop=2
  net.0.tx.bytes=2000
  net.0.tx.pkts=20
  net.0.tx.errs=3
  net.0.tx.drop=4
  net.1.name=tap6b2c3d4e-5f
  net.1.rx.bytes=5
  net.1.tx.pkts=7
  block.count=2
  block.0.name=vda
  block.0.path=/var/lib/nova/instances/x/disk
  block.0.backingIndex=1
  block.0.rd.reqs=100
  block.0.rd.bytes=409600
  block.0.rd.times=2500000000
  block.0.wr.reqs=50
  block.0.wr.bytes=204800
  block.0.wr.times=500000000
  block.0.fl.reqs=5
  block.0.allocation=1000
  block.0.capacity=42949672960
  block.0.physical=2000
  block.1.name=vdb
  block.1.rd.reqs=1
";

fn decode_one(text: &str) -> Decoded {
    let records = parse_virsh_raw(text);
    assert_eq!(records.len(), 1, "one record in {text:?}");
    decode(&records[0].1)
}

#[test]
fn a_full_qemu_record() {
    let got = decode_one(QEMU_RUNNING);
    let want = Decoded {
        state: Some(GuestState::Running),
        cpu_time_seconds: Some(1234.567890123),
        balloon: Some(Balloon {
            current_bytes: Some(4194304 * 1024),
            maximum_bytes: Some(8388608 * 1024),
            memory: MemoryStats {
                actual_balloon_bytes: Some(4194304 * 1024),
                available_bytes: Some(4030000 * 1024),
                unused_bytes: Some(3500000 * 1024),
                usable_bytes: Some(3600000 * 1024),
                rss_bytes: Some(1500000 * 1024),
            },
        }),
        vcpu: Some(Vcpus {
            current: Some(2),
            times: vec![
                VcpuStats {
                    vcpu: 0,
                    time_seconds: 600.0,
                },
                VcpuStats {
                    vcpu: 1,
                    time_seconds: 500.5,
                },
            ],
        }),
        blocks: Some(vec![
            BlockStats {
                target_device: "vda".into(),
                read_bytes: 409600,
                write_bytes: 204800,
                read_requests: 100,
                write_requests: 50,
                read_time_seconds: 2.5,
                write_time_seconds: 0.5,
                capacity_bytes: 42949672960,
            },
            BlockStats {
                target_device: "vdb".into(),
                read_requests: 1,
                ..BlockStats::default()
            },
        ]),
        interfaces: Some(vec![
            InterfaceStats {
                target_device: "tap5a1b2c3d-4e".into(),
                receive_bytes: 1000,
                receive_packets: 10,
                receive_errors: 1,
                receive_drops: 2,
                transmit_bytes: 2000,
                transmit_packets: 20,
                transmit_errors: 3,
                transmit_drops: 4,
            },
            InterfaceStats {
                target_device: "tap6b2c3d4e-5f".into(),
                receive_bytes: 5,
                transmit_packets: 7,
                ..InterfaceStats::default()
            },
        ]),
    };
    assert_eq!(got, want);
}

#[test]
fn groups_present_or_absent() {
    struct Case {
        name: &'static str,
        input: &'static str,
        want: Decoded,
    }
    let cases = [
        Case {
            name: "test driver: state only",
            input: "Domain: 'a'\n  state.state=5\n  state.reason=0\n",
            want: Decoded {
                state: Some(GuestState::Shutoff),
                ..Decoded::default()
            },
        },
        Case {
            name: "no disks and no NICs are empty groups, not missing ones",
            input: "Domain: 'a'\n  state.state=1\n  block.count=0\n  net.count=0\n",
            want: Decoded {
                state: Some(GuestState::Running),
                blocks: Some(vec![]),
                interfaces: Some(vec![]),
                ..Decoded::default()
            },
        },
        Case {
            name: "shut-off qemu guest: balloon and vcpu counts without live stats",
            input: "Domain: 'a'\n  state.state=5\n  balloon.current=1024\n  balloon.maximum=2048\n  vcpu.current=1\n  vcpu.maximum=1\n",
            want: Decoded {
                state: Some(GuestState::Shutoff),
                balloon: Some(Balloon {
                    current_bytes: Some(1024 * 1024),
                    maximum_bytes: Some(2048 * 1024),
                    memory: MemoryStats {
                        actual_balloon_bytes: Some(1024 * 1024),
                        ..MemoryStats::default()
                    },
                }),
                vcpu: Some(Vcpus {
                    current: Some(1),
                    times: vec![],
                }),
                ..Decoded::default()
            },
        },
        Case {
            name: "a device without a name is left out; bad values count as missing",
            input: "Domain: 'a'\n  state.state=banana\n  cpu.time=-5\n  block.count=2\n  block.0.rd.bytes=7\n  block.1.name=sda\n  block.1.wr.bytes=oops\n  net.x.name=tap\n  vcpu.7.time=1000000000\n",
            want: Decoded {
                state: None,
                cpu_time_seconds: None,
                blocks: Some(vec![BlockStats {
                    target_device: "sda".into(),
                    ..BlockStats::default()
                }]),
                interfaces: Some(vec![]),
                vcpu: Some(Vcpus {
                    current: None,
                    times: vec![VcpuStats {
                        vcpu: 7,
                        time_seconds: 1.0,
                    }],
                }),
                ..Decoded::default()
            },
        },
        Case {
            name: "unknown groups and keys are ignored",
            input: "Domain: 'a'\n  perf.cmt=1\n  dirtyrate.calc_status=0\n  nodots=1\n  state.state=3\n  state.future=1\n",
            want: Decoded {
                state: Some(GuestState::Paused),
                ..Decoded::default()
            },
        },
        Case {
            name: "device names are text even when they look like numbers",
            input: "Domain: 'a'\n  net.count=1\n  net.0.name=0\n  net.0.rx.bytes=1\n",
            want: Decoded {
                interfaces: Some(vec![InterfaceStats {
                    target_device: "0".into(),
                    receive_bytes: 1,
                    ..InterfaceStats::default()
                }]),
                ..Decoded::default()
            },
        },
    ];
    for case in cases {
        assert_eq!(decode_one(case.input), case.want, "{}", case.name);
    }
}

#[test]
fn param_types_all_read_as_integers() {
    struct Case {
        input: Param,
        want: Option<u64>,
    }
    let cases = [
        Case {
            input: Param::Int(5),
            want: Some(5),
        },
        Case {
            input: Param::Int(-5),
            want: None,
        },
        Case {
            input: Param::UInt(u32::MAX),
            want: Some(u64::from(u32::MAX)),
        },
        Case {
            input: Param::LLong(-1),
            want: None,
        },
        Case {
            input: Param::LLong(i64::MAX),
            want: Some(i64::MAX as u64),
        },
        Case {
            input: Param::ULLong(u64::MAX),
            want: Some(u64::MAX),
        },
        Case {
            input: Param::Double(3.0),
            want: Some(3),
        },
        Case {
            input: Param::Double(3.5),
            want: None,
        },
        Case {
            input: Param::Double(f64::NAN),
            want: None,
        },
        Case {
            input: Param::Boolean(true),
            want: None,
        },
        Case {
            input: Param::String("7".into()),
            want: None,
        },
    ];
    for case in cases {
        assert_eq!(case.input.as_u64(), case.want, "{:?}", case.input);
    }
}

#[test]
fn virsh_raw_records() {
    let text = "garbage before\nDomain: 'one'\n  state.state=1\n\nDomain: 'two words'\n  x.y=-3\n  x.z=1.5\n  x.s=a=b\n";
    let got = parse_virsh_raw(text);
    assert_eq!(
        got,
        vec![
            (
                "one".to_string(),
                vec![("state.state".to_string(), Param::ULLong(1))]
            ),
            (
                "two words".to_string(),
                vec![
                    ("x.y".to_string(), Param::LLong(-3)),
                    ("x.z".to_string(), Param::Double(1.5)),
                    ("x.s".to_string(), Param::String("a=b".into())),
                ]
            ),
        ]
    );
}
