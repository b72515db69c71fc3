//! `deliver`: a delivery host for post-production.
//!
//! One module per pipeline stage: `manifest` (raw → validated compositions),
//! `preset`, `plugins` (loading codec plugins behind the C ABI), `render`
//! (compositor and audio mix), `encode` (one deliverable: convert, encode,
//! mux, validate), `loudness`, `quality`, `report`, `jobs` (one job's
//! pipeline) and `host` (the actix actors that watch, schedule and run jobs),
//! with `watch_config` (the roots a host serves), `schedule` (which job
//! starts next) and `capability` (whether the loaded plugins can make a job).

pub mod capability;
pub mod compare;
pub mod conformance;
pub mod deltae;
pub mod encode;
pub mod host;
pub mod isolate;
pub mod jobs;
pub mod journal;
pub mod limiter;
pub mod loudness;
pub mod manifest;
pub mod normalize;
pub mod plugins;
pub mod preset;
pub mod qc;
pub mod quality;
mod rejected;
pub mod render;
pub mod report;
pub mod report_html;
pub mod schedule;
pub mod segments;
pub mod tracks;
pub mod watch_config;

/// Keeps peak memory flat over long runs. glibc's malloc raises its mmap
/// threshold to the size of each large block freed (up to 32 MiB); after
/// that, picture-sized buffers (decoders' frames, 8 MB RGBA pictures) come
/// from the heap arenas, whose high-water mark then grows with the length
/// of the run: the compositor bench's peak RSS was 369 MiB for 10 s and
/// 696 MiB for 40 s of the same composition. A fixed threshold of 4 MiB
/// keeps such buffers in mappings of their own, returned when freed (367,
/// 370 and 370 MiB for 10, 20 and 40 s). `MALLOC_MMAP_THRESHOLD_` in the
/// environment, where set, wins. Call once, first thing in `main`.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets a malloc parameter; called before
        // other threads allocate much, and safe at any time in glibc.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        }
    }
}
