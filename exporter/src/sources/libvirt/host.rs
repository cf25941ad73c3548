//! The blocking side of the libvirt source: one read-only connection, one refresh at a time.
//!
//! [`Host::refresh`] runs on the blocking pool (see `source`). It (re)connects read-only with
//! backoff, makes one bulk `virConnectGetAllDomainStats` call with NOWAIT, fetches the XML of
//! new or changed domains (cached by UUID; a running domain counts as changed when its name or
//! its run id changes, which a redefinition by Nova comes with; an inactive domain's XML is read
//! on every refresh), and assembles the guests.
//! A libvirt that cannot be reached gives `up: false` and no guests; one guest failing is
//! logged and skipped, never the whole refresh.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::error::ErrorNumber;
use virt::sys;

use super::assemble::{assemble, CallError, PerDomain, Support};
use super::bulk;
use super::events::{self, Registration};
use super::lifecycle::EventBook;
use super::metadata::{self, DomainXml};
use super::params::{self, Decoded};
use crate::snapshot::{
    BlockStats, EventStream, Guest, GuestInfo, GuestState, GuestsSnapshot, InterfaceStats,
    MemoryStats, VcpuStats,
};

/// Groups asked of the bulk call.
const STATS: u32 = sys::VIR_DOMAIN_STATS_STATE
    | sys::VIR_DOMAIN_STATS_CPU_TOTAL
    | sys::VIR_DOMAIN_STATS_BALLOON
    | sys::VIR_DOMAIN_STATS_VCPU
    | sys::VIR_DOMAIN_STATS_INTERFACE
    | sys::VIR_DOMAIN_STATS_BLOCK;
/// Skip a guest's job-bound stats rather than wait for its job lock.
const FLAGS: u32 = sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT;

/// Longest pause between connection attempts after repeated failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(120);

/// Something that produces one guests snapshot, blocking: the real [`Host`], or a test fake.
pub trait Blocking: Send + 'static {
    fn refresh(&mut self) -> GuestsSnapshot;
}

#[derive(Debug)]
struct Cached {
    name: String,
    id: Option<u32>,
    xml: DomainXml,
}

/// A libvirt connection and what is cached about its domains.
#[derive(Debug)]
pub struct Host {
    uri: String,
    conn: Option<Connect>,
    cache: HashMap<String, Cached>,
    failures: u32,
    retry_at: Option<Instant>,
    /// Domain XMLs fetched so far (the cache's misses).
    xml_fetches: u64,
    /// Whether to pass NOWAIT; cleared for a libvirt older than 4.5 that rejects it.
    nowait: bool,
    /// Lifecycle events per domain, written by the event loop thread's callback.
    book: Arc<Mutex<EventBook>>,
    /// The lifecycle callback on `conn`; dropped (deregistered) before `conn` is.
    registration: Option<Registration>,
    /// Successful registrations so far: every one after the first follows a lost stream.
    registrations: u64,
}

impl Host {
    /// A host that connects to `uri` on the first refresh and keeps a gone domain's lifecycle
    /// events for `event_grace`.
    pub fn new(uri: String, event_grace: Duration) -> Self {
        // libvirt prints every error to stderr by default; we log what matters ourselves.
        virt::error::clear_error_callback();
        // Before this host opens any connection, so that its connections use the loop.
        if let Err(error) = events::start_event_loop() {
            tracing::warn!(%error, "no libvirt lifecycle events");
        }
        Self {
            uri,
            conn: None,
            cache: HashMap::new(),
            failures: 0,
            retry_at: None,
            xml_fetches: 0,
            nowait: true,
            book: Arc::new(Mutex::new(EventBook::new(event_grace))),
            registration: None,
            registrations: 0,
        }
    }

    /// Registers the lifecycle callback on the live connection if it has none yet.
    fn register_events(&mut self) {
        let Some(conn) = self.conn.as_ref().filter(|_| self.registration.is_none()) else {
            return;
        };
        let book = Arc::clone(&self.book);
        let sink = Box::new(move |domain: &str, event, detail| {
            book.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(domain, event, detail);
        });
        match events::register_lifecycle(conn, sink) {
            Ok(r) => {
                self.registration = Some(r);
                self.registrations += 1;
                if self.registrations > 1 {
                    tracing::info!(uri = %self.uri, "lifecycle events registered again");
                }
            }
            Err(error) => {
                tracing::warn!(uri = %self.uri, %error, "cannot register for lifecycle events; retrying on the next refresh");
            }
        }
    }

    /// The live connection, reconnecting when it dropped (not before the backoff allows).
    fn connection(&mut self) -> Option<&Connect> {
        if let Some(c) = &self.conn {
            if c.is_alive().unwrap_or(false) {
                self.register_events();
                return self.conn.as_ref();
            }
            tracing::warn!(uri = %self.uri, "libvirt connection lost; reconnecting");
            self.drop_connection();
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return None;
        }
        match Connect::open_read_only(Some(&self.uri)) {
            Ok(c) => {
                if self.failures > 0 {
                    tracing::info!(uri = %self.uri, "connected to libvirt again");
                }
                self.failures = 0;
                self.retry_at = None;
                self.conn = Some(c);
                self.register_events();
                self.conn.as_ref()
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                let pause = backoff(self.failures);
                self.retry_at = Some(Instant::now() + pause);
                tracing::warn!(uri = %self.uri, %error, retry_in = ?pause, "cannot connect to libvirt");
                None
            }
        }
    }

    fn drop_connection(&mut self) {
        // Deregisters first; the registration holds its own reference on the connection.
        self.registration = None;
        // Dropping the last reference closes the connection.
        self.conn = None;
        // Domain ids are per daemon run: a new connection may see new ones.
        self.cache.clear();
    }

    /// The bulk records, trying a fresh connection once if the current one fails.
    fn bulk(&mut self) -> Option<Vec<bulk::StatsRecord>> {
        let mut fresh_tried = false;
        loop {
            let flags = if self.nowait { FLAGS } else { 0 };
            let conn = self.connection()?;
            let error = match bulk::all_domain_stats(conn, STATS, flags) {
                Ok(records) => return Some(records),
                Err(error) => error,
            };
            if self.nowait
                && rejects_flags(error.code().is(ErrorNumber::InvalidArg), error.message())
            {
                tracing::warn!(
                    uri = %self.uri,
                    %error,
                    "libvirt does not know NOWAIT (older than 4.5): a guest whose job lock is held can stall refreshes"
                );
                self.nowait = false;
                continue;
            }
            tracing::warn!(uri = %self.uri, %error, "bulk domain statistics failed");
            self.drop_connection();
            if fresh_tried {
                return None;
            }
            fresh_tried = true;
        }
    }

    /// The cached XML of a domain, fetched when new or changed; `None` when the domain has
    /// vanished since the bulk call (the caller skips it quietly).
    ///
    /// An inactive domain has no run id that a redefinition would change (Nova redefines a
    /// stopped instance it resizes without starting it), so its XML is read on every refresh;
    /// that call takes no job and never reaches a guest.
    fn domain_xml(&mut self, domain: &Domain, uuid: &str, name: &str) -> Option<DomainXml> {
        let id = domain.id();
        if let Some(c) = self
            .cache
            .get(uuid)
            .filter(|c| id.is_some() && c.name == name && c.id == id)
        {
            return Some(c.xml.clone());
        }
        self.xml_fetches += 1;
        let text = match domain.xml_desc(0) {
            Err(e) if e.code().is(ErrorNumber::NoDomain) => {
                tracing::debug!(
                    domain = name,
                    "domain vanished since the bulk call; skipped"
                );
                return None;
            }
            text => text.map_err(|e| e.to_string()),
        };
        let xml = match text.and_then(|x| metadata::parse_domain(&x).map_err(|e| e.to_string())) {
            Ok(xml) => xml,
            Err(error) => {
                // Not cached: the next refresh tries again.
                tracing::warn!(domain = name, %error, "cannot read domain XML; no Nova metadata");
                return Some(DomainXml::default());
            }
        };
        let entry = Cached {
            name: name.to_string(),
            id,
            xml: xml.clone(),
        };
        self.cache.insert(uuid.to_string(), entry);
        Some(xml)
    }
}

impl Blocking for Host {
    fn refresh(&mut self) -> GuestsSnapshot {
        let Some(records) = self.bulk() else {
            return self.snapshot(false, Vec::new());
        };
        let decoded: Vec<Decoded> = records.iter().map(|r| params::decode(&r.params)).collect();
        let support = Support::of(&decoded);
        let mut guests = Vec::with_capacity(records.len());
        let mut seen = HashSet::with_capacity(records.len());
        for (record, d) in records.into_iter().zip(decoded) {
            let dom = record.domain;
            // A domain that vanished since the bulk call fails these: skip it quietly.
            let (Ok(name), Ok(uuid)) = (dom.name(), dom.uuid_string()) else {
                continue;
            };
            let Some(xml) = self.domain_xml(&dom, &uuid, &name) else {
                continue;
            };
            seen.insert(uuid.clone());
            match assemble(name.clone(), uuid, d, support, &xml, &Calls(&dom)) {
                Ok(Some(g)) => guests.push(g),
                Ok(None) | Err(CallError::Gone) => {}
                Err(CallError::Failed(error)) => {
                    tracing::warn!(domain = %name, %error, "domain skipped");
                }
            }
        }
        self.cache.retain(|uuid, _| seen.contains(uuid));
        guests.sort_by(|a, b| a.name.cmp(&b.name));
        self.snapshot(true, guests)
    }
}

impl Host {
    /// The snapshot with the lifecycle counts. The domains of an unreachable libvirt are
    /// unknown: they are neither seen nor gone, and their counts stay as they were.
    fn snapshot(&self, up: bool, guests: Vec<Guest>) -> GuestsSnapshot {
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        if up {
            book.observe(&guests, Instant::now());
        }
        GuestsSnapshot {
            up,
            events: book.events(),
            departed: book.departed(),
            event_stream: EventStream {
                up: up && self.registration.is_some(),
                reconnects: self.registrations.saturating_sub(1),
            },
            guests,
        }
    }
}

/// Whether a bulk call failed because libvirt does not know one of its flags
/// (`virCheckFlags`: "unsupported flags (0x...) in function ...", an invalid-argument error).
fn rejects_flags(invalid_arg: bool, message: &str) -> bool {
    invalid_arg && message.contains("unsupported flags")
}

/// Connection attempts after `failures` failures in a row: 1 s, 2 s, 4 s, ... up to 2 minutes.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1)
        .saturating_mul(1 << failures.clamp(1, 16).saturating_sub(1))
        .min(MAX_BACKOFF)
}

/// The per-domain calls on a real domain.
struct Calls<'a>(&'a Domain);

fn call_error(e: virt::error::Error) -> CallError {
    if e.code().is(ErrorNumber::NoDomain) {
        CallError::Gone
    } else {
        CallError::Failed(e.to_string())
    }
}

fn nonneg(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn state_of(s: DomainState) -> GuestState {
    match s {
        DomainState::NoState => GuestState::NoState,
        DomainState::Running => GuestState::Running,
        DomainState::Blocked => GuestState::Blocked,
        DomainState::Paused => GuestState::Paused,
        DomainState::Shutdown => GuestState::Shutdown,
        DomainState::Shutoff => GuestState::Shutoff,
        DomainState::Crashed => GuestState::Crashed,
        DomainState::PMSuspended => GuestState::Suspended,
    }
}

impl PerDomain for Calls<'_> {
    fn info(&self) -> Result<(GuestState, GuestInfo), CallError> {
        let i = self.0.info().map_err(call_error)?;
        let state = i.state.unwrap_or(DomainState::NoState);
        Ok((
            state_of(state),
            GuestInfo {
                virtual_cpus: u64::from(i.nr_virt_cpu),
                maximum_memory_bytes: i.max_mem.saturating_mul(1024),
                memory_usage_bytes: i.memory.saturating_mul(1024),
                cpu_time_seconds: i.cpu_time as f64 / 1e9,
            },
        ))
    }

    fn memory(&self) -> Result<Option<MemoryStats>, CallError> {
        let stats = self.0.memory_stats(0).map_err(call_error)?;
        let mut m = MemoryStats::default();
        for s in &stats {
            let bytes = Some(s.val.saturating_mul(1024));
            match s.tag {
                sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON => m.actual_balloon_bytes = bytes,
                sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE => m.available_bytes = bytes,
                sys::VIR_DOMAIN_MEMORY_STAT_UNUSED => m.unused_bytes = bytes,
                sys::VIR_DOMAIN_MEMORY_STAT_USABLE => m.usable_bytes = bytes,
                sys::VIR_DOMAIN_MEMORY_STAT_RSS => m.rss_bytes = bytes,
                _ => {}
            }
        }
        Ok(Some(m).filter(|m| *m != MemoryStats::default()))
    }

    fn vcpus(&self, count: u64) -> Result<Vec<VcpuStats>, CallError> {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        bulk::vcpu_times(self.0, count).map_err(call_error)
    }

    fn block(&self, target: &str) -> Result<BlockStats, CallError> {
        let s = self.0.block_stats(target).map_err(call_error)?;
        let capacity = self
            .0
            .block_info(target, 0)
            .map(|i| i.capacity)
            .unwrap_or(0);
        Ok(BlockStats {
            target_device: target.to_string(),
            read_bytes: nonneg(s.rd_bytes),
            write_bytes: nonneg(s.wr_bytes),
            read_requests: nonneg(s.rd_req),
            write_requests: nonneg(s.wr_req),
            // virDomainBlockStats has no times; only the bulk path reports them.
            read_time_seconds: 0.0,
            write_time_seconds: 0.0,
            capacity_bytes: capacity,
        })
    }

    fn interface(&self, target: &str) -> Result<InterfaceStats, CallError> {
        let s = self.0.interface_stats(target).map_err(call_error)?;
        Ok(InterfaceStats {
            target_device: target.to_string(),
            receive_bytes: nonneg(s.rx_bytes),
            receive_packets: nonneg(s.rx_packets),
            receive_errors: nonneg(s.rx_errs),
            receive_drops: nonneg(s.rx_drop),
            transmit_bytes: nonneg(s.tx_bytes),
            transmit_packets: nonneg(s.tx_packets),
            transmit_errors: nonneg(s.tx_errs),
            transmit_drops: nonneg(s.tx_drop),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> String {
        format!(
            "test://{}/tests/fixtures/libvirt-node.xml",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    #[test]
    fn domain_xml_is_fetched_once_per_running_domain() {
        let mut host = Host::new(fixture(), Duration::from_secs(3600));
        let first = host.refresh();
        assert!(first.up);
        assert_eq!(first.guests.len(), 4);
        assert_eq!(host.xml_fetches, 4);
        let second = host.refresh();
        assert_eq!(second.guests.len(), 4);
        assert_eq!(
            host.xml_fetches, 5,
            "the second refresh uses the cache but for the shut-off domain"
        );
        assert_eq!(host.cache.len(), 4);
    }

    #[test]
    fn only_an_unsupported_flags_error_turns_nowait_off() {
        let old = "invalid argument: unsupported flags (0x20000000) in function qemuConnectGetAllDomainStats";
        assert!(rejects_flags(true, old));
        assert!(!rejects_flags(false, old));
        assert!(!rejects_flags(true, "invalid argument: invalid path: vda"));
    }

    #[test]
    fn a_failed_connection_backs_off() {
        let mut host = Host::new(
            "test:///nonexistent/node.xml".into(),
            Duration::from_secs(3600),
        );
        assert!(!host.refresh().up);
        assert_eq!(host.failures, 1);
        let retry_at = host.retry_at.expect("a retry time is set");
        assert!(retry_at > Instant::now());
        // Within the backoff, no new attempt is made (the failure count stays).
        assert!(!host.refresh().up);
        assert_eq!(host.failures, 1);
        // Once the backoff has passed, it tries again.
        host.retry_at = Some(Instant::now());
        assert!(!host.refresh().up);
        assert_eq!(host.failures, 2);
    }

    #[test]
    fn bulk_parameters_match_virsh() {
        let uri = fixture();
        let out = std::process::Command::new("virsh")
            .args(["-c", &uri, "domstats", "--raw", "--nowait"])
            .output()
            .expect("virsh runs (install libvirt-clients)");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let mut want: Vec<(String, Vec<(String, String)>)> = params::parse_virsh_raw(&text)
            .into_iter()
            .map(|(n, p)| (n, p.iter().map(|(k, v)| (k.clone(), v.to_text())).collect()))
            .collect();
        let conn = Connect::open_read_only(Some(&uri)).expect("the fixture opens");
        let records = bulk::all_domain_stats(&conn, STATS, FLAGS).expect("bulk stats");
        let mut got: Vec<(String, Vec<(String, String)>)> = records
            .iter()
            .map(|r| {
                let name = r.domain.name().expect("a name");
                (
                    name,
                    r.params
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_text()))
                        .collect(),
                )
            })
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got.len(), 4);
        assert_eq!(got, want);
    }

    #[test]
    fn connection_backoff_doubles_up_to_two_minutes() {
        let got: Vec<u64> = (0..10).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(got, [1, 1, 2, 4, 8, 16, 32, 64, 120, 120]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
