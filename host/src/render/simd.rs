//! AVX2 pieces the vector kernels of the CPU renderer share (x86-64 only;
//! callers check for AVX2 at run time).
//!
//! Eight `[f32; 4]` pixels become four vectors (r, g, b, a) by 4×4
//! transposes within each 128-bit half, which leave the lanes in the pixel
//! order `0 2 4 6 1 3 5 7`; the kernels work lane by lane, and
//! [`interleave`] undoes it exactly.

use std::arch::x86_64::*;

/// Pixels `P0 P1 | P2 P3 | P4 P5 | P6 P7` (two per vector) → r, g, b, a
/// with lanes `P0 P2 P4 P6 P1 P3 P5 P7`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn deinterleave([p01, p23, p45, p67]: [__m256; 4]) -> [__m256; 4] {
    let t0 = _mm256_unpacklo_ps(p01, p23);
    let t1 = _mm256_unpackhi_ps(p01, p23);
    let t2 = _mm256_unpacklo_ps(p45, p67);
    let t3 = _mm256_unpackhi_ps(p45, p67);
    [
        _mm256_shuffle_ps::<0x44>(t0, t2),
        _mm256_shuffle_ps::<0xEE>(t0, t2),
        _mm256_shuffle_ps::<0x44>(t1, t3),
        _mm256_shuffle_ps::<0xEE>(t1, t3),
    ]
}

/// The inverse of [`deinterleave`].
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn interleave([r, g, b, a]: [__m256; 4]) -> [__m256; 4] {
    let t0 = _mm256_unpacklo_ps(r, g);
    let t1 = _mm256_unpacklo_ps(b, a);
    let t2 = _mm256_unpackhi_ps(r, g);
    let t3 = _mm256_unpackhi_ps(b, a);
    [
        _mm256_shuffle_ps::<0x44>(t0, t1),
        _mm256_shuffle_ps::<0xEE>(t0, t1),
        _mm256_shuffle_ps::<0x44>(t2, t3),
        _mm256_shuffle_ps::<0xEE>(t2, t3),
    ]
}

/// The eight pixels at `p` (32 floats) as r, g, b, a ([`deinterleave`]'s
/// lane order).
///
/// # Safety
/// 32 floats are readable at `p`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn load_pixels(p: *const f32) -> [__m256; 4] {
    // SAFETY: the caller's contract; unaligned loads.
    deinterleave(unsafe {
        [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ]
    })
}

/// Stores r, g, b, a in [`deinterleave`]'s lane order as eight pixels.
///
/// # Safety
/// 32 floats are writable at `p`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn store_pixels(p: *mut f32, rgba: [__m256; 4]) {
    let [p01, p23, p45, p67] = interleave(rgba);
    // SAFETY: the caller's contract; unaligned stores.
    unsafe {
        _mm256_storeu_ps(p, p01);
        _mm256_storeu_ps(p.add(8), p23);
        _mm256_storeu_ps(p.add(16), p45);
        _mm256_storeu_ps(p.add(24), p67);
    }
}

/// `t[i] + (t[i + 1] − t[i]) · f` in each lane.
///
/// Table reads here are scalar loads, not gathers: on the Zen 3 this was
/// measured on, two `vgatherdps` of eight lanes cost 1.8 ns a lane, two
/// `vpgatherdq` of four 1.4 ns, and eight 8-byte loads (each lane's two
/// neighbours at once) through a small array 0.7 ns. The same floats and
/// the same arithmetic: the same bits.
///
/// # Safety
/// Every lane of `i` is below `table.len() − 1`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn lerp(table: &[f32], i: __m256i, f: __m256) -> __m256 {
    let mut at = [0i32; 8];
    // SAFETY: eight lanes into eight elements.
    unsafe { _mm256_storeu_si256(at.as_mut_ptr().cast(), i) };
    let t = table.as_ptr();
    // Lanes 0 1 4 5 to the first vector, 2 3 6 7 to the second: the
    // shuffles below put them back in their order.
    let mut pairs = [0u64; 8];
    for (p, lane) in pairs.iter_mut().zip([0, 1, 4, 5, 2, 3, 6, 7]) {
        // SAFETY: the caller's contract: `t[i]` and `t[i + 1]` are in the
        // table for every lane.
        *p = unsafe { t.add(at[lane] as usize).cast::<u64>().read_unaligned() };
    }
    // SAFETY: eight u64 are 64 bytes.
    let (p, q) = unsafe {
        (
            _mm256_loadu_ps(pairs.as_ptr().cast()),
            _mm256_loadu_ps(pairs.as_ptr().add(4).cast()),
        )
    };
    // p: a0 b0 a1 b1 | a4 b4 a5 b5, q: a2 b2 a3 b3 | a6 b6 a7 b7.
    let a = _mm256_shuffle_ps::<0x88>(p, q);
    let b = _mm256_shuffle_ps::<0xDD>(p, q);
    _mm256_add_ps(a, _mm256_mul_ps(_mm256_sub_ps(b, a), f))
}

/// `t[i]` in each lane, by scalar loads (see [`lerp`] on why not a
/// gather).
///
/// # Safety
/// Every lane of `i` is below `table.len()`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn lookup(table: &[f32], i: __m256i) -> __m256 {
    let mut at = [0i32; 8];
    // SAFETY: eight lanes into eight elements.
    unsafe { _mm256_storeu_si256(at.as_mut_ptr().cast(), i) };
    let t = table.as_ptr();
    // SAFETY: the caller's contract.
    let v: [f32; 8] = std::array::from_fn(|k| unsafe { *t.add(at[k] as usize) });
    // SAFETY: eight floats.
    unsafe { _mm256_loadu_ps(v.as_ptr()) }
}

/// `f32::clamp(v, 0, 1)` in each lane: below 0 → 0, above 1 → 1, NaN kept.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn clamp01(v: __m256) -> __m256 {
    let zero = _mm256_setzero_ps();
    let one = _mm256_set1_ps(1.0);
    let v = _mm256_blendv_ps(v, zero, _mm256_cmp_ps::<_CMP_LT_OQ>(v, zero));
    _mm256_blendv_ps(v, one, _mm256_cmp_ps::<_CMP_GT_OQ>(v, one))
}
