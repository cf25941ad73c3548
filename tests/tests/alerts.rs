//! Alerts delivered, end to end on the native development stack: both sites' Prometheus and the
//! portal send their alerts to a real Alertmanager (Debian's, TLS and basic auth from the
//! development web config) that runs the shipped routes and inhibit rules, with every receiver
//! turned into a webhook to a local sink and short group timings; the rules are test copies
//! whose `for:` is one evaluation interval.
//!
//! - site A's source fails: its alert reaches the sink with `site="site-a"` through site A's
//!   route, and resolves when the source recovers;
//! - site A's gateway stops: the portal's federation alert reaches the on-call route, and site
//!   A's per-source alert, firing again, is inhibited in Alertmanager and not delivered.
//!
//! Also `amtool check-config` on the shipped config and `amtool config routes test` on its
//! routing tree.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_yaml::Value as Yaml;
use stack_tests::alertmanager::{test_config, Alertmanager, Notification, User, WebhookSink};
use stack_tests::stack::{repo, Alerting, DevStack, Options, Speed};
use stack_tests::{poll, run_tool};

fn amtool(args: &[&str]) -> String {
    run_tool("amtool", args, &repo().join("prometheus/portal")).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn the_shipped_alertmanager_config_checks() {
    let out = amtool(&["check-config", "alertmanager.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    assert!(out.contains("1 inhibit rules"), "{out}");
}

#[test]
fn alerts_are_routed_on_site_and_severity() {
    struct Case {
        labels: &'static [&'static str],
        want: &'static str,
    }
    let cases = [
        Case {
            labels: &[
                "site=site-a",
                "severity=critical",
                "alertname=SiteFederationDown",
            ],
            want: "oncall-webhook,site-a-email",
        },
        Case {
            labels: &[
                "site=site-a",
                "severity=warning",
                "alertname=SiteExporterSourceFailing",
            ],
            want: "site-a-email",
        },
        Case {
            labels: &[
                "site=site-b",
                "severity=critical",
                "alertname=SiteFederationDown",
            ],
            want: "oncall-webhook",
        },
        Case {
            labels: &[
                "site=site-b",
                "severity=warning",
                "alertname=LibvirtUnreachable",
            ],
            want: "portal-email",
        },
        Case {
            labels: &["alertname=Watchdog"],
            want: "portal-email",
        },
    ];
    for case in cases {
        let mut args = vec![
            "config",
            "routes",
            "test",
            "--config.file",
            "alertmanager.yml",
        ];
        args.extend(case.labels);
        // The receivers on the first line; amtool warns on standard error after it.
        let out = amtool(&args);
        let receivers = out.lines().next().unwrap_or("").trim();
        assert_eq!(receivers, case.want, "{:?}: {out}", case.labels);
    }
}

/// Every notification for `alertname` of `site` with `status`, with its receiver.
fn delivered(sink: &WebhookSink, alertname: &str, site: &str, status: &str) -> Vec<Notification> {
    sink.received()
        .into_iter()
        .filter(|n| n.alerts(alertname, site).iter().any(|s| s == status))
        .collect()
}

/// Waits until `receiver` got `status` for `alertname` of `site` at the sink. (Routes that
/// `continue` notify their receivers concurrently: wait for the one that matters.)
fn wait_delivered(sink: &WebhookSink, alertname: &str, site: &str, status: &str, receiver: &str) {
    poll(
        &format!("{alertname} {status} for {site} at the webhook sink, receiver {receiver}"),
        Duration::from_secs(120),
        || {
            let got = delivered(sink, alertname, site, status);
            Ok(got.iter().any(|n| n.receiver == receiver).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\nreceived: {:#?}", sink.received()));
}

#[test]
fn site_alerts_reach_the_sink_and_are_inhibited_while_federation_is_down() {
    let dev = repo().join("compose/dev");
    let secret = |name: &str| dev.join("secrets").join(name);
    let sink = WebhookSink::start().unwrap();
    let group = Duration::from_secs(1);
    let web: Yaml =
        serde_yaml::from_str(&std::fs::read_to_string(dev.join("alertmanager-web.yml")).unwrap())
            .unwrap();
    let am = Alertmanager::start(
        &test_config(&sink.url, group).unwrap(),
        (
            &secret("dev-alertmanager.crt"),
            &secret("dev-alertmanager.key"),
        ),
        &web["basic_auth_users"],
        User {
            name: "portal".into(),
            password_file: secret("dev-alertmanager-portal.password"),
        },
    )
    .unwrap();
    // Nothing open: the API wants a user.
    assert_eq!(am.status_anonymous("/api/v2/status").unwrap(), "401");

    let options = Options {
        alerting: Some(Alerting {
            address: am.address.clone(),
            ca_file: secret("dev-alertmanager.crt"),
            portal_password_file: secret("dev-alertmanager-portal.password"),
            site_password_file: secret("dev-alertmanager-site.password"),
        }),
        cloud_files: true,
        store: None,
    };
    let mut stack = DevStack::start_with(2, Speed::FAST, &options).unwrap();
    let cloud = stack.sites[0].cloud_file.clone().unwrap();
    let good = std::fs::read_to_string(&cloud).unwrap();
    let portal = &stack.portal;
    // Both sites federate before anything breaks.
    poll("both sites at the portal", Duration::from_secs(120), || {
        Ok((portal.query("up{job=~\"federate_.+\"} == 1")?.len() == 2).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\nportal log: {}", portal.log()));

    // 1. Site A's source fails: its own alert reaches the sink with its site label, through
    //    site A's route, and site B has none.
    std::fs::write(&cloud, "domains: [this is not a cloud\n").unwrap();
    wait_delivered(
        &sink,
        "SiteExporterSourceFailing",
        "site-a",
        "firing",
        "site-a-email",
    );
    assert!(delivered(&sink, "SiteExporterSourceFailing", "site-b", "firing").is_empty());

    // 2. It recovers: the alert resolves at the sink.
    std::fs::write(&cloud, &good).unwrap();
    wait_delivered(
        &sink,
        "SiteExporterSourceFailing",
        "site-a",
        "resolved",
        "site-a-email",
    );

    // 3. Site A's gateway stops: the portal's federation alert pages on-call.
    stack.sites[0].gateway.stop();
    wait_delivered(
        &sink,
        "SiteFederationDown",
        "site-a",
        "firing",
        "oncall-webhook",
    );

    // 4. Site A's source fails again while its federation is down: Alertmanager holds the
    //    alert as inhibited by the federation alert, and does not deliver it.
    let before = delivered(&sink, "SiteExporterSourceFailing", "site-a", "firing").len();
    std::fs::write(&cloud, "domains: [this is not a cloud\n").unwrap();
    let inhibited = poll(
        "SiteExporterSourceFailing of site-a inhibited in Alertmanager",
        Duration::from_secs(120),
        || {
            let alerts = am.alerts("SiteExporterSourceFailing")?;
            Ok(alerts
                .into_iter()
                .find(|a| a["labels"]["site"] == "site-a" && a["status"]["state"] == "suppressed"))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\nalertmanager log: {}", am.log()));
    let by = inhibited["status"]["inhibitedBy"].as_array().unwrap();
    assert!(!by.is_empty(), "{inhibited}");
    let federation_down = am.alerts("SiteFederationDown").unwrap();
    assert!(
        federation_down
            .iter()
            .any(|a| a["labels"]["site"] == "site-a" && by.contains(&a["fingerprint"])),
        "inhibited by {by:?}, federation alerts: {federation_down:?}"
    );
    // A negative can only be observed over a window: several group intervals in which the
    // alert stays inhibited and nothing about it reaches the sink.
    let window = Instant::now() + group * 5;
    while Instant::now() < window {
        let alerts = am
            .alerts("SiteExporterSourceFailing")
            .unwrap_or_else(|e| panic!("{e:#}\nalertmanager log: {}", am.log()));
        let state: Vec<&str> = alerts
            .iter()
            .filter(|a| a["labels"]["site"] == "site-a")
            .map(|a| a["status"]["state"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            state,
            ["suppressed"],
            "the inhibition did not hold: {alerts:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        delivered(&sink, "SiteExporterSourceFailing", "site-a", "firing").len(),
        before,
        "an inhibited alert was delivered: {:#?}",
        sink.received()
    );
    // A warning of site A went to site A's route only (the on-call route takes criticals).
    for n in delivered(&sink, "SiteExporterSourceFailing", "site-a", "firing") {
        assert_eq!(n.receiver, "site-a-email", "{n:#?}");
    }
}
