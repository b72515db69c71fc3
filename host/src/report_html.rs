//! The self-contained HTML compliance report: one `report.html` beside
//! `report.json` that a delivery team can send to a broadcaster or print to
//! PDF. No network, no script, no external font or image: inline CSS, inline
//! SVG plots, thumbnails as `data:` URIs, and a Content-Security-Policy that
//! forbids anything else.
//!
//! It renders from the report's JSON value (plus the thumbnails' PNG bytes,
//! which the JSON leaves out), not from the structs field by field, so that
//! fields added to the model (quality series per plane, ΔE, probe fields)
//! show up as soon as they are serialized: a series that is present is
//! plotted, an absent or empty one is listed as "not measured".
//!
//! ```
//! # use deliver::report::{HostInfo, JobReport, Verdict, SCHEMA};
//! let r = JobReport {
//!     schema: SCHEMA,
//!     job_id: "j1".into(),
//!     manifest: "in/<promo>.toml".into(),
//!     name: "promo & co".into(),
//!     verdict: Verdict::Fail,
//!     started: "2026-01-01T00:00:00Z".into(),
//!     finished: "2026-01-01T00:00:01Z".into(),
//!     seconds: 1.0,
//!     host: HostInfo { deliver_version: "0.1.0", plugins: vec![] },
//!     render: None,
//!     deliverables: vec![],
//!     error: None,
//!     warnings: vec![],
//! };
//! let html = deliver::report_html::render(&r);
//! assert!(html.contains("promo &amp; co") && html.contains(">FAIL<"));
//! ```

use crate::report::{JobReport, Thumbnail};
use base64::Engine as _;
use serde_json::Value;
use std::fmt::Write as _;

/// Most points one plotted series keeps: enough for the ~170 mm of an A4
/// page at print resolution, few enough that a two-hour programme's page
/// stays small and quick.
pub const MAX_PLOT_POINTS: usize = 1500;

const PASS: &str = "#1a7f37";
const FAIL: &str = "#c62828";

// Series colours: luma and "all" strong, chroma planes distinct.
const C_Y: &str = "#1565c0";
const C_U: &str = "#2e9d8f";
const C_V: &str = "#c2185b";
const C_ALL: &str = "#5e35b1";
const C_GREY: &str = "#8a94a0";

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Plotted points: (index in the series, value; `None` is a gap).
pub type Points = Vec<(usize, Option<f64>)>;

/// Reduces a series to at most `max` points for plotting. Each bucket of
/// consecutive samples keeps its lowest and its highest value, in order, so
/// a one-frame spike or dip survives any amount of decimation (an average
/// would flatten it). A bucket with no value at all keeps a gap. Returns
/// (original index, value) pairs.
pub fn decimate(values: &[Option<f64>], max: usize) -> Points {
    let n = values.len();
    if n <= max.max(2) {
        return values.iter().copied().enumerate().collect();
    }
    let buckets = (max / 2).max(1);
    let mut out = Vec::with_capacity(buckets * 2);
    for b in 0..buckets {
        let (lo, hi) = (b * n / buckets, (b + 1) * n / buckets);
        let mut min: Option<(usize, f64)> = None;
        let mut max: Option<(usize, f64)> = None;
        for (i, v) in values.iter().enumerate().take(hi).skip(lo) {
            if let Some(x) = v.filter(|x| x.is_finite()) {
                if min.is_none_or(|(_, m)| x < m) {
                    min = Some((i, x));
                }
                if max.is_none_or(|(_, m)| x > m) {
                    max = Some((i, x));
                }
            }
        }
        match (min, max) {
            (Some(a), Some(b)) if a.0 == b.0 => out.push((a.0, Some(a.1))),
            (Some(a), Some(b)) => {
                let (first, second) = if a.0 < b.0 { (a, b) } else { (b, a) };
                out.push((first.0, Some(first.1)));
                out.push((second.0, Some(second.1)));
            }
            _ => out.push((lo, None)),
        }
    }
    out
}

/// The report as one HTML page.
pub fn render(report: &JobReport) -> String {
    let v = serde_json::to_value(report).unwrap_or(Value::Null);
    let mut o = String::with_capacity(64 * 1024);
    let title = format!(
        "{} — {} — delivery report",
        text(&v["name"]),
        verdict_label(&v["verdict"])
    );
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // Nothing but this file and its data: URIs may load, even if a later
    // change adds an external reference by mistake.
    o.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">\n",
    );
    o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(o, "<title>{}</title>", esc(&title));
    let _ = writeln!(o, "<style>{CSS}</style>\n</head>\n<body>");
    header(&mut o, &v);
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        job_error(&mut o, e);
    }
    if let Some(ws) = v["warnings"].as_array().filter(|w| !w.is_empty()) {
        o.push_str("<section id=\"input-warnings\"><h2>Input warnings</h2><ul>");
        for w in ws {
            let _ = write!(o, "<li>{}</li>", esc(w.as_str().unwrap_or_default()));
        }
        o.push_str("</ul></section>\n");
    }
    let deliverables = v["deliverables"].as_array().map_or(&[][..], Vec::as_slice);
    if !deliverables.is_empty() {
        overview(&mut o, deliverables);
    }
    for (i, d) in deliverables.iter().enumerate() {
        let thumbs = report
            .deliverables
            .get(i)
            .map_or(&[][..], |d| d.thumbnails.as_slice());
        deliverable(&mut o, d, thumbs, i, deliverables.len());
    }
    let _ = writeln!(
        o,
        "<footer>Generated by deliver {} · report schema <code>{}</code> · \
         <code>report.json</code> beside this file holds every value shown here.</footer>",
        esc(&text(&v["host"]["deliver_version"])),
        esc(&text(&v["schema"]))
    );
    o.push_str("</body>\n</html>\n");
    o
}

fn verdict_label(v: &Value) -> &'static str {
    match v.as_str() {
        Some("pass") => "PASS",
        Some("warn") => "PASS WITH WARNINGS",
        _ => "FAIL",
    }
}

fn verdict_class(v: &Value) -> &'static str {
    match v.as_str() {
        Some("pass") => "pass",
        Some("warn") => "warn",
        _ => "fail",
    }
}

/// A JSON value as plain text (strings unquoted, null as an em dash).
fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), num),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(text).collect();
            if a.iter().all(|x| !x.is_object() && !x.is_array()) {
                items.join(", ")
            } else {
                format!("[{}]", items.join("; "))
            }
        }
        Value::Object(m) => m
            .iter()
            .map(|(k, x)| format!("{} {}", k.replace('_', " "), text(x)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// A number with up to 6 significant digits, trailing zeros dropped;
/// integers as integers.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "—".into()
        } else {
            "∞".into()
        };
    }
    if x == x.trunc() && x.abs() < 1e15 {
        return format!("{}", x as i64).replace('-', "−");
    }
    let mag = x.abs().log10().floor() as i32;
    let decimals = (5 - mag).clamp(0, 9) as usize;
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    s.replace('-', "−")
}

fn bytes(n: u64) -> String {
    let f = n as f64;
    if n >= 1 << 30 {
        format!("{:.2} GiB ({n} bytes)", f / (1u64 << 30) as f64)
    } else if n >= 1 << 20 {
        format!("{:.2} MiB ({n} bytes)", f / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB ({n} bytes)", f / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

fn header(o: &mut String, v: &Value) {
    let cls = verdict_class(&v["verdict"]);
    let _ = writeln!(
        o,
        "<header class=\"banner {cls}\"><div class=\"verdict\" id=\"verdict\">{}</div>\
         <div class=\"banner-text\"><h1>{}</h1><div class=\"sub\">Delivery compliance report · job <code>{}</code></div></div></header>",
        verdict_label(&v["verdict"]),
        esc(&text(&v["name"])),
        esc(&text(&v["job_id"]))
    );
    o.push_str("<section class=\"job\"><dl class=\"facts\">");
    fact(
        o,
        "Manifest",
        &format!("<code>{}</code>", esc(&text(&v["manifest"]))),
    );
    fact(o, "Started", &esc(&text(&v["started"])));
    fact(o, "Finished", &esc(&text(&v["finished"])));
    fact(
        o,
        "Duration",
        &format!(
            "{} s",
            esc(&text(&v["seconds"].as_f64().map_or(Value::Null, |s| {
                Value::from((s * 10.0).round() / 10.0)
            })))
        ),
    );
    if let Some(r) = v.get("render").filter(|r| r.is_object()) {
        fact(
            o,
            "Render",
            &esc(&format!(
                "{}×{} at {} fps, {} frames, {} renderer, {} s",
                text(&r["width"]),
                text(&r["height"]),
                text(&r["frame_rate"]),
                text(&r["frames"]),
                text(&r["renderer"]),
                r["seconds"]
                    .as_f64()
                    .map_or("—".into(), |s| format!("{s:.1}"))
            )),
        );
        let notes = r["notes"].as_array().map_or(&[][..], Vec::as_slice);
        if !notes.is_empty() {
            let items: String = notes
                .iter()
                .map(|n| format!("<li>{}</li>", esc(&text(n))))
                .collect();
            fact(o, "Source assumptions", &format!("<ul>{items}</ul>"));
        }
    }
    fact(
        o,
        "Host",
        &format!("deliver {}", esc(&text(&v["host"]["deliver_version"]))),
    );
    let plugins = v["host"]["plugins"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let list = if plugins.is_empty() {
        "none loaded".to_owned()
    } else {
        plugins
            .iter()
            .map(|p| format!("<code>{}</code>", esc(&text(p))))
            .collect::<Vec<_>>()
            .join("<br>")
    };
    fact(o, "Plugins", &list);
    o.push_str("</dl></section>\n");
}

/// One definition-list entry; `html` is already escaped.
fn fact(o: &mut String, label: &str, html: &str) {
    let _ = write!(o, "<dt>{}</dt><dd>{html}</dd>", esc(label));
}

fn job_error(o: &mut String, e: &Value) {
    let _ = write!(
        o,
        "<section class=\"error-box\" id=\"job-error\"><h2>The job could not run: {} error</h2>\
         <pre class=\"message\">{}</pre>",
        esc(&text(&e["kind"])),
        esc(&text(&e["message"]))
    );
    if let Some(i) = e.get("input").filter(|i| i.is_object()) {
        o.push_str("<table class=\"kv\"><tbody>");
        for (k, label) in [
            ("file", "File"),
            ("line", "Line"),
            ("column", "Column"),
            ("field", "Field"),
            ("value", "Value"),
            ("expected", "Expected"),
            ("message", "Problem"),
        ] {
            if let Some(x) = i.get(k).filter(|x| !x.is_null()) {
                let _ = write!(
                    o,
                    "<tr><th>{label}</th><td><code>{}</code></td></tr>",
                    esc(&text(x))
                );
            }
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</section>\n");
}

fn checks_of(d: &Value) -> &[Value] {
    d["checks"].as_array().map_or(&[][..], Vec::as_slice)
}

fn failed(c: &Value, severity: &str) -> bool {
    c["pass"] == false && c["severity"] == severity
}

fn overview(o: &mut String, ds: &[Value]) {
    o.push_str(
        "<section class=\"overview\"><h2>Deliverables</h2><table class=\"grid\"><thead><tr>\
         <th>Deliverable</th><th>Preset</th><th>Verdict</th><th>Errors</th><th>Warnings</th>\
         <th>Checks</th><th>File</th></tr></thead><tbody>",
    );
    for (i, d) in ds.iter().enumerate() {
        let cs = checks_of(d);
        let _ = write!(
            o,
            "<tr><td><a href=\"#deliverable-{i}\">{}</a></td><td><code>{}</code></td>\
             <td><span class=\"badge {}\">{}</span></td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"path\">{}</td></tr>",
            esc(&text(&d["name"])),
            esc(&text(&d["preset"])),
            verdict_class(&d["verdict"]),
            verdict_label(&d["verdict"]),
            cs.iter().filter(|c| failed(c, "error")).count(),
            cs.iter().filter(|c| failed(c, "warning")).count(),
            cs.len(),
            esc(&text(&d["file"]))
        );
    }
    o.push_str("</tbody></table></section>\n");
}

fn deliverable(o: &mut String, d: &Value, thumbs: &[Thumbnail], i: usize, n: usize) {
    let cls = verdict_class(&d["verdict"]);
    let _ = write!(
        o,
        "<section class=\"deliverable\" id=\"deliverable-{i}\" data-verdict=\"{cls}\">\
         <h2 class=\"dtitle {cls}\"><span class=\"badge {cls}\">{}</span> {} \
         <span class=\"count\">deliverable {} of {n}</span></h2>",
        verdict_label(&d["verdict"]),
        esc(&text(&d["name"])),
        i + 1
    );
    o.push_str("<dl class=\"facts\">");
    fact(
        o,
        "File",
        &format!("<code>{}</code>", esc(&text(&d["file"]))),
    );
    if let Some(b) = d["bytes"].as_u64().filter(|&b| b > 0) {
        fact(o, "Size", &esc(&bytes(b)));
    }
    fact(
        o,
        "Preset",
        &format!(
            "<code>{}</code> <span class=\"muted\">({})</span>",
            esc(&text(&d["preset"])),
            esc(&text(&d["preset_file"]))
        ),
    );
    // Absent in reports written before hardware encoders were offered.
    let hardware = match d["video_hardware"].as_bool() {
        Some(true) => " <span class=\"muted\">(hardware)</span>",
        Some(false) => " <span class=\"muted\">(software)</span>",
        None => "",
    };
    fact(
        o,
        "Video encoder",
        &format!("{}{hardware}", esc(&text(&d["video_encoder"]))),
    );
    if !d["audio_encoder"].is_null() {
        fact(o, "Audio encoder", &esc(&text(&d["audio_encoder"])));
    }
    fact(o, "Muxer", &esc(&text(&d["muxer"])));
    if let Some(s) = d["encode_seconds"].as_f64() {
        fact(o, "Encode time", &format!("{s:.1} s"));
    }
    o.push_str("</dl>");
    if let Some(e) = d["error"].as_str() {
        let _ = write!(
            o,
            "<div class=\"error-box\"><h3>Error</h3><pre class=\"message\">{}</pre></div>",
            esc(e)
        );
    }
    checks_table(o, checks_of(d));
    let thresholds = Thresholds::of(checks_of(d));
    if let Some(q) = d.get("quality").filter(|q| q.is_object()) {
        quality(o, q, &thresholds);
    }
    if let Some(l) = d.get("loudness").filter(|l| l.is_object()) {
        loudness(o, l);
    }
    if !thumbs.is_empty() {
        thumbnails(o, thumbs);
    }
    if let Some(p) = d.get("probe").filter(|p| p.is_object()) {
        probe(o, p);
    }
    o.push_str("</section>\n");
}

/// Failed errors first, then failed warnings, then failed infos, then the
/// passes; in the order measured within each.
fn check_rank(c: &Value) -> u8 {
    if c["pass"] == true {
        return 3;
    }
    match c["severity"].as_str() {
        Some("error") => 0,
        Some("warning") => 1,
        _ => 2,
    }
}

fn checks_table(o: &mut String, checks: &[Value]) {
    let mut sorted: Vec<&Value> = checks.iter().collect();
    sorted.sort_by_key(|c| check_rank(c));
    let errors = checks.iter().filter(|c| failed(c, "error")).count();
    let warnings = checks.iter().filter(|c| failed(c, "warning")).count();
    let passed = checks.iter().filter(|c| c["pass"] == true).count();
    let _ = write!(
        o,
        "<h3>Checks</h3><p class=\"tally\">{} checks: <b class=\"{}\">{errors} failed</b> \
         (errors), <b class=\"{}\">{warnings} warning{}</b>, <b class=\"t-pass\">{passed} passed</b>.</p>",
        checks.len(),
        if errors > 0 { "t-fail" } else { "t-zero" },
        if warnings > 0 { "t-warn" } else { "t-zero" },
        if warnings == 1 { "" } else { "s" }
    );
    if checks.is_empty() {
        o.push_str("<p class=\"muted\">No check was made.</p>");
        return;
    }
    o.push_str(
        "<table class=\"grid checks\"><thead><tr><th>Result</th><th>Check</th><th>EBU QC</th>\
         <th>Severity</th><th>Measured</th><th>Threshold</th></tr></thead><tbody>",
    );
    for c in sorted {
        let (res, cls) = match check_rank(c) {
            0 => ("FAIL", "fail"),
            1 => ("WARN", "warn"),
            2 => ("NOTE", "info"),
            _ => ("PASS", "pass"),
        };
        let _ = write!(
            o,
            "<tr class=\"row-{cls}\" data-check=\"{}\"><td><span class=\"badge {cls}\">{res}</span></td>\
             <td><code>{}</code><div class=\"desc\">{}</div></td><td>{}</td><td>{}</td>\
             <td class=\"val\">{}</td><td class=\"val\">{}</td></tr>",
            esc(&text(&c["id"])),
            esc(&text(&c["id"])),
            esc(&text(&c["description"])),
            c["ebu_qc"]
                .as_str()
                .map_or("—".into(), |s| format!("<code>{}</code>", esc(s))),
            esc(&text(&c["severity"])),
            esc(&text(&c["value"])),
            esc(&text(&c["threshold"]))
        );
        if let Some(ev) = c["events"].as_array().filter(|e| !e.is_empty()) {
            let _ = write!(
                o,
                "<tr class=\"events row-{cls}\"><td></td><td colspan=\"5\"><table class=\"ev\">\
                 <thead><tr><th>TC in</th><th>TC out</th><th>Frames</th><th>Detail</th></tr></thead><tbody>"
            );
            for e in ev {
                let _ = write!(
                    o,
                    "<tr><td><code>{}</code></td><td><code>{}</code></td><td class=\"num\">{}–{}</td><td>{}</td></tr>",
                    esc(&text(&e["tc_in"])),
                    esc(&text(&e["tc_out"])),
                    esc(&text(&e["frame_in"])),
                    esc(&text(&e["frame_out"])),
                    esc(&text(&e["detail"]))
                );
            }
            o.push_str("</tbody></table></td></tr>");
        }
    }
    o.push_str("</tbody></table>\n");
}

/// Limits read back from the checks, for threshold lines on the plots.
#[derive(Default)]
struct Thresholds {
    ssim: Option<f64>,
    psnr: Option<f64>,
    delta_e: Option<(f64, String)>,
}

impl Thresholds {
    fn of(checks: &[Value]) -> Thresholds {
        let mut t = Thresholds::default();
        for c in checks {
            let id = c["id"].as_str().unwrap_or("");
            let thr = c["threshold"].as_str().unwrap_or("");
            let Some(x) = first_number(thr) else { continue };
            if id.starts_with("video.ssim") && t.ssim.is_none() {
                t.ssim = Some(x);
            } else if id.starts_with("video.psnr") && t.psnr.is_none() {
                t.psnr = Some(x);
            } else if id.contains("delta_e") && t.delta_e.is_none() {
                let which = if id.contains("p99") || thr.contains("p99") {
                    "p99"
                } else if id.contains("max") {
                    "max"
                } else {
                    "limit"
                };
                t.delta_e = Some((x, which.into()));
            }
        }
        t
    }
}

/// The first decimal number in a threshold text such as ">= 0.95".
fn first_number(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let start = (0..b.len()).find(|&i| {
        b[i].is_ascii_digit() || (b[i] == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
    })?;
    let end = b[start + 1..]
        .iter()
        .position(|&c| !(c.is_ascii_digit() || c == b'.'))
        .map_or(b.len(), |p| start + 1 + p);
    s[start..end].parse().ok()
}

/// A per-frame (or per-step) series from the JSON; `None` when absent or empty.
fn series(v: &Value) -> Option<Vec<Option<f64>>> {
    let a = v.as_array().filter(|a| !a.is_empty())?;
    Some(a.iter().map(Value::as_f64).collect())
}

struct Line {
    key: &'static str,
    name: &'static str,
    colour: &'static str,
    width: f64,
    dash: Option<&'static str>,
    values: Option<Vec<Option<f64>>>,
}

impl Line {
    fn new(key: &'static str, name: &'static str, colour: &'static str, v: &Value) -> Line {
        Line {
            key,
            name,
            colour,
            width: 1.4,
            dash: None,
            values: series(v),
        }
    }
}

struct Plot {
    key: &'static str,
    title: String,
    y_unit: &'static str,
    x_unit: &'static str,
    /// x of sample `i` is `i * x_step`.
    x_step: f64,
    lines: Vec<Line>,
    /// Horizontal limit lines: (value, label).
    limits: Vec<(f64, String)>,
    /// A shaded range: (low, high, label).
    band: Option<(f64, f64, String)>,
    /// Upper bound the axis never exceeds (SSIM's 1).
    y_max: Option<f64>,
    /// Lower bound the axis never goes under (loudness floor).
    y_floor: Option<f64>,
    /// Marked samples (x index, y) and their legend label.
    markers: Vec<(f64, f64)>,
    marker_label: String,
    caption: String,
}

const FONT: &str = "font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif\" font-size=\"12\"";
const W: f64 = 880.0;
const H: f64 = 260.0;
const ML: f64 = 58.0;
const MR: f64 = 18.0;
const MT: f64 = 34.0;
const MB: f64 = 38.0;

/// "Nice" axis bounds and step (1, 2 or 5 × 10ⁿ), about `target` ticks.
fn ticks(lo: f64, hi: f64, target: f64) -> (f64, f64, f64) {
    let span = (hi - lo).max(1e-12);
    let raw = span / target;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let step = mag
        * if norm < 1.5 {
            1.0
        } else if norm < 3.0 {
            2.0
        } else if norm < 7.0 {
            5.0
        } else {
            10.0
        };
    (
        (lo / step - 1e-9).floor() * step,
        (hi / step + 1e-9).ceil() * step,
        step,
    )
}

fn tick_label(x: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{x:.decimals$}").replace('-', "−")
}

fn svg(o: &mut String, p: &Plot) {
    let decimated: Vec<Option<Points>> = p
        .lines
        .iter()
        .map(|l| l.values.as_ref().map(|v| decimate(v, MAX_PLOT_POINTS)))
        .collect();
    let n = p
        .lines
        .iter()
        .filter_map(|l| l.values.as_ref().map(Vec::len))
        .max()
        .unwrap_or(0);
    if n == 0 {
        // Nothing to draw: a slim box that says so, not an empty pair of axes.
        let h = 84.0;
        let _ = write!(
            o,
            "<figure class=\"plot-box\"><svg class=\"plot empty\" data-plot=\"{}\" viewBox=\"0 0 {W} {h}\" \
             role=\"img\" aria-label=\"{}: not measured\" xmlns=\"http://www.w3.org/2000/svg\" {FONT}>\
             <rect x=\"{ML}\" y=\"{MT}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f6f8fa\" stroke=\"#d0d7de\" stroke-dasharray=\"4 3\"/>\
             <text class=\"not-measured\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"14\" fill=\"{C_GREY}\">not measured</text>",
            p.key,
            esc(&p.title),
            W - ML - MR,
            h - MT - 10.0,
            ML + (W - ML - MR) / 2.0,
            MT + (h - MT - 10.0) / 2.0 + 5.0
        );
        legend(o, p);
        o.push_str("</svg>");
        if !p.caption.is_empty() {
            let _ = write!(o, "<figcaption>{}</figcaption>", esc(&p.caption));
        }
        o.push_str("</figure>\n");
        return;
    }
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (_, y) in decimated.iter().flatten().flatten() {
        if let Some(y) = y {
            lo = lo.min(*y);
            hi = hi.max(*y);
        }
    }
    for (y, _) in &p.limits {
        lo = lo.min(*y);
        hi = hi.max(*y);
    }
    if let Some((a, b, _)) = &p.band {
        lo = lo.min(*a);
        hi = hi.max(*b);
    }
    for (_, y) in &p.markers {
        hi = hi.max(*y);
        lo = lo.min(*y);
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if let Some(f) = p.y_floor {
        lo = lo.max(f);
    }
    if hi - lo < 1e-9 {
        let pad = (hi.abs() * 0.01).max(1e-3);
        (lo, hi) = (lo - pad, hi + pad);
    } else {
        let pad = (hi - lo) * 0.06;
        (lo, hi) = (lo - pad, hi + pad);
    }
    if let Some(m) = p.y_max {
        hi = hi.min(m);
        lo = lo.min(m - 1e-3);
    }
    let (y0, y1, ystep) = ticks(lo, hi, 5.0);
    let (y0, y1) = if let Some(m) = p.y_max {
        (y0, y1.min(m))
    } else {
        (y0, y1)
    };
    let x_max = ((n.max(2) - 1) as f64 * p.x_step).max(p.x_step);
    let (_, x1, xstep) = ticks(0.0, x_max, 8.0);
    let (pw, ph) = (W - ML - MR, H - MT - MB);
    let sx = |x: f64| ML + x / x1.max(1e-12) * pw;
    let sy = |y: f64| MT + (y1 - y.clamp(y0, y1)) / (y1 - y0).max(1e-12) * ph;

    let _ = write!(
        o,
        "<figure class=\"plot-box\"><svg class=\"plot\" data-plot=\"{}\" viewBox=\"0 0 {W} {H}\" \
         role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" {FONT}>",
        p.key,
        esc(&p.title)
    );
    let _ = write!(
        o,
        "<rect x=\"{ML}\" y=\"{MT}\" width=\"{pw}\" height=\"{ph}\" fill=\"#fff\" stroke=\"#c9d1d9\"/>"
    );
    // Grid and ticks.
    let mut y = y0;
    while y <= y1 + ystep * 1e-6 {
        let py = sy(y);
        let _ = write!(
            o,
            "<line x1=\"{ML}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#eef1f4\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#57606a\">{}</text>",
            ML + pw,
            ML - 6.0,
            py + 3.5,
            tick_label(y, ystep)
        );
        y += ystep;
    }
    let mut x = 0.0;
    while x <= x1 + xstep * 1e-6 {
        let px = sx(x);
        let _ = write!(
            o,
            "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{MT}\" y2=\"{:.1}\" stroke=\"#eef1f4\"/>\
             <line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#57606a\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"{}\" fill=\"#57606a\">{}</text>",
            MT + ph,
            MT + ph,
            MT + ph + 4.0,
            MT + ph + 16.0,
            // The last label would run past the frame: end it at its tick.
            if px > ML + pw - 24.0 { "end" } else { "middle" },
            tick_label(x, xstep)
        );
        x += xstep;
    }
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#57606a\">{}</text>\
         <text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\" fill=\"#57606a\">{}</text>",
        ML + pw / 2.0,
        H - 6.0,
        esc(p.x_unit),
        MT + ph / 2.0,
        esc(p.y_unit)
    );
    if let Some((a, b, label)) = &p.band {
        let (ta, tb) = (sy(*b), sy(*a));
        let _ = write!(
            o,
            "<rect class=\"band\" x=\"{ML}\" y=\"{ta:.1}\" width=\"{pw}\" height=\"{:.1}\" fill=\"{PASS}\" fill-opacity=\"0.12\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{PASS}\">{}</text>",
            (tb - ta).max(0.5),
            ML + 6.0,
            ta - 3.0,
            esc(label)
        );
    }
    // Series, clipped to the plot area.
    let clip = format!("clip-{}", p.key);
    let _ = write!(
        o,
        "<clipPath id=\"{clip}\"><rect x=\"{ML}\" y=\"{:.1}\" width=\"{pw}\" height=\"{:.1}\"/></clipPath><g clip-path=\"url(#{clip})\">",
        MT - 4.0,
        ph + 8.0
    );
    for (l, d) in p.lines.iter().zip(&decimated) {
        let Some(points) = d else { continue };
        let mut path = String::with_capacity(points.len() * 14);
        let mut pen = false;
        for (i, v) in points {
            match v {
                Some(v) => {
                    let _ = write!(
                        path,
                        "{}{:.1} {:.1}",
                        if pen { 'L' } else { 'M' },
                        sx(*i as f64 * p.x_step),
                        sy(*v)
                    );
                    pen = true;
                }
                None => pen = false,
            }
        }
        if points.iter().filter(|(_, v)| v.is_some()).count() == 1 {
            // One point: draw it, a path of one move draws nothing.
            if let Some((i, Some(v))) = points.iter().find(|(_, v)| v.is_some()) {
                let _ = write!(
                    o,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"/>",
                    sx(*i as f64 * p.x_step),
                    sy(*v),
                    l.colour
                );
            }
        }
        let _ = write!(
            o,
            "<path class=\"series\" data-series=\"{}\" d=\"{path}\" fill=\"none\" stroke=\"{}\" \
             stroke-width=\"{}\" stroke-linejoin=\"round\"{}/>",
            l.key,
            l.colour,
            l.width,
            l.dash
                .map_or(String::new(), |d| format!(" stroke-dasharray=\"{d}\""))
        );
    }
    for (i, y) in &p.markers {
        let (cx, cy) = (sx(*i * p.x_step), sy(*y));
        let _ = write!(
            o,
            "<path class=\"marker\" d=\"M{:.1} {:.1}l4 7h-8z\" fill=\"{C_ALL}\"/>",
            cx,
            cy - 1.0
        );
    }
    o.push_str("</g>");
    for (y, label) in &p.limits {
        let py = sy(*y);
        let _ = write!(
            o,
            "<line class=\"limit\" x1=\"{ML}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"{FAIL}\" \
             stroke-width=\"1.2\" stroke-dasharray=\"6 4\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{FAIL}\">{}</text>",
            ML + pw,
            ML + pw - 4.0,
            py - 4.0,
            esc(label)
        );
    }
    legend(o, p);
    o.push_str("</svg>");
    if !p.caption.is_empty() {
        let _ = write!(o, "<figcaption>{}</figcaption>", esc(&p.caption));
    }
    o.push_str("</figure>\n");
}

/// Title and legend, above the plot area. A series the report does not
/// hold is listed in grey as "not measured".
fn legend(o: &mut String, p: &Plot) {
    let mut lx = ML;
    let _ = write!(
        o,
        "<text x=\"{ML}\" y=\"14\" font-weight=\"600\" font-size=\"13.5\" fill=\"#1f2328\">{}</text>",
        esc(&p.title)
    );
    for l in &p.lines {
        let label = if l.values.is_some() {
            l.name.to_owned()
        } else {
            format!("{} (not measured)", l.name)
        };
        let colour = if l.values.is_some() { l.colour } else { C_GREY };
        let _ = write!(
            o,
            "<g class=\"legend\"><line x1=\"{lx:.1}\" x2=\"{:.1}\" y1=\"26\" y2=\"26\" stroke=\"{colour}\" \
             stroke-width=\"2.5\"{}/><text x=\"{:.1}\" y=\"29.5\" fill=\"{}\">{}</text></g>",
            lx + 16.0,
            l.dash
                .map_or(String::new(), |d| format!(" stroke-dasharray=\"{d}\"")),
            lx + 20.0,
            if l.values.is_some() { "#1f2328" } else { C_GREY },
            esc(&label)
        );
        lx += 34.0 + 7.0 * label.chars().count() as f64;
    }
    if !p.markers.is_empty() {
        let _ = write!(
            o,
            "<path d=\"M{:.1} 21l4 7h-8z\" fill=\"{C_ALL}\"/><text x=\"{:.1}\" y=\"29.5\" fill=\"#1f2328\">{}</text>",
            lx + 8.0,
            lx + 16.0,
            esc(&p.marker_label)
        );
    }
}

/// A field name as a label: `psnr_y_min` → "PSNR Y min", `duration_s` →
/// "Duration (s)".
fn label(key: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut parts = key.split('_').peekable();
    while let Some(w) = parts.next() {
        let word = match w {
            "psnr" | "ssim" | "lra" => w.to_uppercase(),
            "y" | "u" | "v" => w.to_uppercase(),
            "avg" => "average".into(),
            "delta" if parts.peek() == Some(&"e") => {
                parts.next();
                "ΔE".into()
            }
            "s" => "(s)".into(),
            "lufs" => "(LUFS)".into(),
            "dbtp" => "(dBTP)".into(),
            "db" => "(dB)".into(),
            "fmt" => "format".into(),
            w => w.to_owned(),
        };
        words.push(word);
    }
    let mut l = words.join(" ");
    if let Some(c) = l.chars().next() {
        l.replace_range(..c.len_utf8(), &c.to_uppercase().to_string());
    }
    l
}

/// Keys of `m`: those of `order` it has, in that order, then any others
/// the model has gained.
fn ordered_keys<'a>(m: &'a serde_json::Map<String, Value>, order: &[&'a str]) -> Vec<&'a str> {
    let mut keys: Vec<&str> = order
        .iter()
        .copied()
        .filter(|k| m.contains_key(*k))
        .collect();
    keys.extend(m.keys().map(String::as_str).filter(|k| !order.contains(k)));
    keys
}

/// H.273 code points (and FFmpeg's range enum) by name, where well known.
fn colour_name(key: &str, v: &Value) -> Option<&'static str> {
    let n = v.as_u64()?;
    Some(match (key, n) {
        ("colour_primaries", 1) | ("colour_transfer", 1) | ("colour_matrix", 1) => "BT.709",
        ("colour_primaries", 5) => "BT.601 625",
        ("colour_primaries", 6) | ("colour_matrix", 6) => "BT.601 525",
        ("colour_matrix", 5) => "BT.601 625",
        ("colour_primaries", 9) => "BT.2020",
        ("colour_matrix", 9) => "BT.2020 NCL",
        ("colour_transfer", 13) => "sRGB",
        ("colour_transfer", 14) | ("colour_transfer", 15) => "BT.2020",
        ("colour_transfer", 16) => "PQ (SMPTE ST 2084)",
        ("colour_transfer", 18) => "HLG (ARIB STD-B67)",
        ("colour_range", 1) => "limited",
        ("colour_range", 2) => "full",
        _ => return None,
    })
}

/// Key/value pairs in a two-column grid (the file's technical metadata).
fn kv_grid(o: &mut String, obj: &Value, order: &[&str]) {
    let Some(m) = obj.as_object() else { return };
    o.push_str("<dl class=\"kvgrid\">");
    for k in ordered_keys(m, order) {
        let mut v = text(&m[k]);
        if let Some(name) = colour_name(k, &m[k]) {
            let _ = write!(v, " ({name})");
        }
        let _ = write!(o, "<dt>{}</dt><dd>{}</dd>", esc(&label(k)), esc(&v));
    }
    o.push_str("</dl>");
}

/// Summary values as cards; nested objects (ΔE) spread into one card per
/// field; a null PSNR is an identical picture (infinite).
fn stats(o: &mut String, obj: &Value, order: &[&str]) {
    let Some(m) = obj.as_object() else { return };
    o.push_str("<div class=\"stats\">");
    let mut card = |k: String, v: &Value, psnr: bool| {
        let shown = match v {
            Value::Null if psnr => "∞ (identical)".to_owned(),
            Value::Number(n) => n.as_f64().map_or_else(
                || n.to_string(),
                |x| {
                    if x.fract() == 0.0 {
                        num(x)
                    } else {
                        format!("{x:.4}").replace('-', "−")
                    }
                },
            ),
            v => text(v),
        };
        let _ = write!(
            o,
            "<div class=\"stat\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>",
            esc(&k),
            esc(&shown)
        );
    };
    for k in ordered_keys(m, order) {
        match &m[k] {
            Value::Object(sub) => {
                for (sk, sv) in sub {
                    card(format!("{} {}", label(k), sk.replace('_', " ")), sv, false);
                }
            }
            v => card(label(k), v, k.starts_with("psnr")),
        }
    }
    o.push_str("</div>");
}

fn quality(o: &mut String, q: &Value, t: &Thresholds) {
    let s = &q["series"];
    o.push_str("<h3>Picture quality against the render</h3>");
    let _ = write!(
        o,
        "<p class=\"muted\">Reference: {}</p>",
        esc(&text(&q["reference"]))
    );
    stats(
        o,
        &q["summary"],
        &[
            "frames",
            "psnr_y",
            "psnr_u",
            "psnr_v",
            "psnr_avg",
            "psnr_y_mean",
            "psnr_y_min",
            "ssim_y",
            "ssim_u",
            "ssim_v",
            "ssim_all",
            "ssim_y_mean",
            "ssim_y_min",
            "ssim_all_min",
            "delta_e",
        ],
    );
    let frames = |n: usize| format!("{n} frames");
    let count = ["ssim_y", "psnr_y"]
        .iter()
        .filter_map(|k| s[*k].as_array().map(Vec::len))
        .max()
        .unwrap_or(0);
    svg(
        o,
        &Plot {
            key: "ssim",
            title: "SSIM per frame".into(),
            y_unit: "SSIM",
            x_unit: "frame",
            x_step: 1.0,
            lines: vec![
                Line::new("ssim_y", "Y", C_Y, &s["ssim_y"]),
                Line::new("ssim_u", "U", C_U, &s["ssim_u"]),
                Line::new("ssim_v", "V", C_V, &s["ssim_v"]),
                Line::new("ssim_all", "All", C_ALL, &s["ssim_all"]),
            ],
            limits: t
                .ssim
                .map(|x| (x, format!("minimum {}", num(x))))
                .into_iter()
                .collect(),
            band: None,
            y_max: Some(1.0),
            y_floor: None,
            markers: vec![],
            marker_label: String::new(),
            caption: format!(
                "Structural similarity (FFmpeg's ssim definition) of each delivered frame with the render, {}.",
                frames(count)
            ),
        },
    );
    // PSNR: identical frames (null, infinite PSNR) are drawn at a cap above
    // the highest finite value, with a marker, so they read as "perfect",
    // not as missing data.
    let keys = [
        ("psnr_y", "Y", C_Y),
        ("psnr_u", "U", C_U),
        ("psnr_v", "V", C_V),
        ("psnr_avg", "Average", C_ALL),
    ];
    let raw: Vec<Option<Vec<Option<f64>>>> = keys.iter().map(|(k, _, _)| series(&s[*k])).collect();
    let finite_max = raw
        .iter()
        .flatten()
        .flatten()
        .flatten()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let cap = if finite_max.is_finite() {
        ((finite_max + 5.0) / 10.0).ceil() * 10.0
    } else {
        100.0
    };
    let mut markers = Vec::new();
    let mut identical = 0usize;
    if let Some(v) = raw.iter().flatten().next() {
        // Markers for the first present series (luma when measured), at most
        // one per bucket of the plot's resolution.
        let buckets = (MAX_PLOT_POINTS / 4).max(1);
        let n = v.len();
        for b in 0..buckets.min(n) {
            let (a, z) = (b * n / buckets.min(n), (b + 1) * n / buckets.min(n));
            if let Some(i) = (a..z).find(|&i| v[i].is_none()) {
                markers.push((i as f64, cap));
            }
        }
        identical = v.iter().filter(|x| x.is_none()).count();
    }
    let lines = keys
        .iter()
        .zip(raw)
        .map(|((k, name, colour), v)| Line {
            key: k,
            name,
            colour,
            width: 1.4,
            dash: None,
            values: v.map(|v| v.into_iter().map(|x| Some(x.unwrap_or(cap))).collect()),
        })
        .collect();
    svg(
        o,
        &Plot {
            key: "psnr",
            title: "PSNR per frame".into(),
            y_unit: "dB",
            x_unit: "frame",
            x_step: 1.0,
            lines,
            limits: t
                .psnr
                .map(|x| (x, format!("minimum {} dB", num(x))))
                .into_iter()
                .collect(),
            band: None,
            y_max: None,
            y_floor: None,
            markers,
            marker_label: format!("identical frame (∞ dB, drawn at {} dB)", num(cap)),
            caption: format!(
                "Peak signal-to-noise ratio of each delivered frame against the render; {identical} identical frame{} drawn at the cap.",
                if identical == 1 { "" } else { "s" }
            ),
        },
    );
    let de = &q["summary"]["delta_e"];
    let mut caption = "CIEDE2000 colour difference per frame (mean, 99th percentile and maximum over the frame's pixels)".to_owned();
    if let Some(m) = de["method"].as_str() {
        let _ = write!(caption, "; method: {m}");
    }
    if let Some(px) = de["pixels_per_frame"].as_u64() {
        let _ = write!(caption, "; {px} pixels per frame");
    }
    caption.push('.');
    svg(
        o,
        &Plot {
            key: "delta_e",
            title: "ΔE2000 per frame".into(),
            y_unit: "ΔE00",
            x_unit: "frame",
            x_step: 1.0,
            lines: vec![
                Line::new("delta_e_mean", "mean", C_Y, &s["delta_e_mean"]),
                Line::new("delta_e_p99", "p99", "#e76f00", &s["delta_e_p99"]),
                Line::new("delta_e_max", "max", C_V, &s["delta_e_max"]),
            ],
            limits: t
                .delta_e
                .as_ref()
                .map(|(x, which)| (*x, format!("{which} limit {}", num(*x))))
                .into_iter()
                .collect(),
            band: None,
            y_max: None,
            y_floor: Some(0.0),
            markers: vec![],
            marker_label: String::new(),
            caption,
        },
    );
}

fn loudness(o: &mut String, l: &Value) {
    let p = &l["programme"];
    let d = &l["delivered"];
    let n = &l["normalization"];
    let target = n["target_lufs"].as_f64();
    let tol = l["tolerance_lu"].as_f64();
    let ceiling = n["ceiling_dbtp"].as_f64();
    o.push_str("<h3>Loudness</h3>");
    o.push_str(
        "<table class=\"grid loud\"><thead><tr><th>Measure</th><th>Programme (render)</th>\
         <th>Delivered file</th><th>Target / limit</th></tr></thead><tbody>",
    );
    let target_txt = match (target, tol) {
        (Some(t), Some(tol)) => format!("{} ± {} LUFS", num(t), num(tol)),
        (Some(t), None) => format!("{} LUFS", num(t)),
        _ => "—".into(),
    };
    let ceiling_txt = ceiling.map_or("—".into(), |c| format!("≤ {} dBTP", num(c)));
    for (k, label, unit, limit) in [
        (
            "integrated_lufs",
            "Integrated loudness",
            "LUFS",
            target_txt.as_str(),
        ),
        (
            "true_peak_dbtp",
            "Maximum true peak",
            "dBTP",
            ceiling_txt.as_str(),
        ),
        ("lra_lu", "Loudness range", "LU", ""),
        ("max_momentary_lufs", "Maximum momentary", "LUFS", ""),
        ("max_short_term_lufs", "Maximum short-term", "LUFS", ""),
        ("sample_peak_dbfs", "Maximum sample peak", "dBFS", ""),
        ("duration_s", "Duration", "s", ""),
    ] {
        // Two decimals: a tenth of an LU is the tolerance of EBU Tech 3341
        // meters, so the hundredths show rounding, not noise.
        let cell = |v: &Value| match v.get(k).and_then(Value::as_f64) {
            Some(x) => format!("{x:.2} {unit}").replace('-', "−"),
            None => "—".to_owned(),
        };
        let _ = write!(
            o,
            "<tr><th>{label}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&cell(p)),
            if d.is_object() {
                esc(&cell(d))
            } else {
                "not measured".into()
            },
            esc(limit)
        );
    }
    o.push_str("</tbody></table>");
    let mut norm = format!(
        "Normalization: {} mode, gain {} dB",
        text(&n["mode"]),
        n["gain_db"]
            .as_f64()
            .map_or("—".into(), |g| format!("{g:+.2}").replace('-', "−"))
    );
    if let Some(passes) = n["gain_passes"].as_u64().filter(|&p| p > 0) {
        let _ = write!(
            norm,
            ", {passes} correction pass{}",
            if passes == 1 { "" } else { "es" }
        );
    }
    if let Some(pr) = n["predicted_lufs"].as_f64() {
        let _ = write!(
            norm,
            ", predicted {} LUFS",
            format!("{pr:.2}").replace('-', "−")
        );
    }
    if let Some(lim) = n["limiter"].as_object() {
        let _ = write!(
            norm,
            "; limiter at {} dBTP: up to {} dB of gain reduction on {} % of samples",
            text(&n["limiter_ceiling_dbtp"]),
            lim.get("max_reduction_db").map_or("—".into(), text),
            lim.get("limited_fraction")
                .and_then(Value::as_f64)
                .map_or("—".into(), |f| num(f * 100.0))
        );
    }
    norm.push('.');
    let _ = write!(o, "<p>{}</p>", esc(&norm));
    if let Some(r) = n["refused"].as_str() {
        let _ = write!(
            o,
            "<div class=\"error-box\"><b>Normalization refused:</b> {}</div>",
            esc(r)
        );
    }
    let step = d["series"]["step_s"]
        .as_f64()
        .or(p["series"]["step_s"].as_f64())
        .unwrap_or(0.1);
    let mut lines = vec![
        Line::new(
            "delivered_momentary",
            "Delivered M (400 ms)",
            "#7fa7d9",
            &d["series"]["momentary_lufs"],
        ),
        Line::new(
            "delivered_short_term",
            "Delivered S (3 s)",
            C_Y,
            &d["series"]["short_term_lufs"],
        ),
        Line::new(
            "programme_momentary",
            "Programme M",
            "#c8ced6",
            &p["series"]["momentary_lufs"],
        ),
        Line::new(
            "programme_short_term",
            "Programme S",
            "#6c757d",
            &p["series"]["short_term_lufs"],
        ),
    ];
    lines[1].width = 2.0;
    lines[3].width = 1.6;
    lines[2].dash = Some("3 2");
    lines[3].dash = Some("6 3");
    // Draw the programme under the delivered audio.
    lines.rotate_left(2);
    let mut caption = "Momentary (400 ms) and short-term (3 s) loudness, ITU-R BS.1770-4, every 100 ms; the programme is the render before normalization".to_owned();
    if let Some(c) = ceiling {
        let _ = write!(
            caption,
            "; true-peak ceiling {} dBTP, delivered true peak {}",
            num(c),
            d["true_peak_dbtp"]
                .as_f64()
                .map_or("not measured".into(), |t| format!("{t:.2} dBTP")
                    .replace('-', "−"))
        );
    }
    caption.push('.');
    let lowest_target = target.map_or(-40.0, |t| t - tol.unwrap_or(0.0));
    svg(
        o,
        &Plot {
            key: "loudness",
            title: "Loudness over time".into(),
            y_unit: "LUFS",
            x_unit: "time (s)",
            x_step: step,
            lines,
            limits: vec![],
            band: target.map(|t| {
                let tol = tol.unwrap_or(0.0);
                (
                    t - tol,
                    t + tol,
                    format!("target {} ± {} LU", num(t), num(tol)),
                )
            }),
            y_max: None,
            // Below ~30 LU under the target is silence for this purpose; keep
            // the scale on the programme.
            y_floor: Some(lowest_target - 30.0),
            markers: vec![],
            marker_label: String::new(),
            caption,
        },
    );
}

fn thumbnails(o: &mut String, thumbs: &[Thumbnail]) {
    let flagged = thumbs.iter().filter(|t| !t.flagged.is_empty()).count();
    let _ = write!(
        o,
        "<h3>Frames</h3><p class=\"muted\">{} sampled frame{}{}.</p><div class=\"thumbs\">",
        thumbs.len(),
        if thumbs.len() == 1 { "" } else { "s" },
        if flagged > 0 {
            format!(", {flagged} flagged by a failed check (red)")
        } else {
            String::new()
        }
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    for t in thumbs {
        let cls = if t.flagged.is_empty() {
            "thumb"
        } else {
            "thumb flagged"
        };
        let _ = write!(
            o,
            "<figure class=\"{cls}\" data-frame=\"{}\"><img src=\"data:image/png;base64,{}\" width=\"{}\" height=\"{}\" alt=\"frame {} at {}\">\
             <figcaption><code>{}</code> · frame {}",
            t.frame,
            b64.encode(&t.png),
            t.width,
            t.height,
            t.frame,
            esc(&t.timecode),
            esc(&t.timecode),
            t.frame
        );
        if !t.flagged.is_empty() {
            let _ = write!(
                o,
                "<div class=\"flags\">{}</div>",
                t.flagged
                    .iter()
                    .map(|f| esc(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        o.push_str("</figcaption></figure>");
    }
    o.push_str("</div>\n");
}

fn probe(o: &mut String, p: &Value) {
    o.push_str("<h3>Technical metadata of the delivered file</h3>");
    kv_grid(
        o,
        p,
        &[
            "container",
            "video_codec",
            "video_profile",
            "width",
            "height",
            "pix_fmt",
            "frame_rate",
            "frames",
            "duration_s",
            "colour_primaries",
            "colour_transfer",
            "colour_matrix",
            "colour_range",
            "audio_codec",
            "sample_rate",
            "channels",
        ],
    );
}

const CSS: &str = r#"
:root{--pass:#1a7f37;--warn:#b35900;--fail:#c62828;--info:#0b61a4;--ink:#1f2328;--muted:#57606a;--line:#d0d7de;--soft:#f6f8fa}
*{box-sizing:border-box}
html{-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{margin:0 auto;max-width:1040px;padding:24px 28px 40px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:#fff}
code{font:12.5px/1.3 ui-monospace,"SFMono-Regular","DejaVu Sans Mono",Menlo,Consolas,monospace;overflow-wrap:break-word}
h1{margin:0;font-size:22px}
h2{font-size:18px;margin:28px 0 10px}
h3{font-size:15px;margin:22px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.banner{display:flex;align-items:center;gap:20px;padding:16px 20px;border-radius:8px;border:2px solid;margin-bottom:18px}
.banner.pass{border-color:var(--pass);background:#eef8f0}
.banner.warn{border-color:var(--warn);background:#fff5e8}
.banner.fail{border-color:var(--fail);background:#fdeeee}
.banner .verdict{font-size:24px;font-weight:800;letter-spacing:.04em;color:#fff;padding:10px 18px;border-radius:6px;white-space:nowrap}
.banner.pass .verdict{background:var(--pass)}.banner.warn .verdict{background:var(--warn)}.banner.fail .verdict{background:var(--fail)}
.banner .sub{color:var(--muted);margin-top:2px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;margin:8px 0 12px}
dl.facts dt{color:var(--muted);font-weight:600}
dl.facts dd{margin:0;min-width:0}
.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%;margin:6px 0 12px}
th,td{text-align:left;vertical-align:top;padding:5px 8px;border-bottom:1px solid var(--line)}
thead th{white-space:nowrap;background:var(--soft);font-size:12px;text-transform:uppercase;letter-spacing:.03em;color:var(--muted);border-bottom:2px solid var(--line)}
tr{break-inside:avoid;page-break-inside:avoid}
thead{display:table-header-group}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.val{font-variant-numeric:tabular-nums}
td.path{word-break:break-all;font-size:12.5px}
.badge{display:inline-block;min-width:52px;text-align:center;font-weight:700;font-size:11.5px;letter-spacing:.03em;padding:2px 7px;border-radius:4px;color:#fff;white-space:nowrap}
.badge.pass{background:var(--pass)}.badge.warn{background:var(--warn)}.badge.fail{background:var(--fail)}.badge.info{background:var(--info)}
.checks .desc{color:var(--muted);font-size:12.5px}
tr.row-fail>td{background:#fdeeee}
tr.row-warn>td{background:#fff5e8}
tr.row-fail>td:first-child{box-shadow:inset 4px 0 var(--fail)}
tr.row-warn>td:first-child{box-shadow:inset 4px 0 var(--warn)}
tr.events>td{padding-top:0}
table.ev{margin:0;background:#fff;font-size:12.5px}
table.ev th,table.ev td{padding:3px 6px}
.tally b{font-weight:700}.t-fail{color:var(--fail)}.t-warn{color:var(--warn)}.t-pass{color:var(--pass)}
table.kv th{width:1%;white-space:nowrap;color:var(--muted);font-weight:600;padding-right:24px}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px;margin:8px 0 14px}
.stat{border:1px solid var(--line);border-radius:6px;padding:6px 10px;background:var(--soft);break-inside:avoid}
.stat .k{font-size:11.5px;color:var(--muted)}
.stat .v{font-size:16px;font-weight:650;font-variant-numeric:tabular-nums}
dl.kvgrid{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:0 18px;margin:6px 0 12px}
dl.kvgrid dt,dl.kvgrid dd{padding:4px 0;border-bottom:1px solid var(--line);margin:0}
dl.kvgrid dt{color:var(--muted);font-weight:600}
.t-zero{color:var(--muted)}
table.loud th{width:26%}
.error-box{border:1px solid var(--fail);border-left:6px solid var(--fail);background:#fdeeee;border-radius:6px;padding:10px 14px;margin:12px 0}
.error-box h2,.error-box h3{margin:0 0 6px;color:var(--fail);border:0;padding:0}
.error-box pre{white-space:pre-wrap;word-break:break-word;margin:0 0 8px;font-size:13px}
.error-box table{background:#fff}
section.deliverable{margin-top:34px;padding-top:6px;border-top:3px solid var(--line)}
h2.dtitle{display:flex;align-items:center;gap:10px}
h2.dtitle .count{margin-left:auto;font-size:12px;font-weight:400;color:var(--muted)}
figure.plot-box{margin:10px 0 16px;break-inside:avoid;page-break-inside:avoid}
svg.plot{width:100%;height:auto;display:block;border:1px solid var(--line);border-radius:6px;background:#fff}
figure.plot-box figcaption{font-size:12px;color:var(--muted);margin-top:4px}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}
.thumbs figure{margin:0;padding:3px;border:2px solid var(--line);border-radius:5px;width:172px;break-inside:avoid;page-break-inside:avoid}
.thumbs img{display:block;width:100%;height:auto;image-rendering:auto}
.thumbs figcaption{font-size:11.5px;color:var(--muted);margin-top:3px}
.thumbs figure.flagged{border-color:var(--fail);box-shadow:0 0 0 1px var(--fail)}
.thumbs .flags{color:var(--fail);font-weight:600;word-break:break-all}
footer{margin-top:40px;padding-top:10px;border-top:1px solid var(--line);font-size:12px;color:var(--muted)}
a{color:var(--info)}
@page{size:A4;margin:14mm 12mm}
@media print{
 body{max-width:none;padding:0;font-size:10.5pt}
 .banner{break-after:avoid}
 section.deliverable~section.deliverable{break-before:page;page-break-before:always;border-top:0;margin-top:0}
 h2,h3{break-after:avoid;page-break-after:avoid}
 svg.plot{max-height:80mm}
 a{color:inherit;text-decoration:none}
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_text_and_attributes() {
        assert_eq!(esc(r#"a<b>&"c"'d"#), "a&lt;b&gt;&amp;&quot;c&quot;&#39;d");
        let mut o = String::new();
        job_error(
            &mut o,
            &serde_json::json!({
                "kind": "input",
                "message": "<script>alert(1)</script> & \"x\"",
                "input": { "file": "in/<a&b\".toml", "line": 3, "field": null }
            }),
        );
        assert!(!o.contains("<script>"), "{o}");
        assert!(o.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"));
        assert!(o.contains("in/&lt;a&amp;b&quot;.toml"));
        // A null field is left out, not shown as a dash row.
        assert!(!o.contains(">Field<"));
    }

    #[test]
    fn decimation_keeps_spikes_and_dips_and_bounds_the_points() {
        let n = 180_000; // two hours at 25 fps
        let mut v: Vec<Option<f64>> = (0..n).map(|i| Some(40.0 + (i % 7) as f64 * 0.1)).collect();
        v[12_345] = Some(99.0);
        v[150_001] = Some(-3.0);
        v[170_000] = None;
        let d = decimate(&v, MAX_PLOT_POINTS);
        assert!(d.len() <= MAX_PLOT_POINTS, "{} points", d.len());
        assert!(d.contains(&(12_345, Some(99.0))));
        assert!(d.contains(&(150_001, Some(-3.0))));
        // Indices stay in order, so the path never runs backwards.
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
        // A short series is untouched, gaps included.
        let short = vec![Some(1.0), None, Some(2.0)];
        assert_eq!(
            decimate(&short, MAX_PLOT_POINTS),
            vec![(0, Some(1.0)), (1, None), (2, Some(2.0))]
        );
        // A stretch of nothing stays a gap.
        let gap: Vec<Option<f64>> = (0..10_000).map(|i| (i >= 5_000).then_some(1.0)).collect();
        let d = decimate(&gap, 100);
        assert_eq!(d[0], (0, None));
        assert!(d.iter().any(|p| p.1 == Some(1.0)));
    }

    #[test]
    fn thresholds_come_from_the_checks() {
        assert_eq!(first_number(">= 0.95"), Some(0.95));
        assert_eq!(first_number("-23 ± 0.5"), Some(-23.0));
        assert_eq!(first_number("<= 2.5 (p99)"), Some(2.5));
        assert_eq!(first_number("= h264"), Some(264.0));
        assert_eq!(first_number("none"), None);
    }

    #[test]
    fn an_absent_series_is_not_plotted_and_says_so() {
        let mut o = String::new();
        let q = serde_json::json!({
            "reference": "render",
            "summary": {"frames": 3},
            "series": {"psnr_y": [30.0, null, 31.0], "ssim_y": [0.99, 1.0, 0.98]}
        });
        quality(&mut o, &q, &Thresholds::default());
        assert!(o.contains("data-series=\"ssim_y\""));
        assert!(!o.contains("data-series=\"ssim_u\""));
        assert!(o.contains("U (not measured)"));
        // The whole ΔE plot has nothing: it says so.
        let de = &o[o.find("data-plot=\"delta_e\"").unwrap()..];
        assert!(de.contains(">not measured<"));
        // The identical PSNR frame is a marker at the cap, not a gap.
        let psnr =
            &o[o.find("data-plot=\"psnr\"").unwrap()..o.find("data-plot=\"delta_e\"").unwrap()];
        assert_eq!(psnr.matches("class=\"marker\"").count(), 1);
        assert!(psnr.contains("drawn at 40 dB"));
    }
}
