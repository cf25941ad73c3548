//! TLS material: the listener's certificate and key, and CA bundles for the upstream.
//!
//! The bottom layer: it knows files and rustls, nothing of the configuration file. Its errors
//! say which file is wrong; `config` turns them into the key to fix.

use std::io::BufReader;
use std::path::Path;

/// Why TLS material cannot be used. Each variant names the file's role; the text says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The listener's certificate file.
    #[error("{0}")]
    Certificate(String),
    /// The listener's private key file.
    #[error("{0}")]
    Key(String),
    /// A CA bundle.
    #[error("{0}")]
    Bundle(String),
    /// rustls refused the protocol versions (a build problem, not a file problem).
    #[error("{0}")]
    Protocol(String),
}

fn open(path: &Path) -> Result<BufReader<std::fs::File>, String> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A rustls server configuration from PEM files, offering HTTP/2 and HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let certs = rustls_pemfile::certs(&mut open(cert).map_err(TlsError::Certificate)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(TlsError::Certificate(format!(
            "{} holds no certificate",
            cert.display()
        )));
    }
    let key_der = rustls_pemfile::private_key(&mut open(key).map_err(TlsError::Key)?)
        .map_err(|e| TlsError::Key(format!("{}: {e}", key.display())))?
        .ok_or_else(|| TlsError::Key(format!("{} holds no private key", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError::Protocol(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|e| {
        TlsError::Key(format!(
            "does not match the certificate or is unusable: {e}"
        ))
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A root store holding the certificates of a PEM bundle.
pub fn root_store(ca: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let bundle = |problem: String| TlsError::Bundle(problem);
    let mut store = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut open(ca).map_err(bundle)?) {
        let cert = cert.map_err(|e| bundle(format!("{}: {e}", ca.display())))?;
        store
            .add(cert)
            .map_err(|e| bundle(format!("{}: {e}", ca.display())))?;
    }
    if store.is_empty() {
        return Err(bundle(format!("{} holds no certificate", ca.display())));
    }
    Ok(store)
}
