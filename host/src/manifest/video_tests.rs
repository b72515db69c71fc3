//! The manifest syntax of the video features: titles, stills, fit,
//! keyframes, rotation, crop, blend modes, speed, colour operations and the
//! transition kinds, and the error each wrong value gets.

use std::fs;
use std::path::Path;

use super::super::model::*;
use super::super::{parse, InputError, LoadContext};

const HEAD: &str = r#"version = 1
[canvas]
width = 640
height = 360
frame_rate = 25
duration = "4s"
colour_space = "bt709"

[[deliverable]]
preset = "web/h264-1080p"

[[video]]
"#;

/// A folder with the files the manifests name: a 4×2 PNG, a tiny .cube
/// LUT, a copy of DejaVu Sans, a stand-in media file and a bad image.
fn media_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let png = image::RgbaImage::from_fn(4, 2, |x, _| image::Rgba([x as u8 * 60, 0, 0, 255]));
    png.save(dir.path().join("logo.png")).unwrap();
    fs::write(
        dir.path().join("grade.cube"),
        "LUT_3D_SIZE 2\n0 0 0\n1 0 0\n0 1 0\n1 1 0\n0 0 1\n1 0 1\n0 1 1\n1 1 1\n",
    )
    .unwrap();
    fs::copy(
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        dir.path().join("font.ttf"),
    )
    .unwrap();
    fs::write(dir.path().join("a.mov"), b"stand-in").unwrap();
    fs::write(dir.path().join("bad.png"), b"not a png").unwrap();
    dir
}

fn parse_in(dir: &Path, clips: &str) -> Result<Manifest, InputError> {
    let src = format!("{HEAD}{clips}");
    parse(src.as_bytes(), &dir.join("m.toml"), &LoadContext::default())
}

fn ok(dir: &Path, clips: &str) -> Manifest {
    match parse_in(dir, clips) {
        Ok(m) => m,
        Err(e) => panic!("refused: {e}\n{clips}"),
    }
}

/// The error for `clips`, checked to name `field` at `line` (counted in the
/// whole manifest) and to say what is accepted.
#[track_caller]
fn err(dir: &Path, clips: &str, line: usize, field: &str) -> String {
    let e = match parse_in(dir, clips) {
        Ok(m) => panic!("accepted: {:?}\n{clips}", m.video),
        Err(e) => e,
    };
    let text = e.to_string();
    assert_eq!(e.line, Some(line), "{text}");
    assert_eq!(e.field.as_deref(), Some(field), "{text}");
    assert!(
        text.starts_with(&format!("{}:{line}:", dir.join("m.toml").display())),
        "{text}"
    );
    assert!(text.contains(&format!("field `{field}`")), "{text}");
    assert!(e.expected.is_some(), "no accepted values in: {text}");
    text
}

/// Line of the first clip line in [`HEAD`] + clips.
const L: usize = 13;

#[test]
fn every_video_feature_parses_into_the_model() {
    let dir = media_dir();
    let d = dir.path();
    let m = ok(
        d,
        r##"[[video.clip]]
still = "logo.png"
duration = "2s"
fit = "fit"
rotation = 90
crop = [1, 0, 1, 0]
blend = "screen"
opacity = [{ at = "0s", value = 0.0 }, { at = "1s", value = 1.0, interp = "ease" }]
position = [{ at = 0, value = [0, 0] }, { at = "10f", value = [100, -50.5], interp = "hold" }]
[video.clip.colour]
exposure = 1.0
lift = [0.0, 0.01, 0.0]
gamma = [1.0, 1.1, 1.0]
gain = [1.0, 1.0, 0.9]
saturation = 1.2
lut = "grade.cube"

[[video.clip]]
generator = "title"
text = "Hello\nworld"
font = "font.ttf"
size = 48
color = "#ffcc00"
at = [32, 40]
colour = { saturation = 0.0 }
start = "1s"
duration = "1s"
transition_in = { kind = "wipe", duration = "1s", angle = 90, softness = 0.1 }

[[video]]
[[video.clip]]
media = "a.mov"
in = "1s"
out = "5s"
speed = 2.0
scale = [{ at = "0s", value = 1.0 }, { at = "2s", value = 0.5, interp = "linear" }]
fit = "fill"
[[video.clip]]
generator = "solid"
colour = "#102030"
start = 40
transition_in = { kind = "dip", duration = "10f", color = "#ffffff" }
"##,
    );
    let still = &m.video[0].clips[0];
    assert_eq!(
        still.source,
        VideoSource::Still {
            path: fs::canonicalize(d.join("logo.png")).unwrap()
        }
    );
    assert_eq!((still.start, still.frames), (0, 50));
    assert_eq!(still.fit, Fit::Fit);
    assert_eq!(still.blend, BlendMode::Screen);
    assert_eq!(still.rotation, Param::constant(90.0));
    assert_eq!(
        still.crop.each_ref().map(|p| p.at(0.0)),
        [1.0, 0.0, 1.0, 0.0]
    );
    // `interp` on a key says how the value arrives there; the model keeps
    // it on the key before (how the value leaves it).
    assert_eq!(
        still.opacity.keys,
        vec![
            Key {
                frame: 0,
                value: 0.0,
                interp: Interp::Ease
            },
            Key {
                frame: 25,
                value: 1.0,
                interp: Interp::Linear
            },
        ]
    );
    assert_eq!(still.position[0].keys[0].interp, Interp::Hold);
    assert_eq!(
        (
            still.position[0].keys[1].frame,
            still.position[0].keys[1].value
        ),
        (10, 100.0)
    );
    assert_eq!(still.position[1].keys[1].value, -50.5);
    let grade = &still.colour;
    assert_eq!(grade.exposure, 1.0);
    assert_eq!(grade.lift, [0.0, 0.01, 0.0]);
    assert_eq!(grade.gamma, [1.0, 1.1, 1.0]);
    assert_eq!(grade.gain, [1.0, 1.0, 0.9]);
    assert_eq!(grade.saturation, 1.2);
    assert_eq!(
        grade.lut,
        Some(fs::canonicalize(d.join("grade.cube")).unwrap())
    );

    let title = &m.video[0].clips[1];
    assert_eq!(
        title.source,
        VideoSource::Title(Title {
            text: "Hello\nworld".into(),
            font: Some(fs::canonicalize(d.join("font.ttf")).unwrap()),
            size: 48.0,
            color: Rgba([0xff, 0xcc, 0x00, 0xff]),
            at: [32.0, 40.0],
        })
    );
    assert_eq!(title.colour.saturation, 0.0);
    assert_eq!(
        title.transition_in,
        Some(Transition {
            kind: TransitionKind::Wipe {
                angle_deg: 90.0,
                softness: 0.1
            },
            frames: 25,
        })
    );

    let media = &m.video[1].clips[0];
    assert_eq!(media.speed, 2.0);
    assert_eq!(media.in_point, 1.0);
    // 4 s of source at double speed last 2 s on the timeline.
    assert_eq!((media.start, media.frames), (0, 50));
    assert_eq!(media.scale.at(25.0), 0.75);
    assert_eq!(media.fit, Fit::Fill);

    let solid = &m.video[1].clips[1];
    assert_eq!(
        solid.source,
        VideoSource::Solid {
            color: Rgba([0x10, 0x20, 0x30, 0xff])
        }
    );
    assert_eq!(
        solid.transition_in,
        Some(Transition {
            kind: TransitionKind::Dip {
                color: Rgba([255, 255, 255, 255])
            },
            frames: 10,
        })
    );
    // Default transition colours and wipe settings.
    let m = ok(
        d,
        "[[video.clip]]\ngenerator = \"bars\"\nduration = \"2s\"\n[[video.clip]]\n\
         generator = \"pattern\"\nstart = \"1s\"\ntransition_in = { kind = \"dip\", duration = \"1s\" }\n\
         [[video]]\n[[video.clip]]\ngenerator = \"bars\"\nduration = \"2s\"\n[[video.clip]]\n\
         generator = \"title\"\ntext = \"x\"\nstart = \"1s\"\n\
         transition_in = { kind = \"wipe\", duration = \"1s\" }\n",
    );
    assert_eq!(
        m.video[0].clips[1].transition_in.as_ref().unwrap().kind,
        TransitionKind::Dip {
            color: Rgba([0, 0, 0, 255])
        }
    );
    assert_eq!(
        m.video[1].clips[1].transition_in.as_ref().unwrap().kind,
        TransitionKind::Wipe {
            angle_deg: 0.0,
            softness: 0.0
        }
    );
    let VideoSource::Title(t) = &m.video[1].clips[1].source else {
        panic!()
    };
    assert_eq!(
        (t.font.as_ref(), t.size, t.color, t.at),
        (None, 64.0, Rgba([255; 4]), [0.0, 0.0])
    );
}

#[test]
fn a_bt2020_canvas_is_accepted_and_others_are_refused() {
    let dir = media_dir();
    let src =
        format!("{HEAD}[[video.clip]]\ngenerator = \"bars\"\n").replace("\"bt709\"", "\"bt2020\"");
    let m = parse(
        src.as_bytes(),
        &dir.path().join("m.toml"),
        &LoadContext::default(),
    )
    .unwrap();
    assert_eq!(m.canvas.colour_space, "bt2020");
    let e = parse(
        src.replace("\"bt2020\"", "\"p3\"").as_bytes(),
        &dir.path().join("m.toml"),
        &LoadContext::default(),
    )
    .unwrap_err();
    assert_eq!(
        (e.line, e.field.as_deref()),
        (Some(7), Some("canvas.colour_space"))
    );
    assert!(e.to_string().contains("\"bt709\" or \"bt2020\""), "{e}");
}

#[test]
fn keyframe_errors_name_the_key() {
    let dir = media_dir();
    let d = dir.path();
    let clip = |line: &str| format!("[[video.clip]]\ngenerator = \"bars\"\n{line}\n");
    let t = err(
        d,
        &clip(r#"opacity = [{ at = "1s", value = 0.0 }, { at = "10f", value = 1.0 }]"#),
        L + 2,
        "video[0].clip[0].opacity[1].at",
    );
    assert!(
        t.contains("is frame 10, not after the previous key (frame 25)"),
        "{t}"
    );
    let t = err(
        d,
        &clip(r#"opacity = [{ at = 0, value = 0.0, interp = "ease" }, { at = 5, value = 1.0 }]"#),
        L + 2,
        "video[0].clip[0].opacity[0].interp",
    );
    assert!(t.contains("is on the first key"), "{t}");
    let t = err(
        d,
        &clip(r#"opacity = [{ at = 0, value = 0.0 }, { at = 5, value = 1.0, interp = "cubic" }]"#),
        L + 2,
        "video[0].clip[0].opacity[1].interp",
    );
    assert!(t.contains("\"linear\" (default), \"ease\""), "{t}");
    let t = err(
        d,
        &clip(r#"opacity = [{ at = 0, value = 0.0 }, { at = 5, value = 2.0 }]"#),
        L + 2,
        "video[0].clip[0].opacity[1].value",
    );
    assert!(
        t.contains("value 2.0 is out of range (expected a number from 0 to 1)"),
        "{t}"
    );
    let t = err(
        d,
        &clip(r#"position = [{ at = 0, value = 3.0 }]"#),
        L + 2,
        "video[0].clip[0].position[0].value",
    );
    assert!(t.contains("is not a list of 2 numbers"), "{t}");
    err(
        d,
        &clip(r#"opacity = [{ value = 1.0 }]"#),
        L + 2,
        "video[0].clip[0].opacity[0].at",
    );
    err(
        d,
        &clip(r#"scale = [{ at = 0 }]"#),
        L + 2,
        "video[0].clip[0].scale[0].value",
    );
    let t = err(d, &clip("scale = []"), L + 2, "video[0].clip[0].scale");
    assert!(t.contains("is an empty list"), "{t}");
    let t = err(
        d,
        &clip("opacity = [0.5, 1.0]"),
        L + 2,
        "video[0].clip[0].opacity",
    );
    assert!(t.contains("is a list of numbers"), "{t}");
    let t = err(d, &clip("crop = [1, 2, 3]"), L + 2, "video[0].clip[0].crop");
    assert!(t.contains("has 3 numbers"), "{t}");
    let t = err(
        d,
        &clip("crop = [1, 2, 3, -4]"),
        L + 2,
        "video[0].clip[0].crop",
    );
    assert!(t.contains("is out of range"), "{t}");
    err(d, &clip("position = 5"), L + 2, "video[0].clip[0].position");
    err(d, &clip("scale = 0"), L + 2, "video[0].clip[0].scale");
    err(
        d,
        &clip("rotation = 1e9"),
        L + 2,
        "video[0].clip[0].rotation",
    );
    // Unknown keys inside a keyframe are refused by name.
    let t = err(
        d,
        &clip(r#"opacity = [{ at = 0, value = 1.0, ease = true }]"#),
        L + 2,
        "video[0].clip[0].opacity[0].ease",
    );
    assert!(
        t.contains("unknown field `ease`") && t.contains("`interp`"),
        "{t}"
    );
}

#[test]
fn source_and_field_errors() {
    let dir = media_dir();
    let d = dir.path();
    let t = err(
        d,
        "[[video.clip]]\ngenerator = \"bars\"\nstill = \"logo.png\"\n",
        L + 2,
        "video[0].clip[0].still",
    );
    assert!(t.contains("is given together with `generator`"), "{t}");
    let t = err(
        d,
        "[[video.clip]]\nstill = \"bad.png\"\n",
        L + 1,
        "video[0].clip[0].still",
    );
    assert!(t.contains("is not an image this host reads"), "{t}");
    let t = err(
        d,
        "[[video.clip]]\nstill = \"../x.png\"\n",
        L + 1,
        "video[0].clip[0].still",
    );
    assert!(t.contains("outside the media roots"), "{t}");
    let t = err(
        d,
        "[[video.clip]]\ngenerator = \"title\"\n",
        L,
        "video[0].clip[0].text",
    );
    assert!(t.contains("required field is missing"), "{t}");
    let t = err(
        d,
        "[[video.clip]]\ngenerator = \"bars\"\ntext = \"hi\"\n",
        L + 2,
        "video[0].clip[0].text",
    );
    assert!(t.contains("only used by generator = \"title\""), "{t}");
    err(
        d,
        "[[video.clip]]\ngenerator = \"title\"\ntext = \"hi\"\nfont = \"logo.png\"\n",
        L + 3,
        "video[0].clip[0].font",
    );
    err(
        d,
        "[[video.clip]]\ngenerator = \"title\"\ntext = \"hi\"\nsize = 0\n",
        L + 3,
        "video[0].clip[0].size",
    );
    err(
        d,
        "[[video.clip]]\ngenerator = \"title\"\ntext = \"hi\"\nat = [1]\n",
        L + 3,
        "video[0].clip[0].at",
    );
    let t = err(
        d,
        "[[video.clip]]\ngenerator = \"bars\"\ncolor = \"#ffffff\"\n",
        L + 2,
        "video[0].clip[0].color",
    );
    assert!(t.contains("[video.clip.colour]"), "{t}");
    err(
        d,
        "[[video.clip]]\ngenerator = \"solid\"\ncolor = \"#ffffff\"\ncolour = \"#000000\"\n",
        L + 3,
        "video[0].clip[0].colour",
    );
    let t = err(
        d,
        "[[video.clip]]\ngenerator = \"bars\"\nfit = \"contain\"\n",
        L + 2,
        "video[0].clip[0].fit",
    );
    assert!(t.contains("\"fill\""), "{t}");
    let t = err(
        d,
        "[[video.clip]]\ngenerator = \"bars\"\nblend = \"overlay\"\n",
        L + 2,
        "video[0].clip[0].blend",
    );
    assert!(t.contains("\"multiply\""), "{t}");
    let t = err(
        d,
        "[[video.clip]]\ngenerator = \"bars\"\nspeed = 2.0\n",
        L + 2,
        "video[0].clip[0].speed",
    );
    assert!(t.contains("only media clips have"), "{t}");
    err(
        d,
        "[[video.clip]]\nmedia = \"a.mov\"\nduration = \"1s\"\nspeed = 0\n",
        L + 3,
        "video[0].clip[0].speed",
    );
    // `out` at double speed lasts half as long: 10 s of source is 5 s, past
    // the 4 s canvas.
    let t = err(
        d,
        "[[video.clip]]\nmedia = \"a.mov\"\nout = \"10s\"\nspeed = 2.0\n",
        L + 2,
        "video[0].clip[0].out",
    );
    assert!(t.contains("end at frame 125"), "{t}");
}

#[test]
fn colour_and_transition_errors() {
    let dir = media_dir();
    let d = dir.path();
    let graded =
        |line: &str| format!("[[video.clip]]\ngenerator = \"bars\"\n[video.clip.colour]\n{line}\n");
    err(
        d,
        &graded("exposure = 20.0"),
        L + 3,
        "video[0].clip[0].colour.exposure",
    );
    let t = err(
        d,
        &graded("lift = [0.1, 0.1]"),
        L + 3,
        "video[0].clip[0].colour.lift",
    );
    assert!(t.contains("has 2 numbers"), "{t}");
    err(
        d,
        &graded("gamma = [1.0, 0.0, 1.0]"),
        L + 3,
        "video[0].clip[0].colour.gamma",
    );
    err(
        d,
        &graded("gain = [1.0, 1.0, -1.0]"),
        L + 3,
        "video[0].clip[0].colour.gain",
    );
    err(
        d,
        &graded("saturation = 5.0"),
        L + 3,
        "video[0].clip[0].colour.saturation",
    );
    let t = err(
        d,
        &graded("lut = \"logo.png\""),
        L + 3,
        "video[0].clip[0].colour.lut",
    );
    assert!(t.contains("is not a .cube file"), "{t}");
    let t = err(
        d,
        &graded("lut = \"missing.cube\""),
        L + 3,
        "video[0].clip[0].colour.lut",
    );
    assert!(t.contains("does not exist"), "{t}");
    let t = err(
        d,
        &graded("contrast = 1.0"),
        L + 3,
        "video[0].clip[0].colour.contrast",
    );
    assert!(
        t.contains("unknown field `contrast`") && t.contains("`saturation`"),
        "{t}"
    );
    // Inline, under the `color` spelling.
    let t = err(
        d,
        "[[video.clip]]\ngenerator = \"bars\"\ncolor = { saturation = -1.0 }\n",
        L + 2,
        "video[0].clip[0].color.saturation",
    );
    assert!(
        t.contains("is out of range (expected a number from 0 to 4)"),
        "{t}"
    );

    let pair = |tr: &str| {
        format!(
            "[[video.clip]]\ngenerator = \"bars\"\nduration = \"2s\"\n[[video.clip]]\n\
             generator = \"pattern\"\nstart = \"1s\"\ntransition_in = {tr}\n"
        )
    };
    let t = err(
        d,
        &pair(r#"{ kind = "push", duration = "1s" }"#),
        L + 6,
        "video[0].clip[1].transition_in.kind",
    );
    assert!(
        t.contains("\"dissolve\", \"dip\" (through a colour) or \"wipe\""),
        "{t}"
    );
    let t = err(
        d,
        &pair(r##"{ kind = "dissolve", duration = "1s", color = "#ffffff" }"##),
        L + 6,
        "video[0].clip[1].transition_in.color",
    );
    assert!(
        t.contains("is not used by a \"dissolve\" transition"),
        "{t}"
    );
    err(
        d,
        &pair(r#"{ kind = "dip", duration = "1s", angle = 90 }"#),
        L + 6,
        "video[0].clip[1].transition_in.angle",
    );
    err(
        d,
        &pair(r#"{ kind = "dip", duration = "1s", color = "white" }"#),
        L + 6,
        "video[0].clip[1].transition_in.color",
    );
    err(
        d,
        &pair(r#"{ kind = "wipe", duration = "1s", softness = 1.5 }"#),
        L + 6,
        "video[0].clip[1].transition_in.softness",
    );
    err(
        d,
        &pair(r#"{ kind = "wipe", duration = "1s", angle = 720 }"#),
        L + 6,
        "video[0].clip[1].transition_in.angle",
    );
}

#[test]
fn a_track_mixes_at_most_two_clips_at_once() {
    let dir = media_dir();
    // B (10..16) dissolves in over 4 frames and C over 4 from frame 12,
    // while A (0..14) is still on screen.
    let t = err(
        dir.path(),
        "[[video.clip]]\ngenerator = \"bars\"\nduration = 14\n\
         [[video.clip]]\ngenerator = \"pattern\"\nstart = 10\nduration = 6\n\
         transition_in = { kind = \"dissolve\", duration = 4 }\n\
         [[video.clip]]\ngenerator = \"bars\"\nstart = 12\nduration = 6\n\
         transition_in = { kind = \"dissolve\", duration = 4 }\n",
        L + 10,
        "video[0].clip[2].start",
    );
    assert!(
        t.contains("while clip[0] is still on screen (to frame 14)"),
        "{t}"
    );
}
