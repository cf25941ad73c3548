//! YAML configuration -> one validated, immutable [`Config`], swapped whole on SIGHUP.
//!
//! ```yaml
//! listen: 0.0.0.0:9443
//! tls: {cert_file: tls.crt, key_file: tls.key}   # optional; without it plain HTTP (warned)
//! internal_listen: 127.0.0.1:9444                # /metrics, /-/healthy, /-/ready
//! upstream: {url: http://prometheus:9090, timeout: 60s, ca_file: optional.pem}
//! limits: {max_match: 16, max_connections: 1024, header_read_timeout: 10s,
//!          max_uri_bytes: 8192, max_header_bytes: 16384}
//! clients:
//!   - name: portal
//!     token_file: /run/secrets/portal_token      # or token_env: VAR; never inline
//!     allow: ['{job="project_usages",__name__=~"project_.*_usage"}']
//!     rate_limit: {per_second: 2, burst: 10}
//! ```
//! Unknown keys are errors, and every error names the key. Tokens are read here (files or
//! environment variables) and kept only in memory; they appear in no error or log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::ratelimit::{Limiter, RateLimit};
use crate::selectors::Selector;
use crate::tls::{self, TlsError};

/// Default `upstream.timeout`.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: SocketAddr,
    tls: Option<TlsFile>,
    internal_listen: Option<SocketAddr>,
    upstream: UpstreamFile,
    #[serde(default)]
    limits: LimitsFile,
    clients: Vec<ClientFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: PathBuf,
    key_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamFile {
    url: String,
    #[serde(default, deserialize_with = "duration")]
    timeout: Option<Duration>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_match: Option<usize>,
    max_connections: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    header_read_timeout: Option<Duration>,
    max_uri_bytes: Option<usize>,
    max_header_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    name: String,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
    rate_limit: Option<RateLimit>,
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration '{text}': {e}")))
}

/// Resource limits of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most `match[]` parameters in one request [default: 16].
    pub max_match: usize,
    /// Most connections served at once; more wait in the kernel's backlog [default: 1024].
    pub max_connections: usize,
    /// Time a client has to send its request headers [default: 10s].
    pub header_read_timeout: Duration,
    /// Longest request target; longer ones get 414 [default: 8192].
    pub max_uri_bytes: usize,
    /// Largest request header block; larger ones get 431 [default: 16384].
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_match: 16,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            max_uri_bytes: 8192,
            max_header_bytes: 16384,
        }
    }
}

/// A portal (or other reader) with its token and what it may read.
pub struct Client {
    pub name: String,
    pub token: Vec<u8>,
    pub allow: Vec<Selector>,
    pub limiter: Option<Limiter>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

/// Where requests are forwarded.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The base URL; `/federate` is appended to its path.
    pub url: http::Uri,
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
}

/// Everything the gateway needs, validated.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub internal_listen: Option<SocketAddr>,
    /// TLS for the listener; `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub upstream: Upstream,
    pub limits: Limits,
    pub clients: Vec<Client>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates config text; relative file names count from the file's directory.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: FileConfig = serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };

        let tls = match &file.tls {
            Some(t) => Some(Arc::new(
                tls::server_config(&resolve(&t.cert_file), &resolve(&t.key_file)).map_err(|e| {
                    let key = match e {
                        TlsError::Certificate(_) => "tls.cert_file",
                        TlsError::Key(_) => "tls.key_file",
                        TlsError::Bundle(_) | TlsError::Protocol(_) => "tls",
                    };
                    invalid(key, e.to_string())
                })?,
            )),
            None => None,
        };

        let url: http::Uri = file
            .upstream
            .url
            .parse()
            .map_err(|e| invalid("upstream.url", format!("'{}': {e}", file.upstream.url)))?;
        match (url.scheme_str(), url.authority()) {
            (Some("http" | "https"), Some(_)) => {}
            _ => {
                return Err(invalid(
                    "upstream.url",
                    "must be an absolute http:// or https:// URL",
                ))
            }
        }
        if url.query().is_some() {
            return Err(invalid("upstream.url", "must not have a query"));
        }
        let upstream = Upstream {
            url,
            timeout: file.upstream.timeout.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT),
            ca_file: file.upstream.ca_file.as_deref().map(resolve),
        };
        if upstream.timeout.is_zero() {
            return Err(invalid("upstream.timeout", "must be greater than zero"));
        }
        if let Some(ca) = &upstream.ca_file {
            tls::root_store(ca).map_err(|e| invalid("upstream.ca_file", e.to_string()))?;
        }

        let d = Limits::default();
        let l = file.limits;
        let limits = Limits {
            max_match: l.max_match.unwrap_or(d.max_match),
            max_connections: l.max_connections.unwrap_or(d.max_connections),
            header_read_timeout: l.header_read_timeout.unwrap_or(d.header_read_timeout),
            max_uri_bytes: l.max_uri_bytes.unwrap_or(d.max_uri_bytes),
            max_header_bytes: l.max_header_bytes.unwrap_or(d.max_header_bytes),
        };
        for (key, value) in [
            ("limits.max_match", limits.max_match),
            ("limits.max_connections", limits.max_connections),
            ("limits.max_uri_bytes", limits.max_uri_bytes),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        if limits.max_header_bytes < 8192 {
            return Err(invalid("limits.max_header_bytes", "must be at least 8192"));
        }
        if limits.header_read_timeout.is_zero() {
            return Err(invalid(
                "limits.header_read_timeout",
                "must be greater than zero",
            ));
        }

        if file.clients.is_empty() {
            return Err(invalid("clients", "at least one client is needed"));
        }
        let mut clients: Vec<Client> = Vec::with_capacity(file.clients.len());
        for (i, c) in file.clients.into_iter().enumerate() {
            let key = format!("clients[{i}]");
            if c.name.trim().is_empty() || c.name == "unknown" {
                return Err(invalid(
                    format!("{key}.name"),
                    "must be set and not 'unknown'",
                ));
            }
            if clients.iter().any(|other| other.name == c.name) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("'{}' is used twice", c.name),
                ));
            }
            let token =
                match (&c.token_file, &c.token_env) {
                    (Some(f), None) => {
                        let f = resolve(f);
                        let text = std::fs::read(&f).map_err(|e| {
                            invalid(
                                format!("{key}.token_file"),
                                format!("cannot read {}: {e}", f.display()),
                            )
                        })?;
                        trim(&text).to_vec()
                    }
                    (None, Some(var)) => match std::env::var_os(var) {
                        Some(v) => trim(v.as_encoded_bytes()).to_vec(),
                        None => {
                            return Err(invalid(
                                format!("{key}.token_env"),
                                format!("variable {var} is not set"),
                            ))
                        }
                    },
                    _ => return Err(invalid(
                        key.clone(),
                        "give exactly one of token_file and token_env (tokens are never inline)",
                    )),
                };
            if token.len() < 16 {
                return Err(invalid(
                    key.clone(),
                    "the token must have at least 16 characters",
                ));
            }
            if token
                .iter()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(invalid(
                    key.clone(),
                    "the token must not contain spaces or control characters",
                ));
            }
            if clients.iter().any(|other| other.token == token) {
                return Err(invalid(
                    key.clone(),
                    "the token is the same as another client's",
                ));
            }
            if c.allow.is_empty() {
                return Err(invalid(
                    format!("{key}.allow"),
                    "at least one selector is needed",
                ));
            }
            let allow = c
                .allow
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    Selector::parse(s)
                        .map_err(|e| invalid(format!("{key}.allow[{j}]"), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let limiter = match c.rate_limit {
                Some(r) => {
                    Some(Limiter::new(r).map_err(|p| invalid(format!("{key}.rate_limit"), p))?)
                }
                None => None,
            };
            clients.push(Client {
                name: c.name,
                token,
                allow,
                limiter,
            });
        }

        Ok(Self {
            listen: file.listen,
            internal_listen: file.internal_listen,
            tls,
            upstream,
            limits,
            clients,
        })
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests;
