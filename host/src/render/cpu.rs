//! The CPU reference renderer: the per-pixel rules of `render::plan`,
//! literally, on every core (rows split into bands), and the conversion of
//! `render::convert`.
//!
//! Fast paths give bit-identical results to the general kernel:
//! - a layer whose inverse is an integer translation fetches texels instead
//!   of interpolating (the bilinear weights are exactly 0 and 1, and the
//!   interpolation is written as `a + (b − a)·f`, so `f = 0` returns `a`);
//! - layers below the topmost one that hides everything (Normal, opacity 1,
//!   no mix, an opaque source, every pixel centre inside its crop) are not
//!   evaluated: `s + b·(1 − 1)` is `s`;
//! - a plan that is one such layer, untransformed, the size of the canvas,
//!   over a transparent background, is its source: [`Renderer::render`]
//!   converts the source without drawing (the job pipeline's path while the
//!   old compositor draws the canvas).

use crate::manifest::model::{BlendMode, Primaries, Transfer};
use crate::render::convert;
use crate::render::image::Yuv;
use crate::render::lut::PreparedLut;
use crate::render::plan::{
    ColourOps, FramePlan, LayerOp, LinearImage, Lut3d, MixKind, OutputFormat, Renderer, SourceKey,
};
use std::collections::HashMap;
use std::sync::Arc;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// The reference renderer. It keeps, per source key, whether the source is
/// opaque everywhere (for the occlusion fast path).
pub struct CpuRenderer {
    canvas_primaries: Primaries,
    opaque: HashMap<SourceKey, bool>,
    fast_paths: bool,
    /// The row path grades with the AVX2 kernel where the CPU has it.
    vector: bool,
    /// The last canvas [`Renderer::render`] drew, kept for its buffer.
    spare: Option<LinearImage>,
    /// The last canvas [`Renderer::render_with_canvas`] handed out: once
    /// its receiver lets go of it, its buffer serves the next frame (33 MB
    /// at 1080p, not mapped and faulted in again every frame).
    lent: Option<Arc<LinearImage>>,
    /// The plans' LUTs prepared for the row path, and the list they were
    /// prepared from (a timeline hands every frame the same one).
    prepared_luts: Option<PreparedLuts>,
}

/// A plan's LUT list and the same LUTs prepared.
type PreparedLuts = (Arc<Vec<Lut3d>>, Arc<Vec<PreparedLut>>);

impl CpuRenderer {
    /// A renderer for a canvas in `canvas_primaries` (the frame plan does
    /// not carry them; conversion needs them).
    pub fn new(canvas_primaries: Primaries) -> Self {
        CpuRenderer {
            canvas_primaries,
            opaque: HashMap::new(),
            fast_paths: true,
            vector: true,
            spare: None,
            lent: None,
            prepared_luts: None,
        }
    }

    /// The same renderer with every fast path off (tests prove the fast
    /// paths change nothing).
    pub fn without_fast_paths(canvas_primaries: Primaries) -> Self {
        CpuRenderer {
            fast_paths: false,
            ..CpuRenderer::new(canvas_primaries)
        }
    }

    /// The same renderer grading with the scalar code only (tests prove
    /// the vector kernel changes nothing).
    pub fn without_vector_kernels(canvas_primaries: Primaries) -> Self {
        CpuRenderer {
            vector: false,
            ..CpuRenderer::new(canvas_primaries)
        }
    }

    /// Draws a plan into a new linear canvas.
    ///
    /// # Panics
    /// When a layer names a source or LUT index the plan does not have (the
    /// timeline builds plans; a wrong index is a bug there).
    pub fn draw(&mut self, plan: &FramePlan, sources: &[Arc<LinearImage>]) -> LinearImage {
        let mut out = LinearImage::new(0, 0);
        self.draw_into(plan, sources, Some(&mut out), None);
        out
    }

    /// [`CpuRenderer::draw`] into `out`, reusing its allocation when it is
    /// the canvas's size (every pixel is written); with `fused`, each batch
    /// of rows is converted by the thread that drew it, right after. Without
    /// `out`, the rows go to a scratch batch per thread and only the
    /// conversions remain.
    fn draw_into(
        &mut self,
        plan: &FramePlan,
        sources: &[Arc<LinearImage>],
        out: Option<&mut LinearImage>,
        fused: Option<&mut convert::Fused>,
    ) {
        let luts = self.prepared_luts(&plan.luts);
        let layers: Vec<Prepared<'_>> = plan
            .layers
            .iter()
            .map(|l| {
                let p = Prepared::new(l, &sources[l.source], &plan.luts, self.fast_paths);
                if self.fast_paths {
                    p.with_columns(plan.width as usize)
                } else {
                    p
                }
            })
            .collect();
        let start = if self.fast_paths {
            self.first_visible(plan, sources)
        } else {
            0
        };
        let (w, h) = (plan.width as usize, plan.height as usize);
        let canvas = out.map(|out| {
            if out.data.len() != w * h {
                *out = LinearImage::new(plan.width, plan.height);
            }
            (out.width, out.height) = (plan.width, plan.height);
            out.data.chunks_mut(BATCH * w.max(1))
        });
        if w == 0 || h == 0 {
            return;
        }
        let (planes, targets) = match fused {
            Some(f) => {
                let (planes, targets) = f.batches(BATCH);
                (Some(planes.into_iter()), Some(targets))
            }
            None => (None, None),
        };
        let threads = super::threads_for(h.div_ceil(BATCH));
        let ctx = Kernel {
            plan,
            layers: &layers,
            start,
        };
        let ctx = &ctx;
        // The row path's exact integer sums need indices below `EXACT`.
        let fast = self.fast_paths && (w as f32) < EXACT && (h as f32) < EXACT;
        let luts = luts.as_slice();
        let vector = self.vector;
        let targets = targets.as_ref();
        // Rows go out in batches to whichever thread is free: layers cover
        // the canvas unevenly (a picture in picture in one corner), and
        // fixed bands left a core waiting for the busiest. Each batch: its
        // number, its rows of the canvas (if one is kept), its planes of
        // the fused conversions (if any).
        let (mut canvas, mut planes) = (canvas, planes);
        let batches = (0..h.div_ceil(BATCH)).map(move |k| {
            let rows = canvas.as_mut().and_then(Iterator::next);
            let planes = planes.as_mut().and_then(Iterator::next);
            (k, rows, planes)
        });
        let batches = std::sync::Mutex::new(batches);
        let batches = &batches;
        let next = move || {
            batches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .next()
        };
        let draw = move || {
            let mut scratch = Rows::new(w);
            let mut colours: Vec<Colour<'_>> = ctx
                .layers
                .iter()
                .map(|l| {
                    let lut = l.op.colour.lut.map(|i| &luts[i]);
                    Colour::new(l.op.colour, ctx.plan.transfer, lut, vector)
                })
                .collect();
            let mut converter = targets.map(convert::FusedTargets::converter);
            let mut own: Vec<[f32; 4]> = Vec::new();
            while let Some((k, rows, planes)) = next() {
                let n = (h - k * BATCH).min(BATCH) * w;
                let rows = match rows {
                    Some(rows) => rows,
                    None => {
                        own.resize(n, [0.0; 4]);
                        &mut own[..n]
                    }
                };
                for (r, row) in rows.chunks_mut(w).enumerate() {
                    let y = k * BATCH + r;
                    if fast {
                        ctx.row(y, row, &mut scratch, &mut colours);
                    } else {
                        for (x, px) in row.iter_mut().enumerate() {
                            *px = ctx.pixel(x, y);
                        }
                    }
                }
                if let (Some(c), Some(mut planes)) = (converter.as_mut(), planes) {
                    c.convert(k, rows, &mut planes);
                }
            }
        };
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(draw);
            }
            // This thread draws too.
            draw();
        });
    }

    /// `luts` prepared, from the cache when they are the last plan's.
    fn prepared_luts(&mut self, luts: &Arc<Vec<Lut3d>>) -> Arc<Vec<PreparedLut>> {
        match &self.prepared_luts {
            Some((from, prepared)) if Arc::ptr_eq(from, luts) => prepared.clone(),
            _ => {
                let prepared = Arc::new(luts.iter().map(Lut3d::prepare).collect::<Vec<_>>());
                self.prepared_luts = Some((luts.clone(), prepared.clone()));
                prepared
            }
        }
    }

    /// Index of the layer to start from: the topmost that hides all below.
    fn first_visible(&mut self, plan: &FramePlan, sources: &[Arc<LinearImage>]) -> usize {
        // Forget sources no longer drawn (media keys change every frame).
        let live: std::collections::HashSet<SourceKey> = plan.sources.iter().copied().collect();
        self.opaque.retain(|k, _| live.contains(k));
        let n = plan.layers.len();
        // Down to layer 1: the answer for layer 0 is 0 whatever it holds,
        // and proving a 1080p source opaque reads all its 33 MB.
        for i in (1..n).rev() {
            let l = &plan.layers[i];
            let paired = l.mix.is_some() || plan.layers.get(i + 1).is_some_and(|u| u.mix.is_some());
            if paired || l.blend != BlendMode::Normal || l.opacity != 1.0 {
                continue;
            }
            if !covers(l, plan.width, plan.height) {
                continue;
            }
            let src = &sources[l.source];
            let opaque = match plan.sources.get(l.source) {
                Some(k) => *self
                    .opaque
                    .entry(*k)
                    .or_insert_with(|| src.data.iter().all(|p| p[3] == 1.0)),
                None => src.data.iter().all(|p| p[3] == 1.0),
            };
            if opaque {
                return i;
            }
        }
        0
    }

    /// The source itself when the plan is a plain copy of it (see the
    /// module docs).
    fn passthrough<'s>(
        &self,
        plan: &FramePlan,
        sources: &'s [Arc<LinearImage>],
    ) -> Option<&'s Arc<LinearImage>> {
        let [l] = plan.layers.as_slice() else {
            return None;
        };
        let src = sources.get(l.source)?;
        let plain = self.fast_paths
            && plan.background == [0.0; 4]
            && l.mix.is_none()
            && l.blend == BlendMode::Normal
            && l.opacity == 1.0
            && l.colour.identity
            && l.inverse == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            && (src.width, src.height) == (plan.width, plan.height)
            && l.crop[0] <= 0.0
            && l.crop[1] <= 0.0
            && l.crop[2] >= plan.width as f32
            && l.crop[3] >= plan.height as f32;
        plain.then_some(src)
    }
}

/// Whether every pixel centre of a `w × h` canvas maps inside the layer's
/// crop: the crop is convex and the map affine, so the four corner centres
/// decide.
fn covers(l: &LayerOp, w: u32, h: u32) -> bool {
    let m = &l.inverse;
    let [cl, ct, cr, cb] = l.crop;
    [
        (0.5, 0.5),
        (w as f32 - 0.5, 0.5),
        (0.5, h as f32 - 0.5),
        (w as f32 - 0.5, h as f32 - 0.5),
    ]
    .iter()
    .all(|&(x, y)| {
        let u = m[0] * x + m[1] * y + m[2];
        let v = m[3] * x + m[4] * y + m[5];
        u >= cl && u < cr && v >= ct && v < cb
    })
}

/// A layer with what its shading needs looked up once.
struct Prepared<'a> {
    op: &'a LayerOp,
    src: &'a LinearImage,
    lut: Option<&'a Lut3d>,
    /// The inverse is a translation by whole pixels: fetch, do not filter.
    integer: bool,
    /// Texel index bounds: the crop's texels, inside the image.
    tx: (i64, i64),
    ty: (i64, i64),
    /// For an integer translation small enough that `u − 0.5` is exactly
    /// `x + dx` (and `v − 0.5` exactly `y + dy`) in f32: the row path
    /// fetches texel `(x + dx, y + dy)` without flooring.
    shift: Option<(i64, i64)>,
    /// For a filtered layer without rotation or shear (`u` depends on `x`
    /// alone, `v` on `y` alone): each canvas column's bilinear taps, made
    /// once per frame; the row path then looks up two source rows per row.
    columns: Option<Columns>,
}

/// A canvas column's horizontal taps: texel columns `x0`, `x1` (clamped
/// into the crop) and the weight `fx` of `x1`; `x0 == u32::MAX` outside the
/// crop.
#[derive(Clone, Copy)]
struct Tap {
    x0: u32,
    x1: u32,
    fx: f32,
}

/// The taps of every canvas column, and the span of those inside the crop.
struct Columns {
    taps: Vec<Tap>,
    first: usize,
    end: usize,
}

/// A shifted layer's row: pixels `first..end` are inside its crop, of
/// which `a..b` read `src[from..]` without clamping.
struct ShiftSpans<'s> {
    first: usize,
    end: usize,
    a: usize,
    b: usize,
    src: &'s [[f32; 4]],
    from: usize,
}

/// Rows a drawing thread takes at a time.
const BATCH: usize = 16;

/// Below this magnitude every integer and half-integer sum the row path
/// forms from pixel indices and whole-pixel offsets is exact in f32
/// (24-bit significand, one bit for the half).
const EXACT: f32 = (1u32 << 21) as f32;

impl<'a> Prepared<'a> {
    fn new(op: &'a LayerOp, src: &'a LinearImage, luts: &'a [Lut3d], fast: bool) -> Self {
        let m = &op.inverse;
        let integer = fast && super::plan::whole_pixel_translation(m);
        let [l, t, r, b] = op.crop;
        let (w, h) = (src.width as i64, src.height as i64);
        let bound = |lo: f32, hi: f32, n: i64| {
            let a = (lo.floor() as i64).max(0);
            let z = (hi.ceil() as i64 - 1).min(n - 1);
            (a, z)
        };
        let shift = (integer && m[2].abs() < EXACT && m[5].abs() < EXACT)
            .then_some((m[2] as i64, m[5] as i64));
        Prepared {
            op,
            src,
            lut: op.colour.lut.map(|i| &luts[i]),
            integer,
            tx: bound(l, r, w),
            ty: bound(t, b, h),
            shift,
            columns: None,
        }
    }

    /// [`Prepared::new`], with the column taps made for a layer that has
    /// none of rotation, shear or whole-pixel placement, on a canvas
    /// `width` wide (below [`EXACT`]).
    fn with_columns(mut self, width: usize) -> Self {
        let m = &self.op.inverse;
        if self.integer || m[1] != 0.0 || m[3] != 0.0 || (width as f32) >= EXACT {
            return self;
        }
        // As `inside` and `sample` compute them: `u` at any row is the
        // same (`0 · py` adds a zero), so row 0's stands for all.
        let py = 0.5;
        let taps: Vec<Tap> = (0..width)
            .map(|x| match self.inside_u(x, py) {
                Some(u) => {
                    let su = u - 0.5;
                    let fu = floor(su);
                    let x0 = fu as i64;
                    Tap {
                        x0: x0.clamp(self.tx.0, self.tx.1) as u32,
                        x1: (x0 + 1).clamp(self.tx.0, self.tx.1) as u32,
                        fx: su - fu,
                    }
                }
                None => Tap {
                    x0: u32::MAX,
                    x1: 0,
                    fx: 0.0,
                },
            })
            .collect();
        let first = taps.iter().position(|t| t.x0 != u32::MAX).unwrap_or(width);
        let end = taps
            .iter()
            .rposition(|t| t.x0 != u32::MAX)
            .map_or(first, |x| x + 1);
        self.columns = Some(Columns { taps, first, end });
        self
    }

    /// `u` of pixel `x` of the row at `py` when it falls inside the crop
    /// across (and the crop holds texels); `inside`'s test less `v`'s.
    #[inline(always)]
    fn inside_u(&self, x: usize, py: f32) -> Option<f32> {
        let m = &self.op.inverse;
        let [cl, _, cr, _] = self.op.crop;
        let u = m[0] * (x as f32 + 0.5) + m[1] * py + m[2];
        let empty = self.tx.0 > self.tx.1 || self.ty.0 > self.ty.1;
        (u >= cl && u < cr && !empty).then_some(u)
    }

    /// [`Prepared::shade_row`]'s sampling for a layer with column taps
    /// (else `None`): row `y`'s two source rows and weight looked up once,
    /// then per pixel the four texels and the same three lerps as
    /// [`Prepared::sample`]. Returns the span inside the crop.
    fn sample_columns(&self, y: usize, out: &mut [[f32; 4]]) -> Option<(usize, usize)> {
        let cols = self.columns.as_ref()?;
        let m = &self.op.inverse;
        let [_, ct, _, cb] = self.op.crop;
        // `v` as `inside` computes it (`m[3] · pxf` is a zero here).
        let v = m[3] * 0.5 + m[4] * (y as f32 + 0.5) + m[5];
        if !(v >= ct && v < cb) {
            out.fill([0.0; 4]);
            return Some((out.len(), out.len()));
        }
        let sv = v - 0.5;
        let fv = floor(sv);
        let fy = sv - fv;
        let y0 = fv as i64;
        let sw = self.src.width as usize;
        let row = |y: i64| {
            let y = y.clamp(self.ty.0, self.ty.1) as usize;
            &self.src.data[y * sw..(y + 1) * sw]
        };
        let (r0, r1) = (row(y0), row(y0 + 1));
        let (first, end) = (cols.first, cols.end);
        out[..first].fill([0.0; 4]);
        out[end..].fill([0.0; 4]);
        for (px, t) in out[first..end].iter_mut().zip(&cols.taps[first..end]) {
            if t.x0 == u32::MAX {
                *px = [0.0; 4];
                continue;
            }
            let (x0, x1) = (t.x0 as usize, t.x1 as usize);
            let top = lerp4(r0[x0], r0[x1], t.fx);
            let bot = lerp4(r1[x0], r1[x1], t.fx);
            *px = lerp4(top, bot, fy);
        }
        Some((first, end))
    }

    /// The source at texel-centre coordinates `(su, sv)`, given their
    /// floors `(fu, fv)`: the texel itself for a layer on whole pixels,
    /// else bilinear between the four around it.
    #[inline]
    fn sample(&self, su: f32, sv: f32, fu: f32, fv: f32) -> [f32; 4] {
        let (x0, y0) = (fu as i64, fv as i64);
        if self.integer {
            return self.texel(x0, y0);
        }
        let (fx, fy) = (su - fu, sv - fv);
        let top = lerp4(self.texel(x0, y0), self.texel(x0 + 1, y0), fx);
        let bot = lerp4(self.texel(x0, y0 + 1), self.texel(x0 + 1, y0 + 1), fx);
        lerp4(top, bot, fy)
    }

    /// `shade` for every pixel of canvas row `y` (`out.len()` pixels, fewer
    /// than [`EXACT`]) with the same arithmetic, per-layer work hoisted out
    /// of the loop. Returns the span of pixels inside the crop (those
    /// outside are `[0; 4]`, as `shade` gives them).
    fn shade_row(&self, y: usize, out: &mut [[f32; 4]], colour: &mut Colour<'_>) -> (usize, usize) {
        let m = &self.op.inverse;
        let [_, ct, _, cb] = self.op.crop;
        if m[3] == 0.0 {
            // `v` is the same at every pixel of the row (`0 · x` adds
            // nothing): one test decides a row the crop misses whole.
            let v = m[3] * 0.5 + m[4] * (y as f32 + 0.5) + m[5];
            if !(v >= ct && v < cb) {
                out.fill([0.0; 4]);
                return (out.len(), out.len());
            }
        }
        if let Some(span) = self.shift_row(y, out, colour) {
            return span;
        }
        if let Some((first, end)) = self.sample_columns(y, out) {
            if first < end {
                if !self.op.colour.identity {
                    colour.grade(&mut out[first..end]);
                }
                fade(&mut out[first..end], self.op.opacity);
            }
            return (first, end);
        }
        let w = out.len();
        let py = y as f32 + 0.5;
        let (mut first, mut end) = (w, 0);
        for (x, px) in out.iter_mut().enumerate() {
            match self.inside(x, py) {
                Some((u, v)) => {
                    first = first.min(x);
                    end = x + 1;
                    let (su, sv) = (u - 0.5, v - 0.5);
                    *px = self.sample(su, sv, floor(su), floor(sv));
                }
                _ => *px = [0.0; 4],
            }
        }
        let end = end.max(first);
        if !self.op.colour.identity {
            colour.grade(&mut out[first..end]);
        }
        fade(&mut out[first..end], self.op.opacity);
        (first, end)
    }

    /// Source coordinates `(u, v)` of pixel `x` of the row at `py`, when
    /// they fall inside the crop (written so that NaN is outside) and the
    /// crop holds texels.
    #[inline(always)]
    fn inside(&self, x: usize, py: f32) -> Option<(f32, f32)> {
        let m = &self.op.inverse;
        let [_, ct, _, cb] = self.op.crop;
        let v = m[3] * (x as f32 + 0.5) + m[4] * py + m[5];
        let u = self.inside_u(x, py)?;
        (v >= ct && v < cb).then_some((u, v))
    }

    /// Where row `y` (`w` pixels) of a layer moved by whole pixels
    /// (`shift`) finds its texels: `None` for any other layer.
    fn shift_spans(&self, y: usize, w: usize) -> Option<ShiftSpans<'a>> {
        let (dx, dy) = self.shift?;
        let py = y as f32 + 0.5;
        let inside = |x: usize| self.inside(x, py).is_some();
        let first = (0..w).find(|&x| inside(x)).unwrap_or(w);
        let end = (first..w)
            .rev()
            .find(|&x| inside(x))
            .map_or(first, |x| x + 1);
        let sw = self.src.width as usize;
        // `floor(v − 0.5)` is `y + dy` exactly here (see `EXACT`).
        let ty = (y as i64 + dy).clamp(self.ty.0, self.ty.1) as usize;
        let src = &self.src.data[ty * sw..(ty + 1) * sw];
        // The pixels whose texel `x + dx` needs no clamp.
        let a = (self.tx.0 - dx).clamp(first as i64, end as i64) as usize;
        let b = (self.tx.1 + 1 - dx).clamp(a as i64, end as i64) as usize;
        Some(ShiftSpans {
            first,
            end,
            a,
            b,
            src,
            from: (a as i64 + dx).max(0) as usize,
        })
    }

    /// The texel of pixel `x` of a shifted row `src` (clamped into the
    /// crop's texels).
    #[inline]
    fn shifted_texel(&self, src: &[[f32; 4]], x: usize) -> [f32; 4] {
        let dx = self.shift.map_or(0, |s| s.0);
        src[(x as i64 + dx).clamp(self.tx.0, self.tx.1) as usize]
    }

    /// [`Prepared::shade_row`] then a Normal blend over the plain colour
    /// `bg`, into `out`, for a layer moved by whole pixels with no colour
    /// operations at full opacity: the source run blended straight from
    /// its row, the same bits, without copying it first. False (nothing
    /// written) for any other layer.
    fn over_row(&self, y: usize, out: &mut [[f32; 4]], bg: [f32; 4]) -> bool {
        if !self.op.colour.identity || self.op.opacity != 1.0 {
            return false;
        }
        let m = &self.op.inverse;
        let [_, ct, _, cb] = self.op.crop;
        // As `shade_row`: a row the crop misses whole is transparent.
        let v = m[3] * 0.5 + m[4] * (y as f32 + 0.5) + m[5];
        if m[3] != 0.0 || !(v >= ct && v < cb) {
            return false;
        }
        let Some(ShiftSpans {
            first,
            end,
            a,
            b,
            src,
            from,
        }) = self.shift_spans(y, out.len())
        else {
            return false;
        };
        let over = |s: [f32; 4]| {
            let k = 1.0 - s[3];
            [
                s[0] + bg[0] * k,
                s[1] + bg[1] * k,
                s[2] + bg[2] * k,
                s[3] + bg[3] * k,
            ]
        };
        let clear = over([0.0; 4]);
        out[..first].fill(clear);
        out[end..].fill(clear);
        for x in (first..a).chain(b..end) {
            out[x] = over(self.shifted_texel(src, x));
        }
        if a < b {
            for (o, &s) in out[a..b].iter_mut().zip(&src[from..from + (b - a)]) {
                *o = over(s);
            }
        }
        true
    }

    /// [`Prepared::shade_row`] for a layer moved by whole pixels (`shift`;
    /// else `None`): the pixels inside the crop are one run (`u` grows
    /// with `x`, `v` is the row's), found with the per-pixel test; the
    /// texels under them are copied, clamped only at the source's edges;
    /// then the grade and the opacity over the run.
    #[inline(always)]
    fn shift_row(
        &self,
        y: usize,
        out: &mut [[f32; 4]],
        colour: &mut Colour<'_>,
    ) -> Option<(usize, usize)> {
        let ShiftSpans {
            first,
            end,
            a,
            b,
            src,
            from,
        } = self.shift_spans(y, out.len())?;
        out[..first].fill([0.0; 4]);
        out[end..].fill([0.0; 4]);
        if first == end {
            return Some((first, end));
        }
        let texel = |x: usize| self.shifted_texel(src, x);
        for (x, px) in out[first..a].iter_mut().enumerate() {
            *px = texel(first + x);
        }
        for (x, px) in out[b..end].iter_mut().enumerate() {
            *px = texel(b + x);
        }
        let graded = !self.op.colour.identity;
        if a < b {
            // The run straight from the source row (graded on the way).
            let run = &src[from..from + (b - a)];
            if graded {
                colour.grade_from(run, &mut out[a..b]);
            } else {
                out[a..b].copy_from_slice(run);
            }
        }
        if graded {
            colour.grade(&mut out[first..a]);
            colour.grade(&mut out[b..end]);
        }
        fade(&mut out[first..end], self.op.opacity);
        Some((first, end))
    }

    #[inline]
    fn texel(&self, x: i64, y: i64) -> [f32; 4] {
        let x = x.clamp(self.tx.0, self.tx.1) as usize;
        let y = y.clamp(self.ty.0, self.ty.1) as usize;
        self.src.data[y * self.src.width as usize + x]
    }

    /// `shade(L)` of the module docs at canvas pixel `(x, y)`.
    #[inline]
    fn shade(&self, x: usize, y: usize, transfer: Transfer) -> [f32; 4] {
        let Some((u, v)) = self.inside(x, y as f32 + 0.5) else {
            return [0.0; 4];
        };
        let (su, sv) = (u - 0.5, v - 0.5);
        let mut c = self.sample(su, sv, su.floor(), sv.floor());
        if !self.op.colour.identity {
            c = colour_ops(c, &self.op.colour, transfer, self.lut);
        }
        let o = self.op.opacity;
        c.map(|v| v * o)
    }
}

/// `a + (b − a)·f` per channel: the bilinear sample's step.
#[inline(always)]
fn lerp4(a: [f32; 4], b: [f32; 4], f: f32) -> [f32; 4] {
    std::array::from_fn(|i| a[i] + (b[i] - a[i]) * f)
}

/// Every pixel times the opacity `o` (nothing to do at 1: `v · 1` is `v`).
#[inline(always)]
fn fade(px: &mut [[f32; 4]], o: f32) {
    if o != 1.0 {
        for p in px {
            *p = [p[0] * o, p[1] * o, p[2] * o, p[3] * o];
        }
    }
}

/// [`ColourOps`] on one premultiplied colour (module docs of `plan`).
#[inline]
pub fn colour_ops(c: [f32; 4], ops: &ColourOps, t: Transfer, lut: Option<&Lut3d>) -> [f32; 4] {
    let a = c[3];
    if a == 0.0 {
        return c;
    }
    let mut e: [f32; 3] = std::array::from_fn(|i| {
        let lin = c[i] / a * ops.exposure_gain;
        let e = convert::oetf_fast(t, lin.max(0.0));
        let e = (ops.gain[i] * (e + ops.lift[i] * (1.0 - e))).max(0.0);
        if ops.gamma[i] == 1.0 {
            e
        } else {
            e.powf(1.0 / ops.gamma[i])
        }
    });
    let y = 0.2126 * e[0] + 0.7152 * e[1] + 0.0722 * e[2];
    e = e.map(|v| y + (v - y) * ops.saturation);
    if let Some(l) = lut {
        e = l.apply(e.map(|v| v.clamp(0.0, 1.0)));
    }
    [
        convert::eotf_fast(t, e[0]) * a,
        convert::eotf_fast(t, e[1]) * a,
        convert::eotf_fast(t, e[2]) * a,
        a,
    ]
}

/// `f32::floor` without the libm call baseline x86-64 makes of it: the
/// same value for every non-NaN input.
#[inline(always)]
fn floor(v: f32) -> f32 {
    // At and beyond 2^23 every f32 is a whole number.
    if v.abs() < 8_388_608.0 {
        let t = v as i32 as f32;
        if t > v {
            t - 1.0
        } else {
            t
        }
    } else {
        v.floor()
    }
}

/// Slots of each channel's memo in [`Colour`] (a power of two).
const MEMO: usize = 2048;

/// [`colour_ops`] for one layer, with its tables looked up once: the same
/// arithmetic, so the same values.
///
/// The per-channel steps before saturation (exposure, OETF, lift, gain,
/// gamma) depend, for an opaque pixel, on that channel's value alone, and
/// sources decoded from 8- or 10-bit files hold few distinct values per
/// channel: those steps are memoized per channel, keyed by the value's
/// bits (a hit returns what the arithmetic returned for those bits).
struct Colour<'a> {
    ops: ColourOps,
    transfer: Transfer,
    oetf: &'static [f32],
    /// Saturation, the LUT and the EOTF.
    finish: Finish<'a>,
    /// Per channel, `MEMO` slots of (value's bits, result); every slot
    /// starts as the entry for 0.0, so that any hit is a true one.
    memo: Vec<(u32, f32)>,
    /// `grade` takes the AVX2 kernel rather than `apply` per pixel:
    /// operations that are not the identity, no gamma (a power per pixel),
    /// and a CPU with AVX2.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    vector: bool,
}

impl<'a> Colour<'a> {
    fn new(ops: ColourOps, transfer: Transfer, lut: Option<&'a PreparedLut>, vector: bool) -> Self {
        let mut c = Colour {
            ops,
            transfer,
            oetf: convert::oetf_table(transfer),
            finish: Finish::new(&ops, transfer, lut),
            memo: Vec::new(),
            vector: false,
        };
        #[cfg(target_arch = "x86_64")]
        {
            c.vector = vector
                && !ops.identity
                && ops.gamma == [1.0; 3]
                && std::arch::is_x86_feature_detected!("avx2");
        }
        if !ops.identity {
            c.memo = (0..3)
                .flat_map(|i| {
                    let zero = c.channel(0.0, 1.0, i);
                    std::iter::repeat_n((0f32.to_bits(), zero), MEMO)
                })
                .collect();
        }
        c
    }

    /// `channel(v, 1.0, i)`, memoized.
    #[inline(always)]
    fn opaque_channel(&mut self, v: f32, i: usize) -> f32 {
        let bits = v.to_bits();
        let slot = i * MEMO + (bits.wrapping_mul(0x9E37_79B1) >> 21) as usize % MEMO;
        let (k, e) = self.memo[slot];
        if k == bits {
            return e;
        }
        let e = self.channel(v, 1.0, i);
        self.memo[slot] = (bits, e);
        e
    }

    #[inline(always)]
    fn oetf(&self, l: f32) -> f32 {
        if (0.0..=1.0).contains(&l) {
            convert::oetf_clamped(self.oetf, l)
        } else {
            crate::render::colour::oetf(self.transfer, l)
        }
    }

    #[inline(always)]
    fn channel(&self, c: f32, a: f32, i: usize) -> f32 {
        let ops = &self.ops;
        let lin = c / a * ops.exposure_gain;
        let e = self.oetf(lin.max(0.0));
        let e = (ops.gain[i] * (e + ops.lift[i] * (1.0 - e))).max(0.0);
        if ops.gamma[i] == 1.0 {
            e
        } else {
            e.powf(1.0 / ops.gamma[i])
        }
    }

    /// [`Colour::apply`] on every pixel of `px`: eight at a time with the
    /// AVX2 kernel where `vector` is set, else one by one.
    #[inline(always)]
    fn grade(&mut self, px: &mut [[f32; 4]]) {
        #[cfg(target_arch = "x86_64")]
        if self.vector {
            // SAFETY: `vector` is only set where the CPU has AVX2.
            unsafe { self.apply_span(px) };
            return;
        }
        for p in px {
            *p = self.apply(*p);
        }
    }

    /// `dst[x] = apply(src[x])`, as [`Colour::grade`] (the same length).
    #[inline(always)]
    fn grade_from(&mut self, src: &[[f32; 4]], dst: &mut [[f32; 4]]) {
        #[cfg(target_arch = "x86_64")]
        if self.vector {
            // SAFETY: as in `grade`.
            unsafe { self.apply_from(src, dst) };
            return;
        }
        for (d, p) in dst.iter_mut().zip(src) {
            *d = self.apply(*p);
        }
    }

    #[inline(always)]
    fn apply(&mut self, c: [f32; 4]) -> [f32; 4] {
        let a = c[3];
        if a == 0.0 {
            return c;
        }
        let e = if a == 1.0 {
            // `c / 1.0` is `c`: the channel's result depends on it alone.
            [
                self.opaque_channel(c[0], 0),
                self.opaque_channel(c[1], 1),
                self.opaque_channel(c[2], 2),
            ]
        } else {
            [
                self.channel(c[0], a, 0),
                self.channel(c[1], a, 1),
                self.channel(c[2], a, 2),
            ]
        };
        self.finish.apply(e, a)
    }
}

/// The steps of [`Colour::apply`] after the per-channel ones: saturation
/// about BT.709 luma of the encoded values, the LUT, the EOTF, alpha.
#[derive(Clone, Copy)]
struct Finish<'a> {
    saturation: f32,
    transfer: Transfer,
    eotf: &'static [f32],
    lut: Option<&'a PreparedLut>,
}

impl<'a> Finish<'a> {
    fn new(ops: &ColourOps, transfer: Transfer, lut: Option<&'a PreparedLut>) -> Self {
        Finish {
            saturation: ops.saturation,
            transfer,
            eotf: convert::eotf_table(transfer),
            lut,
        }
    }

    #[inline(always)]
    fn eotf(&self, e: f32) -> f32 {
        if (0.0..=1.0).contains(&e) {
            convert::eotf_in_unit(self.eotf, e)
        } else {
            crate::render::colour::eotf(self.transfer, e)
        }
    }

    /// The channels' encoded values `e` to the premultiplied result.
    #[inline(always)]
    fn apply(&self, mut e: [f32; 3], a: f32) -> [f32; 4] {
        let y = 0.2126 * e[0] + 0.7152 * e[1] + 0.0722 * e[2];
        let s = self.saturation;
        e = [y + (e[0] - y) * s, y + (e[1] - y) * s, y + (e[2] - y) * s];
        if let Some(l) = self.lut {
            e = l.apply([
                e[0].clamp(0.0, 1.0),
                e[1].clamp(0.0, 1.0),
                e[2].clamp(0.0, 1.0),
            ]);
        }
        [
            self.eotf(e[0]) * a,
            self.eotf(e[1]) * a,
            self.eotf(e[2]) * a,
            a,
        ]
    }
}

/// A layer's colour operations applied while its source is linearized
/// from Y'CbCr (see [`crate::render::timeline::Timeline::grade_sources`]),
/// with the same values as [`Colour::apply`] on the linearized texels.
///
/// The linearizer maps every R'G'B' value to one of the
/// [`ycbcr::STEPS`](crate::render::ycbcr::STEPS) + 1 entries of its EOTF
/// table, and an opaque texel's per-channel steps (exposure, OETF, lift,
/// gain, gamma) depend on that channel's value alone: they are worked out
/// once per table entry, here, so a pixel's grade starts with three table
/// reads instead of a round trip through the EOTF and the OETF.
pub(crate) struct SourceGrade {
    ops: ColourOps,
    canvas_transfer: Transfer,
    lut: Option<Arc<PreparedLut>>,
    /// Per channel, `STEPS + 1` values: `channel(table[k], 1, i)`.
    pre: Vec<f32>,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    vector: bool,
}

impl SourceGrade {
    /// The grade `ops` (in the canvas's `canvas_transfer`, with `lut`) of
    /// texels read through `table`, the linearizer's EOTF table of the
    /// source's transfer.
    pub(crate) fn new(
        ops: ColourOps,
        canvas_transfer: Transfer,
        lut: Option<Arc<PreparedLut>>,
        table: &[f32],
    ) -> Self {
        let c = Colour::new(ops, canvas_transfer, None, false);
        let pre = (0..3)
            .flat_map(|i| table.iter().map(move |&v| (i, v)))
            .map(|(i, v)| c.channel(v, 1.0, i))
            .collect();
        let vector = super::has_avx2();
        SourceGrade {
            ops,
            canvas_transfer,
            lut,
            pre,
            vector,
        }
    }

    /// The graded opaque texels of table entries `(ir, ig, ib)` (each
    /// masked to the table) into `out` (all four the same length).
    pub(crate) fn row(&self, ir: &[u32], ig: &[u32], ib: &[u32], out: &mut [[f32; 4]]) {
        let finish = Finish::new(&self.ops, self.canvas_transfer, self.lut.as_deref());
        let steps = self.pre.len() / 3;
        debug_assert!(steps.is_power_of_two());
        let (pr, rest) = self.pre.split_at(steps);
        let (pg, pb) = rest.split_at(steps);
        let mask = steps - 1;
        let n = out.len();
        let (ir, ig, ib) = (&ir[..n], &ig[..n], &ib[..n]);
        let mut x = 0;
        #[cfg(target_arch = "x86_64")]
        if self.vector {
            // SAFETY: `vector` is only set where the CPU has AVX2.
            x = unsafe { avx2::source_grade(&finish, [pr, pg, pb], [ir, ig, ib], out) };
        }
        for x in x..n {
            let e = [
                pr[ir[x] as usize & mask],
                pg[ig[x] as usize & mask],
                pb[ib[x] as usize & mask],
            ];
            out[x] = finish.apply(e, 1.0);
        }
    }
}

/// `blend_op(b, s, mode)` of the module docs.
#[inline]
pub fn blend(b: [f32; 4], s: [f32; 4], mode: BlendMode) -> [f32; 4] {
    let (a_s, a_b) = (s[3], b[3]);
    match mode {
        BlendMode::Normal => std::array::from_fn(|i| s[i] + b[i] * (1.0 - a_s)),
        BlendMode::Add => [s[0] + b[0], s[1] + b[1], s[2] + b[2], (a_s + a_b).min(1.0)],
        BlendMode::Multiply | BlendMode::Screen => {
            let straight = |p: [f32; 4], a: f32, i: usize| if a > 0.0 { p[i] / a } else { 0.0 };
            let mut o = [0.0; 4];
            for i in 0..3 {
                let (cs, cb) = (straight(s, a_s, i), straight(b, a_b, i));
                let mixed = if mode == BlendMode::Multiply {
                    cb * cs
                } else {
                    cb + cs - cb * cs
                };
                o[i] = s[i] * (1.0 - a_b) + b[i] * (1.0 - a_s) + a_s * a_b * mixed;
            }
            o[3] = a_s + a_b * (1.0 - a_s);
            o
        }
    }
}

/// `mix_factor(m, x, y)` of the module docs.
#[inline]
pub fn mix_factor(kind: MixKind, t: f32, x: usize, y: usize, w: u32, h: u32) -> f32 {
    match kind {
        MixKind::Dissolve | MixKind::Dip(_) => t,
        MixKind::Wipe { dir, softness } => {
            let p = [
                (x as f32 + 0.5) / w as f32 - 0.5,
                (y as f32 + 0.5) / h as f32 - 0.5,
            ];
            let span = dir[0].abs() + dir[1].abs();
            let q = (p[0] * dir[0] + p[1] * dir[1] + span / 2.0) / span;
            if softness > 0.0 {
                ((t * (1.0 + softness) - q) / softness).clamp(0.0, 1.0)
            } else if q < t {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// The per-pixel loop of the module docs.
struct Kernel<'a> {
    plan: &'a FramePlan,
    layers: &'a [Prepared<'a>],
    start: usize,
}

impl Kernel<'_> {
    #[inline]
    fn pixel(&self, x: usize, y: usize) -> [f32; 4] {
        let plan = self.plan;
        let mut acc = plan.background;
        let mut i = self.start;
        let n = self.layers.len();
        while i < n {
            let mut c = self.layers[i].shade(x, y, plan.transfer);
            let mut mode = self.layers[i].op.blend;
            if let Some(m) = self.layers.get(i + 1).and_then(|l| l.op.mix) {
                let d = self.layers[i + 1].shade(x, y, plan.transfer);
                let t = mix_factor(m.kind, m.t, x, y, plan.width, plan.height);
                c = match m.kind {
                    MixKind::Dissolve | MixKind::Wipe { .. } => {
                        std::array::from_fn(|k| c[k] * (1.0 - t) + d[k] * t)
                    }
                    MixKind::Dip(col) => {
                        if t < 0.5 {
                            std::array::from_fn(|k| c[k] * (1.0 - 2.0 * t) + col[k] * 2.0 * t)
                        } else {
                            std::array::from_fn(|k| {
                                col[k] * (2.0 - 2.0 * t) + d[k] * (2.0 * t - 1.0)
                            })
                        }
                    }
                };
                mode = self.layers[i + 1].op.blend;
                i += 1;
            }
            acc = blend(acc, c, mode);
            i += 1;
        }
        acc
    }
}

/// Scratch rows of one band: a layer's shaded row and its mix partner's.
struct Rows {
    c: Vec<[f32; 4]>,
    d: Vec<[f32; 4]>,
}

impl Rows {
    fn new(w: usize) -> Self {
        Rows {
            c: vec![[0.0; 4]; w],
            d: vec![[0.0; 4]; w],
        }
    }
}

impl Kernel<'_> {
    /// [`Kernel::pixel`] for a whole row at once: each layer shaded into a
    /// scratch row, then mixed and blended, with the same arithmetic per
    /// pixel. A Normal blend of a transparent `[0; 4]` leaves the pixel as
    /// it was (`0 + b·(1 − 0)` is `b`), so it runs over the layer's span
    /// only.
    fn row(&self, y: usize, acc: &mut [[f32; 4]], s: &mut Rows, colours: &mut [Colour<'_>]) {
        let plan = self.plan;
        let w = acc.len();
        let mut i = self.start;
        let n = self.layers.len();
        // The first layer drawn Normal over the background alone (no mix
        // partner) is shaded straight into the row.
        let direct = self.layers.get(i).is_some_and(|l| {
            l.op.blend == BlendMode::Normal
                && self.layers.get(i + 1).is_none_or(|u| u.op.mix.is_none())
        });
        if !direct {
            acc.fill(plan.background);
        }
        while i < n {
            let l = &self.layers[i];
            if direct && i == self.start {
                // Over the background alone: shaded straight into the row
                // and blended there (a pixel outside the layer's span is
                // `[0; 4]`, and `0 + b·(1 − 0)` is `b`), instead of filling
                // the row, shading beside it and blending across; a plain
                // shifted layer is blended straight from its source row.
                let bg = plan.background;
                if l.over_row(y, acc, bg) {
                    i += 1;
                    continue;
                }
                l.shade_row(y, acc, &mut colours[i]);
                for b in acc.iter_mut() {
                    let k = 1.0 - b[3];
                    *b = [
                        b[0] + bg[0] * k,
                        b[1] + bg[1] * k,
                        b[2] + bg[2] * k,
                        b[3] + bg[3] * k,
                    ];
                }
                i += 1;
                continue;
            }
            let mut span = l.shade_row(y, &mut s.c, &mut colours[i]);
            let mut mode = l.op.blend;
            if let Some(m) = self.layers.get(i + 1).and_then(|l| l.op.mix) {
                let u = &self.layers[i + 1];
                u.shade_row(y, &mut s.d, &mut colours[i + 1]);
                for (x, (c, d)) in s.c.iter_mut().zip(&s.d).enumerate() {
                    let t = mix_factor(m.kind, m.t, x, y, plan.width, plan.height);
                    *c = match m.kind {
                        MixKind::Dissolve | MixKind::Wipe { .. } => {
                            std::array::from_fn(|k| c[k] * (1.0 - t) + d[k] * t)
                        }
                        MixKind::Dip(col) => {
                            if t < 0.5 {
                                std::array::from_fn(|k| c[k] * (1.0 - 2.0 * t) + col[k] * 2.0 * t)
                            } else {
                                std::array::from_fn(|k| {
                                    col[k] * (2.0 - 2.0 * t) + d[k] * (2.0 * t - 1.0)
                                })
                            }
                        }
                    };
                }
                span = (0, w);
                mode = u.op.blend;
                i += 1;
            }
            if mode == BlendMode::Normal {
                let (a, b) = span;
                for (b, s) in acc[a..b].iter_mut().zip(&s.c[a..b]) {
                    let k = 1.0 - s[3];
                    *b = [
                        s[0] + b[0] * k,
                        s[1] + b[1] * k,
                        s[2] + b[2] * k,
                        s[3] + b[3] * k,
                    ];
                }
            } else {
                for (b, s) in acc.iter_mut().zip(&s.c) {
                    *b = blend(*b, *s, mode);
                }
            }
            i += 1;
        }
    }
}

impl Renderer for CpuRenderer {
    fn name(&self) -> String {
        "cpu".to_owned()
    }

    fn wants_graded_sources(&self) -> bool {
        true
    }

    fn render(
        &mut self,
        plan: &FramePlan,
        sources: &[Arc<LinearImage>],
        outputs: &[OutputFormat],
    ) -> Result<Vec<Yuv>, String> {
        if let Some(src) = self.passthrough(plan, sources) {
            return Ok(outputs
                .iter()
                .map(|f| convert::convert(src, self.canvas_primaries, f))
                .collect());
        }
        let size = (plan.width, plan.height);
        if let Some(mut fused) = convert::Fused::new(self.canvas_primaries, outputs, size) {
            // No canvas at all: each batch of rows is drawn into its
            // thread's scratch and converted from there.
            self.draw_into(plan, sources, None, Some(&mut fused));
            return Ok(fused.into_pictures());
        }
        // The canvas is the renderer's own here: its buffer serves the next
        // frame too (33 MB at 1080p, not reallocated and faulted in again).
        let mut canvas = self.spare.take().unwrap_or_else(|| LinearImage::new(0, 0));
        self.draw_into(plan, sources, Some(&mut canvas), None);
        let pictures = outputs
            .iter()
            .map(|f| convert::convert(&canvas, self.canvas_primaries, f))
            .collect();
        self.spare = Some(canvas);
        Ok(pictures)
    }

    fn render_linear(
        &mut self,
        plan: &FramePlan,
        sources: &[Arc<LinearImage>],
    ) -> Result<LinearImage, String> {
        Ok(self.draw(plan, sources))
    }

    fn render_with_canvas(
        &mut self,
        plan: &FramePlan,
        sources: &[Arc<LinearImage>],
        outputs: &[OutputFormat],
    ) -> Result<(Vec<Yuv>, Arc<LinearImage>), String> {
        if let Some(src) = self.passthrough(plan, sources) {
            let pictures = outputs
                .iter()
                .map(|f| convert::convert(src, self.canvas_primaries, f))
                .collect();
            return Ok((pictures, src.clone()));
        }
        let mut canvas = match self.lent.take().map(Arc::try_unwrap) {
            Some(Ok(mine)) => mine,
            _ => LinearImage::new(0, 0),
        };
        let size = (plan.width, plan.height);
        // The formats of the canvas's size are converted as it is drawn;
        // the others (scaled) from the finished canvas.
        let same: Vec<OutputFormat> = outputs
            .iter()
            .filter(|f| convert::Fused::fits(f, size))
            .copied()
            .collect();
        let mut fused = convert::Fused::new(self.canvas_primaries, &same, size);
        self.draw_into(plan, sources, Some(&mut canvas), fused.as_mut());
        let mut done: Vec<(OutputFormat, Yuv)> = match fused {
            Some(f) => same.into_iter().zip(f.into_pictures()).collect(),
            None => Vec::new(),
        };
        let pictures = outputs
            .iter()
            .map(|f| match done.iter().position(|(g, _)| g == f) {
                Some(i) => done.swap_remove(i).1,
                None => convert::convert(&canvas, self.canvas_primaries, f),
            })
            .collect();
        let canvas = Arc::new(canvas);
        self.lent = Some(canvas.clone());
        Ok((pictures, canvas))
    }
}

/// A plan that draws `canvas` as it is (one untransformed layer over a
/// transparent background): how a canvas made elsewhere (the compositor of
/// manifest v1) reaches a [`Renderer`]'s conversion. `generation` tells
/// renderers that cache sources by key that the pixels are new (the frame
/// number will do).
pub fn copy_plan(canvas: &LinearImage, transfer: Transfer, generation: u64) -> FramePlan {
    FramePlan {
        width: canvas.width,
        height: canvas.height,
        background: [0.0; 4],
        layers: vec![LayerOp {
            source: 0,
            inverse: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            crop: [0.0, 0.0, canvas.width as f32, canvas.height as f32],
            opacity: 1.0,
            blend: BlendMode::Normal,
            colour: ColourOps::IDENTITY,
            mix: None,
        }],
        sources: vec![SourceKey {
            id: (usize::MAX, usize::MAX),
            generation,
        }],
        transfer,
        luts: Arc::new(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::colour::{eotf, oetf};
    use crate::render::plan::Mix;

    fn layer(source: usize, w: u32, h: u32) -> LayerOp {
        LayerOp {
            source,
            inverse: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            crop: [0.0, 0.0, w as f32, h as f32],
            opacity: 1.0,
            blend: BlendMode::Normal,
            colour: ColourOps::IDENTITY,
            mix: None,
        }
    }

    fn plan(
        w: u32,
        h: u32,
        background: [f32; 4],
        layers: Vec<LayerOp>,
        n_sources: usize,
    ) -> FramePlan {
        FramePlan {
            width: w,
            height: h,
            background,
            layers,
            sources: (0..n_sources)
                .map(|i| SourceKey {
                    id: (0, i),
                    generation: 0,
                })
                .collect(),
            transfer: Transfer::Bt709,
            luts: Arc::new(Vec::new()),
        }
    }

    fn solid(w: u32, h: u32, c: [f32; 4]) -> Arc<LinearImage> {
        Arc::new(LinearImage::filled(w, h, c))
    }

    /// A source whose pixel (x, y) is `[x, y, x·y/100, 1]` (each pixel tells
    /// where it came from).
    fn coords(w: u32, h: u32) -> Arc<LinearImage> {
        let mut img = LinearImage::new(w, h);
        for (i, p) in img.data.iter_mut().enumerate() {
            let (x, y) = ((i % w as usize) as f32, (i / w as usize) as f32);
            *p = [x, y, x * y / 100.0, 1.0];
        }
        Arc::new(img)
    }

    fn draw(p: &FramePlan, s: &[Arc<LinearImage>]) -> LinearImage {
        let fast = CpuRenderer::new(Primaries::Bt709).draw(p, s);
        let scalar = CpuRenderer::without_vector_kernels(Primaries::Bt709).draw(p, s);
        let slow = CpuRenderer::without_fast_paths(Primaries::Bt709).draw(p, s);
        // Bit for bit (a NaN equals itself here).
        let bits = |i: &LinearImage| {
            let v: Vec<[u32; 4]> = i.data.iter().map(|p| p.map(f32::to_bits)).collect();
            (i.width, i.height, v)
        };
        assert_eq!(
            bits(&scalar),
            bits(&slow),
            "fast paths must not change a value"
        );
        assert_eq!(
            bits(&fast),
            bits(&slow),
            "the vector kernel must not change a value"
        );
        // Into a canvas that held another frame (as `render` reuses its
        // own): every pixel is drawn, none left over.
        let mut reused = LinearImage::filled(p.width, p.height, [f32::NAN, 7.0, -1.0, 0.5]);
        CpuRenderer::new(Primaries::Bt709).draw_into(p, s, Some(&mut reused), None);
        assert_eq!(
            bits(&reused),
            bits(&slow),
            "a reused canvas must not show through"
        );
        fast
    }

    fn close(a: [f32; 4], b: [f32; 4], tol: f32) -> bool {
        (0..4).all(|i| (a[i] - b[i]).abs() <= tol)
    }

    #[test]
    fn blend_modes_follow_their_formulas() {
        let b = [0.2, 0.4, 0.1, 0.8];
        let s = [0.3, 0.1, 0.25, 0.5];
        let (cs, cb) = ([0.6f32, 0.2, 0.5], [0.25f32, 0.5, 0.125]);
        let w3c = |f: &dyn Fn(f32, f32) -> f32| {
            let mut o = [0.0; 4];
            for i in 0..3 {
                o[i] = s[i] * (1.0 - b[3]) + b[i] * (1.0 - s[3]) + s[3] * b[3] * f(cb[i], cs[i]);
            }
            o[3] = s[3] + b[3] * (1.0 - s[3]);
            o
        };
        let want = [
            (
                BlendMode::Normal,
                [
                    0.3 + 0.2 * 0.5,
                    0.1 + 0.4 * 0.5,
                    0.25 + 0.1 * 0.5,
                    0.5 + 0.8 * 0.5,
                ],
            ),
            (BlendMode::Add, [0.5, 0.5, 0.35, 1.0]),
            (BlendMode::Multiply, w3c(&|b, s| b * s)),
            (BlendMode::Screen, w3c(&|b, s| b + s - b * s)),
        ];
        for (mode, want) in want {
            let mut l = layer(0, 4, 4);
            l.blend = mode;
            let out = draw(&plan(4, 4, b, vec![l], 1), &[solid(4, 4, s)]);
            assert!(
                out.data.iter().all(|p| close(*p, want, 1e-6)),
                "{mode:?}: {:?} vs {want:?}",
                out.data[0]
            );
        }
    }

    fn pair(kind: MixKind, t: f32) -> (FramePlan, Vec<Arc<LinearImage>>) {
        let a = [0.8, 0.2, 0.1, 1.0];
        let b = [0.0, 0.4, 0.6, 1.0];
        let mut l1 = layer(1, 8, 8);
        l1.mix = Some(Mix { kind, t });
        (
            plan(8, 8, [0.0; 4], vec![layer(0, 8, 8), l1], 2),
            vec![solid(8, 8, a), solid(8, 8, b)],
        )
    }

    #[test]
    fn dissolve_dip_and_wipes() {
        let (p, s) = pair(MixKind::Dissolve, 0.5);
        let out = draw(&p, &s);
        assert!(out
            .data
            .iter()
            .all(|px| close(*px, [0.4, 0.3, 0.35, 1.0], 1e-6)));
        let k = [0.1, 0.1, 0.1, 1.0];
        let (p, s) = pair(MixKind::Dip(k), 0.5);
        assert!(draw(&p, &s).data.iter().all(|px| close(*px, k, 1e-6)));
        // A hard wipe at t = 0.5: the incoming clip on the side the edge
        // starts from, split at the middle.
        let (a, b) = (s[0].data[0], s[1].data[0]);
        for (dir, along_x) in [([1.0, 0.0], true), ([0.0, 1.0], false)] {
            let (p, s) = pair(MixKind::Wipe { dir, softness: 0.0 }, 0.5);
            let out = draw(&p, &s);
            for y in 0..8 {
                for x in 0..8 {
                    let pos = if along_x { x } else { y };
                    let want = if pos < 4 { b } else { a };
                    assert_eq!(out.data[y * 8 + x], want, "dir {dir:?} ({x}, {y})");
                }
            }
        }
        // A soft wipe ramps across its softness.
        let (p, s) = pair(
            MixKind::Wipe {
                dir: [1.0, 0.0],
                softness: 0.5,
            },
            0.5,
        );
        let out = draw(&p, &s);
        let first = out.data[0];
        let last = out.data[7];
        assert!(
            close(first, b, 1e-6) && close(last, a, 1e-6),
            "{first:?} {last:?}"
        );
        assert!(out.data[3][2] > a[2] && out.data[3][2] < b[2]);
    }

    #[test]
    fn geometry_lands_on_the_expected_pixels() {
        let bg = [0.0, 0.0, 0.0, 0.0];
        let src = coords(8, 8);
        // Translate by (+3, +2): canvas (x, y) shows source (x − 3, y − 2).
        let mut l = layer(0, 8, 8);
        l.inverse = [1.0, 0.0, -3.0, 0.0, 1.0, -2.0];
        let out = draw(&plan(8, 8, bg, vec![l], 1), std::slice::from_ref(&src));
        for y in 0..8 {
            for x in 0..8 {
                let want = if x >= 3 && y >= 2 {
                    src.data[(y - 2) * 8 + x - 3]
                } else {
                    bg
                };
                assert_eq!(out.data[y * 8 + x], want, "({x}, {y})");
            }
        }
        // Scale ×2 about the origin: bilinear between texel centres, clamped
        // at the edges.
        let mut l = layer(0, 8, 8);
        l.inverse = [0.5, 0.0, 0.0, 0.0, 0.5, 0.0];
        let out = draw(&plan(16, 16, bg, vec![l], 1), std::slice::from_ref(&src));
        for x in 0..16 {
            let want = (x as f32 / 2.0 - 0.25).clamp(0.0, 7.0);
            assert!(
                (out.data[5 * 16 + x][0] - want).abs() < 1e-6,
                "x {x}: {:?}",
                out.data[5 * 16 + x]
            );
        }
        // Rotate 90° clockwise: canvas (x, y) shows source (y, 7 − x).
        let mut l = layer(0, 8, 8);
        l.inverse = [0.0, 1.0, 0.0, -1.0, 0.0, 8.0];
        let out = draw(&plan(8, 8, bg, vec![l], 1), std::slice::from_ref(&src));
        for y in 0..8 {
            for x in 0..8 {
                assert_eq!(out.data[y * 8 + x], src.data[(7 - x) * 8 + y], "({x}, {y})");
            }
        }
        // Crop: outside it the layer is transparent; inside, bilinear taps
        // clamp to the crop's texels.
        let mut l = layer(0, 8, 8);
        l.crop = [2.0, 1.0, 6.0, 7.0];
        let out = draw(&plan(8, 8, bg, vec![l], 1), std::slice::from_ref(&src));
        for y in 0..8 {
            for x in 0..8 {
                let inside = (2..6).contains(&x) && (1..7).contains(&y);
                let want = if inside { src.data[y * 8 + x] } else { bg };
                assert_eq!(out.data[y * 8 + x], want, "({x}, {y})");
            }
        }
        let mut l = layer(0, 8, 8);
        l.inverse = [0.5, 0.0, 0.0, 0.0, 0.5, 0.0];
        l.crop = [1.0, 0.0, 3.0, 8.0];
        let out = draw(&plan(16, 16, bg, vec![l], 1), &[src]);
        // Canvas x = 2: u = 1.25, inside; its left tap (texel 0) clamps to
        // texel 1.
        assert_eq!(out.data[16 * 4 + 2][0], 1.0);
        assert_eq!(out.data[16 * 4 + 1], bg);
        assert_eq!(out.data[16 * 4 + 6], bg);
    }

    fn graded(ops: ColourOps, c: [f32; 4], luts: Vec<Lut3d>) -> [f32; 4] {
        let mut l = layer(0, 2, 2);
        l.colour = ops;
        let mut p = plan(2, 2, [0.0; 4], vec![l], 1);
        p.luts = Arc::new(luts);
        draw(&p, &[solid(2, 2, c)]).data[0]
    }

    #[test]
    fn colour_operations() {
        let c = [0.1, 0.2, 0.3, 0.5];
        // Exposure +1 doubles linear values (through the OETF and back).
        let ops = ColourOps {
            identity: false,
            exposure_gain: 2.0,
            ..ColourOps::IDENTITY
        };
        let o = graded(ops, c, vec![]);
        assert!(close(o, [0.2, 0.4, 0.6, 0.5], 1e-5), "{o:?}");
        // Saturation 0: grey (equal channels), alpha kept.
        let ops = ColourOps {
            identity: false,
            saturation: 0.0,
            ..ColourOps::IDENTITY
        };
        let o = graded(ops, c, vec![]);
        assert!(
            (o[0] - o[1]).abs() < 1e-7 && (o[1] - o[2]).abs() < 1e-7 && o[3] == 0.5,
            "{o:?}"
        );
        // The grey is the BT.709 luma of the encoded colour.
        let e = c.map(|v| oetf(Transfer::Bt709, v / 0.5));
        let y = 0.2126 * e[0] + 0.7152 * e[1] + 0.0722 * e[2];
        assert!((o[0] - eotf(Transfer::Bt709, y) * 0.5).abs() < 1e-6);
        // An identity LUT changes nothing.
        let ops = ColourOps {
            identity: false,
            lut: Some(0),
            ..ColourOps::IDENTITY
        };
        let o = graded(ops, c, vec![Lut3d::from_fn(17, |c| c)]);
        assert!(close(o, c, 1e-5), "{o:?}");
        // A channel-swap LUT swaps (encoded values, so linear ones too).
        let ops = ColourOps {
            identity: false,
            lut: Some(0),
            ..ColourOps::IDENTITY
        };
        let o = graded(ops, c, vec![Lut3d::from_fn(2, |[r, g, b]| [b, r, g])]);
        assert!(close(o, [0.3, 0.1, 0.2, 0.5], 1e-5), "{o:?}");
        // Lift/gamma/gain on encoded values: gain 0.5 halves them.
        let ops = ColourOps {
            identity: false,
            gain: [0.5; 3],
            ..ColourOps::IDENTITY
        };
        let o = graded(ops, [1.0, 1.0, 1.0, 1.0], vec![]);
        assert!((o[0] - eotf(Transfer::Bt709, 0.5)).abs() < 1e-6, "{o:?}");
        // Opacity scales all four components.
        let mut l = layer(0, 2, 2);
        l.opacity = 0.25;
        let out = draw(&plan(2, 2, [0.0; 4], vec![l], 1), &[solid(2, 2, c)]);
        assert!(close(out.data[0], c.map(|v| v * 0.25), 1e-7));
    }

    /// A source of 8-bit-like values (few distinct per channel, as decoded
    /// video gives the memo) with opaque, translucent and clear pixels.
    fn busy(w: u32, h: u32, seed: u32) -> Arc<LinearImage> {
        let mut img = LinearImage::new(w, h);
        for (i, p) in img.data.iter_mut().enumerate() {
            let k = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
            let code = |s: u32| eotf(Transfer::Bt709, ((k >> s) & 255) as f32 / 255.0);
            let a = match k % 7 {
                0 => 0.0,
                1 => 0.5,
                2 => 0.25,
                _ => 1.0,
            };
            *p = [code(0) * a, code(8) * a, code(16) * a, a];
        }
        Arc::new(img)
    }

    /// Mostly opaque pixels, with what sends a block of eight to the
    /// scalar code sprinkled in: partial alpha, values past 1 (up to the
    /// largest finite), below 0, −0. (Not NaN or infinity: no source holds
    /// them, and the general kernel's bilinear weight of 0 does not cancel
    /// them in a neighbour, where the row path's direct fetch ignores it.)
    fn footage(w: u32, h: u32) -> Arc<LinearImage> {
        let mut img = LinearImage::new(w, h);
        for (i, p) in img.data.iter_mut().enumerate() {
            let k = (i as u32).wrapping_mul(2_654_435_761);
            let code = |s: u32| eotf(Transfer::Bt709, ((k >> s) & 255) as f32 / 255.0);
            *p = [code(0), code(8), code(16), 1.0];
            match i % 211 {
                7 => *p = p.map(|v| v * 0.5),
                50 => p[1] = 1.3,
                90 => p[0] = -0.25,
                130 => p[2] = -0.0,
                170 => p[1] = f32::MAX,
                _ => {}
            }
        }
        Arc::new(img)
    }

    #[test]
    fn the_vector_grade_gives_the_scalar_values() {
        let (w, h) = (203u32, 9u32);
        let src = vec![footage(w, h)];
        let inside = Lut3d::from_fn(17, |[r, g, b]| [r * r, (g + b) / 2.0, b.sqrt()]);
        // Outputs outside [0, 1]: the EOTF's formula, not its table.
        let outside = Lut3d::from_fn(9, |[r, g, b]| [r * 1.3 - 0.1, g, 1.0 - b * 1.1]);
        for exposure_gain in [1.0, 0.8, 1.25] {
            for lut in [None, Some(0), Some(1)] {
                let grade = ColourOps {
                    identity: false,
                    exposure_gain,
                    lift: [0.02, 0.0, -0.01],
                    gamma: [1.0; 3],
                    gain: [1.0, 0.95, 1.05],
                    saturation: 1.2,
                    lut,
                };
                let mut full = layer(0, w, h);
                full.colour = grade;
                // A span that starts off the blocks of eight.
                let mut shifted = full;
                shifted.inverse = [1.0, 0.0, -5.0, 0.0, 1.0, 1.0];
                shifted.crop = [3.0, 0.0, 150.0, 8.0];
                shifted.opacity = 0.7;
                for layers in [vec![full], vec![full, shifted]] {
                    let mut p = plan(w, h, [0.0; 4], layers, 1);
                    p.luts = Arc::new(vec![inside.clone(), outside.clone()]);
                    draw(&p, &src);
                }
            }
        }
    }

    #[test]
    fn the_row_path_gives_the_general_kernels_values_for_every_kind_of_layer() {
        let (w, h) = (67u32, 29u32);
        let grade = ColourOps {
            identity: false,
            exposure_gain: 1.5,
            lift: [0.02, 0.0, -0.01],
            gamma: [1.0, 1.1, 0.9],
            gain: [1.0, 0.95, 1.05],
            saturation: 1.2,
            lut: Some(0),
        };
        let lut = Lut3d::from_fn(17, |[r, g, b]| [r * r, (g + b) / 2.0, b.sqrt()]);
        let sources = vec![busy(w, h, 1), busy(w, h, 2), busy(40, 20, 3)];
        // Full frame with a LUT; shifted by whole pixels and cropped;
        // scaled and rotated; then each blend mode, and each mix.
        let mut full = layer(0, w, h);
        full.colour = grade;
        let mut shifted = layer(1, w, h);
        shifted.inverse = [1.0, 0.0, -5.0, 0.0, 1.0, 3.0];
        shifted.crop = [2.0, 1.0, 50.0, 27.0];
        shifted.colour = ColourOps { lut: None, ..grade };
        shifted.opacity = 0.7;
        let mut scaled = layer(2, 40, 20);
        scaled.inverse = [0.6, 0.1, 1.5, -0.1, 0.6, 2.25];
        scaled.colour = grade;
        for mode in [
            BlendMode::Normal,
            BlendMode::Add,
            BlendMode::Multiply,
            BlendMode::Screen,
        ] {
            let mut top = scaled;
            top.blend = mode;
            let mut p = plan(w, h, [0.1, 0.2, 0.3, 0.9], vec![full, shifted, top], 3);
            p.luts = Arc::new(vec![lut.clone()]);
            draw(&p, &sources);
        }
        // A plain layer moved by whole pixels at the bottom (blended
        // straight from its source rows over the background), its crop
        // inside the source and reaching past its edges (clamped texels),
        // over a translucent and a transparent background.
        let mut plain = layer(1, w, h);
        plain.inverse = [1.0, 0.0, -5.0, 0.0, 1.0, 3.0];
        for crop in [[2.0, 1.0, 50.0, 27.0], [-3.0, -2.0, 70.0, 31.0]] {
            plain.crop = crop;
            for bg in [[0.1, 0.2, 0.3, 0.9], [0.0; 4]] {
                let mut p = plan(w, h, bg, vec![plain, scaled], 3);
                p.luts = Arc::new(vec![lut.clone()]);
                draw(&p, &sources);
            }
        }
        // Scaled without rotation (the column taps): graded and
        // translucent, its crop inside the source and reaching past its
        // edges, mirrored across, and as the bottom layer.
        let mut pip = layer(2, 40, 20);
        for (inverse, crop) in [
            ([0.6, 0.0, 1.5, 0.0, 0.6, 2.25], [1.0, 0.5, 35.0, 18.0]),
            ([0.7, 0.0, -4.3, 0.0, 1.3, -3.1], [-3.0, -2.0, 45.0, 25.0]),
            ([-0.6, 0.0, 39.5, 0.0, 0.55, 0.3], [0.0, 0.0, 40.0, 20.0]),
        ] {
            pip.inverse = inverse;
            pip.crop = crop;
            pip.opacity = 0.6;
            pip.colour = grade;
            for layers in [vec![full, pip], vec![pip, full]] {
                let mut p = plan(w, h, [0.1, 0.2, 0.3, 0.9], layers, 3);
                p.luts = Arc::new(vec![lut.clone()]);
                draw(&p, &sources);
            }
        }
        for kind in [
            MixKind::Dissolve,
            MixKind::Dip([0.1, 0.0, 0.2, 1.0]),
            MixKind::Wipe {
                dir: [0.6, 0.8],
                softness: 0.2,
            },
        ] {
            for t in [0.3, 0.7] {
                let mut incoming = shifted;
                incoming.mix = Some(Mix { kind, t });
                let mut p = plan(w, h, [0.0; 4], vec![full, incoming, scaled], 3);
                p.luts = Arc::new(vec![lut.clone()]);
                draw(&p, &sources);
            }
        }
    }

    /// Formats of the canvas's size are converted batch by batch as the
    /// canvas is drawn (`render`: with no canvas kept; `render_with_canvas`:
    /// beside it): the codes of converting the finished canvas, for 4:2:0
    /// with a last chroma row of one luma row, 10-bit 4:2:2, alpha, other
    /// primaries; a scaled format beside them goes through the canvas.
    #[test]
    fn converting_while_drawing_gives_the_codes_of_the_finished_canvas() {
        use deliver_plugin_api::abi::pix;
        for (w, h) in [(67u32, 37u32), (64, 32)] {
            let lut = Lut3d::from_fn(9, |[r, g, b]| [g, b, r]);
            let mut full = layer(0, w, h);
            full.colour = ColourOps {
                identity: false,
                saturation: 1.3,
                lut: Some(0),
                ..ColourOps::IDENTITY
            };
            let mut pip = layer(1, 40, 20);
            pip.inverse = [0.6, 0.1, 1.5, -0.1, 0.6, 2.25];
            pip.opacity = 0.8;
            let mut p = plan(w, h, [0.1, 0.2, 0.3, 0.9], vec![full, pip], 2);
            p.luts = Arc::new(vec![lut]);
            let sources = vec![busy(w, h, 1), busy(40, 20, 2)];
            let f = |w: u32, h: u32, pix_fmt: u32, primaries: u32, range: u32, dither: bool| {
                OutputFormat {
                    width: w,
                    height: h,
                    pix_fmt,
                    primaries,
                    transfer: 1,
                    matrix: if primaries == 9 { 9 } else { 1 },
                    range,
                    dither,
                }
            };
            let same = [
                f(w, h, pix::YUV420P, 1, 1, true),
                f(w, h, pix::YUV422P10, 1, 1, false),
                f(w, h, pix::YUVA444P10, 1, 2, true),
                f(w, h, pix::YUV420P10, 9, 1, true),
            ];
            let mut all = same.to_vec();
            all.insert(1, f(w / 2, h / 2, pix::YUV420P, 1, 1, true));
            let canvas = draw(&p, &sources);
            let want = |formats: &[OutputFormat]| -> Vec<Yuv> {
                formats
                    .iter()
                    .map(|f| convert::convert(&canvas, Primaries::Bt709, f))
                    .collect()
            };
            for mut r in [
                CpuRenderer::new(Primaries::Bt709),
                CpuRenderer::without_vector_kernels(Primaries::Bt709),
            ] {
                assert!(convert::Fused::new(Primaries::Bt709, &same, (w, h)).is_some());
                assert!(convert::Fused::new(Primaries::Bt709, &all, (w, h)).is_none());
                assert_eq!(r.render(&p, &sources, &same).unwrap(), want(&same));
                assert_eq!(r.render(&p, &sources, &all).unwrap(), want(&all));
                let (pictures, drawn) = r.render_with_canvas(&p, &sources, &all).unwrap();
                assert_eq!(pictures, want(&all));
                let bits = |i: &LinearImage| -> Vec<[u32; 4]> {
                    i.data.iter().map(|p| p.map(f32::to_bits)).collect()
                };
                assert_eq!(bits(&drawn), bits(&canvas));
                // A canvas still held is never drawn over; one let go is
                // reused, every pixel drawn again.
                let mut other = p.clone();
                other.background = [0.0; 4];
                let (_, second) = r.render_with_canvas(&other, &sources, &all).unwrap();
                assert_eq!(bits(&drawn), bits(&canvas));
                assert_ne!(bits(&second), bits(&canvas));
                drop((drawn, second));
                let (pictures, again) = r.render_with_canvas(&p, &sources, &all).unwrap();
                assert_eq!(pictures, want(&all));
                assert_eq!(bits(&again), bits(&canvas));
            }
        }
    }

    #[test]
    fn an_opaque_full_layer_hides_those_below_and_a_plain_copy_converts_its_source() {
        let under = coords(8, 8);
        let over = solid(8, 8, [0.5, 0.25, 0.125, 1.0]);
        let mut top = layer(1, 8, 8);
        top.colour = ColourOps {
            identity: false,
            saturation: 0.5,
            ..ColourOps::IDENTITY
        };
        let p = plan(8, 8, [1.0; 4], vec![layer(0, 8, 8), top], 2);
        let mut r = CpuRenderer::new(Primaries::Bt709);
        assert_eq!(r.first_visible(&p, &[under.clone(), over.clone()]), 1);
        draw(&p, &[under.clone(), over]);
        // A plain copy converts the source itself.
        let canvas = coords(8, 8);
        let f = OutputFormat {
            width: 8,
            height: 8,
            pix_fmt: deliver_plugin_api::abi::pix::YUV420P10,
            primaries: 1,
            transfer: 1,
            matrix: 1,
            range: 1,
            dither: true,
        };
        let p = copy_plan(&canvas, Transfer::Bt709, 7);
        let mut fast = CpuRenderer::new(Primaries::Bt709);
        assert!(fast
            .passthrough(&p, std::slice::from_ref(&canvas))
            .is_some());
        let a = fast
            .render(&p, std::slice::from_ref(&canvas), &[f])
            .unwrap();
        let b = CpuRenderer::without_fast_paths(Primaries::Bt709)
            .render(&p, std::slice::from_ref(&canvas), &[f])
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0], convert::convert(&canvas, Primaries::Bt709, &f));
        assert_eq!(
            fast.render_linear(&p, std::slice::from_ref(&canvas))
                .unwrap(),
            *canvas
        );
    }
}
