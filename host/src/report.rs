//! The compliance report: every measured value, the threshold it was held
//! to, and pass/fail per check. Written as `report.json` beside the
//! deliverables (done/) or the rejected outputs (failed/).

use crate::loudness::Analysis;
use crate::manifest::InputError;
use crate::normalize::Normalization;
use crate::quality::{Series, Summary};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Version of the report's shape; bumped on any incompatible change.
pub const SCHEMA: &str = "deliver.report/1";

/// One check: what was measured, against what, and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub description: String,
    pub value: serde_json::Value,
    pub threshold: String,
    pub pass: bool,
}

impl Check {
    pub fn new(
        id: &'static str,
        description: impl Into<String>,
        value: impl Serialize,
        threshold: impl Into<String>,
        pass: bool,
    ) -> Check {
        Check {
            id,
            description: description.into(),
            value: serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
            threshold: threshold.into(),
            pass,
        }
    }
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
    pub reference: &'static str,
    pub summary: Summary,
    pub series: Series,
}

/// One deliverable's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct DeliverableReport {
    pub name: String,
    pub preset: String,
    pub preset_file: PathBuf,
    /// Where the file is now (after publishing, the caller rewrites it).
    pub file: Option<PathBuf>,
    pub bytes: u64,
    pub verdict: Verdict,
    pub error: Option<String>,
    pub video_encoder: String,
    pub audio_encoder: Option<String>,
    pub muxer: String,
    pub encode_seconds: f64,
    pub probe: Option<Probe>,
    pub loudness: Option<LoudnessReport>,
    pub quality: Option<QualityReport>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
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
    pub renderer: &'static str,
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

/// Writes `report.json` into `dir` atomically (temp file, then rename).
///
/// # Errors
/// I/O errors, with the path.
pub fn write(report: &JobReport, dir: &Path) -> Result<PathBuf, std::io::Error> {
    let path = dir.join("report.json");
    let tmp = dir.join(".report.json.tmp");
    let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(path)
}
