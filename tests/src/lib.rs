//! Helpers shared by the end-to-end tests in `tests/tests/` and the `dev-stack` runner: real
//! Prometheus processes on loopback, in-process exporters and gateways, the whole development
//! topology ([`stack`]), a real Alertmanager and a webhook sink ([`alertmanager`]), the billing
//! store (Debian's VictoriaMetrics, [`store`]), test certificates and a curl driver for the
//! exporter's web config ([`webcfg`]), free ports, a tiny HTTP client, and polling with a
//! deadline; and the layer check of both crates' sources ([`layers`]).
//!
//! Every server binds 127.0.0.1 with a port the OS chose; nothing is sent anywhere else.
//! Nothing here sleeps for a fixed time to wait for a server: [`poll`] retries a condition
//! until it holds or a deadline passes, and then fails with the last observation.

pub mod alertmanager;
pub mod compose;
pub mod layers;
pub mod stack;
pub mod store;
pub mod webcfg;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use site_exporter::config::{Config, LogConfig, LogFormat};
use site_exporter::legacy::LegacyOptions;
use site_exporter::render::RenderOptions;
use site_exporter::settings::Schedule;
use site_exporter::sources::dummy::{CloudSpec, DummyConfig};

/// A port that was free a moment ago on 127.0.0.1 (for programs that take an address, not a
/// listener).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 works")
}

/// Retries `check` every 100 ms until it returns `Ok(Some(value))` or `timeout` passes.
/// `Ok(None)` and `Err` mean "not yet"; on timeout the last error or `what` is reported.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("condition never held");
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a command-line tool (`promtool`, `amtool`, …) in `dir` and returns its standard output
/// and standard error together; an error, with that output, when it fails or is missing.
pub fn run_tool(program: &str, args: &[&str], dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| {
            format!("{program} not found: install its Debian package (run-tests.sh does)")
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{program} {args:?} failed:\n{text}");
    }
    Ok(text)
}

/// GET `url` and return status and body (any status; no redirects).
pub fn get(url: &str) -> anyhow::Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string()?;
    Ok((status, body))
}

/// A Prometheus server (Debian's `prometheus` binary) on a free loopback port, stopped on drop.
#[derive(Debug)]
pub struct Prometheus {
    pub url: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML) and `files` (relative path, content) beside it,
    /// and waits until it answers `/-/ready`.
    pub fn start(config: &str, files: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_on(free_port(), config, files)
    }

    /// Like `start`, on a port chosen beforehand (for configs that name their own address).
    pub fn start_on(port: u16, config: &str, files: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("prometheus.yml"), config)?;
        for (name, content) in files {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, content)?;
        }
        let child = Self::spawn(dir.path(), port)?;
        let mut p = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        p.wait_ready()?;
        Ok(p)
    }

    fn spawn(dir: &Path, port: u16) -> anyhow::Result<Child> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(dir.join("prometheus.log"))?;
        Command::new(prometheus_binary())
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start prometheus: install Debian's prometheus package (the README's test command does)")
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let log = self.dir.path().join("prometheus.log");
        wait_answering(&mut self.child, &format!("{}/-/ready", self.url), &log)
    }

    /// Stops this Prometheus, deletes its data directory (the TSDB and the remote-write WAL)
    /// and starts it again on the same port with the same config, as after a lost volume.
    pub fn restart_wiped(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        std::fs::remove_dir_all(self.dir.path().join("data"))?;
        let port = self
            .url
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .context("the URL ends in a port")?;
        self.child = Self::spawn(self.dir.path(), port)?;
        self.wait_ready()
    }

    /// The directory holding its config and data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Calls an API path (`/api/v1/...` with query string) and returns `data`.
    pub fn api(&self, path_and_query: &str) -> anyhow::Result<Value> {
        api(&self.url, path_and_query)
    }

    /// An instant query; returns the result vector.
    pub fn query(&self, promql: &str) -> anyhow::Result<Vec<Value>> {
        query(&self.url, promql)
    }
}

/// An instant query against a Prometheus-compatible API at `base`; returns the result vector.
pub fn query(base: &str, promql: &str) -> anyhow::Result<Vec<Value>> {
    let data = api(base, &format!("/api/v1/query?query={}", encode(promql)))?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

/// Calls a Prometheus-compatible query API (Prometheus, VictoriaMetrics) at `base`
/// (`http://host:port`) with a path and query string, and returns `data`.
pub fn api(base: &str, path_and_query: &str) -> anyhow::Result<Value> {
    let (status, body) = get(&format!("{base}{path_and_query}"))?;
    let v: Value =
        serde_json::from_str(&body).with_context(|| format!("{path_and_query}: {body}"))?;
    if status != 200 || v["status"] != "success" {
        bail!("{path_and_query}: HTTP {status}: {body}");
    }
    Ok(v["data"].clone())
}

/// Waits up to 60 s until `url` answers 200, checking every 100 ms that `child` (the server
/// behind it) still runs; on failure the error holds the server's `log` file.
pub fn wait_answering(child: &mut Child, url: &str, log: &Path) -> anyhow::Result<()> {
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the server behind {url} exited with {status}: {}", log());
        }
        if get(url).is_ok_and(|(status, _)| status == 200) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{url} did not answer 200 within 60 s: {}", log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> PathBuf {
    std::env::var_os("PROMETHEUS_BIN").map_or_else(|| PathBuf::from("prometheus"), PathBuf::from)
}

/// Percent-encodes a query-string value.
pub fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A running in-process exporter; stops when dropped.
#[derive(Debug)]
pub struct Exporter {
    pub addr: std::net::SocketAddr,
    _runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Exporter {
    /// The built-in dummy cloud, refreshed every `interval`.
    pub fn start_dummy(interval: Duration) -> Self {
        Self::start(DummyConfig {
            cloud: CloudSpec::BuiltIn,
            guests: None,
            usage_start: None,
            usage_start_url: None,
            schedule: Schedule {
                interval,
                timeout: interval,
            },
        })
    }

    /// A dummy exporter serving `dummy`.
    pub fn start(dummy: DummyConfig) -> Self {
        Self::start_with(dummy, None)
    }

    /// A dummy exporter serving `dummy`, secured by the web config at `web_config_file`.
    pub fn start_with(dummy: DummyConfig, web_config_file: Option<PathBuf>) -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("test exporter setup");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("test exporter setup");
        let addr = listener.local_addr().expect("test exporter setup");
        let config = Config {
            listen_address: addr,
            web_config_file,
            log: LogConfig {
                filter: "warn".into(),
                format: LogFormat::Text,
            },
            render: RenderOptions::default(),
            legacy: LegacyOptions::default(),
            dummy: Some(dummy),
            weights: None,
            libvirt: None,
            openstack: None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let sources = runtime.handle().clone();
        runtime.spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            site_exporter::run(config, listener, shutdown, sources)
                .await
                .expect("test exporter setup");
        });
        Self {
            addr,
            _runtime: runtime,
            stop: Some(stop),
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
