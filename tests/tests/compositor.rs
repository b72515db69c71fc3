//! The compositor's golden compositions, drawn by the CPU reference and by
//! the wgpu renderer (Mesa's lavapipe on machines without a GPU) and held
//! to each other: ΔE2000 between the two canvases (premultiplied, that is
//! over black) has max < 1.0 on every frame drawn, and every converted
//! output sample agrees within one code value. Together the compositions
//! use every feature of the model: media at another rate with fit, crop,
//! speed and keyframed geometry; stills with alpha; titles; every
//! generator; every blend mode; every transition; every colour operation
//! including a 3D LUT; a transparent canvas.
//!
//! In CI (`CI` set) a machine without any adapter fails here: the setup
//! installs lavapipe, so that would be a broken setup, not a skip.

use deliver::deltae::{ciede2000, lab_of_rgb};
use deliver::manifest::model::{Primaries, Transfer};
use deliver::manifest::{parse, LoadContext};
use deliver::plugins::Registry;
use deliver::render::colour::oetf;
use deliver::render::cpu::CpuRenderer;
use deliver::render::gpu::GpuRenderer;
use deliver::render::plan::{LinearImage, OutputFormat, Renderer};
use deliver::render::timeline::Timeline;
use deliver::render::{lut, Yuv};
use deliver_plugin_api::abi::pix;
use deliver_tests::*;
use std::path::Path;
use std::sync::Arc;

const W: u32 = 256;
const H: u32 = 144;

fn gpu() -> Option<GpuRenderer> {
    if std::env::var_os("WGPU_BACKEND").is_none() {
        std::env::set_var("WGPU_BACKEND", "vulkan");
    }
    match GpuRenderer::new() {
        Ok(g) => Some(g),
        Err(e) if std::env::var_os("CI").is_none() => {
            println!("no GPU adapter here, the agreement check is skipped: {e}");
            None
        }
        Err(e) => panic!("CI has lavapipe (scripts/setup.sh): no adapter is a broken setup: {e}"),
    }
}

/// The outputs every frame is converted to: 8-bit 4:2:0 at the canvas size,
/// 10-bit 4:2:2 at half size (the resample path), BT.2020 10-bit (the
/// primaries path) and 10-bit 4:4:4 with alpha.
fn outputs() -> Vec<OutputFormat> {
    let f = |w, h, pix_fmt, primaries, transfer, matrix, range| OutputFormat {
        width: w,
        height: h,
        pix_fmt,
        primaries,
        transfer,
        matrix,
        range,
        dither: true,
    };
    vec![
        f(W, H, pix::YUV420P, 1, 1, 1, 1),
        f(W / 2, H / 2, pix::YUV422P10, 1, 1, 1, 1),
        f(W, H, pix::YUV420P10, 9, 14, 9, 1),
        f(W, H, pix::YUVA444P10, 1, 1, 1, 2),
    ]
}

/// 3 s of `testsrc2` at 200×120, 30 fps, H.264 4:2:0 into `path`, with
/// `extra` output arguments (colour tags).
fn testsrc_clip(path: &Path, extra: &[&str]) {
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=200x120:r=30:d=3",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-crf",
        "10",
    ];
    args.extend_from_slice(extra);
    args.push(path.to_str().expect("a UTF-8 temporary path"));
    ffmpeg(&args);
}

fn media(dir: &Path) {
    // 30 fps on a 25 fps canvas, a size that is neither the canvas's nor
    // its aspect.
    testsrc_clip(&dir.join("clip.mov"), &[]);
    // A still with an alpha ramp.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=96x64:d=1,format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='255*X/W'",
        "-frames:v",
        "1",
        dir.join("logo.png").to_str().unwrap(),
    ]);
    // A 17³ LUT that bends every channel and mixes them.
    let n = 17;
    let mut cube = format!("TITLE \"golden\"\nLUT_3D_SIZE {n}\n");
    for b in 0..n {
        for g in 0..n {
            for r in 0..n {
                let (r, g, b) = [r, g, b].map(|v| v as f64 / (n - 1) as f64).into();
                let o = [
                    (0.85 * r.powf(0.8) + 0.15 * g).min(1.0),
                    (0.9 * g + 0.1 * b * b).min(1.0),
                    b.powf(1.3),
                ];
                cube.push_str(&format!("{:.6} {:.6} {:.6}\n", o[0], o[1], o[2]));
            }
        }
    }
    std::fs::write(dir.join("look.cube"), cube).unwrap();
}

/// `(name, frames to check, manifest body)`.
const COMPOSITIONS: &[(&str, &[u64], &str)] = &[
    (
        "media geometry over bars",
        &[0, 12, 31, 49],
        r##"
[[video]]
[[video.clip]]
generator = "bars"
duration = "2s"
[[video]]
[[video.clip]]
media = "clip.mov"
in = "0.5s"
duration = "2s"
speed = 1.2
fit = "fit"
crop = [{ at = "0s", value = [0, 0, 0, 0] }, { at = "2s", value = [20, 10, 30, 5] }]
scale = [{ at = "0s", value = 0.6 }, { at = "2s", value = 0.9, interp = "ease" }]
position = [{ at = "0s", value = [10, 8] }, { at = "1s", value = [60.5, 20.25] }]
rotation = [{ at = "0s", value = 0 }, { at = "2s", value = 25 }]
opacity = 0.85
"##,
    ),
    (
        "blend modes, titles and the pattern",
        &[0, 17, 40],
        r##"
[[video]]
[[video.clip]]
generator = "pattern"
duration = "2s"
[[video]]
[[video.clip]]
generator = "solid"
color = "#3060c0"
duration = "2s"
blend = "multiply"
scale = 0.5
position = [20, 20]
[[video]]
[[video.clip]]
generator = "solid"
color = "#804020"
duration = "2s"
blend = "add"
scale = 0.5
position = [100, 50]
opacity = 0.7
[[video]]
[[video.clip]]
generator = "title"
text = "Golden\nframe"
size = 40
color = "#f0e0a0"
at = [30, 30]
duration = "2s"
blend = "screen"
[[video]]
[[video.clip]]
still = "logo.png"
duration = "2s"
position = [150, 70]
rotation = -12
"##,
    ),
    (
        "dissolve, dip and wipe",
        &[5, 12, 23, 34, 45],
        r##"
[[video]]
[[video.clip]]
generator = "bars"
duration = 15
[[video.clip]]
media = "clip.mov"
fit = "fill"
start = 10
duration = 15
transition_in = { kind = "dissolve", duration = 5 }
[[video.clip]]
still = "logo.png"
fit = "fit"
start = 22
duration = 14
transition_in = { kind = "dip", duration = 3, color = "#202020" }
[[video.clip]]
generator = "solid"
color = "#c04080"
start = 33
duration = 17
transition_in = { kind = "wipe", duration = 3, angle = 30, softness = 0.4 }
"##,
    ),
    (
        "colour operations and a LUT",
        &[0, 20],
        r##"
[[video]]
[[video.clip]]
generator = "bars"
duration = "2s"
colour = { exposure = 0.4, saturation = 1.3 }
[[video]]
[[video.clip]]
media = "clip.mov"
duration = "2s"
scale = 0.6
colour = { lift = [0.05, 0.0, -0.03], gamma = [1.1, 0.9, 1.0], gain = [0.95, 1.05, 1.1], lut = "look.cube" }
[[video]]
[[video.clip]]
still = "logo.png"
duration = "2s"
position = [140, 60]
colour = { exposure = -0.7, lut = "look.cube" }
"##,
    ),
];

/// A transparent canvas: the alpha path of ProRes 4444.
const ALPHA: &str = r##"
[[video]]
[[video.clip]]
still = "logo.png"
duration = "2s"
scale = 1.5
opacity = [{ at = "0s", value = 1.0 }, { at = "2s", value = 0.3 }]
[[video]]
[[video.clip]]
generator = "title"
text = "alpha"
size = 48
at = [80, 60]
duration = "2s"
"##;

fn manifest(dir: &Path, background: &str, body: &str) -> deliver::manifest::model::Manifest {
    let src = format!(
        "version = 1\n[canvas]\nwidth = {W}\nheight = {H}\nframe_rate = \"25\"\n\
         duration = \"2s\"\ncolour_space = \"bt709\"\nbackground = \"{background}\"\n\
         [[deliverable]]\npreset = \"web/h264-1080p\"\n{body}"
    );
    match parse(
        src.as_bytes(),
        &dir.join("golden.toml"),
        &LoadContext::default(),
    ) {
        Ok(m) => m,
        Err(e) => panic!("{e}\n{src}"),
    }
}

/// R'G'B' (BT.709 OETF) of a linear premultiplied canvas, over black.
fn encoded(img: &LinearImage) -> Vec<[f32; 3]> {
    img.data
        .iter()
        .map(|p| [0, 1, 2].map(|c| oetf(Transfer::Bt709, p[c].clamp(0.0, 1.0))))
        .collect()
}

struct Stats {
    mean: f64,
    p99: f64,
    max: f64,
}

fn delta_e(a: &LinearImage, b: &LinearImage) -> Stats {
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    lab_of_rgb(&encoded(a), &mut la);
    lab_of_rgb(&encoded(b), &mut lb);
    let mut d: Vec<f64> = la
        .iter()
        .zip(&lb)
        .map(|(x, y)| ciede2000(x.map(f64::from), y.map(f64::from)))
        .collect();
    d.sort_by(f64::total_cmp);
    Stats {
        mean: d.iter().sum::<f64>() / d.len() as f64,
        p99: d[(d.len() * 99 / 100).min(d.len() - 1)],
        max: *d.last().unwrap(),
    }
}

/// Largest difference in code values between two converted frames, and
/// where.
fn code_difference(a: &Yuv, b: &Yuv) -> (u32, String) {
    let wide = a.pix_fmt != pix::YUV420P;
    let mut worst = (0, String::new());
    for (p, (pa, pb)) in a.planes.iter().zip(&b.planes).enumerate() {
        assert_eq!(pa.len(), pb.len(), "plane {p} sizes differ");
        let (sa, sb): (Vec<u32>, Vec<u32>) = if wide {
            (
                pa.chunks(2)
                    .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                pb.chunks(2)
                    .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
            )
        } else {
            (
                pa.iter().map(|&v| u32::from(v)).collect(),
                pb.iter().map(|&v| u32::from(v)).collect(),
            )
        };
        for (i, (x, y)) in sa.iter().zip(&sb).enumerate() {
            let d = x.abs_diff(*y);
            if d > worst.0 {
                worst = (d, format!("plane {p} sample {i}: cpu {x}, gpu {y}"));
            }
        }
    }
    worst
}

fn agree(
    dir: &Path,
    reg: &Registry,
    gpu: &mut GpuRenderer,
    name: &str,
    frames: &[u64],
    background: &str,
    body: &str,
) {
    let m = manifest(dir, background, body);
    let formats = outputs();
    let mut cpu = CpuRenderer::new(Primaries::Bt709);
    gpu.set_canvas_primaries(Primaries::Bt709);
    let mut tl = Timeline::new(&m, reg, &lut::load).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut failures = Vec::new();
    for n in 0..=*frames.iter().max().unwrap() {
        let (plan, sources) = tl
            .frame(n)
            .unwrap_or_else(|e| panic!("{name} frame {n}: {e}"));
        if !frames.contains(&n) {
            continue;
        }
        let sources: Vec<Arc<LinearImage>> = sources;
        let c = cpu.render_linear(&plan, &sources).unwrap();
        let g = gpu.render_linear(&plan, &sources).unwrap();
        let s = delta_e(&c, &g);
        println!(
            "{name}, frame {n}: ΔE2000 mean {:.4}, p99 {:.4}, max {:.4} ({} layers)",
            s.mean,
            s.p99,
            s.max,
            plan.layers.len()
        );
        if s.max >= 1.0 {
            failures.push(format!("{name} frame {n}: ΔE2000 max {:.3}", s.max));
        }
        let alpha = c
            .data
            .iter()
            .zip(&g.data)
            .map(|(a, b)| (a[3] - b[3]).abs())
            .fold(0f32, f32::max);
        if alpha > 1.0 / 1023.0 {
            failures.push(format!("{name} frame {n}: alpha differs by {alpha}"));
        }
        let pc = cpu.render(&plan, &sources, &formats).unwrap();
        let pg = gpu.render(&plan, &sources, &formats).unwrap();
        for (f, (a, b)) in formats.iter().zip(pc.iter().zip(&pg)) {
            let (d, at) = code_difference(a, b);
            if d > 1 {
                failures.push(format!(
                    "{name} frame {n}, output {}×{} {}: {d} codes apart at {at}",
                    f.width,
                    f.height,
                    pix::name(f.pix_fmt).unwrap_or("?")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn golden_compositions_agree_on_cpu_and_gpu() {
    let Some(mut gpu) = gpu() else { return };
    println!("GPU path: {}", gpu.name());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    media(dir);
    let reg = Registry::load(&[plugin_dir(dir, &[])]);
    for (name, frames, body) in COMPOSITIONS {
        agree(dir, &reg, &mut gpu, name, frames, "#000000", body);
    }
    agree(
        dir,
        &reg,
        &mut gpu,
        "alpha over a transparent canvas",
        &[0, 30],
        "#00000000",
        ALPHA,
    );
}

#[test]
fn render_with_renderer_cpu_and_gpu_delivers_the_same_pictures() {
    // `deliver render --renderer gpu` and `--renderer cpu` deliver the same
    // picture: the report names the renderer, and the two files decode to
    // frames within a PSNR that only codec noise explains.
    if gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    media(dir);
    let plugins = plugin_dir(dir, &[]);
    let body = COMPOSITIONS[0].2;
    let src = format!(
        "version = 1\n[canvas]\nwidth = {W}\nheight = {H}\nframe_rate = \"25\"\n\
         duration = \"12f\"\ncolour_space = \"bt709\"\n\
         [[deliverable]]\npreset = \"test/small\"\nname = \"out\"\n{}",
        body.replace("\"2s\"", "\"12f\"")
            .replace("\"1s\"", "\"6f\"")
    );
    let manifest = write(dir, "golden.toml", &src);
    let presets = presets_dir(
        dir,
        &[("test/small.toml", &builtin_preset("master/prores-4444"))],
    );
    let mut reports = Vec::new();
    for renderer in ["cpu", "gpu"] {
        let out = dir.join(renderer);
        let st = deliver(&plugins)
            .arg("--presets")
            .arg(&presets)
            .env("WGPU_BACKEND", "vulkan")
            .args(["render", "--renderer", renderer, "--out"])
            .arg(&out)
            .arg(&manifest)
            .output()
            .unwrap();
        let failed: Vec<String> = std::fs::read_to_string(out.join("report.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|r| {
                r["deliverables"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|d| d["checks"].as_array().cloned().unwrap_or_default())
                    .filter(|c| c["pass"] != true)
                    .map(|c| c.to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            st.status.success(),
            "{renderer}: {failed:#?}\n{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        let name = r["render"]["renderer"].as_str().unwrap().to_owned();
        assert!(name.starts_with(renderer), "{name}");
        reports.push((out, r));
    }
    let file = |i: usize| {
        let r = &reports[i].1;
        reports[i]
            .0
            .join(r["deliverables"][0]["file"].as_str().unwrap())
    };
    for f in [0, 6, 11] {
        let psnr = ffmpeg_frame_psnr(&file(0), f, &file(1), f);
        assert!(
            psnr > 45.0,
            "frame {f}: cpu and gpu deliveries differ, PSNR {psnr:.1} dB"
        );
    }
}

/// Graded media on whole pixels (graded while linearized when the timeline
/// grades at the source), moved by half a pixel for a while (graded by the
/// renderer again), dissolving into a second graded clip, under a graded
/// picture in picture that is scaled (never graded at the source).
const GRADED_AT_SOURCE: &str = r##"
[[video]]
[[video.clip]]
media = "tagged.mov"
fit = "none"
duration = 20
position = [10, 6]
colour = { exposure = 0.3, lift = [0.05, 0.0, -0.03], gamma = [1.1, 0.9, 1.0], gain = [0.95, 1.05, 1.1], saturation = 1.2, lut = "look.cube" }
[[video.clip]]
media = "tagged.mov"
in = "0.4s"
fit = "none"
start = 15
duration = 35
position = [{ at = "0s", value = [0, 0] }, { at = "0.4s", value = [7.5, 3], interp = "hold" }, { at = "0.8s", value = [12, 4], interp = "hold" }]
colour = { saturation = 0.8, lut = "look.cube" }
transition_in = { kind = "dissolve", duration = 5 }
[[video]]
[[video.clip]]
media = "tagged.mov"
duration = "2s"
scale = 0.5
position = [100, 40]
colour = { exposure = -0.5 }
"##;

#[test]
fn grading_media_at_the_source_changes_no_bit() {
    // The CPU renderer's jobs have their media graded while linearized
    // (`Timeline::grade_sources`): the canvases and every output must be
    // the ones the renderer's own grade gives, bit for bit, on every frame.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    media(dir);
    // Tagged BT.709: an untagged 200×120 picture is taken as SD (BT.601
    // primaries), which the canvas's primaries matrix keeps from being
    // graded at the source.
    testsrc_clip(
        &dir.join("tagged.mov"),
        &[
            "-color_primaries",
            "bt709",
            "-color_trc",
            "bt709",
            "-colorspace",
            "bt709",
        ],
    );
    let reg = Registry::load(&[plugin_dir(dir, &[])]);
    let m = manifest(dir, "#000000", GRADED_AT_SOURCE);
    let formats = outputs();
    let mut plain = Timeline::new(&m, &reg, &lut::load).unwrap();
    let mut graded = Timeline::new(&m, &reg, &lut::load).unwrap();
    graded.grade_sources(true);
    let mut cpu = CpuRenderer::new(Primaries::Bt709);
    let (mut at_source, mut by_renderer) = (0, 0);
    for n in 0..m.canvas.frames {
        let (pp, ps) = plain.frame(n).unwrap();
        let (gp, gs) = graded.frame(n).unwrap();
        for (g, p) in gp.layers.iter().zip(&pp.layers) {
            if !p.colour.identity {
                if g.colour.identity {
                    at_source += 1;
                } else {
                    by_renderer += 1;
                }
            }
        }
        let a = cpu.render_linear(&pp, &ps).unwrap();
        let b = cpu.render_linear(&gp, &gs).unwrap();
        if let Some(i) =
            (0..a.data.len()).find(|&i| a.data[i].map(f32::to_bits) != b.data[i].map(f32::to_bits))
        {
            panic!(
                "frame {n}, pixel {i}: graded by the renderer {:?}, at the source {:?}",
                a.data[i], b.data[i]
            );
        }
        let (pa, pb) = (
            cpu.render(&pp, &ps, &formats).unwrap(),
            cpu.render(&gp, &gs, &formats).unwrap(),
        );
        for (f, (x, y)) in formats.iter().zip(pa.iter().zip(&pb)) {
            assert!(
                x.planes == y.planes,
                "frame {n}: output {}×{} differs",
                f.width,
                f.height
            );
        }
    }
    // At the source: the first clip's 20 frames, and the second clip's
    // frames 15–24 and 35–49 (on whole pixels; the dissolve's both sides
    // at 15–19). By the renderer: the second clip's frames 25–34 (at half a
    // pixel) and the scaled picture in picture's 50.
    println!("layers graded at the source: {at_source}; by the renderer: {by_renderer}");
    assert_eq!(at_source, 45, "layers graded at the source");
    assert_eq!(by_renderer, 60, "layers graded by the renderer");
}
