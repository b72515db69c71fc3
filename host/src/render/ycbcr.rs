//! Planar Y'CbCr video frames → the linear working image, in one pass
//! (no 8-bit RGB in between, no swscale).
//!
//! Per output pixel:
//! 1. Chroma is upsampled bilinearly to the luma grid. Siting is the
//!    MPEG-2 / H.264 default (what untagged files and nearly all cameras
//!    and encoders use): horizontally a chroma sample sits on the even
//!    luma column (4:2:0 and 4:2:2, "left"), so even columns take it as is
//!    and odd ones the mean of their two neighbours; vertically (4:2:0) a
//!    chroma row sits halfway between its two luma rows, so each luma row
//!    takes ¾ of the nearer chroma row and ¼ of the farther one. Samples
//!    past an edge repeat the edge sample.
//! 2. The source's matrix (BT.709, BT.601, BT.2020 NCL) and range (limited
//!    16–235/240 or full 0–255, scaled by 4 at 10 bits) give R'G'B', each
//!    clipped to [0, 1] as an RGB8 conversion would.
//! 3. The EOTF by a direct table of [`STEPS`] + 1 samples over [0, 1],
//!    indexed by the nearest step: an error under half a step (1/32766 of
//!    the code range), far below one 8-bit (1/255) or 10-bit code.
//! 4. The primaries matrix into the canvas's primaries when they differ;
//!    alpha 1 (the formats here have none).
//!
//! Rows are split into bands, one per core, as in
//! [`colour::linearize_rgba8_into`]; within a row, the arithmetic passes
//! are branch-free loops over `f32` slices that LLVM vectorizes, and only
//! the table lookups are scalar.

use std::sync::OnceLock;

use deliver_plugin_api::abi::pix;

use super::colour::{self, apply, matrix_coefficients, primaries_matrix};
use super::cpu::SourceGrade;
use super::image::Yuv;
use super::plan::LinearImage;
use crate::manifest::model::{Primaries, Transfer};

/// The pixel formats [`linearize_ycbcr_into`] takes: planar Y'CbCr without
/// alpha, 8 and 10 bits.
pub const FORMATS: [u32; 5] = [
    pix::YUV420P,
    pix::YUV422P,
    pix::YUV444P,
    pix::YUV420P10,
    pix::YUV422P10,
];

/// Whether [`linearize_ycbcr_into`] takes frames of `pix_fmt`.
pub fn supports(pix_fmt: u32) -> bool {
    FORMATS.contains(&pix_fmt)
}

/// Steps of the EOTF table over [0, 1]: 2¹⁴ − 1, so that an index masked
/// to 14 bits is in bounds without a check.
pub const STEPS: usize = (1 << 14) - 1;

type Table = [f32; STEPS + 1];

/// Adding 2²³ to an `f32` in [0, 2²³) leaves its nearest integer in the
/// low mantissa bits (round to nearest, in one vectorizable add).
const ROUNDER: f32 = 8_388_608.0;

/// The EOTF of `t` sampled at `k / STEPS`, made once per transfer.
pub(crate) fn table(t: Transfer) -> &'static Table {
    static TABLES: [OnceLock<Box<Table>>; 5] = [const { OnceLock::new() }; 5];
    let slot = match t {
        Transfer::Bt709 => 0,
        Transfer::Srgb => 1,
        Transfer::Linear => 2,
        Transfer::Gamma22 => 3,
        Transfer::Gamma28 => 4,
    };
    TABLES[slot].get_or_init(|| {
        let mut table = Box::new([0.0; STEPS + 1]);
        for (k, v) in table.iter_mut().enumerate() {
            *v = colour::eotf(t, k as f32 / STEPS as f32);
        }
        table
    })
}

/// Code values → R'G'B' in table steps: `r = y·Y + r_cr·Cr + r0`, and so on.
#[derive(Debug, Clone, Copy)]
struct Coeffs {
    y: f32,
    r_cr: f32,
    g_cb: f32,
    g_cr: f32,
    b_cb: f32,
    r0: f32,
    g0: f32,
    b0: f32,
}

impl Coeffs {
    fn new(matrix: u32, full_range: bool, depth: u32) -> Coeffs {
        let (kr, kb) = matrix_coefficients(matrix).unwrap_or((0.2126, 0.0722));
        let (kr, kb) = (f64::from(kr), f64::from(kb));
        let kg = 1.0 - kr - kb;
        let s = f64::from(1u32 << (depth - 8));
        let max = f64::from((1u32 << depth) - 1);
        let (y_off, y_rng, c_rng) = if full_range {
            (0.0, max, max)
        } else {
            (16.0 * s, 219.0 * s, 224.0 * s)
        };
        let c_off = 128.0 * s;
        let n = STEPS as f64;
        // R' = Y' + 2(1 − Kr)·Cr, B' = Y' + 2(1 − Kb)·Cb, and G' from
        // Y' = Kr·R' + Kg·G' + Kb·B'.
        let y = n / y_rng;
        let r_cr = n * 2.0 * (1.0 - kr) / c_rng;
        let b_cb = n * 2.0 * (1.0 - kb) / c_rng;
        let g_cb = -n * 2.0 * kb * (1.0 - kb) / kg / c_rng;
        let g_cr = -n * 2.0 * kr * (1.0 - kr) / kg / c_rng;
        let y0 = -y * y_off;
        Coeffs {
            y: y as f32,
            r_cr: r_cr as f32,
            g_cb: g_cb as f32,
            g_cr: g_cr as f32,
            b_cb: b_cb as f32,
            r0: (y0 - r_cr * c_off) as f32,
            g0: (y0 - (g_cb + g_cr) * c_off) as f32,
            b0: (y0 - b_cb * c_off) as f32,
        }
    }
}

/// Converts a planar Y'CbCr frame (one of [`FORMATS`]) with Y'CbCr
/// `matrix` (FFmpeg `AVColorSpace`; BT.709 if not one of
/// [`matrix_coefficients`]) and range, encoded with `transfer` in `from`
/// primaries, to the linear premultiplied working image in `canvas`
/// primaries (see the module docs), reusing `out`'s allocation when it is
/// the right size.
///
/// With `grade` (made for `transfer`'s [`table`]), the texels come out
/// graded, as the CPU renderer would grade them, where `from` is `canvas`
/// (no primaries matrix between the table and the grade); returns whether
/// they did.
///
/// # Panics
/// When `src` is not one of [`FORMATS`] or its planes are shorter than its
/// size says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linearize_ycbcr_graded(
    src: &Yuv,
    matrix: u32,
    full_range: bool,
    transfer: Transfer,
    from: Primaries,
    canvas: Primaries,
    grade: Option<&SourceGrade>,
    out: &mut LinearImage,
) -> bool {
    let vector = super::has_avx2();
    let colour = (matrix, full_range, transfer, from, canvas);
    linearize(src, colour, grade, out, vector)
}

/// [`linearize_ycbcr_graded`], with the rows compiled for AVX2 or not
/// (`vector`; tests prove both give the same bits).
fn linearize(
    src: &Yuv,
    (matrix, full_range, transfer, from, canvas): (u32, bool, Transfer, Primaries, Primaries),
    grade: Option<&SourceGrade>,
    out: &mut LinearImage,
    vector: bool,
) -> bool {
    assert!(supports(src.pix_fmt), "pixel format {}", src.pix_fmt);
    let l = pix::layout(src.pix_fmt).expect("a known format");
    let k = Coeffs::new(matrix, full_range, l.bit_depth);
    let m = (from != canvas).then(|| primaries_matrix(from, canvas));
    let table = table(transfer);
    let grade = grade.filter(|_| m.is_none());
    let (w, h) = (src.width as usize, src.height as usize);
    if out.data.len() != w * h {
        *out = LinearImage::new(src.width, src.height);
    }
    (out.width, out.height) = (src.width, src.height);
    if w == 0 || h == 0 {
        return grade.is_some();
    }
    let threads = super::threads_for(h / 64);
    let rows = h.div_ceil(threads);
    let conv = Converter {
        src,
        layout: l,
        k,
        m,
        table,
        grade,
        vector,
    };
    std::thread::scope(|scope| {
        let mut bands = out.data.chunks_mut(rows * w).enumerate();
        let first = bands.next();
        for (b, o) in bands {
            let conv = &conv;
            scope.spawn(move || conv.band(b * rows, o));
        }
        if let Some((_, o)) = first {
            conv.band(0, o);
        }
    });
    grade.is_some()
}

/// [`linearize_ycbcr_graded`] without a grade.
///
/// # Panics
/// As [`linearize_ycbcr_graded`].
pub fn linearize_ycbcr_into(
    src: &Yuv,
    matrix: u32,
    full_range: bool,
    transfer: Transfer,
    from: Primaries,
    canvas: Primaries,
    out: &mut LinearImage,
) {
    linearize_ycbcr_graded(src, matrix, full_range, transfer, from, canvas, None, out);
}

struct Converter<'a> {
    src: &'a Yuv,
    layout: pix::Layout,
    k: Coeffs,
    m: Option<[[f32; 3]; 3]>,
    table: &'a Table,
    /// Only where `m` is `None`.
    grade: Option<&'a SourceGrade>,
    /// The rows run compiled for AVX2 (the CPU has it): the same
    /// operations on vectors twice as wide, no FMA, so the same bits.
    vector: bool,
}

impl Converter<'_> {
    /// Rows `y0..` of the picture into `out` (whole rows).
    fn band(&self, y0: usize, out: &mut [[f32; 4]]) {
        #[cfg(target_arch = "x86_64")]
        if self.vector {
            // SAFETY: `vector` is only set where the CPU has AVX2.
            unsafe { self.band_avx2(y0, out) };
            return;
        }
        self.rows(y0, out);
    }

    /// [`Converter::rows`] compiled for AVX2.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn band_avx2(&self, y0: usize, out: &mut [[f32; 4]]) {
        self.rows(y0, out);
    }

    #[inline(always)]
    fn rows(&self, y0: usize, out: &mut [[f32; 4]]) {
        let src = self.src;
        let l = self.layout;
        let w = src.width as usize;
        let cw = (w + (1 << l.chroma_shift_x) - 1) >> l.chroma_shift_x;
        let ch = (src.height as usize + (1 << l.chroma_shift_y) - 1) >> l.chroma_shift_y;
        let wide = l.bytes_per_sample == 2;
        let mut luma = vec![0.0f32; w];
        let (mut cb, mut cr) = (vec![0.0f32; w], vec![0.0f32; w]);
        let (mut near, mut far) = (vec![0.0f32; cw], vec![0.0f32; cw]);
        let (mut ir, mut ig, mut ib) = (vec![0u32; w], vec![0u32; w], vec![0u32; w]);
        for (i, row) in out.chunks_exact_mut(w).enumerate() {
            let y = y0 + i;
            load(&src.planes[0], src.strides[0], y, wide, &mut luma);
            for (p, dst) in [(1, &mut cb), (2, &mut cr)] {
                let (plane, stride) = (&src.planes[p], src.strides[p]);
                if l.chroma_shift_y == 0 {
                    load(plane, stride, y, wide, &mut near);
                } else {
                    // Chroma row c sits at luma row 2c + ½: luma row 2c
                    // takes ¾ of c and ¼ of c − 1, row 2c + 1 ¾ of c and ¼
                    // of c + 1.
                    let c = y >> 1;
                    let other = if y & 1 == 0 {
                        c.saturating_sub(1)
                    } else {
                        (c + 1).min(ch - 1)
                    };
                    load(plane, stride, c, wide, &mut near);
                    load(plane, stride, other, wide, &mut far);
                    for (a, b) in near.iter_mut().zip(&far) {
                        *a = 0.75 * *a + 0.25 * b;
                    }
                }
                if l.chroma_shift_x == 0 {
                    dst.copy_from_slice(&near);
                } else {
                    widen(&near, dst);
                }
            }
            let k = self.k;
            let steps = STEPS as f32;
            // Nearest table step of each clipped R'G'B' value.
            let q = |v: f32| (v.max(0.0).min(steps) + ROUNDER).to_bits();
            let (luma, cb, cr) = (&luma[..w], &cb[..w], &cr[..w]);
            let (ir, ig, ib) = (&mut ir[..w], &mut ig[..w], &mut ib[..w]);
            for x in 0..w {
                let y = k.y * luma[x];
                ir[x] = q(y + k.r_cr * cr[x] + k.r0);
                ig[x] = q(y + k.g_cb * cb[x] + k.g_cr * cr[x] + k.g0);
                ib[x] = q(y + k.b_cb * cb[x] + k.b0);
            }
            let t = self.table;
            let at = |i: u32| t[i as usize & STEPS];
            let row = &mut row[..w];
            if let Some(g) = self.grade {
                g.row(ir, ig, ib, row);
                continue;
            }
            match &self.m {
                None => {
                    for x in 0..w {
                        row[x] = [at(ir[x]), at(ig[x]), at(ib[x]), 1.0];
                    }
                }
                Some(m) => {
                    for x in 0..w {
                        let c = apply(m, [at(ir[x]), at(ig[x]), at(ib[x])]);
                        row[x] = [c[0], c[1], c[2], 1.0];
                    }
                }
            }
        }
    }
}

/// Samples `0..dst.len()` of row `row` of a plane, as `f32`.
fn load(plane: &[u8], stride: usize, row: usize, wide: bool, dst: &mut [f32]) {
    let n = dst.len();
    let s = &plane[row * stride..];
    if wide {
        for (d, b) in dst.iter_mut().zip(s[..2 * n].chunks_exact(2)) {
            *d = f32::from(u16::from_le_bytes([b[0], b[1]]));
        }
    } else {
        for (d, &b) in dst.iter_mut().zip(&s[..n]) {
            *d = f32::from(b);
        }
    }
}

/// Horizontal 2× upsampling of left-sited chroma: even columns are the
/// samples, odd ones the mean of their neighbours (the last repeated).
fn widen(c: &[f32], dst: &mut [f32]) {
    let w = dst.len();
    let pairs = (w / 2).min(c.len().saturating_sub(1));
    for (d, s) in dst.chunks_exact_mut(2).zip(c.windows(2)).take(pairs) {
        d[0] = s[0];
        d[1] = 0.5 * (s[0] + s[1]);
    }
    let last = c[c.len() - 1];
    for d in &mut dst[2 * pairs..] {
        *d = last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::colour::{eotf, linearize_rgba8, oetf};
    use deliver_plugin_api::abi::ColorTags;

    /// Writes code values into a tightly packed frame.
    fn frame(pix_fmt: u32, w: u32, h: u32, code: impl Fn(usize, usize, usize) -> u32) -> Yuv {
        let mut f = Yuv::new(w, h, pix_fmt, ColorTags::UNSPECIFIED);
        let l = pix::layout(pix_fmt).unwrap();
        for p in 0..3 {
            let (pw, ph) = super::super::image::plane_size(w, h, l, p);
            for y in 0..ph {
                for x in 0..pw {
                    let v = code(p, x, y);
                    let i = (y * pw + x) * l.bytes_per_sample;
                    if l.bytes_per_sample == 1 {
                        f.planes[p][i] = v as u8;
                    } else {
                        f.planes[p][i..i + 2].copy_from_slice(&(v as u16).to_le_bytes());
                    }
                }
            }
        }
        f
    }

    /// The module's rule in f64, pixel by pixel: chroma at its sited
    /// position, interpolated; the matrix; clip; the EOTF formula; the
    /// primaries. Returns R'G'B' (clipped) and linear RGB.
    fn reference(
        f: &Yuv,
        matrix: u32,
        full: bool,
        t: Transfer,
        from: Primaries,
        to: Primaries,
    ) -> Vec<([f64; 3], [f32; 3])> {
        let l = pix::layout(f.pix_fmt).unwrap();
        let (w, h) = (f.width as usize, f.height as usize);
        let sample = |p: usize, x: usize, y: usize| -> f64 {
            let (pw, _) = super::super::image::plane_size(f.width, f.height, l, p);
            let i = (y * pw + x) * l.bytes_per_sample;
            if l.bytes_per_sample == 1 {
                f64::from(f.planes[p][i])
            } else {
                f64::from(u16::from_le_bytes([f.planes[p][i], f.planes[p][i + 1]]))
            }
        };
        let (cw, ch) = super::super::image::plane_size(f.width, f.height, l, 1);
        // Bilinear at chroma coordinates (cx, cy), edges repeated.
        let chroma = |p: usize, cx: f64, cy: f64| -> f64 {
            let at = |x: f64, y: f64| {
                sample(
                    p,
                    (x.max(0.0) as usize).min(cw - 1),
                    (y.max(0.0) as usize).min(ch - 1),
                )
            };
            let (x0, y0) = (cx.floor(), cy.floor());
            let (fx, fy) = (cx - x0, cy - y0);
            let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
            let bottom = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
            top * (1.0 - fy) + bottom * fy
        };
        let (kr, kb) = matrix_coefficients(matrix).unwrap();
        let (kr, kb) = (f64::from(kr), f64::from(kb));
        let kg = 1.0 - kr - kb;
        let s = f64::from(1u32 << (l.bit_depth - 8));
        let max = f64::from((1u32 << l.bit_depth) - 1);
        let (yo, yr, cr_) = if full {
            (0.0, max, max)
        } else {
            (16.0 * s, 219.0 * s, 224.0 * s)
        };
        let m = primaries_matrix(from, to);
        let mut out = Vec::new();
        for y in 0..h {
            for x in 0..w {
                // Left-sited horizontally: chroma i at luma column 2i;
                // centred vertically: chroma row j at luma row 2j + ½.
                let cx = if l.chroma_shift_x == 1 {
                    x as f64 / 2.0
                } else {
                    x as f64
                };
                let cy = if l.chroma_shift_y == 1 {
                    y as f64 / 2.0 - 0.25
                } else {
                    y as f64
                };
                let yy = (sample(0, x, y) - yo) / yr;
                let cb = (chroma(1, cx, cy) - 128.0 * s) / cr_;
                let crv = (chroma(2, cx, cy) - 128.0 * s) / cr_;
                let r = yy + 2.0 * (1.0 - kr) * crv;
                let b = yy + 2.0 * (1.0 - kb) * cb;
                let g = (yy - kr * r - kb * b) / kg;
                let e = [r, g, b].map(|v| v.clamp(0.0, 1.0));
                let lin = apply(&m, e.map(|v| eotf(t, v as f32)));
                out.push((e, lin));
            }
        }
        out
    }

    fn convert(f: &Yuv, matrix: u32, full: bool, t: Transfer, from: Primaries) -> LinearImage {
        let mut out = LinearImage::new(0, 0);
        linearize_ycbcr_into(f, matrix, full, t, from, Primaries::Bt709, &mut out);
        out
    }

    /// A deterministic busy pattern: a hash of the position per plane.
    fn noise(p: usize, x: usize, y: usize, max: u32) -> u32 {
        let mut v = (x as u32).wrapping_mul(0x9E37_79B1) ^ (y as u32).wrapping_mul(0x85EB_CA77);
        v ^= (p as u32 + 1).wrapping_mul(0xC2B2_AE3D);
        v ^= v >> 15;
        v = v.wrapping_mul(0x2C1B_3C6D);
        v ^= v >> 12;
        v % (max + 1)
    }

    /// The table's error bound: half a step times the steepest slope of
    /// the BT.709 EOTF (2.03, at 1), through the primaries matrix (its
    /// largest absolute row sum), plus f32 rounding.
    fn table_tolerance(from: Primaries) -> f32 {
        let m = primaries_matrix(from, Primaries::Bt709);
        let norm = m
            .iter()
            .map(|r| r.iter().map(|v| v.abs()).sum::<f32>())
            .fold(0.0, f32::max);
        (0.5 / STEPS as f32 * 2.03 + 2e-6) * norm
    }

    fn assert_matches_reference(f: &Yuv, matrix: u32, full: bool, from: Primaries) {
        let tol = table_tolerance(from);
        let got = convert(f, matrix, full, Transfer::Bt709, from);
        let want = reference(f, matrix, full, Transfer::Bt709, from, Primaries::Bt709);
        assert_eq!(got.data.len(), want.len());
        for (i, (g, (_, w))) in got.data.iter().zip(&want).enumerate() {
            for c in 0..3 {
                assert!(
                    (g[c] - w[c]).abs() <= tol,
                    "{}x{} fmt {} pixel {i} ({}, {}) channel {c}: {} vs {}",
                    f.width,
                    f.height,
                    f.pix_fmt,
                    i % f.width as usize,
                    i / f.width as usize,
                    g[c],
                    w[c]
                );
            }
            assert_eq!(g[3], 1.0);
        }
    }

    #[test]
    fn grey_and_75_percent_bars_give_the_formula() {
        // Flat mid grey, limited range: Y' = (126 − 16) / 219.
        let grey = frame(
            pix::YUV420P,
            64,
            48,
            |p, _, _| if p == 0 { 126 } else { 128 },
        );
        let img = convert(&grey, 1, false, Transfer::Bt709, Primaries::Bt709);
        let want = eotf(Transfer::Bt709, 110.0 / 219.0);
        for px in &img.data {
            for c in &px[..3] {
                assert!((c - want).abs() < 1e-4, "{c} vs {want}");
            }
        }
        // 75 % bars (white, yellow, cyan, green, magenta, red, blue, black),
        // 16 pixels each, coded by BT.709 limited range.
        let bars: [[f64; 3]; 8] = [
            [0.75, 0.75, 0.75],
            [0.75, 0.75, 0.0],
            [0.0, 0.75, 0.75],
            [0.0, 0.75, 0.0],
            [0.75, 0.0, 0.75],
            [0.75, 0.0, 0.0],
            [0.0, 0.0, 0.75],
            [0.0, 0.0, 0.0],
        ];
        let code = |rgb: [f64; 3]| {
            let (kr, kb) = (0.2126, 0.0722);
            let y = kr * rgb[0] + (1.0 - kr - kb) * rgb[1] + kb * rgb[2];
            let cb = (rgb[2] - y) / (2.0 * (1.0 - kb));
            let cr = (rgb[0] - y) / (2.0 * (1.0 - kr));
            [
                (16.0 + 219.0 * y).round() as u32,
                (128.0 + 224.0 * cb).round() as u32,
                (128.0 + 224.0 * cr).round() as u32,
            ]
        };
        let f = frame(pix::YUV420P, 128, 16, |p, x, _| {
            let bar = if p == 0 { x / 16 } else { x / 8 };
            code(bars[bar])[p]
        });
        let img = convert(&f, 1, false, Transfer::Bt709, Primaries::Bt709);
        let want = reference(
            &f,
            1,
            false,
            Transfer::Bt709,
            Primaries::Bt709,
            Primaries::Bt709,
        );
        for (i, (px, (_, w))) in img.data.iter().zip(&want).enumerate() {
            let x = i % 128;
            for c in 0..3 {
                assert!((px[c] - w[c]).abs() < 1e-4, "pixel {x} channel {c}");
            }
            // Away from the bar edges (where chroma is interpolated), the
            // bar's own colour, within the 8-bit coding's rounding.
            if (2..14).contains(&(x % 16)) {
                for c in 0..3 {
                    let e = bars[x / 16][c] as f32;
                    let back = oetf(Transfer::Bt709, px[c]);
                    assert!(
                        (back - e).abs() < 2.5 / 219.0,
                        "bar {} channel {c}: {back}",
                        x / 16
                    );
                }
            }
        }
    }

    #[test]
    fn agrees_with_the_rgba8_path_within_one_code() {
        // What the decoder-side conversion produced: R'G'B' rounded to 8
        // bits, then linearized by the 256-entry table. The fused path
        // skips the rounding, so it may differ by half a code, plus the
        // table steps.
        let f = frame(pix::YUV420P, 97, 67, |p, x, y| {
            if p == 0 {
                16 + noise(p, x, y, 219)
            } else {
                16 + noise(p, x, y, 224)
            }
        });
        for (matrix, from) in [(1, Primaries::Bt709), (6, Primaries::Smpte170m)] {
            let want = reference(&f, matrix, false, Transfer::Bt709, from, from);
            let rgba: Vec<u8> = want
                .iter()
                .flat_map(|(e, _)| {
                    let q = e.map(|v| (v * 255.0).round() as u8);
                    [q[0], q[1], q[2], 255]
                })
                .collect();
            let old = linearize_rgba8(&rgba, 97, 67, Transfer::Bt709, from, Primaries::Bt709);
            let new = convert(&f, matrix, false, Transfer::Bt709, from);
            let inv = primaries_matrix(Primaries::Bt709, from);
            for (i, (n, o)) in new.data.iter().zip(&old.data).enumerate() {
                // Compared in the source's encoding, in 8-bit codes.
                let n = apply(&inv, [n[0], n[1], n[2]]);
                let o = apply(&inv, [o[0], o[1], o[2]]);
                for c in 0..3 {
                    let d = 255.0 * (oetf(Transfer::Bt709, n[c]) - oetf(Transfer::Bt709, o[c]));
                    assert!(
                        d.abs() <= 1.0,
                        "matrix {matrix} pixel {i} channel {c}: {d} codes"
                    );
                }
            }
        }
    }

    #[test]
    fn full_and_limited_range_meet_at_black_white_and_grey() {
        let limited = |v: f64| (16.0 + 219.0 * v).round() as u32;
        let full = |v: f64| (255.0 * v).round() as u32;
        for (v, lim, ful) in [
            (0.0, limited(0.0), full(0.0)),
            (1.0, limited(1.0), full(1.0)),
            (0.5, limited(0.5), full(0.5)),
        ] {
            let a = convert(
                &frame(pix::YUV444P, 8, 8, |p, _, _| if p == 0 { lim } else { 128 }),
                1,
                false,
                Transfer::Bt709,
                Primaries::Bt709,
            );
            let b = convert(
                &frame(pix::YUV444P, 8, 8, |p, _, _| if p == 0 { ful } else { 128 }),
                1,
                true,
                Transfer::Bt709,
                Primaries::Bt709,
            );
            let want = eotf(Transfer::Bt709, v as f32);
            // Each within its own code's rounding of the formula.
            let slack = eotf(Transfer::Bt709, (v as f32 + 0.5 / 219.0).min(1.0)) - want + 1e-4;
            assert!(
                (a.data[0][1] - want).abs() <= slack,
                "limited {v}: {}",
                a.data[0][1]
            );
            assert!(
                (b.data[0][1] - want).abs() <= slack,
                "full {v}: {}",
                b.data[0][1]
            );
        }
        // Limited range clips what lies outside 16–235 (as RGB8 did); full
        // range reaches 0 and 1 at 0 and 255.
        let under = frame(pix::YUV444P, 4, 4, |p, _, _| if p == 0 { 4 } else { 128 });
        let over = frame(pix::YUV444P, 4, 4, |p, _, _| if p == 0 { 250 } else { 128 });
        assert_eq!(
            convert(&under, 1, false, Transfer::Bt709, Primaries::Bt709).data[0][0],
            0.0
        );
        assert_eq!(
            convert(&over, 1, false, Transfer::Bt709, Primaries::Bt709).data[0][0],
            1.0
        );
        assert!(convert(&under, 1, true, Transfer::Bt709, Primaries::Bt709).data[0][0] > 0.0);
        assert!(convert(&over, 1, true, Transfer::Bt709, Primaries::Bt709).data[0][0] < 1.0);
        // A busy image both ways, against the formula.
        let busy = frame(pix::YUV420P, 66, 34, |p, x, y| noise(p, x, y, 255));
        assert_matches_reference(&busy, 1, true, Primaries::Bt709);
        assert_matches_reference(&busy, 1, false, Primaries::Bt709);
    }

    /// The rows compiled for AVX2 give the baseline build's bits, graded
    /// at the source or not, with and without a primaries matrix.
    #[test]
    fn the_avx2_rows_give_the_baseline_bits() {
        use crate::render::plan::ColourOps;
        let ops = ColourOps {
            identity: false,
            exposure_gain: 1.2,
            lift: [0.01, 0.0, -0.02],
            gain: [1.0, 0.9, 1.1],
            saturation: 1.1,
            ..ColourOps::IDENTITY
        };
        let grade = SourceGrade::new(ops, Transfer::Bt709, None, &table(Transfer::Bt709)[..]);
        for fmt in FORMATS {
            let max = (1u32 << pix::layout(fmt).unwrap().bit_depth) - 1;
            let f = frame(fmt, 67, 35, |p, x, y| noise(p, x, y, max));
            for (from, grade) in [
                (Primaries::Bt709, None),
                (Primaries::Bt709, Some(&grade)),
                (Primaries::Bt2020, None),
            ] {
                let colour = (1, false, Transfer::Bt709, from, Primaries::Bt709);
                let run = |vector| {
                    let mut out = LinearImage::new(0, 0);
                    let graded = linearize(&f, colour, grade, &mut out, vector);
                    let bits: Vec<[u32; 4]> =
                        out.data.iter().map(|p| p.map(f32::to_bits)).collect();
                    (graded, bits)
                };
                assert_eq!(run(true), run(false), "{}", pix::name(fmt).unwrap());
            }
        }
    }

    #[test]
    fn subsamplings_depths_and_odd_sizes_follow_the_siting_rule() {
        for fmt in FORMATS {
            let max = (1u32 << pix::layout(fmt).unwrap().bit_depth) - 1;
            for (w, h) in [(64, 64), (37, 23), (1, 1), (2, 3), (65, 129)] {
                let f = frame(fmt, w, h, |p, x, y| noise(p, x, y, max));
                assert_matches_reference(&f, 1, false, Primaries::Bt709);
                // Another matrix and primaries on the way.
                assert_matches_reference(&f, 9, true, Primaries::Bt2020);
                assert_matches_reference(&f, 5, false, Primaries::Bt470bg);
            }
        }
        // A smooth ramp: upsampled chroma is continuous (no half-pixel
        // shift shows as a step).
        let f = frame(pix::YUV420P, 64, 64, |p, x, y| {
            if p == 0 {
                126
            } else {
                (64 + x + y) as u32
            }
        });
        assert_matches_reference(&f, 1, false, Primaries::Bt709);
    }
}
