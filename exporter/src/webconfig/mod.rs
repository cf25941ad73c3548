//! `--web.config.file`: TLS, basic authentication and response headers in the format of the
//! Prometheus exporter-toolkit, with node_exporter's keys.
//!
//! - [`parse`]: YAML text -> validated [`parse::WebConfig`]; pure, every error names the key.
//! - [`tls`]: a [`parse::TlsSettings`] + the PEM files it names -> a rustls server config.
//! - [`auth`]: bcrypt basic authentication with a cache of verified results.
//! - [`live`]: the file as the server sees it: re-read when its (or a named file's) mtime
//!   changes; a bad edit keeps the last good configuration.
//!
//! Invariant: passwords, password hashes and key material never appear in an error or a log
//! line; errors name files and keys only.

pub mod auth;
pub mod live;
pub mod parse;
pub mod tls;
