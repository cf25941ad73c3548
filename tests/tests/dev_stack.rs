//! The development topology end to end: two dummy sites behind their gateways, one portal.
//! The portal holds both sites' series told apart by `location`, the legacy families and the
//! recording rules' outputs arrive, nothing outside the allow-lists does, a wrong token and a
//! catch-all selector are refused at the gateway, and every dashboard query returns data.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use stack_tests::stack::{repo, DevStack, Speed, DEV_TOKEN};
use stack_tests::{poll, Prometheus};

fn count_by(prom: &Prometheus, by: &str, selector: &str) -> BTreeSet<String> {
    prom.query(&format!("count by ({by}) ({selector})"))
        .unwrap()
        .iter()
        .filter_map(|s| s["metric"][by].as_str().map(str::to_owned))
        .collect()
}

/// Every PromQL expression of a dashboard, with the variables set to real values.
fn panel_queries(dashboard: &Value, site: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap().to_string();
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$site", site)
                .replace("$domain", ".*")
                .replace("$project", ".*")
                .replace("$hypervisor", ".*")
                .replace("$__range", "2m")
                .replace("$__rate_interval", "30s");
            assert!(!expr.contains('$'), "{title}: unknown variable in {expr}");
            out.push((title.clone(), expr));
        }
    }
    out
}

#[test]
fn two_sites_federate_into_the_portal() {
    let stack = DevStack::start(2, Speed::FAST).unwrap();
    let portal = &stack.portal;

    // Both sites arrive, told apart by the portal's `location` and the sites' `site` labels.
    let locations = poll(
        "both sites' usage at the portal",
        Duration::from_secs(120),
        || {
            let got = count_by(portal, "location", "project_vcpu_usage");
            Ok((got.len() == 2).then_some(got))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\nportal log: {}", portal.log()));
    assert_eq!(
        locations,
        BTreeSet::from(["site-a".to_string(), "site-b".to_string()])
    );
    let sites = count_by(portal, "site", "openstack_project_vcpu_seconds_total");
    assert_eq!(
        sites,
        BTreeSet::from(["site-a".to_string(), "site-b".to_string()])
    );

    // The recording rules' outputs arrive (they need two scrapes for a rate).
    poll(
        "the recording rules' outputs",
        Duration::from_secs(60),
        || {
            let names = count_by(portal, "__name__", "{__name__=~\"project:libvirt_.+\"}");
            Ok((names.len() == 7).then_some(()))
        },
    )
    .unwrap();

    // Nothing outside the allow-lists: no site `up`, no Prometheus internals, no raw guests.
    for selector in [
        "up{job!~\"federate_.+|prometheus\"}",
        "{__name__=~\"prometheus_.+\",location=~\"site-.\"}",
        "{__name__=~\"libvirt_.+\"}",
        "site_exporter_build_info",
    ] {
        let got = portal.query(selector).unwrap();
        assert!(got.is_empty(), "{selector} reached the portal: {got:?}");
    }

    // The gateways refuse a wrong token and a catch-all selector.
    let gw = &stack.sites[0].gateway.addr;
    let cert = stack.dir.path().join("tls.crt");
    let curl = |token: &str, query: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&cert)
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("https://{gw}/federate?{query}"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let allowed =
        "match%5B%5D=%7Bjob%3D%22project_usages%22%2C__name__%3D~%22project_.%2A_usage%22%7D";
    assert_eq!(curl(DEV_TOKEN, allowed), "200");
    assert_eq!(curl("wrong-token-0123456789abcdef", allowed), "401");
    assert_eq!(
        curl(DEV_TOKEN, "match%5B%5D=%7B__name__%3D~%22.%2B%22%7D"),
        "403"
    );

    // Every panel of every dashboard returns data for a real site.
    for file in ["project-usage.json", "guests.json", "stack-health.json"] {
        let dashboard: Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join("dashboards").join(file)).unwrap(),
        )
        .unwrap();
        for (title, expr) in panel_queries(&dashboard, "site-a") {
            poll(
                &format!("{file} / {title}: {expr}"),
                Duration::from_secs(60),
                || Ok((!portal.query(&expr)?.is_empty()).then_some(())),
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        }
    }
}
