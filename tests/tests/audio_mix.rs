//! The audio mix end to end through `deliver render`: fades, pan and
//! balance, 5.1 channel order (PCM in MOV and MXF, AAC in MP4), the BS.775
//! downmix, sample-rate conversion of 44.1 and 96 kHz sources, and audio
//! landing on the sample of its video frame. Every number is measured on
//! the delivered file, decoded by the ffmpeg CLI to 32-bit float.
//!
//! Delivered audio is loudness-normalized by one linear gain (the report's
//! `normalization.gain_db`); levels are checked as the source level plus
//! that gain. Tolerances: ±0.1 dB for levels through 24-bit PCM (the
//! issue's bound; the mix itself is exact to 1e-6), which a wrong pan law
//! (3 dB), a missing fade sample or a misplaced fade (0.5 dB at these
//! points for a 10 ms shift) all exceed.

use deliver_tests::*;
use serde_json::Value;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::Command;

const RATE: usize = 48_000;

const VIDEO: &str = r#"
[video]
codec = "h264"
profile = "high"
pix_fmt = "yuv420p"
width = 320
height = 180
[video.options]
crf = 28
preset = "veryfast"
[loudness]
profile = "ebu-r128"
[qc]
min_psnr_y = 25.0
min_ssim_y = 0.8
max_duration_error_s = 0.05
"#;

/// Test presets: 24-bit PCM in MOV (stereo and 5.1) and AAC 5.1 in MP4.
fn presets(dir: &Path) -> PathBuf {
    let pcm = |ch: u32| {
        format!(
            "description = \"PCM {ch} ch in MOV\"\ncontainer = \"mov\"\n\
             [audio]\ncodec = \"pcm_s24le\"\nsample_rate = 48000\nchannels = {ch}\n{VIDEO}"
        )
    };
    let aac51 = format!(
        "description = \"AAC 5.1 in MP4\"\ncontainer = \"mp4\"\n\
         [audio]\ncodec = \"aac\"\nsample_rate = 48000\nchannels = 6\nbit_rate = 384000\n{VIDEO}"
    );
    // FFmpeg 5.1's MXF muxer writes no temporal offsets for H.264: no
    // B-frames (as in loudness_roundtrip).
    let mxf51 = format!(
        "description = \"PCM 5.1 in MXF\"\ncontainer = \"mxf\"\n\
         [audio]\ncodec = \"pcm_s24le\"\nsample_rate = 48000\nchannels = 6\n{}",
        VIDEO.replace(
            "preset = \"veryfast\"",
            "preset = \"veryfast\"\nbframes = 0"
        )
    );
    presets_dir(
        dir,
        &[
            ("t/pcm2.toml", &pcm(2)),
            ("t/pcm6.toml", &pcm(6)),
            ("t/aac6.toml", &aac51),
            ("t/mxf6.toml", &mxf51),
        ],
    )
}

/// A 4 s, 160×90, 25 fps composition: `canvas` lines, then the rest.
fn manifest(canvas: &str, rest: &str) -> String {
    format!(
        "version = 1\n[canvas]\nwidth = 320\nheight = 180\nframe_rate = \"25\"\nduration = \"4s\"\n\
         colour_space = \"bt709\"\n{canvas}\n{rest}\n"
    )
}

const PATTERN: &str = "[[video]]\n[[video.clip]]\ngenerator = \"pattern\"\n";

/// Renders `text` (a manifest) in `dir`; returns the output folder and its
/// report.
fn run(dir: &Path, name: &str, text: &str) -> (PathBuf, Value) {
    let plugins = plugin_dir(dir, &[]);
    let presets = presets(dir);
    let m = write(dir, &format!("{name}.toml"), text);
    let out = dir.join(format!("out-{name}"));
    render(
        &plugins,
        &["--presets".as_ref(), presets.as_os_str()],
        &m,
        &out,
    );
    let report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    (out, report)
}

/// The linear gain the host applied to deliverable `name`, dB.
fn gain_db(report: &Value, name: &str) -> f64 {
    let d = report["deliverables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no deliverable {name} in {report}"));
    let n = &d["loudness"]["normalization"];
    assert_eq!(n["mode"], "linear", "{name}: {n}");
    n["gain_db"].as_f64().unwrap()
}

/// A file's first audio stream as 32-bit float, de-interleaved, with its
/// ffprobe description.
fn decode(path: &Path) -> (Vec<Vec<f64>>, Value) {
    let probe = ffprobe(path);
    let a = stream(&probe, "audio").clone();
    let ch = a["channels"].as_u64().unwrap() as usize;
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:a:0", "-f", "f32le", "-c:a", "pcm_f32le", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<f32> = out
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let chans = (0..ch)
        .map(|c| {
            samples
                .iter()
                .skip(c)
                .step_by(ch)
                .map(|&v| v as f64)
                .collect()
        })
        .collect();
    (chans, a)
}

fn db(x: f64) -> f64 {
    20.0 * x.log10()
}

/// RMS level in dB of `x[from..to]` (samples).
fn rms_db(x: &[f64], from: usize, to: usize) -> f64 {
    let s = &x[from..to];
    db((s.iter().map(|v| v * v).sum::<f64>() / s.len() as f64).sqrt())
}

/// Peak amplitude in dB of the component at `f` Hz over `x[from..from+n]`
/// (rectangular window: exact when `n` holds whole periods of every tone).
fn tone_db(x: &[f64], from: usize, n: usize, f: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (i, v) in x[from..from + n].iter().enumerate() {
        let ph = 2.0 * PI * f * i as f64 / RATE as f64;
        re += v * ph.cos();
        im -= v * ph.sin();
    }
    db(2.0 * (re * re + im * im).sqrt() / n as f64)
}

/// −20 dBFS peak sine as RMS: −20 − 3.0103.
const SINE_RMS_DB: f64 = -20.0 - 3.0103;

#[test]
fn fades_are_linear_and_sample_accurate() {
    let tmp = tempfile::tempdir().unwrap();
    let text = manifest(
        "",
        &format!(
            "{PATTERN}[[audio]]\n[[audio.clip]]\ngenerator = \"sine\"\nfrequency = 1000.0\n\
             level = -20.0\nfade_in = \"1s\"\nfade_out = \"25f\"\n\
             [[deliverable]]\npreset = \"t/pcm2\"\nname = \"pcm\"\n"
        ),
    );
    let (out, report) = run(tmp.path(), "fades", &text);
    let g = gain_db(&report, "pcm");
    let (ch, a) = decode(&out.join("fades_pcm.mov"));
    assert_eq!(a["sample_rate"], "48000");
    assert_eq!(ch.len(), 2);
    let (l, r) = (&ch[0], &ch[1]);
    assert_eq!(l.len(), 4 * RATE, "4 s of audio");
    // The sine generator carries the same tone in L and R.
    assert!(l.iter().zip(r).all(|(a, b)| a == b));

    let full = SINE_RMS_DB + g;
    // 20 ms windows (20 periods) centred on a point of the fade.
    let at = |t: f64| {
        let c = (t * RATE as f64) as usize;
        rms_db(l, c - 480, c + 480)
    };
    let steady = rms_db(l, RATE * 3 / 2, RATE * 5 / 2);
    eprintln!("steady {steady:.3} dB RMS with gain {g:.3} dB (expected {full:.3})");
    assert!((steady - full).abs() < 0.1, "steady {steady} vs {full}");
    // Silence at the first sample and the last.
    assert_eq!(l[0], 0.0);
    assert!(
        l[l.len() - 1].abs() < 1e-6,
        "last sample {}",
        l[l.len() - 1]
    );
    assert!(rms_db(l, 0, 48) < full - 60.0, "first ms");
    for (t, frac) in [(0.25, 0.25), (0.5, 0.5), (0.75, 0.75)] {
        let got = at(t) - full;
        let want = db(frac);
        eprintln!("fade-in at {t} s: {got:.3} dB (expected {want:.3})");
        assert!(
            (got - want).abs() < 0.1,
            "fade-in at {t} s: {got} dB, not {want}"
        );
    }
    // Fade-out over the last second (25 frames), to silence at the last
    // sample: half way 0.5 s before the end.
    for (t, frac) in [(3.25, 0.75), (3.5, 0.5), (3.75, 0.25)] {
        let got = at(t) - full;
        let want = db(frac);
        eprintln!("fade-out at {t} s: {got:.3} dB (expected {want:.3})");
        assert!(
            (got - want).abs() < 0.1,
            "fade-out at {t} s: {got} dB, not {want}"
        );
    }
}

#[test]
fn pan_and_balance() {
    let tmp = tempfile::tempdir().unwrap();
    // A mono 440 Hz source at -20 dBFS, panned to the centre: -3 dB each
    // side; the sine generator (a stereo source) balanced hard left: R off.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "aevalsrc=0.1*sin(2*PI*440*t):s=48000:d=4:c=mono",
        "-c:a",
        "pcm_s24le",
        tmp.path().join("mono440.wav").to_str().unwrap(),
    ]);
    let text = manifest(
        "",
        &format!(
            "{PATTERN}[[audio]]\n[[audio.clip]]\ngenerator = \"sine\"\nfrequency = 1000.0\n\
             level = -20.0\npan = -1.0\n\
             [[audio]]\n[[audio.clip]]\nmedia = \"mono440.wav\"\nduration = \"4s\"\npan = 0.0\n\
             [[deliverable]]\npreset = \"t/pcm2\"\nname = \"pcm\"\n"
        ),
    );
    let (out, report) = run(tmp.path(), "pan", &text);
    let g = gain_db(&report, "pcm");
    let (ch, _) = decode(&out.join("pan_pcm.mov"));
    let (l, r) = (&ch[0], &ch[1]);
    // One second from 1 s: whole periods of 440 and 1000 Hz.
    let m = |x: &[f64], f| tone_db(x, RATE, RATE, f) - g;
    let (l1k, r1k, l440, r440) = (m(l, 1000.0), m(r, 1000.0), m(l, 440.0), m(r, 440.0));
    eprintln!(
        "1 kHz: L {l1k:.3} R {r1k:.1} dBFS; 440 Hz: L {l440:.3} R {r440:.3} dBFS (gain removed)"
    );
    assert!((l1k + 20.0).abs() < 0.1, "hard-left tone in L: {l1k}");
    assert!(r1k < -90.0, "hard-left tone in R: {r1k}");
    // Constant power: -3.01 dB each side at the centre.
    for v in [l440, r440] {
        assert!((v + 20.0 + 3.0103).abs() < 0.1, "centred mono: {v}");
    }
}

/// The frequency of each 5.1 channel (L R C LFE Ls Rs) in the test source.
const FREQS: [f64; 6] = [300.0, 500.0, 700.0, 80.0, 1100.0, 1300.0];

fn five_one_source(dir: &Path) -> PathBuf {
    let expr: Vec<String> = FREQS
        .iter()
        .map(|f| format!("0.1*sin(2*PI*{f}*t)"))
        .collect();
    let p = dir.join("six.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("aevalsrc={}:s=48000:d=4:c=5.1", expr.join("|")),
        "-c:a",
        "pcm_s24le",
        p.to_str().unwrap(),
    ]);
    let probe = ffprobe(&p);
    assert_eq!(stream(&probe, "audio")["channel_layout"], "5.1");
    p
}

#[test]
fn five_one_keeps_its_channel_order_in_pcm_and_aac() {
    let tmp = tempfile::tempdir().unwrap();
    five_one_source(tmp.path());
    let text = manifest(
        "layout = \"5.1\"",
        &format!(
            "{PATTERN}[[audio]]\n[[audio.clip]]\nmedia = \"six.wav\"\nduration = \"4s\"\n\
             [[deliverable]]\npreset = \"t/pcm6\"\nname = \"pcm\"\n\
             [[deliverable]]\npreset = \"t/aac6\"\nname = \"aac\"\n\
             [[deliverable]]\npreset = \"t/mxf6\"\nname = \"mxf\"\n"
        ),
    );
    let (out, report) = run(tmp.path(), "six", &text);
    // BS.1770 weights for 5.1: surrounds +1.5 dB, LFE excluded.
    let d0 = &report["deliverables"][0]["loudness"]["programme"];
    assert_eq!(
        d0["channel_weights"],
        serde_json::json!([1.0, 1.0, 1.0, 0.0, 1.41, 1.41]),
        "{d0}"
    );
    for (name, file, floor) in [
        ("pcm", "six_pcm.mov", -90.0),
        // AAC at 64 kb/s a channel: crosstalk is coding noise, measured
        // 85 dB or more under the channel's own tone; -60 dB leaves room
        // for another encoder build while any channel swap (0 dB) fails.
        ("aac", "six_aac.mp4", -60.0),
        ("mxf", "six_mxf.mxf", -90.0),
    ] {
        let g = gain_db(&report, name);
        let (ch, a) = decode(&out.join(file));
        assert_eq!(a["channels"], 6, "{file}");
        // MXF carries no channel layout (ffprobe names none): its
        // channels are in the default order for six, 5.1's.
        let layout = a["channel_layout"].as_str().unwrap_or_default();
        if name == "mxf" {
            assert!(layout.is_empty() || layout == "unknown", "{file}: {layout}");
        } else {
            assert!(layout.starts_with("5.1"), "{file}: layout {layout}");
        }
        for (c, x) in ch.iter().enumerate() {
            let levels: Vec<f64> = FREQS
                .iter()
                .map(|&f| tone_db(x, RATE, RATE, f) - g)
                .collect();
            eprintln!("{file} channel {c}: {levels:.1?}");
            let own = levels[c];
            assert!(
                (own + 20.0).abs() < 0.2,
                "{file} channel {c}: own tone {own} dB"
            );
            for (k, &v) in levels.iter().enumerate() {
                if k != c {
                    assert!(
                        v < own + floor,
                        "{file} channel {c} carries channel {k}'s {} Hz at {v} dB",
                        FREQS[k]
                    );
                }
            }
        }
        // The report's probe of the delivered file saw the layout too.
        let d = report["deliverables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap();
        let checks = d["checks"].as_array().unwrap();
        let ids: &[&str] = if name == "mxf" {
            &["audio.channels"]
        } else {
            &["audio.channels", "audio.layout"]
        };
        for id in ids {
            let c = checks
                .iter()
                .find(|c| c["id"] == *id)
                .unwrap_or_else(|| panic!("{file}: no {id} check in {d}"));
            assert_eq!(c["pass"], true, "{c}");
        }
    }
}

#[test]
fn five_one_downmixes_to_stereo_by_bs775() {
    let tmp = tempfile::tempdir().unwrap();
    five_one_source(tmp.path());
    let text = manifest(
        "",
        &format!(
            "{PATTERN}[[audio]]\n[[audio.clip]]\nmedia = \"six.wav\"\nduration = \"4s\"\n\
             [[deliverable]]\npreset = \"t/pcm2\"\nname = \"pcm\"\n"
        ),
    );
    let (out, report) = run(tmp.path(), "down", &text);
    let g = gain_db(&report, "pcm");
    let (ch, _) = decode(&out.join("down_pcm.mov"));
    // L = L + 0.7071 C + 0.7071 Ls; R = R + 0.7071 C + 0.7071 Rs; no LFE.
    let want: [[Option<f64>; 6]; 2] = [
        [
            Some(-20.0),
            None,
            Some(-23.0103),
            None,
            Some(-23.0103),
            None,
        ],
        [
            None,
            Some(-20.0),
            Some(-23.0103),
            None,
            None,
            Some(-23.0103),
        ],
    ];
    for (c, x) in ch.iter().enumerate() {
        for (k, &f) in FREQS.iter().enumerate() {
            let v = tone_db(x, RATE, RATE, f) - g;
            match want[c][k] {
                Some(w) => assert!((v - w).abs() < 0.1, "out {c}, {f} Hz: {v} dB, not {w}"),
                None => assert!(v < -90.0, "out {c}, {f} Hz: {v} dB, not silent"),
            }
        }
    }
}

/// Frequency of a steady tone by interpolated positive zero crossings.
fn frequency(x: &[f64]) -> f64 {
    let mut z = Vec::new();
    for i in 1..x.len() {
        if x[i - 1] < 0.0 && x[i] >= 0.0 {
            z.push(i as f64 - 1.0 + x[i - 1] / (x[i - 1] - x[i]));
        }
    }
    (z.len() - 1) as f64 * RATE as f64 / (z[z.len() - 1] - z[0])
}

#[test]
fn sources_at_44k1_and_96k_land_at_48k_with_level_and_pitch() {
    let tmp = tempfile::tempdir().unwrap();
    for rate in [44_100, 96_000] {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("aevalsrc=0.1*sin(2*PI*1000*t):s={rate}:d=4:c=stereo"),
            "-c:a",
            "pcm_s24le",
            tmp.path().join(format!("tone{rate}.wav")).to_str().unwrap(),
        ]);
    }
    // One source on each side (balance), so that each is measured alone.
    let text = manifest(
        "",
        &format!(
            "{PATTERN}[[audio]]\n[[audio.clip]]\nmedia = \"tone44100.wav\"\nduration = \"4s\"\npan = -1.0\n\
             [[audio]]\n[[audio.clip]]\nmedia = \"tone96000.wav\"\nduration = \"4s\"\npan = 1.0\n\
             [[deliverable]]\npreset = \"t/pcm2\"\nname = \"pcm\"\n"
        ),
    );
    let (out, report) = run(tmp.path(), "src", &text);
    let g = gain_db(&report, "pcm");
    let (ch, a) = decode(&out.join("src_pcm.mov"));
    assert_eq!(a["sample_rate"], "48000");
    for (x, rate) in ch.iter().zip([44_100, 96_000]) {
        assert_eq!(x.len(), 4 * RATE);
        let mid = &x[RATE / 2..RATE * 7 / 2];
        let level = rms_db(mid, 0, mid.len()) - g;
        let f = frequency(mid);
        eprintln!("{rate} Hz source: {level:.4} dB RMS, {f:.5} Hz");
        assert!((level - SINE_RMS_DB).abs() < 0.05, "{rate}: {level} dB");
        assert!((f - 1000.0).abs() < 0.01, "{rate}: {f} Hz");
        // And in phase with the ideal tone at 48 kHz: a one-sample slip
        // would be an error of 0.013 of the amplitude.
        let amp = 0.1 * 10f64.powf(g / 20.0);
        let err = (RATE / 2..RATE * 7 / 2)
            .map(|i| (x[i] - amp * (2.0 * PI * 1000.0 * i as f64 / RATE as f64).sin()).abs())
            .fold(0.0, f64::max);
        assert!(err < 2e-3 * amp, "{rate}: off the ideal tone by {err}");
    }
}

#[test]
fn a_click_lands_on_the_sample_of_its_frame() {
    let tmp = tempfile::tempdir().unwrap();
    // A one-sample click at the first sample of a 44.1 kHz mono file.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "aevalsrc=if(eq(n\\,0)\\,0.05\\,0):s=44100:d=1:c=mono",
        "-c:a",
        "pcm_s24le",
        tmp.path().join("click.wav").to_str().unwrap(),
    ]);
    const N: u64 = 37;
    // A white frame at frame N over black, the click at frame N in L, and
    // a tone in R to give the programme a loudness.
    let text = manifest(
        "",
        &format!(
            "[[video]]\n[[video.clip]]\ngenerator = \"solid\"\ncolor = \"#ffffff\"\nstart = {N}\nduration = \"1f\"\n\
             [[audio]]\n[[audio.clip]]\nmedia = \"click.wav\"\nstart = {N}\nduration = \"1s\"\npan = -1.0\n\
             [[audio]]\n[[audio.clip]]\ngenerator = \"sine\"\nlevel = -20.0\npan = 1.0\n\
             [[deliverable]]\npreset = \"t/pcm2\"\nname = \"pcm\"\n"
        ),
    );
    let (out, _) = run(tmp.path(), "sync", &text);
    let file = out.join("sync_pcm.mov");
    let (ch, _) = decode(&file);
    let l = &ch[0];
    let peak = (0..l.len())
        .max_by(|&a, &b| l[a].abs().total_cmp(&l[b].abs()))
        .unwrap();
    assert_eq!(peak as u64, N * 48_000 / 25, "click at sample {peak}");
    // Nothing of the click before its frame (the resampler's pre-ringing
    // belongs to samples before the clip's in-point, which are not there).
    assert!(l[..peak - 1].iter().all(|v| v.abs() < 1e-4));
    // The picture: frame N is the white one.
    let luma = |n: u64| -> f64 {
        let o = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&file)
            .args([
                "-vf",
                &format!("select=eq(n\\,{n})"),
                "-frames:v",
                "1",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "gray",
                "-",
            ])
            .output()
            .unwrap();
        assert!(o.status.success() && !o.stdout.is_empty());
        o.stdout.iter().map(|&b| b as f64).sum::<f64>() / o.stdout.len() as f64
    };
    let (before, at, after) = (luma(N - 1), luma(N), luma(N + 1));
    eprintln!(
        "mean luma at frames {}, {N}, {}: {before:.1} {at:.1} {after:.1}",
        N - 1,
        N + 1
    );
    assert!(at > 200.0 && before < 40.0 && after < 40.0);
}
