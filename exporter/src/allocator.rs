//! Gives heap memory that is free but still held by the allocator back to the OS.
//!
//! glibc's malloc keeps freed memory in its arenas and returns it to the OS only from the top
//! of the main heap. After a refresh that decoded a big answer (a full server listing, Nova's
//! usage window: tens of MB of JSON into short-lived strings) most of that memory stays
//! resident although nothing uses it. `malloc_trim(0)` walks the arenas and releases every
//! free page (`madvise(MADV_DONTNEED)`), so the resident size follows what is live.
//!
//! The one module outside the libvirt FFI that is allowed `unsafe`: a call without arguments
//! or pointers into glibc. On other targets (musl, other allocators) it does nothing.

/// Releases free heap pages to the OS; whether any memory was released. A no-op returning
/// `false` where the C library is not glibc.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and only touches glibc's own arenas, under
        // their locks; it is safe to call from any thread at any time.
        let released = unsafe { libc::malloc_trim(0) };
        released != 0
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    /// Resident memory of this process in KiB (`VmRSS`).
    fn rss_kib() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_goes_back_to_the_os() {
        // Many small blocks (below the mmap threshold, so they live in the heap arenas and
        // stay resident when freed), touched, then freed except the last one, which pins the
        // top of the heap so that glibc's automatic trim at free cannot release them.
        let blocks: Vec<Vec<u8>> = (0..40_000).map(|i| vec![(i % 251) as u8; 4000]).collect();
        let pin = vec![1u8; 4000];
        drop(blocks);
        let before = rss_kib().expect("VmRSS in /proc/self/status");
        assert!(super::release_free_memory(), "nothing was released");
        let after = rss_kib().expect("VmRSS in /proc/self/status");
        assert!(
            after + 100_000 < before,
            "RSS {before} KiB -> {after} KiB: the 160 MB freed were not given back"
        );
        drop(pin);
    }
}
