//! Picture quality of a delivered stream against the render it was made
//! from: PSNR and SSIM on luma, as FFmpeg's `psnr` and `ssim` filters define
//! them, per frame.
//!
//! SSIM is written by hand because no crate computes it the way FFmpeg does
//! (and the numbers in a report must match what a QC operator gets from
//! `ffmpeg -lavfi ssim`): 4×4 block sums combined into overlapping 8×8
//! windows at a stride of 4, the x264 formulation.

/// A borrowed luma plane.
#[derive(Debug, Clone, Copy)]
pub struct Luma<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
    /// 1 for 8-bit, 2 for little-endian 16-bit containers.
    pub bytes: usize,
    pub depth: u32,
}

impl Luma<'_> {
    #[inline]
    fn row_u32(&self, y: usize, out: &mut Vec<u32>) {
        out.clear();
        let r = &self.data[y * self.stride..];
        if self.bytes == 1 {
            out.extend(r[..self.width].iter().map(|&v| v as u32));
        } else {
            out.extend(
                r[..self.width * 2]
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32),
            );
        }
    }
}

/// Sum of squared differences.
pub fn sse(a: &Luma<'_>, b: &Luma<'_>) -> u64 {
    if a.bytes == 1 && b.bytes == 1 {
        return (0..a.height)
            .map(|y| {
                let ra = &a.data[y * a.stride..y * a.stride + a.width];
                let rb = &b.data[y * b.stride..y * b.stride + a.width];
                ra.iter()
                    .zip(rb)
                    .map(|(&x, &y)| {
                        let d = x as i32 - y as i32;
                        (d * d) as u32
                    })
                    .map(u64::from)
                    .sum::<u64>()
            })
            .sum();
    }
    let mut ra = Vec::with_capacity(a.width);
    let mut rb = Vec::with_capacity(b.width);
    let mut total = 0u64;
    for y in 0..a.height {
        a.row_u32(y, &mut ra);
        b.row_u32(y, &mut rb);
        total += ra
            .iter()
            .zip(&rb)
            .map(|(&x, &y)| {
                let d = x as i64 - y as i64;
                (d * d) as u64
            })
            .sum::<u64>();
    }
    total
}

/// PSNR in dB from a mean squared error; `None` for identical pictures
/// (infinite PSNR), as FFmpeg prints `inf`.
pub fn psnr_from_mse(mse: f64, depth: u32) -> Option<f64> {
    let max = ((1u32 << depth) - 1) as f64;
    (mse > 0.0).then(|| 10.0 * (max * max / mse).log10())
}

/// SSIM of one plane, FFmpeg's definition.
pub fn ssim(a: &Luma<'_>, b: &Luma<'_>) -> f64 {
    let (w, h) = (a.width, a.height);
    let (bw, bh) = (w / 4, h / 4);
    if bw < 2 || bh < 2 {
        return 1.0;
    }
    let max = ((1u64 << a.depth) - 1) as f64;
    let c1 = 0.01 * 0.01 * max * max * 64.0;
    let c2 = 0.03 * 0.03 * max * max * 64.0 * 63.0;
    // Per 4x4 block: [sum a, sum b, sum a²+b², sum ab], two block rows at a time.
    let mut prev: Vec<[u64; 4]> = vec![[0; 4]; bw];
    let mut cur: Vec<[u64; 4]> = vec![[0; 4]; bw];
    let mut ra = Vec::with_capacity(w);
    let mut rb = Vec::with_capacity(w);
    let mut total = 0.0f64;
    let block_row = |by: usize, out: &mut Vec<[u64; 4]>, ra: &mut Vec<u32>, rb: &mut Vec<u32>| {
        out.iter_mut().for_each(|s| *s = [0; 4]);
        if a.bytes == 1 && b.bytes == 1 {
            // 8-bit: sums of a 4x4 block fit in u32.
            for y in by * 4..by * 4 + 4 {
                let pa = &a.data[y * a.stride..y * a.stride + bw * 4];
                let pb = &b.data[y * b.stride..y * b.stride + bw * 4];
                for ((s, qa), qb) in out
                    .iter_mut()
                    .zip(pa.chunks_exact(4))
                    .zip(pb.chunks_exact(4))
                {
                    let (mut s1, mut s2, mut ss, mut s12) = (0u32, 0u32, 0u32, 0u32);
                    for i in 0..4 {
                        let (p, q) = (qa[i] as u32, qb[i] as u32);
                        s1 += p;
                        s2 += q;
                        ss += p * p + q * q;
                        s12 += p * q;
                    }
                    s[0] += s1 as u64;
                    s[1] += s2 as u64;
                    s[2] += ss as u64;
                    s[3] += s12 as u64;
                }
            }
            return;
        }
        for y in by * 4..by * 4 + 4 {
            a.row_u32(y, ra);
            b.row_u32(y, rb);
            for (bx, s) in out.iter_mut().enumerate() {
                for x in bx * 4..bx * 4 + 4 {
                    let (p, q) = (ra[x] as u64, rb[x] as u64);
                    s[0] += p;
                    s[1] += q;
                    s[2] += p * p + q * q;
                    s[3] += p * q;
                }
            }
        }
    };
    block_row(0, &mut prev, &mut ra, &mut rb);
    for by in 1..bh {
        block_row(by, &mut cur, &mut ra, &mut rb);
        for bx in 0..bw - 1 {
            let mut s = [0u64; 4];
            for blk in [&prev[bx], &prev[bx + 1], &cur[bx], &cur[bx + 1]] {
                for k in 0..4 {
                    s[k] += blk[k];
                }
            }
            let (s1, s2, ss, s12) = (s[0] as f64, s[1] as f64, s[2] as f64, s[3] as f64);
            let vars = ss * 64.0 - s1 * s1 - s2 * s2;
            let covar = s12 * 64.0 - s1 * s2;
            total += (2.0 * s1 * s2 + c1) * (2.0 * covar + c2)
                / ((s1 * s1 + s2 * s2 + c1) * (vars + c2));
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    total / ((bw - 1) * (bh - 1)) as f64
}

/// Per-frame luma quality of a deliverable.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Series {
    /// Per-frame PSNR (dB); `null` where the frame is identical.
    pub psnr_y: Vec<Option<f64>>,
    pub ssim_y: Vec<f64>,
    #[serde(skip)]
    mse_sum: f64,
    #[serde(skip)]
    depth: u32,
}

/// Summary values of a [`Series`].
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Summary {
    pub frames: usize,
    /// PSNR of the mean MSE over all frames (FFmpeg's "average"); `None` = identical.
    pub psnr_y_mean: Option<f64>,
    pub psnr_y_min: Option<f64>,
    pub ssim_y_mean: f64,
    pub ssim_y_min: f64,
}

impl Series {
    /// Adds one frame pair.
    pub fn push(&mut self, reference: &Luma<'_>, distorted: &Luma<'_>) {
        let n = (reference.width * reference.height) as f64;
        let mse = sse(reference, distorted) as f64 / n;
        self.depth = reference.depth;
        self.mse_sum += mse;
        self.psnr_y.push(psnr_from_mse(mse, reference.depth));
        self.ssim_y.push(ssim(reference, distorted));
    }

    pub fn summary(&self) -> Summary {
        let frames = self.ssim_y.len();
        let mean_mse = if frames == 0 {
            0.0
        } else {
            self.mse_sum / frames as f64
        };
        let psnr_min = self
            .psnr_y
            .iter()
            .map(|p| p.unwrap_or(f64::INFINITY))
            .fold(f64::INFINITY, f64::min);
        Summary {
            frames,
            psnr_y_mean: psnr_from_mse(mean_mse, self.depth.max(8)),
            psnr_y_min: psnr_min.is_finite().then_some(psnr_min),
            ssim_y_mean: if frames == 0 {
                0.0
            } else {
                self.ssim_y.iter().sum::<f64>() / frames as f64
            },
            ssim_y_min: self
                .ssim_y
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .min(1.0),
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

    fn luma(d: &[u8], w: usize, h: usize) -> Luma<'_> {
        Luma {
            data: d,
            stride: w,
            width: w,
            height: h,
            bytes: 1,
            depth: 8,
        }
    }

    #[test]
    fn identical_planes_have_ssim_one_and_infinite_psnr() {
        let a = plane(64, 48, |x, y| (x * 3 + y) as u8);
        let mut s = Series::default();
        s.push(&luma(&a, 64, 48), &luma(&a, 64, 48));
        let sum = s.summary();
        assert_eq!(sum.psnr_y_mean, None);
        assert!((sum.ssim_y_mean - 1.0).abs() < 1e-12);
    }

    #[test]
    fn psnr_of_a_constant_error() {
        let a = plane(32, 32, |_, _| 100);
        let b = plane(32, 32, |_, _| 110);
        let mse = sse(&luma(&a, 32, 32), &luma(&b, 32, 32)) as f64 / 1024.0;
        assert_eq!(mse, 100.0);
        let p = psnr_from_mse(mse, 8).unwrap();
        assert!((p - 10.0 * (65025.0f64 / 100.0).log10()).abs() < 1e-9);
    }

    #[test]
    fn noise_lowers_ssim() {
        let a = plane(64, 64, |x, y| ((x * 7 + y * 13) % 200) as u8);
        let b = plane(64, 64, |x, y| {
            (((x * 7 + y * 13) % 200) as u8).wrapping_add(((x * y) % 9) as u8)
        });
        let s = ssim(&luma(&a, 64, 64), &luma(&b, 64, 64));
        assert!(s < 0.999 && s > 0.5, "{s}");
    }
}
