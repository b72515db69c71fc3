//! The timeline: turns the composition model into one [`FramePlan`] per
//! canvas frame, with the source images the plan draws (see `plan.rs` for
//! what executors do with them).
//!
//! Per frame `n`, each track's active clips bottom to top: keyframes are
//! evaluated at the clip-relative frame `n − start`; a clip inside its
//! `transition_in` becomes a layer whose [`Mix`] pairs it with the outgoing
//! clip of the same track, at `t = (k + 0.5) / frames` on its `k`-th frame.
//!
//! # Geometry
//! A source of `sw × sh` pixels is laid out as the model says:
//! 1. `fit`: `None` keeps native pixels at the canvas's top-left; `Fit` /
//!    `Fill` scale it (aspect kept) to fit inside / cover the canvas and
//!    centre it; `Stretch` scales it to the canvas size. Fit uses the whole
//!    source, so an animated crop never rescales the picture.
//! 2. `scale` about the fitted rectangle's top-left, then `position` moves
//!    that top-left by canvas pixels;
//! 3. `rotation` degrees clockwise (y down) about the centre of that
//!    rectangle.
//!
//! The plan carries the inverse (canvas pixel → source pixel) and the crop
//! rectangle `[l, t, sw − r, sh − b]` in source pixels.
//!
//! # Sources
//! Each source image is linear light, premultiplied, in the canvas's
//! primaries. Media frames are linearized by their tags
//! (`colour::resolve_source`; missing tags are listed by
//! [`Timeline::notes`]): planar 8- and 10-bit Y'CbCr straight from the
//! plugin file decoder's native frames (`ycbcr`), anything else as 8-bit
//! RGBA converted by the decoder; stills (PNG, JPEG) are taken as sRGB;
//! generator and title colours are in the canvas's encoding. Stills, titles,
//! bars and solids are made once (a solid as a single texel the plan
//! stretches over the canvas); the pattern once per frame; a media frame
//! once per change, with [`SourceKey::generation`] bumped only then, so a
//! 24 fps clip on a 50 fps canvas shows (and executors upload) each frame
//! twice or thrice from one conversion.
//!
//! # Memory
//! Only what frame `n` needs is held: a decoder per active media clip (its
//! current frame and one read ahead), and each made-once image while a clip
//! that shows it is active or still to come.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ab_glyph::{point, Font, FontArc, PxScale, ScaleFont};
use deliver_plugin_api::abi::{self, cap, media, pix};
use deliver_plugin_api::host::{FileDecoder, Frame};

use super::colour::{self, eotf, linearize_rgba8, SourceColour};
use super::cpu::SourceGrade;
use super::image::Yuv;
use super::lut::PreparedLut;
use super::plan::{
    ColourOps as PlanColourOps, FramePlan, LayerOp, LinearImage, Lut3d, Mix, MixKind, SourceKey,
};
use super::{bars, pattern, pattern_background, ycbcr, RenderError, Rgba8};
use crate::manifest::model::{
    Fit, ImageSequence, Manifest, Primaries, Rate, Rgba, Title, Transfer, TransitionKind,
    VideoClip, VideoSource,
};
use crate::plugins::Registry;

/// The font titles use when they name none (Debian's `fonts-dejavu-core`).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The working primaries and the transfer colour operations encode with,
/// for a canvas `colour_space`: "bt709", or "bt2020" (SDR: the BT.2020
/// transfer is the BT.709 curve).
pub fn canvas_colour(colour_space: &str) -> (Primaries, Transfer) {
    match colour_space {
        "bt2020" => (Primaries::Bt2020, Transfer::Bt709),
        _ => (Primaries::Bt709, Transfer::Bt709),
    }
}

/// The source time (seconds) a media clip shows at canvas frame `n`:
/// `in_point + (n − start) / rate · speed`.
pub fn source_time(clip: &VideoClip, n: u64, rate: Rate) -> f64 {
    let into = n.saturating_sub(clip.start) as f64;
    clip.in_point + into * f64::from(rate.den) / f64::from(rate.num) * clip.speed
}

/// Slack when comparing a source time with a frame's timestamp: half a
/// tick of the stream's time base, so a frame whose timestamp the
/// container rounded (Matroska to the nearest 1 ms) still counts as on
/// screen at its exact time, never more than a quarter of a source frame,
/// and no more than the rounding can explain: with a fine time base (MOV's
/// 1/24000) a canvas time 0.5 ms before a frame's start still shows the
/// frame before it, as a timeline of mixed rates asks.
fn pts_slack(source_fps: f64, tick: f64) -> f64 {
    let rounding = 0.5 * tick + 1e-7;
    if source_fps > 0.0 {
        (0.25 / source_fps).min(rounding)
    } else {
        rounding
    }
}

/// The index of the source frame on screen at `t` seconds for a constant
/// frame rate starting at 0, stamped in ticks of `tick` seconds: the last
/// frame starting at or before `t`.
pub fn frame_on_screen(t: f64, source_fps: f64, tick: f64) -> u64 {
    ((t + pts_slack(source_fps, tick)) * source_fps)
        .floor()
        .max(0.0) as u64
}

/// An 8-bit straight-alpha colour in the canvas encoding → linear
/// premultiplied.
pub fn linear_colour(c: Rgba, transfer: Transfer) -> [f32; 4] {
    let a = f32::from(c.0[3]) / 255.0;
    let l = |v: u8| eotf(transfer, f32::from(v) / 255.0) * a;
    [l(c.0[0]), l(c.0[1]), l(c.0[2]), a]
}

/// Canvas pixel → source pixel for a `src` sized source placed on a
/// `canvas` sized canvas (see the module docs for the order).
pub fn layer_inverse(
    src: (f32, f32),
    canvas: (f32, f32),
    fit: Fit,
    scale: f32,
    position: [f32; 2],
    rotation_deg: f32,
) -> [f32; 6] {
    let (sw, sh) = (f64::from(src.0), f64::from(src.1));
    let (cw, ch) = (f64::from(canvas.0), f64::from(canvas.1));
    let (fx, fy, ox, oy) = match fit {
        Fit::None => (1.0, 1.0, 0.0, 0.0),
        Fit::Fit | Fit::Fill => {
            let s = if fit == Fit::Fit {
                (cw / sw).min(ch / sh)
            } else {
                (cw / sw).max(ch / sh)
            };
            (s, s, (cw - sw * s) / 2.0, (ch - sh * s) / 2.0)
        }
        Fit::Stretch => (cw / sw, ch / sh, 0.0, 0.0),
    };
    let s = f64::from(scale);
    let (dx, dy) = (fx * s, fy * s);
    let tl = (ox + f64::from(position[0]), oy + f64::from(position[1]));
    let c = (tl.0 + sw * dx / 2.0, tl.1 + sh * dy / 2.0);
    let (sin, cos) = rotation_sin_cos(rotation_deg);
    // uv = D⁻¹ (Rᵀ (p − c) + c − TL)
    let m = [
        cos / dx,
        sin / dx,
        (-cos * c.0 - sin * c.1 + c.0 - tl.0) / dx,
        -sin / dy,
        cos / dy,
        (sin * c.0 - cos * c.1 + c.1 - tl.1) / dy,
    ];
    m.map(|v| v as f32)
}

/// Exact values at multiples of 90°, so quarter turns map pixel centres
/// onto pixel centres.
fn rotation_sin_cos(deg: f32) -> (f64, f64) {
    let d = f64::from(deg).rem_euclid(360.0);
    match d {
        0.0 => (0.0, 1.0),
        90.0 => (1.0, 0.0),
        180.0 => (0.0, -1.0),
        270.0 => (-1.0, 0.0),
        _ => d.to_radians().sin_cos(),
    }
}

/// Which made-once image a clip shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum StaticId {
    Bars,
    Solid([u8; 4]),
    /// Index into [`Timeline::stills`].
    Still(usize),
    Title(usize, usize),
    /// The pattern's still background (kept in `Timeline::pattern_bg`).
    PatternBackground,
}

/// Source keys of generators and stills: the clip ids `(track, clip)` can
/// never reach these.
const GENERATOR_TRACK: usize = usize::MAX;
const STILL_TRACK: usize = usize::MAX - 1;

impl StaticId {
    fn key(self) -> SourceKey {
        let id = match self {
            StaticId::Bars => (GENERATOR_TRACK, 0),
            StaticId::PatternBackground => (GENERATOR_TRACK, 1),
            StaticId::Solid(c) => (GENERATOR_TRACK, 2 + u32::from_le_bytes(c) as usize),
            StaticId::Still(i) => (STILL_TRACK, i),
            StaticId::Title(t, c) => (t, c),
        };
        SourceKey { id, generation: 0 }
    }
}

const PATTERN_KEY: (usize, usize) = (GENERATOR_TRACK, 1);

/// A source ready for one frame: its image and the size its geometry is
/// computed in (a solid is one texel standing for the whole canvas).
struct Shown {
    key: SourceKey,
    image: Arc<LinearImage>,
    logical: (f32, f32),
    /// The image already carries the clip's grade (see
    /// [`Timeline::grade_sources`]): its layer draws it ungraded.
    graded: bool,
}

/// A decoded picture as the reader keeps it until it is linearized.
enum Picture {
    /// Converted to RGBA by the decoder.
    Rgba(Rgba8),
    /// Native planar Y'CbCr, one of [`ycbcr::FORMATS`].
    Ycbcr(Yuv),
}

/// Reads a media file's video forwards, holding the frame on screen at the
/// last requested time, linearized once per change.
struct MediaReader {
    path: PathBuf,
    dec: FileDecoder,
    colour: SourceColour,
    fps: f64,
    slack: f64,
    cur: Option<(Picture, f64)>,
    next: Option<(Picture, f64)>,
    /// The picture last replaced, whose buffers the next decoded frame
    /// takes: several MB a 1080p frame, allocated afresh it was a
    /// page-faulting mmap per frame and a heap high-water mark that grew
    /// with the run.
    spare: Option<Picture>,
    eof: bool,
    /// The frame shown, linearized; its generation; whether graded.
    linear: Option<(Arc<LinearImage>, u64, bool)>,
    /// Earlier frames' linear images, for their buffers (each 16 bytes a
    /// pixel): taken again once the renderer lets them go.
    retired: Vec<Arc<LinearImage>>,
    /// The picture size the file's header gives.
    size: (u32, u32),
    /// The clip's grade as applied while linearizing (made on first use).
    grade: Option<SourceGrade>,
}

/// A clip's grade for [`MediaReader::update`] to apply while it
/// linearizes (see [`Timeline::grade_sources`]).
#[derive(Clone)]
struct GradeAtSource {
    ops: PlanColourOps,
    /// The canvas's transfer, which the grade works in.
    transfer: Transfer,
    lut: Option<Arc<PreparedLut>>,
    /// The picture size the layer was found on whole pixels for: a frame
    /// of another size is not graded.
    size: (u32, u32),
}

impl MediaReader {
    /// Opens `path` at time `at`. With `native`, a file whose video is
    /// planar Y'CbCr that [`ycbcr`] converts (and whose matrix it knows) is
    /// read as native frames, anything else as RGBA; without, as RGBA.
    fn open(
        reg: &Registry,
        path: &Path,
        at: f64,
        native: bool,
    ) -> Result<(Self, abi::MediaInfo), String> {
        let choice = reg
            .find(cap::FILE_DECODE, "*", None)
            .ok_or("no file decoder loaded")?;
        let open = |video_pix_fmt| {
            let cfg = abi::DecoderConfig {
                struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
                want: media::VIDEO,
                video_pix_fmt,
                audio_sample_rate: 0,
                audio_channels: 0,
                threads: 0,
                reserved: [0; 4],
            };
            choice
                .plugin
                .open_file(&path.to_string_lossy(), &cfg)
                .map_err(|e| e.to_string())
        };
        // With `native`, native frames first: planar Y'CbCr that `ycbcr`
        // converts opens once (and a decoder that gives only native frames,
        // like the Y4M example plugin, serves); anything else reopens as
        // RGBA. Without, RGBA only (a sequence's images: one open each).
        let (mut dec, mut info) = open(if native { pix::NONE } else { pix::RGBA })?;
        if info.has_video == 0 {
            return Err("no video stream".into());
        }
        let m = info.color.matrix;
        let known_matrix = m == 0 || m == 2 || colour::matrix_coefficients(m).is_some();
        if native && !(ycbcr::supports(info.pix_fmt) && known_matrix) {
            (dec, info) = open(pix::RGBA)?;
        }
        if at > 0.0 {
            dec.seek((at * 1e6) as i64).map_err(|e| e.to_string())?;
        }
        let fps = if info.frame_rate.den > 0 && info.frame_rate.num > 0 {
            f64::from(info.frame_rate.num) / f64::from(info.frame_rate.den)
        } else {
            0.0
        };
        Ok((
            MediaReader {
                path: path.to_owned(),
                dec,
                colour: media_colour(&info),
                fps,
                // Until a frame shows the stream's time base: a millisecond.
                slack: pts_slack(fps, 1e-3),
                cur: None,
                next: None,
                spare: None,
                eof: false,
                linear: None,
                retired: Vec::new(),
                size: (info.width, info.height),
                grade: None,
            },
            info,
        ))
    }

    fn read(&mut self) -> Result<Option<(Picture, f64)>, RenderError> {
        loop {
            let f = self.dec.next_frame().map_err(|e| RenderError::Decode {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
            match f {
                None => return Ok(None),
                Some(Frame::Video(v)) => {
                    let t = v.pts as f64 * v.time_base.as_f64();
                    if v.time_base.num > 0 && v.time_base.den > 0 {
                        self.slack = pts_slack(self.fps, v.time_base.as_f64());
                    }
                    let pic = match (v.pix_fmt, self.spare.take()) {
                        (pix::RGBA, spare) => {
                            let mut img = match spare {
                                Some(Picture::Rgba(s)) => s,
                                _ => Rgba8::new(0, 0),
                            };
                            img.copy_from_view(&v);
                            Picture::Rgba(img)
                        }
                        (f, spare) if ycbcr::supports(f) => {
                            let mut img = match spare {
                                Some(Picture::Ycbcr(s)) => s,
                                _ => Yuv::new(0, 0, f, v.color),
                            };
                            img.copy_from_view(&v);
                            Picture::Ycbcr(img)
                        }
                        (f, _) => {
                            return Err(RenderError::Decode {
                                path: self.path.clone(),
                                reason: format!(
                                    "the video changed to pixel format {} mid-stream",
                                    pix::name(f).unwrap_or("unknown")
                                ),
                            })
                        }
                    };
                    return Ok(Some((pic, t)));
                }
                Some(Frame::Audio { .. }) => continue,
            }
        }
    }

    /// Moves to the frame on screen at `t` (the last one stamped at or
    /// before it; the first frame before the stream starts; the last one
    /// after it ends). True when the shown frame changed.
    fn advance(&mut self, t: f64) -> Result<bool, RenderError> {
        let mut changed = false;
        loop {
            if self.next.is_none() && !self.eof {
                self.next = self.read()?;
                self.eof = self.next.is_none();
            }
            match &self.next {
                Some((_, nt)) if *nt <= t + self.slack || self.cur.is_none() => {
                    let old = std::mem::replace(&mut self.cur, self.next.take());
                    self.spare = old.map(|(img, _)| img);
                    changed = true;
                }
                _ => break,
            }
        }
        Ok(changed)
    }

    /// Advances to `t`; the frame now shown, linearized into `canvas`
    /// primaries (graded by `grade` where it can be, see
    /// [`MediaReader::gradable`]), with whether it was graded, when it
    /// changed (or was never linearized, or is to be graded otherwise).
    fn update(
        &mut self,
        t: f64,
        canvas: Primaries,
        grade: Option<&GradeAtSource>,
    ) -> Result<Option<(LinearImage, bool)>, RenderError> {
        let changed = self.advance(t)?;
        let (img, _) = self.cur.as_ref().ok_or_else(|| RenderError::Decode {
            path: self.path.clone(),
            reason: "the file has no video frames".into(),
        })?;
        let grade = grade.filter(|g| self.gradable(img, g, canvas));
        if !changed && self.linear.as_ref().is_some_and(|l| l.2 == grade.is_some()) {
            return Ok(None);
        }
        if let Some(g) = grade {
            if self.grade.is_none() {
                let table = &ycbcr::table(self.colour.transfer)[..];
                self.grade = Some(SourceGrade::new(g.ops, g.transfer, g.lut.clone(), table));
            }
        }
        // An earlier frame's pixels that no one holds any more: with frames
        // made ahead (`frames_ahead`) the renderer still draws the last one.
        if let Some((l, _, _)) = self.linear.take() {
            self.retired.push(l);
        }
        let mut out = match self.retired.iter().position(|l| Arc::strong_count(l) == 1) {
            Some(i) => Arc::try_unwrap(self.retired.swap_remove(i)).unwrap_or_else(|_| {
                unreachable!("the only holder, and the reader lends it to no one now")
            }),
            None => LinearImage::new(0, 0),
        };
        // Beyond two frames in flight, a buffer is one too many.
        if self.retired.len() > 2 {
            self.retired.remove(0);
        }
        let (img, _) = self.cur.as_ref().expect("checked above");
        let graded = self.linearize(img, canvas, grade.and(self.grade.as_ref()), &mut out);
        Ok(Some((out, graded)))
    }

    /// Whether `pic` can be graded while linearized: native Y'CbCr of the
    /// size the layer was placed for, in the canvas's primaries (the grade
    /// then starts from the linearizer's table entries, see
    /// [`SourceGrade`]).
    fn gradable(&self, pic: &Picture, g: &GradeAtSource, canvas: Primaries) -> bool {
        matches!(pic, Picture::Ycbcr(y) if (y.width, y.height) == g.size)
            && self.colour.primaries == canvas
    }

    /// Linearizes `pic`, one of this reader's pictures, into `out`, graded
    /// by `grade` where the picture is Y'CbCr (true when it was).
    fn linearize(
        &self,
        pic: &Picture,
        canvas: Primaries,
        grade: Option<&SourceGrade>,
        out: &mut LinearImage,
    ) -> bool {
        let c = &self.colour;
        match pic {
            Picture::Rgba(img) => {
                colour::linearize_rgba8_into(
                    &img.data,
                    img.width,
                    img.height,
                    c.transfer,
                    c.primaries,
                    canvas,
                    out,
                );
                false
            }
            Picture::Ycbcr(img) => {
                // The frame's own matrix and range when it names ones we
                // know (as swscale took them), else the stream's, resolved.
                let tags = img.color;
                let matrix = if colour::matrix_coefficients(tags.matrix).is_some() {
                    tags.matrix
                } else {
                    c.matrix
                };
                let range = if tags.range == 1 || tags.range == 2 {
                    tags.range
                } else {
                    c.range
                };
                ycbcr::linearize_ycbcr_graded(
                    img,
                    matrix,
                    range == 2,
                    c.transfer,
                    c.primaries,
                    canvas,
                    grade,
                    out,
                )
            }
        }
    }

    fn current_time(&self) -> Option<f64> {
        self.cur.as_ref().map(|c| c.1)
    }
}

/// Opens a media file (or an image of a sequence) once before rendering,
/// so that a missing decoder or a bad file fails the job up front, and
/// notes what its missing tags made the timeline assume.
fn preflight_media(
    registry: &Registry,
    path: &Path,
    at: f64,
    track: &crate::manifest::model::VideoTrack,
    ci: usize,
    what: &str,
    notes: &mut Vec<String>,
) -> Result<(), RenderError> {
    if registry.find(cap::FILE_DECODE, "*", None).is_none() {
        return Err(RenderError::NoDecoder {
            available: registry.available(cap::FILE_DECODE).join(", "),
        });
    }
    let (r, _) =
        MediaReader::open(registry, path, at, true).map_err(|reason| RenderError::Open {
            path: path.to_owned(),
            track: track.name.clone(),
            clip: ci,
            reason,
        })?;
    for a in &r.colour.assumed {
        notes.push(format!("track {} clip {ci} ({what}): {a}", track.name));
    }
    Ok(())
}

/// The picture size of a media file, as the file decoder reads it.
pub fn probe_size(reg: &Registry, path: &Path) -> Option<(u32, u32)> {
    let (_, info) = MediaReader::open(reg, path, 0.0, true).ok()?;
    (info.width > 0 && info.height > 0).then_some((info.width, info.height))
}

/// What a media file's pixels are, after the rules for missing tags.
fn media_colour(info: &abi::MediaInfo) -> SourceColour {
    let fps = if info.frame_rate.den > 0 {
        f64::from(info.frame_rate.num) / f64::from(info.frame_rate.den)
    } else {
        0.0
    };
    let native = abi::name_str(&info.pix_fmt_name);
    let rgb = ["rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr"]
        .iter()
        .any(|p| native.starts_with(p));
    colour::resolve_source(info.color, info.height, fps, rgb)
}

/// Builds frame plans for one manifest (see the module docs).
pub struct Timeline<'a> {
    manifest: &'a Manifest,
    registry: &'a Registry,
    primaries: Primaries,
    transfer: Transfer,
    background: [f32; 4],
    luts: Arc<Vec<Lut3d>>,
    /// Per track, per clip.
    colour: Vec<Vec<PlanColourOps>>,
    fonts: HashMap<PathBuf, FontArc>,
    stills: Vec<PathBuf>,
    /// Per track, per clip: the made-once image it shows, if any.
    static_of: Vec<Vec<Option<StaticId>>>,
    /// For each made-once image, the frame after the last clip showing it.
    static_end: HashMap<StaticId, u64>,
    statics: HashMap<StaticId, Arc<LinearImage>>,
    readers: HashMap<(usize, usize), MediaReader>,
    /// Per image-sequence clip: the image number on screen, linearized,
    /// and its generation.
    sequences: HashMap<(usize, usize), (u64, Arc<LinearImage>, u64)>,
    /// Next generation handed to a changed media frame (one counter for all
    /// readers, so a reopened reader never repeats a generation).
    next_generation: u64,
    /// The pattern's still background (canvas encoded) and its frame `n`.
    pattern_bg: Option<Rgba8>,
    pattern_frame: Option<(u64, Arc<LinearImage>)>,
    notes: Vec<String>,
    /// See [`Timeline::grade_sources`].
    grade_sources: bool,
    /// Per LUT, laid out for grading at the source (made on first use).
    prepared: Vec<Option<Arc<PreparedLut>>>,
}

impl<'a> Timeline<'a> {
    /// Checks every source up front (media opened once, stills' headers
    /// read, fonts loaded) and loads each distinct LUT once, so that a bad
    /// file fails the job before any frame is drawn.
    ///
    /// # Errors
    /// The first source that cannot be opened or loaded, naming its track,
    /// clip and file.
    pub fn new(
        manifest: &'a Manifest,
        registry: &'a Registry,
        lut_loader: &dyn Fn(&Path) -> Result<Lut3d, String>,
    ) -> Result<Timeline<'a>, RenderError> {
        let (primaries, transfer) = canvas_colour(&manifest.canvas.colour_space);
        let mut luts = Vec::new();
        let mut lut_index: HashMap<PathBuf, usize> = HashMap::new();
        let mut colour = Vec::new();
        let mut fonts = HashMap::new();
        let mut stills: Vec<PathBuf> = Vec::new();
        let mut static_of = Vec::new();
        let mut static_end: HashMap<StaticId, u64> = HashMap::new();
        let mut notes = Vec::new();
        for (ti, track) in manifest.video.iter().enumerate() {
            let mut track_colour = Vec::new();
            let mut track_static = Vec::new();
            for (ci, clip) in track.clips.iter().enumerate() {
                let load_err =
                    |what: &'static str, path: &Path, reason: String| RenderError::Load {
                        what,
                        path: path.to_owned(),
                        track: track.name.clone(),
                        clip: ci,
                        reason,
                    };
                let lut = match &clip.colour.lut {
                    None => None,
                    Some(p) => Some(match lut_index.get(p) {
                        Some(&i) => i,
                        None => {
                            let l = lut_loader(p).map_err(|r| load_err("LUT", p, r))?;
                            luts.push(l);
                            lut_index.insert(p.clone(), luts.len() - 1);
                            luts.len() - 1
                        }
                    }),
                };
                track_colour.push(plan_colour(&clip.colour, lut));
                let sid = match &clip.source {
                    VideoSource::Media { path } => {
                        let what = path.display().to_string();
                        preflight_media(
                            registry,
                            path,
                            clip.in_point,
                            track,
                            ci,
                            &what,
                            &mut notes,
                        )?;
                        None
                    }
                    VideoSource::Still { path } => {
                        image::image_dimensions(path)
                            .map_err(|e| load_err("still", path, e.to_string()))?;
                        let i = match stills.iter().position(|p| p == path) {
                            Some(i) => i,
                            None => {
                                stills.push(path.clone());
                                notes.push(format!(
                                    "still {}: taken as sRGB (IEC 61966-2-1), BT.709 primaries",
                                    path.display()
                                ));
                                stills.len() - 1
                            }
                        };
                        Some(StaticId::Still(i))
                    }
                    VideoSource::Title(t) => {
                        let path = t
                            .font
                            .clone()
                            .unwrap_or_else(|| PathBuf::from(DEFAULT_FONT));
                        if let std::collections::hash_map::Entry::Vacant(slot) = fonts.entry(path) {
                            let path = slot.key();
                            let bytes = std::fs::read(path)
                                .map_err(|e| load_err("font", path, e.to_string()))?;
                            let f = FontArc::try_from_vec(bytes)
                                .map_err(|e| load_err("font", path, e.to_string()))?;
                            slot.insert(f);
                        }
                        Some(StaticId::Title(ti, ci))
                    }
                    VideoSource::ImageSequence(seq) => {
                        let first = seq.path(seq.number_at(clip.in_point));
                        let what = format!("image sequence {}", first.display());
                        preflight_media(registry, &first, 0.0, track, ci, &what, &mut notes)?;
                        None
                    }
                    VideoSource::Bars => Some(StaticId::Bars),
                    VideoSource::Solid { color } => Some(StaticId::Solid(color.0)),
                    VideoSource::Pattern => Some(StaticId::PatternBackground),
                };
                if let Some(id) = sid {
                    let end = static_end.entry(id).or_insert(0);
                    *end = (*end).max(clip.start + clip.frames);
                }
                track_static.push(sid);
            }
            colour.push(track_colour);
            static_of.push(track_static);
        }
        Ok(Timeline {
            manifest,
            registry,
            primaries,
            transfer,
            background: linear_colour(manifest.canvas.background, transfer),
            luts: Arc::new(luts),
            colour,
            fonts,
            stills,
            static_of,
            static_end,
            statics: HashMap::new(),
            readers: HashMap::new(),
            sequences: HashMap::new(),
            next_generation: 0,
            pattern_bg: None,
            pattern_frame: None,
            notes,
            grade_sources: false,
            prepared: Vec::new(),
        })
    }

    /// With `on`, a graded media clip placed on whole pixels (no filtering
    /// between its texels) is graded while its frame is linearized from
    /// Y'CbCr, and its layer carries no colour operations: the same values
    /// as the renderer grading each drawn pixel (the CPU renderer's
    /// arithmetic, bit for bit, tested), with the per-channel steps read
    /// from a table per source value and each source pixel graded once
    /// however often it is shown. For the CPU renderer only: a GPU grades
    /// on its own cores. Off by default.
    pub fn grade_sources(&mut self, on: bool) {
        self.grade_sources = on;
    }

    /// The grade of media clip `(ti, ci)` at frame `n` for its reader to
    /// apply while linearizing a picture of `size`, where
    /// [`Timeline::grade_sources`] is on and the layer's inverse is then a
    /// translation by whole pixels.
    fn grade_at_source(
        &mut self,
        ti: usize,
        ci: usize,
        n: u64,
        size: (u32, u32),
    ) -> Option<GradeAtSource> {
        let ops = self.colour[ti][ci];
        if !self.grade_sources || ops.identity {
            return None;
        }
        let m: &'a Manifest = self.manifest;
        let clip = &m.video[ti].clips[ci];
        let f = (n - clip.start) as f64;
        let inv = layer_inverse(
            (size.0 as f32, size.1 as f32),
            (m.canvas.width as f32, m.canvas.height as f32),
            clip.fit,
            clip.scale.at(f),
            [clip.position[0].at(f), clip.position[1].at(f)],
            clip.rotation.at(f),
        );
        if !super::plan::whole_pixel_translation(&inv) {
            return None;
        }
        let lut = match ops.lut {
            None => None,
            Some(i) => {
                if self.prepared.len() < self.luts.len() {
                    self.prepared.resize(self.luts.len(), None);
                }
                let luts = &self.luts;
                Some(
                    self.prepared[i]
                        .get_or_insert_with(|| Arc::new(luts[i].prepare()))
                        .clone(),
                )
            }
        };
        Some(GradeAtSource {
            ops,
            transfer: self.transfer,
            lut,
            size,
        })
    }

    /// What was assumed about sources (untagged media, stills taken as
    /// sRGB), one line each, for the job report.
    pub fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    /// The plan for canvas frame `n` and its sources, in `plan.sources`
    /// order.
    ///
    /// # Errors
    /// A media file that fails to decode or reopen, or a still or title
    /// that cannot be made.
    pub fn frame(&mut self, n: u64) -> Result<(FramePlan, Vec<Arc<LinearImage>>), RenderError> {
        let m: &'a Manifest = self.manifest;
        let canvas = (m.canvas.width as f32, m.canvas.height as f32);
        let mut layers: Vec<LayerOp> = Vec::new();
        let mut keys: Vec<SourceKey> = Vec::new();
        let mut images: Vec<Arc<LinearImage>> = Vec::new();
        let mut live_media = Vec::new();
        // Readers of clips that ended go before new ones open: at a cut the
        // outgoing decoders and their pictures are not held beside the
        // incoming ones (the peak of memory is at the cuts).
        let on_screen = |k: &(usize, usize)| {
            m.video
                .get(k.0)
                .and_then(|t| t.clips.get(k.1))
                .is_some_and(|c| n >= c.start && n < c.start + c.frames)
        };
        self.readers.retain(|k, _| on_screen(k));
        self.sequences.retain(|k, _| on_screen(k));
        self.prefetch_media(n)?;
        for (ti, track) in m.video.iter().enumerate() {
            // Index in `layers` of this track's last layer at this frame.
            let mut last_on_track: Option<usize> = None;
            for (ci, clip) in track.clips.iter().enumerate() {
                if n < clip.start || n >= clip.start + clip.frames {
                    continue;
                }
                if matches!(
                    clip.source,
                    VideoSource::Media { .. } | VideoSource::ImageSequence(_)
                ) {
                    live_media.push((ti, ci));
                }
                let shown = self.source(ti, ci, n)?;
                let source = match keys.iter().position(|k| *k == shown.key) {
                    Some(i) => i,
                    None => {
                        keys.push(shown.key);
                        images.push(shown.image.clone());
                        keys.len() - 1
                    }
                };
                let mut layer = self.layer(ti, ci, clip, n, &shown, source, canvas);
                if let Some(tr) = &clip.transition_in {
                    let k = n - clip.start;
                    if k < tr.frames {
                        let paired = last_on_track == Some(layers.len().wrapping_sub(1))
                            && layers.last().is_some_and(|l| l.mix.is_none());
                        if !paired {
                            // Nothing to mix from (a timeline built without
                            // the outgoing clip): mix from transparency.
                            layers.push(LayerOp {
                                crop: [0.0; 4],
                                opacity: 0.0,
                                colour: PlanColourOps::IDENTITY,
                                mix: None,
                                ..layer
                            });
                        }
                        layer.mix = Some(Mix {
                            kind: self.mix_kind(tr.kind),
                            t: (k as f32 + 0.5) / tr.frames as f32,
                        });
                    }
                }
                layers.push(layer);
                last_on_track = Some(layers.len() - 1);
            }
        }
        // Bounded memory: decoders of clips not on screen are closed; made-once
        // images no clip will show again are dropped.
        self.readers.retain(|k, _| live_media.contains(k));
        self.sequences.retain(|k, _| live_media.contains(k));
        let ends = &self.static_end;
        self.statics
            .retain(|id, _| ends.get(id).is_some_and(|&end| end > n + 1));
        if self.pattern_frame.as_ref().is_some_and(|p| p.0 != n) {
            self.pattern_frame = None;
        }
        if ends
            .get(&StaticId::PatternBackground)
            .is_none_or(|&end| end <= n + 1)
        {
            self.pattern_bg = None;
        }
        let plan = FramePlan {
            width: m.canvas.width,
            height: m.canvas.height,
            background: self.background,
            layers,
            sources: keys,
            transfer: self.transfer,
            luts: self.luts.clone(),
        };
        Ok((plan, images))
    }

    #[allow(clippy::too_many_arguments)]
    fn layer(
        &self,
        ti: usize,
        ci: usize,
        clip: &VideoClip,
        n: u64,
        shown: &Shown,
        source: usize,
        canvas: (f32, f32),
    ) -> LayerOp {
        let f = (n - clip.start) as f64;
        let (lw, lh) = shown.logical;
        let mut inverse = layer_inverse(
            shown.logical,
            canvas,
            clip.fit,
            clip.scale.at(f),
            [clip.position[0].at(f), clip.position[1].at(f)],
            clip.rotation.at(f),
        );
        let c = clip.crop.each_ref().map(|p| p.at(f).max(0.0));
        let mut crop = [c[0], c[1], lw - c[2], lh - c[3]];
        // Geometry is in logical pixels; the texture may be smaller (a
        // solid's single texel).
        let (kx, ky) = (
            shown.image.width as f32 / lw,
            shown.image.height as f32 / lh,
        );
        if kx != 1.0 || ky != 1.0 {
            for v in &mut inverse[0..3] {
                *v *= kx;
            }
            for v in &mut inverse[3..6] {
                *v *= ky;
            }
            crop = [crop[0] * kx, crop[1] * ky, crop[2] * kx, crop[3] * ky];
        }
        LayerOp {
            source,
            inverse,
            crop,
            opacity: clip.opacity.at(f).clamp(0.0, 1.0),
            blend: clip.blend,
            colour: if shown.graded {
                PlanColourOps::IDENTITY
            } else {
                self.colour[ti][ci]
            },
            mix: None,
        }
    }

    fn mix_kind(&self, kind: TransitionKind) -> MixKind {
        match kind {
            TransitionKind::Dissolve => MixKind::Dissolve,
            TransitionKind::Dip { color } => MixKind::Dip(linear_colour(color, self.transfer)),
            TransitionKind::Wipe {
                angle_deg,
                softness,
            } => {
                let (sin, cos) = rotation_sin_cos(angle_deg);
                MixKind::Wipe {
                    dir: [cos as f32, sin as f32],
                    softness,
                }
            }
        }
    }

    /// The image clip `(ti, ci)` shows at frame `n`.
    fn source(&mut self, ti: usize, ci: usize, n: u64) -> Result<Shown, RenderError> {
        let m: &'a Manifest = self.manifest;
        let clip = &m.video[ti].clips[ci];
        let (w, h) = (m.canvas.width, m.canvas.height);
        let canvas = (w as f32, h as f32);
        if let VideoSource::Media { path } = &clip.source {
            return self.media(ti, ci, path, n, source_time(clip, n, m.canvas.frame_rate));
        }
        if let VideoSource::ImageSequence(seq) = &clip.source {
            let number = seq.number_at(source_time(clip, n, m.canvas.frame_rate));
            return self.sequence(ti, ci, seq, number);
        }
        if let VideoSource::Pattern = clip.source {
            if let Some((pn, img)) = &self.pattern_frame {
                if *pn == n {
                    return Ok(Shown {
                        key: SourceKey {
                            id: PATTERN_KEY,
                            generation: n,
                        },
                        image: img.clone(),
                        logical: canvas,
                        graded: false,
                    });
                }
            }
        }
        let id = self.static_of[ti][ci].expect("every non-media clip has an image");
        if id == StaticId::PatternBackground {
            let bg = self
                .pattern_bg
                .get_or_insert_with(|| pattern_background(w, h));
            let mut out = Rgba8::new(w, h);
            pattern(n, bg, &mut out);
            let lin = Arc::new(linearize_rgba8(
                &out.data,
                w,
                h,
                self.transfer,
                self.primaries,
                self.primaries,
            ));
            self.pattern_frame = Some((n, lin.clone()));
            return Ok(Shown {
                key: SourceKey {
                    id: PATTERN_KEY,
                    generation: n,
                },
                image: lin,
                logical: canvas,
                graded: false,
            });
        }
        if !self.statics.contains_key(&id) {
            let img = self.make(id, ti, ci)?;
            self.statics.insert(id, Arc::new(img));
        }
        let image = self.statics[&id].clone();
        let logical = match id {
            // Canvas-sized by construction (a solid is one texel standing
            // for the canvas).
            StaticId::Bars | StaticId::Solid(_) | StaticId::Title(..) => canvas,
            _ => (image.width as f32, image.height as f32),
        };
        Ok(Shown {
            key: id.key(),
            image,
            logical,
            graded: false,
        })
    }

    /// Makes a made-once image for clip `(ti, ci)`.
    fn make(&self, id: StaticId, ti: usize, ci: usize) -> Result<LinearImage, RenderError> {
        let m = self.manifest;
        let (w, h) = (m.canvas.width, m.canvas.height);
        let same = self.primaries;
        Ok(match id {
            StaticId::Bars => linearize_rgba8(&bars(w, h).data, w, h, self.transfer, same, same),
            StaticId::Solid(c) => LinearImage::filled(1, 1, linear_colour(Rgba(c), self.transfer)),
            StaticId::Still(i) => {
                let path = &self.stills[i];
                load_still(path, self.primaries).map_err(|reason| RenderError::Load {
                    what: "still",
                    path: path.clone(),
                    track: m.video[ti].name.clone(),
                    clip: ci,
                    reason,
                })?
            }
            StaticId::Title(..) | StaticId::PatternBackground => {
                let VideoSource::Title(t) = &m.video[ti].clips[ci].source else {
                    unreachable!("the pattern is drawn per frame in `source`");
                };
                let path = t
                    .font
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_FONT));
                render_title(t, &self.fonts[&path], w, h, self.transfer)
            }
        })
    }

    /// Image `number` of a sequence clip, decoded through the file decoder
    /// (one image file is a one-frame medium) and linearized by its own
    /// tags, once per change of number.
    fn sequence(
        &mut self,
        ti: usize,
        ci: usize,
        seq: &ImageSequence,
        number: u64,
    ) -> Result<Shown, RenderError> {
        let key = (ti, ci);
        if self.sequences.get(&key).is_none_or(|s| s.0 != number) {
            let path = seq.path(number);
            let open_err = |reason: String| RenderError::Open {
                path: path.clone(),
                track: self.manifest.video[ti].name.clone(),
                clip: ci,
                reason,
            };
            let (mut r, _) =
                MediaReader::open(self.registry, &path, 0.0, false).map_err(open_err)?;
            let (img, _) = r
                .read()?
                .ok_or_else(|| open_err("the image file holds no picture".into()))?;
            let mut lin = LinearImage::new(0, 0);
            r.linearize(&img, self.primaries, None, &mut lin);
            self.sequences
                .insert(key, (number, Arc::new(lin), self.next_generation));
            self.next_generation += 1;
        }
        let (_, image, generation) = self.sequences[&key].clone();
        Ok(Shown {
            key: SourceKey {
                id: key,
                generation,
            },
            logical: (image.width as f32, image.height as f32),
            image,
            graded: false,
        })
    }

    /// Advances every media reader on screen at frame `n` to its time and
    /// linearizes the frames that changed, one thread per reader: decoding,
    /// conversion and linearization are otherwise the serial part of a
    /// frame. [`Timeline::media`] then finds each reader up to date.
    fn prefetch_media(&mut self, n: u64) -> Result<(), RenderError> {
        let m: &'a Manifest = self.manifest;
        let mut wanted: Vec<((usize, usize), f64)> = Vec::new();
        for (ti, track) in m.video.iter().enumerate() {
            for (ci, clip) in track.clips.iter().enumerate() {
                if n < clip.start || n >= clip.start + clip.frames {
                    continue;
                }
                if let VideoSource::Media { path } = &clip.source {
                    let t = source_time(clip, n, m.canvas.frame_rate);
                    self.open_reader(ti, ci, path, t)?;
                    wanted.push(((ti, ci), t));
                }
            }
        }
        if wanted.len() < 2 {
            return Ok(());
        }
        let grades: Vec<Option<GradeAtSource>> = wanted
            .iter()
            .map(|&((ti, ci), _)| {
                let size = self.readers[&(ti, ci)].size;
                self.grade_at_source(ti, ci, n, size)
            })
            .collect();
        let primaries = self.primaries;
        // In the order the clips are drawn (the first error is the one the
        // serial path would have met first), whatever order the map has.
        let mut picked: Vec<(usize, &mut MediaReader, f64, Option<&GradeAtSource>)> = Vec::new();
        for (key, r) in self.readers.iter_mut() {
            if let Some(i) = wanted.iter().position(|(k, _)| k == key) {
                picked.push((i, r, wanted[i].1, grades[i].as_ref()));
            }
        }
        picked.sort_by_key(|p| p.0);
        let order: Vec<(usize, usize)> = picked.iter().map(|p| wanted[p.0].0).collect();
        type Update = Result<Option<(LinearImage, bool)>, RenderError>;
        let results: Vec<Update> = std::thread::scope(|scope| {
            let handles: Vec<_> = picked
                .into_iter()
                .map(|(_, r, t, g)| scope.spawn(move || r.update(t, primaries, g)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a media reader thread panicked"))
                .collect()
        });
        let mut fresh: Vec<((usize, usize), (LinearImage, bool))> = Vec::new();
        for (key, res) in order.into_iter().zip(results) {
            if let Some(lin) = res? {
                fresh.push((key, lin));
            }
        }
        for (key, _) in &wanted {
            if let Some(i) = fresh.iter().position(|(k, _)| k == key) {
                let (_, (lin, graded)) = fresh.swap_remove(i);
                let r = self.readers.get_mut(key).expect("opened above");
                r.linear = Some((Arc::new(lin), self.next_generation, graded));
                self.next_generation += 1;
            }
        }
        Ok(())
    }

    /// Opens (or reopens, when asked for an earlier time than the one
    /// shown) the reader of media clip `(ti, ci)`.
    fn open_reader(
        &mut self,
        ti: usize,
        ci: usize,
        path: &Path,
        t: f64,
    ) -> Result<(), RenderError> {
        let key = (ti, ci);
        let stale = match self.readers.get(&key) {
            None => true,
            // Asked for an earlier time than the one shown: start again.
            Some(r) => r.current_time().is_some_and(|ct| t + r.slack < ct),
        };
        if stale {
            self.readers.remove(&key);
            let (r, _) = MediaReader::open(self.registry, path, t, true).map_err(|reason| {
                RenderError::Open {
                    path: path.to_owned(),
                    track: self.manifest.video[ti].name.clone(),
                    clip: ci,
                    reason,
                }
            })?;
            self.readers.insert(key, r);
        }
        Ok(())
    }

    /// The frame media clip `(ti, ci)` shows at canvas frame `n`, source
    /// time `t`.
    fn media(
        &mut self,
        ti: usize,
        ci: usize,
        path: &Path,
        n: u64,
        t: f64,
    ) -> Result<Shown, RenderError> {
        let key = (ti, ci);
        self.open_reader(ti, ci, path, t)?;
        let grade = self.grade_at_source(ti, ci, n, self.readers[&key].size);
        let r = self.readers.get_mut(&key).expect("inserted");
        if let Some((lin, graded)) = r.update(t, self.primaries, grade.as_ref())? {
            r.linear = Some((Arc::new(lin), self.next_generation, graded));
            self.next_generation += 1;
        }
        let (img, generation, graded) = r.linear.clone().expect("set above");
        Ok(Shown {
            key: SourceKey {
                id: key,
                generation,
            },
            logical: (img.width as f32, img.height as f32),
            image: img,
            graded,
        })
    }
}

/// What [`frames_ahead`] hands on: a frame's number, and its plan and
/// sources or why they could not be made.
pub type AheadFrame = (u64, Result<(FramePlan, Vec<Arc<LinearImage>>), RenderError>);

/// Makes frames `frames` of `tl` on a thread of `scope`, each while the
/// caller draws the one before (decoding and linearizing overlap drawing,
/// instead of taking turns with it on the same cores), and hands them on
/// in order through a queue of one. The thread stops after the first
/// error (handed on) or when the receiver is dropped.
pub fn frames_ahead<'scope, 'a: 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    tl: &'scope mut Timeline<'a>,
    frames: std::ops::Range<u64>,
) -> std::sync::mpsc::Receiver<AheadFrame> {
    let (tx, rx) = std::sync::mpsc::sync_channel(0);
    std::thread::Builder::new()
        .name("timeline".into())
        .spawn_scoped(scope, move || {
            for n in frames {
                let f = tl.frame(n);
                let failed = f.is_err();
                if tx.send((n, f)).is_err() || failed {
                    break;
                }
            }
        })
        .expect("spawning the timeline thread");
    rx
}

/// The model's colour operations as the plan executes them.
fn plan_colour(c: &crate::manifest::model::ColourOps, lut: Option<usize>) -> PlanColourOps {
    if c.is_identity() {
        return PlanColourOps::IDENTITY;
    }
    PlanColourOps {
        identity: false,
        exposure_gain: 2f32.powf(c.exposure),
        lift: c.lift,
        gamma: c.gamma,
        gain: c.gain,
        saturation: c.saturation,
        lut,
    }
}

/// Decodes a PNG or JPEG still (any bit depth, kept in float) as sRGB with
/// BT.709 primaries, into the canvas primaries.
pub fn load_still(path: &Path, canvas: Primaries) -> Result<LinearImage, String> {
    let img = image::ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| e.to_string())?
        .into_rgba32f();
    let (w, h) = img.dimensions();
    let m = colour::primaries_matrix(Primaries::Bt709, canvas);
    let convert = canvas != Primaries::Bt709;
    let data = img
        .pixels()
        .map(|p| {
            let [r, g, b, a] = p.0;
            let mut c = [r, g, b].map(|v| eotf(Transfer::Srgb, v.clamp(0.0, 1.0)));
            if convert {
                c = colour::apply(&m, c);
            }
            [c[0] * a, c[1] * a, c[2] * a, a]
        })
        .collect();
    Ok(LinearImage {
        width: w,
        height: h,
        data,
    })
}

/// Antialiased coverage of a title's text on a `w × h` canvas: 0 where no
/// glyph is, 1 inside glyphs. Lines split at `\n`; the first line's top
/// (its ascent) at `title.at`; `size` is the em size in pixels.
pub fn title_coverage(title: &Title, font: &FontArc, w: u32, h: u32) -> Vec<f32> {
    let (wu, hu) = (w as usize, h as usize);
    let mut cov = vec![0f32; wu * hu];
    let upem = font.units_per_em().unwrap_or(1000.0);
    let scale = PxScale::from(title.size * font.height_unscaled() / upem);
    let sf = font.as_scaled(scale);
    let line_height = sf.height() + sf.line_gap();
    for (li, line) in title.text.lines().enumerate() {
        let baseline = title.at[1] + sf.ascent() + li as f32 * line_height;
        let mut x = title.at[0];
        let mut prev = None;
        for ch in line.chars() {
            let id = font.glyph_id(ch);
            if let Some(p) = prev {
                x += sf.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(scale, point(x, baseline));
            x += sf.h_advance(id);
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let b = outline.px_bounds();
            let (x0, y0) = (b.min.x as i64, b.min.y as i64);
            outline.draw(|gx, gy, c| {
                let (px, py) = (x0 + i64::from(gx), y0 + i64::from(gy));
                if px >= 0 && py >= 0 && (px as usize) < wu && (py as usize) < hu {
                    let v = &mut cov[py as usize * wu + px as usize];
                    *v = (*v + c).min(1.0);
                }
            });
        }
    }
    cov
}

/// A title drawn over transparency: its colour (canvas encoded, straight
/// alpha) linearized and premultiplied by coverage × alpha.
pub fn render_title(
    title: &Title,
    font: &FontArc,
    w: u32,
    h: u32,
    transfer: Transfer,
) -> LinearImage {
    let cov = title_coverage(title, font, w, h);
    let c = linear_colour(
        Rgba([title.color.0[0], title.color.0[1], title.color.0[2], 255]),
        transfer,
    );
    let a = f32::from(title.color.0[3]) / 255.0;
    LinearImage {
        width: w,
        height: h,
        data: cov
            .iter()
            .map(|&k| {
                let k = k * a;
                [c[0] * k, c[1] * k, c[2] * k, k]
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{parse, LoadContext};
    use std::cell::Cell;

    fn registry() -> &'static Registry {
        Registry::global(&crate::plugins::default_dirs())
    }

    fn no_luts(_: &Path) -> Result<Lut3d, String> {
        Err("no LUTs in this test".into())
    }

    /// A manifest in `dir` with `body` after a `w`×`h` canvas at `rate`.
    fn manifest(dir: &Path, w: u32, h: u32, rate: &str, body: &str) -> Manifest {
        let src = format!(
            "version = 1\n[canvas]\nwidth = {w}\nheight = {h}\nframe_rate = \"{rate}\"\n\
             duration = \"4s\"\ncolour_space = \"bt709\"\n[[deliverable]]\n\
             preset = \"web/h264-1080p\"\n{body}"
        );
        match parse(src.as_bytes(), &dir.join("m.toml"), &LoadContext::default()) {
            Ok(m) => m,
            Err(e) => panic!("{e}\n{src}"),
        }
    }

    /// Applies a plan matrix to a canvas point.
    fn map(m: [f32; 6], x: f32, y: f32) -> (f32, f32) {
        (m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5])
    }

    #[track_caller]
    fn near(a: (f32, f32), b: (f32, f32)) {
        assert!(
            (a.0 - b.0).abs() < 1e-3 && (a.1 - b.1).abs() < 1e-3,
            "{a:?} != {b:?}"
        );
    }

    /// The render may move the timeline to a worker thread.
    #[test]
    fn the_timeline_is_send() {
        fn send<T: Send>() {}
        send::<Timeline<'static>>();
    }

    #[test]
    fn source_time_follows_speed_and_in_point() {
        let mut clip = VideoClip::new(VideoSource::Bars, 10, 100);
        clip.in_point = 2.0;
        let rate = Rate { num: 25, den: 1 };
        assert_eq!(source_time(&clip, 10, rate), 2.0);
        assert_eq!(source_time(&clip, 35, rate), 3.0);
        clip.speed = 2.0;
        assert_eq!(source_time(&clip, 35, rate), 4.0);
        clip.speed = 0.5;
        assert_eq!(source_time(&clip, 35, rate), 2.5);
        // 24 fps shown on a 25 fps canvas: one source frame in 25 is skipped
        // (frame 24 of the canvas shows source frame 23, frame 25 shows 24).
        let shown: Vec<u64> = (0..=25)
            .map(|n| frame_on_screen(n as f64 / 25.0, 24.0, 1e-3))
            .collect();
        let want: Vec<u64> = (0..=25).map(|n| n * 24 / 25).collect();
        assert_eq!(shown, want);
        // A frame stamped within half a tick after the canvas time counts
        // (Matroska's 1 ms ticks)...
        assert_eq!(frame_on_screen(1.0 / 24.0 - 0.0005, 24.0, 1e-3), 1);
        assert_eq!(frame_on_screen(1.0 / 24.0 - 0.002, 24.0, 1e-3), 0);
        // ...but with MOV's fine ticks, 0.5 ms before its start is before it.
        assert_eq!(frame_on_screen(1.0 / 24.0 - 0.0005, 24.0, 1.0 / 24000.0), 0);
    }

    /// A 24 fps, 2 s RGB clip whose frame `i` is grey `4·i` (8-bit, sRGB).
    fn grey_ramp_media(dir: &Path) -> PathBuf {
        let path = dir.join("ramp24.mov");
        let ok = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg("color=c=black:s=32x16:r=24:d=2,format=rgb24,geq=r='N*4':g='N*4':b='N*4'")
            .args(["-c:v", "png", "-y"])
            .arg(&path)
            .status()
            .expect("ffmpeg CLI")
            .success();
        assert!(ok, "ffmpeg failed");
        path
    }

    /// The source frame index a ramp frame shows (grey code / 4).
    fn ramp_index(img: &LinearImage) -> u64 {
        let g = img.data[0][1];
        let code = (colour::oetf(Transfer::Srgb, g) * 255.0).round();
        assert_eq!(code as u64 % 4, 0, "code {code}");
        code as u64 / 4
    }

    #[test]
    fn planar_ycbcr_media_is_read_natively_and_agrees_with_rgba() {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, filter: &str, codec: &[&str]| {
            let path = dir.path().join(name);
            let ok = std::process::Command::new("ffmpeg")
                .args(["-v", "error", "-f", "lavfi", "-i", filter])
                .args(codec)
                .arg("-y")
                .arg(&path)
                .status()
                .expect("ffmpeg CLI")
                .success();
            assert!(ok, "ffmpeg failed");
            path
        };
        // A flat colour, untagged: BT.601 and limited range on both paths
        // (48 lines; BT.470 BG primaries at 25 fps); flat, so chroma siting
        // and filters do not matter.
        let yuv = make(
            "flat.mkv",
            "color=c=0x3080c0:s=64x48:r=25:d=0.2,format=yuv420p",
            &["-c:v", "ffv1"],
        );
        let png = grey_ramp_media(dir.path());
        let first = |path: &Path, native: bool| {
            let (mut r, _) = MediaReader::open(registry(), path, 0.0, native).unwrap();
            let lin = r.update(0.0, Primaries::Bt709, None).unwrap().unwrap().0;
            let ycbcr = matches!(r.cur, Some((Picture::Ycbcr(_), _)));
            (ycbcr, lin)
        };
        let (native, fused) = first(&yuv, true);
        assert!(native, "yuv420p is read as native planes");
        let (native, via_rgba) = first(&yuv, false);
        assert!(!native);
        // Within one 8-bit code (the RGBA path rounds to 8 bits).
        let (t, p) = (Transfer::Bt709, Primaries::Bt470bg);
        let m = colour::primaries_matrix(Primaries::Bt709, p);
        for (a, b) in fused.data.iter().zip(&via_rgba.data) {
            let (a, b) = (
                colour::apply(&m, [a[0], a[1], a[2]]),
                colour::apply(&m, [b[0], b[1], b[2]]),
            );
            for c in 0..3 {
                let d = 255.0 * (colour::oetf(t, a[c]) - colour::oetf(t, b[c]));
                assert!(d.abs() <= 1.0, "channel {c}: {d} codes ({a:?} vs {b:?})");
            }
        }
        // RGB (PNG in a mov) stays on the RGBA path.
        assert!(!first(&png, true).0, "rgb24 is read as RGBA");
    }

    #[test]
    fn media_frames_follow_the_canvas_rate_and_speed() {
        let dir = tempfile::tempdir().unwrap();
        grey_ramp_media(dir.path());
        let reg = registry();
        for (rate, speed, n_max) in [
            ("25", 1.0, 45u64),
            ("25", 2.0, 22),
            ("25", 0.5, 50),
            ("50", 1.0, 90),
        ] {
            let m = manifest(
                dir.path(),
                64,
                32,
                rate,
                &format!(
                    "[[video]]\n[[video.clip]]\nmedia = \"ramp24.mov\"\nduration = \"2s\"\n\
                     speed = {speed}\n"
                ),
            );
            let fps: f64 = rate.parse().unwrap();
            let mut tl = Timeline::new(&m, reg, &no_luts).unwrap();
            let mut last: Option<(u64, u64)> = None;
            for n in 0..n_max {
                let (plan, sources) = tl.frame(n).unwrap();
                assert_eq!(plan.layers.len(), 1);
                assert_eq!(plan.sources.len(), 1);
                let shown = ramp_index(&sources[0]);
                let want = frame_on_screen(n as f64 / fps * speed, 24.0, 1e-3).min(47);
                assert_eq!(shown, want, "rate {rate} speed {speed} frame {n}");
                // The generation changes exactly when the shown frame does.
                let generation = plan.sources[0].generation;
                if let Some((prev_shown, prev_gen)) = last {
                    assert_eq!(shown != prev_shown, generation != prev_gen, "frame {n}");
                }
                last = Some((shown, generation));
            }
        }
        // The untagged file's colour was assumed and said so.
        let m = manifest(
            dir.path(),
            64,
            32,
            "25",
            "[[video]]\n[[video.clip]]\nmedia = \"ramp24.mov\"\nduration = \"1s\"\n",
        );
        let mut tl = Timeline::new(&m, reg, &no_luts).unwrap();
        let notes = tl.notes();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("ramp24.mov") && n.contains("primaries")),
            "{notes:?}"
        );
        // Past the clip its decoder is closed; asking for an earlier frame
        // reopens it and shows the right frame again.
        tl.frame(10).unwrap();
        assert_eq!(tl.readers.len(), 1);
        let (plan, _) = tl.frame(30).unwrap();
        assert!(plan.layers.is_empty());
        assert!(tl.readers.is_empty());
        let (_, s) = tl.frame(12).unwrap();
        assert_eq!(ramp_index(&s[0]), frame_on_screen(12.0 / 25.0, 24.0, 1e-3));
        let (_, s) = tl.frame(3).unwrap();
        assert_eq!(ramp_index(&s[0]), frame_on_screen(3.0 / 25.0, 24.0, 1e-3));
    }

    #[test]
    fn keyframes_interpolate_linear_ease_and_hold() {
        let dir = tempfile::tempdir().unwrap();
        let body = |interp: &str| {
            format!(
                "[[video]]\n[[video.clip]]\ngenerator = \"bars\"\nstart = 5\n\
                 opacity = [{{ at = 0, value = 0.0 }}, {{ at = 10, value = 1.0, interp = \"{interp}\" }}]\n\
                 position = [{{ at = 0, value = [0, 0] }}, {{ at = 10, value = [100, -20] }}]\n"
            )
        };
        let opacity_at = |interp: &str, n: u64| {
            let m = manifest(dir.path(), 64, 32, "25", &body(interp));
            let mut tl = Timeline::new(&m, registry(), &no_luts).unwrap();
            let (plan, _) = tl.frame(n).unwrap();
            plan.layers[0].opacity
        };
        // Frame n is clip frame n − 5.
        let close = |a: f32, b: f32| assert!((a - b).abs() < 1e-6, "{a} != {b}");
        close(opacity_at("linear", 5), 0.0);
        close(opacity_at("linear", 7), 0.2);
        close(opacity_at("linear", 10), 0.5);
        close(opacity_at("linear", 15), 1.0);
        close(opacity_at("linear", 40), 1.0);
        // Ease: 3t² − 2t³.
        close(opacity_at("ease", 7), 3.0 * 0.04 - 2.0 * 0.008);
        close(opacity_at("ease", 10), 0.5);
        close(opacity_at("ease", 13), 3.0 * 0.64 - 2.0 * 0.512);
        // Hold: the first value up to the key.
        close(opacity_at("hold", 14), 0.0);
        close(opacity_at("hold", 15), 1.0);
        // Position moves the layer: canvas (x, y) shows source (x − px, y − py).
        let m = manifest(dir.path(), 64, 32, "25", &body("linear"));
        let mut tl = Timeline::new(&m, registry(), &no_luts).unwrap();
        let (plan, _) = tl.frame(10).unwrap();
        near(map(plan.layers[0].inverse, 50.0, 0.0), (0.0, 10.0));
    }

    #[test]
    fn transitions_become_mixes_with_frame_centred_factors() {
        let dir = tempfile::tempdir().unwrap();
        let pair = |tr: &str| {
            format!(
                "[[video]]\n[[video.clip]]\ngenerator = \"bars\"\nduration = 14\n\
                 [[video.clip]]\ngenerator = \"solid\"\ncolor = \"#102030\"\nstart = 10\n\
                 duration = 20\ntransition_in = {tr}\n"
            )
        };
        let m = manifest(
            dir.path(),
            64,
            32,
            "25",
            &pair("{ kind = \"dissolve\", duration = 4 }"),
        );
        let mut tl = Timeline::new(&m, registry(), &no_luts).unwrap();
        let (plan, _) = tl.frame(9).unwrap();
        assert_eq!(plan.layers.len(), 1);
        for (k, n) in (10..14).enumerate() {
            let (plan, _) = tl.frame(n).unwrap();
            assert_eq!(plan.layers.len(), 2, "frame {n}");
            // Outgoing bars first, then the incoming solid carrying the mix.
            assert_eq!(plan.sources[plan.layers[0].source], StaticId::Bars.key());
            assert!(plan.layers[0].mix.is_none());
            let mix = plan.layers[1].mix.expect("mix");
            assert_eq!(mix.kind, MixKind::Dissolve);
            assert_eq!(mix.t, (k as f32 + 0.5) / 4.0);
        }
        let (plan, _) = tl.frame(14).unwrap();
        assert_eq!(plan.layers.len(), 1);
        assert!(plan.layers[0].mix.is_none());

        // Dip: the colour linearized with the canvas transfer (BT.709).
        let m = manifest(
            dir.path(),
            64,
            32,
            "25",
            &pair("{ kind = \"dip\", duration = 4, color = \"#808080\" }"),
        );
        let mut tl = Timeline::new(&m, registry(), &no_luts).unwrap();
        let (plan, _) = tl.frame(11).unwrap();
        let g = eotf(Transfer::Bt709, 128.0 / 255.0);
        assert_eq!(
            plan.layers[1].mix,
            Some(Mix {
                kind: MixKind::Dip([g, g, g, 1.0]),
                t: 0.375
            })
        );
        // Wipe: direction (cos a, sin a), y down.
        let m = manifest(
            dir.path(),
            64,
            32,
            "25",
            &pair("{ kind = \"wipe\", duration = 4, angle = 90, softness = 0.25 }"),
        );
        let mut tl = Timeline::new(&m, registry(), &no_luts).unwrap();
        let (plan, _) = tl.frame(13).unwrap();
        assert_eq!(
            plan.layers[1].mix,
            Some(Mix {
                kind: MixKind::Wipe {
                    dir: [0.0, 1.0],
                    softness: 0.25
                },
                t: 0.875
            })
        );
    }

    #[test]
    fn inverse_matrices_map_canvas_points_to_source_points() {
        let c = (200.0, 100.0);
        // None: native pixels at the top-left.
        let m = layer_inverse((100.0, 50.0), c, Fit::None, 1.0, [0.0, 0.0], 0.0);
        near(map(m, 10.5, 20.5), (10.5, 20.5));
        // Fit: a square source fills the height, centred (pillarbox).
        let m = layer_inverse((100.0, 100.0), c, Fit::Fit, 1.0, [0.0, 0.0], 0.0);
        near(map(m, 50.0, 0.0), (0.0, 0.0));
        near(map(m, 150.0, 100.0), (100.0, 100.0));
        // Fill: the width is filled, top and bottom cut.
        let m = layer_inverse((100.0, 100.0), c, Fit::Fill, 1.0, [0.0, 0.0], 0.0);
        near(map(m, 0.0, 0.0), (0.0, 25.0));
        near(map(m, 200.0, 100.0), (100.0, 75.0));
        // Stretch: the canvas size exactly.
        let m = layer_inverse((100.0, 100.0), c, Fit::Stretch, 1.0, [0.0, 0.0], 0.0);
        near(map(m, 200.0, 100.0), (100.0, 100.0));
        near(map(m, 100.0, 50.0), (50.0, 50.0));
        // Scale about the top-left, then the position offset.
        let m = layer_inverse((100.0, 100.0), c, Fit::None, 0.5, [10.0, 20.0], 0.0);
        near(map(m, 10.0, 20.0), (0.0, 0.0));
        near(map(m, 60.0, 70.0), (100.0, 100.0));
        // Fit then scale: about the fitted top-left (50, 0).
        let m = layer_inverse((100.0, 100.0), c, Fit::Fit, 0.5, [0.0, 0.0], 0.0);
        near(map(m, 100.0, 50.0), (100.0, 100.0));
        // 90° clockwise about the centre (50, 25) of a 100×50 source: its
        // top-left corner goes to the top-right of the turned box
        // (75, −25) and its top-right corner to the bottom-right (75, 75).
        let m = layer_inverse((100.0, 50.0), c, Fit::None, 1.0, [0.0, 0.0], 90.0);
        near(map(m, 75.0, -25.0), (0.0, 0.0));
        near(map(m, 75.0, 75.0), (100.0, 0.0));
        near(map(m, 25.0, 75.0), (100.0, 50.0));
        near(map(m, 50.0, 25.0), (50.0, 25.0));
        // Exactly: quarter turns keep pixel centres on pixel centres.
        assert_eq!(m[0], 0.0);
        assert_eq!(m[4], 0.0);
        // 180° with a position: the centre moves with it.
        let m = layer_inverse((100.0, 50.0), c, Fit::None, 1.0, [10.0, 0.0], 180.0);
        near(map(m, 60.0, 25.0), (50.0, 25.0));
        near(map(m, 110.0, 50.0), (0.0, 0.0));
    }

    fn write_png(path: &Path, w: u32, h: u32, px: impl Fn(u32, u32) -> [u8; 4]) {
        image::RgbaImage::from_fn(w, h, |x, y| image::Rgba(px(x, y)))
            .save(path)
            .unwrap();
    }

    #[test]
    fn stills_load_as_srgb_and_crop_becomes_a_source_rectangle() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("s.png"), 4, 2, |x, y| match (x, y) {
            (0, 0) => [128, 64, 255, 255],
            (1, 0) => [255, 255, 255, 128],
            _ => [0, 0, 0, 0],
        });
        let m = manifest(
            dir.path(),
            64,
            32,
            "25",
            "[[video]]\n[[video.clip]]\nstill = \"s.png\"\ncrop = [1, 0, 1, 0]\nrotation = 90\n\
             duration = 10\n[[video.clip]]\nstill = \"s.png\"\nfit = \"stretch\"\n",
        );
        let mut tl = Timeline::new(&m, registry(), &no_luts).unwrap();
        let (plan, sources) = tl.frame(0).unwrap();
        let img = &sources[0];
        assert_eq!((img.width, img.height), (4, 2));
        let srgb = |v: u8| eotf(Transfer::Srgb, f32::from(v) / 255.0);
        let p = img.data[0];
        let want = [srgb(128), srgb(64), 1.0, 1.0];
        for c in 0..4 {
            assert!((p[c] - want[c]).abs() < 1e-6, "{p:?} != {want:?}");
        }
        // Premultiplied: white at alpha 128/255.
        let a = 128.0 / 255.0;
        assert!(
            img.data[1].iter().all(|&v| (v - a).abs() < 1e-6),
            "{:?}",
            img.data[1]
        );
        assert_eq!(plan.layers[0].crop, [1.0, 0.0, 3.0, 2.0]);
        // Turned 90° about its centre (2, 1): canvas (2.5, 1) is source (2, 0.5).
        near(map(plan.layers[0].inverse, 2.5, 1.0), (2.0, 0.5));
        assert!(tl
            .notes()
            .iter()
            .any(|n| n.contains("s.png") && n.contains("sRGB")));
        // The second clip shows the same still: the same source, decoded once.
        let (plan, sources) = tl.frame(10).unwrap();
        assert_eq!(
            plan.sources[0],
            SourceKey {
                id: (STILL_TRACK, 0),
                generation: 0
            }
        );
        near(map(plan.layers[0].inverse, 64.0, 32.0), (4.0, 2.0));
        assert_eq!(sources[0].width, 4);
    }

    #[test]
    fn jpeg_stills_load_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.jpg");
        image::RgbImage::from_pixel(16, 8, image::Rgb([128, 128, 128]))
            .save(&path)
            .unwrap();
        let img = load_still(&path, Primaries::Bt709).unwrap();
        assert_eq!((img.width, img.height), (16, 8));
        // A flat grey survives JPEG within one code value.
        let lo = eotf(Transfer::Srgb, 127.0 / 255.0);
        let hi = eotf(Transfer::Srgb, 129.0 / 255.0);
        assert!(
            img.data
                .iter()
                .all(|p| p[..3].iter().all(|&v| (lo..=hi).contains(&v)) && p[3] == 1.0),
            "{:?}",
            img.data[0]
        );
        // Into a BT.2020 canvas, grey stays grey.
        let wide = load_still(&path, Primaries::Bt2020).unwrap();
        let p = wide.data[0];
        assert!(
            (p[0] - p[1]).abs() < 1e-4 && (p[2] - p[1]).abs() < 1e-4,
            "{p:?}"
        );
    }

    #[test]
    fn solids_and_bars_are_canvas_encoded_and_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(
            dir.path(),
            64,
            32,
            "25",
            "[[video]]\n[[video.clip]]\ngenerator = \"bars\"\n[[video]]\n[[video.clip]]\n\
             generator = \"solid\"\ncolor = \"#80808080\"\nscale = 0.5\n",
        );
        let mut tl = Timeline::new(&m, registry(), &no_luts).unwrap();
        let (plan, sources) = tl.frame(0).unwrap();
        assert_eq!(plan.layers.len(), 2);
        // Bars: 75 % white (191) at the top-left, through the BT.709 EOTF.
        let w = eotf(Transfer::Bt709, 191.0 / 255.0);
        assert!((sources[0].data[0][0] - w).abs() < 1e-6);
        assert_eq!((sources[0].width, sources[0].height), (64, 32));
        // The solid is one premultiplied texel standing for the canvas.
        let a = 128.0 / 255.0;
        let g = eotf(Transfer::Bt709, 128.0 / 255.0) * a;
        assert_eq!(sources[1].data, vec![[g, g, g, a]]);
        let solid = plan.layers[1];
        assert_eq!(solid.crop, [0.0, 0.0, 1.0, 1.0]);
        // Half size: canvas (32, 16) is the solid's far corner.
        near(map(solid.inverse, 32.0, 16.0), (1.0, 1.0));
        let (_, again) = tl.frame(1).unwrap();
        assert!(Arc::ptr_eq(&sources[0], &again[0]), "bars remade");
        assert_eq!(plan.background, [0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn colour_ops_and_luts_resolve_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.cube"), "LUT_3D_SIZE 2\n").unwrap();
        let m = manifest(
            dir.path(),
            64,
            32,
            "25",
            "[[video]]\n[[video.clip]]\ngenerator = \"bars\"\nduration = 10\n\
             colour = { exposure = 1.0, lut = \"a.cube\" }\n[[video.clip]]\ngenerator = \"bars\"\n\
             colour = { lut = \"a.cube\", saturation = 0.5 }\n[[video]]\n[[video.clip]]\n\
             generator = \"pattern\"\n",
        );
        let calls = Cell::new(0);
        let loader = |p: &Path| {
            calls.set(calls.get() + 1);
            assert!(p.ends_with("a.cube"));
            Ok(Lut3d {
                size: 2,
                domain_min: [0.0; 3],
                domain_max: [1.0; 3],
                data: vec![[0.0; 3]; 8],
            })
        };
        let mut tl = Timeline::new(&m, registry(), &loader).unwrap();
        assert_eq!(calls.get(), 1);
        let (plan, _) = tl.frame(0).unwrap();
        assert_eq!(plan.luts.len(), 1);
        let c = plan.layers[0].colour;
        assert!(!c.identity);
        assert_eq!((c.exposure_gain, c.saturation, c.lut), (2.0, 1.0, Some(0)));
        assert_eq!(plan.layers[1].colour, PlanColourOps::IDENTITY);
        let (plan, _) = tl.frame(10).unwrap();
        let c = plan.layers[0].colour;
        assert_eq!((c.exposure_gain, c.saturation, c.lut), (1.0, 0.5, Some(0)));
        // The pattern changes every frame.
        assert_eq!(
            plan.sources[1],
            SourceKey {
                id: PATTERN_KEY,
                generation: 10
            }
        );
        // A LUT that fails to load names the clip.
        let e = Timeline::new(&m, registry(), &no_luts)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("a.cube") && e.contains("track V1, clip 0"),
            "{e}"
        );
    }

    #[test]
    fn titles_cover_their_text_and_nothing_else() {
        let font = FontArc::try_from_vec(std::fs::read(DEFAULT_FONT).unwrap()).unwrap();
        let title = Title {
            text: "H\nH".into(),
            font: None,
            size: 40.0,
            color: Rgba([255, 0, 0, 255]),
            at: [20.0, 10.0],
        };
        let (w, h) = (200u32, 160u32);
        let cov = title_coverage(&title, &font, w, h);
        let at = |x: u32, y: u32| cov[(y * w + x) as usize];
        let sf = font.as_scaled(PxScale::from(40.0 * font.height_unscaled() / 2048.0));
        let line = sf.height() + sf.line_gap();
        let advance = sf.h_advance(font.glyph_id('H'));
        // Each line's H lies within its advance, between the line's top and
        // its baseline (H has no descender).
        for (i, row) in cov.chunks_exact(w as usize).enumerate() {
            for (x, &c) in row.iter().enumerate() {
                if c == 0.0 {
                    continue;
                }
                let (x, y) = (x as f32, i as f32);
                let in_line = (0..2).any(|l| {
                    let top = 10.0 + l as f32 * line;
                    y >= top && y < top + sf.ascent() + 1.0
                });
                assert!(
                    in_line && x >= 20.0 && x < 20.0 + advance + 1.0,
                    "ink at {x},{y}"
                );
            }
        }
        // Solid ink in the left stem of both lines (DejaVu's H stem starts
        // at about 0.1 em and is over 0.1 em wide), antialiased edges.
        let stem_x = 20 + (0.15 * 40.0) as u32;
        let mid1 = 10 + (sf.ascent() * 0.6) as u32;
        let mid2 = mid1 + line as u32;
        assert_eq!(at(stem_x, mid1), 1.0);
        assert_eq!(at(stem_x, mid2), 1.0);
        assert!(cov.iter().any(|&c| c > 0.0 && c < 1.0));
        assert_eq!(at(5, 5), 0.0);
        assert_eq!(at(150, 100), 0.0);

        // Drawn into a source: red at full coverage, nothing elsewhere.
        let img = render_title(&title, &font, w, h, Transfer::Bt709);
        assert_eq!(img.data[(mid1 * w + stem_x) as usize], [1.0, 0.0, 0.0, 1.0]);
        assert_eq!(img.data[(5 * w + 5) as usize], [0.0; 4]);
    }
}
