//! Grafana cannot run here (no Debian package, no registry), so its provisioning is checked
//! statically against what Grafana would do with it: every compose file with a `grafana`
//! service mounts the provisioning and the dashboards where the provider looks, the
//! provisioned datasource points at that file's Prometheus service, and every dashboard takes
//! its datasource from a `datasource` variable, so it works with any Prometheus-compatible
//! datasource. Grafana's admin password comes from a secret file and anonymous access is off in
//! every compose file that runs Grafana.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::Value;
use stack_tests::stack::repo;

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut doc: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    doc.apply_merge()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    doc
}

/// The networks a service is on (compose's `default` when it names none).
fn networks(service: &Value) -> BTreeSet<String> {
    match &service["networks"] {
        Value::Sequence(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Value::Mapping(map) => map
            .keys()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => BTreeSet::from(["default".to_owned()]),
    }
}

/// Whether `host`, looked up from `from`, names a service on a shared network, by its name or
/// by a network alias, as compose's DNS answers.
fn resolves(compose: &Value, from: &str, host: &str) -> bool {
    let mine = networks(&compose["services"][from]);
    let Some(services) = compose["services"].as_mapping() else {
        return false;
    };
    services.iter().any(|(name, service)| {
        let shared: Vec<String> = networks(service).intersection(&mine).cloned().collect();
        if shared.is_empty() {
            return false;
        }
        name.as_str() == Some(host)
            || shared.iter().any(|n| {
                service["networks"][n.as_str()]["aliases"]
                    .as_sequence()
                    .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(host)))
            })
    })
}

#[test]
fn grafana_mounts_what_its_provisioning_names() {
    let provider = yaml(&repo().join("dashboards/provisioning/dashboards/dashboards.yml"));
    let dashboards_path = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("the dashboard provider names a path");
    let datasources = yaml(&repo().join("dashboards/provisioning/datasources/prometheus.yml"));
    let url = datasources["datasources"][0]["url"]
        .as_str()
        .expect("the datasource has a URL");
    let host = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split(':').next())
        .expect("an http URL with a host");

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
        assert!(
            resolves(&compose, "grafana", host),
            "{file}: the datasource's host {host} is a service, or a network alias, that grafana reaches"
        );
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
        assert!(
            variables.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{name}: a `datasource` variable of type prometheus"
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
