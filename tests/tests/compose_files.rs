//! The compose files are valid (`docker-compose config -q`; no Docker engine runs here), every
//! file they mount exists, and the development stack's own configs pass their checks.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;
use stack_tests::stack::repo;

fn compose_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("compose"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("docker-compose.")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn compose_files_are_valid() {
    let files = compose_files();
    assert!(files.len() >= 2, "{files:?}");
    for file in files {
        let out = Command::new("docker-compose")
            .arg("-f")
            .arg(&file)
            .args(["config", "-q"])
            .output()
            .expect("docker-compose not found: install Debian's docker-compose (the README's test command does)");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Bind-mount sources, env files and secret files named by a compose file.
fn mounted(file: &Path) -> Vec<PathBuf> {
    let dir = file.parent().unwrap();
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut out = Vec::new();
    for (_, service) in doc["services"].as_mapping().unwrap() {
        for v in service["volumes"].as_sequence().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with('.') {
                out.push(dir.join(src));
            }
        }
        for e in service["env_file"].as_sequence().into_iter().flatten() {
            out.push(dir.join(e.as_str().unwrap()));
        }
        if let Some(build) = service["build"].as_mapping() {
            let context = dir.join(build[&Value::from("context")].as_str().unwrap());
            out.push(context.join(build[&Value::from("dockerfile")].as_str().unwrap()));
        }
    }
    for (_, secret) in doc["secrets"].as_mapping().into_iter().flatten() {
        out.push(dir.join(secret["file"].as_str().unwrap()));
    }
    out
}

#[test]
fn every_mounted_file_exists() {
    for file in compose_files() {
        let paths = mounted(&file);
        assert!(!paths.is_empty(), "{}", file.display());
        for p in paths {
            assert!(
                p.exists(),
                "{} mounts {} which does not exist",
                file.display(),
                p.display()
            );
        }
    }
}

#[test]
fn the_dev_stack_configs_pass_their_checks() {
    let dev = repo().join("compose/dev");
    // The gateway config loads with the development secrets in place of /run/secrets.
    let gw = std::fs::read_to_string(dev.join("gateway.yml")).unwrap();
    let gw = gw
        .replace(
            "/run/secrets/dev_tls_cert",
            &dev.join("secrets/dev-tls.crt").display().to_string(),
        )
        .replace(
            "/run/secrets/dev_tls_key",
            &dev.join("secrets/dev-tls.key").display().to_string(),
        )
        .replace(
            "/run/secrets/dev_portal_token",
            &dev.join("secrets/dev-portal.token").display().to_string(),
        );
    let config = federation_gateway::config::Config::parse(&gw, &dev.join("gateway.yml")).unwrap();
    assert!(config.tls.is_some());
    assert_eq!(config.clients.len(), 1);

    // The portal config passes promtool with its secrets and rules where it mounts them.
    let tmp = tempfile::tempdir().unwrap();
    let portal = std::fs::read_to_string(dev.join("portal/prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/secrets/",
            &format!("{}/", dev.join("secrets").display()),
        )
        .replace(
            "/etc/prometheus/rules/",
            &format!("{}/", repo().join("prometheus/portal/rules").display()),
        );
    std::fs::write(tmp.path().join("prometheus.yml"), portal).unwrap();
    let out = Command::new("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Its federation jobs ask exactly for what the gateway allows.
    let allow: Vec<String> = serde_yaml::from_str::<Value>(&gw).unwrap()["clients"][0]["allow"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let doc: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dev.join("portal/prometheus.yml")).unwrap())
            .unwrap();
    for job in doc["scrape_configs"].as_sequence().unwrap() {
        if let Some(params) = job["params"]["match[]"].as_sequence() {
            let asked: Vec<String> = params
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            assert_eq!(asked, allow, "job {:?}", job["job_name"]);
        }
    }
}
