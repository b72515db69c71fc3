//! Spec checks of a delivered file against its QC profile.
//!
//! One decode pass feeds an [`Analyzer`] every picture and all audio; its
//! [`Analysis`] (events found as they happened, a few thumbnails) and the
//! file's [`Probe`] are then held by [`spec_checks`] to what the deliverable
//! promised ([`Expect`]) and the preset's [`QcProfile`]. [`check_file`] does
//! all of it for a file on disk.
//!
//! ```no_run
//! use deliver::qc::{self, Expect, QcProfile};
//! use deliver::plugins::Registry;
//!
//! let reg = Registry::load(&deliver::plugins::default_dirs());
//! let dec = qc::file_decoder(&reg).expect("a file decoder");
//! let expect = Expect { frames: Some(250), ..Expect::default() };
//! let qc = qc::check_file(&dec, "out.mov".as_ref(), &expect, &QcProfile::default()).unwrap();
//! for c in &qc.checks {
//!     println!("{} {} {}", c.id, if c.pass { "pass" } else { "FAIL" }, c.value);
//! }
//! ```

mod analyzer;
mod checks;
mod profile;
pub mod sample_entry;
pub mod timecode;

pub use analyzer::{Analysis, Analyzer, AudioStats, FrameThumb, LevelStats, Span, THUMB_WIDTH};
pub use checks::spec_checks;
pub use profile::{
    AudioQcSpec, BlackSpec, FlashSpec, FreezeSpec, LegalRangeSpec, QcFieldError, QcProfile,
    SilenceSpec, TimecodeSpec, CHECK_IDS,
};

/// The ABI types [`Expect`] is written in, for callers without the plugin API.
pub use deliver_plugin_api::abi::{ColorTags, Rational};

use crate::plugins::Registry;
use crate::report::{Check, Probe, Thumbnail};
use deliver_plugin_api::abi::{self, cap, media};
use deliver_plugin_api::host::{Frame, PluginRef};
use std::path::Path;

/// The best-ranked loaded plugin that decodes whole files.
pub fn file_decoder(reg: &Registry) -> Option<PluginRef> {
    reg.find(cap::FILE_DECODE, "*", None).map(|c| c.plugin)
}

/// Progressive or interlaced pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scan {
    Progressive,
    Interlaced,
}

/// What the deliverable promises about its audio; `None` is not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AudioExpect {
    pub codec: Option<String>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    /// Bits per sample (PCM).
    pub bit_depth: Option<u32>,
}

/// What the deliverable promises; every `None` is not checked (except the
/// colour tags: `None` still requires the file to be tagged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// FFmpeg codec name ("h264").
    pub codec: Option<String>,
    /// As the encoder option names it ("high", "main10", "dnxhr_hq") or as
    /// FFmpeg displays it ("High"): compared without case and punctuation.
    pub profile: Option<String>,
    /// The highest level, as FFmpeg numbers it (H.264: 40 = 4.0).
    pub level: Option<i32>,
    /// FFmpeg pixel format name ("yuv420p").
    pub pix_fmt: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<Rational>,
    pub scan: Option<Scan>,
    /// Frames of the composition: the exact count, and (with the frame
    /// rate) the duration.
    pub frames: Option<u64>,
    pub colour: Option<ColorTags>,
    /// `None`: no audio promised, none checked (silence is still analysed
    /// when the file has audio).
    pub audio: Option<AudioExpect>,
    /// Over the profile's `[qc.timecode] start`.
    pub start_timecode: Option<String>,
}

/// The spec checks of one file.
#[derive(Debug, Clone)]
pub struct FileQc {
    pub probe: Probe,
    pub checks: Vec<Check>,
    pub thumbnails: Vec<Thumbnail>,
    /// The measurements behind the checks.
    pub analysis: Analysis,
}

fn field_order_name(f: u32) -> &'static str {
    match f {
        1 => "progressive",
        2 => "interlaced",
        _ => "unknown",
    }
}

/// What a file is, from its decoder's description and the frames decoded.
pub fn probe(info: &abi::MediaInfo, frames: u64) -> Probe {
    let s = |n: &abi::Name| abi::name_str(n).to_owned();
    let duration_us = if info.video_duration_us > 0 {
        info.video_duration_us
    } else {
        info.duration_us
    };
    Probe {
        container: s(&info.container),
        video_codec: s(&info.video_codec),
        video_profile: s(&info.video_profile),
        width: info.width,
        height: info.height,
        pix_fmt: s(&info.pix_fmt_name),
        frame_rate: format!("{}/{}", info.frame_rate.num, info.frame_rate.den),
        frames,
        duration_s: duration_us.max(0) as f64 / 1e6,
        colour_primaries: info.color.primaries,
        colour_transfer: info.color.transfer,
        colour_matrix: info.color.matrix,
        colour_range: info.color.range,
        audio_codec: s(&info.audio_codec),
        sample_rate: info.sample_rate,
        channels: info.channels,
        video_level: info.video_level,
        field_order: field_order_name(info.field_order).to_owned(),
        audio_bits: info.audio_bits,
        channel_layout: info.audio_channel_layout,
        start_timecode: info.start_timecode().map(str::to_owned),
    }
}

/// The fourcc check of a QuickTime/MP4 file: its video sample entry is the
/// profile's `codec_tag` (the preset's `video.fourcc`). `None` when the
/// profile names none.
pub fn codec_tag_check(path: &Path, profile: &QcProfile) -> Option<Check> {
    let want = profile.codec_tag.as_deref()?;
    let (value, pass) = match sample_entry::video_fourcc(path) {
        Ok(tag) => {
            let pass = tag == want;
            (serde_json::Value::from(tag), pass)
        }
        Err(e) => (serde_json::Value::from(format!("none: {e}")), false),
    };
    Some(
        Check::new(
            "video.codec_tag",
            "fourcc of the video sample entry (QuickTime/MP4 `stsd`; ffprobe's codec_tag_string)",
            value,
            format!("= {want}"),
            pass,
        )
        .severity(profile.severity_of("video.codec_tag", crate::report::Severity::Error)),
    )
}

/// Decodes `path` with `decoder` (native pixel format, native audio layout
/// and rate, so a missing or silent channel shows), analyses every frame and
/// runs the spec checks.
///
/// # Errors
/// The file does not open or decode; the message names the file.
pub fn check_file(
    decoder: &PluginRef,
    path: &Path,
    expect: &Expect,
    profile: &QcProfile,
) -> Result<FileQc, String> {
    let name = path.to_string_lossy();
    let cfg = crate::encode::decoder_config(media::VIDEO | media::AUDIO, 0, 0);
    let (mut dec, info) = decoder
        .open_file(&name, &cfg)
        .map_err(|e| format!("{name}: does not open: {e}"))?;
    let mut analyzer = Analyzer::new(profile, &info);
    let mut frames = 0u64;
    while let Some(f) = dec
        .next_frame()
        .map_err(|e| format!("{name}: decoding frame {frames}: {e}"))?
    {
        match f {
            Frame::Video(v) => {
                analyzer.video(&v);
                frames += 1;
            }
            Frame::Audio {
                sample_rate,
                channels,
                samples,
                ..
            } => analyzer.audio(samples, channels, sample_rate),
        }
    }
    let analysis = analyzer.finish();
    let probe = probe(&info, frames);
    let (mut checks, thumbnails) = spec_checks(&analysis, &probe, expect, profile);
    checks.extend(codec_tag_check(path, profile));
    Ok(FileQc {
        probe,
        checks,
        thumbnails,
        analysis,
    })
}
