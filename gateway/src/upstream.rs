//! The site Prometheus: a pooled client, and the one request the gateway ever sends it.
//!
//! A fresh `GET <upstream>/federate?match[]=…` carries only the canonical selectors that were
//! allowed and the `Accept` and `Accept-Encoding` headers Prometheus needs — never the
//! client's `Authorization`, cookies, or hop-by-hop headers. The answer streams back as it
//! arrives; only the time to its headers is bounded by the upstream timeout.

use std::time::Duration;

use http::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Upstream;
use crate::error::GatewayError;
use crate::query;
use crate::selectors::Selector;

/// A pooled HTTP(S) client for one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<bytes::Bytes>>,
    base: Uri,
    timeout: Duration,
}

impl UpstreamClient {
    /// Builds the client; `ca_file` replaces the public roots for an HTTPS upstream.
    pub fn new(upstream: &Upstream) -> Result<Self, String> {
        let provider = rustls::crypto::ring::default_provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.into())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let tls = match &upstream.ca_file {
            Some(ca) => builder
                .with_root_certificates(crate::tls::root_store(ca).map_err(|e| e.to_string())?)
                .with_no_client_auth(),
            None => builder
                .with_root_certificates(rustls::RootCertStore::from_iter(
                    webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
                ))
                .with_no_client_auth(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(upstream.timeout.min(Duration::from_secs(10))));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self {
            client,
            base: upstream.url.clone(),
            timeout: upstream.timeout,
        })
    }

    /// The absolute URI of the forwarded request.
    pub fn federate_uri(&self, selectors: &[Selector]) -> Result<Uri, GatewayError> {
        let base_path = self.base.path().trim_end_matches('/');
        let mut parts = self.base.clone().into_parts();
        let path = format!("{base_path}/federate?{}", query::encode(selectors));
        parts.path_and_query = Some(
            path.parse()
                .map_err(|e| GatewayError::UpstreamConnect(format!("bad upstream URI: {e}")))?,
        );
        Uri::from_parts(parts)
            .map_err(|e| GatewayError::UpstreamConnect(format!("bad upstream URI: {e}")))
    }

    /// Sends the federate request and returns the upstream's response head and streaming body.
    pub async fn federate(
        &self,
        selectors: &[Selector],
        client_headers: &HeaderMap,
    ) -> Result<Response<Incoming>, GatewayError> {
        let mut req = Request::get(self.federate_uri(selectors)?)
            .body(Empty::new())
            .map_err(|e| GatewayError::UpstreamConnect(e.to_string()))?;
        for name in [ACCEPT, ACCEPT_ENCODING] {
            for value in client_headers.get_all(&name) {
                req.headers_mut().append(name.clone(), value.clone());
            }
        }
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(GatewayError::UpstreamTimeout(self.timeout)),
            Ok(Err(e)) => Err(GatewayError::UpstreamConnect(error_chain(&e))),
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}

/// The headers of an upstream response that are passed to the client.
pub fn pass_headers(upstream: &HeaderMap, out: &mut HeaderMap) {
    for name in [CONTENT_TYPE, CONTENT_ENCODING] {
        if let Some(v) = upstream.get(&name) {
            out.insert(name, v.clone());
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
