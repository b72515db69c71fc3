//! Mastering codecs: the ffmpeg plugin's ProRes and DNxHR encoders, driven
//! through the plugin ABI as the host drives them, against the `ffmpeg` CLI
//! with the same encoder and settings, on the same frames, in the same run.
//!
//! Sources (made once by the ffmpeg CLI, cached under
//! `target/bench-masters/`): 4 s of 1080p25 `testsrc2`, as a yuv422p10le
//! Y4M file for ProRes 422 HQ and as a yuv422p Y4M file for DNxHR HQ.
//! Each encoder reads the Y4M file and writes a MOV, as its own process
//! under GNU time, with every core (the plugin path re-executes this
//! binary): Y4M → `prores_ks`/`dnxhd` in the ffmpeg plugin → its MOV muxer,
//! against `ffmpeg -i src.y4m -c:v prores_ks -profile:v hq …`. Each is run
//! `RUNS` times in turn and the best wall time kept. Printed: fps, wall and
//! CPU seconds, file size, SSIM against the source, and the ratio of the
//! plugin path's wall (and CPU) time to the CLI's (target ≤ 1.05).
//!
//! Run: `cargo build --release --workspace && cargo bench -p deliver --bench masters`.

mod common;

use common::{plugin_encode, ssim, target_dir, timed, video_settings, y4m_source, Timed};
use deliver_plugin_api::abi::pix;
use std::path::Path;

const SECONDS: u32 = 4;
const FPS: u32 = 25;
const SIZE: (u32, u32) = (1920, 1080);
const RUNS: usize = 2;
/// The environment variable that makes this binary the plugin encoder:
/// `<case index>:<source.y4m>:<out.mov>`.
const CHILD: &str = "MASTERS_BENCH_PLUGIN_ENCODE";

struct Case {
    name: &'static str,
    codec: &'static str,
    implementation: &'static str,
    pix_fmt: &'static str,
    /// The plugin's options (a preset's `[video.options]`).
    options: &'static str,
    /// The same settings for the CLI.
    cli: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "ProRes 422 HQ",
        codec: "prores",
        implementation: "prores_ks",
        pix_fmt: "yuv422p10le",
        options: "profile = \"hq\"\nvendor = \"apl0\"",
        cli: &["-c:v", "prores_ks", "-profile:v", "hq", "-vendor", "apl0"],
    },
    Case {
        name: "DNxHR HQ",
        codec: "dnxhd",
        implementation: "dnxhd",
        pix_fmt: "yuv422p",
        options: "profile = \"dnxhr_hq\"",
        cli: &["-c:v", "dnxhd", "-profile:v", "dnxhr_hq"],
    },
];

fn child(case: &Case, src: &Path, out: &Path) {
    let settings = video_settings(
        case.codec,
        case.implementation,
        SIZE,
        FPS,
        pix::from_name(case.pix_fmt).unwrap(),
        true,
        case.options.into(),
    );
    let frames = plugin_encode("deliver_plugin_ffmpeg", &settings, src, "mov", out);
    assert_eq!(frames, i64::from(SECONDS * FPS));
}

fn main() {
    if let Ok(job) = std::env::var(CHILD) {
        let mut it = job.splitn(3, ':');
        let case = &CASES[it.next().unwrap().parse::<usize>().unwrap()];
        let (src, out) = (it.next().unwrap(), it.next().unwrap());
        child(case, Path::new(src), Path::new(out));
        return;
    }
    // `cargo bench` passes --bench; any other invocation (cargo test) skips.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = target_dir().join("bench-masters");
    let frames = f64::from(SECONDS * FPS);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "masters: {SECONDS} s of {}x{}p{FPS} testsrc2 (Y4M), {cores} cores, each encoder in its own process, MOV out, best of {RUNS}:",
        SIZE.0, SIZE.1
    );
    println!(
        "  {:<34} {:>7} {:>8} {:>8} {:>10} {:>8} {:>8}",
        "encoder", "fps", "wall s", "CPU s", "KiB", "SSIM Y", "SSIM All"
    );
    let exe = std::env::current_exe().unwrap();
    for (i, case) in CASES.iter().enumerate() {
        let src = y4m_source(&dir, SIZE, FPS, SECONDS, case.pix_fmt);
        let plugin_out = dir.join(format!("plugin-{i}.mov"));
        let cli_out = dir.join(format!("cli-{i}.mov"));
        let mut cli_args: Vec<&std::ffi::OsStr> =
            ["-hide_banner", "-loglevel", "error", "-y", "-i"]
                .iter()
                .map(std::ffi::OsStr::new)
                .collect();
        cli_args.push(src.as_os_str());
        cli_args.extend(case.cli.iter().map(std::ffi::OsStr::new));
        cli_args.push(cli_out.as_os_str());
        // Alternate, so that a slow moment of the machine hits both.
        let mut p_best: Option<Timed> = None;
        let mut c_best: Option<Timed> = None;
        for _ in 0..RUNS {
            let p = timed(
                &exe,
                &["--bench".as_ref()],
                Some((
                    CHILD,
                    format!("{i}:{}:{}", src.display(), plugin_out.display()),
                )),
            );
            let c = timed(Path::new("ffmpeg"), &cli_args, None);
            if p_best.as_ref().is_none_or(|b| p.wall < b.wall) {
                p_best = Some(p);
            }
            if c_best.as_ref().is_none_or(|b| c.wall < b.wall) {
                c_best = Some(c);
            }
        }
        let (p, c) = (p_best.unwrap(), c_best.unwrap());
        let row = |name: String, t: &Timed, out: &Path| {
            let (y, all) = ssim(out, &src);
            println!(
                "  {:<34} {:>7.2} {:>8.2} {:>8} {:>10.1} {:>8.5} {:>8.5}",
                name,
                frames / t.wall,
                t.wall,
                t.cpu.map_or("n/a".to_owned(), |c| format!("{c:.2}")),
                std::fs::metadata(out).unwrap().len() as f64 / 1024.0,
                y,
                all
            );
        };
        row(format!("{} (ffmpeg plugin)", case.name), &p, &plugin_out);
        row(format!("{} (ffmpeg CLI)", case.name), &c, &cli_out);
        let cpu = match (p.cpu, c.cpu) {
            (Some(a), Some(b)) => format!(", CPU {:.3}x", a / b),
            _ => String::new(),
        };
        println!(
            "  {}: plugin / CLI wall {:.3}x{cpu} (target <= 1.05)",
            case.name,
            p.wall / c.wall
        );
    }
}
