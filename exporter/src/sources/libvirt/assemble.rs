//! One bulk record + cached domain XML (+ per-domain calls where needed) -> one [`Guest`].
//!
//! Pure apart from the [`PerDomain`] calls it is handed, so tests drive it with a fake. The
//! bulk record is the first choice for every group. A group is filled from per-domain calls
//! only when the driver does not return that group at all ([`Support`], decided over the
//! whole bulk answer): a driver that does return it but left it out for one guest did so
//! because of NOWAIT (the guest's job lock is held), and asking that guest again without
//! NOWAIT is exactly the stall the bulk call avoids. Guests that are not running (paused, shut
//! off, ...) keep state, info and Nova metadata but no I/O counters.

use super::metadata::DomainXml;
use super::params::Decoded;
use crate::snapshot::{
    BlockStats, Guest, GuestInfo, GuestState, InterfaceStats, MemoryStats, VcpuStats,
};

/// Why a per-domain call gave nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The domain disappeared since it was listed.
    Gone,
    /// Anything else, with libvirt's message.
    Failed(String),
}

/// The per-domain calls that fill groups the bulk call did not return.
pub trait PerDomain {
    /// `virDomainGetInfo`: state and info.
    fn info(&self) -> Result<(GuestState, GuestInfo), CallError>;
    /// `virDomainMemoryStats`; `None` when the guest reports no statistics.
    fn memory(&self) -> Result<Option<MemoryStats>, CallError>;
    /// `virDomainGetVcpus` for up to `count` vCPUs.
    fn vcpus(&self, count: u64) -> Result<Vec<VcpuStats>, CallError>;
    /// `virDomainBlockStats` + `virDomainGetBlockInfo` of one disk target.
    fn block(&self, target: &str) -> Result<BlockStats, CallError>;
    /// `virDomainInterfaceStats` of one NIC target.
    fn interface(&self, target: &str) -> Result<InterfaceStats, CallError>;
}

/// Which stats groups the driver returns, judged over one whole bulk answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Support {
    pub cpu: bool,
    pub balloon: bool,
    pub vcpu: bool,
    pub block: bool,
    pub net: bool,
}

impl Support {
    /// A group is supported when any record has it (counter groups: any running guest).
    pub fn of<'a>(records: impl IntoIterator<Item = &'a Decoded>) -> Self {
        let mut s = Self::default();
        for d in records {
            let running = d.state.is_some_and(is_running);
            s.cpu |= running && d.cpu_time_seconds.is_some();
            s.balloon |= d.balloon.is_some();
            s.vcpu |= d.vcpu.is_some();
            s.block |= running && d.blocks.is_some();
            s.net |= running && d.interfaces.is_some();
        }
        s
    }
}

/// States whose guest has live I/O counters.
pub fn is_running(state: GuestState) -> bool {
    matches!(state, GuestState::Running | GuestState::Blocked)
}

/// Builds one guest; `None` when the domain vanished or its info cannot be read.
pub fn assemble(
    name: String,
    uuid: String,
    d: Decoded,
    support: Support,
    xml: &DomainXml,
    calls: &impl PerDomain,
) -> Result<Option<Guest>, CallError> {
    let balloon = d.balloon.clone().unwrap_or_default();
    let vcpu = d.vcpu.clone().unwrap_or_default();
    let bulk_state = d.state;
    let running_hint = bulk_state.is_some_and(is_running);
    let needs_info = bulk_state.is_none()
        || (!support.vcpu && vcpu.current.is_none())
        || (!support.balloon
            && (balloon.current_bytes.is_none() || balloon.maximum_bytes.is_none()))
        || (running_hint && !support.cpu && d.cpu_time_seconds.is_none());
    let (state, info) = if needs_info {
        match calls.info() {
            Ok((state, info)) => (bulk_state.unwrap_or(state), info),
            Err(CallError::Gone) => return Ok(None),
            Err(e) => return Err(e),
        }
    } else {
        (
            bulk_state.unwrap_or(GuestState::NoState),
            GuestInfo::default(),
        )
    };
    // Bulk values win over per-domain ones: they were read in the same instant.
    let info = GuestInfo {
        virtual_cpus: vcpu.current.unwrap_or(info.virtual_cpus),
        maximum_memory_bytes: balloon.maximum_bytes.unwrap_or(info.maximum_memory_bytes),
        memory_usage_bytes: balloon.current_bytes.unwrap_or(info.memory_usage_bytes),
        cpu_time_seconds: d.cpu_time_seconds.unwrap_or(info.cpu_time_seconds),
    };
    let mut guest = Guest {
        name,
        uuid: uuid.clone(),
        state,
        openstack: xml.nova.clone().map(|mut m| {
            m.instance_id = uuid;
            m
        }),
        info,
        vcpus: Vec::new(),
        memory: None,
        blocks: Vec::new(),
        interfaces: Vec::new(),
    };
    if !is_running(state) {
        return Ok(Some(guest));
    }

    guest.vcpus = match (&d.vcpu, support.vcpu) {
        (Some(v), _) => v.times.clone(),
        (None, true) => Vec::new(),
        (None, false) => gone_or(calls.vcpus(info.virtual_cpus), Vec::new)?,
    };
    guest.memory = match (&d.balloon, support.balloon) {
        (Some(b), _) => Some(b.memory).filter(|m| *m != MemoryStats::default()),
        (None, true) => None,
        (None, false) => gone_or(calls.memory(), || None)?,
    };
    guest.blocks = match (d.blocks, support.block) {
        (Some(b), _) => b,
        (None, true) => Vec::new(),
        (None, false) => per_device(&xml.disks, |t| calls.block(t))?,
    };
    guest.interfaces = match (d.interfaces, support.net) {
        (Some(i), _) => i,
        (None, true) => Vec::new(),
        (None, false) => per_device(&xml.interfaces, |t| calls.interface(t))?,
    };
    Ok(Some(guest))
}

/// Keeps a group's failure local to the group: a vanished domain ends the guest (the caller
/// skips it), any other failure leaves the group empty.
fn gone_or<T>(r: Result<T, CallError>, empty: impl FnOnce() -> T) -> Result<T, CallError> {
    match r {
        Ok(v) => Ok(v),
        Err(CallError::Gone) => Err(CallError::Gone),
        Err(CallError::Failed(error)) => {
            tracing::debug!(%error, "per-domain statistics call failed; group left out");
            Ok(empty())
        }
    }
}

/// One call per device; a device whose call fails is left out, the others stay.
fn per_device<T>(
    targets: &[String],
    call: impl Fn(&str) -> Result<T, CallError>,
) -> Result<Vec<T>, CallError> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        match call(t) {
            Ok(v) => out.push(v),
            Err(CallError::Gone) => return Err(CallError::Gone),
            Err(CallError::Failed(error)) => {
                tracing::debug!(target_device = %t, %error, "device statistics unavailable");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
