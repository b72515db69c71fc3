//! The frame plan: what one canvas frame is made of, resolved for that frame
//! (keyframes evaluated, transitions turned into mix factors, geometry turned
//! into matrices). It is the contract between the timeline (which builds a
//! plan per frame) and the two executors that draw it, the CPU reference
//! (`render::cpu`) and the GPU path (`render::gpu`, wgpu compute). Both
//! follow the rules written here exactly; the agreement test holds them to
//! ΔE2000 < 1.0.
//!
//! # Colour
//! Everything between sources and outputs is **linear light, premultiplied
//! alpha, f32**, in the canvas's primaries (BT.709 unless the canvas says
//! BT.2020). Sources are linearized when they are loaded (see
//! `render::colour`), so executors never see encoded values except inside
//! [`ColourOps`], which works on values encoded with [`FramePlan::transfer`].
//!
//! # Per pixel (canvas pixel `(x, y)`, centre at `(x + 0.5, y + 0.5)`)
//! ```text
//! acc = plan.background
//! i = 0
//! while i < layers.len():
//!     c = shade(layers[i])
//!     blend = layers[i].blend
//!     if i + 1 < layers.len() and layers[i + 1].mix is Some(m):
//!         d = shade(layers[i + 1]); t = mix_factor(m, x, y)
//!         c = Dissolve | Wipe:  c·(1 − t) + d·t
//!             Dip(k):           t < 0.5 ? c·(1 − 2t) + k·2t : k·(2 − 2t) + d·(2t − 1)
//!         blend = layers[i + 1].blend
//!         i += 1
//!     acc = blend_op(acc, c, blend)
//!     i += 1
//! ```
//! `shade(L)`: `(u, v) = L.inverse · (x + 0.5, y + 0.5, 1)` in source pixels;
//! outside `L.crop` (`u < l || u >= r || v < t || v >= b`) the layer is
//! transparent `(0,0,0,0)`; else bilinear on texel centres (`u − 0.5`,
//! `v − 0.5`) with texel indices clamped to the crop rectangle's texels;
//! then [`ColourOps`] (skipped when `identity`), then times `L.opacity`
//! (all four components).
//!
//! `blend_op(b, s, mode)`, premultiplied, `as`/`ab` the alphas, `Cs = s.rgb/as`,
//! `Cb = b.rgb/ab` (0 where the alpha is 0):
//! - Normal: `s + b·(1 − as)`
//! - Add: `rgb = s.rgb + b.rgb`, `a = min(1, as + ab)`
//! - Multiply / Screen (W3C compositing): `rgb = s.rgb·(1 − ab) + b.rgb·(1 − as)
//!   + as·ab·B(Cb, Cs)`, `a = as + ab·(1 − as)`, with `B = Cb·Cs` (multiply)
//!   or `Cb + Cs − Cb·Cs` (screen).
//!
//! `mix_factor`: Dissolve and Dip: `t`. Wipe with unit direction `dir`
//! (`(cos a, sin a)`, y down) and softness `s`: `p = ((x + 0.5)/w − 0.5,
//! (y + 0.5)/h − 0.5)`, `span = |dir.x| + |dir.y|`, `q = (dot(p, dir) +
//! span/2) / span` (0 where the edge starts, 1 where it ends); `s > 0`:
//! `clamp((t·(1 + s) − q)/s, 0, 1)`; `s = 0`: `q < t ? 1 : 0`.
//!
//! # ColourOps (on straight colour `C = rgb/a`, skipped where `a = 0`)
//! ```text
//! C = C · 2^exposure                                   (linear)
//! E = oetf(max(C, 0))                                  (plan.transfer)
//! E = gain·(E + lift·(1 − E)); E = max(E, 0)^(1/gamma)  (per channel)
//! Y = 0.2126·E.r + 0.7152·E.g + 0.0722·E.b; E = Y + (E − Y)·saturation
//! E = lut(clamp(E, 0, 1))   if a LUT (tetrahedral, see `render::lut`)
//! C = eotf(E); rgb = C·a
//! ```
//!
//! # Output
//! The executors return the canvas as linear premultiplied RGBA f32; the
//! conversion to each deliverable (primaries, transfer, matrix, range, bit
//! depth with dither) is `render::convert` (and its GPU twin).

use crate::manifest::model::{BlendMode, Transfer};

/// A source image: linear light, premultiplied alpha, RGBA f32, row-major,
/// tightly packed (`width · height` pixels).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<[f32; 4]>,
}

impl LinearImage {
    pub fn new(width: u32, height: u32) -> Self {
        LinearImage {
            width,
            height,
            data: vec![[0.0; 4]; width as usize * height as usize],
        }
    }

    pub fn filled(width: u32, height: u32, c: [f32; 4]) -> Self {
        LinearImage {
            width,
            height,
            data: vec![c; width as usize * height as usize],
        }
    }
}

/// How a layer combines with the one before it in [`FramePlan::layers`]
/// (the outgoing clip of the same track) instead of being blended alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MixKind {
    Dissolve,
    /// Through a colour (linear, premultiplied).
    Dip([f32; 4]),
    /// `dir`: unit vector the edge travels along (y down); `softness`:
    /// 0 = hard edge.
    Wipe {
        dir: [f32; 2],
        softness: f32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    pub kind: MixKind,
    /// Progress 0..=1 (frame-centred: `(k + 0.5) / frames` at frame `k`
    /// of the transition).
    pub t: f32,
}

/// Colour operations resolved for execution (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColourOps {
    /// True when every operation below is the identity: executors skip them.
    pub identity: bool,
    /// `2^exposure`, already raised.
    pub exposure_gain: f32,
    pub lift: [f32; 3],
    pub gamma: [f32; 3],
    pub gain: [f32; 3],
    pub saturation: f32,
    /// Index into [`FramePlan::luts`].
    pub lut: Option<usize>,
}

impl ColourOps {
    pub const IDENTITY: ColourOps = ColourOps {
        identity: true,
        exposure_gain: 1.0,
        lift: [0.0; 3],
        gamma: [1.0; 3],
        gain: [1.0; 3],
        saturation: 1.0,
        lut: None,
    };
}

/// Whether an inverse (canvas pixel → source pixel) is a translation by
/// whole pixels: each canvas pixel then reads one texel, unfiltered.
pub fn whole_pixel_translation(m: &[f32; 6]) -> bool {
    m[0] == 1.0
        && m[1] == 0.0
        && m[3] == 0.0
        && m[4] == 1.0
        && m[2].fract() == 0.0
        && m[5].fract() == 0.0
}

/// One layer of one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerOp {
    /// Index into the executor's source list (see [`FramePlan::sources`]).
    pub source: usize,
    /// Canvas pixel position → source pixel position:
    /// `u = m[0]·x + m[1]·y + m[2]`, `v = m[3]·x + m[4]·y + m[5]`.
    pub inverse: [f32; 6],
    /// Visible part of the source in source pixels: left, top, right, bottom.
    pub crop: [f32; 4],
    pub opacity: f32,
    pub blend: BlendMode,
    pub colour: ColourOps,
    pub mix: Option<Mix>,
}

/// A loaded 3D LUT: `size³` RGB entries, red fastest (the `.cube` order),
/// mapping `[domain_min, domain_max]` per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Lut3d {
    pub size: u32,
    pub domain_min: [f32; 3],
    pub domain_max: [f32; 3],
    pub data: Vec<[f32; 3]>,
}

/// Identifies a source image across frames, so that executors upload or
/// convert a still, a title or a generator once and a media frame once per
/// change. Two sources with the same key and `generation` hold the same
/// pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceKey {
    /// (track, clip) for clips; generators use their own keys.
    pub id: (usize, usize),
    /// Bumped whenever the pixels change (a new media frame).
    pub generation: u64,
}

/// Everything needed to draw one canvas frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FramePlan {
    pub width: u32,
    pub height: u32,
    /// Linear premultiplied.
    pub background: [f32; 4],
    /// Bottom to top; a layer with `mix` pairs with the one before it.
    pub layers: Vec<LayerOp>,
    /// Keys of the sources `LayerOp::source` indexes, in order.
    pub sources: Vec<SourceKey>,
    /// Transfer the colour operations encode with (the canvas's).
    pub transfer: Transfer,
    /// LUTs the colour operations index (loaded once per job; the same list
    /// every frame).
    pub luts: std::sync::Arc<Vec<Lut3d>>,
}

/// One picture format some deliverable needs. The render produces each
/// distinct format once per frame (never once per deliverable): a canvas
/// rendered once, then resampled and converted per format.
///
/// Conversion (`render::convert`, and the GPU twin) from the linear
/// premultiplied canvas, per output pixel:
/// 1. resample to `width × height` when it differs from the canvas
///    (separable tent filter on linear premultiplied values, radius
///    `max(1, src/dst)` source pixels, so downscales average);
/// 2. straight colour `C = rgb/a` (0 where `a = 0`);
/// 3. canvas primaries → output primaries (3×3 in linear light) when they
///    differ;
/// 4. output OETF (`color.transfer`), clamped to 0..=1;
/// 5. R'G'B' → Y'CbCr with `color.matrix` (BT.709, BT.601, BT.2020 NCL),
///    scaled to `color.range` (limited: Y 16..235 · 2^(bits−8), C 16..240;
///    full: 0..2^bits − 1) at the format's bit depth;
/// 6. chroma subsampled by averaging the covered luma positions' Cb/Cr
///    (left-sited horizontally as MPEG-2/H.264 expect: 4:2:2/4:2:0 take
///    the mean of the 2 (×2) pixels);
/// 7. quantized with an 8×8 ordered (Bayer) dither when `dither`, with
///    thresholds in (−0.5, 0.5) so a value exactly on a code stays on it;
///    else rounded to nearest;
/// 8. alpha (formats with a fourth plane) at full range, never dithered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutputFormat {
    pub width: u32,
    pub height: u32,
    /// An [`deliver_plugin_api::abi::pix`] value.
    pub pix_fmt: u32,
    /// FFmpeg numbering (`abi::ColorTags`).
    pub primaries: u32,
    pub transfer: u32,
    pub matrix: u32,
    pub range: u32,
    pub dither: bool,
}

/// A renderer: draws frame plans and converts the canvas to every output
/// format. `render::cpu::CpuRenderer` is the reference; `render::gpu`
/// implements the same on wgpu.
pub trait Renderer: Send {
    /// "cpu" or "gpu (adapter name)": for logs and the report.
    fn name(&self) -> String;

    /// Whether the timeline should grade media while it linearizes them
    /// ([`crate::render::timeline::Timeline::grade_sources`]): true where
    /// the renderer grades on the same cores with the same arithmetic, so
    /// that moving the work changes no value.
    fn wants_graded_sources(&self) -> bool {
        false
    }

    /// Draws `plan` (sources given in `plan.sources` order) and returns one
    /// converted frame per entry of `outputs`, in that order.
    ///
    /// # Errors
    /// A device failure, with what failed.
    fn render(
        &mut self,
        plan: &FramePlan,
        sources: &[std::sync::Arc<LinearImage>],
        outputs: &[OutputFormat],
    ) -> Result<Vec<crate::render::image::Yuv>, String>;

    /// Draws `plan` and returns the linear canvas itself (tests, previews,
    /// the GPU/CPU agreement check).
    ///
    /// # Errors
    /// As [`Renderer::render`].
    fn render_linear(
        &mut self,
        plan: &FramePlan,
        sources: &[std::sync::Arc<LinearImage>],
    ) -> Result<LinearImage, String>;

    /// Draws `plan`, converts it to every output, and hands back the
    /// linear canvas too (the job takes its ΔE reference from it). The
    /// default draws, then converts the drawn canvas as a one-layer plan.
    ///
    /// # Errors
    /// As [`Renderer::render`].
    #[allow(clippy::type_complexity)]
    fn render_with_canvas(
        &mut self,
        plan: &FramePlan,
        sources: &[std::sync::Arc<LinearImage>],
        outputs: &[OutputFormat],
    ) -> Result<(Vec<crate::render::image::Yuv>, std::sync::Arc<LinearImage>), String> {
        static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let canvas = std::sync::Arc::new(self.render_linear(plan, sources)?);
        // A fresh generation each time: renderers that keep sources
        // resident by key must not take this canvas for the last one.
        let generation = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let copy = crate::render::cpu::copy_plan(&canvas, plan.transfer, generation);
        let pictures = self.render(&copy, std::slice::from_ref(&canvas), outputs)?;
        Ok((pictures, canvas))
    }
}
