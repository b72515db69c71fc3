//! Loudness normalization decisions: one linear gain when it meets both the
//! target and the true-peak ceiling; otherwise a true-peak limiter, but only
//! where the loudness profile allows it, and the report says so. There is no
//! silent switch from linear to dynamic processing.

use crate::limiter::LimiterStats;
use crate::loudness::Measurement;
use crate::preset::LoudnessSpec;

/// How a deliverable's audio is brought to its target.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Normalization {
    pub target_lufs: f64,
    pub ceiling_dbtp: f64,
    /// The linear gain applied to the programme, dB.
    pub gain_db: f64,
    /// "linear" (gain only) or "limiter" (gain, then the true-peak limiter).
    pub mode: &'static str,
    /// Where the limiter aims (ceiling minus the profile's headroom), dBTP.
    pub limiter_ceiling_dbtp: Option<f64>,
    /// What the limiter did, once it has run.
    pub limiter: Option<LimiterStats>,
    /// Passes over the mix that corrected the gain: the limiter and a lossy
    /// codec both lower loudness, so the audio is rendered through them and
    /// measured until it is on target (0: one linear gain was exact).
    pub gain_passes: usize,
    /// Integrated loudness of the simulated delivery at the final gain, LUFS.
    pub predicted_lufs: Option<f64>,
    /// Why the profile's rules cannot be met; the deliverable fails with it.
    pub refused: Option<String>,
}

/// Decides the normalization of a programme measured as `m` for `spec`.
pub fn plan(m: &Measurement, spec: &LoudnessSpec) -> Normalization {
    let mut n = Normalization {
        target_lufs: spec.target_lufs,
        ceiling_dbtp: spec.true_peak_dbtp,
        gain_db: 0.0,
        mode: "linear",
        limiter_ceiling_dbtp: None,
        limiter: None,
        gain_passes: 0,
        predicted_lufs: None,
        refused: None,
    };
    // Silence has no integrated loudness: nothing to bring anywhere.
    let Some(i) = m.integrated_lufs else {
        return n;
    };
    n.gain_db = spec.target_lufs - i;
    let Some(tp) = m.true_peak_dbtp else {
        return n;
    };
    let tp_after = tp + n.gain_db;
    if tp_after <= spec.true_peak_dbtp {
        return n;
    }
    if spec.allow_limiter {
        n.mode = "limiter";
        n.limiter_ceiling_dbtp = Some(spec.true_peak_dbtp - spec.limiter_headroom_db);
    } else {
        n.refused = Some(format!(
            "the programme measures {i:.2} LUFS with a true peak of {tp:.2} dBTP: the linear gain of \
             {:+.2} dB that reaches {} LUFS would put the true peak at {tp_after:.2} dBTP, above the \
             {} dBTP ceiling, and the loudness profile does not allow limiting (allow_limiter = false)",
            n.gain_db, spec.target_lufs, spec.true_peak_dbtp
        ));
    }
    n
}

/// dB to a linear factor.
pub fn gain_factor(db: f64) -> f32 {
    10f64.powf(db / 20.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(allow: bool) -> LoudnessSpec {
        LoudnessSpec {
            target_lufs: -23.0,
            true_peak_dbtp: -1.0,
            tolerance_lu: 0.5,
            allow_limiter: allow,
            limiter_headroom_db: 0.5,
            max_short_term_lufs: None,
        }
    }

    fn measured(i: f64, tp: f64) -> Measurement {
        Measurement {
            integrated_lufs: Some(i),
            lra_lu: Some(1.0),
            true_peak_dbtp: Some(tp),
            duration_s: 10.0,
        }
    }

    #[test]
    fn linear_when_the_ceiling_allows() {
        let n = plan(&measured(-30.0, -12.0), &spec(false));
        assert_eq!(n.mode, "linear");
        assert!((n.gain_db - 7.0).abs() < 1e-12);
        assert!(n.refused.is_none());
    }

    #[test]
    fn limiter_only_where_the_profile_allows_it() {
        let n = plan(&measured(-30.0, -3.0), &spec(true));
        assert_eq!(n.mode, "limiter");
        assert_eq!(n.limiter_ceiling_dbtp, Some(-1.5));
        assert!((n.gain_db - 7.0).abs() < 1e-12);
        let n = plan(&measured(-30.0, -3.0), &spec(false));
        assert_eq!(n.mode, "linear");
        let why = n.refused.unwrap();
        assert!(
            why.contains("+7.00 dB") && why.contains("4.00 dBTP"),
            "{why}"
        );
    }
}
