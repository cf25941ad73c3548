//! What the refresh keeps between refreshes — the server table, Keystone's projects, the
//! quotas — and when each is read again; the reconciliation of the table with a full listing
//! and Nova's own usage answer.
//!
//! Invariants: nothing here is persisted (a restart lists every server); what a refresh read
//! replaces what was kept only when the whole refresh arrived ([`Kept::commit`]), except the
//! `changes-since` merge, which only brings the table closer to Nova and can be repeated (so a
//! reconciliation merges into the kept table in place, never into a copy of it); a
//! reconciliation's disagreements are counted once, at commit. A refresh that is not
//! incremental forgets the table as it starts: nothing reads it before the new one is
//! committed, and a failed refresh is followed by a full one anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::compact::ServerId;
use super::nova::{Listed, ProjectWindow};
use super::servers::{self, Disagreements, ServerTable};
use super::{epoch, OpenstackError, OpenstackSource};
use crate::snapshot::{Project, Quota};

/// Ids named in a disagreement log line at most.
const FIRST_IDS: usize = 5;

/// Kept between refreshes.
#[derive(Debug, Default)]
pub(super) struct Kept {
    table: Option<ServerTable>,
    /// `now` of the last full listing.
    listed_at: Option<SystemTime>,
    /// Shared with every snapshot made from them.
    projects: Option<(SystemTime, Vec<Arc<Project>>)>,
    quotas: Option<(SystemTime, BTreeMap<String, Quota>)>,
}

/// The servers part of one refresh, not yet committed.
#[derive(Debug)]
pub(super) struct ServersRead {
    /// The window's usage (`None` for an empty window).
    usage: Option<Vec<ProjectWindow>>,
    /// A full listing, rebuilding the kept table at commit.
    listed: Option<Listing>,
    found: Option<Disagreements>,
}

/// A full listing not yet committed.
#[derive(Debug)]
struct Listing {
    table: ServerTable,
    /// The changes read after the listing (a reconciliation), merged again at commit: the
    /// listing may predate them.
    after: Vec<Listed>,
}

/// Whether something read at `last` is to be read again at `now`; a clock that went back
/// reads again.
fn due(last: Option<SystemTime>, now: SystemTime, every: Duration) -> bool {
    last.is_none_or(|t| now.duration_since(t).map_or(true, |age| age >= every))
}

impl Kept {
    /// Takes in a refresh that arrived whole; returns its window's usage and what its
    /// reconciliation found.
    pub(super) fn commit(
        &mut self,
        read: ServersRead,
        now: SystemTime,
    ) -> (Option<Vec<ProjectWindow>>, Option<Disagreements>) {
        if let Some(Listing { table, after }) = read.listed {
            let mut table = match self.table.take() {
                Some(kept) => kept.rebuilt(table),
                None => table,
            };
            table.merge(after);
            self.table = Some(table);
            self.listed_at = Some(now);
        }
        (read.usage, read.found)
    }

    /// A reconciliation's findings: the kept table (brought up to date with `before`) against
    /// Nova's `usage` of `window` and the full `listing`; `after` (the changes read after both)
    /// is merged into the table. A server that changed in between is not judged: Nova answered
    /// for one state of it, the listing for another. `None` without a kept table.
    fn judge(
        &mut self,
        before: &[Listed],
        after: &[Listed],
        listing: &ServerTable,
        usage: Option<&[ProjectWindow]>,
        (start, end): (i64, i64),
    ) -> Option<Disagreements> {
        let kept = self.table.as_mut()?;
        let moving = moved(before, after);
        let window = compare_window(kept, usage, start, end);
        kept.merge(after.to_vec());
        let (archived, untracked) = kept.membership(listing);
        let judged = |ids: Vec<String>| -> Vec<String> {
            ids.into_iter().filter(|id| !moving.contains(id)).collect()
        };
        Some(Disagreements {
            usage: judged(window),
            archived: judged(archived),
            untracked: judged(untracked),
        })
    }

    /// The kept table's next `changes-since` bound ([`ServerTable::changes_since`]); `None`
    /// without a table.
    fn bound(&self, cap: i64) -> Option<i64> {
        self.table.as_ref().map(|t| t.changes_since(cap))
    }

    /// The table (empty before the first listing).
    pub(super) fn table(&self) -> &ServerTable {
        static EMPTY: std::sync::OnceLock<ServerTable> = std::sync::OnceLock::new();
        self.table
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(ServerTable::default))
    }

    /// The accounting took in the metadata of the table's unnoted servers but `missing`.
    pub(super) fn metadata_noted(&mut self, missing: Vec<ServerId>) {
        if let Some(t) = &mut self.table {
            t.noted(missing);
        }
    }

    /// Makes the next refresh offer every server's metadata to the accounting.
    pub(super) fn renote_all(&mut self) {
        if let Some(t) = &mut self.table {
            t.renote_all();
        }
    }

    /// Makes the next refresh a reconciliation.
    pub(super) fn reconcile_next(&mut self) {
        self.listed_at = None;
    }

    /// Forgets the deleted servers counted up to `window_end` (seconds since 1970).
    pub(super) fn prune(&mut self, window_end: u64) {
        if let Some(t) = &mut self.table {
            t.prune(i64::try_from(window_end).unwrap_or(i64::MAX));
        }
    }
}

impl OpenstackSource {
    /// Keystone's projects, read again every `projects` interval.
    pub(super) async fn kept_projects(
        &mut self,
        now: SystemTime,
    ) -> Result<Vec<Arc<Project>>, OpenstackError> {
        let every = self.settings.cadence.projects;
        if let Some((at, projects)) = &self.kept.projects {
            if !due(Some(*at), now, every) {
                return Ok(projects.clone());
            }
        }
        let projects: Vec<Arc<Project>> =
            self.projects().await?.into_iter().map(Arc::new).collect();
        self.kept.projects = Some((now, projects.clone()));
        Ok(projects)
    }

    /// Quotas of `projects`: all of them every `quotas` interval, in between only those not
    /// read yet.
    pub(super) async fn kept_quotas(
        &mut self,
        projects: &[Arc<Project>],
        now: SystemTime,
    ) -> Result<BTreeMap<String, Quota>, OpenstackError> {
        let every = self.settings.cadence.quotas;
        let (at, mut known) = match &self.kept.quotas {
            Some((at, known)) if !due(Some(*at), now, every) => (*at, known.clone()),
            _ => (now, BTreeMap::new()),
        };
        let missing: Vec<Arc<Project>> = projects
            .iter()
            .filter(|p| !known.contains_key(&p.id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            known.extend(self.quotas(&missing).await?);
        }
        self.kept.quotas = Some((at, known.clone()));
        Ok(known)
    }

    /// The servers changed since the kept table's bound (capped at `cap`, seconds since
    /// 1970), merged into it; `None` without a table.
    async fn merge_changes(&mut self, cap: i64) -> Result<Option<Vec<Listed>>, OpenstackError> {
        let Some(bound) = self.kept.bound(cap) else {
            return Ok(None);
        };
        let changes = self.servers(Some(bound)).await?;
        if let Some(t) = &mut self.kept.table {
            t.merge(changes.clone());
        }
        Ok(Some(changes))
    }

    /// The servers and the window `[start, end)`: from a full listing and Nova's usage when
    /// the table is missing, reconciliation is due or the refresh is not incremental; else
    /// from the changes since the last refresh and the table.
    pub(super) async fn read_servers(
        &mut self,
        start: SystemTime,
        end: SystemTime,
        now: SystemTime,
    ) -> Result<ServersRead, OpenstackError> {
        let cadence = self.settings.cadence;
        let incremental = cadence.incremental && self.embeds_flavors().await?;
        let (start_s, end_s) = (secs(start), secs(end));
        let full = !incremental
            || self.kept.table.is_none()
            || due(self.kept.listed_at, now, cadence.reconcile);
        if full {
            if !incremental {
                self.kept.table = None;
            }
            // The kept table brought up to date before Nova's answer and the listing are
            // read...
            let before = self.merge_changes(start_s).await?.unwrap_or_default();
            let usage = if end > start {
                Some(self.usage(start, end).await?)
            } else {
                None
            };
            let table = self.listing().await?;
            let (found, after) = match self.kept.bound(start_s) {
                Some(bound) => {
                    // ...and again after them.
                    let after = self.servers(Some(bound)).await?;
                    let found = self.kept.judge(
                        &before,
                        &after,
                        &table,
                        usage.as_deref(),
                        (start_s, end_s),
                    );
                    (found, after)
                }
                None => (None, Vec::new()),
            };
            return Ok(ServersRead {
                usage,
                listed: Some(Listing { table, after }),
                found,
            });
        }
        self.merge_changes(start_s).await?;
        let usage = if end > start {
            match self.kept.table().window(start_s, end_s) {
                Ok(u) => Some(u),
                Err(why) => {
                    tracing::warn!(%why, "usage window not computable from the server table; asking Nova for it");
                    Some(self.usage(start, end).await?)
                }
            }
        } else {
            None
        };
        Ok(ServersRead {
            usage,
            listed: None,
            found: None,
        })
    }

    /// Counts and logs a reconciliation's disagreements.
    pub(super) fn report(&self, found: &Disagreements) {
        for (kind, ids) in found.kinds() {
            self.client.count_disagreements(kind, ids.len() as u64);
            if !ids.is_empty() {
                let first = ids[..ids.len().min(FIRST_IDS)].join(",");
                tracing::warn!(
                    kind,
                    servers = ids.len(),
                    %first,
                    "the server table disagreed with Nova at reconciliation; Nova's answer is applied"
                );
            }
        }
    }
}

/// Servers whose window usage from `table` differs from Nova's answer (nothing to compare
/// without a window, or when the table cannot compute it).
fn compare_window(
    table: &ServerTable,
    nova: Option<&[ProjectWindow]>,
    start: i64,
    end: i64,
) -> Vec<String> {
    match nova.map(|nova| (nova, table.window(start, end))) {
        Some((nova, Ok(ours))) => servers::compare_window(&ours, nova),
        _ => Vec::new(),
    }
}

/// Ids listed in `after` that `before` did not list with the same `updated`: changed while
/// the reconciliation read Nova.
fn moved(before: &[Listed], after: &[Listed]) -> BTreeSet<String> {
    let seen: BTreeMap<&ServerId, Option<i64>> =
        before.iter().map(|s| (&s.id, s.updated)).collect();
    after
        .iter()
        .filter(|s| seen.get(&s.id) != Some(&s.updated))
        .map(|s| s.id.to_text())
        .collect()
}

fn secs(t: SystemTime) -> i64 {
    i64::try_from(epoch(t)).unwrap_or(i64::MAX)
}
