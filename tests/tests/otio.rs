//! OpenTimelineIO timelines written by the `opentimelineio` package itself
//! (`tests/otio/*.py`, run in the venv `scripts/setup.sh` makes), rendered by
//! `deliver render`, and checked frame by frame against the decoded sources.
//!
//! Every source frame carries its frame number as eight black/white stripes
//! over the top two thirds (bit i is the stripe at x = 40·i), and its clip's
//! colour below. Two neighbouring frames differ at least in stripe 0: a mean
//! absolute difference (over R, G, B of the whole 320×180 frame) of
//! 255 · (40·120)/(320·180) = 21.25. An output frame is taken to show a
//! source frame when it is within half that, 10.6, and closer to it than to
//! the frames either side; H.264 at CRF 12 measures about 1 here.

use deliver_tests::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const W: usize = 320;
const H: usize = 180;
const FRAME: usize = W * H * 3;
/// Half the difference between two neighbouring source frames (see above).
const SAME_FRAME: f64 = 255.0 * (40.0 * 120.0) / (W * H) as f64 / 2.0;

/// The venv's Python with `opentimelineio` (made by `scripts/setup.sh`).
fn otio_python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/otio-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh (it installs opentimelineio into target/otio-venv)",
        p.display()
    );
    p
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("otio")
        .join(name)
}

/// A frame-coded source: `frames` frames at `rate`, the clip's colour `id`.
fn coded_source(out: &Path, rate: &str, frames: u32, id: [u8; 3]) {
    let stripes = "if(bitand(N\\,pow(2\\,floor(X/40)))\\,255\\,0)";
    let ch = |c: u8| format!("'if(lt(Y\\,120)\\,{stripes}\\,{c})'");
    let graph = format!(
        "color=c=black:s={W}x{H}:r={rate},format=gbrp,geq=r={}:g={}:b={},format=rgb24",
        ch(id[0]),
        ch(id[1]),
        ch(id[2])
    );
    let frames = frames.to_string();
    let out = out.to_str().unwrap();
    if out.ends_with(".png") {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &graph,
            "-frames:v",
            &frames,
            "-start_number",
            "1001",
            out,
        ]);
    } else {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &graph,
            "-frames:v",
            &frames,
            "-c:v",
            "png",
            out,
        ]);
    }
}

/// Every frame of `path` as RGB24, decoding YCbCr as BT.709 limited range
/// (what the deliverables are tagged with).
fn decode(path: &Path) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args([
            "-vf",
            "scale=in_color_matrix=bt709:in_range=tv,format=rgb24",
            "-f",
            "rawvideo",
            "-",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "decoding {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len() % FRAME, 0);
    out.stdout.chunks(FRAME).map(<[u8]>::to_vec).collect()
}

fn mad(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as i32 - y as i32).unsigned_abs() as u64)
        .sum::<u64>() as f64
        / a.len() as f64
}

fn flat(c: [u8; 3]) -> Vec<u8> {
    c.iter().copied().cycle().take(FRAME).collect()
}

/// A dissolve at `t`: the mix is made in linear light (the compositor's
/// rule), so it is taken through the BT.709 transfer of the canvas.
fn mix(a: &[u8], b: &[u8], t: f64) -> Vec<u8> {
    let to_linear = |v: u8| {
        let v = v as f64 / 255.0;
        if v < 0.081 {
            v / 4.5
        } else {
            ((v + 0.099) / 1.099).powf(1.0 / 0.45)
        }
    };
    let to_code = |l: f64| {
        let v = if l < 0.018 {
            4.5 * l
        } else {
            1.099 * l.powf(0.45) - 0.099
        };
        (v * 255.0).round().clamp(0.0, 255.0) as u8
    };
    a.iter()
        .zip(b)
        .map(|(&x, &y)| to_code(to_linear(x) * (1.0 - t) + to_linear(y) * t))
        .collect()
}

/// Source frame shown at source time `t` seconds of a `num/den` fps file.
fn frame_at(t: f64, num: f64, den: f64) -> usize {
    (t * num / den + 1e-6).floor() as usize
}

struct Sources {
    a: Vec<Vec<u8>>,
    b: Vec<Vec<u8>>,
    c: Vec<Vec<u8>>,
    seq: Vec<Vec<u8>>,
}

/// What canvas frame `n` of the timeline of `cut.py` must show, worked out
/// from OTIO's rules by hand (see the comments), plus the frames it must
/// be told apart from.
fn expected(s: &Sources, n: usize) -> (String, Vec<u8>, Vec<Vec<u8>>) {
    let around = |v: &Vec<Vec<u8>>, i: usize| -> Vec<Vec<u8>> {
        [i.wrapping_sub(1), i + 1]
            .iter()
            .filter_map(|&j| v.get(j).cloned())
            .collect()
    };
    let at = |name: &str, v: &Vec<Vec<u8>>, i: usize| {
        (format!("{name}[{i}]"), v[i].clone(), around(v, i))
    };
    let n_f = n as f64;
    match n {
        // a: source 10.. from the start; the cut to b is at 30, and b comes
        // in 5 frames before it (in_offset).
        0..=24 => at("a", &s.a, 10 + n),
        // The dissolve: 5 + 6 = 11 frames from 25, a (running 6 frames past
        // the cut) under b (whose source starts 5/25 s earlier: 0.8 s).
        25..=35 => {
            let ia = 10 + n;
            let ib = frame_at(0.8 + (n_f - 25.0) / 25.0, 30.0, 1.0);
            // Frame-centred: frame k of 11 shows b at (k + 0.5) / 11; the
            // middle one (n = 30) is the mean of both in linear light.
            let t = (n_f - 25.0 + 0.5) / 11.0;
            (
                format!("a[{ia}] × b[{ib}] at {t:.3}"),
                mix(&s.a[ia], &s.b[ib], t),
                vec![s.a[ia].clone(), s.b[ib].clone()],
            )
        }
        // b at 30 fps; its 1.5 s end at 30 + 37.5 = 67.5 rounds to 68.
        36..=67 => at("b", &s.b, frame_at(0.8 + (n_f - 25.0) / 25.0, 30.0, 1.0)),
        // The gap: background (#404040).
        68..=77 => ("background".into(), flat([0x40; 3]), vec![s.a[0].clone()]),
        // c (24000/1001) starts at 77.5 → 78, shown from 12 frames in
        // (0.5005 s) plus the half frame its start was rounded by (0.02 s).
        78..=102 => at(
            "c",
            &s.c,
            frame_at(0.5005 + 0.02 + (n_f - 78.0) / 25.0, 24000.0, 1001.0),
        ),
        // The nested stack: its frames 5..25 of a clip of a from 50; starts at
        // 102.525 → 103.
        103..=122 => at("a (nested)", &s.a, 55 + (n - 103)),
        // The generator.
        123..=132 => (
            "orange".into(),
            flat([0xff, 0x80, 0x00]),
            vec![flat([0x40; 3])],
        ),
        // The image sequence from its third image (f.1003.png).
        133..=142 => at("seq", &s.seq, 2 + (n - 133)),
        // Twice as fast: every other frame of a from 0.
        143..=152 => at("a (×2)", &s.a, 2 * (n - 143)),
        // A freeze frame of a's frame 60.
        153..=157 => (
            "a[60] held".into(),
            s.a[60].clone(),
            vec![s.a[59].clone(), s.a[61].clone()],
        ),
        _ => panic!("frame {n} is past the timeline"),
    }
}

fn make_media(dir: &Path) {
    coded_source(&dir.join("a.mov"), "25", 100, [200, 60, 60]);
    coded_source(&dir.join("b.mov"), "30", 90, [60, 200, 60]);
    coded_source(&dir.join("c.mov"), "24000/1001", 72, [60, 60, 200]);
    std::fs::create_dir_all(dir.join("seq")).unwrap();
    coded_source(&dir.join("seq/f.%04d.png"), "25", 20, [200, 200, 60]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=48000:duration=8",
        "-c:a",
        "pcm_s16le",
        dir.join("tone.wav").to_str().unwrap(),
    ]);
}

/// Writes `cut.otio` with `cut.py` into `at`, for media in `media`.
fn write_cut_at(at: &Path, media: &Path, absolute: bool) -> PathBuf {
    let otio = at.join("cut.otio");
    let out = Command::new(otio_python())
        .arg(script("cut.py"))
        .arg(&otio)
        .arg(media)
        .args(absolute.then_some("--absolute"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cut.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    otio
}

fn write_cut(dir: &Path) -> PathBuf {
    write_cut_at(dir, dir, false)
}

#[test]
fn an_otio_cut_renders_frame_accurately() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_media(dir);
    let otio = write_cut(dir);
    let plugins = plugin_dir(dir, &[]);
    let out = dir.join("out");
    render(&plugins, &[], &otio, &out);

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let warnings = report["warnings"]
        .as_array()
        .expect("warnings in the report");
    let text = format!("{warnings:?}");
    assert!(text.contains("check grade"), "{text}");
    assert!(text.contains("global_start_time"), "{text}");
    let d = &report["deliverables"][0];
    let file = out.join(Path::new(d["file"].as_str().unwrap()).file_name().unwrap());
    let probe = ffprobe(&file);
    let v = stream(&probe, "video");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(180))
    );
    assert_eq!(v["r_frame_rate"], "25/1");

    let s = Sources {
        a: decode(&dir.join("a.mov")),
        b: decode(&dir.join("b.mov")),
        c: decode(&dir.join("c.mov")),
        seq: (1001..1021)
            .map(|i| decode(&dir.join(format!("seq/f.{i}.png"))).remove(0))
            .collect(),
    };
    let got = decode(&file);
    // 157.525 frames of timeline → 158.
    assert_eq!(got.len(), 158);
    let mut worst = 0.0f64;
    let mut failures = Vec::new();
    for (n, frame) in got.iter().enumerate() {
        let (what, want, others) = expected(&s, n);
        let d = mad(frame, &want);
        worst = worst.max(d);
        let closest_other = others
            .iter()
            .map(|o| mad(frame, o))
            .fold(f64::INFINITY, f64::min);
        if d >= SAME_FRAME || d >= closest_other {
            failures.push(format!(
                "frame {n}: expected {what}: difference {d:.2} (limit {SAME_FRAME:.2}), nearest other candidate {closest_other:.2}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("largest difference from the expected frame: {worst:.2} (limit {SAME_FRAME:.2})");

    // The dissolve's middle frame (30) is the mean of both sides, measured
    // directly as well: closer to the mean than to either side by far.
    let (ia, ib) = (40, frame_at(1.0, 30.0, 1.0));
    let mean = mix(&s.a[ia], &s.b[ib], 0.5);
    let to_mean = mad(&got[30], &mean);
    assert!(
        to_mean < SAME_FRAME,
        "dissolve midpoint is {to_mean:.2} from the mean"
    );
    assert!(mad(&got[30], &s.a[ia]) > 2.0 * to_mean.max(1.0));
    assert!(mad(&got[30], &s.b[ib]) > 2.0 * to_mean.max(1.0));
}

#[test]
fn bad_timelines_name_the_schema_and_the_media() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_media(dir);
    let otio = write_cut(dir);
    let plugins = plugin_dir(dir, &[]);
    let good: Value = serde_json::from_str(&std::fs::read_to_string(&otio).unwrap()).unwrap();
    let check = |name: &str, t: &Value| -> String {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_string_pretty(t).unwrap()).unwrap();
        let o = deliver(&plugins).arg("check").arg(&p).output().unwrap();
        assert!(!o.status.success(), "{name} was accepted");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };

    let mut t = good.clone();
    t["tracks"]["children"][0]["children"][3]["OTIO_SCHEMA"] = "FancyWipe.1".into();
    let err = check("schema.otio", &t);
    assert!(err.contains("schema \"FancyWipe.1\""), "{err}");
    assert!(err.contains("tracks.children[0].children[3]"), "{err}");
    assert!(err.contains("schema.otio"), "{err}");

    let mut t = good.clone();
    t["tracks"]["children"][0]["children"][2]["media_references"]["DEFAULT_MEDIA"]["target_url"] =
        "gone.mov".into();
    let err = check("missing.otio", &t);
    assert!(
        err.contains("\"gone.mov\" names a file that does not exist"),
        "{err}"
    );
    assert!(err.contains("clip \"b\""), "{err}");

    let bad = dir.join("syntax.otio");
    std::fs::write(
        &bad,
        "{\n  \"OTIO_SCHEMA\": \"Timeline.1\",\n  \"tracks\": {,}\n}\n",
    )
    .unwrap();
    let o = deliver(&plugins).arg("check").arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("syntax.otio:3:14"), "{err}");

    // The good one passes the same check.
    let o = deliver(&plugins).arg("check").arg(&otio).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("320x180 @ 25/1 fps, 158 frames"));

    // Without a canvas size, the first video clip's (read by the plugin) is used.
    let mut t = good.clone();
    let canvas = t["metadata"]["deliver"]["canvas"].as_object_mut().unwrap();
    canvas.remove("width");
    canvas.remove("height");
    let p = dir.join("probed.otio");
    std::fs::write(&p, serde_json::to_string_pretty(&t).unwrap()).unwrap();
    let o = deliver(&plugins).arg("check").arg(&p).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("320x180 @ 25/1 fps, 158 frames"), "{out}");
}

#[test]
fn a_watch_host_takes_otio_timelines() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let media = root.join("media");
    std::fs::create_dir_all(&media).unwrap();
    make_media(&media);
    // Written outside the root, then dropped in: URLs are absolute, inside
    // the root (a watch root's default media root).
    let otio = write_cut_at(tmp.path(), &media, true);
    let plugins = plugin_dir(tmp.path(), &[]);
    let mut host = Host::start(&root, &plugins, &[]);
    host.drop_file("cut.otio", &std::fs::read(&otio).unwrap());
    let (job, state, report) = host.wait_job("cut", std::time::Duration::from_secs(240));
    assert_eq!(state, "done", "{report:#}");
    assert!(
        format!("{}", report["warnings"]).contains("check grade"),
        "{report:#}"
    );
    let d = &report["deliverables"][0];
    let file = job.join(Path::new(d["file"].as_str().unwrap()).file_name().unwrap());
    assert_eq!(decode(&file).len(), 158);
}
