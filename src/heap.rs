//! Giving freed heap memory back to the operating system.
//!
//! A broadcast storm (10,000 users joining means 50 million online notices) allocates and
//! frees output buffers by the gigabyte. glibc keeps freed chunks inside its heap for reuse,
//! so after the storm the process would stay at its peak size although every buffer is
//! free again, and an idle user would appear to cost kilobytes. `malloc_trim(0)` hands the
//! free pages back (`MADV_DONTNEED`); the loop calls it when it goes quiet after much
//! output, at most once per [`TRIM_INTERVAL`]. On other C libraries this does nothing.

use std::time::Duration;

/// Output written since the last trim before trimming is worth a heap walk.
pub const TRIM_AFTER_BYTES: u64 = 16 * 1024 * 1024;
/// The least time between two trims: a walk of a large heap takes about a millisecond.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Returns free heap pages to the operating system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: malloc_trim (in every glibc since 2.0) takes a plain integer, touches only the
    // allocator's own state under its own lock, and is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns free heap pages to the operating system (nothing to do on this C library).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}
