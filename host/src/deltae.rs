//! Colour difference of a delivery against its reference: CIEDE2000 (Sharma,
//! Wu & Dalal 2005) on a regular grid of pixels.
//!
//! Both sides go to the same place before they are compared:
//! - a decoded Y'CbCr picture goes back to R'G'B' through the matrix and
//!   range of its own tags (BT.709, BT.601, BT.2020 non-constant luminance,
//!   FCC, SMPTE 240M; limited or full range; 8 to 12 bits). An untagged
//!   matrix follows the project's rule (the FFmpeg plugin's `convert.rs`):
//!   more than 576 lines → BT.709, else BT.601; the method string says so.
//!   Chroma is the sample whose block holds the pixel (4:2:0 and 4:2:2
//!   chroma is not interpolated: the host's converter makes it as the mean
//!   of that block);
//! - the render's reference is R'G'B' already: its linear canvas at the
//!   grid, resampled to the delivery's size and encoded by the delivery's
//!   primaries and transfer (`render::convert::reference_rgb`).
//!
//! Then R'G'B' is clipped to [0, 1] (a display clips too), linearized by the
//! BT.1886 EOTF with Lw = 1, Lb = 0 (γ 2.4), taken to XYZ with the BT.709
//! primaries and D65 white, and to CIELAB with that white.
//!
//! CIEDE2000 per pixel costs several transcendental functions, too slow on
//! every pixel of 1080p beside an encoder: the grid takes one pixel per
//! 4×4 block (its top-left pixel), coarser where that would exceed
//! [`GRID_MAX_SAMPLES`] (8×8 at 1080p: 32 400 pixels). Per frame:
//! mean, 99th percentile (nearest rank) and max. Over a programme: the mean,
//! the max and its frame, and the 99th percentile from a fixed histogram
//! (bins of 0.01 up to 100; no per-pixel storage), reported as the upper
//! edge of its bin.

use crate::quality::{Picture, Plane};
use deliver_plugin_api::abi::ColorTags;
use std::sync::OnceLock;

/// One sampled pixel per `GRID_STEP`×`GRID_STEP` block, at least.
pub const GRID_STEP: usize = 4;
/// Samples per frame the grid stays at or under: the step doubles from
/// [`GRID_STEP`] until it does (720p: 4×4, 57 600 pixels; 1080p: 8×8,
/// 32 400; UHD: 16×16, 32 400), so the cost per frame stays bounded
/// beside an encoder while a frame still gives tens of thousands of samples.
pub const GRID_MAX_SAMPLES: usize = 60_000;

/// Histogram bin width of the programme's percentile.
const BIN: f64 = 0.01;
/// Bins cover 0 to 100; larger values land in a last, open bin.
const BINS: usize = 10_000;

/// The pixels a frame is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub width: usize,
    pub height: usize,
    pub step: usize,
}

impl Grid {
    pub fn new(width: usize, height: usize) -> Grid {
        let mut g = Grid {
            width,
            height,
            step: GRID_STEP,
        };
        while g.len() > GRID_MAX_SAMPLES {
            g.step *= 2;
        }
        g
    }

    fn cols(&self) -> usize {
        self.width.div_ceil(self.step)
    }

    fn rows(&self) -> usize {
        self.height.div_ceil(self.step)
    }

    /// Pixels per frame.
    pub fn len(&self) -> usize {
        self.cols() * self.rows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn describe(&self) -> String {
        format!(
            "one pixel per {s}×{s} block (its top-left), {n} per {w}×{h} frame",
            s = self.step,
            n = self.len(),
            w = self.width,
            h = self.height
        )
    }
}

/// CIELAB (L*, a*, b*).
pub type Lab = [f32; 3];

/// Y'CbCr → R'G'B' by a picture's tags.
#[derive(Debug, Clone, PartialEq)]
pub struct YuvToRgb {
    kr: f32,
    kb: f32,
    y_off: f32,
    y_scale: f32,
    c_off: f32,
    c_scale: f32,
    description: String,
}

impl YuvToRgb {
    /// The conversion for a picture of `height` lines, `depth` bits, tagged
    /// `tags` (H.273 code points).
    pub fn new(tags: ColorTags, height: u32, depth: u32) -> YuvToRgb {
        let untagged = if height > 576 {
            ((0.2126, 0.0722), "BT.709")
        } else {
            ((0.299, 0.114), "BT.601")
        };
        let ((kr, kb), name) = match tags.matrix {
            1 => ((0.2126, 0.0722), "BT.709".to_owned()),
            5 | 6 => ((0.299, 0.114), "BT.601".to_owned()),
            9 => ((0.2627, 0.0593), "BT.2020 non-constant luminance".to_owned()),
            4 => ((0.30, 0.11), "FCC".to_owned()),
            7 => ((0.212, 0.087), "SMPTE 240M".to_owned()),
            2 => (
                untagged.0,
                format!(
                    "{} (untagged: more than 576 lines → BT.709, else BT.601)",
                    untagged.1
                ),
            ),
            m => (
                untagged.0,
                format!(
                    "{} (matrix {m} not supported here: treated as untagged, more than 576 lines → BT.709, else BT.601)",
                    untagged.1
                ),
            ),
        };
        let full = tags.range == 2;
        let scale = (1u32 << (depth - 8)) as f32;
        let max = ((1u32 << depth) - 1) as f32;
        let (y_off, y_scale, c_off, c_scale) = if full {
            (0.0, max, (1u32 << (depth - 1)) as f32, max)
        } else {
            (16.0 * scale, 219.0 * scale, 128.0 * scale, 224.0 * scale)
        };
        let range = match tags.range {
            2 => "full range",
            1 => "limited range",
            _ => "limited range (untagged)",
        };
        YuvToRgb {
            kr,
            kb,
            y_off,
            y_scale,
            c_off,
            c_scale,
            description: format!("{name} matrix, {range}, {depth}-bit"),
        }
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    #[inline]
    fn rgb(&self, y: f32, cb: f32, cr: f32) -> [f32; 3] {
        let y = (y - self.y_off) * (1.0 / self.y_scale);
        let cb = (cb - self.c_off) * (1.0 / self.c_scale);
        let cr = (cr - self.c_off) * (1.0 / self.c_scale);
        let r = y + 2.0 * (1.0 - self.kr) * cr;
        let b = y + 2.0 * (1.0 - self.kb) * cb;
        let g = (y - self.kr * r - self.kb * b) * (1.0 / (1.0 - self.kr - self.kb));
        [r, g, b]
    }
}

/// What both sides go through after R'G'B', for the method string.
pub const PIPELINE: &str = "R'G'B' clipped to [0, 1], BT.1886 EOTF (γ 2.4), BT.709 primaries, D65, CIELAB, CIEDE2000 (Sharma, Wu & Dalal 2005)";

/// BT.1886 with Lw = 1, Lb = 0 sampled at 4096 steps (interpolated: the
/// error is below 1e-6 in linear light).
fn eotf_table() -> &'static [f32; 4097] {
    static T: OnceLock<Box<[f32; 4097]>> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Box::new([0f32; 4097]);
        for (i, v) in t.iter_mut().enumerate() {
            *v = (i as f64 / 4096.0).powf(2.4) as f32;
        }
        t
    })
}

#[inline]
fn eotf(t: &[f32; 4097], v: f32) -> f32 {
    let x = v.clamp(0.0, 1.0) * 4096.0;
    let i = (x as usize).min(4095);
    let f = x - i as f32;
    t[i] + (t[i + 1] - t[i]) * f
}

/// Cube root of a positive normal `x`: Kahan's exponent-thirding first
/// guess (within 5 %) and two Halley steps (cubic convergence: 5 % → 1e-4 →
/// below f32 precision). Several times faster than `f32::cbrt`, which is a
/// software routine here and dominated the ΔE cost.
#[inline(always)]
fn cbrt_pos(x: f32) -> f32 {
    let mut y = f32::from_bits(x.to_bits() / 3 + 709_921_077);
    for _ in 0..2 {
        let y3 = y * y * y;
        y *= (y3 + 2.0 * x) / (2.0 * y3 + x);
    }
    y
}

#[inline(always)]
fn lab_f(t: f32) -> f32 {
    const E: f32 = 216.0 / 24389.0;
    const K: f32 = 24389.0 / 27.0;
    // Both sides computed, one selected: no branch in the batch loop.
    let c = cbrt_pos(t.max(E));
    let l = (K * t + 16.0) * (1.0 / 116.0);
    if t > E {
        c
    } else {
        l
    }
}

/// Linear BT.709 RGB → CIELAB (D65).
#[inline(always)]
fn lab_of_linear([r, g, b]: [f32; 3]) -> Lab {
    // BT.709 / sRGB primaries, D65; rows divided by the white point so that
    // R = G = B lands exactly on a* = b* = 0.
    const M: [[f32; 3]; 3] = [
        [0.412_456_4, 0.357_576_1, 0.180_437_5],
        [0.212_672_9, 0.715_152_2, 0.072_175_0],
        [0.019_333_9, 0.119_192, 0.950_304_1],
    ];
    let row = |m: [f32; 3]| (m[0] * r + m[1] * g + m[2] * b) / (m[0] + m[1] + m[2]);
    let (fx, fy, fz) = (lab_f(row(M[0])), lab_f(row(M[1])), lab_f(row(M[2])));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// Samples converted per batch: linear RGB waits in stack arrays, and the
/// batch loop (matrix, cube roots) vectorizes.
const BATCH: usize = 256;

/// Linear RGB (three planes) → CIELAB.
#[inline(always)]
fn lab_batch_any(r: &[f32], g: &[f32], b: &[f32], out: &mut [Lab]) {
    let n = out.len();
    let (r, g, b) = (&r[..n], &g[..n], &b[..n]);
    for (i, o) in out.iter_mut().enumerate() {
        *o = lab_of_linear([r[i], g[i], b[i]]);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lab_batch_avx2(r: &[f32], g: &[f32], b: &[f32], out: &mut [Lab]) {
    lab_batch_any(r, g, b, out)
}

fn lab_batch(r: &[f32], g: &[f32], b: &[f32], out: &mut [Lab]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { lab_batch_avx2(r, g, b, out) };
    }
    lab_batch_any(r, g, b, out)
}

/// Fills `out` (of `n` samples) batch by batch: `fill(start, r, g, b)`
/// writes the linear RGB of samples `start..start + r.len()`.
fn lab_batches(
    n: usize,
    out: &mut Vec<Lab>,
    mut fill: impl FnMut(usize, &mut [f32], &mut [f32], &mut [f32]),
) {
    out.clear();
    out.resize(n, [0.0; 3]);
    let (mut r, mut g, mut b) = ([0f32; BATCH], [0f32; BATCH], [0f32; BATCH]);
    for (k, chunk) in out.chunks_mut(BATCH).enumerate() {
        let m = chunk.len();
        fill(k * BATCH, &mut r[..m], &mut g[..m], &mut b[..m]);
        lab_batch(&r[..m], &g[..m], &b[..m], chunk);
    }
}

/// CIELAB of R'G'B' samples (nominally in `[0, 1]`; clipped like a
/// display).
pub fn lab_of_rgb(samples: &[[f32; 3]], out: &mut Vec<Lab>) {
    let t = eotf_table();
    lab_batches(samples.len(), out, |start, r, g, b| {
        for (i, p) in samples[start..start + r.len()].iter().enumerate() {
            r[i] = eotf(t, p[0]);
            g[i] = eotf(t, p[1]);
            b[i] = eotf(t, p[2]);
        }
    });
}

/// CIELAB of a Y'CbCr picture at the grid's pixels; `shift` is the chroma
/// subsampling (log2, x and y).
pub fn lab_of_picture(
    pic: &Picture<'_>,
    shift: (u32, u32),
    conv: &YuvToRgb,
    grid: &Grid,
    out: &mut Vec<Lab>,
) {
    let t = eotf_table();
    let bytes = pic[0].bytes;
    let cols = grid.cols();
    let at = |p: &Plane<'_>, x: usize, y: usize| -> f32 {
        let r = &p.data[y * p.stride..];
        if bytes == 1 {
            r[x] as f32
        } else {
            u16::from_le_bytes([r[2 * x], r[2 * x + 1]]) as f32
        }
    };
    out.clear();
    out.resize(grid.len(), [0.0; 3]);
    let (mut r, mut g, mut b) = ([0f32; BATCH], [0f32; BATCH], [0f32; BATCH]);
    for (gy, lab_row) in out.chunks_mut(cols).enumerate() {
        let y = gy * grid.step;
        let cy = y >> shift.1;
        for (k, chunk) in lab_row.chunks_mut(BATCH).enumerate() {
            let m = chunk.len();
            for i in 0..m {
                let x = (k * BATCH + i) * grid.step;
                let cx = x >> shift.0;
                let [rr, gg, bb] =
                    conv.rgb(at(&pic[0], x, y), at(&pic[1], cx, cy), at(&pic[2], cx, cy));
                r[i] = eotf(t, rr);
                g[i] = eotf(t, gg);
                b[i] = eotf(t, bb);
            }
            lab_batch(&r[..m], &g[..m], &b[..m], chunk);
        }
    }
}

/// CIEDE2000 colour difference (kL = kC = kH = 1), after Sharma, Wu & Dalal,
/// "The CIEDE2000 Color-Difference Formula: Implementation Notes,
/// Supplementary Test Data, and Mathematical Observations" (2005).
pub fn ciede2000(lab1: [f64; 3], lab2: [f64; 3]) -> f64 {
    let [l1, a1, b1] = lab1;
    let [l2, a2, b2] = lab2;
    const P25_7: f64 = 6_103_515_625.0; // 25^7
                                        // sqrt of the sum rather than hypot: Lab values cannot overflow, and
                                        // hypot's care costs a tenth of the whole formula.
    let c1 = (a1 * a1 + b1 * b1).sqrt();
    let c2 = (a2 * a2 + b2 * b2).sqrt();
    let cbar7 = ((c1 + c2) / 2.0).powi(7);
    let g = 0.5 * (1.0 - (cbar7 / (cbar7 + P25_7)).sqrt());
    let (a1p, a2p) = ((1.0 + g) * a1, (1.0 + g) * a2);
    let (c1p, c2p) = ((a1p * a1p + b1 * b1).sqrt(), (a2p * a2p + b2 * b2).sqrt());
    let hue = |b: f64, a: f64| {
        if a == 0.0 && b == 0.0 {
            0.0
        } else {
            let h = b.atan2(a).to_degrees();
            if h < 0.0 {
                h + 360.0
            } else {
                h
            }
        }
    };
    let (h1p, h2p) = (hue(b1, a1p), hue(b2, a2p));
    let dl = l2 - l1;
    let dc = c2p - c1p;
    let cprod = c1p * c2p;
    let dh = if cprod == 0.0 {
        0.0
    } else {
        let d = h2p - h1p;
        if d > 180.0 {
            d - 360.0
        } else if d < -180.0 {
            d + 360.0
        } else {
            d
        }
    };
    let dhh = 2.0 * cprod.sqrt() * (dh.to_radians() / 2.0).sin();
    let lbar = (l1 + l2) / 2.0;
    let cbarp = (c1p + c2p) / 2.0;
    let hbar = if cprod == 0.0 {
        h1p + h2p
    } else if (h1p - h2p).abs() <= 180.0 {
        (h1p + h2p) / 2.0
    } else if h1p + h2p < 360.0 {
        (h1p + h2p + 360.0) / 2.0
    } else {
        (h1p + h2p - 360.0) / 2.0
    };
    // T's four cosines from one sine/cosine of h̄ by the multiple-angle and
    // angle-sum identities (one libm call instead of four).
    let (s1, c1h) = hbar.to_radians().sin_cos();
    let (c2h, s2h) = (2.0 * c1h * c1h - 1.0, 2.0 * s1 * c1h);
    let (c3h, s3h) = (c1h * (4.0 * c1h * c1h - 3.0), s1 * (3.0 - 4.0 * s1 * s1));
    let (c4h, s4h) = (2.0 * c2h * c2h - 1.0, 2.0 * s2h * c2h);
    let (sin30, cos30) = 30f64.to_radians().sin_cos();
    let (sin6, cos6) = 6f64.to_radians().sin_cos();
    let (sin63, cos63) = 63f64.to_radians().sin_cos();
    let t = 1.0 - 0.17 * (c1h * cos30 + s1 * sin30) + 0.24 * c2h + 0.32 * (c3h * cos6 - s3h * sin6)
        - 0.20 * (c4h * cos63 + s4h * sin63);
    let dtheta = 30.0 * (-((hbar - 275.0) / 25.0).powi(2)).exp();
    let cbarp7 = cbarp.powi(7);
    let rc = 2.0 * (cbarp7 / (cbarp7 + P25_7)).sqrt();
    let l50 = (lbar - 50.0).powi(2);
    let sl = 1.0 + 0.015 * l50 / (20.0 + l50).sqrt();
    let sc = 1.0 + 0.045 * cbarp;
    let sh = 1.0 + 0.015 * cbarp * t;
    let rt = -(2.0 * dtheta).to_radians().sin() * rc;
    let (x, y, z) = (dl / sl, dc / sc, dhh / sh);
    (x * x + y * y + z * z + rt * y * z).max(0.0).sqrt()
}

/// ΔE2000 of every pair of samples.
pub fn delta_e(a: &[Lab], b: &[Lab], out: &mut Vec<f32>) {
    let w = |l: &Lab| [l[0] as f64, l[1] as f64, l[2] as f64];
    out.clear();
    out.extend(a.iter().zip(b).map(|(p, q)| {
        if p == q {
            0.0
        } else {
            ciede2000(w(p), w(q)) as f32
        }
    }));
}

/// One frame's ΔE2000.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FrameDeltaE {
    pub mean: f64,
    /// 99th percentile, nearest rank.
    pub p99: f64,
    pub max: f64,
}

/// Mean, p99 and max of one frame's samples (reordered in place).
pub fn frame_stats(values: &mut [f32]) -> FrameDeltaE {
    if values.is_empty() {
        return FrameDeltaE {
            mean: 0.0,
            p99: 0.0,
            max: 0.0,
        };
    }
    let n = values.len();
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let max = values.iter().copied().fold(0f32, f32::max) as f64;
    let rank = (0.99 * n as f64).ceil() as usize;
    let (_, p99, _) = values.select_nth_unstable_by(rank.clamp(1, n) - 1, f32::total_cmp);
    FrameDeltaE {
        mean,
        p99: *p99 as f64,
        max,
    }
}

/// ΔE2000 over a programme.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeltaESummary {
    pub mean: f64,
    /// 99th percentile of every sample of every frame, from a histogram of
    /// 0.01 bins (the bin's upper edge).
    pub p99: f64,
    pub max: f64,
    /// Frame (0-based) of the max.
    pub max_frame: u64,
    pub pixels_per_frame: u64,
    /// How it was measured: grid, conversions, formula.
    pub method: String,
}

/// The running programme figures.
#[derive(Debug, Clone)]
pub struct Programme {
    hist: Vec<u64>,
    sum: f64,
    count: u64,
    max: f64,
    max_frame: u64,
    pixels_per_frame: u64,
    method: String,
}

impl Programme {
    pub fn new(pixels_per_frame: u64, method: &str) -> Programme {
        Programme {
            hist: vec![0; BINS + 1],
            sum: 0.0,
            count: 0,
            max: 0.0,
            max_frame: 0,
            pixels_per_frame,
            method: method.to_owned(),
        }
    }

    /// Adds frame `frame`'s samples; returns its figures.
    pub fn push(&mut self, frame: u64, values: &mut [f32]) -> FrameDeltaE {
        for &v in values.iter() {
            self.hist[((v as f64 / BIN) as usize).min(BINS)] += 1;
        }
        self.sum += values.iter().map(|&v| v as f64).sum::<f64>();
        self.count += values.len() as u64;
        let f = frame_stats(values);
        if f.max > self.max || self.count == values.len() as u64 {
            self.max = f.max;
            self.max_frame = frame;
        }
        f
    }

    pub fn summary(&self) -> DeltaESummary {
        let rank = (0.99 * self.count as f64).ceil() as u64;
        let mut seen = 0;
        let mut p99 = self.max;
        for (i, &n) in self.hist.iter().enumerate().take(BINS) {
            seen += n;
            if seen >= rank.max(1) {
                p99 = ((i + 1) as f64 * BIN).min(self.max);
                break;
            }
        }
        DeltaESummary {
            mean: if self.count == 0 {
                0.0
            } else {
                self.sum / self.count as f64
            },
            p99,
            max: self.max,
            max_frame: self.max_frame,
            pixels_per_frame: self.pixels_per_frame,
            method: self.method.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Table 1 of Sharma, Wu & Dalal (2005): the 34 pairs and ΔE00.
    const SHARMA: [([f64; 3], [f64; 3], f64); 34] = [
        ([50.0, 2.6772, -79.7751], [50.0, 0.0, -82.7485], 2.0425),
        ([50.0, 3.1571, -77.2803], [50.0, 0.0, -82.7485], 2.8615),
        ([50.0, 2.8361, -74.0200], [50.0, 0.0, -82.7485], 3.4412),
        ([50.0, -1.3802, -84.2814], [50.0, 0.0, -82.7485], 1.0000),
        ([50.0, -1.1848, -84.8006], [50.0, 0.0, -82.7485], 1.0000),
        ([50.0, -0.9009, -85.5211], [50.0, 0.0, -82.7485], 1.0000),
        ([50.0, 0.0, 0.0], [50.0, -1.0, 2.0], 2.3669),
        ([50.0, -1.0, 2.0], [50.0, 0.0, 0.0], 2.3669),
        ([50.0, 2.4900, -0.0010], [50.0, -2.4900, 0.0009], 7.1792),
        ([50.0, 2.4900, -0.0010], [50.0, -2.4900, 0.0010], 7.1792),
        ([50.0, 2.4900, -0.0010], [50.0, -2.4900, 0.0011], 7.2195),
        ([50.0, 2.4900, -0.0010], [50.0, -2.4900, 0.0012], 7.2195),
        ([50.0, -0.0010, 2.4900], [50.0, 0.0009, -2.4900], 4.8045),
        ([50.0, -0.0010, 2.4900], [50.0, 0.0010, -2.4900], 4.8045),
        ([50.0, -0.0010, 2.4900], [50.0, 0.0011, -2.4900], 4.7461),
        ([50.0, -0.0010, 2.4900], [50.0, 0.0012, -2.4900], 4.7461),
        ([50.0, 2.5, 0.0], [50.0, 0.0, -2.5], 4.3065),
        ([50.0, 2.5, 0.0], [73.0, 25.0, -18.0], 27.1492),
        ([50.0, 2.5, 0.0], [61.0, -5.0, 29.0], 22.8977),
        ([50.0, 2.5, 0.0], [56.0, -27.0, -3.0], 31.9030),
        ([50.0, 2.5, 0.0], [58.0, 24.0, 15.0], 19.4535),
        ([50.0, 2.5, 0.0], [50.0, 3.1736, 0.5854], 1.0000),
        ([50.0, 2.5, 0.0], [50.0, 3.2972, 0.0], 1.0000),
        ([50.0, 2.5, 0.0], [50.0, 1.8634, 0.5757], 1.0000),
        ([50.0, 2.5, 0.0], [50.0, 3.2592, 0.3350], 1.0000),
        (
            [60.2574, -34.0099, 36.2677],
            [60.4626, -34.1751, 39.4387],
            1.2644,
        ),
        (
            [63.0109, -31.0961, -5.8663],
            [62.8187, -29.7946, -4.0864],
            1.2630,
        ),
        (
            [61.2901, 3.7196, -5.3901],
            [61.4292, 2.2480, -4.9620],
            1.8731,
        ),
        (
            [35.0831, -44.1164, 3.7933],
            [35.0232, -40.0716, 1.5901],
            1.8645,
        ),
        (
            [22.7233, 20.0904, -46.6940],
            [23.0331, 14.9730, -42.5619],
            2.0373,
        ),
        (
            [36.4612, 47.8580, 18.3852],
            [36.2715, 50.5065, 21.2231],
            1.4146,
        ),
        (
            [90.8027, -2.0831, 1.4410],
            [91.1528, -1.6435, 0.0447],
            1.4441,
        ),
        (
            [90.9257, -0.5406, -0.9208],
            [88.6381, -0.8985, -0.7239],
            1.5381,
        ),
        (
            [6.7747, -0.2908, -2.4247],
            [5.8714, -0.0985, -2.2286],
            0.6377,
        ),
    ];

    #[test]
    fn sharma_wu_dalal_table() {
        assert_eq!(SHARMA.len(), 34);
        for (i, (a, b, want)) in SHARMA.iter().enumerate() {
            let got = ciede2000(*a, *b);
            assert!(
                (got - want).abs() < 1e-4,
                "pair {}: {got:.6}, table {want}",
                i + 1
            );
            assert!(
                (ciede2000(*b, *a) - got).abs() < 1e-9,
                "pair {} symmetric",
                i + 1
            );
        }
    }

    #[test]
    fn fast_cube_root_is_exact_to_f32_precision() {
        // Over the range CIELAB takes it: (6/29)³ to 1.
        let mut worst = 0f64;
        for i in 0..=100_000 {
            let x = 0.008 + 0.992 * i as f64 / 100_000.0;
            let got = cbrt_pos(x as f32) as f64;
            worst = worst.max((got - (x as f32 as f64).cbrt()).abs() / x.cbrt());
        }
        assert!(worst < 4e-7, "relative error {worst}");
    }

    #[test]
    fn grid_is_4x4_up_to_720p_and_bounded_above() {
        assert_eq!(Grid::new(1280, 720).step, 4);
        assert_eq!(Grid::new(1280, 720).len(), 57_600);
        assert_eq!(Grid::new(1920, 1080).step, 8);
        assert_eq!(Grid::new(3840, 2160).len(), 32_400);
    }

    #[test]
    fn white_and_grey_are_neutral() {
        let mut lab = Vec::new();
        lab_of_rgb(&[[1.0; 3], [0.5; 3], [0.0; 3]], &mut lab);
        assert!((lab[0][0] - 100.0).abs() < 1e-3, "{:?}", lab[0]);
        for l in &lab {
            assert!(l[1].abs() < 1e-3 && l[2].abs() < 1e-3, "{l:?}");
        }
        assert!(lab[2][0].abs() < 1e-3);
    }

    #[test]
    fn limited_range_bt709_round_trips_primaries() {
        // BT.709 limited 8-bit red: Y' = 16 + 219 Kr, Cb = 128 - 112 Kr / (1 - Kb), Cr = 240.
        let conv = YuvToRgb::new(ColorTags::BT709_LIMITED, 1080, 8);
        let cb = 128.0 - 112.0 * 0.2126 / (1.0 - 0.0722);
        let [r, g, b] = conv.rgb(16.0 + 219.0 * 0.2126, cb, 240.0);
        assert!((r - 1.0).abs() < 1e-3 && g.abs() < 1e-3 && b.abs() < 1e-3);
        // Untagged SD follows BT.601 and says so.
        let sd = YuvToRgb::new(ColorTags::UNSPECIFIED, 480, 8);
        assert!(
            sd.describe().starts_with("BT.601 (untagged"),
            "{}",
            sd.describe()
        );
    }

    #[test]
    fn programme_percentile_and_max_frame() {
        let mut p = Programme::new(100, "test");
        let mut f0: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let mut f1: Vec<f32> = (0..100).map(|i| if i == 7 { 9.5 } else { 0.5 }).collect();
        let a = p.push(0, &mut f0);
        assert_eq!(a.max, 0.99f32 as f64);
        assert_eq!(a.p99, 0.98f32 as f64);
        let b = p.push(1, &mut f1);
        assert_eq!(b.max, 9.5);
        let s = p.summary();
        assert_eq!(s.max_frame, 1);
        assert_eq!(s.max, 9.5);
        // 200 samples: rank 198 is frame 0's 0.98, reported as the upper
        // edge of its 0.01 bin.
        assert!(s.p99 > 0.98 - 1e-6 && s.p99 <= 0.99 + 1e-9, "{}", s.p99);
    }
}
