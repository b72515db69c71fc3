//! What this plugin offers, as data. [`probe`] keeps only what the FFmpeg
//! build it runs against actually has, so a distribution without libx264
//! simply does not advertise H.264 encoding.

use crate::ffi_util::{c_string, cstr, find_decoder};
use crate::options::{Kind, OptionSpec, Target};
use deliver_plugin_api::abi::{cap, media};
use deliver_plugin_api::plugin::{level, log, CapabilitySpec};
use ffmpeg_next::ffi;
use std::ffi::c_int;

/// Turns the lines an encoder logged while refusing to open into a shorter
/// explanation, given the frame size and pixel format asked for.
pub type Explain = fn(lines: &[String], width: u32, height: u32, pix_fmt: &str) -> Option<String>;

/// One encoder FFmpeg wraps, with the options a preset may set on it.
#[derive(Debug)]
pub struct EncoderEntry {
    /// FFmpeg's codec name ("h264").
    pub codec: &'static str,
    /// FFmpeg's encoder name ("libx264").
    pub implementation: &'static str,
    pub media: u32,
    /// Profile names as presets write them.
    pub profiles: &'static [&'static str],
    /// Accepted input formats, FFmpeg names (video only).
    pub pix_fmts: &'static [&'static str],
    /// Formats each profile can carry, checked before the encoder opens so
    /// the error names both (x264 only says "Error setting profile").
    /// Profiles not listed take every format.
    pub profile_pix_fmts: &'static [(&'static str, &'static [&'static str])],
    pub rank: i32,
    /// Log lines (substrings) by which the encoder admits, only as a
    /// warning, that it dropped a setting while opening. Opening then fails.
    pub fatal_warnings: &'static [&'static str],
    /// The option schema: every key a preset may use.
    pub options: &'static [OptionSpec],
    /// FFmpeg's profile number for each profile name, for encoders that
    /// take the profile as a private option and leave the codec context's
    /// `profile` unknown (prores_ks, dnxhd): the stream is then described
    /// with the profile that was asked for.
    pub profile_ids: &'static [(&'static str, c_int)],
    /// A shorter account of a refusal than the encoder's own log.
    pub explain: Option<Explain>,
    /// The encoder must be drained, after at least one picture, before it
    /// can be freed: FFmpeg 5.1's libsvtav1 waits in `svt_av1_enc_deinit`
    /// for the end of the stream, and SVT-AV1 1.4 never answers the end of
    /// a stream that had no picture. Others are freed as they are (a
    /// cancelled job should not wait for a look-ahead to be encoded).
    pub drain_before_close: bool,
    /// The profile the encoder picks by itself, by input format, when none
    /// is asked for (prores_ks's `auto`, dnxhd's default). The stream is
    /// described with it, so muxers that need a profile get one.
    pub auto_profiles: &'static [(&'static str, &'static str)],
}

const X264_PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];
const X264_TUNES: &[&str] = &[
    "film",
    "animation",
    "grain",
    "stillimage",
    "fastdecode",
    "zerolatency",
    "psnr",
    "ssim",
];
const X264_PROFILES: &[&str] = &["baseline", "main", "high", "high10", "high422", "high444"];
/// H.264 Annex A levels.
const H264_LEVELS: &[&str] = &[
    "1", "1b", "1.1", "1.2", "1.3", "2", "2.1", "2.2", "3", "3.1", "3.2", "4", "4.1", "4.2", "5",
    "5.1", "5.2", "6", "6.1", "6.2",
];

const X264_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "crf",
        Kind::Float {
            min: 0.0,
            max: 51.0,
        },
        Target::Av("crf"),
    ),
    OptionSpec::new("preset", Kind::Choice(X264_PRESETS), Target::Av("preset")),
    OptionSpec::new("tune", Kind::Choice(X264_TUNES), Target::Av("tune")),
    OptionSpec::new(
        "profile",
        Kind::Choice(X264_PROFILES),
        Target::Av("profile"),
    ),
    OptionSpec::new("level", Kind::Choice(H264_LEVELS), Target::Av("level")),
    // AVCodecContext's generic names: libx264 maps `g` to keyint and `bf`
    // to bframes.
    GOP,
    BFRAMES,
    OptionSpec::new("x264_params", Kind::Text, Target::Av("x264-params")),
    // Closed GOPs are what segment encoding needs (every segment must decode
    // on its own); `false` asks x264 for open GOPs explicitly rather than
    // relying on either library's default.
    OptionSpec::new(
        "closed_gop",
        Kind::Bool,
        Target::Switch {
            on: &[("flags", "+cgop")],
            off: &[("x264opts", "open-gop=1")],
        },
    ),
    // Rate control for broadcast delivery (ATSC/CableLabs-style caps): the
    // generic AVCodecContext options, which libx264 maps to vbv-maxrate and
    // vbv-bufsize.
    MAX_RATE,
    BUFFER_SIZE,
];

/// A bit rate or buffer size in bits: 1 kbit to 1 Gbit.
const BIT_RATE: Kind = Kind::Int {
    min: 1_000,
    max: 1_000_000_000,
};

/// The key-frame interval in frames (AVCodecContext's `g`, which libx264,
/// libx265 and the hardware encoders map to their own).
pub(crate) const GOP: OptionSpec = OptionSpec::new(
    "gop",
    Kind::Int {
        min: 1,
        max: 100_000,
    },
    Target::Av("g"),
);
/// B-frames between references (AVCodecContext's `bf`).
const BFRAMES: OptionSpec =
    OptionSpec::new("bframes", Kind::Int { min: 0, max: 16 }, Target::Av("bf"));
/// Rate caps for broadcast delivery: the generic AVCodecContext options
/// (libx264/libx265 map them to vbv-maxrate and vbv-bufsize).
pub(crate) const MAX_RATE: OptionSpec =
    OptionSpec::new("max_rate", BIT_RATE, Target::Av("maxrate"));
pub(crate) const BUFFER_SIZE: OptionSpec =
    OptionSpec::new("buffer_size", BIT_RATE, Target::Av("bufsize"));

/// prores_ks's `profile` names (FFmpeg 5.1, proresenc_kostya.c).
const PRORES_PROFILES: &[&str] = &["proxy", "lt", "standard", "hq", "4444", "4444xq"];

const PRORES_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "profile",
        Kind::Choice(PRORES_PROFILES),
        Target::Av("profile"),
    ),
    // The quantiser matrix; `auto` follows the profile.
    OptionSpec::new(
        "quant_mat",
        Kind::Choice(&["auto", "proxy", "lt", "standard", "hq", "default"]),
        Target::Av("quant_mat"),
    ),
    // 0 = the profile's own budget (Apple's target data rates).
    OptionSpec::new(
        "bits_per_mb",
        Kind::Int { min: 0, max: 8192 },
        Target::Av("bits_per_mb"),
    ),
    // prores_ks refuses a count that is not a power of two.
    OptionSpec::new(
        "mbs_per_slice",
        Kind::Choice(&["1", "2", "4", "8"]),
        Target::Av("mbs_per_slice"),
    ),
    // The encoder id in each frame header ("apl0" is what Apple's encoder
    // writes; some players look at it). prores_ks takes exactly 4 bytes.
    OptionSpec::new("vendor", Kind::FourCc, Target::Av("vendor")),
    // Bits per alpha sample in 4444 with alpha: 16 (lossless from 10-bit
    // input), 8, or 0 to drop it.
    OptionSpec::new(
        "alpha_bits",
        Kind::Choice(&["0", "8", "16"]),
        Target::Av("alpha_bits"),
    ),
];

/// dnxhd's `profile` names (FFmpeg 5.1, dnxhdenc.c): `dnxhd` takes its
/// compression id from the bit rate, frame size and depth; the DNxHR ones
/// are resolution-independent.
const DNXHD_PROFILES: &[&str] = &[
    "dnxhd",
    "dnxhr_lb",
    "dnxhr_sq",
    "dnxhr_hq",
    "dnxhr_hqx",
    "dnxhr_444",
];

const DNXHD_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "profile",
        Kind::Choice(DNXHD_PROFILES),
        Target::Av("profile"),
    ),
    // Avid Nitris hardware decoders need the conservative bitstream.
    OptionSpec::new("nitris_compat", Kind::Bool, Target::Av("nitris_compat")),
];

/// MPEG-2 profiles by name: mpeg2video takes the generic numeric `profile`
/// (FF_PROFILE_MPEG2_422 = 0, _HIGH = 1, _MAIN = 4, _SIMPLE = 5).
const MPEG2_PROFILES: &[(&str, &str)] =
    &[("422", "0"), ("high", "1"), ("main", "4"), ("simple", "5")];

const MPEG2_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new("profile", Kind::Map(MPEG2_PROFILES), Target::Av("profile")),
    // XDCAM HD422 is a 12-frame long GOP with 2 B-frames.
    OptionSpec::new("gop", Kind::Int { min: 1, max: 300 }, Target::Av("g")),
    BFRAMES,
    // FFmpeg 5.1 refuses a closed GOP while scene-change detection may
    // start new GOPs ("closed gop with scene change detection are not
    // supported yet, set threshold to 1000000000"), so the switch turns
    // detection off with it.
    OptionSpec::new(
        "closed_gop",
        Kind::Bool,
        Target::Switch {
            on: &[("flags", "+cgop"), ("sc_threshold", "1000000000")],
            off: &[],
        },
    ),
    // Constant bit rate for broadcast: min = max = the preset's bit_rate,
    // with the VBV buffer and its initial fullness in bits.
    OptionSpec::new("min_rate", BIT_RATE, Target::Av("minrate")),
    MAX_RATE,
    BUFFER_SIZE,
    OptionSpec::new(
        "rc_init_occupancy",
        BIT_RATE,
        Target::Av("rc_init_occupancy"),
    ),
    // Intra DC precision in bits (XDCAM HD422: 10).
    OptionSpec::new(
        "intra_dc_precision",
        Kind::Int { min: 8, max: 11 },
        Target::Av("dc"),
    ),
    OptionSpec::new("intra_vlc", Kind::Bool, Target::Av("intra_vlc")),
    OptionSpec::new(
        "non_linear_quant",
        Kind::Bool,
        Target::Av("non_linear_quant"),
    ),
    // Interlaced coding (field DCT and field motion estimation) with the
    // field that comes first in time: XDCAM HD422 1080i is top field first.
    // Taken by the plugin, which also marks every picture.
    OptionSpec::new(
        INTERLACED_OPTION,
        Kind::Choice(&["tff", "bff"]),
        Target::Av(INTERLACED_OPTION),
    ),
    OptionSpec::new("qmin", Kind::Int { min: 1, max: 31 }, Target::Av("qmin")),
    OptionSpec::new("qmax", Kind::Int { min: 1, max: 31 }, Target::Av("qmax")),
];

/// libx265's `profile` names offered here (4:2:0, 8 and 10 bit).
const X265_PROFILES: &[&str] = &["main", "main10"];

const X265_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "crf",
        Kind::Float {
            min: 0.0,
            max: 51.0,
        },
        Target::Av("crf"),
    ),
    // x265 uses x264's preset names.
    OptionSpec::new("preset", Kind::Choice(X264_PRESETS), Target::Av("preset")),
    OptionSpec::new(
        "tune",
        Kind::Choice(&[
            "psnr",
            "ssim",
            "grain",
            "fastdecode",
            "zerolatency",
            "animation",
        ]),
        Target::Av("tune"),
    ),
    OptionSpec::new(
        "profile",
        Kind::Choice(X265_PROFILES),
        Target::Av("profile"),
    ),
    // libx265 maps `g` to keyint-max and `bf` to bframes.
    GOP,
    BFRAMES,
    OptionSpec::new("x265_params", Kind::Text, Target::Av("x265-params")),
    // x265 makes open GOPs unless told otherwise; FFmpeg 5.1's libx265
    // wrapper does not read AV_CODEC_FLAG_CLOSED_GOP, so both sides are
    // x265 parameters.
    OptionSpec::new(
        "closed_gop",
        Kind::Bool,
        Target::Switch {
            on: &[("x265-params", "open-gop=0")],
            off: &[("x265-params", "open-gop=1")],
        },
    ),
    MAX_RATE,
    BUFFER_SIZE,
];

const SVTAV1_OPTIONS: &[OptionSpec] = &[
    // 0 (slowest) to 13 (fastest) in SVT-AV1 1.4; -1 = the library default.
    OptionSpec::new(
        "preset",
        Kind::Int { min: -1, max: 13 },
        Target::Av("preset"),
    ),
    // FFmpeg 5.1 treats crf = 0 as "not set", so 1 is the lowest.
    OptionSpec::new("crf", Kind::Int { min: 1, max: 63 }, Target::Av("crf")),
    // AV1's Main profile carries 8- and 10-bit 4:2:0, all this encoder
    // takes (FF_PROFILE_AV1_MAIN = 0).
    OptionSpec::new(
        "profile",
        Kind::Map(&[("main", "0")]),
        Target::Av("profile"),
    ),
    // libsvtav1 sets intra_period_length = g - 1.
    OptionSpec::new(
        "gop",
        Kind::Int {
            min: 2,
            max: 100_000,
        },
        Target::Av("g"),
    ),
    OptionSpec::new("svtav1_params", Kind::Text, Target::Av("svtav1-params")),
    // SVT-AV1's intra refresh type: 2 = key frames (closed GOP), 1 =
    // forward key frames (open GOP); set through its own parameters, which
    // FFmpeg 5.1 applies last.
    OptionSpec::new(
        "closed_gop",
        Kind::Bool,
        Target::Switch {
            on: &[("svtav1-params", "irefresh-type=2")],
            off: &[("svtav1-params", "irefresh-type=1")],
        },
    ),
];

const AAC_OPTIONS: &[OptionSpec] = &[OptionSpec::new(
    "bit_rate",
    // AAC carries at most 6144 bits per channel per 1024-sample frame:
    // 288 kbit/s per channel at 48 kHz, so 1.728 Mbit/s for 5.1.
    Kind::Int {
        min: 8_000,
        max: 1_728_000,
    },
    Target::Av("b"),
)];

const OPUS_OPTIONS: &[OptionSpec] = &[OptionSpec::new(
    "bit_rate",
    // libopus accepts 500 bit/s to 256 kbit/s per channel.
    Kind::Int {
        min: 6_000,
        max: 512_000,
    },
    Target::Av("b"),
)];

/// An uncompressed audio "encoder": FFmpeg's PCM packers take no options.
const fn pcm(codec: &'static str) -> EncoderEntry {
    EncoderEntry {
        codec,
        implementation: codec,
        media: media::AUDIO,
        profiles: &[],
        pix_fmts: &[],
        profile_pix_fmts: &[],
        rank: 100,
        fatal_warnings: &[],
        options: &[],
        profile_ids: &[],
        explain: None,
        drain_before_close: false,
        auto_profiles: &[],
    }
}

/// dnxhd lists every valid frame size, bit rate and format when it refuses
/// a combination; this keeps those for the asked frame size and depth.
fn explain_dnxhd(lines: &[String], width: u32, height: u32, pix_fmt: &str) -> Option<String> {
    // dnxhd names formats without the endianness suffix ("yuv422p10").
    let fmt = pix_fmt.trim_end_matches("le");
    let size = format!("Frame size: {width}x{height}p;");
    let rates: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains(&size) && l.trim_end().ends_with(&format!("pixel format: {fmt}")))
        .filter_map(|l| l.split("bitrate: ").nth(1)?.split(';').next())
        .collect();
    let first = lines.first()?;
    Some(if rates.is_empty() {
        format!("{first} none for {width}x{height} progressive {pix_fmt}")
    } else {
        format!(
            "{} for {width}x{height} progressive {pix_fmt}, the DNxHD bit-rate classes are {} (video.bit_rate in bits per second; the class is the frame size, the rate follows the frame rate)",
            first.trim_end_matches(':').trim_end_matches(". Valid DNxHD profiles"),
            rates.join(", ")
        )
    })
}

/// Every encoder this plugin can drive, best first within a codec.
pub const ENCODERS: &[EncoderEntry] = &[
    EncoderEntry {
        codec: "h264",
        implementation: "libx264",
        media: media::VIDEO,
        profiles: X264_PROFILES,
        pix_fmts: &[
            "yuv420p",
            "yuv422p",
            "yuv444p",
            "yuv420p10le",
            "yuv422p10le",
        ],
        profile_pix_fmts: &[
            ("baseline", &["yuv420p"]),
            ("main", &["yuv420p"]),
            ("high", &["yuv420p"]),
            ("high10", &["yuv420p", "yuv420p10le"]),
            (
                "high422",
                &["yuv420p", "yuv422p", "yuv420p10le", "yuv422p10le"],
            ),
        ],
        rank: 100,
        // FFmpeg 5.1 only warns about an x264_params entry x264 rejects.
        fatal_warnings: &["Error parsing option"],
        options: X264_OPTIONS,
        profile_ids: &[],
        explain: None,
        drain_before_close: false,
        auto_profiles: &[],
    },
    EncoderEntry {
        codec: "prores",
        implementation: "prores_ks",
        media: media::VIDEO,
        profiles: PRORES_PROFILES,
        // yuva444p10le: 4444 with an alpha channel (prores_ks codes it
        // losslessly at `alpha_bits`).
        pix_fmts: &["yuv422p10le", "yuv444p10le", "yuva444p10le"],
        profile_pix_fmts: &[
            ("proxy", &["yuv422p10le"]),
            ("lt", &["yuv422p10le"]),
            ("standard", &["yuv422p10le"]),
            ("hq", &["yuv422p10le"]),
            ("4444", &["yuv444p10le", "yuva444p10le"]),
            ("4444xq", &["yuv444p10le", "yuva444p10le"]),
        ],
        rank: 100,
        fatal_warnings: &[],
        options: PRORES_OPTIONS,
        profile_ids: &[
            ("proxy", ffi::FF_PROFILE_PRORES_PROXY),
            ("lt", ffi::FF_PROFILE_PRORES_LT),
            ("standard", ffi::FF_PROFILE_PRORES_STANDARD),
            ("hq", ffi::FF_PROFILE_PRORES_HQ),
            ("4444", ffi::FF_PROFILE_PRORES_4444),
            ("4444xq", ffi::FF_PROFILE_PRORES_XQ),
        ],
        explain: None,
        drain_before_close: false,
        auto_profiles: &[
            ("yuv422p10le", "hq"),
            ("yuv444p10le", "4444"),
            ("yuva444p10le", "4444"),
        ],
    },
    EncoderEntry {
        codec: "dnxhd",
        implementation: "dnxhd",
        media: media::VIDEO,
        profiles: DNXHD_PROFILES,
        // gbrp10le (RGB 4:4:4) is not a host format.
        pix_fmts: &["yuv422p", "yuv422p10le", "yuv444p10le"],
        profile_pix_fmts: &[
            ("dnxhd", &["yuv422p", "yuv422p10le"]),
            ("dnxhr_lb", &["yuv422p"]),
            ("dnxhr_sq", &["yuv422p"]),
            ("dnxhr_hq", &["yuv422p"]),
            ("dnxhr_hqx", &["yuv422p10le"]),
            ("dnxhr_444", &["yuv444p10le"]),
        ],
        rank: 100,
        fatal_warnings: &[],
        options: DNXHD_OPTIONS,
        profile_ids: &[
            ("dnxhd", ffi::FF_PROFILE_DNXHD),
            ("dnxhr_lb", ffi::FF_PROFILE_DNXHR_LB),
            ("dnxhr_sq", ffi::FF_PROFILE_DNXHR_SQ),
            ("dnxhr_hq", ffi::FF_PROFILE_DNXHR_HQ),
            ("dnxhr_hqx", ffi::FF_PROFILE_DNXHR_HQX),
            ("dnxhr_444", ffi::FF_PROFILE_DNXHR_444),
        ],
        explain: Some(explain_dnxhd),
        drain_before_close: false,
        auto_profiles: &[
            ("yuv422p", "dnxhd"),
            ("yuv422p10le", "dnxhd"),
            ("yuv444p10le", "dnxhd"),
        ],
    },
    EncoderEntry {
        codec: "mpeg2video",
        implementation: "mpeg2video",
        media: media::VIDEO,
        profiles: &["422", "high", "main", "simple"],
        pix_fmts: &["yuv420p", "yuv422p"],
        profile_pix_fmts: &[
            ("422", &["yuv420p", "yuv422p"]),
            ("high", &["yuv420p", "yuv422p"]),
            ("main", &["yuv420p"]),
            ("simple", &["yuv420p"]),
        ],
        rank: 100,
        fatal_warnings: &[],
        options: MPEG2_OPTIONS,
        profile_ids: &[
            ("422", ffi::FF_PROFILE_MPEG2_422),
            ("high", ffi::FF_PROFILE_MPEG2_HIGH),
            ("main", ffi::FF_PROFILE_MPEG2_MAIN),
            ("simple", ffi::FF_PROFILE_MPEG2_SIMPLE),
        ],
        explain: None,
        drain_before_close: false,
        auto_profiles: &[],
    },
    EncoderEntry {
        codec: "hevc",
        implementation: "libx265",
        media: media::VIDEO,
        profiles: X265_PROFILES,
        pix_fmts: &["yuv420p", "yuv420p10le"],
        profile_pix_fmts: &[
            ("main", &["yuv420p"]),
            ("main10", &["yuv420p", "yuv420p10le"]),
        ],
        rank: 100,
        // FFmpeg 5.1's libx265 only warns about x265_params entries x265
        // does not know or cannot parse, and encodes without them.
        fatal_warnings: &["Unknown option:", "Invalid value for"],
        options: X265_OPTIONS,
        profile_ids: &[
            ("main", ffi::FF_PROFILE_HEVC_MAIN),
            ("main10", ffi::FF_PROFILE_HEVC_MAIN_10),
        ],
        explain: None,
        drain_before_close: false,
        auto_profiles: &[],
    },
    EncoderEntry {
        codec: "av1",
        implementation: "libsvtav1",
        media: media::VIDEO,
        profiles: &["main"],
        pix_fmts: &["yuv420p", "yuv420p10le"],
        profile_pix_fmts: &[("main", &["yuv420p", "yuv420p10le"])],
        // The production AV1 encoder of this plugin. Another plugin's AV1
        // (rav1e) ranks by its own declaration; a preset's `encoder =
        // "libsvtav1"` or `"rav1e"` picks one regardless of rank.
        rank: 100,
        // svtav1_params entries SVT-AV1 rejects are only a warning in
        // FFmpeg 5.1 unless err_recognition=explode.
        fatal_warnings: &["Error parsing option"],
        options: SVTAV1_OPTIONS,
        profile_ids: &[("main", ffi::FF_PROFILE_AV1_MAIN)],
        explain: None,
        drain_before_close: true,
        auto_profiles: &[],
    },
    EncoderEntry {
        codec: "aac",
        implementation: "aac",
        media: media::AUDIO,
        profiles: &["LC"],
        pix_fmts: &[],
        profile_pix_fmts: &[],
        rank: 100,
        fatal_warnings: &[],
        options: AAC_OPTIONS,
        profile_ids: &[],
        explain: None,
        drain_before_close: false,
        auto_profiles: &[],
    },
    EncoderEntry {
        codec: "opus",
        implementation: "libopus",
        media: media::AUDIO,
        profiles: &[],
        pix_fmts: &[],
        profile_pix_fmts: &[],
        rank: 100,
        fatal_warnings: &[],
        options: OPUS_OPTIONS,
        profile_ids: &[],
        explain: None,
        drain_before_close: false,
        auto_profiles: &[],
    },
    pcm("pcm_s24le"),
    pcm("pcm_s16le"),
];

/// Codecs offered for packet decoding, by FFmpeg's codec name.
pub const STREAM_DECODERS: &[&str] = &[
    "h264",
    "hevc",
    "aac",
    "mpeg2video",
    "prores",
    "dnxhd",
    "av1",
    "opus",
    "pcm_s16le",
    "pcm_s24le",
];

/// Containers offered for writing, by FFmpeg's muxer name: `mxf` writes
/// OP1a; `webm` is the Matroska subset web players take (VP8/VP9/AV1 with
/// Vorbis/Opus), which its muxer enforces.
pub const CONTAINERS: &[&str] = &["mp4", "mov", "mxf", "matroska", "webm"];

/// The options a container accepts.
pub fn mux_options(container: &str) -> &'static [OptionSpec] {
    match container {
        "mp4" | "mov" => MOV_OPTIONS,
        "mxf" => MXF_OPTIONS,
        _ => &[],
    }
}

/// The encoder option for interlaced coding (`tff` or `bff`); the encoder
/// takes it itself rather than passing it to FFmpeg.
pub const INTERLACED_OPTION: &str = "interlaced";

/// The muxer option that describes the video stream's field order
/// (`progressive`, `tt` top field first, `bb` bottom field first): MOV
/// writes it as the `fiel` atom, MXF as frame layout and field dominance.
/// Applied to the video stream, like `video_tag`.
pub const FIELD_ORDER_OPTION: &str = "field_order";

const FIELD_ORDER: OptionSpec = OptionSpec::new(
    FIELD_ORDER_OPTION,
    Kind::Choice(&["progressive", "tt", "bb"]),
    Target::Av(FIELD_ORDER_OPTION),
);

/// Options of the MXF muxer.
const MXF_OPTIONS: &[OptionSpec] = &[FIELD_ORDER];

/// The muxer option that sets the video sample entry's fourcc; the muxer
/// applies it to the video stream, not to the format context.
pub const VIDEO_TAG_OPTION: &str = "video_tag";

/// Options of the MP4/MOV muxer (movenc).
const MOV_OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "faststart",
        Kind::Bool,
        Target::Switch {
            on: &[("movflags", "+faststart")],
            off: &[],
        },
    ),
    OptionSpec::new("brand", Kind::Text, Target::Av("brand")),
    // The video sample entry's type (`hvc1` rather than movenc's default
    // `hev1` for HEVC, which Apple players require); FFmpeg refuses one
    // that does not name the stream's codec.
    OptionSpec::new(VIDEO_TAG_OPTION, Kind::FourCc, Target::Av(VIDEO_TAG_OPTION)),
    FIELD_ORDER,
];

/// Whether FFmpeg has an encoder by this name.
pub fn encoder_exists(name: &str) -> bool {
    find_encoder(name).is_some()
}

pub(crate) fn find_encoder(name: &str) -> Option<*const ffi::AVCodec> {
    let c = c_string(name, "encoder name").ok()?;
    // SAFETY: valid C string; codecs are static.
    let p = unsafe { ffi::avcodec_find_encoder_by_name(c.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// The pixel formats an encoder accepts, by FFmpeg name; `None` when the
/// encoder does not list them.
fn encoder_pix_fmts(codec: *const ffi::AVCodec) -> Option<Vec<String>> {
    // SAFETY: a static codec; its list ends with NONE.
    unsafe {
        let mut p = (*codec).pix_fmts;
        if p.is_null() {
            return None;
        }
        let mut out = Vec::new();
        while *p != ffi::AVPixelFormat::AV_PIX_FMT_NONE {
            out.push(cstr(ffi::av_get_pix_fmt_name(*p)));
            p = p.add(1);
        }
        Some(out)
    }
}

/// The encoder entry for a request: `implementation` if given, else the
/// best-ranked entry for `codec` whose encoder exists.
///
/// # Errors
/// Names the codec/implementation and lists what is available.
pub fn select_encoder(
    codec: &str,
    implementation: &str,
    media_kind: u32,
) -> Result<&'static EncoderEntry, String> {
    let mut available: Vec<&EncoderEntry> = ENCODERS
        .iter()
        .filter(|e| encoder_exists(e.implementation))
        .collect();
    // Hardware encoders only by name: the host chooses them by its policy,
    // and the probe behind them need not run for software-only work.
    if crate::hw::is_hardware(implementation) {
        available.extend(crate::hw::usable(implementation));
    }
    let list = || {
        available
            .iter()
            .map(|e| format!("{} ({})", e.codec, e.implementation))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut candidates: Vec<&&EncoderEntry> = available
        .iter()
        .filter(|e| {
            e.codec == codec && (implementation.is_empty() || e.implementation == implementation)
        })
        .collect();
    candidates.sort_by_key(|e| -e.rank);
    let entry = candidates.first().ok_or_else(|| {
        if implementation.is_empty() {
            format!(
                "this plugin cannot encode `{codec}` here; it offers: {}",
                list()
            )
        } else {
            format!(
                "this plugin cannot encode `{codec}` with `{implementation}` here; it offers: {}",
                list()
            )
        }
    })?;
    if entry.media != media_kind {
        return Err(format!(
            "`{codec}` is a {} codec but the encoder was asked for media {media_kind}",
            if entry.media == media::VIDEO {
                "video"
            } else {
                "audio"
            }
        ));
    }
    Ok(entry)
}

/// Builds the capability table from what this FFmpeg build has, and logs it.
pub fn probe() -> Vec<CapabilitySpec> {
    let mut out = vec![CapabilitySpec {
        kind: cap::FILE_DECODE,
        media: media::ANY,
        name: "*".into(),
        implementation: "libavformat".into(),
        profiles: Vec::new(),
        pix_fmts: Vec::new(),
        hardware: false,
        rank: 100,
    }];

    let mut decoders = Vec::new();
    for &name in STREAM_DECODERS {
        let Some(dec) = find_decoder(name) else {
            log(
                level::INFO,
                "ffmpeg",
                &format!("no decoder for `{name}` in this FFmpeg build"),
            );
            continue;
        };
        // SAFETY: static codec.
        let (implementation, kind) = unsafe { (cstr((*dec).name), (*dec).type_) };
        let m = match kind {
            ffi::AVMediaType::AVMEDIA_TYPE_VIDEO => media::VIDEO,
            ffi::AVMediaType::AVMEDIA_TYPE_AUDIO => media::AUDIO,
            _ => continue,
        };
        decoders.push(format!("{name} ({implementation})"));
        out.push(CapabilitySpec {
            kind: cap::STREAM_DECODE,
            media: m,
            name: name.into(),
            implementation,
            profiles: Vec::new(),
            pix_fmts: Vec::new(),
            hardware: false,
            rank: 100,
        });
    }

    let mut encoders = Vec::new();
    for e in ENCODERS {
        let Some(codec) = find_encoder(e.implementation) else {
            log(
                level::INFO,
                "ffmpeg",
                &format!(
                    "no `{}` encoder in this FFmpeg build: `{}` encoding not offered",
                    e.implementation, e.codec
                ),
            );
            continue;
        };
        // Declare only the formats this build of the encoder takes (an
        // 8-bit-only x264 would refuse the 10-bit ones).
        let pix_fmts: Vec<String> = match encoder_pix_fmts(codec) {
            Some(supported) => e
                .pix_fmts
                .iter()
                .filter(|p| supported.iter().any(|s| s == *p))
                .map(|p| (*p).to_owned())
                .collect(),
            None => e.pix_fmts.iter().map(|p| (*p).to_owned()).collect(),
        };
        encoders.push(format!("{} ({})", e.codec, e.implementation));
        out.push(CapabilitySpec {
            kind: cap::ENCODE,
            media: e.media,
            name: e.codec.into(),
            implementation: e.implementation.into(),
            profiles: e.profiles.iter().map(|p| (*p).to_owned()).collect(),
            pix_fmts,
            hardware: false,
            rank: e.rank,
        });
    }

    // Only what opened and encoded a picture on this machine.
    for e in &crate::hw::probed().usable {
        let pix_fmts = match find_encoder(e.implementation).and_then(encoder_pix_fmts) {
            Some(supported) => e
                .pix_fmts
                .iter()
                .filter(|p| supported.iter().any(|s| s == *p))
                .map(|p| (*p).to_owned())
                .collect(),
            None => e.pix_fmts.iter().map(|p| (*p).to_owned()).collect(),
        };
        encoders.push(format!("{} ({}, hardware)", e.codec, e.implementation));
        out.push(CapabilitySpec {
            kind: cap::ENCODE,
            media: e.media,
            name: e.codec.into(),
            implementation: e.implementation.into(),
            profiles: e.profiles.iter().map(|p| (*p).to_owned()).collect(),
            pix_fmts,
            hardware: true,
            rank: e.rank,
        });
    }

    let mut containers = Vec::new();
    for &c in CONTAINERS {
        let name = match c_string(c, "container") {
            Ok(n) => n,
            Err(_) => continue,
        };
        // SAFETY: valid C string; formats are static.
        let fmt =
            unsafe { ffi::av_guess_format(name.as_ptr(), std::ptr::null(), std::ptr::null()) };
        if fmt.is_null() {
            log(
                level::INFO,
                "ffmpeg",
                &format!("no `{c}` muxer in this FFmpeg build"),
            );
            continue;
        }
        containers.push(c);
        out.push(CapabilitySpec {
            kind: cap::MUX,
            media: media::ANY,
            name: c.into(),
            implementation: "libavformat".into(),
            profiles: Vec::new(),
            pix_fmts: Vec::new(),
            hardware: false,
            rank: 100,
        });
    }

    // SAFETY: plain getters.
    let (avc, avf) = unsafe { (ffi::avcodec_version(), ffi::avformat_version()) };
    log(
        level::INFO,
        "ffmpeg",
        &format!(
            "probed libavcodec {}.{}.{} / libavformat {}.{}.{}: decode [{}], encode [{}], mux [{}]",
            avc >> 16,
            (avc >> 8) & 0xff,
            avc & 0xff,
            avf >> 16,
            (avf >> 8) & 0xff,
            avf & 0xff,
            decoders.join(", "),
            encoders.join(", "),
            containers.join(", ")
        ),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::parse;

    fn entry(implementation: &str) -> &'static EncoderEntry {
        ENCODERS
            .iter()
            .find(|e| e.implementation == implementation)
            .unwrap()
    }

    #[test]
    fn profile_rules_name_only_declared_profiles_and_formats() {
        for e in ENCODERS {
            for (p, fmts) in e.profile_pix_fmts {
                assert!(e.profiles.contains(p), "{}: rule for {p}", e.implementation);
                for f in *fmts {
                    assert!(
                        e.pix_fmts.contains(f),
                        "{}: {p} takes {f}",
                        e.implementation
                    );
                }
            }
            for (p, _) in e.profile_ids {
                assert!(e.profiles.contains(p), "{}: id for {p}", e.implementation);
            }
            // Every declared profile passes the entry's own option schema.
            if e.options.iter().any(|o| o.key == "profile") {
                for p in e.profiles {
                    let s = parse(&format!("profile = \"{p}\""), e.options, "o")
                        .unwrap_or_else(|m| panic!("{}: {m}", e.implementation));
                    assert_eq!(s.written("profile"), Some(*p));
                }
            }
        }
    }

    #[test]
    fn every_new_video_encoder_declares_ids_for_its_profiles() {
        for imp in ["prores_ks", "dnxhd", "mpeg2video", "libx265", "libsvtav1"] {
            let e = entry(imp);
            assert_eq!(e.profile_ids.len(), e.profiles.len(), "{imp}");
            assert_eq!(e.media, media::VIDEO);
        }
    }

    #[test]
    fn prores_profiles_split_by_chroma() {
        let e = entry("prores_ks");
        let rule = |p: &str| e.profile_pix_fmts.iter().find(|(n, _)| *n == p).unwrap().1;
        for p in ["proxy", "lt", "standard", "hq"] {
            assert_eq!(rule(p), ["yuv422p10le"]);
        }
        for p in ["4444", "4444xq"] {
            assert_eq!(rule(p), ["yuv444p10le", "yuva444p10le"]);
        }
        assert!(e.pix_fmts.contains(&"yuva444p10le"), "4444 keeps alpha");
        let s = parse("profile = \"4444xq\"\nvendor = \"apl0\"", e.options, "o").unwrap();
        assert_eq!(s.get("profile"), Some("4444xq"));
        assert_eq!(s.get("vendor"), Some("apl0"));
        assert!(parse("mbs_per_slice = 3", e.options, "o").is_err());
        assert!(parse("vendor = \"apple\"", e.options, "o").is_err());
    }

    #[test]
    fn mpeg2_options_map_to_ffmpegs_names() {
        let e = entry("mpeg2video");
        let s = parse(
            "profile = \"422\"\ngop = 12\nbframes = 2\nclosed_gop = true\n\
             min_rate = 50000000\nmax_rate = 50000000\nbuffer_size = 36408333\n\
             rc_init_occupancy = 36408333\nintra_dc_precision = 10\nintra_vlc = true\n\
             non_linear_quant = true\nqmin = 1\nqmax = 12",
            e.options,
            "o",
        )
        .unwrap();
        for (k, v) in [
            ("profile", "0"),
            ("g", "12"),
            ("bf", "2"),
            ("flags", "+cgop"),
            // FFmpeg refuses closed GOPs with scene-change detection on.
            ("sc_threshold", "1000000000"),
            ("minrate", "50000000"),
            ("maxrate", "50000000"),
            ("bufsize", "36408333"),
            ("rc_init_occupancy", "36408333"),
            ("dc", "10"),
            ("intra_vlc", "true"),
            ("non_linear_quant", "true"),
            ("qmin", "1"),
            ("qmax", "12"),
        ] {
            assert_eq!(s.get(k), Some(v), "{k}");
        }
        assert_eq!(s.written("profile"), Some("422"));
        let e = parse("intra_dc_precision = 12", e.options, "o").unwrap_err();
        assert!(e.contains("from 8 to 11"), "{e}");
    }

    #[test]
    fn x265_and_svtav1_closed_gops_are_their_own_parameters() {
        let x = entry("libx265");
        let s = parse(
            "closed_gop = true\nx265_params = \"aq-mode=3\"",
            x.options,
            "o",
        )
        .unwrap();
        // Joined into one x265-params list.
        assert_eq!(s.get("x265-params"), Some("open-gop=0:aq-mode=3"));
        let s = parse("closed_gop = false", x.options, "o").unwrap();
        assert_eq!(s.get("x265-params"), Some("open-gop=1"));
        let a = entry("libsvtav1");
        let s = parse("closed_gop = true\npreset = 8\ncrf = 30", a.options, "o").unwrap();
        assert_eq!(s.get("svtav1-params"), Some("irefresh-type=2"));
        assert_eq!((s.get("preset"), s.get("crf")), (Some("8"), Some("30")));
        let s = parse("profile = \"main\"", a.options, "o").unwrap();
        assert_eq!(s.get("profile"), Some("0"));
        // FFmpeg 5.1 reads crf = 0 as "unset".
        assert!(parse("crf = 0", a.options, "o").is_err());
        assert!(parse("preset = 14", a.options, "o").is_err());
    }

    #[test]
    fn dnxhd_refusals_keep_the_classes_of_the_asked_size_and_depth() {
        let lines: Vec<String> = [
            "video parameters incompatible with DNxHD. Valid DNxHD profiles:",
            "Frame size: 1920x1080p; bitrate: 175Mbps; pixel format: yuv422p10",
            "Frame size: 1920x1080p; bitrate: 120Mbps; pixel format: yuv422p",
            "Frame size: 1920x1080p; bitrate: 185Mbps; pixel format: yuv422p",
            "Frame size: 1920x1080i; bitrate: 145Mbps; pixel format: yuv422p",
            "Frame size: 1280x720p; bitrate: 90Mbps; pixel format: yuv422p",
        ]
        .map(str::to_owned)
        .to_vec();
        let s = explain_dnxhd(&lines, 1920, 1080, "yuv422p").unwrap();
        assert!(s.contains("classes are 120Mbps, 185Mbps"), "{s}");
        let s = explain_dnxhd(&lines, 1920, 1080, "yuv422p10le").unwrap();
        assert!(s.contains("classes are 175Mbps"), "{s}");
        let s = explain_dnxhd(&lines, 640, 480, "yuv422p").unwrap();
        assert!(s.contains("none for 640x480"), "{s}");
        assert_eq!(explain_dnxhd(&[], 1920, 1080, "yuv422p"), None);
    }

    #[test]
    fn mov_takes_a_video_tag_and_webm_is_offered() {
        let s = parse("video_tag = \"hvc1\"", mux_options("mov"), "o").unwrap();
        assert_eq!(s.get(VIDEO_TAG_OPTION), Some("hvc1"));
        assert!(parse("video_tag = \"hvc\"", mux_options("mp4"), "o").is_err());
        assert!(CONTAINERS.contains(&"webm") && CONTAINERS.contains(&"mxf"));
    }
}
