//! The billing store: Debian's `victoria-metrics` (single node) on a free loopback port with
//! its data in a temporary directory, stopped and deleted on drop; backed up and restored with
//! Debian's `vmbackup` and `vmrestore` as the README says.
//!
//! Started as the compose files start it, with `-dedup.minScrapeInterval=1ms`: Prometheus
//! resends a batch whose answer it did not get in time, and without it the store keeps both
//! copies of each sample (seen on a loaded machine). Plus `-search.latencyOffset=1s` (default
//! 30 s, which hides the newest samples from queries) so that tests need not wait half a
//! minute for what was written.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::{api, free_port, query, wait_answering};

/// A VictoriaMetrics single-node server on 127.0.0.1.
#[derive(Debug)]
pub struct VictoriaMetrics {
    /// `http://127.0.0.1:port`: the query API (`/api/v1/...`) and `/api/v1/write`.
    pub url: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl VictoriaMetrics {
    /// Starts the server on an empty data directory and waits until `/health` answers.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_in(tempfile::tempdir()?)
    }

    /// Like [`VictoriaMetrics::start`], on the data in `dir`'s `data` directory (e.g. one
    /// that [`VictoriaMetrics::restore`] filled).
    pub fn start_in(dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("victoria-metrics.log"))?;
        let child = Command::new(binary())
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("data").display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=1y")
            .arg("-dedup.minScrapeInterval=1ms")
            .arg("-search.latencyOffset=1s")
            .arg("-loggerLevel=WARN")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start victoria-metrics: install Debian's victoria-metrics package (run-tests.sh does)")?;
        let mut vm = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        let log = vm.dir.path().join("victoria-metrics.log");
        wait_answering(&mut vm.child, &format!("{}/health", vm.url), &log)?;
        Ok(vm)
    }

    /// Backs the running server up into the directory `dst` with Debian's `vmbackup`, from
    /// a snapshot it asks the server for (README, "Billing history in VictoriaMetrics").
    pub fn backup(&self, dst: &Path) -> anyhow::Result<()> {
        run(Command::new("vmbackup")
            .arg(format!("-storageDataPath={}", self.data().display()))
            .arg(format!("-snapshot.createURL={}/snapshot/create", self.url))
            .arg(format!("-dst=fs://{}", dst.display())))
    }

    /// Restores the backup in the directory `src` with Debian's `vmrestore` into a new
    /// temporary directory, for [`VictoriaMetrics::start_in`].
    pub fn restore(src: &Path) -> anyhow::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        run(Command::new("vmrestore")
            .arg(format!("-src=fs://{}", src.display()))
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("data").display()
            )))?;
        Ok(dir)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Its remote-write URL, for Prometheus's `remote_write`.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("victoria-metrics.log")).unwrap_or_default()
    }

    /// Calls an API path (`/api/v1/...` with query string) and returns `data`.
    pub fn api(&self, path_and_query: &str) -> anyhow::Result<Value> {
        api(&self.url, path_and_query)
    }

    /// An instant query; returns the result vector.
    pub fn query(&self, promql: &str) -> anyhow::Result<Vec<Value>> {
        query(&self.url, promql)
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    std::env::var_os("VICTORIA_METRICS_BIN")
        .map_or_else(|| PathBuf::from("victoria-metrics"), PathBuf::from)
}

/// Runs a command to its end; fails with its output unless it succeeds.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {command:?} (Debian's victoria-metrics package)"))?;
    if !out.status.success() {
        bail!(
            "{command:?}: {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
