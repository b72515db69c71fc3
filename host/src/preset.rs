//! Presets: what one deliverable is (container, codec, pixel format, colour,
//! audio, loudness target, QC thresholds), as TOML files in a presets
//! directory. A preset's id is its path under that directory without `.toml`
//! (`web/h264-1080p`). The host embeds the presets of `presets/` in the
//! repository; directories given at start-up add presets or replace built-ins
//! with the same id ([`user_dirs`] finds a user's by default).
//!
//! # Inheritance
//!
//! `extends = "web/h264-1080p"` starts a preset from another: the parent's
//! table is deep-merged under the child's (the child's keys win, tables merge
//! key by key, arrays and other values replace). Chains are allowed; a cycle
//! or an unknown parent is an error at the child's `extends`. Parents are
//! looked up by id in the library as finally loaded, so a user file that
//! replaces `web/h264-1080p` is what every preset extending
//! `web/h264-1080p` gets. The one exception: a file that extends its own id
//! (a user's `web/h264-1080p.toml` with `extends = "web/h264-1080p"`)
//! extends the preset it replaces, so that a facility can change one key
//! of a built-in. A child that names a loudness `profile` takes that
//! profile's values over whatever its parents set for them; within one file
//! (and in a deliverable's overrides) the keys written beside a profile win.
//! An error in an inherited value names the file that wrote it and the
//! preset that inherited it.
//!
//! Like manifests, presets are read in two phases: the file (with a
//! deliverable's `overrides` deep-merged over it) is deserialized into
//! `RawPreset` (serde, unknown fields refused), then validated into a
//! [`Preset`]. Errors name the preset file, the line and column, the field,
//! the bad value and what is accepted; a value that came from a manifest's
//! overrides says so.
//!
//! ```
//! use deliver::preset::PresetLibrary;
//!
//! let lib = PresetLibrary::builtin();
//! let overrides: toml::Table = toml::from_str("video.options.crf = 18").unwrap();
//! let p = lib.resolve("web/h264-1080p", &overrides).unwrap();
//! assert_eq!((p.container.as_str(), p.video.width), ("mp4", Some(1920)));
//! assert_eq!(p.video.options["crf"].as_integer(), Some(18));
//! assert_eq!(p.video.options["preset"].as_str(), Some("medium"));
//!
//! let bad: toml::Table = toml::from_str("loudness.target_lufs = 5.0").unwrap();
//! let err = lib.resolve("web/h264-1080p", &bad).unwrap_err();
//! assert_eq!(err.field.as_deref(), Some("loudness.target_lufs"));
//! ```
//!
//! # Preset file
//!
//! ```toml
//! description = "Web 1080p"     # optional
//! container = "mp4"             # required: "mp4", "mov", "mxf" (OP1a), "matroska" or "webm"
//! extension = "mp4"             # optional, default: the container
//! [container_options]           # optional, passed to the muxer plugin
//! faststart = true
//! [video]                       # required
//! codec = "h264"                # required; plugins are chosen by it
//! encoder = "libx264"           # optional: a plugin or implementation name; default: best ranked
//! hardware = "never"            # optional: "never" (default: software encoders only),
//!                               # "prefer" (a hardware encoder if one works here, else
//!                               # software, with a warning) or "require" (hardware or fail)
//! isolation = "in-process"      # optional: "in-process" (default) or "process": the
//!                               # encoder runs in a child process of its own, so a
//!                               # native codec that crashes fails this deliverable only
//! profile = "high"              # optional
//! pix_fmt = "yuv420p"           # required
//! fourcc = "hvc1"               # optional, MOV/MP4 only: the video sample entry's
//!                               # type, given to the muxer (as its `video_tag`
//!                               # option) and checked in the delivered file
//! field_order = "progressive"   # optional: "progressive" (default), "tff" or "bff":
//!                               # interlaced coding with the top or bottom field
//!                               # first (the encoder's `interlaced` option, the
//!                               # muxer's `field_order`), and held to interlaced
//!                               # pictures in the delivered file. The render is
//!                               # progressive: both fields come from one instant.
//! width = 1920                  # optional, with height; default: the canvas size
//! height = 1080
//! primaries = "bt709"           # optional, default "bt709" (the only one in v1)
//! transfer = "bt709"            # optional, default "bt709"
//! matrix = "bt709"              # optional, default "bt709"
//! range = "limited"             # optional: "limited" (default) or "full"
//! bit_rate = 8000000            # optional, bits per second
//! [video.options]               # optional, passed to the encoder plugin, which checks them
//! crf = 20
//! [audio]                       # optional: no [audio], no audio stream
//! codec = "aac"                 # required
//! encoder = "aac"               # optional
//! isolation = "in-process"      # optional, as video.isolation
//! sample_rate = 48000           # required, 8000 to 192000
//! channels = 2                  # required, 1 or 2
//! bit_rate = 192000             # optional
//! tracks = ["L", "R", "silent"] # optional, PCM in MXF/MOV only: one mono track
//!                               # per name (a channel of the mix, or "silent")
//! [audio.options]               # optional
//! [loudness]                    # required
//! target_lufs = -23.0           # -70 to 0
//! true_peak_dbtp = -1.0         # -20 to 0
//! tolerance_lu = 0.5            # greater than 0, at most 5
//! [qc]                          # required
//! min_psnr_y = 35.0             # dB, 0 to 100
//! min_ssim_y = 0.95             # 0 to 1
//! max_duration_error_s = 0.05   # 0 to 10
//! ```

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::isolate::Isolation;
use crate::manifest::error::{from_toml_error, span_of_path};
use crate::manifest::validate::valid_preset_id;
use crate::manifest::{line_col, DeliverableRequest, InputError};

/// A validated preset with a deliverable's overrides applied.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Preset {
    pub id: String,
    /// The file it came from; `builtin:web/h264-1080p.toml` for embedded ones.
    pub file: PathBuf,
    pub description: String,
    /// "mp4", "mov", "mxf", "matroska" or "webm".
    pub container: String,
    /// File extension without the dot.
    pub extension: String,
    /// Passed to the muxer plugin as TOML.
    pub container_options: toml::Table,
    pub video: VideoSpec,
    pub audio: Option<AudioSpec>,
    pub loudness: LoudnessSpec,
    /// QC profile: quality thresholds, spec checks and their severities.
    pub qc: crate::qc::QcProfile,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VideoSpec {
    /// e.g. "h264"; encoder plugins are chosen by the codecs they declare.
    pub codec: String,
    /// A plugin or implementation name (e.g. "libx264"); `None`: the best
    /// ranked plugin for the codec.
    pub encoder: Option<String>,
    /// Whether the encoder may, should or must be a hardware one.
    pub hardware: HardwarePolicy,
    /// Where the encoder runs: in the host, or in a child process.
    pub isolation: Isolation,
    pub profile: Option<String>,
    pub pix_fmt: String,
    /// The video sample entry's fourcc in a MOV/MP4 file (`apch`, `hvc1`).
    pub fourcc: Option<String>,
    /// Progressive or interlaced coding, and which field comes first.
    pub field_order: FieldOrder,
    /// `None`: the canvas size. Both or neither are set.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub colour: Colour,
    /// Bits per second.
    pub bit_rate: Option<i64>,
    /// Codec options passed to the plugin, which validates them.
    pub options: toml::Table,
}

/// How pictures are coded: whole frames, or two fields of which the top
/// or the bottom one comes first in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldOrder {
    #[default]
    Progressive,
    Tff,
    Bff,
}

impl FieldOrder {
    /// The encoder option value (`interlaced = "tff"`), if interlaced.
    pub fn encoder_option(self) -> Option<&'static str> {
        match self {
            FieldOrder::Progressive => None,
            FieldOrder::Tff => Some("tff"),
            FieldOrder::Bff => Some("bff"),
        }
    }

    /// The muxer's `field_order` value (FFmpeg's names), if interlaced.
    pub fn muxer_option(self) -> Option<&'static str> {
        match self {
            FieldOrder::Progressive => None,
            FieldOrder::Tff => Some("tt"),
            FieldOrder::Bff => Some("bb"),
        }
    }
}

/// A preset's `video.hardware`: which encoder capabilities it may use.
///
/// `Never` is the default: a delivery made the same way on every machine,
/// whatever GPUs the farm has, unless the preset says otherwise. Hardware
/// encoders trade quality per bit for speed, which is the preset author's
/// choice to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HardwarePolicy {
    /// Software encoders only.
    #[default]
    Never,
    /// The best hardware encoder for the codec; software (with a warning in
    /// the log and the report) when none works on this machine.
    Prefer,
    /// A hardware encoder, or the plan fails.
    Require,
}

impl HardwarePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            HardwarePolicy::Never => "never",
            HardwarePolicy::Prefer => "prefer",
            HardwarePolicy::Require => "require",
        }
    }
}

/// Colour description as code points: ITU-T H.273 for primaries, transfer
/// and matrix; range as FFmpeg's `AVColorRange` (1 limited, 2 full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Colour {
    pub primaries: u32,
    pub transfer: u32,
    pub matrix: u32,
    pub range: u32,
}

impl Colour {
    /// BT.709, limited range.
    pub const BT709: Colour = Colour {
        primaries: 1,
        transfer: 1,
        matrix: 1,
        range: 1,
    };
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AudioSpec {
    pub codec: String,
    pub encoder: Option<String>,
    /// Where the encoder runs: in the host, or in a child process.
    pub isolation: Isolation,
    pub sample_rate: u32,
    pub channels: u32,
    pub bit_rate: Option<i64>,
    pub options: toml::Table,
    /// The programme laid out as mono tracks of the file (PCM only): what
    /// each track carries, in track order. `None`: one track of `channels`.
    pub tracks: Option<Vec<Track>>,
}

/// What one mono audio track of a deliverable carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Track {
    /// A channel of the programme (0-based, in the mix's order).
    Channel(u32),
    /// Digital silence.
    Silent,
}

impl Track {
    /// Channel names of a mix of `channels`, in its order.
    pub fn names(channels: u32) -> &'static [&'static str] {
        match channels {
            1 => &["M"],
            2 => &["L", "R"],
            _ => &["L", "R", "C", "LFE", "Ls", "Rs"],
        }
    }

    /// The name a preset writes for this track.
    pub fn name(self, channels: u32) -> &'static str {
        match self {
            Track::Channel(c) => Self::names(channels)
                .get(c as usize)
                .copied()
                .unwrap_or("?"),
            Track::Silent => "silent",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LoudnessSpec {
    /// Integrated loudness target, -70 to 0 LUFS.
    pub target_lufs: f64,
    /// Maximum true peak, -20 to 0 dBTP.
    pub true_peak_dbtp: f64,
    /// Accepted distance from the target, (0, 5] LU.
    pub tolerance_lu: f64,
    /// Whether a true-peak limiter may be used when one linear gain cannot
    /// meet both the target and the ceiling. When false, such a deliverable
    /// fails instead.
    pub allow_limiter: bool,
    /// How far below the ceiling the limiter aims, dB, to leave room for the
    /// peaks a lossy encoder adds (0 to 6).
    pub limiter_headroom_db: f64,
    /// Highest short-term loudness allowed, LUFS (EBU R 128 s1 for
    /// short-form content: target + 5 LU); `None` = not checked.
    pub max_short_term_lufs: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreset {
    description: Option<String>,
    container: Option<String>,
    extension: Option<String>,
    container_options: Option<toml::Table>,
    video: Option<RawVideo>,
    audio: Option<RawAudio>,
    loudness: Option<RawLoudness>,
    qc: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVideo {
    codec: Option<String>,
    encoder: Option<String>,
    hardware: Option<String>,
    isolation: Option<String>,
    profile: Option<String>,
    pix_fmt: Option<String>,
    fourcc: Option<String>,
    field_order: Option<String>,
    width: Option<i64>,
    height: Option<i64>,
    primaries: Option<String>,
    transfer: Option<String>,
    matrix: Option<String>,
    range: Option<String>,
    bit_rate: Option<i64>,
    options: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudio {
    codec: Option<String>,
    encoder: Option<String>,
    isolation: Option<String>,
    sample_rate: Option<i64>,
    channels: Option<i64>,
    bit_rate: Option<i64>,
    options: Option<toml::Table>,
    tracks: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoudness {
    target_lufs: Option<f64>,
    true_peak_dbtp: Option<f64>,
    tolerance_lu: Option<f64>,
    allow_limiter: Option<bool>,
    limiter_headroom_db: Option<f64>,
    max_short_term_lufs: Option<f64>,
}

/// One preset file as read, before overrides and validation.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetSource {
    pub id: String,
    pub file: PathBuf,
    pub text: String,
    pub table: toml::Table,
}

/// The presets the host knows, by id.
#[derive(Debug, Clone, Default)]
pub struct PresetLibrary {
    presets: BTreeMap<String, PresetSource>,
    /// Loudness profiles (`loudness/<name>.toml`), by name, that a preset's
    /// `[loudness]` may name with `profile = "<name>"`.
    profiles: BTreeMap<String, toml::Table>,
    /// Presets that a later file with the same id replaced, oldest first:
    /// what a file that extends its own id extends.
    shadowed: BTreeMap<String, Vec<PresetSource>>,
}

/// Where loudness profiles live among the presets.
const PROFILE_DIR: &str = "loudness/";

/// The repository's `presets/`, embedded (profiles first: presets name them).
const BUILTIN: &[(&str, &str)] = &[
    (
        "loudness/ebu-r128",
        include_str!("../../presets/loudness/ebu-r128.toml"),
    ),
    (
        "loudness/ebu-r128-s1",
        include_str!("../../presets/loudness/ebu-r128-s1.toml"),
    ),
    (
        "loudness/atsc-a85",
        include_str!("../../presets/loudness/atsc-a85.toml"),
    ),
    (
        "loudness/streaming-16",
        include_str!("../../presets/loudness/streaming-16.toml"),
    ),
    (
        "loudness/streaming-14",
        include_str!("../../presets/loudness/streaming-14.toml"),
    ),
    (
        "master/dnxhd-120-1080p25",
        include_str!("../../presets/master/dnxhd-120-1080p25.toml"),
    ),
    (
        "master/dnxhd-185x-1080p25",
        include_str!("../../presets/master/dnxhd-185x-1080p25.toml"),
    ),
    (
        "master/dnxhr-444",
        include_str!("../../presets/master/dnxhr-444.toml"),
    ),
    (
        "master/dnxhr-hq-mxf",
        include_str!("../../presets/master/dnxhr-hq-mxf.toml"),
    ),
    (
        "master/dnxhr-hq",
        include_str!("../../presets/master/dnxhr-hq.toml"),
    ),
    (
        "master/dnxhr-hqx",
        include_str!("../../presets/master/dnxhr-hqx.toml"),
    ),
    (
        "master/dnxhr-lb",
        include_str!("../../presets/master/dnxhr-lb.toml"),
    ),
    (
        "master/dnxhr-sq",
        include_str!("../../presets/master/dnxhr-sq.toml"),
    ),
    (
        "master/prores-422-hq",
        include_str!("../../presets/master/prores-422-hq.toml"),
    ),
    (
        "master/prores-422-lt",
        include_str!("../../presets/master/prores-422-lt.toml"),
    ),
    (
        "master/prores-422-proxy",
        include_str!("../../presets/master/prores-422-proxy.toml"),
    ),
    (
        "master/prores-422",
        include_str!("../../presets/master/prores-422.toml"),
    ),
    (
        "master/prores-4444-alpha",
        include_str!("../../presets/master/prores-4444-alpha.toml"),
    ),
    (
        "master/prores-4444-xq",
        include_str!("../../presets/master/prores-4444-xq.toml"),
    ),
    (
        "master/prores-4444",
        include_str!("../../presets/master/prores-4444.toml"),
    ),
    (
        "broadcast/atsc-h264-1080",
        include_str!("../../presets/broadcast/atsc-h264-1080.toml"),
    ),
    (
        "broadcast/xdcam-hd422-1080i25",
        include_str!("../../presets/broadcast/xdcam-hd422-1080i25.toml"),
    ),
    (
        "broadcast/xdcam-hd422-1080p25",
        include_str!("../../presets/broadcast/xdcam-hd422-1080p25.toml"),
    ),
    (
        "web/av1-1080p-rav1e",
        include_str!("../../presets/web/av1-1080p-rav1e.toml"),
    ),
    (
        "web/av1-1080p-rav1e-webm",
        include_str!("../../presets/web/av1-1080p-rav1e-webm.toml"),
    ),
    (
        "web/av1-1080p-svt",
        include_str!("../../presets/web/av1-1080p-svt.toml"),
    ),
    (
        "web/av1-1080p-webm",
        include_str!("../../presets/web/av1-1080p-webm.toml"),
    ),
    (
        "web/av1-2160p-10bit",
        include_str!("../../presets/web/av1-2160p-10bit.toml"),
    ),
    (
        "web/h264-1080p",
        include_str!("../../presets/web/h264-1080p.toml"),
    ),
    (
        "web/h264-1080p-streaming",
        include_str!("../../presets/web/h264-1080p-streaming.toml"),
    ),
    (
        "web/h264-720p-streaming",
        include_str!("../../presets/web/h264-720p-streaming.toml"),
    ),
    (
        "web/h264-720p",
        include_str!("../../presets/web/h264-720p.toml"),
    ),
    (
        "web/h265-1080p-mov",
        include_str!("../../presets/web/h265-1080p-mov.toml"),
    ),
    (
        "web/h265-1080p",
        include_str!("../../presets/web/h265-1080p.toml"),
    ),
    (
        "web/h265-2160p-main10",
        include_str!("../../presets/web/h265-2160p-main10.toml"),
    ),
];

/// Preset files larger than this are refused unread (a preset is a page).
const MAX_PRESET_BYTES: u64 = 1024 * 1024;
/// Deepest sub-directory searched; also stops symlink loops.
const MAX_DEPTH: usize = 8;
const ID_EXPECTED: &str =
    "a file name of lowercase letters, digits, _ and - (sub-directories allowed), ending in .toml";

/// Which side of a merged preset a field came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Preset,
    Overrides,
}

impl PresetLibrary {
    /// The embedded presets only.
    ///
    /// # Panics
    ///
    /// If an embedded preset is invalid, which the unit tests rule out.
    pub fn builtin() -> Self {
        let mut lib = Self::default();
        for (id, text) in BUILTIN {
            let file = PathBuf::from(format!("builtin:{id}.toml"));
            if let Err(e) = lib.add(id, file, (*text).to_owned()) {
                panic!("built-in preset {id} is invalid: {e}");
            }
        }
        // Validated once all are in: a preset may extend one added after it.
        if let Some((id, Err(e))) = lib.validate_all().into_iter().find(|(_, r)| r.is_err()) {
            panic!("built-in preset {id} is invalid: {e}");
        }
        lib
    }

    /// The embedded presets, then every `*.toml` under each of `dirs` in
    /// order (sub-directories included; a later file with the same id
    /// replaces an earlier one or a built-in). Every preset is validated now,
    /// so a bad preset stops start-up rather than a job.
    ///
    /// # Errors
    ///
    /// An unreadable directory or file, a file name that is not a preset id,
    /// a file over 1 MiB, or an invalid preset.
    pub fn load(dirs: &[PathBuf]) -> Result<Self, InputError> {
        let (lib, errors) = Self::read(dirs);
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        if let Some((_, Err(e))) = lib.validate_all().into_iter().find(|(_, r)| r.is_err()) {
            return Err(e);
        }
        Ok(lib)
    }

    /// [`PresetLibrary::load`] without stopping at the first problem and
    /// without validating: every file that parses is in the library, and
    /// every one that did not (or a directory that cannot be read) is in the
    /// list. For `deliver presets check`, which reports them all;
    /// [`PresetLibrary::validate_all`] then checks the presets.
    pub fn read(dirs: &[PathBuf]) -> (Self, Vec<InputError>) {
        let mut lib = Self::builtin();
        let mut errors = Vec::new();
        for dir in dirs {
            let files = match std::fs::metadata(dir) {
                Err(e) => Err(InputError::new(
                    dir,
                    format!("cannot read the presets directory: {e}"),
                )),
                Ok(meta) if !meta.is_dir() => Err(InputError::new(dir, "is not a directory")
                    .expected("a directory of preset .toml files")),
                Ok(_) => {
                    let mut files = Vec::new();
                    collect(dir, dir, 0, &mut files).map(|()| files)
                }
            };
            let mut files = match files {
                Ok(f) => f,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            // Profiles before presets, since presets name them.
            files.sort_by_key(|(id, _)| (!id.starts_with(PROFILE_DIR), id.clone()));
            for (id, path) in files {
                let added = read_limited(&path).and_then(|text| {
                    if lib.presets.contains_key(&id) {
                        tracing::info!(preset = %id, file = %path.display(), "preset replaces an earlier one");
                    }
                    lib.add(&id, path, text)
                });
                if let Err(e) = added {
                    errors.push(e);
                }
            }
        }
        (lib, errors)
    }

    /// Adds one preset file that is not in a presets directory (`deliver
    /// presets check FILE`), as the last one loaded with id `id` (replacing
    /// one with that id, as a later directory would). Not validated: resolve
    /// it.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is not TOML.
    pub fn add_file(&mut self, path: &Path, id: &str) -> Result<(), InputError> {
        if !valid_preset_id(id) {
            return Err(
                InputError::new(path, format!("\"{id}\" is not a usable preset id"))
                    .value(format!("\"{id}\""))
                    .expected(ID_EXPECTED),
            );
        }
        let text = read_limited(path)?;
        self.add(id, path.to_path_buf(), text)
    }

    /// Resolves every preset without overrides, in id order.
    pub fn validate_all(&self) -> Vec<(String, Result<Preset, InputError>)> {
        self.presets
            .keys()
            .map(|id| (id.clone(), self.resolve(id, &toml::Table::new())))
            .collect()
    }

    /// Loudness profile names, sorted.
    pub fn profiles(&self) -> Vec<String> {
        self.profiles.keys().cloned().collect()
    }

    /// Preset ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.presets.keys().cloned().collect()
    }

    /// The preset's table as written, before overrides and validation.
    pub fn get_raw(&self, id: &str) -> Option<&toml::Table> {
        self.presets.get(id).map(|s| &s.table)
    }

    /// The preset's file, text and table.
    pub fn source(&self, id: &str) -> Option<&PresetSource> {
        self.presets.get(id)
    }

    /// The files an id's preset replaced (built-ins, earlier directories),
    /// oldest first.
    pub fn replaced(&self, id: &str) -> Vec<&Path> {
        self.shadowed
            .get(id)
            .map(|v| v.iter().map(|s| s.file.as_path()).collect())
            .unwrap_or_default()
    }

    /// The preset and the ones it extends, the preset first.
    ///
    /// # Errors
    ///
    /// An unknown id, or an `extends` that names no preset, is not a string
    /// or makes a cycle; the error points at that `extends`.
    pub fn chain(&self, id: &str) -> Result<Vec<&PresetSource>, InputError> {
        let source = self
            .presets
            .get(id)
            .ok_or_else(|| self.unknown(id, Path::new("presets")))?;
        let top = |id: &str| self.shadowed.get(id).map_or(0, Vec::len);
        let mut layer = top(id);
        let mut chain = vec![source];
        let mut seen = vec![(id.to_owned(), layer)];
        let mut current = source;
        while let Some(value) = current.table.get("extends") {
            let at = |e: InputError| {
                let mut e = e.field("extends").value(value.to_string());
                if let Some(span) = span_of_path(&current.text, &["extends"], false) {
                    let (line, column) = line_col(&current.text, span.start);
                    e = e.at(line, column);
                }
                e
            };
            let Some(parent) = value.as_str() else {
                return Err(at(InputError::new(
                    &current.file,
                    format!("value {value} is not a preset id"),
                )
                .expected(
                    "the id of the preset to start from, such as \"web/h264-1080p\"",
                )));
            };
            let next = if parent == current.id {
                // A file that extends its own id extends what it replaced.
                layer.checked_sub(1).map(|l| (&self.shadowed[parent][l], l))
            } else {
                self.presets.get(parent).map(|s| (s, top(parent)))
            };
            let Some((next, next_layer)) = next else {
                let known = self.ids().join(", ");
                let why = if parent == current.id {
                    format!(
                        "value {value} is this preset's own id, and it replaces no earlier preset"
                    )
                } else {
                    format!("value {value} is not a known preset")
                };
                return Err(at(InputError::new(&current.file, why)
                    .expected(format!("one of the presets: {known}"))));
            };
            if seen.contains(&(parent.to_owned(), next_layer)) {
                let mut ids: Vec<&str> = chain.iter().map(|s| s.id.as_str()).collect();
                ids.push(parent);
                return Err(at(InputError::new(
                    &current.file,
                    format!("value {value} makes a cycle: {}", ids.join(" extends ")),
                )
                .expected("a chain of presets that ends in one without `extends`")));
            }
            seen.push((parent.to_owned(), next_layer));
            chain.push(next);
            current = next;
            layer = next_layer;
        }
        Ok(chain)
    }

    /// The preset's table with its chain merged in and loudness profiles
    /// expanded: what [`PresetLibrary::resolve`] validates, in the terms of
    /// a preset file (`deliver presets show`).
    ///
    /// # Errors
    ///
    /// As [`PresetLibrary::chain`], or a loudness profile that is not known.
    pub fn merged(&self, id: &str) -> Result<toml::Table, InputError> {
        let chain = self.chain(id)?;
        let mut merged = merge_chain(&chain, &self.profiles)?;
        expand_profile(&mut merged, &self.profiles).map_err(|(m, v)| {
            InputError::new(&chain[0].file, m)
                .field("loudness.profile")
                .value(v)
        })?;
        Ok(merged)
    }

    /// Where a preset writes `path` (a field such as `["video", "pix_fmt"]`),
    /// itself or through the presets it extends: the file, line and column.
    pub fn locate(&self, id: &str, path: &[&str]) -> Option<(PathBuf, usize, usize)> {
        let chain = self.chain(id).ok()?;
        chain.iter().find_map(|s| {
            let span = span_of_path(&s.text, path, false)?;
            let (line, column) = line_col(&s.text, span.start);
            Some((s.file.clone(), line, column))
        })
    }

    /// The text of a new preset `new_id` that extends `from`: `extends`, a
    /// description, and the keys one usually changes as comments, with
    /// `from`'s values (`deliver presets new`). The text is checked to
    /// resolve before it is returned.
    ///
    /// # Errors
    ///
    /// `new_id` is not a preset id, `from` is not a known valid preset.
    pub fn new_preset(&self, new_id: &str, from: &str) -> Result<String, InputError> {
        let here = Path::new("presets new");
        if !valid_preset_id(new_id) || new_id.starts_with(PROFILE_DIR) {
            return Err(
                InputError::new(here, format!("\"{new_id}\" is not a usable preset id"))
                    .value(format!("\"{new_id}\""))
                    .expected("lowercase letters, digits, _ and -, in segments separated by /, outside loudness/"),
            );
        }
        let parent = self.resolve(from, &toml::Table::new())?;
        let merged = self.merged(from)?;
        let mut out = format!(
            "# {new_id}: starts from {from} ({}).\n\
             # Every key of {from} is inherited: write here only what changes. Tables\n\
             # merge key by key and the values written here win; arrays replace.\n\
             # `deliver presets show {new_id}` prints the result; `deliver presets\n\
             # check {new_id}` holds it to the loaded plugins.\n\
             extends = {}\n\
             description = {}\n",
            parent.file.display(),
            toml::Value::from(from),
            toml::Value::from(format!("{} (from {from})", parent.description)),
        );
        out.push_str(&format!(
            "\n# The keys usually changed, with {from}'s values:\n"
        ));
        let section = |out: &mut String, table: &str, keys: &[&str], note: &str| {
            let path: Vec<&str> = table.split('.').collect();
            let Some(toml::Value::Table(t)) = lookup(&merged, &path) else {
                return;
            };
            let keys: Vec<(String, &toml::Value)> = if keys.is_empty() {
                t.iter()
                    .filter(|(_, v)| !v.is_table())
                    .map(|(k, v)| (k.clone(), v))
                    .collect()
            } else {
                keys.iter()
                    .filter_map(|k| t.get(*k).map(|v| ((*k).to_owned(), v)))
                    .collect()
            };
            if keys.is_empty() {
                return;
            }
            out.push_str(&format!("#\n# [{table}]{note}\n"));
            for (k, v) in keys {
                out.push_str(&format!("# {k} = {v}\n"));
            }
        };
        section(
            &mut out,
            "video",
            &["width", "height", "pix_fmt", "profile", "bit_rate"],
            "  # width and height together",
        );
        section(&mut out, "video.options", &[], "  # passed to the encoder");
        section(&mut out, "audio", &["codec", "bit_rate"], "");
        section(
            &mut out,
            "loudness",
            &["target_lufs", "true_peak_dbtp", "tolerance_lu"],
            "",
        );
        out.push_str(&format!(
            "# or: profile = \"ebu-r128\"  # one of {}\n",
            self.profiles().join(", ")
        ));
        section(
            &mut out,
            "qc",
            &["min_psnr_y", "min_ssim_y", "max_duration_error_s"],
            "",
        );
        let mut check = self.clone();
        check.add(new_id, PathBuf::from(format!("{new_id}.toml")), out.clone())?;
        check.resolve(new_id, &toml::Table::new())?;
        Ok(out)
    }

    /// Deep-merges `overrides` over preset `id` (tables merge key by key,
    /// any other value replaces) and validates the result.
    ///
    /// # Errors
    ///
    /// An unknown id (the error lists the known ones), or the merged preset
    /// breaks a rule; the error names the preset file and, for values written
    /// there, their line and column. Values that came from `overrides` are
    /// marked as such; [`PresetLibrary::resolve_request`] reports those
    /// against the manifest instead.
    pub fn resolve(&self, id: &str, overrides: &toml::Table) -> Result<Preset, InputError> {
        let chain = self.chain(id)?;
        resolve_source(&chain, overrides, &self.profiles).map_err(|(e, _)| e)
    }

    /// [`PresetLibrary::resolve`] for a manifest's deliverable: an unknown
    /// preset, or a bad value from the deliverable's overrides, is reported
    /// against `manifest` at the `[[deliverable]]` line, since that is the file
    /// to fix.
    ///
    /// # Errors
    ///
    /// As [`PresetLibrary::resolve`].
    pub fn resolve_request(
        &self,
        req: &DeliverableRequest,
        manifest: &Path,
    ) -> Result<Preset, InputError> {
        if !self.presets.contains_key(&req.preset) {
            let mut e = self.unknown(&req.preset, manifest);
            e.line = Some(req.line);
            return Err(e);
        }
        let chain = self.chain(&req.preset)?;
        resolve_source(&chain, &req.overrides, &self.profiles).map_err(|(mut e, origin)| {
            if origin == Origin::Overrides {
                e.file = manifest.to_path_buf();
                e.line = Some(req.line);
                e.column = None;
                e.field = e.field.map(|f| format!("overrides.{f}"));
                e.message = format!(
                    "{} (in the overrides of deliverable \"{}\", preset {})",
                    e.message
                        .trim_end_matches(" (set by the deliverable's overrides)"),
                    req.name,
                    req.preset
                );
            }
            e
        })
    }

    fn unknown(&self, id: &str, file: &Path) -> InputError {
        let known = self.ids().join(", ");
        InputError::new(file, format!("value \"{id}\" is not a known preset"))
            .field("preset")
            .value(format!("\"{id}\""))
            .expected(format!("one of the presets: {known}"))
    }

    /// Parses one preset or loudness profile and adds it, replacing (and
    /// keeping, for `extends` of its own id) an earlier one with the same id.
    /// Profiles are checked now; presets when resolved, once every file is
    /// in (a preset may extend one read after it).
    fn add(&mut self, id: &str, file: PathBuf, text: String) -> Result<(), InputError> {
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| from_toml_error(&file, &text, &e))?;
        if let Some(name) = id.strip_prefix(PROFILE_DIR) {
            let mut values = table.clone();
            values.remove("description");
            // The same fields, types and unknown-key rule as a preset's
            // [loudness]; ranges are checked in every preset that uses it.
            let as_text = toml::to_string(&values).unwrap_or_default();
            toml::from_str::<RawLoudness>(&as_text).map_err(|e| {
                let mut err = from_toml_error(&file, &as_text, &e);
                err.line = None;
                err.column = None;
                err.file = file.clone();
                err
            })?;
            if values.contains_key("profile") {
                return Err(InputError::new(
                    &file,
                    "a loudness profile cannot name another profile",
                )
                .field("profile"));
            }
            self.profiles.insert(name.to_owned(), values);
            return Ok(());
        }
        let source = PresetSource {
            id: id.to_owned(),
            file,
            text,
            table,
        };
        if let Some(old) = self.presets.insert(id.to_owned(), source) {
            self.shadowed.entry(id.to_owned()).or_default().push(old);
        }
        Ok(())
    }
}

/// The user's preset directories, searched after the built-ins and before
/// any `--presets`: `$DELIVER_PRESETS` (colon-separated, later wins) when
/// set, else `$XDG_CONFIG_HOME/deliver/presets` (or
/// `~/.config/deliver/presets`) when that directory exists. Directories
/// named in `$DELIVER_PRESETS` that do not exist are left out with a
/// warning.
pub fn user_dirs() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("DELIVER_PRESETS") {
        return std::env::split_paths(&p)
            .filter(|d| !d.as_os_str().is_empty())
            .filter(|d| {
                let ok = d.is_dir();
                if !ok {
                    tracing::warn!(dir = %d.display(), "DELIVER_PRESETS names a directory that does not exist");
                }
                ok
            })
            .collect();
    }
    user_dir().filter(|d| d.is_dir()).into_iter().collect()
}

/// Where a user's presets live by default, whether it exists or not
/// (`deliver presets new` writes there): the first of `$DELIVER_PRESETS`,
/// else `$XDG_CONFIG_HOME/deliver/presets`, else `~/.config/deliver/presets`.
pub fn user_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DELIVER_PRESETS") {
        return std::env::split_paths(&p).find(|d| !d.as_os_str().is_empty());
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("deliver").join("presets"))
}

/// Merges a preset's chain (the preset first) into one table, root first;
/// `extends` is dropped. A file that names a loudness profile takes the
/// profile's values over its parents' (its own keys still win over the
/// profile, later, in [`expand_profile`]).
fn merge_chain(
    chain: &[&PresetSource],
    profiles: &BTreeMap<String, toml::Table>,
) -> Result<toml::Table, InputError> {
    let mut merged = toml::Table::new();
    for source in chain.iter().rev() {
        let mut layer = source.table.clone();
        layer.remove("extends");
        if let Some(name) = lookup(&layer, &["loudness", "profile"]) {
            let profile = name.as_str().and_then(|n| profiles.get(n)).ok_or_else(|| {
                let mut e = InputError::new(
                    &source.file,
                    format!("value {name} is not a known loudness profile"),
                )
                .field("loudness.profile")
                .value(name.to_string())
                .expected(format!(
                    "one of the loudness profiles: {}",
                    profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
                if let Some(span) = span_of_path(&source.text, &["loudness", "profile"], false) {
                    let (line, column) = line_col(&source.text, span.start);
                    e = e.at(line, column);
                }
                e
            })?;
            // The parents' profile becomes values, then gives way to this one.
            expand_profile(&mut merged, profiles).map_err(|(m, v)| {
                InputError::new(&source.file, m)
                    .field("loudness.profile")
                    .value(v)
            })?;
            if let Some(toml::Value::Table(loudness)) = merged.get_mut("loudness") {
                loudness.retain(|k, _| !profile.contains_key(k));
            }
        }
        deep_merge(&mut merged, &layer);
    }
    Ok(merged)
}

/// Finds `*.toml` files under `dir`, with their ids relative to `root`.
fn collect(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), InputError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| InputError::new(dir, format!("cannot read the presets directory: {e}")))?;
    for entry in entries {
        let entry = entry
            .map_err(|e| InputError::new(dir, format!("cannot read the presets directory: {e}")))?;
        let path = entry.path();
        let name = entry.file_name();
        // Hidden files: editor swap files, macOS `._*` resource forks.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue; // a dangling symlink
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                collect(root, &path, depth + 1, out)?;
            }
            continue;
        }
        if !meta.is_file() || path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let rel = path.strip_prefix(root).unwrap_or(&path).with_extension("");
        let id = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if !valid_preset_id(&id) {
            return Err(
                InputError::new(&path, format!("\"{id}\" is not a usable preset id"))
                    .value(format!("\"{id}\""))
                    .expected(ID_EXPECTED),
            );
        }
        out.push((id, path));
    }
    Ok(())
}

fn read_limited(path: &Path) -> Result<String, InputError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| InputError::new(path, format!("cannot open the preset: {e}")))?;
    let mut buf = Vec::new();
    file.take(MAX_PRESET_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| InputError::new(path, format!("cannot read the preset: {e}")))?;
    if buf.len() as u64 > MAX_PRESET_BYTES {
        return Err(InputError::new(
            path,
            format!("the preset is larger than the limit of {MAX_PRESET_BYTES} bytes"),
        )
        .expected(format!("a preset of at most {MAX_PRESET_BYTES} bytes")));
    }
    String::from_utf8(buf).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let valid = std::str::from_utf8(&bytes[..at]).unwrap_or("");
        InputError::new(path, format!("byte 0x{:02x} is not valid UTF-8", bytes[at]))
            .at_byte(valid, at)
            .value(format!("0x{:02x}", bytes[at]))
            .expected("UTF-8 text")
    })
}

/// Replaces `loudness.profile = "name"` by the profile's values, under the
/// preset's own `[loudness]` keys (which win).
fn expand_profile(
    merged: &mut toml::Table,
    profiles: &BTreeMap<String, toml::Table>,
) -> Result<(), (String, String)> {
    let Some(toml::Value::Table(loudness)) = merged.get_mut("loudness") else {
        return Ok(());
    };
    let Some(name) = loudness.remove("profile") else {
        return Ok(());
    };
    let name_str = name.as_str().unwrap_or_default();
    let profile = profiles.get(name_str).ok_or_else(|| {
        (
            format!("value {name} is not a known loudness profile"),
            name.to_string(),
        )
    })?;
    let mut expanded = profile.clone();
    deep_merge(&mut expanded, loudness);
    *loudness = expanded;
    Ok(())
}

/// Tables merge key by key; any other value in `over` replaces.
fn deep_merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => deep_merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn lookup<'t>(table: &'t toml::Table, path: &[&str]) -> Option<&'t toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for key in parents {
        t = t.get(*key)?.as_table()?;
    }
    t.get(*last)
}

/// Validates a preset's chain (the preset first) with `overrides` merged
/// over it.
fn resolve_source(
    chain: &[&PresetSource],
    overrides: &toml::Table,
    profiles: &BTreeMap<String, toml::Table>,
) -> Result<Preset, (InputError, Origin)> {
    let source = chain[0];
    let mut merged = merge_chain(chain, profiles).map_err(|e| (e, Origin::Preset))?;
    deep_merge(&mut merged, overrides);
    expand_profile(&mut merged, profiles).map_err(|e| {
        let e = InputError::new(&source.file, e.0)
            .field("loudness.profile")
            .value(e.1)
            .expected(format!(
                "one of the loudness profiles: {}",
                profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        let origin = if lookup(overrides, &["loudness", "profile"]).is_some() {
            Origin::Overrides
        } else {
            Origin::Preset
        };
        (e, origin)
    })?;
    let checker = Checker {
        source,
        chain,
        overrides,
        merged: &merged,
    };
    // Serde works on text to report spans; the merged table is written back
    // to TOML, and the error's field path is mapped to the preset file (or
    // the overrides) by `Checker::place`.
    let text = toml::to_string(&merged).map_err(|e| {
        (
            InputError::new(&source.file, format!("cannot merge the overrides: {e}")),
            Origin::Overrides,
        )
    })?;
    let raw: RawPreset = toml::from_str(&text).map_err(|e| {
        let mut err = from_toml_error(&source.file, &text, &e);
        let path: Vec<String> = err
            .field
            .as_deref()
            .map(|f| {
                f.split('.')
                    .map(|k| k.trim_matches('"').to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        err.line = None;
        err.column = None;
        let unknown_key = e.message().starts_with("unknown field");
        let origin = checker.place(&mut err, &keys, unknown_key);
        (err, origin)
    })?;
    checker.preset(raw)
}

struct Checker<'a> {
    source: &'a PresetSource,
    /// `source` and the presets it extends, `source` first.
    chain: &'a [&'a PresetSource],
    overrides: &'a toml::Table,
    merged: &'a toml::Table,
}

type Checked<T> = Result<T, (InputError, Origin)>;

impl Checker<'_> {
    /// Sets the error's position from where `path` is written: the preset
    /// file (line and column) or the overrides (marked in the message).
    /// With `key`, the position is the key's (unknown fields).
    fn place(&self, e: &mut InputError, path: &[&str], key: bool) -> Origin {
        if !path.is_empty() && lookup(self.overrides, path).is_some() {
            e.message.push_str(" (set by the deliverable's overrides)");
            return Origin::Overrides;
        }
        // The value itself, else the nearest table that is written; in the
        // preset, else in the nearest preset it extends that writes it.
        for n in (1..=path.len()).rev() {
            let is_leaf = n == path.len();
            let found = self.chain.iter().find_map(|s| {
                span_of_path(&s.text, &path[..n], key && is_leaf).map(|span| (s, span))
            });
            if let Some((writer, span)) = found {
                let (line, column) = line_col(&writer.text, span.start);
                e.line = Some(line);
                e.column = Some(column);
                if writer.file != self.source.file {
                    e.file = writer.file.clone();
                    e.message.push_str(&format!(
                        " (inherited through `extends` by preset {}, {})",
                        self.source.id,
                        self.source.file.display()
                    ));
                }
                break;
            }
        }
        Origin::Preset
    }

    fn bad(
        &self,
        path: &[&str],
        predicate: impl Display,
        expected: impl Into<String>,
    ) -> (InputError, Origin) {
        let value = lookup(self.merged, path)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let mut e = InputError::new(&self.source.file, format!("value {value} {predicate}"))
            .field(path.join("."))
            .value(value)
            .expected(expected);
        let origin = self.place(&mut e, path, false);
        (e, origin)
    }

    fn missing(&self, path: &[&str], expected: impl Into<String>) -> (InputError, Origin) {
        let mut e = InputError::new(&self.source.file, "required field is missing")
            .field(path.join("."))
            .expected(expected);
        // Point at the table it belongs in, when that is written.
        if path.len() > 1 {
            if let Some(span) = span_of_path(&self.source.text, &path[..path.len() - 1], false) {
                let (line, column) = line_col(&self.source.text, span.start);
                e = e.at(line, column);
            }
        }
        (e, Origin::Preset)
    }

    fn required<'v, T>(&self, v: &'v Option<T>, path: &[&str], expected: &str) -> Checked<&'v T> {
        v.as_ref().ok_or_else(|| self.missing(path, expected))
    }

    fn float(
        &self,
        v: Option<f64>,
        path: &[&str],
        ok: impl Fn(f64) -> bool,
        expected: &str,
    ) -> Checked<f64> {
        let x = v.ok_or_else(|| self.missing(path, expected))?;
        if x.is_finite() && ok(x) {
            Ok(x)
        } else {
            Err(self.bad(path, "is out of range", expected))
        }
    }

    fn int(
        &self,
        v: i64,
        path: &[&str],
        range: std::ops::RangeInclusive<i64>,
        expected: &str,
    ) -> Checked<i64> {
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(self.bad(path, "is out of range", expected))
        }
    }

    fn name(
        &self,
        v: &str,
        path: &[&str],
        extra: &[u8],
        max: usize,
        expected: &str,
    ) -> Checked<String> {
        let ok = !v.is_empty()
            && v.len() <= max
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b));
        if ok {
            Ok(v.to_owned())
        } else {
            Err(self.bad(path, "is not accepted", expected))
        }
    }

    fn colour_name(&self, v: &Option<String>, path: &[&str]) -> Checked<u32> {
        match v.as_deref() {
            None | Some("bt709") => Ok(1),
            Some(_) => Err(self.bad(path, "is not supported", "\"bt709\" (the only one in v1)")),
        }
    }

    fn preset(&self, raw: RawPreset) -> Checked<Preset> {
        const CONTAINERS: &str = "\"mp4\", \"mov\", \"mxf\", \"matroska\" or \"webm\"";
        let container = self.required(&raw.container, &["container"], CONTAINERS)?;
        if !matches!(
            container.as_str(),
            "mp4" | "mov" | "mxf" | "matroska" | "webm"
        ) {
            return Err(self.bad(&["container"], "is not a supported container", CONTAINERS));
        }
        let extension = match &raw.extension {
            Some(e) => self.name(
                e,
                &["extension"],
                b"",
                8,
                "1 to 8 lowercase letters and digits, without the dot",
            )?,
            None => container.clone(),
        };
        let video = self.video(self.required(&raw.video, &["video"], "a [video] table")?)?;
        if video.fourcc.is_some() && !matches!(container.as_str(), "mp4" | "mov") {
            return Err(self.bad(
                &["video", "fourcc"],
                format!("cannot be set in a {container} file"),
                "no fourcc, or a container of \"mov\" or \"mp4\" (where sample entries have one)",
            ));
        }
        let audio = raw.audio.as_ref().map(|a| self.audio(a)).transpose()?;
        if audio.as_ref().is_some_and(|a| a.tracks.is_some())
            && !matches!(container.as_str(), "mxf" | "mov")
        {
            return Err(self.bad(
                &["audio", "tracks"],
                format!("cannot be laid out in a {container} file"),
                "no audio.tracks, or a container of \"mxf\" or \"mov\" (which carry mono PCM tracks)",
            ));
        }
        let l = self.required(
            &raw.loudness,
            &["loudness"],
            "a [loudness] table with target_lufs, true_peak_dbtp and tolerance_lu",
        )?;
        let loudness = LoudnessSpec {
            target_lufs: self.float(
                l.target_lufs,
                &["loudness", "target_lufs"],
                |x| (-70.0..=0.0).contains(&x),
                "an integrated loudness in LUFS from -70 to 0",
            )?,
            true_peak_dbtp: self.float(
                l.true_peak_dbtp,
                &["loudness", "true_peak_dbtp"],
                |x| (-20.0..=0.0).contains(&x),
                "a true peak in dBTP from -20 to 0",
            )?,
            tolerance_lu: self.float(
                l.tolerance_lu,
                &["loudness", "tolerance_lu"],
                |x| x > 0.0 && x <= 5.0,
                "a tolerance in LU greater than 0 and at most 5",
            )?,
            allow_limiter: l.allow_limiter.unwrap_or(false),
            // The headroom is a threshold of the profile: required when
            // limiting is allowed, meaningless otherwise.
            limiter_headroom_db: if l.allow_limiter == Some(true) {
                self.float(
                    l.limiter_headroom_db,
                    &["loudness", "limiter_headroom_db"],
                    |x| (0.0..=6.0).contains(&x),
                    "the limiter's distance below the ceiling in dB, 0 to 6 (required with allow_limiter = true)",
                )?
            } else {
                0.0
            },
            max_short_term_lufs: match l.max_short_term_lufs {
                None => None,
                v => Some(self.float(
                    v,
                    &["loudness", "max_short_term_lufs"],
                    |x| (-70.0..=0.0).contains(&x),
                    "a short-term loudness in LUFS from -70 to 0",
                )?),
            },
        };
        let q = self.required(
            &raw.qc,
            &["qc"],
            "a [qc] table with min_psnr_y, min_ssim_y and max_duration_error_s",
        )?;
        let mut qc = crate::qc::QcProfile::from_table(q).map_err(|e| {
            let path: Vec<&str> = e.path.iter().map(String::as_str).collect();
            if e.value == "missing" {
                self.missing(&path, e.expected.clone())
            } else if e.expected.starts_with("no such key") {
                let key = path.last().copied().unwrap_or_default();
                let mut err = InputError::new(&self.source.file, format!("unknown field `{key}`"))
                    .field(path.join("."))
                    .value(e.value.clone())
                    .expected(
                        e.expected
                            .replace("no such key; known keys here: ", "one of "),
                    );
                let origin = self.place(&mut err, &path, true);
                (err, origin)
            } else {
                self.bad(&path, "is not accepted", e.expected.clone())
            }
        })?;
        qc.codec_tag = video.fourcc.clone();
        Ok(Preset {
            id: self.source.id.clone(),
            file: self.source.file.clone(),
            description: raw.description.clone().unwrap_or_default(),
            container: container.clone(),
            extension,
            container_options: raw.container_options.clone().unwrap_or_default(),
            video,
            audio,
            loudness,
            qc,
        })
    }

    fn video(&self, v: &RawVideo) -> Checked<VideoSpec> {
        let codec = self.required(
            &v.codec,
            &["video", "codec"],
            "a codec name such as \"h264\"",
        )?;
        let codec = self.name(
            codec,
            &["video", "codec"],
            b"_",
            32,
            "a codec name such as \"h264\" (lowercase letters, digits and _)",
        )?;
        let encoder = match &v.encoder {
            Some(e) => {
                let ok = !e.is_empty()
                    && e.len() <= 64
                    && e.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
                if !ok {
                    return Err(self.bad(&["video", "encoder"], "is not accepted", "a plugin or encoder name such as \"libx264\" (letters, digits, _, - and .)"));
                }
                Some(e.clone())
            }
            None => None,
        };
        let hardware = match v.hardware.as_deref() {
            None | Some("never") => HardwarePolicy::Never,
            Some("prefer") => HardwarePolicy::Prefer,
            Some("require") => HardwarePolicy::Require,
            Some(_) => {
                return Err(self.bad(
                    &["video", "hardware"],
                    "is not a hardware policy",
                    "\"never\" (software only), \"prefer\" (hardware if one works here, else software) or \"require\" (hardware or fail)",
                ))
            }
        };
        let isolation = self.isolation(&v.isolation, &["video", "isolation"])?;
        let profile = v
            .profile
            .as_ref()
            .map(|p| {
                self.name(
                    p,
                    &["video", "profile"],
                    b"_-.",
                    32,
                    "a profile name such as \"high\" (lowercase letters, digits, _, - and .)",
                )
            })
            .transpose()?;
        const PIX_FMTS: &[&str] = &[
            "yuv420p",
            "yuv422p",
            "yuv444p",
            "yuv420p10le",
            "yuv422p10le",
            "yuv444p10le",
            // 4:4:4 with the render's alpha (ProRes 4444).
            "yuva444p10le",
        ];
        let pix_expected = format!(
            "one of {}",
            PIX_FMTS
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let pix_fmt = self.required(&v.pix_fmt, &["video", "pix_fmt"], &pix_expected)?;
        if !PIX_FMTS.contains(&pix_fmt.as_str()) {
            return Err(self.bad(
                &["video", "pix_fmt"],
                "is not a supported pixel format",
                pix_expected,
            ));
        }
        let fourcc = match &v.fourcc {
            Some(f) if f.len() == 4 && f.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                Some(f.clone())
            }
            Some(_) => {
                return Err(self.bad(
                    &["video", "fourcc"],
                    "is not a fourcc",
                    "four ASCII letters or digits, such as \"hvc1\" or \"apch\"",
                ))
            }
            None => None,
        };
        let field_order = match v.field_order.as_deref() {
            None | Some("progressive") => FieldOrder::Progressive,
            Some("tff") => FieldOrder::Tff,
            Some("bff") => FieldOrder::Bff,
            Some(_) => {
                return Err(self.bad(
                    &["video", "field_order"],
                    "is not a field order",
                    "\"progressive\", \"tff\" (interlaced, top field first) or \"bff\"",
                ))
            }
        };
        let dimension = |n: i64, key: &str| -> Checked<u32> {
            let expected = "an even integer from 16 to 8192";
            let n = self.int(n, &["video", key], 16..=8192, expected)?;
            if n % 2 != 0 {
                return Err(self.bad(&["video", key], "is odd", expected));
            }
            Ok(n as u32)
        };
        let (width, height) = match (v.width, v.height) {
            (Some(w), Some(h)) => (Some(dimension(w, "width")?), Some(dimension(h, "height")?)),
            (None, None) => (None, None),
            (Some(_), None) => {
                return Err(self.missing(
                    &["video", "height"],
                    "height together with width (or neither, for the canvas size)",
                ))
            }
            (None, Some(_)) => {
                return Err(self.missing(
                    &["video", "width"],
                    "width together with height (or neither, for the canvas size)",
                ))
            }
        };
        let range = match v.range.as_deref() {
            None | Some("limited") => 1,
            Some("full") => 2,
            Some(_) => {
                return Err(self.bad(
                    &["video", "range"],
                    "is not a colour range",
                    "\"limited\" or \"full\"",
                ))
            }
        };
        let colour = Colour {
            primaries: self.colour_name(&v.primaries, &["video", "primaries"])?,
            transfer: self.colour_name(&v.transfer, &["video", "transfer"])?,
            matrix: self.colour_name(&v.matrix, &["video", "matrix"])?,
            range,
        };
        let bit_rate = v
            .bit_rate
            .map(|b| {
                self.int(
                    b,
                    &["video", "bit_rate"],
                    1_000..=10_000_000_000,
                    "bits per second from 1000 to 10000000000",
                )
            })
            .transpose()?;
        Ok(VideoSpec {
            codec,
            encoder,
            hardware,
            isolation,
            profile,
            pix_fmt: pix_fmt.clone(),
            fourcc,
            field_order,
            width,
            height,
            colour,
            bit_rate,
            options: v.options.clone().unwrap_or_default(),
        })
    }

    fn isolation(&self, v: &Option<String>, field: &[&str]) -> Checked<Isolation> {
        match v.as_deref() {
            None => Ok(Isolation::InProcess),
            Some(s) => Isolation::parse(s)
                .ok_or_else(|| self.bad(field, "is not an isolation", Isolation::EXPECTED)),
        }
    }

    fn audio(&self, a: &RawAudio) -> Checked<AudioSpec> {
        let codec = self.required(
            &a.codec,
            &["audio", "codec"],
            "a codec name such as \"aac\"",
        )?;
        let codec = self.name(
            codec,
            &["audio", "codec"],
            b"_",
            32,
            "a codec name such as \"aac\" (lowercase letters, digits and _)",
        )?;
        let encoder = match &a.encoder {
            Some(e) => {
                let ok = !e.is_empty()
                    && e.len() <= 64
                    && e.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
                if !ok {
                    return Err(self.bad(
                        &["audio", "encoder"],
                        "is not accepted",
                        "a plugin or encoder name (letters, digits, _, - and .)",
                    ));
                }
                Some(e.clone())
            }
            None => None,
        };
        let isolation = self.isolation(&a.isolation, &["audio", "isolation"])?;
        let sr_expected = "a sample rate in Hz from 8000 to 192000";
        let sample_rate = *self.required(&a.sample_rate, &["audio", "sample_rate"], sr_expected)?;
        let sample_rate = self.int(
            sample_rate,
            &["audio", "sample_rate"],
            8_000..=192_000,
            sr_expected,
        )? as u32;
        let ch_expected = "1 (mono), 2 (stereo) or 6 (5.1: L R C LFE Ls Rs)";
        let channels = *self.required(&a.channels, &["audio", "channels"], ch_expected)?;
        let channels = match channels {
            1 | 2 | 6 => channels as u32,
            3..=5 => {
                return Err(self.bad(
                    &["audio", "channels"],
                    "is not a channel count the mix lays out",
                    ch_expected,
                ))
            }
            _ => self.int(channels, &["audio", "channels"], 1..=2, ch_expected)? as u32,
        };
        let bit_rate = a
            .bit_rate
            .map(|b| {
                self.int(
                    b,
                    &["audio", "bit_rate"],
                    1_000..=10_000_000,
                    "bits per second from 1000 to 10000000",
                )
            })
            .transpose()?;
        let tracks = a
            .tracks
            .as_ref()
            .map(|t| self.tracks(t, &codec, channels))
            .transpose()?;
        Ok(AudioSpec {
            codec,
            encoder,
            isolation,
            sample_rate,
            channels,
            bit_rate,
            options: a.options.clone().unwrap_or_default(),
            tracks,
        })
    }

    /// `audio.tracks`: one name per mono track, each a channel of the mix
    /// or "silent"; every channel of the mix on at least one track.
    fn tracks(&self, names: &[String], codec: &str, channels: u32) -> Checked<Vec<Track>> {
        let field = &["audio", "tracks"];
        let known = Track::names(channels);
        let expected = format!(
            "2 to 16 track names, each one of {} or \"silent\", every channel at least once",
            known.join(", ")
        );
        if !codec.starts_with("pcm_") {
            return Err(self.bad(
                field,
                format!(
                    "needs PCM audio (audio.codec is \"{codec}\"): tracks are cut from PCM samples"
                ),
                "no audio.tracks, or a PCM codec such as \"pcm_s24le\"",
            ));
        }
        if !(2..=16).contains(&names.len()) {
            return Err(self.bad(field, format!("has {} tracks", names.len()), expected));
        }
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let t = if n == "silent" {
                Track::Silent
            } else {
                match known.iter().position(|k| k == n) {
                    Some(c) => Track::Channel(c as u32),
                    None => {
                        return Err(self.bad(
                            field,
                            format!("names \"{n}\", not a channel of a {channels}-channel mix"),
                            expected,
                        ))
                    }
                }
            };
            out.push(t);
        }
        if let Some(c) = (0..channels).find(|c| !out.contains(&Track::Channel(*c))) {
            return Err(self.bad(
                field,
                format!(
                    "leaves channel {} of the mix on no track",
                    known[c as usize]
                ),
                expected,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(src: &str) -> toml::Table {
        toml::from_str(src).unwrap()
    }

    #[test]
    fn audio_channels_are_mono_stereo_or_five_one() {
        let lib = PresetLibrary::builtin();
        // A 5.1 master: any preset with its audio made 6 channels.
        let p = lib
            .resolve("master/prores-422-hq", &table("audio.channels = 6"))
            .unwrap();
        assert_eq!(p.audio.unwrap().channels, 6);
        let p = lib
            .resolve("web/h264-1080p", &table("audio.channels = 1"))
            .unwrap();
        assert_eq!(p.audio.unwrap().channels, 1);
        for (n, why) in [
            (4, "is not a channel count the mix lays out"),
            (8, "is out of range"),
        ] {
            let e = lib
                .resolve("web/h264-1080p", &table(&format!("audio.channels = {n}")))
                .unwrap_err();
            assert_eq!(e.field.as_deref(), Some("audio.channels"), "{e}");
            let text = e.to_string();
            assert!(text.contains(why) && text.contains("6 (5.1"), "{text}");
        }
    }

    #[test]
    fn audio_tracks_lay_out_pcm_in_mxf_and_mov_only() {
        let lib = PresetLibrary::builtin();
        let p = lib
            .resolve("broadcast/xdcam-hd422-1080i25", &toml::Table::new())
            .unwrap();
        let t = p.audio.unwrap().tracks.unwrap();
        assert_eq!(t.len(), 8);
        assert_eq!(
            &t[..3],
            &[Track::Channel(0), Track::Channel(1), Track::Silent]
        );
        // A 5.1 master on six tracks plus the left and right again.
        let o = table(
            "audio.channels = 6\naudio.tracks = [\"L\", \"R\", \"C\", \"LFE\", \"Ls\", \"Rs\", \"L\", \"R\"]",
        );
        let p = lib.resolve("master/prores-422-hq", &o).unwrap();
        assert_eq!(p.audio.unwrap().tracks.unwrap()[3], Track::Channel(3));
        for (preset, over, why) in [
            (
                "master/prores-422-hq",
                "audio.tracks = [\"L\", \"silent\"]",
                "leaves channel R",
            ),
            (
                "master/prores-422-hq",
                "audio.tracks = [\"L\", \"R\", \"C\"]",
                "names \"C\"",
            ),
            (
                "master/prores-422-hq",
                "audio.tracks = [\"L\"]",
                "has 1 tracks",
            ),
            (
                "web/h264-1080p",
                "audio.tracks = [\"L\", \"R\"]",
                "needs PCM audio",
            ),
            (
                "web/h264-1080p",
                "audio.codec = \"pcm_s24le\"\naudio.tracks = [\"L\", \"R\"]",
                "cannot be laid out in a mp4 file",
            ),
        ] {
            let e = lib.resolve(preset, &table(over)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("audio.tracks"), "{e}");
            assert!(e.to_string().contains(why), "{e}");
        }
    }

    #[test]
    fn loudness_profiles_fill_in_and_the_preset_wins() {
        let lib = PresetLibrary::builtin();
        let p = lib
            .resolve("web/h264-720p-streaming", &toml::Table::new())
            .unwrap();
        assert_eq!(p.loudness.target_lufs, -16.0);
        assert!(p.loudness.allow_limiter);
        assert_eq!(p.loudness.limiter_headroom_db, 1.0);
        let p = lib
            .resolve(
                "web/h264-720p",
                &table("loudness.profile = \"atsc-a85\"\nloudness.tolerance_lu = 1.0"),
            )
            .unwrap();
        // The profile replaces nothing the preset or overrides set themselves.
        assert_eq!(p.loudness.target_lufs, -23.0);
        assert_eq!(p.loudness.tolerance_lu, 1.0);
        let e = lib
            .resolve("web/h264-720p", &table("loudness.profile = \"loud\""))
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("loudness.profile"), "{e}");
        assert!(e.expected.as_deref().unwrap().contains("ebu-r128"), "{e}");
    }

    #[test]
    fn builtins_are_valid_and_as_specified() {
        let lib = PresetLibrary::builtin();
        assert_eq!(lib.ids().len(), 30);
        for group in ["master/", "broadcast/", "web/"] {
            assert!(lib.ids().iter().any(|i| i.starts_with(group)), "{group}");
        }
        assert_eq!(
            lib.profiles(),
            [
                "atsc-a85",
                "ebu-r128",
                "ebu-r128-s1",
                "streaming-14",
                "streaming-16"
            ]
        );
        let p = lib.resolve("web/h264-1080p", &toml::Table::new()).unwrap();
        assert_eq!(p.file, Path::new("builtin:web/h264-1080p.toml"));
        assert_eq!((p.container.as_str(), p.extension.as_str()), ("mp4", "mp4"));
        assert_eq!(p.container_options, table("faststart = true"));
        assert_eq!(p.video.codec, "h264");
        assert_eq!(p.video.profile.as_deref(), Some("high"));
        assert_eq!(p.video.pix_fmt, "yuv420p");
        assert_eq!((p.video.width, p.video.height), (Some(1920), Some(1080)));
        assert_eq!(p.video.colour, Colour::BT709);
        assert_eq!(
            p.video.options,
            table("crf = 20\npreset = \"medium\"\nprofile = \"high\"")
        );
        let a = p.audio.unwrap();
        assert_eq!(
            (a.codec.as_str(), a.sample_rate, a.channels, a.bit_rate),
            ("aac", 48000, 2, Some(192_000))
        );
        assert_eq!(
            p.loudness,
            LoudnessSpec {
                target_lufs: -23.0,
                true_peak_dbtp: -1.0,
                tolerance_lu: 0.5,
                allow_limiter: false,
                limiter_headroom_db: 0.0,
                max_short_term_lufs: None,
            }
        );
        assert_eq!(
            (
                p.qc.min_psnr_y,
                p.qc.min_ssim_y,
                p.qc.max_duration_error_s,
                p.qc.max_delta_e_p99,
                p.qc.max_delta_e_mean
            ),
            (35.0, 0.95, 0.05, None, Some(1.5))
        );

        let p = lib.resolve("web/h264-720p", &toml::Table::new()).unwrap();
        assert_eq!((p.video.width, p.video.height), (Some(1280), Some(720)));
        assert_eq!(
            p.video.options,
            table("crf = 20\npreset = \"fast\"\nprofile = \"high\"")
        );
    }

    #[test]
    fn field_order_is_progressive_unless_a_preset_says_tff_or_bff() {
        let lib = PresetLibrary::builtin();
        let p = lib
            .resolve("broadcast/xdcam-hd422-1080i25", &toml::Table::new())
            .unwrap();
        assert_eq!(p.video.field_order, FieldOrder::Tff);
        assert_eq!(
            (
                p.video.field_order.encoder_option(),
                p.video.field_order.muxer_option()
            ),
            (Some("tff"), Some("tt"))
        );
        let p = lib
            .resolve("broadcast/xdcam-hd422-1080p25", &toml::Table::new())
            .unwrap();
        assert_eq!(p.video.field_order, FieldOrder::Progressive);
        let e = lib
            .resolve(
                "broadcast/xdcam-hd422-1080p25",
                &table("video.field_order = \"upper\""),
            )
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("video.field_order"), "{e}");
        assert!(e.to_string().contains("\"tff\" (interlaced"), "{e}");
    }

    #[test]
    fn a_fourcc_is_checked_and_becomes_the_qc_codec_tag() {
        let lib = PresetLibrary::builtin();
        let p = lib.resolve("web/h265-1080p", &toml::Table::new()).unwrap();
        assert_eq!(p.video.fourcc.as_deref(), Some("hvc1"));
        assert_eq!(p.qc.codec_tag.as_deref(), Some("hvc1"));
        // MXF has no sample entries to name.
        let p = lib
            .resolve("master/dnxhr-hq-mxf", &toml::Table::new())
            .unwrap();
        assert_eq!((p.video.fourcc, p.qc.codec_tag), (None, None));

        let e = lib
            .resolve("web/h265-1080p", &table("video.fourcc = \"hvc\""))
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("video.fourcc"), "{e}");
        assert!(
            e.to_string().contains("four ASCII letters or digits"),
            "{e}"
        );
        // MXF and Matroska name codecs by other means.
        let e = lib
            .resolve("master/dnxhr-hq-mxf", &table("video.fourcc = \"AVdh\""))
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("video.fourcc"), "{e}");
        assert!(e.to_string().contains("cannot be set in a mxf file"), "{e}");
    }

    #[test]
    fn the_library_covers_masters_broadcast_and_web() {
        let lib = PresetLibrary::builtin();
        let get = |id: &str| lib.resolve(id, &toml::Table::new()).unwrap();
        let p = get("master/prores-4444-xq");
        assert_eq!(
            (
                p.container.as_str(),
                p.video.codec.as_str(),
                p.video.profile.as_deref()
            ),
            ("mov", "prores", Some("4444xq"))
        );
        assert_eq!(p.video.pix_fmt, "yuv444p10le");
        let a = p.audio.unwrap();
        assert_eq!(
            (a.codec.as_str(), a.sample_rate, a.channels),
            ("pcm_s24le", 48000, 2)
        );
        assert_eq!(p.qc.audio.bit_depth, Some(24));
        let p = get("broadcast/xdcam-hd422-1080p25");
        assert_eq!(
            (p.container.as_str(), p.video.bit_rate),
            ("mxf", Some(50_000_000))
        );
        assert_eq!(p.loudness.target_lufs, -23.0);
        let p = get("broadcast/atsc-h264-1080");
        assert_eq!(
            (p.loudness.target_lufs, p.loudness.true_peak_dbtp),
            (-24.0, -2.0)
        );
        let p = get("web/av1-1080p-webm");
        assert_eq!(
            (p.container.as_str(), p.extension.as_str()),
            ("webm", "webm")
        );
        assert_eq!(p.video.encoder.as_deref(), Some("libsvtav1"));
        assert_eq!(p.audio.unwrap().codec, "opus");
    }

    #[test]
    fn overrides_merge_deeply() {
        let lib = PresetLibrary::builtin();
        let p = lib
            .resolve(
                "web/h264-1080p",
                &table("video.options.crf = 18\nvideo.width = 1280\nvideo.height = 720"),
            )
            .unwrap();
        assert_eq!(
            p.video.options,
            table("crf = 18\npreset = \"medium\"\nprofile = \"high\"")
        );
        assert_eq!((p.video.width, p.video.height), (Some(1280), Some(720)));
        assert_eq!(
            lib.get_raw("web/h264-1080p").unwrap()["video"]["width"].as_integer(),
            Some(1920)
        );
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let e = PresetLibrary::builtin()
            .resolve("web/nope", &toml::Table::new())
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("\"web/nope\" is not a known preset"),
            "{text}"
        );
        assert!(
            text.contains("web/h264-1080p, web/h264-1080p-streaming, web/h264-720p"),
            "{text}"
        );
    }

    #[test]
    fn the_hardware_policy_defaults_to_never_and_is_checked() {
        let lib = PresetLibrary::builtin();
        let p = lib.resolve("web/h264-1080p", &toml::Table::new()).unwrap();
        assert_eq!(p.video.hardware, HardwarePolicy::Never);
        for (v, want) in [
            ("never", HardwarePolicy::Never),
            ("prefer", HardwarePolicy::Prefer),
            ("require", HardwarePolicy::Require),
        ] {
            let o = table(&format!("video.hardware = \"{v}\""));
            let p = lib.resolve("web/h264-1080p", &o).unwrap();
            assert_eq!(p.video.hardware, want);
        }

        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "web/gpu.toml",
            &BUILTIN_1080P.replace(
                "codec = \"h264\"",
                "codec = \"h264\"\nhardware = \"always\"",
            ),
        );
        let e = PresetLibrary::load(&[dir.path().to_path_buf()])
            .and_then(|l| l.resolve("web/gpu", &toml::Table::new()))
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{}:13:", path.display())),
            "{text}"
        );
        assert_eq!(e.field.as_deref(), Some("video.hardware"), "{text}");
        assert!(
            text.contains("\"always\" is not a hardware policy"),
            "{text}"
        );
        assert!(text.contains("\"prefer\""), "{text}");
    }

    #[test]
    fn isolation_defaults_to_in_process_and_is_checked() {
        let lib = PresetLibrary::builtin();
        let p = lib.resolve("web/h264-1080p", &toml::Table::new()).unwrap();
        assert_eq!(p.video.isolation, Isolation::InProcess);
        assert_eq!(p.audio.as_ref().unwrap().isolation, Isolation::InProcess);
        let o = table("video.isolation = \"process\"\naudio.isolation = \"process\"");
        let p = lib.resolve("web/h264-1080p", &o).unwrap();
        assert_eq!(p.video.isolation, Isolation::Process);
        assert_eq!(p.audio.as_ref().unwrap().isolation, Isolation::Process);

        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "web/iso.toml",
            &BUILTIN_1080P.replace(
                "codec = \"h264\"",
                "codec = \"h264\"\nisolation = \"sandbox\"",
            ),
        );
        let e = PresetLibrary::load(&[dir.path().to_path_buf()])
            .and_then(|l| l.resolve("web/iso", &toml::Table::new()))
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{}:13:", path.display())),
            "{text}"
        );
        assert_eq!(e.field.as_deref(), Some("video.isolation"), "{text}");
        assert!(text.contains("\"sandbox\" is not an isolation"), "{text}");
        assert!(text.contains("\"process\""), "{text}");
    }

    #[test]
    fn errors_in_overrides_say_so() {
        let lib = PresetLibrary::builtin();
        let e = lib
            .resolve("web/h264-1080p", &table("loudness.target_lufs = 5.0"))
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("loudness.target_lufs"));
        assert_eq!(e.value.as_deref(), Some("5.0"));
        assert!(
            e.to_string().contains("set by the deliverable's overrides"),
            "{e}"
        );

        let e = lib
            .resolve("web/h264-1080p", &table("video.colour = 1"))
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("video.colour"), "{e}");
        assert!(e.to_string().contains("one of `codec`"), "{e}");
        assert!(
            e.to_string().contains("set by the deliverable's overrides"),
            "{e}"
        );

        let req = DeliverableRequest {
            preset: "web/h264-1080p".into(),
            name: "web".into(),
            overrides: table("video.width = 1000\nvideo.height = 7"),
            line: 42,
        };
        let e = lib
            .resolve_request(&req, Path::new("incoming/a.toml"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "incoming/a.toml:42: field `overrides.video.height`: value 7 is out of range (in the \
             overrides of deliverable \"web\", preset web/h264-1080p) (expected an even integer \
             from 16 to 8192)"
        );
        let req = DeliverableRequest {
            preset: "x".into(),
            ..req
        };
        let e = lib
            .resolve_request(&req, Path::new("incoming/a.toml"))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("incoming/a.toml:42: field `preset`: value \"x\""),
            "{e}"
        );
    }

    fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    const BUILTIN_1080P: &str = include_str!("../../presets/web/h264-1080p.toml");

    #[test]
    fn directories_add_and_replace_presets() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "web/h264-1080p.toml",
            &BUILTIN_1080P.replace("crf = 20", "crf = 23"),
        );
        write(
            dir.path(),
            "master/h264-hq.toml",
            &BUILTIN_1080P
                .replace("container = \"mp4\"", "container = \"mov\"")
                .replace("extension = \"mp4\"", "extension = \"mov\""),
        );
        write(dir.path(), "notes.txt", "not a preset");
        let lib = PresetLibrary::load(&[dir.path().to_path_buf()]).unwrap();
        let builtin = PresetLibrary::builtin().ids();
        // One added, one replaced, none lost.
        assert_eq!(lib.ids().len(), builtin.len() + 1);
        assert!(lib.ids().contains(&"master/h264-hq".to_owned()));
        assert!(builtin.iter().all(|id| lib.ids().contains(id)));
        let p = lib.resolve("web/h264-1080p", &toml::Table::new()).unwrap();
        assert_eq!(p.video.options["crf"].as_integer(), Some(23));
        assert_eq!(p.file, dir.path().join("web/h264-1080p.toml"));
        assert_eq!(
            lib.resolve("master/h264-hq", &toml::Table::new())
                .unwrap()
                .container,
            "mov"
        );
    }

    #[test]
    fn bad_preset_files_name_file_line_column_field_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "web/bad.toml",
            &BUILTIN_1080P.replace("pix_fmt = \"yuv420p\"", "pix_fmt = \"rgb24\""),
        );
        let e = PresetLibrary::load(&[dir.path().to_path_buf()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:14:11: field `video.pix_fmt`: value \"rgb24\" is not a supported pixel format \
                 (expected one of \"yuv420p\", \"yuv422p\", \"yuv444p\", \"yuv420p10le\", \
                 \"yuv422p10le\", \"yuv444p10le\", \"yuva444p10le\")",
                path.display()
            )
        );

        // Unknown field, in a file.
        std::fs::write(&path, BUILTIN_1080P.replace("[qc]", "[qc]\nmin_vmaf = 90")).unwrap();
        let e = PresetLibrary::load(&[dir.path().to_path_buf()]).unwrap_err();
        let text = e.to_string();
        assert_eq!((e.line, e.column), (Some(44), Some(1)), "{text}");
        assert_eq!(e.field.as_deref(), Some("qc.min_vmaf"), "{text}");
        assert!(text.contains("unknown field `min_vmaf`"), "{text}");
        assert!(
            text.contains("one of audio, black, flash, freeze, legal_range, max_delta_e_mean"),
            "{text}"
        );

        // Syntax error.
        std::fs::write(&path, BUILTIN_1080P.replace("crf = 20", "crf = = 20")).unwrap();
        let e = PresetLibrary::load(&[dir.path().to_path_buf()]).unwrap_err();
        assert_eq!((e.line, e.column), (Some(26), Some(7)), "{e}");
        assert_eq!(e.field.as_deref(), Some("video.options.crf"), "{e}");

        // Missing field, pointing at its table.
        std::fs::write(&path, BUILTIN_1080P.replace("tolerance_lu = 0.5", "")).unwrap();
        let e = PresetLibrary::load(&[dir.path().to_path_buf()]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("loudness.tolerance_lu"), "{e}");
        assert_eq!(e.line, Some(36), "{e}"); // [loudness]

        // Bad id.
        std::fs::remove_file(&path).unwrap();
        write(dir.path(), "Web/Big One.toml", BUILTIN_1080P);
        let e = PresetLibrary::load(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"Web/Big One\" is not a usable preset id"),
            "{e}"
        );
    }

    fn lib_with(files: &[(&str, &str)]) -> (tempfile::TempDir, PresetLibrary, Vec<InputError>) {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            write(dir.path(), rel, text);
        }
        let (lib, errors) = PresetLibrary::read(&[dir.path().to_path_buf()]);
        (dir, lib, errors)
    }

    #[test]
    fn extends_merges_tables_deeply_through_a_chain() {
        let (_dir, lib, errors) = lib_with(&[
            (
                "web/base.toml",
                &BUILTIN_1080P.replace(
                    "faststart = true",
                    "faststart = true\nbrands = [\"isom\", \"avc1\"]",
                ),
            ),
            (
                "web/mid.toml",
                "extends = \"web/base\"\n[video]\nwidth = 1280\nheight = 720\n\
                 [video.options]\ncrf = 23\n[container_options]\nbrands = [\"mp42\"]\n",
            ),
            // Read before its parent: resolved once every file is in.
            (
                "web/a-leaf.toml",
                "extends = \"web/mid\"\ncontainer = \"mov\"\nextension = \"mov\"\n\
                 [video.options]\npreset = \"slow\"\n",
            ),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        let p = lib.resolve("web/a-leaf", &toml::Table::new()).unwrap();
        assert_eq!((p.container.as_str(), p.extension.as_str()), ("mov", "mov"));
        assert_eq!((p.video.width, p.video.height), (Some(1280), Some(720)));
        // Tables merge key by key, the nearest preset winning...
        assert_eq!(
            p.video.options,
            table("crf = 23\npreset = \"slow\"\nprofile = \"high\"")
        );
        // ...and arrays replace.
        assert_eq!(
            p.container_options,
            table("faststart = true\nbrands = [\"mp42\"]")
        );
        assert_eq!(p.qc.min_psnr_y, 35.0);
        assert_eq!(p.file, _dir.path().join("web/a-leaf.toml"));
        let chain: Vec<&str> = lib
            .chain("web/a-leaf")
            .unwrap()
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(chain, ["web/a-leaf", "web/mid", "web/base"]);
        assert!(!lib.merged("web/a-leaf").unwrap().contains_key("extends"));
        // Overrides still go over the whole chain.
        let p = lib
            .resolve("web/a-leaf", &table("video.options.crf = 18"))
            .unwrap();
        assert_eq!(p.video.options["crf"].as_integer(), Some(18));
    }

    #[test]
    fn cycles_and_unknown_parents_point_at_extends() {
        let (dir, lib, _) = lib_with(&[
            ("web/a.toml", "# a\nextends = \"web/b\"\n"),
            ("web/b.toml", "extends = \"web/c\"\n"),
            ("web/c.toml", "extends = \"web/a\"\n"),
            (
                "web/orphan.toml",
                "description = \"x\"\n  extends = \"web/nope\"\n",
            ),
            ("web/num.toml", "extends = 3\n"),
        ]);
        let e = lib.resolve("web/a", &toml::Table::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:1:11: field `extends`: value \"web/a\" makes a cycle: web/a extends web/b \
                 extends web/c extends web/a (expected a chain of presets that ends in one \
                 without `extends`)",
                dir.path().join("web/c.toml").display()
            )
        );
        let e = lib.resolve("web/orphan", &toml::Table::new()).unwrap_err();
        assert_eq!(e.file, dir.path().join("web/orphan.toml"));
        assert_eq!((e.line, e.column), (Some(2), Some(13)), "{e}");
        assert_eq!(e.field.as_deref(), Some("extends"));
        assert!(
            e.to_string()
                .contains("value \"web/nope\" is not a known preset"),
            "{e}"
        );
        assert!(e.expected.unwrap().contains("web/h264-1080p"));
        let e = lib.resolve("web/num", &toml::Table::new()).unwrap_err();
        assert_eq!((e.field.as_deref(), e.line), (Some("extends"), Some(1)));
        assert!(e.to_string().contains("value 3 is not a preset id"), "{e}");
        // load() stops at them.
        assert!(PresetLibrary::load(&[dir.path().to_path_buf()]).is_err());
    }

    #[test]
    fn a_replaced_builtin_is_what_its_children_extend() {
        // A user file that extends its own id changes one key of the
        // built-in; the built-in presets that extend it see the change.
        let (dir, lib, errors) = lib_with(&[(
            "web/h264-720p.toml",
            "extends = \"web/h264-720p\"\n[video.options]\ncrf = 26\n",
        )]);
        assert!(errors.is_empty(), "{errors:?}");
        let p = lib.resolve("web/h264-720p", &toml::Table::new()).unwrap();
        assert_eq!(p.video.options["crf"].as_integer(), Some(26));
        assert_eq!(p.video.options["preset"].as_str(), Some("fast"));
        assert_eq!(p.file, dir.path().join("web/h264-720p.toml"));
        assert_eq!(
            lib.replaced("web/h264-720p"),
            [Path::new("builtin:web/h264-720p.toml")]
        );
        let p = lib
            .resolve("web/h264-720p-streaming", &toml::Table::new())
            .unwrap();
        assert_eq!(p.video.options["crf"].as_integer(), Some(26));
        assert_eq!(p.loudness.target_lufs, -16.0);
        // A file that extends its own id but replaces nothing.
        let (_d, lib, _) = lib_with(&[("web/new.toml", "extends = \"web/new\"\n")]);
        let e = lib.resolve("web/new", &toml::Table::new()).unwrap_err();
        assert!(e.to_string().contains("own id"), "{e}");
    }

    #[test]
    fn a_childs_loudness_profile_wins_over_its_parents_values() {
        let lib = PresetLibrary::builtin();
        // web/h264-1080p writes -23 LUFS out; its streaming child names a
        // profile.
        let p = lib
            .resolve("web/h264-1080p-streaming", &toml::Table::new())
            .unwrap();
        assert_eq!(
            (
                p.loudness.target_lufs,
                p.loudness.tolerance_lu,
                p.loudness.allow_limiter
            ),
            (-16.0, 1.0, true)
        );
        assert_eq!((p.video.width, p.container.as_str()), (Some(1920), "mp4"));
        assert_eq!(
            lib.merged("web/h264-1080p-streaming").unwrap()["loudness"]["target_lufs"].as_float(),
            Some(-16.0)
        );
    }

    #[test]
    fn errors_in_inherited_values_name_both_files() {
        // The child makes the parent's fourcc wrong: the fourcc is written
        // in the parent, which is where the line and column are.
        let (dir, lib, _) = lib_with(&[
            ("web/base.toml", BUILTIN_1080P),
            (
                "master/child.toml",
                "extends = \"web/base\"\ncontainer = \"mxf\"\nextension = \"mxf\"\n",
            ),
        ]);
        let e = lib
            .resolve("master/child", &toml::Table::new())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:17:10: field `video.fourcc`: value \"avc1\" cannot be set in a mxf file \
                 (inherited through `extends` by preset master/child, {}) (expected no fourcc, \
                 or a container of \"mov\" or \"mp4\" (where sample entries have one))",
                dir.path().join("web/base.toml").display(),
                dir.path().join("master/child.toml").display()
            )
        );
        // An unknown key in the parent, reached through the child.
        let (dir, lib, _) = lib_with(&[
            (
                "web/base.toml",
                &BUILTIN_1080P.replace("[qc]", "[qc]\nmin_vmaf = 90"),
            ),
            ("web/child.toml", "extends = \"web/base\"\n"),
        ]);
        let e = lib.resolve("web/child", &toml::Table::new()).unwrap_err();
        assert_eq!(e.file, dir.path().join("web/base.toml"));
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(44), Some("qc.min_vmaf"))
        );
        assert!(e.to_string().contains("by preset web/child"), "{e}");
        // A value the child writes is the child's.
        let (dir, lib, _) = lib_with(&[
            ("web/base.toml", BUILTIN_1080P),
            (
                "web/child.toml",
                "extends = \"web/base\"\n\n[video]\nwidth = 1001\n",
            ),
        ]);
        let e = lib.resolve("web/child", &toml::Table::new()).unwrap_err();
        assert_eq!(e.file, dir.path().join("web/child.toml"));
        assert_eq!((e.line, e.column), (Some(4), Some(9)), "{e}");
        assert!(!e.to_string().contains("inherited"), "{e}");
    }

    #[test]
    fn a_new_preset_extends_its_parent_and_guides_the_rest() {
        let lib = PresetLibrary::builtin();
        let text = lib
            .new_preset("web/promo", "web/h264-720p-streaming")
            .unwrap();
        assert!(
            text.contains("\nextends = \"web/h264-720p-streaming\"\n"),
            "{text}"
        );
        assert!(text.contains("# crf = 20\n"), "{text}");
        assert!(text.contains("# target_lufs = -16.0\n"), "{text}");
        assert!(text.contains("# width = 1280\n"), "{text}");
        // Writing a guided key in its table changes just that.
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "web/promo.toml",
            &format!("{text}\n[video.options]\ncrf = 28\n"),
        );
        let lib = PresetLibrary::load(&[dir.path().to_path_buf()]).unwrap();
        let p = lib.resolve("web/promo", &toml::Table::new()).unwrap();
        assert_eq!(p.video.options["crf"].as_integer(), Some(28));
        assert_eq!(p.loudness.target_lufs, -16.0);
        assert!(lib.new_preset("Web/X", "web/h264-720p").is_err());
        assert!(lib.new_preset("loudness/x", "web/h264-720p").is_err());
        assert!(lib.new_preset("web/x", "web/nope").is_err());
    }
}
