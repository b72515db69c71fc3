//! Composition manifests: TOML files dropped by editors, read in two phases.
//! [`raw`] holds serde types that keep every value's position; [`validate`]
//! checks them and builds the [`model`] types, which are all the rest of the
//! pipeline ever sees. Every refusal is an [`InputError`] naming the file,
//! line, column, field, bad value and what would be accepted.
//!
//! ```
//! use std::path::Path;
//! use deliver::manifest::{parse, LoadContext, VideoSource};
//!
//! let src = r#"
//! version = 1
//! [canvas]
//! width = 1920
//! height = 1080
//! frame_rate = "25"
//! duration = "10s"
//! colour_space = "bt709"
//!
//! [[video]]
//! [[video.clip]]
//! generator = "bars"
//!
//! [[deliverable]]
//! preset = "web/h264-1080p"
//! "#;
//! let m = parse(src.as_bytes(), Path::new("promo.toml"), &LoadContext::default()).unwrap();
//! assert_eq!(m.name, "promo");
//! assert_eq!(m.canvas.frames, 250);
//! assert_eq!(m.video[0].clips[0].source, VideoSource::Bars);
//! assert_eq!(m.video[0].clips[0].frames, 250); // a generator runs to the end by default
//! assert_eq!(m.deliverables[0].name, "web_h264-1080p");
//!
//! let bad = src.replace("\"25\"", "29.97");
//! let err = parse(bad.as_bytes(), Path::new("promo.toml"), &LoadContext::default()).unwrap_err();
//! assert_eq!(err.to_string(), "promo.toml:6:14: field `canvas.frame_rate`: value 29.97 is a \
//!     decimal frame rate, which is not exact; write \"30000/1001\" instead (expected a frame \
//!     rate from 1 to 240 fps written as an integer (25), \"25\", \"25/1\" or \"30000/1001\")");
//! ```
//!
//! # Manifest v1
//!
//! ```toml
//! version = 1                 # required, must be 1
//! name = "promo"              # optional, default: the file stem
//! priority = 50               # optional, 0 to 100, default 50. A watch host starts the
//!                             #   queued manifests of a root highest priority first (after
//!                             #   the roots' own priorities, see `watch_config`)
//! timeline = "cut.otio"       # optional: an OpenTimelineIO timeline (inside the media roots)
//!                             #   supplies the canvas and tracks; then no [canvas], [[video]]
//!                             #   or [[audio]] here. See [`otio`].
//!
//! [canvas]
//! width = 1920                # required, even, 16 to 8192
//! height = 1080               # required, even, 16 to 8192
//! frame_rate = "30000/1001"   # required: 25, "25", "25/1", "30000/1001"; 1 to 240 fps.
//!                             # Decimals (29.97) are refused with the fraction to write.
//! duration = "30s"            # required: a time (below), one frame to 24 hours
//! colour_space = "bt709"      # required: "bt709" or "bt2020", the working primaries
//!                             #   (both SDR, BT.709 transfer)
//! background = "#000000"      # optional "#rrggbb" or "#rrggbbaa", default opaque black
//! sample_rate = 48000         # optional, 8000 to 192000, default 48000
//! channels = 2                # optional, 1 (mono), 2 (stereo) or 6 (5.1: L R C LFE Ls Rs),
//!                             #   default 2
//! layout = "stereo"           # optional, "mono", "stereo" or "5.1": the same as channels
//!                             #   (when both are given they must agree)
//!
//! [[video]]                   # a track; later tracks are composited above earlier ones
//! name = "V1"                 # optional, default V1, V2, …
//!
//! [[video.clip]]
//! generator = "solid"         # exactly one of generator = "bars" | "solid" | "pattern" |
//! color = "#ff0000"           #   "title", media = "path" or still = "path" (color: the
//! duration = "5s"             #   solid's colour, required; also a title's)
//!                             #   generators and stills run to the end of the canvas
//!                             #   by default
//!
//! [[video.clip]]
//! media = "clips/a.mov"       # or media = a file, relative to the base directory, that must
//!                             #   lie inside the media roots
//! start = "4s"                # timeline position; default: where the previous clip in the
//!                             #   file ends (0 for the first)
//! in = "2s"                   # source in-point, media only, default 0
//! out = "7s"                  # source out-point (length = (out - in) / speed), or
//!                             #   duration = "5s"; media clips need exactly one of them
//! speed = 1.0                 # media only, 0.01 to 100: source seconds per timeline second
//!                             #   (0.5 = slow motion); any source frame rate is conformed by
//!                             #   showing the frame on screen at each canvas frame's time
//! fit = "none"                # "none" (native pixels at the top-left, default), "fit"
//!                             #   (inside the canvas), "fill" (covering it), "stretch";
//!                             #   fit/fill are centred
//! opacity = 1.0               # 0 to 1, default 1                      (keyframable)
//! position = [0, 0]           # offset of the clip's top-left in canvas pixels after fit
//!                             #   and scale, |v| <= 100000             (keyframable)
//! scale = 1.0                 # uniform, about the top-left, above 0, at most 16
//!                             #                                        (keyframable)
//! rotation = 0.0              # degrees clockwise about the centre of the scaled clip,
//!                             #   |v| <= 36000                         (keyframable)
//! crop = [0, 0, 0, 0]         # source pixels cut from the left, top, right, bottom edges,
//!                             #   0 to 100000                          (keyframable)
//! blend = "normal"            # "normal" | "add" | "multiply" | "screen" (on linear light)
//! transition_in = { kind = "dissolve", duration = "1s" }
//!                             # kind "dissolve", "dip" (color = "#000000" by default: out
//!                             #   to the colour and in from it) or "wipe" (angle = 0: the
//!                             #   edge moves left to right, 90 top to bottom; softness = 0
//!                             #   to 1, the edge's width as a fraction of the wipe). The
//!                             #   clip before it on the track must end exactly `duration`
//!                             #   after this clip starts
//! [video.clip.colour]         # optional colour operations (or colour = { … } inline), in
//! exposure = 0.0              #   this order: exposure in stops (-16 to 16) on linear light;
//! lift = [0.0, 0.0, 0.0]      #   then on values encoded with the canvas transfer: lift
//! gamma = [1.0, 1.0, 1.0]     #   (-1 to 1), gamma (0.1 to 10), gain (0 to 16) per R, G, B:
//! gain = [1.0, 1.0, 1.0]      #   gain·(x + lift·(1 − x)), then ^(1/gamma); saturation
//! saturation = 1.0            #   (0 to 4, BT.709 luma weights); a 3D LUT (.cube, inside
//! lut = "grades/look.cube"    #   the media roots, tetrahedral)
//!
//! [[video.clip]]
//! generator = "title"         # text over transparency, canvas sized
//! text = "Line one\nLine two"  # required; \n starts a new line
//! font = "fonts/Brand.ttf"    # optional TTF/OTF inside the media roots, default DejaVu Sans
//! size = 64                   # em size in canvas pixels, 1 to 2000, default 64
//! color = "#ffffff"           # default opaque white (canvas encoded)
//! at = [96, 800]              # top-left of the first line in canvas pixels, default [0, 0]
//! opacity = [{ at = "0s", value = 0.0 }, { at = "1s", value = 1.0, interp = "ease" }]
//!                             # keyframes: `at` from the clip's start (a time, increasing),
//!                             #   `value` shaped like the constant ([x, y] for position,
//!                             #   [l, t, r, b] for crop), `interp` how the value arrives at
//!                             #   this key from the one before: "linear" (default), "ease"
//!                             #   (smooth start and end), "hold" (the previous value until
//!                             #   this key); not on the first key. Before the first key its
//!                             #   value holds, after the last the last
//!
//! [[video.clip]]
//! still = "stills/logo.png"   # a PNG or JPEG (taken as sRGB), inside the media roots
//! fit = "fit"
//!
//! [[audio]]                   # optional; tracks are mixed
//! name = "A1"                 # optional, default A1, A2, …
//! gain_db = 0.0               # -96 to 24, default 0
//!
//! [[audio.clip]]
//! generator = "sine"          # or media = "path" (same rules as video)
//! frequency = 1000.0          # sine only, 1 Hz to half the sample rate, default 1000
//! level = -20.0               # sine only, peak dBFS, -120 to 0, default -20
//! duration = "10s"            # start / in / duration / out as for video
//! gain_db = 0.0               # -96 to 24, default 0
//! fade_in = "1s"              # optional times, default 0: linear fades from silence at the
//! fade_out = "12f"            #   clip's first sample and to silence at its last; together
//!                             #   at most the clip's length
//! pan = 0.0                   # -1 (left) to 1 (right), default 0. Mono sources pan with a
//!                             #   constant-power law (-3 dB each side at 0) into the front
//!                             #   L/R; stereo and 5.1 sources (and the sine generator, the
//!                             #   same tone in L and R) are balanced: the far side is
//!                             #   turned down, the near side kept. Refused on a mono canvas.
//!
//! [[deliverable]]             # at least one, unless the watch root has default presets:
//!                             #   then none delivers one per default preset, named after
//!                             #   the preset id's last component (h264-1080p)
//! preset = "web/h264-1080p"   # required, a preset id: [a-z0-9_-] segments separated by /
//! name = "web"                # optional, default the preset id with / replaced by _;
//!                             #   A-Z a-z 0-9 _ -, unique (ignoring case)
//! [deliverable.overrides]     # optional, merged over the preset before it is validated
//! video.options.crf = 18
//! ```
//!
//! Times are `"5s"`, `"2.5s"`, `"500ms"`, `"125f"` (frames), `"HH:MM:SS:FF"`
//! (non-drop timecode at the canvas rate) or a bare integer (frames); they are
//! converted to frames at the canvas rate, rounded to the nearest frame with
//! halves rounded up (see [`time`]).
//!
//! Clips may not run past the end of the canvas. On one track, a clip may
//! only overlap the clip before it through its `transition_in`, which must
//! span the overlap exactly. Clips are sorted by start.

pub mod error;
pub mod model;
pub mod otio;
pub mod raw;
pub mod time;
pub mod validate;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use error::{line_col, InputError};
pub use model::*;

/// Where and how a manifest is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadContext {
    /// Media files must lie inside one of these (after resolving symlinks).
    /// Empty: the base directory is the only root.
    pub media_roots: Vec<PathBuf>,
    /// Where relative media paths resolve; `None`: the manifest's directory.
    pub base_dir: Option<PathBuf>,
    /// Larger manifests are refused unread.
    pub max_bytes: u64,
    /// Preset ids delivered when the manifest names no `[[deliverable]]`
    /// (a watch root's `presets`): one deliverable per preset, named after
    /// the id's last component. Empty: a manifest must name deliverables.
    pub default_presets: Vec<String>,
    /// Reads a medium's picture size, for an OTIO timeline that names no
    /// canvas size (its first video clip's size is used); `None`: such a
    /// timeline gets [`otio::DEFAULT_SIZE`].
    pub probe: Option<MediaProbe>,
}

/// A medium's picture size (width, height), read by the host's decoder
/// plugins; `None` when the file cannot be read.
#[derive(Clone)]
pub struct MediaProbe(pub std::sync::Arc<ProbeFn>);

/// What a [`MediaProbe`] calls.
pub type ProbeFn = dyn Fn(&Path) -> Option<(u32, u32)> + Send + Sync;

impl std::fmt::Debug for MediaProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaProbe")
    }
}

impl PartialEq for MediaProbe {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MediaProbe {}

/// 1 MiB: a manifest is a page of text; anything near this size is a mistake
/// or an attack.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024;

impl Default for LoadContext {
    fn default() -> Self {
        Self {
            media_roots: Vec::new(),
            base_dir: None,
            max_bytes: DEFAULT_MAX_BYTES,
            default_presets: Vec::new(),
            probe: None,
        }
    }
}

/// The manifest priority a scheduler queues a manifest with, read before
/// the manifest is validated (a job is queued before it is loaded):
/// `priority` when it is an integer in range, else the default. A manifest
/// with a bad priority is refused when it is loaded.
pub fn peek_priority(src: &[u8]) -> u8 {
    // An OTIO timeline is a JSON object; a TOML manifest cannot start with `{`.
    if src.trim_ascii_start().starts_with(b"{") {
        return otio::peek_priority(src);
    }
    #[derive(serde::Deserialize)]
    struct Peek {
        priority: Option<i64>,
    }
    std::str::from_utf8(src)
        .ok()
        .and_then(|text| toml::from_str::<Peek>(text).ok())
        .and_then(|p| p.priority)
        .and_then(|p| u8::try_from(p).ok())
        .filter(|p| *p <= validate::MAX_PRIORITY)
        .unwrap_or(validate::DEFAULT_PRIORITY)
}

/// Whether `path` names an OpenTimelineIO timeline (`.otio`), read by
/// [`otio`] rather than as a TOML manifest.
pub fn is_otio(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("otio"))
}

/// Reads and validates the manifest at `path`, reading at most
/// `ctx.max_bytes + 1` bytes.
///
/// # Errors
///
/// An [`InputError`] when the file cannot be read, is too large, is not
/// UTF-8, is not TOML, or breaks a rule of manifest v1.
pub fn load(path: &Path, ctx: &LoadContext) -> Result<Manifest, InputError> {
    let file = std::fs::File::open(path)
        .map_err(|e| InputError::new(path, format!("cannot open the manifest: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| InputError::new(path, format!("cannot read the manifest: {e}")))?;
    if !meta.is_file() {
        return Err(InputError::new(path, "is not a regular file").expected("a TOML manifest file"));
    }
    let mut buf = Vec::new();
    file.take(ctx.max_bytes.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| InputError::new(path, format!("cannot read the manifest: {e}")))?;
    if buf.len() as u64 > ctx.max_bytes {
        let size = Some(meta.len()).filter(|&n| n > ctx.max_bytes);
        return Err(too_large(path, size, ctx.max_bytes));
    }
    parse(&buf, path, ctx)
}

/// Validates manifest bytes read from `path` (used for messages, the default
/// name and, unless `ctx.base_dir` is set, resolving media paths).
///
/// # Errors
///
/// As [`load`].
pub fn parse(src: &[u8], path: &Path, ctx: &LoadContext) -> Result<Manifest, InputError> {
    if is_otio(path) {
        return otio::parse(src, path, ctx);
    }
    if src.len() as u64 > ctx.max_bytes {
        return Err(too_large(path, Some(src.len() as u64), ctx.max_bytes));
    }
    let text = std::str::from_utf8(src).map_err(|e| not_utf8(path, src, &e))?;
    if text.trim().is_empty() {
        return Err(validate::empty_manifest(path));
    }
    let raw: raw::RawManifest =
        toml::from_str(text).map_err(|e| error::from_toml_error(path, text, &e))?;
    validate::validate(raw, text, path, ctx)
}

fn too_large(path: &Path, size: Option<u64>, max: u64) -> InputError {
    let (message, value) = match size {
        Some(n) => (
            format!("the manifest is {n} bytes, more than the limit of {max} bytes"),
            format!("{n} bytes"),
        ),
        None => (
            format!("the manifest is more than the limit of {max} bytes"),
            format!("more than {max} bytes"),
        ),
    };
    InputError::new(path, message)
        .value(value)
        .expected(format!("a manifest of at most {max} bytes"))
}

fn not_utf8(path: &Path, src: &[u8], e: &std::str::Utf8Error) -> InputError {
    let at = e.valid_up_to();
    let valid = std::str::from_utf8(&src[..at]).unwrap_or("");
    let len = e.error_len().unwrap_or(src.len() - at).clamp(1, 4);
    let bytes = src[at..(at + len).min(src.len())]
        .iter()
        .map(|b| format!("0x{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    InputError::new(
        path,
        format!("bytes {bytes} at byte offset {at} are not valid UTF-8"),
    )
    .at_byte(valid, at)
    .value(bytes)
    .expected("UTF-8 text (save the manifest as UTF-8)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const GOOD: &str = r#"version = 1
[canvas]
width = 1920
height = 1080
frame_rate = "25"
duration = "10s"
colour_space = "bt709"

[[video]]
[[video.clip]]
generator = "bars"
duration = "4s"
[[video.clip]]
generator = "pattern"

[[deliverable]]
preset = "web/h264-1080p"
"#;

    fn parse_str(src: &str) -> Result<Manifest, InputError> {
        parse(
            src.as_bytes(),
            Path::new("incoming/a.toml"),
            &LoadContext::default(),
        )
    }

    fn err(src: &str) -> InputError {
        match parse_str(src) {
            Ok(m) => panic!("accepted: {m:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the error names the position, the field and (when given) the
    /// value, and that all of them appear in the message a user reads.
    #[track_caller]
    fn check(e: &InputError, line: usize, column: usize, field: &str, value: Option<&str>) {
        let text = e.to_string();
        assert_eq!((e.line, e.column), (Some(line), Some(column)), "{text}");
        assert_eq!(e.field.as_deref(), Some(field), "{text}");
        assert!(
            text.starts_with(&format!(
                "incoming/a.toml:{line}:{column}: field `{field}`: "
            )),
            "{text}"
        );
        if let Some(value) = value {
            assert_eq!(e.value.as_deref(), Some(value), "{text}");
            assert!(text.contains(value), "{text}");
        }
        assert!(e.expected.is_some(), "no accepted values in: {text}");
        assert!(text.contains("(expected "), "{text}");
    }

    #[test]
    fn good_manifest_parses() {
        let m = parse_str(GOOD).unwrap();
        assert_eq!(m.path, Path::new("incoming/a.toml"));
        assert_eq!(m.name, "a");
        assert_eq!(m.priority, 50);
        assert_eq!(m.canvas.frames, 250);
        let clips = &m.video[0].clips;
        assert_eq!((clips[0].start, clips[0].frames), (0, 100));
        assert_eq!((clips[1].start, clips[1].frames), (100, 150));
        assert_eq!(m.video[0].name, "V1");
    }

    #[test]
    fn syntax_error() {
        let e = err(&GOOD.replace("width = 1920", "width = = 1920"));
        check(&e, 3, 9, "canvas.width", Some("="));
        assert!(
            e.to_string().contains("extra `=` (expected nothing)"),
            "{e}"
        );

        let e = err(&GOOD.replace("\"4s\"", "4s"));
        check(&e, 12, 12, "video[0].clip[0].duration", Some("4s"));
        assert!(e.to_string().contains("must be quoted"), "{e}");

        let e = err(&GOOD.replace("[canvas]", "[canvas"));
        assert_eq!(
            (e.line, e.column, e.field.as_deref()),
            (Some(2), Some(8), None),
            "{e}"
        );
        assert!(
            e.to_string().contains("unclosed table (expected `]`)"),
            "{e}"
        );

        let e = err(&GOOD.replace("width = 1920", "width = 1920\nwidth = 1"));
        check(&e, 4, 1, "canvas.width", Some("width"));
        assert!(e.to_string().contains("duplicate key `width`"), "{e}");
    }

    #[test]
    fn unknown_field() {
        let e = err(&GOOD.replace(
            "generator = \"pattern\"",
            "generator = \"pattern\"\nopacty = 1",
        ));
        check(&e, 15, 1, "video[0].clip[1].opacty", None);
        let text = e.to_string();
        assert!(text.contains("unknown field `opacty`"), "{text}");
        assert!(
            text.contains("`opacity`") && text.contains("`transition_in`"),
            "{text}"
        );

        let e = err(&GOOD.replace("[canvas]", "[canvas]\nfps = 25"));
        check(&e, 3, 1, "canvas.fps", None);
        assert!(e
            .to_string()
            .contains("one of `width`, `height`, `frame_rate`"));

        let e = err(&GOOD.replace("version = 1", "version = 1\n[[deliverables]]"));
        check(&e, 2, 3, "deliverables", None);
    }

    #[test]
    fn wrong_type() {
        let e = err(&GOOD.replace("width = 1920", "width = \"1920\""));
        check(&e, 3, 9, "canvas.width", Some("\"1920\""));
        assert!(
            e.to_string().contains("has the wrong type (a string)"),
            "{e}"
        );
        assert_eq!(e.expected.as_deref(), Some("an integer"));

        let e = err(&GOOD.replace("duration = \"4s\"", "duration = true"));
        check(&e, 12, 12, "video[0].clip[0].duration", Some("true"));
        assert!(e.to_string().contains("\"500ms\""), "{e}");
    }

    #[test]
    fn out_of_range_value() {
        let e = err(&GOOD.replace(
            "generator = \"pattern\"",
            "generator = \"pattern\"\nopacity = 1.5",
        ));
        check(&e, 15, 11, "video[0].clip[1].opacity", Some("1.5"));
        assert_eq!(
            e.to_string(),
            "incoming/a.toml:15:11: field `video[0].clip[1].opacity`: value 1.5 is out of range \
             (expected a number from 0 to 1)"
        );

        let e = err(&GOOD.replace("width = 1920", "width = 1921"));
        check(&e, 3, 9, "canvas.width", Some("1921"));
        assert!(e.to_string().contains("is odd"), "{e}");

        let e = err(&GOOD
            .replace("priority", "x")
            .replace("version = 1", "version = 1\npriority = 101"));
        check(&e, 2, 12, "priority", Some("101"));

        let e = err(&GOOD.replace("version = 1", "version = 2"));
        check(&e, 1, 11, "version", Some("2"));
    }

    #[test]
    fn bad_frame_rate() {
        let e = err(&GOOD.replace("\"25\"", "29.97"));
        check(&e, 5, 14, "canvas.frame_rate", Some("29.97"));
        assert!(e.to_string().contains("write \"30000/1001\""), "{e}");

        let e = err(&GOOD.replace("\"25\"", "\"23.976\""));
        check(&e, 5, 14, "canvas.frame_rate", Some("\"23.976\""));
        assert!(e.to_string().contains("\"24000/1001\""), "{e}");

        let e = err(&GOOD.replace("\"25\"", "\"300\""));
        check(&e, 5, 14, "canvas.frame_rate", Some("\"300\""));
        assert!(e.to_string().contains("1 to 240"), "{e}");
    }

    #[test]
    fn bad_times() {
        let e = err(&GOOD.replace("\"4s\"", "\"4 sec\""));
        check(&e, 12, 12, "video[0].clip[0].duration", Some("\"4 sec\""));
        assert!(e.to_string().contains("unknown unit `sec`"), "{e}");

        let e = err(&GOOD.replace("\"4s\"", "2.5"));
        check(&e, 12, 12, "video[0].clip[0].duration", Some("2.5"));
        assert!(e.to_string().contains("\"2.5s\""), "{e}");

        let e = err(&GOOD.replace("duration = \"10s\"", "duration = \"25:00:00:00\""));
        check(&e, 6, 12, "canvas.duration", Some("\"25:00:00:00\""));
        assert!(e.to_string().contains("longer than 24 hours"), "{e}");

        // 4 s + 7 s of clip on a 10 s canvas.
        let e = err(&GOOD.replace(
            "generator = \"pattern\"",
            "generator = \"pattern\"\nduration = \"7s\"",
        ));
        check(&e, 15, 12, "video[0].clip[1].duration", Some("\"7s\""));
        assert!(e.to_string().contains("end at frame 275"), "{e}");
    }

    #[test]
    fn missing_fields_point_at_their_table() {
        let e = err(&GOOD.replace("height = 1080\n", ""));
        check(&e, 2, 1, "canvas.height", None);
        assert!(e.to_string().contains("required field is missing"), "{e}");

        let e = err(&GOOD.replace("generator = \"bars\"\n", ""));
        check(&e, 10, 1, "video[0].clip[0].generator", None);

        let e = err(&GOOD.replace("generator = \"bars\"", "generator = \"solid\""));
        check(&e, 10, 1, "video[0].clip[0].color", None);

        let e = err(&GOOD.replace("[[deliverable]]\npreset = \"web/h264-1080p\"\n", ""));
        check(&e, 1, 1, "deliverable", None);

        let e = err(&GOOD.replace("version = 1\n", ""));
        check(&e, 1, 1, "version", None);
    }

    #[test]
    fn bom_crlf_and_inline_tables() {
        let bom = format!("\u{feff}{GOOD}");
        assert!(parse_str(&bom).is_ok());
        let crlf = GOOD.replace('\n', "\r\n");
        assert!(parse_str(&crlf).is_ok());
        let e = err(&crlf.replace("width = 1920", "width = 7"));
        check(&e, 3, 9, "canvas.width", Some("7"));
        // A table written inline sits where it is written: here, in [canvas].
        let video = "[[video]]\n[[video.clip]]\ngenerator = \"bars\"\nduration = \"4s\"\n\
                     [[video.clip]]\ngenerator = \"pattern\"\n";
        let inline_video = "video = [{ clip = [{ generator = \"bars\" }, \
                            { generator = \"solid\", color = \"#12345\" }] }]\n";
        let e = err(&GOOD.replace(video, inline_video));
        check(&e, 9, 1, "canvas.video", None);
        // At the top, before [canvas], it is the track list.
        let inline = GOOD
            .replace(video, "")
            .replace("version = 1\n", &format!("version = 1\n{inline_video}"));
        let e = err(&inline);
        check(&e, 2, 75, "video[0].clip[1].color", Some("\"#12345\""));
        let e = err(&inline.replace("\"#12345\"", "\"#123456\", x = 1"));
        check(&e, 2, 86, "video[0].clip[1].x", None);
    }

    #[test]
    fn empty_file() {
        for src in ["", "  \n\t\n", "# only a comment\n"] {
            let e = err(src);
            let text = e.to_string();
            assert_eq!((e.line, e.column), (Some(1), Some(1)), "{text}");
            assert_eq!(e.field.as_deref(), Some("canvas"), "{text}");
            assert!(
                text.starts_with("incoming/a.toml:1:1: field `canvas`: empty manifest"),
                "{text}"
            );
            assert!(
                text.contains("required field `canvas` is missing"),
                "{text}"
            );
        }
    }

    #[test]
    fn non_utf8_bytes() {
        let mut bytes = GOOD.as_bytes().to_vec();
        let at = GOOD.find("bt709").unwrap();
        bytes[at + 2] = 0xff;
        let e = parse(
            &bytes,
            Path::new("incoming/a.toml"),
            &LoadContext::default(),
        )
        .unwrap_err();
        let text = e.to_string();
        assert_eq!((e.line, e.column), (Some(7), Some(19)), "{text}");
        assert_eq!(e.value.as_deref(), Some("0xff"), "{text}");
        assert!(
            text.starts_with("incoming/a.toml:7:19: bytes 0xff"),
            "{text}"
        );
        assert!(text.contains("not valid UTF-8"), "{text}");
    }

    #[test]
    fn too_large_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        let big = format!("{GOOD}\n# {}\n", "x".repeat(2000));
        fs::write(&path, &big).unwrap();
        let ctx = LoadContext {
            max_bytes: 1000,
            ..LoadContext::default()
        };
        let e = load(&path, &ctx).unwrap_err();
        let text = e.to_string();
        let size = big.len();
        assert!(text.contains(&format!("is {size} bytes")), "{text}");
        assert!(text.contains("limit of 1000 bytes"), "{text}");
        assert_eq!(e.value, Some(format!("{size} bytes")));
        let e = parse(big.as_bytes(), &path, &ctx).unwrap_err();
        assert!(e.to_string().contains(&format!("is {size} bytes")), "{e}");
        // Under the limit it loads.
        fs::write(&path, GOOD).unwrap();
        assert!(load(&path, &LoadContext::default()).is_ok());
    }

    /// A manifest at `dir/m.toml` using `media` for its second clip.
    fn with_media(media: &str) -> String {
        GOOD.replace(
            "generator = \"pattern\"",
            &format!("media = \"{media}\"\nduration = \"2s\""),
        )
    }

    #[test]
    fn missing_media() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        let e = parse(
            with_media("clips/nope.mov").as_bytes(),
            &path,
            &LoadContext::default(),
        )
        .unwrap_err();
        let text = e.to_string();
        assert_eq!((e.line, e.column), (Some(14), Some(9)), "{text}");
        assert_eq!(e.field.as_deref(), Some("video[0].clip[1].media"), "{text}");
        assert_eq!(e.value.as_deref(), Some("\"clips/nope.mov\""), "{text}");
        assert!(text.contains("does not exist"), "{text}");
        assert!(text.contains("inside the media roots"), "{text}");

        // A directory is not a media file.
        fs::create_dir(dir.path().join("clips")).unwrap();
        let e = parse(
            with_media("clips").as_bytes(),
            &path,
            &LoadContext::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("is not a regular file"), "{e}");
    }

    #[test]
    fn media_outside_the_roots() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("media");
        fs::create_dir_all(root.join("clips")).unwrap();
        fs::write(root.join("clips/a.mov"), b"x").unwrap();
        fs::write(outer.path().join("secret.mov"), b"x").unwrap();
        let path = root.join("m.toml");
        let ctx = LoadContext {
            media_roots: vec![root.clone()],
            ..LoadContext::default()
        };

        let m = parse(with_media("clips/a.mov").as_bytes(), &path, &ctx).unwrap();
        let expected = fs::canonicalize(root.join("clips/a.mov")).unwrap();
        assert_eq!(
            m.video[0].clips[1].source,
            VideoSource::Media { path: expected }
        );

        for escape in [
            "../secret.mov".to_owned(),
            "clips/../../secret.mov".to_owned(),
            outer.path().join("secret.mov").display().to_string(),
            // Missing files outside the roots get the same answer, so the
            // error does not reveal what exists there.
            "../missing.mov".to_owned(),
        ] {
            let e = parse(with_media(&escape).as_bytes(), &path, &ctx).unwrap_err();
            let text = e.to_string();
            assert_eq!((e.line, e.column), (Some(14), Some(9)), "{text}");
            assert_eq!(e.field.as_deref(), Some("video[0].clip[1].media"), "{text}");
            assert!(
                text.contains(&format!("value \"{escape}\" is outside the media roots")),
                "{text}"
            );
            assert!(text.contains(&root.display().to_string()), "{text}");
        }

        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outer.path().join("secret.mov"), root.join("link.mov"))
                .unwrap();
            let e = parse(with_media("link.mov").as_bytes(), &path, &ctx).unwrap_err();
            assert!(e.to_string().contains("outside the media roots"), "{e}");
        }

        // With no roots configured, the base directory is the root.
        let base_ctx = LoadContext {
            base_dir: Some(root.join("clips")),
            ..LoadContext::default()
        };
        assert!(parse(with_media("a.mov").as_bytes(), &path, &base_ctx).is_ok());
        let e = parse(with_media("../m.toml").as_bytes(), &path, &base_ctx).unwrap_err();
        assert!(e.to_string().contains("outside the media roots"), "{e}");
    }

    #[test]
    fn overlap_without_transition() {
        let src = GOOD.replace(
            "generator = \"pattern\"",
            "generator = \"pattern\"\nstart = \"3s\"\nduration = \"2s\"",
        );
        let e = err(&src);
        check(&e, 15, 9, "video[0].clip[1].start", Some("\"3s\""));
        let text = e.to_string();
        assert!(
            text.contains("overlaps clip[0] (frames 0..100) by 25 frames"),
            "{text}"
        );
        assert!(text.contains("duration = \"25f\""), "{text}");

        // The same overlap dissolved over exactly its length is fine.
        let ok = src.replace(
            "duration = \"2s\"",
            "duration = \"2s\"\ntransition_in = { kind = \"dissolve\", duration = \"1s\" }",
        );
        let m = parse_str(&ok).unwrap();
        assert_eq!(
            m.video[0].clips[1].transition_in,
            Some(Transition {
                kind: TransitionKind::Dissolve,
                frames: 25
            })
        );

        // A dissolve shorter than the overlap leaves part of it uncovered.
        let short = ok.replace("duration = \"1s\" }", "duration = \"10f\" }");
        let e = err(&short);
        check(
            &e,
            17,
            49,
            "video[0].clip[1].transition_in.duration",
            Some("\"10f\""),
        );
        assert!(
            e.to_string().contains("overlaps this clip by 25 frames"),
            "{e}"
        );

        // A dissolve longer than the previous clip's tail has nothing to dissolve from.
        let long = ok.replace("duration = \"1s\" }", "duration = \"40f\" }");
        let e = err(&long);
        check(
            &e,
            17,
            49,
            "video[0].clip[1].transition_in.duration",
            Some("\"40f\""),
        );
        assert!(e.to_string().contains("must cover frames 75..115"), "{e}");
    }

    #[test]
    fn deliverable_rules() {
        let twice = format!("{GOOD}[[deliverable]]\npreset = \"web/h264-1080p\"\n");
        let e = err(&twice);
        check(
            &e,
            19,
            10,
            "deliverable[1].preset",
            Some("\"web/h264-1080p\""),
        );
        assert!(e.to_string().contains("deliverable[0] already uses"), "{e}");
        let named =
            format!("{GOOD}[[deliverable]]\npreset = \"web/h264-1080p\"\nname = \"web2\"\n");
        let m = parse_str(&named).unwrap();
        assert_eq!(m.deliverables[1].name, "web2");
        assert_eq!(m.deliverables[1].line, 18);

        let e = err(&GOOD.replace("\"web/h264-1080p\"", "\"Web/../x\""));
        check(&e, 17, 10, "deliverable[0].preset", Some("\"Web/../x\""));
    }

    #[test]
    fn default_presets_stand_in_for_missing_deliverables() {
        let without = GOOD.replace("\n[[deliverable]]\npreset = \"web/h264-1080p\"\n", "\n");
        assert_ne!(without, GOOD);
        // No defaults: the manifest must name its deliverables.
        let e = err(&without);
        check(&e, 1, 1, "deliverable", None);
        assert!(
            e.to_string().contains("at least one [[deliverable]]"),
            "{e}"
        );

        let ctx = LoadContext {
            default_presets: vec!["web/h264-1080p".into(), "web/h264-720p".into()],
            ..LoadContext::default()
        };
        let path = Path::new("incoming/a.toml");
        let m = parse(without.as_bytes(), path, &ctx).unwrap();
        let got: Vec<_> = m
            .deliverables
            .iter()
            .map(|d| (d.preset.as_str(), d.name.as_str(), d.overrides.is_empty()))
            .collect();
        assert_eq!(
            got,
            [
                ("web/h264-1080p", "h264-1080p", true),
                ("web/h264-720p", "h264-720p", true)
            ]
        );
        // A manifest that names deliverables gets only those.
        let m = parse(GOOD.as_bytes(), path, &ctx).unwrap();
        assert_eq!(m.deliverables.len(), 1);
        assert_eq!(m.deliverables[0].name, "web_h264-1080p");

        // Two defaults whose names collide cannot both be delivered.
        let ctx = LoadContext {
            default_presets: vec!["web/h264-1080p".into(), "archive/h264-1080p".into()],
            ..LoadContext::default()
        };
        let e = parse(without.as_bytes(), path, &ctx).unwrap_err();
        check(&e, 1, 1, "deliverable", Some("\"archive/h264-1080p\""));
        assert!(
            e.to_string()
                .contains("gives the deliverable name \"h264-1080p\", as the default preset web/h264-1080p does"),
            "{e}"
        );
    }

    /// GOOD with `canvas` lines added to [canvas] (after line 7) and one
    /// 4 s sine clip whose extra fields `clip` start at line 23 (24 when
    /// `canvas` is one line).
    fn with_audio(canvas: &str, clip: &str) -> String {
        let src = GOOD.replace(
            "colour_space = \"bt709\"\n",
            &format!("colour_space = \"bt709\"\n{canvas}"),
        );
        format!(
            "{src}\n[[audio]]\n[[audio.clip]]\ngenerator = \"sine\"\nduration = \"4s\"\n{clip}\n"
        )
    }

    #[test]
    fn audio_fades_and_pan() {
        let m = parse_str(&with_audio(
            "",
            "fade_in = \"1s\"\nfade_out = \"12f\"\npan = -0.5",
        ))
        .unwrap();
        let c = &m.audio[0].clips[0];
        assert_eq!(
            (c.frames, c.fade_in, c.fade_out, c.pan),
            (100, 25, 12, -0.5)
        );
        // No fades, centre: the defaults.
        let m = parse_str(&with_audio("", "")).unwrap();
        let c = &m.audio[0].clips[0];
        assert_eq!((c.fade_in, c.fade_out, c.pan), (0, 0, 0.0));
        // Fades may meet, not overlap.
        parse_str(&with_audio("", "fade_in = \"2s\"\nfade_out = \"2s\"")).unwrap();
        let e = err(&with_audio("", "fade_in = \"3s\"\nfade_out = \"2s\""));
        check(&e, 24, 12, "audio[0].clip[0].fade_out", Some("\"2s\""));
        assert!(e.to_string().contains("at most 25 frames"), "{e}");
        let e = err(&with_audio("", "fade_in = \"5s\""));
        check(&e, 23, 11, "audio[0].clip[0].fade_in", Some("\"5s\""));
        assert!(
            e.to_string().contains("the clip's length, 100 frames"),
            "{e}"
        );
        let e = err(&with_audio("", "fade_in = \"1x\""));
        check(&e, 23, 11, "audio[0].clip[0].fade_in", Some("\"1x\""));
        // Pan: -1..1, and not on a mono canvas.
        let e = err(&with_audio("", "pan = 1.5"));
        check(&e, 23, 7, "audio[0].clip[0].pan", Some("1.5"));
        let e = err(&with_audio("channels = 1\n", "pan = 0.25"));
        check(&e, 24, 7, "audio[0].clip[0].pan", Some("0.25"));
        assert!(e.to_string().contains("mono canvas"), "{e}");
        parse_str(&with_audio("channels = 1\n", "pan = 0.0")).unwrap();
    }

    #[test]
    fn canvas_channels_and_layout() {
        let channels = |canvas: &str| parse_str(&with_audio(canvas, "")).map(|m| m.canvas.channels);
        assert_eq!(channels("").unwrap(), 2);
        assert_eq!(channels("channels = 6\n").unwrap(), 6);
        assert_eq!(channels("layout = \"5.1\"\n").unwrap(), 6);
        assert_eq!(channels("layout = \"mono\"\n").unwrap(), 1);
        assert_eq!(channels("channels = 2\nlayout = \"stereo\"\n").unwrap(), 2);
        let e = channels("channels = 4\n").unwrap_err();
        check(&e, 8, 12, "canvas.channels", Some("4"));
        assert!(e.to_string().contains("6 (5.1"), "{e}");
        let e = channels("layout = \"7.1\"\n").unwrap_err();
        check(&e, 8, 10, "canvas.layout", Some("\"7.1\""));
        let e = channels("channels = 2\nlayout = \"5.1\"\n").unwrap_err();
        check(&e, 9, 10, "canvas.layout", Some("\"5.1\""));
        assert!(
            e.to_string()
                .contains("has 6 channels but canvas.channels is 2"),
            "{e}"
        );
    }

    #[test]
    fn priority_is_peeked_before_validation() {
        assert_eq!(peek_priority(GOOD.as_bytes()), 50);
        let urgent = GOOD.replace("version = 1", "version = 1\npriority = 90");
        assert_eq!(peek_priority(urgent.as_bytes()), 90);
        // Out of range, the wrong type, not TOML, not UTF-8: the default
        // (validation refuses the manifest when the job loads it).
        for bad in [
            "priority = 101",
            "priority = -1",
            "priority = \"high\"",
            "[canvas",
        ] {
            let src = GOOD.replace("version = 1", &format!("version = 1\n{bad}"));
            assert_eq!(peek_priority(src.as_bytes()), 50, "{bad}");
        }
        assert_eq!(peek_priority(&[0xff, 0xfe]), 50);
    }

    #[test]
    fn full_manifest_at_ntsc_rate() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("clips")).unwrap();
        fs::write(dir.path().join("clips/a.mov"), b"x").unwrap();
        fs::write(dir.path().join("clips/music.wav"), b"x").unwrap();
        let src = r##"
version = 1
name = "promo-final"
priority = 80

[canvas]
width = 1280
height = 720
frame_rate = "30000/1001"
duration = "30s"
colour_space = "bt709"
background = "#10203040"
sample_rate = 44100
channels = 1

[[video]]
name = "base"
[[video.clip]]
media = "clips/a.mov"
start = "00:00:05:00"
in = "2s"
out = "7s"
transition_in = { kind = "dissolve", duration = 15 }
[[video.clip]]
generator = "bars"
start = 0
duration = "5.5s"

[[video]]
[[video.clip]]
generator = "solid"
color = "#FF8000"
start = 100
duration = "500ms"
opacity = 0.5
position = [10, -20.5]
scale = 0.25

[[audio]]
gain_db = -3
[[audio.clip]]
generator = "sine"
frequency = 440
level = -18.0
duration = "1s"
[[audio.clip]]
media = "clips/music.wav"
in = "1.5s"
duration = "10s"
gain_db = 2.5

[[deliverable]]
preset = "web/h264-720p"
[[deliverable]]
preset = "web/h264-1080p"
name = "hd"
[deliverable.overrides]
video.options.crf = 18
"##;
        let path = dir.path().join("m.toml");
        let m = parse(src.as_bytes(), &path, &LoadContext::default()).unwrap();
        let rate = Rate {
            num: 30000,
            den: 1001,
        };
        let media = fs::canonicalize(dir.path().join("clips/a.mov")).unwrap();
        let music = fs::canonicalize(dir.path().join("clips/music.wav")).unwrap();
        let expected = Manifest {
            path: path.clone(),
            name: "promo-final".into(),
            priority: 80,
            canvas: Canvas {
                width: 1280,
                height: 720,
                frame_rate: rate,
                // 30 s × 29.97 = 899.1 → 899
                frames: 899,
                colour_space: "bt709".into(),
                background: Rgba([0x10, 0x20, 0x30, 0x40]),
                sample_rate: 44100,
                channels: 1,
            },
            video: vec![
                VideoTrack {
                    name: "base".into(),
                    clips: vec![
                        // Sorted by start: the bars are written second but start at 0.
                        // 5.5 s × 29.97 = 164.835 → 165
                        VideoClip::new(VideoSource::Bars, 0, 165),
                        VideoClip {
                            source: VideoSource::Media { path: media },
                            // timecode 00:00:05:00 counts at the nominal 30 fps
                            start: 150,
                            // (7 - 2) s × 29.97 = 149.85 → 150
                            frames: 150,
                            in_point: 2.0,
                            // the bars end at 165 = 150 + 15: the overlap is the dissolve
                            transition_in: Some(Transition {
                                kind: TransitionKind::Dissolve,
                                frames: 15,
                            }),
                            ..VideoClip::new(VideoSource::Bars, 0, 0)
                        },
                    ],
                },
                VideoTrack {
                    name: "V2".into(),
                    clips: vec![VideoClip {
                        source: VideoSource::Solid {
                            color: Rgba([0xff, 0x80, 0x00, 0xff]),
                        },
                        start: 100,
                        // 0.5 s × 29.97 = 14.985 → 15
                        frames: 15,
                        opacity: Param::constant(0.5),
                        position: [Param::constant(10.0), Param::constant(-20.5)],
                        scale: Param::constant(0.25),
                        ..VideoClip::new(VideoSource::Bars, 0, 0)
                    }],
                },
            ],
            audio: vec![AudioTrack {
                name: "A1".into(),
                gain_db: -3.0,
                clips: vec![
                    AudioClip {
                        source: AudioSource::Sine {
                            frequency: 440.0,
                            level_dbfs: -18.0,
                        },
                        start: 0,
                        frames: 30,
                        in_point: 0.0,
                        gain_db: 0.0,
                        fade_in: 0,
                        fade_out: 0,
                        pan: 0.0,
                    },
                    AudioClip {
                        source: AudioSource::Media { path: music },
                        start: 30,
                        // 10 s × 29.97 = 299.7 → 300
                        frames: 300,
                        in_point: 1.5,
                        gain_db: 2.5,
                        fade_in: 0,
                        fade_out: 0,
                        pan: 0.0,
                    },
                ],
            }],
            deliverables: vec![
                DeliverableRequest {
                    preset: "web/h264-720p".into(),
                    name: "web_h264-720p".into(),
                    overrides: toml::Table::new(),
                    line: 52,
                },
                DeliverableRequest {
                    preset: "web/h264-1080p".into(),
                    name: "hd".into(),
                    overrides: toml::from_str("video.options.crf = 18").unwrap(),
                    line: 54,
                },
            ],
            warnings: Vec::new(),
        };
        assert_eq!(m, expected);

        // The same dissolve on the first clip of the track has nothing to
        // dissolve from.
        let first = src.replace("start = 0\n", "start = 200\n");
        let e = parse(first.as_bytes(), &path, &LoadContext::default()).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("video[0].clip[0].transition_in"),
            "{e}"
        );
        assert!(e.to_string().contains("first clip on the track"), "{e}");
    }
}
