#![allow(clippy::unwrap_used)]

use super::*;

pub(crate) fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/openstack/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap()
}

fn at(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).unwrap()
}

#[test]
fn next_marker_cases() {
    struct Case {
        name: &'static str,
        input: Vec<Link>,
        want: Option<&'static str>,
    }
    let link = |rel: &str, href: &str| Link {
        rel: rel.into(),
        href: href.into(),
    };
    let cases = [
        Case {
            name: "no links: last page",
            input: vec![],
            want: None,
        },
        Case {
            name: "marker last",
            input: vec![link(
                "next",
                "http://n/v2.1/os-simple-tenant-usage?detailed=1&limit=3&marker=abc",
            )],
            want: Some("abc"),
        },
        Case {
            name: "marker in the middle",
            input: vec![link(
                "next",
                "http://n/x?limit=3&marker=m-1&start=2026-11-21T00%3A00%3A00",
            )],
            want: Some("m-1"),
        },
        Case {
            name: "only a self link",
            input: vec![link("self", "http://n/x?marker=abc")],
            want: None,
        },
        Case {
            name: "next without a marker",
            input: vec![link("next", "http://n/x?limit=3")],
            want: None,
        },
    ];
    for c in cases {
        assert_eq!(next_marker(&c.input).as_deref(), c.want, "{}", c.name);
    }
}

#[test]
fn query_time_cases() {
    struct Case {
        name: &'static str,
        input: SystemTime,
        want: &'static str,
    }
    let cases = [
        Case {
            name: "midnight",
            input: at("2026-11-21T00:00:00Z"),
            want: "2026-11-21T00:00:00",
        },
        Case {
            name: "sub-second truncated, never rounded up",
            input: at("2026-11-22T14:48:46.999Z"),
            want: "2026-11-22T14:48:46",
        },
    ];
    for c in cases {
        assert_eq!(query_time(c.input), c.want, "{}", c.name);
    }
}

#[test]
fn server_totals_cases() {
    struct Case {
        name: &'static str,
        input: ServerUsage,
        want: (f64, f64, f64, f64),
    }
    let u = |hours, vcpus, memory_mb, local_gb| ServerUsage {
        hours,
        vcpus,
        memory_mb,
        local_gb,
        ..Default::default()
    };
    let cases = [
        Case {
            name: "one hour of m1.medium",
            input: u(1.0, 2, 4096, 40),
            want: (
                7200.0,
                3600.0 * 4096.0 * 1048576.0,
                3600.0 * 40.0 * 1073741824.0,
                3600.0,
            ),
        },
        Case {
            name: "zero hours",
            input: u(0.0, 2, 4096, 40),
            want: (0.0, 0.0, 0.0, 0.0),
        },
        Case {
            name: "negative hours never lower a counter",
            input: u(-1.0, 2, 4096, 40),
            want: (0.0, 0.0, 0.0, 0.0),
        },
        Case {
            name: "NaN hours count nothing",
            input: u(f64::NAN, 1, 512, 1),
            want: (0.0, 0.0, 0.0, 0.0),
        },
        // Found by tests/properties.rs: sizes whose bytes overflow u64 panicked.
        Case {
            name: "memory_mb u64::MAX",
            input: u(1.0, 1, u64::MAX, 0),
            want: (3600.0, 3600.0 * u64::MAX as f64 * 1048576.0, 0.0, 3600.0),
        },
        Case {
            name: "local_gb u64::MAX",
            input: u(1.0, 1, 0, u64::MAX),
            want: (3600.0, 0.0, 3600.0 * u64::MAX as f64 * 1073741824.0, 3600.0),
        },
    ];
    for c in cases {
        let t = server_totals(&c.input);
        let got = (
            t.vcpu_seconds,
            t.memory_byte_seconds,
            t.disk_byte_seconds,
            t.instance_seconds,
        );
        assert_eq!(got, c.want, "{}", c.name);
    }
}

#[test]
fn recorded_usage_pages_parse_and_chain() {
    let mut markers = Vec::new();
    let mut servers = 0;
    for page in 1..=4 {
        let text = fixture(&format!(
            "nova_os-simple-tenant-usage_detailed_mv2.40_limit3_page{page}.json"
        ));
        let parsed: UsagePage = serde_json::from_str(&text).unwrap();
        servers += parsed
            .tenant_usages
            .iter()
            .map(|t| t.server_usages.len())
            .sum::<usize>();
        markers.push(next_marker(&parsed.tenant_usages_links));
    }
    assert_eq!(servers, 11);
    assert!(markers[..3].iter().all(Option::is_some), "{markers:?}");
    assert_eq!(markers[3], None);
}

#[test]
fn malformed_usage_is_an_error() {
    for text in [
        "{",
        r#"{"tenant_usages": [{"server_usages": []}]}"#,
        r#"{"tenant_usages": 3}"#,
    ] {
        assert!(serde_json::from_str::<UsagePage>(text).is_err(), "{text}");
    }
}

#[test]
fn recorded_servers_give_allocation_and_statuses() {
    let page: ServersPage =
        serde_json::from_str(&fixture("nova_servers_detail_all_tenants_mv2.47.json")).unwrap();
    let (state, unknown) = current_state(&compact_servers(page.servers.clone()), &BTreeMap::new());
    assert!(unknown.is_empty());
    let count: u64 = state.values().flat_map(|(_, s)| s.values()).sum();
    assert_eq!(count, 10);
    let vcpus: u64 = state.values().map(|(a, _)| a.vcpus).sum();
    let want: u64 = page
        .servers
        .iter()
        .map(|s| match &s.flavor {
            ServerFlavor::Embedded(f) => f.vcpus,
            ServerFlavor::Reference { .. } => panic!("2.47 embeds the flavor"),
        })
        .sum();
    assert_eq!(vcpus, want);
    assert!(state
        .values()
        .all(|(_, s)| s.keys().all(|k| k.chars().all(|c| !c.is_uppercase()))));
    let suspended = page
        .servers
        .iter()
        .find(|s| s.status == "SUSPENDED")
        .unwrap();
    assert_eq!(state[&suspended.tenant_id].1.get("suspended"), Some(&1));
}

#[test]
fn quota_cases() {
    struct Case {
        name: &'static str,
        input: &'static str,
        want: crate::snapshot::Quota,
    }
    let q = |vcpus, memory_bytes, instances| crate::snapshot::Quota {
        vcpus,
        memory_bytes,
        instances,
    };
    let item = |l: i64| QuotaItem { limit: l };
    let cases = [
        Case {
            name: "limits",
            input: "",
            want: q(Some(40), Some(51200 << 20), Some(20)),
        },
        Case {
            name: "unlimited exports nothing",
            input: "unlimited",
            want: q(None, None, None),
        },
    ];
    for c in cases {
        let set = if c.input.is_empty() {
            QuotaSet {
                cores: item(40),
                ram: item(51200),
                instances: item(20),
            }
        } else {
            QuotaSet {
                cores: item(-1),
                ram: item(-1),
                instances: item(-1),
            }
        };
        assert_eq!(quota(&set), c.want, "{}", c.name);
    }
}

#[test]
fn recorded_quota_details_parse() {
    for name in ["alpha-web", "beta-ml", "beta-empty", "admin"] {
        let d: QuotaDetail =
            serde_json::from_str(&fixture(&format!("nova_os-quota-sets_{name}_detail.json")))
                .unwrap();
        let text: serde_json::Value =
            serde_json::from_str(&fixture(&format!("nova_os-quota-sets_{name}_detail.json")))
                .unwrap();
        let q = quota(&d.quota_set);
        let want = text["quota_set"]["cores"]["limit"].as_i64().unwrap();
        assert_eq!(q.vcpus, u64::try_from(want).ok(), "{name}");
    }
}

#[test]
fn epoch_seconds_cases() {
    let cases: [(&str, Option<f64>); 8] = [
        ("2026-11-20T12:00:00.000000", Some(1_795_176_000.0)),
        ("2026-11-20T12:00:00", Some(1_795_176_000.0)),
        ("2026-11-20T12:00:00Z", Some(1_795_176_000.0)),
        ("2026-11-20T12:00:00.500000+00:00", Some(1_795_176_000.5)),
        ("2026-11-20T13:00:00+01:00", Some(1_795_176_000.0)),
        // One parser for every date input (`crate::dates`): a bare date is midnight UTC.
        ("2026-11-20", Some(1_795_132_800.0)),
        ("", None),
        ("2026-11-20T12:00:00€", None),
    ];
    for (input, want) in cases {
        assert_eq!(epoch_seconds(input), want, "{input}");
    }
}

#[test]
fn before_2_47_servers_reference_flavors_and_the_list_gives_the_same_allocation() {
    let embedded: ServersPage =
        serde_json::from_str(&fixture("nova_servers_detail_all_tenants_mv2.47.json")).unwrap();
    let referenced: ServersPage =
        serde_json::from_str(&fixture("nova_servers_detail_all_tenants_mv2.1.json")).unwrap();
    assert!(referenced
        .servers
        .iter()
        .all(|s| matches!(s.flavor, ServerFlavor::Reference { .. })));
    let flavors: FlavorsPage =
        serde_json::from_str(&fixture("nova_flavors_detail_all_mv2.1.json")).unwrap();
    let sizes = flavor_sizes(&flavors.flavors);
    let (want, _) = current_state(&compact_servers(embedded.servers.clone()), &BTreeMap::new());
    let (got, unknown) = current_state(&compact_servers(referenced.servers.clone()), &sizes);
    assert!(unknown.is_empty());
    assert_eq!(got, want);

    // A flavor deleted since: the server still counts, allocates nothing, and is named.
    let mut partial = sizes.clone();
    let ServerFlavor::Reference { id } = &referenced.servers[0].flavor else {
        unreachable!()
    };
    partial.remove(id);
    let (got, unknown) = current_state(&compact_servers(referenced.servers.clone()), &partial);
    assert!(unknown.contains(&referenced.servers[0].id));
    let count = |s: &BTreeMap<String, (Allocation, BTreeMap<String, u64>)>| -> u64 {
        s.values().flat_map(|(_, st)| st.values()).sum()
    };
    assert_eq!(count(&got), count(&want));
    let vcpus = |s: &BTreeMap<String, (Allocation, BTreeMap<String, u64>)>| -> u64 {
        s.values().map(|(a, _)| a.vcpus).sum()
    };
    assert!(vcpus(&got) < vcpus(&want));
}

#[test]
fn current_state_saturates_absurd_sizes() {
    // Found by tests/properties.rs: flavor sizes whose bytes overflow u64 panicked.
    struct Case {
        name: &'static str,
        flavors: [EmbeddedFlavor; 2],
        want: Allocation,
    }
    let f = |vcpus, ram, disk, ephemeral| EmbeddedFlavor {
        vcpus,
        ram,
        disk,
        ephemeral,
        original_name: None,
    };
    let cases = [
        Case {
            name: "ordinary sizes add up",
            flavors: [f(2, 4096, 40, 0), f(1, 512, 1, 1)],
            want: Allocation {
                vcpus: 3,
                memory_bytes: 4608 * MIB,
                disk_bytes: 42 * GIB,
            },
        },
        Case {
            name: "ram u64::MAX",
            flavors: [f(1, u64::MAX, 0, 0), f(1, 1, 0, 0)],
            want: Allocation {
                vcpus: 2,
                memory_bytes: u64::MAX,
                disk_bytes: 0,
            },
        },
        Case {
            name: "disk + ephemeral overflow",
            flavors: [f(0, 0, u64::MAX, 1), f(0, 0, 1, 0)],
            want: Allocation {
                vcpus: 0,
                memory_bytes: 0,
                disk_bytes: u64::MAX,
            },
        },
        Case {
            name: "vcpus sum overflows",
            flavors: [f(u64::MAX, 0, 0, 0), f(1, 0, 0, 0)],
            want: Allocation {
                vcpus: u64::MAX,
                memory_bytes: 0,
                disk_bytes: 0,
            },
        },
    ];
    for c in cases {
        let servers: Vec<Server> = c
            .flavors
            .iter()
            .enumerate()
            .map(|(i, f)| Server {
                id: i.to_string(),
                tenant_id: "p".into(),
                status: "ACTIVE".into(),
                flavor: ServerFlavor::Embedded(f.clone()),
                metadata: BTreeMap::new(),
                updated: None,
                name: String::new(),
                launched_at: None,
                terminated_at: None,
                vm_state: None,
            })
            .collect();
        let (state, _) = current_state(&compact_servers(servers.clone()), &BTreeMap::new());
        assert_eq!(state["p"].0, c.want, "{}", c.name);
    }
}

#[test]
fn a_listed_server_keeps_what_is_used_and_shares_its_values() {
    for name in [
        "nova_servers_detail_all_tenants_mv2.47.json",
        "nova_servers_detail_all_tenants_changes_since_mv2.47.json",
        "nova_servers_detail_all_tenants_mv2.1.json",
    ] {
        let servers = serde_json::from_str::<ServersPage>(&fixture(name))
            .unwrap()
            .servers;
        let listed = compact_servers(servers.clone());
        assert_eq!(listed.len(), servers.len(), "{name}");
        for (s, l) in servers.iter().zip(&listed) {
            assert_eq!(l.id.to_text(), s.id, "{name}");
            assert_eq!((&*l.project, &*l.status), (&*s.tenant_id, &*s.status));
            match (&s.flavor, &l.size) {
                (ServerFlavor::Embedded(f), ListedSize::Embedded(z)) => {
                    assert_eq!(*z, Sizes::from(f), "{}", s.id)
                }
                (ServerFlavor::Reference { id }, ListedSize::Reference(r)) => {
                    assert_eq!(&**r, id, "{}", s.id)
                }
                other => panic!("{}: {other:?}", s.id),
            }
            assert_eq!(*l.metadata, s.metadata, "{}", s.id);
            let secs = s
                .updated
                .as_deref()
                .map(|t| epoch_seconds(t).unwrap() as i64);
            assert_eq!(l.updated, secs, "{}", s.id);
            let micros = |t: &Option<String>| t.as_deref().map(|t| epoch_micros(t).unwrap());
            assert_eq!(l.launched, Ok(micros(&s.launched_at)), "{}", s.id);
            assert_eq!(l.terminated, Ok(micros(&s.terminated_at)), "{}", s.id);
            assert_eq!(l.deleted(), s.status == "DELETED", "{}", s.id);
        }
        // One copy of each project id and status within a listing.
        for (a, b) in listed.iter().zip(&listed[1..]) {
            assert_eq!(a.project == b.project, Arc::ptr_eq(&a.project, &b.project));
            assert_eq!(a.status == b.status, Arc::ptr_eq(&a.status, &b.status));
        }
    }
    // A time that is not one is kept as its text; an absent or unreadable `updated` is none.
    let mut s = serde_json::from_str::<ServersPage>(&fixture(
        "nova_servers_detail_all_tenants_mv2.47.json",
    ))
    .unwrap()
    .servers
    .remove(0);
    s.launched_at = Some("yesterday".into());
    s.updated = Some("soon".into());
    let l = Listed::new(s, &mut ListedValues::default());
    assert_eq!(l.launched, Err("yesterday".into()));
    assert_eq!(l.updated, None);
}
