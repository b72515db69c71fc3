//! OpenTimelineIO timelines (`.otio`, JSON) read into the same validated
//! [`Manifest`] that TOML manifests become.
//!
//! What maps to what:
//!
//! | OTIO | manifest |
//! | --- | --- |
//! | `Timeline.1` | the manifest; `metadata.deliver` may hold `canvas`, `deliverables`, `name`, `priority` |
//! | `Stack.1` | layers: children bottom to top |
//! | `Track.1` kind `Video` / `Audio` | a [`VideoTrack`] / [`AudioTrack`]; a nested `Stack` inside a track adds layers above it (`name.2`, …) |
//! | `Clip.1` / `Clip.2` | a [`VideoClip`] / [`AudioClip`] |
//! | `ExternalReference.1` | [`VideoSource::Media`] (a `file://` URL or a path, relative to the `.otio` file's folder, inside the media roots) |
//! | `ImageSequenceReference.1` | [`VideoSource::ImageSequence`] |
//! | `GeneratorReference.1` | `SolidColor`/`solid` (parameter `color`), `SMPTEBars`/`bars`, `pattern` |
//! | `Gap.1`, a disabled item | nothing: the canvas background |
//! | `Transition.1` `SMPTE_Dissolve` | [`TransitionKind::Dissolve`] over `in_offset + out_offset` on the incoming clip |
//! | `LinearTimeWarp.1`, `FreezeFrame.1` | [`VideoClip::speed`] (`time_scalar`, 0) |
//! | markers, `global_start_time` | warnings in [`Manifest::warnings`] |
//!
//! # Time
//!
//! Every OTIO time (`value` at `rate`) is read as an exact fraction of a
//! second: integral values exactly, others as the nearest fraction with a
//! denominator of at most 10 000; rates that are integers, or NTSC rates
//! written as decimals (23.976…, 29.97…), become exact fractions (24000/1001).
//! Clips are placed and trimmed in that exact time; only at the end is each
//! edit point (clip start, clip end, end of a dissolve) converted to a canvas
//! frame, each on its own, rounded to the nearest frame with halves rounded
//! up (as TOML times are). Two clips that meet in OTIO therefore meet on the
//! canvas: no gap or overlap is ever made by rounding. A clip's source
//! in-point is moved by the amount its start was rounded (times its speed),
//! so that every canvas frame `n` shows the source at exactly
//! `in + (n − start) / rate · speed`.
//!
//! # Canvas
//!
//! `metadata.deliver.canvas` as in a TOML manifest (`width`, `height`,
//! `frame_rate`, `background`, `sample_rate`, `channels`, `colour_space`;
//! not `duration`, which is the timeline's). Without a size: the first
//! video clip's picture size, read through the decoder plugins
//! ([`LoadContext::probe`]; rounded up to even), else 1920×1080. Without a
//! rate: the first video clip's (its `source_range`, else its media's
//! `available_range`), 25 fps if there is none. Media are fitted into the
//! canvas ([`Fit::Fit`]), as an editing system conforms a source to its
//! sequence.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::InputError;
use super::model::{
    AudioClip, AudioSource, AudioTrack, Canvas, DeliverableRequest, Fit, ImageSequence, Key,
    Manifest, Param, Rate, Rgba, Transition, TransitionKind, VideoClip, VideoSource, VideoTrack,
};
use super::time::{self, RateInput};
use super::validate::{self, MediaRoots};
use super::LoadContext;

/// Canvas size when the timeline says none.
pub const DEFAULT_SIZE: (u32, u32) = (1920, 1080);

// ---------------------------------------------------------------------------
// Exact time
// ---------------------------------------------------------------------------

/// An exact rational number of seconds (or a rate, or a speed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Q {
    num: i128,
    den: i128,
}

fn gcd(a: i128, b: i128) -> i128 {
    let (mut a, mut b) = (a.abs(), b.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

impl Q {
    pub const ZERO: Q = Q { num: 0, den: 1 };

    pub fn new(num: i128, den: i128) -> Q {
        debug_assert!(den != 0);
        let s = if den < 0 { -1 } else { 1 };
        let g = gcd(num, den);
        Q {
            num: s * num / g,
            den: s * den / g,
        }
    }

    pub fn int(n: i128) -> Q {
        Q { num: n, den: 1 }
    }

    pub fn plus(self, o: Q) -> Q {
        Q::new(self.num * o.den + o.num * self.den, self.den * o.den)
    }

    pub fn minus(self, o: Q) -> Q {
        Q::new(self.num * o.den - o.num * self.den, self.den * o.den)
    }

    pub fn times(self, o: Q) -> Q {
        Q::new(self.num * o.num, self.den * o.den)
    }

    /// `self / o`; `o` must not be zero.
    pub fn over(self, o: Q) -> Q {
        Q::new(self.num * o.den, self.den * o.num)
    }

    pub fn is_negative(self) -> bool {
        self.num < 0
    }

    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    pub fn max(self, o: Q) -> Q {
        if self >= o {
            self
        } else {
            o
        }
    }

    pub fn min(self, o: Q) -> Q {
        if self <= o {
            self
        } else {
            o
        }
    }

    /// Nearest integer, halves rounded up (towards +∞).
    pub fn round_half_up(self) -> i128 {
        (2 * self.num + self.den).div_euclid(2 * self.den)
    }

    /// The canvas frame nearest to this time, halves rounded up.
    pub fn to_frame(self, rate: Rate) -> i128 {
        self.times(Q::new(rate.num.into(), rate.den.into()))
            .round_half_up()
    }

    /// Nearest fraction with a denominator of at most `max_den` (continued
    /// fractions); `None` for values that are not finite or too large.
    pub fn approximate(x: f64, max_den: i128) -> Option<Q> {
        if !x.is_finite() || x.abs() > 1e15 {
            return None;
        }
        if (x - x.round()).abs() < 1e-9 {
            return Some(Q::int(x.round() as i128));
        }
        let (mut p0, mut q0, mut p1, mut q1) = (0i128, 1i128, 1i128, 0i128);
        let mut r = x;
        for _ in 0..64 {
            let a = r.floor();
            let ai = a as i128;
            let (p2, q2) = (ai * p1 + p0, ai * q1 + q0);
            if q2 > max_den {
                break;
            }
            (p0, q0, p1, q1) = (p1, q1, p2, q2);
            let frac = r - a;
            if frac.abs() < 1e-12 || ((p1 as f64 / q1 as f64) - x).abs() < 1e-12 * x.abs() {
                break;
            }
            r = 1.0 / frac;
        }
        (q1 != 0).then(|| Q::new(p1, q1))
    }
}

impl PartialOrd for Q {
    fn partial_cmp(&self, o: &Q) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Q {
    fn cmp(&self, o: &Q) -> std::cmp::Ordering {
        (self.num * o.den).cmp(&(o.num * self.den))
    }
}

/// An OTIO rate (a double) as an exact frame rate: integers, NTSC rates
/// written as decimals (`23.976023976023978` → 24000/1001), or a fraction
/// with a denominator of at most 10 000 that matches to 1e-9.
pub fn exact_rate(r: f64) -> Option<Q> {
    if !r.is_finite() || r <= 0.0 || r > 1e6 {
        return None;
    }
    if (r - r.round()).abs() < 1e-6 {
        return Some(Q::int(r.round() as i128));
    }
    let ntsc = r * 1001.0 / 1000.0;
    if (ntsc - ntsc.round()).abs() < 1e-6 * r {
        return Some(Q::new(ntsc.round() as i128 * 1000, 1001));
    }
    Q::approximate(r, 10_000).filter(|q| (q.as_f64() - r).abs() <= 1e-9 * r)
}

// ---------------------------------------------------------------------------
// The reader
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Video,
    Audio,
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Media(PathBuf),
    Sequence(ImageSequence),
    Bars,
    Solid(Rgba),
    Pattern,
}

/// A clip placed in exact time, before it is conformed to the canvas.
#[derive(Debug, Clone)]
struct Piece {
    source: Source,
    /// Timeline seconds of its first and end instants.
    start: Q,
    end: Q,
    /// Source seconds (from the start of the media) shown at `start`.
    src: Q,
    speed: Q,
    /// Dissolve in from the clip below / before it: its length.
    dissolve_in: Option<Q>,
    /// Fade to the background over this much at the end (a dissolve into a gap).
    fade_out: Option<Q>,
    /// Clip name and JSON path, for messages.
    what: String,
}

impl Piece {
    /// Trimmed to the window `[from, to)` of its composition's time.
    fn trimmed(mut self, from: Q, to: Q) -> Option<Piece> {
        let start = self.start.max(from);
        let end = self.end.min(to);
        if start >= end {
            return None;
        }
        if let Some(d) = self.dissolve_in {
            let dend = self.start.plus(d);
            self.dissolve_in = (dend > start).then(|| dend.minus(start));
        }
        if let Some(f) = self.fade_out {
            let fstart = self.end.minus(f);
            self.fade_out = (fstart < end).then(|| end.minus(fstart.max(start)));
        }
        self.src = self.src.plus(start.minus(self.start).times(self.speed));
        self.start = start;
        self.end = end;
        Some(self)
    }

    fn shifted(mut self, by: Q) -> Piece {
        self.start = self.start.plus(by);
        self.end = self.end.plus(by);
        self
    }
}

/// One layer of a composition: its pieces, in no particular order.
#[derive(Debug, Clone)]
struct Layer {
    kind: Kind,
    name: String,
    pieces: Vec<Piece>,
}

/// Something placed on a track: how long it is and what it holds.
enum Item {
    Clip(Box<Piece>, Kind),
    Gap,
    Nested(Vec<Layer>),
    Transition { in_offset: Q, out_offset: Q },
}

struct Reader<'a> {
    file: &'a Path,
    roots: MediaRoots,
    warnings: Vec<String>,
    /// Rate of the first video clip, for the default canvas.
    first_rate: Option<Q>,
    /// The first video clip's media file (or first image), for the default canvas size.
    first_media: Option<PathBuf>,
}

fn schema_of(v: &Value) -> Option<(&str, u32)> {
    let s = v.get("OTIO_SCHEMA")?.as_str()?;
    let (name, version) = s.rsplit_once('.')?;
    Some((name, version.parse().ok()?))
}

const KNOWN_ITEMS: &str = "Clip.1, Clip.2, Gap.1, Transition.1, Stack.1 or Track.1";

impl Reader<'_> {
    fn err(&self, path: &str, message: impl Into<String>) -> InputError {
        InputError::new(self.file, message).field(path)
    }

    fn unknown_schema(&self, v: &Value, path: &str, expected: &str) -> InputError {
        let (message, value) = match v.get("OTIO_SCHEMA") {
            Some(Value::String(s)) => (
                format!("schema \"{s}\" is not one this host reads"),
                format!("\"{s}\""),
            ),
            Some(other) => (
                format!("OTIO_SCHEMA {other} is not a schema name"),
                other.to_string(),
            ),
            None => ("the object has no OTIO_SCHEMA".to_owned(), snippet(v)),
        };
        self.err(path, message).value(value).expected(expected)
    }

    fn obj<'v>(
        &self,
        v: &'v Value,
        path: &str,
    ) -> Result<&'v serde_json::Map<String, Value>, InputError> {
        v.as_object().ok_or_else(|| {
            self.err(path, format!("value {} is not an object", snippet(v)))
                .value(snippet(v))
                .expected("a JSON object")
        })
    }

    /// An OTIO `RationalTime` as exact seconds (`None` for null or absent).
    fn time(&self, v: Option<&Value>, path: &str) -> Result<Option<(Q, Q)>, InputError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let o = self.obj(v, path)?;
        if let Some((name, _)) = schema_of(v) {
            if name != "RationalTime" {
                return Err(self.unknown_schema(v, path, "RationalTime.1"));
            }
        }
        let num = |key: &str| -> Result<f64, InputError> {
            o.get(key).and_then(Value::as_f64).ok_or_else(|| {
                self.err(
                    &format!("{path}.{key}"),
                    format!(
                        "value {} is not a number",
                        o.get(key).map_or("(missing)".into(), snippet)
                    ),
                )
                .expected("a number")
            })
        };
        let (value, rate) = (num("value")?, num("rate")?);
        let rate_q = exact_rate(rate).ok_or_else(|| {
            self.err(
                &format!("{path}.rate"),
                format!("value {rate} is not a usable rate"),
            )
            .value(rate.to_string())
            .expected("a positive rate: an integer, an NTSC rate (23.976…) or a simple fraction")
        })?;
        let value_q = Q::approximate(value, 10_000).ok_or_else(|| {
            self.err(
                &format!("{path}.value"),
                format!("value {value} is not a usable time"),
            )
            .value(value.to_string())
            .expected("a finite number")
        })?;
        Ok(Some((value_q.over(rate_q), rate_q)))
    }

    /// A `TimeRange`: (start seconds, duration seconds, rate of the duration).
    fn range(&self, v: Option<&Value>, path: &str) -> Result<Option<(Q, Q, Q)>, InputError> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let o = self.obj(v, path)?;
        if let Some((name, _)) = schema_of(v) {
            if name != "TimeRange" {
                return Err(self.unknown_schema(v, path, "TimeRange.1"));
            }
        }
        let missing = |k: &str| {
            self.err(&format!("{path}.{k}"), "required field is missing")
                .expected("a RationalTime")
        };
        let (start, _) = self
            .time(o.get("start_time"), &format!("{path}.start_time"))?
            .ok_or_else(|| missing("start_time"))?;
        let (dur, rate) = self
            .time(o.get("duration"), &format!("{path}.duration"))?
            .ok_or_else(|| missing("duration"))?;
        if dur.is_negative() {
            return Err(self
                .err(&format!("{path}.duration"), "the duration is negative")
                .expected("a duration of 0 or more"));
        }
        Ok(Some((start, dur, rate)))
    }

    fn enabled(v: &Value) -> bool {
        v.get("enabled").and_then(Value::as_bool).unwrap_or(true)
    }

    fn name_of(v: &Value) -> String {
        v.get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .unwrap_or_default()
    }

    fn markers(&mut self, v: &Value, path: &str) {
        if let Some(m) = v.get("markers").and_then(Value::as_array) {
            if !m.is_empty() {
                let names: Vec<String> = m
                    .iter()
                    .map(|m| format!("\"{}\"", Self::name_of(m)))
                    .collect();
                self.warnings.push(format!(
                    "{path}: {} marker(s) ignored ({}): markers are not rendered",
                    m.len(),
                    names.join(", ")
                ));
            }
        }
    }

    /// Effects on something that is not a clip: none are supported.
    fn no_effects(&self, v: &Value, path: &str) -> Result<(), InputError> {
        if let Some(e) = v
            .get("effects")
            .and_then(Value::as_array)
            .and_then(|e| e.iter().position(Self::enabled).map(|i| (i, &e[i])))
        {
            let schema =
                e.1.get("OTIO_SCHEMA")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
            return Err(self
                .err(
                    &format!("{path}.effects[{}]", e.0),
                    format!("effect {schema} on a track or stack is not supported"),
                )
                .value(format!("\"{schema}\""))
                .expected("effects only on clips: LinearTimeWarp.1 or FreezeFrame.1"));
        }
        Ok(())
    }

    /// The layers of a `Stack` (children bottom to top) and its duration.
    fn stack(&mut self, v: &Value, path: &str) -> Result<(Vec<Layer>, Q), InputError> {
        self.markers(v, path);
        self.no_effects(v, path)?;
        let children = self.children(v, path)?;
        let mut layers = Vec::new();
        let mut duration = Q::ZERO;
        for (i, c) in children.iter().enumerate() {
            let cpath = format!("{path}.children[{i}]");
            let (ls, d) = match schema_of(c) {
                Some(("Track", 1)) => self.track(c, &cpath)?,
                Some(("Stack", 1)) => self.stack(c, &cpath)?,
                Some(("Clip", 1 | 2)) => {
                    let (item, d) = self.clip(c, &cpath, Kind::Video)?;
                    let layer = match item {
                        Item::Clip(p, kind) => vec![Layer {
                            kind,
                            name: Self::name_of(c),
                            pieces: vec![*p],
                        }],
                        _ => Vec::new(),
                    };
                    (layer, d)
                }
                Some(("Gap", 1)) => (Vec::new(), self.gap(c, &cpath)?),
                _ => {
                    return Err(self.unknown_schema(c, &cpath, "Track.1, Stack.1, Clip.2 or Gap.1"))
                }
            };
            duration = duration.max(d);
            layers.extend(ls);
        }
        self.windowed(v, path, layers, duration)
    }

    fn children<'v>(&self, v: &'v Value, path: &str) -> Result<&'v Vec<Value>, InputError> {
        match v.get("children") {
            Some(Value::Array(a)) => Ok(a),
            other => Err(self
                .err(
                    &format!("{path}.children"),
                    format!(
                        "value {} is not a list",
                        other.map_or("(missing)".into(), snippet)
                    ),
                )
                .expected("a list of children")),
        }
    }

    /// Applies a composition's `source_range`: keeps what lies in the
    /// window and moves it to start at 0.
    fn windowed(
        &self,
        v: &Value,
        path: &str,
        layers: Vec<Layer>,
        duration: Q,
    ) -> Result<(Vec<Layer>, Q), InputError> {
        let Some((start, dur, _)) =
            self.range(v.get("source_range"), &format!("{path}.source_range"))?
        else {
            return Ok((layers, duration));
        };
        let end = start.plus(dur);
        let layers = layers
            .into_iter()
            .map(|l| Layer {
                pieces: l
                    .pieces
                    .into_iter()
                    .filter_map(|p| p.trimmed(start, end))
                    .map(|p| p.shifted(Q::ZERO.minus(start)))
                    .collect(),
                ..l
            })
            .collect();
        Ok((layers, dur))
    }

    fn gap(&mut self, v: &Value, path: &str) -> Result<Q, InputError> {
        self.markers(v, path);
        self.no_effects(v, path)?;
        let r = self.range(v.get("source_range"), &format!("{path}.source_range"))?;
        r.map(|(_, d, _)| d).ok_or_else(|| {
            self.err(
                &format!("{path}.source_range"),
                "a gap needs a source_range",
            )
            .expected("a TimeRange giving the gap's duration")
        })
    }

    /// The layers of a `Track` (its own clips first, then layers of nested
    /// stacks above them) and its duration.
    fn track(&mut self, v: &Value, path: &str) -> Result<(Vec<Layer>, Q), InputError> {
        self.markers(v, path);
        self.no_effects(v, path)?;
        let kind = match v.get("kind").and_then(Value::as_str) {
            Some("Video") => Kind::Video,
            Some("Audio") => Kind::Audio,
            other => {
                return Err(self
                    .err(
                        &format!("{path}.kind"),
                        format!(
                            "track kind {} is not supported",
                            other.map_or("(missing)".into(), |s| format!("\"{s}\""))
                        ),
                    )
                    .expected("\"Video\" or \"Audio\""))
            }
        };
        let name = Self::name_of(v);
        let children = self.children(v, path)?;
        // First pass: every item and where it starts.
        let mut items: Vec<(Item, Q, Q, String)> = Vec::with_capacity(children.len());
        let mut t = Q::ZERO;
        for (i, c) in children.iter().enumerate() {
            let cpath = format!("{path}.children[{i}]");
            let (item, d) = match schema_of(c) {
                Some(("Clip", 1 | 2)) => self.clip(c, &cpath, kind)?,
                Some(("Gap", 1)) => (Item::Gap, self.gap(c, &cpath)?),
                Some(("Transition", 1)) => (self.transition(c, &cpath)?, Q::ZERO),
                Some(("Stack", 1)) => {
                    let (l, d) = self.stack(c, &cpath)?;
                    (
                        if Self::enabled(c) {
                            Item::Nested(l)
                        } else {
                            Item::Gap
                        },
                        d,
                    )
                }
                Some(("Track", 1)) => {
                    let (l, d) = self.track(c, &cpath)?;
                    (
                        if Self::enabled(c) {
                            Item::Nested(l)
                        } else {
                            Item::Gap
                        },
                        d,
                    )
                }
                _ => return Err(self.unknown_schema(c, &cpath, KNOWN_ITEMS)),
            };
            items.push((item, t, d, cpath));
            t = t.plus(d);
        }
        let duration = t;
        // Second pass: transitions reach into their neighbours.
        for i in 0..items.len() {
            let Item::Transition {
                in_offset,
                out_offset,
            } = items[i].0
            else {
                continue;
            };
            let tpath = items[i].3.clone();
            let prev = i.checked_sub(1);
            let next = (i + 1 < items.len()).then_some(i + 1);
            let (Some(prev), Some(next)) = (prev, next) else {
                return Err(self
                    .err(&tpath, "a transition at the start or end of a track has nothing to dissolve between")
                    .expected("a transition between two items of the track"));
            };
            let total = in_offset.plus(out_offset);
            let (before, after) = items.split_at_mut(next);
            match (&mut before[prev].0, &mut after[0].0) {
                (Item::Transition { .. }, _) | (_, Item::Transition { .. }) => {
                    return Err(self
                        .err(&tpath, "two transitions in a row")
                        .expected("an item between two transitions"))
                }
                (Item::Nested(_), _) | (_, Item::Nested(_)) => {
                    return Err(self
                        .err(
                            &tpath,
                            "a transition to or from a nested stack or track is not supported",
                        )
                        .expected("a transition between two clips, or a clip and a gap"))
                }
                (Item::Gap, Item::Gap) => {}
                (Item::Clip(out, _), Item::Gap) => {
                    self.extend_tail(out, out_offset, &tpath)?;
                    out.fade_out = Some(total);
                }
                (Item::Gap, Item::Clip(inc, _)) => {
                    self.extend_head(inc, in_offset, &tpath)?;
                    inc.dissolve_in = Some(total);
                }
                (Item::Clip(out, _), Item::Clip(inc, _)) => {
                    self.extend_tail(out, out_offset, &tpath)?;
                    self.extend_head(inc, in_offset, &tpath)?;
                    inc.dissolve_in = Some(total);
                }
            }
        }
        // Flatten: own clips on layer 0 of each kind, nested layers above.
        let mut layers: Vec<Layer> = Vec::new();
        let slot = |kind: Kind, ordinal: usize, layers: &mut Vec<Layer>| -> usize {
            let mut seen = 0;
            for (j, l) in layers.iter().enumerate() {
                if l.kind == kind {
                    if seen == ordinal {
                        return j;
                    }
                    seen += 1;
                }
            }
            let suffix = if ordinal == 0 {
                String::new()
            } else {
                format!(".{}", ordinal + 1)
            };
            layers.push(Layer {
                kind,
                name: format!("{name}{suffix}"),
                pieces: Vec::new(),
            });
            layers.len() - 1
        };
        slot(kind, 0, &mut layers);
        for (item, start, _, _) in items {
            match item {
                Item::Clip(p, k) => {
                    let j = slot(k, 0, &mut layers);
                    layers[j].pieces.push((*p).shifted(start));
                }
                Item::Nested(nested) => {
                    let mut ordinals: HashMap<Kind, usize> = HashMap::new();
                    for l in nested {
                        let o = ordinals.entry(l.kind).or_insert(0);
                        let j = slot(l.kind, *o, &mut layers);
                        *o += 1;
                        layers[j]
                            .pieces
                            .extend(l.pieces.into_iter().map(|p| p.shifted(start)));
                    }
                }
                Item::Gap | Item::Transition { .. } => {}
            }
        }
        self.windowed(v, path, layers, duration)
    }

    fn extend_head(&self, p: &mut Piece, by: Q, tpath: &str) -> Result<(), InputError> {
        p.start = p.start.minus(by);
        p.src = p.src.minus(by.times(p.speed));
        if p.src.is_negative() && matches!(p.source, Source::Media(_) | Source::Sequence(_)) {
            return Err(self
                .err(
                    tpath,
                    format!(
                        "the dissolve starts {:.3} s before the cut, but clip {} has only {:.3} s \
                         of media before its in-point",
                        by.as_f64(),
                        p.what,
                        p.src.plus(by.times(p.speed)).as_f64()
                    ),
                )
                .expected("an in_offset no longer than the incoming clip's head handle"));
        }
        Ok(())
    }

    fn extend_tail(&self, p: &mut Piece, by: Q, _tpath: &str) -> Result<(), InputError> {
        p.end = p.end.plus(by);
        Ok(())
    }

    fn transition(&mut self, v: &Value, path: &str) -> Result<Item, InputError> {
        let kind = v
            .get("transition_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        if kind != "SMPTE_Dissolve" {
            return Err(self
                .err(
                    &format!("{path}.transition_type"),
                    format!("transition type \"{kind}\" is not supported"),
                )
                .value(format!("\"{kind}\""))
                .expected("\"SMPTE_Dissolve\""));
        }
        let get = |s: &Self, key: &str| -> Result<Q, InputError> {
            let (t, _) = s
                .time(v.get(key), &format!("{path}.{key}"))?
                .ok_or_else(|| {
                    s.err(&format!("{path}.{key}"), "required field is missing")
                        .expected("a RationalTime")
                })?;
            if t.is_negative() {
                return Err(s
                    .err(&format!("{path}.{key}"), "the offset is negative")
                    .expected("an offset of 0 or more"));
            }
            Ok(t)
        };
        Ok(Item::Transition {
            in_offset: get(self, "in_offset")?,
            out_offset: get(self, "out_offset")?,
        })
    }

    /// A clip: its piece (in its own time, starting at 0) and its duration.
    fn clip(&mut self, v: &Value, path: &str, kind: Kind) -> Result<(Item, Q), InputError> {
        self.markers(v, path);
        let name = Self::name_of(v);
        let what = if name.is_empty() {
            format!("at {path}")
        } else {
            format!("\"{name}\" ({path})")
        };
        // The media reference in use.
        let (reference, rpath) = match v.get("media_references") {
            Some(Value::Object(refs)) if !refs.is_empty() => {
                let key = v
                    .get("active_media_reference_key")
                    .and_then(Value::as_str)
                    .unwrap_or("DEFAULT_MEDIA");
                let r = refs.get(key).ok_or_else(|| {
                    self.err(
                        &format!("{path}.active_media_reference_key"),
                        format!("clip {what} has no media reference \"{key}\""),
                    )
                    .value(format!("\"{key}\""))
                    .expected(format!(
                        "one of its media_references: {}",
                        refs.keys().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ")
                    ))
                })?;
                (r, format!("{path}.media_references.{key}"))
            }
            _ => match v.get("media_reference") {
                Some(r) if !r.is_null() => (r, format!("{path}.media_reference")),
                _ => {
                    return Err(self
                        .err(path, format!("clip {what} has no media reference"))
                        .expected("a media_reference (ExternalReference, ImageSequenceReference or GeneratorReference)"))
                }
            },
        };
        let available = self.range(
            reference.get("available_range"),
            &format!("{rpath}.available_range"),
        )?;
        let source_range = self.range(v.get("source_range"), &format!("{path}.source_range"))?;
        let (sr_start, sr_dur, sr_rate) = match source_range.or(available) {
            Some(r) => r,
            None => {
                return Err(self
                    .err(
                        &format!("{path}.source_range"),
                        format!("clip {what} has neither a source_range nor media with an available_range, so its length is unknown"),
                    )
                    .expected("a source_range on the clip"))
            }
        };
        if kind == Kind::Video && self.first_rate.is_none() {
            self.first_rate = Some(sr_rate);
        }
        let media_start = available.map_or(Q::ZERO, |(s, _, _)| s);
        let source = match schema_of(reference) {
            Some(("ExternalReference", 1)) => {
                let url = reference
                    .get("target_url")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                Source::Media(self.media(url, &format!("{rpath}.target_url"), &what)?)
            }
            Some(("ImageSequenceReference", 1)) => {
                if kind == Kind::Audio {
                    return Err(self
                        .err(
                            &rpath,
                            format!("clip {what} on an audio track is an image sequence"),
                        )
                        .expected("an ExternalReference to a media file with audio"));
                }
                Source::Sequence(self.sequence(reference, &rpath, &what)?)
            }
            Some(("GeneratorReference", 1)) => {
                if kind == Kind::Audio {
                    return Err(self
                        .err(
                            &rpath,
                            format!("clip {what} on an audio track is a generator"),
                        )
                        .expected("an ExternalReference to a media file with audio"));
                }
                self.generator(reference, &rpath, &what)?
            }
            Some(("MissingReference", 1)) => {
                return Err(self
                    .err(
                        &rpath,
                        format!("clip {what} has a MissingReference: its media is offline"),
                    )
                    .value("\"MissingReference.1\"")
                    .expected("the clip relinked to its media (an ExternalReference)"))
            }
            _ => {
                return Err(self.unknown_schema(
                    reference,
                    &rpath,
                    "ExternalReference.1, ImageSequenceReference.1, GeneratorReference.1",
                ))
            }
        };
        if kind == Kind::Video && self.first_media.is_none() {
            self.first_media = match &source {
                Source::Media(p) => Some(p.clone()),
                Source::Sequence(seq) => Some(seq.path(seq.start_frame)),
                _ => None,
            };
        }
        let speed = self.speed(v, path, &what, kind)?;
        let src = sr_start.minus(media_start);
        if src.is_negative() && matches!(source, Source::Media(_) | Source::Sequence(_)) {
            return Err(self
                .err(
                    &format!("{path}.source_range.start_time"),
                    format!(
                        "clip {what} starts {:.3} s before its media's available_range",
                        src.as_f64().abs()
                    ),
                )
                .expected("a source_range inside the media's available_range"));
        }
        if !Self::enabled(v) {
            return Ok((Item::Gap, sr_dur));
        }
        let piece = Piece {
            source,
            start: Q::ZERO,
            end: sr_dur,
            src: if matches!(
                reference.get("OTIO_SCHEMA").and_then(Value::as_str),
                Some("GeneratorReference.1")
            ) {
                Q::ZERO
            } else {
                src
            },
            speed,
            dissolve_in: None,
            fade_out: None,
            what,
        };
        Ok((Item::Clip(Box::new(piece), kind), sr_dur))
    }

    fn speed(&self, v: &Value, path: &str, what: &str, kind: Kind) -> Result<Q, InputError> {
        let mut speed = Q::int(1);
        let Some(effects) = v.get("effects").and_then(Value::as_array) else {
            return Ok(speed);
        };
        for (i, e) in effects.iter().enumerate() {
            if !Self::enabled(e) {
                continue;
            }
            let epath = format!("{path}.effects[{i}]");
            match schema_of(e) {
                Some(("LinearTimeWarp", 1)) => {
                    let s = e.get("time_scalar").and_then(Value::as_f64).unwrap_or(1.0);
                    let q = Q::approximate(s, 10_000).filter(|q| !q.is_negative());
                    let Some(q) = q else {
                        return Err(self
                            .err(&format!("{epath}.time_scalar"), format!("clip {what}: time_scalar {s} is not supported (reverse playback is not)"))
                            .value(s.to_string())
                            .expected("a time_scalar of 0 or more"));
                    };
                    speed = speed.times(q);
                }
                Some(("FreezeFrame", 1)) => speed = Q::ZERO,
                _ => {
                    let schema = e
                        .get("OTIO_SCHEMA")
                        .and_then(Value::as_str)
                        .unwrap_or("(no schema)");
                    let ename = e.get("effect_name").and_then(Value::as_str).unwrap_or("");
                    return Err(self
                        .err(
                            &epath,
                            format!("clip {what}: effect {schema} (effect_name \"{ename}\") is not supported"),
                        )
                        .value(format!("\"{schema}\""))
                        .expected("LinearTimeWarp.1 or FreezeFrame.1, or the effect disabled"));
                }
            }
        }
        if kind == Kind::Audio && speed != Q::int(1) {
            return Err(self
                .err(
                    &format!("{path}.effects"),
                    format!("clip {what}: time warps on audio clips are not supported"),
                )
                .expected("audio at normal speed"));
        }
        Ok(speed)
    }

    fn generator(&self, r: &Value, rpath: &str, what: &str) -> Result<Source, InputError> {
        let kind = r
            .get("generator_kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        let params = r.get("parameters");
        match kind {
            "SolidColor" | "solid" | "Solid" => {
                let c = params.and_then(|p| p.get("color"));
                let color = match c {
                    None => Rgba([0, 0, 0, 255]),
                    Some(c) => self.colour(c, &format!("{rpath}.parameters.color"))?,
                };
                Ok(Source::Solid(color))
            }
            "SMPTEBars" | "bars" | "Bars" => Ok(Source::Bars),
            "pattern" | "Pattern" => Ok(Source::Pattern),
            _ => Err(self
                .err(
                    &format!("{rpath}.generator_kind"),
                    format!("clip {what}: generator \"{kind}\" is not supported"),
                )
                .value(format!("\"{kind}\""))
                .expected("\"SolidColor\" (parameter color), \"SMPTEBars\", \"bars\", \"solid\" or \"pattern\"")),
        }
    }

    /// A colour: "#rrggbb[aa]", or a list of 3 or 4 numbers 0..1 (as
    /// OTIO's `Color` writes them) or 0..255.
    fn colour(&self, c: &Value, path: &str) -> Result<Rgba, InputError> {
        let bad = || {
            self.err(path, format!("value {} is not a colour", snippet(c)))
                .value(snippet(c))
                .expected("\"#rrggbb\", \"#rrggbbaa\", or [r, g, b(, a)] as numbers from 0 to 1")
        };
        match c {
            Value::String(s) => validate::parse_rgba(s).ok_or_else(bad),
            Value::Array(a) if a.len() == 3 || a.len() == 4 => {
                let v: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
                if v.len() != a.len() || v.iter().any(|x| !(0.0..=1.0).contains(x)) {
                    return Err(bad());
                }
                let b = |x: f64| (x * 255.0).round() as u8;
                Ok(Rgba([
                    b(v[0]),
                    b(v[1]),
                    b(v[2]),
                    v.get(3).map_or(255, |&a| b(a)),
                ]))
            }
            Value::Object(o) => {
                let g = |k: &str| o.get(k).and_then(Value::as_f64);
                match (g("r"), g("g"), g("b")) {
                    (Some(r), Some(gg), Some(b))
                        if [r, gg, b].iter().all(|x| (0.0..=1.0).contains(x)) =>
                    {
                        let to = |x: f64| (x * 255.0).round() as u8;
                        Ok(Rgba([to(r), to(gg), to(b), g("a").map_or(255, to)]))
                    }
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }

    fn sequence(&self, r: &Value, rpath: &str, what: &str) -> Result<ImageSequence, InputError> {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let n = |k: &str, default: i64| r.get(k).and_then(Value::as_i64).unwrap_or(default);
        let base = s("target_url_base");
        let rate = r.get("rate").and_then(Value::as_f64).unwrap_or(1.0);
        let rate_q = exact_rate(rate)
            .and_then(|q| {
                Some(Rate {
                    num: u32::try_from(q.num).ok()?,
                    den: u32::try_from(q.den).ok()?,
                })
            })
            .ok_or_else(|| {
                self.err(
                    &format!("{rpath}.rate"),
                    format!("clip {what}: rate {rate} is not usable"),
                )
                .value(rate.to_string())
                .expected("a positive frame rate")
            })?;
        let (start, step, pad) = (
            n("start_frame", 1),
            n("frame_step", 1),
            n("frame_zero_padding", 0),
        );
        if start < 0 || step < 1 || !(0..=16).contains(&pad) {
            return Err(self
                .err(rpath, format!("clip {what}: start_frame {start}, frame_step {step}, frame_zero_padding {pad}"))
                .expected("start_frame ≥ 0, frame_step ≥ 1, frame_zero_padding 0 to 16"));
        }
        let dir_text = base.trim_end_matches('/');
        let dir_text = if dir_text.is_empty() { "." } else { dir_text };
        let dir = self.media_dir(dir_text, &format!("{rpath}.target_url_base"), what)?;
        Ok(ImageSequence {
            dir,
            prefix: s("name_prefix"),
            suffix: s("name_suffix"),
            padding: pad as u32,
            start_frame: start as u64,
            frame_step: step as u64,
            rate: rate_q,
        })
    }

    /// A URL or path as a file system path.
    fn url_to_path(&self, url: &str, path: &str, what: &str) -> Result<String, InputError> {
        if let Some(rest) = url.strip_prefix("file://") {
            // file:///abs, file://localhost/abs
            let rest = rest.strip_prefix("localhost").unwrap_or(rest);
            if !rest.starts_with('/') {
                return Err(self
                    .err(
                        path,
                        format!("clip {what}: URL \"{url}\" names another host"),
                    )
                    .value(format!("\"{url}\""))
                    .expected("a file:/// URL or a path"));
            }
            return percent_decode(rest).ok_or_else(|| {
                self.err(
                    path,
                    format!("clip {what}: URL \"{url}\" has a bad %-escape"),
                )
                .value(format!("\"{url}\""))
                .expected("a file:/// URL with valid %XX escapes of UTF-8")
            });
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(self
                .err(
                    path,
                    format!("clip {what}: URL scheme \"{scheme}\" is not supported"),
                )
                .value(format!("\"{url}\""))
                .expected("a file:/// URL or a path to a file inside the media roots"));
        }
        Ok(url.to_owned())
    }

    /// Resolves a media reference's target as TOML manifests resolve
    /// `media`: relative to the base folder, inside the media roots, an
    /// existing readable regular file. Whether a file exists is only said
    /// for paths inside the roots.
    fn media(&self, url: &str, path: &str, what: &str) -> Result<PathBuf, InputError> {
        let text = self.url_to_path(url, path, what)?;
        let (p, _) = self.resolve(&text, url, path, what, false)?;
        Ok(p)
    }

    fn media_dir(&self, url: &str, path: &str, what: &str) -> Result<PathBuf, InputError> {
        let text = self.url_to_path(url, path, what)?;
        let (p, _) = self.resolve(&text, url, path, what, true)?;
        Ok(p)
    }

    fn resolve(
        &self,
        text: &str,
        url: &str,
        path: &str,
        what: &str,
        dir: bool,
    ) -> Result<(PathBuf, ()), InputError> {
        let roots = &self.roots;
        let inside = format!(
            "an existing media {} inside the media roots: {} (relative paths resolve against {})",
            if dir { "folder" } else { "file" },
            roots.shown,
            roots.base.display()
        );
        let value = format!("\"{url}\"");
        if text.trim().is_empty() || text.contains('\0') {
            return Err(self
                .err(
                    path,
                    format!("clip {what}: value {value} is not a file path"),
                )
                .value(value)
                .expected(inside));
        }
        let joined = roots.base.join(text);
        match std::fs::canonicalize(&joined) {
            Ok(p) => {
                if !roots.contains(&p) {
                    return Err(self
                        .err(
                            path,
                            format!("clip {what}: value {value} is outside the media roots"),
                        )
                        .value(value)
                        .expected(inside));
                }
                let right_kind = if dir { p.is_dir() } else { p.is_file() };
                if !right_kind {
                    return Err(self
                        .err(
                            path,
                            format!(
                                "clip {what}: value {value} is not a {} ({})",
                                if dir { "folder" } else { "regular file" },
                                p.display()
                            ),
                        )
                        .value(value)
                        .expected(inside));
                }
                if !dir {
                    if let Err(e) = std::fs::File::open(&p) {
                        return Err(self
                            .err(
                                path,
                                format!(
                                    "clip {what}: value {value} cannot be read ({}: {e})",
                                    p.display()
                                ),
                            )
                            .value(value)
                            .expected("a media file this host's user can read"));
                    }
                }
                Ok((p, ()))
            }
            Err(_) => {
                let lexical = validate::normalize(&joined);
                if !roots.contains(&lexical) {
                    return Err(self
                        .err(
                            path,
                            format!("clip {what}: value {value} is outside the media roots"),
                        )
                        .value(value)
                        .expected(inside));
                }
                Err(self
                    .err(
                        path,
                        format!(
                            "clip {what}: value {value} names a file that does not exist ({})",
                            lexical.display()
                        ),
                    )
                    .value(value)
                    .expected(inside))
            }
        }
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A JSON value on one line, at most 60 characters, for messages.
fn snippet(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// What a timeline holds, conformed to its canvas: what a TOML manifest's
/// `timeline = "cut.otio"` takes from it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineParts {
    pub canvas: Canvas,
    pub video: Vec<VideoTrack>,
    pub audio: Vec<AudioTrack>,
    pub warnings: Vec<String>,
    /// `metadata.deliver` of the timeline (deliverables, name, priority).
    pub deliver: serde_json::Map<String, Value>,
    pub name: String,
}

/// Reads an OpenTimelineIO timeline into a validated [`Manifest`].
///
/// # Errors
///
/// An [`InputError`] naming the file, and for JSON syntax errors the line
/// and column, for everything else the JSON path of the offending object
/// (e.g. `tracks.children[0].children[3]`), the bad value and what is
/// accepted.
pub fn parse(src: &[u8], path: &Path, ctx: &LoadContext) -> Result<Manifest, InputError> {
    let parts = parse_timeline(src, path, ctx)?;
    let d = &parts.deliver;
    let file = path;
    let name = match d.get("name") {
        None => validate::default_manifest_name(path),
        Some(Value::String(s)) if validate::valid_manifest_name(s) => s.clone(),
        Some(other) => {
            return Err(InputError::new(
                file,
                format!("value {} is not a usable name", snippet(other)),
            )
            .field("metadata.deliver.name")
            .value(snippet(other))
            .expected(
                "1 to 100 characters, no /, \\ or control characters, not starting with '.'",
            ))
        }
    };
    let priority = match d.get("priority") {
        None => validate::DEFAULT_PRIORITY,
        Some(v) => v
            .as_u64()
            .filter(|&p| p <= u64::from(validate::MAX_PRIORITY))
            .map(|p| p as u8)
            .ok_or_else(|| {
                InputError::new(file, format!("value {} is out of range", snippet(v)))
                    .field("metadata.deliver.priority")
                    .value(snippet(v))
                    .expected("an integer from 0 to 100")
            })?,
    };
    let deliverables = deliverables(d.get("deliverables"), file, &ctx.default_presets)?;
    Ok(Manifest {
        path: path.to_owned(),
        name,
        priority,
        canvas: parts.canvas,
        video: parts.video,
        audio: parts.audio,
        deliverables,
        warnings: parts.warnings,
    })
}

/// The priority a scheduler queues a timeline with before it is loaded:
/// `metadata.deliver.priority` when valid, else the default.
pub fn peek_priority(src: &[u8]) -> u8 {
    serde_json::from_slice::<Value>(src)
        .ok()
        .and_then(|v| {
            v.pointer("/metadata/deliver/priority")
                .and_then(Value::as_u64)
        })
        .filter(|&p| p <= u64::from(validate::MAX_PRIORITY))
        .map_or(validate::DEFAULT_PRIORITY, |p| p as u8)
}

/// Reads a timeline's canvas and tracks (no deliverables).
///
/// # Errors
///
/// As [`parse`].
pub fn parse_timeline(
    src: &[u8],
    path: &Path,
    ctx: &LoadContext,
) -> Result<TimelineParts, InputError> {
    if src.len() as u64 > ctx.max_bytes {
        return Err(InputError::new(
            path,
            format!(
                "the timeline is {} bytes, more than the limit of {} bytes",
                src.len(),
                ctx.max_bytes
            ),
        )
        .expected(format!("a timeline of at most {} bytes", ctx.max_bytes)));
    }
    let root: Value = serde_json::from_slice(src).map_err(|e| json_error(path, &e))?;
    let file = path;
    match schema_of(&root) {
        Some(("Timeline", 1)) => {}
        _ => {
            let r = Reader {
                file,
                roots: MediaRoots::new(Path::new("."), &[]),
                warnings: Vec::new(),
                first_rate: None,
                first_media: None,
            };
            return Err(r.unknown_schema(
                &root,
                "(top level)",
                "a Timeline.1 object at the top level",
            ));
        }
    }
    let base = match &ctx.base_dir {
        Some(dir) => dir.clone(),
        None => match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    let mut r = Reader {
        file,
        roots: MediaRoots::new(&base, &ctx.media_roots),
        warnings: Vec::new(),
        first_rate: None,
        first_media: None,
    };
    let deliver = root
        .pointer("/metadata/deliver")
        .map(|v| r.obj(v, "metadata.deliver").cloned())
        .transpose()?
        .unwrap_or_default();
    let tracks = root.get("tracks").filter(|t| !t.is_null()).ok_or_else(|| {
        r.err("tracks", "the timeline has no tracks")
            .expected("a Stack.1 of tracks")
    })?;
    if schema_of(tracks) != Some(("Stack", 1)) {
        return Err(r.unknown_schema(tracks, "tracks", "Stack.1"));
    }
    let (layers, duration) = r.stack(tracks, "tracks")?;

    if let Some((gst, _)) = r.time(root.get("global_start_time"), "global_start_time")? {
        if gst != Q::ZERO {
            r.warnings.push(format!(
                "global_start_time {:.3} s is not carried into the outputs: their start \
                 timecode comes from each preset",
                gst.as_f64()
            ));
        }
    }
    let probed = r
        .first_media
        .as_deref()
        .zip(ctx.probe.as_ref())
        .and_then(|(p, probe)| (probe.0)(p))
        // Even, in range: what a canvas may be.
        .map(|(w, h)| {
            let even = |n: u32| (n.div_ceil(2) * 2).clamp(16, 8192);
            (even(w), even(h))
        });
    let canvas = canvas(&r, deliver.get("canvas"), duration, probed)?;
    let mut video = Vec::new();
    let mut audio = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for l in layers {
        let n = match l.kind {
            Kind::Video => video.len(),
            Kind::Audio => audio.len(),
        };
        let default = match l.kind {
            Kind::Video => format!("V{}", n + 1),
            Kind::Audio => format!("A{}", n + 1),
        };
        let mut name = if l.name.is_empty() || l.name.starts_with('.') {
            format!("{default}{}", l.name)
        } else {
            l.name.clone()
        };
        // Names show in messages and reports: keep them apart.
        let count = names.entry(name.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            name = format!("{name} ({default})");
        }
        match l.kind {
            Kind::Video => {
                let mut clips: Vec<VideoClip> = l
                    .pieces
                    .iter()
                    .filter_map(|p| video_clip(p, &canvas, &mut r.warnings))
                    .collect();
                clips.sort_by_key(|c| c.start);
                video.push(VideoTrack { name, clips });
            }
            Kind::Audio => {
                let mut clips: Vec<AudioClip> = l
                    .pieces
                    .iter()
                    .filter_map(|p| audio_clip(p, &canvas, &mut r.warnings))
                    .collect();
                clips.sort_by_key(|c| c.start);
                audio.push(AudioTrack {
                    name,
                    gain_db: 0.0,
                    clips,
                });
            }
        }
    }
    check_sequences(file, &video, canvas.frame_rate)?;
    if video.iter().all(|t| t.clips.is_empty()) {
        return Err(r
            .err("tracks", "the timeline has no video clip")
            .expected("at least one clip on a Video track"));
    }
    let name = root
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    Ok(TimelineParts {
        canvas,
        video,
        audio,
        warnings: r.warnings,
        deliver,
        name,
    })
}

/// Every image an image-sequence clip shows must exist (the job would
/// otherwise fail mid-render, far from the timeline that names it).
fn check_sequences(file: &Path, video: &[VideoTrack], rate: Rate) -> Result<(), InputError> {
    for t in video {
        for (ci, c) in t.clips.iter().enumerate() {
            let VideoSource::ImageSequence(seq) = &c.source else {
                continue;
            };
            let mut last = None;
            for f in 0..c.frames {
                let number = seq.number_at(c.in_point + f as f64 / rate.as_f64() * c.speed);
                if last == Some(number) {
                    continue;
                }
                last = Some(number);
                let p = seq.path(number);
                if !p.is_file() {
                    return Err(InputError::new(
                        file,
                        format!(
                            "track {}, clip {ci}: image {number} of the sequence, {}, does not \
                             exist (canvas frame {})",
                            t.name,
                            p.display(),
                            c.start + f
                        ),
                    )
                    .field(format!("video.{}.clip[{ci}]", t.name))
                    .expected("every image of the sequence that the clip shows"));
                }
            }
        }
    }
    Ok(())
}

/// Canvas frames of a piece: (start, end, frames of the dissolve in,
/// frames of the fade out), clamped to the canvas.
fn frames_of(p: &Piece, canvas: &Canvas) -> Option<(u64, u64, u64, u64)> {
    let rate = canvas.frame_rate;
    let clamp = |f: i128| f.clamp(0, i128::from(canvas.frames)) as u64;
    let s = clamp(p.start.to_frame(rate));
    let e = clamp(p.end.to_frame(rate));
    if e <= s {
        return None;
    }
    let d = p.dissolve_in.map_or(0, |d| {
        clamp(p.start.plus(d).to_frame(rate)).saturating_sub(s)
    });
    let f = p.fade_out.map_or(0, |f| {
        e.saturating_sub(clamp(p.end.minus(f).to_frame(rate)))
    });
    Some((s, e, d.min(e - s), f.min(e - s)))
}

/// The source in-point for the rounded start: moved by the rounding.
fn in_point(p: &Piece, s: u64, rate: Rate) -> f64 {
    let start = Q::new(i128::from(s) * i128::from(rate.den), rate.num.into());
    p.src
        .plus(start.minus(p.start).times(p.speed))
        .as_f64()
        .max(0.0)
}

fn video_clip(p: &Piece, canvas: &Canvas, warnings: &mut Vec<String>) -> Option<VideoClip> {
    let Some((s, e, d, f)) = frames_of(p, canvas) else {
        warnings.push(format!(
            "clip {} is shorter than half a canvas frame and is left out",
            p.what
        ));
        return None;
    };
    let source = match &p.source {
        Source::Media(path) => VideoSource::Media { path: path.clone() },
        Source::Sequence(seq) => VideoSource::ImageSequence(seq.clone()),
        Source::Bars => VideoSource::Bars,
        Source::Solid(c) => VideoSource::Solid { color: *c },
        Source::Pattern => VideoSource::Pattern,
    };
    let mut clip = VideoClip::new(source, s, e - s);
    clip.in_point = in_point(p, s, canvas.frame_rate);
    clip.speed = p.speed.as_f64();
    if matches!(p.source, Source::Media(_) | Source::Sequence(_)) {
        clip.fit = Fit::Fit;
    }
    if d > 0 {
        clip.transition_in = Some(Transition {
            kind: TransitionKind::Dissolve,
            frames: d,
        });
    }
    if f > 0 {
        // A dissolve into a gap: the clip fades out to what is below it.
        let n = e - s;
        clip.opacity = Param {
            keys: vec![
                Key {
                    frame: n - f,
                    value: 1.0,
                    interp: super::model::Interp::Linear,
                },
                Key {
                    frame: n,
                    value: 0.0,
                    interp: super::model::Interp::Linear,
                },
            ],
        };
    }
    Some(clip)
}

fn audio_clip(p: &Piece, canvas: &Canvas, warnings: &mut Vec<String>) -> Option<AudioClip> {
    let Source::Media(path) = &p.source else {
        return None;
    };
    let Some((s, e, d, f)) = frames_of(p, canvas) else {
        warnings.push(format!(
            "clip {} is shorter than half a canvas frame and is left out",
            p.what
        ));
        return None;
    };
    Some(AudioClip {
        source: AudioSource::Media { path: path.clone() },
        start: s,
        frames: e - s,
        in_point: in_point(p, s, canvas.frame_rate),
        gain_db: 0.0,
        fade_in: d,
        fade_out: f,
        pan: 0.0,
    })
}

fn canvas(
    r: &Reader<'_>,
    meta: Option<&Value>,
    duration: Q,
    probed: Option<(u32, u32)>,
) -> Result<Canvas, InputError> {
    let size = probed.unwrap_or(DEFAULT_SIZE);
    let empty = serde_json::Map::new();
    let m = match meta {
        Some(v) => r.obj(v, "metadata.deliver.canvas")?,
        None => &empty,
    };
    let field = |k: &str| format!("metadata.deliver.canvas.{k}");
    for k in m.keys() {
        if ![
            "width",
            "height",
            "frame_rate",
            "background",
            "sample_rate",
            "channels",
            "colour_space",
        ]
        .contains(&k.as_str())
        {
            return Err(r
                .err(&field(k), format!("unknown field `{k}`"))
                .expected("one of `width`, `height`, `frame_rate`, `background`, `sample_rate`, `channels`, `colour_space` (the duration is the timeline's)"));
        }
    }
    let int = |k: &str,
               default: i64,
               range: std::ops::RangeInclusive<i64>,
               expected: &str|
     -> Result<i64, InputError> {
        match m.get(k) {
            None => Ok(default),
            Some(v) => v.as_i64().filter(|n| range.contains(n)).ok_or_else(|| {
                r.err(
                    &field(k),
                    format!("value {} is out of range or not an integer", snippet(v)),
                )
                .value(snippet(v))
                .expected(expected)
            }),
        }
    };
    const DIM: &str = "an even integer from 16 to 8192";
    let width = int("width", size.0.into(), 16..=8192, DIM)?;
    let height = int("height", size.1.into(), 16..=8192, DIM)?;
    for (k, v) in [("width", width), ("height", height)] {
        if v % 2 != 0 {
            return Err(r
                .err(
                    &field(k),
                    format!("value {v} is odd; 4:2:0 deliverables need even sizes"),
                )
                .value(v.to_string())
                .expected(DIM));
        }
    }
    let frame_rate = match m.get("frame_rate") {
        Some(v) => {
            let input = match v {
                Value::String(s) => RateInput::Text(s),
                Value::Number(n) if n.is_i64() => RateInput::Integer(n.as_i64().unwrap_or(0)),
                Value::Number(n) => RateInput::Float(n.as_f64().unwrap_or(0.0)),
                _ => RateInput::Text(""),
            };
            time::parse_rate(input).map_err(|e| {
                r.err(
                    &field("frame_rate"),
                    format!("value {} {}", snippet(v), e.message),
                )
                .value(snippet(v))
                .expected(time::RATE_EXPECTED)
            })?
        }
        None => {
            let q = r.first_rate.unwrap_or(Q::int(25));
            let rate = u32::try_from(q.num)
                .ok()
                .zip(u32::try_from(q.den).ok())
                .map(|(num, den)| Rate { num, den })
                .filter(|r| (1.0..=240.0).contains(&r.as_f64()));
            rate.ok_or_else(|| {
                r.err(
                    "metadata.deliver.canvas.frame_rate",
                    format!(
                        "the first video clip's rate {} is not a canvas rate",
                        q.as_f64()
                    ),
                )
                .expected("metadata.deliver.canvas.frame_rate, e.g. \"25\" or \"30000/1001\"")
            })?
        }
    };
    let colour_space = match m.get("colour_space") {
        None => "bt709".to_owned(),
        Some(Value::String(s)) if s == "bt709" => s.clone(),
        Some(v) => {
            return Err(r
                .err(
                    &field("colour_space"),
                    format!("value {} is not supported", snippet(v)),
                )
                .value(snippet(v))
                .expected("\"bt709\""))
        }
    };
    let background = match m.get("background") {
        None => Rgba([0, 0, 0, 255]),
        Some(v) => r.colour(v, &field("background"))?,
    };
    let sample_rate = int(
        "sample_rate",
        48_000,
        8000..=192_000,
        "a sample rate in Hz from 8000 to 192000",
    )? as u32;
    let channels = int("channels", 2, 1..=2, "1 (mono) or 2 (stereo)")? as u32;
    let frames = duration.to_frame(frame_rate);
    let max = 24 * 3600 * i128::from(frame_rate.num) / i128::from(frame_rate.den);
    if frames < 1 || frames > max {
        return Err(r
            .err(
                "tracks",
                format!(
                    "the timeline lasts {:.3} s, {frames} frames at {frame_rate} fps",
                    duration.as_f64()
                ),
            )
            .expected("a timeline from one frame to 24 hours long"));
    }
    Ok(Canvas {
        width: width as u32,
        height: height as u32,
        frame_rate,
        frames: frames as u64,
        colour_space,
        background,
        sample_rate,
        channels,
    })
}

/// `metadata.deliver.deliverables`: preset ids or `{preset, name,
/// overrides}` tables; else the default presets.
fn deliverables(
    v: Option<&Value>,
    file: &Path,
    defaults: &[String],
) -> Result<Vec<DeliverableRequest>, InputError> {
    const FIELD: &str = "metadata.deliver.deliverables";
    let err = |f: String, msg: String, value: String, expected: &str| {
        InputError::new(file, msg)
            .field(f)
            .value(value)
            .expected(expected)
    };
    let list = match v {
        None => {
            if defaults.is_empty() {
                return Err(InputError::new(file, "the timeline names no deliverables")
                    .field(FIELD)
                    .expected(
                        "metadata.deliver.deliverables = [\"web/h264-1080p\", …] in the timeline, \
                         or presets given by the caller (deliver render --preset, a watch root's presets)",
                    ));
            }
            let mut out = Vec::new();
            let mut names: HashMap<String, &str> = HashMap::new();
            for id in defaults {
                let name = id.rsplit('/').next().unwrap_or(id).to_owned();
                if !validate::valid_preset_id(id) {
                    return Err(err(
                        FIELD.into(),
                        format!("the default preset \"{id}\" is not a preset id"),
                        format!("\"{id}\""),
                        "preset ids",
                    ));
                }
                if let Some(other) = names.insert(name.to_lowercase(), id) {
                    return Err(err(
                        FIELD.into(),
                        format!("the default preset \"{id}\" gives the deliverable name \"{name}\", as the default preset {other} does"),
                        format!("\"{id}\""),
                        "default presets with distinct last components, or deliverables in the timeline",
                    ));
                }
                out.push(DeliverableRequest {
                    preset: id.clone(),
                    name,
                    overrides: toml::Table::new(),
                    line: 1,
                });
            }
            return Ok(out);
        }
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(other) => return Err(err(
            FIELD.into(),
            format!("value {} is not a list of deliverables", snippet(other)),
            snippet(other),
            "a non-empty list of preset ids or {\"preset\": …, \"name\": …, \"overrides\": {…}}",
        )),
    };
    let mut out = Vec::with_capacity(list.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, d) in list.iter().enumerate() {
        let f = format!("{FIELD}[{i}]");
        let (preset, name, overrides) = match d {
            Value::String(s) => (s.clone(), None, toml::Table::new()),
            Value::Object(o) => {
                for k in o.keys() {
                    if !["preset", "name", "overrides"].contains(&k.as_str()) {
                        return Err(err(
                            format!("{f}.{k}"),
                            format!("unknown field `{k}`"),
                            format!("\"{k}\""),
                            "`preset`, `name` or `overrides`",
                        ));
                    }
                }
                let preset = o.get("preset").and_then(Value::as_str).ok_or_else(|| {
                    err(
                        format!("{f}.preset"),
                        "required field is missing or not a string".into(),
                        snippet(d),
                        "a preset id such as \"web/h264-1080p\"",
                    )
                })?;
                let name = match o.get("name") {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(v) => {
                        return Err(err(
                            format!("{f}.name"),
                            format!("value {} is not a string", snippet(v)),
                            snippet(v),
                            "a name: A-Z a-z 0-9 _ -",
                        ))
                    }
                };
                let overrides = match o.get("overrides") {
                    None => toml::Table::new(),
                    Some(v) => match json_to_toml(v) {
                        Some(toml::Value::Table(t)) => t,
                        _ => return Err(err(format!("{f}.overrides"), format!("value {} is not a table of preset fields (JSON null is not allowed)", snippet(v)), snippet(v), "an object merged over the preset, e.g. {\"video\": {\"options\": {\"crf\": 18}}}")),
                    },
                };
                (preset.to_owned(), name, overrides)
            }
            other => {
                return Err(err(
                    f,
                    format!("value {} is not a deliverable", snippet(other)),
                    snippet(other),
                    "a preset id or {\"preset\": …}",
                ))
            }
        };
        if !validate::valid_preset_id(&preset) {
            return Err(err(
                format!("{f}.preset"),
                format!("value \"{preset}\" is not a preset id"),
                format!("\"{preset}\""),
                "[a-z0-9_-] segments separated by /, e.g. \"web/h264-1080p\"",
            ));
        }
        let name = match name {
            Some(n) => {
                if n.is_empty()
                    || n.len() > 64
                    || !n
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(err(
                        format!("{f}.name"),
                        format!("value \"{n}\" is not a usable name"),
                        format!("\"{n}\""),
                        "A-Z a-z 0-9 _ -, 1 to 64 characters",
                    ));
                }
                n
            }
            None => preset.replace('/', "_"),
        };
        if let Some(j) = names.insert(name.to_lowercase(), i) {
            return Err(err(
                format!("{f}.name"),
                format!("gives the output name \"{name}\", which {FIELD}[{j}] already uses"),
                format!("\"{name}\""),
                "a name unique among the deliverables",
            ));
        }
        out.push(DeliverableRequest {
            preset,
            name,
            overrides,
            line: 1,
        });
    }
    Ok(out)
}

fn json_to_toml(v: &Value) -> Option<toml::Value> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(a) => toml::Value::Array(a.iter().map(json_to_toml).collect::<Option<_>>()?),
        Value::Object(o) => toml::Value::Table(
            o.iter()
                .map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

fn json_error(path: &Path, e: &serde_json::Error) -> InputError {
    let text = e.to_string();
    // serde_json appends " at line L column C"; the position goes in front.
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m)
        .to_owned();
    let what = match e.classify() {
        serde_json::error::Category::Eof => "the file ends early",
        serde_json::error::Category::Syntax => "JSON syntax error",
        serde_json::error::Category::Data => "unexpected JSON data",
        serde_json::error::Category::Io => "cannot read",
    };
    InputError::new(path, format!("{what}: {message}"))
        .at(e.line().max(1), e.column().max(1))
        .expected("an OpenTimelineIO timeline (JSON) as written by opentimelineio")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rt(value: f64, rate: f64) -> Value {
        json!({"OTIO_SCHEMA": "RationalTime.1", "value": value, "rate": rate})
    }

    fn range(start: f64, dur: f64, rate: f64) -> Value {
        json!({"OTIO_SCHEMA": "TimeRange.1", "start_time": rt(start, rate), "duration": rt(dur, rate)})
    }

    fn media_ref(url: &str, rate: f64) -> Value {
        json!({"OTIO_SCHEMA": "ExternalReference.1", "target_url": url,
               "available_range": range(0.0, 10_000.0, rate)})
    }

    fn clip(name: &str, reference: Value, start: f64, dur: f64, rate: f64) -> Value {
        json!({"OTIO_SCHEMA": "Clip.2", "name": name, "source_range": range(start, dur, rate),
               "effects": [], "markers": [], "enabled": true,
               "media_references": {"DEFAULT_MEDIA": reference},
               "active_media_reference_key": "DEFAULT_MEDIA"})
    }

    fn gap(dur: f64, rate: f64) -> Value {
        json!({"OTIO_SCHEMA": "Gap.1", "source_range": range(0.0, dur, rate)})
    }

    fn dissolve(i: f64, o: f64, rate: f64) -> Value {
        json!({"OTIO_SCHEMA": "Transition.1", "transition_type": "SMPTE_Dissolve",
               "in_offset": rt(i, rate), "out_offset": rt(o, rate)})
    }

    fn track(kind: &str, children: Vec<Value>) -> Value {
        json!({"OTIO_SCHEMA": "Track.1", "name": "", "kind": kind, "children": children,
               "source_range": null, "effects": [], "markers": []})
    }

    fn timeline(tracks: Vec<Value>, deliver: Value) -> Value {
        json!({"OTIO_SCHEMA": "Timeline.1", "name": "cut", "global_start_time": null,
               "metadata": {"deliver": deliver},
               "tracks": {"OTIO_SCHEMA": "Stack.1", "children": tracks}})
    }

    /// A folder with (fake) media files a.mov and b.mov.
    fn media_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.mov"), b"x").unwrap();
        std::fs::write(d.path().join("b.mov"), b"x").unwrap();
        d
    }

    fn canvas25() -> Value {
        json!({"canvas": {"width": 320, "height": 180, "frame_rate": 25},
               "deliverables": ["web/h264-1080p"]})
    }

    fn load(dir: &Path, t: &Value) -> Result<Manifest, InputError> {
        let path = dir.join("cut.otio");
        parse(
            serde_json::to_string_pretty(t).unwrap().as_bytes(),
            &path,
            &LoadContext::default(),
        )
    }

    #[test]
    fn rates_become_exact_fractions() {
        assert_eq!(exact_rate(25.0), Some(Q::int(25)));
        assert_eq!(exact_rate(24000.0 / 1001.0), Some(Q::new(24000, 1001)));
        assert_eq!(exact_rate(23.976023976023978), Some(Q::new(24000, 1001)));
        assert_eq!(exact_rate(29.97002997002997), Some(Q::new(30000, 1001)));
        assert_eq!(exact_rate(59.94005994005994), Some(Q::new(60000, 1001)));
        assert_eq!(exact_rate(12.5), Some(Q::new(25, 2)));
        assert_eq!(exact_rate(0.0), None);
        assert_eq!(exact_rate(-24.0), None);
        assert_eq!(exact_rate(f64::NAN), None);
        // 29.97 itself is not an NTSC rate: it is 2997/100.
        assert_eq!(exact_rate(29.97), Some(Q::new(2997, 100)));
    }

    #[test]
    fn rounding_is_to_the_nearest_frame_halves_up() {
        let r25 = Rate { num: 25, den: 1 };
        // 1/50 s is half a frame at 25 fps: rounds up.
        assert_eq!(Q::new(1, 50).to_frame(r25), 1);
        assert_eq!(Q::new(1, 51).to_frame(r25), 0);
        assert_eq!(Q::new(-1, 50).to_frame(r25), 0);
        assert_eq!(Q::new(-3, 100).to_frame(r25), -1);
    }

    #[test]
    fn ntsc_clips_conform_to_a_25_fps_canvas_without_gaps() {
        let d = media_dir();
        let r = 24000.0 / 1001.0;
        // 48 frames at 23.976 = 2.002 s = 50.05 canvas frames; then 24
        // frames = 1.001 s = 25.025 frames.
        let t = timeline(
            vec![track(
                "Video",
                vec![
                    clip("a", media_ref("a.mov", r), 10.0, 48.0, r),
                    clip("b", media_ref("b.mov", r), 0.0, 24.0, r),
                ],
            )],
            canvas25(),
        );
        let m = load(d.path(), &t).unwrap();
        let c = &m.video[0].clips;
        assert_eq!((c[0].start, c[0].frames), (0, 50));
        // 2.002 s → 50.05 → 50: the next clip starts where this one ends.
        assert_eq!((c[1].start, c[1].frames), (50, 25));
        // 75.075 → 75 frames.
        assert_eq!(m.canvas.frames, 75);
        assert_eq!(m.canvas.frame_rate, Rate { num: 25, den: 1 });
        // a: source 10 frames at 24000/1001 = 0.41708 s.
        assert!((c[0].in_point - 10.0 * 1001.0 / 24000.0).abs() < 1e-12);
        // b starts at exactly 2.002 s but is shown from canvas frame 50 =
        // 2.0 s: its in-point moves back by the 0.002 s of rounding.
        assert!((c[1].in_point - 0.0).abs() < 1e-12, "{}", c[1].in_point);
        assert_eq!(m.name, "cut");
        assert_eq!(m.deliverables[0].preset, "web/h264-1080p");
        assert_eq!(m.deliverables[0].name, "web_h264-1080p");
        assert!(matches!(c[0].source, VideoSource::Media { .. }));
        assert_eq!(c[0].fit, Fit::Fit);
    }

    #[test]
    fn in_point_moves_with_start_rounding() {
        let d = media_dir();
        // A 30 fps clip after a 1-frame (at 30) gap: starts at 1/30 s =
        // 0.8333 canvas frames → frame 1 (= 0.04 s), so it is shown 0.00667 s
        // late: its in-point moves forward by that much.
        let t = timeline(
            vec![track(
                "Video",
                vec![
                    gap(1.0, 30.0),
                    clip("a", media_ref("a.mov", 30.0), 30.0, 60.0, 30.0),
                ],
            )],
            canvas25(),
        );
        let m = load(d.path(), &t).unwrap();
        let c = &m.video[0].clips[0];
        assert_eq!(c.start, 1);
        // 61/30 s = 50.83 → 51: 50 frames.
        assert_eq!(c.frames, 50);
        assert!(
            (c.in_point - (1.0 + (0.04 - 1.0 / 30.0))).abs() < 1e-12,
            "{}",
            c.in_point
        );
    }

    #[test]
    fn dissolve_overlaps_both_clips_around_the_cut() {
        let d = media_dir();
        let t = timeline(
            vec![track(
                "Video",
                vec![
                    clip("a", media_ref("a.mov", 25.0), 0.0, 50.0, 25.0),
                    dissolve(5.0, 7.0, 25.0),
                    clip("b", media_ref("b.mov", 25.0), 25.0, 50.0, 25.0),
                ],
            )],
            canvas25(),
        );
        let m = load(d.path(), &t).unwrap();
        let c = &m.video[0].clips;
        // The outgoing clip runs out_offset (7) past the cut at 50.
        assert_eq!((c[0].start, c[0].frames), (0, 57));
        // The incoming one starts in_offset (5) before it, its source 5 frames earlier.
        assert_eq!((c[1].start, c[1].frames), (45, 55));
        assert!((c[1].in_point - 0.8).abs() < 1e-12);
        assert_eq!(
            c[1].transition_in,
            Some(Transition {
                kind: TransitionKind::Dissolve,
                frames: 12
            })
        );
        // The previous clip covers the transition: 45 + 12 = 57.
        assert_eq!(c[0].start + c[0].frames, c[1].start + 12);
        assert_eq!(m.canvas.frames, 100);

        // Without head handle, the incoming clip cannot start earlier.
        let t = timeline(
            vec![track(
                "Video",
                vec![
                    clip("a", media_ref("a.mov", 25.0), 0.0, 50.0, 25.0),
                    dissolve(5.0, 7.0, 25.0),
                    clip("b", media_ref("b.mov", 25.0), 2.0, 50.0, 25.0),
                ],
            )],
            canvas25(),
        );
        let e = load(d.path(), &t).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("\"b\""), "{text}");
        assert!(text.contains("before its in-point"), "{text}");
        assert_eq!(e.field.as_deref(), Some("tracks.children[0].children[1]"));
    }

    #[test]
    fn dissolve_from_and_to_a_gap_fades_through_the_background() {
        let d = media_dir();
        let t = timeline(
            vec![track(
                "Video",
                vec![
                    gap(10.0, 25.0),
                    dissolve(2.0, 2.0, 25.0),
                    clip("a", media_ref("a.mov", 25.0), 25.0, 20.0, 25.0),
                    dissolve(3.0, 3.0, 25.0),
                    gap(10.0, 25.0),
                ],
            )],
            canvas25(),
        );
        let m = load(d.path(), &t).unwrap();
        let c = &m.video[0].clips[0];
        assert_eq!((c.start, c.frames), (8, 25));
        assert_eq!(c.transition_in.as_ref().map(|t| t.frames), Some(4));
        // Fades out over the last 6 frames.
        assert_eq!(c.opacity.at(18.0), 1.0);
        assert_eq!(c.opacity.at(25.0), 0.0);
        assert!((c.opacity.at(22.0) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn nested_stacks_and_tracks_flatten_with_their_trims() {
        let d = media_dir();
        // A nested stack of two tracks, trimmed to its frames 10..40, after
        // a 20-frame clip.
        let inner = json!({"OTIO_SCHEMA": "Stack.1", "name": "comp",
        "source_range": range(10.0, 30.0, 25.0),
        "children": [
            track("Video", vec![clip("bg", media_ref("a.mov", 25.0), 100.0, 50.0, 25.0)]),
            track("Video", vec![gap(20.0, 25.0),
                clip("fg", json!({"OTIO_SCHEMA": "GeneratorReference.1",
                    "generator_kind": "SolidColor", "parameters": {"color": "#ff000080"}}),
                    0.0, 100.0, 25.0)]),
        ]});
        let mut outer = track(
            "Video",
            vec![clip("a", media_ref("b.mov", 25.0), 0.0, 20.0, 25.0), inner],
        );
        outer["name"] = json!("main");
        let t = timeline(vec![outer], canvas25());
        let m = load(d.path(), &t).unwrap();
        assert_eq!(m.video.len(), 2, "{:#?}", m.video);
        assert_eq!(m.video[0].name, "main");
        assert_eq!(m.video[1].name, "main.2");
        let base = &m.video[0].clips;
        assert_eq!((base[0].start, base[0].frames), (0, 20));
        // bg: inner frames 10..40 of a clip at 0..50 → outer 20..50, source from 100 + 10.
        assert_eq!((base[1].start, base[1].frames), (20, 30));
        assert!((base[1].in_point - 110.0 / 25.0).abs() < 1e-12);
        // fg: inner 20..120 trimmed to 20..40 → outer 30..50.
        let fg = &m.video[1].clips[0];
        assert_eq!((fg.start, fg.frames), (30, 20));
        assert_eq!(
            fg.source,
            VideoSource::Solid {
                color: Rgba([255, 0, 0, 128])
            }
        );
        assert_eq!(m.canvas.frames, 50);
    }

    #[test]
    fn track_source_range_trims_the_track() {
        let d = media_dir();
        let mut tr = track(
            "Video",
            vec![
                clip("a", media_ref("a.mov", 25.0), 0.0, 30.0, 25.0),
                clip("b", media_ref("b.mov", 25.0), 0.0, 30.0, 25.0),
            ],
        );
        tr["source_range"] = range(20.0, 20.0, 25.0);
        let m = load(d.path(), &timeline(vec![tr], canvas25())).unwrap();
        let c = &m.video[0].clips;
        assert_eq!((c[0].start, c[0].frames), (0, 10));
        assert!((c[0].in_point - 20.0 / 25.0).abs() < 1e-12);
        assert_eq!((c[1].start, c[1].frames), (10, 10));
        assert_eq!(m.canvas.frames, 20);
    }

    #[test]
    fn time_warps_markers_and_audio() {
        let d = media_dir();
        let mut a = clip("slow", media_ref("a.mov", 25.0), 0.0, 25.0, 25.0);
        a["effects"] = json!([{"OTIO_SCHEMA": "LinearTimeWarp.1", "effect_name": "LinearTimeWarp",
                               "time_scalar": 0.5}]);
        a["markers"] = json!([{"OTIO_SCHEMA": "Marker.2", "name": "check this"}]);
        let mut b = clip("held", media_ref("b.mov", 25.0), 10.0, 25.0, 25.0);
        b["effects"] = json!([{"OTIO_SCHEMA": "FreezeFrame.1", "effect_name": "FreezeFrame",
                               "time_scalar": 0.0}]);
        let t = timeline(
            vec![
                track("Video", vec![a, b]),
                track(
                    "Audio",
                    vec![
                        gap(5.0, 25.0),
                        clip("snd", media_ref("a.mov", 25.0), 0.0, 40.0, 25.0),
                    ],
                ),
            ],
            canvas25(),
        );
        let m = load(d.path(), &t).unwrap();
        assert_eq!(m.video[0].clips[0].speed, 0.5);
        assert_eq!(m.video[0].clips[1].speed, 0.0);
        assert!((m.video[0].clips[1].in_point - 0.4).abs() < 1e-12);
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        assert!(m.warnings[0].contains("check this"), "{:?}", m.warnings);
        assert!(
            m.warnings[0].contains("tracks.children[0].children[0]"),
            "{:?}",
            m.warnings
        );
        let snd = &m.audio[0].clips[0];
        assert_eq!((snd.start, snd.frames), (5, 40));
        assert_eq!(m.audio[0].name, "A1");
        assert_eq!(m.video[0].name, "V1");
        assert_eq!(m.canvas.frames, 50);
    }

    #[test]
    fn unknown_schema_names_it_and_its_path() {
        let d = media_dir();
        let t = timeline(
            vec![track(
                "Video",
                vec![
                    clip("a", media_ref("a.mov", 25.0), 0.0, 25.0, 25.0),
                    json!({"OTIO_SCHEMA": "SerializableCollection.1", "children": []}),
                ],
            )],
            canvas25(),
        );
        let e = load(d.path(), &t).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tracks.children[0].children[1]"));
        let text = e.to_string();
        assert!(
            text.contains("schema \"SerializableCollection.1\" is not one this host reads"),
            "{text}"
        );
        assert!(
            text.starts_with(&format!(
                "{}: field `tracks.children[0].children[1]`",
                d.path().join("cut.otio").display()
            )),
            "{text}"
        );

        // An unknown effect names its schema and the clip.
        let mut a = clip("graded", media_ref("a.mov", 25.0), 0.0, 25.0, 25.0);
        a["effects"] = json!([{"OTIO_SCHEMA": "Effect.1", "effect_name": "Blur"}]);
        let e = load(
            d.path(),
            &timeline(vec![track("Video", vec![a])], canvas25()),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("effect Effect.1 (effect_name \"Blur\")"),
            "{text}"
        );
        assert!(text.contains("\"graded\""), "{text}");
        assert_eq!(
            e.field.as_deref(),
            Some("tracks.children[0].children[0].effects[0]")
        );

        // A missing reference names the clip.
        let a = clip(
            "offline",
            json!({"OTIO_SCHEMA": "MissingReference.1"}),
            0.0,
            25.0,
            25.0,
        );
        let e = load(
            d.path(),
            &timeline(vec![track("Video", vec![a])], canvas25()),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("clip \"offline\""), "{text}");
        assert!(text.contains("MissingReference"), "{text}");
    }

    #[test]
    fn media_paths_follow_the_manifest_rules() {
        let d = media_dir();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("in.mov"), b"x").unwrap();
        let with = |url: &str| {
            timeline(
                vec![track(
                    "Video",
                    vec![clip("c", media_ref(url, 25.0), 0.0, 25.0, 25.0)],
                )],
                canvas25(),
            )
        };
        let path = root.join("cut.otio");
        let ctx = LoadContext {
            media_roots: vec![root.clone()],
            ..LoadContext::default()
        };
        let run = |t: &Value| parse(t.to_string().as_bytes(), &path, &ctx);
        let canon = std::fs::canonicalize(root.join("in.mov")).unwrap();
        for ok in [
            "in.mov".to_owned(),
            format!("file://{}", canon.display()),
            format!("file://localhost{}", canon.display()).replace("in.mov", "%69n.mov"),
        ] {
            let m = run(&with(&ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(
                m.video[0].clips[0].source,
                VideoSource::Media {
                    path: canon.clone()
                }
            );
        }
        let e = run(&with("missing.mov")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("\"missing.mov\" names a file that does not exist"),
            "{text}"
        );
        assert!(text.contains("clip \"c\""), "{text}");
        assert_eq!(
            e.field.as_deref(),
            Some("tracks.children[0].children[0].media_references.DEFAULT_MEDIA.target_url")
        );
        for outside in ["../a.mov", "../nope.mov", "file:///etc/passwd"] {
            let e = run(&with(outside)).unwrap_err();
            assert!(e.to_string().contains("is outside the media roots"), "{e}");
        }
        let e = run(&with("https://example.com/a.mov")).unwrap_err();
        assert!(
            e.to_string()
                .contains("URL scheme \"https\" is not supported"),
            "{e}"
        );
    }

    #[test]
    fn json_syntax_errors_give_line_and_column() {
        let d = media_dir();
        let src = "{\n  \"OTIO_SCHEMA\": \"Timeline.1\",\n  \"tracks\": [1, 2,,]\n}\n";
        let path = d.path().join("bad.otio");
        let e = parse(src.as_bytes(), &path, &LoadContext::default()).unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(19)), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}:3:19: JSON syntax error", path.display())),
            "{e}"
        );
        let e = parse(
            b"{\"OTIO_SCHEMA\": \"Timeline.1\"",
            &path,
            &LoadContext::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("the file ends early"), "{e}");
        let e = parse(
            b"{\"OTIO_SCHEMA\": \"Clip.2\"}",
            &path,
            &LoadContext::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("schema \"Clip.2\" is not one"),
            "{e}"
        );
    }

    #[test]
    fn canvas_and_deliverables_defaults() {
        let d = media_dir();
        let r = 30000.0 / 1001.0;
        let t = timeline(
            vec![track(
                "Video",
                vec![clip("a", media_ref("a.mov", r), 0.0, 60.0, r)],
            )],
            json!({}),
        );
        // No deliverables and no defaults: refused, saying how to name some.
        let e = load(d.path(), &t).unwrap_err();
        assert!(e.to_string().contains("names no deliverables"), "{e}");
        let ctx = LoadContext {
            default_presets: vec!["web/h264-720p".into()],
            ..LoadContext::default()
        };
        let m = parse(t.to_string().as_bytes(), &d.path().join("x.otio"), &ctx).unwrap();
        assert_eq!((m.canvas.width, m.canvas.height), DEFAULT_SIZE);
        assert_eq!(
            m.canvas.frame_rate,
            Rate {
                num: 30000,
                den: 1001
            }
        );
        assert_eq!(m.canvas.frames, 60);
        assert_eq!(m.deliverables[0].name, "h264-720p");
        assert_eq!(m.name, "x");

        let t = timeline(
            vec![track(
                "Video",
                vec![clip("a", media_ref("a.mov", 25.0), 0.0, 25.0, 25.0)],
            )],
            json!({"name": "promo", "priority": 80,
                   "canvas": {"width": 640, "height": 360, "frame_rate": "30000/1001", "background": "#102030"},
                   "deliverables": ["web/h264-720p", {"preset": "web/h264-1080p", "name": "hd",
                                                       "overrides": {"video": {"options": {"crf": 18}}}}]}),
        );
        let m = load(d.path(), &t).unwrap();
        assert_eq!((m.name.as_str(), m.priority), ("promo", 80));
        assert_eq!(m.canvas.background, Rgba([0x10, 0x20, 0x30, 255]));
        // 1 s at 29.97 = 29.97 → 30 frames.
        assert_eq!(m.canvas.frames, 30);
        assert_eq!(m.deliverables[1].name, "hd");
        assert_eq!(
            m.deliverables[1].overrides,
            toml::from_str::<toml::Table>("video.options.crf = 18").unwrap()
        );
        assert_eq!(peek_priority(t.to_string().as_bytes()), 80);

        let mut bad = t.clone();
        bad["metadata"]["deliver"]["canvas"]["frame_rate"] = json!(29.97);
        let e = load(d.path(), &bad).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("metadata.deliver.canvas.frame_rate")
        );
        assert!(e.to_string().contains("30000/1001"), "{e}");
        let mut bad = t.clone();
        bad["metadata"]["deliver"]["canvas"]["width"] = json!(641);
        let e = load(d.path(), &bad).unwrap_err();
        assert!(e.to_string().contains("is odd"), "{e}");
    }

    #[test]
    fn image_sequences_name_their_frames() {
        let d = media_dir();
        let seq_dir = d.path().join("seq");
        std::fs::create_dir(&seq_dir).unwrap();
        for n in 1001..1011 {
            std::fs::write(seq_dir.join(format!("f.{n:04}.png")), b"x").unwrap();
        }
        let seq = json!({"OTIO_SCHEMA": "ImageSequenceReference.1", "target_url_base": "seq/",
            "name_prefix": "f.", "name_suffix": ".png", "start_frame": 1001, "frame_step": 1,
            "rate": 25.0, "frame_zero_padding": 4, "missing_frame_policy": "error",
            "available_range": range(0.0, 10.0, 25.0)});
        let t = timeline(
            vec![track("Video", vec![clip("s", seq.clone(), 2.0, 8.0, 25.0)])],
            canvas25(),
        );
        let m = load(d.path(), &t).unwrap();
        let VideoSource::ImageSequence(s) = &m.video[0].clips[0].source else {
            panic!("{:?}", m.video[0].clips[0].source);
        };
        let c = &m.video[0].clips[0];
        assert_eq!(s.number_at(c.in_point), 1003);
        assert_eq!(
            s.path(1003),
            std::fs::canonicalize(&seq_dir).unwrap().join("f.1003.png")
        );
        // Frames past the last image are refused, naming the file.
        let t = timeline(
            vec![track("Video", vec![clip("s", seq, 2.0, 9.0, 25.0)])],
            canvas25(),
        );
        let e = load(d.path(), &t).unwrap_err();
        assert!(e.to_string().contains("f.1011.png"), "{e}");
    }

    #[test]
    fn a_toml_manifest_takes_canvas_and_tracks_from_a_timeline() {
        let d = media_dir();
        let mut a = clip("a", media_ref("a.mov", 25.0), 0.0, 25.0, 25.0);
        a["markers"] = json!([{"OTIO_SCHEMA": "Marker.2", "name": "note"}]);
        let t = timeline(
            vec![track("Video", vec![a])],
            json!({"canvas": {"width": 640, "height": 360}}),
        );
        std::fs::create_dir(d.path().join("edit")).unwrap();
        std::fs::write(d.path().join("edit/cut.otio"), t.to_string()).unwrap();
        // The timeline names a.mov relative to its own folder: put it there.
        std::fs::write(d.path().join("edit/a.mov"), b"x").unwrap();
        let toml = "version = 1\nname = \"promo\"\ntimeline = \"edit/cut.otio\"\n\n[[deliverable]]\npreset = \"web/h264-720p\"\n";
        let path = d.path().join("m.toml");
        let m = super::super::parse(toml.as_bytes(), &path, &LoadContext::default()).unwrap();
        assert_eq!(
            (m.canvas.width, m.canvas.height, m.canvas.frames),
            (640, 360, 25)
        );
        assert_eq!(m.name, "promo");
        assert_eq!(m.deliverables[0].preset, "web/h264-720p");
        assert_eq!(
            m.video[0].clips[0].source,
            VideoSource::Media {
                path: std::fs::canonicalize(d.path().join("edit/a.mov")).unwrap()
            }
        );
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);

        // Not both a timeline and a canvas.
        let both = toml.replace("[[deliverable]]", "[canvas]\nwidth = 16\n\n[[deliverable]]");
        let e = super::super::parse(both.as_bytes(), &path, &LoadContext::default()).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(5), Some("canvas")),
            "{e}"
        );
        // A timeline outside the roots is refused like media.
        let outside = toml.replace("edit/cut.otio", "../cut.otio");
        let e =
            super::super::parse(outside.as_bytes(), &path, &LoadContext::default()).unwrap_err();
        assert!(e.to_string().contains("outside the media roots"), "{e}");
        assert_eq!((e.line, e.column), (Some(3), Some(12)), "{e}");
        // Errors inside the timeline name the timeline file.
        std::fs::write(d.path().join("edit/cut.otio"), "{").unwrap();
        let e = super::super::parse(toml.as_bytes(), &path, &LoadContext::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("edit/cut.otio:1:1: the file ends early"),
            "{e}"
        );
    }

    #[test]
    fn the_canvas_size_is_probed_from_the_first_video_clip() {
        let d = media_dir();
        let t = timeline(
            vec![track(
                "Video",
                vec![
                    clip(
                        "bars",
                        json!({"OTIO_SCHEMA": "GeneratorReference.1", "generator_kind": "SMPTEBars"}),
                        0.0,
                        5.0,
                        25.0,
                    ),
                    clip("a", media_ref("a.mov", 25.0), 0.0, 25.0, 25.0),
                    clip("b", media_ref("b.mov", 25.0), 0.0, 25.0, 25.0),
                ],
            )],
            json!({"deliverables": ["web/h264-1080p"]}),
        );
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let ctx = LoadContext {
            probe: Some(super::super::MediaProbe(std::sync::Arc::new(
                move |p: &Path| {
                    s2.lock().unwrap().push(p.file_name().unwrap().to_owned());
                    Some((321, 179))
                },
            ))),
            ..LoadContext::default()
        };
        let m = parse(t.to_string().as_bytes(), &d.path().join("x.otio"), &ctx).unwrap();
        // Odd sizes are rounded up to even ones; only the first media clip is read.
        assert_eq!((m.canvas.width, m.canvas.height), (322, 180));
        assert_eq!(*seen.lock().unwrap(), ["a.mov"]);
        assert_eq!(m.video[0].clips[0].source, VideoSource::Bars);
        // A size in the timeline wins.
        let mut sized = t.clone();
        sized["metadata"]["deliver"]["canvas"] = json!({"width": 640, "height": 360});
        let m = parse(sized.to_string().as_bytes(), &d.path().join("x.otio"), &ctx).unwrap();
        assert_eq!((m.canvas.width, m.canvas.height), (640, 360));
    }
}
