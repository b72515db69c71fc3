//! The `ffmpeg` codec plugin for `deliver`: decodes anything libavformat can
//! read; encodes H.264 (libx264), H.265 (libx265), ProRes (prores_ks),
//! DNxHD/DNxHR (dnxhd), MPEG-2 (mpeg2video), AV1 (libsvtav1), AAC, Opus and
//! PCM, and H.264/H.265 on NVIDIA GPUs (NVENC) where the machine has one;
//! and writes MP4, MOV, MXF (OP1a), Matroska and WebM, all through the
//! versioned plugin ABI of `deliver-plugin-api`. What it offers is probed
//! against the FFmpeg build it runs on.
//!
//! The host loads the `cdylib` and calls its one entry point; tests and tools
//! can do the same through the `rlib`:
//!
//! ```
//! use deliver_plugin_api::{abi, host::PluginRef};
//!
//! // SAFETY: a null HostApi is allowed (logs go to stderr); the descriptor
//! // lives for the process.
//! let desc = unsafe { &*deliver_plugin_ffmpeg::deliver_plugin_entry(std::ptr::null()) };
//! let plugin = unsafe { PluginRef::new(desc) }.expect("the plugin has a vtable");
//! assert_eq!(plugin.name(), "ffmpeg");
//! assert!(plugin
//!     .capabilities()
//!     .iter()
//!     .any(|c| c.kind == abi::cap::MUX && c.name == "mp4"));
//! ```
//!
//! What is offered is declared in [`caps`] as data: adding an encoder that
//! FFmpeg already wraps is one table entry with its profiles, pixel formats,
//! profile rules and option schema, not new code.

pub mod caps;
mod convert;
mod decode;
mod encode;
mod ffi_util;
mod ffmpeg_log;
pub mod hw;
mod mux;
pub mod options;

use deliver_plugin_api::plugin::{CapabilitySpec, Plugin};

pub use decode::{FileDecoder, StreamDecoder};
pub use encode::Encoder;
pub use mux::Muxer;

/// The plugin type handed to `export_plugin!`.
pub struct FfmpegPlugin;

impl Plugin for FfmpegPlugin {
    const NAME: &'static str = "ffmpeg";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "FFmpeg libraries: decode anything libavformat reads; encode H.264, H.265, ProRes, DNxHD/HR, MPEG-2, AV1 (SVT-AV1), AAC, Opus, PCM; mux MP4/MOV/MXF/Matroska/WebM";
    type FileDecoder = FileDecoder;
    type StreamDecoder = StreamDecoder;
    type Encoder = Encoder;
    type Muxer = Muxer;

    fn capabilities() -> Vec<CapabilitySpec> {
        ensure_init();
        caps::probe()
    }
}

deliver_plugin_api::export_plugin!(FfmpegPlugin);

/// Initialises libav* once per process and routes its log through the host.
/// Every constructor calls it too, because a tool may open a decoder without
/// having asked for capabilities first.
pub(crate) fn ensure_init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if let Err(e) = ffmpeg_next::init() {
            deliver_plugin_api::plugin::log(
                deliver_plugin_api::plugin::level::ERROR,
                "ffmpeg",
                &format!("FFmpeg failed to initialise: {e}"),
            );
        }
        ffmpeg_log::install();
    });
}
