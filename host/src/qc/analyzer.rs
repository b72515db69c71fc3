//! Per-frame and per-sample measurements of a decoded programme, turned into
//! events as they happen: nothing of the pictures is kept but the previous
//! frame's luma (for freeze detection), a coarse block grid (for flashes) and
//! a few 160-pixel thumbnails.
//!
//! What is measured where:
//! - every luma sample: histogram (mean, black, R 103 luma levels) and the
//!   mean absolute difference to the previous frame (freeze);
//! - a grid of one sample in 4×4 luma pixels (at chroma sample sites):
//!   R'G'B' through the file's matrix, from luma averaged over the chroma
//!   sample's footprint (R 103 RGB levels after a low-pass at the chroma's
//!   resolution: subsampling overshoot at hard edges is not a gamut error),
//!   and the linear
//!   light averaged over 32×18 screen blocks (luminance and red flashes).
//!   Flash areas are therefore resolved to 1/576 of the screen, not per
//!   pixel as in a certified PSE analyser.

use super::profile::QcProfile;
use deliver_plugin_api::abi::{self, Rational};
use deliver_plugin_api::plugin::VideoView;
use std::collections::{BTreeMap, VecDeque};

/// Luma pixels between grid samples, in both directions.
const GRID_STEP: usize = 4;
/// Flash blocks across and down the screen.
const BLOCKS_X: usize = 32;
const BLOCKS_Y: usize = 18;
/// Thumbnail width in pixels.
pub const THUMB_WIDTH: u32 = 160;
/// At most this many thumbnails of event starts are kept (memory bound).
const MAX_EVENT_THUMBS: usize = 48;
/// Steps of the table from normalized R'G'B' to linear light (the flash
/// blocks average it; 1/4096 of a step is far below the 20 cd/m² that counts).
const LIN_STEPS: usize = 4096;
/// Audio level windows: 10 ms.
const AUDIO_WINDOWS_PER_S: u32 = 100;

/// A stretch of the programme where a check found something, in frames
/// (`frame_out` exclusive); timecodes are added by [`super::spec_checks`].
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub frame_in: u64,
    pub frame_out: u64,
    /// The audio channel (0-based) for audio events.
    pub channel: Option<u32>,
    pub detail: String,
}

/// Signal levels over the programme (EBU R 103).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LevelStats {
    /// Frames with more than the allowed fraction outside.
    pub frames_outside: u64,
    /// The largest fraction of one frame's luma samples outside.
    pub worst_luma_fraction: f64,
    /// The largest fraction of one frame's grid R'G'B' samples outside.
    pub worst_rgb_fraction: f64,
    /// Lowest and highest luma code values seen.
    pub luma_min: u32,
    pub luma_max: u32,
    /// Lowest and highest R'G'B' component seen, percent of nominal.
    pub rgb_min_percent: f64,
    pub rgb_max_percent: f64,
}

/// Per-channel audio measurements.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AudioStats {
    pub sample_rate: u32,
    pub channels: u32,
    /// Samples per channel analysed.
    pub samples: u64,
    /// Sample peak per channel, dBFS (`None`: digital silence).
    pub peak_dbfs: Vec<Option<f64>>,
    /// Channels with no 10 ms window above the silence threshold.
    pub silent_throughout: Vec<bool>,
}

/// A thumbnail before its check ids and timecode are known.
#[derive(Debug, Clone)]
pub struct FrameThumb {
    pub frame: u64,
    pub width: u32,
    pub height: u32,
    pub png: Vec<u8>,
}

/// What the analyzer found in a whole programme.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Video frames analysed (all that were fed, readable or not).
    pub frames: u64,
    /// Frames in a pixel format the analyzer does not read (RGB).
    pub unreadable_frames: u64,
    pub frame_rate: Rational,
    pub black: Vec<Span>,
    pub freeze: Vec<Span>,
    pub legal_range: Vec<Span>,
    pub flash: Vec<Span>,
    pub red_flash: Vec<Span>,
    pub silence: Vec<Span>,
    pub levels: LevelStats,
    /// Most luminance flashes seen in any one-second window.
    pub max_flashes_per_s: f64,
    /// Most red flashes seen in any one-second window.
    pub max_red_flashes_per_s: f64,
    /// Mean luma over the programme, percent of the nominal range.
    pub mean_luma_percent: Option<f64>,
    pub audio: Option<AudioStats>,
    /// Sampled frames and the first frame of events, in frame order.
    pub thumbnails: Vec<FrameThumb>,
    /// Failures that stopped a measurement (PNG encoding), for the report.
    pub notes: Vec<String>,
}

/// The thresholds the analyzer needs, copied out of the profile.
#[derive(Debug, Clone)]
struct Limits {
    black_min_frames: u64,
    black_luma_percent: f64,
    black_max_bright: f64,
    freeze_min_frames: u64,
    freeze_max_diff: f64,
    luma_min_percent: f64,
    luma_max_percent: f64,
    rgb_min: f32,
    rgb_max: f32,
    level_max_fraction: f64,
    flash_transitions: usize,
    flash_area: f64,
    flash_delta: f32,
    flash_dark: f32,
    peak_cdm2: f32,
    red_ratio: f32,
    red_delta: f32,
    silence_min_s: f64,
    silence_dbfs: f64,
    thumbnails: u32,
}

/// Frames in at least `s` seconds at `fps` (at least one).
fn frames_for(s: f64, fps: f64) -> u64 {
    ((s * fps) - 1e-6).ceil().max(1.0) as u64
}

/// The layout facts of the frames being analysed; a change resets the
/// inter-frame state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    width: usize,
    height: usize,
    pix_fmt: u32,
}

/// Per-format constants derived from the bit depth, range and matrix.
#[derive(Debug, Clone)]
struct Levels {
    depth: u32,
    bytes: usize,
    chroma_x: u32,
    chroma_y: u32,
    chroma: bool,
    /// Code of nominal black and the nominal luma span (219·2^(d−8) limited).
    y_black: f64,
    y_span: f64,
    /// Code of zero chroma (grey), for formats without chroma planes.
    c_mid: f64,
    /// Code → normalized luma; code → the Cr/Cb terms of R', G', B'.
    yn: Vec<f32>,
    cr_r: Vec<f32>,
    cr_g: Vec<f32>,
    cb_g: Vec<f32>,
    cb_b: Vec<f32>,
    /// Luma codes outside `[lo, hi]` violate R 103.
    luma_lo: usize,
    luma_hi: usize,
    /// Luma codes above this are not black.
    black_hi: usize,
    /// Luma code → display luminance (cd/m²).
    lum: Vec<f32>,
}

/// BT.1886 with zero black: display light from a normalized signal.
fn eotf(v: f64) -> f64 {
    v.clamp(0.0, 1.0).powf(2.4)
}

/// Kr, Kb of the matrix a file is tagged with (H.273 code points), or of
/// BT.709 (HD and up) / BT.601 (SD) when it is untagged.
fn matrix_coefficients(matrix: u32, height: usize) -> (f32, f32) {
    match matrix {
        1 => (0.2126, 0.0722),
        5 | 6 => (0.299, 0.114),
        9 | 10 => (0.2627, 0.0593),
        _ if height >= 720 => (0.2126, 0.0722),
        _ => (0.299, 0.114),
    }
}

impl Levels {
    fn new(fmt: u32, height: usize, color: abi::ColorTags, lim: &Limits) -> Option<Levels> {
        let l = abi::pix::layout(fmt)?;
        if fmt == abi::pix::RGBA {
            return None;
        }
        let depth = l.bit_depth;
        let scale = f64::from(1u32 << (depth - 8));
        let max = f64::from((1u32 << depth) - 1);
        let full = color.range == 2;
        let (y_black, y_span, c_mid, c_span) = if full {
            (0.0, max, f64::from(1u32 << (depth - 1)), max)
        } else {
            (16.0 * scale, 219.0 * scale, 128.0 * scale, 224.0 * scale)
        };
        let (kr, kb) = matrix_coefficients(color.matrix, height);
        let (kr, kb) = (f64::from(kr), f64::from(kb));
        let kg = 1.0 - kr - kb;
        // R' = Y' + 2(1−Kr)·Cr; B' = Y' + 2(1−Kb)·Cb; G' from Y' = Kr·R' + Kg·G' + Kb·B'.
        let chroma = |k: f64| -> Vec<f32> {
            (0..1u32 << depth)
                .map(|c| (k * (f64::from(c) - c_mid) / c_span) as f32)
                .collect()
        };
        let code = |pct: f64| y_black + pct / 100.0 * y_span;
        let lo = code(lim.luma_min_percent).ceil().max(0.0) as usize;
        let hi = code(lim.luma_max_percent).floor().min(max) as usize;
        let black_hi = code(lim.black_luma_percent).floor().clamp(0.0, max) as usize;
        let peak = f64::from(lim.peak_cdm2);
        let lum = (0..=(1u32 << depth) - 1)
            .map(|c| (peak * eotf((f64::from(c) - y_black) / y_span)) as f32)
            .collect();
        Some(Levels {
            depth,
            bytes: l.bytes_per_sample,
            chroma_x: l.chroma_shift_x,
            chroma_y: l.chroma_shift_y,
            chroma: l.planes >= 3,
            y_black,
            y_span,
            c_mid,
            yn: (0..1u32 << depth)
                .map(|c| ((f64::from(c) - y_black) / y_span) as f32)
                .collect(),
            cr_r: chroma(2.0 * (1.0 - kr)),
            cr_g: chroma(-2.0 * kr * (1.0 - kr) / kg),
            cb_g: chroma(-2.0 * kb * (1.0 - kb) / kg),
            cb_b: chroma(2.0 * (1.0 - kb)),
            luma_lo: lo,
            luma_hi: hi,
            black_hi,
            lum,
        })
    }

    /// Normalized R'G'B' (0..1 nominal) of one sample (codes beyond the
    /// bit depth, which a decoder should not produce, are clamped).
    #[inline]
    fn rgb(&self, y: u32, cb: u32, cr: u32) -> [f32; 3] {
        let top = self.yn.len() - 1;
        let (y, cb, cr) = (
            (y as usize).min(top),
            (cb as usize).min(top),
            (cr as usize).min(top),
        );
        let yn = self.yn[y];
        [
            yn + self.cr_r[cr],
            yn + self.cr_g[cr] + self.cb_g[cb],
            yn + self.cb_b[cb],
        ]
    }
}

/// One sample of a plane.
#[inline]
fn sample(plane: &(&[u8], usize), x: usize, y: usize, bytes: usize) -> u32 {
    let (data, stride) = plane;
    let i = y * stride + x * bytes;
    if bytes == 1 {
        u32::from(data[i])
    } else {
        u32::from(u16::from_le_bytes([data[i], data[i + 1]]))
    }
}

/// Whether a plane holds `rows` rows of `row_bytes` at `stride`.
fn plane_fits(plane: &(&[u8], usize), rows: usize, row_bytes: usize) -> bool {
    rows == 0 || (plane.1 >= row_bytes && plane.0.len() >= (rows - 1) * plane.1 + row_bytes)
}

/// The luma pass over every sample: histogram, and the sum of absolute
/// differences to (and then a copy into) `prev`.
fn luma_pass<const B: usize>(
    plane: &(&[u8], usize),
    w: usize,
    h: usize,
    prev: &mut [u8],
    compare: bool,
    hist: &mut [u32],
) -> u64 {
    let n = hist.len() / 4;
    let top = n - 1;
    let mut sad = 0u64;
    for r in 0..h {
        let row = &plane.0[r * plane.1..r * plane.1 + w * B];
        let prow = &mut prev[r * w * B..(r + 1) * w * B];
        if B == 1 {
            // Four histograms: equal neighbours (flat pictures) would
            // otherwise serialize on one counter.
            let (h01, h23) = hist.split_at_mut(2 * n);
            let (h0, h1) = h01.split_at_mut(n);
            let (h2, h3) = h23.split_at_mut(n);
            let mut q = row.chunks_exact(4);
            for c in &mut q {
                h0[c[0] as usize] += 1;
                h1[c[1] as usize] += 1;
                h2[c[2] as usize] += 1;
                h3[c[3] as usize] += 1;
            }
            for &v in q.remainder() {
                h0[v as usize] += 1;
            }
            if compare {
                let s: u32 = row
                    .iter()
                    .zip(prow.iter())
                    .map(|(&a, &b)| u32::from(a.abs_diff(b)))
                    .sum();
                sad += u64::from(s);
            }
        } else {
            let mut s = 0u64;
            for (c, p) in row.chunks_exact(2).zip(prow.chunks_exact(2)) {
                let a = u16::from_le_bytes([c[0], c[1]]);
                hist[usize::from(a).min(top)] += 1;
                if compare {
                    s += u64::from(a.abs_diff(u16::from_le_bytes([p[0], p[1]])));
                }
            }
            sad += s;
        }
        prow.copy_from_slice(row);
    }
    sad
}

/// A turning-point tracker of one block's value: reports a transition when
/// the value has moved by `delta` from its last extreme in the opposite
/// direction (so slow ramps count once, as one transition).
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    init: bool,
    dir: i8,
    lo: f32,
    hi: f32,
    lo_aux: f32,
    hi_aux: f32,
}

impl Track {
    /// `ok(lo, hi, lo_aux, hi_aux)` says whether a change between the two
    /// states counts (the darker state dark enough, the redder red enough).
    #[inline]
    fn step(
        &mut self,
        v: f32,
        aux: f32,
        delta: f32,
        ok: impl Fn(f32, f32, f32, f32) -> bool,
    ) -> i8 {
        if !self.init {
            *self = Track {
                init: true,
                dir: 0,
                lo: v,
                hi: v,
                lo_aux: aux,
                hi_aux: aux,
            };
            return 0;
        }
        let rise = |t: &mut Track| {
            t.dir = 1;
            t.hi = v;
            t.hi_aux = aux;
            1
        };
        let fall = |t: &mut Track| {
            t.dir = -1;
            t.lo = v;
            t.lo_aux = aux;
            -1
        };
        match self.dir {
            1 => {
                if v > self.hi {
                    self.hi = v;
                    self.hi_aux = aux;
                } else if self.hi - v >= delta && ok(v, self.hi, aux, self.hi_aux) {
                    return fall(self);
                }
            }
            -1 => {
                if v < self.lo {
                    self.lo = v;
                    self.lo_aux = aux;
                } else if v - self.lo >= delta && ok(self.lo, v, self.lo_aux, aux) {
                    return rise(self);
                }
            }
            _ => {
                if v - self.lo >= delta && ok(self.lo, v, self.lo_aux, aux) {
                    return rise(self);
                }
                if self.hi - v >= delta && ok(v, self.hi, aux, self.hi_aux) {
                    return fall(self);
                }
                if v < self.lo {
                    self.lo = v;
                    self.lo_aux = aux;
                }
                if v > self.hi {
                    self.hi = v;
                    self.hi_aux = aux;
                }
            }
        }
        0
    }
}

/// Linear light of the grid samples of one block in one frame.
#[derive(Debug, Clone, Copy, Default)]
struct BlockSum {
    n: u32,
    lum: f32,
    r: f32,
    g: f32,
    b: f32,
}

/// Counts frame-level transitions in a sliding one-second window and makes
/// events where there are more than allowed.
#[derive(Debug)]
struct FlashCounter {
    what: &'static str,
    window: u64,
    limit: usize,
    times: VecDeque<u64>,
    max_in_window: usize,
    open: Option<(u64, u64, usize)>,
    events: Vec<Span>,
    /// Thumbnails of the last transitions, for the first frame of an event.
    ring: VecDeque<(u64, Option<RawThumb>)>,
}

impl FlashCounter {
    fn new(what: &'static str, window: u64, limit: usize) -> Self {
        FlashCounter {
            what,
            window: window.max(1),
            limit,
            times: VecDeque::new(),
            max_in_window: 0,
            open: None,
            events: Vec::new(),
            ring: VecDeque::new(),
        }
    }

    /// A transition at `frame`; returns the first frame of a new event.
    fn transition(
        &mut self,
        frame: u64,
        thumb: Option<RawThumb>,
    ) -> Option<(u64, Option<RawThumb>)> {
        self.times.push_back(frame);
        while self
            .times
            .front()
            .is_some_and(|&t| t + self.window <= frame)
        {
            self.times.pop_front();
        }
        self.ring.push_back((frame, thumb));
        while self.ring.len() > self.limit + 1 {
            self.ring.pop_front();
        }
        let n = self.times.len();
        self.max_in_window = self.max_in_window.max(n);
        if n <= self.limit {
            return None;
        }
        let first = *self.times.front().expect("not empty");
        match &mut self.open {
            Some((_, out, most)) if first <= *out => {
                *out = frame + 1;
                *most = (*most).max(n);
                None
            }
            _ => {
                self.close();
                self.open = Some((first, frame + 1, n));
                let thumb = self
                    .ring
                    .iter_mut()
                    .find(|(f, _)| *f == first)
                    .and_then(|(_, t)| t.take());
                Some((first, thumb))
            }
        }
    }

    fn close(&mut self) {
        if let Some((a, b, most)) = self.open.take() {
            self.events.push(Span {
                frame_in: a,
                frame_out: b,
                channel: None,
                detail: format!(
                    "{} {} transitions ({} flashes) within one second",
                    most,
                    self.what,
                    most / 2
                ),
            });
        }
    }
}

/// A thumbnail as RGB, before PNG encoding.
#[derive(Debug, Clone)]
struct RawThumb {
    frame: u64,
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

/// A run of frames that share a condition (black, frozen, out of range).
#[derive(Debug, Default)]
struct Run {
    start: Option<u64>,
    /// Worst value seen in the run, for the event's detail.
    worst: f64,
    /// Sum of a per-frame value, for the run's mean.
    sum: f64,
    n: u64,
    thumb: Option<RawThumb>,
    committed: bool,
}

/// Audio silence and per-channel levels.
#[derive(Debug)]
struct AudioState {
    rate: u32,
    channels: usize,
    window: usize,
    filled: usize,
    sumsq: Vec<f64>,
    peak: Vec<f32>,
    loud: Vec<bool>,
    run: Vec<Option<u64>>,
    /// Samples per channel before the current window.
    done: u64,
    threshold_ms: f64,
    min_samples: u64,
    events: Vec<(u64, u64, u32)>,
}

impl AudioState {
    fn new(channels: usize, rate: u32, lim: &Limits) -> Self {
        AudioState {
            rate,
            channels,
            window: (rate / AUDIO_WINDOWS_PER_S).max(1) as usize,
            filled: 0,
            sumsq: vec![0.0; channels],
            peak: vec![0.0; channels],
            loud: vec![false; channels],
            run: vec![None; channels],
            done: 0,
            threshold_ms: 10f64.powf(lim.silence_dbfs / 10.0),
            min_samples: ((lim.silence_min_s * f64::from(rate)) - 1e-6)
                .ceil()
                .max(1.0) as u64,
            events: Vec::new(),
        }
    }

    fn end_window(&mut self) {
        if self.filled == 0 {
            return;
        }
        let start = self.done;
        for ch in 0..self.channels {
            let ms = self.sumsq[ch] / self.filled as f64;
            let silent = ms < self.threshold_ms;
            if silent {
                self.run[ch].get_or_insert(start);
            } else {
                self.loud[ch] = true;
                if let Some(s) = self.run[ch].take() {
                    self.close_run(s, start, ch);
                }
            }
            self.sumsq[ch] = 0.0;
        }
        self.done += self.filled as u64;
        self.filled = 0;
    }

    fn close_run(&mut self, s: u64, e: u64, ch: usize) {
        if e - s >= self.min_samples {
            self.events.push((s, e, ch as u32));
        }
    }

    fn push(&mut self, samples: &[f32]) {
        for frame in samples.chunks_exact(self.channels) {
            for (ch, &x) in frame.iter().enumerate() {
                self.sumsq[ch] += f64::from(x) * f64::from(x);
                let a = x.abs();
                if a > self.peak[ch] {
                    self.peak[ch] = a;
                }
            }
            self.filled += 1;
            if self.filled == self.window {
                self.end_window();
            }
        }
    }

    fn finish(&mut self) {
        self.end_window();
        for ch in 0..self.channels {
            if let Some(s) = self.run[ch].take() {
                self.close_run(s, self.done, ch);
            }
        }
    }
}

/// Measures decoded frames and audio in programme order.
///
/// ```no_run
/// # fn demo(p: &deliver::qc::QcProfile, info: &deliver_plugin_api::abi::MediaInfo,
/// #         v: &deliver_plugin_api::plugin::VideoView<'_>, pcm: &[f32]) {
/// let mut a = deliver::qc::Analyzer::new(p, info);
/// a.video(v);
/// a.audio(pcm, 2, 48_000);
/// let analysis = a.finish();
/// # }
/// ```
pub struct Analyzer {
    lim: Limits,
    rate: Rational,
    fps: f64,
    color: abi::ColorTags,
    frame: u64,
    unreadable: u64,
    geometry: Option<Geometry>,
    levels: Option<Levels>,
    prev: Vec<u8>,
    has_prev: bool,
    hist: Vec<u32>,
    /// Grid column → block column, grid row → block row.
    block_col: Vec<u16>,
    block_row: Vec<u16>,
    sums: Vec<BlockSum>,
    lum_track: Vec<Track>,
    red_track: Vec<Track>,
    /// Normalized signal (0..1 in LIN_STEPS steps) → linear light.
    lin: Vec<f32>,
    black: Run,
    freeze: Run,
    legal: Run,
    black_events: Vec<Span>,
    freeze_events: Vec<Span>,
    legal_events: Vec<Span>,
    flash: FlashCounter,
    red: FlashCounter,
    levels_stats: LevelStats,
    luma_sum: f64,
    luma_frames: u64,
    regular_every: u64,
    regular_taken: u32,
    thumbs: BTreeMap<u64, RawThumb>,
    event_thumbs: usize,
    audio: Option<AudioState>,
    audio_rejected: Option<String>,
}

impl Analyzer {
    /// An analyzer for a file described by `info` (frame rate, colour tags,
    /// frame count for spacing thumbnails), held to `profile`.
    pub fn new(profile: &QcProfile, info: &abi::MediaInfo) -> Analyzer {
        let rate = if info.frame_rate.num > 0 && info.frame_rate.den > 0 {
            info.frame_rate
        } else {
            // No rate (audio only): events are still counted in 25 fps frames.
            Rational::new(25, 1)
        };
        let fps = rate.as_f64();
        let p = profile;
        let lim = Limits {
            black_min_frames: frames_for(p.black.min_duration_s, fps),
            black_luma_percent: p.black.max_luma_percent,
            black_max_bright: p.black.max_fraction_bright,
            freeze_min_frames: frames_for(p.freeze.min_duration_s, fps),
            freeze_max_diff: p.freeze.max_diff,
            luma_min_percent: p.legal_range.luma_min_percent,
            luma_max_percent: p.legal_range.luma_max_percent,
            rgb_min: (p.legal_range.rgb_min_percent / 100.0) as f32,
            rgb_max: (p.legal_range.rgb_max_percent / 100.0) as f32,
            level_max_fraction: p.legal_range.max_fraction,
            flash_transitions: (2.0 * p.flash.max_flashes_per_s).floor() as usize,
            flash_area: p.flash.min_area,
            flash_delta: p.flash.min_delta_cdm2 as f32,
            flash_dark: p.flash.max_dark_cdm2 as f32,
            peak_cdm2: p.flash.display_peak_cdm2 as f32,
            red_ratio: p.flash.red_ratio as f32,
            red_delta: p.flash.red_delta as f32,
            silence_min_s: p.silence.min_duration_s,
            silence_dbfs: p.silence.threshold_dbfs,
            thumbnails: p.thumbnails,
        };
        let estimated = if info.n_frames > 0 {
            info.n_frames as f64
        } else {
            let us = if info.video_duration_us > 0 {
                info.video_duration_us
            } else {
                info.duration_us
            };
            (us.max(0) as f64 / 1e6 * fps).round()
        };
        let regular_every = if lim.thumbnails == 0 {
            u64::MAX
        } else if estimated >= 1.0 {
            ((estimated / f64::from(lim.thumbnails)).floor() as u64).max(1)
        } else {
            (fps * 10.0).round().max(1.0) as u64
        };
        let window = fps.round().max(1.0) as u64;
        Analyzer {
            flash: FlashCounter::new("luminance", window, lim.flash_transitions),
            red: FlashCounter::new("red", window, lim.flash_transitions),
            lim,
            rate,
            fps,
            color: info.color,
            frame: 0,
            unreadable: 0,
            geometry: None,
            levels: None,
            prev: Vec::new(),
            has_prev: false,
            hist: Vec::new(),
            block_col: Vec::new(),
            block_row: Vec::new(),
            sums: Vec::new(),
            lum_track: Vec::new(),
            red_track: Vec::new(),
            lin: (0..=LIN_STEPS)
                .map(|i| eotf(i as f64 / LIN_STEPS as f64) as f32)
                .collect(),
            black: Run::default(),
            freeze: Run::default(),
            legal: Run::default(),
            black_events: Vec::new(),
            freeze_events: Vec::new(),
            legal_events: Vec::new(),
            levels_stats: LevelStats {
                luma_min: u32::MAX,
                rgb_min_percent: f64::INFINITY,
                rgb_max_percent: f64::NEG_INFINITY,
                ..LevelStats::default()
            },
            luma_sum: 0.0,
            luma_frames: 0,
            regular_every,
            regular_taken: 0,
            thumbs: BTreeMap::new(),
            event_thumbs: 0,
            audio: None,
            audio_rejected: None,
        }
    }

    /// Sets up per-format state for a new frame layout.
    fn configure(&mut self, g: Geometry, color: abi::ColorTags) {
        self.geometry = Some(g);
        self.levels = Levels::new(g.pix_fmt, g.height, color, &self.lim);
        self.has_prev = false;
        let Some(l) = &self.levels else {
            return;
        };
        self.prev = vec![0; g.width * g.height * l.bytes];
        self.hist = vec![0; 4 << l.depth];
        let gx = g.width.div_ceil(GRID_STEP);
        let gy = g.height.div_ceil(GRID_STEP);
        self.block_col = (0..gx).map(|i| (i * BLOCKS_X / gx) as u16).collect();
        self.block_row = (0..gy).map(|i| (i * BLOCKS_Y / gy) as u16).collect();
        self.sums = vec![BlockSum::default(); BLOCKS_X * BLOCKS_Y];
        self.lum_track = vec![Track::default(); BLOCKS_X * BLOCKS_Y];
        self.red_track = vec![Track::default(); BLOCKS_X * BLOCKS_Y];
    }

    /// Measures one decoded picture (the next in display order).
    pub fn video(&mut self, v: &VideoView<'_>) {
        let f = self.frame;
        self.frame += 1;
        let g = Geometry {
            width: v.width as usize,
            height: v.height as usize,
            pix_fmt: v.pix_fmt,
        };
        if self.geometry != Some(g) {
            // The stream's own tags win over the container's when present.
            let color = if v.color.matrix != 2 || v.color.range != 0 {
                v.color
            } else {
                self.color
            };
            self.configure(g, color);
        }
        let Some(l) = self.levels.take() else {
            self.unreadable += 1;
            return;
        };
        let readable = self.measure(f, v, &l);
        self.levels = Some(l);
        if !readable {
            self.unreadable += 1;
            self.has_prev = false;
        }
    }

    /// The per-frame work; false if the planes are not what the format says.
    fn measure(&mut self, f: u64, v: &VideoView<'_>, l: &Levels) -> bool {
        let (w, h) = (v.width as usize, v.height as usize);
        if w == 0 || h == 0 || v.n_planes < if l.chroma { 3 } else { 1 } {
            return false;
        }
        let cw = w.div_ceil(1 << l.chroma_x);
        let ch = h.div_ceil(1 << l.chroma_y);
        if !plane_fits(&v.planes[0], h, w * l.bytes)
            || (l.chroma
                && !(plane_fits(&v.planes[1], ch, cw * l.bytes)
                    && plane_fits(&v.planes[2], ch, cw * l.bytes)))
        {
            return false;
        }
        let total = (w * h) as f64;
        let max_code = f64::from((1u32 << l.depth) - 1);

        // Every luma sample: histogram and difference to the previous frame.
        self.hist.fill(0);
        let compare = self.has_prev;
        let sad = if l.bytes == 1 {
            luma_pass::<1>(&v.planes[0], w, h, &mut self.prev, compare, &mut self.hist)
        } else {
            luma_pass::<2>(&v.planes[0], w, h, &mut self.prev, compare, &mut self.hist)
        };
        self.has_prev = true;
        let n = 1usize << l.depth;
        let (mut below, mut above, mut bright, mut sum, mut min, mut max) =
            (0u64, 0u64, 0u64, 0f64, usize::MAX, 0usize);
        for code in 0..n {
            let c = u64::from(self.hist[code])
                + u64::from(self.hist[n + code])
                + u64::from(self.hist[2 * n + code])
                + u64::from(self.hist[3 * n + code]);
            if c == 0 {
                continue;
            }
            min = min.min(code);
            max = max.max(code);
            sum += c as f64 * code as f64;
            if code < l.luma_lo {
                below += c;
            }
            if code > l.luma_hi {
                above += c;
            }
            if code > l.black_hi {
                bright += c;
            }
        }
        let mean_percent = (sum / total - l.y_black) / l.y_span * 100.0;
        self.luma_sum += mean_percent;
        self.luma_frames += 1;
        self.levels_stats.luma_min = self.levels_stats.luma_min.min(min as u32);
        self.levels_stats.luma_max = self.levels_stats.luma_max.max(max as u32);

        // The grid: R'G'B' levels and block light for flashes.
        for s in &mut self.sums {
            *s = BlockSum::default();
        }
        let (mut rgb_out, mut grid_n) = (0u64, 0u64);
        let (mut rgb_lo, mut rgb_hi) = (f32::INFINITY, f32::NEG_INFINITY);
        let lin_lut = &self.lin;
        let lin = |x: f32| lin_lut[(x.clamp(0.0, 1.0) * LIN_STEPS as f32) as usize];
        for (gy, &brow) in self.block_row.iter().enumerate() {
            let y = gy * GRID_STEP;
            let cy = y >> l.chroma_y;
            for (gx, &bcol) in self.block_col.iter().enumerate() {
                let x = gx * GRID_STEP;
                let yv = sample(&v.planes[0], x, y, l.bytes);
                let (cb, cr) = if l.chroma {
                    let cx = x >> l.chroma_x;
                    (
                        sample(&v.planes[1], cx, cy, l.bytes),
                        sample(&v.planes[2], cx, cy, l.bytes),
                    )
                } else {
                    let mid = l.c_mid as u32;
                    (mid, mid)
                };
                // R 103's low-pass before the gamut test: luma taken at
                // the chroma's resolution (the mean over the chroma
                // sample's footprint), so that subsampling overshoot at a
                // hard colour edge (full-resolution luma against averaged
                // chroma) is not counted as out of gamut.
                let ya = if l.chroma && (l.chroma_x | l.chroma_y) != 0 {
                    let (x0, y0) = (
                        (x >> l.chroma_x) << l.chroma_x,
                        (y >> l.chroma_y) << l.chroma_y,
                    );
                    let (nx, ny) = (1usize << l.chroma_x, 1usize << l.chroma_y);
                    let mut sum = 0;
                    for dy in 0..ny {
                        for dx in 0..nx {
                            sum += sample(
                                &v.planes[0],
                                (x0 + dx).min(w - 1),
                                (y0 + dy).min(h - 1),
                                l.bytes,
                            );
                        }
                    }
                    let n = (nx * ny) as u32;
                    (sum + n / 2) / n
                } else {
                    yv
                };
                let [r, g, b] = l.rgb(ya, cb, cr);
                let lo = r.min(g).min(b);
                let hi = r.max(g).max(b);
                rgb_lo = rgb_lo.min(lo);
                rgb_hi = rgb_hi.max(hi);
                if lo < self.lim.rgb_min || hi > self.lim.rgb_max {
                    rgb_out += 1;
                }
                grid_n += 1;
                let s = &mut self.sums[usize::from(brow) * BLOCKS_X + usize::from(bcol)];
                s.n += 1;
                s.lum += l.lum[(yv as usize).min(l.lum.len() - 1)];
                s.r += lin(r);
                s.g += lin(g);
                s.b += lin(b);
            }
        }
        self.levels_stats.rgb_min_percent = self
            .levels_stats
            .rgb_min_percent
            .min(f64::from(rgb_lo) * 100.0);
        self.levels_stats.rgb_max_percent = self
            .levels_stats
            .rgb_max_percent
            .max(f64::from(rgb_hi) * 100.0);

        let mut thumb: Option<RawThumb> = None;
        let get_thumb = |thumb: &mut Option<RawThumb>| -> RawThumb {
            thumb.get_or_insert_with(|| make_thumb(f, v, l)).clone()
        };

        // Regular samples of the programme.
        if self.regular_taken < self.lim.thumbnails
            && f % self.regular_every == self.regular_every / 2
        {
            self.regular_taken += 1;
            let t = get_thumb(&mut thumb);
            self.thumbs.insert(f, t);
        }

        // Black.
        let bright_fraction = bright as f64 / total;
        let is_black = bright_fraction <= self.lim.black_max_bright;
        if is_black {
            if self.black.start.is_none() {
                self.black = Run {
                    start: Some(f),
                    thumb: Some(get_thumb(&mut thumb)),
                    ..Run::default()
                };
            }
            self.black.worst = self.black.worst.max(bright_fraction);
            self.black.sum += mean_percent;
            self.black.n += 1;
            if self.black.n >= self.lim.black_min_frames && !self.black.committed {
                self.black.committed = true;
                let t = self.black.thumb.take();
                self.commit_thumb(t);
            }
        } else {
            self.end_black(f);
        }

        // Freeze: this frame repeats the previous one.
        if compare {
            let diff = sad as f64 / total / max_code;
            let same = diff <= self.lim.freeze_max_diff;
            if same {
                if self.freeze.start.is_none() {
                    let mut t = get_thumb(&mut thumb);
                    // The picture is the previous frame's: label it so.
                    t.frame = f - 1;
                    self.freeze = Run {
                        start: Some(f - 1),
                        thumb: Some(t),
                        n: 1,
                        ..Run::default()
                    };
                }
                self.freeze.worst = self.freeze.worst.max(diff);
                self.freeze.n += 1;
                if self.freeze.n >= self.lim.freeze_min_frames && !self.freeze.committed {
                    self.freeze.committed = true;
                    let t = self.freeze.thumb.take();
                    self.commit_thumb(t);
                }
            } else {
                self.end_freeze(f);
            }
        }

        // Levels (R 103).
        let luma_fraction = (below + above) as f64 / total;
        let rgb_fraction = if grid_n > 0 {
            rgb_out as f64 / grid_n as f64
        } else {
            0.0
        };
        let st = &mut self.levels_stats;
        st.worst_luma_fraction = st.worst_luma_fraction.max(luma_fraction);
        st.worst_rgb_fraction = st.worst_rgb_fraction.max(rgb_fraction);
        let outside = luma_fraction > self.lim.level_max_fraction
            || rgb_fraction > self.lim.level_max_fraction;
        if outside {
            st.frames_outside += 1;
            if self.legal.start.is_none() {
                self.legal = Run {
                    start: Some(f),
                    committed: true,
                    ..Run::default()
                };
                let t = get_thumb(&mut thumb);
                self.commit_thumb(Some(t));
            }
            self.legal.worst = self.legal.worst.max(luma_fraction);
            self.legal.sum = self.legal.sum.max(rgb_fraction);
            self.legal.n += 1;
        } else {
            self.end_legal(f, l);
        }

        // Flashes, block by block, then over the screen.
        let (mut up, mut down, mut red_up, mut red_down, mut area) = (0f64, 0f64, 0f64, 0f64, 0f64);
        let (delta, dark) = (self.lim.flash_delta, self.lim.flash_dark);
        let (rdelta, rratio) = (self.lim.red_delta, self.lim.red_ratio);
        for ((s, lt), rt) in self
            .sums
            .iter()
            .zip(&mut self.lum_track)
            .zip(&mut self.red_track)
        {
            if s.n == 0 {
                continue;
            }
            let k = s.n as f32;
            let w8 = f64::from(s.n);
            area += w8;
            let lum = s.lum / k;
            match lt.step(lum, 0.0, delta, |lo, _, _, _| lo < dark) {
                1 => up += w8,
                -1 => down += w8,
                _ => {}
            }
            let (r, g, b) = (s.r / k, s.g / k, s.b / k);
            let redness = (r - g - b).max(0.0) * 320.0;
            let ratio = if r + g + b > 1e-6 {
                r / (r + g + b)
            } else {
                0.0
            };
            match rt.step(redness, ratio, rdelta, |_, _, _, hi_ratio| {
                hi_ratio >= rratio
            }) {
                1 => red_up += w8,
                -1 => red_down += w8,
                _ => {}
            }
        }
        if area > 0.0 {
            let min_area = self.lim.flash_area;
            for (a, is_red) in [(up, false), (down, false), (red_up, true), (red_down, true)] {
                if a / area > min_area {
                    let t = Some(get_thumb(&mut thumb));
                    let counter = if is_red {
                        &mut self.red
                    } else {
                        &mut self.flash
                    };
                    if let Some((_, t)) = counter.transition(f, t) {
                        self.commit_thumb(t);
                    }
                }
            }
        }
        true
    }

    fn commit_thumb(&mut self, t: Option<RawThumb>) {
        if let Some(t) = t {
            if self.event_thumbs < MAX_EVENT_THUMBS && !self.thumbs.contains_key(&t.frame) {
                self.event_thumbs += 1;
                self.thumbs.insert(t.frame, t);
            }
        }
    }

    fn end_black(&mut self, f: u64) {
        let r = std::mem::take(&mut self.black);
        if let Some(s) = r.start {
            if r.n >= self.lim.black_min_frames {
                self.black_events.push(Span {
                    frame_in: s,
                    frame_out: f,
                    channel: None,
                    detail: format!(
                        "mean luma {:.1} % of nominal; at most {:.2} % of pixels above {} % luma",
                        r.sum / r.n as f64,
                        r.worst * 100.0,
                        self.lim.black_luma_percent
                    ),
                });
            }
        }
    }

    fn end_freeze(&mut self, f: u64) {
        let r = std::mem::take(&mut self.freeze);
        if let Some(s) = r.start {
            if r.n >= self.lim.freeze_min_frames {
                self.freeze_events.push(Span {
                    frame_in: s,
                    frame_out: f,
                    channel: None,
                    detail: format!(
                        "{} identical pictures; mean |ΔY| at most {:.5} of full scale",
                        r.n, r.worst
                    ),
                });
            }
        }
    }

    fn end_legal(&mut self, f: u64, l: &Levels) {
        let r = std::mem::take(&mut self.legal);
        if let Some(s) = r.start {
            self.legal_events.push(Span {
                frame_in: s,
                frame_out: f,
                channel: None,
                detail: format!(
                    "worst frame: {:.2} % of luma samples outside codes {}–{}, {:.2} % of sampled R'G'B' outside {}–{} %",
                    r.worst * 100.0,
                    l.luma_lo,
                    l.luma_hi,
                    r.sum * 100.0,
                    self.lim.rgb_min * 100.0,
                    self.lim.rgb_max * 100.0
                ),
            });
        }
    }

    /// Measures the next decoded audio (interleaved `f32`, in order).
    pub fn audio(&mut self, samples: &[f32], channels: u32, rate: u32) {
        if channels == 0 || rate == 0 {
            return;
        }
        let st = self
            .audio
            .get_or_insert_with(|| AudioState::new(channels as usize, rate, &self.lim));
        if st.channels != channels as usize || st.rate != rate {
            // A decoder that changes layout mid-stream: keep the first
            // layout's measurements and say so.
            self.audio_rejected.get_or_insert_with(|| {
                format!(
                    "audio changed from {} channels at {} Hz to {channels} at {rate} Hz; later audio not analysed",
                    st.channels, st.rate
                )
            });
            return;
        }
        st.push(samples);
    }

    /// Closes open runs and returns what was found.
    pub fn finish(mut self) -> Analysis {
        let end = self.frame;
        self.end_black(end);
        self.end_freeze(end);
        if let Some(l) = self.levels.take() {
            self.end_legal(end, &l);
        }
        self.flash.close();
        self.red.close();
        let mut notes: Vec<String> = self.audio_rejected.take().into_iter().collect();
        let (num, den) = (self.rate.num as u64, self.rate.den as u64);
        let audio = self.audio.take().map(|mut a| {
            a.finish();
            let to_frame = |s: u64, up: bool| {
                let n = u128::from(s) * u128::from(num);
                let d = u128::from(den) * u128::from(a.rate);
                (if up { n.div_ceil(d) } else { n / d }) as u64
            };
            let silence = a
                .events
                .iter()
                .map(|&(s, e, ch)| Span {
                    frame_in: to_frame(s, false),
                    frame_out: to_frame(e, true),
                    channel: Some(ch),
                    detail: format!(
                        "channel {}: below {} dBFS (RMS, 10 ms windows) for {:.2} s",
                        ch + 1,
                        self.lim.silence_dbfs,
                        (e - s) as f64 / f64::from(a.rate)
                    ),
                })
                .collect::<Vec<_>>();
            let stats = AudioStats {
                sample_rate: a.rate,
                channels: a.channels as u32,
                samples: a.done,
                peak_dbfs: a
                    .peak
                    .iter()
                    .map(|&p| (p > 0.0).then(|| 20.0 * f64::from(p).log10()))
                    .collect(),
                silent_throughout: a.loud.iter().map(|l| !l).collect(),
            };
            (stats, silence)
        });
        let (audio, silence) = match audio {
            Some((s, e)) => (Some(s), e),
            None => (None, Vec::new()),
        };
        let thumbnails = std::mem::take(&mut self.thumbs)
            .into_values()
            .filter_map(|t| match encode_png(&t) {
                Ok(png) => Some(FrameThumb {
                    frame: t.frame,
                    width: t.width,
                    height: t.height,
                    png,
                }),
                Err(e) => {
                    notes.push(format!("thumbnail of frame {}: {e}", t.frame));
                    None
                }
            })
            .collect();
        let mut levels = self.levels_stats;
        if levels.luma_min == u32::MAX {
            levels = LevelStats::default();
        }
        Analysis {
            frames: self.frame,
            unreadable_frames: self.unreadable,
            frame_rate: self.rate,
            black: self.black_events,
            freeze: self.freeze_events,
            legal_range: self.legal_events,
            flash: self.flash.events,
            red_flash: self.red.events,
            silence,
            levels,
            max_flashes_per_s: self.flash.max_in_window as f64 / 2.0,
            max_red_flashes_per_s: self.red.max_in_window as f64 / 2.0,
            mean_luma_percent: (self.luma_frames > 0)
                .then(|| self.luma_sum / self.luma_frames as f64),
            audio,
            thumbnails,
            notes,
        }
    }

    /// Frames per second the analyzer counts events in.
    pub fn fps(&self) -> f64 {
        self.fps
    }
}

/// A 160-pixel-wide RGB picture of a frame, point-sampled.
fn make_thumb(frame: u64, v: &VideoView<'_>, l: &Levels) -> RawThumb {
    let (w, h) = (v.width as usize, v.height as usize);
    let tw = (THUMB_WIDTH as usize).min(w).max(1);
    let th = ((h * tw + w / 2) / w).max(1);
    let mut rgb = Vec::with_capacity(tw * th * 3);
    for oy in 0..th {
        let y = ((2 * oy + 1) * h / (2 * th)).min(h - 1);
        for ox in 0..tw {
            let x = ((2 * ox + 1) * w / (2 * tw)).min(w - 1);
            let yv = sample(&v.planes[0], x, y, l.bytes);
            let (cb, cr) = if l.chroma {
                let (cx, cy) = (x >> l.chroma_x, y >> l.chroma_y);
                (
                    sample(&v.planes[1], cx, cy, l.bytes),
                    sample(&v.planes[2], cx, cy, l.bytes),
                )
            } else {
                (l.c_mid as u32, l.c_mid as u32)
            };
            for c in l.rgb(yv, cb, cr) {
                rgb.push((c.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
    }
    RawThumb {
        frame,
        width: tw as u32,
        height: th as u32,
        rgb,
    }
}

fn encode_png(t: &RawThumb) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, t.width, t.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    w.write_image_data(&t.rgb)?;
    w.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track_transitions(values: &[f32]) -> Vec<i8> {
        let mut t = Track::default();
        values
            .iter()
            .map(|&v| t.step(v, 0.0, 20.0, |lo, _, _, _| lo < 160.0))
            .collect()
    }

    #[test]
    fn a_transition_is_counted_once_however_many_frames_it_takes() {
        // A hard cut up, a three-frame ramp down, then a change too small.
        let got = track_transitions(&[5.0, 200.0, 150.0, 90.0, 10.0, 25.0, 10.0]);
        assert_eq!(got, [0, 1, -1, 0, 0, 0, 0]);
        // The fall counts only once the darker state is below 160 cd/m².
        let got = track_transitions(&[5.0, 200.0, 170.0, 150.0, 100.0]);
        assert_eq!(got, [0, 1, 0, -1, 0]);
    }

    #[test]
    fn bright_to_brighter_is_no_flash() {
        // Both states above 160 cd/m²: no transition counts (BT.1702).
        let got = track_transitions(&[170.0, 200.0, 170.0, 200.0]);
        assert_eq!(got, [0, 0, 0, 0]);
    }

    #[test]
    fn flash_counter_opens_an_event_at_the_seventh_transition_in_a_second() {
        let mut c = FlashCounter::new("luminance", 25, 6);
        let mut opened = Vec::new();
        for f in (0..50).step_by(3) {
            if let Some((first, _)) = c.transition(f, None) {
                opened.push((f, first));
            }
        }
        c.close();
        assert_eq!(opened, [(18, 0)]);
        assert_eq!(c.events.len(), 1);
        assert_eq!((c.events[0].frame_in, c.events[0].frame_out), (0, 49));
    }

    /// Analyzer throughput at 1080p on one core, against FFmpeg's
    /// `signalstats,blackdetect,freezedetect` on the same raw frames, also on
    /// one thread. Ignored by default (it times, and needs the ffmpeg CLI):
    /// `cargo test --release -p deliver --lib analyzer_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn analyzer_speed_1080p() {
        use std::process::Command;
        use std::time::Instant;
        let (w, h, n) = (1920usize, 1080usize, 50usize);
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("src.yuv");
        let st = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=s={w}x{h}:r=25:d=2"))
            .args([
                "-vf",
                "scale=out_color_matrix=bt709:out_range=tv",
                "-pix_fmt",
                "yuv420p",
                "-f",
                "rawvideo",
            ])
            .arg(&raw)
            .status()
            .expect("the ffmpeg CLI");
        assert!(st.success());
        let bytes = std::fs::read(&raw).unwrap();
        let frame = w * h * 3 / 2;
        assert_eq!(bytes.len(), frame * n);

        let mut info = abi::MediaInfo::EMPTY;
        info.frame_rate = Rational::new(25, 1);
        info.n_frames = (3 * n) as i64;
        info.color = abi::ColorTags::BT709_LIMITED;
        let mut a = Analyzer::new(&QcProfile::default(), &info);
        let view = |i: usize| {
            let f = &bytes[i * frame..(i + 1) * frame];
            let (y, c) = f.split_at(w * h);
            let (u, v) = c.split_at(w * h / 4);
            VideoView {
                width: w as u32,
                height: h as u32,
                pix_fmt: abi::pix::YUV420P,
                planes: [(y, w), (u, w / 2), (v, w / 2), (&[], 0)],
                n_planes: 3,
                pts: i as i64,
                time_base: Rational::new(1, 25),
                color: abi::ColorTags::BT709_LIMITED,
                key: false,
            }
        };
        // Time on the CPU (the machine is shared: wall time would count
        // other jobs' turns), from the scheduler's own account.
        let on_cpu = || -> f64 {
            let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
            s.split_whitespace().next().unwrap().parse::<f64>().unwrap() / 1e9
        };
        let (t, c) = (Instant::now(), on_cpu());
        for i in 0..3 * n {
            a.video(&view(i % n));
        }
        let ours = (3 * n) as f64 / (on_cpu() - c);
        let ours_wall = (3 * n) as f64 / t.elapsed().as_secs_f64();
        let analysis = a.finish();
        assert_eq!(analysis.frames, (3 * n) as u64);

        // FFmpeg's -benchmark reports its user CPU time (utime=…s).
        let out = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-benchmark",
                "-threads",
                "1",
                "-filter_threads",
                "1",
            ])
            .args([
                "-f",
                "rawvideo",
                "-pix_fmt",
                "yuv420p",
                "-s",
                &format!("{w}x{h}"),
                "-r",
                "25",
            ])
            .arg("-i")
            .arg(&raw)
            .args([
                "-vf",
                "signalstats,blackdetect,freezedetect",
                "-f",
                "null",
                "-",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let utime: f64 = err
            .split("utime=")
            .nth(1)
            .and_then(|s| s.split('s').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no utime in ffmpeg -benchmark output: {err}"));
        let peer = n as f64 / utime;
        println!(
            "analyzer: {ours:.0} fps of CPU time ({ours_wall:.0} fps wall) at {w}x{h} yuv420p on one thread; \
             ffmpeg signalstats+blackdetect+freezedetect: {peer:.0} fps of CPU time (reading the file included); ratio {:.2}",
            ours / peer
        );
        assert!(
            ours >= 150.0,
            "{ours:.0} fps of CPU time, the target is 150"
        );
    }
}
