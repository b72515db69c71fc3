//! Picture quality of a delivered stream against a reference: PSNR and SSIM
//! on every plane (Y, U, V at each plane's own size), as FFmpeg 5.1's `psnr`
//! and `ssim` filters define them, per frame; and the ΔE2000 colour
//! difference of [`crate::deltae`] where it was measured.
//!
//! SSIM is written by hand because no crate computes it the way FFmpeg does
//! (and the numbers in a report must match what a QC operator gets from
//! `ffmpeg -lavfi ssim`): 4×4 block sums combined into overlapping 8×8
//! windows at a stride of 4, the x264 formulation, with FFmpeg's rounded
//! integer constants and its single-precision window formula. The per-frame
//! "All" is Σ ssim_c × (plane area / total area); PSNR's per-frame average is
//! the PSNR of the area-weighted MSE, and the summary's per-plane and
//! average values are PSNRs of MSEs averaged over frames (what
//! `PSNR y:… u:… v:… average:…` prints).
//!
//! PSNR comes out of the SSIM pass: the block sums already hold Σa²+b² and
//! Σab per column, and Σ(a−b)² = Σa²+b² − 2Σab, so each plane is read once.

pub use crate::deltae::DeltaESummary;
use crate::deltae::{self, FrameDeltaE};

/// A borrowed picture plane.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    pub data: &'a [u8],
    /// Bytes from one row to the next.
    pub stride: usize,
    pub width: usize,
    pub height: usize,
    /// 1 for 8-bit, 2 for little-endian 16-bit containers.
    pub bytes: usize,
    /// Significant bits per sample (8 to 12).
    pub depth: u32,
}

impl<'a> Plane<'a> {
    #[inline]
    fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + self.width * self.bytes]
    }
}

/// What one plane pair measures: the sum of squared differences, and the sum
/// and count of SSIM windows (so bands of a plane add up).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PlaneStats {
    pub sse: u64,
    pub ssim_sum: f64,
    pub windows: u64,
}

impl PlaneStats {
    fn add(&mut self, o: PlaneStats) {
        self.sse += o.sse;
        self.ssim_sum += o.ssim_sum;
        self.windows += o.windows;
    }

    /// Mean SSIM over the plane's windows; 1 for a plane too small to hold
    /// one 8×8 window (FFmpeg divides by zero there).
    pub fn ssim(&self) -> f64 {
        if self.windows == 0 {
            1.0
        } else {
            self.ssim_sum / self.windows as f64
        }
    }
}

/// Per-column sums over one row of 4×4 blocks (four picture rows).
#[derive(Default)]
struct Cols {
    s1: Vec<u32>,
    s2: Vec<u32>,
    ss: Vec<u32>,
    s12: Vec<u32>,
}

/// Per-block sums of one block row.
#[derive(Default, Clone)]
struct Blocks {
    s1: Vec<u32>,
    s2: Vec<u32>,
    ss: Vec<u32>,
    s12: Vec<u32>,
}

impl Cols {
    fn new(w: usize) -> Cols {
        Cols {
            s1: vec![0; w],
            s2: vec![0; w],
            ss: vec![0; w],
            s12: vec![0; w],
        }
    }

    /// Sums picture rows `y0..y0 + 4` of both planes per column, the four
    /// rows at once so that every column is written once.
    #[inline(always)]
    fn accumulate(&mut self, a: &Plane<'_>, b: &Plane<'_>, y0: usize) {
        let w = a.width;
        let (s1, s2) = (&mut self.s1[..w], &mut self.s2[..w]);
        let (ss, s12) = (&mut self.ss[..w], &mut self.s12[..w]);
        if a.bytes == 1 {
            let ra: [&[u8]; 4] = std::array::from_fn(|i| &a.row(y0 + i)[..w]);
            let rb: [&[u8]; 4] = std::array::from_fn(|i| &b.row(y0 + i)[..w]);
            for x in 0..w {
                // Products of 8-bit samples fit u16: the multiplies stay 16
                // bits wide (pmullw) and only the sums widen.
                let p = [ra[0][x], ra[1][x], ra[2][x], ra[3][x]].map(u16::from);
                let q = [rb[0][x], rb[1][x], rb[2][x], rb[3][x]].map(u16::from);
                s1[x] = (p[0] + p[1] + p[2] + p[3]) as u32;
                s2[x] = (q[0] + q[1] + q[2] + q[3]) as u32;
                let sq = |v: u16| (v * v) as u32;
                ss[x] = sq(p[0])
                    + sq(p[1])
                    + sq(p[2])
                    + sq(p[3])
                    + sq(q[0])
                    + sq(q[1])
                    + sq(q[2])
                    + sq(q[3]);
                s12[x] = (p[0] * q[0]) as u32
                    + (p[1] * q[1]) as u32
                    + (p[2] * q[2]) as u32
                    + (p[3] * q[3]) as u32;
            }
        } else {
            let ra: [&[u8]; 4] = std::array::from_fn(|i| &a.row(y0 + i)[..2 * w]);
            let rb: [&[u8]; 4] = std::array::from_fn(|i| &b.row(y0 + i)[..2 * w]);
            let at = |r: &[u8], x: usize| u16::from_le_bytes([r[2 * x], r[2 * x + 1]]) as u32;
            for x in 0..w {
                let p = [at(ra[0], x), at(ra[1], x), at(ra[2], x), at(ra[3], x)];
                let q = [at(rb[0], x), at(rb[1], x), at(rb[2], x), at(rb[3], x)];
                s1[x] = p[0] + p[1] + p[2] + p[3];
                s2[x] = q[0] + q[1] + q[2] + q[3];
                ss[x] = p.iter().chain(&q).map(|v| v * v).sum();
                s12[x] = p[0] * q[0] + p[1] * q[1] + p[2] * q[2] + p[3] * q[3];
            }
        }
    }

    #[inline(always)]
    fn blocks(&self, out: &mut Blocks) {
        let sum4 = |o: &mut Vec<u32>, c: &[u32]| {
            o.resize(c.len() / 4, 0);
            for (d, c) in o.iter_mut().zip(c.chunks_exact(4)) {
                *d = c[0] + c[1] + c[2] + c[3];
            }
        };
        sum4(&mut out.s1, &self.s1);
        sum4(&mut out.s2, &self.s2);
        sum4(&mut out.ss, &self.ss);
        sum4(&mut out.s12, &self.s12);
    }
}

impl Blocks {
    /// Σ(a−b)² = Σa²+b² − 2Σab over the blocks, plus the columns right of
    /// the last whole block.
    #[inline(always)]
    fn sse(&self, cols: &Cols) -> u64 {
        let tail = self.ss.len() * 4;
        let part = |ss: &[u32], s12: &[u32]| -> u64 {
            ss.iter().zip(s12).map(|(&s, &p)| (s - 2 * p) as u64).sum()
        };
        part(&self.ss, &self.s12) + part(&cols.ss[tail..], &cols.s12[tail..])
    }
}

/// Σ(a−b)² of picture rows `rows` (those below the last whole block row).
fn sse_rows(a: &Plane<'_>, b: &Plane<'_>, rows: std::ops::Range<usize>) -> u64 {
    let mut total = 0u64;
    for y in rows {
        let (ra, rb) = (a.row(y), b.row(y));
        total += if a.bytes == 1 {
            ra.iter()
                .zip(rb)
                .map(|(&p, &q)| (p.abs_diff(q) as u32).pow(2) as u64)
                .sum::<u64>()
        } else {
            ra.chunks_exact(2)
                .zip(rb.chunks_exact(2))
                .map(|(p, q)| {
                    let d =
                        u16::from_le_bytes([p[0], p[1]]).abs_diff(u16::from_le_bytes([q[0], q[1]]));
                    (d as u64).pow(2)
                })
                .sum::<u64>()
        };
    }
    total
}

/// Sum of the SSIM of the `bw - 1` windows spanning two block rows.
#[inline(always)]
fn end_line(p: &Blocks, c: &Blocks, depth: u32, vals: &mut Vec<f32>) -> f64 {
    let n = p.s1.len().saturating_sub(1);
    vals.clear();
    vals.resize(n, 0.0);
    let out = &mut vals[..n];
    // The four blocks of each window, as slices of exactly `n` so that the
    // loops below carry no bounds checks and vectorize.
    fn quad<'a>(v: &'a [u32], u: &'a [u32], n: usize) -> [&'a [u32]; 4] {
        [&v[..n], &v[1..n + 1], &u[..n], &u[1..n + 1]]
    }
    let (q1, q2) = (quad(&p.s1, &c.s1, n), quad(&p.s2, &c.s2, n));
    let (qs, qp) = (quad(&p.ss, &c.ss, n), quad(&p.s12, &c.s12, n));
    if depth == 8 {
        // FFmpeg's ssim_end1: integer sums, rounded constants, float formula.
        const C1: i32 = 416; // (int)(.01*.01*255*255*64 + .5)
        const C2: i32 = 235963; // (int)(.03*.03*255*255*64*63 + .5)
        for (i, o) in out.iter_mut().enumerate() {
            let w = |q: &[&[u32]; 4]| (q[0][i] + q[1][i] + q[2][i] + q[3][i]) as i32;
            let (s1, s2, ss, s12) = (w(&q1), w(&q2), w(&qs), w(&qp));
            let vars = ss * 64 - s1 * s1 - s2 * s2;
            let covar = s12 * 64 - s1 * s2;
            *o = (2 * s1 * s2 + C1) as f32 * (2 * covar + C2) as f32
                / ((s1 * s1 + s2 * s2 + C1) as f32 * (vars + C2) as f32);
        }
    } else {
        // ssim_end1x: the same in 64-bit integers.
        let max = ((1u64 << depth) - 1) as f64;
        let c1 = (0.01 * 0.01 * max * max * 64.0 + 0.5) as i64;
        let c2 = (0.03 * 0.03 * max * max * 64.0 * 63.0 + 0.5) as i64;
        for (i, o) in out.iter_mut().enumerate() {
            let w = |q: &[&[u32]; 4]| q.iter().map(|r| r[i] as i64).sum::<i64>();
            let (s1, s2, ss, s12) = (w(&q1), w(&q2), w(&qs), w(&qp));
            let vars = ss * 64 - s1 * s1 - s2 * s2;
            let covar = s12 * 64 - s1 * s2;
            *o = (2 * s1 * s2 + c1) as f32 * (2 * covar + c2) as f32
                / ((s1 * s1 + s2 * s2 + c1) as f32 * (vars + c2) as f32);
        }
    }
    // Eight partial sums: vectorizes, and f32 rounding stays far below
    // FFmpeg's printed precision.
    let mut acc = [0f32; 8];
    let chunks = vals.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for ch in chunks {
        for (a, v) in acc.iter_mut().zip(ch) {
            *a += v;
        }
    }
    acc.iter().map(|&v| v as f64).sum::<f64>() + rest as f64
}

/// Block rows of a plane (each 4 picture rows).
fn block_rows(a: &Plane<'_>) -> usize {
    a.height / 4
}

/// PSNR's SSE and SSIM's windows of the band of block rows `b0..b1` of a
/// plane pair: windows whose lower block row is in the band, SSE of the
/// band's picture rows (the last band also takes the rows below the last
/// whole block row).
///
/// # Panics
/// On planes of different sizes or layouts, or a depth above 12 bits.
pub fn plane_band(a: &Plane<'_>, b: &Plane<'_>, b0: usize, b1: usize) -> PlaneStats {
    assert!(
        a.width == b.width && a.height == b.height && a.bytes == b.bytes && a.depth == b.depth,
        "planes of different layouts"
    );
    assert!(a.depth <= 12, "sums are 32-bit: at most 12-bit samples");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { plane_band_avx2(a, b, b0, b1) };
    }
    plane_band_any(a, b, b0, b1)
}

/// [`plane_band_any`] compiled for AVX2: twice the vector width of the
/// x86-64 baseline (SSE2) for the same source.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn plane_band_avx2(a: &Plane<'_>, b: &Plane<'_>, b0: usize, b1: usize) -> PlaneStats {
    plane_band_any(a, b, b0, b1)
}

#[inline(always)]
fn plane_band_any(a: &Plane<'_>, b: &Plane<'_>, b0: usize, b1: usize) -> PlaneStats {
    let h = a.height;
    let (bw, bh) = (a.width / 4, block_rows(a));
    let mut out = PlaneStats::default();
    let mut cols = Cols::new(a.width);
    let mut prev = Blocks::default();
    let mut cur = Blocks::default();
    let mut vals = Vec::with_capacity(bw);
    let first = b0.saturating_sub(1);
    for by in first..b1.min(bh) {
        cols.accumulate(a, b, by * 4);
        cols.blocks(&mut cur);
        if by >= b0 {
            out.sse += cur.sse(&cols);
        }
        if by >= b0 && by >= 1 && bw >= 2 {
            out.ssim_sum += end_line(&prev, &cur, a.depth, &mut vals);
            out.windows += (bw - 1) as u64;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    if b1 >= bh {
        out.sse += sse_rows(a, b, bh * 4..h);
    }
    out
}

/// SSE and SSIM of a whole plane pair, on this thread.
pub fn plane_stats(a: &Plane<'_>, b: &Plane<'_>) -> PlaneStats {
    plane_band(a, b, 0, usize::MAX)
}

/// Sum of squared differences.
pub fn sse(a: &Plane<'_>, b: &Plane<'_>) -> u64 {
    plane_stats(a, b).sse
}

/// SSIM of one plane, FFmpeg's definition.
pub fn ssim(a: &Plane<'_>, b: &Plane<'_>) -> f64 {
    plane_stats(a, b).ssim()
}

/// PSNR in dB from a mean squared error; `None` for identical pictures
/// (infinite PSNR), as FFmpeg prints `inf`.
pub fn psnr_from_mse(mse: f64, depth: u32) -> Option<f64> {
    let max = ((1u32 << depth) - 1) as f64;
    (mse > 0.0).then(|| 10.0 * (max * max / mse).log10())
}

/// The three planes of a Y'CbCr picture.
pub type Picture<'a> = [Plane<'a>; 3];

/// One frame pair's measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FrameQuality {
    /// Mean squared error per plane (Y, U, V).
    pub mse: [f64; 3],
    /// Area-weighted MSE of the three planes.
    pub mse_avg: f64,
    pub ssim: [f64; 3],
    /// Σ ssim_c × plane area / total area (FFmpeg's "All").
    pub ssim_all: f64,
    pub depth: u32,
}

/// Measures a picture pair, splitting every plane into `threads` bands of
/// block rows measured in parallel (1: on this thread).
///
/// # Panics
/// On pictures whose planes differ in size or layout.
pub fn measure(a: &Picture<'_>, b: &Picture<'_>, threads: usize) -> FrameQuality {
    let threads = threads.max(1);
    let mut stats = [PlaneStats::default(); 3];
    if threads == 1 {
        for c in 0..3 {
            stats[c] = plane_stats(&a[c], &b[c]);
        }
    } else {
        // Every thread takes the same share of every plane: equal work.
        let band = |c: usize, k: usize| {
            let n = block_rows(&a[c]);
            let lo = n * k / threads;
            let hi = if k + 1 == threads {
                usize::MAX
            } else {
                n * (k + 1) / threads
            };
            plane_band(&a[c], &b[c], lo, hi)
        };
        let parts: Vec<[PlaneStats; 3]> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..threads)
                .map(|k| s.spawn(move || [band(0, k), band(1, k), band(2, k)]))
                .collect();
            let mut parts = vec![[band(0, 0), band(1, 0), band(2, 0)]];
            parts.extend(
                handles
                    .into_iter()
                    .map(|h| h.join().expect("metric thread")),
            );
            parts
        });
        for p in parts {
            for c in 0..3 {
                stats[c].add(p[c]);
            }
        }
    }
    let area = |p: &Plane<'_>| (p.width * p.height) as f64;
    let total: f64 = a.iter().map(area).sum();
    let mut q = FrameQuality {
        depth: a[0].depth,
        ..Default::default()
    };
    for c in 0..3 {
        let weight = area(&a[c]) / total;
        q.mse[c] = stats[c].sse as f64 / area(&a[c]);
        q.ssim[c] = stats[c].ssim();
        q.mse_avg += q.mse[c] * weight;
        q.ssim_all += q.ssim[c] * weight;
    }
    q
}

/// Per-frame quality of a programme. ΔE vectors are empty when ΔE was not
/// measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Series {
    /// Per-frame PSNR (dB); `null` where the plane is identical.
    pub psnr_y: Vec<Option<f64>>,
    pub psnr_u: Vec<Option<f64>>,
    pub psnr_v: Vec<Option<f64>>,
    /// PSNR of the area-weighted MSE of the three planes.
    pub psnr_avg: Vec<Option<f64>>,
    pub ssim_y: Vec<f64>,
    pub ssim_u: Vec<f64>,
    pub ssim_v: Vec<f64>,
    pub ssim_all: Vec<f64>,
    pub delta_e_mean: Vec<f64>,
    pub delta_e_p99: Vec<f64>,
    pub delta_e_max: Vec<f64>,
    /// Σ per-frame MSE: Y, U, V, weighted average.
    #[serde(skip)]
    mse_sum: [f64; 4],
    #[serde(skip)]
    depth: u32,
    #[serde(skip)]
    delta_e: Option<deltae::Programme>,
}

/// Summary values of a [`Series`]: means over frames, as FFmpeg prints them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub frames: usize,
    /// PSNR of the mean MSE over all frames (FFmpeg's summary); `None` = identical.
    pub psnr_y: Option<f64>,
    pub psnr_u: Option<f64>,
    pub psnr_v: Option<f64>,
    /// FFmpeg's `average:`: PSNR of the mean area-weighted MSE.
    pub psnr_avg: Option<f64>,
    /// Worst frame's luma PSNR; `None` when every frame is identical.
    pub psnr_y_min: Option<f64>,
    pub ssim_y: f64,
    pub ssim_u: f64,
    pub ssim_v: f64,
    pub ssim_all: f64,
    pub ssim_y_min: f64,
    pub ssim_all_min: f64,
    pub delta_e: Option<DeltaESummary>,
}

impl Series {
    /// Adds one frame's PSNR/SSIM.
    pub fn push(&mut self, q: &FrameQuality) {
        self.depth = q.depth;
        let psnr = |m: f64| psnr_from_mse(m, q.depth);
        for (s, m) in self
            .mse_sum
            .iter_mut()
            .zip(q.mse.iter().chain([&q.mse_avg]))
        {
            *s += m;
        }
        self.psnr_y.push(psnr(q.mse[0]));
        self.psnr_u.push(psnr(q.mse[1]));
        self.psnr_v.push(psnr(q.mse[2]));
        self.psnr_avg.push(psnr(q.mse_avg));
        self.ssim_y.push(q.ssim[0]);
        self.ssim_u.push(q.ssim[1]);
        self.ssim_v.push(q.ssim[2]);
        self.ssim_all.push(q.ssim_all);
    }

    /// Adds the ΔE2000 samples of the frame last given to [`Series::push`]
    /// (reordered in place); `method` says how they were taken (the first
    /// frame's is kept for the programme).
    pub fn push_delta_e(&mut self, values: &mut [f32], method: &str) -> FrameDeltaE {
        let frame = self.ssim_y.len().saturating_sub(1) as u64;
        let p = self
            .delta_e
            .get_or_insert_with(|| deltae::Programme::new(values.len() as u64, method));
        let f = p.push(frame, values);
        self.delta_e_mean.push(f.mean);
        self.delta_e_p99.push(f.p99);
        self.delta_e_max.push(f.max);
        f
    }

    pub fn summary(&self) -> Summary {
        let frames = self.ssim_y.len();
        let n = frames.max(1) as f64;
        let depth = self.depth.max(8);
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min).min(1.0);
        let psnr_min = self
            .psnr_y
            .iter()
            .map(|p| p.unwrap_or(f64::INFINITY))
            .fold(f64::INFINITY, f64::min);
        Summary {
            frames,
            psnr_y: psnr_from_mse(self.mse_sum[0] / n, depth),
            psnr_u: psnr_from_mse(self.mse_sum[1] / n, depth),
            psnr_v: psnr_from_mse(self.mse_sum[2] / n, depth),
            psnr_avg: psnr_from_mse(self.mse_sum[3] / n, depth),
            psnr_y_min: psnr_min.is_finite().then_some(psnr_min),
            ssim_y: mean(&self.ssim_y),
            ssim_u: mean(&self.ssim_u),
            ssim_v: mean(&self.ssim_v),
            ssim_all: mean(&self.ssim_all),
            ssim_y_min: min(&self.ssim_y),
            ssim_all_min: min(&self.ssim_all),
            delta_e: self.delta_e.as_ref().map(deltae::Programme::summary),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect()
    }

    fn p8(d: &[u8], w: usize, h: usize) -> Plane<'_> {
        Plane {
            data: d,
            stride: w,
            width: w,
            height: h,
            bytes: 1,
            depth: 8,
        }
    }

    /// The textbook definitions, pixel by pixel, in f64 (FFmpeg's windows:
    /// 8×8 at a stride of 4).
    fn naive(a: &Plane<'_>, b: &Plane<'_>) -> (u64, f64) {
        let at = |p: &Plane<'_>, x: usize, y: usize| -> i64 {
            if p.bytes == 1 {
                p.data[y * p.stride + x] as i64
            } else {
                let i = y * p.stride + 2 * x;
                u16::from_le_bytes([p.data[i], p.data[i + 1]]) as i64
            }
        };
        let mut sse = 0u64;
        for y in 0..a.height {
            for x in 0..a.width {
                let d = at(a, x, y) - at(b, x, y);
                sse += (d * d) as u64;
            }
        }
        let max = ((1u64 << a.depth) - 1) as f64;
        let (c1, c2) = (
            (0.01 * 0.01 * max * max * 64.0 + 0.5).floor(),
            (0.03 * 0.03 * max * max * 64.0 * 63.0 + 0.5).floor(),
        );
        let (mut total, mut n) = (0.0, 0);
        for wy in 0..a.height / 4 - 1 {
            for wx in 0..a.width / 4 - 1 {
                let (mut s1, mut s2, mut ss, mut s12) = (0.0, 0.0, 0.0, 0.0);
                for y in wy * 4..wy * 4 + 8 {
                    for x in wx * 4..wx * 4 + 8 {
                        let (p, q) = (at(a, x, y) as f64, at(b, x, y) as f64);
                        s1 += p;
                        s2 += q;
                        ss += p * p + q * q;
                        s12 += p * q;
                    }
                }
                let vars = ss * 64.0 - s1 * s1 - s2 * s2;
                let covar = s12 * 64.0 - s1 * s2;
                total += (2.0 * s1 * s2 + c1) * (2.0 * covar + c2)
                    / ((s1 * s1 + s2 * s2 + c1) * (vars + c2));
                n += 1;
            }
        }
        (sse, total / n as f64)
    }

    #[test]
    fn identical_planes_have_ssim_one_and_infinite_psnr() {
        let a = plane(64, 48, |x, y| (x * 3 + y) as u8);
        let c = plane(32, 24, |x, y| (x + y * 5) as u8);
        let pic = [p8(&a, 64, 48), p8(&c, 32, 24), p8(&c, 32, 24)];
        let mut s = Series::default();
        s.push(&measure(&pic, &pic, 2));
        let sum = s.summary();
        assert_eq!(sum.psnr_y, None);
        assert_eq!(sum.psnr_avg, None);
        assert!((sum.ssim_all - 1.0).abs() < 1e-6, "{}", sum.ssim_all);
    }

    #[test]
    fn psnr_of_a_constant_error() {
        let a = plane(32, 32, |_, _| 100);
        let b = plane(32, 32, |_, _| 110);
        let mse = sse(&p8(&a, 32, 32), &p8(&b, 32, 32)) as f64 / 1024.0;
        assert_eq!(mse, 100.0);
        let p = psnr_from_mse(mse, 8).unwrap();
        assert!((p - 10.0 * (65025.0f64 / 100.0).log10()).abs() < 1e-9);
    }

    #[test]
    fn fast_paths_match_the_definitions_on_odd_sizes() {
        // 67×45: remainder columns and rows outside whole 4×4 blocks.
        let (w, h) = (67, 45);
        let a = plane(w, h, |x, y| ((x * 7 + y * 13) % 251) as u8);
        let b = plane(w, h, |x, y| {
            (((x * 7 + y * 13) % 251) as u8).wrapping_add(((x * y) % 11) as u8)
        });
        let (pa, pb) = (p8(&a, w, h), p8(&b, w, h));
        let (sse_ref, ssim_ref) = naive(&pa, &pb);
        let st = plane_stats(&pa, &pb);
        assert_eq!(st.sse, sse_ref);
        assert!(
            (st.ssim() - ssim_ref).abs() < 1e-6,
            "{} {ssim_ref}",
            st.ssim()
        );
        // Bands add up to the whole plane.
        let mut bands = PlaneStats::default();
        for (lo, hi) in [(0, 3), (3, 7), (7, usize::MAX)] {
            bands.add(plane_band(&pa, &pb, lo, hi));
        }
        assert_eq!(bands.sse, st.sse);
        assert_eq!(bands.windows, st.windows);
        assert!((bands.ssim_sum - st.ssim_sum).abs() < 1e-9);
    }

    #[test]
    fn ten_bit_path_matches_the_definitions() {
        let (w, h) = (40, 36);
        let to16 = |f: &dyn Fn(usize, usize) -> u16| -> Vec<u8> {
            (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .flat_map(|(x, y)| f(x, y).to_le_bytes())
                .collect()
        };
        let a = to16(&|x, y| ((x * 37 + y * 91) % 1024) as u16);
        let b = to16(&|x, y| (((x * 37 + y * 91) % 1024) as u16 + (x % 5) as u16).min(1023));
        let p = |d| Plane {
            data: d,
            stride: w * 2,
            width: w,
            height: h,
            bytes: 2,
            depth: 10,
        };
        let (sse_ref, ssim_ref) = naive(&p(&a), &p(&b));
        let st = plane_stats(&p(&a), &p(&b));
        assert_eq!(st.sse, sse_ref);
        assert!((st.ssim() - ssim_ref).abs() < 1e-6);
    }

    #[test]
    fn weights_follow_plane_areas() {
        // 4:2:0: Y is 4/6 of the samples; an error only in U moves the
        // average MSE by 1/6 of U's MSE.
        let y = plane(32, 32, |x, _| x as u8);
        let u = plane(16, 16, |_, _| 100);
        let u2 = plane(16, 16, |_, _| 106);
        let a = [p8(&y, 32, 32), p8(&u, 16, 16), p8(&u, 16, 16)];
        let b = [p8(&y, 32, 32), p8(&u2, 16, 16), p8(&u, 16, 16)];
        let q = measure(&a, &b, 1);
        assert_eq!(q.mse, [0.0, 36.0, 0.0]);
        assert!((q.mse_avg - 6.0).abs() < 1e-12);
    }
}
