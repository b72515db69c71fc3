//! The gate: a deliverable with an error-level finding never reaches
//! `done/`. A preset with a starvation bitrate makes SSIM fall under the
//! preset's threshold; the job lands in `failed/<job>/` with its report and
//! the rejected file kept apart as `*.partial`, and the host goes on.

use deliver_tests::*;
use std::time::Duration;

#[test]
fn a_deliverable_under_its_quality_threshold_never_reaches_done() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let base = builtin_preset("web/h264-720p");
    assert!(base.contains("crf = 20"), "the base preset changed");
    // 12 kb/s for a moving 320x240 picture: x264 has to throw the detail away.
    let starved = base
        .replace("crf = 20\n", "")
        .replace("[video.options]", "bit_rate = 12000\n\n[video.options]");
    let presets = presets_dir(
        tmp.path(),
        &[("test/good.toml", &base), ("test/starved.toml", &starved)],
    );
    let root = tmp.path().join("root");
    let mut host = Host::start(&root, &plugins, &["--presets", presets.to_str().unwrap()]);
    let manifest =
        |name: &str, preset: &str| pattern_manifest(name, 320, 240, "3s", preset).into_bytes();
    host.drop_file("bad.toml", &manifest("bad", "test/starved"));
    host.drop_file("good.toml", &manifest("good", "test/good"));

    let (folder, state, report) = host.wait_job("bad", Duration::from_secs(180));
    assert_eq!(state, "failed", "report: {report:#}");
    assert_eq!(report["verdict"], "fail");
    let d = &report["deliverables"][0];
    assert_eq!(d["verdict"], "fail");
    let ssim = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "video.ssim_y")
        .expect("an SSIM check");
    assert_eq!(ssim["pass"], false, "{ssim}");
    assert_eq!(ssim["severity"], "error");
    assert!(ssim["value"].as_f64().unwrap() < 0.95, "{ssim}");
    // Nothing of this job in done/; the rejected file is kept apart.
    let done: Vec<_> = std::fs::read_dir(root.join("done"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !done.iter().any(|n| n.starts_with("bad-")),
        "the bad job reached done/: {done:?}"
    );
    let names: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with(".mp4.partial")),
        "the rejected file is not kept apart in {}: {names:?}",
        folder.display()
    );
    assert!(!names.iter().any(|n| n.ends_with(".mp4")), "{names:?}");

    // The host went on: the good job right behind it is published.
    let (folder, state, report) = host.wait_job("good", Duration::from_secs(180));
    assert_eq!(state, "done", "report: {report:#}");
    assert!(report["verdict"] == "pass" || report["verdict"] == "warn");
    assert!(folder.join("good_web.mp4").is_file());
    assert!(host.alive());
}
