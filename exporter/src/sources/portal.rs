//! GET requests to the portal (credit weights, the accounting start): one client setup, one
//! error shape, and URLs shown without user information or query, which can hold secrets.

use std::time::Duration;

use bytes::Bytes;

use crate::settings::ConfigError;

/// A failed GET; the URL is already redacted.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("{url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
}

/// A client whose requests time out after `timeout` (connecting: at most 10 s).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("site-exporter/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// The body of a successful GET of `url`.
pub async fn get(client: &reqwest::Client, url: &str) -> Result<Bytes, PortalError> {
    let fetch = |e: reqwest::Error| PortalError::Fetch {
        url: redact(url),
        reason: error_chain(&e.without_url()),
    };
    let resp = client.get(url).send().await.map_err(fetch)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(PortalError::Status {
            url: redact(url),
            status: status.as_u16(),
        });
    }
    resp.bytes().await.map_err(fetch)
}

/// An absolute http(s) URL; the error shows it without credentials or query.
pub fn check_url(key: &'static str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
        _ => Err(crate::settings::invalid(
            key,
            format!("'{}' is not an http(s) URL", redact(url)),
        )),
    }
}

/// A URL as it may be shown: without user information and query.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_string(),
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
