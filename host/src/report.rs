//! The compliance report: every measured value, the threshold it was held
//! to, and pass/fail per check. Written as `report.json` beside the
//! deliverables (done/) or the rejected outputs (failed/).

use crate::loudness::Analysis;
use crate::manifest::InputError;
use crate::normalize::Normalization;
use crate::quality::{Series, Summary};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the report's shape; bumped on any incompatible change.
pub const SCHEMA: &str = "deliver.report/2";

/// How much a failed check matters. Only `error` keeps a deliverable out of
/// `done/` (the gate); warnings publish and are listed; `info` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "error" => Ok(Severity::Error),
            _ => Err(format!(
                "\"{s}\" is not a severity: one of \"error\", \"warning\", \"info\""
            )),
        }
    }
}

/// A stretch of the programme where a check found something (black,
/// freeze, flash, out-of-range levels, silence), frame-accurate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// First affected frame (0-based, from the start of the file).
    pub frame_in: u64,
    /// The frame after the last affected one (exclusive, as an edit's out point).
    pub frame_out: u64,
    /// SMPTE timecode of `frame_in`, from the file's start timecode.
    pub tc_in: String,
    /// SMPTE timecode of `frame_out` (exclusive).
    pub tc_out: String,
    /// What was seen, e.g. "mean luma 16.0, 100 % of pixels below 19".
    pub detail: String,
}

/// One check: what was measured, against what, and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    /// The EBU QC test item (EBU Tech 3363) this check implements, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ebu_qc: Option<&'static str>,
    pub description: String,
    pub value: serde_json::Value,
    pub threshold: String,
    pub pass: bool,
    /// What a failure of this check means for the deliverable.
    pub severity: Severity,
    /// Where in the programme it failed (empty for whole-file checks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
}

impl Check {
    /// A check whose failure is an error (the gate holds the file back).
    pub fn new(
        id: &'static str,
        description: impl Into<String>,
        value: impl Serialize,
        threshold: impl Into<String>,
        pass: bool,
    ) -> Check {
        Check {
            id,
            ebu_qc: None,
            description: description.into(),
            value: serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
            threshold: threshold.into(),
            pass,
            severity: Severity::Error,
            events: Vec::new(),
        }
    }

    pub fn severity(mut self, severity: Severity) -> Check {
        self.severity = severity;
        self
    }

    pub fn ebu(mut self, item: &'static str) -> Check {
        self.ebu_qc = Some(item);
        self
    }

    pub fn events(mut self, events: Vec<Event>) -> Check {
        self.events = events;
        self
    }

    /// Failed with error severity: keeps the deliverable out of `done/`.
    pub fn is_error(&self) -> bool {
        !self.pass && self.severity == Severity::Error
    }

    /// Failed with warning severity: published, listed.
    pub fn is_warning(&self) -> bool {
        !self.pass && self.severity == Severity::Warning
    }
}

/// The verdict of a list of checks: `fail` on any error-level failure (or
/// none at all), `warn` on warning-level failures, else `pass`.
pub fn verdict_of(checks: &[Check]) -> Verdict {
    if checks.is_empty() || checks.iter().any(Check::is_error) {
        Verdict::Fail
    } else if checks.iter().any(Check::is_warning) {
        Verdict::Warn
    } else {
        Verdict::Pass
    }
}

/// A small picture of one delivered frame for the HTML report's strip.
#[derive(Debug, Clone, Serialize)]
pub struct Thumbnail {
    pub frame: u64,
    pub timecode: String,
    /// Ids of the failed checks whose events cover this frame (empty: a
    /// regular sample of the programme).
    pub flagged: Vec<String>,
    pub width: u32,
    pub height: u32,
    /// PNG bytes; embedded in report.html, not in report.json.
    #[serde(skip)]
    pub png: Vec<u8>,
}

/// What the delivered file is, read back from it by a decoder.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Probe {
    pub container: String,
    pub video_codec: String,
    pub video_profile: String,
    pub width: u32,
    pub height: u32,
    pub pix_fmt: String,
    pub frame_rate: String,
    /// Frames decoded from the file.
    pub frames: u64,
    pub duration_s: f64,
    pub colour_primaries: u32,
    pub colour_transfer: u32,
    pub colour_matrix: u32,
    pub colour_range: u32,
    pub audio_codec: String,
    pub sample_rate: u32,
    pub channels: u32,
    /// Codec level as FFmpeg numbers it (H.264: 40 = 4.0), 0 if unknown.
    pub video_level: i32,
    /// "progressive", "interlaced" or "unknown" (from the field order).
    pub field_order: String,
    /// Bits per audio sample (PCM), 0 if unknown or not meaningful.
    pub audio_bits: u32,
    /// WAVE/FFmpeg channel mask, 0 if unknown.
    pub channel_layout: u64,
    /// The file's start timecode, if it carries one.
    pub start_timecode: Option<String>,
}

/// Loudness of one deliverable: the programme as rendered, what was done to
/// it, and what the delivered file measures.
#[derive(Debug, Clone, Serialize)]
pub struct LoudnessReport {
    pub programme: Analysis,
    pub normalization: Normalization,
    pub delivered: Option<Analysis>,
    pub tolerance_lu: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    /// What the delivered pictures were compared with, and how it was
    /// scaled or converted to match them.
    pub reference: String,
    pub summary: Summary,
    pub series: Series,
}

/// One deliverable's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct DeliverableReport {
    pub name: String,
    pub preset: String,
    pub preset_file: PathBuf,
    /// The delivered file's name, relative to the report's folder (the
    /// folder moves from processing/ to done/ or failed/ as a whole); a
    /// rejected file keeps its `.partial` suffix.
    pub file: Option<PathBuf>,
    pub bytes: u64,
    pub verdict: Verdict,
    pub error: Option<String>,
    /// "libx264 (ffmpeg 0.1.0)".
    pub video_encoder: String,
    /// Whether the video encoder that ran is a hardware one.
    pub video_hardware: bool,
    pub audio_encoder: Option<String>,
    pub muxer: String,
    pub encode_seconds: f64,
    pub probe: Option<Probe>,
    pub loudness: Option<LoudnessReport>,
    pub quality: Option<QualityReport>,
    pub checks: Vec<Check>,
    /// Sampled frames of the delivered file, failing frames among them.
    pub thumbnails: Vec<Thumbnail>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// Published, with warning-level findings listed.
    Warn,
    /// An error-level finding, or the job could not run: nothing in `done/`.
    Fail,
}

impl Verdict {
    /// Whether the deliverable (or job) may be published to `done/`.
    pub fn publishable(self) -> bool {
        self != Verdict::Fail
    }

    /// The worse of two verdicts.
    pub fn worst(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Fail, _) | (_, Verdict::Fail) => Verdict::Fail,
            (Verdict::Warn, _) | (_, Verdict::Warn) => Verdict::Warn,
            _ => Verdict::Pass,
        }
    }
}

/// Why a job could not run at all.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    /// "input", "preset", "plugin", "render", "io", "cancelled".
    pub kind: &'static str,
    pub message: String,
    /// Present for input errors: file, line, column, field, value, expected.
    pub input: Option<InputError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RenderReport {
    /// `cpu`, or `gpu (adapter, backend)`.
    pub renderer: String,
    /// What was assumed about sources (untagged media, stills taken as
    /// sRGB), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub width: u32,
    pub height: u32,
    pub frame_rate: String,
    pub frames: u64,
    pub seconds: f64,
}

/// The whole job.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub schema: &'static str,
    pub job_id: String,
    pub manifest: PathBuf,
    pub name: String,
    pub verdict: Verdict,
    pub started: String,
    pub finished: String,
    pub seconds: f64,
    pub host: HostInfo,
    pub render: Option<RenderReport>,
    pub deliverables: Vec<DeliverableReport>,
    pub error: Option<ErrorReport>,
    /// What the manifest or timeline held that was dropped as safe to
    /// ignore (OTIO markers, say).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    pub deliver_version: &'static str,
    pub plugins: Vec<String>,
}

/// RFC 3339 UTC time.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Writes `report.json` and `report.html` into `dir`, each atomically
/// (a temporary file in the same folder, then a rename), so a reader never
/// sees half a report. Returns the path of `report.json`.
///
/// # Errors
/// I/O errors, with the path.
pub fn write(report: &JobReport, dir: &Path) -> Result<PathBuf, std::io::Error> {
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    let path = write_atomic(dir, "report.json", &json)?;
    write_atomic(
        dir,
        "report.html",
        crate::report_html::render(report).as_bytes(),
    )?;
    Ok(path)
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, std::io::Error> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        })?;
    Ok(path)
}
