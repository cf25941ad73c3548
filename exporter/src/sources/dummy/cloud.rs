//! The dummy cloud and its pure conversion to snapshots at a given moment.
//!
//! Usage follows Nova's definitions: a server counts from the later of its creation and the
//! accounting start until the earlier of its deletion and `now`. Guest counters grow at fixed
//! per-guest rates derived from the server id, so every run of the same cloud at the same
//! moment gives the same numbers, and later moments give larger counters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::legacy::{self, LegacyOptions, LegacyServer, ServerHours};
use crate::snapshot::{
    Allocation, BlockStats, DomainEvents, EventStream, Guest, GuestInfo, GuestState,
    GuestsSnapshot, Held, InterfaceStats, LifecycleEvent, MemoryStats, NovaMetadata, Project,
    ProjectUsage, ProjectsSnapshot, StoppedAges, UsageTotals, VcpuStats,
};
use crate::weights::Weights;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A whole fake site.
#[derive(Debug, Clone, PartialEq)]
pub struct Cloud {
    /// The accounting start: usage counts from here.
    pub usage_start: SystemTime,
    pub domains: Vec<Domain>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub id: String,
    pub name: String,
    pub projects: Vec<CloudProject>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CloudProject {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub flavor: Flavor,
    /// Lower-case Nova status.
    pub status: String,
    pub created: SystemTime,
    pub deleted: Option<SystemTime>,
    pub user: String,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flavor {
    pub name: String,
    pub vcpus: u64,
    pub ram_mb: u64,
    pub root_gb: u64,
    pub ephemeral_gb: u64,
}

/// Most vCPUs a dummy server may have: each running guest exports one series per vCPU.
pub const MAX_VCPUS: u64 = 4096;

impl Flavor {
    /// Why these sizes cannot be exported, if they cannot: more than `MAX_VCPUS` (4096) vCPUs, or
    /// memory or disk whose bytes do not fit 64 bits.
    pub fn check(&self) -> Result<(), String> {
        if self.vcpus > MAX_VCPUS {
            return Err(format!("vcpus {} is more than {MAX_VCPUS}", self.vcpus));
        }
        if self.ram_mb.checked_mul(MIB).is_none() {
            return Err(format!(
                "ram_mb {} is more bytes than 64 bits hold",
                self.ram_mb
            ));
        }
        let disk = self.root_gb.checked_add(self.ephemeral_gb);
        if disk.and_then(|gb| gb.checked_mul(GIB)).is_none() {
            return Err(format!(
                "disk {} + {} GiB is more bytes than 64 bits hold",
                self.root_gb, self.ephemeral_gb
            ));
        }
        Ok(())
    }
}

impl Server {
    /// Whether the server exists at `now`.
    pub fn exists(&self, now: SystemTime) -> bool {
        self.created <= now && self.deleted.is_none_or(|d| now < d)
    }

    /// Seconds the server counts in `[usage_start, now)`. A server in error never launched and
    /// counts nothing, as in Nova.
    fn seconds_in_window(&self, usage_start: SystemTime, now: SystemTime) -> f64 {
        if self.status == "error" {
            return 0.0;
        }
        let start = self.created.max(usage_start);
        let end = self.deleted.map_or(now, |d| d.min(now));
        end.duration_since(start).map_or(0.0, |d| d.as_secs_f64())
    }

    /// libvirt's view of the server, if it has a domain on a hypervisor.
    fn guest_state(&self) -> Option<GuestState> {
        match self.status.as_str() {
            "active" | "rescue" | "resize" | "verify_resize" | "migrating" | "reboot"
            | "hard_reboot" => Some(GuestState::Running),
            "paused" => Some(GuestState::Paused),
            "shutoff" | "suspended" => Some(GuestState::Shutoff),
            _ => None,
        }
    }
}

impl Cloud {
    /// Per-project usage at `now`; the legacy families as `legacy` says, weighted by
    /// `weights`.
    pub fn projects(
        &self,
        now: SystemTime,
        legacy: &LegacyOptions,
        weights: &Weights,
    ) -> ProjectsSnapshot {
        let mut projects = Vec::new();
        let mut legacy_series = Vec::new();
        let stopped_ages = StoppedAges::default();
        for domain in &self.domains {
            for p in &domain.projects {
                let mut usage = ProjectUsage {
                    project: Arc::new(Project {
                        id: p.id.clone(),
                        name: p.name.clone(),
                        domain_id: domain.id.clone(),
                        domain_name: domain.name.clone(),
                        enabled: p.enabled,
                    }),
                    totals: UsageTotals::default(),
                    allocation: Allocation::default(),
                    instances: BTreeMap::new(),
                    quota: None,
                    stopped: BTreeMap::new(),
                };
                let mut legacy_servers = Vec::with_capacity(p.servers.len());
                for s in &p.servers {
                    let seconds = s.seconds_in_window(self.usage_start, now);
                    let f = &s.flavor;
                    let disk_bytes = (f.root_gb + f.ephemeral_gb) * GIB;
                    usage.totals += UsageTotals {
                        vcpu_seconds: f.vcpus as f64 * seconds,
                        memory_byte_seconds: (f.ram_mb * MIB) as f64 * seconds,
                        disk_byte_seconds: disk_bytes as f64 * seconds,
                        instance_seconds: seconds,
                    };
                    let started_at = s
                        .created
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    legacy_servers.push(LegacyServer {
                        hours: ServerHours {
                            hours: seconds / 3600.0,
                            vcpus: f.vcpus,
                            memory_mb: f.ram_mb,
                        },
                        started_at,
                        metadata: &s.metadata,
                    });
                    if s.exists(now) {
                        *usage.instances.entry(s.status.clone()).or_default() += 1;
                        usage.allocation += Allocation {
                            vcpus: f.vcpus,
                            memory_bytes: f.ram_mb * MIB,
                            disk_bytes,
                        };
                        // No status history here: a stopped server has been so since created.
                        stopped_ages.add(
                            &mut usage.stopped,
                            &s.status,
                            now.duration_since(s.created).unwrap_or_default(),
                            Held {
                                instances: 1,
                                vcpus: f.vcpus,
                                memory_bytes: f.ram_mb * MIB,
                            },
                        );
                    }
                }
                legacy_series.extend(legacy::project_series(
                    &usage.project,
                    legacy_servers,
                    legacy,
                    weights,
                ));
                projects.push(usage);
            }
        }
        ProjectsSnapshot {
            projects,
            legacy: legacy_series,
        }
    }

    /// The live servers that have a libvirt domain, at most `limit` of them, as guests at `now`.
    pub fn guests(&self, now: SystemTime, limit: u64) -> GuestsSnapshot {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut guests = Vec::new();
        let mut sequence = 0u64;
        'all: for domain in &self.domains {
            for p in &domain.projects {
                for s in &p.servers {
                    sequence += 1;
                    if guests.len() >= limit {
                        break 'all;
                    }
                    if !s.exists(now) {
                        continue;
                    }
                    if let Some(state) = s.guest_state() {
                        guests.push(guest(s, p, sequence, state, now));
                    }
                }
            }
        }
        let events = guests.iter().map(dummy_events).collect();
        GuestsSnapshot {
            up: true,
            guests,
            events,
            departed: Vec::new(),
            event_stream: EventStream {
                up: true,
                reconnects: 0,
            },
        }
    }
}

/// A guest's lifecycle events as the libvirt source would have counted them since its start:
/// the alert pairs at 0, one boot, and one user's stop for a guest that is shut off.
fn dummy_events(g: &Guest) -> DomainEvents {
    let mut counts: Vec<(LifecycleEvent, u64)> = LifecycleEvent::ALERT_PAIRS
        .iter()
        .map(|p| (*p, 0))
        .collect();
    counts.push((LifecycleEvent::new("started", "booted"), 1));
    if g.state == GuestState::Shutoff {
        counts.push((LifecycleEvent::new("stopped", "destroyed"), 1));
    }
    counts.sort();
    DomainEvents {
        domain: g.name.clone(),
        counts,
    }
}

/// A stable number in `[0, 1)` from a server id and a purpose (FNV-1a).
fn unit_hash(id: &str, salt: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain([0]).chain(salt.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn guest(s: &Server, p: &CloudProject, sequence: u64, state: GuestState, now: SystemTime) -> Guest {
    let f = &s.flavor;
    let ram = f.ram_mb * MIB;
    let uptime = now
        .duration_since(s.created)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    let openstack = Some(NovaMetadata {
        instance_id: s.id.clone(),
        instance_name: s.name.clone(),
        flavor_name: f.name.clone(),
        project_id: p.id.clone(),
        project_name: p.name.clone(),
        user_id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, s.user.as_bytes())
            .simple()
            .to_string(),
        user_name: s.user.clone(),
    });
    let mut g = Guest {
        name: format!("instance-{sequence:08x}"),
        uuid: s.id.clone(),
        state,
        openstack,
        info: GuestInfo {
            virtual_cpus: f.vcpus,
            maximum_memory_bytes: ram,
            memory_usage_bytes: ram,
            cpu_time_seconds: 0.0,
        },
        vcpus: Vec::new(),
        memory: None,
        blocks: Vec::new(),
        interfaces: Vec::new(),
    };
    if state != GuestState::Running {
        // Like libvirt: a guest that is not running has no balloon, vCPU or I/O statistics.
        return g;
    }
    let id = &s.id;
    let cpu_share = 0.05 + 0.9 * unit_hash(id, "cpu");
    let cpu_time = f.vcpus as f64 * cpu_share * uptime;
    g.info.cpu_time_seconds = cpu_time;
    g.vcpus = (0..f.vcpus)
        .map(|v| VcpuStats {
            vcpu: u32::try_from(v).unwrap_or(u32::MAX),
            time_seconds: cpu_time / f.vcpus as f64,
        })
        .collect();
    let used = 0.2 + 0.7 * unit_hash(id, "memory");
    let available = ram as f64 * 0.97;
    g.memory = Some(MemoryStats {
        actual_balloon_bytes: Some(ram),
        available_bytes: Some(available as u64),
        unused_bytes: Some((available * (1.0 - used) * 0.5) as u64),
        usable_bytes: Some((available * (1.0 - used)) as u64),
        rss_bytes: Some((ram as f64 * used) as u64 + 48 * MIB),
    });
    let disks = [("vda", f.root_gb), ("vdb", f.ephemeral_gb)];
    for (device, size_gb) in disks.into_iter().filter(|(_, gb)| *gb > 0) {
        let read = (uptime * 1024.0 * (1.0 + 1023.0 * unit_hash(id, device))) as u64;
        let write = (uptime * 512.0 * (1.0 + 1023.0 * unit_hash(id, "write"))) as u64;
        let read_requests = read / (16 * 1024);
        let write_requests = write / (8 * 1024);
        g.blocks.push(BlockStats {
            target_device: device.to_string(),
            read_bytes: read,
            write_bytes: write,
            read_requests,
            write_requests,
            read_time_seconds: read_requests as f64 * 0.0004,
            write_time_seconds: write_requests as f64 * 0.0009,
            capacity_bytes: size_gb * GIB,
        });
    }
    let rx = (uptime * 2048.0 * (1.0 + 255.0 * unit_hash(id, "rx"))) as u64;
    let tx = (uptime * 1024.0 * (1.0 + 255.0 * unit_hash(id, "tx"))) as u64;
    g.interfaces.push(InterfaceStats {
        target_device: format!("tap{}", id.get(..11).unwrap_or(id)),
        receive_bytes: rx,
        receive_packets: rx / 900,
        receive_errors: 0,
        receive_drops: rx / 90_000_000,
        transmit_bytes: tx,
        transmit_packets: tx / 700,
        transmit_errors: 0,
        transmit_drops: 0,
    });
    g
}
