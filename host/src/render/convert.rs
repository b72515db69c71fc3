//! The conversion of the linear canvas to a deliverable's picture format:
//! steps 1–8 of [`OutputFormat`] (resample, straight colour, primaries,
//! OETF, Y'CbCr matrix and range, chroma subsampling, quantization with an
//! ordered dither, alpha). This is the reference the GPU twin follows.
//!
//! Two documented choices the format's text leaves open:
//! - the resampler clamps tap indices to the image (edge pixels repeat), and
//!   divides by the sum of the taps' weights;
//! - the OETF is read from a table of 4097 entries indexed by `L^(1/4)` and
//!   interpolated linearly: within 2·10⁻⁵ of the exact curve over `[0, 1]`
//!   for every transfer (a test holds it there), a fiftieth of a 10-bit
//!   code, and several times faster than `powf` per channel per pixel.
//!
//! Tags this module cannot honour (see [`check`]) fall back to: the canvas
//! primaries (no conversion), the BT.709 curve, the BT.709 matrix, limited
//! range. Jobs refuse such formats before they start.

use crate::manifest::model::{Primaries, Transfer};
use crate::render::colour::{
    self, matrix_coefficients, primaries_from_ffmpeg, transfer_from_ffmpeg,
};
use crate::render::image::{plane_size, Yuv};
use crate::render::plan::{LinearImage, OutputFormat};
use deliver_plugin_api::abi::{self, pix};
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// The 8×8 ordered-dither (Bayer) matrix, indexed `[y mod 8][x mod 8]`.
pub const BAYER8: [[u8; 8]; 8] = [
    [0, 32, 8, 40, 2, 34, 10, 42],
    [48, 16, 56, 24, 50, 18, 58, 26],
    [12, 44, 4, 36, 14, 46, 6, 38],
    [60, 28, 52, 20, 62, 30, 54, 22],
    [3, 35, 11, 43, 1, 33, 9, 41],
    [51, 19, 59, 27, 49, 17, 57, 25],
    [15, 47, 7, 39, 13, 45, 5, 37],
    [63, 31, 55, 23, 61, 29, 53, 21],
];

/// The dither threshold added at sample `(x, y)` of a plane before rounding:
/// `(bayer[y][x] + 0.5) / 64 − 0.5`, in (−0.5, 0.5).
#[inline]
pub fn dither_threshold(x: usize, y: usize) -> f32 {
    (BAYER8[y & 7][x & 7] as f32 + 0.5) / 64.0 - 0.5
}

/// Why a format cannot be converted to exactly as tagged, if it cannot.
///
/// # Errors
/// A pixel format that is not planar Y'CbCr, or colour tags this module
/// does not implement, named with the value.
pub fn check(f: &OutputFormat) -> Result<(), String> {
    pix::layout(f.pix_fmt)
        .filter(|l| l.planes >= 3)
        .ok_or_else(|| format!("pixel format {} is not planar Y'CbCr", f.pix_fmt))?;
    if primaries_from_ffmpeg(f.primaries).is_none() {
        return Err(format!(
            "colour primaries {} are not supported",
            f.primaries
        ));
    }
    if transfer_from_ffmpeg(f.transfer).is_none() {
        return Err(format!("transfer {} is not supported", f.transfer));
    }
    if matrix_coefficients(f.matrix).is_none() {
        return Err(format!("matrix {} is not supported", f.matrix));
    }
    if f.range != 1 && f.range != 2 {
        return Err(format!("range {} is not limited (1) or full (2)", f.range));
    }
    if f.width == 0 || f.height == 0 {
        return Err(format!("size {}x{} is empty", f.width, f.height));
    }
    Ok(())
}

/// Samples of the OETF table (indexed by `L^(1/4)`, `L` in `[0, 1]`: the
/// pure powers' infinite slope at black becomes a finite one).
pub(crate) const OETF_STEPS: usize = 4096;

/// One table per transfer, made on first use.
type Tables = [OnceLock<Vec<f32>>; 5];

const fn tables() -> Tables {
    [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ]
}

fn table_of(
    tables: &'static Tables,
    t: Transfer,
    make: impl FnOnce() -> Vec<f32>,
) -> &'static [f32] {
    let i = match t {
        Transfer::Bt709 => 0,
        Transfer::Srgb => 1,
        Transfer::Linear => 2,
        Transfer::Gamma22 => 3,
        Transfer::Gamma28 => 4,
    };
    tables[i].get_or_init(make)
}

pub(crate) fn oetf_table(t: Transfer) -> &'static [f32] {
    static TABLES: Tables = tables();
    table_of(&TABLES, t, || {
        (0..=OETF_STEPS)
            .map(|k| {
                let s = k as f64 / OETF_STEPS as f64;
                oetf64(t, s.powi(4)) as f32
            })
            .collect()
    })
}

/// The OETFs in f64, for the table (the same formulas as
/// `colour::oetf`).
fn oetf64(t: Transfer, l: f64) -> f64 {
    let (a, b) = (
        f64::from(colour::BT709_ALPHA),
        f64::from(colour::BT709_BETA),
    );
    match t {
        Transfer::Bt709 => {
            if l < b {
                4.5 * l
            } else {
                a * l.powf(0.45) - (a - 1.0)
            }
        }
        Transfer::Srgb => {
            if l <= 0.003_130_8 {
                12.92 * l
            } else {
                1.055 * l.powf(1.0 / 2.4) - 0.055
            }
        }
        Transfer::Linear => l,
        Transfer::Gamma22 => l.powf(1.0 / 2.2),
        Transfer::Gamma28 => l.powf(1.0 / 2.8),
    }
}

/// Linear light → encoded value clamped to `[0, 1]` (step 4), by the table.
#[inline(always)]
pub(crate) fn oetf_clamped(table: &[f32], l: f32) -> f32 {
    let (i, f) = oetf_position(l);
    oetf_at(table, i, f)
}

/// [`oetf_clamped`]'s first half, free of lookups (so that a loop of it
/// vectorizes): the table interval and the fraction into it.
#[inline(always)]
fn oetf_position(l: f32) -> (u32, f32) {
    // NaN fails both comparisons and ends as 0. Comparisons rather than
    // `f32::min` and `Ord::min`: the same values here (no NaN is left),
    // and the loops of this vectorize, where with those they do not.
    let l = if l > 0.0 {
        if l < 1.0 {
            l
        } else {
            1.0
        }
    } else {
        0.0
    };
    let x = l.sqrt().sqrt() * OETF_STEPS as f32;
    // SAFETY: `x` is finite and in [0, OETF_STEPS], so it truncates to a
    // value `i32` holds. Unchecked, where `as` would saturate: LLVM turns
    // the saturating cast of a vector into eight scalar conversions with
    // branches (a third of the conversion's time); this is one
    // `cvttps2dq`, and the same values for every `x` here.
    let i = unsafe { x.to_int_unchecked::<i32>() };
    let i = if i < OETF_STEPS as i32 - 1 {
        i
    } else {
        OETF_STEPS as i32 - 1
    };
    (i as u32, x - i as f32)
}

/// [`oetf_clamped`]'s second half.
#[inline(always)]
fn oetf_at(table: &[f32], i: u32, f: f32) -> f32 {
    let i = i as usize;
    let (a, b) = (table[i], table[i + 1]);
    (a + (b - a) * f).clamp(0.0, 1.0)
}

/// The OETF by the table for `l` in `[0, 1]` (within 1e-6 of the
/// formula), by the formula outside it (colour operations may push linear
/// light past 1, and must not clip there).
#[inline]
pub fn oetf_fast(t: Transfer, l: f32) -> f32 {
    if (0.0..=1.0).contains(&l) {
        oetf_clamped(oetf_table(t), l)
    } else {
        colour::oetf(t, l)
    }
}

/// Samples of the EOTF table over `[0, 1]` (the EOTFs are smooth there:
/// linear interpolation is within 1e-7 of the formula).
pub(crate) const EOTF_STEPS: usize = 4096;

pub(crate) fn eotf_table(t: Transfer) -> &'static [f32] {
    static TABLES: Tables = tables();
    table_of(&TABLES, t, || {
        (0..=EOTF_STEPS)
            .map(|k| colour::eotf(t, k as f32 / EOTF_STEPS as f32))
            .collect()
    })
}

/// The EOTF by the table for `e` in `[0, 1]`, by the formula outside it.
#[inline]
pub fn eotf_fast(t: Transfer, e: f32) -> f32 {
    if (0.0..=1.0).contains(&e) {
        eotf_in_unit(eotf_table(t), e)
    } else {
        colour::eotf(t, e)
    }
}

/// [`eotf_fast`]'s table step for `e` in `[0, 1]`, with the table looked
/// up once by the caller.
#[inline(always)]
pub(crate) fn eotf_in_unit(table: &[f32], e: f32) -> f32 {
    let x = e * EOTF_STEPS as f32;
    let i = (x as usize).min(EOTF_STEPS - 1);
    let f = x - i as f32;
    let (a, b) = (table[i], table[i + 1]);
    a + (b - a) * f
}

/// A format resolved into the numbers the per-pixel steps use.
struct Target {
    matrix: Option<[[f32; 3]; 3]>,
    oetf: &'static [f32],
    kr: f32,
    kg: f32,
    kb: f32,
    /// Y code = y_off + y_scale · Y'; C code = c_off + c_scale · C.
    y_off: f32,
    y_scale: f32,
    c_off: f32,
    c_scale: f32,
    max: f32,
    layout: pix::Layout,
    dither: bool,
}

/// Step 2: premultiplied → straight colour (times the reciprocal of
/// alpha), black where alpha is not above 0.
#[inline(always)]
fn straight(p: [f32; 4]) -> [f32; 3] {
    let a = p[3];
    if a > 0.0 {
        let inv = 1.0 / a;
        [p[0] * inv, p[1] * inv, p[2] * inv]
    } else {
        [0.0; 3]
    }
}

impl Target {
    fn new(canvas_primaries: Primaries, f: &OutputFormat) -> Target {
        let layout = pix::layout(f.pix_fmt)
            .filter(|l| l.planes >= 3)
            .expect("a planar Y'CbCr output format (checked by `convert::check`)");
        let out_primaries = primaries_from_ffmpeg(f.primaries).unwrap_or(canvas_primaries);
        let matrix = (out_primaries != canvas_primaries)
            .then(|| colour::primaries_matrix(canvas_primaries, out_primaries));
        let transfer = transfer_from_ffmpeg(f.transfer).unwrap_or(Transfer::Bt709);
        let (kr, kb) = matrix_coefficients(f.matrix).unwrap_or((0.2126, 0.0722));
        let bits = layout.bit_depth;
        let scale = (1u32 << (bits - 8)) as f32;
        let max = ((1u32 << bits) - 1) as f32;
        let (y_off, y_scale, c_off, c_scale) = if f.range == 2 {
            (0.0, max, (1u32 << (bits - 1)) as f32, max)
        } else {
            (16.0 * scale, 219.0 * scale, 128.0 * scale, 224.0 * scale)
        };
        Target {
            matrix,
            oetf: oetf_table(transfer),
            kr,
            kg: 1.0 - kr - kb,
            kb,
            y_off,
            y_scale,
            c_off,
            c_scale,
            max,
            layout,
            dither: f.dither,
        }
    }

    /// Steps 2–4: premultiplied linear → R'G'B' in `[0, 1]`.
    #[inline(always)]
    fn encoded(&self, p: [f32; 4]) -> [f32; 3] {
        let mut c = straight(p);
        if let Some(m) = &self.matrix {
            c = colour::apply(m, c);
        }
        // Written out: `array::map` is not inlined here and cost a third of
        // the conversion.
        [
            oetf_clamped(self.oetf, c[0]),
            oetf_clamped(self.oetf, c[1]),
            oetf_clamped(self.oetf, c[2]),
        ]
    }

    /// Step 5: R'G'B' → unquantized (Y, Cb, Cr) codes.
    #[inline(always)]
    fn ycbcr(&self, [r, g, b]: [f32; 3]) -> [f32; 3] {
        let y = self.kr * r + self.kg * g + self.kb * b;
        // Divisions, not products with reciprocals: the row path divides
        // too, and both must give the same bits.
        let cb = (b - y) / (2.0 * (1.0 - self.kb));
        let cr = (r - y) / (2.0 * (1.0 - self.kr));
        [
            self.y_off + self.y_scale * y,
            self.c_off + self.c_scale * cb,
            self.c_off + self.c_scale * cr,
        ]
    }

    /// The dither threshold at `(x, y)`, or 0 without dither.
    #[inline(always)]
    fn threshold(&self, x: usize, y: usize) -> f32 {
        if self.dither {
            dither_threshold(x, y)
        } else {
            0.0
        }
    }

    /// Step 7: a code value, rounded to nearest after the dither threshold.
    #[inline]
    fn quantize(&self, v: f32, x: usize, y: usize) -> u16 {
        code(v, self.threshold(x, y), self.max)
    }
}

/// Step 7 with the threshold `t` given: clamped first, then truncated
/// (`floor` for the non-negative values left, without the libm call
/// `f32::floor` is on baseline x86-64). NaN clamps to 0. Through `i32`,
/// which vectorizes, where `u16` would not; every value left is in
/// `[0, max]`, where both conversions agree.
#[inline(always)]
fn code(v: f32, t: f32, max: f32) -> u16 {
    (v + t + 0.5).max(0.0).min(max) as i32 as u16
}

/// Resampling taps of one axis: for each output index, `(source index,
/// weight)` pairs whose weights sum to 1.
struct Taps {
    ranges: Vec<(usize, usize)>,
    taps: Vec<(usize, f32)>,
    identity: bool,
}

impl Taps {
    fn new(src: usize, dst: usize) -> Taps {
        if src == dst {
            return Taps {
                ranges: (0..dst).map(|i| (i, i + 1)).collect(),
                taps: (0..dst).map(|i| (i, 1.0)).collect(),
                identity: true,
            };
        }
        let ratio = src as f64 / dst as f64;
        let radius = ratio.max(1.0);
        let mut ranges = Vec::with_capacity(dst);
        let mut taps = Vec::new();
        for o in 0..dst {
            let centre = (o as f64 + 0.5) * ratio;
            let first = (centre - radius - 0.5).floor() as i64;
            let last = (centre + radius - 0.5).ceil() as i64;
            let start = taps.len();
            let mut sum = 0.0;
            for i in first..=last {
                let w = 1.0 - ((i as f64 + 0.5 - centre).abs() / radius);
                if w > 0.0 {
                    taps.push((i.clamp(0, src as i64 - 1) as usize, w as f32));
                    sum += w;
                }
            }
            for t in &mut taps[start..] {
                t.1 = (f64::from(t.1) / sum) as f32;
            }
            ranges.push((start, taps.len()));
        }
        Taps {
            ranges,
            taps,
            identity: false,
        }
    }

    #[inline]
    fn of(&self, o: usize) -> &[(usize, f32)] {
        let (a, b) = self.ranges[o];
        &self.taps[a..b]
    }
}

/// Step 1 for one output row: the resampled, still premultiplied pixels.
struct RowSampler<'a> {
    src: &'a LinearImage,
    h: Taps,
    v: Taps,
    /// The vertical pass's result (source width).
    tmp: Vec<[f32; 4]>,
    out: Vec<[f32; 4]>,
}

impl<'a> RowSampler<'a> {
    fn new(src: &'a LinearImage, width: u32, height: u32) -> Self {
        RowSampler {
            src,
            h: Taps::new(src.width as usize, width as usize),
            v: Taps::new(src.height as usize, height as usize),
            tmp: vec![[0.0; 4]; src.width as usize],
            out: vec![[0.0; 4]; width as usize],
        }
    }

    fn sampler_clone(&self) -> RowSampler<'a> {
        RowSampler {
            src: self.src,
            h: Taps {
                ranges: self.h.ranges.clone(),
                taps: self.h.taps.clone(),
                identity: self.h.identity,
            },
            v: Taps {
                ranges: self.v.ranges.clone(),
                taps: self.v.taps.clone(),
                identity: self.v.identity,
            },
            tmp: self.tmp.clone(),
            out: self.out.clone(),
        }
    }

    fn row(&mut self, y: usize) -> &[[f32; 4]] {
        let sw = self.src.width as usize;
        let src: &'a LinearImage = self.src;
        let src_row = |i: usize| &src.data[i * sw..(i + 1) * sw];
        let vt = self.v.of(y);
        let vrow: &[[f32; 4]] = if vt.len() == 1 && vt[0].1 == 1.0 {
            src_row(vt[0].0)
        } else {
            self.tmp.iter_mut().for_each(|p| *p = [0.0; 4]);
            for &(i, w) in vt {
                for (t, s) in self.tmp.iter_mut().zip(src_row(i)) {
                    for c in 0..4 {
                        t[c] += s[c] * w;
                    }
                }
            }
            &self.tmp
        };
        // Unscaled across: the row itself (a copy of a 1080p canvas is a
        // 33 MB memmove per format per frame).
        if self.h.identity {
            return vrow;
        }
        for (x, o) in self.out.iter_mut().enumerate() {
            let mut acc = [0.0f32; 4];
            for &(i, w) in self.h.of(x) {
                let s = vrow[i];
                for c in 0..4 {
                    acc[c] += s[c] * w;
                }
            }
            *o = acc;
        }
        &self.out
    }

    /// Step 1 at one output pixel (the ΔE reference samples a grid).
    fn pixel(&self, x: usize, y: usize) -> [f32; 4] {
        let sw = self.src.width as usize;
        let mut acc = [0.0f32; 4];
        for &(j, wy) in self.v.of(y) {
            let row = &self.src.data[j * sw..(j + 1) * sw];
            let mut h = [0.0f32; 4];
            for &(i, wx) in self.h.of(x) {
                for c in 0..4 {
                    h[c] += row[i][c] * wx;
                }
            }
            for c in 0..4 {
                acc[c] += h[c] * wy;
            }
        }
        acc
    }
}

#[inline]
fn put(plane: &mut [u8], i: usize, v: u16, bytes: usize) {
    if bytes == 1 {
        plane[i] = v as u8;
    } else {
        plane[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
    }
}

/// Converts the linear premultiplied canvas (in `canvas_primaries`) to one
/// output format, steps 1–8 of [`OutputFormat`], on every core.
///
/// # Panics
/// On a format [`check`] refuses for its pixel layout (not planar
/// Y'CbCr); unsupported colour tags fall back as the module says.
pub fn convert(canvas: &LinearImage, canvas_primaries: Primaries, f: &OutputFormat) -> Yuv {
    let rows = pix::layout(f.pix_fmt).is_some_and(|l| RowPath::handles(&l));
    let path = if rows { Path::Rows } else { Path::General };
    convert_with(canvas, canvas_primaries, f, path)
}

/// Which implementation of steps 2–8 [`convert_with`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Pixel by pixel, any layout: the reference.
    General,
    /// Whole rows (see [`RowPath`]), for the layouts it handles, with the
    /// AVX2 passes where the CPU has AVX2.
    Rows,
    /// [`Path::Rows`] with its scalar passes only (tests prove the AVX2
    /// ones change nothing).
    #[cfg_attr(not(test), allow(dead_code))]
    ScalarRows,
}

/// A picture of format `f`, tagged as `f` says, its samples zero.
pub(crate) fn blank(f: &OutputFormat) -> Yuv {
    let tags = abi::ColorTags {
        primaries: f.primaries,
        transfer: f.transfer,
        matrix: f.matrix,
        range: f.range,
    };
    Yuv::new(f.width, f.height, f.pix_fmt, tags)
}

fn convert_with(
    canvas: &LinearImage,
    canvas_primaries: Primaries,
    f: &OutputFormat,
    path: Path,
) -> Yuv {
    let mut out = blank(f);
    let t = Target::new(canvas_primaries, f);
    let l = t.layout;
    let (w, h) = (f.width as usize, f.height as usize);
    let (sx, sy) = (l.chroma_shift_x as usize, l.chroma_shift_y as usize);
    let (cw, ch) = plane_size(f.width, f.height, l, 1);
    let bytes = l.bytes_per_sample;
    let sampler = RowSampler::new(canvas, f.width, f.height);
    // Work units: chroma rows (each with the 1 or 2 luma rows it covers).
    let n = super::threads_for(ch);
    let per = ch.div_ceil(n);
    // Split every plane at the band boundaries.
    let mut bands: Vec<Vec<&mut [u8]>> = (0..n).map(|_| Vec::new()).collect();
    for (p, plane) in out.planes.iter_mut().enumerate() {
        let stride = out.strides[p];
        let luma = p == 0 || p == 3;
        let mut rest: &mut [u8] = plane.as_mut_slice();
        for (k, band) in bands.iter_mut().enumerate() {
            let (c0, c1) = ((k * per).min(ch), ((k + 1) * per).min(ch));
            let rows = if luma {
                (c1 << sy).min(h) - (c0 << sy).min(h)
            } else {
                c1 - c0
            };
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(rows * stride);
            band.push(head);
            rest = tail;
        }
    }
    let rows_path = path != Path::General;
    assert!(!rows_path || RowPath::handles(&l), "the row path for {l:?}");
    let vector = path == Path::Rows && super::has_avx2();
    let t = &t;
    let work = |k: usize, mut planes: Vec<&mut [u8]>, mut s: RowSampler<'_>| {
        let (c0, c1) = ((k * per).min(ch), ((k + 1) * per).min(ch));
        if rows_path {
            RowPath::new(t, (w, h), (sx, sy), vector).run(
                &mut s,
                &mut planes,
                (c0, c1),
                bytes == 2,
            );
            return;
        }
        let y0 = (c0 << sy).min(h);
        let mut cb_rows = vec![vec![0f32; w]; 1 << sy];
        let mut cr_rows = vec![vec![0f32; w]; 1 << sy];
        for cy in c0..c1 {
            let ya = cy << sy;
            let yb = ((cy + 1) << sy).min(h);
            for y in ya..yb {
                let row = s.row(y);
                let (ly, crow) = (y - y0, y - ya);
                for (x, &p) in row.iter().enumerate() {
                    let [yv, cb, cr] = t.ycbcr(t.encoded(p));
                    put(planes[0], ly * w + x, t.quantize(yv, x, y), bytes);
                    cb_rows[crow][x] = cb;
                    cr_rows[crow][x] = cr;
                    if planes.len() == 4 {
                        let a = (p[3].clamp(0.0, 1.0) * t.max + 0.5) as u16;
                        put(planes[3], ly * w + x, a, bytes);
                    }
                }
            }
            let rows = yb - ya;
            let cl = cy - c0;
            for cx in 0..cw {
                let xa = cx << sx;
                let xb = ((cx + 1) << sx).min(w);
                let (mut cb, mut cr) = (0f32, 0f32);
                for r in 0..rows {
                    for x in xa..xb {
                        cb += cb_rows[r][x];
                        cr += cr_rows[r][x];
                    }
                }
                let k = 1.0 / ((rows * (xb - xa)) as f32);
                let (cbp, rest) = planes[1..].split_at_mut(1);
                put(cbp[0], cl * cw + cx, t.quantize(cb * k, cx, cy), bytes);
                put(rest[0], cl * cw + cx, t.quantize(cr * k, cx, cy), bytes);
            }
        }
    };
    std::thread::scope(|scope| {
        let mut it = bands.into_iter().enumerate();
        let first = it.next();
        for (k, planes) in it {
            let s = sampler.sampler_clone();
            scope.spawn(move || work(k, planes, s));
        }
        if let Some((k, planes)) = first {
            work(k, planes, sampler.sampler_clone());
        }
    });
    out
}

/// Where the row path reads the canvas: output row `y`, as wide as the
/// output.
trait CanvasRows {
    fn row(&mut self, y: usize) -> &[[f32; 4]];
}

impl CanvasRows for RowSampler<'_> {
    fn row(&mut self, y: usize) -> &[[f32; 4]] {
        RowSampler::row(self, y)
    }
}

/// Rows `y0..` of a canvas of the output's size, one after the other.
struct Batch<'b> {
    y0: usize,
    w: usize,
    rows: &'b [[f32; 4]],
}

impl CanvasRows for Batch<'_> {
    fn row(&mut self, y: usize) -> &[[f32; 4]] {
        &self.rows[(y - self.y0) * self.w..][..self.w]
    }
}

/// Conversions made batch by batch while a renderer draws the canvas, each
/// batch of rows converted by the thread that drew it, while they are
/// still in its cache: the canvas is not written out and read back from
/// memory (33 MB each way at 1080p), and need not be kept at all. For
/// formats of the canvas's size in layouts the row path handles; the same
/// arithmetic as [`convert`], so the same codes.
pub(crate) struct Fused {
    targets: Vec<Target>,
    pictures: Vec<Yuv>,
    w: usize,
    h: usize,
    vector: bool,
}

impl Fused {
    /// `None` unless every format is `width × height` and the row path
    /// handles its layout.
    pub(crate) fn new(
        canvas_primaries: Primaries,
        formats: &[OutputFormat],
        (width, height): (u32, u32),
    ) -> Option<Fused> {
        let size = (width, height);
        if formats.is_empty() || !formats.iter().all(|f| Fused::fits(f, size)) {
            return None;
        }
        let vector = super::has_avx2();
        Some(Fused {
            targets: formats
                .iter()
                .map(|f| Target::new(canvas_primaries, f))
                .collect(),
            pictures: formats.iter().map(blank).collect(),
            w: width as usize,
            h: height as usize,
            vector,
        })
    }

    /// Whether `f` can be converted while a `width × height` canvas is
    /// drawn.
    pub(crate) fn fits(f: &OutputFormat, (width, height): (u32, u32)) -> bool {
        (f.width, f.height) == (width, height)
            && width > 0
            && height > 0
            && pix::layout(f.pix_fmt).is_some_and(|l| RowPath::handles(&l))
    }

    /// The pictures' planes cut every `batch` canvas rows (an even number:
    /// a chroma row's two luma rows fall in one batch), indexed
    /// `[batch][format][plane]`, and what converts a batch into them.
    pub(crate) fn batches(&mut self, batch: usize) -> (Vec<FusedPlanes<'_>>, FusedTargets<'_>) {
        assert!(
            batch > 0 && batch.is_multiple_of(2),
            "an even batch of rows"
        );
        let n = self.h.div_ceil(batch);
        let mut out: Vec<FusedPlanes<'_>> = (0..n).map(|_| Vec::new()).collect();
        for (t, pic) in self.targets.iter().zip(&mut self.pictures) {
            let sy = t.layout.chroma_shift_y as usize;
            let mut parts: Vec<Vec<&mut [u8]>> = (0..n).map(|_| Vec::new()).collect();
            for (p, plane) in pic.planes.iter_mut().enumerate() {
                let rows = if p == 0 || p == 3 { batch } else { batch >> sy };
                let chunks = plane.chunks_mut(rows * pic.strides[p]);
                for (part, chunk) in parts.iter_mut().zip(chunks) {
                    part.push(chunk);
                }
            }
            for (o, part) in out.iter_mut().zip(parts) {
                o.push(part);
            }
        }
        let targets = FusedTargets {
            targets: &self.targets,
            w: self.w,
            h: self.h,
            batch,
            vector: self.vector,
        };
        (out, targets)
    }

    pub(crate) fn into_pictures(self) -> Vec<Yuv> {
        self.pictures
    }
}

/// One batch's planes, per format.
pub(crate) type FusedPlanes<'a> = Vec<Vec<&'a mut [u8]>>;

/// What converts batches (shared by the drawing threads).
pub(crate) struct FusedTargets<'a> {
    targets: &'a [Target],
    w: usize,
    h: usize,
    batch: usize,
    vector: bool,
}

impl<'a> FusedTargets<'a> {
    /// A drawing thread's converter (its own scratch rows).
    pub(crate) fn converter(&self) -> BatchConverter<'a> {
        BatchConverter {
            paths: self
                .targets
                .iter()
                .map(|t| {
                    let l = t.layout;
                    let shift = (l.chroma_shift_x as usize, l.chroma_shift_y as usize);
                    RowPath::new(t, (self.w, self.h), shift, self.vector)
                })
                .collect(),
            batch: self.batch,
        }
    }
}

/// One thread's row paths, one per format.
pub(crate) struct BatchConverter<'a> {
    paths: Vec<RowPath<'a>>,
    batch: usize,
}

impl BatchConverter<'_> {
    /// Batch `k` (its canvas rows, whole, in `rows`) into its `planes`.
    pub(crate) fn convert(&mut self, k: usize, rows: &[[f32; 4]], planes: &mut FusedPlanes<'_>) {
        let y0 = k * self.batch;
        for (path, planes) in self.paths.iter_mut().zip(planes.iter_mut()) {
            let (w, h, sy) = (path.w, path.h, path.sy);
            let ch = (h + (1 << sy) - 1) >> sy;
            let c0 = y0 >> sy;
            let c1 = ((y0 + self.batch) >> sy).min(ch);
            let wide = path.t.layout.bytes_per_sample == 2;
            let mut src = Batch { y0, w, rows };
            path.run(&mut src, planes, (c0, c1), wide);
        }
    }
}

/// Steps 2–8 over whole rows for layouts of 1 or 2 bytes a sample and
/// chroma subsampled by at most 2 each way: the general path's arithmetic,
/// in the same order (so the same codes), arranged in passes over a row
/// that the compiler can vectorize, with the per-pixel decisions of the
/// general path (sample size, alpha, dither) taken once per band.
struct RowPath<'t> {
    t: &'t Target,
    w: usize,
    h: usize,
    sx: usize,
    sy: usize,
    /// The dither thresholds of rows `y mod 8` (0 without dither), as wide
    /// as the luma plane; chroma rows use their start.
    thresholds: Vec<Vec<f32>>,
    /// Encoded R'G'B' of the current row, per channel.
    rgb: [Vec<f32>; 3],
    /// One channel's OETF table positions: interval, fraction.
    idx: Vec<u32>,
    frac: Vec<f32>,
    /// Unquantized Cb and Cr of the luma rows of the current chroma row.
    cb: Vec<Vec<f32>>,
    cr: Vec<Vec<f32>>,
    /// Block sums of the current chroma row.
    cb_sum: Vec<f32>,
    cr_sum: Vec<f32>,
    /// The AVX2 passes run (the CPU has AVX2).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    vector: bool,
}

impl<'t> RowPath<'t> {
    fn handles(l: &pix::Layout) -> bool {
        l.planes >= 3 && l.bytes_per_sample <= 2 && l.chroma_shift_x <= 1 && l.chroma_shift_y <= 1
    }

    fn new(t: &'t Target, (w, h): (usize, usize), (sx, sy): (usize, usize), vector: bool) -> Self {
        let cw = (w + (1 << sx) - 1) >> sx;
        RowPath {
            t,
            w,
            h,
            sx,
            sy,
            thresholds: (0..8)
                .map(|y| (0..w).map(|x| t.threshold(x, y)).collect())
                .collect(),
            rgb: [vec![0.0; w], vec![0.0; w], vec![0.0; w]],
            idx: vec![0; w],
            frac: vec![0.0; w],
            cb: vec![vec![0.0; w]; 1 << sy],
            cr: vec![vec![0.0; w]; 1 << sy],
            cb_sum: vec![0.0; cw],
            cr_sum: vec![0.0; cw],
            vector,
        }
    }

    /// [`RowPath::band`] compiled for AVX2: the same operations (no FMA:
    /// each product is rounded before its sum, as in the baseline build),
    /// so the same codes, with vectors twice as wide and table lookups by scalar loads.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn band_avx2<R: CanvasRows>(
        &mut self,
        s: &mut R,
        planes: &mut [&mut [u8]],
        rows: (usize, usize),
        wide: bool,
    ) {
        if wide {
            self.band::<true, R>(s, planes, rows);
        } else {
            self.band::<false, R>(s, planes, rows);
        }
    }

    /// [`RowPath::band`] for samples of 2 bytes (`wide`) or 1, with the
    /// AVX2 passes where this path has them.
    fn run<R: CanvasRows>(
        &mut self,
        s: &mut R,
        planes: &mut [&mut [u8]],
        rows: (usize, usize),
        wide: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.vector {
            // SAFETY: `vector` is only set where the CPU has AVX2.
            unsafe { self.band_avx2(s, planes, rows, wide) };
            return;
        }
        if wide {
            self.band::<true, R>(s, planes, rows);
        } else {
            self.band::<false, R>(s, planes, rows);
        }
    }

    /// Chroma rows `c0..c1` and the luma rows they cover into `planes`
    /// (this band's part of each plane). `WIDE`: 2 bytes a sample.
    #[inline(always)]
    fn band<const WIDE: bool, R: CanvasRows>(
        &mut self,
        s: &mut R,
        planes: &mut [&mut [u8]],
        (c0, c1): (usize, usize),
    ) {
        let (w, h, sy) = (self.w, self.h, self.sy);
        let bytes = if WIDE { 2 } else { 1 };
        let cw = self.cb_sum.len();
        let y0 = (c0 << sy).min(h);
        let [y_plane, cb_plane, cr_plane, alpha @ ..] = planes else {
            unreachable!("a planar Y'CbCr layout has 3 or 4 planes");
        };
        let mut alpha = alpha.first_mut();
        for cy in c0..c1 {
            let ya = cy << sy;
            let yb = ((cy + 1) << sy).min(h);
            for y in ya..yb {
                let row = s.row(y);
                let at = (y - y0) * w * bytes..(y - y0 + 1) * w * bytes;
                if let Some(a) = alpha.as_deref_mut() {
                    let a = &mut a[at.clone()];
                    for (x, p) in row.iter().enumerate() {
                        let v = (p[3].clamp(0.0, 1.0) * self.t.max + 0.5) as u16;
                        put_code::<WIDE>(a, x, v);
                    }
                }
                self.encode(row);
                self.luma_row::<WIDE>(&mut y_plane[at], y, y - ya);
            }
            let at = (cy - c0) * cw * bytes..(cy - c0 + 1) * cw * bytes;
            self.chroma_row::<WIDE>(&mut cb_plane[at.clone()], &mut cr_plane[at], cy, yb - ya);
        }
    }

    /// Steps 2–4 for one row into `rgb`, in passes: straight colour,
    /// primaries, table positions (all vectorized), then the lookups.
    #[inline(always)]
    fn encode(&mut self, row: &[[f32; 4]]) {
        let (t, w) = (self.t, self.w);
        let row = &row[..w];
        let [r, g, b] = &mut self.rgb;
        let (r, g, b) = (&mut r[..w], &mut g[..w], &mut b[..w]);
        let vector = self.vector;
        #[cfg(target_arch = "x86_64")]
        if vector {
            // SAFETY: `vector` is only set where the CPU has AVX2.
            unsafe { avx2::straight(row, r, g, b) };
        }
        if !vector {
            for x in 0..w {
                [r[x], g[x], b[x]] = straight(row[x]);
            }
        }
        if let Some(m) = &t.matrix {
            for x in 0..w {
                [r[x], g[x], b[x]] = colour::apply(m, [r[x], g[x], b[x]]);
            }
        }
        let (idx, frac) = (&mut self.idx[..w], &mut self.frac[..w]);
        for c in [r, g, b] {
            for x in 0..w {
                (idx[x], frac[x]) = oetf_position(c[x]);
            }
            #[cfg(target_arch = "x86_64")]
            if vector {
                // SAFETY: `vector` is only set where the CPU has AVX2;
                // `oetf_position` keeps every index below OETF_STEPS, and
                // the table has OETF_STEPS + 1 entries.
                unsafe { avx2::oetf_lookup(t.oetf, idx, frac, c) };
            }
            if !vector {
                for x in 0..w {
                    c[x] = oetf_at(t.oetf, idx[x], frac[x]);
                }
            }
        }
    }

    /// Steps 5 and 7 for the luma of row `y` (`crow`-th of its chroma
    /// row), keeping its unquantized chroma.
    #[inline(always)]
    fn luma_row<const WIDE: bool>(&mut self, out: &mut [u8], y: usize, crow: usize) {
        let (t, w) = (self.t, self.w);
        let thr = &self.thresholds[y & 7][..w];
        let (cb, cr) = (&mut self.cb[crow][..w], &mut self.cr[crow][..w]);
        let [r, g, b] = &self.rgb;
        let (r, g, b) = (&r[..w], &g[..w], &b[..w]);
        let out = &mut out[..w * if WIDE { 2 } else { 1 }];
        #[cfg(target_arch = "x86_64")]
        if self.vector {
            // SAFETY: `vector` is only set where the CPU has AVX2.
            unsafe { avx2::luma(t, [r, g, b], thr, cb, cr, out, WIDE) };
            return;
        }
        for x in 0..w {
            let [yv, u, v] = t.ycbcr([r[x], g[x], b[x]]);
            cb[x] = u;
            cr[x] = v;
            put_code::<WIDE>(out, x, code(yv, thr[x], t.max));
        }
    }

    /// Steps 6 and 7 for chroma row `cy`, whose block holds `rows` luma
    /// rows: the sum over each block in the general path's order (row by
    /// row, left to right), times the same reciprocal of its size.
    #[inline(always)]
    fn chroma_row<const WIDE: bool>(
        &mut self,
        cb_out: &mut [u8],
        cr_out: &mut [u8],
        cy: usize,
        rows: usize,
    ) {
        let (t, w, sx) = (self.t, self.w, self.sx);
        let cw = self.cb_sum.len();
        let thr = &self.thresholds[cy & 7][..cw];
        let sums = [(&mut self.cb_sum, &self.cb), (&mut self.cr_sum, &self.cr)];
        for (sum, rows_of) in sums {
            let sum = &mut sum[..cw];
            sum.fill(0.0);
            for row in &rows_of[..rows] {
                let row = &row[..w];
                if sx == 0 {
                    for (s, &v) in sum.iter_mut().zip(row) {
                        *s += v;
                    }
                } else {
                    for (s, pair) in sum.iter_mut().zip(row.chunks_exact(2)) {
                        *s = *s + pair[0] + pair[1];
                    }
                    if w % 2 == 1 {
                        sum[cw - 1] += row[w - 1];
                    }
                }
            }
        }
        // Every block is 1 << sx columns wide but an odd width's last.
        let full = 1.0 / ((rows << sx) as f32);
        let last = 1.0 / ((rows * (w - ((cw - 1) << sx))) as f32);
        for (sum, out) in [(&self.cb_sum, cb_out), (&self.cr_sum, cr_out)] {
            let (sum, out) = (&sum[..cw], &mut out[..cw * if WIDE { 2 } else { 1 }]);
            for x in 0..cw - 1 {
                put_code::<WIDE>(out, x, code(sum[x] * full, thr[x], t.max));
            }
            put_code::<WIDE>(out, cw - 1, code(sum[cw - 1] * last, thr[cw - 1], t.max));
        }
    }
}

/// Sample `x` of a row of 1-byte (`WIDE` false) or 2-byte little-endian
/// samples.
#[inline(always)]
fn put_code<const WIDE: bool>(out: &mut [u8], x: usize, v: u16) {
    if WIDE {
        out[2 * x] = v as u8;
        out[2 * x + 1] = (v >> 8) as u8;
    } else {
        out[x] = v as u8;
    }
}

/// The ΔE reference: the canvas at the pixels `(x, y)` for `x` in
/// `(0..cols)·step`, `y` in `(0..rows)·step` of the output (the grid of
/// `deltae::Grid`), after steps 1–4 (resampled, straight, in the output's
/// primaries, encoded by its transfer, clamped): R'G'B' in `[0, 1]`, before
/// the Y'CbCr matrix, subsampling and quantization.
pub fn reference_rgb(
    canvas: &LinearImage,
    canvas_primaries: Primaries,
    f: &OutputFormat,
    step: usize,
) -> Vec<[f32; 3]> {
    let t = Target::new(canvas_primaries, f);
    let s = RowSampler::new(canvas, f.width, f.height);
    let (w, h) = (f.width as usize, f.height as usize);
    let mut out = Vec::with_capacity(w.div_ceil(step) * h.div_ceil(step));
    for y in (0..h).step_by(step) {
        for x in (0..w).step_by(step) {
            out.push(t.encoded(s.pixel(x, y)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::colour::{eotf, linearize_rgba8};
    use crate::render::image::{rgba_to_yuv, Rgba8};

    fn fmt(w: u32, h: u32, pix_fmt: u32, tags: [u32; 4], dither: bool) -> OutputFormat {
        OutputFormat {
            width: w,
            height: h,
            pix_fmt,
            primaries: tags[0],
            transfer: tags[1],
            matrix: tags[2],
            range: tags[3],
            dither,
        }
    }

    const BT709: [u32; 4] = [1, 1, 1, 1];

    /// Linear premultiplied from encoded BT.709 R'G'B' and alpha.
    fn lin(e: [f32; 3], a: f32) -> [f32; 4] {
        let c = e.map(|v| eotf(Transfer::Bt709, v) * a);
        [c[0], c[1], c[2], a]
    }

    fn sample(y: &Yuv, p: usize, i: usize) -> u32 {
        let bytes = pix::layout(y.pix_fmt).unwrap().bytes_per_sample;
        if bytes == 1 {
            y.planes[p][i] as u32
        } else {
            u16::from_le_bytes([y.planes[p][2 * i], y.planes[p][2 * i + 1]]) as u32
        }
    }

    #[test]
    fn bars_75_percent_give_the_standard_bt709_codes() {
        // (R', G', B') at 75 % and the BT.709 limited 8-bit codes (SMPTE
        // RP 219 75 % bars; each follows from Y = 16 + 219 Y', C = 128 +
        // 224 C with Cb = (B' − Y')/1.8556, Cr = (R' − Y')/1.5748).
        let bars: [([f32; 3], [u32; 3]); 8] = [
            ([0.75, 0.75, 0.75], [180, 128, 128]),
            ([0.75, 0.75, 0.0], [168, 44, 136]),
            ([0.0, 0.75, 0.75], [145, 147, 44]),
            ([0.0, 0.75, 0.0], [133, 63, 52]),
            ([0.75, 0.0, 0.75], [63, 193, 204]),
            ([0.75, 0.0, 0.0], [51, 109, 212]),
            ([0.0, 0.0, 0.75], [28, 212, 120]),
            ([0.0, 0.0, 0.0], [16, 128, 128]),
        ];
        let mut img = LinearImage::new(16, 2);
        for (i, p) in img.data.iter_mut().enumerate() {
            *p = lin(bars[(i % 16) / 2].0, 1.0);
        }
        for pf in [pix::YUV444P, pix::YUV420P] {
            let y = convert(&img, Primaries::Bt709, &fmt(16, 2, pf, BT709, false));
            let cw = if pf == pix::YUV444P { 16 } else { 8 };
            for (b, (_, want)) in bars.iter().enumerate() {
                for x in [2 * b, 2 * b + 1] {
                    assert_eq!(sample(&y, 0, x), want[0], "bar {b} Y ({pf})");
                }
                let cx = if cw == 16 { 2 * b } else { b };
                assert_eq!(sample(&y, 1, cx), want[1], "bar {b} Cb ({pf})");
                assert_eq!(sample(&y, 2, cx), want[2], "bar {b} Cr ({pf})");
            }
        }
    }

    #[test]
    fn bt2020_10_bit_output_of_bt709_content() {
        let mut img = LinearImage::filled(4, 2, [1.0, 1.0, 1.0, 1.0]);
        img.data[1] = [1.0, 0.0, 0.0, 1.0];
        let f = fmt(4, 2, pix::YUV444P10, [9, 14, 9, 1], false);
        let y = convert(&img, Primaries::Bt709, &f);
        assert_eq!(y.color.primaries, 9);
        assert_eq!(
            [sample(&y, 0, 0), sample(&y, 1, 0), sample(&y, 2, 0)],
            [940, 512, 512]
        );
        // BT.709 red in BT.2020 (BT.2087): linear (0.6274, 0.0691, 0.0164).
        let e = [0.6274f64, 0.0691, 0.0164].map(|l| {
            let (a, b) = (1.099_296_826_809_44, 0.018_053_968_510_807);
            if l < b {
                4.5 * l
            } else {
                a * l.powf(0.45) - (a - 1.0)
            }
        });
        let (kr, kb) = (0.2627, 0.0593);
        let yy = kr * e[0] + (1.0 - kr - kb) * e[1] + kb * e[2];
        let want = [
            64.0 + 876.0 * yy,
            512.0 + 896.0 * (e[2] - yy) / (2.0 * (1.0 - kb)),
            512.0 + 896.0 * (e[0] - yy) / (2.0 * (1.0 - kr)),
        ];
        for (p, want) in want.iter().enumerate() {
            let got = sample(&y, p, 1) as f64;
            assert!((got - want).abs() <= 1.0, "plane {p}: {got} vs {want}");
        }
    }

    #[test]
    fn full_range_and_alpha_plane() {
        let mut img = LinearImage::new(4, 1);
        img.data = vec![
            [1.0, 1.0, 1.0, 1.0],
            [0.0, 0.0, 0.0, 1.0],
            lin([1.0, 1.0, 1.0], 0.5),
            [0.3, 0.2, 0.1, 0.0],
        ];
        let y = convert(
            &img,
            Primaries::Bt709,
            &fmt(4, 1, pix::YUV444P, [1, 1, 1, 2], true),
        );
        assert_eq!(
            (0..4).map(|i| sample(&y, 0, i)).collect::<Vec<_>>(),
            [255, 0, 255, 0]
        );
        assert!((0..4).all(|i| sample(&y, 1, i) == 128 && sample(&y, 2, i) == 128));
        let y = convert(
            &img,
            Primaries::Bt709,
            &fmt(4, 1, pix::YUV444P10, [1, 1, 1, 2], true),
        );
        assert_eq!([sample(&y, 0, 0), sample(&y, 1, 0)], [1023, 512]);
        // Alpha: full range whatever the colour range, never dithered; a
        // transparent pixel is black.
        for (pf, max) in [(pix::YUVA444P10, 1023u32), (pix::YUVA444P12, 4095)] {
            let y = convert(&img, Primaries::Bt709, &fmt(4, 1, pf, BT709, true));
            let a: Vec<u32> = (0..4).map(|i| sample(&y, 3, i)).collect();
            assert_eq!(a, [max, max, max.div_ceil(2), 0]);
            assert_eq!(
                sample(&y, 0, 2),
                940 * (max + 1) / 1024,
                "straight colour of a half-transparent white"
            );
            assert_eq!(sample(&y, 0, 3), 64 * (max + 1) / 1024);
        }
    }

    #[test]
    fn chroma_420_and_422_is_the_mean_of_the_block() {
        let e = [
            [1.0f32, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [1.0, 1.0, 1.0],
        ];
        let mut img = LinearImage::new(2, 2);
        for (p, c) in img.data.iter_mut().zip(e) {
            *p = lin(c, 1.0);
        }
        let (kr, kb) = (0.2126f64, 0.0722);
        let cb = |c: [f32; 3]| {
            let y = kr * c[0] as f64 + (1.0 - kr - kb) * c[1] as f64 + kb * c[2] as f64;
            (c[2] as f64 - y) / (2.0 * (1.0 - kb))
        };
        let cr = |c: [f32; 3]| {
            let y = kr * c[0] as f64 + (1.0 - kr - kb) * c[1] as f64 + kb * c[2] as f64;
            (c[0] as f64 - y) / (2.0 * (1.0 - kr))
        };
        let code = |v: f64| (128.0 + 224.0 * v).round() as u32;
        let y = convert(
            &img,
            Primaries::Bt709,
            &fmt(2, 2, pix::YUV420P, BT709, false),
        );
        assert_eq!(
            sample(&y, 1, 0),
            code(e.iter().map(|c| cb(*c)).sum::<f64>() / 4.0)
        );
        assert_eq!(
            sample(&y, 2, 0),
            code(e.iter().map(|c| cr(*c)).sum::<f64>() / 4.0)
        );
        let y = convert(
            &img,
            Primaries::Bt709,
            &fmt(2, 2, pix::YUV422P, BT709, false),
        );
        assert_eq!(sample(&y, 1, 0), code((cb(e[0]) + cb(e[1])) / 2.0));
        assert_eq!(sample(&y, 1, 1), code((cb(e[2]) + cb(e[3])) / 2.0));
        assert_eq!(sample(&y, 2, 1), code((cr(e[2]) + cr(e[3])) / 2.0));
    }

    #[test]
    fn dither_never_moves_a_value_on_a_code() {
        let t = Target::new(Primaries::Bt709, &fmt(8, 8, pix::YUV444P10, BT709, true));
        for k in 0..=1023u16 {
            for y in 0..8 {
                for x in 0..8 {
                    assert_eq!(t.quantize(k as f32, x, y), k);
                }
            }
        }
        // Through the whole conversion: black, white and neutral chroma.
        let mut img = LinearImage::filled(16, 16, [1.0; 4]);
        img.data[..128]
            .iter_mut()
            .for_each(|p| *p = [0.0, 0.0, 0.0, 1.0]);
        let y = convert(
            &img,
            Primaries::Bt709,
            &fmt(16, 16, pix::YUV420P10, BT709, true),
        );
        assert!((0..128).all(|i| sample(&y, 0, i) == 64));
        assert!((128..256).all(|i| sample(&y, 0, i) == 940));
        assert!((0..64).all(|i| sample(&y, 1, i) == 512 && sample(&y, 2, i) == 512));
        // The thresholds are the documented ones.
        assert_eq!(dither_threshold(0, 0), 0.5 / 64.0 - 0.5);
        assert_eq!(dither_threshold(8 + 7, 16 + 7), 21.5 / 64.0 - 0.5);
    }

    #[test]
    fn dithered_ramp_averages_to_the_unquantized_value() {
        // A grey ramp of 5 10-bit codes over 1024 pixels (1/200 code per
        // pixel): each 8×8 block sees all 64 thresholds once, so its mean
        // is the unquantized mean within 1/128 (the thresholds' step over
        // two) plus the largest distance of a pixel from its block's mean
        // (3.5 pixels of slope).
        let (w, h) = (1024u32, 64u32);
        let slope = 5.0 / 1024.0;
        let e = |x: usize| 0.3 + (5.0 / 876.0) * x as f32 / w as f32;
        let mut img = LinearImage::new(w, h);
        for (i, p) in img.data.iter_mut().enumerate() {
            let v = e(i % w as usize);
            *p = lin([v, v, v], 1.0);
        }
        let y = convert(
            &img,
            Primaries::Bt709,
            &fmt(w, h, pix::YUV420P10, BT709, true),
        );
        let plain = convert(
            &img,
            Primaries::Bt709,
            &fmt(w, h, pix::YUV420P10, BT709, false),
        );
        let (mut worst, mut worst_plain) = (0f64, 0f64);
        for by in 0..(h as usize / 8) {
            for bx in 0..(w as usize / 8) {
                let (mut got, mut rounded, mut exact) = (0f64, 0f64, 0f64);
                for yy in by * 8..by * 8 + 8 {
                    for xx in bx * 8..bx * 8 + 8 {
                        got += sample(&y, 0, yy * w as usize + xx) as f64;
                        rounded += sample(&plain, 0, yy * w as usize + xx) as f64;
                        exact += 64.0 + 876.0 * e(xx) as f64;
                    }
                }
                worst = worst.max((got - exact).abs() / 64.0);
                worst_plain = worst_plain.max((rounded - exact).abs() / 64.0);
            }
        }
        let bound = 1.0 / 128.0 + 3.5 * slope;
        assert!(
            worst < bound,
            "dithered block means off by {worst} codes (bound {bound})"
        );
        // Plain rounding is off by up to half a code on the same ramp.
        assert!(worst_plain > 0.3, "{worst_plain}");
    }

    #[test]
    fn resampling_a_flat_field_stays_flat_and_downscales_average() {
        let c = lin([0.2, 0.6, 0.4], 1.0);
        let img = LinearImage::filled(1920, 1080, c);
        let same = convert(
            &img,
            Primaries::Bt709,
            &fmt(1920, 1080, pix::YUV420P, BT709, false),
        );
        let small = convert(
            &img,
            Primaries::Bt709,
            &fmt(1280, 720, pix::YUV420P, BT709, false),
        );
        for p in 0..3 {
            let want = same.planes[p][0];
            assert!(small.planes[p].iter().all(|&v| v == want), "plane {p}");
        }
        // 2:1 down of a one-pixel checkerboard of 0 and 1 (linear) is 0.5
        // everywhere: the filter spans the source pixels it covers.
        let mut img = LinearImage::new(64, 64);
        for (i, p) in img.data.iter_mut().enumerate() {
            let v = ((i % 64 + i / 64) % 2) as f32;
            *p = [v, v, v, 1.0];
        }
        let half = convert(
            &img,
            Primaries::Bt709,
            &fmt(32, 32, pix::YUV444P10, BT709, false),
        );
        let want = (64.0 + 876.0 * oetf64(Transfer::Bt709, 0.5)).round() as u32;
        // Away from the edges, where repeated edge pixels tip the balance.
        for y in 1..31 {
            for x in 1..31 {
                assert_eq!(sample(&half, 0, y * 32 + x), want, "({x}, {y})");
            }
        }
    }

    #[test]
    fn oetf_table_is_within_2e5_of_the_curve() {
        for t in [
            Transfer::Bt709,
            Transfer::Srgb,
            Transfer::Linear,
            Transfer::Gamma22,
            Transfer::Gamma28,
        ] {
            let table = oetf_table(t);
            let mut worst = 0f64;
            for i in 0..=200_000 {
                // Dense near black, where the curves are steepest.
                let l = (i as f64 / 200_000.0).powi(3);
                let err = (oetf_clamped(table, l as f32) as f64 - oetf64(t, l).min(1.0)).abs();
                worst = worst.max(err);
            }
            assert!(worst < 2e-5, "{t:?}: {worst}");
        }
    }

    #[test]
    fn bt709_8_bit_matches_the_old_converter_within_one_code() {
        let (w, h) = (64u32, 36u32);
        let mut src = Rgba8::new(w, h);
        for (i, px) in src.data.chunks_exact_mut(4).enumerate() {
            px.copy_from_slice(&[
                (i * 7) as u8,
                (i * 13 / 3) as u8,
                (255 - i % 251) as u8,
                (1 + (i * 5) % 255) as u8,
            ]);
        }
        let canvas = linearize_rgba8(
            &src.data,
            w,
            h,
            Transfer::Bt709,
            Primaries::Bt709,
            Primaries::Bt709,
        );
        for pf in [
            pix::YUV420P,
            pix::YUV422P10,
            pix::YUV444P,
            pix::YUVA444P10,
            pix::YUV444P12,
        ] {
            let mut old = Yuv::new(w, h, pf, abi::ColorTags::BT709_LIMITED);
            rgba_to_yuv(&src, &mut old);
            let new = convert(&canvas, Primaries::Bt709, &fmt(w, h, pf, BT709, false));
            assert_eq!(new.strides, old.strides);
            let l = pix::layout(pf).unwrap();
            for p in 0..l.planes {
                let n = old.planes[p].len() / l.bytes_per_sample;
                for i in 0..n {
                    let (a, b) = (sample(&old, p, i), sample(&new, p, i));
                    assert!(
                        a.abs_diff(b) <= 1,
                        "{pf} plane {p} sample {i}: old {a}, new {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn reference_samples_are_the_encoded_canvas_at_the_grid() {
        let mut img = LinearImage::new(10, 6);
        for (i, p) in img.data.iter_mut().enumerate() {
            let v = (i % 10) as f32 / 10.0;
            *p = lin([v, 0.5, 1.0 - v], 1.0);
        }
        let f = fmt(10, 6, pix::YUV420P, BT709, true);
        let r = reference_rgb(&img, Primaries::Bt709, &f, 4);
        // Columns 0, 4, 8 and rows 0, 4.
        assert_eq!(r.len(), 6);
        for (k, s) in r.iter().enumerate() {
            let x = (k % 3) * 4;
            let v = x as f32 / 10.0;
            for (c, want) in [v, 0.5, 1.0 - v].iter().enumerate() {
                assert!((s[c] - want).abs() < 1e-4, "{k}: {s:?}");
            }
        }
    }

    /// A canvas with what conversion must survive: gradients in every
    /// channel, values below 0 and above 1, NaN and infinity, and alpha
    /// from 0 (with colour left in it) to 1.
    fn varied_canvas(w: u32, h: u32) -> LinearImage {
        let mut img = LinearImage::new(w, h);
        for (i, p) in img.data.iter_mut().enumerate() {
            let (x, y) = ((i % w as usize) as f32, (i / w as usize) as f32);
            let gx = x / w as f32;
            let gy = y / h as f32;
            let a = [1.0, 1.0, 0.5, 0.25, 0.0, 0.9, 1.0][i % 7];
            *p = match i % 23 {
                0 => [-0.2, 1.5, 0.5, 1.0],
                1 => [f32::NAN, 0.3, 0.2, 1.0],
                2 => [0.1, f32::INFINITY, 0.2, 0.5],
                3 => [4.0, 0.0, -1.0, 1.0],
                4 => [0.3, 0.3, 0.3, 0.0],
                _ => [gx * a, gy * a, (1.0 - gx) * (0.5 + 0.5 * gy) * a, a],
            };
        }
        img
    }

    #[test]
    fn row_path_gives_the_general_paths_codes() {
        let formats = [
            pix::YUV420P,
            pix::YUV422P,
            pix::YUV444P,
            pix::YUV420P10,
            pix::YUV422P10,
            pix::YUV422P12,
            pix::YUVA444P10,
        ];
        // BT.709 limited; BT.2020 limited (a primaries matrix); full range.
        let tags = [BT709, [9, 14, 9, 1], [1, 13, 1, 2]];
        // Odd and even sizes, one pixel, and a resampled one.
        let sizes = [
            (37, 23, 37, 23),
            (1, 1, 1, 1),
            (2, 3, 2, 3),
            (64, 17, 64, 17),
        ];
        let sizes = sizes.into_iter().chain([(40, 30, 37, 23)]);
        let (mut compared, mut differ) = (0usize, 0usize);
        for (cw, ch, w, h) in sizes {
            let canvas = varied_canvas(cw, ch);
            for pf in formats {
                for tag in tags {
                    for dither in [false, true] {
                        let f = fmt(w, h, pf, tag, dither);
                        let general = convert_with(&canvas, Primaries::Bt709, &f, Path::General);
                        for path in [Path::Rows, Path::ScalarRows] {
                            let rows = convert_with(&canvas, Primaries::Bt709, &f, path);
                            assert_eq!(rows.strides, general.strides);
                            let l = pix::layout(pf).unwrap();
                            for p in 0..l.planes {
                                let n = general.planes[p].len() / l.bytes_per_sample;
                                for i in 0..n {
                                    let (a, b) = (sample(&general, p, i), sample(&rows, p, i));
                                    assert!(
                                        a.abs_diff(b) <= 1,
                                        "{path:?} {pf} {tag:?} {w}x{h} plane {p} sample {i}: \
                                         {a} vs {b}"
                                    );
                                    compared += 1;
                                    differ += usize::from(a != b);
                                }
                            }
                        }
                    }
                }
            }
        }
        // The row path does the same operations in the same order: not
        // even float rounding may differ.
        assert_eq!(differ, 0, "{differ} of {compared} codes differ");
    }

    /// Timing against the old integer converter (run with `--ignored
    /// --nocapture`).
    #[test]
    #[ignore]
    fn timing_1080p() {
        let (w, h) = (1920u32, 1080u32);
        let mut src = Rgba8::new(w, h);
        for (i, px) in src.data.chunks_exact_mut(4).enumerate() {
            px.copy_from_slice(&[(i * 7) as u8, (i / 1920) as u8, (i % 251) as u8, 255]);
        }
        let canvas = linearize_rgba8(
            &src.data,
            w,
            h,
            Transfer::Bt709,
            Primaries::Bt709,
            Primaries::Bt709,
        );
        let time = |f: &mut dyn FnMut()| {
            f();
            let t = std::time::Instant::now();
            for _ in 0..10 {
                f();
            }
            t.elapsed().as_secs_f64() * 100.0
        };
        let lin_ms = time(&mut || {
            std::hint::black_box(linearize_rgba8(
                &src.data,
                w,
                h,
                Transfer::Bt709,
                Primaries::Bt709,
                Primaries::Bt709,
            ));
        });
        println!("threads {}", crate::render::threads_for(1080));
        println!("linearize_rgba8 1080p: {lin_ms:.2} ms");
        for pf in [pix::YUV420P, pix::YUV422P10] {
            let old = time(&mut || {
                let mut y = Yuv::new(w, h, pf, abi::ColorTags::BT709_LIMITED);
                rgba_to_yuv(&src, &mut y);
                std::hint::black_box(y);
            });
            let new = time(&mut || {
                std::hint::black_box(convert(
                    &canvas,
                    Primaries::Bt709,
                    &fmt(w, h, pf, BT709, true),
                ));
            });
            let down = time(&mut || {
                std::hint::black_box(convert(
                    &canvas,
                    Primaries::Bt709,
                    &fmt(1280, 720, pf, BT709, true),
                ));
            });
            println!(
                "{}: rgba_to_yuv {old:.2} ms, convert {new:.2} ms, convert to 720p {down:.2} ms",
                pix::name(pf).unwrap()
            );
        }
    }
}
