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
//! primaries. Media frames come from the plugin file decoder as 8-bit RGBA
//! and are linearized by their tags (`colour::resolve_source`; missing tags
//! are listed by [`Timeline::notes`]); stills (PNG, JPEG) are taken as sRGB;
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
use super::plan::{
    ColourOps as PlanColourOps, FramePlan, LayerOp, LinearImage, Lut3d, Mix, MixKind, SourceKey,
};
use super::{bars, pattern, pattern_background, RenderError, Rgba8};
use crate::manifest::model::{
    Fit, Manifest, Primaries, Rate, Rgba, Title, Transfer, TransitionKind, VideoClip, VideoSource,
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

/// Slack when comparing a source time with a frame's timestamp: container
/// time bases round timestamps (Matroska to 1 ms), so a frame stamped up
/// to 1 ms late still counts as on screen, but never more than a quarter
/// of a source frame.
fn pts_slack(source_fps: f64) -> f64 {
    if source_fps > 0.0 {
        (0.25 / source_fps).min(1e-3)
    } else {
        1e-3
    }
}

/// The index of the source frame on screen at `t` seconds for a constant
/// frame rate starting at 0: the last frame starting at or before `t`.
pub fn frame_on_screen(t: f64, source_fps: f64) -> u64 {
    ((t + pts_slack(source_fps)) * source_fps).floor().max(0.0) as u64
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
}

/// Reads a media file's video forwards, holding the frame on screen at the
/// last requested time, linearized once per change.
struct MediaReader {
    path: PathBuf,
    dec: FileDecoder,
    colour: SourceColour,
    slack: f64,
    cur: Option<(Rgba8, f64)>,
    next: Option<(Rgba8, f64)>,
    eof: bool,
    linear: Option<(Arc<LinearImage>, u64)>,
}

impl MediaReader {
    fn open(reg: &Registry, path: &Path, at: f64) -> Result<(Self, abi::MediaInfo), String> {
        let choice = reg
            .find(cap::FILE_DECODE, "*", None)
            .ok_or("no file decoder loaded")?;
        let cfg = abi::DecoderConfig {
            struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
            want: media::VIDEO,
            video_pix_fmt: pix::RGBA,
            audio_sample_rate: 0,
            audio_channels: 0,
            threads: 0,
            reserved: [0; 4],
        };
        let (mut dec, info) = choice
            .plugin
            .open_file(&path.to_string_lossy(), &cfg)
            .map_err(|e| e.to_string())?;
        if info.has_video == 0 {
            return Err("no video stream".into());
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
                slack: pts_slack(fps),
                cur: None,
                next: None,
                eof: false,
                linear: None,
            },
            info,
        ))
    }

    fn read(&mut self) -> Result<Option<(Rgba8, f64)>, RenderError> {
        loop {
            let f = self.dec.next_frame().map_err(|e| RenderError::Decode {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
            match f {
                None => return Ok(None),
                Some(Frame::Video(v)) => {
                    let t = v.pts as f64 * v.time_base.as_f64();
                    let mut img = Rgba8::new(v.width, v.height);
                    img.copy_from_view(&v);
                    return Ok(Some((img, t)));
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
                    self.cur = self.next.take();
                    changed = true;
                }
                _ => break,
            }
        }
        Ok(changed)
    }

    fn current_time(&self) -> Option<f64> {
        self.cur.as_ref().map(|c| c.1)
    }
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
    /// Next generation handed to a changed media frame (one counter for all
    /// readers, so a reopened reader never repeats a generation).
    next_generation: u64,
    /// The pattern's still background (canvas encoded) and its frame `n`.
    pattern_bg: Option<Rgba8>,
    pattern_frame: Option<(u64, Arc<LinearImage>)>,
    notes: Vec<String>,
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
                        if registry.find(cap::FILE_DECODE, "*", None).is_none() {
                            return Err(RenderError::NoDecoder {
                                available: registry.available(cap::FILE_DECODE).join(", "),
                            });
                        }
                        let (r, _) =
                            MediaReader::open(registry, path, clip.in_point).map_err(|reason| {
                                RenderError::Open {
                                    path: path.clone(),
                                    track: track.name.clone(),
                                    clip: ci,
                                    reason,
                                }
                            })?;
                        for a in &r.colour.assumed {
                            notes.push(format!(
                                "track {} clip {ci} ({}): {a}",
                                track.name,
                                path.display()
                            ));
                        }
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
                        if !fonts.contains_key(&path) {
                            let bytes = std::fs::read(&path)
                                .map_err(|e| load_err("font", &path, e.to_string()))?;
                            let f = FontArc::try_from_vec(bytes)
                                .map_err(|e| load_err("font", &path, e.to_string()))?;
                            fonts.insert(path, f);
                        }
                        Some(StaticId::Title(ti, ci))
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
            next_generation: 0,
            pattern_bg: None,
            pattern_frame: None,
            notes,
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
        for (ti, track) in m.video.iter().enumerate() {
            // Index in `layers` of this track's last layer at this frame.
            let mut last_on_track: Option<usize> = None;
            for (ci, clip) in track.clips.iter().enumerate() {
                if n < clip.start || n >= clip.start + clip.frames {
                    continue;
                }
                if matches!(clip.source, VideoSource::Media { .. }) {
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
        let ends = &self.static_end;
        self.statics
            .retain(|id, _| ends.get(id).is_some_and(|&end| end > n + 1));
        if self.pattern_frame.as_ref().is_some_and(|p| p.0 != n) {
            self.pattern_frame = None;
        }
        if !ends
            .get(&StaticId::PatternBackground)
            .is_some_and(|&end| end > n + 1)
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
            colour: self.colour[ti][ci],
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
            return self.media(ti, ci, path, source_time(clip, n, m.canvas.frame_rate));
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

    fn media(&mut self, ti: usize, ci: usize, path: &Path, t: f64) -> Result<Shown, RenderError> {
        let key = (ti, ci);
        let stale = match self.readers.get(&key) {
            None => true,
            // Asked for an earlier time than the one shown: start again.
            Some(r) => r.current_time().is_some_and(|ct| t + r.slack < ct),
        };
        if stale {
            self.readers.remove(&key);
            let (r, _) =
                MediaReader::open(self.registry, path, t).map_err(|reason| RenderError::Open {
                    path: path.to_owned(),
                    track: self.manifest.video[ti].name.clone(),
                    clip: ci,
                    reason,
                })?;
            self.readers.insert(key, r);
        }
        let r = self.readers.get_mut(&key).expect("inserted");
        if r.advance(t)? || r.linear.is_none() {
            let (img, _) = r.cur.as_ref().ok_or_else(|| RenderError::Decode {
                path: path.to_owned(),
                reason: "the file has no video frames".into(),
            })?;
            let lin = linearize_rgba8(
                &img.data,
                img.width,
                img.height,
                r.colour.transfer,
                r.colour.primaries,
                self.primaries,
            );
            r.linear = Some((Arc::new(lin), self.next_generation));
            self.next_generation += 1;
        }
        let (img, generation) = r.linear.clone().expect("set above");
        Ok(Shown {
            key: SourceKey {
                id: key,
                generation,
            },
            logical: (img.width as f32, img.height as f32),
            image: img,
        })
    }
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
