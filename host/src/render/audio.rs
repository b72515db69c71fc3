//! The audio mix: every audio track summed at the canvas rate and layout,
//! sample-accurate against the video timeline.

use crate::manifest::model::{AudioSource, Canvas, Manifest};
use crate::plugins::Registry;
use deliver_plugin_api::abi::{self, cap, media};
use deliver_plugin_api::host::{FileDecoder, Frame};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

/// The first audio sample of timeline frame `frame` (rounded to nearest, so
/// that 29.97 fps timelines never drift).
pub fn sample_of_frame(c: &Canvas, frame: u64) -> u64 {
    let num = frame as u128 * c.sample_rate as u128 * c.frame_rate.den as u128;
    let den = c.frame_rate.num as u128;
    ((num + den / 2) / den) as u64
}

/// Samples per channel in the whole programme.
pub fn total_samples(c: &Canvas) -> u64 {
    sample_of_frame(c, c.frames)
}

fn db_to_gain(db: f64) -> f32 {
    10f64.powf(db / 20.0) as f32
}

/// Decoded audio of one media clip, pulled sequentially.
struct AudioReader {
    path: PathBuf,
    dec: FileDecoder,
    channels: usize,
    buf: VecDeque<f32>,
    /// Source position (samples at the mix rate) of `buf[0]`.
    buf_pos: i64,
    eof: bool,
}

impl AudioReader {
    fn open(reg: &Registry, path: &Path, c: &Canvas, in_point: f64) -> Result<Self, String> {
        let choice = reg
            .find(cap::FILE_DECODE, "*", None)
            .ok_or("no plugin can decode media files")?;
        let cfg = abi::DecoderConfig {
            struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
            want: media::AUDIO,
            video_pix_fmt: abi::pix::NONE,
            audio_sample_rate: c.sample_rate,
            audio_channels: c.channels,
            threads: 0,
            reserved: [0; 4],
        };
        let (mut dec, info) = choice
            .plugin
            .open_file(&path.to_string_lossy(), &cfg)
            .map_err(|e| e.to_string())?;
        if info.has_audio == 0 {
            return Err(format!("{} has no audio stream", path.display()));
        }
        if in_point > 0.0 {
            dec.seek((in_point * 1e6) as i64)
                .map_err(|e| e.to_string())?;
        }
        Ok(AudioReader {
            path: path.to_owned(),
            dec,
            channels: c.channels as usize,
            buf: VecDeque::new(),
            buf_pos: i64::MIN,
            eof: false,
        })
    }

    /// Adds `n` samples per channel starting at source sample `pos`, times
    /// `gain`, into `out`. Past the end of the file it adds silence.
    fn mix(&mut self, pos: i64, n: usize, gain: f32, out: &mut [f32]) -> Result<(), String> {
        let ch = self.channels;
        let end = pos + n as i64;
        while !self.eof
            && (self.buf_pos == i64::MIN || self.buf_pos + (self.buf.len() / ch) as i64 <= end)
        {
            match self
                .dec
                .next_frame()
                .map_err(|e| format!("{}: {e}", self.path.display()))?
            {
                None => self.eof = true,
                Some(Frame::Audio { pts, samples, .. }) => {
                    if self.buf_pos == i64::MIN {
                        self.buf_pos = pts;
                    }
                    self.buf.extend(samples.iter().copied());
                }
                Some(Frame::Video(_)) => {}
            }
        }
        // Drop what lies before `pos` (seek lands at or before the in-point).
        if self.buf_pos < pos && self.buf_pos != i64::MIN {
            let drop = ((pos - self.buf_pos) as usize * ch).min(self.buf.len());
            self.buf.drain(..drop);
            self.buf_pos += (drop / ch) as i64;
        }
        let offset = if self.buf_pos > pos {
            (self.buf_pos - pos) as usize
        } else {
            0
        };
        let avail = (self.buf.len() / ch).min(n.saturating_sub(offset));
        for (i, s) in self.buf.iter().take(avail * ch).enumerate() {
            out[offset * ch + i] += s * gain;
        }
        Ok(())
    }
}

/// Mixes a manifest's audio tracks.
pub struct AudioMixer<'a> {
    manifest: &'a Manifest,
    registry: &'a Registry,
    readers: HashMap<(usize, usize), AudioReader>,
}

impl<'a> AudioMixer<'a> {
    pub fn new(manifest: &'a Manifest, registry: &'a Registry) -> Self {
        AudioMixer {
            manifest,
            registry,
            readers: HashMap::new(),
        }
    }

    /// Whether the programme has any audio clip at all.
    pub fn has_audio(&self) -> bool {
        self.manifest.audio.iter().any(|t| !t.clips.is_empty())
    }

    /// Writes the mix of samples `[start, start + out.len()/channels)` into `out`
    /// (interleaved). Calls must move forward through the programme.
    ///
    /// # Errors
    /// A media file that cannot be opened or decoded, named.
    pub fn render(&mut self, start: u64, out: &mut [f32]) -> Result<(), String> {
        out.fill(0.0);
        let c = &self.manifest.canvas;
        let ch = c.channels as usize;
        let n = out.len() / ch;
        let end = start + n as u64;
        for (ti, track) in self.manifest.audio.iter().enumerate() {
            for (ci, clip) in track.clips.iter().enumerate() {
                let s0 = sample_of_frame(c, clip.start);
                let s1 = sample_of_frame(c, clip.start + clip.frames);
                let (a, b) = (start.max(s0), end.min(s1));
                if a >= b {
                    if end >= s1 {
                        self.readers.remove(&(ti, ci));
                    }
                    continue;
                }
                let gain = db_to_gain(track.gain_db + clip.gain_db);
                let dst = &mut out[(a - start) as usize * ch..(b - start) as usize * ch];
                match &clip.source {
                    AudioSource::Sine {
                        frequency,
                        level_dbfs,
                    } => {
                        let amp = db_to_gain(*level_dbfs) * gain;
                        let w = 2.0 * std::f64::consts::PI * frequency / c.sample_rate as f64;
                        let first = (a - s0) as f64 + clip.in_point * c.sample_rate as f64;
                        for (i, frame) in dst.chunks_exact_mut(ch).enumerate() {
                            let v = (w * (first + i as f64)).sin() as f32 * amp;
                            for s in frame {
                                *s += v;
                            }
                        }
                    }
                    AudioSource::Media { path } => {
                        if !self.readers.contains_key(&(ti, ci)) {
                            let r = AudioReader::open(self.registry, path, c, clip.in_point)
                                .map_err(|e| format!("track {}, clip {ci}: {e}", track.name))?;
                            self.readers.insert((ti, ci), r);
                        }
                        let r = self.readers.get_mut(&(ti, ci)).expect("inserted");
                        let in_samples = (clip.in_point * c.sample_rate as f64).round() as i64;
                        let pos = in_samples + (a - s0) as i64;
                        r.mix(pos, (b - a) as usize, gain, dst)?;
                    }
                }
            }
        }
        Ok(())
    }
}
