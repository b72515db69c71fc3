//! One deliverable: convert each rendered frame to the deliverable's format,
//! encode video and audio through the chosen plugins, mux, and validate.
//!
//! Validation runs beside the encoder: a second thread decodes the very
//! packets that go into the file and compares each decoded frame with the
//! frame that was encoded (PSNR, SSIM), keeping a hash of every decoded
//! picture. When the file is finished it is decoded once more, from disk, and
//! every picture must hash the same: so the quality figures provably describe
//! the delivered file, without keeping the whole render around.

use crate::deltae::{self, Lab, YuvToRgb};
use crate::isolate::Encoder;
use crate::limiter::Limiter;
use crate::loudness::{Analysis, Meter};
use crate::manifest::model::Manifest;
use crate::normalize::{self, Normalization};
use crate::plugins::{Choice, Registry};
use crate::preset::{HardwarePolicy, Preset};
use crate::qc;
use crate::quality::{self, Picture, Plane, Series};
use crate::render::image::{alpha_to_8bit, hash_view, plane_size, Yuv};
use crate::report::{Check, DeliverableReport, LoudnessReport, QualityReport, Severity, Verdict};
use crate::segments::{SegmentReader, SegmentWriter, Segments};
use crate::tracks::{self, TrackAudit, TrackMuxer as Muxer};
use crossbeam_channel::{bounded, Receiver, Sender};
use deliver_plugin_api::abi::{self, cap, media, pix};
use deliver_plugin_api::host::{CapabilityInfo, Frame, PacketBuf};
use deliver_plugin_api::plugin::{EncoderSettings, StreamInfo, VideoView};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Look-ahead of the true-peak limiter: long enough for the attack to be
/// inaudible as a click, short enough not to pump on speech.
pub const LIMITER_LOOKAHEAD_MS: f64 = 5.0;
/// Release time constant of the limiter.
pub const LIMITER_RELEASE_MS: f64 = 50.0;

/// What the render sends to every deliverable, per timeline frame.
pub struct Chunk {
    pub index: u64,
    /// The frame converted to the deliverable's format (shared by the
    /// deliverables with the same format).
    pub picture: Arc<Yuv>,
    /// The ΔE reference: the render's linear canvas at the deliverable's
    /// ΔE grid (`deltae::Grid` of its size), resampled to its size and
    /// encoded by its primaries and transfer, R'G'B' in `[0, 1]` before the
    /// Y'CbCr matrix, subsampling and quantization (`convert::reference_rgb`).
    /// So ΔE measures everything the delivery does to the render: the
    /// conversion, its rounding and subsampling, and the codec.
    pub reference: Arc<Vec<[f32; 3]>>,
    /// The unnormalized mix for this frame's samples (interleaved).
    pub audio: Arc<Vec<f32>>,
}

/// Everything chosen for one deliverable before any work starts.
pub struct Plan {
    pub name: String,
    pub preset: Preset,
    pub width: u32,
    pub height: u32,
    pub pix_fmt: u32,
    pub color: abi::ColorTags,
    pub video: Choice,
    pub audio: Option<Choice>,
    pub muxer: Choice,
    pub stream_decoder: Choice,
    /// Decodes the audio codec (to measure the codec's effect on loudness).
    pub audio_decoder: Option<Choice>,
    pub file_decoder: Choice,
    pub output: PathBuf,
    pub normalization: Option<Normalization>,
    /// The programme's loudness before normalization.
    pub programme: Option<Analysis>,
    /// Why a software encoder was chosen although the preset prefers
    /// hardware (`video.hardware = "prefer"` on a machine without one).
    pub hardware_fallback: Option<String>,
}

/// A failure while planning a deliverable (no plugin offers what the preset
/// asks for, or the preset cannot apply to this composition).
#[derive(Debug, thiserror::Error)]
#[error("deliverable `{name}` (preset {preset}, {file}): {message}")]
pub struct PlanError {
    pub name: String,
    pub preset: String,
    pub file: String,
    pub message: String,
}

fn find(
    reg: &Registry,
    kind: u32,
    name: &str,
    want: Option<&str>,
    what: &str,
) -> Result<Choice, String> {
    reg.find(kind, name, want).ok_or_else(|| {
        format!(
            "no loaded plugin offers {what} `{name}`{}; available: {}",
            want.map(|w| format!(" from `{w}`")).unwrap_or_default(),
            {
                let a = reg.available(kind);
                if a.is_empty() {
                    "none".to_owned()
                } else {
                    a.join(", ")
                }
            }
        )
    })
}

/// The video encoder among `candidates` (every capability that encodes the
/// codec, as [`Registry::candidates`] lists them) that the preset's
/// hardware policy allows: the best ranked one, hardware first under
/// `prefer`. Returns it with, for a `prefer` that fell back to software,
/// the reason. `hardware_here` lists every hardware encoder loaded (for
/// any codec), for messages. Generic over the candidate so that the rules
/// are tested without loading plugins.
///
/// # Errors
/// `None` when there is no candidate at all (the caller words that as a
/// missing capability); else why the policy leaves none, naming the field.
pub(crate) fn select_video<T>(
    candidates: Vec<T>,
    cap: impl Fn(&T) -> &CapabilityInfo,
    codec: &str,
    policy: HardwarePolicy,
    hardware_here: &[String],
) -> Result<(T, Option<String>), Option<String>> {
    if candidates.is_empty() {
        return Err(None);
    }
    let describe = |c: &T| cap(c).implementation.clone();
    let here = if hardware_here.is_empty() {
        "none".to_owned()
    } else {
        hardware_here.join(", ")
    };
    let (hw, sw): (Vec<T>, Vec<T>) = candidates.into_iter().partition(|c| cap(c).hardware);
    let best = |v: Vec<T>| v.into_iter().max_by_key(|c| cap(c).rank);
    let sw_names = sw.iter().map(describe).collect::<Vec<_>>().join(", ");
    let hw_names = hw.iter().map(describe).collect::<Vec<_>>().join(", ");
    match policy {
        HardwarePolicy::Never => best(sw).map(|c| (c, None)).ok_or_else(|| {
            Some(format!(
                "video.hardware = \"never\": only hardware encoders offer `{codec}` here ({hw_names}); \
                 set video.hardware = \"prefer\" or \"require\" to use them"
            ))
        }),
        HardwarePolicy::Require => best(hw).map(|c| (c, None)).ok_or_else(|| {
            Some(format!(
                "video.hardware = \"require\": no hardware encoder for `{codec}` works on this machine \
                 (hardware encoders here: {here}; software: {sw_names}); \
                 set video.hardware = \"prefer\" to fall back to software"
            ))
        }),
        HardwarePolicy::Prefer => {
            if let Some(c) = best(hw) {
                return Ok((c, None));
            }
            let c = best(sw).expect("candidates were not empty");
            let why = format!(
                "video.hardware = \"prefer\": no hardware encoder for `{codec}` works on this machine \
                 (hardware encoders here: {here}); encoded in software with {}",
                cap(&c).implementation
            );
            Ok((c, Some(why)))
        }
    }
}

/// Under `prefer`, a hardware encoder that refuses this deliverable (an
/// option only the software encoder knows, such as x264's `crf`; a size
/// below its minimum) gives way to the best software one, as if there were
/// no hardware: found by opening it once, before the render. Not done in
/// [`plan`], which also runs whenever a waiting job is re-checked.
/// Under `require` the refusal stays the deliverable's error.
pub fn confirm_hardware(p: &mut Plan, m: &Manifest, reg: &Registry) {
    if p.preset.video.hardware != HardwarePolicy::Prefer || !p.video.capability.hardware {
        return;
    }
    let refusal = match p.video.open_encoder(&video_settings(p, m)) {
        Ok(_) => return,
        Err(e) => e.to_string(),
    };
    let v = &p.preset.video;
    let Ok((software, _)) = select_video(
        reg.candidates(cap::ENCODE, &v.codec, v.encoder.as_deref()),
        |c| &c.capability,
        &v.codec,
        HardwarePolicy::Never,
        &[],
    ) else {
        // No software encoder to fall back to: the refusal is reported
        // when the encoder opens for the render.
        return;
    };
    p.hardware_fallback = Some(format!(
        "video.hardware = \"prefer\": the hardware encoder {} refused this deliverable ({refusal}); \
         encoded in software with {}",
        p.video.capability.implementation, software.capability.implementation
    ));
    p.video = software;
}

/// Every hardware encoder the loaded plugins offer, for messages:
/// "h264 (h264_nvenc in ffmpeg)".
pub(crate) fn hardware_encoders(reg: &Registry) -> Vec<String> {
    reg.describe(|c| c.kind == cap::ENCODE && c.hardware)
}

/// Chooses plugins and formats for a deliverable.
///
/// # Errors
/// A [`PlanError`] naming the preset file and what is missing.
pub fn plan(
    m: &Manifest,
    reg: &Registry,
    name: &str,
    preset: Preset,
    out_dir: &Path,
    programme: Option<&Analysis>,
) -> Result<Plan, PlanError> {
    let err = |message: String| PlanError {
        name: name.to_owned(),
        preset: preset.id.clone(),
        file: preset.file.display().to_string(),
        message,
    };
    let v = &preset.video;
    let pix_fmt = pix::from_name(&v.pix_fmt)
        .filter(|f| pix::layout(*f).is_some_and(|l| l.planes >= 3))
        .ok_or_else(|| {
            err(format!(
                "video.pix_fmt `{}` is not a planar YUV format this host converts to",
                v.pix_fmt
            ))
        })?;
    let width = v.width.unwrap_or(m.canvas.width);
    let height = v.height.unwrap_or(m.canvas.height);
    let (mut video, hardware_fallback) = match select_video(
        reg.candidates(cap::ENCODE, &v.codec, v.encoder.as_deref()),
        |c| &c.capability,
        &v.codec,
        v.hardware,
        &hardware_encoders(reg),
    ) {
        Ok(chosen) => chosen,
        Err(Some(why)) => return Err(err(why)),
        Err(None) => {
            // Worded as a missing capability (a job waits for a plugin).
            return Err(err(find(
                reg,
                cap::ENCODE,
                &v.codec,
                v.encoder.as_deref(),
                "video encoder",
            )
            .err()
            .unwrap_or_else(|| format!("no video encoder for `{}`", v.codec))));
        }
    };
    video.isolation = video.isolation.max(v.isolation);
    let audio = match &preset.audio {
        Some(a) => {
            if a.sample_rate != m.canvas.sample_rate || a.channels != m.canvas.channels {
                return Err(err(format!(
                    "audio is {} Hz, {} channels but the composition mixes at {} Hz, {} channels; set canvas.sample_rate/channels to match",
                    a.sample_rate, a.channels, m.canvas.sample_rate, m.canvas.channels
                )));
            }
            Some(
                find(
                    reg,
                    cap::ENCODE,
                    &a.codec,
                    a.encoder.as_deref(),
                    "audio encoder",
                )
                .map(|mut c| {
                    c.isolation = c.isolation.max(a.isolation);
                    c
                })
                .map_err(err)?,
            )
        }
        None => None,
    };
    // What the chosen encoder declares it takes, checked now so that the
    // error names the preset's field rather than coming from the encoder.
    let cap = &video.capability;
    let who = format!(
        "video encoder {} ({})",
        cap.implementation,
        video.plugin.name()
    );
    if !cap.pix_fmts.is_empty() && !cap.pix_fmts.contains(&v.pix_fmt) {
        return Err(err(format!(
            "video.pix_fmt `{}`: the {who} does not take it here; it takes {}",
            v.pix_fmt,
            cap.pix_fmts.join(", ")
        )));
    }
    if let Some(profile) = &v.profile {
        if !cap.profiles.is_empty() && !cap.profiles.contains(profile) {
            return Err(err(format!(
                "video.profile `{profile}`: the {who} does not offer it; it offers {}",
                cap.profiles.join(", ")
            )));
        }
    }
    let muxer = find(reg, cap::MUX, &preset.container, None, "container").map_err(err)?;
    let stream_decoder = find(
        reg,
        cap::STREAM_DECODE,
        &v.codec,
        None,
        "decoder (needed to validate)",
    )
    .map_err(err)?;
    let audio_decoder = preset
        .audio
        .as_ref()
        .and_then(|a| reg.find(cap::STREAM_DECODE, &a.codec, None));
    let file_decoder = find(
        reg,
        cap::FILE_DECODE,
        "*",
        None,
        "file decoder (needed to validate)",
    )
    .map_err(err)?;
    let stem = m.name.replace(['/', '\\'], "_");
    let output = out_dir.join(format!("{stem}_{name}.{}", preset.extension));
    let normalization = match (&preset.audio, programme.map(|a| &a.summary)) {
        (Some(_), Some(p)) => Some(normalize::plan(p, &preset.loudness)),
        _ => None,
    };
    Ok(Plan {
        name: name.to_owned(),
        color: abi::ColorTags {
            primaries: v.colour.primaries,
            transfer: v.colour.transfer,
            matrix: v.colour.matrix,
            range: v.colour.range,
        },
        preset,
        width,
        height,
        pix_fmt,
        video,
        audio,
        muxer,
        stream_decoder,
        audio_decoder,
        file_decoder,
        output,
        normalization,
        programme: programme.cloned(),
        hardware_fallback,
    })
}

/// What the preset's `video.hardware` asked for and what ran, for the
/// report: a warning when `prefer` fell back to software (published, and
/// listed), nothing under `never`. Logged here too, once per deliverable,
/// inside its span.
fn hardware_check(p: &Plan) -> Option<Check> {
    let policy = p.preset.video.hardware;
    if policy == HardwarePolicy::Never {
        return None;
    }
    let c = &p.video.capability;
    if let Some(why) = &p.hardware_fallback {
        tracing::warn!(deliverable = %p.name, preset = %p.preset.id, "{why}");
    }
    let ran = format!(
        "{} ({})",
        c.implementation,
        if c.hardware { "hardware" } else { "software" }
    );
    let check = Check::new(
        "video.hardware",
        match &p.hardware_fallback {
            Some(why) => format!("hardware video encoder: {why}"),
            None => format!(
                "hardware video encoder, as video.hardware = \"{}\" asks",
                policy.as_str()
            ),
        },
        ran,
        "a hardware encoder",
        c.hardware,
    );
    Some(match policy {
        HardwarePolicy::Prefer => check.severity(Severity::Warning),
        _ => check,
    })
}

/// Whether a container carries codec headers out of band (so encoders must
/// not repeat them in the stream). MXF does not: its muxer reads the
/// sequence header from the MPEG-2 stream itself.
pub(crate) fn wants_global_header(container: &str) -> bool {
    matches!(container, "mp4" | "mov" | "matroska" | "webm")
}

/// The reference picture at a decoder's higher bit depth, where the
/// decoder gives the same layout at more bits than were encoded: FFmpeg
/// decodes ProRes 4444 at 12 bits whatever depth the encoder was given.
/// Samples are scaled by 2^(decoded − encoded) bits, as swscale widens
/// them, so the measurement is in the decoder's units. `None` when no
/// widening applies.
fn widen_to(y: &Yuv, decoded: u32) -> Option<Yuv> {
    let (from, to) = (pix::layout(y.pix_fmt)?, pix::layout(decoded)?);
    let same_layout = from.planes == to.planes
        && (from.chroma_shift_x, from.chroma_shift_y) == (to.chroma_shift_x, to.chroma_shift_y)
        && from.bytes_per_sample == 2
        && to.bytes_per_sample == 2;
    if y.pix_fmt == decoded || !same_layout || to.bit_depth <= from.bit_depth {
        return None;
    }
    let shift = to.bit_depth - from.bit_depth;
    let planes = y
        .planes
        .iter()
        .map(|p| {
            p.chunks_exact(2)
                .flat_map(|s| (u16::from_le_bytes([s[0], s[1]]) << shift).to_le_bytes())
                .collect()
        })
        .collect();
    Some(Yuv {
        width: y.width,
        height: y.height,
        pix_fmt: decoded,
        planes,
        strides: y.strides.clone(),
        color: y.color,
    })
}

/// The audio encoder's settings for a plan, if it has audio.
fn audio_settings(p: &Plan, global_header: bool) -> Option<EncoderSettings> {
    let (a, c) = (p.preset.audio.as_ref()?, p.audio.as_ref()?);
    Some(EncoderSettings {
        media: media::AUDIO,
        codec: a.codec.clone(),
        implementation: c.capability.implementation.clone(),
        sample_rate: a.sample_rate,
        channels: a.channels,
        time_base: abi::Rational::new(1, a.sample_rate as i32),
        bit_rate: a.bit_rate.unwrap_or(0),
        global_header,
        options: options_toml(&a.options),
        ..Default::default()
    })
}

/// The deliverable's audio encoder and a decoder for its packets: what a
/// listener of the delivered file will hear, for measuring before the real
/// encode.
pub struct AudioRoundTrip {
    enc: Encoder,
    dec: deliver_plugin_api::host::StreamDecoder,
    rate: u32,
    channels: u32,
    pts: i64,
    /// The encoder's stream description (to check that the deliverable's
    /// own encoder would have made the same stream).
    pub params: StreamInfo,
    /// Every packet encoded: when the last pass ran at the final gain, these
    /// are the deliverable's audio, and it is not encoded a second time.
    pub packets: Vec<PacketBuf>,
}

impl AudioRoundTrip {
    /// `None` for a plan without lossy audio (PCM is exact) or without a
    /// decoder for its codec.
    ///
    /// # Errors
    /// The encoder or decoder refuses to open.
    pub fn open(p: &Plan) -> Result<Option<Self>, String> {
        let global_header = wants_global_header(&p.preset.container);
        let (Some(set), Some(dec)) = (audio_settings(p, global_header), p.audio_decoder.as_ref())
        else {
            return Ok(None);
        };
        if set.codec.starts_with("pcm_") {
            return Ok(None);
        }
        let c = p.audio.as_ref().expect("audio settings imply an encoder");
        let (enc, params) = c.open_encoder(&set).map_err(|e| e.to_string())?;
        let cfg = decoder_config(media::AUDIO, set.sample_rate, set.channels);
        let dec_params = params.clone();
        let dec = dec
            .plugin
            .open_stream_decoder(&dec_params, &cfg)
            .map_err(|e| e.to_string())?;
        Ok(Some(AudioRoundTrip {
            enc,
            dec,
            rate: set.sample_rate,
            channels: set.channels,
            pts: 0,
            params,
            packets: Vec::new(),
        }))
    }

    /// Encodes `samples` (or drains with `None`) and hands every decoded
    /// block to `sink`.
    ///
    /// # Errors
    /// Codec failures, or the sink's.
    pub fn push(
        &mut self,
        samples: Option<&[f32]>,
        sink: &mut dyn FnMut(&[f32]) -> Result<(), String>,
    ) -> Result<(), String> {
        let e = |e: deliver_plugin_api::host::CallError| e.to_string();
        match samples {
            Some(s) => {
                self.enc
                    .send_audio(Some((s, self.rate, self.channels, self.pts)))
                    .map_err(e)?;
                self.pts += (s.len() / self.channels as usize) as i64;
            }
            None => self.enc.send_audio(None).map_err(e)?,
        }
        loop {
            match self.enc.receive().map_err(e)? {
                Ok(pkt) => {
                    self.dec.send(Some(&pkt)).map_err(e)?;
                    self.packets.push(pkt);
                }
                Err(st) => {
                    if st == abi::status::EOF {
                        self.dec.send(None).map_err(e)?;
                    }
                    break;
                }
            }
            self.drain_decoder(sink)?;
        }
        self.drain_decoder(sink)
    }

    fn drain_decoder(
        &mut self,
        sink: &mut dyn FnMut(&[f32]) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            match self.dec.receive().map_err(|e| e.to_string())? {
                Ok(Frame::Audio { samples, .. }) => sink(samples)?,
                Ok(Frame::Video(_)) => {}
                Err(_) => return Ok(()),
            }
        }
    }
}

fn options_toml(t: &toml::Table) -> String {
    toml::to_string(t).unwrap_or_default()
}

/// A reference picture for the validator: the converted frame that was
/// encoded, and the render's R'G'B' at the ΔE grid (not the whole canvas:
/// up to 64 of these wait in the queue while the encoder's look-ahead
/// fills).
struct Reference {
    yuv: Arc<Yuv>,
    rgb: Arc<Vec<[f32; 3]>>,
}

enum VMsg {
    Ref(Reference),
    Pkt(PacketBuf),
}

/// Result of the validation thread.
struct Validated {
    series: Series,
    hashes: Vec<u64>,
    /// For formats with an alpha plane: the decoded alpha against the
    /// render's.
    alpha: Option<AlphaMatch>,
}

/// How far the decoded alpha plane is from the render's alpha, in the
/// render's 8-bit code values (the encoded plane is the render's alpha
/// scaled to full range at the format's depth, see `render::convert`).
#[derive(Debug, Default, Clone, Copy)]
struct AlphaMatch {
    frames: u64,
    /// Largest |decoded − render| over every sample of every frame.
    max_diff: u32,
    /// The first frame (from 0) where `max_diff` was seen.
    worst_frame: u64,
    /// Pictures decoded without an alpha plane.
    missing: u64,
}

impl AlphaMatch {
    /// Compares one decoded picture's alpha with its reference's.
    fn add(&mut self, reference: &Yuv, v: &VideoView<'_>) {
        let n = self.frames;
        self.frames += 1;
        let (Some(rl), Some(dl)) = (pix::layout(reference.pix_fmt), pix::layout(v.pix_fmt)) else {
            return;
        };
        if dl.planes < 4 || v.n_planes < 4 {
            self.missing += 1;
            return;
        }
        let sample = |p: &[u8], i: usize, bytes: usize| -> u32 {
            if bytes == 1 {
                p[i] as u32
            } else {
                u16::from_le_bytes([p[2 * i], p[2 * i + 1]]) as u32
            }
        };
        let (w, h) = (reference.width as usize, reference.height as usize);
        let (dp, ds) = v.planes[3];
        let rp = &reference.planes[3];
        let rs = reference.strides[3];
        let mut worst = 0;
        for y in 0..h {
            let rrow = &rp[y * rs..];
            let drow = &dp[y * ds..];
            for x in 0..w {
                let r = alpha_to_8bit(sample(rrow, x, rl.bytes_per_sample), rl.bit_depth);
                let d = alpha_to_8bit(sample(drow, x, dl.bytes_per_sample), dl.bit_depth);
                worst = worst.max(r.abs_diff(d));
            }
        }
        if worst > self.max_diff {
            self.max_diff = worst;
            self.worst_frame = n;
        }
    }

    fn check(&self) -> Check {
        Check::new(
            "video.alpha",
            format!(
                "largest difference between the delivered alpha plane and the render's alpha, in the render's 8-bit code values (every sample of {} frames; worst at frame {}{})",
                self.frames,
                self.worst_frame,
                if self.missing > 0 {
                    format!("; {} pictures decoded without alpha", self.missing)
                } else {
                    String::new()
                }
            ),
            if self.missing > 0 {
                serde_json::Value::Null
            } else {
                self.max_diff.into()
            },
            "<= 1",
            self.missing == 0 && self.frames > 0 && self.max_diff <= 1,
        )
    }
}

fn picture_of_yuv(y: &Yuv) -> Picture<'_> {
    let l = pix::layout(y.pix_fmt).expect("validated");
    std::array::from_fn(|c| {
        let (width, height) = plane_size(y.width, y.height, l, c);
        Plane {
            data: &y.planes[c],
            stride: y.strides[c],
            width,
            height,
            bytes: l.bytes_per_sample,
            depth: l.bit_depth,
        }
    })
}

/// The Y, U and V planes of a decoded picture.
pub fn picture_of_view<'a>(v: &VideoView<'a>) -> Result<(Picture<'a>, pix::Layout), String> {
    let l = pix::layout(v.pix_fmt)
        .filter(|l| l.planes >= 3 && v.n_planes >= 3)
        .ok_or_else(|| format!("decoded pixel format {} is not planar Y'CbCr", v.pix_fmt))?;
    let pic = std::array::from_fn(|c| {
        let (width, height) = plane_size(v.width, v.height, l, c);
        Plane {
            data: v.planes[c].0,
            stride: v.planes[c].1,
            width,
            height,
            bytes: l.bytes_per_sample,
            depth: l.bit_depth,
        }
    });
    Ok((pic, l))
}

fn validate_stream(
    plan_dec: Choice,
    params: StreamInfo,
    rx: Receiver<VMsg>,
) -> Result<Validated, String> {
    let cfg = decoder_config(media::VIDEO, 0, 0);
    let mut dec = plan_dec
        .plugin
        .open_stream_decoder(&params, &cfg)
        .map_err(|e| e.to_string())?;
    let mut refs = std::collections::VecDeque::new();
    let mut out = Validated {
        series: Series::default(),
        hashes: Vec::new(),
        alpha: None,
    };
    // ΔE buffers and the conversion of the decoded tags, kept across frames.
    struct DeltaE {
        lab_ref: Vec<Lab>,
        lab_dec: Vec<Lab>,
        values: Vec<f32>,
        conv: Option<(abi::ColorTags, YuvToRgb, String)>,
    }
    let mut de = DeltaE {
        lab_ref: Vec::new(),
        lab_dec: Vec::new(),
        values: Vec::new(),
        conv: None,
    };
    let pull = |dec: &mut deliver_plugin_api::host::StreamDecoder,
                refs: &mut std::collections::VecDeque<Reference>,
                out: &mut Validated,
                de: &mut DeltaE|
     -> Result<bool, String> {
        loop {
            match dec.receive().map_err(|e| e.to_string())? {
                Ok(Frame::Video(v)) => {
                    let r = refs
                        .pop_front()
                        .ok_or("the decoder returned more pictures than were encoded")?;
                    out.hashes.push(hash_view(&v));
                    if r.yuv.planes.len() == 4 {
                        out.alpha
                            .get_or_insert_with(AlphaMatch::default)
                            .add(&r.yuv, &v);
                    }
                    let (d, l) = picture_of_view(&v)?;
                    let widened;
                    let y = match widen_to(&r.yuv, v.pix_fmt) {
                        Some(w) => {
                            widened = w;
                            &widened
                        }
                        None => &*r.yuv,
                    };
                    if v.width != y.width || v.height != y.height || v.pix_fmt != y.pix_fmt {
                        return Err(format!(
                            "decoded picture is {}x{} ({}), encoded {}x{} ({})",
                            v.width,
                            v.height,
                            pix::name(v.pix_fmt).unwrap_or("?"),
                            y.width,
                            y.height,
                            pix::name(y.pix_fmt).unwrap_or("?")
                        ));
                    }
                    // One thread: the encoder beside us wants the cores.
                    out.series
                        .push(&quality::measure(&picture_of_yuv(y), &d, 1));
                    let grid = deltae::Grid::new(v.width as usize, v.height as usize);
                    if de.conv.as_ref().is_none_or(|c| c.0 != v.color) {
                        let conv = YuvToRgb::new(v.color, v.height, l.bit_depth);
                        let method = format!(
                            "{}; reference: the render's linear canvas resampled to the delivery size and encoded with the deliverable's primaries and transfer (R'G'B' before the Y'CbCr matrix, subsampling and quantization); delivery: {} (by its decoded tags); {}",
                            grid.describe(),
                            conv.describe(),
                            deltae::PIPELINE
                        );
                        de.conv = Some((v.color, conv, method));
                    }
                    let (_, conv, method) = de.conv.as_ref().expect("set above");
                    if r.rgb.len() != grid.len() {
                        return Err(format!(
                            "ΔE reference has {} samples, the {}x{} grid {}",
                            r.rgb.len(),
                            v.width,
                            v.height,
                            grid.len()
                        ));
                    }
                    deltae::lab_of_rgb(&r.rgb, &mut de.lab_ref);
                    deltae::lab_of_picture(
                        &d,
                        (l.chroma_shift_x, l.chroma_shift_y),
                        conv,
                        &grid,
                        &mut de.lab_dec,
                    );
                    deltae::delta_e(&de.lab_ref, &de.lab_dec, &mut de.values);
                    out.series.push_delta_e(&mut de.values, method);
                }
                Ok(Frame::Audio { .. }) => {}
                Err(s) if s == abi::status::EOF => return Ok(true),
                Err(_) => return Ok(false),
            }
        }
    };
    for msg in rx {
        match msg {
            VMsg::Ref(y) => refs.push_back(y),
            VMsg::Pkt(p) => {
                dec.send(Some(&p)).map_err(|e| e.to_string())?;
                pull(&mut dec, &mut refs, &mut out, &mut de)?;
            }
        }
    }
    dec.send(None).map_err(|e| e.to_string())?;
    while !pull(&mut dec, &mut refs, &mut out, &mut de)? {}
    if !refs.is_empty() {
        return Err(format!(
            "{} encoded pictures never came out of the decoder",
            refs.len()
        ));
    }
    Ok(out)
}

pub fn decoder_config(want: u32, rate: u32, channels: u32) -> abi::DecoderConfig {
    abi::DecoderConfig {
        struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
        want,
        video_pix_fmt: pix::NONE,
        audio_sample_rate: rate,
        audio_channels: channels,
        threads: 0,
        reserved: [0; 4],
    }
}

struct Streams {
    mux: Muxer,
    venc: Encoder,
    vidx: u32,
    aenc: Option<(Encoder, u32)>,
    aparams: Option<StreamInfo>,
    vparams: StreamInfo,
}

/// The video encoder's settings for a plan.
fn video_settings(p: &Plan, m: &Manifest) -> EncoderSettings {
    let rate = m.canvas.frame_rate;
    let tb = abi::Rational::new(rate.den as i32, rate.num as i32);
    let global_header = wants_global_header(&p.preset.container);
    let mut vopts = p.preset.video.options.clone();
    if let Some(profile) = &p.preset.video.profile {
        vopts
            .entry("profile")
            .or_insert_with(|| toml::Value::String(profile.clone()));
    }
    if let Some(order) = p.preset.video.field_order.encoder_option() {
        vopts
            .entry("interlaced")
            .or_insert_with(|| toml::Value::String(order.into()));
    }
    EncoderSettings {
        media: media::VIDEO,
        codec: p.preset.video.codec.clone(),
        implementation: p.video.capability.implementation.clone(),
        width: p.width,
        height: p.height,
        pix_fmt: p.pix_fmt,
        frame_rate: abi::Rational::new(rate.num as i32, rate.den as i32),
        time_base: tb,
        color: p.color,
        bit_rate: p.preset.video.bit_rate.unwrap_or(0),
        global_header,
        options: options_toml(&vopts),
        ..Default::default()
    }
}

/// The muxer's options: the preset's, with its `video.fourcc` as the
/// `video_tag` option (unless the preset sets that itself).
fn container_options(p: &Preset) -> toml::Table {
    let mut t = p.container_options.clone();
    if let Some(f) = &p.video.fourcc {
        t.entry("video_tag")
            .or_insert_with(|| toml::Value::String(f.clone()));
    }
    if let Some(order) = p.video.field_order.muxer_option() {
        t.entry("field_order")
            .or_insert_with(|| toml::Value::String(order.into()));
    }
    t
}

fn open_streams(p: &Plan, m: &Manifest) -> Result<Streams, String> {
    let global_header = wants_global_header(&p.preset.container);
    let vset = video_settings(p, m);
    let (venc, vparams) = p.video.open_encoder(&vset).map_err(|e| e.to_string())?;
    let aenc = match (audio_settings(p, global_header), &p.audio) {
        (Some(aset), Some(c)) => {
            let (enc, params) = c.open_encoder(&aset).map_err(|e| e.to_string())?;
            Some((enc, params))
        }
        _ => None,
    };
    let partial = deliver_watch::partial_path(&p.output);
    let mut mux = Muxer::new(
        p.muxer
            .plugin
            .open_muxer(
                &partial.to_string_lossy(),
                &p.preset.container,
                &options_toml(&container_options(&p.preset)),
            )
            .map_err(|e| e.to_string())?,
    );
    let vidx = mux.add_stream(&vparams)?;
    let tracks = p.preset.audio.as_ref().and_then(|a| a.tracks.as_deref());
    let aenc = match aenc {
        Some((enc, params)) => {
            let i = match tracks {
                Some(map) => mux.add_tracks(&params, map)?,
                None => mux.add_stream(&params)?,
            };
            Some((enc, i, params))
        }
        None => None,
    };
    mux.write_header().map_err(|e| e.to_string())?;
    let (aenc, aparams) = match aenc {
        Some((enc, i, params)) => (Some((enc, i)), Some(params)),
        None => (None, None),
    };
    Ok(Streams {
        mux,
        venc,
        vidx,
        aenc,
        aparams,
        vparams,
    })
}

/// The audio path after the mix: gain, the limiter where the profile allows
/// it, the encoder. Audio pts count the samples sent, so the limiter's
/// look-ahead delays output without shifting it.
struct AudioOut {
    limiter: Option<Limiter>,
    gained: Vec<f32>,
    audio: Vec<f32>,
    pts: i64,
    rate: u32,
    channels: u32,
}

impl AudioOut {
    fn send(&mut self, enc: &mut Encoder, mux: &mut Muxer, idx: u32) -> Result<(), String> {
        if !self.audio.is_empty() {
            enc.send_audio(Some((&self.audio, self.rate, self.channels, self.pts)))
                .map_err(|e| e.to_string())?;
            self.pts += (self.audio.len() / self.channels as usize) as i64;
        }
        drain(enc, mux, idx, None, None).map(|_| ())
    }

    fn emit(
        &mut self,
        block: &[f32],
        gain: f32,
        enc: &mut Encoder,
        mux: &mut Muxer,
        idx: u32,
    ) -> Result<(), String> {
        self.audio.clear();
        match &mut self.limiter {
            Some(l) => {
                self.gained.clear();
                self.gained.extend(block.iter().map(|v| v * gain));
                l.process(&self.gained, &mut self.audio);
            }
            None => self.audio.extend(block.iter().map(|v| v * gain)),
        }
        self.send(enc, mux, idx)
    }

    /// Gives back what the limiter's look-ahead still holds.
    fn flush(&mut self, enc: &mut Encoder, mux: &mut Muxer, idx: u32) -> Result<(), String> {
        self.audio.clear();
        if let Some(l) = &mut self.limiter {
            l.flush(&mut self.audio);
        }
        self.send(enc, mux, idx)
    }
}

/// Where a deliverable's audio stands.
enum AudioState {
    /// The gain is not known yet: the mix waits (blocks, total samples).
    Waiting(std::collections::VecDeque<Arc<Vec<f32>>>, usize),
    /// Encoding here, at this linear gain.
    Encode(f32),
    /// The gain pass already encoded the audio at the final gain: its
    /// packets are written as the video reaches their time.
    Packets(std::collections::VecDeque<PacketBuf>),
}

impl AudioState {
    /// Samples held while waiting for the gain.
    fn waiting_samples(&self) -> usize {
        match self {
            AudioState::Waiting(_, len) => *len,
            _ => 0,
        }
    }

    /// In `Waiting`, takes the gain when it is ready (or waits for it) and
    /// starts; returns the final normalization when it did.
    #[allow(clippy::too_many_arguments)]
    fn poll(
        &mut self,
        gain_rx: &Receiver<GainResult>,
        wait: bool,
        aparams: Option<&StreamInfo>,
        out: &mut AudioOut,
        enc: &mut Encoder,
        mux: &mut Muxer,
        idx: u32,
    ) -> Result<Option<Option<Normalization>>, String> {
        if !matches!(self, AudioState::Waiting(..)) {
            return Ok(None);
        }
        let ready = if wait {
            Some(
                gain_rx
                    .recv()
                    .map_err(|_| "the gain thread stopped".to_owned())?,
            )
        } else {
            gain_rx.try_recv().ok()
        };
        let Some(r) = ready else {
            return Ok(None);
        };
        let r = r?;
        let n = r.normalization.clone();
        *self = std::mem::replace(self, AudioState::Encode(1.0))
            .start(r, aparams, out, enc, mux, idx)?;
        Ok(Some(n))
    }

    /// Leaves `Waiting` once the gain is known.
    fn start(
        self,
        r: Refined,
        aparams: Option<&StreamInfo>,
        out: &mut AudioOut,
        enc: &mut Encoder,
        mux: &mut Muxer,
        idx: u32,
    ) -> Result<AudioState, String> {
        let AudioState::Waiting(pending, _) = self else {
            return Ok(self);
        };
        if let (Some((packets, params)), Some(own)) = (r.audio, aparams) {
            // The same encoder with the same settings makes the same stream;
            // checked, since the muxer was set up with this encoder's headers.
            if params == *own {
                return Ok(AudioState::Packets(packets.into()));
            }
        }
        let g = r
            .normalization
            .as_ref()
            .map(|n| normalize::gain_factor(n.gain_db))
            .unwrap_or(1.0);
        for block in pending {
            out.emit(&block, g, enc, mux, idx)?;
        }
        Ok(AudioState::Encode(g))
    }

    /// Handles one rendered frame's audio.
    fn feed(
        &mut self,
        chunk: &Chunk,
        m: &Manifest,
        out: &mut AudioOut,
        enc: &mut Encoder,
        mux: &mut Muxer,
        idx: u32,
    ) -> Result<(), String> {
        match self {
            AudioState::Waiting(pending, len) => {
                *len += chunk.audio.len();
                pending.push_back(chunk.audio.clone());
                Ok(())
            }
            AudioState::Encode(g) => out.emit(&chunk.audio, *g, enc, mux, idx),
            AudioState::Packets(q) => {
                let until =
                    crate::render::audio::sample_of_frame(&m.canvas, chunk.index + 1) as i64;
                while q.front().is_some_and(|p| p.pts < until) {
                    let p = q.pop_front().expect("checked");
                    mux.write_packet(idx, &p).map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
    }

    /// Writes what is left at the end of the programme.
    fn finish(
        &mut self,
        out: &mut AudioOut,
        enc: &mut Encoder,
        mux: &mut Muxer,
        idx: u32,
    ) -> Result<(), String> {
        match self {
            AudioState::Waiting(..) => Ok(()),
            AudioState::Encode(_) => {
                out.flush(enc, mux, idx)?;
                enc.send_audio(None).map_err(|e| e.to_string())?;
                drain_to_eof(enc, mux, idx, None, None)?;
                Ok(())
            }
            AudioState::Packets(q) => {
                for p in q.drain(..) {
                    mux.write_packet(idx, &p).map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
    }
}

/// Drains an encoder into the muxer (and the validator, for video).
fn drain(
    enc: &mut Encoder,
    mux: &mut Muxer,
    idx: u32,
    tee: Option<&Sender<VMsg>>,
    mut spool: Option<&mut SegmentWriter>,
) -> Result<bool, String> {
    loop {
        match enc.receive().map_err(|e| e.to_string())? {
            Ok(pkt) => {
                mux.write_packet(idx, &pkt).map_err(|e| e.to_string())?;
                if let Some(w) = spool.as_deref_mut() {
                    w.write(&pkt)
                        .map_err(|e| format!("writing a segment file: {e}"))?;
                }
                if let Some(tx) = tee {
                    tx.send(VMsg::Pkt(pkt))
                        .map_err(|_| "validator stopped".to_owned())?;
                }
            }
            Err(s) => return Ok(s == abi::status::EOF),
        }
    }
}

/// Drains an encoder that was sent the drain request: its last packets,
/// then EOF. An encoder that answers NEED_MORE instead breaks the ABI's
/// rule (the conformance runner checks it); it is an error here rather than
/// a loop that never ends.
fn drain_to_eof(
    enc: &mut Encoder,
    mux: &mut Muxer,
    idx: u32,
    tee: Option<&Sender<VMsg>>,
    spool: Option<&mut SegmentWriter>,
) -> Result<(), String> {
    if drain(enc, mux, idx, tee, spool)? {
        Ok(())
    } else {
        Err(
            "an encoder plugin asked for more input after the drain request instead of \
             giving its last packets and EOF (a plugin bug; `deliver plugins check` shows it)"
                .to_owned(),
        )
    }
}

/// Progress callback type: frames done by this deliverable.
pub type Tick<'a> = &'a (dyn Fn(u64) + Sync);

/// Encodes the deliverable from the chunks on `rx`, then validates the file.
/// Never panics on bad data: every failure lands in the report.
/// The final normalization, computed beside the encode, and the audio
/// packets of its last pass when that pass ran at the final gain.
pub struct Refined {
    pub normalization: Option<Normalization>,
    pub audio: Option<(Vec<PacketBuf>, StreamInfo)>,
}

/// What the gain thread sends.
pub type GainResult = Result<Refined, String>;

/// Audio held back while the gain is being refined, at most (seconds of
/// programme). Past it the video waits too, so memory stays bounded.
const MAX_PENDING_AUDIO_S: u64 = 60;

pub fn run(
    p: &Plan,
    m: &Manifest,
    rx: Receiver<Chunk>,
    gain: Receiver<GainResult>,
    tick: Tick<'_>,
    cancel: &AtomicBool,
    segments: Option<Segments>,
) -> DeliverableReport {
    let started = Instant::now();
    let mut report = DeliverableReport {
        name: p.name.clone(),
        preset: p.preset.id.clone(),
        preset_file: p.preset.file.clone(),
        file: None,
        bytes: 0,
        verdict: Verdict::Fail,
        error: None,
        video_encoder: format!(
            "{} ({} {})",
            p.video.capability.implementation,
            p.video.plugin.name(),
            p.video.plugin.version()
        ),
        video_hardware: p.video.capability.hardware,
        audio_encoder: p.audio.as_ref().map(|a| {
            format!(
                "{} ({} {})",
                a.capability.implementation,
                a.plugin.name(),
                a.plugin.version()
            )
        }),
        muxer: format!("{} ({})", p.preset.container, p.muxer.plugin.name()),
        encode_seconds: 0.0,
        probe: None,
        loudness: None,
        quality: None,
        checks: Vec::new(),
        thumbnails: Vec::new(),
    };
    if let Some(c) = hardware_check(p) {
        report.checks.push(c);
    }
    if let Some(why) = p.normalization.as_ref().and_then(|n| n.refused.clone()) {
        report.checks.push(Check::new(
            "audio.normalization",
            "loudness normalization within the profile's rules",
            "refused",
            "one linear gain within the true-peak ceiling, or a limiter where the profile allows it",
            false,
        ));
        report.loudness = p.programme.clone().map(|programme| LoudnessReport {
            programme,
            normalization: p.normalization.clone().expect("checked"),
            delivered: None,
            tolerance_lu: p.preset.loudness.tolerance_lu,
        });
        report.error = Some(why);
        return report;
    }
    let encoded = encode(p, m, rx, gain, tick, cancel, segments);
    report.encode_seconds = started.elapsed().as_secs_f64();
    let (validated, normalization) = match encoded {
        Ok(v) => v,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    let partial = deliver_watch::partial_path(&p.output);
    report.bytes = std::fs::metadata(&partial).map(|md| md.len()).unwrap_or(0);
    match verify_file(p, m, &partial, &validated, &mut report) {
        Ok(()) => {
            if let (Some(l), Some(n)) = (report.loudness.as_mut(), normalization) {
                l.normalization = n;
            }
        }
        Err(e) => report.error = Some(e),
    }
    report.quality = Some(QualityReport {
        reference: "the rendered frame fed to the encoder (after scaling and conversion)".into(),
        summary: validated.series.summary(),
        series: validated.series,
    });
    report.verdict = if report.error.is_some() {
        Verdict::Fail
    } else {
        crate::report::verdict_of(&report.checks)
    };
    report.file = Some(partial);
    report
}

/// Where segmented encoding stands within a deliverable.
#[derive(Default)]
struct SegmentState {
    /// Whether the current encoder has been fed (a new segment needs a new
    /// encoder).
    used: bool,
    /// The spool file of the segment being encoded.
    writer: Option<SegmentWriter>,
    /// The recorded segment being copied: its index, reader, and the next
    /// packet when it belongs to a later frame.
    replay: Option<(u64, SegmentReader, Option<PacketBuf>)>,
}

impl SegmentState {
    /// Handles frame `index` (already converted and handed to the
    /// validator) of a segmented deliverable: copies a recorded segment's
    /// packets, or encodes the frame into the current segment, closing and
    /// recording the segment at its last frame.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        sg: &Segments,
        s: &mut Streams,
        vtx: &Sender<VMsg>,
        video: &Choice,
        vset: &EncoderSettings,
        yuv: &Yuv,
        index: u64,
        tb: abi::Rational,
    ) -> Result<(), String> {
        let k = sg.of(index);
        let (first, frames) = sg.range(k);
        let last = index + 1 == first + frames;
        if let Some(path) = sg.reuse.get(&k) {
            if self.replay.as_ref().is_none_or(|r| r.0 != k) {
                let (reader, _) =
                    SegmentReader::open(path).map_err(|e| format!("reading segment {k}: {e}"))?;
                self.replay = Some((k, reader, None));
            }
            let (_, reader, peeked) = self.replay.as_mut().expect("set above");
            // A packet goes out once its picture's frame has been handed to
            // the validator, so the decoder never gets ahead of the references.
            loop {
                let pkt = match peeked.take() {
                    Some(p) => p,
                    None => match reader
                        .next_packet()
                        .map_err(|e| format!("reading segment {k}: {e}"))?
                    {
                        Some(p) => p,
                        None => break,
                    },
                };
                if !last && frame_of(&pkt, vset.frame_rate) > index as i64 {
                    *peeked = Some(pkt);
                    break;
                }
                s.mux
                    .write_packet(s.vidx, &pkt)
                    .map_err(|e| e.to_string())?;
                vtx.send(VMsg::Pkt(pkt))
                    .map_err(|_| "validator stopped".to_owned())?;
            }
            if last {
                self.replay = None;
                tracing::debug!(segment = k, "recorded segment copied");
            }
            return Ok(());
        }
        if self.writer.is_none() {
            if self.used {
                s.venc = segment_encoder(video, &s.vparams, vset, sg, k)?;
            }
            self.used = true;
            self.writer = Some(
                SegmentWriter::create(&sg.dir, k, &s.vparams)
                    .map_err(|e| format!("creating segment {k}'s file: {e}"))?,
            );
        }
        s.venc
            .send_video(Some(&yuv.view(index as i64, tb, false)))
            .map_err(|e| e.to_string())?;
        drain(
            &mut s.venc,
            &mut s.mux,
            s.vidx,
            Some(vtx),
            self.writer.as_mut(),
        )?;
        if last {
            s.venc.send_video(None).map_err(|e| e.to_string())?;
            drain_to_eof(
                &mut s.venc,
                &mut s.mux,
                s.vidx,
                Some(vtx),
                self.writer.as_mut(),
            )?;
            let w = self.writer.take().expect("opened above");
            let (path, bytes, hash) = w
                .finish()
                .map_err(|e| format!("finishing segment {k}'s file: {e}"))?;
            sg.record(k, &path, bytes, hash)
                .map_err(|e| format!("recording segment {k}: {e}"))?;
            tracing::info!(
                "segment {}/{} recorded (frames {}..{})",
                k + 1,
                sg.count(),
                first,
                first + frames
            );
        }
        Ok(())
    }
}

/// A fresh encoder for segment `k`; its stream parameters must be those the
/// file was set up with, or the segments could not be stitched.
fn segment_encoder(
    choice: &Choice,
    params: &StreamInfo,
    vset: &EncoderSettings,
    sg: &Segments,
    k: u64,
) -> Result<Encoder, String> {
    let (enc, own) = choice.open_encoder(vset).map_err(|e| e.to_string())?;
    if own != *params {
        return Err(format!(
            "segment {k} of {}: the encoder made other stream headers than the first segment's, so the segments cannot be stitched",
            sg.deliverable
        ));
    }
    Ok(enc)
}

/// The frame index of a packet's pts (the canvas frame rate).
fn frame_of(p: &PacketBuf, rate: abi::Rational) -> i64 {
    frame_index(p.pts, p.time_base, rate)
}

/// A timestamp as the nearest frame index at `rate`.
fn frame_index(pts: i64, tb: abi::Rational, rate: abi::Rational) -> i64 {
    let (num, den) = (
        i128::from(tb.num) * i128::from(rate.num),
        i128::from(tb.den) * i128::from(rate.den),
    );
    if den <= 0 {
        return pts;
    }
    (i128::from(pts) * num * 2 + den).div_euclid(2 * den) as i64
}

#[allow(clippy::type_complexity)]
fn encode(
    p: &Plan,
    m: &Manifest,
    rx: Receiver<Chunk>,
    gain_rx: Receiver<GainResult>,
    tick: Tick<'_>,
    cancel: &AtomicBool,
    mut segments: Option<Segments>,
) -> Result<(Validated, Option<Normalization>), String> {
    let mut s = open_streams(p, m)?;
    let vset = video_settings(p, m);
    let mut seg_state = SegmentState::default();
    if let Some(sg) = segments.as_mut() {
        let reused = sg.load(&s.vparams);
        if reused.is_empty() {
            tracing::info!(
                "encoding in {} segments of {} frames",
                sg.count(),
                sg.length
            );
        } else {
            tracing::info!(
                reused = ?reused,
                "resuming: {} of {} segments were recorded before and are copied, not encoded again",
                reused.len(),
                sg.count()
            );
        }
    }
    let (vtx, vrx) = bounded::<VMsg>(64);
    let dec = p.stream_decoder.clone();
    let params = s.vparams.clone();
    let validator = std::thread::Builder::new()
        .name(format!("validate-{}", p.name))
        .spawn(move || validate_stream(dec, params, vrx))
        .map_err(|e| e.to_string())?;
    let (rate, channels) = (m.canvas.sample_rate, m.canvas.channels);
    let mut out = AudioOut {
        limiter: p
            .normalization
            .as_ref()
            .and_then(|n| n.limiter_ceiling_dbtp)
            .map(|c| Limiter::new(channels, rate, c, LIMITER_LOOKAHEAD_MS, LIMITER_RELEASE_MS)),
        gained: Vec::new(),
        audio: Vec::new(),
        pts: 0,
        rate,
        channels,
    };
    // The final normalization arrives from the gain thread; until then the
    // audio waits here (video goes on).
    let mut audio = AudioState::Waiting(Default::default(), 0);
    let mut norm: Option<Option<Normalization>> = None;
    let max_pending = (MAX_PENDING_AUDIO_S * rate as u64 * channels as u64) as usize;
    let tb = abi::Rational::new(
        m.canvas.frame_rate.den as i32,
        m.canvas.frame_rate.num as i32,
    );
    let result = (|| -> Result<(), String> {
        for chunk in rx {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            let yuv = chunk.picture.clone();
            if (yuv.width, yuv.height, yuv.pix_fmt) != (p.width, p.height, p.pix_fmt) {
                return Err(format!(
                    "the render sent a {}x{} {} picture for a {}x{} {} deliverable",
                    yuv.width,
                    yuv.height,
                    pix::name(yuv.pix_fmt).unwrap_or("?"),
                    p.width,
                    p.height,
                    pix::name(p.pix_fmt).unwrap_or("?")
                ));
            }
            vtx.send(VMsg::Ref(Reference {
                yuv: yuv.clone(),
                rgb: chunk.reference.clone(),
            }))
            .map_err(|_| "validator stopped".to_owned())?;
            match segments.as_mut() {
                None => {
                    s.venc
                        .send_video(Some(&yuv.view(chunk.index as i64, tb, false)))
                        .map_err(|e| e.to_string())?;
                    drain(&mut s.venc, &mut s.mux, s.vidx, Some(&vtx), None)?;
                }
                Some(sg) => {
                    seg_state.frame(sg, &mut s, &vtx, &p.video, &vset, &yuv, chunk.index, tb)?
                }
            }
            if let Some((aenc, aidx)) = &mut s.aenc {
                audio.feed(&chunk, m, &mut out, aenc, &mut s.mux, *aidx)?;
                let wait = audio.waiting_samples() > max_pending;
                if let Some(n) = audio.poll(
                    &gain_rx,
                    wait,
                    s.aparams.as_ref(),
                    &mut out,
                    aenc,
                    &mut s.mux,
                    *aidx,
                )? {
                    norm = Some(n);
                }
            }
            tick(chunk.index + 1);
        }
        // Cancelled: no flush, no verification; the caller removes the file.
        if cancel.load(Ordering::Relaxed) {
            return Err("cancelled".to_owned());
        }
        // Segments flush their encoders at their ends.
        if segments.is_none() {
            s.venc.send_video(None).map_err(|e| e.to_string())?;
            drain_to_eof(&mut s.venc, &mut s.mux, s.vidx, Some(&vtx), None)?;
        }
        if let Some((aenc, aidx)) = &mut s.aenc {
            if let Some(n) = audio.poll(
                &gain_rx,
                true,
                s.aparams.as_ref(),
                &mut out,
                aenc,
                &mut s.mux,
                *aidx,
            )? {
                norm = Some(n);
            }
            audio.finish(&mut out, aenc, &mut s.mux, *aidx)?;
        }
        s.mux.finish().map_err(|e| e.to_string())
    })();
    drop(vtx);
    if cancel.load(Ordering::Relaxed) {
        // Not waiting for the validator: it ends on its own once it has
        // decoded what it holds, and nothing will read its result.
        return Err("cancelled".to_owned());
    }
    let validated = validator
        .join()
        .map_err(|_| "the validation thread panicked".to_owned())?;
    result?;
    let mut norm = norm.flatten();
    if let (Some(n), Some(l)) = (norm.as_mut(), out.limiter.as_ref()) {
        if matches!(audio, AudioState::Encode(_)) {
            n.limiter = Some(l.stats());
        }
    }
    Ok((validated?, norm))
}

/// What the deliverable promises, for the spec checks.
fn expectations(p: &Plan, m: &Manifest) -> qc::Expect {
    let pre = &p.preset;
    qc::Expect {
        codec: Some(pre.video.codec.clone()),
        profile: pre.video.profile.clone(),
        level: None,
        pix_fmt: Some(pre.video.pix_fmt.clone()),
        width: Some(p.width),
        height: Some(p.height),
        frame_rate: Some(abi::Rational::new(
            m.canvas.frame_rate.num as i32,
            m.canvas.frame_rate.den as i32,
        )),
        scan: Some(match pre.video.field_order {
            crate::preset::FieldOrder::Progressive => qc::Scan::Progressive,
            _ => qc::Scan::Interlaced,
        }),
        frames: Some(m.canvas.frames),
        colour: Some(p.color),
        audio: pre.audio.as_ref().map(|a| qc::AudioExpect {
            codec: Some(a.codec.clone()),
            sample_rate: Some(a.sample_rate),
            channels: Some(a.channels),
            bit_depth: pcm_bits(&a.codec),
        }),
        start_timecode: None,
    }
}

/// The delivered audio is the preset's mono tracks: as many audio streams
/// as tracks, one channel each, each carrying its channel of the programme
/// (sample for sample the same as the first track of that channel) or
/// digital silence.
fn tracks_check(
    map: &[crate::preset::Track],
    channels: u32,
    info: &abi::MediaInfo,
    audit: Option<&TrackAudit>,
) -> Check {
    let names: Vec<&str> = map.iter().map(|t| t.name(channels)).collect();
    let wrong = audit.map(|a| a.wrong.clone());
    let pass = info.audio_tracks as usize == map.len()
        && info.channels as usize == map.len()
        && wrong.as_ref().is_some_and(|w| w.iter().all(|&n| n == 0));
    Check::new(
        "audio.tracks",
        "mono audio tracks and what each carries (a channel of the programme, or digital silence); \
         samples that depart from it, per track",
        serde_json::json!({
            "tracks": info.audio_tracks,
            "channels": info.channels,
            "wrong_samples": wrong,
        }),
        format!("= {} mono tracks: {}", map.len(), names.join(" ")),
        pass,
    )
}

/// A ΔE check: held to `max` where the profile sets one, else recorded
/// (info severity).
fn delta_e_check(
    id: &'static str,
    description: String,
    value: Option<f64>,
    max: Option<f64>,
    key: &str,
) -> Check {
    match max {
        Some(max) => Check::new(
            id,
            description,
            value,
            format!("<= {max}"),
            value.is_some_and(|v| v <= max),
        ),
        None => Check::new(
            id,
            description,
            value,
            format!("none ({key} not set): recorded"),
            true,
        )
        .severity(Severity::Info),
    }
}

/// A channel that is silent in the render is silent by design, not
/// missing: the channel check holds the delivery to the render's channels.
fn silent_by_design(p: &Plan, checks: &mut [Check]) {
    let Some(c) = checks
        .iter_mut()
        .find(|c| c.id == "audio.channels" && !c.pass)
    else {
        return;
    };
    let want = p.preset.audio.as_ref().map(|a| a.channels);
    if c.value["channels"].as_u64().map(|n| n as u32) != want {
        return; // a channel really is missing
    }
    let threshold = p.preset.qc.silence.threshold_dbfs;
    // Silent in the render: the programme's own peak below the threshold,
    // or no audio at all in the composition.
    let render_silent = |ch: usize| {
        p.programme.as_ref().is_none_or(|a| {
            a.sample_peak_per_channel_dbfs
                .get(ch)
                .copied()
                .flatten()
                .is_none_or(|db| db < threshold)
        })
    };
    let silent: Vec<usize> = c.value["silent_channels"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|x| x.as_u64())
                .map(|x| x as usize)
                .collect()
        })
        .unwrap_or_default();
    if !silent.is_empty() && silent.iter().all(|&ch| render_silent(ch.saturating_sub(1))) {
        c.pass = true;
        c.threshold
            .push_str(" (channels silent in the render are silent by design)");
    }
}

/// Bits per sample of a PCM codec name (`pcm_s24le` → 24).
pub fn pcm_bits(codec: &str) -> Option<u32> {
    let rest = codec.strip_prefix("pcm_")?;
    let digits: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Decodes the finished file from disk (once) and holds it to the preset:
/// the spec checks of its QC profile, the identity of every picture with
/// what was measured, and the loudness of the delivered audio.
fn verify_file(
    p: &Plan,
    m: &Manifest,
    path: &Path,
    v: &Validated,
    report: &mut DeliverableReport,
) -> Result<(), String> {
    // Native layout and rate: a missing or silent channel must show.
    let cfg = decoder_config(media::VIDEO | media::AUDIO, 0, 0);
    let (mut dec, info) = p
        .file_decoder
        .plugin
        .open_file(&path.to_string_lossy(), &cfg)
        .map_err(|e| format!("the delivered file does not decode: {e}"))?;
    let pre = &p.preset;
    // A programme laid out as mono tracks is measured as the programme (each
    // channel from its first track), and the tracks are held to the layout.
    let map = pre.audio.as_ref().and_then(|a| a.tracks.as_deref());
    let laid_out = map.filter(|m| info.channels as usize == m.len());
    let programme_channels = match (laid_out, &pre.audio) {
        (Some(_), Some(a)) => a.channels,
        _ => info.channels,
    };
    let mut audit = laid_out.map(|m| TrackAudit::new(m.len()));
    let mut programme = Vec::new();
    let mut meter = if info.has_audio != 0 && info.sample_rate > 0 && info.channels > 0 {
        Meter::new(programme_channels, info.sample_rate).ok()
    } else {
        None
    };
    let mut analyzer = qc::Analyzer::new(&pre.qc, &info);
    let mut frames = 0u64;
    let mut mismatched = 0u64;
    // Each picture one frame after the one before: a stitched file (or any
    // file) with a gap, a repeat or a jump in its timestamps fails.
    let rate = abi::Rational::new(
        m.canvas.frame_rate.num as i32,
        m.canvas.frame_rate.den as i32,
    );
    let mut first_pts: Option<i64> = None;
    let mut off_step = 0u64;
    while let Some(f) = dec
        .next_frame()
        .map_err(|e| format!("decoding the delivered file: {e}"))?
    {
        match f {
            Frame::Video(view) => {
                let h = hash_view(&view);
                if v.hashes.get(frames as usize) != Some(&h) {
                    mismatched += 1;
                }
                let at = frame_index(view.pts, view.time_base, rate);
                let first = *first_pts.get_or_insert(at);
                if at != first + frames as i64 {
                    off_step += 1;
                }
                analyzer.video(&view);
                frames += 1;
            }
            Frame::Audio {
                samples,
                channels,
                sample_rate,
                ..
            } => {
                let (samples, channels) = match (laid_out, &mut audit) {
                    (Some(m), Some(a)) if channels as usize == m.len() => {
                        a.add(samples, m);
                        tracks::programme_of(samples, m, programme_channels, &mut programme);
                        (&programme[..], programme_channels)
                    }
                    _ => (samples, channels),
                };
                analyzer.audio(samples, channels, sample_rate);
                if let Some(mt) = &mut meter {
                    mt.add(samples).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    let analysis = analyzer.finish();
    let mut probe = qc::probe(&info, frames);
    if let Some(map) = map {
        report
            .checks
            .push(tracks_check(map, programme_channels, &info, audit.as_ref()));
        if laid_out.is_some() {
            probe.channels = programme_channels;
        }
    }
    let (mut checks, thumbnails) = qc::spec_checks(&analysis, &probe, &expectations(p, m), &pre.qc);
    checks.extend(qc::codec_tag_check(path, &pre.qc));
    silent_by_design(p, &mut checks);
    report.checks.extend(checks);
    report.thumbnails = thumbnails;
    let c = &mut report.checks;
    c.push(Check::new(
        "video.bitstream_identity",
        "pictures decoded from the file that differ from the pictures that were measured",
        mismatched,
        "= 0",
        mismatched == 0 && frames as usize == v.hashes.len(),
    ));
    if let Some(a) = &v.alpha {
        c.push(a.check());
    }
    c.push(Check::new(
        "video.timestamps",
        "pictures whose timestamp is not exactly one frame after the previous picture's",
        off_step,
        "= 0",
        off_step == 0,
    ));
    let sum = v.series.summary();
    c.push(Check::new(
        "video.psnr_y",
        "luma PSNR against the render, from the mean MSE over frames (dB; null = identical)",
        sum.psnr_y,
        format!(">= {}", pre.qc.min_psnr_y),
        sum.psnr_y.is_none_or(|p| p >= pre.qc.min_psnr_y),
    ));
    c.push(Check::new(
        "video.ssim_y",
        "luma SSIM against the render, worst frame",
        sum.ssim_y_min,
        format!(">= {}", pre.qc.min_ssim_y),
        sum.ssim_y_min >= pre.qc.min_ssim_y,
    ));
    let de = sum.delta_e.as_ref();
    let de_desc = format!(
        "ΔE2000 against the render, 99th percentile over the programme ({})",
        de.map_or("not measured", |d| d.method.as_str())
    );
    let de_value = de.map(|d| d.p99);
    c.push(delta_e_check(
        "video.delta_e",
        de_desc,
        de_value,
        pre.qc.max_delta_e_p99,
        "qc.max_delta_e_p99",
    ));
    let de_mean = de.map(|d| d.mean);
    c.push(delta_e_check(
        "video.delta_e_mean",
        "ΔE2000 against the render, mean over the programme (systematic colour errors: matrix, range, primaries)".to_owned(),
        de_mean,
        pre.qc.max_delta_e_mean,
        "qc.max_delta_e_mean",
    ));
    let delivered = meter.map(|mt| mt.analysis());
    if let (Some(n), Some(d)) = (&p.normalization, delivered.as_ref().map(|a| a.summary)) {
        let tol = pre.loudness.tolerance_lu;
        if let Some(i) = d.integrated_lufs {
            c.push(Check::new(
                "audio.loudness",
                "integrated loudness of the delivered audio (LUFS)",
                i,
                format!("{} ± {tol}", n.target_lufs),
                (i - n.target_lufs).abs() <= tol,
            ));
        } else {
            c.push(Check::new(
                "audio.loudness",
                "integrated loudness of the delivered audio (LUFS)",
                "silent (below the absolute gate)",
                "not measured: the programme is silent",
                true,
            ));
        }
        if let (Some(max_s), Some(a)) = (pre.loudness.max_short_term_lufs, delivered.as_ref()) {
            c.push(Check::new(
                "audio.max_short_term",
                "highest short-term loudness (3 s window, every 10 ms) of the delivered audio (LUFS)",
                a.max_short_term_lufs,
                format!("<= {max_s}"),
                a.max_short_term_lufs.is_none_or(|v| v <= max_s),
            ));
        }
        c.push(Check::new(
            "audio.true_peak",
            "maximum true peak of the delivered audio (dBTP)",
            d.true_peak_dbtp,
            format!("<= {}", n.ceiling_dbtp),
            d.true_peak_dbtp.is_none_or(|tp| tp <= n.ceiling_dbtp),
        ));
    }
    report.loudness = p
        .normalization
        .clone()
        .zip(p.programme.clone())
        .map(|(n, programme)| LoudnessReport {
            programme,
            normalization: n,
            delivered,
            tolerance_lu: pre.loudness.tolerance_lu,
        });
    report.probe = Some(probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::image::{rgba_to_yuv, Rgba8};

    fn encoder(implementation: &str, hardware: bool, rank: i32) -> CapabilityInfo {
        CapabilityInfo {
            kind: cap::ENCODE,
            media: media::VIDEO,
            name: "h264".into(),
            implementation: implementation.into(),
            profiles: Vec::new(),
            pix_fmts: Vec::new(),
            hardware,
            rank,
        }
    }

    fn pick(
        caps: &[CapabilityInfo],
        policy: HardwarePolicy,
        here: &[&str],
    ) -> Result<(String, Option<String>), Option<String>> {
        let here: Vec<String> = here.iter().map(|s| (*s).to_owned()).collect();
        select_video(caps.to_vec(), |c| c, "h264", policy, &here)
            .map(|(c, why)| (c.implementation, why))
    }

    #[test]
    fn the_hardware_policy_chooses_among_fabricated_encoders() {
        use HardwarePolicy::{Never, Prefer, Require};
        let software = [
            encoder("libx264", false, 100),
            encoder("x264-lite", false, 50),
        ];
        let both = [
            encoder("libx264", false, 100),
            encoder("h264_vaapi", true, 80),
            encoder("h264_nvenc", true, 90),
        ];
        let gpu = ["h264 (h264_nvenc in ffmpeg)"];

        // Never: software only, as before, even where hardware ranks higher.
        assert_eq!(pick(&both, Never, &gpu), Ok(("libx264".into(), None)));
        let only_hw = [encoder("h264_nvenc", true, 90)];
        let e = pick(&only_hw, Never, &gpu).unwrap_err().unwrap();
        assert!(e.starts_with("video.hardware = \"never\""), "{e}");
        assert!(e.contains("(h264_nvenc)"), "{e}");

        // Require: the best hardware one, else a refusal that says what
        // exists.
        assert_eq!(pick(&both, Require, &gpu), Ok(("h264_nvenc".into(), None)));
        let e = pick(&software, Require, &[]).unwrap_err().unwrap();
        assert!(e.starts_with("video.hardware = \"require\""), "{e}");
        assert!(e.contains("no hardware encoder for `h264`"), "{e}");
        assert!(e.contains("hardware encoders here: none"), "{e}");
        assert!(e.contains("software: libx264, x264-lite"), "{e}");
        // Hardware for another codec is named, so the user sees the GPU works.
        let e = pick(&software, Require, &["hevc (hevc_nvenc in ffmpeg)"])
            .unwrap_err()
            .unwrap();
        assert!(
            e.contains("hardware encoders here: hevc (hevc_nvenc in ffmpeg)"),
            "{e}"
        );

        // Prefer: hardware when there is one, silently.
        assert_eq!(pick(&both, Prefer, &gpu), Ok(("h264_nvenc".into(), None)));
        // Else the best software one, with the reason.
        let (imp, why) = pick(&software, Prefer, &[]).unwrap();
        assert_eq!(imp, "libx264");
        let why = why.expect("a fallback is explained");
        assert!(why.contains("no hardware encoder for `h264`"), "{why}");
        assert!(why.contains("encoded in software with libx264"), "{why}");

        // No encoder at all is the caller's "no plugin offers" (a job waits).
        for policy in [Never, Prefer, Require] {
            assert_eq!(pick(&[], policy, &gpu), Err(None));
        }
    }

    #[test]
    fn a_deeper_decode_gets_a_widened_reference() {
        let mut y = Yuv::new(4, 2, pix::YUV444P10, abi::ColorTags::UNSPECIFIED);
        for p in &mut y.planes {
            for (i, s) in p.chunks_exact_mut(2).enumerate() {
                s.copy_from_slice(&(i as u16 * 100 + 64).to_le_bytes());
            }
        }
        let w = widen_to(&y, pix::YUV444P12).expect("10 → 12 bits, same layout");
        assert_eq!(w.pix_fmt, pix::YUV444P12);
        assert_eq!(w.strides, y.strides);
        let sample = |p: &[u8], i: usize| u16::from_le_bytes([p[2 * i], p[2 * i + 1]]);
        assert_eq!(sample(&w.planes[0], 3), (3 * 100 + 64) << 2);
        assert_eq!(sample(&w.planes[2], 7), (7 * 100 + 64) << 2);
        // Same format, another layout, or fewer bits: measured as they are.
        assert!(widen_to(&y, pix::YUV444P10).is_none());
        assert!(widen_to(&y, pix::YUV422P12).is_none());
        let y12 = w;
        assert!(widen_to(&y12, pix::YUV444P10).is_none());
    }

    #[test]
    fn alpha_is_held_to_the_render_within_one_code_value() {
        let mut src = Rgba8::new(8, 2);
        for (i, p) in src.data.chunks_exact_mut(4).enumerate() {
            p.copy_from_slice(&[10, 20, 30, (i * 16) as u8]);
        }
        let mut r = Yuv::new(8, 2, pix::YUVA444P10, abi::ColorTags::BT709_LIMITED);
        rgba_to_yuv(&src, &mut r);
        let tb = abi::Rational::new(1, 25);
        // Decoded as FFmpeg does, at 12 bits: exact.
        let w = widen_to(&r, pix::YUVA444P12).unwrap();
        let mut m = AlphaMatch::default();
        m.add(&r, &w.view(0, tb, true));
        assert_eq!((m.max_diff, m.missing), (0, 0));
        assert!(m.check().pass);
        // Two code values off in one sample, on the second frame: fails,
        // and says where.
        let mut off = w.clone();
        let v = u16::from_le_bytes([off.planes[3][6], off.planes[3][7]]) + 2 * 16;
        off.planes[3][6..8].copy_from_slice(&v.to_le_bytes());
        m.add(&r, &off.view(1, tb, true));
        assert_eq!((m.max_diff, m.worst_frame), (2, 1));
        assert!(!m.check().pass);
        // Decoded without an alpha plane: the alpha was lost.
        let mut lost = AlphaMatch::default();
        let flat = Yuv::new(8, 2, pix::YUV444P12, abi::ColorTags::BT709_LIMITED);
        lost.add(&r, &flat.view(0, tb, true));
        let c = lost.check();
        assert!(!c.pass && c.value.is_null(), "{c:?}");
    }

    #[test]
    fn the_fourcc_reaches_the_muxer_unless_the_preset_tags_it_itself() {
        let lib = crate::preset::PresetLibrary::builtin();
        let p = lib
            .resolve("master/prores-422-hq", &toml::Table::new())
            .unwrap();
        assert_eq!(container_options(&p)["video_tag"].as_str(), Some("apch"));
        let own: toml::Table = toml::from_str("container_options.video_tag = \"apcn\"").unwrap();
        let p = lib.resolve("master/prores-422-hq", &own).unwrap();
        assert_eq!(container_options(&p)["video_tag"].as_str(), Some("apcn"));
        let p = lib
            .resolve("master/dnxhr-hq-mxf", &toml::Table::new())
            .unwrap();
        assert!(!container_options(&p).contains_key("video_tag"));
    }

    #[test]
    fn global_headers_where_the_container_keeps_them() {
        for c in ["mp4", "mov", "matroska", "webm"] {
            assert!(wants_global_header(c), "{c}");
        }
        assert!(!wants_global_header("mxf"));
    }
}
