//! The web-config file as the server uses it, re-read when it changes.
//!
//! The exporter-toolkit re-reads the file on every request. Here every connection and request
//! asks [`LiveWebConfig::current`], which compares the modification time and size of the file
//! and of the PEM files it names with those last seen, and re-reads only on a change. So an
//! edit, or a renewed certificate, counts from the next connection or request, without a
//! restart.
//!
//! A file that is wrong at start-up stops the start ([`LiveWebConfig::load`]). A wrong edit
//! while running keeps the last good configuration (the exporter-toolkit answers 500 until the
//! file is fixed), is logged once per version of the files and counted
//! ([`LiveWebConfig::reload_failures`]). Switching TLS on or off needs a restart, like in
//! the exporter-toolkit, which decides that at start-up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::auth::BasicAuth;
use super::parse::{parse, ClientAuth, TlsVersion, WebConfig, WebConfigError};
use super::tls::server_config;

/// One loaded version of the file.
#[derive(Debug)]
pub struct Active {
    pub config: WebConfig,
    /// Present when the file has a `tls_server_config`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Arc<BasicAuth>,
}

/// Modification time and length of each watched file; `None` for one that cannot be read.
type Stamp = Vec<Option<(SystemTime, u64)>>;

/// The configuration in force and how to notice that its files changed.
#[derive(Debug)]
pub struct LiveWebConfig {
    path: PathBuf,
    state: Mutex<(Stamp, Arc<Active>)>,
    failures: AtomicU64,
}

impl LiveWebConfig {
    /// Reads the file and everything it names; any problem is an error naming the key.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let active = read(path)?;
        let stamp = stamp(path, &active.config);
        Ok(Self {
            path: path.to_owned(),
            state: Mutex::new((stamp, Arc::new(active))),
            failures: AtomicU64::new(0),
        })
    }

    /// The configuration in force, re-read first when one of its files changed.
    pub fn current(&self) -> Arc<Active> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = stamp(&self.path, &state.1.config);
        if now == state.0 {
            return Arc::clone(&state.1);
        }
        match read(&self.path).and_then(|a| same_mode(&state.1, a)) {
            Ok(active) => {
                tracing::info!(file = %self.path.display(), "web config reloaded");
                state.0 = stamp(&self.path, &active.config);
                state.1 = Arc::new(active);
            }
            Err(error) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(file = %self.path.display(), %error, "web config not reloaded; keeping the last good one");
                // Not retried until a file changes again.
                state.0 = now;
            }
        }
        Arc::clone(&state.1)
    }

    /// Edits refused since start-up.
    pub fn reload_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// One line for `--check-config`: what the file turns on (no secrets).
    pub fn summary(&self) -> String {
        let active = self.current();
        let c = &active.config;
        let tls = c.tls.as_ref().map_or_else(
            || "plain HTTP".to_owned(),
            |t| {
                let v = |v: TlsVersion| match v {
                    TlsVersion::Tls12 => "1.2",
                    TlsVersion::Tls13 => "1.3",
                };
                let client = match t.client_auth {
                    ClientAuth::NoClientCert => "no client certificates".to_owned(),
                    other => format!("client certificates {other:?}"),
                };
                format!(
                    "TLS {}-{} with {}, {client}",
                    v(t.min_version),
                    v(t.max_version),
                    t.cert_file.display()
                )
            },
        );
        format!(
            "web config {}: {tls}; basic auth for {} user(s); {} extra header(s)",
            self.path.display(),
            c.users.0.len(),
            c.headers.len()
        )
    }
}

fn read(path: &Path) -> Result<Active, WebConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let config = parse(&text, dir, path)?;
    let tls = config
        .tls
        .as_ref()
        .map(|t| server_config(t, config.http2))
        .transpose()?
        .map(Arc::new);
    Ok(Active {
        auth: Arc::new(BasicAuth::new(config.users.clone())),
        config,
        tls,
    })
}

fn same_mode(old: &Active, new: Active) -> Result<Active, WebConfigError> {
    if old.tls.is_some() != new.tls.is_some() {
        return Err(WebConfigError::Invalid {
            key: "tls_server_config".into(),
            problem: "switching TLS on or off needs a restart".into(),
        });
    }
    Ok(new)
}

fn stamp(path: &Path, config: &WebConfig) -> Stamp {
    let mut files = vec![path];
    if let Some(t) = &config.tls {
        files.extend([t.cert_file.as_path(), t.key_file.as_path()]);
        files.extend(t.client_ca_file.as_deref());
    }
    files
        .into_iter()
        .map(|f| {
            std::fs::metadata(f)
                .and_then(|m| Ok((m.modified()?, m.len())))
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_bad_edit_is_counted_once_and_the_last_good_config_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        let hash = bcrypt::hash("pw", 4).unwrap();
        std::fs::write(&path, format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
        let live = LiveWebConfig::load(&path).unwrap();
        assert_eq!(live.current().config.users.0.len(), 1);

        std::fs::write(&path, "basic_auth_users: [\n").unwrap();
        for _ in 0..3 {
            assert_eq!(live.current().config.users.0.len(), 1, "last good kept");
        }
        assert_eq!(
            live.reload_failures(),
            1,
            "one failure per version of the file"
        );

        std::fs::write(
            &path,
            format!("basic_auth_users:\n  alice: '{hash}'\n  bob: '{hash}'\n"),
        )
        .unwrap();
        assert_eq!(
            live.current().config.users.0.len(),
            2,
            "the fixed file counts"
        );

        // TLS cannot be switched on by an edit.
        std::fs::write(
            &path,
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n",
        )
        .unwrap();
        assert!(live.current().tls.is_none());
        assert_eq!(live.reload_failures(), 2);
        assert!(live.summary().contains("plain HTTP"), "{}", live.summary());
    }
}
