//! The reports a delivery team files: report.json validated against the
//! published JSON Schema (host/schema), and report.html loaded in a real
//! headless Chromium, which must show the verdict and the plots, make no
//! request and log no error, and print to PDF.
//!
//! Three real jobs through a watch host make the material: one that passes,
//! one whose deliverable fails its picture-quality checks (a preset asking
//! for a PSNR no lossy encode reaches), and one whose manifest is invalid.

use deliver_tests::chromium::{file_url, Chromium};
use deliver_tests::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// A small programme: bars dissolving into a pattern, and a tone that
/// drops 12 dB halfway so the loudness plot has a shape. 4 s, not 2: the
/// short-term loudness window is 3 s, and its curve should have points.
const PROMO: &str = r#"version = 1
name = "promo"
[canvas]
width = 320
height = 180
frame_rate = "25"
duration = "4s"
colour_space = "bt709"
[[video]]
[[video.clip]]
generator = "bars"
duration = "2s"
[[video.clip]]
generator = "pattern"
start = "1s"
duration = "3s"
transition_in = { kind = "dissolve", duration = "1s" }
[[audio]]
[[audio.clip]]
generator = "sine"
frequency = 1000.0
level = -16.0
duration = "2s"
[[audio.clip]]
generator = "sine"
frequency = 440.0
level = -28.0
start = "2s"
duration = "2s"
[[deliverable]]
preset = "PRESET"
name = "web"
"#;

/// Markup in a bad value: the error report must show it as text.
const BAD: &str = r#"version = 1
[canvas]
width = 320
height = 180
frame_rate = "25"
duration = "2s"
colour_space = "<b>bt709</b> & \"friends\""
[[video]]
[[video.clip]]
generator = "bars"
[[deliverable]]
preset = "test/small"
name = "web"
"#;

/// The job folders of the three jobs, made once for all tests here.
struct Jobs {
    pass: PathBuf,
    fail: PathBuf,
    error: PathBuf,
}

fn jobs() -> &'static Jobs {
    static JOBS: OnceLock<Jobs> = OnceLock::new();
    JOBS.get_or_init(|| {
        // Under target/, not /tmp: the reports stay there to be looked at.
        let dir = target_dir().join("report-tests");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let plugins = plugin_dir(&dir, &[]);
        let base = builtin_preset("web/h264-720p");
        let small = base
            .replace("width = 1280", "width = 320")
            .replace("height = 720", "height = 180");
        assert_ne!(small, base, "the 720p preset changed shape");
        // No lossy encode reaches 99 dB: the PSNR check fails, an error.
        let strict = small.replace("min_psnr_y = 35.0", "min_psnr_y = 99.0");
        assert_ne!(strict, small, "the 720p preset's qc changed shape");
        let presets = presets_dir(
            &dir,
            &[("test/small.toml", &small), ("test/strict.toml", &strict)],
        );
        let root = dir.join("root");
        let mut host = Host::start(&root, &plugins, &["--presets", presets.to_str().unwrap()]);
        host.drop_file(
            "pass.toml",
            PROMO.replace("PRESET", "test/small").as_bytes(),
        );
        host.drop_file(
            "strict.toml",
            PROMO.replace("PRESET", "test/strict").as_bytes(),
        );
        host.drop_file("bad.toml", BAD.as_bytes());
        let (pass, state, r) = host.wait_job("pass", Duration::from_secs(240));
        assert_eq!(state, "done", "{r:#}");
        let (fail, state, r) = host.wait_job("strict", Duration::from_secs(240));
        assert_eq!(state, "failed", "{r:#}");
        let (error, state, r) = host.wait_job("bad", Duration::from_secs(60));
        assert_eq!(state, "failed", "{r:#}");
        Jobs { pass, fail, error }
    })
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn schema() -> Value {
    read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/schema/report-2.schema.json"))
}

fn validator() -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema())
        .expect("the report schema compiles")
}

/// Every way `report` breaks the schema, one per line.
fn violations(v: &jsonschema::Validator, report: &Value) -> String {
    v.iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_schema_is_valid_2020_12_and_names_the_report_version() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    if let Err(e) = jsonschema::meta::validate(&s) {
        panic!("the schema is not a valid JSON Schema: {e}");
    }
    let id = s["$id"].as_str().unwrap();
    assert!(id.ends_with(deliver::report::SCHEMA), "$id {id}");
    assert_eq!(s["properties"]["schema"]["const"], deliver::report::SCHEMA);
}

#[test]
fn every_report_of_a_real_job_validates_against_the_schema() {
    let jobs = jobs();
    let v = validator();
    for (dir, verdict) in [
        (&jobs.pass, "pass"),
        (&jobs.fail, "fail"),
        (&jobs.error, "fail"),
    ] {
        let r = read_json(&dir.join("report.json"));
        assert_eq!(r["verdict"], verdict, "{}", dir.display());
        let errors = violations(&v, &r);
        assert!(
            errors.is_empty(),
            "{} breaks the schema:\n{errors}",
            dir.display()
        );
        // Both files written, atomically: no temporary left beside them.
        assert!(dir.join("report.html").is_file(), "{}", dir.display());
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.ends_with(".tmp"), "{name} left in {}", dir.display());
        }
    }
    // The material is what the tests below think it is.
    let pass = read_json(&jobs.pass.join("report.json"));
    let d = &pass["deliverables"][0];
    assert_eq!(
        d["quality"]["series"]["ssim_y"].as_array().unwrap().len(),
        100
    );
    assert!(d["loudness"]["delivered"]["series"]["short_term_lufs"]
        .as_array()
        .unwrap()
        .iter()
        .any(Value::is_number));
    let fail = read_json(&jobs.fail.join("report.json"));
    let psnr = fail["deliverables"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "video.psnr_y")
        .unwrap();
    assert_eq!(psnr["pass"], false);
    assert_eq!(psnr["severity"], "error");
    let error = read_json(&jobs.error.join("report.json"));
    assert_eq!(error["error"]["kind"], "input");
    assert_eq!(error["error"]["input"]["field"], "canvas.colour_space");
    assert_eq!(error["error"]["input"]["line"], 7);
}

#[test]
fn the_schema_rejects_malformed_reports() {
    let v = validator();
    let good = read_json(&jobs().pass.join("report.json"));
    assert!(v.is_valid(&good), "{}", violations(&v, &good));
    type Mutation = (&'static str, fn(&mut Value));
    let bad: &[Mutation] = &[
        ("verdict maybe", |r| r["verdict"] = json!("maybe")),
        ("check without severity", |r| {
            r["deliverables"][0]["checks"][0]
                .as_object_mut()
                .unwrap()
                .remove("severity");
        }),
        ("severity fatal", |r| {
            r["deliverables"][0]["checks"][0]["severity"] = json!("fatal")
        }),
        ("unknown top-level field", |r| r["extra"] = json!(1)),
        ("another schema version", |r| {
            r["schema"] = json!("deliver.report/1")
        }),
        ("negative byte count", |r| {
            r["deliverables"][0]["bytes"] = json!(-1)
        }),
        ("event without tc_in", |r| {
            r["deliverables"][0]["checks"][0]["events"] =
                json!([{ "frame_in": 0, "frame_out": 1, "tc_out": "00:00:00:01", "detail": "x" }])
        }),
        ("timecode that is not one", |r| {
            r["deliverables"][0]["checks"][0]["events"] = json!([{
                "frame_in": 0, "frame_out": 1, "tc_in": "0s", "tc_out": "00:00:00:01", "detail": "x"
            }])
        }),
        ("a string in a loudness series", |r| {
            r["deliverables"][0]["loudness"]["delivered"]["series"]["momentary_lufs"][0] =
                json!("loud")
        }),
        ("a known probe field of the wrong type", |r| {
            r["deliverables"][0]["probe"]["width"] = json!("wide")
        }),
        ("a known quality series of the wrong type", |r| {
            r["deliverables"][0]["quality"]["series"]["psnr_u"] = json!(["x"])
        }),
        ("null SSIM (only PSNR may be null)", |r| {
            r["deliverables"][0]["quality"]["series"]["ssim_y"][0] = Value::Null
        }),
        ("started is not a time", |r| {
            r["started"] = json!("yesterday")
        }),
        ("normalization mode", |r| {
            r["deliverables"][0]["loudness"]["normalization"]["mode"] = json!("magic")
        }),
    ];
    for (what, mutate) in bad {
        let mut r = good.clone();
        mutate(&mut r);
        assert!(!v.is_valid(&r), "the schema accepted a report with {what}");
    }
    // Where the QC work is adding fields, new ones are accepted.
    let open: &[Mutation] = &[
        ("a new probe field", |r| {
            r["deliverables"][0]["probe"]["bit_rate"] = json!(123_456)
        }),
        ("per-plane series, identical frames null", |r| {
            let s = &mut r["deliverables"][0]["quality"]["series"];
            s["psnr_u"] = json!([null, 41.5]);
            s["ssim_all"] = json!([0.99, 1.0]);
            s["delta_e_p99"] = json!([]);
        }),
        ("a ΔE summary", |r| {
            r["deliverables"][0]["quality"]["summary"]["delta_e"] = json!({
                "mean": 0.4, "p99": 1.2, "max": 3.0, "max_frame": 7,
                "pixels_per_frame": 57_600, "method": "CIEDE2000 on BT.709 RGB"
            })
        }),
        ("a check with events and an EBU item", |r| {
            let c = &mut r["deliverables"][0]["checks"][0];
            c["ebu_qc"] = json!("BlackFrames");
            c["events"] = json!([{
                "frame_in": 10, "frame_out": 12, "tc_in": "00:00:00:10",
                "tc_out": "00:00:00:12", "detail": "mean luma 16.0"
            }]);
        }),
    ];
    for (what, mutate) in open {
        let mut r = good.clone();
        mutate(&mut r);
        assert!(
            v.is_valid(&r),
            "the schema refused {what}:\n{}",
            violations(&v, &r)
        );
    }
}

/// What the page shows, read in the browser.
const PROBE_PAGE: &str = r#"(() => {
  const q = s => document.querySelectorAll(s).length;
  const d = k => { const e = document.querySelector(`[data-series="${k}"]`); return e ? e.getAttribute('d') : null; };
  const imgs = [...document.querySelectorAll('.thumbs img')];
  const rows = [...document.querySelectorAll('table.checks tr[data-check]')];
  return {
    verdict: document.getElementById('verdict')?.textContent,
    title: document.querySelector('h1')?.textContent,
    scripts: q('script'),
    plots: Object.fromEntries(['ssim', 'psnr', 'delta_e', 'loudness'].map(p => [p, q(`svg[data-plot="${p}"] path.series`)])),
    not_measured: Object.fromEntries(['ssim', 'psnr', 'delta_e', 'loudness'].map(p => [p, q(`svg[data-plot="${p}"] .not-measured`)])),
    ssim_y: d('ssim_y'),
    band: q('svg[data-plot="loudness"] rect.band'),
    thumbs: imgs.length,
    thumbs_decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    flagged: q('.thumbs figure.flagged'),
    rows: rows.map(r => [r.dataset.check, r.className]),
    job_error: document.getElementById('job-error')?.textContent ?? null,
    markup_in_error: q('#job-error b'),
    width: document.querySelector('svg[data-plot]')?.getBoundingClientRect().width ?? 0,
  };
})()"#;

/// Pages of a PDF: its page objects (`/Type /Page`, not `/Pages`).
fn pdf_pages(pdf: &[u8]) -> usize {
    let text = String::from_utf8_lossy(pdf);
    text.match_indices("/Type")
        .filter(|(i, _)| {
            let rest = text[i + 5..].trim_start();
            rest.starts_with("/Page") && !rest.starts_with("/Pages")
        })
        .count()
}

fn non_empty(v: &Value) -> bool {
    v.as_array().is_some_and(|a| !a.is_empty())
}

/// Loads a job's report.html, checks what every report must satisfy in a
/// browser, saves a screenshot, and returns what the page shows.
fn load(browser: &mut Chromium, job: &Path, shot: &str) -> (Value, Value) {
    let report = read_json(&job.join("report.json"));
    let url = file_url(&job.join("report.html"));
    let page = browser
        .open(&url, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\nbrowser stderr:\n{}", browser.stderr()));
    let shown = browser.eval(&page, PROBE_PAGE).unwrap();
    let problems = browser.problems(&page).unwrap();
    assert!(problems.is_empty(), "{url}:\n{}", problems.join("\n"));
    let requests = browser.requests(&page).unwrap();
    // The page itself was requested (so requests are being seen), and
    // nothing else left the file.
    assert!(requests.contains(&url), "{url} not among {requests:?}");
    let outside: Vec<_> = requests
        .iter()
        .filter(|u| !u.starts_with("file:") && !u.starts_with("data:"))
        .collect();
    assert!(outside.is_empty(), "{url} requested {outside:?}");
    assert_eq!(shown["scripts"], 0, "{url}");

    let expected = match report["verdict"].as_str() {
        Some("pass") => "PASS",
        Some("warn") => "PASS WITH WARNINGS",
        _ => "FAIL",
    };
    assert_eq!(shown["verdict"], expected, "{url}");
    assert_eq!(shown["title"], report["name"], "{url}");

    let png = browser.screenshot(&page).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{url}: not a PNG");
    // IHDR: width and height, big-endian, at bytes 16..24.
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(w >= 600 && h >= 400, "{url}: screenshot {w}x{h}");
    let dir = target_dir().join("report-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{shot}.png"));
    std::fs::write(&path, &png).unwrap();
    println!("screenshot of {url}: {} ({w}x{h})", path.display());

    let pdf = browser.pdf(&page).unwrap();
    assert!(pdf.starts_with(b"%PDF-"), "{url}: not a PDF");
    let pages = pdf_pages(&pdf);
    assert!(pages >= 1, "{url}: the PDF has no page");
    let pdf_path = dir.join(format!("{shot}.pdf"));
    std::fs::write(&pdf_path, &pdf).unwrap();
    println!("printed: {} ({pages} pages)", pdf_path.display());
    browser.emulate_print(&page).unwrap();
    let print = dir.join(format!("{shot}-print.png"));
    std::fs::write(&print, browser.screenshot(&page).unwrap()).unwrap();
    println!("as printed, without page breaks: {}", print.display());
    browser.close(page).unwrap();
    (report, shown)
}

#[test]
fn report_html_renders_in_headless_chromium_without_network_or_errors() {
    let jobs = jobs();
    let mut browser = Chromium::launch().unwrap_or_else(|e| panic!("{e}"));

    // The passing job: every plot whose series the report holds.
    let (report, shown) = load(&mut browser, &jobs.pass, "pass");
    let d = &report["deliverables"][0];
    let q = &d["quality"]["series"];
    let count = |keys: &[&str]| keys.iter().filter(|k| non_empty(&q[**k])).count();
    let plots = &shown["plots"];
    let ssim = count(&["ssim_y", "ssim_u", "ssim_v", "ssim_all"]);
    assert!(ssim >= 1);
    assert_eq!(plots["ssim"], ssim, "{shown:#}");
    let psnr = count(&["psnr_y", "psnr_u", "psnr_v", "psnr_avg"]);
    assert!(psnr >= 1);
    assert_eq!(plots["psnr"], psnr, "{shown:#}");
    let delta_e = count(&["delta_e_mean", "delta_e_p99", "delta_e_max"]);
    assert_eq!(plots["delta_e"], delta_e, "{shown:#}");
    // A plot with nothing to show says so.
    assert_eq!(shown["not_measured"]["delta_e"], u64::from(delta_e == 0));
    assert_eq!(shown["not_measured"]["ssim"], 0);
    // Loudness: momentary and short-term, delivered and programme.
    let l = &d["loudness"];
    let loud = [&l["delivered"]["series"], &l["programme"]["series"]]
        .iter()
        .flat_map(|s| [&s["momentary_lufs"], &s["short_term_lufs"]])
        .filter(|s| non_empty(s))
        .count();
    assert_eq!(loud, 4, "the fixture measures both signals");
    assert_eq!(plots["loudness"], loud, "{shown:#}");
    assert_eq!(shown["band"], 1, "no target band");
    // 100 frames are under the decimation limit: one vertex per frame.
    let ssim_y = shown["ssim_y"].as_str().unwrap();
    assert_eq!(ssim_y.matches(['M', 'L']).count(), 100, "{ssim_y}");
    // The plots fill the page's width.
    assert!(shown["width"].as_f64().unwrap() > 600.0, "{shown:#}");
    // Every check is listed; thumbnails as the report has them.
    let checks = d["checks"].as_array().unwrap();
    assert_eq!(shown["rows"].as_array().unwrap().len(), checks.len());
    let thumbs = d["thumbnails"].as_array().unwrap();
    assert_eq!(shown["thumbs"], thumbs.len());
    assert_eq!(shown["thumbs_decoded"], thumbs.len());
    let flagged = thumbs.iter().filter(|t| non_empty(&t["flagged"])).count();
    assert_eq!(shown["flagged"], flagged);

    // The failing job: its failed error checks lead the table, highlighted.
    let (report, shown) = load(&mut browser, &jobs.fail, "fail");
    let checks = report["deliverables"][0]["checks"].as_array().unwrap();
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c["pass"] == false && c["severity"] == "error")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&"video.psnr_y"), "{failed:?}");
    let rows = shown["rows"].as_array().unwrap();
    for (i, row) in rows.iter().enumerate() {
        let (id, class) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
        if i < failed.len() {
            assert!(failed.contains(&id), "row {i} is {id}, not a failed check");
            assert_eq!(class, "row-fail", "{id}");
        } else {
            assert_eq!(class, "row-pass", "{id}");
        }
    }

    // The job that could not run: the error, its place, the bad value as text.
    let (report, shown) = load(&mut browser, &jobs.error, "error");
    let text = shown["job_error"].as_str().expect("no error section");
    let input = &report["error"]["input"];
    for part in [
        input["field"].as_str().unwrap(),
        input["value"].as_str().unwrap(),
        // The markup as text (the value is TOML, its quotes escaped).
        "<b>bt709</b> & ",
    ] {
        assert!(text.contains(part), "{part:?} not in {text:?}");
    }
    assert!(text.contains(&input["line"].to_string()), "{text:?}");
    assert_eq!(shown["markup_in_error"], 0, "the bad value became markup");
}

/// SMPTE timecode of a frame at 25 fps.
fn tc25(frame: u64) -> String {
    let s = frame / 25;
    format!(
        "{:02}:{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        frame % 25
    )
}

/// A report with what real jobs do not produce yet (warning-level findings
/// with events, flagged thumbnails) on a two-hour programme, written by the
/// host's own `report::write`. The thumbnails are real PNGs from FFmpeg.
fn long_programme_with_findings(dir: &Path) -> deliver::report::JobReport {
    use deliver::report::*;
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x90:rate=1:duration=4",
        dir.join("thumb%d.png").to_str().unwrap(),
    ]);
    let frames: u64 = 2 * 3600 * 25;
    let (black, dip) = (1_000..1_100, 90_000);
    let mut series = deliver::quality::Series::default();
    for f in 0..frames {
        let wobble = (f as f64 / 250.0).sin();
        series.psnr_y.push(if black.contains(&f) {
            None // the slate is encoded losslessly: identical frames
        } else if f == dip {
            Some(21.5)
        } else {
            Some(44.0 + 2.0 * wobble)
        });
        series.ssim_y.push(if f == dip {
            0.61
        } else {
            0.985 + 0.01 * wobble
        });
    }
    let thumb = |i: usize, frame: u64, flagged: &[&str]| Thumbnail {
        frame,
        timecode: tc25(frame),
        flagged: flagged.iter().map(|s| s.to_string()).collect(),
        width: 160,
        height: 90,
        png: std::fs::read(dir.join(format!("thumb{i}.png"))).unwrap(),
    };
    let event = |a: u64, b: u64, detail: &str| Event {
        frame_in: a,
        frame_out: b,
        tc_in: tc25(a),
        tc_out: tc25(b),
        detail: detail.into(),
    };
    let checks = vec![
        Check::new(
            "video.ssim_y",
            "luma SSIM, worst frame",
            0.61,
            ">= 0.5",
            true,
        ),
        Check::new(
            "video.black",
            "black frames",
            100,
            "none over 10 frames",
            false,
        )
        .severity(Severity::Warning)
        .ebu("BlackFrames")
        .events(vec![event(
            black.start,
            black.end,
            "mean luma 16.0 <&> \"slate\"",
        )]),
        Check::new(
            "video.quality_dip",
            "one frame far below the mean",
            21.5,
            ">= 30 dB",
            false,
        )
        .severity(Severity::Info)
        .events(vec![event(dip, dip + 1, "PSNR 21.5 dB")]),
    ];
    let summary = series.summary();
    let d = DeliverableReport {
        name: "feature".into(),
        preset: "test/long".into(),
        preset_file: dir.join("long.toml"),
        file: Some(dir.join("feature <final> & \"approved\".mxf")),
        bytes: 123_456_789,
        verdict: verdict_of(&checks),
        error: None,
        video_encoder: "libx264 (ffmpeg 0.1.0)".into(),
        video_hardware: false,
        audio_encoder: None,
        muxer: "mxf (ffmpeg)".into(),
        encode_seconds: 1234.5,
        probe: None,
        loudness: None,
        quality: Some(QualityReport {
            reference: "the render".into(),
            summary,
            series,
        }),
        checks,
        thumbnails: vec![
            thumb(1, 0, &[]),
            thumb(2, 1_050, &["video.black"]),
            thumb(3, dip, &["video.quality_dip"]),
            thumb(4, frames - 1, &[]),
        ],
    };
    JobReport {
        schema: SCHEMA,
        job_id: "long-1".into(),
        manifest: dir.join("long.toml"),
        name: "feature".into(),
        verdict: d.verdict,
        started: now(),
        finished: now(),
        seconds: 4000.0,
        host: HostInfo {
            deliver_version: "0.1.0",
            plugins: vec![],
        },
        render: None,
        deliverables: vec![d],
        error: None,
        warnings: Vec::new(),
    }
}

#[test]
fn warnings_events_thumbnails_and_two_hours_of_frames_render_in_chromium() {
    let dir = target_dir().join("report-tests-long");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let report = long_programme_with_findings(&dir);
    deliver::report::write(&report, &dir).unwrap();
    let json = read_json(&dir.join("report.json"));
    let v = validator();
    let errors = violations(&v, &json);
    assert!(errors.is_empty(), "{errors}");
    // 180 000 frames, but every series is decimated to the plot's width:
    // the page stays small enough to open and print.
    let html = std::fs::metadata(dir.join("report.html")).unwrap().len();
    assert!(html < 1 << 20, "report.html is {html} bytes");

    let mut browser = Chromium::launch().unwrap_or_else(|e| panic!("{e}"));
    let (_, shown) = load(&mut browser, &dir, "long");
    assert_eq!(shown["verdict"], "PASS WITH WARNINGS");
    let ssim_y = shown["ssim_y"].as_str().unwrap();
    let vertices = ssim_y.matches(['M', 'L']).count();
    assert!(
        (1000..=deliver::report_html::MAX_PLOT_POINTS).contains(&vertices),
        "{vertices} vertices"
    );
    // The warning first, then the info, then the pass.
    let rows: Vec<(&str, &str)> = shown["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap(), r[1].as_str().unwrap()))
        .collect();
    assert_eq!(
        rows,
        [
            ("video.black", "row-warn"),
            ("video.quality_dip", "row-info"),
            ("video.ssim_y", "row-pass")
        ]
    );
    assert_eq!(shown["thumbs"], 4);
    assert_eq!(shown["thumbs_decoded"], 4);
    assert_eq!(shown["flagged"], 2);
    let page = browser
        .open(&file_url(&dir.join("report.html")), Duration::from_secs(30))
        .unwrap();
    let detail = browser
        .eval(
            &page,
            r#"(() => ({
                events: [...document.querySelectorAll('table.ev tbody tr')].map(r => r.textContent),
                flags: [...document.querySelectorAll('.thumbs figure.flagged figcaption')].map(f => f.textContent),
                markers: document.querySelectorAll('svg[data-plot="psnr"] .marker').length,
            }))()"#,
        )
        .unwrap();
    let events: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{detail:#}");
    assert!(
        events[0].contains("00:00:40:00")
            && events[0].contains("00:00:44:00")
            && events[0].contains("mean luma 16.0 <&> \"slate\""),
        "{events:?}"
    );
    let flags = detail["flags"].as_array().unwrap();
    assert!(flags[0].as_str().unwrap().contains("video.black"));
    assert!(flags[0].as_str().unwrap().contains("00:00:42:00"));
    assert!(flags[1].as_str().unwrap().contains("video.quality_dip"));
    // The identical (slate) frames are marked at the PSNR cap.
    assert!(detail["markers"].as_u64().unwrap() >= 1, "{detail:#}");
    browser.close(page).unwrap();
}
