//! What this plugin offers, as data. [`probe`] keeps only what the FFmpeg
//! build it runs against actually has, so a distribution without libx264
//! simply does not advertise H.264 encoding.

use crate::ffi_util::{c_string, cstr, find_decoder};
use crate::options::{Kind, OptionSpec, Target};
use deliver_plugin_api::abi::{cap, media};
use deliver_plugin_api::plugin::{level, log, CapabilitySpec};
use ffmpeg_next::ffi;

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
    OptionSpec::new(
        "gop",
        Kind::Int {
            min: 1,
            max: 100_000,
        },
        Target::Av("g"),
    ),
    OptionSpec::new("bframes", Kind::Int { min: 0, max: 16 }, Target::Av("bf")),
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
    }
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

/// Containers offered for writing, by FFmpeg's muxer name.
pub const CONTAINERS: &[&str] = &["mp4", "mov", "mxf", "matroska"];

/// The options a container accepts.
pub fn mux_options(container: &str) -> &'static [OptionSpec] {
    match container {
        "mp4" | "mov" => MOV_OPTIONS,
        _ => &[],
    }
}

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
    let available: Vec<&EncoderEntry> = ENCODERS
        .iter()
        .filter(|e| encoder_exists(e.implementation))
        .collect();
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
