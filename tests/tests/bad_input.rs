//! Bad input lands in failed/ with a report that names the line and field;
//! the host keeps running and delivers the next good manifest.

use deliver_tests::*;
use serde_json::Value;
use std::time::Duration;

const GOOD_HEAD: &str = r#"version = 1
[canvas]
width = 320
height = 240
frame_rate = "25"
duration = "1s"
colour_space = "bt709"
"#;

const DELIVERABLE: &str = r#"
[[deliverable]]
preset = "web/h264-720p"
name = "web"
overrides = { video = { width = 320, height = 240 } }
"#;

fn with_clip(clip: &str) -> String {
    format!("{GOOD_HEAD}[[video]]\n[[video.clip]]\n{clip}\n{DELIVERABLE}")
}

/// 50 MB of pseudo-random bytes (xorshift: fast and reproducible).
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn input_error(report: &Value) -> &Value {
    assert_eq!(report["verdict"], "fail");
    let e = &report["error"];
    assert_eq!(e["kind"], "input", "{report:#}");
    &e["input"]
}

#[test]
fn bad_manifests_are_quarantined_with_precise_errors_and_the_host_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let root = tmp.path().join("root");
    let mut host = Host::start(&root, &plugins, &[]);

    let syntax = format!("{GOOD_HEAD}[[video]\n");
    let unknown = GOOD_HEAD.replace("height = 240", "height = 240\nwidht = 320");
    let range = with_clip("generator = \"bars\"\nopacity = 1.5");
    let missing = with_clip("media = \"nowhere/clip.mov\"");
    let escape = with_clip("media = \"../../../../../../etc/hostname\"");

    host.drop_file("syntax.toml", syntax.as_bytes());
    host.drop_file("unknown.toml", unknown.as_bytes());
    host.drop_file("range.toml", range.as_bytes());
    host.drop_file("missing.toml", missing.as_bytes());
    host.drop_file("escape.toml", escape.as_bytes());
    host.drop_file("empty.toml", b"");
    host.drop_file("random.toml", &random_bytes(50 << 20));

    let t = Duration::from_secs(60);
    let (dir, state, r) = host.wait_job("syntax", t);
    assert_eq!(state, "failed");
    assert!(
        dir.join("syntax.toml").is_file(),
        "the manifest is kept with its report"
    );
    let e = input_error(&r);
    assert_eq!(e["line"], 8, "{e}");
    assert!(e["file"].as_str().unwrap().ends_with("syntax.toml"));

    let (_, state, r) = host.wait_job("unknown", t);
    assert_eq!(state, "failed");
    let e = input_error(&r);
    assert_eq!(e["line"], 5, "{e}");
    assert!(e["field"].as_str().unwrap().contains("widht"), "{e}");
    assert!(e["expected"].as_str().unwrap().contains("height"), "{e}");

    let (_, state, r) = host.wait_job("range", t);
    assert_eq!(state, "failed");
    let e = input_error(&r);
    assert_eq!(e["field"], "video[0].clip[0].opacity", "{e}");
    assert_eq!(e["line"], 11, "{e}");
    assert_eq!(e["value"], "1.5", "{e}");

    let (_, state, r) = host.wait_job("missing", t);
    assert_eq!(state, "failed");
    let e = input_error(&r);
    assert_eq!(e["field"], "video[0].clip[0].media", "{e}");
    assert_eq!(e["line"], 10, "{e}");
    assert!(
        e["value"].as_str().unwrap().contains("nowhere/clip.mov"),
        "{e}"
    );

    let (_, state, r) = host.wait_job("escape", t);
    assert_eq!(state, "failed");
    let e = input_error(&r);
    assert_eq!(e["field"], "video[0].clip[0].media", "{e}");
    assert!(e["message"].as_str().unwrap().contains("media root"), "{e}");

    let (_, state, r) = host.wait_job("empty", t);
    assert_eq!(state, "failed");
    let e = input_error(&r);
    assert!(e["message"].as_str().unwrap().contains("empty"), "{e}");
    assert_eq!(e["field"], "canvas", "{e}");

    let (_, state, r) = host.wait_job("random", t);
    assert_eq!(state, "failed");
    let e = input_error(&r);
    assert!(e["message"].as_str().unwrap().contains("MiB"), "{e}");

    // The host survived all of it and still delivers.
    assert!(host.alive());
    host.drop_file("good.toml", with_clip("generator = \"pattern\"").as_bytes());
    let (dir, state, r) = host.wait_job("good", Duration::from_secs(120));
    assert_eq!(state, "done", "{r:#}");
    assert!(dir.join("good_web.mp4").is_file());
}
