//! TLS material: the listener's certificate and key, and CA bundles for the upstream.

use std::io::BufReader;
use std::path::Path;

use crate::config::ConfigError;

fn err(key: &str, problem: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        problem,
    }
}

/// A rustls server configuration from PEM files, offering HTTP/2 and HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ConfigError> {
    let open = |p: &Path, k: &str| {
        std::fs::File::open(p)
            .map(BufReader::new)
            .map_err(|e| err(k, format!("cannot read {}: {e}", p.display())))
    };
    let certs = rustls_pemfile::certs(&mut open(cert, "tls.cert_file")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("tls.cert_file", format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(err(
            "tls.cert_file",
            format!("{} holds no certificate", cert.display()),
        ));
    }
    let key_der = rustls_pemfile::private_key(&mut open(key, "tls.key_file")?)
        .map_err(|e| err("tls.key_file", format!("{}: {e}", key.display())))?
        .ok_or_else(|| {
            err(
                "tls.key_file",
                format!("{} holds no private key", key.display()),
            )
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .map_err(|e| err("tls", e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|e| {
        err(
            "tls.key_file",
            format!("does not match the certificate or is unusable: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A root store holding the certificates of a PEM bundle.
pub fn root_store(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let file = std::fs::File::open(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
    let mut store = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        store
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    if store.is_empty() {
        return Err(format!("{} holds no certificate", ca.display()));
    }
    Ok(store)
}
