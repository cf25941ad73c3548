//! The libvirt calls `virt` 0.5 does not wrap safely: bulk statistics and per-vCPU times.
//!
//! One of the two modules of the crate with `unsafe` (with `events`).
//! `virt::Connect::all_domain_stats` frees the record array with `free()` but never the records (their typed parameters and domain
//! references leak on every call), and returns raw pointers; so this module calls
//! `virConnectGetAllDomainStats` itself, copies every record into owned Rust values
//! ([`StatsRecord`], [`Param`]) and frees the list with `virDomainStatsRecordListFree`, the
//! way libvirt requires, on every path (a drop guard). Nothing borrowed from libvirt outlives
//! a call; the interface is safe.

use std::ffi::CStr;
use std::os::raw::c_int;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::Error;
use virt::sys;

use super::params::Param;
use crate::snapshot::VcpuStats;

/// One domain's bulk statistics, owned.
#[derive(Debug)]
pub struct StatsRecord {
    /// Our own reference on the domain, for per-domain calls.
    pub domain: Domain,
    pub params: Vec<(String, Param)>,
}

/// Frees a record list returned by `virConnectGetAllDomainStats` when dropped.
struct RecordList(*mut sys::virDomainStatsRecordPtr);

impl Drop for RecordList {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer is the NULL-terminated list libvirt allocated in
            // `all_domain_stats` and nothing else frees it; the records' domains we kept were
            // given their own reference, so dropping the list's reference is correct.
            unsafe { sys::virDomainStatsRecordListFree(self.0) };
        }
    }
}

/// `virConnectGetAllDomainStats(conn, stats, flags)`: one record per domain.
pub fn all_domain_stats(conn: &Connect, stats: u32, flags: u32) -> Result<Vec<StatsRecord>, Error> {
    let mut list: *mut sys::virDomainStatsRecordPtr = std::ptr::null_mut();
    // SAFETY: `conn` holds a live connection reference for the whole borrow; `list` is a valid
    // out-pointer that libvirt fills with a list we free through `RecordList`.
    let n = unsafe { sys::virConnectGetAllDomainStats(conn.as_ptr(), stats, &mut list, flags) };
    let guard = RecordList(list);
    if n < 0 {
        return Err(Error::last_error());
    }
    let n = if list.is_null() {
        0
    } else {
        usize::try_from(n).unwrap_or(0)
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: libvirt returned `n` records followed by NULL in `list`, so `i < n` is in
        // bounds, and the list stays alive until `guard` drops at the end of this function.
        let record = unsafe { *guard.0.add(i) };
        if record.is_null() {
            break;
        }
        // SAFETY: `record` points to a record of the live list (see above).
        let (dom, params, nparams) =
            unsafe { ((*record).dom, (*record).params, (*record).nparams) };
        if dom.is_null() {
            continue;
        }
        // SAFETY: `dom` is a valid domain of the live list; taking a reference of our own keeps
        // it valid after the list (and its reference) is freed, and `Domain` releases ours.
        let domain = unsafe {
            if sys::virDomainRef(dom) < 0 {
                continue;
            }
            Domain::from_ptr(dom)
        };
        let count = usize::try_from(nparams).unwrap_or(0);
        let params = if params.is_null() || count == 0 {
            Vec::new()
        } else {
            // SAFETY: libvirt gives `nparams` initialised parameters at `params`, alive as long
            // as the list; we only read them and copy out before the list is freed.
            let slice = unsafe { std::slice::from_raw_parts(params, count) };
            slice.iter().filter_map(copy_param).collect()
        };
        out.push(StatsRecord { domain, params });
    }
    drop(guard);
    Ok(out)
}

/// Copies one typed parameter; `None` for a type this libvirt is newer than.
fn copy_param(p: &sys::virTypedParameter) -> Option<(String, Param)> {
    // The field is a fixed array, NUL-terminated unless it is exactly full.
    let bytes: Vec<u8> = p
        .field
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    let field = String::from_utf8_lossy(&bytes).into_owned();
    let kind = u32::try_from(p.type_).ok()?;
    // SAFETY: `type_` says which member of the union libvirt wrote; each arm reads only that
    // member. A string is NUL-terminated and owned by the record, which is still alive.
    let value = unsafe {
        match kind {
            sys::VIR_TYPED_PARAM_INT => Param::Int(p.value.i),
            sys::VIR_TYPED_PARAM_UINT => Param::UInt(p.value.ui),
            sys::VIR_TYPED_PARAM_LLONG => Param::LLong(p.value.l),
            sys::VIR_TYPED_PARAM_ULLONG => Param::ULLong(p.value.ul),
            sys::VIR_TYPED_PARAM_DOUBLE => Param::Double(p.value.d),
            sys::VIR_TYPED_PARAM_BOOLEAN => Param::Boolean(p.value.b != 0),
            sys::VIR_TYPED_PARAM_STRING if p.value.s.is_null() => Param::String(String::new()),
            sys::VIR_TYPED_PARAM_STRING => {
                Param::String(CStr::from_ptr(p.value.s).to_string_lossy().into_owned())
            }
            _ => return None,
        }
    };
    Some((field, value))
}

/// `virDomainGetVcpus`: the CPU time of each of up to `max` vCPUs of a running domain.
pub fn vcpu_times(domain: &Domain, max: u32) -> Result<Vec<VcpuStats>, Error> {
    let empty = sys::virVcpuInfo {
        number: 0,
        state: 0,
        cpuTime: 0,
        cpu: 0,
    };
    let max = max.min(4096);
    let mut info = vec![empty; max as usize];
    let len = c_int::try_from(max).unwrap_or(0);
    // SAFETY: `domain` holds a live reference; `info` has room for `len` entries, the most
    // libvirt writes; no CPU maps are asked for (NULL, length 0).
    let n = unsafe {
        sys::virDomainGetVcpus(
            domain.as_ptr(),
            info.as_mut_ptr(),
            len,
            std::ptr::null_mut(),
            0,
        )
    };
    if n < 0 {
        return Err(Error::last_error());
    }
    info.truncate(usize::try_from(n).unwrap_or(0));
    Ok(info
        .iter()
        .map(|v| VcpuStats {
            vcpu: v.number,
            time_seconds: v.cpuTime as f64 / 1e9,
        })
        .collect())
}
