//! Loudness: measured per ITU-R BS.1770-4 and EBU Tech 3341 / 3342
//! (integrated, loudness range, true peak per channel, maximum momentary and
//! short-term loudness, loudness over time), normalized by one linear gain.
//!
//! The meter is written here rather than taken from the `ebur128` crate:
//! that crate updates momentary loudness only when asked and recomputes the
//! whole 400 ms window each time, so a 10 ms momentary step (needed to catch
//! the maxima of Tech 3341 tests 13 and 14) would cost 40 window sums per
//! block. Here the K-weighted energy is kept per 10 ms step, so momentary and
//! short-term loudness at every step are sums over 40 and 300 stored steps,
//! and the gating blocks (400 ms every 100 ms) and LRA blocks (3 s every
//! 100 ms) fall out of the same steps exactly.
//!
//! Manifest v1 normalizes linearly only. When the gain that reaches the
//! target would push the true peak over the ceiling, the gain is lowered to
//! respect the ceiling and the report says so; the delivered loudness then
//! misses the target and the deliverable fails its loudness check instead of
//! being limited behind the user's back.
//!
//! ```
//! use deliver::loudness::Meter;
//! let rate = 48_000;
//! let amp = 10f64.powf(-23.0 / 20.0);
//! let tone: Vec<f32> = (0..rate * 10)
//!     .flat_map(|i| {
//!         let v = (amp * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / rate as f64).sin()) as f32;
//!         [v, v]
//!     })
//!     .collect();
//! let mut meter = Meter::new(2, rate as u32).unwrap();
//! meter.add(&tone).unwrap();
//! let m = meter.finish();
//! assert!((m.integrated_lufs.unwrap() + 23.0).abs() < 0.1);
//! ```

mod file;
mod gating;
mod kweight;
mod true_peak;

pub use file::{measure_file, AudioFile, FileError};

use kweight::{KState, KWeighting};
use true_peak::TruePeak;

/// Momentary loudness window, in 10 ms steps (400 ms).
const MOMENTARY_STEPS: usize = 40;
/// Short-term loudness window, in 10 ms steps (3 s).
const SHORT_TERM_STEPS: usize = 300;
/// Gating blocks and LRA blocks start every 100 ms (75 % overlap of 400 ms
/// blocks per BS.1770-4; Tech 3342 asks for at least 10 Hz).
const BLOCK_HOP_STEPS: u64 = 10;
/// Steps per second.
const STEPS_PER_S: u32 = 100;

/// The channel weights of BS.1770-4 Table 3 for a channel count: surrounds
/// 1.41 (+1.5 dB), LFE excluded. 5 channels are L,R,C,Ls,Rs and 6 channels
/// L,R,C,LFE,Ls,Rs (the WAVE / FFmpeg order); any other count weighs every
/// channel 1.0 (use [`Meter::with_weights`] for other layouts).
pub fn channel_weights(channels: u32) -> Vec<f64> {
    match channels {
        5 => vec![1.0, 1.0, 1.0, 1.41, 1.41],
        6 => vec![1.0, 1.0, 1.0, 0.0, 1.41, 1.41],
        n => vec![1.0; n as usize],
    }
}

/// LUFS of a mean-square energy (BS.1770-4 eq. 2); `None` for silence.
fn lufs(energy: f64) -> Option<f64> {
    (energy > 0.0).then(|| -0.691 + 10.0 * energy.log10())
}

/// dB of a linear amplitude; `None` for zero.
fn amplitude_db(v: f64) -> Option<f64> {
    (v > 0.0).then(|| 20.0 * v.log10())
}

/// What was measured on one signal: the four values the normalization plan
/// needs (kept `Copy` and small, and its fields fixed so that code building
/// it stays valid; everything else the meter knows is in [`Analysis`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Measurement {
    /// Integrated (gated) loudness in LUFS; `None` when the whole signal is
    /// below the absolute gate (silence) or shorter than one 400 ms block.
    pub integrated_lufs: Option<f64>,
    /// Loudness range in LU (EBU Tech 3342); `None` under 3 s or for silence.
    pub lra_lu: Option<f64>,
    /// Maximum true peak over all channels, dBTP; `None` for digital silence.
    pub true_peak_dbtp: Option<f64>,
    pub duration_s: f64,
}

/// Loudness over time, one point per `step_s` (100 ms): point `i` is the
/// window ending at `(i + 1) * step_s`. Values are LUFS; `null` (NaN) where
/// the window is not yet full or holds silence.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoudnessSeries {
    pub step_s: f64,
    pub momentary_lufs: Vec<f32>,
    pub short_term_lufs: Vec<f32>,
}

/// Everything the meter knows at the end: the summary plus per-channel peaks
/// and the series for the report's graph.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Analysis {
    #[serde(flatten)]
    pub summary: Measurement,
    /// Highest momentary loudness (400 ms window, evaluated every 10 ms).
    pub max_momentary_lufs: Option<f64>,
    /// Highest short-term loudness (3 s window, evaluated every 10 ms).
    pub max_short_term_lufs: Option<f64>,
    /// Maximum sample peak over all channels, dBFS.
    pub sample_peak_dbfs: Option<f64>,
    pub channels: u32,
    pub sample_rate: u32,
    /// Per channel, in input order.
    pub true_peak_per_channel_dbtp: Vec<Option<f64>>,
    pub sample_peak_per_channel_dbfs: Vec<Option<f64>>,
    pub channel_weights: Vec<f64>,
    pub series: LoudnessSeries,
}

/// A measurement failure (bad layout or rate).
#[derive(Debug, thiserror::Error)]
#[error("loudness meter: {0}")]
pub struct MeterError(String);

/// Accumulates interleaved `f32` audio.
pub struct Meter {
    channels: usize,
    rate: u32,
    weights: Vec<f64>,
    k: KWeighting,
    state: Vec<KState>,
    tp: TruePeak,
    /// Frames per 10 ms step (rounded for rates not divisible by 100).
    step: usize,
    /// Frames of the current step seen so far, and their weighted energy.
    in_step: usize,
    acc: f64,
    /// Weighted energy sums of the last `SHORT_TERM_STEPS` steps (ring).
    ring: Box<[f64; SHORT_TERM_STEPS]>,
    steps: u64,
    momentary: Option<f64>,
    short_term: Option<f64>,
    max_momentary: f64,
    max_short_term: f64,
    /// Mean-square energies of the 400 ms gating blocks (every 100 ms).
    gating_blocks: Vec<f64>,
    /// Mean-square energies of the 3 s LRA blocks (every 100 ms).
    lra_blocks: Vec<f64>,
    series_m: Vec<f32>,
    series_s: Vec<f32>,
    frames: u64,
}

impl Meter {
    /// A meter with the BS.1770-4 weights of [`channel_weights`].
    ///
    /// # Errors
    /// No channels, more than 64, or a rate outside 8 kHz ..= 768 kHz.
    pub fn new(channels: u32, rate: u32) -> Result<Self, MeterError> {
        Self::with_weights(channel_weights(channels), rate)
    }

    /// A meter with one weight per channel (0.0 leaves a channel out).
    ///
    /// # Errors
    /// No channels, more than 64, a negative or non-finite weight, or a rate
    /// outside 8 kHz ..= 768 kHz.
    pub fn with_weights(weights: Vec<f64>, rate: u32) -> Result<Self, MeterError> {
        let channels = weights.len();
        if !(1..=64).contains(&channels) {
            return Err(MeterError(format!(
                "{channels} channels: between 1 and 64 are accepted"
            )));
        }
        if let Some(w) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(MeterError(format!(
                "channel weight {w}: a finite weight ≥ 0 is accepted"
            )));
        }
        if !(8_000..=768_000).contains(&rate) {
            return Err(MeterError(format!(
                "sample rate {rate} Hz: 8000 to 768000 Hz is accepted"
            )));
        }
        let step = ((rate + STEPS_PER_S / 2) / STEPS_PER_S) as usize;
        Ok(Meter {
            channels,
            rate,
            k: KWeighting::new(rate as f64),
            state: vec![KState::default(); channels],
            tp: TruePeak::new(channels, rate),
            weights,
            step,
            in_step: 0,
            acc: 0.0,
            ring: Box::new([0.0; SHORT_TERM_STEPS]),
            steps: 0,
            momentary: None,
            short_term: None,
            max_momentary: -1.0,
            max_short_term: -1.0,
            gating_blocks: Vec::new(),
            lra_blocks: Vec::new(),
            series_m: Vec::new(),
            series_s: Vec::new(),
            frames: 0,
        })
    }

    /// Adds interleaved samples (a whole number of frames).
    ///
    /// # Errors
    /// A slice that is not a whole number of frames.
    pub fn add(&mut self, interleaved: &[f32]) -> Result<(), MeterError> {
        if !interleaved.len().is_multiple_of(self.channels) {
            return Err(MeterError(format!(
                "{} samples is not a whole number of {}-channel frames",
                interleaved.len(),
                self.channels
            )));
        }
        let mut rest = interleaved;
        while !rest.is_empty() {
            let n = (self.step - self.in_step).min(rest.len() / self.channels);
            let (seg, tail) = rest.split_at(n * self.channels);
            self.acc += self.filter(seg);
            self.tp.process(seg);
            self.in_step += n;
            self.frames += n as u64;
            if self.in_step == self.step {
                self.end_step();
            }
            rest = tail;
        }
        Ok(())
    }

    /// K-weights `seg` and returns its channel-weighted sum of squares.
    fn filter(&mut self, seg: &[f32]) -> f64 {
        match self.channels {
            1 => filter_n::<1>(&self.k, &mut self.state, &self.weights, seg),
            2 => filter_n::<2>(&self.k, &mut self.state, &self.weights, seg),
            6 => filter_n::<6>(&self.k, &mut self.state, &self.weights, seg),
            _ => filter_any(&self.k, &mut self.state, &self.weights, seg),
        }
    }

    fn end_step(&mut self) {
        let slot = (self.steps % SHORT_TERM_STEPS as u64) as usize;
        self.ring[slot] = self.acc;
        self.acc = 0.0;
        self.in_step = 0;
        self.steps += 1;
        for s in &mut self.state {
            s.flush_tiny();
        }
        let window = |n: usize| -> f64 {
            (0..n)
                .map(|i| self.ring[(slot + SHORT_TERM_STEPS - i) % SHORT_TERM_STEPS])
                .sum::<f64>()
                / (n * self.step) as f64
        };
        self.momentary = (self.steps >= MOMENTARY_STEPS as u64).then(|| window(MOMENTARY_STEPS));
        self.short_term = (self.steps >= SHORT_TERM_STEPS as u64).then(|| window(SHORT_TERM_STEPS));
        if let Some(m) = self.momentary {
            self.max_momentary = self.max_momentary.max(m);
        }
        if let Some(s) = self.short_term {
            self.max_short_term = self.max_short_term.max(s);
        }
        if self.steps.is_multiple_of(BLOCK_HOP_STEPS) {
            if let Some(m) = self.momentary {
                self.gating_blocks.push(m);
            }
            if let Some(s) = self.short_term {
                self.lra_blocks.push(s);
            }
            let point = |e: Option<f64>| e.and_then(lufs).map_or(f32::NAN, |v| v as f32);
            self.series_m.push(point(self.momentary));
            self.series_s.push(point(self.short_term));
        }
    }

    /// Momentary loudness (LUFS) of the 400 ms ending at the last completed
    /// 10 ms step; `None` before 400 ms or in silence.
    pub fn momentary_lufs(&self) -> Option<f64> {
        self.momentary.and_then(lufs)
    }

    /// Short-term loudness (LUFS) of the 3 s ending at the last completed
    /// 10 ms step; `None` before 3 s or in silence.
    pub fn short_term_lufs(&self) -> Option<f64> {
        self.short_term.and_then(lufs)
    }

    /// Frames per 10 ms step at this rate.
    pub fn step_frames(&self) -> usize {
        self.step
    }

    /// The summary so far. A trailing partial 10 ms step counts toward the
    /// duration and peaks only: BS.1770 gates whole blocks.
    pub fn finish(&self) -> Measurement {
        Measurement {
            integrated_lufs: gating::integrated(&self.gating_blocks).and_then(lufs),
            lra_lu: gating::loudness_range(&self.lra_blocks),
            true_peak_dbtp: amplitude_db(max_of(&self.tp.true_peak)),
            duration_s: self.frames as f64 / self.rate as f64,
        }
    }

    /// Everything: the summary, maxima, per-channel peaks and the series.
    pub fn analysis(&self) -> Analysis {
        let to_db = |v: &f32| amplitude_db(*v as f64);
        let max_energy = |e: f64| (e >= 0.0).then_some(e).and_then(lufs);
        Analysis {
            summary: self.finish(),
            max_momentary_lufs: max_energy(self.max_momentary),
            max_short_term_lufs: max_energy(self.max_short_term),
            sample_peak_dbfs: amplitude_db(max_of(&self.tp.sample_peak)),
            channels: self.channels as u32,
            sample_rate: self.rate,
            true_peak_per_channel_dbtp: self.tp.true_peak.iter().map(to_db).collect(),
            sample_peak_per_channel_dbfs: self.tp.sample_peak.iter().map(to_db).collect(),
            channel_weights: self.weights.clone(),
            series: LoudnessSeries {
                step_s: BLOCK_HOP_STEPS as f64 / STEPS_PER_S as f64,
                momentary_lufs: self.series_m.clone(),
                short_term_lufs: self.series_s.clone(),
            },
        }
    }
}

fn max_of(v: &[f32]) -> f64 {
    v.iter().fold(0f32, |a, b| a.max(*b)) as f64
}

/// The K-filter loop for a known channel count: the channels' recursions
/// are independent, so running them in one frame loop lets the processor
/// overlap them.
fn filter_n<const C: usize>(k: &KWeighting, state: &mut [KState], w: &[f64], seg: &[f32]) -> f64 {
    let st: &mut [KState; C] = state.try_into().expect("channel count");
    let mut sum = [0f64; C];
    for frame in seg.chunks_exact(C) {
        for c in 0..C {
            let y = st[c].step(k, frame[c] as f64);
            sum[c] += y * y;
        }
    }
    (0..C).map(|c| sum[c] * w[c]).sum()
}

fn filter_any(k: &KWeighting, state: &mut [KState], w: &[f64], seg: &[f32]) -> f64 {
    let ch = state.len();
    let mut total = 0.0;
    for (c, st) in state.iter_mut().enumerate() {
        let mut sum = 0f64;
        for &x in seg.iter().skip(c).step_by(ch) {
            let y = st.step(k, x as f64);
            sum += y * y;
        }
        total += sum * w[c];
    }
    total
}

impl Analysis {
    /// The summary and per-channel peaks as JSON, without the series.
    pub fn summary_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("plain data serializes");
        if let Some(o) = v.as_object_mut() {
            o.remove("series");
        }
        v
    }
}

impl std::fmt::Display for Analysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.summary;
        let a = self;
        let v = |x: Option<f64>, unit: &str| {
            x.map_or_else(|| "-".to_owned(), |x| format!("{x:.1} {unit}"))
        };
        writeln!(
            f,
            "{} channels, {} Hz, {:.3} s",
            a.channels, a.sample_rate, m.duration_s
        )?;
        writeln!(f, "integrated       {}", v(m.integrated_lufs, "LUFS"))?;
        writeln!(f, "loudness range   {}", v(m.lra_lu, "LU"))?;
        writeln!(f, "max momentary    {}", v(a.max_momentary_lufs, "LUFS"))?;
        writeln!(f, "max short-term   {}", v(a.max_short_term_lufs, "LUFS"))?;
        writeln!(f, "true peak        {}", v(m.true_peak_dbtp, "dBTP"))?;
        for (c, tp) in self.true_peak_per_channel_dbtp.iter().enumerate() {
            writeln!(f, "  channel {c:<2}     {}", v(*tp, "dBTP"))?;
        }
        write!(f, "sample peak      {}", v(a.sample_peak_dbfs, "dBFS"))
    }
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

    /// A 1 kHz sine at `dbfs` on every channel, `secs` long.
    fn sine(channels: usize, rate: u32, dbfs: f64, secs: f64) -> Vec<f32> {
        let amp = 10f64.powf(dbfs / 20.0);
        (0..(secs * rate as f64) as usize)
            .flat_map(|i| {
                let v = (amp * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / rate as f64).sin())
                    as f32;
                std::iter::repeat_n(v, channels)
            })
            .collect()
    }

    /// A 400 ms burst starting 50 ms into a 100 ms hop: with momentary
    /// loudness evaluated only every 100 ms, no window holds the whole burst
    /// and the maximum reads low (Tech 3341 tests 13 and 14); every 10 ms, one
    /// window holds it exactly.
    #[test]
    fn ten_ms_step_catches_a_burst_between_100_ms_hops() {
        let rate = 48000;
        let mut x = vec![0.0; 2 * 1_050 * 48];
        x.extend(sine(2, rate, -23.0, 0.4));
        x.extend(vec![0.0; 2 * 1_000 * 48]);
        let mut m = Meter::new(2, rate).unwrap();
        let mut every_100ms = f64::NEG_INFINITY;
        for (i, chunk) in x.chunks(2 * m.step_frames()).enumerate() {
            m.add(chunk).unwrap();
            if (i + 1) % 10 == 0 {
                every_100ms = every_100ms.max(m.momentary_lufs().unwrap_or(f64::NEG_INFINITY));
            }
        }
        let a = m.analysis();
        let max = a.max_momentary_lufs.unwrap();
        assert!((max + 23.0).abs() < 0.1, "{max}");
        // Windows on the 100 ms grid hold 350 of the 400 ms:
        // −23 + 10·log10(0.875) = −23.58 LUFS.
        assert!(every_100ms < -23.5, "{every_100ms}");
    }

    #[test]
    fn readings_wait_for_full_windows() {
        let mut m = Meter::new(1, 48000).unwrap();
        m.add(&sine(1, 48000, -20.0, 0.39)).unwrap();
        assert_eq!(m.momentary_lufs(), None);
        m.add(&sine(1, 48000, -20.0, 0.01)).unwrap();
        assert!(m.momentary_lufs().is_some());
        assert_eq!(m.short_term_lufs(), None);
        let a = m.analysis();
        assert_eq!(a.summary.lra_lu, None);
        assert_eq!(a.series.momentary_lufs.len(), 4);
        assert!(a.series.momentary_lufs[2].is_nan());
        assert!(a.series.momentary_lufs[3].is_finite());
    }

    /// BS.1770-4 Table 3: surrounds +1.5 dB, LFE left out. A tone on the
    /// LFE alone reads as silence; on one surround it reads 1.49 dB above
    /// the same tone on L.
    #[test]
    fn surround_weights_and_lfe() {
        let one = |ch: usize| {
            let mut m = Meter::new(6, 48000).unwrap();
            let x: Vec<f32> = sine(1, 48000, -20.0, 2.0)
                .into_iter()
                .flat_map(|v| {
                    let mut f = [0.0; 6];
                    f[ch] = v;
                    f
                })
                .collect();
            m.add(&x).unwrap();
            m.finish().integrated_lufs
        };
        assert_eq!(one(3), None);
        let d = one(4).unwrap() - one(0).unwrap();
        // Same signal, same filter: only the weight differs (1e-6 is rounding).
        assert!((d - 10.0 * 1.41f64.log10()).abs() < 1e-6, "{d}");
    }

    /// Tech 3341 test 1 at 44.1 and 96 kHz: the filters and the 10 ms step
    /// follow the rate, so the ±0.1 LU of the 48 kHz test holds.
    #[test]
    fn rate_independent() {
        for rate in [44100, 96000] {
            let mut m = Meter::new(2, rate).unwrap();
            m.add(&sine(2, rate, -23.0, 5.0)).unwrap();
            let i = m.finish().integrated_lufs.unwrap();
            assert!((i + 23.0).abs() < 0.1, "{rate} Hz: {i}");
        }
    }

    #[test]
    fn refuses_bad_layouts() {
        assert!(Meter::new(0, 48000).is_err());
        assert!(Meter::new(2, 100).is_err());
        assert!(Meter::with_weights(vec![1.0, f64::NAN], 48000).is_err());
        let mut m = Meter::new(2, 48000).unwrap();
        assert!(m.add(&[0.0; 3]).is_err());
    }
}
