//! The row path's two passes that the compiler leaves scalar, eight pixels
//! at a time with AVX2: un-premultiplying (a branch per pixel) and the OETF
//! table's lookups ([`lerp`]). The same operations in the same order as the
//! scalar passes, so the same bits.

use crate::render::simd::{clamp01, lerp, load_pixels};
use std::arch::x86_64::*;

/// `rgb[c][x] = row[x][c] / a` (as `· (1 / a)`), 0 where `a ≤ 0` or NaN:
/// [`super::RowPath::encode`]'s first pass.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn straight(row: &[[f32; 4]], r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    let w = row.len().min(r.len()).min(g.len()).min(b.len());
    let blocks = w / 8;
    let zero = _mm256_setzero_ps();
    let one = _mm256_set1_ps(1.0);
    for k in 0..blocks {
        // SAFETY: 8 pixels (32 floats) from `8k`, inside `row`.
        let [cr, cg, cb, a] = unsafe { load_pixels(row[8 * k..].as_ptr().cast()) };
        let pos = _mm256_cmp_ps::<_CMP_GT_OQ>(a, zero);
        let inv = _mm256_div_ps(one, a);
        // Back to pixel order from `load_pixels`' 0 2 4 6 1 3 5 7.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (c, out) in [(cr, &mut *r), (cg, &mut *g), (cb, &mut *b)] {
            let v = _mm256_and_ps(_mm256_mul_ps(c, inv), pos);
            let v = _mm256_permutevar8x32_ps(v, order);
            // SAFETY: 8 floats from `8k`, inside `out`.
            unsafe { _mm256_storeu_ps(out[8 * k..].as_mut_ptr(), v) };
        }
    }
    for x in 8 * blocks..w {
        [r[x], g[x], b[x]] = super::straight(row[x]);
    }
}

/// `out[x] = (t[i] + (t[i + 1] − t[i]) · f).clamp(0, 1)` for `i = idx[x]`,
/// `f = frac[x]`: `oetf_at` over a row.
///
/// # Safety
/// The CPU has AVX2, and every `idx[x] + 1` is inside `table`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn oetf_lookup(table: &[f32], idx: &[u32], frac: &[f32], out: &mut [f32]) {
    let w = idx.len().min(frac.len()).min(out.len());
    let blocks = w / 8;
    for k in 0..blocks {
        // SAFETY: 8 entries from `8k` of each slice; the indices are in
        // the table (the caller's contract).
        unsafe {
            let i = _mm256_loadu_si256(idx[8 * k..].as_ptr().cast());
            let f = _mm256_loadu_ps(frac[8 * k..].as_ptr());
            let v = clamp01(lerp(table, i, f));
            _mm256_storeu_ps(out[8 * k..].as_mut_ptr(), v);
        }
    }
    for x in 8 * blocks..w {
        out[x] = super::oetf_at(table, idx[x], frac[x]);
    }
}

/// [`super::RowPath::luma_row`]'s loop: Y'CbCr of each pixel of the row
/// (`Target::ycbcr`), the chroma kept unquantized in `cb`/`cr`, the luma
/// quantized (`code`) into `out`, 1 or 2 (`wide`) little-endian bytes a
/// sample.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn luma(
    t: &super::Target,
    [r, g, b]: [&[f32]; 3],
    thr: &[f32],
    cb: &mut [f32],
    cr: &mut [f32],
    out: &mut [u8],
    wide: bool,
) {
    let bytes = if wide { 2 } else { 1 };
    let w = r
        .len()
        .min(g.len())
        .min(b.len())
        .min(thr.len())
        .min(cb.len())
        .min(cr.len())
        .min(out.len() / bytes);
    let blocks = w / 8;
    let splat = _mm256_set1_ps;
    let (kr, kg, kb) = (splat(t.kr), splat(t.kg), splat(t.kb));
    // The divisors as `Target::ycbcr` forms them.
    let (db, dr) = (splat(2.0 * (1.0 - t.kb)), splat(2.0 * (1.0 - t.kr)));
    let (y_off, y_scale) = (splat(t.y_off), splat(t.y_scale));
    let (c_off, c_scale) = (splat(t.c_off), splat(t.c_scale));
    let (half, zero, max) = (splat(0.5), _mm256_setzero_ps(), splat(t.max));
    for k in 0..blocks {
        let at = 8 * k;
        // SAFETY: 8 entries from `at` of each slice (`w` bounds them all).
        unsafe {
            let (rv, gv, bv) = (
                _mm256_loadu_ps(r.as_ptr().add(at)),
                _mm256_loadu_ps(g.as_ptr().add(at)),
                _mm256_loadu_ps(b.as_ptr().add(at)),
            );
            let y = _mm256_add_ps(
                _mm256_add_ps(_mm256_mul_ps(kr, rv), _mm256_mul_ps(kg, gv)),
                _mm256_mul_ps(kb, bv),
            );
            let u = _mm256_div_ps(_mm256_sub_ps(bv, y), db);
            let v = _mm256_div_ps(_mm256_sub_ps(rv, y), dr);
            let yv = _mm256_add_ps(y_off, _mm256_mul_ps(y_scale, y));
            _mm256_storeu_ps(
                cb.as_mut_ptr().add(at),
                _mm256_add_ps(c_off, _mm256_mul_ps(c_scale, u)),
            );
            _mm256_storeu_ps(
                cr.as_mut_ptr().add(at),
                _mm256_add_ps(c_off, _mm256_mul_ps(c_scale, v)),
            );
            // `code`: (v + t + 0.5).max(0).min(max) as i32 (NaN → 0).
            let th = _mm256_loadu_ps(thr.as_ptr().add(at));
            let c = _mm256_add_ps(_mm256_add_ps(yv, th), half);
            let c = _mm256_min_ps(_mm256_max_ps(c, zero), max);
            let c = _mm256_cvttps_epi32(c);
            // Eight u16 in pixel order (the pack works per 128-bit half).
            let c16 = _mm256_permute4x64_epi64::<0xD8>(_mm256_packus_epi32(c, c));
            let c16 = _mm256_castsi256_si128(c16);
            if wide {
                _mm_storeu_si128(out.as_mut_ptr().add(2 * at).cast(), c16);
            } else {
                _mm_storel_epi64(out.as_mut_ptr().add(at).cast(), _mm_packus_epi16(c16, c16));
            }
        }
    }
    for x in 8 * blocks..w {
        let [yv, u, v] = t.ycbcr([r[x], g[x], b[x]]);
        cb[x] = u;
        cr[x] = v;
        let c = super::code(yv, thr[x], t.max);
        if wide {
            out[2 * x..2 * x + 2].copy_from_slice(&c.to_le_bytes());
        } else {
            out[x] = c as u8;
        }
    }
}
