//! The public listener over TLS, with a certificate made for the test: HTTP/1.1 and HTTP/2
//! through ALPN, and no plain-text answer on the TLS port.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use http_body_util::{BodyExt, Empty};

fn certificate(dir: &std::path::Path) -> rustls::pki_types::CertificateDer<'static> {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    std::fs::write(dir.join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    cert.cert.der().clone()
}

#[tokio::test]
async fn serves_https_with_h2_and_http1() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let der = certificate(dir.path());
    let gw = start_gateway_in(
        dir,
        upstream.addr,
        "tls: {cert_file: tls.crt, key_file: tls.key}\n",
        "",
    )
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    for http2 in [false, true] {
        let tls = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        let connector = if http2 {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        };
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(http2)
                .build::<_, Empty<bytes::Bytes>>(connector);
        let req = http::Request::get(format!(
            "https://127.0.0.1:{}/federate?{ORIGINAL_QUERY}",
            gw.addr.port()
        ))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Empty::new())
        .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "http2={http2}");
        assert_eq!(
            resp.version(),
            if http2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            }
        );
        assert_eq!(
            resp.into_body().collect().await.unwrap().to_bytes(),
            BODY.as_bytes()
        );
    }
    assert_eq!(upstream.count(), 2);

    // Plain HTTP on the TLS port gets no HTTP answer and reaches nothing.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(&get(
        &format!("/federate?{ORIGINAL_QUERY}"),
        &[&bearer(TOKEN)],
    ))
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    assert_eq!(upstream.count(), 2);
}
