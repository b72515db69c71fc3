//! Loudness normalization rules through the real pipeline: a linear gain
//! where it fits, a true-peak limiter only where the profile allows it, and a
//! clear failure where it does not.

use deliver_tests::*;
use std::time::Duration;

/// Clicks over a tone: a 0.2 ms click every half second at 0.9 and a tone
/// at -25 dBFS. Its crest factor (true peak minus loudness, ~25 dB) is more
/// than a -23 LUFS / -1 dBTP target allows (22 dB) in every 400 ms gating
/// block alike, so no linear gain meets both. (A sine burst cannot make such
/// a signal: gating measures the blocks that hold it.)
const CLICKS: &str =
    "aevalsrc='if(lt(mod(t\\,0.5)\\,0.0002)\\,0.9\\,0)+0.056*sin(2*PI*440*t)':s=48000:c=stereo:d=6";

const NEEDS_LIMITING: &str = r#"version = 1
[canvas]
width = 320
height = 240
frame_rate = "25"
duration = "6s"
colour_space = "bt709"
[[video]]
[[video.clip]]
generator = "pattern"
[[audio]]
[[audio.clip]]
media = "../media/clicks.wav"
duration = "6s"
[[deliverable]]
preset = "PRESET"
name = "out"
overrides = { video = { width = 320, height = 240 } }
"#;

#[test]
fn limiter_only_where_the_profile_allows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let base = builtin_preset("web/h264-720p");
    assert!(base.contains("tolerance_lu = 0.5"));
    // Strict: the built-in preset's rules (allow_limiter defaults to false).
    // Limited: the same, with the limiter allowed and 1 dB of headroom for
    // the peaks AAC adds.
    let limited = base.replace(
        "tolerance_lu = 0.5",
        "tolerance_lu = 0.5\nallow_limiter = true\nlimiter_headroom_db = 1.0",
    );
    let presets_arg = presets_dir(
        tmp.path(),
        &[("test/strict.toml", &base), ("test/limited.toml", &limited)],
    );
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("media")).unwrap();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        CLICKS,
        "-c:a",
        "pcm_s16le",
        root.join("media/clicks.wav").to_str().unwrap(),
    ]);
    let mut host = Host::start(
        &root,
        &plugins,
        &["--presets", presets_arg.to_str().unwrap()],
    );
    host.drop_file(
        "strict.toml",
        NEEDS_LIMITING.replace("PRESET", "test/strict").as_bytes(),
    );
    host.drop_file(
        "limited.toml",
        NEEDS_LIMITING.replace("PRESET", "test/limited").as_bytes(),
    );

    let (_, state, r) = host.wait_job("strict", Duration::from_secs(120));
    assert_eq!(state, "failed", "{r:#}");
    let d = &r["deliverables"][0];
    let why = d["error"].as_str().unwrap();
    assert!(why.contains("does not allow limiting"), "{why}");
    assert_eq!(d["loudness"]["normalization"]["mode"], "linear");
    assert!(d["loudness"]["normalization"]["refused"].is_string());

    let (dir, state, r) = host.wait_job("limited", Duration::from_secs(120));
    assert_eq!(state, "done", "{r:#}");
    let d = &r["deliverables"][0];
    let n = &d["loudness"]["normalization"];
    assert_eq!(n["mode"], "limiter", "{n}");
    assert!(
        n["limiter"]["max_reduction_db"].as_f64().unwrap() > 1.0,
        "{n}"
    );
    let mp4 = dir.join("limited_out.mp4");
    // Measured independently: the delivered true peak holds the -1 dBTP
    // ceiling (FFmpeg's meter, which the issue names as the judge), and the
    // loudness is within the preset's ±0.5 LU.
    let (i, tp) = ffmpeg_ebur128(&mp4);
    assert!(tp <= -1.0, "delivered true peak {tp} dBTP");
    assert!((i + 23.0).abs() <= 0.5, "delivered loudness {i} LUFS");
}

/// EBU R 128 s1 (short-form content) caps the short-term loudness at the
/// target plus 5 LU: a steady programme passes; one with a 3 s passage 12 LU
/// above the rest, which normalization puts at about -17 LUFS short-term,
/// fails that check and lands in failed/.
#[test]
fn short_form_profile_holds_the_short_term_maximum() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let base = builtin_preset("web/h264-720p");
    let start = base.find("[loudness]").unwrap();
    let end = base.find("[qc]").unwrap();
    let s1 = format!(
        "{}[loudness]\nprofile = \"ebu-r128-s1\"\n\n{}",
        &base[..start],
        &base[end..]
    );
    let presets_arg = presets_dir(tmp.path(), &[("test/s1.toml", &s1)]);
    let manifest = |clips: &str| {
        format!(
            r#"version = 1
[canvas]
width = 320
height = 240
frame_rate = "25"
duration = "15s"
colour_space = "bt709"
[[video]]
[[video.clip]]
generator = "pattern"
[[audio]]
{clips}
[[deliverable]]
preset = "test/s1"
name = "out"
overrides = {{ video = {{ width = 320, height = 240 }} }}
"#
        )
    };
    let steady = manifest("[[audio.clip]]\ngenerator = \"sine\"\nlevel = -20.0");
    let dynamic = manifest(
        "[[audio.clip]]\ngenerator = \"sine\"\nlevel = -24.0\nduration = \"12s\"\n\
         [[audio.clip]]\ngenerator = \"sine\"\nlevel = -12.0\nduration = \"3s\"",
    );
    let root = tmp.path().join("root");
    let mut host = Host::start(
        &root,
        &plugins,
        &["--presets", presets_arg.to_str().unwrap()],
    );
    host.drop_file("steady.toml", steady.as_bytes());
    host.drop_file("dynamic.toml", dynamic.as_bytes());
    let check = |r: &serde_json::Value| {
        r["deliverables"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "audio.max_short_term")
            .cloned()
            .unwrap_or_else(|| panic!("no short-term check in {r:#}"))
    };
    let (_, state, r) = host.wait_job("steady", Duration::from_secs(120));
    assert_eq!(state, "done", "{r:#}");
    assert_eq!(check(&r)["pass"], true);
    let (_, state, r) = host.wait_job("dynamic", Duration::from_secs(120));
    assert_eq!(state, "failed", "{r:#}");
    let c = check(&r);
    assert_eq!(c["pass"], false, "{c}");
    assert!(c["value"].as_f64().unwrap() > -18.0, "{c}");
}
