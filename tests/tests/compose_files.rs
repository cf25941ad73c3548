//! The compose files are valid (`docker-compose config -q`; no Docker engine runs here), every
//! file they mount is shipped or is an operator's file that is documented and kept out of git
//! and image builds, and the development stack's own configs pass their checks.

#![allow(clippy::unwrap_used)]

use std::path::{Component, Path, PathBuf};
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

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Copies the compose directory `from` to `to` as an operator would have it for `docker-compose
/// config`: each `X.example` becomes `X`. Directories named `secrets` and files that have an
/// example are left out: compose does not open secret files, and an operator's real
/// credentials are copied nowhere.
fn copy_for_config(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_dir() {
            if name != "secrets" {
                copy_for_config(&path, &to.join(&name));
            }
        } else if let Some(real) = name.strip_suffix(".example") {
            std::fs::copy(&path, to.join(real)).unwrap();
        } else if !from.join(format!("{name}.example")).exists() {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

#[test]
fn compose_files_are_valid() {
    // `docker-compose config` fails on a missing env_file, and the site's (site/openrc.env) is
    // the operator's: check a copy of compose/ with the examples in place. The build contexts
    // (`..`) are the copy's parent, which exists; bind-mount sources are not opened.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("compose");
    copy_for_config(&repo().join("compose"), &copy);
    let files = compose_files();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for stack in ["dev", "hypervisor", "portal", "site"] {
        assert!(
            names.contains(&format!("docker-compose.{stack}.yml")),
            "{names:?}"
        );
    }
    for name in names {
        let out = Command::new("docker-compose")
            .arg("-f")
            .arg(copy.join(&name))
            .args(["config", "-q"])
            .output()
            .expect("docker-compose not found: install Debian's docker-compose (the README's test command does)");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `path` without `.` and `..` components (the path need not exist).
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Bind-mount sources, env files, secret files and Dockerfiles named by a compose file,
/// absolute and normalised.
fn mounted(file: &Path) -> Vec<PathBuf> {
    let dir = file.parent().unwrap().canonicalize().unwrap();
    let doc = yaml(file);
    let mut out = Vec::new();
    for (_, service) in doc["services"].as_mapping().unwrap() {
        for v in service["volumes"].as_sequence().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with('.') {
                out.push(normal(&dir.join(src)));
            }
        }
        // A single file or a list.
        let env_files = match &service["env_file"] {
            Value::String(s) => vec![s.as_str()],
            v => v
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|e| e.as_str().unwrap())
                .collect(),
        };
        for e in env_files {
            out.push(normal(&dir.join(e)));
        }
        if let Some(build) = service["build"].as_mapping() {
            let context = dir.join(build[&Value::from("context")].as_str().unwrap());
            out.push(normal(
                &context.join(build[&Value::from("dockerfile")].as_str().unwrap()),
            ));
        }
    }
    for (_, secret) in doc["secrets"].as_mapping().into_iter().flatten() {
        out.push(normal(&dir.join(secret["file"].as_str().unwrap())));
    }
    out
}

/// `path` relative to the repository, with `/` separators.
fn relative(path: &Path) -> String {
    let root = repo().canonicalize().unwrap();
    let rel = path
        .strip_prefix(&root)
        .unwrap_or_else(|_| panic!("{} is outside the repository", path.display()));
    rel.to_string_lossy().replace('\\', "/")
}

/// Whether git ignores `rel`, i.e. it is a file an operator creates (tracked files never count).
fn git_ignored(rel: &str) -> bool {
    let status = Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["check-ignore", "-q", "--", rel])
        .status()
        .expect("git not found");
    match status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("git check-ignore {rel}: {status} (not a git checkout?)"),
    }
}

/// Whether `.dockerignore` keeps `rel` out of image builds. Only literal entries count (a file,
/// or a directory with an optional `/`, `/*` or `/**`): the ones this repository writes.
fn docker_ignored(rel: &str) -> bool {
    std::fs::read_to_string(repo().join(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .map(|l| {
            l.trim_end_matches("/**")
                .trim_end_matches("/*")
                .trim_end_matches('/')
        })
        .any(|l| rel == l || rel.starts_with(&format!("{l}/")))
}

/// Whether an operator finds out how to create `path`: an `X.example` beside it, or the
/// `README.md` of its directory naming it in backticks.
fn documented(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    let readme = std::fs::read_to_string(path.with_file_name("README.md")).unwrap_or_default();
    path.with_file_name(format!("{name}.example")).exists() || readme.contains(&format!("`{name}`"))
}

#[test]
fn every_mounted_file_is_shipped_or_documented() {
    for file in compose_files() {
        let paths = mounted(&file);
        assert!(!paths.is_empty(), "{}", file.display());
        let compose = file.file_name().unwrap().to_string_lossy();
        for p in paths {
            let rel = relative(&p);
            if git_ignored(&rel) {
                // The operator creates it: say how, and never commit it or send it to a build.
                assert!(
                    documented(&p),
                    "{compose} mounts {rel}, which the operator creates, but there is neither {rel}.example nor a README.md beside it naming it"
                );
                assert!(
                    docker_ignored(&rel),
                    "{compose} mounts {rel}, which the operator creates, but .dockerignore does not keep it out of image builds"
                );
            } else {
                assert!(p.exists(), "{compose} mounts {rel} which does not exist");
            }
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
