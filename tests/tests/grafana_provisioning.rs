//! Grafana cannot run here (no Debian package, no registry), so its provisioning is checked
//! statically against what Grafana would do with it: every compose file with a `grafana`
//! service mounts the provisioning and the dashboards where the provider looks, the
//! provisioned datasources (the portal Prometheus and the billing store, VictoriaMetrics) point
//! at services of that file that grafana reaches, and every dashboard takes its datasource from
//! a `datasource` variable that offers both, so it works with either. Grafana's admin password
//! comes from a secret file and anonymous access is off in every compose file that runs Grafana.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::Value;
use stack_tests::compose::resolves;
use stack_tests::stack::repo;

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut doc: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    doc.apply_merge()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    doc
}

/// The hosts of the provisioned datasources, in order: the portal Prometheus, then the
/// billing store. Both are of type `prometheus`, so the dashboards' `datasource` variable (of
/// that type) offers both.
fn datasource_hosts() -> Vec<String> {
    let datasources = yaml(&repo().join("dashboards/provisioning/datasources/prometheus.yml"));
    let list = datasources["datasources"]
        .as_sequence()
        .expect("a list of datasources");
    let mut uids = BTreeSet::new();
    let hosts: Vec<String> = list
        .iter()
        .map(|d| {
            assert_eq!(d["type"].as_str(), Some("prometheus"), "{d:?}");
            assert!(uids.insert(d["uid"].as_str().expect("a uid")), "{d:?}");
            let url = d["url"].as_str().expect("the datasource has a URL");
            let host = url
                .strip_prefix("http://")
                .and_then(|rest| rest.split(':').next())
                .expect("an http URL with a host");
            host.to_owned()
        })
        .collect();
    assert_eq!(hosts, ["prometheus", "victoria-metrics"]);
    hosts
}

#[test]
fn grafana_mounts_what_its_provisioning_names() {
    let provider = yaml(&repo().join("dashboards/provisioning/dashboards/dashboards.yml"));
    let dashboards_path = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("the dashboard provider names a path");
    let hosts = datasource_hosts();

    let mut checked = 0;
    for file in ["docker-compose.dev.yml", "docker-compose.portal.yml"] {
        let compose = yaml(&repo().join("compose").join(file));
        let grafana = &compose["services"]["grafana"];
        assert!(grafana.is_mapping(), "{file} has a grafana service");
        let mounts: BTreeSet<(String, String)> = grafana["volumes"]
            .as_sequence()
            .expect("grafana has volumes")
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|v| {
                let mut parts = v.split(':');
                Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
            })
            .collect();
        for (source, target) in [
            (
                "../dashboards/provisioning/datasources",
                "/etc/grafana/provisioning/datasources",
            ),
            (
                "../dashboards/provisioning/dashboards",
                "/etc/grafana/provisioning/dashboards",
            ),
            ("../dashboards", dashboards_path),
        ] {
            assert!(
                mounts.contains(&(source.to_owned(), target.to_owned())),
                "{file}: {source} mounted at {target}: {mounts:?}"
            );
            assert!(
                repo().join("compose").join(source).is_dir(),
                "{file}: {source} exists"
            );
        }
        for host in &hosts {
            assert!(
                resolves(&compose, "grafana", host),
                "{file}: the datasource's host {host} is a service, or a network alias, that grafana reaches"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn every_dashboard_takes_its_datasource_from_a_variable() {
    let mut uids = BTreeSet::new();
    let mut dashboards = 0;
    for entry in std::fs::read_dir(repo().join("dashboards")).expect("dashboards/") {
        let path = entry.expect("a dashboard").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        dashboards += 1;
        let name = path.display().to_string();
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("readable"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            uids.insert(d["uid"].as_str().expect("a uid").to_owned()),
            "{name}: uid unique"
        );
        let variables = d["templating"]["list"].as_array().expect("variables");
        // Of type prometheus and without a regex, so it offers every provisioned datasource,
        // the billing store included.
        assert!(
            variables.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"
                && v["regex"].as_str().unwrap_or("").is_empty()),
            "{name}: a `datasource` variable of type prometheus that offers every datasource"
        );
        let mut panels = 0;
        let mut stack: Vec<&serde_json::Value> =
            d["panels"].as_array().expect("panels").iter().collect();
        while let Some(p) = stack.pop() {
            stack.extend(p["panels"].as_array().into_iter().flatten());
            if p["type"] == "row" {
                continue;
            }
            panels += 1;
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{name}: panel {} uses the variable",
                p["title"]
            );
            for t in p["targets"].as_array().into_iter().flatten() {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{name}: a query of panel {} uses the variable",
                    p["title"]
                );
            }
        }
        assert!(panels > 0, "{name} has panels");
    }
    assert_eq!(dashboards, 3, "the three dashboards");
}

#[test]
fn grafana_takes_its_admin_password_from_a_secret_and_refuses_anonymous_users() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("compose")).expect("compose/") {
        let path = entry.expect("compose/ entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if !name.is_some_and(|n| n.starts_with("docker-compose.")) {
            continue;
        }
        let compose = yaml(&path);
        let grafana = &compose["services"]["grafana"];
        if grafana.is_null() {
            continue;
        }
        let file = path.display();
        let env = &grafana["environment"];
        assert!(
            env.as_mapping().is_some(),
            "{file}: grafana's environment must be a mapping"
        );
        // Grafana reads the variable named with __FILE from that file: a Docker secret the
        // service is given, defined from a file; never the password itself.
        let password = env["GF_SECURITY_ADMIN_PASSWORD__FILE"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no GF_SECURITY_ADMIN_PASSWORD__FILE"));
        let secret = password
            .strip_prefix("/run/secrets/")
            .unwrap_or_else(|| panic!("{file}: {password} is not a Docker secret"));
        let given = grafana["secrets"]
            .as_sequence()
            .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(secret)));
        assert!(given, "{file}: grafana is not given the secret {secret}");
        assert!(
            compose["secrets"][secret]["file"].as_str().is_some(),
            "{file}: the secret {secret} is not defined from a file"
        );
        assert!(
            env.get("GF_SECURITY_ADMIN_PASSWORD").is_none(),
            "{file}: the admin password is in the environment"
        );
        // Anonymous access off, explicitly (a string, as compose passes it).
        assert_eq!(
            env["GF_AUTH_ANONYMOUS_ENABLED"].as_str(),
            Some("false"),
            "{file}: GF_AUTH_ANONYMOUS_ENABLED"
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "the dev and portal stacks run Grafana");
}
