//! Measuring a media file: its first audio stream decoded by a
//! `FILE_DECODE` plugin at its native rate and layout, as `f32` frames.

use super::{Analysis, Meter, MeterError};
use crate::plugins::Registry;
use deliver_plugin_api::abi::{self, cap, media};
use deliver_plugin_api::host::{FileDecoder, Frame};
use std::path::{Path, PathBuf};

/// Why a file could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("no loaded plugin can decode media files (capability FILE_DECODE)")]
    NoDecoder,
    #[error("{path}: cannot open: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{path}: no audio stream")]
    NoAudio { path: PathBuf },
    #[error("{path}: decoding audio: {message}")]
    Decode { path: PathBuf, message: String },
    #[error(
        "{path}: the audio format changed mid-stream from {channels} ch / {rate} Hz \
         to {new_channels} ch / {new_rate} Hz; one layout per file is accepted"
    )]
    FormatChange {
        path: PathBuf,
        channels: u32,
        rate: u32,
        new_channels: u32,
        new_rate: u32,
    },
    #[error("{path}: {source}")]
    Meter {
        path: PathBuf,
        #[source]
        source: MeterError,
    },
}

/// The first audio stream of a file, decoded in order.
pub struct AudioFile {
    path: PathBuf,
    dec: FileDecoder,
    /// Native channel count and rate, as the container declares them.
    pub channels: u32,
    pub sample_rate: u32,
}

impl AudioFile {
    /// # Errors
    /// No decoding plugin, a file it cannot open, or one without audio.
    pub fn open(reg: &Registry, path: &Path) -> Result<Self, FileError> {
        let choice = reg
            .find(cap::FILE_DECODE, "*", None)
            .ok_or(FileError::NoDecoder)?;
        let cfg = abi::DecoderConfig {
            struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
            want: media::AUDIO,
            video_pix_fmt: abi::pix::NONE,
            // 0, 0: the native rate and layout, never resampled or remixed.
            audio_sample_rate: 0,
            audio_channels: 0,
            threads: 0,
            reserved: [0; 4],
        };
        let (dec, info) = choice
            .plugin
            .open_file(&path.to_string_lossy(), &cfg)
            .map_err(|e| FileError::Open {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        if info.has_audio == 0 || info.channels == 0 || info.sample_rate == 0 {
            return Err(FileError::NoAudio {
                path: path.to_owned(),
            });
        }
        Ok(AudioFile {
            path: path.to_owned(),
            dec,
            channels: info.channels,
            sample_rate: info.sample_rate,
        })
    }

    /// Calls `f` with each decoded block of interleaved samples, in order.
    ///
    /// # Errors
    /// A decoding failure, a change of layout, or what `f` returns.
    pub fn for_each_block(
        &mut self,
        mut f: impl FnMut(&[f32]) -> Result<(), FileError>,
    ) -> Result<(), FileError> {
        loop {
            let frame = self.dec.next_frame().map_err(|e| FileError::Decode {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
            match frame {
                None => return Ok(()),
                Some(Frame::Audio {
                    sample_rate,
                    channels,
                    samples,
                    ..
                }) => {
                    if sample_rate != self.sample_rate || channels != self.channels {
                        return Err(FileError::FormatChange {
                            path: self.path.clone(),
                            channels: self.channels,
                            rate: self.sample_rate,
                            new_channels: channels,
                            new_rate: sample_rate,
                        });
                    }
                    f(samples)?;
                }
                Some(Frame::Video(_)) => {}
            }
        }
    }

    /// Decodes the rest of the stream into one interleaved buffer.
    ///
    /// # Errors
    /// As [`AudioFile::for_each_block`].
    pub fn read_all(&mut self) -> Result<Vec<f32>, FileError> {
        let mut all = Vec::new();
        self.for_each_block(|b| {
            all.extend_from_slice(b);
            Ok(())
        })?;
        Ok(all)
    }
}

/// Measures the first audio stream of `path`.
///
/// # Errors
/// Any [`FileError`]: no decoder, no audio, a decoding failure or a layout
/// the meter refuses.
pub fn measure_file(reg: &Registry, path: &Path) -> Result<Analysis, FileError> {
    let mut file = AudioFile::open(reg, path)?;
    let meter_err = |source| FileError::Meter {
        path: path.to_owned(),
        source,
    };
    let mut meter = Meter::new(file.channels, file.sample_rate).map_err(meter_err)?;
    file.for_each_block(|b| meter.add(b).map_err(meter_err))?;
    Ok(meter.analysis())
}
