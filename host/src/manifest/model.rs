//! Validated composition types: only these reach the pipeline. Built from the
//! raw serde types in `raw.rs` by `validate.rs`.

use std::path::PathBuf;

/// A positive rational number (frame rates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rate {
    pub num: u32,
    pub den: u32,
}

impl Rate {
    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// An RGBA colour, 8 bits per channel, straight alpha.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rgba(pub [u8; 4]);

/// The canvas every track is composited on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub frame_rate: Rate,
    /// Length of the programme in frames.
    pub frames: u64,
    /// Only "bt709" in manifest v1.
    pub colour_space: String,
    pub background: Rgba,
    /// Audio mix rate (48000 unless the manifest says otherwise).
    pub sample_rate: u32,
    /// Audio mix channels (2).
    pub channels: u32,
}

/// What a video clip shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum VideoSource {
    /// A media file, resolved and checked to lie inside the media roots.
    Media { path: PathBuf },
    /// SMPTE-style 75 % colour bars.
    Bars,
    /// A solid colour.
    Solid { color: Rgba },
    /// A moving test pattern (scrolling ramp with a moving box).
    Pattern,
}

/// A transition into a clip from the clip before it on the same track.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Dissolve {
    /// Frames over which the clip fades in over the previous one; the previous
    /// clip covers that interval.
    pub frames: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VideoClip {
    pub source: VideoSource,
    /// First timeline frame of the clip.
    pub start: u64,
    /// Number of frames on the timeline.
    pub frames: u64,
    /// Source in-point in seconds (media only; 0 for generators).
    pub in_point: f64,
    pub opacity: f32,
    /// Offset of the clip's top-left from the canvas top-left, in canvas pixels,
    /// after scaling.
    pub position: [f32; 2],
    /// Uniform scale of the source (1.0 = native size; generators are made at
    /// canvas size).
    pub scale: f32,
    pub transition_in: Option<Dissolve>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VideoTrack {
    pub name: String,
    /// Clips sorted by start.
    pub clips: Vec<VideoClip>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum AudioSource {
    Media { path: PathBuf },
    Sine { frequency: f64, level_dbfs: f64 },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AudioClip {
    pub source: AudioSource,
    /// First timeline frame.
    pub start: u64,
    /// Length in timeline frames.
    pub frames: u64,
    /// Source in-point in seconds.
    pub in_point: f64,
    pub gain_db: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AudioTrack {
    pub name: String,
    pub gain_db: f64,
    pub clips: Vec<AudioClip>,
}

/// One requested deliverable: a preset id plus overrides (a TOML table that is
/// merged over the preset before the preset is validated).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeliverableRequest {
    pub preset: String,
    /// Output name (file stem suffix); defaults to the preset id with `/` → `_`.
    pub name: String,
    #[serde(skip)]
    pub overrides: toml::Table,
    /// 1-based line of the `[[deliverable]]` entry, for error messages.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    pub name: String,
    /// 0..=100, default 50.
    pub priority: u8,
    pub canvas: Canvas,
    /// Bottom to top.
    pub video: Vec<VideoTrack>,
    pub audio: Vec<AudioTrack>,
    pub deliverables: Vec<DeliverableRequest>,
}

impl Manifest {
    /// Every media file the composition reads, once each.
    pub fn media_paths(&self) -> Vec<&std::path::Path> {
        let mut paths: Vec<&std::path::Path> = Vec::new();
        let video = self
            .video
            .iter()
            .flat_map(|t| &t.clips)
            .filter_map(|c| match &c.source {
                VideoSource::Media { path } => Some(path.as_path()),
                _ => None,
            });
        let audio = self
            .audio
            .iter()
            .flat_map(|t| &t.clips)
            .filter_map(|c| match &c.source {
                AudioSource::Media { path } => Some(path.as_path()),
                _ => None,
            });
        for p in video.chain(audio) {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        paths
    }
}
