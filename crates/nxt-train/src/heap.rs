//! The C heap's behaviour during a training run.
//!
//! A training step allocates and frees the same large buffers every step (activations,
//! gradients, a chunk of logits: tens to hundreds of MB each). glibc serves each allocation
//! above 128 KiB-32 MiB with its own `mmap` and returns it with `munmap` when freed, so
//! every step faults every page of those buffers in again, zeroed by the kernel: on a
//! 0.5B model at 256 tokens that was 16-28% of a step's CPU samples and half its system
//! time. While a [`RetainedHeap`] lives, large blocks come from the heap and freed memory
//! stays there for the next step; dropping it restores glibc's defaults and gives the free
//! memory back to the system. Peak RSS is what the run holds at once either way (measured
//! in docs/BENCHMARKS.md). Other platforms and allocators are left as they are.

/// Keeps freed memory in the process's heap until dropped (see the module docs).
#[derive(Debug)]
pub(crate) struct RetainedHeap(());

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    /// glibc's default `M_MMAP_MAX`.
    pub const DEFAULT_MMAP_MAX: libc::c_int = 65_536;
    /// glibc's default `M_TRIM_THRESHOLD` (128 KiB).
    pub const DEFAULT_TRIM_THRESHOLD: libc::c_int = 128 * 1024;

    pub fn set(mmap_max: libc::c_int, trim_threshold: libc::c_int) {
        // SAFETY: `mallopt` takes the allocator's lock; any values are valid to pass (it
        // returns 0 for one it rejects, which leaves the setting as it was).
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, mmap_max);
            libc::mallopt(libc::M_TRIM_THRESHOLD, trim_threshold);
        }
    }
}

impl RetainedHeap {
    /// Serves large allocations from the heap and keeps freed memory in it.
    pub(crate) fn begin() -> Self {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        glibc::set(0, libc::c_int::MAX);
        RetainedHeap(())
    }
}

impl Drop for RetainedHeap {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            glibc::set(glibc::DEFAULT_MMAP_MAX, glibc::DEFAULT_TRIM_THRESHOLD);
            // SAFETY: `malloc_trim` only releases free memory; no pointer is invalidated.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}
