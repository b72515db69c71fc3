//! Render-only speed of the compositor on a 1080p25 three-layer composition
//! with a dissolve and a 3D LUT: the CPU reference, the wgpu path (Mesa's
//! lavapipe where there is no GPU: a CPU too, so its number says nothing
//! about GPU speed), and the `ffmpeg` CLI doing the same work with its
//! filter graph (`xfade` for the dissolve, `scale` + `overlay` for the
//! picture in picture, `lut3d` for the grade, `format=yuv420p` out),
//! decoding the same three files, in the same run. Each path decodes,
//! composites and converts to 8-bit 4:2:0 BT.709; nothing is encoded.
//! Prints fps and the ratios (target: CPU path ≥ the filter graph).
//!
//! Then the memory bound: peak RSS of rendering a short and a ten times
//! longer programme of the same composition (its 10 s pattern repeated),
//! each in a child process, side by side (target: within 10 %).
//!
//! `cargo build --release --workspace && cargo bench -p deliver --bench compositor
//! [-- --gpu-frames N] [-- --rss-seconds SHORT,LONG]` (defaults: 6 GPU
//! frames, 60,600 s; the long run renders 15000 frames).

mod common;

use common::{run, target_dir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const FPS: u32 = 25;
/// Seconds of each source and of one repetition of the composition.
const PATTERN_S: u32 = 10;
/// The environment variable that makes this binary a render child:
/// `<renderer>:<frames>:<manifest>`.
const CHILD: &str = "COMPOSITOR_BENCH_CHILD";

fn sources(dir: &Path) -> [PathBuf; 3] {
    std::fs::create_dir_all(dir).unwrap();
    let make = |name: &str, lavfi: String| -> PathBuf {
        let p = dir.join(name);
        if !p.exists() {
            let tmp = dir.join(format!("tmp-{name}"));
            run(Command::new("ffmpeg")
                .args([
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-y",
                    "-f",
                    "lavfi",
                    "-i",
                ])
                .arg(lavfi)
                .args([
                    "-c:v",
                    "libx264",
                    "-preset",
                    "veryfast",
                    "-crf",
                    "16",
                    "-pix_fmt",
                    "yuv420p",
                    "-color_primaries",
                    "bt709",
                    "-color_trc",
                    "bt709",
                    "-colorspace",
                    "bt709",
                    "-color_range",
                    "tv",
                ])
                .arg(&tmp));
            std::fs::rename(&tmp, &p).unwrap();
        }
        p
    };
    let lavfi = |src: &str| format!("{src}=size=1920x1080:rate={FPS}:duration={PATTERN_S}");
    [
        make("a.mp4", lavfi("testsrc2")),
        make("b.mp4", format!("{},hue=H=t", lavfi("smptehdbars"))),
        make("c.mp4", lavfi("testsrc")),
    ]
}

/// A 33³ warm grade: a gentle S-curve, red lifted, blue lowered.
fn lut_file(dir: &Path) -> PathBuf {
    let p = dir.join("grade.cube");
    if !p.exists() {
        let n = 33;
        let mut s = String::from("TITLE \"bench grade\"\nLUT_3D_SIZE 33\n");
        let curve = |x: f64| x * x * (3.0 - 2.0 * x) * 0.3 + x * 0.7;
        for b in 0..n {
            for g in 0..n {
                for r in 0..n {
                    let f = |v: usize| v as f64 / (n - 1) as f64;
                    let (r, g, b) = (curve(f(r)), curve(f(g)), curve(f(b)));
                    s += &format!(
                        "{:.6} {:.6} {:.6}\n",
                        (r * 1.05 + 0.01).min(1.0),
                        g,
                        (b * 0.95).max(0.0)
                    );
                }
            }
        }
        std::fs::write(&p, s).unwrap();
    }
    p
}

/// The composition, its 10 s pattern repeated `reps` times: V1 is `a` for
/// 6 s dissolving over the last second into `b` (graded by the LUT), V2 is
/// `c` at 40 % in the top right corner.
fn manifest(dir: &Path, reps: u32) -> PathBuf {
    let mut v1 = String::from("[[video]]\nname = \"V1\"\n");
    let mut v2 = String::from("[[video]]\nname = \"V2\"\n");
    for r in 0..reps {
        let t = r * PATTERN_S;
        v1 += &format!(
            "[[video.clip]]\nmedia = \"a.mp4\"\nstart = \"{t}s\"\nduration = \"6s\"\n\
             colour = {{ lut = \"grade.cube\" }}\n\
             [[video.clip]]\nmedia = \"b.mp4\"\nstart = \"{}s\"\nduration = \"5s\"\n\
             colour = {{ lut = \"grade.cube\" }}\n\
             transition_in = {{ kind = \"dissolve\", duration = \"1s\" }}\n",
            t + 5
        );
        v2 += &format!(
            "[[video.clip]]\nmedia = \"c.mp4\"\nstart = \"{t}s\"\nduration = \"{PATTERN_S}s\"\n\
             scale = 0.4\nposition = [1100, 60]\n"
        );
    }
    let text = format!(
        "version = 1\n[canvas]\nwidth = 1920\nheight = 1080\nframe_rate = \"{FPS}\"\n\
         duration = \"{}s\"\ncolour_space = \"bt709\"\n\
         [[deliverable]]\npreset = \"web/h264-1080p\"\n{v1}{v2}",
        reps * PATTERN_S
    );
    let p = dir.join(format!("bench-{reps}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// The child: renders `frames` frames of `manifest` on `renderer` to 8-bit
/// 4:2:0 and prints how long that took.
fn child(spec: &str) {
    use deliver::manifest::{load, LoadContext};
    use deliver::render::plan::OutputFormat;
    use deliver::render::timeline::{canvas_colour, Timeline};
    use deliver::render::{lut, open_renderer, RendererChoice};
    // As `deliver` itself does: the memory runs measure the product.
    deliver::tune_allocator();
    let mut it = spec.splitn(3, ':');
    let (renderer, frames, manifest) = (
        it.next().unwrap(),
        it.next().unwrap().parse::<u64>().unwrap(),
        PathBuf::from(it.next().unwrap()),
    );
    let plugins = target_dir().join("bench-compositor/plugins");
    let reg = deliver::plugins::Registry::load(&[plugins]);
    let m = load(&manifest, &LoadContext::default()).unwrap_or_else(|e| panic!("{e}"));
    let (primaries, _) = canvas_colour(&m.canvas.colour_space);
    let choice = RendererChoice::parse(renderer).unwrap();
    let mut r = open_renderer(choice, primaries).unwrap();
    let mut tl = Timeline::new(&m, &reg, &lut::load).unwrap_or_else(|e| panic!("{e}"));
    // As a job does: the CPU renderer has its media graded at the source.
    tl.grade_sources(r.wants_graded_sources());
    let out = [OutputFormat {
        width: 1920,
        height: 1080,
        pix_fmt: deliver_plugin_api::abi::pix::YUV420P,
        primaries: 1,
        transfer: 1,
        matrix: 1,
        range: 1,
        dither: true,
    }];
    let frames = frames.min(m.canvas.frames);
    let start = Instant::now();
    let mut bytes = 0usize;
    // As a job does: the next frame is made while this one is drawn.
    std::thread::scope(|scope| {
        for (_, f) in deliver::render::timeline::frames_ahead(scope, &mut tl, 0..frames) {
            let (plan, src) = f.unwrap();
            let pics = r.render(&plan, &src, &out).unwrap();
            bytes += pics[0].planes[0].len();
        }
    });
    assert!(bytes > 0);
    println!(
        "RENDERED {} {frames} {:.3}",
        r.name().replace(' ', "_"),
        start.elapsed().as_secs_f64()
    );
}

/// Runs this binary as a render child under GNU time: (renderer name,
/// frames, seconds, peak RSS in MiB).
fn render_child(renderer: &str, frames: u64, manifest: &Path) -> (String, u64, f64, f64) {
    let exe = std::env::current_exe().unwrap();
    let (out, err) = run(Command::new("/usr/bin/time")
        .args(["-f", "PEAK_RSS_KB %M"])
        .arg(&exe)
        .env(CHILD, format!("{renderer}:{frames}:{}", manifest.display()))
        .env("RUST_LOG", "warn"));
    let line = out
        .lines()
        .find(|l| l.starts_with("RENDERED "))
        .unwrap_or_else(|| panic!("child printed no result:\n{out}\n{err}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    let rss_kb: f64 = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("PEAK_RSS_KB "))
        .and_then(|v| v.trim().parse().ok())
        .expect("GNU time's peak RSS");
    (
        f[1].to_owned(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
        rss_kb / 1024.0,
    )
}

fn ffmpeg_graph(dir: &Path, src: &[PathBuf; 3], lut: &Path) -> f64 {
    // The same work for one 10 s pattern: decode three files, dissolve a
    // into b over 5..6 s, grade with the LUT, scale c to 40 % and overlay
    // it, convert to yuv420p; nothing encoded.
    let graph = format!(
        "[0:v]trim=duration=6,setpts=PTS-STARTPTS[a];\
         [1:v]trim=duration=5,setpts=PTS-STARTPTS[b];\
         [a][b]xfade=transition=fade:duration=1:offset=5,lut3d=file={}[base];\
         [2:v]scale=768:432[pip];[base][pip]overlay=1100:60:shortest=1,format=yuv420p",
        lut.display()
    );
    let start = Instant::now();
    run(Command::new("ffmpeg")
        .current_dir(dir)
        .args(["-hide_banner", "-loglevel", "error", "-nostats", "-y"])
        .arg("-i")
        .arg(&src[0])
        .arg("-i")
        .arg(&src[1])
        .arg("-i")
        .arg(&src[2])
        .args(["-filter_complex", &graph, "-f", "null", "-"]));
    start.elapsed().as_secs_f64()
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let gpu_frames: u64 = opt("--gpu-frames").map_or(6, |v| v.parse().unwrap());
    let rss: Vec<u32> = opt("--rss-seconds")
        .unwrap_or_else(|| "60,600".into())
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        Path::new("/usr/bin/time").exists(),
        "GNU time (/usr/bin/time) measures the children"
    );
    let dir = target_dir().join("bench-compositor");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        target_dir().join("release/libdeliver_plugin_ffmpeg.so"),
        plugins.join("libdeliver_plugin_ffmpeg.so"),
    )
    .expect("build the workspace first: cargo build --release --workspace");
    let src = sources(&dir);
    let lut = lut_file(&dir);
    let one = manifest(&dir, 1);
    let frames = u64::from(PATTERN_S * FPS);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("1080p25, 3 layers (a dissolving into b, both through a 33³ LUT; c at 40 % over them), {frames} frames, {cores} cores");

    let ff = ffmpeg_graph(&dir, &src, &lut);
    let ff_fps = frames as f64 / ff;
    println!("ffmpeg filter graph (xfade, lut3d, scale, overlay → yuv420p): {ff_fps:7.2} fps ({ff:.1} s)");
    let (_, n, s, cpu_rss) = render_child("cpu", frames, &one);
    let cpu_fps = n as f64 / s;
    println!(
        "deliver CPU reference:                                      {cpu_fps:7.2} fps ({s:.1} s, peak RSS {cpu_rss:.0} MiB)"
    );
    println!("ratio CPU / ffmpeg: {:.2}× (target ≥ 1)", cpu_fps / ff_fps);
    if gpu_frames > 0 {
        // The wgpu path on whatever adapter there is; its first frame
        // builds the kernels and uploads the LUT.
        let (name, n, s, rss) = render_child("gpu", gpu_frames, &one);
        let gpu_fps = n as f64 / s;
        println!(
            "deliver GPU ({name}), {n} frames:  {gpu_fps:7.2} fps ({s:.1} s, peak RSS {rss:.0} MiB)"
        );
        println!(
            "ratio GPU / ffmpeg: {:.3}×, GPU / CPU: {:.3}×",
            gpu_fps / ff_fps,
            gpu_fps / cpu_fps
        );
    }
    if let [short, long] = rss[..] {
        let mut peaks = Vec::new();
        for secs in [short, long] {
            let reps = secs.div_ceil(PATTERN_S);
            let m = manifest(&dir, reps);
            let (_, n, s, peak) = render_child("cpu", u64::MAX, &m);
            println!(
                "memory: {secs} s programme ({n} frames, {:.0} s): peak RSS {peak:.0} MiB",
                s
            );
            peaks.push(peak);
        }
        println!(
            "peak RSS long / short: {:.3} (target ≤ 1.10)",
            peaks[1] / peaks[0]
        );
    }
}
