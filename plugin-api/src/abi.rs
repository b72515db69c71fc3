//! The raw, `#[repr(C)]` side of the ABI: every type and constant that crosses
//! the boundary between the host and a plugin library.
//!
//! Rules that hold for every call:
//! - integers, not Rust enums, carry discriminants (a plugin built elsewhere may
//!   send any value, and an out-of-range Rust enum is undefined behaviour);
//! - strings are borrowed `{ptr, len}` UTF-8 ([`Str`]) unless they are
//!   [`OwnedStr`], which the plugin allocated and the host gives back through
//!   [`VTable::free_string`];
//! - frames are borrowed planes; packets made by an encoder stay owned by the
//!   plugin until [`VTable::packet_release`];
//! - every struct that may grow starts with `struct_size` and ends with
//!   reserved slots, so a minor version can add fields without breaking.

use std::ffi::c_void;

/// Bumped when a change breaks binary compatibility. The host refuses a plugin
/// whose major differs from its own.
pub const ABI_MAJOR: u32 = 1;
/// Bumped when fields or entry points are added compatibly.
///
/// - 1.1: [`MediaInfo`] gained `video_level`, `audio_bits`,
///   `audio_channel_layout` and `start_timecode`, carved out of its reserved
///   slots (the struct's size is unchanged). A 1.0 plugin leaves them zero,
///   which reads as "unknown".
/// - 1.2: [`MediaInfo`] gained `audio_tracks` (how many mono audio streams
///   a file decoder presents as one programme), from the same reserved
///   bytes. A 1.1 plugin leaves it zero: one stream.
pub const ABI_MINOR: u32 = 2;

/// The one symbol a plugin library exports, with the signature [`EntryFn`].
pub const ENTRY_SYMBOL: &str = "deliver_plugin_entry";

/// `deliver_plugin_entry`: called once by the host, returns a descriptor that
/// lives as long as the process (libraries are never unloaded).
pub type EntryFn = unsafe extern "C" fn(host: *const HostApi) -> *const PluginDescriptor;

/// Status codes returned by every fallible entry point.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// The codec needs more input before it can produce output.
    pub const NEED_MORE: i32 = 1;
    /// No more output will come.
    pub const EOF: i32 = 2;
    /// A failure; the error string says why.
    pub const ERROR: i32 = -1;
    /// The plugin panicked; the handle is poisoned and refuses further calls.
    pub const PANICKED: i32 = -2;
    /// The handle panicked earlier.
    pub const POISONED: i32 = -3;
    /// The plugin does not implement this entry point.
    pub const UNSUPPORTED: i32 = -4;
}

/// Media kinds, usable as a bit mask.
pub mod media {
    pub const VIDEO: u32 = 1;
    pub const AUDIO: u32 = 2;
    pub const ANY: u32 = VIDEO | AUDIO;
}

/// Capability kinds.
pub mod cap {
    /// Opens files and decodes them (demuxer + decoders). `name` is `*` for
    /// "anything the backend can read".
    pub const FILE_DECODE: u32 = 1;
    /// Decodes packets of one codec (`name`).
    pub const STREAM_DECODE: u32 = 2;
    /// Encodes one codec (`name`).
    pub const ENCODE: u32 = 3;
    /// Writes one container (`name`).
    pub const MUX: u32 = 4;
}

/// Packet flags.
pub mod packet_flags {
    pub const KEY: u32 = 1;
}

/// Pixel formats that cross the ABI. Planar YUV planes are Y, U, V (then A);
/// 10/12-bit formats store little-endian `u16` samples; `RGBA` is one packed
/// plane of 8-bit straight-alpha samples.
pub mod pix {
    pub const NONE: u32 = 0;
    pub const YUV420P: u32 = 1;
    pub const YUV422P: u32 = 2;
    pub const YUV444P: u32 = 3;
    pub const YUV420P10: u32 = 4;
    pub const YUV422P10: u32 = 5;
    pub const YUV444P10: u32 = 6;
    pub const RGBA: u32 = 7;
    pub const GRAY8: u32 = 8;
    pub const YUVA444P10: u32 = 9;
    pub const YUVA444P12: u32 = 10;
    pub const YUV444P12: u32 = 11;
    pub const YUV422P12: u32 = 12;

    /// Every format, with the name FFmpeg and the presets use for it.
    pub const ALL: &[(u32, &str)] = &[
        (YUV420P, "yuv420p"),
        (YUV422P, "yuv422p"),
        (YUV444P, "yuv444p"),
        (YUV420P10, "yuv420p10le"),
        (YUV422P10, "yuv422p10le"),
        (YUV444P10, "yuv444p10le"),
        (RGBA, "rgba"),
        (GRAY8, "gray"),
        (YUVA444P10, "yuva444p10le"),
        (YUVA444P12, "yuva444p12le"),
        (YUV444P12, "yuv444p12le"),
        (YUV422P12, "yuv422p12le"),
    ];

    /// The preset/FFmpeg name of a format.
    pub fn name(fmt: u32) -> Option<&'static str> {
        ALL.iter().find(|(f, _)| *f == fmt).map(|(_, n)| *n)
    }

    /// The format with this name.
    pub fn from_name(name: &str) -> Option<u32> {
        ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }

    /// Layout facts the host needs to allocate and read planes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Layout {
        /// Number of planes.
        pub planes: usize,
        /// log2 of the horizontal chroma subsampling.
        pub chroma_shift_x: u32,
        /// log2 of the vertical chroma subsampling.
        pub chroma_shift_y: u32,
        /// Bytes per sample.
        pub bytes_per_sample: usize,
        /// Significant bits per sample.
        pub bit_depth: u32,
    }

    /// The layout of a format, or `None` for an unknown one.
    pub fn layout(fmt: u32) -> Option<Layout> {
        let l = |planes, sx, sy, bytes, bits| Layout {
            planes,
            chroma_shift_x: sx,
            chroma_shift_y: sy,
            bytes_per_sample: bytes,
            bit_depth: bits,
        };
        Some(match fmt {
            YUV420P => l(3, 1, 1, 1, 8),
            YUV422P => l(3, 1, 0, 1, 8),
            YUV444P => l(3, 0, 0, 1, 8),
            YUV420P10 => l(3, 1, 1, 2, 10),
            YUV422P10 => l(3, 1, 0, 2, 10),
            YUV444P10 => l(3, 0, 0, 2, 10),
            YUV422P12 => l(3, 1, 0, 2, 12),
            YUV444P12 => l(3, 0, 0, 2, 12),
            YUVA444P10 => l(4, 0, 0, 2, 10),
            YUVA444P12 => l(4, 0, 0, 2, 12),
            GRAY8 => l(1, 0, 0, 1, 8),
            RGBA => l(1, 0, 0, 4, 8),
            _ => return None,
        })
    }
}

/// A borrowed UTF-8 string: valid for the duration of the call it is passed to
/// (or, in a descriptor or returned params, for the lifetime documented there).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Str {
    pub ptr: *const u8,
    pub len: usize,
}

impl Str {
    /// The empty string.
    pub const EMPTY: Str = Str {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Borrows a Rust string. The caller keeps `s` alive as long as the `Str`.
    pub fn new(s: &str) -> Str {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// Reads the string back.
    ///
    /// # Safety
    /// `ptr` must point at `len` readable bytes (or be null with `len == 0`)
    /// that outlive `'a`.
    pub unsafe fn to_str<'a>(self) -> Result<&'a str, std::str::Utf8Error> {
        if self.ptr.is_null() || self.len == 0 {
            return Ok("");
        }
        // SAFETY: guaranteed by the caller.
        std::str::from_utf8(unsafe { std::slice::from_raw_parts(self.ptr, self.len) })
    }
}

/// A string allocated by the plugin (an error message); the host returns it
/// with [`VTable::free_string`], so it is freed by the allocator that made it.
#[repr(C)]
#[derive(Debug)]
pub struct OwnedStr {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl OwnedStr {
    /// No string.
    pub const NULL: OwnedStr = OwnedStr {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };
}

/// A rational number (frame rates, time bases).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rational {
    pub num: i32,
    pub den: i32,
}

impl Rational {
    pub const fn new(num: i32, den: i32) -> Self {
        Rational { num, den }
    }

    /// The value as a float; 0 for a zero denominator.
    pub fn as_f64(self) -> f64 {
        if self.den == 0 {
            0.0
        } else {
            self.num as f64 / self.den as f64
        }
    }
}

/// Colour tags with ITU-T H.273 code points (the values FFmpeg uses):
/// primaries/transfer/matrix 1 = BT.709, 2 = unspecified, 9 = BT.2020 (matrix:
/// non-constant luminance); transfer 13 = sRGB; range 0 = unspecified,
/// 1 = limited ("tv"), 2 = full ("pc").
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColorTags {
    pub primaries: u32,
    pub transfer: u32,
    pub matrix: u32,
    pub range: u32,
}

impl ColorTags {
    /// Nothing known.
    pub const UNSPECIFIED: ColorTags = ColorTags {
        primaries: 2,
        transfer: 2,
        matrix: 2,
        range: 0,
    };
    /// BT.709, limited range: the HD default.
    pub const BT709_LIMITED: ColorTags = ColorTags {
        primaries: 1,
        transfer: 1,
        matrix: 1,
        range: 1,
    };
}

impl Default for ColorTags {
    fn default() -> Self {
        ColorTags::UNSPECIFIED
    }
}

/// One borrowed image plane.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Plane {
    pub data: *const u8,
    /// Bytes from one row to the next.
    pub stride: usize,
    /// Readable bytes from `data`.
    pub len: usize,
}

impl Plane {
    pub const NULL: Plane = Plane {
        data: std::ptr::null(),
        stride: 0,
        len: 0,
    };
}

/// A borrowed video frame.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VideoFrame {
    pub width: u32,
    pub height: u32,
    /// One of [`pix`].
    pub pix_fmt: u32,
    pub n_planes: u32,
    pub planes: [Plane; 4],
    /// Presentation time in `time_base` units.
    pub pts: i64,
    pub time_base: Rational,
    pub color: ColorTags,
    /// Non-zero for a key frame (decoder output) or a forced key frame (encoder input).
    pub key: u32,
}

impl VideoFrame {
    pub const EMPTY: VideoFrame = VideoFrame {
        width: 0,
        height: 0,
        pix_fmt: pix::NONE,
        n_planes: 0,
        planes: [Plane::NULL; 4],
        pts: 0,
        time_base: Rational::new(0, 1),
        color: ColorTags::UNSPECIFIED,
        key: 0,
    };
}

/// Borrowed audio: interleaved `f32` samples.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AudioFrame {
    pub sample_rate: u32,
    pub channels: u32,
    /// Samples per channel.
    pub n_samples: u32,
    /// `n_samples * channels` interleaved samples.
    pub data: *const f32,
    /// Presentation time of the first sample, in 1/sample_rate units.
    pub pts: i64,
}

impl AudioFrame {
    pub const EMPTY: AudioFrame = AudioFrame {
        sample_rate: 0,
        channels: 0,
        n_samples: 0,
        data: std::ptr::null(),
        pts: 0,
    };
}

/// One decoded item: `media` says which of the two members is filled.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Decoded {
    pub media: u32,
    pub video: VideoFrame,
    pub audio: AudioFrame,
}

impl Decoded {
    pub const EMPTY: Decoded = Decoded {
        media: 0,
        video: VideoFrame::EMPTY,
        audio: AudioFrame::EMPTY,
    };
}

/// A timestamp that is not known (FFmpeg's `AV_NOPTS_VALUE`).
pub const NO_PTS: i64 = i64::MIN;

/// A compressed packet. When it comes from an encoder it is owned by the
/// plugin (`private` is its handle) until [`VTable::packet_release`]; when the
/// host passes one in, it is borrowed for the call and `private` is null.
#[repr(C)]
#[derive(Debug)]
pub struct Packet {
    pub data: *const u8,
    pub len: usize,
    /// [`NO_PTS`] when unknown.
    pub pts: i64,
    /// [`NO_PTS`] when unknown.
    pub dts: i64,
    pub duration: i64,
    pub time_base: Rational,
    /// [`packet_flags`].
    pub flags: u32,
    pub private: *mut c_void,
}

impl Packet {
    pub const EMPTY: Packet = Packet {
        data: std::ptr::null(),
        len: 0,
        pts: 0,
        dts: 0,
        duration: 0,
        time_base: Rational::new(0, 1),
        flags: 0,
        private: std::ptr::null_mut(),
    };
}

/// What an encoder produces, as a muxer or a stream decoder needs to know it.
/// Returned by [`VTable::encoder_open`]: its strings and extradata stay valid
/// until the encoder is closed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StreamParams {
    pub struct_size: u32,
    pub media: u32,
    /// Codec name as FFmpeg names codecs ("h264", "aac", "prores", "av1").
    pub codec: Str,
    /// Profile as FFmpeg and ffprobe display it ("High", "Constrained
    /// Baseline", "LC"), empty if none. Presets and capability tables use the
    /// lower-case option values ("high"); compare case-insensitively.
    pub profile: Str,
    pub width: u32,
    pub height: u32,
    pub pix_fmt: u32,
    pub color: ColorTags,
    pub frame_rate: Rational,
    pub sample_rate: u32,
    pub channels: u32,
    /// Samples per channel in one audio packet (0 for video).
    pub frame_size: u32,
    /// Audio priming samples the decoder drops.
    pub initial_padding: u32,
    pub bit_rate: i64,
    /// The time base of this stream's packets.
    pub time_base: Rational,
    pub extradata: *const u8,
    pub extradata_len: usize,
    pub reserved: [usize; 4],
}

/// What the host asks of an encoder.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EncoderConfig {
    pub struct_size: u32,
    pub media: u32,
    /// Codec name ("h264").
    pub codec: Str,
    /// A specific implementation ("libx264"), or empty for the plugin's choice.
    pub implementation: Str,
    pub width: u32,
    pub height: u32,
    /// The format of the frames the host will send.
    pub pix_fmt: u32,
    pub frame_rate: Rational,
    /// The time base of the frames' `pts`.
    pub time_base: Rational,
    pub color: ColorTags,
    pub sample_rate: u32,
    pub channels: u32,
    /// 0 for the codec's default.
    pub bit_rate: i64,
    /// Non-zero when the container wants codec headers out of band (MP4, MOV).
    pub global_header: u32,
    /// 0 = automatic.
    pub threads: u32,
    /// A TOML table of codec options; the plugin validates it and names the
    /// bad key in its error.
    pub options: Str,
    pub reserved: [usize; 4],
}

/// What the host wants decoders to output.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DecoderConfig {
    pub struct_size: u32,
    /// [`media`] mask of the streams to decode.
    pub want: u32,
    /// Convert video to this [`pix`] format; [`pix::NONE`] keeps the native one.
    pub video_pix_fmt: u32,
    /// Resample audio to this rate; 0 keeps the native rate.
    pub audio_sample_rate: u32,
    /// Remix audio to this many channels; 0 keeps the native layout.
    pub audio_channels: u32,
    /// 0 = automatic.
    pub threads: u32,
    pub reserved: [usize; 4],
}

/// A fixed-size NUL-padded name, so that probe results carry no pointers.
pub type Name = [u8; 48];

/// Reads a [`Name`] back.
pub fn name_str(name: &Name) -> &str {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    std::str::from_utf8(&name[..end]).unwrap_or("")
}

/// Writes a [`Name`], truncating at a character boundary.
pub fn name_from(s: &str) -> Name {
    let mut out = [0u8; 48];
    let mut end = s.len().min(out.len() - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&s.as_bytes()[..end]);
    out
}

/// What a file decoder found when it opened a file.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MediaInfo {
    pub struct_size: u32,
    /// Container format name ("mov,mp4,m4a,3gp,3g2,mj2").
    pub container: Name,
    /// -1 if unknown.
    pub duration_us: i64,
    pub bit_rate: i64,
    pub has_video: u32,
    pub video_codec: Name,
    pub video_profile: Name,
    pub width: u32,
    pub height: u32,
    /// Native format as a [`pix`] value, or [`pix::NONE`] if not one of ours.
    pub pix_fmt: u32,
    /// Native format name as FFmpeg names it.
    pub pix_fmt_name: Name,
    pub frame_rate: Rational,
    /// Frame count from the container, -1 if unknown.
    pub n_frames: i64,
    pub video_duration_us: i64,
    pub color: ColorTags,
    /// 1 progressive, 2 interlaced, 0 unknown.
    pub field_order: u32,
    pub has_audio: u32,
    pub audio_codec: Name,
    pub audio_profile: Name,
    pub sample_rate: u32,
    pub channels: u32,
    pub audio_duration_us: i64,
    /// Codec level as FFmpeg numbers it (H.264: 40 = level 4.0; HEVC: 30 ×
    /// the level), 0 if unknown. Since ABI 1.1.
    pub video_level: i32,
    /// Bits per audio sample the stream carries (PCM: 16, 24, 32), 0 if
    /// unknown or not meaningful (lossy codecs). Since ABI 1.1.
    pub audio_bits: u32,
    /// FFmpeg/WAVE channel mask (bit 0 front left, bit 1 front right, bit 2
    /// front centre, …), 0 if unknown or not a mask. Since ABI 1.1.
    pub audio_channel_layout: u64,
    /// Start timecode ("10:00:00:00", drop-frame with `;`), NUL-padded;
    /// empty if the file carries none. Since ABI 1.1.
    pub start_timecode: [u8; 16],
    /// The audio is this many mono streams of the file (MXF and broadcast
    /// MOV carry a programme as one mono track per channel), decoded as one
    /// stream of that many channels in stream order; 0 or 1: one stream.
    /// Since ABI 1.2.
    pub audio_tracks: u32,
    /// What is left of the 1.0 reserved slots (`[usize; 8]`): the fields
    /// above took 36 bytes of them.
    pub reserved: [u8; MEDIA_INFO_RESERVED],
}

/// Bytes of [`MediaInfo::reserved`] left after the 1.1 and 1.2 fields, so
/// that the struct keeps the size it had in ABI 1.0.
pub const MEDIA_INFO_RESERVED: usize = 8 * std::mem::size_of::<usize>() - 36;

// The 1.1 and 1.2 fields fit the 1.0 reserved slots on 64-bit targets only.
const _: () = assert!(
    std::mem::size_of::<usize>() == 8,
    "the deliver plugin ABI is laid out for 64-bit targets"
);

impl MediaInfo {
    pub const EMPTY: MediaInfo = MediaInfo {
        struct_size: std::mem::size_of::<MediaInfo>() as u32,
        container: [0; 48],
        duration_us: -1,
        bit_rate: 0,
        has_video: 0,
        video_codec: [0; 48],
        video_profile: [0; 48],
        width: 0,
        height: 0,
        pix_fmt: pix::NONE,
        pix_fmt_name: [0; 48],
        frame_rate: Rational::new(0, 1),
        n_frames: -1,
        video_duration_us: -1,
        color: ColorTags::UNSPECIFIED,
        field_order: 0,
        has_audio: 0,
        audio_codec: [0; 48],
        audio_profile: [0; 48],
        sample_rate: 0,
        channels: 0,
        audio_duration_us: -1,
        video_level: 0,
        audio_bits: 0,
        audio_channel_layout: 0,
        start_timecode: [0; 16],
        audio_tracks: 0,
        reserved: [0; MEDIA_INFO_RESERVED],
    };

    /// The start timecode, `None` if the file carries none.
    pub fn start_timecode(&self) -> Option<&str> {
        let end = self
            .start_timecode
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.start_timecode.len());
        std::str::from_utf8(&self.start_timecode[..end])
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// Writes the start timecode (truncated to 15 bytes at a character
    /// boundary; timecodes are ASCII).
    pub fn set_start_timecode(&mut self, tc: &str) {
        let mut end = tc.len().min(self.start_timecode.len() - 1);
        while !tc.is_char_boundary(end) {
            end -= 1;
        }
        self.start_timecode = [0; 16];
        self.start_timecode[..end].copy_from_slice(&tc.as_bytes()[..end]);
    }
}

#[cfg(test)]
mod media_info_layout {
    use super::*;

    /// `MediaInfo` as ABI 1.0 laid it out: 1.1 must keep its size and the
    /// offsets of every 1.0 field, or 1.0 plugins would write past the end.
    #[repr(C)]
    #[allow(dead_code)]
    struct MediaInfoV1_0 {
        struct_size: u32,
        container: Name,
        duration_us: i64,
        bit_rate: i64,
        has_video: u32,
        video_codec: Name,
        video_profile: Name,
        width: u32,
        height: u32,
        pix_fmt: u32,
        pix_fmt_name: Name,
        frame_rate: Rational,
        n_frames: i64,
        video_duration_us: i64,
        color: ColorTags,
        field_order: u32,
        has_audio: u32,
        audio_codec: Name,
        audio_profile: Name,
        sample_rate: u32,
        channels: u32,
        audio_duration_us: i64,
        reserved: [usize; 8],
    }

    #[test]
    fn media_info_keeps_the_1_0_size_and_offsets() {
        assert_eq!(
            std::mem::size_of::<MediaInfo>(),
            std::mem::size_of::<MediaInfoV1_0>()
        );
        assert_eq!(
            std::mem::align_of::<MediaInfo>(),
            std::mem::align_of::<MediaInfoV1_0>()
        );
        assert_eq!(
            std::mem::offset_of!(MediaInfo, audio_duration_us),
            std::mem::offset_of!(MediaInfoV1_0, audio_duration_us)
        );
        assert_eq!(
            std::mem::offset_of!(MediaInfo, video_level),
            std::mem::offset_of!(MediaInfoV1_0, reserved)
        );
    }

    #[test]
    fn start_timecode_round_trips_and_zero_is_none() {
        let mut m = MediaInfo::EMPTY;
        assert_eq!(m.start_timecode(), None);
        m.set_start_timecode("10:00:00;00");
        assert_eq!(m.start_timecode(), Some("10:00:00;00"));
    }
}

/// One thing a plugin can do.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Capability {
    /// One of [`cap`].
    pub kind: u32,
    /// [`media`] mask.
    pub media: u32,
    /// Codec or container name ("h264", "aac", "mp4"; `*` for any file).
    pub name: Str,
    /// The implementation ("libx264").
    pub implementation: Str,
    /// Comma-separated profile names.
    pub profiles: Str,
    /// Comma-separated pixel format names accepted on input (encoders).
    pub pix_fmts: Str,
    /// Non-zero for a hardware implementation.
    pub hardware: u32,
    /// Higher wins when two plugins offer the same capability.
    pub rank: i32,
}

/// Handed by the host to the entry point.
#[repr(C)]
pub struct HostApi {
    pub abi_major: u32,
    pub abi_minor: u32,
    pub struct_size: u32,
    /// Logs through the host's `tracing` subscriber (a plugin's own globals are
    /// separate from the host's). Levels: 1 error, 2 warn, 3 info, 4 debug, 5 trace.
    pub log: Option<unsafe extern "C" fn(level: u32, target: Str, message: Str)>,
    pub reserved: [usize; 4],
}

/// Returned by the entry point; lives as long as the process.
#[repr(C)]
pub struct PluginDescriptor {
    pub abi_major: u32,
    pub abi_minor: u32,
    /// `size_of::<PluginDescriptor>()` as the plugin saw it.
    pub struct_size: u32,
    pub name: Str,
    pub version: Str,
    pub description: Str,
    pub capabilities: *const Capability,
    pub n_capabilities: usize,
    pub vtable: *const VTable,
    pub reserved: [usize; 8],
}

// SAFETY: a descriptor is immutable after the entry point returns it and all
// its pointers are to data that lives as long as the process.
unsafe impl Sync for PluginDescriptor {}
unsafe impl Send for PluginDescriptor {}

type H = *mut c_void;
type Err = *mut OwnedStr;

/// The entry points. Any may be `None` where the plugin has no such
/// capability. On a negative status the plugin may have set `*err`, which the
/// host frees with `free_string`.
#[repr(C)]
pub struct VTable {
    pub struct_size: u32,
    pub free_string: Option<unsafe extern "C" fn(s: OwnedStr)>,

    /// Opens a file for decoding; fills `info`.
    pub decoder_open: Option<
        unsafe extern "C" fn(
            path: Str,
            cfg: *const DecoderConfig,
            info: *mut MediaInfo,
            out: *mut H,
            err: Err,
        ) -> i32,
    >,
    /// Seeks so that the next frames start at or before `time_us`.
    pub decoder_seek: Option<unsafe extern "C" fn(h: H, time_us: i64, err: Err) -> i32>,
    /// Fills `out` with the next frame (OK) or returns EOF. The data stays
    /// valid until the next call on this handle.
    pub decoder_next: Option<unsafe extern "C" fn(h: H, out: *mut Decoded, err: Err) -> i32>,
    pub decoder_close: Option<unsafe extern "C" fn(h: H)>,

    /// Opens a decoder for packets described by `params`.
    pub stream_decoder_open: Option<
        unsafe extern "C" fn(
            params: *const StreamParams,
            cfg: *const DecoderConfig,
            out: *mut H,
            err: Err,
        ) -> i32,
    >,
    /// Sends one packet (borrowed), or null to drain.
    pub stream_decoder_send:
        Option<unsafe extern "C" fn(h: H, pkt: *const Packet, err: Err) -> i32>,
    /// OK with a frame valid until the next call, NEED_MORE, or EOF.
    pub stream_decoder_receive:
        Option<unsafe extern "C" fn(h: H, out: *mut Decoded, err: Err) -> i32>,
    pub stream_decoder_close: Option<unsafe extern "C" fn(h: H)>,

    /// Opens an encoder; fills `params` (valid until close).
    pub encoder_open: Option<
        unsafe extern "C" fn(
            cfg: *const EncoderConfig,
            params: *mut StreamParams,
            out: *mut H,
            err: Err,
        ) -> i32,
    >,
    /// Sends a frame (borrowed for the call), or null to drain.
    pub encoder_send_video:
        Option<unsafe extern "C" fn(h: H, frame: *const VideoFrame, err: Err) -> i32>,
    /// Sends samples of any count (the plugin re-blocks them), or null to drain.
    pub encoder_send_audio:
        Option<unsafe extern "C" fn(h: H, frame: *const AudioFrame, err: Err) -> i32>,
    /// OK with a packet the host must release, NEED_MORE, or EOF.
    pub encoder_receive: Option<unsafe extern "C" fn(h: H, out: *mut Packet, err: Err) -> i32>,
    pub packet_release: Option<unsafe extern "C" fn(pkt: *mut Packet)>,
    pub encoder_close: Option<unsafe extern "C" fn(h: H)>,

    /// Creates the output file `path` in container `container`, with
    /// container options as a TOML table.
    pub muxer_open: Option<
        unsafe extern "C" fn(path: Str, container: Str, options: Str, out: *mut H, err: Err) -> i32,
    >,
    pub muxer_add_stream: Option<
        unsafe extern "C" fn(h: H, params: *const StreamParams, index: *mut u32, err: Err) -> i32,
    >,
    pub muxer_write_header: Option<unsafe extern "C" fn(h: H, err: Err) -> i32>,
    pub muxer_write_packet:
        Option<unsafe extern "C" fn(h: H, stream: u32, pkt: *const Packet, err: Err) -> i32>,
    /// Writes the trailer and flushes; the file is complete after OK.
    pub muxer_finish: Option<unsafe extern "C" fn(h: H, err: Err) -> i32>,
    pub muxer_close: Option<unsafe extern "C" fn(h: H)>,

    pub reserved: [usize; 8],
}

// SAFETY: the vtable is immutable and holds only function pointers.
unsafe impl Sync for VTable {}
unsafe impl Send for VTable {}
