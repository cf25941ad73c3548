//! The development topology, natively: per site a dummy exporter, a site Prometheus with the
//! repository's site configuration and rules, and a gateway with the development gateway
//! configuration; one portal Prometheus with the repository's portal configuration federating
//! every site through its gateway over TLS, and remote-writing the billing families to a
//! billing store when one is given.
//!
//! The shipped files are used as they are; only addresses, ports, file paths and intervals are
//! rewritten (structurally, through YAML values), so a test of this stack tests those files.
//! Each site has its own gateway config (`compose/dev/gateway-<letter>.yml`: its own token and
//! allow-list); the portal's job for a site asks for exactly that site's allow-list.
//!
//! With [`Options::alerting`], every Prometheus sends its alerts to that Alertmanager the way
//! the shipped configs do (TLS, basic auth, password from a file), and the rules run as test
//! copies whose `for:` is one evaluation interval. Without it, the `alerting:` sections are
//! removed, so nothing tries to reach the placeholder Alertmanager addresses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_yaml::Value;
use site_exporter::settings::Schedule;
use site_exporter::sources::dummy::{CloudSpec, DummyConfig, Generate, BUILTIN};

use crate::{free_port, Exporter, Prometheus};

/// The development token of site A's portal client (`compose/dev/secrets/dev-portal-a.token`).
pub const DEV_TOKEN_A: &str = "dev-portal-token-a-not-for-production";
/// The development token of site B's portal client (`compose/dev/secrets/dev-portal-b.token`).
pub const DEV_TOKEN_B: &str = "dev-portal-token-b-not-for-production";

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(repo().join(rel)).with_context(|| format!("reading {rel}"))
}

/// A gateway running in-process on its own runtime; stops when dropped.
#[derive(Debug)]
pub struct Gateway {
    /// `127.0.0.1:port` of the public listener.
    pub addr: String,
    /// `127.0.0.1:port` of the internal listener.
    pub internal: String,
    _runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Gateway {
    /// Stops serving: both listeners close, as when the gateway process is gone.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Starts a gateway from a config file on the given listeners' ports.
    pub fn start(config_path: &Path) -> anyhow::Result<Self> {
        let config = federation_gateway::config::Config::load(config_path)?;
        let (listen, internal) = (config.listen, config.internal_listen);
        let state = Arc::new(federation_gateway::state::State::new(config_path, config)?);
        let runtime = tokio::runtime::Runtime::new()?;
        let (public, internal_listener) = runtime.block_on(async {
            let public = tokio::net::TcpListener::bind(listen).await?;
            let internal = match internal {
                Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
                None => None,
            };
            anyhow::Ok((public, internal))
        })?;
        let addr = public.local_addr()?.to_string();
        let internal = internal_listener
            .as_ref()
            .map(|l| l.local_addr().map(|a| a.to_string()))
            .transpose()?
            .unwrap_or_default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(federation_gateway::run(
            state,
            public,
            internal_listener,
            async {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            addr,
            internal,
            _runtime: runtime,
            stop: Some(stop),
        })
    }
}

/// One site of the topology.
#[derive(Debug)]
pub struct Site {
    pub name: String,
    /// The token this site's gateway accepts from the portal (and no other site's does).
    pub token: String,
    /// The dummy cloud file the exporter serves, with [`Options::cloud_files`].
    pub cloud_file: Option<PathBuf>,
    pub exporter: Exporter,
    pub prometheus: Prometheus,
    pub gateway: Gateway,
}

/// The whole topology; everything stops when dropped.
#[derive(Debug)]
pub struct DevStack {
    pub sites: Vec<Site>,
    pub portal: Prometheus,
    /// Holds the TLS certificate, tokens and gateway configs.
    pub dir: tempfile::TempDir,
}

/// How fast everything runs.
#[derive(Debug, Clone, Copy)]
pub struct Speed {
    /// Scrape and rule-evaluation interval of every Prometheus.
    pub interval: Duration,
    /// Refresh interval of the dummy exporters.
    pub refresh: Duration,
}

impl Speed {
    /// For tests: everything within seconds.
    pub const FAST: Self = Self {
        interval: Duration::from_secs(1),
        refresh: Duration::from_millis(500),
    };
    /// For people trying the stack.
    pub const DEMO: Self = Self {
        interval: Duration::from_secs(5),
        refresh: Duration::from_secs(5),
    };
}

fn seconds(d: Duration) -> Value {
    Value::String(format!("{}ms", d.as_millis()))
}

/// Everything but the number of sites and the speed is optional.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Send every Prometheus's alerts to this Alertmanager, with test copies of the rules.
    pub alerting: Option<Alerting>,
    /// Each site's dummy exporter serves the built-in cloud from a file in the stack's
    /// directory ([`Site::cloud_file`]), so a test can break and repair its source.
    pub cloud_files: bool,
    /// The portal remote-writes the billing families to this URL (a billing store); without
    /// one its `remote_write` is dropped.
    pub store: Option<String>,
}

/// Where and how the stack's Prometheus servers send alerts.
#[derive(Debug, Clone)]
pub struct Alerting {
    /// `127.0.0.1:port` of the Alertmanager (TLS).
    pub address: String,
    /// The CA that signed its certificate.
    pub ca_file: PathBuf,
    /// The password files of the portal's and of the sites' Alertmanager users.
    pub portal_password_file: PathBuf,
    pub site_password_file: PathBuf,
}

/// Finds the scrape config named `job` in a Prometheus config.
fn job<'a>(config: &'a mut Value, name: &str) -> anyhow::Result<&'a mut Value> {
    config["scrape_configs"]
        .as_sequence_mut()
        .and_then(|jobs| jobs.iter_mut().find(|j| j["job_name"] == name))
        .with_context(|| format!("no scrape job {name}"))
}

fn targets(addr: &str) -> Value {
    serde_yaml::from_str(&format!("[{{targets: ['{addr}']}}]")).expect("a literal YAML list")
}

impl DevStack {
    /// Starts `sites` sites (`site-a`, `site-b`, …) and the portal, without the portal's
    /// `remote_write` (its billing store is a compose service name).
    pub fn start(sites: usize, speed: Speed) -> anyhow::Result<Self> {
        Self::start_with(sites, speed, &Options::default())
    }

    /// Like [`DevStack::start`], the portal remote-writing to `store` (the remote-write URL of
    /// a [`crate::store::VictoriaMetrics`]) with the shipped `write_relabel_configs`.
    pub fn start_with_store(sites: usize, speed: Speed, store: &str) -> anyhow::Result<Self> {
        let options = Options {
            store: Some(store.to_owned()),
            ..Options::default()
        };
        Self::start_with(sites, speed, &options)
    }

    /// Like [`DevStack::start`], with options.
    pub fn start_with(sites: usize, speed: Speed, options: &Options) -> anyhow::Result<Self> {
        if sites == 0 || sites > 26 {
            bail!("between 1 and 26 sites");
        }
        let dir = tempfile::tempdir()?;
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])?;
        std::fs::write(dir.path().join("tls.crt"), cert.cert.pem())?;
        std::fs::write(dir.path().join("tls.key"), cert.signing_key.serialize_pem())?;

        let mut started = Vec::with_capacity(sites);
        for i in 0..sites {
            let letter = (b'a' + i as u8) as char;
            started.push(Self::start_site(
                letter,
                i as u64 + 1,
                speed,
                options,
                dir.path(),
            )?);
        }
        let portal = Self::start_portal(&started, speed, options, dir.path())?;
        Ok(Self {
            sites: started,
            portal,
            dir,
        })
    }

    fn start_site(
        letter: char,
        seed: u64,
        speed: Speed,
        options: &Options,
        dir: &Path,
    ) -> anyhow::Result<Site> {
        let name = format!("site-{letter}");
        let name = name.as_str();
        let (cloud, cloud_file) = if options.cloud_files {
            let file = dir.join(format!("{name}-cloud.yaml"));
            std::fs::write(&file, BUILTIN)?;
            (CloudSpec::File(file.clone()), Some(file))
        } else {
            let generated = Generate {
                projects: 12,
                servers_per_project: 4,
                seed,
            };
            (CloudSpec::Generated(generated), None)
        };
        let exporter = Exporter::start(DummyConfig {
            cloud,
            guests: Some(30),
            usage_start: None,
            usage_start_url: None,
            schedule: Schedule {
                interval: speed.refresh,
                timeout: speed.refresh.max(Duration::from_secs(5)),
            },
        });

        // The gateway, from the site's compose/dev/gateway-<letter>.yml (site A's for sites
        // past B), with the site's own token.
        let shipped = format!("compose/dev/gateway-{letter}.yml");
        let gw_file = if repo().join(&shipped).exists() {
            shipped
        } else {
            "compose/dev/gateway-a.yml".to_string()
        };
        let token = match read(&format!("compose/dev/secrets/dev-portal-{letter}.token")) {
            Ok(t) => t.trim().to_string(),
            Err(_) => format!("dev-portal-token-{letter}-not-for-production"),
        };
        let token_path = dir.join(format!("{name}-portal.token"));
        std::fs::write(&token_path, &token)?;
        let mut gw: Value = serde_yaml::from_str(&read(&gw_file)?)?;
        let prom_port = free_port();
        gw["listen"] = "127.0.0.1:0".into();
        gw["internal_listen"] = "127.0.0.1:0".into();
        gw["upstream"]["url"] = format!("http://127.0.0.1:{prom_port}").into();
        gw["tls"]["cert_file"] = dir.join("tls.crt").display().to_string().into();
        gw["tls"]["key_file"] = dir.join("tls.key").display().to_string().into();
        gw["clients"][0]["token_file"] = token_path.display().to_string().into();
        // The development rate limit is for people; tests scrape every second.
        if let Some(c) = gw["clients"][0].as_mapping_mut() {
            c.remove("rate_limit");
        }
        let gw_path = dir.join(format!("{name}-gateway.yml"));
        std::fs::write(&gw_path, serde_yaml::to_string(&gw)?)?;
        let gateway = Gateway::start(&gw_path)?;

        // The site Prometheus, from prometheus/site/.
        let mut site: Value = serde_yaml::from_str(&read("prometheus/site/prometheus.yml")?)?;
        site["global"]["scrape_interval"] = seconds(speed.interval);
        site["global"]["scrape_timeout"] = seconds(speed.interval);
        site["global"]["evaluation_interval"] = seconds(speed.interval);
        site["global"]["external_labels"]["site"] = name.into();
        job(&mut site, "project_usages")?["static_configs"] = targets(&exporter.addr.to_string());
        job(&mut site, "federation_gateway")?["static_configs"] = targets(&gateway.internal);
        job(&mut site, "prometheus")?["static_configs"] =
            targets(&format!("127.0.0.1:{prom_port}"));
        // The dev site's alerting section (compose/dev/site/prometheus.yml), pointed here.
        let dev_site: Value = serde_yaml::from_str(&read("compose/dev/site/prometheus.yml")?)?;
        site["alerting"] = dev_site["alerting"].clone();
        alerting(&mut site, options, |a| &a.site_password_file)?;
        let files = [
            (
                "rules/alerts.yml",
                rules(&read("prometheus/site/rules/alerts.yml")?, speed, options)?,
            ),
            (
                "rules/project_guests.yml",
                read("prometheus/site/rules/project_guests.yml")?,
            ),
            (
                "hypervisors/hypervisors.yml",
                read("prometheus/site/hypervisors/hypervisors.yml")?,
            ),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
        let prometheus = Prometheus::start_on(prom_port, &serde_yaml::to_string(&site)?, &files)?;
        Ok(Site {
            name: name.to_string(),
            token,
            cloud_file,
            exporter,
            prometheus,
            gateway,
        })
    }

    fn start_portal(
        sites: &[Site],
        speed: Speed,
        options: &Options,
        dir: &Path,
    ) -> anyhow::Result<Prometheus> {
        let mut portal: Value = serde_yaml::from_str(&read("prometheus/portal/prometheus.yml")?)?;
        portal["global"]["scrape_interval"] = seconds(speed.interval);
        portal["global"]["scrape_timeout"] = seconds(speed.interval);
        portal["global"]["evaluation_interval"] = seconds(speed.interval);
        let config = portal
            .as_mapping_mut()
            .context("the portal config is a mapping")?;
        match options.store.as_deref() {
            Some(url) => {
                let writes = config
                    .get_mut("remote_write")
                    .and_then(Value::as_sequence_mut)
                    .context("the portal config has a remote_write list")?;
                let [write] = writes.as_mut_slice() else {
                    bail!("the portal config has one remote_write");
                };
                write["url"] = url.into();
                // Sent within a second instead of five, so that tests see it soon.
                write["queue_config"]["batch_send_deadline"] = "1s".into();
            }
            None => {
                config.remove("remote_write");
            }
        }
        let template = job(&mut portal, "federate_site-a")?.clone();
        let port = free_port();
        let mut jobs: Vec<Value> = Vec::new();
        for site in sites {
            let mut j = template.clone();
            j["job_name"] = format!("federate_{}", site.name).into();
            j["authorization"]["credentials_file"] = dir
                .join(format!("{}-portal.token", site.name))
                .display()
                .to_string()
                .into();
            // Exactly what this site's gateway allows.
            let gw: Value = serde_yaml::from_str(&std::fs::read_to_string(
                dir.join(format!("{}-gateway.yml", site.name)),
            )?)?;
            j["params"]["match[]"] = gw["clients"][0]["allow"].clone();
            j["tls_config"]["ca_file"] = dir.join("tls.crt").display().to_string().into();
            j["static_configs"] = serde_yaml::from_str(&format!(
                "[{{targets: ['{}'], labels: {{site: {}}}}}]",
                site.gateway.addr, site.name
            ))?;
            jobs.push(j);
        }
        let mut own = job(&mut portal, "prometheus")?.clone();
        own["static_configs"] = targets(&format!("127.0.0.1:{port}"));
        jobs.push(own);
        portal["scrape_configs"] = Value::Sequence(jobs);
        alerting(&mut portal, options, |a| &a.portal_password_file)?;
        let rules = rules(&read("prometheus/portal/rules/alerts.yml")?, speed, options)?;
        Prometheus::start_on(
            port,
            &serde_yaml::to_string(&portal)?,
            &[("rules/alerts.yml", &rules)],
        )
    }
}

/// Points a config's `alerting:` section (TLS, basic auth) at the test's Alertmanager, or
/// removes it.
fn alerting(
    config: &mut Value,
    options: &Options,
    password: impl Fn(&Alerting) -> &PathBuf,
) -> anyhow::Result<()> {
    let Some(alerting) = &options.alerting else {
        if let Some(c) = config.as_mapping_mut() {
            c.remove("alerting");
        }
        return Ok(());
    };
    let am = config["alerting"]["alertmanagers"]
        .get_mut(0)
        .context("no alerting.alertmanagers[0]")?;
    am["static_configs"] = targets(&alerting.address);
    am["basic_auth"]["password_file"] = password(alerting).display().to_string().into();
    am["tls_config"]["ca_file"] = alerting.ca_file.display().to_string().into();
    // The test's certificate names 127.0.0.1, not the compose service.
    if let Some(tls) = am["tls_config"].as_mapping_mut() {
        tls.remove("server_name");
    }
    Ok(())
}

/// A rules file as the stack runs it: with alerting, every `for:` is one evaluation interval.
fn rules(text: &str, speed: Speed, options: &Options) -> anyhow::Result<String> {
    if options.alerting.is_none() {
        return Ok(text.to_string());
    }
    let mut doc: Value = serde_yaml::from_str(text)?;
    for group in doc["groups"].as_sequence_mut().into_iter().flatten() {
        for rule in group["rules"].as_sequence_mut().into_iter().flatten() {
            if rule.get("for").is_some() {
                rule["for"] = seconds(speed.interval);
            }
        }
    }
    Ok(serde_yaml::to_string(&doc)?)
}
