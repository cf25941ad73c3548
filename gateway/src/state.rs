//! The configuration in force, swapped whole on reload, and the metrics that outlive it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::upstream::UpstreamClient;

/// A configuration with what is built from it.
pub struct Active {
    pub config: Config,
    pub upstream: UpstreamClient,
    /// The clients' tokens, in client order, for `auth::authenticate`.
    pub tokens: Vec<Vec<u8>>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Active")
            .field("config", &self.config)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Active {
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let upstream =
            UpstreamClient::new(&config.upstream).map_err(|problem| ConfigError::Invalid {
                key: "upstream".into(),
                problem,
            })?;
        let tokens = config.clients.iter().map(|c| c.token.clone()).collect();
        let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        Ok(Self {
            config,
            upstream,
            tokens,
            tls,
        })
    }
}

/// Shared by every connection.
#[derive(Debug)]
pub struct State {
    path: PathBuf,
    active: RwLock<Arc<Active>>,
    pub metrics: Metrics,
}

impl State {
    /// Wraps a loaded configuration; `path` is what `reload` reads.
    pub fn new(path: &Path, config: Config) -> Result<Self, ConfigError> {
        let metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
        metrics.config_last_reload_success.set(1);
        Ok(Self {
            path: path.to_owned(),
            active: RwLock::new(Arc::new(Active::new(config)?)),
            metrics,
        })
    }

    /// The configuration in force.
    pub fn active(&self) -> Arc<Active> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the file again; a valid one replaces the configuration at once (requests in
    /// flight finish under the old one), an invalid one is reported and changes nothing.
    /// Listen addresses and connection limits are fixed at start; a change is reported and
    /// applies after a restart.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let result = Config::load(&self.path).and_then(Active::new);
        match result {
            Ok(new) => {
                let old = self.active();
                if new.config.listen != old.config.listen
                    || new.config.internal_listen != old.config.internal_listen
                {
                    tracing::warn!(
                        "listen addresses changed in the file; they apply after a restart"
                    );
                }
                *self.active.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(new);
                self.metrics.config_last_reload_success.set(1);
                tracing::info!(path = %self.path.display(), "configuration reloaded");
                Ok(())
            }
            Err(error) => {
                self.metrics.config_last_reload_success.set(0);
                tracing::error!(path = %self.path.display(), %error, "reload failed; the previous configuration stays in force");
                Err(error)
            }
        }
    }
}
