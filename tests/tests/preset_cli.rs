//! `deliver presets show/check/new` and the user's preset directory, through
//! the real binary and the real ffmpeg plugin: a preset made with `new` is
//! checked, then delivered by `deliver render` and judged by `ffprobe`; a
//! preset asking for what no loaded plugin offers fails `check` with the
//! file, line and field; `DELIVER_PRESETS` and `XDG_CONFIG_HOME` bring a
//! user's presets in, over the built-ins and under `--presets`.

use deliver_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn run(mut c: Command) -> Output {
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// `deliver` with the ffmpeg plugin and `DELIVER_PRESETS` set.
fn with_user_presets(plugins: &Path, dirs: &[&Path]) -> Command {
    let mut c = deliver(plugins);
    c.env("DELIVER_PRESETS", std::env::join_paths(dirs).unwrap());
    c
}

#[test]
fn show_prints_the_chain_and_the_resolved_preset() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let mut c = deliver(&plugins);
    c.args(["presets", "show", "web/h264-1080p-streaming", "--json"]);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    let v = json(&o);
    let chain: Vec<(&str, &str)> = v["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["id"].as_str().unwrap(), l["file"].as_str().unwrap()))
        .collect();
    assert_eq!(
        chain,
        [
            (
                "web/h264-1080p-streaming",
                "builtin:web/h264-1080p-streaming.toml"
            ),
            ("web/h264-1080p", "builtin:web/h264-1080p.toml")
        ]
    );
    // The parent's picture, the child's loudness (streaming-16).
    let p = &v["preset"];
    assert_eq!(
        (p["video"]["width"].as_u64(), p["video"]["height"].as_u64()),
        (Some(1920), Some(1080))
    );
    assert_eq!(p["loudness"]["target_lufs"], -16.0);
    assert_eq!(p["loudness"]["allow_limiter"], true);
    assert_eq!(v["table"]["video"]["options"]["crf"], 20);
    assert!(v["table"].get("extends").is_none());

    let mut c = deliver(&plugins);
    c.args(["presets", "show", "web/h264-1080p-streaming"]);
    let o = run(c);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("# extends  web/h264-1080p (builtin:web/h264-1080p.toml)\n"),
        "{}",
        text(&o)
    );
    assert!(out.contains("target_lufs = -16.0\n"), "{out}");

    let mut c = deliver(&plugins);
    c.args(["presets", "show", "web/nope"]);
    let o = run(c);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("\"web/nope\" is not a known preset"),
        "{}",
        text(&o)
    );
}

#[test]
fn check_passes_the_library_with_the_plugins_it_was_written_for() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir_with_rav1e(tmp.path());
    let mut c = deliver(&plugins);
    c.args(["presets", "check", "--json"]);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v["ok"], true);
    let n = deliver::preset::PresetLibrary::builtin().ids().len();
    assert_eq!(v["presets"].as_array().unwrap().len(), n);
}

#[test]
fn check_names_the_file_line_and_field_no_plugin_offers() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    // ProRes takes 4:2:2 and 4:4:4 at 10 bits (FFmpeg's prores_ks); 4:2:0
    // is a pixel format the preset rules accept but no plugin here does.
    let dir = presets_dir(
        tmp.path(),
        &[(
            "test/prores-420.toml",
            "extends = \"master/prores-422-hq\"\n\n[video]\npix_fmt = \"yuv420p\"\n",
        )],
    );
    let file = dir.join("test/prores-420.toml");
    let mut c = deliver(&plugins);
    c.arg("--presets")
        .arg(&dir)
        .args(["presets", "check"])
        .arg(&file);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "{}:4:11: field `video.pix_fmt`: value \"yuv420p\" is not taken by the video \
             encoder prores_ks (ffmpeg) (expected one of yuv422p10le, yuv444p10le, yuva444p10le)",
            file.display()
        )),
        "{}",
        text(&o)
    );
    // By id, as JSON, the same finding.
    let mut c = deliver(&plugins);
    c.arg("--presets")
        .arg(&dir)
        .args(["presets", "check", "test/prores-420", "--json"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = json(&o);
    let e = &v["presets"][0]["errors"][0];
    assert_eq!(
        (
            e["field"].as_str(),
            e["line"].as_u64(),
            e["column"].as_u64()
        ),
        (Some("video.pix_fmt"), Some(4), Some(11)),
        "{v:#}"
    );
    assert_eq!(e["file"].as_str(), Some(file.to_str().unwrap()));

    // A file outside any preset directory, checked on its own: an id of
    // its file name, its parent from the library.
    let loose = write(
        tmp.path(),
        "loose.toml",
        "extends = \"web/h265-1080p\"\n[video]\nprofile = \"main12\"\n",
    );
    let mut c = deliver(&plugins);
    c.args(["presets", "check"]).arg(&loose);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!(
            "{}:3:11: field `video.profile`: value \"main12\" is not offered by the video \
             encoder libx265 (ffmpeg) (expected one of main, main10)",
            loose.display()
        )),
        "{}",
        text(&o)
    );

    // With the rav1e plugin alone nothing muxes or encodes AAC: the
    // container and the audio codec are named at the lines of the built-in
    // file that writes them.
    let only = tmp.path().join("only-rav1e");
    std::fs::create_dir_all(&only).unwrap();
    std::fs::copy(
        cdylib("deliver_plugin_rav1e"),
        only.join("libdeliver_plugin_rav1e.so"),
    )
    .unwrap();
    let mut c = deliver(&only);
    c.args(["presets", "check", "web/av1-1080p-rav1e"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let builtin = builtin_preset("web/av1-1080p-rav1e");
    let line_of = |prefix: &str| {
        1 + builtin
            .lines()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in the preset"))
    };
    assert!(
        out.contains(&format!(
            "builtin:web/av1-1080p-rav1e.toml:{}:13: field `container`: value \"mp4\" is not a \
             container any loaded plugin writes (expected a loaded plugin that offers \
             containers (none does))",
            line_of("container =")
        )),
        "{}",
        text(&o)
    );
    assert!(
        out.contains(
            "field `audio.codec`: value \"aac\" is not a codec any loaded plugin encodes as audio"
        ),
        "{}",
        text(&o)
    );
}

#[test]
fn a_new_preset_is_checked_and_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let user = tmp.path().join("user-presets");
    // `new` writes into the user's directory, making it.
    let mut c = with_user_presets(&plugins, &[&user]);
    c.args(["presets", "new", "test/promo", "--from", "web/h264-720p"]);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    let file = user.join("test/promo.toml");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        file.to_str().unwrap()
    );
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.contains("\nextends = \"web/h264-720p\"\n"),
        "{written}"
    );
    assert!(written.contains("# crf = 20\n"), "{written}");
    // Never over an existing file.
    let mut c = with_user_presets(&plugins, &[&user]);
    c.args(["presets", "new", "test/promo", "--from", "web/h264-1080p"]);
    let o = run(c);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not overwritten"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);

    // The user changes what the guide suggests.
    std::fs::write(
        &file,
        format!("{written}\n[video.options]\ncrf = 22\npreset = \"veryfast\"\n"),
    )
    .unwrap();
    let mut c = with_user_presets(&plugins, &[&user]);
    c.args(["presets", "check", "test/promo"]);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok    test/promo"));

    // Delivered for real: a 1 s composition at 640x360.
    let manifest = write(
        tmp.path(),
        "m.toml",
        &pattern_manifest("promo", 640, 360, "1s", "test/promo"),
    );
    let out = tmp.path().join("out");
    let mut c = with_user_presets(&plugins, &[&user]);
    c.arg("render").arg(&manifest).arg("--out").arg(&out);
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let d = &report["deliverables"][0];
    assert_eq!(d["verdict"], "pass", "{d:#}");
    let delivered = out.join(Path::new(d["file"].as_str().unwrap()).file_name().unwrap());
    let probe = ffprobe(&delivered);
    let v = stream(&probe, "video");
    for (key, want) in [
        ("codec_name", "h264"),
        ("profile", "High"),
        ("pix_fmt", "yuv420p"),
        ("codec_tag_string", "avc1"),
        ("color_space", "bt709"),
    ] {
        assert_eq!(v[key], want, "video {key}");
    }
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert_eq!(v["nb_read_frames"], "25");
    assert_eq!(stream(&probe, "audio")["codec_name"], "aac");
    assert!(probe["format"]["format_name"]
        .as_str()
        .unwrap()
        .contains("mp4"));
    // x264 writes its settings into the stream (an SEI): the child's values
    // reached the encoder, the parent's others too.
    let bytes = std::fs::read(&delivered).unwrap();
    let has = |s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(
        has("crf=22.0"),
        "the child's crf is not in the x264 settings"
    );
    assert!(has("subme=2"), "not x264's veryfast preset (subme=2)");
}

#[test]
fn user_directories_override_builtins_and_flags_override_them() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    // Two user directories, later wins; each changes the one before.
    let a = presets_dir(
        &tmp.path().join("a"),
        &[(
            "web/h264-720p.toml",
            "extends = \"web/h264-720p\"\n[video.options]\ncrf = 26\n",
        )],
    );
    let b = presets_dir(
        &tmp.path().join("b"),
        &[(
            "web/h264-720p.toml",
            "extends = \"web/h264-720p\"\n[video.options]\npreset = \"slow\"\n",
        )],
    );
    let show = |mut c: Command, id: &str| {
        c.args(["presets", "show", id, "--json"]);
        let o = run(c);
        assert!(o.status.success(), "{}", text(&o));
        json(&o)
    };
    // A built-in that extends the replaced preset sees the replacement.
    let v = show(
        with_user_presets(&plugins, &[&a, &b]),
        "web/h264-720p-streaming",
    );
    let options = &v["preset"]["video"]["options"];
    assert_eq!(
        (options["crf"].as_i64(), options["preset"].as_str()),
        (Some(26), Some("slow"))
    );
    let files: Vec<&str> = v["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["file"].as_str().unwrap())
        .collect();
    let (fa, fb) = (a.join("web/h264-720p.toml"), b.join("web/h264-720p.toml"));
    assert_eq!(
        files,
        [
            "builtin:web/h264-720p-streaming.toml",
            fb.to_str().unwrap(),
            fa.to_str().unwrap(),
            "builtin:web/h264-720p.toml"
        ]
    );

    // `deliver presets` says where each comes from and what it replaces.
    let mut c = with_user_presets(&plugins, &[&a, &b]);
    c.arg("presets");
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "{}; extends web/h264-720p; replaces builtin:web/h264-720p.toml; replaces {}\n",
            fb.display(),
            fa.display()
        )),
        "{out}"
    );

    // --presets comes after the user's directories.
    let c_dir = presets_dir(
        &tmp.path().join("c"),
        &[(
            "web/h264-720p.toml",
            "extends = \"web/h264-720p\"\n[video.options]\ncrf = 30\n",
        )],
    );
    let mut c = with_user_presets(&plugins, &[&a]);
    c.arg("--presets").arg(&c_dir);
    let v = show(c, "web/h264-720p");
    assert_eq!(v["preset"]["video"]["options"]["crf"], 30);

    // Without DELIVER_PRESETS, $XDG_CONFIG_HOME/deliver/presets.
    let config = tmp.path().join("config");
    presets_dir(
        &config.join("deliver"),
        &[("web/mine.toml", "extends = \"web/h264-720p\"\n")],
    );
    let mut c = deliver(&plugins);
    c.env("XDG_CONFIG_HOME", &config);
    let v = show(c, "web/mine");
    assert_eq!(
        v["file"].as_str(),
        config.join("deliver/presets/web/mine.toml").to_str()
    );
}

#[test]
fn a_manifest_asking_for_what_no_plugin_offers_is_told_which_field() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let manifest = write(
        tmp.path(),
        "m.toml",
        &pattern_manifest("m", 320, 240, "1s", "master/prores-422-hq").replace(
            "overrides = { video = { width = 320, height = 240 } }",
            "overrides = { video = { width = 320, height = 240, pix_fmt = \"yuv420p\" } }",
        ),
    );
    let mut c = deliver(&plugins);
    c.arg("check").arg(&manifest);
    let o = run(c);
    assert!(!o.status.success(), "{}", text(&o));
    let line = 1 + std::fs::read_to_string(&manifest)
        .unwrap()
        .lines()
        .position(|l| l == "[[deliverable]]")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!(
            "{}:{line}: field `overrides.video.pix_fmt`: value \"yuv420p\" is not taken by the \
             video encoder prores_ks (ffmpeg) (in the overrides of deliverable \"web\") \
             (expected one of yuv422p10le, yuv444p10le, yuva444p10le)",
            manifest.display()
        )),
        "{}",
        text(&o)
    );
}

#[test]
fn a_watch_host_warns_at_start_about_presets_it_cannot_deliver() {
    let tmp = tempfile::tempdir().unwrap();
    // No rav1e plugin: the two rav1e presets name an encoder nothing offers.
    let plugins = plugin_dir(tmp.path(), &[]);
    let mut c = deliver(&plugins);
    c.arg("watch")
        .arg(tmp.path().join("root"))
        .arg("--exit-when-idle");
    let o = run(c);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let warned: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("the loaded plugins cannot deliver it"))
        .collect();
    assert_eq!(warned.len(), 2, "{err}");
    assert!(
        warned
            .iter()
            .all(|l| l.contains("field `video.encoder`: value \"rav1e\"")),
        "{err}"
    );
}

/// `presets check` applies the preset's hardware policy as the plan does:
/// `require` on a machine without a working hardware encoder is reported at
/// `video.hardware`; `prefer` passes (it falls back to software).
#[test]
fn check_holds_a_hardware_requirement_to_this_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let dir = presets_dir(
        tmp.path(),
        &[
            (
                "test/gpu-only.toml",
                "extends = \"web/h264-720p\"\n\n[video]\nhardware = \"require\"\n",
            ),
            (
                "test/gpu-if-any.toml",
                "extends = \"web/h264-720p\"\n\n[video]\nhardware = \"prefer\"\n",
            ),
        ],
    );
    let check = |id: &str| {
        let mut c = deliver(&plugins);
        c.env("DELIVER_FFMPEG_HW_PROBE", "0")
            .arg("--presets")
            .arg(&dir)
            .args(["presets", "check", id, "--json"]);
        run(c)
    };
    let o = check("test/gpu-only");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = &json(&o)["presets"][0]["errors"][0];
    assert_eq!(e["field"], "video.hardware", "{e}");
    assert_eq!(e["line"], 4, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("no hardware encoder for `h264` works on this machine"),
        "{e}"
    );
    let o = check("test/gpu-if-any");
    assert!(o.status.success(), "{}", text(&o));
}
