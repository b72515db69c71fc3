//! The spec checks: what the file is and what the analyzer found, held to
//! what the deliverable promised ([`Expect`]) and the preset's profile.
//!
//! EBU QC test items (qc.ebu.io, the catalogue behind EBU Tech 3363) named
//! where one was found that describes the check; `None` where none could be
//! confirmed.

use super::analyzer::{Analysis, Span};
use super::profile::QcProfile;
use super::timecode::{self, Clock};
use super::{Expect, Scan};
use crate::report::{Check, Event, Probe, Severity, Thumbnail};
use deliver_plugin_api::abi::Rational;
use serde_json::json;

/// EBU QC 0042W, Video Frame Rate.
const EBU_FRAME_RATE: &str = "0042W";
/// EBU QC 0048W, Scanning Type.
const EBU_SCAN: &str = "0048W";
/// EBU QC 0040W, Video Duration.
const EBU_DURATION: &str = "0040W";
/// EBU QC 0051B, Video Signal Levels (EBU R 103).
const EBU_LEVELS: &str = "0051B";
/// EBU QC 0016B, Constant Colour Frames (black frames).
const EBU_BLACK: &str = "0016B";
/// EBU QC 0078B, Audio Silence.
const EBU_SILENCE: &str = "0078B";
/// EBU QC 0003W, Audio Bit Depth (read from the sample description).
const EBU_BIT_DEPTH: &str = "0003W";
/// EBU QC 0026W, Timecode (start value).
const EBU_TIMECODE: &str = "0026W";

fn rational_of(s: &str) -> Option<Rational> {
    let (n, d) = s.split_once('/')?;
    Some(Rational::new(
        n.trim().parse().ok()?,
        d.trim().parse().ok()?,
    ))
}

fn same_rate(a: Rational, b: Rational) -> bool {
    a.den != 0
        && b.den != 0
        && i64::from(a.num) * i64::from(b.den) == i64::from(b.num) * i64::from(a.den)
}

/// A profile name reduced to lowercase letters and digits: presets write
/// profiles as encoders take them (`main10`, `dnxhr_hq`, `422`), FFmpeg
/// displays them for people (`Main 10`, `DNXHR HQ`, `4:2:2`).
fn profile_key(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Encoder profile names whose FFmpeg display name differs by more than
/// case and punctuation: (codec, as presets write it, as FFmpeg shows it).
const PROFILE_ALIASES: &[(&str, &str, &str)] = &[
    // prores_ks `4444xq`; FFmpeg's ProRes profile names call it "XQ".
    ("prores", "4444xq", "XQ"),
    // x264's `baseline` is Constrained Baseline, which FFmpeg names so.
    ("h264", "baseline", "Constrained Baseline"),
    ("h264", "high444", "High 4:4:4 Predictive"),
];

/// Whether the file's profile (FFmpeg's name) is the promised one.
fn profile_matches(codec: Option<&str>, promised: &str, found: &str) -> bool {
    let found = profile_key(found);
    profile_key(promised) == found
        || PROFILE_ALIASES.iter().any(|(c, p, f)| {
            codec.is_none_or(|codec| codec == *c)
                && profile_key(p) == profile_key(promised)
                && profile_key(f) == found
        })
}

/// The pixel format FFmpeg's decoder gives for a promised encoder input
/// format, where it differs: the ProRes decoder reads the bit depth from
/// the profile, and decodes 4444 and 4444 XQ at 12 bits whatever the
/// encoder was given (proresdec2.c: `ap4h`/`ap4x` → 12-bit output).
fn decodes_as(codec: Option<&str>, promised: &str) -> Option<&'static str> {
    match (codec?, promised) {
        ("prores", "yuv444p10le") => Some("yuv444p12le"),
        ("prores", "yuva444p10le") => Some("yuva444p12le"),
        _ => None,
    }
}

struct Builder<'a> {
    q: &'a QcProfile,
    clock: Clock,
    checks: Vec<Check>,
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        id: &'static str,
        ebu: Option<&'static str>,
        default: Severity,
        description: impl Into<String>,
        value: impl serde::Serialize,
        threshold: impl Into<String>,
        pass: bool,
        spans: &[Span],
    ) {
        let mut c = Check::new(id, description, value, threshold, pass)
            .severity(self.q.severity_of(id, default))
            .events(spans.iter().map(|s| self.event(s)).collect());
        if let Some(e) = ebu {
            c = c.ebu(e);
        }
        self.checks.push(c);
    }

    fn event(&self, s: &Span) -> Event {
        Event {
            frame_in: s.frame_in,
            frame_out: s.frame_out,
            tc_in: self.clock.at(s.frame_in),
            tc_out: self.clock.at(s.frame_out),
            detail: s.detail.clone(),
        }
    }
}

/// Runs every spec check that applies: whole-file checks for what `expect`
/// promises, content checks (levels, black, freeze, flashes, silence) for
/// what was analysed. Returns the checks and the thumbnails, each marked
/// with the failed checks whose events cover its frame.
pub fn spec_checks(
    a: &Analysis,
    p: &Probe,
    e: &Expect,
    q: &QcProfile,
) -> (Vec<Check>, Vec<Thumbnail>) {
    let file_rate = rational_of(&p.frame_rate).filter(|r| r.num > 0 && r.den > 0);
    let rate = file_rate.unwrap_or(a.frame_rate);
    let mut b = Builder {
        q,
        clock: Clock::new(p.start_timecode.as_deref(), rate),
        checks: Vec::new(),
    };
    let err = Severity::Error;

    if let Some(codec) = &e.codec {
        b.push(
            "video.codec",
            None,
            err,
            "video codec of the delivered file",
            &p.video_codec,
            format!("= {codec}"),
            &p.video_codec == codec,
            &[],
        );
    }
    if let Some(profile) = &e.profile {
        b.push(
            "video.profile",
            None,
            err,
            "codec profile, as FFmpeg names it",
            &p.video_profile,
            format!(
                "= {profile} (as the encoder option names it; case, spaces and punctuation aside)"
            ),
            profile_matches(e.codec.as_deref(), profile, &p.video_profile),
            &[],
        );
    }
    if let Some(level) = e.level {
        b.push(
            "video.level",
            None,
            err,
            "codec level, as FFmpeg numbers it (H.264: 40 = level 4.0); a lower level plays wherever the promised one does",
            (p.video_level > 0).then_some(p.video_level),
            format!("<= {level}"),
            p.video_level > 0 && p.video_level <= level,
            &[],
        );
    }
    if let Some(pix) = &e.pix_fmt {
        let decoded_as = decodes_as(e.codec.as_deref(), pix);
        b.push(
            "video.pix_fmt",
            None,
            err,
            "pixel format",
            &p.pix_fmt,
            match decoded_as {
                Some(d) => format!("= {pix} (which FFmpeg decodes as {d})"),
                None => format!("= {pix}"),
            },
            &p.pix_fmt == pix || decoded_as == Some(p.pix_fmt.as_str()),
            &[],
        );
    }
    if e.width.is_some() || e.height.is_some() {
        let show = |v: Option<u32>| v.map_or("any".to_owned(), |v| v.to_string());
        b.push(
            "video.resolution",
            None,
            err,
            "frame size",
            format!("{}x{}", p.width, p.height),
            format!("= {}x{}", show(e.width), show(e.height)),
            e.width.is_none_or(|w| w == p.width) && e.height.is_none_or(|h| h == p.height),
            &[],
        );
    }
    if let Some(r) = e.frame_rate {
        b.push(
            "video.frame_rate",
            Some(EBU_FRAME_RATE),
            err,
            "frame rate of the video stream",
            &p.frame_rate,
            format!("= {}/{}", r.num, r.den),
            file_rate.is_some_and(|f| same_rate(f, r)),
            &[],
        );
    }
    if let Some(scan) = e.scan {
        let want = match scan {
            Scan::Progressive => "progressive",
            Scan::Interlaced => "interlaced",
        };
        b.push(
            "video.scan",
            Some(EBU_SCAN),
            err,
            "scan type, from the stream's field order",
            &p.field_order,
            format!("= {want}"),
            p.field_order == want,
            &[],
        );
    }
    if let Some(n) = e.frames {
        b.push(
            "video.frame_count",
            None,
            err,
            "frames decoded from the delivered file",
            a.frames,
            format!("= {n} (the composition)"),
            a.frames == n,
            &[],
        );
        if let Some(r) = e.frame_rate.filter(|r| r.num > 0 && r.den > 0) {
            let want = n as f64 / r.as_f64();
            b.push(
                "video.duration",
                Some(EBU_DURATION),
                err,
                "video stream duration in seconds",
                p.duration_s,
                format!("{want:.3} ± {}", q.max_duration_error_s),
                (p.duration_s - want).abs() <= q.max_duration_error_s,
                &[],
            );
        }
    }
    if p.width > 0 || e.colour.is_some() {
        let got = [
            p.colour_primaries,
            p.colour_transfer,
            p.colour_matrix,
            p.colour_range,
        ];
        let (threshold, pass) = match e.colour {
            Some(c) => (
                format!(
                    "= [{}, {}, {}, {}] (primaries, transfer, matrix, range; H.273)",
                    c.primaries, c.transfer, c.matrix, c.range
                ),
                got == [c.primaries, c.transfer, c.matrix, c.range],
            ),
            None => (
                "every tag specified (not 2 = unspecified; range not 0)".to_owned(),
                got[..3].iter().all(|&t| t != 2 && t != 0) && got[3] != 0,
            ),
        };
        b.push(
            "video.colour_tags",
            None,
            err,
            "colour primaries/transfer/matrix/range tags (H.273); an untagged file fails",
            got,
            threshold,
            pass,
            &[],
        );
    }

    if a.frames > 0 {
        let unread = a.unreadable_frames;
        let unread_note = |pass: bool| pass && unread == 0;
        let lr = &q.legal_range;
        let lv = &a.levels;
        b.push(
            "video.legal_range",
            Some(EBU_LEVELS),
            lr.severity,
            "signal levels (EBU R 103): luma, and R'G'B' derived through the file's matrix on a grid of one sample in 4×4 pixels, luma low-passed to the chroma's resolution",
            json!({
                "frames_outside": lv.frames_outside,
                "worst_luma_percent": lv.worst_luma_fraction * 100.0,
                "worst_rgb_percent": lv.worst_rgb_fraction * 100.0,
                "luma_min_code": lv.luma_min,
                "luma_max_code": lv.luma_max,
                "rgb_min_percent": lv.rgb_min_percent,
                "rgb_max_percent": lv.rgb_max_percent,
                "unreadable_frames": unread,
            }),
            format!(
                "luma {} %..{} %, R'G'B' {} %..{} % of nominal; at most {} % of a frame's samples outside",
                lr.luma_min_percent,
                lr.luma_max_percent,
                lr.rgb_min_percent,
                lr.rgb_max_percent,
                lr.max_fraction * 100.0
            ),
            unread_note(a.legal_range.is_empty()),
            &a.legal_range,
        );
        let bl = &q.black;
        b.push(
            "video.black",
            Some(EBU_BLACK),
            bl.severity,
            "runs of black frames",
            json!({
                "events": a.black.len(),
                "frames": a.black.iter().map(|s| s.frame_out - s.frame_in).sum::<u64>(),
                "mean_luma_percent": a.mean_luma_percent,
            }),
            format!(
                "no run of {} s or more where at most {} % of pixels are above {} % luma",
                bl.min_duration_s,
                bl.max_fraction_bright * 100.0,
                bl.max_luma_percent
            ),
            unread_note(a.black.is_empty()),
            &a.black,
        );
        let fr = &q.freeze;
        b.push(
            "video.freeze",
            None,
            fr.severity,
            "runs of frozen (repeated) pictures",
            json!({
                "events": a.freeze.len(),
                "frames": a.freeze.iter().map(|s| s.frame_out - s.frame_in).sum::<u64>(),
            }),
            format!(
                "no run of {} s or more with mean |ΔY| to the previous frame at most {} of full scale",
                fr.min_duration_s, fr.max_diff
            ),
            unread_note(a.freeze.is_empty()),
            &a.freeze,
        );
        let fl = &q.flash;
        b.push(
            "video.flash",
            None,
            fl.severity,
            "photosensitive luminance flashes (ITU-R BT.1702 style, 32×18 screen blocks, display assumed BT.1886 at the profile's peak)",
            json!({ "max_flashes_per_s": a.max_flashes_per_s }),
            format!(
                "at most {} flashes in any 1 s; a transition is a change of ≥ {} cd/m² with the darker state below {} cd/m² over more than {} % of the screen",
                fl.max_flashes_per_s,
                fl.min_delta_cdm2,
                fl.max_dark_cdm2,
                fl.min_area * 100.0
            ),
            unread_note(a.flash.is_empty()),
            &a.flash,
        );
        b.push(
            "video.red_flash",
            None,
            fl.severity,
            "photosensitive saturated-red flashes (ITU-R BT.1702 style)",
            json!({ "max_flashes_per_s": a.max_red_flashes_per_s }),
            format!(
                "at most {} red flashes in any 1 s; a transition is a change of (R−G−B)·320 ≥ {} where R/(R+G+B) ≥ {} (linear light) over more than {} % of the screen",
                fl.max_flashes_per_s,
                fl.red_delta,
                fl.red_ratio,
                fl.min_area * 100.0
            ),
            unread_note(a.red_flash.is_empty()),
            &a.red_flash,
        );
    }

    let bit_depth = e
        .audio
        .as_ref()
        .and_then(|x| x.bit_depth)
        .or(q.audio.bit_depth);
    if let Some(ae) = &e.audio {
        if let Some(codec) = &ae.codec {
            b.push(
                "audio.codec",
                None,
                err,
                "audio codec",
                &p.audio_codec,
                format!("= {codec}"),
                &p.audio_codec == codec,
                &[],
            );
        }
        if let Some(rate) = ae.sample_rate {
            b.push(
                "audio.sample_rate",
                None,
                q.audio.severity,
                "sample rate (Hz)",
                p.sample_rate,
                format!("= {rate}"),
                p.sample_rate == rate,
                &[],
            );
        }
        if let Some(n) = ae.channels {
            let silent: Vec<u32> = a
                .audio
                .as_ref()
                .map(|s| {
                    s.silent_throughout
                        .iter()
                        .enumerate()
                        .filter(|(_, &x)| x)
                        .map(|(i, _)| i as u32 + 1)
                        .collect()
                })
                .unwrap_or_default();
            let analysed = a.audio.is_some();
            b.push(
                "audio.channels",
                None,
                q.audio.severity,
                "audio channels: the count promised, none silent throughout",
                json!({
                    "channels": p.channels,
                    "layout_mask": p.channel_layout,
                    "silent_channels": silent,
                    "analysed": analysed,
                }),
                format!(
                    "= {n} channels, none below {} dBFS throughout",
                    q.silence.threshold_dbfs
                ),
                p.channels == n && analysed && silent.is_empty(),
                &[],
            );
            // A file that names its layout must name the one the mix made;
            // one that names none (MXF, raw PCM) is read in the default
            // order for its count, which is the mix's.
            if p.channel_layout != 0 {
                b.push(
                    "audio.layout",
                    None,
                    q.audio.severity,
                    "audio channel layout (WAVE channel mask) the file declares",
                    json!({
                        "layout_mask": format!("0x{:x}", p.channel_layout),
                        "layout": layout_name(p.channel_layout),
                    }),
                    format!("= {}", expected_layouts(n)),
                    layout_fits(n, p.channel_layout),
                    &[],
                );
            }
        }
    }
    if let Some(bits) = bit_depth.filter(|_| e.audio.is_some() || p.sample_rate > 0) {
        b.push(
            "audio.bit_depth",
            Some(EBU_BIT_DEPTH),
            q.audio.severity,
            "bits per audio sample, from the stream's sample description",
            (p.audio_bits > 0).then_some(p.audio_bits),
            format!("= {bits}"),
            p.audio_bits == bits,
            &[],
        );
    }
    if a.audio.is_some() {
        let s = &q.silence;
        b.push(
            "audio.silence",
            Some(EBU_SILENCE),
            s.severity,
            "runs of silence on any channel (RMS over 10 ms windows)",
            json!({ "events": a.silence.len() }),
            format!(
                "no channel below {} dBFS for {} s or more",
                s.threshold_dbfs, s.min_duration_s
            ),
            a.silence.is_empty(),
            &a.silence,
        );
    }
    if let Some(want) = e.start_timecode.as_deref().or(q.timecode.start.as_deref()) {
        let got = p.start_timecode.as_deref();
        let pass = match (
            got.map(|g| timecode::parse(g, rate)),
            timecode::parse(want, rate),
        ) {
            (Some(Ok(g)), Ok(w)) => g == w,
            _ => got == Some(want),
        };
        b.push(
            "timecode.start",
            Some(EBU_TIMECODE),
            q.timecode.severity,
            "start timecode of the file",
            got,
            format!("= {want}"),
            pass,
            &[],
        );
    }

    let thumbnails = a
        .thumbnails
        .iter()
        .map(|t| Thumbnail {
            frame: t.frame,
            timecode: b.clock.at(t.frame),
            flagged: b
                .checks
                .iter()
                .filter(|c| !c.pass)
                .filter(|c| {
                    c.events
                        .iter()
                        .any(|ev| ev.frame_in <= t.frame && t.frame < ev.frame_out)
                })
                .map(|c| c.id.to_owned())
                .collect(),
            width: t.width,
            height: t.height,
            png: t.png.clone(),
        })
        .collect();
    (b.checks, thumbnails)
}

/// WAVE channel masks of the layouts the mix makes.
const MASK_MONO: u64 = 0x4;
const MASK_STEREO: u64 = 0x3;
/// FFmpeg's "5.1" (back surrounds) and "5.1(side)": both L R C LFE Ls Rs.
const MASK_51: u64 = 0x3f;
const MASK_51_SIDE: u64 = 0x60f;

fn layout_name(mask: u64) -> String {
    match mask {
        MASK_MONO => "mono".into(),
        MASK_STEREO => "stereo".into(),
        MASK_51 => "5.1".into(),
        MASK_51_SIDE => "5.1(side)".into(),
        m => format!("0x{m:x}"),
    }
}

fn expected_layouts(channels: u32) -> String {
    match channels {
        1 => "mono (FC, 0x4) or front left alone (0x1)".into(),
        2 => "stereo (FL FR, 0x3)".into(),
        6 => "5.1 (FL FR FC LFE BL BR, 0x3f) or 5.1(side) (0x60f)".into(),
        n => format!("a layout of {n} channels"),
    }
}

/// Whether a declared channel mask is the layout of a mix of `channels`.
pub fn layout_fits(channels: u32, mask: u64) -> bool {
    match channels {
        1 => mask == MASK_MONO || mask == 0x1,
        2 => mask == MASK_STEREO,
        6 => mask == MASK_51 || mask == MASK_51_SIDE,
        n => mask.count_ones() == n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_fit_the_mix_channel_count() {
        assert!(layout_fits(1, 0x4));
        assert!(layout_fits(2, 0x3));
        assert!(layout_fits(6, 0x3f));
        assert!(layout_fits(6, 0x60f));
        // 6 channels that are not 5.1 (hexagonal: FL FR FC BL BR BC), and
        // a "stereo" that is really L + centre.
        assert!(!layout_fits(6, 0x137));
        assert!(!layout_fits(2, 0x5));
        assert!(!layout_fits(1, 0x3));
        assert_eq!(layout_name(0x3f), "5.1");
        assert_eq!(layout_name(0x137), "0x137");
    }

    #[test]
    fn profiles_match_as_encoders_and_ffmpeg_name_them() {
        for (codec, promised, found) in [
            ("h264", "high", "High"),
            ("h264", "high10", "High 10"),
            ("h264", "high422", "High 4:2:2"),
            ("h264", "baseline", "Constrained Baseline"),
            ("hevc", "main10", "Main 10"),
            ("mpeg2video", "422", "4:2:2"),
            ("dnxhd", "dnxhr_hqx", "DNXHR HQX"),
            ("dnxhd", "dnxhd", "DNXHD"),
            ("prores", "4444xq", "XQ"),
            ("prores", "lt", "LT"),
            ("av1", "main", "Main"),
        ] {
            assert!(
                profile_matches(Some(codec), promised, found),
                "{codec} {promised} vs {found}"
            );
        }
        for (codec, promised, found) in [
            ("h264", "high", "High 10"),
            ("hevc", "main", "Main 10"),
            ("prores", "4444", "XQ"),
            ("dnxhd", "dnxhr_hq", "DNXHR HQX"),
            // An alias holds for its codec only.
            ("hevc", "4444xq", "XQ"),
        ] {
            assert!(
                !profile_matches(Some(codec), promised, found),
                "{codec} {promised} vs {found}"
            );
        }
    }

    #[test]
    fn prores_4444_is_held_to_the_format_ffmpeg_decodes_it_as() {
        assert_eq!(
            decodes_as(Some("prores"), "yuv444p10le"),
            Some("yuv444p12le")
        );
        assert_eq!(decodes_as(Some("prores"), "yuv422p10le"), None);
        assert_eq!(decodes_as(Some("dnxhd"), "yuv444p10le"), None);
        assert_eq!(decodes_as(None, "yuv444p10le"), None);
    }
}
