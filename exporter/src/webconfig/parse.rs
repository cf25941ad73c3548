//! The web-config file's text -> a validated [`WebConfig`]. Pure: no file is opened here.
//!
//! The keys are those of the exporter-toolkit that node_exporter 1.5 reads; unknown keys are
//! errors naming the key. Relative paths are resolved against the file's directory, as the
//! exporter-toolkit does. What rustls cannot serve (TLS 1.0/1.1, CBC, RC4, 3DES and
//! RSA-key-exchange suites, the P-521 curve) is refused with an error saying so, instead of
//! being accepted and failing in the handshake.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

/// What is wrong with a web-config file. Never holds a password, a hash or key material.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// serde's message with every quoted value blanked: a misplaced password must not be
    /// echoed (`invalid type: string "..."`); key names (in backticks) stay.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A key whose value cannot be used; `key` is its path in the file.
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> WebConfigError {
    WebConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The file's shape, as the exporter-toolkit spells it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsSection>,
    http_server_config: Option<HttpSection>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// A validated web configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// TLS settings; `None` serves plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Users and their bcrypt hashes; empty means no authentication.
    pub users: Users,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Offer HTTP/2 over TLS (ALPN) [default: true].
    pub http2: bool,
}

/// User name -> bcrypt hash. Its `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Users(pub BTreeMap<String, String>);

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// `tls_server_config`, with its defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// [default: TLS 1.2]
    pub min_version: TlsVersion,
    /// [default: TLS 1.3]
    pub max_version: TlsVersion,
    /// The TLS 1.2 suites allowed, in preference order; `None` = the rustls defaults. TLS 1.3
    /// suites are not configurable (as in Go): their names are accepted and ignored.
    pub cipher_suites: Option<Vec<Tls12Suite>>,
    /// Key-exchange groups in preference order; `None` = the rustls defaults.
    pub curves: Option<Vec<Curve>>,
    /// [default: true, as in the exporter-toolkit]
    pub prefer_server_cipher_suites: bool,
}

/// Go's `tls.ClientAuthType`, by the exporter-toolkit's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// Whether a certificate must be sent.
    pub fn mandatory(self) -> bool {
        matches!(
            self,
            Self::RequireAnyClientCert | Self::RequireAndVerifyClientCert
        )
    }

    /// Whether a sent certificate is verified against `client_ca_file`.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            Self::VerifyClientCertIfGiven | Self::RequireAndVerifyClientCert
        )
    }
}

/// The TLS versions rustls serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The TLS 1.2 suites rustls implements (all AEAD with ECDHE), by their Go/IANA names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls12Suite {
    EcdheEcdsaAes128Gcm,
    EcdheEcdsaAes256Gcm,
    EcdheEcdsaChacha20,
    EcdheRsaAes128Gcm,
    EcdheRsaAes256Gcm,
    EcdheRsaChacha20,
}

/// Key-exchange groups, by Go's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    X25519,
    P256,
    P384,
}

const TLS12_SUITES: &[(&str, Tls12Suite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Tls12Suite::EcdheEcdsaAes128Gcm,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Tls12Suite::EcdheEcdsaAes256Gcm,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Tls12Suite::EcdheEcdsaChacha20,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Tls12Suite::EcdheRsaAes128Gcm,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Tls12Suite::EcdheRsaAes256Gcm,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Tls12Suite::EcdheRsaChacha20,
    ),
];

/// Go's TLS 1.3 suites: always enabled, not configurable.
const TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites Go knows and rustls does not implement.
const UNSERVABLE_SUITES: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The headers the exporter-toolkit lets a file set, and the values it allows (`None`: any).
const HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

/// Parses and validates the text of a web-config file; relative paths are taken from `dir`.
pub fn parse(text: &str, dir: &Path, path: &Path) -> Result<WebConfig, WebConfigError> {
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| WebConfigError::Parse {
            path: path.to_owned(),
            message: blank_quoted(&e.to_string()),
        })?
    };
    let http = file.http_server_config.unwrap_or_default();
    let http2 = http.http2.unwrap_or(true);
    let tls = file
        .tls_server_config
        .map(|t| tls_settings(t, dir))
        .transpose()?
        .flatten();
    if let Some(t) = &tls {
        http2_suites(t, http2)?;
    }
    Ok(WebConfig {
        tls,
        users: users(file.basic_auth_users.unwrap_or_default())?,
        headers: headers(http.headers.unwrap_or_default())?,
        http2,
    })
}

/// Go's HTTP/2 server refuses a TLS 1.2 suite list without ECDHE + AES-128-GCM (RFC 7540
/// 9.2.2); node_exporter fails to start on it, so this does too.
fn http2_suites(t: &TlsSettings, http2: bool) -> Result<(), WebConfigError> {
    let Some(suites) = &t.cipher_suites else {
        return Ok(());
    };
    let required = [
        Tls12Suite::EcdheRsaAes128Gcm,
        Tls12Suite::EcdheEcdsaAes128Gcm,
    ];
    if http2 && t.min_version < TlsVersion::Tls13 && !suites.iter().any(|s| required.contains(s)) {
        return Err(invalid(
            "tls_server_config.cipher_suites",
            "HTTP/2 needs TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 in the list (or http_server_config.http2: false)",
        ));
    }
    Ok(())
}

/// `text` with the inside of every `"..."` replaced by `...`.
fn blank_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, part) in text.split('"').enumerate() {
        if i % 2 == 1 {
            out.push_str("\"...\"");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn tls_settings(t: TlsSection, dir: &Path) -> Result<Option<TlsSettings>, WebConfigError> {
    const K: &str = "tls_server_config";
    let client_auth = match t.client_auth_type.as_deref() {
        None | Some("" | "NoClientCert") => ClientAuth::NoClientCert,
        Some("RequestClientCert") => ClientAuth::RequestClientCert,
        // The exporter-toolkit keeps the old name for compatibility.
        Some("RequireAnyClientCert" | "RequireClientCert") => ClientAuth::RequireAnyClientCert,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyClientCertIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerifyClientCert,
        Some(other) => {
            return Err(invalid(
                format!("{K}.client_auth_type"),
                format!("unknown value '{other}': use NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ))
        }
    };
    // As in the exporter-toolkit: a section without any of these serves plain HTTP.
    if t.cert_file.is_none()
        && t.key_file.is_none()
        && t.client_ca_file.is_none()
        && t.client_auth_type.as_deref().unwrap_or("").is_empty()
    {
        return Ok(None);
    }
    let cert_file = t
        .cert_file
        .ok_or_else(|| invalid(format!("{K}.cert_file"), "missing (key_file is set)"))?;
    let key_file = t
        .key_file
        .ok_or_else(|| invalid(format!("{K}.key_file"), "missing (cert_file is set)"))?;
    if t.client_ca_file.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(invalid(
            format!("{K}.client_ca_file"),
            "a client CA is configured without a client_auth_type that uses it",
        ));
    }
    if client_auth.verifies() && t.client_ca_file.is_none() {
        // Go would verify against the system's roots; a scrape target has no use for that.
        return Err(invalid(
            format!("{K}.client_ca_file"),
            "required by client_auth_type VerifyClientCertIfGiven and RequireAndVerifyClientCert",
        ));
    }
    let min_version = version(&format!("{K}.min_version"), t.min_version.as_deref())?
        .unwrap_or(TlsVersion::Tls12);
    let max_version = version(&format!("{K}.max_version"), t.max_version.as_deref())?
        .unwrap_or(TlsVersion::Tls13);
    if min_version > max_version {
        return Err(invalid(
            format!("{K}.min_version"),
            "is above max_version: no TLS version is left",
        ));
    }
    let cipher_suites = t
        .cipher_suites
        .map(|names| suites(&format!("{K}.cipher_suites"), &names))
        .transpose()?;
    if min_version == TlsVersion::Tls12
        && max_version == TlsVersion::Tls12
        && cipher_suites.as_ref().is_some_and(Vec::is_empty)
    {
        return Err(invalid(
            format!("{K}.cipher_suites"),
            "names no TLS 1.2 suite, and TLS 1.2 is the only version allowed",
        ));
    }
    let curves = t
        .curve_preferences
        .map(|names| curves(&format!("{K}.curve_preferences"), &names))
        .transpose()?;
    Ok(Some(TlsSettings {
        cert_file: dir.join(cert_file),
        key_file: dir.join(key_file),
        client_ca_file: t.client_ca_file.map(|p| dir.join(p)),
        client_auth,
        min_version,
        max_version,
        cipher_suites,
        curves,
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(true),
    }))
}

fn version(key: &str, value: Option<&str>) -> Result<Option<TlsVersion>, WebConfigError> {
    match value {
        None | Some("") => Ok(None),
        Some("TLS12") => Ok(Some(TlsVersion::Tls12)),
        Some("TLS13") => Ok(Some(TlsVersion::Tls13)),
        Some(old @ ("TLS10" | "TLS11")) => Err(invalid(
            key,
            format!("{old}: rustls does not serve TLS 1.0 or 1.1; use TLS12 or TLS13"),
        )),
        Some(other) => Err(invalid(
            key,
            format!("unknown TLS version '{other}': use TLS12 or TLS13"),
        )),
    }
}

fn suites(key: &str, names: &[String]) -> Result<Vec<Tls12Suite>, WebConfigError> {
    let mut out = Vec::new();
    for name in names {
        if let Some((_, suite)) = TLS12_SUITES.iter().find(|(n, _)| n == name) {
            if !out.contains(suite) {
                out.push(*suite);
            }
        } else if TLS13_SUITES.contains(&name.as_str()) {
            // Go ignores TLS 1.3 suites here; so do we.
        } else if UNSERVABLE_SUITES.contains(&name.as_str()) {
            return Err(invalid(
                key,
                format!("{name}: rustls does not implement it (only ECDHE with AES-GCM or ChaCha20-Poly1305 is served; no CBC, RC4, 3DES or RSA key exchange)"),
            ));
        } else {
            return Err(invalid(key, format!("unknown cipher suite '{name}'")));
        }
    }
    Ok(out)
}

fn curves(key: &str, names: &[String]) -> Result<Vec<Curve>, WebConfigError> {
    names
        .iter()
        .map(|name| match name.as_str() {
            "X25519" => Ok(Curve::X25519),
            "CurveP256" => Ok(Curve::P256),
            "CurveP384" => Ok(Curve::P384),
            "CurveP521" => Err(invalid(
                key,
                "CurveP521: rustls does not implement it; use X25519, CurveP256 or CurveP384",
            )),
            other => Err(invalid(key, format!("unknown curve '{other}'"))),
        })
        .collect()
}

fn users(users: BTreeMap<String, String>) -> Result<Users, WebConfigError> {
    for (user, hash) in &users {
        if user.contains(':') {
            return Err(invalid(
                "basic_auth_users",
                format!("user '{user}': a user name cannot contain ':'"),
            ));
        }
        if hash.parse::<bcrypt::HashParts>().is_err() {
            // The hash itself is not echoed: it is a secret in the wider sense.
            return Err(invalid(
                format!("basic_auth_users.{user}"),
                "is not a bcrypt hash ($2a$, $2b$ or $2y$; e.g. from htpasswd -nBC 10)",
            ));
        }
    }
    Ok(Users(users))
}

fn headers(
    headers: BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let key = format!("http_server_config.headers.{name}");
        let Some((_, allowed)) = HEADERS.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = HEADERS.iter().map(|(n, _)| *n).collect();
            return Err(invalid(
                key,
                format!(
                    "this header cannot be configured; allowed: {}",
                    names.join(", ")
                ),
            ));
        };
        if let Some(values) = allowed {
            if !values.contains(&value.as_str()) {
                return Err(invalid(
                    key,
                    format!(
                        "'{value}' is not allowed; use one of: {}",
                        values.join(", ")
                    ),
                ));
            }
        }
        let header_value = HeaderValue::from_str(&value)
            .map_err(|_| invalid(&key, "is not a valid header value"))?;
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(&key, "is not a valid header name"))?;
        out.push((header_name, header_value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
