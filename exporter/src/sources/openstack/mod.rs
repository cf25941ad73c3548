//! The OpenStack source: per-project usage from Keystone and Nova.
//!
//! - [`nova`]: Nova API JSON and its pure conversion.
//! - [`keystone`]: projects and domains, filters.
//! - [`accounting`]: running totals from contiguous usage windows, per-server records.
//! - [`compact`]: compact server ids and interned tables of the accounting.
//! - [`state`]: the state: a checksummed binary snapshot plus an append log of each refresh's
//!   changes (crash-safe, version-1 JSON migrated, untrusted files set aside).
//! - [`stopped`]: since when servers are stopped or broken, and their age buckets.
//! - `fetch`: what one refresh reads (Keystone lists, Nova usage, servers, flavors, quotas),
//!   page by page.
//! - [`servers`]: the server table of the incremental refresh and Nova's usage arithmetic.
//! - `incremental`: what the refresh keeps between refreshes (table, projects, quotas) and
//!   when each is read again; the reconciliation.
//! - [`client`]: authenticated requests with timeouts, retries, re-auth and a concurrency limit.
//! - [`config`]: the `openstack:` section, its flags and the migration variables.
//!
//! One refresh reads projects, the usage window `[last end, now)` (all pages) and the current
//! servers; only when all of it arrived is the window added and the state saved, so a refresh
//! that fails part-way adds nothing and the next one covers the missed time.
//!
//! Incremental (the default, from microversion 2.47): the first refresh and every
//! `reconcile_interval` list every server and take the window from Nova
//! (`os-simple-tenant-usage`); the refreshes between list only the servers changed since
//! (`changes-since`, deleted ones included), merge them into the table and compute the window
//! from it with Nova's arithmetic ([`servers`]). A reconciliation compares what the table
//! would have answered with Nova's answer and its membership with the full listing, and
//! exports and logs the disagreements. Projects and quotas are kept for their own intervals. (A state file that
//! cannot be written fails the refresh after the window was added: counting goes on in memory
//! and the next refresh writes the file.)
//!
//! The first refresh also settles where accounting starts: the configured `usage_start`, or
//! the portal's (`usage_start_url`), and the state file if there is one. A state that started
//! elsewhere is kept and served, never silently restarted: both dates are logged and exported
//! (`site_exporter_openstack_usage_start_timestamp_seconds{origin}`), and the README says what
//! an operator does to restart at the new date.

pub mod accounting;
pub mod client;
pub mod compact;
pub mod config;
mod fetch;
mod incremental;
pub mod keystone;
pub mod nova;
pub mod servers;
pub mod state;
pub mod stopped;

use std::path::PathBuf;
use std::time::SystemTime;

use accounting::Accounting;
use client::{Client, RequestError};
use keystone::Filters;

use crate::legacy::LegacyOptions;
use crate::snapshot::health::SourceMetrics;
pub use crate::snapshot::health::UsageStart;
use crate::snapshot::{ProjectsSnapshot, SourceData};
use crate::sources::start_date::StartDateError;
use crate::weights::WeightsInput;

/// A failed refresh.
#[derive(Debug, thiserror::Error)]
pub enum OpenstackError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Window(#[from] accounting::WindowError),
    #[error(transparent)]
    StartDate(#[from] StartDateError),
    #[error("no accounting start: set openstack.usage_start or usage_start_url")]
    NoStart,
    #[error("state file: background task failed: {0}")]
    Blocking(String),
    #[error("{endpoint}: Keystone cut the list at its list_limit and offers no next page; raise list_limit in keystone.conf ([DEFAULT] or [resource]) above the number of projects")]
    Truncated { endpoint: &'static str },
    #[error("{endpoint}: pagination did not end after {pages} pages")]
    Pagination {
        endpoint: &'static str,
        pages: usize,
    },
}

/// What the source needs besides the client.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configured accounting epoch; `None` when only `start_url` gives it.
    pub usage_start: Option<SystemTime>,
    /// The portal's start-date URL; when set, its answer is the accounting epoch.
    pub start_url: Option<String>,
    /// Where the accounting is persisted; `None` keeps it in memory only.
    pub state_file: Option<PathBuf>,
    /// Identity of the cloud stored with the state (the auth URL or cloud name).
    pub cloud: String,
    pub filters: Filters,
    /// Memory unit and SimpleVM split of the legacy families.
    pub legacy: LegacyOptions,
    /// Credit weights of the legacy families.
    pub weights: WeightsInput,
    /// Read per-project compute quotas.
    pub quotas: bool,
    /// Age buckets of the stopped-servers families [default: 1d, 7d, 30d, 90d].
    pub stopped_ages: crate::snapshot::StoppedAges,
    /// Incremental refresh, reconciliation, projects and quotas intervals.
    pub cadence: config::Cadence,
}

/// Clouds whose next refresh panics between applying a window and saving the state (tests of
/// the supervisor: the rebuilt source must not count that window twice).
#[cfg(test)]
pub(crate) static PANIC_BEFORE_SAVE: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The source: a client, the settings and the accounting so far.
#[derive(Debug)]
pub struct OpenstackSource {
    client: Client,
    settings: Settings,
    /// Settled by the first refresh (start date, state file).
    accounting: Option<Accounting>,
    /// Where the next state save goes; opened with the state file by the first refresh.
    store: Option<state::Store>,
    /// Since when servers are stopped; from the state file at the first refresh.
    stopped: stopped::Stopped,
    start: Option<UsageStart>,
    /// Whether Nova embeds flavors in servers (microversion 2.47), asked once.
    embeds_flavors: Option<bool>,
    /// Server table, projects and quotas between refreshes (not persisted).
    kept: incremental::Kept,
}

impl OpenstackSource {
    /// The source; nothing is read (portal, state file, OpenStack) before the first refresh.
    pub fn new(client: Client, settings: Settings) -> Self {
        Self {
            client,
            settings,
            accounting: None,
            store: None,
            stopped: stopped::Stopped::default(),
            start: None,
            embeds_flavors: None,
            kept: incremental::Kept::default(),
        }
    }

    /// The accounting to continue: the state file's when it can be trusted (an untrusted one is
    /// set aside, logged with its new name), else a fresh one at the requested start.
    async fn settle(&mut self) -> Result<(), OpenstackError> {
        if self.accounting.is_some() {
            return Ok(());
        }
        // An accounting (re)loaded from the state file may lack metadata the lost one had
        // taken in (a state write that panicked): every server's is taken in again.
        self.kept.renote_all();
        let requested = match (&self.settings.start_url, self.settings.usage_start) {
            (Some(url), _) => {
                let client = crate::sources::portal::client(std::time::Duration::from_secs(30));
                let start = crate::sources::start_date::fetch(&client, url).await?;
                tracing::info!(start = %humantime::format_rfc3339(start), "accounting start from the portal");
                start
            }
            (None, Some(start)) => start,
            (None, None) => return Err(OpenstackError::NoStart),
        };
        let fresh = Accounting::new(requested);
        let accounting = match self.settings.state_file.clone() {
            None => fresh,
            Some(path) => {
                let cloud = self.settings.cloud.clone();
                let shown = path.display().to_string();
                let (loaded, store) =
                    tokio::task::spawn_blocking(move || state::open(&path, &cloud))
                        .await
                        .map_err(|e| OpenstackError::Blocking(e.to_string()))??;
                self.store = Some(store);
                match loaded {
                    state::Loaded::Missing => fresh,
                    state::Loaded::Resumed(acc, stopped) => {
                        tracing::info!(path = %shown, "resuming openstack accounting");
                        self.stopped = stopped;
                        acc
                    }
                    state::Loaded::SetAside { reason, moved_to } => {
                        tracing::error!(
                            path = %shown,
                            moved_to = %moved_to.display(),
                            %reason,
                            "openstack state file set aside; accounting restarts at usage_start"
                        );
                        fresh
                    }
                }
            }
        };
        let start = UsageStart {
            requested: epoch(requested),
            accounting: accounting.usage_start,
        };
        if start.requested != start.accounting {
            tracing::error!(
                state_start = %state::fmt_epoch(start.accounting),
                requested_start = %state::fmt_epoch(start.requested),
                "the state file's accounting started at another date than requested; it is kept \
                 and served. To restart at the requested date: stop the exporter, move the state \
                 file away, start it again (README: Changing the accounting start)"
            );
        }
        self.start = Some(start);
        self.accounting = Some(accounting);
        Ok(())
    }

    /// The source as configured: credentials from `cloud` (clouds.yaml) or the `OS_*`
    /// variables, authenticated at the first refresh.
    pub fn from_config(
        config: &config::OpenstackConfig,
        legacy: LegacyOptions,
        weights: WeightsInput,
    ) -> Self {
        let cloud = config.cloud.clone();
        let connect: client::Connect = std::sync::Arc::new(move || {
            let cloud = cloud.clone();
            Box::pin(async move {
                match cloud {
                    Some(name) => osauth::Session::from_config(name).await,
                    None => osauth::Session::from_env().await,
                }
            })
        });
        // The state belongs to one cloud: its clouds.yaml name, else its auth URL.
        let identity = config
            .cloud
            .clone()
            .or_else(|| std::env::var("OS_CLOUD").ok())
            .or_else(|| std::env::var("OS_AUTH_URL").ok())
            .unwrap_or_default();
        Self::new(
            Client::new(connect, config.limits),
            Settings {
                usage_start: config.usage_start,
                start_url: config.usage_start_url.clone(),
                state_file: config.state_file.clone(),
                cloud: identity,
                filters: config.filters.clone(),
                legacy,
                weights,
                quotas: config.quotas,
                stopped_ages: config.stopped_ages.clone(),
                cadence: config.cadence,
            },
        )
    }

    /// The accounting so far; `None` before the first refresh settled it.
    pub fn accounting(&self) -> Option<&Accounting> {
        self.accounting.as_ref()
    }

    /// Where accounting starts, once settled.
    pub fn usage_start(&self) -> Option<UsageStart> {
        self.start
    }

    /// Shares request statistics with earlier incarnations of this source.
    pub fn sharing_stats(
        mut self,
        stats: std::sync::Arc<std::sync::Mutex<client::RequestStats>>,
    ) -> Self {
        self.client = self.client.sharing_stats(stats);
        self
    }

    /// Makes the next refresh list every server, take the window from Nova and compare both
    /// with the server table (as every `reconcile_interval`).
    pub fn reconcile_at_next_refresh(&mut self) {
        self.kept.reconcile_next();
    }

    /// The request client (its statistics feed the self-metrics).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// One refresh at `now`; see the module documentation for what is atomic.
    pub async fn refresh(&mut self, now: SystemTime) -> Result<ProjectsSnapshot, OpenstackError> {
        self.settle().await?;
        let start = self
            .accounting
            .as_ref()
            .ok_or(OpenstackError::NoStart)?
            .next_window_start();
        let projects = self.kept_projects(now).await?;
        let end = nova::whole_seconds(now);
        let read = self.read_servers(start, end, now).await?;
        let flavors = self.flavors().await?;
        let quotas = if self.settings.quotas {
            Some(self.kept_quotas(&projects, now).await?)
        } else {
            None
        };
        // Everything arrived: add the window in place (no copy of the accounting, which holds
        // a record for every server ever seen).
        let (usage, found) = self.kept.commit(read, now);
        if let Some(found) = &found {
            self.report(found);
        }
        let table = self.kept.table();
        let acc = self.accounting.as_mut().ok_or(OpenstackError::NoStart)?;
        if let Some(usage) = &usage {
            acc.apply_window(end, usage)?;
        }
        // Only servers whose entry changed since their metadata was last taken in (all of
        // them after a full listing): the rest is what the accounting already holds.
        let missing = acc.note_metadata(table.unnoted().map(|s| (&s.id, &s.metadata)));
        self.stopped.observe(table.live(), now);
        self.kept.metadata_noted(missing);
        #[cfg(test)]
        if PANIC_BEFORE_SAVE
            .lock()
            .map(|mut clouds| clouds.remove(&self.settings.cloud))
            .unwrap_or(false)
        {
            panic!("planted: the window is applied in memory, the state file not yet written");
        }
        if let Some(mut store) = self.store.take() {
            // Written on the blocking pool; the accounting goes there and comes back. If the
            // write fails, counting goes on in memory, the data is published all the same, and
            // the next refresh writes everything again; the failure is logged and counted
            // (alert OpenstackStateNotSaved).
            let mut acc = self.accounting.take().ok_or(OpenstackError::NoStart)?;
            // Small (one entry per stopped server): copied rather than moved.
            let stopped = self.stopped.clone();
            let (acc, store, saved) = tokio::task::spawn_blocking(move || {
                let saved = store.save(&mut acc, &stopped);
                (acc, store, saved)
            })
            .await
            // A panic in the write loses the in-memory accounting; the next refresh resumes
            // from the state file.
            .map_err(|e| OpenstackError::Blocking(e.to_string()))?;
            self.accounting = Some(acc);
            self.store = Some(store);
            match saved {
                Ok(saved) => tracing::debug!(
                    bytes = saved.bytes,
                    compacted = saved.compacted,
                    "state saved"
                ),
                Err(error) => {
                    tracing::error!(%error, "state file not written; counting goes on in memory");
                    self.client.count_state_write_error();
                }
            }
        }
        let next = self.accounting.as_ref().ok_or(OpenstackError::NoStart)?;
        let table = self.kept.table();
        let (current, unknown) = nova::current_state(table.live(), &flavors);
        if !unknown.is_empty() {
            tracing::warn!(
                servers = unknown.len(),
                first = %unknown[0],
                "servers whose flavor is no longer in the flavors list count without allocation"
            );
        }
        let weights = self.settings.weights.current();
        let mut snapshot = next.snapshot(
            &projects,
            current,
            &self.settings.legacy,
            weights.as_deref(),
        );
        if let Some(quotas) = quotas {
            for p in &mut snapshot.projects {
                p.quota = Some(quotas.get(&p.project.id).copied().unwrap_or_default());
            }
        }
        let mut stopped =
            self.stopped
                .buckets(table.live(), &flavors, &self.settings.stopped_ages, now);
        for p in &mut snapshot.projects {
            p.stopped = stopped.remove(&p.project.id).unwrap_or_default();
        }
        self.kept.prune(epoch(next.next_window_start()));
        give_back_memory();
        Ok(snapshot)
    }
}

/// After every collection, before the render: the memory a refresh's pages and temporaries
/// took is free but glibc keeps it resident; giving it back keeps RSS near what is live and
/// out of the render's peak (`refresh` trims once more after publishing, when the previous
/// fragment's unshared buffers are freed). Measured at 200k servers
/// (50k live): 1.4-3.5 ms per call, RSS 218 MiB against 247 MiB when trimming only after a
/// full listing or Nova's usage answer, no measurable CPU difference per refresh.
fn give_back_memory() {
    let started = std::time::Instant::now();
    let released = crate::allocator::release_free_memory();
    tracing::debug!(released, elapsed = ?started.elapsed(), "free memory given back to the OS");
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl crate::source::Source for OpenstackSource {
    type Error = OpenstackError;

    fn name(&self) -> &'static str {
        "openstack"
    }

    async fn collect(&mut self, now: SystemTime) -> Result<SourceData, Self::Error> {
        self.settings.weights.ready().await;
        self.refresh(now).await.map(SourceData::Projects)
    }

    fn self_metrics(&self) -> Option<SourceMetrics> {
        Some(SourceMetrics::Openstack {
            requests: self.client.stats(),
            start: self.start,
            window_end: self.accounting.as_ref().map(|a| a.window_end),
        })
    }
}

#[cfg(test)]
#[path = "tests/mod.rs"]
mod tests;
