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
    AudioClip, AudioSource, AudioTrack, Canvas, DeliverableRequest, Manifest, Param, Rate, Rgba,
    Transition, TransitionKind, VideoClip, VideoSource, VideoTrack,
};
use super::raw::{
    RawAudioClip, RawAudioTrack, RawCanvas, RawDeliverable, RawManifest, RawNumberOrText, RawTime,
    RawVideoClip, RawVideoTrack,
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
const MAX_CANVAS_SECONDS: u64 = 24 * 3600;
/// Largest |position| in canvas pixels: far beyond any canvas (8192), small
/// enough that f32 still has sub-pixel precision.
const MAX_POSITION: f64 = 100_000.0;

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

        let colour_space = c
            .colour_space
            .as_ref()
            .ok_or_else(|| self.missing(Some(span.clone()), "canvas.colour_space", "\"bt709\""))?;
        if colour_space.get_ref() != "bt709" {
            return Err(self.bad(
                colour_space.span(),
                "canvas.colour_space",
                "is not supported in manifest v1",
                "\"bt709\" (the only colour space in manifest v1)",
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
        let channels = match &c.channels {
            Some(ch) => self.int_in(ch, "canvas.channels", 1..=2, "1 (mono) or 2 (stereo)")? as u32,
            None => 2,
        };
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

        let source =
            match (&c.generator, &c.media) {
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
                        "exactly one of generator = \"bars\" | \"solid\" | \"pattern\" or \
                     media = \"path/to/file\"",
                    ))
                }
                (None, Some(m)) => VideoSource::Media {
                    path: self.media(m, &field("media"))?,
                },
                (Some(g), None) => match g.get_ref().as_str() {
                    "bars" => VideoSource::Bars,
                    "pattern" => VideoSource::Pattern,
                    "solid" => {
                        let color = c.color.as_ref().ok_or_else(|| {
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
                    _ => return Err(self.bad(
                        g.span(),
                        field("generator"),
                        "is not a video generator",
                        "one of \"bars\", \"solid\", \"pattern\" (or media = \"path\" for a file)",
                    )),
                },
            };
        if let (Some(color), false) = (&c.color, matches!(source, VideoSource::Solid { .. })) {
            return Err(self.bad(
                color.span(),
                field("color"),
                "is only used by generator = \"solid\"",
                "no color on this clip, or generator = \"solid\"",
            ));
        }
        let is_media = matches!(source, VideoSource::Media { .. });
        let timing = self.timing(
            &prefix,
            header.clone(),
            is_media,
            RawTiming {
                start: c.start.as_ref(),
                in_point: c.in_point.as_ref(),
                duration: c.duration.as_ref(),
                out: c.out.as_ref(),
            },
            canvas,
            cursor,
        )?;

        let opacity = match &c.opacity {
            Some(o) => self.float_in(o, &field("opacity"), 0.0..=1.0, "a number from 0 to 1")?,
            None => 1.0,
        };
        let position = match &c.position {
            Some(p) => {
                let expected = "[x, y] in canvas pixels, each finite and from -100000 to 100000";
                let v = p.get_ref();
                if v.len() != 2 {
                    return Err(self.bad(
                        p.span(),
                        field("position"),
                        format!("has {} numbers", v.len()),
                        expected,
                    ));
                }
                if v.iter().any(|x| !x.is_finite() || x.abs() > MAX_POSITION) {
                    return Err(self.bad(p.span(), field("position"), "is out of range", expected));
                }
                [v[0] as f32, v[1] as f32]
            }
            None => [0.0, 0.0],
        };
        let scale = match &c.scale {
            Some(s) => {
                let expected = "a number greater than 0 and at most 16";
                let x = self.float_in(s, &field("scale"), 0.0..=16.0, expected)?;
                if x <= 0.0 {
                    return Err(self.bad(s.span(), field("scale"), "is out of range", expected));
                }
                x
            }
            None => 1.0,
        };

        let mut transition = None;
        let mut transition_span = None;
        if let Some(t) = &c.transition_in {
            let tspan = t.span();
            let t = t.get_ref();
            let kind = t.kind.as_ref().ok_or_else(|| {
                self.missing(
                    Some(tspan.clone()),
                    field("transition_in.kind"),
                    "\"dissolve\"",
                )
            })?;
            if kind.get_ref() != "dissolve" {
                return Err(self.bad(
                    kind.span(),
                    field("transition_in.kind"),
                    "is not a transition this host knows",
                    "\"dissolve\" (the only transition in manifest v1)",
                ));
            }
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
                opacity: Param::constant(opacity as f32),
                position: position.map(Param::constant),
                scale: Param::constant(scale as f32),
                transition_in: transition.as_ref().map(|(frames, _)| Transition {
                    kind: TransitionKind::Dissolve,
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
            },
            canvas,
            cursor,
        )?;
        let gain_db = match &c.gain_db {
            Some(g) => self.float_in(g, &field("gain_db"), -96.0..=24.0, GAIN_EXPECTED)?,
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
                fade_in: 0,
                fade_out: 0,
                pan: 0.0,
            },
            start: timing.start,
            frames: timing.frames,
            header,
            start_span: c.start.as_ref().map(Spanned::span),
            transition: None,
            transition_span: None,
        })
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
                let frames = length.to_frames(rate);
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
