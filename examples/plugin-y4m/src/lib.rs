//! An example third-party plugin for `deliver`, built from
//! `deliver-plugin-api` alone: it "encodes" raw video (codec `rawvideo`:
//! yuv420p, yuv422p, yuv444p, 8 and 10 bits), writes it into YUV4MPEG2
//! files (container `y4m`), and reads both back (a `rawvideo` stream decoder
//! and a `y4m` file decoder).
//!
//! `plugin-api/README.md` walks through it. The whole plugin is the
//! [`Plugin`] impl below plus one trait impl per capability kind; the export
//! macro turns them into the C ABI the host loads:
//!
//! ```
//! use deliver_plugin_api::{abi, host::PluginRef};
//!
//! // What the host does after loading the library (null HostApi: no log
//! // callback, so warnings go to stderr).
//! let desc = unsafe { &*deliver_example_plugin_y4m::deliver_plugin_entry(std::ptr::null()) };
//! assert_eq!((desc.abi_major, desc.abi_minor), (abi::ABI_MAJOR, abi::ABI_MINOR));
//! let plugin = unsafe { PluginRef::new(desc) }.unwrap();
//! assert!(plugin
//!     .capabilities()
//!     .iter()
//!     .any(|c| c.kind == abi::cap::MUX && c.name == "y4m"));
//! ```

pub mod decoder;
pub mod encoder;
pub mod muxer;
pub mod y4m;

use deliver_plugin_api::abi::{cap, media};
use deliver_plugin_api::plugin::{CapabilitySpec, Plugin};

/// The plugin, as `export_plugin!` sees it.
pub struct Y4mPlugin;

/// Low: a plugin that offers the same capability with a higher rank wins
/// (raw video is what any FFmpeg-based plugin could offer too).
const RANK: i32 = 10;

impl Plugin for Y4mPlugin {
    const NAME: &'static str = "y4m";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "example plugin: raw 8/10-bit YUV video in YUV4MPEG2 files, written and read back";
    type FileDecoder = decoder::FileDecoder;
    type StreamDecoder = decoder::StreamDecoder;
    type Encoder = encoder::Encoder;
    type Muxer = muxer::Muxer;

    fn capabilities() -> Vec<CapabilitySpec> {
        let formats: Vec<String> = y4m::format_names().into_iter().map(String::from).collect();
        let cap = |kind, name: &str, implementation: &str, pix_fmts: Vec<String>| CapabilitySpec {
            kind,
            media: media::VIDEO,
            name: name.into(),
            implementation: implementation.into(),
            profiles: Vec::new(),
            pix_fmts,
            hardware: false,
            rank: RANK,
        };
        vec![
            cap(
                cap::ENCODE,
                encoder::CODEC,
                encoder::IMPLEMENTATION,
                formats.clone(),
            ),
            cap(
                cap::STREAM_DECODE,
                encoder::CODEC,
                encoder::IMPLEMENTATION,
                formats,
            ),
            cap(cap::MUX, muxer::CONTAINER, "y4m", Vec::new()),
            cap(cap::FILE_DECODE, muxer::CONTAINER, "y4m", Vec::new()),
        ]
    }
}

deliver_plugin_api::export_plugin!(Y4mPlugin);
