//! [`RawManifest`] → [`Manifest`]: every rule of manifest v1, each refusal an
//! [`InputError`] that names the field, its line/column, the bad value and
//! what would be accepted. The first error wins: a user fixes one thing at a
//! time and the message stays short.

use std::collections::HashMap;
use std::fmt::Display;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use super::error::{line_col, InputError};
use super::model::{
    AudioClip, AudioSource, AudioTrack, BlendMode, Canvas, ColourOps, DeliverableRequest, Fit,
    Interp, Key, Manifest, Param, Rate, Rgba, Title, Transition, TransitionKind, VideoClip,
    VideoSource, VideoTrack,
};
use super::raw::{
    RawAudioClip, RawAudioTrack, RawCanvas, RawColourField, RawDeliverable, RawGrade, RawKeyValue,
    RawManifest, RawNumberOrText, RawParam, RawParamItem, RawTime, RawVideoClip, RawVideoTrack,
};
use super::time::{self, ExactSeconds, RateInput, Time, RATE_EXPECTED, TIME_EXPECTED};
use super::LoadContext;

/// The only manifest version this host reads.
pub const MANIFEST_VERSION: i64 = 1;
/// A manifest's priority when it names none.
pub const DEFAULT_PRIORITY: u8 = 50;
/// The highest manifest priority.
pub const MAX_PRIORITY: u8 = 100;
const DIMENSION_EXPECTED: &str = "an even integer from 16 to 8192";
const COLOUR_EXPECTED: &str = "a colour \"#rrggbb\" or \"#rrggbbaa\" (hex digits)";
const GAIN_EXPECTED: &str = "a gain in dB from -96 to 24";
const CHANNELS_EXPECTED: &str = "1 (mono), 2 (stereo) or 6 (5.1: L R C LFE Ls Rs)";
const LAYOUT_EXPECTED: &str = "\"mono\", \"stereo\" or \"5.1\"";
const PAN_EXPECTED: &str = "a pan from -1 (left) through 0 (centre) to 1 (right)";

/// The channel count of a canvas layout name.
fn layout_channels(name: &str) -> Option<u32> {
    match name {
        "mono" => Some(1),
        "stereo" => Some(2),
        "5.1" => Some(6),
        _ => None,
    }
}
const MAX_CANVAS_SECONDS: u64 = 24 * 3600;
/// Largest |position| in canvas pixels: far beyond any canvas (8192), small
/// enough that f32 still has sub-pixel precision.
const MAX_POSITION: f64 = 100_000.0;
/// Largest |rotation| in degrees (a hundred turns).
const MAX_ROTATION: f64 = 36_000.0;
/// Smallest scale: above 0, so the layer's matrix stays invertible.
const SCALE_MIN: f64 = 1e-4;
/// A title's em size when it names none.
const DEFAULT_TITLE_SIZE: f32 = 64.0;
const FONT_EXPECTED: &str = "a TrueType or OpenType font file inside the media roots";

/// The "empty manifest" refusal (whitespace only, or comments only).
pub(crate) fn empty_manifest(file: &Path) -> InputError {
    InputError::new(file, "empty manifest: required field `canvas` is missing")
        .at(1, 1)
        .field("canvas")
        .expected(
            "a TOML manifest with version = 1, a [canvas] table, a [[video]] track with a \
             [[video.clip]], and a [[deliverable]]",
        )
}

/// Checks `raw` (parsed from `src`, read from `path`) against every rule of
/// manifest v1 and builds the validated [`Manifest`]. Media paths are
/// resolved and checked against `ctx.media_roots` here, so this touches the
/// file system (metadata, and each medium is opened once to prove it readable).
///
/// # Errors
///
/// The first rule broken, as an [`InputError`] naming the field, its position,
/// the bad value and what is accepted.
pub fn validate(
    raw: RawManifest,
    src: &str,
    path: &Path,
    ctx: &LoadContext,
) -> Result<Manifest, InputError> {
    if raw.is_empty() {
        return Err(empty_manifest(path));
    }
    let base = match &ctx.base_dir {
        Some(dir) => dir.clone(),
        None => match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    let v = Validator {
        src,
        file: path,
        roots: MediaRoots::new(&base, &ctx.media_roots),
        media_roots: if ctx.media_roots.is_empty() {
            vec![base.clone()]
        } else {
            ctx.media_roots.clone()
        },
        default_presets: &ctx.default_presets,
    };
    v.manifest(raw)
}

struct Validator<'a> {
    src: &'a str,
    file: &'a Path,
    roots: MediaRoots,
    /// The media roots as configured (the base directory when none), for a
    /// timeline the manifest names.
    media_roots: Vec<PathBuf>,
    default_presets: &'a [String],
}

/// Where media may come from, canonicalized once per manifest.
pub(crate) struct MediaRoots {
    /// Canonical base directory relative media paths resolve against.
    pub(crate) base: PathBuf,
    canonical: Vec<PathBuf>,
    /// The roots as configured, for messages.
    pub(crate) shown: String,
}

impl MediaRoots {
    pub(crate) fn new(base: &Path, configured: &[PathBuf]) -> Self {
        let base = absolute(base);
        let configured: Vec<PathBuf> = if configured.is_empty() {
            vec![base.clone()]
        } else {
            configured.to_vec()
        };
        // A root that does not exist holds no media; it is skipped rather than
        // refused, because a missing root is a host configuration problem, not
        // the manifest's.
        let canonical = configured
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        let shown = configured
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            base,
            canonical,
            shown,
        }
    }

    pub(crate) fn contains(&self, path: &Path) -> bool {
        self.canonical.iter().any(|r| path.starts_with(r))
    }
}

/// Canonical when it exists, else made absolute and normalized lexically.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
    })
}

/// Removes `.` and resolves `..` without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A clip placed on a track, with what overlap checks need to point at.
struct Placed<C> {
    index: usize,
    clip: C,
    start: u64,
    frames: u64,
    header: Range<usize>,
    start_span: Option<Range<usize>>,
    /// (frames, span of `transition_in.duration`).
    transition: Option<(u64, Range<usize>)>,
    transition_span: Option<Range<usize>>,
}

/// A clip's place on the timeline and in its source.
struct Timing {
    start: u64,
    frames: u64,
    in_point: f64,
}

/// The timing fields shared by video and audio clips.
struct RawTiming<'r> {
    start: Option<&'r RawTime>,
    in_point: Option<&'r RawTime>,
    duration: Option<&'r RawTime>,
    out: Option<&'r RawTime>,
    /// Source seconds per timeline second: `out − in` lasts
    /// `(out − in) / speed` on the timeline.
    speed: f64,
}

impl Validator<'_> {
    fn bad(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        predicate: impl Display,
        expected: impl Into<String>,
    ) -> InputError {
        InputError::bad_value(self.file, self.src, span, field, predicate, expected)
    }

    /// A required field is absent: point at the table it belongs in (its
    /// header), or at the top of the file for top-level fields.
    fn missing(
        &self,
        table: Option<Range<usize>>,
        field: impl Into<String>,
        expected: impl Into<String>,
    ) -> InputError {
        let e = InputError::new(self.file, "required field is missing")
            .field(field)
            .expected(expected);
        match table {
            Some(span) => e.at_byte(self.src, span.start),
            None => e.at(1, 1),
        }
    }

    fn int_in(
        &self,
        v: &Spanned<i64>,
        field: &str,
        range: std::ops::RangeInclusive<i64>,
        expected: &str,
    ) -> Result<i64, InputError> {
        let n = *v.get_ref();
        if range.contains(&n) {
            Ok(n)
        } else {
            Err(self.bad(v.span(), field, "is out of range", expected))
        }
    }

    fn float_in(
        &self,
        v: &Spanned<f64>,
        field: &str,
        range: std::ops::RangeInclusive<f64>,
        expected: &str,
    ) -> Result<f64, InputError> {
        let x = *v.get_ref();
        if !x.is_finite() {
            Err(self.bad(v.span(), field, "is not a finite number", expected))
        } else if range.contains(&x) {
            Ok(x)
        } else {
            Err(self.bad(v.span(), field, "is out of range", expected))
        }
    }

    fn time(&self, t: &RawTime, field: &str, rate: Rate) -> Result<Time, InputError> {
        let parsed = match &t.get_ref().0 {
            RawNumberOrText::Integer(n) => Time::from_frames(*n),
            RawNumberOrText::Float(f) => Err(time::TimeError {
                message: format!(
                    "is a bare decimal number, which has no unit; write \"{f}s\" for seconds \
                     or an integer for frames"
                ),
            }),
            RawNumberOrText::Text(s) => Time::parse(s, rate),
        };
        parsed.map_err(|e| self.bad(t.span(), field, e.message, TIME_EXPECTED))
    }

    fn colour(&self, v: &Spanned<String>, field: &str) -> Result<Rgba, InputError> {
        parse_rgba(v.get_ref())
            .ok_or_else(|| self.bad(v.span(), field, "is not a colour", COLOUR_EXPECTED))
    }

    fn manifest(&self, raw: RawManifest) -> Result<Manifest, InputError> {
        match &raw.version {
            None => {
                return Err(self.missing(
                    None,
                    "version",
                    format!("version = {MANIFEST_VERSION} at the top of the file"),
                ))
            }
            Some(v) if *v.get_ref() != MANIFEST_VERSION => {
                return Err(self.bad(
                    v.span(),
                    "version",
                    "is not a manifest version this host reads",
                    format!("{MANIFEST_VERSION}"),
                ))
            }
            Some(_) => {}
        }
        let name = match &raw.name {
            Some(n) => {
                let s = n.get_ref();
                if !valid_manifest_name(s) {
                    return Err(self.bad(
                        n.span(),
                        "name",
                        "is not a usable name",
                        "1 to 100 characters, no /, \\ or control characters, not starting \
                         with '.'",
                    ));
                }
                s.clone()
            }
            None => default_manifest_name(self.file),
        };
        let priority = match &raw.priority {
            Some(p) => self.int_in(
                p,
                "priority",
                0..=i64::from(MAX_PRIORITY),
                "an integer from 0 to 100",
            )? as u8,
            None => DEFAULT_PRIORITY,
        };
        let (canvas, video, audio, warnings) = if let Some(tl) = &raw.timeline {
            self.timeline_parts(tl, &raw)?
        } else {
            let canvas = match raw.canvas {
                Some(c) => self.canvas(c)?,
                None => return Err(self.missing(
                    None,
                    "canvas",
                    "a [canvas] table with width, height, frame_rate, duration and colour_space",
                )),
            };

            if raw.video.is_empty() {
                return Err(self.missing(
                    None,
                    "video",
                    "at least one [[video]] track with a [[video.clip]]",
                ));
            }
            let first_track = raw.video[0].span();
            let video = raw
                .video
                .into_iter()
                .enumerate()
                .map(|(i, t)| self.video_track(i, t, &canvas))
                .collect::<Result<Vec<_>, _>>()?;
            if video.iter().all(|t| t.clips.is_empty()) {
                return Err(self.missing(
                    Some(first_track),
                    "video[0].clip",
                    "at least one [[video.clip]] on a video track",
                ));
            }
            let audio = raw
                .audio
                .into_iter()
                .enumerate()
                .map(|(i, t)| self.audio_track(i, t, &canvas))
                .collect::<Result<Vec<_>, _>>()?;
            (canvas, video, audio, Vec::new())
        };

        if raw.deliverable.is_empty() {
            if self.default_presets.is_empty() {
                return Err(self.missing(
                    None,
                    "deliverable",
                    "at least one [[deliverable]] with preset = \"…\", e.g. \"web/h264-1080p\"",
                ));
            }
            return Ok(Manifest {
                path: self.file.to_path_buf(),
                name,
                priority,
                canvas,
                video,
                audio,
                deliverables: self.default_deliverables()?,
                warnings,
            });
        }
        let mut deliverables = Vec::with_capacity(raw.deliverable.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, d) in raw.deliverable.into_iter().enumerate() {
            let (req, name_span, name_field) = self.deliverable(i, d)?;
            // Case-insensitive: names become file names, and some file systems
            // fold case.
            if let Some(j) = names.insert(req.name.to_lowercase(), i) {
                return Err(self.bad(
                    name_span,
                    name_field,
                    format!(
                        "gives the output name \"{}\", which deliverable[{j}] already uses",
                        req.name
                    ),
                    "a name = \"…\" unique among the deliverables (letters, digits, _ and -)",
                ));
            }
            deliverables.push(req);
        }

        Ok(Manifest {
            path: self.file.to_path_buf(),
            name,
            priority,
            canvas,
            video,
            audio,
            deliverables,
            warnings,
        })
    }

    /// `timeline = "cut.otio"`: the canvas and tracks of an OpenTimelineIO
    /// timeline (a file inside the media roots, whose own media resolve
    /// against its folder and are held to the same roots); the manifest
    /// then names no [canvas], [[video]] or [[audio]] itself.
    #[allow(clippy::type_complexity)]
    fn timeline_parts(
        &self,
        tl: &Spanned<String>,
        raw: &RawManifest,
    ) -> Result<(Canvas, Vec<VideoTrack>, Vec<AudioTrack>, Vec<String>), InputError> {
        let also = [
            raw.canvas.as_ref().map(|c| ("canvas", c.span())),
            raw.video.first().map(|v| ("video", v.span())),
            raw.audio.first().map(|a| ("audio", a.span())),
        ];
        if let Some((field, span)) = also.into_iter().flatten().next() {
            return Err(InputError::new(
                self.file,
                format!(
                    "the manifest takes its canvas and tracks from timeline = {:?}, so it \
                     cannot also have [{field}]",
                    tl.get_ref()
                ),
            )
            .at_byte(self.src, span.start)
            .field(field)
            .expected("either timeline = \"….otio\" or [canvas] with [[video]] tracks"));
        }
        if !super::is_otio(Path::new(tl.get_ref())) {
            return Err(self.bad(
                tl.span(),
                "timeline",
                "is not an OpenTimelineIO file",
                "a path to a .otio file inside the media roots",
            ));
        }
        let path = self.media(tl, "timeline")?;
        let bytes = std::fs::read(&path).map_err(|e| {
            self.bad(
                tl.span(),
                "timeline",
                format!("cannot be read ({}: {e})", path.display()),
                "a readable .otio file",
            )
        })?;
        let ctx = LoadContext {
            media_roots: self.media_roots.clone(),
            base_dir: None,
            ..LoadContext::default()
        };
        let parts = super::otio::parse_timeline(&bytes, &path, &ctx)?;
        Ok((parts.canvas, parts.video, parts.audio, parts.warnings))
    }

    fn canvas(&self, c: Spanned<RawCanvas>) -> Result<Canvas, InputError> {
        let span = c.span();
        let c = c.into_inner();
        let dimension = |v: &Option<Spanned<i64>>, field: &str| -> Result<u32, InputError> {
            let v = v
                .as_ref()
                .ok_or_else(|| self.missing(Some(span.clone()), field, DIMENSION_EXPECTED))?;
            let n = self.int_in(v, field, 16..=8192, DIMENSION_EXPECTED)?;
            if n % 2 != 0 {
                return Err(self.bad(
                    v.span(),
                    field,
                    "is odd; 4:2:0 deliverables need even sizes",
                    DIMENSION_EXPECTED,
                ));
            }
            Ok(n as u32)
        };
        let width = dimension(&c.width, "canvas.width")?;
        let height = dimension(&c.height, "canvas.height")?;

        let rate_raw = c
            .frame_rate
            .as_ref()
            .ok_or_else(|| self.missing(Some(span.clone()), "canvas.frame_rate", RATE_EXPECTED))?;
        let input = match &rate_raw.get_ref().0 {
            RawNumberOrText::Integer(n) => RateInput::Integer(*n),
            RawNumberOrText::Float(f) => RateInput::Float(*f),
            RawNumberOrText::Text(s) => RateInput::Text(s),
        };
        let frame_rate = time::parse_rate(input).map_err(|e| {
            self.bad(
                rate_raw.span(),
                "canvas.frame_rate",
                e.message,
                RATE_EXPECTED,
            )
        })?;

        let duration_expected = format!("{TIME_EXPECTED}, from one frame to 24 hours");
        let duration = c.duration.as_ref().ok_or_else(|| {
            self.missing(Some(span.clone()), "canvas.duration", &duration_expected)
        })?;
        let frames = self
            .time(duration, "canvas.duration", frame_rate)?
            .to_frames(frame_rate);
        if frames == 0 {
            return Err(self.bad(
                duration.span(),
                "canvas.duration",
                format!("is shorter than one frame at {frame_rate} fps"),
                duration_expected,
            ));
        }
        if u128::from(frames) * u128::from(frame_rate.den)
            > u128::from(MAX_CANVAS_SECONDS) * u128::from(frame_rate.num)
        {
            return Err(self.bad(
                duration.span(),
                "canvas.duration",
                "is longer than 24 hours",
                duration_expected,
            ));
        }

        let colour_space = c.colour_space.as_ref().ok_or_else(|| {
            self.missing(
                Some(span.clone()),
                "canvas.colour_space",
                "\"bt709\" or \"bt2020\"",
            )
        })?;
        if !["bt709", "bt2020"].contains(&colour_space.get_ref().as_str()) {
            return Err(self.bad(
                colour_space.span(),
                "canvas.colour_space",
                "is not a canvas colour space",
                "\"bt709\" or \"bt2020\" (the working primaries; both SDR)",
            ));
        }
        let background = match &c.background {
            Some(b) => self.colour(b, "canvas.background")?,
            None => Rgba([0, 0, 0, 255]),
        };
        let sample_rate = match &c.sample_rate {
            Some(s) => self.int_in(
                s,
                "canvas.sample_rate",
                8000..=192_000,
                "a sample rate in Hz from 8000 to 192000",
            )? as u32,
            None => 48_000,
        };
        let channels = self.canvas_channels(&c)?;
        Ok(Canvas {
            width,
            height,
            frame_rate,
            frames,
            colour_space: colour_space.get_ref().clone(),
            background,
            sample_rate,
            channels,
        })
    }

    /// `channels` and/or `layout` → 1, 2 or 6 (5.1); they must agree when
    /// both are given.
    fn canvas_channels(&self, c: &RawCanvas) -> Result<u32, InputError> {
        let from_count = match &c.channels {
            Some(ch) => {
                let n = *ch.get_ref();
                if !matches!(n, 1 | 2 | 6) {
                    let why = if (3..=5).contains(&n) || n == 8 {
                        "is not a channel count the mix lays out"
                    } else {
                        "is out of range"
                    };
                    return Err(self.bad(ch.span(), "canvas.channels", why, CHANNELS_EXPECTED));
                }
                Some(n as u32)
            }
            None => None,
        };
        let from_layout = match &c.layout {
            Some(l) => Some(layout_channels(l.get_ref()).ok_or_else(|| {
                self.bad(
                    l.span(),
                    "canvas.layout",
                    "is not a supported layout",
                    LAYOUT_EXPECTED,
                )
            })?),
            None => None,
        };
        match (from_count, from_layout, &c.layout) {
            (Some(n), Some(m), Some(l)) if n != m => Err(self.bad(
                l.span(),
                "canvas.layout",
                format!("has {m} channels but canvas.channels is {n}"),
                format!("a layout of {n} channels, or no layout (channels alone says it)"),
            )),
            (Some(n), _, _) | (None, Some(n), _) => Ok(n),
            (None, None, _) => Ok(2),
        }
    }

    fn track_name(
        &self,
        name: &Option<Spanned<String>>,
        field: &str,
        default: String,
    ) -> Result<String, InputError> {
        match name {
            None => Ok(default),
            Some(n) => {
                let s = n.get_ref();
                let ok = !s.trim().is_empty()
                    && s.chars().count() <= 64
                    && !s.chars().any(char::is_control);
                if ok {
                    Ok(s.clone())
                } else {
                    Err(self.bad(
                        n.span(),
                        field,
                        "is not a usable track name",
                        "1 to 64 characters, no control characters",
                    ))
                }
            }
        }
    }

    fn video_track(
        &self,
        ti: usize,
        track: Spanned<RawVideoTrack>,
        canvas: &Canvas,
    ) -> Result<VideoTrack, InputError> {
        let track = track.into_inner();
        let name = self.track_name(
            &track.name,
            &format!("video[{ti}].name"),
            format!("V{}", ti + 1),
        )?;
        let mut cursor = 0;
        let mut placed = Vec::with_capacity(track.clip.len());
        for (ci, clip) in track.clip.into_iter().enumerate() {
            let p = self.video_clip(ti, ci, clip, canvas, cursor)?;
            cursor = p.start + p.frames;
            placed.push(p);
        }
        self.check_overlaps(&format!("video[{ti}]"), &mut placed)?;
        Ok(VideoTrack {
            name,
            clips: placed.into_iter().map(|p| p.clip).collect(),
        })
    }

    fn video_clip(
        &self,
        ti: usize,
        ci: usize,
        clip: Spanned<RawVideoClip>,
        canvas: &Canvas,
        cursor: u64,
    ) -> Result<Placed<VideoClip>, InputError> {
        let header = clip.span();
        let c = clip.into_inner();
        let prefix = format!("video[{ti}].clip[{ci}]");
        let field = |name: &str| format!("{prefix}.{name}");

        let (color_text, grade) = self.split_colour(&c.color, &c.colour, &prefix)?;
        let source = self.video_source(&c, &prefix, header.clone(), color_text.as_ref())?;
        let is_media = matches!(source, VideoSource::Media { .. });

        let speed = match &c.speed {
            Some(s) if !is_media => {
                return Err(self.bad(
                    s.span(),
                    field("speed"),
                    "is a playback speed, which only media clips have",
                    "no speed on a generator or still clip",
                ))
            }
            Some(s) => self.float_in(
                s,
                &field("speed"),
                0.01..=100.0,
                "a playback speed from 0.01 to 100 (1 = normal, 0.5 = half speed)",
            )?,
            None => 1.0,
        };
        let timing = self.timing(
            &prefix,
            header.clone(),
            is_media,
            RawTiming {
                start: c.start.as_ref(),
                in_point: c.in_point.as_ref(),
                duration: c.duration.as_ref(),
                out: c.out.as_ref(),
                speed,
            },
            canvas,
            cursor,
        )?;
        let rate = canvas.frame_rate;

        let one = |p: &Option<Spanned<RawParam>>,
                   name: &str,
                   default: f32,
                   range: std::ops::RangeInclusive<f64>,
                   expected: &str|
         -> Result<Param, InputError> {
            match p {
                None => Ok(Param::constant(default)),
                Some(p) => Ok(self
                    .param(p, &field(name), 1, rate, &range, expected)?
                    .remove(0)),
            }
        };
        let opacity = one(
            &c.opacity,
            "opacity",
            1.0,
            0.0..=1.0,
            "a number from 0 to 1",
        )?;
        let scale = one(
            &c.scale,
            "scale",
            1.0,
            SCALE_MIN..=16.0,
            "a number greater than 0 and at most 16",
        )?;
        let rotation = one(
            &c.rotation,
            "rotation",
            0.0,
            -MAX_ROTATION..=MAX_ROTATION,
            "degrees clockwise, from -36000 to 36000",
        )?;
        let position = match &c.position {
            None => [Param::constant(0.0), Param::constant(0.0)],
            Some(p) => {
                let v = self.param(
                    p,
                    &field("position"),
                    2,
                    rate,
                    &(-MAX_POSITION..=MAX_POSITION),
                    "[x, y] in canvas pixels, each finite and from -100000 to 100000",
                )?;
                [v[0].clone(), v[1].clone()]
            }
        };
        let crop = match &c.crop {
            None => std::array::from_fn(|_| Param::constant(0.0)),
            Some(p) => {
                let v = self.param(
                    p,
                    &field("crop"),
                    4,
                    rate,
                    &(0.0..=MAX_POSITION),
                    "[left, top, right, bottom]: source pixels cut from each edge, from 0 to \
                     100000",
                )?;
                [v[0].clone(), v[1].clone(), v[2].clone(), v[3].clone()]
            }
        };
        let fit =
            match &c.fit {
                None => Fit::None,
                Some(f) => match f.get_ref().as_str() {
                    "none" => Fit::None,
                    "fit" => Fit::Fit,
                    "fill" => Fit::Fill,
                    "stretch" => Fit::Stretch,
                    _ => return Err(self.bad(
                        f.span(),
                        field("fit"),
                        "is not a fit mode",
                        "\"none\" (native pixels at the top-left), \"fit\" (inside the canvas), \
                         \"fill\" (covering the canvas) or \"stretch\" (to the canvas size)",
                    )),
                },
            };
        let blend = match &c.blend {
            None => BlendMode::Normal,
            Some(b) => match b.get_ref().as_str() {
                "normal" => BlendMode::Normal,
                "add" => BlendMode::Add,
                "multiply" => BlendMode::Multiply,
                "screen" => BlendMode::Screen,
                _ => {
                    return Err(self.bad(
                        b.span(),
                        field("blend"),
                        "is not a blend mode",
                        "\"normal\", \"add\", \"multiply\" or \"screen\"",
                    ))
                }
            },
        };
        let colour = match grade {
            None => ColourOps::default(),
            Some((g, name)) => self.grade(g, &field(name))?,
        };

        let mut transition = None;
        let mut transition_span = None;
        let mut transition_kind = TransitionKind::Dissolve;
        if let Some(t) = &c.transition_in {
            let tspan = t.span();
            let t = t.get_ref();
            let kexpected = "\"dissolve\", \"dip\" (through a colour) or \"wipe\"";
            let kind = t.kind.as_ref().ok_or_else(|| {
                self.missing(Some(tspan.clone()), field("transition_in.kind"), kexpected)
            })?;
            let kind_name = kind.get_ref().as_str();
            if !["dissolve", "dip", "wipe"].contains(&kind_name) {
                return Err(self.bad(
                    kind.span(),
                    field("transition_in.kind"),
                    "is not a transition this host knows",
                    kexpected,
                ));
            }
            let only = |v: Option<Range<usize>>, name: &str, kinds: &str| match v {
                Some(span) if !kinds.split('|').any(|k| k == kind_name) => Err(self.bad(
                    span,
                    field(&format!("transition_in.{name}")),
                    format!("is not used by a \"{kind_name}\" transition"),
                    format!(
                        "no {name}, or kind = \"{}\"",
                        kinds.replace('|', "\" or \"")
                    ),
                )),
                _ => Ok(()),
            };
            only(t.color.as_ref().map(Spanned::span), "color", "dip")?;
            only(t.angle.as_ref().map(Spanned::span), "angle", "wipe")?;
            only(t.softness.as_ref().map(Spanned::span), "softness", "wipe")?;
            transition_kind = match kind_name {
                "dip" => TransitionKind::Dip {
                    color: match &t.color {
                        Some(col) => self.colour(col, &field("transition_in.color"))?,
                        None => Rgba([0, 0, 0, 255]),
                    },
                },
                "wipe" => TransitionKind::Wipe {
                    angle_deg: match &t.angle {
                        Some(a) => self.float_in(
                            a,
                            &field("transition_in.angle"),
                            -360.0..=360.0,
                            "degrees from -360 to 360: 0 wipes left to right, 90 top to bottom",
                        )? as f32,
                        None => 0.0,
                    },
                    softness: match &t.softness {
                        Some(s) => self.float_in(
                            s,
                            &field("transition_in.softness"),
                            0.0..=1.0,
                            "the edge's width as a fraction of the wipe, from 0 (hard) to 1",
                        )? as f32,
                        None => 0.0,
                    },
                },
                _ => TransitionKind::Dissolve,
            };
            let dfield = field("transition_in.duration");
            let dexpected = format!(
                "a time of at least one frame and at most this clip's length ({} frames)",
                timing.frames
            );
            let d = t
                .duration
                .as_ref()
                .ok_or_else(|| self.missing(Some(tspan.clone()), &dfield, &dexpected))?;
            let frames = self
                .time(d, &dfield, canvas.frame_rate)?
                .to_frames(canvas.frame_rate);
            if frames == 0 || frames > timing.frames {
                return Err(self.bad(
                    d.span(),
                    dfield,
                    format!("is {frames} frames at {} fps", canvas.frame_rate),
                    dexpected,
                ));
            }
            transition = Some((frames, d.span()));
            transition_span = Some(tspan);
        }

        Ok(Placed {
            index: ci,
            clip: VideoClip {
                in_point: timing.in_point,
                speed,
                opacity,
                position,
                scale,
                rotation,
                crop,
                fit,
                blend,
                colour,
                transition_in: transition.as_ref().map(|(frames, _)| Transition {
                    kind: transition_kind,
                    frames: *frames,
                }),
                ..VideoClip::new(source, timing.start, timing.frames)
            },
            start: timing.start,
            frames: timing.frames,
            header,
            start_span: c.start.as_ref().map(Spanned::span),
            transition,
            transition_span,
        })
    }

    /// `color` and `colour` hold one colour string (a solid's or a title's
    /// colour) and one table (the colour operations) between them.
    #[allow(clippy::type_complexity)]
    fn split_colour<'r>(
        &self,
        color: &'r Option<Spanned<RawColourField>>,
        colour: &'r Option<Spanned<RawColourField>>,
        prefix: &str,
    ) -> Result<
        (
            Option<Spanned<String>>,
            Option<(&'r RawGrade, &'static str)>,
        ),
        InputError,
    > {
        let mut text: Option<Spanned<String>> = None;
        let mut grade = None;
        for (name, v) in [("color", color), ("colour", colour)] {
            let Some(v) = v else { continue };
            match v.get_ref() {
                RawColourField::Text(s) => {
                    if text.is_some() {
                        return Err(self.bad(
                            v.span(),
                            format!("{prefix}.{name}"),
                            "is a second colour string (color and colour are the same field)",
                            "one colour string, in color or colour, and at most one table of \
                             colour operations",
                        ));
                    }
                    text = Some(Spanned::new(v.span(), s.clone()));
                }
                RawColourField::Grade(g) => {
                    if grade.is_some() {
                        return Err(self.bad(
                            v.span(),
                            format!("{prefix}.{name}"),
                            "is a second table of colour operations",
                            "one table of colour operations, in color or colour",
                        ));
                    }
                    grade = Some((g, name));
                }
            }
        }
        Ok((text, grade))
    }

    /// The clip's source: exactly one of generator, media and still, with
    /// the fields each generator takes.
    fn video_source(
        &self,
        c: &RawVideoClip,
        prefix: &str,
        header: Range<usize>,
        color: Option<&Spanned<String>>,
    ) -> Result<VideoSource, InputError> {
        let field = |name: &str| format!("{prefix}.{name}");
        let given: Vec<(&str, &Spanned<String>)> = [
            ("generator", &c.generator),
            ("media", &c.media),
            ("still", &c.still),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
        .collect();
        if given.len() > 1 {
            let (name, v) = given[1];
            return Err(self.bad(
                v.span(),
                field(name),
                format!("is given together with `{}`", given[0].0),
                "exactly one of generator, media or still",
            ));
        }
        let generator = c.generator.as_ref().map(|g| g.get_ref().as_str());
        let is_title = generator == Some("title");
        if !is_title {
            let title_fields = [
                ("text", c.text.as_ref().map(Spanned::span)),
                ("font", c.font.as_ref().map(Spanned::span)),
                ("size", c.size.as_ref().map(Spanned::span)),
                ("at", c.at.as_ref().map(Spanned::span)),
            ];
            if let Some((name, Some(span))) = title_fields.into_iter().find(|f| f.1.is_some()) {
                return Err(self.bad(
                    span,
                    field(name),
                    "is only used by generator = \"title\"",
                    format!("no {name} on this clip, or generator = \"title\""),
                ));
            }
        }
        if let (Some(col), false) = (color, is_title || generator == Some("solid")) {
            return Err(self.bad(
                col.span(),
                field("color"),
                "is only used by generator = \"solid\" and generator = \"title\"",
                "no color string on this clip (colour operations go in a table: \
                 [video.clip.colour])",
            ));
        }
        let Some((name, v)) = given.first().copied() else {
            return Err(self.missing(
                Some(header),
                field("generator"),
                "exactly one of generator = \"bars\" | \"solid\" | \"pattern\" | \"title\", \
                 media = \"path/to/file\" or still = \"path/to/image.png\"",
            ));
        };
        Ok(match name {
            "media" => VideoSource::Media {
                path: self.media(v, &field("media"))?,
            },
            "still" => {
                let path = self.media(v, &field("still"))?;
                if let Err(e) = image::ImageReader::open(&path)
                    .and_then(|r| r.with_guessed_format())
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.into_dimensions().map_err(|e| e.to_string()))
                {
                    return Err(self.bad(
                        v.span(),
                        field("still"),
                        format!("is not an image this host reads ({e})"),
                        "a PNG or JPEG file",
                    ));
                }
                VideoSource::Still { path }
            }
            _ => {
                match v.get_ref().as_str() {
                    "bars" => VideoSource::Bars,
                    "pattern" => VideoSource::Pattern,
                    "solid" => {
                        let color = color.ok_or_else(|| {
                            self.missing(
                                Some(header.clone()),
                                field("color"),
                                format!("{COLOUR_EXPECTED} for generator = \"solid\""),
                            )
                        })?;
                        VideoSource::Solid {
                            color: self.colour(color, &field("color"))?,
                        }
                    }
                    "title" => VideoSource::Title(self.title(c, prefix, header, color)?),
                    _ => return Err(self.bad(
                        v.span(),
                        field("generator"),
                        "is not a video generator",
                        "one of \"bars\", \"solid\", \"pattern\", \"title\" (or media = \"path\" \
                         for a file, still = \"path\" for an image)",
                    )),
                }
            }
        })
    }

    fn title(
        &self,
        c: &RawVideoClip,
        prefix: &str,
        header: Range<usize>,
        color: Option<&Spanned<String>>,
    ) -> Result<Title, InputError> {
        let field = |name: &str| format!("{prefix}.{name}");
        let text_expected = "the text to draw, 1 to 10000 characters (\\n starts a new line)";
        let text = c
            .text
            .as_ref()
            .ok_or_else(|| self.missing(Some(header), field("text"), text_expected))?;
        let n = text.get_ref().chars().count();
        if text.get_ref().trim().is_empty() || n > 10_000 {
            return Err(self.bad(
                text.span(),
                field("text"),
                "is not usable text",
                text_expected,
            ));
        }
        let font = match &c.font {
            None => None,
            Some(f) => {
                let path = self.media(f, &field("font"))?;
                let bytes = std::fs::read(&path).map_err(|e| {
                    self.bad(
                        f.span(),
                        field("font"),
                        format!("cannot be read ({e})"),
                        FONT_EXPECTED,
                    )
                })?;
                if let Err(e) = ab_glyph::FontVec::try_from_vec(bytes) {
                    return Err(self.bad(
                        f.span(),
                        field("font"),
                        format!("is not a font this host reads ({e})"),
                        FONT_EXPECTED,
                    ));
                }
                Some(path)
            }
        };
        let size = match &c.size {
            Some(s) => self.float_in(
                s,
                &field("size"),
                1.0..=2000.0,
                "an em size in canvas pixels from 1 to 2000",
            )? as f32,
            None => DEFAULT_TITLE_SIZE,
        };
        let color = match color {
            Some(col) => self.colour(col, &field("color"))?,
            None => Rgba([255, 255, 255, 255]),
        };
        let at = match &c.at {
            None => [0.0, 0.0],
            Some(a) => {
                let expected = "[x, y]: the top-left of the first line in canvas pixels, each \
                                from -100000 to 100000";
                let v = a.get_ref();
                if v.len() != 2 {
                    return Err(self.bad(
                        a.span(),
                        field("at"),
                        format!("has {} numbers", v.len()),
                        expected,
                    ));
                }
                if v.iter().any(|x| !x.is_finite() || x.abs() > MAX_POSITION) {
                    return Err(self.bad(a.span(), field("at"), "is out of range", expected));
                }
                [v[0] as f32, v[1] as f32]
            }
        };
        Ok(Title {
            text: text.get_ref().clone(),
            font,
            size,
            color,
            at,
        })
    }

    /// The colour operations table.
    fn grade(&self, g: &RawGrade, prefix: &str) -> Result<ColourOps, InputError> {
        let field = |name: &str| format!("{prefix}.{name}");
        let mut out = ColourOps::default();
        if let Some(e) = &g.exposure {
            out.exposure =
                self.float_in(e, &field("exposure"), -16.0..=16.0, "stops from -16 to 16")? as f32;
        }
        let triple = |v: &Spanned<Vec<f64>>,
                      name: &str,
                      range: std::ops::RangeInclusive<f64>,
                      expected: &str|
         -> Result<[f32; 3], InputError> {
            let xs = v.get_ref();
            if xs.len() != 3 {
                return Err(self.bad(
                    v.span(),
                    field(name),
                    format!("has {} numbers", xs.len()),
                    expected,
                ));
            }
            if xs.iter().any(|x| !x.is_finite() || !range.contains(x)) {
                return Err(self.bad(v.span(), field(name), "is out of range", expected));
            }
            Ok([xs[0] as f32, xs[1] as f32, xs[2] as f32])
        };
        if let Some(v) = &g.lift {
            out.lift = triple(v, "lift", -1.0..=1.0, "[r, g, b], each from -1 to 1")?;
        }
        if let Some(v) = &g.gamma {
            out.gamma = triple(v, "gamma", 0.1..=10.0, "[r, g, b], each from 0.1 to 10")?;
        }
        if let Some(v) = &g.gain {
            out.gain = triple(v, "gain", 0.0..=16.0, "[r, g, b], each from 0 to 16")?;
        }
        if let Some(s) = &g.saturation {
            out.saturation =
                self.float_in(s, &field("saturation"), 0.0..=4.0, "a number from 0 to 4")? as f32;
        }
        if let Some(l) = &g.lut {
            let path = self.media(l, &field("lut"))?;
            let is_cube = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("cube"));
            if !is_cube {
                return Err(self.bad(
                    l.span(),
                    field("lut"),
                    "is not a .cube file",
                    "a 3D LUT in the .cube format, inside the media roots",
                ));
            }
            out.lut = Some(path);
        }
        Ok(out)
    }

    /// A keyframable property of `arity` numbers: a constant (a number, or
    /// a list of `arity` numbers), or a list of keyframes `{ at, value,
    /// interp }` whose values have that shape. Keys are at clip-relative
    /// times, strictly increasing; `interp` says how the value arrives at a
    /// key from the one before (so the first key takes none).
    fn param(
        &self,
        p: &Spanned<RawParam>,
        field: &str,
        arity: usize,
        rate: Rate,
        range: &std::ops::RangeInclusive<f64>,
        expected: &str,
    ) -> Result<Vec<Param>, InputError> {
        let shape = if arity == 1 {
            "a number".to_owned()
        } else {
            format!("a list of {arity} numbers")
        };
        let keys_expected = format!(
            "{shape}, or keyframes [{{ at = \"0s\", value = {} }}, {{ at = \"1s\", value = …, \
             interp = \"linear\" | \"ease\" | \"hold\" }}]",
            if arity == 1 { "0.0" } else { "[…]" }
        );
        let check = |span: Range<usize>, f: &str, v: &[f64]| -> Result<(), InputError> {
            if v.iter().any(|x| !x.is_finite()) {
                Err(self.bad(span, f, "is not a finite number", expected))
            } else if v.iter().any(|x| !range.contains(x)) {
                Err(self.bad(span, f, "is out of range", expected))
            } else {
                Ok(())
            }
        };
        let items = match p.get_ref() {
            RawParam::Number(x) if arity == 1 => {
                check(p.span(), field, &[*x])?;
                return Ok(vec![Param::constant(*x as f32)]);
            }
            RawParam::Number(_) => {
                return Err(self.bad(p.span(), field, "is a single number", keys_expected))
            }
            RawParam::List(items) => items,
        };
        if items.is_empty() {
            return Err(self.bad(p.span(), field, "is an empty list", keys_expected));
        }
        let numbers: Vec<f64> = items
            .iter()
            .filter_map(|i| match i.get_ref() {
                RawParamItem::Number(x) => Some(*x),
                RawParamItem::Key(_) => None,
            })
            .collect();
        if numbers.len() == items.len() {
            if arity == 1 {
                return Err(self.bad(p.span(), field, "is a list of numbers", keys_expected));
            }
            if numbers.len() != arity {
                return Err(self.bad(
                    p.span(),
                    field,
                    format!("has {} numbers", numbers.len()),
                    expected,
                ));
            }
            check(p.span(), field, &numbers)?;
            return Ok(numbers.iter().map(|&x| Param::constant(x as f32)).collect());
        }
        let mut params: Vec<Param> = (0..arity).map(|_| Param { keys: Vec::new() }).collect();
        let mut prev: Option<u64> = None;
        for (i, item) in items.iter().enumerate() {
            let kfield = format!("{field}[{i}]");
            let RawParamItem::Key(k) = item.get_ref() else {
                return Err(self.bad(
                    item.span(),
                    kfield,
                    "is a number in a list of keyframes",
                    keys_expected,
                ));
            };
            let at = k.at.as_ref().ok_or_else(|| {
                self.missing(
                    Some(item.span()),
                    format!("{kfield}.at"),
                    "the key's time from the clip's start, e.g. at = \"1s\"",
                )
            })?;
            let frame = self
                .time(at, &format!("{kfield}.at"), rate)?
                .to_frames(rate);
            if let Some(pf) = prev {
                if frame <= pf {
                    return Err(self.bad(
                        at.span(),
                        format!("{kfield}.at"),
                        format!("is frame {frame}, not after the previous key (frame {pf})"),
                        "keys in increasing time order, at least one frame apart",
                    ));
                }
            }
            let vfield = format!("{kfield}.value");
            let value = k.value.as_ref().ok_or_else(|| {
                self.missing(Some(item.span()), &vfield, format!("{shape}: {expected}"))
            })?;
            let values: Vec<f64> = match (value.get_ref(), arity) {
                (RawKeyValue::Number(x), 1) => vec![*x],
                (RawKeyValue::List(v), n) if n > 1 && v.len() == n => v.clone(),
                _ => {
                    return Err(self.bad(
                        value.span(),
                        &vfield,
                        format!("is not {shape}"),
                        format!("{shape}: {expected}"),
                    ))
                }
            };
            check(value.span(), &vfield, &values)?;
            let interp =
                match &k.interp {
                    None => Interp::Linear,
                    Some(s) if prev.is_none() => {
                        return Err(self.bad(
                            s.span(),
                            format!("{kfield}.interp"),
                            "is on the first key; interp says how the value arrives at a key from \
                         the key before it",
                            "interp on the second and later keys only",
                        ))
                    }
                    Some(s) => match s.get_ref().as_str() {
                        "linear" => Interp::Linear,
                        "ease" => Interp::Ease,
                        "hold" => Interp::Hold,
                        _ => return Err(self.bad(
                            s.span(),
                            format!("{kfield}.interp"),
                            "is not an interpolation",
                            "\"linear\" (default), \"ease\" (smooth start and end) or \"hold\" \
                             (the previous value until this key)",
                        )),
                    },
                };
            for (param, v) in params.iter_mut().zip(&values) {
                // The model keeps on each key how the value leaves it.
                if let Some(last) = param.keys.last_mut() {
                    last.interp = interp;
                }
                param.keys.push(Key {
                    frame,
                    value: *v as f32,
                    interp: Interp::Linear,
                });
            }
            prev = Some(frame);
        }
        Ok(params)
    }

    fn audio_track(
        &self,
        ti: usize,
        track: Spanned<RawAudioTrack>,
        canvas: &Canvas,
    ) -> Result<AudioTrack, InputError> {
        let track = track.into_inner();
        let name = self.track_name(
            &track.name,
            &format!("audio[{ti}].name"),
            format!("A{}", ti + 1),
        )?;
        let gain_db = match &track.gain_db {
            Some(g) => self.float_in(
                g,
                &format!("audio[{ti}].gain_db"),
                -96.0..=24.0,
                GAIN_EXPECTED,
            )?,
            None => 0.0,
        };
        let mut cursor = 0;
        let mut placed = Vec::with_capacity(track.clip.len());
        for (ci, clip) in track.clip.into_iter().enumerate() {
            let p = self.audio_clip(ti, ci, clip, canvas, cursor)?;
            cursor = p.start + p.frames;
            placed.push(p);
        }
        self.check_overlaps(&format!("audio[{ti}]"), &mut placed)?;
        Ok(AudioTrack {
            name,
            gain_db,
            clips: placed.into_iter().map(|p| p.clip).collect(),
        })
    }

    fn audio_clip(
        &self,
        ti: usize,
        ci: usize,
        clip: Spanned<RawAudioClip>,
        canvas: &Canvas,
        cursor: u64,
    ) -> Result<Placed<AudioClip>, InputError> {
        let header = clip.span();
        let c = clip.into_inner();
        let prefix = format!("audio[{ti}].clip[{ci}]");
        let field = |name: &str| format!("{prefix}.{name}");
        let nyquist = f64::from(canvas.sample_rate) / 2.0;

        let source = match (&c.generator, &c.media) {
            (Some(_), Some(m)) => {
                return Err(self.bad(
                    m.span(),
                    field("media"),
                    "is given together with `generator`",
                    "exactly one of generator or media",
                ))
            }
            (None, None) => {
                return Err(self.missing(
                    Some(header),
                    field("generator"),
                    "exactly one of generator = \"sine\" or media = \"path/to/file\"",
                ))
            }
            (None, Some(m)) => AudioSource::Media {
                path: self.media(m, &field("media"))?,
            },
            (Some(g), None) => {
                if g.get_ref() != "sine" {
                    return Err(self.bad(
                        g.span(),
                        field("generator"),
                        "is not an audio generator",
                        "\"sine\" (or media = \"path\" for a file)",
                    ));
                }
                let frequency = match &c.frequency {
                    Some(f) => self.float_in(
                        f,
                        &field("frequency"),
                        1.0..=nyquist,
                        &format!(
                            "a frequency in Hz from 1 to {nyquist} (half the canvas sample rate)"
                        ),
                    )?,
                    None => 1000.0,
                };
                let level_dbfs = match &c.level {
                    Some(l) => self.float_in(
                        l,
                        &field("level"),
                        -120.0..=0.0,
                        "a peak level in dBFS from -120 to 0",
                    )?,
                    None => -20.0,
                };
                AudioSource::Sine {
                    frequency,
                    level_dbfs,
                }
            }
        };
        let is_media = matches!(source, AudioSource::Media { .. });
        if is_media {
            for (name, v) in [("frequency", &c.frequency), ("level", &c.level)] {
                if let Some(v) = v {
                    return Err(self.bad(
                        v.span(),
                        field(name),
                        "is only used by generator = \"sine\"",
                        format!("no {name} on a media clip"),
                    ));
                }
            }
        }
        let timing = self.timing(
            &prefix,
            header.clone(),
            is_media,
            RawTiming {
                start: c.start.as_ref(),
                in_point: c.in_point.as_ref(),
                duration: c.duration.as_ref(),
                out: c.out.as_ref(),
                speed: 1.0,
            },
            canvas,
            cursor,
        )?;
        let gain_db = match &c.gain_db {
            Some(g) => self.float_in(g, &field("gain_db"), -96.0..=24.0, GAIN_EXPECTED)?,
            None => 0.0,
        };
        let (fade_in, fade_out) = self.fades(&prefix, &c, canvas, timing.frames)?;
        let pan = match &c.pan {
            Some(p) => {
                let pan = self.float_in(p, &field("pan"), -1.0..=1.0, PAN_EXPECTED)?;
                if canvas.channels == 1 && pan != 0.0 {
                    return Err(self.bad(
                        p.span(),
                        field("pan"),
                        "pans a clip on a mono canvas (canvas.channels = 1), where it has no effect",
                        "no pan (or 0) on a mono canvas, or canvas.channels = 2 or 6",
                    ));
                }
                pan as f32
            }
            None => 0.0,
        };
        Ok(Placed {
            index: ci,
            clip: AudioClip {
                source,
                start: timing.start,
                frames: timing.frames,
                in_point: timing.in_point,
                gain_db,
                fade_in,
                fade_out,
                pan,
            },
            start: timing.start,
            frames: timing.frames,
            header,
            start_span: c.start.as_ref().map(Spanned::span),
            transition: None,
            transition_span: None,
        })
    }

    /// `fade_in` / `fade_out` → frames; together they fit in the clip.
    fn fades(
        &self,
        prefix: &str,
        c: &RawAudioClip,
        canvas: &Canvas,
        clip_frames: u64,
    ) -> Result<(u64, u64), InputError> {
        let rate = canvas.frame_rate;
        let frames = |t: &Option<RawTime>, name: &str| -> Result<u64, InputError> {
            match t {
                Some(t) => Ok(self
                    .time(t, &format!("{prefix}.{name}"), rate)?
                    .to_frames(rate)),
                None => Ok(0),
            }
        };
        let fade_in = frames(&c.fade_in, "fade_in")?;
        let fade_out = frames(&c.fade_out, "fade_out")?;
        if fade_in + fade_out > clip_frames {
            // Point at the fade that makes the sum too long.
            let (t, name, other) = match (&c.fade_out, &c.fade_in) {
                (Some(t), _) if fade_out > 0 => (t, "fade_out", fade_in),
                (_, Some(t)) => (t, "fade_in", fade_out),
                (Some(t), None) => (t, "fade_out", 0),
                (None, None) => unreachable!("no fades make no frames"),
            };
            let mine = if name == "fade_in" { fade_in } else { fade_out };
            let expected = if other > 0 {
                format!(
                    "at most {} frames (the clip is {clip_frames} frames and the other fade takes {other})",
                    clip_frames - other.min(clip_frames)
                )
            } else {
                format!("at most the clip's length, {clip_frames} frames")
            };
            return Err(self.bad(
                t.span(),
                format!("{prefix}.{name}"),
                format!("is {mine} frames, longer than the clip leaves for it"),
                expected,
            ));
        }
        Ok((fade_in, fade_out))
    }

    /// start / in / duration / out → frames on the timeline, checked against
    /// the canvas.
    fn timing(
        &self,
        prefix: &str,
        header: Range<usize>,
        is_media: bool,
        raw: RawTiming<'_>,
        canvas: &Canvas,
        cursor: u64,
    ) -> Result<Timing, InputError> {
        let rate = canvas.frame_rate;
        let field = |name: &str| format!("{prefix}.{name}");
        let start = match raw.start {
            Some(t) => self.time(t, &field("start"), rate)?.to_frames(rate),
            None => cursor,
        };
        let in_seconds = match raw.in_point {
            Some(t) if !is_media => {
                return Err(self.bad(
                    t.span(),
                    field("in"),
                    "is a source in-point, which only media clips have",
                    "no `in` on a generator clip",
                ))
            }
            Some(t) => self.time(t, &field("in"), rate)?.seconds(rate),
            None => ExactSeconds { num: 0, den: 1 },
        };
        let after_start = |what: &str| {
            format!(
                "{what} that keeps the clip within the canvas ({} frames from frame {start})",
                canvas.frames.saturating_sub(start)
            )
        };
        let (frames, length_span) = match (raw.duration, raw.out) {
            (Some(_), Some(o)) => {
                return Err(self.bad(
                    o.span(),
                    field("out"),
                    "is given together with `duration`",
                    "either duration or out, not both",
                ))
            }
            (Some(d), None) => {
                let frames = self.time(d, &field("duration"), rate)?.to_frames(rate);
                if frames == 0 {
                    return Err(self.bad(
                        d.span(),
                        field("duration"),
                        format!("is shorter than one frame at {rate} fps"),
                        after_start("a duration of at least one frame"),
                    ));
                }
                (frames, Some((d.span(), "duration")))
            }
            (None, Some(o)) => {
                if !is_media {
                    return Err(self.bad(
                        o.span(),
                        field("out"),
                        "is a source out-point, which only media clips have",
                        "duration = \"…\" on a generator clip",
                    ));
                }
                let out = self.time(o, &field("out"), rate)?.seconds(rate);
                let length = out.checked_sub(in_seconds).ok_or_else(|| {
                    self.bad(
                        o.span(),
                        field("out"),
                        format!("is before the in-point ({} s)", in_seconds.as_f64()),
                        "an out-point after `in`",
                    )
                })?;
                let frames = if raw.speed == 1.0 {
                    length.to_frames(rate)
                } else {
                    (length.as_f64() / raw.speed * rate.as_f64()).round() as u64
                };
                if length.is_zero() || frames == 0 {
                    return Err(self.bad(
                        o.span(),
                        field("out"),
                        format!("is less than one frame after the in-point at {rate} fps"),
                        "an out-point at least one frame after `in`",
                    ));
                }
                (frames, Some((o.span(), "out")))
            }
            (None, None) if is_media => {
                return Err(self.missing(
                    Some(header),
                    field("duration"),
                    "duration = \"5s\" or out = \"7s\" (a media clip needs a length)",
                ))
            }
            (None, None) => {
                if start >= canvas.frames {
                    let e = match raw.start {
                        Some(t) => self.bad(
                            t.span(),
                            field("start"),
                            format!(
                                "is frame {start}, at or after the end of the canvas \
                                 ({} frames)",
                                canvas.frames
                            ),
                            format!("a start before frame {}", canvas.frames),
                        ),
                        None => InputError::new(
                            self.file,
                            format!(
                                "the clip starts at frame {start} (after the previous clip), \
                                 at or after the end of the canvas ({} frames)",
                                canvas.frames
                            ),
                        )
                        .at_byte(self.src, header.start)
                        .field(prefix)
                        .expected("clips that fit within the canvas duration"),
                    };
                    return Err(e);
                }
                (canvas.frames - start, None)
            }
        };
        let end = start + frames;
        if end > canvas.frames {
            let predicate = format!(
                "makes the clip end at frame {end}, after the end of the canvas ({} frames)",
                canvas.frames
            );
            let e = match (length_span, raw.start) {
                (Some((span, name)), _) => self.bad(
                    span,
                    field(name),
                    predicate,
                    after_start(&format!("a {name}")),
                ),
                (None, Some(t)) => self.bad(
                    t.span(),
                    field("start"),
                    predicate,
                    format!("a start before frame {}", canvas.frames),
                ),
                (None, None) => InputError::new(self.file, predicate)
                    .at_byte(self.src, header.start)
                    .field(prefix),
            };
            return Err(e);
        }
        Ok(Timing {
            start,
            frames,
            in_point: in_seconds.as_f64(),
        })
    }

    /// Sorts a track's clips by start and refuses overlaps that no
    /// `transition_in` covers exactly.
    fn check_overlaps<C>(&self, track: &str, placed: &mut [Placed<C>]) -> Result<(), InputError> {
        placed.sort_by_key(|p| p.start);
        for i in 0..placed.len() {
            let cur = &placed[i];
            let field = |name: &str| format!("{track}.clip[{}].{name}", cur.index);
            let Some(prev) = i.checked_sub(1).map(|j| &placed[j]) else {
                if let (Some(span), Some(_)) = (&cur.transition_span, &cur.transition) {
                    return Err(self.bad(
                        span.clone(),
                        field("transition_in"),
                        "dissolves from a previous clip, but this is the first clip on the track",
                        "no transition_in on the first clip of a track",
                    ));
                }
                continue;
            };
            let prev_end = prev.start + prev.frames;
            // Transitions pair two clips: a third may not start while the
            // clip two before it is still on screen.
            if let Some(older) = i.checked_sub(2).map(|j| &placed[j]) {
                let older_end = older.start + older.frames;
                if older_end > cur.start {
                    let predicate = format!(
                        "puts the clip at frame {} while clip[{}] is still on screen (to frame \
                         {older_end}): a track mixes at most two clips at once",
                        cur.start, older.index
                    );
                    let expected = format!(
                        "a start at or after frame {older_end}, or shorter transitions into \
                         clip[{}] and this clip",
                        prev.index
                    );
                    let span = cur
                        .start_span
                        .clone()
                        .or_else(|| cur.transition.as_ref().map(|t| t.1.clone()))
                        .unwrap_or_else(|| cur.header.clone());
                    return Err(self.bad(span, field("start"), predicate, expected));
                }
            }
            match &cur.transition {
                None if prev_end > cur.start => {
                    let overlap = prev_end - cur.start;
                    let overlaps = format!(
                        "overlaps clip[{}] (frames {}..{prev_end}) by {overlap} frames",
                        prev.index, prev.start
                    );
                    let expected = format!(
                        "a start at or after frame {prev_end}, or transition_in = {{ kind = \
                         \"dissolve\", duration = \"{overlap}f\" }} to dissolve over the overlap"
                    );
                    return Err(match &cur.start_span {
                        Some(span) => self.bad(
                            span.clone(),
                            field("start"),
                            format!("puts the clip at frame {}, so it {overlaps}", cur.start),
                            expected,
                        ),
                        None => InputError::new(
                            self.file,
                            format!(
                                "the clip starts at frame {} (where the clip before it in the \
                                 file ends), so it {overlaps}",
                                cur.start
                            ),
                        )
                        .at_byte(self.src, cur.header.start)
                        .field(format!("{track}.clip[{}]", cur.index))
                        .expected(expected),
                    });
                }
                None => {}
                Some((frames, span)) => {
                    let need = cur.start + frames;
                    let dfield = field("transition_in.duration");
                    if prev_end < need {
                        let available = prev_end.saturating_sub(cur.start);
                        return Err(self.bad(
                            span.clone(),
                            dfield,
                            format!(
                                "is {frames} frames, so the previous clip (clip[{}]) must cover \
                                 frames {}..{need}, but it ends at frame {prev_end}",
                                prev.index, cur.start
                            ),
                            if available > 0 {
                                format!(
                                    "a dissolve of {available} frames (\"{available}f\"), or a \
                                     previous clip that runs to frame {need}"
                                )
                            } else {
                                format!(
                                    "a previous clip that runs to frame {need}, or no \
                                     transition_in"
                                )
                            },
                        ));
                    }
                    if prev_end > need {
                        let overlap = prev_end - cur.start;
                        return Err(self.bad(
                            span.clone(),
                            dfield,
                            format!(
                                "is {frames} frames, but clip[{}] overlaps this clip by \
                                 {overlap} frames (to frame {prev_end})",
                                prev.index
                            ),
                            format!(
                                "a dissolve as long as the overlap: \"{overlap}f\", or clip[{}] \
                                 trimmed to end at frame {need}",
                                prev.index
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves a media path against the base directory and checks it lies
    /// inside the media roots and names a regular file. Whether the file
    /// exists is only revealed for paths inside the roots.
    fn media(&self, m: &Spanned<String>, field: &str) -> Result<PathBuf, InputError> {
        let text = m.get_ref();
        let roots = &self.roots;
        let inside = || {
            format!(
                "an existing media file inside the media roots: {}",
                roots.shown
            )
        };
        if text.trim().is_empty() || text.contains('\0') {
            return Err(self.bad(m.span(), field, "is not a file path", inside()));
        }
        let joined = roots.base.join(text);
        match std::fs::canonicalize(&joined) {
            Ok(path) => {
                if !roots.contains(&path) {
                    return Err(self.outside(m, field));
                }
                if !path.is_file() {
                    return Err(self.bad(
                        m.span(),
                        field,
                        format!("is not a regular file ({})", path.display()),
                        inside(),
                    ));
                }
                // Readable now, or the job would fail later as a render
                // error, far from the line that names the file.
                if let Err(e) = std::fs::File::open(&path) {
                    return Err(self.bad(
                        m.span(),
                        field,
                        format!("cannot be read ({}: {e})", path.display()),
                        "a media file this host's user can read",
                    ));
                }
                Ok(path)
            }
            Err(_) => {
                let lexical = normalize(&joined);
                if !roots.contains(&lexical) {
                    return Err(self.outside(m, field));
                }
                Err(self.bad(
                    m.span(),
                    field,
                    format!("names a file that does not exist ({})", lexical.display()),
                    inside(),
                ))
            }
        }
    }

    fn outside(&self, m: &Spanned<String>, field: &str) -> InputError {
        self.bad(
            m.span(),
            field,
            "is outside the media roots",
            format!(
                "a path to a file inside the media roots: {} (relative paths resolve against {})",
                self.roots.shown,
                self.roots.base.display()
            ),
        )
    }

    /// The watch root's default presets as deliverables, for a manifest
    /// that names none. The host checks its configuration for these rules;
    /// they are checked again here because a library caller may not have.
    fn default_deliverables(&self) -> Result<Vec<DeliverableRequest>, InputError> {
        let mut names: HashMap<String, &str> = HashMap::new();
        let mut out = Vec::with_capacity(self.default_presets.len());
        for id in self.default_presets {
            let problem = if !valid_preset_id(id) {
                Some("is not a preset id".to_owned())
            } else {
                let name = id.rsplit('/').next().unwrap_or(id);
                names.insert(name.to_lowercase(), id).map(|other| {
                    format!(
                        "gives the deliverable name \"{name}\", as the default preset {other} does"
                    )
                })
            };
            if let Some(problem) = problem {
                return Err(InputError::new(
                    self.file,
                    format!(
                        "the manifest names no [[deliverable]], and the watch root's default \
                         preset \"{id}\" {problem}"
                    ),
                )
                .at(1, 1)
                .field("deliverable")
                .value(format!("\"{id}\""))
                .expected(
                    "default presets with distinct last components (set the root's presets), \
                     or [[deliverable]] entries in the manifest",
                ));
            }
            out.push(DeliverableRequest {
                preset: id.clone(),
                name: id.rsplit('/').next().unwrap_or(id).to_owned(),
                overrides: toml::Table::new(),
                // No [[deliverable]] line: preset errors point at the top.
                line: 1,
            });
        }
        Ok(out)
    }

    fn deliverable(
        &self,
        i: usize,
        d: Spanned<RawDeliverable>,
    ) -> Result<(DeliverableRequest, Range<usize>, String), InputError> {
        let header = d.span();
        let d = d.into_inner();
        let pfield = format!("deliverable[{i}].preset");
        let preset = d.preset.as_ref().ok_or_else(|| {
            self.missing(
                Some(header.clone()),
                &pfield,
                "a preset id such as \"web/h264-1080p\"",
            )
        })?;
        if !valid_preset_id(preset.get_ref()) {
            return Err(self.bad(
                preset.span(),
                &pfield,
                "is not a preset id",
                "lowercase letters, digits, _ and -, in segments separated by /, e.g. \
                 \"web/h264-1080p\"",
            ));
        }
        let (name, name_span, name_field) = match &d.name {
            Some(n) => {
                let nfield = format!("deliverable[{i}].name");
                let s = n.get_ref();
                let ok = !s.is_empty()
                    && s.len() <= 64
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return Err(self.bad(
                        n.span(),
                        nfield,
                        "is not a usable output name",
                        "1 to 64 of A-Z, a-z, 0-9, _ and -",
                    ));
                }
                (s.clone(), n.span(), nfield)
            }
            None => (preset.get_ref().replace('/', "_"), preset.span(), pfield),
        };
        let overrides = d.overrides.map(Spanned::into_inner).unwrap_or_default();
        Ok((
            DeliverableRequest {
                preset: preset.get_ref().clone(),
                name,
                overrides,
                line: line_col(self.src, header.start).0,
            },
            name_span,
            name_field,
        ))
    }
}

/// `[a-z0-9_-]+` segments separated by single `/`.
pub(crate) fn valid_preset_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
}

pub(crate) fn valid_manifest_name(s: &str) -> bool {
    let n = s.chars().count();
    (1..=100).contains(&n)
        && !s.starts_with('.')
        && !s.trim().is_empty()
        && !s.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

/// The file stem, with anything that would not be a usable name replaced.
pub(crate) fn default_manifest_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(100)
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_owned();
    if cleaned.trim().is_empty() {
        "manifest".to_owned()
    } else {
        cleaned
    }
}

/// `#rrggbb` (opaque) or `#rrggbbaa`.
pub(crate) fn parse_rgba(s: &str) -> Option<Rgba> {
    let hex = s.strip_prefix('#')?;
    if !(hex.len() == 6 || hex.len() == 8) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    let alpha = if hex.len() == 8 { byte(6)? } else { 255 };
    Some(Rgba([byte(0)?, byte(2)?, byte(4)?, alpha]))
}

#[cfg(test)]
#[path = "video_tests.rs"]
mod video_tests;
