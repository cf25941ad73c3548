//! The development topology, natively: per site a dummy exporter, a site Prometheus with the
//! repository's site configuration and rules, and a gateway with the development gateway
//! configuration; one portal Prometheus with the repository's portal configuration federating
//! every site through its gateway over TLS, and remote-writing the billing families to a
//! billing store when one is given.
//!
//! The shipped files are used as they are; only addresses, ports, file paths and intervals are
//! rewritten (structurally, through YAML values), so a test of this stack tests those files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_yaml::Value;
use site_exporter::settings::Schedule;
use site_exporter::sources::dummy::{CloudSpec, DummyConfig, Generate};

use crate::{free_port, Exporter, Prometheus};

/// The development token of every site's portal client (also in `compose/dev/`).
pub const DEV_TOKEN: &str = "dev-portal-token-not-for-production";

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
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Gateway {
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
            _stop: stop,
        })
    }
}

/// One site of the topology.
#[derive(Debug)]
pub struct Site {
    pub name: String,
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
        Self::start_writing_to(sites, speed, None)
    }

    /// Like [`DevStack::start`], the portal remote-writing to `store` (the remote-write URL of
    /// a [`crate::store::VictoriaMetrics`]) with the shipped `write_relabel_configs`.
    pub fn start_with_store(sites: usize, speed: Speed, store: &str) -> anyhow::Result<Self> {
        Self::start_writing_to(sites, speed, Some(store))
    }

    fn start_writing_to(sites: usize, speed: Speed, store: Option<&str>) -> anyhow::Result<Self> {
        if sites == 0 || sites > 26 {
            bail!("between 1 and 26 sites");
        }
        let dir = tempfile::tempdir()?;
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])?;
        std::fs::write(dir.path().join("tls.crt"), cert.cert.pem())?;
        std::fs::write(dir.path().join("tls.key"), cert.signing_key.serialize_pem())?;
        std::fs::write(dir.path().join("portal.token"), DEV_TOKEN)?;

        let mut started = Vec::with_capacity(sites);
        for i in 0..sites {
            let name = format!("site-{}", (b'a' + i as u8) as char);
            started.push(Self::start_site(&name, i as u64 + 1, speed, dir.path())?);
        }
        let portal = Self::start_portal(&started, speed, dir.path(), store)?;
        Ok(Self {
            sites: started,
            portal,
            dir,
        })
    }

    fn start_site(name: &str, seed: u64, speed: Speed, dir: &Path) -> anyhow::Result<Site> {
        let exporter = Exporter::start(DummyConfig {
            cloud: CloudSpec::Generated(Generate {
                projects: 12,
                servers_per_project: 4,
                seed,
            }),
            guests: Some(30),
            usage_start: None,
            usage_start_url: None,
            schedule: Schedule {
                interval: speed.refresh,
                timeout: speed.refresh.max(Duration::from_secs(5)),
            },
        });

        // The gateway, from compose/dev/gateway.yml.
        let mut gw: Value = serde_yaml::from_str(&read("compose/dev/gateway.yml")?)?;
        let prom_port = free_port();
        gw["listen"] = "127.0.0.1:0".into();
        gw["internal_listen"] = "127.0.0.1:0".into();
        gw["upstream"]["url"] = format!("http://127.0.0.1:{prom_port}").into();
        gw["tls"]["cert_file"] = dir.join("tls.crt").display().to_string().into();
        gw["tls"]["key_file"] = dir.join("tls.key").display().to_string().into();
        gw["clients"][0]["token_file"] = dir.join("portal.token").display().to_string().into();
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
        let files = [
            (
                "rules/alerts.yml",
                read("prometheus/site/rules/alerts.yml")?,
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
            exporter,
            prometheus,
            gateway,
        })
    }

    fn start_portal(
        sites: &[Site],
        speed: Speed,
        dir: &Path,
        store: Option<&str>,
    ) -> anyhow::Result<Prometheus> {
        let mut portal: Value = serde_yaml::from_str(&read("prometheus/portal/prometheus.yml")?)?;
        portal["global"]["scrape_interval"] = seconds(speed.interval);
        portal["global"]["scrape_timeout"] = seconds(speed.interval);
        portal["global"]["evaluation_interval"] = seconds(speed.interval);
        let config = portal
            .as_mapping_mut()
            .context("the portal config is a mapping")?;
        match store {
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
            j["authorization"]["credentials_file"] =
                dir.join("portal.token").display().to_string().into();
            j["tls_config"]["ca_file"] = dir.join("tls.crt").display().to_string().into();
            j["static_configs"] = serde_yaml::from_str(&format!(
                "[{{targets: ['{}'], labels: {{location: {}}}}}]",
                site.gateway.addr, site.name
            ))?;
            jobs.push(j);
        }
        let mut own = job(&mut portal, "prometheus")?.clone();
        own["static_configs"] = targets(&format!("127.0.0.1:{port}"));
        jobs.push(own);
        portal["scrape_configs"] = Value::Sequence(jobs);
        let rules = read("prometheus/portal/rules/alerts.yml")?;
        Prometheus::start_on(
            port,
            &serde_yaml::to_string(&portal)?,
            &[("rules/alerts.yml", &rules)],
        )
    }
}
