//! EBU loudness conformance: every expectation in the EBU test set's
//! `expected.json` (EBU Tech 3341 / 3342, v05 set), checked with deliver's
//! meter, each with the tolerance the standard gives there.
//!
//! The set's FLAC files are decoded through the real ffmpeg plugin, as
//! `deliver loudness` does. Signals the folder lacks are synthesized here from
//! their definitions in Tech 3341 / 3342 (1 kHz sine sequences at 48 kHz);
//! the authentic programmes (3341-7, 3341-8, 3342-5, 3342-6) cannot be, and
//! are listed as unavailable instead.
//!
//! Momentary and short-term loudness are read after every 10 ms step (the
//! meter's evaluation rate), which is what "constant after" and the per
//! segment maxima are checked against.
//!
//! Needs `cargo build --release --workspace` first (the plugin library).

use deliver::loudness::{AudioFile, Meter};
use deliver::plugins::{default_dirs, Registry};
use serde_json::Value;
use std::path::{Path, PathBuf};

const REFS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/refs/ebu-loudness"
);
const RATE: u32 = 48_000;

/// A signal to measure: interleaved `f32` samples.
struct Signal {
    origin: String,
    channels: u32,
    rate: u32,
    samples: Vec<f32>,
}

/// Readings after every 10 ms step, and the final values.
struct Trace {
    step_s: f64,
    momentary: Vec<Option<f64>>,
    short_term: Vec<Option<f64>>,
    integrated: Option<f64>,
    lra: Option<f64>,
    true_peak: Option<f64>,
    max_momentary: Option<f64>,
    max_short_term: Option<f64>,
}

fn measure(sig: &Signal) -> Trace {
    let mut meter = Meter::new(sig.channels, sig.rate).expect("meter accepts the layout");
    let step = meter.step_frames() * sig.channels as usize;
    let (mut momentary, mut short_term) = (Vec::new(), Vec::new());
    for chunk in sig.samples.chunks(step) {
        meter.add(chunk).unwrap();
        if chunk.len() == step {
            momentary.push(meter.momentary_lufs());
            short_term.push(meter.short_term_lufs());
        }
    }
    let a = meter.analysis();
    Trace {
        step_s: meter.step_frames() as f64 / sig.rate as f64,
        momentary,
        short_term,
        integrated: a.summary.integrated_lufs,
        lra: a.summary.lra_lu,
        true_peak: a.summary.true_peak_dbtp,
        max_momentary: a.max_momentary_lufs,
        max_short_term: a.max_short_term_lufs,
    }
}

/// `[value - tol_minus, value + tol_plus]` of an expectation object.
fn bounds(spec: &Value) -> (f64, f64) {
    let f = |k: &str| spec[k].as_f64().unwrap_or_else(|| panic!("{k} in {spec}"));
    (f("value") - f("tol_minus"), f("value") + f("tol_plus"))
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| format!("{v:.2}"))
}

/// Checks one expectation key; returns a line describing it and whether
/// it holds.
fn check(key: &str, spec: &Value, t: &Trace) -> (String, bool) {
    let one = |name: &str, got: Option<f64>, spec: &Value| {
        let (lo, hi) = bounds(spec);
        let ok = got.is_some_and(|g| g >= lo && g <= hi);
        (format!("{name}={} in [{lo:.2}, {hi:.2}]", fmt(got)), ok)
    };
    match key {
        "I" => one("I", t.integrated, spec),
        "LRA" => one("LRA", t.lra, spec),
        "TP" => one("TP", t.true_peak, spec),
        "maxM" => one("maxM", t.max_momentary, spec),
        "maxS" => one("maxS", t.max_short_term, spec),
        "M_const_after_s" | "S_const_after_s" => {
            let after = spec[0].as_f64().expect("time");
            let (lo, hi) = bounds(&spec[1]);
            let series = if key.starts_with('M') {
                &t.momentary
            } else {
                &t.short_term
            };
            // Step i ends at (i + 1) * step_s.
            let first = ((after / t.step_s).round() as usize).saturating_sub(1);
            let vals = &series[first.min(series.len())..];
            let worst = vals
                .iter()
                .map(|v| v.unwrap_or(f64::NEG_INFINITY))
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(v), b.max(v))
                });
            let ok = !vals.is_empty() && worst.0 >= lo && worst.1 <= hi;
            (
                format!(
                    "{} from {after} s: {} readings in [{:.2}, {:.2}], want [{lo:.2}, {hi:.2}]",
                    &key[..1],
                    vals.len(),
                    worst.0,
                    worst.1
                ),
                ok,
            )
        }
        "maxM_per_segment" | "maxS_per_segment" => {
            let seg = spec["segment_s"].as_f64().expect("segment_s");
            let tol = spec["tol"].as_f64().expect("tol");
            let want: Vec<f64> = spec["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let series = if key.starts_with("maxM") {
                &t.momentary
            } else {
                &t.short_term
            };
            let steps_per_seg = (seg / t.step_s).round() as usize;
            let mut ok = true;
            let mut got = Vec::new();
            for (k, w) in want.iter().enumerate() {
                // Readings whose window ends inside (k·seg, (k+1)·seg].
                let lo = (k * steps_per_seg).min(series.len());
                let hi = ((k + 1) * steps_per_seg).min(series.len());
                let max = series[lo..hi].iter().flatten().copied().reduce(f64::max);
                ok &= max.is_some_and(|m| (m - w).abs() <= tol);
                got.push(fmt(max));
            }
            (
                format!(
                    "{} per {seg} s segment: [{}], want {want:?} ±{tol}",
                    &key[..4],
                    got.join(", ")
                ),
                ok,
            )
        }
        other => (format!("unhandled expectation {other}"), false),
    }
}

/// A 1 kHz sine per channel (`None`: silent channel) through a sequence of
/// `(level dBFS, seconds)` segments applied to every sounding channel as an
/// offset from its base level; phase runs on across segments.
fn tone(base_dbfs: &[Option<f64>], segments: &[(f64, f64)]) -> Vec<f32> {
    let ch = base_dbfs.len();
    let mut out = Vec::new();
    let mut n = 0u64;
    for &(level, secs) in segments {
        let frames = (secs * RATE as f64).round() as u64;
        for _ in 0..frames {
            let s = (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / RATE as f64).sin();
            for b in base_dbfs {
                let v = b.map_or(0.0, |b| 10f64.powf((b + level) / 20.0) * s);
                out.push(v as f32);
            }
            n += 1;
        }
    }
    debug_assert_eq!(out.len() % ch, 0);
    out
}

const SILENCE: f64 = f64::NEG_INFINITY;

fn stereo(name: &str, segments: &[(f64, f64)]) -> Signal {
    Signal {
        origin: format!("synthesized {name}"),
        channels: 2,
        rate: RATE,
        samples: tone(&[Some(0.0), Some(0.0)], segments),
    }
}

/// The signals of the set that are missing from the folder, from their
/// definitions (all 1 kHz sine, 48 kHz). `None`: not synthesizable.
fn synthesize(test: &str) -> Option<Vec<Signal>> {
    let ramp = |on: f64, off: f64| -> Vec<(f64, f64)> {
        (0..20)
            .flat_map(|k| [(-38.0 + k as f64, on), (SILENCE, off)])
            .collect()
    };
    Some(match test {
        // Tech 3341 table 1: stereo sequences in dBFS.
        "3341-3" => vec![stereo(test, &[(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)])],
        "3341-4" => vec![stereo(
            test,
            &[
                (-72.0, 10.0),
                (-36.0, 10.0),
                (-23.0, 60.0),
                (-36.0, 10.0),
                (-72.0, 10.0),
            ],
        )],
        "3341-5" => vec![stereo(test, &[(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)])],
        // L, R −28 dBFS, C −24 dBFS, Ls, Rs −30 dBFS; and the 6-channel
        // variant with a silent LFE.
        "3341-6" => {
            let five = [
                Some(-28.0),
                Some(-28.0),
                Some(-24.0),
                Some(-30.0),
                Some(-30.0),
            ];
            let six = [
                Some(-28.0),
                Some(-28.0),
                Some(-24.0),
                None,
                Some(-30.0),
                Some(-30.0),
            ];
            vec![
                Signal {
                    origin: "synthesized 3341-6 (5 channels)".into(),
                    channels: 5,
                    rate: RATE,
                    samples: tone(&five, &[(0.0, 20.0)]),
                },
                Signal {
                    origin: "synthesized 3341-6 (6 channels, silent LFE)".into(),
                    channels: 6,
                    rate: RATE,
                    samples: tone(&six, &[(0.0, 20.0)]),
                },
            ]
        }
        // 1.34 s at −20 dBFS then 1.66 s at −30 dBFS, five times: every 3 s
        // window holds one period, (1.34·10^−2 + 1.66·10^−3) / 3 → −23.0.
        "3341-9" => vec![stereo(test, &[(-20.0, 1.34), (-30.0, 1.66)].repeat(5))],
        // 3 s tones from −38 to −19 dBFS, each followed by 3 s of silence.
        "3341-11" => vec![stereo(test, &ramp(3.0, 3.0))],
        // 0.4 s tones from −38 to −19 dBFS, each followed by 0.4 s silence.
        "3341-14" => vec![stereo(test, &ramp(0.4, 0.4))],
        // Tech 3342 table 1: 20 s steps.
        "3342-1" => vec![stereo(test, &[(-20.0, 20.0), (-30.0, 20.0)])],
        "3342-2" => vec![stereo(test, &[(-20.0, 20.0), (-15.0, 20.0)])],
        "3342-3" => vec![stereo(test, &[(-40.0, 20.0), (-20.0, 20.0)])],
        "3342-4" => vec![stereo(
            test,
            &[
                (-50.0, 20.0),
                (-35.0, 20.0),
                (-20.0, 20.0),
                (-35.0, 20.0),
                (-50.0, 20.0),
            ],
        )],
        // Tech 3341 §2.9 calibration: a 1 kHz sine at −18 dBFS reads −18.
        "cal-18" => vec![stereo(test, &[(-18.0, 20.0)])],
        _ => return None,
    })
}

/// `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len()).any(|i| glob(tail, &name[head.len() + i..]))
        }
    }
}

fn decode(reg: &Registry, path: &Path) -> Signal {
    let mut f = AudioFile::open(reg, path).unwrap_or_else(|e| panic!("{e}"));
    let samples = f.read_all().unwrap_or_else(|e| panic!("{e}"));
    Signal {
        origin: path.file_name().unwrap().to_string_lossy().into_owned(),
        channels: f.channels,
        rate: f.sample_rate,
        samples,
    }
}

#[test]
fn ebu_loudness_test_set() {
    let dir = PathBuf::from(REFS);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join("expected.json").display())),
    )
    .unwrap();
    let reg = Registry::global(&default_dirs());
    assert!(
        !reg.plugins.is_empty(),
        "no plugin loaded from {:?}: run `cargo build --release --workspace` first",
        default_dirs()
    );
    let mut flacs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".flac"))
        .collect();
    flacs.sort();
    let mut used = vec![false; flacs.len()];

    let (mut lines, mut failures, mut unavailable) = (Vec::new(), Vec::new(), Vec::new());
    let mut checked = 0;
    for entry in expected.as_array().expect("a list of tests") {
        let test = entry["test"].as_str().expect("test id");
        let mut signals = Vec::new();
        for pat in entry["files"].as_array().expect("files") {
            // The set lists WAV names; the folder holds the same as FLAC.
            let pat = pat.as_str().unwrap().replace(".wav", ".flac");
            for (i, name) in flacs.iter().enumerate() {
                if glob(&pat, name) {
                    used[i] = true;
                    signals.push(decode(reg, &dir.join(name)));
                }
            }
        }
        if signals.is_empty() {
            match synthesize(test) {
                Some(s) => signals = s,
                None => {
                    unavailable.push(format!(
                        "{test} ({})",
                        entry["note"].as_str().unwrap_or("no file, no definition")
                    ));
                    continue;
                }
            }
        }
        for sig in &signals {
            let trace = measure(sig);
            for (key, spec) in entry.as_object().unwrap() {
                if matches!(key.as_str(), "test" | "files" | "note" | "channel_order") {
                    continue;
                }
                let (line, ok) = check(key, spec, &trace);
                checked += 1;
                let line = format!(
                    "{} {test:<10} {:<42} {line}",
                    if ok { "pass" } else { "FAIL" },
                    sig.origin
                );
                if !ok {
                    failures.push(line.clone());
                }
                lines.push(line);
            }
        }
    }
    println!("{}", lines.join("\n"));
    println!(
        "\n{checked} checks, {} failed; not checkable here: {}",
        failures.len(),
        if unavailable.is_empty() {
            "none".to_owned()
        } else {
            unavailable.join(", ")
        }
    );
    let orphans: Vec<_> = flacs
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        orphans.is_empty(),
        "files with no expectation in expected.json: {orphans:?}"
    );
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}

/// `deliver loudness --json` on a set file prints the meter's values, and the
/// text form names each of them.
#[test]
fn cli_measures_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = deliver_tests::plugin_dir(tmp.path(), &[]);
    let file = PathBuf::from(REFS).join("seq-3341-1-16bit.flac");
    let run = |json: bool| {
        let mut c = deliver_tests::deliver(&plugins);
        c.arg("loudness").arg(&file);
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let v: Value = serde_json::from_str(&run(true)).unwrap();
    // Tech 3341 test 1: I, max M and max S all −23.0 ± 0.1.
    for key in [
        "integrated_lufs",
        "max_momentary_lufs",
        "max_short_term_lufs",
    ] {
        let x = v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"));
        assert!((x + 23.0).abs() <= 0.1, "{key} = {x}");
    }
    assert_eq!(v["channels"], 2);
    assert_eq!(v["sample_rate"], 48000);
    assert_eq!(v["true_peak_per_channel_dbtp"].as_array().unwrap().len(), 2);
    assert!((v["duration_s"].as_f64().unwrap() - 20.0).abs() < 0.01);
    assert!(v["lra_lu"].as_f64().is_some() && v["true_peak_dbtp"].as_f64().is_some());
    let text = run(false);
    for label in [
        "integrated",
        "loudness range",
        "true peak",
        "max momentary",
        "max short-term",
    ] {
        assert!(text.contains(label), "{label} missing from:\n{text}");
    }
}
