//! Spec checks on real files: each check meets a file made with the `ffmpeg`
//! CLI that must pass it and one that must fail it, decoded through the real
//! ffmpeg plugin. Events are held to the frame: the fixtures put their
//! faults on known frames, so every in/out point below follows from the
//! ffmpeg command that made the file.

use deliver::plugins::Registry;
use deliver::qc::{self, AudioExpect, ColorTags, Expect, FileQc, QcProfile, Rational, Scan};
use deliver::report::{Check, Severity};
use deliver_tests::{ffmpeg, target_dir};
use std::path::{Path, PathBuf};

const W: u32 = 320;
const H: u32 = 240;
/// 3 s at 25 fps.
const FRAMES: u64 = 75;

/// BT.709, limited range, written into the stream and the container.
const TAGS: &[&str] = &[
    "-colorspace",
    "bt709",
    "-color_primaries",
    "bt709",
    "-color_trc",
    "bt709",
    "-color_range",
    "tv",
];

fn run_qc(path: &Path, expect: &Expect, profile: &QcProfile) -> FileQc {
    let reg = Registry::global(&[target_dir()]);
    let dec = qc::file_decoder(reg)
        .expect("the ffmpeg plugin in target/release (build the workspace first)");
    qc::check_file(&dec, path, expect, profile).unwrap_or_else(|e| panic!("{e}"))
}

/// What the clean fixture is: H.264 High, 320×240 yuv420p at 25 fps,
/// progressive, BT.709 limited, 75 frames.
fn promise() -> Expect {
    Expect {
        codec: Some("h264".into()),
        profile: Some("High".into()),
        level: Some(30),
        pix_fmt: Some("yuv420p".into()),
        width: Some(W),
        height: Some(H),
        frame_rate: Some(Rational::new(25, 1)),
        scan: Some(Scan::Progressive),
        frames: Some(FRAMES),
        colour: Some(ColorTags::BT709_LIMITED),
        audio: None,
        start_timecode: None,
    }
}

fn profile() -> QcProfile {
    QcProfile::default()
}

/// Makes `name` in `dir` from a lavfi video source, `vf` filters and extra
/// output arguments (H.264 at CRF 18 in MOV unless `extra` says otherwise).
fn video(dir: &Path, name: &str, src: &str, vf: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args: Vec<&str> = vec!["-f", "lavfi", "-i", src];
    // RGB sources are converted with the BT.709 matrix the files are tagged
    // with (swscale's default is BT.601, which would put saturated colours
    // out of R'G'B' range when decoded as tagged).
    let chain = match (src.starts_with("testsrc"), vf.is_empty()) {
        (true, true) => TO_709.to_owned(),
        (true, false) => format!("{TO_709},{vf}"),
        (false, _) => vf.to_owned(),
    };
    if !chain.is_empty() {
        args.extend(["-vf", &chain]);
    }
    args.extend(["-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p"]);
    args.extend(extra);
    args.push(out.to_str().unwrap());
    ffmpeg(&args);
    out
}

const TO_709: &str = "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p";

/// testsrc2 at 320×240, 25 fps, for `secs` seconds: enough motion that no
/// two frames are alike (mean |ΔY| over 2 codes, FFmpeg's signalstats YDIF).
fn testsrc(secs: u32) -> String {
    format!("testsrc2=s={W}x{H}:r=25:d={secs}")
}

/// The frames FFmpeg's own `framemd5` finds identical in the longest run of
/// `src` through `vf` (before encoding): (first, after last).
fn identical_run(src: &str, vf: &str, frames: u32) -> (u64, u64) {
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            src,
            "-vf",
        ])
        .arg(format!("{TO_709},{vf}"))
        .args(["-frames:v", &frames.to_string(), "-f", "framemd5", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hashes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect();
    let (mut best, mut start) = ((0u64, 0u64), 0usize);
    for i in 1..=hashes.len() {
        if i == hashes.len() || hashes[i] != hashes[start] {
            if (i - start) as u64 > best.1 - best.0 {
                best = (start as u64, i as u64);
            }
            start = i;
        }
    }
    best
}

fn find<'a>(q: &'a FileQc, id: &str) -> &'a Check {
    q.checks.iter().find(|c| c.id == id).unwrap_or_else(|| {
        panic!(
            "no check {id}; checks: {:?}",
            q.checks.iter().map(|c| c.id).collect::<Vec<_>>()
        )
    })
}

fn passes(q: &FileQc, id: &str) {
    let c = find(q, id);
    assert!(c.pass, "{id} should pass: {c:#?}");
    assert!(c.events.is_empty(), "{id}: {c:#?}");
}

/// Asserts a failure of `id` at `severity` and returns it.
fn fails<'a>(q: &'a FileQc, id: &str, severity: Severity) -> &'a Check {
    let c = find(q, id);
    assert!(!c.pass, "{id} should fail: {c:#?}");
    assert_eq!(c.severity, severity, "{id}: {c:#?}");
    c
}

/// The (frame_in, frame_out, tc_in, tc_out) of a check's events.
fn spans(c: &Check) -> Vec<(u64, u64, &str, &str)> {
    c.events
        .iter()
        .map(|e| (e.frame_in, e.frame_out, e.tc_in.as_str(), e.tc_out.as_str()))
        .collect()
}

#[test]
fn a_clean_file_passes_every_check_and_each_promise_it_breaks_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = video(tmp.path(), "clean.mov", &testsrc(3), "", TAGS);
    let q = run_qc(&clean, &promise(), &profile());
    for c in &q.checks {
        assert!(c.pass, "the clean file fails {}: {c:#?}", c.id);
    }
    for id in [
        "video.codec",
        "video.profile",
        "video.level",
        "video.pix_fmt",
        "video.resolution",
        "video.frame_rate",
        "video.scan",
        "video.frame_count",
        "video.duration",
        "video.colour_tags",
        "video.legal_range",
        "video.black",
        "video.freeze",
        "video.flash",
        "video.red_flash",
    ] {
        find(&q, id);
    }
    assert_eq!(find(&q, "video.frame_rate").ebu_qc, Some("0042W"));
    assert_eq!(find(&q, "video.legal_range").ebu_qc, Some("0051B"));
    assert_eq!(q.probe.field_order, "progressive");
    assert!(
        q.probe.video_level > 0 && q.probe.video_level <= 30,
        "{:?}",
        q.probe
    );

    // The same file against promises it does not keep.
    let broken = [
        (
            "video.codec",
            Expect {
                codec: Some("hevc".into()),
                ..promise()
            },
        ),
        (
            "video.profile",
            Expect {
                profile: Some("Main".into()),
                ..promise()
            },
        ),
        (
            "video.level",
            Expect {
                level: Some(10),
                ..promise()
            },
        ),
        (
            "video.pix_fmt",
            Expect {
                pix_fmt: Some("yuv422p".into()),
                ..promise()
            },
        ),
        (
            "video.resolution",
            Expect {
                width: Some(640),
                height: Some(480),
                ..promise()
            },
        ),
        (
            "video.frame_rate",
            Expect {
                frame_rate: Some(Rational::new(30, 1)),
                ..promise()
            },
        ),
        (
            "video.scan",
            Expect {
                scan: Some(Scan::Interlaced),
                ..promise()
            },
        ),
        (
            "video.colour_tags",
            Expect {
                colour: Some(ColorTags {
                    primaries: 9,
                    transfer: 14,
                    matrix: 9,
                    range: 1,
                }),
                ..promise()
            },
        ),
    ];
    for (id, expect) in broken {
        let q = run_qc(&clean, &expect, &profile());
        fails(&q, id, Severity::Error);
    }
    // Frame count and duration: promised one frame more than there is.
    let q = run_qc(
        &clean,
        &Expect {
            frames: Some(FRAMES + 1),
            ..promise()
        },
        &profile(),
    );
    assert_eq!(
        fails(&q, "video.frame_count", Severity::Error).value,
        FRAMES
    );
    // 76 frames would be 3.04 s, within the 0.05 s tolerance; 80 is not.
    passes(&q, "video.duration");
    let q = run_qc(
        &clean,
        &Expect {
            frames: Some(80),
            ..promise()
        },
        &profile(),
    );
    fails(&q, "video.duration", Severity::Error);
}

#[test]
fn one_frame_too_few_fails_the_frame_count() {
    let tmp = tempfile::tempdir().unwrap();
    let short = video(
        tmp.path(),
        "short.mov",
        &testsrc(3),
        "",
        &[TAGS, &["-frames:v", "74"]].concat(),
    );
    let q = run_qc(&short, &promise(), &profile());
    let c = fails(&q, "video.frame_count", Severity::Error);
    assert_eq!(c.value, 74);
    assert_eq!(q.analysis.frames, 74);
}

#[test]
fn an_untagged_file_fails_the_colour_tags_even_when_none_are_promised() {
    let tmp = tempfile::tempdir().unwrap();
    let untagged = video(tmp.path(), "untagged.mov", &testsrc(1), "", &[]);
    let tagged = video(tmp.path(), "tagged.mov", &testsrc(1), "", TAGS);
    let any_tags = Expect {
        colour: None,
        frames: None,
        ..promise()
    };
    let q = run_qc(&untagged, &any_tags, &profile());
    fails(&q, "video.colour_tags", Severity::Error);
    let q = run_qc(&untagged, &promise(), &profile());
    fails(&q, "video.colour_tags", Severity::Error);
    let q = run_qc(&tagged, &any_tags, &profile());
    passes(&q, "video.colour_tags");
    assert_eq!(
        find(&q, "video.colour_tags").value,
        serde_json::json!([1, 1, 1, 1])
    );
}

#[test]
fn a_second_of_black_is_a_warning_with_frame_accurate_timecodes() {
    let tmp = tempfile::tempdir().unwrap();
    // Frames 25 to 49 black: one second from 00:00:01:00.
    let black = video(
        tmp.path(),
        "black.mov",
        &testsrc(3),
        "drawbox=t=fill:c=black:enable='between(n,25,49)'",
        TAGS,
    );
    // Two black frames: under the one-second minimum.
    let blip = video(
        tmp.path(),
        "blip.mov",
        &testsrc(3),
        "drawbox=t=fill:c=black:enable='between(n,25,26)'",
        TAGS,
    );
    let q = run_qc(&black, &promise(), &profile());
    let c = fails(&q, "video.black", Severity::Warning);
    assert_eq!(c.ebu_qc, Some("0016B"));
    assert_eq!(spans(c), [(25, 50, "00:00:01:00", "00:00:02:00")]);
    // A warning does not make the verdict fail.
    assert_eq!(
        deliver::report::verdict_of(&q.checks),
        deliver::report::Verdict::Warn
    );
    // The event's first frame is among the thumbnails, marked.
    let t = q
        .thumbnails
        .iter()
        .find(|t| t.frame == 25)
        .expect("thumbnail of frame 25");
    assert_eq!(t.flagged, ["video.black"]);
    assert_eq!(
        (t.width, t.height, t.timecode.as_str()),
        (160, 120, "00:00:01:00")
    );
    assert_eq!(&t.png[..8], b"\x89PNG\r\n\x1a\n");
    // The profile's 12 evenly spaced frames (every 6th from frame 3), four
    // of them inside the black run, plus the event's first frame.
    let frames: Vec<u64> = q.thumbnails.iter().map(|t| t.frame).collect();
    assert_eq!(frames, [3, 9, 15, 21, 25, 27, 33, 39, 45, 51, 57, 63, 69]);
    let flagged = q
        .thumbnails
        .iter()
        .filter(|t| !t.flagged.is_empty())
        .count();
    assert_eq!(flagged, 5);

    let q = run_qc(&blip, &promise(), &profile());
    passes(&q, "video.black");
}

#[test]
fn a_two_second_freeze_is_reported_from_its_first_repeated_picture() {
    let tmp = tempfile::tempdir().unwrap();
    // One picture shown 50 times, then the source goes on (renumbered, so
    // the muxer neither drops nor repeats frames).
    let hold = "loop=loop=49:size=1:start=25,setpts=N/25/TB";
    let (a, b) = identical_run(&testsrc(4), hold, 100);
    assert_eq!(b - a, 50, "the fixture holds one picture for 2 s");
    let frozen = video(
        tmp.path(),
        "frozen.mov",
        &testsrc(4),
        hold,
        &[TAGS, &["-frames:v", "100"]].concat(),
    );
    let q = run_qc(
        &frozen,
        &Expect {
            frames: Some(100),
            ..promise()
        },
        &profile(),
    );
    let c = fails(&q, "video.freeze", Severity::Warning);
    assert_eq!(
        c.events
            .iter()
            .map(|e| (e.frame_in, e.frame_out))
            .collect::<Vec<_>>(),
        [(a, b)],
        "the run FFmpeg's framemd5 finds identical"
    );
    passes(&q, "video.black");

    // 1.5 s of freeze is under the 2 s minimum.
    let short = video(
        tmp.path(),
        "short.mov",
        &testsrc(4),
        "loop=loop=36:size=1:start=25,setpts=N/25/TB",
        &[TAGS, &["-frames:v", "100"]].concat(),
    );
    let q = run_qc(
        &short,
        &Expect {
            frames: Some(100),
            ..promise()
        },
        &profile(),
    );
    passes(&q, "video.freeze");
}

#[test]
fn luma_above_103_percent_fails_r103_and_testsrc_passes() {
    let tmp = tempfile::tempdir().unwrap();
    // Y = 250 on every pixel: 107 % of the 16–235 range (R 103 allows 103 %).
    let hot = video(
        tmp.path(),
        "hot.mov",
        &testsrc(1),
        "geq=lum=250:cb=128:cr=128",
        TAGS,
    );
    let expect = Expect {
        frames: Some(25),
        ..promise()
    };
    let q = run_qc(&hot, &expect, &profile());
    let c = fails(&q, "video.legal_range", Severity::Error);
    assert_eq!(spans(c), [(0, 25, "00:00:00:00", "00:00:01:00")]);
    assert_eq!(c.value["luma_max_code"], 250);
    assert_eq!(c.value["worst_luma_percent"], 100.0);

    // Full-range levels (Y 0–255) from a full-range source, tagged limited.
    let full = video(
        tmp.path(),
        "full.mov",
        &format!("color=c=white:s={W}x{H}:r=25:d=1"),
        "scale=out_range=full,format=yuv420p",
        TAGS,
    );
    let q = run_qc(&full, &expect, &profile());
    fails(&q, "video.legal_range", Severity::Error);

    let clean = video(tmp.path(), "clean.mov", &testsrc(1), "", TAGS);
    let q = run_qc(&clean, &expect, &profile());
    passes(&q, "video.legal_range");
}

/// A full-screen flash between black and white, `on` frames of white in
/// every `period` frames.
fn flashing(dir: &Path, name: &str, on: u32, period: u32, colour: &str) -> PathBuf {
    let expr = format!("if(lt(mod(N\\,{period})\\,{on})\\,1\\,0)");
    let graph = match colour {
        "white" => format!("geq=lum='16+219*{expr}':cb=128:cr=128"),
        _ => format!("format=gbrp,geq=r='255*{expr}':g=0:b=0,{TO_709}"),
    };
    video(
        dir,
        name,
        &format!("color=c=black:s={W}x{H}:r=25:d=3"),
        &graph,
        TAGS,
    )
}

#[test]
fn a_5_hz_flash_fails_and_a_2_hz_one_passes() {
    let tmp = tempfile::tempdir().unwrap();
    // 5 Hz: 3 frames white, 2 black; a transition at every change, 10 a second.
    let fast = flashing(tmp.path(), "fast.mov", 3, 5, "white");
    let q = run_qc(&fast, &promise(), &profile());
    let c = fails(&q, "video.flash", Severity::Error);
    // Transitions at frames 3, 5, 8, 10, 13, 15, 18: the seventh within one
    // second opens the event at the first; they go on to frame 73.
    assert_eq!(spans(c), [(3, 74, "00:00:00:03", "00:00:02:24")]);
    assert_eq!(c.value["max_flashes_per_s"], 5.0);
    passes(&q, "video.red_flash");
    assert!(q
        .thumbnails
        .iter()
        .any(|t| t.frame == 3 && t.flagged.contains(&"video.flash".to_owned())));

    // ~2 Hz: 6 frames white in 12; at most 5 transitions in any second.
    let slow = flashing(tmp.path(), "slow.mov", 6, 12, "white");
    let q = run_qc(&slow, &promise(), &profile());
    passes(&q, "video.flash");
    assert_eq!(find(&q, "video.flash").value["max_flashes_per_s"], 2.5);
}

#[test]
fn a_red_flash_is_flagged_apart_from_luminance_flashes() {
    let tmp = tempfile::tempdir().unwrap();
    // Saturated red against black: 5 cd/m² of luminance, under the 20 cd/m²
    // of a luminance flash, but a saturated-red transition.
    let red = flashing(tmp.path(), "red.mov", 3, 5, "red");
    let q = run_qc(&red, &promise(), &profile());
    let c = fails(&q, "video.red_flash", Severity::Error);
    assert_eq!(spans(c)[0].0, 3);
    passes(&q, "video.flash");
}

/// A 3 s clip with audio from `asrc` (lavfi), as PCM of `codec`.
fn with_audio(dir: &Path, name: &str, asrc: &str, codec: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let v = testsrc(3);
    let mut args = vec![
        "-f", "lavfi", "-i", &v, "-f", "lavfi", "-i", asrc, "-c:v", "libx264", "-crf", "18",
        "-pix_fmt", "yuv420p", "-c:a", codec, "-t", "3",
    ];
    args.extend(TAGS);
    args.extend(extra);
    args.push(out.to_str().unwrap());
    ffmpeg(&args);
    out
}

fn stereo_promise(bits: u32) -> Expect {
    Expect {
        audio: Some(AudioExpect {
            codec: Some(format!("pcm_s{bits}le")),
            sample_rate: Some(48_000),
            channels: Some(2),
            bit_depth: Some(bits),
        }),
        ..promise()
    }
}

const TONE: &str = "0.25*sin(2*PI*440*t)";

#[test]
fn missing_channels_fail_mono_and_a_silent_channel_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let stereo = with_audio(
        tmp.path(),
        "stereo.mov",
        &format!("aevalsrc={TONE}|{TONE}:s=48000:c=stereo:d=3"),
        "pcm_s24le",
        &[],
    );
    let mono = with_audio(
        tmp.path(),
        "mono.mov",
        &format!("aevalsrc={TONE}:s=48000:c=mono:d=3"),
        "pcm_s24le",
        &[],
    );
    let one_silent = with_audio(
        tmp.path(),
        "one_silent.mov",
        &format!("aevalsrc={TONE}|0:s=48000:c=stereo:d=3"),
        "pcm_s24le",
        &[],
    );
    let expect = stereo_promise(24);
    let q = run_qc(&stereo, &expect, &profile());
    for id in [
        "audio.codec",
        "audio.sample_rate",
        "audio.bit_depth",
        "audio.channels",
        "audio.silence",
    ] {
        passes(&q, id);
    }
    assert_eq!(q.probe.channel_layout, 3, "front left | front right");

    let q = run_qc(&mono, &expect, &profile());
    let c = fails(&q, "audio.channels", Severity::Error);
    assert_eq!(c.value["channels"], 1);

    let q = run_qc(&one_silent, &expect, &profile());
    let c = fails(&q, "audio.channels", Severity::Error);
    assert_eq!(c.value["channels"], 2);
    assert_eq!(c.value["silent_channels"], serde_json::json!([2]));
    // The silent channel is also a silence event over the whole programme.
    let s = fails(&q, "audio.silence", Severity::Warning);
    assert_eq!(spans(s), [(0, 75, "00:00:00:00", "00:00:03:00")]);
}

#[test]
fn wrong_sample_rate_and_bit_depth_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let src = |rate: u32| format!("aevalsrc={TONE}|{TONE}:s={rate}:c=stereo:d=3");
    let cd = with_audio(tmp.path(), "cd.mov", &src(44_100), "pcm_s24le", &[]);
    let s16 = with_audio(tmp.path(), "s16.mov", &src(48_000), "pcm_s16le", &[]);
    let s24 = with_audio(tmp.path(), "s24.mov", &src(48_000), "pcm_s24le", &[]);
    let expect = stereo_promise(24);

    let q = run_qc(&cd, &expect, &profile());
    assert_eq!(
        fails(&q, "audio.sample_rate", Severity::Error).value,
        44_100
    );

    let q = run_qc(&s16, &expect, &profile());
    let c = fails(&q, "audio.bit_depth", Severity::Error);
    assert_eq!(
        (c.value.clone(), c.ebu_qc),
        (serde_json::json!(16), Some("0003W"))
    );

    let q = run_qc(&s24, &expect, &profile());
    passes(&q, "audio.bit_depth");
    passes(&q, "audio.sample_rate");
    // The profile alone can ask for a depth.
    let mut p = profile();
    p.audio.bit_depth = Some(24);
    let q = run_qc(&s16, &promise(), &p);
    fails(&q, "audio.bit_depth", Severity::Error);
}

#[test]
fn two_seconds_of_silence_in_the_middle_is_an_event_on_each_channel() {
    let tmp = tempfile::tempdir().unwrap();
    let gap = format!("if(between(t\\,1\\,3)\\,0\\,{TONE})");
    let path = tmp.path().join("gap.mov");
    let v = testsrc(4);
    let a = format!("aevalsrc={gap}|{gap}:s=48000:c=stereo:d=4");
    let mut args = vec!["-f", "lavfi", "-i", &v, "-f", "lavfi", "-i", &a];
    args.extend([
        "-c:v",
        "libx264",
        "-crf",
        "18",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "pcm_s24le",
    ]);
    args.extend(TAGS);
    args.push(path.to_str().unwrap());
    ffmpeg(&args);
    let q = run_qc(
        &path,
        &Expect {
            frames: Some(100),
            ..stereo_promise(24)
        },
        &profile(),
    );
    let c = fails(&q, "audio.silence", Severity::Warning);
    assert_eq!(c.ebu_qc, Some("0078B"));
    assert_eq!(
        spans(c),
        [
            (25, 75, "00:00:01:00", "00:00:03:00"),
            (25, 75, "00:00:01:00", "00:00:03:00")
        ]
    );
    assert!(
        c.events[1].detail.starts_with("channel 2"),
        "{:?}",
        c.events
    );
    // Silence in the middle leaves no channel silent throughout.
    passes(&q, "audio.channels");
}

#[test]
fn the_start_timecode_is_checked_and_events_count_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let tc = video(
        tmp.path(),
        "tc.mov",
        &testsrc(3),
        "drawbox=t=fill:c=black:enable='between(n,25,49)'",
        &[TAGS, &["-timecode", "10:00:00:00"]].concat(),
    );
    let q = run_qc(
        &tc,
        &Expect {
            start_timecode: Some("10:00:00:00".into()),
            ..promise()
        },
        &profile(),
    );
    passes(&q, "timecode.start");
    assert_eq!(find(&q, "timecode.start").ebu_qc, Some("0026W"));
    let c = find(&q, "video.black");
    assert_eq!(spans(c), [(25, 50, "10:00:01:00", "10:00:02:00")]);

    let q = run_qc(
        &tc,
        &Expect {
            start_timecode: Some("01:00:00:00".into()),
            ..promise()
        },
        &profile(),
    );
    assert_eq!(
        fails(&q, "timecode.start", Severity::Error).value,
        "10:00:00:00"
    );
    // The profile's start applies when the deliverable promises none.
    let mut p = profile();
    p.timecode.start = Some("09:59:50:00".into());
    let q = run_qc(&tc, &promise(), &p);
    fails(&q, "timecode.start", Severity::Error);
}

#[test]
fn drop_frame_timecodes_at_29_97() {
    let tmp = tempfile::tempdir().unwrap();
    // Black over frames 30–59 of a 29.97 fps file starting at 00:59:59;00.
    let path = video(
        tmp.path(),
        "ntsc.mov",
        &format!("testsrc=s={W}x{H}:r=30000/1001:d=3"),
        "drawbox=t=fill:c=black:enable='between(n,30,59)'",
        &[TAGS, &["-timecode", "00:59:59;00"]].concat(),
    );
    let expect = Expect {
        frame_rate: Some(Rational::new(30000, 1001)),
        frames: None,
        ..promise()
    };
    let q = run_qc(&path, &expect, &profile());
    passes(&q, "video.frame_rate");
    let c = fails(&q, "video.black", Severity::Warning);
    // 00:59:59;00 + 30 frames = 01:00:00;00 (minute 60 is a tenth: nothing
    // dropped); + 60 frames = 01:00:01;00.
    assert_eq!(spans(c), [(30, 60, "01:00:00;00", "01:00:01;00")]);
}

#[test]
fn interlaced_fails_a_progressive_promise() {
    let tmp = tempfile::tempdir().unwrap();
    let inter = video(
        tmp.path(),
        "inter.mov",
        &testsrc(3),
        "",
        &[TAGS, &["-flags", "+ildct+ilme", "-field_order", "tt"]].concat(),
    );
    let q = run_qc(&inter, &promise(), &profile());
    let c = fails(&q, "video.scan", Severity::Error);
    assert_eq!(
        (c.value.clone(), c.ebu_qc),
        (serde_json::json!("interlaced"), Some("0048W"))
    );
    let q = run_qc(
        &inter,
        &Expect {
            scan: Some(Scan::Interlaced),
            ..promise()
        },
        &profile(),
    );
    passes(&q, "video.scan");
}

#[test]
fn profile_severities_are_data() {
    let tmp = tempfile::tempdir().unwrap();
    let black = video(
        tmp.path(),
        "black.mov",
        &testsrc(3),
        "drawbox=t=fill:c=black:enable='between(n,25,49)'",
        TAGS,
    );
    let p = QcProfile::from_toml(
        "min_psnr_y = 35.0\nmin_ssim_y = 0.95\nmax_duration_error_s = 0.05\n\
         [black]\nseverity = \"error\"\nmin_duration_s = 0.5\n[severity]\n\"video.level\" = \"info\"\n",
    )
    .unwrap();
    let q = run_qc(
        &black,
        &Expect {
            level: Some(10),
            ..promise()
        },
        &p,
    );
    fails(&q, "video.black", Severity::Error);
    fails(&q, "video.level", Severity::Info);
    assert_eq!(
        deliver::report::verdict_of(&q.checks),
        deliver::report::Verdict::Fail
    );
}
