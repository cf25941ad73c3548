//! libvirt's domain lifecycle events, which `virt` 0.5 does not wrap: the default event loop
//! on its own thread, and `virConnectDomainEventRegisterAny` for `VIR_DOMAIN_EVENT_ID_LIFECYCLE`
//! with a callback trampoline.
//!
//! One of the two modules of the crate with `unsafe` (with `bulk`). Invariants:
//! - the default event loop is registered once per process, before the source opens its first
//!   connection ([`start_event_loop`], called by `Host::new`), and runs on the dedicated thread
//!   `libvirt-events` for the life of the process. With a loop registered, libvirt also turns on
//!   keepalive for every remote connection (5 s, 5 missed answers), so a dead daemon is noticed
//!   without a call;
//! - the sink given to [`register_lifecycle`] is boxed and handed to libvirt as the opaque
//!   pointer; it is freed exactly once: by libvirt's free callback once the registration is
//!   removed (dropping the [`Registration`] deregisters), or here if registering fails (libvirt
//!   then never calls the free callback);
//! - the trampoline runs on the event loop thread, never unwinds into C, and hands the sink only
//!   owned or borrowed-for-the-call values.

use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::Duration;

use virt::connect::Connect;
use virt::error::Error;
use virt::sys;

/// What receives each lifecycle event: the domain's name, libvirt's event and detail numbers.
pub type Sink = Box<dyn Fn(&str, i32, i32) + Send + Sync>;

/// `virConnectDomainEventCallback`: the signature libvirt calls for LIFECYCLE events.
type LifecycleCallback =
    unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_int, c_int, *mut c_void) -> c_int;
/// `virConnectDomainEventGenericCallback`: the signature the registration takes.
type GenericCallback = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void);

/// Registers libvirt's default event loop and starts its thread, once per process; later calls
/// return the first call's outcome.
pub fn start_event_loop() -> Result<(), String> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            virt::event::event_register_default_impl()
                .map_err(|e| format!("cannot register libvirt's default event loop: {e}"))?;
            std::thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(run_event_loop)
                .map(drop)
                .map_err(|e| format!("cannot start the libvirt event loop thread: {e}"))
        })
        .clone()
}

/// The event loop thread: one iteration after the other, for the life of the process.
fn run_event_loop() {
    loop {
        if let Err(error) = virt::event::event_run_default_impl() {
            tracing::warn!(%error, "libvirt event loop iteration failed");
            // Not a busy loop if the loop keeps failing.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A lifecycle callback registered on one connection; dropping it deregisters.
pub struct Registration {
    /// Our own reference: the connection outlives the registration.
    conn: Connect,
    id: c_int,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `conn` is a live reference and `id` the callback id libvirt returned for it.
        // On a dead connection libvirt still removes the callback locally (calling the free
        // callback) before failing the remote part; the error is of no use here.
        let rc = unsafe { sys::virConnectDomainEventDeregisterAny(self.conn.as_ptr(), self.id) };
        if rc < 0 {
            tracing::debug!(
                id = self.id,
                "lifecycle event callback deregistered on a dead connection"
            );
        }
    }
}

/// Registers `sink` for every domain's lifecycle events on `conn`.
pub fn register_lifecycle(conn: &Connect, sink: Sink) -> Result<Registration, Error> {
    register(conn, sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int, sink)
}

/// The registration itself; `event_id` must be one whose callback has the lifecycle signature
/// (only LIFECYCLE here; the tests pass an unknown id to take the failure path).
fn register(conn: &Connect, event_id: c_int, sink: Sink) -> Result<Registration, Error> {
    let opaque = Box::into_raw(Box::new(sink)).cast::<c_void>();
    // SAFETY: libvirt's `VIR_DOMAIN_EVENT_CALLBACK` cast: for the LIFECYCLE id libvirt calls the
    // generic pointer with the lifecycle signature, which is `lifecycle`'s.
    let generic: sys::virConnectDomainEventGenericCallback =
        Some(unsafe { std::mem::transmute::<LifecycleCallback, GenericCallback>(lifecycle) });
    // SAFETY: `conn` is live; NULL domain means every domain; `opaque` is a valid boxed sink
    // that `free_sink` frees once libvirt is done with it.
    let id = unsafe {
        sys::virConnectDomainEventRegisterAny(
            conn.as_ptr(),
            std::ptr::null_mut(),
            event_id,
            generic,
            opaque,
            Some(free_sink),
        )
    };
    if id < 0 {
        let error = Error::last_error();
        // SAFETY: libvirt does not call the free callback of a failed registration and keeps
        // no copy of `opaque`, so it is still ours to free, once.
        unsafe { free_sink(opaque) };
        return Err(error);
    }
    Ok(Registration {
        conn: conn.clone(),
        id,
    })
}

/// The callback libvirt calls, on the event loop thread, for each lifecycle event.
unsafe extern "C" fn lifecycle(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    if dom.is_null() || opaque.is_null() {
        return 0;
    }
    // SAFETY: libvirt holds `dom` for the duration of the callback; the name it returns is
    // owned by the domain object and read before we return.
    let name = unsafe { sys::virDomainGetName(dom) };
    if name.is_null() {
        return 0;
    }
    // SAFETY: as above; a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    // SAFETY: `opaque` is the boxed sink of `register_lifecycle`, alive until `free_sink`, which
    // libvirt calls only after the last callback has returned.
    let sink = unsafe { &*opaque.cast::<Sink>() };
    // A panic must not unwind into libvirt.
    let _ = catch_unwind(AssertUnwindSafe(|| sink(&name, event, detail)));
    0
}

/// libvirt's free callback for the opaque pointer: drops the boxed sink.
unsafe extern "C" fn free_sink(opaque: *mut c_void) {
    if !opaque.is_null() {
        // SAFETY: `opaque` came from `Box::into_raw` in `register_lifecycle` and is freed once.
        drop(unsafe { Box::from_raw(opaque.cast::<Sink>()) });
    }
}

#[cfg(test)]
mod tests;
