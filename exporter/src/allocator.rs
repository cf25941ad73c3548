//! Gives heap memory that is free but still held by the allocator back to the OS.
//!
//! glibc's malloc keeps freed memory in its arenas and returns it to the OS only from the top
//! of the main heap. After a refresh that decoded a big answer (a full server listing, Nova's
//! usage window: tens of MB of JSON into short-lived strings) most of that memory stays
//! resident although nothing uses it. Two remedies:
//! - [`map_large_blocks`], once at start: every block of at least [`MMAP_THRESHOLD`] bytes
//!   (a response body, a page's decoded servers, a text buffer of the exposition) gets a
//!   mapping of its own, unmapped when it is freed. glibc does that by default only until the
//!   first such block is freed, then raises its threshold to that block's size (up to 32 MiB),
//!   and the next bodies land in the arenas;
//! - [`release_free_memory`] after a refresh: `malloc_trim(0)` walks the arenas and releases
//!   every free page (`madvise(MADV_DONTNEED)`), so the resident size follows what is live.
//!
//! The one module outside the libvirt FFI that is allowed `unsafe`: calls without pointers
//! into glibc. On other targets (musl, other allocators) they do nothing.

/// The size from which a block gets its own mapping: the exposition's text buffers (1 MiB,
/// reserved with a quarter more) and anything larger.
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// What [`map_large_blocks`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LargeBlocks {
    /// Blocks of at least this many bytes are mapped, whatever was freed before.
    Mapped(usize),
    /// `MALLOC_MMAP_THRESHOLD_` or `GLIBC_TUNABLES` sets the threshold: the operator's choice
    /// stands.
    LeftToEnvironment,
    /// Not glibc, or glibc refused.
    Unsupported,
}

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD`] (which also turns off its dynamic
/// raising), unless the environment already sets one. Call once at start.
pub fn map_large_blocks() -> LargeBlocks {
    if tuned_by_environment(|name| std::env::var(name).ok()) {
        return LargeBlocks::LeftToEnvironment;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes two integers and only changes glibc's malloc parameters,
        // under its lock; it is safe to call from any thread at any time.
        let done = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) };
        if done == 1 {
            return LargeBlocks::Mapped(MMAP_THRESHOLD);
        }
    }
    LargeBlocks::Unsupported
}

/// Whether the environment sets glibc's mmap threshold (the classic variable or the tunable).
fn tuned_by_environment(var: impl Fn(&str) -> Option<String>) -> bool {
    var("MALLOC_MMAP_THRESHOLD_").is_some()
        || var("GLIBC_TUNABLES").is_some_and(|tunables| {
            tunables
                .split(':')
                .any(|t| t.split('=').next() == Some("glibc.malloc.mmap_threshold"))
        })
}

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
    use super::*;

    /// Tests that measure this process's resident size run one at a time.
    static RSS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn an_environment_that_sets_the_threshold_is_left_alone() {
        for (vars, tuned) in [
            (vec![], false),
            (vec![("MALLOC_MMAP_THRESHOLD_", "131072")], true),
            (vec![("MALLOC_TRIM_THRESHOLD_", "131072")], false),
            (
                vec![("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")],
                true,
            ),
            (
                vec![(
                    "GLIBC_TUNABLES",
                    "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536",
                )],
                true,
            ),
            (vec![("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")], false),
            (
                vec![("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold_x=1")],
                false,
            ),
        ] {
            let var = |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            };
            assert_eq!(tuned_by_environment(var), tuned, "{vars:?}");
        }
    }

    /// Resident memory of this process in KiB (`VmRSS`).
    fn rss_kib() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_goes_back_to_the_os() {
        let _alone = RSS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Many small blocks (below the mmap threshold, so they live in the heap arenas and
        // stay resident when freed), touched, then freed except the last one, which pins the
        // top of the heap so that glibc's automatic trim at free cannot release them.
        let blocks: Vec<Vec<u8>> = (0..40_000).map(|i| vec![(i % 251) as u8; 4000]).collect();
        let pin = vec![1u8; 4000];
        drop(blocks);
        let before = rss_kib().expect("VmRSS in /proc/self/status");
        assert!(release_free_memory(), "nothing was released");
        let after = rss_kib().expect("VmRSS in /proc/self/status");
        assert!(
            after + 100_000 < before,
            "RSS {before} KiB -> {after} KiB: the 160 MB freed were not given back"
        );
        drop(pin);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn large_blocks_go_back_to_the_os_when_freed_even_after_a_larger_one_was() {
        let _alone = RSS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        assert_eq!(
            map_large_blocks(),
            LargeBlocks::Mapped(MMAP_THRESHOLD),
            "cannot run: MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES sets the threshold here"
        );
        // Freeing a mapped 8 MiB block is what makes glibc raise its threshold to 8 MiB when it
        // is not fixed: the 2 MiB blocks below would then live in the arena, pinned by `pin`.
        drop(std::hint::black_box(vec![1u8; 8 << 20]));
        // Non-zero bytes: zeroed blocks would come from calloc, untouched.
        let blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8 + 1; 2 << 20]).collect();
        let pin = vec![1u8; 4000];
        let before = rss_kib().expect("VmRSS in /proc/self/status");
        drop(blocks);
        let after = rss_kib().expect("VmRSS in /proc/self/status");
        assert!(
            after + 100_000 < before,
            "RSS {before} KiB -> {after} KiB: the 128 MiB freed stayed resident"
        );
        drop(pin);
    }
}
