//! The development topology end to end: two dummy sites behind their gateways, one portal.
//! The portal holds both sites' series told apart by `site`, the legacy families and the
//! recording rules' outputs arrive, nothing outside the allow-lists does, each gateway accepts
//! only its own site's token and allow-list, and every dashboard query returns data.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use stack_tests::stack::{repo, DevStack, Speed};
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

    // Both sites arrive, told apart by the `site` label: their own external label on federated
    // series, the federation job's target label on the portal's `up`.
    let sites = poll(
        "both sites' usage at the portal",
        Duration::from_secs(120),
        || {
            let got = count_by(portal, "site", "project_vcpu_usage");
            Ok((got.len() == 2).then_some(got))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\nportal log: {}", portal.log()));
    assert_eq!(
        sites,
        BTreeSet::from(["site-a".to_string(), "site-b".to_string()])
    );
    for selector in [
        "openstack_project_vcpu_seconds_total",
        "up{job=~\"federate_.+\"}",
    ] {
        assert_eq!(
            count_by(portal, "site", selector),
            BTreeSet::from(["site-a".to_string(), "site-b".to_string()]),
            "{selector}"
        );
    }

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
        "{__name__=~\"prometheus_.+\",site=~\"site-.\"}",
        "{__name__=~\"libvirt_.+\"}",
        "site_exporter_build_info",
    ] {
        let got = portal.query(selector).unwrap();
        assert!(got.is_empty(), "{selector} reached the portal: {got:?}");
    }

    // Each gateway accepts only its own site's token and allow-list: site A's token is
    // refused at site B (401), a selector that A allows and B does not is refused at B (403),
    // and a catch-all selector is refused everywhere.
    let cert = stack.dir.path().join("tls.crt");
    let curl = |gw: &str, token: &str, query: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&cert)
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("https://{gw}/federate?{query}"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let (a, b) = (&stack.sites[0], &stack.sites[1]);
    assert_ne!(a.token, b.token);
    let (gw_a, gw_b) = (a.gateway.addr.as_str(), b.gateway.addr.as_str());
    let usage =
        "match%5B%5D=%7Bjob%3D%22project_usages%22%2C__name__%3D~%22project_.%2A_usage%22%7D";
    let gateway_metrics = "match%5B%5D=%7B__name__%3D~%22federation_gateway_.%2B%22%7D";
    let everything = "match%5B%5D=%7B__name__%3D~%22.%2B%22%7D";
    assert_eq!(curl(gw_a, &a.token, usage), "200");
    assert_eq!(curl(gw_b, &b.token, usage), "200");
    assert_eq!(curl(gw_a, "wrong-token-0123456789abcdef", usage), "401");
    assert_eq!(
        curl(gw_b, &a.token, usage),
        "401",
        "site A's token at site B"
    );
    assert_eq!(
        curl(gw_a, &b.token, usage),
        "401",
        "site B's token at site A"
    );
    assert_eq!(curl(gw_a, &a.token, gateway_metrics), "200");
    assert_eq!(
        curl(gw_b, &b.token, gateway_metrics),
        "403",
        "A's selector at B"
    );
    for (gw, token) in [(gw_a, &a.token), (gw_b, &b.token)] {
        assert_eq!(curl(gw, token, everything), "403");
    }
    // So the portal holds site A's gateway metrics and not site B's (they arrive once site A's
    // Prometheus has scraped its gateway after a federation and the portal federated again).
    let want = BTreeSet::from(["site-a".to_string()]);
    poll(
        "site A's gateway metrics, and only A's, at the portal",
        Duration::from_secs(60),
        || {
            let got = count_by(portal, "site", "federation_gateway_requests_total");
            anyhow::ensure!(got.is_subset(&want), "beyond site A: {got:?}");
            Ok((got == want).then_some(()))
        },
    )
    .unwrap();

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
