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
