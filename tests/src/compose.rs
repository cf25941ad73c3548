//! A compose project on a real container engine, driven through `docker-compose` (1.29 as
//! Debian 12 ships it; the v1 command line) and `docker`: start from the repository's compose
//! files plus test overrides, wait for health checks, read published ports, run commands in
//! containers, ask a Prometheus which Alertmanagers it has active, collect logs. The project is
//! taken down with its volumes when dropped, and at the start, in case an earlier run left it
//! behind.
//!
//! Images come from the environment the compose files read (`EXPORTER_IMAGE`,
//! `GATEWAY_IMAGE`, `PROMETHEUS_IMAGE`, `ALERTMANAGER_IMAGE`, `VICTORIAMETRICS_IMAGE`,
//! `FAKE_OPENSTACK_IMAGE`), which `compose/local-images.sh` prints; nothing is pulled or built here (`--no-build`).
//! [`require_engine`] makes a container test fail, not pass, where they are missing.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::poll;
use crate::stack::repo;

/// One compose project; `down -v` when dropped.
#[derive(Debug)]
pub struct Compose {
    project: String,
    files: Vec<PathBuf>,
    env: Vec<(String, String)>,
}

impl Compose {
    /// A project named `project` from `files` (relative to the repository), with extra
    /// environment variables for the compose files' `${...}`. Takes down what an earlier run
    /// may have left under that name.
    pub fn new(project: &str, files: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let compose = Self {
            project: project.to_owned(),
            files: files.iter().map(|f| repo().join(f)).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        compose.run(&["down", "-v", "--remove-orphans", "--timeout", "5"])?;
        Ok(compose)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.args(["--ansi", "never", "-p"]).arg(&self.project);
        for f in &self.files {
            cmd.arg("-f").arg(f);
        }
        cmd.args(args).current_dir(repo());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `docker-compose <args>`; fails with its standard error unless it succeeds.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(args)
            .output()
            .context("docker-compose not found")?;
        ok(&format!("docker-compose {}", args.join(" ")), out)
    }

    /// The container id of `service`.
    pub fn id(&self, service: &str) -> anyhow::Result<String> {
        let id = self.run(&["ps", "-q", service])?.trim().to_owned();
        if id.is_empty() {
            bail!("{service} has no container");
        }
        Ok(id)
    }

    /// The host port `127.0.0.1:<port>` that `service`'s `port` is published on.
    pub fn port(&self, service: &str, port: u16) -> anyhow::Result<u16> {
        let out = self.run(&["port", service, &port.to_string()])?;
        let addr = out.trim();
        let (host, port) = addr
            .rsplit_once(':')
            .with_context(|| format!("{service}:{port} is not published: {addr:?}"))?;
        if host != "127.0.0.1" {
            bail!("{service} publishes {addr}, not on 127.0.0.1");
        }
        Ok(port.parse()?)
    }

    /// Waits until every container of the project reports `healthy`; a container without a
    /// health check or one that turns `unhealthy` fails at once.
    pub fn wait_healthy(&self, services: &[&str], timeout: Duration) -> anyhow::Result<()> {
        poll("every health check to pass", timeout, || {
            let mut waiting = Vec::new();
            for service in services {
                let id = self.id(service)?;
                let status = docker(&[
                    "inspect",
                    "-f",
                    "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
                    &id,
                ])?;
                match status.trim() {
                    "healthy" => {}
                    "none" => return Ok(Some(Err(format!("{service} has no health check")))),
                    "unhealthy" => {
                        let log = docker(&["inspect", "-f", "{{json .State.Health.Log}}", &id])?;
                        return Ok(Some(Err(format!("{service} is unhealthy: {log}"))));
                    }
                    other => waiting.push(format!("{service}: {other}")),
                }
            }
            if waiting.is_empty() {
                Ok(Some(Ok(())))
            } else {
                bail!("{}", waiting.join(", "))
            }
        })?
        .map_err(anyhow::Error::msg)
    }

    /// Runs `argv` in `service`'s container as its user; returns standard output.
    pub fn exec(&self, service: &str, argv: &[&str]) -> anyhow::Result<String> {
        let id = self.id(service)?;
        let mut args = vec!["exec", id.as_str()];
        args.extend_from_slice(argv);
        docker(&args)
    }

    /// The user id the main process of `service`'s container runs as (its real, effective,
    /// saved and file-system uid, which must agree).
    pub fn process_uid(&self, service: &str) -> anyhow::Result<u32> {
        let status = self.exec(service, &["cat", "/proc/1/status"])?;
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .context("no Uid line in /proc/1/status")?;
        let uids: Vec<u32> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if uids.is_empty() || uids.iter().any(|u| *u != uids[0]) {
            bail!("{service}: mixed uids {uids:?}");
        }
        Ok(uids[0])
    }

    /// Everything the project's containers logged.
    pub fn logs(&self) -> anyhow::Result<String> {
        self.run(&["logs", "--no-color"])
    }

    /// The Alertmanagers the Prometheus of `service` has active (`/api/v1/alertmanagers`),
    /// asked from inside its container (a site Prometheus publishes no port).
    pub fn active_alertmanagers(&self, service: &str) -> anyhow::Result<Vec<String>> {
        let url = "http://127.0.0.1:9090/api/v1/alertmanagers";
        let body = self.exec(service, &["wget", "-q", "-O", "-", url])?;
        let v: Value = serde_json::from_str(&body).with_context(|| format!("{url}: {body}"))?;
        Ok(v["data"]["activeAlertmanagers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["url"].as_str().map(str::to_owned))
            .collect())
    }

    /// Waits until the Prometheus of `service` has `want` as its only active Alertmanager.
    pub fn wait_alertmanager_active(&self, service: &str, want: &str) -> anyhow::Result<()> {
        poll(
            &format!("{service}'s active Alertmanager {want}"),
            Duration::from_secs(120),
            || Ok((self.active_alertmanagers(service)? == [want]).then_some(())),
        )
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(ps) = self.run(&["ps"]) {
                eprintln!("{ps}");
            }
            if let Ok(logs) = self.run(&["logs", "--no-color", "--tail", "40"]) {
                eprintln!("{logs}");
            }
        }
        if let Err(e) = self.run(&["down", "-v", "--remove-orphans", "--timeout", "5"]) {
            eprintln!("{e:#}");
        }
    }
}

/// Panics unless run-tests.sh (or someone by hand) set up the engine and the images: the
/// container tests fail rather than pass without them.
pub fn require_engine() {
    assert_eq!(
        std::env::var("DOCKER_E2E").as_deref(),
        Ok("1"),
        "set DOCKER_E2E=1 once a Docker engine answers and compose/local-images.sh has run \
         (run-tests.sh does both)"
    );
    for var in [
        "EXPORTER_IMAGE",
        "GATEWAY_IMAGE",
        "PROMETHEUS_IMAGE",
        "VICTORIAMETRICS_IMAGE",
    ] {
        assert!(
            std::env::var_os(var).is_some(),
            "{var} is not set: export what compose/local-images.sh prints"
        );
    }
}

pub use crate::query;

/// The networks a service is on (compose's `default` when it names none).
pub fn networks(service: &serde_yaml::Value) -> BTreeSet<String> {
    match &service["networks"] {
        serde_yaml::Value::Sequence(list) => list
            .iter()
            .filter_map(serde_yaml::Value::as_str)
            .map(str::to_owned)
            .collect(),
        serde_yaml::Value::Mapping(map) => map
            .keys()
            .filter_map(serde_yaml::Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => BTreeSet::from(["default".to_owned()]),
    }
}

/// Whether `host`, looked up from `from`, names a service on a shared network, by its name or
/// by a network alias, as compose's DNS answers.
pub fn resolves(compose: &serde_yaml::Value, from: &str, host: &str) -> bool {
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

/// Runs `docker <args>`; fails with its standard error unless it succeeds.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("docker not found")?;
    ok(&format!("docker {}", args.join(" ")), out)
}

fn ok(what: &str, out: Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
