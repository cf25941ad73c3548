//! The Prometheus configurations and rules shipped in `prometheus/` pass `promtool`: configs
//! check, rules check, and every alert has a unit test in `prometheus/tests/`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use stack_tests::run_tool;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn promtool(args: &[&str], dir: &Path) -> String {
    run_tool("promtool", args, dir).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn site_config_checks() {
    promtool(
        &["check", "config", "prometheus.yml"],
        &repo().join("prometheus/site"),
    );
}

#[test]
fn portal_config_checks_with_its_secret_files_in_place() {
    // The portal config names token and CA files under /etc/prometheus/secrets/; promtool
    // checks they exist, so check a copy that points at stand-ins.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("prometheus/portal/prometheus.yml")).unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for name in ["site-a.token", "site-a-ca.pem"] {
        std::fs::write(secrets.join(name), "stand-in\n").unwrap();
    }
    let text = text.replace(
        "/etc/prometheus/secrets/",
        &format!("{}/", secrets.display()),
    );
    std::fs::write(dir.path().join("prometheus.yml"), text).unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::copy(
        repo().join("prometheus/portal/rules/alerts.yml"),
        rules.join("alerts.yml"),
    )
    .unwrap();
    let out = promtool(&["check", "config", "prometheus.yml"], dir.path());
    assert!(out.contains("SUCCESS: 3 rules found"), "{out}");
}

#[test]
fn rule_unit_tests_pass() {
    let dir = repo().join("prometheus/tests");
    for test in ["site_rules_test.yml", "portal_rules_test.yml"] {
        let out = promtool(&["test", "rules", test], &dir);
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

/// Alert names defined in a rules file.
fn alerts(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|a| a.trim().to_string())
        .collect()
}

#[test]
fn every_alert_has_a_unit_test() {
    let tests: String = ["site_rules_test.yml", "portal_rules_test.yml"]
        .iter()
        .map(|t| std::fs::read_to_string(repo().join("prometheus/tests").join(t)).unwrap())
        .collect();
    let mut all = Vec::new();
    for rules in [
        "prometheus/site/rules/alerts.yml",
        "prometheus/portal/rules/alerts.yml",
    ] {
        all.extend(alerts(&repo().join(rules)));
    }
    assert!(all.len() >= 10, "{all:?}");
    for alert in all {
        // A test that expects it to fire, not only one that names it.
        let tested = tests.split("alertname: ").skip(1).any(|rest| {
            rest.starts_with(&format!("{alert}\n"))
                && rest
                    .split("alertname:")
                    .next()
                    .unwrap_or("")
                    .contains("exp_labels")
        });
        assert!(
            tested,
            "alert {alert} has no promtool test that expects it to fire"
        );
    }
}
