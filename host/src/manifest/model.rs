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
    /// The working primaries: "bt709" or "bt2020" (both SDR).
    pub colour_space: String,
    pub background: Rgba,
    /// Audio mix rate (48000 unless the manifest says otherwise).
    pub sample_rate: u32,
    /// Audio mix channels: 1 (mono), 2 (stereo) or 6 (5.1: L R C LFE Ls Rs,
    /// SMPTE/WAVE order).
    pub channels: u32,
}

/// How a clip's value changes between two keyframes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Interp {
    /// Straight line to the next key.
    Linear,
    /// Smooth start and end (cubic `3t² − 2t³`).
    Ease,
    /// Keeps this key's value until the next key.
    Hold,
}

/// One keyframe: a value at a frame counted from the clip's first frame.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Key {
    pub frame: u64,
    pub value: f32,
    /// How the value moves from this key to the next.
    pub interp: Interp,
}

/// A scalar that may change over a clip: one key is a constant. Keys are
/// sorted by frame, never empty; before the first key the first value holds,
/// after the last the last.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Param {
    pub keys: Vec<Key>,
}

impl Param {
    pub fn constant(value: f32) -> Self {
        Param {
            keys: vec![Key {
                frame: 0,
                value,
                interp: Interp::Linear,
            }],
        }
    }

    /// The value at frame `f` of the clip (fractional frames allowed).
    pub fn at(&self, f: f64) -> f32 {
        let k = &self.keys;
        if k.len() == 1 || f <= k[0].frame as f64 {
            return k[0].value;
        }
        for w in k.windows(2) {
            let (a, b) = (w[0], w[1]);
            if f < b.frame as f64 {
                let t = ((f - a.frame as f64) / (b.frame - a.frame) as f64) as f32;
                let t = match a.interp {
                    Interp::Linear => t,
                    Interp::Ease => t * t * (3.0 - 2.0 * t),
                    Interp::Hold => 0.0,
                };
                return a.value + (b.value - a.value) * t;
            }
        }
        k[k.len() - 1].value
    }

    /// True when the value never changes.
    pub fn is_constant(&self) -> bool {
        self.keys.iter().all(|k| k.value == self.keys[0].value)
    }
}

/// Colour primaries, transfer, matrix and range of a source or an output,
/// by name (the names FFmpeg and the presets use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Primaries {
    Bt709,
    Bt2020,
    /// SMPTE 170M / BT.601 525.
    Smpte170m,
    /// BT.470 BG / BT.601 625.
    Bt470bg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Transfer {
    /// BT.709 / BT.2020 / SMPTE 170M OETF (inverted to linearize).
    Bt709,
    /// IEC 61966-2-1 (sRGB), piecewise.
    Srgb,
    /// Linear light.
    Linear,
    /// Pure power 2.2 (BT.470 M).
    Gamma22,
    /// Pure power 2.8 (BT.470 BG).
    Gamma28,
}

/// How a still image or a media frame is laid on the canvas before the clip's
/// own transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Fit {
    /// Native pixels, top-left at the canvas's top-left (manifest v1's rule).
    None,
    /// Scaled to fit inside the canvas, aspect kept, centred (letter/pillar box).
    Fit,
    /// Scaled to cover the canvas, aspect kept, centred (edges cropped).
    Fill,
    /// Scaled to the canvas size exactly.
    Stretch,
}

/// A title: text drawn with a font at a size, colour and position.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Title {
    pub text: String,
    /// A font file (TTF/OTF); default DejaVu Sans from the system.
    pub font: Option<PathBuf>,
    /// Em size in canvas pixels.
    pub size: f32,
    /// Straight-alpha colour in the canvas's encoding.
    pub color: Rgba,
    /// Anchor of the text block in canvas pixels (top-left of the first line).
    pub at: [f32; 2],
}

/// What a video clip shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum VideoSource {
    /// A media file, resolved and checked to lie inside the media roots.
    Media { path: PathBuf },
    /// A still image (PNG, JPEG), shown for the clip's whole length.
    Still { path: PathBuf },
    /// Rendered text over transparency, canvas sized.
    Title(Title),
    /// SMPTE-style 75 % colour bars.
    Bars,
    /// A solid colour.
    Solid { color: Rgba },
    /// A moving test pattern (scrolling ramp with a moving box).
    Pattern,
    /// Numbered images, one file per frame (OTIO `ImageSequenceReference`).
    ImageSequence(ImageSequence),
}

/// A sequence of numbered image files (`frame.1001.png`, `frame.1002.png`,
/// …) played at `rate`: source time `t` seconds shows image number
/// `start_frame + floor(t · rate) · frame_step`. Each image is opened
/// through the media decoder like any media file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageSequence {
    /// The folder, canonical, inside the media roots.
    pub dir: PathBuf,
    pub prefix: String,
    pub suffix: String,
    /// Digits of the frame number, zero-padded (0: no padding).
    pub padding: u32,
    pub start_frame: u64,
    pub frame_step: u64,
    pub rate: Rate,
}

impl ImageSequence {
    /// Image number shown at source time `t` seconds (before the first
    /// image: the first).
    pub fn number_at(&self, t: f64) -> u64 {
        // A microsecond of slack: a time computed as n / rate lands on n.
        let index = (t * self.rate.as_f64() + 1e-6).floor().max(0.0) as u64;
        self.start_frame + index * self.frame_step
    }

    /// The file of image number `number`.
    pub fn path(&self, number: u64) -> PathBuf {
        let width = self.padding as usize;
        self.dir
            .join(format!("{}{number:0width$}{}", self.prefix, self.suffix))
    }
}

/// The kind of a transition into a clip from the clip before it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum TransitionKind {
    /// Cross-dissolve (OTIO `SMPTE_Dissolve`).
    Dissolve,
    /// Out to a colour over the first half, in from it over the second.
    Dip { color: Rgba },
    /// An edge moving across the picture. `angle_deg`: the direction the
    /// edge travels, 0 = left to right, 90 = top to bottom; `softness`: width
    /// of the edge as a fraction of the travel (0 = hard).
    Wipe { angle_deg: f32, softness: f32 },
}

/// A transition into a clip from the clip before it on the same track.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transition {
    pub kind: TransitionKind,
    /// Frames over which the clip mixes in over the previous one; the previous
    /// clip covers that interval.
    pub frames: u64,
}

/// Blend mode of a layer onto what is below it (W3C compositing formulas
/// on linear-light premultiplied colour; `Add` is the premultiplied sum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum BlendMode {
    Normal,
    Add,
    Multiply,
    Screen,
}

/// Per-clip colour operations, applied in this order to the source's colour
/// (straight alpha): exposure in linear light, then on values encoded with
/// the canvas transfer: lift/gamma/gain, saturation, the 3D LUT.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ColourOps {
    /// Stops (linear multiply by 2^exposure).
    pub exposure: f32,
    /// Per channel R, G, B: `out = gain·(x + lift·(1 − x))`, then `out^(1/gamma)`.
    pub lift: [f32; 3],
    pub gamma: [f32; 3],
    pub gain: [f32; 3],
    /// 1 = unchanged, 0 = grey (BT.709 luma weights on encoded values).
    pub saturation: f32,
    /// A `.cube` 3D LUT, applied with tetrahedral interpolation.
    pub lut: Option<PathBuf>,
}

impl Default for ColourOps {
    fn default() -> Self {
        ColourOps {
            exposure: 0.0,
            lift: [0.0; 3],
            gamma: [1.0; 3],
            gain: [1.0; 3],
            saturation: 1.0,
            lut: None,
        }
    }
}

impl ColourOps {
    pub fn is_identity(&self) -> bool {
        *self == ColourOps::default()
    }
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
    /// Source seconds per timeline second (1 = normal speed, 0.5 = slow
    /// motion, 2 = double speed). Media frames are conformed to the canvas
    /// rate by showing, at each canvas frame, the source frame on screen at
    /// `in_point + (n − start) / rate · speed`.
    pub speed: f64,
    /// 0..=1, keyframable.
    pub opacity: Param,
    /// Offset in canvas pixels of the clip's top-left (after fit and scale,
    /// before rotation), keyframable.
    pub position: [Param; 2],
    /// Uniform scale about the clip's top-left (1.0 = size after `fit`),
    /// keyframable.
    pub scale: Param,
    /// Degrees clockwise about the centre of the scaled clip, keyframable.
    pub rotation: Param,
    /// Pixels cut from the source's left, top, right and bottom edges (in
    /// source pixels), keyframable.
    pub crop: [Param; 4],
    pub fit: Fit,
    pub blend: BlendMode,
    pub colour: ColourOps,
    pub transition_in: Option<Transition>,
}

impl VideoClip {
    /// A clip with every property at its default.
    pub fn new(source: VideoSource, start: u64, frames: u64) -> Self {
        VideoClip {
            source,
            start,
            frames,
            in_point: 0.0,
            speed: 1.0,
            opacity: Param::constant(1.0),
            position: [Param::constant(0.0), Param::constant(0.0)],
            scale: Param::constant(1.0),
            rotation: Param::constant(0.0),
            crop: std::array::from_fn(|_| Param::constant(0.0)),
            fit: Fit::None,
            blend: BlendMode::Normal,
            colour: ColourOps::default(),
            transition_in: None,
        }
    }
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
    /// Linear fade from silence over this many frames at the clip's start.
    pub fade_in: u64,
    /// Linear fade to silence over this many frames at the clip's end.
    pub fade_out: u64,
    /// -1 = left, 0 = centre, 1 = right (constant-power pan law, -3 dB at
    /// centre); applies to mono and stereo sources into stereo or 5.1 mixes.
    pub pan: f32,
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
    /// What was read but dropped, safe to ignore (OTIO markers, say); the
    /// job report lists them.
    pub warnings: Vec<String>,
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
