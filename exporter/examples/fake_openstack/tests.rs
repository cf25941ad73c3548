//! The fake answers in the recorded shapes and keeps Nova's window and paging rules.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::*;
use crate::cloud::Params as CloudParams;

const NOW0: i64 = 1_800_000_000;
const DAY: f64 = 86_400.0;

fn small() -> (Cloud, Templates) {
    let t = Templates::new("http://127.0.0.1:8774".into(), 1000);
    let cloud = Cloud::generate(
        &CloudParams {
            projects: 40,
            servers: 1_500,
            live_fraction: 0.3,
            history: 60 * 86_400,
            churn_fraction: 0.02,
            churn_window: 7_200,
            seed: 3,
            now0: NOW0,
        },
        t.flavors.len(),
    );
    (cloud, t)
}

/// Every key path of a document; free-form maps (`metadata`, `extra_specs`) count as leaves.
fn paths(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, at: String, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let here = format!("{at}/{k}");
                    out.insert(here.clone());
                    if k != "metadata" && k != "extra_specs" {
                        walk(child, here, out);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, format!("{at}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, String::new(), &mut out);
    out
}

fn recorded(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn q(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn time(secs: f64) -> String {
    nova::fmt_micros(secs)[..19].to_owned()
}

/// All pages of a window: (tenant, server, hours) in order, and the number of pages.
fn all_pages(
    c: &Cloud,
    t: &Templates,
    start: f64,
    end: f64,
    limit: usize,
    now: f64,
) -> (Vec<(String, String, f64)>, usize) {
    let (s, e, l) = (time(start), time(end), limit.to_string());
    let mut params = q(&[("detailed", "1"), ("start", &s), ("end", &e), ("limit", &l)]);
    let (mut rows, mut pages) = (Vec::new(), 0);
    loop {
        let (doc, _) = nova::usage_all(c, t, &t.base, &params, (2, 40), now).unwrap();
        pages += 1;
        for tenant in doc["tenant_usages"].as_array().unwrap() {
            for su in tenant["server_usages"].as_array().unwrap() {
                rows.push((
                    tenant["tenant_id"].as_str().unwrap().to_owned(),
                    su["instance_id"].as_str().unwrap().to_owned(),
                    su["hours"].as_f64().unwrap(),
                ));
            }
        }
        let Some(href) = doc["tenant_usages_links"][0]["href"].as_str() else {
            return (rows, pages);
        };
        params = parse_query(href.split_once('?').map(|(_, q)| q));
    }
}

#[test]
fn usage_pages_have_the_recorded_shape() {
    let (c, t) = small();
    let now = NOW0 as f64 + 600.5;
    let params = q(&[
        ("detailed", "1"),
        ("start", &time(now - 30.0 * DAY)),
        ("end", &time(now)),
        ("limit", "3"),
    ]);
    let (doc, n) = nova::usage_all(&c, &t, &t.base, &params, (2, 40), now).unwrap();
    assert_eq!(n, 3);
    assert_eq!(paths(&doc), paths(&recorded(templates::USAGE_PAGE)));
    // A last page has no links, as the recorded one.
    let (doc, _) =
        nova::usage_all(&c, &t, &t.base, &q(&[("detailed", "1")]), (2, 40), now).unwrap();
    assert_eq!(paths(&doc), paths(&recorded(templates::USAGE_LAST_PAGE)));
    // One tenant: the recorded single-tenant answer.
    let tenant = &c.projects[c.servers[0].project as usize].id;
    let params = q(&[("start", &time(now - 365.0 * DAY)), ("end", &time(now))]);
    let (doc, n) = nova::usage_one(&c, &t, tenant, &params, now).unwrap();
    assert!(n > 0);
    assert_eq!(paths(&doc), paths(&recorded(templates::USAGE_ONE)));
}

#[test]
fn next_links_are_novas() {
    let t = Templates::new("http://127.0.0.1:8774".into(), 1000);
    let first = q(&[
        ("detailed", "1"),
        ("limit", "3"),
        ("start", "2026-11-21T00:00:00"),
        ("end", "2026-11-22T15:48:39"),
    ]);
    let second = q(&[
        ("detailed", "1"),
        ("end", "2026-11-22T15:48:39"),
        ("limit", "3"),
        ("start", "2026-11-21T00:00:00"),
        ("marker", "e1906928-70aa-4f4c-a50e-2b4ecdb36f50"),
    ]);
    for (params, marker, page) in [
        (first, "e1906928-70aa-4f4c-a50e-2b4ecdb36f50", templates::USAGE_PAGE),
        (second, "dbdae7cd-ca85-4929-bdaa-14bfb7c921f6", include_str!("../../tests/fixtures/openstack/nova_os-simple-tenant-usage_detailed_mv2.40_limit3_page2.json")),
    ] {
        let link = nova::next_link(&t.base, "os-simple-tenant-usage", &params, marker);
        assert_eq!(link, recorded(page)["tenant_usages_links"]);
    }
}

#[test]
fn servers_and_keystone_lists_have_the_recorded_shape() {
    let (c, t) = small();
    let now = NOW0 as f64;
    let (doc, n) = nova::servers(
        &c,
        &t,
        &t.base,
        &q(&[("all_tenants", "1"), ("limit", "200")]),
        now,
    )
    .unwrap();
    assert_eq!(n, 200);
    // Each server has the keys of a recorded server of its status (without volumes).
    let mut statuses = BTreeSet::new();
    for s in doc["servers"].as_array().unwrap() {
        let status = s["status"].as_str().unwrap();
        statuses.insert(status.to_owned());
        assert_eq!(paths(s), paths(t.server(status)), "{status}");
        assert_eq!(t.server(status)["status"], status);
    }
    assert_eq!(statuses.len(), 4, "{statuses:?}");
    // Paged answers add Nova's `servers_links` ({rel, href}), which the unpaged recording lacks.
    let top: BTreeSet<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(
        top,
        BTreeSet::from([&"servers".to_owned(), &"servers_links".to_owned()])
    );
    assert_eq!(
        paths(&doc["servers_links"]),
        paths(&recorded(templates::USAGE_PAGE)["tenant_usages_links"])
    );
    let projects = keystone::projects(&c, &t, &Vec::new());
    assert_eq!(paths(&projects), paths(&recorded(templates::PROJECTS)));
    assert_eq!(projects["projects"].as_array().unwrap().len(), 40);
    let domains = keystone::domains(&c, &t, &Vec::new());
    assert_eq!(paths(&domains), paths(&recorded(templates::DOMAINS)));
    let token = keystone::token(&t);
    assert!(token.to_string().contains("http://127.0.0.1:8774/v2.1"));
}

#[test]
fn pages_list_each_active_server_once_and_windows_add_up() {
    let (c, t) = small();
    let now = NOW0 as f64 + 3_600.25;
    let start = NOW0 as f64 - 45.0 * DAY;
    let (rows, pages) = all_pages(&c, &t, start, now.floor(), 7, now);
    assert!(pages > 10, "{pages} pages");
    let ids: BTreeSet<&String> = rows.iter().map(|r| &r.1).collect();
    assert_eq!(ids.len(), rows.len(), "a server listed twice");
    // Usage order: by project, then server id; a project may continue on the next page.
    assert!(rows
        .windows(2)
        .all(|w| (&w[0].0, &w[0].1) < (&w[1].0, &w[1].1)));
    let want = nova::totals(&c, &t, start, now.floor(), now, true);
    assert_eq!(rows.len() as u64, want["servers"].as_u64().unwrap());
    // Per project, as the exporter's counters: the seconds add up to the rows' hours.
    let per = want["projects"].as_object().unwrap();
    let sum = |k: &str| per.values().map(|p| p[k].as_f64().unwrap()).sum::<f64>();
    let hours: f64 = rows.iter().map(|r| r.2).sum();
    assert!((sum("instance_seconds") - hours * 3600.0).abs() < 1e-6 * hours * 3600.0);
    let vcpu_hours = want["vcpu_hours"].as_f64().unwrap();
    assert!((sum("vcpu_seconds") - vcpu_hours * 3600.0).abs() < 1e-6 * vcpu_hours * 3600.0);
    assert!(per
        .values()
        .all(|p| p["memory_byte_seconds"].as_f64().unwrap() > 0.0));
    // Two adjacent windows give each server the hours of the one covering both.
    let middle = (NOW0 - 86_400 * 3) as f64;
    let whole: BTreeMap<String, f64> = rows.iter().map(|r| (r.1.clone(), r.2)).collect();
    let mut split: BTreeMap<String, f64> = BTreeMap::new();
    for (a, b) in [(start, middle), (middle, now.floor())] {
        for (_, id, h) in all_pages(&c, &t, a, b, 1000, now).0 {
            *split.entry(id).or_default() += h;
        }
    }
    assert_eq!(whole.len(), split.len());
    for (id, h) in &whole {
        assert!((split[id] - h).abs() < 1e-9, "{id}: {h} vs {}", split[id]);
    }
    // A short recent window lists the servers that exist plus those deleted in it.
    let recent = all_pages(&c, &t, now.floor() - 10.0, now.floor(), 1000, now)
        .0
        .len();
    assert!(recent >= c.live_at(now as i64) && recent < rows.len());
}

#[test]
fn windows_clip_hours_like_nova() {
    let (c, _) = small();
    let s = c
        .servers
        .iter()
        .find(|s| s.deleted.is_some_and(|d| d < NOW0 - 100))
        .unwrap();
    let (l, d) = (s.launched as f64, s.deleted.unwrap() as f64);
    let now = NOW0 as f64;
    assert_eq!(
        nova::hours(s, l - 10.0, d + 10.0, now),
        Some((d - l) / 3600.0)
    );
    assert_eq!(
        nova::hours(s, l + 1.0, d - 1.0, now),
        Some((d - l - 2.0) / 3600.0)
    );
    assert_eq!(
        nova::hours(s, d, d + 10.0, now),
        None,
        "deleted by the window start"
    );
    assert_eq!(
        nova::hours(s, l - 10.0, l, now),
        None,
        "launched at the window end"
    );
    let future = c.servers.iter().find(|s| s.launched > NOW0 + 10).unwrap();
    assert_eq!(
        nova::hours(future, now - 10.0, now + DAY, now),
        None,
        "not launched yet"
    );
}

#[test]
fn query_parsing() {
    assert_eq!(
        parse_query(Some("end=2026-11-22T15%3A48%3A39&x=a+b&bad=%zz")),
        q(&[("end", "2026-11-22T15:48:39"), ("x", "a b"), ("bad", "%zz")])
    );
    assert_eq!(
        nova::parse_time("2025-01-01T00:00:00.000000").unwrap(),
        1_735_689_600.0
    );
    assert_eq!(
        nova::parse_time("2025-01-01T00:00:00").unwrap(),
        1_735_689_600.0
    );
    assert_eq!(nova::microversion(Some("compute 2.40")), (2, 40));
    assert_eq!(nova::microversion(None), (2, 1));
}

#[test]
fn changes_since_lists_servers_updated_since_deleted_ones_included() {
    let (c, t) = small();
    let now = NOW0 + 3_600;
    let since = NOW0 + 1_800;
    let mut params = q(&[
        ("all_tenants", "1"),
        ("changes-since", &nova::fmt_seconds(since)),
        ("limit", "50"),
    ]);
    let mut listed = BTreeMap::new();
    loop {
        let (doc, _) = nova::servers(&c, &t, &t.base, &params, now as f64).unwrap();
        for s in doc["servers"].as_array().unwrap() {
            let updated = nova::parse_time(s["updated"].as_str().unwrap()).unwrap() as i64;
            assert!(updated >= since, "{s}");
            // Deleted ones keep the recorded keys of the status they had, with Nova's values
            // for a deleted server.
            let generated = &c.servers[c.by_id[s["id"].as_str().unwrap()] as usize];
            let had = crate::cloud::STATUSES[generated.status as usize].0;
            assert_eq!(paths(s), paths(t.server(had)));
            let deleted = s["status"] == "DELETED";
            assert_eq!(deleted, s["OS-EXT-STS:vm_state"] == "deleted", "{s}");
            assert_eq!(deleted, !s["OS-SRV-USG:terminated_at"].is_null(), "{s}");
            let id = s["id"].as_str().unwrap().to_owned();
            assert!(
                listed.insert(id, deleted).is_none(),
                "a server listed twice"
            );
        }
        let Some(href) = doc["servers_links"][0]["href"].as_str() else {
            break;
        };
        params = parse_query(href.split_once('?').map(|(_, q)| q));
    }
    // Exactly the servers launched by now and updated (launched + 1 s, or deleted) since.
    let want: BTreeMap<String, bool> = c
        .servers
        .iter()
        .filter(|s| s.launched <= now)
        .filter(|s| s.deleted_by(now).unwrap_or(s.launched + 1) >= since)
        .map(|s| (s.id.clone(), s.deleted_by(now).is_some()))
        .collect();
    assert_eq!(listed, want);
    assert!(
        want.values().any(|d| *d) && want.values().any(|d| !*d),
        "{want:?}"
    );
}
