//! [`TlsSettings`] + the PEM files it names -> a rustls [`ServerConfig`].
//!
//! Go's client-auth types map onto rustls verifiers: the two verifying types use webpki with
//! `client_ca_file` as the roots; `RequestClientCert` and `RequireAnyClientCert` accept any
//! certificate the client proves it holds the key of, as Go does. Errors name the file and the
//! key, never the key material.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use super::parse::{ClientAuth, Curve, Tls12Suite, TlsSettings, TlsVersion, WebConfigError};

const K: &str = "tls_server_config";

fn invalid(key: &str, problem: String) -> WebConfigError {
    WebConfigError::Invalid {
        key: format!("{K}.{key}"),
        problem,
    }
}

fn open(key: &str, path: &Path) -> Result<BufReader<std::fs::File>, WebConfigError> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))
}

fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let certs = rustls_pemfile::certs(&mut open(key, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(
            key,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// Builds the server config; `http2` decides whether `h2` is offered by ALPN.
pub fn server_config(t: &TlsSettings, http2: bool) -> Result<ServerConfig, WebConfigError> {
    let chain = certs("cert_file", &t.cert_file)?;
    let key = rustls_pemfile::private_key(&mut open("key_file", &t.key_file)?)
        .map_err(|e| invalid("key_file", format!("{}: {e}", t.key_file.display())))?
        .ok_or_else(|| {
            invalid(
                "key_file",
                format!("{} holds no PEM private key", t.key_file.display()),
            )
        })?;
    let provider = Arc::new(provider(t));
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (t.min_version..=t.max_version).contains(v))
    // No TLS 1.2 suite left (only TLS 1.3 names listed): TLS 1.2 cannot be negotiated.
    .filter(|(v, _)| {
        *v != TlsVersion::Tls12 || t.cipher_suites.as_ref().is_none_or(|s| !s.is_empty())
    })
    .map(|(_, v)| v)
    .collect();
    let verifier = client_verifier(t, &provider)?;
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| invalid("min_version", format!("rustls refused the versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            invalid(
                "key_file",
                format!(
                    "{} does not match the certificate or is unusable: {e}",
                    t.key_file.display()
                ),
            )
        })?;
    config.ignore_client_order = t.prefer_server_cipher_suites;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// ring's provider narrowed to the configured TLS 1.2 suites and curves.
fn provider(t: &TlsSettings) -> CryptoProvider {
    use rustls::crypto::ring::{cipher_suite as cs, kx_group};
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(wanted) = &t.cipher_suites {
        let mut suites: Vec<_> = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied()
            .collect();
        suites.extend(wanted.iter().map(|s| match s {
            Tls12Suite::EcdheEcdsaAes128Gcm => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            Tls12Suite::EcdheEcdsaAes256Gcm => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            Tls12Suite::EcdheEcdsaChacha20 => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            Tls12Suite::EcdheRsaAes128Gcm => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            Tls12Suite::EcdheRsaAes256Gcm => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            Tls12Suite::EcdheRsaChacha20 => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        }));
        p.cipher_suites = suites;
    }
    if let Some(curves) = &t.curves {
        p.kx_groups = curves
            .iter()
            .map(|c| match c {
                Curve::X25519 => kx_group::X25519,
                Curve::P256 => kx_group::SECP256R1,
                Curve::P384 => kx_group::SECP384R1,
            })
            .collect();
    }
    p
}

fn client_verifier(
    t: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, WebConfigError> {
    if t.client_auth == ClientAuth::NoClientCert {
        return Ok(rustls::server::WebPkiClientVerifier::no_client_auth());
    }
    if !t.client_auth.verifies() {
        return Ok(Arc::new(AnyCertificate {
            mandatory: t.client_auth.mandatory(),
            algorithms: provider.signature_verification_algorithms,
        }));
    }
    let Some(ca) = &t.client_ca_file else {
        return Err(invalid(
            "client_ca_file",
            "required by this client_auth_type".into(),
        ));
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs("client_ca_file", ca)? {
        roots
            .add(cert)
            .map_err(|e| invalid("client_ca_file", format!("{}: {e}", ca.display())))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(roots.into(), Arc::clone(provider));
    let builder = if t.client_auth.mandatory() {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| invalid("client_ca_file", format!("{}: {e}", ca.display())))
}

/// Go's `RequestClientCert`/`RequireAnyClientCert`: any certificate, unverified, but the
/// handshake signature must still match it.
#[derive(Debug)]
struct AnyCertificate {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
