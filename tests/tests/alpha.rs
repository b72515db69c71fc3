//! Alpha through to ProRes 4444: a composition on a transparent canvas with
//! an opaque layer, a half-transparent layer and a 25 % opacity layer
//! overlapping both is delivered with `master/prores-4444-alpha`. FFmpeg
//! must read ProRes 4444 (`ap4h`) with an alpha plane, and the alpha it
//! decodes must equal the composition's alpha within one 8-bit code value
//! everywhere. The expected alpha is computed here from the layer geometry
//! with Porter–Duff "over" in floating point, not read from `deliver`.

use deliver_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const W: usize = 640;
const H: usize = 360;
const FRAMES: usize = 25; // 1 s at 25 fps

/// Each layer: (x0, y0, x1, y1) in canvas pixels and its alpha (0..1),
/// bottom first. Every layer is a full-canvas generator at scale 0.5.
const LAYERS: &[(usize, usize, usize, usize, f64)] = &[
    // The moving pattern, opaque, top-left quadrant.
    (0, 0, W / 2, H / 2, 1.0),
    // Solid orange at alpha 0x80, bottom-right quadrant.
    (W / 2, H / 2, W, H, 128.0 / 255.0),
    // Solid blue at opacity 0.25, centred: over the pattern, over the
    // orange, and over nothing.
    (W / 4, H / 4, 3 * W / 4, 3 * H / 4, 0.25),
];

const MANIFEST: &str = r##"version = 1
name = "key"
[canvas]
width = 640
height = 360
frame_rate = "25"
duration = "1s"
colour_space = "bt709"
background = "#00000000"

[[video]]
[[video.clip]]
generator = "pattern"
scale = 0.5
position = [0, 0]

[[video]]
[[video.clip]]
generator = "solid"
color = "#ff800080"
scale = 0.5
position = [320, 180]

[[video]]
[[video.clip]]
generator = "solid"
color = "#2060ff"
opacity = 0.25
scale = 0.5
position = [160, 90]

[[audio]]
[[audio.clip]]
generator = "sine"

[[deliverable]]
preset = "PRESET"
name = "key"
"##;

fn expected_alpha(x: usize, y: usize) -> f64 {
    LAYERS
        .iter()
        .filter(|(x0, y0, x1, y1, _)| (*x0..*x1).contains(&x) && (*y0..*y1).contains(&y))
        .fold(0.0, |below, (.., a)| a + below * (1.0 - a))
        * 255.0
}

fn deliver_key(dir: &Path, preset: &str) -> (std::path::PathBuf, Value) {
    let plugins = plugin_dir(dir, &[]);
    let manifest = write(dir, "key.toml", &MANIFEST.replace("PRESET", preset));
    let out = dir.join("out");
    render(&plugins, &[], &manifest, &out);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let d = &report["deliverables"][0];
    let file = out.join(
        Path::new(d["file"].as_str().expect("the report names the file"))
            .file_name()
            .unwrap(),
    );
    (file, report)
}

fn check<'a>(report: &'a Value, id: &str) -> Option<&'a Value> {
    report["deliverables"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
}

#[test]
fn prores_4444_keeps_the_renders_alpha() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, report) = deliver_key(tmp.path(), "master/prores-4444-alpha");
    let failed: Vec<&Value> = report["deliverables"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["pass"] == false)
        .collect();
    assert_eq!(report["verdict"], "pass", "{failed:#?}");
    let a = check(&report, "video.alpha").expect("an alpha check");
    assert_eq!(a["pass"], true, "{a}");
    assert!(a["value"].as_u64().unwrap() <= 1, "{a}");

    let probe = ffprobe(&file);
    let v = stream(&probe, "video");
    assert_eq!(v["codec_name"], "prores");
    assert_eq!(v["profile"], "4444");
    assert_eq!(v["codec_tag_string"], "ap4h");
    // FFmpeg's decoder gives 4444 with alpha as 12-bit 4:4:4:4.
    assert_eq!(v["pix_fmt"], "yuva444p12le");
    assert_eq!(v["nb_read_frames"], FRAMES.to_string());
    assert_eq!(v["color_primaries"], "bt709");
    assert_eq!(v["color_range"], "tv");

    // The alpha plane as FFmpeg decodes it, 16-bit gray per frame.
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(&file)
        .args(["-vf", "alphaextract,format=gray16le", "-f", "rawvideo", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), FRAMES * W * H * 2);
    let mut worst = (0.0f64, 0, 0, 0);
    for (n, frame) in out.stdout.chunks_exact(W * H * 2).enumerate() {
        for y in 0..H {
            for x in 0..W {
                let i = (y * W + x) * 2;
                let got = u16::from_le_bytes([frame[i], frame[i + 1]]) as f64 * 255.0 / 65535.0;
                let d = (got - expected_alpha(x, y)).abs();
                if d > worst.0 {
                    worst = (d, n, x, y);
                }
            }
        }
    }
    let (d, n, x, y) = worst;
    assert!(
        d <= 1.0,
        "alpha off by {d:.2} code values at frame {n}, ({x}, {y}): expected {:.2}",
        expected_alpha(x, y)
    );

    // Where the blue layer lies over nothing it keeps its own colour (not
    // darkened towards the empty canvas): decode one pixel to RGBA.
    let px = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(&file)
        .args([
            "-frames:v",
            "1",
            "-vf",
            "crop=1:1:400:100,format=rgba",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .unwrap();
    assert_eq!(
        px.stdout.len(),
        4,
        "{}",
        String::from_utf8_lossy(&px.stderr)
    );
    let want = [0x20, 0x60, 0xff, 64];
    for c in 0..4 {
        assert!(
            (px.stdout[c] as i32 - want[c]).abs() <= 3,
            "pixel (400, 100) is {:?}, the blue layer at alpha 64 is {want:?}",
            &px.stdout[..]
        );
    }
}

/// The same composition through ProRes 4444 without alpha: no alpha plane,
/// no alpha check, and the picture is still delivered.
#[test]
fn prores_4444_without_alpha_drops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, report) = deliver_key(tmp.path(), "master/prores-4444");
    assert!(check(&report, "video.alpha").is_none());
    let v = stream(&ffprobe(&file), "video").clone();
    assert_eq!(v["pix_fmt"], "yuv444p12le");
    assert_eq!(v["codec_tag_string"], "ap4h");
}
