//! `deliver plugins check`: the bundled FFmpeg plugin and the example y4m
//! plugin conform; a plugin for another ABI major is refused with both
//! versions; a plugin that panics is reported, and the runner survives it.

use deliver_tests::*;
use serde_json::Value;

fn detail(s: &Value) -> &str {
    s["detail"].as_str().unwrap_or("")
}

fn step(s: &Value) -> &str {
    s["step"].as_str().unwrap_or("")
}

#[test]
fn the_ffmpeg_plugin_conforms() {
    let lib = cdylib("deliver_plugin_ffmpeg");
    let run = plugins_check(&lib, &["--json"]);
    let fails: Vec<String> = run
        .steps("FAIL")
        .iter()
        .map(|s| format!("{}: {}", step(s), detail(s)))
        .collect();
    assert!(fails.is_empty(), "{fails:#?}");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let r = run.json();
    assert_eq!(r["plugin"]["name"], "ffmpeg");

    // Every skip has one of the reasons the runner gives for what cannot be
    // exercised or what a container or codec legitimately refuses, with
    // the plugin's own words after it.
    let justified = [
        "refused at add_stream: ",
        "refused at write_header (add_stream had accepted it",
        "layout refused cleanly: ",
        "encoder to make packets; decoding not exercised",
        "this encoder opens only with options (`profile = ",
    ];
    for s in run.steps("SKIP") {
        assert!(
            justified.iter().any(|j| detail(&s).contains(j)),
            "an unexplained skip: {}: {}",
            step(&s),
            detail(&s)
        );
    }

    // Every declared H.264 format was encoded, drained, decoded back and
    // muxed into MP4 and read back from it.
    let passed: Vec<String> = run
        .steps("PASS")
        .iter()
        .map(|s| step(s).to_owned())
        .collect();
    let h264 = r["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "encode" && c["name"] == "h264")
        .expect("the FFmpeg plugin declares H.264 encoding");
    let fmts = h264["pix_fmts"].as_array().unwrap();
    assert!(!fmts.is_empty());
    for f in fmts {
        let f = f.as_str().unwrap();
        for want in [
            format!("encode h264 (libx264) {f}"),
            format!("flush h264 (libx264) {f}"),
            format!("decode h264 (libx264) {f}"),
            format!("mux h264 (libx264) {f}, global header into mp4"),
            format!("read back h264 (libx264) {f}, global header from mp4"),
        ] {
            assert!(passed.contains(&want), "no PASS for `{want}`: {passed:#?}");
        }
    }
    // The professional formats: ProRes and DNxHR (at a size and profile
    // the runner had to find) into MOV and MXF, SVT-AV1 into WebM (which
    // needs the AV1 configuration record: a global header).
    for want in [
        "mux prores (prores_ks) yuv422p10le, global header into mov",
        "mux prores (prores_ks) yuv422p10le into mxf",
        "mux prores (prores_ks) yuv444p10le into mxf",
        "read back prores (prores_ks) yuv444p10le from mxf",
        "mux dnxhd (dnxhd) yuv422p, global header into mov",
        "mux dnxhd (dnxhd) yuv422p10le into mxf",
        "read back dnxhd (dnxhd) yuv444p10le from mxf",
        "mux mpeg2video (mpeg2video) yuv422p into mxf",
        "mux av1 (libsvtav1) yuv420p10le, global header into webm",
        "read back av1 (libsvtav1) yuv420p, global header from webm",
        "reopen dnxhd (dnxhd)",
        "unknown option dnxhd (dnxhd)",
    ] {
        assert!(passed.iter().any(|p| p == want), "no PASS for `{want}`");
    }
    let dnxhr = run
        .steps("PASS")
        .into_iter()
        .find(|s| step(s) == "encode dnxhd (dnxhd) yuv444p10le")
        .expect("DNxHR 444 encoded");
    assert!(
        detail(&dnxhr).contains("opened only with profile `dnxhr_444` at 256x144"),
        "{}",
        detail(&dnxhr)
    );

    // The error paths were tried, not skipped.
    for want in [
        "unknown option h264 (libx264)",
        "send after flush h264 (libx264) yuv420p",
        "null options h264 (libx264)",
        "unknown option muxer mp4",
    ] {
        assert!(passed.iter().any(|p| p == want), "no PASS for `{want}`");
    }
}

#[test]
fn the_example_plugin_conforms_installed_as_the_guide_says() {
    // Installed under the name the host scans for (plugin-api/README.md).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let lib = dir.join("libdeliver_plugin_y4m.so");
    std::fs::copy(cdylib("deliver_example_plugin_y4m"), &lib).unwrap();

    let listed = deliver(&dir).arg("plugins").output().unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("y4m 0.1.0 (ABI 1.2)"), "{text}");
    assert!(text.contains("y4m-rawvideo"), "{text}");

    let run = plugins_check(&lib, &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    // Text mode: the header says what a crash would do, every step passes
    // (it has its own decoders, so nothing is skipped), and raw video comes
    // back bit-exact.
    assert!(run.stdout.contains("inside this process"), "{}", run.stdout);
    let bad: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL") || l.starts_with("SKIP"))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}\n{}", run.stdout);
    for f in [
        "yuv420p",
        "yuv422p",
        "yuv444p",
        "yuv420p10le",
        "yuv422p10le",
        "yuv444p10le",
    ] {
        let want = format!(
            "PASS  decode rawvideo (y4m-rawvideo) {f}: with its own decoder: 5 frames, bit-exact"
        );
        assert!(
            run.stdout.contains(&want),
            "no `{want}` in:\n{}",
            run.stdout
        );
        let want = format!("PASS  read back rawvideo (y4m-rawvideo) {f} from y4m");
        assert!(
            run.stdout.contains(&want),
            "no `{want}` in:\n{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains(", 0 failed, 0 skipped"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_plugin_for_another_abi_major_fails_with_both_versions() {
    let lib = cdylib("deliver_fixture_plugin_abi2");
    let run = plugins_check(&lib, &[]);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let fail = run
        .stdout
        .lines()
        .find(|l| l.starts_with("FAIL  load:"))
        .unwrap_or_else(|| panic!("no failed load step:\n{}", run.stdout));
    assert!(fail.contains("libdeliver_fixture_plugin_abi2.so"), "{fail}");
    assert!(fail.contains("plugin ABI 2.0"), "{fail}");
    assert!(fail.contains("host speaks ABI 1.2"), "{fail}");

    let run = plugins_check(&lib, &["--json"]);
    assert_eq!(run.code, Some(1));
    let r = run.json();
    assert_eq!(r["failed"], 1);
    assert!(r["plugin"].is_null());
}

#[test]
fn a_panicking_encoder_is_a_failure_and_the_runner_survives_it() {
    let lib = cdylib("deliver_fixture_plugin_panic");
    // The fixture panics on its tenth frame.
    let run = plugins_check(&lib, &["--json", "--frames", "12"]);
    // An orderly exit with a complete report, not a signal.
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let r = run.json();
    assert_eq!(r["plugin"]["name"], "panic-test");
    let fails = run.steps("FAIL");
    let panic = fails
        .iter()
        .find(|s| step(s) == "encode h264 (panic-test) yuv420p")
        .unwrap_or_else(|| panic!("the panicking encode is not a FAIL: {fails:#?}"));
    assert!(detail(panic).contains("frame 10 of 12"), "{panic}");
    assert!(detail(panic).contains("panicked"), "{panic}");
    assert!(
        detail(panic).contains("deliberate test panic on frame 10"),
        "{panic}"
    );
    // The handle was poisoned, and the run went on to the error paths.
    let passed: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "PASS")
        .map(step)
        .collect();
    assert!(
        passed.contains(&"after the panic h264 (panic-test) yuv420p"),
        "{passed:?}"
    );
    assert!(
        passed.contains(&"null options h264 (panic-test)"),
        "{passed:?}"
    );
    // Its other shortcomings are reported too: it takes any option.
    assert!(
        fails
            .iter()
            .any(|s| step(s) == "unknown option h264 (panic-test)"),
        "{fails:#?}"
    );
    // The implementation that segfaults is caught by the crash probe in a
    // child: a FAIL naming the signal, and none of its in-process steps ran
    // (the runner would not be here to write this report if they had).
    let crash = fails
        .iter()
        .find(|s| step(s) == "encode h264 (segfault-test)")
        .unwrap_or_else(|| panic!("the segfaulting encoder is not a FAIL: {fails:#?}"));
    assert!(detail(crash).contains("SIGSEGV"), "{crash}");
    assert!(detail(crash).contains("frame 5"), "{crash}");
    // The one that hangs is killed by the call watchdog (5 s here).
    let hang = fails
        .iter()
        .find(|s| step(s) == "encode h264 (hang-test)")
        .unwrap_or_else(|| panic!("the hanging encoder is not a FAIL: {fails:#?}"));
    assert!(detail(hang).contains("killed as hung"), "{hang}");
    assert!(detail(hang).contains("frame 3"), "{hang}");
    let all = r["steps"].as_array().unwrap();
    for enc in ["segfault-test", "hang-test"] {
        assert!(
            !all.iter()
                .any(|s| step(s).starts_with(&format!("reopen h264 ({enc})"))),
            "in-process steps ran for {enc}"
        );
    }
}
