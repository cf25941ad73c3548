//! The libvirt source: every guest of one hypervisor, read-only, never stalled by one guest.
//!
//! The settings ([`LibvirtConfig`]) always exist so that configuration can say clearly when the
//! binary was built without the `libvirt` cargo feature; everything else needs the feature.
//!
//! - `source`: the [`crate::source::Source`]; runs refreshes on the blocking pool and never
//!   starts one while another is stuck.
//! - `host`: connection (read-only, reconnect with backoff), one bulk stats call with NOWAIT,
//!   the domain XML cache, per-domain calls where the driver lacks a bulk group.
//! - `bulk`: `unsafe` (one of two modules): the bulk call and `virDomainGetVcpus`, copied into
//!   owned values and freed as libvirt requires.
//! - `events`: the other `unsafe` module: libvirt's default event loop on its own thread, and
//!   the lifecycle event callback (trampoline, deregistered on drop, its data freed once).
//! - `lifecycle` (pure): (event, detail) -> labels; the per-domain counts with their grace.
//! - `params` (pure): typed parameters -> statistics; also parses `virsh domstats --raw`.
//! - `metadata` (pure): domain XML -> Nova metadata and device targets.
//! - `assemble` (pure but for injected calls): record + XML -> one guest.

use crate::settings::Schedule;

/// Default `--libvirt.uri`.
pub const DEFAULT_URI: &str = "qemu:///system";
/// Default refresh interval (and timeout) of the libvirt source.
pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);
/// Default `--libvirt.event-grace`: how long a gone domain keeps its lifecycle counters.
pub const DEFAULT_EVENT_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The libvirt source's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtConfig {
    /// Connection URI, opened read-only.
    pub uri: String,
    pub schedule: Schedule,
    /// How long a domain gone from libvirt keeps its lifecycle event counters and its
    /// `libvirt_domain_openstack_info`.
    pub event_grace: std::time::Duration,
}

#[cfg(feature = "libvirt")]
mod assemble;
#[cfg(feature = "libvirt")]
#[allow(unsafe_code)]
mod bulk;
pub mod config;
#[cfg(feature = "libvirt")]
#[allow(unsafe_code)]
mod events;
#[cfg(feature = "libvirt")]
mod host;
#[cfg(feature = "libvirt")]
pub mod lifecycle;
#[cfg(feature = "libvirt")]
pub mod metadata;
#[cfg(feature = "libvirt")]
pub mod params;
#[cfg(feature = "libvirt")]
mod source;

#[cfg(feature = "libvirt")]
pub use events::start_event_loop;
#[cfg(feature = "libvirt")]
pub use host::{Blocking, Host};
#[cfg(feature = "libvirt")]
pub use source::{LibvirtError, LibvirtSource};
