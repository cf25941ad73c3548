//! Helpers for the web-config tests: a throw-away PKI, bcrypt hashes, node_exporter as the
//! oracle, and `curl` as a neutral client (OpenSSL, not rustls) whose outcome is recorded as
//! status + the security headers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};

/// PEM files in a directory: `ca.crt`, `server.{crt,key}` (for 127.0.0.1 and localhost, by the
/// CA), `client.{crt,key}` (client auth, by the CA) and `rogue.{crt,key}` (self-signed).
#[derive(Debug)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        std::fs::write(dir.join("ca.crt"), ca.pem())?;

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server.signed_by(&server_key, &ca)?;
        std::fs::write(dir.join("server.crt"), server.pem())?;
        std::fs::write(dir.join("server.key"), server_key.serialize_pem())?;

        let client_key = KeyPair::generate()?;
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client
            .distinguished_name
            .push(rcgen::DnType::CommonName, "prometheus");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client.signed_by(&client_key, &ca)?;
        std::fs::write(dir.join("client.crt"), client.pem())?;
        std::fs::write(dir.join("client.key"), client_key.serialize_pem())?;

        let rogue_key = KeyPair::generate()?;
        let mut rogue = CertificateParams::new(Vec::<String>::new())?;
        rogue.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let rogue = rogue.self_signed(&rogue_key)?;
        std::fs::write(dir.join("rogue.crt"), rogue.pem())?;
        std::fs::write(dir.join("rogue.key"), rogue_key.serialize_pem())?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }
}

/// A bcrypt hash of `password` at the lowest cost both Go and Rust accept (fast tests).
pub fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt hashes any password of test size")
}

/// What a client got: the HTTP status (`None`: no HTTP answer, e.g. the TLS handshake was
/// refused) and the headers that the web config governs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Option<u16>,
    pub headers: BTreeMap<String, String>,
}

/// Headers compared between the oracle and the exporter.
pub const COMPARED_HEADERS: &[&str] = &[
    "www-authenticate",
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
    "x-xss-protection",
    "content-security-policy",
];

/// One client request, described as curl options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request {
    /// Client certificate by file stem in the PKI (`client`, `rogue`).
    pub cert: Option<&'static str>,
    pub user: Option<(&'static str, &'static str)>,
    /// `--tls-max`, e.g. "1.2".
    pub tls_max: Option<&'static str>,
    /// `--tlsv1.3`: refuse anything older.
    pub tls13: bool,
    /// OpenSSL TLS 1.2 cipher list (`--ciphers`).
    pub ciphers: Option<&'static str>,
    pub path: &'static str,
}

/// Sends `req` with curl to `127.0.0.1:port`, over TLS (trusting the PKI's CA) when `tls`.
pub fn curl(port: u16, tls: bool, pki: &Pki, req: &Request) -> anyhow::Result<Outcome> {
    let scheme = if tls { "https" } else { "http" };
    let path = if req.path.is_empty() {
        "/metrics"
    } else {
        req.path
    };
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-o", "/dev/null", "-D", "-"])
        .arg("--cacert")
        .arg(pki.dir.join("ca.crt"))
        .arg(format!("{scheme}://127.0.0.1:{port}{path}"));
    if let Some(stem) = req.cert {
        cmd.arg("--cert")
            .arg(pki.dir.join(format!("{stem}.crt")))
            .arg("--key")
            .arg(pki.dir.join(format!("{stem}.key")));
    }
    if let Some((user, password)) = req.user {
        cmd.arg("-u").arg(format!("{user}:{password}"));
    }
    if let Some(max) = req.tls_max {
        cmd.args(["--tls-max", max]);
    }
    if req.tls13 {
        cmd.arg("--tlsv1.3");
    }
    if let Some(ciphers) = req.ciphers {
        cmd.args(["--ciphers", ciphers]);
    }
    let out = cmd
        .output()
        .context("cannot run curl (Debian package curl)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(k, _)| COMPARED_HEADERS.contains(&k.as_str()))
        .collect();
    Ok(Outcome { status, headers })
}

/// Debian's node_exporter with a web config, collectors off, on a free loopback port;
/// killed on drop.
#[derive(Debug)]
pub struct NodeExporter {
    pub port: u16,
    child: Child,
    log: PathBuf,
}

/// The oracle's binary.
pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

impl NodeExporter {
    /// Starts it; `Err` with its log when it refuses `web_config` (exits before listening).
    pub fn start(web_config: &Path) -> anyhow::Result<Self> {
        let port = crate::free_port();
        let log = web_config.with_extension("node-exporter.log");
        let child = Command::new(NODE_EXPORTER)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.config.file={}", web_config.display()))
            .arg("--collector.disable-defaults")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start node_exporter: install Debian's prometheus-node-exporter")?;
        let mut n = Self { port, child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = n.child.try_wait()? {
                bail!(
                    "node_exporter exited with {status}: {}",
                    std::fs::read_to_string(&n.log).unwrap_or_default()
                );
            }
            // The exporter-toolkit listens first and checks the web config after; it logs
            // one of these once the config passed.
            let log = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tls = log.contains("TLS is enabled");
            if tls || log.contains("TLS is disabled") {
                // It can still fail right after (Go's HTTP/2 checks the cipher suites when it
                // starts serving): one round trip, then it must still run.
                let scheme = if tls { "https" } else { "http" };
                let _ = Command::new("curl")
                    .args(["-sk", "--max-time", "5", "-o", "/dev/null"])
                    .arg(format!("{scheme}://127.0.0.1:{port}/"))
                    .status();
                if let Some(status) = n.child.try_wait()? {
                    bail!(
                        "node_exporter exited with {status}: {}",
                        std::fs::read_to_string(&n.log).unwrap_or_default()
                    );
                }
                return Ok(n);
            }
            if Instant::now() >= deadline {
                bail!("node_exporter not listening after 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
