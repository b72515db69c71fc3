//! Plugin loading: a plugin for another ABI major is refused by name and
//! version; a plugin that panics fails its job, and the host goes on.

use deliver_tests::*;
use std::time::Duration;

#[test]
fn plugin_for_another_abi_major_is_refused_with_file_and_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(
        tmp.path(),
        &[("deliver_fixture_plugin_abi2", "libdeliver_plugin_abi2.so")],
    );
    let out = deliver(&plugins).arg("plugins").output().unwrap();
    assert!(out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("libdeliver_plugin_abi2.so"), "{text}");
    assert!(text.contains("plugin ABI 2.0"), "{text}");
    assert!(text.contains("host speaks ABI 1.2"), "{text}");
    // The good plugin still loaded, with its capabilities listed.
    assert!(text.contains("ffmpeg"), "{text}");
    assert!(text.contains("libx264"), "{text}");
    assert!(text.contains("(ABI 1.2)"), "{text}");
}

#[test]
fn a_panicking_encoder_fails_its_job_and_the_host_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(
        tmp.path(),
        &[("deliver_fixture_plugin_panic", "libdeliver_plugin_panic.so")],
    );
    let base = builtin_preset("web/h264-720p");
    // The same preset, but asking for the panicking encoder by name.
    let panicky = base.replace("[video]", "[video]\nencoder = \"panic-test\"");
    assert_ne!(panicky, base);
    let endless = base.replace("[video]", "[video]\nencoder = \"never-ends\"");
    let presets = presets_dir(
        tmp.path(),
        &[
            ("test/panic.toml", &panicky),
            ("test/endless.toml", &endless),
        ],
    );

    let root = tmp.path().join("root");
    let presets_arg = presets.to_str().unwrap().to_owned();
    let mut host = Host::start(&root, &plugins, &["--presets", &presets_arg]);
    let manifest = |preset: &str| {
        format!(
            r#"version = 1
[canvas]
width = 320
height = 240
frame_rate = "25"
duration = "2s"
colour_space = "bt709"
[[video]]
[[video.clip]]
generator = "pattern"
[[deliverable]]
preset = "{preset}"
name = "out"
overrides = {{ video = {{ width = 320, height = 240 }} }}
"#
        )
    };
    host.drop_file("boom.toml", manifest("test/panic").as_bytes());
    let (_, state, r) = host.wait_job("boom", Duration::from_secs(60));
    assert_eq!(state, "failed");
    let d = &r["deliverables"][0];
    assert_eq!(d["verdict"], "fail");
    let err = d["error"].as_str().unwrap();
    assert!(err.contains("panic-test"), "{err}");
    assert!(err.contains("panicked"), "{err}");
    assert!(err.contains("deliberate test panic"), "{err}");

    assert!(host.alive());
    // An encoder that never gives EOF after the drain request: the job
    // fails with that reason instead of spinning forever.
    host.drop_file("stuck.toml", manifest("test/endless").as_bytes());
    let (_, state, r) = host.wait_job("stuck", Duration::from_secs(60));
    assert_eq!(state, "failed");
    let err = r["deliverables"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("asked for more input after the drain request"),
        "{err}"
    );

    assert!(host.alive());
    host.drop_file("after.toml", manifest("web/h264-720p").as_bytes());
    let (_, state, r) = host.wait_job("after", Duration::from_secs(120));
    assert_eq!(state, "done", "{r:#}");
}
