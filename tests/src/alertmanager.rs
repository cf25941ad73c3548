//! A real Alertmanager (Debian's `prometheus-alertmanager`) on loopback, and a webhook sink that
//! records every notification it receives.
//!
//! [`Alertmanager::start`] takes the shipped `prometheus/portal/alertmanager.yml` and rewrites
//! it structurally for a test: every receiver becomes a webhook to the sink at
//! `/<receiver name>` (so a test sees which route an alert took, and nothing is mailed), and
//! every group timing becomes `group`. Routes, matchers and inhibit rules stay as shipped. It
//! serves TLS with basic auth from a web config in the exporter-toolkit format, as in compose.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http_body_util::BodyExt;
use serde_json::Value;
use serde_yaml::Value as Yaml;

use crate::stack::repo;
use crate::{encode, free_port};

/// One notification as the sink received it.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The receiver, from the URL path.
    pub receiver: String,
    /// The webhook payload (`status`, `alerts`, `groupLabels`, …).
    pub body: Value,
}

impl Notification {
    /// The alerts of this notification named `alertname` of `site`, with their status.
    pub fn alerts(&self, alertname: &str, site: &str) -> Vec<String> {
        self.body["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == alertname && a["labels"]["site"] == site)
            .map(|a| a["status"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

/// An HTTP server on 127.0.0.1 that answers 200 to every POST and records it; stops when
/// dropped.
#[derive(Debug)]
pub struct WebhookSink {
    /// `http://127.0.0.1:port`.
    pub url: String,
    received: Arc<Mutex<Vec<Notification>>>,
    _runtime: tokio::runtime::Runtime,
}

impl WebhookSink {
    /// Starts the sink.
    pub fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Runtime::new()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let receiver = req.uri().path().trim_start_matches('/').to_owned();
                            let bytes = req.into_body().collect().await?.to_bytes();
                            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            if let Ok(mut all) = store.lock() {
                                all.push(Notification { receiver, body });
                            }
                            Ok::<_, hyper::Error>(hyper::Response::new(String::new()))
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Ok(Self {
            url,
            received,
            _runtime: runtime,
        })
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Notification> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// A user of the Alertmanager's web config and the file holding its password.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password_file: PathBuf,
}

/// A running Alertmanager; stopped when dropped.
#[derive(Debug)]
pub struct Alertmanager {
    /// `127.0.0.1:port`.
    pub address: String,
    ca_file: PathBuf,
    user: User,
    child: Child,
    dir: tempfile::TempDir,
}

/// The shipped `alertmanager.yml` for a test: receivers to `sink`, group timings `group`.
pub fn test_config(sink: &str, group: Duration) -> anyhow::Result<String> {
    let path = repo().join("prometheus/portal/alertmanager.yml");
    let mut doc: Yaml = serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
    fn timings(route: &mut Yaml, group: &Yaml) {
        for key in ["group_wait", "group_interval"] {
            if route.get(key).is_some() || route.get("receiver").is_some() {
                route[key] = group.clone();
            }
        }
        for child in route["routes"].as_sequence_mut().into_iter().flatten() {
            timings(child, group);
        }
    }
    timings(
        &mut doc["route"],
        &Yaml::String(format!("{}ms", group.as_millis())),
    );
    for receiver in doc["receivers"].as_sequence_mut().into_iter().flatten() {
        let name = receiver["name"]
            .as_str()
            .context("a receiver without name")?;
        let hook =
            serde_yaml::from_str(&format!("[{{url: '{sink}/{name}', send_resolved: true}}]"))?;
        let mut only_name = serde_yaml::Mapping::new();
        only_name.insert("name".into(), name.into());
        only_name.insert("webhook_configs".into(), hook);
        *receiver = Yaml::Mapping(only_name);
    }
    Ok(serde_yaml::to_string(&doc)?)
}

impl Alertmanager {
    /// Starts Alertmanager with `config` and a web config serving TLS from `cert`/`key` with
    /// `web_users` (the `basic_auth_users` mapping, bcrypt hashes); `user` is who the test's
    /// own API calls log in as. Waits until it answers.
    pub fn start(
        config: &str,
        tls: (&Path, &Path),
        web_users: &Yaml,
        user: User,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        std::fs::write(dir.path().join("alertmanager.yml"), config)?;
        let mut web = serde_yaml::Mapping::new();
        let mut server = serde_yaml::Mapping::new();
        server.insert("cert_file".into(), tls.0.display().to_string().into());
        server.insert("key_file".into(), tls.1.display().to_string().into());
        web.insert("tls_server_config".into(), Yaml::Mapping(server));
        web.insert("basic_auth_users".into(), web_users.clone());
        std::fs::write(dir.path().join("web.yml"), serde_yaml::to_string(&web)?)?;
        let log = std::fs::File::create(dir.path().join("alertmanager.log"))?;
        let child = Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ))
            .arg(format!("--web.config.file={}", dir.path().join("web.yml").display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // A single instance: no gossip port.
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start prometheus-alertmanager: install Debian's prometheus-alertmanager package (run-tests.sh does)")?;
        let mut am = Self {
            address: format!("127.0.0.1:{port}"),
            ca_file: tls.0.to_path_buf(),
            user,
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = am.child.try_wait()? {
                bail!("alertmanager exited with {status}: {}", am.log());
            }
            if am.status("/-/ready").is_ok_and(|s| s == "200") {
                return Ok(am);
            }
            if Instant::now() >= deadline {
                bail!("alertmanager not ready after 60 s: {}", am.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    fn curl(&self, path: &str, user: Option<&User>) -> anyhow::Result<(String, String)> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-w", "\n%{http_code}", "--cacert"])
            .arg(&self.ca_file);
        if let Some(user) = user {
            let password = std::fs::read_to_string(&user.password_file)?;
            // From standard input, so that the password is on no command line.
            cmd.args(["-K", "-"]);
            cmd.stdin(Stdio::piped());
            let mut child = cmd
                .arg(format!("https://{}{path}", self.address))
                .stdout(Stdio::piped())
                .spawn()
                .context("curl")?;
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                writeln!(stdin, "user = \"{}:{}\"", user.name, password.trim())?;
            }
            let out = child.wait_with_output()?;
            return split(&out.stdout);
        }
        let out = cmd
            .arg(format!("https://{}{path}", self.address))
            .output()
            .context("curl")?;
        split(&out.stdout)
    }

    /// The HTTP status of a GET of `path` with the test's user.
    pub fn status(&self, path: &str) -> anyhow::Result<String> {
        Ok(self.curl(path, Some(&self.user))?.1)
    }

    /// The HTTP status of a GET of `path` without credentials.
    pub fn status_anonymous(&self, path: &str) -> anyhow::Result<String> {
        Ok(self.curl(path, None)?.1)
    }

    /// The alerts it holds named `alertname` (`/api/v2/alerts`, inhibited and silenced ones
    /// included), with their `status` (`state`, `inhibitedBy`) and labels.
    pub fn alerts(&self, alertname: &str) -> anyhow::Result<Vec<Value>> {
        let filter = encode(&format!("alertname=\"{alertname}\""));
        let (body, status) = self.curl(
            &format!("/api/v2/alerts?inhibited=true&silenced=true&filter={filter}"),
            Some(&self.user),
        )?;
        if status != "200" {
            bail!("GET /api/v2/alerts: HTTP {status}: {body}");
        }
        Ok(serde_json::from_str::<Value>(&body)?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

/// curl's output with `-w '\n%{http_code}'`: (body, status).
fn split(out: &[u8]) -> anyhow::Result<(String, String)> {
    let text = String::from_utf8_lossy(out);
    let (body, status) = text.rsplit_once('\n').context("no status from curl")?;
    Ok((body.to_owned(), status.trim().to_owned()))
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
