//! [`Colour::apply`] eight pixels at a time with AVX2, for the common case:
//! opaque pixels, every gamma 1, linear light and graded values inside the
//! tables' `[0, 1]`. The same operations in the same order, each rounded as
//! the scalar code rounds it (no FMA; table reads by scalar loads), so the same
//! bits; a block of eight where any pixel leaves that case goes through
//! the scalar code instead.
//!
//! Lanes hold the pixels in the order `0 2 4 6 1 3 5 7` (what the 4×4
//! transposes within each 128-bit half give); every step is lane-wise and
//! the transpose back restores the order.

use super::{Colour, Finish};
use crate::render::convert::{EOTF_STEPS, OETF_STEPS};
use crate::render::simd::{clamp01, deinterleave, lerp, load_pixels, lookup, store_pixels};
use std::arch::x86_64::*;

impl Colour<'_> {
    /// [`Colour::apply`] on every pixel of `px`.
    ///
    /// # Safety
    /// The CPU has AVX2 (`Colour::vector` says so).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn apply_span(&mut self, px: &mut [[f32; 4]]) {
        let mut blocks = px.chunks_exact_mut(8);
        for b in &mut blocks {
            let b: &mut [[f32; 4]; 8] = b.try_into().expect("8 pixels");
            let src = *b;
            // SAFETY: AVX2 (the caller's contract).
            if !unsafe { self.block(&src, b) } {
                for p in b.iter_mut() {
                    *p = self.apply(*p);
                }
            }
        }
        for p in blocks.into_remainder() {
            *p = self.apply(*p);
        }
    }

    /// `dst[x] = apply(src[x])` (the same length), without the copy that
    /// [`Colour::apply_span`] would need.
    ///
    /// # Safety
    /// The CPU has AVX2 (`Colour::vector` says so).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn apply_from(&mut self, src: &[[f32; 4]], dst: &mut [[f32; 4]]) {
        assert_eq!(src.len(), dst.len(), "as many pixels in as out");
        let mut blocks = dst.chunks_exact_mut(8);
        let mut from = src.chunks_exact(8);
        for (b, s) in (&mut blocks).zip(&mut from) {
            let b: &mut [[f32; 4]; 8] = b.try_into().expect("8 pixels");
            let s: &[[f32; 4]; 8] = s.try_into().expect("8 pixels");
            // SAFETY: AVX2 (the caller's contract).
            if !unsafe { self.block(s, b) } {
                for (d, p) in b.iter_mut().zip(s) {
                    *d = self.apply(*p);
                }
            }
        }
        for (d, p) in blocks.into_remainder().iter_mut().zip(from.remainder()) {
            *d = self.apply(*p);
        }
    }

    /// Eight pixels of `src` graded into `dst`, when all are in the vector
    /// case (else false, `dst` untouched).
    #[target_feature(enable = "avx2")]
    unsafe fn block(&self, src: &[[f32; 4]; 8], dst: &mut [[f32; 4]; 8]) -> bool {
        // SAFETY: 32 floats behind `src`.
        let [r, g, b, a] = unsafe { load_pixels(src.as_ptr().cast()) };
        let zero = _mm256_setzero_ps();
        let one = _mm256_set1_ps(1.0);
        // Opaque: `a == 1` (the scalar path's memoized channel case).
        let opaque = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(a, one)) == 0xFF;
        if !opaque {
            return false;
        }
        let ops = &self.ops;
        // `channel(c, 1, i)`: `c / 1` is `c`; times the exposure gain,
        // `max(0)` (NaN → 0), the OETF by its table inside [0, 1].
        let gain_x = _mm256_set1_ps(ops.exposure_gain);
        let lin = [
            _mm256_max_ps(_mm256_mul_ps(r, gain_x), zero),
            _mm256_max_ps(_mm256_mul_ps(g, gain_x), zero),
            _mm256_max_ps(_mm256_mul_ps(b, gain_x), zero),
        ];
        let le1 = _mm256_and_ps(
            _mm256_and_ps(
                _mm256_cmp_ps::<_CMP_LE_OQ>(lin[0], one),
                _mm256_cmp_ps::<_CMP_LE_OQ>(lin[1], one),
            ),
            _mm256_cmp_ps::<_CMP_LE_OQ>(lin[2], one),
        );
        if _mm256_movemask_ps(le1) != 0xFF {
            return false;
        }
        let steps = _mm256_set1_ps(OETF_STEPS as f32);
        let last = _mm256_set1_epi32(OETF_STEPS as i32 - 1);
        let mut e = [zero; 3];
        for i in 0..3 {
            let l = lin[i];
            // `oetf_position`: l is in [0, 1] here, so its clamps keep it.
            let x = _mm256_mul_ps(_mm256_sqrt_ps(_mm256_sqrt_ps(l)), steps);
            let k = _mm256_min_epi32(_mm256_cvttps_epi32(x), last);
            let f = _mm256_sub_ps(x, _mm256_cvtepi32_ps(k));
            // `oetf_at`: a + (b − a)·f, clamped to [0, 1].
            // SAFETY: k ≤ OETF_STEPS − 1; the table has OETF_STEPS + 1 entries.
            let v = unsafe { lerp(self.oetf, k, f) };
            let v = clamp01(v);
            // `(gain · (e + lift · (1 − e))).max(0)`; gamma is 1.
            let lift = _mm256_set1_ps(ops.lift[i]);
            let gain = _mm256_set1_ps(ops.gain[i]);
            let t = _mm256_mul_ps(lift, _mm256_sub_ps(one, v));
            e[i] = _mm256_max_ps(_mm256_mul_ps(gain, _mm256_add_ps(v, t)), zero);
        }
        // SAFETY: AVX2.
        let Some([r, g, b]) = (unsafe { finish(&self.finish, e) }) else {
            return false;
        };
        // SAFETY: 32 floats behind `dst`.
        unsafe { store_pixels(dst.as_mut_ptr().cast(), [r, g, b, a]) };
        true
    }
}

/// [`Finish::apply`] on eight opaque pixels' encoded channels `e`: the
/// linear colours, or `None` when a value leaves the EOTF table's
/// `[0, 1]` (the caller takes the scalar code).
#[target_feature(enable = "avx2")]
unsafe fn finish(f: &Finish<'_>, mut e: [__m256; 3]) -> Option<[__m256; 3]> {
    let zero = _mm256_setzero_ps();
    let one = _mm256_set1_ps(1.0);
    // Saturation about BT.709 luma of the encoded values.
    let y = _mm256_add_ps(
        _mm256_add_ps(
            _mm256_mul_ps(_mm256_set1_ps(0.2126), e[0]),
            _mm256_mul_ps(_mm256_set1_ps(0.7152), e[1]),
        ),
        _mm256_mul_ps(_mm256_set1_ps(0.0722), e[2]),
    );
    let s = _mm256_set1_ps(f.saturation);
    for v in &mut e {
        *v = _mm256_add_ps(y, _mm256_mul_ps(_mm256_sub_ps(*v, y), s));
    }
    if let Some(l) = f.lut {
        // SAFETY: AVX2.
        unsafe {
            e = lut(l, [clamp01(e[0]), clamp01(e[1]), clamp01(e[2])]);
        }
    }
    // The EOTF by its table, for values inside [0, 1] (NaN fails).
    let mut unit = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for v in e {
        let ge0 = _mm256_cmp_ps::<_CMP_GE_OQ>(v, zero);
        let le1 = _mm256_cmp_ps::<_CMP_LE_OQ>(v, one);
        unit = _mm256_and_ps(unit, _mm256_and_ps(ge0, le1));
    }
    if _mm256_movemask_ps(unit) != 0xFF {
        return None;
    }
    let steps = _mm256_set1_ps(EOTF_STEPS as f32);
    let last = _mm256_set1_epi32(EOTF_STEPS as i32 - 1);
    let mut out = [zero; 3];
    for (o, v) in out.iter_mut().zip(e) {
        let x = _mm256_mul_ps(v, steps);
        let k = _mm256_min_epi32(_mm256_cvttps_epi32(x), last);
        let frac = _mm256_sub_ps(x, _mm256_cvtepi32_ps(k));
        // Times alpha, which is 1: the value itself. SAFETY: k ≤
        // EOTF_STEPS − 1; the table has EOTF_STEPS + 1 entries.
        *o = unsafe { lerp(f.eotf, k, frac) };
    }
    Some(out)
}

/// [`SourceGrade::row`] eight pixels at a time: the per-channel values
/// gathered from `pre` by the table indices, then [`finish`]. Returns how
/// many pixels it wrote (whole blocks; the caller does the rest).
///
/// # Safety
/// The CPU has AVX2; each of `pre` holds a power of two of values.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn source_grade(
    f: &Finish<'_>,
    pre: [&[f32]; 3],
    idx: [&[u32]; 3],
    out: &mut [[f32; 4]],
) -> usize {
    let n = out.len();
    let mask = pre[0].len() - 1;
    let lanes = _mm256_set1_epi32(mask as i32);
    // `store_pixels` takes lanes in the order 0 2 4 6 1 3 5 7.
    let order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    let one = _mm256_set1_ps(1.0);
    let mut x = 0;
    while x + 8 <= n {
        let mut e = [_mm256_setzero_ps(); 3];
        for c in 0..3 {
            // SAFETY: eight indices from `x` (x + 8 ≤ n ≤ their length),
            // masked into the table.
            unsafe {
                let i = _mm256_loadu_si256(idx[c].as_ptr().add(x).cast());
                let i = _mm256_permutevar8x32_epi32(_mm256_and_si256(i, lanes), order);
                e[c] = lookup(pre[c], i);
            }
        }
        let block: &mut [[f32; 4]; 8] = (&mut out[x..x + 8]).try_into().expect("8 pixels");
        // SAFETY: AVX2.
        match unsafe { finish(f, e) } {
            // SAFETY: 32 floats behind `block`.
            Some([r, g, b]) => unsafe { store_pixels(block.as_mut_ptr().cast(), [r, g, b, one]) },
            None => {
                for (k, p) in block.iter_mut().enumerate() {
                    let at = |c: usize| pre[c][idx[c][x + k] as usize & mask];
                    *p = f.apply([at(0), at(1), at(2)], 1.0);
                }
            }
        }
        x += 8;
    }
    x
}

/// `PreparedLut::apply` on eight colours.
#[target_feature(enable = "avx2")]
unsafe fn lut(l: &crate::render::lut::PreparedLut, rgb: [__m256; 3]) -> [__m256; 3] {
    let n = l.n as i32;
    let zero = _mm256_setzero_ps();
    let top = _mm256_set1_ps((n - 1) as f32);
    let below_top = _mm256_set1_epi32(n - 2);
    let mut idx = [_mm256_setzero_si256(); 3];
    let mut frac = [zero; 3];
    for c in 0..3 {
        let x = _mm256_mul_ps(
            _mm256_sub_ps(rgb[c], _mm256_set1_ps(l.min[c])),
            _mm256_set1_ps(l.scale[c]),
        );
        // `x > 0 ? (x < top ? x : top) : 0` (NaN → 0).
        let x = _mm256_blendv_ps(top, x, _mm256_cmp_ps::<_CMP_LT_OQ>(x, top));
        let x = _mm256_blendv_ps(zero, x, _mm256_cmp_ps::<_CMP_GT_OQ>(x, zero));
        let i = _mm256_min_epi32(_mm256_cvttps_epi32(x), below_top);
        idx[c] = i;
        frac[c] = _mm256_sub_ps(x, _mm256_cvtepi32_ps(i));
    }
    let [fr, fg, fb] = frac;
    let hi = _mm256_max_ps(_mm256_max_ps(fr, fg), fb);
    let lo = _mm256_min_ps(_mm256_min_ps(fr, fg), fb);
    let mid = _mm256_max_ps(
        _mm256_min_ps(fr, fg),
        _mm256_min_ps(_mm256_max_ps(fr, fg), fb),
    );
    let [(m1, k1), (m2, k2), (m4, k4)] = [
        (_mm256_cmp_ps::<_CMP_GT_OQ>(fr, fg), 1),
        (_mm256_cmp_ps::<_CMP_GT_OQ>(fg, fb), 2),
        (_mm256_cmp_ps::<_CMP_GT_OQ>(fr, fb), 4),
    ];
    let case = _mm256_or_si256(
        _mm256_or_si256(
            _mm256_and_si256(_mm256_castps_si256(m1), _mm256_set1_epi32(k1)),
            _mm256_and_si256(_mm256_castps_si256(m2), _mm256_set1_epi32(k2)),
        ),
        _mm256_and_si256(_mm256_castps_si256(m4), _mm256_set1_epi32(k4)),
    );
    // The second and third corners' offsets of each case.
    // SAFETY: eight offsets in each.
    let (o1s, o2s) = unsafe {
        (
            _mm256_loadu_si256(l.lane_offsets[0].as_ptr().cast()),
            _mm256_loadu_si256(l.lane_offsets[1].as_ptr().cast()),
        )
    };
    let base = _mm256_add_epi32(
        _mm256_add_epi32(idx[0], _mm256_mullo_epi32(idx[1], _mm256_set1_epi32(n))),
        _mm256_mullo_epi32(idx[2], _mm256_set1_epi32(n * n)),
    );
    let corners = [
        base,
        _mm256_add_epi32(base, _mm256_permutevar8x32_epi32(o1s, case)),
        _mm256_add_epi32(base, _mm256_permutevar8x32_epi32(o2s, case)),
        _mm256_add_epi32(base, _mm256_set1_epi32(1 + n + n * n)),
    ];
    let one = _mm256_set1_ps(1.0);
    let w = [
        _mm256_sub_ps(one, hi),
        _mm256_sub_ps(hi, mid),
        _mm256_sub_ps(mid, lo),
        lo,
    ];
    // Each lane's four corners are whole entries: four 16-byte loads and
    // the weighted sum on them (r, g, b side by side) cost less than
    // twelve gathers of single floats.
    let mut at = [[0i32; 8]; 4];
    let mut wt = [[0f32; 8]; 4];
    for k in 0..4 {
        // SAFETY: 8 lanes into 8-element arrays.
        unsafe {
            _mm256_storeu_si256(at[k].as_mut_ptr().cast(), corners[k]);
            _mm256_storeu_ps(wt[k].as_mut_ptr(), w[k]);
        }
    }
    let data = l.data.as_ptr().cast::<f32>();
    // The mixes come out as one `[r, g, b, 0]` per lane; fed to the
    // transpose in the order L0 L4 L1 L5 L2 L6 L3 L7 it gives the lanes
    // back in their order.
    let mix = |lane: usize| {
        let term = |k: usize| {
            // SAFETY: as in `PreparedLut::apply`: every corner is one of
            // the n³ entries, four floats each.
            let c = unsafe { _mm_loadu_ps(data.add(4 * at[k][lane] as usize)) };
            _mm_mul_ps(_mm_set1_ps(wt[k][lane]), c)
        };
        _mm_add_ps(_mm_add_ps(_mm_add_ps(term(0), term(1)), term(2)), term(3))
    };
    let pair = |a: usize, b: usize| _mm256_set_m128(mix(b), mix(a));
    let [r, g, b, _] = deinterleave([pair(0, 4), pair(1, 5), pair(2, 6), pair(3, 7)]);
    [r, g, b]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::model::Transfer;
    use crate::render::plan::{ColourOps, Lut3d};

    /// The kernel takes opaque blocks inside the tables (so the renderer
    /// tests that compare it with the scalar code exercise it), refuses the
    /// others, and gives the scalar bits.
    #[test]
    fn a_block_in_range_is_graded_by_the_kernel_with_the_scalar_bits() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let lut = Lut3d::from_fn(17, |[r, g, b]| [r * r, (g + b) / 2.0, b.sqrt()]).prepare();
        let ops = ColourOps {
            identity: false,
            exposure_gain: 0.9,
            lift: [0.02, 0.0, -0.01],
            gamma: [1.0; 3],
            gain: [1.0, 0.95, 1.05],
            saturation: 1.2,
            lut: Some(0),
        };
        let mut scalar = Colour::new(ops, Transfer::Bt709, Some(&lut), false);
        let vector = Colour::new(ops, Transfer::Bt709, Some(&lut), true);
        assert!(vector.vector);
        let px: [[f32; 4]; 8] =
            std::array::from_fn(|i| [i as f32 / 8.0, 0.9 - i as f32 / 10.0, 0.33, 1.0]);
        let mut got = [[0.0; 4]; 8];
        // SAFETY: AVX2 checked above.
        assert!(unsafe { vector.block(&px, &mut got) });
        let want = px.map(|p| scalar.apply(p));
        assert_eq!(
            got.map(|p| p.map(f32::to_bits)),
            want.map(|p| p.map(f32::to_bits))
        );
        let mut translucent = px;
        translucent[5] = [0.1, 0.1, 0.1, 0.5];
        // SAFETY: as above.
        assert!(!unsafe { vector.block(&translucent, &mut got) });
        let mut bright = px;
        bright[2][1] = 1.5;
        // SAFETY: as above.
        assert!(!unsafe { vector.block(&bright, &mut got) });
    }
}
