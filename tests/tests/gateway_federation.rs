//! A real site Prometheus behind the gateway, and a real portal Prometheus that federates
//! through it as an unchanged portal does (`authorization` or `bearer_token`, `honor_labels`):
//! the portal ends up with the allowed series and none of the others.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use stack_tests::stack::Gateway;
use stack_tests::{get, poll, Exporter, Prometheus};

const TOKEN: &str = "portal-token-0123456789abcdef";

/// A gateway for `upstream` with the portal client; the directory holds its files.
fn start_gateway(upstream: &str) -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("portal.token"), TOKEN).unwrap();
    let path = dir.path().join("gateway.yml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:0\ninternal_listen: 127.0.0.1:0\nupstream: {{url: '{upstream}', timeout: 10s}}\nclients:\n  - name: portal\n    token_file: portal.token\n    allow:\n      - '{{job=\"project_usages\",__name__=~\"project_.*_usage\"}}'\n      - '{{__name__=~\"openstack_project_.+\"}}'\n"
        ),
    )
    .unwrap();
    (Gateway::start(&path).unwrap(), dir)
}

fn names(prom: &Prometheus, selector: &str) -> BTreeSet<String> {
    prom.query(&format!("count by (__name__) ({selector})"))
        .unwrap()
        .iter()
        .filter_map(|s| s["metric"]["__name__"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn portal_federates_only_the_allowed_series_through_the_gateway() {
    let exporter = Exporter::start_dummy(Duration::from_millis(500));
    let site = Prometheus::start(
        &format!(
            "global: {{scrape_interval: 1s, external_labels: {{site: site-a}}}}\n\
             scrape_configs:\n  - job_name: project_usages\n    static_configs: [{{targets: ['{}']}}]\n",
            exporter.addr
        ),
        &[],
    )
    .unwrap();
    let (gateway, _gateway_dir) = start_gateway(&site.url);
    let host = gateway.addr.as_str();
    let job = |name: &str, selector: &str, auth: &str| {
        [
            format!("  - job_name: {name}"),
            "    honor_labels: true".into(),
            "    metrics_path: /federate".into(),
            format!("    params: {{'match[]': ['{selector}']}}"),
            format!("    {auth}"),
            format!("    static_configs: [{{targets: ['{host}'], labels: {{site: site-a}}}}]"),
        ]
        .join("\n")
    };
    let portal_config = [
        "global: {scrape_interval: 1s}".to_string(),
        "scrape_configs:".into(),
        job(
            "federate_legacy",
            r#"{job="project_usages",__name__=~"project_.*_usage"}"#,
            "authorization: {type: Bearer, credentials_file: portal.token}",
        ),
        job(
            "federate_openstack",
            r#"{__name__=~"openstack_project_.+"}"#,
            "bearer_token_file: portal.token",
        ),
        job(
            "federate_wrong_token",
            r#"{__name__=~"openstack_project_.+"}"#,
            "bearer_token: not-the-portal-token-0123456789",
        ),
        job(
            "federate_catch_all",
            r#"{__name__=~".+"}"#,
            "bearer_token_file: portal.token",
        ),
    ]
    .join("\n");
    let portal = Prometheus::start(&portal_config, &[("portal.token", TOKEN)]).unwrap();

    let got = poll(
        "the allowed families at the portal",
        Duration::from_secs(90),
        || {
            // The portal's own series about its scrapes (up, scrape_*) carry job="federate_…";
            // federated ones keep the site's job (honor_labels).
            let got = names(&portal, "{site=\"site-a\",job!~\"federate_.+\"}");
            let want = [
                "project_vcpu_usage",
                "project_mb_usage",
                "openstack_project_vcpu_seconds_total",
                "openstack_project_info",
            ];
            Ok(want.iter().all(|w| got.contains(*w)).then_some(got))
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}\nportal log: {}\nsite log: {}",
            portal.log(),
            site.log()
        )
    });
    for name in &got {
        assert!(
            name.starts_with("project_") || name.starts_with("openstack_project_"),
            "{name} crossed the gateway"
        );
    }
    // honor_labels: the site's job label survives, the site's external label came along.
    let series = portal.query("project_vcpu_usage").unwrap();
    assert!(!series.is_empty());
    for s in &series {
        assert_eq!(s["metric"]["job"], "project_usages", "{s}");
        assert_eq!(s["metric"]["site"], "site-a", "{s}");
    }
    // The portal's own `up` of a federation job carries the job's `site` target label.
    let up = portal.query("up{job=\"federate_legacy\"}").unwrap();
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["metric"]["site"], "site-a", "{up:?}");
    // Nothing outside the allow-lists: no site `up`, no guests, no self-metrics.
    for forbidden in [
        "up{job=\"project_usages\"}",
        "{__name__=~\"libvirt_.+\"}",
        "{__name__=~\"site_exporter_.+\"}",
        "{__name__=~\"prometheus_.+\"}",
    ] {
        assert!(
            portal.query(forbidden).unwrap().is_empty(),
            "{forbidden} reached the portal"
        );
    }
    // The wrong token and the catch-all selector are refused at the gateway.
    let errors: Vec<(String, String, String)> = poll(
        "every federation target scraped once",
        Duration::from_secs(30),
        || {
            let targets = portal.api("/api/v1/targets")?;
            let list: Vec<(String, String, String)> = targets["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    (
                        t["labels"]["job"].as_str().unwrap_or("").to_string(),
                        t["health"].as_str().unwrap_or("").to_string(),
                        t["lastError"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            Ok((list.len() == 4 && list.iter().all(|(_, h, _)| h != "unknown")).then_some(list))
        },
    )
    .unwrap();
    let find = |job: &str| errors.iter().find(|(j, _, _)| j == job).cloned().unwrap();
    assert_eq!(find("federate_legacy").1, "up");
    assert_eq!(find("federate_openstack").1, "up");
    let (_, health, error) = find("federate_wrong_token");
    assert_eq!(health, "down");
    assert!(error.contains("401"), "{error}");
    let (_, health, error) = find("federate_catch_all");
    assert_eq!(health, "down");
    assert!(error.contains("403"), "{error}");

    // The gateway's own metrics pass promtool (in the classic format) and count the outcomes.
    let (status, metrics) = get(&format!("http://{}/metrics", gateway.internal)).unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics
            .contains("federation_gateway_requests_total{client=\"portal\",outcome=\"allowed\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "federation_gateway_requests_total{client=\"unknown\",outcome=\"unauthorized\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("federation_gateway_requests_total{client=\"portal\",outcome=\"forbidden\"}"),
        "{metrics}"
    );
    let classic = site_exporter::classic::from_openmetrics(&metrics);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(classic.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report, "", "promtool on the gateway's metrics");
}
