//! The billing history in VictoriaMetrics (Debian's `victoria-metrics`), end to end on the
//! native development topology: the portal Prometheus, with `prometheus/portal/prometheus.yml`'s
//! `remote_write` pointed at a store this test starts, federates two dummy sites and writes the
//! billing families (`project_*_usage`, `openstack_project_*`, `project:libvirt_*`) on.
//!
//! - The store holds exactly the portal's billing series, sample for sample: the raw samples
//!   of every series in a window, with their timestamps and values, are the same in both.
//! - Every query of the dashboards that chart billing families (the template variables'
//!   `label_values` and every panel's expression, with the variables substituted as Grafana
//!   would from the variables' own answers) returns the same label sets from both. Values are
//!   compared where the expression has no `rate`/`increase`: VictoriaMetrics does not
//!   extrapolate those, by design.
//! - After the portal restarts with its data directory wiped, the store still holds every
//!   sample written before, and receives the new ones. A backup of the running store
//!   (`vmbackup` from a snapshot) restored into an empty directory (`vmrestore`) holds them too.
//!
//! Both are queried at the same instants in the past (multiples of the range step), so that
//! neither's lookback nor VictoriaMetrics's latency offset decides what is seen.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use stack_tests::stack::{repo, DevStack, Speed};
use stack_tests::store::VictoriaMetrics;
use stack_tests::{api, encode, poll};

/// The families the portal writes to the store (its `write_relabel_configs`).
const BILLING: &str = "project_.*_usage|openstack_project_.+|project:libvirt_.+";
/// The window of raw samples compared, in seconds.
const WINDOW: i64 = 20;
/// The step of range queries, in seconds; comparison instants are multiples of it.
const STEP: i64 = 5;

type Labels = BTreeMap<String, String>;

fn labels(series: &Value) -> Labels {
    series["metric"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn number(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Every raw sample (milliseconds, value) of every billing series in `(at - WINDOW, at]`.
fn raw(base: &str, at: i64) -> anyhow::Result<BTreeMap<Labels, Vec<(i64, f64)>>> {
    let query = format!("{{__name__=~\"{BILLING}\"}}[{WINDOW}s]");
    let data = api(
        base,
        &format!("/api/v1/query?query={}&time={at}", encode(&query)),
    )?;
    let mut out = BTreeMap::new();
    for series in data["result"].as_array().unwrap() {
        let samples: Vec<(i64, f64)> = series["values"]
            .as_array()
            .unwrap()
            .iter()
            // Prometheus 2.42 includes a sample at the window's start, VictoriaMetrics not.
            .map(|p| {
                (
                    (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                    number(&p[1]),
                )
            })
            .filter(|(ms, _)| *ms > (at - WINDOW) * 1000)
            .collect();
        out.insert(labels(series), samples);
    }
    Ok(out)
}

/// What differs between two sets of raw samples, for a failure message; empty when equal.
fn difference(
    portal: &BTreeMap<Labels, Vec<(i64, f64)>>,
    store: &BTreeMap<Labels, Vec<(i64, f64)>>,
) -> String {
    let mut out = Vec::new();
    for (l, samples) in portal {
        match store.get(l) {
            None => out.push(format!("missing in the store: {l:?}")),
            Some(s) if !same_points(s, samples) => {
                out.push(format!("{l:?}: portal {samples:?}, store {s:?}"));
            }
            Some(_) => {}
        }
    }
    for l in store.keys().filter(|l| !portal.contains_key(*l)) {
        out.push(format!("only in the store: {l:?}"));
    }
    out.truncate(5);
    out.join("\n")
}

/// An instant query at `at` (`range` false) or a range query over `(at - WINDOW, at]` every
/// STEP; returns each series' labels and its (seconds, value) points.
fn points(base: &str, expr: &str, at: i64, range: bool) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let path = if range {
        format!(
            "/api/v1/query_range?query={}&start={}&end={at}&step={STEP}&nocache=1",
            encode(expr),
            at - WINDOW
        )
    } else {
        format!("/api/v1/query?query={}&time={at}", encode(expr))
    };
    let data = api(base, &path).unwrap_or_else(|e| panic!("{expr}: {e:#}"));
    data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let list = if range {
                s["values"].as_array().unwrap().clone()
            } else {
                vec![s["value"].clone()]
            };
            let pts = list
                .iter()
                .map(|p| (p[0].as_f64().unwrap() as i64, number(&p[1])))
                .collect();
            (labels(s), pts)
        })
        .collect()
}

/// Whether two values are the same number. VictoriaMetrics stores a float as a decimal (an
/// integer mantissa and a power of ten) and stops adding digits once the rest is below 1e-12
/// of the mantissa, so a stored value can differ from the written one by a hair over 1e-12
/// relative (5555.494595555556 comes back as 5555.49459555: 1.00001e-12; at most 1.0001e-12
/// over 100,000 random values written to Debian's victoria-metrics). A relative difference up
/// to 2e-12 counts as the same; both NaN counts as the same.
fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 2e-12 * a.abs().max(b.abs())
}

/// The same timestamps, exactly, with the same values (see [`same`]).
fn same_points(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && same(x.1, y.1))
}

/// The names of `label_values(selector, label)` at `at` (the last hour), as Grafana asks.
fn label_values(base: &str, selector: &str, label: &str, at: i64) -> BTreeSet<String> {
    let path = format!(
        "/api/v1/label/{label}/values?match[]={}&start={}&end={at}",
        encode(selector),
        at - 3600
    );
    api(base, &path)
        .unwrap_or_else(|e| panic!("label_values({selector}, {label}): {e:#}"))
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// A dashboard's query variables as (name, selector, label), in order.
fn variables(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let query = v["definition"].as_str().unwrap();
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("not label_values(...): {query}"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        out.push((
            v["name"].as_str().unwrap().to_owned(),
            selector.trim().to_owned(),
            label.trim().to_owned(),
        ));
    }
    out
}

/// Replaces Grafana's variables: the query variables by `values`, the time range by the
/// dashboards' (7 days), `$__rate_interval` by what Grafana computes for the datasources'
/// 60 s scrape interval (4 × 60 s).
fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = expr
        .replace("$__range", "7d")
        .replace("$__rate_interval", "4m");
    // Longest names first, so `$site` does not eat into `$sites`.
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out.replace(&format!("${name}"), &values[name]);
    }
    assert!(!out.contains('$'), "unknown variable in {out}");
    out
}

/// The dashboards that chart billing families: every panel query names one.
fn billing_dashboards() -> Vec<(String, Value)> {
    let families = regex_lite(BILLING);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let exprs: Vec<&str> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .map(|t| t["expr"].as_str().unwrap())
            .collect();
        if exprs.iter().all(|e| families.iter().any(|f| e.contains(f))) {
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), d));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The literal prefixes of the billing regex's alternatives (`project_`, `openstack_project_`,
/// `project:libvirt_`), enough to tell which expressions name a billing family.
fn regex_lite(alternatives: &str) -> Vec<String> {
    alternatives
        .split('|')
        .map(|a| a.split(['.', '*', '+']).next().unwrap().to_owned())
        .collect()
}

/// Runs every query of the dashboards that chart billing families at `at` on the portal and
/// on the store: the variables' `label_values` (filled, as Grafana does, from the answers:
/// the first site, "All" for the rest), then every panel's expression, instant and range.
/// The label sets must be the same, and the values too where nothing is extrapolated.
/// Returns how many value comparisons were made.
fn compare_dashboards(portal_url: &str, store_url: &str, at: i64) -> usize {
    let dashboards = billing_dashboards();
    assert_eq!(
        dashboards.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
        ["guests.json", "project-usage.json"]
    );
    let mut compared = 0;
    for (file, dashboard) in &dashboards {
        let mut values = BTreeMap::new();
        for (name, selector, label) in variables(dashboard) {
            let selector = substitute(&selector, &values);
            let portal = label_values(portal_url, &selector, &label, at);
            let stored = label_values(store_url, &selector, &label, at);
            assert!(!portal.is_empty(), "{file}: ${name}: {selector}");
            assert_eq!(
                portal, stored,
                "{file}: ${name}: label_values({selector}, {label})"
            );
            // The first site; "All" (the variables' allValue) for the others.
            let value = if values.is_empty() {
                regex_escape(portal.first().unwrap())
            } else {
                ".*".to_owned()
            };
            values.insert(name, value);
        }
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let mut expr = substitute(target["expr"].as_str().unwrap(), &values);
                let extrapolated = expr.contains("rate(") || expr.contains("increase(");
                if extrapolated {
                    if let Some((k, inner)) = ranked(&expr) {
                        // topk over values that differ by design can pick different series
                        // where two are close (seen: the 10th and 11th project swap). Both
                        // pick k among the same candidates: compare those.
                        for base in [portal_url, store_url] {
                            let top = points(base, &expr, at, false);
                            let all = points(base, &inner, at, false);
                            assert_eq!(top.len(), k.min(all.len()), "{file}: {base}: {expr}");
                            assert!(top.keys().all(|l| all.contains_key(l)), "{base}: {expr}");
                        }
                        expr = inner;
                    }
                }
                for range in [false, true] {
                    let portal = points(portal_url, &expr, at, range);
                    let stored = points(store_url, &expr, at, range);
                    let what = format!(
                        "{file} / {} ({}): {expr}",
                        panel["title"],
                        if range { "range" } else { "instant" }
                    );
                    assert!(!portal.is_empty(), "{what}: no data at the portal");
                    assert_eq!(
                        portal.keys().collect::<Vec<_>>(),
                        stored.keys().collect::<Vec<_>>(),
                        "{what}: label sets\nportal: {portal:?}\nstore: {stored:?}"
                    );
                    if extrapolated {
                        continue;
                    }
                    for (l, p) in &portal {
                        let s = &stored[l];
                        assert!(same_points(p, s), "{what}: {l:?}: {p:?} / {s:?}");
                    }
                    compared += 1;
                }
            }
        }
    }
    compared
}

#[test]
fn the_store_holds_the_portals_billing_series_and_outlives_the_portal() {
    let store = VictoriaMetrics::start().unwrap();
    let mut stack = DevStack::start_with_store(2, Speed::FAST, &store.write_url()).unwrap();

    // Every billing family of both sites reaches the store, and WINDOW seconds of it.
    let names = |base: &str| -> anyhow::Result<BTreeSet<String>> {
        let data = api(
            base,
            &format!(
                "/api/v1/query?query={}",
                encode(&format!(
                    "count by (__name__) ({{__name__=~\"{BILLING}\"}})"
                ))
            ),
        )?;
        Ok(data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["metric"]["__name__"].as_str().unwrap().to_owned())
            .collect())
    };
    let families = poll(
        "every billing family in the store for a whole window",
        Duration::from_secs(180),
        || {
            let portal = names(&stack.portal.url)?;
            let stored = names(&store.url)?;
            let window = format!(
                "min(count_over_time(project_vcpu_usage[1h])) >= {}",
                WINDOW + STEP
            );
            // project_vcpu_usage, project_mb_usage, 7 openstack_project_*, 6 project:libvirt_*.
            Ok(
                (portal.len() >= 15 && stored == portal && !store.query(&window)?.is_empty())
                    .then_some(stored),
            )
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}\nportal: {}\nstore: {}",
            stack.portal.log(),
            store.log()
        )
    });
    // Only they: the portal also holds site_exporter_*, federation_gateway_*, up, ….
    let stored: BTreeSet<String> = store
        .api("/api/v1/label/__name__/values")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        stored, families,
        "only the billing families are in the store"
    );

    // The raw samples of a past window are the same in both, timestamps and values. The store
    // gets them asynchronously: wait until it has caught up with that window.
    let at = (now() - 5) / STEP * STEP;
    let portal_raw = raw(&stack.portal.url, at).unwrap();
    let stored_raw = poll(
        "the store to hold the portal's raw samples",
        Duration::from_secs(30),
        || {
            let stored = raw(&store.url, at)?;
            let diff = difference(&portal_raw, &stored);
            if diff.is_empty() {
                Ok(Some(stored))
            } else {
                anyhow::bail!("{diff}")
            }
        },
    )
    .unwrap();
    assert!(portal_raw.len() > 100, "{} series", portal_raw.len());
    assert!(
        // One sample a second, less what a loaded machine's scrapes miss.
        portal_raw.values().all(|s| s.len() >= 5),
        "a series with few samples in {WINDOW} s"
    );

    // Every query of the usage dashboards, variables included, as Grafana sends them.
    let compared = compare_dashboards(&stack.portal.url, &store.url, at);
    assert!(compared >= 10, "{compared} value comparisons");

    // The portal loses its data directory and starts again: the store still has the window.
    stack.portal.restart_wiped().unwrap();
    let after = raw(&stack.portal.url, at).unwrap();
    assert!(
        after.is_empty(),
        "the portal kept data over the wipe: {} series",
        after.len()
    );
    let restarted = now();
    assert_eq!(difference(&stored_raw, &raw(&store.url, at).unwrap()), "");
    // A backup (vmbackup from a snapshot of the running store) restored into an empty data
    // directory (vmrestore) holds the same window.
    let backup = tempfile::tempdir().unwrap();
    store.backup(backup.path()).unwrap();
    let restored =
        VictoriaMetrics::start_in(VictoriaMetrics::restore(backup.path()).unwrap()).unwrap();
    assert_eq!(
        difference(&stored_raw, &raw(&restored.url, at).unwrap()),
        "",
        "the restored backup"
    );
    drop(restored);

    // … and keeps receiving from the restarted portal.
    poll(
        "new samples in the store after the restart",
        Duration::from_secs(120),
        || {
            let got = store.query(&format!(
                "timestamp(openstack_project_vcpu_seconds_total) > {restarted}"
            ))?;
            Ok((!got.is_empty()).then_some(()))
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}\nportal: {}\nstore: {}",
            stack.portal.log(),
            store.log()
        )
    });
}

/// `topk(k, inner)` as (k, inner); None for any other expression.
fn ranked(expr: &str) -> Option<(usize, String)> {
    let (k, inner) = expr
        .strip_prefix("topk(")?
        .strip_suffix(')')?
        .split_once(',')?;
    Some((k.trim().parse().ok()?, inner.trim().to_owned()))
}

/// `value` as a regex matching only itself (Grafana escapes variable values in `=~`).
fn regex_escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}
