//! `watch.toml`: the roots one watch host serves and how it serves each.
//!
//! Read like manifests and presets, in two phases: [`RawConfig`] (serde,
//! unknown fields refused, spans kept) is checked into a [`WatchConfig`],
//! and every refusal is an [`InputError`] naming the file, line, column,
//! field, bad value and what would be accepted:
//!
//! ```text
//! watch.toml:14:10: field `root[1].weight`: value 0 is out of range (expected a number greater than 0 and at most 1000)
//! ```
//!
//! ```toml
//! max_jobs = 4              # optional: jobs at once across all roots, 1 to 1024;
//!                           #   default: the sum of the roots' concurrencies
//!
//! [defaults]                # optional; every root's settings unless it sets its own
//! settle_ms = 2000          # a manifest is taken once unchanged this long, 0 to 3600000
//!                           #   (one hour); default 1000. Media settle the same way.
//! concurrency = 1           # jobs of one root at once, 1 to 256, default 1
//! media_wait_s = 600        # how long a job waits for media still arriving, 0 to 86400
//! segment_seconds = 10      # long deliverables are encoded in recorded segments this
//!                           #   long, so a killed host resumes them; 0 to 3600,
//!                           #   0 = in one piece; default 10
//! ready_sidecars = false    # take a file only once `<name>.ready` is beside it
//! isolation = "in-process"  # or "process": every encoder of this root's jobs runs in a
//!                           #   child process, so a crashing codec fails one job only;
//!                           #   a preset's `video.isolation = "process"` applies anyway
//!
//! [[root]]                  # at least one
//! path = "/mnt/promos"      # required; relative paths are relative to this file;
//!                           #   created when missing; not the same folder as another root
//! name = "promos"           # optional, default: the path's last component; unique,
//!                           #   1 to 64 characters, no / or \
//! presets = ["web/h264-1080p"]  # optional: what a manifest that names no [[deliverable]]
//!                           #   gets, one deliverable per preset named after the id's last
//!                           #   component (those must differ); each a loaded preset
//! priority = 10             # optional, -1000 to 1000, default 0: higher roots start first
//! weight = 1                # optional, greater than 0, at most 1000, default 1: the
//!                           #   root's fair share of max_jobs among roots of equal priority
//! media_roots = ["/mnt/media"]  # optional, existing folders; default: the root itself
//! concurrency = 2           # and any other [defaults] field, for this root only
//! ```
//!
//! Opening a root ([`RootConfig::open`]) creates its folders and proves
//! that each can be written; a root that cannot be used stops the host at
//! start, naming the root, where it is configured and why.

use std::collections::HashMap;
use std::fmt::Display;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use deliver_watch::WatchRoot;
use serde::Deserialize;
use toml::Spanned;

use crate::isolate::Isolation;
use crate::manifest::error::from_toml_error;
use crate::manifest::validate::{absolute, normalize, valid_preset_id};
use crate::manifest::{line_col, InputError};
use crate::preset::PresetLibrary;

/// How long a file must stay unchanged before it is taken, by default.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(1000);
/// How long a job waits for media still arriving, by default.
pub const DEFAULT_MEDIA_WAIT: Duration = Duration::from_secs(600);
/// Largest watch configuration read (it is a page of text).
const MAX_BYTES: u64 = 1 << 20;

const SETTLE_EXPECTED: &str = "milliseconds from 0 to 3600000 (one hour)";
const CONCURRENCY_EXPECTED: &str = "an integer from 1 to 256";
const MEDIA_WAIT_EXPECTED: &str = "seconds from 0 to 86400 (one day)";
const SEGMENT_EXPECTED: &str = "seconds from 0 (no segments) to 3600";
const PRIORITY_EXPECTED: &str = "an integer from -1000 to 1000";
const WEIGHT_EXPECTED: &str = "a number greater than 0 and at most 1000";
const MAX_JOBS_EXPECTED: &str = "an integer from 1 to 1024";
const NAME_EXPECTED: &str = "1 to 64 characters, no /, \\ or control characters";

/// The configuration as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub max_jobs: Option<Spanned<i64>>,
    pub defaults: Option<RawSettings>,
    #[serde(default)]
    pub root: Vec<Spanned<RawRoot>>,
}

/// The settings a root takes from `[defaults]` unless it sets its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub settle_ms: Option<Spanned<i64>>,
    pub concurrency: Option<Spanned<i64>>,
    pub media_wait_s: Option<Spanned<i64>>,
    pub segment_seconds: Option<Spanned<f64>>,
    pub ready_sidecars: Option<Spanned<bool>>,
    pub isolation: Option<Spanned<String>>,
}

/// One `[[root]]` as written. The settings of [`RawSettings`] are repeated
/// rather than flattened: serde's `flatten` cannot refuse unknown fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoot {
    pub path: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub presets: Option<Spanned<Vec<Spanned<String>>>>,
    pub priority: Option<Spanned<i64>>,
    pub weight: Option<Spanned<f64>>,
    pub media_roots: Option<Spanned<Vec<Spanned<String>>>>,
    pub settle_ms: Option<Spanned<i64>>,
    pub concurrency: Option<Spanned<i64>>,
    pub media_wait_s: Option<Spanned<i64>>,
    pub segment_seconds: Option<Spanned<f64>>,
    pub ready_sidecars: Option<Spanned<bool>>,
    pub isolation: Option<Spanned<String>>,
}

/// A checked watch configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchConfig {
    /// The file it was read from; `None` for a root given on the command line.
    pub file: Option<PathBuf>,
    /// Jobs at once across all roots; `None`: the sum of their concurrencies.
    pub max_jobs: Option<usize>,
    pub roots: Vec<RootConfig>,
}

/// One root's checked settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RootConfig {
    /// Absolute (it may not exist yet: opening creates it).
    pub path: PathBuf,
    pub name: String,
    /// Preset ids delivered for a manifest that names no deliverables.
    pub presets: Vec<String>,
    /// Higher roots' jobs start first.
    pub priority: i32,
    /// Fair share among roots of equal priority (greater than 0).
    pub weight: f64,
    /// Jobs of this root at once (at least 1).
    pub concurrency: usize,
    /// Where media may be read from (absolute).
    pub media_roots: Vec<PathBuf>,
    /// A manifest or medium is taken once unchanged this long.
    pub settle: Duration,
    /// How long a job waits for media still arriving.
    pub media_wait: Duration,
    /// Encode in recorded segments this long (`None`: the default,
    /// [`crate::segments::DEFAULT_SECONDS`]; 0: in one piece).
    pub segment_seconds: Option<f64>,
    /// Take a file only once its `<name>.ready` sidecar exists.
    pub ready_sidecars: bool,
    /// Where this root's encoders run at least (a preset may still ask for
    /// a child process).
    pub isolation: Isolation,
    /// Where `path` is written, for errors found when the root is opened.
    pub origin: Option<Origin>,
}

/// A place in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub field: String,
}

/// A root that cannot be used: not a folder, or a folder the host cannot
/// create or write.
#[derive(Debug, thiserror::Error)]
pub struct RootError {
    pub root: PathBuf,
    pub origin: Option<Origin>,
    pub reason: String,
}

impl std::fmt::Display for RootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(o) = &self.origin {
            write!(
                f,
                "{}:{}:{}: field `{}`: ",
                o.file.display(),
                o.line,
                o.column,
                o.field
            )?;
        }
        write!(
            f,
            "cannot use the watch root {}: {}",
            self.root.display(),
            self.reason
        )
    }
}

impl RootConfig {
    /// A root given on the command line: its flags, no default presets,
    /// priority 0, weight 1.
    pub fn single(
        path: &Path,
        settle: Duration,
        concurrency: usize,
        media_roots: &[PathBuf],
        ready_sidecars: bool,
    ) -> RootConfig {
        let path = absolute(path);
        RootConfig {
            name: default_name(&path),
            media_roots: if media_roots.is_empty() {
                vec![path.clone()]
            } else {
                media_roots.iter().map(|p| absolute(p)).collect()
            },
            path,
            presets: Vec::new(),
            priority: 0,
            weight: 1.0,
            concurrency: concurrency.max(1),
            settle,
            media_wait: DEFAULT_MEDIA_WAIT,
            segment_seconds: None,
            ready_sidecars,
            isolation: Isolation::InProcess,
            origin: None,
        }
    }

    fn error(&self, reason: impl Into<String>) -> RootError {
        RootError {
            root: self.path.clone(),
            origin: self.origin.clone(),
            reason: reason.into(),
        }
    }

    /// Creates the root's folders where missing and proves that the host
    /// can write each of them (it renames manifests through all of them and
    /// keeps its journal in `.deliver/`).
    ///
    /// # Errors
    /// A [`RootError`] naming the root, where it is configured and why: it
    /// is not a folder, or a folder cannot be created or written.
    pub fn open(&self) -> Result<WatchRoot, RootError> {
        if let Ok(md) = std::fs::metadata(&self.path) {
            if !md.is_dir() {
                return Err(self.error("it is not a folder"));
            }
        }
        let root = WatchRoot::open(&self.path).map_err(|e| self.error(e.to_string()))?;
        let probe_name = format!(".write-probe-{}.tmp", std::process::id());
        for dir in [
            root.incoming(),
            root.processing(),
            root.done(),
            root.failed(),
            root.state_dir(),
        ] {
            let probe = dir.join(&probe_name);
            std::fs::write(&probe, b"")
                .and_then(|()| std::fs::remove_file(&probe))
                .map_err(|e| self.error(format!("cannot write in {}: {e}", dir.display())))?;
        }
        Ok(root)
    }
}

/// The last component of `path`, or the whole path when it has none (`/`).
fn default_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

impl WatchConfig {
    /// One root, as `deliver watch <root>` gives it.
    pub fn single(root: RootConfig) -> WatchConfig {
        WatchConfig {
            file: None,
            max_jobs: None,
            roots: vec![root],
        }
    }

    /// Reads and checks `file`; presets that roots name must be in `presets`.
    ///
    /// # Errors
    /// An [`InputError`] naming the file, line, column and field when the
    /// file cannot be read, is not TOML, or breaks a rule.
    pub fn load(file: &Path, presets: &PresetLibrary) -> Result<WatchConfig, InputError> {
        use std::io::Read;
        let f = std::fs::File::open(file).map_err(|e| {
            InputError::new(file, format!("cannot open the watch configuration: {e}"))
        })?;
        let mut buf = Vec::new();
        f.take(MAX_BYTES + 1).read_to_end(&mut buf).map_err(|e| {
            InputError::new(file, format!("cannot read the watch configuration: {e}"))
        })?;
        if buf.len() as u64 > MAX_BYTES {
            return Err(
                InputError::new(file, "the watch configuration is too large")
                    .expected(format!("a file of at most {MAX_BYTES} bytes")),
            );
        }
        let text = String::from_utf8(buf).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let valid = std::str::from_utf8(&e.as_bytes()[..at]).unwrap_or("");
            InputError::new(file, "the file is not valid UTF-8")
                .at_byte(valid, at)
                .expected("UTF-8 text")
        })?;
        Self::parse(&text, file, presets)
    }

    /// Checks the text of `file` (relative paths resolve against the file's
    /// folder, which is also where existence is checked).
    ///
    /// # Errors
    /// As [`WatchConfig::load`].
    pub fn parse(
        text: &str,
        file: &Path,
        presets: &PresetLibrary,
    ) -> Result<WatchConfig, InputError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| from_toml_error(file, text, &e))?;
        let base = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Checker {
            file,
            src: text,
            base: absolute(base),
            presets,
        }
        .config(raw)
    }
}

struct Checker<'a> {
    file: &'a Path,
    src: &'a str,
    base: PathBuf,
    presets: &'a PresetLibrary,
}

/// The settings a root ends up with, before they are checked: each value
/// with the field it was written as.
type Setting<'r, T> = Option<(&'r Spanned<T>, String)>;

impl Checker<'_> {
    fn bad(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        predicate: impl Display,
        expected: impl Into<String>,
    ) -> InputError {
        InputError::bad_value(self.file, self.src, span, field, predicate, expected)
    }

    fn isolation(&self, v: &Spanned<String>, field: String) -> Result<Isolation, InputError> {
        Isolation::parse(v.get_ref())
            .ok_or_else(|| self.bad(v.span(), field, "is not an isolation", Isolation::EXPECTED))
    }

    fn int(
        &self,
        v: &Spanned<i64>,
        field: &str,
        range: RangeInclusive<i64>,
        expected: &str,
    ) -> Result<i64, InputError> {
        if range.contains(v.get_ref()) {
            Ok(*v.get_ref())
        } else {
            Err(self.bad(v.span(), field, "is out of range", expected))
        }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        normalize(&self.base.join(path))
    }

    fn config(&self, raw: RawConfig) -> Result<WatchConfig, InputError> {
        let max_jobs = raw
            .max_jobs
            .as_ref()
            .map(|v| self.int(v, "max_jobs", 1..=1024, MAX_JOBS_EXPECTED))
            .transpose()?
            .map(|n| n as usize);
        let defaults = raw.defaults.unwrap_or_default();
        // Checked even where every root overrides them: a bad default is a
        // mistake waiting for the next root.
        self.settings(
            &[
                defaults
                    .settle_ms
                    .as_ref()
                    .map(|v| (v, "defaults.settle_ms".into())),
                defaults
                    .concurrency
                    .as_ref()
                    .map(|v| (v, "defaults.concurrency".into())),
                defaults
                    .media_wait_s
                    .as_ref()
                    .map(|v| (v, "defaults.media_wait_s".into())),
            ],
            defaults
                .segment_seconds
                .as_ref()
                .map(|v| (v, "defaults.segment_seconds".into())),
        )?;
        if let Some(v) = &defaults.isolation {
            self.isolation(v, "defaults.isolation".into())?;
        }
        if raw.root.is_empty() {
            return Err(InputError::new(self.file, "no [[root]] to watch")
                .at(1, 1)
                .field("root")
                .expected("at least one [[root]] with path = \"…\""));
        }
        let mut roots: Vec<RootConfig> = Vec::with_capacity(raw.root.len());
        // Canonical path → index, lower-cased name → index.
        let mut paths: HashMap<PathBuf, usize> = HashMap::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, r) in raw.root.iter().enumerate() {
            let root = self.root(i, r, &defaults)?;
            let f = |name: &str| format!("root[{i}].{name}");
            let r = r.get_ref();
            let path_span = r.path.as_ref().map(Spanned::span).unwrap_or_default();
            if let Some(j) = paths.insert(absolute(&root.path), i) {
                return Err(self.bad(
                    path_span,
                    f("path"),
                    format!("is the folder of root[{j}] too"),
                    "a different folder for each root",
                ));
            }
            if let Some(j) = names.insert(root.name.to_lowercase(), i) {
                return Err(match &r.name {
                    Some(n) => self.bad(
                        n.span(),
                        f("name"),
                        format!("is the name of root[{j}] too"),
                        "a name unique among the roots",
                    ),
                    None => self.bad(
                        path_span,
                        f("path"),
                        format!(
                            "gives the name \"{}\" (its last component), which root[{j}] has \
                             too",
                            root.name
                        ),
                        "name = \"…\" on one of them, unique among the roots",
                    ),
                });
            }
            roots.push(root);
        }
        Ok(WatchConfig {
            file: Some(self.file.to_owned()),
            max_jobs,
            roots,
        })
    }

    /// Checks the integer settings (settle, concurrency, media wait, in
    /// that order) and the segment length; returns them resolved.
    fn settings(
        &self,
        ints: &[Setting<'_, i64>; 3],
        segment: Setting<'_, f64>,
    ) -> Result<(Duration, usize, Duration, Option<f64>), InputError> {
        let settle = match &ints[0] {
            Some((v, field)) => {
                Duration::from_millis(self.int(v, field, 0..=3_600_000, SETTLE_EXPECTED)? as u64)
            }
            None => DEFAULT_SETTLE,
        };
        let concurrency = match &ints[1] {
            Some((v, field)) => self.int(v, field, 1..=256, CONCURRENCY_EXPECTED)? as usize,
            None => 1,
        };
        let media_wait = match &ints[2] {
            Some((v, field)) => {
                Duration::from_secs(self.int(v, field, 0..=86_400, MEDIA_WAIT_EXPECTED)? as u64)
            }
            None => DEFAULT_MEDIA_WAIT,
        };
        let segment = match segment {
            Some((v, field)) => {
                let x = *v.get_ref();
                if !(x.is_finite() && (0.0..=3600.0).contains(&x)) {
                    return Err(self.bad(v.span(), field, "is out of range", SEGMENT_EXPECTED));
                }
                Some(x)
            }
            None => None,
        };
        Ok((settle, concurrency, media_wait, segment))
    }

    fn root(
        &self,
        i: usize,
        spanned: &Spanned<RawRoot>,
        defaults: &RawSettings,
    ) -> Result<RootConfig, InputError> {
        let r = spanned.get_ref();
        let f = |name: &str| format!("root[{i}].{name}");
        let path_raw = r.path.as_ref().ok_or_else(|| {
            InputError::new(self.file, "required field is missing")
                .at_byte(self.src, spanned.span().start)
                .field(f("path"))
                .expected("path = \"…\": the folder to watch")
        })?;
        if path_raw.get_ref().trim().is_empty() || path_raw.get_ref().contains('\0') {
            return Err(self.bad(
                path_raw.span(),
                f("path"),
                "is not a folder path",
                "a path to the folder to watch",
            ));
        }
        let path = self.resolve(path_raw.get_ref());
        if let Some(problem) = unusable_folder(&path) {
            return Err(self.bad(
                path_raw.span(),
                f("path"),
                problem,
                "a folder to watch (created when missing)",
            ));
        }
        let (line, column) = line_col(self.src, path_raw.span().start);
        let origin = Origin {
            file: self.file.to_owned(),
            line,
            column,
            field: f("path"),
        };

        let name = match &r.name {
            Some(n) => {
                let s = n.get_ref();
                let len = s.chars().count();
                if !(1..=64).contains(&len)
                    || s.trim().is_empty()
                    || s.chars().any(|c| c == '/' || c == '\\' || c.is_control())
                {
                    return Err(self.bad(
                        n.span(),
                        f("name"),
                        "is not a usable name",
                        NAME_EXPECTED,
                    ));
                }
                s.clone()
            }
            None => default_name(&path),
        };

        let presets = match &r.presets {
            Some(list) => self.presets(list.get_ref(), &f("presets"), &name)?,
            None => Vec::new(),
        };

        let priority = match &r.priority {
            Some(v) => self.int(v, &f("priority"), -1000..=1000, PRIORITY_EXPECTED)? as i32,
            None => 0,
        };
        let weight = match &r.weight {
            Some(v) => {
                let x = *v.get_ref();
                if !(x.is_finite() && x > 0.0 && x <= 1000.0) {
                    return Err(self.bad(
                        v.span(),
                        f("weight"),
                        "is out of range",
                        WEIGHT_EXPECTED,
                    ));
                }
                x
            }
            None => 1.0,
        };

        let media_roots = match &r.media_roots {
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(self.bad(
                        list.span(),
                        f("media_roots"),
                        "is empty",
                        "existing folders media may be read from, or no media_roots (the \
                         root itself)",
                    ));
                }
                list.get_ref()
                    .iter()
                    .enumerate()
                    .map(|(k, m)| {
                        let p = self.resolve(m.get_ref());
                        let problem = match std::fs::metadata(&p) {
                            Ok(md) if md.is_dir() => return Ok(p),
                            Ok(_) => format!("is not a folder ({})", p.display()),
                            Err(e) => format!("cannot be read ({}: {e})", p.display()),
                        };
                        Err(self.bad(
                            m.span(),
                            format!("root[{i}].media_roots[{k}]"),
                            problem,
                            "an existing folder media may be read from",
                        ))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => vec![path.clone()],
        };

        fn pick<'r>(
            i: usize,
            own: &'r Option<Spanned<i64>>,
            default: &'r Option<Spanned<i64>>,
            key: &str,
        ) -> Setting<'r, i64> {
            own.as_ref()
                .map(|v| (v, format!("root[{i}].{key}")))
                .or_else(|| default.as_ref().map(|v| (v, format!("defaults.{key}"))))
        }
        let pick = |own, default, key| pick(i, own, default, key);
        let ints = [
            pick(&r.settle_ms, &defaults.settle_ms, "settle_ms"),
            pick(&r.concurrency, &defaults.concurrency, "concurrency"),
            pick(&r.media_wait_s, &defaults.media_wait_s, "media_wait_s"),
        ];
        let segment = r
            .segment_seconds
            .as_ref()
            .map(|v| (v, f("segment_seconds")))
            .or_else(|| {
                defaults
                    .segment_seconds
                    .as_ref()
                    .map(|v| (v, "defaults.segment_seconds".to_owned()))
            });
        let (settle, concurrency, media_wait, segment_seconds) = self.settings(&ints, segment)?;
        let ready_sidecars = r
            .ready_sidecars
            .as_ref()
            .or(defaults.ready_sidecars.as_ref())
            .is_some_and(|v| *v.get_ref());
        let isolation = match (&r.isolation, &defaults.isolation) {
            (Some(v), _) => self.isolation(v, f("isolation"))?,
            (None, Some(v)) => self.isolation(v, "defaults.isolation".into())?,
            (None, None) => Isolation::InProcess,
        };

        Ok(RootConfig {
            path,
            name,
            presets,
            priority,
            weight,
            concurrency,
            media_roots,
            settle,
            media_wait,
            segment_seconds,
            ready_sidecars,
            isolation,
            origin: Some(origin),
        })
    }

    /// A root's default presets: loaded presets whose last components (the
    /// deliverables' names) differ.
    fn presets(
        &self,
        list: &[Spanned<String>],
        field: &str,
        root: &str,
    ) -> Result<Vec<String>, InputError> {
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        let mut last: HashMap<String, usize> = HashMap::new();
        for (k, p) in list.iter().enumerate() {
            let id = p.get_ref();
            let field = format!("{field}[{k}]");
            let known = || {
                format!(
                    "one of the loaded presets: {}",
                    self.presets
                        .ids()
                        .into_iter()
                        .filter(|id| !id.starts_with("loudness/"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            if !valid_preset_id(id) {
                return Err(self.bad(p.span(), field, "is not a preset id", known()));
            }
            if self.presets.source(id).is_none() {
                return Err(self.bad(
                    p.span(),
                    field,
                    format!("is not a loaded preset (root \"{root}\")"),
                    known(),
                ));
            }
            let name = id.rsplit('/').next().unwrap_or(id).to_lowercase();
            if let Some(j) = last.insert(name.clone(), k) {
                return Err(self.bad(
                    p.span(),
                    field,
                    format!(
                        "would deliver as \"{name}\", as presets[{j}] ({}) does (root \"{root}\")",
                        out[j]
                    ),
                    "presets whose last path components differ (they name the deliverables)",
                ));
            }
            out.push(id.clone());
        }
        Ok(out)
    }
}

/// Why `path` cannot be a watch root, if it can be seen now: it is not a
/// folder, or the nearest existing folder above it is not one either.
fn unusable_folder(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(md) if md.is_dir() => None,
        Ok(_) => Some(format!("is not a folder ({} is a file)", path.display())),
        Err(_) => {
            let mut up = path.parent();
            while let Some(dir) = up {
                if let Ok(md) = std::fs::metadata(dir) {
                    return (!md.is_dir())
                        .then(|| format!("cannot be created ({} is not a folder)", dir.display()));
                }
                up = dir.parent();
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A temporary folder holding `watch.toml` (with `text`), a `media/`
    /// folder and a regular file `notes.txt`.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir(dir.path().join("media")).unwrap();
            fs::write(dir.path().join("notes.txt"), b"x").unwrap();
            Fixture { dir }
        }

        fn file(&self) -> PathBuf {
            self.dir.path().join("watch.toml")
        }

        fn parse(&self, text: &str) -> Result<WatchConfig, InputError> {
            WatchConfig::parse(text, &self.file(), &PresetLibrary::builtin())
        }

        /// Asserts `text` is refused at `line`:`column` for `field`, with a
        /// message that starts `<file>:<line>:<column>: field `<field>``,
        /// contains `needle` and says what is accepted.
        #[track_caller]
        fn refuses(&self, text: &str, line: usize, column: usize, field: &str, needle: &str) {
            let e = match self.parse(text) {
                Ok(c) => panic!("accepted: {c:#?}"),
                Err(e) => e,
            };
            let msg = e.to_string();
            assert_eq!((e.line, e.column), (Some(line), Some(column)), "{msg}");
            assert_eq!(e.field.as_deref(), Some(field), "{msg}");
            let head = format!(
                "{}:{line}:{column}: field `{field}`: ",
                self.file().display()
            );
            assert!(msg.starts_with(&head), "{msg}");
            assert!(msg.contains(needle), "{msg}");
            assert!(msg.contains("(expected "), "{msg}");
        }
    }

    const TWO_ROOTS: &str = r#"[defaults]
settle_ms = 2000
concurrency = 1

[[root]]
path = "promos"
presets = ["web/h264-1080p", "web/h264-720p"]
priority = 10
weight = 2
concurrency = 2
media_roots = ["media"]

[[root]]
path = "/tmp/deliver-unit-trailers"
name = "trailers"
settle_ms = 500
segment_seconds = 10
"#;

    #[test]
    fn two_roots_resolve_with_defaults_and_overrides() {
        let fx = Fixture::new();
        let c = fx.parse(TWO_ROOTS).unwrap();
        let base = fs::canonicalize(fx.dir.path()).unwrap();
        assert_eq!(c.max_jobs, None);
        let [a, b] = &c.roots[..] else {
            panic!("{c:#?}")
        };
        assert_eq!(a.path, base.join("promos"));
        assert_eq!(a.name, "promos");
        assert_eq!(a.presets, ["web/h264-1080p", "web/h264-720p"]);
        assert_eq!((a.priority, a.weight, a.concurrency), (10, 2.0, 2));
        assert_eq!(a.media_roots, [base.join("media")]);
        assert_eq!(a.settle, Duration::from_millis(2000));
        assert_eq!(a.media_wait, DEFAULT_MEDIA_WAIT);
        assert_eq!(a.segment_seconds, None);
        let o = a.origin.as_ref().unwrap();
        assert_eq!((o.line, o.column, o.field.as_str()), (6, 8, "root[0].path"));

        assert_eq!(b.path, Path::new("/tmp/deliver-unit-trailers"));
        assert_eq!(b.name, "trailers");
        assert!(b.presets.is_empty());
        assert_eq!((b.priority, b.weight, b.concurrency), (0, 1.0, 1));
        assert_eq!(b.media_roots, std::slice::from_ref(&b.path));
        assert_eq!(b.settle, Duration::from_millis(500));
        assert_eq!(b.segment_seconds, Some(10.0));
        assert!(!b.ready_sidecars);
    }

    #[test]
    fn the_example_parses() {
        let text = include_str!("../../examples/watch.toml");
        let fx = Fixture::new();
        let c = fx.parse(text).unwrap();
        assert_eq!(c.max_jobs, Some(3));
        let names: Vec<_> = c.roots.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["promos", "trailers"]);
        let promos = &c.roots[0];
        assert_eq!(promos.presets, ["web/h264-1080p", "web/h264-720p"]);
        assert_eq!(promos.priority, 10);
        assert_eq!(promos.concurrency, 2);
        assert_eq!(promos.settle, Duration::from_millis(500));
        let trailers = &c.roots[1];
        assert_eq!(trailers.weight, 2.0);
        assert_eq!(trailers.concurrency, 1);
        assert_eq!(trailers.settle, Duration::from_millis(2000));
        assert_eq!(trailers.segment_seconds, Some(10.0));
        assert_eq!(trailers.media_roots.len(), 1);
    }

    #[test]
    fn syntax_unknown_fields_and_types_name_line_and_field() {
        let fx = Fixture::new();
        fx.refuses(
            &TWO_ROOTS.replace("weight = 2", "wieght = 2"),
            9,
            1,
            "root[0].wieght",
            "unknown field `wieght`",
        );
        fx.refuses(
            &TWO_ROOTS.replace("concurrency = 1\n", "concurency = 1\n"),
            3,
            1,
            "defaults.concurency",
            "unknown field `concurency`",
        );
        fx.refuses(
            &TWO_ROOTS.replace("priority = 10", "priority = \"high\""),
            8,
            12,
            "root[0].priority",
            "has the wrong type",
        );
        fx.refuses(
            &format!("verbose = true\n{TWO_ROOTS}"),
            1,
            1,
            "verbose",
            "unknown field `verbose`",
        );
    }

    #[test]
    fn at_least_one_root() {
        let fx = Fixture::new();
        fx.refuses("[defaults]\nsettle_ms = 100\n", 1, 1, "root", "no [[root]]");
        fx.refuses("", 1, 1, "root", "no [[root]]");
    }

    #[test]
    fn a_root_needs_a_path_that_is_a_folder() {
        let fx = Fixture::new();
        fx.refuses(
            &TWO_ROOTS.replace("path = \"promos\"\n", ""),
            5,
            1,
            "root[0].path",
            "required field is missing",
        );
        fx.refuses(
            &TWO_ROOTS.replace("\"promos\"", "\"notes.txt\""),
            6,
            8,
            "root[0].path",
            "is not a folder",
        );
        fx.refuses(
            &TWO_ROOTS.replace("\"promos\"", "\"notes.txt/promos\""),
            6,
            8,
            "root[0].path",
            "cannot be created",
        );
        fx.refuses(
            &TWO_ROOTS.replace("\"promos\"", "\"  \""),
            6,
            8,
            "root[0].path",
            "is not a folder path",
        );
    }

    #[test]
    fn root_paths_and_names_are_unique() {
        let fx = Fixture::new();
        // The same folder written two ways.
        fx.refuses(
            &TWO_ROOTS.replace("/tmp/deliver-unit-trailers", "./media/../promos"),
            14,
            8,
            "root[1].path",
            "is the folder of root[0] too",
        );
        fx.refuses(
            &TWO_ROOTS.replace("name = \"trailers\"", "name = \"Promos\""),
            15,
            8,
            "root[1].name",
            "is the name of root[0] too",
        );
        // Two folders with the same last component need names.
        fx.refuses(
            &TWO_ROOTS
                .replace("name = \"trailers\"\n", "")
                .replace("/tmp/deliver-unit-trailers", "/tmp/deliver-unit/promos"),
            14,
            8,
            "root[1].path",
            "gives the name \"promos\" (its last component), which root[0] has too",
        );
        fx.refuses(
            &TWO_ROOTS.replace("\"trailers\"", "\"a/b\""),
            15,
            8,
            "root[1].name",
            "is not a usable name",
        );
    }

    #[test]
    fn presets_must_be_loaded_and_deliver_under_distinct_names() {
        let fx = Fixture::new();
        let e = fx
            .parse(&TWO_ROOTS.replace("\"web/h264-720p\"", "\"web/h266-1080p\""))
            .unwrap_err();
        fx.refuses(
            &TWO_ROOTS.replace("\"web/h264-720p\"", "\"web/h266-1080p\""),
            7,
            30,
            "root[0].presets[1]",
            "value \"web/h266-1080p\" is not a loaded preset (root \"promos\")",
        );
        // The error lists what is available (presets, not loudness profiles).
        let text = e.to_string();
        assert!(
            text.contains("one of the loaded presets: broadcast/")
                && text.contains("web/h264-1080p, web/h264-1080p-streaming, web/h264-720p"),
            "{text}"
        );
        assert!(!text.contains("loudness/"), "{text}");
        fx.refuses(
            &TWO_ROOTS.replace("\"web/h264-720p\"", "\"Web/H264\""),
            7,
            30,
            "root[0].presets[1]",
            "is not a preset id",
        );
        fx.refuses(
            &TWO_ROOTS.replace("\"web/h264-720p\"", "\"web/h264-1080p\""),
            7,
            30,
            "root[0].presets[1]",
            "would deliver as \"h264-1080p\", as presets[0] (web/h264-1080p) does",
        );
    }

    #[test]
    fn isolation_defaults_to_in_process_and_a_root_overrides_the_default() {
        let fx = Fixture::new();
        let c = fx.parse(TWO_ROOTS).unwrap();
        assert!(c.roots.iter().all(|r| r.isolation == Isolation::InProcess));
        let text = TWO_ROOTS
            .replace(
                "concurrency = 1\n",
                "concurrency = 1\nisolation = \"process\"\n",
            )
            .replace(
                "name = \"trailers\"\n",
                "name = \"trailers\"\nisolation = \"in-process\"\n",
            );
        let c = fx.parse(&text).unwrap();
        assert_eq!(c.roots[0].isolation, Isolation::Process);
        assert_eq!(c.roots[1].isolation, Isolation::InProcess);
        fx.refuses(
            &TWO_ROOTS.replace(
                "concurrency = 2\n",
                "concurrency = 2\nisolation = \"sandbox\"\n",
            ),
            11,
            13,
            "root[0].isolation",
            "\"sandbox\" is not an isolation",
        );
        // A bad default is refused even where every root sets its own.
        fx.refuses(
            &TWO_ROOTS.replace(
                "concurrency = 1\n",
                "concurrency = 1\nisolation = \"yes\"\n",
            ),
            4,
            13,
            "defaults.isolation",
            "\"process\"",
        );
    }

    #[test]
    fn numbers_out_of_range() {
        let fx = Fixture::new();
        fx.refuses(
            &TWO_ROOTS.replace("concurrency = 2", "concurrency = 0"),
            10,
            15,
            "root[0].concurrency",
            "value 0 is out of range",
        );
        fx.refuses(
            &TWO_ROOTS.replace("concurrency = 1\n", "concurrency = -3\n"),
            3,
            15,
            "defaults.concurrency",
            "value -3 is out of range",
        );
        fx.refuses(
            &TWO_ROOTS.replace("settle_ms = 500", "settle_ms = 3600001"),
            16,
            13,
            "root[1].settle_ms",
            "(expected milliseconds from 0 to 3600000 (one hour))",
        );
        fx.refuses(
            &TWO_ROOTS.replace("settle_ms = 2000", "settle_ms = 7200000"),
            2,
            13,
            "defaults.settle_ms",
            "value 7200000 is out of range",
        );
        fx.refuses(
            &TWO_ROOTS.replace("weight = 2", "weight = 0"),
            9,
            10,
            "root[0].weight",
            "value 0 is out of range (expected a number greater than 0",
        );
        fx.refuses(
            &TWO_ROOTS.replace("weight = 2", "weight = -1.5"),
            9,
            10,
            "root[0].weight",
            "value -1.5 is out of range",
        );
        fx.refuses(
            &TWO_ROOTS.replace("priority = 10", "priority = 5000"),
            8,
            12,
            "root[0].priority",
            "value 5000 is out of range",
        );
        fx.refuses(
            &TWO_ROOTS.replace("segment_seconds = 10", "segment_seconds = -1"),
            17,
            19,
            "root[1].segment_seconds",
            "value -1 is out of range",
        );
        fx.refuses(
            &format!("max_jobs = 0\n{TWO_ROOTS}"),
            1,
            12,
            "max_jobs",
            "value 0 is out of range",
        );
        // A root that sets its own value is still refused a bad default.
        fx.refuses(
            &TWO_ROOTS.replace("[defaults]\n", "[defaults]\nmedia_wait_s = -1\n"),
            2,
            16,
            "defaults.media_wait_s",
            "value -1 is out of range",
        );
    }

    #[test]
    fn media_roots_must_exist() {
        let fx = Fixture::new();
        fx.refuses(
            &TWO_ROOTS.replace("[\"media\"]", "[\"media\", \"footage\"]"),
            11,
            25,
            "root[0].media_roots[1]",
            "value \"footage\" cannot be read",
        );
        fx.refuses(
            &TWO_ROOTS.replace("[\"media\"]", "[\"notes.txt\"]"),
            11,
            16,
            "root[0].media_roots[0]",
            "is not a folder",
        );
        fx.refuses(
            &TWO_ROOTS.replace("[\"media\"]", "[]"),
            11,
            15,
            "root[0].media_roots",
            "is empty",
        );
    }

    #[test]
    fn opening_a_root_proves_it_can_be_written() {
        let fx = Fixture::new();
        let c = fx
            .parse(&TWO_ROOTS.replace("/tmp/deliver-unit-trailers", "trailers"))
            .unwrap();
        let root = c.roots[0].open().unwrap();
        assert!(root.incoming().is_dir() && root.state_dir().is_dir());
        assert!(fs::read_dir(root.incoming()).unwrap().next().is_none());

        // The folder became a file after the configuration was read.
        let mut gone = c.roots[1].clone();
        fs::write(&gone.path, b"x").unwrap();
        let e = gone.open().unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:14:8: field `root[1].path`: cannot use the watch root {}: it is not a folder",
                fx.file().display(),
                gone.path.display()
            )
        );
        gone.origin = None;
        assert!(gone
            .open()
            .unwrap_err()
            .to_string()
            .starts_with("cannot use"));
    }
}
