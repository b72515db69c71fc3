//! Loudness: measured per ITU-R BS.1770 with the `ebur128` crate
//! (integrated, loudness range, true peak), normalized by one linear gain.
//!
//! Manifest v1 normalizes linearly only. When the gain that reaches the
//! target would push the true peak over the ceiling, the gain is lowered to
//! respect the ceiling and the report says so; the delivered loudness then
//! misses the target and the deliverable fails its loudness check instead of
//! being limited behind the user's back.

use ebur128::{EbuR128, Mode};

/// What was measured on one signal.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Measurement {
    /// Integrated loudness in LUFS; `None` when the whole signal is below
    /// the absolute gate (silence).
    pub integrated_lufs: Option<f64>,
    /// Loudness range in LU.
    pub lra_lu: Option<f64>,
    /// Maximum true peak over all channels, dBTP; `None` for digital silence.
    pub true_peak_dbtp: Option<f64>,
    pub duration_s: f64,
}

/// Accumulates interleaved `f32` audio.
pub struct Meter {
    inner: EbuR128,
    channels: u32,
    rate: u32,
    samples: u64,
}

/// A measurement failure (bad layout or rate).
#[derive(Debug, thiserror::Error)]
#[error("loudness meter: {0}")]
pub struct MeterError(String);

impl Meter {
    /// # Errors
    /// A channel count or rate `ebur128` does not accept.
    pub fn new(channels: u32, rate: u32) -> Result<Self, MeterError> {
        let inner = EbuR128::new(channels, rate, Mode::I | Mode::LRA | Mode::TRUE_PEAK)
            .map_err(|e| MeterError(format!("{e:?} ({channels} channels at {rate} Hz)")))?;
        Ok(Meter {
            inner,
            channels,
            rate,
            samples: 0,
        })
    }

    /// # Errors
    /// Only on internal meter failures.
    pub fn add(&mut self, interleaved: &[f32]) -> Result<(), MeterError> {
        self.inner
            .add_frames_f32(interleaved)
            .map_err(|e| MeterError(format!("{e:?}")))?;
        self.samples += (interleaved.len() / self.channels as usize) as u64;
        Ok(())
    }

    pub fn finish(&self) -> Measurement {
        let to_db = |v: f64| {
            if v > 0.0 {
                Some(20.0 * v.log10())
            } else {
                None
            }
        };
        let tp = (0..self.channels)
            .filter_map(|c| self.inner.true_peak(c).ok())
            .fold(0.0f64, f64::max);
        let integrated = self.inner.loudness_global().ok().filter(|v| v.is_finite());
        let lra = self.inner.loudness_range().ok().filter(|v| v.is_finite());
        Measurement {
            integrated_lufs: integrated,
            lra_lu: lra,
            true_peak_dbtp: to_db(tp),
            duration_s: self.samples as f64 / self.rate as f64,
        }
    }
}

/// The gain decision for one deliverable.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Normalization {
    pub target_lufs: f64,
    pub ceiling_dbtp: f64,
    /// The gain applied, in dB.
    pub gain_db: f64,
    /// "linear": one gain for the whole programme.
    pub mode: &'static str,
    /// True when the true-peak ceiling, not the target, set the gain.
    pub limited_by_ceiling: bool,
}

/// Chooses the linear gain that brings `m` to `target`, without exceeding
/// `ceiling` dBTP. Silence gets 0 dB.
pub fn plan(m: &Measurement, target: f64, ceiling: f64) -> Normalization {
    let Some(i) = m.integrated_lufs else {
        return Normalization {
            target_lufs: target,
            ceiling_dbtp: ceiling,
            gain_db: 0.0,
            mode: "linear",
            limited_by_ceiling: false,
        };
    };
    let mut gain = target - i;
    let mut limited = false;
    if let Some(tp) = m.true_peak_dbtp {
        if tp + gain > ceiling {
            gain = ceiling - tp;
            limited = true;
        }
    }
    Normalization {
        target_lufs: target,
        ceiling_dbtp: ceiling,
        gain_db: gain,
        mode: "linear",
        limited_by_ceiling: limited,
    }
}

/// dB to a linear factor.
pub fn gain_factor(db: f64) -> f32 {
    10f64.powf(db / 20.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EBU Tech 3341 test 1: a 1 kHz stereo sine at -23 dBFS reads -23 LUFS ±0.1.
    #[test]
    fn sine_at_minus_23_dbfs_reads_minus_23_lufs() {
        let rate = 48000;
        let amp = 10f64.powf(-23.0 / 20.0);
        let mut m = Meter::new(2, rate).unwrap();
        let samples: Vec<f32> = (0..rate * 20)
            .flat_map(|i| {
                let v = (amp * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / rate as f64).sin())
                    as f32;
                [v, v]
            })
            .collect();
        m.add(&samples).unwrap();
        let r = m.finish();
        assert!((r.integrated_lufs.unwrap() + 23.0).abs() < 0.1, "{r:?}");
    }

    #[test]
    fn ceiling_caps_the_gain() {
        let m = Measurement {
            integrated_lufs: Some(-30.0),
            lra_lu: Some(1.0),
            true_peak_dbtp: Some(-3.0),
            duration_s: 10.0,
        };
        let n = plan(&m, -23.0, -1.0);
        assert!(n.limited_by_ceiling);
        assert!((n.gain_db - 2.0).abs() < 1e-9);
        let n = plan(&m, -28.0, -1.0);
        assert!(!n.limited_by_ceiling);
        assert!((n.gain_db - 2.0).abs() < 1e-9);
    }
}
