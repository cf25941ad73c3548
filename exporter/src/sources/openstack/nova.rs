//! Nova API JSON (usage, servers) and its pure conversion; no I/O here.
//!
//! Shapes follow the responses recorded from a real Nova in `shared/openstack/samples`.
//! Unknown fields are ignored; missing required ones are errors for the refresh that read them.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::compact::{Metadata, ServerId, Shared};
use crate::snapshot::Allocation;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// One page of `GET /os-simple-tenant-usage?detailed=1` (microversion >= 2.40).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct UsagePage {
    pub tenant_usages: Vec<TenantUsage>,
    #[serde(default)]
    pub tenant_usages_links: Vec<Link>,
}

/// One tenant's part of a usage page. Paging is over servers, so one tenant can appear on
/// several pages, each with a partial list.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct TenantUsage {
    pub tenant_id: String,
    #[serde(default)]
    pub server_usages: Vec<ServerUsage>,
}

/// One server's usage in the queried window; Nova clips `hours` to the window.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ServerUsage {
    pub instance_id: String,
    #[serde(default)]
    pub name: String,
    pub hours: f64,
    pub vcpus: u64,
    pub memory_mb: u64,
    pub local_gb: u64,
    #[serde(default)]
    pub flavor: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub ended_at: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
}

/// One project's servers in a usage window, in the form the accounting adds them: Nova's
/// [`TenantUsage`] without what is not accounted (server name, flavor name, state, end).
/// Pages split tenants, so a window may list one project in several groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectWindow {
    pub project_id: String,
    pub servers: Vec<ServerWindow>,
}

/// One server's usage in one window, as the accounting uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerWindow {
    pub id: ServerId,
    pub hours: f64,
    pub vcpus: u64,
    pub memory_mb: u64,
    pub local_gb: u64,
    /// `started_at` in seconds since 1970 ([`epoch_seconds`] of Nova's text); 0.0 when
    /// absent or unreadable.
    pub started_at: f64,
}

impl ServerWindow {
    /// The compact form of one server of Nova's answer.
    pub fn from_usage(u: &ServerUsage) -> Self {
        Self {
            id: ServerId::new(&u.instance_id),
            hours: u.hours,
            vcpus: u.vcpus,
            memory_mb: u.memory_mb,
            local_gb: u.local_gb,
            started_at: u
                .started_at
                .as_deref()
                .and_then(epoch_seconds)
                .unwrap_or(0.0),
        }
    }

    /// Usage integrals over the window, as [`server_totals`].
    pub fn totals(&self) -> crate::snapshot::UsageTotals {
        totals(self.hours, self.vcpus, self.memory_mb, self.local_gb)
    }
}

/// Nova's answer in the accounting's form, groups in Nova's order (a page is converted as it
/// arrives, so its strings are freed with it).
pub fn compact_usage(tenants: Vec<TenantUsage>) -> Vec<ProjectWindow> {
    tenants
        .into_iter()
        .map(|t| ProjectWindow {
            servers: t
                .server_usages
                .iter()
                .map(ServerWindow::from_usage)
                .collect(),
            project_id: t.tenant_id,
        })
        .collect()
}

/// A `started_at` held as microseconds since 1970 in seconds, bit-identical to
/// [`epoch_seconds`] of the text Nova writes for it ([`usage_time`]); negative values are
/// clamped to 1970 as [`usage_time`] does.
pub fn started_at_seconds(micros: i64) -> f64 {
    Duration::from_micros(micros.max(0).unsigned_abs()).as_secs_f64()
}

/// A `links` entry (`rel: next` carries the following page).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Link {
    pub rel: String,
    pub href: String,
}

/// One page of `GET /servers/detail?all_tenants=1` (flavor embedded since microversion 2.47).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ServersPage {
    pub servers: Vec<Server>,
    #[serde(default)]
    pub servers_links: Vec<Link>,
}

/// A server of `/servers/detail`: an existing one, or (with `changes-since`) a deleted one,
/// `status: DELETED`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Server {
    pub id: String,
    pub tenant_id: String,
    pub status: String,
    pub flavor: ServerFlavor,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Last change of the server (`2026-11-22T14:45:50Z`, Nova's clock, whole seconds); any
    /// update moves it.
    #[serde(default)]
    pub updated: Option<String>,
    #[serde(default)]
    pub name: String,
    /// Nova's `launched_at` (`2026-11-22T14:45:59.000000`): set at boot and again at a
    /// resize, a resize revert and an unshelve; `None` for a server that never launched.
    #[serde(rename = "OS-SRV-USG:launched_at", default)]
    pub launched_at: Option<String>,
    /// Nova's `terminated_at`: set at deletion (and soft deletion).
    #[serde(rename = "OS-SRV-USG:terminated_at", default)]
    pub terminated_at: Option<String>,
    /// Nova's `vm_state` (`active`, `stopped`, `shelved_offloaded`, ...): the usage `state`
    /// of a server that has no `terminated_at`.
    #[serde(rename = "OS-EXT-STS:vm_state", default)]
    pub vm_state: Option<String>,
}

/// A server's flavor: embedded since microversion 2.47, a reference to the flavors list before.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ServerFlavor {
    Embedded(EmbeddedFlavor),
    Reference { id: String },
}

/// One page of `GET /flavors/detail?is_public=None` (every flavor, private ones too).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct FlavorsPage {
    pub flavors: Vec<Flavor>,
    #[serde(default)]
    pub flavors_links: Vec<Link>,
}

/// A flavor of the flavors list.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Flavor {
    pub id: String,
    pub vcpus: u64,
    /// MiB.
    pub ram: u64,
    /// Root disk, GiB.
    pub disk: u64,
    /// GiB.
    #[serde(rename = "OS-FLV-EXT-DATA:ephemeral", default)]
    pub ephemeral: u64,
}

/// Flavor sizes by id, for servers that only reference their flavor.
pub fn flavor_sizes(flavors: &[Flavor]) -> BTreeMap<String, Sizes> {
    flavors
        .iter()
        .map(|f| {
            (
                f.id.clone(),
                Sizes {
                    vcpus: f.vcpus,
                    ram: f.ram,
                    disk: f.disk,
                    ephemeral: f.ephemeral,
                },
            )
        })
        .collect()
}

/// The flavor as embedded in a server since microversion 2.47.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct EmbeddedFlavor {
    pub vcpus: u64,
    /// MiB.
    pub ram: u64,
    /// Root disk, GiB.
    pub disk: u64,
    /// GiB.
    #[serde(default)]
    pub ephemeral: u64,
    /// The flavor's name (the usage answer's `flavor`).
    #[serde(default)]
    pub original_name: Option<String>,
}

/// A flavor's sizes, as a server is accounted and allocates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    pub vcpus: u64,
    /// MiB.
    pub ram: u64,
    /// Root disk, GiB.
    pub disk: u64,
    /// GiB.
    pub ephemeral: u64,
}

impl From<&EmbeddedFlavor> for Sizes {
    fn from(f: &EmbeddedFlavor) -> Self {
        Self {
            vcpus: f.vcpus,
            ram: f.ram,
            disk: f.disk,
            ephemeral: f.ephemeral,
        }
    }
}

/// A listed server's size: its embedded flavor's, or the id of the flavor it references.
#[derive(Debug, Clone, PartialEq)]
pub enum ListedSize {
    Embedded(Sizes),
    Reference(Arc<str>),
}

/// A server of `/servers/detail` in the form the refresh keeps it between refreshes: the id in
/// 16 bytes, project, status and metadata shared with the other servers of the table, sizes
/// and times as integers. What nothing uses (names, flavor name, `vm_state`) is dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub id: ServerId,
    pub project: Arc<str>,
    /// As Nova wrote it (any case).
    pub status: Arc<str>,
    pub size: ListedSize,
    pub metadata: Arc<Metadata>,
    /// `updated`, whole seconds since 1970 (Nova's clock); `None` when absent or not a time.
    pub updated: Option<i64>,
    /// `launched_at`, microseconds since 1970 ([`epoch_micros`]); `Err` holds a text that is
    /// not a time.
    pub launched: Result<Option<i64>, Box<str>>,
    /// `terminated_at`, as `launched`.
    pub terminated: Result<Option<i64>, Box<str>>,
}

impl Listed {
    /// The compact form of `s`, its strings and metadata shared through `values`.
    pub fn new(s: Server, values: &mut ListedValues) -> Self {
        let time = |text: Option<String>| match text {
            None => Ok(None),
            Some(t) => epoch_micros(&t).map(Some).ok_or_else(|| t.into_boxed_str()),
        };
        Self {
            id: ServerId::new(&s.id),
            project: values.strings.get(&s.tenant_id, |v: &str| Arc::from(v)),
            status: values.strings.get(&s.status, |v: &str| Arc::from(v)),
            size: match &s.flavor {
                ServerFlavor::Embedded(f) => ListedSize::Embedded(f.into()),
                ServerFlavor::Reference { id } => {
                    ListedSize::Reference(values.strings.get(id, |v: &str| Arc::from(v)))
                }
            },
            metadata: values.metadata.get(&s.metadata, |m| Arc::new(m.clone())),
            updated: s
                .updated
                .as_deref()
                .and_then(epoch_seconds)
                .filter(|u| u.is_finite())
                .map(|u| u as i64),
            launched: time(s.launched_at),
            terminated: time(s.terminated_at),
        }
    }

    /// `status` is DELETED (any case): listed by `changes-since` after its deletion.
    pub fn deleted(&self) -> bool {
        self.status.eq_ignore_ascii_case("deleted")
    }

    /// Its sizes: embedded (microversion >= 2.47) or from `flavors`; `None` when its flavor
    /// is gone from the list.
    pub fn sizes(&self, flavors: &BTreeMap<String, Sizes>) -> Option<Sizes> {
        match &self.size {
            ListedSize::Embedded(f) => Some(*f),
            ListedSize::Reference(id) => flavors.get(&**id).copied(),
        }
    }
}

/// The values listed servers share: project ids, statuses and flavor ids, metadata maps.
#[derive(Debug, Clone, Default)]
pub struct ListedValues {
    strings: Shared<str>,
    metadata: Shared<Metadata>,
}

impl ListedValues {
    /// Makes `l` hold this set's copies (a server converted with another set).
    pub fn adopt(&mut self, l: &mut Listed) {
        self.strings.adopt(&mut l.project);
        self.strings.adopt(&mut l.status);
        if let ListedSize::Reference(id) = &mut l.size {
            self.strings.adopt(id);
        }
        self.metadata.adopt(&mut l.metadata);
    }

    /// Forgets the values no server holds any more.
    pub fn forget_unused(&mut self) {
        self.strings.forget_unused();
        self.metadata.forget_unused();
    }
}

/// Servers of a listing in compact form (values shared within the listing).
pub fn compact_servers(servers: Vec<Server>) -> Vec<Listed> {
    let mut values = ListedValues::default();
    servers
        .into_iter()
        .map(|s| Listed::new(s, &mut values))
        .collect()
}

/// `GET /os-quota-sets/{project}/detail`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct QuotaDetail {
    pub quota_set: QuotaSet,
}

/// The compute quota items exported.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct QuotaSet {
    pub cores: QuotaItem,
    /// MiB.
    pub ram: QuotaItem,
    pub instances: QuotaItem,
}

/// One quota item; `limit` -1 is unlimited.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
pub struct QuotaItem {
    pub limit: i64,
}

/// Limits in base units; unlimited (any negative limit) becomes `None`.
pub fn quota(set: &QuotaSet) -> crate::snapshot::Quota {
    let limit = |i: QuotaItem| u64::try_from(i.limit).ok();
    crate::snapshot::Quota {
        vcpus: limit(set.cores),
        memory_bytes: limit(set.ram).map(|mb| mb.saturating_mul(MIB)),
        instances: limit(set.instances),
    }
}

/// The marker of the `rel: next` link, if there is a next page.
pub fn next_marker(links: &[Link]) -> Option<String> {
    let next = links.iter().find(|l| l.rel == "next")?;
    let query = next.href.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "marker").then(|| v.to_owned())
    })
}

/// Truncates to whole seconds: window ends are always whole seconds, so `[a, b)` and `[b, c)`
/// neither overlap nor leave a gap in what Nova is asked.
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Nova's `start`/`end` query format: `2026-11-21T00:00:00`, UTC, no zone, whole seconds.
pub fn query_time(t: SystemTime) -> String {
    let mut s = humantime::format_rfc3339_seconds(whole_seconds(t)).to_string();
    s.pop(); // the trailing `Z`
    s
}

/// The `changes-since` parameter for `secs` since 1970: `2026-11-22T14:45:00Z`.
pub fn changes_since_time(secs: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(secs.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Seconds since 1970 of a Nova timestamp (`2026-11-20T12:00:00.000000`, UTC without a
/// zone; an explicit `Z` or offset is accepted too), read by `crate::dates`.
pub fn epoch_seconds(text: &str) -> Option<f64> {
    let at = crate::dates::parse(text).ok()?;
    at.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
}

/// Microseconds since 1970 of a Nova timestamp, as Nova compares them (its times carry
/// microseconds; the database keeps whole seconds).
pub fn epoch_micros(text: &str) -> Option<i64> {
    let at = crate::dates::parse(text).ok()?;
    let d = at.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_micros()).ok()
}

/// Nova's usage time format (`started_at`, `ended_at`): `2026-11-22T14:45:42.000000`.
pub fn usage_time(micros: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_micros(micros.max(0).unsigned_abs());
    let mut s = humantime::format_rfc3339_micros(at).to_string();
    s.pop(); // the trailing `Z`
    s
}

/// Usage integrals of one server over one window, Nova's definitions, base units.
pub fn server_totals(u: &ServerUsage) -> crate::snapshot::UsageTotals {
    totals(u.hours, u.vcpus, u.memory_mb, u.local_gb)
}

fn totals(hours: f64, vcpus: u64, memory_mb: u64, local_gb: u64) -> crate::snapshot::UsageTotals {
    let seconds = if hours.is_finite() && hours > 0.0 {
        hours * 3600.0
    } else {
        0.0
    };
    crate::snapshot::UsageTotals {
        vcpu_seconds: seconds * vcpus as f64,
        // In floats: sizes from Nova can be any u64, and their bytes need not fit one.
        memory_byte_seconds: seconds * (memory_mb as f64 * MIB as f64),
        disk_byte_seconds: seconds * (local_gb as f64 * GIB as f64),
        instance_seconds: seconds,
    }
}

/// Per project: what its existing servers allocate, and how many there are by status.
pub type CurrentState = BTreeMap<String, (Allocation, BTreeMap<String, u64>)>;

/// What existing servers hold now, per project: allocation and count by lower-case status.
/// A server that references its flavor (microversion < 2.47) takes the size from `flavors`;
/// one whose flavor is gone from the list counts as a server but allocates nothing, and its id
/// is returned so the caller can say so.
pub fn current_state<'a>(
    servers: impl IntoIterator<Item = &'a Listed>,
    flavors: &BTreeMap<String, Sizes>,
) -> (CurrentState, Vec<String>) {
    // Servers come in id order, not by project. They are gathered by the address of their
    // shared project id (one copy per table), statuses by index; equal ids held in different
    // copies are merged when ordered at the end.
    let mut by_project: HashMap<*const u8, (&str, Allocation, Vec<u64>)> = HashMap::new();
    let mut unknown = Vec::new();
    // Distinct raw statuses (a handful), as listed and in lower case.
    let mut statuses: Vec<(&Arc<str>, String)> = Vec::new();
    for s in servers {
        let status = match statuses
            .iter()
            .position(|(raw, _)| Arc::ptr_eq(raw, &s.status) || raw.as_ref() == s.status.as_ref())
        {
            Some(i) => i,
            None => {
                statuses.push((&s.status, s.status.to_lowercase()));
                statuses.len() - 1
            }
        };
        let entry = by_project
            .entry(Arc::as_ptr(&s.project).cast::<u8>())
            .or_insert_with(|| (&s.project, Allocation::default(), Vec::new()));
        match s.sizes(flavors) {
            // Saturating: sizes from Nova can be any u64.
            Some(f) => {
                entry.1 += Allocation {
                    vcpus: f.vcpus,
                    memory_bytes: f.ram.saturating_mul(MIB),
                    disk_bytes: f.disk.saturating_add(f.ephemeral).saturating_mul(GIB),
                }
            }
            None => unknown.push(s.id.to_text()),
        }
        if entry.2.len() <= status {
            entry.2.resize(status + 1, 0);
        }
        entry.2[status] += 1;
    }
    let mut out = CurrentState::new();
    for (_, (project, allocation, counts)) in by_project {
        let (a, by_status) = out.entry(project.to_owned()).or_default();
        *a += allocation;
        for (i, n) in counts.into_iter().enumerate().filter(|(_, n)| *n > 0) {
            *by_status.entry(statuses[i].1.clone()).or_default() += n;
        }
    }
    (out, unknown)
}

#[cfg(test)]
#[path = "nova/tests.rs"]
pub(crate) mod tests;
