//! The bench's allocator: mimalloc, the servers' allocator (the system's with `--features
//! system-alloc`, for heap profilers that wrap malloc). With `--features count-heap` it also counts
//! the bytes the program holds, so the soak splits resident growth into what the program holds and
//! what the allocator keeps from the kernel (a feature: the count costs atomic operations on every
//! allocation, which the other benches should not pay).

#[cfg(all(feature = "count-heap", not(feature = "system-alloc")))]
#[global_allocator]
static GLOBAL: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

#[cfg(all(feature = "count-heap", feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

#[cfg(all(not(feature = "count-heap"), not(feature = "system-alloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bytes allocated and not yet freed, when this build counts them.
pub(crate) fn in_use() -> Option<u64> {
    #[cfg(feature = "count-heap")]
    return Some(GLOBAL.allocated() as u64);
    #[cfg(not(feature = "count-heap"))]
    None
}
