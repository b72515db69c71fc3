//! AV1 from the rav1e plugin, muxed by the ffmpeg plugin: each rav1e preset
//! of the repository delivers a 2 s composition that FFmpeg's own tools
//! (ffprobe, and a full decode with `ffmpeg -v error`) accept as what the
//! preset promises, whole or encoded in segments; and `deliver plugins`
//! lists the plugin beside ffmpeg.
//!
//! The presets are not built into the host, so they are loaded from the
//! repository's `presets/` with `--presets`. The canvas is 320×180 and the
//! speed 10 (an override), to keep the encodes to seconds.

use deliver_tests::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_presets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../presets")
}

/// Renders the pattern composition (2 s at 25 fps) with `preset`; returns
/// the delivered file and the report.
fn deliver_with(tmp: &Path, preset: &str, ext: &str) -> (PathBuf, Value) {
    let plugins = plugin_dir_with_rav1e(tmp);
    let manifest = pattern_manifest("av1", 320, 180, "2s", preset).replace(
        "overrides = { video = { width = 320, height = 180 } }",
        "overrides = { video = { width = 320, height = 180, options = { speed = 10 } } }",
    );
    assert!(manifest.contains("speed = 10"), "{manifest}");
    let path = write(tmp, "av1.toml", &manifest);
    let out = tmp.join("out");
    let presets = repo_presets();
    render(
        &plugins,
        &["--presets".as_ref(), presets.as_os_str()],
        &path,
        &out,
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    (out.join(format!("av1_web.{ext}")), report)
}

/// `ffmpeg -v error -i <file> -f null -`: what a full decode complains about.
fn decode_errors(file: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg could not decode {}",
        file.display()
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What both presets promise, checked on the file by ffprobe.
fn check_av1_video(probe: &Value) {
    let v = stream(probe, "video");
    assert_eq!(v["codec_name"], "av1", "{v:#}");
    assert_eq!(v["profile"], "Main");
    assert_eq!(v["pix_fmt"], "yuv420p");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(180))
    );
    // 2 s at 25 fps.
    assert_eq!(v["nb_read_frames"], "50");
    assert_eq!(v["r_frame_rate"], "25/1");
    assert_eq!(v["color_primaries"], "bt709");
    assert_eq!(v["color_transfer"], "bt709");
    assert_eq!(v["color_space"], "bt709");
    assert_eq!(v["color_range"], "tv");
}

/// The report's verdict and the encoder it names.
fn check_report(report: &Value) {
    let d = &report["deliverables"][0];
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(d["verdict"], "pass", "{d:#}");
    let enc = d["video_encoder"].as_str().unwrap();
    assert!(enc.starts_with("rav1e (rav1e "), "{enc}");
    let failed: Vec<&Value> = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["pass"] == false)
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn av1_in_mp4_with_aac() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, report) = deliver_with(tmp.path(), "web/av1-1080p-rav1e", "mp4");
    check_report(&report);
    let probe = ffprobe(&file);
    check_av1_video(&probe);
    let format = probe["format"]["format_name"].as_str().unwrap();
    assert!(format.contains("mp4"), "{format}");
    let a = stream(&probe, "audio");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["sample_rate"], "48000");
    assert_eq!(a["channels"], 2);
    let errors = decode_errors(&file);
    assert!(errors.is_empty(), "ffmpeg: {errors}");
}

#[test]
fn av1_in_webm_with_opus() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, report) = deliver_with(tmp.path(), "web/av1-1080p-rav1e-webm", "webm");
    check_report(&report);
    let probe = ffprobe(&file);
    check_av1_video(&probe);
    let format = probe["format"]["format_name"].as_str().unwrap();
    assert!(format.contains("matroska,webm"), "{format}");
    // The EBML header's DocType, in the first bytes of the file.
    let head = std::fs::read(&file).unwrap();
    assert!(
        head[..head.len().min(64)].windows(4).any(|w| w == b"webm"),
        "DocType is not webm"
    );
    let a = stream(&probe, "audio");
    assert_eq!(a["codec_name"], "opus");
    assert_eq!(a["sample_rate"], "48000");
    assert_eq!(a["channels"], 2);
    let errors = decode_errors(&file);
    assert!(errors.is_empty(), "ffmpeg: {errors}");
}

/// Segmented encoding (a watch root with `--segment-seconds`): each segment
/// gets a fresh rav1e encoder, whose stream headers must equal the first
/// one's for the segments to be stitched into one valid file.
#[test]
fn segments_of_rav1e_stitch_into_one_valid_file() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir_with_rav1e(tmp.path());
    let presets = repo_presets();
    let root = tmp.path().join("root");
    let mut host = Host::start(
        &root,
        &plugins,
        &[
            "--segment-seconds",
            "1",
            "--presets",
            presets.to_str().unwrap(),
        ],
    );
    let manifest = pattern_manifest("seg", 320, 180, "3s", "web/av1-1080p-rav1e").replace(
        "overrides = { video = { width = 320, height = 180 } }",
        "overrides = { video = { width = 320, height = 180, options = { speed = 10 } } }",
    );
    host.drop_file("seg.toml", manifest.as_bytes());
    let (folder, state, report) = host.wait_job("seg", std::time::Duration::from_secs(120));
    assert_eq!(state, "done", "{report:#}");
    check_report(&report);
    assert!(
        host.log().contains("encoding in 3 segments"),
        "{}",
        host.log()
    );
    let file = folder.join("seg_web.mp4");
    let v = ffprobe(&file);
    assert_eq!(stream(&v, "video")["nb_read_frames"], "75");
    let errors = decode_errors(&file);
    assert!(errors.is_empty(), "ffmpeg: {errors}");
}

#[test]
fn deliver_plugins_lists_rav1e_beside_ffmpeg() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir_with_rav1e(tmp.path());
    let out = deliver(&plugins).arg("plugins").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\nffmpeg "), "{text}");
    assert!(text.contains("\nrav1e "), "{text}");
    assert!(text.contains("libdeliver_plugin_rav1e.so"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("encode") && l.contains(" av1 ") && l.contains("rav1e"))
        .unwrap_or_else(|| panic!("no av1 encode line for rav1e in:\n{text}"));
    assert!(line.contains("pix_fmts: yuv420p,yuv420p10le"), "{line}");
    assert!(line.contains("profiles: main"), "{line}");
    assert!(!text.contains("refused"), "{text}");
}

/// Which AV1 encoder a preset gets: the one its `encoder` field names, else
/// the best ranked. On a build where only rav1e offers AV1 both are rav1e;
/// where another plugin offers AV1 too (an FFmpeg build with libsvtav1),
/// `encoder = "rav1e"` still gets rav1e, and without it the higher rank wins.
#[test]
fn the_encoder_field_picks_rav1e_else_the_rank_decides() {
    use deliver_plugin_api::abi::cap;
    let tmp = tempfile::tempdir().unwrap();
    let reg = deliver::plugins::Registry::load(&[plugin_dir_with_rav1e(tmp.path())]);
    assert!(reg.refused.is_empty(), "{:?}", reg.refused);
    let named = reg.find(cap::ENCODE, "av1", Some("rav1e")).unwrap();
    assert_eq!(named.plugin.name(), "rav1e");
    assert_eq!(named.capability.implementation, "rav1e");
    let av1: Vec<_> = reg
        .plugins
        .iter()
        .flat_map(|l| l.capabilities.iter())
        .filter(|c| c.kind == cap::ENCODE && c.name == "av1")
        .collect();
    let top = av1.iter().map(|c| c.rank).max().unwrap();
    let best = reg.find(cap::ENCODE, "av1", None).unwrap();
    assert_eq!(best.capability.rank, top);
    if av1.len() == 1 {
        assert_eq!(best.capability.implementation, "rav1e");
    }
    // The presets name it, so they never depend on the ranks.
    let lib = deliver::preset::PresetLibrary::load(&[repo_presets()]).unwrap();
    for id in ["web/av1-1080p-rav1e", "web/av1-1080p-rav1e-webm"] {
        let p = lib.resolve(id, &Default::default()).unwrap();
        assert_eq!(p.video.encoder.as_deref(), Some("rav1e"), "{id}");
    }
}

/// The default plugin search (next to the `deliver` binary, where the
/// workspace build puts every plugin) finds rav1e with no `--plugin-dir`.
#[test]
fn the_default_search_finds_rav1e_next_to_the_binary() {
    let out = Command::new(deliver_bin())
        .arg("plugins")
        .env_remove("DELIVER_PLUGIN_PATH")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\nrav1e "), "{text}");
    assert!(text.contains("\nffmpeg "), "{text}");
}
