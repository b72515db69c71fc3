//! Gating: integrated loudness (BS.1770-4 §2.8, absolute gate −70 LUFS then
//! relative gate −10 LU) and loudness range (EBU Tech 3342: short-term
//! blocks, absolute gate −70 LUFS, relative gate −20 LU, spread between the
//! 10th and 95th percentiles).
//!
//! Blocks are kept as exact mean-square energies (one `f64` per 100 ms,
//! under 300 kB per programme hour) rather than in a histogram, so the
//! result carries no binning error.

/// Energy of a loudness in LUFS (inverse of BS.1770-4 eq. 2).
fn energy(lufs: f64) -> f64 {
    10f64.powf((lufs + 0.691) / 10.0)
}

const ABSOLUTE_GATE_LUFS: f64 = -70.0;

/// The gated mean energy of the 400 ms blocks; `None` if every block is
/// below the absolute gate.
pub(crate) fn integrated(blocks: &[f64]) -> Option<f64> {
    let abs = energy(ABSOLUTE_GATE_LUFS);
    let (sum, n) = mean_above(blocks, abs);
    if n == 0 {
        return None;
    }
    // −10 LU relative to the absolute-gated loudness.
    let rel = sum / n as f64 * 0.1;
    let (sum, n) = mean_above(blocks, abs.max(rel));
    (n > 0).then(|| sum / n as f64)
}

/// Loudness range in LU of the 3 s blocks; `None` if none passes the gates.
pub(crate) fn loudness_range(blocks: &[f64]) -> Option<f64> {
    let abs = energy(ABSOLUTE_GATE_LUFS);
    let (sum, n) = mean_above(blocks, abs);
    if n == 0 {
        return None;
    }
    // −20 LU relative to the absolute-gated loudness.
    let rel = sum / n as f64 * 0.01;
    let gate = abs.max(rel);
    let mut kept: Vec<f64> = blocks.iter().copied().filter(|&e| e > gate).collect();
    if kept.is_empty() {
        return None;
    }
    kept.sort_by(f64::total_cmp);
    let at = |p: f64| kept[((kept.len() - 1) as f64 * p).round() as usize];
    // Percentiles of energies are percentiles of loudness (monotonic map).
    Some(10.0 * (at(0.95) / at(0.10)).log10())
}

fn mean_above(blocks: &[f64], gate: f64) -> (f64, usize) {
    blocks
        .iter()
        .filter(|&&e| e > gate)
        .fold((0.0, 0), |(s, n), &e| (s + e, n + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tech 3342 test 1 in block form: half the blocks at −20, half at −30
    /// LUFS give LRA 10 LU; a block under −70 LUFS changes nothing.
    #[test]
    fn range_of_two_levels() {
        let mut b = vec![energy(-20.0); 100];
        b.extend(vec![energy(-30.0); 100]);
        b.push(energy(-80.0));
        assert!((loudness_range(&b).unwrap() - 10.0).abs() < 1e-9);
    }

    /// Tech 3341 test 3 in block form: −36 LUFS blocks fall under the
    /// relative gate of a −23 LUFS programme.
    #[test]
    fn relative_gate_drops_quiet_blocks() {
        let mut b = vec![energy(-36.0); 100];
        b.extend(vec![energy(-23.0); 600]);
        let i = -0.691 + 10.0 * integrated(&b).unwrap().log10();
        assert!((i + 23.0).abs() < 1e-9, "{i}");
        assert!(integrated(&[energy(-75.0)]).is_none());
    }
}
