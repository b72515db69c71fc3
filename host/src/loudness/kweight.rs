//! The K-weighting pre-filter of ITU-R BS.1770-4 (Annex 1): a high-shelf
//! ("head") stage then a high-pass (RLB) stage.
//!
//! BS.1770 gives coefficients at 48 kHz only. They are derived here from the
//! analogue prototype with the bilinear transform (the same derivation as
//! libebur128), which reproduces the published 48 kHz values and extends to
//! other rates. The two stages stay separate biquads run in `f64`: the
//! high-pass pole sits within 0.005 of the unit circle, where a merged
//! fourth-order section or `f32` state loses precision.

/// One biquad: `b` numerator, `a` denominator with `a0 = 1` left out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Biquad {
    pub b: [f64; 3],
    pub a: [f64; 2],
}

/// Both stages' coefficients for one sample rate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KWeighting {
    pub shelf: Biquad,
    pub highpass: Biquad,
}

impl KWeighting {
    pub fn new(rate: f64) -> Self {
        use std::f64::consts::PI;
        // Stage 1: high shelf, +4 dB above ~1.7 kHz.
        let f0 = 1681.974450955533;
        let g = 3.999843853973347;
        let q = 0.7071752369554196;
        let k = (PI * f0 / rate).tan();
        let vh = 10f64.powf(g / 20.0);
        let vb = vh.powf(0.4996667741545416);
        let a0 = 1.0 + k / q + k * k;
        let shelf = Biquad {
            b: [
                (vh + vb * k / q + k * k) / a0,
                2.0 * (k * k - vh) / a0,
                (vh - vb * k / q + k * k) / a0,
            ],
            a: [2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0],
        };
        // Stage 2: the RLB high-pass at ~38 Hz.
        let f0 = 38.13547087602444;
        let q = 0.5003270373238773;
        let k = (PI * f0 / rate).tan();
        let a0 = 1.0 + k / q + k * k;
        let highpass = Biquad {
            b: [1.0, -2.0, 1.0],
            a: [2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0],
        };
        KWeighting { shelf, highpass }
    }
}

/// Per-channel filter state (transposed direct form II, two stages).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KState {
    s: [f64; 2],
    h: [f64; 2],
}

impl KState {
    #[inline(always)]
    pub fn step(&mut self, k: &KWeighting, x: f64) -> f64 {
        let (b, a) = (&k.shelf.b, &k.shelf.a);
        let y1 = b[0] * x + self.s[0];
        self.s[0] = b[1] * x - a[0] * y1 + self.s[1];
        self.s[1] = b[2] * x - a[1] * y1;
        let (b, a) = (&k.highpass.b, &k.highpass.a);
        let y2 = b[0] * y1 + self.h[0];
        self.h[0] = b[1] * y1 - a[0] * y2 + self.h[1];
        self.h[1] = b[2] * y1 - a[1] * y2;
        y2
    }

    /// Zeroes state that has decayed far below anything measurable: after a
    /// few seconds of digital silence it would otherwise reach subnormal
    /// numbers, which x86 processes about a hundred times slower.
    pub fn flush_tiny(&mut self) {
        for v in self.s.iter_mut().chain(self.h.iter_mut()) {
            if v.abs() < 1e-30 {
                *v = 0.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 48 kHz coefficients published in BS.1770-4, Tables 1 and 2, to
    /// their last printed digit (14 decimals: half a unit is 5e-15).
    #[test]
    fn matches_bs1770_tables_at_48k() {
        let k = KWeighting::new(48000.0);
        let close = |a: f64, b: f64| (a - b).abs() <= 5e-15;
        assert!(close(k.shelf.b[0], 1.53512485958697));
        assert!(close(k.shelf.b[1], -2.69169618940638));
        assert!(close(k.shelf.b[2], 1.19839281085285));
        assert!(close(k.shelf.a[0], -1.69065929318241));
        assert!(close(k.shelf.a[1], 0.73248077421585));
        assert!(close(k.highpass.a[0], -1.99004745483398));
        assert!(close(k.highpass.a[1], 0.99007225036621));
    }
}
