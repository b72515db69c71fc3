//! The `rav1e` codec plugin for `deliver`: AV1 encoding with the pure-Rust
//! [rav1e](https://github.com/xiph/rav1e) encoder, 8 and 10 bit, 4:2:0
//! (profile main) and 4:4:4 (profile high), through the versioned plugin
//! ABI of `deliver-plugin-api`. It only encodes: the ffmpeg plugin's MP4
//! and Matroska muxers carry its packets, and its decoders read them back.
//!
//! ```
//! use deliver_plugin_api::{abi, host::PluginRef};
//!
//! // SAFETY: a null HostApi is allowed (logs go to stderr); the descriptor
//! // lives for the process.
//! let desc = unsafe { &*deliver_plugin_rav1e::deliver_plugin_entry(std::ptr::null()) };
//! let plugin = unsafe { PluginRef::new(desc) }.expect("the plugin has a vtable");
//! assert_eq!(plugin.name(), "rav1e");
//! let caps = plugin.capabilities();
//! assert_eq!(caps.len(), 1);
//! assert_eq!((caps[0].kind, caps[0].name.as_str()), (abi::cap::ENCODE, "av1"));
//! assert_eq!(caps[0].implementation, "rav1e");
//! ```
//!
//! The stream it describes to muxers has codec `av1` and, as extradata, the
//! AV1CodecConfigurationRecord rav1e makes (`container_sequence_header()`):
//! the `av1C` box payload of MP4 and the CodecPrivate of Matroska/WebM.
//!
//! Encoder options (`[video.options]` in a preset) are in [`options`];
//! the preset's `video.bit_rate`, when set, switches from a constant
//! quantizer to a target bit rate.

mod color;
mod encode;
pub mod options;
#[cfg(test)]
mod tests;

use deliver_plugin_api::abi::{cap, media};
use deliver_plugin_api::plugin::{CapabilitySpec, Plugin, Unsupported};

pub use encode::Encoder;

/// The rank of the `av1` capability. Below the 100 the ffmpeg plugin gives
/// its software encoders, so that when an FFmpeg build offers an AV1 encoder
/// too (libsvtav1: several times faster at comparable quality on few cores),
/// that one is chosen unless a preset names `encoder = "rav1e"`; a hardware
/// encoder would rank higher still.
pub const RANK: i32 = 50;

/// The plugin type handed to `export_plugin!`.
pub struct Rav1ePlugin;

impl Plugin for Rav1ePlugin {
    const NAME: &'static str = "rav1e";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "rav1e (pure Rust): encode AV1, 8/10-bit 4:2:0 and 4:4:4, quantizer or bit rate";
    type FileDecoder = Unsupported;
    type StreamDecoder = Unsupported;
    type Encoder = Encoder;
    type Muxer = Unsupported;

    fn capabilities() -> Vec<CapabilitySpec> {
        vec![CapabilitySpec {
            kind: cap::ENCODE,
            media: media::VIDEO,
            name: "av1".into(),
            implementation: "rav1e".into(),
            profiles: options::PROFILES
                .iter()
                .map(|(p, _)| (*p).to_owned())
                .collect(),
            pix_fmts: encode::pix_fmt_names(),
            hardware: false,
            rank: RANK,
        }]
    }
}

deliver_plugin_api::export_plugin!(Rav1ePlugin);
