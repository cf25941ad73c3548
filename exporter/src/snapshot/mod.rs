//! The domain model every source produces and the renderer consumes.
//!
//! Plain data, no I/O and no metric names: a source turns what it read (OpenStack APIs, libvirt,
//! the dummy cloud) into these types, and `render` turns them into exposition text. Keeping the
//! two apart is what lets the dummy source and the real sources share every metric family.
//!
//! [`health`] holds what the exporter reports about itself: refresh status, request
//! statistics, the accounting start.

pub mod health;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::weights::Weights;

/// What one refresh of one source produced.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceData {
    /// Per-project usage of an OpenStack site (the OpenStack source, or the dummy cloud).
    Projects(ProjectsSnapshot),
    /// Guests of one hypervisor (the libvirt source).
    Guests(GuestsSnapshot),
    /// The dummy cloud: its projects and the guests of its live servers.
    Cloud {
        projects: ProjectsSnapshot,
        guests: GuestsSnapshot,
    },
    /// The credit weights in force.
    Weights(std::sync::Arc<Weights>),
}

/// Per-project usage of a whole site.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectsSnapshot {
    pub projects: Vec<ProjectUsage>,
    /// The original exporter's families: usually one series per project, but the SimpleVM
    /// project is split by portal project (see `legacy`). Empty while configured credit
    /// weights have not loaded: then the families are withheld.
    pub legacy: Vec<LegacySeries>,
}

/// A Keystone project with the names every series carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub domain_name: String,
    pub enabled: bool,
}

/// Everything exported about one project.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectUsage {
    /// Shared with the source's project list and the legacy series: a refresh copies
    /// pointers, not names.
    pub project: Arc<Project>,
    /// Usage accumulated since the accounting start.
    pub totals: UsageTotals,
    /// Resources held now by the project's existing servers.
    pub allocation: Allocation,
    /// Existing servers by lower-case Nova status (`active`, `shutoff`, `error`, ...).
    pub instances: BTreeMap<String, u64>,
    /// Compute quota limits, when the source reads them; `None` inside means unlimited.
    pub quota: Option<Quota>,
    /// Servers long in a stopped or broken status, by cumulative age bucket; only non-empty
    /// buckets are present.
    pub stopped: BTreeMap<StoppedBucket, Held>,
}

/// A cumulative bucket of long-stopped servers: those in `status` (lower case, as in
/// [`ProjectUsage::instances`]) for longer than `older_than`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoppedBucket {
    pub status: String,
    pub older_than: std::time::Duration,
}

/// Nova statuses of servers that run nothing but may still hold quota, lower case.
pub const STOPPED_STATUSES: [&str; 4] = ["shutoff", "shelved", "shelved_offloaded", "error"];

/// The cumulative age bounds of the stopped-servers buckets: at least one, each above zero,
/// strictly increasing (validated once, at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedAges(Vec<std::time::Duration>);

/// Most buckets accepted; each one multiplies the series per project and status.
pub const MAX_STOPPED_AGES: usize = 10;

impl Default for StoppedAges {
    /// 1 day, 7 days, 30 days, 90 days.
    fn default() -> Self {
        Self(
            [1, 7, 30, 90]
                .map(|d| std::time::Duration::from_secs(d * 86_400))
                .to_vec(),
        )
    }
}

impl StoppedAges {
    /// The bounds, or why they cannot be buckets.
    pub fn try_new(ages: Vec<std::time::Duration>) -> Result<Self, String> {
        if ages.is_empty() {
            return Err("needs at least one age".into());
        }
        if ages.len() > MAX_STOPPED_AGES {
            return Err(format!(
                "at most {MAX_STOPPED_AGES} ages, got {}",
                ages.len()
            ));
        }
        if ages.iter().any(|a| a.as_secs() == 0) {
            return Err("ages must be at least one second".into());
        }
        if ages.windows(2).any(|w| w[0] >= w[1]) {
            return Err("ages must be strictly increasing, e.g. 1d,7d,30d,90d".into());
        }
        Ok(Self(ages))
    }

    /// The bounds, ascending.
    pub fn bounds(&self) -> &[std::time::Duration] {
        &self.0
    }

    /// Counts a server in `status` (lower case) for `age`, holding `held`, in every bucket
    /// it is older than (the buckets are cumulative). Other statuses count nowhere.
    pub fn add(
        &self,
        buckets: &mut BTreeMap<StoppedBucket, Held>,
        status: &str,
        age: std::time::Duration,
        held: Held,
    ) {
        if !STOPPED_STATUSES.contains(&status) {
            return;
        }
        for bound in self.0.iter().filter(|b| age > **b) {
            *buckets
                .entry(StoppedBucket {
                    status: status.to_owned(),
                    older_than: *bound,
                })
                .or_default() += held;
        }
    }
}

/// What the servers of one bucket count and still hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub instances: u64,
    pub vcpus: u64,
    pub memory_bytes: u64,
}

/// Saturating: sizes come from outside and may be absurd.
impl std::ops::AddAssign for Held {
    fn add_assign(&mut self, other: Self) {
        self.instances = self.instances.saturating_add(other.instances);
        self.vcpus = self.vcpus.saturating_add(other.vcpus);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
    }
}

/// A project's compute quota limits; `None` is unlimited (Nova's -1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub vcpus: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub instances: Option<u64>,
}

/// One series of `project_vcpu_usage` and `project_mb_usage`.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacySeries {
    /// The labels: for a SimpleVM portal project, the OpenStack project with the portal
    /// project's name.
    pub project: Arc<Project>,
    pub usage: LegacyUsage,
}

/// Usage integrals since the accounting start, with Nova's definitions, in base units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageTotals {
    pub vcpu_seconds: f64,
    pub memory_byte_seconds: f64,
    pub disk_byte_seconds: f64,
    pub instance_seconds: f64,
}

impl std::ops::AddAssign for UsageTotals {
    fn add_assign(&mut self, other: Self) {
        self.vcpu_seconds += other.vcpu_seconds;
        self.memory_byte_seconds += other.memory_byte_seconds;
        self.disk_byte_seconds += other.disk_byte_seconds;
        self.instance_seconds += other.instance_seconds;
    }
}

/// Resources held at this moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocation {
    pub vcpus: u64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

/// Saturating: sizes come from outside (Nova, dummy files) and may be absurd.
impl std::ops::AddAssign for Allocation {
    fn add_assign(&mut self, other: Self) {
        self.vcpus = self.vcpus.saturating_add(other.vcpus);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
        self.disk_bytes = self.disk_bytes.saturating_add(other.disk_bytes);
    }
}

/// `project_vcpu_usage` and `project_mb_usage` as the original exporter computes them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LegacyUsage {
    pub vcpu_hours: f64,
    pub memory_hours: f64,
}

impl std::ops::AddAssign for LegacyUsage {
    fn add_assign(&mut self, other: Self) {
        self.vcpu_hours += other.vcpu_hours;
        self.memory_hours += other.memory_hours;
    }
}

/// The guests of one hypervisor as libvirt reports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestsSnapshot {
    /// Whether the last refresh reached libvirt.
    pub up: bool,
    pub guests: Vec<Guest>,
    /// Lifecycle events counted since start, per domain: the present ones and those gone for
    /// less than the grace period.
    pub events: Vec<DomainEvents>,
    /// Domains gone from libvirt within the grace period, with their last Nova metadata, so
    /// that the per-project join still finds their last events.
    pub departed: Vec<DepartedGuest>,
    /// The lifecycle event stream of this host.
    pub event_stream: EventStream,
}

/// The lifecycle events of one domain, counted since the exporter started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainEvents {
    pub domain: String,
    /// Count per event and reason, sorted; alert pairs are present at 0 once the domain is seen.
    pub counts: Vec<(LifecycleEvent, u64)>,
}

/// One lifecycle event kind: libvirt's event and its detail, as label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LifecycleEvent {
    /// `started`, `suspended`, `resumed`, `stopped`, `shutdown`, `pmsuspended`, `crashed`.
    pub event: &'static str,
    /// libvirt's detail: `booted`, `destroyed`, `failed`, `crashed`, `migrated`, `saved`, ...
    pub reason: &'static str,
}

impl LifecycleEvent {
    /// The pairs the site alerts use: a crash, or a stop no user asked for. Exported at 0 as
    /// soon as a domain is seen, so that `increase()` sees its first crash.
    pub const ALERT_PAIRS: [Self; 4] = [
        Self::new("crashed", "crashloaded"),
        Self::new("crashed", "panicked"),
        Self::new("stopped", "crashed"),
        Self::new("stopped", "failed"),
    ];

    pub const fn new(event: &'static str, reason: &'static str) -> Self {
        Self { event, reason }
    }
}

/// A domain gone from libvirt, still exported during the grace period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepartedGuest {
    pub name: String,
    pub openstack: Option<NovaMetadata>,
}

/// The health of the lifecycle event stream (libvirt's domain event callback).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStream {
    /// Whether the callback is registered on a live connection.
    pub up: bool,
    /// Times the stream was lost and registered again on a new connection.
    pub reconnects: u64,
}

/// libvirt's `virDomainState`, exported as its numeric code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestState {
    NoState = 0,
    Running = 1,
    Blocked = 2,
    Paused = 3,
    Shutdown = 4,
    Shutoff = 5,
    Crashed = 6,
    Suspended = 7,
}

impl GuestState {
    /// Maps libvirt's numeric state; unknown codes become `NoState`.
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => Self::Running,
            2 => Self::Blocked,
            3 => Self::Paused,
            4 => Self::Shutdown,
            5 => Self::Shutoff,
            6 => Self::Crashed,
            7 => Self::Suspended,
            _ => Self::NoState,
        }
    }

    pub fn code(self) -> u32 {
        self as u32
    }
}

/// One libvirt domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Guest {
    /// libvirt domain name (`instance-0000002a` on a Nova compute host).
    pub name: String,
    pub uuid: String,
    pub state: GuestState,
    pub openstack: Option<NovaMetadata>,
    pub info: GuestInfo,
    /// Per-vCPU time; empty for guests that are not running.
    pub vcpus: Vec<VcpuStats>,
    /// Balloon statistics; `None` when the guest has no balloon or is not running.
    pub memory: Option<MemoryStats>,
    pub blocks: Vec<BlockStats>,
    pub interfaces: Vec<InterfaceStats>,
}

/// The `<nova:instance>` metadata Nova writes into each domain's XML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NovaMetadata {
    pub instance_id: String,
    pub instance_name: String,
    pub flavor_name: String,
    pub project_id: String,
    pub project_name: String,
    pub user_id: String,
    pub user_name: String,
}

/// `virDomainGetInfo`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GuestInfo {
    pub virtual_cpus: u64,
    pub maximum_memory_bytes: u64,
    pub memory_usage_bytes: u64,
    pub cpu_time_seconds: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VcpuStats {
    pub vcpu: u32,
    pub time_seconds: f64,
}

/// Balloon statistics in bytes; a field is `None` when the driver does not report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub actual_balloon_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    pub unused_bytes: Option<u64>,
    pub usable_bytes: Option<u64>,
    pub rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockStats {
    /// Guest-side device name (`vda`).
    pub target_device: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_requests: u64,
    pub write_requests: u64,
    pub read_time_seconds: f64,
    pub write_time_seconds: f64,
    pub capacity_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// Host-side device name (`tap1234abcd-12`).
    pub target_device: String,
    pub receive_bytes: u64,
    pub receive_packets: u64,
    pub receive_errors: u64,
    pub receive_drops: u64,
    pub transmit_bytes: u64,
    pub transmit_packets: u64,
    pub transmit_errors: u64,
    pub transmit_drops: u64,
}
