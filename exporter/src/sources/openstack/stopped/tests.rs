//! Ages of stopped servers on the recorded `/servers/detail` answer, the clock injected.
//!
//! The recorded stack has one SHUTOFF server (`bd312de7…`, m1.tiny, project `dc631d2c…`) and
//! no SHELVED or ERROR one; for those a recorded server gets the status Nova reports for them
//! (same shape: only `status` differs). The real statuses are checked against the real stack
//! (`tests/openstack_e2e.rs`).

#![allow(clippy::unwrap_used)]

use super::*;
use crate::sources::openstack::nova::tests::fixture;
use crate::sources::openstack::nova::{self, Server, ServersPage};

const DAY: u64 = 86_400;
const SHUTOFF: &str = "bd312de7-bd04-4d59-9f73-d913096d7ad6";
const SHUTOFF_PROJECT: &str = "dc631d2c74";
/// An ACTIVE m1.small (1 vCPU, 2048 MiB) of the same project.
const ACTIVE: &str = "71e6c838";

fn recorded() -> Vec<Server> {
    let page: ServersPage =
        serde_json::from_str(&fixture("nova_servers_detail_all_tenants_mv2.47.json")).unwrap();
    page.servers
}

/// The servers as the table keeps them.
fn listed(servers: &[Server]) -> Vec<Listed> {
    nova::compact_servers(servers.to_vec())
}

fn by_prefix<'a>(servers: &'a mut [Server], prefix: &str) -> &'a mut Server {
    servers
        .iter_mut()
        .find(|s| s.id.starts_with(prefix))
        .unwrap()
}

fn updated(servers: &[Server], prefix: &str) -> u64 {
    let s = servers.iter().find(|s| s.id.starts_with(prefix)).unwrap();
    nova::epoch_seconds(s.updated.as_deref().unwrap()).unwrap() as u64
}

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// `status/older_than-in-days -> (instances, vcpus, MiB)` of one project.
fn of(stopped: &StoppedByProject, project_prefix: &str) -> BTreeMap<String, (u64, u64, u64)> {
    stopped
        .iter()
        .filter(|(p, _)| p.starts_with(project_prefix))
        .flat_map(|(_, b)| b.iter())
        .map(|(k, h)| {
            (
                format!("{}/{}", k.status, k.older_than.as_secs() / DAY),
                (h.instances, h.vcpus, h.memory_bytes >> 20),
            )
        })
        .collect()
}

#[test]
fn the_recorded_shutoff_server_seen_first_starts_at_updated() {
    let servers = recorded();
    let since = updated(&servers, &SHUTOFF[..8]);
    let mut stopped = Stopped::default();
    let now = since + 10 * DAY;
    stopped.observe(&listed(&servers), t(now));
    // SUSPENDED and PAUSED are not stopped statuses: only the SHUTOFF one is remembered.
    assert_eq!(stopped.servers.len(), 1, "{stopped:?}");
    let known = &stopped.servers[&servers.iter().find(|s| s.status == "SHUTOFF").unwrap().id];
    assert_eq!((known.status.as_str(), known.since), ("shutoff", since));
    let b = stopped.buckets(
        &listed(&servers),
        &BTreeMap::new(),
        &StoppedAges::default(),
        t(now),
    );
    assert_eq!(b.len(), 1, "{b:?}");
    let want: BTreeMap<String, (u64, u64, u64)> = [
        ("shutoff/1".to_owned(), (1, 1, 512)),
        ("shutoff/7".to_owned(), (1, 1, 512)),
    ]
    .into();
    assert_eq!(of(&b, SHUTOFF_PROJECT), want);
}

#[test]
fn statuses_times_ages_times_buckets() {
    struct Case {
        age: u64,
        want_days: &'static [u64],
    }
    let ages = [
        Case {
            age: 12 * 3600,
            want_days: &[],
        },
        // "Older than" is strict: exactly one day is not older than one day.
        Case {
            age: DAY,
            want_days: &[],
        },
        Case {
            age: DAY + 1,
            want_days: &[1],
        },
        Case {
            age: 8 * DAY,
            want_days: &[1, 7],
        },
        Case {
            age: 31 * DAY,
            want_days: &[1, 7, 30],
        },
        Case {
            age: 400 * DAY,
            want_days: &[1, 7, 30, 90],
        },
    ];
    let custom = StoppedAges::try_new(vec![
        Duration::from_secs(3600),
        Duration::from_secs(2 * DAY),
    ])
    .unwrap();
    for status in ["SHUTOFF", "SHELVED", "SHELVED_OFFLOADED", "ERROR"] {
        for c in &ages {
            let mut servers = recorded();
            let t0 = updated(&servers, ACTIVE) + 3600;
            let mut stopped = Stopped::default();
            // Seen running first, then in `status` one refresh later: the change is after t0.
            stopped.observe(&listed(&servers), t(t0));
            by_prefix(&mut servers, ACTIVE).status = status.into();
            stopped.observe(&listed(&servers), t(t0 + 300));
            let name = format!("{status} for {}s", c.age);
            let lower = status.to_lowercase();
            let want: BTreeMap<String, (u64, u64, u64)> = c
                .want_days
                .iter()
                .map(|d| (format!("{lower}/{d}"), (1, 1, 2048)))
                // The recorded SHUTOFF server is there too, since its `updated`.
                .chain(
                    [1, 7, 30, 90]
                        .iter()
                        .filter(|d| t0 + c.age - updated(&servers, &SHUTOFF[..8]) > *d * DAY)
                        .map(|d| (format!("shutoff/{d}"), (1, 1, 512))),
                )
                .fold(BTreeMap::new(), |mut m, (k, v)| {
                    let e = m.entry(k).or_insert((0, 0, 0));
                    *e = (e.0 + v.0, e.1 + v.1, e.2 + v.2);
                    m
                });
            let b = stopped.buckets(
                &listed(&servers),
                &BTreeMap::new(),
                &StoppedAges::default(),
                t(t0 + c.age),
            );
            assert_eq!(of(&b, SHUTOFF_PROJECT), want, "{name}");
            // Other bounds, same arithmetic: 1h and 2d.
            let b = stopped.buckets(&listed(&servers), &BTreeMap::new(), &custom, t(t0 + c.age));
            let got = of(&b, SHUTOFF_PROJECT);
            let hour = got.contains_key(&format!("{lower}/0"));
            assert_eq!(hour, c.age > 3600, "{name}: {got:?}");
            assert_eq!(
                got.contains_key(&format!("{lower}/2")),
                c.age > 2 * DAY,
                "{name}: {got:?}"
            );
        }
    }
}

#[test]
fn a_server_that_starts_again_leaves_the_buckets_and_a_new_stop_counts_afresh() {
    let mut servers = recorded();
    let since = updated(&servers, &SHUTOFF[..8]);
    let mut stopped = Stopped::default();
    stopped.observe(&listed(&servers), t(since + 40 * DAY));
    by_prefix(&mut servers, &SHUTOFF[..8]).status = "ACTIVE".into();
    stopped.observe(&listed(&servers), t(since + 41 * DAY));
    assert!(stopped.servers.is_empty(), "{stopped:?}");
    let b = stopped.buckets(
        &listed(&servers),
        &BTreeMap::new(),
        &StoppedAges::default(),
        t(since + 41 * DAY),
    );
    assert!(b.is_empty(), "{b:?}");
    // Stopped again: its old `updated` is before the last refresh, so it starts there.
    by_prefix(&mut servers, &SHUTOFF[..8]).status = "SHUTOFF".into();
    stopped.observe(&listed(&servers), t(since + 42 * DAY));
    let id = servers
        .iter()
        .find(|s| s.status == "SHUTOFF")
        .unwrap()
        .id
        .clone();
    assert_eq!(stopped.servers[&id].since, since + 41 * DAY);
    let b = stopped.buckets(
        &listed(&servers),
        &BTreeMap::new(),
        &StoppedAges::default(),
        t(since + 50 * DAY),
    );
    assert_eq!(
        of(&b, SHUTOFF_PROJECT).keys().collect::<Vec<_>>(),
        ["shutoff/1", "shutoff/7"]
    );
}

#[test]
fn a_status_change_restarts_the_time_and_a_deleted_server_is_forgotten() {
    let mut servers = recorded();
    let since = updated(&servers, &SHUTOFF[..8]);
    let mut stopped = Stopped::default();
    stopped.observe(&listed(&servers), t(since + 40 * DAY));
    // Shelved after 40 days off, Nova touching `updated` at that moment.
    let s = by_prefix(&mut servers, &SHUTOFF[..8]);
    s.status = "SHELVED_OFFLOADED".into();
    s.updated = Some("2027-01-05T10:00:00Z".into());
    let shelved = nova::epoch_seconds("2027-01-05T10:00:00Z").unwrap() as u64;
    assert!(shelved > since + 40 * DAY);
    stopped.observe(&listed(&servers), t(shelved + 60));
    let id = servers
        .iter()
        .find(|s| s.id.starts_with(&SHUTOFF[..8]))
        .unwrap()
        .id
        .clone();
    assert_eq!(
        stopped.servers[&id],
        Since {
            status: "shelved_offloaded".into(),
            since: shelved
        }
    );
    servers.retain(|s| s.id != id);
    stopped.observe(&listed(&servers), t(shelved + 120));
    assert!(stopped.servers.is_empty(), "{stopped:?}");
}

#[test]
fn updated_missing_unreadable_or_ahead_of_the_clock_is_now() {
    for updated in [None, Some("not a date"), Some("2099-01-01T00:00:00Z")] {
        let mut servers = recorded();
        by_prefix(&mut servers, &SHUTOFF[..8]).updated = updated.map(str::to_owned);
        let now = 1_800_000_000;
        let mut stopped = Stopped::default();
        stopped.observe(&listed(&servers), t(now));
        let since: Vec<u64> = stopped.servers.values().map(|s| s.since).collect();
        assert_eq!(since, [now], "{updated:?}");
    }
}

#[test]
fn sizes_from_the_flavors_list_before_microversion_2_47() {
    let page: ServersPage =
        serde_json::from_str(&fixture("nova_servers_detail_all_tenants_mv2.1.json")).unwrap();
    let flavors: crate::sources::openstack::nova::FlavorsPage =
        serde_json::from_str(&fixture("nova_flavors_detail_all_mv2.1.json")).unwrap();
    let flavors = nova::flavor_sizes(&flavors.flavors);
    let since = updated(&page.servers, &SHUTOFF[..8]);
    let mut stopped = Stopped::default();
    stopped.observe(&listed(&page.servers), t(since + 2 * DAY));
    let b = stopped.buckets(
        &listed(&page.servers),
        &flavors,
        &StoppedAges::default(),
        t(since + 2 * DAY),
    );
    assert_eq!(
        of(&b, SHUTOFF_PROJECT),
        [("shutoff/1".to_owned(), (1, 1, 512))].into()
    );
    // Flavor gone from the list: counted, holding nothing (as the allocation does).
    let b = stopped.buckets(
        &listed(&page.servers),
        &BTreeMap::new(),
        &StoppedAges::default(),
        t(since + 2 * DAY),
    );
    assert_eq!(
        of(&b, SHUTOFF_PROJECT),
        [("shutoff/1".to_owned(), (1, 0, 0))].into()
    );
}

/// What `observe` did before it walked the remembered servers alongside the listing: one
/// lookup per stopped server.
fn observe_by_lookup(known: &Stopped, servers: &[Listed], now: u64) -> BTreeMap<String, Since> {
    let mut next = BTreeMap::new();
    let mut remembered = known.servers.clone();
    for s in servers.iter().filter(|s| stopped_status(&s.status)) {
        let status = s.status.to_lowercase();
        let id = s.id.to_text();
        let since = match remembered.remove(&id) {
            Some(k) if k.status == status => k.since.min(now),
            _ => known.first_seen(s, now),
        };
        next.insert(id, Since { status, since });
    }
    next
}

#[test]
fn the_walk_remembers_what_lookups_remember_in_any_listing_order() {
    const STATUSES: [&str; 6] = [
        "ACTIVE",
        "SHUTOFF",
        "SHELVED",
        "ERROR",
        "shelved_offloaded",
        "PAUSED",
    ];
    let base = recorded();
    for reversed in [false, true] {
        let mut stopped = Stopped::default();
        // A server only the state file knows: forgotten at the first refresh.
        stopped.servers.insert(
            "00000000-0000-4000-8000-000000000000".into(),
            Since {
                status: "shutoff".into(),
                since: 5,
            },
        );
        for round in 0..5u64 {
            let mut servers = base.clone();
            for (k, s) in servers.iter_mut().enumerate() {
                s.status = STATUSES[(k * (round as usize + 1) + k / 3) % STATUSES.len()].into();
            }
            let mut listing = listed(&servers);
            listing.sort_by(|a, b| a.id.cmp(&b.id));
            if reversed {
                listing.reverse();
            }
            let now = 1_900_000_000 + round * DAY;
            let want = observe_by_lookup(&stopped, &listing, now);
            stopped.observe(&listing, t(now));
            assert_eq!(stopped.servers, want, "round {round}, reversed {reversed}");
            assert!(!want.is_empty(), "round {round}");
            let ages = StoppedAges::default();
            let b = stopped.buckets(&listing, &BTreeMap::new(), &ages, t(now + DAY));
            // The buckets by lookup: each remembered server in its status's buckets.
            let mut want_b = StoppedByProject::new();
            for s in listing.iter().filter(|s| stopped_status(&s.status)) {
                let k = &stopped.servers[&s.id.to_text()];
                let age = Duration::from_secs(now + DAY - k.since);
                let size = s.sizes(&BTreeMap::new());
                let held = Held {
                    instances: 1,
                    vcpus: size.map_or(0, |f| f.vcpus),
                    memory_bytes: size.map_or(0, |f| f.ram << 20),
                };
                ages.add(
                    want_b.entry(s.project.to_string()).or_default(),
                    &k.status,
                    age,
                    held,
                );
            }
            want_b.retain(|_, b| !b.is_empty());
            assert_eq!(b, want_b, "round {round}, reversed {reversed}");
            assert!(!b.is_empty(), "round {round}");
        }
    }
}
