//! The QC profile: every threshold and severity of the spec checks, as data,
//! read from a preset's `[qc]` table.
//!
//! ```toml
//! [qc]
//! min_psnr_y = 35.0             # required, dB 0–100 (against the render)
//! min_ssim_y = 0.95             # required, 0–1
//! max_duration_error_s = 0.05   # required, s 0–10
//! max_delta_e_p99 = 2.0         # optional, CIEDE2000 0–100
//! max_delta_e_mean = 1.5        # optional, CIEDE2000 0–100
//! thumbnails = 12               # sampled frames for the report, 0–100
//!
//! [qc.black]                    # EBU QC 0016B
//! min_duration_s = 1.0          # shorter runs of black are not reported
//! max_luma_percent = 10.0       # "black" pixel: luma at most 10 % of the
//!                               # nominal range above black (8-bit limited: code ≤ 37)
//! max_fraction_bright = 0.02    # a frame is black when at most 2 % of its pixels are brighter
//! severity = "warning"
//!
//! [qc.freeze]
//! min_duration_s = 2.0
//! max_diff = 0.001              # mean |ΔY| to the previous frame, fraction of full scale
//! severity = "warning"
//!
//! [qc.legal_range]              # EBU R 103 (v1.1 limits), EBU QC 0051B
//! luma_min_percent = -1.0       # of the nominal range: 8-bit limited code 13.8
//! luma_max_percent = 103.0      #                                    code 241.6
//! rgb_min_percent = -5.0        # R'G'B' derived through the file's matrix
//! rgb_max_percent = 105.0
//! max_fraction = 0.01           # up to 1 % of the pixels may be outside
//! severity = "error"
//!
//! [qc.flash]                    # ITU-R BT.1702 / Ofcom-style luminance and red flashes
//! max_flashes_per_s = 3.0       # more than 3 flashes (6 transitions) in any 1 s fail
//! min_area = 0.25               # a transition counts when it covers more than 25 % of the screen
//! min_delta_cdm2 = 20.0         # luminance change of a transition
//! max_dark_cdm2 = 160.0         # ... when the darker state is below this
//! display_peak_cdm2 = 200.0     # the display the code values are shown on (BT.1886, γ 2.4)
//! red_ratio = 0.8               # saturated red: R/(R+G+B) ≥ 0.8 (linear light)
//! red_delta = 20.0              # red transition: Δ((R−G−B)·320) ≥ 20
//! severity = "error"
//!
//! [qc.silence]                  # EBU QC 0078B
//! min_duration_s = 2.0
//! threshold_dbfs = -60.0        # RMS over 10 ms windows, per channel
//! severity = "warning"
//!
//! [qc.timecode]                 # EBU QC 0026W
//! start = "10:00:00:00"         # optional: the start timecode the file must carry
//! severity = "error"
//!
//! [qc.audio]
//! bit_depth = 24                # optional: bits per sample the file must carry (PCM)
//! severity = "error"            # sample rate, bit depth, channels
//!
//! [qc.severity]                 # optional: any check by id, over the defaults above
//! "video.level" = "warning"
//! ```

use crate::report::Severity;
use std::collections::BTreeMap;

/// A key of the `[qc]` table that is unknown, of the wrong type or out of
/// range. `path` starts with "qc" (`["qc", "black", "min_duration_s"]`), so
/// the caller can find its line in the preset file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {value} is not valid: expected {expected}", path.join("."))]
pub struct QcFieldError {
    pub path: Vec<String>,
    /// The value as written (TOML), or "missing".
    pub value: String,
    pub expected: String,
}

/// Black frames (EBU QC 0016B, constant colour frames, for black).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BlackSpec {
    pub min_duration_s: f64,
    /// Luma at or below this, in percent of the nominal range above black
    /// (0 % = code 16, 100 % = code 235 in 8-bit limited range), is black.
    pub max_luma_percent: f64,
    /// A frame is black when at most this fraction of its pixels is brighter.
    pub max_fraction_bright: f64,
    pub severity: Severity,
}

/// Frozen pictures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FreezeSpec {
    pub min_duration_s: f64,
    /// A frame repeats the previous one when the mean absolute luma
    /// difference is at most this fraction of full scale (FFmpeg's
    /// `freezedetect` default noise: 0.001).
    pub max_diff: f64,
    pub severity: Severity,
}

/// Signal levels (EBU R 103).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LegalRangeSpec {
    pub luma_min_percent: f64,
    pub luma_max_percent: f64,
    pub rgb_min_percent: f64,
    pub rgb_max_percent: f64,
    /// The fraction of a frame's pixels that may be outside.
    pub max_fraction: f64,
    pub severity: Severity,
}

/// Photosensitive flashing (ITU-R BT.1702 style).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FlashSpec {
    pub max_flashes_per_s: f64,
    pub min_area: f64,
    pub min_delta_cdm2: f64,
    pub max_dark_cdm2: f64,
    pub display_peak_cdm2: f64,
    pub red_ratio: f64,
    pub red_delta: f64,
    pub severity: Severity,
}

/// Audio silence (EBU QC 0078B).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SilenceSpec {
    pub min_duration_s: f64,
    pub threshold_dbfs: f64,
    pub severity: Severity,
}

/// Start timecode (EBU QC 0026W).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimecodeSpec {
    /// The start timecode the file must carry; `None`: not checked unless
    /// the deliverable's [`super::Expect`] promises one.
    pub start: Option<String>,
    pub severity: Severity,
}

/// Audio format requirements beyond the preset's codec.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AudioQcSpec {
    /// Bits per sample (PCM); `None`: what [`super::Expect`] promises, if anything.
    pub bit_depth: Option<u32>,
    /// Severity of the sample rate, bit depth and channel checks.
    pub severity: Severity,
}

/// Every threshold and severity of the spec checks of one preset.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QcProfile {
    /// Minimum PSNR of luma against the reference render, dB.
    pub min_psnr_y: f64,
    /// Minimum SSIM of luma against the reference render.
    pub min_ssim_y: f64,
    /// Largest accepted difference between delivered and expected duration.
    pub max_duration_error_s: f64,
    /// Highest accepted 99th percentile of ΔE2000 against the render;
    /// `None` = measured and reported, not held to a limit.
    pub max_delta_e_p99: Option<f64>,
    /// Highest accepted mean ΔE2000 against the render over the programme:
    /// the statistic for systematic colour errors (a wrong matrix or range),
    /// which p99 cannot tell from 4:2:0 chroma loss on saturated edges.
    pub max_delta_e_mean: Option<f64>,
    /// Evenly spaced frames sampled for the report (the first frame of each
    /// event is added to them).
    pub thumbnails: u32,
    pub black: BlackSpec,
    pub freeze: FreezeSpec,
    pub legal_range: LegalRangeSpec,
    pub flash: FlashSpec,
    pub silence: SilenceSpec,
    pub timecode: TimecodeSpec,
    pub audio: AudioQcSpec,
    /// Severity per check id, over the defaults and the sub-tables.
    pub severity: BTreeMap<String, Severity>,
    /// The fourcc the video sample entry of a QuickTime/MP4 file must have
    /// (`apch`, `hvc1`). Not a `[qc]` key: it is the preset's
    /// `video.fourcc`, which also tells the muxer.
    pub codec_tag: Option<String>,
}

impl Default for QcProfile {
    /// The defaults documented in the module, with the top-level
    /// thresholds of the built-in web presets (35 dB, 0.95, 0.05 s).
    fn default() -> QcProfile {
        QcProfile {
            min_psnr_y: 35.0,
            min_ssim_y: 0.95,
            max_duration_error_s: 0.05,
            max_delta_e_p99: None,
            max_delta_e_mean: None,
            thumbnails: 12,
            black: BlackSpec {
                min_duration_s: 1.0,
                max_luma_percent: 10.0,
                max_fraction_bright: 0.02,
                severity: Severity::Warning,
            },
            freeze: FreezeSpec {
                min_duration_s: 2.0,
                max_diff: 0.001,
                severity: Severity::Warning,
            },
            legal_range: LegalRangeSpec {
                luma_min_percent: -1.0,
                luma_max_percent: 103.0,
                rgb_min_percent: -5.0,
                rgb_max_percent: 105.0,
                max_fraction: 0.01,
                severity: Severity::Error,
            },
            flash: FlashSpec {
                max_flashes_per_s: 3.0,
                min_area: 0.25,
                min_delta_cdm2: 20.0,
                max_dark_cdm2: 160.0,
                display_peak_cdm2: 200.0,
                red_ratio: 0.8,
                red_delta: 20.0,
                severity: Severity::Error,
            },
            silence: SilenceSpec {
                min_duration_s: 2.0,
                threshold_dbfs: -60.0,
                severity: Severity::Warning,
            },
            timecode: TimecodeSpec {
                start: None,
                severity: Severity::Error,
            },
            audio: AudioQcSpec {
                bit_depth: None,
                severity: Severity::Error,
            },
            severity: BTreeMap::new(),
            codec_tag: None,
        }
    }
}

/// Check ids a `[qc.severity]` key may name.
pub const CHECK_IDS: &[&str] = &[
    "video.codec",
    "video.profile",
    "video.level",
    "video.pix_fmt",
    "video.codec_tag",
    "video.resolution",
    "video.frame_rate",
    "video.scan",
    "video.frame_count",
    "video.duration",
    "video.colour_tags",
    "video.legal_range",
    "video.black",
    "video.freeze",
    "video.flash",
    "video.red_flash",
    "audio.codec",
    "audio.sample_rate",
    "audio.bit_depth",
    "audio.channels",
    "audio.layout",
    "audio.silence",
    "timecode.start",
];

/// Reads one table, refusing keys it was not asked about.
struct Fields<'a> {
    table: &'a toml::Table,
    path: Vec<String>,
    seen: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(table: &'a toml::Table, path: &[&str]) -> Self {
        Fields {
            table,
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            seen: Vec::new(),
        }
    }

    fn err(&self, key: &str, value: String, expected: impl Into<String>) -> QcFieldError {
        let mut path = self.path.clone();
        path.push(key.to_owned());
        QcFieldError {
            path,
            value,
            expected: expected.into(),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a toml::Value> {
        self.seen.push(key);
        self.table.get(key)
    }

    /// A number (integer or float) in `range`; `None` when absent.
    fn opt_f64(
        &mut self,
        key: &'static str,
        ok: impl Fn(f64) -> bool,
        expected: &str,
    ) -> Result<Option<f64>, QcFieldError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let x = match v {
            toml::Value::Float(f) => *f,
            toml::Value::Integer(i) => *i as f64,
            other => return Err(self.err(key, other.to_string(), expected)),
        };
        if !x.is_finite() || !ok(x) {
            return Err(self.err(key, v.to_string(), expected));
        }
        Ok(Some(x))
    }

    fn f64(
        &mut self,
        key: &'static str,
        default: f64,
        ok: impl Fn(f64) -> bool,
        expected: &str,
    ) -> Result<f64, QcFieldError> {
        Ok(self.opt_f64(key, ok, expected)?.unwrap_or(default))
    }

    fn required_f64(
        &mut self,
        key: &'static str,
        ok: impl Fn(f64) -> bool,
        expected: &str,
    ) -> Result<f64, QcFieldError> {
        self.opt_f64(key, ok, expected)?
            .ok_or_else(|| self.err(key, "missing".into(), expected))
    }

    fn opt_u32(
        &mut self,
        key: &'static str,
        ok: impl Fn(i64) -> bool,
        expected: &str,
    ) -> Result<Option<u32>, QcFieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if ok(*i) => Ok(Some(*i as u32)),
            Some(other) => Err(self.err(key, other.to_string(), expected)),
        }
    }

    fn opt_str(
        &mut self,
        key: &'static str,
        expected: &str,
    ) -> Result<Option<&'a str>, QcFieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.err(key, other.to_string(), expected)),
        }
    }

    fn severity(&mut self, default: Severity) -> Result<Severity, QcFieldError> {
        const EXPECTED: &str = "\"error\", \"warning\" or \"info\"";
        match self.get("severity") {
            None => Ok(default),
            Some(toml::Value::String(s)) => s
                .parse()
                .map_err(|_| self.err("severity", format!("{s:?}"), EXPECTED)),
            Some(other) => Err(self.err("severity", other.to_string(), EXPECTED)),
        }
    }

    /// A sub-table; an empty one when absent.
    fn table(&mut self, key: &'static str) -> Result<Option<&'a toml::Table>, QcFieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t)),
            Some(other) => Err(self.err(key, other.to_string(), format!("a table [qc.{key}]"))),
        }
    }

    /// Refuses any key that was not read.
    fn finish(self) -> Result<(), QcFieldError> {
        for k in self.table.keys() {
            if !self.seen.contains(&k.as_str()) {
                let mut known: Vec<&str> = self.seen.clone();
                known.sort_unstable();
                known.dedup();
                return Err(self.err(
                    k,
                    self.table[k].to_string(),
                    format!("no such key; known keys here: {}", known.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

fn sub<'a>(
    parent: &mut Fields<'a>,
    key: &'static str,
    empty: &'a toml::Table,
) -> Result<Fields<'a>, QcFieldError> {
    let t = parent.table(key)?.unwrap_or(empty);
    Ok(Fields::new(t, &["qc", key]))
}

const FRACTION: &str = "a fraction from 0 to 1";
const SECONDS: &str = "seconds from 0 to 3600";

impl QcProfile {
    /// Reads a preset's `[qc]` table (the table itself, without the `qc`
    /// key). Absent sub-tables and keys take the defaults documented in the
    /// module; the four top-level thresholds of `preset::QcSpec` are required
    /// as they were there (`max_delta_e_p99` stays optional).
    ///
    /// # Errors
    /// A [`QcFieldError`] for the first key that is unknown, of the wrong
    /// type, or out of range, with its full path.
    pub fn from_table(t: &toml::Table) -> Result<QcProfile, QcFieldError> {
        let d = QcProfile::default();
        let empty = toml::Table::new();
        let mut q = Fields::new(t, &["qc"]);
        let seconds = |x: f64| (0.0..=3600.0).contains(&x);
        let fraction = |x: f64| (0.0..=1.0).contains(&x);
        let min_psnr_y = q.required_f64(
            "min_psnr_y",
            |x| (0.0..=100.0).contains(&x),
            "a PSNR in dB from 0 to 100",
        )?;
        let min_ssim_y = q.required_f64("min_ssim_y", fraction, "an SSIM from 0 to 1")?;
        let max_duration_error_s = q.required_f64(
            "max_duration_error_s",
            |x| (0.0..=10.0).contains(&x),
            "seconds from 0 to 10",
        )?;
        let max_delta_e_p99 = q.opt_f64(
            "max_delta_e_p99",
            |x| (0.0..=100.0).contains(&x),
            "a CIEDE2000 colour difference from 0 to 100",
        )?;
        let max_delta_e_mean = q.opt_f64(
            "max_delta_e_mean",
            |x| (0.0..=100.0).contains(&x),
            "a CIEDE2000 colour difference from 0 to 100",
        )?;
        let thumbnails = q
            .opt_u32(
                "thumbnails",
                |i| (0..=100).contains(&i),
                "a count from 0 to 100",
            )?
            .unwrap_or(d.thumbnails);

        let mut b = sub(&mut q, "black", &empty)?;
        let black = BlackSpec {
            min_duration_s: b.f64("min_duration_s", d.black.min_duration_s, seconds, SECONDS)?,
            max_luma_percent: b.f64(
                "max_luma_percent",
                d.black.max_luma_percent,
                |x| (0.0..=100.0).contains(&x),
                "percent of the nominal luma range, 0 to 100",
            )?,
            max_fraction_bright: b.f64(
                "max_fraction_bright",
                d.black.max_fraction_bright,
                fraction,
                FRACTION,
            )?,
            severity: b.severity(d.black.severity)?,
        };
        b.finish()?;

        let mut f = sub(&mut q, "freeze", &empty)?;
        let freeze = FreezeSpec {
            min_duration_s: f.f64("min_duration_s", d.freeze.min_duration_s, seconds, SECONDS)?,
            max_diff: f.f64("max_diff", d.freeze.max_diff, fraction, FRACTION)?,
            severity: f.severity(d.freeze.severity)?,
        };
        f.finish()?;

        let mut l = sub(&mut q, "legal_range", &empty)?;
        let pct = |x: f64| (-50.0..=150.0).contains(&x);
        const PCT: &str = "percent of the nominal range, -50 to 150";
        let legal_range = LegalRangeSpec {
            luma_min_percent: l.f64(
                "luma_min_percent",
                d.legal_range.luma_min_percent,
                pct,
                PCT,
            )?,
            luma_max_percent: l.f64(
                "luma_max_percent",
                d.legal_range.luma_max_percent,
                pct,
                PCT,
            )?,
            rgb_min_percent: l.f64("rgb_min_percent", d.legal_range.rgb_min_percent, pct, PCT)?,
            rgb_max_percent: l.f64("rgb_max_percent", d.legal_range.rgb_max_percent, pct, PCT)?,
            max_fraction: l.f64(
                "max_fraction",
                d.legal_range.max_fraction,
                fraction,
                FRACTION,
            )?,
            severity: l.severity(d.legal_range.severity)?,
        };
        if legal_range.luma_min_percent >= legal_range.luma_max_percent {
            return Err(l.err(
                "luma_min_percent",
                legal_range.luma_min_percent.to_string(),
                format!(
                    "less than luma_max_percent ({})",
                    legal_range.luma_max_percent
                ),
            ));
        }
        if legal_range.rgb_min_percent >= legal_range.rgb_max_percent {
            return Err(l.err(
                "rgb_min_percent",
                legal_range.rgb_min_percent.to_string(),
                format!(
                    "less than rgb_max_percent ({})",
                    legal_range.rgb_max_percent
                ),
            ));
        }
        l.finish()?;

        let mut fl = sub(&mut q, "flash", &empty)?;
        let cdm2 = |x: f64| x > 0.0 && x <= 10_000.0;
        const CDM2: &str = "cd/m² greater than 0, at most 10000";
        let flash = FlashSpec {
            max_flashes_per_s: fl.f64(
                "max_flashes_per_s",
                d.flash.max_flashes_per_s,
                |x| (0.0..=30.0).contains(&x),
                "flashes per second from 0 to 30",
            )?,
            min_area: fl.f64("min_area", d.flash.min_area, fraction, FRACTION)?,
            min_delta_cdm2: fl.f64("min_delta_cdm2", d.flash.min_delta_cdm2, cdm2, CDM2)?,
            max_dark_cdm2: fl.f64("max_dark_cdm2", d.flash.max_dark_cdm2, cdm2, CDM2)?,
            display_peak_cdm2: fl.f64(
                "display_peak_cdm2",
                d.flash.display_peak_cdm2,
                cdm2,
                CDM2,
            )?,
            red_ratio: fl.f64("red_ratio", d.flash.red_ratio, fraction, FRACTION)?,
            red_delta: fl.f64(
                "red_delta",
                d.flash.red_delta,
                |x| x > 0.0 && x <= 320.0,
                "greater than 0, at most 320",
            )?,
            severity: fl.severity(d.flash.severity)?,
        };
        fl.finish()?;

        let mut s = sub(&mut q, "silence", &empty)?;
        let silence = SilenceSpec {
            min_duration_s: s.f64("min_duration_s", d.silence.min_duration_s, seconds, SECONDS)?,
            threshold_dbfs: s.f64(
                "threshold_dbfs",
                d.silence.threshold_dbfs,
                |x| (-150.0..=0.0).contains(&x),
                "dBFS from -150 to 0",
            )?,
            severity: s.severity(d.silence.severity)?,
        };
        s.finish()?;

        let mut tc = sub(&mut q, "timecode", &empty)?;
        let start = tc.opt_str(
            "start",
            "a timecode string \"HH:MM:SS:FF\" (\";\" before FF for drop-frame)",
        )?;
        if let Some(st) = start {
            // 60 fps admits every frame field here; the field is held to
            // the file's real rate when the file is checked.
            let plausible =
                super::timecode::parse(st, deliver_plugin_api::abi::Rational::new(60, 1));
            if let Err(e) = plausible {
                return Err(tc.err("start", format!("{st:?}"), e.why));
            }
        }
        let timecode = TimecodeSpec {
            start: start.map(str::to_owned),
            severity: tc.severity(d.timecode.severity)?,
        };
        tc.finish()?;

        let mut a = sub(&mut q, "audio", &empty)?;
        let audio = AudioQcSpec {
            bit_depth: a.opt_u32(
                "bit_depth",
                |i| matches!(i, 8 | 16 | 20 | 24 | 32 | 64),
                "bits per sample: 8, 16, 20, 24, 32 or 64",
            )?,
            severity: a.severity(d.audio.severity)?,
        };
        a.finish()?;

        let mut severity = BTreeMap::new();
        if let Some(st) = q.table("severity")? {
            for (k, v) in st {
                let e = |value: String, expected: String| QcFieldError {
                    path: vec!["qc".into(), "severity".into(), k.clone()],
                    value,
                    expected,
                };
                if !CHECK_IDS.contains(&k.as_str()) {
                    return Err(e(
                        v.to_string(),
                        format!("a check id: {}", CHECK_IDS.join(", ")),
                    ));
                }
                let sev = v
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| e(v.to_string(), "\"error\", \"warning\" or \"info\"".into()))?;
                severity.insert(k.clone(), sev);
            }
        }
        q.finish()?;
        Ok(QcProfile {
            min_psnr_y,
            min_ssim_y,
            max_duration_error_s,
            max_delta_e_p99,
            max_delta_e_mean,
            thumbnails,
            black,
            freeze,
            legal_range,
            flash,
            silence,
            timecode,
            audio,
            severity,
            codec_tag: None,
        })
    }

    /// Reads the text of a `[qc]` table (without the `[qc]` header), as a
    /// standalone profile file would hold it.
    ///
    /// # Errors
    /// TOML syntax (path `["qc"]`), or [`QcProfile::from_table`]'s errors.
    pub fn from_toml(text: &str) -> Result<QcProfile, QcFieldError> {
        let t: toml::Table = toml::from_str(text).map_err(|e| QcFieldError {
            path: vec!["qc".into()],
            value: e.message().to_owned(),
            expected: "a TOML table".into(),
        })?;
        QcProfile::from_table(&t)
    }

    /// The severity of a check: `[qc.severity]`, else `default` (which the
    /// caller takes from the check's sub-table or the built-in default).
    pub fn severity_of(&self, id: &str, default: Severity) -> Severity {
        self.severity.get(id).copied().unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: &str = "min_psnr_y = 35.0\nmin_ssim_y = 0.95\nmax_duration_error_s = 0.05\n";

    fn parse(extra: &str) -> Result<QcProfile, QcFieldError> {
        let t: toml::Table = toml::from_str(&format!("{TOP}{extra}")).unwrap();
        QcProfile::from_table(&t)
    }

    #[test]
    fn todays_keys_alone_give_the_documented_defaults() {
        let p = parse("").unwrap();
        assert_eq!(p, QcProfile::default());
        assert_eq!(p.black.severity, Severity::Warning);
        assert_eq!(p.legal_range.severity, Severity::Error);
    }

    #[test]
    fn sub_tables_override_and_integers_are_numbers() {
        let p = parse(
            "thumbnails = 4\n[black]\nmin_duration_s = 2\nseverity = \"error\"\n\
             [timecode]\nstart = \"10:00:00:00\"\n[audio]\nbit_depth = 24\n\
             [severity]\n\"video.level\" = \"info\"\n",
        )
        .unwrap();
        assert_eq!(p.thumbnails, 4);
        assert_eq!(p.black.min_duration_s, 2.0);
        assert_eq!(p.black.severity, Severity::Error);
        assert_eq!(p.timecode.start.as_deref(), Some("10:00:00:00"));
        assert_eq!(p.audio.bit_depth, Some(24));
        assert_eq!(
            p.severity_of("video.level", Severity::Error),
            Severity::Info
        );
    }

    #[test]
    fn errors_name_the_key_path_value_and_what_is_accepted() {
        let e = parse("[black]\nmin_durration_s = 1.0\n").unwrap_err();
        assert_eq!(e.path, ["qc", "black", "min_durration_s"]);
        assert!(e.expected.contains("min_duration_s"), "{e}");
        let e = parse("[freeze]\nmax_diff = \"small\"\n").unwrap_err();
        assert_eq!(e.path, ["qc", "freeze", "max_diff"]);
        assert_eq!(e.value, "\"small\"");
        let e = parse("[flash]\nseverity = \"fatal\"\n").unwrap_err();
        assert_eq!(e.path, ["qc", "flash", "severity"]);
        let e = parse("[timecode]\nstart = \"25:00:00:00\"\n").unwrap_err();
        assert_eq!(e.path, ["qc", "timecode", "start"]);
        let e = parse("black = 3\n").unwrap_err();
        assert_eq!(e.path, ["qc", "black"]);
        let e = parse("min_vmaf = 90\n").unwrap_err();
        assert_eq!(e.path, ["qc", "min_vmaf"]);
        let e = parse("[severity]\n\"video.nope\" = \"error\"\n").unwrap_err();
        assert_eq!(e.path, ["qc", "severity", "video.nope"]);
        let t: toml::Table = toml::from_str("min_psnr_y = 35.0\nmin_ssim_y = 0.95\n").unwrap();
        let e = QcProfile::from_table(&t).unwrap_err();
        assert_eq!(
            (e.path.join("."), e.value.as_str()),
            ("qc.max_duration_error_s".into(), "missing")
        );
        let e = parse("[legal_range]\nluma_min_percent = 104\n").unwrap_err();
        assert_eq!(e.path, ["qc", "legal_range", "luma_min_percent"]);
    }
}
