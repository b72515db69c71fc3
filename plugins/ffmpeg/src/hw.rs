//! Hardware encoders: which of NVENC, VAAPI and QSV this FFmpeg build has
//! and this machine can run, found once per process by opening each encoder
//! for real and encoding one small picture.
//!
//! Only NVENC is offered: it takes frames in system memory, so the generic
//! encode path drives it unchanged. VAAPI and QSV need every frame uploaded
//! to a device surface (a hardware frames context), which this plugin does
//! not do yet; they are probed only to say why they are not offered.
//!
//! The probe runs on its own thread with a time limit (a driver that hangs
//! must not hang plugin loading) and can be skipped with
//! `DELIVER_FFMPEG_HW_PROBE=0`.

use crate::caps::{find_encoder, EncoderEntry};
use crate::encode::{summarize, without_context};
use crate::ffi_util::c_string;
use crate::options::{Kind, OptionSpec, Target};
use deliver_plugin_api::abi::media;
use deliver_plugin_api::plugin::{level, log};
use ffmpeg_next::ffi;
use std::ffi::c_int;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Set to `0` to skip the probe (no hardware encoder is offered then).
pub const PROBE_ENV: &str = "DELIVER_FFMPEG_HW_PROBE";

/// How long the whole probe may take. Opening NVENC on a working GPU takes
/// well under a second per encoder; a driver stuck longer than this is not
/// one to deliver with.
pub const PROBE_LIMIT: Duration = Duration::from_secs(15);

/// The probe's picture: small, but above every hardware encoder's minimum
/// (NVENC's is 145x49 for HEVC) and a multiple of 16 wide.
const PROBE_WIDTH: c_int = 256;
const PROBE_HEIGHT: c_int = 144;

/// The VAAPI render node tried when `DELIVER_VAAPI_DEVICE` is not set.
const VAAPI_DEVICE: &str = "/dev/dri/renderD128";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Nvenc,
    Vaapi,
    Qsv,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Nvenc => "NVENC",
            Family::Vaapi => "VAAPI",
            Family::Qsv => "QSV",
        }
    }
}

/// Every hardware encoder looked for, by FFmpeg name.
pub const CANDIDATES: &[(Family, &str)] = &[
    (Family::Nvenc, "h264_nvenc"),
    (Family::Nvenc, "hevc_nvenc"),
    (Family::Nvenc, "av1_nvenc"),
    (Family::Vaapi, "h264_vaapi"),
    (Family::Vaapi, "hevc_vaapi"),
    (Family::Vaapi, "av1_vaapi"),
    (Family::Qsv, "h264_qsv"),
    (Family::Qsv, "hevc_qsv"),
    (Family::Qsv, "av1_qsv"),
];

/// Whether `name` is one of the hardware encoders looked for.
pub fn is_hardware(name: &str) -> bool {
    CANDIDATES.iter().any(|(_, n)| *n == name)
}

/// NVENC presets (FFmpeg 5.1's nvenc.c): the SDK 10 p1 (fastest) to p7
/// (best) and the older names it maps onto them.
const NVENC_PRESETS: &[&str] = &[
    "default",
    "slow",
    "medium",
    "fast",
    "hp",
    "hq",
    "bd",
    "ll",
    "llhq",
    "llhp",
    "lossless",
    "losslesshp",
    "p1",
    "p2",
    "p3",
    "p4",
    "p5",
    "p6",
    "p7",
];

const NVENC_RC: &[&str] = &["constqp", "vbr", "cbr", "cbr_ld_hq", "cbr_hq", "vbr_hq"];

/// The options every NVENC encoder shares, with `profile` given apart.
macro_rules! nvenc_options {
    ($profiles:expr) => {
        &[
            OptionSpec::new("preset", Kind::Choice(NVENC_PRESETS), Target::Av("preset")),
            OptionSpec::new(
                "tune",
                Kind::Choice(&["hq", "ll", "ull", "lossless"]),
                Target::Av("tune"),
            ),
            OptionSpec::new("rc", Kind::Choice(NVENC_RC), Target::Av("rc")),
            // Constant quality for rc = vbr (0 = automatic), NVENC's crf.
            OptionSpec::new(
                "cq",
                Kind::Float {
                    min: 0.0,
                    max: 51.0,
                },
                Target::Av("cq"),
            ),
            OptionSpec::new("profile", Kind::Choice($profiles), Target::Av("profile")),
            crate::caps::GOP,
            OptionSpec::new("bframes", Kind::Int { min: 0, max: 4 }, Target::Av("bf")),
            crate::caps::MAX_RATE,
            crate::caps::BUFFER_SIZE,
        ]
    };
}

/// The hardware encoders this plugin can drive, as table entries like the
/// software ones. Ranked below them: a plugin user who asks for a codec
/// without a hardware policy gets the software encoder, as before.
pub static DRIVEN: &[EncoderEntry] = &[
    EncoderEntry {
        codec: "h264",
        implementation: "h264_nvenc",
        media: media::VIDEO,
        profiles: &["baseline", "main", "high", "high444p"],
        pix_fmts: &["yuv420p", "yuv444p"],
        profile_pix_fmts: &[
            ("baseline", &["yuv420p"]),
            ("main", &["yuv420p"]),
            ("high", &["yuv420p"]),
            ("high444p", &["yuv444p"]),
        ],
        rank: 90,
        fatal_warnings: &[],
        options: nvenc_options!(&["baseline", "main", "high", "high444p"]),
        profile_ids: &[],
        explain: None,
        drain_before_close: false,
        auto_profiles: &[],
    },
    EncoderEntry {
        codec: "hevc",
        implementation: "hevc_nvenc",
        media: media::VIDEO,
        profiles: &["main", "rext"],
        pix_fmts: &["yuv420p", "yuv444p"],
        profile_pix_fmts: &[("main", &["yuv420p"]), ("rext", &["yuv444p"])],
        rank: 90,
        fatal_warnings: &[],
        options: nvenc_options!(&["main", "rext"]),
        profile_ids: &[],
        explain: None,
        drain_before_close: false,
        auto_profiles: &[],
    },
    EncoderEntry {
        codec: "av1",
        implementation: "av1_nvenc",
        media: media::VIDEO,
        profiles: &["main"],
        pix_fmts: &["yuv420p"],
        profile_pix_fmts: &[],
        rank: 90,
        fatal_warnings: &[],
        options: nvenc_options!(&["main"]),
        profile_ids: &[],
        explain: None,
        drain_before_close: false,
        auto_profiles: &[],
    },
];

/// What the probe found.
#[derive(Debug, Default)]
pub struct Probe {
    /// Encoders that opened and encoded a picture, and that this plugin
    /// drives.
    pub usable: Vec<&'static EncoderEntry>,
    /// One line per family: what is offered, or why nothing is.
    pub lines: Vec<String>,
    pub took: Duration,
}

/// The probe's result, run on first use and kept for the process.
pub fn probed() -> &'static Probe {
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE.get_or_init(|| {
        let p = run_bounded();
        for l in &p.lines {
            log(level::INFO, "ffmpeg", l);
        }
        p
    })
}

/// The usable entry for a hardware encoder name.
pub fn usable(implementation: &str) -> Option<&'static EncoderEntry> {
    probed()
        .usable
        .iter()
        .copied()
        .find(|e| e.implementation == implementation)
}

fn run_bounded() -> Probe {
    let started = Instant::now();
    if std::env::var(PROBE_ENV).is_ok_and(|v| v.trim() == "0") {
        return Probe {
            usable: Vec::new(),
            lines: vec![format!(
                "hardware encoders: probe skipped ({PROBE_ENV}=0): none offered"
            )],
            took: started.elapsed(),
        };
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("ffmpeg-hw-probe".into())
        .spawn(move || {
            let _ = tx.send(run());
        });
    if let Err(e) = spawned {
        return Probe {
            usable: Vec::new(),
            lines: vec![format!(
                "hardware encoders: cannot start the probe thread ({e}): none offered"
            )],
            took: started.elapsed(),
        };
    }
    match rx.recv_timeout(PROBE_LIMIT) {
        Ok(mut p) => {
            p.took = started.elapsed();
            p
        }
        // The thread is left to finish on its own; what it finds is not
        // used, since an encoder that slow to open is not trusted.
        Err(_) => Probe {
            usable: Vec::new(),
            lines: vec![format!(
                "hardware encoders: the probe did not finish within {} s: none offered",
                PROBE_LIMIT.as_secs()
            )],
            took: started.elapsed(),
        },
    }
}

/// Probes every family, unbounded (see [`run_bounded`]).
fn run() -> Probe {
    let mut p = Probe::default();
    for family in [Family::Nvenc, Family::Vaapi, Family::Qsv] {
        let names: Vec<&str> = CANDIDATES
            .iter()
            .filter(|(f, _)| *f == family)
            .map(|(_, n)| *n)
            .collect();
        let present: Vec<(&str, *const ffi::AVCodec)> = names
            .iter()
            .filter_map(|n| find_encoder(n).map(|c| (*n, c)))
            .collect();
        let fam = family.name();
        if present.is_empty() {
            p.lines.push(format!(
                "hardware {fam}: not offered: no encoder in this FFmpeg build ({})",
                names.join(", ")
            ));
            continue;
        }
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !present.iter().any(|(m, _)| m == n))
            .collect();
        let mut parts = Vec::new();
        match family {
            Family::Nvenc => {
                for (name, codec) in &present {
                    let entry = DRIVEN.iter().find(|e| e.implementation == *name);
                    match (entry, try_encode(*codec)) {
                        (Some(e), Ok(())) => {
                            p.usable.push(e);
                            parts.push(format!("{name} offered"));
                        }
                        (None, Ok(())) => {
                            parts.push(format!("{name} works but is not driven by this plugin"))
                        }
                        (_, Err(why)) => parts.push(format!("{name} not offered: {why}")),
                    }
                }
            }
            Family::Vaapi | Family::Qsv => {
                let (kind, device) = if family == Family::Vaapi {
                    let dev = std::env::var("DELIVER_VAAPI_DEVICE")
                        .unwrap_or_else(|_| VAAPI_DEVICE.to_owned());
                    (ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_VAAPI, Some(dev))
                } else {
                    (ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_QSV, None)
                };
                let names: Vec<&str> = present.iter().map(|(n, _)| *n).collect();
                let list = names.join(", ");
                parts.push(match open_device(kind, device.as_deref()) {
                    Err(why) => format!("{list} not offered: no device: {why}"),
                    Ok(()) => format!(
                        "{list} not offered: the device opens, but this plugin does not upload frames to {fam} surfaces yet"
                    ),
                });
            }
        }
        if !missing.is_empty() {
            parts.push(format!("not in this FFmpeg build: {}", missing.join(", ")));
        }
        p.lines
            .push(format!("hardware {fam}: {}", parts.join("; ")));
    }
    p
}

/// Opens (and closes) a hardware device, or says why it cannot.
fn open_device(kind: ffi::AVHWDeviceType, device: Option<&str>) -> Result<(), String> {
    let dev = device.map(|d| c_string(d, "device")).transpose()?;
    let mut buf: *mut ffi::AVBufferRef = std::ptr::null_mut();
    crate::ffmpeg_log::capture_quiet();
    // SAFETY: out-pointer to a buffer we unref below; a valid (or null)
    // device string; no options.
    let r = unsafe {
        ffi::av_hwdevice_ctx_create(
            &mut buf,
            kind,
            dev.as_ref().map_or(std::ptr::null(), |d| d.as_ptr()),
            std::ptr::null_mut(),
            0,
        )
    };
    let lines = crate::ffmpeg_log::capture_end();
    if !buf.is_null() {
        // SAFETY: the reference the call gave us.
        unsafe { ffi::av_buffer_unref(&mut buf) };
    }
    if r < 0 {
        let at = device.map(|d| format!("{d}: ")).unwrap_or_default();
        return Err(format!("{at}{}", said(r, &lines)));
    }
    Ok(())
}

/// An FFmpeg failure in FFmpeg's words: its logged lines, else the code.
fn said(code: c_int, lines: &[(i32, String)]) -> String {
    let errors: Vec<String> = lines
        .iter()
        .filter(|(lvl, _)| *lvl <= ffi::AV_LOG_ERROR)
        .map(|(_, l)| without_context(l).to_owned())
        .collect();
    // The lines were captured; the thread's last error is one of them.
    crate::ffmpeg_log::clear_last_error();
    let code = ffmpeg_next::Error::from(code);
    if errors.is_empty() {
        code.to_string()
    } else {
        format!("{} ({code})", summarize(&errors))
    }
}

/// Opens the encoder on a small picture in system memory and encodes one
/// black frame to the end of the stream.
fn try_encode(codec: *const ffi::AVCodec) -> Result<(), String> {
    // SAFETY: a static codec; the context, frame and packet are ours and
    // freed before returning.
    unsafe {
        let mut ctx = ffi::avcodec_alloc_context3(codec);
        if ctx.is_null() {
            return Err("out of memory".into());
        }
        let fmt = ffi::AVPixelFormat::AV_PIX_FMT_YUV420P;
        (*ctx).width = PROBE_WIDTH;
        (*ctx).height = PROBE_HEIGHT;
        (*ctx).pix_fmt = fmt;
        (*ctx).time_base = ffi::AVRational { num: 1, den: 25 };
        (*ctx).framerate = ffi::AVRational { num: 25, den: 1 };
        crate::ffmpeg_log::capture_quiet();
        let r = ffi::avcodec_open2(ctx, codec, std::ptr::null_mut());
        let result = if r < 0 { Err(r) } else { encode_one(ctx, fmt) };
        let lines = crate::ffmpeg_log::capture_end();
        ffi::avcodec_free_context(&mut ctx);
        match result {
            Ok(0) => Err("opened but gave no packet for a picture".into()),
            Ok(_) => Ok(()),
            Err(code) if r < 0 => Err(format!("open failed: {}", said(code, &lines))),
            Err(code) => Err(format!("encoding failed: {}", said(code, &lines))),
        }
    }
}

/// Sends one black picture and the end of the stream; returns the number of
/// packets received.
///
/// # Safety
/// `ctx` is an open video encoder context of format `fmt`.
unsafe fn encode_one(
    ctx: *mut ffi::AVCodecContext,
    fmt: ffi::AVPixelFormat,
) -> Result<usize, c_int> {
    // SAFETY: per the caller; frame and packet are freed here.
    unsafe {
        let mut f = ffi::av_frame_alloc();
        let mut pkt = ffi::av_packet_alloc();
        let enomem = ffi::AVERROR(ffi::ENOMEM);
        let out = (|| {
            if f.is_null() || pkt.is_null() {
                return Err(enomem);
            }
            (*f).format = fmt as c_int;
            (*f).width = PROBE_WIDTH;
            (*f).height = PROBE_HEIGHT;
            (*f).pts = 0;
            let r = ffi::av_frame_get_buffer(f, 0);
            if r < 0 {
                return Err(r);
            }
            let lines: [isize; 4] = std::array::from_fn(|i| (*f).linesize[i] as isize);
            ffi::av_image_fill_black(
                (*f).data.as_mut_ptr(),
                lines.as_ptr(),
                fmt,
                ffi::AVColorRange::AVCOL_RANGE_MPEG,
                PROBE_WIDTH,
                PROBE_HEIGHT,
            );
            let r = ffi::avcodec_send_frame(ctx, f);
            if r < 0 {
                return Err(r);
            }
            let r = ffi::avcodec_send_frame(ctx, std::ptr::null());
            if r < 0 && r != ffi::AVERROR_EOF {
                return Err(r);
            }
            let mut packets = 0;
            // Bounded: one picture gives a handful of packets at most.
            for _ in 0..64 {
                let r = ffi::avcodec_receive_packet(ctx, pkt);
                if r == ffi::AVERROR_EOF {
                    break;
                }
                if r < 0 {
                    return Err(r);
                }
                packets += 1;
                ffi::av_packet_unref(pkt);
            }
            Ok(packets)
        })();
        ffi::av_frame_free(&mut f);
        ffi::av_packet_free(&mut pkt);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driven_entries_are_candidates_and_of_nvenc() {
        for e in DRIVEN {
            assert!(
                CANDIDATES
                    .iter()
                    .any(|(f, n)| *f == Family::Nvenc && *n == e.implementation),
                "{}",
                e.implementation
            );
            assert!(e.rank < 100, "hardware ranks below software");
            for p in e.profiles {
                crate::options::parse(&format!("profile = \"{p}\""), e.options, "o").unwrap();
            }
        }
    }

    /// On a machine without a GPU (CI) nothing is offered, each family says
    /// why in one line, and the probe is quick. On a machine with one, what
    /// is offered must have encoded a picture, which the probe checked.
    #[test]
    fn the_probe_explains_every_family_and_is_quick() {
        crate::ensure_init();
        let p = probed();
        assert_eq!(p.lines.len(), 3, "{:?}", p.lines);
        for (l, fam) in p.lines.iter().zip(["NVENC", "VAAPI", "QSV"]) {
            assert!(l.starts_with(&format!("hardware {fam}: ")), "{l}");
        }
        assert!(p.took < PROBE_LIMIT, "{:?}", p.took);
        if std::path::Path::new("/dev/nvidia0").exists() {
            return;
        }
        assert!(p.usable.is_empty(), "{:?}", p.lines);
        assert!(
            p.lines[0].contains("not offered"),
            "no GPU, so NVENC must say why: {}",
            p.lines[0]
        );
    }
}
